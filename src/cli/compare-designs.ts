/**
 * `passthru compare-designs scenario.yaml`: run one scenario (its `vmm` step says what to
 * give the guest) under the 2013 kvm-vfio group design, the current cdev + iommufd design
 * and the never-merged 2021 KVM_ALLOW_INCOHERENT_DMA proposal, and print them side by
 * side: the VMM's calls, who can turn real WBINVD on, KVM's verdict, what the guest read,
 * what its WBINVDs cost. `--json` for the same as data. Exit 1 when a design's run had a
 * failure (an unexpected errno or an expectation not met), 2 for unusable input.
 */
import { InputError } from "../host/errors.js";
import {
  compareDesigns,
  vmmStepIndex,
  type DesignColumn,
  type DesignComparison,
} from "../userspace/scenario/designs.js";
import { loadScenario } from "../userspace/scenario/load.js";
import { bold, dim, EXIT_FINDINGS, EXIT_OK, printJson, red, yellow } from "./output.js";

export async function compareDesignsCommand(
  file: string,
  opts: { json?: boolean },
): Promise<number> {
  const { scenario, host } = await loadScenario(file);
  const v = vmmStepIndex(scenario);
  if ("error" in v) throw new InputError(file, v.error, undefined, v.field);
  const cmp = compareDesigns(scenario, host);
  if (opts.json) printJson(cmp);
  else printTable(cmp);
  return cmp.designs.some((d) => d.failures.length) ? EXIT_FINDINGS : EXIT_OK;
}

const WIDTH = 38;

/** Words of `s` in lines of at most `w` characters (a longer word gets a line of its own). */
function wrap(s: string, w = WIDTH): string[] {
  const out: string[] = [];
  let cur = "";
  for (const word of s.split(" ")) {
    if (cur && cur.length + 1 + word.length > w) {
      out.push(cur);
      cur = word;
    } else cur = cur ? `${cur} ${word}` : word;
  }
  if (cur) out.push(cur);
  return out;
}

const shortBdf = (bdf: string) => bdf.replace(/^0000:/, "");

/** One design's cells, row by row; each cell is its lines. */
function cells(d: DesignColumn): Record<string, string[]> {
  const g = d.guest;
  const enablers = d.whoCanFlush.filter((p) => p.enables);
  return {
    kernel: [`profile ${d.profile}, ${d.build} build`, d.merged ? "merged" : "NEVER MERGED"],
    "VMM calls": d.calls
      .map((c) => (["0", "fd", "buf"].includes(c.result) ? c.call : `${c.call} → ${c.result}`))
      .flatMap((l) => wrap(l)),
    "real WBINVD": [
      ...(enablers.length
        ? wrap(`only with ${enablers.map((p) => shortBdf(p.device)).join(", ")}:`)
        : ["no device turns it on"]),
      ...d.whoCanFlush.flatMap((p) =>
        wrap(
          `${shortBdf(p.device)}: ` +
            (p.enables
              ? "yes"
              : p.failure
                ? `no (${p.failure})`
                : p.by && p.by.result !== "0"
                  ? `no, ${p.by.call} → ${p.by.result}`
                  : `no, ${p.by?.call ?? "no call"} accepted but judged coherent`),
        ),
      ),
    ],
    "KVM verdict": d.kvm
      ? [
          d.kvm.noncoherentDmaCount ? "non-coherent" : "coherent",
          `noncoherent_dma_count ${d.kvm.noncoherentDmaCount}`,
          `guest WBINVD: ${d.kvm.wbinvd}`,
        ]
      : ["no VM"],
    "guest reads": g
      ? g.reads.length
        ? wrap(g.reads[g.reads.length - 1] as string)
        : ["nothing"]
      : ["no guest run"],
    "WBINVD cost": g
      ? [
          `${g.wbinvdExits} exits, ${g.wbinvdExecuted} executed`,
          `${g.hostWbinvds} host WBINVDs`,
          `guest ${g.ns} ns, other CPUs ${g.otherCpusNs} ns`,
        ]
      : ["no guest run"],
  };
}

function printTable(cmp: DesignComparison): void {
  const cols = cmp.designs.map(cells);
  const rows = Object.keys(cols[0] ?? {});
  const label = Math.max(...rows.map((r) => r.length)) + 2;
  const pad = (s: string, n: number) => s + " ".repeat(Math.max(0, n - s.length));
  const out = [bold(`${cmp.scenario}`) + dim(` on ${cmp.host}`), ""];
  out.push(
    " ".repeat(label) +
      cmp.designs
        .map((d) => bold(pad(d.title, WIDTH)))
        .join("  ")
        .trimEnd(),
  );
  for (const r of rows) {
    const height = Math.max(...cols.map((c) => (c[r] as string[]).length));
    for (let i = 0; i < height; i++) {
      const head = i === 0 ? r : "";
      const line = cols.map((c) => pad((c[r] as string[])[i] ?? "", WIDTH)).join("  ");
      out.push((i === 0 ? bold(pad(head, label)) : pad(head, label)) + line.trimEnd());
    }
    out.push("");
  }
  out.push(
    yellow(
      "The 2021 proposal (KVM_ALLOW_INCOHERENT_DMA) was never merged: its column is an experimental model.",
    ),
  );
  for (const d of cmp.designs) for (const f of d.failures) out.push(red(`${d.title}: ${f}`));
  process.stdout.write(out.join("\n") + "\n");
}
