/**
 * The host-dependent x86 answers (arch/x86/kvm/x86.c kvm_vm_ioctl_check_extension and
 * __kvm_x86_dev_get_attr, Linux 6.12 with kvm_amd): NR_VCPUS from the online CPUs, XCRS and
 * XSAVE2 from XSAVE and the XCR0 the CPU features give, X86_DISABLE_EXITS from
 * kvm_can_mwait_in_guest(), NESTED_STATE and DISABLE_QUIRKS2 from kvm_amd's constants;
 * KVM_GET/HAS_DEVICE_ATTR on /dev/kvm.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { buildHost } from "../../src/host/build.js";
import { hostSpecSchema } from "../../src/host/spec.js";
import type { TaskSyscalls } from "../../src/kernel/core/syscalls.js";
import { Kernel } from "../../src/kernel/kernel.js";
import { err } from "../../src/uapi/errno.js";
import * as K from "../../src/uapi/kvm.js";
import { openKvm, userMem } from "./support.js";

/** /dev/kvm on a host whose /proc/cpuinfo says `cpu`. */
function kvmOn(cpu?: { count: number; flags: string[]; bugs?: string[] }) {
  const spec = hostSpecSchema.parse({ name: "caps", ...(cpu ? { cpu } : {}), functions: [] });
  const sys = Kernel.boot(buildHost(spec, "caps").machine.hardware()).spawn();
  const kvm = openKvm(sys);
  return { sys, kvm, cap: (c: number) => sys.ioctl(kvm, K.KVM_CHECK_EXTENSION, BigInt(c)) };
}

const EPYC = ["fpu", "sse", "xsave", "avx", "avx2", "avx512f", "pku", "ospke", "monitor", "arat"];

test("NR_VCPUS is the online CPU count, capped at KVM_MAX_VCPUS", () => {
  assert.equal(kvmOn({ count: 1, flags: EPYC }).cap(K.KVM_CAP_NR_VCPUS), 1);
  assert.equal(kvmOn({ count: 96, flags: EPYC }).cap(K.KVM_CAP_NR_VCPUS), 96);
  assert.equal(kvmOn({ count: 8192, flags: EPYC }).cap(K.KVM_CAP_NR_VCPUS), 4096);
});

test("XCRS follows XSAVE; MWAIT exits can be disabled only with MONITOR, ARAT and no MONITOR bug", () => {
  const all = kvmOn({ count: 4, flags: EPYC });
  assert.equal(all.cap(K.KVM_CAP_XCRS), 1);
  assert.equal(all.cap(K.KVM_CAP_X86_DISABLE_EXITS), 15);
  const buggy = kvmOn({ count: 4, flags: EPYC, bugs: ["monitor"] });
  assert.equal(buggy.cap(K.KVM_CAP_X86_DISABLE_EXITS), 14);
  const old = kvmOn({ count: 4, flags: ["fpu", "sse"] });
  assert.equal(old.cap(K.KVM_CAP_XCRS), 0);
  assert.equal(old.cap(K.KVM_CAP_X86_DISABLE_EXITS), 14);
});

test("XSAVE2 is at least struct kvm_xsave; NESTED_STATE and DISABLE_QUIRKS2 are kvm_amd's", () => {
  const { cap } = kvmOn({ count: 4, flags: [...EPYC, "amx_tile"] });
  // AMX tile data would need 11008 bytes, but no process here may use it.
  assert.equal(cap(K.KVM_CAP_XSAVE2), 4096);
  assert.equal(cap(K.KVM_CAP_NESTED_STATE), 128 + 4096);
  assert.equal(cap(K.KVM_CAP_DISABLE_QUIRKS2), 0x7ff);
});

test("without /proc/cpuinfo the machine's default CPUs answer", () => {
  const { cap } = kvmOn();
  assert.deepEqual(
    [cap(K.KVM_CAP_NR_VCPUS), cap(K.KVM_CAP_XCRS), cap(K.KVM_CAP_X86_DISABLE_EXITS)],
    [4, 1, 15],
  );
});

function attr(sys: TaskSyscalls, kvm: number, req: number, group: number, a: number, addr = 0n) {
  const arg = userMem(sys, K.kvm_device_attr.encode({ flags: 0, group, attr: BigInt(a), addr }));
  return sys.ioctl(kvm, req, arg);
}

test("GET/HAS_DEVICE_ATTR on /dev/kvm: XCOMP_GUEST_SUPP in group 0, the SEV group, else ENXIO", () => {
  const { sys, kvm } = kvmOn({ count: 4, flags: EPYC });
  const out = userMem(sys, new Uint8Array(8));
  const get = (g: number, a: number) => {
    const r = attr(sys, kvm, K.KVM_GET_DEVICE_ATTR, g, a, out);
    return r < 0 ? r : Buffer.from(sys.peek(out, 8) as Uint8Array).readBigUInt64LE(0);
  };
  // x87, SSE, AVX, the three AVX-512 components, PKRU
  assert.equal(get(0, 0), 0x2e7n);
  assert.equal(attr(sys, kvm, K.KVM_HAS_DEVICE_ATTR, 0, 0), 0);
  assert.equal(get(0, 1), err("ENXIO"));
  // SEV off: its one attribute, the VMSA features, is 0.
  assert.equal(get(1, 0), 0n);
  assert.equal(attr(sys, kvm, K.KVM_HAS_DEVICE_ATTR, 1, 1), err("ENXIO"));
  assert.equal(attr(sys, kvm, K.KVM_GET_DEVICE_ATTR, 1, 1), err("ENXIO"));
  assert.equal(attr(sys, kvm, K.KVM_HAS_DEVICE_ATTR, 2, 0), err("ENXIO"));
  assert.equal(attr(sys, kvm, K.KVM_GET_DEVICE_ATTR, 0, 0, 8n), err("EFAULT"));
  assert.equal(sys.ioctl(kvm, K.KVM_HAS_DEVICE_ATTR, 8n), err("EFAULT"));
});
