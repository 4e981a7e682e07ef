/**
 * Capability searches, as drivers/pci/pci.c (Linux 6.12) does them:
 * __pci_bus_find_cap_start / __pci_find_next_cap_ttl (48 hops, pointers below 0x40 end
 * the list, ID 0xff ends it) and pci_find_next_ext_capability ((4096-256)/8 hops, a zero
 * header means no extended capabilities, a next pointer below 0x100 ends the list).
 * A walk that reads bytes the capture did not hold marks the device `capsUnknown`.
 */
import * as R from "../../uapi/pci_regs.js";
import type { PciDev } from "./pci.js";

function read(dev: PciDev, off: number, width: 1 | 2 | 4): number {
  if (!dev.known(off, width)) dev.capsUnknown = true;
  return width === 1 ? dev.read8(off) : width === 2 ? dev.read16(off) : dev.read32(off);
}

export function pciFindCapability(dev: PciDev, cap: number): number {
  const status = read(dev, R.PCI_STATUS, 2);
  if (!(status & R.PCI_STATUS_CAP_LIST)) return 0;
  const hdr = dev.hdrType & R.PCI_HEADER_TYPE_MASK;
  const start =
    hdr === R.PCI_HEADER_TYPE_CARDBUS ? R.PCI_CB_CAPABILITY_LIST : R.PCI_CAPABILITY_LIST;
  let pos = read(dev, start, 1);
  for (let ttl = R.PCI_FIND_CAP_TTL; ttl > 0; ttl--) {
    if (pos < 0x40) break;
    pos &= ~3;
    const ent = read(dev, pos, 2);
    const id = ent & 0xff;
    if (id === 0xff) break;
    if (id === cap) return pos;
    pos = ent >> 8;
  }
  return 0;
}

export function pciFindExtCapability(dev: PciDev, cap: number): number {
  if (dev.cfgSize <= R.PCI_CFG_SPACE_SIZE) return 0;
  let pos = R.PCI_CFG_SPACE_SIZE;
  let header = read(dev, pos, 4);
  if (header === 0 || header === 0xffffffff) return 0;
  for (let ttl = R.PCI_EXT_CAP_TTL; ttl > 0; ttl--) {
    if ((header & 0xffff) === cap) return pos;
    pos = (header >>> 20) & 0xffc;
    if (pos < R.PCI_CFG_SPACE_SIZE) break;
    header = read(dev, pos, 4);
    if (header === 0xffffffff) break;
  }
  return 0;
}

/** pci_cfg_space_size(): 4096 for PCIe (and host bridges) when offset 0x100 answers. */
export function pciCfgSpaceSize(dev: PciDev): number {
  if (!dev.isPcie() && dev.classDevice !== 0x0600) return R.PCI_CFG_SPACE_SIZE;
  const status = dev.read32(R.PCI_CFG_SPACE_SIZE);
  return status === 0xffffffff ? R.PCI_CFG_SPACE_SIZE : R.PCI_CFG_SPACE_EXP_SIZE;
}
