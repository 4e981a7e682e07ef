/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
/**
 * The scenario view: pick a shipped example (or open a scenario file), then step through
 * it — play/pause, step forward and back, or pick a step from the list. For the current
 * step: the calls it made and what they returned (the data a read gave back), then the
 * kernel's state after it — each process's open files, VFIO containers and groups, KVM VMs
 * with their coherency verdict (non-coherent DMA registered → guest WBINVD is emulated) and
 * whatever else the model's debug view reports for them. Arrow keys step while the list or
 * the controls have focus; Space plays and pauses there.
 */
import type { Json } from "../../userspace/replay/script.js";
import type { KvmVmInfo } from "../../kernel/kernel.js";
import { runScenarioText, type Assets, type ScenarioRun, type StepState } from "../scenario.js";
import { byId, fill, h, shortBdf } from "./dom.js";

const PLAY_MS = 900;

export class ScenarioView {
  private run: ScenarioRun | null = null;
  /** -1: before the first step. */
  private at = -1;
  private timer: ReturnType<typeof setInterval> | null = null;
  private readonly select = byId<HTMLSelectElement>("scn-select");
  private readonly list = byId<HTMLOListElement>("scn-steps");
  private readonly state = byId("scn-state");
  private readonly pos = byId("scn-pos");
  private readonly play = byId<HTMLButtonElement>("scn-play");
  private readonly error = byId("scn-error");

