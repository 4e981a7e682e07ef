/**
 * A process address space (struct mm_struct, mm/mmap.c, mm/memory.c, mm/gup.c reduced):
 * anonymous private mappings whose pages fault in on first write (reads of an untouched
 * page see zeros), copy_from_user/copy_to_user that fail on unmapped or protected
 * addresses (EFAULT), get_user_pages-style pinning that faults pages in and holds a frame
 * reference, and mm->locked_vm for RLIMIT_MEMLOCK accounting (mm/util.c account_locked_vm).
 */
import { err } from "../../uapi/errno.js";
import { PROT_READ, PROT_WRITE } from "../../uapi/syscalls.js";
import type { PageAllocator } from "./page_alloc.js";

/** x86-64 user address space: 47 bits (TASK_SIZE). */
export const TASK_SIZE = 1n << 47n;

export interface Vma {
  start: bigint;
  end: bigint;
  prot: number;
  /** Page index (address >> PAGE_SHIFT) → frame, for pages faulted in. */
  pages: Map<number, number>;
  /**
   * A file mapping's vm_ops->fault: the frame for page `pgoff` of the mapping with a
   * reference taken for the mapping, or null (SIGBUS). Absent for anonymous memory.
   */
  fault?: (pgoff: number) => number | null;
}

export class Mm {
  private readonly vmas: Vma[] = [];
  /** Pages charged against RLIMIT_MEMLOCK (mm->locked_vm). */
  lockedVm = 0;
  /** Where the next kernel-chosen mapping goes (top-down from here). */
  private mmapBase = 0x7f0000000000n;

  constructor(private readonly pages: PageAllocator) {}

  /** PAGE_SIZE of this kernel (4 KiB, or 64 KiB on a 64K-page POWER kernel). */
  private get page(): bigint {
    return BigInt(this.pages.pageSize);
  }

  /** The page size user mappings are made of. */
  get pageSize(): number {
    return this.pages.pageSize;
  }

  /**
   * mmap of a file whose driver has ->mmap and a fault handler (vma->vm_ops->fault): like
   * an anonymous mapping, but each page comes from `fault` on first touch.
   */
  mmapFile(
    addr: bigint | null,
    length: number,
    prot: number,
    fault: (pgoff: number) => number | null,
  ): bigint {
    const a = this.mmapAnon(addr, length, prot);
    if (a < 0n) return a;
    (this.find(a) as Vma).fault = fault;
    return a;
  }

  find(addr: bigint): Vma | undefined {
    return this.vmas.find((v) => addr >= v.start && addr < v.end);
  }

  private overlaps(start: bigint, end: bigint): boolean {
    return this.vmas.some((v) => start < v.end && end > v.start);
  }

  /** mmap(MAP_PRIVATE|MAP_ANONYMOUS); `fixed` refuses to replace (MAP_FIXED_NOREPLACE). */
  mmapAnon(addr: bigint | null, length: number, prot: number): bigint {
    if (length <= 0) return BigInt(err("EINVAL"));
    const len = ((BigInt(length) + this.page - 1n) / this.page) * this.page;
    let start: bigint;
    if (addr !== null) {
      if (addr % this.page !== 0n) return BigInt(err("EINVAL"));
      if (addr + len > TASK_SIZE) return BigInt(err("ENOMEM"));
      if (this.overlaps(addr, addr + len)) return BigInt(err("EEXIST"));
      start = addr;
    } else {
      this.mmapBase -= len + this.page;
      start = this.mmapBase;
    }
    this.vmas.push({ start, end: start + len, prot, pages: new Map() });
    this.vmas.sort((a, b) => (a.start < b.start ? -1 : 1));
    return start;
  }

