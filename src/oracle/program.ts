/**
 * The host half of the oracle agent (native/agent/agent.c). A checked syscall script
 * (SCRIPT.md) is compiled here into the agent's program: names become slots, request
 * numbers and open flags are resolved, struct arguments are packed into bytes with only
 * the values the machine under test decides (fds, buffer addresses) left as patches. The
 * agent answers each operation with raw facts (return value, errno, the struct memory after
 * the call, the bytes read), and `formatResults` turns them into the result lines of
 * SCRIPT.md exactly as the reference agent writes them — key order, "fd"/"buf" words,
 * "$name" echoes, u64 as lowercase hex, s64 as decimal strings, C-style string escapes.
 */
import { InputError } from "../host/errors.js";
import { errnoName } from "../uapi/errno.js";
import {
  O_CLOEXEC,
  O_NONBLOCK,
  O_RDONLY,
  O_RDWR,
  O_WRONLY,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
} from "../uapi/syscalls.js";
import { BIG_PREFIX, type Json, type Op, type Script } from "../userspace/replay/script.js";

const FLAGS: Record<string, number> = { O_RDONLY, O_WRONLY, O_RDWR, O_CLOEXEC, O_NONBLOCK };
const U64 = (1n << 64n) - 1n;

type Field = [string, string, Json];

/** One packed struct: where each field sits and how it reads back. */
interface Layout {
  fields: Field[];
  offs: number[];
  sizes: number[];
  /** Per field: index into the op's patch values when the agent wrote the value. */
  patch: (number | null)[];
  /** Per field: the nested struct's block. */
  sub: (number | null)[];
}

/** What formatting needs to know about one operation. */
interface Plan {
  op: string;
  req?: string;
  /** ioctl: the blocks in the agent's order (block 0 is the argument). */
  blocks?: Layout[];
  bind?: Record<string, Json>;
  as?: boolean;
}

export interface Program {
  /** The agent's input. */
  text: string;
  plans: Plan[];
}

const hexOf = (b: Uint8Array | string) => {
  const h =
    typeof b === "string" ? Buffer.from(b, "utf8").toString("hex") : Buffer.from(b).toString("hex");
  return h === "" ? "-" : h;
};

/** A script's integer value (Runner.int), for what the host already knows. */
export function literal(v: Json): bigint {
  if (typeof v === "number") return BigInt.asUintN(64, BigInt(v));
  if (typeof v !== "string" || v === "NULL") return 0n;
  if (v.startsWith(BIG_PREFIX)) return BigInt.asUintN(64, BigInt(v.slice(BIG_PREFIX.length)));
  const neg = v.startsWith("-");
  const x = BigInt(neg ? v.slice(1) : v);
  return BigInt.asUintN(64, neg ? -x : x);
}

function typeSize(t: string): number {
  return t.startsWith("bytes:") ? Number(t.slice(6)) : Number(t.slice(1)) / 8;
}

