/**
 * The host analysis behind `passthru analyze` and `passthru plan`: boot the kernel model on a
 * host, then read it back the way a tool reads a real machine — sysfs through a process's
 * syscalls (each function's config, driver, driver_override, iommu_group and iommu links,
 * reset_method; each group's reserved_regions; each unit's VT-d registers) and the groups'
 * reasons through the model's debugfs. From those facts, per group: the kernel's membership
 * against the derived one, viability (drivers/iommu/iommu.c DMA ownership: only drivers
 * that manage DMA themselves may stay bound, research §1.8), reset methods (§2.4) and what a
 * bus reset would take with it, reserved regions, and per IOMMU unit interrupt remapping
 * (VT-d ECAP.IR, bit 3) and enforced cache coherency (VT-d ECAP.SC, bit 7 → KVM's WBINVD
 * emulation, §3.4).
 */
import type { Host } from "../../host/build.js";
import { readSnapshot, type SnapshotFs } from "../../host/snapshot.js";
import type { GroupEdge, Kernel } from "../../kernel/kernel.js";
import { analyzeGroups, type GroupsReport } from "./groups.js";
import { isBridgeHeader, parseConfig, PCIE_TYPE_NAMES, type ConfigFacts } from "./config.js";
import { className } from "./pci-class.js";
import { deriveResetMethods, short } from "./reset.js";
import { modelSysfs, type SysfsAccess } from "./sysfs.js";

/** Drivers that declare driver_managed_dma (research §1.8): they may stay bound in a VFIO group. */
export const DMA_MANAGED_DRIVERS = new Set([
  "vfio-pci",
  "pci-stub",
  "pcieport",
  "mlx5_vfio_pci",
  "hisi_acc_vfio_pci",
  "virtio_vfio_pci",
  "pds_vfio_pci",
  "qat_vfio_pci",
  "nvgrace_gpu_vfio_pci",
]);
const VFIO_DRIVERS = new Set([...DMA_MANAGED_DRIVERS].filter((d) => d.includes("vfio")));

export interface ResetInfo {
  /** Methods in the kernel's order; null when the capabilities were not captured. */
  methods: string[] | null;
  /** Where the list comes from: the model's sysfs reset_method, or derived from config space. */
  source: "sysfs" | "derived" | "unknown";
  /** The real kernel's reset_method, when the input is a snapshot that holds it. */
  observed?: string[];
  /** What the rules of drivers/pci/pci.c give from config-space facts (a cross-check). */
  derived: string[] | null;
  why: string[];
  /** A secondary bus reset (or VFIO hot reset) of the bridge above resets all of these too. */
  busScope?: { bridge: string; alsoResets: string[] };
  /**
   * Other functions on the same bus now. "bus" is probed when the function is added, before its
   * siblings are (so function 0 of a multifunction device lists it), but pci_parent_bus_reset()
   * refuses at reset time while any other device is on the bus: then the listed "bus" fails.
   */
  sharesBusWith: string[];
}

export interface DeviceInfo {
  bdf: string;
  id: string;
  subsystem?: string;
  class: string;
  className: string;
  name?: string;
  driver: string | null;
  driverOverride: string | null;
  group: number | null;
  unit: string | null;
  /** The bridge above (null on a root bus). */
  parent: string | null;
  /** Type 1/2 header: vfio-pci will not take it; it stays on the host. */
  bridge: boolean;
  /** Host bridge (class 0600): stays on the host, unbound. */
  hostBridge: boolean;
  pcieType?: string;
  slot?: number;
  reset: ResetInfo;
  capsKnown: boolean;
}

export type MemberRole = "pass" | "stays";
export type MemberStatus = "ready" | "ok" | "unbound" | "must-unbind";

export interface MemberViability {
  bdf: string;
  driver: string | null;
  role: MemberRole;
  status: MemberStatus;
  text: string;
}

export interface Region {
  start: string;
  end: string;
  type: string;
}

export interface GroupAnalysis {
  id: number;
  unit: string;
  devices: string[];
  reason: string;
  reasons: GroupEdge[];
  /** The kernel's membership for these devices, when the input carries it. */
  kernel: string[] | null;
  matchesKernel: boolean | null;
  differences: string[];
  viableNow: boolean;
  viability: MemberViability[];
  reservedRegions: Region[];
  /** No `direct` (non-relaxable identity-mapped) region: VFIO can claim the group. */
  claimable: boolean;
}

