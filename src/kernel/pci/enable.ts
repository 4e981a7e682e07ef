/**
 * Device enabling and the small pci.c services drivers call around it, drivers/pci/pci.c
 * and setup-res.c (Linux 6.12) with x86's pcibios hooks (arch/x86/pci/common.c):
 * pci_enable_device (enable_cnt; the bridges above enabled and made bus masters first;
 * I/O and memory decoding for every assigned resource; INTx un-disabled unless MSI is on),
 * pci_disable_device (bus mastering off on the last disable), pci_set/clear_master,
 * pci_intx, the DisINTx writability test of probe.c (pci_intx_mask_broken), the D-state
 * transitions of pci_set_power_state through the PM capability, and
 * pci_enable_atomic_ops_to_root.
 *
 * Per-device kernel state (current_state, is_busmaster, broken_intx_masking) lives beside
 * PciDev, created on first use.
 */
import * as R from "../../uapi/pci_regs.js";
import { err } from "../../uapi/errno.js";
import { pcieCapabilityClearAndSet16, pcieCapabilityRead32 } from "./access.js";
import { pciFindCapability } from "./capability.js";
import { msiEnabled } from "./msi.js";
import type { PciDev } from "./pci.js";
import {
  IORESOURCE_IO,
  IORESOURCE_MEM,
  IORESOURCE_ROM_ENABLE,
  PCI_ROM_RESOURCE,
  pciResources,
} from "./resource.js";

/** pci_power_t */
export const PCI_D0 = 0;
export const PCI_D1 = 1;
export const PCI_D2 = 2;
export const PCI_D3hot = 3;
export const PCI_D3cold = 4;

const PCI_PM_CAP_D1 = 0x0200;
const PCI_PM_CAP_D2 = 0x0400;

interface DevState {
  currentState: number;
  isBusmaster: boolean;
  brokenIntxMasking: boolean;
}

const state = new WeakMap<PciDev, DevState>();

function st(dev: PciDev): DevState {
  let s = state.get(dev);
  if (!s) {
    // The machine's functions are in D0 when the kernel first looks (pci_pm_init).
    s = { currentState: PCI_D0, isBusmaster: false, brokenIntxMasking: intxMaskBroken(dev) };
    state.set(dev, s);
  }
  return s;
}

/** pci_intx_mask_broken(): toggle DisINTx and see whether it stuck. */
function intxMaskBroken(dev: PciDev): boolean {
  const orig = dev.read16(R.PCI_COMMAND);
  const toggle = orig ^ R.PCI_COMMAND_INTX_DISABLE;
  dev.write16(R.PCI_COMMAND, toggle);
  const now = dev.read16(R.PCI_COMMAND);
  dev.write16(R.PCI_COMMAND, orig);
  return now !== toggle;
}

/** pci_intx_mask_supported() */
export function pciIntxMaskSupported(dev: PciDev): boolean {
  return !st(dev).brokenIntxMasking;
}

export function pciCurrentState(dev: PciDev): number {
  return st(dev).currentState;
}

/** pci_dev->pm_cap */
export function pciPmCap(dev: PciDev): number {
  return pciFindCapability(dev, R.PCI_CAP_ID_PM);
}

/** pci_is_enabled() */
function pciIsEnabled(dev: PciDev): boolean {
  return dev.enableCnt > 0;
}

/** pci_dev->irq: the INTx line firmware routed (the pin's IRQ), 0 without a pin. */
export function pciIrq(dev: PciDev): number {
  return dev.read8(R.PCI_INTERRUPT_PIN) ? dev.read8(R.PCI_INTERRUPT_LINE) : 0;
}

/** pci_intx() */
export function pciIntx(dev: PciDev, enable: boolean): void {
  const cmd = dev.read16(R.PCI_COMMAND);
  const next = enable ? cmd & ~R.PCI_COMMAND_INTX_DISABLE : cmd | R.PCI_COMMAND_INTX_DISABLE;
  if (next !== cmd) dev.write16(R.PCI_COMMAND, next);
}

