/**
 * What the coherency tests share: the shipped VMM setup of coherency-nosnoop-kvm-vfio.yaml
 * (nsgpu behind VFIO, guest RAM at IOVA = guest-physical, a VM with one vCPU and a
 * kvm-vfio device), with or without its FILE_ADD, on any nsgpu host, followed by the
 * test's own steps; and the kernel and machine as the run left them.
 */
import { join } from "node:path";
import { loadHost } from "../../src/host/load.js";
import type { Kernel, ProfileName } from "../../src/kernel/kernel.js";
import type { Json } from "../../src/userspace/replay/script.js";
import { loadScenario } from "../../src/userspace/scenario/load.js";
import { runScenario, type StepResult } from "../../src/userspace/scenario/run.js";
import { stepSchema } from "../../src/userspace/scenario/schema.js";
import { ROOT } from "../support/paths.js";

export const SCENARIOS = join(ROOT, "examples", "scenarios");
export const HOSTS = join(ROOT, "examples", "hosts");

/** The guest's DMA buffer and the BAR0 window of the shipped scenarios. */
export const BUF = 0x10000;
export const BAR = 0xfe000000;
export const MMIO = [{ gpa: BAR, size: 0x1000, fd: "gpu", offset: 0 }];

export const FILE_ADD = {
  op: "ioctl",
  fd: "kvfio",
  req: "KVM_SET_DEVICE_ATTR",
  arg: {
    kvm_device_attr: {
      group: "KVM_DEV_VFIO_FILE",
      attr: "KVM_DEV_VFIO_FILE_ADD",
      addr: { struct: [["s32", "fd", "$group"]] },
    },
  },
};
export const FILE_DEL = {
  ...FILE_ADD,
  arg: {
    kvm_device_attr: { ...FILE_ADD.arg.kvm_device_attr, attr: "KVM_DEV_VFIO_FILE_DEL" },
  },
};

export interface Run {
  steps: StepResult[];
  kernel: Kernel;
  machine: Awaited<ReturnType<typeof loadHost>>["machine"];
  /** The `out` of every guest / vm_info step, in order. */
  outs: Record<string, Json>[];
  failures: string[];
}

/**
 * The VMM setup (steps before the first guest step), without its FILE_ADD unless
 * `fileAdd`, and without its assertions on coherency, then `extra`.
 */
export async function vmm(
  extra: Record<string, unknown>[],
  opts: { host?: string; fileAdd?: boolean; profile?: ProfileName } = {},
): Promise<Run> {
  const { scenario } = await loadScenario(join(SCENARIOS, "coherency-nosnoop-kvm-vfio.yaml"));
  const host = await loadHost(join(HOSTS, opts.host ?? "nsgpu-vtd.yaml"));
  const setup = scenario.steps
    .slice(
      0,
      scenario.steps.findIndex((s) => s.op === "guest"),
    )
    .filter((s) => s.op !== "vm_info" && s.arg !== "VFIO_DMA_CC_IOMMU")
    .filter((s) => opts.fileAdd || !JSON.stringify(s).includes("KVM_DEV_VFIO_FILE_ADD"));
  let kernel: Kernel | null = null;
  const r = runScenario(
    {
      ...scenario,
      kernel: { ...scenario.kernel, ...(opts.profile ? { profile: opts.profile } : {}) },
      steps: [...setup, ...extra.map((s) => stepSchema.parse(s))],
    },
    host,
    (_s, k) => (kernel = k),
  );
  const outs = r.steps
    .filter((s) => s.op === "guest" || s.op === "vm_info")
    .map((s) => s.results[s.results.length - 1]?.out as Record<string, Json>);
  const failures = r.steps.flatMap((s) => s.failures.map((f) => `${s.index} ${s.op}: ${f}`));
  return {
    steps: r.steps,
    kernel: kernel as unknown as Kernel,
    machine: host.machine,
    outs,
    failures,
  };
}

export const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/**
 * Host physical address of guest-physical `gpa`: the IOMMU's translation of the device's
 * IOVA (= guest-physical), looked up without a DMA so no cache is disturbed.
 */
export function hostPa(run: Run, gpa: number): number {
  const fn = run.machine.pci.fn(0, 1, 0);
  if (!fn) throw new Error("no device at 01:00.0");
  const route = run.machine.dma.route(fn);
  if (!route.unit) throw new Error("the device is not behind an IOMMU");
  const t = run.machine.iommu.translate(
    route.unit.name,
    route.segment,
    route.rid,
    BigInt(gpa),
    false,
  );
  if (!t.ok) throw new Error(`gpa 0x${gpa.toString(16)} is not mapped`);
  return t.pa;
}

/** What RAM itself holds (no cache consulted). */
export function ram(run: Run, gpa: number, len: number): string {
  return hex(run.machine.memory.read(hostPa(run, gpa), len));
}
