/**
 * Where test data lives. Tests run from dist/test/…; the repository root is found by
 * walking up to package.json. Real-kernel data is read from the repository's copies
 * (test/oracle/cases, test/fixtures/lspci) and, when a `shared/` directory sits beside the
 * repository, from its newer or held-out cases too.
 */
import { existsSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

function findRoot(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(d, "package.json"))) {
    const up = dirname(d);
    if (up === d) throw new Error("repository root not found");
    d = up;
  }
  return d;
}

export const ROOT = findRoot();
/** The CLI of the same build as the tests (dist/ in CI, any --outDir locally). */
export const CLI = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));
const SHARED = join(ROOT, "..", "shared");

/** Directories named by entry, the repository's copy first, shared/ adding what it lacks. */
function union(own: string, shared: string, keep: (name: string) => boolean): Map<string, string> {
  const out = new Map<string, string>();
  for (const base of [own, shared]) {
    if (!existsSync(base)) continue;
    for (const n of readdirSync(base).filter(keep).sort())
      if (!out.has(n)) out.set(n, join(base, n));
  }
  return out;
}

/** Oracle cases recorded on a real kernel: name → case directory. */
export function oracleCases(): Map<string, string> {
  return union(
    join(ROOT, "test", "oracle", "cases"),
    join(SHARED, "oracle", "cases"),
    (n) => !n.startsWith("."),
  );
}

/** Real hosts' `lspci -vvnn`: name → file. */
export function lspciFixtures(): Map<string, string> {
  return union(join(ROOT, "test", "fixtures", "lspci"), join(SHARED, "fixtures", "lspci"), (n) =>
    n.endsWith(".txt"),
  );
}
