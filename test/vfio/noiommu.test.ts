/**
 * VFIO no-IOMMU mode where the oracle cannot show it: the legacy container's vfio-noiommu
 * backend (no recorded kernel has both CONFIG_VFIO_CONTAINER and CONFIG_VFIO_NOIOMMU:
 * Debian's lacks the latter, the iommufd kernel the former), a caller without
 * CAP_SYS_RAWIO (the oracle's agent runs with every capability), and a container offered
 * both a no-IOMMU group and a normal one (QEMU's q35 puts every device behind VT-d or none).
 * The recorded side is test/oracle/cases/noiommu-{compat,off,debian}, and noiommu-legacy/
 * here: a recording on a kernel built with the legacy container and no-IOMMU mode.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { buildHost } from "../../src/host/build.js";
import { loadHost } from "../../src/host/load.js";
import { hostSpecSchema } from "../../src/host/spec.js";
import type { TaskSyscalls } from "../../src/kernel/core/syscalls.js";
import type { Kernel } from "../../src/kernel/kernel.js";
import { err } from "../../src/uapi/errno.js";
import { O_RDWR } from "../../src/uapi/syscalls.js";
import * as U from "../../src/uapi/vfio.js";
import { bootHost } from "../../src/userspace/boot.js";
import { loadScript } from "../../src/userspace/replay/replay.js";
import { Runner } from "../../src/userspace/replay/runner.js";
import { createVm, fileAdd, fileDel, kvmVfio, openKvm } from "../kvm/support.js";
import { ROOT } from "../support/paths.js";
import { CASES, Proc } from "./support.js";

const NORMAL = "0000:00:02.0";
const BARE = "0000:00:03.0";
const NAME = (bdf: string) => Buffer.from(`${bdf}\0`);

/**
 * Debian's build (legacy container, type1) with CONFIG_VFIO_NOIOMMU: a VT-d host where
 * 00:03.0 is outside every unit's scope.
 */
function boot(cmdline = "vfio.enable_unsafe_noiommu_mode=1"): Kernel {
  const e1000e = { id: "8086:10d3", class: "020000" };
  const spec = hostSpecSchema.parse({
    name: "noiommu",
    iommu: [{ kind: "intel-vtd", name: "dmar0" }],
    functions: [
      { addr: "0000:00:00.0", id: "8086:3e30", class: "060000" },
      { addr: NORMAL, ...e1000e },
      { addr: BARE, ...e1000e, noIommu: true },
    ],
  });
  return bootHost(buildHost(spec, "inline"), cmdline, undefined, undefined, {
    vfioNoiommu: true,
  });
}

/** A process that gave up CAP_SYS_RAWIO (capset) after fork: it shares the parent's files. */
function withoutRawio(k: Kernel, parent: TaskSyscalls): TaskSyscalls {
  const child = k.fork(parent);
  assert.ok(typeof child !== "number");
  child.task.caps.delete("CAP_SYS_RAWIO");
  return child;
}

/** The IOMMU group number sysfs gives a function. */
const groupOf = (p: Proc, bdf: string) =>
  (p.sys.readlink(`/sys/bus/pci/devices/${bdf}/iommu_group`) as string).split("/").pop() as string;

const check = (sys: TaskSyscalls, c: number, type: number) =>
  sys.ioctl(c, U.VFIO_CHECK_EXTENSION, BigInt(type));

