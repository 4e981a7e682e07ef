/**
 * The VFIO type1 IOMMU backend, drivers/vfio/vfio_iommu_type1.c (Linux 6.12): a container's
 * IOMMU groups are attached to paging domains (a group joins an existing domain of the same
 * driver and coherency, else gets its own, and every existing mapping is replayed into it);
 * MAP_DMA pins the user pages (RLIMIT_MEMLOCK accounting unless CAP_IPC_LOCK) and maps
 * each physically contiguous run into every domain with IOMMU_CACHE; UNMAP_DMA with v1 or
 * v2 semantics; VADDR invalidation and update; GET_INFO with its capability chain; dirty
 * page tracking, which reports every page of a mapping dirty because an IOMMU-backed group
 * can write anywhere it is mapped. The mappings live in lib/rbtree.c's tree, linked and
 * looked up by the source's own descents in 64-bit arithmetic, so at the top of the address
 * space, where iova + size wraps to 0, lookups miss exactly what the kernel's miss.
 *
 * Emulated (mdev) IOMMU groups, external page pinning (vfio_pin_pages), MMIO (VM_PFNMAP)
 * vaddrs and the fine-grained-superpage probe (which only changes how unmapping batches
 * its work) are not modelled: with no emulated group, a container that has mappings always
 * has a domain.
 */
import { PAGE_SHIFT, PAGE_SIZE } from "../../machine/hw.js";
import { err } from "../../uapi/errno.js";
import * as U from "../../uapi/vfio.js";
import {
  rbAdd,
  rbErase,
  rbFirst,
  rbNext,
  rbPrev,
  type RbNode,
  type RbRoot,
} from "../core/rbtree.js";
import { kstrtobool } from "../cmdline.js";
import { kstrtoul } from "../core/vfs.js";
import type { Task } from "../core/task.js";
import {
  ffs,
  fls,
  gatherInit,
  IOMMU_CACHE,
  IOMMU_READ,
  IOMMU_RESV_DIRECT_RELAXABLE,
  IOMMU_WRITE,
  iommuAttachGroup,
  iommuDetachGroup,
  iommuDomainFree,
  iommuEnableNesting,
  iommuGetGroupResvRegions,
  iommuGroupHasIsolatedMsi,
  iommuIotlbSync,
  iommuIovaToPhys,
  iommuMap,
  iommuPagingDomainAlloc,
  iommuUnmap,
  iommuUnmapFast,
  type IommuDomain,
  type ResvRegion,
} from "../iommu/domain.js";
import type { IommuGroup } from "../iommu/iommu.js";
import { fromUser, toUser, VfioInfoCap, type VfioIommuDriverOps, type VfioKernel } from "./vfio.js";

const U64 = (1n << 64n) - 1n;
const u64 = (x: bigint) => BigInt.asUintN(64, x);
const PAGE = BigInt(PAGE_SIZE);
const PAGE_MASK = u64(~(PAGE - 1n));
/** x86-64 USER_PTR_MAX = TASK_SIZE_MAX: 2^47 minus a page. */
const USER_PTR_MAX = (1n << 47n) - PAGE;
/** DIRTY_BITMAP_PAGES_MAX = INT_MAX, and the bytes such a bitmap takes. */
const DIRTY_BITMAP_PAGES_MAX = (1n << 31n) - 1n;
const dirtyBitmapBytes = (n: bigint) => (((n + 63n) / 64n) * 64n) / 8n;
const DIRTY_BITMAP_SIZE_MAX = dirtyBitmapBytes(DIRTY_BITMAP_PAGES_MAX);

/**
 * __ffs() of a user-supplied value that may be 0: x86 runs it as TZCNT, which gives 64,
 * and a 64-bit shift by it is taken modulo 64.
 */
const userShift = (v: bigint, by: bigint) => v >> BigInt(by === 0n ? 0 : ffs(by) & 63);

/** struct vfio_dma, linked into the iommu's dma_list by iova. */
interface VfioDma extends RbNode<VfioDma> {
  iova: bigint;
  vaddr: bigint;
  size: bigint;
  prot: number;
  iommuMapped: boolean;
  lockCap: boolean;
  vaddrInvalid: boolean;
  /** The mapping task (its mm is dma->mm, its RLIMIT_MEMLOCK the one charged). */
  task: Task;
  /** Dirty bitmap, one bit per smallest page, plus a spare u64 for shifting. */
  bitmap: Uint8Array | null;
  lockedVm: number;
}

/** struct vfio_domain */
interface VfioDomain {
  domain: IommuDomain;
  groups: IommuGroup[];
  enforceCacheCoherency: boolean;
}

/** struct vfio_iova */
interface VfioIova {
  start: bigint;
  end: bigint;
}

/** struct vfio_iommu */
class VfioIommu {
  /** Most recently added first (list_add). */
  domains: VfioDomain[] = [];
  iovaList: VfioIova[] = [];
  /** dma_list: the mappings, an rb-tree ordered by iova. */
  dmaList: RbRoot<VfioDma> = { rbNode: null };
  vaddrInvalidCount = 0;
  pgsizeBitmap = PAGE_MASK;
  numNonPinnedGroups = 0;
  dirtyPageTracking = false;

  constructor(
    readonly v2: boolean,
    readonly nesting: boolean,
    public dmaAvail: number,
  ) {}
}

/** The module parameters of vfio_iommu_type1 (read when used, as module_param variables are). */
interface Type1Params {
  allowUnsafeInterrupts(): boolean;
  disableHugepages(): boolean;
  dmaEntryLimit(): number;
}

