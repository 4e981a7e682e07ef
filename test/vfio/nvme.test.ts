/**
 * QEMU's NVMe controller (machine/devices/nvme.ts, QEMU 7.2 hw/nvme/ctrl.c) through the
 * VFIO device file: its capabilities, the CC.EN / CSTS.RDY handshake and what refuses
 * it, shutdown, the interrupt mask, and VFIO_DEVICE_RESET returning it to its defaults.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as R from "../../src/uapi/pci_regs.js";
import * as U from "../../src/uapi/vfio.js";
import { bootCase, Proc } from "./support.js";

const NVME = "0000:01:00.0";
const CC_EN = 1;
/** IOSQES 6 (64-byte entries), IOCQES 4 (16-byte), as Linux's nvme driver sets them. */
const CC_ENTRY_SIZES = (6 << 16) | (4 << 20);

async function nvme() {
  const { k } = await bootCase("device-info");
  const p = new Proc(k.spawn());
  const { dev } = p.openDevice(NVME);
  p.writeLe(dev, 7, R.PCI_COMMAND, 2, R.PCI_COMMAND_MEMORY);
  const bytes = (off: number, len: number) => Buffer.from(p.read(dev, 0, off, len) as Uint8Array);
  const reg = (off: number) => bytes(off, 4).readUInt32LE(0);
  const reg64 = (off: number) => bytes(off, 8).readBigUInt64LE(0);
  const set = (off: number, v: number) => assert.equal(p.writeLe(dev, 0, off, 4, v), 4);
  const set64 = (off: number, v: bigint) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(v);
    assert.equal(p.write(dev, 0, off, b), 8);
  };
  /** Admin queues of 32 entries at page-aligned addresses. */
  const configure = (asq = 0x10000n) => {
    set(0x24, (31 << 16) | 31);
    set64(0x28, asq);
    set64(0x30, 0x20000n);
  };
  return { p, dev, reg, reg64, set, configure };
}

describe("QEMU NVMe controller registers", () => {
  test("CAP and VS as QEMU 7.2 initialises them", async () => {
    const { reg, reg64 } = await nvme();
    const cap = reg64(0x00);
    const field = (shift: number, bits: number) =>
      Number((cap >> BigInt(shift)) & ((1n << BigInt(bits)) - 1n));
    assert.equal(field(0, 16), 0x7ff, "MQES");
    assert.equal(field(16, 1), 1, "CQR");
    assert.equal(field(24, 8), 0xf, "TO");
    assert.equal(field(37, 8), 0xc1, "CSS: NVM, I/O command sets, admin only");
    assert.deepEqual([field(48, 4), field(52, 4)], [0, 4], "MPSMIN, MPSMAX");
    assert.equal(reg(0x08), 0x10400, "VS 1.4.0");
    assert.equal(reg(0x1c), 0, "CSTS");
  });

  test("CC.EN=1 sets CSTS.RDY, CC.EN=0 clears it and CC", async () => {
    const { reg, set, configure } = await nvme();
    configure();
    set(0x14, CC_ENTRY_SIZES); // configuration first, then enable
    assert.equal(reg(0x14), CC_ENTRY_SIZES);
    set(0x14, CC_ENTRY_SIZES | CC_EN);
    assert.equal(reg(0x1c), 1);
    set(0x14, CC_ENTRY_SIZES);
    assert.deepEqual([reg(0x14), reg(0x1c)], [0, 0]);
    // Enabled again: the admin queues were torn down with the reset.
    set(0x14, CC_ENTRY_SIZES | CC_EN);
    assert.equal(reg(0x1c), 1);
  });

  test("a configuration nvme_start_ctrl refuses sets CSTS.CFS instead", async () => {
    const misaligned = await nvme();
    misaligned.configure(0x10800n);
    misaligned.set(0x14, CC_ENTRY_SIZES | CC_EN);
    assert.equal(misaligned.reg(0x1c), 2);
    const noSizes = await nvme();
    noSizes.configure();
    noSizes.set(0x14, CC_EN);
    assert.equal(noSizes.reg(0x1c), 2);
  });

  test("shutdown completes at once; INTMS sets and INTMC clears the mask", async () => {
    const { reg, set, configure } = await nvme();
    configure();
    set(0x14, CC_ENTRY_SIZES | CC_EN);
    set(0x14, CC_ENTRY_SIZES | CC_EN | (1 << 14));
    assert.equal(reg(0x1c), 1 | (2 << 2), "RDY and SHST complete");
    set(0x0c, 0x5);
    set(0x10, 0x1);
    assert.deepEqual([reg(0x0c), reg(0x10)], [0x4, 0x4]);
    set(0x1c, 0xffffffff); // CSTS is read-only
    assert.equal(reg(0x1c), 1 | (2 << 2));
  });

  test("VFIO_DEVICE_RESET clears CC, CSTS and INTMS; AQA, ASQ and ACQ keep their values", async () => {
    const { p, dev, reg, reg64, set, configure } = await nvme();
    configure(0x30000n);
    set(0x14, CC_ENTRY_SIZES | CC_EN);
    set(0x0c, 0x1);
    assert.equal(reg(0x1c), 1);
    assert.equal(p.sys.ioctl(dev, U.VFIO_DEVICE_RESET, 0n), 0);
    p.writeLe(dev, 7, R.PCI_COMMAND, 2, R.PCI_COMMAND_MEMORY);
    assert.deepEqual([reg(0x14), reg(0x1c), reg(0x0c)], [0, 0, 0]);
    assert.deepEqual([reg(0x24), reg64(0x28), reg64(0x30)], [(31 << 16) | 31, 0x30000n, 0x20000n]);
    assert.equal(reg(0x08), 0x10400);
  });
});
