/**
 * vfio-pci on QEMU's other endpoints: the edu (1234:11e8: MSI only, no ROM) below a root
 * port without ACS and integrated on pcie.0, the e1000 and the rtl8139 (conventional PCI,
 * INTx only, option ROMs) behind a PCIe-to-PCI bridge and behind a PCI-PCI bridge nested
 * in it (their group holds the bridges and every function below them), the rtl8139
 * integrated, and a multifunction e1000e + edu pair. For each function: viability,
 * GET_DEVICE_FD, sysfs (driver, iommu_group, reset_method), GET_INFO, every
 * GET_REGION_INFO and GET_IRQ_INFO index, the whole standard header with its capability
 * list, BAR and ROM sizing through the virtualised BARs, VFIO_DEVICE_RESET (a bus reset
 * or none), PCI_HOT_RESET_INFO (the functions on the bus), SET_IRQS on INTx (eventfd,
 * mask, unmask) and MSI, and region reads the machine models: edu's BAR0 registers
 * (QEMU hw/misc/edu.c: identification, liveness, factorial of 1 and 2, whose result does
 * not depend on whether the computing thread ran yet, interrupt raise/acknowledge, DMA
 * registers, invalid sizes), ROM signatures and region ends. The e1000's and rtl8139's
 * registers are QEMU's (hw/net/e1000.c, rtl8139.c), which the machine has no model of:
 * only their region ends are read.
 */
import * as V from "../../uapi/vfio.js";
import { ACS, LEGACY, bindVfio, getDevice, groupStatus, setContainer, setIrqs } from "./common.js";
import { Script, st, type GeneratedCase } from "./dsl.js";
import type { CaseSpec } from "../case.js";

const region = (i: number) => Number(BigInt(i) << 40n);
const hex = (n: number) => `0x${n.toString(16)}`;
const CONFIG = region(V.VFIO_PCI_CONFIG_REGION_INDEX);
const EV = V.VFIO_IRQ_SET_DATA_EVENTFD;
const NONE = V.VFIO_IRQ_SET_DATA_NONE;
const { VFIO_PCI_INTX_IRQ_INDEX: INTX, VFIO_PCI_MSI_IRQ_INDEX: MSI } = V;

/** SET_IRQS on d from vector 0; `fd` is vector 0's eventfd. */
const irq = (s: Script, flags: number, index: number, count: number, note: string, fd?: string) =>
  setIrqs(s, flags, index, 0, count, note, fd ? [["s32", "fd0", fd]] : undefined);

/** A write to edu's BAR0 registers. */
const eduWrite = (s: Script, off: number, data: string, note: string) =>
  s.pwrite("$d", region(0) + off, data, note);

interface Fn {
  bdf: string;
  kind: "edu" | "e1000" | "rtl8139" | "e1000e";
  /** Bound to a driver at boot (edu has none). */
  driver: boolean;
}

const fn = (bdf: string, kind: Fn["kind"]): Fn => ({ bdf, kind, driver: kind !== "edu" });

/** A machine's group: the functions that must leave their drivers for it to be viable. */
interface Group {
  spec: CaseSpec;
  id: number;
  endpoints: Fn[];
}

const BRIDGE: Group = {
  spec: LEGACY,
  id: 4,
  endpoints: [
    fn("0000:02:01.0", "e1000"),
    fn("0000:02:02.0", "rtl8139"),
    fn("0000:02:03.0", "edu"),
    fn("0000:03:01.0", "e1000"),
  ],
};
const PAIR: Group = {
  spec: ACS,
  id: 7,
  endpoints: [fn("0000:01:00.0", "e1000e"), fn("0000:01:00.1", "edu")],
};
const EDU_PORT: Group = { spec: ACS, id: 2, endpoints: [fn("0000:02:00.0", "edu")] };
const EDU_INTEGRATED: Group = { spec: ACS, id: 4, endpoints: [fn("0000:00:06.0", "edu")] };
const RTL_INTEGRATED: Group = { spec: ACS, id: 5, endpoints: [fn("0000:00:07.0", "rtl8139")] };