test("a device no IOMMU covers gets /dev/vfio/noiommu-N; the mode off, vfio-pci refuses it", () => {
  const k = boot();
  const p = new Proc(k.spawn());
  p.bind(NORMAL);
  p.bind(BARE);
  const fake = groupOf(p, BARE);
  assert.notEqual(fake, groupOf(p, NORMAL));
  assert.equal(p.sysfsRead(`/sys/kernel/iommu_groups/${fake}/name`), "vfio-noiommu\n");
  assert.equal(p.sysfsRead(`/sys/kernel/iommu_groups/${fake}/type`), "unknown\n");
  assert.ok(p.sys.open(`/dev/vfio/noiommu-${fake}`, O_RDWR) >= 0);
  assert.equal(p.sys.open(`/dev/vfio/${fake}`, O_RDWR), err("ENOENT"));
  assert.equal(p.sysfsRead("/proc/sys/kernel/tainted"), "64\n");

  const off = new Proc(boot("").spawn());
  off.sysfsWrite(`/sys/bus/pci/devices/${BARE}/driver_override`, "vfio-pci");
  assert.equal(off.sysfsWrite("/sys/bus/pci/drivers/vfio-pci/bind", BARE), err("EINVAL"));
  assert.equal(off.driver(BARE), undefined);
  assert.equal(off.sysfsRead("/proc/sys/kernel/tainted"), "0\n");
});

test("vfio-noiommu backend: CHECK_EXTENSION, SET_IOMMU(NOIOMMU) only, then ENOTTY", () => {
  const k = boot();
  const p = new Proc(k.spawn());
  p.bind(BARE);
  const s = p.sys;
  const c = s.open("/dev/vfio/vfio", O_RDWR);
  // Empty: type1 answers its types, vfio-noiommu the no-IOMMU one.
  assert.deepEqual(
    [U.VFIO_TYPE1_IOMMU, U.VFIO_TYPE1v2_IOMMU, U.VFIO_NOIOMMU_IOMMU].map((t) => check(s, c, t)),
    [1, 1, 1],
  );
  const g = s.open(`/dev/vfio/noiommu-${groupOf(p, BARE)}`, O_RDWR);
  assert.ok(g >= 0);
  p.poke(0, new Uint8Array(new Int32Array([c]).buffer));
  assert.equal(s.ioctl(g, U.VFIO_GROUP_SET_CONTAINER, p.buf), 0);
  // A no-IOMMU container asks vfio-noiommu only.
  assert.deepEqual(
    [U.VFIO_TYPE1_IOMMU, U.VFIO_TYPE1v2_IOMMU, U.VFIO_NOIOMMU_IOMMU].map((t) => check(s, c, t)),
    [0, 0, 1],
  );
  assert.equal(s.ioctl(c, U.VFIO_SET_IOMMU, BigInt(U.VFIO_TYPE1v2_IOMMU)), err("ENODEV"));
  assert.equal(s.ioctl(c, U.VFIO_SET_IOMMU, BigInt(U.VFIO_NOIOMMU_IOMMU)), 0);
  assert.equal(s.ioctl(c, U.VFIO_SET_IOMMU, BigInt(U.VFIO_NOIOMMU_IOMMU)), err("EINVAL"));
  assert.equal(check(s, c, U.VFIO_NOIOMMU_IOMMU), 1);
  assert.equal(check(s, c, U.VFIO_TYPE1v2_IOMMU), 0);
  assert.equal(s.ioctl(c, U.VFIO_IOMMU_GET_INFO, p.buf), err("ENOTTY"));
  assert.equal(s.ioctl(c, U.VFIO_IOMMU_MAP_DMA, p.buf), err("ENOTTY"));
  // The device opens and works without any DMA mapping.
  p.poke(0, NAME(BARE));
  const d = s.ioctl(g, U.VFIO_GROUP_GET_DEVICE_FD, p.buf);
  assert.ok(d >= 0);
  assert.equal(p.regionInfo(d, U.VFIO_PCI_CONFIG_REGION_INDEX).ret, 0);
  // Turned off at run time: the backend no longer claims the type.
  assert.ok(p.sysfsWrite("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode", "N") > 0);
  assert.equal(check(s, c, U.VFIO_NOIOMMU_IOMMU), 0);
});

