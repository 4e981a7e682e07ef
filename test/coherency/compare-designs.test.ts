/**
 * `passthru compare-designs` on the shipped GPU scenario (a No Snoop GPU behind a VT-d unit
 * with Snoop Control, on a host whose second GPU sits behind one without): the three
 * columns say which calls each design's VMM made, who can turn real WBINVD on, KVM's
 * verdict, what the guest read and what its WBINVDs cost — all from running the model.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DesignComparison } from "../../src/userspace/scenario/designs.js";
import { CLI } from "../support/paths.js";
import { HOSTS, SCENARIOS } from "./support.js";

const SCENARIO = join(SCENARIOS, "coherency-compare-designs.yaml");
const PATTERN = "a5a55a5aa5a55a5aa5a55a5aa5a55a5a";

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, "compare-designs", ...args], {
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1" },
  });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

const json = run(SCENARIO, "--json");
const cmp = JSON.parse(json.out) as DesignComparison;
const [group, cdev, proposal] = cmp.designs;
const calls = (d: typeof group) => d?.calls.map((c) => `${c.call} ${c.result}`) ?? [];

test("three designs, oldest first, the proposal marked as never merged", () => {
  assert.equal(json.code, 0, json.err);
  assert.deepEqual(
    cmp.designs.map((d) => [d.design, d.profile, d.build, d.merged]),
    [
      ["group", "3.13", "debian", true],
      ["cdev", "6.12", "iommufd", true],
      ["proposal", "2021-proposal", "iommufd", false],
    ],
  );
  assert.deepEqual(
    cmp.designs.map((d) => d.failures),
    [[], [], []],
  );
});

test("the calls: group fds to kvm-vfio; cdev fds to kvm-vfio before binding; the proposal's ALLOW refused", () => {
  const g = calls(group);
  assert.ok(g.includes("VFIO_GROUP_SET_CONTAINER 0"));
  assert.ok(g.includes("KVM_DEV_VFIO_GROUP_ADD(group fd) 0"));
  assert.ok(!g.some((c) => c.includes("IOMMUFD") || c.includes("ALLOW")));
  const c = calls(cdev);
  const add = c.indexOf("KVM_DEV_VFIO_FILE_ADD(cdev fd) 0");
  assert.ok(add >= 0 && add < c.indexOf("VFIO_DEVICE_BIND_IOMMUFD 0"), c.join(", "));
  assert.ok(!c.some((x) => x.includes("GROUP") || x.includes("ALLOW")));
  const p = calls(proposal);
  assert.ok(p.includes("VFIO_DEVICE_BIND_IOMMUFD 0"));
  assert.ok(!p.some((x) => x.includes("KVM_CREATE_DEVICE") || x.includes("KVM_DEV_VFIO")));
  assert.equal(p[p.length - 1], "KVM_ALLOW_INCOHERENT_DMA(iommufd, dev_id) EPERM");
});

test("who can turn real WBINVD on: any device in 2013, only the one without Snoop Control since", () => {
  const who = (d: typeof group) =>
    d?.whoCanFlush.map((p) => [p.device, p.enables, p.by?.result ?? null]);
  assert.deepEqual(who(group), [
    ["0000:01:00.0", true, "0"],
    ["0000:02:00.0", true, "0"],
  ]);
  assert.deepEqual(who(cdev), [
    ["0000:01:00.0", false, "0"],
    ["0000:02:00.0", true, "0"],
  ]);
  assert.deepEqual(who(proposal), [
    ["0000:01:00.0", false, "EPERM"],
    ["0000:02:00.0", true, "0"],
  ]);
});

test("KVM's verdict, what the guest reads and the WBINVD cost ordering", () => {
  assert.deepEqual(
    cmp.designs.map((d) => d.kvm),
    [
      { noncoherentDmaCount: 1, wbinvd: "flush" },
      { noncoherentDmaCount: 0, wbinvd: "nop" },
      { noncoherentDmaCount: 0, wbinvd: "nop" },
    ],
  );
  for (const d of cmp.designs) assert.equal(d.guest?.reads.at(-1), PATTERN, d.design);
  const g = cmp.designs.map((d) => d.guest);
  assert.deepEqual(
    g.map((x) => [x?.wbinvdExits, x?.wbinvdExecuted, x?.hostWbinvds]),
    [
      [2, 2, 2],
      [2, 0, 0],
      [2, 0, 0],
    ],
  );
  const ns = g.map((x) => x?.ns ?? 0);
  const walk = ((2 << 20) / 64) * 0.5; // one WBINVD's walk of a 2 MiB cache (costs.ts)
  assert.ok((ns[0] as number) - (ns[1] as number) >= 2 * walk, `2013 pays two flushes: ${ns}`);
  assert.equal(ns[1], ns[2], "the current design and the proposal cost the same here");
});

test("the table puts the same facts side by side", () => {
  const r = run(SCENARIO);
  assert.equal(r.code, 0, r.err);
  const lines = r.out.split("\n");
  const header = lines.find((l) => l.includes("2013 kvm-vfio groups")) ?? "";
  assert.ok(
    header.indexOf("2013") < header.indexOf("6.12") &&
      header.indexOf("6.12") < header.indexOf("NEVER MERGED"),
    header,
  );
  const row = (label: string) => lines.find((l) => l.startsWith(label)) ?? "";
  assert.match(row("KVM verdict"), /non-coherent\s+coherent\s+coherent$/);
  assert.equal(row("guest reads").match(new RegExp(PATTERN, "g"))?.length, 3);
  assert.match(r.out, /KVM_ALLOW_INCOHERENT_DMA\(iommufd,\s*\n?.*dev_id\) → EPERM/);
  assert.match(r.out, /never merged/);
});

test("a scenario without a vmm step is an input error (exit 2, one located line)", () => {
  const dir = mkdtempSync(join(tmpdir(), "passthru-"));
  const f = join(dir, "no-vmm.yaml");
  writeFileSync(
    f,
    `name: no-vmm\nhost: ${join(HOSTS, "nsgpu-mixed.yaml")}\nsteps:\n  - { op: open, path: /dev/kvm, as: kvm }\n`,
  );
  const r = run(f);
  assert.equal(r.code, 2);
  assert.match(r.err, /no-vmm\.yaml: steps: no `vmm` step/);
  assert.equal(r.err.trim().split("\n").length, 1);
  writeFileSync(
    f,
    `name: bad-vmm\nhost: ${join(HOSTS, "nsgpu-mixed.yaml")}\nsteps:\n  - { op: vmm, assign: [{ device: "01:00.0", as: gpu }], ram: { size: 4096, as: ram } }\n`,
  );
  const r2 = run(f);
  assert.equal(r2.code, 2);
  assert.match(r2.err, /steps\[0\]\.assign\.0\.device: expected a BDF/);
});