/**
 * pci_check_and_mask_intx() / pci_check_and_unmask_intx() (drivers/pci/irq.c): mask only
 * when the function asserts INTx (Status.Interrupt), unmask only when it does not; true
 * when the mask was changed as asked.
 */
export function pciCheckAndSetIntxMask(dev: PciDev, mask: boolean): boolean {
  const cmdStatus = dev.read32(R.PCI_COMMAND);
  const pending = ((cmdStatus >>> 16) & R.PCI_STATUS_INTERRUPT) !== 0;
  if (mask !== pending) return false;
  const orig = cmdStatus & 0xffff;
  const next = (orig & ~R.PCI_COMMAND_INTX_DISABLE) | (mask ? R.PCI_COMMAND_INTX_DISABLE : 0);
  if (next !== orig) dev.write16(R.PCI_COMMAND, next);
  return true;
}

/** __pci_set_master() */
function setMaster(dev: PciDev, enable: boolean): void {
  const old = dev.read16(R.PCI_COMMAND);
  const cmd = enable ? old | R.PCI_COMMAND_MASTER : old & ~R.PCI_COMMAND_MASTER;
  if (cmd !== old) dev.write16(R.PCI_COMMAND, cmd);
  st(dev).isBusmaster = enable;
}

export function pciSetMaster(dev: PciDev): void {
  setMaster(dev, true);
}

export function pciClearMaster(dev: PciDev): void {
  setMaster(dev, false);
}

/** pci_enable_resources(): decoding for each resource in `mask` that is there. */
function pciEnableResources(dev: PciDev, mask: number): void {
  const old = dev.read16(R.PCI_COMMAND);
  let cmd = old;
  pciResources(dev).forEach((r, i) => {
    if (!(mask & (1 << i)) || !(r.flags & (IORESOURCE_IO | IORESOURCE_MEM))) return;
    if (i === PCI_ROM_RESOURCE && !(r.flags & IORESOURCE_ROM_ENABLE)) return;
    if (r.flags & IORESOURCE_IO) cmd |= R.PCI_COMMAND_IO;
    if (r.flags & IORESOURCE_MEM) cmd |= R.PCI_COMMAND_MEMORY;
  });
  if (cmd !== old) dev.write16(R.PCI_COMMAND, cmd);
}

/** pci_enable_bridge() */
function pciEnableBridge(dev: PciDev): void {
  const up = dev.upstreamBridge();
  if (up) pciEnableBridge(up);
  if (pciIsEnabled(dev)) {
    if (!st(dev).isBusmaster) pciSetMaster(dev);
    return;
  }
  pciEnableDevice(dev);
  pciSetMaster(dev);
}

/** pci_enable_device(): 0, or -errno. */
export function pciEnableDevice(dev: PciDev): number {
  if (++dev.enableCnt > 1) return 0;
  const up = dev.upstreamBridge();
  if (up) pciEnableBridge(up);
  let bars = 0;
  pciResources(dev).forEach((r, i) => {
    if (r.flags & (IORESOURCE_MEM | IORESOURCE_IO)) bars |= 1 << i;
  });
  // do_pci_enable_device()
  pciSetPowerState(dev, PCI_D0);
  pciEnableResources(dev, bars);
  if (msiEnabled(dev)) return 0;
  if (dev.read8(R.PCI_INTERRUPT_PIN)) {
    const cmd = dev.read16(R.PCI_COMMAND);
    if (cmd & R.PCI_COMMAND_INTX_DISABLE)
      dev.write16(R.PCI_COMMAND, cmd & ~R.PCI_COMMAND_INTX_DISABLE);
  }
  return 0;
}

/** pci_disable_device(): the last disable turns bus mastering off. */
export function pciDisableDevice(dev: PciDev): void {
  if (dev.enableCnt > 0 && --dev.enableCnt !== 0) return;
  const cmd = dev.read16(R.PCI_COMMAND);
  if (cmd & R.PCI_COMMAND_MASTER) dev.write16(R.PCI_COMMAND, cmd & ~R.PCI_COMMAND_MASTER);
  st(dev).isBusmaster = false;
}

