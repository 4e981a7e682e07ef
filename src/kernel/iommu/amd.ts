/**
 * The AMD-Vi driver, drivers/iommu/amd/iommu.c and amd/io_pgtable.c (Linux 6.12): paging
 * domains use v1 page tables in RAM (bit 0 present, bits 11:9 the next level, bits 51:12 the
 * address, bit 60 force-coherent on every leaf, bits 61/62 read/write); a table starts with
 * three levels and grows a level at a time when an address or page size needs it; any
 * power-of-two page size from 4 KiB up is mapped, a size between two levels' natural sizes
 * as replicated entries with next level 7 and the size encoded in the address bits.
 * Attaching a device writes its device table entry (and its DMA aliases') with the
 * domain's root, mode and ID (a global ID space); identity domains leave translation off
 * (mode 0), the blocking domain clears the entry. Interrupt remapping is on unless the
 * command line turns it off.
 */
import type { Hardware, IommuUnitDesc } from "../../machine/hw.js";
import { err } from "../../uapi/errno.js";
import type { PageAllocator } from "../core/page_alloc.js";
import type { PciDev } from "../pci/pci.js";
import { pciForEachDmaAlias } from "../pci/search.js";
import {
  ffs,
  gatherAddRange,
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_DMA,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_DOMAIN_UNMANAGED,
  IOMMU_READ,
  IOMMU_RESV_MSI,
  IOMMU_RESV_RESERVED,
  IOMMU_WRITE,
  irqRemapAllowed,
  readPte,
  writePte,
  type IommuDomain,
  type IommuDomainOps,
  type IommuOps,
  type IotlbGather,
  type ResvRegion,
} from "./domain.js";

const IOMMU_PTE_PR = 1n << 0n;
const IOMMU_PTE_FC = 1n << 60n;
const IOMMU_PTE_IR = 1n << 61n;
const IOMMU_PTE_IW = 1n << 62n;
const PM_ADDR_MASK = 0x000ffffffffff000n;
const PAGE_MODE_NONE = 0;
const PAGE_MODE_3_LEVEL = 3;
const PAGE_MODE_6_LEVEL = 6;
const PAGE_MODE_7_LEVEL = 7;
const MAX_DOMAIN_ID = 65536;
/** AMD_IOMMU_PGSIZES: every power of two from 4 KiB to 2^51 except 512 GiB. */
const AMD_IOMMU_PGSIZES = (((1n << 52n) - 1n) & ~0xfffn) ^ (1n << 39n);
const AMD_IOMMU_PGSIZES_4K = 1n << 12n;
const AMD_IOMMU_PGSIZES_V2 = (1n << 12n) | (1n << 21n) | (1n << 30n);
const MSI_RANGE_START = 0xfee00000n;
const MSI_RANGE_END = 0xfeefffffn;
const HT_RANGE_START = 0xfd00000000n;
const HT_RANGE_END = 0xffffffffffn;

const pmLevelShift = (x: number) => BigInt(12 + x * 9);
const pmLevelSize = (x: number) => (x < 6 ? (1n << pmLevelShift(x)) - 1n : (1n << 64n) - 1n);
const pmLevelIndex = (x: number, a: bigint) => Number((a >> pmLevelShift(x)) & 0x1ffn);
const pmLevelEnc = (x: number) => (BigInt(x) << 9n) & 0xe00n;
const pmLevelPde = (x: number, a: number) =>
  BigInt(a) | pmLevelEnc(x) | IOMMU_PTE_PR | IOMMU_PTE_IR | IOMMU_PTE_IW;
const pmPteLevel = (pte: bigint) => Number((pte >> 9n) & 7n);
const pageSizeLevel = (pgsize: bigint) => Math.floor((ffs(pgsize) - 12) / 9);
const pageSizePteCount = (pgsize: bigint) => 1 << ((ffs(pgsize) - 12) % 9);
const pageSizePte = (addr: bigint, pgsize: bigint) =>
  (addr | (pgsize - 1n)) & ~(pgsize >> 1n) & PM_ADDR_MASK;
