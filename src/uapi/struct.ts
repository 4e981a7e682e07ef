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

export class StructCodec<F extends readonly (readonly [string, FieldType])[]> {
  readonly size: number;
  readonly offsets: Record<string, number> = {};
  /** The fields as parallel arrays, for the decode/encode loops (every ioctl runs them). */
  private readonly names: string[] = [];
  private readonly offs: number[] = [];
  private readonly types: FieldType[] = [];

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
      this.names.push(n);
      this.offs.push(off);
      this.types.push(t);
      off += s;
      maxAlign = Math.max(maxAlign, s);
    }
    this.size = Math.ceil(off / maxAlign) * maxAlign;
  }

  /** Offset just past a field: the minimal argsz that reaches it (offsetofend). */
  end(field: F[number][0]): number {
    const f = this.fields.find(([n]) => n === field) as readonly [string, FieldType];
    return (this.offsets[field] as number) + SIZE[f[1]];
  }

  decode(bytes: Uint8Array): Decoded<F> {
    let dv: DataView;
    if (bytes.length >= this.size) {
      // Read in place: only the first `size` bytes are looked at.
      dv = new DataView(bytes.buffer, bytes.byteOffset, this.size);
    } else {
      // Short input reads as if zero-padded.
      const buf = new Uint8Array(this.size);
      buf.set(bytes);
      dv = new DataView(buf.buffer);
    }
    const out: Record<string, number | bigint> = {};
    for (let i = 0; i < this.names.length; i++) {
      const n = this.names[i] as string;
      const o = this.offs[i] as number;
      const t = this.types[i];
      out[n] =
        t === "u8"
          ? dv.getUint8(o)
          : t === "u16"
            ? dv.getUint16(o, true)
            : t === "u32"
              ? dv.getUint32(o, true)
              : t === "s32"
                ? dv.getInt32(o, true)
                : t === "u64"
                  ? dv.getBigUint64(o, true)
                  : dv.getBigInt64(o, true);
    }
    return out as Decoded<F>;
  }

  encode(v: Decoded<F>): Uint8Array {
    const buf = new Uint8Array(this.size);
    const dv = new DataView(buf.buffer);
    const rec = v as Record<string, number | bigint>;
    for (let i = 0; i < this.names.length; i++) {
      const n = this.names[i] as string;
      const t = this.types[i];
      const o = this.offs[i] as number;
      const x = rec[n] ?? 0;
      if (t === "u8") dv.setUint8(o, Number(x));
      else if (t === "u16") dv.setUint16(o, Number(x), true);
      else if (t === "u32") dv.setUint32(o, Number(x) >>> 0, true);
      else if (t === "s32") dv.setInt32(o, Number(x), true);
      else if (t === "u64") dv.setBigUint64(o, BigInt.asUintN(64, BigInt(x)), true);
      else dv.setBigInt64(o, BigInt.asIntN(64, BigInt(x)), true);
    }
    return buf;
  }
}

export function struct<F extends readonly (readonly [string, FieldType])[]>(
  name: string,
  fields: F,
): StructCodec<F> {
  return new StructCodec(name, fields);
}
