/**
 * What the KVM tests share: a host with three assignable NVMe functions, each alone in its
 * IOMMU group behind an ACS root port, K behind a VT-d unit with Snoop Control (so
 * IOMMU_CAP_ENFORCE_CACHE_COHERENCY: its DMA is coherent) and N1, N2 behind a unit without
 * it (non-coherent), all bound to vfio-pci; and the plumbing a VMM does: structs packed
 * into the process's own memory, requests by their uAPI numbers, results as -errno.
 */
import assert from "node:assert/strict";
import { buildHost } from "../../src/host/build.js";
import { hostSpecSchema } from "../../src/host/spec.js";
import type { TaskSyscalls } from "../../src/kernel/core/syscalls.js";
import {
  Kernel,
  type BootOptions,
  type KvmVmInfo,
  type ProfileName,
} from "../../src/kernel/kernel.js";
import { err } from "../../src/uapi/errno.js";
import * as K from "../../src/uapi/kvm.js";
import {
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  O_CLOEXEC,
  O_RDONLY,
  O_RDWR,
  O_WRONLY,
  PROT_READ,
  PROT_WRITE,
} from "../../src/uapi/syscalls.js";
import * as U from "../../src/uapi/vfio.js";

export const K_BDF = "0000:01:00.0";
export const N1_BDF = "0000:02:00.0";
export const N2_BDF = "0000:03:00.0";

const rootPort = (addr: string) => ({
  addr,
  id: "8086:a338",
  class: "060400",
  pcie: "root-port",
  acs: { cap: ["sv", "rr", "cr", "uf"], ctl: [] },
  driver: "pcieport",
  children: [{ addr: "00.0", id: "144d:a808", class: "010802", pcie: "endpoint" }],
});

/** A Xeon's VT-d CAP (48-bit SAGAW), and its ECAP with and without bit 7, SC (Snoop Control). */
const CAP = "0x8d2078c106f0466";
const ECAP_SC = "0xf020df";
const ECAP_NO_SC = "0xf0205f";

export interface Machine {
  kernel: Kernel;
  sys: TaskSyscalls;
  /** /dev/vfio/N of each device's group. */
  group: Record<"K" | "N1" | "N2", string>;
}

/**
 * The host: K alone behind dmar0 (with Snoop Control); the first `nonCoherent` of N1, N2
 * behind dmar1 (without it); each function below its own root port; booted with the drivers
 * it came up with.
 */
export function bootSnoopSplit(
  name: string,
  nonCoherent: 1 | 2,
  opts: Pick<BootOptions, "build" | "profile"> = {},
): Kernel {
  const ports = ["0000:00:1c.0", "0000:00:1d.0", "0000:00:1e.0"].slice(0, 1 + nonCoherent);
  const spec = hostSpecSchema.parse({
    name,
    iommu: [
      {
        kind: "intel-vtd",
        name: "dmar0",
        cap: CAP,
        ecap: ECAP_SC,
        devices: [ports[0], K_BDF],
      },
      {
        kind: "intel-vtd",
        name: "dmar1",
        cap: CAP,
        ecap: ECAP_NO_SC,
        devices: [ports[1], N1_BDF, ports[2], N2_BDF].slice(0, 2 * nonCoherent),
      },
    ],
    functions: ports.map(rootPort),
  });
  const host = buildHost(spec, name);
  const bindings = new Map<string, string>();
  for (const [bdf, o] of host.observed) if (o.driver) bindings.set(bdf, o.driver);
  return Kernel.boot(host.machine.hardware(), { bindings, ...opts });
}

export function boot(profile?: ProfileName): Machine {
  const kernel = bootSnoopSplit("kvm-test", 2, { profile });
  const sys = kernel.spawn();
  // vfio-pci binds through driver_override only (its id table is override-only).
  for (const bdf of [K_BDF, N1_BDF, N2_BDF]) {
    sysfsWrite(sys, `/sys/bus/pci/devices/${bdf}/driver_override`, "vfio-pci");
    sysfsWrite(sys, "/sys/bus/pci/drivers_probe", bdf);
    assert.match(String(sys.readlink(`/sys/bus/pci/devices/${bdf}/driver`)), /\/vfio-pci$/);
  }
  const groupOf = (bdf: string) => {
    const g = kernel.debug.groups().find((x) => x.devices.includes(bdf));
    assert.ok(g, `${bdf} has no IOMMU group`);
    return `/dev/vfio/${g.id}`;
  };
  return {
    kernel,
    sys,
    group: { K: groupOf(K_BDF), N1: groupOf(N1_BDF), N2: groupOf(N2_BDF) },
  };
}

/**
 * A stand-in for vfio_iommu_type1 (not in the model yet) so that VFIO_SET_IOMMU succeeds:
 * it accepts TYPE1v2, attaches every group, and answers VFIO_DMA_CC_IOMMU with `cc` of
 * the container it was opened for.
 */
export function registerBackendDouble(kernel: Kernel, cc: () => boolean): void {
  kernel.vfio.iommuDrivers.register({
    name: "type1-double",
    open: () => ({ cc: cc() }),
    release: () => undefined,
    ioctl: (data, _task, cmd, arg) => {
      if (cmd !== U.VFIO_CHECK_EXTENSION) return err("ENOTTY");
      if (arg === BigInt(U.VFIO_TYPE1v2_IOMMU)) return 1;
      if (arg === BigInt(U.VFIO_DMA_CC_IOMMU)) return (data as { cc: boolean } | null)?.cc ? 1 : 0;
      return 0;
    },
    attachGroup: () => 0,
    detachGroup: () => undefined,
  });
}

