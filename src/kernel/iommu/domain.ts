/**
 * IOMMU domains, the domain API of drivers/iommu/iommu.c (Linux 6.12): a driver's
 * struct iommu_ops allocates paging domains (or hands out its static blocking and identity
 * domains); a group's devices are attached to one domain at a time
 * (__iommu_group_set_domain_internal), which is the default domain, the blocking domain
 * while a user owns the group's DMA, or a domain the user attached; iommu_map/iommu_unmap
 * split a range into the largest page sizes the domain supports (iommu_pgsize); a group's
 * reserved regions are its devices' regions, sorted, with overlapping ones of a type merged.
 *
 * Drivers (intel.ts, amd.ts) write their page tables into RAM; the helpers at the end read
 * and write one 64-bit table entry.
 */
import type { MemoryAccess } from "../../machine/hw.js";
import { err } from "../../uapi/errno.js";
import type { PciDev } from "../pci/pci.js";
import type { IommuGroup } from "./iommu.js";

/* Mapping protection (include/linux/iommu.h). */
export const IOMMU_READ = 1 << 0;
export const IOMMU_WRITE = 1 << 1;
export const IOMMU_CACHE = 1 << 2;

/* Domain types. */
const __IOMMU_DOMAIN_PAGING = 1 << 0;
const __IOMMU_DOMAIN_DMA_API = 1 << 1;
const __IOMMU_DOMAIN_PT = 1 << 2;
const __IOMMU_DOMAIN_DMA_FQ = 1 << 3;
export const IOMMU_DOMAIN_BLOCKED = 0;
export const IOMMU_DOMAIN_IDENTITY = __IOMMU_DOMAIN_PT;
export const IOMMU_DOMAIN_UNMANAGED = __IOMMU_DOMAIN_PAGING;
export const IOMMU_DOMAIN_DMA = __IOMMU_DOMAIN_PAGING | __IOMMU_DOMAIN_DMA_API;
export const IOMMU_DOMAIN_DMA_FQ = IOMMU_DOMAIN_DMA | __IOMMU_DOMAIN_DMA_FQ;
const IOMMU_DOMAIN_ALLOC_FLAGS = ~__IOMMU_DOMAIN_DMA_FQ;

/* enum iommu_resv_type, in its order (iommu_insert_resv_region sorts by it). */
export const IOMMU_RESV_DIRECT = 0;
export const IOMMU_RESV_DIRECT_RELAXABLE = 1;
export const IOMMU_RESV_RESERVED = 2;
export const IOMMU_RESV_MSI = 3;
export const IOMMU_RESV_SW_MSI = 4;

export interface ResvRegion {
  start: bigint;
  length: bigint;
  prot: number;
  type: number;
}

export type IommuCap = "cache-coherency" | "enforce-cache-coherency" | "dirty-tracking";

/** struct iommu_dirty_ops: dirty tracking of a paging domain (IOMMU_HWPT_ALLOC_DIRTY_TRACKING). */
export interface IommuDirtyOps {
  setDirtyTracking(domain: IommuDomain, enable: boolean): number;
  /** Report (and unless noClear, clear) the dirty IOVA pages of [iova, iova + size). */
  readAndClearDirty(
    domain: IommuDomain,
    iova: bigint,
    size: bigint,
    noClear: boolean,
    record: (iova: bigint, length: bigint) => void,
  ): number;
}

/** struct iommu_user_data: a driver-specific block from userspace (HWPT_ALLOC). */
export interface IommuUserData {
  type: number;
  len: number;
  /** What iommu_copy_struct_from_user() reads: the block, or null when it faults. */
  bytes: Uint8Array | null;
}

/** struct iommu_iotlb_gather: the range to invalidate and the table pages to free after. */
export interface IotlbGather {
  start: bigint;
  end: bigint;
  freelist: number[];
}

/** struct iommu_domain_ops (the parts the model uses). */
export interface IommuDomainOps {
  attachDev?(domain: IommuDomain, dev: PciDev): number;
  /** Returns -errno or 0; `mapped` grows by what was mapped even on failure. */
  mapPages?(
    domain: IommuDomain,
    iova: bigint,
    paddr: bigint,
    pgsize: bigint,
    pgcount: bigint,
    prot: number,
    mapped: { n: bigint },
  ): number;
  unmapPages?(
    domain: IommuDomain,
    iova: bigint,
    pgsize: bigint,
    pgcount: bigint,
    gather: IotlbGather,
  ): bigint;
  iotlbSyncMap?(domain: IommuDomain, iova: bigint, size: bigint): number;
  iotlbSync?(domain: IommuDomain, gather: IotlbGather): void;
  iovaToPhys?(domain: IommuDomain, iova: bigint): bigint;
  free?(domain: IommuDomain): void;
  enforceCacheCoherency?(domain: IommuDomain): boolean;
  /** cache_invalidate_user (nested domains): entries handled, or -errno with how many. */
  cacheInvalidateUser?(
    domain: IommuDomain,
    type: number,
    entries: Uint8Array[],
  ): { rc: number; done: number };
}

