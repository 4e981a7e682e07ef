/**
 * The io_pagetable, drivers/iommu/iommufd/io_pagetable.c (Linux 6.12.117): the IOVA → user
 * VA map of an IOAS, and the iommu_domains it keeps in sync.
 *
 * IOVA is byte granular and `iovaAlignment` aligned: 1 with no domain, the largest smallest
 * page size of the attached domains (PAGE_SIZE with HUGE_PAGES off). Three sets of ranges:
 * areas (each backed by a slice of an iopt_pages), reserved ranges with an owner (a
 * domain's aperture edges, a device's reserved regions) and the user's allowed ranges.
 * Areas and reserved ranges never intersect, reserved and allowed never intersect (the
 * second one set fails EADDRINUSE), areas are never split except by the VFIO type1 (v1)
 * compatibility path, and an unmap must cover whole areas (ENOENT otherwise).
 *
 * Domains are filled on attach and on map; pinning happens then, never before, or when an
 * in-kernel access (an emulated device's driver, the selftest's mock access) pins a range.
 * Accesses are listed per IOAS (access_list); their IOVA alignment joins the domains'. An
 * area an access has pinned is not split, and unmapping it first sets prevent_access (no
 * new pins, no rw) and asks every access to unpin (their ->unmap callback, through
 * iommufd_access_notify_unmap), then tries again; an access that keeps its pins makes the
 * unmap fail with EDEADLK after 100 tries (the kernel WARNs). The
 * 6.12.117 stable kernel carries upstream's "iommufd: Make vfio_compat's unmap succeed if
 * the range is empty": iopt_unmap_iova_range() succeeds with nothing unmapped, and the
 * native IOAS_UNMAP turns that into ENOENT itself.
 */
import { err } from "../../uapi/errno.js";
import type { Task } from "../core/task.js";
import {
  ffs,
  IOMMU_RESV_DIRECT_RELAXABLE,
  IOMMU_RESV_MSI,
  IOMMU_RESV_SW_MSI,
  IOMMU_WRITE,
  iommuMap,
  iommuUnmap,
  type IommuDomain,
  type ResvRegion,
} from "../iommu/domain.js";
import { PAGE, ULONG_MAX, type IoptPages } from "./pages.js";

export interface IovaRange {
  start: bigint;
  last: bigint;
}
interface Reserved extends IovaRange {
  owner: unknown;
}

const align = (x: bigint, a: bigint) => (x + a - 1n) & ~(a - 1n) & ULONG_MAX;
const min = (a: bigint, b: bigint) => (a < b ? a : b);
const max = (a: bigint, b: bigint) => (a > b ? a : b);
const intersects = (r: IovaRange, start: bigint, last: bigint) =>
  r.start <= last && r.last >= start;

/** roundup_pow_of_two() */
function roundupPow2(x: bigint): bigint {
  let p = 1n;
  while (p < x) p <<= 1n;
  return p;
}

/** struct iopt_area */
export class IoptArea {
  start = 0n;
  last = 0n;
  /** pages_node: first and last page index into the pages. */
  index = 0;
  lastIndex = 0;
  /** Bytes into the first page where the area starts. */
  pageOffset = 0;
  iommuProt = 0;
  /** NULL while the area is being set up or torn down. */
  pages: IoptPages | null = null;
  /** storage_domain != NULL: the area's pages are pinned for the domains. */
  filled = false;
  /** Set once inserted (area->iopt). */
  iopt: IoPagetable | null = null;
  /** Pins in-kernel accesses hold on this area (area->num_accesses). */
  numAccesses = 0;
  /** Set while an unmap waits for accesses to let go: no new access. */
  preventAccess = false;

  get length(): bigint {
    return this.last - this.start + 1n;
  }

  /** iopt_area_start_byte() */
  startByte(iova: bigint): bigint {
    return iova - this.start + BigInt(this.pageOffset) + BigInt(this.index) * PAGE;
  }
}

/** One element of a pages list: a slice of an iopt_pages and the area made for it. */
export interface PagesListElm {
  pages: IoptPages | null;
  area: IoptArea | null;
  startByte: bigint;
  length: bigint;
}

