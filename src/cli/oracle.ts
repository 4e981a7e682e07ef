/**
 * `passthru oracle ...`: differential testing against a real kernel (docs/oracle.md).
 *
 *   oracle run CASE_DIR           boot a real kernel, run the script, print the result lines
 *   oracle record CASE_DIR [OUT]  the same, stored as snapshot.tar.gz + expected.jsonl
 *   oracle record-all DIR...      every case below DIRs, -j N at a time (--verify: compare)
 *   oracle diff CASE_DIR          replay on the model, show the first difference and a
 *                                 per-topic summary (exit 0 identical, 1 differ, 2 unusable)
 *   oracle check CASE_DIR...      check case.json and script.jsonl, boot nothing
 *   oracle generate OUT_DIR       write the generated corpus (src/oracle/generate)
 *
 * Kernels: the case's ("debian" or "iommufd"), or --kernel debian|iommufd|PATH (a bzImage).
 * Backends for run and diff: qemu (default for run), host (this machine's own kernel;
 * scripts without sysfs writes), recorded (diff only, the default: expected.jsonl).
 */
import type { Command } from "commander";
import { existsSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { OracleError, quietLog, stderrLog, type Log } from "../oracle/cache.js";
import {
  compareRuns,
  diffCase,
  modelReplay,
  renderReport,
  supportedDifferences,
  type DiffReport,
} from "../oracle/diff.js";
import { generateCorpus, FAMILIES } from "../oracle/generate/index.js";
import {
  prepareCase,
  recordAll,
  runCase,
  runOnHost,
  storeRun,
  type RunOptions,
  type RunResult,
} from "../oracle/record.js";
import { loadHost } from "../host/load.js";
import { cacheDir } from "../oracle/cache.js";
import {
  EXIT_FINDINGS,
  EXIT_OK,
  EXIT_USAGE,
  UsageError,
  bold,
  green,
  printJson,
  red,
  yellow,
} from "./output.js";

interface Common {
  kernel?: string;
  backend?: string;
  runner?: string;
  timeout?: string;
  quiet?: boolean;
  allowHostWrites?: boolean;
}

function runOpts(o: Common): RunOptions & { log: Log } {
  if (o.runner && o.runner !== "agent" && o.runner !== "kvm-script")
    throw new UsageError(`--runner ${o.runner}: expected agent or kvm-script`);
  return {
    ...(o.runner ? { runner: o.runner as "agent" | "kvm-script" } : {}),
    ...(o.kernel ? { kernel: o.kernel } : {}),
    ...(o.timeout ? { timeoutMs: Number(o.timeout) * 1000 } : {}),
    log: o.quiet ? quietLog : stderrLog,
    ...(o.allowHostWrites ? { allowHostWrites: true } : {}),
  };
}

/** OracleError → its exit code and one line on stderr. */
async function guard(fn: () => Promise<number>): Promise<number> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof OracleError) {
      process.stderr.write(`passthru oracle: ${e.message}\n`);
      return e.code === 2 ? EXIT_USAGE : EXIT_FINDINGS;
    }
    throw e;
  }
}

async function execute(dir: string, o: Common): Promise<RunResult> {
  const backend = o.backend ?? "qemu";
  if (backend === "host") return runOnHost(dir, runOpts(o));
  if (backend !== "qemu") throw new UsageError(`--backend ${backend}: expected qemu or host`);
  return runCase(dir, runOpts(o));
}

/** Case directories: DIRs that are cases, and every case below the others. */
export function findCases(roots: string[]): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    if (existsSync(join(d, "case.json"))) {
      out.push(d);
      return;
    }
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      if (!n.startsWith(".") && statSync(p).isDirectory()) walk(p);
    }
  };
  for (const r of roots) {
    if (!existsSync(r) || !statSync(r).isDirectory()) throw new UsageError(`${r}: not a directory`);
    walk(resolve(r));
  }
  return out;
}

