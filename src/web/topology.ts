/**
 * The PCI topology of an analysed host as a graph to draw: one node per PCI function, one
 * per root bus (a host bridge's bus, or a VMD domain's, below its VMD endpoint), an edge
 * from each bridge to the functions on its secondary bus, and the IOMMU groups as regions
 * holding their members. Each function carries what the picture shows: its driver, its
 * reset methods, and — for bridges and multifunction devices the kernel examined — the ACS
 * verdict that kept or broke isolation, with the ACS control bits that were missing.
 * Pure data, no DOM: `passthru graph` and the browser lay out and draw the same thing.
 */
import type { AcsVerdict, GroupEdge } from "../kernel/kernel.js";
import type { Analysis } from "../userspace/analyze/analyze.js";
import { BDF } from "../userspace/analyze/analyze.js";

/** The flags drivers/iommu/iommu.c requires on a path (REQ_ACS_FLAGS), by lspci name. */
const REQUIRED_ACS = ["SrcValid", "ReqRedir", "CmpltRedir", "UpstreamFwd"];

/** lspci's ACS flag names → the PCI_ACS_* suffixes of include/uapi/linux/pci_regs.h. */
const ABBREV: Record<string, string> = {
  SrcValid: "SV",
  TransBlk: "TB",
  ReqRedir: "RR",
  CmpltRedir: "CR",
  UpstreamFwd: "UF",
  EgressCtrl: "EC",
  DirectTrans: "DT",
};

export interface AcsMark {
  isolates: boolean;
  /** Its lack of isolation put other functions into its group (an ACS path or sibling edge). */
  breaks: boolean;
  /** ACS control bits the kernel needed and found off (all four when there is no capability). */
  missing: string[];
  /** A few words for a label: "missing RR CR", "no cap: SV RR CR UF missing", "conventional PCI". */
  summary: string;
  /** The kernel's own words (pci_acs_enabled verdict). */
  text: string;
  /** The input lacked the capability bytes: the verdict is the model's assumption. */
  unknown: boolean;
}

export interface TopoDevice {
  bdf: string;
  /** BDF without the 0000: domain. */
  short: string;
  vendorDevice: string;
  className: string;
  name?: string;
  /** The device name without its vendor prefix, for a label. */
  title: string;
  driver: string | null;
  kind: "bridge" | "host-bridge" | "endpoint";
  pcieType?: string;
  reset: string[] | null;
  group: number | null;
  /** The node above: a bridge's BDF or a root bus id. */
  parent: string;
  acs?: AcsMark;
}

export interface TopoRoot {
  id: string;
  label: string;
  /** A VMD domain's root bus hangs below its VMD endpoint. */
  parent?: string;
}

export interface TopoGroup {
  id: number;
  unit: string;
  reason: string;
  members: string[];
  viable: boolean;
  /** Palette index. */
  colour: number;
}

export interface Topology {
  host: string;
  roots: TopoRoot[];
  devices: TopoDevice[];
  groups: TopoGroup[];
  edges: { from: string; to: string }[];
  warnings: string[];
}

export const short = (bdf: string): string => (bdf.startsWith("0000:") ? bdf.slice(5) : bdf);

/** "Advanced Micro Devices, Inc. [AMD/ATI] Cezanne [Radeon ...]" → "Cezanne [Radeon ...]". */
export function withoutVendor(name: string): string {
  const m =
    /^.*?(?:Inc\.|Corporation|Corp\.?|Co\., Ltd\.|Ltd\.|Limited|Technology|Semiconductor|Electronics)(?: \[[^\]]+\])? (?=\S)/.exec(
      name,
    );
  return m && m[0].length < name.length ? name.slice(m[0].length) : name;
}

function acsMark(v: AcsVerdict, breaks: boolean): AcsMark {
  const missing = v.enabled
    ? []
    : v.basis === "capability"
      ? (v.missing ?? [])
      : v.basis === "no-capability"
        ? REQUIRED_ACS
        : [];
  const summary = v.enabled
    ? "isolates"
    : v.basis === "capability"
      ? `missing ${missing.map((m) => ABBREV[m] ?? m).join(" ")}`
      : v.basis === "no-capability"
        ? "no cap: SV RR CR UF missing"
        : v.basis === "not-pcie"
          ? "conventional PCI"
          : v.basis === "acs-not-applicable"
            ? "ACS never applies here"
            : v.basis === "quirk"
              ? `quirk: not enforced`
              : v.text;
  return { isolates: v.enabled, breaks, missing, summary, text: v.text, unknown: !!v.unknown };
}

