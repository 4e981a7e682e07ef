/**
 * Simulated costs: the numbers scenarios multiply event counts by to report a simulated
 * time. Data only: the machine counts events (IOTLB hits, table reads, bytes, TLPs) and
 * `dma.ts` prices them with a table of this shape; a scenario may pass its own table.
 *
 * Every default says where it comes from. "derived" means computed from a specification;
 * "assumed" means no measurement is cited and the value is a round, plausible figure —
 * treat results priced with it as orders of magnitude, not predictions.
 */

export interface CostTable {
  /** ns added by a translation found in the IOTLB. */
  iotlbHit: number;
  /** ns per paging-structure entry the IOMMU reads from memory on an IOTLB miss. */
  pageWalkPerLevel: number;
  /** ns of link time per byte of TLP payload. */
  dmaPerByte: number;
  /** Bytes of framing, header and LCRC each TLP adds on the link. */
  tlpOverheadBytes: number;
  /** Max_Payload_Size: payload bytes per write TLP / read completion. */
  maxPayloadBytes: number;
  /** ns from a device's memory read request to its completion, before payload time. */
  dmaReadLatency: number;
  /** ns for a posted write to be accepted by the root complex. */
  dmaWriteLatency: number;
  /** ns for the CPU to write one dirty cache line back to memory (clflush of a dirty line). */
  cacheLineWriteback: number;
  /** Bytes per CPU cache line. */
  cacheLineBytes: number;
  /** ns for one IOTLB invalidation, submission to completion (queued invalidation + wait). */
  iotlbInvalidation: number;
  /** Entries an IOTLB holds before it evicts (least recently used first). */
  iotlbEntries: number;
}

export const DEFAULT_COSTS: Readonly<CostTable> = Object.freeze({
  iotlbHit: 1,
  pageWalkPerLevel: 90,
  dmaPerByte: 1 / 7.877,
  tlpOverheadBytes: 24,
  maxPayloadBytes: 256,
  dmaReadLatency: 500,
  dmaWriteLatency: 100,
  cacheLineWriteback: 100,
  cacheLineBytes: 64,
  iotlbInvalidation: 1000,
  iotlbEntries: 64,
});

/** Where each default comes from. */
export const COST_SOURCES: Readonly<Record<keyof CostTable, string>> = Object.freeze({
  iotlbHit:
    "assumed: a hit is a lookup in the IOMMU's own SRAM, overlapped with the request's " +
    "passage through the root complex; 1 ns keeps hits visible in counts without weight",
  pageWalkPerLevel:
    "assumed: one uncached DRAM read per level (~90 ns idle load latency on current x86 " +
    "servers); paging-structure caches and LLC hits would lower it",
  dmaPerByte:
    "derived: PCIe 3.0 x8, 8.0 GT/s per lane with 128b/130b encoding (PCIe Base 3.0 §4.2) " +
    "= 7.877 GB/s of raw link bandwidth, i.e. 1/7.877 ns per byte",
  tlpOverheadBytes:
    "derived: PCIe 3.0 framing — 4-byte STP token carrying the sequence number (§4.2.2.3), " +
    "4-DW header for a 64-bit address (§2.2), 4-byte LCRC (§3.5) — 24 bytes; DLLPs excluded",
  maxPayloadBytes:
    "assumed: 256 bytes, a common Max_Payload_Size on x86 root ports (PCIe allows 128-4096, " +
    "Device Control bits 7:5)",
  dmaReadLatency:
    "assumed: a device-to-host read round trip of several hundred ns, the range " +
    "Neugebauer et al. (SIGCOMM 2018, pcie-bench) report for Xeon hosts",
  dmaWriteLatency: "assumed: posted writes complete from the device's view once sent",
  cacheLineWriteback:
    "assumed: a dirty 64-byte line written back to DRAM, about one DRAM write (~100 ns)",
  cacheLineBytes: "x86-64 cache line size (Intel SDM vol. 3A §11.1, CPUID leaf 1 EBX[15:8] × 8)",
  iotlbInvalidation:
    "assumed: 1 µs for a queued invalidation descriptor plus its wait descriptor; software " +
    "overhead in the kernel is not included",
  iotlbEntries:
    "assumed: 64; IOTLB sizes are not published. pcie-bench (Neugebauer et al., SIGCOMM " +
    "2018) observed IOTLB-miss slowdowns once a DMA working set exceeded a few hundred KiB " +
    "of 4 KiB pages, consistent with an IOTLB of this order",
});
