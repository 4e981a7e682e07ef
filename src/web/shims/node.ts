/**
 * Stand-ins for the Node built-ins (and tar-stream) that library modules import for their
 * file-system entry points, which the browser build never calls: loading from bytes goes
 * through src/web/input.ts instead. The web build (src/cli/webbuild.ts) aliases node:fs,
 * node:path, node:url, node:zlib, node:stream and tar-stream to this module; anything
 * that does reach one of these functions fails loudly, naming it.
 */
function unavailable(name: string): () => never {
  return () => {
    throw new Error(`${name} is not available in the browser`);
  };
}

export const existsSync = (): boolean => false;
export const readFileSync = unavailable("fs.readFileSync");
export const writeFileSync = unavailable("fs.writeFileSync");
export const readdirSync = unavailable("fs.readdirSync");
export const statSync = unavailable("fs.statSync");
export const lstatSync = unavailable("fs.lstatSync");
export const readlinkSync = unavailable("fs.readlinkSync");
export const realpathSync = unavailable("fs.realpathSync");
export const mkdirSync = unavailable("fs.mkdirSync");
export const rmSync = unavailable("fs.rmSync");
export const openSync = unavailable("fs.openSync");
export const readSync = unavailable("fs.readSync");
export const writeSync = unavailable("fs.writeSync");
export const closeSync = unavailable("fs.closeSync");
export const gunzipSync = unavailable("zlib.gunzipSync");
export const gzipSync = unavailable("zlib.gzipSync");
export const homedir = (): string => "/";
/** Module-level `fileURLToPath(new URL(..., import.meta.url))` must evaluate: a harmless path. */
export const fileURLToPath = (u: string | URL): string => String(u).replace(/^file:\/\//, "");
export const join = (...p: string[]): string => p.join("/").replace(/\/+/g, "/");
export const resolve = join;
export const dirname = (p: string): string => p.replace(/\/[^/]*$/, "") || "/";
/** node:path's basename(path, ext) and extname(path), for POSIX paths. */
export function basename(p: string, ext?: string): string {
  const base = p.replace(/\/+$/, "").split("/").pop() ?? "";
  return ext && base.endsWith(ext) && base !== ext ? base.slice(0, -ext.length) : base;
}
export function extname(p: string): string {
  const base = basename(p);
  const dot = base.lastIndexOf(".");
  return dot <= 0 ? "" : base.slice(dot);
}
export const relative = unavailable("path.relative");
export const Readable = { from: unavailable("stream.Readable.from") };

const tar = { extract: unavailable("tar-stream extract"), pack: unavailable("tar-stream pack") };
export default tar;
