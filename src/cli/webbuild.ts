/**
 * Builds the web explorer as static files: one classic-script bundle (app.js, esbuild, IIFE
 * so it also runs from file://, where browsers refuse module scripts), assets.js with the
 * built-in hosts and the example scenarios as data, index.html and style.css. The library
 * modules' Node entry points are aliased to src/web/shims/node.ts, and Buffer comes from the
 * `buffer` package. `npm run build:web` writes dist-web/; `passthru serve` calls this when
 * dist-web/ is missing or older than its sources. esbuild is a development dependency: an
 * installation without it serves a prebuilt dist-web/.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The package: the nearest directory above this module holding package.json — in a checkout,
 * the one that also holds src/web (the build output may sit in a subdirectory of it).
 */
export function repoRoot(): string {
  let first: string | null = null;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "package.json"))) {
      if (existsSync(join(dir, "src", "web"))) return dir;
      first ??= dir;
    }
    const up = dirname(dir);
    if (up === dir) {
      if (first) return first;
      throw new Error("cannot find the passthru package (package.json)");
    }
    dir = up;
  }
}

/** Whether the explorer's sources are here to build from (a checkout, not a bare install). */
export function hasWebSources(root = repoRoot()): boolean {
  return existsSync(join(root, "src", "web", "ui", "main.ts"));
}

export interface WebAssets {
  /** Built-in hosts by name (hosts/NAME.yaml). */
  hosts: Record<string, string>;
  /** Example files by path from the checkout (examples/scenarios/*.yaml, examples/hosts/*.yaml). */
  files: Record<string, string>;
  /** The example scenarios, in the order the explorer offers them. */
  scenarios: string[];
}

function yamlIn(root: string, dir: string): string[] {
  const abs = join(root, dir);
  if (!existsSync(abs)) return [];
  return readdirSync(abs)
    .filter((f) => f.endsWith(".yaml") || f.endsWith(".yml"))
    .sort()
    .map((f) => `${dir}/${f}`);
}

export function collectAssets(root = repoRoot()): WebAssets {
  const hosts: Record<string, string> = {};
  for (const f of yamlIn(root, "hosts"))
    hosts[f.replace(/^hosts\//, "").replace(/\.ya?ml$/, "")] = readFileSync(join(root, f), "utf8");
  const files: Record<string, string> = {};
  const scenarios = yamlIn(root, "examples/scenarios");
  for (const f of [...scenarios, ...yamlIn(root, "examples/hosts")])
    files[f] = readFileSync(join(root, f), "utf8");
  // vfio.rst's example first: it runs on a built-in host and reads like the documentation.
  scenarios.sort((a, b) => Number(!a.includes("vfio-rst")) - Number(!b.includes("vfio-rst")));
  return { hosts, files, scenarios };
}

function newest(path: string): number {
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  return readdirSync(path).reduce((m, n) => Math.max(m, newest(join(path, n))), st.mtimeMs);
}

/** Whether dist-web/ (or `out`) is older than anything it is built from. */
export function webBuildStale(out: string, root = repoRoot()): boolean {
  const app = join(out, "app.js");
  if (!existsSync(app)) return true;
  const built = statSync(app).mtimeMs;
  return ["src", "hosts", "examples", "package.json"].some(
    (p) => existsSync(join(root, p)) && newest(join(root, p)) > built,
  );
}

export async function buildWeb(
  out = join(repoRoot(), "dist-web"),
  opts: { minify?: boolean } = {},
): Promise<string> {
  const root = repoRoot();
  const web = join(root, "src", "web");
  let esbuild: typeof import("esbuild");
  try {
    esbuild = await import("esbuild");
  } catch {
    throw new Error(
      "building the web explorer needs esbuild (a development dependency): run `npm ci` in the checkout",
    );
  }
  mkdirSync(out, { recursive: true });
  const shim = join(web, "shims", "node.ts");
  await esbuild.build({
    entryPoints: [join(web, "ui", "main.ts")],
    outfile: join(out, "app.js"),
    bundle: true,
    format: "iife",
    platform: "browser",
    target: "es2022",
    minify: opts.minify ?? true,
    sourcemap: false,
    legalComments: "none",
    logLevel: "error",
    alias: Object.fromEntries(
      ["node:fs", "node:path", "node:url", "node:zlib", "node:stream", "node:os", "tar-stream"].map(
        (m) => [m, shim],
      ),
    ),
    inject: [join(web, "shims", "buffer.ts")],
    define: {
      "import.meta.url": JSON.stringify("file:///passthru/dist/src/host/load.js"),
      "process.env.NODE_ENV": JSON.stringify("production"),
    },
    // elkjs' bundle mentions the web-worker package for Node; the browser uses its own workers.
    external: ["web-worker"],
  });
  const assets = collectAssets(root);
  writeFileSync(
    join(out, "assets.js"),
    `window.PASSTHRU_ASSETS = ${JSON.stringify(assets).replace(/</g, "\\u003c")};\n`,
  );
  for (const f of ["index.html", "style.css"])
    writeFileSync(join(out, f), readFileSync(join(web, f)));
  return out;
}

const invoked = process.argv[1] ?? "";
if (invoked.endsWith("webbuild.js")) {
  const out = process.argv[2] ?? join(repoRoot(), "dist-web");
  buildWeb(out).then(
    (dir) => process.stdout.write(`web explorer built in ${relative(process.cwd(), dir) || "."}\n`),
    (e: Error) => {
      process.stderr.write(`passthru: ${e.message}\n`);
      process.exit(1);
    },
  );
}