/** An in-kernel access attached to an IOAS (struct iommufd_access as iopt sees it). */
export interface IoptAccess {
  readonly iovaAlignment: bigint;
  /** iommufd_access_notify_unmap() for this access: its ->unmap, unless it is being destroyed. */
  notifyUnmap(iova: bigint, length: bigint): void;
}

/** One step of iopt_for_each_contig_area(): the area and where in it the walk is. */
export interface ContigStep {
  area: IoptArea;
  cur: bigint;
  /** min(last, area's last IOVA) */
  last: bigint;
}

/**
 * Span iteration (interval_tree_span_iter / interval_tree_double_span_iter): the used and
 * hole spans of [first, last] given the union of some ranges.
 */
function spans(
  ranges: IovaRange[],
  first: bigint,
  last: bigint,
): { used: boolean; start: bigint; last: bigint }[] {
  const sorted = ranges
    .filter((r) => intersects(r, first, last))
    .map((r) => ({ start: max(r.start, first), last: min(r.last, last) }))
    .sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const merged: IovaRange[] = [];
  for (const r of sorted) {
    const top = merged[merged.length - 1];
    if (top && r.start <= top.last + 1n) top.last = max(top.last, r.last);
    else merged.push({ ...r });
  }
  const out: { used: boolean; start: bigint; last: bigint }[] = [];
  let cur = first;
  for (const r of merged) {
    if (r.start > cur) out.push({ used: false, start: cur, last: r.start - 1n });
    out.push({ used: true, start: r.start, last: r.last });
    if (r.last === ULONG_MAX) return out;
    cur = r.last + 1n;
  }
  if (cur <= last) out.push({ used: false, start: cur, last });
  return out;
}

export class IoPagetable {
  /** Sorted by start. */
  readonly areas: IoptArea[] = [];
  allowed: IovaRange[] = [];
  readonly reserved: Reserved[] = [];
  /** Kept linear: removal moves the tail into the hole (xa_erase + xa_store). */
  readonly domains: IommuDomain[] = [];
  iovaAlignment = 1n;
  disableLargePages = false;
  /** access_list: an xarray with ids below 2^16. */
  readonly accessList = new Map<number, IoptAccess>();

  constructor(
    /** CONFIG_TRANSPARENT_HUGEPAGE: the largest IOVA alignment the allocator keeps. */
    private readonly maxAlignment: bigint,
  ) {}

  areaIterFirst(start: bigint, last: bigint): IoptArea | undefined {
    return this.areas.find((a) => intersects(a, start, last));
  }

  private reservedIterFirst(start: bigint, last: bigint): Reserved | undefined {
    return this.reserved.find((r) => intersects(r, start, last));
  }

  /** The holes of the reserved set over [0, ULONG_MAX] (IOVA_RANGES, the compat cap). */
  usableRanges(): IovaRange[] {
    return spans(this.reserved, 0n, ULONG_MAX)
      .filter((s) => !s.used)
      .map((s) => ({ start: s.start, last: s.last }));
  }

  /** iopt_alloc_iova(): the lowest fitting hole, never IOVA 0. */
  private allocIova(uptr: bigint, length: bigint): bigint | number {
    const pageOffset = uptr % PAGE;
    if (length === 0n || length >= ULONG_MAX / 2n) return err("EOVERFLOW");
    let iovaAlignment = roundupPow2(length);
    if (uptr) iovaAlignment = min(iovaAlignment, 1n << BigInt(ffs(uptr)));
    if (iovaAlignment >= this.maxAlignment) iovaAlignment = this.maxAlignment;
    if (iovaAlignment < this.iovaAlignment) return err("EINVAL");

    const first = PAGE;
    const lastAllowed = ULONG_MAX - PAGE;
    const allowedSpans = this.allowed.length
      ? spans(this.allowed, first, lastAllowed)
      : [{ used: true, start: first, last: lastAllowed }];
    for (const a of allowedSpans) {
      // __alloc_iova_check_used()
      if (!a.used || a.last - a.start < length - 1n) continue;
      a.start = align(a.start, iovaAlignment) | pageOffset;
      if (a.start > a.last || a.last - a.start < length - 1n) continue;
      for (const h of spans([...this.reserved, ...this.areas], a.start, a.last)) {
        // __alloc_iova_check_hole()
        if (h.used || h.last - h.start < length - 1n) continue;
        const start = align(h.start, iovaAlignment) | pageOffset;
        if (start > h.last || h.last - start < length - 1n) continue;
        return start;
      }
    }
    return err("ENOSPC");
  }

