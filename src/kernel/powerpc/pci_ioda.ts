/**
 * PowerNV PHB support, arch/powerpc/platforms/powernv/pci-ioda.c and pci-ioda-tce.c
 * (Linux 6.12), for IODA2 PHBs (PHB3/PHB4):
 *
 * - PEs (pnv_pci_configure_bus, pnv_ioda_setup_bus_PE): the root bus gets the PE next to
 *   the reserved one (root_pe_idx), every other bus with devices a PE of its own,
 *   allocated from the top of the PE space down (pnv_ioda_alloc_pe); a PCIe-to-PCI
 *   bridge's bus takes everything below it (BUS_ALL). The RTT is programmed through
 *   opal_pci_set_pe; each device BAR in the M32 window gives its segments to the PE.
 * - DMA setup (pnv_pci_ioda2_setup_dma_pe): the 32-bit window spans 0..m32_pci_base
 *   (tce32_size), DDW page sizes come from ibm,supported-tce-sizes (else 4K|64K, plus
 *   16M|256M on POWER8), two windows, 5 levels at most; the kernel's own default
 *   configuration is a PAGE_SHIFT-page table over min(RAM, ...) with 2 levels at least
 *   and the 64-bit bypass window at 1 << 59. Then iommu_register_group(): one IOMMU group
 *   per PE, named "domain<N>-pe<hex>".
 * - The table group ops (pnv_pci_ioda2_ops) VFIO uses: get_table_size (hardware table and
 *   userspace view, both counted), create_table (window #0 at tce32_start, #1 at the
 *   bypass base), set/unset_window (opal_pci_map_pe_dma_window), take/release_ownership
 *   (drop / restore the kernel's default configuration and bypass).
 * - The TCE table itself (pnv_tce, pnv_tce_xchg): big-endian entries in RAM, lower levels
 *   allocated on first use, an upper-level entry being the next level's address | R | W.
 */
import type { Hardware, PhbDesc } from "../../machine/hw.js";
import { err } from "../../uapi/errno.js";
import { TCE_PCI_READ, TCE_PCI_WRITE } from "../../uapi/papr.js";
import * as R from "../../uapi/pci_regs.js";
import type { PageAllocator } from "../core/page_alloc.js";
import type { IommuDomain, IommuOps } from "../iommu/domain.js";
import { IOMMU_DOMAIN_BLOCKED } from "../iommu/domain.js";
import type { IommuGroup } from "../iommu/iommu.js";
import type { PciDev } from "../pci/pci.js";
import { pciResourceFlags, pciResourceLen, pciResourceStart } from "../pci/resource.js";
import {
  DMA_NONE,
  IOMMU_TABLE_GROUP_MAX_TABLES,
  IommuTable,
  IommuTableGroup,
  iommuDirectionToTcePerm,
  iommuRegisterGroup,
  iommuTceDirection,
  iommuTceTableGet,
  iommuTceTablePut,
  type IommuTableOps,
} from "./iommu.js";

export const POWERNV_IOMMU_DEFAULT_LEVELS = 2;
export const POWERNV_IOMMU_MAX_LEVELS = 5;
/** CONFIG_ARCH_FORCE_MAX_ORDER on 64K-page ppc64 (MAX_PAGE_ORDER). */
const MAX_PAGE_ORDER = 8;

/** struct pnv_ioda_pe (the parts modelled) */
export class PnvPe {
  readonly devices: PciDev[] = [];
  /** The bus number the PE was made for. */
  busNumber = 0;
  all = false;
  /** EEH state bits of struct eeh_pe (eeh.ts). */
  eehState = 0;
  /** pass_dev_cnt: devices of the PE given to a user (eeh_dev_open). */
  passDevCnt = 0;
  tceBypassBase = 1n << 59n;
  tceBypassEnabled = false;
  readonly tableGroup: IommuTableGroup;
  constructor(
    readonly phb: PnvPhb,
    readonly number: number,
    ops: PnvTableGroupOps,
  ) {
    this.tableGroup = new IommuTableGroup(ops);
  }
  get rid(): number {
    return this.busNumber << 8;
  }
}

