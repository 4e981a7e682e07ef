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
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { loadHost } from "../src/host/load.js";
import { loadScript, replay } from "../src/userspace/replay/replay.js";
import { oracleCases } from "./support/paths.js";

const PENDING: Record<string, string> = {
  "device-info": "the e1000e option ROM's contents (no device model answers ROM reads)",
  "device-config-space": "an NVMe device model (BAR0 registers)",
  "kvm-vfio-cdev": "iommufd, VFIO device cdev",
  "iommufd-ioas": "iommufd",
  "cdev-bind": "iommufd",
  "cdev-attach": "iommufd",
  "hwpt-alloc": "iommufd",
  "hwpt-alloc-scalable": "iommufd",
  "compat-container": "iommufd",
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
