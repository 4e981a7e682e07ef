/**
 * The KVM-VFIO pseudo device once coherency came from VFIO (the "3.15" profile: virt/kvm/
 * vfio.c with "kvm/vfio: Support for DMA coherent IOMMUs"): still groups through the
 * external-user API with a device that lives until VM teardown, as under "3.13"
 * (vfio-3.13.test.ts), but a group is coherent when its container answers
 * VFIO_CHECK_EXTENSION(VFIO_DMA_CC_IOMMU) > 0 — the container's IOMMU domains, not (as in
 * 6.12) the capability of each device's IOMMU.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { err } from "../../src/uapi/errno.js";
import * as K from "../../src/uapi/kvm.js";
import * as U from "../../src/uapi/vfio.js";
import {
  attachContainer,
  boot,
  createDevice,
  createVm,
  fileAdd,
  fileDel,
  kvmVfio,
  openKvm,
  openRw,
  registerBackendDouble,
  sysfsWrite,
  userMem,
  vmInfo,
} from "./support.js";

function setup(cc: { value: boolean }) {
  const m = boot("3.15");
  registerBackendDouble(m.kernel, () => cc.value);
  const { sys } = m;
  const vm = createVm(sys, openKvm(sys));
  const kv = kvmVfio(sys, vm);
  const state = () => {
    const v = vmInfo(m, vm);
    assert.ok(v, "VM destroyed");
    return { nc: v.noncoherentDmaCount, wbinvd: v.wbinvd };
  };
  return { m, sys, vm, kv, state };
}

describe("3.15: coherency is the container's VFIO_DMA_CC_IOMMU", () => {
  test("the container's answer decides, not the devices' IOMMU capability", () => {
    const cc = { value: false };
    const { m, sys, kv, state } = setup(cc);
    // K sits behind a unit with Snoop Control, but its container's backend says no.
    const gk = openRw(sys, m.group.K);
    attachContainer(sys, gk, openRw(sys, "/dev/vfio/vfio"));
    assert.equal(fileAdd(sys, kv, gk), 0);
    assert.deepEqual(state(), { nc: 1, wbinvd: "flush" }); // 6.12: nc 0
    // N1 (no Snoop Control) in a container whose backend says yes.
    cc.value = true;
    const gn = openRw(sys, m.group.N1);
    attachContainer(sys, gn, openRw(sys, "/dev/vfio/vfio"));
    assert.equal(fileAdd(sys, kv, gn), 0);
    assert.equal(state().nc, 1);
    assert.equal(fileDel(sys, kv, gk), 0);
    assert.deepEqual(state(), { nc: 0, wbinvd: "nop" }); // 6.12: nc 1
  });

  test("an all-coherent VM never registers (3.13 would)", () => {
    const { m, sys, kv, state } = setup({ value: true });
    const g = openRw(sys, m.group.N2);
    attachContainer(sys, g, openRw(sys, "/dev/vfio/vfio"));
    assert.equal(fileAdd(sys, kv, g), 0);
    assert.deepEqual(state(), { nc: 0, wbinvd: "nop" });
  });
});

describe("3.15: groups through the external-user API, destroyed with the VM", () => {
  test("a detached group is EINVAL for ADD and DEL; the device outlives its fd", () => {
    const { m, sys, vm, kv, state } = setup({ value: false });
    const g = openRw(sys, m.group.N1);
    assert.equal(fileAdd(sys, kv, g), err("EINVAL"));
    assert.equal(fileDel(sys, kv, g), err("EINVAL"));
    attachContainer(sys, g, openRw(sys, "/dev/vfio/vfio"));
    assert.equal(fileAdd(sys, kv, g), 0);
    sys.close(kv);
    assert.equal(state().nc, 1);
    assert.equal(createDevice(sys, vm, K.KVM_DEV_TYPE_VFIO).ret, err("EBUSY"));
  });
});

describe("3.15: an external user holds the group (vfio_group_get, container_users)", () => {
  /** VFIO_GROUP_GET_STATUS: the flags, or -errno. */
  const groupFlags = (sys: ReturnType<typeof setup>["sys"], g: number): number => {
    const a = userMem(
      sys,
      U.vfio_group_status.encode({ argsz: U.vfio_group_status.size, flags: 0 }),
    );
    const r = sys.ioctl(g, U.VFIO_GROUP_GET_STATUS, a);
    if (r) return r;
    return U.vfio_group_status.decode(sys.peek(a, U.vfio_group_status.size) as Uint8Array).flags;
  };
  const SET = U.VFIO_GROUP_FLAGS_CONTAINER_SET | U.VFIO_GROUP_FLAGS_VIABLE;

  test("unbinding the group's last device leaves it on its container until the VM lets go", () => {
    const cc = { value: false };
    const { m, sys, kv, state } = setup(cc);
    const gk = openRw(sys, m.group.K);
    attachContainer(sys, gk, openRw(sys, "/dev/vfio/vfio"));
    assert.equal(fileAdd(sys, kv, gk), 0);
    assert.equal(state().nc, 1);
    sysfsWrite(sys, "/sys/bus/pci/devices/0000:01:00.0/driver/unbind", "0000:01:00.0");
    // vfio_del_group_dev() took the device off the group; the group, its node and its
    // container stay while the external user's reference holds them.
    assert.equal(groupFlags(sys, gk), SET);
    assert.equal(openRw(sys, m.group.K), err("EBUSY"));
    // Coherency is recomputed over the held group's container: no fault, still non-coherent.
    cc.value = true;
    const gn = openRw(sys, m.group.N1);
    attachContainer(sys, gn, openRw(sys, "/dev/vfio/vfio"));
    assert.equal(fileAdd(sys, kv, gn), 0);
    assert.equal(fileAdd(sys, kv, gk), err("EEXIST"));
    assert.equal(state().nc, 1);
    // The last external user gone, the deviceless group goes (6.12's vfio_device_remove_group).
    assert.equal(fileDel(sys, kv, gk), 0);
    assert.equal(state().nc, 0);
    assert.equal(groupFlags(sys, gk), err("ENODEV"));
    assert.equal(sys.close(gk), 0);
    assert.equal(openRw(sys, m.group.K), err("ENOENT"));
  });
});