test("without CAP_SYS_RAWIO: group open, SET_CONTAINER, SET_IOMMU and device open are EPERM", () => {
  const k = boot();
  const p = new Proc(k.spawn());
  p.bind(BARE);
  const s = p.sys;
  const node = `/dev/vfio/noiommu-${groupOf(p, BARE)}`;
  const g = s.open(node, O_RDWR);
  const c = s.open("/dev/vfio/vfio", O_RDWR);
  const u = withoutRawio(k, s);
  const ug = new Proc(u);
  assert.equal(u.open(node, O_RDWR), err("EPERM")); // before EBUSY
  ug.poke(0, new Uint8Array(new Int32Array([c]).buffer));
  assert.equal(u.ioctl(g, U.VFIO_GROUP_SET_CONTAINER, ug.buf), err("EPERM"));
  p.poke(0, new Uint8Array(new Int32Array([c]).buffer));
  assert.equal(s.ioctl(g, U.VFIO_GROUP_SET_CONTAINER, p.buf), 0);
  assert.equal(check(u, c, U.VFIO_NOIOMMU_IOMMU), 1); // asking needs nothing
  assert.equal(u.ioctl(c, U.VFIO_SET_IOMMU, BigInt(U.VFIO_NOIOMMU_IOMMU)), err("EPERM"));
  assert.equal(s.ioctl(c, U.VFIO_SET_IOMMU, BigInt(U.VFIO_NOIOMMU_IOMMU)), 0);
  ug.poke(0, NAME(BARE));
  assert.equal(u.ioctl(g, U.VFIO_GROUP_GET_DEVICE_FD, ug.buf), err("EPERM"));
  p.poke(0, NAME(BARE));
  assert.ok(s.ioctl(g, U.VFIO_GROUP_GET_DEVICE_FD, p.buf) >= 0);
});

test("a container takes no-IOMMU groups or normal ones, never both", () => {
  const k = boot();
  const p = new Proc(k.spawn());
  p.bind(NORMAL);
  p.bind(BARE);
  const s = p.sys;
  const setContainer = (g: number, c: number) => {
    p.poke(0, new Uint8Array(new Int32Array([c]).buffer));
    return s.ioctl(g, U.VFIO_GROUP_SET_CONTAINER, p.buf);
  };
  const normal = s.open(`/dev/vfio/${groupOf(p, NORMAL)}`, O_RDWR);
  const bare = s.open(`/dev/vfio/noiommu-${groupOf(p, BARE)}`, O_RDWR);
  assert.ok(normal >= 0 && bare >= 0);
  const c1 = s.open("/dev/vfio/vfio", O_RDWR);
  assert.equal(setContainer(normal, c1), 0);
  assert.equal(setContainer(bare, c1), err("EPERM"));
  assert.equal(check(s, c1, U.VFIO_NOIOMMU_IOMMU), 0); // a normal container skips vfio-noiommu
  assert.equal(s.ioctl(c1, U.VFIO_SET_IOMMU, BigInt(U.VFIO_NOIOMMU_IOMMU)), err("ENODEV"));
  const c2 = s.open("/dev/vfio/vfio", O_RDWR);
  assert.equal(setContainer(bare, c2), 0);
  assert.equal(s.ioctl(normal, U.VFIO_GROUP_UNSET_CONTAINER, 0n), 0);
  assert.equal(setContainer(normal, c2), err("EPERM"));
  // The last group out makes the container empty again: either kind may join.
  assert.equal(s.ioctl(bare, U.VFIO_GROUP_UNSET_CONTAINER, 0n), 0);
  assert.equal(setContainer(normal, c2), 0);
});

test("unbinding takes the fake group away and frees its number", () => {
  const k = boot();
  const p = new Proc(k.spawn());
  p.bind(BARE);
  const id = groupOf(p, BARE);
  assert.equal(p.sysfsWrite(`/sys/bus/pci/devices/${BARE}/driver/unbind`, BARE), BARE.length);
  assert.equal(p.sys.readlink(`/sys/bus/pci/devices/${BARE}/iommu_group`), err("ENOENT"));
  assert.equal(p.sys.open(`/dev/vfio/noiommu-${id}`, O_RDWR), err("ENOENT"));
  assert.equal(p.sysfsRead(`/sys/kernel/iommu_groups/${id}/name`), err("ENOENT"));
  assert.ok(p.sysfsWrite("/sys/bus/pci/drivers_probe", BARE) > 0);
  assert.equal(groupOf(p, BARE), id); // ida_alloc: the lowest free number again
  assert.ok(p.sys.open(`/dev/vfio/noiommu-${id}`, O_RDWR) >= 0);
});

