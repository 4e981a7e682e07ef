/**
 * Devices bound to iommufd, drivers/iommu/iommufd/device.c (Linux 6.12.117): bind (IOMMU
 * coherency required, isolated MSI unless iommufd.allow_unsafe_interrupts, device-level DMA
 * ownership shared by the devices of one group bound to the same context), attach to an
 * IOAS (through an automatic HWPT: an existing automatic one that accepts the device, EINVAL
 * meaning "try the next", else a new one) or to a HWPT, replace without passing through the
 * blocking domain, detach; the device's reserved regions become reserved IOVA of the IOAS
 * for as long as it is attached; automatic HWPTs die with their last device. The group is
 * attached once, by its first device (iommufd_group); IOMMU_GET_HW_INFO.
 *
 * A device object is owned by its driver (VFIO): it holds one user for the driver and one
 * per attachment, so IOMMU_DESTROY of it is EBUSY, and it goes when the driver unbinds.
 */
import { err } from "../../uapi/errno.js";
import * as U from "../../uapi/iommufd.js";
import type { Task } from "../core/task.js";
import {
  groupSetDomain,
  iommuAttachGroup,
  iommuDetachGroup,
  iommuGroupHasIsolatedMsi,
  type IommuOps,
} from "../iommu/domain.js";
import { IommuSubsystem, type IommuGroup } from "../iommu/iommu.js";
import type { PciDev } from "../pci/pci.js";
import {
  findHwptPaging,
  hwptPagingAlloc,
  iommufdHwPagetablePut,
  type Hwpt,
  type HwptPaging,
} from "./hw_pagetable.js";
import type { Ioas } from "./ioas.js";
import type { IommufdCtx, IommufdObject, Ucmd } from "./main.js";

/**
 * The struct device iommufd binds: its IOMMU group and, through it, the IOMMU driver's ops
 * (dev_iommu_ops), which take the device as the driver knows it.
 */
export interface IommufdDev {
  readonly name: string;
  readonly pdev: PciDev;
  readonly group: IommuGroup | null;
  /** iommufd_selftest_is_mock_dev() */
  readonly mock?: boolean;
}

/** dev_iommu_ops() */
export function devIommuOps(dev: IommufdDev): IommuOps | null {
  return dev.group?.ops ?? null;
}

/** device_iommu_capable() */
function capable(dev: IommufdDev, cap: Parameters<IommuOps["capable"]>[1]): boolean {
  return devIommuOps(dev)?.capable(dev.pdev, cap) ?? false;
}

/** struct iommufd_group: per context and IOMMU group, the HWPT the group is attached to. */
export class IommufdGroup {
  refs = 1;
  hwpt: Hwpt | null = null;
  readonly devices: IommufdDevice[] = [];
  swMsiStart: bigint | null = null;
  constructor(
    readonly ctx: IommufdCtx,
    readonly group: IommuGroup,
  ) {}

  /** iommufd_put_group() */
  put(): void {
    if (--this.refs) return;
    if (this.ctx.groups.get(this.group.id) === this) this.ctx.groups.delete(this.group.id);
  }
}

/** struct iommufd_device */
export class IommufdDevice implements IommufdObject {
  readonly type = "device";
  id = 0;
  users = 1;
  igroup!: IommufdGroup;
  enforceCacheCoherency = false;

  constructor(
    readonly ctx: IommufdCtx,
    readonly dev: IommufdDev,
  ) {}

  /** iommufd_device_destroy() */
  destroy(): void {
    IommuSubsystem.deviceReleaseDmaOwner(this.igroup.group);
    this.igroup.put();
    if (!this.dev.mock) this.ctx.put();
  }
}

/** iommufd_get_group() */
function getGroup(ctx: IommufdCtx, task: Task | null, dev: IommufdDev): IommufdGroup | number {
  const group = dev.group;
  if (!group) return err("ENODEV");
  const cur = ctx.groups.get(group.id);
  if (cur && cur.group === group) {
    cur.refs++;
    return cur;
  }
  if (task?.faults.should("slab", "iommufd_group")) return err("ENOMEM");
  const g = new IommufdGroup(ctx, group);
  ctx.groups.set(group.id, g);
  return g;
}

