/**
 * The IOAS object and its ioctls, drivers/iommu/iommufd/ioas.c (Linux 6.12.117):
 * IOAS_ALLOC, IOAS_IOVA_RANGES, IOAS_ALLOW_IOVAS, IOAS_MAP, IOAS_COPY, IOAS_UNMAP and the
 * per-IOAS IOMMU_OPTION HUGE_PAGES. The checks come in the kernel's order: flags and
 * reserved fields (EOPNOTSUPP), values that do not fit an unsigned long (EOVERFLOW), no
 * permission bit (EINVAL), the object lookup (ENOENT), then the io_pagetable's own rules.
 * Every mapping is made with IOMMU_CACHE: iommufd has no non-coherent mapping.
 */
import { err } from "../../uapi/errno.js";
import * as U from "../../uapi/iommufd.js";
import type { Task } from "../core/task.js";
import { IOMMU_CACHE, IOMMU_READ, IOMMU_WRITE } from "../iommu/domain.js";
import type { HwptPaging } from "./hw_pagetable.js";
import { IoPagetable, type IovaRange } from "./io_pagetable.js";
import type { IommufdCtx, IommufdObject, Ucmd } from "./main.js";
import { ioptAllocPages, ULONG_MAX } from "./pages.js";

/** struct iommufd_ioas */
export class Ioas implements IommufdObject {
  readonly type = "ioas";
  id = 0;
  users = 1;
  readonly iopt: IoPagetable;
  /** Paging HWPTs on this IOAS (automatic and user-made), in creation order. */
  readonly hwptList: HwptPaging[] = [];

  constructor(readonly ctx: IommufdCtx) {
    this.iopt = new IoPagetable(ctx.sys.maxIovaAlignment);
  }

  /** iommufd_ioas_destroy() */
  destroy(): void {
    this.iopt.unmapAll({ v: 0n });
    this.iopt.destroyTable();
  }
}

/** iommufd_ioas_alloc() */
export function iommufdIoasAllocObj(ctx: IommufdCtx, task: Task | null): Ioas | number {
  const ioas = new Ioas(ctx);
  const r = ctx.alloc(task, ioas, "iommufd_ioas");
  return r || ioas;
}

/** iommufd_get_ioas() */
export function iommufdGetIoas(ctx: IommufdCtx, id: number): Ioas | number {
  return ctx.getObject(id, "ioas") as Ioas | number;
}

/** iommufd_ioas_alloc_ioctl() */
export function iommufdIoasAlloc(ucmd: Ucmd): number {
  const cmd = ucmd.decode(U.iommu_ioas_alloc);
  if (cmd.flags) return err("EOPNOTSUPP");
  const ioas = iommufdIoasAllocObj(ucmd.ctx, ucmd.task);
  if (typeof ioas === "number") return ioas;
  cmd.out_ioas_id = ioas.id;
  const rc = ucmd.respond(U.iommu_ioas_alloc.encode(cmd));
  if (rc) {
    ucmd.ctx.abortAndDestroy(ioas);
    return rc;
  }
  ucmd.ctx.finalize(ioas);
  return 0;
}

/** iommufd_ioas_iova_ranges(): EMSGSIZE when the array is too small, with the count needed. */
export function iommufdIoasIovaRanges(ucmd: Ucmd): number {
  const cmd = ucmd.decode(U.iommu_ioas_iova_ranges);
  if (cmd.__reserved) return err("EOPNOTSUPP");
  const ioas = iommufdGetIoas(ucmd.ctx, cmd.ioas_id);
  if (typeof ioas === "number") return ioas;
  const maxIovas = cmd.num_iovas;
  cmd.num_iovas = 0;
  cmd.out_iova_alignment = ioas.iopt.iovaAlignment;
  let rc = 0;
  for (const r of ioas.iopt.usableRanges()) {
    if (cmd.num_iovas < maxIovas) {
      const at = cmd.allowed_iovas + BigInt(cmd.num_iovas) * BigInt(U.iommu_iova_range.size);
      const elm = U.iommu_iova_range.encode({ start: r.start, last: r.last });
      if (!ucmd.task.mm.copyToUser(at, elm)) {
        rc = err("EFAULT");
        break;
      }
    }
    cmd.num_iovas++;
  }
  if (!rc) rc = ucmd.respond(U.iommu_ioas_iova_ranges.encode(cmd));
  if (!rc && cmd.num_iovas > maxIovas) rc = err("EMSGSIZE");
  ucmd.ctx.putObject(ioas);
  return rc;
}

