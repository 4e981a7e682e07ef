/**
 * One scenario under three designs of the VFIO–KVM coherency interface, side by side
 * (`passthru compare-designs`):
 *
 * - "group": the 2013 kvm-vfio series (Linux 3.13 profile, Debian-like build): VFIO group
 *   fds in a type1 container, each group added to kvm-vfio; every group counts as
 *   non-coherent (the series' TODO).
 * - "cdev": the current design (Linux 6.12, iommufd build): device cdevs bound to iommufd,
 *   each cdev fd added to kvm-vfio, whose verdict is the device's IOMMU's
 *   (vfio_file_enforced_coherent).
 * - "proposal": KVM_ALLOW_INCOHERENT_DMA(iommufd, device label), proposed in June 2021
 *   and NEVER MERGED (profile "2021-proposal", iommufd build).
 *
 * The scenario's `vmm` step (vmm.ts) makes each design's calls; everything reported comes
 * from running the model: the calls and what they returned, KVM's noncoherent DMA state
 * after them, what the guest read and what its run cost (simulated ns, costs.ts), and who
 * can turn real WBINVD on — found by giving each of the host's devices, alone, to a VM of
 * a fresh kernel by the same design and asking KVM whether a guest WBINVD is now executed.
 */
import type { Host } from "../../host/build.js";
import type { Kernel, KernelBuild, ProfileName } from "../../kernel/kernel.js";
import type { Json } from "../replay/script.js";
import { runScenario, type StepResult } from "./run.js";
import type { Scenario, Step } from "./schema.js";
import { designOf, parseVmm, type DesignName } from "./vmm.js";

interface DesignDef {
  design: DesignName;
  title: string;
  profile: ProfileName;
  build: KernelBuild;
}

/** The three designs, oldest first. */
export const DESIGNS: readonly DesignDef[] = [
  { design: "group", title: "2013 kvm-vfio groups", profile: "3.13", build: "debian" },
  { design: "cdev", title: "6.12 cdev + iommufd", profile: "6.12", build: "iommufd" },
  {
    design: "proposal",
    title: "2021 proposal (NEVER MERGED)",
    profile: "2021-proposal",
    build: "iommufd",
  },
];

/** What a call returned: "0", "fd", "buf" or the errno name. */
export interface CallResult {
  call: string;
  result: string;
}

/** Whether holding one device lets a process turn real WBINVD on under a design. */
export interface WbinvdProbe {
  device: string;
  /** A guest WBINVD is executed on the host once the device is given to the VM. */
  enables: boolean;
  /** The design's coherency call for the device and what it returned. */
  by: CallResult | null;
  /** Why the device could not be given to the VM at all, if it could not. */
  failure?: string;
}

export interface DesignColumn {
  design: DesignName;
  title: string;
  profile: ProfileName;
  build: KernelBuild;
  merged: boolean;
  /** The VMM's calls in order (binding to vfio-pci aside), with their results. */
  calls: CallResult[];
  /** KVM after the VMM's calls: kvm->arch.noncoherent_dma_count and the WBINVD verdict. */
  kvm: { noncoherentDmaCount: number; wbinvd: "flush" | "nop" } | null;
  whoCanFlush: WbinvdProbe[];
  /** The last guest run: what it read, its WBINVDs and what it cost (simulated ns). */
  guest: {
    reads: string[];
    wbinvdExits: number;
    wbinvdExecuted: number;
    hostWbinvds: number;
    ns: number;
    otherCpusNs: number;
  } | null;
  /** Steps that failed (an unexpected errno, an expectation not met). */
  failures: string[];
}

export interface DesignComparison {
  scenario: string;
  host: string;
  designs: DesignColumn[];
}

const result = (r: Record<string, Json>): string =>
  r.errno === null ? String(r.ret) : String(r.errno);

/** The VMM's calls recorded by a `vmm` step (run.ts tags each with `call`). */
function callsOf(step: StepResult | undefined): CallResult[] {
  return (step?.results ?? [])
    .filter((r) => typeof r.call === "string" && r.call !== "bind vfio-pci")
    .map((r) => ({ call: String(r.call), result: result(r) }));
}

/** The calls by which a VMM tells KVM about coherency, in every design. */
const COHERENCY_CALL = /^KVM_(DEV_VFIO|ALLOW)/;

