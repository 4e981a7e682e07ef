/**
 * `passthru analyze [INPUT | --live]`: everything about passing devices through on one host —
 * per IOMMU group the derived and the kernel's membership, the reasons, viability, reset
 * methods and bus-reset reach, reserved regions; per IOMMU unit interrupt remapping and
 * cache coherency (WBINVD) — then the questions users ask, answered for each GPU (or the
 * devices named with --device). Text, `--json`, or `--markdown` for a forum post.
 */
import { buildHost } from "../host/build.js";
import { loadHost } from "../host/load.js";
import { SnapshotFs, snapshotToSpec } from "../host/snapshot.js";
import { analyzeHost, type Analysis, type GroupAnalysis } from "../userspace/analyze/analyze.js";
import { className } from "../userspace/analyze/pci-class.js";
import {
  answerQuestions,
  pickTargets,
  SelectorError,
  type Answer,
  type Answers,
} from "../userspace/analyze/questions.js";
import { short } from "../userspace/analyze/reset.js";
import { asSnapshotEntries, captureHost } from "../userspace/snapshot/capture.js";
import {
  bold,
  cyan,
  dim,
  EXIT_FINDINGS,
  EXIT_OK,
  green,
  red,
  UsageError,
  yellow,
} from "./output.js";

export interface AnalyzeOptions {
  live?: boolean;
  root?: string;
  json?: boolean;
  markdown?: boolean;
  device?: string[];
}

/**
 * Write to stdout and wait until it is handed to the OS: main() ends with process.exit(),
 * which would cut a large report short on a pipe.
 */
export function writeOut(data: string | Uint8Array): Promise<void> {
  return new Promise((resolve, reject) =>
    process.stdout.write(data, (e) => (e ? reject(e) : resolve())),
  );
}

/** Progress lines on stderr once a command has run for more than a second (TTY or PASSTHRU_PROGRESS=1). */
export function progress(command: string): (step: string) => void {
  const start = Date.now();
  const on = !!process.stderr.isTTY || process.env.PASSTHRU_PROGRESS === "1";
  return (step) => {
    const s = (Date.now() - start) / 1000;
    if (on && s > 1) process.stderr.write(`passthru ${command}: ${step} (${s.toFixed(1)} s)\n`);
  };
}

/** INPUT as for `groups`, or the live host (captured in memory, like `passthru snapshot`). */
export async function loadInput(
  input: string | undefined,
  opts: { live?: boolean; root?: string },
): Promise<{ host: Awaited<ReturnType<typeof loadHost>>; fs?: SnapshotFs }> {
  if (opts.live) {
    if (input) throw new UsageError("give either INPUT or --live, not both");
    const cap = captureHost(opts.root ?? "/");
    if (cap.functions === 0) throw new UsageError(cap.notes[0] ?? "no PCI functions on this host");
    const fs = new SnapshotFs(asSnapshotEntries(cap.entries));
    const host = buildHost(snapshotToSpec(fs, "live"), "this host (live)");
    host.name = "this host";
    for (const n of cap.notes) host.assumptions.push(n);
    return { host: { ...host, kind: "snapshot" }, fs };
  }
  return { host: await loadHost(input ?? "desktop") };
}

export async function analyzeCommand(
  input: string | undefined,
  opts: AnalyzeOptions,
): Promise<number> {
  if (opts.json && opts.markdown) throw new UsageError("--json and --markdown exclude each other");
  const step = progress("analyze");
  step("reading the host");
  const { host, fs } = await loadInput(input, opts);
  step("booting the kernel model and reading its sysfs");
  const a = await analyzeHost(host, fs);
  let targets;
  try {
    targets = pickTargets(a, opts.device ?? []);
  } catch (e) {
    if (e instanceof SelectorError) throw new UsageError(`--device: ${e.message}`);
    throw e;
  }
  step("answering the questions (slot and ACS-override what-ifs)");
  const answers = answerQuestions(a, targets);
  if (opts.json)
    await writeOut(JSON.stringify({ ...a.report, questions: answers }, null, 2) + "\n");
  else if (opts.markdown) await writeOut(markdown(a, answers));
  else await writeOut(text(a, answers));
  return a.report.comparison && a.report.comparison.unexplained > 0 ? EXIT_FINDINGS : EXIT_OK;
}

