/**
 * PCI MSI and MSI-X, drivers/pci/msi/{api,msi}.c (Linux 6.12) on x86 with interrupt
 * remapping (the recorded machines run intel-iommu,intremap=on): multi-message MSI and
 * dynamic MSI-X allocation are supported. What the device sees is modelled: the enable,
 * mask-all and multiple-message-enable bits, the per-vector mask bits (the MSI mask
 * register, the MSI-X table's Vector Control words through BAR MMIO) and INTx disabled
 * while messages are on. The message address/data the remapping domain composes is not
 * written: nothing in the model delivers an interrupt by it.
 */
import type { PciMmio } from "../../machine/hw.js";
import { err } from "../../uapi/errno.js";
import * as R from "../../uapi/pci_regs.js";
import { pciFindCapability } from "./capability.js";
import { PCI_D0, pciCurrentState, pciIntx } from "./enable.js";
import type { PciDev } from "./pci.js";
import { pciResourceFlags, pciResourceStart } from "./resource.js";

/** PCI_IRQ_* of pci_alloc_irq_vectors() */
export const PCI_IRQ_MSI = 1 << 1;
export const PCI_IRQ_MSIX = 1 << 2;

interface MsiState {
  /** Linux IRQ of vector 0; vectors are consecutive. */
  irq: number;
  nvec: number;
  /** log2 of the vectors enabled (Multiple Message Enable). */
  multiple: number;
  maskPos: number;
  canMask: boolean;
}

interface MsixState {
  tsize: number;
  bir: number;
  offset: number;
  /** Linux IRQ per allocated table entry. */
  irqs: Map<number, number>;
}

interface DevMsi {
  msi: MsiState | null;
  msix: MsixState | null;
  /** IRQs with a handler (started, hence unmasked). */
  active: Set<number>;
}

const state = new WeakMap<PciDev, DevMsi>();
/** Linux IRQ numbers handed out to message-signalled vectors (above the legacy range). */
let nextIrq = 24;

function st(dev: PciDev): DevMsi {
  let s = state.get(dev);
  if (!s) {
    s = { msi: null, msix: null, active: new Set() };
    state.set(dev, s);
  }
  return s;
}

/** dev->msi_enabled || dev->msix_enabled */
export function msiEnabled(dev: PciDev): boolean {
  const s = st(dev);
  return s.msi !== null || s.msix !== null;
}

/** pci_dev->msi_cap / msix_cap */
export function pciMsiCap(dev: PciDev): number {
  return pciFindCapability(dev, R.PCI_CAP_ID_MSI);
}
export function pciMsixCap(dev: PciDev): number {
  return pciFindCapability(dev, R.PCI_CAP_ID_MSIX);
}

/** pci_msi_vec_count() */
function pciMsiVecCount(dev: PciDev): number {
  const cap = pciMsiCap(dev);
  if (!cap) return err("EINVAL");
  return 1 << ((dev.read16(cap + R.PCI_MSI_FLAGS) & R.PCI_MSI_FLAGS_QMASK) >> 1);
}

/** pci_msix_vec_count() */
function pciMsixVecCount(dev: PciDev): number {
  const cap = pciMsixCap(dev);
  if (!cap) return err("EINVAL");
  return (dev.read16(cap + R.PCI_MSIX_FLAGS) & R.PCI_MSIX_FLAGS_QSIZE) + 1;
}

/** pci_msix_can_alloc_dyn(): the x86 MSI parent domains allow it. */
export function pciMsixCanAllocDyn(dev: PciDev): boolean {
  return pciMsixCap(dev) !== 0;
}

/** pci_intx_for_msi() */
const intxForMsi = pciIntx;

function msiSetEnable(dev: PciDev, cap: number, enable: boolean): void {
  const ctl = dev.read16(cap + R.PCI_MSI_FLAGS) & ~R.PCI_MSI_FLAGS_ENABLE;
  dev.write16(cap + R.PCI_MSI_FLAGS, ctl | (enable ? R.PCI_MSI_FLAGS_ENABLE : 0));
}

function msixClearAndSetCtrl(dev: PciDev, clear: number, set: number): void {
  const cap = pciMsixCap(dev);
  dev.write16(cap + R.PCI_MSIX_FLAGS, (dev.read16(cap + R.PCI_MSIX_FLAGS) & ~clear) | set);
}

/** msi_multi_mask(): one mask bit per vector the function can send. */
function msiMultiMask(dev: PciDev, cap: number): number {
  const multiCap = (dev.read16(cap + R.PCI_MSI_FLAGS) & R.PCI_MSI_FLAGS_QMASK) >> 1;
  return multiCap >= 5 ? 0xffffffff : 2 ** (1 << multiCap) - 1;
}

function msiWriteMask(dev: PciDev, m: MsiState, mask: number): void {
  if (m.canMask) dev.write32(m.maskPos, mask >>> 0);
}

