/**
 * The page allocator (mm/page_alloc.c, reduced to what the model needs): hands out
 * zeroed 4 KiB frames of system RAM with a reference count; a frame returns to the free
 * list when its last reference goes (a pinned page outlives the mapping that faulted it).
 * An allocation can be made to fail (fail_page_alloc) through `faults` (fault_inject.ts).
 */
import { PAGE_SIZE, type MemoryAccess } from "../../machine/hw.js";
import { FaultInject } from "./fault_inject.js";

export class PageAllocator {
  private readonly refs = new Map<number, number>();
  /** Frames pinned (FOLL_PIN) and by how many pins: page_maybe_dma_pinned(), the pin bias. */
  private readonly pins = new Map<number, number>();
  private readonly free: number[] = [];
  private next: number;

  constructor(
    readonly ram: MemoryAccess,
    /** Frames below this are firmware/kernel text, never handed out. */
    firstPfn = 0x1000,
    /** The kernel's fault injection (fail-nth), shared by every fallible allocation site. */
    readonly faults = new FaultInject(),
  ) {
    this.next = firstPfn;
  }

  /**
   * PAGE_SHIFT of this kernel build: 12, or 16 on a 64 KiB-page POWER kernel, whose pages
   * each span sixteen of RAM's 4 KiB frames; page frame numbers count pages of this size.
   */
  private shift = 12;
  /** 2 ** shift, kept rather than computed: every copy to or from user memory asks. */
  private size = 4096;

  get pageShift(): number {
    return this.shift;
  }

  get pageSize(): number {
    return this.size;
  }

  /** Set at boot, before the first allocation (the kernel's build-time page size). */
  setPageShift(shift: number): void {
    const first = this.next * PAGE_SIZE;
    this.shift = shift;
    this.size = 2 ** shift;
    this.next = Math.ceil(first / this.pageSize);
  }

  /** Frames of RAM per page. */
  private get ratio(): number {
    return this.pageSize / PAGE_SIZE;
  }

  get inUse(): number {
    return this.refs.size;
  }

  /** alloc_page(GFP_HIGHUSER | __GFP_ZERO); null when RAM is exhausted. */
  alloc(): number | null {
    if (this.faults.should("page_alloc", "page")) return null;
    const pfn =
      this.free.pop() ?? ((this.next + 1) * this.pageSize <= this.ram.size ? this.next++ : null);
    if (pfn === null) return null;
    this.refs.set(pfn, 1);
    return pfn;
  }

  /**
   * alloc_pages(order) for memory the hardware reads by physical address in one piece (a
   * TCE table level): `n` physically contiguous zeroed pages, each with a reference; the
   * first page frame number, or null. Taken from never-used memory, so it cannot collide
   * with the free list.
   */
  allocContig(n: number): number | null {
    if (this.faults.should("page_alloc", "page")) return null;
    if ((this.next + n) * this.pageSize > this.ram.size) return null;
    const first = this.next;
    this.next += n;
    for (let i = 0; i < n; i++) this.refs.set(first + i, 1);
    return first;
  }

  get(pfn: number): void {
    this.refs.set(pfn, (this.refs.get(pfn) ?? 0) + 1);
  }

  /** page_ref_count() */
  refCount(pfn: number): number {
    return this.refs.get(pfn) ?? 0;
  }

  /** try_grab_folio(FOLL_PIN): a reference that also counts as a pin. */
  pin(pfn: number): void {
    this.get(pfn);
    this.pins.set(pfn, (this.pins.get(pfn) ?? 0) + 1);
  }

  /** unpin_user_page() */
  unpin(pfn: number): void {
    const n = (this.pins.get(pfn) ?? 0) - 1;
    if (n > 0) this.pins.set(pfn, n);
    else this.pins.delete(pfn);
    this.put(pfn);
  }

  /** How many pins a frame has (page_ref_count / GUP_PIN_COUNTING_BIAS). */
  pinCount(pfn: number): number {
    return this.pins.get(pfn) ?? 0;
  }

  put(pfn: number): void {
    const n = (this.refs.get(pfn) ?? 0) - 1;
    if (n > 0) {
      this.refs.set(pfn, n);
      return;
    }
    this.refs.delete(pfn);
    for (let i = 0; i < this.ratio; i++) this.ram.clear(pfn * this.ratio + i);
    this.free.push(pfn);
  }
}