type PnvTableGroupOps = IommuTableGroup["ops"];

/** struct pnv_phb */
export class PnvPhb {
  readonly pes = new Map<number, PnvPe>();
  private readonly alloc = new Set<number>();
  readonly rootPe: number;
  readonly m32SegSize: number;
  /** The IOMMU page sizes the kernel believes (pnv_ioda_parse_tce_sizes). */
  readonly pgsizes: bigint;
  constructor(
    readonly desc: PhbDesc,
    readonly platform: PowerNv,
  ) {
    this.m32SegSize = Math.floor(desc.m32Size / desc.numPes);
    this.reserve(desc.reservedPe);
    this.rootPe =
      desc.reservedPe === 0
        ? 1
        : desc.reservedPe === desc.numPes - 1
          ? desc.reservedPe - 1
          : desc.reservedPe;
    this.reserve(this.rootPe);
    let mask = 0n;
    if (desc.tceSizesFromDt) for (const s of desc.tceSizes) mask |= 1n << BigInt(s);
    else {
      mask = (1n << 12n) | (1n << 16n);
      if (desc.cpu === "power8") mask |= (1n << 24n) | (1n << 28n);
    }
    this.pgsizes = mask;
  }

  private reserve(n: number): void {
    this.alloc.add(n);
  }

  /** pnv_ioda_alloc_pe(phb, 1): the highest free PE number. */
  allocPe(): number | null {
    for (let pe = this.desc.numPes - 1; pe >= 0; pe--) {
      if (this.alloc.has(pe)) continue;
      this.alloc.add(pe);
      this.platform.hw.opal?.eehFreezeClear(this.desc.index, pe, 3);
      return pe;
    }
    return null;
  }
}

/**
 * The PowerNV platform: its PHBs and PEs, the TCE table operations, the IOMMU ops
 * (spapr_tce_iommu_ops of iommu.c) and the per-group table groups.
 */
export class PowerNv {
  readonly phbs = new Map<number, PnvPhb>();
  private readonly peOfDev = new Map<PciDev, PnvPe>();
  private readonly groupOfPe = new Map<PnvPe, IommuGroup>();
  readonly tableOps: IommuTableOps;
  readonly groupOps: PnvTableGroupOps;
  private configured = false;

  constructor(
    readonly hw: Hardware,
    readonly pages: PageAllocator,
    private readonly devices: () => PciDev[],
  ) {
    for (const d of hw.opal?.phbs() ?? []) this.phbs.set(d.index, new PnvPhb(d, this));
    this.tableOps = this.makeTableOps();
    this.groupOps = this.makeGroupOps();
  }

  get pageShift(): number {
    return this.pages.pageShift;
  }

  peOf(dev: PciDev): PnvPe | null {
    return this.peOfDev.get(dev) ?? null;
  }

  allPes(): PnvPe[] {
    return [...this.phbs.values()].flatMap((p) => [...p.pes.values()]);
  }

  /**
   * pcibios fixup time (pnv_pci_ioda_fixup → pnv_pci_configure_bus, then DMA setup): PEs
   * for every bus, before the IOMMU core probes devices. `allocGroup` is
   * iommu_group_alloc() of the IOMMU core.
   */
  configure(allocGroup: (phb: number) => IommuGroup): void {
    if (this.configured) return;
    this.configured = true;
    const opal = this.hw.opal;
    if (!opal) return;
    const byBus = new Map<string, PciDev[]>();
    for (const d of this.devices()) {
      const k = `${d.bus.domain}:${d.bus.number}`;
      byBus.set(k, [...(byBus.get(k) ?? []), d]);
    }
    for (const devs of byBus.values()) {
      const first = devs[0] as PciDev;
      const phb = this.phbs.get(first.bus.domain);
      if (!phb) continue;
      const bridge = first.bus.self;
      const all = !!bridge && bridge.isPcie() && bridge.pcieType() === R.PCI_EXP_TYPE_PCI_BRIDGE;
      const n = first.bus.isRoot ? phb.rootPe : phb.allocPe();
      if (n === null) continue;
      const pe = new PnvPe(phb, n, this.groupOps);
      pe.busNumber = first.bus.number;
      pe.all = all;
      phb.pes.set(n, pe);
      // pnv_ioda_configure_pe(): the RTT routes the bus's requester IDs to the PE.
      opal.setPe(phb.desc.index, n, pe.rid, true);
      for (const d of devs) {
        pe.devices.push(d);
        this.peOfDev.set(d, pe);
        this.setupPeSeg(phb, pe, d);
      }
      if (first.bus.isRoot) continue; // the root bus's PE has no DMA setup of its own
      this.setupDmaPe(phb, pe);
      const g = allocGroup(phb.desc.index);
      this.groupOfPe.set(pe, g);
      iommuRegisterGroup(pe.tableGroup, g);
    }
  }

