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
 * model keeps every pinned frame with the number of users of its index (filled areas and
 * in-kernel accesses alike), which gives the same pins, the same charges and the same
 * errors. In-kernel accesses (iopt_area_add_access) are recorded in the access_itree:
 * ranges of page indices, an exact repeat of a range sharing its record.
 *
 * The pages remember the mm that mapped them: pinning later, from whatever process, pins
 * from that mm (pin_user_pages_remote), and once it is gone (mmget_not_zero() fails) there
 * is nothing to pin: EFAULT. iopt_pages_rw_access() copies through the source mm's page
 * tables when the caller is its process, else one page through a short-term remote pin,
 * else (several pages, or the mm gone, or the test's SLOW_PATH) through the PFN reader:
 * the frames already pinned, the rest pinned for the copy without being charged.
 */
import { PAGE_SHIFT, PAGE_SIZE } from "../../machine/hw.js";
import { err } from "../../uapi/errno.js";
import type { Mm } from "../core/mm.js";
import type { Task } from "../core/task.js";
import type { IoptArea } from "./io_pagetable.js";

export const PAGE = BigInt(PAGE_SIZE);
export const ULONG_MAX = (1n << 64n) - 1n;

/** PAGE_SIZE / sizeof(struct page *): pages pinned per pin_user_pages_remote() call. */
const PIN_BATCH = 512;
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
  /** access_itree: in-kernel accesses' ranges of page indices, with their users. */
  readonly accesses: { start: number; last: number; users: number }[] = [];

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
   * charged (unless `charge` is false: the PFN reader's transient pins). All or nothing: on
   * failure nothing stays pinned or charged. Returns the frames.
   */
  pin(start: number, last: number, charge = true): number[] | number {
    const fresh: number[] = [];
    const pfns: number[] = [];
    let rc = 0;
    for (let idx = start; idx <= last && !rc;) {
      const held = this.pinned.get(idx);
      if (held) {
        pfns.push(held.pfn);
        idx++;
        continue;
      }
      // pfn_reader_user_pin() pins at most a page of struct page pointers at a time, so an
      // area far larger than the memory behind it fails at its first hole, not at its end.
      let n = 1;
      while (n < PIN_BATCH && idx + n <= last && !this.pinned.has(idx + n)) n++;
      // pfn_reader_user_pin(): mmget_not_zero() of a remote mm
      const got =
        this.sourceMm.alive && this.sourceMm.pin(this.uptr + BigInt(idx) * PAGE, n, this.writable);
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
      if (charge) rc = this.updatePinned();
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

  /** iopt_pages_rw_access(): `data` from (write) or into [startByte, startByte + length). */
  rwAccess(task: Task, startByte: bigint, data: Uint8Array, write: boolean, slow: boolean): number {
    const startIndex = Number(startByte / PAGE);
    const lastIndex = Number((startByte + BigInt(data.length) - 1n) / PAGE);
    const offset = Number(startByte % PAGE);
    if (write && !this.writable) return err("EPERM");
    if (slow || task.mm !== this.sourceMm) {
      if (startIndex === lastIndex) return this.rwPage(startIndex, offset, data, write);
      return this.rwSlow(startIndex, lastIndex, offset, data, write);
    }
    const at = this.uptr + startByte;
    if (write) return this.sourceMm.copyToUser(at, data) ? 0 : err("EFAULT");
    const got = this.sourceMm.copyFromUser(at, data.length);
    if (!got) return err("EFAULT");
    data.set(got);
    return 0;
  }

  /** iopt_pages_rw_page(): one page through a short-term pin of the source mm. */
  private rwPage(index: number, offset: number, data: Uint8Array, write: boolean): number {
    if (!this.sourceMm.alive) return this.rwSlow(index, index, offset, data, write);
    const got = this.sourceMm.pin(this.uptr + BigInt(index) * PAGE, 1, write, false);
    if (!got) return err("EFAULT");
    this.copyData(got, offset, data, write);
    this.sourceMm.unpin(got);
    return 0;
  }

  /** iopt_pages_rw_slow(): through the PFN reader, as a domain would see the pages. */
  private rwSlow(
    start: number,
    last: number,
    offset: number,
    data: Uint8Array,
    write: boolean,
  ): number {
    const pfns = this.pin(start, last, false);
    if (typeof pfns === "number") return pfns;
    this.copyData(pfns, offset, data, write);
    this.unpin(start, last);
    return 0;
  }

  /** batch_rw() / copy_data_page(): the bytes through the frames' kernel mapping. */
  private copyData(pfns: number[], offset: number, data: Uint8Array, write: boolean): void {
    const ram = this.sourceMm.pages.ram;
    const size = this.sourceMm.pages.pageSize;
    let done = 0;
    for (const pfn of pfns) {
      const n = Math.min(data.length - done, size - offset);
      const at = pfn * size + offset;
      if (write) ram.write(at, data.subarray(done, done + n));
      else data.set(ram.read(at, n), done);
      done += n;
      offset = 0;
    }
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

/**
 * iopt_area_add_access(): an in-kernel access pins page indices [start, last] of the
 * area's pages; an exact repeat of a range already held only counts one more user.
 * Returns the frames.
 */
export function ioptAreaAddAccess(
  task: Task | null,
  area: IoptArea,
  start: number,
  last: number,
  write: boolean,
): number[] | number {
  const pages = area.pages as IoptPages;
  if (write && !pages.writable) return err("EPERM");
  const held = pages.accesses.find((a) => a.start === start && a.last === last);
  if (held) {
    area.numAccesses++;
    held.users++;
    return pages.frames(start, last);
  }
  if (task?.faults.should("slab", "iopt_pages_access")) return err("ENOMEM");
  const pfns = pages.pin(start, last);
  if (typeof pfns === "number") return pfns;
  pages.accesses.push({ start, last, users: 1 });
  area.numAccesses++;
  return pfns;
}

/** iopt_area_remove_access(): the last user of a range unpins what nothing else holds. */
export function ioptAreaRemoveAccess(area: IoptArea, start: number, last: number): void {
  const pages = area.pages as IoptPages;
  const i = pages.accesses.findIndex((a) => a.start === start && a.last === last);
  const held = pages.accesses[i];
  if (!held) return; // WARN_ON(!access)
  area.numAccesses--;
  if (--held.users) return;
  pages.accesses.splice(i, 1);
  pages.unpin(start, last);
}