/** PTE_PAGE_SIZE(): 1 << (1 + ffz(pte | 0xfff)) */
const ptePageSize = (pte: bigint) => 1n << BigInt(1 + ffs(~(pte | 0xfffn) & ((1n << 64n) - 1n)));
const pteLevelPageSize = (level: number) => 1n << BigInt(12 + 9 * level);
const present = (v: bigint) => (v & IOMMU_PTE_PR) !== 0n;
const pteAddr = (v: bigint) => Number(v & PM_ADDR_MASK);

/** struct iommu_dev_data */
interface DevData {
  dev: PciDev;
  unit: IommuUnitDesc;
  domain: ProtectionDomain | null;
}

/** struct protection_domain with its v1 struct amd_io_pgtable. */
interface ProtectionDomain extends IommuDomain {
  id: number;
  /** Table levels; PAGE_MODE_NONE for an identity domain. */
  mode: number;
  root: number | null;
  devices: DevData[];
}

export class AmdIommuDriver {
  readonly ops: IommuOps;
  private readonly devData = new Map<PciDev, DevData>();
  private readonly domainIds = new Set<number>([0]);
  private readonly pgsizeBitmap: bigint;
  private readonly irqRemap: boolean;
  private readonly domainOps: IommuDomainOps;

  constructor(
    private readonly hw: Hardware,
    private readonly pages: PageAllocator,
    private readonly unitOf: (dev: PciDev) => IommuUnitDesc | undefined,
    cmdline: string,
  ) {
    const opts = cmdline
      .split(/\s+/)
      .filter((w) => w.startsWith("amd_iommu="))
      .flatMap((w) => w.slice("amd_iommu=".length).split(","));
    this.pgsizeBitmap = AMD_IOMMU_PGSIZES;
    for (const o of opts) {
      if (o === "nohugepages") this.pgsizeBitmap = AMD_IOMMU_PGSIZES_4K;
      if (o === "v2_pgsizes_only") this.pgsizeBitmap = AMD_IOMMU_PGSIZES_V2;
    }
    this.irqRemap = irqRemapAllowed(cmdline);
    this.domainOps = {
      attachDev: (d, dev) => this.attachDevice(d as ProtectionDomain, dev),
      mapPages: (d, iova, paddr, pgsize, pgcount, prot, mapped) =>
        this.mapPages(d as ProtectionDomain, iova, paddr, pgsize, pgcount, prot, mapped),
      unmapPages: (d, iova, pgsize, pgcount, gather) =>
        this.unmapPages(d as ProtectionDomain, iova, pgsize, pgcount, gather),
      iotlbSync: (d) => this.flushDomain(d as ProtectionDomain),
      iovaToPhys: (d, iova) => this.iovaToPhys(d as ProtectionDomain, iova),
      free: (d) => this.domainFree(d as ProtectionDomain),
      // IOMMU_PTE_FC is always set.
      enforceCacheCoherency: () => true,
    };
    const blocked: IommuDomain = {
      type: IOMMU_DOMAIN_BLOCKED,
      ops: { attachDev: (_d, dev) => this.blockedAttach(dev) },
      owner: null,
      pgsizeBitmap: 0n,
      geometry: { apertureStart: 0n, apertureEnd: 0n, forceAperture: false },
    };
    this.ops = {
      name: "amd-iommu",
      capable: () => true,
      domainAlloc: (type) => this.domainAlloc(type),
      blockedDomain: blocked,
      identityDomain: null,
      probeDevice: (dev) => {
        const unit = this.unitOf(dev);
        if (unit) this.devData.set(dev, { dev, unit, domain: null });
      },
      defDomainType: () => 0,
      getResvRegions: () => getResvRegions(),
      // amd_iommu_ops has none: a v1 table's sizes are set on each domain.
      pgsizeBitmap: 0n,
      isolatedMsi: () => this.irqRemap,
    };
  }

