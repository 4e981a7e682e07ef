/**
 * In-kernel accesses to an IOAS, the iommufd_access half of drivers/iommu/iommufd/device.c
 * (Linux 6.12): a driver that reads and writes guest memory with the CPU instead of DMA
 * (an emulated device; the selftest's mock access) creates an access object, attaches it
 * to an IOAS, replaces or detaches it, pins pages under IOVAs (iommufd_access_pin_pages,
 * page-aligned, each area's protection checked) or copies bytes (iommufd_access_rw, any
 * alignment). It must give pins back when iommufd asks through ops->unmap: on an unmap of
 * a pinned area and when the access changes IOAS (every IOVA, 0..ULONG_MAX).
 *
 * The object is the driver's: it holds a user until iommufd_access_destroy(), so
 * IOMMU_DESTROY of its id is EBUSY; it holds the IOAS it is attached to (DESTROY of that
 * IOAS is EBUSY) and a reference on the context. An access that pins (needs_pin_pages)
 * raises the IOAS alignment to PAGE_SIZE.
 */
import { err } from "../../uapi/errno.js";
import type { Task } from "../core/task.js";
import { IOMMU_READ, IOMMU_WRITE } from "../iommu/domain.js";
import type { IoptAccess, IoptArea } from "./io_pagetable.js";
import { iommufdGetIoas, type Ioas } from "./ioas.js";
import type { IommufdCtx, IommufdObject } from "./main.js";
import { ioptAreaAddAccess, ioptAreaRemoveAccess, PAGE, ULONG_MAX } from "./pages.js";

/** IOMMUFD_ACCESS_RW_WRITE */
export const IOMMUFD_ACCESS_RW_WRITE = 1 << 0;
/** __IOMMUFD_ACCESS_RW_SLOW_PATH (CONFIG_IOMMUFD_TEST only) */
export const IOMMUFD_ACCESS_RW_SLOW_PATH = 1 << 2;

/** struct iommufd_access_ops */
export interface IommufdAccessOps {
  needsPinPages: boolean;
  unmap(iova: bigint, length: bigint): void;
}

/** struct iommufd_access */
export class IommufdAccess implements IommufdObject, IoptAccess {
  readonly type = "access";
  id = 0;
  users = 1;
  ioas: Ioas | null = null;
  /** The IOAS unpin_pages works on while a change of IOAS runs the unmap callback. */
  ioasUnpin: Ioas | null = null;
  ioptAccessListId = 0;
  readonly iovaAlignment: bigint;

  constructor(
    readonly ctx: IommufdCtx,
    readonly ops: IommufdAccessOps,
  ) {
    this.iovaAlignment = ops.needsPinPages ? PAGE : 1n;
  }

  /** iommufd_access_notify_unmap(): iommufd_lock_obj() fails once destruction began. */
  notifyUnmap(iova: bigint, length: bigint): void {
    if (!this.users) return;
    this.users++;
    this.ops.unmap(iova, length);
    this.users--;
  }

  /** iommufd_access_destroy_object() */
  destroy(): void {
    if (this.ioas) changeIoas(null, this, null);
    this.ctx.put();
  }
}

/** iommufd_access_change_ioas(): the unmap callback drops every pin of the old IOAS. */
function changeIoas(task: Task | null, access: IommufdAccess, newIoas: Ioas | null): number {
  const cur = access.ioas;
  if (cur !== access.ioasUnpin) return err("EBUSY");
  if (cur === newIoas) return 0;
  access.ioas = null;
  if (newIoas) {
    const id = newIoas.iopt.addAccess(task, access);
    if (id < 0) {
      access.ioas = cur;
      return id;
    }
    newIoas.users++;
    if (cur) removeFrom(access, cur);
    access.ioptAccessListId = id;
  } else if (cur) removeFrom(access, cur);
  access.ioas = newIoas;
  access.ioasUnpin = newIoas;
  return 0;
}

function removeFrom(access: IommufdAccess, ioas: Ioas): void {
  access.ops.unmap(0n, ULONG_MAX);
  ioas.iopt.removeAccess(access.ioptAccessListId);
  ioas.users--;
}

/** iommufd_access_change_ioas_id() */
function changeIoasId(task: Task | null, access: IommufdAccess, id: number): number {
  const ioas = iommufdGetIoas(access.ctx, id);
  if (typeof ioas === "number") return ioas;
  const rc = changeIoas(task, access, ioas);
  access.ctx.putObject(ioas);
  return rc;
}

/** iommufd_access_create(): the object, published at once, or -errno. */
export function iommufdAccessCreate(
  ctx: IommufdCtx,
  task: Task | null,
  ops: IommufdAccessOps,
): IommufdAccess | number {
  const access = new IommufdAccess(ctx, ops);
  const rc = ctx.alloc(task, access, "iommufd_access");
  if (rc) return rc;
  access.users++; // the driver is a user until iommufd_access_destroy()
  ctx.get();
  ctx.finalize(access);
  return access;
}

