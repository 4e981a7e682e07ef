/**
 * The VFIO core, drivers/vfio/vfio_main.c with the group side of group.c (Linux 6.12):
 * device registration (__vfio_register_dev: a group per IOMMU group, /dev/vfio/N while a
 * device is registered, devices named vfioN from an IDA, IOMMU_CAP_CACHE_COHERENCY
 * required), the container misc device /dev/vfio/vfio, and device files: the first open
 * uses the group's container (vfio_group_use_container: a backend must be set, the device
 * pins the group file) or, for a group set on an iommufd and for a bound device cdev
 * (device_cdev.ts), binds the device to the iommufd (iommufd.ts); the driver's open_device
 * runs on the first open and close_device on the last, and every ioctl but BIND_IOMMUFD is
 * refused until access is granted. VFIO_DEVICE_FEATURE is the core's (vfio_ioctl_device_feature:
 * header checks, its own migration/logging features, then the driver's device_feature).
 *
 * Unregistration (vfio_unregister_group_dev) takes the device off its group's list (no new
 * GET_DEVICE_FD) and its cdev away, then waits for the last device file to close
 * (registration references: one per device file, cdev files before BIND too), asking the
 * driver to give the device back (->request(count)) meanwhile. The model has no clock: the
 * request goes out once, as the first of the 10-second retries does; the open files keep
 * working, and the rest (the group's removal with its last device, the vfioN index) follows
 * the last close, which also completes the driver's remove (pci/driver.ts: a blocked unbind).
 *
 * No-IOMMU mode (CONFIG_VFIO_NOIOMMU; vfio_main.c's vfio.enable_unsafe_noiommu_mode, read
 * when a device registers): a device without an IOMMU group gets a group of its own
 * (group.c vfio_group_find_or_alloc → vfio_noiommu_group_alloc: iommu_group_alloc() from
 * the same IDA, named "vfio-noiommu", the device added to it; the kernel is tainted), its
 * node /dev/vfio/noiommu-N, no device cdev (vfio.h vfio_device_add: device_add only, the
 * class device without a node) and no IOMMU_CAP_CACHE_COHERENCY check; the IOMMU group goes
 * when the device unregisters (vfio_device_remove_group). Without the mode, such a device
 * fails to register (EINVAL). Set on an iommufd (group.c set_container →
 * iommufd_vfio_compat_set_no_iommu), a no-IOMMU group's first device open is EPERM without
 * CAP_SYS_RAWIO or once the iommufd has a compat IOAS (vfio_df_group_open); the device is
 * then opened without binding to the iommufd nor attaching to an IOAS (iommufd.c
 * vfio_df_iommufd_bind, vfio_iommufd_compat_attach_ioas, vfio_df_iommufd_unbind).
 * These are 6.12.117's (the kernel the oracle records): 6.12.19's vfio_df_group_open
 * returned a file it never opened, and its vfio_df_iommufd_bind did bind.
 */
import { err } from "../../uapi/errno.js";
import { O_RDWR } from "../../uapi/syscalls.js";
import * as U from "../../uapi/vfio.js";
import { File, type FileOperations } from "../core/file.js";
import type { Task } from "../core/task.js";
import type { Vfs } from "../core/vfs.js";
import type { IommuGroup, IommuSubsystem } from "../iommu/iommu.js";
import type { PciDev } from "../pci/pci.js";
import {
  containerAttachGroup,
  containerOps,
  groupDetachContainer,
  openContainer,
  VfioContainer,
  VfioIommuDrivers,
} from "./container.js";
import type { IommufdCtx, IommufdSubsystem } from "../iommufd/main.js";
import { vfioCompatIoasCreate, vfioCompatSetNoIommu } from "../iommufd/vfio_compat.js";
import type { VfioCdev } from "./device_cdev.js";
import { groupOps, VfioGroup } from "./group.js";
import {
  vfioIommufdCompatAttachIoas,
  vfioIommufdDevice,
  vfioIommufdDeviceHasCompatIoas,
  vfioIommufdGetDevId,
  vfioIommufdPhysicalBind,
  vfioIommufdPhysicalUnbind,
} from "./iommufd.js";
import { fromUser, type VfioDevice, type VfioDeviceOps } from "./vfio.js";

