/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/**
 * The topology view: the laid-out PCI tree (./../svg.ts, interactive), zoom, and a details
 * panel — an overview of the host (IOMMU units, coherency, groups) until a device is
 * chosen, then that device's explanation chain (as `groups --explain`) and pass-through
 * plan (as `passthru plan`). Devices are one roving tab stop: arrow keys move between them
 * (up/down in address order, left to the bridge above, right to the first function below),
 * Enter or Space opens one, Escape returns to the overview.
 */
import type { DeviceTrace } from "../../kernel/kernel.js";
import type { HostView } from "../session.js";
import { deviceDetails, type DeviceDetails } from "../session.js";
import { colourOf, renderSvg } from "../svg.js";
import { byId, fill, h, shortBdf } from "./dom.js";

const ZOOMS = [0.4, 0.5, 0.6, 0.75, 0.9, 1, 1.25, 1.5];

export class TopologyView {
  private view: HostView | null = null;
  private zoom = 1;
  private readonly graph = byId("graph");
  private readonly details = byId("details");
  private readonly announce = byId("announce");

  constructor() {
    byId("zoom-in").addEventListener("click", () => this.setZoom(this.step(+1)));
    byId("zoom-out").addEventListener("click", () => this.setZoom(this.step(-1)));
    byId("zoom-fit").addEventListener("click", () => this.fit());
    this.graph.addEventListener("click", (e) => {
      const node = (e.target as Element).closest<SVGGElement>("[data-bdf]");
      if (node) this.select(node.dataset.bdf as string, true);
    });
    this.graph.addEventListener("keydown", (e) => this.onKey(e));
  }

  /** The zoom a new picture starts at: smaller on a phone. */
  private initialZoom(): number {
    return this.graph.clientWidth < 600 ? 0.85 : 1;
  }

  /** How wide to pack a new picture so that it fits the pane at its initial zoom. */
  packWidth(): number {
    return Math.max(300, (this.graph.clientWidth - 4) / this.initialZoom());
  }

  show(view: HostView): void {
    this.view = view;
    this.graph.innerHTML = renderSvg(view.laid, { interactive: true });
    const nodes = this.nodes();
    nodes.forEach((n, i) => n.setAttribute("tabindex", i === 0 ? "0" : "-1"));
    this.zoom = this.initialZoom();
    this.setZoom(this.zoom);
    this.overview();
  }

  private nodes(): SVGGElement[] {
    return [...this.graph.querySelectorAll<SVGGElement>("g[data-bdf]")];
  }

  private node(bdf: string): SVGGElement | null {
    return this.graph.querySelector<SVGGElement>(`g[data-bdf="${CSS.escape(bdf)}"]`);
  }

  private step(dir: number): number {
    const i = ZOOMS.findIndex((z) => z >= this.zoom - 1e-6);
    const at = i < 0 ? ZOOMS.length - 1 : i;
    return ZOOMS[Math.min(ZOOMS.length - 1, Math.max(0, at + dir))] as number;
  }

  private setZoom(z: number): void {
    this.zoom = z;
    const svg = this.graph.querySelector("svg");
    if (!svg || !this.view) return;
    svg.setAttribute("width", String(Math.round(this.view.laid.width * z)));
    svg.setAttribute("height", String(Math.round(this.view.laid.height * z)));
    byId("zoom-level").textContent = `${Math.round(z * 100)}%`;
  }

  private fit(): void {
    if (!this.view) return;
    this.setZoom(Math.min(1.5, (this.graph.clientWidth - 4) / this.view.laid.width));
  }

