/**
 * The Intel VT-d driver, drivers/iommu/intel/iommu.c (Linux 6.12), in legacy (non-scalable)
 * mode, the distribution default: paging domains use second-level tables written into RAM
 * (512 eight-byte entries a level; bit 0 read, bit 1 write, bit 7 a superpage leaf, bit 11
 * snoop, bits 51:12 the address), created with the 57-bit default width and cut down to
 * the unit's AGAW (CAP.SAGAW, capped by CAP.MGAW) when first attached; superpages follow
 * CAP.SLLPS unless "intel_iommu=sp_off"; SNP goes into every leaf once the domain enforces
 * coherency (ECAP.SC, only possible before the domain has mappings). Attaching a device
 * points the context entry of each of its DMA aliases at the domain's table with a domain
 * ID from the unit's CAP.ND space; the blocking domain clears them; the identity domain
 * makes them pass-through. Interrupt remapping (intel/irq_remapping.c) is on when every
 * unit has ECAP.IR and the command line does not turn it off. A unit in caching mode makes
 * DMA strict (init_dmars()), so default domains are DMA, not DMA-FQ.
 */
import type { Hardware, IommuUnitDesc } from "../../machine/hw.js";
import { err } from "../../uapi/errno.js";
import {
  IOMMU_HW_INFO_TYPE_INTEL_VTD,
  IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17,
  IOMMU_HWPT_ALLOC_DIRTY_TRACKING as HWPT_ALLOC_DIRTY_TRACKING,
  IOMMU_HWPT_ALLOC_NEST_PARENT as HWPT_ALLOC_NEST_PARENT,
} from "../../uapi/iommufd.js";
import type { PageAllocator } from "../core/page_alloc.js";
import type { PciDev } from "../pci/pci.js";
import { pciForEachDmaAlias, pciRealDmaDev } from "../pci/search.js";
import {
  gatherAddRange,
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_DMA,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_DOMAIN_UNMANAGED,
  IOMMU_READ,
  IOMMU_RESV_DIRECT_RELAXABLE,
  IOMMU_RESV_MSI,
  IOMMU_WRITE,
  irqRemapAllowed,
  readPte,
  writePte,
  type IommuDomain,
  type IommuCap,
  type IommuDomainOps,
  type IommuOps,
  type IotlbGather,
  type ResvRegion,
} from "./domain.js";

const DMA_PTE_READ = 1n << 0n;
const DMA_PTE_WRITE = 1n << 1n;
const DMA_PTE_LARGE_PAGE = 1n << 7n;
const DMA_PTE_SNP = 1n << 11n;
const VTD_PAGE_MASK = BigInt.asUintN(64, -1n << 12n);
const LEVEL_STRIDE = 9;
const DEFAULT_DOMAIN_ADDRESS_WIDTH = 57;
const MAX_AGAW_WIDTH = 64;
const IOAPIC_RANGE_START = 0xfee00000n;
const IOAPIC_RANGE_END = 0xfeefffffn;
const PCI_CLASS_BRIDGE_ISA = 0x0601;
const ULONG_MAX = (1n << 64n) - 1n;

const capSagaw = (c: bigint) => Number((c >> 8n) & 0x1fn);
const capMgaw = (c: bigint) => Number((c >> 16n) & 0x3fn) + 1;
const capSuperPageVal = (c: bigint) => Number((c >> 34n) & 0xfn);
/** The domain ID of pass-through context entries, never given to a domain. */
const FLPT_DEFAULT_DID = 1;
export const capNdoms = (c: bigint) => 1 << (4 + 2 * Number(c & 7n));
const capCachingMode = (c: bigint) => ((c >> 7n) & 1n) === 1n;
const ecapScSupport = (e: bigint) => ((e >> 7n) & 1n) === 1n;
const ecapPassThrough = (e: bigint) => ((e >> 6n) & 1n) === 1n;
const ecapIrSupport = (e: bigint) => ((e >> 3n) & 1n) === 1n;
const ecapNest = (e: bigint) => ((e >> 26n) & 1n) === 1n;
const ecapSmts = (e: bigint) => ((e >> 43n) & 1n) === 1n;
const ecapSlads = (e: bigint) => ((e >> 45n) & 1n) === 1n;
const ecapSlts = (e: bigint) => ((e >> 46n) & 1n) === 1n;
const ecapFlts = (e: bigint) => ((e >> 47n) & 1n) === 1n;

const agawToLevel = (agaw: number) => agaw + 2;
const agawToWidth = (agaw: number) => Math.min(30 + agaw * LEVEL_STRIDE, MAX_AGAW_WIDTH);
const widthToAgaw = (width: number) => Math.ceil((width - 30) / LEVEL_STRIDE);
const levelToOffsetBits = (level: number) => BigInt((level - 1) * LEVEL_STRIDE);
const pfnLevelOffset = (pfn: bigint, level: number) =>
  Number((pfn >> levelToOffsetBits(level)) & 511n);