/** struct vfio_device_file */
export interface VfioDeviceFile {
  device: RegisteredDevice;
  /** Set for a device opened through its group. */
  group: VfioGroup | null;
  accessGranted: boolean;
  /** The kvm recorded by kvm-vfio on this file (cdev path). */
  kvm?: unknown;
  /** The iommufd the device is used through (cdev: bound; group: the group's). */
  iommufd?: IommufdCtx | null;
  /** The iommufd device id of a bound cdev file. */
  devid?: number;
}

export interface RegisteredDevice extends VfioDevice {
  group: VfioGroup;
  /** vfio%d */
  index: number;
  registered: boolean;
  /** Device files open on it (registration references held by files). */
  files: number;
  /** Set while vfio_unregister_group_dev() waits for the files: what follows the last close. */
  onReleased?: () => void;
}

/** What no-IOMMU mode needs from the kernel around VFIO. */
export interface VfioNoiommu {
  /** vfio_noiommu: vfio.enable_unsafe_noiommu_mode. */
  enabled: boolean;
  /** vfio_noiommu_group_alloc()'s IOMMU side, with the taint. */
  groupAlloc(pdev: PciDev): IommuGroup;
  /** iommu_group_remove_device(): the group goes with its only device. */
  groupRemoveDevice(pdev: PciDev): void;
}

export class Vfio {
  readonly iommuDrivers = new VfioIommuDrivers();
  /** Containers opened and maybe not yet freed (debugfs-style leak checks prune the dead). */
  readonly containers = new Set<VfioContainer>();
  private readonly groups = new Map<IommuGroup, VfioGroup>();
  private readonly indices = new Set<number>();
  readonly containerFops: FileOperations<VfioContainer>;
  readonly groupFops: FileOperations<VfioGroup>;
  readonly deviceFops: FileOperations<VfioDeviceFile>;
  /** iommufd, in a kernel built with it (CONFIG_IOMMUFD): groups may be set on an iommufd. */
  iommufd: IommufdSubsystem | null = null;
  /** The device cdev (CONFIG_VFIO_DEVICE_CDEV): /dev/vfio/devices/vfioN. */
  cdev: VfioCdev | null = null;
  /** CONFIG_VFIO_NOIOMMU: the mode and the fake IOMMU groups it makes. */
  noiommu: VfioNoiommu | null = null;

  constructor(
    private readonly vfs: Vfs,
    private readonly iommu: IommuSubsystem,
  ) {
    this.containerFops = containerOps(this.iommuDrivers);
    this.groupFops = groupOps({
      setContainer: (g, f, task) => this.setContainer(g, f, task),
      detachContainer: (g) => groupDetachContainer(g, this.iommu),
      getDeviceFd: (g, name, task) => this.getDeviceFd(g, name, task),
      viable: (g) => !g.iommuGroup.dmaOwnerClaimed,
    });
    this.deviceFops = this.deviceOps();
    vfs.devices.set("/dev/vfio/vfio", {
      open: (task, flags) => {
        // vfio_fops_open(): kzalloc of the container.
        if (task.faults.should("slab", "vfio_container")) return err("ENOMEM");
        const f = openContainer(this.containerFops, flags);
        this.containers.add(f.priv);
        return f;
      },
    });
  }

  groupOf(ig: IommuGroup): VfioGroup | undefined {
    return this.groups.get(ig);
  }

  /** vfio_group_from_file() */
  groupFromFile(f: File): VfioGroup | null {
    return f.ops === (this.groupFops as FileOperations<unknown>) ? (f.priv as VfioGroup) : null;
  }

  /** vfio_container_from_file() */
  containerFromFile(f: File): VfioContainer | null {
    return f.ops === (this.containerFops as FileOperations<unknown>)
      ? (f.priv as VfioContainer)
      : null;
  }

  deviceFileFrom(f: File): VfioDeviceFile | null {
    return f.ops === (this.deviceFops as FileOperations<unknown>)
      ? (f.priv as VfioDeviceFile)
      : null;
  }

