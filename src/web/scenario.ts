/**
 * Scenarios in the explorer: parse a scenario's YAML, find its host among the bundled files
 * (a built-in host name, or a host file relative to the scenario, as
 * src/userspace/scenario/load.ts resolves it on disk), run it on the kernel model and keep,
 * after every step, what kernel.debug shows: each process's open files, VFIO containers and
 * groups, KVM VMs — so the page can step back and forth without running anything again.
 */
import { InputError } from "../host/errors.js";
import { parseYaml } from "../host/yaml.js";
import type { FdInfo, Kernel, KvmVmInfo, VfioInfo } from "../kernel/kernel.js";
import { scenarioSchema, type Scenario } from "../userspace/scenario/schema.js";
import { runScenario, type ScenarioReport, type StepResult } from "../userspace/scenario/run.js";
import { loadBuiltin, loadText } from "./input.js";

export interface Assets {
  hosts: Record<string, string>;
  files: Record<string, string>;
  scenarios: string[];
}

export interface StepState {
  processes: { name: string; pid: number; uid: number; fds: FdInfo[] }[];
  vfio: VfioInfo;
  vms: KvmVmInfo[];
}

export interface ScenarioRun {
  file: string;
  scenario: Scenario;
  hostName: string;
  report: ScenarioReport;
  /** The state after each step, by step index (0-based). */
  states: StepState[];
  /** The state before the first step. */
  initial: StepState;
}

/** "examples/scenarios/../hosts/x.yaml" → "examples/hosts/x.yaml". */
export function normalize(path: string): string {
  const out: string[] = [];
  for (const p of path.split("/")) {
    if (p === "" || p === ".") continue;
    if (p === "..") out.pop();
    else out.push(p);
  }
  return out.join("/");
}

export function runScenarioText(text: string, file: string, assets: Assets): ScenarioRun {
  const { spec: scenario, locate } = parseYaml(
    scenarioSchema,
    text,
    file,
    "expected a scenario: name, host and steps",
  );
  const dir = file.includes("/") ? file.slice(0, file.lastIndexOf("/")) : "";
  const rel = normalize(`${dir}/${scenario.host}`);
  const hostText = assets.files[rel];
  const builtin = assets.hosts[scenario.host];
  if (hostText === undefined && builtin === undefined) {
    throw new InputError(
      file,
      `host "${scenario.host}" is neither a built-in host (${Object.keys(assets.hosts).join(", ")}) nor a bundled host file`,
      locate("host"),
      "host",
    );
  }
  const { host } =
    hostText !== undefined
      ? loadText(rel, hostText)
      : loadBuiltin(scenario.host, builtin as string);
  const names = scenario.processes.map((p) => p.name);
  const states: StepState[] = [];
  const capture = (kernel: Kernel): StepState => ({
    // Processes are spawned in the scenario's order, before any step runs.
    processes: kernel.debug.processes().map((p, i) => ({ name: names[i] ?? `pid ${p.pid}`, ...p })),
    vfio: kernel.debug.vfio(),
    vms: kernel.debug.vms(),
  });
  const report = runScenario(scenario, host, (step: StepResult, kernel) => {
    states[step.index - 1] = capture(kernel);
  });
  renumberContainers(states);
  // Before the first step nothing is open yet.
  const initial: StepState = {
    processes: (states[0]?.processes ?? []).map((p) => ({ ...p, fds: [] })),
    vfio: { containers: [], groups: [] },
    vms: [],
  };
  return { file, scenario, hostName: host.name, report, states, initial };
}

/** Containers are named by their first file's inode number; show them as #1, #2, … instead. */
function renumberContainers(states: StepState[]): void {
  const seq = new Map<number, number>();
  const num = (id: number) => {
    if (!seq.has(id)) seq.set(id, seq.size + 1);
    return seq.get(id) as number;
  };
  for (const st of states) {
    for (const c of st.vfio.containers) c.id = num(c.id);
    for (const g of st.vfio.groups) if (g.container !== null) g.container = num(g.container);
    for (const p of st.processes)
      for (const f of p.fds)
        if (f.object)
          f.object = f.object.replace(
            /^VFIO container #(-?\d+)/,
            (_m, id: string) => `VFIO container #${num(Number(id))}`,
          );
  }
}
