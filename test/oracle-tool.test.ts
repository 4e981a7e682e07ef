/**
 * The oracle tool's host side (src/oracle): compiling scripts for the agent and formatting
 * its raw answers exactly as SCRIPT.md says, the initramfs archive format, the snapshot
 * rebuilt from the agent's file copy, topics, the diff report, and the generated corpus
 * (valid, large enough, and the same as what is committed). Where a C compiler is present
 * the agent itself is built and run on this host against scripts with known answers.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseScript } from "../src/userspace/replay/script.js";
import { compile, extractAnswers, formatResults, jstr } from "../src/oracle/program.js";
import { cpio } from "../src/oracle/cpio.js";
import { parseCaseSpec } from "../src/oracle/case.js";
import {
  compareRuns,
  fieldDifferences,
  renderReport,
  supportedDifferences,
} from "../src/oracle/diff.js";
import { topics } from "../src/oracle/topics.js";
import { dumpRules, materialize } from "../src/oracle/snapshot.js";
import { caseDirName, generateAll } from "../src/oracle/generate/index.js";
import { captureHost } from "../src/userspace/snapshot/capture.js";
import { ROOT } from "./support/paths.js";

const script = (lines: object[]) =>
  parseScript(
    [{ script: 1, name: "t" }, ...lines].map((l) => JSON.stringify(l)).join("\n"),
    "t.jsonl",
  );

// the kvm-vfio script lines several tests share
const createVm = { op: "ioctl", fd: "$kvm", req: "KVM_CREATE_VM", nr: "0xae01", arg: 0, as: "vm" };
/** KVM_CREATE_DEVICE(kvm-vfio) on fd, the new device's fd bound as kv. */
const createKvmVfio = (fd: string) => ({
  op: "ioctl",
  fd,
  req: "KVM_CREATE_DEVICE",
  nr: "0xc00caee0",
  arg: {
    struct: [
      ["u32", "type", 4],
      ["u32", "fd", 0],
      ["u32", "flags", 0],
    ],
  },
  bind: { fd: "kv" },
});
/** A device attribute request on $kv: group 1 (FILE), attribute 1 (ADD). */
const fileAttr = (req: string, nr: string, addr: object | number) => ({
  op: "ioctl",
  fd: "$kv",
  req,
  nr,
  arg: {
    struct: [
      ["u32", "flags", 0],
      ["u32", "group", 1],
      ["u64", "attr", 1],
      ["u64", "addr", addr],
    ],
  },
});

test("compile resolves names to slots and leaves runtime values as patches", () => {
  const s = script([
    { op: "open", path: "/dev/kvm", flags: ["O_RDWR", "O_CLOEXEC"], as: "kvm" },
    createVm,
    createKvmVfio("$vm"),
    fileAttr("KVM_SET_DEVICE_ATTR", "0x4018aee1", { struct: [["s32", "fd", "$kvm"]] }),
    { op: "mmap", size: 8192, as: "buf" },
    { op: "fill", buf: "$buf", offset: 4, hex: "abcd" },
  ]);
  const p = compile(s);
  const lines = p.text.trim().split("\n");
  assert.equal(lines[0], "passthru-agent 1 4 6");
  assert.equal(lines[1], `open 0 ${0o2000002} ${Buffer.from("/dev/kvm").toString("hex")}`);
  assert.equal(lines[2], "ioctl $0 ae01 =0 1");
  assert.deepEqual(lines.slice(3, 6), [
    "block 12 040000000000000000000000",
    "bindf 0 4 4 0 2",
    "ioctl $1 c00caee0 @0 -",
  ]);
  // the outer block first, then the inner one, then the patches: the pointer and the fd
  assert.deepEqual(lines.slice(6, 10), [
    "block 24 000000000100000001000000000000000000000000000000",
    "block 4 00000000",
    "patch 1 0 4 $0",
    "patch 0 16 8 @1",
  ]);
  assert.equal(lines[11], "mmap 3 8192 3");
  assert.equal(lines[12], "fill 3 4 abcd");
});