export interface UnitInfo {
  name: string;
  kind: "intel-vtd" | "amd-vi" | "other";
  ecap?: string;
  /** VT-d ECAP.SC: the unit can force snooping (enforced cache coherency). null = unknown. */
  snoopControl: boolean | null;
  /** VT-d ECAP.IR. null = unknown. */
  interruptRemapping: boolean | null;
  groups: number[];
  /** Whether a guest given a device behind this unit gets WBINVD emulated by KVM. */
  wbinvd: "emulated" | "not-needed" | "unknown";
  text: string;
}

export interface HostAnalysis {
  host: string;
  source: string;
  cmdline: string;
  iommuVendor: "intel" | "amd" | "other" | "none";
  devices: DeviceInfo[];
  groups: GroupAnalysis[];
  ungrouped: string[];
  units: UnitInfo[];
  interruptRemapping: { enabled: boolean | null; text: string };
  /** Reset methods come from the model's sysfs reset_method, or are derived from config space. */
  resetSource: "sysfs" | "derived";
  comparison?: GroupsReport["comparison"];
  warnings: string[];
}

export interface Analysis {
  host: Host;
  kernel: Kernel;
  groups: GroupsReport;
  sysfs: SysfsAccess;
  report: HostAnalysis;
  device(bdf: string): DeviceInfo | undefined;
  group(id: number | null): GroupAnalysis | undefined;
}

const ROOT_ONLY_NOTE =
  "Capabilities were not readable (captured without root): reset methods, PCIe port types and " +
  "ACS are unknown. Capture as root for a complete analysis.";

