/**
 * The questions people ask before passing a device through (research §4, from issue
 * threads), answered from one host analysis: which devices must go with my GPU and why; is
 * the group viable and what must be unbound; can it be reset; should I use the ACS
 * override; which slot should I move the card to; how to bind one of two identical
 * devices; will the guest need WBINVD emulation. Each answer is data (lines plus the facts
 * behind them); the CLI renders it as text, JSON or Markdown.
 */
import type { Analysis, DeviceInfo } from "./analyze.js";
import { analyzeGroups } from "./groups.js";
import { short } from "./reset.js";
import { slotVerdicts, type PortVerdict } from "./slots.js";

export type QuestionKey =
  "companions" | "viability" | "reset" | "acs-override" | "slot" | "identical" | "wbinvd";

export interface Answer {
  key: QuestionKey;
  question: string;
  /** One-line verdict. */
  verdict: string;
  lines: string[];
  data: Record<string, unknown>;
}

export const ACS_OVERRIDE_WARNING =
  "pcie_acs_override only changes what the kernel believes. The hardware still routes peer-to-peer " +
  "requests inside the switch, root port or multifunction device without the IOMMU seeing them: a guest " +
  "owning one of the split devices can read or corrupt the memory of the others. The isolation is fake.";

/** The devices questions are about: the ones asked for, else every display controller. */
export function pickTargets(a: Analysis, selectors: string[]): DeviceInfo[] {
  if (selectors.length) return selectors.flatMap((s) => resolveSelector(a, s));
  return a.report.devices.filter((d) => d.class.startsWith("03"));
}

export class SelectorError extends Error {}