/** iommufd_device_bind(): the device object, its id the devid VFIO reports. */
export function iommufdDeviceBind(
  ctx: IommufdCtx,
  task: Task | null,
  dev: IommufdDev,
): IommufdDevice | number {
  // iommufd always sets IOMMU_CACHE: there is no way for userspace to restore coherency.
  if (!capable(dev, "cache-coherency")) return err("EINVAL");
  const igroup = getGroup(ctx, task, dev);
  if (typeof igroup === "number") return igroup;
  if (!dev.mock && !iommuGroupHasIsolatedMsi(igroup.group)) {
    if (!ctx.sys.config.allowUnsafeInterrupts) {
      igroup.put();
      return err("EPERM");
    }
  }
  let rc = IommuSubsystem.deviceClaimDmaOwner(igroup.group, ctx);
  if (rc) {
    igroup.put();
    return rc;
  }
  const idev = new IommufdDevice(ctx, dev);
  rc = ctx.alloc(task, idev, "iommufd_device");
  if (rc) {
    IommuSubsystem.deviceReleaseDmaOwner(igroup.group);
    igroup.put();
    return rc;
  }
  if (!dev.mock) ctx.get();
  idev.enforceCacheCoherency = capable(dev, "enforce-cache-coherency");
  idev.users++; // the driver is a user until unbind
  idev.igroup = igroup;
  ctx.finalize(idev);
  return idev;
}

/** iommufd_device_unbind() */
export function iommufdDeviceUnbind(idev: IommufdDevice): void {
  idev.ctx.remove(idev, idev.id);
}

/** iommufd_group_setup_msi(): a software MSI window would get its cookie here. */
function groupSetupMsi(igroup: IommufdGroup, hwpt: HwptPaging): number {
  if (igroup.swMsiStart !== null && !hwpt.msiCookie) hwpt.msiCookie = true;
  return 0;
}

/** iommufd_device_attach_reserved_iova() */
function attachReservedIova(task: Task | null, idev: IommufdDevice, hwpt: HwptPaging): number {
  const ops = devIommuOps(idev.dev);
  const sw = { start: idev.igroup.swMsiStart };
  const rc = hwpt.ioas.iopt.enforceDevResvRegions(
    task,
    ops?.getResvRegions(idev.dev.pdev) ?? [],
    idev.dev,
    sw,
  );
  if (rc) return rc;
  idev.igroup.swMsiStart = sw.start;
  if (!idev.igroup.devices.length) {
    const r = groupSetupMsi(idev.igroup, hwpt);
    if (r) {
      hwpt.ioas.iopt.removeReservedIova(idev.dev);
      return r;
    }
  }
  return 0;
}

/** iommufd_hwpt_attach_device(): iommu_attach_group() */
function hwptAttachDevice(hwpt: Hwpt, idev: IommufdDevice): number {
  return iommuAttachGroup(hwpt.domain, idev.igroup.group);
}

/** iommufd_hw_pagetable_attach(): the group attaches with its first device only. */
export function hwPagetableAttach(task: Task | null, hwpt: Hwpt, idev: IommufdDevice): number {
  const hp = findHwptPaging(hwpt);
  const igroup = idev.igroup;
  if (igroup.hwpt !== null && igroup.hwpt !== hwpt) return err("EINVAL");
  if (hp) {
    const rc = attachReservedIova(task, idev, hp);
    if (rc) return rc;
  }
  if (!igroup.devices.length) {
    const rc = hwptAttachDevice(hwpt, idev);
    if (rc) {
      if (hp) hp.ioas.iopt.removeReservedIova(idev.dev);
      return rc;
    }
    igroup.hwpt = hwpt;
  }
  hwpt.users++;
  igroup.devices.push(idev);
  return 0;
}

/** iommufd_hw_pagetable_detach(): the caller puts the HWPT returned. */
export function hwPagetableDetach(idev: IommufdDevice): Hwpt {
  const igroup = idev.igroup;
  const hwpt = igroup.hwpt as Hwpt;
  const hp = findHwptPaging(hwpt);
  igroup.devices.splice(igroup.devices.indexOf(idev), 1);
  if (!igroup.devices.length) {
    iommuDetachGroup(hwpt.domain, igroup.group);
    igroup.hwpt = null;
  }
  if (hp) hp.ioas.iopt.removeReservedIova(idev.dev);
  return hwpt;
}

