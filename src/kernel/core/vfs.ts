/**
 * Path lookup and open for the three trees the model serves (fs/namei.c, fs/open.c):
 * devtmpfs character devices (/dev), procfs text files (/proc) and sysfs (kernfs,
 * fs/kernfs/file.c, fs/sysfs/file.c): directories, attributes with show/store, binary
 * attributes read at an offset, and symbolic links resolved while walking a path.
 *
 * kernfs rules kept: opening for write an attribute without store, or for read one
 * without show, is EACCES even for root (kernfs_fop_open); a store gets the bytes
 * written, and a write of nothing returns 0 without calling it (sysfs_kf_write); a show is
 * produced once per open and then read in pieces.
 */
import { err } from "../../uapi/errno.js";
import { O_ACCMODE, O_RDONLY, O_WRONLY } from "../../uapi/syscalls.js";
import { File, type FileOperations } from "./file.js";
import type { Task } from "./task.js";

export interface KAttr {
  kind: "attr";
  show?: (task: Task) => string | number;
  store?: (value: Uint8Array, task: Task) => number;
  /** A binary attribute (config, rom): read/written at an offset. */
  readAt?: (pos: number, count: number, task: Task) => Uint8Array | number;
  writeAt?: (pos: number, data: Uint8Array, task: Task) => number;
}
export interface KLink {
  kind: "link";
  /** Absolute path of the target. */
  target: () => string;
}
export class KDir {
  readonly kind = "dir";
  readonly children = new Map<string, KNode>();
}
export type KNode = KDir | KAttr | KLink;

export interface CharDev {
  open(task: Task, flags: number): File | number;
}

const MAX_SYMLINKS = 40;

function split(path: string): string[] {
  return path.split("/").filter((p) => p && p !== ".");
}

/** The whole namespace: one root with /sys (kernfs nodes), /dev and /proc. */
export class Vfs {
  readonly root = new KDir();
  readonly devices = new Map<string, CharDev>();

  /** Create a node at an absolute path, making parent directories. */
  add(path: string, node: KNode): KNode {
    const parts = split(path);
    const name = parts.pop() as string;
    let dir = this.root;
    for (const p of parts) {
      let next = dir.children.get(p);
      if (!next) {
        next = new KDir();
        dir.children.set(p, next);
      }
      if (next.kind !== "dir") throw new Error(`vfs: ${path}: ${p} is not a directory`);
      dir = next;
    }
    dir.children.set(name, node);
    return node;
  }

  dir(path: string): KDir {
    const n = this.lookup(path, true);
    if (n && n !== "loop" && n.node.kind === "dir") return n.node;
    return this.add(path, new KDir()) as KDir;
  }

  remove(path: string): void {
    const parts = split(path);
    const name = parts.pop() as string;
    const parent = this.lookup("/" + parts.join("/"), true);
    if (parent && parent !== "loop" && parent.node.kind === "dir")
      parent.node.children.delete(name);
  }

  /** Walk a path, following links (the last one only if `follow`). */
  lookup(path: string, follow: boolean): { node: KNode; path: string } | "loop" | null {
    let parts = split(path);
    let cur: KNode = this.root;
    let at: string[] = [];
    let hops = 0;
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i] as string;
      if (p === "..") {
        at.pop();
        const up = this.lookup("/" + at.join("/"), true);
        cur = up && up !== "loop" ? up.node : this.root;
        continue;
      }
      if (cur.kind !== "dir") return null;
      const next = cur.children.get(p);
      if (!next) return null;
      const last = i === parts.length - 1;
      if (next.kind === "link" && (!last || follow)) {
        if (++hops > MAX_SYMLINKS) return "loop";
        parts = [...split(next.target()), ...parts.slice(i + 1)];
        cur = this.root;
        at = [];
        i = -1;
        continue;
      }
      cur = next;
      at.push(p);
    }
    return { node: cur, path: "/" + at.join("/") };
  }

  open(task: Task, path: string, flags: number): File | number {
    const dev = this.devices.get(path);
    if (dev) return dev.open(task, flags);
    const found = this.lookup(path, true);
    if (found === "loop") return err("ELOOP");
    if (!found) return err("ENOENT");
    const n = found.node;
    if (n.kind === "dir")
      return (flags & O_ACCMODE) === O_RDONLY ? new File(DIR_OPS, null, flags) : err("EISDIR");
    if (n.kind === "link") return err("ELOOP");
    const acc = flags & O_ACCMODE;
    const canRead = !!(n.show || n.readAt);
    const canWrite = !!(n.store || n.writeAt);
    if ((acc !== O_WRONLY && !canRead) || (acc !== O_RDONLY && !canWrite)) return err("EACCES");
    return new File<KOpen>(ATTR_OPS, { attr: n, shown: null }, flags);
  }

  /**
   * readlink(2): sysfs links read as paths relative to the link's directory, up to the
   * closest directory that holds the target's parent (kernfs_get_target_path), so a link to
   * an ancestor still ends in its name ("../../../0000:04:01.0").
   */
  readlink(path: string): string | number {
    const found = this.lookup(path, false);
    if (found === "loop") return err("ELOOP");
    if (!found) return err("ENOENT");
    if (found.node.kind !== "link") return err("EINVAL");
    const from = split(found.path).slice(0, -1);
    const to = split(found.node.target());
    let common = 0;
    while (common < from.length && common < to.length - 1 && from[common] === to[common]) common++;
    return [...from.slice(common).map(() => ".."), ...to.slice(common)].join("/");
  }
}

interface KOpen {
  attr: KAttr;
  /** seq_file buffer: the show output, produced at the first read. */
  shown: Uint8Array | null;
}

const DIR_OPS: FileOperations<null> = { name: "dir" };

const ATTR_OPS: FileOperations<KOpen> = {
  name: "sysfs",
  read(file, task, out, pos) {
    const { attr } = file.priv;
    if (attr.readAt) {
      const r = attr.readAt(Number(pos), out.length, task);
      if (typeof r === "number") return r;
      out.set(r);
      return r.length;
    }
    if (!file.priv.shown) {
      const s = (attr.show as NonNullable<KAttr["show"]>)(task);
      if (typeof s === "number") return s;
      file.priv.shown = new TextEncoder().encode(s);
    }
    const src = file.priv.shown.subarray(Math.min(Number(pos), file.priv.shown.length));
    const n = Math.min(src.length, out.length);
    out.set(src.subarray(0, n));
    return n;
  },
  write(file, task, data, pos) {
    const { attr } = file.priv;
    if (attr.writeAt) return attr.writeAt(Number(pos), data, task);
    // sysfs_kf_write: a store sees the whole buffer from offset 0, at most a page.
    if (!data.length) return 0;
    return (attr.store as NonNullable<KAttr["store"]>)(data.subarray(0, 4096), task);
  },
};

/** Text of a store() buffer, as the kernel's sysfs_streq/strim would see it. */
export function storeText(value: Uint8Array): string {
  return new TextDecoder().decode(value);
}

/**
 * kstrtoul(s, 0) (lib/kstrtox.c): an optional "+", then 0x hex, 0 octal or decimal digits,
 * an optional newline and nothing else; null where the kernel says -EINVAL or -ERANGE.
 */
export function kstrtoul(s: string): bigint | null {
  const m = /^\+?(0x[0-9a-f]+|0[0-7]*|[1-9][0-9]*)\n?$/i.exec(s);
  if (!m) return null;
  const d = m[1] as string;
  const v = BigInt(/^0[0-7]/.test(d) ? `0o${d.slice(1)}` : d);
  return v < 1n << 64n ? v : null;
}
