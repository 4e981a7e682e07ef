/**
 * Fuzz failures as syscall scripts (SCRIPT.md, version 1). The operations are the ones the
 * fuzzer ran, in order; each carries its process in `note` ("p0", "p1", "p2": see
 * model.ts PROCESSES). The header's note says what failed and ends with
 * `config={...}`, the fuzz configuration (machine, command-line words, KVM profile)
 * needed to boot the same kernel. A script whose operations all belong to p0 replays as
 * it is with `passthru replay --snapshot <the .host.json beside it> --script <it>`;
 * `replayFuzzScript` replays any of them with every process and every invariant.
 */
import { readFileSync } from "node:fs";
import { InputError } from "../../host/errors.js";
import { parseScript, type Json, type Op } from "../replay/script.js";
import type { FuzzConfig } from "./host.js";
import { FuzzFailure, FuzzRun } from "./model.js";

/** The script's text: a header, then one operation per line (no `line` field). */
export function fuzzScriptText(name: string, cfg: FuzzConfig, what: string, ops: Op[]): string {
  const procs = [...new Set(ops.map((o) => String(o.note)))].sort();
  const note =
    `${what}. Found by the passthru fuzzer; processes ${procs.join(", ")} ` +
    `(each operation's note): p0 root, p1 root without CAP_IPC_LOCK and 64 KiB of ` +
    `RLIMIT_MEMLOCK, p2 uid 1000 without capabilities. config=${JSON.stringify(cfg)}`;
  const lines = [JSON.stringify({ script: 1, name, note })];
  for (const op of ops) {
    const rec: Record<string, Json> = {};
    for (const [k, v] of Object.entries(op)) if (k !== "line") rec[k] = v;
    lines.push(JSON.stringify(rec));
  }
  return lines.join("\n") + "\n";
}

/** The fuzz configuration a script's header carries. */
export function scriptConfig(note: string | undefined, file: string): FuzzConfig {
  const m = /config=(\{.*\})\s*$/.exec(note ?? "");
  if (!m) throw new InputError(file, "the header's note carries no fuzz config=", 1, "note");
  try {
    return JSON.parse(m[1] as string) as FuzzConfig;
  } catch {
    throw new InputError(file, "the fuzz config= in the header's note is not JSON", 1, "note");
  }
}

export interface ReplayOutcome {
  /** Result lines, as `passthru replay` prints them. */
  results: string[];
  /** The failure the script reproduces, or null when every operation passed. */
  failure: FuzzFailure | null;
}

/**
 * Run a fuzz script again: the same machine and kernel, each operation by its process,
 * invariants after each, then every process exits and the leak checks run.
 */
export function replayFuzzScript(text: string, file: string): ReplayOutcome {
  const script = parseScript(text, file);
  const run = new FuzzRun(scriptConfig(script.note, file));
  const results: string[] = [];
  try {
    for (const op of script.ops) {
      const p = run.procs[Number(/^p(\d)$/.exec(String(op.note))?.[1] ?? 0)] ?? run.procs[0];
      // FuzzRun.op writes the process back into `note`.
      results.push(JSON.stringify(run.op(p as FuzzRun["procs"][number], { ...op })));
    }
    run.teardown();
    return { results, failure: null };
  } catch (e) {
    if (e instanceof FuzzFailure) return { results, failure: e };
    throw e;
  } finally {
    run.checker.detach();
  }
}

export function replayFuzzFile(path: string): ReplayOutcome {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    throw new InputError(path, "cannot read the script");
  }
  return replayFuzzScript(text, path);
}

/** What makes two failures the same: their kind and message, names and numbers aside. */
export function failureKey(f: FuzzFailure): string {
  return `${f.kind}: ${f.message.replace(/\$?\b[a-z]+\d+\b/g, "N").replace(/\d+/g, "N")}`;
}

/**
 * Delta debugging over a failing script's operations (ddmin, greedy): drop chunks of
 * operations, halving the chunk size, keeping every removal after which the script still
 * parses and fails the same way. Stops when no single operation can go, or at `deadline`.
 */
export function minimiseOps(
  header: { name: string; cfg: FuzzConfig; what: string },
  ops: Op[],
  key: string,
  deadline = Date.now() + 60_000,
): Op[] {
  const fails = (candidate: Op[]): boolean => {
    try {
      const text = fuzzScriptText(header.name, header.cfg, header.what, candidate);
      const r = replayFuzzScript(text, "fuzz");
      return r.failure !== null && failureKey(r.failure) === key;
    } catch {
      return false; // unparsable (a name used before it is bound) or the harness broke
    }
  };
  let cur = ops;
  for (let chunk = Math.max(1, cur.length >> 1); chunk >= 1 && Date.now() < deadline;) {
    let removed = false;
    for (let at = 0; at < cur.length && Date.now() < deadline;) {
      const candidate = [...cur.slice(0, at), ...cur.slice(at + chunk)];
      if (candidate.length && fails(candidate)) {
        cur = candidate;
        removed = true;
      } else {
        at += chunk;
      }
    }
    if (!removed || chunk > 1) chunk = chunk === 1 ? 0 : chunk >> 1;
  }
  return cur;
}
