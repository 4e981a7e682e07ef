/**
 * The model side of a differential case and the comparison: replay the script on the
 * kernel model booted from the case's snapshot, compare with what the real kernel
 * answered line by line, and say it readably — the first differing operation with the
 * operations around it and which fields differ, then a summary per topic (request family)
 * that separates differences in what the model implements from known gaps (topics.ts).
 */
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Host } from "../host/build.js";
import { InputError } from "../host/errors.js";
import { loadHost } from "../host/load.js";
import { bootHost } from "../userspace/boot.js";
import { loadScript } from "../userspace/replay/replay.js";
import { Runner } from "../userspace/replay/runner.js";
import type { Op, Script } from "../userspace/replay/script.js";
import { OracleError } from "./cache.js";
import { topics, type Topic } from "./topics.js";

export interface ModelRun {
  lines: string[];
  /** The model threw at this operation (0-based); later operations did not run. */
  error?: { index: number; message: string };
}

/** Replay a script on the model, one operation at a time, so a model crash is located. */
export function modelReplay(host: Host, script: Script): ModelRun {
  const runner = new Runner(bootHost(host).spawn());
  const lines: string[] = [];
  for (const [i, op] of script.ops.entries()) {
    try {
      lines.push(JSON.stringify(runner.step(op, i + 1)));
    } catch (e) {
      return { lines, error: { index: i, message: (e as Error).message } };
    }
  }
  return { lines };
}

export interface TopicCount {
  topic: string;
  ops: number;
  differ: number;
  gap: string | null;
}

export interface DiffReport {
  name: string;
  script: Script;
  expected: string[];
  model: string[];
  modelError?: ModelRun["error"];
  /** 0-based indices of differing operations. */
  differing: number[];
  topics: Topic[];
  byTopic: TopicCount[];
}

export function compareRuns(
  name: string,
  script: Script,
  expected: string[],
  run: ModelRun,
  host?: Host,
): DiffReport {
  const tps = topics(script, host);
  const differing: number[] = [];
  const n = Math.max(expected.length, run.lines.length, script.ops.length);
  for (let i = 0; i < n; i++) if (expected[i] !== run.lines[i]) differing.push(i);
  const by = new Map<string, TopicCount>();
  tps.forEach((t, i) => {
    const c = by.get(t.topic) ?? { topic: t.topic, ops: 0, differ: 0, gap: null };
    c.ops++;
    if (expected[i] !== run.lines[i]) {
      c.differ++;
      if (t.gap) c.gap = t.gap;
    }
    by.set(t.topic, c);
  });
  return {
    name,
    script,
    expected,
    model: run.lines,
    ...(run.error ? { modelError: run.error } : {}),
    differing,
    topics: tps,
    byTopic: [...by.values()].sort((a, b) => a.topic.localeCompare(b.topic)),
  };
}

/** Differences outside known gaps. */
export function supportedDifferences(r: DiffReport): number[] {
  return r.differing.filter((i) => !r.topics[i]?.gap);
}

function readLines(path: string): string[] {
  const text = readFileSync(path, "utf8").trimEnd();
  return text === "" ? [] : text.split("\n");
}

/** Load a recorded case and compare it with the model. Unusable cases: OracleError(2). */
export async function diffCase(dir: string, expectedFile?: string): Promise<DiffReport> {
  const abs = resolve(dir);
  const snap = join(abs, "snapshot.tar.gz");
  const scriptFile = join(abs, "script.jsonl");
  const exp = expectedFile ? resolve(expectedFile) : join(abs, "expected.jsonl");
  for (const f of [snap, scriptFile, exp])
    if (!existsSync(f))
      throw new OracleError(
        `${f}: missing (record the case first: passthru oracle record ${dir})`,
        2,
      );
  let script: Script;
  let host: Host;
  try {
    script = loadScript(scriptFile);
    host = await loadHost(snap);
  } catch (e) {
    if (e instanceof InputError) throw new OracleError(e.message, 2);
    throw e;
  }
  const expected = readLines(exp);
  if (expected.length !== script.ops.length)
    throw new OracleError(
      `${exp}: ${expected.length} result lines for ${script.ops.length} operations`,
      2,
    );
  return compareRuns(
    abs.split("/").pop() as string,
    script,
    expected,
    modelReplay(host, script),
    host,
  );
}

/* ------------------------------------------------------------ rendering */

function parse(line: string | undefined): unknown {
  if (line === undefined) return undefined;
  try {
    return JSON.parse(line);
  } catch {
    return line;
  }
}

