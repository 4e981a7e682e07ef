/**
 * The malformed-input corpus (the files beside this one): for every input format — host
 * snapshots, `lspci -vvnn` text, `lspci -x` hex dumps, syscall scripts, host YAML and
 * scenario YAML — truncated, oversized, wrong-typed, cyclic and binary-garbage inputs.
 * Each, given to the command that reads it (run as a child process, as a user runs it),
 * must give exit code 2 and one located line on stderr ("passthru: FILE[:LINE]: ..."):
 * no stack trace, no "internal error", no hang, no silent success.
 *
 * Cases marked `bug` fail today: each is a model or importer bug, reported with its input
 * (node:test shows them as TODO until they are fixed; then the mark goes).
 */
import { describe, it, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { CLI, ROOT } from "../support/paths.js";

const DIR = join(ROOT, "test", "malformed");

interface Case {
  file: string;
  /** The command reading the file; FILE stands for its path. */
  args: string[];
  /** What the one stderr line must say (after "passthru: FILE"). */
  expect: RegExp;
  /** A known bug: what happens instead, reported. */
  bug?: string;
}

const groups = (file: string, expect: RegExp, bug?: string): Case => ({
  file,
  args: ["groups", "FILE"],
  expect,
  ...(bug ? { bug } : {}),
});
const replay = (file: string, expect: RegExp, bug?: string): Case => ({
  file,
  args: ["replay", "--snapshot", "desktop", "--script", "FILE"],
  expect,
  ...(bug ? { bug } : {}),
});
const scenario = (file: string, expect: RegExp, bug?: string): Case[] =>
  ["run", "check"].map((cmd) => ({ file, args: [cmd, "FILE"], expect, ...(bug ? { bug } : {}) }));

const CASES: Case[] = [
  // Host snapshots (tar.gz): truncated gzip, bad tar header, garbage, a tar cut short, an
  // empty archive, config files of a wrong size, links in a loop or into themselves,
  // entries of the wrong type.
  groups("snapshot-truncated.tar.gz", /: not a readable gzip stream/),
  groups("snapshot-bad-header.tar.gz", /: not a readable tar archive/),
  groups("snapshot-garbage.tar.gz", /: not a readable gzip stream/),
  groups("snapshot-tar-cut.tar.gz", /: not a readable tar archive/),
  groups("snapshot-empty.tar.gz", /: the archive holds no files/),
  groups(
    "snapshot-config-size.tar.gz",
    /config: config holds 100 bytes; expected 64, 128, 256 or 4096/,
  ),
  groups("snapshot-config-oversized.tar.gz", /config holds 8192 bytes/),
  groups("snapshot-link-loop.tar.gz", /0000:00:00\.0\/config: missing config file/),
  groups("snapshot-link-self.tar.gz", /config: missing config file/),
  groups("snapshot-wrong-types.tar.gz", /config: missing config file/),
  // lspci -vvnn
  groups(
    "lspci-truncated.txt",
    /:22: title: expected "bb:dd\.f class \[cccc\]: name \[vvvv:dddd\]/,
  ),
  groups("lspci-binary.txt", /:3: expected lspci -vvnn output, got binary data/),
  groups("lspci-wrong-types.txt", /:2: IOMMU group: expected a group number, got "zero"/),
  groups("lspci-duplicate.txt", /:6: address: duplicate address 0000:00:00\.0/),
  groups("lspci-oversized.txt", /:2: Subsystem: expected "name \[vvvv:dddd\]"/),
  groups("lspci-cycle.txt", /:4: .*secondary/),
  // lspci -x hex dumps
  groups("hexdump-truncated.txt", /:4: config: expected a hex byte, got "0"/),
  groups("hexdump-bad-offset.txt", /:6: config: expected offset 40, got 1000/),
  groups("hexdump-garbage.txt", /:3: config: expected a hex byte, got "zz"/),
  groups("hexdump-out-of-order.txt", /:3: config: expected offset 10, got 20/),
  groups("hexdump-oversized.txt", /:258: config: expected at most 4096 bytes of config space/),
  groups("hexdump-binary.txt", /:3: expected lspci -vvnn output, got binary data/),
  // Syscall scripts (SCRIPT.md)
  replay("script-truncated.jsonl", /:3: not valid JSON/),
  replay("script-wrong-types.jsonl", /:2: path: expected a string/),
  replay("script-binary.jsonl", /:2: not valid JSON/),
  replay("script-unbound.jsonl", /:2: fd: "\$never" is used before it is bound/),
  replay("script-no-header.jsonl", /:1: script: expected the header/),
  replay("script-oversized-struct.jsonl", /:3: .*bytes:4294967295/),
  replay("script-oversized-read.jsonl", /:3: size/),
  replay("script-deep-nesting.jsonl", /:3: arg/),
  // Host YAML
  groups("host-truncated.yaml", /:16: functions\[1\]\.pcie: Invalid option/),
  groups(
    "host-wrong-types.yaml",
    /:3: iommu\[0\]\.cap: Invalid input: expected string, received number/,
  ),
  groups("host-wrong-field.yaml", /:3: functions\[0\]\.bars\[0\]\.size: expected a power of two/),
  groups("host-binary.yaml", /:1: expected lspci -vvnn output, got binary data/),
  groups("host-duplicate.yaml", /:4: functions\[1\]: 0000:00:00\.0 is described twice/),
  groups("host-oversized.yaml", /:3: functions\[0\](\.children\[0\])+/),
  groups(
    "host-bus-loop.yaml",
    /:13: functions\[0\]\.children\[0\]\.secondary: .*bus 01 as secondary bus: a loop/,
  ),
  groups("host-cycle.yaml", /:\d+: .*(alias|cycl|recurs)/),
  groups("host-alias-bomb.yaml", /:\d+: .*alias/),
  // Scenario YAML, through `run` and `check`
  ...scenario("scenario-truncated.yaml", /:14: steps\[3\]: unknown op "io"/),
  ...scenario(
    "scenario-wrong-types.yaml",
    /:3: steps: Invalid input: expected array, received number/,
  ),
  ...scenario("scenario-wrong-step.yaml", /:5: steps\[1\]: unknown request VFIO_NOT_A_REQUEST/),
  ...scenario("scenario-binary.yaml", /:2: not valid YAML\/JSON/),
  ...scenario("scenario-unknown-host.yaml", /:2: host: no such file, directory or built-in host/),
  ...scenario("scenario-cycle.yaml", /:\d+: .*(alias|cycl|recurs)/),
  ...scenario("scenario-oversized.yaml", /:\d+: .*bytes:4294967295/),
];

interface Ran {
  code: number | null;
  err: string;
  timedOut: boolean;
}

/** The CLI as a child process (asynchronous: the cases run side by side). */
function cli(args: string[]): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, NO_COLOR: "1" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let err = "";
    let timedOut = false;
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (d: string) => {
      if (err.length < 1 << 16) err += d;
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, 10_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, err, timedOut });
    });
  });
}

