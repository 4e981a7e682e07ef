/**
 * Running a case on a real kernel and recording it: the QEMU backends (Debian's kernel,
 * the iommufd kernel, a user's bzImage) and the host backend (this machine's own kernel,
 * the agent run directly). A recording writes snapshot.tar.gz and expected.jsonl; a
 * snapshot that differs from the one already there only in proc/cpuinfo (TCG's clock
 * figures change from boot to boot) is kept as it was, so re-recording changes nothing
 * that did not change.
 */
import { spawnSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { fileURLToPath } from "node:url";
import { join, resolve } from "node:path";
import { readSnapshot } from "../host/snapshot.js";
import { InputError } from "../host/errors.js";
import { captureHost, toTarGz } from "../userspace/snapshot/capture.js";
import { OracleError, cacheDir, hash16, quietLog, run, type Log } from "./cache.js";
import { loadCase, topologyKey, type OracleCase } from "./case.js";
import { baseInitramfs, buildAgent, programCpio } from "./guest.js";
import { kernelImage, type KernelImage } from "./kernels.js";
import { RUN_PACKAGES, ensurePackages } from "./packages.js";
import { compile, extractAnswers, formatResults } from "./program.js";
import { boot, decodeSerial } from "./qemu.js";
import { snapshotFromDump } from "./snapshot.js";

export interface RunOptions {
  /** "debian", "iommufd", or the path of a bzImage; default: the case's kernel. */
  kernel?: string;
  timeoutMs?: number;
  log?: Log;
  /** Host backend: let the script write sysfs on this machine. */
  allowHostWrites?: boolean;
  /**
   * Host backend: which native runner makes the calls — "agent" (native/agent, every
   * operation) or "kvm-script" (native/kvm-script, the KVM tests' helper: KVM operations,
   * ENOSYS for the rest).
   */
  runner?: "agent" | "kvm-script";
}

export interface RunResult {
  name: string;
  lines: string[];
  /** gzip'd tar (deterministic: the capture's order, mtime 0). */
  snapshot: Buffer;
  seconds: number;
  kernel: string;
}

const DEFAULT_TIMEOUT_MS = 240_000;
const ATTEMPTS = 8;

function timeout(opts: RunOptions): number {
  return (
    opts.timeoutMs ?? (Number(process.env.PASSTHRU_ORACLE_TIMEOUT) * 1000 || DEFAULT_TIMEOUT_MS)
  );
}

/** Load and compile a case; a malformed one is an OracleError with code 2. */
export function prepareCase(dir: string): { c: OracleCase; program: ReturnType<typeof compile> } {
  try {
    const c = loadCase(dir);
    return { c, program: compile(c.script, join(c.dir, "script.jsonl")) };
  } catch (e) {
    if (e instanceof InputError) throw new OracleError(e.message, 2);
    throw e;
  }
}

export async function kernelFor(c: OracleCase, opts: RunOptions): Promise<KernelImage> {
  return kernelImage(opts.kernel ?? c.spec.kernel, opts.log ?? quietLog);
}

/** Build what a kernel's boots need (packages, kernel, agent, initramfs) once. */
export async function prepareKernel(
  c: OracleCase,
  opts: RunOptions,
): Promise<{ kernel: KernelImage; initrd: string }> {
  const log = opts.log ?? quietLog;
  ensurePackages(RUN_PACKAGES, log);
  const kernel = await kernelFor(c, opts);
  const agent = await buildAgent(log);
  return { kernel, initrd: await baseInitramfs(kernel, agent, log) };
}

/** Boot the case's kernel in QEMU, run the script, return the result lines and snapshot. */
export async function runCase(dir: string, opts: RunOptions = {}): Promise<RunResult> {
  const log = opts.log ?? quietLog;
  const { c, program } = prepareCase(dir);
  const { kernel, initrd } = await prepareKernel(c, opts);
  const work = cacheDir("runs", c.name);
  for (const f of ["console.log", "serial.raw", "qemu.log", "initrd.cpio.gz"])
    rmSync(join(work, f), { force: true });
  writeFileSync(join(work, "program"), program.text);
  const initrdCase = join(work, "initrd.cpio.gz");
  writeFileSync(initrdCase, Buffer.concat([readFileSync(initrd), programCpio(program.text)]));
  const see = `; see ${join(work, "console.log")}`;
  let decoded;
  let seconds: number;
  // A guest that dies before its userspace starts (under TCG on a loaded host the kernel's
  // early timer check can fail: "timer doesn't work through Interrupt-remapped IO-APIC")
  // says nothing about the case: boot it again, up to ATTEMPTS times, a little later.
  for (let attempt = 1; ; attempt++) {
    log(`${c.name}: booting (${kernel.describe}, ${program.plans.length} operations)`);
    const t0 = Date.now();
    await boot({
      kernel: kernel.path,
      initrd: initrdCase,
      append: c.spec.append,
      qemu: c.spec.qemu,
      workDir: work,
      timeoutMs: timeout(opts),
    });
    seconds = (Date.now() - t0) / 1000;
    const raw = existsSync(join(work, "serial.raw"))
      ? readFileSync(join(work, "serial.raw"), "latin1")
      : "";
    try {
      decoded = decodeSerial(raw);
      break;
    } catch (e) {
      const consoleText = existsSync(join(work, "console.log"))
        ? readFileSync(join(work, "console.log"), "latin1")
        : "";
      const panic = /Kernel panic - not syncing: (.*)/.exec(consoleText)?.[1]?.trim();
      const early = !consoleText.includes("passthru-init:");
      if (!early || attempt >= ATTEMPTS)
        throw new OracleError(
          `${c.name}: ${(e as Error).message}${panic ? ` (kernel panic: ${panic})` : ""}${see}`,
        );
      log(
        `${c.name}: the guest died before its userspace${panic ? ` (${panic})` : ""}; booting again`,
      );
      await new Promise((r) => setTimeout(r, 2000 * attempt));
    }
  }
  const { answers, error } = extractAnswers(decoded.answers, program.plans.length);
  if (error) throw new OracleError(`${c.name}: ${error}${see}`);
  rmSync(initrdCase, { force: true });
  return {
    name: c.name,
    lines: formatResults(program, answers),
    snapshot: await snapshotFromDump(decoded.dump),
    seconds,
    kernel: kernel.describe,
  };
}

/** Same files and links with the same contents, proc/cpuinfo and PCI slots aside. */
export async function sameSnapshot(a: Buffer | string, b: Buffer | string): Promise<boolean> {
  const load = async (x: Buffer | string) => {
    if (typeof x === "string") return readSnapshot(x);
    const tmp = join(
      cacheDir("tmp"),
      `cmp-${process.pid}-${Math.random().toString(36).slice(2)}.tar.gz`,
    );
    writeFileSync(tmp, x);
    try {
      return await readSnapshot(tmp);
    } finally {
      rmSync(tmp, { force: true });
    }
  };
  let fa, fb;
  try {
    [fa, fb] = [await load(a), await load(b)];
  } catch {
    return false;
  }
  // files and links; directories are implied by them (a capture may list empty ones).
  // sys/bus/pci/slots is left out too: the project's capture takes it, the reference
  // agent's snapshots (test/oracle/cases) do not, and it follows from the topology.
  const keys = (m: typeof fa.entries) =>
    [...m.entries()]
      .filter(
        ([k, e]) => k !== "proc/cpuinfo" && !k.startsWith("sys/bus/pci/slots/") && e.kind !== "dir",
      )
      .map(([k]) => k)
      .sort();
  const ka = keys(fa.entries);
  if (JSON.stringify(ka) !== JSON.stringify(keys(fb.entries))) return false;
  return ka.every((k) => {
    const x = fa.entries.get(k);
    const y = fb.entries.get(k);
    if (x?.kind !== y?.kind) return false;
    if (x?.kind === "file" && y?.kind === "file") return x.data.equals(y.data);
    if (x?.kind === "link" && y?.kind === "link") return x.target === y.target;
    return true;
  });
}

/**
 * Write a run's files into out. `reuse` is a snapshot to keep when the new one is the
 * same but for proc/cpuinfo (the one already in out is tried first).
 */
export async function storeRun(
  r: RunResult,
  out: string,
  reuse?: Buffer,
  from?: string,
): Promise<void> {
  mkdirSync(out, { recursive: true });
  // recorded elsewhere: the output is a whole case
  if (from && resolve(from) !== resolve(out))
    for (const f of ["case.json", "script.jsonl"]) copyFileSync(join(from, f), join(out, f));
  const snap = join(out, "snapshot.tar.gz");
  let bytes = r.snapshot;
  if (existsSync(snap) && (await sameSnapshot(snap, r.snapshot))) bytes = readFileSync(snap);
  else if (reuse && (await sameSnapshot(reuse, r.snapshot))) bytes = reuse;
  if (!existsSync(snap) || !readFileSync(snap).equals(bytes)) {
    writeFileSync(`${snap}.tmp`, bytes);
    renameSync(`${snap}.tmp`, snap);
  }
  writeFileSync(join(out, "expected.jsonl.tmp"), r.lines.join("\n") + "\n");
  renameSync(join(out, "expected.jsonl.tmp"), join(out, "expected.jsonl"));
}

export interface BatchOptions extends RunOptions {
  jobs: number;
  /** Record into scratch and compare with the expected.jsonl already there. */
  verify?: boolean;
}

export interface BatchOutcome {
  name: string;
  dir: string;
  status: "recorded" | "reproduced" | "differs" | "failed";
  detail?: string;
  seconds?: number;
}

/** Record (or verify) many cases, `jobs` boots at a time; kernels are prepared first. */
export async function recordAll(dirs: string[], opts: BatchOptions): Promise<BatchOutcome[]> {
  const log = opts.log ?? quietLog;
  const cases = dirs.map((d) => ({ dir: resolve(d), prep: safePrepare(d) }));
  // build each kernel's initramfs once, before the parallel boots
  const kinds = new Set<string>();
  for (const { prep } of cases) {
    if ("error" in prep) continue;
    const k = opts.kernel ?? prep.c.spec.kernel;
    if (!kinds.has(k)) {
      kinds.add(k);
      await prepareKernel(prep.c, { ...opts, log });
    }
  }
  // one snapshot file per topology: seeded from the cases already recorded
  const canonical = new Map<string, Buffer>();
  for (const { dir, prep } of cases) {
    if ("error" in prep || !existsSync(join(dir, "snapshot.tar.gz"))) continue;
    const key = topologyKey(prep.c.spec) + (opts.kernel ?? "");
    if (!canonical.has(key)) canonical.set(key, readFileSync(join(dir, "snapshot.tar.gz")));
  }
  const outcomes: BatchOutcome[] = new Array(cases.length);
  let next = 0;
  let done = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= cases.length) return;
      const { dir, prep } = cases[i] as (typeof cases)[number];
      const name = dir.split("/").pop() as string;
      if ("error" in prep) {
        outcomes[i] = { name, dir, status: "failed", detail: prep.error };
        continue;
      }
      try {
        const r = await runCase(dir, { ...opts, log: quietLog });
        const key = topologyKey(prep.c.spec) + (opts.kernel ?? "");
        if (opts.verify) {
          const want = existsSync(join(dir, "expected.jsonl"))
            ? readFileSync(join(dir, "expected.jsonl"), "utf8").trimEnd().split("\n")
            : null;
          const at = want ? firstDifference(want, r.lines) : 0;
          outcomes[i] =
            at === -1
              ? { name, dir, status: "reproduced", seconds: r.seconds }
              : {
                  name,
                  dir,
                  status: "differs",
                  detail: want ? `first difference on line ${at + 1}` : "no expected.jsonl",
                  seconds: r.seconds,
                };
        } else {
          await storeRun(r, dir, canonical.get(key));
          if (!canonical.has(key)) canonical.set(key, readFileSync(join(dir, "snapshot.tar.gz")));
          outcomes[i] = { name, dir, status: "recorded", seconds: r.seconds };
        }
      } catch (e) {
        outcomes[i] = { name, dir, status: "failed", detail: (e as Error).message };
      }
      done++;
      const o = outcomes[i] as BatchOutcome;
      log(
        `[${done}/${cases.length}] ${name}: ${o.status}${o.seconds ? ` in ${o.seconds.toFixed(1)} s` : ""}${o.detail ? ` (${o.detail})` : ""}`,
      );
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.jobs) }, worker));
  return outcomes;
}

