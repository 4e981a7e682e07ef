/**
 * "Which slot should I move the card to?" For every PCIe root port and switch downstream
 * port: would a card below it get an IOMMU group of its own (only its functions, plus
 * bridges that stay on the host)? Occupied ports are judged by the groups of what sits
 * below them; empty ports by a what-if — the host with a plain single-function PCIe
 * endpoint plugged below each empty port, booted on the same kernel model, so ACS, quirks
 * and everything above the port decide exactly as the kernel would.
 */
import { buildHost, type Host } from "../../host/build.js";
import type { FunctionSpec } from "../../host/spec.js";
import type { Analysis, DeviceInfo } from "./analyze.js";
import { analyzeGroups } from "./groups.js";
import { parseConfig } from "./config.js";
import { short } from "./reset.js";

export interface PortVerdict {
  port: string;
  kind: string;
  /** Physical slot number when the port implements a slot. */
  slot?: number;
  occupiedBy: string[];
  /** A card here gets a group of its own. null when capabilities are unknown. */
  isolated: boolean | null;
  /** Devices (not bridges) outside the port that a card here would share its group with. */
  sharesWith: string[];
  reason: string;
}

/** Vendor/device of the what-if card: QEMU's test vendor, matched by no kernel quirk. */
const PROBE_ID = { vendor: 0x1234, device: 0x11e9 };

export function slotVerdicts(a: Analysis): PortVerdict[] {
  const ports = a.report.devices.filter(
    (d) => d.pcieType === "root port" || d.pcieType === "switch downstream port",
  );
  if (ports.length === 0) return [];
  const below = (p: string) => a.report.devices.filter((d) => ancestors(a, d).includes(p));
  const stays = (d: DeviceInfo | undefined) => !!d && (d.bridge || d.hostBridge);

  // What-if: a card below every empty port.
  const empty = ports.filter((p) => below(p.bdf).length === 0);
  const probes = new Map<string, string>(); // port → probe BDF
  let probeGroups: Map<string, string[]> | null = null;
  let probeReasons = new Map<string, string>();
  if (empty.length) {
    const spec = structuredClone(a.host.spec);
    const taken = new Set(a.report.devices.map((d) => d.bdf));
    for (const p of empty) {
      const cfg = parseConfig(
        a.sysfs.bytes(`/sys/bus/pci/devices/${p.bdf}/config`) ?? new Uint8Array(),
      );
      const sec = cfg.secondaryBus;
      if (!sec) continue;
      const bdf = `${p.bdf.slice(0, p.bdf.indexOf(":"))}:${sec.toString(16).padStart(2, "0")}:00.0`;
      if (taken.has(bdf)) continue;
      taken.add(bdf);
      probes.set(p.bdf, bdf);
      const f: FunctionSpec = { addr: bdf, id: PROBE_ID, class: 0x030000, pcie: "endpoint" };
      spec.functions.push(f);
    }
    if (probes.size) {
      const whatIf: Host = buildHost(spec, a.host.source);
      const { report } = analyzeGroups(whatIf);
      probeGroups = new Map();
      probeReasons = new Map();
      for (const g of report.groups)
        for (const d of g.devices) {
          probeGroups.set(
            d.bdf,
            g.devices.map((x) => x.bdf),
          );
          probeReasons.set(d.bdf, g.reason);
        }
    }
  }

  return ports.map((p) => {
    const sub = below(p.bdf);
    const base = {
      port: p.bdf,
      kind: p.pcieType as string,
      ...(p.slot ? { slot: p.slot } : {}),
      occupiedBy: sub.map((d) => d.bdf),
    };
    if (!p.capsKnown)
      return { ...base, isolated: null, sharesWith: [], reason: "capabilities unknown" };
    let members: string[];
    let reason: string;
    if (sub.length) {
      const gids = new Set(sub.map((d) => d.group));
      const gs = a.report.groups.filter((g) => gids.has(g.id));
      members = gs.flatMap((g) => g.devices);
      reason = gs.map((g) => `group ${g.id}: ${g.reason}`).join("; ");
    } else {
      const probe = probes.get(p.bdf);
      members = probe ? (probeGroups?.get(probe) ?? []) : [];
      reason = probe ? (probeReasons.get(probe) ?? "") : "no secondary bus assigned";
      if (!probe) return { ...base, isolated: null, sharesWith: [], reason };
      members = members.filter((m) => m !== probe);
    }
    const inside = new Set([p.bdf, ...sub.map((d) => d.bdf)]);
    const sharesWith = members.filter(
      (m) => !inside.has(m) && !stays(a.device(m)) && ![...probes.values()].includes(m),
    );
    // Another empty port's what-if card in the same group also means sharing.
    const otherProbes = members.filter((m) => [...probes.values()].includes(m));
    const shares = [
      ...sharesWith,
      ...otherProbes.map((m) => `a card below ${short(portOfProbe(probes, m))}`),
    ];
    return {
      ...base,
      isolated: shares.length === 0,
      sharesWith: shares,
      reason: reason.replace(/0000:/g, ""),
    };
  });
}

function portOfProbe(probes: Map<string, string>, probe: string): string {
  for (const [port, b] of probes) if (b === probe) return port;
  return probe;
}

/** The bridges above a device, nearest first. */
export function ancestors(a: Analysis, d: DeviceInfo): string[] {
  const out: string[] = [];
  for (let p = d.parent; p; p = a.device(p)?.parent ?? null) {
    if (out.includes(p)) break;
    out.push(p);
  }
  return out;
}
