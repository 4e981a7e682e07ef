/**
 * Lays a topology out with ELK's layered algorithm (elkjs, the Eclipse Layout Kernel
 * compiled to JavaScript): the PCI tree flows left to right, and each IOMMU group is a
 * compound node around its members, so a group is a region even when its members hang from
 * different bridges. Edges that cross a group's border are routed by ELK itself
 * (hierarchyHandling INCLUDE_CHILDREN). Node sizes come from the text they hold, measured
 * by a fixed character width, so the same input gives the same picture in Node and in a
 * browser. The result is in absolute coordinates, ready for ./svg.ts.
 */
import ElkBundled from "elkjs/lib/elk.bundled.js";
import type { ELK as ElkApi, ElkExtendedEdge, ElkNode } from "elkjs/lib/elk-api.js";
import type { TopoDevice, Topology } from "./topology.js";

export const NODE_WIDTH = 250;
export const LINE_HEIGHT = 16;
export const NODE_PAD = 7;
/** Average advance of a 12px sans-serif character, for truncation. */
export const CHAR_WIDTH = 6.6;
const GROUP_LABEL = 24;

export interface TextLine {
  text: string;
  cls: "bdf" | "title" | "meta" | "acs-bad" | "acs-ok" | "acs-unknown";
}

export interface LaidNode {
  id: string;
  kind: "device" | "root";
  x: number;
  y: number;
  width: number;
  height: number;
  lines: TextLine[];
  device?: TopoDevice;
  /** Full description for a tooltip and a screen reader. */
  label: string;
}

export interface LaidGroup {
  id: number;
  x: number;
  y: number;
  width: number;
  height: number;
  colour: number;
  label: string;
  reason: string;
  viable: boolean;
}

export interface LaidEdge {
  from: string;
  to: string;
  points: [number, number][];
}

export interface Laid {
  host: string;
  width: number;
  height: number;
  nodes: LaidNode[];
  groups: LaidGroup[];
  edges: LaidEdge[];
}

export function truncate(s: string, width: number): string {
  const max = Math.floor(width / CHAR_WIDTH);
  return s.length <= max ? s : s.slice(0, Math.max(1, max - 1)) + "…";
}

export function acsLine(d: TopoDevice): TextLine | undefined {
  if (!d.acs) return undefined;
  const a = d.acs;
  if (a.isolates) return { text: "ACS ✓ isolates", cls: "acs-ok" };
  const cls = a.unknown ? "acs-unknown" : a.breaks ? "acs-bad" : "acs-unknown";
  return { text: `ACS ✗ ${a.summary}${a.unknown ? " (not captured)" : ""}`, cls };
}

export function deviceLines(d: TopoDevice): TextLine[] {
  const w = NODE_WIDTH - 2 * NODE_PAD;
  const reset =
    d.reset === null ? "reset ?" : d.reset.length ? `reset: ${d.reset.join(" ")}` : "no reset";
  const lines: TextLine[] = [
    { text: truncate(`${d.short}  ${d.className}`, w), cls: "bdf" },
    { text: truncate(d.title, w), cls: "title" },
    { text: truncate(`${d.driver ?? "no driver"} · ${reset}`, w), cls: "meta" },
  ];
  const acs = acsLine(d);
  if (acs) lines.push({ ...acs, text: truncate(acs.text, w) });
  return lines;
}

export function deviceLabel(d: TopoDevice): string {
  const parts = [
    `${d.bdf} ${d.vendorDevice} ${d.className}${d.name ? `: ${d.name}` : ""}`,
    d.group === null ? "no IOMMU group" : `IOMMU group ${d.group}`,
    d.driver ? `driver ${d.driver}` : "no driver",
    d.reset === null
      ? "reset methods unknown"
      : d.reset.length
        ? `reset ${d.reset.join(", ")}`
        : "no reset method",
  ];
  if (d.acs)
    parts.push(
      d.acs.isolates
        ? `ACS isolates (${d.acs.text})`
        : `ACS does not isolate: ${d.acs.text}${d.acs.missing.length ? ` (missing ${d.acs.missing.join(", ")})` : ""}`,
    );
  return parts.join("; ");
}

