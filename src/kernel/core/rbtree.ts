/**
 * Red-black trees, include/linux/rbtree.h and lib/rbtree.c (Linux 6.12). Intrusive, as in
 * the kernel: the links live in the entry itself (struct rb_node embedded in its
 * container), so a tree costs four fields per entry and no allocation. Lookups are the
 * owner's, by its own ordering, as vfio_find_dma() descends by iova. rb_add() links a node
 * at the leaf its `less` descent reaches (rb_link_node()) and rebalances
 * (rb_insert_color()); rb_erase() unlinks it; both are O(log n). rb_first/rb_next/rb_prev
 * walk the entries in order. The rebalancing is written case by case rather than with
 * lib/rbtree.c's parent-colour words, but takes the same rotations and colours in every
 * case (__rb_insert; __rb_erase_augmented's successor splice, ____rb_erase_color), so a
 * sequence of adds and erases leaves the kernel's tree, shape and colours, and the owner's
 * descents take the kernel's paths.
 */

/** struct rb_node: the links, embedded in the entry. */
export interface RbNode<T> {
  rbParent: T | null;
  rbLeft: T | null;
  rbRight: T | null;
  rbRed: boolean;
}

/** struct rb_root */
export interface RbRoot<T> {
  rbNode: T | null;
}

const isRed = <T extends RbNode<T>>(n: T | null): boolean => n !== null && n.rbRed;

/** Put `to` where `from` hangs (its parent's link, or the root). */
function changeChild<T extends RbNode<T>>(
  root: RbRoot<T>,
  from: T,
  to: T | null,
  parent: T | null,
): void {
  if (!parent) root.rbNode = to;
  else if (parent.rbLeft === from) parent.rbLeft = to;
  else parent.rbRight = to;
  if (to) to.rbParent = parent;
}

function rotateLeft<T extends RbNode<T>>(root: RbRoot<T>, x: T): void {
  const y = x.rbRight as T;
  x.rbRight = y.rbLeft;
  if (y.rbLeft) y.rbLeft.rbParent = x;
  changeChild(root, x, y, x.rbParent);
  y.rbLeft = x;
  x.rbParent = y;
}

function rotateRight<T extends RbNode<T>>(root: RbRoot<T>, x: T): void {
  const y = x.rbLeft as T;
  x.rbLeft = y.rbRight;
  if (y.rbRight) y.rbRight.rbParent = x;
  changeChild(root, x, y, x.rbParent);
  y.rbRight = x;
  x.rbParent = y;
}

/** rb_insert_color(): restore the colours after linking a red leaf. */
function insertColor<T extends RbNode<T>>(root: RbRoot<T>, node: T): void {
  let n = node;
  for (;;) {
    let p = n.rbParent;
    if (!p) {
      n.rbRed = false;
      return;
    }
    if (!p.rbRed) return;
    // A red parent is never the root: there is a grandparent.
    const g = p.rbParent as T;
    const left = g.rbLeft === p;
    const uncle = left ? g.rbRight : g.rbLeft;
    if (isRed(uncle)) {
      p.rbRed = false;
      (uncle as T).rbRed = false;
      g.rbRed = true;
      n = g;
      continue;
    }
    // A node on the inner side is first rotated up into its parent's place.
    if (left && n === p.rbRight) {
      rotateLeft(root, p);
      p = n;
    } else if (!left && n === p.rbLeft) {
      rotateRight(root, p);
      p = n;
    }
    if (left) rotateRight(root, g);
    else rotateLeft(root, g);
    p.rbRed = false;
    g.rbRed = true;
    return;
  }
}

/**
 * rb_add(): link `node` at the leaf where `less` leads (left while less(node, parent)),
 * then rebalance. Entries `less` does not order apart go right of each other.
 */
export function rbAdd<T extends RbNode<T>>(
  node: T,
  root: RbRoot<T>,
  less: (a: T, b: T) => boolean,
): void {
  let parent: T | null = null;
  let at = root.rbNode;
  let left = false;
  while (at) {
    parent = at;
    left = less(node, at);
    at = left ? at.rbLeft : at.rbRight;
  }
  node.rbParent = parent;
  node.rbLeft = node.rbRight = null;
  node.rbRed = true;
  if (!parent) root.rbNode = node;
  else if (left) parent.rbLeft = node;
  else parent.rbRight = node;
  insertColor(root, node);
}