/** A BDF (full or bus:dev.fn) or vendor:device. */
export function resolveSelector(a: Analysis, sel: string): DeviceInfo[] {
  const s = sel.toLowerCase();
  if (/^[0-9a-f]{4}:[0-9a-f]{4}$/.test(s)) {
    const found = a.report.devices.filter((d) => d.id === s);
    if (!found.length)
      throw new SelectorError(`no device with vendor:device ${s} on ${a.report.host}`);
    return found;
  }
  const bdf = /^[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/.test(s) ? `0000:${s}` : s;
  if (!/^[0-9a-f]{4,5}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/.test(bdf))
    throw new SelectorError(
      `"${sel}" is neither a PCI address (0000:01:00.0 or 01:00.0) nor vendor:device (10de:1b80)`,
    );
  const d = a.device(bdf);
  if (!d) throw new SelectorError(`no PCI function ${bdf} on ${a.report.host}`);
  return [d];
}

function label(d: DeviceInfo): string {
  return `${short(d.bdf)} ${d.className}${d.name ? ` (${d.name})` : ""} [${d.id}]`;
}

/** Everything that must go with a device: the other members of its group. */
function companions(a: Analysis, t: DeviceInfo): Answer {
  const q = `Which devices must go with ${short(t.bdf)}, and why?`;
  const g = a.group(t.group);
  if (!g)
    return {
      key: "companions",
      question: q,
      verdict: `${short(t.bdf)} has no IOMMU group: it cannot be passed through with VFIO`,
      lines: [noGroupWhy(a)],
      data: { device: t.bdf, group: null, others: [] },
    };
  const others = g.devices.filter((b) => b !== t.bdf);
  const lines: string[] = [];
  if (others.length === 0) {
    lines.push(`Nothing: ${short(t.bdf)} is alone in group ${g.id} (${g.reason}).`);
  } else {
    lines.push(`Group ${g.id} holds ${g.devices.length} functions: ${g.reason}.`);
    for (const b of others) {
      const d = a.device(b) as DeviceInfo;
      const tr = a.kernel.debug.trace(b);
      const role = d.bridge || d.hostBridge ? " — stays on the host (a bridge)" : "";
      const why = !tr
        ? ""
        : tr.founded && g.devices.length > 1
          ? "the group formed at it; the others joined it"
          : tr.decided.text.replace(/0000:/g, "");
      lines.push(`${label(d)}${role}${why ? `: ${why}` : ""}`);
    }
  }
  if (g.matchesKernel === false)
    lines.push(
      `The kernel's own group differs: {${(g.kernel ?? []).map(short).join(", ")}}${g.differences.length ? ` (${g.differences.join("; ")})` : ""}.`,
    );
  const pass = others.filter((b) => {
    const d = a.device(b);
    return d && !d.bridge && !d.hostBridge;
  });
  return {
    key: "companions",
    question: q,
    verdict:
      others.length === 0
        ? `${short(t.bdf)} is alone in group ${g.id}`
        : `${others.length} other function${others.length === 1 ? "" : "s"} share${others.length === 1 ? "s" : ""} group ${g.id}; ${pass.length} of them ${pass.length === 1 ? "goes" : "go"} to the guest with it`,
    lines,
    data: {
      device: t.bdf,
      group: g.id,
      others,
      passWith: pass,
      staysOnHost: others.filter((b) => !pass.includes(b)),
      reason: g.reason,
      reasons: g.reasons,
      kernel: g.kernel,
    },
  };
}

function noGroupWhy(a: Analysis): string {
  return a.report.groups.length === 0
    ? "No IOMMU is enabled on this host (no group exists): turn it on in firmware and on the kernel command line."
    : "The device is outside every IOMMU unit's scope (DMAR/IVRS).";
}

function viability(a: Analysis, t: DeviceInfo): Answer {
  const q = `Is group ${t.group ?? "-"} viable, and what must be unbound?`;
  const g = a.group(t.group);
  if (!g)
    return {
      key: "viability",
      question: q,
      verdict: "no group",
      lines: [noGroupWhy(a)],
      data: { group: null },
    };
  const block = g.viability.filter((v) => v.status === "must-unbind");
  const lines = g.viability.map((v) => `${short(v.bdf)}: ${v.text}`);
  if (!g.claimable)
    lines.push(
      "The group has a `direct` reserved region (a firmware identity map, e.g. an RMRR that is not relaxable): VFIO cannot claim it at all.",
    );
  const verdict = !g.claimable
    ? "not viable: a direct-mapped reserved region pins the group to the host"
    : block.length === 0
      ? `viable now: no member is held by a driver that uses the kernel's DMA API`
      : `not viable yet: unbind ${block.map((v) => `${short(v.bdf)} (${v.driver})`).join(", ")}`;
  return {
    key: "viability",
    question: q,
    verdict,
    lines,
    data: { group: g.id, viableNow: g.viableNow, members: g.viability, claimable: g.claimable },
  };
}

function reset(a: Analysis, t: DeviceInfo): Answer {
  const g = a.group(t.group);
  const members = (g?.devices ?? [t.bdf])
    .map((b) => a.device(b) as DeviceInfo)
    .filter((d) => !d.bridge && !d.hostBridge);
  const q = `Can ${short(t.bdf)}${members.length > 1 ? " and its group" : ""} be reset?`;
  const lines: string[] = [];
  const per: Record<string, unknown>[] = [];
  for (const d of members) {
    const m = d.reset.methods;
    const src =
      d.reset.source === "sysfs" ? "reset_method" : d.reset.source === "derived" ? "derived" : "";
    if (m === null) lines.push(`${short(d.bdf)}: unknown (capabilities not captured)`);
    else if (m.length === 0)
      lines.push(
        `${short(d.bdf)}: no reset method (${src}) — only a VFIO hot reset of the whole bus/slot, when the guest owns every device on it`,
      );
    else lines.push(`${short(d.bdf)}: ${m.join(", ")} (${src})`);
    if (d.reset.observed && m !== null && d.reset.observed.join() !== m.join())
      lines.push(`  the real kernel listed: ${d.reset.observed.join(", ") || "nothing"}`);
    if (d.reset.source === "sysfs" && d.reset.derived && m && d.reset.derived.join() !== m.join())
      lines.push(`  the config-space rules give: ${d.reset.derived.join(", ") || "nothing"}`);
    const busFails = !!m?.includes("bus") && d.reset.sharesBusWith.length > 0;
    if (busFails)
      lines.push(
        `  "bus" is listed because the kernel probed it before ${d.reset.sharesBusWith.map(short).join(", ")} joined the bus; at reset time pci_parent_bus_reset() refuses a bus shared with them, so this method fails`,
      );
    if (d.reset.busScope && m?.includes("bus") && !busFails) {
      const also = d.reset.busScope.alsoResets;
      lines.push(
        `  bus reset = secondary bus reset of ${short(d.reset.busScope.bridge)}: ${also.length ? `also resets ${also.map(short).join(", ")}` : "nothing else is below that bridge"}`,
      );
    }
    per.push({
      device: d.bdf,
      methods: m,
      usable: usable(d),
      source: d.reset.source,
      busScope: d.reset.busScope,
    });
  }
  const hot = t.reset.busScope;
  if (hot)
    lines.push(
      `VFIO can also hot-reset the bus below ${short(hot.bridge)} (VFIO_DEVICE_PCI_HOT_RESET) when the same user has opened every device there: ${[t.bdf, ...hot.alsoResets].map(short).join(", ")}${hot.alsoResets.every((b) => g?.devices.includes(b)) ? " — all in this group" : ""}.`,
    );
  const none = members.filter((d) => d.reset.methods !== null && usable(d).length === 0);
  const unknown = members.filter((d) => d.reset.methods === null);
  const tm = t.reset.methods === null ? null : usable(t);
  const others = none.filter((d) => d !== t);
  const verdict =
    tm === null
      ? "unknown: capabilities not captured (capture as root)"
      : (tm.length === 0
          ? `${short(t.bdf)} has no working reset of its own${hot ? ` — only a hot reset of the bus below ${short(hot.bridge)}` : ""}`
          : `yes: ${short(t.bdf)} by ${tm[0]}`) +
        (others.length
          ? `; ${others.map((d) => short(d.bdf)).join(", ")} cannot be reset alone`
          : "");
  if (a.report.resetSource !== "sysfs")
    lines.push(
      "Reset methods are derived from config-space facts by the rules of drivers/pci/pci.c (FLR, AF FLR, PM No_Soft_Reset, bus-reset rules, quirks); an ACPI _RST method cannot be seen offline.",
    );
  return {
    key: "reset",
    question: q,
    verdict: unknown.length && tm !== null ? `${verdict} (some unknown)` : verdict,
    lines,
    data: { devices: per, source: a.report.resetSource },
  };
}

/** Listed methods that can work now ("bus" fails while the bus is shared). */
function usable(d: DeviceInfo): string[] {
  const m = d.reset.methods ?? [];
  return d.reset.sharesBusWith.length ? m.filter((x) => x !== "bus") : m;
}

function acsOverride(a: Analysis, t: DeviceInfo): Answer {
  const q = "Should I use the ACS override patch (pcie_acs_override)?";
  const g = a.group(t.group);
  const spec = "downstream,multifunction";
  const { report } = analyzeGroups(a.host, `pcie_acs_override=${spec}`);
  const after = report.groups.find((x) => x.devices.some((d) => d.bdf === t.bdf));
  const afterDevs = after?.devices.map((d) => d.bdf) ?? [];
  const split = (g?.devices ?? []).filter((b) => !afterDevs.includes(b));
  const lines: string[] = [];
  if (!g) lines.push("The device has no group; the override cannot help.");
  else if (split.length === 0)
    lines.push(
      `It would not change group ${g.id}: ${g.devices.length === 1 ? "the device is already alone" : "what forms it (conventional PCI, DMA aliases, an ACS capability with disabled controls) is beyond the patch"}.`,
    );
  else {
    lines.push(
      `With pcie_acs_override=${spec}, ${short(t.bdf)} would appear to be in {${afterDevs.map(short).join(", ")}}, split from ${split.map(short).join(", ")}.`,
    );
    lines.push(
      `That split is a belief, not hardware: ${g.reason.replace(/0000:/g, "")}. Those devices can still exchange peer-to-peer DMA that never reaches the IOMMU.`,
    );
  }
  lines.push(ACS_OVERRIDE_WARNING);
  lines.push(
    "Mainline Linux has no way to claim isolation the hardware lacks; the safe options are another slot (below), firmware that enables ACS, or passing the whole group.",
  );
  return {
    key: "acs-override",
    question: q,
    verdict: "No.",
    lines,
    data: { override: spec, before: g?.devices ?? [], after: afterDevs, fakeSplit: split },
  };
}

function slots(a: Analysis, t: DeviceInfo | null, verdicts: PortVerdict[]): Answer {
  const q = t
    ? `Which slot should I move ${short(t.bdf)} to?`
    : "Which slots give a card its own group?";
  const lines: string[] = [];
  if (verdicts.length === 0)
    return {
      key: "slot",
      question: q,
      verdict: a.report.devices.some((d) => !d.capsKnown)
        ? "unknown: PCIe port types need capabilities (capture as root)"
        : "no PCIe root or downstream ports on this host",
      lines,
      data: { ports: [] },
    };
  const name = (v: PortVerdict) =>
    `${short(v.port)} (${v.kind}${v.slot ? `, physical slot ${v.slot}` : ""})`;
  const good = verdicts.filter((v) => v.isolated === true);
  const bad = verdicts.filter((v) => v.isolated === false);
  // The nearest port above the target.
  const mine = t ? nearestPort(a, t, verdicts) : undefined;
  if (mine)
    lines.push(
      `${short((t as DeviceInfo).bdf)} sits below ${name(mine)}: ${mine.isolated ? "that port already gives it a group of its own" : `a card there shares its group with ${mine.sharesWith.map((s) => s.replace(/^0000:/, "")).join(", ")}`}.`,
    );
  if (good.length) {
    lines.push("Ports where a card gets a group of its own:");
    for (const v of good)
      lines.push(
        `  ${name(v)}: ${v.occupiedBy.length ? `occupied by ${v.occupiedBy.map(short).join(", ")}` : "empty"}`,
      );
  }
  if (bad.length) {
    lines.push("Ports where a card would share its group:");
    for (const v of bad)
      lines.push(
        `  ${name(v)}: with ${v.sharesWith.map((s) => s.replace(/^0000:/, "")).join(", ")} — ${v.reason}`,
      );
  }
  lines.push(
    "Which physical slot a port feeds is in the board manual, or in `/sys/bus/pci/slots/*/address` on the live host.",
  );
  const freeGood = good.filter((v) => v.occupiedBy.length === 0);
  // Members that are other functions of the target's own device move with it.
  const slotOf = (b: string) => b.slice(0, b.lastIndexOf("."));
  const own = t
    ? (a.group(t.group)?.devices ?? []).filter(
        (b) => b !== t.bdf && slotOf(b) === slotOf(t.bdf) && !a.device(b)?.bridge,
      )
    : [];
  if (mine?.isolated && own.length)
    lines.push(
      `The group is wide only because of ${short(slotOf((t as DeviceInfo).bdf))}'s own functions (${own.map(short).join(", ")}): they travel with the device wherever it sits.`,
    );
  const integrated = t !== null && !mine;
  if (integrated)
    lines.unshift(
      `${short((t as DeviceInfo).bdf)} is integrated (on a root bus, no PCIe port above it): it has no slot to move from.`,
    );
  const verdict = integrated
    ? `integrated device: it cannot move${freeGood.length ? `; a card would be alone below ${freeGood.map((v) => short(v.port)).join(" or ")}` : ""}`
    : mine?.isolated
      ? own.length
        ? "no move needed or possible: only the device's own functions (and bridges that stay) share its group"
        : "stay: the current port already gives it a group of its own"
      : freeGood.length
        ? `move it below ${freeGood.map((v) => short(v.port)).join(" or ")}`
        : good.length
          ? `ports that isolate are all occupied: ${good.map((v) => short(v.port)).join(", ")}`
          : "no port on this host gives a card a group of its own";
  return { key: "slot", question: q, verdict, lines, data: { ports: verdicts } };
}

function nearestPort(a: Analysis, t: DeviceInfo, v: PortVerdict[]): PortVerdict | undefined {
  for (let p = t.parent; p; p = a.device(p)?.parent ?? null) {
    const hit = v.find((x) => x.port === p);
    if (hit) return hit;
  }
  return undefined;
}

function identical(a: Analysis, t: DeviceInfo): Answer {
  const twins = a.report.devices.filter((d) => d.id === t.id && d.bdf !== t.bdf);
  // Twins in the same group go to the guest anyway; the ones elsewhere are what ids would steal.
  const outside = twins.filter((d) => d.group === null || d.group !== t.group);
  const inside = twins.filter((d) => !outside.includes(d));
  const q = `How do I bind ${short(t.bdf)} alone when another device has the same ID?`;
  const cmd = [
    `echo vfio-pci > /sys/bus/pci/devices/${t.bdf}/driver_override`,
    ...(t.driver ? [`echo ${t.bdf} > /sys/bus/pci/devices/${t.bdf}/driver/unbind`] : []),
    `echo ${t.bdf} > /sys/bus/pci/drivers_probe`,
  ];
  const lines: string[] = [];
  if (outside.length) {
    lines.push(
      `${outside.map((d) => short(d.bdf)).join(", ")} ${outside.length > 1 ? "have" : "has"} the same vendor:device ${t.id} outside group ${t.group ?? "-"}. vfio-pci.ids=${t.id} would claim ${outside.length > 1 ? "them" : "it"} too at boot, taking ${outside.length > 1 ? "them" : "it"} from the host.`,
    );
  } else
    lines.push(
      `${t.id} is unique outside group ${t.group ?? "-"} on this host, so vfio-pci.ids=${t.id} would take nothing else; binding by address is still the precise way.`,
    );
  if (inside.length)
    lines.push(
      `${inside.map((d) => short(d.bdf)).join(", ")} (same id) ${inside.length > 1 ? "are" : "is"} in the same group and goes to the guest anyway.`,
    );
  lines.push("Bind by address instead (driver_override names one function):");
  lines.push(...cmd.map((c) => `  ${c}`));
  lines.push(
    `To make it persistent: driverctl set-override ${t.bdf} vfio-pci (a udev rule per address).`,
  );
  return {
    key: "identical",
    question: q,
    verdict: outside.length
      ? `use driver_override on ${short(t.bdf)}, not vfio-pci.ids (${outside.length + 1} devices share ${t.id})`
      : `${t.id} is unique here; driver_override per address works either way`,
    lines,
    data: {
      device: t.bdf,
      id: t.id,
      sameId: twins.map((d) => d.bdf),
      sameIdElsewhere: outside.map((d) => d.bdf),
      commands: cmd,
    },
  };
}

function wbinvd(a: Analysis, t: DeviceInfo | null): Answer {
  const q = t
    ? `Will a guest given ${short(t.bdf)} need WBINVD emulation?`
    : "Will guests need WBINVD emulation?";
  const u = t ? a.report.units.find((x) => x.name === t.unit) : undefined;
  const lines: string[] = [];
  for (const unit of a.report.units)
    lines.push(`${unit.name}: ${unit.text}${unit.ecap ? ` (ECAP ${unit.ecap})` : ""}`);
  lines.push(
    "Cost when emulated: every guest WBINVD (write back and invalidate all caches) becomes a real flush of the caches of every CPU the vCPU ran on — milliseconds of stalls on a big cache, visible as latency spikes in guests whose drivers flush often (graphics drivers do) — and KVM stops forcing write-back memory for the guest, honouring its PAT/MTRR types instead.",
  );
  const verdict = !t
    ? a.report.units.some((x) => x.wbinvd === "emulated")
      ? `yes for devices behind ${a.report.units
          .filter((x) => x.wbinvd === "emulated")
          .map((x) => x.name)
          .join(", ")}`
      : a.report.units.some((x) => x.wbinvd === "unknown")
        ? "unknown for some units"
        : "no"
    : !u
      ? "unknown: the device has no IOMMU unit"
      : u.wbinvd === "emulated"
        ? `yes: ${u.name} lacks Snoop Control, so KVM emulates WBINVD`
        : u.wbinvd === "not-needed"
          ? `no: ${u.name} enforces cache coherency`
          : `unknown: ${u.name}'s ECAP is not in the input`;
  return {
    key: "wbinvd",
    question: q,
    verdict,
    lines,
    data: { unit: u?.name ?? null, wbinvd: u?.wbinvd ?? null, units: a.report.units },
  };
}

export interface Answers {
  targets: string[];
  perTarget: { device: string; answers: Answer[] }[];
  /** Host-wide answers when no target was found (slots, WBINVD). */
  host: Answer[];
}

export function answerQuestions(a: Analysis, targets: DeviceInfo[]): Answers {
  const verdicts = slotVerdicts(a);
  const perTarget = targets.map((t) => ({
    device: t.bdf,
    answers: [
      companions(a, t),
      viability(a, t),
      reset(a, t),
      acsOverride(a, t),
      slots(a, t, verdicts),
      identical(a, t),
      wbinvd(a, t),
    ],
  }));
  return {
    targets: targets.map((t) => t.bdf),
    perTarget,
    host: targets.length ? [] : [slots(a, null, verdicts), wbinvd(a, null)],
  };
}
