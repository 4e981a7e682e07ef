/**
 * `passthru groups <input>`: the IOMMU groups Linux forms on a host, one line of reason
 * each; `--explain BDF` for the whole chain behind one device; `--acs-override` for the
 * what-if of the out-of-tree pcie_acs_override patch; `--json` for scripts.
 */
import { loadHost } from "../host/load.js";
import { analyzeGroups, type GroupRow, type GroupsReport } from "../userspace/analyze/groups.js";
import { className } from "../userspace/analyze/pci-class.js";
import { explainChain, explainDevice } from "../userspace/analyze/explain.js";
import type { DeviceTrace, Kernel } from "../kernel/kernel.js";
import {
  bold,
  cyan,
  dim,
  EXIT_FINDINGS,
  EXIT_OK,
  green,
  printJson,
  red,
  UsageError,
  yellow,
} from "./output.js";

export interface GroupsOptions {
  json?: boolean;
  explain?: string;
  acsOverride?: string | boolean;
}

export async function groupsCommand(input: string, opts: GroupsOptions): Promise<number> {
  const host = await loadHost(input);
  const { kernel, report } = analyzeGroups(host);
  if (opts.acsOverride !== undefined) return overrideWhatIf(host, report, opts);
  if (opts.explain) {
    const bdf = fullBdf(opts.explain);
    const explained = explainDevice(kernel, report, bdf);
    if (!explained) throw new UsageError(`--explain: no PCI function ${bdf} on ${host.name}`);
    if (opts.json) printJson(explained);
    else printExplain(kernel, report, explained);
    return EXIT_OK;
  }
  if (opts.json) printJson(jsonReport(report));
  else printReport(report);
  return report.comparison && report.comparison.unexplained > 0 ? EXIT_FINDINGS : EXIT_OK;
}