export function registerOracle(program: Command, done: (code: number) => void): void {
  const oracle = program
    .command("oracle")
    .description(
      "differential testing against a real kernel: run scripts in QEMU, record, diff with the model",
    );

  const kernelOpt = [
    "--kernel <kernel>",
    "debian, iommufd, or the path of a bzImage (default: the case's)",
  ] as const;
  const timeoutOpt = [
    "--timeout <seconds>",
    "abandon a boot after this long (default 240)",
  ] as const;

  oracle
    .command("run")
    .description(
      "boot a real kernel with the case's topology, run its script, print the result lines",
    )
    .argument("<case>", "case directory (case.json, script.jsonl)")
    .option(...kernelOpt)
    .option("--backend <backend>", "qemu (default) or host (this machine's kernel)")
    .option("--allow-host-writes", "host backend: let the script write sysfs here")
    .option(
      "--runner <runner>",
      "host backend: agent (default, native/agent) or kvm-script (native/kvm-script)",
    )
    .option(...timeoutOpt)
    .option("-q, --quiet", "no progress lines")
    .action(async (dir: string, o: Common) => {
      done(
        await guard(async () => {
          const r = await execute(dir, o);
          process.stdout.write(r.lines.join("\n") + "\n");
          if (!o.quiet)
            process.stderr.write(
              `${r.name}: ${r.lines.length} operations on ${r.kernel} in ${r.seconds.toFixed(1)} s\n`,
            );
          return EXIT_OK;
        }),
      );
    });

  oracle
    .command("record")
    .description("run a case on a real kernel and store snapshot.tar.gz and expected.jsonl")
    .argument("<case>", "case directory")
    .argument("[out]", "where to store (default: the case directory)")
    .option(...kernelOpt)
    .option("--backend <backend>", "qemu (default) or host")
    .option("--allow-host-writes", "host backend: let the script write sysfs here")
    .option(
      "--runner <runner>",
      "host backend: agent (default, native/agent) or kvm-script (native/kvm-script)",
    )
    .option(...timeoutOpt)
    .option("-q, --quiet", "no progress lines")
    .action(async (dir: string, out: string | undefined, o: Common) => {
      done(
        await guard(async () => {
          const r = await execute(dir, o);
          await storeRun(r, out ?? dir, undefined, dir);
          process.stdout.write(
            `${r.name}: recorded ${r.lines.length} operations on ${r.kernel} in ${r.seconds.toFixed(1)} s\n`,
          );
          return EXIT_OK;
        }),
      );
    });

  oracle
    .command("record-all")
    .description(
      "record every case below the directories (or, with --verify, check they reproduce)",
    )
    .argument("<dir...>", "case directories or directories holding cases")
    .option("-j, --jobs <n>", "guests booted at a time", "2")
    .option("--verify", "record into scratch and compare with the expected.jsonl there")
    .option("--missing", "only the cases without an expected.jsonl yet")
    .option("--match <regex>", "only the cases whose directory name matches")
    .option(...kernelOpt)
    .option(...timeoutOpt)
    .action(
      async (
        dirs: string[],
        o: Common & { jobs: string; verify?: boolean; missing?: boolean; match?: string },
      ) => {
        done(
          await guard(async () => {
            const re = o.match ? new RegExp(o.match) : null;
            const cases = findCases(dirs)
              .filter((d) => !o.missing || !existsSync(join(d, "expected.jsonl")))
              .filter((d) => !re || re.test(d.split("/").pop() as string));
            if (!cases.length) {
              if (o.missing) return EXIT_OK;
              throw new UsageError(`no case.json below ${dirs.join(" ")}`);
            }
            const t0 = Date.now();
            const res = await recordAll(cases, {
              ...runOpts(o),
              jobs: Number(o.jobs) || 1,
              verify: !!o.verify,
            });
            const ok = res.filter((r) => r.status === "recorded" || r.status === "reproduced");
            process.stdout.write(
              `${ok.length}/${res.length} cases ${o.verify ? "reproduced" : "recorded"} in ${Math.round((Date.now() - t0) / 1000)} s (-j ${o.jobs})\n`,
            );
            for (const r of res.filter((x) => !ok.includes(x)))
              process.stdout.write(`  ${r.status}: ${r.name}${r.detail ? ` (${r.detail})` : ""}\n`);
            return ok.length === res.length ? EXIT_OK : EXIT_FINDINGS;
          }),
        );
      },
    );

  oracle
    .command("diff")
    .description("replay a case on the model and compare with what the real kernel answered")
    .argument("<case...>", "case directories (or directories of cases)")
    .option("--expected <file>", "the kernel's result lines (default: the case's expected.jsonl)")
    .option(
      "--backend <backend>",
      "recorded (default), qemu (run it now) or host (this machine's kernel)",
    )
    .option(...kernelOpt)
    .option("--allow-host-writes", "host backend: let the script write sysfs here")
    .option(
      "--runner <runner>",
      "host backend: agent (default, native/agent) or kvm-script (native/kvm-script)",
    )
    .option("--context <n>", "operations shown around the first difference", "2")
    .option("--json", "machine-readable output")
    .option("-q, --quiet", "one line per case")
    .action(
      async (
        dirs: string[],
        o: Common & { expected?: string; context: string; json?: boolean },
      ) => {
        done(
          await guard(async () => {
            const cases =
              dirs.length === 1 && existsSync(join(dirs[0] as string, "case.json"))
                ? dirs
                : findCases(dirs);
            if (!cases.length) throw new UsageError(`no case.json below ${dirs.join(" ")}`);
            if (o.expected && cases.length !== 1)
              throw new UsageError("--expected goes with one case");
            let worst = EXIT_OK;
            const reports: DiffReport[] = [];
            let unrecorded = 0;
            for (const dir of cases) {
              if (cases.length > 1 && !o.backend && !existsSync(join(dir, "expected.jsonl"))) {
                unrecorded++;
                continue;
              }
              let r: DiffReport;
              try {
                r = await diffOne(dir, o);
              } catch (e) {
                if (cases.length === 1 || !(e instanceof OracleError)) throw e;
                process.stderr.write(`passthru oracle: ${e.message}\n`);
                worst = EXIT_USAGE;
                continue;
              }
              reports.push(r);
              if (r.differing.length && worst === EXIT_OK) worst = EXIT_FINDINGS;
              if (o.json) continue;
              if (o.quiet || cases.length > 1) process.stdout.write(summaryLine(r) + "\n");
              else process.stdout.write(renderReport(r, { context: Number(o.context) }));
            }
            if (o.json) printJson(reports.map(jsonReport));
            else if (cases.length > 1) {
              const same = reports.filter((r) => !r.differing.length).length;
              const sup = reports.filter((r) => supportedDifferences(r).length).length;
              process.stdout.write(
                `\n${same}/${reports.length} identical; ${sup} with differences in what the model implements` +
                  (unrecorded ? `; ${unrecorded} not recorded yet` : "") +
                  "\n",
              );
            }
            return worst;
          }),
        );
      },
    );

  oracle
    .command("check")
    .description("check cases (case.json, script.jsonl) without booting anything")
    .argument("<case...>", "case directories (or directories of cases)")
    .action(async (dirs: string[]) => {
      done(
        await guard(async () => {
          let bad = 0;
          for (const dir of findCases(dirs)) {
            try {
              const { c, program } = prepareCase(dir);
              process.stdout.write(
                `${c.name}: ok (${c.spec.kernel} kernel, ${program.plans.length} operations)\n`,
              );
            } catch (e) {
              bad++;
              process.stderr.write(`passthru oracle: ${(e as Error).message}\n`);
            }
          }
          return bad ? EXIT_USAGE : EXIT_OK;
        }),
      );
    });

  oracle
    .command("generate")
    .description("write the generated corpus: case.json + script.jsonl per case (record them next)")
    .argument("<out>", "directory to write the cases into")
    .option(
      "--family <names>",
      `only these families, comma-separated (${FAMILIES.map((f) => f.name).join(", ")})`,
    )
    .option("--list", "count the cases, write nothing")
    .action(async (out: string, opts: { family?: string; list?: boolean }) => {
      done(
        await guard(async () => {
          const o = { ...opts, family: opts.family?.split(",").filter(Boolean) };
          const bad = (o.family ?? []).filter((f) => !FAMILIES.some((x) => x.name === f));
          if (bad.length) throw new UsageError(`--family: no family ${bad.join(", ")}`);
          const res = generateCorpus(out, { families: o.family, write: !o.list });
          for (const f of FAMILIES.filter((x) => !o.family || o.family.includes(x.name))) {
            const mine = res.filter((c) => c.family === f.name);
            const changed = mine.filter((c) => c.status !== "same").length;
            process.stdout.write(
              `${f.name.padEnd(12)} ${String(mine.length).padStart(4)} cases` +
                (o.list ? "" : `, ${changed} new or changed`) +
                `  (${f.what})\n`,
            );
          }
          const ops = res.reduce((n, c) => n + c.ops, 0);
          process.stdout.write(
            `${res.length} cases, ${ops} operations${o.list ? "" : ` in ${out}`}\n`,
          );
          return EXIT_OK;
        }),
      );
    });
}

