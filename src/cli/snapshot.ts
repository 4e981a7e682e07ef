/**
 * `passthru snapshot [-o FILE]`: capture this host into a snapshot (oracle/SCRIPT.md) that
 * `passthru groups` / `analyze` read anywhere; `--script` prints the equivalent POSIX sh
 * script (scripts/passthru-snapshot.sh) for machines without Node.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { captureHost, toTarGz } from "../userspace/snapshot/capture.js";
import { writeOut } from "./analyze.js";
import { EXIT_FINDINGS, EXIT_OK, UsageError, yellow } from "./output.js";

export const SCRIPT_PATH = fileURLToPath(
  new URL("../../../scripts/passthru-snapshot.sh", import.meta.url),
);

export interface SnapshotOptions {
  output?: string;
  script?: boolean;
  root?: string;
}

export async function snapshotCommand(opts: SnapshotOptions): Promise<number> {
  if (opts.script) {
    if (opts.output) throw new UsageError("--script prints the script; it takes no -o");
    await writeOut(readFileSync(SCRIPT_PATH, "utf8"));
    return EXIT_OK;
  }
  const out = opts.output ?? "passthru-snapshot.tar.gz";
  const cap = captureHost(opts.root ?? "/");
  if (cap.functions === 0) {
    process.stderr.write(`passthru: ${cap.notes[0] ?? "no PCI functions found"}\n`);
    return EXIT_FINDINGS;
  }
  const data = await toTarGz(cap.entries);
  if (out === "-") await writeOut(data);
  else writeFileSync(out, data);
  const groups = [...cap.entries.keys()].filter((k) =>
    /^sys\/kernel\/iommu_groups\/[^/]+$/.test(k),
  ).length;
  if (out !== "-")
    process.stderr.write(
      `passthru: wrote ${out} (${cap.functions} PCI functions, ${groups} IOMMU groups)\n`,
    );
  for (const n of cap.notes) process.stderr.write(yellow(`passthru: ${n}`) + "\n");
  return EXIT_OK;
}
