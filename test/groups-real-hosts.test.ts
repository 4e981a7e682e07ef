/**
 * The backbone: IOMMU groups derived by the model must be the kernel's own, on every real
 * host we have — lspci captures of 13 machines (partitions; their group numbers came from
 * other kernels' probe orders) and every snapshot recorded on Linux 6.12 (partitions and
 * the numbers themselves, which scripts use as /dev/vfio/N).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadHost } from "../src/host/load.js";
import { readSnapshot } from "../src/host/snapshot.js";
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
    if (![...host.observed.values()].some((o) => o.group !== undefined)) {
      // IOMMU off (the no-IOMMU cases): the kernel formed no group, nor does the model.
      assert.deepEqual(report.groups, []);
      return;
    }
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

test("an lspci -xxxx dump of a real host gives the kernel's groups", async () => {
  // Write the snapshot's config bytes out as `lspci -xxxx` prints them, then load that.
  const dir = oracleCases().get("group-acs") as string;
  const snap = await readSnapshot(join(dir, "snapshot.tar.gz"));
  const host = await loadHost(join(dir, "snapshot.tar.gz"));
  const lines: string[] = [];
  for (const name of snap.list("sys/bus/pci/devices")) {
    const cfg = snap.file(`sys/bus/pci/devices/${name}/config`) as Buffer;
    lines.push(`${name.slice(5)} Device`);
    for (let off = 0; off < cfg.length; off += 16) {
      const row = [...cfg.subarray(off, off + 16)].map((b) => b.toString(16).padStart(2, "0"));
      lines.push(`${off.toString(16).padStart(off < 0x100 ? 2 : 3, "0")}: ${row.join(" ")}`);
    }
    lines.push("");
  }
  const file = join(mkdtempSync(join(tmpdir(), "passthru-")), "host.xxxx");
  writeFileSync(file, lines.join("\n"));
  const dump = await loadHost(file);
  assert.equal(dump.kind, "hexdump");
  const { report } = analyzeGroups(dump);
  assert.ok(report.warnings.some((w) => /as if one translated every function/.test(w)));
  const kernel = new Map<number, string[]>();
  for (const [bdf, o] of host.observed) {
    if (o.group !== undefined) kernel.set(o.group, [...(kernel.get(o.group) ?? []), bdf]);
  }
  assert.deepEqual(
    partition(report.groups),
    [...kernel.values()].map((m) => m.sort().join(" ")).sort(),
  );
});
