/**
 * VFIO's side of iommufd, drivers/vfio/iommufd.c (Linux 6.12): the "physical" device ops a
 * vfio-pci device has (bind_iommufd, unbind_iommufd, attach_ioas, detach_ioas), used by the
 * device cdev (BIND_IOMMUFD, ATTACH/DETACH_IOMMUFD_PT) and by the group path when the group
 * was set on an iommufd (its first open binds and attaches the compat IOAS). An attach of a
 * device already attached is a replace. The iommufd device object lives from bind to unbind.
 */
import { err } from "../../uapi/errno.js";
import type { Task } from "../core/task.js";
import type { IommuSubsystem } from "../iommu/iommu.js";
import {
  iommufdCtxHasGroup,
  iommufdDeviceAttach,
  iommufdDeviceBind,
  iommufdDeviceDetach,
  iommufdDeviceReplace,
  iommufdDeviceUnbind,
  type IommufdDev,
  type IommufdDevice,
} from "../iommufd/device.js";
import type { IommufdCtx } from "../iommufd/main.js";
import { vfioCompatIoasGetId } from "../iommufd/vfio_compat.js";
import type { VfioDevice } from "./vfio.js";

/** vfio_device's iommufd_device and iommufd_attached. */
interface IommufdState {
  idev: IommufdDevice | null;
  attached: boolean;
}

const state = new WeakMap<VfioDevice, IommufdState>();

function st(vdev: VfioDevice): IommufdState {
  let s = state.get(vdev);
  if (!s) {
    s = { idev: null, attached: false };
    state.set(vdev, s);
  }
  return s;
}

/** The iommufd device object a VFIO device is bound to, if any. */
export function vfioIommufdDevice(vdev: VfioDevice): IommufdDevice | null {
  return state.get(vdev)?.idev ?? null;
}

/** The struct device iommufd sees for a physical VFIO device. */
export function iommufdDevOf(iommu: IommuSubsystem, vdev: VfioDevice): IommufdDev {
  return { name: vdev.pdev.name, pdev: vdev.pdev, group: iommu.groupOf(vdev.pdev) ?? null };
}

/** vfio_iommufd_physical_bind(): the device id, or -errno. */
export function vfioIommufdPhysicalBind(
  iommu: IommuSubsystem,
  vdev: VfioDevice,
  ctx: IommufdCtx,
  task: Task,
): number {
  const idev = iommufdDeviceBind(ctx, task, iommufdDevOf(iommu, vdev));
  if (typeof idev === "number") return idev;
  st(vdev).idev = idev;
  return idev.id;
}

/** vfio_iommufd_physical_unbind(): detach first if attached. */
export function vfioIommufdPhysicalUnbind(vdev: VfioDevice): void {
  const s = st(vdev);
  if (!s.idev) return;
  if (s.attached) {
    iommufdDeviceDetach(s.idev);
    s.attached = false;
  }
  iommufdDeviceUnbind(s.idev);
  s.idev = null;
}

/** vfio_iommufd_physical_attach_ioas(): attach, or replace when attached. */
export function vfioIommufdPhysicalAttachIoas(
  vdev: VfioDevice,
  task: Task,
  ptId: { v: number },
): number {
  const s = st(vdev);
  if (!s.idev) return err("EINVAL");
  const rc = s.attached
    ? iommufdDeviceReplace(task, s.idev, ptId)
    : iommufdDeviceAttach(task, s.idev, ptId);
  if (rc) return rc;
  s.attached = true;
  return 0;
}

/** vfio_iommufd_physical_detach_ioas(): nothing when not attached. */
export function vfioIommufdPhysicalDetachIoas(vdev: VfioDevice): void {
  const s = st(vdev);
  if (!s.idev || !s.attached) return;
  iommufdDeviceDetach(s.idev);
  s.attached = false;
}

/** vfio_iommufd_compat_attach_ioas(): the group path's first open attaches the compat IOAS. */
export function vfioIommufdCompatAttachIoas(vdev: VfioDevice, ctx: IommufdCtx, task: Task): number {
  const id = vfioCompatIoasGetId(ctx);
  if (id < 0) return id;
  return vfioIommufdPhysicalAttachIoas(vdev, task, { v: id });
}

/** vfio_iommufd_device_has_compat_ioas() */
export function vfioIommufdDeviceHasCompatIoas(ctx: IommufdCtx): boolean {
  return vfioCompatIoasGetId(ctx) >= 0;
}

/**
 * vfio_iommufd_get_dev_id(): the devid when the device is bound to this context, ENOENT
 * when another device of its group is, ENODEV otherwise.
 */
export function vfioIommufdGetDevId(
  iommu: IommuSubsystem,
  vdev: VfioDevice,
  ctx: IommufdCtx,
): number {
  const idev = st(vdev).idev;
  if (idev && idev.ctx === ctx) return idev.id;
  const group = iommu.groupOf(vdev.pdev);
  if (!group) return err("ENODEV");
  return iommufdCtxHasGroup(ctx, group) ? err("ENOENT") : err("ENODEV");
}