/** `snapshot`: the input's files when already in memory (a live capture), for what the model lacks. */
export async function analyzeHost(
  host: Host & { kind?: string },
  snapshot?: SnapshotFs,
): Promise<Analysis> {
  const { kernel, report } = analyzeGroups(host);
  const sys = modelSysfs(kernel.spawn());
  const dev = (bdf: string, f: string) => `/sys/bus/pci/devices/${bdf}/${f}`;
  const all = [
    ...report.groups.flatMap((g) => g.devices.map((d) => d.bdf)),
    ...report.ungrouped.map((d) => d.bdf),
  ].sort(cmpBdf);
  const observedReset = snapshot
    ? resetMethodsOf(snapshot)
    : host.kind === "snapshot"
      ? await snapshotResetMethods(host.source)
      : null;

  // Topology from the device directories' paths (the bridge chain), as a sysfs reader sees it.
  const parent = new Map<string, string | null>();
  const paths = new Map<string, string>();
  for (const bdf of all) {
    const t = sys.target(`/sys/bus/pci/devices/${bdf}`) ?? "";
    paths.set(bdf, t);
    const parts = t.split("/");
    const up = parts[parts.length - 2] ?? "";
    parent.set(bdf, BDF.test(up) ? up : null);
  }
  const facts = new Map<string, ConfigFacts>();
  for (const bdf of all) {
    const f = parseConfig(sys.bytes(dev(bdf, "config")) ?? new Uint8Array());
    // lspci text without a "Power Management" capability: the machine builder still lays one
    // out (machine/pci/builder.ts always does); the text, not the layout, is the fact here.
    if (noPmInText(host, bdf)) delete f.pmCap;
    facts.set(bdf, f);
  }

  // Whether the kernel model has reset_method at all (else derive from config space).
  const modelResets = all.some((b) => sys.text(dev(b, "reset_method")) !== null);
  const rowOf = new Map(
    [...report.groups.flatMap((g) => g.devices), ...report.ungrouped].map((d) => [d.bdf, d]),
  );
  const devices: DeviceInfo[] = all.map((bdf) => {
    const f = facts.get(bdf) as ConfigFacts;
    const capsKnown = f.capsKnown && !kernel.debug.device(bdf)?.capsUnknown;
    const p = parent.get(bdf) ?? null;
    const busOf = (b: string) => b.slice(0, b.lastIndexOf(":"));
    const earlier = all.filter(
      (o) => o !== bdf && busOf(o) === busOf(bdf) && parent.get(o) === p && devfn(o) < devfn(bdf),
    );
    const sysfsMethods = sys.text(dev(bdf, "reset_method"));
    const d = capsKnown
      ? deriveResetMethods({
          bdf,
          facts: f,
          parentBridge: p,
          earlierOnBus: earlier,
          parentCxl: p ? !!facts.get(p)?.hasCxlPortDvsec : false,
        })
      : null;
    let reset: ResetInfo;
    if (!d) {
      reset = {
        methods: null,
        source: "unknown",
        why: ["capabilities not captured"],
        derived: null,
        sharesBusWith: [],
      };
    } else if (modelResets) {
      // The attribute exists only when some method does (pci_dev_reset_method_attr_is_visible).
      let methods = (sysfsMethods ?? "").split(/\s+/).filter(Boolean);
      const why = ["read from the kernel model's /sys/bus/pci/devices/*/reset_method"];
      if (noPmInText(host, bdf) && methods.includes("pm")) {
        methods = methods.filter((m) => m !== "pm");
        why.push(
          "pm dropped: the lspci text shows no Power Management capability, but the model's machine lays one out for every declared function",
        );
      }
      reset = { methods, source: "sysfs", why, derived: d.methods, sharesBusWith: [] };
    } else {
      reset = {
        methods: d.methods,
        source: "derived",
        why: [...d.why, ...d.unknowable],
        derived: d.methods,
        sharesBusWith: [],
      };
    }
    reset.sharesBusWith = all.filter(
      (o) => o !== bdf && busOf(o) === busOf(bdf) && parent.get(o) === p,
    );
    const obs = observedReset?.get(bdf);
    if (observedReset) reset.observed = obs ?? [];
    if (p) {
      const under = all.filter((o) => o !== bdf && isBelow(paths.get(o) ?? "", p));
      reset.busScope = { bridge: p, alsoResets: under };
    }
    const row = rowOf.get(bdf);
    const info: DeviceInfo = {
      bdf,
      id: `${hex4(f.vendor)}:${hex4(f.device)}`,
      class: hex(f.class, 6),
      className: className(hex(f.class, 6)),
      ...(row?.name ? { name: row.name } : {}),
      driver: sys.link(dev(bdf, "driver")),
      driverOverride: nullable(sys.text(dev(bdf, "driver_override"))),
      group: numOrNull(sys.link(dev(bdf, "iommu_group"))),
      unit: sys.link(dev(bdf, "iommu")),
      parent: p,
      bridge: isBridgeHeader(f),
      hostBridge: f.class >> 8 === 0x0600,
      ...(capsKnown && f.pcieType !== undefined
        ? { pcieType: PCIE_TYPE_NAMES[f.pcieType] ?? `PCIe type ${f.pcieType}` }
        : {}),
      ...(f.slotImplemented && f.physicalSlot ? { slot: f.physicalSlot } : {}),
      reset,
      capsKnown,
    };
    const sub = subsystemOf(sys, bdf);
    if (sub) info.subsystem = sub;
    return info;
  });
  const byBdf = new Map(devices.map((d) => [d.bdf, d]));

  // Groups.
  const kernelGroupOf = new Map<string, number>();
  for (const [bdf, o] of host.observed) if (o.group !== undefined) kernelGroupOf.set(bdf, o.group);
  const hasKernelGroups = kernelGroupOf.size > 0;
  const groups: GroupAnalysis[] = report.groups.map((g) => {
    const members = g.devices.map((d) => d.bdf);
    let kernelMembers: string[] | null = null;
    let matches: boolean | null = null;
    const differences = (report.comparison?.differences ?? [])
      .filter((d) => members.includes(d.bdf))
      .map((d) => d.text);
    if (hasKernelGroups) {
      const ids = new Set(members.map((m) => kernelGroupOf.get(m)).filter((x) => x !== undefined));
      kernelMembers = [...kernelGroupOf]
        .filter(([, id]) => ids.has(id))
        .map(([b]) => b)
        .sort(cmpBdf);
      matches = kernelMembers.join() === [...members].sort(cmpBdf).join();
    }
    const viability = members.map((m) => memberViability(byBdf.get(m) as DeviceInfo));
    const regions = parseRegions(sys.text(`/sys/kernel/iommu_groups/${g.id}/reserved_regions`));
    const claimable = !regions.some((r) => r.type === "direct");
    return {
      id: g.id,
      unit: g.unit,
      devices: members,
      reason: g.reason,
      reasons: g.reasons,
      kernel: kernelMembers,
      matchesKernel: matches,
      differences,
      viableNow: claimable && viability.every((v) => v.status !== "must-unbind"),
      viability,
      reservedRegions: regions,
      claimable,
    };
  });

  // IOMMU units.
  const unitNames = [...new Set(groups.map((g) => g.unit))].sort();
  const units: UnitInfo[] = unitNames.map((name) => unitInfo(sys, host, name, groups));
  const kinds = new Set(units.map((u) => u.kind));
  const iommuVendor =
    units.length === 0
      ? "none"
      : kinds.has("intel-vtd")
        ? "intel"
        : kinds.has("amd-vi")
          ? "amd"
          : "other";

  const warnings = [...report.warnings];
  if (devices.some((d) => !d.capsKnown) && !warnings.some((w) => w.includes("not readable")))
    warnings.push(ROOT_ONLY_NOTE);
  const resetSource = modelResets ? "sysfs" : "derived";
  const analysis: HostAnalysis = {
    host: report.host,
    source: report.source,
    cmdline: report.cmdline,
    iommuVendor,
    devices,
    groups,
    ungrouped: report.ungrouped.map((d) => d.bdf),
    units,
    interruptRemapping: interruptRemapping(units, report.cmdline),
    resetSource,
    ...(report.comparison ? { comparison: report.comparison } : {}),
    warnings,
  };
  return {
    host,
    kernel,
    groups: report,
    sysfs: sys,
    report: analysis,
    device: (bdf) => byBdf.get(bdf),
    group: (id) => groups.find((g) => g.id === id),
  };
}

