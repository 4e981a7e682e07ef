/**
 * VFIO groups, drivers/vfio/group.c (Linux 6.12): /dev/vfio/N exists while at least one
 * device of IOMMU group N is registered with VFIO; one opener at a time (EBUSY), none while
 * a device of the group is open through its cdev; GET_STATUS, SET_CONTAINER,
 * UNSET_CONTAINER and GET_DEVICE_FD with their errno order; closing the group detaches it
 * from its container (device fds hold a reference to the group file, so that waits for them).
 *
 * A no-IOMMU group (VFIO_NO_IOMMU: vfio_noiommu_group_alloc, CONFIG_VFIO_NOIOMMU with
 * vfio.enable_unsafe_noiommu_mode) is /dev/vfio/noiommu-N (vfio_create_group's name) and
 * opens only with CAP_SYS_RAWIO (vfio_group_fops_open: EPERM, before the EBUSY checks).
 */
import { err } from "../../uapi/errno.js";
import * as U from "../../uapi/vfio.js";
import type { File, FileOperations } from "../core/file.js";
import type { Task } from "../core/task.js";
import type { IommuGroup } from "../iommu/iommu.js";
import type { VfioContainer } from "./container.js";
import type { VfioDevice } from "./vfio.js";
import { fromUser, toUser } from "./vfio.js";

export class VfioGroup {
  readonly devices: VfioDevice[] = [];
  /** The open group file, if any (group->opened_file). */
  openedFile: File | null = null;
  container: VfioContainer | null = null;
  /** 1 for the group itself plus one per device opened through it and per external user. */
  containerUsers = 0;
  /** vfio_group_get_external_user() references held (kvm-vfio of the "3.13"/"3.15" profiles). */
  externalUsers = 0;
  /** Devices off the list whose unregistration waits for their files (they still hold it). */
  releasing = 0;
  /** An iommufd context set through VFIO_GROUP_SET_CONTAINER (compat); holds a reference. */
  iommufd: { put(): void } | null = null;
  /** vfio_file_set_kvm() target, sampled by devices at first open. */
  kvm: unknown = null;
  /** Devices of this group open through their cdev. */
  cdevDeviceOpenCnt = 0;

  constructor(
    /** Null once the last device left (vfio_device_remove_group). */
    public iommuGroupOrNull: IommuGroup | null,
    /** group->type == VFIO_NO_IOMMU: a fake IOMMU group for a device no IOMMU covers. */
    readonly noiommu = false,
  ) {}

  /** The device node's name under /dev/vfio (dev_set_name in vfio_create_group). */
  get nodeName(): string {
    return `${this.noiommu ? "noiommu-" : ""}${this.iommuGroup.id}`;
  }

  get iommuGroup(): IommuGroup {
    return this.iommuGroupOrNull as IommuGroup;
  }

  get minor(): number {
    return this.iommuGroup.id;
  }

  /** vfio_group_has_iommu() */
  hasIommu(): boolean {
    return this.container !== null || this.iommufd !== null;
  }
}

/** What the group ioctls need from the rest of VFIO. */
export interface GroupEnv {
  setContainer(group: VfioGroup, file: File, task: Task): number;
  detachContainer(group: VfioGroup): void;
  getDeviceFd(group: VfioGroup, name: string, task: Task): number;
  viable(group: VfioGroup): boolean;
}

export function groupOps(env: GroupEnv): FileOperations<VfioGroup> {
  const getStatus = (g: VfioGroup, task: Task, arg: bigint): number => {
    const minsz = U.vfio_group_status.end("flags");
    const raw = fromUser(task, arg, minsz);
    if (!raw) return err("EFAULT");
    const st = U.vfio_group_status.decode(raw);
    if (st.argsz < minsz) return err("EINVAL");
    if (!g.iommuGroupOrNull) return err("ENODEV");
    let flags = 0;
    if (g.hasIommu()) flags |= U.VFIO_GROUP_FLAGS_CONTAINER_SET | U.VFIO_GROUP_FLAGS_VIABLE;
    else if (env.viable(g)) flags |= U.VFIO_GROUP_FLAGS_VIABLE;
    return toUser(task, arg, U.vfio_group_status.encode({ argsz: st.argsz, flags }))
      ? 0
      : err("EFAULT");
  };

  const setContainer = (g: VfioGroup, task: Task, arg: bigint): number => {
    const raw = fromUser(task, arg, 4);
    if (!raw) return err("EFAULT");
    const fd = new DataView(raw.buffer).getInt32(0, true);
    const f = task.files.get(fd);
    if (!f) return err("EBADF");
    if (g.hasIommu()) return err("EINVAL");
    if (!g.iommuGroupOrNull) return err("ENODEV");
    return env.setContainer(g, f, task);
  };

  const unsetContainer = (g: VfioGroup): number => {
    if (!g.hasIommu()) return err("EINVAL");
    if (g.container) {
      if (g.containerUsers !== 1) return err("EBUSY");
      env.detachContainer(g);
    }
    g.iommufd?.put(); // iommufd_ctx_put()
    g.iommufd = null;
    return 0;
  };

  const getDeviceFd = (g: VfioGroup, task: Task, arg: bigint): number => {
    // strndup_user(arg, PAGE_SIZE): the name must end within a page.
    const name = stringFromUser(task, arg, 4096);
    if (typeof name === "number") return name;
    return env.getDeviceFd(g, name, task);
  };

  return {
    name: "/dev/vfio/group",
    ioctl(file, task, cmd, arg) {
      const g = file.priv;
      switch (cmd) {
        case U.VFIO_GROUP_GET_DEVICE_FD:
          return getDeviceFd(g, task, arg);
        case U.VFIO_GROUP_GET_STATUS:
          return getStatus(g, task, arg);
        case U.VFIO_GROUP_SET_CONTAINER:
          return setContainer(g, task, arg);
        case U.VFIO_GROUP_UNSET_CONTAINER:
          return unsetContainer(g);
        default:
          return err("ENOTTY");
      }
    },
    release(file) {
      const g = file.priv;
      if (g.container) env.detachContainer(g);
      g.iommufd?.put();
      g.iommufd = null;
      g.openedFile = null;
    },
  };
}

/** strndup_user(): EFAULT on a bad pointer, EINVAL when no NUL within `max` bytes. */
export function stringFromUser(task: Task, addr: bigint, max: number): string | number {
  const bytes: number[] = [];
  for (let i = 0; i < max; i++) {
    const b = task.mm.copyFromUser(addr + BigInt(i), 1);
    if (!b) return err("EFAULT");
    if (b[0] === 0) return new TextDecoder().decode(new Uint8Array(bytes));
    bytes.push(b[0] as number);
  }
  return err("EINVAL");
}
