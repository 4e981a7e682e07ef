/**
 * The KVM-VFIO pseudo device as the 2013 series merged it (Linux 3.13 virt/kvm/vfio.c;
 * the "3.13" profile): groups only, through VFIO's external-user API (the group must be
 * attached to a container whose IOMMU backend is set, else EINVAL — on FILE_DEL too),
 * every group counted as non-coherent ("kvm: Create non-coherent DMA registeration": "For
 * now we assume that non-coherent DMA is possible any time we have a VFIO group"), no kvm
 * pointer for VFIO and no assigned-device count, and a device that lives until the VM is
 * destroyed. The same cases behave as vfio.test.ts says under the "6.12" profile; each
 * test names the change.
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
  deviceAttr,
  fileAdd,
  fileDel,
  getDeviceFd,
  K_BDF,
  kvmVfio,
  openKvm,
  openRw,
  registerBackendDouble,
  vmInfo,
} from "./support.js";

/** A 3.13 machine whose IOMMU backend answers DMA_CC_IOMMU with `cc` (per container). */
function setup(cc = { value: true }) {
  const m = boot("3.13");
  registerBackendDouble(m.kernel, () => cc.value);
  const { sys } = m;
  const kvm = openKvm(sys);
  const vm = createVm(sys, kvm);
  const kv = kvmVfio(sys, vm);
  const state = () => {
    const v = vmInfo(m, vm);
    assert.ok(v, "VM destroyed");
    return { nc: v.noncoherentDmaCount, assigned: v.assignedDeviceCount, wbinvd: v.wbinvd };
  };
  return { m, sys, kvm, vm, kv, state, cc };
}

describe("3.13: what FILE_ADD (GROUP_ADD) accepts", () => {
  test("a group is EINVAL until it is in a container with an IOMMU backend set", () => {
    const { m, sys, kv } = setup();
    const g = openRw(sys, m.group.K);
    assert.equal(fileAdd(sys, kv, g), err("EINVAL")); // 6.12: 0
    const c = openRw(sys, "/dev/vfio/vfio");
    attachContainer(sys, g, c, false);
    assert.equal(fileAdd(sys, kv, g), err("EINVAL"));
    assert.equal(sys.ioctl(c, U.VFIO_SET_IOMMU, BigInt(U.VFIO_TYPE1v2_IOMMU)), 0);
    assert.equal(fileAdd(sys, kv, g), 0);
    assert.equal(fileAdd(sys, kv, g), err("EEXIST"));
    assert.equal(fileAdd(sys, kv, sys.dup(g)), err("EEXIST"));
  });

  test("only group files: a device fd, the container and other files are EINVAL; bad fds EBADF", () => {
    const { m, sys, kv, vm } = setup();
    const g = openRw(sys, m.group.K);
    const c = openRw(sys, "/dev/vfio/vfio");
    attachContainer(sys, g, c);
    const d = getDeviceFd(sys, g, K_BDF);
    assert.ok(d >= 0);
    for (const fd of [d, c, sys.eventfd(0, 0), kv, vm])
      assert.equal(fileAdd(sys, kv, fd), err("EINVAL"), `fd ${fd}`); // 6.12: the device fd is 0
    assert.equal(fileAdd(sys, kv, -1), err("EBADF"));
    assert.equal(
      deviceAttr(
        sys,
        kv,
        K.KVM_SET_DEVICE_ATTR,
        K.KVM_DEV_VFIO_GROUP,
        K.KVM_DEV_VFIO_GROUP_ADD,
        0n,
      ),
      err("EFAULT"),
    );
  });

  test("the same attributes: GROUP_ADD and GROUP_DEL, nothing else", () => {
    const { sys, kv } = setup();
    const has = (attr: number) =>
      deviceAttr(sys, kv, K.KVM_HAS_DEVICE_ATTR, K.KVM_DEV_VFIO_GROUP, attr);
    assert.deepEqual([1, 2, 3, 0].map(has), [0, 0, err("ENXIO"), err("ENXIO")]);
    assert.equal(sys.ioctl(kv, K.KVM_GET_DEVICE_ATTR, 0n), err("EPERM"));
  });
});

