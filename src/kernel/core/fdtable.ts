/**
 * A process's file descriptor table (fs/file.c): the lowest free number is allocated,
 * close drops the table's reference, dup shares the open file.
 */
import { err } from "../../uapi/errno.js";
import type { File } from "./file.js";

/** RLIMIT_NOFILE default soft limit. */
const NR_OPEN = 1024;

export class FdTable {
  private readonly fds = new Map<number, File>();

  install(file: File): number {
    for (let fd = 0; fd < NR_OPEN; fd++) {
      if (!this.fds.has(fd)) {
        this.fds.set(fd, file);
        return fd;
      }
    }
    file.put();
    return err("EMFILE");
  }

  /** fdget(): the file, or undefined (EBADF) for a closed or negative fd. */
  get(fd: number): File | undefined {
    return this.fds.get(fd);
  }

  close(fd: number): number {
    const f = this.fds.get(fd);
    if (!f) return err("EBADF");
    this.fds.delete(fd);
    f.put();
    return 0;
  }

  closeAll(): void {
    for (const fd of [...this.fds.keys()].sort((a, b) => a - b)) this.close(fd);
  }

  get size(): number {
    return this.fds.size;
  }
}
