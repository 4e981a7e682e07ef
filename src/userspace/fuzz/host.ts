/**
 * The machines the fuzzer drives: small, but with every shape the uAPI treats
 * differently — QEMU edu DMA devices (so DMA really happens), each alone in its group
 * behind an ACS root port; two edu functions of one multifunction device sharing a group
 * with the root port above them (no ACS: a bridge in the group, bound to pcieport); an
 * edu behind a PCIe-to-PCI bridge (its DMA carries the bridge's requester ID); and, on the
 * VT-d machine, two units, one with Snoop Control and one without, so kvm-vfio sees
 * coherent and non-coherent devices. One edu is bound to a kernel DMA-API driver at boot.
 *
 * A fuzz configuration picks the machine, extra command-line words (a tiny DMA entry
 * limit, hugepages off, interrupt remapping off with and without allow_unsafe_interrupts,
 * iommu=pt) and the KVM era profile.
 */
import { buildHost, type Host } from "../../host/build.js";
import { hostSpecSchema, type HostSpec } from "../../host/spec.js";
import { Kernel, type KernelBuild, type ProfileName } from "../../kernel/kernel.js";

const EDU = { id: "1234:11e8", class: "00ff00", bars: [{ index: 0, size: 0x100000 }] };
const ACS = { cap: ["sv", "tb", "rr", "cr", "uf"], ctl: [] };

function functions(): unknown[] {
  const port = (addr: string, acs: boolean, children: unknown[]) => ({
    addr,
    id: "1b36:000c",
    class: "060400",
    pcie: "root-port",
    ...(acs ? { acs: ACS } : {}),
    driver: "pcieport",
    children,
  });
  return [
    { addr: "0000:00:00.0", id: "8086:29c0", class: "060000" },
    port("0000:00:02.0", true, [{ addr: "00.0", pcie: "endpoint", ...EDU }]),
    port("0000:00:03.0", true, [{ addr: "00.0", pcie: "endpoint", ...EDU, driver: "edu" }]),
    port("0000:00:04.0", false, [
      { addr: "00.0", pcie: "endpoint", multifunction: true, ...EDU },
      { addr: "00.1", pcie: "endpoint", multifunction: true, ...EDU },
    ]),
    port("0000:00:05.0", true, [
      {
        addr: "00.0",
        id: "1b36:000e",
        class: "060400",
        pcie: "pcie-to-pci",
        children: [{ addr: "01.0", ...EDU }],
      },
    ]),
  ];
}

/** The assignable DMA devices, in the order generators index them. */
export const FUZZ_DEVICES = [
  "0000:01:00.0",
  "0000:02:00.0",
  "0000:03:00.0",
  "0000:03:00.1",
  "0000:05:01.0",
];

/** Every PCI function of the fuzz machines (sysfs targets). */
export const FUZZ_FUNCTIONS = [
  "0000:00:00.0",
  "0000:00:02.0",
  "0000:00:03.0",
  "0000:00:04.0",
  "0000:00:05.0",
  "0000:04:00.0",
  ...FUZZ_DEVICES,
];

/** The kernel's PCI drivers on the fuzz machines. */
export const FUZZ_DRIVERS = ["vfio-pci", "pcieport", "pci-stub", "edu"];

export type FuzzMachine = "vtd" | "amdvi";

const specs = new Map<FuzzMachine, HostSpec>();

/** The machine's host description (validated once, a fresh copy each call). */
export function fuzzHostSpec(machine: FuzzMachine): HostSpec {
  let spec = specs.get(machine);
  if (!spec) {
    spec = makeSpec(machine);
    specs.set(machine, spec);
  }
  return structuredClone(spec);
}

function makeSpec(machine: FuzzMachine): HostSpec {
  return hostSpecSchema.parse(fuzzHostInput(machine));
}

/** The machine as a host file says it (YAML/JSON input of `loadHost`), with extra words. */
export function fuzzHostInput(machine: FuzzMachine, extraCmdline = ""): Record<string, unknown> {
  const iommu =
    machine === "vtd"
      ? [
          // QEMU's VT-d registers (Snoop Control in ECAP), and a unit without Snoop Control.
          {
            kind: "intel-vtd",
            name: "dmar0",
            cap: "0xd2008c22260206",
            ecap: "0xf00fca",
            devices: [
              "0000:00:02.0",
              "0000:01:00.0",
              "0000:00:04.0",
              "0000:03:00.0",
              "0000:03:00.1",
              "0000:00:05.0",
              "0000:04:00.0",
              "0000:05:01.0",
            ],
          },
          {
            kind: "intel-vtd",
            name: "dmar1",
            cap: "0x8d2078c106f0466",
            ecap: "0xf0205f",
            devices: ["0000:00:03.0", "0000:02:00.0"],
          },
        ]
      : [{ kind: "amd-vi", name: "ivhd0" }];
  const base = machine === "vtd" ? "intel_iommu=on iommu=nopt" : "amd_iommu=on iommu=nopt";
  return {
    name: `fuzz-${machine}`,
    description: "the fuzzer's machine: edu DMA devices in every kind of group",
    kernel: {
      cmdline: [base, extraCmdline].filter(Boolean).join(" "),
      drivers: FUZZ_DRIVERS.filter((d) => d !== "vfio-pci" && d !== "pcieport" && d !== "pci-stub"),
    },
    iommu,
    functions: functions(),
  };
}

/** One fuzz configuration: the machine, extra command-line words, the KVM profile. */
export interface FuzzConfig {
  machine: FuzzMachine;
  cmdline: string;
  profile: ProfileName;
  /** The kernel build (kconfig.ts); Debian's (legacy container + type1) when absent. */
  build?: KernelBuild;
}

/** Command-line variants (the first is the plain one). */
export const CMDLINES = [
  "",
  "vfio_iommu_type1.dma_entry_limit=4",
  "vfio_iommu_type1.disable_hugepages=1",
  "intremap=off",
  "intremap=off vfio_iommu_type1.allow_unsafe_interrupts=1",
  "iommu=pt",
  "iommu.strict=1",
  "intel_iommu=off amd_iommu=off vfio.enable_unsafe_noiommu_mode=1",
];

export const PROFILES: ProfileName[] = ["6.12", "3.15", "3.13", "2021-proposal"];

/** A built machine and the kernel booted on it, as the fuzz configuration says. */
export function bootFuzz(cfg: FuzzConfig): { host: Host; kernel: Kernel; spec: HostSpec } {
  const spec = fuzzHostSpec(cfg.machine);
  spec.kernel.cmdline = [spec.kernel.cmdline, cfg.cmdline].filter(Boolean).join(" ");
  const host = buildHost(spec, spec.name);
  const bindings = new Map<string, string>();
  for (const [bdf, o] of host.observed) if (o.driver) bindings.set(bdf, o.driver);
  const kernel = bootKernel(host, bindings, cfg.profile, cfg.build);
  return { host, kernel, spec };
}

function bootKernel(
  host: Host,
  bindings: Map<string, string>,
  profile: ProfileName,
  build?: KernelBuild,
): Kernel {
  return Kernel.boot(host.machine.hardware(), {
    cmdline: host.cmdline,
    drivers: host.spec.kernel.drivers,
    bindings,
    profile,
    ...(build ? { build } : {}),
  });
}
