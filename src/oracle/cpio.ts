/**
 * The "newc" cpio format the kernel unpacks an initramfs from (Documentation/
 * driver-api/early-userspace/buffer-format.rst): a 110-byte ASCII header of 13 hex fields,
 * the NUL-terminated name padded to 4 bytes, the data padded to 4 bytes; a TRAILER!!!
 * entry ends the archive. Several gzip'd archives may follow one another: the kernel
 * unpacks them in order, so a case's program rides in a small archive after the cached one.
 */
import { gzipSync } from "node:zlib";

export type CpioEntry =
  | { name: string; kind: "dir" }
  | { name: string; kind: "file"; data: Buffer; mode?: number }
  | { name: string; kind: "link"; target: string };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

function header(ino: number, mode: number, size: number, name: string): Buffer {
  const f = (n: number) => n.toString(16).padStart(8, "0");
  const nameLen = Buffer.byteLength(name) + 1;
  const h =
    "070701" +
    f(ino) +
    f(mode) +
    f(0) + // uid
    f(0) + // gid
    f(1) + // nlink
    f(0) + // mtime
    f(size) +
    f(0) + // devmajor
    f(0) + // devminor
    f(0) + // rdevmajor
    f(0) + // rdevminor
    f(nameLen) +
    f(0); // check
  const head = Buffer.concat([Buffer.from(h, "ascii"), Buffer.from(name + "\0")]);
  return Buffer.concat([head, Buffer.alloc((4 - (head.length % 4)) % 4)]);
}

export function cpio(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  entries.forEach((e, i) => {
    const data =
      e.kind === "file" ? e.data : e.kind === "link" ? Buffer.from(e.target) : Buffer.alloc(0);
    const mode =
      e.kind === "dir"
        ? S_IFDIR | 0o755
        : e.kind === "link"
          ? S_IFLNK | 0o777
          : S_IFREG | (e.mode ?? 0o644);
    parts.push(header(i + 1, mode, data.length, e.name), data);
    parts.push(Buffer.alloc((4 - (data.length % 4)) % 4));
  });
  parts.push(header(0, 0, 0, "TRAILER!!!"));
  return Buffer.concat(parts);
}

export function cpioGz(entries: CpioEntry[], level = 6): Buffer {
  return gzipSync(cpio(entries), { level });
}
