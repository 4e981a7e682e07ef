/**
 * The VFIO container emulation, drivers/iommu/iommufd/vfio_compat.c (Linux 6.12.117): the
 * type1 container ioctls on an iommufd (and on /dev/vfio/vfio when iommufd provides it),
 * acting on the context's compat IOAS, which a VFIO group creates when it is set on the
 * iommufd (VFIO_GROUP_SET_CONTAINER) and IOMMU_VFIO_IOAS selects, reads or clears.
 *
 * Where it differs from vfio_iommu_type1 (each visible to userspace):
 * - there is no container state to go through: mapping works before VFIO_SET_IOMMU and
 *   before any device is open, with nothing pinned until a device attaches (a bad vaddr
 *   fails then, not at MAP_DMA); SET_IOMMU only checks the type and, for TYPE1 (v1),
 *   disables large IOPTEs so that unmaps may cut mappings; it can be repeated and mixed;
 * - without a compat IOAS (no group set yet) the IOMMU ioctls and DMA_CC are ENODEV;
 * - MAP_DMA accepts neither READ nor WRITE (an IOMMU_CACHE-only mapping), rejects VADDR;
 *   UNMAP_DMA knows only ALL (GET_DIRTY_BITMAP and VADDR are EINVAL), a v2 unmap may not
 *   cut a mapping (ENOENT, where type1 says EINVAL) and an empty range is success with size
 *   0 (6.12.117: "iommufd: Make vfio_compat's unmap succeed if the range is empty");
 *   DIRTY_PAGES is ENOTTY;
 * - GET_INFO's chain is DMA_AVAIL (U32_MAX, first) then IOVA_RANGE, with no MIGRATION cap,
 *   and iova_pgsizes is every page size when no domain is attached;
 * - DMA_CC_IOMMU asks the IOAS's HWPTs (1 when none exists yet); NOIOMMU is reported with
 *   CONFIG_VFIO_NOIOMMU; UPDATE_VADDR and TYPE1_NESTING are 0;
 * - no-IOMMU mode (a VFIO no-IOMMU group set on the context, before any compat IOAS):
 *   TYPE1, TYPE1v2 and UNMAP_ALL are 0 (6.12.117), SET_IOMMU takes only NOIOMMU (EPERM
 *   without CAP_SYS_RAWIO) and no compat IOAS is created for a group;
 * - pinned memory is charged to the mm (locked_vm), as VFIO does.
 */
import { err } from "../../uapi/errno.js";
import * as U from "../../uapi/iommufd.js";
import * as V from "../../uapi/vfio.js";
import type { Task } from "../core/task.js";
import { IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE } from "../iommu/domain.js";
import { ioasMapUser, iommufdGetIoas, iommufdIoasAllocObj, type Ioas } from "./ioas.js";
import type { IommufdCtx, Ucmd } from "./main.js";
import { PAGE, ULONG_MAX } from "./pages.js";

/** get_compat_ioas(): a reference on the compat IOAS, or ENODEV. */
function getCompatIoas(ctx: IommufdCtx): Ioas | number {
  const ioas = ctx.vfioIoas;
  if (!ioas || !ioas.users) return err("ENODEV");
  ioas.users++;
  return ioas;
}

/** iommufd_vfio_compat_ioas_get_id() */
export function vfioCompatIoasGetId(ctx: IommufdCtx): number {
  const ioas = getCompatIoas(ctx);
  if (typeof ioas === "number") return ioas;
  ctx.putObject(ioas);
  return ioas.id;
}

/** iommufd_vfio_compat_set_no_iommu() */
export function vfioCompatSetNoIommu(ctx: IommufdCtx): number {
  if (ctx.vfioIoas) return err("EINVAL");
  ctx.noIommuMode = true;
  return 0;
}