  /** pnv_ioda_setup_pe_res() for a device's M32 BARs. */
  private setupPeSeg(phb: PnvPhb, pe: PnvPe, d: PciDev): void {
    for (let bar = 0; bar < 6; bar++) {
      if (!(pciResourceFlags(d, bar) & 0x200)) continue; // IORESOURCE_MEM
      const start = Number(pciResourceStart(d, bar));
      const len = Number(pciResourceLen(d, bar));
      const base = phb.desc.m32PciBase;
      if (len === 0 || start < base || start >= base + phb.desc.m32Size) continue;
      for (let a = start; a < start + len; a += phb.m32SegSize) {
        this.hw.opal?.mapPeMmioWindow(
          phb.desc.index,
          pe.number,
          Math.floor((a - base) / phb.m32SegSize),
        );
      }
    }
  }

  /** pnv_pci_ioda2_setup_dma_pe() */
  private setupDmaPe(phb: PnvPhb, pe: PnvPe): void {
    const tg = pe.tableGroup;
    tg.tce32Start = 0;
    tg.tce32Size = phb.desc.m32PciBase;
    tg.maxDynamicWindowsSupported = IOMMU_TABLE_GROUP_MAX_TABLES;
    tg.maxLevels = POWERNV_IOMMU_MAX_LEVELS;
    tg.pgsizes = phb.pgsizes;
    this.setupDefaultConfig(pe);
  }

  /** pnv_pci_ioda2_setup_default_config(): the kernel's own DMA window and bypass. */
  setupDefaultConfig(pe: PnvPe): number {
    const shift = this.pageShift;
    const ram = this.hw.memory.size;
    const maxMemory = 2 ** Math.floor(Math.log2(ram));
    const maxblock = 2 ** (shift + MAX_PAGE_ORDER);
    const windowSize = Math.min(maxblock * 8 * 2 ** shift, maxMemory);
    const tcesOrder = Math.log2(windowSize / 2 ** shift);
    const levelOrder = Math.log2(maxblock / 8);
    let levels = Math.floor(tcesOrder / levelOrder) + (tcesOrder % levelOrder ? 1 : 0);
    levels = Math.max(levels, POWERNV_IOMMU_DEFAULT_LEVELS);
    const tbl = this.createTable(pe, 0, shift, BigInt(windowSize), levels, false);
    if (typeof tbl !== "number") {
      const rc = this.setWindow(pe.tableGroup, 0, tbl);
      if (rc) iommuTceTablePut(tbl);
    }
    this.setBypass(pe, true);
    return 0;
  }

  /** pnv_pci_ioda2_set_bypass() */
  setBypass(pe: PnvPe, enable: boolean): void {
    const top = 2n ** BigInt(Math.ceil(Math.log2(this.hw.memory.size)));
    const rc = this.hw.opal?.mapPeDmaWindowReal(
      pe.phb.desc.index,
      pe.number,
      (pe.number << 1) + 1,
      pe.tceBypassBase,
      enable ? top : 0n,
    );
    if (rc === 0) pe.tceBypassEnabled = enable;
  }