function text(a: Analysis, answers: Answers): string {
  const r = a.report;
  const out: string[] = [];
  const n = r.devices.length;
  out.push(
    `${bold(r.host)}: ${r.groups.length} IOMMU groups, ${n} PCI functions ${dim(`(${r.source})`)}`,
  );
  if (r.cmdline) out.push(dim(`kernel command line: ${r.cmdline}`));
  out.push(`IOMMU: ${vendorName(r.iommuVendor)}; interrupt remapping: ${irText(r)}`);
  for (const u of r.units)
    out.push(
      `  ${u.name}${u.ecap ? dim(` ECAP ${u.ecap}`) : ""}: ${u.wbinvd === "emulated" ? yellow(u.text) : u.text}`,
    );
  out.push(
    dim(
      r.resetSource === "sysfs"
        ? "reset methods: the kernel model's reset_method"
        : "reset methods: derived from config space (drivers/pci/pci.c rules); the model has no reset_method yet",
    ),
  );
  out.push("");
  for (const g of r.groups) out.push(...groupText(a, g), "");
  if (r.ungrouped.length) {
    out.push(bold("no group (not behind any IOMMU unit)"));
    for (const b of r.ungrouped) out.push(`  ${cyan(b)}  ${devLine(a, b)}`);
    out.push("");
  }
  for (const w of r.warnings) out.push(yellow(`warning: ${w}`));
  if (r.comparison) {
    out.push(
      r.comparison.identical
        ? green("Same groups as the kernel reported.")
        : red(
            `${r.comparison.differences.length} difference(s) from the kernel's groups (flagged above).`,
          ),
    );
  }
  out.push("");
  out.push(...questionsText(a, answers));
  return out.join("\n").replace(/\n+$/, "") + "\n";
}

function vendorName(v: string): string {
  return v === "intel"
    ? "Intel VT-d"
    : v === "amd"
      ? "AMD-Vi"
      : v === "none"
        ? "none enabled"
        : "other";
}

function irText(r: Analysis["report"]): string {
  const e = r.interruptRemapping.enabled;
  return e === true ? green("on") : e === false ? red("off") : dim("unknown");
}

function devLine(a: Analysis, bdf: string): string {
  const d = a.device(bdf);
  if (!d) return "";
  const reset =
    d.reset.methods === null
      ? "reset: ?"
      : `reset: ${d.reset.methods.length ? d.reset.methods.join(",") : "none"}`;
  return `${d.id}  ${className(d.class).padEnd(22)} ${(d.driver ?? "-").padEnd(13)} ${reset.padEnd(18)} ${d.name ?? ""}`.trimEnd();
}

function groupText(a: Analysis, g: GroupAnalysis): string[] {
  const head = `${bold(`group ${g.id}`)} ${dim(`[${g.unit}]`)} ${g.reason.replace(/0000:/g, "")}`;
  const out = [head];
  const via = g.viability;
  for (const b of g.devices) {
    const v = via.find((x) => x.bdf === b);
    const mark =
      v?.status === "must-unbind"
        ? red(" must unbind")
        : v?.role === "stays"
          ? dim(" stays on host")
          : v?.status === "ready"
            ? green(" ready")
            : "";
    out.push(`  ${cyan(b)}  ${devLine(a, b)}${mark}`);
  }
  out.push(
    `  ${g.viableNow ? green("viable now") : red("not viable")}${
      g.viableNow
        ? ""
        : `: ${via
            .filter((v) => v.status === "must-unbind")
            .map((v) => `unbind ${short(v.bdf)} (${v.driver})`)
            .join(", ")}${g.claimable ? "" : "direct-mapped reserved region"}`
    }`,
  );
  if (g.kernel !== null)
    out.push(
      g.matchesKernel
        ? dim("  kernel's group: same members")
        : yellow(`  kernel's group differs: {${g.kernel.map(short).join(", ")}}`),
    );
  // The interrupt window (msi) and AMD's HyperTransport hole (reserved) are on every group.
  const special = g.reservedRegions.filter((r) => r.type.startsWith("direct"));
  for (const r of special) out.push(dim(`  reserved ${r.start}-${r.end} ${r.type}`));
  return out;
}