export function fullBdf(s: string): string {
  const t = s.toLowerCase();
  if (/^[0-9a-f]{4,5}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/.test(t)) return t;
  if (/^[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/.test(t)) return `0000:${t}`;
  throw new UsageError(`expected a PCI address like 0000:01:00.0 or 01:00.0, got "${s}"`);
}

function groupMembers(report: GroupsReport, id: number | null): string[] {
  return report.groups.find((g) => g.id === id)?.devices.map((d) => d.bdf) ?? [];
}

export function jsonReport(r: GroupsReport): unknown {
  return {
    host: r.host,
    source: r.source,
    cmdline: r.cmdline,
    groups: r.groups.map((g) => ({
      id: g.id,
      unit: g.unit,
      devices: g.devices.map((d) => d.bdf),
      reason: g.reason,
      reasons: g.reasons,
      members: g.devices,
    })),
    ungrouped: r.ungrouped,
    ...(r.comparison ? { comparison: r.comparison } : {}),
    warnings: r.warnings,
  };
}

function line(g: GroupRow): string[] {
  const out = [`${bold(`group ${g.id}`)} ${dim(`[${g.unit}]`)} ${g.reason}`];
  for (const d of g.devices) {
    const kg =
      d.kernelGroup === undefined
        ? ""
        : d.kernelGroup === g.id
          ? dim(` kernel: ${d.kernelGroup}`)
          : yellow(` kernel: ${d.kernelGroup}`);
    out.push(
      `  ${cyan(d.bdf)}  ${d.id}  ${className(d.class).padEnd(22)} ${(d.driver ?? "-").padEnd(12)} ${d.name ?? ""}${kg}`.trimEnd(),
    );
  }
  return out;
}

function printReport(r: GroupsReport): void {
  const n = r.groups.reduce((s, g) => s + g.devices.length, 0) + r.ungrouped.length;
  const out = [
    `${bold(r.host)}: ${r.groups.length} IOMMU groups, ${n} PCI functions ${dim(`(${r.source})`)}`,
  ];
  if (r.cmdline) out.push(dim(`kernel command line: ${r.cmdline}`));
  out.push("");
  for (const g of r.groups) out.push(...line(g), "");
  if (r.ungrouped.length) {
    out.push(bold("no group (not behind any IOMMU unit)"));
    for (const d of r.ungrouped)
      out.push(`  ${cyan(d.bdf)}  ${d.id}  ${className(d.class).padEnd(22)} ${d.driver ?? "-"}`);
    out.push("");
  }
  for (const w of r.warnings) out.push(yellow(`warning: ${w}`));
  if (r.comparison) {
    if (r.comparison.identical) {
      out.push(
        green("Same groups as the kernel reported (membership identical)") +
          (r.comparison.numberingDiffers
            ? dim("; group numbers differ (they follow probe order)")
            : "."),
      );
    } else {
      out.push(red(`${r.comparison.differences.length} difference(s) from the kernel's groups:`));
      for (const d of r.comparison.differences) {
        out.push(
          `  ${d.text}${d.unknownCaps ? dim(" (capabilities not in the input: expected)") : ""}`,
        );
      }
      if (r.comparison.unexplained === 0) {
        out.push(
          dim(
            "All of them involve devices whose capabilities the input lacks; the kernel's groups stand.",
          ),
        );
      }
    }
  }
  process.stdout.write(out.join("\n").replace(/\n+$/, "") + "\n");
}

function printExplain(kernel: Kernel, r: GroupsReport, t: DeviceTrace): void {
  const out: string[] = [];
  const dev = kernel.debug.device(t.dev);
  out.push(
    bold(`${t.dev}`) + (t.group === null ? " has no IOMMU group" : ` is in IOMMU group ${t.group}`),
  );
  if (t.group !== null) out.push(`  members: ${groupMembers(r, t.group).join(", ")}`);
  if (dev?.notes.length) for (const n of dev.notes) out.push(dim(`  kernel note: ${n}`));
  out.push("", bold("How Linux decided (drivers/iommu/iommu.c pci_device_group):"));
  t.steps.forEach((s, i) => {
    out.push(`  ${i + 1}. [${s.code}] ${s.text}`);
    for (const v of s.verdicts ?? []) {
      out.push(
        dim(
          `       ${v.dev}: ${v.enabled ? "isolates" : "does not isolate"}: ${v.text}${v.unknown ? " (unknown: capabilities not captured)" : ""}`,
        ),
      );
    }
  });
  if (t.steps.length === 0)
    out.push("  (no alias, no bridge above failing ACS, no non-isolated sibling)");
  const how = (x: DeviceTrace) => (x.founded ? "founded the group" : "joined it");
  out.push("", `${bold("Decided")}: ${t.dev} ${how(t)}: [${t.decided.code}] ${t.decided.text}`);
  for (const link of explainChain(kernel, t)) {
    out.push(`  ${link.dev} ${how(link)}: [${link.decided.code}] ${link.decided.text}`);
  }
  process.stdout.write(out.join("\n") + "\n");
}

async function overrideWhatIf(
  host: Awaited<ReturnType<typeof loadHost>>,
  base: GroupsReport,
  opts: GroupsOptions,
): Promise<number> {
  const spec = typeof opts.acsOverride === "string" ? opts.acsOverride : "downstream,multifunction";
  for (const t of spec.split(",")) {
    if (!/^(downstream|multifunction|id:[0-9a-f]{4}:[0-9a-f]{4})$/i.test(t)) {
      throw new UsageError(
        `--acs-override: "${t}" is not one of downstream, multifunction, id:vvvv:dddd`,
      );
    }
  }
  const { report } = analyzeGroups(host, `pcie_acs_override=${spec}`);
  const key = (g: GroupRow) => g.devices.map((d) => d.bdf).join(",");
  const after = new Set(report.groups.map(key));
  const split = base.groups.filter((g) => !after.has(key(g)));
  const warning =
    "pcie_acs_override only changes what the kernel believes. The hardware still routes peer-to-peer " +
    "requests inside the switch, root port or multifunction device without the IOMMU seeing them: a guest " +
    "owning one of the split devices can read or corrupt the memory of the others. The isolation is fake.";
  if (opts.json) {
    printJson({
      override: spec,
      warning,
      split: split.map((g) => ({
        before: { id: g.id, devices: g.devices.map((d) => d.bdf) },
        after: report.groups
          .filter((a) => a.devices.some((d) => g.devices.some((x) => x.bdf === d.bdf)))
          .map((a) => ({ id: a.id, devices: a.devices.map((d) => d.bdf) })),
      })),
      groups: (jsonReport(report) as { groups: unknown }).groups,
    });
    return EXIT_OK;
  }
  const out = [bold(`What-if: pcie_acs_override=${spec} on ${host.name}`), ""];
  if (split.length === 0) out.push("No group would change.");
  for (const g of split) {
    out.push(
      `${bold(`group ${g.id}`)} (${g.devices.length} devices: ${g.reason}) would split into:`,
    );
    for (const a of report.groups.filter((a) =>
      a.devices.some((d) => g.devices.some((x) => x.bdf === d.bdf)),
    )) {
      out.push(`  { ${a.devices.map((d) => d.bdf).join(", ")} }`);
    }
  }
  out.push("", red(`warning: ${warning}`));
  process.stdout.write(out.join("\n") + "\n");
  return EXIT_OK;
}