/**
 * pci_set_power_state() for D0-D3hot through PMCSR (no platform firmware methods): D0 from
 * anywhere; deeper states only downwards and only those PMC says the function supports.
 */
export function pciSetPowerState(dev: PciDev, want: number): number {
  const s = st(dev);
  if (s.currentState === want) return 0;
  const pm = pciPmCap(dev);
  if (want === PCI_D0) {
    // pci_power_up(): the whole word to 0 (PME_En off, PowerState D0).
    s.currentState = PCI_D0;
    if (!pm) return 0;
    const pmcsr = dev.read16(pm + R.PCI_PM_CTRL);
    if (pmcsr === 0xffff) {
      s.currentState = PCI_D3cold;
      return err("EIO");
    }
    if (pmcsr & R.PCI_PM_CTRL_STATE_MASK) dev.write16(pm + R.PCI_PM_CTRL, 0);
    s.currentState = dev.read16(pm + R.PCI_PM_CTRL) & R.PCI_PM_CTRL_STATE_MASK;
    return 0;
  }
  // pci_set_low_power_state()
  if (!pm) return err("EIO");
  if (s.currentState <= PCI_D3cold && s.currentState > want) return err("EINVAL");
  const pmc = dev.read16(pm + R.PCI_PM_PMC);
  if ((want === PCI_D1 && !(pmc & PCI_PM_CAP_D1)) || (want === PCI_D2 && !(pmc & PCI_PM_CAP_D2)))
    return err("EIO");
  const pmcsr = dev.read16(pm + R.PCI_PM_CTRL);
  if (pmcsr === 0xffff) {
    s.currentState = PCI_D3cold;
    return err("EIO");
  }
  dev.write16(pm + R.PCI_PM_CTRL, (pmcsr & ~R.PCI_PM_CTRL_STATE_MASK) | Math.min(want, PCI_D3hot));
  s.currentState = dev.read16(pm + R.PCI_PM_CTRL) & R.PCI_PM_CTRL_STATE_MASK;
  return 0;
}

/**
 * pci_enable_atomic_ops_to_root(): an endpoint may issue AtomicOps when every switch port
 * on the way routes them, no upstream port blocks them on egress, and the root port
 * completes every size asked for; then AtomicOp Requester Enable is set.
 */
export function pciEnableAtomicOpsToRoot(dev: PciDev, capMask: number): number {
  if (dev.isVirtfn || !dev.isPcie()) return err("EINVAL");
  const t = dev.pcieType();
  if (t !== R.PCI_EXP_TYPE_ENDPOINT && t !== R.PCI_EXP_TYPE_LEG_END && t !== R.PCI_EXP_TYPE_RC_END)
    return err("EINVAL");
  for (let bus = dev.bus; bus.parent; bus = bus.parent) {
    const bridge = bus.self;
    if (!bridge) break;
    const cap = pcieCapabilityRead32(bridge, R.PCI_EXP_DEVCAP2);
    const bt = bridge.pcieType();
    if (
      (bt === R.PCI_EXP_TYPE_UPSTREAM || bt === R.PCI_EXP_TYPE_DOWNSTREAM) &&
      !(cap & R.PCI_EXP_DEVCAP2_ATOMIC_ROUTE)
    )
      return err("EINVAL");
    if (bt === R.PCI_EXP_TYPE_ROOT_PORT && (cap & capMask) !== capMask) return err("EINVAL");
    if (
      bt === R.PCI_EXP_TYPE_UPSTREAM &&
      pcieCapabilityRead32(bridge, R.PCI_EXP_DEVCTL2) & R.PCI_EXP_DEVCTL2_ATOMIC_EGRESS_BLOCK
    )
      return err("EINVAL");
  }
  pcieCapabilityClearAndSet16(dev, R.PCI_EXP_DEVCTL2, 0, R.PCI_EXP_DEVCTL2_ATOMIC_REQ);
  return 0;
}
