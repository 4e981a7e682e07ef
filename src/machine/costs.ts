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
  /** ns for a CPU load or store that hits its core's cache. */
  cacheHit: number;
  /** ns for a CPU access that misses and fills a line from memory (or another core's cache). */
  cacheMiss: number;
  /** Bytes of write-back cache each core has (cpu.ts models one private level per core). */
  cacheBytesPerCore: number;
  /** ns WBINVD spends per line of the core's cache capacity, walking it (dirty lines cost extra). */
  wbinvdPerLine: number;
  /** ns for CLFLUSH of a line that is clean or not cached (a dirty one costs a writeback). */
  clflush: number;
  /** ns for a VM exit handled in the kernel and the VM entry back (round trip). */
  vmExit: number;
  /** ns for an inter-processor interrupt: sending it and the target entering its handler. */
  ipi: number;
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
  cacheHit: 1,
  cacheMiss: 90,
  cacheBytesPerCore: 2 << 20,
  wbinvdPerLine: 0.5,
  clflush: 40,
  vmExit: 400,
  ipi: 2000,
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
  cacheHit:
    "assumed: an L1/L2 hit takes a few cycles (4-14 cycles at 3-4 GHz, Intel optimization " +
    "manual latency tables); 1 ns keeps hits visible in counts without weight",
  cacheMiss: "assumed: one DRAM read, the same ~90 ns idle load latency as pageWalkPerLevel",
  cacheBytesPerCore:
    "assumed: 2 MiB, the private L2 of a current server core (Sapphire Rapids, Zen 4: 1-2 MiB); " +
    "the shared LLC is not modelled",
  wbinvdPerLine:
    "assumed: WBINVD walks every line of the cache whether dirty or not, so its cost scales " +
    "with cache size (Intel SDM vol. 2B WBINVD: 'may take a long time'); 0.5 ns per line " +
    "gives ~16 µs for a 2 MiB cache before writebacks. No published per-line figure",
  clflush:
    "assumed: ~100-150 cycles for CLFLUSH of a clean line (it is ordered and must reach " +
    "every cache of the coherence domain); a dirty line adds cacheLineWriteback",
  vmExit:
    "derived: kvm-unit-tests' vmexit benchmark measured a VMCALL exit and re-entry at about " +
    "1,190 cycles on VMX (Linux commit b7ffc44d5b2e 'x86/kvm/vmx: Defer TR reload after VM " +
    "exit'), i.e. ~400 ns at 3 GHz; an exit that reaches userspace costs more (not modelled)",
  ipi:
    "assumed: 2 µs for an IPI and the wait for its target to acknowledge (smp_call_function " +
    "with wait), the order of magnitude of cross-core call latencies on x86 servers",
});

/**
 * What a POWER guest's TCE hypercall costs, by where it is finished (book3s_hv.ts): the
 * round trip of the hypercall in each mode, plus per guest TCE the work of that mode
 * (a hardware TCE update and its invalidation in the kernel; in userspace one
 * VFIO_IOMMU_MAP_DMA/UNMAP_DMA ioctl per TCE, which is what QEMU's IOMMU notifier issues).
 */
export interface HcallCostTable {
  /** ns for an hcall finished in real mode (MMU off, no partition switch). */
  hcallRealMode: number;
  /** ns for an hcall finished in virtual mode (guest exit to the host kernel and back). */
  hcallVirtualMode: number;
  /** ns for an exit to the VMM and back (KVM_RUN returns, the VMM re-enters). */
  hcallUserspace: number;
  /** ns per guest TCE applied in the kernel (hardware TCE store, userspace-view update). */
  tceInKernel: number;
  /** ns per guest TCE the VMM applies: one VFIO map/unmap ioctl into the sPAPR backend. */
  tceInUserspace: number;
  /** ns of the extra work an hcall that was punted from real mode did there first. */
  realModePunt: number;
}

export const DEFAULT_HCALL_COSTS: Readonly<HcallCostTable> = Object.freeze({
  hcallRealMode: 300,
  hcallVirtualMode: 2000,
  hcallUserspace: 20000,
  tceInKernel: 40,
  tceInUserspace: 1500,
  realModePunt: 300,
});

export const HCALL_COST_SOURCES: Readonly<Record<keyof HcallCostTable, string>> = Object.freeze({
  hcallRealMode:
    "assumed: a hypervisor-call interrupt handled in the real-mode exit path of HV KVM on " +
    "POWER8 (no MMU switch, no host context), a few hundred ns",
  hcallVirtualMode:
    "assumed: a full exit from the guest partition to the host kernel with the MMU on " +
    "(partition switch, vCPU state save/restore), ~2 µs on POWER8",
  hcallUserspace:
    "assumed: virtual-mode exit plus the return to the VMM from KVM_RUN and the re-entry " +
    "(two syscalls, scheduler, kvm_run handling), tens of µs; the reason in-kernel TCE " +
    "handling exists (the 2011 POWER VFIO summary: 'Performance sucks of course')",
  tceInKernel:
    "assumed: one big-endian TCE store, the userspace-view update and a share of the TCE " +
    "kill (MMIO store to the PHB's kill register), tens of ns",
  tceInUserspace:
    "assumed: one VFIO_IOMMU_MAP_DMA/UNMAP_DMA ioctl (syscall entry, copy_from_user, " +
    "preregistered-memory lookup, TCE update and kill), ~1.5 µs",
  realModePunt: "assumed: the real-mode attempt that ended in H_TOO_HARD (validation done twice)",
});
