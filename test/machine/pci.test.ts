/**
 * The PCI machine as hardware behaves: read-only registers ignore writes, BARs size by
 * the all-ones write, config cycles follow bridge bus ranges, SR-IOV VFs appear at
 * PF RID + offset + i * stride when VF Enable is set (PCIe 6.0 §9.3.3) and read 0xffff IDs.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { buildConfigSpace } from "../../src/machine/pci/builder.js";
import { PciFabric } from "../../src/machine/pci/fabric.js";
import * as R from "../../src/uapi/pci_regs.js";

function fabric() {
  const f = new PciFabric();
  const root = f.addRoot(0, 0);
  const port = f.attach(
    root,
    R.PCI_DEVFN(1, 0),
    buildConfigSpace({
      header: "bridge",
      pcieTypeCode: 4,
      secondary: 1,
      subordinate: 2,
      primary: 0,
    }),
  );
  const bus1 = f.link(port);
  const nic = f.attach(
    bus1,
    0,
    buildConfigSpace({
      id: { vendor: 0x8086, device: 0x1572 },
      class: 0x020000,
      pcieTypeCode: 0,
      sriov: { total: 8, offset: 0x80, stride: 0x40, vfDevice: 0x154c },
      bars: [
        { index: 0, size: 0x100000, kind: "mem64", prefetchable: true },
        { index: 2, size: 0x20, kind: "io", prefetchable: false },
      ],
    }),
  );
  return { f, port, nic };
}

test("read-only registers ignore writes; BARs report their size", () => {
  const { f } = fabric();
  f.write(0, 1, 0, R.PCI_VENDOR_ID, 2, 0x1234);
  assert.equal(f.read(0, 1, 0, R.PCI_VENDOR_ID, 2), 0x8086);
  f.write(0, 1, 0, R.PCI_BASE_ADDRESS_0, 4, 0xffffffff);
  f.write(0, 1, 0, R.PCI_BASE_ADDRESS_0 + 4, 4, 0xffffffff);
  // 1 MiB, 64-bit, prefetchable: 0xfff0000c, upper dword all ones.
  assert.equal(f.read(0, 1, 0, R.PCI_BASE_ADDRESS_0, 4), 0xfff0000c);
  assert.equal(f.read(0, 1, 0, R.PCI_BASE_ADDRESS_0 + 4, 4), 0xffffffff);
  f.write(0, 1, 0, R.PCI_BASE_ADDRESS_0 + 8, 4, 0xffffffff);
  assert.equal(f.read(0, 1, 0, R.PCI_BASE_ADDRESS_0 + 8, 4), 0xffffffe1);
});

test("config cycles follow the bridge's bus range; nothing answers elsewhere", () => {
  const { f } = fabric();
  assert.equal(f.read(0, 1, 0, R.PCI_VENDOR_ID, 2), 0x8086);
  assert.equal(f.read(0, 3, 0, R.PCI_VENDOR_ID, 2), 0xffff);
  assert.equal(f.read(0, 1, 8, R.PCI_VENDOR_ID, 4), 0xffffffff);
  // Renumber the bridge: the device now answers on bus 5 only.
  f.write(0, 0, R.PCI_DEVFN(1, 0), R.PCI_SUBORDINATE_BUS, 1, 5);
  f.write(0, 0, R.PCI_DEVFN(1, 0), R.PCI_SECONDARY_BUS, 1, 5);
  assert.equal(f.read(0, 1, 0, R.PCI_VENDOR_ID, 2), 0xffff);
  assert.equal(f.read(0, 5, 0, R.PCI_VENDOR_ID, 2), 0x8086);
});

test("VF Enable makes VFs appear at their routing IDs, with 0xffff IDs; clearing removes them", () => {
  const { f, nic } = fabric();
  const sriov = 0x100; // the builder's first extended capability
  assert.equal(nic.config.read(sriov, 4) & 0xffff, R.PCI_EXT_CAP_ID_SRIOV);
  f.write(0, 1, 0, sriov + R.PCI_SRIOV_NUM_VF, 2, 3);
  f.write(0, 1, 0, sriov + R.PCI_SRIOV_CTRL, 2, R.PCI_SRIOV_CTRL_VFE);
  // RID 01:00.0 + 0x80 + i * 0x40: 01:10.0, 01:18.0, 02:00.0 (carries into bus 2).
  assert.equal(f.read(0, 1, R.PCI_DEVFN(0x10, 0), R.PCI_VENDOR_ID, 4), 0xffffffff);
  assert.equal(f.read(0, 1, R.PCI_DEVFN(0x10, 0), R.PCI_CLASS_REVISION, 4) >>> 8, 0x020000);
  assert.ok(f.fn(0, 1, R.PCI_DEVFN(0x18, 0)));
  assert.ok(f.fn(0, 2, 0));
  assert.equal(nic.vfs.length, 3);
  f.write(0, 1, 0, sriov + R.PCI_SRIOV_CTRL, 2, 0);
  assert.equal(nic.vfs.length, 0);
  assert.equal(f.fn(0, 1, R.PCI_DEVFN(0x10, 0)), undefined);
});
