/**
 * The hardware interfaces the kernel model may use, and nothing else of `machine/`:
 * configuration cycles (the ECAM window), and what platform firmware tells the OS
 * (ACPI MCFG host bridges, DMAR/IVRS IOMMU units and their device scopes).
 *
 * A real driver learns exactly these facts; the kernel model must not read any other
 * machine state. Provenance (`configKnown`) is the one extra: when a machine was built
 * from an unprivileged capture, the bytes past what was captured are not known, and the
 * kernel model records that the verdicts which read them are unknown rather than
 * presenting a guess as Linux's answer.
 */

/** The CPU's base page (x86-64, arm64 4K kernels). */
import type { HcallCostTable } from "./costs.js";

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;

export interface PciConfigAccess {
  /** Config read of `width` bytes; all ones when no function answers (master abort). */
  read(domain: number, bus: number, devfn: number, offset: number, width: 1 | 2 | 4): number;
  write(
    domain: number,
    bus: number,
    devfn: number,
    offset: number,
    width: 1 | 2 | 4,
    value: number,
  ): void;
  /** Whether config bytes [offset, offset+len) of this function are known facts. */
  configKnown(domain: number, bus: number, devfn: number, offset: number, len: number): boolean;
}

/** A PCI root bus as firmware (ACPI _CRS / MCFG) or the VMD driver reports it. */
export interface RootBusDesc {
  domain: number;
  bus: number;
  /** Intel VMD: the endpoint (domain, bus, devfn) whose BAR hosts this domain's ECAM. */
  vmd?: { domain: number; bus: number; devfn: number };
}

export type IommuKind = "intel-vtd" | "amd-vi" | "virtio" | "spapr-tce";

/** An IOMMU unit as the DMAR/IVRS/virtio-iommu description gives it. */
export interface IommuUnitDesc {
  kind: IommuKind;
  name: string;
  /** VT-d CAP_REG / ECAP_REG (0n for other kinds). */
  cap: bigint;
  ecap: bigint;
  segment: number;
  /** Functions this unit translates: all of the segment, or a device-scope list. */
  scope: { all: true; exclude: string[] } | { all: false; devices: string[] };
}

export interface Firmware {
  rootBuses(): RootBusDesc[];
  iommuUnits(): IommuUnitDesc[];
}

/**
 * Memory-mapped I/O to a function's BARs, as the CPU reaches it (through a VFIO region
 * access or an mmap of one). The BAR is named by index rather than by address, because
 * the model does not assign addresses; all ones when nothing decodes the access.
 */
export interface PciMmio {
  mmioRead(
    domain: number,
    bus: number,
    devfn: number,
    bar: number,
    off: number,
    width: 1 | 2 | 4 | 8,
  ): bigint;
  mmioWrite(
    domain: number,
    bus: number,
    devfn: number,
    bar: number,
    off: number,
    width: 1 | 2 | 4 | 8,
    value: bigint,
  ): void;
}

/**
 * The IOMMU units' programming interface. Translation tables live in system RAM, written
 * by the kernel in the unit's own format (VT-d second-level tables: 512 eight-byte entries
 * a level, bit 0 read, bit 1 write, bit 11 snoop, bits 51:12 the address; AMD-Vi v1
 * tables: bit 0 present, bits 11:9 next level, bit 61 read, bit 62 write, bit 60 force
 * coherent); the kernel points a requester ID at a table (the VT-d context entry / the
 * AMD device table entry) and invalidates the IOTLB after changing entries.
 * Large pages as the hardware takes them: VT-d bit 7 (PS) in a level-2/3 entry maps 2 MiB /
 * 1 GiB when CAP.SLLPS says so; AMD-Vi next level 0 in a level-n entry maps that level's
 * size, next level 7 a power-of-two size encoded in the address bits (PM_LEVEL_ENC(7)).
 * A unit translates once the kernel has programmed any requester on it (the model's
 * stand-in for GCMD.TE / IommuEn); until then DMA passes untranslated.
 */
export interface IommuHw {
  /**
   * Set the translation for one requester ID: `root` is the physical address of the
   * top-level table with `levels` levels (3 = 39-bit, 4 = 48-bit), `domainId` tags IOTLB
   * entries; "passthrough" maps IOVA = PA; null blocks all DMA from that requester.
   */
  setTranslation(
    unit: string,
    segment: number,
    rid: number,
    t: { root: number; levels: number; domainId: number } | "passthrough" | null,
  ): void;
  /** Domain-selective IOTLB invalidation (and the page-walk caches with it). */
  flushIotlb(unit: string, domainId: number): void;
  /** Fault records logged since the last read (VT-d fault recording registers / AMD event log). */
  readFaults(unit: string): IommuFault[];
}

