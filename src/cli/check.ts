/**
 * `passthru check scenario.yaml`: run a scenario with the model's invariants checked after
 * every step (userspace/check/invariants.ts: DMA isolation, group ownership, KVM's
 * noncoherent registration, locked memory), then every process exits and the kernel must
 * be back to its boot-time objects. Exit 1 on any violation, 0 when none; the scenario's
 * own expectations are `passthru run`'s business and only counted here. A step that
 * cannot run at all (an unknown op or request) is an input error: exit 2.
 */
import { checkScenario, type CheckReport } from "../userspace/check/scenario.js";
import { loadScenario } from "../userspace/scenario/load.js";
import { bold, dim, EXIT_FINDINGS, EXIT_OK, green, printJson, red } from "./output.js";

export async function checkCommand(file: string, opts: { json?: boolean }): Promise<number> {
  const { scenario, host, unrunnable } = await loadScenario(file);
  const report = checkScenario(scenario, host);
  const bad = unrunnable(report.unrunnable);
  if (bad) throw bad;
  if (opts.json) printJson(report);
  else printReport(report);
  return report.violations ? EXIT_FINDINGS : EXIT_OK;
}

function printReport(r: CheckReport): void {
  const out = [bold(r.name), ""];
  for (const s of r.steps) {
    const mark = s.violations.length ? red("✗") : green("✓");
    out.push(`${mark} ${String(s.index).padStart(3)} ${s.op}${dim(` (${s.process})`)}`);
    for (const v of s.violations) out.push(red(`        ${v.invariant}: ${v.detail}`));
  }
  const mark = r.teardown.length ? red("✗") : green("✓");
  out.push(`${mark} every process exits: locked memory and kernel objects back to boot`);
  for (const v of r.teardown) out.push(red(`        ${v.invariant}: ${v.detail}`));
  out.push(
    "",
    `${r.steps.length} steps checked, ${r.dmaTransactions} DMA transactions, ` +
      `${r.violations} violation${r.violations === 1 ? "" : "s"}` +
      (r.expectationFailures
        ? dim(` (${r.expectationFailures} expectation failures: see passthru run)`)
        : ""),
  );
  process.stdout.write(out.join("\n") + "\n");
}
