/**
 * Runs a syscall script against a Syscalls implementation and writes result lines exactly
 * as the oracle agent (oracle/agent/script.c) does: `i, op, req, ret, errno, out, data` in
 * that order; "fd"/"buf" for successful fd- and buffer-producing calls; struct arguments
 * packed with natural alignment into fresh memory followed by 64 KiB of zeros and read
 * back field by field ("$name" values echoed when unchanged, u64 as "0x..", s64 as a
 * decimal string); script buffers at fixed, never reused, 2 MiB-aligned addresses.
 */
import { errnoName } from "../../uapi/errno.js";
import {
  MAP_ANONYMOUS,
  MAP_FIXED_NOREPLACE,
  MAP_PRIVATE,
  O_CLOEXEC,
  O_NONBLOCK,
  O_RDONLY,
  O_RDWR,
  O_WRONLY,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
  type Syscalls,
} from "../../uapi/syscalls.js";
import { BIG_PREFIX, type Json, type Op, type Script } from "./script.js";

const BUF_BASE = 0x200000000000n;
const BUF_ALIGN = 2n << 20n;
const BUF_GAP = 64n << 10n;
const GUARD = 64 * 1024;
const MAX_IO = 1 << 20;

const FLAGS: Record<string, number> = {
  O_RDONLY,
  O_WRONLY,
  O_RDWR,
  O_CLOEXEC,
  O_NONBLOCK,
};

interface Binding {
  kind: "fd" | "buf";
  fd: number;
  addr: bigint;
  size: number;
  mapped: boolean;
}

interface Packed {
  addr: bigint;
  maplen: number;
  fields: [string, string, Json][];
  offs: number[];
  sizes: number[];
  /** The integer packed per field. */
  input: bigint[];
  sub: (Packed | null)[];
}

const alignUp = (x: number, a: number) => Math.ceil(x / a) * a;
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

export class Runner {
  private readonly names = new Map<string, Binding>();
  private nextBuf = BUF_BASE;

  constructor(private readonly sys: Syscalls) {}

  run(script: Script): string[] {
    return script.ops.map((op, i) => JSON.stringify(this.step(op, i + 1)));
  }

  private bind(name: string, kind: "fd" | "buf"): Binding {
    const b: Binding = { kind, fd: -1, addr: 0n, size: 0, mapped: false };
    this.names.set(name, b);
    return b;
  }

  /** A script value as the integer it stands for ("$name[+off]" → that fd or address). */
  resolve(v: Json): bigint {
    if (
      typeof v === "string" &&
      v.startsWith("$") &&
      !this.names.has(v.slice(1).split("+")[0] as string)
    )
      throw new Error(`${v} is not bound`);
    return this.int(v);
  }

  /** int_value(): a number, "0x..", "$name[+off]", "NULL" → 64-bit unsigned. */
  private int(v: Json): bigint {
    if (typeof v === "number") return BigInt.asUintN(64, BigInt(v));
    if (typeof v !== "string") return 0n;
    if (v.startsWith(BIG_PREFIX)) return BigInt.asUintN(64, BigInt(v.slice(BIG_PREFIX.length)));
    if (v.startsWith("$")) {
      const [name, off] = v.slice(1).split("+") as [string, string | undefined];
      const b = this.names.get(name) as Binding;
      if (b.kind === "fd") return BigInt.asUintN(64, BigInt(b.fd));
      return b.addr + (off ? BigInt(off) : 0n);
    }
    if (v === "NULL") return 0n;
    const neg = v.startsWith("-");
    const x = BigInt(neg ? v.slice(1) : v);
    return BigInt.asUintN(64, neg ? -x : x);
  }

  private fd(op: Op): number {
    return Number(BigInt.asIntN(32, this.int(op.fd as Json)));
  }

