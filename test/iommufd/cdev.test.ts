/**
 * The VFIO device cdev with iommufd (conformance catalog §10, CDEV) on the oracle's iommufd
 * kernel: bind, access before bind, argument errors, double bind, attach/detach, exclusion
 * of the group path, the KVM pointer handed over at bind, and what closing undoes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { err } from "../../src/uapi/errno.js";
import * as I from "../../src/uapi/iommufd.js";
import * as K from "../../src/uapi/kvm.js";
import * as V from "../../src/uapi/vfio.js";
import { bootIommufd, E1000E, holdings, NVME, PAGE, Proc } from "./support.js";

async function setup() {
  const k = await bootIommufd();
  const p = Proc.spawn(k);
  const cdevPath = p.toVfio(E1000E);
  const group = `/dev/vfio/${p.groupOf(E1000E)}`;
  const iommufd = p.open("/dev/iommu");
  return { k, p, cdevPath, group, iommufd };
}

const info = (p: Proc, dev: number) =>
  p.cmd(dev, V.VFIO_DEVICE_GET_INFO, V.vfio_device_info, {}).ret;

test("CDEV-001 bind then use", async () => {
  const { p, cdevPath, iommufd } = await setup();
  const dev = p.open(cdevPath);
  const b = p.bind(dev, iommufd);
  assert.equal(b.ret, 0);
  assert.ok(b.out.out_devid > 0);
  assert.equal(info(p, dev), 0);
  // out_devid names the device object: GET_HW_INFO takes it
  const hw = p.cmd(iommufd, I.IOMMU_GET_HW_INFO, I.iommu_hw_info, { dev_id: b.out.out_devid });
  assert.deepEqual(
    [hw.ret, hw.out.out_data_type, hw.out.data_len],
    [0, I.IOMMU_HW_INFO_TYPE_INTEL_VTD, 24],
  );
});

test("CDEV-002 nothing but BIND before bind: ioctls, read and write are EINVAL", async () => {
  const { p, cdevPath } = await setup();
  const dev = p.open(cdevPath);
  assert.equal(info(p, dev), err("EINVAL"));
  assert.equal(p.sys.ioctl(dev, V.VFIO_DEVICE_RESET, 0n), err("EINVAL"));
  assert.equal(p.sys.pread(dev, p.buf, 4, 7n << 40n), err("EINVAL"));
  assert.equal(p.sys.pwrite(dev, p.buf, 4, 7n << 40n), err("EINVAL"));
  assert.equal(p.attach(dev, 1).ret, err("EINVAL"));
});

test("CDEV-003 bind argument errors, in order", async () => {
  const { p, cdevPath, iommufd } = await setup();
  const dev = p.open(cdevPath);
  const C = V.vfio_device_bind_iommufd;
  assert.equal(p.cmd(dev, V.VFIO_DEVICE_BIND_IOMMUFD, C, { iommufd: -2 }).ret, err("EINVAL"));
  assert.equal(
    p.cmd(dev, V.VFIO_DEVICE_BIND_IOMMUFD, C, { argsz: 15, iommufd }).ret,
    err("EINVAL"),
  );
  assert.equal(p.cmd(dev, V.VFIO_DEVICE_BIND_IOMMUFD, C, { flags: 1, iommufd }).ret, err("EINVAL"));
  assert.equal(p.bind(dev, 999).ret, err("EBADF"));
  const ev = p.sys.eventfd(0, 0);
  assert.equal(p.bind(dev, ev).ret, err("EBADFD"));
  const container = p.open("/dev/vfio/vfio");
  assert.equal(p.bind(dev, container).ret, 0, "on this kernel /dev/vfio/vfio is an iommufd");
  assert.equal(p.sys.ioctl(dev, V.VFIO_DEVICE_BIND_IOMMUFD, 0n), err("EFAULT"));
});

test("CDEV-004 a second bind, through the same fd or another, is EINVAL", async () => {
  const { p, cdevPath, iommufd } = await setup();
  const dev = p.open(cdevPath);
  assert.equal(p.bind(dev, iommufd).ret, 0);
  assert.equal(p.bind(dev, iommufd).ret, err("EINVAL"));
  const other = p.open("/dev/iommu");
  assert.equal(p.bind(dev, other).ret, err("EINVAL"));
  const dev2 = p.open(cdevPath);
  assert.ok(dev2 >= 0, "any number of opens");
  assert.equal(p.bind(dev2, other).ret, err("EINVAL"), "the cdev path cannot share an open device");
  assert.equal(info(p, dev2), err("EINVAL"));
  assert.equal(info(p, dev), 0, "the first binding is unaffected");
});

test("CDEV-005…007 attach, replace, detach, and their argument rules", async () => {
  const { p, cdevPath, iommufd } = await setup();
  const dev = p.open(cdevPath);
  const devid = p.bind(dev, iommufd).out.out_devid;
  const a = p.ioasAlloc(iommufd);
  const b = p.ioasAlloc(iommufd);
  const att = p.attach(dev, a);
  assert.equal(att.ret, 0);
  const hwptA = att.out.pt_id;
  assert.notEqual(hwptA, a, "pt_id comes back as the automatic HWPT");
  assert.equal(p.attach(dev, 0xffffffff).ret, err("ENOENT"));
  assert.equal(p.attach(dev, devid).ret, err("EINVAL"), "a device id");
  const AC = V.vfio_device_attach_iommufd_pt;
  assert.equal(
    p.cmd(dev, V.VFIO_DEVICE_ATTACH_IOMMUFD_PT, AC, { argsz: 11, pt_id: a }).ret,
    err("EINVAL"),
  );
  assert.equal(
    p.cmd(dev, V.VFIO_DEVICE_ATTACH_IOMMUFD_PT, AC, { flags: 1, pt_id: a }).ret,
    err("EINVAL"),
  );
  const rep = p.attach(dev, b);
  assert.equal(rep.ret, 0, "a second attach replaces");
  assert.equal(p.destroy(iommufd, hwptA), err("ENOENT"), "the old automatic HWPT went");
  assert.equal(p.attach(dev, rep.out.pt_id).out.pt_id, rep.out.pt_id, "same HWPT: nothing");
  const DC = V.vfio_device_detach_iommufd_pt;
  assert.equal(p.cmd(dev, V.VFIO_DEVICE_DETACH_IOMMUFD_PT, DC, { argsz: 7 }).ret, err("EINVAL"));
  assert.equal(p.cmd(dev, V.VFIO_DEVICE_DETACH_IOMMUFD_PT, DC, { flags: 1 }).ret, err("EINVAL"));
  assert.equal(p.detach(dev).ret, 0);
  assert.equal(p.detach(dev).ret, 0, "not attached: nothing to do");
  assert.equal(p.destroy(iommufd, b), 0);
  assert.equal(p.destroy(iommufd, a), 0);
});

test("CDEV-006 a group-obtained device file cannot use the cdev requests", async () => {
  const { p, group, iommufd } = await setup();
  const g = p.open(group);
  p.poke(0, Uint8Array.of(iommufd, 0, 0, 0));
  assert.equal(p.sys.ioctl(g, V.VFIO_GROUP_SET_CONTAINER, p.buf), 0);
  p.poke(0, Buffer.from(`${E1000E}\0`));
  const dev = p.sys.ioctl(g, V.VFIO_GROUP_GET_DEVICE_FD, p.buf);
  assert.ok(dev >= 0);
  assert.equal(p.bind(dev, iommufd).ret, err("EINVAL"));
  assert.equal(p.attach(dev, 1).ret, err("ENOTTY"), "vfio-pci does not know it");
});

test("CDEV-008 the group path and the cdev path exclude each other", async () => {
  const { p, cdevPath, group, iommufd } = await setup();
  const g = p.open(group);
  const dev = p.open(cdevPath);
  assert.equal(p.bind(dev, iommufd).ret, err("EBUSY"));
  assert.equal(p.sys.close(g), 0);
  assert.equal(p.bind(dev, iommufd).ret, 0);
  assert.equal(p.open(group), err("EBUSY"));
  assert.equal(p.sys.close(dev), 0);
  assert.ok(p.open(group) >= 0);
});

test("CDEV-009 the VM recorded on the file before BIND reaches the device; after, nothing changes", async () => {
  const { k, p, cdevPath, iommufd } = await setup();
  const kvm = p.open("/dev/kvm");
  const vm = p.sys.ioctl(kvm, K.KVM_CREATE_VM, 0n);
  const cd = p.cmd(vm, K.KVM_CREATE_DEVICE, K.kvm_create_device, { type: K.KVM_DEV_TYPE_VFIO });
  assert.equal(cd.ret, 0);
  const kv = cd.out.fd;
  const fileAdd = (fd: number) => {
    const payload = p.buf + 0x40000n;
    p.sys.poke(payload, Uint8Array.of(fd, 0, 0, 0));
    return p.cmd(kv, K.KVM_SET_DEVICE_ATTR, K.kvm_device_attr, {
      flags: 0,
      group: K.KVM_DEV_VFIO_FILE,
      attr: BigInt(K.KVM_DEV_VFIO_FILE_ADD),
      addr: payload,
    }).ret;
  };
  const vdev = () => k.vfio.groupOf(k.iommu.groupOf(k.pci.get(E1000E)!)!)!.devices[0]!;
  const dev = p.open(cdevPath);
  assert.equal(fileAdd(dev), 0, "accepted before bind");
  assert.equal(vdev().kvm, null);
  assert.equal(p.bind(dev, iommufd).ret, 0);
  assert.notEqual(vdev().kvm, null, "open_device saw the VM");
  assert.equal(p.sys.close(dev), 0);
  // kvm-vfio still holds the file: the device stays bound and open
  assert.notEqual(vdev().kvm, null);
  // A second file's bind fails (the cdev path opens a device once) and, as in the kernel,
  // its vfio_device_put_kvm() drops the VM the first file's bind gave the device.
  const dev2 = p.open(cdevPath);
  assert.equal(p.bind(dev2, iommufd).ret, err("EINVAL"));
  assert.equal(vdev().kvm, null);
  assert.equal(vdev().openCount, 1);
  assert.equal(p.sys.close(kv), 0);
  assert.equal(vdev().openCount, 0, "kvm-vfio let go of the first file: unbound");
  // the other order: bind first, FILE_ADD later; the open device never sees the VM
  const dev3 = p.open(cdevPath);
  assert.equal(p.bind(dev3, iommufd).ret, 0);
  const cd2 = p.cmd(vm, K.KVM_CREATE_DEVICE, K.kvm_create_device, { type: K.KVM_DEV_TYPE_VFIO });
  assert.equal(cd2.ret, 0);
  const kv2 = cd2.out.fd;
  const payload = p.buf + 0x40000n;
  p.sys.poke(payload, Uint8Array.of(dev3, 0, 0, 0));
  const add = p.cmd(kv2, K.KVM_SET_DEVICE_ATTR, K.kvm_device_attr, {
    flags: 0,
    group: K.KVM_DEV_VFIO_FILE,
    attr: BigInt(K.KVM_DEV_VFIO_FILE_ADD),
    addr: payload,
  });
  assert.equal(add.ret, 0);
  assert.equal(vdev().kvm, null);
});

test("CDEV-010 closing the cdev detaches and unbinds; the IOAS is then free", async () => {
  const { k, p, cdevPath, iommufd } = await setup();
  const base = holdings(k);
  const buf = p.mmap(16 * 4096);
  p.touch(buf, 16 * 4096);
  const frames = k.pages.inUse;
  const dev = p.open(cdevPath);
  const devid = p.bind(dev, iommufd).out.out_devid;
  const ioas = p.ioasAlloc(iommufd);
  assert.equal(p.attach(dev, ioas).ret, 0);
  assert.equal(p.map(iommufd, ioas, buf, 16n * PAGE, 0x100000n).ret, 0);
  assert.equal(p.destroy(iommufd, ioas), err("EBUSY"));
  assert.equal(p.destroy(iommufd, devid), err("EBUSY"), "the driver owns the device object");
  assert.ok(k.pages.inUse > frames, "pages pinned and page tables built");
  assert.equal(p.sys.close(dev), 0);
  assert.equal(p.destroy(iommufd, devid), err("ENOENT"));
  assert.equal(p.unmap(iommufd, ioas, 0n, (1n << 64n) - 1n).out.length, 16n * PAGE);
  assert.equal(p.destroy(iommufd, ioas), 0);
  assert.equal(k.pages.inUse, frames, "no pin, no page table left");
  assert.deepEqual(holdings(k), { ...base, frames });
});

test("closing the iommufd while a device is bound keeps the context for the device", async () => {
  const { k, p, cdevPath, iommufd } = await setup();
  const dev = p.open(cdevPath);
  assert.equal(p.bind(dev, iommufd).ret, 0);
  assert.equal(p.sys.close(iommufd), 0);
  assert.equal(k.iommufd?.contexts.size, 1);
  assert.equal(info(p, dev), 0);
  assert.equal(p.sys.close(dev), 0);
  assert.equal(k.iommufd?.contexts.size, 0, "the last reference went with the device");
});

test("/dev/vfio/devices and /sys/class/vfio-dev follow vfio-pci's registration", async () => {
  const { p, cdevPath } = await setup();
  const name = cdevPath.split("/").pop() as string;
  assert.match(
    String(p.sys.readlink(`/sys/class/vfio-dev/${name}`)),
    new RegExp(`/${E1000E}/vfio-dev/${name}$`),
  );
  p.sysfsWrite(`/sys/bus/pci/devices/${E1000E}/driver/unbind`, E1000E);
  assert.equal(p.open(cdevPath), err("ENOENT"));
  assert.equal(p.sys.readlink(`/sys/class/vfio-dev/${name}`), err("ENOENT"));
});

test("the Debian build has no cdev: BIND_IOMMUFD on a device fd is ENOTTY", async () => {
  const { loadHost } = await import("../../src/host/load.js");
  const { bootHost } = await import("../../src/userspace/boot.js");
  const { join } = await import("node:path");
  const { CASES } = await import("./support.js");
  const k = bootHost(await loadHost(join(CASES, "container-state", "snapshot.tar.gz")));
  assert.equal(k.iommufd, null);
  const p = Proc.spawn(k);
  assert.equal(p.open("/dev/iommu"), err("ENOENT"));
  const bdf = "0000:02:00.0";
  p.sysfsWrite(`/sys/bus/pci/devices/${bdf}/driver_override`, "vfio-pci");
  p.sysfsWrite(`/sys/bus/pci/devices/${bdf}/driver/unbind`, bdf);
  p.sysfsWrite("/sys/bus/pci/drivers_probe", bdf);
  assert.equal(p.sys.readlink("/sys/class/vfio-dev/vfio0"), err("ENOENT"));
  const c = p.open("/dev/vfio/vfio");
  const g = p.open(`/dev/vfio/${p.groupOf(bdf)}`);
  p.poke(0, Uint8Array.of(c, 0, 0, 0));
  assert.equal(p.sys.ioctl(g, V.VFIO_GROUP_SET_CONTAINER, p.buf), 0);
  assert.equal(p.sys.ioctl(c, V.VFIO_SET_IOMMU, BigInt(V.VFIO_TYPE1v2_IOMMU)), 0);
  p.poke(0, Buffer.from(`${bdf}\0`));
  const dev = p.sys.ioctl(g, V.VFIO_GROUP_GET_DEVICE_FD, p.buf);
  assert.ok(dev >= 0);
  assert.equal(p.bind(dev, c).ret, err("ENOTTY"));
});

test(
  "attaching to an IOAS whose area is far larger than the memory behind it fails at its first hole",
  { timeout: 5_000 },
  async () => {
    // Without a domain IOAS_MAP pins nothing; the attach fills the new domain and pins the
    // area then, a batch at a time (pfn_reader_user_pin), so EFAULT comes at once.
    const k = await bootIommufd();
    const p = Proc.spawn(k);
    const iommufd = p.open("/dev/iommu");
    const dev = p.open(p.toVfio(NVME));
    assert.equal(p.bind(dev, iommufd).ret, 0);
    const ioas = p.ioasAlloc(iommufd);
    const buf = p.mmap(4096);
    p.touch(buf, 4096);
    assert.equal(
      p.map(iommufd, ioas, buf, 1n << 36n, 1n << 33n).ret,
      0,
      "no domain: nothing pinned",
    );
    assert.equal(p.attach(dev, ioas).ret, err("EFAULT"));
    assert.equal(p.attach(dev, ioas).ret, err("EFAULT"), "nothing left half-attached");
  },
);
