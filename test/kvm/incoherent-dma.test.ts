/**
 * KVM_ALLOW_INCOHERENT_DMA / KVM_DISALLOW_INCOHERENT_DMA, the never-merged 2021 proposal
 * (kernel/kvm/incoherent_dma.ts, profile "2021-proposal"): (iommufd, device ID) is the
 * proof that the caller holds a device able to do non-coherent DMA; each allowed pair is
 * one noncoherent DMA registration, dropped by DISALLOW or with the VM, not when the VMM
 * closes its iommufd; under every other profile the requests do not exist.
 *
 * The host has two VT-d units, one with Snoop Control (ECAP.SC) and one without.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { ProfileName } from "../../src/kernel/kernel.js";
import { err } from "../../src/uapi/errno.js";
import * as K from "../../src/uapi/kvm.js";
import { bindSnoopPair } from "../iommufd/support.js";
import { createVm, fileAdd, kvmVfio } from "./support.js";

function boot(profile: ProfileName = "2021-proposal") {
  const { k, p, fd: ifd, sc, nosc, devid } = bindSnoopPair("incoherent-dma", profile);
  const kvm = p.open("/dev/kvm");
  const vm = createVm(p.sys, kvm);
  const call = (req: number, iommufd: number, dev_id: number) =>
    p.cmd(vm, req, K.kvm_incoherent_dma, { iommufd, dev_id }).ret;
  const allow = (iommufd: number, id: number) => call(K.KVM_ALLOW_INCOHERENT_DMA, iommufd, id);
  const disallow = (iommufd: number, id: number) =>
    call(K.KVM_DISALLOW_INCOHERENT_DMA, iommufd, id);
  const state = () => {
    const v = k.debug.vms()[0];
    return v ? [v.noncoherentDmaCount, v.wbinvd] : null;
  };
  return { k, p, ifd, sc, nosc, devid, kvm, vm, allow, disallow, state };
}

test("the numbers are _IOW(KVMIO, 0xd6/0xd7, 8 bytes): unused in Linux 6.12", () => {
  assert.equal(K.KVM_ALLOW_INCOHERENT_DMA, 0x4008aed6);
  assert.equal(K.KVM_DISALLOW_INCOHERENT_DMA, 0x4008aed7);
  assert.equal(K.kvm_incoherent_dma.size, 8);
  assert.deepEqual(K.kvm_incoherent_dma.offsets, { iommufd: 0, dev_id: 4 });
});

test("ALLOW with a bound device that can do No Snoop registers noncoherent DMA; DISALLOW drops it", () => {
  const m = boot();
  assert.deepEqual(m.state(), [0, "nop"]);
  assert.equal(m.allow(m.ifd, m.devid.nosc), 0);
  assert.deepEqual(m.state(), [1, "flush"]);
  assert.equal(m.allow(m.ifd, m.devid.nosc), err("EEXIST"), "a pair is allowed once");
  assert.deepEqual(m.state(), [1, "flush"]);
  assert.equal(m.disallow(m.ifd, m.devid.nosc), 0);
  assert.deepEqual(m.state(), [0, "nop"]);
  assert.equal(m.disallow(m.ifd, m.devid.nosc), err("ENOENT"), "nothing left to disallow");
});

test("the fd must be an open iommufd: EBADF for none, EBADFD for another kind of file", () => {
  const m = boot();
  assert.equal(m.allow(999, m.devid.nosc), err("EBADF"));
  assert.equal(m.allow(-1, m.devid.nosc), err("EBADF"));
  assert.equal(m.allow(m.kvm, m.devid.nosc), err("EBADFD"));
  assert.equal(m.allow(m.nosc, m.devid.nosc), err("EBADFD"), "the device's own fd is no proof");
  assert.equal(m.disallow(m.kvm, m.devid.nosc), err("EBADFD"));
  assert.deepEqual(m.state(), [0, "nop"]);
});

test("the label must name a device bound in that very iommufd", () => {
  const m = boot();
  assert.equal(m.allow(m.ifd, 999), err("ENOENT"), "unknown label");
  const ioas = m.p.ioasAlloc(m.ifd);
  assert.equal(m.allow(m.ifd, ioas), err("ENOENT"), "an IOAS is not a device");
  const other = m.p.open("/dev/iommu");
  assert.equal(m.allow(other, m.devid.nosc), err("ENOENT"), "bound in another iommufd");
  assert.deepEqual(m.state(), [0, "nop"]);
});

test("a device whose DMA is kept coherent is refused (EPERM); the HWPT it uses decides", () => {
  const m = boot();
  assert.equal(m.allow(m.ifd, m.devid.sc), err("EPERM"), "unattached, but its IOMMU enforces");
  const ioas = m.p.ioasAlloc(m.ifd);
  assert.equal(m.p.attach(m.sc, ioas).ret, 0);
  assert.equal(m.allow(m.ifd, m.devid.sc), err("EPERM"), "on a HWPT that forces snooping");
  assert.deepEqual(m.state(), [0, "nop"]);
  // A HWPT made for the device without Snoop Control does not force snooping, and the
  // capable device may share it: then its No Snoop DMA is not coherent, and the proof holds.
  const hn = m.p.hwptAlloc(m.ifd, m.devid.nosc, ioas).out.out_hwpt_id;
  assert.equal(m.p.attach(m.sc, hn).ret, 0);
  assert.equal(m.allow(m.ifd, m.devid.sc), 0);
  assert.deepEqual(m.state(), [1, "flush"]);
});

test("closing the iommufd keeps the allowance (KVM holds it); the VM's end drops it", () => {
  const m = boot();
  const contexts = () => m.k.iommufd?.contexts.size;
  assert.equal(m.allow(m.ifd, m.devid.nosc), 0);
  assert.equal(m.p.sys.close(m.nosc), 0, "the device unbinds");
  assert.equal(m.p.sys.close(m.sc), 0);
  assert.equal(m.p.sys.close(m.ifd), 0);
  assert.equal(contexts(), 1, "KVM's reference keeps the context");
  assert.deepEqual(m.state(), [1, "flush"], "no call back: the allowance stands");
  assert.equal(m.p.sys.close(m.vm), 0);
  assert.equal(m.k.debug.vms().length, 0);
  assert.equal(contexts(), 0, "the VM's end dropped the last reference");
});

test("DISALLOW may name the pair through another fd of the same iommufd", () => {
  const m = boot();
  assert.equal(m.allow(m.ifd, m.devid.nosc), 0);
  const dup = m.p.sys.dup(m.ifd);
  assert.equal(m.disallow(dup, m.devid.nosc), 0);
  assert.deepEqual(m.state(), [0, "nop"]);
});

for (const profile of ["6.12", "3.15", "3.13"] as const) {
  test(`under the ${profile} profile the requests do not exist (ENOTTY)`, () => {
    const m = boot(profile);
    assert.equal(m.allow(m.ifd, m.devid.nosc), err("ENOTTY"));
    assert.equal(m.disallow(m.ifd, m.devid.nosc), err("ENOTTY"));
    assert.deepEqual(m.state(), [0, "nop"]);
  });
}

test("under the proposal kvm-vfio no longer decides coherency: FILE_ADD registers nothing", () => {
  const m = boot();
  const add = fileAdd(m.p.sys, kvmVfio(m.p.sys, m.vm), m.nosc);
  assert.equal(add, 0);
  assert.deepEqual(m.state(), [0, "nop"], "the device without Snoop Control, and still nothing");
});