const levelMask = (level: number) => BigInt.asUintN(64, -1n << levelToOffsetBits(level));
const levelSize = (level: number) => 1n << levelToOffsetBits(level);
const alignToLevel = (pfn: bigint, level: number) =>
  BigInt.asUintN(64, pfn + levelSize(level) - 1n) & levelMask(level);
const lvlToNrPages = (lvl: number) => 1n << BigInt(Math.min((lvl - 1) * LEVEL_STRIDE, 52));
const domainMaxAddr = (gaw: number) => (1n << BigInt(gaw)) - 1n;
const domainMaxPfn = (gaw: number) => {
  const p = (1n << BigInt(gaw - 12)) - 1n;
  return p < ULONG_MAX ? p : ULONG_MAX;
};
const present = (v: bigint) => (v & 3n) !== 0n;
const superpage = (v: bigint) => (v & DMA_PTE_LARGE_PAGE) !== 0n;
const pteAddr = (v: bigint) => Number(v & VTD_PAGE_MASK);
const firstPteInPage = (pte: number) => pte % 4096 === 0;

/** struct intel_iommu: one DMAR unit. */
interface IntelIommu {
  desc: IommuUnitDesc;
  agaw: number;
  domainIds: Set<number>;
  ndoms: number;
  /** Present context entries by requester ID, and the domain ID each carries. */
  contexts: Map<number, number>;
}

/** struct device_domain_info */
interface DeviceInfo {
  dev: PciDev;
  iommu: IntelIommu;
  domain: DmarDomain | null;
}

/** struct dmar_domain (second-level only). */
interface DmarDomain extends IommuDomain {
  gaw: number;
  agaw: number;
  /** Physical address of the top-level table (null once freed). */
  pgd: number | null;
  maxAddr: bigint;
  iommuSuperpage: number;
  forceSnooping: boolean;
  setPteSnp: boolean;
  hasMappings: boolean;
  /** Per unit: the domain ID and how many devices of that unit use it. */
  iommus: Map<IntelIommu, { did: number; refcnt: number }>;
  devices: DeviceInfo[];
}

export class IntelIommuDriver {
  readonly ops: IommuOps;
  private readonly iommus = new Map<IommuUnitDesc, IntelIommu>();
  private readonly infos = new Map<PciDev, DeviceInfo>();
  private readonly superpageAllowed: boolean;
  private readonly scalableMode: boolean;
  private readonly irqRemap: boolean;
  private readonly domainOps: IommuDomainOps;

  constructor(
    private readonly hw: Hardware,
    private readonly pages: PageAllocator,
    units: IommuUnitDesc[],
    /** The unit each device sits behind (device_lookup_iommu through the DMAR scopes). */
    private readonly unitOf: (dev: PciDev) => IommuUnitDesc | undefined,
    cmdline: string,
  ) {
    this.superpageAllowed = !intelIommuOptions(cmdline).includes("sp_off");
    this.scalableMode = !intelIommuOptions(cmdline).includes("sm_off");
    // intel_prepare_irq_remapping(): every unit must support it.
    this.irqRemap = irqRemapAllowed(cmdline) && units.every((u) => ecapIrSupport(u.ecap));
    for (const u of units) {
      const agaw = calculateAgaw(u.cap, DEFAULT_DOMAIN_ADDRESS_WIDTH);
      // alloc_iommu(): "Cannot get a valid agaw" leaves the unit unregistered.
      if (agaw < 0) continue;
      // iommu_init_domains(): domain IDs 0 (caching mode's invalid translations) and
      // FLPT_DEFAULT_DID (pass-through and first-level entries) are reserved.
      this.iommus.set(u, {
        desc: u,
        agaw,
        domainIds: new Set([0, FLPT_DEFAULT_DID]),
        ndoms: capNdoms(u.cap),
        contexts: new Map(),
      });
    }
    this.domainOps = {
      attachDev: (d, dev) => this.attachDevice(d as DmarDomain, dev),
      mapPages: (d, iova, paddr, pgsize, pgcount, prot, mapped) =>
        this.mapPages(d as DmarDomain, iova, paddr, pgsize, pgcount, prot, mapped),
      unmapPages: (d, iova, pgsize, pgcount, gather) =>
        this.unmap(d as DmarDomain, iova, pgsize * pgcount, gather),
      iotlbSyncMap: (d) => this.iotlbSyncMap(d as DmarDomain),
      iotlbSync: (d, gather) => this.tlbSync(d as DmarDomain, gather),
      iovaToPhys: (d, iova) => this.iovaToPhys(d as DmarDomain, iova),
      free: (d) => this.domainExit(d as DmarDomain),
      enforceCacheCoherency: (d) => this.enforceCacheCoherency(d as DmarDomain),
    };
    const blocked: IommuDomain = {
      type: IOMMU_DOMAIN_BLOCKED,
      ops: { attachDev: (_d, dev) => (this.blockTranslation(dev), 0) },
      owner: null,
      pgsizeBitmap: 0n,
      geometry: { apertureStart: 0n, apertureEnd: 0n, forceAperture: false },
    };
    const identity: IommuDomain = {
      type: IOMMU_DOMAIN_IDENTITY,
      ops: { attachDev: (_d, dev) => this.identityAttach(dev) },
      owner: null,
      pgsizeBitmap: 0n,
      geometry: { apertureStart: 0n, apertureEnd: 0n, forceAperture: false },
    };
    this.ops = {
      name: "intel-iommu",
      capable: (dev, cap) => this.capable(dev, cap),
      domainAlloc: (type) => this.domainAlloc(type),
      domainAllocUser: (dev, flags, parent, data) =>
        this.domainAllocUser(dev, flags, parent, data !== null),
      hwInfo: (dev) => this.hwInfo(dev),
      blockedDomain: blocked,
      identityDomain: identity,
      probeDevice: (dev) => this.probeDevice(dev),
      defDomainType: (dev) =>
        ecapPassThrough(this.info(dev)?.iommu.desc.ecap ?? 0n) ? 0 : IOMMU_DOMAIN_DMA,
      getResvRegions: (dev) => getResvRegions(dev),
      pgsizeBitmap: 1n << 12n,
      isolatedMsi: () => this.irqRemap,
    };
  }