type AttachFn = (task: Task | null, idev: IommufdDevice, hwpt: Hwpt) => Hwpt | null | number;

/** iommufd_device_do_attach() */
const doAttach: AttachFn = (task, idev, hwpt) => {
  const rc = hwPagetableAttach(task, hwpt, idev);
  return rc || null;
};

function groupRemoveReservedIova(igroup: IommufdGroup, hwpt: HwptPaging): void {
  for (const cur of igroup.devices) hwpt.ioas.iopt.removeReservedIova(cur.dev);
}

/** iommufd_group_do_replace_reserved_iova() */
function groupDoReplaceReservedIova(
  task: Task | null,
  igroup: IommufdGroup,
  hwpt: HwptPaging,
): number {
  const old = findHwptPaging(igroup.hwpt as Hwpt);
  if (!old || hwpt.ioas !== old.ioas) {
    for (const cur of igroup.devices) {
      const ops = devIommuOps(cur.dev);
      const rc = hwpt.ioas.iopt.enforceDevResvRegions(
        task,
        ops?.getResvRegions(cur.dev.pdev) ?? [],
        cur.dev,
        null,
      );
      if (rc) {
        groupRemoveReservedIova(igroup, hwpt);
        return rc;
      }
    }
  }
  return groupSetupMsi(igroup, hwpt);
}

/** iommufd_device_do_replace(): the old HWPT is returned for the caller to put. */
const doReplace: AttachFn = (task, idev, hwpt) => {
  const hp = findHwptPaging(hwpt);
  const igroup = idev.igroup;
  if (igroup.hwpt === null) return err("EINVAL");
  if (hwpt === igroup.hwpt) return null;
  const old = igroup.hwpt;
  if (hp) {
    const rc = groupDoReplaceReservedIova(task, igroup, hp);
    if (rc) return rc;
  }
  // iommufd_hwpt_replace_device() → iommu_group_replace_domain()
  const rc = groupSetDomain(igroup.group, hwpt.domain);
  if (rc) {
    if (hp) groupRemoveReservedIova(igroup, hp);
    return rc;
  }
  const oldHp = findHwptPaging(old);
  if (oldHp && (!hp || hp.ioas !== oldHp.ioas)) groupRemoveReservedIova(igroup, oldHp);
  igroup.hwpt = hwpt;
  const n = igroup.devices.length;
  hwpt.users += n;
  if (n > 1) old.users -= n - 1;
  return old;
};

/** iommufd_device_auto_get_domain() */
function autoGetDomain(
  task: Task | null,
  idev: IommufdDevice,
  ioas: Ioas,
  ptId: { v: number },
  attach: AttachFn,
): Hwpt | null | number {
  const ctx = idev.ctx;
  const immediateAttach = attach === doAttach;
  for (const hp of [...ioas.hwptList]) {
    if (!hp.autoDomain) continue;
    hp.users++; // iommufd_lock_obj()
    const destroy = attach(task, idev, hp);
    if (typeof destroy === "number") {
      ctx.putObject(hp);
      if (destroy === err("EINVAL")) continue;
      return destroy;
    }
    ptId.v = hp.id;
    ctx.putObject(hp);
    return destroy;
  }
  const hp = hwptPagingAlloc(ctx, task, ioas, idev, 0, immediateAttach, null);
  if (typeof hp === "number") return hp;
  let destroy: Hwpt | null | number = null;
  if (!immediateAttach) {
    destroy = attach(task, idev, hp);
    if (typeof destroy === "number") {
      ctx.abortAndDestroy(hp);
      return destroy;
    }
  }
  hp.autoDomain = true;
  ptId.v = hp.id;
  ctx.finalize(hp);
  return destroy;
}

/** iommufd_device_change_pt() */
function changePt(task: Task | null, idev: IommufdDevice, ptId: { v: number }, attach: AttachFn) {
  const ctx = idev.ctx;
  const pt = ctx.getObject(ptId.v);
  if (typeof pt === "number") return pt;
  let destroy: Hwpt | null | number;
  switch (pt.type) {
    case "hwpt_nested":
    case "hwpt_paging":
      destroy = attach(task, idev, pt as Hwpt);
      break;
    case "ioas":
      destroy = autoGetDomain(task, idev, pt as Ioas, ptId, attach);
      break;
    default:
      destroy = err("EINVAL");
  }
  ctx.putObject(pt);
  if (typeof destroy === "number") return destroy;
  if (destroy) iommufdHwPagetablePut(ctx, destroy);
  return 0;
}

