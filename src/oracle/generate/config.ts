/**
 * vfio-pci config space virtualisation in depth, on the nvme (64-bit BAR0, MSI-X, PCIe
 * v2, PM) and the e1000e (three 32-bit memory BARs, an I/O BAR, a ROM, MSI, MSI-X, PCIe
 * v1, PM, AER and DSN extended capabilities): every standard header dword and every
 * byte of the writable ones written with all ones and with zeros and read back, BAR
 * sizing of each BAR kind with 1/2/4-byte writes, every capability dword written and
 * read back, the whole capability list and the extended space read, and the semantic
 * registers (Command's memory/INTx-disable bits against region access, PMCSR D-states,
 * MSI/MSI-X enable bits, DevCtl and its FLR bit) followed by the effect they have.
 */
import * as V from "../../uapi/vfio.js";
import { NIC, NIC_GROUP, NVME, NVME_GROUP, SMALL, deviceReady, irqTrigger } from "./common.js";
import type { GeneratedCase, Script } from "./dsl.js";

const CONFIG = Number(BigInt(V.VFIO_PCI_CONFIG_REGION_INDEX) << 40n);
const region = (i: number) => Number(BigInt(i) << 40n);

/** Where each device's capabilities sit (QEMU 7.2's layout) and how long each is. */
interface Layout {
  tag: string;
  bdf: string;
  group: number;
  caps: { name: string; at: number; len: number }[];
  ext: number[];
  /**
   * A BAR offset whose reads do not depend on device registers the model lacks: the nvme's
   * CAP; the e1000e's MSI-X table, which vfio-pci fills with ones without testing memory.
   */
  probe: number;
}

const DEVICES: Layout[] = [
  {
    tag: "nvme",
    bdf: NVME,
    group: NVME_GROUP,
    caps: [
      { name: "msix", at: 0x40, len: 12 },
      { name: "pm", at: 0x60, len: 8 },
      { name: "exp", at: 0x80, len: 0x3c },
    ],
    ext: [],
    probe: region(V.VFIO_PCI_BAR0_REGION_INDEX),
  },
  {
    tag: "nic",
    bdf: NIC,
    group: NIC_GROUP,
    caps: [
      { name: "pm", at: 0xc8, len: 8 },
      { name: "msi", at: 0xd0, len: 14 },
      { name: "exp", at: 0xe0, len: 0x24 },
      { name: "msix", at: 0xa0, len: 12 },
    ],
    ext: [0x100, 0x140],
    probe: region(3),
  },
];

const hex = (n: number) => `0x${n.toString(16)}`;

const ready = (name: string, note: string, dev: Layout) =>
  deviceReady(name, note, dev.bdf, dev.group);

/** Write hex at a config offset and read the same bytes back. */
function writeRead(s: Script, off: number, data: string, note: string): Script {
  s.pwrite("$d", CONFIG + off, data, `${note}: write ${data} at ${hex(off)}`);
  return s.pread("$d", CONFIG + off, data.length / 2, "read back");
}