  /** pnv_pci_ioda2_get_table_size() */
  getTableSize(pageShift: number, windowSize: bigint, levels: number): number {
    if (!levels || levels > POWERNV_IOMMU_MAX_LEVELS || !isPow2(windowSize)) return 0;
    const windowShift = log2(windowSize);
    let entriesShift = windowShift - pageShift;
    let tceTableSize = Math.max(0x1000, 2 ** (entriesShift + 3));
    entriesShift = Math.floor((entriesShift + levels - 1) / levels);
    const tableShift = Math.max(entriesShift + 3, this.pageShift);
    const direct = 2 ** tableShift;
    let bytes = 0;
    for (let l = levels; l; --l) {
      bytes += Math.ceil(tceTableSize / direct) * direct;
      tceTableSize = Math.floor(tceTableSize / direct) * 8;
      tceTableSize = Math.max(tceTableSize, direct);
    }
    return bytes + bytes;
  }

  /** pnv_pci_ioda2_create_table() with pnv_pci_ioda2_table_alloc_pages(). */
  createTable(
    pe: PnvPe,
    num: number,
    pageShift: number,
    windowSize: bigint,
    levels: number,
    userspaceCopy: boolean,
  ): IommuTable | number {
    if (!levels || levels > POWERNV_IOMMU_MAX_LEVELS) return err("EINVAL");
    if (!isPow2(windowSize)) return err("EINVAL");
    const windowShift = log2(windowSize);
    let entriesShift = windowShift - pageShift;
    const tableShift = Math.max(entriesShift + 3, this.pageShift);
    entriesShift = Math.floor((entriesShift + levels - 1) / levels);
    const levelShift = Math.max(entriesShift + 3, this.pageShift);
    if ((levelShift - 3) * levels + pageShift >= 55) return err("EINVAL");
    const tbl = new IommuTable(this.tableOps);
    const top = this.allocLevel(tbl, levelShift);
    if (top === null) return err("ENOMEM");
    // One level: the whole table must have come in that first allocation.
    if (levels === 1 && 2 ** levelShift < 2 ** tableShift) {
      this.tableOps.free(tbl);
      return err("ENOMEM");
    }
    tbl.base = top;
    tbl.pageShift = pageShift;
    const busOffset = num ? pe.tceBypassBase : BigInt(pe.tableGroup.tce32Start);
    tbl.offset = Number(busOffset >> BigInt(pageShift));
    tbl.size = 2 ** tableShift / 8;
    tbl.levelSize = 2 ** (levelShift - 3);
    tbl.indirectLevels = levels - 1;
    tbl.userspace = userspaceCopy ? new Map() : null;
    if (userspaceCopy) tbl.allocatedSize = this.getTableSize(pageShift, windowSize, levels);
    return tbl;
  }

  /** pnv_alloc_tce_level(): a zeroed level of 2^shift bytes, physically contiguous. */
  private allocLevel(tbl: IommuTable, shift: number): number | null {
    const n = Math.max(1, 2 ** shift / this.pages.pageSize);
    const pfn = this.pages.allocContig(n);
    if (pfn === null) return null;
    tbl.pagesUsed.push({ pfn, n });
    return pfn * this.pages.pageSize;
  }

  /** pnv_tce(): the physical address of an entry's TCE, allocating levels when asked. */
  private tceAddr(tbl: IommuTable, idx: number, alloc: boolean): number | null {
    let table = tbl.base;
    let level = tbl.indirectLevels;
    const shift = Math.log2(tbl.levelSize);
    while (level) {
      const n = Math.floor(idx / 2 ** (level * shift)) % tbl.levelSize;
      let tce = readBe64(this.hw, table + n * 8);
      if (!tce) {
        if (!alloc) return null;
        const lower = this.allocLevel(tbl, shift + 3);
        if (lower === null) return null;
        tce = BigInt(lower) | BigInt(TCE_PCI_READ | TCE_PCI_WRITE);
        writeBe64(this.hw, table + n * 8, tce);
      }
      table = Number(tce & ~3n);
      idx %= 2 ** (level * shift);
      level--;
    }
    return table + idx * 8;
  }

