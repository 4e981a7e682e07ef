/**
 * VFIO_GROUP_GET_DEVICE_FD's name (group.c vfio_device_get_from_name, vfio_pci_core.c
 * vfio_pci_core_match and vfio_pci_validate_vf_token, Linux 6.12): the device name, then
 * optionally a space and options; "vf_token=UUID" is the only option, and only a PF
 * takes it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { hostFromText } from "../../src/host/load.js";
import { err } from "../../src/uapi/errno.js";
import * as U from "../../src/uapi/vfio.js";
import { bootHost } from "../../src/userspace/boot.js";
import { Proc, testBackend } from "./support.js";

const PF = "0000:00:03.0";
const PLAIN = "0000:00:04.0";
const UUID = "bd8d9d2b-5a5f-4f5a-a211-f591514ba1f3";

function boot() {
  const k = bootHost(
    hostFromText(
      [
        "name: names",
        "iommu: [{ kind: intel-vtd, name: dmar0 }]",
        "functions:",
        `  - { addr: "${PF}", id: "8086:1521", class: "020000", pcie: endpoint, sriov: { total: 4 } }`,
        `  - { addr: "${PLAIN}", id: "8086:10d3", class: "020000", pcie: endpoint }`,
      ].join("\n"),
      "names.yaml",
    ),
  );
  assert.equal(k.vfio.iommuDrivers.register(testBackend), 0);
  const p = new Proc(k.spawn());
  const groups = { pf: p.openDevice(PF).group, plain: p.openDevice(PLAIN).group };
  const open = (group: number, name: string) => {
    p.poke(0, Buffer.from(`${name}\0`));
    return p.sys.ioctl(group, U.VFIO_GROUP_GET_DEVICE_FD, p.buf);
  };
  return { open, ...groups };
}

test("a name followed by spaces picks the device; other trailing text picks none", () => {
  const { open, plain } = boot();
  assert.ok(open(plain, `${PLAIN} `) >= 0);
  assert.ok(open(plain, `${PLAIN}   `) >= 0);
  assert.equal(open(plain, `${PLAIN}x`), err("ENODEV"));
  assert.equal(open(plain, PLAIN.slice(0, -1)), err("ENODEV"));
});

test("options: unknown ones, a malformed or repeated vf_token are EINVAL", () => {
  const { open, pf } = boot();
  assert.equal(open(pf, `${PF} foo`), err("EINVAL"));
  assert.equal(open(pf, `${PF} vf_token=1234`), err("EINVAL"));
  assert.equal(open(pf, `${PF} vf_token=${UUID.replace("-", "x")}`), err("EINVAL"));
  assert.equal(open(pf, `${PF} vf_token=${UUID}x`), err("EINVAL"));
  assert.equal(open(pf, `${PF} vf_token=${UUID} vf_token=${UUID}`), err("EINVAL"));
});

test("vf_token: a PF takes one, a device without SR-IOV does not", () => {
  const { open, pf, plain } = boot();
  assert.ok(open(pf, `${PF} vf_token=${UUID}`) >= 0);
  assert.ok(open(pf, `${PF}  vf_token=${UUID.toUpperCase()} `) >= 0);
  assert.equal(open(plain, `${PLAIN} vf_token=${UUID}`), err("EINVAL"));
});