  /** Run one operation; the result record of SCRIPT.md. */
  step(op: Op, i: number): Record<string, Json> {
    const out: Record<string, Json> = { i, op: op.op };
    const ret = (r: number, success?: string) => {
      out.ret = r >= 0 && success ? success : r < 0 ? -1 : r;
      out.errno = r < 0 ? errnoName(r) : null;
    };
    switch (op.op) {
      case "open": {
        const flags = (op.flags as string[]).reduce((f, n) => f | (FLAGS[n] ?? 0), 0);
        const fd = this.sys.open(op.path as string, flags);
        this.bind(op.as as string, "fd").fd = fd < 0 ? -1 : fd;
        ret(fd, "fd");
        break;
      }
      case "close":
        ret(this.sys.close(this.fd(op)));
        break;
      case "dup": {
        const fd = this.sys.dup(this.fd(op));
        this.bind(op.as as string, "fd").fd = fd < 0 ? -1 : fd;
        ret(fd, "fd");
        break;
      }
      case "eventfd": {
        const fd = this.sys.eventfd(0, 0);
        this.bind(op.as as string, "fd").fd = fd < 0 ? -1 : fd;
        ret(fd, "fd");
        break;
      }
      case "mmap": {
        const size = Number(this.int(op.size as Json));
        const prot =
          op.prot === "r" ? PROT_READ : op.prot === "none" ? PROT_NONE : PROT_READ | PROT_WRITE;
        const a = this.sys.mmap(
          this.nextBuf,
          size,
          prot,
          MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
          -1,
          0n,
        );
        const b = this.bind(op.as as string, "buf");
        b.size = size;
        if (a >= 0n) {
          b.addr = a;
          b.mapped = true;
          const next = this.nextBuf + BigInt(size) + BUF_GAP;
          this.nextBuf = ((next + BUF_ALIGN - 1n) / BUF_ALIGN) * BUF_ALIGN;
        }
        ret(a < 0n ? Number(a) : 0, "buf");
        break;
      }
      case "munmap": {
        const b = this.buf(op);
        if (!b.mapped) {
          ret(-22);
          break;
        }
        const r = this.sys.munmap(b.addr, b.size);
        if (r === 0) b.mapped = false;
        ret(r);
        break;
      }
      case "fill":
      case "check": {
        const b = this.buf(op);
        const off = this.int(op.offset as Json);
        const want = Buffer.from(op.hex as string, "hex");
        if (!b.mapped) {
          ret(-14);
          break;
        }
        if (op.op === "fill") {
          ret(this.sys.poke(b.addr + off, want) ? 0 : -14);
          break;
        }
        const got = this.sys.peek(b.addr + off, want.length);
        if (!got) ret(-14);
        else if (Buffer.compare(Buffer.from(got), want) === 0) ret(0);
        else {
          ret(1);
          out.data = hex(got);
        }
        break;
      }
      case "ioctl":
        this.ioctl(op, out, ret);
        break;
      case "pread": {
        const size = Number(this.int(op.size as Json));
        const scratch = this.scratch(Math.max(size, 1));
        const n = this.sys.pread(this.fd(op), scratch.addr, size, this.int(op.offset as Json));
        ret(n);
        if (n >= 0) out.data = hex(this.sys.peek(scratch.addr, n) ?? new Uint8Array(0));
        this.sys.munmap(scratch.addr, scratch.len);
        break;
      }
      case "pwrite": {
        const data = Buffer.from(op.hex as string, "hex");
        const scratch = this.scratch(Math.max(data.length, 1));
        this.sys.poke(scratch.addr, data);
        ret(this.sys.pwrite(this.fd(op), scratch.addr, data.length, this.int(op.offset as Json)));
        this.sys.munmap(scratch.addr, scratch.len);
        break;
      }
      case "sysfs_write": {
        const fd = this.sys.open(op.path as string, O_WRONLY | O_CLOEXEC);
        if (fd < 0) {
          ret(fd);
          break;
        }
        const data = Buffer.from(op.value as string, "utf8");
        const scratch = this.scratch(Math.max(data.length, 1));
        this.sys.poke(scratch.addr, data);
        const w = this.sys.write(fd, scratch.addr, data.length);
        this.sys.munmap(scratch.addr, scratch.len);
        this.sys.close(fd);
        ret(w < 0 ? w : 0);
        break;
      }
      case "sysfs_read": {
        const fd = this.sys.open(op.path as string, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
          ret(fd);
          break;
        }
        const scratch = this.scratch(4096);
        const chunks: Uint8Array[] = [];
        let total = 0;
        let n: number;
        while ((n = this.sys.read(fd, scratch.addr, 4096)) > 0 && total < MAX_IO) {
          chunks.push(this.sys.peek(scratch.addr, n) as Uint8Array);
          total += n;
        }
        this.sys.munmap(scratch.addr, scratch.len);
        this.sys.close(fd);
        if (n < 0) {
          ret(n);
          break;
        }
        let text = Buffer.concat(chunks).toString("latin1");
        if (text.endsWith("\n")) text = text.slice(0, -1);
        ret(0);
        out.data = [...text]
          .map((c) => (c.charCodeAt(0) < 0x80 ? c : `\\u00${c.charCodeAt(0).toString(16)}`))
          .join("");
        break;
      }
      case "readlink": {
        const t = this.sys.readlink(op.path as string);
        if (typeof t === "number") ret(t);
        else {
          ret(0);
          out.data = t.slice(t.lastIndexOf("/") + 1);
        }
        break;
      }
    }
    return out;
  }

  private buf(op: Op): Binding {
    return this.names.get((op.buf as string).slice(1).split("+")[0] as string) as Binding;
  }

  /** Memory the runner itself uses (the agent's heap): not a script buffer. */
  private scratch(len: number): { addr: bigint; len: number } {
    const maplen = alignUp(len, 4096) + GUARD;
    const addr = this.sys.mmap(
      0n,
      maplen,
      PROT_READ | PROT_WRITE,
      MAP_PRIVATE | MAP_ANONYMOUS,
      -1,
      0n,
    );
    return { addr, len: maplen };
  }

