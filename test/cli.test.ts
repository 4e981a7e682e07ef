/**
 * The command line as users see it: output, --json shape, exit codes (0 ok, 1 findings,
 * 2 usage/input error), and located one-line errors for bad input — never a stack trace.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLI, ROOT, oracleCases } from "./support/paths.js";

function run(...args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1" },
  });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

function tmp(name: string, content: string | Buffer): string {
  const dir = mkdtempSync(join(tmpdir(), "passthru-"));
  const f = join(dir, name);
  writeFileSync(f, content);
  return f;
}

function inputError(r: ReturnType<typeof run>, pattern: RegExp): void {
  assert.equal(r.code, 2, `exit code 2, stderr: ${r.err}`);
  assert.match(r.err, pattern);
  assert.doesNotMatch(r.err, /\n\s+at /, "no stack trace");
  assert.equal(r.err.trim().split("\n").length, 1, "one line");
}

test("groups on the built-in desktop: GPU, audio and PEG port share a group, with the reason", () => {
  const r = run("groups", "desktop");
  assert.equal(r.code, 0);
  const block = r.out.split("\n\n").find((b) => b.includes("0000:01:00.0")) ?? "";
  assert.match(
    block,
    /^group \d+ \[dmar1\] 00:01\.0 does not isolate the devices below \(00:01\.0: no ACS capability\)/,
  );
  for (const bdf of ["0000:00:01.0", "0000:01:00.0", "0000:01:00.1"])
    assert.ok(block.includes(bdf), bdf);
  assert.ok(!r.out.includes("\u001b["), "no colour without a TTY");
});

test("groups --json: full BDFs, reasons as data", () => {
  const r = run("groups", "desktop", "--json");
  assert.equal(r.code, 0);
  const j = JSON.parse(r.out) as {
    groups: { id: number; devices: string[]; reasons: { code: string; other?: string }[] }[];
  };
  const gpu = j.groups.find((g) => g.devices.includes("0000:01:00.0"));
  assert.deepEqual(gpu?.devices, ["0000:00:01.0", "0000:01:00.0", "0000:01:00.1"]);
  // The port founds the group (nothing above it fails); GPU and audio join through it.
  assert.deepEqual(
    gpu?.reasons.map((x) => [x.code, x.other]),
    [
      ["ISOLATED", undefined],
      ["ACS_PATH", "0000:00:01.0"],
      ["ACS_PATH", "0000:00:01.0"],
    ],
  );
  assert.ok(gpu?.reasons.some((x) => x.code === "ACS_PATH"));
  const pchRoot = j.groups.find((g) => g.devices.includes("0000:00:1c.0"));
  assert.ok(pchRoot?.devices.includes("0000:00:1c.4") && pchRoot.devices.includes("0000:04:01.0"));
  const nvme = j.groups.find((g) => g.devices.includes("0000:02:00.0"));
  assert.deepEqual(nvme?.devices, ["0000:02:00.0"]);
});

test("groups --explain prints the chain behind one device", () => {
  const r = run("groups", "desktop", "--explain", "01:00.1");
  assert.equal(r.code, 0);
  assert.match(r.out, /0000:01:00\.1 is in IOMMU group \d+/);
  assert.match(
    r.out,
    /\[ACS_PATH\] 00:01\.0 \(root port\) does not isolate what is below it: no ACS capability/,
  );
  const j = JSON.parse(run("groups", "desktop", "--explain", "0000:04:00.0", "--json").out) as {
    decided: { code: string; other: string };
  };
  assert.equal(j.decided.code, "BEHIND_PCI_BRIDGE");
  assert.equal(j.decided.other, "0000:03:00.0");
});

test("--acs-override shows the split and says the isolation is fake", () => {
  const r = run("groups", "desktop", "--acs-override");
  assert.equal(r.code, 0);
  assert.match(r.out, /would split into/);
  assert.match(r.out, /\{ 0000:01:00\.0 \}/);
  assert.match(r.out, /The isolation is fake/);
});

test("a snapshot's groups are compared with the kernel's", () => {
  const snap = join(oracleCases().get("group-acs") as string, "snapshot.tar.gz");
  const r = run("groups", snap);
  assert.equal(r.code, 0);
  assert.match(r.out, /Same groups as the kernel reported/);
});

test("usage errors exit 2", () => {
  inputError(run("frobnicate"), /unknown command/);
  inputError(run("groups", "desktop", "--bogus"), /unknown option/);
  inputError(run("groups", "desktop", "--explain", "zz:zz"), /expected a PCI address/);
  inputError(
    run("groups", "desktop", "--explain", "0000:09:00.0"),
    /no PCI function 0000:09:00\.0/,
  );
  inputError(run("groups", "/nonexistent/host.yaml"), /no such file, directory or built-in host/);
});

test("a YAML host with a wrong field: file, line and field", () => {
  const f = tmp("bad.yaml", 'name: t\nfunctions:\n  - addr: "0000:00:01.0"\n    pcie: rootport\n');
  inputError(run("groups", f), /bad\.yaml:4: functions\[0\]\.pcie: Invalid option/);
  const g = tmp("bad2.yaml", 'functions:\n  - addr: "0000:00:01.0"\n    colour: red\n');
  inputError(run("groups", g), /bad2\.yaml:2: functions\[0\]: Unrecognized key: "colour"/);
  const h = tmp("bad3.yaml", "functions: [\n");
  inputError(run("groups", h), /bad3\.yaml:\d+: not valid YAML\/JSON/);
});

test("cyclic and conflicting bus numbers are refused", () => {
  const cyc = tmp(
    "cycle.yaml",
    [
      "functions:",
      '  - { addr: "0000:00:00.0", class: "060000" }',
      '  - { addr: "0000:01:00.0", header: bridge, secondary: 2, subordinate: 2 }',
      '  - { addr: "0000:02:00.0", header: bridge, secondary: 1, subordinate: 1 }',
      "",
    ].join("\n"),
  );
  inputError(
    run("groups", cyc),
    /cycle\.yaml:4: functions\[2\]\.secondary: bridge 0000:02:00\.0 on bus 02 has bus 01 as secondary bus: a loop/,
  );
  const dup = tmp(
    "dup.yaml",
    [
      "functions:",
      '  - { addr: "0000:00:01.0", header: bridge, secondary: 1, subordinate: 1 }',
      '  - { addr: "0000:00:02.0", header: bridge, secondary: 1, subordinate: 1 }',
      "",
    ].join("\n"),
  );
  inputError(
    run("groups", dup),
    /dup\.yaml:3: functions\[1\]\.secondary: bus 01 is the secondary bus of both/,
  );
});

test("truncated config space in a snapshot directory is refused with its path", () => {
  const root = mkdtempSync(join(tmpdir(), "passthru-snap-"));
  const dev = join(root, "sys/devices/pci0000:00/0000:00:00.0");
  mkdirSync(dev, { recursive: true });
  mkdirSync(join(root, "sys/bus/pci/devices"), { recursive: true });
  writeFileSync(join(dev, "config"), Buffer.alloc(100));
  symlinkSync(
    "../../../devices/pci0000:00/0000:00:00.0",
    join(root, "sys/bus/pci/devices/0000:00:00.0"),
  );
  inputError(run("groups", root), /config: config holds 100 bytes; expected 64, 128, 256 or 4096/);
});

test("a truncated snapshot archive is refused", () => {
  const snap = join(oracleCases().get("group-acs") as string, "snapshot.tar.gz");
  const bytes = readFileSync(snap);
  inputError(
    run("groups", tmp("cut.tar.gz", bytes.subarray(0, bytes.length >> 1))),
    /cut\.tar\.gz: not a readable/,
  );
});

test("garbage lspci text gets a located error", () => {
  inputError(
    run(
      "groups",
      tmp("garbage.txt", Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0, 1, 2, 3, 0xff, 0xfe])),
    ),
    /garbage\.txt/,
  );
  const trunc =
    "00:00.0 Host bridge [0600]: Intel Corporation Device [8086:3e30]\n\n00:01.0 PCI bridge [0604]: Intel Corpor\n";
  inputError(run("groups", tmp("trunc.txt", trunc)), /trunc\.txt:3/);
});

test("non-root lspci: unknown verdicts are said to be unknown, and the kernel's groups stand", () => {
  // The nuc11 fixture with every capability block replaced by "<access denied>".
  const f = join(ROOT, "test", "fixtures", "lspci-nonroot", "intel-tigerlake-nuc11-nonroot.txt");
  const r = run("groups", f);
  assert.equal(r.code, 0, "differences caused by missing data are not findings");
  assert.match(r.out, /Capabilities were not readable/);
  const j = JSON.parse(run("groups", f, "--json").out) as {
    comparison: { differences: { unknownCaps: boolean }[]; unexplained: number };
  };
  assert.ok(j.comparison.differences.length > 0);
  assert.ok(j.comparison.differences.every((d) => d.unknownCaps));
  assert.equal(j.comparison.unexplained, 0);
});

test("replay prints the recorded kernel's lines for a supported case", () => {
  const dir = oracleCases().get("vfio-driver-binding") as string;
  const r = run(
    "replay",
    "--snapshot",
    join(dir, "snapshot.tar.gz"),
    "--script",
    join(dir, "script.jsonl"),
  );
  assert.equal(r.code, 0);
  assert.equal(r.out, readFileSync(join(dir, "expected.jsonl"), "utf8"));
});

test("a bad script is refused before anything runs, with its line", () => {
  const snap = join(oracleCases().get("group-acs") as string, "snapshot.tar.gz");
  const bad = tmp("bad.jsonl", '{"script":1,"name":"x"}\n{"op":"close","fd":"$nothing"}\n');
  inputError(
    run("replay", "--snapshot", snap, "--script", bad),
    /bad\.jsonl:2: fd: "\$nothing" is used before it is bound/,
  );
  const nr = tmp(
    "nr.jsonl",
    '{"script":1,"name":"x"}\n{"op":"open","path":"/dev/vfio/vfio","flags":["O_RDWR"],"as":"c"}\n{"op":"ioctl","fd":"$c","req":"VFIO_GET_API_VERSION","nr":"0x3b65","arg":0}\n',
  );
  inputError(
    run("replay", "--snapshot", snap, "--script", nr),
    /nr\.jsonl:3: nr: VFIO_GET_API_VERSION is 0x3b64, not 0x3b65/,
  );
  inputError(
    run("replay", "--snapshot", snap, "--script", tmp("j.jsonl", "{not json\n")),
    /j\.jsonl:1: not valid JSON/,
  );
});

test("a scenario with a wrong field names its line", () => {
  const f = tmp(
    "sc.yaml",
    "name: s\nhost: desktop\nsteps:\n  - op: open\n    expect: { errno: 12 }\n",
  );
  inputError(run("run", f), /sc\.yaml:5: steps\[0\]\.expect\.errno/);
});
