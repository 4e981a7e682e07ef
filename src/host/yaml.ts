/**
 * Declarative host files (YAML, or JSON, which is YAML) validated against `hostSpecSchema`.
 * A schema failure is reported at the line of the offending node with its field path, e.g.
 * `desktop.yaml:14: functions[2].acs.cap[0]: Invalid option: expected one of "sv"|...`.
 */
import { LineCounter, parseDocument, isNode } from "yaml";
import type { z } from "zod";
import { InputError } from "./errors.js";
import { hostSpecSchema, type HostSpec } from "./spec.js";

export interface ParsedYaml<T> {
  spec: T;
  /** The line of a field path such as "functions[3].children[0].addr", when it exists. */
  locate(field: string): number | undefined;
}

export function parseHostYaml(text: string, file: string): ParsedYaml<HostSpec> {
  return parseYaml(
    hostSpecSchema,
    text,
    file,
    "expected a mapping with at least a `functions` list",
  );
}

/** A YAML (or JSON) document validated by a zod schema; errors name the line and field. */
export function parseYaml<S extends z.ZodType>(
  schema: S,
  text: string,
  file: string,
  shape: string,
): ParsedYaml<z.infer<S>> {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const err = doc.errors[0];
  if (err) {
    const line = lc.linePos(err.pos[0]).line;
    throw new InputError(file, `not valid YAML/JSON: ${err.message.split("\n")[0]}`, line);
  }
  const data: unknown = doc.toJS();
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    throw new InputError(file, shape, 1);
  }
  // The line of the deepest node of a path that exists in the document.
  const lineOf = (path: (string | number)[]): number | undefined => {
    for (let n = path.length; n >= 0; n--) {
      const node = doc.getIn(path.slice(0, n), true);
      if (isNode(node) && node.range) return lc.linePos(node.range[0]).line;
    }
    return undefined;
  };
  const locate = (field: string) =>
    lineOf(
      field
        .split(/[.[\]]/)
        .filter(Boolean)
        .map((p) => (/^\d+$/.test(p) ? Number(p) : p)),
    );
  const r = schema.safeParse(data);
  if (r.success) return { spec: r.data, locate };
  const issue = r.error.issues[0];
  const path = (issue?.path ?? []).map((p) => (typeof p === "symbol" ? String(p) : p));
  const line = lineOf(path) ?? 1;
  const field = path.reduce<string>(
    (s, p) => (typeof p === "number" ? `${s}[${p}]` : s ? `${s}.${String(p)}` : String(p)),
    "",
  );
  throw new InputError(
    file,
    issue?.message ?? "invalid host description",
    line,
    field || undefined,
  );
}
