/**
 * VFIO's internal interfaces, after drivers/vfio/vfio.h and include/linux/vfio.h (Linux
 * 6.12): the IOMMU backend a container drives (struct vfio_iommu_driver_ops), the device
 * driver a device fd dispatches to (struct vfio_device_ops), and the objects they share.
 * Each backend and driver is its own module (vfio_iommu_type1.ts, pci/vfio_pci_core.ts);
 * the core (vfio_main.ts, group.ts, container.ts) knows them only through these types.
 */
import type { Hardware } from "../../machine/hw.js";
import { err } from "../../uapi/errno.js";
import {
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET,
} from "../../uapi/vfio.js";
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
  /** Bound through its cdev (device->cdev_opened). */
  cdevOpened?: boolean;
}

/** struct vfio_device_ops (the parts the model uses). */
export interface VfioDeviceOps {
  readonly name: string;
  openDevice?(vdev: VfioDevice, task: Task): number;
  closeDevice?(vdev: VfioDevice): void;
  ioctl(vdev: VfioDevice, task: Task, cmd: number, arg: bigint): number;
  /** Does GET_DEVICE_FD's name pick this device: 1 yes, 0 no, -errno (default: strcmp). */
  match?(vdev: VfioDevice, buf: string): number;
  /** Region access at a file offset (index << 40 | offset); returns bytes or -errno. */
  read?(vdev: VfioDevice, task: Task, out: Uint8Array, pos: bigint): number;
  write?(vdev: VfioDevice, task: Task, data: Uint8Array, pos: bigint): number;
  /** Asked to give the device back while unregistration waits (count: the retry number). */
  request?(vdev: VfioDevice, count: number): void;
  /**
   * VFIO_DEVICE_FEATURE ids the core does not own: flags as given, data the user address
   * after the header, argsz what is left of the user's argsz.
   */
  deviceFeature?(vdev: VfioDevice, task: Task, flags: number, data: bigint, argsz: number): number;
}

/**
 * vfio_check_feature() (include/linux/vfio.h): 1 to go on with the GET or SET, 0 for a
 * PROBE of a supported operation, -EINVAL for an unsupported one, a missing GET/SET, or
 * argsz below the feature's data.
 */
export function vfioCheckFeature(
  flags: number,
  argsz: number,
  supportedOps: number,
  minsz: number,
): number {
  if (flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET) & ~supportedOps)
    return err("EINVAL");
  if (flags & VFIO_DEVICE_FEATURE_PROBE) return 0;
  if (!(flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET))) return err("EINVAL");
  if (argsz < minsz) return err("EINVAL");
  return 1;
}

/** copy_from_user/copy_to_user on the caller's memory. */
export function fromUser(task: Task, addr: bigint, len: number): Uint8Array | null {
  return task.mm.copyFromUser(addr, len);
}
export function toUser(task: Task, addr: bigint, data: Uint8Array): boolean {
  return task.mm.copyToUser(addr, data);
}

/**
 * struct vfio_info_cap with vfio_info_add_capability() and vfio_info_cap_shift()
 * (vfio_main.c): a capability chain built for an info ioctl, each capability 8-byte
 * aligned and linked by `next` offsets relative to the chain until shifted to the
 * struct's start. Shared by IOMMU backends and device drivers.
 */
export class VfioInfoCap {
  buf = new Uint8Array(0);

  get size(): number {
    return this.buf.length;
  }

  private next(at: number): number {
    return new DataView(this.buf.buffer).getUint32(at + 4, true);
  }

  private setNext(at: number, v: number): void {
    new DataView(this.buf.buffer).setUint32(at + 4, v, true);
  }

  /** vfio_info_add_capability(): `cap` is the whole capability, header first. */
  add(cap: Uint8Array): void {
    const at = this.buf.length;
    const buf = new Uint8Array(at + Math.ceil(cap.length / 8) * 8);
    buf.set(this.buf);
    buf.set(cap.subarray(0, 4), at);
    buf.set(cap.subarray(8), at + 8);
    this.buf = buf;
    let tmp = 0;
    while (this.next(tmp)) tmp = this.next(tmp);
    this.setNext(tmp, at);
  }

  /** vfio_info_cap_shift() */
  shift(offset: number): void {
    for (let tmp = 0; this.next(tmp); tmp = this.next(tmp) - offset)
      this.setNext(tmp, this.next(tmp) + offset);
  }
}
