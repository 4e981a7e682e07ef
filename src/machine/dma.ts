/**
 * DMA: a PCI function, as bus master, reads or writes system RAM at a bus address (IOVA).
 * The request travels up the fabric to the root complex, where the IOMMU unit whose
 * firmware scope covers it translates it; without one, bus address = physical address.
 *
 * The path, as hardware builds it:
 * - Bus Master Enable: a function with it clear issues no request; a bridge / port with it
 *   clear does not forward requests from below (PCIe 6.0 §7.5.1.1.3; PCI-to-PCI Bridge
 *   Architecture 1.2 §3.2.2.3.4): the transaction is then an Unsupported Request.
 * - Requester ID: the function's own (bus << 8 | devfn), except that a bridge to
 *   conventional PCI takes ownership of what crosses it: a PCIe-to-PCI bridge issues it
 *   with (secondary bus, device 0, function 0) (PCIe-to-PCI/PCI-X Bridge Spec 1.0 §2.3),
 *   and so does a bridge without a PCIe capability sitting directly below a PCIe port,
 *   which physically is such a bridge hiding its capability (the case Linux's
 *   quirk_use_pcie_bridge_dma_alias handles for known chips); any other bridge without a
 *   PCIe capability is taken to use its own ID, as pci_for_each_dma_alias assumes. A
 *   PCI-to-PCIe bridge uses its own ID. Devices below Intel VMD reach the IOMMU with the
 *   VMD endpoint's ID. A VF sits where its PF does.
 * - No Snoop: a request carries it only if the function set Enable No Snoop (Device
 *   Control bit 11, the PF's for a VF; PCIe 6.0 §7.5.3.4); conventional PCI has no such
 *   attribute, so it is dropped where a bridge to conventional PCI owns the request.
 *   The access snoops CPU caches unless it carries No Snoop and the translation does not
 *   force snooping (VT-d SNP under ECAP.SC, AMD-Vi FC): snoop = !noSnoop || forced.
 * - TLPs never cross a 4 KiB boundary (PCIe 6.0 §2.2.7), so each page of a transfer is
 *   translated on its own: a page that faults (logged by the unit) or has no RAM behind it
 *   (Unsupported Request) is not transferred, and the other pages are — as each posted
 *   write / read request stands alone on hardware. A one-page transfer that faults touches
 *   no memory. Read data that did not arrive is returned as zeros (what QEMU's DMA API
 *   gives a device model for an unassigned access).
 *
 * Cache coherency is a hook: `coherency.snoop()` runs before a snooped access reaches RAM
 * (where CPU caches will write back / invalidate), `coherency.bypass()` before a
 * non-snooped one; each transaction reports whether it snooped. Costs are counted and
 * priced with a cost table (costs.ts).
 */
import { DEFAULT_COSTS, type CostTable } from "./costs.js";
import { PAGE_SIZE, type IommuFault, type IommuUnitDesc } from "./hw.js";
import type { Machine } from "./machine.js";
import { walkCaps } from "./pci/builder.js";
import type { PciFunction, PhysBus } from "./pci/fabric.js";
import * as R from "../uapi/pci_regs.js";

export interface DmaOptions {
  /** Ask for the No Snoop attribute (honoured only as the path allows, see above). */
  noSnoop?: boolean;
}

/** How a function's requests reach the root complex. */
export interface DmaRoute {
  segment: number;
  /** Requester ID as the IOMMU sees it. */
  rid: number;
  /** The function named by that ID (the issuer, a bridge, or the VMD endpoint). */
  requester: PciFunction;
  /** The unit whose scope covers the request, or null (untranslated). */
  unit: IommuUnitDesc | null;
  /** Whether a No Snoop attribute the issuer sets arrives at the root complex. */
  noSnoopAllowed: boolean;
  /** Set when no request gets out: the function or bridge whose Bus Master Enable is clear. */
  stoppedBy?: PciFunction;
}

export interface DmaPage {
  iova: bigint;
  len: number;
  /** Physical address reached, or null when the page faulted. */
  pa: number | null;
  /** Whether the access snooped CPU caches (meaningful when it reached memory). */
  snoop: boolean;
  /** The translation forced snooping on a request that carried No Snoop. */
  forcedSnoop: boolean;
  iotlb: "hit" | "miss" | "none";
  walkReads: number;
  fault?: IommuFault;
  /** No RAM at the physical address: Unsupported Request. */
  unsupported?: boolean;
}