/** Every endpoint of the group on vfio-pci, the group in container c (type1v2), fd d. */
function ready(name: string, note: string, g: Group, dev: Fn): Script {
  const s = new Script(name, note);
  for (const e of g.endpoints) bindVfio(s, e.bdf, e.driver);
  s.open("/dev/vfio/vfio", "c");
  s.open(`/dev/vfio/${g.id}`, "g");
  groupStatus(s, "g");
  setContainer(s, "g", "c");
  s.ioctl("$c", "VFIO_SET_IOMMU", V.VFIO_TYPE1v2_IOMMU);
  return getDevice(s, "g", dev.bdf, "d");
}

/** What sysfs says of the function, GET_INFO, every region and IRQ index. */
function describe(s: Script, dev: Fn): void {
  const dir = `/sys/bus/pci/devices/${dev.bdf}`;
  s.readlink(`${dir}/iommu_group`);
  s.sysfsRead(`${dir}/reset_method`, "the resets it has (no file: none)");
  s.ioctl("$d", "VFIO_DEVICE_GET_INFO", st(V.vfio_device_info, { argsz: 24 }));
  for (let i = 0; i <= V.VFIO_PCI_VGA_REGION_INDEX; i++)
    s.ioctl("$d", "VFIO_DEVICE_GET_REGION_INFO", st(V.vfio_region_info, { argsz: 32, index: i }), {
      note: `region ${i}`,
    });
  for (let i = 0; i <= V.VFIO_PCI_REQ_IRQ_INDEX; i++)
    s.ioctl("$d", "VFIO_DEVICE_GET_IRQ_INFO", st(V.vfio_irq_info, { argsz: 16, index: i }), {
      note: `irq ${i}`,
    });
}

/** The standard header and capability list, the edge of the config region. */
function config(s: Script): void {
  s.pread("$d", CONFIG, 0x40, "the standard header");
  s.pread("$d", CONFIG + 0x40, 0xc0, "the capability list");
  s.pread("$d", CONFIG + 0xfc, 8, "across 0x100");
  s.pread("$d", CONFIG + 0x100, 4, "extended config space");
}

/** Sizing every BAR and the ROM BAR through the virtualised registers, then reset. */
function sizing(s: Script): void {
  for (const off of [0x10, 0x14, 0x18, 0x1c, 0x20, 0x24, 0x30])
    s.pwrite("$d", CONFIG + off, "ffffffff", `size ${hex(off)}`);
  s.pread("$d", CONFIG + 0x10, 0x24, "BARs and ROM BAR sized");
  s.ioctl("$d", "VFIO_DEVICE_RESET", 0, { note: "a bus reset or none" });
  s.pread("$d", CONFIG, 0x40, "the header after the reset");
  s.ioctl(
    "$d",
    "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO",
    st(V.vfio_pci_hot_reset_info, { argsz: 64 }, { tail: { name: "devices", size: 52 } }),
    { note: "the functions a bus reset reaches" },
  );
}

/** INTx by eventfd, mask and unmask by ioctl and by eventfd; MSI vector 0. */
function irqs(s: Script): void {
  s.eventfd("ev");
  s.eventfd("ev2");
  irq(s, EV | V.VFIO_IRQ_SET_ACTION_TRIGGER, INTX, 1, "INTx to an eventfd", "$ev");
  irq(s, NONE | V.VFIO_IRQ_SET_ACTION_MASK, INTX, 1, "mask");
  s.pread("$d", CONFIG + 4, 4, "command and status while masked");
  irq(s, NONE | V.VFIO_IRQ_SET_ACTION_UNMASK, INTX, 1, "unmask");
  irq(s, EV | V.VFIO_IRQ_SET_ACTION_UNMASK, INTX, 1, "unmask by eventfd", "$ev2");
  const BOOL_MASK = V.VFIO_IRQ_SET_DATA_BOOL | V.VFIO_IRQ_SET_ACTION_MASK;
  setIrqs(s, BOOL_MASK, INTX, 0, 1, "mask by bool", [["u8", "b0", 1]]);
  irq(s, NONE | V.VFIO_IRQ_SET_ACTION_TRIGGER, INTX, 0, "INTx off");
  irq(s, EV | V.VFIO_IRQ_SET_ACTION_TRIGGER, MSI, 1, "MSI vector 0", "$ev");
  s.pread("$d", CONFIG + 4, 4, "command and status with MSI");
  irq(s, EV | V.VFIO_IRQ_SET_ACTION_TRIGGER, INTX, 1, "INTx while MSI is on", "$ev2");
  irq(s, NONE | V.VFIO_IRQ_SET_ACTION_TRIGGER, MSI, 0, "MSI off");
}

