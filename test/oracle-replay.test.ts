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

const PENDING: Record<string, string> = {};

/** One recorded case: replayed on the model, every result line as the kernel's. */
function replaysIdentically(kind: string, name: string, dir: string, pending?: string): void {
  const files = ["snapshot.tar.gz", "script.jsonl", "expected.jsonl"].map((f) => join(dir, f));
  if (!files.every((f) => existsSync(f))) return;
  test(`${kind} ${name} replays identically`, pending ? { todo: pending } : {}, async () => {
    const host = await loadHost(files[0] as string);
    const got = replay(host, loadScript(files[1] as string));
    const want = readFileSync(files[2] as string, "utf8")
      .trimEnd()
      .split("\n");
    assert.equal(got.length, want.length, "one result line per operation");
    for (let i = 0; i < want.length; i++) assert.equal(got[i], want[i], `line ${i + 1}`);
  });
}

for (const [name, dir] of oracleCases())
  replaysIdentically("oracle case", name, dir, PENDING[name]);

/**
 * The generated corpus (test/oracle/generated, written by src/oracle/generate and recorded
 * on Linux 6.12 with `passthru oracle record-all`): the same check for every case. Where
 * the model differs, the case is listed in PENDING_GENERATED with the model bug its first
 * difference shows (a key ending in "*" covers every case whose name starts with the rest).
 */
const PENDING_GENERATED: Record<string, string> = {};

const GENERATED = join(ROOT, "test", "oracle", "generated");

function pendingGenerated(name: string): string | undefined {
  if (PENDING_GENERATED[name]) return PENDING_GENERATED[name];
  const key = Object.keys(PENDING_GENERATED).find(
    (k) => k.endsWith("*") && name.startsWith(k.slice(0, -1)),
  );
  return key ? PENDING_GENERATED[key] : undefined;
}

for (const name of existsSync(GENERATED) ? readdirSync(GENERATED).sort() : [])
  replaysIdentically("generated case", name, join(GENERATED, name), pendingGenerated(name));