function boot(sc: Scenario, d: DesignDef): Scenario {
  return { ...sc, kernel: { ...sc.kernel, profile: d.profile, build: d.build } };
}

/** Run `sc` under design `d`: the report, the kernel, KVM's state after the vmm step. */
function runUnder(sc: Scenario, host: Host, d: DesignDef) {
  let kernel: Kernel | null = null;
  let kvm: DesignColumn["kvm"] = null;
  const report = runScenario(boot(sc, d), host, (step, k) => {
    kernel = k;
    const vm = k.debug.vms()[0];
    if (step.op === "vmm" && vm)
      kvm = { noncoherentDmaCount: vm.noncoherentDmaCount, wbinvd: vm.wbinvd };
  });
  return { report, kernel: kernel as Kernel | null, kvm: kvm as DesignColumn["kvm"] };
}

/** Every endpoint of the host (bridges are never given to a guest). */
function endpoints(host: Host): string[] {
  return [...host.functions]
    .filter(([, f]) => {
      const cls = typeof f.class === "string" ? parseInt(f.class, 16) : (f.class ?? 0);
      return cls >> 16 !== 0x06; // PCI_BASE_CLASS_BRIDGE
    })
    .map(([bdf]) => bdf)
    .sort();
}

/** Give `device` alone to a VM by design `d` and ask KVM whether guest WBINVD now flushes. */
function probe(sc: Scenario, host: Host, d: DesignDef, device: string): WbinvdProbe {
  const vmm: Step = {
    op: "vmm",
    assign: [{ device, as: "dev" }],
    ram: { size: 0x1000, as: "ram" },
  };
  const { report, kvm } = runUnder({ ...sc, steps: [vmm] }, host, d);
  const step = report.steps[0];
  const by = callsOf(step).find((c) => COHERENCY_CALL.test(c.call)) ?? null;
  const failure = step?.failures[0];
  return {
    device,
    enables: kvm?.wbinvd === "flush",
    by,
    ...(failure ? { failure } : {}),
  };
}

/** The scenario's `vmm` step (validated), or a message saying what is wrong. */
export function vmmStepIndex(sc: Scenario): { index: number } | { error: string; field: string } {
  const index = sc.steps.findIndex((s) => s.op === "vmm");
  if (index < 0)
    return {
      error:
        "no `vmm` step: the designs need one to make their calls (see coherency-compare-designs.yaml)",
      field: "steps",
    };
  const r = parseVmm(sc.steps[index] as Record<string, unknown>);
  if (r.success) return { index };
  const i = r.error.issues[0];
  return {
    error: i?.message ?? "invalid",
    field: `steps[${index}]${i?.path.length ? "." + i.path.join(".") : ""}`,
  };
}

export function compareDesigns(sc: Scenario, host: Host): DesignComparison {
  const devices = endpoints(host);
  const designs = DESIGNS.map((d): DesignColumn => {
    const { report, kernel, kvm } = runUnder(sc, host, d);
    if (kernel && designOf(kernel) !== d.design)
      throw new Error(`design ${d.design} booted a kernel whose VMM uses ${designOf(kernel)}`);
    const guestStep = [...report.steps].reverse().find((s) => s.op === "guest");
    const out = guestStep?.results[guestStep.results.length - 1]?.out as
      Record<string, Json> | undefined;
    return {
      design: d.design,
      title: d.title,
      profile: d.profile,
      build: d.build,
      merged: kernel?.profile.merged ?? true,
      calls: callsOf(report.steps.find((s) => s.op === "vmm")),
      kvm,
      whoCanFlush: devices.map((dev) => probe(sc, host, d, dev)),
      guest: out
        ? {
            reads: out.reads as string[],
            wbinvdExits: out.wbinvd_exits as number,
            wbinvdExecuted: out.wbinvd_executed as number,
            hostWbinvds: out.host_wbinvds as number,
            ns: out.ns as number,
            otherCpusNs: out.other_cpus_ns as number,
          }
        : null,
      failures: report.steps.flatMap((s) => s.failures.map((f) => `step ${s.index} ${s.op}: ${f}`)),
    };
  });
  return { scenario: sc.name, host: host.name, designs };
}