/** iommufd_vfio_compat_ioas_create(): only a group's SET_CONTAINER creates it. */
export function vfioCompatIoasCreate(ctx: IommufdCtx, task: Task): number {
  const ioas = iommufdIoasAllocObj(ctx, task);
  if (typeof ioas === "number") return ioas;
  if (ctx.noIommuMode) {
    ctx.abort(ioas);
    return err("EINVAL");
  }
  if (ctx.vfioIoas && ctx.vfioIoas.users) {
    ctx.abort(ioas);
    return 0;
  }
  ctx.vfioIoas = ioas;
  ctx.finalize(ioas);
  return 0;
}

/** iommufd_vfio_ioas(): IOMMU_VFIO_IOAS GET / SET / CLEAR. */
export function iommufdVfioIoas(ucmd: Ucmd): number {
  const cmd = ucmd.decode(U.iommu_vfio_ioas);
  const ctx = ucmd.ctx;
  if (cmd.__reserved) return err("EOPNOTSUPP");
  switch (cmd.op) {
    case U.IOMMU_VFIO_IOAS_GET: {
      const ioas = getCompatIoas(ctx);
      if (typeof ioas === "number") return ioas;
      cmd.ioas_id = ioas.id;
      ctx.putObject(ioas);
      return ucmd.respond(U.iommu_vfio_ioas.encode(cmd));
    }
    case U.IOMMU_VFIO_IOAS_SET: {
      const ioas = iommufdGetIoas(ctx, cmd.ioas_id);
      if (typeof ioas === "number") return ioas;
      ctx.vfioIoas = ioas;
      ctx.putObject(ioas);
      return 0;
    }
    case U.IOMMU_VFIO_IOAS_CLEAR:
      ctx.vfioIoas = null;
      return 0;
    default:
      return err("EOPNOTSUPP");
  }
}

/** iommufd_vfio_map_dma() */
function mapDma(ctx: IommufdCtx, task: Task, arg: bigint): number {
  const minsz = V.vfio_iommu_type1_dma_map.end("size");
  const raw = task.mm.copyFromUser(arg, minsz);
  if (!raw) return err("EFAULT");
  const map = V.vfio_iommu_type1_dma_map.decode(raw);
  const supported = V.VFIO_DMA_MAP_FLAG_READ | V.VFIO_DMA_MAP_FLAG_WRITE;
  if (map.argsz < minsz || map.flags & ~supported) return err("EINVAL");
  let prot = IOMMU_CACHE;
  if (map.flags & V.VFIO_DMA_MAP_FLAG_READ) prot |= IOMMU_READ;
  if (map.flags & V.VFIO_DMA_MAP_FLAG_WRITE) prot |= IOMMU_WRITE;
  const ioas = getCompatIoas(ctx);
  if (typeof ioas === "number") return ioas;
  const rc = ioasMapUser(ctx, task, ioas, { v: map.iova }, map.vaddr, map.size, prot, false);
  ctx.putObject(ioas);
  return rc;
}

/** iommufd_vfio_unmap_dma(): size is written back, success or not. */
function unmapDma(ctx: IommufdCtx, task: Task, arg: bigint): number {
  const minsz = V.vfio_iommu_type1_dma_unmap.end("size");
  const raw = task.mm.copyFromUser(arg, minsz);
  if (!raw) return err("EFAULT");
  const unmap = V.vfio_iommu_type1_dma_unmap.decode(raw);
  if (unmap.argsz < minsz || unmap.flags & ~V.VFIO_DMA_UNMAP_FLAG_ALL) return err("EINVAL");
  const ioas = getCompatIoas(ctx);
  if (typeof ioas === "number") return ioas;
  const unmapped = { v: 0n };
  let rc: number;
  if (unmap.flags & V.VFIO_DMA_UNMAP_FLAG_ALL) {
    if (unmap.iova !== 0n || unmap.size !== 0n) {
      ctx.putObject(ioas);
      return err("EINVAL");
    }
    rc = ioas.iopt.unmapAll(unmapped);
  } else {
    rc = 0;
    if (ioas.iopt.disableLargePages) {
      // Cut at the last byte and just before the start (no cut needed at IOVA 0).
      const last = (unmap.iova + unmap.size - 1n) & ULONG_MAX;
      const before = (unmap.iova - 1n) & ULONG_MAX;
      rc = ioas.iopt.cutIova(task, unmap.iova ? [last, before] : [last]);
    }
    if (rc) {
      ctx.putObject(ioas);
      return rc;
    }
    rc = ioas.iopt.unmapIova(unmap.iova, unmap.size, unmapped);
  }
  unmap.size = unmapped.v;
  if (!task.mm.copyToUser(arg, V.vfio_iommu_type1_dma_unmap.encode(unmap))) rc = err("EFAULT");
  ctx.putObject(ioas);
  return rc;
}