  /** iopt_check_iova() */
  private checkIova(iova: bigint, length: bigint): number {
    if (iova & (this.iovaAlignment - 1n)) return err("EINVAL");
    const last = iova + length - 1n;
    if (last > ULONG_MAX) return err("EOVERFLOW");
    if (this.reservedIterFirst(iova, last)) return err("EINVAL");
    if (this.areaIterFirst(iova, last)) return err("EEXIST");
    return 0;
  }

  private insertArea(a: IoptArea): void {
    let i = this.areas.findIndex((x) => x.start > a.start);
    if (i < 0) i = this.areas.length;
    this.areas.splice(i, 0, a);
    a.iopt = this;
  }

  private removeArea(a: IoptArea): void {
    const i = this.areas.indexOf(a);
    if (i >= 0) this.areas.splice(i, 1);
  }

  /** iopt_insert_area(): the area takes [startByte, startByte + length) of the pages. */
  private setupArea(
    area: IoptArea,
    pages: IoptPages,
    iova: bigint,
    startByte: bigint,
    length: bigint,
    iommuProt: number,
  ): number {
    if (iommuProt & IOMMU_WRITE && !pages.writable) return err("EPERM");
    area.iommuProt = iommuProt;
    area.pageOffset = Number(startByte % PAGE);
    if (BigInt(area.pageOffset) & (this.iovaAlignment - 1n)) return err("EINVAL");
    area.start = iova;
    if (iova + length - 1n > ULONG_MAX) return err("EOVERFLOW");
    area.last = iova + length - 1n;
    area.index = Number(startByte / PAGE);
    area.lastIndex = Number((startByte + length - 1n) / PAGE);
    this.insertArea(area);
    return 0;
  }

  /** iopt_alloc_area_pages() */
  private allocAreaPages(
    task: Task,
    list: PagesListElm[],
    length: bigint,
    dstIova: { v: bigint },
    iommuProt: number,
    allocIova: boolean,
  ): number {
    for (const elm of list) {
      if (task.faults.should("slab", "iopt_area")) return err("ENOMEM");
      elm.area = new IoptArea();
    }
    if (length & (this.iovaAlignment - 1n) || !length) return err("EINVAL");
    if (allocIova) {
      const elm = list[0] as PagesListElm;
      const pages = elm.pages as IoptPages;
      const r = this.allocIova(pages.uptr + elm.startByte, length);
      if (typeof r === "number") return r;
      dstIova.v = r;
    } else {
      const r = this.checkIova(dstIova.v, length);
      if (r) return r;
    }
    let iova = dstIova.v;
    for (const elm of list) {
      const r = this.setupArea(
        elm.area as IoptArea,
        elm.pages as IoptPages,
        iova,
        elm.startByte,
        elm.length,
        iommuProt,
      );
      if (r) return r;
      iova += elm.length;
    }
    return 0;
  }

  /** iopt_abort_area() */
  abortArea(area: IoptArea): void {
    if (area.iopt) this.removeArea(area);
    area.iopt = null;
  }

  /** iopt_free_pages_list(): abort the areas not taken, drop the pages references left. */
  static freePagesList(list: PagesListElm[]): void {
    for (const elm of list) {
      if (elm.area) elm.area.iopt?.abortArea(elm.area);
      elm.pages?.put();
    }
    list.length = 0;
  }

  /** iopt_map_pages(): areas for every element, filled into every domain. */
  mapPages(
    task: Task,
    list: PagesListElm[],
    length: bigint,
    dstIova: { v: bigint },
    iommuProt: number,
    allocIova: boolean,
  ): number {
    let r = this.allocAreaPages(task, list, length, dstIova, iommuProt, allocIova);
    if (r) return r;
    const done: PagesListElm[] = [];
    for (const elm of list) {
      r = this.areaFillDomains(elm.area as IoptArea, elm.pages as IoptPages);
      if (r) {
        for (const d of done) this.areaUnfillDomains(d.area as IoptArea, d.pages as IoptPages);
        return r;
      }
      done.push(elm);
    }
    for (const elm of list) {
      (elm.area as IoptArea).pages = elm.pages;
      elm.pages = null;
      elm.area = null;
    }
    return 0;
  }

