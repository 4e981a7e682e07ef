/**
 * A process address space (struct mm_struct, mm/mmap.c, mm/memory.c, mm/gup.c reduced):
 * private and shared mappings, anonymous or backed by a file's pages; pages fault in on
 * first touch (an untouched anonymous page reads as zeros), copy_from_user/copy_to_user
 * that fail on unmapped or protected addresses (EFAULT), get_user_pages and long-term
 * pinning (pin_user_pages with FOLL_LONGTERM) that fault pages in and hold a pin, fork,
 * and mm->locked_vm for RLIMIT_MEMLOCK accounting (mm/util.c account_locked_vm).
 *
 * Copy-on-write, as far as pinning needs it: a private mapping does not own a page it got
 * from a file (the page cache's), nor an anonymous page it shares with a fork
 * (PageAnonExclusive clear). A write fault copies such a page first (do_wp_page; an
 * anonymous page nobody else references is reused), and so does a read-only long-term pin
 * (gup_must_unshare() → FAULT_FLAG_UNSHARE), so that what a device was given stays what
 * the process sees after it writes. fork (dup_mmap → copy_present_pte) shares shared
 * mappings' pages, and shares a private mapping's pages copy-on-write except a page that
 * is pinned, which the child gets a copy of at once (page_needs_cow_for_dma()). A shared
 * anonymous mapping is a mapping of an anonymous shmem object (shmem_zero_setup), whose
 * pages every process mapping it sees, whenever they are faulted in.
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
  /** vm_ops->open/close: another VMA (fork, split) uses the object behind the mapping, or one stops. */
  obj?: { open(): void; close(): void };
  /** vm_pgoff: the page of the object the mapping starts at (a split keeps it exact). */
  pgoff: number;
  /** MAP_SHARED (VM_SHARED): the mapping's pages are the object's, never copied. */
  shared: boolean;
  /** Page indices of a private mapping whose frame it does not own exclusively. */
  cow: Set<number>;
}

export class Mm {
  private readonly vmas: Vma[] = [];
  /** mm_users > 0: the owner has not exited (mmget_not_zero() succeeds). */
  alive = true;
  /** Pages charged against RLIMIT_MEMLOCK (mm->locked_vm). */
  lockedVm = 0;
  /** Where the next kernel-chosen mapping goes (top-down from here). */
  private mmapBase = 0x7f0000000000n;

  constructor(readonly pages: PageAllocator) {}

