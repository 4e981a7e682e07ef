/**
 * A scenario run with every invariant (invariants.ts) checked after each step, then every
 * process made to exit and the kernel checked for leftovers against a kernel booted the
 * same way and left alone (the boot baseline). DMA is checked as it happens, on the
 * scenario's own machine.
 */
import { buildHost, type Host } from "../../host/build.js";
import type { Kernel } from "../../kernel/kernel.js";
import {
  bootScenario,
  runScenario,
  type ScenarioReport,
  unrunnableSteps,
} from "../scenario/run.js";
import type { Scenario } from "../scenario/schema.js";
import { InvariantChecker, type DmaTransaction, type Violation } from "./invariants.js";

export interface CheckedStep {
  index: number;
  op: string;
  process: string;
  violations: Violation[];
}

export interface CheckReport {
  name: string;
  steps: CheckedStep[];
  /** After every process exited: locked memory and objects against the boot baseline. */
  teardown: Violation[];
  violations: number;
  dmaTransactions: number;
  /** Expectation failures of the scenario itself (what `passthru run` reports). */
  expectationFailures: number;
  /**
   * Steps that could not be turned into syscalls at all (an unknown op, request, struct
   * or process): the scenario is not what it means to be, so nothing it checked counts.
   */
  unrunnable: { index: number; message: string }[];
}

export function checkScenario(sc: Scenario, host: Host): CheckReport {
  // The boot baseline: the same host and kernel options, booted on a machine of its own.
  const baseline = bootScenario(sc, buildHost(host.spec, host.source)).debug.objects();
  let checker: InvariantChecker | null = null;
  let kernel: Kernel | null = null;
  const early: DmaTransaction[] = [];
  const listener = (t: DmaTransaction) => (checker ? checker.dma(t) : early.push(t));
  host.machine.dma.listeners.push(listener);
  const steps: CheckedStep[] = [];
  let report: ScenarioReport;
  try {
    report = runScenario(sc, host, (res, k) => {
      if (!checker) {
        kernel = k;
        checker = new InvariantChecker(k, null, baseline);
        for (const t of early.splice(0)) checker.dma(t);
      }
      steps.push({
        index: res.index,
        op: res.op,
        process: res.process,
        violations: checker.check(),
      });
    });
  } finally {
    host.machine.dma.listeners.splice(host.machine.dma.listeners.indexOf(listener), 1);
  }
  let teardown: Violation[] = [];
  const k = kernel as Kernel | null;
  const c = checker as InvariantChecker | null;
  if (k && c) {
    for (const t of k.debug.tasks()) k.exit(t.pid);
    teardown = c.checkQuiescent();
  }
  return {
    name: sc.name,
    steps,
    teardown,
    violations: steps.reduce((n, s) => n + s.violations.length, 0) + teardown.length,
    dmaTransactions: c?.dmaTransactions ?? 0,
    expectationFailures: report.failed,
    unrunnable: unrunnableSteps(report),
  };
}
