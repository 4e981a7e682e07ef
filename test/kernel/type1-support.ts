/**
 * What the type1 tests share: a machine of NVMe endpoints, each alone in its IOMMU group
 * behind an ACS root port, behind VT-d or AMD-Vi units with chosen registers; the steps a
 * VMM takes (bind to vfio-pci through sysfs, container, group, SET_IOMMU, MAP/UNMAP with
 * the structs packed into the process's own memory); and page-table walkers, written from
 * the hardware formats, that read the tables the kernel left in the machine's RAM.
 */
import assert from "node:assert/strict";
import { buildHost, type Host } from "../../src/host/build.js";
import { hostSpecSchema } from "../../src/host/spec.js";
import type { TaskSyscalls } from "../../src/kernel/core/syscalls.js";
import { Kernel, type TaskOptions } from "../../src/kernel/kernel.js";
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

/** QEMU intel-iommu as the oracle runs it: 39-bit, 2M+1G superpages, ECAP QI IR PT SC. */
export const CAP39 = "0xd2008c22260206";
export const ECAP_SC_IR = "0xf00fca";
/** The same without Snoop Control (snoop-control=off). */
export const ECAP_IR = "0xf00f4a";
/** Without interrupt remapping (ECAP.IR clear), SC on. */
export const ECAP_SC = "0xf00fc2";
/** A 48-bit unit (SAGAW 39+48, MGAW 48), no superpages, 256 domain IDs. */
export const CAP48_NOSP = "0x2f0603";

export interface UnitSpec {
  kind: "intel-vtd" | "amd-vi";
  name: string;
  cap?: string;
  ecap?: string;
  devices?: string[];
}

export interface Rig {
  host: Host;
  kernel: Kernel;
  sys: TaskSyscalls;
  /** The endpoints, "0000:0N:00.0" for N = 1.. */
  eps: string[];
}

/** `n` root ports 00:1c.N..., each with one endpoint on bus N+1, behind `units`. */
export function rig(units: UnitSpec[], n = 2, cmdline = "", task?: TaskOptions): Rig {
  const functions = Array.from({ length: n }, (_, i) => ({
    addr: `0000:00:${(0x1c + i).toString(16)}.0`,
    id: "8086:a338",
    class: "060400",
    pcie: "root-port",
    acs: { cap: ["sv", "rr", "cr", "uf"], ctl: [] },
    driver: "pcieport",
    children: [
      { addr: "00.0", id: "144d:a808", class: "010802", pcie: "endpoint", driver: "nvme" },
    ],
  }));
  const spec = hostSpecSchema.parse({
    name: "type1-test",
    kernel: { cmdline },
    iommu: units,
    functions,
  });
  const host = buildHost(spec, "type1-test");
  const bindings = new Map<string, string>();
  for (const [bdf, o] of host.observed) if (o.driver) bindings.set(bdf, o.driver);
  const kernel = Kernel.boot(host.machine.hardware(), { cmdline, bindings });
  const sys = kernel.spawn(task);
  const eps = Array.from({ length: n }, (_, i) => `0000:0${i + 1}:00.0`);
  return { host, kernel, sys, eps };
}

/**
 * A VT-d unit; with `devices`, a DMAR device scope (list such units before the catch-all
 * one: DRHDs with INCLUDE_PCI_ALL are matched last).
 */
export const intel = (
  cap = CAP39,
  ecap = ECAP_SC_IR,
  name = "dmar0",
  devices?: string[],
): UnitSpec => ({
  kind: "intel-vtd",
  name,
  cap,
  ecap,
  ...(devices ? { devices } : {}),
});

/** The second endpoint and its root port, for a unit of their own. */
export const SECOND = ["0000:00:1d.0", "0000:02:00.0"];
export const amd = (): UnitSpec => ({ kind: "amd-vi", name: "ivhd0" });

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

/** An anonymous mapping of `size` bytes; its address. */
export function buffer(sys: TaskSyscalls, size: number, prot = PROT_READ | PROT_WRITE): bigint {
  const a = sys.mmap(0n, size, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1);
  assert.ok(a > 0n, `mmap: ${a}`);
  return a;
}

/** open + write + close of a sysfs attribute (the script's sysfs_write). */
export function sysfsWrite(sys: TaskSyscalls, path: string, value: string): number {
  const fd = sys.open(path, O_WRONLY);
  if (fd < 0) return fd;
  const data = new TextEncoder().encode(value);
  const r = sys.write(fd, userMem(sys, data), data.length);
  sys.close(fd);
  return r < 0 ? r : 0;
}

/** driver_override + unbind + drivers_probe, as the oracle scripts bind a device. */
export function bindVfio(r: Rig, bdf: string): void {
  const dev = `/sys/bus/pci/devices/${bdf}`;
  assert.equal(sysfsWrite(r.sys, `${dev}/driver_override`, "vfio-pci"), 0);
  sysfsWrite(r.sys, `${dev}/driver/unbind`, bdf);
  assert.equal(sysfsWrite(r.sys, "/sys/bus/pci/drivers_probe", bdf), 0);
  assert.match(String(r.sys.readlink(`${dev}/driver`)), /\/vfio-pci$/);
}