function questionsText(a: Analysis, answers: Answers): string[] {
  const out: string[] = [];
  if (answers.perTarget.length === 0) {
    out.push(
      bold("Questions") +
        dim(" (no display controller here: name a device with --device BDF or vendor:device)"),
    );
    for (const ans of answers.host) out.push(...answerText(ans));
    return out;
  }
  for (const t of answers.perTarget) {
    const d = a.device(t.device);
    out.push(bold(`Questions about ${t.device}${d?.name ? ` (${d.name})` : ""}`));
    t.answers.forEach((ans, i) => out.push(...answerText(ans, i + 1)));
    out.push("");
  }
  return out;
}

function answerText(ans: Answer, i?: number): string[] {
  const out = [`${i ? `${i}. ` : ""}${bold(ans.question)}`, `   → ${ans.verdict}`];
  for (const l of ans.lines) out.push(`   ${l}`);
  return out;
}

function markdown(a: Analysis, answers: Answers): string {
  const r = a.report;
  const out: string[] = [];
  out.push(`## passthru analyze: ${r.host}`, "");
  out.push(`- Source: \`${r.source}\``);
  if (r.cmdline) out.push(`- Kernel command line: \`${r.cmdline}\``);
  out.push(
    `- IOMMU: ${vendorName(r.iommuVendor)}; interrupt remapping: ${r.interruptRemapping.enabled === null ? "unknown" : r.interruptRemapping.enabled ? "on" : "off"}`,
  );
  for (const u of r.units)
    out.push(`- \`${u.name}\`${u.ecap ? ` (ECAP ${u.ecap})` : ""}: ${u.text}`);
  out.push("", "### IOMMU groups", "");
  out.push("| group | device | id | class | driver | reset | note |");
  out.push("|---|---|---|---|---|---|---|");
  for (const g of r.groups) {
    g.devices.forEach((b, i) => {
      const d = a.device(b);
      const v = g.viability.find((x) => x.bdf === b);
      const note =
        v?.status === "must-unbind"
          ? "**must unbind**"
          : v?.role === "stays"
            ? "stays on host"
            : "";
      out.push(
        `| ${i === 0 ? `${g.id}${g.viableNow ? "" : " (not viable)"}` : ""} | \`${b}\` | ${d?.id ?? ""} | ${className(d?.class ?? "")} | ${d?.driver ?? "-"} | ${d?.reset.methods === null ? "?" : d?.reset.methods.join(", ") || "none"} | ${note} |`,
      );
    });
  }
  const wide = r.groups.filter((g) => g.devices.length > 1);
  if (wide.length) {
    out.push("", "Why the groups with several functions are what they are:", "");
    for (const g of wide) out.push(`- group ${g.id}: ${g.reason.replace(/0000:/g, "")}`);
  }
  if (r.warnings.length) {
    out.push("");
    for (const w of r.warnings) out.push(`> **Warning:** ${w}`);
  }
  const sections = answers.perTarget.length
    ? answers.perTarget.map((t) => ({
        title: `Questions about \`${t.device}\``,
        answers: t.answers,
      }))
    : [{ title: "Questions", answers: answers.host }];
  for (const s of sections) {
    out.push("", `### ${s.title}`);
    s.answers.forEach((ans, i) => {
      out.push("", `#### ${i + 1}. ${ans.question}`, "", `**${ans.verdict}**`, "");
      for (const l of ans.lines) {
        const t = l.trim();
        if (!l.startsWith("  ")) out.push(`- ${l}`);
        else out.push(/^(echo|driverctl) /.test(t) ? `  - \`${t}\`` : `  - ${t}`);
      }
    });
  }
  out.push("", `<sub>Generated by passthru analyze (model of Linux 6.12).</sub>`, "");
  return out.join("\n");
}
