/**
 * The chain of facts behind one device's IOMMU group, as `passthru groups --explain` gives
 * it and the web explorer shows it: the kernel model's trace of pci_device_group() for the
 * device (every alias, bridge and sibling it examined, with ACS verdicts), then the devices
 * whose groups it joined, back to the one that founded the group.
 */
import type { DeviceTrace, Kernel } from "../../kernel/kernel.js";
import type { GroupsReport } from "./groups.js";

export interface Explanation extends DeviceTrace {
  device: string;
  /** Every member of the device's group. */
  groupDevices: string[];
  /** The devices whose group this one joined, each with its own decision, to the founder. */
  chain: DeviceTrace[];
}

export function explainDevice(
  kernel: Kernel,
  report: GroupsReport,
  bdf: string,
): Explanation | undefined {
  const trace = kernel.debug.trace(bdf);
  if (!trace) return undefined;
  const members = report.groups.find((g) => g.id === trace.group)?.devices.map((d) => d.bdf) ?? [];
  return { device: bdf, ...trace, groupDevices: members, chain: explainChain(kernel, trace) };
}

/** The devices whose groups a device joined, back to the one that founded the group. */
export function explainChain(kernel: Kernel, t: DeviceTrace): DeviceTrace[] {
  const out: DeviceTrace[] = [];
  const seen = new Set([t.dev]);
  for (let cur = t; !cur.founded && cur.decided.other && !seen.has(cur.decided.other);) {
    const next = kernel.debug.trace(cur.decided.other);
    if (!next || next.group !== t.group) break;
    seen.add(next.dev);
    out.push(next);
    cur = next;
  }
  return out;
}
