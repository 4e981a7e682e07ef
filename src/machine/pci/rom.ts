/**
 * A function's expansion ROM (PCI 3.0 §6.3, PCI Firmware 3.3 §5.1): the contents behind
 * its ROM BAR. The device decodes ROM reads only while the ROM BAR's Enable bit and the
 * Command register's Memory Space bit are both set (PCI 3.0 §6.2.5.2); otherwise, and
 * past the image, reads see all ones, as an erased or absent ROM part does. The ROM is
 * read-only: writes are dropped.
 *
 * Host inputs give the ROM BAR's size (a snapshot's sysfs `resource` line 7) but not its
 * contents. Unless the input says the ROM is blank, the function is assumed to carry the
 * smallest valid image, as drivers/pci/rom.c (pci_get_rom_size) checks one: the 0x55AA
 * header with the PCI Data Structure pointer at 0x18, a "PCIR" structure with the
 * function's vendor, device and class, code type 0 (x86 PC-AT), the last-image indicator
 * and an image length of one 512-byte unit, and a checksum byte making the image sum to 0.
 */
import * as R from "../../uapi/pci_regs.js";
import type { ConfigSpace } from "./config-space.js";

/** Image length unit (PCI Firmware 3.3 §5.1.2, offset 10h of the PCI Data Structure). */
const ROM_UNIT = 512;
/** Where the minimal image places its PCI Data Structure. */
const PCIR_AT = 0x1c;
const PCIR_LENGTH = 0x18;
const CODE_TYPE_X86 = 0x00;
const LAST_IMAGE = 0x80;

/** Where the ROM BAR sits: 0x38 in a bridge's header, 0x30 in an endpoint's. */
export function romBarOffset(config: ConfigSpace): number {
  const type = config.read(R.PCI_HEADER_TYPE, 1) & R.PCI_HEADER_TYPE_MASK;
  return type === R.PCI_HEADER_TYPE_BRIDGE ? R.PCI_ROM_ADDRESS1 : R.PCI_ROM_ADDRESS;
}

/** The smallest valid single-image ROM for a function with these IDs and class code. */
export function minimalRomImage(vendor: number, device: number, classCode: number): Uint8Array {
  const img = new Uint8Array(ROM_UNIT);
  const dv = new DataView(img.buffer);
  img[0] = 0x55;
  img[1] = 0xaa;
  img[2] = 1; // initialization size, in 512-byte units
  dv.setUint16(0x18, PCIR_AT, true);
  img.set([0x50, 0x43, 0x49, 0x52], PCIR_AT); // "PCIR"
  dv.setUint16(PCIR_AT + 4, vendor, true);
  dv.setUint16(PCIR_AT + 6, device, true);
  dv.setUint16(PCIR_AT + 10, PCIR_LENGTH, true);
  img[PCIR_AT + 12] = 3; // PCI Data Structure revision (PCI Firmware 3.0 and later)
  img[PCIR_AT + 13] = classCode & 0xff;
  img[PCIR_AT + 14] = (classCode >> 8) & 0xff;
  img[PCIR_AT + 15] = (classCode >> 16) & 0xff;
  dv.setUint16(PCIR_AT + 16, 1, true); // image length in 512-byte units
  img[PCIR_AT + 20] = CODE_TYPE_X86;
  img[PCIR_AT + 21] = LAST_IMAGE;
  img[ROM_UNIT - 1] = (0x100 - (img.reduce((s, b) => s + b, 0) & 0xff)) & 0xff;
  return img;
}

/** A ROM read of `width` bytes at `off`, as the function answers it with `image` on board. */
export function romRead(
  config: ConfigSpace,
  image: Uint8Array,
  off: number,
  width: 1 | 2 | 4 | 8,
): bigint {
  const decodes =
    (config.read(R.PCI_COMMAND, 2) & R.PCI_COMMAND_MEMORY) !== 0 &&
    (config.read(romBarOffset(config), 4) & R.PCI_ROM_ADDRESS_ENABLE) !== 0;
  let v = 0n;
  for (let i = width - 1; i >= 0; i--) {
    const b = decodes && off + i >= 0 ? (image[off + i] ?? 0xff) : 0xff;
    v = (v << 8n) | BigInt(b);
  }
  return v;
}