/** msi_capability_init(): mask, size, then enable with INTx off. */
function msiCapabilityInit(dev: PciDev, nvec: number): number {
  const cap = pciMsiCap(dev);
  msiSetEnable(dev, cap, false);
  const control = dev.read16(cap + R.PCI_MSI_FLAGS);
  const m: MsiState = {
    irq: nextIrq,
    nvec,
    multiple: Math.ceil(Math.log2(nvec)),
    maskPos: cap + (control & R.PCI_MSI_FLAGS_64BIT ? R.PCI_MSI_MASK_64 : R.PCI_MSI_MASK_32),
    canMask: (control & R.PCI_MSI_FLAGS_MASKBIT) !== 0,
  };
  nextIrq += nvec;
  st(dev).msi = m;
  msiWriteMask(dev, m, msiMultiMask(dev, cap));
  // __pci_write_msi_msg(): Multiple Message Enable goes with the message.
  const ctl = dev.read16(cap + R.PCI_MSI_FLAGS) & ~R.PCI_MSI_FLAGS_QSIZE;
  dev.write16(cap + R.PCI_MSI_FLAGS, ctl | (m.multiple << 4));
  intxForMsi(dev, false);
  msiSetEnable(dev, cap, true);
  return 0;
}

function tableAddr(x: MsixState, entry: number): number {
  return x.offset + entry * R.PCI_MSIX_ENTRY_SIZE + R.PCI_MSIX_ENTRY_VECTOR_CTRL;
}

function msixWriteVectorCtrl(mmio: PciMmio, dev: PciDev, x: MsixState, e: number, v: number) {
  const b = dev.bus;
  mmio.mmioWrite(b.domain, b.number, dev.devfn, x.bir, tableAddr(x, e), 4, BigInt(v));
}

/** msix_capability_init(): enable with everything masked, set up the vectors, unmask all. */
function msixCapabilityInit(mmio: PciMmio, dev: PciDev, nvec: number): number {
  msixClearAndSetCtrl(dev, 0, R.PCI_MSIX_FLAGS_MASKALL | R.PCI_MSIX_FLAGS_ENABLE);
  const cap = pciMsixCap(dev);
  const tsize = (dev.read16(cap + R.PCI_MSIX_FLAGS) & R.PCI_MSIX_FLAGS_QSIZE) + 1;
  const table = dev.read32(cap + R.PCI_MSIX_TABLE);
  const bir = table & R.PCI_MSIX_TABLE_BIR;
  // msix_map_region(): the table's BAR must be assigned.
  if (bir > 5 || !pciResourceFlags(dev, bir) || !pciResourceStart(dev, bir)) {
    msixClearAndSetCtrl(dev, R.PCI_MSIX_FLAGS_MASKALL | R.PCI_MSIX_FLAGS_ENABLE, 0);
    return err("ENOMEM");
  }
  const x: MsixState = {
    tsize,
    bir,
    offset: (table & R.PCI_MSIX_TABLE_OFFSET) >>> 0,
    irqs: new Map(),
  };
  for (let e = 0; e < nvec; e++) x.irqs.set(e, nextIrq++);
  st(dev).msix = x;
  intxForMsi(dev, false);
  for (let e = 0; e < tsize; e++)
    msixWriteVectorCtrl(mmio, dev, x, e, R.PCI_MSIX_ENTRY_CTRL_MASKBIT);
  msixClearAndSetCtrl(dev, R.PCI_MSIX_FLAGS_MASKALL, 0);
  return 0;
}

/**
 * pci_alloc_irq_vectors(dev, min, max, PCI_IRQ_MSI or PCI_IRQ_MSIX) without affinity:
 * the number of vectors enabled, or -errno.
 */
export function pciAllocIrqVectors(
  mmio: PciMmio,
  dev: PciDev,
  minVecs: number,
  maxVecs: number,
  flags: number,
): number {
  let nvecs = err("ENOSPC");
  const s = st(dev);
  const d0 = pciCurrentState(dev) === PCI_D0;
  if (flags & PCI_IRQ_MSIX) {
    // __pci_enable_msix_range()
    if (maxVecs < minVecs) nvecs = err("ERANGE");
    else if (s.msi || s.msix || minVecs < 1 || !d0) nvecs = err("EINVAL");
    else {
      const hwsize = pciMsixVecCount(dev);
      const nvec = Math.min(maxVecs, hwsize);
      nvecs =
        hwsize < 0 ? hwsize : nvec < minVecs ? err("ENOSPC") : msixCapabilityInit(mmio, dev, nvec);
      if (nvecs === 0) nvecs = nvec;
    }
    if (nvecs > 0) return nvecs;
  }
  if (flags & PCI_IRQ_MSI) {
    // __pci_enable_msi_range()
    if (minVecs < 1 || !d0 || s.msix) nvecs = err("EINVAL");
    else if (maxVecs < minVecs) nvecs = err("ERANGE");
    else if (s.msi) nvecs = err("EINVAL");
    else {
      const count = pciMsiVecCount(dev);
      const nvec = Math.min(count, maxVecs);
      nvecs = count < 0 ? count : count < minVecs ? err("ENOSPC") : msiCapabilityInit(dev, nvec);
      if (nvecs === 0) nvecs = nvec;
    }
  }
  return nvecs;
}