export function groupPath(r: Rig, bdf: string): string {
  const g = r.kernel.debug.groups().find((x) => x.devices.includes(bdf));
  assert.ok(g, `${bdf} has no IOMMU group`);
  return `/dev/vfio/${g.id}`;
}

export function s32(sys: TaskSyscalls, v: number): bigint {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, v, true);
  return userMem(sys, b);
}

export function openRw(sys: TaskSyscalls, path: string): number {
  const fd = sys.open(path, O_RDWR | O_CLOEXEC);
  assert.ok(fd >= 0, `open ${path}: ${fd}`);
  return fd;
}

/** Open the group of `bdf` and put it in `container`; the group fd. */
export function joinGroup(r: Rig, container: number, bdf: string, sys = r.sys): number {
  const g = openRw(sys, groupPath(r, bdf));
  assert.equal(sys.ioctl(g, U.VFIO_GROUP_SET_CONTAINER, s32(sys, container)), 0);
  return g;
}

export interface Vm {
  container: number;
  groups: number[];
}

/** Bind the endpoints to vfio-pci, one container, every group in it, SET_IOMMU(type). */
export function vfioSetup(
  r: Rig,
  bdfs = r.eps,
  type = U.VFIO_TYPE1v2_IOMMU,
  sys = r.sys,
): Vm & { setIommu: number } {
  for (const b of bdfs) bindVfio(r, b);
  const container = openRw(sys, "/dev/vfio/vfio");
  const groups = bdfs.map((b) => joinGroup(r, container, b, sys));
  const setIommu = sys.ioctl(container, U.VFIO_SET_IOMMU, BigInt(type));
  return { container, groups, setIommu };
}

type MapArgs = Partial<{ argsz: number; flags: number; vaddr: bigint; iova: bigint; size: bigint }>;

export function mapDma(sys: TaskSyscalls, c: number, a: MapArgs): number {
  const S = U.vfio_iommu_type1_dma_map;
  const arg = userMem(
    sys,
    S.encode({
      argsz: a.argsz ?? S.size,
      flags: a.flags ?? U.VFIO_DMA_MAP_FLAG_READ | U.VFIO_DMA_MAP_FLAG_WRITE,
      vaddr: a.vaddr ?? 0n,
      iova: a.iova ?? 0n,
      size: a.size ?? 0x1000n,
    }),
  );
  return sys.ioctl(c, U.VFIO_IOMMU_MAP_DMA, arg);
}

type UnmapArgs = Partial<{ argsz: number; flags: number; iova: bigint; size: bigint }>;

/** UNMAP_DMA; the result and the size the kernel left in the struct. */
export function unmapDma(
  sys: TaskSyscalls,
  c: number,
  a: UnmapArgs,
  bitmap?: { pgsize: bigint; size: bigint; data: bigint },
): { ret: number; size: bigint } {
  const S = U.vfio_iommu_type1_dma_unmap;
  const head = S.encode({
    argsz: a.argsz ?? S.size + (bitmap ? U.vfio_bitmap.size : 0),
    flags: a.flags ?? 0,
    iova: a.iova ?? 0n,
    size: a.size ?? 0n,
  });
  const tail = bitmap ? U.vfio_bitmap.encode(bitmap) : new Uint8Array(0);
  const all = new Uint8Array(head.length + tail.length);
  all.set(head);
  all.set(tail, head.length);
  const arg = userMem(sys, all);
  const ret = sys.ioctl(c, U.VFIO_IOMMU_UNMAP_DMA, arg);
  return { ret, size: S.decode(sys.peek(arg, S.size) as Uint8Array).size };
}

export interface Info {
  ret: number;
  argsz: number;
  flags: number;
  pgsizes: bigint;
  capOffset: number;
  /** Capabilities by id: the bytes of each, header included. */
  caps: Map<number, Uint8Array>;
}

/** GET_INFO with room for `room` bytes of capabilities; the chain walked by `next`. */
export function getInfo(sys: TaskSyscalls, c: number, room = 512, argsz?: number): Info {
  const S = U.vfio_iommu_type1_info;
  const buf = new Uint8Array(S.size + room);
  buf.set(
    S.encode({ argsz: argsz ?? S.size + room, flags: 0, iova_pgsizes: 0n, cap_offset: 0, pad: 0 }),
  );
  const arg = userMem(sys, buf);
  const ret = sys.ioctl(c, U.VFIO_IOMMU_GET_INFO, arg);
  const out = sys.peek(arg, buf.length) as Uint8Array;
  const info = S.decode(out);
  const caps = new Map<number, Uint8Array>();
  const dv = new DataView(out.buffer, out.byteOffset);
  for (let at = info.cap_offset; at;) {
    const id = dv.getUint16(at, true);
    const next = dv.getUint32(at + 4, true);
    caps.set(id, out.subarray(at, next || out.length));
    at = next;
  }
  return {
    ret,
    argsz: info.argsz,
    flags: info.flags,
    pgsizes: info.iova_pgsizes,
    capOffset: info.cap_offset,
    caps,
  };
}

