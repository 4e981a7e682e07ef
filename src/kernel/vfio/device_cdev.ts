/**
 * The VFIO device cdev, drivers/vfio/device_cdev.c (Linux 6.12, CONFIG_VFIO_DEVICE_CDEV):
 * /dev/vfio/devices/vfioN and /sys/class/vfio-dev/vfioN for every registered device. Any
 * number of opens succeed; a file can do nothing but VFIO_DEVICE_BIND_IOMMUFD until it is
 * bound (EINVAL for every other ioctl, read and write). Binding opens the device through
 * iommufd (only one file may have it open: the cdev path cannot share an open device, EINVAL)
 * and excludes the group path: BIND is EBUSY while the group file is open, and opening the
 * group is EBUSY while a device of it is bound. The VM kvm-vfio recorded on the file is
 * handed to the device at bind (so FILE_ADD must come first). A bound file then attaches the
 * device to an IOAS or HWPT (a second attach replaces) and detaches it; closing the file
 * unbinds. A group-obtained device file cannot bind (EINVAL) nor use the ATTACH/DETACH
 * requests (they go to the driver, which does not know them). A no-IOMMU device has the class
 * device but no node (vfio.h vfio_device_add: "cdev does not support noiommu device").
 */
import { err } from "../../uapi/errno.js";
import * as U from "../../uapi/vfio.js";
import type { File } from "../core/file.js";
import type { Task } from "../core/task.js";
import type { Vfs } from "../core/vfs.js";
import type { IommufdSubsystem } from "../iommufd/main.js";
import type { PciDev } from "../pci/pci.js";
import { vfioIommufdPhysicalAttachIoas, vfioIommufdPhysicalDetachIoas } from "./iommufd.js";
import type { RegisteredDevice, Vfio, VfioDeviceFile } from "./vfio_main.js";

export class VfioCdev {
  constructor(
    private readonly vfs: Vfs,
    private readonly vfio: Vfio,
    private readonly iommufd: IommufdSubsystem,
    /** The device's sysfs directory (/sys/devices/pci0000:00/.../0000:02:00.0). */
    private readonly devicePath: (pdev: PciDev) => string | null,
  ) {
    vfs.dir("/sys/class/vfio-dev");
  }

  /** vfio_device_add(): cdev_device_add(), the node and the class device, or device_add(). */
  add(vdev: RegisteredDevice, node: boolean): void {
    const name = `vfio${vdev.index}`;
    if (node)
      this.vfs.devices.set(`/dev/vfio/devices/${name}`, {
        open: (task, flags) => this.open(vdev, task, flags),
      });
    const parent = this.devicePath(vdev.pdev);
    if (!parent) return;
    const dir = `${parent}/vfio-dev/${name}`;
    this.vfs.dir(dir);
    this.vfs.add(`${dir}/device`, { kind: "link", target: () => parent });
    this.vfs.add(`${dir}/subsystem`, { kind: "link", target: () => "/sys/class/vfio-dev" });
    this.vfs.add(`/sys/class/vfio-dev/${name}`, { kind: "link", target: () => dir });
  }

  /** vfio_device_del() */
  remove(vdev: RegisteredDevice): void {
    const name = `vfio${vdev.index}`;
    this.vfs.devices.delete(`/dev/vfio/devices/${name}`);
    this.vfs.remove(`/sys/class/vfio-dev/${name}`);
    const parent = this.devicePath(vdev.pdev);
    if (parent) this.vfs.remove(`${parent}/vfio-dev`);
  }

  /** vfio_device_fops_cdev_open(): a file with no access until BIND_IOMMUFD. */
  private open(vdev: RegisteredDevice, task: Task, flags: number): File | number {
    if (!vdev.registered) return err("ENODEV");
    if (task.faults.should("slab", "vfio_device_file")) return err("ENOMEM");
    const df: VfioDeviceFile = { device: vdev, group: null, accessGranted: false };
    return this.vfio.openDeviceFile(df, flags);
  }

