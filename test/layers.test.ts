/**
 * The layer boundaries of DESIGN.md, checked on every import in src/: uapi depends on
 * nothing; machine knows no kernel; the kernel sees the machine only through
 * machine/hw.ts (what a real driver can read); host descriptions build machines but never
 * reach the kernel; userspace and the CLI see the kernel only through its facade
 * (kernel/kernel.ts: boot, syscalls, debugfs).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { ROOT } from "./support/paths.js";

const SRC = join(ROOT, "src");

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? files(p) : p.endsWith(".ts") ? [p] : [];
  });
}

/** For a file in layer L, may it import target (a path relative to src/, without .ts)? */
const RULES: Record<string, (target: string) => boolean> = {
  uapi: (t) => t.startsWith("uapi/"),
  machine: (t) => t.startsWith("machine/") || t.startsWith("uapi/"),
  kernel: (t) => t.startsWith("kernel/") || t.startsWith("uapi/") || t === "machine/hw",
  host: (t) => t.startsWith("host/") || t.startsWith("machine/") || t.startsWith("uapi/"),
  userspace: (t) =>
    t.startsWith("userspace/") ||
    t.startsWith("uapi/") ||
    t.startsWith("host/") ||
    t === "kernel/kernel",
  // The web explorer: library code only, never the CLI (it runs in a browser).
  web: (t) =>
    t.startsWith("web/") ||
    t.startsWith("userspace/") ||
    t.startsWith("host/") ||
    t.startsWith("uapi/") ||
    t === "kernel/kernel",
  // The real-kernel oracle's host side: runs scripts in QEMU and diffs them with the model.
  oracle: (t) =>
    t.startsWith("oracle/") ||
    t.startsWith("userspace/") ||
    t.startsWith("host/") ||
    t.startsWith("uapi/") ||
    t === "kernel/kernel",
  cli: (t) =>
    t.startsWith("cli/") ||
    t.startsWith("oracle/") ||
    t.startsWith("web/") ||
    t.startsWith("userspace/") ||
    t.startsWith("host/") ||
    t.startsWith("uapi/") ||
    t === "kernel/kernel",
};

export function violations(): string[] {
  const out: string[] = [];
  for (const f of files(SRC)) {
    const rel = relative(SRC, f);
    const layer = rel.split("/")[0] as string;
    const allowed = RULES[layer];
    if (!allowed) {
      out.push(`${rel}: not in a known layer (${Object.keys(RULES).join(", ")})`);
      continue;
    }
    const text = readFileSync(f, "utf8");
    for (const m of text.matchAll(/(?:from|import)\s*\(?\s*"(\.[^"]+)"/g)) {
      const target = relative(SRC, resolve(dirname(f), m[1] as string)).replace(/\.js$/, "");
      if (!allowed(target)) out.push(`${rel} imports ${target}`);
    }
  }
  return out;
}

test("every import in src/ respects the layer boundaries", () => {
  assert.deepEqual(violations(), []);
});

test("the check itself catches a kernel module reaching into machine internals", () => {
  assert.equal(RULES.kernel?.("machine/pci/fabric"), false);
  assert.equal(RULES.kernel?.("machine/hw"), true);
  assert.equal(RULES.userspace?.("kernel/iommu/iommu"), false);
  assert.equal(RULES.machine?.("kernel/kernel"), false);
  assert.equal(RULES.host?.("kernel/kernel"), false);
  assert.equal(RULES.web?.("cli/output"), false);
});