/** An lspci function whose text shows no PM capability (the machine builder lays one out anyway). */
function noPmInText(host: Host & { kind?: string }, bdf: string): boolean {
  const spec = host.functions.get(bdf);
  return host.kind === "lspci" && !!spec && spec.config === undefined && spec.pm === undefined;
}

export const BDF = /^[0-9a-f]{4,5}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;

function isBelow(path: string, bridge: string): boolean {
  return path.split("/").slice(0, -1).includes(bridge);
}

export function cmpBdf(a: string, b: string): number {
  const k = (s: string) => s.padStart(13, "0");
  return k(a) < k(b) ? -1 : k(a) > k(b) ? 1 : 0;
}

function devfn(bdf: string): number {
  const m = /:([0-9a-f]{2})\.([0-7])$/.exec(bdf);
  return m ? parseInt(m[1] as string, 16) * 8 + Number(m[2]) : 0;
}

function hex4(n: number): string {
  return n.toString(16).padStart(4, "0");
}
function hex(n: number, w: number): string {
  return n.toString(16).padStart(w, "0");
}
function nullable(s: string | null): string | null {
  return s === null || s === "(null)" || s === "" ? null : s;
}
function numOrNull(s: string | null): number | null {
  return s !== null && /^\d+$/.test(s) ? Number(s) : null;
}

function subsystemOf(sys: SysfsAccess, bdf: string): string | undefined {
  const v = sys.text(`/sys/bus/pci/devices/${bdf}/subsystem_vendor`);
  const d = sys.text(`/sys/bus/pci/devices/${bdf}/subsystem_device`);
  if (!v || !d || (v === "0x0000" && d === "0x0000")) return undefined;
  return `${v.replace(/^0x/, "")}:${d.replace(/^0x/, "")}`;
}

/** The real kernel's reset_method per function, from a snapshot's files. */
async function snapshotResetMethods(path: string): Promise<Map<string, string[]> | null> {
  try {
    return resetMethodsOf(await readSnapshot(path));
  } catch {
    return null;
  }
}

function resetMethodsOf(fs: SnapshotFs): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const name of fs.list("sys/bus/pci/devices")) {
    const t = fs.text(`sys/bus/pci/devices/${name}/reset_method`);
    out.set(name, t ? t.split(/\s+/).filter(Boolean) : []);
  }
  return out;
}

export function memberViability(d: DeviceInfo): MemberViability {
  const stays = d.bridge || d.hostBridge;
  const drv = d.driver;
  const base = { bdf: d.bdf, driver: drv, role: (stays ? "stays" : "pass") as MemberRole };
  if (stays) {
    const what = d.bridge ? "bridge" : "host bridge";
    if (drv === null)
      return { ...base, status: "ok", text: `${what}, no driver: stays on the host` };
    if (DMA_MANAGED_DRIVERS.has(drv))
      return {
        ...base,
        status: "ok",
        text: `${what} bound to ${drv}, which manages DMA itself: stays on the host`,
      };
    return {
      ...base,
      status: "must-unbind",
      text: `${what} bound to ${drv}, a DMA-API driver: unbind it (vfio-pci cannot take a bridge)`,
    };
  }
  if (drv === null)
    return {
      ...base,
      status: "unbound",
      text: "no driver: does not block the group; bind it to vfio-pci to pass it",
    };
  if (VFIO_DRIVERS.has(drv)) return { ...base, status: "ready", text: `bound to ${drv}: ready` };
  if (DMA_MANAGED_DRIVERS.has(drv))
    return {
      ...base,
      status: "ok",
      text: `bound to ${drv}, which manages DMA itself: does not block the group; rebind to vfio-pci to pass it`,
    };
  return {
    ...base,
    status: "must-unbind",
    text: `bound to ${drv}: unbind it and bind vfio-pci (driver_override) — while ${drv} holds it the group is not viable`,
  };
}

