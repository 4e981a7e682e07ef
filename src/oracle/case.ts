/**
 * A case directory (the oracle's README): `case.json` says which kernel boots and with
 * which QEMU topology, `script.jsonl` what runs; a recording adds `snapshot.tar.gz` (the
 * host as the guest saw it before the script) and `expected.jsonl` (what the kernel
 * answered).
 *
 * case.json: {"kernel": "debian" | "iommufd", "qemu": [...], "append": "...", "note": "..."}
 */
import { existsSync, readFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { InputError } from "../host/errors.js";
import { loadScript } from "../userspace/replay/replay.js";
import type { Script } from "../userspace/replay/script.js";
import type { KernelKind } from "./kernels.js";

export interface CaseSpec {
  kernel: KernelKind;
  qemu: string[];
  append: string;
  note?: string;
}

export interface OracleCase {
  name: string;
  dir: string;
  spec: CaseSpec;
  script: Script;
}

const oneLine = (s: unknown) => typeof s === "string" && !/[\r\n]/.test(s);

export function parseCaseSpec(text: string, file: string): CaseSpec {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new InputError(file, `not valid JSON (${(e as Error).message})`);
  }
  if (!v || typeof v !== "object" || Array.isArray(v))
    throw new InputError(file, "expected a JSON object");
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o))
    if (!["kernel", "qemu", "append", "note"].includes(k))
      throw new InputError(
        file,
        "not a field of a case (kernel, qemu, append, note)",
        undefined,
        k,
      );
  if (o.kernel !== "debian" && o.kernel !== "iommufd")
    throw new InputError(file, 'expected "debian" or "iommufd"', undefined, "kernel");
  if (o.qemu !== undefined && (!Array.isArray(o.qemu) || !o.qemu.every(oneLine)))
    throw new InputError(file, "expected an array of one-line strings", undefined, "qemu");
  if (o.append !== undefined && !oneLine(o.append))
    throw new InputError(file, "expected a one-line string", undefined, "append");
  if (o.note !== undefined && typeof o.note !== "string")
    throw new InputError(file, "expected a string", undefined, "note");
  return {
    kernel: o.kernel,
    qemu: (o.qemu as string[] | undefined) ?? [],
    append: (o.append as string | undefined) ?? "",
    ...(typeof o.note === "string" ? { note: o.note } : {}),
  };
}

export function loadCase(dir: string): OracleCase {
  const abs = resolve(dir);
  const cj = join(abs, "case.json");
  const sj = join(abs, "script.jsonl");
  if (!existsSync(cj)) throw new InputError(abs, "not a case directory (no case.json)");
  if (!existsSync(sj)) throw new InputError(abs, "not a case directory (no script.jsonl)");
  const spec = parseCaseSpec(readFileSync(cj, "utf8"), cj);
  return { name: basename(abs), dir: abs, spec, script: loadScript(sj) };
}

/** The key of a case's machine: cases with the same key boot the same guest. */
export function topologyKey(spec: CaseSpec): string {
  return JSON.stringify([spec.kernel, spec.qemu, spec.append]);
}
