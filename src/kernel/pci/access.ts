/**
 * PCI Express Capability accessors, drivers/pci/access.c (Linux 6.12): a register the
 * capability's version and the port type do not implement reads as zero (Slot Status of
 * a downstream port reads Presence Detect set) and ignores writes.
 */
import * as R from "../../uapi/pci_regs.js";
import type { PciDev } from "./pci.js";

function capVersion(dev: PciDev): number {
  return dev.pcieFlagsReg & R.PCI_EXP_FLAGS_VERS;
}

/** pcie_cap_has_lnkctl() */
function pcieCapHasLnkctl(dev: PciDev): boolean {
  return [
    R.PCI_EXP_TYPE_ENDPOINT,
    R.PCI_EXP_TYPE_LEG_END,
    R.PCI_EXP_TYPE_ROOT_PORT,
    R.PCI_EXP_TYPE_UPSTREAM,
    R.PCI_EXP_TYPE_DOWNSTREAM,
    R.PCI_EXP_TYPE_PCI_BRIDGE,
    R.PCI_EXP_TYPE_PCIE_BRIDGE,
  ].includes(dev.pcieType());
}

function implemented(dev: PciDev, pos: number): boolean {
  if (!dev.isPcie()) return false;
  switch (pos) {
    case R.PCI_EXP_FLAGS:
    case R.PCI_EXP_DEVCAP:
    case R.PCI_EXP_DEVCTL:
    case R.PCI_EXP_DEVSTA:
      return true;
    case R.PCI_EXP_LNKCAP:
    case R.PCI_EXP_LNKCTL:
    case R.PCI_EXP_LNKSTA:
      return pcieCapHasLnkctl(dev);
    case R.PCI_EXP_SLTCAP:
    case R.PCI_EXP_SLTCTL:
    case R.PCI_EXP_SLTSTA:
      return dev.isDownstreamPort() && (dev.pcieFlagsReg & R.PCI_EXP_FLAGS_SLOT) !== 0;
    case R.PCI_EXP_RTCTL:
    case R.PCI_EXP_RTCAP:
    case R.PCI_EXP_RTSTA:
      return dev.pcieType() === R.PCI_EXP_TYPE_ROOT_PORT || dev.pcieType() === R.PCI_EXP_TYPE_RC_EC;
    case R.PCI_EXP_DEVCAP2:
    case R.PCI_EXP_DEVCTL2:
      return capVersion(dev) > 1;
    case R.PCI_EXP_LNKCAP2:
    case R.PCI_EXP_LNKCTL2:
    case R.PCI_EXP_LNKSTA2:
      return pcieCapHasLnkctl(dev) && capVersion(dev) > 1;
    default:
      return false;
  }
}

function absent(dev: PciDev, pos: number): number {
  return dev.isPcie() && dev.isDownstreamPort() && pos === R.PCI_EXP_SLTSTA
    ? R.PCI_EXP_SLTSTA_PDS
    : 0;
}

/** pcie_capability_read_word() */
export function pcieCapabilityRead16(dev: PciDev, pos: number): number {
  return implemented(dev, pos) ? dev.read16(dev.pcieCap + pos) : absent(dev, pos);
}

/** pcie_capability_read_dword() */
export function pcieCapabilityRead32(dev: PciDev, pos: number): number {
  return implemented(dev, pos) ? dev.read32(dev.pcieCap + pos) : absent(dev, pos);
}

/** pcie_capability_write_word() */
export function pcieCapabilityWrite16(dev: PciDev, pos: number, val: number): void {
  if (implemented(dev, pos)) dev.write16(dev.pcieCap + pos, val);
}

/** pcie_capability_clear_and_set_word() */
export function pcieCapabilityClearAndSet16(
  dev: PciDev,
  pos: number,
  clear: number,
  set: number,
): void {
  if (!implemented(dev, pos)) return;
  pcieCapabilityWrite16(dev, pos, (pcieCapabilityRead16(dev, pos) & ~clear) | set);
}
