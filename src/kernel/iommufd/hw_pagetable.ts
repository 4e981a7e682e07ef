/**
 * Hardware page tables, drivers/iommu/iommufd/hw_pagetable.c (Linux 6.12.117): a HWPT wraps
 * an iommu_domain. A paging HWPT belongs to an IOAS, whose every mapping it holds; it is made
 * by IOMMU_HWPT_ALLOC or automatically when a device attaches to the IOAS. A nested HWPT sits
 * on a nest-parent paging HWPT with a driver-specific stage-1 table.
 *
 * Cache coherency is decided once, when the HWPT is made: for a device whose IOMMU can
 * enforce coherency (IOMMU_CAP_ENFORCE_CACHE_COHERENCY: VT-d ECAP.SC, always on AMD-Vi) the
 * domain is switched to blocking No-Snoop before any mapping exists (the VT-d SNP bit in
 * every leaf). Such a HWPT then refuses devices behind an IOMMU without the capability (the
 * driver's attach fails EINVAL, and an automatic attach tries or makes another HWPT). A
 * HWPT made for a device without the capability never enforces, and may be shared later by
 * devices that have it: those devices then do non-coherent DMA although KVM, which asks the
 * device and not the HWPT, counts them as coherent (vfio_file_enforced_coherent()).
 */
import { PAGE_SIZE } from "../../machine/hw.js";
import { err } from "../../uapi/errno.js";
import * as U from "../../uapi/iommufd.js";
import type { Task } from "../core/task.js";
import {
  iommuDomainFree,
  iommuPagingDomainAlloc,
  type IommuDomain,
  type IommuUserData,
} from "../iommu/domain.js";
import {
  devIommuOps,
  hwPagetableAttach,
  hwPagetableDetach,
  iommufdGetDevice,
  type IommufdDevice,
} from "./device.js";
import type { Ioas } from "./ioas.js";
import type { IommufdCtx, IommufdObject, Ucmd } from "./main.js";
import { ULONG_MAX } from "./pages.js";

/** struct iommufd_hw_pagetable: either kind. */
export type Hwpt = HwptPaging | HwptNested;

/** struct iommufd_hwpt_paging */
export class HwptPaging implements IommufdObject {
  readonly type = "hwpt_paging";
  id = 0;
  users = 1;
  domain!: IommuDomain;
  autoDomain = false;
  enforceCacheCoherency = false;
  msiCookie = false;
  nestParent = false;
  /** On ioas.hwptList (hwpt_item) and added to the IOAS's table. */
  listed = false;
  /** The fault object attached with IOMMU_HWPT_FAULT_ID_VALID. */
  fault: IommufdObject | null = null;

  constructor(readonly ioas: Ioas) {}

  /** iommufd_hwpt_paging_destroy() */
  destroy(): void {
    if (this.listed) {
      const list = this.ioas.hwptList;
      list.splice(list.indexOf(this), 1);
      this.listed = false;
      this.ioas.iopt.tableRemoveDomain(this.domain);
    }
    destroyCommon(this);
    this.ioas.users--;
  }
}

/** struct iommufd_hwpt_nested */
export class HwptNested implements IommufdObject {
  readonly type = "hwpt_nested";
  id = 0;
  users = 1;
  domain!: IommuDomain;
  fault: IommufdObject | null = null;
  constructor(readonly parent: HwptPaging) {}

  /** iommufd_hwpt_nested_destroy() */
  destroy(): void {
    destroyCommon(this);
    this.parent.users--;
  }
}

/** __iommufd_hwpt_destroy() */
function destroyCommon(hwpt: Hwpt): void {
  if (hwpt.domain) iommuDomainFree(hwpt.domain);
  if (hwpt.fault) hwpt.fault.users--;
}

/** find_hwpt_paging(): the HWPT itself, or a nested one's parent. */
export function findHwptPaging(hwpt: Hwpt): HwptPaging | null {
  return hwpt instanceof HwptPaging ? hwpt : hwpt.parent;
}

/** iommufd_hw_pagetable_put(): an automatic HWPT is destroyed with its last user. */
export function iommufdHwPagetablePut(ctx: IommufdCtx, hwpt: Hwpt): void {
  if (hwpt instanceof HwptPaging && hwpt.autoDomain) {
    ctx.remove(hwpt, hwpt.id);
    return;
  }
  hwpt.users--;
}