export function compile(script: Script, file = script.name): Program {
  const slots = new Map<string, number>();
  const kinds = new Map<string, "fd" | "buf">();
  const lines: string[] = [];
  const plans: Plan[] = [];

  const slot = (name: string, kind?: "fd" | "buf") => {
    let s = slots.get(name);
    if (s === undefined) slots.set(name, (s = slots.size));
    if (kind) kinds.set(name, kind);
    return s;
  };
  const value = (v: Json): string => {
    if (typeof v === "string" && v.startsWith("$")) {
      const [name, off] = v.slice(1).split("+") as [string, string | undefined];
      const s = slot(name);
      if (kinds.get(name) === "fd" || !off) return `$${s}`;
      return `$${s}+${BigInt.asUintN(64, BigInt(off)).toString(16)}`;
    }
    return `=${literal(v).toString(16)}`;
  };
  const num = (v: Json) => literal(v).toString(10);
  const bufSlot = (v: Json) => slot((v as string).slice(1).split("+")[0] as string);

  for (const op of script.ops) {
    const plan: Plan = { op: op.op };
    switch (op.op) {
      case "open": {
        const flags = (op.flags as string[]).reduce((f, n) => f | (FLAGS[n] ?? 0), 0);
        lines.push(`open ${slot(op.as as string, "fd")} ${flags} ${hexOf(op.path as string)}`);
        break;
      }
      case "close":
        lines.push(`close ${value(op.fd as Json)}`);
        break;
      case "dup":
        lines.push(`dup ${value(op.fd as Json)} ${slot(op.as as string, "fd")}`);
        break;
      case "eventfd":
        lines.push(`eventfd ${slot(op.as as string, "fd")}`);
        break;
      case "mmap": {
        const prot =
          op.prot === "r" ? PROT_READ : op.prot === "none" ? PROT_NONE : PROT_READ | PROT_WRITE;
        lines.push(`mmap ${slot(op.as as string, "buf")} ${num(op.size as Json)} ${prot}`);
        break;
      }
      case "munmap":
        lines.push(`munmap ${bufSlot(op.buf as Json)}`);
        break;
      case "fill":
      case "check":
        lines.push(
          `${op.op} ${bufSlot(op.buf as Json)} ${num(op.offset as Json)} ${hexOf(Buffer.from(op.hex as string, "hex"))}`,
        );
        break;
      case "pread":
        lines.push(
          `pread ${value(op.fd as Json)} ${num(op.offset as Json)} ${num(op.size as Json)}`,
        );
        break;
      case "pwrite":
        lines.push(
          `pwrite ${value(op.fd as Json)} ${num(op.offset as Json)} ${hexOf(Buffer.from(op.hex as string, "hex"))}`,
        );
        break;
      case "sysfs_write":
        lines.push(`swrite ${hexOf(op.path as string)} ${hexOf(op.value as string)}`);
        break;
      case "sysfs_read":
        lines.push(`sread ${hexOf(op.path as string)}`);
        break;
      case "readlink":
        lines.push(`rlink ${hexOf(op.path as string)}`);
        break;
      case "ioctl":
        compileIoctl(op, plan, lines, value, slot, file);
        break;
      default:
        throw new InputError(file, `unknown operation ${op.op}`, op.line, "op");
    }
    plans.push(plan);
  }
  const head = `passthru-agent 1 ${slots.size} ${plans.length}`;
  return { text: [head, ...lines].join("\n") + "\n", plans };
}