/** struct iommu_domain */
export interface IommuDomain {
  type: number;
  ops: IommuDomainOps;
  /** The driver that allocated it (null for a driver's static domains). */
  owner: IommuOps | null;
  pgsizeBitmap: bigint;
  geometry: { apertureStart: bigint; apertureEnd: bigint; forceAperture: boolean };
  /** Set by drivers whose domain tracks dirty IOVA pages. */
  dirtyOps?: IommuDirtyOps;
}

/** struct iommu_ops, one per driver, and what its interrupt-remapping half reports. */
export interface IommuOps {
  readonly name: string;
  capable(dev: PciDev, cap: IommuCap): boolean;
  /** ops->domain_alloc(type): null when the type is not supported or memory ran out. */
  domainAlloc(type: number): IommuDomain | null;
  readonly blockedDomain: IommuDomain | null;
  readonly identityDomain: IommuDomain | null;
  /** ops->probe_device: the driver learns the device (its unit, requester IDs). */
  probeDevice(dev: PciDev): void;
  /** ops->def_domain_type: a type the device needs, or 0. */
  defDomainType(dev: PciDev): number;
  getResvRegions(dev: PciDev): ResvRegion[];
  readonly pgsizeBitmap: bigint;
  /**
   * msi_device_has_isolated_msi(): the device's MSI parent is the driver's interrupt
   * remapping domain, which sets IRQ_DOMAIN_FLAG_ISOLATED_MSI (x86 has no
   * arch_is_isolated_msi()).
   */
  isolatedMsi(dev: PciDev): boolean;
  /**
   * ops->domain_alloc_user (iommufd's HWPT_ALLOC and automatic domains): a paging domain
   * for the device, or a nested one over `parent`; -errno (EOPNOTSUPP for what the unit
   * cannot do).
   */
  domainAllocUser?(
    dev: PciDev,
    flags: number,
    parent: IommuDomain | null,
    userData: IommuUserData | null,
  ): IommuDomain | number;
  /** ops->hw_info (IOMMU_GET_HW_INFO): the driver's data block and its type. */
  hwInfo?(dev: PciDev): { type: number; data: Uint8Array } | number;
}

const U64 = (1n << 64n) - 1n;
const u64 = (x: bigint) => BigInt.asUintN(64, x);

/** __ffs / __fls of a non-zero 64-bit value. */
export function ffs(x: bigint): number {
  // The lowest set bit alone (two's complement: x & -x), then its position.
  return (x & -x).toString(2).length - 1;
}
export function fls(x: bigint): number {
  return x.toString(2).length - 1;
}
const genmask = (h: number) => (h >= 63 ? U64 : (1n << BigInt(h + 1)) - 1n);

/** __iommu_domain_alloc() */
export function domainAlloc(ops: IommuOps, type: number): IommuDomain | number {
  const allocType = type & IOMMU_DOMAIN_ALLOC_FLAGS;
  if (allocType === IOMMU_DOMAIN_IDENTITY && ops.identityDomain) return ops.identityDomain;
  if (allocType === IOMMU_DOMAIN_BLOCKED && ops.blockedDomain) return ops.blockedDomain;
  const domain = ops.domainAlloc(allocType);
  if (!domain) return err("ENOMEM");
  domain.type = type;
  domain.owner = ops;
  if (!domain.pgsizeBitmap) domain.pgsizeBitmap = ops.pgsizeBitmap;
  return domain;
}

/** iommu_paging_domain_alloc(): ENODEV for a device no IOMMU driver handles. */
export function iommuPagingDomainAlloc(ops: IommuOps | null): IommuDomain | number {
  if (!ops) return err("ENODEV");
  return domainAlloc(ops, IOMMU_DOMAIN_UNMANAGED);
}

/** iommu_domain_free() */
export function iommuDomainFree(domain: IommuDomain): void {
  domain.ops.free?.(domain);
}