export function vfioIommuType1(k: Pick<VfioKernel, "param">): VfioIommuDriverOps<VfioIommu> {
  const p: Type1Params = {
    allowUnsafeInterrupts: () => kstrtobool(k.param("vfio_iommu_type1.allow_unsafe_interrupts")),
    disableHugepages: () => kstrtobool(k.param("vfio_iommu_type1.disable_hugepages")),
    dmaEntryLimit: () => {
      // param_set_uint (kstrtouint): a value that does not parse leaves the default, U16_MAX.
      const v = kstrtoul(k.param("vfio_iommu_type1.dma_entry_limit") ?? "");
      return v !== null && v <= 0xffffffffn ? Number(v) : 0xffff;
    },
  };
  return {
    name: "vfio-iommu-type1",
    open(arg, task) {
      // kzalloc of the vfio_iommu comes before the type is looked at.
      if (task.faults.should("slab", "vfio_iommu")) return err("ENOMEM");
      switch (arg) {
        case U.VFIO_TYPE1_IOMMU:
          return new VfioIommu(false, false, p.dmaEntryLimit());
        case U.VFIO_TYPE1_NESTING_IOMMU:
          return new VfioIommu(true, true, p.dmaEntryLimit());
        case U.VFIO_TYPE1v2_IOMMU:
          return new VfioIommu(true, false, p.dmaEntryLimit());
        default:
          return err("EINVAL");
      }
    },
    release: (iommu) => release(iommu),
    ioctl(iommu, task, cmd, arg) {
      if (cmd === U.VFIO_CHECK_EXTENSION) return checkExtension(iommu, arg);
      if (!iommu) return err("ENOTTY");
      switch (cmd) {
        case U.VFIO_IOMMU_GET_INFO:
          return getInfo(iommu, task, arg);
        case U.VFIO_IOMMU_MAP_DMA:
          return mapDma(iommu, task, arg, p);
        case U.VFIO_IOMMU_UNMAP_DMA:
          return unmapDma(iommu, task, arg);
        case U.VFIO_IOMMU_DIRTY_PAGES:
          return dirtyPages(iommu, task, arg);
        default:
          return err("ENOTTY");
      }
    },
    attachGroup: (iommu, group, task) => {
      // kzalloc of the vfio_iommu_group and of the vfio_domain, after the EBUSY/EINVAL checks.
      if (!iommu.vaddrInvalidCount && !findGroup(iommu, group)) {
        if (task.faults.should("slab", "vfio_iommu_group")) return err("ENOMEM");
        if (task.faults.should("slab", "vfio_domain")) return err("ENOMEM");
      }
      return attachGroup(iommu, group, p);
    },
    detachGroup: (iommu, group) => detachGroup(iommu, group),
  };
}

/* ---------------------------------------------------------------------------------- */
/* The dma list                                                                        */
/* ---------------------------------------------------------------------------------- */

/*
 * The walks below are the kernel's, comparison for comparison, with dma_addr_t and size_t
 * sums taken modulo 2^64 as in C. A mapping ending at 2^64 (possible with a 64-bit
 * aperture) has iova + size = 0 there, and so does a range ending at 2^64: vfio_find_dma()
 * never finds such a mapping, nor anything for such a range, and vfio_find_dma_first_node()
 * never returns the mapping and goes right of it, past whatever lies on its left. What a
 * lookup finds then depends on the tree's shape, which vfio_link_dma() and lib/rbtree.c
 * determine.
 */

/** dma->iova + dma->size as a dma_addr_t. */
const dmaEnd = (d: VfioDma) => u64(d.iova + d.size);

/** vfio_find_dma(): the first mapping the descent meets that overlaps [start, start + size). */
function findDma(iommu: VfioIommu, start: bigint, size: bigint): VfioDma | null {
  const end = u64(start + size);
  let node = iommu.dmaList.rbNode;
  while (node) {
    if (end <= node.iova) node = node.rbLeft;
    else if (start >= dmaEnd(node)) node = node.rbRight;
    else return node;
  }
  return null;
}

/**
 * vfio_find_dma_first_node(): the descent's last mapping ending above start (stopping at one
 * that contains start), or null when there is none or (size not 0) it begins at or after
 * start + size.
 */
function findDmaFirstNode(iommu: VfioIommu, start: bigint, size: bigint): VfioDma | null {
  let res: VfioDma | null = null;
  let node = iommu.dmaList.rbNode;
  while (node) {
    if (start < dmaEnd(node)) {
      res = node;
      if (start >= node.iova) break;
      node = node.rbLeft;
    } else {
      node = node.rbRight;
    }
  }
  if (res && size && res.iova >= u64(start + size)) res = null;
  return res;
}

/**
 * vfio_link_dma(): left of every mapping it ends at or below. Linked while zero-sized, a
 * new mapping goes left of one at the same iova.
 */
function linkDma(iommu: VfioIommu, dma: VfioDma): void {
  rbAdd(dma, iommu.dmaList, (n, d) => u64(n.iova + n.size) <= d.iova);
}

/* ---------------------------------------------------------------------------------- */
/* Pinning and locked memory                                                           */
/* ---------------------------------------------------------------------------------- */

/** mm_lock_acct() → __account_locked_vm(): ENOMEM past RLIMIT_MEMLOCK unless lockCap. */
function mmLockAcct(task: Task, lockCap: boolean, npage: number): number {
  const mm = task.mm;
  if (npage > 0) {
    if (!lockCap && BigInt(mm.lockedVm + npage) > task.rlimitMemlock >> BigInt(PAGE_SHIFT))
      return err("ENOMEM");
    mm.lockedVm += npage;
  } else {
    mm.lockedVm += npage;
  }
  return 0;
}

/** vfio_lock_acct() */
function lockAcct(dma: VfioDma, npage: number): number {
  if (!npage) return 0;
  const r = mmLockAcct(dma.task, dma.lockCap, npage);
  if (!r) dma.lockedVm += npage;
  return r;
}

/**
 * vfio_pin_pages_remote(): pin from vaddr the longest run of physically contiguous pages
 * (one page when disable_hugepages), charging each against the caller's RLIMIT_MEMLOCK;
 * the first frame and the count, or -errno with nothing left pinned.
 */
