/**
 * An IBM POWER PCIe host bridge (PHB3 of POWER8 / PHB4 of POWER9, the IODA2 architecture)
 * and the OPAL firmware calls PowerNV Linux drives it with. What the seeds describe
 * (Benjamin Herrenschmidt's "VFIO on POWER" summary, 2011) is what the hardware does:
 *
 * - Partitionable endpoints. The PHB tags every request with a PE number from its RID
 *   Translation Table (RTT, set by opal_pci_set_pe); the PE, not the device, owns DMA
 *   windows, MMIO segments and error state.
 * - DMA. There is one 64-bit DMA address space per PHB. It is segmented by PE and by
 *   address bit 59: the TVT has two entries per PE (TVE# = PE# << 1 | bit 59), each either
 *   a TCE table (levels, table address and size, IOMMU page size, opal_pci_map_pe_dma_window)
 *   or a direct "bypass" window (opal_pci_map_pe_dma_window_real). A TCE is a big-endian
 *   u64 in RAM: bit 0 the device may read the page, bit 1 it may write it, the rest the
 *   page's physical address; a multi-level table holds in each upper-level entry the next
 *   level's address with R|W set. Window #0 starts at bus address 0, #1 at 1 << 59.
 * - MMIO. The M32 window is cut into total_PE equal segments; opal_pci_map_pe_mmio_window
 *   gives a segment to a PE.
 * - EEH. A DMA outside a PE's windows or against a TCE's permissions, or an error the
 *   firmware injects (opal_pci_err_inject arms the PHB; the next matching access trips),
 *   freezes the PE at once: its DMA writes and MMIO stores are dropped, DMA reads and MMIO
 *   loads return all ones, and its MSIs (DMA writes to the interrupt port) are dropped.
 *   Software reads the state (opal_pci_eeh_freeze_status) and thaws MMIO and DMA
 *   separately (opal_pci_eeh_freeze_clear).
 *
 * Not modelled: the PHB's TCE cache (tce_kill is counted, not needed for correctness
 * here), M64 windows, PE compounds (slave PEs), the diag-data blob, PHB-fatal errors.
 */
import type { OpalPci, PhbDesc } from "../hw.js";
import type { MemoryAccess } from "../hw.js";
import {
  OPAL_EEH_ACTION_CLEAR_FREEZE_ALL,
  OPAL_EEH_ACTION_CLEAR_FREEZE_DMA,
  OPAL_EEH_ACTION_CLEAR_FREEZE_MMIO,
  OPAL_EEH_STOPPED_DMA_FREEZE,
  OPAL_EEH_STOPPED_MMIO_DMA_FREEZE,
  OPAL_EEH_STOPPED_MMIO_FREEZE,
  OPAL_EEH_STOPPED_NOT_FROZEN,
  OPAL_EEH_STOPPED_PERM_UNAVAIL,
  OPAL_ERR_INJECT_TYPE_IOA_BUS_ERR,
  OPAL_ERR_INJECT_TYPE_IOA_BUS_ERR64,
  OPAL_HARDWARE,
  OPAL_PARAMETER,
  OPAL_SUCCESS,
  TCE_PCI_READ,
  TCE_PCI_WRITE,
} from "../../uapi/papr.js";

/** Bus address bit 59 selects a PE's second TVE (pnv_pci_ioda2_setup_dma_pe). */
export const TVE1_BASE = 1n << 59n;

type Tve =
  | { kind: "table"; levels: number; table: number; tableSize: number; pageShift: number }
  | { kind: "bypass"; start: bigint; size: bigint };

interface PeState {
  mmioFrozen: boolean;
  dmaFrozen: boolean;
  /** Why the PE froze (diagnostics a PHB would put in its diag data). */
  cause: string | null;
  inject: { type: number; func: number; addr: bigint; mask: bigint } | null;
}

export interface PhbDmaResult {
  /** The physical address reached, or null. */
  pa: number | null;
  pe: number | null;
  /** The PE was (or just became) frozen: writes dropped, reads see all ones. */
  frozen: boolean;
  /** The access that froze the PE now. */
  freezeCause?: string;
  tceReads: number;
}

