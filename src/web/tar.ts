/**
 * A tar reader that needs nothing but Uint8Array, so snapshots open in the browser: POSIX
 * ustar (name split across `prefix`), GNU (`././@LongLink` entries of type L and K for long
 * names and link targets, as GNU tar and busybox write them) and pax extended headers
 * (type x, `path` and `linkpath` records, as tar-stream writes them). Regular files,
 * directories, symbolic links and hard links (given the data of the file they name) are
 * kept; devices and FIFOs are skipped, as a snapshot holds none.
 */

export type TarEntry =
  { kind: "file"; data: Uint8Array } | { kind: "link"; target: string } | { kind: "dir" };

export class TarError extends Error {}

const BLOCK = 512;
const latin1 = new TextDecoder("latin1");
const utf8 = new TextDecoder("utf-8");

/** A NUL-terminated header field. */
function field(b: Uint8Array, off: number, len: number, dec = utf8): string {
  const s = b.subarray(off, off + len);
  const end = s.indexOf(0);
  return dec.decode(end < 0 ? s : s.subarray(0, end));
}

/** An octal number field, or GNU base-256 when the high bit of the first byte is set. */
function number(b: Uint8Array, off: number, len: number): number {
  if ((b[off] as number) & 0x80) {
    let n = (b[off] as number) & 0x7f;
    for (let i = 1; i < len; i++) n = n * 256 + (b[off + i] as number);
    return n;
  }
  const t = field(b, off, len, latin1).trim();
  if (t === "") return 0;
  if (!/^[0-7]+$/.test(t)) throw new TarError(`bad octal field "${t}"`);
  return parseInt(t, 8);
}

function checksumOk(h: Uint8Array): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (h[i] as number);
  return sum === number(h, 148, 8);
}

/** pax records: "%d %s=%s\n", the length counting the whole record in bytes. */
function paxRecords(data: Uint8Array): Map<string, string> {
  const out = new Map<string, string>();
  let pos = 0;
  while (pos < data.length) {
    const sp = data.indexOf(0x20, pos);
    if (sp < 0) break;
    const len = Number(latin1.decode(data.subarray(pos, sp)));
    if (!Number.isInteger(len) || len <= 0) throw new TarError("bad pax record length");
    const rec = utf8.decode(data.subarray(sp + 1, pos + len - 1));
    const eq = rec.indexOf("=");
    if (eq > 0) out.set(rec.slice(0, eq), rec.slice(eq + 1));
    pos += len;
  }
  return out;
}

/** Names as a snapshot keeps them: no leading "./" or "/", no trailing "/". */
function clean(name: string): string {
  return name.replace(/^(\.\/|\/)+/, "").replace(/\/+$/, "");
}

/** Every entry of a tar archive, by path. */
export function readTar(bytes: Uint8Array): Map<string, TarEntry> {
  const entries = new Map<string, TarEntry>();
  let pos = 0;
  let longName: string | undefined;
  let longLink: string | undefined;
  let pax = new Map<string, string>();
  while (pos + BLOCK <= bytes.length) {
    const h = bytes.subarray(pos, pos + BLOCK);
    if (h.every((x) => x === 0)) break; // end of archive
    if (!checksumOk(h)) throw new TarError(`header checksum mismatch at byte ${pos}`);
    const type = String.fromCharCode(h[156] as number);
    const size = pax.has("size") ? Number(pax.get("size")) : number(h, 124, 12);
    const start = pos + BLOCK;
    const end = start + size;
    if (end > bytes.length) throw new TarError(`entry at byte ${pos} runs past the end`);
    const data = bytes.subarray(start, end);
    pos = start + Math.ceil(size / BLOCK) * BLOCK;
    const magic = latin1.decode(h.subarray(257, 263));
    if (type === "L") {
      longName = field(data, 0, data.length);
      continue;
    }
    if (type === "K") {
      longLink = field(data, 0, data.length);
      continue;
    }
    if (type === "x") {
      pax = paxRecords(data);
      continue;
    }
    if (type === "g") continue; // global pax header: nothing a snapshot needs
    const prefix = magic === "ustar\0" ? field(h, 345, 155) : "";
    const name = clean(
      pax.get("path") ?? longName ?? (prefix ? `${prefix}/` : "") + field(h, 0, 100),
    );
    const link = pax.get("linkpath") ?? longLink ?? field(h, 157, 100);
    longName = longLink = undefined;
    pax = new Map();
    if (!name) continue;
    if (type === "0" || type === "\0" || type === "7") entries.set(name, { kind: "file", data });
    else if (type === "5") entries.set(name, { kind: "dir" });
    else if (type === "2") entries.set(name, { kind: "link", target: link });
    else if (type === "1") {
      const target = entries.get(clean(link));
      entries.set(name, target?.kind === "file" ? target : { kind: "file", data });
    }
  }
  return entries;
}

/** gzip's magic number. */
export function isGzip(b: Uint8Array): boolean {
  return b[0] === 0x1f && b[1] === 0x8b;
}

/** ustar's magic at byte 257 (both "ustar\0" and GNU's "ustar  "). */
export function isTar(b: Uint8Array): boolean {
  return b.length >= 512 && latin1.decode(b.subarray(257, 262)) === "ustar";
}

/** Decompress gzip with the platform's DecompressionStream (browsers, and Node 18+). */
export async function gunzip(b: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([b.slice()]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}