describe("malformed inputs", { concurrency: 4 }, () => {
  for (const c of CASES) {
    const args = c.args.map((a) => (a === "FILE" ? join(DIR, c.file) : a));
    it(
      `${c.file} → passthru ${c.args[0]}: exit 2, one located line`,
      c.bug ? { todo: c.bug } : {},
      async () => {
        const r = await cli(args);
        assert.equal(r.timedOut, false, "finishes");
        assert.doesNotMatch(r.err, /\n\s+at /, "no stack trace");
        assert.doesNotMatch(r.err, /internal error/);
        assert.equal(r.code, 2, `exit 2; stderr: ${r.err.slice(0, 500)}`);
        const lines = r.err.trimEnd().split("\n");
        assert.equal(lines.length, 1, "one line");
        const line = lines[0] as string;
        const head = `passthru: ${join(DIR, c.file)}`;
        assert.ok(line.startsWith(head), `names the file: ${line}`);
        assert.match(line.slice(head.length), c.expect);
      },
    );
  }
});

test("every file of the corpus is a case", () => {
  const files = readdirSync(DIR).filter(
    (f) => !f.endsWith(".ts") && !f.endsWith(".js") && !f.endsWith(".map"),
  );
  assert.deepEqual([...new Set(CASES.map((c) => c.file))].sort(), files.sort());
});