  /** Whether the driver registered this unit (a unit without a valid AGAW is skipped). */
  handles(unit: IommuUnitDesc): boolean {
    return this.iommus.has(unit);
  }

  /** domains_used_show(): the domain IDs allocated on the unit, the reserved ones included. */
  domainsUsed(unit: IommuUnitDesc): number {
    return this.iommus.get(unit)?.domainIds.size ?? 0;
  }

  private info(dev: PciDev): DeviceInfo | undefined {
    return this.infos.get(dev);
  }

  /** intel_iommu_probe_device() */
  private probeDevice(dev: PciDev): void {
    const unit = this.unitOf(dev);
    const iommu = unit && this.iommus.get(unit);
    if (iommu) this.infos.set(dev, { dev, iommu, domain: null });
  }

  private rd(pa: number): bigint {
    return readPte(this.hw.memory, pa);
  }
  private wr(pa: number, v: bigint): void {
    writePte(this.hw.memory, pa, v);
  }

  /** iommu_alloc_page_node(): a zeroed page, or null. */
  private allocPage(): number | null {
    const pfn = this.pages.alloc();
    return pfn === null ? null : pfn * 4096;
  }
  private freePage(pa: number): void {
    this.pages.put(pa / 4096);
  }

  /**
   * intel_iommu_capable(): coherency always; enforced coherency with ECAP.SC; dirty tracking
   * with scalable-mode second-stage A/D bits (ssads_supported).
   */
  private capable(dev: PciDev, cap: IommuCap): boolean {
    const iommu = this.info(dev)?.iommu;
    if (cap === "cache-coherency") return true;
    if (!iommu) return false;
    if (cap === "enforce-cache-coherency") return ecapScSupport(iommu.desc.ecap);
    return this.smSupported(iommu) && ecapSlads(iommu.desc.ecap);
  }

  /**
   * init_dmars(): a unit in caching mode (CAP.CM) makes DMA strict unless DMA domains use
   * first-level tables ("IOMMU batching disallowed due to virtualization");
   * iommu_set_dma_strict() turns a DMA-FQ default domain type into DMA.
   */
  get dmaStrict(): boolean {
    const units = [...this.iommus.values()];
    return units.some((u) => capCachingMode(u.desc.cap)) && !this.firstLevelByDefault(units);
  }

  /**
   * first_level_by_default(IOMMU_DOMAIN_DMA): only second-level tables in legacy mode; in
   * scalable mode (scalable_mode_support(): every unit SMTS) the one level every unit
   * has (intel_cap_{f,s}lts_sanity), first-level when both.
   */
  private firstLevelByDefault(units: IntelIommu[]): boolean {
    if (!this.scalableMode || !units.every((u) => ecapSmts(u.desc.ecap))) return false;
    const flts = units.every((u) => ecapFlts(u.desc.ecap));
    const slts = units.every((u) => ecapSlts(u.desc.ecap));
    return flts !== slts ? flts : true;
  }

  /** sm_supported(): scalable mode unless "intel_iommu=sm_off" (SCALABLE_MODE_DEFAULT_ON=y). */
  private smSupported(iommu: IntelIommu): boolean {
    return this.scalableMode && ecapSmts(iommu.desc.ecap);
  }

