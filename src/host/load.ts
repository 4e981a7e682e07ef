/**
 * One entry point for every host input: a built-in example name, a snapshot (tar.gz, tar
 * or directory, SCRIPT.md), a YAML/JSON host description, `lspci -vvnn` text, or an
 * `lspci -x/-xxx/-xxxx` dump. The format is recognised from the content, not the name.
 */
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { buildHost, type Host } from "./build.js";
import { InputError } from "./errors.js";
import { parseHexdump } from "./hexdump.js";
import { parseLspci } from "./lspci.js";
import { readSnapshot, snapshotToSpec } from "./snapshot.js";
import { parseHostYaml } from "./yaml.js";

export const BUILTIN_DIR = fileURLToPath(new URL("../../../hosts/", import.meta.url));

export function builtinHosts(): string[] {
  return readdirSync(BUILTIN_DIR)
    .filter((f) => f.endsWith(".yaml"))
    .map((f) => f.replace(/\.yaml$/, ""))
    .sort();
}

export type InputKind = "builtin" | "snapshot" | "yaml" | "lspci" | "hexdump";

export async function loadHost(input: string): Promise<Host & { kind: InputKind }> {
  if (!existsSync(input) && builtinHosts().includes(input)) {
    const file = join(BUILTIN_DIR, `${input}.yaml`);
    return { ...fromYaml(readFileSync(file, "utf8"), `hosts/${input}.yaml`), kind: "builtin" };
  }
  if (!existsSync(input)) {
    throw new InputError(
      input,
      `no such file, directory or built-in host (built-in hosts: ${builtinHosts().join(", ")})`,
    );
  }
  const st = statSync(input);
  const head = st.isDirectory() ? Buffer.alloc(0) : readFileSync(input).subarray(0, 512);
  if (
    st.isDirectory() ||
    (head[0] === 0x1f && head[1] === 0x8b) ||
    head.subarray(257, 262).toString() === "ustar"
  ) {
    const fs = await readSnapshot(input);
    return { ...buildHost(snapshotToSpec(fs, input), input), kind: "snapshot" };
  }
  return hostFromText(readFileSync(input, "utf8"), input);
}

/** A host from text input (YAML/JSON, lspci -vvnn, lspci -x dump); no file system needed. */
export function hostFromText(text: string, file: string): Host & { kind: InputKind } {
  const kind = sniff(text);
  if (kind === "yaml") return { ...fromYaml(text, file), kind };
  const spec = kind === "lspci" ? parseLspci(text, file) : parseHexdump(text, file);
  const host = buildHost(spec, file);
  if (!spec.functions.some((f) => f.group !== undefined)) {
    host.assumptions.push(
      "The input does not show the kernel's IOMMU groups, so whether an IOMMU was on is unknown: " +
        "groups are derived as if one translated every function.",
    );
  }
  return { ...host, kind };
}

function fromYaml(text: string, file: string): Host {
  const { spec, locate } = parseHostYaml(text, file);
  try {
    return buildHost(spec, file);
  } catch (e) {
    if (e instanceof InputError && e.field && e.line === undefined) {
      throw new InputError(file, e.detail, locate(e.field), e.field);
    }
    throw e;
  }
}

const TITLE = /^(?:[0-9a-fA-F]{4,5}:)?[0-9a-fA-F]{2}:[0-1][0-9a-fA-F]\.[0-7] /m;

export function sniff(text: string): "yaml" | "lspci" | "hexdump" {
  if (/\0/.test(text.slice(0, 4096))) return "lspci"; // binary: let the lspci parser say where
  if (TITLE.test(text))
    return /^[0-9a-f]{2,3}: ([0-9a-f]{2} ){15}[0-9a-f]{2}\s*$/m.test(text) ? "hexdump" : "lspci";
  return "yaml";
}