/** edu's BAR0 registers (hw/misc/edu.c edu_mmio_read / edu_mmio_write). */
function eduBar(s: Script): void {
  const r = (off: number, size: number, note?: string) =>
    s.pread("$d", region(0) + off, size, note ?? `BAR0 ${hex(off)} x${size}`);
  const w = (off: number, data: string, note: string) => eduWrite(s, off, data, note);
  r(0, 4, "identification");
  r(0, 1);
  r(0, 2);
  r(0, 8, "8 bytes below 0x80");
  r(2, 4, "misaligned");
  w(4, "78563412", "liveness 0x12345678");
  r(4, 4, "its inverse");
  w(8, "02000000", "2!");
  r(8, 4, "factorial");
  w(8, "01000000", "1!");
  r(8, 4);
  r(0x20, 4, "status");
  w(0x60, "04000000", "raise interrupt 0x4");
  r(0x24, 4, "interrupt status");
  w(0x64, "04000000", "acknowledge it");
  r(0x24, 4);
  w(0x80, "0000040000000000", "DMA source, 8 bytes");
  r(0x80, 8);
  w(0x88, "00100000", "DMA destination, 4 bytes");
  r(0x88, 8);
  r(0x90, 4, "DMA count, 4 bytes");
  r(0x98, 8, "DMA command");
  r(0x40, 4, "no register");
  r(0xffffc, 4, "the end of the BAR");
  r(0xffffe, 4, "across its end");
  r(0x100000, 4, "past its end");
}

/** Region ends and ROM signatures of the BARs the function has (sizes from QEMU). */
function regionEdges(s: Script, dev: Fn): void {
  // [BAR index, its size]: e1000 BAR0 128K MMIO, BAR1 64 ports; rtl8139 BAR0 256 ports,
  // BAR1 256 bytes MMIO; e1000e BAR0/1 128K MMIO, BAR2 32 ports, BAR3 16K MSI-X
  const bars: Record<Fn["kind"], [number, number][]> = {
    e1000: [
      [0, 0x20000],
      [1, 0x40],
    ],
    rtl8139: [
      [0, 0x100],
      [1, 0x100],
    ],
    e1000e: [
      [2, 0x20],
      [3, 0x4000],
    ],
    edu: [],
  };
  for (const [bar, size] of bars[dev.kind]) {
    s.pread("$d", region(bar) + size, 4, `BAR${bar} past its end`);
    s.pwrite("$d", region(bar) + size - 2, "00000000", `BAR${bar} write across its end`);
  }
  s.pread("$d", region(V.VFIO_PCI_ROM_REGION_INDEX), 2, "ROM signature");
  s.pwrite("$d", region(V.VFIO_PCI_ROM_REGION_INDEX), "00", "ROM write");
}

/** The memory BAR of each kind that a read can reach without touching device registers. */
const MEMORY_BAR: Record<Fn["kind"], number> = { edu: 0, e1000: 0, rtl8139: 1, e1000e: 0 };

/**
 * Header writes (Command, Status, cache line, latency, interrupt line and pin, subsystem)
 * and writes to the bytes no capability covers, which vfio-pci passes to the device
 * (QEMU makes them writable); memory decoding off and a BAR read; edu's MSI capability.
 */
