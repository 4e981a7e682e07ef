/**
 * Open files (struct file, fs/file_table.c): reference counted, shared by dup() and by
 * kernel holders such as kvm-vfio (get_file/fput); the last put calls ->release.
 * file_operations are a table per file kind, as in the kernel.
 */
import { err } from "../../uapi/errno.js";
import type { Task } from "./task.js";

export interface FileOperations<P = unknown> {
  /** What /proc/self/fd shows: "anon_inode:[vfio-device]", "/dev/vfio/vfio", ... */
  readonly name: string;
  ioctl?(file: File<P>, task: Task, cmd: number, arg: bigint): number;
  /** Reads into `out` (at most out.length bytes) from position pos; returns bytes or -errno. */
  read?(file: File<P>, task: Task, out: Uint8Array, pos: bigint): number;
  write?(file: File<P>, task: Task, data: Uint8Array, pos: bigint): number;
  /** Whether pread/pwrite are allowed (FMODE_PREAD/PWRITE); default yes. */
  readonly positional?: boolean;
  release?(file: File<P>): void;
  /**
   * ->mmap: accept a mapping of `length` bytes from page `pgoff` of the file (0 or -errno);
   * `fault` then gives the frame of each page (vm_ops->fault, a reference taken) or null.
   */
  mmap?(
    file: File<P>,
    task: Task,
    pgoff: number,
    length: number,
  ): { fault: (pgoff: number) => number | null } | number;
}

let nextIno = 1;

/**
 * Open file descriptions alive in one kernel (files_stat.nr_files), counted from a file's
 * first install into an fd table to its last put: what a leak check compares.
 */
export class FileCount {
  live = 0;
}

export class File<P = unknown> {
  private refs = 1;
  pos = 0n;
  /** Identity of the open file description, for debugging and ordering. */
  readonly ino = nextIno++;
  /** The kernel's count this file is in, once installed. */
  account: FileCount | null = null;

  constructor(
    readonly ops: FileOperations<P>,
    public priv: P,
    readonly flags: number,
  ) {}

  get count(): number {
    return this.refs;
  }

  get(): this {
    this.refs++;
    return this;
  }

  /** fput(): the last reference runs ->release. */
  put(): void {
    if (--this.refs !== 0) return;
    if (this.account) this.account.live--;
    this.ops.release?.(this);
  }
}

/** ENOTTY for a file kind without an ioctl (vfs_ioctl). */
export function noIoctl(): number {
  return err("ENOTTY");
}
