/**
 * Fail-nth sweeps (userspace/check/fail_nth.ts) over the VFIO flow (container → group →
 * SET_CONTAINER → SET_IOMMU → MAP_DMA → a second group joining → device fd) and the KVM
 * flow (VM → kvm-vfio → FILE_ADD, with the container the 3.x profiles need), on both
 * fuzz machines: for every n the n-th fallible allocation fails, the flow stops with a
 * clean ENOMEM at the step that allocated, the invariants hold, and once the process
 * exits every frame, file, container and VM is given back.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import type { ProfileName } from "../../src/kernel/kernel.js";
import * as K from "../../src/uapi/kvm.js";
import * as U from "../../src/uapi/vfio.js";
import {
  failNthRun,
  failNthSweep,
  type FailNthFlow,
  type FailNthRun,
} from "../../src/userspace/check/fail_nth.js";
import type { FuzzMachine } from "../../src/userspace/fuzz/host.js";
import { bootBound, groupPath } from "./support.js";

const EDU_A = "0000:01:00.0"; // dmar0 (Snoop Control) / ivhd0
const EDU_B = "0000:02:00.0"; // dmar1 (no Snoop Control) / ivhd0

function vfioFlow(machine: FuzzMachine): () => FailNthFlow {
  return () => {
    const { kernel, host, admin: p, baseline } = bootBound({ machine }, [EDU_A, EDU_B]);
    let c = -1;
    let g = -1;
    let g2 = -1;
    return {
      kernel,
      machine: host.machine,
      baseline,
      steps: [
        { name: "open /dev/vfio/vfio", run: () => (c = p.open("/dev/vfio/vfio")) },
        { name: "open group", run: () => (g = p.open(groupPath(kernel, EDU_A))) },
        { name: "SET_CONTAINER", run: () => p.sys.ioctl(g, U.VFIO_GROUP_SET_CONTAINER, p.s32(c)) },
        {
          name: "SET_IOMMU",
          run: () => p.sys.ioctl(c, U.VFIO_SET_IOMMU, BigInt(U.VFIO_TYPE1v2_IOMMU)),
        },
        { name: "MAP_DMA 2 MiB", run: () => p.mapDma(c, 0x200000n, 0x200000n) },
        { name: "MAP_DMA 4 KiB", run: () => p.mapDma(c, 0x10000000n, 0x1000n) },
        { name: "open second group", run: () => (g2 = p.open(groupPath(kernel, EDU_B))) },
        {
          name: "SET_CONTAINER (second group: a new domain, mappings replayed)",
          run: () => p.sys.ioctl(g2, U.VFIO_GROUP_SET_CONTAINER, p.s32(c)),
        },
        {
          name: "GET_DEVICE_FD",
          run: () => p.sys.ioctl(g, U.VFIO_GROUP_GET_DEVICE_FD, p.name(EDU_A)),
        },
        { name: "UNMAP_DMA", run: () => p.unmapDma(c, 0x200000n, 0x200000n) },
      ],
    };
  };
}

function kvmFlow(machine: FuzzMachine, profile: ProfileName): () => FailNthFlow {
  return () => {
    const { kernel, host, admin: p, baseline } = bootBound({ machine, profile }, [EDU_B]);
    let kvm = -1;
    let vm = -1;
    let kd = -1;
    let c = -1;
    let g = -1;
    return {
      kernel,
      machine: host.machine,
      baseline,
      steps: [
        { name: "open /dev/kvm", run: () => (kvm = p.open("/dev/kvm")) },
        { name: "KVM_CREATE_VM", run: () => (vm = p.sys.ioctl(kvm, K.KVM_CREATE_VM, 0n)) },
        { name: "KVM_CREATE_DEVICE (kvm-vfio)", run: () => (kd = p.createKvmVfio(vm)) },
        { name: "open /dev/vfio/vfio", run: () => (c = p.open("/dev/vfio/vfio")) },
        { name: "open group", run: () => (g = p.open(groupPath(kernel, EDU_B))) },
        { name: "SET_CONTAINER", run: () => p.sys.ioctl(g, U.VFIO_GROUP_SET_CONTAINER, p.s32(c)) },
        {
          name: "SET_IOMMU",
          run: () => p.sys.ioctl(c, U.VFIO_SET_IOMMU, BigInt(U.VFIO_TYPE1v2_IOMMU)),
        },
        { name: "FILE_ADD", run: () => p.kvmFile(kd, K.KVM_DEV_VFIO_FILE_ADD, g) },
        { name: "FILE_DEL", run: () => p.kvmFile(kd, K.KVM_DEV_VFIO_FILE_DEL, g) },
      ],
    };
  };
}

function assertClean(runs: FailNthRun[], what: string): void {
  assert.ok(runs.length > 1, `${what}: the sweep reached some allocation`);
  const last = runs[runs.length - 1] as FailNthRun;
  assert.equal(last.injected, null, `${what}: a run without an injected fault ends the sweep`);
  assert.equal(last.failedAt, null, `${what}: the flow succeeds without a fault (${last.errno})`);
  for (const r of runs) {
    const at = `${what}, n=${r.n} (${r.injected?.site} ${r.injected?.what}, failed at ${r.failedAt})`;
    assert.equal(r.exception, null, `${at}: ${r.exception}`);
    assert.deepEqual(r.violations, [], at);
    if (r.failedAt !== null) {
      assert.ok(r.injected, `${at}: a step failed only where an allocation was made to fail`);
      assert.equal(r.errno, "ENOMEM", `${at}: an allocation failure is ENOMEM`);
    }
  }
}

for (const machine of ["vtd", "amdvi"] as const) {
  test(`fail-nth over the VFIO flow on ${machine}: every n gives ENOMEM and leaks nothing`, () => {
    const runs = failNthSweep(vfioFlow(machine));
    assertClean(runs, `VFIO ${machine}`);
    // Every step that allocates was made to fail at least once.
    const failed = new Set(runs.map((r) => r.failedAt));
    for (const step of ["open /dev/vfio/vfio", "SET_IOMMU", "MAP_DMA 2 MiB", "GET_DEVICE_FD"])
      assert.ok(failed.has(step), `${step} failed in some run: ${[...failed].join(", ")}`);
  });

  for (const profile of ["6.12", "3.15", "3.13"] as const) {
    test(`fail-nth over the KVM flow on ${machine}, profile ${profile}`, () => {
      const runs = failNthSweep(kvmFlow(machine, profile));
      assertClean(runs, `KVM ${machine} ${profile}`);
      const failed = new Set(runs.map((r) => r.failedAt));
      for (const step of ["KVM_CREATE_VM", "KVM_CREATE_DEVICE (kvm-vfio)", "FILE_ADD"])
        assert.ok(failed.has(step), `${step} failed in some run: ${[...failed].join(", ")}`);
    });
  }
}

test("fail-nth counts only what is armed: n beyond the flow's allocations injects nothing", () => {
  const r = failNthRun(vfioFlow("vtd"), 1_000_000);
  assert.equal(r.injected, null);
  assert.equal(r.failedAt, null);
  assert.deepEqual(r.violations, []);
});

test("fail-nth can be restricted to one site: page allocations alone", () => {
  const make = vfioFlow("vtd");
  const flow = make();
  flow.kernel.faultInject.failNth(1, ["page_alloc"]);
  // Opening files allocates no page: the first page the flow allocates is a table page.
  const results = flow.steps.map((s) => ({ name: s.name, r: Number(s.run()) }));
  const inj = flow.kernel.faultInject.injected;
  assert.equal(inj?.site, "page_alloc");
  const failed = results.find((x) => x.r < 0);
  assert.ok(
    failed && ["SET_CONTAINER", "SET_IOMMU", "MAP_DMA 2 MiB"].includes(failed.name),
    failed?.name,
  );
});
