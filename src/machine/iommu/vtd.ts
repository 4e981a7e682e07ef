/**
 * An Intel VT-d remapping unit translating requests without PASID in legacy mode: the
 * context entry the kernel programmed (`setTranslation`) names a second-level table, a
 * pass-through, or nothing; the unit walks the table from RAM, checks permissions at every
 * level, caches what it found in its IOTLB, and records faults in its fault recording
 * registers.
 *
 * Sources: Intel VT-d spec (rev 4/5) ch. 3 (second-level translation, Snoop Control),
 * ch. 6 (IOTLB), ch. 7 (primary fault logging), ch. 9 (second-level paging entries,
 * context entries), ch. 10 (CAP_REG/ECAP_REG); the entry format as Linux 6.12 writes it,
 * drivers/iommu/intel/iommu.h (DMA_PTE_READ/WRITE/LARGE_PAGE/SNP, LEVEL_STRIDE, cap_*,
 * ecap_*); the reserved-bit masks of QEMU hw/i386/intel_iommu_internal.h (VTD_SPTE_*),
 * its walk (vtd_iova_to_slpte) and fault recording (vtd_report_dmar_fault).
 *
 * - An entry with R and W both clear is not present; the request faults with "PTE Read /
 *   Write access is not set" (reason 6 / 5), as any entry on the path lacking the
 *   request's permission does (R and W gate the whole region below an entry).
 * - Non-zero reserved bits fault with reason 0xc: SNP (bit 11) in a non-leaf entry, or in a
 *   leaf when ECAP.SC = 0; bit 7 in a level-4/5 entry; PS (bit 7) at level 2 / 3 when
 *   CAP.SLLPS lacks 2 MiB / 1 GiB; the address bits below a large page; bit 62 (TM) unless
 *   ECAP.DT. Address bits between the host address width and bit 51 are not checked.
 * - An input address at or above 2^min(MGAW, AGAW of the table) faults with reason 4; the
 *   table's levels must be one CAP.SAGAW offers, pass-through needs ECAP.PT (else reason
 *   3, invalid context entry); a table pointer outside RAM faults with reason 7.
 * - Snoop: a leaf's SNP bit forces the access to snoop when ECAP.SC = 1.
 * - Faults: CAP.NFR + 1 recording registers. As QEMU does (and the spec allows), a fault
 *   from a source that already has an unread record is not recorded again; when every
 *   register is full the fault is lost and Primary Fault Overflow is set until software
 *   reads the records (`readFaults`).
 * - The IOTLB caches leaf translations by domain ID; a cached translation that does not
 *   permit an access is dropped and the tables walked again (spec-permitted; the fault,
 *   if any, then reflects the tables). The context cache and paging-structure caches are
 *   not modelled: `setTranslation` takes effect at once, and every IOTLB miss walks from
 *   the root.
 */
import type { IommuFault, IommuUnitDesc, MemoryAccess } from "../hw.js";
import { Iotlb } from "./iotlb.js";
import type { Translation, TranslateResult, UnitHw } from "./units.js";

export const DMA_PTE_READ = 1n << 0n;
export const DMA_PTE_WRITE = 1n << 1n;
export const DMA_PTE_LARGE_PAGE = 1n << 7n;
export const DMA_PTE_SNP = 1n << 11n;
/** Transient Mapping (ECAP.DT); reserved otherwise. */
const DMA_PTE_TM = 1n << 62n;
/** Bits 51:12: the address of the next table or the page. */
const ADDR_MASK = 0x000f_ffff_ffff_f000n;
const LEVEL_STRIDE = 9;

/** VT-d fault reasons (dmar.c dma_remap_fault_reasons[]). */
export const VTD_FR = {
  ROOT_ENTRY_P: 1,
  CONTEXT_ENTRY_P: 2,
  CONTEXT_ENTRY_INV: 3,
  ADDR_BEYOND_MGAW: 4,
  WRITE: 5,
  READ: 6,
  PAGING_ENTRY_INV: 7,
  PAGING_ENTRY_RSVD: 0xc,
} as const;

/** What the unit's CAP_REG and ECAP_REG say, decoded as iommu.h's cap_* / ecap_* macros do. */
export interface VtdRegs {
  /** cap_sagaw: bit 1 = 3-level (39-bit), bit 2 = 4-level (48-bit), bit 3 = 5-level (57-bit). */
  sagaw: number;
  /** cap_mgaw: maximum guest address width in bits. */
  mgaw: number;
  /** cap_super_page_val: bit 0 = 2 MiB, bit 1 = 1 GiB. */
  sllps: number;
  /** cap_num_fault_regs. */
  faultRegs: number;
  /** ecap_sc_support: Snoop Control. */
  sc: boolean;
  /** ecap_pass_through. */
  pt: boolean;
  /** ecap_dev_iotlb_support (makes PTE bit 62, TM, legal). */
  dt: boolean;
}

