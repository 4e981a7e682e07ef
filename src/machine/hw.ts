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

export type IommuKind = "intel-vtd" | "amd-vi" | "virtio";

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

export interface Hardware {
  pci: PciConfigAccess & PciMmio;
  firmware: Firmware;
  memory: MemoryAccess;
  iommu: IommuHw;
}