  /** vfio_df_ioctl_bind_iommufd() */
  bind(df: VfioDeviceFile, task: Task, arg: bigint): number {
    const minsz = U.vfio_device_bind_iommufd.end("out_devid");
    const raw = task.mm.copyFromUser(arg, minsz);
    if (!raw) return err("EFAULT");
    const bind = U.vfio_device_bind_iommufd.decode(raw);
    if (bind.argsz < minsz || bind.flags || bind.iommufd < 0) return err("EINVAL");
    if (df.group) return err("EINVAL"); // BIND_IOMMUFD only for cdev fds
    const device = df.device;
    let rc = this.vfio.deviceBlockGroup(device);
    if (rc) return rc;
    const fail = (r: number) => {
      this.vfio.deviceUnblockGroup(device);
      return r;
    };
    if (df.accessGranted) return fail(err("EINVAL")); // one device cannot be bound twice
    const ctx = this.iommufd.ctxFromFd(task, bind.iommufd);
    if (typeof ctx === "number") return fail(ctx);
    df.iommufd = ctx;
    // vfio_df_get_kvm_safe(): the VM recorded on this file goes to the device, before the
    // open; a failed open puts it back (vfio_device_put_kvm), even when the failure was
    // that another file has the device open with its own VM (the kernel does the same).
    if (df.kvm) device.kvm = df.kvm;
    rc = this.vfio.dfOpen(df, task);
    if (rc) {
      device.kvm = null;
      ctx.put();
      df.iommufd = null;
      return fail(rc);
    }
    const out = new Uint8Array(4);
    new DataView(out.buffer).setUint32(0, df.devid ?? 0, true);
    if (
      !task.mm.copyToUser(arg + BigInt(U.vfio_device_bind_iommufd.offsets.out_devid as number), out)
    ) {
      this.vfio.dfClose(df);
      device.kvm = null;
      ctx.put();
      df.iommufd = null;
      return fail(err("EFAULT"));
    }
    device.cdevOpened = true;
    df.accessGranted = true;
    return 0;
  }

  /** vfio_df_unbind_iommufd(): closing a bound file. */
  unbind(df: VfioDeviceFile): void {
    if (!df.accessGranted) return;
    const device = df.device;
    this.vfio.dfClose(df);
    device.kvm = null;
    df.iommufd?.put();
    df.iommufd = null;
    device.cdevOpened = false;
    this.vfio.deviceUnblockGroup(device);
  }

  /** vfio_df_ioctl_attach_pt(): pt_id comes back as the HWPT the device uses. */
  attachPt(df: VfioDeviceFile, task: Task, arg: bigint): number {
    const C = U.vfio_device_attach_iommufd_pt;
    const minsz = C.end("pt_id");
    const raw = task.mm.copyFromUser(arg, minsz);
    if (!raw) return err("EFAULT");
    const attach = C.decode(raw);
    if (attach.argsz < minsz || attach.flags) return err("EINVAL");
    const pt = { v: attach.pt_id };
    const rc = vfioIommufdPhysicalAttachIoas(df.device, task, pt);
    if (rc) return rc;
    const out = new Uint8Array(4);
    new DataView(out.buffer).setUint32(0, pt.v, true);
    if (!task.mm.copyToUser(arg + BigInt(C.offsets.pt_id as number), out)) {
      vfioIommufdPhysicalDetachIoas(df.device);
      return err("EFAULT");
    }
    return 0;
  }

  /** vfio_df_ioctl_detach_pt(): detaching what is not attached is fine. */
  detachPt(df: VfioDeviceFile, task: Task, arg: bigint): number {
    const C = U.vfio_device_detach_iommufd_pt;
    const minsz = C.end("flags");
    const raw = task.mm.copyFromUser(arg, minsz);
    if (!raw) return err("EFAULT");
    const detach = C.decode(raw);
    if (detach.argsz < minsz || detach.flags) return err("EINVAL");
    vfioIommufdPhysicalDetachIoas(df.device);
    return 0;
  }
}
