/**
 * VFIO_DEVICE_FEATURE (vfio_ioctl_device_feature in vfio_main.c, vfio_pci_core_ioctl_feature
 * in vfio_pci_core.c, Linux 6.12): the header checks, the migration and logging features
 * vfio-pci has no ops for, and the low-power entry/exit state (pm_runtime_engaged).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { err } from "../../src/uapi/errno.js";
import * as U from "../../src/uapi/vfio.js";
import { bootCase, eventfds, Proc } from "./support.js";

const E1000E = "0000:02:00.0";
const { VFIO_DEVICE_FEATURE_SET: SET, VFIO_DEVICE_FEATURE_GET: GET } = U;
const PROBE = U.VFIO_DEVICE_FEATURE_PROBE;

async function device() {
  const { k } = await bootCase("device-info");
  const p = new Proc(k.spawn());
  const { dev } = p.openDevice(E1000E);
  const feature = (flags: number, data = new Uint8Array(0), argsz = 8 + data.length) =>
    p.ioctl(dev, U.VFIO_DEVICE_FEATURE, U.vfio_device_feature.encode({ argsz, flags }), data);
  /** struct vfio_device_low_power_entry_with_wakeup: the eventfd and a reserved word. */
  const wakeup = (fd: number) => new Uint8Array([...eventfds(fd), 0, 0, 0, 0]);
  return { p, dev, feature, wakeup };
}

describe("VFIO_DEVICE_FEATURE", () => {
  test("header checks come first: argsz, unknown flags, GET with SET", async () => {
    const { feature } = await device();
    const ENTRY = U.VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY;
    assert.equal(feature(SET | ENTRY, undefined, 7), err("EINVAL"));
    assert.equal(feature(SET | ENTRY | (1 << 19)), err("EINVAL"));
    assert.equal(feature(SET | GET | ENTRY), err("EINVAL"));
    assert.equal(feature(PROBE | SET | GET | ENTRY), err("EINVAL"), "GET is not supported");
    assert.equal(feature(PROBE | SET | ENTRY), 0);
    assert.equal(feature(ENTRY), err("EINVAL"), "neither GET nor SET");
  });

  test("migration, logging and unknown ids are ENOTTY whatever the flags", async () => {
    const { feature } = await device();
    for (const id of [1, 2, 6, 7, 8, 9, 10, 0xffff])
      for (const flags of [PROBE, GET, SET, PROBE | GET])
        assert.equal(feature(flags | id), err("ENOTTY"), `feature ${id} flags ${flags}`);
    assert.equal(
      feature(SET | U.VFIO_DEVICE_FEATURE_PCI_VF_TOKEN, new Uint8Array(16)),
      err("ENOTTY"),
    );
  });

  test("low power: one entry at a time until exit or close; the wakeup eventfd is checked", async () => {
    const { p, dev, feature, wakeup } = await device();
    const ENTRY = U.VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY;
    const WAKE = U.VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP;
    const EXIT = U.VFIO_DEVICE_FEATURE_LOW_POWER_EXIT;
    const e = p.eventfd();
    assert.equal(feature(SET | WAKE, eventfds(e.fd)), err("EINVAL"), "4 bytes of data");
    assert.equal(feature(SET | WAKE, wakeup(-1)), err("EINVAL"));
    assert.equal(feature(SET | WAKE, wakeup(999)), err("EBADF"));
    assert.equal(feature(SET | WAKE, wakeup(dev)), err("EINVAL"), "not an eventfd");
    assert.equal(feature(SET | WAKE, wakeup(e.fd)), 0);
    assert.equal(feature(SET | ENTRY), err("EINVAL"), "already engaged");
    assert.equal(feature(SET | EXIT), 0);
    assert.equal(feature(SET | EXIT), 0, "exit is idempotent");
    assert.equal(feature(SET | ENTRY), 0);
    assert.equal(feature(SET | WAKE, wakeup(e.fd)), err("EINVAL"));
    assert.equal(p.sys.close(dev), 0);
    const again = p.openDevice(E1000E).dev;
    const S = U.vfio_device_feature;
    const entry = S.encode({ argsz: 8, flags: SET | ENTRY });
    assert.equal(p.ioctl(again, U.VFIO_DEVICE_FEATURE, entry), 0, "close left low power");
  });
});
