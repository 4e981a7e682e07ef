/**
 * Function and bus resets (drivers/pci/pci.c reset methods, Linux 6.12) and vfio-pci's use
 * of them: sysfs `reset_method` against every function of every recorded snapshot, the
 * open-time reset that decides VFIO_DEVICE_FLAGS_RESET, VFIO_DEVICE_RESET, and the hot
 * reset ioctls.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { loadHost } from "../../src/host/load.js";
import { readSnapshot } from "../../src/host/snapshot.js";
import { err } from "../../src/uapi/errno.js";
import * as R from "../../src/uapi/pci_regs.js";
import * as U from "../../src/uapi/vfio.js";
import { bootHost } from "../../src/userspace/boot.js";
import { bootCase, CASES, eventfds, Proc } from "./support.js";

const E1000E = "0000:02:00.0";
const { vfio_device_info: INFO, vfio_pci_hot_reset_info: HRI } = U;

function deviceFlags(p: Proc, dev: number): number {
  const ret = p.ioctl(
    dev,
    U.VFIO_DEVICE_GET_INFO,
    INFO.encode({ argsz: 24, flags: 0, num_regions: 0, num_irqs: 0, cap_offset: 0, pad: 0 }),
  );
  assert.equal(ret, 0);
  return INFO.decode(p.peek(0, INFO.size)).flags;
}

/** The legacy-bridge machine with its whole group on vfio-pci. */
async function legacy() {
  const { k } = await bootCase("group-legacy-bridge");
  const p = new Proc(k.spawn());
  for (const b of ["0000:02:01.0", "0000:02:02.0", "0000:02:03.0", "0000:03:01.0"]) p.bind(b);
  return p;
}

describe("reset_method", () => {
  test("present and listing the same methods as on the recorded kernels, for every function", async () => {
    let checked = 0;
    for (const name of readdirSync(CASES)) {
      const file = join(CASES, name, "snapshot.tar.gz");
      const snap = await readSnapshot(file);
      const p = new Proc(bootHost(await loadHost(file)).spawn());
      for (const bdf of snap.list("sys/bus/pci/devices")) {
        const want = snap.text(`sys/bus/pci/devices/${bdf}/reset_method`);
        const got = p.sysfsRead(`/sys/bus/pci/devices/${bdf}/reset_method`);
        assert.equal(
          typeof got === "string" ? got.replace(/\n$/, "") : undefined,
          want,
          `${name} ${bdf}`,
        );
        checked++;
      }
    }
    assert.ok(checked > 200);
  });

  test("store: reorder, refuse unknown or unsupported methods, clear, default", async () => {
    const { k } = await bootCase("device-info");
    const p = new Proc(k.spawn());
    const path = `/sys/bus/pci/devices/${E1000E}/reset_method`;
    assert.equal(p.sysfsRead(path), "pm bus\n");
    assert.equal(p.sysfsWrite(path, "bus pm\n"), 7);
    assert.equal(p.sysfsRead(path), "bus pm\n");
    assert.equal(p.sysfsWrite(path, "flr"), err("EINVAL"));
    assert.equal(p.sysfsWrite(path, "bogus"), err("EINVAL"));
    assert.equal(p.sysfsRead(path), "bus pm\n");
    assert.equal(p.sysfsWrite(path, "\n"), 1);
    assert.equal(p.sysfsRead(path), "");
    // With no method the open-time reset fails: no RESET flag, and RESET is refused.
    const { dev } = p.openDevice(E1000E);
    assert.equal(deviceFlags(p, dev), U.VFIO_DEVICE_FLAGS_PCI);
    assert.equal(p.sys.ioctl(dev, U.VFIO_DEVICE_RESET, 0n), err("EINVAL"));
    assert.equal(p.sysfsWrite(path, "default"), 7);
    assert.equal(p.sysfsRead(path), "pm bus\n");
  });
});

