/**
 * Every case recorded on a real Linux 6.12 kernel (test/oracle/cases, and shared/ when it
 * sits beside the checkout) replays on the model with identical result lines.
 *
 * Cases whose subsystems the model does not implement yet are listed in PENDING with the
 * part that is missing: they still run, and are reported as todo with their first
 * difference, so progress is visible and a regression in the parts that work is not hidden.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { loadHost } from "../src/host/load.js";
import { loadScript, replay } from "../src/userspace/replay/replay.js";
import { ROOT, oracleCases } from "./support/paths.js";

const PENDING: Record<string, string> = {
  "device-info": "the e1000e option ROM's contents (no device model answers ROM reads)",
  "device-config-space": "an NVMe device model (BAR0 registers)",
};

for (const [name, dir] of oracleCases()) {
  const files = ["snapshot.tar.gz", "script.jsonl", "expected.jsonl"].map((f) => join(dir, f));
  if (!files.every((f) => existsSync(f))) continue;
  const pending = PENDING[name];
  test(`oracle case ${name} replays identically`, pending ? { todo: pending } : {}, async () => {
    const host = await loadHost(files[0] as string);
    const got = replay(host, loadScript(files[1] as string));
    const want = readFileSync(files[2] as string, "utf8")
      .trimEnd()
      .split("\n");
    assert.equal(got.length, want.length, "one result line per operation");
    for (let i = 0; i < want.length; i++) assert.equal(got[i], want[i], `line ${i + 1}`);
  });
}

/**
 * The generated corpus (test/oracle/generated, written by src/oracle/generate and recorded
 * on Linux 6.12 with `passthru oracle record-all`): the same check for every case. Where
 * the model differs, the case is listed in PENDING_GENERATED with the model bug its first
 * difference shows (a key ending in "*" covers every case whose name starts with the rest).
 */
const CAPS =
  "KVM_CHECK_EXTENSION of capabilities the model's KVM profile lacks: NR_VCPUS (9) is 1, XCRS (56) 1, " +
  "X86_DISABLE_EXITS (143) 15, NESTED_STATE (157) 4224, XSAVE2 (208) 4096 on Linux, 0 on the model; " +
  "DISABLE_QUIRKS2 (213) is 0x7ff, the model's quirk mask 0xff";
const PENDING_GENERATED: Record<string, string> = {
  "kvm-device.caps-*": CAPS,
  "kvm-device.device-fd-requests":
    "KVM_HAS/GET_DEVICE_ATTR on /dev/kvm with group 1: Linux gives ENXIO (kvm_x86_dev_has_attr: only group 0), the model EINVAL",
  "vfio-device.nic-region-index":
    "GET_REGION_INFO of the e1000e's option ROM (index 6): Linux gives size 0x40000 and READ, the model size 0 (the ROM BAR is not sized from the snapshot)",
  "vfio-group.device-fd-names":
    'GET_DEVICE_FD("0000:01:00.0 "): Linux returns the device (vfio_pci_core_match takes a name followed by a space and options), the model ENODEV',
};

const GENERATED = join(ROOT, "test", "oracle", "generated");

function pendingGenerated(name: string): string | undefined {
  if (PENDING_GENERATED[name]) return PENDING_GENERATED[name];
  const key = Object.keys(PENDING_GENERATED).find(
    (k) => k.endsWith("*") && name.startsWith(k.slice(0, -1)),
  );
  return key ? PENDING_GENERATED[key] : undefined;
}

for (const name of existsSync(GENERATED) ? readdirSync(GENERATED).sort() : []) {
  const files = ["snapshot.tar.gz", "script.jsonl", "expected.jsonl"].map((f) =>
    join(GENERATED, name, f),
  );
  if (!files.every((f) => existsSync(f))) continue;
  const pending = pendingGenerated(name);
  test(`generated case ${name} replays identically`, pending ? { todo: pending } : {}, async () => {
    const host = await loadHost(files[0] as string);
    const got = replay(host, loadScript(files[1] as string));
    const want = readFileSync(files[2] as string, "utf8")
      .trimEnd()
      .split("\n");
    assert.equal(got.length, want.length, "one result line per operation");
    for (let i = 0; i < want.length; i++) assert.equal(got[i], want[i], `line ${i + 1}`);
  });
}