function compileIoctl(
  op: Op,
  plan: Plan,
  lines: string[],
  value: (v: Json) => string,
  slot: (name: string, kind?: "fd" | "buf") => number,
  file: string,
): void {
  plan.req = op.req as string;
  const arg = op.arg as Json;
  const fd = value(op.fd as Json);
  let argTok: string;
  const blocks: Layout[] = [];
  const blockLines: string[] = [];
  const patches: string[] = [];
  if (arg && typeof arg === "object" && !Array.isArray(arg)) {
    const pack = (st: { struct: Field[] }): number => {
      const k = blocks.length;
      const fields = st.struct;
      const sizes = fields.map(([t]) => typeSize(t));
      const aligns = fields.map(([t], i) => (t.startsWith("bytes:") ? 1 : (sizes[i] as number)));
      const offs: number[] = [];
      let off = 0;
      fields.forEach((_, i) => {
        off = Math.ceil(off / (aligns[i] as number)) * (aligns[i] as number);
        offs.push(off);
        off += sizes[i] as number;
      });
      const maxAlign = Math.max(1, ...aligns);
      const size = Math.ceil(off / maxAlign) * maxAlign;
      const layout: Layout = { fields, offs, sizes, patch: [], sub: [] };
      blocks.push(layout);
      const mem = Buffer.alloc(size);
      const pending: [number, string][] = [];
      fields.forEach(([t, , val], i) => {
        layout.patch.push(null);
        layout.sub.push(null);
        const o = offs[i] as number;
        const n = sizes[i] as number;
        if (t.startsWith("bytes:")) {
          if (typeof val === "string") Buffer.from(val, "hex").subarray(0, n).copy(mem, o);
          return;
        }
        if (val && typeof val === "object" && !Array.isArray(val)) {
          const inner = pack(val as { struct: Field[] });
          layout.sub[i] = inner;
          pending.push([i, `@${inner}`]);
        } else if (typeof val === "string" && val.startsWith("$")) {
          pending.push([i, value(val)]);
        } else {
          const x = literal(val);
          for (let b = 0; b < n; b++) mem[o + b] = Number((x >> BigInt(8 * b)) & 0xffn);
        }
      });
      blockLines[k] = `block ${size} ${hexOf(mem)}`;
      for (const [i, tok] of pending) {
        layout.patch[i] = patches.length;
        patches.push(`patch ${k} ${offs[i]} ${sizes[i]} ${tok}`);
      }
      return k;
    };
    pack(arg as { struct: Field[] });
    argTok = "@0";
  } else {
    argTok = value(arg);
  }
  lines.push(...blockLines, ...patches);
  const bind = op.bind as Record<string, Json> | undefined;
  if (bind) {
    const top = blocks[0];
    for (const [field, name] of Object.entries(bind)) {
      const i = top ? top.fields.findIndex(([, n]) => n === field) : -1;
      const t = top?.fields[i]?.[0];
      if (!top || i < 0 || !t || t.startsWith("bytes:"))
        throw new InputError(
          file,
          `"${field}" is not an integer field of the struct`,
          op.line,
          "bind",
        );
      const signed = t.startsWith("s") ? 1 : 0;
      lines.push(`bindf 0 ${top.offs[i]} ${top.sizes[i]} ${signed} ${slot(String(name), "fd")}`);
    }
    plan.bind = bind;
  }
  const as = op.as as string | undefined;
  plan.as = !!as;
  plan.blocks = blocks;
  lines.push(
    `ioctl ${fd} ${parseInt(op.nr as string, 16).toString(16)} ${argTok} ${as ? slot(as, "fd") : "-"}`,
  );
}

/* ------------------------------------------------------------ results */

/** A JSON string as the reference agent writes it: bytes, C escapes, \u00XX above 0x7f. */
export function jstr(s: string | Uint8Array): string {
  const b = typeof s === "string" ? Buffer.from(s, "utf8") : s;
  let o = '"';
  for (const c of b) {
    if (c === 0x22) o += '\\"';
    else if (c === 0x5c) o += "\\\\";
    else if (c === 0x08) o += "\\b";
    else if (c === 0x0c) o += "\\f";
    else if (c === 0x0a) o += "\\n";
    else if (c === 0x0d) o += "\\r";
    else if (c === 0x09) o += "\\t";
    else if (c < 0x20 || c >= 0x80) o += `\\u${c.toString(16).padStart(4, "0")}`;
    else o += String.fromCharCode(c);
  }
  return o + '"';
}

/** One raw answer line of the agent: `r RET ERRNO [pHEX]... [bHEX]... [dHEX]`. */
interface Raw {
  ret: bigint;
  errno: number;
  patches: bigint[];
  blocks: Buffer[];
  data?: Buffer;
}

function parseRaw(line: string): Raw {
  const t = line.split(" ");
  if (t[0] !== "r" || t.length < 3) throw new Error(`not an agent answer: ${line.slice(0, 80)}`);
  const raw: Raw = { ret: BigInt(t[1] as string), errno: Number(t[2]), patches: [], blocks: [] };
  for (const w of t.slice(3)) {
    if (w[0] === "p") raw.patches.push(BigInt(`0x${w.slice(1)}`));
    else if (w[0] === "b") raw.blocks.push(Buffer.from(w.slice(1), "hex"));
    else if (w[0] === "d") raw.data = Buffer.from(w.slice(1), "hex");
  }
  return raw;
}

function readInt(b: Buffer, off: number, n: number): bigint {
  let v = 0n;
  for (let i = 0; i < n; i++) v |= BigInt(b[off + i] ?? 0) << BigInt(8 * i);
  return v;
}

