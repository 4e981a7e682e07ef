/**
 * The page allocator (mm/page_alloc.c, reduced to what the model needs): hands out
 * zeroed 4 KiB frames of system RAM with a reference count; a frame returns to the free
 * list when its last reference goes (a pinned page outlives the mapping that faulted it).
 */
import { PAGE_SIZE, type MemoryAccess } from "../../machine/hw.js";

export class PageAllocator {
  private readonly refs = new Map<number, number>();
  private readonly free: number[] = [];
  private next: number;

  constructor(
    readonly ram: MemoryAccess,
    /** Frames below this are firmware/kernel text, never handed out. */
    firstPfn = 0x1000,
  ) {
    this.next = firstPfn;
  }

  get inUse(): number {
    return this.refs.size;
  }

  /** alloc_page(GFP_HIGHUSER | __GFP_ZERO); null when RAM is exhausted. */
  alloc(): number | null {
    const pfn = this.free.pop() ?? (this.next * PAGE_SIZE < this.ram.size ? this.next++ : null);
    if (pfn === null) return null;
    this.refs.set(pfn, 1);
    return pfn;
  }

  get(pfn: number): void {
    this.refs.set(pfn, (this.refs.get(pfn) ?? 0) + 1);
  }

  put(pfn: number): void {
    const n = (this.refs.get(pfn) ?? 0) - 1;
    if (n > 0) {
      this.refs.set(pfn, n);
      return;
    }
    this.refs.delete(pfn);
    this.ram.clear(pfn);
    this.free.push(pfn);
  }
}
