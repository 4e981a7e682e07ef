/**
 * The invariant checker (userspace/check/invariants.ts) against the model: silent on
 * correct runs, and each invariant reports the fault it exists for when the model is
 * broken on purpose — an IOMMU that ignores invalidations, ownership dropped under a
 * container, a KVM registration out of step, locked pages or objects left behind.
 * `passthru check` runs it over scenarios.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import * as K from "../../src/uapi/kvm.js";
import * as U from "../../src/uapi/vfio.js";
import { InvariantChecker } from "../../src/userspace/check/invariants.js";
import { checkScenario } from "../../src/userspace/check/scenario.js";
import { loadScenario } from "../../src/userspace/scenario/load.js";
import { CLI, ROOT } from "../support/paths.js";
import { bootBound, groupPath, Proc, type Booted } from "./support.js";

const EDU_A = "0000:01:00.0"; // dmar0: Snoop Control
const EDU_B = "0000:02:00.0"; // dmar1: none

/** Container with the device's group, type1v2, 8 KiB mapped at 0x100000, the device open. */
function assign(b: Booted, bdf: string): { p: Proc; c: number; g: number; d: number } {
  const p = b.admin;
  const c = p.open("/dev/vfio/vfio");
  const g = p.open(groupPath(b.kernel, bdf));
  assert.equal(p.sys.ioctl(g, U.VFIO_GROUP_SET_CONTAINER, p.s32(c)), 0);
  assert.equal(p.sys.ioctl(c, U.VFIO_SET_IOMMU, BigInt(U.VFIO_TYPE1v2_IOMMU)), 0);
  assert.equal(p.mapDma(c, 0x100000n, 0x2000n), 0);
  const d = p.sys.ioctl(g, U.VFIO_GROUP_GET_DEVICE_FD, p.name(bdf));
  assert.ok(d >= 0);
  assert.equal(p.busMaster(d), 2);
  return { p, c, g, d };
}

function exitAll(b: Booted): void {
  for (const t of b.kernel.debug.tasks()) b.kernel.exit(t.pid);
}

test("a whole assignment with DMA in both directions breaks no invariant, and teardown leaks nothing", () => {
  const b = bootBound({}, [EDU_A]);
  const inv = new InvariantChecker(b.kernel, b.host.machine, b.baseline);
  const { p, d } = assign(b, EDU_A);
  p.dma(d, 0x100000n, 64, false);
  p.dma(d, 0x101000n - 8n, 16, true); // crosses into the second page
  p.dma(d, 0x900000n, 16, true); // never mapped: faults, touches nothing
  assert.deepEqual(inv.check(), []);
  assert.equal(inv.dmaTransactions, 3);
  assert.equal(inv.dmaPages, 3, "the two transfers that were mapped reached memory");
  exitAll(b);
  assert.deepEqual(inv.checkQuiescent(), []);
});

test("dma-isolation: an IOMMU that ignores invalidations lets DMA reach unmapped memory, and it is reported", () => {
  for (const machine of ["vtd", "amdvi"] as const) {
    const b = bootBound({ machine }, [EDU_A]);
    const inv = new InvariantChecker(b.kernel, b.host.machine, b.baseline);
    const { p, c, d } = assign(b, EDU_A);
    p.dma(d, 0x100000n, 16, true); // the translation is now cached
    assert.deepEqual(inv.check(), []);
    b.host.machine.iommu.flushIotlb = () => undefined; // the bug: invalidations are lost
    assert.equal(p.unmapDma(c, 0x100000n, 0x2000n), 0);
    p.dma(d, 0x100000n, 16, true);
    const v = inv.check();
    assert.equal(v.length, 1, machine);
    assert.equal(v[0]?.invariant, "dma-isolation");
    assert.match(
      v[0]?.detail ?? "",
      /0000:01:00\.0 DMA write of IOVA 0x100000 reached PA 0x[0-9a-f]+, but group \d+'s paging domain maps nothing there/,
    );
  }
});

test("dma-isolation without the bug: the unmapped IOVA faults and nothing is reported", () => {
  const b = bootBound({}, [EDU_A]);
  const inv = new InvariantChecker(b.kernel, b.host.machine, b.baseline);
  const { p, c, d } = assign(b, EDU_A);
  p.dma(d, 0x100000n, 16, true);
  assert.equal(p.unmapDma(c, 0x100000n, 0x2000n), 0);
  p.dma(d, 0x100000n, 16, true);
  assert.deepEqual(inv.check(), []);
  assert.equal(inv.dmaPages, 1);
});

