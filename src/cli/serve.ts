/**
 * `passthru serve [INPUT] [--port N] [--host ADDR]`: the web explorer on a local HTTP server,
 * bound to 127.0.0.1 unless told otherwise. It serves the static build (dist-web/, rebuilt
 * first when older than its sources) and nothing else but GET api/input: INPUT's bytes (a
 * snapshot directory is packed as a tar.gz first), which the page analyses itself, exactly
 * like a file dropped on it. Nothing is accepted from the browser.
 */
import { createServer, type Server } from "node:http";
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, extname, join, normalize, sep } from "node:path";
import { builtinHosts, BUILTIN_DIR } from "../host/load.js";
import { InputError } from "../host/errors.js";
import { readSnapshot } from "../host/snapshot.js";
import { toTarGz } from "../userspace/snapshot/capture.js";
import { EXIT_OK, UsageError } from "./output.js";
import { buildWeb, hasWebSources, repoRoot, webBuildStale } from "./webbuild.js";

export interface ServeOptions {
  port?: string;
  host?: string;
  /** Where the static build lives (tests). */
  dir?: string;
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".svg": "image/svg+xml",
};

/** Everything the page may load comes from this origin; it connects nowhere else. */
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/** INPUT as the page's api/input gives it: a name and the bytes, base64. */
export async function inputPayload(input: string): Promise<{ name: string; base64: string }> {
  if (!existsSync(input) && builtinHosts().includes(input)) {
    const file = join(BUILTIN_DIR, `${input}.yaml`);
    return { name: `${input}.yaml`, base64: readFileSync(file).toString("base64") };
  }
  if (!existsSync(input)) {
    throw new InputError(
      input,
      `no such file, directory or built-in host (built-in hosts: ${builtinHosts().join(", ")})`,
    );
  }
  if (statSync(input).isDirectory()) {
    const fs = await readSnapshot(input);
    const entries = new Map(
      [...fs.entries].map(([k, e]) => [k, e.kind === "file" ? { ...e, mode: 0o644 } : e]),
    );
    const name = `${basename(input.replace(/\/+$/, ""))}.tar.gz`;
    return { name, base64: (await toTarGz(entries)).toString("base64") };
  }
  return { name: basename(input), base64: readFileSync(input).toString("base64") };
}

export async function startServer(
  input: string | undefined,
  opts: ServeOptions,
): Promise<{ server: Server; url: string }> {
  const port = opts.port === undefined ? 8737 : Number(opts.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new UsageError(`--port: expected a port number, got "${opts.port}"`);
  const host = opts.host ?? "127.0.0.1";
  const payload = input === undefined ? null : JSON.stringify(await inputPayload(input));
  let dir = opts.dir;
  if (!dir) {
    dir = join(repoRoot(), "dist-web");
    if (!hasWebSources() && !existsSync(join(dir, "index.html")))
      throw new UsageError("the web explorer is not built: run `npm run build:web` in a checkout");
    if (hasWebSources() && webBuildStale(dir)) {
      try {
        await buildWeb(dir);
      } catch (e) {
        if (!existsSync(join(dir, "index.html"))) throw e;
        process.stderr.write(`passthru: serving an older build (${(e as Error).message})\n`);
      }
    }
  }
  const root = dir;
  const server = createServer((req, res) => {
    const headers = {
      "Content-Security-Policy": CSP,
      "X-Content-Type-Options": "nosniff",
      "Referrer-Policy": "no-referrer",
      "Cache-Control": "no-store",
    };
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { ...headers, Allow: "GET, HEAD" }).end();
      return;
    }
    let path: string;
    try {
      path = decodeURIComponent((req.url ?? "/").split("?")[0] as string).replace(/^\/+/, "/");
    } catch {
      res.writeHead(400, headers).end("bad request\n");
      return;
    }
    if (path === "/api/input") {
      if (payload === null) res.writeHead(404, headers).end("no input given to passthru serve\n");
      else res.writeHead(200, { ...headers, "Content-Type": TYPES[".json"] }).end(payload);
      return;
    }
    const rel = normalize(path === "/" ? "index.html" : path.replace(/^\/+/, ""));
    const file = join(root, rel);
    if (rel.startsWith("..") || !file.startsWith(root + sep) || !existsSync(file)) {
      res.writeHead(404, headers).end("not found\n");
      return;
    }
    const type = TYPES[extname(file)] ?? "application/octet-stream";
    res.writeHead(200, { ...headers, "Content-Type": type }).end(readFileSync(file));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e: NodeJS.ErrnoException) =>
      reject(
        e.code === "EADDRINUSE"
          ? new UsageError(`port ${port} on ${host} is in use: choose another with --port`)
          : e,
      ),
    );
    server.listen(port, host, resolve);
  });
  const addr = server.address();
  const bound = typeof addr === "object" && addr ? addr.port : port;
  const shown = host.includes(":") ? `[${host}]` : host;
  return { server, url: `http://${shown}:${bound}/` };
}

export async function serveCommand(input: string | undefined, opts: ServeOptions): Promise<number> {
  const { server, url } = await startServer(input, opts);
  process.stdout.write(`passthru explorer: ${url}\n`);
  if (
    (opts.host ?? "127.0.0.1") !== "127.0.0.1" &&
    opts.host !== "localhost" &&
    opts.host !== "::1"
  )
    process.stderr.write(
      `passthru: listening on ${opts.host}: anyone who can reach it can see the input you gave\n`,
    );
  process.stdout.write("Press Ctrl-C to stop.\n");
  await new Promise<void>((resolve) => {
    const stop = () => {
      server.close(() => resolve());
      server.closeAllConnections();
    };
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
  return EXIT_OK;
}
