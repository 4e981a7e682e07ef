/**
 * PCI function attributes in sysfs (Linux 6.12). Where pci_setup_device()
 * (drivers/pci/probe.c) finds the subsystem IDs subsystem_vendor/subsystem_device show: a
 * normal header's 0x2c/0x2e, a PCI-PCI bridge's Subsystem ID capability (PCI_CAP_ID_SSVID:
 * vendor at +4, device at +6), none for a bridge without it. What enable_store()
 * (pci-sysfs.c) does: kstrtoul(buf, 0), EBUSY while a driver has the function,
 * pci_enable_device for non-zero, pci_disable_device for 0, EIO when not enabled; and an
 * empty write, which sysfs_kf_write answers 0 without calling the store.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { buildHost } from "../../src/host/build.js";
import { hostSpecSchema } from "../../src/host/spec.js";
import { Kernel } from "../../src/kernel/kernel.js";
import { err } from "../../src/uapi/errno.js";
import {
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  O_RDONLY,
  O_WRONLY,
  PROT_READ,
  PROT_WRITE,
} from "../../src/uapi/syscalls.js";

function bridgeConfig(ssvid: boolean, bus: number): string {
  const b = Buffer.alloc(256);
  b.writeUInt16LE(0x1b36, 0x00); // QEMU's pcie-pci-bridge
  b.writeUInt16LE(0x000e, 0x02);
  b.writeUInt32LE(0x06040000, 0x08); // class 0604, revision 0
  b.writeUInt8(0x01, 0x0e); // header type 1
  b.writeUInt8(bus, 0x19); // secondary bus
  b.writeUInt8(bus, 0x1a); // subordinate bus
  b.writeUInt16LE(0xabcd, 0x2c); // what a normal header's subsystem IDs would be
  if (ssvid) {
    b.writeUInt16LE(0x0010, 0x06); // capability list
    b.writeUInt8(0x40, 0x34);
    b.writeUInt8(0x0d, 0x40); // PCI_CAP_ID_SSVID, end of list
    b.writeUInt16LE(0x1af4, 0x44);
    b.writeUInt16LE(0x1100, 0x46);
  }
  return b.toString("hex");
}

function boot() {
  const spec = hostSpecSchema.parse({
    name: "ssvid",
    functions: [
      { addr: "0000:00:02.0", config: bridgeConfig(true, 1), secondary: 1 },
      { addr: "0000:00:03.0", config: bridgeConfig(false, 2), secondary: 2 },
      { addr: "0000:00:04.0", id: "8086:100e", class: "020000", subsystem: "1af4:1100" },
    ],
  });
  const sys = Kernel.boot(buildHost(spec, "ssvid").machine.hardware()).spawn();
  const buf = sys.mmap(0n, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
  const read = (path: string) => {
    const fd = sys.open(path, O_RDONLY);
    assert.ok(fd >= 0, `open ${path}: ${fd}`);
    const n = sys.read(fd, buf, 4096);
    sys.close(fd);
    return Buffer.from(sys.peek(buf, n) ?? [])
      .toString()
      .trim();
  };
  /** write(2) of `value` to a sysfs file: its result. */
  const write = (path: string, value: string) => {
    const fd = sys.open(path, O_WRONLY);
    assert.ok(fd >= 0, `open ${path}: ${fd}`);
    const src = sys.mmap(0n, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    sys.poke(src, new TextEncoder().encode(value));
    const r = sys.write(fd, src, value.length);
    sys.close(fd);
    return r;
  };
  return { read, write };
}

function subsystems(): Record<string, string> {
  const { read } = boot();
  const out: Record<string, string> = {};
  for (const f of ["00:02.0", "00:03.0", "00:04.0"])
    out[f] = ["subsystem_vendor", "subsystem_device"]
      .map((a) => read(`/sys/bus/pci/devices/0000:${f}/${a}`))
      .join(" ");
  return out;
}

test("subsystem IDs: a bridge's SSVID capability, none without it, a normal header's own", () => {
  assert.deepEqual(subsystems(), {
    "00:02.0": "0x1af4 0x1100",
    "00:03.0": "0x0000 0x0000",
    "00:04.0": "0x1af4 0x1100",
  });
});

test("enable: kstrtoul values count pci_enable_device; EIO below zero; EBUSY with a driver", () => {
  const { read, write } = boot();
  const dir = "/sys/bus/pci/devices/0000:00:04.0";
  const steps: [string, number, string][] = [
    ["0", err("EIO"), "0"],
    ["1", 1, "1"],
    ["0x2", 3, "2"],
    ["07\n", 3, "3"],
    ["+1", 2, "4"],
    ["0", 1, "3"],
    ["-1", err("EINVAL"), "3"],
    [" 1", err("EINVAL"), "3"],
    ["1 ", err("EINVAL"), "3"],
    ["08", err("EINVAL"), "3"],
    ["", 0, "3"],
  ];
  for (const [value, ret, after] of steps) {
    assert.equal(write(`${dir}/enable`, value), ret, `write ${JSON.stringify(value)}`);
    assert.equal(read(`${dir}/enable`), after, `after ${JSON.stringify(value)}`);
  }
  assert.equal(write(`${dir}/driver_override`, "pci-stub"), 8);
  assert.equal(write("/sys/bus/pci/drivers_probe", "0000:00:04.0"), 12);
  assert.equal(write(`${dir}/enable`, "1"), err("EBUSY"), "pci-stub has it");
  assert.equal(write(`${dir}/enable`, "x"), err("EINVAL"), "parsed before the driver check");
  assert.equal(read(`${dir}/enable`), "3");
});
