/**
 * Shared setup for the POWER tests: the built-in POWER9 PowerNV host (examples/hosts/
 * power9.yaml: two PHB4s, a NIC alone in a PE on each), or a POWER8 variant, booted with
 * the kernel's sPAPR backend; a process whose requests use powerpc's ioctl numbers; struct
 * helpers over the process's own memory.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Host } from "../../src/host/build.js";
import { buildHost } from "../../src/host/build.js";
import { loadHost } from "../../src/host/load.js";
import { hostSpecSchema } from "../../src/host/spec.js";
import type { Kernel } from "../../src/kernel/kernel.js";
import { Kernel as KernelClass } from "../../src/kernel/kernel.js";
import type { TaskSyscalls } from "../../src/kernel/core/syscalls.js";
import type { PowerNvMachine } from "../../src/machine/powerpc/machine.js";
import { toPowerpc } from "../../src/uapi/ioctl.js";
import type { StructCodec, FieldType, Decoded } from "../../src/uapi/struct.js";
import {
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  O_CLOEXEC,
  O_RDWR,
  O_WRONLY,
  PROT_READ,
  PROT_WRITE,
} from "../../src/uapi/syscalls.js";
import * as U from "../../src/uapi/vfio.js";
import { ROOT } from "../support/paths.js";

export const NIC = "0000:01:00.0";
export const NIC2 = "0001:01:00.0";
export const PAGE64K = 0x10000;

export interface Power {
  k: Kernel;
  host: Host;
  machine: PowerNvMachine;
  sys: TaskSyscalls;
}

export async function power9(
  opts: { era?: "6.12" | "5.18"; memlock?: bigint } = {},
): Promise<Power> {
  const host = await loadHost(join(ROOT, "examples", "hosts", "power9.yaml"));
  return bootPower(host, opts);
}

/** A POWER8 host (PHB3, no ibm,supported-tce-sizes: the kernel assumes 4K|64K|16M|256M). */
export function power8(opts: { era?: "6.12" | "5.18"; memlock?: bigint } = {}): Power {
  const spec = hostSpecSchema.parse({
    name: "power8",
    platform: { arch: "powernv", cpu: "power8", phbs: [{ index: 0, model: "phb3", numPes: 256 }] },
    functions: [
      {
        addr: "0000:00:00.0",
        id: "1014:03dc",
        class: "060400",
        pcie: "root-port",
        children: [
          {
            addr: "00.0",
            id: "8086:10d3",
            class: "020000",
            pcie: "endpoint",
            bars: [{ index: 0, size: 0x20000 }],
          },
        ],
      },
    ],
  });
  return bootPower(buildHost(spec, "power8"), opts);
}

function bootPower(host: Host, opts: { era?: "6.12" | "5.18"; memlock?: bigint }): Power {
  const bindings = new Map<string, string>();
  for (const [bdf, o] of host.observed) if (o.driver) bindings.set(bdf, o.driver);
  const k = KernelClass.boot(host.machine.hardware(), {
    cmdline: host.cmdline,
    drivers: host.spec.kernel.drivers,
    ...(bindings.size ? { bindings } : {}),
    ...(opts.era ? { ppcTceEra: opts.era } : {}),
  });
  const sys = k.spawn(opts.memlock !== undefined ? { memlock: opts.memlock } : {});
  return { k, host, machine: host.machine as PowerNvMachine, sys };
}

/** ioctl with the powerpc number of a request (the model's constants are the generic ones). */
export function ioctl(
  sys: TaskSyscalls,
  fd: number,
  cmd: number,
  arg: bigint | number = 0,
): number {
  return sys.ioctl(fd, toPowerpc(cmd), BigInt(arg));
}

