/**
 * Cache coherency with iommufd and the device cdev (issue item 3; kernel-spec §6.7–6.8):
 * a HWPT's coherency is fixed when it is made, from the device it is made for; VT-d then
 * refuses a device without Snoop Control on a HWPT that forces snooping, while a HWPT made
 * for such a device does not force snooping and accepts any device. KVM, given a device
 * cdev, asks the device (vfio_file_enforced_coherent: IOMMU_CAP_ENFORCE_CACHE_COHERENCY),
 * not the HWPT it uses: a capable device on a non-snooping HWPT is counted as coherent.
 * The model reproduces that gap (Linux 6.12 behaviour), and the compat container's
 * VFIO_DMA_CC_IOMMU, which asks the HWPTs, disagrees with KVM about the same device.
 *
 * The host has two VT-d units, one with ECAP.SC and one without (QEMU has a single
 * intel-iommu, so this cannot be recorded on the oracle).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Kernel } from "../../src/kernel/kernel.js";
import type { HwptPaging } from "../../src/kernel/iommufd/hw_pagetable.js";
import type { IommufdCtx } from "../../src/kernel/iommufd/main.js";
import { err } from "../../src/uapi/errno.js";
import * as I from "../../src/uapi/iommufd.js";
import * as K from "../../src/uapi/kvm.js";
import * as V from "../../src/uapi/vfio.js";
import { bindSnoopPair, type Proc } from "./support.js";

function boot() {
  const { k, p, fd, sc, nosc, devid } = bindSnoopPair("coherency");
  const ctx = p.sys.task.files.get(fd)?.priv as IommufdCtx;
  const hwpt = (id: number) => ctx.objects.get(id) as HwptPaging;
  return { k, p, fd, sc, nosc, devid, hwpt };
}

/** The one VM of the test with a kvm-vfio device; FILE_ADD of fds; its noncoherent count. */
function vm(p: Proc, k: Kernel) {
  const kvm = p.open("/dev/kvm");
  const vmfd = p.sys.ioctl(kvm, K.KVM_CREATE_VM, 0n);
  const kv = p.cmd(vmfd, K.KVM_CREATE_DEVICE, K.kvm_create_device, { type: K.KVM_DEV_TYPE_VFIO })
    .out.fd;
  assert.equal(k.debug.vms().length, 1);
  return {
    add(fd: number) {
      const payload = p.buf + 0x40000n;
      p.sys.poke(payload, Uint8Array.of(fd, 0, 0, 0));
      return p.cmd(kv, K.KVM_SET_DEVICE_ATTR, K.kvm_device_attr, {
        flags: 0,
        group: K.KVM_DEV_VFIO_FILE,
        attr: BigInt(K.KVM_DEV_VFIO_FILE_ADD),
        addr: payload,
      }).ret;
    },
    noncoherent: () => (k.debug.vms()[0] as { noncoherentDmaCount: number }).noncoherentDmaCount,
  };
}

test("a HWPT made for a device with Snoop Control forces snooping and refuses one without", async () => {
  const { p, fd, sc, nosc, devid, hwpt } = boot();
  const ioas = p.ioasAlloc(fd);
  const h = p.hwptAlloc(fd, devid.sc, ioas);
  assert.equal(h.ret, 0);
  assert.equal(hwpt(h.out.out_hwpt_id).enforceCacheCoherency, true);
  assert.equal(p.attach(sc, h.out.out_hwpt_id).ret, 0);
  assert.equal(
    p.attach(nosc, h.out.out_hwpt_id).ret,
    err("EINVAL"),
    "intel: force_snooping && !SC",
  );
  // Attached to the IOAS, the device without SC gets an automatic HWPT of its own.
  const auto = p.attach(nosc, ioas);
  assert.equal(auto.ret, 0);
  assert.notEqual(auto.out.pt_id, h.out.out_hwpt_id);
  assert.equal(hwpt(auto.out.pt_id).enforceCacheCoherency, false);
});

test("the gap: a capable device on a non-snooping HWPT is coherent to KVM, not to DMA_CC", async () => {
  const { k, p, fd, sc, nosc, devid, hwpt } = boot();
  const ioas = p.ioasAlloc(fd);
  const h = p.hwptAlloc(fd, devid.nosc, ioas);
  assert.equal(h.ret, 0);
  const hn = h.out.out_hwpt_id;
  assert.equal(hwpt(hn).enforceCacheCoherency, false, "made for the device without SC");
  assert.equal(p.attach(nosc, hn).ret, 0);
  assert.equal(p.attach(sc, hn).ret, 0, "a non-coherent HWPT accepts the capable device");
  // KVM asks the device: coherent, so no noncoherent DMA is registered.
  const v = vm(p, k);
  assert.equal(v.add(sc), 0);
  assert.equal(v.noncoherent(), 0, "the device with SC is counted coherent");
  // The compat layer asks the HWPTs of the IOAS: not coherent.
  assert.equal(
    p.cmd(fd, I.IOMMU_VFIO_IOAS, I.iommu_vfio_ioas, { op: I.IOMMU_VFIO_IOAS_SET, ioas_id: ioas })
      .ret,
    0,
  );
  assert.equal(p.sys.ioctl(fd, V.VFIO_CHECK_EXTENSION, BigInt(V.VFIO_DMA_CC_IOMMU)), 0);
  // The device without SC is non-coherent to KVM either way.
  assert.equal(v.add(nosc), 0);
  assert.equal(v.noncoherent(), 1);
});

test("KVM's verdict does not follow a replace: it was taken at FILE_ADD from the device", async () => {
  const { k, p, fd, sc, devid, hwpt } = boot();
  const ioas = p.ioasAlloc(fd);
  const v = vm(p, k);
  assert.equal(v.add(sc), 0);
  assert.equal(v.noncoherent(), 0);
  const cc = p.hwptAlloc(fd, devid.sc, ioas).out.out_hwpt_id;
  const non = p.hwptAlloc(fd, devid.nosc, ioas).out.out_hwpt_id;
  assert.deepEqual(
    [hwpt(cc).enforceCacheCoherency, hwpt(non).enforceCacheCoherency],
    [true, false],
  );
  assert.equal(p.attach(sc, cc).ret, 0);
  assert.equal(p.attach(sc, non).ret, 0, "replace onto the non-snooping HWPT");
  assert.equal(v.noncoherent(), 0, "nothing recomputes it");
});
