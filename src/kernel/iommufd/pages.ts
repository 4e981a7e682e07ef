/**
 * iopt_pages, drivers/iommu/iommufd/pages.c (Linux 6.12): a linear chunk of one process's
 * user VA that areas of one or more IOASes map. Pages are pinned only when something needs
 * the PFNs: an area filled into at least one iommu_domain (there is no eager pinning:
 * IOAS_MAP without a domain records the VA and nothing else). A page is pinned once however
 * many areas and domains use it, and the pin count is charged to the owner's locked memory
 * when it changes (do_update_pinned): to the user's locked_vm checked against the source
 * task's RLIMIT_MEMLOCK (IOPT_PAGES_ACCOUNT_USER, the default), to the mm's locked_vm
 * (IOPT_PAGES_ACCOUNT_MM, the VFIO-compatible mode), or not at all for a creator holding
 * CAP_IPC_LOCK (IOPT_PAGES_ACCOUNT_NONE).
 *
 * The kernel reads PFNs in batches and keeps them in the storage domain or an xarray; the
 * model keeps every pinned frame with the number of users of its index, which gives the
 * same pins, the same charges and the same errors.
 */
import { PAGE_SHIFT, PAGE_SIZE } from "../../machine/hw.js";
import { err } from "../../uapi/errno.js";
import type { Mm } from "../core/mm.js";
import type { Task } from "../core/task.js";

export const PAGE = BigInt(PAGE_SIZE);
export const ULONG_MAX = (1n << 64n) - 1n;
/** SIZE_MAX on 64-bit. */
const SIZE_MAX = ULONG_MAX;

export type AccountMode = "none" | "user" | "mm";

/** The per-user locked_vm of struct user_struct, keyed by uid, one table per kernel. */
export class UserLockedVm {
  private readonly byUid = new Map<number, number>();
  get(uid: number): number {
    return this.byUid.get(uid) ?? 0;
  }
  set(uid: number, v: number): void {
    if (v) this.byUid.set(uid, v);
    else this.byUid.delete(uid);
  }
}

export class IoptPages {
  /** kref */
  refs = 1;
  readonly uptr: bigint;
  readonly npages: number;
  accountMode: AccountMode;
  readonly sourceTask: Task;
  readonly sourceMm: Mm;
  readonly sourceUid: number;
  /** Index → pinned frame and how many users (filled areas) hold it. */
  readonly pinned = new Map<number, { pfn: number; users: number }>();
  npinned = 0;
  lastNpinned = 0;

  constructor(
    uptr: bigint,
    length: bigint,
    readonly writable: boolean,
    task: Task,
    private readonly userVm: UserLockedVm,
  ) {
    this.uptr = uptr - (uptr % PAGE);
    this.npages = Number((length + (uptr - this.uptr) + PAGE - 1n) / PAGE);
    this.accountMode = task.capable("CAP_IPC_LOCK") ? "none" : "user";
    this.sourceTask = task;
    this.sourceMm = task.mm;
    this.sourceUid = task.uid;
  }

  get(): this {
    this.refs++;
    return this;
  }

  /** iopt_put_pages(); the last put finds nothing pinned (iopt_release_pages WARNs). */
  put(): void {
    this.refs--;
  }

