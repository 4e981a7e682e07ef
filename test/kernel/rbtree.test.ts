import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  rbAdd,
  rbErase,
  rbFirst,
  rbFirstWhere,
  rbNext,
  rbPrev,
  type RbNode,
  type RbRoot,
} from "../../src/kernel/core/rbtree.js";

interface Entry extends RbNode<Entry> {
  key: number;
  /** Insertion number: entries with equal keys stay in insertion order. */
  seq: number;
}

const entry = (key: number, seq: number): Entry => ({
  key,
  seq,
  rbParent: null,
  rbLeft: null,
  rbRight: null,
  rbRed: false,
});

const byKey = (a: Entry, b: Entry) => a.key < b.key;

/**
 * The red-black rules, checked by walking the links: parent links agree with child
 * links, the root is black, no red node has a red child, every path from the root to a
 * leaf passes the same number of black nodes. The entries in order, as a list.
 */
function walk(root: RbRoot<Entry>): Entry[] {
  const out: Entry[] = [];
  const black = (n: Entry | null, parent: Entry | null): number => {
    if (!n) return 1;
    assert.equal(n.rbParent, parent, `parent link of ${n.key}`);
    if (n.rbRed) {
      assert.ok(!n.rbLeft?.rbRed && !n.rbRight?.rbRed, `red ${n.key} has a red child`);
    }
    const l = black(n.rbLeft, n);
    out.push(n);
    const r = black(n.rbRight, n);
    assert.equal(l, r, `black heights under ${n.key}`);
    return l + (n.rbRed ? 0 : 1);
  };
  assert.ok(!root.rbNode?.rbRed, "the root is black");
  black(root.rbNode, null);
  return out;
}

/** The oracle: a list sorted by key, equal keys in insertion order. */
function oracleInsert(list: Entry[], e: Entry): void {
  let at = list.findIndex((x) => x.key > e.key);
  if (at < 0) at = list.length;
  list.splice(at, 0, e);
}

/** Entries by insertion number (each is unique), so a failure prints a short list. */
const ids = (l: Entry[]) => l.map((e) => `${e.key}#${e.seq}`);

type Op = { add: number } | { erase: number } | { lowerBound: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 40 }).map((k) => ({ add: k })) },
  { weight: 2, arbitrary: fc.nat().map((i) => ({ erase: i })) },
  { weight: 1, arbitrary: fc.integer({ min: -1, max: 41 }).map((k) => ({ lowerBound: k })) },
);

test("rb-tree: insert, erase and lower bounds agree with a sorted list, rules kept after each step", () => {
  fc.assert(
    fc.property(fc.array(op, { maxLength: 400, size: "large" }), (ops) => {
      const root: RbRoot<Entry> = { rbNode: null };
      const list: Entry[] = [];
      let seq = 0;
      for (const o of ops) {
        if ("add" in o) {
          const e = entry(o.add, seq++);
          rbAdd(e, root, byKey);
          oracleInsert(list, e);
        } else if ("erase" in o) {
          if (!list.length) continue;
          const [e] = list.splice(o.erase % list.length, 1) as [Entry];
          rbErase(e, root);
          assert.deepEqual([e.rbParent, e.rbLeft, e.rbRight], [null, null, null]);
        } else {
          const lower = rbFirstWhere(root, (n) => n.key >= o.lowerBound);
          assert.equal(lower?.seq, list.find((x) => x.key >= o.lowerBound)?.seq);
        }
        assert.deepEqual(ids(walk(root)), ids(list));
      }
      // rb_first/rb_next forwards and rb_prev backwards from the last give the same order.
      const fwd: Entry[] = [];
      for (let n = rbFirst(root); n; n = rbNext(n)) fwd.push(n);
      const back: Entry[] = [];
      for (let n = list[list.length - 1] ?? null; n; n = rbPrev(n)) back.push(n);
      assert.deepEqual(ids(fwd), ids(list));
      assert.deepEqual(ids(back), ids([...list].reverse()));
    }),
    { numRuns: 300 },
  );
});

test("rb-tree: ascending, descending and alternating runs stay balanced (height ≤ 2·log2(n+1))", () => {
  const n = 4096;
  const orders = [
    Array.from({ length: n }, (_, i) => i),
    Array.from({ length: n }, (_, i) => n - i),
    Array.from({ length: n }, (_, i) => (i & 1 ? i : n + i)),
  ];
  const height = (e: Entry | null): number =>
    e ? 1 + Math.max(height(e.rbLeft), height(e.rbRight)) : 0;
  for (const keys of orders) {
    const root: RbRoot<Entry> = { rbNode: null };
    const all = keys.map((k, i) => entry(k, i));
    for (const e of all) rbAdd(e, root, byKey);
    assert.ok(height(root.rbNode) <= 2 * Math.log2(n + 1));
    assert.equal(walk(root).length, n);
    // Erase every other entry, then the rest: the rules hold and the tree empties.
    for (const e of all.filter((_, i) => i % 2)) rbErase(e, root);
    assert.ok(height(root.rbNode) <= 2 * Math.log2(n / 2 + 1));
    assert.equal(walk(root).length, n / 2);
    for (const e of all.filter((_, i) => i % 2 === 0)) rbErase(e, root);
    assert.equal(root.rbNode, null);
  }
});
