/**
 * QEMU's educational PCI device "edu" (1234:11e8), register for register as QEMU
 * hw/misc/edu.c models it, on BAR0 (1 MiB):
 *
 *   0x00 RO  identification 0x010000ed
 *   0x04 RW  liveness check: reads back the bitwise NOT of what was written
 *   0x08 RW  factorial: a write (ignored while computing) starts computing val! (32-bit,
 *            wrapping); the result replaces the register
 *   0x20 RW  status: bit 0 computing (RO), bit 7 raise an interrupt when a factorial is done
 *   0x24 RO  interrupt status (0x1 factorial done, 0x100 DMA done)
 *   0x60 WO  interrupt raise: ORs the value into interrupt status
 *   0x64 WO  interrupt acknowledge: clears those bits
 *   0x80 RW  DMA source address         (64-bit)
 *   0x88 RW  DMA destination address    (64-bit)
 *   0x90 RW  DMA transfer count         (64-bit)
 *   0x98 RW  DMA command: bit 0 start, bit 1 direction (0 RAM → device, 1 device → RAM),
 *            bit 2 raise interrupt 0x100 when done
 *
 * The DMA buffer is 4 KiB of device memory at device address 0x40000; the device reaches
 * RAM through its bus-master port (dma.ts), so the IOMMU translates its addresses, and
 * clamps them to its DMA mask (28 bits). Registers below 0x80 take 4-byte accesses only,
 * the DMA registers 4 or 8 (a 4-byte write replaces the whole register with the value
 * zero-extended); other sizes and misaligned accesses are invalid for the region
 * (.valid 4..8) and read as 0 (QEMU's unassigned read); unknown offsets read all ones.
 * While a DMA is running, writes to the DMA registers are ignored.
 *
 * Departures from QEMU, because the model has no clock: the factorial thread and the DMA
 * timer (100 ms of virtual time) complete within the MMIO write that starts them, so
 * software polling status / the start bit sees them done at its first read — one of the
 * interleavings QEMU allows. A DMA whose buffer range leaves the 4 KiB buffer is logged as
 * a guest error and not performed (QEMU logs it and then overruns its buffer).
 * Interrupts: `irqStatus` is the device's state; `onInterrupt` is called with
 * "msi" (MSI enabled: one message per raise) or "intx" (the INTx line level changes,
 * which the Status register's Interrupt Status bit follows, as QEMU's pci_set_irq has it).
 */
import type { BusMaster, DmaTransaction } from "../dma.js";
import type { DeviceModel } from "../pci/fabric.js";
import { walkCaps } from "../pci/builder.js";
import * as R from "../../uapi/pci_regs.js";

export const EDU_VENDOR = 0x1234;
export const EDU_DEVICE = 0x11e8;
export const EDU_BAR0_SIZE = 1 << 20;

export const EDU_IDENT = 0x010000ed;
export const FACT_IRQ = 0x00000001;
export const DMA_IRQ = 0x00000100;
export const EDU_STATUS_COMPUTING = 0x01;
export const EDU_STATUS_IRQFACT = 0x80;
export const EDU_DMA_RUN = 0x1;
export const EDU_DMA_TO_PCI = 0x2;
export const EDU_DMA_IRQ = 0x4;
export const DMA_START = 0x40000;
export const DMA_SIZE = 4096;

const M64 = (1n << 64n) - 1n;

export class EduDevice implements DeviceModel {
  addr4 = 0;
  fact = 0;
  status = 0;
  irqStatus = 0;
  readonly dma = { src: 0n, dst: 0n, cnt: 0n, cmd: 0n };
  readonly buffer = new Uint8Array(DMA_SIZE);
  dmaMask = (1n << 28n) - 1n;
  /** INTx line level (when MSI is off). */
  intx = false;
  onInterrupt: ((kind: "msi" | "intx", asserted: boolean) => void) | null = null;
  /** What QEMU would log with LOG_GUEST_ERROR. */
  readonly guestErrors: string[] = [];
  /** The DMA transactions the device issued, most recent last. */
  readonly transactions: DmaTransaction[] = [];

  constructor(private readonly bus: BusMaster) {}

  mmioRead(bar: number, off: number, width: 1 | 2 | 4 | 8): bigint {
    const ones = (1n << BigInt(width * 8)) - 1n;
    if (bar !== 0 || off < 0 || off + width > EDU_BAR0_SIZE) return ones;
    if (width < 4 || off % width !== 0) return 0n;
    let val = M64;
    if (off < 0x80 && width !== 4) return val & ones;
    switch (off) {
      case 0x00:
        val = BigInt(EDU_IDENT);
        break;
      case 0x04:
        val = BigInt(this.addr4);
        break;
      case 0x08:
        val = BigInt(this.fact);
        break;
      case 0x20:
        val = BigInt(this.status);
        break;
      case 0x24:
        val = BigInt(this.irqStatus);
        break;
      case 0x80:
        val = this.dma.src;
        break;
      case 0x88:
        val = this.dma.dst;
        break;
      case 0x90:
        val = this.dma.cnt;
        break;
      case 0x98:
        val = this.dma.cmd;
        break;
    }
    return val & ones;
  }

