/**
 * vfio-pci BAR and ROM access through the device file, drivers/vfio/pci/vfio_pci_rdwr.c
 * (Linux 6.12), with the option-ROM mapping of drivers/pci/rom.c.
 *
 * An access is cut into naturally aligned 8/4/2/1-byte pieces (8-byte port I/O is two
 * 4-byte accesses, low half first: io-64-nonatomic-lo-hi.h). A memory BAR answers only
 * while the virtual Command register has memory enabled and the function is in D0-D2
 * (else EIO). The MSI-X table is excluded: reads fill 0xff, writes are dropped. The ROM is
 * read with its decoder enabled; past the last image (pci_get_rom_size) it reads 0xff.
 * Hardware is reached through PciMmio by BAR index, the ROM as index 6.
 *
 * VGA legacy ranges are not routed by the model's machine: accesses answer ENOSYS.
 */
import { err } from "../../../uapi/errno.js";
import * as R from "../../../uapi/pci_regs.js";
import { VFIO_PCI_OFFSET_SHIFT } from "../../../uapi/vfio.js";
import type { Task } from "../../core/task.js";
import type { PciDev } from "../../pci/pci.js";
import {
  IORESOURCE_IO,
  IORESOURCE_MEM,
  IORESOURCE_ROM_ENABLE,
  IORESOURCE_ROM_SHADOW,
  PCI_ROM_RESOURCE,
  pciResourceFlags,
  pciResourceLen,
  pciResourceStart,
} from "../../pci/resource.js";
import { vfioPciMemoryEnabled } from "./vfio_pci_config.js";
import type { VfioPciCoreDevice } from "./vfio_pci_core.js";
import { virqfdDisable, virqfdEnable, type Virqfd } from "./vfio_pci_intrs.js";

/** VFIO_PCI_OFFSET_MASK */
export const VFIO_PCI_OFFSET_MASK = (1n << VFIO_PCI_OFFSET_SHIFT) - 1n;
/** VFIO_PCI_IOEVENTFD_MAX (vfio_pci_priv.h): arbitrary cap per device. */
const VFIO_PCI_IOEVENTFD_MAX = 1000;

type Width = 1 | 2 | 4 | 8;

function ioRead(vdev: VfioPciCoreDevice, bar: number, off: number, w: Width): bigint {
  const p = vdev.pdev;
  const isIo = pciResourceFlags(p, bar) & IORESOURCE_IO;
  if (w === 8 && isIo) {
    const lo = vdev.hw.mmioRead(p.bus.domain, p.bus.number, p.devfn, bar, off, 4);
    const hi = vdev.hw.mmioRead(p.bus.domain, p.bus.number, p.devfn, bar, off + 4, 4);
    return lo | (hi << 32n);
  }
  return vdev.hw.mmioRead(p.bus.domain, p.bus.number, p.devfn, bar, off, w);
}

function ioWrite(vdev: VfioPciCoreDevice, bar: number, off: number, w: Width, v: bigint): void {
  const p = vdev.pdev;
  if (w === 8 && pciResourceFlags(p, bar) & IORESOURCE_IO) {
    vdev.hw.mmioWrite(p.bus.domain, p.bus.number, p.devfn, bar, off, 4, v & 0xffffffffn);
    vdev.hw.mmioWrite(p.bus.domain, p.bus.number, p.devfn, bar, off + 4, 4, v >> 32n);
    return;
  }
  vdev.hw.mmioWrite(p.bus.domain, p.bus.number, p.devfn, bar, off, w, v);
}

function getLe(b: Uint8Array, off: number, n: number): bigint {
  let v = 0n;
  for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[off + i] ?? 0);
  return v;
}

function setLe(b: Uint8Array, off: number, n: number, v: bigint): void {
  for (let i = 0; i < n; i++) b[off + i] = Number((v >> BigInt(8 * i)) & 0xffn);
}

/**
 * vfio_pci_core_do_io_rw(): `buf` moves to or from [off, off + buf.length) of the BAR;
 * [xStart, xEnd) is excluded. Returns the bytes done or -errno.
 */
