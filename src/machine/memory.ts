/**
 * System RAM: byte-addressable physical memory, stored sparsely in 4 KiB frames (a frame
 * never written reads as zeros). CPUs and DMA both reach it by physical address.
 */
import { PAGE_SIZE } from "./hw.js";
export { PAGE_SHIFT, PAGE_SIZE } from "./hw.js";

export class PhysicalMemory {
  private readonly frames = new Map<number, Uint8Array>();

  /** `size` bytes of RAM starting at physical address 0. */
  constructor(readonly size: number) {}

  private frame(pfn: number, create: boolean): Uint8Array | undefined {
    let f = this.frames.get(pfn);
    if (!f && create) {
      f = new Uint8Array(PAGE_SIZE);
      this.frames.set(pfn, f);
    }
    return f;
  }

  read(pa: number, len: number): Uint8Array {
    const off0 = pa % PAGE_SIZE;
    if (off0 + len <= PAGE_SIZE) {
      // Within one frame (every PTE and most ioctl arguments): one copy.
      const f = this.frames.get(Math.floor(pa / PAGE_SIZE));
      return f ? f.slice(off0, off0 + len) : new Uint8Array(len);
    }
    const out = new Uint8Array(len);
    for (let done = 0; done < len;) {
      const a = pa + done;
      const off = a % PAGE_SIZE;
      const n = Math.min(len - done, PAGE_SIZE - off);
      const f = this.frame(Math.floor(a / PAGE_SIZE), false);
      if (f) out.set(f.subarray(off, off + n), done);
      done += n;
    }
    return out;
  }

  write(pa: number, data: Uint8Array): void {
    const off0 = pa % PAGE_SIZE;
    if (off0 + data.length <= PAGE_SIZE) {
      (this.frame(Math.floor(pa / PAGE_SIZE), true) as Uint8Array).set(data, off0);
      return;
    }
    for (let done = 0; done < data.length;) {
      const a = pa + done;
      const off = a % PAGE_SIZE;
      const n = Math.min(data.length - done, PAGE_SIZE - off);
      (this.frame(Math.floor(a / PAGE_SIZE), true) as Uint8Array).set(
        data.subarray(done, done + n),
        off,
      );
      done += n;
    }
  }

  /** Forget a frame's contents (the page allocator zeroes freed pages this way). */
  clear(pfn: number): void {
    this.frames.delete(pfn);
  }
}
