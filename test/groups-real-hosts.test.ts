/**
 * The backbone: IOMMU groups derived by the model must be the kernel's own, on every real
 * host we have — lspci captures of 13 machines (partitions; their group numbers came from
 * other kernels' probe orders) and every snapshot recorded on Linux 6.12 (partitions and
 * the numbers themselves, which scripts use as /dev/vfio/N).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { loadHost } from "../src/host/load.js";
import { analyzeGroups } from "../src/userspace/analyze/groups.js";
import { lspciFixtures, oracleCases } from "./support/paths.js";

const partition = (groups: { devices: { bdf: string }[] }[]) =>
  groups
    .map((g) =>
      g.devices
        .map((d) => d.bdf)
        .sort()
        .join(" "),
    )
    .sort();

for (const [name, file] of lspciFixtures()) {
  test(`lspci fixture ${name}: same partition as the kernel`, async () => {
    const host = await loadHost(file);
    assert.equal(host.kind, "lspci");
    const { report } = analyzeGroups(host);
    const kernel = new Map<number, string[]>();
    for (const [bdf, o] of host.observed) {
      if (o.group !== undefined) kernel.set(o.group, [...(kernel.get(o.group) ?? []), bdf]);
    }
    assert.ok(kernel.size > 0, "fixture carries the kernel's groups");
    assert.deepEqual(
      partition(report.groups),
      [...kernel.values()].map((m) => m.sort().join(" ")).sort(),
    );
    assert.equal(
      report.comparison?.identical,
      true,
      JSON.stringify(report.comparison?.differences),
    );
  });
}

for (const [name, dir] of oracleCases()) {
  const snap = join(dir, "snapshot.tar.gz");
  if (!existsSync(snap)) continue;
  test(`oracle snapshot ${name}: same groups and group numbers as Linux 6.12`, async () => {
    const host = await loadHost(snap);
    assert.equal(host.kind, "snapshot");
    const { report } = analyzeGroups(host);
    assert.equal(
      report.comparison?.identical,
      true,
      JSON.stringify(report.comparison?.differences),
    );
    for (const g of report.groups) {
      for (const d of g.devices)
        assert.equal(d.kernelGroup, g.id, `${d.bdf} numbered like the kernel`);
    }
  });
}
