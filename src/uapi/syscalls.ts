/**
 * The syscall surface every userspace client uses, with two implementations: the kernel
 * model (kernel/core/syscalls.ts) and, where the host allows, a real Linux kernel.
 * Results follow the raw syscall convention: a negative number is -errno.
 * Addresses are user virtual addresses (bigint, 64-bit).
 */
export const O_RDONLY = 0o0;
export const O_WRONLY = 0o1;
export const O_RDWR = 0o2;
export const O_ACCMODE = 0o3;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;

export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_FIXED = 0x10;
export const MAP_ANONYMOUS = 0x20;
export const MAP_FIXED_NOREPLACE = 0x100000;

export interface Syscalls {
  open(path: string, flags: number): number;
  close(fd: number): number;
  dup(fd: number): number;
  ioctl(fd: number, request: number, arg: bigint): number;
  read(fd: number, buf: bigint, count: number): number;
  write(fd: number, buf: bigint, count: number): number;
  pread(fd: number, buf: bigint, count: number, offset: bigint): number;
  pwrite(fd: number, buf: bigint, count: number, offset: bigint): number;
  /** Returns the mapped address, or -errno as a negative bigint. */
  mmap(
    addr: bigint,
    length: number,
    prot: number,
    flags: number,
    fd: number,
    offset: bigint,
  ): bigint;
  munmap(addr: bigint, length: number): number;
  eventfd(initval: number, flags: number): number;
  /** readlink(2): the link target, or -errno. */
  readlink(path: string): string | number;
  /** The CPU's loads and stores of this process's own memory (null: the access faults). */
  peek(addr: bigint, len: number): Uint8Array | null;
  poke(addr: bigint, data: Uint8Array): boolean;
}