  /**
   * intel_iommu_domain_alloc_user() → paging_domain_alloc(dev, false): a second-stage
   * domain sized for the device's unit from the start (its AGAW and MGAW, its superpages).
   * Nested parents need ECAP.NEST and dirty tracking SLADS, both in scalable mode;
   * nested domains themselves (a parent given) need nesting support too.
   */
  private domainAllocUser(
    dev: PciDev,
    flags: number,
    parent: IommuDomain | null,
    hasUserData: boolean,
  ): IommuDomain | number {
    const info = this.info(dev);
    if (!info) return err("ENODEV");
    const { iommu } = info;
    const nested = this.smSupported(iommu) && ecapNest(iommu.desc.ecap);
    if (parent) return err("EOPNOTSUPP"); // !nested_supported() on every unit modelled
    if (flags & ~(HWPT_ALLOC_NEST_PARENT | HWPT_ALLOC_DIRTY_TRACKING)) return err("EOPNOTSUPP");
    if (flags & HWPT_ALLOC_NEST_PARENT && !nested) return err("EOPNOTSUPP");
    const ssads = this.smSupported(iommu) && ecapSlads(iommu.desc.ecap);
    if (hasUserData || (flags & HWPT_ALLOC_DIRTY_TRACKING && !ssads)) return err("EOPNOTSUPP");
    const pgd = this.allocPage();
    if (pgd === null) return err("ENOMEM");
    const gaw = Math.min(agawToWidth(iommu.agaw), capMgaw(iommu.desc.cap));
    const sp = this.superpageAllowed ? capSuperPageVal(iommu.desc.cap).toString(2).length : 0;
    const d: DmarDomain = {
      type: IOMMU_DOMAIN_UNMANAGED,
      ops: this.domainOps,
      owner: this.ops,
      pgsizeBitmap: (1n << 12n) | (sp === 1 ? 1n << 21n : sp >= 2 ? (1n << 21n) | (1n << 30n) : 0n),
      geometry: { apertureStart: 0n, apertureEnd: domainMaxAddr(gaw), forceAperture: true },
      gaw,
      agaw: iommu.agaw,
      pgd,
      maxAddr: domainMaxAddr(gaw),
      iommuSuperpage: sp,
      forceSnooping: false,
      setPteSnp: false,
      hasMappings: false,
      iommus: new Map(),
      devices: [],
    };
    return d;
  }

  /** intel_iommu_hw_info(): struct iommu_hw_info_vtd with the raw CAP and ECAP registers. */
  private hwInfo(dev: PciDev): { type: number; data: Uint8Array } | number {
    const iommu = this.info(dev)?.iommu;
    if (!iommu) return err("ENODEV");
    const data = new Uint8Array(24);
    const dv = new DataView(data.buffer);
    dv.setUint32(0, IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17, true);
    dv.setBigUint64(8, iommu.desc.cap, true);
    dv.setBigUint64(16, iommu.desc.ecap, true);
    return { type: IOMMU_HW_INFO_TYPE_INTEL_VTD, data };
  }

  /** intel_iommu_domain_alloc(): DMA and unmanaged domains (alloc_domain + md_domain_init). */
  private domainAlloc(type: number): IommuDomain | null {
    if (type !== IOMMU_DOMAIN_DMA && type !== IOMMU_DOMAIN_UNMANAGED) return null;
    const pgd = this.allocPage();
    if (pgd === null) return null;
    const gaw = DEFAULT_DOMAIN_ADDRESS_WIDTH;
    const domain: DmarDomain = {
      type,
      ops: this.domainOps,
      owner: null,
      pgsizeBitmap: 0n,
      geometry: { apertureStart: 0n, apertureEnd: domainMaxAddr(gaw), forceAperture: true },
      gaw,
      agaw: widthToAgaw(gaw),
      pgd,
      maxAddr: 0n,
      iommuSuperpage: 0,
      forceSnooping: false,
      setPteSnp: false,
      hasMappings: false,
      iommus: new Map(),
      devices: [],
    };
    return domain;
  }

  /** domain_exit(): unmap everything and free every table page. */
  private domainExit(d: DmarDomain): void {
    if (d.pgd === null) return;
    const freelist: number[] = [];
    this.domainUnmap(d, 0n, domainMaxPfn(d.gaw), freelist);
    for (const pa of freelist) this.freePage(pa);
  }

  /** domain_update_iommu_cap(): superpages common to every unit, aperture from the width. */
  private updateIommuCap(d: DmarDomain): void {
    let mask = 0x3;
    if (!this.superpageAllowed) mask = 0;
    for (const iommu of this.iommus.values()) mask &= capSuperPageVal(iommu.desc.cap);
    d.iommuSuperpage = mask ? mask.toString(2).length : 0;
    d.geometry.apertureEnd = domainMaxAddr(d.gaw);
    if (d.iommuSuperpage === 1) d.pgsizeBitmap |= 1n << 21n;
    else if (d.iommuSuperpage === 2) d.pgsizeBitmap |= (1n << 21n) | (1n << 30n);
  }