function pinPagesRemote(
  dma: VfioDma,
  task: Task,
  vaddr: bigint,
  npage: bigint,
  limit: bigint,
  disableHugepages: boolean,
): { pfn: number; n: number } | number {
  const write = (dma.prot & IOMMU_WRITE) !== 0;
  let base = -1;
  let pinned = 0;
  let acct = 0;
  let ret = 0;
  while (npage) {
    const got = task.mm.pin(vaddr, 1, write);
    if (!got) {
      ret = err("EFAULT");
      break;
    }
    const pfn = got[0] as number;
    if (base < 0) base = pfn;
    if (pfn !== base + pinned) {
      // Not contiguous: the next call starts from this page.
      task.mm.unpin(got);
      break;
    }
    if (!dma.lockCap && BigInt(task.mm.lockedVm + acct + 1) > limit) {
      task.mm.unpin(got);
      ret = err("ENOMEM");
      break;
    }
    acct++;
    pinned++;
    npage--;
    vaddr += PAGE;
    if (disableHugepages) break;
  }
  if (!ret) ret = lockAcct(dma, acct);
  if (ret < 0) {
    for (let i = 0; i < pinned; i++) task.mm.unpin([base + i]);
    return ret;
  }
  return { pfn: base, n: pinned };
}

/** vfio_unpin_pages_remote(): the pages unpinned (all of them: none are reserved). */
function unpinPagesRemote(dma: VfioDma, pfn: number, npage: number, doAccounting: boolean): number {
  for (let i = 0; i < npage; i++) dma.task.mm.unpin([pfn + i]);
  if (doAccounting) lockAcct(dma, -npage);
  return npage;
}

/* ---------------------------------------------------------------------------------- */
/* Mapping                                                                             */
/* ---------------------------------------------------------------------------------- */

/** vfio_iommu_map(): into every domain, undone on failure. */
function iommuMapAll(
  iommu: VfioIommu,
  iova: bigint,
  pfn: number,
  npage: number,
  prot: number,
): number {
  const size = BigInt(npage) << BigInt(PAGE_SHIFT);
  for (let i = 0; i < iommu.domains.length; i++) {
    const d = iommu.domains[i] as VfioDomain;
    const r = iommuMap(d.domain, iova, BigInt(pfn) << BigInt(PAGE_SHIFT), size, prot | IOMMU_CACHE);
    if (r) {
      for (const done of iommu.domains.slice(0, i).reverse()) iommuUnmap(done.domain, iova, size);
      return r;
    }
  }
  return 0;
}

/**
 * vfio_unmap_unpin(): unmap from every domain and unpin what the first domain mapped
 * (found through its tables, a physically contiguous run at a time).
 */
function unmapUnpin(iommu: VfioIommu, dma: VfioDma, doAccounting: boolean): number {
  if (!dma.size || !iommu.domains.length) return 0;
  const [first, ...rest] = iommu.domains as [VfioDomain, ...VfioDomain[]];
  for (const d of rest) iommuUnmap(d.domain, dma.iova, dma.size);
  const gather = gatherInit();
  const regions: { phys: bigint; len: bigint }[] = [];
  const end = dmaEnd(dma);
  let iova = dma.iova;
  while (iova < end) {
    const phys = iommuIovaToPhys(first.domain, iova);
    if (!phys) {
      iova = u64(iova + PAGE);
      continue;
    }
    let len = PAGE;
    while (u64(iova + len) < end && iommuIovaToPhys(first.domain, iova + len) === phys + len)
      len += PAGE;
    const unmapped = iommuUnmapFast(first.domain, iova, len, gather);
    if (!unmapped) break;
    regions.push({ phys, len: unmapped });
    iova = u64(iova + unmapped);
  }
  dma.iommuMapped = false;
  iommuIotlbSync(first.domain, gather);
  let unlocked = 0;
  for (const r of regions)
    unlocked += unpinPagesRemote(
      dma,
      Number(r.phys >> BigInt(PAGE_SHIFT)),
      Number(r.len / PAGE),
      false,
    );
  if (doAccounting) {
    lockAcct(dma, -unlocked);
    return 0;
  }
  return unlocked;
}

/** vfio_remove_dma() */
function removeDma(iommu: VfioIommu, dma: VfioDma): void {
  unmapUnpin(iommu, dma, true);
  rbErase(dma, iommu.dmaList);
  dma.bitmap = null;
  if (dma.vaddrInvalid) iommu.vaddrInvalidCount--;
  iommu.dmaAvail++;
}

/** vfio_pin_map_dma(): the mapping grows as runs are pinned and mapped; undone on failure. */
function pinMapDma(
  iommu: VfioIommu,
  dma: VfioDma,
  mapSize: bigint,
  task: Task,
  p: Type1Params,
): number {
  const limit = task.rlimitMemlock >> BigInt(PAGE_SHIFT);
  let size = mapSize;
  let ret = 0;
  while (size) {
    const r = pinPagesRemote(
      dma,
      task,
      dma.vaddr + dma.size,
      size / PAGE,
      limit,
      p.disableHugepages(),
    );
    if (typeof r === "number") {
      ret = r;
      break;
    }
    ret = iommuMapAll(iommu, dma.iova + dma.size, r.pfn, r.n, dma.prot);
    if (ret) {
      unpinPagesRemote(dma, r.pfn, r.n, true);
      break;
    }
    size -= BigInt(r.n) * PAGE;
    dma.size += BigInt(r.n) * PAGE;
  }
  dma.iommuMapped = true;
  if (ret) removeDma(iommu, dma);
  return ret;
}

/** vfio_dma_bitmap_alloc() */
function dmaBitmapAlloc(dma: VfioDma, pgsize: bigint): number {
  const npages = dma.size / pgsize;
  if (npages > DIRTY_BITMAP_PAGES_MAX) return err("EINVAL");
  dma.bitmap = new Uint8Array(Number(dirtyBitmapBytes(npages)) + 8);
  return 0;
}

