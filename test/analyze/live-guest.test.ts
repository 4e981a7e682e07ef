/**
 * `snapshot`, `analyze --live` and `plan --apply/--undo` on a real Linux 6.12: passthru
 * itself (bundled, with this machine's node) runs as root in a QEMU guest booted by the
 * oracle (src/oracle/exec.ts) with the `small` topology — VT-d, two PCIe root ports, an NVMe
 * at 01:00.0 and an e1000e at 02:00.0 (test/oracle/cases/device-info/case.json). What passthru
 * says is checked against the guest kernel's own sysfs, and viability against the kernel's
 * own VFIO_GROUP_GET_STATUS (the oracle agent, already in the guest). One boot; TCG unless
 * PASSTHRU_ORACLE_ACCEL=kvm. Skipped, saying what is missing, where the guest cannot boot.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { accessSync, constants, existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { guestExec, loadCaseSpec, type CommandResult } from "../../src/oracle/exec.js";
import { passthruFiles } from "../../src/oracle/guest-passthru.js";
import { installed, RUN_PACKAGES } from "../../src/oracle/packages.js";
import { compile, extractAnswers, formatResults } from "../../src/oracle/program.js";
import { sameSnapshot } from "../../src/oracle/record.js";
import { parseScript } from "../../src/userspace/replay/script.js";
import { oracleCases } from "../support/paths.js";

const CASE = oracleCases().get("device-info") as string;
const DEV = "0000:02:00.0";
const SYSDEV = `/sys/bus/pci/devices/${DEV}`;

const esbuild = await import("esbuild").then(
  () => true,
  () => false,
);

/** Why the guest cannot run here, or null. */
function missing(): string | null {
  if (!esbuild)
    return "no esbuild to bundle passthru for the guest (a development dependency: npm ci)";
  if (process.platform !== "linux" || process.arch !== "x64") return "needs Linux on x86_64";
  if (process.getuid?.() !== 0)
    return "needs root (Debian's /boot/vmlinuz-* are readable by root only)";
  const absent = RUN_PACKAGES.filter((p) => !installed(p));
  if (absent.length) return `missing Debian packages: ${absent.join(" ")}`;
  if (!existsSync("/boot") || !readdirSync("/boot").some((n) => n.startsWith("vmlinuz-6.12")))
    return "no /boot/vmlinuz-6.12* (Debian package linux-image-6.12-amd64)";
  if (spawnSync("ldd", [process.execPath]).status !== 0) return "ldd cannot read node's libraries";
  if (process.env.PASSTHRU_ORACLE_ACCEL === "kvm")
    try {
      accessSync("/dev/kvm", constants.R_OK | constants.W_OK);
    } catch {
      return "PASSTHRU_ORACLE_ACCEL=kvm but /dev/kvm is not usable";
    }
  if (!existsSync(join(CASE, "case.json"))) return `no case ${CASE}`;
  return null;
}

/** The kernel's answer to VFIO_GROUP_GET_STATUS on /tmp/vfio-group (a link to /dev/vfio/N). */
const VIABLE = compile(
  parseScript(
    [
      '{"script":1,"name":"viable"}',
      '{"op":"open","path":"/tmp/vfio-group","flags":["O_RDWR","O_CLOEXEC"],"as":"g"}',
      '{"op":"ioctl","fd":"$g","req":"VFIO_GROUP_GET_STATUS","nr":"0x3b67","arg":{"struct":[["u32","argsz",8],["u32","flags",0]]}}',
    ].join("\n"),
    "viable.jsonl",
  ),
);

/** The guest kernel's view of DEV: driver, group, each member's driver, /dev/vfio. */
const STATE = [
  `d=${SYSDEV}; g=$(basename "$(readlink $d/iommu_group)")`,
  'if [ -e $d/driver ]; then echo "driver $(basename "$(readlink $d/driver)")"; else echo "driver none"; fi',
  'echo "group $g"',
  "for m in /sys/kernel/iommu_groups/$g/devices/*; do",
  '  if [ -e $m/driver ]; then echo "member ${m##*/} $(basename "$(readlink $m/driver)")"; else echo "member ${m##*/} none"; fi',
  "done",
  'echo "vfio $(ls /dev/vfio | tr "\\n" " ")"',
].join("\n");

const COMMANDS = {
  snapshot: "passthru snapshot -o /tmp/node.tar.gz",
  script: "passthru snapshot --script > /tmp/snap.sh && sh /tmp/snap.sh -o /tmp/script.tar.gz",
  analyze: "passthru analyze --live --json",
  kernelGroups:
    'cd /sys/kernel/iommu_groups && for g in *; do echo "$g $(ls $g/devices | tr "\\n" " ")"; done',
  before: STATE,
  apply: `passthru plan ${DEV} --apply --yes`,
  applied: STATE,
  viable: `ln -s /dev/vfio/$(basename "$(readlink ${SYSDEV}/iommu_group)") /tmp/vfio-group && /agent /viable.program`,
  undo: `passthru plan ${DEV} --undo --yes`,
  undone: STATE,
};
type Step = keyof typeof COMMANDS;

