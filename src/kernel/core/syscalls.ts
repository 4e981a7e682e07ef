/**
 * The model's syscall surface for one task (fs/open.c, fs/read_write.c, fs/ioctl.c,
 * mm/mmap.c, fs/eventfd.c, fs/stat.c readlink): every call returns a value or -errno,
 * never throws. Data moves through the task's own memory with copy_from_user and
 * copy_to_user, so a bad pointer is EFAULT exactly where Linux would say so.
 */
import { err } from "../../uapi/errno.js";
import { fromPowerpc } from "../../uapi/ioctl.js";
import {
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_FIXED_NOREPLACE,
  MAP_SHARED,
  O_ACCMODE,
  O_RDONLY,
  O_WRONLY,
  type Syscalls,
} from "../../uapi/syscalls.js";
import { newEventFd } from "./eventfd.js";
import type { File } from "./file.js";
import type { Task } from "./task.js";
import type { Vfs } from "./vfs.js";

/** MAX_RW_COUNT: reads and writes are clamped to this. */
const MAX_RW_COUNT = 0x7ffff000;

export class TaskSyscalls implements Syscalls {
  /** The architecture's ioctl number layout ("powerpc" on a POWER kernel). */
  ioctlLayout: "generic" | "powerpc" = "generic";

  constructor(
    readonly task: Task,
    private readonly vfs: Vfs,
  ) {}

  private fd(fd: number): File | undefined {
    return this.task.files.get(fd);
  }

  open(path: string, flags: number): number {
    const f = this.vfs.open(this.task, path, flags);
    if (typeof f === "number") return f;
    return this.task.files.install(f);
  }

  close(fd: number): number {
    return this.task.files.close(fd);
  }

  dup(fd: number): number {
    const f = this.fd(fd);
    if (!f) return err("EBADF");
    return this.task.files.install(f.get());
  }

  ioctl(fd: number, request: number, arg: bigint): number {
    const f = this.fd(fd);
    if (!f) return err("EBADF");
    if (!f.ops.ioctl) return err("ENOTTY");
    // A powerpc process encodes requests in powerpc's _IOC layout (uapi/ioctl.ts).
    const cmd = this.ioctlLayout === "powerpc" ? fromPowerpc(request >>> 0) : request >>> 0;
    return f.ops.ioctl(f, this.task, cmd, BigInt.asUintN(64, arg));
  }

  private rw(fd: number, buf: bigint, count: number, pos: bigint | null, write: boolean): number {
    const f = this.fd(fd);
    if (!f) return err("EBADF");
    const acc = f.flags & O_ACCMODE;
    if (write ? acc === O_RDONLY : acc === O_WRONLY) return err("EBADF");
    if (pos !== null && f.ops.positional === false) return err("ESPIPE");
    if (pos !== null && pos < 0n) return err("EINVAL");
    const n = Math.min(count, MAX_RW_COUNT);
    const at = pos ?? f.pos;
    let r: number;
    if (write) {
      if (!f.ops.write) return err("EINVAL");
      const data = this.task.mm.copyFromUser(buf, n);
      if (!data) return err("EFAULT");
      r = f.ops.write(f, this.task, data, at);
    } else {
      if (!f.ops.read) return err("EINVAL");
      const out = new Uint8Array(n);
      r = f.ops.read(f, this.task, out, at);
      if (r > 0 && !this.task.mm.copyToUser(buf, out.subarray(0, r))) return err("EFAULT");
    }
    if (r > 0 && pos === null) f.pos += BigInt(r);
    return r;
  }

  read(fd: number, buf: bigint, count: number): number {
    return this.rw(fd, buf, count, null, false);
  }
  write(fd: number, buf: bigint, count: number): number {
    return this.rw(fd, buf, count, null, true);
  }
  pread(fd: number, buf: bigint, count: number, offset: bigint): number {
    return this.rw(fd, buf, count, offset, false);
  }
  pwrite(fd: number, buf: bigint, count: number, offset: bigint): number {
    return this.rw(fd, buf, count, offset, true);
  }

  mmap(addr: bigint, length: number, prot: number, flags: number, fd: number, offset = 0n): bigint {
    const shared = (flags & MAP_SHARED) !== 0;
    if (!(flags & MAP_ANONYMOUS)) {
      const f = this.fd(fd);
      if (!f) return BigInt(err("EBADF"));
      if (!f.ops.mmap) return BigInt(err("ENODEV"));
      const page = BigInt(this.task.mm.pageSize);
      if (offset % page !== 0n) return BigInt(err("EINVAL"));
      const m = f.ops.mmap(f, this.task, Number(offset / page), length);
      if (typeof m === "number") return BigInt(m);
      const fixedFile = (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) !== 0;
      const pg0 = Number(offset / page);
      return this.task.mm.mmapFile(
        fixedFile ? addr : null,
        length,
        prot,
        (i) => m.fault(pg0 + i),
        shared,
      );
    }
    const fixed = (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) !== 0;
    return this.task.mm.mmapAnon(fixed ? addr : null, length, prot, shared);
  }

  munmap(addr: bigint, length: number): number {
    return this.task.mm.munmap(addr, length);
  }

  eventfd(initval: number, flags: number): number {
    return this.task.files.install(newEventFd(initval, flags));
  }

  readlink(path: string): string | number {
    return this.vfs.readlink(path);
  }

  peek(addr: bigint, len: number): Uint8Array | null {
    return this.task.mm.copyFromUser(addr, len);
  }

  poke(addr: bigint, data: Uint8Array): boolean {
    return this.task.mm.copyToUser(addr, data);
  }
}
