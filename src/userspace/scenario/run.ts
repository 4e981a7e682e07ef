/**
 * Runs a scenario: boots the kernel model on the scenario's host, starts its processes,
 * turns each step into syscall-script operations (macros expand to several), runs them
 * with the replay runner, and checks each step's expectations against the result the
 * runner printed — the same lines a real kernel gives, so a scenario reads like a trace.
 */
import type { Host } from "../../host/build.js";
import type { Kernel, TaskOptions } from "../../kernel/kernel.js";
import { CONSTANTS, STRUCTS } from "../../uapi/names.js";
import { toPowerpc } from "../../uapi/ioctl.js";
import { POWERPC_REQUESTS, PROPOSED_REQUESTS, REQUESTS } from "../../uapi/requests.js";
import { bootHost } from "../boot.js";
import { Runner } from "../replay/runner.js";
import { opLimits, type Json, type Op } from "../replay/script.js";
import { GuestOpError, NamedFds, runGuest, vmInfo } from "./guest.js";
import type { Scenario, Step, Value } from "./schema.js";
import { PowerOpError, runPowerOp } from "./power.js";
import type { SpaprVmm } from "../vmm/spapr.js";
import { vmmCalls, VmmOpError } from "./vmm.js";

export interface StepResult {
  index: number;
  op: string;
  process: string;
  note?: string;
  /** Result records of the operations the step ran (one unless it is a macro). */
  results: Record<string, Json>[];
  failures: string[];
}

export interface ScenarioReport {
  name: string;
  description?: string;
  steps: StepResult[];
  passed: number;
  failed: number;
}

/** Thrown for a step that cannot be turned into operations: reported as that step's failure. */
class StepError extends Error {}

/** The kernel a scenario runs on, booted on `host` as the scenario's `kernel:` says. */
export function bootScenario(sc: Scenario, host: Host): Kernel {
  return bootHost(
    host,
    sc.kernel.cmdline,
    sc.kernel.profile,
    sc.kernel.tce_era,
    undefined,
    sc.kernel.build,
  );
}

/**
 * `observe`, if given, is called after each step with the kernel as the step left it (the
 * web explorer records processes, VFIO objects and VMs from kernel.debug to step through).
 */
