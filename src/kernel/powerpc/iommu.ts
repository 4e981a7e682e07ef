/**
 * The powerpc IOMMU table API, arch/powerpc/kernel/iommu.c and asm/iommu.h (Linux 6.12):
 * an iommu_table is one TCE table behind one DMA window (page shift, offset and size in
 * IOMMU pages, levels, the hardware table in RAM and its "userspace view" it_userspace
 * that remembers the user address behind each entry); an iommu_table_group is a PE's
 * pair of table slots with what the platform can do (the 32-bit window, DDW page sizes,
 * the table ops); the IOMMU group of a PE carries its table group as iommudata.
 * The checks VFIO and KVM share (iommu_tce_check_ioba / _gpa, the *_param_check macros)
 * are here, with their C truth values: the param-check macros are `||` of two calls, so
 * they yield 1, not an errno.
 */
import { err } from "../../uapi/errno.js";
import { TCE_PCI_READ, TCE_PCI_WRITE } from "../../uapi/papr.js";
import type { Task } from "../core/task.js";
import type { IommuGroup } from "../iommu/iommu.js";

export const IOMMU_PAGE_SHIFT_4K = 12;
export const IOMMU_TABLE_GROUP_MAX_TABLES = 2;

/* enum dma_data_direction */
export const DMA_BIDIRECTIONAL = 0;
export const DMA_TO_DEVICE = 1;
export const DMA_FROM_DEVICE = 2;
export const DMA_NONE = 3;

/** iommu_tce_direction() */
export function iommuTceDirection(tce: bigint): number {
  const r = (tce & BigInt(TCE_PCI_READ)) !== 0n;
  const w = (tce & BigInt(TCE_PCI_WRITE)) !== 0n;
  return r && w ? DMA_BIDIRECTIONAL : r ? DMA_TO_DEVICE : w ? DMA_FROM_DEVICE : DMA_NONE;
}

/** iommu_direction_to_tce_perm() */
export function iommuDirectionToTcePerm(dir: number): bigint {
  switch (dir) {
    case DMA_BIDIRECTIONAL:
      return BigInt(TCE_PCI_READ | TCE_PCI_WRITE);
    case DMA_FROM_DEVICE:
      return BigInt(TCE_PCI_WRITE);
    case DMA_TO_DEVICE:
      return BigInt(TCE_PCI_READ);
    default:
      return 0n;
  }
}

/** One entry of a table's userspace view (a __be64 * in C). */
export interface UaEntry {
  get(): bigint;
  set(v: bigint): void;
}

/** struct iommu_table_ops (the IOMMU_API half). */
export interface IommuTableOps {
  /** Exchange entry's TCE with hpa|perm(dir); hpa/dir come back as the old ones. */
  xchgNoKill(tbl: IommuTable, entry: number, io: { hpa: bigint; dir: number }): number;
  tceKill(tbl: IommuTable, entry: number, pages: number): void;
  useraddrptr(tbl: IommuTable, entry: number, alloc: boolean): UaEntry | null;
  get(tbl: IommuTable, entry: number): bigint;
  free(tbl: IommuTable): void;
}

/** struct iommu_table */
export class IommuTable {
  /** it_size: entries; it_offset: first entry's index in the bus address space. */
  size = 0;
  offset = 0;
  pageShift = 12;
  indirectLevels = 0;
  levelSize = 0;
  allocatedSize = 0;
  /** it_base: physical address of the top level. */
  base = 0;
  /** it_userspace, by entry; null when the table has no userspace view. */
  userspace: Map<number, bigint> | null = null;
  /** Lower-level chunks of the userspace view allocated so far (multi-level tables). */
  userspaceChunks = new Set<number>();
  /** it_group_list */
  readonly groups: IommuTableGroup[] = [];
  /** it_kref */
  refs = 1;
  /** Every page the table's levels occupy (for freeing). */
  readonly pagesUsed: { pfn: number; n: number }[] = [];
  constructor(readonly ops: IommuTableOps) {}
}

/** struct iommu_table_group_ops */
export interface IommuTableGroupOps {
  /** Bytes of hardware table plus userspace view; 0 for impossible parameters. */
  getTableSize(pageShift: number, windowSize: bigint, levels: number): number;
  createTable(
    group: IommuTableGroup,
    num: number,
    pageShift: number,
    windowSize: bigint,
    levels: number,
  ): IommuTable | number;
  setWindow(group: IommuTableGroup, num: number, tbl: IommuTable): number;
  unsetWindow(group: IommuTableGroup, num: number): number;
  takeOwnership(group: IommuTableGroup): number;
  releaseOwnership(group: IommuTableGroup): void;
}