  private rd(pa: number): bigint {
    return readPte(this.hw.memory, pa);
  }
  private wr(pa: number, v: bigint): void {
    writePte(this.hw.memory, pa, v);
  }
  private allocPage(): number | null {
    const pfn = this.pages.alloc();
    return pfn === null ? null : pfn * 4096;
  }
  private freePage(pa: number): void {
    this.pages.put(pa / 4096);
  }

  /** domain_id_alloc(): the lowest free ID, 0 being reserved. */
  private domainIdAlloc(): number {
    let id = 1;
    while (this.domainIds.has(id)) id++;
    if (id >= MAX_DOMAIN_ID) return 0;
    this.domainIds.add(id);
    return id;
  }

  /**
   * amd_iommu_domain_alloc() → protection_domain_alloc(): identity domains have no table;
   * DMA and unmanaged domains get a v1 table (the 6.12 default, and forced for unmanaged).
   */
  private domainAlloc(type: number): IommuDomain | null {
    if (
      type !== IOMMU_DOMAIN_IDENTITY &&
      type !== IOMMU_DOMAIN_DMA &&
      type !== IOMMU_DOMAIN_UNMANAGED
    )
      return null;
    const id = this.domainIdAlloc();
    if (!id) return null;
    let root: number | null = null;
    if (type !== IOMMU_DOMAIN_IDENTITY) {
      root = this.allocPage();
      if (root === null) {
        this.domainIds.delete(id);
        return null;
      }
    }
    const d: ProtectionDomain = {
      type,
      ops: this.domainOps,
      owner: null,
      pgsizeBitmap: root === null ? 0n : this.pgsizeBitmap,
      geometry: { apertureStart: 0n, apertureEnd: (1n << 64n) - 1n, forceAperture: true },
      id,
      mode: root === null ? PAGE_MODE_NONE : PAGE_MODE_3_LEVEL,
      root,
      devices: [],
    };
    return d;
  }

  /** amd_iommu_domain_free(): detach what is left, free the table and the ID. */
  private domainFree(d: ProtectionDomain): void {
    for (const dd of [...d.devices]) this.doDetach(dd);
    const pages: number[] = [];
    if (d.root !== null) this.collectSubPt(d.root, d.mode, pages);
    for (const pa of pages) this.freePage(pa);
    this.domainIds.delete(d.id);
  }

  /**
   * set_dte_entry() / clear_dte_entry() with clone_aliases(): the device table entry of the
   * device and each DMA alias.
   */
  private updateDte(dd: DevData, set: boolean): void {
    const d = dd.domain;
    const t =
      !set || !d
        ? null
        : d.mode === PAGE_MODE_NONE
          ? ("passthrough" as const)
          : { root: d.root as number, levels: d.mode, domainId: d.id };
    pciForEachDmaAlias(dd.dev, (s) => {
      this.hw.iommu.setTranslation(dd.unit.name, dd.unit.segment, s.rid, t);
      return false;
    });
  }

  /** do_detach() */
  private doDetach(dd: DevData): void {
    const d = dd.domain as ProtectionDomain;
    this.updateDte(dd, false);
    this.flushDomain(d);
    dd.domain = null;
    d.devices.splice(d.devices.indexOf(dd), 1);
  }

  /** blocked_domain_attach_device() */
  private blockedAttach(dev: PciDev): number {
    const dd = this.devData.get(dev);
    if (!dd) return err("ENODEV");
    if (dd.domain) this.doDetach(dd);
    this.updateDte(dd, false);
    return 0;
  }

  /** amd_iommu_attach_device() */
  private attachDevice(d: ProtectionDomain, dev: PciDev): number {
    const dd = this.devData.get(dev);
    if (!dd) return err("ENODEV");
    if (dd.domain === d) return 0;
    if (dd.domain) this.doDetach(dd);
    dd.domain = d;
    d.devices.unshift(dd);
    this.updateDte(dd, true);
    return 0;
  }

  /** amd_iommu_domain_flush_pages()/_all(): every unit with a device in the domain. */
  private flushDomain(d: ProtectionDomain): void {
    for (const unit of new Set(d.devices.map((dd) => dd.unit)))
      this.hw.iommu.flushIotlb(unit.name, d.id);
  }

