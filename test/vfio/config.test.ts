/**
 * vfio-pci's config space virtualisation (drivers/vfio/pci/vfio_pci_config.c, Linux 6.12)
 * as seen through the device file, checked against the device's real config bytes (sysfs
 * `config`): which bits read back virtualised, which writes reach the device, which are
 * dropped. Devices: the e1000e (02:00.0) and NVMe (01:00.0) of the device-info snapshot
 * (QEMU's, with QEMU's write masks), a real-hardware NVMe (the PCIe specification's masks),
 * and a crafted function whose capabilities exercise hiding.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { buildHost } from "../../src/host/build.js";
import type { HostSpec } from "../../src/host/spec.js";
import { err } from "../../src/uapi/errno.js";
import * as R from "../../src/uapi/pci_regs.js";
import { bootHost } from "../../src/userspace/boot.js";
import {
  bootCase,
  bootRealHardware,
  Proc,
  REAL_NVME,
  REAL_NVME_EXP,
  testBackend,
} from "./support.js";

const CFG = 7;
const E1000E = "0000:02:00.0";
const NVME = "0000:01:00.0";

async function open(bdf: string) {
  const { k } = await bootCase("device-info");
  const p = new Proc(k.spawn());
  const { dev } = p.openDevice(bdf);
  return { p, dev };
}

describe("standard header", () => {
  test("BAR sizing reads the size mask and flags; the device's BARs are untouched", async () => {
    const { p, dev } = await open(E1000E);
    const hw = [0, 1, 2, 3, 4, 5].map((i) => p.hwConfig(E1000E, 0x10 + 4 * i, 4));
    const rom = p.hwConfig(E1000E, R.PCI_ROM_ADDRESS, 4);
    for (let i = 0; i < 6; i++) p.writeLe(dev, CFG, 0x10 + 4 * i, 4, 0xffffffff);
    p.writeLe(dev, CFG, R.PCI_ROM_ADDRESS, 4, 0xffffffff);
    const sized = [0, 1, 2, 3, 4, 5].map((i) => p.readLe(dev, CFG, 0x10 + 4 * i, 4));
    // 128K, 128K memory; 32 bytes of I/O; the 16K MSI-X BAR; BAR4/5 unimplemented.
    assert.deepEqual(sized, [0xfffe0000, 0xfffe0000, 0xffffffe1, 0xffffc000, 0, 0]);
    // The 256K ROM: size mask plus the (virtual) enable bit as written.
    assert.equal(p.readLe(dev, CFG, R.PCI_ROM_ADDRESS, 4), 0xfffc0001);
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5].map((i) => p.hwConfig(E1000E, 0x10 + 4 * i, 4)),
      hw,
    );
    assert.equal(p.hwConfig(E1000E, R.PCI_ROM_ADDRESS, 4), rom);
    // Writing an address back keeps the address bits and the flags.
    p.writeLe(dev, CFG, 0x18, 4, 0xc000);
    assert.equal(p.readLe(dev, CFG, 0x18, 4), 0xc001);
  });

  test("a 64-bit BAR sizes in both halves", async () => {
    const { p, dev } = await open(NVME);
    assert.equal(p.readLe(dev, CFG, 0x10, 4), 0xfe400004);
    assert.equal(p.readLe(dev, CFG, 0x14, 4), 0);
    p.writeLe(dev, CFG, 0x10, 4, 0xffffffff);
    p.writeLe(dev, CFG, 0x14, 4, 0xffffffff);
    assert.equal(p.readLe(dev, CFG, 0x10, 4), 0xffffc004);
    assert.equal(p.readLe(dev, CFG, 0x14, 4), 0xffffffff);
    assert.equal(p.hwConfig(NVME, 0x10, 4), 0xfe400004);
    // No ROM: the ROM BAR reads 0 whatever is written.
    p.writeLe(dev, CFG, R.PCI_ROM_ADDRESS, 4, 0xffffffff);
    assert.equal(p.readLe(dev, CFG, R.PCI_ROM_ADDRESS, 4), 0);
  });

  test("IDs are read-only, the interrupt line is virtual, the pin read-only", async () => {
    const { p, dev } = await open(NVME);
    assert.equal(p.writeLe(dev, CFG, 0, 4, 0xffffffff), 4);
    assert.equal(p.readLe(dev, CFG, 0, 4), 0x00101b36);
    p.writeLe(dev, CFG, R.PCI_INTERRUPT_LINE, 2, 0xff0a);
    assert.equal(p.readLe(dev, CFG, R.PCI_INTERRUPT_LINE, 2), 0x010a);
    assert.equal(p.hwConfig(NVME, R.PCI_INTERRUPT_LINE, 2), 0x010b);
    // An unaligned read is split into aligned pieces.
    assert.deepEqual([...(p.read(dev, CFG, 1, 2) as Uint8Array)], [0x1b, 0x10]);
  });

  test("Command reaches the device; DisINTx is virtual but the device's bit follows it", async () => {
    const { p, dev } = await open(E1000E);
    p.writeLe(dev, CFG, R.PCI_COMMAND, 2, 0x0006);
    assert.equal(p.readLe(dev, CFG, R.PCI_COMMAND, 2), 0x0006);
    assert.equal(p.hwConfig(E1000E, R.PCI_COMMAND, 2), 0x0006);
    p.writeLe(dev, CFG, R.PCI_COMMAND, 2, 0x0406);
    assert.equal(p.readLe(dev, CFG, R.PCI_COMMAND, 2), 0x0406);
    assert.equal(p.hwConfig(E1000E, R.PCI_COMMAND, 2), 0x0406);
    p.writeLe(dev, CFG, R.PCI_COMMAND, 2, 0x0002);
    assert.equal(p.hwConfig(E1000E, R.PCI_COMMAND, 2), 0x0002);
  });

  test("the capability list bit and pointers are virtual and not writable", async () => {
    const { p, dev } = await open(E1000E);
    p.writeLe(dev, CFG, R.PCI_STATUS, 2, 0);
    assert.ok(p.readLe(dev, CFG, R.PCI_STATUS, 2) & R.PCI_STATUS_CAP_LIST);
    p.writeLe(dev, CFG, R.PCI_CAPABILITY_LIST, 1, 0x40);
    p.writeLe(dev, CFG, 0xc9, 1, 0); // PM's next
    // The chain as the device has it: PM c8 -> MSI d0 -> PCIe e0 -> MSI-X a0.
    const chain: number[] = [];
    for (
      let at = p.readLe(dev, CFG, R.PCI_CAPABILITY_LIST, 1);
      at;
      at = p.readLe(dev, CFG, at + 1, 1)
    )
      chain.push(at, p.readLe(dev, CFG, at, 1));
    assert.deepEqual(chain, [0xc8, 0x01, 0xd0, 0x05, 0xe0, 0x10, 0xa0, 0x11]);
  });

  test("accesses beyond config space fault; regions without an index are EINVAL", async () => {
    const { p, dev } = await open(NVME);
    assert.equal(p.read(dev, CFG, 0x1000, 4), err("EFAULT"));
    assert.equal(p.read(dev, CFG, 0xffc, 8), err("EFAULT"));
    assert.equal(p.read(dev, 9, 0, 4), err("EINVAL"));
    assert.equal(p.write(dev, 6, 0, new Uint8Array(1)), err("EINVAL"));
    // No extended capabilities: 0x100 on is raw (the device's zeros).
    assert.deepEqual([...(p.read(dev, CFG, 0x100, 16) as Uint8Array)], new Array(16).fill(0));
  });
});

describe("capabilities", () => {
  test("PCIe Device Control: FLR reads 0, MPS and MRRS read back virtual", async () => {
    const { p, dev } = await open(NVME);
    const devctl = 0x80 + R.PCI_EXP_DEVCTL;
    p.writeLe(dev, CFG, devctl, 2, R.PCI_EXP_DEVCTL_BCR_FLR | 0x00e0 | 0x5000);
    assert.equal(p.readLe(dev, CFG, devctl, 2), 0x50e0);
    // The MRRS write reaches QEMU's NVMe, whose Device Control is read-only
    // (pcie_endpoint_cap_init opens no bit of it): recorded as vfio-config.nvme-exp-control.
    assert.equal(p.hwConfig(NVME, devctl, 2), 0);
  });

  test("PCIe Device Control: MRRS reaches a device whose Device Control is writable", () => {
    const p = new Proc(bootRealHardware().spawn());
    const { dev } = p.openDevice(REAL_NVME);
    const devctl = REAL_NVME_EXP + R.PCI_EXP_DEVCTL;
    p.writeLe(dev, CFG, devctl, 2, R.PCI_EXP_DEVCTL_BCR_FLR | 0x00e0 | 0x5000);
    assert.equal(p.readLe(dev, CFG, devctl, 2), 0x50e0);
    assert.equal(p.hwConfig(REAL_NVME, devctl, 2), 0x5000);
  });

  test("PM: a D3hot write changes the device's state and fences BAR access", async () => {
    const { p, dev } = await open(NVME);
    const pmcsr = 0x60 + R.PCI_PM_CTRL;
    p.writeLe(dev, CFG, pmcsr, 2, 3);
    assert.equal(p.hwConfig(NVME, pmcsr, 2) & 3, 3);
    assert.equal(p.read(dev, 0, 0, 4), err("EIO"));
    p.writeLe(dev, CFG, pmcsr, 2, 0);
    assert.equal(p.hwConfig(NVME, pmcsr, 2) & 3, 0);
    assert.ok(p.read(dev, 0, 0, 4) instanceof Uint8Array);
  });

  test("MSI: the message and flags are virtual; Enable belongs to SET_IRQS", async () => {
    const { p, dev } = await open(E1000E);
    const msi = 0xd0;
    p.writeLe(dev, CFG, msi + R.PCI_MSI_ADDRESS_LO, 4, 0xfee00000);
    assert.equal(p.readLe(dev, CFG, msi + R.PCI_MSI_ADDRESS_LO, 4), 0xfee00000);
    assert.equal(p.hwConfig(E1000E, msi + R.PCI_MSI_ADDRESS_LO, 4), 0);
    // Enable and a queue size beyond what SET_IRQS enabled are dropped.
    p.writeLe(dev, CFG, msi + R.PCI_MSI_FLAGS, 2, 0x00f1);
    assert.equal(p.readLe(dev, CFG, msi + R.PCI_MSI_FLAGS, 2), 0x0080);
    // The whole low byte is virtual and writable, 64-bit capable included.
    p.writeLe(dev, CFG, msi + R.PCI_MSI_FLAGS, 1, 0x00);
    assert.equal(p.readLe(dev, CFG, msi + R.PCI_MSI_FLAGS, 2), 0x0000);
  });

  test("MSI-X and the extended capabilities read through, writes dropped", async () => {
    const { p, dev } = await open(E1000E);
    const ctl = p.hwConfig(E1000E, 0xa2, 2);
    p.writeLe(dev, CFG, 0xa2, 2, ctl ^ 0xc000);
    assert.equal(p.readLe(dev, CFG, 0xa2, 2), ctl);
    assert.equal(p.hwConfig(E1000E, 0xa2, 2), ctl);
    assert.equal(p.readLe(dev, CFG, 0xa4, 4), 0x00000003); // table in BAR3 at 0
    // AER at 0x100 then the serial number at 0x140.
    assert.equal(p.readLe(dev, CFG, 0x100, 4), 0x14020001);
    assert.equal(p.readLe(dev, CFG, 0x140, 4), 0x00010003);
  });
});

/** A PCIe function with capabilities VFIO hides (SSVID, PASID first, RCLD in the middle). */
function craftedHost() {
  const cfg = Buffer.alloc(4096);
  const put = (off: number, len: number, v: number) => cfg.writeUIntLE(v, off, len);
  put(0, 4, 0x56781234);
  put(R.PCI_COMMAND, 2, 0x0002);
  put(R.PCI_STATUS, 2, R.PCI_STATUS_CAP_LIST);
  put(R.PCI_CLASS_REVISION, 4, 0xff000000);
  put(R.PCI_CAPABILITY_LIST, 1, 0x40);
  put(0x40, 4, 0x00034801); // PM, next 0x48
  put(0x48, 2, 0x500d); // SSVID (hidden), next 0x50
  put(0x4c, 4, 0xcafe1234);
  put(0x50, 4, 0x000c6009); // vendor-specific, 12 bytes, next 0x60
  put(0x60, 4, 0x01008005); // MSI, 32-bit with masking (0x60-0x73), next 0x80
  put(0x80, 4, 0x00920010); // PCIe v2, RC integrated endpoint
  put(0x100, 4, 0x1101001b); // PASID (hidden, first), next 0x110
  put(0x110, 4, 0x12010003); // DSN, next 0x120
  put(0x120, 4, 0x13010005); // RCLD (hidden), next 0x130
  put(0x130, 4, 0x0001000b); // vendor-specific extended
  put(0x134, 4, 0x01000001);
  const spec: HostSpec = {
    name: "crafted",
    kernel: { cmdline: "" },
    iommu: [
      { kind: "intel-vtd", name: "dmar0", cap: "0xd2008c22260206", ecap: "0xf00fca", segment: 0 },
    ],
    unprivileged: false,
    functions: [{ addr: "0000:00:03.0", config: cfg.toString("hex") }],
  };
  return buildHost(spec, "crafted");
}

describe("hidden capabilities", () => {
  test("length-0 capabilities are unlinked; a hidden first extended one stays as a placeholder", async () => {
    const k = bootHost(craftedHost());
    assert.equal(k.vfio.iommuDrivers.register(testBackend), 0);
    const p = new Proc(k.spawn());
    const { dev } = p.openDevice("0000:00:03.0");
    assert.equal(p.readLe(dev, CFG, 0x41, 1), 0x50); // PM skips SSVID
    assert.equal(p.readLe(dev, CFG, 0x4c, 4), 0xcafe1234); // the hidden bytes are raw
    assert.equal(p.readLe(dev, CFG, 0x51, 1), 0x60);
    assert.equal(p.readLe(dev, CFG, 0x52, 1), 0x0c); // vendor cap length
    assert.equal(p.readLe(dev, CFG, 0x60, 4), 0x01008005);
    // PASID shows ID 0 and version 0, keeping only the next pointer.
    assert.equal(p.readLe(dev, CFG, 0x100, 4), 0x11000000);
    // DSN now points past RCLD to the vendor capability.
    assert.equal(p.readLe(dev, CFG, 0x110, 4), 0x13010003);
    assert.equal(p.readLe(dev, CFG, 0x130, 4), 0x0001000b);
  });
});