  /** vfio_file_is_valid(): a group file or a device file. */
  fileIsValid(f: File): boolean {
    return this.groupFromFile(f) !== null || this.deviceFileFrom(f) !== null;
  }

  /**
   * vfio_file_enforced_coherent(): every device of the group (or the device) sits behind an
   * IOMMU that can force snooping (IOMMU_CAP_ENFORCE_CACHE_COHERENCY: VT-d ECAP.SC, always
   * on AMD-Vi); any other file counts as coherent.
   */
  fileEnforcedCoherent(f: File): boolean {
    const g = this.groupFromFile(f);
    if (g) return g.devices.every((d) => this.iommu.enforceCacheCoherencyCapable(d.pdev));
    const df = this.deviceFileFrom(f);
    if (df) return this.iommu.enforceCacheCoherencyCapable(df.device.pdev);
    return true;
  }

  /** vfio_file_iommu_group(): a group file's IOMMU group (device cdev files have none). */
  fileIommuGroup(f: File): IommuGroup | null {
    return this.groupFromFile(f)?.iommuGroup ?? null;
  }

  /** vfio_file_set_kvm(): devices opened later sample it. */
  fileSetKvm(f: File, kvm: unknown): void {
    const g = this.groupFromFile(f);
    if (g) g.kvm = kvm;
    const df = this.deviceFileFrom(f);
    if (df) df.kvm = kvm;
  }

  /**
   * vfio_group_get_external_user() of Linux 3.11–5.18 (kvm-vfio under the "3.13" and
   * "3.15" KVM profiles): a group file attached to a container whose IOMMU backend is set,
   * else EINVAL. The reference counts as a container user (UNSET_CONTAINER is EBUSY while
   * it is held). It also keeps the group file open: in those kernels the group release
   * only dissolved the container once its last user left, and a group cannot be reopened
   * while it has a container, which is what holding the file gives here. Viability needs
   * no check: the group owns its devices' DMA from the moment it joined the container.
   *
   * It also holds the group itself (vfio_group_get): in those kernels vfio_del_group_dev()
   * only took the device off the group's list; the group, /dev/vfio/N and the container
   * attachment lived until the last group reference went (vfio_group_release) and the
   * container was only left through __vfio_group_unset_container(), once container_users
   * dropped to 0 (vfio_group_try_dissolve_container). So the last device's unbind does not
   * take the group away while an external user holds it (unregisterGroupDev); the put of
   * the last external user does (removeGroup).
   */
  groupGetExternalUser(f: File): VfioGroup | number {
    const g = this.groupFromFile(f);
    if (!g?.container?.driver) return err("EINVAL");
    g.containerUsers++;
    g.externalUsers++;
    f.get();
    return g;
  }

  /** vfio_group_put_external_user(): try_dissolve_container, then vfio_group_put. */
  groupPutExternalUser(g: VfioGroup): void {
    g.containerUsers--;
    g.externalUsers--;
    g.openedFile?.put();
    if (!g.externalUsers && !g.devices.length && !g.releasing && g.iommuGroupOrNull)
      this.removeGroup(g);
  }

  /** vfio_external_check_extension(): VFIO_CHECK_EXTENSION on an external user's container. */
  externalCheckExtension(g: VfioGroup, task: Task, ext: number): number {
    const c = g.container as VfioContainer;
    const d = c.driver as NonNullable<VfioContainer["driver"]>;
    return d.ioctl(c.data, task, U.VFIO_CHECK_EXTENSION, BigInt(ext));
  }

