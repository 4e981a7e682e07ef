/**
 * A process's file descriptor table (fs/file.c): the lowest free number is allocated,
 * close drops the table's reference, dup shares the open file.
 */
import { err } from "../../uapi/errno.js";
import type { FaultInject } from "./fault_inject.js";
import { FileCount, type File } from "./file.js";

/** RLIMIT_NOFILE default soft limit. */
const NR_OPEN = 1024;

export class FdTable {
  private readonly fds = new Map<number, File>();

  constructor(
    private readonly account = new FileCount(),
    private readonly faults: FaultInject | null = null,
  ) {}

  install(file: File): number {
    if (this.faults?.should("fd", file.ops.name)) {
      file.put();
      return err("ENOMEM");
    }
    for (let fd = 0; fd < NR_OPEN; fd++) {
      if (!this.fds.has(fd)) {
        this.fds.set(fd, file);
        if (!file.account) {
          file.account = this.account;
          this.account.live++;
        }
        return fd;
      }
    }
    file.put();
    return err("EMFILE");
  }

  /** dup_fd(): a child's table, the same numbers referring to the same open files. */
  copy(): FdTable {
    const t = new FdTable(this.account, this.faults);
    for (const [fd, f] of this.fds) t.fds.set(fd, f.get());
    return t;
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
