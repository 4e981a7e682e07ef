/**
 * vfio-pci region reads and writes through the device fd: the nvme's 64-bit BAR0 (its
 * controller registers, its MSI-X table inside the BAR, the end of the BAR) at 1, 2, 4, 8
 * and odd sizes and alignments, writes that stick or are dropped; the regions a device
 * does not have (the upper half of a 64-bit BAR, an absent ROM, VGA); the e1000e's MSI-X
 * BAR (the table vfio-pci hides), its I/O BAR and its ROM at and past their ends; and
 * VFIO_DEVICE_IOEVENTFD over BAR offsets, sizes, flags and fds.
 */
import * as V from "../../uapi/vfio.js";
import { NIC, NIC_GROUP, SMALL, WIDTHS, deviceReady } from "./common.js";
import { st, v64, type GeneratedCase, type Script } from "./dsl.js";

const region = (i: number) => Number(BigInt(i) << 40n);
const hex = (n: number) => `0x${n.toString(16)}`;

function reads(s: Script, index: number, at: [number, number][]): Script {
  for (const [off, size] of at)
    s.pread("$d", region(index) + off, size, `region ${index} +${hex(off)} x${size}`);
  return s;
}

export function generate(): GeneratedCase[] {
  const out: GeneratedCase[] = [];
  const mk = (s: Script) =>
    out.push({ name: s.name, family: "vfio-region", spec: SMALL, script: s });

  // nvme BAR0 (16K): registers, the MSI-X table at 0x2000 (65 vectors), the PBA, the end
  // (not AQA/ASQ/ACQ: they keep what the host's driver programmed, which no snapshot holds)
  mk(
    reads(
      deviceReady("nvme-bar0-read", "nvme BAR0 reads: sizes, alignments, MSI-X table, end"),
      0,
      [
        ...WIDTHS,
        [3, 8],
        [4, 8],
        [6, 4],
        [7, 2],
        [5, 3],
        [8, 4],
        [0x14, 4],
        [0x1c, 4],
        [0, 0x24],
        [0x1000, 0x20],
        [0x1ff8, 0x10],
        [0x2000, 0x10],
        [0x2408, 0x10],
        [0x2410, 4],
        [0x3000, 0x10],
        [0x3ff8, 8],
        [0x3ffc, 8],
        [0x3fff, 2],
        [0x4000, 4],
        [0x4000, 0],
        [0x100000, 4],
      ],
    ),
  );
  {
    const s = deviceReady("nvme-bar0-write", "nvme BAR0 writes at each width, read back");
    for (const [off, data] of [
      [0x24, "1f001f00"],
      [0x24, "07"],
      [0x26, "0300"],
      [0x28, "0010000000000000"],
      [0x30, "00200000"],
      [0x34, "01000000"],
      [0x0c, "01000000"],
      [0x10, "01000000"],
      [0x14, "00000000"],
      [0x00, "ffffffff"],
      [0x08, "00000000"],
      [0x2000, "ffffffffffffffff"],
      [0x200c, "00000000"],
      [0x1ffc, "0000000000000000"],
      [0x3ffe, "00000000"],
    ] as const) {
      s.pwrite("$d", region(0) + off, data, `write ${data} at ${hex(off)}`);
      s.pread("$d", region(0) + off, data.length / 2, "read back");
    }
    s.pwrite("$d", region(0) + 0x4000, "00", "past the end");
    s.pwrite("$d", region(0), "", "nothing");
    s.ioctl("$d", "VFIO_DEVICE_RESET", 0);
    reads(s, 0, [[0x24, 0x18]]);
    mk(s);
  }
  // the regions the nvme does not have
  {
    const s = deviceReady("nvme-regions-absent", "reads and writes of regions the nvme lacks");
    for (const index of [1, 2, 3, 4, 5, 6, 8, 9, 10]) {
      s.pread("$d", region(index), 4, `region ${index}`);
      s.pwrite("$d", region(index), "00000000", `write region ${index}`);
    }
    s.pread("$d", region(0xffff), 4, "index 0xffff");
    s.pread("$d", region(7) + 0x1000, 4, "config past its end");
    mk(s);
  }
  // e1000e: BAR3 holds the MSI-X table (5 vectors at 0) and the PBA (0x2000)
  {
    const s = deviceReady(
      "nic-bar3-msix",
      "e1000e MSI-X BAR: the hidden table, the PBA",
      NIC,
      NIC_GROUP,
    );
    // (the bytes after the table are the device's: QEMU's, which the machine has no model of)
    reads(s, 3, [
      [0, 4],
      [0, 16],
      [0x4c, 4],
      [0x49, 7],
      [0x40, 0x10],
      [0x4000, 4],
      [0x10000, 4],
    ]);
    s.pwrite("$d", region(3), "00000000", "write into the table: dropped");
    reads(s, 3, [[0, 4]]);
    s.pwrite("$d", region(3) + 0x3ffe, "00000000", "write crossing the end");
    s.pwrite("$d", region(4), "00", "BAR4: none");
    mk(s);
  }
  // e1000e: I/O BAR (32 ports) and the ROM (256K)
  {
    const s = deviceReady("nic-io-rom", "e1000e I/O BAR and ROM: sizes and ends", NIC, NIC_GROUP);
    reads(s, 2, [
      [0x20, 4],
      [0x1000, 1],
    ]);
    s.pwrite("$d", region(2) + 0x20, "00000000", "I/O BAR past its end");
    reads(s, 6, [
      [0, 2],
      [0x3fffc, 8],
      [0x40000, 4],
      [0x100000, 4],
    ]);
    s.pwrite("$d", region(6), "00", "ROM write");
    mk(s);
  }
  // IOEVENTFD on nvme BAR0
  {
    const s = deviceReady("nvme-ioeventfd", "DEVICE_IOEVENTFD: offsets, sizes, flags, fds");
    s.eventfd("ev");
    s.eventfd("ev2");
    const ioev = (
      offset: number,
      flags: number,
      fd: string | number,
      note: string,
      argsz = 32,
      data = 0,
    ) =>
      s.ioctl(
        "$d",
        "VFIO_DEVICE_IOEVENTFD",
        st(V.vfio_device_ioeventfd, { argsz, flags, offset: v64(offset), data, fd }),
        { note },
      );
    for (const size of [1, 2, 4, 8, 3, 0, 16])
      ioev(region(0) + 0x1000, size, "$ev", `size ${size}`);
    ioev(region(0) + 0x1000, 4, "$ev", "the same again");
    ioev(region(0) + 0x1000, 4, "$ev2", "same offset, another eventfd");
    ioev(region(0) + 0x1000, 4, "$ev", "same, other data", 32, 1);
    ioev(region(0) + 0x1001, 4, "$ev", "unaligned");
    ioev(region(0) + 0x3ffc, 8, "$ev", "crossing the end");
    ioev(region(0) + 0x4000, 4, "$ev", "past the end");
    ioev(region(0) + 0x2000, 4, "$ev", "in the MSI-X table");
    ioev(region(7) + 4, 2, "$ev", "config space");
    ioev(region(6), 4, "$ev", "ROM");
    ioev(region(1), 4, "$ev", "BAR1");
    ioev(region(0) + 0x1000, 4 | 0x10, "$ev", "flag bit 4");
    ioev(region(0) + 0x1000, 4, "$ev", "argsz 31", 31);
    ioev(region(0) + 0x1000, 4, -2, "fd -2");
    ioev(region(0) + 0x1000, 4, 1000, "fd 1000 (none)");
    ioev(region(0) + 0x1000, 4, "$d", "fd: not an eventfd");
    ioev(region(0) + 0x1000, 4, -1, "deassign");
    ioev(region(0) + 0x1000, 4, -1, "deassign again");
    ioev(region(0) + 0x1008, 4, -1, "deassign what was never assigned");
    ioev(region(0) + 0x1000, 1, -1, "deassign size 1");
    mk(s);
  }
  return out;
}
