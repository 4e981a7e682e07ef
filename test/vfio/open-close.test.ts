/**
 * vfio-pci open_device / close_device (vfio_pci_core_enable / _disable, Linux 6.12) as the
 * device and sysfs show them: pci_enable_device's count, bus mastering off at open
 * (VST-006), the state saved at open restored at close, the bridges above enabled.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as R from "../../src/uapi/pci_regs.js";
import * as U from "../../src/uapi/vfio.js";
import { bootCase, Proc } from "./support.js";

const NVME = "0000:01:00.0";
/** Device Control 2 End-End TLP Prefix Blocking (QEMU: PCI_EXP_DEVCTL2_EETLPPB). */
const EETLPPB = 0x8000;

test("VST-006: IDs as sysfs has them, bus mastering off after open, Master settable", async () => {
  const { k } = await bootCase("device-info");
  const p = new Proc(k.spawn());
  const { dev } = p.openDevice(NVME);
  const sysId = (f: string) =>
    parseInt(p.sysfsRead(`/sys/bus/pci/devices/${NVME}/${f}`) as string, 16);
  assert.equal(p.readLe(dev, 7, R.PCI_VENDOR_ID, 2), sysId("vendor"));
  assert.equal(p.readLe(dev, 7, R.PCI_DEVICE_ID, 2), sysId("device"));
  const cmd = () => p.readLe(dev, 7, R.PCI_COMMAND, 2);
  assert.equal(cmd() & R.PCI_COMMAND_MASTER, 0);
  p.writeLe(dev, 7, R.PCI_COMMAND, 2, cmd() | R.PCI_COMMAND_MASTER);
  assert.equal(cmd() & R.PCI_COMMAND_MASTER, R.PCI_COMMAND_MASTER);
  p.writeLe(dev, 7, R.PCI_COMMAND, 2, cmd() & ~R.PCI_COMMAND_MASTER);
  assert.equal(cmd() & R.PCI_COMMAND_MASTER, 0);
});

test("enable counts the open; close restores the saved state and disables", async () => {
  const { k } = await bootCase("device-info");
  const p = new Proc(k.spawn());
  const enable = () => p.sysfsRead(`/sys/bus/pci/devices/${NVME}/enable`);
  // Device Control 2: its End-End TLP Prefix Blocking is the one PCIe control bit QEMU's
  // NVMe lets software set (pcie_cap_init), so it shows a restore.
  const devctl2 = 0x80 + R.PCI_EXP_DEVCTL2;
  p.bind(NVME);
  assert.equal(enable(), "0\n");
  const { dev, group } = p.openDevice(NVME);
  assert.equal(enable(), "1\n");
  // A second fd is no second open.
  p.poke(0, Buffer.from(`${NVME}\0`));
  const dev2 = p.sys.ioctl(group, U.VFIO_GROUP_GET_DEVICE_FD, p.buf);
  assert.equal(enable(), "1\n");
  const saved = p.hwConfig(NVME, devctl2, 2);
  p.writeLe(dev, 7, devctl2, 2, EETLPPB);
  p.writeLe(dev, 7, R.PCI_COMMAND, 2, 0x0006);
  assert.equal(p.hwConfig(NVME, devctl2, 2), EETLPPB);
  p.sys.close(dev);
  assert.equal(enable(), "1\n");
  p.sys.close(dev2);
  assert.equal(enable(), "0\n");
  assert.equal(p.hwConfig(NVME, devctl2, 2), saved);
  // The Command saved at open (memory and I/O decoding, no bus mastering).
  assert.equal(p.hwConfig(NVME, R.PCI_COMMAND, 2), 0x0103);
});

test("opening a device behind driverless bridges enables them", async () => {
  const { k } = await bootCase("group-legacy-bridge");
  const p = new Proc(k.spawn());
  for (const b of ["0000:02:01.0", "0000:02:02.0", "0000:02:03.0"]) p.bind(b);
  const enable = (b: string) => p.sysfsRead(`/sys/bus/pci/devices/${b}/enable`);
  p.openDevice("0000:03:01.0");
  assert.equal(enable("0000:02:04.0"), "1\n");
  assert.equal(enable("0000:01:00.0"), "1\n");
  assert.ok(p.hwConfig("0000:02:04.0", R.PCI_COMMAND, 2) & R.PCI_COMMAND_MASTER);
});
