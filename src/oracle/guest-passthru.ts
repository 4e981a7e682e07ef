/**
 * passthru itself in a guest (exec.ts): this machine's node binary with the shared
 * libraries ldd names for it, the CLI bundled into one file by esbuild (a development
 * dependency), the built-in hosts and the snapshot script at the places the bundle looks
 * for them (/passthru/hosts, /passthru/scripts, beside /passthru/dist/src/cli/main.js as in
 * a checkout), and /usr/bin/passthru to run it.
 */
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { BUILTIN_DIR } from "../host/load.js";
import { OracleError } from "./cache.js";
import type { CpioEntry } from "./cpio.js";

/** The CLI's entry point in the build this module belongs to. */
export const CLI_ENTRY = fileURLToPath(new URL("../cli/main.js", import.meta.url));
const SNAPSHOT_SCRIPT = fileURLToPath(
  new URL("../../../scripts/passthru-snapshot.sh", import.meta.url),
);
const BUNDLE = "passthru/dist/src/cli/main.js";

/** Every directory above each entry, parents first, once. */
function withDirs(entries: CpioEntry[]): CpioEntry[] {
  const dirs: string[] = [];
  for (const e of entries)
    for (let d = dirname(e.name); d !== "." && d !== "/"; d = dirname(d))
      if (!dirs.includes(d)) dirs.push(d);
  dirs.sort((a, b) => a.split("/").length - b.split("/").length);
  return [...dirs.map((name): CpioEntry => ({ name, kind: "dir" })), ...entries];
}

/** node (this process's binary) and the libraries its dynamic loader will look for. */
export function nodeRuntime(node = process.execPath): CpioEntry[] {
  const r = spawnSync("ldd", [node], { encoding: "utf8" });
  if (r.status !== 0) throw new OracleError(`ldd ${node} failed: ${r.stderr.trim()}`);
  const libs: string[] = [];
  for (const l of r.stdout.split("\n")) {
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(l);
    if (m) libs.push(m[1] as string);
  }
  return [
    { name: "usr/bin/node", kind: "file", data: readFileSync(node), mode: 0o755 },
    ...libs.map((p): CpioEntry => ({
      name: p.slice(1),
      kind: "file",
      data: readFileSync(p),
      mode: 0o755,
    })),
  ];
}

/** The CLI as one ES module; CommonJS dependencies get a require() from createRequire. */
export async function bundleCli(entry = CLI_ENTRY): Promise<Buffer> {
  let esbuild: typeof import("esbuild");
  try {
    esbuild = await import("esbuild");
  } catch {
    throw new OracleError(
      "bundling passthru for the guest needs esbuild (a development dependency): run `npm ci`",
    );
  }
  const r = await esbuild.build({
    entryPoints: [entry],
    outfile: "main.js",
    write: false,
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    logLevel: "error",
    banner: {
      js: 'import { createRequire as __passthruRequire } from "node:module"; const require = __passthruRequire(import.meta.url);',
    },
    // only `passthru serve` imports these, and only when it builds the explorer
    external: ["esbuild", "web-worker"],
  });
  return Buffer.from((r.outputFiles[0] as { contents: Uint8Array }).contents);
}

/** Everything `passthru ...` needs in the guest. */
export async function passthruFiles(): Promise<CpioEntry[]> {
  const hosts = readdirSync(BUILTIN_DIR).filter((f) => f.endsWith(".yaml"));
  return withDirs([
    ...nodeRuntime(),
    { name: BUNDLE, kind: "file", data: await bundleCli() },
    ...hosts.map((f): CpioEntry => ({
      name: `passthru/hosts/${f}`,
      kind: "file",
      data: readFileSync(join(BUILTIN_DIR, f)),
    })),
    {
      name: "passthru/scripts/passthru-snapshot.sh",
      kind: "file",
      data: readFileSync(SNAPSHOT_SCRIPT),
    },
    {
      name: "usr/bin/passthru",
      kind: "file",
      data: Buffer.from(`#!/bin/sh\nexec /usr/bin/node /${BUNDLE} "$@"\n`),
      mode: 0o755,
    },
  ]);
}
