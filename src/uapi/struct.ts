/**
 * C struct codecs: fields laid out with natural alignment (the x86-64 and arm64 ABI the
 * uAPI headers assume), total size rounded to the largest alignment. A codec reads and
 * writes the exact bytes, so structs captured from a real trace replay as they are.
 * u64/s64 fields are bigints; everything else is a number.
 */
export type FieldType = "u8" | "u16" | "u32" | "s32" | "u64" | "s64";

const SIZE: Record<FieldType, number> = { u8: 1, u16: 2, u32: 4, s32: 4, u64: 8, s64: 8 };

type Value<T extends FieldType> = T extends "u64" | "s64" ? bigint : number;

export type Decoded<F extends readonly (readonly [string, FieldType])[]> = {
  [K in F[number] as K[0]]: Value<K[1]>;
};

/** Little-endian field readers and writers over a byte array (no DataView per call). */
const scratch = new DataView(new ArrayBuffer(8));
const scratchBytes = new Uint8Array(scratch.buffer);

const getU32 = (b: Uint8Array, o: number): number =>
  ((b[o] as number) |
    ((b[o + 1] as number) << 8) |
    ((b[o + 2] as number) << 16) |
    ((b[o + 3] as number) << 24)) >>>
  0;

function get64(b: Uint8Array, o: number, signed: boolean): bigint {
  for (let i = 0; i < 8; i++) scratchBytes[i] = b[o + i] as number;
  return signed ? scratch.getBigInt64(0, true) : scratch.getBigUint64(0, true);
}

/** Stores through a Uint8Array keep the low 8 bits, as DataView's setters would. */
function put32(b: Uint8Array, o: number, v: number): void {
  b[o] = v;
  b[o + 1] = v >>> 8;
  b[o + 2] = v >>> 16;
  b[o + 3] = v >>> 24;
}

function put64(b: Uint8Array, o: number, v: bigint, signed: boolean): void {
  if (signed) scratch.setBigInt64(0, v, true);
  else scratch.setBigUint64(0, v, true);
  b.set(scratchBytes, o);
}

const READ: Record<FieldType, (b: Uint8Array, o: number) => number | bigint> = {
  u8: (b, o) => b[o] as number,
  u16: (b, o) => (b[o] as number) | ((b[o + 1] as number) << 8),
  u32: getU32,
  s32: (b, o) => getU32(b, o) | 0,
  u64: (b, o) => get64(b, o, false),
  s64: (b, o) => get64(b, o, true),
};

const WRITE: Record<FieldType, (b: Uint8Array, o: number, x: number | bigint) => void> = {
  u8: (b, o, x) => {
    b[o] = Number(x);
  },
  u16: (b, o, x) => {
    const v = Number(x);
    b[o] = v;
    b[o + 1] = v >> 8;
  },
  u32: (b, o, x) => put32(b, o, Number(x) >>> 0),
  s32: (b, o, x) => put32(b, o, Number(x) | 0),
  // DataView's 64-bit setters reduce modulo 2^64 (BigInt.asUintN / asIntN).
  u64: (b, o, x) => put64(b, o, typeof x === "bigint" ? x : BigInt(x), false),
  s64: (b, o, x) => put64(b, o, typeof x === "bigint" ? x : BigInt(x), true),
};

export class StructCodec<F extends readonly (readonly [string, FieldType])[]> {
  readonly size: number;
  readonly offsets: Record<string, number> = {};
  /** offsetofend() of each field. */
  private readonly ends: Record<string, number> = {};
  /**
   * The fields as parallel arrays, for the decode/encode loops (every ioctl runs them),
   * and a decoded value of all zeros: each decode starts as a copy of it, so every
   * decoded value of a struct has the same shape and its fields in declaration order.
   */
  private readonly names: string[] = [];
  private readonly offs: number[] = [];
  private readonly reads: ((b: Uint8Array, o: number) => number | bigint)[] = [];
  private readonly writes: ((b: Uint8Array, o: number, x: number | bigint) => void)[] = [];
  private readonly zero: Record<string, number | bigint> = {};

  constructor(
    readonly name: string,
    readonly fields: F,
  ) {
    let off = 0;
    let maxAlign = 1;
    for (const [n, t] of fields) {
      const s = SIZE[t];
      off = Math.ceil(off / s) * s;
      this.offsets[n] = off;
      this.ends[n] = off + s;
      this.names.push(n);
      this.offs.push(off);
      this.reads.push(READ[t]);
      this.writes.push(WRITE[t]);
      this.zero[n] = t === "u64" || t === "s64" ? 0n : 0;
      off += s;
      maxAlign = Math.max(maxAlign, s);
    }
    this.size = Math.ceil(off / maxAlign) * maxAlign;
  }

  /** Offset just past a field: the minimal argsz that reaches it (offsetofend). */
  end(field: F[number][0]): number {
    return this.ends[field] as number;
  }

  decode(bytes: Uint8Array): Decoded<F> {
    let b = bytes;
    if (bytes.length < this.size) {
      // Short input reads as if zero-padded.
      b = new Uint8Array(this.size);
      b.set(bytes);
    }
    // Only the first `size` bytes are looked at.
    const out = { ...this.zero };
    for (let i = 0; i < this.names.length; i++)
      out[this.names[i] as string] = (this.reads[i] as (typeof this.reads)[number])(
        b,
        this.offs[i] as number,
      );
    return out as Decoded<F>;
  }

  encode(v: Decoded<F>): Uint8Array {
    const buf = new Uint8Array(this.size);
    const rec = v as Record<string, number | bigint>;
    for (let i = 0; i < this.names.length; i++)
      (this.writes[i] as (typeof this.writes)[number])(
        buf,
        this.offs[i] as number,
        rec[this.names[i] as string] ?? 0,
      );
    return buf;
  }
}

export function struct<F extends readonly (readonly [string, FieldType])[]>(
  name: string,
  fields: F,
): StructCodec<F> {
  return new StructCodec(name, fields);
}
