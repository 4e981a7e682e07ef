/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/**
 * The explorer's entry point in the browser. Inputs: a built-in host, a file picked or
 * dropped anywhere on the page (a snapshot .tar.gz, `lspci -vvnn` text, a host YAML/JSON),
 * or pasted text — all read and analysed here, by the same model the CLI runs; nothing is
 * sent anywhere. When `passthru serve INPUT` serves the page, it also offers INPUT at
 * api/input (fetched from the same origin only).
 */
import { InputError } from "../../host/errors.js";
import { loadBuiltin, loadBytes, loadText, type LoadedInput } from "../input.js";
import type { Assets } from "../scenario.js";
import { analyzeForView } from "../session.js";
import { byId, fill, h } from "./dom.js";
import { ScenarioView } from "./scenario-view.js";
import { TopologyView } from "./topology-view.js";

declare global {
  interface Window {
    PASSTHRU_ASSETS?: Assets;
    /** For tests: the last load's outcome. */
    passthruState?: { host: string | null; error: string | null; loads: number };
  }
}

const assets: Assets = window.PASSTHRU_ASSETS ?? { hosts: {}, files: {}, scenarios: [] };
const state = { host: null as string | null, error: null as string | null, loads: 0 };
window.passthruState = state;

const status = byId("status");
const topology = new TopologyView();
let scenarios: ScenarioView | null = null;

function message(e: unknown): string {
  if (e instanceof InputError) return e.message;
  return e instanceof Error ? e.message : String(e);
}

async function show(load: () => Promise<LoadedInput> | LoadedInput, what: string): Promise<void> {
  status.textContent = `Analysing ${what}…`;
  status.className = "busy";
  byId("error").textContent = "";
  // Let the status paint before the model runs.
  await new Promise((r) => setTimeout(r, 0));
  try {
    const input = await load();
    const view = await analyzeForView(input.host, input.snapshot, { width: topology.packWidth() });
    topology.show(view);
    const r = view.analysis.report;
    status.textContent = `${r.host}: ${r.groups.length} IOMMU groups, ${r.devices.length} PCI functions (${input.host.kind})`;
    status.className = "";
    state.host = r.host;
    state.error = null;
  } catch (e) {
    status.textContent = "";
    status.className = "";
    byId("error").textContent = `Could not analyse ${what}: ${message(e)}`;
    state.error = message(e);
  }
  state.loads++;
}

async function showFile(f: File): Promise<void> {
  const bytes = new Uint8Array(await f.arrayBuffer());
  await show(() => loadBytes(f.name, bytes), f.name);
}

function showBuiltin(name: string): Promise<void> {
  const yaml = assets.hosts[name];
  if (yaml === undefined) return Promise.resolve();
  return show(() => loadBuiltin(name, yaml), `the built-in host ${name}`);
}

// Inputs.
const hostSelect = byId<HTMLSelectElement>("host-select");
fill(
  hostSelect,
  h("option", { value: "" }, "(your input)"),
  ...Object.keys(assets.hosts)
    .sort()
    .map((n) => h("option", { value: n }, n)),
);
hostSelect.addEventListener("change", () => {
  if (hostSelect.value) void showBuiltin(hostSelect.value);
});
const fileInput = byId<HTMLInputElement>("file-input");
byId("open-file").addEventListener("click", () => fileInput.click());
fileInput.addEventListener("change", () => {
  const f = fileInput.files?.[0];
  if (f) {
    hostSelect.value = "";
    void showFile(f);
  }
  fileInput.value = "";
});
const pastePanel = byId("paste-panel");
const pasteToggle = byId("paste-toggle");
pasteToggle.addEventListener("click", () => {
  pastePanel.hidden = !pastePanel.hidden;
  pasteToggle.setAttribute("aria-expanded", String(!pastePanel.hidden));
  if (!pastePanel.hidden) byId("paste-text").focus();
});
byId("paste-go").addEventListener("click", () => {
  const text = byId<HTMLTextAreaElement>("paste-text").value;
  hostSelect.value = "";
  void show(() => loadText("pasted text", text), "the pasted text");
});

// Drop anywhere.
let depth = 0;
const dropping = (on: boolean) => document.body.classList.toggle("dropping", on);
document.addEventListener("dragenter", (e) => {
  e.preventDefault();
  depth++;
  dropping(true);
});
document.addEventListener("dragleave", () => {
  depth = Math.max(0, depth - 1);
  if (!depth) dropping(false);
});
document.addEventListener("dragover", (e) => e.preventDefault());
document.addEventListener("drop", (e) => {
  e.preventDefault();
  depth = 0;
  dropping(false);
  const f = e.dataTransfer?.files?.[0];
  if (f) {
    hostSelect.value = "";
    selectTab("topology");
    void showFile(f);
  }
});

// Tabs.
const tabs = ["topology", "scenario"] as const;
type Tab = (typeof tabs)[number];
function selectTab(t: Tab, focus = false): void {
  for (const x of tabs) {
    const tab = byId(`tab-${x}`);
    tab.setAttribute("aria-selected", String(x === t));
    tab.tabIndex = x === t ? 0 : -1;
    byId(`view-${x}`).hidden = x !== t;
    if (x === t && focus) tab.focus();
  }
  if (t === "scenario") {
    scenarios ??= new ScenarioView(assets);
    scenarios.ensure();
  } else scenarios?.pause();
}
for (const t of tabs) {
  const tab = byId(`tab-${t}`);
  tab.addEventListener("click", () => selectTab(t));
  tab.addEventListener("keydown", (e) => {
    const i = tabs.indexOf(t);
    const to =
      e.key === "ArrowRight"
        ? tabs[(i + 1) % tabs.length]
        : e.key === "ArrowLeft"
          ? tabs[(i + tabs.length - 1) % tabs.length]
          : undefined;
    if (to) {
      e.preventDefault();
      selectTab(to, true);
    }
  });
}

// First input: what `passthru serve INPUT` offers, else the built-in desktop.
async function start(): Promise<void> {
  if (location.protocol === "http:" || location.protocol === "https:") {
    try {
      const r = await fetch("api/input", { cache: "no-store" });
      if (r.ok) {
        const body = (await r.json()) as { name: string; base64: string };
        const bin = atob(body.base64);
        const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
        hostSelect.value = "";
        await show(() => loadBytes(body.name, bytes), body.name);
        return;
      }
    } catch {
      // A static server without the API: fall through.
    }
  }
  const first = assets.hosts.desktop !== undefined ? "desktop" : Object.keys(assets.hosts)[0];
  if (first) {
    hostSelect.value = first;
    await showBuiltin(first);
  }
}
void start();
