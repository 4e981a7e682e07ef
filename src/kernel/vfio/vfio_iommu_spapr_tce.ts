/**
 * The sPAPR TCE IOMMU backend, drivers/vfio/vfio_iommu_spapr_tce.c (Linux 6.12; the EEH
 * ioctl, once drivers/vfio/vfio_spapr_eeh.c, lives here since 6.4). Registered only on a
 * POWER kernel ("iommu-vfio-powerpc").
 *
 * A container is v1 (VFIO_SPAPR_TCE_IOMMU) or v2 (VFIO_SPAPR_TCE_v2_IOMMU):
 * - v1: one group; VFIO_IOMMU_ENABLE charges the whole 32-bit window (tce32_size in
 *   pages) to locked_vm whatever is mapped; MAP pins each page (pin_user_pages_fast) and
 *   refuses a host page smaller than the IOMMU page (EPERM).
 * - v2: several groups with the same table ops, DDW required; memory is preregistered
 *   (REGISTER_MEMORY, which also "enables" the container) and MAP only translates; windows
 *   are created and removed (CREATE/REMOVE_WINDOW, two slots), each table charged.
 * Both: the default window (4 KiB IOMMU pages over tce32_size, one level, bus address 0)
 * is made lazily by the first MAP / UNMAP / CREATE (def_window_pending); the first ioctl
 * that needs the mm binds the container to the caller's (EPERM for another).
 *
 * Odd but true to the source: MAP/UNMAP with an IOVA misaligned to the IOMMU page return
 * 1 (the param-check macros are a C `||`), not an errno; UNREGISTER of a region still
 * mapped returns 0 and leaves the region registered to the mm (mm_iommu_put's EBUSY is
 * dropped); VFIO_EEH_PE_OP runs for every group and stops at the first non-zero result,
 * so GET_STATE of a multi-group container is the first group's state that is not NORMAL.
 */
import { err } from "../../uapi/errno.js";
import * as U from "../../uapi/vfio.js";
import type { Mm } from "../core/mm.js";
import type { Task } from "../core/task.js";
import type { IommuGroup } from "../iommu/iommu.js";
import type { Eeh } from "../powerpc/eeh.js";
import {
  EEH_OPT_DISABLE,
  EEH_OPT_ENABLE,
  EEH_OPT_THAW_DMA,
  EEH_OPT_THAW_MMIO,
  EEH_RESET_DEACTIVATE,
  EEH_RESET_FUNDAMENTAL,
  EEH_RESET_HOT,
} from "../powerpc/eeh.js";
import {
  DMA_BIDIRECTIONAL,
  DMA_FROM_DEVICE,
  DMA_NONE,
  DMA_TO_DEVICE,
  IOMMU_PAGE_SHIFT_4K,
  IOMMU_TABLE_GROUP_MAX_TABLES,
  accountLockedVm,
  iommuGroupGetIommudata,
  iommuTceClearParamCheck,
  iommuTceKill,
  iommuTcePutParamCheck,
  iommuTceTablePut,
  iommuTceXchgNoKill,
  unaccountLockedVm,
  userspaceEntry,
  type IommuTable,
  type IommuTableGroup,
} from "../powerpc/iommu.js";
import {
  mmIommuGet,
  mmIommuLookup,
  mmIommuMappedDec,
  mmIommuMappedInc,
  mmIommuNew,
  mmIommuPut,
  mmIommuUaToHpa,
  type MmIommuMem,
} from "../powerpc/iommu_api.js";
import type { PnvPe } from "../powerpc/pci_ioda.js";
import { fromUser, toUser, type VfioIommuDriverOps } from "./vfio.js";

/** struct tce_container */
export interface TceContainer {
  enabled: boolean;
  v2: boolean;
  defWindowPending: boolean;
  lockedPages: number;
  mm: Mm | null;
  tables: (IommuTable | null)[];
  groups: IommuGroup[];
  prereg: MmIommuMem[];
  /** v1: the host frames pinned behind each mapped entry, by table and entry. */
  pinned: Map<IommuTable, Map<number, number>>;
}

