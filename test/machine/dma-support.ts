/**
 * Test fixtures for the DMA path: a small machine (root port 00:01.0 → endpoint 01:00.0)
 * with an optional IOMMU unit, and page-table writers for the VT-d and AMD-Vi formats
 * written from the specifications (not from the kernel model), so a test's tables are an
 * independent statement of the format.
 */
import type { IommuUnitDesc, MemoryAccess } from "../../src/machine/hw.js";
import { Machine } from "../../src/machine/machine.js";
import { buildConfigSpace, walkCaps } from "../../src/machine/pci/builder.js";
import type { PciFunction } from "../../src/machine/pci/fabric.js";
import * as R from "../../src/uapi/pci_regs.js";

export function setMaster(f: PciFunction, on = true): void {
  const cmd = f.config.read(R.PCI_COMMAND, 2);
  f.config.write(R.PCI_COMMAND, 2, on ? cmd | R.PCI_COMMAND_MASTER : cmd & ~R.PCI_COMMAND_MASTER);
}

/** Set Enable No Snoop in a PCIe function's Device Control. */
export function setNoSnoopEnable(f: PciFunction, on = true): void {
  const at = walkCaps(f.config).find(([id]) => id === R.PCI_CAP_ID_EXP)?.[1];
  if (at === undefined) throw new Error("not a PCIe function");
  const v = f.config.read(at + R.PCI_EXP_DEVCTL, 2);
  f.config.write(
    at + R.PCI_EXP_DEVCTL,
    2,
    on ? v | R.PCI_EXP_DEVCTL_NOSNOOP_EN : v & ~R.PCI_EXP_DEVCTL_NOSNOOP_EN,
  );
}

/** A VT-d CAP_REG with these fields (VT-d spec ch. 10; iommu.h cap_*). */
export function vtdCap(f: { sagaw: number; mgaw: number; sllps?: number; nfr?: number }): bigint {
  return (
    (BigInt(f.sagaw) << 8n) |
    (BigInt(f.mgaw - 1) << 16n) |
    (BigInt(f.sllps ?? 0) << 34n) |
    (BigInt((f.nfr ?? 1) - 1) << 40n)
  );
}

/** A VT-d ECAP_REG: Snoop Control (bit 7), Pass Through (bit 6). */
export function vtdEcap(f: { sc?: boolean; pt?: boolean }): bigint {
  return (f.sc ? 1n << 7n : 0n) | (f.pt ? 1n << 6n : 0n) | 0x2n; // QI
}

export interface Rig {
  m: Machine;
  port: PciFunction;
  dev: PciFunction;
  /** The endpoint's requester ID: 01:00.0. */
  rid: number;
}

/** Root port 00:01.0 (bus 1) and a PCIe endpoint 01:00.0, both bus masters. */
export function rig(unit?: Partial<IommuUnitDesc> & Pick<IommuUnitDesc, "kind">): Rig {
  const m = new Machine("test");
  const root = m.pci.addRoot(0, 0);
  m.roots.push({ domain: 0, bus: 0 });
  const port = m.pci.attach(
    root,
    R.PCI_DEVFN(1, 0),
    buildConfigSpace({
      header: "bridge",
      pcieTypeCode: R.PCI_EXP_TYPE_ROOT_PORT,
      secondary: 1,
      subordinate: 1,
      primary: 0,
    }),
  );
  const dev = m.pci.attach(
    m.pci.link(port),
    0,
    buildConfigSpace({
      id: { vendor: 0x8086, device: 0x10d3 },
      class: 0x020000,
      pcieTypeCode: R.PCI_EXP_TYPE_ENDPOINT,
      bars: [{ index: 0, size: 0x20000, kind: "mem32", prefetchable: false }],
    }),
  );
  setMaster(port);
  setMaster(dev);
  if (unit) {
    m.iommus.push({
      name: unit.kind === "amd-vi" ? "ivhd0" : "dmar0",
      cap: 0n,
      ecap: 0n,
      segment: 0,
      scope: { all: true, exclude: [] },
      ...unit,
    });
  }
  return { m, port, dev, rid: 0x0100 };
}

/** A bump allocator of zeroed 4 KiB table pages, and 64-bit little-endian entry access. */
export class Tables {
  next: number;
  constructor(
    readonly mem: MemoryAccess,
    base = 0x100000,
  ) {
    this.next = base;
  }
  alloc(): number {
    const pa = this.next;
    this.next += 0x1000;
    this.mem.write(pa, new Uint8Array(0x1000));
    return pa;
  }
  get(pa: number): bigint {
    const b = this.mem.read(pa, 8);
    return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
  }
  set(pa: number, v: bigint): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, v, true);
    this.mem.write(pa, b);
  }
}

const ADDR = 0x000f_ffff_ffff_f000n;

/**
 * VT-d second-level: map `iova` → `pa` with leaf bits `flags` (R=1, W=2, SNP=0x800) at
 * `leafLevel` (1 = 4 KiB, 2 = 2 MiB with PS, 3 = 1 GiB with PS). Non-leaf entries get
 * `nonLeaf` (R|W by default, as Linux writes them). Returns the leaf entry's address.
 */
export function vtdMap(
  t: Tables,
  root: number,
  levels: number,
  iova: bigint,
  pa: number,
  flags: bigint,
  leafLevel = 1,
  nonLeaf = 3n,
): number {
  let table = root;
  for (let level = levels; ; level--) {
    const idx = Number((iova >> BigInt(12 + 9 * (level - 1))) & 0x1ffn);
    const at = table + idx * 8;
    if (level === leafLevel) {
      t.set(at, BigInt(pa) | flags | (leafLevel > 1 ? 1n << 7n : 0n));
      return at;
    }
    let e = t.get(at);
    if ((e & 3n) === 0n) {
      e = BigInt(t.alloc()) | nonLeaf;
      t.set(at, e);
    }
    table = Number(e & ADDR);
  }
}

/**
 * AMD-Vi v1: map `iova` → `pa` with leaf bits `flags` (IR=1<<61, IW=1<<62, FC=1<<60)
 * at `leafLevel` (NextLevel 0); PDEs get PR|IR|IW and NextLevel = level - 1.
 */
export function amdMap(
  t: Tables,
  root: number,
  mode: number,
  iova: bigint,
  pa: number,
  flags: bigint,
  leafLevel = 1,
): number {
  let table = root;
  for (let level = mode; ; level--) {
    const idx = Number((iova >> BigInt(12 + 9 * (level - 1))) & 0x1ffn);
    const at = table + idx * 8;
    if (level === leafLevel) {
      t.set(at, BigInt(pa) | flags | 1n);
      return at;
    }
    let e = t.get(at);
    if ((e & 1n) === 0n) {
      e = BigInt(t.alloc()) | (BigInt(level - 1) << 9n) | 1n | AMD_IR | AMD_IW;
      t.set(at, e);
    }
    table = Number(e & ADDR);
  }
}

export const VTD_R = 1n;
export const VTD_W = 2n;
export const VTD_SNP = 1n << 11n;
export const AMD_FC = 1n << 60n;
export const AMD_IR = 1n << 61n;
export const AMD_IW = 1n << 62n;

export const bytes = (...v: number[]) => Uint8Array.from(v);
