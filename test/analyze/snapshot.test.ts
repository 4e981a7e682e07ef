/**
 * `passthru snapshot` and scripts/passthru-snapshot.sh capture a machine into the snapshot
 * format of oracle/SCRIPT.md. The machine here is a fake /sys tree written from a snapshot
 * that the oracle agent recorded on a real Linux 6.12: both captures must give back the same
 * files, links and bytes, and `passthru groups` must read them with the same result. The
 * script must run with nothing on PATH but sh, cat, readlink, find, gzip and tar.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { readSnapshot } from "../../src/host/snapshot.js";
import { fakeRoot, run, SCRIPT, snapshotOf, tmp } from "./support.js";

type Fs = Awaited<ReturnType<typeof readSnapshot>>;

function contents(fs: Fs): Map<string, string> {
  const out = new Map<string, string>();
  for (const [k, e] of fs.entries) {
    out.set(
      k,
      e.kind === "file"
        ? `file:${e.data.toString("hex")}`
        : e.kind === "link"
          ? `link:${e.target}`
          : "dir",
    );
  }
  return out;
}

function sameEntries(got: Fs, want: Fs, extra: string[] = []): void {
  const g = contents(got);
  const w = contents(want);
  const missing = [...w.keys()].filter((k) => !g.has(k));
  const unexpected = [...g.keys()].filter((k) => !w.has(k) && !extra.some((x) => k.startsWith(x)));
  assert.deepEqual(missing, [], "every file of the recorded snapshot is captured");
  assert.deepEqual(unexpected, [], "nothing else is captured");
  for (const [k, v] of w) assert.equal(g.get(k), v, `${k} is captured byte for byte`);
}

/** Things a real /sys has that a snapshot must not take, plus a VMD domain nested below an endpoint. */
function addNoise(root: string): void {
  const dev = join(root, "sys/devices/pci0000:00/0000:00:02.0/0000:01:00.0");
  mkdirSync(join(dev, "power"), { recursive: true });
  writeFileSync(join(dev, "power/control"), "auto\n");
  writeFileSync(join(dev, "remove"), "");
  chmodSync(join(dev, "remove"), 0o200);
  writeFileSync(join(dev, "rom"), Buffer.alloc(32, 0xaa));
  const vmd = join(root, "sys/devices/pci0000:00/0000:00:04.0/pci10000:e0/10000:e0:00.0");
  mkdirSync(vmd, { recursive: true });
  writeFileSync(join(vmd, "vendor"), "0x8086\n");
  writeFileSync(
    join(root, "proc/cpuinfo"),
    "processor\t: 0\nvendor_id\t: GenuineIntel\n\nprocessor\t: 1\n",
  );
}

const VMD_FILE = "sys/devices/pci0000:00/0000:00:04.0/pci10000:e0/10000:e0:00.0/vendor";

test("passthru snapshot captures a fake /sys exactly as the oracle agent captured the real one", async () => {
  const recorded = snapshotOf("group-nonviable");
  const root = await fakeRoot(recorded);
  addNoise(root);
  const out = join(tmp(), "host.tar.gz");
  const r = run(["snapshot", "--root", root, "-o", out]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /wrote .*host\.tar\.gz \(18 PCI functions, 10 IOMMU groups\)/);
  assert.doesNotMatch(r.err, /not captured as root/);
  const got = await readSnapshot(out);
  const want = await readSnapshot(recorded);
  // The fake VMD domain and the first cpuinfo block replace what the fake tree changed.
  assert.equal(got.text(VMD_FILE), "0x8086", "VMD domains nested below their endpoint are walked");
  assert.equal(got.text("proc/cpuinfo"), "processor\t: 0\nvendor_id\t: GenuineIntel");
  want.entries.delete("proc/cpuinfo");
  got.entries.delete("proc/cpuinfo");
  sameEntries(got, want, ["sys/devices/pci0000:00/0000:00:04.0/pci10000:e0"]);
  assert.equal(got.file("sys/devices/pci0000:00/0000:00:02.0/0000:01:00.0/rom"), undefined);

  // groups reads the capture back with the kernel's groups, exactly.
  const g = run(["groups", out]);
  assert.equal(g.code, 0, g.out + g.err);
  assert.match(g.out, /Same groups as the kernel reported/);
});

