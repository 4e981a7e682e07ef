/**
 * A small loopback NIC: one transmit and one receive descriptor ring in RAM, in the shape
 * of Intel's e1000 legacy descriptors (Intel 82574 datasheet ch. 7, legacy transmit and
 * receive descriptor formats; QEMU hw/net/e1000e_core.c, whose head/tail ring handling
 * this follows), with every transmitted frame looped back
 * into the receive ring, so one device exercises DMA in both directions. It is a model-
 * only device: attach it to a function with `Machine.attachModel`.
 *
 * BAR0, 4-byte aligned 32-bit registers (other accesses read all ones, writes ignored):
 *
 *   0x00 CTRL    RW  bit 0 TXEN, bit 1 RXEN, bit 2 NSDATA (frame data read and written
 *                    with the No Snoop attribute; descriptors always snoop), bit 31 RST
 *                    (self-clearing: registers, counters and the DMA-error stop reset)
 *   0x04 STATUS  RO  bit 0 link up (always), bit 1 DMAERR (a DMA failed; rings stopped)
 *   0x08 ICR     RC  causes, cleared by reading: bit 0 TXDW (a TX descriptor written back),
 *                    bit 1 RXT0 (frame received), bit 2 RXO (no RX descriptor: frame
 *                    dropped), bit 3 DMAERR
 *   0x0c IMS     RW  which causes interrupt (`onInterrupt` is called when one is raised)
 *   0x10 TDBAL / 0x14 TDBAH  TX ring base; 0x18 TDLEN ring bytes (multiple of 16)
 *   0x1c TDH  TX head (the device's: next descriptor it will process)
 *   0x20 TDT  TX tail (software's: one past the last descriptor ready); writing it runs TX
 *   0x30 RDBAL / 0x34 RDBAH  RX ring base; 0x38 RDLEN; 0x3c RDH; 0x40 RDT
 *   0x44 RBSZ    RW  receive buffer size in bytes (default 2048)
 *   0x50 TPT / 0x54 TPR / 0x58 MPC  RO counters: frames sent, received, missed
 *
 * TX descriptor (16 bytes): 0 buffer address (64-bit), 8 length (16-bit), 10 CSO,
 * 11 CMD (bit 0 EOP: last buffer of the frame, bit 3 RS: report status), 12 STA (bit 0 DD),
 * 13 CSS, 14 special. The device reads descriptors from TDH up to TDT, reads each buffer,
 * writes STA.DD back (the descriptor's upper dword) when RS is set, and advances TDH.
 *
 * RX descriptor (16 bytes): 0 buffer address, 8 length, 10 checksum, 12 status (bit 0 DD,
 * bit 1 EOP), 13 errors, 14 special. Descriptors from RDH up to (not including) RDT are
 * the device's to fill; a frame larger than RBSZ spans several, EOP on the last. A frame
 * that does not fit in the descriptors available is dropped (MPC, RXO).
 *
 * Any DMA that does not complete (IOMMU fault, Unsupported Request, Bus Master Enable
 * clear) stops both rings where they are, sets STATUS.DMAERR and ICR.DMAERR; CTRL.RST
 * restarts the device.
 */
import type { BusMaster, DmaTransaction } from "../dma.js";
import type { DeviceModel } from "../pci/fabric.js";

export const NIC_CTRL = 0x00;
export const NIC_STATUS = 0x04;
export const NIC_ICR = 0x08;
export const NIC_IMS = 0x0c;
export const NIC_TDBAL = 0x10;
export const NIC_TDBAH = 0x14;
export const NIC_TDLEN = 0x18;
export const NIC_TDH = 0x1c;
export const NIC_TDT = 0x20;
export const NIC_RDBAL = 0x30;
export const NIC_RDBAH = 0x34;
export const NIC_RDLEN = 0x38;
export const NIC_RDH = 0x3c;
export const NIC_RDT = 0x40;
export const NIC_RBSZ = 0x44;
export const NIC_TPT = 0x50;
export const NIC_TPR = 0x54;
export const NIC_MPC = 0x58;