/** iommufd_hwpt_paging_enforce_cc() */
function enforceCc(hp: HwptPaging): number {
  if (hp.enforceCacheCoherency) return 0;
  const d = hp.domain;
  if (d.ops.enforceCacheCoherency) hp.enforceCacheCoherency = d.ops.enforceCacheCoherency(d);
  return hp.enforceCacheCoherency ? 0 : err("EINVAL");
}

const PAGING_FLAGS = U.IOMMU_HWPT_ALLOC_NEST_PARENT | U.IOMMU_HWPT_ALLOC_DIRTY_TRACKING;

/**
 * iommufd_hwpt_paging_alloc(): a paging HWPT on `ioas` for `idev`, enforcing coherency when
 * the device can, added to the IOAS (every mapping filled in). Unpublished: the caller
 * finalizes it or aborts it.
 */
export function hwptPagingAlloc(
  ctx: IommufdCtx,
  task: Task | null,
  ioas: Ioas,
  idev: IommufdDevice,
  flags: number,
  immediateAttach: boolean,
  userData: IommuUserData | null,
): HwptPaging | number {
  const ops = devIommuOps(idev.dev);
  if (!ops) return err("ENODEV");
  if ((flags || userData) && !ops.domainAllocUser) return err("EOPNOTSUPP");
  if (flags & ~PAGING_FLAGS) return err("EOPNOTSUPP");
  if (flags & U.IOMMU_HWPT_ALLOC_DIRTY_TRACKING && !ops.capable(idev.dev.pdev, "dirty-tracking"))
    return err("EOPNOTSUPP");
  const hp = new HwptPaging(ioas);
  let rc = ctx.alloc(task, hp, "iommufd_hwpt_paging");
  if (rc) return rc;
  ioas.users++;
  hp.nestParent = (flags & U.IOMMU_HWPT_ALLOC_NEST_PARENT) !== 0;
  const domain = ops.domainAllocUser
    ? ops.domainAllocUser(idev.dev.pdev, flags, null, userData)
    : iommuPagingDomainAlloc(ops);
  if (typeof domain === "number") {
    ctx.abortAndDestroy(hp);
    return domain;
  }
  domain.owner = ops;
  hp.domain = domain;
  if (idev.enforceCacheCoherency) {
    rc = enforceCc(hp);
    if (rc) {
      ctx.abortAndDestroy(hp); // a driver bug: the kernel WARNs
      return rc;
    }
  }
  if (immediateAttach) {
    rc = hwPagetableAttach(task, hp, idev);
    if (rc) {
      ctx.abortAndDestroy(hp);
      return rc;
    }
  }
  rc = ioas.iopt.tableAddDomain(task, domain);
  if (rc) {
    if (immediateAttach) hwPagetableDetach(idev);
    ctx.abortAndDestroy(hp);
    return rc;
  }
  ioas.hwptList.push(hp);
  hp.listed = true;
  return hp;
}

/** iommufd_hwpt_nested_alloc(): needs a nest-parent HWPT and driver data. */
function hwptNestedAlloc(
  ctx: IommufdCtx,
  task: Task,
  parent: HwptPaging,
  idev: IommufdDevice,
  flags: number,
  userData: IommuUserData,
): HwptNested | number {
  const ops = devIommuOps(idev.dev);
  if (flags & ~U.IOMMU_HWPT_FAULT_ID_VALID || !userData.len || !ops?.domainAllocUser)
    return err("EOPNOTSUPP");
  if (parent.autoDomain || !parent.nestParent || parent.domain.owner !== ops) return err("EINVAL");
  const hn = new HwptNested(parent);
  const rc = ctx.alloc(task, hn, "iommufd_hwpt_nested");
  if (rc) return rc;
  parent.users++;
  const domain = ops.domainAllocUser(
    idev.dev.pdev,
    flags & ~U.IOMMU_HWPT_FAULT_ID_VALID,
    parent.domain,
    userData,
  );
  if (typeof domain === "number") {
    ctx.abortAndDestroy(hn);
    return domain;
  }
  domain.owner = ops;
  hn.domain = domain;
  if (!domain.ops.cacheInvalidateUser) {
    ctx.abortAndDestroy(hn);
    return err("EINVAL");
  }
  return hn;
}