function shPath(): string | null {
  const bin = tmp("passthru-bin-");
  for (const tool of ["sh", "cat", "readlink", "find", "gzip", "tar"]) {
    const w = spawnSync("sh", ["-c", `command -v ${tool}`], { encoding: "utf8" });
    const p = w.stdout.trim();
    if (w.status !== 0 || !p.startsWith("/")) return null;
    symlinkSync(p, join(bin, tool));
  }
  return bin;
}

test("passthru-snapshot.sh runs with only sh, cat, readlink, find, gzip and tar, and captures the same", async (t) => {
  const bin = shPath();
  if (!bin) return t.skip("sh, cat, readlink, find, gzip or tar is not installed");
  const recorded = snapshotOf("group-nonviable");
  const root = await fakeRoot(recorded);
  addNoise(root);
  const out = join(tmp(), "host.tar.gz");
  const scratch = tmp("passthru-scratch-");
  const r = spawnSync(join(bin, "sh"), [SCRIPT, "--root", root, "-o", out], {
    encoding: "utf8",
    env: { PATH: bin, TMPDIR: scratch },
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /wrote .*host\.tar\.gz \(18 PCI functions\)/);
  assert.doesNotMatch(r.stderr, /not found/, "no command outside the allowed set");
  assert.equal(
    spawnSync("find", [scratch, "-type", "f"], { encoding: "utf8" }).stdout,
    "",
    "scratch files removed",
  );
  const got = await readSnapshot(out);
  const want = await readSnapshot(recorded);
  assert.equal(got.text(VMD_FILE), "0x8086");
  assert.equal(got.text("proc/cpuinfo"), "processor\t: 0\nvendor_id\t: GenuineIntel");
  want.entries.delete("proc/cpuinfo");
  got.entries.delete("proc/cpuinfo");
  sameEntries(got, want, ["sys/devices/pci0000:00/0000:00:04.0/pci10000:e0"]);
  // GNU tar reads it too (checksums, long names).
  const list = spawnSync("tar", ["tzf", out], { encoding: "utf8" });
  assert.equal(list.status, 0, list.stderr);
  assert.ok(list.stdout.includes("sys/kernel/iommu_groups/9/devices/0000:04:02.0"));
  assert.equal(run(["groups", out]).code, 0);
});

test("both captures keep names and link targets longer than a tar header holds", async (t) => {
  const root = await fakeRoot(snapshotOf("group-nonviable"));
  // A deep chain of bridges: the path passes 100 characters.
  let dir = "sys/devices/pci0000:00/0000:00:02.2/0000:03:00.0";
  for (const b of ["0000:04:01.0", "0000:05:00.0", "0000:06:00.0", "0000:07:00.0", "0000:08:00.0"])
    dir += `/${b}`;
  mkdirSync(join(root, dir), { recursive: true });
  writeFileSync(join(root, dir, "class"), "0x020000\n");
  const target = "../".repeat(9) + "kernel/iommu_groups/9";
  symlinkSync(target, join(root, dir, "iommu_group"));
  assert.ok(`${dir}/iommu_group`.length > 100 && target.length < 100);
  const longTarget = "../".repeat(40) + "bus/pci/drivers/e1000";
  symlinkSync(longTarget, join(root, dir, "driver"));
  const outs = [join(tmp(), "ts.tar.gz")];
  assert.equal(run(["snapshot", "--root", root, "-o", outs[0] as string]).code, 0);
  const bin = shPath();
  if (bin) {
    outs.push(join(tmp(), "sh.tar.gz"));
    const r = spawnSync(join(bin, "sh"), [SCRIPT, "--root", root, "-o", outs[1] as string], {
      env: { PATH: bin },
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr);
  }
  for (const o of outs) {
    const fs = await readSnapshot(o);
    assert.equal(fs.text(`${dir}/class`), "0x020000", o);
    assert.equal(fs.link(`${dir}/iommu_group`), target, o);
    assert.equal(fs.link(`${dir}/driver`), longTarget, o);
  }
  if (!bin) t.diagnostic("sh tools missing: only the TypeScript capture was checked");
});

test("without root the capture says what is missing: config beyond 64 bytes", async (t) => {
  const root = await fakeRoot(snapshotOf("group-nonviable"));
  // What an unprivileged read of each config returns (pci-sysfs.c: 64 bytes without CAP_SYS_ADMIN).
  const fs = await readSnapshot(snapshotOf("group-nonviable"));
  for (const k of fs.entries.keys()) if (k.endsWith("/config")) truncateSync(join(root, k), 64);
  const out = join(tmp(), "user.tar.gz");
  const r = run(["snapshot", "--root", root, "-o", out]);
  assert.equal(r.code, 0);
  assert.match(r.err, /Not captured as root: 17 of 17 config files hold only the first 64 bytes/);
  assert.match(r.err, /PCIe port types/);
  const g = run(["groups", out]);
  assert.match(g.out, /Capabilities were not readable/);
  const bin = shPath();
  if (!bin) return t.skip("sh tools missing");
  const s = spawnSync(join(bin, "sh"), [SCRIPT, "--root", root, "-o", join(tmp(), "sh.tar.gz")], {
    env: { PATH: bin },
    encoding: "utf8",
  });
  assert.equal(s.status, 0, s.stderr);
  assert.match(
    s.stderr,
    /not captured as root: 17 of 17 config files hold only the first 64 bytes/,
  );
});

test("snapshot --script prints the shell script; a missing /sys is one located error", async () => {
  const r = run(["snapshot", "--script"]);
  assert.equal(r.code, 0);
  assert.equal(r.out, readFileSync(SCRIPT, "utf8"));
  assert.match(r.out, /^#!\/bin\/sh/);
  const empty = tmp();
  const e = run(["snapshot", "--root", empty, "-o", join(empty, "x.tar.gz")]);
  assert.equal(e.code, 1);
  assert.match(e.err, /^passthru: no PCI functions below .*sys\/devices/);
  assert.equal(e.err.trim().split("\n").length, 1);
  assert.equal(existsSync(join(empty, "x.tar.gz")), false, "nothing written");
  const u = run(["snapshot", "--script", "-o", "x"]);
  assert.equal(u.code, 2);
});

test("a VFIO no-IOMMU group in a snapshot is not taken for a group the IOMMU core formed", async () => {
  // The no-IOMMU case's guest with its e1000e bound to vfio-pci: the device gets the fake
  // group vfio_noiommu_group_alloc makes (no default domain: type "unknown"; no IOMMU unit).
  const root = await fakeRoot(snapshotOf("noiommu-compat"));
  const dev = join(root, "sys/bus/pci/devices/0000:02:00.0");
  const group = join(root, "sys/kernel/iommu_groups/0");
  mkdirSync(join(group, "devices"), { recursive: true });
  writeFileSync(join(group, "type"), "unknown\n");
  writeFileSync(join(group, "reserved_regions"), "");
  symlinkSync(
    "../../../../devices/pci0000:00/0000:00:03.0/0000:02:00.0",
    join(group, "devices/0000:02:00.0"),
  );
  symlinkSync("../../../../kernel/iommu_groups/0", join(dev, "iommu_group"));
  const r = run(["groups", root, "--json"]);
  assert.equal(r.code, 0, r.err);
  const out = JSON.parse(r.out) as { groups: unknown[]; ungrouped: { bdf: string }[] };
  assert.deepEqual(out.groups, []);
  assert.ok(out.ungrouped.some((d) => d.bdf === "0000:02:00.0"));
});
