/**
 * `passthru run scenario.yaml`: run a scenario on the kernel model and print a readable
 * trace (each step, the calls it made and what they returned, and any expectation that
 * failed); `--json` for the same as data. Exit 1 when an expectation fails; a step that
 * cannot run at all (an unknown op or request) is an input error: exit 2.
 */
import { runScenario, type ScenarioReport, unrunnableSteps } from "../userspace/scenario/run.js";
import { loadScenario } from "../userspace/scenario/load.js";
import { bold, dim, EXIT_FINDINGS, EXIT_OK, green, printJson, red } from "./output.js";

export async function runCommand(file: string, opts: { json?: boolean }): Promise<number> {
  const { scenario, host, unrunnable } = await loadScenario(file);
  const report = runScenario(scenario, host);
  const bad = unrunnable(unrunnableSteps(report));
  if (bad) throw bad;
  if (opts.json) printJson(report);
  else printTrace(report);
  return report.failed ? EXIT_FINDINGS : EXIT_OK;
}

function printTrace(r: ScenarioReport): void {
  const out = [bold(r.name) + (r.description ? dim(` — ${r.description}`) : ""), ""];
  for (const s of r.steps) {
    const mark = s.failures.length ? red("✗") : green("✓");
    out.push(
      `${mark} ${String(s.index).padStart(3)} ${bold(s.op)}${s.note ? dim(`  # ${s.note}`) : ""}`,
    );
    for (const res of s.results) {
      const what = [res.op, res.req].filter(Boolean).join(" ");
      const ret = res.errno ? `${String(res.ret)} ${String(res.errno)}` : String(res.ret);
      const extra = [
        res.out ? `out ${JSON.stringify(res.out)}` : "",
        res.data !== undefined ? `data ${JSON.stringify(res.data)}` : "",
      ]
        .filter(Boolean)
        .join(" ");
      out.push(dim(`        ${what} → ${ret}${extra ? "  " + extra : ""}`));
    }
    for (const f of s.failures) out.push(red(`        ${f}`));
  }
  out.push("", `${r.passed} passed, ${r.failed} failed`);
  process.stdout.write(out.join("\n") + "\n");
}