/** iommu_enable_nesting(): neither VT-d nor AMD-Vi has ops->enable_nesting in 6.12. */
export function iommuEnableNesting(): number {
  return err("EINVAL");
}

/** __iommu_attach_device() */
function attachDevice(domain: IommuDomain, dev: PciDev): number {
  if (!domain.ops.attachDev) return err("ENODEV");
  return domain.ops.attachDev(domain, dev);
}

/** __iommu_device_set_domain() (no RMRR-bound devices or deferred attach in the model). */
function deviceSetDomain(
  group: IommuGroup,
  dev: PciDev,
  domain: IommuDomain,
  mustSucceed: boolean,
): number {
  const r = attachDevice(domain, dev);
  if (r && mustSucceed && group.blockingDomain && group.blockingDomain !== domain)
    attachDevice(group.blockingDomain, dev);
  return r;
}

/**
 * __iommu_group_set_domain_internal(): attach every device; on failure the devices done
 * so far go back to the group's current domain.
 */
export function groupSetDomain(
  group: IommuGroup,
  domain: IommuDomain,
  mustSucceed = false,
): number {
  if (group.domain === domain) return 0;
  let result = 0;
  for (let i = 0; i < group.devices.length; i++) {
    const dev = group.devices[i] as PciDev;
    const r = deviceSetDomain(group, dev, domain, mustSucceed);
    if (!r) continue;
    result = r;
    if (mustSucceed) continue;
    for (const d of group.devices.slice(0, i + 1))
      if (group.domain) deviceSetDomain(group, d, group.domain, true);
    return r;
  }
  group.domain = domain;
  return result;
}

/** iommu_attach_group() */
export function iommuAttachGroup(domain: IommuDomain, group: IommuGroup): number {
  if (group.domain && group.domain !== group.defaultDomain && group.domain !== group.blockingDomain)
    return err("EBUSY");
  if (!group.ops || group.ops !== domain.owner) return err("EINVAL");
  return groupSetDomain(group, domain);
}

/** iommu_detach_group(): back to the blocking domain while owned, else the default one. */
export function iommuDetachGroup(_domain: IommuDomain, group: IommuGroup): void {
  const core = group.owner !== null ? group.blockingDomain : group.defaultDomain;
  if (core) groupSetDomain(group, core, true);
}

/**
 * __iommu_take_dma_ownership() without the owner bookkeeping: the group must be on its
 * default domain and moves to the blocking domain (the driver's static one, else an empty
 * paging domain). A group whose unit has no modelled driver has no domains to switch.
 */
export function takeDmaOwnership(group: IommuGroup): number {
  if (group.domain && group.domain !== group.defaultDomain) return err("EBUSY");
  if (!group.ops) return 0;
  if (!group.blockingDomain) {
    let d = domainAlloc(group.ops, IOMMU_DOMAIN_BLOCKED);
    if (typeof d === "number") d = domainAlloc(group.ops, IOMMU_DOMAIN_UNMANAGED);
    if (typeof d === "number") return d;
    group.blockingDomain = d;
  }
  return groupSetDomain(group, group.blockingDomain);
}

/** __iommu_release_dma_ownership(): back to the default domain. */
export function releaseDmaOwnership(group: IommuGroup): void {
  if (group.defaultDomain) groupSetDomain(group, group.defaultDomain, true);
}

/** iommu_get_default_domain_type(): the first type a member's driver requires, else 0. */
function driverDomainType(group: IommuGroup, ops: IommuOps): number {
  return group.devices.map((d) => ops.defDomainType(d)).find((t) => t) ?? 0;
}

/**
 * iommu_group_alloc_default_domain(): the type asked for (the current default domain when it
 * already has it), or with none asked the command line's, which falls back to DMA.
 */
function allocDefaultDomain(
  group: IommuGroup,
  ops: IommuOps,
  reqType: number,
  cmdlineType: number,
): IommuDomain | number {
  const alloc = (t: number) =>
    group.defaultDomain?.type === t ? group.defaultDomain : domainAlloc(ops, t);
  if (reqType) return alloc(reqType);
  const d = alloc(cmdlineType);
  return typeof d === "number" && cmdlineType !== IOMMU_DOMAIN_DMA ? alloc(IOMMU_DOMAIN_DMA) : d;
}

/**
 * iommu_setup_default_domain() for a group already in use (the sysfs `type` store): the
 * type the drivers require must agree with the one asked for (EINVAL); the new default
 * domain replaces the group's domain and the old one is freed.
 */
