/**
 * Draws a laid-out topology as one self-contained SVG document (its own <style>), the
 * picture `passthru graph --svg` writes and the explorer shows. Interactive mode makes each
 * function a focusable button (tabindex, role, aria-label) that the page wires to its
 * explanation; the export is the same drawing without them.
 */
import type { Laid, LaidNode } from "./layout.js";
import { LINE_HEIGHT, NODE_PAD } from "./layout.js";

/** Group colours (Tableau 10): distinguishable, and dark enough for a 2px border on white. */
export const PALETTE = [
  "#4e79a7",
  "#f28e2b",
  "#59a14f",
  "#b07aa1",
  "#76b7b2",
  "#edc948",
  "#ff9da7",
  "#9c755f",
  "#e15759",
  "#bab0ac",
];

export function colourOf(i: number): string {
  return PALETTE[i % PALETTE.length] as string;
}

export function esc(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] as string,
  );
}

const STYLE = `
.pt-svg { font-family: "DejaVu Sans", system-ui, -apple-system, "Segoe UI", sans-serif; font-size: 12px; }
.pt-svg text { fill: #1d2330; }
.pt-group .pt-region { fill-opacity: 0.13; stroke-width: 2; }
.pt-group text { font-weight: 600; font-size: 12.5px; }
.pt-edge { fill: none; stroke: #7a8394; stroke-width: 1.2; }
.pt-node rect { fill: #ffffff; stroke: #5d6675; stroke-width: 1; }
.pt-node.pt-bridge rect, .pt-node.pt-host-bridge rect { fill: #f1f3f6; }
.pt-node.pt-root rect { fill: #e4e7ec; stroke: #8a93a3; stroke-dasharray: 4 3; }
.pt-node.pt-breaks rect { stroke: #c62828; stroke-width: 2.2; }
.pt-bdf { font-weight: 700; }
.pt-title { fill: #303848 !important; }
.pt-meta { fill: #4b5466 !important; font-size: 11.5px; }
.pt-acs-bad { fill: #b71c1c !important; font-weight: 700; font-size: 11.5px; }
.pt-acs-ok { fill: #1b6e20 !important; font-size: 11.5px; }
.pt-acs-unknown { fill: #8d5a00 !important; font-weight: 700; font-size: 11.5px; }
.pt-node[tabindex] { cursor: pointer; }
.pt-node[tabindex]:hover rect { stroke: #1a56db; }
.pt-node[tabindex]:focus { outline: none; }
.pt-node[tabindex]:focus rect, .pt-node.pt-selected rect { stroke: #1a56db; stroke-width: 3; }
.pt-node.pt-selected rect { fill: #e8f0fe; }
`;

function nodeSvg(n: LaidNode, interactive: boolean): string {
  const d = n.device;
  const cls = ["pt-node", `pt-${d ? d.kind : "root"}`];
  if (d?.acs?.breaks) cls.push("pt-breaks");
  const attrs = [`class="${cls.join(" ")}"`, `transform="translate(${n.x},${n.y})"`];
  if (d) attrs.push(`data-bdf="${esc(d.bdf)}"`);
  if (d && interactive) attrs.push(`tabindex="0"`, `role="button"`, `aria-label="${esc(n.label)}"`);
  const text = n.lines
    .map(
      (l, i) =>
        `<tspan x="${NODE_PAD}" y="${NODE_PAD + LINE_HEIGHT * (i + 1) - 4}" class="pt-${l.cls}">${esc(l.text)}</tspan>`,
    )
    .join("");
  return (
    `<g ${attrs.join(" ")}><title>${esc(n.label)}</title>` +
    `<rect width="${n.width}" height="${n.height}" rx="6"/><text>${text}</text></g>`
  );
}

export function renderSvg(laid: Laid, opts: { interactive?: boolean } = {}): string {
  const interactive = !!opts.interactive;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" class="pt-svg" viewBox="0 0 ${laid.width} ${laid.height}" ` +
      `width="${laid.width}" height="${laid.height}" role="${interactive ? "group" : "img"}" ` +
      `aria-label="PCI topology and IOMMU groups of ${esc(laid.host)}">`,
    `<title>PCI topology and IOMMU groups of ${esc(laid.host)}</title>`,
    `<style>${STYLE}</style>`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
  );
  for (const g of laid.groups) {
    const c = colourOf(g.colour);
    out.push(
      `<g class="pt-group" data-group="${g.id}"><title>${esc(`${g.label}: ${g.reason}`)}</title>` +
        `<rect x="${g.x}" y="${g.y}" width="${g.width}" height="${g.height}" rx="10" class="pt-region" fill="${c}" stroke="${c}"/>` +
        `<rect x="${g.x + 10}" y="${g.y + 9}" width="12" height="12" rx="2" fill="${c}"/>` +
        `<text x="${g.x + 28}" y="${g.y + 19.5}">${esc(g.label)}</text></g>`,
    );
  }
  for (const e of laid.edges) {
    if (e.points.length < 2) continue;
    const d = e.points.map(([x, y], i) => `${i ? "L" : "M"}${x} ${y}`).join(" ");
    out.push(`<path class="pt-edge" d="${d}"/>`);
  }
  for (const n of laid.nodes) out.push(nodeSvg(n, interactive));
  out.push("</svg>");
  return out.join("\n") + "\n";
}
