/**
 * "nsgpu": a GPU-like copy engine whose data transfers may carry PCIe No Snoop, as a GPU's
 * do for the buffers its driver maps write-combined or uncached (and which the guest then
 * has to keep coherent itself: CLFLUSH, or WBINVD where its driver uses that). It is a
 * model-only device, not a real product: vendor 1234 (the ID QEMU's own devices use) with
 * device 6e73 ("ns"), which no QEMU device has. `Machine.attachKnownModels` gives it to any
 * function with that ID.
 *
 * BAR0 (4 KiB), 4-byte aligned 32-bit registers; an 8-byte aligned 8-byte access is two
 * register accesses, low then high (so DST and SRC can be written whole); other accesses
 * read all ones and writes are ignored:
 *
 *   0x00 ID      RO  0x6e730001
 *   0x04 CTRL    RW  bit 0 NOSNOOP: the engine's data reads and writes ask for No Snoop
 *                    (honoured only where Device Control's Enable No Snoop allows, dma.ts)
 *   0x08 DST_LO  RW  / 0x0c DST_HI: destination bus address
 *   0x10 SRC_LO  RW  / 0x14 SRC_HI: source bus address
 *   0x18 LEN     RW  bytes to move (at most 1 MiB)
 *   0x1c PATTERN RW  the 32-bit value FILL repeats (little-endian)
 *   0x20 CMD     WO  1 FILL: write LEN bytes of PATTERN at DST; 2 COPY: read LEN bytes at
 *                    SRC and write them at DST
 *   0x24 STATUS  RO  bit 0 DONE (the last command finished), bit 1 ERR (one of its DMAs
 *                    did not complete: IOMMU fault, Unsupported Request, bus master off)
 *   0x28 COUNT   RO  commands completed
 *
 * The model has no clock: a command completes within the register write that starts it.
 */
import type { BusMaster, DmaTransaction } from "../dma.js";
import type { DeviceModel } from "../pci/fabric.js";

export const NSGPU_VENDOR = 0x1234;
export const NSGPU_DEVICE = 0x6e73;
export const NSGPU_BAR0_SIZE = 4096;
export const NSGPU_ID = 0x6e730001;

export const NSGPU_ID_REG = 0x00;
export const NSGPU_CTRL = 0x04;
export const NSGPU_DST_LO = 0x08;
export const NSGPU_DST_HI = 0x0c;
export const NSGPU_SRC_LO = 0x10;
export const NSGPU_SRC_HI = 0x14;
export const NSGPU_LEN = 0x18;
export const NSGPU_PATTERN = 0x1c;
export const NSGPU_CMD = 0x20;
export const NSGPU_STATUS = 0x24;
export const NSGPU_COUNT = 0x28;

export const CTRL_NOSNOOP = 1 << 0;
export const CMD_FILL = 1;
export const CMD_COPY = 2;
export const STATUS_DONE = 1 << 0;
export const STATUS_ERR = 1 << 1;
const MAX_LEN = 1 << 20;

const RW = [
  NSGPU_CTRL,
  NSGPU_DST_LO,
  NSGPU_DST_HI,
  NSGPU_SRC_LO,
  NSGPU_SRC_HI,
  NSGPU_LEN,
  NSGPU_PATTERN,
];

export class NsGpu implements DeviceModel {
  readonly regs = new Map<number, number>(RW.map((r) => [r, 0]));
  status = 0;
  count = 0;
  /** Every DMA transaction the engine issued, most recent last. */
  readonly transactions: DmaTransaction[] = [];

  constructor(private readonly bus: BusMaster) {}

  private reg(r: number): number {
    return this.regs.get(r) ?? 0;
  }

  private addr(lo: number): bigint {
    return (BigInt(this.reg(lo + 4)) << 32n) | BigInt(this.reg(lo));
  }

  mmioRead(bar: number, off: number, width: 1 | 2 | 4 | 8): bigint {
    if (bar === 0 && width === 8 && off % 8 === 0 && off < NSGPU_BAR0_SIZE)
      return this.mmioRead(0, off, 4) | (this.mmioRead(0, off + 4, 4) << 32n);
    if (bar !== 0 || width !== 4 || off % 4 !== 0 || off >= NSGPU_BAR0_SIZE)
      return (1n << BigInt(width * 8)) - 1n;
    switch (off) {
      case NSGPU_ID_REG:
        return BigInt(NSGPU_ID);
      case NSGPU_STATUS:
        return BigInt(this.status);
      case NSGPU_COUNT:
        return BigInt(this.count);
    }
    return this.regs.has(off) ? BigInt(this.reg(off)) : 0xffffffffn;
  }

  mmioWrite(bar: number, off: number, width: 1 | 2 | 4 | 8, value: bigint): void {
    if (bar === 0 && width === 8 && off % 8 === 0) {
      this.mmioWrite(0, off, 4, value & 0xffffffffn);
      this.mmioWrite(0, off + 4, 4, value >> 32n);
      return;
    }
    if (bar !== 0 || width !== 4 || off % 4 !== 0) return;
    const v = Number(value & 0xffffffffn) >>> 0;
    if (this.regs.has(off)) this.regs.set(off, v);
    else if (off === NSGPU_CMD) this.command(v);
  }

  private command(cmd: number): void {
    if (cmd !== CMD_FILL && cmd !== CMD_COPY) return;
    const len = Math.min(this.reg(NSGPU_LEN), MAX_LEN);
    const opts = { noSnoop: (this.reg(NSGPU_CTRL) & CTRL_NOSNOOP) !== 0 };
    let ok = true;
    let data: Uint8Array;
    if (cmd === CMD_FILL) {
      data = new Uint8Array(len);
      const p = this.reg(NSGPU_PATTERN);
      for (let i = 0; i < len; i++) data[i] = (p >>> ((i % 4) * 8)) & 0xff;
    } else {
      const t = this.bus.read(this.addr(NSGPU_SRC_LO), len, opts);
      this.transactions.push(t);
      ok = t.ok;
      data = t.data;
    }
    if (ok && len > 0) {
      const t = this.bus.write(this.addr(NSGPU_DST_LO), data, opts);
      this.transactions.push(t);
      ok = t.ok;
    }
    this.count++;
    this.status = STATUS_DONE | (ok ? 0 : STATUS_ERR);
  }
}