export function groupSetupDefaultDomain(
  group: IommuGroup,
  target: number,
  cmdlineType: number,
): number {
  const ops = group.ops;
  if (!ops) return err("EINVAL");
  const driverType = driverDomainType(group, ops);
  if (target && driverType && target !== driverType) return err("EINVAL");
  const old = group.defaultDomain;
  const dom = allocDefaultDomain(group, ops, target || driverType, cmdlineType);
  if (typeof dom === "number") return dom;
  if (dom === old) return 0;
  group.defaultDomain = dom;
  const r = groupSetDomain(group, dom, !group.domain);
  if (r && group.domain) {
    iommuDomainFree(dom);
    group.defaultDomain = old;
    return r;
  }
  if (old) iommuDomainFree(old);
  return r;
}

/**
 * The default domain when a device joins its group (iommu_setup_default_domain for a new
 * group, __iommu_device_set_domain to the group's domain for a later member): the type a
 * driver requires for the device, else the command line's; identity falls back to DMA.
 */
export function groupAddDevice(group: IommuGroup, dev: PciDev, cmdlineType: number): void {
  if (!group.ops) return;
  group.ops.probeDevice(dev);
  if (group.domain) {
    deviceSetDomain(group, dev, group.domain, true);
    return;
  }
  const ops = group.ops;
  const type = driverDomainType(group, ops);
  const domain = allocDefaultDomain(group, ops, type, cmdlineType);
  if (typeof domain === "number") return;
  group.defaultDomain = domain;
  groupSetDomain(group, domain, true);
}

/** iommu_iotlb_gather_init() */
export function gatherInit(): IotlbGather {
  return { start: U64, end: 0n, freelist: [] };
}

/** iommu_iotlb_gather_add_range() */
export function gatherAddRange(g: IotlbGather, iova: bigint, size: bigint): void {
  const end = u64(iova + size - 1n);
  if (g.start > iova) g.start = iova;
  if (g.end < end) g.end = end;
}

/** iommu_iotlb_sync() */
export function iommuIotlbSync(domain: IommuDomain, gather: IotlbGather): void {
  domain.ops.iotlbSync?.(domain, gather);
  Object.assign(gather, gatherInit());
}

/** iommu_pgsize(): the biggest page that fits the alignment, and how many of them. */
function iommuPgsize(
  domain: IommuDomain,
  iova: bigint,
  paddr: bigint,
  size: bigint,
): { pgsize: bigint; count: bigint } {
  const addrMerge = paddr | iova;
  let pgsizes = domain.pgsizeBitmap & genmask(fls(size));
  if (addrMerge) pgsizes &= genmask(ffs(addrMerge));
  const idx = fls(pgsizes);
  const pgsize = 1n << BigInt(idx);
  const bigger = domain.pgsizeBitmap & ~genmask(idx);
  if (bigger) {
    const next = 1n << BigInt(ffs(bigger));
    if (((iova ^ paddr) & (next - 1n)) === 0n) {
      const offset = next - (addrMerge & (next - 1n));
      if (offset + next <= size) size = offset;
    }
  }
  return { pgsize, count: size >> BigInt(idx) };
}

/** iommu_map(): -errno or 0; a partial mapping is undone. */
export function iommuMap(
  domain: IommuDomain,
  iova: bigint,
  paddr: bigint,
  size: bigint,
  prot: number,
): number {
  const ops = domain.ops;
  if (!(domain.type & __IOMMU_DOMAIN_PAGING)) return err("EINVAL");
  if (!ops.mapPages || domain.pgsizeBitmap === 0n) return err("ENODEV");
  const minPagesz = 1n << BigInt(ffs(domain.pgsizeBitmap));
  if ((iova | paddr | size) & (minPagesz - 1n)) return err("EINVAL");
  const origIova = iova;
  const origSize = size;
  let ret = 0;
  while (size) {
    const { pgsize, count } = iommuPgsize(domain, iova, paddr, size);
    const mapped = { n: 0n };
    ret = ops.mapPages(domain, iova, paddr, pgsize, count, prot, mapped);
    size -= mapped.n;
    if (ret) break;
    iova += mapped.n;
    paddr += mapped.n;
  }
  if (ret) {
    iommuUnmap(domain, origIova, origSize - size);
    return ret;
  }
  if (ops.iotlbSyncMap) {
    ret = ops.iotlbSyncMap(domain, origIova, origSize);
    if (ret) iommuUnmap(domain, origIova, origSize);
  }
  return ret;
}