describe("3.13: FILE_DEL (GROUP_DEL) takes an external user too", () => {
  test("a file that is not an attached group is EINVAL, not ENOENT", () => {
    const { m, sys, kv, state } = setup();
    assert.equal(fileDel(sys, kv, sys.eventfd(0, 0)), err("EINVAL")); // 6.12: ENOENT
    const g = openRw(sys, m.group.N1);
    assert.equal(fileDel(sys, kv, g), err("EINVAL")); // 6.12: ENOENT
    const c = openRw(sys, "/dev/vfio/vfio");
    attachContainer(sys, g, c);
    assert.equal(fileDel(sys, kv, g), err("ENOENT"));
    assert.equal(fileAdd(sys, kv, g), 0);
    assert.equal(fileDel(sys, kv, sys.dup(g)), 0);
    assert.equal(fileDel(sys, kv, g), err("ENOENT"));
    assert.deepEqual(state(), { nc: 0, assigned: 0, wbinvd: "nop" });
  });

  test("KVM is a container user: UNSET_CONTAINER is EBUSY until GROUP_DEL", () => {
    const { m, sys, kv } = setup();
    const g = openRw(sys, m.group.K);
    const c = openRw(sys, "/dev/vfio/vfio");
    attachContainer(sys, g, c);
    assert.equal(fileAdd(sys, kv, g), 0);
    assert.equal(sys.ioctl(g, U.VFIO_GROUP_UNSET_CONTAINER, 0n), err("EBUSY")); // 6.12: 0
    // Failed lookups (EEXIST, ENOENT paths) gave their reference back.
    assert.equal(fileAdd(sys, kv, g), err("EEXIST"));
    assert.equal(fileDel(sys, kv, g), 0);
    assert.equal(sys.ioctl(g, U.VFIO_GROUP_UNSET_CONTAINER, 0n), 0);
  });
});

describe("3.13: any group makes the VM non-coherent", () => {
  test("even a group whose IOMMU and container are coherent registers; the last DEL unregisters", () => {
    const { m, sys, kv, state } = setup({ value: true });
    // K sits behind a unit with Snoop Control and its container says DMA_CC_IOMMU.
    const gk = openRw(sys, m.group.K);
    attachContainer(sys, gk, openRw(sys, "/dev/vfio/vfio"));
    assert.equal(fileAdd(sys, kv, gk), 0);
    assert.deepEqual(state(), { nc: 1, assigned: 0, wbinvd: "flush" }); // 6.12: nc 0
    const gn = openRw(sys, m.group.N1);
    attachContainer(sys, gn, openRw(sys, "/dev/vfio/vfio"));
    assert.equal(fileAdd(sys, kv, gn), 0);
    assert.equal(state().nc, 1); // still one registration for the device
    assert.equal(fileDel(sys, kv, gk), 0);
    assert.equal(state().nc, 1);
    assert.equal(fileDel(sys, kv, gn), 0);
    assert.deepEqual(state(), { nc: 0, assigned: 0, wbinvd: "nop" });
  });

  test("no kvm pointer reaches VFIO (vfio_group_set_kvm came with v4.x)", () => {
    const { m, sys, kv } = setup();
    const g = openRw(sys, m.group.K);
    attachContainer(sys, g, openRw(sys, "/dev/vfio/vfio"));
    assert.equal(fileAdd(sys, kv, g), 0);
    assert.equal(m.kernel.vfio.groupFromFile(sys.task.files.get(g)!)?.kvm, null);
  });
});

describe("3.13: the device lives until the VM is destroyed", () => {
  test("closing kvm-vfio keeps the groups and the slot; VM teardown releases them", () => {
    const { m, sys, kvm, vm, kv, state } = setup();
    const g = openRw(sys, m.group.N1);
    attachContainer(sys, g, openRw(sys, "/dev/vfio/vfio"));
    assert.equal(fileAdd(sys, kv, g), 0);
    assert.equal(sys.close(kv), 0);
    assert.deepEqual(vmInfo(m, vm)?.devices, ["kvm-vfio"]);
    assert.equal(createDevice(sys, vm).ret, err("EBUSY")); // 6.12: 0
    assert.equal(state().nc, 1); // 6.12: 0
    // The group is still held: closed by the user, it cannot be reopened.
    assert.equal(sys.close(g), 0);
    assert.equal(openRw(sys, m.group.N1), err("EBUSY"));
    // Another VM is unaffected.
    const vm2 = createVm(sys, kvm);
    assert.ok(kvmVfio(sys, vm2) > 0);
    // The last VM reference goes: kvm_destroy_devices() → kvm_vfio_destroy().
    const name = vmInfo(m, vm)?.name;
    assert.equal(sys.close(vm), 0);
    assert.equal(
      m.kernel.debug.vms().find((v) => v.name === name),
      undefined,
    );
    assert.ok(openRw(sys, m.group.N1) >= 0);
  });
});