  /** The IOVA of page index idx of the area (iopt_area_index_to_iova), first page partial. */
  private indexToIova(area: IoptArea, idx: number): bigint {
    if (idx === area.index) return area.start;
    return area.start - BigInt(area.pageOffset) + BigInt(idx - area.index) * PAGE;
  }

  /**
   * batch_to_domain() over the whole area: every physically contiguous run of frames is one
   * iommu_map() (PAGE_SIZE at a time with large pages disabled: batch_iommu_map_small()).
   */
  private areaMapDomain(area: IoptArea, pfns: number[], domain: IommuDomain): number {
    let i = 0;
    let mapped = 0n;
    while (i < pfns.length) {
      let n = 1;
      while (i + n < pfns.length && pfns[i + n] === (pfns[i] as number) + n) n++;
      const idx = area.index + i;
      const iova = this.indexToIova(area, idx);
      const off = idx === area.index ? BigInt(area.pageOffset) : 0n;
      const next = min(area.last + 1n, iova + BigInt(n) * PAGE - off);
      const paddr = BigInt(pfns[i] as number) * PAGE + off;
      let r = 0;
      if (this.disableLargePages) {
        for (let a = 0n; a < next - iova && !r; a += PAGE) {
          r = iommuMap(domain, iova + a, paddr + a, PAGE, area.iommuProt);
          if (!r) mapped = iova + a + PAGE - area.start;
        }
      } else {
        r = iommuMap(domain, iova, paddr, next - iova, area.iommuProt);
        if (!r) mapped = next - area.start;
      }
      if (r) {
        if (mapped) iommuUnmap(domain, area.start, mapped);
        return r;
      }
      i += n;
    }
    return 0;
  }

  /** iopt_area_unmap_domain() */
  private areaUnmapDomain(area: IoptArea, domain: IommuDomain): void {
    iommuUnmap(domain, area.start, area.length);
  }

  /**
   * iopt_area_fill_domains(): a new area's pages are pinned and mapped into every domain;
   * with no domain nothing happens (the lazy path). All or nothing.
   */
  areaFillDomains(area: IoptArea, pages: IoptPages): number {
    if (!this.domains.length) return 0;
    const pfns = pages.pin(area.index, area.lastIndex);
    if (typeof pfns === "number") return pfns;
    const done: IommuDomain[] = [];
    for (const d of this.domains) {
      const r = this.areaMapDomain(area, pfns, d);
      if (r) {
        for (const x of done) this.areaUnmapDomain(area, x);
        pages.unpin(area.index, area.lastIndex);
        return r;
      }
      done.push(d);
    }
    area.filled = true;
    return 0;
  }

  /** iopt_area_unfill_domains(): unmap from every domain, then unpin. */
  areaUnfillDomains(area: IoptArea, pages: IoptPages): void {
    if (!area.filled) return;
    for (const d of this.domains) this.areaUnmapDomain(area, d);
    pages.unpin(area.index, area.lastIndex);
    area.filled = false;
  }

  /** iopt_map_user_pages() */
  mapUserPages(
    task: Task,
    pages: IoptPages,
    uptr: bigint,
    length: bigint,
    iova: { v: bigint },
    iommuProt: number,
    allocIova: boolean,
  ): number {
    const elm: PagesListElm = { pages, area: null, startByte: uptr - pages.uptr, length };
    const r = this.mapPages(task, [elm], length, iova, iommuProt, allocIova);
    if (r) {
      if (elm.area) this.abortArea(elm.area);
      elm.pages?.put();
    }
    return r;
  }

  /** iopt_get_pages(): the pages behind [iova, iova + length), which areas must cover contiguously. */
  getPages(task: Task, iova: bigint, length: bigint): PagesListElm[] | number {
    if (!length) return err("EINVAL");
    const lastIova = iova + length - 1n;
    if (lastIova > ULONG_MAX) return err("EOVERFLOW");
    const list: PagesListElm[] = [];
    // iopt_for_each_contig_area()
    let cur = iova;
    let area = this.areas.find((a) => a.start <= iova && a.last >= iova);
    let done = false;
    while (area && area.pages) {
      if (task.faults.should("slab", "iopt_pages_list")) {
        IoPagetable.freePagesList(list);
        return err("ENOMEM");
      }
      const last = min(lastIova, area.last);
      list.push({
        pages: area.pages.get(),
        area: null,
        startByte: area.startByte(cur),
        length: last - cur + 1n,
      });
      if (lastIova <= area.last) {
        done = true;
        break;
      }
      cur = area.last + 1n;
      const next = this.areas.find((a) => intersects(a, cur, lastIova));
      if (!next || next.start !== cur) break;
      area = next;
    }
    if (!done) {
      IoPagetable.freePagesList(list);
      return err("ENOENT");
    }
    return list;
  }

