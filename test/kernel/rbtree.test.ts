import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  rbAdd,
  rbErase,
  rbFirst,
  rbNext,
  rbPrev,
  type RbNode,
  type RbRoot,
} from "../../src/kernel/core/rbtree.js";
import * as K from "./lib-rbtree.js";

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

type Op = { add: number } | { erase: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 40 }).map((k) => ({ add: k })) },
  { weight: 2, arbitrary: fc.nat().map((i) => ({ erase: i })) },
);

test("rb-tree: insert and erase agree with a sorted list, rules kept after each step", () => {
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
        } else {
          if (!list.length) continue;
          const [e] = list.splice(o.erase % list.length, 1) as [Entry];
          rbErase(e, root);
          assert.deepEqual([e.rbParent, e.rbLeft, e.rbRight], [null, null, null]);
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

/** A tree as key and colour, children in brackets: "4B(2R(1B,3B),6R(5B,7B(,8R)))". */
function shape(root: RbRoot<Entry>): string {
  const s = (n: Entry | null): string =>
    !n
      ? ""
      : `${n.key}${n.rbRed ? "R" : "B"}` +
        (n.rbLeft || n.rbRight ? `(${s(n.rbLeft)},${s(n.rbRight)})` : "");
  return s(root.rbNode);
}

function kShape(root: K.KRoot): string {
  const s = (n: K.KNode | null): string =>
    !n
      ? ""
      : `${n.key}${n.color === K.RB_RED ? "R" : "B"}` +
        (n.rb_left || n.rb_right ? `(${s(n.rb_left)},${s(n.rb_right)})` : "");
  return s(root.rb_node);
}

/** The model's tree and lib-rbtree's (the kernel's code) side by side, entry for entry. */
function pair(less: (a: number, b: number) => boolean) {
  const root: RbRoot<Entry> = { rbNode: null };
  const kroot: K.KRoot = { rb_node: null };
  const live: [Entry, K.KNode][] = [];
  let seq = 0;
  return {
    add(key: number) {
      const e = entry(key, seq++);
      const k: K.KNode = { key, parent: null, color: K.RB_RED, rb_left: null, rb_right: null };
      rbAdd(e, root, (a, b) => less(a.key, b.key));
      K.rb_add(k, kroot, (a, b) => less(a.key, b.key));
      live.push([e, k]);
    },
    /** Erase the entry added i-th among those still in (modulo their number). */
    erase(i: number) {
      if (!live.length) return;
      const [e, k] = live.splice(i % live.length, 1)[0] as [Entry, K.KNode];
      rbErase(e, root);
      K.rb_erase(k, kroot);
    },
    eraseKey(key: number) {
      this.erase(live.findIndex(([e]) => e.key === key));
    },
    model: () => shape(root),
    kernel: () => kShape(kroot),
  };
}

test("rb-tree: shapes and colours worked by hand through lib/rbtree.c", () => {
  // Each expectation follows __rb_insert / __rb_erase_augmented / ____rb_erase_color case by
  // case; the transcription in lib-rbtree.ts must reach them too.
  const t = pair((a, b) => a < b);
  const steps: [() => void, string][] = [
    // 1, 2: a red right child. 3: Case 3 left-rotates at 1. 4: Case 1 flips 1 and 3 black,
    // 2 red, then 2 as the root black.
    [() => [1, 2, 3, 4].forEach((k) => t.add(k)), "2B(1B,3B(,4R))"],
    // 5: Case 3 at 3. 6: Case 1 flips 3, 5 black and 4 red under black 2.
    [() => [5, 6].forEach((k) => t.add(k)), "2B(1B,4R(3B,5B(,6R)))"],
    // Erase 1: a black leaf, rebalance at 2. Sibling 4 red: Case 1 left-rotates at 2
    // (4 black root, 2 red). New sibling 3 has no red child: Case 2 makes it red and 2,
    // red, black.
    [() => t.eraseKey(1), "4B(2B(,3R),5B(,6R))"],
  ];
  for (const [step, want] of steps) {
    step();
    assert.equal(t.kernel(), want, "the transcription of lib/rbtree.c");
    assert.equal(t.model(), want, "src/kernel/core/rbtree.ts");
  }
  const u = pair((a, b) => a < b);
  const more: [() => void, string][] = [
    // 7: Case 3 at 5. 8: Case 1 at 6 (5, 7 black, 6 red), then red 6 under red 4: Case 3
    // left-rotates at the root 2.
    [() => [1, 2, 3, 4, 5, 6, 7, 8].forEach((k) => u.add(k)), "4B(2R(1B,3B),6R(5B,7B(,8R)))"],
    // Erase the root 4: its successor 5 is leftmost under 6 (Case 3 of the splice), black
    // with no child, so rebalance at 6. Sibling 7 black with red right child 8: Case 4
    // left-rotates at 6; 7 takes 6's red, 6 and 8 black.
    [() => u.eraseKey(4), "5B(2R(1B,3B),7R(6B,8B))"],
    // Erase 7: its successor 8 is its right child (Case 2 of the splice) and takes 7's place
    // and red; 8 was black and childless, so rebalance at 8 from the right, where sibling 6
    // is black with no red child: Case 2 makes 6 red and 8 black.
    [() => u.eraseKey(7), "5B(2R(1B,3B),8B(6R,))"],
    // Erase the root 5: its successor 6 is leftmost under 8 (Case 3 of the splice) and red,
    // so it takes 5's place and black and nothing rebalances.
    [() => u.eraseKey(5), "6B(2R(1B,3B),8B)"],
  ];
  for (const [step, want] of more) {
    step();
    assert.equal(u.kernel(), want, "the transcription of lib/rbtree.c");
    assert.equal(u.model(), want, "src/kernel/core/rbtree.ts");
  }
});

test("rb-tree: every sequence of adds and erases leaves lib/rbtree.c's shape and colours", () => {
  const seqOp = fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: 0, max: 30 }).map((k) => ({ add: k })) },
    { weight: 2, arbitrary: fc.nat().map((i) => ({ erase: i })) },
  );
  fc.assert(
    fc.property(
      // Equal keys right of each other (rb_add's `less`) or left (vfio_link_dma's `<=`).
      fc.boolean(),
      fc.array(seqOp, { maxLength: 300, size: "large" }),
      (leftOnEqual, ops) => {
        const t = pair(leftOnEqual ? (a, b) => a <= b : (a, b) => a < b);
        for (const o of ops) {
          if ("add" in o) t.add(o.add);
          else t.erase(o.erase);
          assert.equal(t.model(), t.kernel());
        }
      },
    ),
    { numRuns: 300 },
  );
});