/**
 * Defaults for a unit described without its registers (cap = ecap = 0): QEMU's
 * intel-iommu with aw-bits=48 (vtd_cap_init: SAGAW 39+48, MGAW 48, SLLPS 2M+1G, one
 * fault recording register; ECAP.PT on, Snoop Control off).
 */
export const VTD_DEFAULT_REGS: Readonly<VtdRegs> = Object.freeze({
  sagaw: 0b0110,
  mgaw: 48,
  sllps: 0b11,
  faultRegs: 1,
  sc: false,
  pt: true,
  dt: false,
});

export function decodeVtdRegs(cap: bigint, ecap: bigint): VtdRegs {
  if (cap === 0n && ecap === 0n) return { ...VTD_DEFAULT_REGS };
  const bits = (v: bigint, lo: number, n: number) =>
    Number((v >> BigInt(lo)) & ((1n << BigInt(n)) - 1n));
  return {
    sagaw: bits(cap, 8, 5),
    mgaw: bits(cap, 16, 6) + 1,
    sllps: bits(cap, 34, 4),
    faultRegs: bits(cap, 40, 8) + 1,
    sc: bits(ecap, 7, 1) === 1,
    pt: bits(ecap, 6, 1) === 1,
    dt: bits(ecap, 2, 1) === 1,
  };
}

/** Input-address width a table of `levels` levels covers (agaw_to_width). */
export function vtdLevelsToWidth(levels: number): number {
  return 30 + (levels - 2) * LEVEL_STRIDE;
}

export type WalkResult =
  | {
      ok: true;
      pa: number;
      pageSize: bigint;
      pageIova: bigint;
      pagePa: number;
      read: boolean;
      write: boolean;
      snp: boolean;
      reads: number;
    }
  | { ok: false; code: number; reason: IommuFault["reason"]; reads: number };

function readPte(mem: MemoryAccess, pa: bigint): bigint | null {
  if (pa + 8n > BigInt(mem.size)) return null;
  const b = mem.read(Number(pa), 8);
  return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
}

/** Walk a second-level table for one request (vtd_iova_to_slpte). */
export function vtdWalk(
  mem: MemoryAccess,
  regs: VtdRegs,
  root: number,
  levels: number,
  iova: bigint,
  write: boolean,
): WalkResult {
  const width = Math.min(regs.mgaw, vtdLevelsToWidth(levels));
  if (iova < 0n || iova >> BigInt(width) !== 0n) {
    return { ok: false, code: VTD_FR.ADDR_BEYOND_MGAW, reason: "not-present", reads: 0 };
  }
  const need = write ? DMA_PTE_WRITE : DMA_PTE_READ;
  let table = BigInt(root) & ADDR_MASK;
  let r = true;
  let w = true;
  let reads = 0;
  for (let level = levels; level >= 1; level--) {
    const shift = BigInt(12 + (level - 1) * LEVEL_STRIDE);
    const idx = (iova >> shift) & 0x1ffn;
    const pte = readPte(mem, table + idx * 8n);
    if (pte === null) {
      return { ok: false, code: VTD_FR.PAGING_ENTRY_INV, reason: "not-present", reads };
    }
    reads++;
    const present = (pte & (DMA_PTE_READ | DMA_PTE_WRITE)) !== 0n;
    r &&= (pte & DMA_PTE_READ) !== 0n;
    w &&= (pte & DMA_PTE_WRITE) !== 0n;
    if ((pte & need) === 0n) {
      return {
        ok: false,
        code: write ? VTD_FR.WRITE : VTD_FR.READ,
        reason: !present ? "not-present" : write ? "write-denied" : "read-denied",
        reads,
      };
    }
    const large = (level === 2 || level === 3) && (pte & DMA_PTE_LARGE_PAGE) !== 0n;
    const leaf = level === 1 || large;
    if (reservedBits(regs, pte, level, leaf, large)) {
      return { ok: false, code: VTD_FR.PAGING_ENTRY_RSVD, reason: "not-present", reads };
    }
    if (!leaf) {
      table = pte & ADDR_MASK;
      continue;
    }
    // Every level granted `need` (checked above); r/w are the effective rights to cache.
    const pageSize = 1n << shift;
    const pagePa = pte & ADDR_MASK & ~(pageSize - 1n);
    const pageIova = iova & ~(pageSize - 1n);
    return {
      ok: true,
      pa: Number(pagePa | (iova & (pageSize - 1n))),
      pageSize,
      pageIova,
      pagePa: Number(pagePa),
      read: r,
      write: w,
      snp: regs.sc && (pte & DMA_PTE_SNP) !== 0n,
      reads,
    };
  }
  // levels < 1 never reaches here (the context check rejects it).
  return { ok: false, code: VTD_FR.CONTEXT_ENTRY_INV, reason: "blocked", reads };
}