  munmap(addr: bigint, length: number): number {
    if (addr % this.page !== 0n || length <= 0) return err("EINVAL");
    const end = addr + ((BigInt(length) + this.page - 1n) / this.page) * this.page;
    for (const v of [...this.vmas]) {
      if (v.end <= addr || v.start >= end) continue;
      // Split: keep the parts outside [addr, end).
      const keep: Vma[] = [];
      if (v.start < addr) keep.push({ start: v.start, end: addr, prot: v.prot, pages: new Map() });
      if (v.end > end) keep.push({ start: end, end: v.end, prot: v.prot, pages: new Map() });
      for (const [idx, pfn] of v.pages) {
        const a = BigInt(idx) << BigInt(this.pages.pageShift);
        const k = keep.find((x) => a >= x.start && a < x.end);
        if (k) k.pages.set(idx, pfn);
        else this.pages.put(pfn);
      }
      this.vmas.splice(this.vmas.indexOf(v), 1, ...keep);
    }
    return 0;
  }

  /** The frame behind a user page, faulting it in for a write; null: unmapped or protected. */
  private fault(addr: bigint, write: boolean): number | null {
    const v = this.find(addr);
    if (!v) return null;
    if (!(v.prot & (write ? PROT_WRITE : PROT_READ))) return null;
    const idx = Number(addr >> BigInt(this.pages.pageShift));
    let pfn = v.pages.get(idx);
    if (pfn === undefined && v.fault) {
      const p = v.fault(idx - Number(v.start >> BigInt(this.pages.pageShift)));
      if (p === null) return null;
      pfn = p;
      v.pages.set(idx, pfn);
    }
    if (pfn === undefined) {
      const p = this.pages.alloc();
      if (p === null) return null;
      pfn = p;
      v.pages.set(idx, pfn);
    }
    return pfn;
  }

  copyFromUser(addr: bigint, len: number): Uint8Array | null {
    const out = new Uint8Array(len);
    for (let done = 0; done < len;) {
      const a = addr + BigInt(done);
      const v = this.find(a);
      if (!v || !(v.prot & PROT_READ)) return null;
      const off = Number(a % this.page);
      const n = Math.min(len - done, this.pages.pageSize - off);
      let pfn = v.pages.get(Number(a >> BigInt(this.pages.pageShift)));
      if (pfn === undefined && v.fault) pfn = this.fault(a, false) ?? undefined;
      if (pfn !== undefined) out.set(this.pages.ram.read(pfn * this.pages.pageSize + off, n), done);
      done += n;
    }
    return out;
  }

  copyToUser(addr: bigint, data: Uint8Array): boolean {
    // Check the whole range first: a failing copy_to_user writes nothing in the model.
    for (let a = addr - (addr % this.page); a < addr + BigInt(data.length); a += this.page) {
      const v = this.find(a < addr ? addr : a);
      if (!v || !(v.prot & PROT_WRITE)) return false;
    }
    for (let done = 0; done < data.length;) {
      const a = addr + BigInt(done);
      const off = Number(a % this.page);
      const n = Math.min(data.length - done, this.pages.pageSize - off);
      const pfn = this.fault(a, true);
      if (pfn === null) return false;
      this.pages.ram.write(pfn * this.pages.pageSize + off, data.subarray(done, done + n));
      done += n;
    }
    return true;
  }

  /** The frame mapped at a user address if it is present (a page-table walk that faults nothing in). */
  present(addr: bigint): number | null {
    const v = this.find(addr);
    return v?.pages.get(Number(addr >> BigInt(this.pages.pageShift))) ?? null;
  }

  /** pin_user_pages(): frames of npages pages from addr, each with a reference held. */
  pin(addr: bigint, npages: number, write: boolean): number[] | null {
    const pfns: number[] = [];
    for (let i = 0; i < npages; i++) {
      const pfn = this.fault(addr + BigInt(i) * this.page, write);
      if (pfn === null) {
        for (const p of pfns) this.pages.put(p);
        return null;
      }
      this.pages.get(pfn);
      pfns.push(pfn);
    }
    return pfns;
  }

  unpin(pfns: number[]): void {
    for (const p of pfns) this.pages.put(p);
  }

  /** Tear down every mapping (exit_mmap). */
  destroy(): void {
    for (const v of this.vmas.splice(0)) for (const pfn of v.pages.values()) this.pages.put(pfn);
  }
}