test("formatResults writes SCRIPT.md lines from the agent's raw answers", () => {
  const s = script([
    { op: "open", path: "/x", flags: ["O_RDONLY"], as: "f" },
    { op: "open", path: "/y", flags: ["O_RDONLY"], as: "g" },
    createKvmVfio("$f"),
    {
      op: "ioctl",
      fd: "$f",
      req: "X",
      nr: "0x1",
      arg: {
        struct: [
          ["s32", "fd", "$f"],
          ["s32", "other", "$f"],
          ["u64", "big", "0xffffffffffffffff"],
          ["s64", "neg", -2],
          ["u64", "ptr", { struct: [["u8", "b", 7]] }],
          ["bytes:3", "tail", "0102"],
        ],
      },
    },
    { op: "sysfs_read", path: "/s" },
    { op: "readlink", path: "/l" },
    { op: "mmap", size: 4096, as: "b" },
    { op: "check", buf: "$b", offset: 0, hex: "00" },
  ]);
  const p = compile(s);
  const le = (v: bigint, n: number) =>
    Buffer.from(Array.from({ length: n }, (_, i) => Number((v >> BigInt(8 * i)) & 0xffn))).toString(
      "hex",
    );
  const outer = [
    le(5n, 4),
    le(9n, 4),
    le(0xffffffffffffffffn, 8),
    le(-2n & 0xffffffffffffffffn, 8),
    le(0x1000n, 8),
    "010200",
    "0000000000",
  ].join("");
  const raw = [
    "r 5 0",
    "r -1 2",
    `r 0 0 b${le(4n, 4)}${le(7n, 4)}00000000`,
    `r 0 0 p5 p5 p1000 b${outer} b07`,
    `r 0 0 d${Buffer.from('a\u00e9"\n\n', "latin1").toString("hex")}`,
    `r 0 0 d${Buffer.from("../../x/vfio-pci").toString("hex")}`,
    "r 0 0",
    "r 1 0 d01",
  ];
  assert.deepEqual(formatResults(p, raw), [
    '{"i":1,"op":"open","ret":"fd","errno":null}',
    '{"i":2,"op":"open","ret":-1,"errno":"ENOENT"}',
    '{"i":3,"op":"ioctl","req":"KVM_CREATE_DEVICE","ret":0,"errno":null,"out":{"type":4,"fd":"fd","flags":0}}',
    '{"i":4,"op":"ioctl","req":"X","ret":0,"errno":null,"out":{"fd":"$f","other":9,"big":"0xffffffffffffffff","neg":"-2","ptr":{"b":7},"tail":"010200"}}',
    '{"i":5,"op":"sysfs_read","ret":0,"errno":null,"data":"a\\u00e9\\"\\n"}',
    '{"i":6,"op":"readlink","ret":0,"errno":null,"data":"vfio-pci"}',
    '{"i":7,"op":"mmap","ret":"buf","errno":null}',
    '{"i":8,"op":"check","ret":1,"errno":null,"data":"01"}',
  ]);
  assert.equal(jstr("\t\x01"), '"\\t\\u0001"');
  assert.deepEqual(extractAnswers("junk\n@@PASSTHRU results 1\nr 0 0\n@@PASSTHRU end 1\n", 1), {
    answers: ["r 0 0"],
  });
  assert.match(
    extractAnswers("@@PASSTHRU results 2\nr 0 0\n", 2).error ?? "",
    /stopped after 1 of 2/,
  );
});

test("cpio newc: headers, names padded to 4, the trailer", () => {
  const b = cpio([
    { name: "d", kind: "dir" },
    { name: "d/f", kind: "file", data: Buffer.from("hello"), mode: 0o755 },
    { name: "l", kind: "link", target: "d/f" },
  ]);
  const text = b.toString("latin1");
  assert.equal(text.slice(0, 6), "070701");
  assert.equal(b.length % 4, 0);
  assert.ok(text.includes("d/f\0"));
  assert.ok(text.includes("hello"));
  assert.ok(text.includes("TRAILER!!!"));
  // the file's mode and size fields
  const at = text.indexOf("070701", 8);
  assert.equal(parseInt(text.slice(at + 14, at + 22), 16), 0o100755);
  assert.equal(parseInt(text.slice(at + 54, at + 62), 16), 5);
});

test("case.json is checked field by field", () => {
  assert.deepEqual(parseCaseSpec('{"kernel":"debian","qemu":["-device","x"]}', "c"), {
    kernel: "debian",
    qemu: ["-device", "x"],
    append: "",
  });
  assert.throws(() => parseCaseSpec('{"kernel":"arch"}', "c"), /kernel/);
  assert.throws(() => parseCaseSpec('{"kernel":"debian","extra":1}', "c"), /extra/);
  assert.throws(() => parseCaseSpec('{"kernel":"debian","append":"a\\nb"}', "c"), /one-line/);
});