  /** domain_attach_iommu(): a domain ID on this unit (ENOSPC when CAP.ND is used up). */
  private domainAttachIommu(d: DmarDomain, iommu: IntelIommu): number {
    const cur = d.iommus.get(iommu);
    if (cur) {
      cur.refcnt++;
      return 0;
    }
    let did = 0;
    while (did < iommu.ndoms && iommu.domainIds.has(did)) did++;
    if (did >= iommu.ndoms) return err("ENOSPC");
    iommu.domainIds.add(did);
    d.iommus.set(iommu, { did, refcnt: 1 });
    this.updateIommuCap(d);
    return 0;
  }

  /** domain_detach_iommu() */
  private domainDetachIommu(d: DmarDomain, iommu: IntelIommu): void {
    const cur = d.iommus.get(iommu);
    if (!cur || --cur.refcnt) return;
    iommu.domainIds.delete(cur.did);
    d.iommus.delete(iommu);
    this.updateIommuCap(d);
  }

  /** The requester IDs a device's DMA can carry (pci_for_each_dma_alias). */
  private aliases(dev: PciDev): number[] {
    const rids: number[] = [];
    pciForEachDmaAlias(dev, (s) => {
      rids.push(s.rid);
      return false;
    });
    return rids;
  }

  /** domain_context_clear_one() for every alias. */
  private contextClear(info: DeviceInfo): void {
    const { iommu } = info;
    for (const rid of this.aliases(info.dev)) {
      const did = iommu.contexts.get(rid);
      if (did === undefined) continue;
      iommu.contexts.delete(rid);
      this.hw.iommu.setTranslation(iommu.desc.name, iommu.desc.segment, rid, null);
      this.hw.iommu.flushIotlb(iommu.desc.name, did);
    }
  }

  /** device_block_translation() */
  private blockTranslation(dev: PciDev): void {
    const info = this.info(dev);
    if (!info) return;
    if (pciRealDmaDev(dev) === dev) this.contextClear(info);
    const d = info.domain;
    if (!d) return;
    d.devices.splice(d.devices.indexOf(info), 1);
    this.domainDetachIommu(d, info.iommu);
    info.domain = null;
  }

  /** identity_domain_attach_dev(): pass-through context entries (context_setup_pass_through). */
  private identityAttach(dev: PciDev): number {
    this.blockTranslation(dev);
    const info = this.info(dev);
    if (!info || pciRealDmaDev(dev) !== dev) return 0;
    const { iommu } = info;
    for (const rid of this.aliases(dev)) {
      if (iommu.contexts.has(rid)) continue;
      iommu.contexts.set(rid, FLPT_DEFAULT_DID);
      this.hw.iommu.setTranslation(iommu.desc.name, iommu.desc.segment, rid, "passthrough");
    }
    return 0;
  }

  /** intel_iommu_attach_device() */
  private attachDevice(d: DmarDomain, dev: PciDev): number {
    this.blockTranslation(dev);
    const info = this.info(dev);
    if (!info) return err("ENODEV");
    const { iommu } = info;
    // prepare_domain_attach_device()
    if (d.forceSnooping && !ecapScSupport(iommu.desc.ecap)) return err("EINVAL");
    const addrWidth = Math.min(agawToWidth(iommu.agaw), capMgaw(iommu.desc.cap));
    if (d.maxAddr > 1n << BigInt(addrWidth)) return err("EINVAL");
    d.gaw = addrWidth;
    while (iommu.agaw < d.agaw && d.pgd !== null) {
      const top = d.pgd;
      const v = this.rd(top);
      if (present(v)) {
        d.pgd = pteAddr(v);
        this.freePage(top);
      }
      d.agaw--;
    }
    // dmar_domain_attach_device()
    const r = this.domainAttachIommu(d, iommu);
    if (r) return r;
    info.domain = d;
    d.devices.unshift(info);
    if (pciRealDmaDev(dev) !== dev) return 0;
    const ret = this.contextMapping(d, info);
    if (ret) this.blockTranslation(dev);
    return ret;
  }

  /** domain_context_mapping_one() for every alias. */
  private contextMapping(d: DmarDomain, info: DeviceInfo): number {
    const { iommu } = info;
    const did = (d.iommus.get(iommu) as { did: number }).did;
    for (const rid of this.aliases(info.dev)) {
      if (iommu.contexts.has(rid)) continue;
      // Skip top levels for a unit with a smaller AGAW than the domain's.
      let pgd = d.pgd as number;
      let agaw = d.agaw;
      for (; agaw > iommu.agaw; agaw--) {
        const v = this.rd(pgd);
        if (!present(v)) return err("ENOMEM");
        pgd = pteAddr(v);
      }
      iommu.contexts.set(rid, did);
      this.hw.iommu.setTranslation(iommu.desc.name, iommu.desc.segment, rid, {
        root: pgd,
        levels: agawToLevel(agaw),
        domainId: did,
      });
      this.hw.iommu.flushIotlb(iommu.desc.name, did);
    }
    return 0;
  }