export interface DmaCost {
  /** Simulated time priced with the engine's cost table. */
  ns: number;
  iotlbHits: number;
  iotlbMisses: number;
  walkReads: number;
  tlps: number;
  bytes: number;
}

export interface DmaTransaction {
  fn: PciFunction;
  write: boolean;
  iova: bigint;
  len: number;
  segment: number;
  rid: number;
  unit: string | null;
  /** The No Snoop attribute as the request reached the root complex. */
  noSnoop: boolean;
  /** Every byte transferred. */
  ok: boolean;
  /** Why not: no request left the function (BME), a translation fault, or no RAM. */
  error?: "bus-master-disabled" | "fault" | "unsupported-request" | "frozen";
  /** POWER: the access that put the requester's PE into EEH error state. */
  frozenCause?: string;
  pages: DmaPage[];
  /** Every page that reached memory snooped CPU caches. */
  snoop: boolean;
  faults: (IommuFault & { unit: string })[];
  /** Read: the bytes received; write: the bytes sent. */
  data: Uint8Array;
  cost: DmaCost;
}

/** Where a CPU-cache model plugs in. */
export interface CoherencyPort {
  /** A snooped access is about to reach [pa, pa + len). */
  snoop(pa: number, len: number, write: boolean): void;
  /** A non-snooped access is about to reach [pa, pa + len) without the caches seeing it. */
  bypass?(pa: number, len: number, write: boolean): void;
}

const U64 = (1n << 64n) - 1n;

/** "dddd:bb:dd.f", as firmware scopes name functions. */
export function formatFn(domain: number, bus: number, devfn: number): string {
  const h = (n: number, w: number) => n.toString(16).padStart(w, "0");
  return `${h(domain, 4)}:${h(bus, 2)}:${h(devfn >> 3, 2)}.${devfn & 7}`;
}

/**
 * What a root complex that translates by itself answers for one page (a POWER PHB: its
 * TVT and TCE tables, and EEH): `frozen` means the PE is in error state, so a write is
 * dropped and a read returns all ones.
 */
export interface RootComplexPage {
  pa: number | null;
  frozen: boolean;
  /** Set when this very access froze the PE. */
  freezeCause?: string;
  walkReads: number;
}

export class DmaEngine {
  /**
   * Consulted for a request no IOMMU unit's scope covers (POWER: the PHB of the segment);
   * null answers "not mine" and the address goes to memory untranslated.
   */
  rootComplex:
    | ((segment: number, rid: number, iova: bigint, write: boolean) => RootComplexPage | null)
    | null = null;
  costs: CostTable = { ...DEFAULT_COSTS };
  coherency: CoherencyPort | null = null;
  readonly listeners: ((t: DmaTransaction) => void)[] = [];
  /** Totals over every transaction. */
  readonly totals: DmaCost & { transactions: number } = {
    transactions: 0,
    ns: 0,
    iotlbHits: 0,
    iotlbMisses: 0,
    walkReads: 0,
    tlps: 0,
    bytes: 0,
  };

  constructor(private readonly machine: Machine) {}

  /** A device model's handle for issuing DMA as `fn`. */
  port(fn: PciFunction): BusMaster {
    return new BusMaster(this, fn);
  }

  name(fn: PciFunction): string {
    return formatFn(fn.bus.domain, this.machine.pci.busNumber(fn.bus), fn.devfn);
  }