  /**
   * iopt_unmap_iova_range(): whole areas only; nothing there is success with 0 bytes. An
   * area accesses hold is unmapped once they have let go (see the module comment).
   */
  private unmapIovaRange(start: bigint, last: bigint, unmapped: { v: bigint }): number {
    let rc = 0;
    let bytes = 0n;
    let tries = 0;
    for (let area = this.areaIterFirst(start, last); area; area = this.areaIterFirst(start, last)) {
      if (!area.pages) {
        rc = err("EBUSY");
        break;
      }
      if (area.start < start || area.last > last) {
        rc = err("ENOENT");
        break;
      }
      if (area.start !== start) tries = 0;
      if (area.numAccesses) {
        start = area.start;
        area.preventAccess = true;
        for (const access of [...this.accessList.values()])
          access.notifyUnmap(area.start, area.length);
        if (++tries > 100) return err("EDEADLK");
        continue;
      }
      const pages = area.pages;
      area.pages = null;
      this.areaUnfillDomains(area, pages);
      this.abortArea(area);
      pages.put();
      bytes += area.length;
    }
    unmapped.v = bytes;
    return rc;
  }

  /** iopt_unmap_iova() */
  unmapIova(iova: bigint, length: bigint, unmapped: { v: bigint }): number {
    if (!length) return err("EINVAL");
    const last = iova + length - 1n;
    if (last > ULONG_MAX) return err("EOVERFLOW");
    return this.unmapIovaRange(iova, last, unmapped);
  }

  /** iopt_unmap_all() */
  unmapAll(unmapped: { v: bigint }): number {
    return this.unmapIovaRange(0n, ULONG_MAX, unmapped);
  }

  /** iopt_set_allow_iova(): atomic; an allowed range over a reserved one is EADDRINUSE. */
  setAllowIova(allowed: IovaRange[]): number {
    for (const a of allowed) if (this.reservedIterFirst(a.start, a.last)) return err("EADDRINUSE");
    this.allowed = allowed;
    return 0;
  }

  /** iopt_reserve_iova() */
  reserveIova(task: Task | null, start: bigint, last: bigint, owner: unknown): number {
    if (this.areaIterFirst(start, last) || this.allowed.some((a) => intersects(a, start, last)))
      return err("EADDRINUSE");
    if (task?.faults.should("slab", "iopt_reserved")) return err("ENOMEM");
    this.reserved.push({ start, last, owner });
    return 0;
  }

  /** iopt_remove_reserved_iova() */
  removeReservedIova(owner: unknown): void {
    for (let i = this.reserved.length - 1; i >= 0; i--)
      if ((this.reserved[i] as Reserved).owner === owner) this.reserved.splice(i, 1);
  }

  /** The reserved ranges an owner holds (for tests and debugfs-like views). */
  reservedOf(owner: unknown): IovaRange[] {
    return this.reserved.filter((r) => r.owner === owner).map((r) => ({ ...r }));
  }

  /**
   * iopt_table_enforce_dev_resv_regions(): the device's reserved regions (relaxable direct
   * mappings excepted) become reserved IOVA owned by the device; a software MSI window's
   * start is reported.
   */
  enforceDevResvRegions(
    task: Task | null,
    regions: ResvRegion[],
    owner: unknown,
    swMsi: { start: bigint | null } | null,
  ): number {
    let numHwMsi = 0;
    let numSwMsi = 0;
    for (const resv of regions) {
      if (resv.type === IOMMU_RESV_DIRECT_RELAXABLE) continue;
      if (swMsi && resv.type === IOMMU_RESV_MSI) numHwMsi++;
      if (swMsi && resv.type === IOMMU_RESV_SW_MSI) {
        swMsi.start = resv.start;
        numSwMsi++;
      }
      const r = this.reserveIova(task, resv.start, resv.start + resv.length - 1n, owner);
      if (r) {
        this.removeReservedIova(owner);
        return r;
      }
    }
    if ((numSwMsi && numHwMsi) || numSwMsi > 1) {
      this.removeReservedIova(owner);
      return err("EINVAL");
    }
    return 0;
  }

