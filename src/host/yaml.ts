/**
 * Declarative host files (YAML, or JSON, which is YAML) validated against `hostSpecSchema`.
 * A schema failure is reported at the line of the offending node with its field path, e.g.
 * `desktop.yaml:14: functions[2].acs.cap[0]: Invalid option: expected one of "sv"|...`.
 * Aliases are checked before the data is built (checkAliases), so a recursive one or an
 * alias bomb is refused at the alias's line.
 */
import {
  type Alias,
  type Document,
  isAlias,
  isCollection,
  isNode,
  isPair,
  LineCounter,
  parseDocument,
  visit,
} from "yaml";
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
  checkAliases(doc, file, (pos) => lc.linePos(pos).line);
  // Bounded by checkAliases: the library's own alias budget (an error without a line) is off.
  const data: unknown = doc.toJS({ maxAliasCount: -1 });
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

/** The most nodes a document may stand for once its aliases are followed. */
const MAX_EXPANDED_NODES = 1_000_000;

/**
 * Every alias must refer to an anchor before it that does not contain it (else the data
 * would be cyclic), and following all of them must give at most MAX_EXPANDED_NODES nodes
 * (else a few lines stand for billions: an alias bomb). Refused at the alias's line.
 */
function checkAliases(doc: Document, file: string, lineAt: (pos: number) => number): void {
  const anchors = new Map<string, unknown>();
  const sourceOf = new Map<Alias, unknown>();
  const sizes = new Map<unknown, number>();
  // Nodes a tree walk of the built data meets; every alias inside was resolved before.
  const size = (n: unknown): number => {
    if (isAlias(n)) return size(sourceOf.get(n));
    if (isPair(n)) return size(n.key) + size(n.value);
    if (!isCollection(n)) return 1;
    let known = sizes.get(n);
    if (known === undefined) {
      known = n.items.reduce<number>((t, i) => t + size(i), 1);
      sizes.set(n, known);
    }
    return known;
  };
  let total = 0;
  visit(doc, {
    Node(_key, node, path) {
      const line = () => lineAt(node.range?.[0] ?? 0);
      if (isAlias(node)) {
        const src = anchors.get(node.source);
        if (src === undefined)
          throw new InputError(file, `alias *${node.source} has no anchor before it`, line());
        if (path.includes(src as never))
          throw new InputError(
            file,
            `alias *${node.source} is inside its own anchor (a recursive, cyclic alias)`,
            line(),
          );
        sourceOf.set(node, src);
        total += size(src);
        if (total > MAX_EXPANDED_NODES)
          throw new InputError(
            file,
            `alias *${node.source} would expand the document beyond ${MAX_EXPANDED_NODES} nodes`,
            line(),
          );
      } else {
        if (node.anchor) anchors.set(node.anchor, node);
        total += 1;
      }
    },
  });
}