/** elk.bundled.js is CommonJS: Node's ESM import and esbuild both give module.exports. */
const ELK = ((ElkBundled as unknown as { default?: unknown }).default ??
  ElkBundled) as new () => ElkApi;

const heightOf = (lines: number) => lines * LINE_HEIGHT + 2 * NODE_PAD;

export async function layoutTopology(t: Topology, opts: { width?: number } = {}): Promise<Laid> {
  const elk = new ELK();
  const byId = new Map<string, LaidNode>();
  const node = (n: LaidNode): ElkNode => {
    byId.set(n.id, n);
    return { id: n.id, width: n.width, height: n.height };
  };
  const deviceNode = (d: TopoDevice) => {
    const lines = deviceLines(d);
    return node({
      id: d.bdf,
      kind: "device",
      x: 0,
      y: 0,
      width: NODE_WIDTH,
      height: heightOf(lines.length),
      lines,
      device: d,
      label: deviceLabel(d),
    });
  };
  // A domain's root bus is implied (functions without a bridge above sit on it); drawing it
  // as a node would tie every top-level group into one tall comb. VMD domains keep theirs,
  // hung from the VMD endpoint.
  const drawn = new Set(t.roots.filter((r) => r.parent).map((r) => r.id));
  const children: ElkNode[] = t.roots
    .filter((r) => drawn.has(r.id))
    .map((r) =>
      node({
        id: r.id,
        kind: "root",
        x: 0,
        y: 0,
        width: 150,
        height: heightOf(1),
        lines: [{ text: r.label, cls: "meta" }],
        label: r.label,
      }),
    );
  const inGroup = new Set(t.groups.flatMap((g) => g.members));
  const groupIds = new Map<string, LaidGroup>();
  // Groups and ungrouped functions in address order, so the picture follows the bus order.
  const devOrder = new Map(t.devices.map((d, i) => [d.bdf, i]));
  const items: { order: number; make: () => ElkNode }[] = [];
  const devIds = new Set(t.devices.map((d) => d.bdf));
  // Functions of a group with nothing drawn above them (on a root bus) hang from an invisible
  // anchor in address order: without an edge ELK would order them at random.
  const anchors: { from: string; to: string }[] = [];
  const anchored = new Set<string>();
  for (const g of t.groups) {
    const members = t.devices.filter((d) => g.members.includes(d.bdf));
    const loose = members.filter((d) => !devIds.has(d.parent) && !drawn.has(d.parent));
    const anchor = `anchor-${g.id}`;
    if (loose.length > 1) {
      anchored.add(`group-${g.id}`);
      for (const d of loose) anchors.push({ from: anchor, to: d.bdf });
    }
    items.push({
      order: Math.min(...members.map((m) => devOrder.get(m.bdf) ?? 0)),
      make: () => {
        const id = `group-${g.id}`;
        groupIds.set(id, {
          id: g.id,
          x: 0,
          y: 0,
          width: 0,
          height: 0,
          colour: g.colour,
          label: `group ${g.id} · ${g.unit}`,
          reason: g.reason,
          viable: g.viable,
        });
        return {
          id,
          layoutOptions: {
            "elk.padding": `[top=${GROUP_LABEL + 6},left=10,bottom=10,right=10]`,
          },
          children: [
            ...(loose.length > 1 ? [{ id: anchor, width: 1, height: 1 }] : []),
            ...members.map(deviceNode),
          ],
        };
      },
    });
  }
  for (const d of t.devices)
    if (!inGroup.has(d.bdf))
      items.push({ order: devOrder.get(d.bdf) ?? 0, make: () => deviceNode(d) });
  items.sort((a, b) => a.order - b.order);
  children.push(...items.map((i) => i.make()));
  // An edge between two members of one group belongs to that group's node.
  const groupOf = new Map(t.groups.flatMap((g) => g.members.map((m) => [m, `group-${g.id}`])));
  const compound = new Map(children.map((c) => [c.id, c]));
  const edges: ElkExtendedEdge[] = [];
  // Each child hangs from its own port on the parent's east side, ports in address order:
  // ELK then keeps siblings in address order (its model-order options do not apply across a
  // hierarchy, and its crossing minimisation is otherwise seeded randomly).
  const elkNodes = new Map<string, ElkNode>();
  const index = (n: ElkNode) => {
    elkNodes.set(n.id, n);
    n.children?.forEach(index);
  };
  children.forEach(index);
  const portCount = new Map<string, number>();
  const portOf = (parent: string): string => {
    const n = elkNodes.get(parent);
    if (!n) return parent;
    const i = portCount.get(parent) ?? 0;
    portCount.set(parent, i + 1);
    const id = `${parent}/p${i}`;
    n.layoutOptions = { ...n.layoutOptions, "elk.portConstraints": "FIXED_ORDER" };
    (n.ports ??= []).push({
      id,
      width: 1,
      height: 1,
      layoutOptions: { "elk.port.side": "EAST", "elk.port.index": String(i) },
    });
    return id;
  };
  [...t.edges, ...anchors].forEach((e, i) => {
    if (!elkNodes.has(e.from)) return;
    const edge = { id: `e${i}`, sources: [portOf(e.from)], targets: [e.to] };
    const g = groupOf.get(e.from);
    const owner = g && g === groupOf.get(e.to) ? compound.get(g) : undefined;
    if (owner) (owner.edges ??= []).push(edge);
    else edges.push(edge);
  });
  const graph: ElkNode = await elk.layout({
    id: "root",
    layoutOptions: {
      "elk.algorithm": "layered",
      "elk.direction": "RIGHT",
      "elk.hierarchyHandling": "INCLUDE_CHILDREN",
      "elk.edgeRouting": "ORTHOGONAL",
      "elk.spacing.nodeNode": "10",
      "elk.layered.spacing.nodeNodeBetweenLayers": "36",
      "elk.layered.spacing.edgeNodeBetweenLayers": "14",
      "elk.padding": "[top=12,left=12,bottom=12,right=12]",
      "elk.randomSeed": "1",
    },
    children,
    edges,
  });

  // ELK gives coordinates relative to the parent node; make them absolute.
  const offset = new Map<string, [number, number]>([["root", [0, 0]]]);
  const laidEdges: LaidEdge[] = [];
  const walk = (n: ElkNode, ox: number, oy: number) => {
    for (const c of n.children ?? []) {
      const x = ox + (c.x ?? 0);
      const y = oy + (c.y ?? 0);
      offset.set(c.id, [x, y]);
      const g = groupIds.get(c.id);
      if (g) Object.assign(g, { x, y, width: c.width ?? 0, height: c.height ?? 0 });
      const laid = byId.get(c.id);
      if (laid) Object.assign(laid, { x, y });
      walk(c, x, y);
    }
  };
  walk(graph, 0, 0);
  // An anchored group's region starts at its first real column.
  for (const [id, g] of groupIds) {
    if (!anchored.has(id)) continue;
    const members = t.groups.find((x) => x.id === g.id)?.members ?? [];
    const left = Math.min(...members.map((m) => byId.get(m)?.x ?? Infinity)) - 10;
    if (left > g.x && Number.isFinite(left))
      Object.assign(g, { x: left, width: g.width - (left - g.x) });
  }
  const collect = (n: ElkNode) => {
    for (const e of n.edges ?? []) {
      const [ox, oy] = offset.get((e as { container?: string }).container ?? n.id) ?? [0, 0];
      const points: [number, number][] = [];
      for (const s of e.sections ?? []) {
        points.push([ox + s.startPoint.x, oy + s.startPoint.y]);
        for (const b of s.bendPoints ?? []) points.push([ox + b.x, oy + b.y]);
        points.push([ox + s.endPoint.x, oy + s.endPoint.y]);
      }
      const from = (e.sources[0] as string).replace(/\/p\d+$/, "");
      if (!from.startsWith("anchor-")) laidEdges.push({ from, to: e.targets[0] as string, points });
    }
    for (const c of n.children ?? []) collect(c);
  };
  collect(graph);
  laidEdges.sort((a, b) => (a.to < b.to ? -1 : a.to > b.to ? 1 : 0));
  const laid: Laid = {
    host: t.host,
    width: Math.ceil(graph.width ?? 0),
    height: Math.ceil(graph.height ?? 0),
    nodes: [...byId.values()],
    groups: [...groupIds.values()].sort((a, b) => a.id - b.id),
    edges: laidEdges,
  };
  return packComponents(laid, t, opts.width ?? DEFAULT_WIDTH);
}