export const CTRL_TXEN = 1 << 0;
export const CTRL_RXEN = 1 << 1;
export const CTRL_NSDATA = 1 << 2;
export const CTRL_RST = 1 << 31;
export const STATUS_LU = 1 << 0;
export const STATUS_DMAERR = 1 << 1;
export const ICR_TXDW = 1 << 0;
export const ICR_RXT0 = 1 << 1;
export const ICR_RXO = 1 << 2;
export const ICR_DMAERR = 1 << 3;

export const TXD_CMD_EOP = 1 << 0;
export const TXD_CMD_RS = 1 << 3;
export const TXD_STA_DD = 1 << 0;
export const RXD_STA_DD = 1 << 0;
export const RXD_STA_EOP = 1 << 1;
export const DESC_SIZE = 16;

const REGS = [
  NIC_CTRL,
  NIC_IMS,
  NIC_TDBAL,
  NIC_TDBAH,
  NIC_TDLEN,
  NIC_TDH,
  NIC_TDT,
  NIC_RDBAL,
  NIC_RDBAH,
  NIC_RDLEN,
  NIC_RDH,
  NIC_RDT,
  NIC_RBSZ,
] as const;

export class LoopbackNic implements DeviceModel {
  readonly regs = new Map<number, number>();
  status = STATUS_LU;
  icr = 0;
  tpt = 0;
  tpr = 0;
  mpc = 0;
  onInterrupt: ((causes: number) => void) | null = null;
  /** Every DMA transaction the device issued, most recent last. */
  readonly transactions: DmaTransaction[] = [];
  /** Buffers of the frame being gathered from TX descriptors. */
  private frame: Uint8Array[] = [];

  constructor(private readonly bus: BusMaster) {
    this.reset();
  }

  private reset(): void {
    for (const r of REGS) this.regs.set(r, 0);
    this.regs.set(NIC_RBSZ, 2048);
    this.status = STATUS_LU;
    this.icr = 0;
    this.tpt = this.tpr = this.mpc = 0;
    this.frame = [];
  }

  private reg(r: number): number {
    return this.regs.get(r) ?? 0;
  }

  mmioRead(bar: number, off: number, width: 1 | 2 | 4 | 8): bigint {
    if (bar !== 0 || width !== 4 || off % 4 !== 0) return (1n << BigInt(width * 8)) - 1n;
    switch (off) {
      case NIC_STATUS:
        return BigInt(this.status);
      case NIC_ICR: {
        const v = this.icr;
        this.icr = 0;
        return BigInt(v);
      }
      case NIC_TPT:
        return BigInt(this.tpt);
      case NIC_TPR:
        return BigInt(this.tpr);
      case NIC_MPC:
        return BigInt(this.mpc);
    }
    return this.regs.has(off) ? BigInt(this.reg(off)) : 0xffffffffn;
  }

  mmioWrite(bar: number, off: number, width: 1 | 2 | 4 | 8, value: bigint): void {
    if (bar !== 0 || width !== 4 || off % 4 !== 0 || !this.regs.has(off)) return;
    const v = Number(value & 0xffffffffn);
    if (off === NIC_CTRL && v & CTRL_RST) {
      this.reset();
      return;
    }
    this.regs.set(off, v >>> 0);
    if (off === NIC_TDT || off === NIC_CTRL) this.transmit();
  }

  private ring(base: number, len: number) {
    const lo = this.reg(base);
    const hi = this.reg(base + 4);
    return {
      base: (BigInt(hi) << 32n) | BigInt(lo),
      count: Math.floor(this.reg(len) / DESC_SIZE),
    };
  }

  private stopped(): boolean {
    return (this.status & STATUS_DMAERR) !== 0;
  }

  private dma(t: DmaTransaction): boolean {
    this.transactions.push(t);
    if (t.ok) return true;
    this.status |= STATUS_DMAERR;
    this.cause(ICR_DMAERR);
    return false;
  }

