/**
 * Helpers for the analyzer/planner/snapshot tests: the CLI of the same build as the test
 * (so a private build directory tests itself), the repository's real-host data, and fake
 * /sys trees written to a temporary directory from a recorded snapshot.
 */
import { spawnSync, type SpawnSyncOptions } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { readSnapshot } from "../../src/host/snapshot.js";
import { CLI, lspciFixtures, oracleCases, ROOT } from "../support/paths.js";

export { CLI };

export const SCRIPT = join(ROOT, "scripts", "passthru-snapshot.sh");

export interface Run {
  code: number;
  out: string;
  err: string;
}

export function run(args: string[], opts: SpawnSyncOptions = {}): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    encoding: "utf8",
    ...opts,
    env: { ...process.env, NO_COLOR: "1", ...(opts.env ?? {}) },
  });
  return { code: r.status ?? -1, out: String(r.stdout), err: String(r.stderr) };
}

export function json<T = Record<string, unknown>>(args: string[]): T {
  const r = run([...args, "--json"]);
  if (r.code !== 0 && r.code !== 1) throw new Error(`exit ${r.code}: ${r.err}`);
  return JSON.parse(r.out) as T;
}

export function fixture(name: string): string {
  const f = lspciFixtures().get(`${name}.txt`);
  if (!f) throw new Error(`no lspci fixture ${name}`);
  return f;
}

export function snapshotOf(name: string): string {
  const c = oracleCases().get(name);
  if (!c) throw new Error(`no oracle case ${name}`);
  return join(c, "snapshot.tar.gz");
}

const made: string[] = [];
process.on("exit", () => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

/** A temporary directory, removed when the test process exits. */
export function tmp(prefix = "passthru-analyze-"): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  made.push(d);
  return d;
}

/** Write a snapshot's files, links and directories below a fresh directory: a fake machine. */
export async function fakeRoot(snapshot: string): Promise<string> {
  const fs = await readSnapshot(snapshot);
  const root = tmp("passthru-fake-sys-");
  for (const [path, e] of fs.entries) {
    const abs = join(root, path);
    if (e.kind === "dir") mkdirSync(abs, { recursive: true });
    else {
      mkdirSync(dirname(abs), { recursive: true });
      if (e.kind === "link") symlinkSync(e.target, abs);
      else writeFileSync(abs, e.data);
    }
  }
  return root;
}

export { ROOT };
