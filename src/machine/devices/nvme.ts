/**
 * QEMU's NVMe controller (1b36:0010) as QEMU 7.2 (Debian 12) models its register file in
 * hw/nvme/ctrl.c, on BAR0: the controller registers of NVMe 1.4 §3.1 (struct NvmeBar,
 * 0x000-0xfff), doorbells from 0x1000.
 *
 *   0x00 CAP    RO  nvme_init_ctrl: MQES 0x7ff, CQR, TO 0xf (7.5 s), CSS NVM + I/O command
 *                   sets + admin only, MPSMIN 0 (4 KiB), MPSMAX 4 (64 KiB); no CMB, no PMR
 *   0x08 VS     RO  1.4.0
 *   0x0c INTMS  W1S interrupt mask set; INTMC reads the same mask
 *   0x10 INTMC  W1C interrupt mask clear
 *   0x14 CC     RW  controller configuration (nvme_write_bar)
 *   0x1c CSTS   RO  RDY, CFS, SHST
 *   0x24 AQA, 0x28 ASQ, 0x30 ACQ: admin queue attributes and bases (RW; ASQ/ACQ 64-bit,
 *                   their halves also writable alone)
 *
 * The enable handshake (nvme_write_bar, case NVME_REG_CC): while CC.EN and CC.SHN are both
 * clear, a write just stores CC. Setting EN runs nvme_start_ctrl, which refuses (CSTS =
 * CFS) a controller whose admin queues exist, whose ASQ/ACQ are not aligned to the memory
 * page size CC.MPS selects, whose CC.CSS is not in CAP.CSS, whose MPS is outside
 * CAP.MPSMIN..MPSMAX, whose IOCQES/IOSQES differ from the Identify data's 16/64 bytes, or
 * whose AQA sizes are 0; else the admin queues are created and CSTS = RDY. Clearing EN
 * resets the controller (nvme_ctrl_reset: queues gone), CC reads 0 and RDY clears. Setting
 * SHN completes a shutdown at once (CSTS.SHST = complete); clearing it clears SHST.
 *
 * Reads return the register bytes little-endian at any size and alignment (QEMU logs
 * misaligned or sub-dword accesses and serves them); reads past the register file, the
 * doorbells included, return 0. A function reset (FLR, or a reset of the bus above) clears
 * CSTS, INTMS/INTMC and CC and drops the queues, but leaves AQA/ASQ/ACQ as written
 * (nvme_pci_reset → nvme_ctrl_reset, which never touches them).
 *
 * Not modelled: command processing — the queues exist as state only; doorbell writes
 * are not acted on, so no command completes and no interrupt is raised.
 */
import type { DeviceModel } from "../pci/fabric.js";

export const NVME_VENDOR = 0x1b36;
export const NVME_DEVICE = 0x0010;

export const NVME_REG_CAP = 0x00;
export const NVME_REG_VS = 0x08;
export const NVME_REG_INTMS = 0x0c;
export const NVME_REG_INTMC = 0x10;
export const NVME_REG_CC = 0x14;
export const NVME_REG_CSTS = 0x1c;
export const NVME_REG_AQA = 0x24;
export const NVME_REG_ASQ = 0x28;
export const NVME_REG_ACQ = 0x30;
/** sizeof(NvmeBar) */
const NVME_BAR_SIZE = 0x1000;

export const NVME_CSTS_READY = 1 << 0;
export const NVME_CSTS_FAILED = 1 << 1;
export const NVME_CSTS_SHST_COMPLETE = 2 << 2;
const NVME_CSTS_SHST_MASK = 3 << 2;

/** CAP.CSS bits (include/block/nvme.h NVME_CAP_CSS_*). */
const CSS_NVM = 1 << 0;
const CSS_CSI_SUPP = 1 << 6;
const CSS_ADMIN_ONLY = 1 << 7;
/** NVMe 1.4.0 */
const NVME_SPEC_VER = 0x00010400;
/** Identify Controller SQES / CQES: 64-byte submission and 16-byte completion entries. */
const SQES = 6;
const CQES = 4;

/** CAP as nvme_init_ctrl builds it, field by field (NVMe 1.4 Figure 69). */
function initialCap(): bigint {
  const field = (v: number, shift: number) => BigInt(v) << BigInt(shift);
  return (
    field(0x7ff, 0) | // MQES: 2048 entries
    field(1, 16) | // CQR: queues must be physically contiguous
    field(0xf, 24) | // TO: 15 * 500 ms
    field(CSS_NVM | CSS_CSI_SUPP | CSS_ADMIN_ONLY, 37) |
    field(0, 48) | // MPSMIN: 4 KiB
    field(4, 52) // MPSMAX: 64 KiB
  );
}

const cc = {
  en: (v: number) => v & 1,
  css: (v: number) => (v >> 4) & 7,
  mps: (v: number) => (v >> 7) & 0xf,
  shn: (v: number) => (v >> 14) & 3,
  iosqes: (v: number) => (v >> 16) & 0xf,
  iocqes: (v: number) => (v >> 20) & 0xf,
};

export class NvmeController implements DeviceModel {
  private readonly bar = new Uint8Array(NVME_BAR_SIZE);
  private readonly regs = new DataView(this.bar.buffer);
  /** The admin submission and completion queues exist (n->sq[0], n->cq[0]). */
  adminQueues = false;