  /** vfio_register_group_dev(): -errno on failure. */
  registerGroupDev(pdev: PciDev, ops: VfioDeviceOps, priv: unknown): RegisteredDevice | number {
    // vfio_group_find_or_alloc()
    const found = this.iommu.groupOf(pdev);
    const noiommu = !found && !!this.noiommu?.enabled;
    const ig = found ?? (noiommu ? this.noiommu?.groupAlloc(pdev) : undefined);
    if (!ig) return err("EINVAL");
    let index = 0;
    while (this.indices.has(index)) index++;
    let group = this.groups.get(ig);
    if (!group) {
      group = new VfioGroup(ig, noiommu);
      this.groups.set(ig, group);
      const g = group;
      this.vfs.devices.set(`/dev/vfio/${g.nodeName}`, {
        open: (task, flags) => this.openGroup(g, task, flags),
      });
    }
    const vdev: RegisteredDevice = {
      pdev,
      ops,
      priv,
      openCount: 0,
      kvm: null,
      group,
      index,
      registered: true,
      files: 0,
    };
    this.indices.add(index);
    group.devices.push(vdev);
    this.cdev?.add(vdev, !noiommu);
    return vdev;
  }

  /**
   * vfio_unregister_group_dev(): no new opens; while device files are open the driver is
   * asked for the device and the rest waits for the last close ("blocked": `released` runs
   * then); the last device of a group takes /dev/vfio/N away.
   */
  unregisterGroupDev(vdev: RegisteredDevice, released: () => void): "blocked" | void {
    const g = vdev.group;
    vdev.registered = false;
    g.devices.splice(g.devices.indexOf(vdev), 1);
    this.cdev?.remove(vdev);
    // vfio_device_remove_group(): the group goes with the last device to finish.
    const rest = () => {
      this.indices.delete(vdev.index);
      if (g.noiommu) this.noiommu?.groupRemoveDevice(vdev.pdev);
      if (!g.devices.length && !g.releasing && !g.externalUsers) this.removeGroup(g);
    };
    if (!vdev.files) return rest();
    vdev.ops.request?.(vdev, 0);
    g.releasing++;
    vdev.onReleased = () => {
      g.releasing--;
      rest();
      released();
    };
    return "blocked";
  }

  /** A device file: a registration reference until its release. */
  openDeviceFile(df: VfioDeviceFile, flags: number): File<VfioDeviceFile> {
    df.device.files++;
    return new File(this.deviceFops, df, flags);
  }

  /** vfio_device_remove_group() of the last device: revoke the group's IOMMU group. */
  private removeGroup(g: VfioGroup): void {
    this.groups.delete(g.iommuGroup);
    this.vfs.devices.delete(`/dev/vfio/${g.nodeName}`);
    if (g.container) groupDetachContainer(g, this.iommu);
    g.iommuGroupOrNull = null;
  }

  /** vfio_group_fops_open() */
  private openGroup(g: VfioGroup, task: Task, flags: number): File | number {
    if (!g.iommuGroupOrNull) return err("ENODEV");
    if (g.noiommu && !task.capable("CAP_SYS_RAWIO")) return err("EPERM");
    if (g.cdevDeviceOpenCnt) return err("EBUSY");
    if (g.openedFile) return err("EBUSY");
    const f = new File(this.groupFops, g, flags);
    g.openedFile = f;
    return f;
  }

  /** vfio_group_ioctl_set_container() after the common checks. */
  private setContainer(g: VfioGroup, f: File, task: Task): number {
    const c = this.containerFromFile(f);
    if (c) return containerAttachGroup(c, g, this.iommu, task);
    const ctx = this.iommufd ? this.iommufd.ctxFromFile(f) : err("EBADFD");
    if (typeof ctx === "number") return err("EBADFD");
    const r = g.noiommu ? vfioCompatSetNoIommu(ctx) : vfioCompatIoasCreate(ctx, task);
    if (r) {
      ctx.put();
      return r;
    }
    g.iommufd = ctx;
    return 0;
  }

  /**
   * vfio_device_get_from_name(): the first device of the group whose driver's match op
   * (else dev_name) takes the name; a match error ends the search.
   */
  private deviceFromName(g: VfioGroup, name: string): RegisteredDevice | number {
    for (const d of g.devices) {
      const ret = d.ops.match ? d.ops.match(d, name) : Number(d.pdev.name === name);
      if (ret < 0) return ret;
      if (ret) return d as RegisteredDevice;
    }
    return err("ENODEV");
  }

