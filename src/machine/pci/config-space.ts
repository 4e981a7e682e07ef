/**
 * A function's configuration space as bytes: the single source of truth for every PCI
 * fact the kernel model learns. Writes go through a per-bit write mask, as on hardware:
 * read-only fields (IDs, capability registers) ignore writes, RW fields take them.
 * Layout per the PCI Local Bus 3.0 and PCIe 6.0 specifications, register names from
 * include/uapi/linux/pci_regs.h.
 *
 * Storage is in 256-byte pages allocated on first non-zero byte: most of a PCIe
 * function's 4 KiB extended space is zero, and a 10k-function host should not cost 40 MiB.
 */

const PAGE = 256;

export class ConfigSpace {
  private readonly pages: (Uint8Array | undefined)[];
  /** Bits software may change, by byte offset (sparse: most of config space is read-only). */
  readonly writable = new Map<number, number>();
  /** Leading bytes that are known facts (64 for an unprivileged capture). */
  known: number;
  /**
   * For a space laid out from a description: the byte ranges it defines (header, the
   * capabilities). Device-specific registers elsewhere below 0x100 are then not known.
   */
  defined: [number, number][] | null = null;

  constructor(
    readonly size: 256 | 4096,
    known: number = size,
  ) {
    this.pages = new Array<Uint8Array | undefined>(size / PAGE);
    this.known = Math.min(known, size);
  }

  /** Are bytes [off, off+len) known facts rather than placeholders? */
  isKnown(off: number, len: number): boolean {
    if (off + len > this.known) return false;
    if (!this.defined || off >= 0x100) return true;
    return this.defined.some(([a, b]) => off >= a && off + len <= b);
  }

  private byte(off: number): number {
    return this.pages[off >> 8]?.[off & 0xff] ?? 0;
  }

  private put(off: number, b: number): void {
    let page = this.pages[off >> 8];
    if (!page) {
      if (b === 0) return;
      page = this.pages[off >> 8] = new Uint8Array(PAGE);
    }
    page[off & 0xff] = b;
  }

  read(off: number, width: 1 | 2 | 4): number {
    if (off < 0 || off + width > this.size)
      return width === 4 ? 0xffffffff : (1 << (width * 8)) - 1;
    let v = 0;
    for (let i = width - 1; i >= 0; i--) v = v * 256 + this.byte(off + i);
    return v;
  }

  /** A software write: only writable bits change. */
  write(off: number, width: 1 | 2 | 4, value: number): void {
    if (off < 0 || off + width > this.size) return;
    for (let i = 0; i < width; i++) {
      const b = Math.floor(value / 2 ** (8 * i)) & 0xff;
      const m = this.writable.get(off + i) ?? 0;
      if (m) this.put(off + i, (this.byte(off + i) & ~m) | (b & m));
    }
  }

  /** Set bytes as hardware (builder/device model), ignoring the write mask. */
  set(off: number, width: 1 | 2 | 4, value: number): void {
    for (let i = 0; i < width; i++) this.put(off + i, Math.floor(value / 2 ** (8 * i)) & 0xff);
  }

  /** Load raw bytes from offset 0. */
  load(bytes: Uint8Array): void {
    for (let i = 0; i < Math.min(bytes.length, this.size); i++) this.put(i, bytes[i] as number);
  }

  /** Mark bits of a register writable. */
  allow(off: number, width: 1 | 2 | 4, mask: number): void {
    for (let i = 0; i < width; i++) {
      if (off + i >= this.size) return;
      const m = (this.writable.get(off + i) ?? 0) | (Math.floor(mask / 2 ** (8 * i)) & 0xff);
      if (m) this.writable.set(off + i, m);
    }
  }
}