/** iommufd_hwpt_alloc() */
export function iommufdHwptAlloc(ucmd: Ucmd): number {
  const cmd = ucmd.decode(U.iommu_hwpt_alloc);
  const ctx = ucmd.ctx;
  if (cmd.__reserved) return err("EOPNOTSUPP");
  if (
    (cmd.data_type === U.IOMMU_HWPT_DATA_NONE && cmd.data_len) ||
    (cmd.data_type !== U.IOMMU_HWPT_DATA_NONE && !cmd.data_len)
  )
    return err("EINVAL");
  const idev = iommufdGetDevice(ctx, cmd.dev_id);
  if (typeof idev === "number") return idev;
  const pt = ctx.getObject(cmd.pt_id);
  let rc: number;
  if (typeof pt === "number") {
    rc = err("EINVAL");
  } else {
    rc = hwptAllocOn(ucmd, cmd, idev, pt);
    ctx.putObject(pt);
  }
  ctx.putObject(idev);
  return rc;
}

function hwptAllocOn(
  ucmd: Ucmd,
  cmd: ReturnType<typeof U.iommu_hwpt_alloc.decode>,
  idev: IommufdDevice,
  pt: IommufdObject,
): number {
  const ctx = ucmd.ctx;
  const userData: IommuUserData = {
    type: cmd.data_type,
    len: cmd.data_len,
    bytes: cmd.data_len ? ucmd.task.mm.copyFromUser(cmd.data_uptr, cmd.data_len) : null,
  };
  let hwpt: Hwpt | number;
  if (pt.type === "ioas") {
    hwpt = hwptPagingAlloc(
      ctx,
      ucmd.task,
      pt as Ioas,
      idev,
      cmd.flags,
      false,
      userData.len ? userData : null,
    );
  } else if (pt.type === "hwpt_paging") {
    hwpt = hwptNestedAlloc(ctx, ucmd.task, pt as HwptPaging, idev, cmd.flags, userData);
  } else {
    return err("EINVAL");
  }
  if (typeof hwpt === "number") return hwpt;
  if (cmd.flags & U.IOMMU_HWPT_FAULT_ID_VALID) {
    const fault = ctx.getObject(cmd.fault_id, "fault");
    if (typeof fault === "number") {
      ctx.abortAndDestroy(hwpt);
      return fault;
    }
    hwpt.fault = fault;
    fault.users++;
    ctx.putObject(fault);
  }
  cmd.out_hwpt_id = hwpt.id;
  const rc = ucmd.respond(U.iommu_hwpt_alloc.encode(cmd));
  if (rc) {
    ctx.abortAndDestroy(hwpt);
    return rc;
  }
  ctx.finalize(hwpt);
  return 0;
}

/** iommufd_hwpt_set_dirty_tracking() → iopt_set_dirty_tracking() */
export function iommufdHwptSetDirtyTracking(ucmd: Ucmd): number {
  const cmd = ucmd.decode(U.iommu_hwpt_set_dirty_tracking);
  if (cmd.flags & ~U.IOMMU_HWPT_DIRTY_TRACKING_ENABLE) return err("EOPNOTSUPP");
  const hp = ucmd.ctx.getObject(cmd.hwpt_id, "hwpt_paging");
  if (typeof hp === "number") return hp;
  const domain = (hp as HwptPaging).domain;
  const enable = (cmd.flags & U.IOMMU_HWPT_DIRTY_TRACKING_ENABLE) !== 0;
  let rc: number;
  const ops = domain.dirtyOps;
  if (!ops) rc = err("EOPNOTSUPP");
  else {
    // iopt_clear_dirty_data(): start from a clean snapshot.
    if (enable)
      for (const a of (hp as HwptPaging).ioas.iopt.areas)
        if (a.pages) ops.readAndClearDirty(domain, a.start, a.length, false, () => undefined);
    rc = ops.setDirtyTracking(domain, enable);
  }
  ucmd.ctx.putObject(hp);
  return rc;
}

/**
 * iommufd_check_iova_range(), with the zero-length check 6.12's stable updates added (as
 * 6.12.117 has it: EINVAL before the overflow checks).
 */
function checkIovaRange(
  iovaAlignment: bigint,
  b: ReturnType<typeof U.iommu_hwpt_get_dirty_bitmap.decode>,
): number {
  if (!b.length) return err("EINVAL");
  const last = b.iova + b.length - 1n;
  if (last > ULONG_MAX || last < 0n) return err("EOVERFLOW");
  if (b.iova & (iovaAlignment - 1n) || (last + 1n) & (iovaAlignment - 1n)) return err("EINVAL");
  if (!b.page_size) return err("EINVAL");
  if (b.iova & (b.page_size - 1n) || (last + 1n) & (b.page_size - 1n)) return err("EINVAL");
  return 0;
}

