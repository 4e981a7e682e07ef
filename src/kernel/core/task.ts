/**
 * A process (struct task_struct with its cred, rlimits, mm and files): what the kernel
 * checks a caller against — capabilities (include/uapi/linux/capability.h), the uid, and
 * RLIMIT_MEMLOCK for pinned memory.
 */
import type { FaultInject } from "./fault_inject.js";
import { FdTable } from "./fdtable.js";
import type { FileCount } from "./file.js";
import { Mm } from "./mm.js";
import type { PageAllocator } from "./page_alloc.js";

export type Capability =
  "CAP_SYS_ADMIN" | "CAP_IPC_LOCK" | "CAP_SYS_RAWIO" | "CAP_NET_ADMIN" | "CAP_SYS_RESOURCE";

export const ALL_CAPS: readonly Capability[] = [
  "CAP_SYS_ADMIN",
  "CAP_IPC_LOCK",
  "CAP_SYS_RAWIO",
  "CAP_NET_ADMIN",
  "CAP_SYS_RESOURCE",
];

export interface TaskOptions {
  uid?: number;
  caps?: Iterable<Capability>;
  /** RLIMIT_MEMLOCK in bytes; default 8 MiB (the systemd default). */
  memlock?: bigint;
}

export class Task {
  readonly files: FdTable;
  readonly mm: Mm;
  /** The kernel's fault injection, for the allocations made on this task's behalf. */
  readonly faults: FaultInject;
  readonly uid: number;
  readonly caps: Set<Capability>;
  rlimitMemlock: bigint;

  constructor(
    readonly pid: number,
    pages: PageAllocator,
    opts: TaskOptions = {},
    /** The kernel's count of open files (the fd table counts what it installs). */
    fileCount?: FileCount,
    /** A forked child's copies of its parent's fd table and address space. */
    inherited?: { files: FdTable; mm: Mm },
  ) {
    this.faults = pages.faults;
    this.files = inherited?.files ?? new FdTable(fileCount, pages.faults);
    this.mm = inherited?.mm ?? new Mm(pages);
    this.uid = opts.uid ?? 0;
    this.caps = new Set(opts.caps ?? (this.uid === 0 ? ALL_CAPS : []));
    this.rlimitMemlock = opts.memlock ?? 8n << 20n;
  }

  /**
   * copy_process() for fork(): the child has this task's credentials and limits, a copy
   * of its fd table (dup_fd) and of its address space (dup_mmap); null when memory for the
   * copy runs out (ENOMEM).
   */
  fork(pid: number): Task | null {
    const mm = this.mm.fork();
    if (!mm) return null;
    return new Task(
      pid,
      this.mm.pages,
      { uid: this.uid, caps: this.caps, memlock: this.rlimitMemlock },
      undefined,
      { files: this.files.copy(), mm },
    );
  }

  capable(cap: Capability): boolean {
    return this.caps.has(cap);
  }

  /** exit: close every fd, then drop the address space. */
  exit(): void {
    this.files.closeAll();
    this.mm.destroy();
  }
}