/** vfio_iommu_iova_dma_valid() */
function iovaDmaValid(iommu: VfioIommu, start: bigint, end: bigint): boolean {
  if (!iommu.iovaList.length) return true;
  return iommu.iovaList.some((n) => start >= n.start && end <= n.end);
}

/** vfio_change_dma_owner(): a new vaddr from another process moves the accounting there. */
function changeDmaOwner(dma: VfioDma, task: Task): number {
  if (task.mm === dma.task.mm) return 0;
  const lockCap = task.capable("CAP_IPC_LOCK");
  const r = mmLockAcct(task, lockCap, dma.lockedVm);
  if (r) return r;
  mmLockAcct(dma.task, dma.lockCap, -dma.lockedVm);
  dma.task = task;
  dma.lockCap = lockCap;
  return 0;
}

/** vfio_dma_do_map(), with every check in the source's order. */
function doMap(
  iommu: VfioIommu,
  task: Task,
  map: { flags: number; vaddr: bigint; iova: bigint; size: bigint },
  p: Type1Params,
): number {
  const setVaddr = (map.flags & U.VFIO_DMA_MAP_FLAG_VADDR) !== 0;
  const { iova, vaddr, size } = map;
  let prot = 0;
  if (map.flags & U.VFIO_DMA_MAP_FLAG_WRITE) prot |= IOMMU_WRITE;
  if (map.flags & U.VFIO_DMA_MAP_FLAG_READ) prot |= IOMMU_READ;
  if ((prot && setVaddr) || (!prot && !setVaddr)) return err("EINVAL");
  const pgsize = 1n << BigInt(ffs(iommu.pgsizeBitmap));
  if (!size || (size | iova | vaddr) & (pgsize - 1n)) return err("EINVAL");
  // Don't allow IOVA or virtual address wrap.
  if (u64(iova + size - 1n) < iova || u64(vaddr + size - 1n) < vaddr) return err("EINVAL");
  let dma = findDma(iommu, iova, size);
  if (setVaddr) {
    if (!dma) return err("ENOENT");
    if (!dma.vaddrInvalid || dma.iova !== iova || dma.size !== size) return err("EINVAL");
    const r = changeDmaOwner(dma, task);
    if (r) return r;
    dma.vaddr = vaddr;
    dma.vaddrInvalid = false;
    iommu.vaddrInvalidCount--;
    return 0;
  }
  if (dma) return err("EEXIST");
  if (!iommu.dmaAvail) return err("ENOSPC");
  if (!iovaDmaValid(iommu, iova, iova + size - 1n)) return err("EINVAL");
  if (task.faults.should("slab", "vfio_dma")) return err("ENOMEM");
  iommu.dmaAvail--;
  dma = {
    iova,
    vaddr,
    size: 0n,
    prot,
    iommuMapped: false,
    lockCap: task.capable("CAP_IPC_LOCK"),
    vaddrInvalid: false,
    task,
    bitmap: null,
    lockedVm: 0,
    rbParent: null,
    rbLeft: null,
    rbRight: null,
    rbRed: false,
  };
  // Inserted zero-sized; it grows as chunks are mapped.
  linkDma(iommu, dma);
  let ret = pinMapDma(iommu, dma, size, task, p);
  if (!ret && iommu.dirtyPageTracking) {
    ret = dmaBitmapAlloc(dma, pgsize);
    if (ret) removeDma(iommu, dma);
  }
  return ret;
}

/* ---------------------------------------------------------------------------------- */
/* Dirty bitmaps                                                                       */
/* ---------------------------------------------------------------------------------- */

function bitmapToBig(b: Uint8Array): bigint {
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i] as number);
  return v;
}