/** iommufd_ioas_load_iovas(): ranges with start < last, not overlapping each other. */
function loadIovas(ucmd: Ucmd, at: bigint, num: number): IovaRange[] | number {
  const out: IovaRange[] = [];
  for (let i = 0; i < num; i++) {
    const raw = ucmd.task.mm.copyFromUser(
      at + BigInt(i) * BigInt(U.iommu_iova_range.size),
      U.iommu_iova_range.size,
    );
    if (!raw) return err("EFAULT");
    const r = U.iommu_iova_range.decode(raw);
    if (r.start >= r.last) return err("EINVAL");
    if (out.some((o) => o.start <= r.last && o.last >= r.start)) return err("EINVAL");
    if (ucmd.task.faults.should("slab", "iopt_allowed")) return err("ENOMEM");
    out.push({ start: r.start, last: r.last });
  }
  return out;
}

/** iommufd_ioas_allow_iovas(): replaces the allowed set atomically. */
export function iommufdIoasAllowIovas(ucmd: Ucmd): number {
  const cmd = ucmd.decode(U.iommu_ioas_allow_iovas);
  if (cmd.__reserved) return err("EOPNOTSUPP");
  const ioas = iommufdGetIoas(ucmd.ctx, cmd.ioas_id);
  if (typeof ioas === "number") return ioas;
  const ranges = loadIovas(ucmd, cmd.allowed_iovas, cmd.num_iovas);
  const rc = typeof ranges === "number" ? ranges : ioas.iopt.setAllowIova(ranges);
  ucmd.ctx.putObject(ioas);
  return rc;
}

/** conv_iommu_prot() */
export function convIommuProt(flags: number): number {
  let prot = IOMMU_CACHE;
  if (flags & U.IOMMU_IOAS_MAP_WRITEABLE) prot |= IOMMU_WRITE;
  if (flags & U.IOMMU_IOAS_MAP_READABLE) prot |= IOMMU_READ;
  return prot;
}

const MAP_FLAGS =
  U.IOMMU_IOAS_MAP_FIXED_IOVA | U.IOMMU_IOAS_MAP_WRITEABLE | U.IOMMU_IOAS_MAP_READABLE;

/**
 * iopt_map_user_pages() for an IOAS: the pages object for [uptr, uptr + length), then an
 * area at a fixed or allocated IOVA; `iova.v` is the IOVA chosen.
 */
export function ioasMapUser(
  ctx: IommufdCtx,
  task: Task,
  ioas: Ioas,
  iova: { v: bigint },
  uptr: bigint,
  length: bigint,
  prot: number,
  allocIova: boolean,
): number {
  const pages = ioptAllocPages(
    task,
    ctx.sys.userLockedVm,
    uptr,
    length,
    (prot & IOMMU_WRITE) !== 0,
  );
  if (typeof pages === "number") return pages;
  if (ctx.accountMode === "mm" && pages.accountMode === "user") pages.accountMode = "mm";
  return ioas.iopt.mapUserPages(task, pages, uptr, length, iova, prot, allocIova);
}

/** iommufd_ioas_map() */
export function iommufdIoasMap(ucmd: Ucmd): number {
  const cmd = ucmd.decode(U.iommu_ioas_map);
  if (cmd.flags & ~MAP_FLAGS || cmd.__reserved) return err("EOPNOTSUPP");
  if (cmd.iova >= ULONG_MAX || cmd.length >= ULONG_MAX) return err("EOVERFLOW");
  if (!(cmd.flags & (U.IOMMU_IOAS_MAP_WRITEABLE | U.IOMMU_IOAS_MAP_READABLE))) return err("EINVAL");
  const ioas = iommufdGetIoas(ucmd.ctx, cmd.ioas_id);
  if (typeof ioas === "number") return ioas;
  const iova = { v: cmd.iova };
  let rc = ioasMapUser(
    ucmd.ctx,
    ucmd.task,
    ioas,
    iova,
    cmd.user_va,
    cmd.length,
    convIommuProt(cmd.flags),
    !(cmd.flags & U.IOMMU_IOAS_MAP_FIXED_IOVA),
  );
  if (!rc) {
    cmd.iova = iova.v;
    rc = ucmd.respond(U.iommu_ioas_map.encode(cmd));
  }
  ucmd.ctx.putObject(ioas);
  return rc;
}