export function sysfsWrite(sys: TaskSyscalls, path: string, value: string): void {
  const fd = sys.open(path, O_WRONLY);
  assert.ok(fd >= 0, `open ${path}: ${fd}`);
  const data = new TextEncoder().encode(value);
  assert.equal(sys.write(fd, userMem(sys, data), data.length), data.length, path);
  sys.close(fd);
}

/** Bytes in fresh read-write memory of the process; returns their address. */
export function userMem(sys: TaskSyscalls, bytes: Uint8Array): bigint {
  const a = sys.mmap(
    0n,
    Math.max(bytes.length, 1),
    PROT_READ | PROT_WRITE,
    MAP_PRIVATE | MAP_ANONYMOUS,
    -1,
  );
  assert.ok(a > 0n, `mmap: ${a}`);
  assert.ok(sys.poke(a, bytes));
  return a;
}

/** An s32 fd payload, as FILE_ADD/FILE_DEL read it. */
export function fdArg(sys: TaskSyscalls, fd: number): bigint {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, fd, true);
  return userMem(sys, b);
}

export function openKvm(sys: TaskSyscalls): number {
  const fd = sys.open("/dev/kvm", O_RDWR | O_CLOEXEC);
  assert.ok(fd >= 0, `open /dev/kvm: ${fd}`);
  return fd;
}

export function createVm(sys: TaskSyscalls, kvm: number): number {
  const fd = sys.ioctl(kvm, K.KVM_CREATE_VM, 0n);
  assert.ok(fd >= 0, `KVM_CREATE_VM: ${fd}`);
  return fd;
}

/** KVM_CREATE_DEVICE: the result and the struct as the kernel left it. */
export function createDevice(
  sys: TaskSyscalls,
  vm: number,
  type: number = K.KVM_DEV_TYPE_VFIO,
  flags = 0,
  fdIn = 0,
): { ret: number; fd: number } {
  const a = userMem(sys, K.kvm_create_device.encode({ type, fd: fdIn, flags }));
  const ret = sys.ioctl(vm, K.KVM_CREATE_DEVICE, a);
  const back = K.kvm_create_device.decode(sys.peek(a, K.kvm_create_device.size) as Uint8Array);
  return { ret, fd: back.fd };
}

/** A new kvm-vfio device on the VM; its fd. */
export function kvmVfio(sys: TaskSyscalls, vm: number): number {
  const r = createDevice(sys, vm);
  assert.equal(r.ret, 0, `KVM_CREATE_DEVICE(VFIO): ${r.ret}`);
  return r.fd;
}

/** KVM_{SET,GET,HAS}_DEVICE_ATTR with a struct kvm_device_attr in memory. */
export function deviceAttr(
  sys: TaskSyscalls,
  dev: number,
  req: number,
  group: number,
  attr: bigint | number,
  addr = 0n,
  flags = 0,
): number {
  const a = userMem(sys, K.kvm_device_attr.encode({ flags, group, attr: BigInt(attr), addr }));
  return sys.ioctl(dev, req, a);
}

export function fileAdd(sys: TaskSyscalls, kv: number, fd: number): number {
  return deviceAttr(
    sys,
    kv,
    K.KVM_SET_DEVICE_ATTR,
    K.KVM_DEV_VFIO_FILE,
    K.KVM_DEV_VFIO_FILE_ADD,
    fdArg(sys, fd),
  );
}

export function fileDel(sys: TaskSyscalls, kv: number, fd: number): number {
  return deviceAttr(
    sys,
    kv,
    K.KVM_SET_DEVICE_ATTR,
    K.KVM_DEV_VFIO_FILE,
    K.KVM_DEV_VFIO_FILE_DEL,
    fdArg(sys, fd),
  );
}

export function openRw(sys: TaskSyscalls, path: string): number {
  return sys.open(path, O_RDWR | O_CLOEXEC);
}

export function openRo(sys: TaskSyscalls, path: string): number {
  return sys.open(path, O_RDONLY);
}

/** What KVM keeps for the VM behind `vmfd` of `sys` (debugfs name "<pid>-<fd>"); undefined once destroyed. */
export function vmInfo(m: Machine, vmfd: number, sys = m.sys): KvmVmInfo | undefined {
  return m.kernel.debug.vms().find((v) => v.name === `${sys.task.pid}-${vmfd}`);
}

/** VFIO_GROUP_SET_CONTAINER then VFIO_SET_IOMMU(TYPE1v2). */
export function attachContainer(
  sys: TaskSyscalls,
  group: number,
  container: number,
  setIommu = true,
) {
  assert.equal(sys.ioctl(group, U.VFIO_GROUP_SET_CONTAINER, fdArg(sys, container)), 0);
  if (setIommu)
    assert.equal(sys.ioctl(container, U.VFIO_SET_IOMMU, BigInt(U.VFIO_TYPE1v2_IOMMU)), 0);
}

/** VFIO_GROUP_GET_DEVICE_FD by name. */
export function getDeviceFd(sys: TaskSyscalls, group: number, bdf: string): number {
  return sys.ioctl(
    group,
    U.VFIO_GROUP_GET_DEVICE_FD,
    userMem(sys, new TextEncoder().encode(bdf + "\0")),
  );
}
