/**
 * What the explorer computes for a host, without the DOM: the full analysis (the one behind
 * `passthru analyze`), the topology and its layout, and for one device the explanation
 * chain `groups --explain` prints and the pass-through plan `passthru plan` prints.
 */
import type { Host } from "../host/build.js";
import type { InputKind } from "../host/load.js";
import type { SnapshotFs } from "../host/snapshot.js";
import {
  analyzeHost,
  type Analysis,
  type DeviceInfo,
  type GroupAnalysis,
} from "../userspace/analyze/analyze.js";
import { explainDevice, type Explanation } from "../userspace/analyze/explain.js";
import { planPassthrough, type Plan } from "../userspace/analyze/plan.js";
import { layoutTopology, type Laid } from "./layout.js";
import { buildTopology, type Topology } from "./topology.js";

export interface HostView {
  analysis: Analysis;
  topology: Topology;
  laid: Laid;
}

/** `width`: how wide to pack the picture (default: `passthru graph`'s width). */
export async function analyzeForView(
  host: Host & { kind: InputKind },
  snapshot?: SnapshotFs,
  opts: { width?: number } = {},
): Promise<HostView> {
  const analysis = await analyzeHost(host, snapshot);
  const topology = buildTopology(analysis);
  const laid = await layoutTopology(topology, opts);
  return { analysis, topology, laid };
}

export interface DeviceDetails {
  info: DeviceInfo;
  group?: GroupAnalysis;
  explanation?: Explanation;
  plan?: Plan;
  /** Why there is no plan (the planner refused the selector). */
  planError?: string;
}

export function deviceDetails(a: Analysis, bdf: string): DeviceDetails | undefined {
  const info = a.device(bdf);
  if (!info) return undefined;
  const out: DeviceDetails = { info };
  const group = a.group(info.group);
  if (group) out.group = group;
  const explanation = explainDevice(a.kernel, a.groups, bdf);
  if (explanation) out.explanation = explanation;
  try {
    out.plan = planPassthrough(a, [bdf]);
  } catch (e) {
    out.planError = e instanceof Error ? e.message : String(e);
  }
  return out;
}