  /** iopt_check_iova_alignment(): every area conforms to a larger alignment. */
  private checkIovaAlignment(newAlignment: bigint): number {
    const mask = newAlignment - 1n;
    for (const a of this.areas)
      if (a.start & mask || a.length & mask || BigInt(a.pageOffset) & mask)
        return err("EADDRINUSE");
    // The kernel checks (and WARNs) only with CONFIG_IOMMUFD_TEST, where accesses are the mock's.
    for (const access of this.accessList.values())
      if (access.iovaAlignment > newAlignment) return err("EADDRINUSE");
    return 0;
  }

  /** iopt_table_add_domain(): aperture reserved, every area mapped, alignment raised. */
  tableAddDomain(task: Task | null, domain: IommuDomain): number {
    if (this.domains.includes(domain)) return err("EEXIST");
    const pgmin = 1n << BigInt(ffs(domain.pgsizeBitmap));
    const newAlignment = max(pgmin, this.iovaAlignment);
    if (newAlignment > PAGE) return err("EINVAL");
    if (newAlignment !== this.iovaAlignment) {
      const r = this.checkIovaAlignment(newAlignment);
      if (r) return r;
    }
    const g = domain.geometry;
    let r = 0;
    if (g.apertureStart !== 0n) r = this.reserveIova(task, 0n, g.apertureStart - 1n, domain);
    if (!r && g.apertureEnd !== ULONG_MAX)
      r = this.reserveIova(task, g.apertureEnd + 1n, ULONG_MAX, domain);
    if (!r) r = this.fillDomain(domain);
    if (r) {
      this.removeReservedIova(domain);
      return r;
    }
    this.iovaAlignment = newAlignment;
    this.domains.push(domain);
    return 0;
  }

  /**
   * iopt_fill_domain(): map every area into a new domain. With no other domain the areas'
   * pages get pinned now (this is where a bad user VA recorded earlier fails); otherwise
   * the PFNs come from what the other domains hold.
   */
  private fillDomain(domain: IommuDomain): number {
    const first = this.domains.length === 0;
    const done: IoptArea[] = [];
    for (const area of this.areas) {
      const pages = area.pages;
      if (!pages) continue;
      const pfns = first
        ? pages.pin(area.index, area.lastIndex)
        : pages.frames(area.index, area.lastIndex);
      const r = typeof pfns === "number" ? pfns : this.areaMapDomain(area, pfns, domain);
      if (r && first && typeof pfns !== "number") pages.unpin(area.index, area.lastIndex);
      if (r) {
        for (const a of done) {
          this.areaUnmapDomain(a, domain);
          if (first) {
            (a.pages as IoptPages).unpin(a.index, a.lastIndex);
            a.filled = false;
          }
        }
        return r;
      }
      if (first) area.filled = true;
      done.push(area);
    }
    return 0;
  }

  /** iopt_table_remove_domain(): unmap (and unpin with the last domain), drop its reservations. */
  tableRemoveDomain(domain: IommuDomain): void {
    const index = this.domains.indexOf(domain);
    if (index < 0) return;
    const tail = this.domains.pop() as IommuDomain;
    if (index !== this.domains.length) this.domains[index] = tail;
    // iopt_unfill_domain()
    for (const area of this.areas) {
      if (!area.pages) continue;
      this.areaUnmapDomain(area, domain);
      if (!this.domains.length && area.filled) {
        area.pages.unpin(area.index, area.lastIndex);
        area.filled = false;
      }
    }
    this.removeReservedIova(domain);
    this.calculateIovaAlignment();
  }

  /** iopt_calculate_iova_alignment() */
  private calculateIovaAlignment(): number {
    let a = this.disableLargePages ? PAGE : 1n;
    for (const d of this.domains) a = max(a, 1n << BigInt(ffs(d.pgsizeBitmap)));
    for (const access of this.accessList.values()) a = max(a, access.iovaAlignment);
    if (a > this.iovaAlignment) {
      const r = this.checkIovaAlignment(a);
      if (r) return r;
    }
    this.iovaAlignment = a;
    return 0;
  }

