/**
 * Commands in a guest: boot a case's topology (case.json) with the oracle's initramfs, add
 * files to it, run shell commands one after another as root against the guest kernel's own
 * /sys and /dev, and bring back each command's exit status, stdout and stderr and the guest
 * files asked for. The base initramfs's init runs /exec when there is one (guest.ts); /exec
 * (written here) frames everything on the second serial port:
 *
 *   @@PASSTHRU command I STATUS    then the command's stdout and stderr as two blocks
 *   @@PASSTHRU file I              then guest file I (absent: no block follows)
 *   @@PASSTHRU block BYTES         base64 of BYTES bytes
 *   @@PASSTHRU block-end
 *   @@PASSTHRU exec-end N          N commands ran
 *
 * Later archives of an initramfs add to the files of earlier ones (Documentation/
 * driver-api/early-userspace/buffer-format.rst), so the extra files ride, uncompressed, in
 * an archive after the cached one.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { InputError } from "../host/errors.js";
import { OracleError, cacheDir, quietLog, type Log } from "./cache.js";
import { parseCaseSpec, type CaseSpec } from "./case.js";
import { cpio, type CpioEntry } from "./cpio.js";
import { baseInitramfs, buildAgent } from "./guest.js";
import { kernelImage } from "./kernels.js";
import { RUN_PACKAGES, ensurePackages } from "./packages.js";
import { boot, type Accel } from "./qemu.js";

export interface ExecRequest {
  /** Names the run's directory (cacheDir("runs", "exec-" + name)). */
  name: string;
  spec: CaseSpec;
  /** Each run by the guest's `sh` in /tmp, stdin /dev/null; all run, whatever their status. */
  commands: string[];
  /** Added to the initramfs (directories they need included). */
  files?: CpioEntry[];
  /** Guest files read after the last command. */
  fetch?: string[];
  accel?: Accel;
  timeoutMs?: number;
  log?: Log;
}

export interface CommandResult {
  command: string;
  status: number;
  stdout: string;
  stderr: string;
}

export interface ExecResult {
  commands: CommandResult[];
  /** Fetched guest files by path; a file that could not be read is missing. */
  files: Map<string, Buffer>;
  kernel: string;
  seconds: number;
  /** The run's directory: qemu.cmd, console.log, serial.raw. */
  workDir: string;
}

/** A case directory's case.json. */
export function loadCaseSpec(dir: string): CaseSpec {
  const file = join(dir, "case.json");
  if (!existsSync(file)) throw new InputError(dir, "not a case directory (no case.json)");
  return parseCaseSpec(readFileSync(file, "utf8"), file);
}

const quote = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;

/** The guest's /exec: run the commands (files /exec.d/I), then read the files to fetch. */
export function execScript(commands: number, fetch: string[]): string {
  const lines = [
    "#!/bin/sh",
    "export PATH=/usr/bin:/bin HOME=/tmp",
    "cd /tmp",
    'block() { echo "@@PASSTHRU block $(wc -c < "$1")"; base64 "$1"; echo "@@PASSTHRU block-end"; }',
  ];
  for (let i = 0; i < commands; i++)
    lines.push(
      `sh /exec.d/${i} < /dev/null > /tmp/exec.out 2> /tmp/exec.err`,
      `echo "@@PASSTHRU command ${i} $?"`,
      "block /tmp/exec.out",
      "block /tmp/exec.err",
    );
  fetch.forEach((f, i) =>
    lines.push(
      `echo "@@PASSTHRU file ${i}"`,
      `cat ${quote(f)} > /tmp/exec.file 2>/dev/null && block /tmp/exec.file`,
    ),
  );
  lines.push(`echo "@@PASSTHRU exec-end ${commands}"`);
  return lines.join("\n") + "\n";
}