export function runScenario(
  sc: Scenario,
  host: Host,
  observe?: (step: StepResult, kernel: Kernel) => void,
): ScenarioReport {
  const kernel = bootScenario(sc, host);
  const runners = new Map<string, Runner>();
  const fdNames = new Map<string, NamedFds>();
  for (const p of sc.processes) {
    const opts: TaskOptions = { uid: p.uid, ...(p.caps ? { caps: p.caps } : {}) };
    if (p.memlock !== undefined) opts.memlock = BigInt(p.memlock);
    const named = new NamedFds(kernel.spawn(opts));
    fdNames.set(p.name, named);
    runners.set(p.name, new Runner(named.syscalls));
  }
  const first = sc.processes[0]?.name as string;
  let seq = 0;
  const vmms = new Map<NamedFds, SpaprVmm>();
  // A POWER kernel's processes encode ioctl numbers in powerpc's layout.
  powerpcLayout = kernel.powerpc !== null;
  const steps: StepResult[] = sc.steps.map((step, i) => {
    const res = runStep(step, i);
    observe?.(res, kernel);
    return res;
  });
  function runStep(step: Step, i: number): StepResult {
    const proc = step.process ?? first;
    const runner = runners.get(proc);
    const res: StepResult = { index: i + 1, op: step.op, process: proc, results: [], failures: [] };
    if (step.note) res.note = step.note;
    if (!runner) {
      res.failures.push(`no process named "${proc}"`);
      return res;
    }
    const names = fdNames.get(proc) as NamedFds;
    try {
      if (step.op === "spapr_vmm" || step.op === "hcall") {
        // power.ts: a POWER guest's TCE hypercalls and the VMM serving their exits.
        const r = runPowerOp(step.op, step as unknown as Record<string, Value>, {
          kernel,
          runner,
          names,
          vmms,
        });
        res.results.push({ i: ++seq, ...r });
      } else if (step.op === "guest" || step.op === "vm_info") {
        // guest.ts: run a guest program on a vCPU / show KVM's state for a VM.
        const env = { kernel, runner, names, seq: () => ++seq };
        const s = step as unknown as Record<string, Value>;
        if (step.op === "guest") res.results.push(...runGuest(s, env));
        else res.results.push(vmInfo(s, env));
      } else if (step.op === "vmm") {
        // vmm.ts: the calls a VMM makes to give devices to a VM, by the kernel's design.
        const readlink = (path: string) => {
          const r = runner.step({ op: "readlink", line: 0, path }, 0);
          return r.errno === null ? String(r.data) : null;
        };
        for (const c of vmmCalls(step as unknown as Record<string, Value>, kernel, readlink)) {
          const from = res.results.length;
          runStepOps(c.step, runner, names, res);
          const last = res.results[res.results.length - 1];
          if (!last || res.results.length === from) continue;
          last.call = c.call;
          if (last.errno !== null && !c.mayFail)
            res.failures.push(`${c.call}: unexpected failure: ${String(last.errno)}`);
        }
      } else {
        runStepOps(step, runner, names, res);
      }
    } catch (e) {
      if (
        !(e instanceof StepError) &&
        !(e instanceof GuestOpError) &&
        !(e instanceof PowerOpError) &&
        !(e instanceof VmmOpError)
      )
        throw e;
      res.failures.push(e.message);
      return res;
    }
    const last = res.results[res.results.length - 1];
    if (step.expect && last) res.failures.push(...check(step.expect, last));
    else if (!step.expect && last && last.errno !== null && !MAY_FAIL.has(step.op)) {
      res.failures.push(`unexpected failure: ${String(last.errno)}`);
    }
    return res;
  }
  /**
   * A plain step: its operations (macros expanded), each run and its `as` name noted.
   * Operations beyond the script limits (replay/script.ts opLimits) are refused first.
   */
  function runStepOps(step: Step, runner: Runner, names: NamedFds, res: StepResult): void {
    const ops = expand(step, runner, (o) => res.results.push(runner.step(o, ++seq)));
    for (const op of ops) {
      const over = opLimits(op);
      if (over) throw new StepError(`${over.field}: ${over.detail}`);
    }
    for (const op of ops) {
      res.results.push(runner.step(op, ++seq));
      names.note(op.as);
    }
  }
  const failed = steps.filter((s) => s.failures.length).length;
  return {
    name: sc.name,
    ...(sc.description ? { description: sc.description } : {}),
    steps,
    passed: steps.length - failed,
    failed,
  };
}

/**
 * Steps that could not be turned into syscalls at all (an unknown op, request, struct or
 * process, or an operation beyond the script limits): failed without running anything.
 */
export function unrunnableSteps(r: ScenarioReport): { index: number; message: string }[] {
  return r.steps
    .filter((s) => s.failures.length && !s.results.length)
    .map((s) => ({ index: s.index, message: s.failures.join("; ") }));
}

/** Ops whose failure is an answer, not an error, when no expectation is given. */
const MAY_FAIL = new Set(["readlink", "check", "vmm"]);

function check(want: NonNullable<Step["expect"]>, got: Record<string, Json>): string[] {
  const f: string[] = [];
  if (want.ret !== undefined && got.ret !== want.ret)
    f.push(`ret ${JSON.stringify(got.ret)}, expected ${JSON.stringify(want.ret)}`);
  if (want.errno !== undefined && got.errno !== want.errno)
    f.push(`errno ${String(got.errno)}, expected ${String(want.errno)}`);
  if (want.data !== undefined && got.data !== want.data)
    f.push(`data ${JSON.stringify(got.data)}, expected ${JSON.stringify(want.data)}`);
  for (const [k, v] of Object.entries(want.out ?? {})) {
    const o = (got.out as Record<string, Json> | undefined)?.[k];
    if (JSON.stringify(o) !== JSON.stringify(v))
      f.push(`out.${k} ${JSON.stringify(o)}, expected ${JSON.stringify(v)}`);
  }
  return f;
}

