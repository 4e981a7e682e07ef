/**
 * `npm run bench`: speed targets as ratios measured in one run (tinybench).
 * - IOMMU group derivation (host build + enumeration + grouping) at 1k and 10k functions;
 *   target: 10k/1k time ratio ≤ 12 (near-linear).
 * - IOMMU translation with a warm and a cold IOTLB; type1 map+unmap amid 10^3 and 10^6
 *   live mappings (target ratio ≤ 2) and memory per mapping; ioctl codec + dispatch
 *   (target ≥ 10^6 calls/s) (uapi.ts); the analyzer's wall time against `node -e 0`
 *   (analyzer.ts).
 * `--only groups,spapr,translate,type1,ioctl,analyzer` runs some of them.
 * Prints a table, and the same as JSON with --json.
 */
import { Bench } from "tinybench";
import { buildHost } from "../src/host/build.js";
import { analyzeGroups } from "../src/userspace/analyze/groups.js";
import { analyzerStartup } from "./analyzer.js";
import { spaprTceThroughput } from "./spapr.js";
import { syntheticHost } from "./topology.js";
import { ioctlRate, iommuTranslation, type1Scaling } from "./uapi.js";

interface Figure {
  name: string;
  value: number;
  unit: string;
  target?: string;
  ok?: boolean;
}

async function groupDerivation(): Promise<Figure[]> {
  const small = syntheticHost(1000);
  const large = syntheticHost(10000);
  const bench = new Bench({ time: 3000, iterations: 10, warmupIterations: 3 });
  let n1 = 0;
  let n10 = 0;
  // buildHost fills in bus numbers in place: each run gets a fresh copy, made outside the timing.
  // A collection before each run keeps one run's garbage out of the next one's time.
  let copy = small;
  const fresh = (h: typeof small) => {
    copy = structuredClone(h);
    (globalThis as { gc?: () => void }).gc?.();
  };
  bench
    .add(
      "derive groups, 1k functions",
      () => {
        n1 = analyzeGroups(buildHost(copy, "synthetic")).kernel.pci.devices.length;
      },
      { beforeEach: () => fresh(small) },
    )
    .add(
      "derive groups, 10k functions",
      () => {
        n10 = analyzeGroups(buildHost(copy, "synthetic")).kernel.pci.devices.length;
      },
      { beforeEach: () => fresh(large) },
    );
  await bench.run();
  const [a, b] = bench.tasks.map((t) => {
    const r = t.result as { latency?: { mean: number }; mean?: number } | undefined;
    return r?.latency?.mean ?? r?.mean ?? NaN;
  }) as [number, number];
  const ratio = b / a;
  return [
    { name: `group derivation, ${n1} functions`, value: a, unit: "ms" },
    { name: `group derivation, ${n10} functions`, value: b, unit: "ms" },
    {
      name: "group derivation 10k/1k time ratio",
      value: ratio,
      unit: "×",
      target: "≤ 12",
      ok: ratio <= 12,
    },
  ];
}

const BENCHES: [string, () => Promise<Figure[]> | Figure[]][] = [
  ["groups", groupDerivation],
  ["spapr", spaprTceThroughput],
  ["translate", iommuTranslation],
  ["type1", type1Scaling],
  ["ioctl", ioctlRate],
  ["analyzer", () => analyzerStartup()],
];
const only = process.argv[process.argv.indexOf("--only") + 1]?.split(",");
const figures: Figure[] = [];
for (const [name, bench] of BENCHES)
  if (!process.argv.includes("--only") || only?.includes(name)) figures.push(...(await bench()));
if (process.argv.includes("--json")) {
  process.stdout.write(JSON.stringify({ figures }, null, 2) + "\n");
} else {
  const w = Math.max(...figures.map((f) => f.name.length));
  for (const f of figures) {
    const v = f.value < 10 ? f.value.toFixed(3) : f.value.toFixed(1);
    const t = f.target ? `  target ${f.target}: ${f.ok ? "met" : "MISSED"}` : "";
    process.stdout.write(`${f.name.padEnd(w)}  ${v.padStart(10)} ${f.unit}${t}\n`);
  }
}