  /**
   * Pin [start, last] (page indices) for one more user: pages nobody holds yet come from
   * the source mm (pin_user_pages with FOLL_WRITE when writable), then the new pin count is
   * charged. All or nothing: on failure nothing stays pinned or charged. Returns the frames.
   */
  pin(start: number, last: number): number[] | number {
    const fresh: number[] = [];
    const pfns: number[] = [];
    let rc = 0;
    for (let idx = start; idx <= last;) {
      const held = this.pinned.get(idx);
      if (held) {
        pfns.push(held.pfn);
        idx++;
        continue;
      }
      let n = 1;
      while (idx + n <= last && !this.pinned.has(idx + n)) n++;
      const got = this.sourceMm.pin(this.uptr + BigInt(idx) * PAGE, n, this.writable);
      if (!got) {
        rc = err("EFAULT");
        break;
      }
      for (let i = 0; i < n; i++) {
        this.pinned.set(idx + i, { pfn: got[i] as number, users: 0 });
        fresh.push(idx + i);
        pfns.push(got[i] as number);
      }
      idx += n;
    }
    if (!rc) {
      this.npinned += fresh.length;
      rc = this.updatePinned();
      if (rc) this.npinned -= fresh.length;
    }
    if (rc) {
      for (const idx of fresh) {
        this.sourceMm.unpin([(this.pinned.get(idx) as { pfn: number }).pfn]);
        this.pinned.delete(idx);
      }
      return rc;
    }
    for (let idx = start; idx <= last; idx++) (this.pinned.get(idx) as { users: number }).users++;
    return pfns;
  }

  /** The frames of [start, last], which a user already holds pinned. */
  frames(start: number, last: number): number[] {
    const out: number[] = [];
    for (let idx = start; idx <= last; idx++)
      out.push((this.pinned.get(idx) as { pfn: number }).pfn);
    return out;
  }

  /** Drop one user of [start, last]; pages nobody holds any more are unpinned and uncharged. */
  unpin(start: number, last: number): void {
    for (let idx = start; idx <= last; idx++) {
      const p = this.pinned.get(idx);
      if (!p) continue;
      if (--p.users > 0) continue;
      this.sourceMm.unpin([p.pfn]);
      this.pinned.delete(idx);
      this.npinned--;
    }
    this.updateUnpinned();
  }

  /** pfn_reader_user_update_pinned() after pinning: charge the growth, -errno if over. */
  private updatePinned(): number {
    if (this.npinned === this.lastNpinned) return 0;
    if (this.npinned > this.lastNpinned) {
      if (this.sourceTask.faults.should("slab", "iopt_pages_account")) return err("ENOMEM");
      return this.doUpdatePinned(this.npinned - this.lastNpinned, true);
    }
    return this.doUpdatePinned(this.lastNpinned - this.npinned, false);
  }

  /** update_unpinned() */
  private updateUnpinned(): void {
    if (this.npinned >= this.lastNpinned) return;
    this.doUpdatePinned(this.lastNpinned - this.npinned, false);
  }

  /** do_update_pinned(): incr/decr_user_locked_vm or update_mm_locked_vm. */
  private doUpdatePinned(npages: number, inc: boolean): number {
    const limit = Number(this.sourceTask.rlimitMemlock >> BigInt(PAGE_SHIFT));
    if (this.accountMode === "user") {
      const cur = this.userVm.get(this.sourceUid);
      if (inc && cur + npages > limit) return err("ENOMEM");
      this.userVm.set(this.sourceUid, inc ? cur + npages : Math.max(0, cur - npages));
    } else if (this.accountMode === "mm") {
      // __account_locked_vm(mm, npages, inc, task, false)
      const cur = this.sourceMm.lockedVm;
      if (inc && cur + npages > limit) return err("ENOMEM");
      this.sourceMm.lockedVm = inc ? cur + npages : Math.max(0, cur - npages);
    }
    this.lastNpinned = this.npinned;
    return 0;
  }
}

/** iopt_alloc_pages(): EINVAL for a zero or too long length, EOVERFLOW when uptr wraps. */
export function ioptAllocPages(
  task: Task,
  userVm: UserLockedVm,
  uptr: bigint,
  length: bigint,
  writable: boolean,
): IoptPages | number {
  if (length > SIZE_MAX - PAGE || length === 0n) return err("EINVAL");
  if (uptr + length > ULONG_MAX) return err("EOVERFLOW");
  if (task.faults.should("slab", "iopt_pages")) return err("ENOMEM");
  return new IoptPages(uptr, length, writable, task, userVm);
}
