/**
 * How the analyzer and the planner read and write sysfs: the same few operations a shell
 * script would use (read a file, read a link, write a value), over two backends — the
 * kernel model's syscall surface (a process spawned on the booted model: open/pread/
 * readlink/write, so permissions and errnos are the kernel's) and the real filesystem of
 * this machine, below a configurable root so tests can point it at a fake tree.
 */
import { closeSync, openSync, readSync, readlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import { errnoName } from "../../uapi/errno.js";
import {
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  O_RDONLY,
  O_WRONLY,
  PROT_READ,
  PROT_WRITE,
  type Syscalls,
} from "../../uapi/syscalls.js";

export interface SysfsAccess {
  /** Whole file as bytes, or null when it cannot be opened or read. */
  bytes(path: string): Uint8Array | null;
  /** Text with one trailing newline removed, or null. */
  text(path: string): string | null;
  /** Last path component of a symbolic link's target, or null when not a link. */
  link(path: string): string | null;
  /** A symbolic link's whole target text (relative, as readlink(2) gives it), or null. */
  target(path: string): string | null;
  /** Write a value; null on success, else the errno name (EBUSY, EPERM, ...). */
  write(path: string, value: string): string | null;
}

const CHUNK = 4096;

function trimNl(b: Uint8Array | null): string | null {
  if (!b) return null;
  const s = Buffer.from(b).toString("latin1");
  return s.endsWith("\n") ? s.slice(0, -1) : s;
}

const lastPart = (t: string) => t.replace(/\/$/, "").split("/").pop() as string;

/** sysfs as one process on the kernel model sees it. */
export function modelSysfs(sys: Syscalls): SysfsAccess {
  const len = 64 * 1024;
  const buf = sys.mmap(0n, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
  if (buf < 0n) throw new Error(`mmap failed: ${errnoName(Number(-buf))}`);
  const bytes = (path: string): Uint8Array | null => {
    const fd = sys.open(path, O_RDONLY);
    if (fd < 0) return null;
    const chunks: Uint8Array[] = [];
    let pos = 0n;
    for (;;) {
      const n = sys.pread(fd, buf, CHUNK, pos);
      if (n < 0) {
        sys.close(fd);
        return null;
      }
      if (n === 0) break;
      chunks.push((sys.peek(buf, n) as Uint8Array).slice());
      pos += BigInt(n);
      if (pos > 1n << 20n) break;
    }
    sys.close(fd);
    return Buffer.concat(chunks);
  };
  return {
    bytes,
    text: (path) => trimNl(bytes(path)),
    link: (path) => {
      const t = sys.readlink(path);
      return typeof t === "string" ? lastPart(t) : null;
    },
    target: (path) => {
      const t = sys.readlink(path);
      return typeof t === "string" ? t : null;
    },
    write: (path, value) => {
      const fd = sys.open(path, O_WRONLY);
      if (fd < 0) return errnoName(-fd);
      const data = new TextEncoder().encode(value);
      sys.poke(buf, data);
      const n = sys.write(fd, buf, data.length);
      sys.close(fd);
      return n < 0 ? errnoName(-n) : null;
    },
  };
}

/** The real filesystem below `root` ("/" on a live host). */
export function liveSysfs(root = "/"): SysfsAccess {
  const abs = (p: string) => join(root, p);
  const bytes = (path: string): Uint8Array | null => readAll(abs(path));
  return {
    bytes,
    text: (path) => trimNl(bytes(path)),
    link: (path) => {
      try {
        return lastPart(readlinkSync(abs(path)));
      } catch {
        return null;
      }
    },
    target: (path) => {
      try {
        return readlinkSync(abs(path));
      } catch {
        return null;
      }
    },
    write: (path, value) => {
      let fd: number;
      try {
        fd = openSync(abs(path), "w");
      } catch (e) {
        return (e as NodeJS.ErrnoException).code ?? "EIO";
      }
      try {
        writeSync(fd, value);
        return null;
      } catch (e) {
        return (e as NodeJS.ErrnoException).code ?? "EIO";
      } finally {
        closeSync(fd);
      }
    },
  };
}

/**
 * Read a file to its end with read(2), as `cat` does: sysfs attributes report a size (4096)
 * that is not their length, and procfs files report 0.
 */
export function readAll(path: string, max = 1 << 20): Uint8Array | null {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return null;
  }
  try {
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const b = Buffer.alloc(CHUNK);
      const n = readSync(fd, b, 0, CHUNK, null);
      if (n <= 0) break;
      chunks.push(b.subarray(0, n));
      total += n;
      if (total >= max) break;
    }
    return Buffer.concat(chunks);
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}
