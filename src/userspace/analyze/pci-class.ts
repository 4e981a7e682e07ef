/**
 * Human names of PCI class codes (PCI Code and ID Assignment Specification 1.15), the
 * short forms lspci prints, for reports.
 */
const SUBCLASS: Record<number, string> = {
  0x0100: "SCSI controller",
  0x0101: "IDE interface",
  0x0104: "RAID controller",
  0x0106: "SATA controller",
  0x0107: "SAS controller",
  0x0108: "NVMe controller",
  0x0200: "Ethernet controller",
  0x0280: "Network controller",
  0x0300: "VGA controller",
  0x0302: "3D controller",
  0x0380: "Display controller",
  0x0401: "Audio device",
  0x0403: "Audio device",
  0x0500: "RAM memory",
  0x0580: "Memory controller",
  0x0600: "Host bridge",
  0x0601: "ISA bridge",
  0x0604: "PCI bridge",
  0x0680: "Bridge",
  0x0700: "Serial controller",
  0x0780: "Communication controller",
  0x0805: "SD host controller",
  0x0806: "IOMMU",
  0x0880: "System peripheral",
  0x0c03: "USB controller",
  0x0c05: "SMBus",
  0x0c80: "Serial bus controller",
  0x1080: "Encryption controller",
  0x1101: "Signal processing controller",
  0x1180: "Signal processing controller",
  0x1300: "Non-essential instrumentation",
  0xff00: "Unassigned class",
};

const BASE: Record<number, string> = {
  0x00: "Unclassified device",
  0x01: "Mass storage controller",
  0x02: "Network controller",
  0x03: "Display controller",
  0x04: "Multimedia controller",
  0x05: "Memory controller",
  0x06: "Bridge",
  0x07: "Communication controller",
  0x08: "System peripheral",
  0x09: "Input device controller",
  0x0c: "Serial bus controller",
  0x0d: "Wireless controller",
  0x10: "Encryption controller",
  0x11: "Signal processing controller",
  0x12: "Processing accelerators",
  0x13: "Non-essential instrumentation",
};

/** Name for a 24-bit class code given as 6 hex digits. */
export function className(cls: string): string {
  const c = parseInt(cls, 16);
  if (Number.isNaN(c)) return "Unknown";
  return SUBCLASS[c >> 8] ?? BASE[c >> 16] ?? `Class ${cls.slice(0, 4)}`;
}
