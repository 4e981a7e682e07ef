/**
 * VFIO's internal interfaces, after drivers/vfio/vfio.h and include/linux/vfio.h (Linux
 * 6.12): the IOMMU backend a container drives (struct vfio_iommu_driver_ops), the device
 * driver a device fd dispatches to (struct vfio_device_ops), and the objects they share.
 * Each backend and driver is its own module (vfio_iommu_type1.ts, pci/vfio_pci_core.ts);
 * the core (vfio_main.ts, group.ts, container.ts) knows them only through these types.
 */
import type { Hardware } from "../../machine/hw.js";
import type { PageAllocator } from "../core/page_alloc.js";
import type { Task } from "../core/task.js";
import type { IommuGroup } from "../iommu/iommu.js";
import type { PciDev } from "../pci/pci.js";

/** The kernel services VFIO code may use. */
export interface VfioKernel {
  hw: Hardware;
  pages: PageAllocator;
  /** Module parameters (vfio_iommu_type1.*, vfio_pci.*, vfio.*) from the command line. */
  param(name: string): string | undefined;
}

/**
 * struct vfio_iommu_driver_ops. `open` returns the backend's per-container state or
 * -errno; every call that returns a number returns 0/positive or -errno.
 */
export interface VfioIommuDriverOps<D = unknown> {
  readonly name: string;
  open(arg: number, task: Task): D | number;
  release(data: D): void;
  /**
   * Container ioctls once this backend is set (and VFIO_CHECK_EXTENSION before any
   * backend is set, with data = null: vfio_ioctl_check_extension asks every driver).
   */
  ioctl(data: D | null, task: Task, cmd: number, arg: bigint): number;
  attachGroup(data: D, group: IommuGroup, task: Task): number;
  detachGroup(data: D, group: IommuGroup): void;
}

/** One registered device (struct vfio_device) as a driver sees it. */
export interface VfioDevice {
  readonly pdev: PciDev;
  readonly ops: VfioDeviceOps;
  /** Driver-private state (struct vfio_pci_core_device). */
  priv: unknown;
  /** Opens through any path: the driver's open_device runs on 0 → 1, close on 1 → 0. */
  openCount: number;
  /** The KVM instance sampled at first open (vfio_device_get_kvm_safe). */
  kvm: unknown;
}

/** struct vfio_device_ops (the parts the model uses). */
export interface VfioDeviceOps {
  readonly name: string;
  openDevice?(vdev: VfioDevice, task: Task): number;
  closeDevice?(vdev: VfioDevice): void;
  ioctl(vdev: VfioDevice, task: Task, cmd: number, arg: bigint): number;
  /** Region access at a file offset (index << 40 | offset); returns bytes or -errno. */
  read?(vdev: VfioDevice, task: Task, out: Uint8Array, pos: bigint): number;
  write?(vdev: VfioDevice, task: Task, data: Uint8Array, pos: bigint): number;
}

/** copy_from_user/copy_to_user on the caller's memory. */
export function fromUser(task: Task, addr: bigint, len: number): Uint8Array | null {
  return task.mm.copyFromUser(addr, len);
}
export function toUser(task: Task, addr: bigint, data: Uint8Array): boolean {
  return task.mm.copyToUser(addr, data);
}