/** EEH_ERR_FUNC_* groups: which accesses an injected error trips on. */
const FUNC_KIND = (func: number): "load" | "store" | "dma-read" | "dma-write" | "cfg" =>
  func <= 3
    ? "load"
    : func <= 5
      ? "cfg"
      : func <= 9
        ? "store"
        : func <= 11
          ? "cfg"
          : func <= 15
            ? "dma-read"
            : "dma-write";

export class Phb {
  /** RTT: requester ID → PE#. */
  readonly rtt = new Map<number, number>();
  /** TVT by TVE# (PE# << 1 | window). */
  readonly tvt = new Map<number, Tve>();
  /** M32 segment → PE#. */
  readonly m32Segments = new Map<number, number>();
  private readonly pes = new Map<number, PeState>();
  /** TCE invalidations the OS issued (opal_pci_tce_kill / the PHB3 kill register). */
  tceKills = 0;
  /** Events for explanations: freezes and thaws, in order. */
  readonly log: string[] = [];

  constructor(
    readonly desc: PhbDesc,
    private readonly ram: MemoryAccess,
  ) {}

  pe(n: number): PeState {
    let s = this.pes.get(n);
    if (!s) {
      s = { mmioFrozen: false, dmaFrozen: false, cause: null, inject: null };
      this.pes.set(n, s);
    }
    return s;
  }

  peOfRid(rid: number): number | null {
    return this.rtt.get(rid) ?? null;
  }

  freeze(pe: number, cause: string): void {
    const s = this.pe(pe);
    if (!s.mmioFrozen || !s.dmaFrozen) this.log.push(`PE#${pe} frozen: ${cause}`);
    s.mmioFrozen = s.dmaFrozen = true;
    s.cause ??= cause;
  }

  /** An armed injected error trips on a matching access (and is consumed). */
  private tripInjected(pe: number, kind: string, addr: bigint): boolean {
    const s = this.pe(pe);
    const inj = s.inject;
    if (!inj || FUNC_KIND(inj.func) !== kind) return false;
    if (((addr ^ inj.addr) & inj.mask) !== 0n) return false;
    s.inject = null;
    this.freeze(pe, `injected error (function ${inj.func}) on ${kind} at 0x${addr.toString(16)}`);
    return true;
  }

  /** The CPU's MMIO access to a function: may it reach the device? */
  mmioAllowed(rid: number, store: boolean, addr: bigint): boolean {
    const pe = this.peOfRid(rid);
    if (pe === null) return true;
    this.tripInjected(pe, store ? "store" : "load", addr);
    return !this.pe(pe).mmioFrozen;
  }

  /** Whether an MSI from this requester gets through (an MSI is a DMA write to the PHB). */
  msiAllowed(rid: number): boolean {
    const pe = this.peOfRid(rid);
    return pe === null || !this.pe(pe).dmaFrozen;
  }

