/**
 * `passthru graph INPUT --svg FILE`: the PCI topology of a host as an SVG picture — the tree
 * laid out left to right, IOMMU groups as coloured regions, bridges that break isolation
 * outlined in red with the ACS bits they lack, each function's driver and reset methods.
 * The same layout and drawing code as the web explorer (src/web/), run here without a
 * browser. `--svg -` (the default) writes to standard output.
 */
import { writeFileSync } from "node:fs";
import { loadHost } from "../host/load.js";
import { analyzeHost } from "../userspace/analyze/analyze.js";
import { layoutTopology } from "../web/layout.js";
import { renderSvg } from "../web/svg.js";
import { buildTopology } from "../web/topology.js";
import { EXIT_OK, UsageError } from "./output.js";

export interface GraphOptions {
  svg?: string;
}

export async function graphSvg(input: string): Promise<string> {
  const a = await analyzeHost(await loadHost(input));
  return renderSvg(await layoutTopology(buildTopology(a)));
}

export async function graphCommand(input: string, opts: GraphOptions): Promise<number> {
  const svg = await graphSvg(input);
  const file = opts.svg ?? "-";
  if (file === "-") process.stdout.write(svg);
  else {
    try {
      writeFileSync(file, svg);
    } catch (e) {
      throw new UsageError(`--svg: cannot write ${file}: ${(e as Error).message}`);
    }
    process.stderr.write(`wrote ${file}\n`);
  }
  return EXIT_OK;
}