  /** intel_iommu_enforce_cache_coherency() */
  private enforceCacheCoherency(d: DmarDomain): boolean {
    if (d.forceSnooping) return true;
    if (!d.devices.every((i) => ecapScSupport(i.iommu.desc.ecap)) || d.hasMappings) return false;
    // domain_set_force_snooping(): per-PTE snoop control on second-level tables.
    d.setPteSnp = true;
    d.forceSnooping = true;
    return true;
  }

  /** domain_pfn_supported() */
  private pfnSupported(d: DmarDomain, pfn: bigint): boolean {
    const addrWidth = agawToWidth(d.agaw) - 12;
    return !(addrWidth < 64 && pfn >> BigInt(addrWidth));
  }

  /**
   * pfn_to_dma_pte(): the entry for pfn at `level.v` (allocating tables down to it), or,
   * with level 0, the lowest present entry (a leaf, or the first hole); null when pfn is
   * beyond the width or no page was left for a table.
   */
  private pfnToDmaPte(d: DmarDomain, pfn: bigint, target: { v: number }): number | null {
    if (!this.pfnSupported(d, pfn) || d.pgd === null) return null;
    let level = agawToLevel(d.agaw);
    let parent = d.pgd;
    let pte: number;
    while (true) {
      pte = parent + pfnLevelOffset(pfn, level) * 8;
      let v = this.rd(pte);
      if (!target.v && (superpage(v) || !present(v))) break;
      if (level === target.v) break;
      if (!present(v)) {
        const page = this.allocPage();
        if (page === null) return null;
        v = BigInt(page) | DMA_PTE_READ | DMA_PTE_WRITE;
        this.wr(pte, v);
      }
      if (level === 1) break;
      parent = pteAddr(v);
      level--;
    }
    if (!target.v) target.v = level;
    return pte;
  }

  /** dma_pfn_level_pte(): the entry at `level`, or where the walk met a hole or superpage. */
  private dmaPfnLevelPte(
    d: DmarDomain,
    pfn: bigint,
    level: number,
    largePage: { v: number },
  ): number | null {
    let total = agawToLevel(d.agaw);
    let parent = d.pgd as number;
    while (level <= total) {
      const pte = parent + pfnLevelOffset(pfn, total) * 8;
      if (level === total) return pte;
      const v = this.rd(pte);
      if (!present(v)) {
        largePage.v = total;
        break;
      }
      if (superpage(v)) {
        largePage.v = total;
        return pte;
      }
      parent = pteAddr(v);
      total--;
    }
    return null;
  }

  /** dma_pte_clear_range(): clear the leaves of [start, last]. */
  private clearRange(d: DmarDomain, start: bigint, last: bigint): void {
    do {
      const largePage = { v: 1 };
      let pte = this.dmaPfnLevelPte(d, start, 1, largePage);
      if (pte === null) {
        start = alignToLevel(start + 1n, largePage.v + 1);
        continue;
      }
      do {
        this.wr(pte, 0n);
        start += lvlToNrPages(largePage.v);
        pte += 8;
      } while (start <= last && !firstPteInPage(pte));
    } while (start && start <= last);
  }

  /** dma_pte_free_level(): free tables below retainLevel that [start, last] covers whole. */
  private freeLevel(
    d: DmarDomain,
    level: number,
    retainLevel: number,
    table: number,
    pfn: bigint,
    start: bigint,
    last: bigint,
  ): void {
    if (pfn < start) pfn = start;
    let pte = table + pfnLevelOffset(pfn, level) * 8;
    do {
      const v = this.rd(pte);
      if (present(v) && !superpage(v)) {
        const levelPfn = pfn & levelMask(level);
        const levelPte = pteAddr(v);
        if (level > 2) this.freeLevel(d, level - 1, retainLevel, levelPte, levelPfn, start, last);
        if (level < retainLevel && !(start > levelPfn || last < levelPfn + levelSize(level) - 1n)) {
          this.wr(pte, 0n);
          this.freePage(levelPte);
        }
      }
      pfn += levelSize(level);
      pte += 8;
    } while (!firstPteInPage(pte) && pfn <= last);
  }

  /** dma_pte_free_pagetable() */
  private freePagetable(d: DmarDomain, start: bigint, last: bigint, retainLevel: number): void {
    this.clearRange(d, start, last);
    this.freeLevel(d, agawToLevel(d.agaw), retainLevel, d.pgd as number, 0n, start, last);
    if (start === 0n && last === domainMaxPfn(d.gaw)) {
      this.freePage(d.pgd as number);
      d.pgd = null;
    }
  }

