/**
 * The legacy VFIO container, drivers/vfio/container.c (Linux 6.12): /dev/vfio/vfio gives a
 * new container per open; groups join it (claiming DMA ownership of their IOMMU group);
 * VFIO_SET_IOMMU picks the first registered backend that accepts the type and attaches
 * every group; other ioctls go to the backend, or fail EINVAL before one is set. When the
 * last group leaves, the backend is released and the container is empty again.
 *
 * No-IOMMU (CONFIG_VFIO_NOIOMMU): the "vfio-noiommu" backend (vfio_noiommu_ops) is registered
 * at init, before any other. A container holds either no-IOMMU groups or normal ones
 * (vfio_container_attach_group: EPERM for the other kind, and EPERM for a no-IOMMU group
 * without CAP_SYS_RAWIO); vfio_iommu_driver_allowed() lets a no-IOMMU container use only
 * that backend and any other container every backend but it (CHECK_EXTENSION with groups
 * attached, and SET_IOMMU). The backend answers CHECK_EXTENSION(VFIO_NOIOMMU_IOMMU) with
 * vfio.enable_unsafe_noiommu_mode, opens only for that type and with CAP_SYS_RAWIO (EPERM),
 * and has no other ioctl (ENOTTY: no MAP_DMA, no GET_INFO). A device of a no-IOMMU group
 * opens only with CAP_SYS_RAWIO (vfio_group_use_container).
 */
import { err } from "../../uapi/errno.js";
import * as U from "../../uapi/vfio.js";
import { File, type FileOperations } from "../core/file.js";
import type { Task } from "../core/task.js";
import type { IommuSubsystem } from "../iommu/iommu.js";
import type { VfioGroup } from "./group.js";
import type { VfioIommuDriverOps } from "./vfio.js";

export class VfioContainer {
  readonly groups: VfioGroup[] = [];
  driver: VfioIommuDriverOps | null = null;
  data: unknown = null;
  noiommu = false;
  private refs = 1;

  get(): void {
    this.refs++;
  }
  put(): void {
    this.refs--;
  }
  /** Whether any file or group still holds it (kfree'd on the last put in the kernel). */
  get live(): boolean {
    return this.refs > 0;
  }
}

/** The registered IOMMU backends, most recently registered first (list_add). */
export class VfioIommuDrivers {
  readonly list: VfioIommuDriverOps[] = [];
  register(ops: VfioIommuDriverOps): number {
    if (this.list.includes(ops)) return err("EINVAL");
    this.list.unshift(ops);
    return 0;
  }
}

/** vfio_noiommu_ops; `enabled` reads vfio_noiommu (the module parameter). */
export function vfioNoiommuOps(enabled: () => boolean): VfioIommuDriverOps<null> {
  return {
    name: "vfio-noiommu",
    open(arg, task) {
      if (arg !== U.VFIO_NOIOMMU_IOMMU) return err("EINVAL");
      return task.capable("CAP_SYS_RAWIO") ? null : err("EPERM");
    },
    release() {},
    ioctl(_data, _task, cmd, arg) {
      if (cmd === U.VFIO_CHECK_EXTENSION)
        return enabled() && arg === BigInt(U.VFIO_NOIOMMU_IOMMU) ? 1 : 0;
      return err("ENOTTY");
    },
    attachGroup: () => 0,
    detachGroup() {},
  };
}

export function containerOps(drivers: VfioIommuDrivers): FileOperations<VfioContainer> {
  const checkExtension = (c: VfioContainer, task: Task, arg: bigint): number => {
    if (c.driver) return c.driver.ioctl(c.data, task, U.VFIO_CHECK_EXTENSION, arg);
    let ret = 0;
    for (const d of drivers.list) {
      if (c.groups.length && c.noiommu !== (d.name === "vfio-noiommu")) continue;
      ret = d.ioctl(null, task, U.VFIO_CHECK_EXTENSION, arg);
      if (ret > 0) break;
    }
    return ret;
  };

  const setIommu = (c: VfioContainer, task: Task, arg: bigint): number => {
    if (c.groups.length === 0 || c.driver) return err("EINVAL");
    let ret = err("ENODEV");
    for (const d of drivers.list) {
      if (c.noiommu !== (d.name === "vfio-noiommu")) continue;
      if (d.ioctl(null, task, U.VFIO_CHECK_EXTENSION, arg) <= 0) continue;
      const data = d.open(Number(BigInt.asUintN(32, arg)), task);
      if (typeof data === "number") {
        ret = data;
        continue;
      }
      ret = attachAll(c, d, data, task);
      if (ret) {
        d.release(data);
        continue;
      }
      c.driver = d;
      c.data = data;
      break;
    }
    return ret;
  };

  return {
    name: "/dev/vfio/vfio",
    ioctl(file, task, cmd, arg) {
      const c = file.priv;
      switch (cmd) {
        case U.VFIO_GET_API_VERSION:
          return U.VFIO_API_VERSION;
        case U.VFIO_CHECK_EXTENSION:
          return checkExtension(c, task, arg);
        case U.VFIO_SET_IOMMU:
          return setIommu(c, task, arg);
        default:
          return c.driver ? c.driver.ioctl(c.data, task, cmd, arg) : err("EINVAL");
      }
    },
    release(file) {
      file.priv.put();
    },
  };
}

/** __vfio_container_attach_groups(): all or nothing. */
function attachAll(c: VfioContainer, d: VfioIommuDriverOps, data: unknown, task: Task): number {
  const done: VfioGroup[] = [];
  for (const g of c.groups) {
    const r = d.attachGroup(data, g.iommuGroup, task);
    if (r) {
      for (const x of done.reverse()) d.detachGroup(data, x.iommuGroup);
      return r;
    }
    done.push(g);
  }
  return 0;
}

export function openContainer(
  ops: FileOperations<VfioContainer>,
  flags: number,
): File<VfioContainer> {
  return new File(ops, new VfioContainer(), flags);
}

/** vfio_container_attach_group() */
export function containerAttachGroup(
  c: VfioContainer,
  group: VfioGroup,
  iommu: IommuSubsystem,
  task: Task,
): number {
  if (group.noiommu && !task.capable("CAP_SYS_RAWIO")) return err("EPERM");
  if (c.groups.length && c.noiommu !== group.noiommu) return err("EPERM");
  if (!group.noiommu) {
    const r = iommu.claimDmaOwner(group.iommuGroup, group);
    if (r) return r;
  }
  if (c.driver) {
    const r = c.driver.attachGroup(c.data, group.iommuGroup, task);
    if (r) {
      if (!group.noiommu) iommu.releaseDmaOwner(group.iommuGroup);
      return r;
    }
  }
  group.container = c;
  group.containerUsers = 1;
  c.noiommu = group.noiommu;
  c.groups.push(group);
  c.get();
  return 0;
}

/** vfio_group_detach_container(): the last group out releases the backend. */
export function groupDetachContainer(group: VfioGroup, iommu: IommuSubsystem): void {
  const c = group.container;
  if (!c) return;
  if (c.driver) c.driver.detachGroup(c.data, group.iommuGroup);
  if (!group.noiommu) iommu.releaseDmaOwner(group.iommuGroup);
  group.container = null;
  group.containerUsers = 0;
  c.groups.splice(c.groups.indexOf(group), 1);
  if (c.driver && c.groups.length === 0) {
    c.driver.release(c.data);
    c.driver = null;
    c.data = null;
  }
  c.put();
}