  /** The route a request from `fn` takes now (bus numbers and enables as programmed). */
  route(fn: PciFunction): DmaRoute {
    const pci = this.machine.pci;
    const ridOf = (f: PciFunction) => (pci.busNumber(f.bus) << 8) | f.devfn;
    const placed = fn.physfn ?? fn; // a VF sits where its PF does
    let rid = ridOf(fn);
    let segment = fn.bus.domain;
    let requester = fn;
    let scopeFn = placed;
    let noSnoopAllowed = pcieCap(placed) !== undefined && noSnoopEnabled(placed);
    let stoppedBy: PciFunction | undefined;
    if (!busMaster(fn)) stoppedBy = fn;
    let bus: PhysBus = placed.bus;
    for (let depth = 0; depth < 512; depth++) {
      const br = bus.upstream;
      if (!br) {
        const vmd = this.vmdOwner(bus);
        if (!vmd) break;
        rid = ridOf(vmd);
        segment = vmd.bus.domain;
        requester = scopeFn = vmd;
        bus = vmd.bus;
        continue;
      }
      if (!stoppedBy && !busMaster(br)) stoppedBy = br;
      const exp = pcieCap(br);
      const type = exp === undefined ? -1 : (br.config.read(exp + R.PCI_EXP_FLAGS, 2) & 0xf0) >> 4;
      const secondary = br.config.read(R.PCI_SECONDARY_BUS, 1);
      if (type === R.PCI_EXP_TYPE_PCI_BRIDGE || (type === -1 && this.belowPciePort(br))) {
        rid = secondary << 8;
        requester = br;
        noSnoopAllowed = false;
      } else if (type === -1 || type === R.PCI_EXP_TYPE_PCIE_BRIDGE) {
        // Its upstream side is conventional PCI / PCI-X: no No Snoop attribute there.
        rid = ridOf(br);
        requester = br;
        noSnoopAllowed = false;
      }
      bus = br.bus;
    }
    return {
      segment,
      rid,
      requester,
      unit: this.unitFor(scopeFn),
      noSnoopAllowed,
      ...(stoppedBy ? { stoppedBy } : {}),
    };
  }

  read(fn: PciFunction, iova: bigint | number, len: number, opts: DmaOptions = {}): DmaTransaction {
    return this.transfer(fn, false, BigInt(iova) & U64, new Uint8Array(len), opts);
  }

  write(
    fn: PciFunction,
    iova: bigint | number,
    data: Uint8Array,
    opts: DmaOptions = {},
  ): DmaTransaction {
    return this.transfer(fn, true, BigInt(iova) & U64, data, opts);
  }

  private transfer(
    fn: PciFunction,
    write: boolean,
    iova: bigint,
    buf: Uint8Array,
    opts: DmaOptions,
  ): DmaTransaction {
    const route = this.route(fn);
    const noSnoop = !!opts.noSnoop && route.noSnoopAllowed;
    const cost: DmaCost = { ns: 0, iotlbHits: 0, iotlbMisses: 0, walkReads: 0, tlps: 0, bytes: 0 };
    const tx: DmaTransaction = {
      fn,
      write,
      iova,
      len: buf.length,
      segment: route.segment,
      rid: route.rid,
      unit: route.unit?.name ?? null,
      noSnoop,
      ok: true,
      pages: [],
      snoop: true,
      faults: [],
      data: buf,
      cost,
    };
    if (route.stoppedBy) {
      tx.ok = false;
      tx.error = route.stoppedBy === fn ? "bus-master-disabled" : "unsupported-request";
      return this.finish(tx);
    }
    const mem = this.machine.memory;
    const page = BigInt(PAGE_SIZE);
    for (let done = 0; done < buf.length;) {
      const at = iova + BigInt(done);
      const n = Math.min(buf.length - done, Number(page - (at % page)));
      const p: DmaPage = {
        iova: at,
        len: n,
        pa: null,
        snoop: !noSnoop,
        forcedSnoop: false,
        iotlb: "none",
        walkReads: 0,
      };
      let pa = Number(at);
      const rc = route.unit ? null : this.rootComplex?.(route.segment, route.rid, at, write);
      if (rc) {
        p.walkReads = rc.walkReads;
        if (rc.pa !== null && !rc.frozen) pa = rc.pa;
        else {
          tx.error ??= "frozen";
          tx.frozenCause ??= rc.freezeCause;
          if (!write) buf.fill(0xff, done, done + n);
          tx.ok = false;
          tx.pages.push(p);
          done += n;
          continue;
        }
      } else if (route.unit) {
        const t = this.machine.iommu.translate(
          route.unit.name,
          route.segment,
          route.rid,
          at,
          write,
        );
        p.walkReads = t.walkReads;
        if (t.ok) {
          p.iotlb = t.iotlb;
          p.forcedSnoop = noSnoop && t.snoop;
          p.snoop = !noSnoop || t.snoop;
          pa = t.pa;
        } else {
          p.fault = t.fault;
          tx.faults.push({ ...t.fault, unit: route.unit.name });
          tx.error ??= "fault";
        }
      }
      if (!p.fault) {
        if (pa + n > mem.size) {
          p.unsupported = true;
          tx.error ??= "unsupported-request";
        } else {
          p.pa = pa;
          if (p.snoop) this.coherency?.snoop(pa, n, write);
          else this.coherency?.bypass?.(pa, n, write);
          if (write) mem.write(pa, buf.subarray(done, done + n));
          else buf.set(mem.read(pa, n), done);
          if (!p.snoop) tx.snoop = false;
        }
      }
      if (p.pa === null) tx.ok = false;
      tx.pages.push(p);
      done += n;
    }
    return this.finish(tx);
  }

