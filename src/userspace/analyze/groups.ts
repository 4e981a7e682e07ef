/**
 * The groups analysis: boot the kernel model on a host, read back the IOMMU groups it
 * formed and the reasons it kept (its debugfs), compare them with the groups the real
 * kernel reported when the input carries them, and answer the pcie_acs_override what-if.
 */
import type { Host } from "../../host/build.js";
import type { GroupEdge, Kernel, ReasonCode } from "../../kernel/kernel.js";
import { bootHost } from "../boot.js";

export interface DeviceRow {
  bdf: string;
  id: string;
  class: string;
  name?: string;
  driver?: string;
  kernelGroup?: number;
}

export interface GroupRow {
  id: number;
  unit: string;
  devices: DeviceRow[];
  /** One line saying why the group is what it is. */
  reason: string;
  codes: ReasonCode[];
  reasons: GroupEdge[];
}

export interface Difference {
  kind: "membership" | "missing-group" | "extra-group";
  bdf: string;
  derived: string[];
  kernel: string[];
  text: string;
  /** A device involved had capabilities the input did not hold: a gap in the data, not the model. */
  unknownCaps: boolean;
}

export interface GroupsReport {
  host: string;
  source: string;
  cmdline: string;
  groups: GroupRow[];
  ungrouped: DeviceRow[];
  /** Present when the input carries the kernel's own groups. */
  comparison?: {
    identical: boolean;
    differences: Difference[];
    numberingDiffers: boolean;
    /** Differences not explained by capabilities missing from the input. */
    unexplained: number;
  };
  warnings: string[];
}

export interface Analysis {
  kernel: Kernel;
  report: GroupsReport;
}

export function analyzeGroups(host: Host, extraCmdline = ""): Analysis {
  const cmdline = [host.cmdline, extraCmdline].filter(Boolean).join(" ");
  const kernel = bootHost(host, extraCmdline);
  const row = (bdf: string): DeviceRow => deviceRow(kernel, host, bdf);
  const groups: GroupRow[] = kernel.debug.groups().map((g) => ({
    id: g.id,
    unit: g.unit,
    devices: g.devices.map(row),
    reason: summarize(g.edges, g.devices.length),
    codes: [...new Set(g.edges.map((e) => e.code))],
    reasons: g.edges,
  }));
  const grouped = new Set(groups.flatMap((g) => g.devices.map((d) => d.bdf)));
  const ungrouped = kernel.pci.devices.filter((d) => !grouped.has(d.name)).map((d) => row(d.name));
  const warnings: string[] = [...host.assumptions];
  if (kernel.params.acsOverride) {
    warnings.push(
      "pcie_acs_override is in effect: the kernel believes in isolation the hardware does not provide. " +
        "Devices it splits can still reach each other by peer-to-peer DMA that never passes the IOMMU.",
    );
  }
  if (host.unprivileged || kernel.pci.devices.some((d) => d.capsUnknown)) {
    warnings.push(
      "Capabilities were not readable (captured without root): PCIe port types and ACS are unknown, " +
        "so derived groups assume no ACS anywhere. Capture as root for a real derivation.",
    );
  }
  if (kernel.iommu.groups.size === 0 && kernel.pci.devices.length > 0) {
    warnings.push(
      "No IOMMU is enabled on this host: no device is in a group, so none can be passed through with VFIO.",
    );
  }
  const report: GroupsReport = {
    host: host.name,
    source: host.source,
    cmdline,
    groups,
    ungrouped,
    warnings,
  };
  if ([...host.observed.values()].some((o) => o.group !== undefined))
    report.comparison = compare(
      groups,
      ungrouped,
      host,
      (bdf) => !!kernel.debug.device(bdf)?.capsUnknown,
    );
  return { kernel, report };
}

function deviceRow(kernel: Kernel, host: Host, bdf: string): DeviceRow {
  const d = kernel.debug.device(bdf);
  const obs = host.observed.get(bdf);
  const spec = host.functions.get(bdf);
  return {
    bdf,
    id: d ? `${hex4(d.vendor)}:${hex4(d.device)}` : "????:????",
    class: d ? d.class.toString(16).padStart(6, "0") : "??????",
    ...(spec?.name ? { name: spec.name } : {}),
    ...(obs?.driver ? { driver: obs.driver } : {}),
    ...(obs?.group !== undefined ? { kernelGroup: obs.group } : {}),
  };
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, "0");
}