/** pci_free_irq_vectors(): MSI-X vectors masked, then off; MSI off and unmasked; INTx back. */
export function pciFreeIrqVectors(mmio: PciMmio, dev: PciDev): void {
  const s = st(dev);
  if (s.msix) {
    for (const [e, irq] of s.msix.irqs) {
      msixWriteVectorCtrl(mmio, dev, s.msix, e, R.PCI_MSIX_ENTRY_CTRL_MASKBIT);
      s.active.delete(irq);
    }
    msixClearAndSetCtrl(dev, R.PCI_MSIX_FLAGS_ENABLE, 0);
    intxForMsi(dev, true);
    s.msix = null;
  }
  if (s.msi) {
    const cap = pciMsiCap(dev);
    msiSetEnable(dev, cap, false);
    intxForMsi(dev, true);
    msiWriteMask(dev, s.msi, 0);
    for (let i = 0; i < s.msi.nvec; i++) s.active.delete(s.msi.irq + i);
    s.msi = null;
  }
}

/** pci_irq_vector(): the Linux IRQ of vector `nr`, -EINVAL when there is none. */
export function pciIrqVector(dev: PciDev, nr: number, intxIrq: number): number {
  const s = st(dev);
  if (s.msi) return nr < s.msi.nvec ? s.msi.irq + nr : err("EINVAL");
  if (s.msix) return s.msix.irqs.get(nr) ?? err("EINVAL");
  return nr === 0 ? intxIrq : err("EINVAL");
}

/** pci_msix_alloc_irq_at(): one more vector at table entry `index`. */
export function pciMsixAllocIrqAt(dev: PciDev, index: number): number {
  const x = st(dev).msix;
  if (!x || !pciMsixCanAllocDyn(dev)) return err("ENOTSUPP");
  if (index >= x.tsize) return err("E2BIG");
  if (x.irqs.has(index)) return err("EBUSY");
  const irq = nextIrq++;
  x.irqs.set(index, irq);
  return irq;
}

/**
 * request_irq() / free_irq() on a message-signalled vector: the interrupt core unmasks the
 * vector at startup and masks it at shutdown (pci_msi_unmask / pci_msix_unmask).
 */
export function pciMsiIrqActive(mmio: PciMmio, dev: PciDev, irq: number, active: boolean): void {
  const s = st(dev);
  if (active) s.active.add(irq);
  else s.active.delete(irq);
  const m = s.msi;
  if (m?.canMask && irq >= m.irq && irq < m.irq + m.nvec) {
    const bit = 1 << (irq - m.irq);
    const cur = dev.read32(m.maskPos);
    dev.write32(m.maskPos, (active ? cur & ~bit : cur | bit) >>> 0);
  }
  const x = s.msix;
  for (const [e, i] of x?.irqs ?? []) {
    if (i === irq && x)
      msixWriteVectorCtrl(mmio, dev, x, e, active ? 0 : R.PCI_MSIX_ENTRY_CTRL_MASKBIT);
  }
}

/**
 * __pci_restore_msi_state() / __pci_restore_msix_state(): after a reset, what the kernel had
 * enabled is enabled again, each vector masked or not as the interrupt core left it.
 */
export function pciRestoreMsiState(mmio: PciMmio, dev: PciDev): void {
  const s = st(dev);
  if (s.msi) {
    const cap = pciMsiCap(dev);
    intxForMsi(dev, false);
    msiSetEnable(dev, cap, false);
    let mask = msiMultiMask(dev, cap);
    for (let i = 0; i < s.msi.nvec; i++) if (s.active.has(s.msi.irq + i)) mask &= ~(1 << i);
    msiWriteMask(dev, s.msi, mask);
    const ctl = dev.read16(cap + R.PCI_MSI_FLAGS) & ~R.PCI_MSI_FLAGS_QSIZE;
    dev.write16(cap + R.PCI_MSI_FLAGS, ctl | R.PCI_MSI_FLAGS_ENABLE | (s.msi.multiple << 4));
  }
  if (s.msix) {
    intxForMsi(dev, false);
    msixClearAndSetCtrl(dev, 0, R.PCI_MSIX_FLAGS_ENABLE | R.PCI_MSIX_FLAGS_MASKALL);
    for (const [e, irq] of s.msix.irqs) {
      const ctrl = s.active.has(irq) ? 0 : R.PCI_MSIX_ENTRY_CTRL_MASKBIT;
      msixWriteVectorCtrl(mmio, dev, s.msix, e, ctrl);
    }
    msixClearAndSetCtrl(dev, R.PCI_MSIX_FLAGS_MASKALL, 0);
  }
}