/** iommufd_ioas_copy(): the source's pages (no second pin) mapped again in the destination. */
export function iommufdIoasCopy(ucmd: Ucmd): number {
  const cmd = ucmd.decode(U.iommu_ioas_copy);
  if (cmd.flags & ~MAP_FLAGS) return err("EOPNOTSUPP");
  if (cmd.length >= ULONG_MAX || cmd.src_iova >= ULONG_MAX || cmd.dst_iova >= ULONG_MAX)
    return err("EOVERFLOW");
  if (!(cmd.flags & (U.IOMMU_IOAS_MAP_WRITEABLE | U.IOMMU_IOAS_MAP_READABLE))) return err("EINVAL");
  const src = iommufdGetIoas(ucmd.ctx, cmd.src_ioas_id);
  if (typeof src === "number") return src;
  const list = src.iopt.getPages(ucmd.task, cmd.src_iova, cmd.length);
  ucmd.ctx.putObject(src);
  if (typeof list === "number") return list;
  const dst = iommufdGetIoas(ucmd.ctx, cmd.dst_ioas_id);
  let rc: number;
  if (typeof dst === "number") {
    rc = dst;
  } else {
    const iova = { v: cmd.dst_iova };
    rc = dst.iopt.mapPages(
      ucmd.task,
      list,
      cmd.length,
      iova,
      convIommuProt(cmd.flags),
      !(cmd.flags & U.IOMMU_IOAS_MAP_FIXED_IOVA),
    );
    if (!rc) {
      cmd.dst_iova = iova.v;
      rc = ucmd.respond(U.iommu_ioas_copy.encode(cmd));
    }
    ucmd.ctx.putObject(dst);
  }
  IoPagetable.freePagesList(list);
  return rc;
}

/** iommufd_ioas_unmap(): (0, U64_MAX) is "all" and always succeeds; an empty range is ENOENT. */
export function iommufdIoasUnmap(ucmd: Ucmd): number {
  const cmd = ucmd.decode(U.iommu_ioas_unmap);
  const ioas = iommufdGetIoas(ucmd.ctx, cmd.ioas_id);
  if (typeof ioas === "number") return ioas;
  const unmapped = { v: 0n };
  let rc: number;
  if (cmd.iova === 0n && cmd.length === ULONG_MAX) {
    rc = ioas.iopt.unmapAll(unmapped);
  } else if (cmd.iova >= ULONG_MAX || cmd.length >= ULONG_MAX) {
    rc = err("EOVERFLOW");
  } else {
    rc = ioas.iopt.unmapIova(cmd.iova, cmd.length, unmapped);
    if (!rc && !unmapped.v) rc = err("ENOENT");
  }
  if (!rc) {
    cmd.length = unmapped.v;
    rc = ucmd.respond(U.iommu_ioas_unmap.encode(cmd));
  }
  ucmd.ctx.putObject(ioas);
  return rc;
}

/** iommufd_ioas_option(): HUGE_PAGES of the IOAS named by object_id. */
export function iommufdIoasOption(
  ucmd: Ucmd,
  cmd: ReturnType<typeof U.iommu_option.decode>,
): number {
  if (cmd.__reserved) return err("EOPNOTSUPP");
  const ioas = iommufdGetIoas(ucmd.ctx, cmd.object_id);
  if (typeof ioas === "number") return ioas;
  let rc: number;
  if (cmd.option_id !== U.IOMMU_OPTION_HUGE_PAGES) rc = err("EOPNOTSUPP");
  else if (cmd.op === U.IOMMU_OPTION_OP_GET) {
    cmd.val64 = ioas.iopt.disableLargePages ? 0n : 1n;
    rc = 0;
  } else if (cmd.op === U.IOMMU_OPTION_OP_SET) {
    if (cmd.val64 === 0n) rc = ioas.iopt.disableLargePagesCmd();
    else if (cmd.val64 === 1n) {
      ioas.iopt.enableLargePages();
      rc = 0;
    } else rc = err("EINVAL");
  } else rc = err("EOPNOTSUPP");
  ucmd.ctx.putObject(ioas);
  return rc;
}