describe("VFIO_DEVICE_RESET", () => {
  test("a PM reset restores what the kernel saved: Command and BARs come back", async () => {
    const { k } = await bootCase("device-info");
    const p = new Proc(k.spawn());
    const { dev } = p.openDevice(E1000E);
    assert.equal(deviceFlags(p, dev), U.VFIO_DEVICE_FLAGS_PCI | U.VFIO_DEVICE_FLAGS_RESET);
    p.writeLe(dev, 7, R.PCI_COMMAND, 2, 0x0007);
    const bars = p.hwConfig(E1000E, 0x10, 4);
    assert.equal(p.sys.ioctl(dev, U.VFIO_DEVICE_RESET, 0n), 0);
    assert.equal(p.hwConfig(E1000E, R.PCI_COMMAND, 2), 0x0007);
    assert.equal(p.hwConfig(E1000E, 0x10, 4), bars);
    assert.equal(p.hwConfig(E1000E, 0xc8 + R.PCI_PM_CTRL, 2) & 3, 0); // back in D0
  });

  test("conventional PCI: a secondary bus reset for a function alone on its bus, none for edu", async () => {
    const p = await legacy();
    const e1000 = p.openDevice("0000:03:01.0").dev;
    assert.equal(deviceFlags(p, e1000), U.VFIO_DEVICE_FLAGS_PCI | U.VFIO_DEVICE_FLAGS_RESET);
    assert.equal(p.sys.ioctl(e1000, U.VFIO_DEVICE_RESET, 0n), 0);
    assert.equal(
      p.hwConfig("0000:02:04.0", R.PCI_BRIDGE_CONTROL, 2) & R.PCI_BRIDGE_CTL_BUS_RESET,
      0,
    );
    const edu = p.openDevice("0000:02:03.0").dev;
    assert.equal(deviceFlags(p, edu), U.VFIO_DEVICE_FLAGS_PCI);
    assert.equal(p.sys.ioctl(edu, U.VFIO_DEVICE_RESET, 0n), err("EINVAL"));
  });

  test("the first function of a shared bus lists `bus` (probed when it was added) but cannot use it", async () => {
    const p = await legacy();
    assert.equal(p.sysfsRead("/sys/bus/pci/devices/0000:02:01.0/reset_method"), "bus\n");
    const dev = p.openDevice("0000:02:01.0").dev;
    assert.equal(deviceFlags(p, dev), U.VFIO_DEVICE_FLAGS_PCI);
    assert.equal(p.sys.ioctl(dev, U.VFIO_DEVICE_RESET, 0n), err("EINVAL"));
  });
});

describe("hot reset", () => {
  function info(p: Proc, dev: number, argsz: number) {
    const ret = p.ioctl(
      dev,
      U.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO,
      HRI.encode({ argsz, flags: 0, count: 0 }),
      new Uint8Array(64),
    );
    const hdr = HRI.decode(p.peek(0, HRI.size));
    const devs = Array.from({ length: ret === 0 ? hdr.count : 0 }, (_, i) =>
      U.vfio_pci_dependent_device.decode(p.peek(12 + 8 * i, 8)),
    );
    return { ret, count: hdr.count, devs };
  }

  test("GET_PCI_HOT_RESET_INFO: every function below the bus, ENOSPC with the count", async () => {
    const p = await legacy();
    const e1000 = p.openDevice("0000:03:01.0").dev;
    assert.deepEqual(info(p, e1000, 12), { ret: err("ENOSPC"), count: 1, devs: [] });
    assert.deepEqual(info(p, e1000, 20), {
      ret: 0,
      count: 1,
      devs: [{ group_id: 4, segment: 0, bus: 3, devfn: 0x08 }],
    });
    const edu = p.openDevice("0000:02:03.0").dev;
    const r = info(p, edu, 12 + 5 * 8);
    assert.equal(r.ret, 0);
    assert.deepEqual(
      r.devs.map((d) => [d.bus, d.devfn]),
      [
        [2, 0x08],
        [2, 0x10],
        [2, 0x18],
        [2, 0x20],
        [3, 0x08],
      ],
    );
    assert.equal(info(p, edu, 11).ret, err("EINVAL"));
  });

  test("PCI_HOT_RESET: needs group fds owning every device of a resettable set", async () => {
    const p = await legacy();
    const { dev: e1000, group, container } = p.openDevice("0000:03:01.0");
    const hot = (dev: number, fds: number[], flags = 0) =>
      p.ioctl(
        dev,
        U.VFIO_DEVICE_PCI_HOT_RESET,
        U.vfio_pci_hot_reset.encode({ argsz: 12 + 4 * fds.length, flags, count: fds.length }),
        eventfds(...fds),
      );
    assert.equal(hot(e1000, [group]), 0);
    assert.equal(hot(e1000, []), err("EINVAL")); // zero-length: cdev only
    assert.equal(hot(e1000, [group], 1), err("EINVAL"));
    assert.equal(hot(e1000, [group, group]), err("EINVAL")); // more fds than devices
    assert.equal(hot(e1000, [999]), err("EBADF"));
    assert.equal(hot(e1000, [container]), err("EINVAL"));
    // Bus 2 also holds the PCI-PCI bridge, which vfio-pci does not own.
    const edu = p.openDevice("0000:02:03.0").dev;
    assert.equal(hot(edu, [group]), err("EINVAL"));
  });
});
