/**
 * Reading a function's configuration space the way lspci does: from the bytes of its sysfs
 * `config` file, walking the capability lists (include/uapi/linux/pci_regs.h, Linux 6.12;
 * the walk bounds of drivers/pci/pci.c __pci_find_next_cap_ttl and
 * pci_find_next_ext_capability). Fields that need bytes the reader did not get (an
 * unprivileged read stops at 64) are `undefined`, never guessed.
 */
import * as R from "../../uapi/pci_regs.js";

export interface ConfigFacts {
  /** How many bytes were readable. */
  size: number;
  vendor: number;
  device: number;
  revision: number;
  class: number;
  headerType: number;
  multifunction: boolean;
  /** Type 1 header: the bus below the bridge. */
  secondaryBus?: number;
  /** Capabilities: undefined when the bytes holding them were not readable. */
  pmCap?: number;
  pcieCap?: number;
  afCap?: number;
  /** PCIe Device/Port Type (PCI_EXP_TYPE_*). */
  pcieType?: number;
  /** PCIe Capabilities "Slot Implemented" (ports only) and the physical slot number. */
  slotImplemented?: boolean;
  physicalSlot?: number;
  flrCapable?: boolean;
  /** PMCSR No_Soft_Reset: D3hot→D0 does not reset the function. */
  noSoftReset?: boolean;
  afTp?: boolean;
  afFlr?: boolean;
  acsCap?: number;
  acsCtrl?: number;
  hasCxlPortDvsec?: boolean;
  /** Whether capability facts are known (the whole 256 bytes were readable). */
  capsKnown: boolean;
}

const PCI_VENDOR_ID_CXL = 0x1e98;
const PCI_DVSEC_CXL_PORT = 3;
/* pci_regs.h fields read here only. */
const PCI_EXP_SLTCAP = 0x14;
const PCI_EXT_CAP_ID_DVSEC = 0x23;
const extCapId = (h: number) => h & 0xffff;
const extCapNext = (h: number) => (h >>> 20) & 0xffc;

export function parseConfig(b: Uint8Array): ConfigFacts {
  const size = b.length;
  const r8 = (o: number) => (o < size ? (b[o] as number) : 0);
  const r16 = (o: number) => r8(o) | (r8(o + 1) << 8);
  const r32 = (o: number) => (r16(o) | (r16(o + 2) << 16)) >>> 0;
  const hdr = r8(R.PCI_HEADER_TYPE);
  const f: ConfigFacts = {
    size,
    vendor: r16(R.PCI_VENDOR_ID),
    device: r16(R.PCI_DEVICE_ID),
    revision: r8(R.PCI_REVISION_ID),
    class: r32(R.PCI_CLASS_REVISION) >>> 8,
    headerType: hdr & R.PCI_HEADER_TYPE_MASK,
    multifunction: (hdr & R.PCI_HEADER_TYPE_MFD) !== 0,
    capsKnown: size >= R.PCI_CFG_SPACE_SIZE,
  };
  if (f.headerType === R.PCI_HEADER_TYPE_BRIDGE) f.secondaryBus = r8(R.PCI_SECONDARY_BUS);
  if (!f.capsKnown) return f;
  // Standard list.
  if (r16(R.PCI_STATUS) & R.PCI_STATUS_CAP_LIST) {
    let pos = r8(
      f.headerType === R.PCI_HEADER_TYPE_CARDBUS ? R.PCI_CB_CAPABILITY_LIST : R.PCI_CAPABILITY_LIST,
    );
    for (let ttl = R.PCI_FIND_CAP_TTL; ttl > 0 && pos >= 0x40; ttl--) {
      pos &= ~3;
      const id = r8(pos);
      if (id === 0xff) break;
      if (id === R.PCI_CAP_ID_PM && f.pmCap === undefined) f.pmCap = pos;
      if (id === R.PCI_CAP_ID_EXP && f.pcieCap === undefined) f.pcieCap = pos;
      if (id === R.PCI_CAP_ID_AF && f.afCap === undefined) f.afCap = pos;
      pos = r8(pos + 1);
    }
  }
  if (f.pmCap !== undefined)
    f.noSoftReset = (r16(f.pmCap + R.PCI_PM_CTRL) & R.PCI_PM_CTRL_NO_SOFT_RESET) !== 0;
  if (f.afCap !== undefined) {
    const c = r8(f.afCap + R.PCI_AF_CAP);
    f.afTp = (c & R.PCI_AF_CAP_TP) !== 0;
    f.afFlr = (c & R.PCI_AF_CAP_FLR) !== 0;
  }
  if (f.pcieCap !== undefined) {
    const flags = r16(f.pcieCap + R.PCI_EXP_FLAGS);
    f.pcieType = (flags & R.PCI_EXP_FLAGS_TYPE) >> 4;
    f.flrCapable = (r32(f.pcieCap + R.PCI_EXP_DEVCAP) & R.PCI_EXP_DEVCAP_FLR) !== 0;
    f.slotImplemented = (flags & R.PCI_EXP_FLAGS_SLOT) !== 0;
    if (f.slotImplemented) f.physicalSlot = r32(f.pcieCap + PCI_EXP_SLTCAP) >>> 19;
  }
  // Extended list (4096-byte config space only).
  if (size >= R.PCI_CFG_SPACE_EXP_SIZE) {
    let pos = R.PCI_CFG_SPACE_SIZE;
    for (let ttl = R.PCI_EXT_CAP_TTL; ttl > 0; ttl--) {
      const h = r32(pos);
      if (h === 0 || h === 0xffffffff) break;
      const id = extCapId(h);
      if (id === R.PCI_EXT_CAP_ID_ACS && f.acsCap === undefined) {
        f.acsCap = r16(pos + R.PCI_ACS_CAP);
        f.acsCtrl = r16(pos + R.PCI_ACS_CTRL);
      }
      if (
        id === PCI_EXT_CAP_ID_DVSEC &&
        r16(pos + 4) === PCI_VENDOR_ID_CXL &&
        r16(pos + 8) === PCI_DVSEC_CXL_PORT
      )
        f.hasCxlPortDvsec = true;
      const next = extCapNext(h);
      if (next < R.PCI_CFG_SPACE_SIZE) break;
      pos = next;
    }
  }
  return f;
}

export function isBridgeHeader(f: ConfigFacts): boolean {
  return f.headerType === R.PCI_HEADER_TYPE_BRIDGE || f.headerType === R.PCI_HEADER_TYPE_CARDBUS;
}

export const PCIE_TYPE_NAMES: Record<number, string> = {
  0x0: "PCIe endpoint",
  0x1: "legacy PCIe endpoint",
  0x4: "root port",
  0x5: "switch upstream port",
  0x6: "switch downstream port",
  0x7: "PCIe-to-PCI bridge",
  0x8: "PCI-to-PCIe bridge",
  0x9: "root complex integrated endpoint",
  0xa: "root complex event collector",
};
