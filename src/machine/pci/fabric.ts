/**
 * The physical PCI fabric: host bridges with their root buses, functions on buses, and
 * bridges leading to secondary buses. Configuration cycles are routed the way hardware
 * routes them (PCI-to-PCI Bridge Architecture 1.2 §3.2): a bus number is claimed by the
 * bridge whose secondary..subordinate range holds it, and only a function that exists
 * answers; anything else reads as all ones.
 *
 * SR-IOV: setting VF Enable in a PF's SR-IOV Control register makes NumVFs virtual
 * functions appear at Routing ID = PF + First VF Offset + i * VF Stride (PCIe 6.0 §9.3.3);
 * clearing it removes them. VFs read 0xffff as vendor and device ID (§9.3.4.1.1).
 */
import type { PciConfigAccess } from "../hw.js";
import * as R from "../../uapi/pci_regs.js";
import { ConfigSpace } from "./config-space.js";
import { walkCaps, walkExtCaps } from "./builder.js";
import { romRead } from "./rom.js";

/** The expansion ROM's index among a function's resources (as PCI_ROM_RESOURCE). */
export const ROM_BAR = 6;

export class PhysBus {
  readonly slots = new Map<number, PciFunction>();
  constructor(
    readonly domain: number,
    /** The bridge whose secondary side this is; null for a root bus. */
    readonly upstream: PciFunction | null,
    /** A root bus's number (fixed by the host bridge). */
    readonly rootNumber = 0,
  ) {}
}

/** What a function does beyond its config space: a device model decoding its BARs. */
export interface DeviceModel {
  mmioRead(bar: number, off: number, width: 1 | 2 | 4 | 8): bigint;
  mmioWrite(bar: number, off: number, width: 1 | 2 | 4 | 8, value: bigint): void;
  /** A conventional reset of the function (FLR, or a reset of the bus above it). */
  functionReset?(): void;
}

export class PciFunction {
  /** The bus behind this bridge, when it is one. */
  secondary: PhysBus | null = null;
  model: DeviceModel | null = null;
  /** The expansion ROM's contents (rom.ts); null when blank, absent or the model's own. */
  rom: Uint8Array | null = null;
  /** For a VF: its PF. For a PF: the VFs it currently exposes. */
  physfn: PciFunction | null = null;
  readonly vfs: PciFunction[] = [];
  constructor(
    readonly bus: PhysBus,
    readonly devfn: number,
    readonly config: ConfigSpace,
  ) {}
}

export class PciFabric implements PciConfigAccess {
  readonly roots: PhysBus[] = [];
  private route = new Map<string, PhysBus | null>();

  addRoot(domain: number, number: number): PhysBus {
    const b = new PhysBus(domain, null, number);
    this.roots.push(b);
    this.route.clear();
    return b;
  }

  attach(bus: PhysBus, devfn: number, config: ConfigSpace): PciFunction {
    const f = new PciFunction(bus, devfn, config);
    bus.slots.set(devfn, f);
    this.route.clear();
    return f;
  }

  /** Give a bridge function its physical secondary bus. */
  link(bridge: PciFunction): PhysBus {
    bridge.secondary ??= new PhysBus(bridge.bus.domain, bridge);
    this.route.clear();
    return bridge.secondary;
  }

  /** The number a bus currently answers to: its bridge's secondary register. */
  busNumber(bus: PhysBus): number {
    return bus.upstream ? bus.upstream.config.read(R.PCI_SECONDARY_BUS, 1) : bus.rootNumber;
  }

  /** Which physical bus a type-1 cycle for (domain, number) reaches, following bridge ranges. */
  findBus(domain: number, number: number): PhysBus | null {
    const key = `${domain}:${number}`;
    const hit = this.route.get(key);
    if (hit !== undefined) return hit;
    let found: PhysBus | null = null;
    for (const root of this.roots) {
      if (root.domain !== domain) continue;
      found = this.walk(root, number, 0);
      if (found) break;
    }
    this.route.set(key, found);
    return found;
  }

  private walk(bus: PhysBus, number: number, depth: number): PhysBus | null {
    if (depth > 256) return null; // a loop in bridge ranges cannot be routed
    if (this.busNumber(bus) === number) return bus;
    for (const f of bus.slots.values()) {
      if (!f.secondary) continue;
      const sec = f.config.read(R.PCI_SECONDARY_BUS, 1);
      const sub = f.config.read(R.PCI_SUBORDINATE_BUS, 1);
      if (sec !== 0 && number >= sec && number <= sub)
        return this.walk(f.secondary, number, depth + 1);
    }
    return null;
  }

  fn(domain: number, bus: number, devfn: number): PciFunction | undefined {
    return this.findBus(domain, bus)?.slots.get(devfn);
  }

  read(domain: number, bus: number, devfn: number, offset: number, width: 1 | 2 | 4): number {
    const f = this.fn(domain, bus, devfn);
    if (!f) return width === 4 ? 0xffffffff : (1 << (width * 8)) - 1;
    return f.config.read(offset, width);
  }

  write(
    domain: number,
    bus: number,
    devfn: number,
    offset: number,
    width: 1 | 2 | 4,
    value: number,
  ): void {
    const f = this.fn(domain, bus, devfn);
    if (!f) return;
    f.config.write(offset, width, value);
    if (offset >= R.PCI_PRIMARY_BUS && offset <= R.PCI_SUBORDINATE_BUS) this.route.clear();
    this.resetOnWrite(f, offset, width, value);
    const sriov = walkExtCaps(f.config).find(([id]) => id === R.PCI_EXT_CAP_ID_SRIOV)?.[1];
    if (
      sriov !== undefined &&
      offset <= sriov + R.PCI_SRIOV_CTRL &&
      offset + width > sriov + R.PCI_SRIOV_CTRL
    ) {
      this.updateVfs(f, sriov);
    }
  }