  /** vfio_group_ioctl_get_device_fd() */
  private getDeviceFd(g: VfioGroup, name: string, task: Task): number {
    const dev = this.deviceFromName(g, name);
    if (typeof dev === "number") return dev;
    const df: VfioDeviceFile = { device: dev, group: g, accessGranted: false };
    // vfio_df_group_open()
    if (!g.hasIommu()) return err("EINVAL");
    if (dev.openCount === 0) dev.kvm = g.kvm;
    df.iommufd = (g.iommufd as IommufdCtx | null) ?? null;
    // No translation may have been asked for: no compat IOAS.
    let r =
      df.iommufd &&
      g.noiommu &&
      dev.openCount === 0 &&
      (!task.capable("CAP_SYS_RAWIO") || vfioIommufdDeviceHasCompatIoas(df.iommufd))
        ? err("EPERM")
        : this.dfOpen(df, task);
    // vfio_iommufd_compat_attach_ioas(): "compat noiommu does not need to do ioas attach"
    if (!r && df.iommufd && !g.noiommu && dev.openCount === 1) {
      r = vfioIommufdCompatAttachIoas(dev, df.iommufd, task);
      if (r) this.dfClose(df);
    }
    if (r) {
      df.iommufd = null;
      if (dev.openCount === 0) dev.kvm = null;
      return r;
    }
    df.accessGranted = true;
    return task.files.install(this.openDeviceFile(df, O_RDWR));
  }

  /**
   * vfio_df_open(): the first open binds the device to the file's iommufd, or uses the
   * group's container, then calls open_device. Only the group path may open it twice.
   */
  dfOpen(df: VfioDeviceFile, task: Task): number {
    const dev = df.device;
    if (dev.openCount !== 0 && !df.group) return err("EINVAL");
    dev.openCount++;
    if (dev.openCount !== 1) return 0;
    if (df.iommufd) {
      // vfio_df_iommufd_bind() → vfio_iommufd_physical_bind(); nothing for no-IOMMU
      const noiommu = dev.group.noiommu;
      const id = noiommu ? 0 : vfioIommufdPhysicalBind(this.iommu, dev, df.iommufd, task);
      if (id < 0) {
        dev.openCount--;
        return id;
      }
      if (!noiommu) df.devid = id;
      const r = dev.ops.openDevice?.(dev, task) ?? 0;
      if (r) {
        if (!noiommu) vfioIommufdPhysicalUnbind(dev);
        dev.openCount--;
      }
      return r;
    }
    const g = dev.group;
    // vfio_device_group_use_iommu() → vfio_group_use_container()
    if (!g.container?.driver || (g.noiommu && !task.capable("CAP_SYS_RAWIO"))) {
      dev.openCount--;
      return err(g.container?.driver ? "EPERM" : "EINVAL");
    }
    g.openedFile?.get();
    g.containerUsers++;
    const r = dev.ops.openDevice?.(dev, task) ?? 0;
    if (r) {
      g.containerUsers--;
      g.openedFile?.put();
      dev.openCount--;
    }
    return r;
  }

  /**
   * vfio_iommufd_get_dev_id(dev, vfio_iommufd_device_ictx(of)): dev's id in the iommufd `of`
   * is bound to (a cdev-opened device always is), ENOENT when only its group is there,
   * ENODEV otherwise.
   */
  iommufdDevId(dev: VfioDevice, of: VfioDevice): number {
    const idev = vfioIommufdDevice(of);
    return idev ? vfioIommufdGetDevId(this.iommu, dev, idev.ctx) : err("EINVAL");
  }

  /**
   * vfio_df_close(): the last close calls close_device, then unbinds from iommufd or lets
   * the group's container and file go.
   */
  dfClose(df: VfioDeviceFile): void {
    const dev = df.device;
    dev.openCount--;
    if (dev.openCount !== 0) return;
    dev.ops.closeDevice?.(dev);
    if (df.iommufd) {
      if (!dev.group.noiommu) vfioIommufdPhysicalUnbind(dev);
      dev.kvm = null;
      return;
    }
    const g = dev.group;
    g.containerUsers--;
    dev.kvm = null;
    g.openedFile?.put();
  }