/** iommufd_vfio_cc_iommu(): every paging HWPT of the compat IOAS enforces coherency. */
function ccIommu(ctx: IommufdCtx): number {
  const ioas = getCompatIoas(ctx);
  if (typeof ioas === "number") return ioas;
  const rc = ioas.hwptList.every((h) => h.enforceCacheCoherency) ? 1 : 0;
  ctx.putObject(ioas);
  return rc;
}

/** iommufd_vfio_check_extension() */
function checkExtension(ctx: IommufdCtx, type: bigint): number {
  switch (type) {
    case BigInt(V.VFIO_TYPE1_IOMMU):
    case BigInt(V.VFIO_TYPE1v2_IOMMU):
    case BigInt(V.VFIO_UNMAP_ALL):
      return ctx.noIommuMode ? 0 : 1;
    case BigInt(V.VFIO_NOIOMMU_IOMMU):
      return ctx.sys.config.vfioNoiommu ? 1 : 0;
    case BigInt(V.VFIO_DMA_CC_IOMMU):
      return ccIommu(ctx);
    default:
      return 0; // TYPE1_NESTING, UPDATE_VADDR, sPAPR, EEH, anything else
  }
}

/** iommufd_vfio_set_iommu(): TYPE1 (v1) turns large IOPTEs off so that unmaps can cut. */
function setIommu(ctx: IommufdCtx, task: Task, type: bigint): number {
  if (ctx.sys.config.vfioNoiommu && type === BigInt(V.VFIO_NOIOMMU_IOMMU) && ctx.noIommuMode)
    return task.capable("CAP_SYS_RAWIO") ? 0 : err("EPERM");
  if (
    (type !== BigInt(V.VFIO_TYPE1_IOMMU) && type !== BigInt(V.VFIO_TYPE1v2_IOMMU)) ||
    ctx.noIommuMode
  )
    return err("EINVAL");
  const ioas = getCompatIoas(ctx);
  if (typeof ioas === "number") return ioas;
  let rc = 0;
  if (type === BigInt(V.VFIO_TYPE1_IOMMU)) rc = ioas.iopt.disableLargePagesCmd();
  ctx.putObject(ioas);
  return rc;
}

/** iommufd_get_pagesizes(): the domains' common sizes, at least PAGE_SIZE granular. */
function getPagesizes(ioas: Ioas): bigint {
  const PAGE_MASK = ULONG_MAX & ~(PAGE - 1n);
  let bitmap = ULONG_MAX;
  for (const d of ioas.iopt.domains) bitmap &= d.pgsizeBitmap;
  if (bitmap & ~PAGE_MASK) {
    bitmap &= PAGE_MASK;
    bitmap |= PAGE;
  }
  return bitmap > ioas.iopt.iovaAlignment ? bitmap : ioas.iopt.iovaAlignment;
}

/**
 * iommufd_vfio_iommu_get_info(): the capabilities are written straight into the user's
 * buffer past the struct, as far as argsz reaches; argsz comes back as what all needs.
 */