function reservedBits(
  regs: VtdRegs,
  pte: bigint,
  level: number,
  leaf: boolean,
  large: boolean,
): boolean {
  if (!leaf) {
    if (pte & DMA_PTE_SNP) return true;
    if (pte & DMA_PTE_TM) return true;
    // Bit 7 is PS at levels 2 and 3 (clear here, or this would be a leaf); reserved above.
    return level >= 4 && (pte & DMA_PTE_LARGE_PAGE) !== 0n;
  }
  if (!regs.sc && pte & DMA_PTE_SNP) return true;
  if (!regs.dt && pte & DMA_PTE_TM) return true;
  if (large) {
    const supported = level === 2 ? regs.sllps & 1 : regs.sllps & 2;
    if (!supported) return true;
    const low = (1n << BigInt(12 + (level - 1) * LEVEL_STRIDE)) - 1n;
    if (pte & ADDR_MASK & low) return true;
  }
  return false;
}

/** The fault recording registers and Primary Fault Overflow. */
class FaultRecords {
  readonly pending: IommuFault[] = [];
  overflow = false;
  /** Faults neither recorded nor collapsed (lost to overflow). */
  lost = 0;
  /** Faults not recorded because the same source already had one pending. */
  collapsed = 0;

  constructor(private readonly slots: number) {}

  record(f: IommuFault): void {
    if (this.overflow) {
      this.lost++;
      return;
    }
    if (this.pending.some((p) => p.rid === f.rid)) {
      this.collapsed++;
      return;
    }
    if (this.pending.length >= this.slots) {
      this.overflow = true;
      this.lost++;
      return;
    }
    this.pending.push(f);
  }

  /** Software reads every record, clears its F bit, and clears PFO (dmar_fault). */
  drain(): IommuFault[] {
    this.overflow = false;
    return this.pending.splice(0);
  }
}

export class VtdUnit implements UnitHw {
  readonly regs: VtdRegs;
  readonly iotlb: Iotlb;
  readonly faults: FaultRecords;

  constructor(
    readonly desc: IommuUnitDesc,
    private readonly mem: MemoryAccess,
    iotlbEntries: number,
  ) {
    this.regs = decodeVtdRegs(desc.cap, desc.ecap);
    this.iotlb = new Iotlb(iotlbEntries);
    this.faults = new FaultRecords(this.regs.faultRegs);
  }

  translate(
    t: Translation | undefined,
    busHasContext: boolean,
    rid: number,
    iova: bigint,
    write: boolean,
  ): TranslateResult {
    const fault = (code: number, reason: IommuFault["reason"], walkReads = 0): TranslateResult => {
      const f: IommuFault = { rid, addr: iova & ~0xfffn, write, reason, code };
      this.faults.record(f);
      return { ok: false, fault: f, walkReads };
    };
    if (t === undefined || t === null) {
      return fault(busHasContext ? VTD_FR.CONTEXT_ENTRY_P : VTD_FR.ROOT_ENTRY_P, "blocked");
    }
    if (t === "passthrough") {
      if (!this.regs.pt) return fault(VTD_FR.CONTEXT_ENTRY_INV, "blocked");
      return { ok: true, pa: Number(iova), snoop: false, iotlb: "none", walkReads: 0 };
    }
    if (t.levels < 3 || t.levels > 5 || !(this.regs.sagaw & (1 << (t.levels - 2)))) {
      return fault(VTD_FR.CONTEXT_ENTRY_INV, "blocked");
    }
    const hit = this.iotlb.lookup(t.domainId, iova);
    if (hit && (write ? hit.write : hit.read)) {
      return {
        ok: true,
        pa: hit.pa + Number(iova - hit.iova),
        snoop: hit.forceSnoop,
        iotlb: "hit",
        walkReads: 0,
      };
    }
    if (hit) this.iotlb.drop(hit);
    const w = vtdWalk(this.mem, this.regs, t.root, t.levels, iova, write);
    if (!w.ok) return fault(w.code, w.reason, w.reads);
    this.iotlb.insert({
      domainId: t.domainId,
      iova: w.pageIova,
      size: w.pageSize,
      pa: w.pagePa,
      read: w.read,
      write: w.write,
      forceSnoop: w.snp,
    });
    return { ok: true, pa: w.pa, snoop: w.snp, iotlb: "miss", walkReads: w.reads };
  }

  readFaults(): IommuFault[] {
    return this.faults.drain();
  }
}