function readback(
  raw: Raw,
  blocks: Layout[],
  k: number,
  bind: Record<string, Json> | undefined,
  ok: boolean,
): string {
  const l = blocks[k] as Layout;
  const mem = raw.blocks[k] ?? Buffer.alloc(0);
  const parts = l.fields.map(([t, name, val], i) => {
    const n = l.sizes[i] as number;
    const o = l.offs[i] as number;
    const key = jstr(name) + ":";
    if (t.startsWith("bytes:")) return key + `"${mem.subarray(o, o + n).toString("hex")}"`;
    const now = readInt(mem, o, n);
    const p = l.patch[i];
    const input = p === null || p === undefined ? null : (raw.patches[p] ?? null);
    const sub = l.sub[i];
    if (sub !== null && sub !== undefined && now === input)
      return key + readback(raw, blocks, sub, undefined, ok);
    if (bind && typeof bind[name] === "string" && ok) return key + '"fd"';
    const mask = n === 8 ? U64 : (1n << BigInt(n * 8)) - 1n;
    if (
      typeof val === "string" &&
      val.startsWith("$") &&
      input !== null &&
      (now & mask) === (input & mask)
    )
      return key + jstr(val);
    const signed = t.startsWith("s");
    if (n === 8)
      return key + (signed ? `"${BigInt.asIntN(64, now).toString()}"` : `"0x${now.toString(16)}"`);
    return key + (signed ? BigInt.asIntN(n * 8, now).toString() : now.toString());
  });
  return `{${parts.join(",")}}`;
}

/** The SCRIPT.md result lines for the agent's raw answers, one per operation. */
export function formatResults(prog: Program, rawLines: string[]): string[] {
  return prog.plans.map((plan, idx) => {
    const raw = parseRaw(rawLines[idx] as string);
    let o = `{"i":${idx + 1},"op":${jstr(plan.op)}`;
    if (plan.req !== undefined) o += `,"req":${jstr(plan.req)}`;
    const word =
      plan.op === "open" ||
      plan.op === "dup" ||
      plan.op === "eventfd" ||
      (plan.op === "ioctl" && plan.as)
        ? "fd"
        : plan.op === "mmap"
          ? "buf"
          : null;
    const ok = raw.ret >= 0n;
    o += `,"ret":${ok && word ? `"${word}"` : raw.ret.toString()}`;
    o += `,"errno":${ok ? "null" : jstr(errnoName(raw.errno))}`;
    if (plan.blocks && plan.blocks.length)
      o += `,"out":${readback(raw, plan.blocks, 0, plan.bind, ok)}`;
    if (raw.data !== undefined) {
      let d: string;
      if (plan.op === "sysfs_read") {
        let b = raw.data;
        if (b.length && b[b.length - 1] === 0x0a) b = b.subarray(0, -1);
        d = jstr(b);
      } else if (plan.op === "readlink") {
        const s = raw.data;
        d = jstr(s.subarray(s.lastIndexOf(0x2f) + 1));
      } else d = `"${raw.data.toString("hex")}"`;
      o += `,"data":${d}`;
    }
    return o + "}";
  });
}

/** The raw answer lines between the agent's framing lines, checked for count. */
export function extractAnswers(text: string, ops: number): { answers: string[]; error?: string } {
  const lines = text.replace(/\r/g, "").split("\n");
  const start = lines.findIndex((l) => l.startsWith("@@PASSTHRU results "));
  if (start < 0) return { answers: [], error: "the agent wrote no results" };
  const answers: string[] = [];
  for (const l of lines.slice(start + 1)) {
    if (l.startsWith("@@PASSTHRU end ")) {
      const n = Number(l.slice(15));
      if (n !== ops || answers.length !== ops)
        return {
          answers,
          error: `${answers.length} answers, the agent ran ${n}, the script has ${ops}`,
        };
      return { answers };
    }
    if (l.startsWith("r ")) answers.push(l);
  }
  return { answers, error: `the agent stopped after ${answers.length} of ${ops} operations` };
}
