/**
 * Syscall scripts, version 1 (the oracle's SCRIPT.md): JSON Lines, a header then one
 * operation per line. Parsing checks every field the way the oracle agent's --check does
 * (known op, allowed keys, `$name` bound before use, `nr` equal to the request's number
 * when the request is known), with its limits (agent/script.c: MAX_IO, 1 MiB, for a pread
 * size, pwrite/fill/check bytes and bytes:N; structs nested at most 4 deep below the
 * argument), so a bad script is refused with its line before anything runs.
 */
import { InputError } from "../../host/errors.js";
import { REQUESTS } from "../../uapi/requests.js";

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export interface Op {
  op: string;
  line: number;
  [k: string]: Json;
}

export interface Script {
  name: string;
  note?: string;
  ops: Op[];
}

const KEYS: Record<string, string[]> = {
  open: ["path", "flags", "as"],
  close: ["fd"],
  dup: ["fd", "as"],
  mmap: ["size", "as", "prot"],
  munmap: ["buf"],
  fill: ["buf", "offset", "hex"],
  check: ["buf", "offset", "hex"],
  eventfd: ["as"],
  ioctl: ["fd", "req", "nr", "arg", "as", "bind"],
  pread: ["fd", "offset", "size"],
  pwrite: ["fd", "offset", "hex"],
  sysfs_write: ["path", "value"],
  sysfs_read: ["path"],
  readlink: ["path"],
};
const REQUIRED: Record<string, string[]> = {
  open: ["path", "flags", "as"],
  close: ["fd"],
  dup: ["fd", "as"],
  mmap: ["size", "as"],
  munmap: ["buf"],
  fill: ["buf", "offset", "hex"],
  check: ["buf", "offset", "hex"],
  eventfd: ["as"],
  ioctl: ["fd", "req", "nr", "arg"],
  pread: ["fd", "offset", "size"],
  pwrite: ["fd", "offset", "hex"],
  sysfs_write: ["path", "value"],
  sysfs_read: ["path"],
  readlink: ["path"],
};
export const OPEN_FLAGS = ["O_RDONLY", "O_WRONLY", "O_RDWR", "O_CLOEXEC", "O_NONBLOCK"];
const TYPES = /^(u8|u16|u32|u64|s32|s64|bytes:[1-9][0-9]*)$/;
/** The oracle agent's MAX_IO: the largest pread, pwrite, fill/check and bytes:N. */
const MAX_IO = 1 << 20;
/** The agent's check_field(): a nested struct at this depth is "nested too deeply". */
const MAX_NESTING = 4;

/** Integers beyond 2^53 keep their digits: JSON.parse would round them. */
const BIG = /([:[,]\s*)(-?\d{16,})(?=\s*[,\]}])/g;
export const BIG_PREFIX = "#int:";