  /** One DMA page from `rid` at bus address `iova`. */
  dma(rid: number, iova: bigint, write: boolean): PhbDmaResult {
    const pe = this.peOfRid(rid);
    if (pe === null) {
      // No RTT entry: the request lands in the reserved PE, which the firmware keeps frozen.
      return {
        pa: null,
        pe: null,
        frozen: true,
        freezeCause: "no PE for the requester",
        tceReads: 0,
      };
    }
    const s = this.pe(pe);
    if (s.dmaFrozen) return { pa: null, pe, frozen: true, tceReads: 0 };
    if (this.tripInjected(pe, write ? "dma-write" : "dma-read", iova))
      return { pa: null, pe, frozen: true, freezeCause: s.cause ?? "", tceReads: 0 };
    const win = iova & TVE1_BASE ? 1 : 0;
    const tve = this.tvt.get((pe << 1) | win);
    const fail = (why: string): PhbDmaResult => {
      this.freeze(pe, why);
      return { pa: null, pe, frozen: true, freezeCause: why, tceReads };
    };
    let tceReads = 0;
    if (!tve)
      return fail(`DMA to 0x${iova.toString(16)}: no window (TVE#${(pe << 1) | win} invalid)`);
    const off = iova & (TVE1_BASE - 1n);
    if (tve.kind === "bypass") {
      if (off >= tve.size) return fail(`DMA to 0x${iova.toString(16)}: beyond the bypass window`);
      return { pa: Number(off), pe, frozen: false, tceReads };
    }
    const entriesPerLevel = BigInt(tve.tableSize / 8);
    const idx = off >> BigInt(tve.pageShift);
    if (idx >= entriesPerLevel ** BigInt(tve.levels))
      return fail(`DMA to 0x${iova.toString(16)}: beyond the TCE table`);
    let table = tve.table;
    let tce = 0n;
    for (let level = tve.levels - 1; level >= 0; level--) {
      const i = (idx / entriesPerLevel ** BigInt(level)) % entriesPerLevel;
      tce = readBe64(this.ram, table + Number(i) * 8);
      tceReads++;
      if (level > 0) {
        if (!(tce & BigInt(TCE_PCI_READ | TCE_PCI_WRITE)))
          return fail(`DMA to 0x${iova.toString(16)}: TCE level not present`);
        table = Number(tce & ~0xfffn);
      }
    }
    const need = BigInt(write ? TCE_PCI_WRITE : TCE_PCI_READ);
    if (!(tce & need))
      return fail(
        `DMA ${write ? "write" : "read"} at 0x${iova.toString(16)}: TCE 0x${tce.toString(16)} does not allow it`,
      );
    const pageMask = (1n << BigInt(tve.pageShift)) - 1n;
    return { pa: Number((tce & ~pageMask & ~3n) | (off & pageMask)), pe, frozen: false, tceReads };
  }
}

function readBe64(ram: MemoryAccess, pa: number): bigint {
  const b = ram.read(pa, 8);
  return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, false);
}

/** OPAL's PCI calls over the machine's PHBs (skiboot core/pci-opal.c and hw/phb4.c behaviour). */
export class Opal implements OpalPci {
  constructor(readonly phbsByIndex: Map<number, Phb>) {}

  phbs(): PhbDesc[] {
    return [...this.phbsByIndex.values()].map((p) => p.desc);
  }

  private phb(id: number): Phb | null {
    return this.phbsByIndex.get(id) ?? null;
  }

  private validPe(p: Phb, pe: number): boolean {
    return Number.isInteger(pe) && pe >= 0 && pe < p.desc.numPes;
  }

  setPe(phbId: number, pe: number, bdfn: number, busAll: boolean): number {
    const p = this.phb(phbId);
    if (!p || !this.validPe(p, pe)) return OPAL_PARAMETER;
    if (!busAll) {
      p.rtt.set(bdfn, pe);
      return OPAL_SUCCESS;
    }
    // Bus compare: every devfn of the bus (the model's PEs never span subordinate buses).
    for (let devfn = 0; devfn < 256; devfn++) p.rtt.set((bdfn & 0xff00) | devfn, pe);
    return OPAL_SUCCESS;
  }

  mapPeMmioWindow(phbId: number, pe: number, segment: number): number {
    const p = this.phb(phbId);
    if (!p || !this.validPe(p, pe) || segment < 0 || segment >= p.desc.numPes)
      return OPAL_PARAMETER;
    p.m32Segments.set(segment, pe);
    return OPAL_SUCCESS;
  }

  mapPeDmaWindow(
    phbId: number,
    pe: number,
    window: number,
    levels: number,
    tableAddr: number,
    tableSize: number,
    pageSize: number,
  ): number {
    const p = this.phb(phbId);
    if (!p || !this.validPe(p, pe) || window >> 1 !== pe) return OPAL_PARAMETER;
    if (tableSize === 0) {
      p.tvt.delete(window);
      return OPAL_SUCCESS;
    }
    if (levels < 1 || levels > 5 || tableAddr % 4096 !== 0) return OPAL_PARAMETER;
    const shift = Math.log2(pageSize);
    if (!p.desc.tceSizes.includes(shift)) return OPAL_PARAMETER;
    p.tvt.set(window, { kind: "table", levels, table: tableAddr, tableSize, pageShift: shift });
    return OPAL_SUCCESS;
  }