  mmioWrite(bar: number, off: number, width: 1 | 2 | 4 | 8, value: bigint): void {
    if (bar !== 0 || off < 0 || off + width > EDU_BAR0_SIZE) return;
    if (width < 4 || off % width !== 0) return;
    if (off < 0x80 && width !== 4) return;
    const val = value & ((1n << BigInt(width * 8)) - 1n);
    const v32 = Number(val & 0xffffffffn);
    switch (off) {
      case 0x04:
        this.addr4 = ~v32 >>> 0;
        break;
      case 0x08:
        if (this.status & EDU_STATUS_COMPUTING) break;
        this.fact = v32;
        this.status |= EDU_STATUS_COMPUTING;
        this.computeFactorial();
        break;
      case 0x20:
        if (v32 & EDU_STATUS_IRQFACT) this.status |= EDU_STATUS_IRQFACT;
        else this.status &= ~EDU_STATUS_IRQFACT;
        break;
      case 0x60:
        this.raiseIrq(v32);
        break;
      case 0x64:
        this.lowerIrq(v32);
        break;
      case 0x80:
        if (!this.running()) this.dma.src = val;
        break;
      case 0x88:
        if (!this.running()) this.dma.dst = val;
        break;
      case 0x90:
        if (!this.running()) this.dma.cnt = val;
        break;
      case 0x98:
        if (!(val & BigInt(EDU_DMA_RUN)) || this.running()) break;
        this.dma.cmd = val;
        this.dmaTimer();
        break;
    }
  }

  /**
   * A bus reset (hw/pci/pci.c pci_do_device_reset): pci_device_deassert_intx drops the
   * INTx line and with it Status.Interrupt; edu has no reset handler of its own, so its
   * registers, interrupt status included, survive.
   */
  functionReset(): void {
    if (this.intx) this.setIntx(false);
  }

  private running(): boolean {
    return (this.dma.cmd & BigInt(EDU_DMA_RUN)) !== 0n;
  }

  /** edu_fact_thread: val! in 32-bit arithmetic. */
  private computeFactorial(): void {
    let val = this.fact;
    let ret = 1;
    while (val > 0) ret = Math.imul(ret, val--) >>> 0;
    this.fact = ret;
    this.status &= ~EDU_STATUS_COMPUTING;
    if (this.status & EDU_STATUS_IRQFACT) this.raiseIrq(FACT_IRQ);
  }

  /** edu_dma_timer. */
  private dmaTimer(): void {
    const cmd = this.dma.cmd;
    const toPci = (cmd & BigInt(EDU_DMA_TO_PCI)) !== 0n;
    const local = toPci ? this.dma.src : this.dma.dst;
    const cnt = this.dma.cnt;
    const inRange =
      local >= BigInt(DMA_START) && local + cnt <= BigInt(DMA_START + DMA_SIZE) && cnt >= 0n;
    if (!inRange) {
      this.guestErrors.push(
        `EDU: DMA range 0x${hex16(local)}-0x${hex16((local + cnt - 1n) & M64)} out of bounds ` +
          `(0x${hex16(BigInt(DMA_START))}-0x${hex16(BigInt(DMA_START + DMA_SIZE - 1))})!`,
      );
    } else {
      const at = Number(local) - DMA_START;
      const n = Number(cnt);
      if (toPci) {
        const dst = this.clamp(this.dma.dst);
        this.transactions.push(this.bus.write(dst, this.buffer.slice(at, at + n)));
      } else {
        const src = this.clamp(this.dma.src);
        const t = this.bus.read(src, n);
        this.transactions.push(t);
        this.buffer.set(t.data, at);
      }
    }
    this.dma.cmd &= ~BigInt(EDU_DMA_RUN);
    if (this.dma.cmd & BigInt(EDU_DMA_IRQ)) this.raiseIrq(DMA_IRQ);
  }

  private clamp(addr: bigint): bigint {
    const res = addr & this.dmaMask;
    if (res !== addr) {
      this.guestErrors.push(`EDU: clamping DMA 0x${hex16(addr)} to 0x${hex16(res)}!`);
    }
    return res;
  }

  private msiEnabled(): boolean {
    const cs = this.bus.fn.config;
    const msi = walkCaps(cs).find(([id]) => id === R.PCI_CAP_ID_MSI)?.[1];
    return msi !== undefined && (cs.read(msi + R.PCI_MSI_FLAGS, 2) & R.PCI_MSI_FLAGS_ENABLE) !== 0;
  }

  private raiseIrq(val: number): void {
    this.irqStatus = (this.irqStatus | val) >>> 0;
    if (!this.irqStatus) return;
    if (this.msiEnabled()) {
      this.onInterrupt?.("msi", true);
    } else if (!this.intx) {
      this.setIntx(true);
    }
  }

  /**
   * pci_set_irq -> pci_irq_handler (hw/pci/pci.c): a change of the INTx level, which
   * pci_update_irq_status mirrors in the Status register's Interrupt Status bit whether
   * or not Command.INTx Disable keeps the line from the interrupt controller.
   */
  private setIntx(level: boolean): void {
    this.intx = level;
    const cs = this.bus.fn.config;
    const status = cs.read(R.PCI_STATUS, 2);
    cs.set(
      R.PCI_STATUS,
      2,
      level ? status | R.PCI_STATUS_INTERRUPT : status & ~R.PCI_STATUS_INTERRUPT,
    );
    this.onInterrupt?.("intx", level);
  }

  private lowerIrq(val: number): void {
    this.irqStatus = (this.irqStatus & ~val) >>> 0;
    if (!this.irqStatus && !this.msiEnabled() && this.intx) this.setIntx(false);
  }
}

function hex16(v: bigint): string {
  return v.toString(16).padStart(16, "0");
}
