/**
 * Where the oracle keeps what it builds once (the agent, kernels, initramfs images) and
 * the last run of each case: `${XDG_CACHE_HOME:-~/.cache}/passthru/oracle`, or
 * PASSTHRU_ORACLE_CACHE. Builds go to a temporary name and are renamed into place, so a
 * reader never sees half a file; long builds hold a lock directory so two processes on the
 * machine never build the same thing at once (the second waits, then finds it built).
 */
import { spawn, spawnSync, type SpawnOptions } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

export class OracleError extends Error {
  constructor(
    message: string,
    /** 1: the run failed; 2: the case or the request is unusable. */
    readonly code: 1 | 2 = 1,
  ) {
    super(message);
    this.name = "OracleError";
  }
}

export function cacheDir(...parts: string[]): string {
  const base =
    process.env.PASSTHRU_ORACLE_CACHE ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "passthru", "oracle");
  const d = join(base, ...parts);
  mkdirSync(d, { recursive: true });
  return d;
}

export function hash16(...parts: (string | Buffer)[]): string {
  const h = createHash("sha256");
  for (const p of parts) h.update(p).update("\0");
  return h.digest("hex").slice(0, 16);
}

/** Progress on stderr unless quiet. */
export type Log = (msg: string) => void;
export const stderrLog: Log = (m) =>
  process.stderr.write(`[${new Date().toTimeString().slice(0, 8)}] ${m}\n`);
export const quietLog: Log = () => {};

/** Run a command to completion; throws OracleError with its output's tail on failure. */
export function run(
  cmd: string,
  args: string[],
  opts: SpawnOptions & { what?: string } = {},
): string {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 1 << 28, ...opts });
  if (r.error) throw new OracleError(`${opts.what ?? cmd}: ${r.error.message}`);
  if (r.status !== 0) {
    const tail = `${r.stderr ?? ""}${r.stdout ?? ""}`.trim().split("\n").slice(-5).join("\n");
    throw new OracleError(`${opts.what ?? cmd} failed (exit ${r.status}): ${tail}`);
  }
  return String(r.stdout ?? "");
}

/** Run a command asynchronously; resolves with its exit code (null: killed by the timeout). */
export function runAsync(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; stdoutFile?: string } = {},
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const keep = (c: Buffer) => {
      output = (output + c.toString("utf8")).slice(-8192);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    let timedOut = false;
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          child.kill("SIGKILL");
        }, opts.timeoutMs)
      : null;
    child.on("error", (e) => {
      if (timer) clearTimeout(timer);
      resolve({ code: 127, output: e.message });
    });
    child.on("close", (code) => {
      if (timer) clearTimeout(timer);
      if (opts.stdoutFile) writeFileSync(opts.stdoutFile, output);
      resolve({ code: timedOut ? null : (code ?? 1), output });
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Hold a named lock (a directory holding the owner's pid) while fn runs. A lock whose
 * owner is gone is taken over; otherwise wait, telling the user once.
 */
export async function withLock<T>(name: string, log: Log, fn: () => Promise<T> | T): Promise<T> {
  const dir = join(cacheDir("locks"), name);
  let told = false;
  for (;;) {
    try {
      mkdirSync(dir);
      writeFileSync(join(dir, "pid"), String(process.pid));
      break;
    } catch {
      let pid = 0;
      try {
        pid = Number(readFileSync(join(dir, "pid"), "utf8"));
      } catch {
        /* being created or removed */
      }
      const age = existsSync(dir) ? Date.now() - statSync(dir).mtimeMs : 0;
      if ((pid && !alive(pid)) || (!pid && age > 10_000)) {
        rmSync(dir, { recursive: true, force: true });
        continue;
      }
      if (!told) log(`waiting for ${name} (process ${pid || "?"} holds it)`);
      told = true;
      await sleep(1000);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
