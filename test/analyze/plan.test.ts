/**
 * `passthru plan`: what goes to the guest, the binding steps, the kernel command line, and
 * generated QEMU arguments and libvirt XML checked by the real tools (libvirt's own RelaxNG
 * schema through virt-xml-validate or xmllint, and qemu-system-x86_64's own option parser)
 * when they are installed. The binding steps are performed on the kernel model through its
 * sysfs, where vfio-pci really takes the devices and --undo gives them back; --apply on a
 * fake /sys shows it writes exactly those files, and nothing without --apply.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { loadHost } from "../../src/host/load.js";
import { analyzeHost } from "../../src/userspace/analyze/analyze.js";
import { applyWrites, planPassthrough } from "../../src/userspace/analyze/plan.js";
import { modelSysfs } from "../../src/userspace/analyze/sysfs.js";
import { fakeRoot, fixture, json, run, snapshotOf, tmp } from "./support.js";

interface Plan {
  pass: string[];
  stay: { bdf: string; driver: string | null; action: string }[];
  groups: number[];
  problems: string[];
  notes: string[];
  binding: { bdf: string; steps: string[] }[];
  cmdline: { add: string[]; keep: string[]; avoid: string[]; text: string[] };
  qemu: string[];
  libvirt: string;
}

test("desktop GPU: pass GPU and audio, the PEG port stays with pcieport; steps per address", () => {
  const p = json<Plan>(["plan", "01:00.0"]);
  assert.deepEqual(p.pass, ["0000:01:00.0", "0000:01:00.1"]);
  assert.deepEqual(p.stay, [
    { bdf: "0000:00:01.0", driver: "pcieport", action: "stays on the host with pcieport" },
  ]);
  assert.deepEqual(p.binding[0]?.steps, [
    "echo vfio-pci > /sys/bus/pci/devices/0000:01:00.0/driver_override",
    "echo 0000:01:00.0 > /sys/bus/pci/devices/0000:01:00.0/driver/unbind",
    "echo 0000:01:00.0 > /sys/bus/pci/drivers_probe",
  ]);
  assert.deepEqual(p.cmdline.keep, ["intel_iommu=on", "iommu=pt"]);
  assert.deepEqual(p.cmdline.avoid, []);
  assert.deepEqual(p.qemu, [
    "-device",
    "vfio-pci,host=0000:01:00.0,id=hostdev0",
    "-device",
    "vfio-pci,host=0000:01:00.1,id=hostdev1",
  ]);
  assert.match(p.libvirt, /<address domain='0x0000' bus='0x01' slot='0x00' function='0x1'\/>/);
  const t = run(["plan", "01:00.0"]);
  assert.equal(t.code, 0);
  assert.match(t.out, /^Pass through \(group 1\): 0000:01:00\.0, 0000:01:00\.1$/m);
  assert.match(t.out, /group 1 also holds 01:00\.1/);
});

test("one of three identical e1000s: bind it by address, never vfio-pci.ids; the id alone is ambiguous", () => {
  const p = json<Plan>(["plan", "04:01.0", "--input", snapshotOf("group-nonviable")]);
  assert.deepEqual(p.pass, ["0000:04:01.0", "0000:04:02.0"], "the whole group minus its bridge");
  assert.deepEqual(
    p.stay.map((s) => s.bdf),
    ["0000:03:00.0"],
  );
  assert.deepEqual(p.cmdline.avoid, ["vfio-pci.ids=8086:100e,10ec:8139"]);
  assert.match(p.cmdline.text.join("\n"), /8086:100e is also 05:00\.0, 05:00\.1/);
  assert.match(p.cmdline.text.join("\n"), /10ec:8139 is also 00:04\.0, 00:04\.1/);
  const amb = run(["plan", "8086:100e", "--input", snapshotOf("group-nonviable")]);
  assert.equal(amb.code, 2);
  assert.match(
    amb.err,
    /8086:100e matches 3 devices \(0000:04:01\.0, 0000:05:00\.0, 0000:05:00\.1\): name the one you mean/,
  );
});

test("AMD: no amd_iommu=on (not an option of Linux 6.12); Intel hosts get intel_iommu=on", () => {
  const amd = json<Plan>(["plan", "03:00.0", "--input", "amd-apu"]);
  assert.deepEqual(amd.cmdline.add, []);
  assert.match(amd.cmdline.text.join("\n"), /amd_iommu=on is not an option of Linux 6\.12/);
  const intel = json<Plan>(["plan", "01:00.0", "--input", snapshotOf("group-sysfs")]);
  assert.deepEqual(intel.cmdline.keep, ["intel_iommu=on"]);
});

test("a device without a group cannot be planned: exit 1 with the reason", () => {
  const r = run(["plan", "00:00.0", "--input", "amd-apu"]);
  assert.equal(r.code, 1);
  assert.match(r.out, /problem: 00:00\.0 has no IOMMU group \(outside every IOMMU unit's scope\)/);
});

function libvirtValidator(): ((xml: string) => { ok: boolean; out: string }) | null {
  const has = (c: string) => spawnSync("sh", ["-c", `command -v ${c}`]).status === 0;
  const rng = "/usr/share/libvirt/schemas/domain.rng";
  if (has("virt-xml-validate"))
    return (xml) => {
      const f = join(tmp(), "domain.xml");
      writeFileSync(f, xml);
      const r = spawnSync("virt-xml-validate", [f, "domain"], { encoding: "utf8" });
      return { ok: r.status === 0, out: r.stdout + r.stderr };
    };
  if (has("xmllint") && existsSync(rng))
    return (xml) => {
      const f = join(tmp(), "domain.xml");
      writeFileSync(f, xml);
      const r = spawnSync("xmllint", ["--noout", "--relaxng", rng, f], { encoding: "utf8" });
      return { ok: r.status === 0, out: r.stdout + r.stderr };
    };
  return null;
}

function domain(devices: string): string {
  return `<domain type='kvm'>
  <name>passthru-test</name>
  <memory unit='MiB'>1024</memory>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
${devices}
  </devices>
</domain>
`;
}

test("libvirt <hostdev> fragments validate against libvirt's own domain schema", (t) => {
  const validate = libvirtValidator();
  if (!validate)
    return t.skip(
      "neither virt-xml-validate (Debian: libvirt-clients) nor xmllint with libvirt's domain.rng is installed",
    );
  for (const [dev, input] of [
    ["01:00.0", "desktop"],
    ["08:00.0", fixture("amd-cezanne-rog-flow-x13")],
    ["10000:e1:00.0", fixture("intel-tigerlake-h-xps15-9510-vmd-domain")],
  ] as const) {
    const p = json<Plan>(["plan", dev, "--input", input]);
    const r = validate(domain(p.libvirt));
    assert.ok(r.ok, `${dev}: ${r.out}`);
  }
  // The validator does reject what libvirt would (so the check above can fail).
  const bad = validate(domain("<hostdev mode='subsystem' type='pcie' managed='yes'/>"));
  assert.equal(bad.ok, false);
});

test("QEMU arguments pass qemu-system-x86_64's own option parsing", (t) => {
  const qemu = spawnSync("sh", ["-c", "command -v qemu-system-x86_64"], { encoding: "utf8" });
  if (qemu.status !== 0) return t.skip("qemu-system-x86_64 is not installed");
  const p = json<Plan>(["plan", "01:00.0"]);
  const parse = (arg: string) =>
    spawnSync(
      "qemu-system-x86_64",
      ["-machine", "q35", "-accel", "tcg", "-display", "none", "-nodefaults", "-S", "-device", arg],
      { encoding: "utf8", timeout: 30_000 },
    ).stderr;
  const PARSE_ERROR =
    /Property '[^']+' not found|Invalid parameter|Parameter '[^']+' expects|unsupported/i;
  for (let i = 0; i < p.qemu.length; i += 2) {
    assert.equal(p.qemu[i], "-device");
    const err = parse(p.qemu[i + 1] as string);
    // Parsing passed: QEMU went on to open the host device (absent here, or not in a VFIO group).
    assert.doesNotMatch(err, PARSE_ERROR, err);
    assert.match(err, /vfio/i, err);
  }
  assert.match(parse("vfio-pci,hots=0000:01:00.0"), PARSE_ERROR, "a misspelt property is caught");
});

test("the binding steps, performed on the kernel model, hand the group to vfio-pci; undo gives it back", async () => {
  const a = await analyzeHost(await loadHost("desktop"));
  const plan = planPassthrough(a, ["01:00.0"]);
  const sys = modelSysfs(a.kernel.spawn());
  const done = applyWrites(sys, plan.writes);
  assert.deepEqual(
    done.filter((s) => s.error).map((s) => [s.write.path, s.error]),
    [],
    "every write succeeds",
  );
  const drv = (b: string) => sys.link(`/sys/bus/pci/devices/${b}/driver`);
  assert.deepEqual(["0000:00:01.0", "0000:01:00.0", "0000:01:00.1"].map(drv), [
    "pcieport",
    "vfio-pci",
    "vfio-pci",
  ]);
  assert.equal(sys.text("/sys/bus/pci/devices/0000:01:00.0/driver_override"), "vfio-pci");
  // The other GPU-less groups are untouched.
  assert.equal(drv("0000:00:02.0"), "i915");
  const undone = applyWrites(sys, plan.undo);
  assert.deepEqual(
    undone.filter((s) => s.error && !s.write.optional),
    [],
  );
  assert.deepEqual(["0000:01:00.0", "0000:01:00.1"].map(drv), ["nvidia", "snd_hda_intel"]);
  assert.equal(sys.text("/sys/bus/pci/devices/0000:01:00.0/driver_override"), "(null)");
});

test("--apply on a (fake) live /sys writes the planned files, asks first, and plan alone writes nothing", async () => {
  const root = await fakeRoot(snapshotOf("group-nonviable"));
  const dev = join(root, "sys/devices/pci0000:00/0000:00:02.1/0000:02:00.0");
  const before = readFileSync(join(dev, "driver_override"), "utf8");
  // Plan only: nothing written.
  const dry = run(["plan", "02:00.0", "--live", "--root", root]);
  assert.equal(dry.code, 0, dry.err);
  assert.equal(readFileSync(join(dev, "driver_override"), "utf8"), before);
  assert.equal(existsSync(join(root, "sys/bus/pci/drivers_probe")), false);
  // --apply, answered "n": nothing written, exit 1.
  const no = run(["plan", "02:00.0", "--root", root, "--apply"], { input: "n\n" });
  assert.equal(no.code, 1, no.err);
  assert.match(no.out, /This will bind to vfio-pci 02:00\.0 with 3 sysfs writes:/);
  assert.match(no.out, /Nothing was written\./);
  assert.equal(readFileSync(join(dev, "driver_override"), "utf8"), before);
  // --apply --yes: the three writes land where the kernel would take them.
  const yes = run(["plan", "02:00.0", "--root", root, "--apply", "--yes"]);
  assert.equal(yes.code, 0, yes.out + yes.err);
  assert.equal(readFileSync(join(dev, "driver_override"), "utf8"), "vfio-pci");
  assert.equal(readFileSync(join(root, "sys/bus/pci/drivers/nvme/unbind"), "utf8"), "0000:02:00.0");
  assert.equal(readFileSync(join(root, "sys/bus/pci/drivers_probe"), "utf8"), "0000:02:00.0");
  // --apply changes this host only.
  const bad = run(["plan", "02:00.0", "--input", "desktop", "--apply"]);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--apply changes this host: it takes no --input/);
});

test("a PF with VFs enabled: the plan says vfio-pci's probe refuses it (EBUSY) and how to proceed", () => {
  const r = run(["plan", "19:00.0", "--input", "server"]);
  assert.equal(r.code, 1, r.err);
  assert.match(
    r.out,
    /problem: 19:00\.0: vfio-pci refuses it \(its probe fails with EBUSY\): a PF with SR-IOV enabled \(4 VFs\)/,
  );
  const ok = run(["plan", "19:00.1", "--input", "server"]);
  assert.doesNotMatch(ok.out, /problem:/, "its sibling PF has no VFs");
});

test("vfio-pci's denylist: a QAT endpoint is refused with EINVAL unless vfio_pci.disable_denylist", () => {
  const host = (cmdline: string) => {
    const f = join(tmp(), "qat.yaml");
    writeFileSync(
      f,
      [
        "name: qat",
        `kernel: { cmdline: "intel_iommu=on${cmdline}" }`,
        'iommu: [{ kind: intel-vtd, name: dmar0, cap: "0xd2008c40660462", ecap: "0xf050da" }]',
        "functions:",
        '  - { addr: "0000:00:00.0", id: "8086:3e30", class: "060000" }',
        '  - addr: "0000:00:1c.0"',
        '    id: "8086:a338"',
        '    class: "060400"',
        "    pcie: root-port",
        "    acs: { cap: [sv, rr, cr, uf], ctl: [sv, rr, cr, uf] }",
        "    driver: pcieport",
        '    children: [{ addr: "00.0", id: "8086:37c8", class: "0b4000", pcie: endpoint, flr: true, driver: c6xx }]',
      ].join("\n") + "\n",
    );
    return f;
  };
  const refused = run(["plan", "8086:37c8", "--input", host("")]);
  assert.equal(refused.code, 1, refused.err);
  assert.match(
    refused.out,
    /01:00\.0: vfio-pci refuses it \(its probe fails with EINVAL\): it is on vfio-pci's denylist/,
  );
  const lifted = run(["plan", "8086:37c8", "--input", host(" vfio_pci.disable_denylist=1")]);
  assert.equal(lifted.code, 0, lifted.out + lifted.err);
  assert.doesNotMatch(lifted.out, /problem:/);
});