function doIoRw(
  vdev: VfioPciCoreDevice,
  testMem: boolean,
  bar: number,
  buf: Uint8Array,
  off: number,
  xStart: number,
  xEnd: number,
  iswrite: boolean,
): number {
  let done = 0;
  let count = buf.length;
  while (count) {
    const fillable = off < xStart ? Math.min(count, xStart - off) : off >= xEnd ? count : 0;
    let filled: number;
    const w: Width | 0 =
      fillable >= 8 && !(off % 8)
        ? 8
        : fillable >= 4 && !(off % 4)
          ? 4
          : fillable >= 2 && !(off % 2)
            ? 2
            : fillable
              ? 1
              : 0;
    if (w) {
      if (testMem && !vfioPciMemoryEnabled(vdev)) return err("EIO");
      if (iswrite) ioWrite(vdev, bar, off, w, getLe(buf, done, w));
      else setLe(buf, done, w, ioRead(vdev, bar, off, w));
      filled = w;
    } else {
      // Inside the excluded range: reads fill 0xff, writes are dropped.
      filled = Math.min(count, xEnd - off);
      if (!iswrite) buf.fill(0xff, done, done + filled);
    }
    count -= filled;
    done += filled;
    off += filled;
  }
  return done;
}

/* drivers/pci/rom.c */

/** pci_enable_rom(): the ROM BAR's enable bit with its address. */
function pciEnableRom(pdev: PciDev): void {
  if (pciResourceFlags(pdev, PCI_ROM_RESOURCE) & IORESOURCE_ROM_SHADOW) return;
  const start = Number(pciResourceStart(pdev, PCI_ROM_RESOURCE));
  const addr = pdev.read32(R.PCI_ROM_ADDRESS) & ~R.PCI_ROM_ADDRESS_MASK;
  pdev.write32(R.PCI_ROM_ADDRESS, (addr | start | R.PCI_ROM_ADDRESS_ENABLE) >>> 0);
}

/** pci_disable_rom() */
function pciDisableRom(pdev: PciDev): void {
  if (pciResourceFlags(pdev, PCI_ROM_RESOURCE) & IORESOURCE_ROM_SHADOW) return;
  pdev.write32(R.PCI_ROM_ADDRESS, pdev.read32(R.PCI_ROM_ADDRESS) & ~R.PCI_ROM_ADDRESS_ENABLE);
}

/** pci_get_rom_size(): the images' extent (0x55AA, "PCIR", last-image flag), within the BAR. */
function pciGetRomSize(vdev: VfioPciCoreDevice, size: number): number {
  const rd = (off: number, w: 1 | 2 | 4) => Number(ioRead(vdev, PCI_ROM_RESOURCE, off, w));
  let image = 0;
  for (;;) {
    if (rd(image, 2) !== 0xaa55) break;
    const pds = image + rd(image + 24, 2);
    if (rd(pds, 4) !== 0x52494350) break;
    const last = rd(pds + 21, 1) & 0x80;
    const length = rd(pds + 16, 2);
    image += length * 512;
    if (image >= size) break;
    if (!last && rd(image, 2) !== 0xaa55) break;
    if (!length || last) break;
  }
  return Math.min(image, size);
}

/** pci_map_rom(): the ROM's true size, or null when there is none or it is not valid. */
export function pciMapRom(vdev: VfioPciCoreDevice): number | null {
  const pdev = vdev.pdev;
  // An unassigned ROM would be assigned an address here; the model assigns none.
  if (!pciResourceStart(pdev, PCI_ROM_RESOURCE)) return null;
  const size = Number(pciResourceLen(pdev, PCI_ROM_RESOURCE));
  if (!size) return null;
  pciEnableRom(pdev);
  const image = pciGetRomSize(vdev, size);
  if (!image) {
    pciUnmapRom(pdev);
    return null;
  }
  return image;
}

/** pci_unmap_rom(): decoding off again unless firmware left it on. */
export function pciUnmapRom(pdev: PciDev): void {
  if (!(pciResourceFlags(pdev, PCI_ROM_RESOURCE) & IORESOURCE_ROM_ENABLE)) pciDisableRom(pdev);
}

