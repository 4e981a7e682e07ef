import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { struct, type FieldType } from "../../src/uapi/struct.js";

/** A struct with every field type, at every alignment the layout rules produce. */
const S = struct("every_type", [
  ["a", "u8"],
  ["b", "u16"],
  ["c", "u32"],
  ["d", "s32"],
  ["e", "u64"],
  ["f", "u8"],
  ["g", "s64"],
] as const);

/** What each field is read as, through DataView, at the C layout's offsets. */
function reference(bytes: Uint8Array): Record<string, number | bigint> {
  const buf = new Uint8Array(S.size);
  buf.set(bytes.subarray(0, S.size));
  const dv = new DataView(buf.buffer);
  const get: Record<FieldType, (o: number) => number | bigint> = {
    u8: (o) => dv.getUint8(o),
    u16: (o) => dv.getUint16(o, true),
    u32: (o) => dv.getUint32(o, true),
    s32: (o) => dv.getInt32(o, true),
    u64: (o) => dv.getBigUint64(o, true),
    s64: (o) => dv.getBigInt64(o, true),
  };
  return Object.fromEntries(S.fields.map(([n, t]) => [n, get[t](S.offsets[n] as number)]));
}

test("struct codec: the C layout (natural alignment, size rounded to the widest field)", () => {
  assert.deepEqual(S.offsets, { a: 0, b: 2, c: 4, d: 8, e: 16, f: 24, g: 32 });
  assert.equal(S.size, 40);
  assert.equal(S.end("e"), 24);
  assert.equal(S.end("a"), 1);
});

test("struct codec: decode reads what DataView reads; short input is zero-padded; encode inverts it", () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 48 }), (bytes) => {
      const v = S.decode(bytes);
      assert.deepEqual(v, reference(bytes));
      assert.deepEqual(Object.keys(v), ["a", "b", "c", "d", "e", "f", "g"]);
      const full = new Uint8Array(S.size);
      full.set(bytes.subarray(0, S.size));
      // Padding bytes (1, 12-15, 25-31) are written as zeros.
      for (const i of [1, 12, 13, 14, 15, 25, 26, 27, 28, 29, 30, 31]) full[i] = 0;
      assert.deepEqual(S.encode(v), full);
    }),
  );
});

test("struct codec: encode reduces out-of-range values the way DataView's setters do", () => {
  const num = fc.oneof(
    fc.integer(),
    fc.double(),
    fc.constantFrom(NaN, Infinity, -Infinity, -1, 2 ** 40),
  );
  const big = fc.bigInt({ min: -(1n << 70n), max: 1n << 70n });
  fc.assert(
    fc.property(num, num, num, num, big, big, (a, b, c, d, e, g) => {
      const out = S.encode({ a, b, c, d, e, f: 0, g });
      const dv = new DataView(new ArrayBuffer(S.size));
      dv.setUint8(0, a);
      dv.setUint16(2, b, true);
      dv.setUint32(4, c >>> 0, true);
      dv.setInt32(8, d, true);
      dv.setBigUint64(16, BigInt.asUintN(64, e), true);
      dv.setBigInt64(32, BigInt.asIntN(64, g), true);
      assert.deepEqual(out, new Uint8Array(dv.buffer));
    }),
  );
});