/** Edges whose failing ACS verdicts joined functions into a group. */
const JOINING = new Set(["ACS_PATH", "MF_SIBLINGS"]);

/**
 * Every ACS verdict the kernel reached while grouping, per function (a failing one wins),
 * and the functions whose failure joined others into their group.
 */
function acsVerdicts(
  a: Analysis,
  bdfs: string[],
): { verdicts: Map<string, AcsVerdict>; breaking: Set<string> } {
  const verdicts = new Map<string, AcsVerdict>();
  const breaking = new Set<string>();
  const note = (e: GroupEdge, joined: boolean) => {
    for (const v of e.verdicts ?? []) {
      const had = verdicts.get(v.dev);
      if (!had || (had.enabled && !v.enabled)) verdicts.set(v.dev, v);
      if (joined && !v.enabled && JOINING.has(e.code)) breaking.add(v.dev);
    }
  };
  const size = new Map(a.report.groups.map((g) => [g.id, g.devices.length]));
  for (const bdf of bdfs) {
    const t = a.kernel.debug.trace(bdf);
    for (const s of t?.steps ?? []) note(s, (size.get(t?.group ?? -1) ?? 0) > 1);
  }
  for (const g of a.report.groups) for (const e of g.reasons) note(e, g.devices.length > 1);
  return { verdicts, breaking };
}

/** The root bus a function on it hangs from, from its sysfs path (…/pciDDDD:BB/…). */
function rootOf(a: Analysis, bdf: string): TopoRoot {
  const path = a.sysfs.target(`/sys/bus/pci/devices/${bdf}`) ?? "";
  const parts = path.split("/");
  const at = parts.map((p) => /^pci[0-9a-f]{4,5}:[0-9a-f]{2}$/.test(p)).lastIndexOf(true);
  const bus = bdf.slice(0, bdf.lastIndexOf(":"));
  const id = at >= 0 ? (parts[at] as string) : `pci${bus}`;
  const above = at > 0 ? (parts[at - 1] as string) : "";
  const label = `root bus ${id.slice(3)}`;
  return BDF.test(above)
    ? { id, label: `VMD domain ${id.slice(3)}`, parent: above }
    : { id, label };
}

export function buildTopology(a: Analysis): Topology {
  const r = a.report;
  const { verdicts, breaking } = acsVerdicts(
    a,
    r.devices.map((d) => d.bdf),
  );
  const roots = new Map<string, TopoRoot>();
  const devices: TopoDevice[] = r.devices.map((d) => {
    let parent = d.parent;
    if (!parent) {
      const root = rootOf(a, d.bdf);
      roots.set(root.id, root);
      parent = root.id;
    }
    const v = verdicts.get(d.bdf);
    const kind = d.bridge ? "bridge" : d.hostBridge ? "host-bridge" : "endpoint";
    const t: TopoDevice = {
      bdf: d.bdf,
      short: short(d.bdf),
      vendorDevice: d.id,
      className: d.className,
      ...(d.name ? { name: d.name } : {}),
      title: d.name ? withoutVendor(d.name) : d.className,
      driver: d.driver,
      kind,
      ...(d.pcieType ? { pcieType: d.pcieType } : {}),
      reset: d.reset.methods,
      group: d.group,
      parent,
    };
    // Bridges always show their verdict; other functions only when they broke isolation.
    const breaks = breaking.has(d.bdf);
    if (v && (d.bridge || breaks)) t.acs = acsMark(v, breaks);
    return t;
  });
  const edges: Topology["edges"] = devices.map((d) => ({ from: d.parent, to: d.bdf }));
  for (const root of roots.values()) {
    if (root.parent) edges.push({ from: root.parent, to: root.id });
  }
  const groups: TopoGroup[] = r.groups.map((g, i) => ({
    id: g.id,
    unit: g.unit,
    reason: g.reason,
    members: g.devices,
    viable: g.viableNow,
    colour: i,
  }));
  return {
    host: r.host,
    roots: [...roots.values()].sort((x, y) => (x.id < y.id ? -1 : 1)),
    devices,
    groups,
    edges,
    warnings: r.warnings,
  };
}