interface State {
  driver: string;
  group: number;
  members: Map<string, string>;
  vfio: string[];
}

function state(r: CommandResult): State {
  const s: State = { driver: "", group: -1, members: new Map(), vfio: [] };
  for (const l of r.stdout.trim().split("\n")) {
    const [k, ...v] = l.trim().split(/\s+/);
    if (k === "driver") s.driver = v[0] ?? "";
    if (k === "group") s.group = Number(v[0]);
    if (k === "member") s.members.set(v[0] as string, v[1] as string);
    if (k === "vfio") s.vfio = v;
  }
  return s;
}

test(
  "in a guest on Linux 6.12: analyze --live sees the kernel's groups, plan --apply hands the e1000e to vfio-pci, --undo gives it back",
  { skip: missing() ?? false, timeout: 600_000 },
  async () => {
    const steps = Object.keys(COMMANDS) as Step[];
    const files = await passthruFiles();
    files.push({ name: "viable.program", kind: "file", data: Buffer.from(VIABLE.text) });
    const accel = process.env.PASSTHRU_ORACLE_ACCEL === "kvm" ? "kvm" : "tcg";
    const run = await guestExec({
      name: "live-guest",
      spec: loadCaseSpec(CASE),
      commands: steps.map((s) => COMMANDS[s]),
      files,
      fetch: ["/tmp/node.tar.gz", "/tmp/script.tar.gz"],
      accel,
      timeoutMs: 480_000,
    });
    const out = new Map(steps.map((s, i) => [s, run.commands[i] as CommandResult]));
    const ok = (s: Step) => {
      const r = out.get(s) as CommandResult;
      assert.equal(r.status, 0, `${s} (${r.command}) exited ${r.status}: ${r.stderr}${r.stdout}`);
      return r;
    };
    const see = `(guest console: ${run.workDir}/console.log)`;

    // Both captures of the guest hold the same files, links and bytes.
    ok("snapshot");
    ok("script");
    const node = run.files.get("/tmp/node.tar.gz");
    const script = run.files.get("/tmp/script.tar.gz");
    assert.ok(node && script, `both snapshots came back ${see}`);
    assert.ok(await sameSnapshot(node, script), "passthru snapshot = passthru-snapshot.sh");

    // analyze --live: the groups it derives are the kernel's /sys/kernel/iommu_groups.
    const report = JSON.parse(ok("analyze").stdout) as {
      groups: { id: number; devices: string[]; matchesKernel: boolean | null }[];
      comparison?: { differences: unknown[] };
    };
    const kernelGroups = new Map(
      ok("kernelGroups")
        .stdout.trim()
        .split("\n")
        .map((l) => {
          const [id, ...devs] = l.trim().split(/\s+/);
          return [Number(id), devs.sort()] as const;
        }),
    );
    assert.ok(kernelGroups.size >= 6, `the kernel formed its groups ${see}`);
    assert.deepEqual(
      new Map(report.groups.map((g) => [g.id, [...g.devices].sort()])),
      kernelGroups,
    );
    assert.deepEqual(
      report.groups.filter((g) => g.matchesKernel !== true).map((g) => g.id),
      [],
      "every group is compared with the kernel's and matches",
    );

    // Before: a host driver holds the e1000e, and no VFIO group exists.
    const before = state(ok("before"));
    assert.notEqual(before.driver, "none", "a host driver is bound before");
    assert.notEqual(before.driver, "vfio-pci");
    assert.deepEqual(before.vfio, ["vfio"], "only the container node before");

    // After --apply: bound to vfio-pci, the group's node exists, every member is vfio-pci or
    // driverless, and the kernel says the group is viable.
    const applied = ok("apply");
    assert.match(applied.stdout, new RegExp(`${DEV}: vfio-pci`));
    const after = state(ok("applied"));
    assert.equal(after.driver, "vfio-pci", applied.stdout);
    assert.equal(after.group, before.group);
    assert.ok(after.vfio.includes(String(after.group)), `/dev/vfio/${after.group} exists`);
    for (const [m, drv] of after.members)
      assert.ok(drv === "vfio-pci" || drv === "none", `${m} is bound to ${drv}`);
    const viable = ok("viable");
    const { answers, error } = extractAnswers(viable.stdout, VIABLE.plans.length);
    assert.equal(error, undefined, viable.stdout + viable.stderr);
    const status = JSON.parse(formatResults(VIABLE, answers)[1] as string) as {
      ret: number;
      out: { flags: number };
    };
    assert.equal(status.ret, 0);
    assert.equal(status.out.flags & 1, 1, "VFIO_GROUP_FLAGS_VIABLE");

    // After --undo: the original driver again.
    // the writes it shows are shell lines that do the same (echo > clears the override)
    assert.match(ok("undo").stdout, new RegExp(`^  echo > ${SYSDEV}/driver_override `, "m"));
    const undone = state(ok("undone"));
    assert.equal(undone.driver, before.driver);
    assert.deepEqual(undone.members, before.members);
  },
);