/** iommufd_access_destroy() */
export function iommufdAccessDestroy(access: IommufdAccess): void {
  access.ctx.remove(access, access.id);
}

/** iommufd_access_attach(): EINVAL (and a WARN) when already attached. */
export function iommufdAccessAttach(task: Task | null, access: IommufdAccess, id: number): number {
  if (access.ioas) return err("EINVAL");
  return changeIoasId(task, access, id);
}

/** iommufd_access_replace(): ENOENT when not attached. */
export function iommufdAccessReplace(task: Task | null, access: IommufdAccess, id: number): number {
  if (!access.ioas) return err("ENOENT");
  return changeIoasId(task, access, id);
}

/** iommufd_access_detach() */
export function iommufdAccessDetach(access: IommufdAccess): void {
  if (access.ioas) changeIoas(null, access, null);
}

/** iopt_area_iova_to_index() */
const toIndex = (area: IoptArea, iova: bigint) => Number(area.startByte(iova) / PAGE);

/** iommufd_access_unpin_pages(): undo a pin of exactly [iova, iova + length). */
export function iommufdAccessUnpinPages(access: IommufdAccess, iova: bigint, length: bigint): void {
  const last = iova + length - 1n;
  if (!length || last > ULONG_MAX || !access.ioasUnpin) return; // WARN_ON
  for (const s of access.ioasUnpin.iopt.contigAreas(iova, last).steps)
    ioptAreaRemoveAccess(s.area, toIndex(s.area, s.cur), toIndex(s.area, s.last));
}

/** check_area_prot() */
function checkAreaProt(area: IoptArea, flags: number): boolean {
  return (area.iommuProt & (flags & IOMMUFD_ACCESS_RW_WRITE ? IOMMU_WRITE : IOMMU_READ)) !== 0;
}

/**
 * iommufd_access_pin_pages(): the frames under [iova, iova + length), which whole pages
 * of the areas must cover without a gap; all or nothing.
 */
export function iommufdAccessPinPages(
  task: Task | null,
  access: IommufdAccess,
  iova: bigint,
  length: bigint,
  flags: number,
): number[] | number {
  // CONFIG_IOMMUFD_TEST: the driver's ops must support pinning.
  if (access.iovaAlignment !== PAGE) return err("EINVAL");
  if (!length) return err("EINVAL");
  const last = iova + length - 1n;
  if (last > ULONG_MAX) return err("EOVERFLOW");
  if (!access.ioas) return err("ENOENT");
  const { steps, done } = access.ioas.iopt.contigAreas(iova, last);
  const pfns: number[] = [];
  const held: [IoptArea, number, number][] = [];
  let rc = 0;
  for (const [i, s] of steps.entries()) {
    const areaDone = done && i === steps.length - 1;
    // iopt_area_contig_is_aligned()
    const aligned =
      s.area.startByte(s.cur) % PAGE === 0n &&
      (areaDone || s.area.startByte(s.area.last) % PAGE === PAGE - 1n);
    if (s.area.preventAccess || !aligned) rc = err("EINVAL");
    else if (!checkAreaProt(s.area, flags)) rc = err("EPERM");
    if (rc) break;
    const index = toIndex(s.area, s.cur);
    const lastIndex = toIndex(s.area, s.last);
    const got = ioptAreaAddAccess(
      task,
      s.area,
      index,
      lastIndex,
      (flags & IOMMUFD_ACCESS_RW_WRITE) !== 0,
    );
    if (typeof got === "number") {
      rc = got;
      break;
    }
    held.push([s.area, index, lastIndex]);
    pfns.push(...got);
  }
  if (!rc && !done) rc = err("ENOENT");
  if (rc) {
    for (const [area, index, lastIndex] of held) ioptAreaRemoveAccess(area, index, lastIndex);
    return rc;
  }
  return pfns;
}

/** iommufd_access_rw(): bytes to (write) or from `data` at [iova, iova + data.length). */
export function iommufdAccessRw(
  task: Task,
  access: IommufdAccess,
  iova: bigint,
  data: Uint8Array,
  flags: number,
): number {
  if (!data.length) return err("EINVAL");
  const last = iova + BigInt(data.length) - 1n;
  if (last > ULONG_MAX) return err("EOVERFLOW");
  if (!access.ioas) return err("ENOENT");
  const { steps, done } = access.ioas.iopt.contigAreas(iova, last);
  let off = 0;
  for (const s of steps) {
    if (s.area.preventAccess) return err("EINVAL");
    if (!checkAreaProt(s.area, flags)) return err("EPERM");
    const bytes = Number(s.last - s.cur + 1n);
    const rc = (s.area.pages as NonNullable<IoptArea["pages"]>).rwAccess(
      task,
      s.area.startByte(s.cur),
      data.subarray(off, off + bytes),
      (flags & IOMMUFD_ACCESS_RW_WRITE) !== 0,
      (flags & IOMMUFD_ACCESS_RW_SLOW_PATH) !== 0,
    );
    if (rc) return rc;
    off += bytes;
  }
  return done ? 0 : err("ENOENT");
}