  /** vfio_device_block_group(): a cdev bind excludes the group path (EBUSY if it is open). */
  deviceBlockGroup(dev: RegisteredDevice): number {
    const g = dev.group;
    if (g.openedFile) return err("EBUSY");
    g.cdevDeviceOpenCnt++;
    return 0;
  }

  /** vfio_device_unblock_group() */
  deviceUnblockGroup(dev: RegisteredDevice): void {
    dev.group.cdevDeviceOpenCnt--;
  }

  private deviceOps(): FileOperations<VfioDeviceFile> {
    return {
      name: "anon_inode:[vfio-device]",
      ioctl: (file, task, cmd, arg) => {
        const df = file.priv;
        // Without CONFIG_VFIO_DEVICE_CDEV the request is unknown.
        if (cmd === U.VFIO_DEVICE_BIND_IOMMUFD)
          return this.cdev ? this.cdev.bind(df, task, arg) : err("ENOTTY");
        if (!df.accessGranted) return err("EINVAL");
        if (this.cdev && !df.group) {
          if (cmd === U.VFIO_DEVICE_ATTACH_IOMMUFD_PT) return this.cdev.attachPt(df, task, arg);
          if (cmd === U.VFIO_DEVICE_DETACH_IOMMUFD_PT) return this.cdev.detachPt(df, task, arg);
        }
        if (cmd === U.VFIO_DEVICE_FEATURE) return vfioIoctlDeviceFeature(df.device, task, arg);
        return df.device.ops.ioctl(df.device, task, cmd, arg);
      },
      read: (file, task, out, pos) => {
        const df = file.priv;
        if (!df.accessGranted) return err("EINVAL");
        return df.device.ops.read ? df.device.ops.read(df.device, task, out, pos) : err("EINVAL");
      },
      write: (file, task, data, pos) => {
        const df = file.priv;
        if (!df.accessGranted) return err("EINVAL");
        return df.device.ops.write
          ? df.device.ops.write(df.device, task, data, pos)
          : err("EINVAL");
      },
      release: (file) => {
        const df = file.priv;
        if (df.group) {
          // vfio_df_group_close()
          this.dfClose(df);
          df.iommufd = null;
          if (df.device.openCount === 0) df.device.kvm = null;
        } else {
          this.cdev?.unbind(df);
        }
        // vfio_device_put_registration(): the last one completes a waiting unregistration.
        const dev = df.device;
        if (--dev.files === 0 && dev.onReleased) {
          const released = dev.onReleased;
          delete dev.onReleased;
          released();
        }
      },
    };
  }
}

/** The features vfio_main.c owns: migration and DMA logging, each needing ops no driver has. */
const CORE_FEATURES = new Set([
  U.VFIO_DEVICE_FEATURE_MIGRATION,
  U.VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
  U.VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
  U.VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP,
  U.VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT,
  U.VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
]);

/**
 * vfio_ioctl_device_feature(): the header's flags checked (unknown bits, GET with SET
 * without PROBE), then the feature: the migration and logging ones are ENOTTY before any
 * other check (no mig_ops/log_ops: vfio-pci has none), the rest the driver's.
 */
function vfioIoctlDeviceFeature(dev: VfioDevice, task: Task, arg: bigint): number {
  const S = U.vfio_device_feature;
  const raw = fromUser(task, arg, S.size);
  if (!raw) return err("EFAULT");
  const { argsz, flags } = S.decode(raw);
  if (argsz < S.size) return err("EINVAL");
  const GET = U.VFIO_DEVICE_FEATURE_GET;
  const SET = U.VFIO_DEVICE_FEATURE_SET;
  if (flags & ~(U.VFIO_DEVICE_FEATURE_MASK | SET | GET | U.VFIO_DEVICE_FEATURE_PROBE))
    return err("EINVAL");
  if (!(flags & U.VFIO_DEVICE_FEATURE_PROBE) && flags & SET && flags & GET) return err("EINVAL");
  if (CORE_FEATURES.has(flags & U.VFIO_DEVICE_FEATURE_MASK)) return err("ENOTTY");
  if (!dev.ops.deviceFeature) return err("EINVAL");
  return dev.ops.deviceFeature(dev, task, flags, arg + BigInt(S.size), argsz - S.size);
}
