/**
 * `passthru analyze`, question by question, on real hosts (lspci fixtures, snapshots recorded
 * on Linux 6.12) and the built-in ones: which devices must go with the GPU and why; whether
 * the group is viable and what must be unbound; resets; the ACS override; slots; identical
 * devices; WBINVD. Plus the report's shapes (text, --json, --markdown) and exit codes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { loadHost } from "../../src/host/load.js";
import { analyzeHost } from "../../src/userspace/analyze/analyze.js";
import { oracleCases, lspciFixtures } from "../support/paths.js";
import { fakeRoot, fixture, json, run, snapshotOf } from "./support.js";
import { join } from "node:path";

interface Answer {
  key: string;
  question: string;
  verdict: string;
  lines: string[];
  data: Record<string, unknown>;
}
interface Report {
  host: string;
  groups: {
    id: number;
    devices: string[];
    kernel: string[] | null;
    matchesKernel: boolean | null;
    viableNow: boolean;
    viability: { bdf: string; driver: string | null; role: string; status: string }[];
    reservedRegions: { type: string }[];
  }[];
  devices: {
    bdf: string;
    reset: { methods: string[] | null; source: string; observed?: string[]; busScope?: unknown };
  }[];
  units: {
    name: string;
    snoopControl: boolean | null;
    wbinvd: string;
    interruptRemapping: boolean | null;
  }[];
  interruptRemapping: { enabled: boolean | null };
  questions: { targets: string[]; perTarget: { device: string; answers: Answer[] }[] };
}

function answers(args: string[]): Map<string, Answer> {
  const r = json<Report>(["analyze", ...args]);
  assert.equal(r.questions.perTarget.length, 1, "one device asked about");
  return new Map(r.questions.perTarget[0]?.answers.map((a) => [a.key, a]));
}

test("Cezanne laptop: the iGPU needs 9 other functions, because the 00:08.1 bridge lacks ACS", () => {
  const a = answers([fixture("amd-cezanne-rog-flow-x13")]);
  const c = a.get("companions") as Answer;
  assert.match(c.question, /Which devices must go with 08:00\.0/);
  const others = c.data.others as string[];
  assert.equal(others.length, 9);
  assert.deepEqual(others, [
    "0000:00:08.0",
    "0000:00:08.1",
    ...[1, 2, 3, 4, 5, 6, 7].map((f) => `0000:08:00.${f}`),
  ]);
  assert.deepEqual(c.data.staysOnHost, ["0000:00:08.0", "0000:00:08.1"]);
  assert.match(c.verdict, /^9 other functions share group \d+; 7 of them go to the guest/);
  assert.match(
    c.lines.join("\n"),
    /00:08\.1 does not isolate the devices below \(00:08\.1: no ACS capability\)/,
  );
  // The kernel put them together too.
  assert.deepEqual(
    c.data.kernel,
    ["0000:00:08.0", "0000:00:08.1", ...others.slice(2), "0000:08:00.0"].sort(),
  );
  const v = a.get("viability") as Answer;
  assert.match(
    v.verdict,
    /^not viable yet: unbind 08:00\.0 \(amdgpu\), 08:00\.1 \(snd_hda_intel\), 08:00\.2 \(ccp\)/,
  );
});

test("B550: the Navi GPU is alone in its group (its switch ports and functions carry ACS)", () => {
  const a = answers([fixture("amd-vermeer-b550-aorus-elite-ax-v2")]);
  const c = a.get("companions") as Answer;
  assert.deepEqual(c.data.others, []);
  assert.match(c.verdict, /^08:00\.0 is alone in group \d+$/);
  assert.match(
    (a.get("slot") as Answer).verdict,
    /^stay: the current port already gives it a group of its own/,
  );
  // Navi has no FLR, ATI VGA gets no PM reset off the root bus, and "bus" fails with 08:00.1 on the bus.
  const r = a.get("reset") as Answer;
  assert.match(
    r.verdict,
    /has no working reset of its own — only a hot reset of the bus below 07:00\.0/,
  );
  assert.match(
    r.lines.join("\n"),
    /"bus" is listed because the kernel probed it before 08:00\.1 joined the bus/,
  );
});

test("X399: group 0 holds 16 functions, the chipset and everything behind it, with no ACS anywhere", () => {
  const r = json<Report>([
    "analyze",
    fixture("amd-zen1-threadripper-x399-aorus-pro"),
    "--device",
    "09:00.0",
  ]);
  const g0 = r.groups.find((g) => g.devices.includes("0000:00:01.0"));
  assert.equal(g0?.devices.length, 16);
  assert.equal(g0?.matchesKernel, true, "same membership as the kernel's group");
  const c = r.questions.perTarget[0]?.answers.find((x) => x.key === "companions") as Answer;
  assert.equal((c.data.others as string[]).length, 15);
  // The empty chipset downstream ports: a card there would share the chipset's group (what-if).
  const slot = r.questions.perTarget[0]?.answers.find((x) => x.key === "slot") as Answer;
  const ports = slot.data.ports as {
    port: string;
    occupiedBy: string[];
    isolated: boolean;
    sharesWith: string[];
  }[];
  const empty = ports.find((p) => p.port === "0000:02:02.0");
  assert.deepEqual(empty?.occupiedBy, []);
  assert.equal(empty?.isolated, false);
  assert.ok(empty?.sharesWith.includes("0000:01:00.0"));
});

test("group-nonviable snapshot: per group, who holds it and what must be unbound", () => {
  const r = json<Report>(["analyze", snapshotOf("group-nonviable")]);
  const byMember = (b: string) => r.groups.find((g) => g.devices.includes(b));
  const legacy = byMember("0000:04:01.0");
  assert.deepEqual(
    legacy?.viability.map((v) => [v.bdf, v.driver, v.role, v.status]),
    [
      ["0000:03:00.0", null, "stays", "ok"],
      ["0000:04:01.0", "e1000", "pass", "must-unbind"],
      ["0000:04:02.0", "8139cp", "pass", "must-unbind"],
    ],
  );
  assert.equal(legacy?.viableNow, false);
  const port = byMember("0000:05:00.0");
  assert.deepEqual(
    port?.viability.map((v) => [v.bdf, v.driver, v.status]),
    [
      ["0000:00:03.0", "pcieport", "ok"],
      ["0000:05:00.0", "e1000", "must-unbind"],
      ["0000:05:00.1", "e1000", "must-unbind"],
    ],
  );
  const lpc = byMember("0000:00:1f.0");
  assert.equal(lpc?.viableNow, true, "unbound functions do not block a group");
  assert.deepEqual(
    lpc?.reservedRegions.map((x) => x.type),
    ["direct-relaxable", "msi"],
    "the ISA bridge's floppy region, read from the model's reserved_regions",
  );
  for (const g of r.groups)
    assert.equal(g.matchesKernel, true, `group ${g.id} as the kernel formed it`);
  const text = run(["analyze", snapshotOf("group-nonviable"), "--device", "04:01.0"]).out;
  assert.match(text, /not viable: unbind 04:01\.0 \(e1000\), unbind 04:02\.0 \(8139cp\)/);
});

test("WBINVD: ECAP.SC off (container-extensions-nosnoop) means emulation; on (container-extensions) means none", () => {
  const off = json<Report>([
    "analyze",
    snapshotOf("container-extensions-nosnoop"),
    "--device",
    "01:00.0",
  ]);
  const on = json<Report>(["analyze", snapshotOf("container-extensions"), "--device", "01:00.0"]);
  assert.deepEqual(
    off.units.map((u) => [u.name, u.snoopControl, u.wbinvd]),
    [["dmar0", false, "emulated"]],
  );
  assert.deepEqual(
    on.units.map((u) => [u.name, u.snoopControl, u.wbinvd]),
    [["dmar0", true, "not-needed"]],
  );
  const w = (r: Report) =>
    r.questions.perTarget[0]?.answers.find((a) => a.key === "wbinvd") as Answer;
  assert.match(w(off).verdict, /^yes: dmar0 lacks Snoop Control, so KVM emulates WBINVD/);
  assert.match(w(off).lines.join("\n"), /flush of the caches of every CPU/);
  assert.match(w(on).verdict, /^no: dmar0 enforces cache coherency/);
  assert.equal(
    on.interruptRemapping.enabled,
    true,
    "ECAP.IR (bit 3) set in QEMU's intel-iommu,intremap=on",
  );
});

test("WBINVD on the built-in hosts: desktop iGPU behind dmar0 (no SC) vs dGPU behind dmar1; AMD always coherent", () => {
  const d = json<Report>(["analyze", "desktop"]);
  const verdict = (dev: string) =>
    d.questions.perTarget.find((t) => t.device === dev)?.answers.find((a) => a.key === "wbinvd")
      ?.verdict;
  assert.match(verdict("0000:00:02.0") ?? "", /^yes: dmar0/);
  assert.match(verdict("0000:01:00.0") ?? "", /^no: dmar1/);
  const apu = json<Report>(["analyze", "amd-apu"]);
  assert.deepEqual(
    apu.units.map((u) => u.wbinvd),
    ["not-needed"],
  );
  // lspci text has no ECAP: unknown, not guessed.
  const nuc = json<Report>(["analyze", fixture("intel-tigerlake-nuc11")]);
  assert.ok(nuc.units.every((u) => u.wbinvd === "unknown" && u.snoopControl === null));
});

test("ACS override: always no, and what it would fake on the desktop GPU", () => {
  const a = answers(["desktop", "--device", "01:00.0"]);
  const o = a.get("acs-override") as Answer;
  assert.equal(o.verdict, "No.");
  assert.deepEqual(o.data.after, ["0000:01:00.0"]);
  assert.deepEqual(o.data.fakeSplit, ["0000:00:01.0", "0000:01:00.1"]);
  assert.match(o.lines.join("\n"), /The isolation is fake/);
  const alone = answers([fixture("amd-vermeer-b550-aorus-elite-ax-v2")]).get(
    "acs-override",
  ) as Answer;
  assert.match(alone.lines[0] ?? "", /would not change group \d+: the device is already alone/);
});

test("slots: on the desktop, 00:1c.0 and 00:1c.4 share a group; 00:01.0 and 00:1b.0 isolate", () => {
  const a = answers(["desktop", "--device", "01:00.0"]);
  const s = a.get("slot") as Answer;
  const ports = s.data.ports as { port: string; isolated: boolean; sharesWith: string[] }[];
  const v = Object.fromEntries(ports.map((p) => [p.port, p.isolated]));
  assert.deepEqual(v, {
    "0000:00:01.0": true,
    "0000:00:1b.0": true,
    "0000:00:1c.0": false,
    "0000:00:1c.4": false,
  });
  assert.deepEqual(ports.find((p) => p.port === "0000:00:1c.0")?.sharesWith, ["0000:05:00.0"]);
  // Empty ports judged by the what-if card: the C266 server's 00:1b.0 is free and isolating.
  const c266 = answers([fixture("intel-raptorlake-c266-ec266d4")]).get("slot") as Answer;
  const free = (
    c266.data.ports as { port: string; occupiedBy: string[]; isolated: boolean }[]
  ).find((p) => p.port === "0000:00:1b.0");
  assert.deepEqual([free?.occupiedBy, free?.isolated], [[], true]);
  assert.match(c266.lines.join("\n"), /00:1b\.0 \(root port\): empty/);
});

test("identical devices: one of three e1000s is bound by driver_override, never by vfio-pci.ids", () => {
  const a = answers([snapshotOf("group-nonviable"), "--device", "04:01.0"]);
  const i = a.get("identical") as Answer;
  assert.deepEqual(i.data.sameIdElsewhere, ["0000:05:00.0", "0000:05:00.1"]);
  assert.match(
    i.verdict,
    /^use driver_override on 04:01\.0, not vfio-pci\.ids \(3 devices share 8086:100e\)/,
  );
  assert.ok(
    i.lines.includes("  echo vfio-pci > /sys/bus/pci/devices/0000:04:01.0/driver_override"),
  );
});

test("reset methods (reported and derived from config space) equal the real kernel's reset_method in every recorded snapshot", async () => {
  let compared = 0;
  for (const [name, dir] of oracleCases()) {
    const host = await loadHost(join(dir, "snapshot.tar.gz"));
    const a = await analyzeHost(host);
    for (const d of a.report.devices) {
      if (d.reset.observed === undefined) continue;
      // What the report says (the model's reset_method when it has one) and what the
      // config-space rules give on their own must both be what the real kernel listed.
      assert.deepEqual(d.reset.methods, d.reset.observed, `${name} ${d.bdf}: ${d.reset.source}`);
      assert.deepEqual(d.reset.derived, d.reset.observed, `${name} ${d.bdf}: derived`);
      compared++;
    }
  }
  assert.ok(compared >= 100, `compared ${compared} functions`);
});

test("every real host and built-in host analyses without error, one GPU question set per display controller", () => {
  const inputs = [...lspciFixtures().values(), "desktop", "server", "amd-apu"];
  for (const input of inputs) {
    const r = run(["analyze", input, "--json"]);
    assert.equal(r.code, 0, `${input}: ${r.err}`);
    const j = JSON.parse(r.out) as Report;
    for (const t of j.questions.perTarget)
      assert.deepEqual(
        t.answers.map((x) => x.key),
        ["companions", "viability", "reset", "acs-override", "slot", "identical", "wbinvd"],
      );
    assert.ok(j.questions.targets.length > 0, `${input} has a GPU`);
  }
});

test("--markdown: headings per question, a group table, nothing coloured", () => {
  const r = run(["analyze", "desktop", "--device", "01:00.0", "--markdown"]);
  assert.equal(r.code, 0);
  assert.match(r.out, /^## passthru analyze: desktop\n/);
  assert.match(r.out, /\| group \| device \| id \| class \| driver \| reset \| note \|/);
  for (let i = 1; i <= 7; i++) assert.match(r.out, new RegExp(`^#### ${i}\\. `, "m"));
  assert.match(
    r.out,
    /#### 4\. Should I use the ACS override patch \(pcie_acs_override\)\?\n\n\*\*No\.\*\*/,
  );
  assert.ok(!r.out.includes("\u001b["));
});