test("topics follow fds through the script", () => {
  const s = script([
    { op: "open", path: "/dev/vfio/4", flags: ["O_RDWR"], as: "g" },
    {
      op: "ioctl",
      fd: "$g",
      req: "VFIO_GROUP_GET_DEVICE_FD",
      nr: "0x3b6a",
      arg: { struct: [["bytes:13", "name", Buffer.from("0000:01:00.0\0").toString("hex")]] },
      as: "d",
    },
    { op: "pread", fd: "$d", offset: 7 * 2 ** 40, size: 4 },
    { op: "pread", fd: "$d", offset: 0, size: 4 },
    { op: "open", path: "/dev/kvm", flags: ["O_RDWR"], as: "kvm" },
    createVm,
    createKvmVfio("$vm"),
    fileAttr("KVM_HAS_DEVICE_ATTR", "0x4018aee3", 0),
    { op: "close", fd: "$d" },
  ]);
  const t = topics(s).map((x) => x.topic);
  assert.deepEqual(t, [
    "VFIO group",
    "VFIO group",
    "VFIO device: config space",
    "VFIO device: BAR0 contents",
    "KVM system",
    "KVM system",
    "kvm-vfio",
    "kvm-vfio",
    "VFIO device",
  ]);
  assert.ok(topics(s)[3]?.gap, "no device model: BAR contents are a known gap");
});

test("the diff report names the first difference, its fields and a per-topic summary", () => {
  const s = script([
    { op: "open", path: "/dev/vfio/vfio", flags: ["O_RDWR"], as: "c" },
    { op: "ioctl", fd: "$c", req: "VFIO_GET_API_VERSION", nr: "0x3b64", arg: 0 },
    { op: "ioctl", fd: "$c", req: "VFIO_CHECK_EXTENSION", nr: "0x3b65", arg: 3 },
  ]);
  const kernel = [
    '{"i":1,"op":"open","ret":"fd","errno":null}',
    '{"i":2,"op":"ioctl","req":"VFIO_GET_API_VERSION","ret":0,"errno":null}',
    '{"i":3,"op":"ioctl","req":"VFIO_CHECK_EXTENSION","ret":1,"errno":null}',
  ];
  const same = compareRuns("t", s, kernel, { lines: kernel });
  assert.equal(same.differing.length, 0);
  assert.match(renderReport(same), /t: identical/);
  const model = [
    ...kernel.slice(0, 2),
    '{"i":3,"op":"ioctl","req":"VFIO_CHECK_EXTENSION","ret":0,"errno":null}',
  ];
  const r = compareRuns("t", s, kernel, { lines: model });
  assert.deepEqual(r.differing, [2]);
  assert.deepEqual(supportedDifferences(r), [2]);
  const text = renderReport(r);
  assert.match(
    text,
    /1 of 3 result lines differ; the first is operation 3 \(script.jsonl line 4\)/,
  );
  assert.match(text, /ret: kernel 1, model 0/);
  assert.match(text, /VFIO container +3 +2 +1/);
  assert.deepEqual(fieldDifferences({ a: 1, o: { x: "1" } }, { a: 1, o: { x: "2" }, b: 2 }), [
    'o.x: kernel "1", model "2"',
    "b: kernel (absent), model 2",
  ]);
});

const agentSource = join(ROOT, "native", "agent", "agent.c");
const gcc = spawnSync("gcc", ["--version"]).status === 0;