  /** Move the roving tab stop to a device and focus it. */
  private focusNode(bdf: string): void {
    const n = this.node(bdf);
    if (!n) return;
    for (const o of this.nodes()) o.setAttribute("tabindex", o === n ? "0" : "-1");
    n.focus();
    n.scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  private onKey(e: KeyboardEvent): void {
    const node = (e.target as Element).closest<SVGGElement>("[data-bdf]");
    if (!node || !this.view) return;
    const bdf = node.dataset.bdf as string;
    const devices = this.view.topology.devices;
    const i = devices.findIndex((d) => d.bdf === bdf);
    const d = devices[i];
    let to: string | undefined;
    switch (e.key) {
      case "ArrowDown":
        to = devices[Math.min(devices.length - 1, i + 1)]?.bdf;
        break;
      case "ArrowUp":
        to = devices[Math.max(0, i - 1)]?.bdf;
        break;
      case "ArrowLeft":
        to = devices.find((x) => x.bdf === d?.parent)?.bdf;
        break;
      case "ArrowRight":
        to = devices.find((x) => x.parent === bdf)?.bdf;
        break;
      case "Home":
        to = devices[0]?.bdf;
        break;
      case "End":
        to = devices[devices.length - 1]?.bdf;
        break;
      case "Enter":
      case " ":
        this.select(bdf, false);
        break;
      case "Escape":
        this.overview();
        break;
      default:
        return;
    }
    e.preventDefault();
    if (to) this.focusNode(to);
  }

  /** Open a device's details; `fromPointer` keeps focus where the click put it. */
  select(bdf: string, fromPointer: boolean): void {
    if (!this.view) return;
    const details = deviceDetails(this.view.analysis, bdf);
    if (!details) return;
    for (const n of this.nodes()) n.classList.toggle("pt-selected", n.dataset.bdf === bdf);
    if (!fromPointer) this.focusNode(bdf);
    else
      for (const o of this.nodes()) o.setAttribute("tabindex", o.dataset.bdf === bdf ? "0" : "-1");
    this.renderDetails(details);
    this.announce.textContent = `${shortBdf(bdf)} selected: ${details.group ? `IOMMU group ${details.group.id}` : "no IOMMU group"}`;
  }

  overview(): void {
    const v = this.view;
    if (!v) return;
    for (const n of this.nodes()) n.classList.remove("pt-selected");
    const r = v.analysis.report;
    const n = r.devices.length;
    fill(
      this.details,
      h("h2", {}, `${r.host}`),
      h(
        "p",
        { class: "muted" },
        `${r.groups.length} IOMMU groups, ${n} PCI functions · ${r.source}`,
      ),
      r.cmdline ? h("p", { class: "muted mono" }, `kernel command line: ${r.cmdline}`) : null,
      h(
        "p",
        { class: "hint" },
        "Choose a device in the picture (click, or Tab to it and use the arrow keys, then Enter) for the chain of facts behind its group and its pass-through plan.",
      ),
      r.warnings.length
        ? h("ul", { class: "warnings" }, ...r.warnings.map((w) => h("li", {}, w)))
        : null,
      h("h3", {}, "IOMMU units and coherency"),
      r.units.length
        ? h(
            "ul",
            {},
            ...r.units.map((u) =>
              h(
                "li",
                {},
                h("strong", {}, u.name),
                ` (${u.kind}): guest WBINVD ${u.wbinvd === "emulated" ? "emulated by KVM" : u.wbinvd === "not-needed" ? "ignored (coherent DMA)" : "unknown"} — ${u.text}`,
              ),
            ),
          )
        : h("p", {}, "No IOMMU unit: no device can be passed through with VFIO."),
      h("p", {}, r.interruptRemapping.text),
      h("h3", {}, "Groups"),
      h(
        "ol",
        { class: "group-list" },
        ...r.groups.map((g, i) =>
          h(
            "li",
            { style: `--c:${colourOf(v.topology.groups[i]?.colour ?? i)}` },
            h("span", { class: "swatch", "aria-hidden": "true" }),
            h("strong", {}, `group ${g.id}`),
            ` · ${g.unit} · ${g.viableNow ? "viable now" : "not viable until drivers are unbound"}`,
            h("div", { class: "reason" }, g.reason),
            h(
              "div",
              { class: "members" },
              ...g.devices.map((b) =>
                h(
                  "button",
                  { class: "chip", type: "button", onclick: () => this.select(b, false) },
                  shortBdf(b),
                ),
              ),
            ),
          ),
        ),
      ),
      r.ungrouped.length
        ? h("p", { class: "muted" }, `Not in any group: ${r.ungrouped.map(shortBdf).join(", ")}`)
        : null,
    );
  }

  private renderDetails(d: DeviceDetails): void {
    const i = d.info;
    const e = d.explanation;
    const devBtn = (b: string) =>
      h(
        "button",
        { class: "chip", type: "button", onclick: () => this.select(b, false) },
        shortBdf(b),
      );
    const steps = (t: DeviceTrace) =>
      t.steps.length
        ? h(
            "ol",
            { class: "steps" },
            ...t.steps.map((s) =>
              h(
                "li",
                {},
                h("code", {}, s.code),
                " ",
                s.text,
                s.verdicts?.length
                  ? h(
                      "ul",
                      { class: "verdicts" },
                      ...s.verdicts.map((v) =>
                        h(
                          "li",
                          { class: v.enabled ? "ok" : "bad" },
                          `${shortBdf(v.dev)}: ${v.enabled ? "isolates" : "does not isolate"}: ${v.text}${v.unknown ? " (unknown: capabilities not captured)" : ""}`,
                        ),
                      ),
                    )
                  : null,
              ),
            ),
          )
        : h(
            "p",
            { class: "muted" },
            "No alias, no bridge above failing ACS, no non-isolated sibling.",
          );
    const how = (t: DeviceTrace) => (t.founded ? "founded the group" : "joined it");
    const p = d.plan;
    fill(
      this.details,
      h(
        "p",
        {},
        h(
          "button",
          { type: "button", class: "link", onclick: () => this.overview() },
          "← All groups",
        ),
      ),
      h("h2", {}, `${shortBdf(i.bdf)} ${i.className}`),
      i.name ? h("p", { class: "name" }, i.name) : null,
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "id"),
        h("dd", {}, `${i.id}${i.subsystem ? ` (subsystem ${i.subsystem})` : ""}`),
        h("dt", {}, "driver"),
        h("dd", {}, i.driver ?? "none"),
        i.pcieType ? [h("dt", {}, "PCIe"), h("dd", {}, i.pcieType)] : null,
        h("dt", {}, "reset"),
        h(
          "dd",
          {},
          i.reset.methods === null
            ? "unknown (capabilities not captured)"
            : i.reset.methods.length
              ? i.reset.methods.join(", ")
              : "none",
          i.reset.busScope?.alsoResets.length
            ? h(
                "div",
                { class: "muted" },
                `a bus reset through ${shortBdf(i.reset.busScope.bridge)} also resets ${i.reset.busScope.alsoResets.map(shortBdf).join(", ")}`,
              )
            : null,
        ),
        h("dt", {}, "group"),
        h(
          "dd",
          {},
          i.group === null ? "none" : `${i.group} (${i.unit ?? "?"})`,
          d.group ? h("div", { class: "muted" }, d.group.reason) : null,
        ),
      ),
      e
        ? h(
            "section",
            {},
            h("h3", {}, "How Linux decided (pci_device_group)"),
            steps(e),
            h(
              "p",
              {},
              h("strong", {}, "Decided: "),
              `${shortBdf(e.dev)} ${how(e)}: `,
              h("code", {}, e.decided.code),
              ` ${e.decided.text}`,
            ),
            e.chain.length
              ? h(
                  "ol",
                  { class: "chain" },
                  ...e.chain.map((c) =>
                    h(
                      "li",
                      {},
                      devBtn(c.dev),
                      ` ${how(c)}: `,
                      h("code", {}, c.decided.code),
                      ` ${c.decided.text}`,
                    ),
                  ),
                )
              : null,
          )
        : null,
      p
        ? h(
            "section",
            { class: "plan" },
            h("h3", {}, "Pass-through plan"),
            p.pass.length
              ? h("p", {}, h("strong", {}, "Pass through: "), p.pass.map(shortBdf).join(", "))
              : null,
            ...p.stay.map((s) =>
              h(
                "p",
                {},
                h("strong", {}, "Stays on the host: "),
                `${shortBdf(s.bdf)} — ${s.action}`,
              ),
            ),
            ...p.problems.map((x) => h("p", { class: "problem" }, `Problem: ${x}`)),
            ...p.notes.map((x) => h("p", { class: "note" }, `Note: ${x}`)),
            p.pass.length
              ? [
                  h("h4", {}, "1. Kernel command line"),
                  p.cmdline.add.length ? h("pre", {}, p.cmdline.add.join(" ")) : null,
                  ...p.cmdline.text.map((t) => h("p", { class: "muted" }, t)),
                  h("h4", {}, "2. Load the driver"),
                  h("pre", {}, `modprobe ${p.modules.join(" ")}`),
                  h("h4", {}, "3. Bind (as root)"),
                  h("pre", {}, p.binding.flatMap((b) => [`# ${b.bdf}`, ...b.steps]).join("\n")),
                  h("h4", {}, "4. QEMU"),
                  h(
                    "pre",
                    {},
                    [
                      "qemu-system-x86_64 -machine q35,accel=kvm -m 8G \\",
                      ...pairs(p.qemu).map(([a, b]) => `  ${a} ${b} \\`),
                      "  ...",
                    ].join("\n"),
                  ),
                  h("h4", {}, "5. libvirt"),
                  h("pre", {}, p.libvirt),
                ]
              : null,
          )
        : d.planError
          ? h("p", { class: "problem" }, d.planError)
          : null,
      d.group
        ? h(
            "section",
            {},
            h("h3", {}, `Members of group ${d.group.id}`),
            h(
              "ul",
              { class: "viability" },
              ...d.group.viability.map((m) =>
                h("li", { class: m.status }, devBtn(m.bdf), " ", m.text),
              ),
            ),
          )
        : null,
    );
    this.details.scrollTop = 0;
  }
}

function pairs(xs: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < xs.length; i += 2) out.push([xs[i] as string, xs[i + 1] ?? ""]);
  return out;
}
