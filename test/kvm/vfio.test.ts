/**
 * The KVM-VFIO pseudo device of Linux 6.12 (virt/kvm/vfio.c; the default "6.12" profile)
 * and the x86 noncoherent DMA registration it drives — the KV cases of
 * conformance-catalog.md §13. Groups K (coherent: VT-d with Snoop Control), N1 and N2
 * (non-coherent: VT-d without it) come from support.ts.
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
  fdArg,
  fileAdd,
  fileDel,
  getDeviceFd,
  K_BDF,
  kvmVfio,
  type Machine,
  N1_BDF,
  openKvm,
  openRo,
  openRw,
  registerBackendDouble,
  userMem,
  vmInfo,
} from "./support.js";

/** A VM with a kvm-vfio device. */
function setup(m: Machine = boot()) {
  const { sys } = m;
  const kvm = openKvm(sys);
  const vm = createVm(sys, kvm);
  const kv = kvmVfio(sys, vm);
  const state = () => {
    const v = vmInfo(m, vm);
    assert.ok(v, "VM destroyed");
    return { nc: v.noncoherentDmaCount, assigned: v.assignedDeviceCount, wbinvd: v.wbinvd };
  };
  return { m, sys, kvm, vm, kv, state };
}

describe("KV-001..003: instances and attributes", () => {
  test("KV-001: one kvm-vfio per VM (EBUSY), another after close, one in each VM", () => {
    const { m, sys, kvm, vm, kv } = setup();
    assert.equal(createDevice(sys, vm).ret, err("EBUSY"));
    assert.equal(createDevice(sys, vm, K.KVM_DEV_TYPE_VFIO, K.KVM_CREATE_DEVICE_TEST).ret, 0);
    const vm2 = createVm(sys, kvm);
    assert.ok(kvmVfio(sys, vm2) > 0);
    sys.close(kv);
    assert.deepEqual(vmInfo(m, vm)?.devices, []);
    assert.ok(kvmVfio(sys, vm) > 0);
  });

  test("KV-002: HAS_DEVICE_ATTR is 0 for FILE_ADD and FILE_DEL only (no sPAPR on x86)", () => {
    const { sys, kv } = setup();
    const has = (group: number, attr: bigint | number, flags = 0) =>
      deviceAttr(sys, kv, K.KVM_HAS_DEVICE_ATTR, group, attr, 0n, flags);
    assert.equal(has(K.KVM_DEV_VFIO_FILE, K.KVM_DEV_VFIO_FILE_ADD), 0);
    assert.equal(has(K.KVM_DEV_VFIO_FILE, K.KVM_DEV_VFIO_FILE_DEL), 0);
    assert.equal(has(K.KVM_DEV_VFIO_FILE, K.KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE), err("ENXIO"));
    for (const attr of [0, 4, 0x1_0000_0001n]) assert.equal(has(1, attr), err("ENXIO"));
    for (const group of [0, 2, 0xffffffff]) assert.equal(has(group, 1), err("ENXIO"));
    // attr.flags is not looked at.
    assert.equal(has(K.KVM_DEV_VFIO_FILE, K.KVM_DEV_VFIO_FILE_ADD, 0xffffffff), 0);
  });

  test("KV-003: SET of an unknown group or attribute, or SET_SPAPR_TCE on x86, is ENXIO", () => {
    const { sys, kv } = setup();
    const ev = sys.eventfd(0, 0);
    const set = (group: number, attr: bigint | number) =>
      deviceAttr(sys, kv, K.KVM_SET_DEVICE_ATTR, group, attr, fdArg(sys, ev));
    assert.equal(set(2, K.KVM_DEV_VFIO_FILE_ADD), err("ENXIO"));
    assert.equal(set(0, K.KVM_DEV_VFIO_FILE_ADD), err("ENXIO"));
    assert.equal(set(K.KVM_DEV_VFIO_FILE, 9), err("ENXIO"));
    assert.equal(set(K.KVM_DEV_VFIO_FILE, K.KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE), err("ENXIO"));
    // The attribute is compared whole: FILE_ADD with a high bit set is unknown.
    assert.equal(set(K.KVM_DEV_VFIO_FILE, (1n << 32n) | 1n), err("ENXIO"));
    // Unknown attributes are refused before the payload is read.
    assert.equal(
      deviceAttr(sys, kv, K.KVM_SET_DEVICE_ATTR, K.KVM_DEV_VFIO_FILE, 9, 0n),
      err("ENXIO"),
    );
  });
});