  private finish(tx: DmaTransaction): DmaTransaction {
    const c = this.costs;
    const cost = tx.cost;
    for (const p of tx.pages) {
      cost.walkReads += p.walkReads;
      if (p.iotlb === "hit") cost.iotlbHits++;
      if (p.iotlb === "miss" || (p.fault && p.walkReads > 0)) cost.iotlbMisses++;
      cost.tlps += Math.max(1, Math.ceil(p.len / c.maxPayloadBytes));
      if (p.pa !== null) cost.bytes += p.len;
    }
    if (tx.pages.length > 0) {
      cost.ns =
        cost.iotlbHits * c.iotlbHit +
        cost.walkReads * c.pageWalkPerLevel +
        (tx.len + cost.tlps * c.tlpOverheadBytes) * c.dmaPerByte +
        (tx.write ? c.dmaWriteLatency : c.dmaReadLatency);
    }
    const t = this.totals;
    t.transactions++;
    t.ns += cost.ns;
    t.iotlbHits += cost.iotlbHits;
    t.iotlbMisses += cost.iotlbMisses;
    t.walkReads += cost.walkReads;
    t.tlps += cost.tlps;
    t.bytes += cost.bytes;
    for (const l of this.listeners) l(tx);
    return tx;
  }

  /** The VMD endpoint owning a VMD domain's root bus. */
  private vmdOwner(bus: PhysBus): PciFunction | undefined {
    const number = this.machine.pci.busNumber(bus);
    const desc = this.machine.roots.find(
      (r) => r.domain === bus.domain && r.bus === number && r.vmd,
    );
    return desc?.vmd
      ? this.machine.pci.fn(desc.vmd.domain, desc.vmd.bus, desc.vmd.devfn)
      : undefined;
  }

  /** A bridge on a PCIe link: its own bus's upstream is a PCIe port other than a PCIe-to-PCI bridge. */
  private belowPciePort(br: PciFunction): boolean {
    const up = br.bus.upstream;
    if (!up) return false;
    const exp = pcieCap(up);
    if (exp === undefined) return false;
    return (up.config.read(exp + R.PCI_EXP_FLAGS, 2) & 0xf0) >> 4 !== R.PCI_EXP_TYPE_PCI_BRIDGE;
  }

  /** The unit whose DMAR/IVRS scope covers `f` (a listed bridge covers its subtree). */
  private unitFor(f: PciFunction): IommuUnitDesc | null {
    const name = this.name(f);
    const above: string[] = [];
    for (let b = f.bus.upstream; b; b = b.bus.upstream) above.push(this.name(b));
    const covers = (u: IommuUnitDesc): boolean => {
      if (u.segment !== f.bus.domain) return false;
      const scope = u.scope;
      if (scope.all) return !scope.exclude.includes(name);
      return scope.devices.includes(name) || above.some((a) => scope.devices.includes(a));
    };
    return this.machine.iommus.find(covers) ?? null;
  }
}

/** A device model's DMA handle, bound to its function. */
export class BusMaster {
  constructor(
    readonly engine: DmaEngine,
    readonly fn: PciFunction,
  ) {}

  read(iova: bigint | number, len: number, opts?: DmaOptions): DmaTransaction {
    return this.engine.read(this.fn, iova, len, opts);
  }

  write(iova: bigint | number, data: Uint8Array, opts?: DmaOptions): DmaTransaction {
    return this.engine.write(this.fn, iova, data, opts);
  }
}

function pcieCap(f: PciFunction): number | undefined {
  return walkCaps(f.config).find(([id]) => id === R.PCI_CAP_ID_EXP)?.[1];
}

function busMaster(f: PciFunction): boolean {
  return (f.config.read(R.PCI_COMMAND, 2) & R.PCI_COMMAND_MASTER) !== 0;
}

function noSnoopEnabled(f: PciFunction): boolean {
  const exp = pcieCap(f);
  if (exp === undefined) return false;
  return (f.config.read(exp + R.PCI_EXP_DEVCTL, 2) & R.PCI_EXP_DEVCTL_NOSNOOP_EN) !== 0;
}