export function parseScript(text: string, file: string): Script {
  const lines = text.split("\n");
  const fail = (line: number, detail: string, field?: string): never => {
    throw new InputError(file, detail, line, field);
  };
  const parsed: { v: Json; line: number }[] = [];
  lines.forEach((raw, i) => {
    if (raw.trim() === "") return;
    try {
      parsed.push({ v: JSON.parse(raw.replace(BIG, `$1"${BIG_PREFIX}$2"`)) as Json, line: i + 1 });
    } catch (e) {
      fail(i + 1, `not valid JSON (${(e as Error).message})`);
    }
  });
  const head = parsed[0];
  if (!head) return fail(1, 'empty script: expected a header line {"script":1,...}');
  const h = head.v;
  if (!h || typeof h !== "object" || Array.isArray(h) || h.script !== 1) {
    fail(head.line, 'expected the header {"script":1,"name":"..."}', "script");
  }
  const hdr = h as { [k: string]: Json };
  const bound = new Map<string, "fd" | "buf">();
  const ops: Op[] = [];
  for (const { v, line } of parsed.slice(1)) {
    if (!v || typeof v !== "object" || Array.isArray(v)) fail(line, "expected an operation object");
    const o = v as { [k: string]: Json };
    const op = o.op;
    if (typeof op !== "string" || !KEYS[op]) {
      fail(line, `expected one of ${Object.keys(KEYS).join(", ")}`, "op");
    }
    const name = op as string;
    for (const k of Object.keys(o)) {
      if (k !== "op" && k !== "note" && !(KEYS[name] as string[]).includes(k))
        fail(line, `not a field of ${name}`, k);
    }
    for (const k of REQUIRED[name] as string[])
      if (!(k in o)) fail(line, `${name} needs this field`, k);
    const over = opLimits(o);
    if (over) fail(line, over.detail, over.field);
    const ref = (k: string, want: "fd" | "buf") => {
      const x = o[k];
      if (typeof x === "string" && x.startsWith("$")) {
        const n = x.slice(1).split("+")[0] as string;
        const kind = bound.get(n);
        if (!kind) fail(line, `"$${n}" is used before it is bound`, k);
        if (kind !== want && want === "buf") fail(line, `"$${n}" is not a buffer`, k);
      } else if (want === "buf") fail(line, 'expected "$name" of an mmap', k);
      else if (
        typeof x !== "number" &&
        !(typeof x === "string" && /^(-?0x[0-9a-f]+|#int:-?\d+)$/i.test(x))
      ) {
        fail(line, 'expected an fd: "$name" or an integer', k);
      }
    };
    const str = (k: string) => typeof o[k] === "string" || fail(line, "expected a string", k);
    switch (name) {
      case "open":
        str("path");
        if (
          !Array.isArray(o.flags) ||
          o.flags.some((f) => typeof f !== "string" || !OPEN_FLAGS.includes(f))
        ) {
          fail(line, `expected a list of ${OPEN_FLAGS.join(", ")}`, "flags");
        }
        break;
      case "close":
      case "dup":
      case "pwrite":
        ref("fd", "fd");
        break;
      case "pread":
        ref("fd", "fd");
        if (intOf(o.size as Json) === null) fail(line, "expected an integer", "size");
        break;
      case "munmap":
      case "fill":
      case "check":
        ref("buf", "buf");
        break;
      case "ioctl":
        ref("fd", "fd");
        str("req");
        if (typeof o.nr !== "string" || !/^0x[0-9a-f]+$/i.test(o.nr))
          fail(line, 'expected the request number as "0x..."', "nr");
        {
          const known = REQUESTS.get(o.req as string);
          if (known !== undefined && known !== parseInt(o.nr as string, 16)) {
            fail(
              line,
              `${o.req as string} is 0x${known.toString(16)}, not ${o.nr as string}`,
              "nr",
            );
          }
        }
        checkArg(o.arg as Json, line, fail, bound);
        if (o.bind !== undefined) {
          if (!o.bind || typeof o.bind !== "object" || Array.isArray(o.bind))
            fail(line, 'expected {"field": "name"}', "bind");
          for (const b of Object.values(o.bind as object)) bound.set(String(b), "fd");
        }
        break;
      case "sysfs_write":
        str("path");
        str("value");
        break;
      case "sysfs_read":
      case "readlink":
        str("path");
        break;
    }
    for (const k of ["hex"]) {
      if (k in o && (typeof o[k] !== "string" || !/^([0-9a-f]{2})*$/i.test(o[k] as string)))
        fail(line, "expected hex bytes", k);
    }
    if (typeof o.as === "string") bound.set(o.as, name === "mmap" ? "buf" : "fd");
    else if ("as" in o) fail(line, "expected a name", "as");
    ops.push({ ...(o as object), op: name, line } as Op);
  }
  return {
    name: String(hdr.name ?? ""),
    ...(typeof hdr.note === "string" ? { note: hdr.note } : {}),
    ops,
  };
}

function checkArg(
  arg: Json,
  line: number,
  fail: (line: number, d: string, f?: string) => never,
  bound: Map<string, "fd" | "buf">,
): void {
  if (typeof arg === "number" || arg === "NULL") return;
  if (typeof arg === "string") {
    if (arg.startsWith("$")) {
      if (!bound.has(arg.slice(1).split("+")[0] as string))
        fail(line, `"${arg}" is used before it is bound`, "arg");
      return;
    }
    if (/^(-?0x[0-9a-f]+|#int:-?\d+)$/i.test(arg)) return;
    fail(line, 'expected an integer, "0x...", "$name", "NULL" or {"struct": [...]}', "arg");
  }
  checkStruct(arg, line, fail, bound, "arg");
}

/**
 * The oracle agent's limits, for an operation from a script or a scenario: at most MAX_IO
 * bytes read (pread), written (pwrite, fill, check) or in a bytes:N field, structs nested
 * at most MAX_NESTING deep. The field and what is wrong, or null.
 */
export function opLimits(o: { [k: string]: Json }): { field: string; detail: string } | null {
  const size = o.op === "pread" ? intOf(o.size ?? null) : null;
  if (size !== null && (size < 0n || size > BigInt(MAX_IO)))
    return { field: "size", detail: `expected an integer from 0 to ${MAX_IO}` };
  if (typeof o.hex === "string" && o.hex.length / 2 > MAX_IO)
    return { field: "hex", detail: `${o.hex.length / 2} bytes, at most ${MAX_IO} allowed` };
  return o.op === "ioctl" ? structLimits(o.arg ?? null, "arg", 0) : null;
}

function structLimits(
  v: Json,
  where: string,
  depth: number,
): { field: string; detail: string } | null {
  if (!v || typeof v !== "object" || Array.isArray(v) || !Array.isArray(v.struct)) return null;
  for (const [i, f] of v.struct.entries()) {
    if (!Array.isArray(f)) continue;
    const at = `${where}.struct[${i}]`;
    const [t, , val] = f;
    if (typeof t === "string" && /^bytes:\d+$/.test(t) && Number(t.slice(6)) > MAX_IO)
      return { field: at, detail: `${t}: at most bytes:${MAX_IO}` };
    if (val && typeof val === "object" && !Array.isArray(val)) {
      if (depth >= MAX_NESTING)
        return { field: at, detail: `structs nested more than ${MAX_NESTING} deep` };
      const r = structLimits(val, at, depth + 1);
      if (r) return r;
    }
  }
  return null;
}

/** An integer field's value: a JSON number, "0x..." or a big "#int:..."; null otherwise. */
function intOf(v: Json): bigint | null {
  if (typeof v === "number") return Number.isInteger(v) ? BigInt(v) : null;
  if (typeof v !== "string") return null;
  const m = /^(-?)(0x[0-9a-f]+)$/i.exec(v) ?? /^#int:(-?)(\d+)$/.exec(v);
  if (!m) return null;
  const n = BigInt(m[2] as string);
  return m[1] ? -n : n;
}

function checkStruct(
  v: Json,
  line: number,
  fail: (line: number, d: string, f?: string) => never,
  bound: Map<string, "fd" | "buf">,
  where: string,
): void {
  if (!v || typeof v !== "object" || Array.isArray(v) || !Array.isArray(v.struct)) {
    fail(line, 'expected {"struct": [[type, field, value], ...]}', where);
  }
  for (const [i, f] of (v as { struct: Json[] }).struct.entries()) {
    const at = `${where}.struct[${i}]`;
    if (
      !Array.isArray(f) ||
      f.length !== 3 ||
      typeof f[0] !== "string" ||
      typeof f[1] !== "string"
    ) {
      fail(line, "expected [type, name, value]", at);
    }
    const [t, , val] = f as [string, string, Json];
    if (!TYPES.test(t)) fail(line, "expected a type u8 u16 u32 u64 s32 s64 or bytes:N", at);
    if (t.startsWith("bytes:")) {
      if (
        val !== null &&
        (typeof val !== "string" ||
          !/^([0-9a-f]{2})*$/i.test(val) ||
          val.length / 2 > Number(t.slice(6)))
      ) {
        fail(line, `expected null or at most ${t.slice(6)} hex bytes`, at);
      }
    } else if (val && typeof val === "object" && !Array.isArray(val)) {
      if (t !== "u64") fail(line, "a nested struct goes in a u64 field", at);
      checkStruct(val, line, fail, bound, at);
    } else if (typeof val === "string" && val.startsWith("$")) {
      if (!bound.has(val.slice(1).split("+")[0] as string))
        fail(line, `"${val}" is used before it is bound`, at);
    } else if (
      typeof val !== "number" &&
      !(typeof val === "string" && /^(-?0x[0-9a-f]+|#int:-?\d+)$/i.test(val))
    ) {
      fail(line, "expected an integer value", at);
    }
  }
}