test("text report: group lines flag differences from the kernel and the questions are labelled", () => {
  const r = run(["analyze", "amd-apu"]);
  assert.equal(r.code, 0);
  assert.match(r.out, /^amd-apu: 9 IOMMU groups, 28 PCI functions/);
  assert.match(r.out, /Questions about 0000:03:00\.0 \(Cezanne \[Radeon Vega Series\]\)/);
  assert.match(r.out, /^1\. Which devices must go with 03:00\.0, and why\?$/m);
  assert.match(r.out, /^7\. Will a guest given 03:00\.0 need WBINVD emulation\?$/m);
  assert.match(r.out, /not viable: unbind 03:00\.0 \(amdgpu\)/);
});

test("usage errors: unknown device, INPUT with --live, --json with --markdown — one line, exit 2", () => {
  for (const args of [
    ["analyze", "desktop", "--device", "07:00.0"],
    ["analyze", "desktop", "--device", "nonsense"],
    ["analyze", "desktop", "--live"],
    ["analyze", "desktop", "--json", "--markdown"],
  ]) {
    const r = run(args);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.err}`);
    assert.equal(r.err.trim().split("\n").length, 1);
    assert.doesNotMatch(r.err, /\n\s+at /);
  }
});

test("--live reads this machine's /sys (here a fake one) like a snapshot, observed reset methods included", async () => {
  const root = await fakeRoot(snapshotOf("group-nonviable"));
  const r = run(["analyze", "--live", "--root", root, "--json"]);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out) as Report;
  assert.equal(j.host, "this host");
  assert.equal(j.groups.length, 10);
  assert.ok(j.groups.every((g) => g.matchesKernel === true));
  const nvme = j.devices.find((d) => d.bdf === "0000:02:00.0");
  assert.deepEqual(nvme?.reset.observed, ["flr", "bus"]);
});
