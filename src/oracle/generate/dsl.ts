/**
 * Writing syscall scripts from the uAPI modules: request numbers come from the model's
 * request table (uapi/requests.ts), struct arguments from the struct codecs (field names,
 * types and order), so a generated script says what the model's uAPI says and the agent's
 * check (`nr` equal to the header's number) holds by construction.
 */
import { REQUESTS } from "../../uapi/requests.js";
import type { FieldType, StructCodec } from "../../uapi/struct.js";
import type { Json } from "../../userspace/replay/script.js";
import type { CaseSpec } from "../case.js";

export type Codec = StructCodec<readonly (readonly [string, FieldType])[]>;
export type Struct = { struct: [string, string, Json][] };

/** A value too large for a JSON number is written as a hex string. */
export function v64(x: bigint | number): Json {
  const b = BigInt(x);
  return b >= 0n && b <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(b)
    : `0x${BigInt.asUintN(64, b).toString(16)}`;
}

/**
 * A struct argument from a codec: every field, in order, with `values` where given and 0
 * elsewhere; `tail` appends a bytes:N field (capability chains, data[] arrays).
 */
export function st(
  codec: Codec,
  values: Record<string, Json | Struct> = {},
  opts: { tail?: { name: string; size: number; hex?: string | null } } = {},
): Struct {
  const fields: [string, string, Json][] = codec.fields.map(([name, type]) => [
    type,
    name,
    (values[name] ?? 0) as Json,
  ]);
  for (const k of Object.keys(values))
    if (!codec.fields.some(([n]) => n === k)) throw new Error(`${codec.name} has no field ${k}`);
  if (opts.tail) fields.push([`bytes:${opts.tail.size}`, opts.tail.name, opts.tail.hex ?? null]);
  return { struct: fields };
}

/** A struct given field by field (for shapes no codec describes, like a lone s32 fd). */
export function raw(...fields: [string, string, Json | Struct][]): Struct {
  return { struct: fields as [string, string, Json][] };
}

/** A NUL-terminated string as a bytes:N field value. */
export function cstr(s: string, size = s.length + 1): [string, string, Json] {
  const b = Buffer.alloc(size);
  b.write(s, "latin1");
  return [`bytes:${size}`, "name", b.toString("hex")];
}

export function nr(req: string): string {
  const n = REQUESTS.get(req);
  if (n === undefined) throw new Error(`unknown request ${req}`);
  return `0x${n.toString(16)}`;
}

export interface IoctlOpts {
  as?: string;
  bind?: Record<string, string>;
  note?: string;
}

export class Script {
  readonly ops: Record<string, Json>[] = [];
  constructor(
    readonly name: string,
    readonly note: string,
  ) {}

  op(o: Record<string, Json>, note?: string): this {
    this.ops.push(note ? { ...o, note } : o);
    return this;
  }
  open(path: string, as: string, flags: string[] = ["O_RDWR", "O_CLOEXEC"], note?: string): this {
    return this.op({ op: "open", path, flags, as }, note);
  }
  close(fd: string | number, note?: string): this {
    return this.op({ op: "close", fd }, note);
  }
  dup(fd: string, as: string, note?: string): this {
    return this.op({ op: "dup", fd, as }, note);
  }
  eventfd(as: string): this {
    return this.op({ op: "eventfd", as });
  }
  mmap(size: number, as: string, prot?: "rw" | "r" | "none"): this {
    return this.op(prot ? { op: "mmap", size, as, prot } : { op: "mmap", size, as });
  }
  munmap(buf: string): this {
    return this.op({ op: "munmap", buf: `$${buf}` });
  }
  fill(buf: string, offset: number, hex: string): this {
    return this.op({ op: "fill", buf: `$${buf}`, offset, hex });
  }
  check(buf: string, offset: number, hex: string): this {
    return this.op({ op: "check", buf: `$${buf}`, offset, hex });
  }
  ioctl(fd: string | number, req: string, arg: Json | Struct, o: IoctlOpts = {}): this {
    const rec: Record<string, Json> = { op: "ioctl", fd, req, nr: nr(req), arg: arg as Json };
    if (o.as) rec.as = o.as;
    if (o.bind) rec.bind = o.bind;
    return this.op(rec, o.note);
  }
  pread(fd: string, offset: number, size: number, note?: string): this {
    return this.op({ op: "pread", fd, offset, size }, note);
  }
  pwrite(fd: string, offset: number, hex: string, note?: string): this {
    return this.op({ op: "pwrite", fd, offset, hex }, note);
  }
  sysfsWrite(path: string, value: string, note?: string): this {
    return this.op({ op: "sysfs_write", path, value }, note);
  }
  sysfsRead(path: string, note?: string): this {
    return this.op({ op: "sysfs_read", path }, note);
  }
  readlink(path: string, note?: string): this {
    return this.op({ op: "readlink", path }, note);
  }

  get length(): number {
    return this.ops.length;
  }

  text(): string {
    const head = { script: 1, name: this.name, note: this.note };
    return [head, ...this.ops].map((o) => JSON.stringify(o)).join("\n") + "\n";
  }
}

export interface GeneratedCase {
  name: string;
  family: string;
  spec: CaseSpec;
  script: Script;
}