  /** dma_pte_list_pagetables(): a table and every table below it go on the freelist. */
  private listPagetables(level: number, v: bigint, freelist: number[]): void {
    const pg = pteAddr(v);
    freelist.push(pg);
    if (level === 1) return;
    for (let i = 0; i < 512; i++) {
      const e = this.rd(pg + i * 8);
      if (present(e) && !superpage(e)) this.listPagetables(level - 1, e, freelist);
    }
  }

  /** dma_pte_clear_level() */
  private clearLevel(
    d: DmarDomain,
    level: number,
    table: number,
    pfn: bigint,
    start: bigint,
    last: bigint,
    freelist: number[],
  ): void {
    if (pfn < start) pfn = start;
    let pte = table + pfnLevelOffset(pfn, level) * 8;
    do {
      const levelPfn = pfn & levelMask(level);
      const v = this.rd(pte);
      if (present(v)) {
        if (start <= levelPfn && last >= levelPfn + levelSize(level) - 1n) {
          if (level > 1 && !superpage(v)) this.listPagetables(level - 1, v, freelist);
          this.wr(pte, 0n);
        } else if (level > 1) {
          this.clearLevel(d, level - 1, pteAddr(v), levelPfn, start, last, freelist);
        }
      }
      pfn = levelPfn + levelSize(level);
      pte += 8;
    } while (!firstPteInPage(pte) && pfn <= last);
  }

  /** domain_unmap(): clear [start, last]; emptied tables go on the freelist. */
  private domainUnmap(d: DmarDomain, start: bigint, last: bigint, freelist: number[]): void {
    if (d.pgd === null || !this.pfnSupported(d, last) || start > last) return;
    this.clearLevel(d, agawToLevel(d.agaw), d.pgd, 0n, start, last, freelist);
    if (start === 0n && last === domainMaxPfn(d.gaw)) {
      freelist.push(d.pgd);
      d.pgd = null;
    }
  }

  /** hardware_largepage_caps(): the largest level both addresses and the length allow. */
  private largepageCaps(d: DmarDomain, iovPfn: bigint, physPfn: bigint, pages: bigint): number {
    let support = d.iommuSuperpage;
    let level = 1;
    let pfnmerge = iovPfn | physPfn;
    while (support && !(pfnmerge & 511n)) {
      pages >>= 9n;
      if (!pages) break;
      pfnmerge >>= 9n;
      level++;
      support--;
    }
    return level;
  }

  /** switch_to_super_page(): small-page tables under the new superpages go away. */
  private switchToSuperPage(d: DmarDomain, start: bigint, end: bigint, level: number): void {
    const lvlPages = lvlToNrPages(level);
    let pte: number | null = null;
    while (start <= end) {
      if (pte === null) pte = this.pfnToDmaPte(d, start, { v: level }) as number;
      if (present(this.rd(pte))) {
        this.freePagetable(d, start, start + lvlPages - 1n, level + 1);
        this.flushDomain(d);
      }
      pte += 8;
      start += lvlPages;
      if (firstPteInPage(pte)) pte = null;
    }
  }

  /** __domain_mapping() */
  private domainMapping(
    d: DmarDomain,
    iovPfn: bigint,
    physPfn: bigint,
    nrPages: bigint,
    prot: bigint,
  ): number {
    if (!this.pfnSupported(d, iovPfn + nrPages - 1n)) return err("EINVAL");
    if ((prot & (DMA_PTE_READ | DMA_PTE_WRITE)) === 0n) return err("EINVAL");
    d.hasMappings = true;
    let pteval = (physPfn << 12n) | (prot & (DMA_PTE_READ | DMA_PTE_WRITE | DMA_PTE_SNP));
    let pte: number | null = null;
    let level = 0;
    let lvlPages = 0n;
    while (nrPages > 0n) {
      if (pte === null) {
        level = this.largepageCaps(d, iovPfn, physPfn, nrPages);
        pte = this.pfnToDmaPte(d, iovPfn, { v: level });
        if (pte === null) return err("ENOMEM");
        lvlPages = lvlToNrPages(level);
        if (level > 1) {
          pteval |= DMA_PTE_LARGE_PAGE;
          const toNextPage = firstPteInPage(pte) ? 512 : (4096 - (pte % 4096)) / 8;
          const toRemove =
            nrPages < BigInt(toNextPage) * lvlPages ? nrPages : BigInt(toNextPage) * lvlPages;
          this.switchToSuperPage(d, iovPfn, iovPfn + toRemove - 1n, level);
        } else {
          pteval &= ~DMA_PTE_LARGE_PAGE;
        }
      }
      // cmpxchg from 0: an entry already set is left alone (the kernel WARNs).
      if (this.rd(pte) === 0n) this.wr(pte, pteval);
      nrPages -= lvlPages;
      iovPfn += lvlPages;
      physPfn += lvlPages;
      pteval += lvlPages << 12n;
      pte += 8;
      if (!nrPages || firstPteInPage(pte) || (level > 1 && nrPages < lvlPages)) pte = null;
    }
    return 0;
  }

