/**
 * An AMD-Vi IOMMU translating with the v1 (host) page table: the device table entry the
 * kernel programmed (`setTranslation`) names the root and its paging mode (levels), a
 * pass-through (Mode 0), or blocks the requester; the unit walks the table from RAM,
 * caches what it found in its IOTLB, and logs faults to its event log.
 *
 * Sources: AMD I/O Virtualization Technology (IOMMU) Specification rev 3.x, "I/O Page
 * Tables" (PDE/PTE formats, level skipping, NextLevel 7 page sizes) and "Event Log"
 * (IO_PAGE_FAULT); the format as Linux 6.12 writes and reads it,
 * drivers/iommu/amd/amd_iommu_types.h (IOMMU_PTE_PR/FC/IR/IW, PM_LEVEL_*, PAGE_MODE_*,
 * PTE_PAGE_SIZE, EVENT_TYPE_*, EVENT_FLAG_*, EVT_BUFFER_SIZE) and io_pgtable.c
 * (fetch_pte).
 *
 * - Levels are numbered from 1 (4 KiB pages) to the DTE's Mode (1-6); an address above
 *   what Mode covers faults. A PDE's NextLevel names the level of the table it points to;
 *   a NextLevel below the current level minus one skips levels, whose address bits must
 *   then be zero. NextLevel 0 is a page of the current level's size; NextLevel 7 a larger
 *   page (smaller than the next level's) whose size is encoded by the lowest clear address
 *   bit (PTE_PAGE_SIZE), its entry replicated over the page.
 * - IR/IW in every entry on the path gate the access (the effective permission is their
 *   AND). FC (bit 60) in the leaf forces the request coherent (snooped).
 * - Non-zero reserved bits (58:52 in a PTE, 60:52 in a PDE) fault with RZ set.
 * - Faults go to the event log as IO_PAGE_FAULT (flags PR, RW, PE, RZ as the event
 *   defines them), a DTE with an invalid Mode as ILLEGAL_DEV_TABLE_ENTRY, a table pointer
 *   outside RAM as PAGE_TAB_HARDWARE_ERROR. The log holds 512 entries (Linux's 8 KiB
 *   buffer); when full, events are lost and EventOverflow is set until software reads it.
 * - The IOTLB is shared with VT-d's model (iotlb.ts); the device table cache and the
 *   page directory cache are not modelled.
 */
import type { IommuFault, IommuUnitDesc, MemoryAccess } from "../hw.js";
import { Iotlb } from "./iotlb.js";
import type { Translation, TranslateResult, UnitHw } from "./units.js";

export const IOMMU_PTE_PR = 1n << 0n;
export const IOMMU_PTE_FC = 1n << 60n;
export const IOMMU_PTE_IR = 1n << 61n;
export const IOMMU_PTE_IW = 1n << 62n;
const PM_ADDR_MASK = 0x000f_ffff_ffff_f000n;
const PTE_RSVD = 0x07f0_0000_0000_0000n; // bits 58:52
const PDE_RSVD = 0x1ff0_0000_0000_0000n; // bits 60:52

export const EVENT_TYPE_ILL_DEV = 0x1;
export const EVENT_TYPE_IO_FAULT = 0x2;
export const EVENT_TYPE_PAGE_TAB_ERR = 0x4;
/** IO_PAGE_FAULT flags (event bits 31:16 → flags bits 15:0). */
export const EVENT_FLAG_PR = 0x010;
export const EVENT_FLAG_RW = 0x020;
export const EVENT_FLAG_PE = 0x040;
export const EVENT_FLAG_RZ = 0x080;

/** EVT_BUFFER_SIZE / EVENT_ENTRY_SIZE. */
export const EVENT_LOG_ENTRIES = 8192 / 16;

export type AmdWalkResult =
  | {
      ok: true;
      pa: number;
      pageSize: bigint;
      pageIova: bigint;
      pagePa: number;
      read: boolean;
      write: boolean;
      fc: boolean;
      reads: number;
    }
  | { ok: false; code: number; flags: number; reason: IommuFault["reason"]; reads: number };

function readPte(mem: MemoryAccess, pa: bigint): bigint | null {
  if (pa + 8n > BigInt(mem.size)) return null;
  const b = mem.read(Number(pa), 8);
  return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
}

const levelShift = (level: number) => BigInt(12 + 9 * (level - 1));

/** PTE_PAGE_SIZE(): 1 << (1 + ffz(pte | 0xfff)). */
function encodedPageSize(pte: bigint): bigint {
  let bit = 12n;
  while (bit < 64n && (pte >> bit) & 1n) bit++;
  return 1n << (bit + 1n);
}