function safePrepare(dir: string): ReturnType<typeof prepareCase> | { error: string } {
  try {
    return prepareCase(dir);
  } catch (e) {
    return { error: (e as Error).message };
  }
}

/** Index of the first line that differs (or is missing on one side); -1 when equal. */
export function firstDifference(a: string[], b: string[]): number {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/* ------------------------------------------------------------ host backend */

/**
 * Run a case's script on this machine's own kernel (the agent, built here, run directly)
 * and capture this machine as the snapshot the model boots from.
 */
export async function runOnHost(dir: string, opts: RunOptions = {}): Promise<RunResult> {
  const log = opts.log ?? quietLog;
  const { c, program } = prepareCase(dir);
  const writes = c.script.ops.filter((o) => o.op === "sysfs_write");
  if (writes.length && !opts.allowHostWrites)
    throw new OracleError(
      `${c.name}: the script writes sysfs (line ${(writes[0] as { line: number }).line}); on this host that would rebind ` +
        "its devices. Only scripts without sysfs_write run here (or pass --allow-host-writes)",
      2,
    );
  ensurePackages(["gcc", "libc6-dev"], log);
  const cap = captureHost("/");
  const snapshot = await toTarGz(cap.entries);
  if (opts.runner === "kvm-script") return runKvmScript(c, snapshot, opts);
  const agent = await buildAgent(log);
  const work = cacheDir("runs", `host-${c.name}`);
  const progFile = join(work, "program");
  writeFileSync(progFile, program.text);
  const t0 = Date.now();
  const r = spawnSync(agent, [progFile], {
    encoding: "latin1",
    maxBuffer: 1 << 28,
    timeout: timeout(opts),
  });
  if (r.status !== 0)
    throw new OracleError(
      `the agent failed on this host (exit ${r.status}): ${String(r.stderr).trim()}`,
    );
  const { answers, error } = extractAnswers(String(r.stdout), program.plans.length);
  if (error) throw new OracleError(`${c.name}: ${error}`);
  return {
    name: c.name,
    lines: formatResults(program, answers),
    snapshot,
    seconds: (Date.now() - t0) / 1000,
    kernel: `this host (${readFileSync("/proc/sys/kernel/osrelease", "utf8").trim()})`,
  };
}

export const KVM_SCRIPT_SOURCE = fileURLToPath(
  new URL("../../../native/kvm-script/kvm-script.c", import.meta.url),
);

/** The KVM tests' helper (native/kvm-script): it reads the script and prints result lines. */
async function runKvmScript(c: OracleCase, snapshot: Buffer, opts: RunOptions): Promise<RunResult> {
  if (!existsSync(KVM_SCRIPT_SOURCE))
    throw new OracleError(`no ${KVM_SCRIPT_SOURCE} in this tree`, 2);
  const src = readFileSync(KVM_SCRIPT_SOURCE);
  const bin = join(cacheDir("kvm-script"), `kvm-script-${hash16(src)}`);
  if (!existsSync(bin)) {
    (opts.log ?? quietLog)("building native/kvm-script");
    run("cc", ["-std=gnu11", "-O2", "-Wall", "-o", `${bin}.tmp`, KVM_SCRIPT_SOURCE], {
      what: "cc (kvm-script)",
    });
    renameSync(`${bin}.tmp`, bin);
  }
  const t0 = Date.now();
  const r = spawnSync(bin, [join(c.dir, "script.jsonl")], {
    encoding: "utf8",
    maxBuffer: 1 << 28,
    timeout: timeout(opts),
  });
  if (r.status !== 0)
    throw new OracleError(`kvm-script failed (exit ${r.status}): ${String(r.stderr).trim()}`);
  const lines = String(r.stdout).trimEnd().split("\n");
  if (lines.length !== c.script.ops.length)
    throw new OracleError(
      `kvm-script: ${lines.length} result lines for ${c.script.ops.length} operations`,
    );
  return {
    name: c.name,
    lines,
    snapshot,
    seconds: (Date.now() - t0) / 1000,
    kernel: `this host (${readFileSync("/proc/sys/kernel/osrelease", "utf8").trim()}, native/kvm-script)`,
  };
}