test("group-ownership: DMA ownership dropped while the group is in a container is reported", () => {
  const b = bootBound({}, [EDU_A]);
  const inv = new InvariantChecker(b.kernel, null, b.baseline);
  const p = b.admin;
  const c = p.open("/dev/vfio/vfio");
  const g = p.open(groupPath(b.kernel, EDU_A));
  assert.equal(p.sys.ioctl(g, U.VFIO_GROUP_SET_CONTAINER, p.s32(c)), 0);
  assert.deepEqual(inv.check(), []);
  const ig = [...b.kernel.iommu.groups.values()].find((x) =>
    x.devices.some((d) => d.name === EDU_A),
  );
  assert.ok(ig);
  b.kernel.iommu.releaseDmaOwner(ig); // the bug
  const v = inv.check().map((x) => `${x.invariant}: ${x.detail}`);
  assert.ok(
    v.some((x) => /group-ownership: group \d+: in container \d+ without owning its DMA/.test(x)),
    v.join("\n"),
  );
});

test("group-ownership: a kernel DMA-API driver in a user-owned group is reported", () => {
  const b = bootBound({}, [EDU_A]);
  const inv = new InvariantChecker(b.kernel, null, b.baseline);
  const p = b.admin;
  const c = p.open("/dev/vfio/vfio");
  const g = p.open(groupPath(b.kernel, EDU_A));
  assert.equal(p.sys.ioctl(g, U.VFIO_GROUP_SET_CONTAINER, p.s32(c)), 0);
  // The bug: a DMA-API driver bound behind the owner's back (bypassing pci_dma_configure).
  const dev = b.kernel.pci.get(EDU_A);
  const edu = b.kernel.drivers.drivers.get("edu");
  assert.ok(dev && edu);
  b.kernel.drivers.bound.set(dev, edu);
  const v = inv.check().map((x) => x.detail);
  assert.ok(
    v.some((x) => /user-owned while 0000:01:00\.0 \(edu\) use the DMA API/.test(x)),
    v.join("\n"),
  );
});

test("kvm-coherency: a registration out of step with kvm-vfio's entries is reported", () => {
  const b = bootBound({}, [EDU_A, EDU_B]);
  const inv = new InvariantChecker(b.kernel, null, b.baseline);
  const p = b.admin;
  const vm = p.sys.ioctl(p.open("/dev/kvm"), K.KVM_CREATE_VM, 0n);
  const kd = p.createKvmVfio(vm);
  const gA = p.open(groupPath(b.kernel, EDU_A));
  const gB = p.open(groupPath(b.kernel, EDU_B));
  assert.equal(p.kvmFile(kd, K.KVM_DEV_VFIO_FILE_ADD, gA), 0);
  assert.deepEqual(inv.check(), [], "a coherent group: nothing registered");
  assert.equal(p.kvmFile(kd, K.KVM_DEV_VFIO_FILE_ADD, gB), 0);
  assert.deepEqual(inv.check(), [], "a non-coherent group: registered once");
  const kvm = b.kernel.kvm.liveVms()[0];
  assert.ok(kvm);
  assert.equal(kvm.arch.noncoherentDmaCount, 1);
  kvm.arch.noncoherentDmaCount = 0; // the bug: an unregister too many
  const v = inv.check();
  assert.equal(v[0]?.invariant, "kvm-coherency");
  assert.match(
    v[0]?.detail ?? "",
    /registered 0 time\(s\), but 1 kvm-vfio device\(s\) are non-coherent/,
  );
});

test("kvm-coherency: a flag that disagrees with the entries when kvm-vfio recomputed it is reported", () => {
  const b = bootBound({}, [EDU_B]);
  const inv = new InvariantChecker(b.kernel, null, b.baseline);
  const p = b.admin;
  const vm = p.sys.ioctl(p.open("/dev/kvm"), K.KVM_CREATE_VM, 0n);
  const kd = p.createKvmVfio(vm);
  const g = p.open(groupPath(b.kernel, EDU_B));
  // The bug: the group's verdict is wrongly "coherent", as if its unit had Snoop Control.
  const fec = b.kernel.vfio.fileEnforcedCoherent.bind(b.kernel.vfio);
  b.kernel.vfio.fileEnforcedCoherent = () => true;
  assert.equal(p.kvmFile(kd, K.KVM_DEV_VFIO_FILE_ADD, g), 0);
  b.kernel.vfio.fileEnforcedCoherent = fec;
  const v = inv.check();
  assert.equal(v.length, 1);
  assert.match(
    v[0]?.detail ?? "",
    /kvm-vfio says coherent, but under profile 6\.12 its 1 entry is not all coherent/,
  );
});

