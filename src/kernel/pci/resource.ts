/**
 * A function's BAR resources (struct resource, pci_resource_start/len/flags), sized the way
 * drivers/pci/probe.c (Linux 6.12) __pci_read_base sizes them: decoding off, write all ones,
 * read back the size mask, restore, decoding back on. Resource flags are
 * include/linux/ioport.h's. The BAR value is taken as the assigned address (bus and CPU
 * addresses coincide on x86); VF BARs (carved from the PF's SR-IOV BARs) are not sized.
 *
 * Linux sizes at enumeration (pci_setup_device → pci_read_bases); the model sizes on the
 * first question about a device, which reads and restores the same registers.
 */
import * as R from "../../uapi/pci_regs.js";
import type { PciDev } from "./pci.js";

export const IORESOURCE_IO = 0x00000100;
export const IORESOURCE_MEM = 0x00000200;
export const IORESOURCE_PREFETCH = 0x00002000;
export const IORESOURCE_READONLY = 0x00004000;
export const IORESOURCE_SIZEALIGN = 0x00040000;
export const IORESOURCE_MEM_64 = 0x00100000;
/** PCI ROM control bits (IORESOURCE_BITS). */
export const IORESOURCE_ROM_ENABLE = 1 << 0;
export const IORESOURCE_ROM_SHADOW = 1 << 1;

export const PCI_ROM_RESOURCE = 6;
/** resource[0..5] BARs, [6] the ROM. */
const PCI_NUM_DEV_RESOURCES = 7;

/** x86 IO_SPACE_LIMIT: port addresses are 16 bits. */
const IO_SPACE_LIMIT = 0xffffn;

export interface PciResource {
  start: bigint;
  end: bigint;
  flags: number;
}

const resources = new WeakMap<PciDev, PciResource[]>();

/** dev->resource[] */
export function pciResources(dev: PciDev): PciResource[] {
  let res = resources.get(dev);
  if (!res) {
    res = pciReadBases(dev);
    resources.set(dev, res);
  }
  return res;
}

export function pciResourceStart(dev: PciDev, bar: number): bigint {
  return pciResources(dev)[bar]?.start ?? 0n;
}

/** pci_resource_len(): zero unless the resource has an end. */
export function pciResourceLen(dev: PciDev, bar: number): bigint {
  const r = pciResources(dev)[bar];
  return r && r.end ? r.end - r.start + 1n : 0n;
}

export function pciResourceFlags(dev: PciDev, bar: number): number {
  return pciResources(dev)[bar]?.flags ?? 0;
}

/** pci_read_bases(): 6 BARs for a normal header, 2 for a bridge, 1 for CardBus; then the ROM. */
function pciReadBases(dev: PciDev): PciResource[] {
  const res = Array.from({ length: PCI_NUM_DEV_RESOURCES }, () => ({
    start: 0n,
    end: 0n,
    flags: 0,
  }));
  if (dev.isVirtfn) return res;
  const hdr = dev.hdrType & R.PCI_HEADER_TYPE_MASK;
  const [howmany, rom] =
    hdr === R.PCI_HEADER_TYPE_NORMAL
      ? [6, R.PCI_ROM_ADDRESS]
      : hdr === R.PCI_HEADER_TYPE_BRIDGE
        ? [2, R.PCI_ROM_ADDRESS1]
        : [1, 0];
  for (let pos = 0; pos < howmany; pos++) {
    pos += readBase(dev, false, res[pos] as PciResource, R.PCI_BASE_ADDRESS_0 + (pos << 2));
  }
  if (rom) {
    const r = res[PCI_ROM_RESOURCE] as PciResource;
    r.flags = IORESOURCE_MEM | IORESOURCE_PREFETCH | IORESOURCE_READONLY | IORESOURCE_SIZEALIGN;
    readBase(dev, true, r, rom);
  }
  return res;
}

