/**
 * vfio-pci regions (vfio_pci_core.c GET_REGION_INFO, vfio_pci_rdwr.c, drivers/pci/rom.c,
 * Linux 6.12): region info with the MSI-X BAR's capability chain and its argsz rules, and
 * BAR/ROM accesses as they reach a device — a logging device model stands behind the
 * e1000e (02:00.0) of the device-info snapshot.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { PciFunction } from "../../src/machine/pci/fabric.js";
import { err } from "../../src/uapi/errno.js";
import * as R from "../../src/uapi/pci_regs.js";
import * as U from "../../src/uapi/vfio.js";
import { attachModel, bootCase, Proc } from "./support.js";

const E1000E = "0000:02:00.0";
const ROM = Buffer.alloc(0x40000, 0);
ROM.writeUInt16LE(0xaa55, 0);
ROM.writeUInt16LE(0x1c, 0x18); // PCI data structure at 0x1c
ROM.write("PCIR", 0x1c, "latin1");
ROM.writeUInt16LE(0x20, 0x1c + 16); // 0x20 * 512 = 16K image
ROM.writeUInt8(0x80, 0x1c + 21); // last image
ROM.write("option rom", 0x100, "latin1");

/** Every byte of a BAR reads as the low byte of its offset; the ROM reads ROM. */
function pattern(bar: number, off: number, width: number): bigint {
  let v = 0n;
  for (let i = width - 1; i >= 0; i--)
    v = (v << 8n) | BigInt(bar === 6 ? (ROM[off + i] ?? 0xff) : (off + i) & 0xff);
  return v;
}

/** The e1000e with ROM: the logging model's (model), or a blank one. */
async function e1000e(model = true) {
  const { k, host } = await bootCase("device-info");
  (host.machine.pci.fn(0, 2, 0) as PciFunction).rom = null;
  const log = model ? attachModel(host, E1000E, pattern) : [];
  const p = new Proc(k.spawn());
  return { p, log, ...p.openDevice(E1000E) };
}

const at = (log: { bar: number; off: number; width: number }[]) =>
  log.map((a) => [a.bar, a.off, a.width]);

describe("GET_REGION_INFO", () => {
  test("BARs, ROM, config, VGA and beyond, as the real kernel answered for this e1000e", async () => {
    const { p, dev } = await e1000e();
    const rows = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => {
      const r = p.regionInfo(dev, i);
      return [r.ret, r.argsz, r.flags, r.size, r.offset];
    });
    const off = (i: number) => BigInt(i) << 40n;
    assert.deepEqual(rows, [
      [0, 32, 7, 0x20000n, off(0)],
      [0, 32, 7, 0x20000n, off(1)],
      [0, 32, 3, 0x20n, off(2)], // I/O: no mmap
      [0, 40, 15, 0x4000n, off(3)], // MSI-X BAR: CAPS, argsz for the chain
      [0, 32, 0, 0n, off(4)],
      [0, 32, 0, 0n, off(5)],
      [0, 32, 1, 0x40000n, off(6)], // a valid image behind the ROM BAR: read-only
      [0, 32, 3, 0x1000n, off(7)],
    ]);
    for (const i of [8, 9, 0xffffffff]) assert.equal(p.regionInfo(dev, i).ret, err("EINVAL"));
    assert.equal(p.regionInfo(dev, 0, 31).ret, err("EINVAL"));
  });

  test("the MSIX_MAPPABLE capability: placed at 32 when argsz holds it, else argsz asked for", async () => {
    const { p, dev } = await e1000e();
    const small = p.regionInfo(dev, 3, 39);
    assert.deepEqual([small.ret, small.argsz, small.cap_offset], [0, 40, 0]);
    assert.ok(small.caps.every((b) => b === 0));
    const fits = p.regionInfo(dev, 3, 40);
    assert.deepEqual([fits.ret, fits.argsz, fits.flags, fits.cap_offset], [0, 40, 15, 32]);
    const h = U.vfio_info_cap_header.decode(fits.caps);
    assert.deepEqual([h.id, h.version, h.next], [U.VFIO_REGION_INFO_CAP_MSIX_MAPPABLE, 1, 0]);
  });

  test("without an image behind it the ROM region has size 0", async () => {
    const { p, dev } = await e1000e(false);
    const r = p.regionInfo(dev, 6);
    assert.deepEqual([r.ret, r.flags, r.size], [0, 0, 0n]);
    assert.equal(p.read(dev, 6, 0, 4), err("ENOMEM"));
  });
});