export function generate(): GeneratedCase[] {
  const out: GeneratedCase[] = [];
  const mk = (s: Script) =>
    out.push({ name: s.name, family: "vfio-config", spec: SMALL, script: s });

  for (const dev of DEVICES) {
    const { tag } = dev;
    // the standard header, a dword at a time, all ones then all zeros
    for (const [what, data] of [
      ["ones", "ffffffff"],
      ["zeros", "00000000"],
    ] as const) {
      const s = ready(
        `${tag}-header-${what}`,
        `every standard header dword: read, write ${data}, read back`,
        dev,
      );
      for (let off = 0; off < 0x40; off += 4) {
        s.pread("$d", CONFIG + off, 4, `header ${hex(off)}`);
        writeRead(s, off, data, "dword");
      }
      mk(s);
    }
    // byte writes to the header's writable bytes
    {
      const s = ready(`${tag}-header-bytes`, "byte writes of 0xff to the header's bytes", dev);
      for (const off of [4, 5, 6, 7, 8, 9, 0xc, 0xd, 0xe, 0xf, 0x34, 0x3c, 0x3d, 0x3e, 0x3f])
        writeRead(s, off, "ff", "byte");
      s.pread("$d", CONFIG, 0x40, "the whole header");
      mk(s);
    }
    // BAR sizing at each width, then restored with zeros
    {
      const s = ready(`${tag}-bar-sizing`, "BAR and ROM sizing with 1, 2 and 4-byte writes", dev);
      for (const off of [0x10, 0x14, 0x18, 0x1c, 0x20, 0x24, 0x30]) {
        s.pread("$d", CONFIG + off, 4, `BAR at ${hex(off)}`);
        s.pwrite("$d", CONFIG + off, "ffff", "low half all ones");
        s.pread("$d", CONFIG + off, 4, "read");
        s.pwrite("$d", CONFIG + off + 3, "ff", "top byte all ones");
        s.pread("$d", CONFIG + off, 4, "read");
        s.pwrite("$d", CONFIG + off, "01000000", "bit 0 only");
        s.pread("$d", CONFIG + off, 4, "read");
      }
      mk(s);
    }
    // the capability list and the extended space, read only
    {
      const s = ready(`${tag}-cap-read`, "every dword of the capability area, then 0x100..", dev);
      for (let off = 0x40; off < 0x100; off += 4) s.pread("$d", CONFIG + off, 4);
      for (let off = 0x100; off < 0x200; off += 16) s.pread("$d", CONFIG + off, 16);
      mk(s);
    }
    // every capability: each dword written with ones, then zeros, read back
    for (const cap of dev.caps) {
      const s = ready(
        `${tag}-cap-${cap.name}`,
        `${cap.name} capability at ${hex(cap.at)}: every dword written, read back`,
        dev,
      );
      s.pread("$d", CONFIG + cap.at, cap.len, "the capability");
      for (const data of ["ffffffff", "00000000"])
        for (let off = cap.at; off < cap.at + cap.len; off += 4) {
          const n = Math.min(4, cap.at + cap.len - off);
          writeRead(s, off, data.slice(0, 2 * n), cap.name);
        }
      s.pread("$d", CONFIG + cap.at, cap.len, "the capability afterwards");
      mk(s);
    }
    for (const at of dev.ext) {
      const s = ready(
        `${tag}-ext-${hex(at)}`,
        `extended capability at ${hex(at)}: every dword written, read back`,
        dev,
      );
      for (let off = at; off < at + 0x40; off += 4) writeRead(s, off, "ffffffff", "ext");
      s.pread("$d", CONFIG + at, 0x40, "afterwards");
      mk(s);
    }
    // Command: memory enable against BAR access, INTx disable against INTx
    {
      const s = ready(
        `${tag}-command`,
        "Command bits: memory/IO/bus master/INTx disable and what they gate",
        dev,
      );
      s.eventfd("ev");
      for (const cmd of ["0000", "0200", "0600", "0400", "0700", "0004", "0006"]) {
        writeRead(s, 4, cmd, "command");
        s.pread("$d", CONFIG + 6, 2, "status");
        s.pread("$d", dev.probe, 4, "BAR probe");
        s.pwrite("$d", region(0) + 0x100000, "00000000", "BAR0 write past its end");
      }
      irqTrigger(s, V.VFIO_PCI_INTX_IRQ_INDEX, "INTx trigger");
      writeRead(s, 4, "0604", "INTx disable with INTx on");
      writeRead(s, 4, "0600", "INTx enable");
      s.pread("$d", CONFIG + 4, 4, "command and status");
      mk(s);
    }
    // PM: D-state writes and what a D3hot device answers
    {
      const pm = dev.caps.find((c) => c.name === "pm")?.at as number;
      const s = ready(`${tag}-pm-states`, "PMCSR D-state writes and access in D3hot", dev);
      s.pread("$d", CONFIG + pm, 8, "PM capability");
      for (const state of ["03", "00", "01", "02", "03"]) {
        writeRead(s, pm + 4, state, "PMCSR");
        s.pread("$d", dev.probe, 4, "BAR probe");
        s.pread("$d", CONFIG + 4, 2, "command");
      }
      s.ioctl("$d", "VFIO_DEVICE_RESET", 0, { note: "reset in D3hot" });
      s.pread("$d", CONFIG + pm + 4, 2, "PMCSR after reset");
      writeRead(s, pm + 4, "0001", "PME enable");
      writeRead(s, pm + 4, "0101", "PME enable and D1");
      writeRead(s, pm + 4, "0080", "PME status (write 1 to clear)");
      writeRead(s, pm + 4, "0000", "D0");
      s.pread("$d", dev.probe, 4, "BAR probe in D0");
      mk(s);
    }
    // MSI-X (and MSI) enable bits written through config space, then SET_IRQS
    {
      const msix = dev.caps.find((c) => c.name === "msix")?.at as number;
      const msi = dev.caps.find((c) => c.name === "msi")?.at;
      const s = ready(`${tag}-msi-enable`, "MSI/MSI-X enable and mask bits by config writes", dev);
      s.eventfd("ev");
      for (const flags of ["0080", "00c0", "0040", "0000"]) writeRead(s, msix + 2, flags, "MSI-X");
      if (msi !== undefined)
        for (const flags of ["0100", "7100", "0000", "0e00"]) writeRead(s, msi + 2, flags, "MSI");
      irqTrigger(s, V.VFIO_PCI_MSIX_IRQ_INDEX, "MSI-X vector 0 on");
      s.pread("$d", CONFIG + msix, 12, "MSI-X capability with MSI-X on");
      writeRead(s, msix + 2, "0000", "MSI-X disable by config while on");
      writeRead(s, msix + 2, "00c0", "MSI-X function mask while on");
      if (msi !== undefined) s.pread("$d", CONFIG + msi, 14, "MSI capability with MSI-X on");
      s.pread("$d", CONFIG + 4, 2, "command with MSI-X on");
      mk(s);
    }
    // PCIe DevCtl, LnkCtl, DevCtl2 bits, and FLR by DevCtl
    {
      const exp = dev.caps.find((c) => c.name === "exp")?.at as number;
      const s = ready(`${tag}-exp-control`, "PCIe DevCtl/LnkCtl/DevCtl2 writes and FLR", dev);
      for (const v of ["0f00", "f000", "0070", "1000", "2000", "0800", "0000"])
        writeRead(s, exp + 8, v, "DevCtl");
      for (const v of ["0300", "4000", "0000"]) writeRead(s, exp + 0x10, v, "LnkCtl");
      for (const v of ["ff07", "0004", "0000"]) writeRead(s, exp + 0x28, v, "DevCtl2");
      s.pwrite("$d", CONFIG + 4, "0600", "command: memory, bus master");
      s.pwrite("$d", CONFIG + exp + 9, "80", "DevCtl: initiate FLR");
      s.pread("$d", CONFIG + 4, 2, "command after FLR");
      s.pread("$d", CONFIG + exp + 8, 4, "DevCtl/DevSta after FLR");
      s.pread("$d", CONFIG + 0x10, 8, "BARs after FLR");
      mk(s);
    }
  }
  return out;
}