/** decode_bar() */
function decodeBar(bar: number): number {
  if ((bar & R.PCI_BASE_ADDRESS_SPACE) === R.PCI_BASE_ADDRESS_SPACE_IO)
    return (bar & ~R.PCI_BASE_ADDRESS_IO_MASK) | IORESOURCE_IO;
  let flags = (bar & ~R.PCI_BASE_ADDRESS_MEM_MASK) | IORESOURCE_MEM;
  if (flags & R.PCI_BASE_ADDRESS_MEM_PREFETCH) flags |= IORESOURCE_PREFETCH;
  if ((bar & R.PCI_BASE_ADDRESS_MEM_TYPE_MASK) === R.PCI_BASE_ADDRESS_MEM_TYPE_64)
    flags |= IORESOURCE_MEM_64;
  return flags;
}

/** pci_size() */
function pciSize(base: bigint, maxbase: bigint, mask: bigint): bigint {
  let size = mask & maxbase;
  if (!size) return 0n;
  size = size & ~(size - 1n);
  if (base === maxbase && ((base | (size - 1n)) & mask) !== mask) return 0n;
  return size;
}

/** __pci_read_base(): returns 1 when the BAR is 64-bit (it used the next slot too). */
function readBase(dev: PciDev, rom: boolean, res: PciResource, pos: number): number {
  const mask = rom ? R.PCI_ROM_ADDRESS_MASK >>> 0 : 0xffffffff;
  const decode = R.PCI_COMMAND_MEMORY | R.PCI_COMMAND_IO;
  const origCmd = dev.read16(R.PCI_COMMAND);
  if (origCmd & decode) dev.write16(R.PCI_COMMAND, origCmd & ~decode);

  let l = dev.read32(pos);
  dev.write32(pos, (l | mask) >>> 0);
  let sz = dev.read32(pos);
  dev.write32(pos, l);
  // All ones means a broken (or absent) function rather than a size.
  if (sz === 0xffffffff) sz = 0;
  if (l === 0xffffffff) l = 0;

  let l64: bigint;
  let sz64: bigint;
  let mask64: bigint;
  if (!rom) {
    res.flags = decodeBar(l) | IORESOURCE_SIZEALIGN;
    if (res.flags & IORESOURCE_IO) {
      l64 = BigInt((l & R.PCI_BASE_ADDRESS_IO_MASK) >>> 0);
      sz64 = BigInt((sz & R.PCI_BASE_ADDRESS_IO_MASK) >>> 0);
      mask64 = BigInt(R.PCI_BASE_ADDRESS_IO_MASK >>> 0) & IO_SPACE_LIMIT;
    } else {
      l64 = BigInt((l & R.PCI_BASE_ADDRESS_MEM_MASK) >>> 0);
      sz64 = BigInt((sz & R.PCI_BASE_ADDRESS_MEM_MASK) >>> 0);
      mask64 = BigInt(R.PCI_BASE_ADDRESS_MEM_MASK >>> 0);
    }
  } else {
    if (l & R.PCI_ROM_ADDRESS_ENABLE) res.flags |= IORESOURCE_ROM_ENABLE;
    l64 = BigInt((l & R.PCI_ROM_ADDRESS_MASK) >>> 0);
    sz64 = BigInt((sz & R.PCI_ROM_ADDRESS_MASK) >>> 0);
    mask64 = BigInt(R.PCI_ROM_ADDRESS_MASK >>> 0);
  }
  if (res.flags & IORESOURCE_MEM_64) {
    const hi = dev.read32(pos + 4);
    dev.write32(pos + 4, 0xffffffff);
    const szHi = dev.read32(pos + 4);
    dev.write32(pos + 4, hi);
    l64 |= BigInt(hi) << 32n;
    sz64 |= BigInt(szHi) << 32n;
    mask64 |= 0xffffffffn << 32n;
  }
  if (origCmd & decode) dev.write16(R.PCI_COMMAND, origCmd);

  const size = sz64 ? pciSize(l64, sz64, mask64) : 0n;
  if (!size) {
    res.flags = 0;
  } else {
    res.start = l64;
    res.end = l64 + size - 1n;
  }
  return res.flags & IORESOURCE_MEM_64 ? 1 : 0;
}
