/**
 * The shipped coherency scenarios, compared: the same guest reads the device's data when
 * KVM executes its WBINVDs or the IOMMU makes the DMA coherent, and its own stale data when
 * neither is the case; what it pays differs accordingly. (test/scenarios.test.ts checks
 * each scenario's own expectations.)
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Json } from "../../src/userspace/replay/script.js";
import { loadScenario } from "../../src/userspace/scenario/load.js";
import { runScenario } from "../../src/userspace/scenario/run.js";
import { SCENARIOS } from "./support.js";

const PATTERN = "a5a55a5aa5a55a5aa5a55a5aa5a55a5a";
const STALE = "00000000000000000000000000000000";

async function guestOut(file: string, drop?: (s: { op: string }) => boolean) {
  const { scenario, host } = await loadScenario(join(SCENARIOS, file));
  const steps = drop ? scenario.steps.filter((s) => !drop(s)) : scenario.steps;
  const r = runScenario({ ...scenario, steps }, host);
  const g = r.steps.find((s) => s.op === "guest");
  return g?.results[g.results.length - 1]?.out as Record<string, Json>;
}

test("coherent or flushed, the guest reads the device's data; otherwise its stale zeros", async () => {
  const rows: [string, unknown, unknown, unknown][] = [];
  for (const f of [
    "coherency-nosnoop-kvm-vfio.yaml",
    "coherency-nosnoop-no-file-add.yaml",
    "coherency-snoop-control.yaml",
    "coherency-amdvi.yaml",
    "coherency-3.13-profile.yaml",
  ]) {
    const o = await guestOut(f);
    rows.push([f, (o.reads as string[])[2], o.wbinvd_exits, o.host_wbinvds]);
  }
  assert.deepEqual(rows, [
    ["coherency-nosnoop-kvm-vfio.yaml", PATTERN, 2, 2],
    ["coherency-nosnoop-no-file-add.yaml", STALE, 2, 0],
    ["coherency-snoop-control.yaml", PATTERN, 2, 0],
    ["coherency-amdvi.yaml", PATTERN, 2, 0],
    ["coherency-3.13-profile.yaml", PATTERN, 2, 2],
  ]);
});

test("the FILE_ADD step is what makes the data right: removing it from the scenario breaks the read", async () => {
  const o = await guestOut(
    "coherency-nosnoop-kvm-vfio.yaml",
    (s) => JSON.stringify(s).includes("KVM_DEV_VFIO_FILE_ADD") || s.op === "vm_info",
  );
  assert.equal((o.reads as string[])[2], STALE);
});

test("executed WBINVDs cost the guest: 3.13's needless flushes against 6.12's NOPs on the same host", async () => {
  const flushed = await guestOut("coherency-3.13-profile.yaml");
  const skipped = await guestOut("coherency-snoop-control.yaml");
  const walk = ((2 << 20) / 64) * 0.5; // one WBINVD's walk of a 2 MiB cache (costs.ts)
  const extra = (flushed.ns as number) - (skipped.ns as number);
  assert.ok(extra >= 2 * walk, `two flushes cost at least ${2 * walk} ns more, got ${extra}`);
});
