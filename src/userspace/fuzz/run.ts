/**
 * The fuzz loop: fast-check generates a configuration and a command sequence, the
 * executor (model.ts) runs it on a freshly booted kernel with every invariant checked
 * after every operation, then every process exits and nothing may be left. Batches of
 * runs continue, each with its own seed, until the requested number of operations ran.
 *
 * On the first failure: the sequence is cut after the failing command, fast-check shrinks
 * it (within a time budget), the minimal sequence is run once more to record its
 * operations, and they are written as a syscall script (script.ts) that reproduces the
 * failure.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { cmdsArb, configArb } from "./arbitraries.js";
import { fuzzHostInput, type FuzzConfig } from "./host.js";
import { FuzzFailure, runCommands, type FuzzCmd } from "./model.js";
import { failureKey, fuzzScriptText, minimiseOps } from "./script.js";

export interface FuzzOptions {
  /** Operations to run (at least; the last sequence runs to its end). */
  calls: number;
  seed: number;
  /** Commands per sequence, at most (a command is one to a few operations). */
  maxLength?: number;
  /** Sequences per fast-check batch. */
  batch?: number;
  /** Time allowed for shrinking a failure. */
  shrinkMs?: number;
  /** Where failing scripts go; nothing is written when null. */
  outDir?: string | null;
  /** Progress, every few seconds. */
  progress?: (r: FuzzReport) => void;
  /**
   * Failures already reported (failureKey of each): a sequence that hits one ends there,
   * is counted in `known`, and fuzzing goes on.
   */
  known?: string[];
  /** Fuzz the iommufd kernel build too (iommufd serving /dev/vfio/vfio, device cdevs). */
  iommufd?: boolean;
}

export interface FuzzFinding {
  kind: "exception" | "violation";
  message: string;
  config: FuzzConfig;
  /** Commands of the minimal sequence, and operations of its script. */
  commands: number;
  operations: number;
  /** The script's text and, when written, where. */
  script: string;
  file: string | null;
  /** Where the model threw, for exceptions. */
  stack?: string;
}

export interface FuzzReport {
  calls: number;
  runs: number;
  exceptions: number;
  violations: number;
  seconds: number;
  seed: number;
  finding: FuzzFinding | null;
  /** Known failures hit, by key. */
  known: Record<string, number>;
}

export function fuzz(o: FuzzOptions): FuzzReport {
  const maxLength = o.maxLength ?? 300;
  const t0 = Date.now();
  const report: FuzzReport = {
    calls: 0,
    runs: 0,
    exceptions: 0,
    violations: 0,
    seconds: 0,
    seed: o.seed,
    finding: null,
    known: {},
  };
  const known = new Set(o.known ?? []);
  let lastProgress = t0;
  const prop = fc.property(configArb(o.iommufd), cmdsArb(maxLength), (cfg, cmds) => {
    let calls: number;
    try {
      calls = runCommands(cfg, cmds).calls;
    } catch (e) {
      const k = e instanceof FuzzFailure ? failureKey(e) : "";
      if (!known.has(k)) throw e;
      report.known[k] = (report.known[k] ?? 0) + 1;
      calls = (e as FuzzFailure).calls;
    }
    report.calls += calls;
    report.runs++;
    if (o.progress && Date.now() - lastProgress > 5000) {
      lastProgress = Date.now();
      report.seconds = (lastProgress - t0) / 1000;
      o.progress(report);
    }
  });
  for (let batch = 0; report.calls < o.calls; batch++) {
    const seed = (o.seed + batch * 7919) | 0;
    const d = fc.check(prop, { seed, numRuns: o.batch ?? 20, endOnFailure: true });
    if (!d.failed) continue;
    const err = d.errorInstance;
    if (err instanceof FuzzFailure && err.kind === "violation") report.violations++;
    else report.exceptions++;
    const [cfg, cmds] = d.counterexample as [FuzzConfig, FuzzCmd[]];
    report.finding = minimise(cfg, cmds, err, seed, o, maxLength);
    break;
  }
  report.seconds = (Date.now() - t0) / 1000;
  return report;
}

/** Cut, shrink, record, write. */
function minimise(
  cfg: FuzzConfig,
  cmds: FuzzCmd[],
  err: unknown,
  seed: number,
  o: FuzzOptions,
  maxLength: number,
): FuzzFinding {
  const at = err instanceof FuzzFailure && err.cmdIndex >= 0 ? err.cmdIndex : cmds.length - 1;
  const cut = cmds.slice(0, at + 1);
  const shrink = fc.check(
    fc.property(configArb(o.iommufd), cmdsArb(maxLength), (c, cs) => void runCommands(c, cs)),
    {
      seed,
      numRuns: 1,
      examples: [[cfg, cut]],
      plugins: [fc.interruptAfterTimeLimit(o.shrinkMs ?? 120_000)],
    },
  );
  const [minCfg, minCmds] = (shrink.failed ? shrink.counterexample : [cfg, cut]) as [
    FuzzConfig,
    FuzzCmd[],
  ];
  let failure: FuzzFailure | null = null;
  let other: unknown = null;
  try {
    runCommands(minCfg, minCmds, { record: true });
  } catch (e) {
    if (e instanceof FuzzFailure) failure = e;
    else other = e;
  }
  const kind = failure?.kind ?? "exception";
  const message =
    failure?.message ??
    `exception in the fuzzer itself: ${other instanceof Error ? other.message : String(other)}`;
  const name = `fuzz-${seed >>> 0}-${kind}`;
  // Then operation by operation: whatever the failure does not need goes.
  const ops = failure
    ? minimiseOps(
        { name, cfg: minCfg, what: message },
        failure.ops,
        failureKey(failure),
        Date.now() + (o.shrinkMs ?? 120_000) / 2,
      )
    : [];
  const script = fuzzScriptText(name, minCfg, message, ops);
  let file: string | null = null;
  if (o.outDir !== null) {
    const dir = o.outDir ?? "fuzz-failures";
    mkdirSync(dir, { recursive: true });
    file = join(dir, `${name}.jsonl`);
    writeFileSync(file, script);
    const host = fuzzHostInput(minCfg.machine, minCfg.cmdline);
    writeFileSync(join(dir, `${name}.host.json`), JSON.stringify(host, null, 2) + "\n");
  }
  const stackOf = (e: unknown) => (e instanceof Error ? e.stack : undefined);
  const stack = stackOf(failure?.error) ?? stackOf(other);
  return {
    kind,
    message,
    config: minCfg,
    commands: minCmds.length,
    operations: ops.length,
    script,
    file,
    ...(stack ? { stack } : {}),
  };
}
