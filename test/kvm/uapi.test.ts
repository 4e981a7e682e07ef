/**
 * include/uapi/linux/kvm.h as the model encodes it. The expected request numbers are the
 * oracle agent's own table (`agent --table`, oracle/agent/tables.c compiled by gcc against
 * the Linux 6.12 uAPI headers), so the _IO/_IOR/_IOW/_IOWR encodings and the struct sizes
 * in them are checked against the C compiler, not against this model.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as K from "../../src/uapi/kvm.js";
import { REQUESTS } from "../../src/uapi/requests.js";

const AGENT_TABLE: Record<string, number> = {
  KVM_GET_API_VERSION: 0xae00,
  KVM_CREATE_VM: 0xae01,
  KVM_CHECK_EXTENSION: 0xae03,
  KVM_GET_VCPU_MMAP_SIZE: 0xae04,
  KVM_CREATE_VCPU: 0xae41,
  KVM_GET_DIRTY_LOG: 0x4010ae42,
  KVM_SET_USER_MEMORY_REGION: 0x4020ae46,
  KVM_SET_USER_MEMORY_REGION2: 0x40a0ae49,
  KVM_SET_TSS_ADDR: 0xae47,
  KVM_SET_IDENTITY_MAP_ADDR: 0x4008ae48,
  KVM_CREATE_IRQCHIP: 0xae60,
  KVM_IRQ_LINE: 0x4008ae61,
  KVM_SET_GSI_ROUTING: 0x4008ae6a,
  KVM_IRQFD: 0x4020ae76,
  KVM_IOEVENTFD: 0x4040ae79,
  KVM_SIGNAL_MSI: 0x4020aea5,
  KVM_ENABLE_CAP: 0x4068aea3,
  KVM_CREATE_PIT2: 0x4040ae77,
  KVM_GET_CLOCK: 0x8030ae7c,
  KVM_SET_CLOCK: 0x4030ae7b,
  KVM_CREATE_DEVICE: 0xc00caee0,
  KVM_SET_DEVICE_ATTR: 0x4018aee1,
  KVM_GET_DEVICE_ATTR: 0x4018aee2,
  KVM_HAS_DEVICE_ATTR: 0x4018aee3,
  KVM_RUN: 0xae80,
  KVM_CLEAR_DIRTY_LOG: 0xc018aec0,
  KVM_GET_STATS_FD: 0xaece,
};

test("every KVM request the agent knows has the agent's number, in the replayer's table too", () => {
  for (const [name, nr] of Object.entries(AGENT_TABLE)) {
    assert.equal((K as unknown as Record<string, number>)[name], nr, name);
    assert.equal(REQUESTS.get(name), nr, `requests.ts ${name}`);
  }
  const kvmNames = [...REQUESTS.keys()].filter((n) => n.startsWith("KVM_")).sort();
  assert.deepEqual(kvmNames, Object.keys(AGENT_TABLE).sort());
});

test("device-control structs have the C layout (sizes in the request numbers)", () => {
  assert.equal(K.kvm_create_device.size, 12);
  assert.deepEqual(K.kvm_create_device.offsets, { type: 0, fd: 4, flags: 8 });
  assert.equal(K.kvm_device_attr.size, 24);
  assert.deepEqual(K.kvm_device_attr.offsets, { flags: 0, group: 4, attr: 8, addr: 16 });
  assert.equal(K.kvm_vfio_spapr_tce.size, 8);
  // Round trip of a 64-bit attribute and address.
  const raw = K.kvm_device_attr.encode({
    flags: 1,
    group: 2,
    attr: 0x1_0000_0001n,
    addr: 2n ** 63n,
  });
  assert.deepEqual(K.kvm_device_attr.decode(raw), {
    flags: 1,
    group: 2,
    attr: 0x1_0000_0001n,
    addr: 2n ** 63n,
  });
});

test("KV-008: the legacy GROUP names are the FILE numbers; VFIO is device type 4 of 12", () => {
  assert.equal(K.KVM_DEV_VFIO_GROUP, K.KVM_DEV_VFIO_FILE);
  assert.equal(K.KVM_DEV_VFIO_GROUP_ADD, K.KVM_DEV_VFIO_FILE_ADD);
  assert.equal(K.KVM_DEV_VFIO_GROUP_DEL, K.KVM_DEV_VFIO_FILE_DEL);
  assert.deepEqual(
    [
      K.KVM_DEV_VFIO_FILE,
      K.KVM_DEV_VFIO_FILE_ADD,
      K.KVM_DEV_VFIO_FILE_DEL,
      K.KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE,
    ],
    [1, 1, 2, 3],
  );
  assert.equal(K.KVM_DEV_TYPE_VFIO, 4);
  assert.equal(K.KVM_DEV_TYPE_RISCV_AIA, 11);
  assert.equal(K.KVM_DEV_TYPE_MAX, 12);
  assert.equal(K.KVM_CAP_DEVICE_CTRL, 89);
});
