/**
 * Every shipped scenario runs on the model with all its expectations met — the vfio.rst
 * flow, and a device's DMA landing in process memory through the IOMMU while a DMA to an
 * unmapped IOVA faults without touching memory.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { loadScenario } from "../src/userspace/scenario/load.js";
import { runScenario } from "../src/userspace/scenario/run.js";
import { ROOT } from "./support/paths.js";

const DIR = join(ROOT, "examples", "scenarios");

for (const f of readdirSync(DIR).filter((n) => n.endsWith(".yaml"))) {
  test(`scenario ${f} meets its expectations`, async () => {
    const { scenario, host } = await loadScenario(join(DIR, f));
    const r = runScenario(scenario, host);
    const failed = r.steps
      .filter((s) => s.failures.length)
      .map((s) => `${s.index} ${s.op}: ${s.failures.join("; ")}`);
    assert.deepEqual(failed, []);
    assert.equal(r.passed, scenario.steps.length);
  });
}

test("the DMA scenario's device really wrote process memory (and only where mapped)", async () => {
  const { scenario, host } = await loadScenario(join(DIR, "edu-dma.yaml"));
  const r = runScenario(scenario, host);
  const byNote = (n: string) => r.steps.find((s) => s.note?.startsWith(n));
  // The check after the device → memory DMA compared the second page against the bytes.
  assert.equal(byNote("the device wrote")?.results[0]?.ret, 0);
  // Breaking the mapping makes the same DMA miss: the scenario without map_dma fails that check.
  const unmapped = { ...scenario, steps: scenario.steps.filter((s) => s.op !== "map_dma") };
  const fresh = await loadScenario(join(DIR, "edu-dma.yaml"));
  const r2 = runScenario(unmapped, fresh.host);
  const check = r2.steps.find((s) => s.note?.startsWith("the device wrote"));
  assert.equal(check?.results[0]?.ret, 1, "no mapping, no data");
});