  /**
   * BAR accesses go to the function's device model; without one nothing decodes them.
   * The expansion ROM (index 6) answers from the function's ROM contents when it has
   * some (read-only), else from its device model like a BAR.
   */
  mmioRead(
    domain: number,
    bus: number,
    devfn: number,
    bar: number,
    off: number,
    width: 1 | 2 | 4 | 8,
  ): bigint {
    const f = this.fn(domain, bus, devfn);
    if (f?.rom && bar === ROM_BAR) return romRead(f.config, f.rom, off, width);
    return f?.model?.mmioRead(bar, off, width) ?? (1n << BigInt(width * 8)) - 1n;
  }

  mmioWrite(
    domain: number,
    bus: number,
    devfn: number,
    bar: number,
    off: number,
    width: 1 | 2 | 4 | 8,
    value: bigint,
  ): void {
    const f = this.fn(domain, bus, devfn);
    if (!(f?.rom && bar === ROM_BAR)) f?.model?.mmioWrite(bar, off, width, value);
  }

  configKnown(domain: number, bus: number, devfn: number, offset: number, len: number): boolean {
    return this.fn(domain, bus, devfn)?.config.isKnown(offset, len) ?? true;
  }

  /**
   * Resets a config write starts: Initiate Function Level Reset in the PCIe Device Control
   * register (PCIe 6.0 §7.5.3.4) resets the function; Secondary Bus Reset in a bridge's
   * Bridge Control (PCI-to-PCI Bridge 1.2 §3.2.5.18) resets everything below it.
   */
  private resetOnWrite(f: PciFunction, offset: number, width: number, value: number): void {
    const bit = (reg: number, mask: number) =>
      reg >= offset && reg + 2 <= offset + width && (value / 2 ** (8 * (reg - offset))) & mask;
    const exp = walkCaps(f.config).find(([id]) => id === R.PCI_CAP_ID_EXP)?.[1];
    if (exp !== undefined && bit(exp + R.PCI_EXP_DEVCTL, R.PCI_EXP_DEVCTL_BCR_FLR))
      f.model?.functionReset?.();
    if (f.secondary && bit(R.PCI_BRIDGE_CONTROL, R.PCI_BRIDGE_CTL_BUS_RESET))
      this.resetBelow(f.secondary, 0);
  }

  private resetBelow(bus: PhysBus, depth: number): void {
    if (depth > 256) return;
    for (const f of bus.slots.values()) {
      f.model?.functionReset?.();
      if (f.secondary) this.resetBelow(f.secondary, depth + 1);
    }
  }

  /** VF Enable changed: instantiate or remove the PF's virtual functions. */
  private updateVfs(pf: PciFunction, cap: number): void {
    const enabled = (pf.config.read(cap + R.PCI_SRIOV_CTRL, 2) & R.PCI_SRIOV_CTRL_VFE) !== 0;
    for (const vf of pf.vfs.splice(0)) vf.bus.slots.delete(vf.devfn);
    if (!enabled) {
      this.route.clear();
      return;
    }
    const num = Math.min(
      pf.config.read(cap + R.PCI_SRIOV_NUM_VF, 2),
      pf.config.read(cap + R.PCI_SRIOV_TOTAL_VF, 2),
    );
    const offset = pf.config.read(cap + R.PCI_SRIOV_VF_OFFSET, 2);
    const stride = pf.config.read(cap + R.PCI_SRIOV_VF_STRIDE, 2);
    const pfBus = this.busNumber(pf.bus);
    for (let i = 0; i < num; i++) {
      const rid = (pfBus << 8) + pf.devfn + offset + stride * i;
      const busnr = rid >> 8;
      const bus = busnr === pfBus ? pf.bus : this.vfBus(pf, busnr);
      const vf = this.attach(bus, rid & 0xff, vfConfig(pf.config));
      vf.physfn = pf;
      pf.vfs.push(vf);
    }
    this.route.clear();
  }

  /** VFs whose Routing ID carries into the next bus number live on a bus with no bridge. */
  private vfBus(pf: PciFunction, number: number): PhysBus {
    const existing = this.findBus(pf.bus.domain, number);
    if (existing) return existing;
    const b = new PhysBus(pf.bus.domain, null, number);
    this.roots.push(b);
    return b;
  }
}

/** A VF's own config space: IDs read 0xffff, class copied from the PF, an endpoint PCIe cap with FLR. */
function vfConfig(pf: ConfigSpace): ConfigSpace {
  const cs = new ConfigSpace(4096);
  cs.set(R.PCI_VENDOR_ID, 2, 0xffff);
  cs.set(R.PCI_DEVICE_ID, 2, 0xffff);
  cs.set(R.PCI_CLASS_REVISION, 4, pf.read(R.PCI_CLASS_REVISION, 4));
  cs.set(R.PCI_STATUS, 2, R.PCI_STATUS_CAP_LIST);
  // A VF's Bus Master Enable is its own (RW); Memory Space Enable is the PF's VF MSE.
  cs.allow(R.PCI_COMMAND, 2, R.PCI_COMMAND_MASTER);
  cs.set(R.PCI_CAPABILITY_LIST, 1, 0x40);
  cs.set(0x40, 1, R.PCI_CAP_ID_EXP);
  cs.set(0x40 + R.PCI_EXP_FLAGS, 2, 0x0002 | (R.PCI_EXP_TYPE_ENDPOINT << 4));
  cs.set(0x40 + R.PCI_EXP_DEVCAP, 4, R.PCI_EXP_DEVCAP_FLR);
  cs.allow(0x40 + R.PCI_EXP_DEVCTL, 2, 0xffff);
  return cs;
}