function configWrites(s: Script, dev: Fn): void {
  const w = (off: number, data: string, note?: string) =>
    s.pwrite("$d", CONFIG + off, data, note ?? `write ${data} at ${hex(off)}`);
  const r = (off: number, size: number, note?: string) =>
    s.pread("$d", CONFIG + off, size, note ?? "read back");
  w(4, "ffff", "every Command bit");
  r(4, 4);
  w(6, "ffff", "Status: write-one-to-clear");
  r(4, 4);
  w(4, "0000", "decoding off");
  r(4, 4);
  s.pread("$d", region(MEMORY_BAR[dev.kind]), 4, "a memory BAR with decoding off");
  w(4, "0700", "I/O, memory, bus master");
  s.pread("$d", region(MEMORY_BAR[dev.kind]) + 0x1000000, 4, "past the BAR, decoding on");
  w(0x0c, "ffff", "cache line size, latency timer");
  w(0x0f, "ff", "BIST");
  r(0x0c, 4);
  w(0x28, "ffffffff", "CardBus CIS");
  w(0x2c, "ffffffff", "subsystem");
  r(0x28, 8);
  w(0x3c, "ffffffff", "interrupt line, pin, Min_Gnt, Max_Lat");
  r(0x3c, 4);
  w(0x34, "ff", "capability pointer");
  r(0x34, 4);
  w(0x80, "78563412");
  r(0x80, 4);
  w(0xfc, "ffffffff");
  r(0xfc, 4);
  w(0x50, "a5", "a byte at 0x50");
  r(0x50, 4);
  if (dev.kind === "edu") {
    w(0x42, "ffff", "MSI flags");
    w(0x44, "ffffffff", "MSI address");
    w(0x48, "ffffffff", "MSI upper address");
    w(0x4c, "ffff", "MSI data");
    r(0x40, 0x10, "the MSI capability");
  }
}

/**
 * edu's interrupt (hw/misc/edu.c edu_raise_irq / edu_lower_irq): the Status register's
 * Interrupt Status with INTx off, on, masked and unmasked, and with MSI on.
 */
function eduIrq(s: Script): void {
  const w = (off: number, data: string, note: string) => eduWrite(s, off, data, note);
  const status = (note: string) => s.pread("$d", CONFIG + 4, 4, note);
  w(0x60, "01000000", "raise, no interrupt set up");
  status("Interrupt Status");
  s.pread("$d", region(0) + 0x24, 4, "interrupt status register");
  w(0x64, "01000000", "acknowledge");
  status("Interrupt Status cleared");
  s.eventfd("ev");
  irq(s, EV | V.VFIO_IRQ_SET_ACTION_TRIGGER, INTX, 1, "INTx on", "$ev");
  w(0x60, "02000000", "raise");
  status("pending, masked by the handler");
  irq(s, NONE | V.VFIO_IRQ_SET_ACTION_UNMASK, INTX, 1, "unmask, still pending");
  status("after unmask");
  w(0x64, "02000000", "acknowledge");
  status("after acknowledge");
  irq(s, NONE | V.VFIO_IRQ_SET_ACTION_UNMASK, INTX, 1, "unmask");
  irq(s, NONE | V.VFIO_IRQ_SET_ACTION_MASK, INTX, 1, "mask");
  w(0x60, "04000000", "raise while masked");
  status("pending while masked");
  irq(s, NONE | V.VFIO_IRQ_SET_ACTION_TRIGGER, INTX, 0, "INTx off, pending");
  status("after INTx off");
  w(0x64, "04000000", "acknowledge");
  irq(s, EV | V.VFIO_IRQ_SET_ACTION_TRIGGER, MSI, 1, "MSI on", "$ev");
  w(0x60, "08000000", "raise with MSI");
  status("no INTx with MSI");
  s.pread("$d", region(0) + 0x24, 4, "interrupt status register");
  s.pread("$d", CONFIG + 0x40, 0x10, "the MSI capability");
  w(0x64, "08000000", "acknowledge");
  irq(s, NONE | V.VFIO_IRQ_SET_ACTION_TRIGGER, MSI, 0, "MSI off");
  status("after MSI off");
}

/**
 * What a reset leaves of edu's registers and of a function's config space: edu has no
 * reset handler (hw/misc/edu.c), so its BAR registers survive the bus reset QEMU applies
 * to every function below the bridge; the config space vfio-pci restores afterwards.
 */
