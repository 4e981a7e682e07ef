/**
 * The expansion ROM region (vfio_pci_core.c vfio_pci_ioctl_get_region_info's ROM branch,
 * vfio_pci_rdwr.c vfio_pci_bar_rw, drivers/pci/rom.c pci_map_rom): the BAR's size and READ
 * when a valid image is behind it, size 0 when not; reads return the image, 0xff past it;
 * writes are refused. The image is the machine's (machine/pci/rom.ts): the smallest valid
 * one unless the host says the ROM is blank.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { hostFromText } from "../../src/host/load.js";
import { err } from "../../src/uapi/errno.js";
import * as R from "../../src/uapi/pci_regs.js";
import { bootHost } from "../../src/userspace/boot.js";
import { Proc, bootCase, testBackend } from "./support.js";

const EP = "0000:00:03.0";

function yamlHost(rom: string) {
  const k = bootHost(
    hostFromText(
      [
        "name: rom",
        "iommu: [{ kind: intel-vtd, name: dmar0 }]",
        "functions:",
        `  - { addr: "${EP}", id: "8086:10d3", class: "020000", pcie: endpoint,`,
        `      bars: [{ index: 0, size: 0x20000 }], rom: ${rom} }`,
      ].join("\n"),
      "rom.yaml",
    ),
  );
  assert.equal(k.vfio.iommuDrivers.register(testBackend), 0);
  const p = new Proc(k.spawn());
  return { p, ...p.openDevice(EP) };
}

describe("ROM region", () => {
  test("a snapshot's ROM BAR: its size and READ, the image's header and IDs", async () => {
    const { k } = await bootCase("device-info");
    const p = new Proc(k.spawn());
    const { dev } = p.openDevice("0000:02:00.0");
    const r = p.regionInfo(dev, 6);
    assert.deepEqual([r.ret, r.flags, r.size], [0, 1, 0x40000n]);
    assert.equal(p.readLe(dev, 6, 0, 2), 0xaa55);
    const pcir = p.readLe(dev, 6, 0x18, 2);
    assert.equal(Buffer.from(p.read(dev, 6, pcir, 4) as Uint8Array).toString("latin1"), "PCIR");
    // Vendor and device as the function's config space gives them.
    assert.equal(p.readLe(dev, 6, pcir + 4, 4), p.hwConfig("0000:02:00.0", R.PCI_VENDOR_ID, 4));
    assert.equal(p.readLe(dev, 6, pcir + 21, 1) & 0x80, 0x80, "last image");
    const units = p.readLe(dev, 6, pcir + 16, 2);
    const image = p.read(dev, 6, 0, units * 512) as Uint8Array;
    assert.equal(image.reduce((s, b) => s + b, 0) % 256, 0, "the image checksums to 0");
    assert.deepEqual([...(p.read(dev, 6, units * 512, 4) as Uint8Array)], [0xff, 0xff, 0xff, 0xff]);
    assert.equal(p.write(dev, 6, 0, new Uint8Array([0, 0])), err("EINVAL"));
    assert.equal(p.readLe(dev, 6, 0, 2), 0xaa55);
  });

  test("a described ROM BAR holds the smallest valid image unless it is blank", () => {
    const valid = yamlHost("0x10000");
    const r = valid.p.regionInfo(valid.dev, 6);
    assert.deepEqual([r.ret, r.flags, r.size], [0, 1, 0x10000n]);
    assert.equal(valid.p.readLe(valid.dev, 6, 0, 2), 0xaa55);

    const blank = yamlHost("{ size: 0x10000, image: blank }");
    const b = blank.p.regionInfo(blank.dev, 6);
    assert.deepEqual([b.ret, b.flags, b.size], [0, 0, 0n]);
    assert.equal(blank.p.read(blank.dev, 6, 0, 4), err("ENOMEM"));
  });

  test("the ROM decodes only while its enable bit and memory space are on", async () => {
    const { k, host } = await bootCase("device-info");
    const p = new Proc(k.spawn());
    p.openDevice("0000:02:00.0");
    const pci = host.machine.pci;
    const fn = pci.fn(0, 2, 0);
    assert.ok(fn);
    const bar = fn.config.read(R.PCI_ROM_ADDRESS, 4);
    fn.config.write(R.PCI_ROM_ADDRESS, 4, bar & ~R.PCI_ROM_ADDRESS_ENABLE);
    assert.equal(pci.mmioRead(0, 2, 0, 6, 0, 2), 0xffffn);
    fn.config.write(R.PCI_ROM_ADDRESS, 4, bar | R.PCI_ROM_ADDRESS_ENABLE);
    assert.equal(pci.mmioRead(0, 2, 0, 6, 0, 2), 0xaa55n);
    const cmd = fn.config.read(R.PCI_COMMAND, 2);
    fn.config.write(R.PCI_COMMAND, 2, cmd & ~R.PCI_COMMAND_MEMORY);
    assert.equal(pci.mmioRead(0, 2, 0, 6, 0, 2), 0xffffn);
  });

  test("a malformed ROM entry is a located input error", () => {
    assert.throws(() => yamlHost("{ size: 0x10000, image: garbage }"), /rom/);
  });
});