  /** intel_iommu_map_pages() → intel_iommu_map() */
  private mapPages(
    d: DmarDomain,
    iova: bigint,
    paddr: bigint,
    pgsize: bigint,
    pgcount: bigint,
    iommuProt: number,
    mapped: { n: bigint },
  ): number {
    if (pgsize !== 1n << 12n && pgsize !== 1n << 21n && pgsize !== 1n << 30n) return err("EINVAL");
    if ((iova | paddr) & (pgsize - 1n)) return err("EINVAL");
    const size = pgcount * pgsize;
    let prot = 0n;
    if (iommuProt & IOMMU_READ) prot |= DMA_PTE_READ;
    if (iommuProt & IOMMU_WRITE) prot |= DMA_PTE_WRITE;
    if (d.setPteSnp) prot |= DMA_PTE_SNP;
    const maxAddr = iova + size;
    if (d.maxAddr < maxAddr) {
      if (domainMaxAddr(d.gaw) + 1n < maxAddr) return err("EFAULT");
      d.maxAddr = maxAddr;
    }
    const r = this.domainMapping(d, iova >> 12n, paddr >> 12n, size >> 12n, prot);
    if (!r) mapped.n += size;
    return r;
  }

  /** intel_iommu_unmap(): a superpage goes whole, so more than asked may be unmapped. */
  private unmap(d: DmarDomain, iova: bigint, size: bigint, gather: IotlbGather): bigint {
    const level = { v: 0 };
    if (this.pfnToDmaPte(d, iova >> 12n, level) === null) return 0n;
    const leaf = 4096n << levelToOffsetBits(level.v);
    if (size < leaf) size = leaf;
    this.domainUnmap(d, iova >> 12n, (iova + size - 1n) >> 12n, gather.freelist);
    if (d.maxAddr === iova + size) d.maxAddr = iova;
    gatherAddRange(gather, iova, size);
    return size;
  }

  /** Invalidate the domain's IOTLB entries on every unit it is attached to. */
  private flushDomain(d: DmarDomain): void {
    for (const [iommu, { did }] of d.iommus) this.hw.iommu.flushIotlb(iommu.desc.name, did);
  }

  /** intel_iommu_tlb_sync(): flush, then free the table pages the unmap released. */
  private tlbSync(d: DmarDomain, gather: IotlbGather): void {
    this.flushDomain(d);
    for (const pa of gather.freelist) this.freePage(pa);
  }

  /** intel_iommu_iotlb_sync_map(): non-present entries are cached only in caching mode. */
  private iotlbSyncMap(d: DmarDomain): number {
    for (const [iommu, { did }] of d.iommus)
      if (capCachingMode(iommu.desc.cap)) this.hw.iommu.flushIotlb(iommu.desc.name, did);
    return 0;
  }

  /** intel_iommu_iova_to_phys() */
  private iovaToPhys(d: DmarDomain, iova: bigint): bigint {
    const level = { v: 0 };
    const pte = this.pfnToDmaPte(d, iova >> 12n, level);
    if (pte === null) return 0n;
    const v = this.rd(pte);
    if (!present(v)) return 0n;
    const offsetMask = (1n << (levelToOffsetBits(level.v) + 12n)) - 1n;
    return (v & VTD_PAGE_MASK) + (iova & offsetMask);
  }
}

/** __iommu_calculate_agaw(): the largest AGAW up to maxGaw the unit supports (SAGAW). */
function calculateAgaw(cap: bigint, maxGaw: number): number {
  const sagaw = capSagaw(cap);
  let agaw = widthToAgaw(maxGaw);
  for (; agaw >= 0; agaw--) if ((sagaw >> agaw) & 1) break;
  return agaw;
}

/** intel_iommu_get_resv_regions(): no RMRRs in the model's DMAR; floppy WA; the MSI window. */
function getResvRegions(dev: PciDev): ResvRegion[] {
  const out: ResvRegion[] = [];
  if (dev.class >> 8 === PCI_CLASS_BRIDGE_ISA)
    out.push({
      start: 0n,
      length: 1n << 24n,
      prot: Number(DMA_PTE_READ | DMA_PTE_WRITE),
      type: IOMMU_RESV_DIRECT_RELAXABLE,
    });
  out.push({
    start: IOAPIC_RANGE_START,
    length: IOAPIC_RANGE_END - IOAPIC_RANGE_START + 1n,
    prot: 0,
    type: IOMMU_RESV_MSI,
  });
  return out;
}

/** The options of every "intel_iommu=" word (intel_iommu_setup()). */
function intelIommuOptions(cmdline: string): string[] {
  return cmdline
    .split(/\s+/)
    .filter((w) => w.startsWith("intel_iommu="))
    .flatMap((w) => w.slice("intel_iommu=".length).split(","));
}