describe("KV-004..010: FILE_ADD and FILE_DEL", () => {
  test("KV-004: bad pointer, bad fd, and files that are not VFIO group or device files", () => {
    const { sys, kvm, vm, kv, state } = setup();
    const add = (addr: bigint) =>
      deviceAttr(
        sys,
        kv,
        K.KVM_SET_DEVICE_ATTR,
        K.KVM_DEV_VFIO_FILE,
        K.KVM_DEV_VFIO_FILE_ADD,
        addr,
      );
    assert.equal(add(0n), err("EFAULT"));
    // The s32 runs past the end of the mapping.
    const page = userMem(sys, new Uint8Array(4096));
    assert.equal(add(page + 4094n), err("EFAULT"));
    assert.equal(fileAdd(sys, kv, -1), err("EBADF"));
    assert.equal(fileAdd(sys, kv, 1000), err("EBADF"));
    const closed = sys.eventfd(0, 0);
    sys.close(closed);
    assert.equal(fileAdd(sys, kv, closed), err("EBADF"));
    const others = [
      sys.eventfd(0, 0),
      openRo(sys, "/proc/cmdline"),
      openRw(sys, "/dev/vfio/vfio"),
      kv,
      vm,
      kvm,
    ];
    for (const fd of others) assert.equal(fileAdd(sys, kv, fd), err("EINVAL"), `fd ${fd}`);
    assert.deepEqual(state(), { nc: 0, assigned: 0, wbinvd: "nop" });
    // Nothing was added: deleting them finds nothing.
    for (const fd of others) assert.equal(fileDel(sys, kv, fd), err("ENOENT"), `fd ${fd}`);
  });

  test("KV-005: a group fd is added once; a dup() is the same file (EEXIST)", () => {
    const { sys, kv, state, m } = setup();
    const g = openRw(sys, m.group.K);
    assert.equal(fileAdd(sys, kv, g), 0);
    assert.equal(fileAdd(sys, kv, g), err("EEXIST"));
    assert.equal(fileAdd(sys, kv, sys.dup(g)), err("EEXIST"));
    // A group has one open file at a time, so there is no other file of it to add.
    assert.equal(openRw(sys, m.group.K), err("EBUSY"));
    assert.equal(state().assigned, 1);
  });

  test("KV-005: no container is needed (5.19+)", () => {
    const { sys, kv, m } = setup();
    const g = openRw(sys, m.group.N1);
    const st = userMem(sys, U.vfio_group_status.encode({ argsz: 8, flags: 0 }));
    assert.equal(sys.ioctl(g, U.VFIO_GROUP_GET_STATUS, st), 0);
    assert.equal(U.vfio_group_status.decode(sys.peek(st, 8)!).flags, U.VFIO_GROUP_FLAGS_VIABLE);
    assert.equal(fileAdd(sys, kv, g), 0);
  });

  test("KV-007: FILE_DEL finds by open file, with no type check", () => {
    const { sys, kv, state, m } = setup();
    const g = openRw(sys, m.group.N1);
    const ev = sys.eventfd(0, 0);
    assert.equal(fileDel(sys, kv, -1), err("EBADF"));
    assert.equal(fileDel(sys, kv, ev), err("ENOENT"));
    assert.equal(fileDel(sys, kv, g), err("ENOENT"));
    assert.equal(
      deviceAttr(sys, kv, K.KVM_SET_DEVICE_ATTR, K.KVM_DEV_VFIO_FILE, K.KVM_DEV_VFIO_FILE_DEL, 0n),
      err("EFAULT"),
    );
    assert.equal(fileAdd(sys, kv, g), 0);
    assert.deepEqual(state(), { nc: 1, assigned: 1, wbinvd: "flush" });
    const d = sys.dup(g);
    assert.equal(fileDel(sys, kv, d), 0);
    assert.equal(fileDel(sys, kv, g), err("ENOENT"));
    assert.deepEqual(state(), { nc: 0, assigned: 0, wbinvd: "nop" });
  });

  test("KV-010: KVM holds the group file; only closing kvm-vfio lets it go", () => {
    const { sys, kv, m } = setup();
    const g = openRw(sys, m.group.K);
    assert.equal(fileAdd(sys, kv, g), 0);
    assert.equal(sys.close(g), 0);
    assert.equal(openRw(sys, m.group.K), err("EBUSY"));
    assert.equal(sys.close(kv), 0);
    assert.ok(openRw(sys, m.group.K) >= 0);
  });

  test("KV-009: release drops every file, the VM association and the registration", () => {
    const { sys, kv, state, m } = setup();
    const [k, n1, n2] = [m.group.K, m.group.N1, m.group.N2].map((p) => openRw(sys, p)) as [
      number,
      number,
      number,
    ];
    for (const g of [k, n1, n2]) assert.equal(fileAdd(sys, kv, g), 0);
    const groupK = m.kernel.vfio.groupFromFile(sys.task.files.get(k)!);
    assert.ok(groupK?.kvm);
    assert.deepEqual(state(), { nc: 1, assigned: 3, wbinvd: "flush" });
    for (const g of [k, n1, n2]) sys.close(g);
    assert.equal(sys.close(kv), 0);
    assert.deepEqual(state(), { nc: 0, assigned: 0, wbinvd: "nop" });
    assert.equal(groupK?.kvm, null);
    for (const p of [m.group.K, m.group.N1, m.group.N2]) assert.ok(openRw(sys, p) >= 0, p);
  });

  test("the same group in two VMs: each VM registers it", () => {
    const { sys, kvm, kv, state, m } = setup();
    const vm2 = createVm(sys, kvm);
    const kv2 = kvmVfio(sys, vm2);
    const g = openRw(sys, m.group.N1);
    assert.equal(fileAdd(sys, kv, g), 0);
    assert.equal(fileAdd(sys, kv2, g), 0);
    assert.equal(state().nc, 1);
    assert.equal(vmInfo(m, vm2)?.noncoherentDmaCount, 1);
    assert.equal(fileDel(sys, kv2, g), 0);
    assert.equal(vmInfo(m, vm2)?.noncoherentDmaCount, 0);
    assert.equal(state().nc, 1);
  });

  test("UNSET_CONTAINER while KVM holds the group: allowed (a file reference, not a container user)", () => {
    const { sys, kv, m } = setup();
    const g = openRw(sys, m.group.K);
    const c = openRw(sys, "/dev/vfio/vfio");
    attachContainer(sys, g, c, false);
    assert.equal(fileAdd(sys, kv, g), 0);
    assert.equal(sys.ioctl(g, U.VFIO_GROUP_UNSET_CONTAINER, 0n), 0);
    assert.equal(fileDel(sys, kv, g), 0);
    assert.equal(fileAdd(sys, kv, g), 0);
  });
});

