/**
 * lib/rbtree.c and the parts of include/linux/rbtree.h and rbtree_augmented.h it uses
 * (Linux 6.12), transcribed statement for statement with the augment callbacks left out
 * (rb_insert_color() and rb_erase() pass dummies): the reference the model's
 * src/kernel/core/rbtree.ts is checked against. __rb_parent_color is held as its two parts,
 * the parent and the colour bit.
 */

export const RB_RED = 0;
export const RB_BLACK = 1;

/** struct rb_node, with a key for the caller's descent. */
export interface KNode {
  key: number;
  parent: KNode | null;
  color: number;
  rb_left: KNode | null;
  rb_right: KNode | null;
}

/** struct rb_root */
export interface KRoot {
  rb_node: KNode | null;
}

const rb_parent = (n: KNode) => n.parent;
const rb_is_red = (n: KNode) => n.color === RB_RED;
const rb_is_black = (n: KNode) => n.color === RB_BLACK;
/** rb_red_parent(): the parent of a red node (its colour bits are 0). */
const rb_red_parent = (n: KNode) => n.parent;

function rb_set_black(rb: KNode): void {
  rb.color = RB_BLACK;
}

function rb_set_parent(rb: KNode, p: KNode | null): void {
  rb.parent = p;
}

function rb_set_parent_color(rb: KNode, p: KNode | null, color: number): void {
  rb.parent = p;
  rb.color = color;
}

function __rb_change_child(old: KNode, new_: KNode | null, parent: KNode | null, root: KRoot) {
  if (parent) {
    if (parent.rb_left === old) parent.rb_left = new_;
    else parent.rb_right = new_;
  } else root.rb_node = new_;
}

function __rb_rotate_set_parents(old: KNode, new_: KNode, root: KRoot, color: number): void {
  const parent = rb_parent(old);
  new_.parent = old.parent;
  new_.color = old.color;
  rb_set_parent_color(old, new_, color);
  __rb_change_child(old, new_, parent, root);
}

function __rb_insert(node: KNode, root: KRoot): void {
  let parent = rb_red_parent(node);
  let gparent: KNode;
  let tmp: KNode | null;
  while (true) {
    if (!parent) {
      rb_set_parent_color(node, null, RB_BLACK);
      break;
    }
    if (rb_is_black(parent)) break;
    gparent = rb_red_parent(parent) as KNode;
    tmp = gparent.rb_right;
    if (parent !== tmp) {
      if (tmp && rb_is_red(tmp)) {
        // Case 1 - node's uncle is red (color flips).
        rb_set_parent_color(tmp, gparent, RB_BLACK);
        rb_set_parent_color(parent, gparent, RB_BLACK);
        node = gparent;
        parent = rb_parent(node);
        rb_set_parent_color(node, parent, RB_RED);
        continue;
      }
      tmp = parent.rb_right;
      if (node === tmp) {
        // Case 2 - left rotate at parent.
        tmp = node.rb_left;
        parent.rb_right = tmp;
        node.rb_left = parent;
        if (tmp) rb_set_parent_color(tmp, parent, RB_BLACK);
        rb_set_parent_color(parent, node, RB_RED);
        parent = node;
        tmp = node.rb_right;
      }
      // Case 3 - right rotate at gparent.
      gparent.rb_left = tmp;
      parent.rb_right = gparent;
      if (tmp) rb_set_parent_color(tmp, gparent, RB_BLACK);
      __rb_rotate_set_parents(gparent, parent, root, RB_RED);
      break;
    } else {
      tmp = gparent.rb_left;
      if (tmp && rb_is_red(tmp)) {
        // Case 1 - color flips.
        rb_set_parent_color(tmp, gparent, RB_BLACK);
        rb_set_parent_color(parent, gparent, RB_BLACK);
        node = gparent;
        parent = rb_parent(node);
        rb_set_parent_color(node, parent, RB_RED);
        continue;
      }
      tmp = parent.rb_left;
      if (node === tmp) {
        // Case 2 - right rotate at parent.
        tmp = node.rb_right;
        parent.rb_left = tmp;
        node.rb_right = parent;
        if (tmp) rb_set_parent_color(tmp, parent, RB_BLACK);
        rb_set_parent_color(parent, node, RB_RED);
        parent = node;
        tmp = node.rb_left;
      }
      // Case 3 - left rotate at gparent.
      gparent.rb_right = tmp;
      parent.rb_left = gparent;
      if (tmp) rb_set_parent_color(tmp, gparent, RB_BLACK);
      __rb_rotate_set_parents(gparent, parent, root, RB_RED);
      break;
    }
  }
}