/** The width `passthru graph` packs to; the browser packs to its window. */
export const DEFAULT_WIDTH = 1400;
const MARGIN = 12;
const GAP = 24;

/**
 * ELK stacks the disconnected parts of a compound graph in one column, which makes a host
 * with many top-level groups a very tall strip. The parts (a group with what hangs below it,
 * or a lone function) are rigid, so move them instead: in address order, left to right,
 * in rows no wider than `width` (or the widest part).
 */
export function packComponents(laid: Laid, t: Topology, width: number): Laid {
  const parent = new Map<string, string>();
  const find = (x: string): string => {
    let r = x;
    while (parent.has(r) && parent.get(r) !== r) r = parent.get(r) as string;
    return r;
  };
  const union = (a: string, b: string) => {
    const ra = find(a);
    const rb = find(b);
    if (ra !== rb) parent.set(rb, ra);
  };
  for (const n of laid.nodes) parent.set(n.id, n.id);
  for (const e of laid.edges) union(e.from, e.to);
  for (const g of t.groups) for (const m of g.members.slice(1)) union(g.members[0] as string, m);
  const order = new Map(t.devices.map((d, i) => [d.bdf, i]));
  interface Part {
    key: number;
    x0: number;
    y0: number;
    x1: number;
    y1: number;
    dx: number;
    dy: number;
  }
  const parts = new Map<string, Part>();
  const grow = (id: string, x0: number, y0: number, x1: number, y1: number) => {
    const root = find(id);
    const p = parts.get(root) ?? { key: Infinity, x0, y0, x1, y1, dx: 0, dy: 0 };
    Object.assign(p, {
      key: Math.min(p.key, order.get(id) ?? Infinity),
      x0: Math.min(p.x0, x0),
      y0: Math.min(p.y0, y0),
      x1: Math.max(p.x1, x1),
      y1: Math.max(p.y1, y1),
    });
    parts.set(root, p);
  };
  for (const n of laid.nodes) grow(n.id, n.x, n.y, n.x + n.width, n.y + n.height);
  const groupPart = new Map<number, string>();
  for (const g of t.groups) {
    const lg = laid.groups.find((x) => x.id === g.id);
    if (!lg || !g.members[0]) continue;
    groupPart.set(g.id, g.members[0]);
    grow(g.members[0], lg.x, lg.y, lg.x + lg.width, lg.y + lg.height);
  }
  for (const e of laid.edges) for (const [x, y] of e.points) grow(e.to, x, y, x, y);
  const sorted = [...parts.values()].sort((a, b) => a.key - b.key);
  const limit = Math.max(width, ...sorted.map((p) => p.x1 - p.x0 + 2 * MARGIN));
  let x = MARGIN;
  let y = MARGIN;
  let row = 0;
  let right = 0;
  for (const p of sorted) {
    const w = p.x1 - p.x0;
    const h = p.y1 - p.y0;
    if (x > MARGIN && x + w + MARGIN > limit) {
      x = MARGIN;
      y += row + GAP;
      row = 0;
    }
    p.dx = x - p.x0;
    p.dy = y - p.y0;
    x += w + GAP;
    row = Math.max(row, h);
    right = Math.max(right, x - GAP);
  }
  const shift = (id: string) => parts.get(find(id)) as Part;
  const r = (v: number) => Math.round(v * 10) / 10;
  return {
    ...laid,
    width: Math.ceil(right + MARGIN),
    height: Math.ceil(y + row + MARGIN),
    nodes: laid.nodes.map((n) => {
      const p = shift(n.id);
      return { ...n, x: r(n.x + p.dx), y: r(n.y + p.dy) };
    }),
    groups: laid.groups.map((g) => {
      const id = groupPart.get(g.id);
      const p = id ? shift(id) : { dx: 0, dy: 0 };
      return { ...g, x: r(g.x + p.dx), y: r(g.y + p.dy), width: r(g.width), height: r(g.height) };
    }),
    edges: laid.edges.map((e) => {
      const p = shift(e.to);
      return {
        ...e,
        points: e.points.map(([px, py]): [number, number] => [r(px + p.dx), r(py + p.dy)]),
      };
    }),
  };
}