/** Paths of the fields that differ between two parsed result lines. */
export function fieldDifferences(a: unknown, b: unknown, path = ""): string[] {
  const isObj = (x: unknown): x is Record<string, unknown> =>
    !!x && typeof x === "object" && !Array.isArray(x);
  if (isObj(a) && isObj(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
    return keys.flatMap((k) => fieldDifferences(a[k], b[k], path ? `${path}.${k}` : k));
  }
  if (JSON.stringify(a) === JSON.stringify(b)) return [];
  const show = (x: unknown) => (x === undefined ? "(absent)" : JSON.stringify(x));
  return [`${path || "line"}: kernel ${show(a)}, model ${show(b)}`];
}

function opText(op: Op): string {
  const s = JSON.stringify(op, (k, v: unknown) => (k === "line" ? undefined : v));
  return s.length > 160 ? s.slice(0, 157) + "..." : s;
}

function clip(s: string | undefined, n = 200): string {
  if (s === undefined) return "(none)";
  return s.length > n ? s.slice(0, n - 3) + "..." : s;
}

export function renderReport(r: DiffReport, opts: { context?: number } = {}): string {
  const ctx = opts.context ?? 2;
  const out: string[] = [];
  const total = r.script.ops.length;
  if (r.differing.length === 0) {
    out.push(`${r.name}: identical (${total} operations)`);
  } else {
    const first = r.differing[0] as number;
    const op = r.script.ops[first];
    out.push(
      `${r.name}: ${r.differing.length} of ${total} result lines differ; the first is operation ${first + 1}` +
        (op ? ` (script.jsonl line ${op.line})` : ""),
    );
    out.push("");
    for (let i = Math.max(0, first - ctx); i < first; i++) {
      const o = r.script.ops[i] as Op;
      out.push(`  ${String(i + 1).padStart(4)}  ${opText(o)}`);
      out.push(`        = ${clip(r.expected[i])}`);
    }
    out.push(`> ${String(first + 1).padStart(4)}  ${op ? opText(op) : "(no operation)"}`);
    if (op?.note) out.push(`        note:   ${String(op.note)}`);
    out.push(`        kernel: ${clip(r.expected[first], 400)}`);
    out.push(`        model:  ${clip(r.model[first], 400)}`);
    if (r.modelError && r.modelError.index === first)
      out.push(`        the model threw: ${r.modelError.message}`);
    else if (r.model[first] !== undefined)
      for (const d of fieldDifferences(parse(r.expected[first]), parse(r.model[first])))
        out.push(`        ${d}`);
    const gap = r.topics[first]?.gap;
    if (gap) out.push(`        (a known gap: ${gap})`);
    for (let i = first + 1; i < Math.min(total, first + 1 + ctx); i++) {
      const o = r.script.ops[i] as Op;
      const same = r.expected[i] === r.model[i];
      out.push(`  ${String(i + 1).padStart(4)}  ${opText(o)}`);
      out.push(
        same ? `        = ${clip(r.expected[i])}` : `        ≠ kernel ${clip(r.expected[i])}`,
      );
    }
    if (r.modelError && r.modelError.index !== first)
      out.push(
        "",
        `the model threw at operation ${r.modelError.index + 1}: ${r.modelError.message}`,
      );
  }
  out.push("");
  const w = Math.max(5, ...r.byTopic.map((t) => t.topic.length));
  out.push(`  ${"topic".padEnd(w)}  ops  identical  differ`);
  for (const t of r.byTopic) {
    const line = `  ${t.topic.padEnd(w)} ${String(t.ops).padStart(4)} ${String(t.ops - t.differ).padStart(10)} ${String(t.differ).padStart(7)}`;
    out.push(t.differ && t.gap ? `${line}   not modelled: ${t.gap}` : line);
  }
  const sup = supportedDifferences(r);
  const gaps = r.differing.length - sup.length;
  out.push("");
  if (r.differing.length === 0) out.push("no differences");
  else if (sup.length === 0)
    out.push(`no differences in what the model implements (${gaps} in known gaps)`);
  else {
    const fams = [...new Set(sup.map((i) => r.topics[i]?.topic))].join(", ");
    out.push(
      `${sup.length} difference${sup.length === 1 ? "" : "s"} in what the model implements (${fams})` +
        (gaps ? `; ${gaps} more in known gaps` : ""),
    );
  }
  return out.join("\n") + "\n";
}
