/**
 * Differential check against the kernel this machine runs: a small native helper
 * (native/kvm-script, built here with the machine's C compiler) runs KVM syscall scripts on
 * the real /dev/kvm — the kvm-vfio device is built into KVM, with or without VFIO — and
 * the model must print the same result lines. The scripts: the oracle's kvm-create-device
 * case, and this directory's host-kvm/*.jsonl (the KVM-only part of the oracle's
 * kvm-vfio-group case, memory slots, vCPU request dispatch).
 *
 * Skipped, saying why, where there is no usable /dev/kvm or no C compiler.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadHost } from "../../src/host/load.js";
import { loadScript, replay } from "../../src/userspace/replay/replay.js";
import { ROOT } from "../support/paths.js";

const SCRIPTS = [
  join(ROOT, "test", "oracle", "cases", "kvm-create-device", "script.jsonl"),
  ...readdirSync(join(ROOT, "test", "coherency", "host-kvm"))
    .filter((n) => n.endsWith(".jsonl"))
    .sort()
    .map((n) => join(ROOT, "test", "coherency", "host-kvm", n)),
];

/** Why the real kernel cannot be asked, or null. */
function unusable(): string | null {
  if (!existsSync("/dev/kvm")) return "no /dev/kvm on this machine";
  try {
    closeSync(openSync("/dev/kvm", "r+"));
  } catch (e) {
    return `/dev/kvm cannot be opened read-write (${(e as NodeJS.ErrnoException).code})`;
  }
  if (spawnSync("cc", ["--version"]).status !== 0) return "no C compiler (cc) to build the helper";
  return null;
}

const why = unusable();

test(
  "the host kernel and the model answer the KVM scripts line for line",
  { skip: why ?? false },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "passthru-kvm-"));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const helper = join(dir, "kvm-script");
    execFileSync("cc", [
      "-std=gnu11",
      "-O2",
      "-Wall",
      "-Werror",
      "-o",
      helper,
      join(ROOT, "native", "kvm-script", "kvm-script.c"),
    ]);
    const host = await loadHost(join(ROOT, "examples", "hosts", "nsgpu-vtd.yaml"));
    for (const script of SCRIPTS) {
      const real = execFileSync(helper, [script], { encoding: "utf8" }).trimEnd().split("\n");
      const model = replay(host, loadScript(script));
      assert.equal(model.length, real.length, `${script}: one line per operation`);
      for (let i = 0; i < real.length; i++)
        assert.equal(model[i], real[i], `${script} line ${i + 1}`);
    }
  },
);

test("the KVM-only script agrees with the oracle's recording of the same requests", async () => {
  // host-kvm/kvm-vfio-nonvfio-files repeats requests of the recorded kvm-vfio-group case;
  // the model's answers to them must be the ones Linux 6.12 gave there.
  const recorded = readFileSync(
    join(ROOT, "test", "oracle", "cases", "kvm-vfio-group", "expected.jsonl"),
    "utf8",
  )
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const host = await loadHost(join(ROOT, "examples", "hosts", "nsgpu-vtd.yaml"));
  const model = replay(
    host,
    loadScript(join(ROOT, "test", "coherency", "host-kvm", "kvm-vfio-nonvfio-files.jsonl")),
  ).map((l) => JSON.parse(l) as Record<string, unknown>);
  // [line of the recording, line of ours]: FILE_ADD of a proc file, an eventfd, the kvm-vfio
  // fd, /dev/kvm, fd -1, fd 1000, a NULL addr; FILE_DEL of a never-added file, -1, NULL.
  const pairs = [
    [26, 6],
    [27, 7],
    [28, 8],
    [29, 9],
    [30, 11],
    [31, 12],
    [32, 13],
    [35, 15],
    [36, 17],
    [37, 18],
  ] as const;
  for (const [rec, ours] of pairs) {
    const a = recorded[rec - 1] as Record<string, unknown>;
    const b = model[ours - 1] as Record<string, unknown>;
    assert.deepEqual(
      [b.req, b.ret, b.errno],
      [a.req, a.ret, a.errno],
      `recorded ${rec}, ours ${ours}`,
    );
  }
});