function resetState(s: Script, reset: () => void, other?: string): void {
  eduWrite(s, 4, "78563412", "liveness");
  eduWrite(s, 0x80, "0000040000000000", "DMA source");
  eduWrite(s, 0x60, "04000000", "raise an interrupt");
  s.pwrite("$d", CONFIG + 0x50, "a5", "a byte no capability covers");
  if (other) s.pwrite(`$${other}`, CONFIG + 0x80, "5a", "the same on another function");
  reset();
  s.pread("$d", region(0) + 4, 4, "liveness after the reset");
  s.pread("$d", region(0) + 0x80, 8, "DMA source");
  s.pread("$d", region(0) + 0x24, 4, "interrupt status");
  s.pread("$d", CONFIG, 0x60, "the header, the MSI capability, 0x50");
  if (other) s.pread(`$${other}`, CONFIG, 0x84, "the other function's header and 0x80");
}

export function generate(): GeneratedCase[] {
  const out: GeneratedCase[] = [];
  // two cases a function: what it is (sysfs, info, config, sizing, resets), what it does
  // (regions, interrupts)
  const probe = (name: string, note: string, g: Group, dev: Fn) => {
    const info = ready(`${name}-info`, `${note}: info, config space, sizing, resets`, g, dev);
    describe(info, dev);
    config(info);
    sizing(info);
    info.readlink(`/sys/bus/pci/devices/${dev.bdf}/driver`);
    const io = ready(`${name}-io`, `${note}: regions and interrupts`, g, dev);
    if (dev.kind === "edu") eduBar(io);
    else regionEdges(io, dev);
    irqs(io);
    const cfg = ready(`${name}-config`, `${note}: config space writes`, g, dev);
    configWrites(cfg, dev);
    const cases = [info, io, cfg];
    if (dev.kind === "edu") {
      const irq = ready(`${name}-irq`, `${note}: its interrupt, INTx and MSI`, g, dev);
      eduIrq(irq);
      cases.push(irq);
    }
    for (const script of cases)
      out.push({ name: script.name, family: "vfio-endpoint", spec: g.spec, script });
  };
  {
    const s = ready(
      "edu-port-reset",
      "edu below a root port: its registers across a bus reset",
      EDU_PORT,
      EDU_PORT.endpoints[0]!,
    );
    resetState(s, () => s.ioctl("$d", "VFIO_DEVICE_RESET", 0, { note: "a bus reset" }));
    out.push({ name: s.name, family: "vfio-endpoint", spec: ACS, script: s });
  }
  {
    const [e1000, , edu] = BRIDGE.endpoints;
    const s = ready(
      "bridge-hot-reset",
      "PCI_HOT_RESET of the bus below the PCIe-to-PCI bridge",
      BRIDGE,
      edu!,
    );
    getDevice(s, "g", e1000!.bdf, "e");
    resetState(
      s,
      () =>
        s.ioctl(
          "$d",
          "VFIO_DEVICE_PCI_HOT_RESET",
          {
            struct: [
              ...st(V.vfio_pci_hot_reset, { argsz: 16, count: 1 }).struct,
              ["s32", "fd0", "$g"],
            ],
          },
          { note: "the group's fd" },
        ),
      "e",
    );
    out.push({ name: s.name, family: "vfio-endpoint", spec: LEGACY, script: s });
  }
  probe(
    "edu-port",
    "edu below a root port without ACS (group 2 with the port)",
    EDU_PORT,
    EDU_PORT.endpoints[0]!,
  );
  probe(
    "edu-integrated",
    "edu integrated on pcie.0, its sibling function without a driver",
    EDU_INTEGRATED,
    EDU_INTEGRATED.endpoints[0]!,
  );
  probe(
    "rtl8139-integrated",
    "rtl8139 integrated on pcie.0",
    RTL_INTEGRATED,
    RTL_INTEGRATED.endpoints[0]!,
  );
  for (const dev of PAIR.endpoints)
    probe(
      `pair-${dev.kind}`,
      `the ${dev.kind} of a multifunction e1000e + edu pair, both on vfio-pci`,
      PAIR,
      dev,
    );
  for (const dev of BRIDGE.endpoints)
    probe(
      `bridge-${dev.kind}-${dev.bdf.slice(5, 7)}`,
      `${dev.kind} ${dev.bdf} behind ${dev.bdf.startsWith("0000:03") ? "a PCI-PCI bridge nested in " : ""}a PCIe-to-PCI bridge, every endpoint on vfio-pci`,
      BRIDGE,
      dev,
    );
  return out;
}