describe("BAR access", () => {
  test("accesses are cut into naturally aligned pieces of at most 8 bytes", async () => {
    const { p, dev, log } = await e1000e();
    log.length = 0;
    assert.deepEqual([...(p.read(dev, 0, 0, 8) as Uint8Array)], [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual([...(p.read(dev, 0, 1, 3) as Uint8Array)], [1, 2, 3]);
    p.read(dev, 0, 4, 8);
    assert.deepEqual(at(log), [
      [0, 0, 8],
      [0, 1, 1],
      [0, 2, 2],
      [0, 4, 4],
      [0, 8, 4],
    ]);
    log.length = 0;
    assert.equal(p.writeLe(dev, 0, 0x10, 2, 0xbeef), 2);
    assert.deepEqual(log, [{ bar: 0, off: 0x10, width: 2, write: 0xbeefn }]);
  });

  test("8-byte port I/O is two 4-byte accesses, low half first", async () => {
    const { p, dev, log } = await e1000e();
    log.length = 0;
    assert.deepEqual([...(p.read(dev, 2, 0, 8) as Uint8Array)], [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(at(log), [
      [2, 0, 4],
      [2, 4, 4],
    ]);
  });

  test("the MSI-X table reads 0xff and drops writes; the PBA and the rest pass", async () => {
    const { p, dev, log } = await e1000e();
    log.length = 0;
    // Five vectors: the table is 0x00-0x4f of BAR3.
    const b = p.read(dev, 3, 0x48, 16) as Uint8Array;
    assert.deepEqual(
      [...b],
      [...new Array(8).fill(0xff), 0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
    );
    assert.equal(p.writeLe(dev, 3, 0x10, 4, 0), 4);
    p.read(dev, 3, 0x2000, 4);
    assert.deepEqual(at(log), [
      [3, 0x50, 8],
      [3, 0x2000, 4],
    ]);
  });

  test("memory BARs need the virtual memory enable; I/O BARs do not", async () => {
    const { p, dev } = await e1000e();
    p.writeLe(dev, 7, R.PCI_COMMAND, 2, R.PCI_COMMAND_IO);
    assert.equal(p.read(dev, 0, 0, 4), err("EIO"));
    assert.ok(p.read(dev, 2, 0, 4) instanceof Uint8Array);
    p.writeLe(dev, 7, R.PCI_COMMAND, 2, R.PCI_COMMAND_MEMORY);
    assert.ok(p.read(dev, 0, 0, 4) instanceof Uint8Array);
  });

  test("bounds: past the end EINVAL, across the end short, absent BAR EINVAL", async () => {
    const { p, dev } = await e1000e();
    assert.equal(p.read(dev, 0, 0x20000, 4), err("EINVAL"));
    assert.equal((p.read(dev, 0, 0x1fffc, 8) as Uint8Array).length, 4);
    assert.equal(p.read(dev, 4, 0, 4), err("EINVAL"));
    assert.equal(p.read(dev, 8, 0, 4), err("EINVAL")); // VGA: not a VGA device
  });
});

describe("ROM access", () => {
  test("reads the image, 0xff past it, and leaves the ROM BAR as it was", async () => {
    const { p, dev, log } = await e1000e();
    const before = p.hwConfig(E1000E, R.PCI_ROM_ADDRESS, 4);
    assert.equal(
      Buffer.from(p.read(dev, 6, 0x100, 10) as Uint8Array).toString("latin1"),
      "option rom",
    );
    log.length = 0;
    assert.deepEqual([...(p.read(dev, 6, 0x4000, 4) as Uint8Array)], [0xff, 0xff, 0xff, 0xff]);
    // Only pci_get_rom_size's header reads reached the device.
    assert.ok(log.every((a) => a.bar === 6 && a.off < 0x4000));
    assert.equal(p.hwConfig(E1000E, R.PCI_ROM_ADDRESS, 4), before);
    assert.equal(p.read(dev, 6, 0x40000, 4), err("EINVAL"));
  });
});