  constructor(private readonly assets: Assets) {
    fill(
      this.select,
      ...assets.scenarios.map((f) =>
        h("option", { value: f }, f.replace(/^examples\/scenarios\//, "").replace(/\.ya?ml$/, "")),
      ),
    );
    this.select.addEventListener("change", () => this.loadBundled(this.select.value));
    byId("scn-reset").addEventListener("click", () => this.go(-1));
    byId("scn-prev").addEventListener("click", () => this.go(this.at - 1));
    byId("scn-next").addEventListener("click", () => this.go(this.at + 1));
    this.play.addEventListener("click", () => this.toggle());
    for (const el of [this.list, byId("scn-controls")])
      el.addEventListener("keydown", (e) => this.onKey(e));
    const file = byId<HTMLInputElement>("scn-file");
    byId("scn-open").addEventListener("click", () => file.click());
    file.addEventListener("change", () => {
      const f = file.files?.[0];
      if (f) void f.text().then((t) => this.load(t, f.name));
      file.value = "";
    });
  }

  /** Load the first shipped scenario unless one is loaded. */
  ensure(): void {
    if (!this.run && this.assets.scenarios[0]) this.loadBundled(this.assets.scenarios[0]);
  }

  loadBundled(path: string): void {
    const text = this.assets.files[path];
    if (text !== undefined) this.load(text, path);
  }

  load(text: string, file: string): void {
    this.pause();
    try {
      this.run = runScenarioText(text, file, this.assets);
      this.error.textContent = "";
      if ([...this.select.options].some((o) => o.value === file)) this.select.value = file;
    } catch (e) {
      this.error.textContent = e instanceof Error ? e.message : String(e);
      return;
    }
    const r = this.run;
    byId("scn-title").textContent = `${r.report.name} on ${r.hostName}`;
    byId("scn-desc").textContent = r.report.description ?? "";
    byId("scn-summary").textContent = `${r.report.passed} passed, ${r.report.failed} failed`;
    fill(
      this.list,
      ...r.report.steps.map((s, i) =>
        h(
          "li",
          {},
          h(
            "button",
            {
              type: "button",
              class: s.failures.length ? "fail" : "pass",
              "data-step": i,
              tabindex: -1,
              onclick: () => this.go(i),
            },
            h("span", { class: "mark", "aria-hidden": "true" }, s.failures.length ? "✗" : "✓"),
            h("span", { class: "num" }, String(s.index)),
            h("span", { class: "op" }, opLabel(r.scenario.steps[i] as Record<string, unknown>)),
            s.note ? h("span", { class: "note" }, s.note) : null,
            h("span", { class: "sr-only" }, s.failures.length ? " (failed)" : " (passed)"),
          ),
        ),
      ),
    );
    this.go(-1);
  }

  private onKey(e: KeyboardEvent): void {
    if (e.key === "ArrowRight" || e.key === "ArrowDown") this.go(this.at + 1, true);
    else if (e.key === "ArrowLeft" || e.key === "ArrowUp") this.go(this.at - 1, true);
    else if (e.key === "Home") this.go(-1, true);
    else if (e.key === "End") this.go((this.run?.report.steps.length ?? 0) - 1, true);
    else if (e.key === " " && (e.target as Element).closest("#scn-steps")) this.toggle();
    else return;
    e.preventDefault();
  }

  private toggle(): void {
    if (this.timer) this.pause();
    else {
      if (!this.run) return;
      if (this.at >= this.run.report.steps.length - 1) this.go(-1);
      this.timer = setInterval(() => {
        if (!this.run || this.at >= this.run.report.steps.length - 1) this.pause();
        else this.go(this.at + 1);
      }, PLAY_MS);
      this.play.textContent = "❚❚ Pause";
      this.play.setAttribute("aria-pressed", "true");
    }
  }

  pause(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.play.textContent = "▶ Play";
    this.play.setAttribute("aria-pressed", "false");
  }

  /** Show the state after step `i` (-1: before the first); `focusList` moves focus along. */
  go(i: number, focusList = false): void {
    const r = this.run;
    if (!r) return;
    const n = r.report.steps.length;
    this.at = Math.max(-1, Math.min(n - 1, i));
    this.pos.textContent = this.at < 0 ? `before step 1 of ${n}` : `step ${this.at + 1} of ${n}`;
    const buttons = [...this.list.querySelectorAll<HTMLButtonElement>("button[data-step]")];
    buttons.forEach((b, k) => {
      const cur = k === this.at;
      b.classList.toggle("current", cur);
      b.classList.toggle("done", k < this.at);
      if (cur) b.setAttribute("aria-current", "step");
      else b.removeAttribute("aria-current");
      b.tabIndex = k === Math.max(0, this.at) ? 0 : -1;
    });
    const cur = buttons[Math.max(0, this.at)];
    if (cur) {
      cur.scrollIntoView({ block: "nearest" });
      if (focusList && this.list.contains(document.activeElement)) cur.focus();
    }
    this.renderState(this.at < 0 ? r.initial : (r.states[this.at] as StepState));
  }

  private renderState(st: StepState): void {
    const r = this.run as ScenarioRun;
    const step = this.at >= 0 ? r.report.steps[this.at] : undefined;
    fill(
      this.state,
      step
        ? h(
            "section",
            { class: "step-detail" },
            h(
              "h3",
              {},
              `Step ${step.index}: ${step.op}`,
              step.process !== r.scenario.processes[0]?.name ? ` (process ${step.process})` : "",
            ),
            step.note ? h("p", { class: "note" }, step.note) : null,
            h("ul", { class: "calls" }, ...step.results.map((res) => callItem(res))),
            ...step.failures.map((f) => h("p", { class: "problem" }, `Expectation failed: ${f}`)),
          )
        : h(
            "p",
            { class: "hint" },
            "Before the first step: nothing is open. Step or play to run the scenario.",
          ),
      h("h3", {}, "Processes and their open files"),
      ...st.processes.map((p) =>
        h(
          "div",
          { class: "proc" },
          h("h4", {}, `${p.name} (pid ${p.pid}, uid ${p.uid})`),
          p.fds.length
            ? h(
                "table",
                { class: "fds" },
                h(
                  "thead",
                  {},
                  h(
                    "tr",
                    {},
                    h("th", { scope: "col" }, "fd"),
                    h("th", { scope: "col" }, "file"),
                    h("th", { scope: "col" }, "is"),
                  ),
                ),
                h(
                  "tbody",
                  {},
                  ...p.fds.map((f) =>
                    h(
                      "tr",
                      {},
                      h("td", {}, String(f.fd)),
                      h("td", { class: "mono" }, f.file),
                      h(
                        "td",
                        {},
                        f.object ?? "",
                        f.refs > 1
                          ? h("span", { class: "muted" }, ` (${f.refs} references)`)
                          : null,
                      ),
                    ),
                  ),
                ),
              )
            : h("p", { class: "muted" }, "no open files"),
        ),
      ),
      h("h3", {}, "VFIO"),
      st.vfio.containers.length || st.vfio.groups.length
        ? h(
            "ul",
            { class: "objects" },
            ...st.vfio.containers.map((c) =>
              h(
                "li",
                {},
                h("strong", {}, `container #${c.id}`),
                `: ${c.iommu ? `IOMMU backend ${c.iommu}` : "no IOMMU backend set yet"}; groups ${c.groups.length ? c.groups.join(", ") : "none"}`,
              ),
            ),
            ...st.vfio.groups.map((g) =>
              h(
                "li",
                {},
                h("strong", {}, `group ${g.id}`),
                `: ${g.open ? "open" : "closed"}; ${g.container !== null ? `in container #${g.container}` : "in no container"}; devices ${g.devices.map((d) => `${shortBdf(d.name)}${d.open ? " (open)" : ""}`).join(", ") || "none"}${g.kvm ? "; known to KVM" : ""}`,
              ),
            ),
          )
        : h("p", { class: "muted" }, "no VFIO container or group open"),
      h("h3", {}, "KVM and coherency"),
      st.vms.length
        ? h("ul", { class: "objects" }, ...st.vms.map((vm) => vmItem(vm)))
        : h("p", { class: "muted" }, "no VM"),
    );
  }
}

/** "ioctl VFIO_SET_IOMMU", "open_group 0000:02:00.0", "mmap". */
function opLabel(step: Record<string, unknown>): string {
  const op = String(step.op);
  const arg = op === "ioctl" ? step.req : (step.device ?? step.path);
  return typeof arg === "string" ? `${op} ${arg}` : op;
}

const KNOWN_VM = new Set([
  "name",
  "users",
  "vcpus",
  "devices",
  "noncoherentDmaCount",
  "assignedDeviceCount",
  "wbinvd",
]);

function vmItem(vm: KvmVmInfo): HTMLElement {
  const flush = vm.wbinvd === "flush";
  const extra = Object.entries(vm as unknown as Record<string, unknown>).filter(
    ([k]) => !KNOWN_VM.has(k),
  );
  return h(
    "li",
    {},
    h("strong", {}, `VM ${vm.name}`),
    `: ${vm.vcpus} vCPU${vm.vcpus === 1 ? "" : "s"}; devices ${vm.devices.join(", ") || "none"}; ${vm.assignedDeviceCount} assigned device(s)`,
    h(
      "div",
      { class: flush ? "verdict noncoherent" : "verdict coherent" },
      flush
        ? `Non-coherent DMA registered (${vm.noncoherentDmaCount}): a guest WBINVD exits to KVM, which flushes the host's caches`
        : `Coherent: no non-coherent DMA registered, so KVM treats a guest WBINVD as a no-op`,
    ),
    extra.length
      ? h(
          "dl",
          { class: "facts" },
          ...extra.flatMap(([k, v]) => [h("dt", {}, words(k)), h("dd", {}, show(v))]),
        )
      : null,
  );
}

/** "wbinvdExits", "wbinvd_exits" → "wbinvd exits". */
function words(k: string): string {
  return k
    .replace(/([a-z])([A-Z])/g, "$1 $2")
    .replace(/_/g, " ")
    .toLowerCase();
}

function show(v: unknown): string {
  return typeof v === "string"
    ? v
    : JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? x.toString() : x));
}