  private pack(st: { struct: [string, string, Json][] }): Packed {
    const fields = st.struct;
    const sizes = fields.map(([t]) =>
      t.startsWith("bytes:") ? Number(t.slice(6)) : Number(t.slice(1)) / 8,
    );
    const aligns = fields.map(([t], k) => (t.startsWith("bytes:") ? 1 : (sizes[k] as number)));
    const offs: number[] = [];
    let off = 0;
    fields.forEach((_, k) => {
      off = alignUp(off, aligns[k] as number);
      offs.push(off);
      off += sizes[k] as number;
    });
    const size = alignUp(off, Math.max(1, ...aligns));
    const maplen = alignUp(Math.max(size, 1), 4096) + GUARD;
    const addr = this.sys.mmap(
      0n,
      maplen,
      PROT_READ | PROT_WRITE,
      MAP_PRIVATE | MAP_ANONYMOUS,
      -1,
      0n,
    );
    const mem = new Uint8Array(size);
    const dv = new DataView(mem.buffer);
    const input: bigint[] = [];
    const sub: (Packed | null)[] = [];
    fields.forEach(([t, , val], k) => {
      const o = offs[k] as number;
      const n = sizes[k] as number;
      sub.push(null);
      if (t.startsWith("bytes:")) {
        if (typeof val === "string") mem.set(Buffer.from(val, "hex").subarray(0, n), o);
        input.push(0n);
        return;
      }
      let v: bigint;
      if (val && typeof val === "object" && !Array.isArray(val)) {
        const inner = this.pack(val as { struct: [string, string, Json][] });
        sub[k] = inner;
        v = inner.addr;
      } else v = this.int(val);
      input.push(v);
      if (n === 1) dv.setUint8(o, Number(v & 0xffn));
      else if (n === 2) dv.setUint16(o, Number(v & 0xffffn), true);
      else if (n === 4) dv.setUint32(o, Number(v & 0xffffffffn), true);
      else dv.setBigUint64(o, v, true);
    });
    this.sys.poke(addr, mem);
    return { addr, maplen, fields, offs, sizes, input, sub };
  }

  private readback(
    p: Packed,
    bind: Record<string, Json> | undefined,
    ok: boolean,
  ): Record<string, Json> {
    const out: Record<string, Json> = {};
    p.fields.forEach(([t, name, val], k) => {
      const n = p.sizes[k] as number;
      const src = this.sys.peek(p.addr + BigInt(p.offs[k] as number), n) ?? new Uint8Array(n);
      if (t.startsWith("bytes:")) {
        out[name] = hex(src);
        return;
      }
      const dv = new DataView(src.buffer, src.byteOffset, n);
      const signed = t.startsWith("s");
      const now =
        n === 1
          ? BigInt(dv.getUint8(0))
          : n === 2
            ? BigInt(dv.getUint16(0, true))
            : n === 4
              ? BigInt(dv.getUint32(0, true))
              : dv.getBigUint64(0, true);
      const sub = p.sub[k];
      if (sub && now === p.input[k]) {
        out[name] = this.readback(sub, undefined, ok);
        return;
      }
      const bname = bind?.[name];
      if (typeof bname === "string" && ok) {
        const b = this.bind(bname, "fd");
        b.fd = Number(signed ? BigInt.asIntN(n * 8, now) : now);
        out[name] = "fd";
        return;
      }
      const mask = n === 8 ? (1n << 64n) - 1n : (1n << BigInt(n * 8)) - 1n;
      if (
        typeof val === "string" &&
        val.startsWith("$") &&
        (now & mask) === ((p.input[k] as bigint) & mask)
      ) {
        out[name] = val;
        return;
      }
      if (n === 8) out[name] = signed ? BigInt.asIntN(64, now).toString() : `0x${now.toString(16)}`;
      else out[name] = Number(signed ? BigInt.asIntN(n * 8, now) : now);
    });
    return out;
  }

  private unpack(p: Packed): void {
    for (const s of p.sub) if (s) this.unpack(s);
    this.sys.munmap(p.addr, p.maplen);
  }

  private ioctl(op: Op, out: Record<string, Json>, ret: (r: number, s?: string) => void): void {
    out.req = op.req as string;
    const arg = op.arg as Json;
    const packed =
      arg && typeof arg === "object" && !Array.isArray(arg)
        ? this.pack(arg as { struct: [string, string, Json][] })
        : null;
    const a = packed ? packed.addr : this.int(arg);
    const rc = this.sys.ioctl(this.fd(op), parseInt(op.nr as string, 16), a);
    const as = op.as as string | undefined;
    const bind = op.bind as Record<string, Json> | undefined;
    if (as) this.bind(as, "fd").fd = rc >= 0 ? rc : -1;
    if (bind && rc < 0) for (const n of Object.values(bind)) this.bind(String(n), "fd");
    ret(rc, as ? "fd" : undefined);
    if (packed) {
      out.out = this.readback(packed, bind, rc >= 0);
      this.unpack(packed);
    }
  }
}
