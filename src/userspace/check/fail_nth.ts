/**
 * Fail-nth sweeps, as iommufd's selftest runs them (tools/testing/selftests/iommu/
 * iommufd_fail_nth.c): a flow of syscalls is run with its n-th fallible allocation made to
 * fail (kernel.faultInject, kernel/core/fault_inject.ts), for n = 1, 2, ... until a run
 * completes without reaching the n-th. Each run must end cleanly: the first step that
 * fails returns -errno (no exception), the invariants hold after it, and once every
 * process exits the kernel is back to the objects it had before the flow (frames, files,
 * containers, VMs), with nothing left locked.
 *
 * A flow is built fresh for each n by `make`: it boots its kernel and does its setup
 * (binding drivers, mapping and touching user buffers, so that only the kernel's own
 * allocations count), and gives the steps to sweep. Any subsystem's flow fits: the steps
 * are plain functions returning a syscall's result.
 */
import type { Host } from "../../host/build.js";
import type { InjectedFault, Kernel, ObjectCounts } from "../../kernel/kernel.js";
import { errnoName } from "../../uapi/errno.js";
import { InvariantChecker, type Violation } from "./invariants.js";

export interface FailNthFlow {
  kernel: Kernel;
  /** The machine, when DMA isolation should be watched too. */
  machine?: Host["machine"];
  /**
   * What the kernel must come back to once every process exited: kernel.debug.objects()
   * after boot and driver binding, before any process held memory or files.
   */
  baseline: ObjectCounts;
  /** Run in order once the fault is armed; each returns a result, negative for -errno. */
  steps: { name: string; run: () => number | bigint }[];
}

export interface FailNthRun {
  n: number;
  /** The allocation that was made to fail, or null when the flow never reached the n-th. */
  injected: InjectedFault | null;
  /** The first step that failed and its errno (null: every step succeeded). */
  failedAt: string | null;
  errno: string | null;
  /** An exception thrown by a step (a model bug), as text. */
  exception: string | null;
  /** Invariant violations after the flow and after every process exited. */
  violations: Violation[];
}

/** Sweep n = 1, 2, ... until a run completes with no fault injected (or `max` runs). */
export function failNthSweep(make: () => FailNthFlow, max = 5000): FailNthRun[] {
  const runs: FailNthRun[] = [];
  for (let n = 1; n <= max; n++) {
    const r = failNthRun(make, n);
    runs.push(r);
    if (!r.injected && !r.exception) break;
  }
  return runs;
}

export function failNthRun(make: () => FailNthFlow, n: number): FailNthRun {
  const flow = make();
  const k = flow.kernel;
  const checker = new InvariantChecker(k, flow.machine ?? null, flow.baseline);
  const run: FailNthRun = {
    n,
    injected: null,
    failedAt: null,
    errno: null,
    exception: null,
    violations: [],
  };
  k.faultInject.failNth(n);
  try {
    for (const step of flow.steps) {
      const r = Number(step.run());
      if (r < 0) {
        run.failedAt = step.name;
        run.errno = errnoName(r);
        break;
      }
    }
  } catch (e) {
    run.exception = e instanceof Error ? (e.stack ?? e.message) : String(e);
  }
  k.faultInject.disarm();
  run.injected = k.faultInject.injected;
  try {
    run.violations.push(...checker.check());
    for (const t of k.debug.tasks()) k.exit(t.pid);
    run.violations.push(...checker.checkQuiescent());
  } catch (e) {
    run.exception ??= e instanceof Error ? (e.stack ?? e.message) : String(e);
  } finally {
    checker.detach();
  }
  return run;
}