/** struct iommu_table_group */
export class IommuTableGroup {
  tce32Start = 0;
  tce32Size = 0;
  /** Bitmap of IOMMU page sizes (bit n: 2^n bytes). */
  pgsizes = 0n;
  maxDynamicWindowsSupported = 0;
  maxLevels = 0;
  group: IommuGroup | null = null;
  readonly tables: (IommuTable | null)[] = [null, null];
  constructor(readonly ops: IommuTableGroupOps) {}
}

const iommudata = new WeakMap<IommuGroup, IommuTableGroup>();

/** iommu_register_group(): the IOMMU group of a PE carries its table group. */
export function iommuRegisterGroup(tg: IommuTableGroup, group: IommuGroup): void {
  tg.group = group;
  iommudata.set(group, tg);
}

/** iommu_group_get_iommudata() */
export function iommuGroupGetIommudata(group: IommuGroup): IommuTableGroup | null {
  return iommudata.get(group) ?? null;
}

/** iommu_tce_table_get() */
export function iommuTceTableGet(tbl: IommuTable): IommuTable {
  tbl.refs++;
  return tbl;
}

/** iommu_tce_table_put(): the last reference frees the table. */
export function iommuTceTablePut(tbl: IommuTable): void {
  if (--tbl.refs === 0) tbl.ops.free(tbl);
}

/** iommu_tce_check_ioba(): -EINVAL, or 0. (npages is not looked at, as in 6.12.) */
export function iommuTceCheckIoba(
  pageShift: number,
  offset: number,
  size: number,
  ioba: bigint,
  _npages: number,
): number {
  const mask = (1n << BigInt(pageShift)) - 1n;
  if (ioba & mask) return err("EINVAL");
  const e = ioba >> BigInt(pageShift);
  if (e < BigInt(offset)) return err("EINVAL");
  if (e + 1n > BigInt(offset) + BigInt(size)) return err("EINVAL");
  return 0;
}

/** iommu_tce_check_gpa() */
export function iommuTceCheckGpa(pageShift: number, gpa: bigint): number {
  return gpa & ((1n << BigInt(pageShift)) - 1n) ? err("EINVAL") : 0;
}

/** iommu_tce_put_param_check(): 1 when either check fails (a C `||`), else 0. */
export function iommuTcePutParamCheck(tbl: IommuTable, ioba: bigint, gpa: bigint): number {
  return iommuTceCheckIoba(tbl.pageShift, tbl.offset, tbl.size, ioba, 1) ||
    iommuTceCheckGpa(tbl.pageShift, gpa)
    ? 1
    : 0;
}

/** iommu_tce_clear_param_check(): 1 or 0 likewise. */
export function iommuTceClearParamCheck(
  tbl: IommuTable,
  ioba: bigint,
  tceValue: bigint,
  npages: number,
): number {
  return iommuTceCheckIoba(tbl.pageShift, tbl.offset, tbl.size, ioba, npages) || tceValue ? 1 : 0;
}

/**
 * iommu_tce_xchg_no_kill() (the dirty-page marking is not modelled: pages have no dirty
 * bit in the model).
 */
export function iommuTceXchgNoKill(
  tbl: IommuTable,
  entry: number,
  io: { hpa: bigint; dir: number },
): number {
  return tbl.ops.xchgNoKill(tbl, entry, io);
}

/** iommu_tce_kill() */
export function iommuTceKill(tbl: IommuTable, entry: number, pages: number): void {
  tbl.ops.tceKill(tbl, entry, pages);
}

/** IOMMU_TABLE_USERSPACE_ENTRY_RO / IOMMU_TABLE_USERSPACE_ENTRY */
export function userspaceEntry(tbl: IommuTable, entry: number, alloc: boolean): UaEntry | null {
  return tbl.ops.useraddrptr(tbl, entry, alloc);
}

/**
 * account_locked_vm() (mm/util.c): charge or release `pages` pages of the task's mm;
 * ENOMEM past RLIMIT_MEMLOCK (in pages of this kernel's size) unless CAP_IPC_LOCK.
 */
export function accountLockedVm(task: Task, pages: number, inc: boolean): number {
  if (pages === 0) return 0;
  const mm = task.mm;
  if (inc) {
    const limit = task.rlimitMemlock / BigInt(mm.pageSize);
    if (BigInt(mm.lockedVm + pages) > limit && !task.capable("CAP_IPC_LOCK")) return err("ENOMEM");
    mm.lockedVm += pages;
  } else {
    mm.lockedVm = Math.max(0, mm.lockedVm - pages);
  }
  return 0;
}

/** account_locked_vm(mm, pages, false): undo a charge (no task needed to release). */
export function unaccountLockedVm(mm: Task["mm"], pages: number): void {
  mm.lockedVm = Math.max(0, mm.lockedVm - pages);
}