/** The commands' results and the fetched files from the guest's serial output. */
export function decodeExec(
  raw: string,
  commands: string[],
  fetch: string[],
): Pick<ExecResult, "commands" | "files"> {
  const lines = raw.replace(/\r/g, "").split("\n");
  let at = 0;
  const block = (what: string): Buffer => {
    const head = /^@@PASSTHRU block (\d+)$/.exec(lines[at] ?? "");
    const end = lines.indexOf("@@PASSTHRU block-end", at);
    if (!head || end < 0) throw new OracleError(`${what}: the guest's output is cut short`);
    const data = Buffer.from(lines.slice(at + 1, end).join(""), "base64");
    if (data.length !== Number(head[1]))
      throw new OracleError(`${what}: ${data.length} bytes arrived, the guest sent ${head[1]}`);
    at = end + 1;
    return data;
  };
  const results: CommandResult[] = [];
  const files = new Map<string, Buffer>();
  for (; at < lines.length; at++) {
    const l = lines[at] as string;
    const c = /^@@PASSTHRU command (\d+) (\d+)$/.exec(l);
    const f = /^@@PASSTHRU file (\d+)$/.exec(l);
    const e = /^@@PASSTHRU exec-end (\d+)$/.exec(l);
    if (c) {
      const command = commands[Number(c[1])] as string;
      at++;
      const stdout = block(`${command}: stdout`).toString("utf8");
      const stderr = block(`${command}: stderr`).toString("utf8");
      at--;
      results.push({ command, status: Number(c[2]), stdout, stderr });
    } else if (f) {
      const path = fetch[Number(f[1])] as string;
      if (lines[at + 1]?.startsWith("@@PASSTHRU block ")) {
        at++;
        files.set(path, block(path));
        at--;
      }
    } else if (e) {
      if (results.length !== commands.length)
        throw new OracleError(`${results.length} of ${commands.length} commands reported`);
      return { commands: results, files };
    }
  }
  throw new OracleError(
    `the guest stopped after ${results.length} of ${commands.length} commands (no exec-end)`,
  );
}

/** Boot the topology, run the commands, power off. */
export async function guestExec(req: ExecRequest): Promise<ExecResult> {
  const log = req.log ?? quietLog;
  const fetch = req.fetch ?? [];
  ensurePackages(RUN_PACKAGES, log);
  const kernel = await kernelImage(req.spec.kernel, log);
  const base = await baseInitramfs(kernel, await buildAgent(log), log);
  const work = cacheDir("runs", `exec-${req.name}`);
  for (const f of ["console.log", "serial.raw", "qemu.log"]) rmSync(join(work, f), { force: true });
  const extra = cpio([
    ...(req.files ?? []),
    { name: "exec.d", kind: "dir" },
    ...req.commands.map((c, i): CpioEntry => ({
      name: `exec.d/${i}`,
      kind: "file",
      data: Buffer.from(c + "\n"),
    })),
    {
      name: "exec",
      kind: "file",
      data: Buffer.from(execScript(req.commands.length, fetch)),
      mode: 0o755,
    },
  ]);
  const initrd = join(work, "initrd.cpio");
  // an uncompressed archive starts on a 4-byte boundary; zeros between archives are skipped
  // (init/initramfs.c unpack_to_rootfs)
  const head = readFileSync(base);
  writeFileSync(initrd, Buffer.concat([head, Buffer.alloc(-head.length & 3), extra]));
  log(`exec-${req.name}: booting (${kernel.describe}, ${req.commands.length} commands)`);
  const t0 = Date.now();
  try {
    await boot({
      accel: req.accel,
      kernel: kernel.path,
      initrd,
      append: req.spec.append,
      qemu: req.spec.qemu,
      workDir: work,
      timeoutMs: req.timeoutMs ?? 120_000,
    });
  } finally {
    rmSync(initrd, { force: true });
  }
  const seconds = (Date.now() - t0) / 1000;
  const raw = existsSync(join(work, "serial.raw"))
    ? readFileSync(join(work, "serial.raw"), "latin1")
    : "";
  try {
    return {
      ...decodeExec(raw, req.commands, fetch),
      kernel: kernel.describe,
      seconds,
      workDir: work,
    };
  } catch (e) {
    if (e instanceof OracleError)
      throw new OracleError(`exec-${req.name}: ${e.message}; see ${join(work, "console.log")}`);
    throw e;
  }
}