/** Walk a v1 page table for one request. */
export function amdWalk(
  mem: MemoryAccess,
  root: number,
  mode: number,
  iova: bigint,
  write: boolean,
): AmdWalkResult {
  const rw = write ? EVENT_FLAG_RW : 0;
  const pageFault = (flags: number, reason: IommuFault["reason"], reads: number) =>
    ({ ok: false, code: EVENT_TYPE_IO_FAULT, flags: flags | rw, reason, reads }) as const;
  if (iova < 0n || (mode < 6 && iova >> levelShift(mode + 1) !== 0n)) {
    return pageFault(0, "not-present", 0);
  }
  let table = BigInt(root) & PM_ADDR_MASK;
  let level = mode;
  let ir = true;
  let iw = true;
  let reads = 0;
  for (;;) {
    const idx = (iova >> levelShift(level)) & 0x1ffn;
    const pte = readPte(mem, table + idx * 8n);
    if (pte === null) {
      return { ok: false, code: EVENT_TYPE_PAGE_TAB_ERR, flags: rw, reason: "not-present", reads };
    }
    reads++;
    if (!(pte & IOMMU_PTE_PR)) return pageFault(0, "not-present", reads);
    ir &&= (pte & IOMMU_PTE_IR) !== 0n;
    iw &&= (pte & IOMMU_PTE_IW) !== 0n;
    const next = Number((pte >> 9n) & 7n);
    if (next === 0 || next === 7) {
      // NextLevel 7 in a level-n table: a size between level n's and level n+1's, the
      // entry replicated over the size (PAGE_SIZE_LEVEL / PAGE_SIZE_PTE_COUNT).
      const levelSize = 1n << levelShift(level);
      const size = next === 0 ? levelSize : encodedPageSize(pte);
      const sizeOk = next === 0 || (size > levelSize && size < levelSize << 9n);
      if (pte & PTE_RSVD || !sizeOk) {
        return pageFault(EVENT_FLAG_PR | EVENT_FLAG_RZ, "not-present", reads);
      }
      if (write ? !iw : !ir) {
        return pageFault(
          EVENT_FLAG_PR | EVENT_FLAG_PE,
          write ? "write-denied" : "read-denied",
          reads,
        );
      }
      const pagePa = pte & PM_ADDR_MASK & ~(size - 1n);
      return {
        ok: true,
        pa: Number(pagePa | (iova & (size - 1n))),
        pageSize: size,
        pageIova: iova & ~(size - 1n),
        pagePa: Number(pagePa),
        read: ir,
        write: iw,
        fc: (pte & IOMMU_PTE_FC) !== 0n,
        reads,
      };
    }
    if (pte & PDE_RSVD || next >= level) {
      return pageFault(EVENT_FLAG_PR | EVENT_FLAG_RZ, "not-present", reads);
    }
    // Skipped levels: their address bits must be zero.
    for (let s = level - 1; s > next; s--) {
      if ((iova >> levelShift(s)) & 0x1ffn) return pageFault(0, "not-present", reads);
    }
    table = pte & PM_ADDR_MASK;
    level = next;
  }
}

class EventLog {
  readonly pending: IommuFault[] = [];
  overflow = false;
  lost = 0;

  constructor(private readonly entries: number) {}

  record(f: IommuFault): void {
    if (this.pending.length >= this.entries) {
      this.overflow = true;
      this.lost++;
      return;
    }
    this.pending.push(f);
  }

  /** Software consumes the log (head = tail) and clears EventOverflow. */
  drain(): IommuFault[] {
    this.overflow = false;
    return this.pending.splice(0);
  }
}

export class AmdViUnit implements UnitHw {
  readonly iotlb: Iotlb;
  readonly faults = new EventLog(EVENT_LOG_ENTRIES);

  constructor(
    readonly desc: IommuUnitDesc,
    private readonly mem: MemoryAccess,
    iotlbEntries: number,
  ) {
    this.iotlb = new Iotlb(iotlbEntries);
  }

  translate(
    t: Translation | undefined,
    _busHasContext: boolean,
    rid: number,
    iova: bigint,
    write: boolean,
  ): TranslateResult {
    const fault = (
      code: number,
      flags: number,
      reason: IommuFault["reason"],
      domainId: number,
      walkReads = 0,
    ): TranslateResult => {
      const f: IommuFault = { rid, addr: iova, write, reason, code, domainId, flags };
      this.faults.record(f);
      return { ok: false, fault: f, walkReads };
    };
    const rw = write ? EVENT_FLAG_RW : 0;
    // Linux initialises every DTE valid with translation on and no permission
    // (init_device_table_dma), so a requester it never programmed is refused.
    if (t === undefined || t === null) {
      return fault(EVENT_TYPE_IO_FAULT, EVENT_FLAG_PE | rw, "blocked", 0);
    }
    if (t === "passthrough") {
      return { ok: true, pa: Number(iova), snoop: false, iotlb: "none", walkReads: 0 };
    }
    if (t.levels < 1 || t.levels > 6) {
      return fault(EVENT_TYPE_ILL_DEV, rw, "blocked", t.domainId);
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
    const w = amdWalk(this.mem, t.root, t.levels, iova, write);
    if (!w.ok) return fault(w.code, w.flags, w.reason, t.domainId, w.reads);
    this.iotlb.insert({
      domainId: t.domainId,
      iova: w.pageIova,
      size: w.pageSize,
      pa: w.pagePa,
      read: w.read,
      write: w.write,
      forceSnoop: w.fc,
    });
    return { ok: true, pa: w.pa, snoop: w.fc, iotlb: "miss", walkReads: w.reads };
  }

  readFaults(): IommuFault[] {
    return this.faults.drain();
  }
}
