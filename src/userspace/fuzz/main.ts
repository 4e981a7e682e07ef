/**
 * `npm run fuzz -- [--calls N] [--seed S] [--workers W] [--max-length L] [--out DIR]`:
 * model-based fuzzing of the whole uAPI (run.ts) on W worker threads, each with its own
 * seed (S, S+1, ...) and its share of the N operations. Prints progress, then
 * `fuzz: N calls, E exceptions, V violations`; on a failure, the minimal script's path and
 * text. Exit 0 when nothing failed, 1 on a failure, 2 on bad arguments.
 *
 * `--replay FILE` runs a fuzz script again (every process, every invariant) and says
 * whether it still fails. `--known FILE` names failures already reported (a JSON list of
 * {"key", "summary", "script"}, keys as script.ts failureKey gives them): a sequence that
 * hits one stops there and is counted apart, and fuzzing goes on. `--iommufd` fuzzes the
 * iommufd kernel build as well as Debian's.
 *
 * Not part of the CLI (`passthru`): fast-check is a development dependency.
 */
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { InputError } from "../../host/errors.js";
import { fuzz, type FuzzOptions, type FuzzReport } from "./run.js";
import { replayFuzzFile } from "./script.js";

interface Args {
  calls: number;
  seed: number;
  workers: number;
  maxLength: number;
  out: string;
  replay?: string;
  known?: string;
  shrinkMs: number;
  iommufd: boolean;
}

function parseArgs(argv: string[]): Args | string {
  const a: Args = {
    calls: 1_000_000,
    seed: Date.now() % 1_000_000_007,
    workers: Math.max(1, Math.min(availableParallelism(), 8)),
    maxLength: 300,
    out: "fuzz-failures",
    shrinkMs: 120_000,
    iommufd: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i] as string;
    const v = argv[i + 1];
    const num = () => {
      const n = Number(v);
      if (v === undefined || !Number.isFinite(n) || n < 0)
        throw new Error(`${k}: expected a number`);
      i++;
      return Math.floor(n);
    };
    try {
      if (k === "--calls") a.calls = num();
      else if (k === "--seed") a.seed = num();
      else if (k === "--workers") a.workers = Math.max(1, num());
      else if (k === "--max-length") a.maxLength = Math.max(1, num());
      else if (k === "--shrink-seconds") a.shrinkMs = num() * 1000;
      else if (k === "--iommufd") a.iommufd = true;
      else if (k === "--out" && v !== undefined) {
        a.out = v;
        i++;
      } else if (k === "--replay" && v !== undefined) {
        a.replay = v;
        i++;
      } else if (k === "--known" && v !== undefined) {
        a.known = v;
        i++;
      } else return `unknown argument ${k}`;
    } catch (e) {
      return (e as Error).message;
    }
  }
  return a;
}

const line = (r: FuzzReport) =>
  `fuzz: ${r.calls} calls, ${r.exceptions} exceptions, ${r.violations} violations`;

function summary(r: FuzzReport, workers: number): string {
  const rate = r.seconds ? Math.round(r.calls / r.seconds) : 0;
  return `${line(r)} (${r.runs} sequences, ${r.seconds.toFixed(1)} s, ${rate} calls/s, ${workers} worker${workers === 1 ? "" : "s"}, seed ${r.seed})`;
}