function bigToBitmap(v: bigint, b: Uint8Array): void {
  for (let i = 0; i < b.length; i++) {
    b[i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

/** bitmap_set(bitmap, 0, nbits) */
function bitmapSetLow(b: Uint8Array, nbits: bigint): void {
  bigToBitmap(bitmapToBig(b) | ((1n << nbits) - 1n), b);
}

/**
 * update_user_bitmap(): this mapping's bits go to the user bitmap at their offset from
 * baseIova, merged with the u64 already there when the offset is not word aligned.
 */
function updateUserBitmap(
  task: Task,
  bitmapAddr: bigint,
  iommu: VfioIommu,
  dma: VfioDma,
  baseIova: bigint,
  pgsize: bigint,
): number {
  const bm = dma.bitmap as Uint8Array;
  const pgshift = BigInt(ffs(pgsize));
  const nbits = dma.size >> pgshift;
  const bitOffset = (dma.iova - baseIova) >> pgshift;
  const copyOffset = bitOffset / 64n;
  const shift = bitOffset % 64n;
  // Every page is dirty while a group could have written it through its IOMMU mapping.
  if (iommu.numNonPinnedGroups && dma.iommuMapped) bitmapSetLow(bm, nbits);
  const at = u64(bitmapAddr + copyOffset * 8n);
  if (shift) {
    let v = (bitmapToBig(bm) << shift) & ((1n << (nbits + shift)) - 1n);
    const leftover = fromUser(task, at, 8);
    if (!leftover) return err("EFAULT");
    v |= bitmapToBig(leftover);
    bigToBitmap(v, bm);
  }
  const out = bm.subarray(0, Number(dirtyBitmapBytes(nbits + shift)));
  return toUser(task, at, out) ? 0 : err("EFAULT");
}

/** vfio_iova_dirty_bitmap(): the range must cover whole mappings. */
function iovaDirtyBitmap(
  task: Task,
  bitmapAddr: bigint,
  iommu: VfioIommu,
  iova: bigint,
  size: bigint,
  pgsize: bigint,
): number {
  let dma = findDma(iommu, iova, 1n);
  if (dma && dma.iova !== iova) return err("EINVAL");
  dma = findDma(iommu, u64(iova + size - 1n), 0n);
  if (dma && dmaEnd(dma) !== u64(iova + size)) return err("EINVAL");
  for (let d = rbFirst(iommu.dmaList); d; d = rbNext(d)) {
    if (d.iova < iova) continue;
    if (d.iova > u64(iova + size - 1n)) break;
    const r = updateUserBitmap(task, bitmapAddr, iommu, d, iova, pgsize);
    if (r) return r;
    // Re-populated with the externally pinned pages: there are none.
    (d.bitmap as Uint8Array).fill(0);
  }
  return 0;
}

/** verify_bitmap_size() */
function verifyBitmapSize(npages: bigint, bitmapSize: bigint): number {
  if (
    !npages ||
    !bitmapSize ||
    bitmapSize > DIRTY_BITMAP_SIZE_MAX ||
    bitmapSize < dirtyBitmapBytes(npages)
  )
    return err("EINVAL");
  return 0;
}

/** access_ok() for a range that is not a small constant (x86-64). */
function accessOk(addr: bigint, size: bigint): boolean {
  const sum = u64(addr + size);
  return sum <= USER_PTR_MAX && sum >= addr;
}

/* ---------------------------------------------------------------------------------- */
/* Unmapping                                                                           */
/* ---------------------------------------------------------------------------------- */

/**
 * vfio_dma_do_unmap(): v2 refuses a range that bisects a mapping; v1 removes a mapping
 * whose first iova the range covers, whatever the size, and stops at one it starts
 * inside. `unmap.size` becomes what was removed (or invalidated).
 */
function doUnmap(
  iommu: VfioIommu,
  task: Task,
  unmap: { flags: number; iova: bigint; size: bigint },
  bitmap: { pgsize: bigint; data: bigint },
): number {
  let unmapped = 0n;
  const unmapAll = (unmap.flags & U.VFIO_DMA_UNMAP_FLAG_ALL) !== 0;
  const invalidateVaddr = (unmap.flags & U.VFIO_DMA_UNMAP_FLAG_VADDR) !== 0;
  const getDirty = (unmap.flags & U.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP) !== 0;
  const iova = unmap.iova;
  let size = unmap.size;
  const done = (ret: number) => {
    unmap.size = unmapped;
    return ret;
  };
  const pgsize = 1n << BigInt(ffs(iommu.pgsizeBitmap));
  if (iova & (pgsize - 1n)) return done(err("EINVAL"));
  if (unmapAll) {
    if (iova || size) return done(err("EINVAL"));
    size = U64;
  } else if (!size || size & (pgsize - 1n) || u64(iova + size - 1n) < iova) {
    return done(err("EINVAL"));
  }
  // While dirty tracking, only the smallest page size.
  if (getDirty && (!iommu.dirtyPageTracking || bitmap.pgsize !== pgsize))
    return done(err("EINVAL"));
  if (iommu.v2 && !unmapAll) {
    let dma = findDma(iommu, iova, 1n);
    if (dma && dma.iova !== iova) return done(err("EINVAL"));
    dma = findDma(iommu, u64(iova + size - 1n), 0n);
    if (dma && dmaEnd(dma) !== u64(iova + size)) return done(err("EINVAL"));
  }
  let ret = 0;
  const end = u64(iova + size);
  const first = findDmaFirstNode(iommu, iova, size);
  let dma = first;
  while (dma) {
    if (dma.iova >= end) break;
    if (!iommu.v2 && iova > dma.iova) break;
    if (invalidateVaddr) {
      if (dma.vaddrInvalid) {
        // Roll back what this call invalidated.
        for (let d = first; d !== dma; d = rbNext(d as VfioDma)) {
          (d as VfioDma).vaddrInvalid = false;
          iommu.vaddrInvalidCount--;
        }
        ret = err("EINVAL");
        unmapped = 0n;
        break;
      }
      dma.vaddrInvalid = true;
      iommu.vaddrInvalidCount++;
      unmapped += dma.size;
      dma = rbNext(dma);
      continue;
    }
    if (getDirty) {
      ret = updateUserBitmap(task, bitmap.data, iommu, dma, iova, pgsize);
      if (ret) break;
    }
    unmapped += dma.size;
    const next = rbNext(dma);
    removeDma(iommu, dma);
    dma = next;
  }
  return done(ret);
}

/** vfio_iommu_unmap_unpin_all() */
function unmapUnpinAll(iommu: VfioIommu): void {
  for (let d = rbFirst(iommu.dmaList); d; d = rbFirst(iommu.dmaList)) removeDma(iommu, d);
}

/* ---------------------------------------------------------------------------------- */
/* Valid IOVA ranges                                                                   */
/* ---------------------------------------------------------------------------------- */

/** vfio_iommu_aper_conflict(): the new aperture is disjoint or leaves a mapping outside. */
function aperConflict(iommu: VfioIommu, start: bigint, end: bigint): boolean {
  const list = iommu.iovaList;
  if (!list.length) return false;
  const first = list[0] as VfioIova;
  const last = list[list.length - 1] as VfioIova;
  if (start > last.end || end < first.start) return true;
  if (start > first.start && findDma(iommu, first.start, start - first.start)) return true;
  if (end < last.end && findDma(iommu, end + 1n, last.end - end)) return true;
  return false;
}

/** vfio_iommu_aper_resize() */
function aperResize(list: VfioIova[], start: bigint, end: bigint): VfioIova[] {
  if (!list.length) return [{ start, end }];
  let out = [...list];
  for (const node of [...out]) {
    if (start < node.start) break;
    if (start >= node.start && start < node.end) {
      node.start = start;
      break;
    }
    out = out.filter((n) => n !== node);
  }
  for (const node of [...out]) {
    if (end > node.end) continue;
    if (end > node.start && end <= node.end) {
      node.end = end;
      continue;
    }
    out = out.filter((n) => n !== node);
  }
  return out;
}

/** vfio_iommu_resv_conflict() */
function resvConflict(iommu: VfioIommu, regions: ResvRegion[]): boolean {
  return regions.some(
    (r) => r.type !== IOMMU_RESV_DIRECT_RELAXABLE && !!findDma(iommu, r.start, r.length),
  );
}

/** vfio_iommu_resv_exclude(): EINVAL when nothing is left. */
function resvExclude(list: VfioIova[], regions: ResvRegion[]): VfioIova[] | number {
  let out = list;
  for (const resv of regions) {
    if (resv.type === IOMMU_RESV_DIRECT_RELAXABLE) continue;
    const start = resv.start;
    const end = resv.start + resv.length - 1n;
    const next: VfioIova[] = [];
    for (const n of out) {
      if (start > n.end || end < n.start) {
        next.push(n);
        continue;
      }
      if (start > n.start) next.push({ start: n.start, end: start - 1n });
      if (end < n.end) next.push({ start: end + 1n, end: n.end });
    }
    out = next;
  }
  return out.length ? out : err("EINVAL");
}

/** vfio_iommu_aper_expand(): the narrowest aperture of the domains left. */
function aperExpand(iommu: VfioIommu, copy: VfioIova[]): void {
  if (!copy.length) return;
  let start = 0n;
  let end = U64;
  for (const d of iommu.domains) {
    const g = d.domain.geometry;
    if (g.apertureStart > start) start = g.apertureStart;
    if (g.apertureEnd < end) end = g.apertureEnd;
  }
  (copy[0] as VfioIova).start = start;
  (copy[copy.length - 1] as VfioIova).end = end;
}

/** vfio_iommu_resv_refresh(): rebuild the list from its bounds minus every group's regions. */
function resvRefresh(iommu: VfioIommu, copy: VfioIova[]): VfioIova[] | number {
  if (!copy.length) return err("EINVAL");
  const regions = iommu.domains.flatMap((d) =>
    d.groups.flatMap((g) => iommuGetGroupResvRegions(g)),
  );
  const start = (copy[0] as VfioIova).start;
  const end = (copy[copy.length - 1] as VfioIova).end;
  return resvExclude(aperResize([], start, end), regions);
}

/* ---------------------------------------------------------------------------------- */
/* Groups and domains                                                                  */
/* ---------------------------------------------------------------------------------- */

function findGroup(iommu: VfioIommu, group: IommuGroup): VfioDomain | undefined {
  return iommu.domains.find((d) => d.groups.includes(group));
}

/** vfio_update_pgsize_bitmap(): common page sizes, sub-page sizes folded into PAGE_SIZE. */
function updatePgsizeBitmap(iommu: VfioIommu): void {
  let bm = U64;
  for (const d of iommu.domains) bm &= d.domain.pgsizeBitmap;
  if (bm & ~PAGE_MASK) bm = (bm & PAGE_MASK) | PAGE;
  iommu.pgsizeBitmap = bm;
}

/**
 * vfio_iommu_replay(): map every existing mapping into a new domain, following the
 * physical runs of the first domain's tables.
 */
function replay(iommu: VfioIommu, domain: VfioDomain): number {
  const d = iommu.domains[0];
  let dma = rbFirst(iommu.dmaList);
  let ret = 0;
  outer: for (; dma; dma = rbNext(dma)) {
    let iova = dma.iova;
    while (d && iova < dmaEnd(dma)) {
      const phys = iommuIovaToPhys(d.domain, iova);
      if (!phys) {
        iova = u64(iova + PAGE);
        continue;
      }
      let size = PAGE;
      while (
        u64(iova + size) < dmaEnd(dma) &&
        iommuIovaToPhys(d.domain, iova + size) === phys + size
      )
        size += PAGE;
      ret = iommuMap(domain.domain, iova, phys, size, dma.prot | IOMMU_CACHE);
      if (ret) break outer;
      iova = u64(iova + size);
    }
  }
  if (!ret) {
    for (let x = rbFirst(iommu.dmaList); x; x = rbNext(x)) x.iommuMapped = true;
    return 0;
  }
  for (; dma; dma = rbPrev(dma)) iommuUnmap(domain.domain, dma.iova, dma.size);
  return ret;
}

/** vfio_iommu_type1_attach_group() */
function attachGroup(iommu: VfioIommu, group: IommuGroup, p: Type1Params): number {
  // Attach could require pinning, so disallow while vaddr is invalid.
  if (iommu.vaddrInvalidCount) return err("EBUSY");
  if (findGroup(iommu, group)) return err("EINVAL");
  const dom = iommuPagingDomainAlloc(group.ops);
  if (typeof dom === "number") return dom;
  const domain: VfioDomain = { domain: dom, groups: [], enforceCacheCoherency: false };
  const outDomain = (r: number) => {
    iommuDomainFree(dom);
    return r;
  };
  const outDetach = (r: number) => {
    iommuDetachGroup(dom, group);
    return outDomain(r);
  };
  if (iommu.nesting) {
    const r = iommuEnableNesting();
    if (r) return outDomain(r);
  }
  let ret = iommuAttachGroup(dom, group);
  if (ret) return outDomain(ret);
  const geo = dom.geometry;
  if (aperConflict(iommu, geo.apertureStart, geo.apertureEnd)) return outDetach(err("EINVAL"));
  const resv = iommuGetGroupResvRegions(group);
  if (resvConflict(iommu, resv)) return outDetach(err("EINVAL"));
  const copy = aperResize(
    iommu.iovaList.map((n) => ({ ...n })),
    geo.apertureStart,
    geo.apertureEnd,
  );
  const iovaCopy = resvExclude(copy, resv);
  if (typeof iovaCopy === "number") return outDetach(iovaCopy);
  // No x86 driver reports a software-managed MSI region (IOMMU_RESV_SW_MSI): no MSI cookie.
  domain.groups.unshift(group);
  if (!p.allowUnsafeInterrupts() && !iommuGroupHasIsolatedMsi(group))
    return outDetach(err("EPERM"));
  // Blocking no-snoop is always turned on when the IOMMU can do it.
  if (dom.ops.enforceCacheCoherency)
    domain.enforceCacheCoherency = dom.ops.enforceCacheCoherency(dom);
  let joined = false;
  for (const d of iommu.domains) {
    if (d.domain.ops !== dom.ops || d.enforceCacheCoherency !== domain.enforceCacheCoherency)
      continue;
    iommuDetachGroup(dom, group);
    if (!iommuAttachGroup(d.domain, group)) {
      d.groups.unshift(group);
      iommuDomainFree(dom);
      joined = true;
      break;
    }
    ret = iommuAttachGroup(dom, group);
    if (ret) return outDomain(ret);
  }
  if (!joined) {
    ret = replay(iommu, domain);
    if (ret) return outDetach(ret);
    iommu.domains.unshift(domain);
    updatePgsizeBitmap(iommu);
  }
  iommu.iovaList = iovaCopy;
  // An IOMMU-backed group can dirty memory directly.
  iommu.numNonPinnedGroups++;
  return 0;
}

/** vfio_iommu_type1_detach_group() */
function detachGroup(iommu: VfioIommu, group: IommuGroup): void {
  const copy = iommu.iovaList.map((n) => ({ ...n }));
  const domain = findGroup(iommu, group);
  if (domain) {
    iommuDetachGroup(domain.domain, group);
    domain.groups.splice(domain.groups.indexOf(group), 1);
    // Group ownership provides privilege: with no group left the domain goes, and with
    // the last domain every mapping.
    if (!domain.groups.length) {
      if (iommu.domains.length === 1) unmapUnpinAll(iommu);
      iommuDomainFree(domain.domain);
      iommu.domains.splice(iommu.domains.indexOf(domain), 1);
      aperExpand(iommu, copy);
      updatePgsizeBitmap(iommu);
    }
  }
  const refreshed = resvRefresh(iommu, copy);
  if (typeof refreshed !== "number") iommu.iovaList = refreshed;
  // Removing a group without dirty tracking may promote the scope: all pages dirty now.
  if (domain) {
    iommu.numNonPinnedGroups--;
    const pgshift = BigInt(ffs(iommu.pgsizeBitmap));
    if (iommu.dirtyPageTracking)
      for (let d = rbFirst(iommu.dmaList); d; d = rbNext(d))
        bitmapSetLow(d.bitmap as Uint8Array, d.size >> pgshift);
  }
}

/** vfio_iommu_type1_release() */
function release(iommu: VfioIommu): void {
  unmapUnpinAll(iommu);
  for (const d of iommu.domains) {
    for (const g of d.groups) iommuDetachGroup(d.domain, g);
    iommuDomainFree(d.domain);
  }
  iommu.domains = [];
  iommu.iovaList = [];
}

/* ---------------------------------------------------------------------------------- */
/* ioctls                                                                              */
/* ---------------------------------------------------------------------------------- */

/** vfio_iommu_type1_check_extension(); null: asked before any backend is set. */
function checkExtension(iommu: VfioIommu | null, arg: bigint): number {
  switch (arg) {
    case BigInt(U.VFIO_TYPE1_IOMMU):
    case BigInt(U.VFIO_TYPE1v2_IOMMU):
    case BigInt(U.VFIO_TYPE1_NESTING_IOMMU):
    case BigInt(U.VFIO_UNMAP_ALL):
      return 1;
    case BigInt(U.VFIO_UPDATE_VADDR):
      // Disabled with emulated (mdev) groups, which the model has none of.
      return iommu ? 1 : 0;
    case BigInt(U.VFIO_DMA_CC_IOMMU):
      if (!iommu) return 0;
      return iommu.domains.every((d) => d.enforceCacheCoherency) ? 1 : 0;
    default:
      return 0;
  }
}

/** vfio_iommu_type1_get_info(): MIGRATION, DMA_AVAIL, IOVA_RANGE, when argsz has room. */
function getInfo(iommu: VfioIommu, task: Task, arg: bigint): number {
  const S = U.vfio_iommu_type1_info;
  let minsz = S.end("iova_pgsizes");
  const raw = fromUser(task, arg, minsz);
  if (!raw) return err("EFAULT");
  const info = S.decode(raw);
  if (info.argsz < minsz) return err("EINVAL");
  minsz = Math.min(info.argsz, S.size);
  info.flags = U.VFIO_IOMMU_INFO_PGSIZES;
  info.iova_pgsizes = iommu.pgsizeBitmap;
  const caps = new VfioInfoCap();
  caps.add(
    U.vfio_iommu_type1_info_cap_migration.encode({
      id: U.VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION,
      version: 1,
      next: 0,
      flags: 0,
      // The smallest page size.
      pgsize_bitmap: 1n << BigInt(ffs(iommu.pgsizeBitmap)),
      max_dirty_bitmap_size: DIRTY_BITMAP_SIZE_MAX,
    }),
  );
  caps.add(
    U.vfio_iommu_type1_info_dma_avail.encode({
      id: U.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
      version: 1,
      next: 0,
      avail: iommu.dmaAvail,
    }),
  );
  if (iommu.iovaList.length) {
    const head = U.vfio_iommu_type1_info_cap_iova_range.encode({
      id: U.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
      version: 1,
      next: 0,
      nr_iovas: iommu.iovaList.length,
      reserved: 0,
    });
    const ranges = iommu.iovaList.map((n) =>
      U.vfio_iova_range.encode({ start: n.start, end: n.end }),
    );
    const cap = new Uint8Array(head.length + ranges.length * U.vfio_iova_range.size);
    cap.set(head);
    ranges.forEach((r, i) => cap.set(r, head.length + i * U.vfio_iova_range.size));
    caps.add(cap);
  }
  if (caps.size) {
    info.flags |= U.VFIO_IOMMU_INFO_CAPS;
    if (info.argsz < S.size + caps.size) {
      info.argsz = S.size + caps.size;
    } else {
      caps.shift(S.size);
      if (!toUser(task, arg + BigInt(S.size), caps.buf)) return err("EFAULT");
      info.cap_offset = S.size;
    }
  }
  return toUser(task, arg, S.encode(info).subarray(0, minsz)) ? 0 : err("EFAULT");
}

/** vfio_iommu_type1_map_dma() */
function mapDma(iommu: VfioIommu, task: Task, arg: bigint, p: Type1Params): number {
  const S = U.vfio_iommu_type1_dma_map;
  const mask = U.VFIO_DMA_MAP_FLAG_READ | U.VFIO_DMA_MAP_FLAG_WRITE | U.VFIO_DMA_MAP_FLAG_VADDR;
  const minsz = S.end("size");
  const raw = fromUser(task, arg, minsz);
  if (!raw) return err("EFAULT");
  const map = S.decode(raw);
  if (map.argsz < minsz || map.flags & ~mask) return err("EINVAL");
  return doMap(iommu, task, map, p);
}

/** vfio_iommu_type1_unmap_dma(): the size removed is written back on success. */
function unmapDma(iommu: VfioIommu, task: Task, arg: bigint): number {
  const S = U.vfio_iommu_type1_dma_unmap;
  const mask =
    U.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP |
    U.VFIO_DMA_UNMAP_FLAG_VADDR |
    U.VFIO_DMA_UNMAP_FLAG_ALL;
  const minsz = S.end("size");
  const raw = fromUser(task, arg, minsz);
  if (!raw) return err("EFAULT");
  const unmap = S.decode(raw);
  if (unmap.argsz < minsz || unmap.flags & ~mask) return err("EINVAL");
  const getDirty = (unmap.flags & U.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP) !== 0;
  if (getDirty && unmap.flags & (U.VFIO_DMA_UNMAP_FLAG_ALL | U.VFIO_DMA_UNMAP_FLAG_VADDR))
    return err("EINVAL");
  let bitmap = { pgsize: 0n, size: 0n, data: 0n };
  if (getDirty) {
    if (unmap.argsz < minsz + U.vfio_bitmap.size) return err("EINVAL");
    const b = fromUser(task, arg + BigInt(minsz), U.vfio_bitmap.size);
    if (!b) return err("EFAULT");
    bitmap = U.vfio_bitmap.decode(b);
    if (!accessOk(bitmap.data, bitmap.size)) return err("EINVAL");
    const r = verifyBitmapSize(userShift(unmap.size, bitmap.pgsize), bitmap.size);
    if (r) return r;
  }
  const r = doUnmap(iommu, task, unmap, bitmap);
  if (r) return r;
  return toUser(task, arg, S.encode(unmap).subarray(0, minsz)) ? 0 : err("EFAULT");
}

/** vfio_iommu_type1_dirty_pages(): exactly one of START, STOP, GET_BITMAP. */
function dirtyPages(iommu: VfioIommu, task: Task, arg: bigint): number {
  if (!iommu.v2) return err("EACCES");
  const S = U.vfio_iommu_type1_dirty_bitmap;
  const mask =
    U.VFIO_IOMMU_DIRTY_PAGES_FLAG_START |
    U.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP |
    U.VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP;
  const minsz = S.end("flags");
  const raw = fromUser(task, arg, minsz);
  if (!raw) return err("EFAULT");
  const dirty = S.decode(raw);
  if (dirty.argsz < minsz || dirty.flags & ~mask) return err("EINVAL");
  const flags = BigInt(dirty.flags);
  if (!flags || ffs(flags) !== fls(flags)) return err("EINVAL");
  if (dirty.flags & U.VFIO_IOMMU_DIRTY_PAGES_FLAG_START) {
    const pgsize = 1n << BigInt(ffs(iommu.pgsizeBitmap));
    if (!iommu.dirtyPageTracking) {
      for (let d = rbFirst(iommu.dmaList); d; d = rbNext(d)) {
        const r = dmaBitmapAlloc(d, pgsize);
        if (r) {
          for (let x = rbFirst(iommu.dmaList); x; x = rbNext(x)) x.bitmap = null;
          return r;
        }
      }
      iommu.dirtyPageTracking = true;
    }
    return 0;
  }
  if (dirty.flags & U.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP) {
    if (iommu.dirtyPageTracking) {
      iommu.dirtyPageTracking = false;
      for (let d = rbFirst(iommu.dmaList); d; d = rbNext(d)) d.bitmap = null;
    }
    return 0;
  }
  const R = U.vfio_iommu_type1_dirty_bitmap_get;
  const dataSize = dirty.argsz - minsz;
  if (!dataSize || dataSize < R.size) return err("EINVAL");
  const rr = fromUser(task, arg + BigInt(minsz), R.size);
  if (!rr) return err("EFAULT");
  const range = R.decode(rr);
  if (u64(range.iova + range.size) < range.iova) return err("EINVAL");
  if (!accessOk(range.bitmap_data, range.bitmap_size)) return err("EINVAL");
  const r = verifyBitmapSize(userShift(range.size, range.bitmap_pgsize), range.bitmap_size);
  if (r) return r;
  const iommuPgsize = 1n << BigInt(ffs(iommu.pgsizeBitmap));
  // Only the smallest supported page size.
  if (range.bitmap_pgsize !== iommuPgsize) return err("EINVAL");
  if (range.iova & (iommuPgsize - 1n)) return err("EINVAL");
  if (!range.size || range.size & (iommuPgsize - 1n)) return err("EINVAL");
  if (!iommu.dirtyPageTracking) return err("EINVAL");
  return iovaDirtyBitmap(
    task,
    range.bitmap_data,
    iommu,
    range.iova,
    range.size,
    range.bitmap_pgsize,
  );
}