/** __iommu_unmap(): bytes unmapped, stopping at the first hole the driver reports. */
export function iommuUnmapFast(
  domain: IommuDomain,
  iova: bigint,
  size: bigint,
  gather: IotlbGather,
): bigint {
  const ops = domain.ops;
  if (!(domain.type & __IOMMU_DOMAIN_PAGING)) return 0n;
  if (!ops.unmapPages || domain.pgsizeBitmap === 0n) return 0n;
  const minPagesz = 1n << BigInt(ffs(domain.pgsizeBitmap));
  if ((iova | size) & (minPagesz - 1n)) return 0n;
  let unmapped = 0n;
  while (unmapped < size) {
    const { pgsize, count } = iommuPgsize(domain, iova, iova, size - unmapped);
    const n = ops.unmapPages(domain, iova, pgsize, count, gather);
    if (!n) break;
    iova = u64(iova + n);
    unmapped += n;
  }
  return unmapped;
}

/** iommu_unmap() */
export function iommuUnmap(domain: IommuDomain, iova: bigint, size: bigint): bigint {
  const gather = gatherInit();
  const r = iommuUnmapFast(domain, iova, size, gather);
  iommuIotlbSync(domain, gather);
  return r;
}

/** iommu_iova_to_phys(): 0 when nothing is mapped there. */
export function iommuIovaToPhys(domain: IommuDomain, iova: bigint): bigint {
  if (domain.type === IOMMU_DOMAIN_IDENTITY) return iova;
  if (domain.type === IOMMU_DOMAIN_BLOCKED) return 0n;
  return domain.ops.iovaToPhys?.(domain, iova) ?? 0n;
}

/** iommu_insert_resv_region(): sorted by start (then type), overlapping same-type merged. */
function insertResvRegion(nr: ResvRegion, regions: ResvRegion[]): ResvRegion[] {
  let at = regions.findIndex(
    (r) => nr.start < r.start || (nr.start === r.start && nr.type <= r.type),
  );
  if (at < 0) at = regions.length;
  const list = [...regions.slice(0, at), { ...nr }, ...regions.slice(at)];
  const stack: ResvRegion[] = [];
  for (const iter of list) {
    const top =
      iter.type === nr.type ? [...stack].reverse().find((t) => t.type === iter.type) : undefined;
    if (!top) {
      stack.push(iter);
      continue;
    }
    const topEnd = top.start + top.length - 1n;
    const iterEnd = iter.start + iter.length - 1n;
    if (iter.start > topEnd + 1n) stack.push(iter);
    else top.length = (topEnd > iterEnd ? topEnd : iterEnd) - top.start + 1n;
  }
  return stack;
}

/** iommu_get_group_resv_regions() */
export function iommuGetGroupResvRegions(group: IommuGroup): ResvRegion[] {
  let regions: ResvRegion[] = [];
  if (!group.ops) return regions;
  for (const dev of group.devices)
    for (const r of group.ops.getResvRegions(dev)) regions = insertResvRegion(r, regions);
  return regions;
}

/** iommu_group_has_isolated_msi(): every member's MSIs go through interrupt remapping. */
export function iommuGroupHasIsolatedMsi(group: IommuGroup): boolean {
  return group.devices.every((d) => group.ops?.isolatedMsi(d) ?? false);
}

/**
 * Whether interrupt remapping was left on by the command line (drivers/iommu/
 * irq_remapping.c: "intremap=off" and "nointremap" disable it for every driver).
 */
export function irqRemapAllowed(cmdline: string): boolean {
  let on = true;
  for (const w of cmdline.split(/\s+/)) {
    if (w === "nointremap") on = false;
    if (w.startsWith("intremap=")) {
      for (const o of w.slice("intremap=".length).split(",")) {
        if (o === "on") on = true;
        if (o === "off") on = false;
      }
    }
  }
  return on;
}

/** One 64-bit page-table entry in RAM (little-endian, as both x86 IOMMUs read them). */
export function readPte(mem: MemoryAccess, pa: number): bigint {
  ptBytes.set(mem.read(pa, 8));
  return pt.getBigUint64(0, true);
}
export function writePte(mem: MemoryAccess, pa: number, v: bigint): void {
  // setBigUint64 stores v modulo 2^64.
  pt.setBigUint64(0, v, true);
  mem.write(pa, ptBytes.slice());
}
/** Where PTEs are converted (every page-table walk reads several: no DataView each). */
const pt = new DataView(new ArrayBuffer(8));
const ptBytes = new Uint8Array(pt.buffer);