async function main(argv: string[]): Promise<number> {
  const a = parseArgs(argv);
  if (typeof a === "string") {
    process.stderr.write(`fuzz: ${a}\n`);
    return 2;
  }
  if (a.replay) {
    try {
      const r = replayFuzzFile(a.replay);
      for (const l of r.results) process.stdout.write(l + "\n");
      process.stdout.write(
        r.failure ? `fuzz: still fails: ${r.failure.message}\n` : "fuzz: passes now\n",
      );
      return r.failure ? 1 : 0;
    } catch (e) {
      if (e instanceof InputError) {
        process.stderr.write(`fuzz: ${e.message}\n`);
        return 2;
      }
      throw e;
    }
  }
  let known: { key: string; summary?: string }[] = [];
  if (a.known) {
    try {
      known = JSON.parse(readFileSync(a.known, "utf8")) as typeof known;
      if (!Array.isArray(known) || known.some((x) => typeof x?.key !== "string"))
        throw new Error("expected a list of {key, summary}");
    } catch (e) {
      process.stderr.write(`fuzz: ${a.known}: ${(e as Error).message}\n`);
      return 2;
    }
  }
  const per = Math.ceil(a.calls / a.workers);
  const t0 = Date.now();
  const reports = await Promise.all(
    Array.from({ length: a.workers }, (_, w) =>
      runWorker({
        calls: per,
        seed: a.seed + w,
        maxLength: a.maxLength,
        outDir: a.out,
        shrinkMs: a.shrinkMs,
        known: known.map((x) => x.key),
        iommufd: a.iommufd,
      }),
    ),
  );
  const total: FuzzReport = {
    calls: reports.reduce((n, r) => n + r.calls, 0),
    runs: reports.reduce((n, r) => n + r.runs, 0),
    exceptions: reports.reduce((n, r) => n + r.exceptions, 0),
    violations: reports.reduce((n, r) => n + r.violations, 0),
    seconds: (Date.now() - t0) / 1000,
    seed: a.seed,
    finding: reports.find((r) => r.finding)?.finding ?? null,
    known: {},
  };
  for (const r of reports)
    for (const [k, n] of Object.entries(r.known)) total.known[k] = (total.known[k] ?? 0) + n;
  for (const r of reports) {
    const f = r.finding;
    if (!f) continue;
    process.stdout.write(
      `\nfuzz: ${f.kind} (seed ${r.seed}), minimal sequence: ${f.commands} commands, ${f.operations} operations\n` +
        `  ${f.message}\n` +
        (f.file ? `  script: ${f.file}\n  replay: npm run fuzz -- --replay ${f.file}\n` : "") +
        (f.stack ? `${f.stack}\n` : "") +
        f.script,
    );
  }
  for (const [k, n] of Object.entries(total.known)) {
    const info = known.find((x) => x.key === k);
    process.stdout.write(
      `fuzz: known model bug hit ${n} time(s), skipped: ${info?.summary ?? k}\n`,
    );
  }
  process.stdout.write(summary(total, a.workers) + "\n");
  return total.exceptions || total.violations ? 1 : 0;
}

/** One share of the work, on a worker thread (or here, with one worker). */
function runWorker(o: Omit<FuzzOptions, "progress">): Promise<FuzzReport> {
  const progress = (r: FuzzReport) =>
    process.stderr.write(
      `  seed ${r.seed}: ${r.calls} calls, ${r.runs} sequences, ${r.seconds.toFixed(0)} s\n`,
    );
  return new Promise((resolve, reject) => {
    const w = new Worker(fileURLToPath(import.meta.url), { workerData: o });
    w.on("message", (m: { progress?: FuzzReport; done?: FuzzReport }) => {
      if (m.progress) progress(m.progress);
      if (m.done) resolve(m.done);
    });
    w.on("error", reject);
    w.on("exit", (code) => {
      if (code !== 0) reject(new Error(`fuzz worker exited with ${code}`));
    });
  });
}

if (!isMainThread) {
  const o = workerData as FuzzOptions;
  const r = fuzz({ ...o, progress: (p) => parentPort?.postMessage({ progress: p }) });
  parentPort?.postMessage({ done: r });
} else if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(process.argv.slice(2)).then(
    (code) => process.stdout.write("", () => process.exit(code)),
    (e: unknown) => {
      process.stderr.write(`fuzz: internal error: ${e instanceof Error ? e.stack : String(e)}\n`);
      process.exit(1);
    },
  );
}