function ____rb_erase_color(parent: KNode, root: KRoot): void {
  let node: KNode | null = null;
  let sibling: KNode;
  let tmp1: KNode | null;
  let tmp2: KNode | null;
  while (true) {
    sibling = parent.rb_right as KNode;
    if (node !== sibling) {
      if (rb_is_red(sibling)) {
        // Case 1 - left rotate at parent.
        tmp1 = sibling.rb_left as KNode;
        parent.rb_right = tmp1;
        sibling.rb_left = parent;
        rb_set_parent_color(tmp1, parent, RB_BLACK);
        __rb_rotate_set_parents(parent, sibling, root, RB_RED);
        sibling = tmp1;
      }
      tmp1 = sibling.rb_right;
      if (!tmp1 || rb_is_black(tmp1)) {
        tmp2 = sibling.rb_left;
        if (!tmp2 || rb_is_black(tmp2)) {
          // Case 2 - sibling color flip.
          rb_set_parent_color(sibling, parent, RB_RED);
          if (rb_is_red(parent)) rb_set_black(parent);
          else {
            node = parent;
            parent = rb_parent(node) as KNode;
            if (parent) continue;
          }
          break;
        }
        // Case 3 - right rotate at sibling.
        tmp1 = tmp2.rb_right;
        sibling.rb_left = tmp1;
        tmp2.rb_right = sibling;
        parent.rb_right = tmp2;
        if (tmp1) rb_set_parent_color(tmp1, sibling, RB_BLACK);
        tmp1 = sibling;
        sibling = tmp2;
      }
      // Case 4 - left rotate at parent + color flips.
      tmp2 = sibling.rb_left;
      parent.rb_right = tmp2;
      sibling.rb_left = parent;
      rb_set_parent_color(tmp1, sibling, RB_BLACK);
      if (tmp2) rb_set_parent(tmp2, parent);
      __rb_rotate_set_parents(parent, sibling, root, RB_BLACK);
      break;
    } else {
      sibling = parent.rb_left as KNode;
      if (rb_is_red(sibling)) {
        // Case 1 - right rotate at parent.
        tmp1 = sibling.rb_right as KNode;
        parent.rb_left = tmp1;
        sibling.rb_right = parent;
        rb_set_parent_color(tmp1, parent, RB_BLACK);
        __rb_rotate_set_parents(parent, sibling, root, RB_RED);
        sibling = tmp1;
      }
      tmp1 = sibling.rb_left;
      if (!tmp1 || rb_is_black(tmp1)) {
        tmp2 = sibling.rb_right;
        if (!tmp2 || rb_is_black(tmp2)) {
          // Case 2 - sibling color flip.
          rb_set_parent_color(sibling, parent, RB_RED);
          if (rb_is_red(parent)) rb_set_black(parent);
          else {
            node = parent;
            parent = rb_parent(node) as KNode;
            if (parent) continue;
          }
          break;
        }
        // Case 3 - left rotate at sibling.
        tmp1 = tmp2.rb_left;
        sibling.rb_right = tmp1;
        tmp2.rb_left = sibling;
        parent.rb_left = tmp2;
        if (tmp1) rb_set_parent_color(tmp1, sibling, RB_BLACK);
        tmp1 = sibling;
        sibling = tmp2;
      }
      // Case 4 - right rotate at parent + color flips.
      tmp2 = sibling.rb_right;
      parent.rb_left = tmp2;
      sibling.rb_right = parent;
      rb_set_parent_color(tmp1, sibling, RB_BLACK);
      if (tmp2) rb_set_parent(tmp2, parent);
      __rb_rotate_set_parents(parent, sibling, root, RB_BLACK);
      break;
    }
  }
}

/** __rb_erase_augmented() with no-op copy and propagate: the node to rebalance from. */
function __rb_erase_augmented(node: KNode, root: KRoot): KNode | null {
  const child = node.rb_right;
  let tmp = node.rb_left;
  let parent: KNode | null;
  let rebalance: KNode | null;
  if (!tmp) {
    // Case 1: node to erase has no more than 1 child.
    const pc = { parent: node.parent, color: node.color };
    parent = pc.parent;
    __rb_change_child(node, child, parent, root);
    if (child) {
      child.parent = pc.parent;
      child.color = pc.color;
      rebalance = null;
    } else rebalance = pc.color === RB_BLACK ? parent : null;
  } else if (!child) {
    // Still case 1, but this time the child is node->rb_left.
    tmp.parent = node.parent;
    tmp.color = node.color;
    parent = node.parent;
    __rb_change_child(node, tmp, parent, root);
    rebalance = null;
  } else {
    let successor: KNode = child;
    let child2: KNode | null;
    tmp = child.rb_left;
    if (!tmp) {
      // Case 2: node's successor is its right child.
      parent = successor;
      child2 = successor.rb_right;
    } else {
      // Case 3: node's successor is leftmost under node's right child subtree.
      do {
        parent = successor;
        successor = tmp;
        tmp = tmp.rb_left;
      } while (tmp);
      child2 = successor.rb_right;
      parent.rb_left = child2;
      successor.rb_right = child;
      rb_set_parent(child, successor);
    }
    tmp = node.rb_left;
    successor.rb_left = tmp;
    rb_set_parent(tmp as KNode, successor);
    const pc = { parent: node.parent, color: node.color };
    __rb_change_child(node, successor, pc.parent, root);
    if (child2) {
      rb_set_parent_color(child2, parent, RB_BLACK);
      rebalance = null;
    } else {
      rebalance = rb_is_black(successor) ? parent : null;
    }
    successor.parent = pc.parent;
    successor.color = pc.color;
  }
  return rebalance;
}

/** rb_erase() */
export function rb_erase(node: KNode, root: KRoot): void {
  const rebalance = __rb_erase_augmented(node, root);
  if (rebalance) ____rb_erase_color(rebalance, root);
}

/**
 * The caller's descent (left while less(node, parent), as vfio_link_dma() and rb_add() go),
 * rb_link_node() at the link it reaches, then rb_insert_color().
 */
export function rb_add(node: KNode, root: KRoot, less: (a: KNode, b: KNode) => boolean): void {
  let parent: KNode | null = null;
  let link: "rb_left" | "rb_right" = "rb_left";
  let at = root.rb_node;
  while (at) {
    parent = at;
    link = less(node, at) ? "rb_left" : "rb_right";
    at = at[link];
  }
  // rb_link_node(): red (colour bits 0), no children, hung at the link.
  node.parent = parent;
  node.color = RB_RED;
  node.rb_left = node.rb_right = null;
  if (parent) parent[link] = node;
  else root.rb_node = node;
  __rb_insert(node, root);
}