/** rb_erase(): unlink `node` (which must be in the tree) and rebalance. */
export function rbErase<T extends RbNode<T>>(node: T, root: RbRoot<T>): void {
  let child: T | null;
  let parent: T | null;
  let removedRed: boolean;
  const l = node.rbLeft;
  const r = node.rbRight;
  if (l && r) {
    // Two children: the successor (leftmost of the right subtree) takes node's place.
    let s = r;
    while (s.rbLeft) s = s.rbLeft;
    child = s.rbRight;
    removedRed = s.rbRed;
    if (s === r) {
      parent = s;
    } else {
      parent = s.rbParent as T;
      parent.rbLeft = child;
      if (child) child.rbParent = parent;
      s.rbRight = r;
      r.rbParent = s;
    }
    changeChild(root, node, s, node.rbParent);
    s.rbLeft = l;
    l.rbParent = s;
    s.rbRed = node.rbRed;
  } else {
    child = l ?? r;
    parent = node.rbParent;
    removedRed = node.rbRed;
    changeChild(root, node, child, parent);
  }
  node.rbParent = node.rbLeft = node.rbRight = null;
  if (!removedRed) eraseColor(root, child, parent);
}

/** ____rb_erase_color(): a black node left `x`'s side (under `parent`) one black short. */
function eraseColor<T extends RbNode<T>>(root: RbRoot<T>, x: T | null, parent: T | null): void {
  while (x !== root.rbNode && !isRed(x)) {
    // Not the root: there is a parent, and the other side (one black taller) is not empty.
    const p = parent as T;
    if (x === p.rbLeft) {
      let w = p.rbRight as T;
      if (w.rbRed) {
        w.rbRed = false;
        p.rbRed = true;
        rotateLeft(root, p);
        w = p.rbRight as T;
      }
      if (!isRed(w.rbLeft) && !isRed(w.rbRight)) {
        w.rbRed = true;
        x = p;
        parent = p.rbParent;
        continue;
      }
      if (!isRed(w.rbRight)) {
        (w.rbLeft as T).rbRed = false;
        w.rbRed = true;
        rotateRight(root, w);
        w = p.rbRight as T;
      }
      w.rbRed = p.rbRed;
      p.rbRed = false;
      (w.rbRight as T).rbRed = false;
      rotateLeft(root, p);
    } else {
      let w = p.rbLeft as T;
      if (w.rbRed) {
        w.rbRed = false;
        p.rbRed = true;
        rotateRight(root, p);
        w = p.rbLeft as T;
      }
      if (!isRed(w.rbLeft) && !isRed(w.rbRight)) {
        w.rbRed = true;
        x = p;
        parent = p.rbParent;
        continue;
      }
      if (!isRed(w.rbLeft)) {
        (w.rbRight as T).rbRed = false;
        w.rbRed = true;
        rotateLeft(root, w);
        w = p.rbLeft as T;
      }
      w.rbRed = p.rbRed;
      p.rbRed = false;
      (w.rbLeft as T).rbRed = false;
      rotateRight(root, p);
    }
    x = root.rbNode;
    break;
  }
  if (x) x.rbRed = false;
}

/** rb_first() */
export function rbFirst<T extends RbNode<T>>(root: RbRoot<T>): T | null {
  let n = root.rbNode;
  if (n) while (n.rbLeft) n = n.rbLeft;
  return n;
}

/** rb_next() */
export function rbNext<T extends RbNode<T>>(node: T): T | null {
  let n = node.rbRight;
  if (n) {
    while (n.rbLeft) n = n.rbLeft;
    return n;
  }
  let c = node;
  let p = c.rbParent;
  while (p && c === p.rbRight) {
    c = p;
    p = p.rbParent;
  }
  return p;
}

/** rb_prev() */
export function rbPrev<T extends RbNode<T>>(node: T): T | null {
  let n = node.rbLeft;
  if (n) {
    while (n.rbRight) n = n.rbRight;
    return n;
  }
  let c = node;
  let p = c.rbParent;
  while (p && c === p.rbLeft) {
    c = p;
    p = p.rbParent;
  }
  return p;
}