test("iommufd's compat container without CAP_SYS_RAWIO: group open, SET_IOMMU, device open", async () => {
  const host = await loadHost(join(CASES, "noiommu-compat", "snapshot.tar.gz"));
  const k = bootHost(host);
  const p = new Proc(k.spawn());
  const E1000E = "0000:02:00.0";
  p.bind(E1000E);
  const s = p.sys;
  const node = `/dev/vfio/noiommu-${groupOf(p, E1000E)}`;
  const g = s.open(node, O_RDWR);
  const c = s.open("/dev/vfio/vfio", O_RDWR);
  const u = withoutRawio(k, s);
  const up = new Proc(u);
  assert.equal(u.open(node, O_RDWR), err("EPERM"));
  up.poke(0, new Uint8Array(new Int32Array([c]).buffer));
  assert.equal(u.ioctl(g, U.VFIO_GROUP_SET_CONTAINER, up.buf), 0); // iommufd checks nothing here
  assert.equal(u.ioctl(c, U.VFIO_SET_IOMMU, BigInt(U.VFIO_NOIOMMU_IOMMU)), err("EPERM"));
  assert.equal(s.ioctl(c, U.VFIO_SET_IOMMU, BigInt(U.VFIO_NOIOMMU_IOMMU)), 0);
  p.poke(0, NAME(E1000E));
  up.poke(0, NAME(E1000E));
  assert.equal(u.ioctl(g, U.VFIO_GROUP_GET_DEVICE_FD, up.buf), err("EPERM"));
  assert.ok(s.ioctl(g, U.VFIO_GROUP_GET_DEVICE_FD, p.buf) >= 0);
  // Opened once, the device's next fds ask nothing (open_count is not 0).
  assert.ok(u.ioctl(g, U.VFIO_GROUP_GET_DEVICE_FD, up.buf) >= 0);
});

test("the legacy container's no-IOMMU mode replays as a real 6.12 kernel recorded it", async () => {
  // noiommu-legacy/case.json: recorded with --kernel, a 6.12.117 build with both the
  // legacy container and CONFIG_VFIO_NOIOMMU, which the "debian" build plus the option is.
  const dir = join(ROOT, "test", "vfio", "noiommu-legacy");
  const host = await loadHost(join(dir, "snapshot.tar.gz"));
  const k = bootHost(host, "", undefined, undefined, { vfioNoiommu: true }, "debian");
  const lines = new Runner(k.spawn()).run(loadScript(join(dir, "script.jsonl")));
  const expected = readFileSync(join(dir, "expected.jsonl"), "utf8").trimEnd().split("\n");
  assert.deepEqual(lines, expected);
});

test("kvm-vfio takes a no-IOMMU group and counts it as noncoherent DMA", () => {
  // vfio_file_enforced_coherent(): device_iommu_capable() is false without an IOMMU.
  const k = boot();
  const p = new Proc(k.spawn());
  p.bind(BARE);
  const s = p.sys;
  const g = s.open(`/dev/vfio/noiommu-${groupOf(p, BARE)}`, O_RDWR);
  const vm = createVm(s, openKvm(s));
  const kv = kvmVfio(s, vm);
  const nc = () => k.debug.vms().find((v) => v.name === `${s.task.pid}-${vm}`)?.noncoherentDmaCount;
  assert.equal(fileAdd(s, kv, g), 0);
  assert.equal(nc(), 1);
  assert.equal(fileDel(s, kv, g), 0);
  assert.equal(nc(), 0);
});
