/**
 * The analyzer's wall time as a user meets it: `passthru analyze desktop --json` spawned as
 * a process, against `node -e 0` spawned the same way (Node's own start-up), the median of
 * several runs each; reported as the ratio.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { Figure } from "./uapi.js";

const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1] as number;
}

function wall(args: string[], runs: number): number {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] });
    times.push(performance.now() - t0);
    if (r.status !== 0) throw new Error(`bench: node ${args.join(" ")}: exit ${r.status}`);
  }
  return median(times);
}

export function analyzerStartup(runs = 7): Figure[] {
  const base = wall(["-e", "0"], runs);
  const analyze = wall([CLI, "analyze", "desktop", "--json"], runs);
  return [
    { name: "node -e 0 (spawned)", value: base, unit: "ms" },
    { name: "passthru analyze desktop --json (spawned)", value: analyze, unit: "ms" },
    { name: "analyzer / node -e 0 wall-time ratio", value: analyze / base, unit: "×" },
  ];
}