  private cause(c: number): void {
    this.icr |= c;
    if (c & this.reg(NIC_IMS)) this.onInterrupt?.(this.icr);
  }

  private get noSnoopData(): boolean {
    return (this.reg(NIC_CTRL) & CTRL_NSDATA) !== 0;
  }

  /** Process TX descriptors from TDH up to TDT. */
  private transmit(): void {
    if (!(this.reg(NIC_CTRL) & CTRL_TXEN)) return;
    const { base, count } = this.ring(NIC_TDBAL, NIC_TDLEN);
    if (count === 0) return;
    const tail = this.reg(NIC_TDT);
    if (tail >= count) return;
    while (!this.stopped() && this.reg(NIC_TDH) !== tail) {
      const head = this.reg(NIC_TDH);
      if (head >= count) return;
      const at = base + BigInt(head * DESC_SIZE);
      const d = this.bus.read(at, DESC_SIZE);
      if (!this.dma(d)) return;
      const desc = new DataView(d.data.buffer, d.data.byteOffset, DESC_SIZE);
      const addr = desc.getBigUint64(0, true);
      const length = desc.getUint16(8, true);
      const cmd = desc.getUint8(11);
      if (length > 0) {
        const b = this.bus.read(addr, length, { noSnoop: this.noSnoopData });
        if (!this.dma(b)) return;
        this.frame.push(b.data);
      }
      if (cmd & TXD_CMD_RS) {
        const upper = new Uint8Array(d.data.subarray(12, 16));
        upper[0] = (upper[0] as number) | TXD_STA_DD;
        if (!this.dma(this.bus.write(at + 12n, upper))) return;
        this.cause(ICR_TXDW);
      }
      this.regs.set(NIC_TDH, (head + 1) % count);
      if (cmd & TXD_CMD_EOP) {
        const parts = this.frame.splice(0);
        const frame = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
        let o = 0;
        for (const p of parts) {
          frame.set(p, o);
          o += p.length;
        }
        this.tpt++;
        this.receive(frame);
      }
    }
  }

  /** Place one frame into RX descriptors from RDH (the loopback path). */
  private receive(frame: Uint8Array): void {
    if (!(this.reg(NIC_CTRL) & CTRL_RXEN) || this.stopped()) return;
    const { base, count } = this.ring(NIC_RDBAL, NIC_RDLEN);
    const head = this.reg(NIC_RDH);
    const tail = this.reg(NIC_RDT);
    const bsize = this.reg(NIC_RBSZ);
    if (count === 0 || head >= count || tail >= count || bsize === 0) return;
    const free = (tail - head + count) % count;
    const need = Math.max(1, Math.ceil(frame.length / bsize));
    if (need > free) {
      this.mpc++;
      this.cause(ICR_RXO);
      return;
    }
    for (let i = 0, off = 0; i < need; i++) {
      const idx = (head + i) % count;
      const at = base + BigInt(idx * DESC_SIZE);
      const d = this.bus.read(at, DESC_SIZE);
      if (!this.dma(d)) return;
      const addr = new DataView(d.data.buffer, d.data.byteOffset, DESC_SIZE).getBigUint64(0, true);
      const part = frame.subarray(off, Math.min(frame.length, off + bsize));
      off += part.length;
      if (part.length > 0) {
        if (!this.dma(this.bus.write(addr, part, { noSnoop: this.noSnoopData }))) return;
      }
      const wb = new Uint8Array(8);
      const v = new DataView(wb.buffer);
      v.setUint16(0, part.length, true);
      v.setUint8(4, RXD_STA_DD | (i === need - 1 ? RXD_STA_EOP : 0));
      if (!this.dma(this.bus.write(at + 8n, wb))) return;
      this.regs.set(NIC_RDH, (idx + 1) % count);
    }
    this.tpr++;
    this.cause(ICR_RXT0);
  }
}