/** Anonymous memory in the process. */
export function mem(sys: TaskSyscalls, size: number): bigint {
  const a = sys.mmap(0n, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
  assert.ok(a > 0n);
  return a;
}

type Codec = StructCodec<readonly (readonly [string, FieldType])[]>;

/** A struct in user memory: argsz defaults to the struct's size. */
export function put<C extends Codec>(
  sys: TaskSyscalls,
  c: C,
  fields: Partial<Decoded<C["fields"]>>,
): bigint {
  const full = {
    ...Object.fromEntries(c.fields.map(([n, t]) => [n, t === "u64" || t === "s64" ? 0n : 0])),
    argsz: c.size,
    ...fields,
  };
  const a = mem(sys, 4096);
  assert.ok(sys.poke(a, c.encode(full as Decoded<C["fields"]>)));
  return a;
}

export function get<C extends Codec>(sys: TaskSyscalls, c: C, at: bigint): Decoded<C["fields"]> {
  return c.decode(sys.peek(at, c.size) as Uint8Array) as Decoded<C["fields"]>;
}

export function sysfsWrite(sys: TaskSyscalls, path: string, value: string): number {
  const fd = sys.open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return fd;
  const data = new TextEncoder().encode(value);
  const a = mem(sys, 4096);
  sys.poke(a, data);
  const r = sys.write(fd, a, data.length);
  sys.close(fd);
  return r;
}

export function bindVfio(sys: TaskSyscalls, bdf: string): void {
  sysfsWrite(sys, `/sys/bus/pci/devices/${bdf}/driver_override`, "vfio-pci");
  sysfsWrite(sys, `/sys/bus/pci/devices/${bdf}/driver/unbind`, bdf);
  assert.ok(sysfsWrite(sys, "/sys/bus/pci/drivers_probe", bdf) > 0);
}

export function groupPath(sys: TaskSyscalls, bdf: string): string {
  const l = sys.readlink(`/sys/bus/pci/devices/${bdf}/iommu_group`);
  assert.equal(typeof l, "string", `${bdf} has an IOMMU group`);
  return `/dev/vfio/${String(l).split("/").pop()}`;
}

/** Bind, open a container and the group, join them; `type` set when given. */
export function openContainer(
  p: Power,
  bdf = NIC,
  type?: number,
  join: number | null = null,
): { container: number; group: number } {
  bindVfio(p.sys, bdf);
  const container = join ?? p.sys.open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
  const group = p.sys.open(groupPath(p.sys, bdf), O_RDWR | O_CLOEXEC);
  assert.ok(container >= 0 && group >= 0);
  const fdArg = mem(p.sys, 4096);
  p.sys.poke(fdArg, new Uint8Array(new Int32Array([container]).buffer));
  const r = ioctl(p.sys, group, U.VFIO_GROUP_SET_CONTAINER, fdArg);
  if (join !== null) return { container: r, group };
  assert.equal(r, 0);
  if (type !== undefined) assert.equal(ioctl(p.sys, container, U.VFIO_SET_IOMMU, type), 0);
  return { container, group };
}

export function deviceFd(p: Power, group: number, bdf = NIC): number {
  const name = new TextEncoder().encode(bdf + "\0");
  const a = mem(p.sys, 4096);
  p.sys.poke(a, name);
  return ioctl(p.sys, group, U.VFIO_GROUP_GET_DEVICE_FD, a);
}

/** VFIO_IOMMU_MAP_DMA */
export function mapDma(
  p: Power,
  c: number,
  vaddr: bigint,
  iova: bigint,
  size: bigint,
  flags = 3,
): number {
  return ioctl(
    p.sys,
    c,
    U.VFIO_IOMMU_MAP_DMA,
    put(p.sys, U.vfio_iommu_type1_dma_map, { flags, vaddr, iova, size }),
  );
}

export function unmapDma(p: Power, c: number, iova: bigint, size: bigint, flags = 0): number {
  return ioctl(
    p.sys,
    c,
    U.VFIO_IOMMU_UNMAP_DMA,
    put(p.sys, U.vfio_iommu_type1_dma_unmap, { flags, iova, size }),
  );
}

export function register(
  p: Power,
  c: number,
  vaddr: bigint,
  size: bigint,
  req = U.VFIO_IOMMU_SPAPR_REGISTER_MEMORY,
): number {
  return ioctl(p.sys, c, req, put(p.sys, U.vfio_iommu_spapr_register_memory, { vaddr, size }));
}

export function eehOp(
  p: Power,
  c: number,
  op: number,
  extra: Partial<Decoded<typeof U.vfio_eeh_pe_op.fields>> = {},
): number {
  return ioctl(p.sys, c, U.VFIO_EEH_PE_OP, put(p.sys, U.vfio_eeh_pe_op, { op, ...extra }));
}