  /** PAGE_SIZE of this kernel (4 KiB, or 64 KiB on a 64K-page POWER kernel). */
  private get page(): bigint {
    // Made again only when the size changes (at boot): every copy to or from user memory asks.
    if (this.pageBigOf !== this.pages.pageSize) {
      this.pageBigOf = this.pages.pageSize;
      this.pageBig = BigInt(this.pageBigOf);
    }
    return this.pageBig;
  }
  private pageBigOf = 0;
  private pageBig = 0n;

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
    shared = true,
  ): bigint {
    const a = this.insertVma(addr, length, prot, shared);
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

  /** mmap(MAP_ANONYMOUS), private unless `shared`; `addr` refuses to replace (MAP_FIXED_NOREPLACE). */
  mmapAnon(addr: bigint | null, length: number, prot: number, shared = false): bigint {
    const a = this.insertVma(addr, length, prot, shared);
    if (a < 0n || !shared) return a;
    // shmem_zero_setup(): the pages belong to an object, freed with its last mapping.
    const pages = this.pages;
    const shm = new Map<number, number>();
    let users = 1;
    const v = this.find(a) as Vma;
    v.fault = (pgoff) => {
      let pfn = shm.get(pgoff);
      if (pfn === undefined) {
        const p = pages.alloc();
        if (p === null) return null;
        shm.set(pgoff, (pfn = p));
      }
      pages.get(pfn);
      return pfn;
    };
    v.obj = {
      open: () => void users++,
      close: () => {
        if (--users) return;
        for (const pfn of shm.values()) pages.put(pfn);
      },
    };
    return a;
  }

  private insertVma(addr: bigint | null, length: number, prot: number, shared: boolean): bigint {
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
    this.vmas.push({
      start,
      end: start + len,
      prot,
      pages: new Map(),
      pgoff: 0,
      shared,
      cow: new Set(),
    });
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
      const part = (s: bigint, e: bigint): Vma => ({
        ...v,
        start: s,
        end: e,
        pgoff: v.pgoff + Number((s - v.start) / this.page),
        pages: new Map(),
        cow: new Set(),
      });
      if (v.start < addr) keep.push(part(v.start, addr));
      if (v.end > end) keep.push(part(end, v.end));
      for (const [idx, pfn] of v.pages) {
        const a = BigInt(idx) << BigInt(this.pages.pageShift);
        const k = keep.find((x) => a >= x.start && a < x.end);
        if (k) {
          k.pages.set(idx, pfn);
          if (v.cow.has(idx)) k.cow.add(idx);
        } else this.pages.put(pfn);
      }
      for (const k of keep) k.obj?.open();
      v.obj?.close();
      this.vmas.splice(this.vmas.indexOf(v), 1, ...keep);
    }
    return 0;
  }

  /**
   * The frame behind a user page, faulting it in; null: unmapped or protected. A write, or
   * an unshare (a read-only long-term pin), first breaks copy-on-write.
   */
  private fault(addr: bigint, write: boolean, unshare = false): number | null {
    const v = this.find(addr);
    if (!v) return null;
    if (!(v.prot & (write ? PROT_WRITE : PROT_READ))) return null;
    // Inside a mapping, so below TASK_SIZE: exact as a double.
    const idx = Math.floor(Number(addr) / this.pages.pageSize);
    let pfn = v.pages.get(idx);
    if (pfn === undefined && v.fault) {
      const p = v.fault(idx - Number(v.start >> BigInt(this.pages.pageShift)) + v.pgoff);
      if (p === null) return null;
      pfn = p;
      v.pages.set(idx, pfn);
      if (!v.shared) v.cow.add(idx);
    }
    if (pfn === undefined) {
      const p = this.pages.alloc();
      if (p === null) return null;
      pfn = p;
      v.pages.set(idx, pfn);
    }
    if ((write || unshare) && v.cow.has(idx)) return this.breakCow(v, idx, pfn);
    return pfn;
  }

  /**
   * wp_page_copy(), or reuse of a page no one else references (wp_can_reuse_anon_folio; a
   * file's page is also held by its page cache, so it is always copied).
   */
  private breakCow(v: Vma, idx: number, pfn: number): number | null {
    if (this.pages.refCount(pfn) === 1) {
      v.cow.delete(idx);
      return pfn;
    }
    const copy = this.pages.alloc();
    if (copy === null) return null;
    this.copyFrame(copy, pfn);
    v.pages.set(idx, copy);
    v.cow.delete(idx);
    this.pages.put(pfn);
    return copy;
  }

  /** copy_mc_user_highpage() */
  private copyFrame(to: number, from: number): void {
    const size = this.pages.pageSize;
    this.pages.ram.write(to * size, this.pages.ram.read(from * size, size));
  }

  copyFromUser(addr: bigint, len: number): Uint8Array | null {
    const size = this.pages.pageSize;
    let out: Uint8Array | null = null;
    for (let done = 0; done < len;) {
      const a = done ? addr + BigInt(done) : addr;
      const v = this.find(a);
      if (!v || !(v.prot & PROT_READ)) return null;
      // Inside a mapping, so below TASK_SIZE: exact as a double.
      const an = Number(a);
      const off = an % size;
      const n = Math.min(len - done, size - off);
      let pfn = v.pages.get(Math.floor(an / size));
      if (pfn === undefined && v.fault) pfn = this.fault(a, false) ?? undefined;
      const bytes = pfn === undefined ? null : this.pages.ram.read(pfn * size + off, n);
      // Within one page (most calls): what RAM gave is the copy.
      if (n === len) return bytes ?? new Uint8Array(len);
      out ??= new Uint8Array(len);
      if (bytes) out.set(bytes, done);
      done += n;
    }
    return out ?? new Uint8Array(len);
  }

  copyToUser(addr: bigint, data: Uint8Array): boolean {
    // Check the whole range first: a failing copy_to_user writes nothing in the model.
    const page = this.page;
    const end = addr + BigInt(data.length);
    // Page by page, unless one writable mapping holds it all (most calls).
    const v0 = this.find(addr);
    if (!v0 || end > v0.end || !(v0.prot & PROT_WRITE))
      for (let a = addr - (addr % page); a < end; a += page) {
        const v = this.find(a < addr ? addr : a);
        if (!v || !(v.prot & PROT_WRITE)) return false;
      }
    const size = this.pages.pageSize;
    for (let done = 0; done < data.length;) {
      const a = done ? addr + BigInt(done) : addr;
      const off = Number(a % page);
      const n = Math.min(data.length - done, size - off);
      const pfn = this.fault(a, true);
      if (pfn === null) return false;
      this.pages.ram.write(
        pfn * size + off,
        n === data.length ? data : data.subarray(done, done + n),
      );
      done += n;
    }
    return true;
  }

  /** The frame mapped at a user address if it is present (a page-table walk that faults nothing in). */
  present(addr: bigint): number | null {
    const v = this.find(addr);
    return v?.pages.get(Number(addr >> BigInt(this.pages.pageShift))) ?? null;
  }

  /**
   * pin_user_pages(FOLL_LONGTERM unless told): frames of npages pages from addr, each
   * pinned. A read-only long-term pin first unshares a page the mapping does not own
   * (gup_must_unshare()).
   */
  pin(addr: bigint, npages: number, write: boolean, longterm = true): number[] | null {
    const pfns: number[] = [];
    for (let i = 0; i < npages; i++) {
      const pfn = this.fault(addr + BigInt(i) * this.page, write, !write && longterm);
      if (pfn === null) {
        for (const p of pfns) this.pages.unpin(p);
        return null;
      }
      this.pages.pin(pfn);
      pfns.push(pfn);
    }
    return pfns;
  }

  unpin(pfns: number[]): void {
    for (const p of pfns) this.pages.unpin(p);
  }

  /** get_user_pages_fast(addr, 1, 0) then put_page(): the frame a read would see, or null. */
  getUserPage(addr: bigint): number | null {
    return this.fault(addr, false);
  }

  /**
   * dup_mmap(): the child's copy of this address space. Shared mappings share their pages;
   * private ones share them copy-on-write on both sides, except pinned pages, which the
   * child gets a copy of (copy_present_page). Null when a copy cannot be allocated.
   */
  fork(): Mm | null {
    const child = new Mm(this.pages);
    child.mmapBase = this.mmapBase;
    for (const v of this.vmas) {
      const c: Vma = { ...v, pages: new Map(), cow: new Set() };
      c.obj?.open();
      child.vmas.push(c);
      for (const [idx, pfn] of v.pages) {
        if (!v.shared && this.pages.pinCount(pfn) > 0) {
          const copy = this.pages.alloc();
          if (copy === null) {
            child.destroy();
            return null;
          }
          this.copyFrame(copy, pfn);
          c.pages.set(idx, copy);
          continue;
        }
        this.pages.get(pfn);
        c.pages.set(idx, pfn);
        if (!v.shared) {
          v.cow.add(idx);
          c.cow.add(idx);
        }
      }
    }
    return child;
  }

  /** Tear down every mapping (exit_mmap); the mm is gone for remote users (mmget_not_zero). */
  destroy(): void {
    this.alive = false;
    for (const v of this.vmas.splice(0)) {
      for (const pfn of v.pages.values()) this.pages.put(pfn);
      v.obj?.close();
    }
  }
}
