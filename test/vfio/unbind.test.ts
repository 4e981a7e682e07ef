/**
 * Unbinding vfio-pci while the device is open (vfio_pci_core_unregister_device →
 * vfio_unregister_group_dev, drivers/vfio/vfio_main.c, Linux 6.12): the `driver` link goes
 * first (driver_sysfs_remove), the device leaves its group's list (GET_DEVICE_FD is ENODEV),
 * the user is asked for it through the REQ eventfd (vfio_pci_core_request), the open files
 * keep working, and the unbind completes with the last close.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { err } from "../../src/uapi/errno.js";
import * as R from "../../src/uapi/pci_regs.js";
import * as U from "../../src/uapi/vfio.js";
import { bootCase, eventfds, Proc } from "./support.js";

const NVME = "0000:01:00.0";
const TRIGGER_EVENTFD = U.VFIO_IRQ_SET_ACTION_TRIGGER | U.VFIO_IRQ_SET_DATA_EVENTFD;

async function opened() {
  const { k } = await bootCase("device-info");
  const p = new Proc(k.spawn());
  const o = p.openDevice(NVME);
  const vendor = parseInt(p.sysfsRead(`/sys/bus/pci/devices/${NVME}/vendor`) as string, 16);
  const unbind = () => p.sysfsWrite(`/sys/bus/pci/devices/${NVME}/driver/unbind`, NVME);
  const getFd = () => p.ioctl(o.group, U.VFIO_GROUP_GET_DEVICE_FD, Buffer.from(`${NVME}\0`));
  const enable = () => p.sysfsRead(`/sys/bus/pci/devices/${NVME}/enable`);
  return { p, ...o, vendor, unbind, getFd, enable };
}

test("the unbind asks through the REQ eventfd and completes at the last close", async () => {
  const { p, dev, vendor, unbind, getFd, enable } = await opened();
  const req = p.eventfd();
  assert.equal(
    p.setIrqs(dev, TRIGGER_EVENTFD, U.VFIO_PCI_REQ_IRQ_INDEX, 0, 1, eventfds(req.fd)),
    0,
  );
  const dev2 = getFd();
  assert.ok(dev2 >= 0);
  assert.equal(unbind(), NVME.length);
  assert.equal(req.drain(), 1n);
  assert.equal(p.driver(NVME), undefined);
  assert.equal(getFd(), err("ENODEV"));
  // Both files still reach the device.
  assert.equal(p.readLe(dev, U.VFIO_PCI_CONFIG_REGION_INDEX, R.PCI_VENDOR_ID, 2), vendor);
  assert.equal(p.readLe(dev2, U.VFIO_PCI_CONFIG_REGION_INDEX, R.PCI_VENDOR_ID, 2), vendor);
  assert.equal(enable(), "1\n");
  // Still releasing (dev->driver is set): drivers_probe finds it taken, a second unbind
  // is one more writer waiting for the same release.
  assert.equal(p.sysfsWrite("/sys/bus/pci/drivers_probe", NVME), NVME.length);
  assert.equal(p.driver(NVME), undefined);
  assert.equal(p.sysfsWrite("/sys/bus/pci/drivers/vfio-pci/unbind", NVME), NVME.length);
  assert.equal(req.drain(), 0n);
  assert.equal(p.sys.close(dev), 0);
  assert.equal(p.sysfsWrite("/sys/bus/pci/drivers_probe", NVME), NVME.length);
  assert.equal(p.driver(NVME), undefined);
  assert.equal(req.drain(), 0n);
  assert.equal(p.sys.close(dev2), 0);
  // Released: close_device ran, and the device may be bound again.
  assert.equal(enable(), "0\n");
  assert.equal(p.sysfsWrite("/sys/bus/pci/drivers_probe", NVME), NVME.length);
  assert.equal(p.driver(NVME), "vfio-pci");
});

test("without a REQ eventfd nothing is signalled; a device without open files unbinds at once", async () => {
  const { p, dev, unbind } = await opened();
  const req = p.eventfd();
  assert.equal(unbind(), NVME.length);
  assert.equal(req.drain(), 0n);
  assert.equal(p.driver(NVME), undefined);
  assert.equal(p.sys.close(dev), 0);
  assert.equal(p.sysfsWrite("/sys/bus/pci/drivers_probe", NVME), NVME.length);
  assert.equal(p.driver(NVME), "vfio-pci");
  assert.equal(unbind(), NVME.length);
  assert.equal(p.sysfsWrite("/sys/bus/pci/drivers_probe", NVME), NVME.length);
  assert.equal(p.driver(NVME), "vfio-pci");
});