/** vfio_pci_bar_rw(): a BAR region, or the ROM region for reads. */
export function vfioPciBarRw(
  vdev: VfioPciCoreDevice,
  buf: Uint8Array,
  ppos: bigint,
  iswrite: boolean,
): number {
  const pdev = vdev.pdev;
  const pos = Number(ppos & VFIO_PCI_OFFSET_MASK);
  const bar = Number(ppos >> VFIO_PCI_OFFSET_SHIFT);
  let end: number;
  if (pciResourceStart(pdev, bar)) end = Number(pciResourceLen(pdev, bar));
  else if (bar === PCI_ROM_RESOURCE && pciResourceFlags(pdev, bar) & IORESOURCE_ROM_SHADOW)
    end = 0x20000;
  else return err("EINVAL");
  if (pos >= end) return err("EINVAL");
  const chunk = buf.subarray(0, Math.min(buf.length, end - pos));
  let xStart = 0;
  let xEnd = 0;
  if (bar === PCI_ROM_RESOURCE) {
    // The ROM can fill less than its BAR: exclude from the end of the images on.
    const image = pciMapRom(vdev);
    if (image === null) return err("ENOMEM");
    xStart = image;
    xEnd = end;
  } else if (!pciResourceLen(pdev, bar)) {
    return err("ENOMEM"); // pci_iomap() of an empty BAR
  }
  if (bar === vdev.msixBar) {
    xStart = vdev.msixOffset;
    xEnd = vdev.msixOffset + vdev.msixSize;
  }
  const testMem = (pciResourceFlags(pdev, bar) & IORESOURCE_MEM) !== 0;
  const done = doIoRw(vdev, testMem, bar, chunk, pos, xStart, xEnd, iswrite);
  if (bar === PCI_ROM_RESOURCE) pciUnmapRom(pdev);
  return done;
}

/** vfio_pci_vga_rw(): the legacy VGA ranges, which the machine does not route. */
export function vfioPciVgaRw(vdev: VfioPciCoreDevice, ppos: bigint): number {
  if (!vdev.hasVga) return err("EINVAL");
  const pos = Number(ppos & VFIO_PCI_OFFSET_MASK);
  const inRange =
    (pos >= 0xa0000 && pos <= 0xbffff) ||
    (pos >= 0x3b0 && pos <= 0x3bb) ||
    (pos >= 0x3c0 && pos <= 0x3df);
  return inRange ? err("ENOSYS") : err("EINVAL");
}

/** struct vfio_pci_ioeventfd */
export interface VfioPciIoeventfd {
  virqfd: Virqfd | null;
  data: bigint;
  pos: number;
  bar: number;
  count: Width;
  testMem: boolean;
}

/** vfio_pci_ioeventfd_handler(): the write the eventfd stands for, if memory is enabled. */
function ioeventfdWrite(vdev: VfioPciCoreDevice, e: VfioPciIoeventfd): void {
  if (e.testMem && !vfioPciMemoryEnabled(vdev)) return;
  ioWrite(vdev, e.bar, e.pos, e.count, e.data);
}

/**
 * vfio_pci_ioeventfd(): an eventfd that writes `data` to a BAR offset; fd -1 removes the
 * matching one. Only BARs, never over the MSI-X table.
 */
export function vfioPciIoeventfd(
  vdev: VfioPciCoreDevice,
  task: Task,
  offset: bigint,
  data: bigint,
  count: Width,
  fd: number,
): number {
  const pdev = vdev.pdev;
  const pos = Number(offset & VFIO_PCI_OFFSET_MASK);
  const bar = Number(offset >> VFIO_PCI_OFFSET_SHIFT);
  if (bar > 5) return err("EINVAL");
  if (BigInt(pos + count) > pciResourceLen(pdev, bar)) return err("EINVAL");
  if (
    bar === vdev.msixBar &&
    !(pos + count <= vdev.msixOffset || pos >= vdev.msixOffset + vdev.msixSize)
  )
    return err("EINVAL");
  if (!pciResourceLen(pdev, bar)) return err("ENOMEM");
  const same = vdev.ioeventfds.findIndex(
    (e) => e.pos === pos && e.bar === bar && e.data === data && e.count === count,
  );
  if (same >= 0) {
    if (fd !== -1) return err("EEXIST");
    virqfdDisable((vdev.ioeventfds[same] as VfioPciIoeventfd).virqfd);
    vdev.ioeventfds.splice(same, 1);
    return 0;
  }
  if (fd < 0) return err("ENODEV");
  if (vdev.ioeventfds.length >= VFIO_PCI_IOEVENTFD_MAX) return err("ENOSPC");
  const e: VfioPciIoeventfd = {
    virqfd: null,
    data,
    pos,
    bar,
    count,
    testMem: (pciResourceFlags(pdev, bar) & IORESOURCE_MEM) !== 0,
  };
  const ret = virqfdEnable(
    task,
    fd,
    { get: () => e.virqfd, set: (v) => (e.virqfd = v) },
    () => (ioeventfdWrite(vdev, e), false),
    null,
  );
  if (ret) return ret;
  vdev.ioeventfds.unshift(e);
  return 0;
}

/** Drop every ioeventfd (vfio_pci_core_disable). */
export function vfioPciIoeventfdsRelease(vdev: VfioPciCoreDevice): void {
  for (const e of vdev.ioeventfds) virqfdDisable(e.virqfd);
  vdev.ioeventfds = [];
}
