/**
 * A PowerNV machine (bare-metal POWER8/POWER9 under OPAL firmware): the ordinary machine
 * (fabric, RAM, DMA engine, device models) with PHBs instead of an x86 IOMMU unit. Each
 * PCI domain is one PHB; the DMA engine hands every request of that domain to its PHB
 * (TCE translation and EEH), and CPU MMIO to a function goes through its PE's state
 * (a frozen PE's loads return all ones and its stores are dropped). The kernel built for
 * it uses 64 KiB pages (`pageShift` 16), as enterprise POWER distributions do.
 */
import { DEFAULT_HCALL_COSTS, type HcallCostTable } from "../costs.js";
import type { Hardware, PciConfigAccess, PciMmio, PhbDesc } from "../hw.js";
import { Machine } from "../machine.js";
import type { DeviceModel, PciFunction } from "../pci/fabric.js";
import type { BusMaster } from "../dma.js";
import { Opal, Phb } from "./phb.js";
import * as R from "../../uapi/pci_regs.js";

export class PowerNvMachine extends Machine {
  readonly phbs = new Map<number, Phb>();
  readonly opal = new Opal(this.phbs);
  /** Prices of the TCE hypercall paths (costs.ts); a scenario may change them. */
  hcallCosts: HcallCostTable = { ...DEFAULT_HCALL_COSTS };
  /** MMIO accesses dropped or answered all ones because their PE was frozen. */
  blockedMmio = 0;

  constructor(name: string, phbs: PhbDesc[]) {
    super(name);
    for (const d of phbs) this.phbs.set(d.index, new Phb(d, this.memory));
    this.dma.rootComplex = (segment, rid, iova, write) => {
      const phb = this.phbs.get(segment);
      if (!phb) return null;
      const r = phb.dma(rid, iova, write);
      return {
        pa: r.pa,
        frozen: r.frozen,
        walkReads: r.tceReads,
        ...(r.freezeCause ? { freezeCause: r.freezeCause } : {}),
      };
    };
  }

  /** MSIs a frozen PE dropped. */
  blockedMsi = 0;

  /**
   * A device model's interrupts are MSIs, DMA writes to the PHB's interrupt port: while its
   * PE is frozen they are dropped. The model's `onInterrupt` hook is wrapped so.
   */
  override attachModel<M extends DeviceModel>(
    domain: number,
    bus: number,
    devfn: number,
    make: (port: BusMaster) => M,
  ): M {
    const model = super.attachModel(domain, bus, devfn, make);
    if (!("onInterrupt" in model)) return model;
    const fn = this.pci.fn(domain, bus, devfn) as PciFunction;
    let inner: ((causes: number) => void) | null = null;
    const gated = (causes: number) => {
      const at = this.where(fn.bus.domain, this.pci.busNumber(fn.bus), fn.devfn);
      if (at && !at.phb.msiAllowed(at.rid)) {
        this.blockedMsi++;
        return;
      }
      inner?.(causes);
    };
    Object.defineProperty(model, "onInterrupt", {
      get: () => (inner ? gated : null),
      set: (f: ((causes: number) => void) | null) => {
        inner = f;
      },
    });
    return model;
  }

  /** The PHB and RID a function's requests carry. */
  private where(domain: number, bus: number, devfn: number): { phb: Phb; rid: number } | null {
    const phb = this.phbs.get(domain);
    return phb ? { phb, rid: (bus << 8) | devfn } : null;
  }

  /** The bus address of a function's BAR (for matching injected MMIO errors). */
  private barAddress(fn: PciFunction | undefined, bar: number): bigint {
    if (!fn) return 0n;
    const off = R.PCI_BASE_ADDRESS_0 + 4 * bar;
    const lo = fn.config.read(off, 4);
    const is64 = (lo & 0x7) === 0x4;
    const hi = is64 ? fn.config.read(off + 4, 4) : 0;
    return (BigInt(hi) << 32n) | BigInt(lo & ~0xf);
  }

  override hardware(): Hardware {
    const hw = super.hardware();
    const fabric = this.pci;
    const pci: PciConfigAccess & PciMmio = {
      read: (d, b, df, off, w) => fabric.read(d, b, df, off, w),
      write: (d, b, df, off, w, v) => fabric.write(d, b, df, off, w, v),
      configKnown: (d, b, df, off, len) => fabric.configKnown(d, b, df, off, len),
      mmioRead: (d, b, df, bar, off, width) => {
        const at = this.where(d, b, df);
        const addr = this.barAddress(fabric.fn(d, b, df), bar) + BigInt(off);
        if (at && !at.phb.mmioAllowed(at.rid, false, addr)) {
          this.blockedMmio++;
          return (1n << BigInt(width * 8)) - 1n;
        }
        return fabric.mmioRead(d, b, df, bar, off, width);
      },
      mmioWrite: (d, b, df, bar, off, width, value) => {
        const at = this.where(d, b, df);
        const addr = this.barAddress(fabric.fn(d, b, df), bar) + BigInt(off);
        if (at && !at.phb.mmioAllowed(at.rid, true, addr)) {
          this.blockedMmio++;
          return;
        }
        fabric.mmioWrite(d, b, df, bar, off, width, value);
      },
    };
    return { ...hw, pci, pageShift: 16, opal: this.opal, hcallCosts: this.hcallCosts };
  }
}
