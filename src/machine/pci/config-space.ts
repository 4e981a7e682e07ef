/**
 * A function's configuration space as bytes: the single source of truth for every PCI
 * fact the kernel model learns. Writes go through a per-bit write mask, as on hardware:
 * read-only fields (IDs, capability registers) ignore writes, RW fields take them.
 * Layout per the PCI Local Bus 3.0 and PCIe 6.0 specifications, register names from
 * include/uapi/linux/pci_regs.h.
 */

export class ConfigSpace {
  readonly bytes: Uint8Array;
  /** Bits software may change. */
  readonly writable: Uint8Array;
  /** Leading bytes that are known facts (64 for an unprivileged capture). */
  known: number;

  constructor(size: 256 | 4096, known: number = size) {
    this.bytes = new Uint8Array(size);
    this.writable = new Uint8Array(size);
    this.known = Math.min(known, size);
  }

  get size(): number {
    return this.bytes.length;
  }

  read(off: number, width: 1 | 2 | 4): number {
    if (off < 0 || off + width > this.bytes.length) return width === 4 ? 0xffffffff : (1 << (width * 8)) - 1;
    let v = 0;
    for (let i = width - 1; i >= 0; i--) v = v * 256 + (this.bytes[off + i] as number);
    return v;
  }

  /** A software write: only writable bits change. */
  write(off: number, width: 1 | 2 | 4, value: number): void {
    if (off < 0 || off + width > this.bytes.length) return;
    for (let i = 0; i < width; i++) {
      const b = Math.floor(value / 2 ** (8 * i)) & 0xff;
      const m = this.writable[off + i] as number;
      this.bytes[off + i] = ((this.bytes[off + i] as number) & ~m) | (b & m);
    }
  }

  /** Set bytes as hardware (builder/device model), ignoring the write mask. */
  set(off: number, width: 1 | 2 | 4, value: number): void {
    for (let i = 0; i < width; i++) this.bytes[off + i] = Math.floor(value / 2 ** (8 * i)) & 0xff;
  }

  /** Mark bits of a register writable. */
  allow(off: number, width: 1 | 2 | 4, mask: number): void {
    for (let i = 0; i < width; i++) {
      if (off + i >= this.bytes.length) return;
      this.writable[off + i] = (this.writable[off + i] as number) | (Math.floor(mask / 2 ** (8 * i)) & 0xff);
    }
  }
}