  /** increase_address_space(): a new root above the old one; device table entries follow. */
  private increaseAddressSpace(d: ProtectionDomain, address: bigint, pageSizeLvl: number): boolean {
    if (address <= pmLevelSize(d.mode) && d.mode - 1 >= pageSizeLvl) return true;
    if (d.mode === PAGE_MODE_6_LEVEL) return false;
    const pte = this.allocPage();
    if (pte === null) return false;
    this.wr(pte, pmLevelPde(d.mode, d.root as number));
    d.root = pte;
    d.mode++;
    for (const dd of d.devices) this.updateDte(dd, true);
    this.flushDomain(d);
    return true;
  }

  /** first_pte_l7(): the first of a run of replicated entries, and the page size. */
  private firstPteL7(pte: number): { pte: number; pgsize: bigint; count: number } {
    const pgsize = ptePageSize(this.rd(pte));
    const count = pageSizePteCount(pgsize);
    return { pte: pte - (pte % (count * 8)), pgsize, count };
  }

  /** alloc_pte(): the entry for a page of pgsize at address, building tables down to it. */
  private allocPte(
    d: ProtectionDomain,
    address: bigint,
    pgsize: bigint,
    updated: { v: boolean },
  ): number | null {
    const last = address + pgsize - 1n;
    while (last > pmLevelSize(d.mode) || d.mode - 1 < pageSizeLevel(pgsize))
      if (!this.increaseAddressSpace(d, last, pageSizeLevel(pgsize))) return null;
    let level = d.mode - 1;
    let pte = (d.root as number) + pmLevelIndex(level, address) * 8;
    address &= ~(pgsize - 1n);
    const endLvl = pageSizeLevel(pgsize);
    while (level > endLvl) {
      const v = this.rd(pte);
      const pteLevel = pmPteLevel(v);
      if (present(v) && pteLevel === PAGE_MODE_7_LEVEL) {
        // Replacing a run of replicated entries: tear all of them down.
        const l = this.firstPteL7(pte);
        for (let i = 0; i < l.count; i++)
          if (this.rd(l.pte + i * 8) === v) this.wr(l.pte + i * 8, 0n);
        updated.v = true;
        continue;
      }
      if (!present(v) || pteLevel === PAGE_MODE_NONE) {
        const page = this.allocPage();
        if (page === null) return null;
        this.wr(pte, pmLevelPde(level, page));
        if (present(v)) updated.v = true;
        continue;
      }
      // No level skipping.
      if (pteLevel !== level) return null;
      level--;
      pte = pteAddr(v) + pmLevelIndex(level, address) * 8;
    }
    return pte;
  }

  /** fetch_pte(): the entry mapping address and its page size, or null for a hole above. */
  private fetchPte(d: ProtectionDomain, address: bigint): { pte: number; pgsize: bigint } | null {
    if (d.root === null || address > pmLevelSize(d.mode)) return null;
    let level = d.mode - 1;
    let pte = d.root + pmLevelIndex(level, address) * 8;
    let pgsize = pteLevelPageSize(level);
    while (level > 0) {
      const v = this.rd(pte);
      if (!present(v)) return null;
      const l = pmPteLevel(v);
      if (l === PAGE_MODE_7_LEVEL || l === PAGE_MODE_NONE) break;
      if (l !== level) return null;
      level--;
      pte = pteAddr(v) + pmLevelIndex(level, address) * 8;
      pgsize = pteLevelPageSize(level);
    }
    if (pmPteLevel(this.rd(pte)) === PAGE_MODE_7_LEVEL) {
      const l = this.firstPteL7(pte);
      return { pte: l.pte, pgsize: l.pgsize };
    }
    return { pte, pgsize };
  }

