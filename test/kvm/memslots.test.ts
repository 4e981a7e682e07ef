/**
 * KVM_SET_USER_MEMORY_REGION's limits that come from the host CPU (Linux 6.12):
 * __kvm_set_memory_region() checks the user range with access_ok(), whose limit is
 * TASK_SIZE_MAX (2^47 less a page, 2^56 less a page with 5-level paging, which /proc/cpuinfo
 * shows as la57); kvm_arch_prepare_memory_region() refuses a new or moved slot that ends
 * past kvm_mmu_max_gfn(), the host's MAXPHYADDR ("address sizes: N bits physical").
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { buildHost } from "../../src/host/build.js";
import { hostSpecSchema } from "../../src/host/spec.js";
import { Kernel } from "../../src/kernel/kernel.js";
import { err } from "../../src/uapi/errno.js";
import * as K from "../../src/uapi/kvm.js";
import { createVm, openKvm, userMem } from "./support.js";

function vmOn(cpu: { flags: string[]; physBits?: number }) {
  const spec = hostSpecSchema.parse({ name: "cpu", cpu: { count: 1, ...cpu }, functions: [] });
  const sys = Kernel.boot(buildHost(spec, "cpu").machine.hardware()).spawn();
  const vm = createVm(sys, openKvm(sys));
  const region = (slot: number, gpa: bigint, size: bigint, uaddr: bigint) =>
    sys.ioctl(
      vm,
      K.KVM_SET_USER_MEMORY_REGION,
      userMem(
        sys,
        K.kvm_userspace_memory_region.encode({
          slot,
          flags: 0,
          guest_phys_addr: gpa,
          memory_size: size,
          userspace_addr: uaddr,
        }),
      ),
    );
  return region;
}

const K64 = 0x10000n;

test("a slot must end within the host's physical address bits", () => {
  const region = vmOn({ flags: [], physBits: 40 });
  assert.equal(region(0, (1n << 40n) - K64, K64, 0x10000n), 0, "the last 64K below 2^40");
  assert.equal(region(1, 1n << 40n, K64, 0x10000n), err("EINVAL"), "at 2^40");
  assert.equal(region(0, 1n << 40n, K64, 0x10000n), err("EINVAL"), "moved past 2^40");
  assert.equal(region(0, 0n, K64, 0x10000n), 0, "moved to 0");
  const wide = vmOn({ flags: [], physBits: 46 });
  assert.equal(wide(1, 1n << 40n, K64, 0x10000n), 0, "46 bits");
});

test("the user range ends at TASK_SIZE_MAX: 2^47 less a page, 2^56 with 5-level paging", () => {
  const top = (1n << 47n) - 0x1000n;
  const four = vmOn({ flags: [] });
  assert.equal(four(0, 0n, K64, top - K64), 0, "ends at TASK_SIZE_MAX");
  assert.equal(four(1, K64, K64, top), err("EINVAL"), "starts at TASK_SIZE_MAX");
  const five = vmOn({ flags: ["la57"] });
  assert.equal(five(1, K64, K64, top), 0, "past 2^47 with la57");
  assert.equal(five(2, 2n * K64, K64, (1n << 56n) - 0x1000n), err("EINVAL"), "past 2^56");
});