  private makeTableOps(): IommuTableOps {
    return {
      /** pnv_tce_xchg() */
      xchgNoKill: (tbl, entry, io) => {
        const idx = entry - tbl.offset;
        // Outside the table C would index past its end; the model refuses instead.
        if (idx < 0 || idx >= tbl.size) return err("EINVAL");
        let newtce = io.hpa | iommuDirectionToTcePerm(io.dir);
        let at: number | null = null;
        if (io.dir === DMA_NONE) {
          at = this.tceAddr(tbl, idx, false);
          if (at === null) {
            io.hpa = 0n;
            return 0;
          }
        }
        at ??= this.tceAddr(tbl, idx, true);
        if (at === null) return err("ENOMEM");
        if (newtce & BigInt(TCE_PCI_WRITE)) newtce |= BigInt(TCE_PCI_READ);
        const old = readBe64(this.hw, at);
        writeBe64(this.hw, at, newtce);
        io.hpa = old & ~BigInt(TCE_PCI_READ | TCE_PCI_WRITE);
        io.dir = iommuTceDirection(old);
        return 0;
      },
      /** pnv_pci_ioda2_tce_invalidate(): one kill per PE the table is linked to. */
      tceKill: (tbl) => {
        for (const g of tbl.groups) {
          const pe = this.peOfGroup(g);
          if (pe) this.hw.opal?.tceKill(pe.phb.desc.index);
        }
      },
      /** pnv_tce_useraddrptr() */
      useraddrptr: (tbl, entry, alloc) => {
        const ua = tbl.userspace;
        if (!ua) return null;
        const idx = entry - tbl.offset;
        if (tbl.indirectLevels) {
          const chunk = Math.floor(idx / tbl.levelSize);
          if (!tbl.userspaceChunks.has(chunk)) {
            if (!alloc) return null;
            tbl.userspaceChunks.add(chunk);
          }
        }
        return { get: () => ua.get(idx) ?? 0n, set: (v) => void ua.set(idx, v) };
      },
      get: (tbl, entry) => {
        const at = this.tceAddr(tbl, entry - tbl.offset, false);
        return at === null ? 0n : readBe64(this.hw, at);
      },
      /** pnv_pci_ioda2_table_free_pages() */
      free: (tbl) => {
        for (const { pfn, n } of tbl.pagesUsed.splice(0))
          for (let i = 0; i < n; i++) this.pages.put(pfn + i);
      },
    };
  }

  private peOfGroup(g: IommuTableGroup): PnvPe | null {
    return this.allPes().find((p) => p.tableGroup === g) ?? null;
  }

  /** pnv_pci_ioda2_set_window() */
  setWindow(tg: IommuTableGroup, num: number, tbl: IommuTable): number {
    const pe = this.peOfGroup(tg);
    if (!pe) return err("ENODEV");
    const size = tbl.indirectLevels ? tbl.levelSize : tbl.size;
    const rc =
      this.hw.opal?.mapPeDmaWindow(
        pe.phb.desc.index,
        pe.number,
        (pe.number << 1) + num,
        tbl.indirectLevels + 1,
        tbl.base,
        size * 8,
        2 ** tbl.pageShift,
      ) ?? -1;
    if (rc) return rc;
    // pnv_pci_link_table_and_group()
    tbl.groups.push(tg);
    tg.tables[num] = iommuTceTableGet(tbl);
    this.hw.opal?.tceKill(pe.phb.desc.index);
    return 0;
  }

  /** pnv_pci_ioda2_unset_window() */
  unsetWindow(tg: IommuTableGroup, num: number): number {
    const pe = this.peOfGroup(tg);
    if (!pe) return err("ENODEV");
    const rc =
      this.hw.opal?.mapPeDmaWindow(
        pe.phb.desc.index,
        pe.number,
        (pe.number << 1) + num,
        0,
        0,
        0,
        0,
      ) ?? -1;
    if (!rc) this.hw.opal?.tceKill(pe.phb.desc.index);
    // pnv_pci_unlink_table_and_group()
    const tbl = tg.tables[num];
    if (tbl) {
      const i = tbl.groups.indexOf(tg);
      if (i >= 0) tbl.groups.splice(i, 1);
      tg.tables[num] = null;
      iommuTceTablePut(tbl);
    }
    return rc;
  }