test("kvm-coherency: a verdict that changes after FILE_ADD (the device unbound) is the kernel's behaviour, not a violation", () => {
  const b = bootBound({}, [EDU_B]);
  const inv = new InvariantChecker(b.kernel, null, b.baseline);
  const p = b.admin;
  const vm = p.sys.ioctl(p.open("/dev/kvm"), K.KVM_CREATE_VM, 0n);
  const kd = p.createKvmVfio(vm);
  const g = p.open(groupPath(b.kernel, EDU_B));
  assert.equal(p.kvmFile(kd, K.KVM_DEV_VFIO_FILE_ADD, g), 0);
  assert.deepEqual(inv.check(), []);
  assert.ok(p.sysfsWrite(`/sys/bus/pci/devices/${EDU_B}/driver/unbind`, EDU_B) > 0);
  assert.deepEqual(inv.check(), []);
  assert.equal(b.kernel.debug.kvmCoherency()[0]?.registered, 1, "still registered, as in Linux");
});

test("locked-memory and object-lifetime: pages still locked, a frame, a file left behind are reported", () => {
  const b = bootBound({}, [EDU_A]);
  const inv = new InvariantChecker(b.kernel, null, b.baseline);
  const { p } = assign(b, EDU_A);
  assert.ok(
    b.kernel.debug.tasks().some((t) => t.lockedVm === 2),
    "8 KiB pinned: 2 pages locked",
  );
  const f = p.sys.task.files.get(p.sys.open("/proc/cmdline", 0));
  assert.ok(f);
  f.get(); // the bug: a reference nobody puts
  const pfn = b.kernel.pages.alloc(); // and a frame nobody frees
  assert.ok(pfn !== null);
  p.sys.task.mm.lockedVm += 3; // and locked pages nobody unlocks
  exitAll(b);
  const v = inv.checkQuiescent().map((x) => `${x.invariant}: ${x.detail}`);
  assert.deepEqual(v.sort(), [
    `locked-memory: pid ${p.sys.task.pid}: locked_vm 3 pages after everything was closed`,
    `object-lifetime: files: 1 after everything was closed, 0 after boot`,
    `object-lifetime: frames: ${b.baseline.frames + 1} after everything was closed, ${b.baseline.frames} after boot`,
  ]);
});

test("locked-memory: more locked than RLIMIT_MEMLOCK without CAP_IPC_LOCK is reported; within it, or with the capability, is not", () => {
  const b = bootBound({}, [EDU_A]);
  const inv = new InvariantChecker(b.kernel, null, b.baseline);
  const limited = b.kernel.spawn({ uid: 1000, caps: [], memlock: 8192n });
  new Proc(limited); // maps and touches its memory: nothing locked by that
  limited.task.mm.lockedVm = 2;
  assert.deepEqual(inv.check(), []);
  limited.task.mm.lockedVm = 3; // the bug: charged past the limit
  b.admin.sys.task.mm.lockedVm = 1000; // root with CAP_IPC_LOCK: no limit
  const v = inv.check();
  assert.deepEqual(
    v.map((x) => x.detail),
    [
      `pid ${limited.task.pid}: locked_vm 3 pages, above its RLIMIT_MEMLOCK of 2 without CAP_IPC_LOCK`,
    ],
  );
});

const SCENARIOS = join(ROOT, "examples", "scenarios");
for (const f of readdirSync(SCENARIOS).filter((x) => x.endsWith(".yaml"))) {
  test(`example scenario ${f} runs with no invariant violation`, async () => {
    const { scenario, host } = await loadScenario(join(SCENARIOS, f));
    const r = checkScenario(scenario, host);
    const all = [...r.steps.flatMap((s) => s.violations), ...r.teardown];
    assert.deepEqual(all, []);
    assert.equal(r.steps.length, scenario.steps.length);
    assert.deepEqual(r.unrunnable, []);
  });
}

function cli(...args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1" },
  });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

test("passthru check: a clean scenario exits 0 and says what it checked", () => {
  const r = cli("check", join(ROOT, "examples", "scenarios", "edu-dma.yaml"));
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /✓ every process exits: locked memory and kernel objects back to boot/);
  assert.match(r.out, /\d+ steps checked, 3 DMA transactions, 0 violations/);
  const j = cli("check", "--json", join(ROOT, "examples", "scenarios", "edu-dma.yaml"));
  const rep = JSON.parse(j.out) as {
    violations: number;
    dmaTransactions: number;
    steps: unknown[];
  };
  assert.equal(rep.violations, 0);
  assert.equal(rep.dmaTransactions, 3);
});

test("passthru check: a missing scenario is a located error, exit 2", () => {
  const r = cli("check", "/nonexistent/scenario.yaml");
  assert.equal(r.code, 2);
  assert.match(r.err, /^passthru: \/nonexistent\/scenario\.yaml: cannot read the scenario\n$/);
});