  /** Power-on: the registers nvme_init_ctrl sets, everything else 0. */
  constructor() {
    this.regs.setBigUint64(NVME_REG_CAP, initialCap(), true);
    this.regs.setUint32(NVME_REG_VS, NVME_SPEC_VER, true);
  }

  /**
   * nvme_pci_reset → nvme_ctrl_reset(n, NVME_RESET_FUNCTION): the queues go, CSTS, INTMS,
   * INTMC and CC are cleared; AQA, ASQ and ACQ keep what was last written.
   */
  functionReset(): void {
    for (const r of [NVME_REG_CSTS, NVME_REG_INTMS, NVME_REG_INTMC, NVME_REG_CC]) this.setU32(r, 0);
    this.adminQueues = false;
  }

  private u32(off: number): number {
    return this.regs.getUint32(off, true);
  }

  private setU32(off: number, v: number): void {
    this.regs.setUint32(off, v >>> 0, true);
  }

  mmioRead(bar: number, off: number, width: 1 | 2 | 4 | 8): bigint {
    if (bar !== 0 || off < 0 || off > NVME_BAR_SIZE - width) return 0n;
    let v = 0n;
    for (let i = width - 1; i >= 0; i--) v = (v << 8n) | BigInt(this.bar[off + i] as number);
    return v;
  }

  mmioWrite(bar: number, off: number, width: 1 | 2 | 4 | 8, value: bigint): void {
    if (bar !== 0 || off < 0 || off >= NVME_BAR_SIZE) return; // doorbells: not acted on
    const data = Number(value & 0xffffffffn);
    switch (off) {
      case NVME_REG_INTMS:
        this.setIntms(this.u32(NVME_REG_INTMS) | data);
        break;
      case NVME_REG_INTMC:
        this.setIntms(this.u32(NVME_REG_INTMS) & ~data);
        break;
      case NVME_REG_CC:
        this.writeCc(data);
        break;
      case NVME_REG_AQA:
        this.setU32(NVME_REG_AQA, data);
        break;
      case NVME_REG_ASQ:
      case NVME_REG_ACQ:
        // stn_le_p: as many bytes as the access
        for (let i = 0; i < Math.min(width, 8); i++)
          this.bar[off + i] = Number((value >> BigInt(8 * i)) & 0xffn);
        break;
      case NVME_REG_ASQ + 4:
      case NVME_REG_ACQ + 4:
        this.setU32(off, data);
        break;
      // CAP, VS, CSTS, NSSR and the CMB/PMR registers (neither present): writes ignored.
    }
  }

  private setIntms(mask: number): void {
    this.setU32(NVME_REG_INTMS, mask);
    this.setU32(NVME_REG_INTMC, mask);
  }

  /** nvme_write_bar(), case NVME_REG_CC. */
  private writeCc(data: number): void {
    let ccv = this.u32(NVME_REG_CC);
    let csts = this.u32(NVME_REG_CSTS);
    // Software may first write the configuration, then the enable bit.
    if (!cc.en(data) && !cc.en(ccv) && !cc.shn(data) && !cc.shn(ccv)) ccv = data;
    if (cc.en(data) && !cc.en(ccv)) {
      ccv = data;
      this.setU32(NVME_REG_CC, ccv); // nvme_start_ctrl reads it
      csts = this.startCtrl() ? NVME_CSTS_READY : NVME_CSTS_FAILED;
    } else if (!cc.en(data) && cc.en(ccv)) {
      this.adminQueues = false; // nvme_ctrl_reset(n, NVME_RESET_CONTROLLER)
      ccv = 0;
      csts &= ~NVME_CSTS_READY;
    }
    if (cc.shn(data) && !cc.shn(ccv)) {
      this.adminQueues = false; // nvme_ctrl_shutdown
      ccv = data;
      csts = (csts & ~NVME_CSTS_SHST_MASK) | NVME_CSTS_SHST_COMPLETE;
    } else if (!cc.shn(data) && cc.shn(ccv)) {
      csts &= ~NVME_CSTS_SHST_COMPLETE;
      ccv = data;
    }
    this.setU32(NVME_REG_CC, ccv);
    this.setU32(NVME_REG_CSTS, csts);
  }

  /** nvme_start_ctrl(): may the controller be enabled with this configuration? */
  private startCtrl(): boolean {
    const cap = this.regs.getBigUint64(NVME_REG_CAP, true);
    const ccv = this.u32(NVME_REG_CC);
    const aqa = this.u32(NVME_REG_AQA);
    const pageMask = (1n << BigInt(cc.mps(ccv) + 12)) - 1n;
    const capCss = Number((cap >> 37n) & 0xffn);
    const mpsmin = Number((cap >> 48n) & 0xfn);
    const mpsmax = Number((cap >> 52n) & 0xfn);
    const ok =
      !this.adminQueues &&
      !(this.regs.getBigUint64(NVME_REG_ASQ, true) & pageMask) &&
      !(this.regs.getBigUint64(NVME_REG_ACQ, true) & pageMask) &&
      (capCss & (1 << cc.css(ccv))) !== 0 &&
      cc.mps(ccv) >= mpsmin &&
      cc.mps(ccv) <= mpsmax &&
      cc.iocqes(ccv) === CQES &&
      cc.iosqes(ccv) === SQES &&
      (aqa & 0xfff) !== 0 &&
      ((aqa >> 16) & 0xfff) !== 0;
    if (ok) this.adminQueues = true;
    return ok;
  }
}