function callItem(res: Record<string, Json>): HTMLElement {
  const what = [res.op, res.req].filter(Boolean).join(" ");
  const failed = res.errno !== null && res.errno !== undefined;
  return h(
    "li",
    { class: failed ? "bad" : "" },
    h("code", {}, what),
    " → ",
    h("code", {}, failed ? `${String(res.ret)} ${String(res.errno)}` : String(res.ret)),
    res.data !== undefined && res.data !== null
      ? h(
          "div",
          { class: "read" },
          h("span", { class: "label" }, "read: "),
          h("code", {}, show(res.data)),
        )
      : null,
    res.out ? outItem(res.out) : null,
  );
}

/**
 * A call's `out`: a struct's fields stay one line of JSON; what a guest run or vm_info
 * reports (WBINVD exits, what the guest read, the coherency verdict) becomes a list.
 */
function outItem(out: Json): HTMLElement {
  const o = out as Record<string, Json>;
  const rich =
    typeof out === "object" &&
    out !== null &&
    !Array.isArray(out) &&
    Object.keys(o).some((k) => /wbinvd|reads|noncoherent|exit/i.test(k));
  if (!rich)
    return h(
      "div",
      { class: "out" },
      h("span", { class: "label" }, "out: "),
      h("code", {}, show(out)),
    );
  return h(
    "dl",
    { class: "facts outcome" },
    ...Object.entries(o).flatMap(([k, v]) => [
      h("dt", {}, words(k)),
      h(
        "dd",
        { class: /wbinvd|reads/i.test(k) ? "read" : "" },
        Array.isArray(v)
          ? v.map((x, i) => [i ? ", " : "", h("code", {}, show(x))]).flat()
          : h("code", {}, show(v)),
      ),
    ]),
  );
}