  private makeGroupOps(): PnvTableGroupOps {
    return {
      getTableSize: (ps, ws, lv) => this.getTableSize(ps, ws, lv),
      createTable: (tg, num, ps, ws, lv) => {
        const pe = this.peOfGroup(tg);
        if (!pe) return err("ENODEV");
        return this.createTable(pe, num, ps, ws, lv, true);
      },
      setWindow: (tg, num, tbl) => this.setWindow(tg, num, tbl),
      unsetWindow: (tg, num) => this.unsetWindow(tg, num),
      /**
       * pnv_ioda2_take_ownership(): unset_window drops the group's reference, the put the
       * creator's (setup_default_config's), so the kernel's default table is freed.
       */
      takeOwnership: (tg) => {
        const pe = this.peOfGroup(tg);
        const tbl = tg.tables[0];
        if (!pe || !tbl) return 0;
        this.setBypass(pe, false);
        this.unsetWindow(tg, 0);
        iommuTceTablePut(tbl);
        return 0;
      },
      /** pnv_ioda2_release_ownership() */
      releaseOwnership: (tg) => {
        const pe = this.peOfGroup(tg);
        if (!pe || tg.tables[0]) return;
        this.setupDefaultConfig(pe);
      },
    };
  }

  /**
   * spapr_tce_iommu_ops (iommu.c): capable() says CACHE_COHERENCY only; the default domain
   * is the static platform domain, the blocked domain takes the table group's ownership
   * (what VFIO's claim of DMA ownership does on POWER), and going back to the platform
   * domain releases it.
   */
  iommuOps(): IommuOps {
    const groupOf = (dev: PciDev) => this.peOf(dev)?.tableGroup ?? null;
    const platform: IommuDomain = {
      type: 0,
      owner: null,
      pgsizeBitmap: 0n,
      geometry: { apertureStart: 0n, apertureEnd: 0n, forceAperture: false },
      ops: {
        attachDev: (_d, dev) => {
          const tg = groupOf(dev);
          if (!tg) return 0;
          // From BLOCKED back to PLATFORM: the first device of the group hands it back.
          if (!tg.tables[0]) tg.ops.releaseOwnership(tg);
          return 0;
        },
      },
    };
    const blocked: IommuDomain = {
      type: IOMMU_DOMAIN_BLOCKED,
      owner: null,
      pgsizeBitmap: 0n,
      geometry: { apertureStart: 0n, apertureEnd: 0n, forceAperture: false },
      ops: {
        attachDev: (_d, dev) => {
          const tg = groupOf(dev);
          return tg ? tg.ops.takeOwnership(tg) : err("EINVAL");
        },
      },
    };
    return {
      name: "spapr-tce",
      capable: (_dev, cap) => cap === "cache-coherency",
      domainAlloc: () => platform,
      blockedDomain: blocked,
      identityDomain: null,
      probeDevice: () => undefined,
      defDomainType: () => 0,
      getResvRegions: () => [],
      pgsizeBitmap: 0n,
      isolatedMsi: () => true,
    };
  }

  /** spapr_tce_iommu_device_group() → pnv_pci_device_group(): the PE's group, or none. */
  deviceGroup(dev: PciDev): IommuGroup | null {
    const pe = this.peOf(dev);
    return pe ? (this.groupOfPe.get(pe) ?? null) : null;
  }

  /** iommu_group_set_name(): "domain%d-pe%lx". */
  groupName(g: IommuGroup): string | null {
    for (const [pe, grp] of this.groupOfPe)
      if (grp === g) return `domain${pe.phb.desc.index}-pe${pe.number.toString(16)}`;
    return null;
  }

  peOfIommuGroup(g: IommuGroup): PnvPe | null {
    for (const [pe, grp] of this.groupOfPe) if (grp === g) return pe;
    return null;
  }
}

function isPow2(x: bigint): boolean {
  return x > 0n && (x & (x - 1n)) === 0n;
}

function log2(x: bigint): number {
  return x.toString(2).length - 1;
}

function readBe64(hw: Hardware, pa: number): bigint {
  const b = hw.memory.read(pa, 8);
  return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, false);
}

function writeBe64(hw: Hardware, pa: number, v: bigint): void {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v), false);
  hw.memory.write(pa, b);
}
