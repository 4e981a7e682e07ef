/**
 * Read-only introspection for kernel.debug: each process's open files as /proc/PID/fd and
 * fdinfo would show them, and the VFIO objects those files lead to — containers with their
 * IOMMU backend and groups, groups with their devices and KVM association — the way lsof
 * and /sys/kernel/debug would let a person inspect a running system. Nothing is changed.
 */
import type { File } from "./core/file.js";
import type { Task } from "./core/task.js";
import type { VfioContainer } from "./vfio/container.js";
import type { VfioGroup } from "./vfio/group.js";
import type { Vfio, VfioDeviceFile } from "./vfio/vfio_main.js";

export interface FdInfo {
  fd: number;
  /** The file's name: "/dev/vfio/vfio", "/dev/vfio/group", "anon_inode:[vfio-device]", ... */
  file: string;
  /** The open file description's identity (dup'd descriptors share it). */
  ino: number;
  refs: number;
  /** What the file is, in words: "VFIO container #3 (vfio-iommu-type1)", "VM 1-4", ... */
  object?: string;
}

export interface ProcessInfo {
  pid: number;
  uid: number;
  fds: FdInfo[];
}

export interface VfioContainerInfo {
  /** The identity of the container's first open file (FdInfo.ino); negative when no fd is left. */
  id: number;
  /** The IOMMU backend set with VFIO_SET_IOMMU, or null before it. */
  iommu: string | null;
  groups: number[];
}

export interface VfioGroupInfo {
  id: number;
  /** /dev/vfio/N is open. */
  open: boolean;
  /** The container it was added to (VfioContainerInfo.id), or null. */
  container: number | null;
  /** Devices of the group registered with VFIO, and whether each is open. */
  devices: { name: string; open: boolean }[];
  /** A KVM VM was told about the group (kvm-vfio). */
  kvm: boolean;
}

export interface VfioInfo {
  containers: VfioContainerInfo[];
  groups: VfioGroupInfo[];
}

const NR_OPEN = 1024;

function openFiles(tasks: Task[]): { task: Task; fd: number; file: File }[] {
  const out: { task: Task; fd: number; file: File }[] = [];
  for (const task of tasks) {
    for (let fd = 0, seen = 0; seen < task.files.size && fd < NR_OPEN; fd++) {
      const file = task.files.get(fd);
      if (!file) continue;
      seen++;
      out.push({ task, fd, file });
    }
  }
  return out;
}

/** Containers (with their ids) and groups reachable from open files. */
function reachable(
  tasks: Task[],
  vfio: Vfio,
): { containers: Map<VfioContainer, number>; groups: Set<VfioGroup> } {
  const containers = new Map<VfioContainer, number>();
  const groups = new Set<VfioGroup>();
  for (const { file } of openFiles(tasks)) {
    if (file.ops === vfio.containerFops) {
      const c = file.priv as VfioContainer;
      if (!containers.has(c)) containers.set(c, file.ino);
    } else if (file.ops === vfio.groupFops) groups.add(file.priv as VfioGroup);
    else if (file.ops === vfio.deviceFops) {
      const g = (file.priv as VfioDeviceFile).group;
      if (g) groups.add(g);
    }
  }
  let orphan = -1;
  for (const g of groups)
    if (g.container && !containers.has(g.container)) containers.set(g.container, orphan--);
  return { containers, groups };
}

const groupId = (g: VfioGroup) => g.iommuGroupOrNull?.id ?? -1;
const vmName = (k: unknown) => (k as { name?: string } | null)?.name ?? "?";

function describe(
  file: File,
  vfio: Vfio,
  containers: Map<VfioContainer, number>,
): string | undefined {
  if (file.ops === vfio.containerFops) {
    const c = file.priv as VfioContainer;
    const id = containers.get(c) ?? file.ino;
    return `VFIO container #${id} (${c.driver ? c.driver.name : "no IOMMU backend set"})`;
  }
  if (file.ops === vfio.groupFops) return `VFIO group ${groupId(file.priv as VfioGroup)}`;
  if (file.ops === vfio.deviceFops)
    return `VFIO device ${(file.priv as VfioDeviceFile).device.pdev.name}`;
  const name = file.ops.name;
  if (name === "anon_inode:kvm-vm") return `VM ${vmName(file.priv)}`;
  if (name === "anon_inode:kvm-vcpu") {
    const v = file.priv as { id: number; kvm: unknown };
    return `vCPU ${v.id} of VM ${vmName(v.kvm)}`;
  }
  if (name.startsWith("anon_inode:kvm-"))
    return `${name.slice("anon_inode:".length)} device of VM ${vmName((file.priv as { kvm: unknown }).kvm)}`;
  return undefined;
}

export function processInfo(tasks: Task[], vfio: Vfio): ProcessInfo[] {
  const { containers } = reachable(tasks, vfio);
  const files = openFiles(tasks);
  return tasks.map((task) => ({
    pid: task.pid,
    uid: task.uid,
    fds: files
      .filter((o) => o.task === task)
      .map(({ fd, file }) => {
        const object = describe(file, vfio, containers);
        return {
          fd,
          file: file.ops.name,
          ino: file.ino,
          refs: file.count,
          ...(object ? { object } : {}),
        };
      }),
  }));
}

export function vfioInfo(tasks: Task[], vfio: Vfio): VfioInfo {
  const { containers, groups } = reachable(tasks, vfio);
  return {
    containers: [...containers].map(([c, id]) => ({
      id,
      iommu: c.driver?.name ?? null,
      groups: c.groups.map(groupId).sort((a, b) => a - b),
    })),
    groups: [...groups]
      .map((g) => ({
        id: groupId(g),
        open: g.openedFile !== null,
        container: g.container ? (containers.get(g.container) ?? null) : null,
        devices: g.devices.map((d) => ({ name: d.pdev.name, open: d.openCount > 0 })),
        kvm: g.kvm !== null,
      }))
      .sort((a, b) => a.id - b.id),
  };
}