  /** amd_iommu_map_pages() → iommu_v1_map_pages() */
  private mapPages(
    d: ProtectionDomain,
    iova: bigint,
    paddr: bigint,
    pgsize: bigint,
    pgcount: bigint,
    iommuProt: number,
    mapped: { n: bigint },
  ): number {
    if (d.mode === PAGE_MODE_NONE) return err("EINVAL");
    if (!(iommuProt & (IOMMU_READ | IOMMU_WRITE))) return err("EINVAL");
    const updated = { v: false };
    const freelist: number[] = [];
    let ret = 0;
    while (pgcount > 0n) {
      const count = pageSizePteCount(pgsize);
      const pte = this.allocPte(d, iova, pgsize, updated);
      if (pte === null) {
        ret = err("ENOMEM");
        break;
      }
      // free_clear_pte(): whatever was there, and the tables under it, go away.
      for (let i = 0; i < count; i++) {
        const old = this.rd(pte + i * 8);
        this.wr(pte + i * 8, 0n);
        if (!present(old)) continue;
        this.collectSubPt(pteAddr(old), pmPteLevel(old), freelist);
      }
      let v =
        count > 1
          ? pageSizePte(paddr, pgsize) | pmLevelEnc(7) | IOMMU_PTE_PR | IOMMU_PTE_FC
          : paddr | IOMMU_PTE_PR | IOMMU_PTE_FC;
      if (iommuProt & IOMMU_READ) v |= IOMMU_PTE_IR;
      if (iommuProt & IOMMU_WRITE) v |= IOMMU_PTE_IW;
      for (let i = 0; i < count; i++) this.wr(pte + i * 8, v);
      iova += pgsize;
      paddr += pgsize;
      pgcount--;
      mapped.n += pgsize;
    }
    if (updated.v || freelist.length) this.flushDomain(d);
    for (const pa of freelist) this.freePage(pa);
    return ret;
  }

  /** free_sub_pt(): a table of `mode` levels and every table below it, to free. */
  private collectSubPt(pt: number, mode: number, out: number[]): void {
    if (mode === PAGE_MODE_NONE || mode === PAGE_MODE_7_LEVEL) return;
    if (mode > 1)
      for (let i = 0; i < 512; i++) {
        const e = this.rd(pt + i * 8);
        const lvl = pmPteLevel(e);
        if (present(e) && lvl !== 0 && lvl !== 7) this.collectSubPt(pteAddr(e), lvl, out);
      }
    out.push(pt);
  }

  /** amd_iommu_unmap_pages() → iommu_v1_unmap_pages() */
  private unmapPages(
    d: ProtectionDomain,
    iova: bigint,
    pgsize: bigint,
    pgcount: bigint,
    gather: IotlbGather,
  ): bigint {
    if (d.mode === PAGE_MODE_NONE) return 0n;
    const size = pgcount * pgsize;
    const start = iova;
    let unmapped = 0n;
    while (unmapped < size) {
      const f = this.fetchPte(d, iova);
      if (!f) break;
      const count = pageSizePteCount(f.pgsize);
      for (let i = 0; i < count; i++) this.wr(f.pte + i * 8, 0n);
      iova = (iova & ~(f.pgsize - 1n)) + f.pgsize;
      unmapped += f.pgsize;
    }
    if (unmapped) gatherAddRange(gather, start, unmapped);
    return unmapped;
  }

  /** iommu_v1_iova_to_phys() */
  private iovaToPhys(d: ProtectionDomain, iova: bigint): bigint {
    const f = this.fetchPte(d, iova);
    if (!f) return 0n;
    const v = this.rd(f.pte);
    if (!present(v)) return 0n;
    const offsetMask = f.pgsize - 1n;
    return (v & PM_ADDR_MASK & ~offsetMask) | (iova & offsetMask);
  }
}

/** amd_iommu_get_resv_regions(): no IVMD unity maps in the model; MSI window; HT hole. */
function getResvRegions(): ResvRegion[] {
  return [
    {
      start: MSI_RANGE_START,
      length: MSI_RANGE_END - MSI_RANGE_START + 1n,
      prot: 0,
      type: IOMMU_RESV_MSI,
    },
    {
      start: HT_RANGE_START,
      length: HT_RANGE_END - HT_RANGE_START + 1n,
      prot: 0,
      type: IOMMU_RESV_RESERVED,
    },
  ];
}