/** A scenario value as a script value: constant names become numbers. */
function scriptValue(v: Value): Json {
  if (typeof v === "string" && CONSTANTS.has(v)) return CONSTANTS.get(v) as number;
  if (typeof v === "boolean") return v ? 1 : 0;
  return v as Json;
}

/** `{ vfio_iommu_type1_dma_map: { flags: 3, ... } }` → the script's field list; argsz defaults to the size. */
function structArg(v: Value): Json {
  if (v === null || typeof v !== "object" || Array.isArray(v)) return scriptValue(v);
  if ("struct" in v) return v as Json;
  const [name, fields] = Object.entries(v)[0] ?? [];
  const codec = name ? STRUCTS.get(name) : undefined;
  if (!codec)
    throw new StepError(
      `unknown struct "${String(name)}" (known: ${[...STRUCTS.keys()].join(", ")})`,
    );
  const given = (fields ?? {}) as Record<string, Value>;
  for (const k of Object.keys(given)) {
    if (!codec.fields.some(([n]) => n === k)) throw new StepError(`${name} has no field "${k}"`);
  }
  return {
    struct: codec.fields.map(([n, t]) => {
      const val = given[n] ?? (n === "argsz" ? codec.size : 0);
      return [
        t,
        n,
        typeof val === "object" && val !== null ? structArg(val) : scriptValue(val),
      ] as Json;
    }),
  };
}

/** Set per run: the scenario's host is POWER (request numbers in powerpc's _IOC layout). */
let powerpcLayout = false;

function ioctlOp(step: Record<string, Value>, line: number): Op {
  const req = String(step.req);
  const generic =
    REQUESTS.get(req) ??
    PROPOSED_REQUESTS.get(req) ??
    (powerpcLayout ? POWERPC_REQUESTS.get(req) : undefined);
  if (generic === undefined) throw new StepError(`unknown request ${req}`);
  const nr = powerpcLayout ? toPowerpc(generic) : generic;
  const op: Op = {
    op: "ioctl",
    line,
    fd: fdRef(step.fd),
    req,
    nr: `0x${nr.toString(16)}`,
    arg: structArg(step.arg ?? 0),
  };
  if (step.as !== undefined) op.as = String(step.as);
  if (step.bind !== undefined) op.bind = step.bind as Json;
  return op;
}

function fdRef(v: Value | undefined): Json {
  if (typeof v === "string" && !v.startsWith("$") && !/^-?\d/.test(v)) return `$${v}`;
  return (v ?? -1) as Json;
}

const encoder = new TextEncoder();

/** The device's VFIO cdev (vfioN): the class device under the device's vfio-dev directory. */
function cdevName(bdf: string, readlink: (path: string) => string): string {
  for (let n = 0; n < 256; n++) {
    try {
      readlink(`/sys/bus/pci/devices/${bdf}/vfio-dev/vfio${n}/subsystem`);
      return `vfio${n}`;
    } catch {
      continue;
    }
  }
  throw new StepError(`${bdf} has no VFIO device cdev (bound to vfio-pci, on an iommufd build?)`);
}