/** Partition comparison: group numbers depend on probe order, membership must not. */
function compare(
  groups: GroupRow[],
  ungrouped: DeviceRow[],
  host: Host,
  unknown: (bdf: string) => boolean,
): NonNullable<GroupsReport["comparison"]> {
  const derivedOf = new Map<string, string[]>();
  for (const g of groups)
    for (const d of g.devices)
      derivedOf.set(
        d.bdf,
        g.devices.map((x) => x.bdf),
      );
  const kernelOf = new Map<string, string[]>();
  const byKernelGroup = new Map<number, string[]>();
  for (const [bdf, o] of host.observed) {
    if (o.group === undefined) continue;
    byKernelGroup.set(o.group, [...(byKernelGroup.get(o.group) ?? []), bdf]);
  }
  for (const members of byKernelGroup.values())
    for (const m of members) kernelOf.set(m, members.sort());
  const differences: Difference[] = [];
  const all = new Set([...derivedOf.keys(), ...kernelOf.keys(), ...ungrouped.map((u) => u.bdf)]);
  for (const bdf of [...all].sort()) {
    const d = (derivedOf.get(bdf) ?? []).slice().sort();
    const k = kernelOf.get(bdf) ?? [];
    if (d.join() === k.join()) continue;
    const kind = d.length === 0 ? "missing-group" : k.length === 0 ? "extra-group" : "membership";
    const text =
      kind === "missing-group"
        ? `${bdf}: the kernel put it in a group with ${k.length} device(s), the model gave it none`
        : kind === "extra-group"
          ? `${bdf}: the model grouped it (${d.join(", ")}), the kernel gave it no group`
          : `${bdf}: model {${d.join(", ")}} vs kernel {${k.join(", ")}}`;
    const unknownCaps = [bdf, ...d, ...k].some(unknown);
    differences.push({ kind, bdf, derived: d, kernel: k, text, unknownCaps });
  }
  const numberingDiffers = groups.some((g) =>
    g.devices.some((d) => d.kernelGroup !== undefined && d.kernelGroup !== g.id),
  );
  return {
    identical: differences.length === 0,
    differences,
    numberingDiffers,
    unexplained: differences.filter((x) => !x.unknownCaps).length,
  };
}

const SHORT = (bdf?: string) => (bdf?.startsWith("0000:") ? bdf.slice(5) : (bdf ?? "?"));

/** The one-line reason of a group, from the edges that formed it. */
function summarize(edges: GroupEdge[], size: number): string {
  const byCode = (c: ReasonCode) => edges.filter((e) => e.code === c);
  const parts: string[] = [];
  const vmd = byCode("REAL_DMA_DEV")[0];
  if (vmd) parts.push(`behind Intel VMD ${SHORT(vmd.other)}`);
  const bridges = [...new Set(byCode("BEHIND_PCI_BRIDGE").map((e) => e.other))];
  if (bridges.length) parts.push(`conventional PCI behind ${bridges.map(SHORT).join(", ")}`);
  const acs = byCode("ACS_PATH");
  if (acs.length) {
    const anchors = [...new Set(acs.map((e) => e.other))];
    const why = acs[0]?.verdicts?.[acs[0].verdicts.length - 1];
    parts.push(
      `${anchors.map(SHORT).join(", ")} ${anchors.length > 1 ? "do" : "does"} not isolate the devices below (${why?.dev ? SHORT(why.dev) + ": " : ""}${why?.text ?? "no ACS"})`,
    );
  }
  const mf = byCode("MF_SIBLINGS");
  if (mf.length) {
    const slots = [...new Set(mf.map((e) => SHORT(e.other).replace(/\.[0-7]$/, "")))];
    parts.push(`multifunction device ${slots.join(", ")} without ACS between its functions`);
  }
  const alias = byCode("DMA_ALIAS");
  if (alias.length)
    parts.push(
      `DMA requester-ID aliases (${[...new Set(alias.map((e) => SHORT(e.other)))].join(", ")})`,
    );
  if (parts.length) return parts.join("; ");
  const founder = edges[0];
  if (size === 1 && founder) return founder.text;
  return founder?.text ?? "";
}