export interface SpaprTceDeps {
  eeh: Eeh;
  /** eeh_iommu_group_to_pe() */
  peOfGroup(g: IommuGroup): PnvPe | null;
}

const u32 = (v: number | bigint) => Number(BigInt.asUintN(32, BigInt(v)));

export function vfioIommuSpaprTce(deps: SpaprTceDeps): VfioIommuDriverOps<TceContainer> {
  const tg = (g: IommuGroup): IommuTableGroup | null => iommuGroupGetIommudata(g);

  /** tce_iommu_mm_set() */
  const mmSet = (c: TceContainer, task: Task): number => {
    if (c.mm) return c.mm === task.mm ? 0 : err("EPERM");
    c.mm = task.mm;
    return 0;
  };

  /** tce_iommu_find_table() */
  const findTable = (c: TceContainer, ioba: bigint): { num: number; tbl: IommuTable } | null => {
    for (let i = 0; i < IOMMU_TABLE_GROUP_MAX_TABLES; i++) {
      const tbl = c.tables[i];
      if (!tbl) continue;
      const entry = ioba >> BigInt(tbl.pageShift);
      if (BigInt(tbl.offset) <= entry && entry < BigInt(tbl.offset + tbl.size))
        return { num: i, tbl };
    }
    return null;
  };

  /** tce_iommu_unuse_page_v2() */
  const unusePageV2 = (c: TceContainer, tbl: IommuTable, entry: number): void => {
    const pua = userspaceEntry(tbl, entry, false);
    if (!pua) return;
    const mem = c.mm ? mmIommuLookup(c.mm, pua.get(), 1n << BigInt(tbl.pageShift)) : null;
    if (mem) mmIommuMappedDec(mem);
    pua.set(0n);
  };

  /** tce_iommu_unuse_page(): v1's pin is dropped. */
  const unusePage = (c: TceContainer, tbl: IommuTable, entry: number): void => {
    const m = c.pinned.get(tbl);
    const pfn = m?.get(entry);
    if (pfn === undefined || !c.mm) return;
    m?.delete(entry);
    c.mm.unpin([pfn]);
  };

  /** tce_iommu_clear() */
  const clear = (c: TceContainer, tbl: IommuTable, entry: number, pages: number): number => {
    const first = entry;
    const last = entry + pages;
    for (; entry < last; entry++) {
      if (tbl.indirectLevels && tbl.userspace) {
        if (!userspaceEntry(tbl, entry, false)) {
          entry |= tbl.levelSize - 1;
          continue;
        }
      }
      const io = { hpa: 0n, dir: DMA_NONE };
      if (iommuTceXchgNoKill(tbl, entry, io)) continue;
      if (io.dir === DMA_NONE) continue;
      if (c.v2) unusePageV2(c, tbl, entry);
      else unusePage(c, tbl, entry);
    }
    iommuTceKill(tbl, first, pages);
    return 0;
  };

  /** tce_page_is_contained(): the host page must be at least the IOMMU page. */
  const contained = (mm: Mm, shift: number): boolean => Math.log2(mm.pageSize) >= shift;

  /** tce_iommu_build() (v1) */
  const build = (
    c: TceContainer,
    task: Task,
    tbl: IommuTable,
    entry: number,
    tce: bigint,
    pages: number,
    dir: number,
  ): number => {
    const mm = c.mm as Mm;
    const hostShift = BigInt(Math.log2(mm.pageSize));
    let ret = 0;
    let i = 0;
    for (; i < pages; i++) {
      const offset = tce & ~((1n << BigInt(tbl.pageShift)) - 1n) & ((1n << hostShift) - 1n);
      const pfns = task.mm.pin(tce & ~((1n << hostShift) - 1n), 1, dir !== DMA_TO_DEVICE);
      if (!pfns) {
        ret = err("EFAULT");
        break;
      }
      const pfn = pfns[0] as number;
      if (!contained(mm, tbl.pageShift)) {
        task.mm.unpin([pfn]);
        ret = err("EPERM");
        break;
      }
      const io = { hpa: (BigInt(pfn) << hostShift) | offset, dir };
      ret = iommuTceXchgNoKill(tbl, entry + i, io);
      if (ret) {
        task.mm.unpin([pfn]);
        break;
      }
      if (io.dir !== DMA_NONE) unusePage(c, tbl, entry + i);
      let m = c.pinned.get(tbl);
      if (!m) c.pinned.set(tbl, (m = new Map()));
      m.set(entry + i, pfn);
      tce += 1n << BigInt(tbl.pageShift);
    }
    if (ret) clear(c, tbl, entry, i);
    else iommuTceKill(tbl, entry, pages);
    return ret;
  };

  /** tce_iommu_build_v2() */
  const buildV2 = (
    c: TceContainer,
    tbl: IommuTable,
    entry: number,
    tce: bigint,
    pages: number,
    dir: number,
  ): number => {
    const mm = c.mm as Mm;
    let ret = 0;
    let i = 0;
    for (; i < pages; i++) {
      const pua = userspaceEntry(tbl, entry + i, true);
      // tce_iommu_prereg_ua_to_hpa()
      const mem = mmIommuLookup(mm, tce, 1n << BigInt(tbl.pageShift));
      const hpa = mem ? mmIommuUaToHpa(mm, mem, tce, tbl.pageShift) : err("EINVAL");
      if (!mem || typeof hpa === "number") {
        ret = err("EINVAL");
        break;
      }
      if (!contained(mm, tbl.pageShift)) {
        ret = err("EPERM");
        break;
      }
      if (mmIommuMappedInc(mem)) break;
      const io = { hpa: hpa & ~((1n << BigInt(tbl.pageShift)) - 1n), dir };
      ret = iommuTceXchgNoKill(tbl, entry + i, io);
      if (ret) {
        unusePageV2(c, tbl, entry + i);
        break;
      }
      if (io.dir !== DMA_NONE) unusePageV2(c, tbl, entry + i);
      pua?.set(tce);
      tce += 1n << BigInt(tbl.pageShift);
    }
    if (ret) clear(c, tbl, entry, i);
    else iommuTceKill(tbl, entry, pages);
    return ret;
  };

  /** tce_iommu_create_table() */
  const createTable = (
    c: TceContainer,
    task: Task,
    group: IommuTableGroup,
    num: number,
    pageShift: number,
    windowSize: bigint,
    levels: number,
  ): IommuTable | number => {
    const size = group.ops.getTableSize(pageShift, windowSize, levels);
    if (!size) return err("EINVAL");
    const pages = Math.floor(size / (c.mm as Mm).pageSize);
    const r = accountLockedVm(task, pages, true);
    if (r) return r;
    const tbl = group.ops.createTable(group, num, pageShift, windowSize, levels);
    if (typeof tbl === "number") unaccountLockedVm(task.mm, pages);
    return tbl;
  };

  /** tce_iommu_free_table() */
  const freeTable = (c: TceContainer, tbl: IommuTable): void => {
    const pages = Math.floor(tbl.allocatedSize / (c.mm as Mm).pageSize);
    iommuTceTablePut(tbl);
    if (c.mm) unaccountLockedVm(c.mm, pages);
  };

  /** tce_iommu_create_window() */
  const createWindow = (
    c: TceContainer,
    task: Task,
    pageShift: number,
    windowSize: bigint,
    levels: number,
  ): bigint | number => {
    const num = c.tables.findIndex((t) => !t);
    if (num < 0) return err("ENOSPC");
    const first = c.groups[0];
    const group = first ? tg(first) : null;
    if (!group) return err("EFAULT");
    if (!(group.pgsizes & (1n << BigInt(pageShift)))) return err("EINVAL");
    const tbl = createTable(c, task, group, num, pageShift, windowSize, levels);
    if (typeof tbl === "number") return tbl;
    for (const g of c.groups) {
      const r = (tg(g) as IommuTableGroup).ops.setWindow(tg(g) as IommuTableGroup, num, tbl);
      if (r) {
        for (const h of c.groups)
          (tg(h) as IommuTableGroup).ops.unsetWindow(tg(h) as IommuTableGroup, num);
        freeTable(c, tbl);
        return r; // an OPAL code passed up as is (OPAL_PARAMETER -1 reads as -EPERM)
      }
    }
    c.tables[num] = tbl;
    return BigInt(tbl.offset) << BigInt(tbl.pageShift);
  };

  /** tce_iommu_remove_window() */
  const removeWindow = (c: TceContainer, start: bigint): number => {
    const f = findTable(c, start);
    if (!f) return err("EINVAL");
    clear(c, f.tbl, f.tbl.offset, f.tbl.size);
    for (const g of c.groups)
      (tg(g) as IommuTableGroup).ops.unsetWindow(tg(g) as IommuTableGroup, f.num);
    freeTable(c, f.tbl);
    c.tables[f.num] = null;
    return 0;
  };

  /** tce_iommu_create_default_window() */
  const createDefaultWindow = (c: TceContainer, task: Task): number => {
    if (!c.defWindowPending) return 0;
    const first = c.groups[0];
    if (!first) return err("ENODEV");
    const group = tg(first);
    if (!group) return err("ENODEV");
    if (!c.mm) c.mm = task.mm; // the callers set it first in C (enabled implies mm)
    const r = createWindow(c, task, IOMMU_PAGE_SHIFT_4K, BigInt(group.tce32Size), 1);
    if (typeof r === "number") return r;
    c.defWindowPending = false;
    return 0;
  };

  /** tce_iommu_enable() (v1) */
  const enable = (c: TceContainer, task: Task): number => {
    if (c.enabled) return err("EBUSY");
    const first = c.groups[0];
    if (!first) return err("ENODEV");
    const group = tg(first);
    if (!group) return err("ENODEV");
    if (!group.tce32Size) return err("EPERM");
    let r = mmSet(c, task);
    if (r) return r;
    const locked = Math.floor(group.tce32Size / task.mm.pageSize);
    r = accountLockedVm(task, locked, true);
    if (r) return r;
    c.lockedPages = locked;
    c.enabled = true;
    return 0;
  };

  /** tce_iommu_disable() */
  const disable = (c: TceContainer): void => {
    if (!c.enabled) return;
    c.enabled = false;
    if (c.mm) unaccountLockedVm(c.mm, c.lockedPages);
  };

  /** vfio_spapr_ioctl_eeh_pe_op() for one group */
  const eehPeOp = (g: IommuGroup, task: Task, arg: bigint): number => {
    const pe = deps.peOfGroup(g);
    if (!pe) return err("ENODEV");
    const S = U.vfio_eeh_pe_op;
    const raw = fromUser(task, arg, S.end("op"));
    if (!raw) return err("EFAULT");
    const op = S.decode(raw);
    if (op.argsz < S.end("op") || op.flags) return err("EINVAL");
    const eeh = deps.eeh;
    switch (op.op) {
      case U.VFIO_EEH_PE_DISABLE:
        return eeh.setOption(pe, EEH_OPT_DISABLE);
      case U.VFIO_EEH_PE_ENABLE:
        return eeh.setOption(pe, EEH_OPT_ENABLE);
      case U.VFIO_EEH_PE_UNFREEZE_IO:
        return eeh.setOption(pe, EEH_OPT_THAW_MMIO);
      case U.VFIO_EEH_PE_UNFREEZE_DMA:
        return eeh.setOption(pe, EEH_OPT_THAW_DMA);
      case U.VFIO_EEH_PE_GET_STATE:
        return eeh.getState(pe);
      case U.VFIO_EEH_PE_RESET_DEACTIVATE:
        return eeh.reset(pe, EEH_RESET_DEACTIVATE);
      case U.VFIO_EEH_PE_RESET_HOT:
        return eeh.reset(pe, EEH_RESET_HOT);
      case U.VFIO_EEH_PE_RESET_FUNDAMENTAL:
        return eeh.reset(pe, EEH_RESET_FUNDAMENTAL);
      case U.VFIO_EEH_PE_CONFIGURE:
        return eeh.configure(pe);
      case U.VFIO_EEH_PE_INJECT_ERR: {
        if (op.argsz < S.end("mask")) return err("EINVAL");
        const full = fromUser(task, arg, S.end("mask"));
        if (!full) return err("EFAULT");
        const e = S.decode(full);
        return eeh.injectErr(pe, e.type, e.func, e.addr, e.mask);
      }
      default:
        return err("EINVAL");
    }
  };

  const ioctl = (c: TceContainer, task: Task, cmd: number, arg: bigint): number => {
    if (c.mm && c.mm !== task.mm) return err("EPERM");
    switch (cmd) {
      case U.VFIO_IOMMU_SPAPR_TCE_GET_INFO: {
        const first = c.groups[0];
        const group = first ? tg(first) : null;
        if (!group) return err("ENXIO");
        const S = U.vfio_iommu_spapr_tce_info;
        const minsz = S.end("dma32_window_size");
        const raw = fromUser(task, arg, minsz);
        if (!raw) return err("EFAULT");
        const info = S.decode(raw);
        if (info.argsz < minsz) return err("EINVAL");
        info.dma32_window_start = group.tce32Start;
        info.dma32_window_size = group.tce32Size;
        info.flags = 0;
        info.pgsizes = 0n;
        info.max_dynamic_windows_supported = 0;
        info.levels = 0;
        if (group.maxDynamicWindowsSupported && c.v2) {
          info.flags |= U.VFIO_IOMMU_SPAPR_INFO_DDW;
          info.pgsizes = group.pgsizes;
          info.max_dynamic_windows_supported = group.maxDynamicWindowsSupported;
          info.levels = group.maxLevels;
        }
        const n = info.argsz >= S.end("levels") ? S.end("levels") : minsz;
        return toUser(task, arg, S.encode(info).subarray(0, n)) ? 0 : err("EFAULT");
      }
      case U.VFIO_IOMMU_MAP_DMA: {
        if (!c.enabled) return err("EPERM");
        const S = U.vfio_iommu_type1_dma_map;
        const minsz = S.end("size");
        const raw = fromUser(task, arg, minsz);
        if (!raw) return err("EFAULT");
        const p = S.decode(raw);
        if (p.argsz < minsz) return err("EINVAL");
        if (p.flags & ~(U.VFIO_DMA_MAP_FLAG_READ | U.VFIO_DMA_MAP_FLAG_WRITE)) return err("EINVAL");
        let r = createDefaultWindow(c, task);
        if (r) return r;
        const f = findTable(c, p.iova);
        if (!f) return err("ENXIO");
        const mask = (1n << BigInt(f.tbl.pageShift)) - 1n;
        if (p.size & mask || p.vaddr & mask) return err("EINVAL");
        const rd = (p.flags & U.VFIO_DMA_MAP_FLAG_READ) !== 0;
        const wr = (p.flags & U.VFIO_DMA_MAP_FLAG_WRITE) !== 0;
        if (!rd && !wr) return err("EINVAL");
        const dir = rd && wr ? DMA_BIDIRECTIONAL : rd ? DMA_TO_DEVICE : DMA_FROM_DEVICE;
        r = iommuTcePutParamCheck(f.tbl, p.iova, p.vaddr);
        if (r) return r;
        const entry = Number(p.iova >> BigInt(f.tbl.pageShift));
        const pages = Number(p.size >> BigInt(f.tbl.pageShift));
        return c.v2
          ? buildV2(c, f.tbl, entry, p.vaddr, pages, dir)
          : build(c, task, f.tbl, entry, p.vaddr, pages, dir);
      }
      case U.VFIO_IOMMU_UNMAP_DMA: {
        if (!c.enabled) return err("EPERM");
        const S = U.vfio_iommu_type1_dma_unmap;
        const minsz = S.end("size");
        const raw = fromUser(task, arg, minsz);
        if (!raw) return err("EFAULT");
        const p = S.decode(raw);
        if (p.argsz < minsz) return err("EINVAL");
        if (p.flags) return err("EINVAL");
        let r = createDefaultWindow(c, task);
        if (r) return r;
        const f = findTable(c, p.iova);
        if (!f) return err("ENXIO");
        if (p.size & ((1n << BigInt(f.tbl.pageShift)) - 1n)) return err("EINVAL");
        const pages = Number(p.size >> BigInt(f.tbl.pageShift));
        r = iommuTceClearParamCheck(f.tbl, p.iova, 0n, pages);
        if (r) return r;
        return clear(c, f.tbl, Number(p.iova >> BigInt(f.tbl.pageShift)), pages);
      }
      case U.VFIO_IOMMU_SPAPR_REGISTER_MEMORY: {
        if (!c.v2) break;
        const r = mmSet(c, task);
        if (r) return r;
        const S = U.vfio_iommu_spapr_register_memory;
        const raw = fromUser(task, arg, S.end("size"));
        if (!raw) return err("EFAULT");
        const p = S.decode(raw);
        if (p.argsz < S.end("size")) return err("EINVAL");
        if (p.flags) return err("EINVAL");
        // tce_iommu_register_pages()
        const page = BigInt(task.mm.pageSize);
        if (p.vaddr % page || p.size % page || BigInt.asUintN(64, p.vaddr + p.size) < p.vaddr)
          return err("EINVAL");
        const entries = Number(p.size / page);
        let mem = mmIommuGet(task.mm, p.vaddr, entries);
        if (mem) {
          if (c.prereg.includes(mem)) {
            mmIommuPut(task.mm, mem);
            return err("EBUSY");
          }
        } else {
          const m = mmIommuNew(task, p.vaddr, entries);
          if (typeof m === "number") return m;
          mem = m;
        }
        c.prereg.push(mem);
        c.enabled = true;
        return 0;
      }
      case U.VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY: {
        if (!c.v2) break;
        if (!c.mm) return err("EPERM");
        const S = U.vfio_iommu_spapr_register_memory;
        const raw = fromUser(task, arg, S.end("size"));
        if (!raw) return err("EFAULT");
        const p = S.decode(raw);
        if (p.argsz < S.end("size")) return err("EINVAL");
        if (p.flags) return err("EINVAL");
        const page = BigInt(c.mm.pageSize);
        if (p.vaddr % page || p.size % page) return err("EINVAL");
        const mem = mmIommuGet(c.mm, p.vaddr, Number(p.size / page));
        if (!mem) return err("ENOENT");
        let ret: number;
        const i = c.prereg.indexOf(mem);
        if (i < 0) ret = err("ENOENT");
        else {
          // tce_iommu_prereg_free()
          ret = mmIommuPut(c.mm, mem);
          if (!ret) c.prereg.splice(i, 1);
        }
        mmIommuPut(c.mm, mem);
        return ret;
      }
      case U.VFIO_IOMMU_ENABLE:
        if (c.v2) break;
        return enable(c, task);
      case U.VFIO_IOMMU_DISABLE:
        if (c.v2) break;
        disable(c);
        return 0;
      case U.VFIO_EEH_PE_OP: {
        let ret = 0;
        for (const g of c.groups) {
          ret = eehPeOp(g, task, arg);
          if (ret) return ret;
        }
        return ret;
      }
      case U.VFIO_IOMMU_SPAPR_TCE_CREATE: {
        if (!c.v2) break;
        let r = mmSet(c, task);
        if (r) return r;
        if (!c.groups.length) return err("ENXIO");
        const S = U.vfio_iommu_spapr_tce_create;
        const minsz = S.end("start_addr");
        const raw = fromUser(task, arg, minsz);
        if (!raw) return err("EFAULT");
        const p = S.decode(raw);
        if (p.argsz < minsz) return err("EINVAL");
        if (p.flags) return err("EINVAL");
        r = createDefaultWindow(c, task);
        if (r) return r;
        const start = createWindow(c, task, p.page_shift, p.window_size, p.levels);
        if (typeof start === "number") return start;
        p.start_addr = start;
        return toUser(task, arg, S.encode(p).subarray(0, minsz)) ? 0 : err("EFAULT");
      }
      case U.VFIO_IOMMU_SPAPR_TCE_REMOVE: {
        if (!c.v2) break;
        const r = mmSet(c, task);
        if (r) return r;
        if (!c.groups.length) return err("ENXIO");
        const S = U.vfio_iommu_spapr_tce_remove;
        const minsz = S.end("start_addr");
        const raw = fromUser(task, arg, minsz);
        if (!raw) return err("EFAULT");
        const p = S.decode(raw);
        if (p.argsz < minsz) return err("EINVAL");
        if (p.flags) return err("EINVAL");
        if (c.defWindowPending && !p.start_addr) {
          c.defWindowPending = false;
          return 0;
        }
        return removeWindow(c, p.start_addr);
      }
    }
    return err("ENOTTY");
  };

  /** tce_iommu_release_ownership() */
  const releaseOwnership = (c: TceContainer, group: IommuTableGroup): void => {
    for (let i = 0; i < IOMMU_TABLE_GROUP_MAX_TABLES; i++) {
      const tbl = c.tables[i];
      if (!tbl) continue;
      clear(c, tbl, tbl.offset, tbl.size);
      group.ops.unsetWindow(group, i);
    }
  };

  const ops: VfioIommuDriverOps<TceContainer> = {
    name: "iommu-vfio-powerpc",
    open(arg) {
      if (arg !== U.VFIO_SPAPR_TCE_IOMMU && arg !== U.VFIO_SPAPR_TCE_v2_IOMMU) return err("EINVAL");
      return {
        enabled: false,
        v2: arg === U.VFIO_SPAPR_TCE_v2_IOMMU,
        defWindowPending: false,
        lockedPages: 0,
        mm: null,
        tables: [null, null],
        groups: [],
        prereg: [],
        pinned: new Map(),
      };
    },
    release(c) {
      while (c.groups.length) ops.detachGroup(c, c.groups[0] as IommuGroup);
      for (let i = 0; i < IOMMU_TABLE_GROUP_MAX_TABLES; i++) {
        const tbl = c.tables[i];
        if (tbl) freeTable(c, tbl);
        c.tables[i] = null;
      }
      for (const mem of c.prereg.splice(0)) if (c.mm) mmIommuPut(c.mm, mem);
      disable(c);
    },
    ioctl(c, task, cmd, arg) {
      if (cmd === U.VFIO_CHECK_EXTENSION) {
        switch (u32(arg)) {
          case U.VFIO_SPAPR_TCE_IOMMU:
          case U.VFIO_SPAPR_TCE_v2_IOMMU:
            return 1;
          case U.VFIO_EEH:
            return deps.eeh.enabled ? 1 : 0;
          default:
            return 0;
        }
      }
      if (!c) return err("EINVAL");
      return ioctl(c, task, cmd, arg);
    },
    /** tce_iommu_attach_group() */
    attachGroup(c, g) {
      const group = tg(g);
      if (!group) return err("ENODEV");
      if (c.v2 && group.maxDynamicWindowsSupported === 0) return err("EINVAL");
      if (!c.v2 && c.groups.length) return err("EBUSY");
      for (const other of c.groups) {
        if (other === g) return err("EBUSY");
        if ((tg(other) as IommuTableGroup).ops.createTable !== group.ops.createTable)
          return err("EPERM");
      }
      // tce_iommu_take_ownership(): the container's windows go to the new group.
      let ret = 0;
      for (let i = 0; i < IOMMU_TABLE_GROUP_MAX_TABLES; i++) {
        const tbl = c.tables[i];
        if (!tbl) continue;
        ret = group.ops.setWindow(group, i, tbl);
        if (ret) {
          for (let j = 0; j < IOMMU_TABLE_GROUP_MAX_TABLES; j++) group.ops.unsetWindow(group, j);
          break;
        }
      }
      if (!c.groups.length && !c.tables[0]) c.defWindowPending = true;
      if (!ret) c.groups.unshift(g);
      return ret;
    },
    /** tce_iommu_detach_group() */
    detachGroup(c, g) {
      const i = c.groups.indexOf(g);
      if (i < 0) return;
      c.groups.splice(i, 1);
      releaseOwnership(c, tg(g) as IommuTableGroup);
    },
  };
  return ops;
}