describe("KV-011..014: coherency and noncoherent DMA registration", () => {
  test("KV-011: a group whose IOMMU enforces snooping registers nothing; WBINVD stays a no-op", () => {
    const { sys, kv, state, m } = setup();
    assert.equal(fileAdd(sys, kv, openRw(sys, m.group.K)), 0);
    assert.deepEqual(state(), { nc: 0, assigned: 1, wbinvd: "nop" });
  });

  test("KV-012/013: register and unregister only on kvm-vfio's own transitions", () => {
    const { sys, kv, state, m } = setup();
    const [k, n1, n2] = [m.group.K, m.group.N1, m.group.N2].map((p) => openRw(sys, p)) as [
      number,
      number,
      number,
    ];
    assert.equal(fileAdd(sys, kv, k), 0);
    assert.deepEqual(state(), { nc: 0, assigned: 1, wbinvd: "nop" });
    assert.equal(fileAdd(sys, kv, n1), 0); // false → true: register
    assert.deepEqual(state(), { nc: 1, assigned: 2, wbinvd: "flush" });
    assert.equal(fileAdd(sys, kv, n2), 0); // already noncoherent: no second registration
    assert.deepEqual(state(), { nc: 1, assigned: 3, wbinvd: "flush" });
    assert.equal(fileAdd(sys, kv, n2), err("EEXIST"));
    assert.deepEqual(state(), { nc: 1, assigned: 3, wbinvd: "flush" });
    assert.equal(fileDel(sys, kv, n1), 0); // N2 still noncoherent
    assert.deepEqual(state(), { nc: 1, assigned: 2, wbinvd: "flush" });
    assert.equal(fileDel(sys, kv, n2), 0); // true → false: unregister
    assert.deepEqual(state(), { nc: 0, assigned: 1, wbinvd: "nop" });
    assert.equal(fileAdd(sys, kv, n1), 0);
    assert.deepEqual(state(), { nc: 1, assigned: 2, wbinvd: "flush" });
    sys.close(kv); // release: unregister
    assert.deepEqual(state(), { nc: 0, assigned: 0, wbinvd: "nop" });
  });

  test("a device fd counts by its own device (vfio_file_enforced_coherent)", () => {
    const m = boot();
    registerBackendDouble(m.kernel, () => true);
    const { sys, kv, state } = setup(m);
    const c = openRw(sys, "/dev/vfio/vfio");
    const gk = openRw(sys, m.group.K);
    const gn = openRw(sys, m.group.N1);
    attachContainer(sys, gk, c);
    attachContainer(sys, gn, c, false);
    const dk = getDeviceFd(sys, gk, K_BDF);
    const dn = getDeviceFd(sys, gn, N1_BDF);
    assert.ok(dk >= 0 && dn >= 0);
    assert.equal(fileAdd(sys, kv, dk), 0);
    assert.equal(fileAdd(sys, kv, dk), err("EEXIST"));
    assert.deepEqual(state(), { nc: 0, assigned: 1, wbinvd: "nop" });
    assert.equal(fileAdd(sys, kv, dn), 0);
    assert.deepEqual(state(), { nc: 1, assigned: 2, wbinvd: "flush" });
    // The group file of the same device is another file.
    assert.equal(fileAdd(sys, kv, gn), 0);
    assert.equal(fileDel(sys, kv, dn), 0);
    assert.equal(fileDel(sys, kv, gn), 0);
    assert.deepEqual(state(), { nc: 0, assigned: 1, wbinvd: "nop" });
  });
});