export interface IommuFault {
  rid: number;
  /** VT-d: the page address (Fault Info, bits 63:12); AMD-Vi: the full address. */
  addr: bigint;
  write: boolean;
  /**
   * "not-present" also covers entries the unit rejects as malformed (non-zero reserved
   * bits, an address beyond the table's width, a table pointer outside RAM); "blocked" is
   * a requester with no usable context / device table entry. `code` tells them apart.
   */
  reason: "not-present" | "read-denied" | "write-denied" | "blocked";
  /**
   * What the unit itself records, for the kernel's fault messages: the VT-d Fault Reason
   * (dmar.c dma_remap_fault_reasons[]: 1 root entry not present, 2 context entry not
   * present, 3 invalid context entry, 4 access beyond MGAW, 5 PTE write access not set,
   * 6 PTE read access not set, 7 next page table pointer invalid, 0xc reserved bits in a
   * PTE) or the AMD-Vi event code (EVENT_TYPE_*: 1 ILLEGAL_DEV_TABLE_ENTRY, 2 IO_PAGE_FAULT,
   * 4 PAGE_TAB_HARDWARE_ERROR).
   */
  code?: number;
  /** AMD-Vi IO_PAGE_FAULT: the DTE's domain ID and the event flags (bit 4 PR, 5 RW, 6 PE, 7 RZ). */
  domainId?: number;
  flags?: number;
}

/** System RAM as the CPU and DMA see it. */
export interface MemoryAccess {
  readonly size: number;
  read(pa: number, len: number): Uint8Array;
  write(pa: number, data: Uint8Array): void;
  clear(pfn: number): void;
}

/**
 * One instruction of a guest program as the CPU executes it in guest mode (VMX non-root /
 * SVM guest). The model has no x86 decoder: a program is a list of these, each standing
 * for the instruction named (addresses are guest-physical; the guest runs with paging off).
 *
 * - store: MOV to memory of `data` (REP MOVSB for more than 8 bytes)
 * - load: MOV from memory of `len` bytes; what it read is recorded in the context
 * - wbinvd: WBINVD (0F 09), privileged: it exits when the hypervisor asks (VMX "WBINVD
 *   exiting", SVM's WBINVD intercept), else runs natively on the CPU
 * - clflush: CLFLUSH of the line holding `gpa` (never intercepted)
 * - mfence, pause: ordering and spin-wait hints; no effect on the memory model here
 * - hlt: HLT
 * - preempt: not an instruction: the host's timer interrupt arrives here (an external-
 *   interrupt exit) and its scheduler moves the vCPU thread to host CPU `cpu`
 */
export type GuestInsn =
  | { op: "store"; gpa: number; data: Uint8Array }
  | { op: "load"; gpa: number; len: number }
  | { op: "wbinvd" }
  | { op: "clflush"; gpa: number }
  | { op: "mfence" }
  | { op: "pause" }
  | { op: "hlt" }
  | { op: "preempt"; cpu: number };

/** What the CPU knows of a guest while it runs it (the VMCS / VMCB and the EPT / NPT). */
export interface GuestContext {
  program: GuestInsn[];
  /** Index of the next instruction (RIP). Running past the end is a HLT. */
  rip: number;
  /** The values the guest's loads returned, in order (what the guest "read"). */
  reads: { gpa: number; data: Uint8Array }[];
  /** VMX secondary control "WBINVD exiting" / SVM's WBINVD intercept. */
  wbinvdExiting: boolean;
  /**
   * Second-level translation (EPT / NPT, with the hypervisor's fault handling behind it):
   * the host physical address of a guest-physical one; null where there is no memory
   * (MMIO); "fault" where the hypervisor cannot provide the page.
   */
  translate(gpa: number, write: boolean): number | null | "fault";
}

/** Why the CPU left guest mode; the instruction at `rip` has not completed unless said. */
export type VmExit =
  /** VMX exit reason 54 / SVM exit code 0x89. */
  | { reason: "wbinvd" }
  /** EPT violation / NPF on a guest-physical address without memory: the access to emulate. */
  | { reason: "mmio"; gpa: number; len: number; write: boolean; data?: Uint8Array }
  /** VMX exit reason 12 / SVM 0x78. */
  | { reason: "hlt" }
  /** VMX exit reason 1 / SVM 0x60 (INTR): the host takes its interrupt (the instruction completed). */
  | { reason: "external-interrupt"; moveTo: number }
  /** An EPT violation / NPF the hypervisor could not resolve. */
  | { reason: "fault"; gpa: number };

/**
 * The CPUs: per-core write-back caches kept coherent with each other and with snooping DMA
 * (cpu.ts). The kernel runs on CPU `cpu` when it uses one; WBINVD and CLFLUSH are the
 * cache-maintenance instructions a driver can issue. `clock(cpu)` is that CPU's simulated
 * time in ns (a TSC), advanced by everything it executes.
 */