  /**
   * iopt_area_split() (VFIO type1 v1 compatibility): cut an area so that `iova` is the last
   * byte of a new area; refused when a domain could hold large IOPTEs for it.
   */
  private areaSplit(task: Task, area: IoptArea, iova: bigint): number {
    if (iova === area.start || iova === area.last) return 0;
    if (!area.pages || area.preventAccess) return err("EBUSY");
    const newStart = iova + 1n;
    const a = this.iovaAlignment - 1n;
    if (newStart & a || area.startByte(newStart) & a) return err("EINVAL");
    if (task.faults.should("slab", "iopt_area")) return err("ENOMEM");
    if (task.faults.should("slab", "iopt_area")) return err("ENOMEM");
    // Not with an access: its pins could not be split with the area.
    if (area.numAccesses) return err("EINVAL");
    if (area.filled && !this.disableLargePages) return err("EINVAL");
    const pages = area.pages;
    const lhs = new IoptArea();
    const rhs = new IoptArea();
    this.removeArea(area);
    this.setupArea(
      lhs,
      pages,
      area.start,
      area.startByte(area.start),
      newStart - area.start,
      area.iommuProt,
    );
    this.setupArea(
      rhs,
      pages,
      newStart,
      area.startByte(newStart),
      area.last - newStart + 1n,
      area.iommuProt,
    );
    lhs.pages = pages;
    rhs.pages = pages.get();
    lhs.filled = rhs.filled = area.filled;
    if (area.filled) {
      // The two halves now hold the pins the area held; pages under both are held twice.
      for (let idx = rhs.index; idx <= lhs.lastIndex; idx++) {
        const p = pages.pinned.get(idx);
        if (p) p.users++;
      }
    }
    return 0;
  }

  /** iopt_cut_iova() */
  cutIova(task: Task, iovas: bigint[]): number {
    for (const iova of iovas) {
      const area = this.areaIterFirst(iova, iova);
      if (!area) continue;
      const r = this.areaSplit(task, area, iova);
      if (r) return r;
    }
    return 0;
  }

  /** iopt_enable_large_pages() */
  enableLargePages(): void {
    this.disableLargePages = false;
    this.calculateIovaAlignment();
  }

  /** iopt_disable_large_pages(): not once a domain holds mappings. */
  disableLargePagesCmd(): number {
    if (this.disableLargePages) return 0;
    if (this.domains.length && this.areas.length) return err("EINVAL");
    this.disableLargePages = true;
    const r = this.calculateIovaAlignment();
    if (r) this.disableLargePages = false;
    return r;
  }

  /** iopt_add_access(): the access's id in the list, or -errno. */
  addAccess(task: Task | null, access: IoptAccess): number {
    if (task?.faults.should("slab", "iopt_access_list")) return err("ENOMEM");
    let id = 0;
    while (this.accessList.has(id)) id++;
    if (id > 0xffff) return err("EBUSY");
    this.accessList.set(id, access);
    const r = this.calculateIovaAlignment();
    if (r) {
      this.accessList.delete(id);
      return r;
    }
    return id;
  }

  /** iopt_remove_access() */
  removeAccess(id: number): void {
    this.accessList.delete(id);
    this.calculateIovaAlignment();
  }

  /**
   * iopt_for_each_contig_area() over [iova, last]: the areas (with pages) that cover it
   * without a gap from iova on, and whether they reach `last` (iopt_area_contig_done).
   */
  contigAreas(iova: bigint, last: bigint): { steps: ContigStep[]; done: boolean } {
    const steps: ContigStep[] = [];
    let cur = iova;
    let area = this.areas.find((a) => a.start <= iova && a.last >= iova);
    while (area?.pages) {
      steps.push({ area, cur, last: min(last, area.last) });
      if (last <= area.last) return { steps, done: true };
      cur = area.last + 1n;
      const next = this.areaIterFirst(cur, last);
      if (!next || next.start !== cur) break;
      area = next;
    }
    return { steps, done: false };
  }

  /** iopt_destroy_table() after every area went: the table must be empty. */
  destroyTable(): void {
    this.allowed = [];
  }
}
