/**
 * The KVM core of virt/kvm/kvm_main.c (Linux 6.12) with x86/kvm_amd answers: /dev/kvm, VM
 * creation and lifetime, vCPU creation, and the device-control framework — the KDEV cases
 * of conformance-catalog.md §12. Expected values are read from kvm_main.c and x86.c (the
 * line of reasoning is in each test), not from the model.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { err } from "../../src/uapi/errno.js";
import * as K from "../../src/uapi/kvm.js";
import { PROT_READ } from "../../src/uapi/syscalls.js";
import {
  boot,
  createDevice,
  createVm,
  deviceAttr,
  kvmVfio,
  openKvm,
  userMem,
  vmInfo,
} from "./support.js";

describe("/dev/kvm", () => {
  test("API version 12; a non-zero argument is EINVAL", () => {
    const { sys } = boot();
    const kvm = openKvm(sys);
    assert.equal(sys.ioctl(kvm, K.KVM_GET_API_VERSION, 0n), 12);
    assert.equal(sys.ioctl(kvm, K.KVM_GET_API_VERSION, 1n), err("EINVAL"));
  });

  test("vCPU mmap size: kvm_run, the x86 PIO page and the coalesced MMIO ring", () => {
    const { sys } = boot();
    const kvm = openKvm(sys);
    assert.equal(sys.ioctl(kvm, K.KVM_GET_VCPU_MMAP_SIZE, 0n), 3 * 4096);
    assert.equal(sys.ioctl(kvm, K.KVM_GET_VCPU_MMAP_SIZE, 1n), err("EINVAL"));
  });

  test("a VM or device request on /dev/kvm falls to kvm_arch_dev_ioctl: EINVAL", () => {
    const { sys } = boot();
    const kvm = openKvm(sys);
    const cd = userMem(sys, K.kvm_create_device.encode({ type: 4, fd: 0, flags: 0 }));
    assert.equal(sys.ioctl(kvm, K.KVM_CREATE_DEVICE, cd), err("EINVAL"));
    assert.equal(sys.ioctl(kvm, K.KVM_CREATE_VCPU, 0n), err("EINVAL"));
  });

  test("KVM_CHECK_EXTENSION on /dev/kvm and on a VM", () => {
    const { sys } = boot();
    const kvm = openKvm(sys);
    const vm = createVm(sys, kvm);
    const both = (cap: number) => [
      sys.ioctl(kvm, K.KVM_CHECK_EXTENSION, BigInt(cap)),
      sys.ioctl(vm, K.KVM_CHECK_EXTENSION, BigInt(cap)),
    ];
    assert.deepEqual(both(K.KVM_CAP_DEVICE_CTRL), [1, 1]);
    assert.deepEqual(both(K.KVM_CAP_USER_MEMORY), [1, 1]);
    assert.deepEqual(both(K.KVM_CAP_IRQFD), [1, 1]);
    // SHRT_MAX - KVM_INTERNAL_MEM_SLOTS (3 on x86)
    assert.deepEqual(both(K.KVM_CAP_NR_MEMSLOTS), [32764, 32764]);
    assert.deepEqual(both(K.KVM_CAP_COALESCED_MMIO), [2, 2]);
    assert.deepEqual(both(K.KVM_CAP_MAX_VCPUS), [4096, 4096]);
    assert.deepEqual(both(K.KVM_CAP_MAX_VCPU_ID), [16384, 16384]);
    // Only the default VM type: no SW_PROTECTED_VM in Debian's build, SEV off.
    assert.deepEqual(both(K.KVM_CAP_VM_TYPES), [1, 1]);
    // Private memory is offered by /dev/kvm but a default VM has none.
    assert.deepEqual(both(K.KVM_CAP_MEMORY_ATTRIBUTES), [K.KVM_MEMORY_ATTRIBUTE_PRIVATE, 0]);
    assert.deepEqual(both(K.KVM_CAP_GUEST_MEMFD), [1, 0]);
    // Legacy device assignment is gone; sPAPR TCE is POWER only.
    assert.deepEqual(both(K.KVM_CAP_IOMMU), [0, 0]);
    assert.deepEqual(both(K.KVM_CAP_SPAPR_TCE_VFIO), [0, 0]);
    assert.deepEqual(both(9999), [0, 0]);
    // The argument is a long: -1 and a value past 32 bits are just unknown.
    assert.deepEqual(both(-1), [0, 0]);
    assert.equal(sys.ioctl(kvm, K.KVM_CHECK_EXTENSION, (1n << 32n) | 89n), 0);
  });
});

describe("VMs", () => {
  test("KVM_CREATE_VM: only type 0 (kvm_is_vm_type_supported)", () => {
    const { sys } = boot();
    const kvm = openKvm(sys);
    for (const t of [K.KVM_X86_SW_PROTECTED_VM, K.KVM_X86_SEV_VM, K.KVM_X86_SNP_VM, 5, 31, 32])
      assert.equal(sys.ioctl(kvm, K.KVM_CREATE_VM, BigInt(t)), err("EINVAL"), `type ${t}`);
    assert.equal(sys.ioctl(kvm, K.KVM_CREATE_VM, 1n << 63n), err("EINVAL"));
    assert.ok(sys.ioctl(kvm, K.KVM_CREATE_VM, 0n) >= 0);
  });

  test("an unknown VM request is ENOTTY (kvm_arch_vm_ioctl); a /dev/kvm request on a VM too", () => {
    const { sys } = boot();
    const vm = createVm(sys, openKvm(sys));
    assert.equal(sys.ioctl(vm, K.KVM_GET_API_VERSION, 0n), err("ENOTTY"));
    assert.equal(sys.ioctl(vm, 0xaeff, 0n), err("ENOTTY"));
  });

  test("a VM lives while its fd, a vCPU fd or a device fd is open", () => {
    const m = boot();
    const { sys } = m;
    const kvm = openKvm(sys);
    const vm = createVm(sys, kvm);
    assert.equal(vmInfo(m, vm)?.users, 1);
    const vcpu = sys.ioctl(vm, K.KVM_CREATE_VCPU, 0n);
    const kv = kvmVfio(sys, vm);
    assert.deepEqual(
      [vmInfo(m, vm)?.users, vmInfo(m, vm)?.vcpus, vmInfo(m, vm)?.devices],
      [3, 1, ["kvm-vfio"]],
    );
    const name = vmInfo(m, vm)?.name;
    sys.close(vm);
    const live = () => m.kernel.debug.vms().find((v) => v.name === name);
    assert.equal(live()?.users, 2);
    // The device still answers after the VM fd is gone (KDEV-006).
    assert.equal(
      deviceAttr(sys, kv, K.KVM_HAS_DEVICE_ATTR, K.KVM_DEV_VFIO_FILE, K.KVM_DEV_VFIO_FILE_ADD),
      0,
    );
    sys.close(kv);
    assert.equal(live()?.users, 1);
    sys.close(vcpu);
    assert.equal(live(), undefined);
  });

  test("KDEV-005: VM, vCPU and device requests from another process are EIO", () => {
    const m = boot();
    const { sys, kernel } = m;
    const kvm = openKvm(sys);
    const vm = createVm(sys, kvm);
    const vcpu = sys.ioctl(vm, K.KVM_CREATE_VCPU, 0n);
    const kv = kvmVfio(sys, vm);
    // fork(): the child has the same open files and its own address space.
    const child = kernel.spawn();
    const inherit = (fd: number) => child.task.files.install(sys.task.files.get(fd)!.get());
    const [cKvm, cVm, cVcpu, cKv] = [kvm, vm, vcpu, kv].map(inherit) as [
      number,
      number,
      number,
      number,
    ];
    const has = (s: typeof sys, fd: number) =>
      deviceAttr(s, fd, K.KVM_HAS_DEVICE_ATTR, K.KVM_DEV_VFIO_FILE, K.KVM_DEV_VFIO_FILE_ADD);
    assert.equal(has(child, cKv), err("EIO"));
    assert.equal(child.ioctl(cVm, K.KVM_CHECK_EXTENSION, 89n), err("EIO"));
    assert.equal(child.ioctl(cVcpu, K.KVM_RUN, 0n), err("EIO"));
    // /dev/kvm itself is not tied to a process.
    assert.equal(child.ioctl(cKvm, K.KVM_GET_API_VERSION, 0n), 12);
    assert.equal(has(sys, kv), 0);
  });
});

describe("vCPUs", () => {
  test("KVM_CREATE_VCPU: ids below KVM_MAX_VCPU_IDS (16384), each once", () => {
    const m = boot();
    const { sys } = m;
    const vm = createVm(sys, openKvm(sys));
    assert.ok(sys.ioctl(vm, K.KVM_CREATE_VCPU, 0n) >= 0);
    assert.equal(sys.ioctl(vm, K.KVM_CREATE_VCPU, 0n), err("EEXIST"));
    assert.equal(sys.ioctl(vm, K.KVM_CREATE_VCPU, 16384n), err("EINVAL"));
    assert.equal(sys.ioctl(vm, K.KVM_CREATE_VCPU, 1n << 40n), err("EINVAL"));
    assert.ok(sys.ioctl(vm, K.KVM_CREATE_VCPU, 16383n) >= 0);
    assert.equal(vmInfo(m, vm)?.vcpus, 2);
    assert.equal(vmInfo(m, vm)?.users, 3);
  });
});

describe("KVM_CREATE_DEVICE", () => {
  test("KDEV-001: TEST probes without creating, even while the device exists", () => {
    const m = boot();
    const { sys } = m;
    const vm = createVm(sys, openKvm(sys));
    // TEST returns before ops->create; the struct is copied back unchanged (fd not written).
    assert.deepEqual(createDevice(sys, vm, K.KVM_DEV_TYPE_VFIO, K.KVM_CREATE_DEVICE_TEST, 77), {
      ret: 0,
      fd: 77,
    });
    assert.equal(createDevice(sys, vm, K.KVM_DEV_TYPE_VFIO, K.KVM_CREATE_DEVICE_TEST).ret, 0);
    assert.deepEqual(vmInfo(m, vm)?.devices, []);
    const { ret, fd } = createDevice(sys, vm);
    assert.equal(ret, 0);
    assert.ok(fd > 0);
    assert.equal(createDevice(sys, vm, K.KVM_DEV_TYPE_VFIO, K.KVM_CREATE_DEVICE_TEST).ret, 0);
    assert.equal(createDevice(sys, vm).ret, err("EBUSY"));
    // Flag bits other than TEST are not checked: bit 1 alone is a real create (EBUSY here).
    assert.equal(createDevice(sys, vm, K.KVM_DEV_TYPE_VFIO, 2).ret, err("EBUSY"));
  });

  test("KDEV-002: type 0, types not built for x86 and types past the table are ENODEV", () => {
    const { sys } = boot();
    const vm = createVm(sys, openKvm(sys));
    const notX86 = [
      0,
      K.KVM_DEV_TYPE_FSL_MPIC_20,
      K.KVM_DEV_TYPE_FSL_MPIC_42,
      K.KVM_DEV_TYPE_XICS,
      K.KVM_DEV_TYPE_ARM_VGIC_V2,
      K.KVM_DEV_TYPE_FLIC,
      K.KVM_DEV_TYPE_ARM_VGIC_V3,
      K.KVM_DEV_TYPE_ARM_VGIC_ITS,
      K.KVM_DEV_TYPE_XIVE,
      K.KVM_DEV_TYPE_ARM_PV_TIME,
      K.KVM_DEV_TYPE_RISCV_AIA,
      K.KVM_DEV_TYPE_MAX,
      0xffff,
      0xffffffff,
    ];
    for (const type of notX86) {
      assert.equal(createDevice(sys, vm, type).ret, err("ENODEV"), `type ${type}`);
      assert.equal(
        createDevice(sys, vm, type, K.KVM_CREATE_DEVICE_TEST).ret,
        err("ENODEV"),
        `TEST type ${type}`,
      );
    }
  });

  test("KDEV-003: an unreadable argument is EFAULT; an unwritable one faults after the work", () => {
    const m = boot();
    const { sys } = m;
    const vm = createVm(sys, openKvm(sys));
    assert.equal(sys.ioctl(vm, K.KVM_CREATE_DEVICE, 0n), err("EFAULT"));
    // A struct in read-only memory (as after mprotect(PROT_READ)).
    const ro = (flags: number) => {
      const a = userMem(sys, K.kvm_create_device.encode({ type: 4, fd: 0, flags }));
      sys.task.mm.find(a)!.prot = PROT_READ;
      return a;
    };
    // TEST succeeds, then the copy back to the caller faults.
    assert.equal(sys.ioctl(vm, K.KVM_CREATE_DEVICE, ro(K.KVM_CREATE_DEVICE_TEST)), err("EFAULT"));
    // A real create makes the device and its fd before the copy back faults: the fd
    // leaks into the table and the device stays, so the next create is EBUSY.
    const fds = sys.task.files.size;
    assert.equal(sys.ioctl(vm, K.KVM_CREATE_DEVICE, ro(0)), err("EFAULT"));
    assert.equal(sys.task.files.size, fds + 1);
    assert.deepEqual(vmInfo(m, vm)?.devices, ["kvm-vfio"]);
    assert.equal(createDevice(sys, vm).ret, err("EBUSY"));
  });

  test("KDEV-008: no fd for the device: EMFILE, and nothing is left behind", () => {
    const m = boot();
    const { sys } = m;
    const kvm = openKvm(sys);
    const vm = createVm(sys, kvm);
    const arg = userMem(sys, K.kvm_create_device.encode({ type: 4, fd: 0, flags: 0 }));
    let last = -1;
    for (let fd; (fd = sys.dup(kvm)) >= 0;) last = fd;
    assert.equal(sys.ioctl(vm, K.KVM_CREATE_DEVICE, arg), err("EMFILE"));
    // The failed create dropped its VM reference and unlinked (released) the device.
    assert.deepEqual([vmInfo(m, vm)?.users, vmInfo(m, vm)?.devices], [1, []]);
    sys.close(last);
    assert.equal(sys.ioctl(vm, K.KVM_CREATE_DEVICE, arg), 0);
    assert.deepEqual([vmInfo(m, vm)?.users, vmInfo(m, vm)?.devices], [2, ["kvm-vfio"]]);
  });

  test("KDEV-006/007: every device fd holds a VM reference; kvm-vfio goes with its fd", () => {
    const m = boot();
    const { sys } = m;
    const vm = createVm(sys, openKvm(sys));
    const kv = kvmVfio(sys, vm);
    assert.equal(vmInfo(m, vm)?.users, 2);
    assert.equal(sys.close(kv), 0);
    assert.deepEqual([vmInfo(m, vm)?.users, vmInfo(m, vm)?.devices], [1, []]);
    assert.ok(kvmVfio(sys, vm) > 0);
  });
});

describe("device fd requests", () => {
  test("KDEV-004: no get_attr is EPERM before the struct is read; bad pointers are EFAULT", () => {
    const { sys } = boot();
    const kv = kvmVfio(sys, createVm(sys, openKvm(sys)));
    assert.equal(sys.ioctl(kv, K.KVM_GET_DEVICE_ATTR, 0n), err("EPERM"));
    assert.equal(
      deviceAttr(sys, kv, K.KVM_GET_DEVICE_ATTR, K.KVM_DEV_VFIO_FILE, K.KVM_DEV_VFIO_FILE_ADD),
      err("EPERM"),
    );
    assert.equal(sys.ioctl(kv, K.KVM_SET_DEVICE_ATTR, 0n), err("EFAULT"));
    assert.equal(sys.ioctl(kv, K.KVM_HAS_DEVICE_ATTR, 0n), err("EFAULT"));
    // Anything else goes to the type's ioctl, which kvm-vfio does not have.
    assert.equal(sys.ioctl(kv, K.KVM_GET_API_VERSION, 0n), err("ENOTTY"));
    assert.equal(sys.ioctl(kv, K.KVM_CREATE_DEVICE, 0n), err("ENOTTY"));
    assert.equal(sys.ioctl(kv, K.KVM_CHECK_EXTENSION, 89n), err("ENOTTY"));
  });

  test("KDEV-009: the attribute struct is read whole (24 bytes)", () => {
    const { sys } = boot();
    const kv = kvmVfio(sys, createVm(sys, openKvm(sys)));
    // The last 8 bytes of a mapping: the struct runs past it.
    const a = userMem(sys, new Uint8Array(4096));
    assert.equal(sys.ioctl(kv, K.KVM_HAS_DEVICE_ATTR, a + 4096n - 16n), err("EFAULT"));
    assert.equal(sys.ioctl(kv, K.KVM_HAS_DEVICE_ATTR, a + 4096n - 24n), err("ENXIO"));
  });
});