function parseRegions(text: string | null): Region[] {
  if (!text) return [];
  return text
    .split("\n")
    .map((l) => l.trim().split(/\s+/))
    .filter((p) => p.length === 3)
    .map(([start, end, type]) => ({
      start: start as string,
      end: end as string,
      type: type as string,
    }));
}

function unitInfo(sys: SysfsAccess, host: Host, name: string, groups: GroupAnalysis[]): UnitInfo {
  const dir = `/sys/class/iommu/${name}`;
  const ecapText = sys.text(`${dir}/intel-iommu/ecap`);
  const kind: UnitInfo["kind"] =
    ecapText !== null || name.startsWith("dmar")
      ? "intel-vtd"
      : sys.text(`${dir}/amd-iommu/cap`) !== null || name.startsWith("ivhd")
        ? "amd-vi"
        : "other";
  const ids = groups.filter((g) => g.unit === name).map((g) => g.id);
  // Inputs without the unit's registers (lspci text) boot the model with ECAP 0: unknown.
  const captured = host.spec.iommu.find((u) => u.name === name)?.ecap !== undefined;
  if (kind === "intel-vtd") {
    if (ecapText === null || !captured) {
      return {
        name,
        kind,
        snoopControl: null,
        interruptRemapping: null,
        groups: ids,
        wbinvd: "unknown",
        text: "VT-d unit whose ECAP register the input does not hold: Snoop Control unknown",
      };
    }
    const ecap = BigInt("0x" + ecapText.replace(/^0x/i, ""));
    const sc = ((ecap >> 7n) & 1n) === 1n;
    const ir = ((ecap >> 3n) & 1n) === 1n;
    return {
      name,
      kind,
      ecap: "0x" + ecap.toString(16),
      snoopControl: sc,
      interruptRemapping: ir,
      groups: ids,
      wbinvd: sc ? "not-needed" : "emulated",
      text: sc
        ? "ECAP.SC (bit 7) set: the unit forces snooping, VFIO enforces cache coherency, KVM ignores guest WBINVD"
        : "ECAP.SC (bit 7) clear: the unit cannot force snooping, so DMA marked No-Snoop may bypass the CPU caches; KVM registers non-coherent DMA, emulates the guest's WBINVD and honours the guest's memory types (PAT)",
    };
  }
  if (kind === "amd-vi") {
    return {
      name,
      kind,
      snoopControl: true,
      interruptRemapping: true,
      groups: ids,
      wbinvd: "not-needed",
      text: "AMD-Vi: the page tables set Force Coherent on every mapping (enforced coherency is always available); KVM ignores guest WBINVD",
    };
  }
  return {
    name,
    kind,
    snoopControl: null,
    interruptRemapping: null,
    groups: ids,
    wbinvd: "unknown",
    text: "neither VT-d nor AMD-Vi: coherency enforcement depends on the driver (virtio-iommu cannot enforce it)",
  };
}

function interruptRemapping(
  units: UnitInfo[],
  cmdline: string,
): HostAnalysis["interruptRemapping"] {
  if (units.length === 0) return { enabled: null, text: "no IOMMU unit: no interrupt remapping" };
  if (/(^|\s)intremap=off(\s|$)/.test(cmdline))
    return {
      enabled: false,
      text: "intremap=off on the command line: interrupt remapping is disabled; VFIO refuses devices unless vfio_iommu_type1.allow_unsafe_interrupts=1 (unsafe: a guest can inject interrupts)",
    };
  if (units.every((u) => u.kind === "amd-vi"))
    return {
      enabled: true,
      text: "AMD-Vi remaps interrupts: MSIs from a passed-through device cannot be forged to hit arbitrary vectors",
    };
  if (units.some((u) => u.interruptRemapping === null))
    return { enabled: null, text: "unknown: the input does not hold every VT-d unit's ECAP" };
  const missing = units.filter((u) => u.kind === "intel-vtd" && !u.interruptRemapping);
  if (missing.length)
    return {
      enabled: false,
      text: `${missing.map((u) => u.name).join(", ")} lack ECAP.IR (bit 3): Linux enables interrupt remapping only if every unit has it, so it is off; VFIO type1 then refuses devices unless vfio_iommu_type1.allow_unsafe_interrupts=1 (unsafe)`,
    };
  return {
    enabled: true,
    text: "every VT-d unit has ECAP.IR (bit 3): interrupt remapping is on; VFIO accepts devices without allow_unsafe_interrupts",
  };
}

export function memberEdges(a: Analysis, bdf: string): GroupEdge | undefined {
  return a.kernel.debug.trace(bdf)?.decided;
}

export { short };