test("the agent, built here, answers a script on this host", { skip: !gcc && "no gcc" }, () => {
  const dir = mkdtempSync(join(tmpdir(), "oracle-agent-"));
  try {
    const bin = join(dir, "agent");
    const cc = spawnSync("gcc", ["-O1", "-Wall", "-Wextra", "-Werror", "-o", bin, agentSource], {
      encoding: "utf8",
    });
    assert.equal(cc.status, 0, cc.stderr);
    writeFileSync(join(dir, "file"), "line\n");
    symlinkSync("sub/target-name", join(dir, "link"));
    const s = script([
      { op: "open", path: join(dir, "file"), flags: ["O_RDONLY"], as: "f" },
      { op: "pread", fd: "$f", offset: 1, size: 16 },
      { op: "dup", fd: "$f", as: "f2" },
      { op: "close", fd: "$f" },
      { op: "close", fd: "$f" },
      { op: "open", path: join(dir, "nope"), flags: ["O_RDONLY"], as: "n" },
      { op: "close", fd: "$n" },
      { op: "mmap", size: 8192, as: "b" },
      { op: "fill", buf: "$b", offset: 8, hex: "0102" },
      { op: "check", buf: "$b", offset: 8, hex: "0102" },
      { op: "check", buf: "$b", offset: 8, hex: "0103" },
      { op: "munmap", buf: "$b" },
      { op: "munmap", buf: "$b" },
      { op: "fill", buf: "$b", offset: 0, hex: "00" },
      { op: "eventfd", as: "ev" },
      { op: "sysfs_read", path: join(dir, "file") },
      { op: "readlink", path: join(dir, "link") },
      { op: "sysfs_write", path: join(dir, "file"), value: "x" },
      {
        op: "ioctl",
        fd: "$ev",
        req: "TCGETS",
        nr: "0x5401",
        arg: {
          struct: [
            ["u32", "iflag", 0],
            ["bytes:56", "rest", null],
          ],
        },
      },
    ]);
    const p = compile(s);
    writeFileSync(join(dir, "program"), p.text);
    const r = spawnSync(bin, [join(dir, "program")], { encoding: "latin1" });
    assert.equal(r.status, 0, r.stderr);
    const { answers, error } = extractAnswers(r.stdout, p.plans.length);
    assert.equal(error, undefined);
    assert.deepEqual(formatResults(p, answers), [
      '{"i":1,"op":"open","ret":"fd","errno":null}',
      '{"i":2,"op":"pread","ret":4,"errno":null,"data":"696e650a"}',
      '{"i":3,"op":"dup","ret":"fd","errno":null}',
      '{"i":4,"op":"close","ret":0,"errno":null}',
      '{"i":5,"op":"close","ret":-1,"errno":"EBADF"}',
      '{"i":6,"op":"open","ret":-1,"errno":"ENOENT"}',
      '{"i":7,"op":"close","ret":-1,"errno":"EBADF"}',
      '{"i":8,"op":"mmap","ret":"buf","errno":null}',
      '{"i":9,"op":"fill","ret":0,"errno":null}',
      '{"i":10,"op":"check","ret":0,"errno":null}',
      '{"i":11,"op":"check","ret":1,"errno":null,"data":"0102"}',
      '{"i":12,"op":"munmap","ret":0,"errno":null}',
      '{"i":13,"op":"munmap","ret":-1,"errno":"EINVAL"}',
      '{"i":14,"op":"fill","ret":-1,"errno":"EFAULT"}',
      '{"i":15,"op":"eventfd","ret":"fd","errno":null}',
      '{"i":16,"op":"sysfs_read","ret":0,"errno":null,"data":"line"}',
      '{"i":17,"op":"readlink","ret":0,"errno":null,"data":"target-name"}',
      '{"i":18,"op":"sysfs_write","ret":0,"errno":null}',
      '{"i":19,"op":"ioctl","req":"TCGETS","ret":-1,"errno":"ENOTTY","out":{"iflag":0,"rest":"' +
        "00".repeat(56) +
        '"}}',
    ]);
    // --dump copies only what the rules name (the file, as sysfs_write left it)
    writeFileSync(
      join(dir, "rules"),
      `walk ${Buffer.from(dir).toString("hex")} 1 - ${Buffer.from("^file$").toString("hex")}\n`,
    );
    assert.equal(spawnSync(bin, ["--dump", join(dir, "rules"), join(dir, "dump")]).status, 0);
    const dump = readFileSync(join(dir, "dump"), "latin1");
    assert.match(
      dump,
      new RegExp(`^F ${Buffer.from(join(dir, "file")).toString("hex")} 644 78696e650a$`, "m"),
    );
    assert.match(dump, new RegExp(`^L ${Buffer.from(join(dir, "link")).toString("hex")} `, "m"));
    assert.doesNotMatch(dump, new RegExp(Buffer.from("program").toString("hex")));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test(
  "the agent's copy of a tree, rebuilt and captured, is the capture of the tree",
  { skip: !gcc && "no gcc" },
  () => {
    const dir = mkdtempSync(join(tmpdir(), "oracle-snap-"));
    try {
      const bin = join(dir, "agent");
      assert.equal(spawnSync("gcc", ["-O1", "-o", bin, agentSource]).status, 0);
      const root = join(dir, "root");
      const port = join(root, "sys/devices/pci0000:00/0000:00:02.0");
      const ep = join(port, "0000:01:00.0");
      mkdirSync(join(ep, "power"), { recursive: true });
      for (const d of [port, ep]) {
        writeFileSync(join(d, "vendor"), "0x8086\n");
        writeFileSync(join(d, "config"), Buffer.alloc(256, 1));
        writeFileSync(join(d, "rom"), "never read");
        writeFileSync(join(d, "reset_method"), "flr bus\n");
      }
      mkdirSync(join(root, "sys/kernel/iommu_groups/4/devices"), { recursive: true });
      writeFileSync(join(root, "sys/kernel/iommu_groups/4/type"), "DMA\n");
      symlinkSync(
        "../../../../devices/pci0000:00/0000:00:02.0/0000:01:00.0",
        join(root, "sys/kernel/iommu_groups/4/devices/0000:01:00.0"),
      );
      symlinkSync("../../../../kernel/iommu_groups/4", join(ep, "iommu_group"));
      mkdirSync(join(root, "sys/bus/pci/devices"), { recursive: true });
      mkdirSync(join(root, "sys/bus/pci/drivers/vfio-pci"), { recursive: true });
      symlinkSync(
        "../../../devices/pci0000:00/0000:00:02.0/0000:01:00.0",
        join(root, "sys/bus/pci/devices/0000:01:00.0"),
      );
      mkdirSync(join(root, "sys/devices/virtual/iommu/dmar0/intel-iommu"), { recursive: true });
      writeFileSync(
        join(root, "sys/devices/virtual/iommu/dmar0/intel-iommu/cap"),
        "d2008c22260286\n",
      );
      mkdirSync(join(root, "sys/class/iommu"), { recursive: true });
      symlinkSync("../../devices/virtual/iommu/dmar0", join(root, "sys/class/iommu/dmar0"));
      mkdirSync(join(root, "sys/module/vfio/parameters"), { recursive: true });
      writeFileSync(join(root, "sys/module/vfio/parameters/enable_unsafe_noiommu_mode"), "N\n");
      mkdirSync(join(root, "proc/sys/kernel"), { recursive: true });
      writeFileSync(join(root, "proc/cmdline"), "intel_iommu=on\n");
      writeFileSync(join(root, "proc/sys/kernel/osrelease"), "6.12.0\n");
      writeFileSync(join(root, "proc/cpuinfo"), "processor\t: 0\n\nprocessor\t: 1\n");
      mkdirSync(join(root, "dev/vfio"), { recursive: true });
      writeFileSync(join(root, "dev/vfio/4"), "");
      writeFileSync(join(dir, "rules"), dumpRules(root));
      assert.equal(spawnSync(bin, ["--dump", join(dir, "rules"), join(dir, "dump")]).status, 0);
      const dump = readFileSync(join(dir, "dump"), "latin1");
      assert.doesNotMatch(
        dump,
        new RegExp(Buffer.from("never read").toString("hex")),
        "rom is not read",
      );
      const copy = join(dir, "copy");
      materialize(dump, copy);
      const want = captureHost(root);
      const got = captureHost(join(copy, root));
      assert.deepEqual([...got.entries.keys()].sort(), [...want.entries.keys()].sort());
      for (const [k, e] of want.entries) assert.deepEqual(got.entries.get(k), e, k);
      assert.equal(got.functions, 2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test("the generated corpus: valid scripts, at least 300 cases, and what is committed", () => {
  const cases = generateAll();
  assert.ok(cases.length >= 300, `${cases.length} generated cases`);
  const gen = join(ROOT, "test", "oracle", "generated");
  for (const c of cases) {
    const text = c.script.text();
    const s = parseScript(text, caseDirName(c));
    compile(s);
    assert.ok(
      s.ops.length >= 5 && s.ops.length <= 80,
      `${caseDirName(c)}: ${s.ops.length} operations`,
    );
    const committed = join(gen, caseDirName(c), "script.jsonl");
    if (existsSync(gen)) {
      assert.ok(
        existsSync(committed),
        `${caseDirName(c)} is not in test/oracle/generated (passthru oracle generate)`,
      );
      assert.equal(
        readFileSync(committed, "utf8"),
        text,
        `${caseDirName(c)} differs from the generator`,
      );
      for (const f of ["snapshot.tar.gz", "expected.jsonl"])
        assert.ok(
          existsSync(join(gen, caseDirName(c), f)),
          `${caseDirName(c)} is not recorded (passthru oracle record-all --missing test/oracle/generated)`,
        );
    }
  }
});
