/**
 * Model-based fuzzing (src/userspace/fuzz): a share of the CI budget runs here (the rest,
 * 10^6 operations, is a .ci/run step), every invariant after every operation. Also: the
 * pipeline itself — a planted bug is found, shrunk to a short script that reproduces it;
 * scripts of failures that were fixed keep passing; scripts of open model bugs are kept
 * as TODO until fixed.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { FdTable } from "../../src/kernel/core/fdtable.js";
import { fuzz } from "../../src/userspace/fuzz/run.js";
import { failureKey, replayFuzzScript } from "../../src/userspace/fuzz/script.js";
import { parseScript } from "../../src/userspace/replay/script.js";
import { ROOT } from "../support/paths.js";

const HERE = join(ROOT, "test", "fuzz");
const KNOWN = JSON.parse(readFileSync(join(HERE, "known-bugs.json"), "utf8")) as {
  key: string;
  summary: string;
  script: string;
}[];

test("fuzz: 30000 operations over the whole uAPI, 0 exceptions, 0 violations", () => {
  const r = fuzz({
    calls: 30_000,
    seed: 20240601,
    outDir: null,
    shrinkMs: 20_000,
    known: KNOWN.map((k) => k.key),
  });
  const f = r.finding;
  assert.equal(f, null, f ? `${f.message}\n${f.stack ?? ""}\n${f.script}` : "");
  assert.ok(r.calls >= 30_000);
  assert.equal(r.exceptions, 0);
  assert.equal(r.violations, 0);
});

test("fuzz: a planted leak is found, shrunk to a few operations, and its script reproduces it", () => {
  // The plant: closing /dev/kvm drops the fd but never puts the file.
  const close = FdTable.prototype.close;
  FdTable.prototype.close = function (this: FdTable, fd: number): number {
    if (this.get(fd)?.ops.name === "/dev/kvm") {
      (this as unknown as { fds: Map<number, unknown> }).fds.delete(fd);
      return 0;
    }
    return close.call(this, fd);
  };
  let script: string;
  try {
    const r = fuzz({ calls: 200_000, seed: 7, outDir: null, shrinkMs: 30_000 });
    const f = r.finding;
    assert.ok(f, "found");
    script = f.script;
    assert.equal(f.kind, "violation");
    assert.match(f.message, /object-lifetime: files: 1 after everything was closed, 0 after boot/);
    assert.ok(f.operations <= 3, `shrunk to ${f.operations} operations:\n${f.script}`);
    const ops = parseScript(f.script, "planted").ops;
    assert.ok(
      ops.some((o) => o.op === "open" && o.path === "/dev/kvm"),
      f.script,
    );
    const again = replayFuzzScript(f.script, "planted");
    assert.match(again.failure?.message ?? "", /object-lifetime: files: 1/);
  } finally {
    FdTable.prototype.close = close;
  }
  // Without the plant, the same script passes.
  assert.equal(replayFuzzScript(script, "planted").failure, null);
});

test("fuzz scripts of fixed failures pass", () => {
  const dir = join(HERE, "regressions");
  const files = readdirSync(dir).filter((f) => f.endsWith(".jsonl"));
  assert.ok(files.length >= 1);
  for (const f of files) {
    const r = replayFuzzScript(readFileSync(join(dir, f), "utf8"), f);
    assert.equal(r.failure, null, `${f}: ${r.failure?.message}`);
  }
});

for (const bug of KNOWN) {
  test(`open model bug: ${bug.script}`, { todo: bug.summary }, () => {
    const text = readFileSync(join(ROOT, bug.script), "utf8");
    const r = replayFuzzScript(text, bug.script);
    assert.equal(r.failure, null, r.failure?.message);
  });
  test(`the known-bug key matches its script: ${bug.script}`, () => {
    const r = replayFuzzScript(readFileSync(join(ROOT, bug.script), "utf8"), bug.script);
    // Once fixed, this fails: delete the entry from known-bugs.json and move the script
    // to regressions/.
    assert.ok(r.failure, "still fails");
    assert.equal(failureKey(r.failure), bug.key);
  });
}