/** One step → the operations it stands for. `now` runs an operation immediately (macros that read state). */
function expand(step: Step, runner: Runner, now: (o: Op) => void): Op[] {
  const s = step as unknown as Record<string, Value>;
  const line = 0;
  const readlink = (path: string): string => {
    const r = runner.step({ op: "readlink", line, path }, 0);
    if (r.errno !== null) throw new StepError(`readlink ${path}: ${String(r.errno)}`);
    return String(r.data);
  };
  const template = (p: string) =>
    p
      .replace(/\{group:([0-9a-f:.]+)\}/gi, (_m, bdf: string) =>
        readlink(`/sys/bus/pci/devices/${bdf}/iommu_group`),
      )
      .replace(/\{cdev:([0-9a-f:.]+)\}/gi, (_m, bdf: string) => cdevName(bdf, readlink));
  switch (step.op) {
    case "bind_vfio": {
      const dev = String(s.device);
      const base = `/sys/bus/pci/devices/${dev}`;
      now({ op: "sysfs_write", line, path: `${base}/driver_override`, value: "vfio-pci" });
      const cur = runner.step({ op: "readlink", line, path: `${base}/driver` }, 0);
      if (cur.errno === null && cur.data !== "vfio-pci")
        now({ op: "sysfs_write", line, path: `${base}/driver/unbind`, value: dev });
      return [
        { op: "sysfs_write", line, path: "/sys/bus/pci/drivers_probe", value: dev },
        { op: "readlink", line, path: `${base}/driver` },
      ];
    }
    case "open_group":
      return [
        {
          op: "open",
          line,
          path: template(`/dev/vfio/{group:${String(s.device)}}`),
          flags: ["O_RDWR", "O_CLOEXEC"],
          as: String(s.as),
        },
      ];
    case "device_fd": {
      const name = encoder.encode(String(s.device) + "\0");
      return [
        ioctlOp(
          {
            fd: s.group ?? null,
            req: "VFIO_GROUP_GET_DEVICE_FD",
            as: s.as ?? null,
            arg: { struct: [[`bytes:${name.length}`, "name", Buffer.from(name).toString("hex")]] },
          } as Record<string, Value>,
          line,
        ),
      ];
    }
    case "map_dma":
      return [
        ioctlOp(
          {
            fd: s.container ?? null,
            req: "VFIO_IOMMU_MAP_DMA",
            arg: {
              vfio_iommu_type1_dma_map: {
                flags: s.flags ?? 3,
                vaddr:
                  typeof s.buf === "string"
                    ? s.buf.startsWith("$")
                      ? s.buf
                      : `$${s.buf}`
                    : (s.vaddr ?? 0),
                iova: s.iova ?? 0,
                size: s.size ?? 0,
              },
            },
          },
          line,
        ),
      ];
    case "unmap_dma":
      return [
        ioctlOp(
          {
            fd: s.container ?? null,
            req: "VFIO_IOMMU_UNMAP_DMA",
            arg: {
              vfio_iommu_type1_dma_unmap: {
                flags: s.flags ?? 0,
                iova: s.iova ?? 0,
                size: s.size ?? 0,
              },
            },
          },
          line,
        ),
      ];
    case "ioctl":
      return [ioctlOp(s, line)];
    case "open":
      return [
        {
          op: "open",
          line,
          path: template(String(s.path)),
          flags: (s.flags as Json) ?? ["O_RDWR", "O_CLOEXEC"],
          as: String(s.as),
        },
      ];
    case "close":
    case "dup":
    case "pread":
    case "pwrite":
      return [{ ...(s as Record<string, Json>), op: step.op, line, fd: fdRef(s.fd) }];
    case "mmap":
    case "munmap":
    case "fill":
    case "check":
    case "eventfd":
    case "sysfs_read":
    case "readlink":
    case "sysfs_write": {
      const o: Op = { ...(s as Record<string, Json>), op: step.op, line };
      delete o.expect;
      delete o.process;
      if (typeof o.buf === "string" && !o.buf.startsWith("$")) o.buf = `$${o.buf}`;
      if (typeof o.path === "string") o.path = template(o.path);
      return [o];
    }
    default:
      throw new StepError(`unknown op "${step.op}"`);
  }
}