async function diffOne(dir: string, o: Common & { expected?: string }): Promise<DiffReport> {
  const backend = o.backend ?? "recorded";
  if (backend === "recorded") return diffCase(dir, o.expected);
  if (o.expected) throw new UsageError("--expected goes with the recorded backend");
  const r = await execute(dir, { ...o, backend, quiet: o.quiet ?? false });
  const { c } = prepareCase(dir);
  const snap = join(cacheDir("runs", `${backend}-${c.name}`), "snapshot.tar.gz");
  writeFileSync(snap, r.snapshot);
  const host = await loadHost(snap);
  return compareRuns(c.name, c.script, r.lines, modelReplay(host, c.script), host);
}

function summaryLine(r: DiffReport): string {
  const sup = supportedDifferences(r).length;
  const gaps = r.differing.length - sup;
  if (!r.differing.length)
    return `${green("identical")}  ${r.name} (${r.script.ops.length} operations)`;
  const first = r.differing[0] as number;
  const what = sup ? red(`${sup} differ`) : yellow(`${gaps} in known gaps`);
  return `${what}  ${bold(r.name)}: first at operation ${first + 1} (${r.topics[first]?.topic ?? "?"})${sup && gaps ? `, ${gaps} more in known gaps` : ""}`;
}

function jsonReport(r: DiffReport): unknown {
  return {
    name: r.name,
    operations: r.script.ops.length,
    differing: r.differing.map((i) => ({
      operation: i + 1,
      line: r.script.ops[i]?.line,
      topic: r.topics[i]?.topic,
      gap: r.topics[i]?.gap ?? null,
      kernel: r.expected[i] ?? null,
      model: r.model[i] ?? null,
    })),
    topics: r.byTopic,
    ...(r.modelError
      ? { modelError: { operation: r.modelError.index + 1, message: r.modelError.message } }
      : {}),
  };
}