  mapPeDmaWindowReal(
    phbId: number,
    pe: number,
    window: number,
    start: bigint,
    size: bigint,
  ): number {
    const p = this.phb(phbId);
    if (!p || !this.validPe(p, pe) || window >> 1 !== pe) return OPAL_PARAMETER;
    if (size === 0n) p.tvt.delete(window);
    else p.tvt.set(window, { kind: "bypass", start, size });
    return OPAL_SUCCESS;
  }

  tceKill(phbId: number): number {
    const p = this.phb(phbId);
    if (!p) return OPAL_PARAMETER;
    p.tceKills++;
    return OPAL_SUCCESS;
  }

  eehFreezeStatus(phbId: number, pe: number): { rc: number; state: number } {
    const p = this.phb(phbId);
    if (!p) return { rc: OPAL_PARAMETER, state: OPAL_EEH_STOPPED_PERM_UNAVAIL };
    if (!this.validPe(p, pe)) return { rc: OPAL_PARAMETER, state: OPAL_EEH_STOPPED_PERM_UNAVAIL };
    const s = p.pe(pe);
    const state =
      s.mmioFrozen && s.dmaFrozen
        ? OPAL_EEH_STOPPED_MMIO_DMA_FREEZE
        : s.mmioFrozen
          ? OPAL_EEH_STOPPED_MMIO_FREEZE
          : s.dmaFrozen
            ? OPAL_EEH_STOPPED_DMA_FREEZE
            : OPAL_EEH_STOPPED_NOT_FROZEN;
    return { rc: OPAL_SUCCESS, state };
  }

  eehFreezeClear(phbId: number, pe: number, action: number): number {
    const p = this.phb(phbId);
    if (!p || !this.validPe(p, pe)) return OPAL_PARAMETER;
    const s = p.pe(pe);
    if (action & OPAL_EEH_ACTION_CLEAR_FREEZE_MMIO) s.mmioFrozen = false;
    if (action & OPAL_EEH_ACTION_CLEAR_FREEZE_DMA) s.dmaFrozen = false;
    if (!(action & OPAL_EEH_ACTION_CLEAR_FREEZE_ALL)) return OPAL_PARAMETER;
    if (!s.mmioFrozen && !s.dmaFrozen) s.cause = null;
    p.log.push(
      `PE#${pe} thawed (${action === 3 ? "MMIO and DMA" : action === 1 ? "MMIO" : "DMA"})`,
    );
    return OPAL_SUCCESS;
  }

  eehFreezeSet(phbId: number, pe: number, action: number): number {
    const p = this.phb(phbId);
    if (!p || !this.validPe(p, pe)) return OPAL_PARAMETER;
    const s = p.pe(pe);
    if (action & 1) s.mmioFrozen = true;
    if (action & 2) s.dmaFrozen = true;
    s.cause ??= "frozen by the OS";
    p.log.push(`PE#${pe} frozen by the OS`);
    return OPAL_SUCCESS;
  }

  errInject(
    phbId: number,
    pe: number,
    type: number,
    func: number,
    addr: bigint,
    mask: bigint,
  ): number {
    const p = this.phb(phbId);
    if (!p || !this.validPe(p, pe)) return OPAL_PARAMETER;
    if (type !== OPAL_ERR_INJECT_TYPE_IOA_BUS_ERR && type !== OPAL_ERR_INJECT_TYPE_IOA_BUS_ERR64)
      return OPAL_PARAMETER;
    if (func < 0 || func > 19) return OPAL_PARAMETER;
    if (FUNC_KIND(func) === "cfg") return OPAL_HARDWARE; // config-cycle injection: not modelled
    p.pe(pe).inject = { type, func, addr, mask };
    return OPAL_SUCCESS;
  }

  /** PE reset ends (the bus reset of pnv_eeh_reset): an armed injection is cleared. */
  peReset(phbId: number, pe: number): number {
    const p = this.phb(phbId);
    if (!p || !this.validPe(p, pe)) return OPAL_PARAMETER;
    p.pe(pe).inject = null;
    return OPAL_SUCCESS;
  }
}