/** The IOVA_RANGE capability's ranges. */
export function iovaRanges(info: Info): [bigint, bigint][] {
  const c = info.caps.get(U.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE);
  assert.ok(c, "no IOVA_RANGE capability");
  const dv = new DataView(c.buffer, c.byteOffset);
  const n = dv.getUint32(8, true);
  return Array.from({ length: n }, (_, i) => [
    dv.getBigUint64(16 + i * 16, true),
    dv.getBigUint64(24 + i * 16, true),
  ]);
}

/** The DMA_AVAIL capability's count. */
export function dmaAvail(sys: TaskSyscalls, c: number): number {
  const cap = getInfo(sys, c).caps.get(U.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL);
  assert.ok(cap, "no DMA_AVAIL capability");
  return new DataView(cap.buffer, cap.byteOffset).getUint32(8, true);
}

/* ------------------------------------------------------------------------------------ */
/* Page-table walkers (the hardware's view)                                             */
/* ------------------------------------------------------------------------------------ */

export interface Leaf {
  pa: number;
  pageSize: bigint;
  read: boolean;
  write: boolean;
  /** VT-d SNP / AMD-Vi FC. */
  coherent: boolean;
  /** The level (1 = 4 KiB) the leaf sits at. */
  level: number;
}

function pte(r: Rig, pa: bigint): bigint {
  const b = r.host.machine.memory.read(Number(pa), 8);
  return new DataView(b.buffer, b.byteOffset).getBigUint64(0, true);
}

const ADDR = 0x000f_ffff_ffff_f000n;

/** The translation the kernel programmed for a requester ID. */
export function context(r: Rig, unit: string, rid: number) {
  return r.host.machine.iommu.translation(unit, 0, rid);
}

/** Walk a VT-d second-level table (Intel VT-d spec ch. 9.8: R bit 0, W bit 1, PS bit 7, SNP bit 11). */
export function walkVtd(r: Rig, unit: string, rid: number, iova: bigint): Leaf | null {
  const t = context(r, unit, rid);
  assert.ok(t && t !== "passthrough", `no table for ${rid.toString(16)}`);
  let table = BigInt(t.root);
  for (let level = t.levels; level >= 1; level--) {
    const shift = BigInt(12 + 9 * (level - 1));
    const e = pte(r, table + ((iova >> shift) & 511n) * 8n);
    if ((e & 3n) === 0n) return null;
    if (level === 1 || (e & 0x80n) !== 0n) {
      const pageSize = 1n << shift;
      return {
        pa: Number((e & ADDR & ~(pageSize - 1n)) | (iova & (pageSize - 1n))),
        pageSize,
        read: (e & 1n) !== 0n,
        write: (e & 2n) !== 0n,
        coherent: (e & (1n << 11n)) !== 0n,
        level,
      };
    }
    table = e & ADDR;
  }
  return null;
}

/**
 * Walk an AMD-Vi v1 table (AMD IOMMU spec 2.2.3: present bit 0, next level bits 11:9, 0 a
 * leaf of the level's size, 7 a leaf whose size is the lowest zero bit of the address
 * field; FC bit 60, IR 61, IW 62).
 */
export function walkAmd(r: Rig, unit: string, rid: number, iova: bigint): Leaf | null {
  const t = context(r, unit, rid);
  assert.ok(t && t !== "passthrough", `no table for ${rid.toString(16)}`);
  let table = BigInt(t.root);
  let level = t.levels - 1;
  while (true) {
    const shift = BigInt(12 + 9 * level);
    const e = pte(r, table + ((iova >> shift) & 511n) * 8n);
    if ((e & 1n) === 0n) return null;
    const next = Number((e >> 9n) & 7n);
    if (next === 0 || next === 7) {
      let pageSize = 1n << shift;
      if (next === 7) {
        let z = 12n;
        while ((e >> z) & 1n) z++;
        pageSize = 1n << (z + 1n);
      }
      return {
        pa: Number((e & ADDR & ~(pageSize - 1n)) | (iova & (pageSize - 1n))),
        pageSize,
        read: ((e >> 61n) & 1n) !== 0n,
        write: ((e >> 62n) & 1n) !== 0n,
        coherent: ((e >> 60n) & 1n) !== 0n,
        level: level + 1,
      };
    }
    assert.equal(next, level, "AMD-Vi: a PDE names the level of the table it points to");
    table = e & ADDR;
    level--;
  }
}

/** Write a pattern with the CPU into user memory; what the IOMMU's leaf points at must hold it. */
export function pattern(sys: TaskSyscalls, va: bigint, seed: number, len = 16): Uint8Array {
  const p = Uint8Array.from({ length: len }, (_, i) => (seed * 31 + i * 7) & 0xff);
  assert.ok(sys.poke(va, p));
  return p;
}

export function ramAt(r: Rig, pa: number, len: number): Uint8Array {
  return r.host.machine.memory.read(pa, len);
}