export interface CpuHw {
  /** Online CPUs, 0 .. count-1. */
  readonly count: number;
  /** CPUID vendor: VMX on "intel" (with EPT and WBINVD exiting), SVM with NPT on "amd". */
  readonly vendor: "intel" | "amd";
  /** CPU features and bugs by their /proc/cpuinfo names (boot_cpu_has, boot_cpu_has_bug). */
  readonly flags: ReadonlySet<string>;
  readonly bugs: ReadonlySet<string>;
  /** MAXPHYADDR: the physical address bits (/proc/cpuinfo "address sizes"). */
  readonly physBits: number;
  /** VMX secondary control WBINVD exiting is available (SVM: always intercepted). */
  readonly hasWbinvdExit: boolean;
  /** WBINVD on `cpu`: write back and invalidate every line of its cache. */
  wbinvd(cpu: number): void;
  /** Run `fn` on each of `cpus` (by IPI; `from` directly if listed) and wait for all. */
  onEachCpu(from: number, cpus: Iterable<number>, fn: (cpu: number) => void): void;
  /** VMRESUME / VMRUN on `cpu`: run the guest until something makes it exit. */
  enterGuest(cpu: number, ctx: GuestContext): VmExit;
  /** Simulated ns `cpu` has spent so far. */
  clock(cpu: number): number;
}

export interface Hardware {
  pci: PciConfigAccess & PciMmio;
  firmware: Firmware;
  /** RAM as the CPUs see it: coherent with every core's cache. */
  memory: MemoryAccess;
  iommu: IommuHw;
  cpu: CpuHw;
  /**
   * The CPU's base page as this machine's kernel is built for it: PAGE_SHIFT 12 unless
   * said (enterprise POWER kernels: CONFIG_PPC_64K_PAGES, 16). The PAGE_SIZE constant
   * above stays the x86 answer and the 4 KiB unit RAM is stored in.
   */
  pageShift?: number;
  /** POWER (PowerNV): the OPAL firmware's PCI calls; absent on x86. */
  opal?: OpalPci;
  /** POWER: what a TCE hypercall costs by where it is finished (costs.ts), to price them. */
  hcallCosts?: HcallCostTable;
}

/** A PHB as OPAL's device tree describes it (ibm,opal-num-pes, ranges, ibm,supported-tce-sizes). */
export interface PhbDesc {
  /** hose->global_number, and the PCI domain of its root bus. */
  index: number;
  model: "phb3" | "phb4";
  numPes: number;
  reservedPe: number;
  /** The M32 window's PCI address (m32_pci_base: where the 32-bit DMA window ends) and size. */
  m32PciBase: number;
  m32Size: number;
  /** IOMMU page shifts the PHB takes; `fromDt` false when the tree has no property. */
  tceSizes: number[];
  tceSizesFromDt: boolean;
  /** The CPU generation (what cpu_has_feature(CPU_FTR_ARCH_207S / _300) tells the kernel). */
  cpu: "power8" | "power9";
}

/**
 * OPAL's PCI calls (skiboot, opal-api.h): PE assignment, DMA windows, TCE invalidation and
 * EEH. Return codes are OPAL_* (0 success, negative failure).
 */
export interface OpalPci {
  phbs(): PhbDesc[];
  /** opal_pci_set_pe: route a RID (or a whole bus) to a PE. */
  setPe(phb: number, pe: number, bdfn: number, busAll: boolean): number;
  /** opal_pci_map_pe_mmio_window for an M32 segment. */
  mapPeMmioWindow(phb: number, pe: number, segment: number): number;
  /** opal_pci_map_pe_dma_window; tableSize 0 unmaps. */
  mapPeDmaWindow(
    phb: number,
    pe: number,
    window: number,
    levels: number,
    tableAddr: number,
    tableSize: number,
    pageSize: number,
  ): number;
  /** opal_pci_map_pe_dma_window_real: a bypass window; size 0 unmaps. */
  mapPeDmaWindowReal(phb: number, pe: number, window: number, start: bigint, size: bigint): number;
  /** opal_pci_tce_kill */
  tceKill(phb: number): number;
  /** opal_pci_eeh_freeze_status: OPAL_EEH_STOPPED_* */
  eehFreezeStatus(phb: number, pe: number): { rc: number; state: number };
  eehFreezeClear(phb: number, pe: number, action: number): number;
  eehFreezeSet(phb: number, pe: number, action: number): number;
  /** opal_pci_err_inject */
  errInject(
    phb: number,
    pe: number,
    type: number,
    func: number,
    addr: bigint,
    mask: bigint,
  ): number;
  /** The PE's reset completes (opal_pci_reset / the bridge's secondary bus reset). */
  peReset(phb: number, pe: number): number;
}

export type { HcallCostTable } from "./costs.js";