describe("KV-015: the VM reaches VFIO through vfio_file_set_kvm", () => {
  test("a device opened after FILE_ADD samples the VM; one opened before does not", () => {
    const m = boot();
    registerBackendDouble(m.kernel, () => true);
    const { sys, kv } = setup(m);
    const c = openRw(sys, "/dev/vfio/vfio");
    const gk = openRw(sys, m.group.K);
    const gn = openRw(sys, m.group.N1);
    attachContainer(sys, gk, c);
    attachContainer(sys, gn, c, false);
    const before = getDeviceFd(sys, gn, N1_BDF);
    assert.equal(fileAdd(sys, kv, gk), 0);
    assert.equal(fileAdd(sys, kv, gn), 0);
    const after = getDeviceFd(sys, gk, K_BDF);
    const devOf = (fd: number) => m.kernel.vfio.deviceFileFrom(sys.task.files.get(fd)!)?.device;
    const groupOf = (fd: number) => m.kernel.vfio.groupFromFile(sys.task.files.get(fd)!);
    const vmObj = groupOf(gk)?.kvm;
    assert.ok(vmObj);
    assert.equal(groupOf(gn)?.kvm, vmObj);
    assert.equal(devOf(after)?.kvm, vmObj);
    assert.equal(devOf(before)?.kvm, null);
    // FILE_DEL clears the group's pointer; the open device keeps what it sampled.
    assert.equal(fileDel(sys, kv, gk), 0);
    assert.equal(groupOf(gk)?.kvm, null);
    assert.equal(devOf(after)?.kvm, vmObj);
  });
});