/**
 * iommufd_hwpt_get_dirty_bitmap(): one bit per page_size of [iova, iova + length), written
 * into the user's bitmap (set bits only: iova_bitmap ORs into what is there).
 */
export function iommufdHwptGetDirtyBitmap(ucmd: Ucmd): number {
  const cmd = ucmd.decode(U.iommu_hwpt_get_dirty_bitmap);
  if (cmd.flags & ~U.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR || cmd.__reserved)
    return err("EOPNOTSUPP");
  const obj = ucmd.ctx.getObject(cmd.hwpt_id, "hwpt_paging");
  if (typeof obj === "number") return obj;
  const hp = obj as HwptPaging;
  let rc = checkIovaRange(hp.ioas.iopt.iovaAlignment, cmd);
  if (!rc) rc = readAndClearDirty(ucmd, hp, cmd);
  ucmd.ctx.putObject(hp);
  return rc;
}

function readAndClearDirty(
  ucmd: Ucmd,
  hp: HwptPaging,
  b: ReturnType<typeof U.iommu_hwpt_get_dirty_bitmap.decode>,
): number {
  const domain = hp.domain;
  const ops = domain.dirtyOps;
  if (!ops) return err("EOPNOTSUPP");
  const noClear = (b.flags & U.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR) !== 0;
  const mm = ucmd.task.mm;
  let bad = false;
  const record = (iova: bigint, length: bigint) => {
    for (let a = iova; a < iova + length && a <= b.iova + b.length - 1n; a += b.page_size) {
      if (a < b.iova) continue;
      const bit = (a - b.iova) / b.page_size;
      const at = b.data + bit / 8n;
      const cur = mm.copyFromUser(at, 1);
      if (!cur || !mm.copyToUser(at, Uint8Array.of((cur[0] as number) | (1 << Number(bit % 8n)))))
        bad = true;
    }
  };
  // __iommu_read_and_clear_dirty() over the contiguous areas of the range
  const last = b.iova + b.length - 1n;
  for (const a of hp.ioas.iopt.areas) {
    if (a.last < b.iova || a.start > last || !a.pages) continue;
    const s = a.start > b.iova ? a.start : b.iova;
    const e = a.last < last ? a.last : last;
    const r = ops.readAndClearDirty(domain, s, e - s + 1n, noClear, record);
    if (r) return r;
  }
  return bad ? err("EFAULT") : 0;
}

/* 6.12.117: an arbitrary entry_num cap, far above any realistic invalidation batch */
const IOMMU_HWPT_INVALIDATE_ENTRY_NUM_MAX = 1 << 19;

/**
 * iommufd_hwpt_invalidate(): entry_num always comes back as the number handled. Since
 * 6.12.117 entry_len above PAGE_SIZE or entry_num above 2^19 is EINVAL.
 */
export function iommufdHwptInvalidate(ucmd: Ucmd): number {
  const cmd = ucmd.decode(U.iommu_hwpt_invalidate);
  let done = 0;
  let rc: number;
  if (cmd.__reserved) rc = err("EOPNOTSUPP");
  else if (
    cmd.entry_num &&
    (!cmd.data_uptr ||
      !cmd.entry_len ||
      cmd.entry_len > PAGE_SIZE ||
      cmd.entry_num > IOMMU_HWPT_INVALIDATE_ENTRY_NUM_MAX)
  )
    rc = err("EINVAL");
  else {
    const obj = ucmd.ctx.getObject(cmd.hwpt_id, "hwpt_nested");
    if (typeof obj === "number") rc = obj;
    else {
      const hn = obj as HwptNested;
      const entries: Uint8Array[] = [];
      rc = 0;
      for (let i = 0; i < cmd.entry_num && !rc; i++) {
        const e = ucmd.task.mm.copyFromUser(
          cmd.data_uptr + BigInt(i) * BigInt(cmd.entry_len),
          cmd.entry_len,
        );
        if (!e) rc = err("EFAULT");
        else entries.push(e);
      }
      if (!rc) {
        const r = (
          hn.domain.ops.cacheInvalidateUser as NonNullable<
            IommuDomain["ops"]["cacheInvalidateUser"]
          >
        )(hn.domain, cmd.data_type, entries);
        rc = r.rc;
        done = r.done;
      }
      ucmd.ctx.putObject(hn);
    }
  }
  cmd.entry_num = done;
  if (ucmd.respond(U.iommu_hwpt_invalidate.encode(cmd))) return err("EFAULT");
  return rc;
}