function iommuGetInfo(ctx: IommufdCtx, task: Task, arg: bigint): number {
  const mm = task.mm;
  const C = V.vfio_iommu_type1_info;
  let minsz = C.end("iova_pgsizes");
  const raw = mm.copyFromUser(arg, minsz);
  if (!raw) return err("EFAULT");
  const info = C.decode(raw);
  if (info.argsz < minsz) return err("EINVAL");
  minsz = Math.min(info.argsz, C.size);
  const ioas = getCompatIoas(ctx);
  if (typeof ioas === "number") return ioas;
  const done = (rc: number) => {
    ctx.putObject(ioas);
    return rc;
  };
  info.flags = V.VFIO_IOMMU_INFO_PGSIZES;
  info.iova_pgsizes = getPagesizes(ioas);
  info.cap_offset = 0;

  const fillDmaAvail = (at: bigint | null, avail: number): number => {
    const cap = V.vfio_iommu_type1_info_dma_avail.encode({
      id: V.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
      version: 1,
      next: 0,
      avail: 0xffffffff,
    });
    if (at !== null && avail >= cap.length && !mm.copyToUser(at, cap)) return err("EFAULT");
    return cap.length;
  };
  const fillIova = (at: bigint | null, avail: number): number => {
    const ranges = ioas.iopt.usableRanges();
    const head = V.vfio_iommu_type1_info_cap_iova_range.size;
    const rsz = V.vfio_iova_range.size;
    ranges.forEach((r, i) => {
      if (at !== null && avail >= head + (i + 1) * rsz) {
        const elm = V.vfio_iova_range.encode({ start: r.start, end: r.last });
        if (!mm.copyToUser(at + BigInt(head + i * rsz), elm)) avail = -1;
      }
    });
    if (avail < 0) return err("EFAULT");
    const size = head + ranges.length * rsz;
    if (at !== null && avail >= size) {
      const cap = V.vfio_iommu_type1_info_cap_iova_range.encode({
        id: V.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
        version: 1,
        next: 0,
        nr_iovas: ranges.length,
        reserved: 0,
      });
      if (!mm.copyToUser(at, cap)) return err("EFAULT");
    }
    return size;
  };

  let total = C.size;
  let lastCap: bigint | null = null;
  for (const fill of [fillDmaAvail, fillIova]) {
    let capSize =
      info.argsz > total ? fill(arg + BigInt(total), info.argsz - total) : fill(null, 0);
    if (capSize < 0) return done(capSize);
    capSize = Math.ceil(capSize / 8) * 8;
    if (lastCap !== null && info.argsz >= total) {
      const next = new Uint8Array(4);
      new DataView(next.buffer).setUint32(0, total, true);
      if (!mm.copyToUser(lastCap + 4n, next)) return done(err("EFAULT"));
    }
    lastCap = arg + BigInt(total);
    total += capSize;
  }
  if (info.argsz >= total) info.cap_offset = C.size;
  info.argsz = total;
  info.flags |= V.VFIO_IOMMU_INFO_CAPS;
  if (!mm.copyToUser(arg, C.encode(info).subarray(0, minsz))) return done(err("EFAULT"));
  return done(0);
}

/** iommufd_vfio_ioctl(): anything else is ENOTTY (-ENOIOCTLCMD). */
export function iommufdVfioIoctl(ctx: IommufdCtx, task: Task, cmd: number, arg: bigint): number {
  switch (cmd) {
    case V.VFIO_GET_API_VERSION:
      return V.VFIO_API_VERSION;
    case V.VFIO_SET_IOMMU:
      return setIommu(ctx, task, arg);
    case V.VFIO_CHECK_EXTENSION:
      return checkExtension(ctx, arg);
    case V.VFIO_IOMMU_GET_INFO:
      return iommuGetInfo(ctx, task, arg);
    case V.VFIO_IOMMU_MAP_DMA:
      return mapDma(ctx, task, arg);
    case V.VFIO_IOMMU_UNMAP_DMA:
      return unmapDma(ctx, task, arg);
    default:
      return err("ENOTTY");
  }
}
