/**
 * Memory preregistration, arch/powerpc/mm/book3s64/iommu_api.c (Linux 6.12): a process
 * registers a range of its memory once (VFIO_IOMMU_SPAPR_REGISTER_MEMORY); the pages are
 * pinned and charged to locked_vm then, so MAP_DMA and KVM's in-kernel TCE handlers only
 * translate user address → host physical address. A region is refcounted by its users
 * (`used`) and counts its live TCE mappings in `mapped` (1 + mappings; 0 once released).
 * Regions of one mm may not overlap (EINVAL). The region's page shift is the largest
 * IOMMU page it can back: min(__ffs(ua | size), PAGE_SHIFT) — huge pages would raise it;
 * the model has none.
 */
import { err } from "../../uapi/errno.js";
import type { Mm } from "../core/mm.js";
import type { Task } from "../core/task.js";
import { accountLockedVm, unaccountLockedVm } from "./iommu.js";

/** struct mm_iommu_table_group_mem_t */
export interface MmIommuMem {
  ua: bigint;
  /** Pages (of the kernel's size). */
  entries: number;
  pageshift: number;
  /** Page frame numbers, one per page. */
  hpas: number[];
  used: number;
  mapped: number;
}

const lists = new WeakMap<Mm, MmIommuMem[]>();

function list(mm: Mm): MmIommuMem[] {
  let l = lists.get(mm);
  if (!l) {
    l = [];
    lists.set(mm, l);
  }
  return l;
}

/** mm_iommu_preregistered() */
export function mmIommuPreregistered(mm: Mm): boolean {
  return list(mm).length > 0;
}

/** __ffs of a non-zero bigint. */
function ffs(x: bigint): number {
  let n = 0;
  while (((x >> BigInt(n)) & 1n) === 0n && n < 64) n++;
  return n;
}

/** mm_iommu_new(): pin `entries` pages at `ua`, account them, list the region. */
export function mmIommuNew(task: Task, ua: bigint, entries: number): MmIommuMem | number {
  const mm = task.mm;
  const shift = Math.log2(mm.pageSize);
  const r = accountLockedVm(task, entries, true);
  if (r) return r;
  const hpas = mm.pin(ua, entries, true);
  if (!hpas) {
    unaccountLockedVm(mm, entries);
    return err("EFAULT");
  }
  const end = ua + (BigInt(entries) << BigInt(shift));
  for (const m of list(mm)) {
    if (m.ua < end && ua < m.ua + (BigInt(m.entries) << BigInt(shift))) {
      mm.unpin(hpas);
      unaccountLockedVm(mm, entries);
      return err("EINVAL");
    }
  }
  const mem: MmIommuMem = {
    ua,
    entries,
    pageshift: Math.min(ffs(ua | (BigInt(entries) << BigInt(shift))), shift),
    hpas,
    used: 1,
    mapped: 1,
  };
  list(mm).push(mem);
  return mem;
}

/** mm_iommu_put(): the last user releases the region unless TCEs still map it (EBUSY). */
export function mmIommuPut(mm: Mm, mem: MmIommuMem): number {
  if (mem.used === 0) return err("ENOENT");
  mem.used--;
  if (mem.used) return 0;
  if (mem.mapped !== 1) {
    mem.used++;
    return err("EBUSY");
  }
  mem.mapped = 0;
  const l = list(mm);
  l.splice(l.indexOf(mem), 1);
  mm.unpin(mem.hpas);
  unaccountLockedVm(mm, mem.entries);
  return 0;
}

/** mm_iommu_lookup(): the region containing [ua, ua + size). */
export function mmIommuLookup(mm: Mm, ua: bigint, size: bigint): MmIommuMem | null {
  const shift = BigInt(Math.log2(mm.pageSize));
  return (
    list(mm).find((m) => m.ua <= ua && ua + size <= m.ua + (BigInt(m.entries) << shift)) ?? null
  );
}

/** mm_iommu_get(): the region registered exactly so, with a user reference taken. */
export function mmIommuGet(mm: Mm, ua: bigint, entries: number): MmIommuMem | null {
  const m = list(mm).find((x) => x.ua === ua && x.entries === entries) ?? null;
  if (m) m.used++;
  return m;
}

/** mm_iommu_ua_to_hpa(): -EFAULT outside the region or for a page larger than it backs. */
export function mmIommuUaToHpa(
  mm: Mm,
  mem: MmIommuMem,
  ua: bigint,
  pageshift: number,
): bigint | number {
  const shift = Math.log2(mm.pageSize);
  const entry = Number((ua - mem.ua) >> BigInt(shift));
  if (entry >= mem.entries) return err("EFAULT");
  if (pageshift > mem.pageshift) return err("EFAULT");
  const pfn = mem.hpas[entry] as number;
  return (BigInt(pfn) << BigInt(shift)) | (ua & ((1n << BigInt(shift)) - 1n));
}

/** mm_iommu_mapped_inc(): -ENXIO once the region is being released. */
export function mmIommuMappedInc(mem: MmIommuMem): number {
  if (mem.mapped === 0) return err("ENXIO");
  mem.mapped++;
  return 0;
}

/** mm_iommu_mapped_dec(): never below 1. */
export function mmIommuMappedDec(mem: MmIommuMem): void {
  if (mem.mapped > 1) mem.mapped--;
}

/** The regions of an mm (for introspection). */
export function mmIommuRegions(mm: Mm): readonly MmIommuMem[] {
  return list(mm);
}