/** iommufd_device_attach(): pt_id may name an IOAS; the HWPT used is written back. */
export function iommufdDeviceAttach(
  task: Task | null,
  idev: IommufdDevice,
  ptId: { v: number },
): number {
  const rc = changePt(task, idev, ptId, doAttach);
  if (rc) return rc;
  idev.users++;
  return 0;
}

/** iommufd_device_replace() */
export function iommufdDeviceReplace(
  task: Task | null,
  idev: IommufdDevice,
  ptId: { v: number },
): number {
  return changePt(task, idev, ptId, doReplace);
}

/** iommufd_device_detach() */
export function iommufdDeviceDetach(idev: IommufdDevice): void {
  const hwpt = hwPagetableDetach(idev);
  iommufdHwPagetablePut(idev.ctx, hwpt);
  idev.users--;
}

/** iommufd_get_device() */
export function iommufdGetDevice(ctx: IommufdCtx, id: number): IommufdDevice | number {
  return ctx.getObject(id, "device") as IommufdDevice | number;
}

/** iommufd_ctx_has_group(): any device of the group bound to this context. */
export function iommufdCtxHasGroup(ctx: IommufdCtx | null, group: IommuGroup | null): boolean {
  if (!ctx || !group) return false;
  for (const obj of ctx.objects.values())
    if (obj?.type === "device" && (obj as IommufdDevice).igroup.group === group) return true;
  return false;
}

/**
 * iommufd_get_hw_info(): the driver's block, cut to the user's data_len and zero-filled
 * past what the driver has; data_len comes back as the driver's length. Since 6.12.117
 * the first byte of the old u32 __reserved is out_max_pasid_log2, an output: ignored on
 * the way in, and 0 on the way out (no modelled IOMMU driver enables PASID, so
 * dev->iommu->max_pasids is 0 and neither PCI_PASID capability bit is reported).
 */
export function iommufdGetHwInfo(ucmd: Ucmd): number {
  const cmd = ucmd.decode(U.iommu_hw_info);
  if (cmd.flags || cmd.__reserved0 || cmd.__reserved1 || cmd.__reserved2) return err("EOPNOTSUPP");
  const idev = iommufdGetDevice(ucmd.ctx, cmd.dev_id);
  if (typeof idev === "number") return idev;
  const rc = getHwInfo(ucmd, idev, cmd);
  ucmd.ctx.putObject(idev);
  return rc;
}

function getHwInfo(
  ucmd: Ucmd,
  idev: IommufdDevice,
  cmd: ReturnType<typeof U.iommu_hw_info.decode>,
): number {
  const ops = devIommuOps(idev.dev);
  let data: Uint8Array = new Uint8Array(0);
  if (ops?.hwInfo) {
    if (ucmd.task.faults.should("slab", "iommu_hw_info")) return err("ENOMEM");
    const info = ops.hwInfo(idev.dev.pdev);
    if (typeof info === "number") return info;
    if (info.type === U.IOMMU_HW_INFO_TYPE_NONE) return err("ENODEV");
    cmd.out_data_type = info.type;
    data = info.data;
  } else {
    cmd.out_data_type = U.IOMMU_HW_INFO_TYPE_NONE;
  }
  const mm = ucmd.task.mm;
  const copyLen = Math.min(cmd.data_len, data.length);
  if (copyLen && !mm.copyToUser(cmd.data_uptr, data.subarray(0, copyLen))) return err("EFAULT");
  if (copyLen < cmd.data_len) {
    const zeros = new Uint8Array(cmd.data_len - copyLen);
    if (!mm.copyToUser(cmd.data_uptr + BigInt(copyLen), zeros)) return err("EFAULT");
  }
  cmd.data_len = data.length;
  cmd.out_capabilities = capable(idev.dev, "dirty-tracking")
    ? BigInt(U.IOMMU_HW_CAP_DIRTY_TRACKING)
    : 0n;
  cmd.out_max_pasid_log2 = 0;
  return ucmd.respond(U.iommu_hw_info.encode(cmd));
}
