/**
 * iommufd without a device (conformance catalog §3, IFD-C): the object table, the
 * extensible-struct rules of every ioctl, options, IOAS map/unmap/copy/ranges/allow with
 * their errno order, automatic IOVA placement and lazy pinning. The cases needing the
 * selftest's ADD_RESERVED use the mock platform's addReserved().
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { err } from "../../src/uapi/errno.js";
import * as I from "../../src/uapi/iommufd.js";
import * as V from "../../src/uapi/vfio.js";
import { IoPagetable } from "../../src/kernel/iommufd/io_pagetable.js";
import type { IommufdCtx } from "../../src/kernel/iommufd/main.js";
import { addReserved, MOCK_APERTURE_START } from "../../src/kernel/iommufd/selftest.js";
import { bootIommufd, holdings, PAGE, Proc } from "./support.js";

const P = PAGE;
const ULONG_MAX = (1n << 64n) - 1n;

async function setup() {
  const k = await bootIommufd();
  const p = Proc.spawn(k);
  const fd = p.open("/dev/iommu");
  assert.ok(fd >= 0);
  const ctx = p.sys.task.files.get(fd)?.priv as IommufdCtx;
  return { k, p, fd, ctx };
}

test("IFD-C-001 cmd_fail: DESTROY of id 0, a NULL argument, a number below the base", async () => {
  const { p, fd } = await setup();
  assert.equal(p.destroy(fd, 0), err("ENOENT"));
  assert.equal(p.sys.ioctl(fd, I.IOMMU_DESTROY, 0n), err("EFAULT"));
  assert.equal(p.sys.ioctl(fd, I.IOMMU_DESTROY - 1, p.buf), err("ENOTTY"));
  // Past the table: the VFIO compat dispatcher, which knows nothing of it either.
  assert.equal(p.sys.ioctl(fd, I.IOMMU_FAULT_QUEUE_ALLOC + 1, p.buf), err("ENOTTY"));
});

/** [request, struct size, offsetofend(last mandatory field)] for every ioctl of the table. */
const LENGTHS: [string, number, number, number][] = [
  ["DESTROY", I.IOMMU_DESTROY, I.iommu_destroy.size, I.iommu_destroy.end("id")],
  ["IOAS_ALLOC", I.IOMMU_IOAS_ALLOC, 12, 12],
  ["IOAS_ALLOW_IOVAS", I.IOMMU_IOAS_ALLOW_IOVAS, 24, 24],
  ["IOAS_COPY", I.IOMMU_IOAS_COPY, 40, 40],
  ["IOAS_IOVA_RANGES", I.IOMMU_IOAS_IOVA_RANGES, 32, 32],
  ["IOAS_MAP", I.IOMMU_IOAS_MAP, 40, 40],
  ["IOAS_UNMAP", I.IOMMU_IOAS_UNMAP, 24, 24],
  ["OPTION", I.IOMMU_OPTION, 24, 24],
  ["VFIO_IOAS", I.IOMMU_VFIO_IOAS, 12, 12],
  ["HWPT_ALLOC", I.IOMMU_HWPT_ALLOC, 48, 24],
  ["GET_HW_INFO", I.IOMMU_GET_HW_INFO, 40, 32],
  ["HWPT_SET_DIRTY_TRACKING", I.IOMMU_HWPT_SET_DIRTY_TRACKING, 16, 16],
  ["HWPT_GET_DIRTY_BITMAP", I.IOMMU_HWPT_GET_DIRTY_BITMAP, 48, 48],
  ["HWPT_INVALIDATE", I.IOMMU_HWPT_INVALIDATE, 32, 32],
  ["FAULT_QUEUE_ALLOC", I.IOMMU_FAULT_QUEUE_ALLOC, 16, 16],
];

test("IFD-C-002 cmd_length: short EINVAL, long with a non-zero tail E2BIG, zero tail as exact", async () => {
  const { p, fd } = await setup();
  const run = (req: number, size: number, len: number, tail: number) => {
    const b = new Uint8Array(len + 16);
    new DataView(b.buffer).setUint32(0, size, true);
    b[len] = tail;
    p.poke(0, new Uint8Array(65536));
    p.poke(0, b);
    return p.sys.ioctl(fd, req, p.buf);
  };
  for (const [name, req, size, min] of LENGTHS) {
    assert.equal(run(req, min - 1, min - 1, 0xff), err("EINVAL"), `${name} short`);
    assert.equal(run(req, size + 1, size, 0xff), err("E2BIG"), `${name} non-zero tail`);
    const exact = run(req, size, size, 0);
    assert.equal(run(req, size + 1, size, 0), exact, `${name} zero tail`);
  }
});

test("IFD-C-003 cmd_ex_fail: a future field of zero is accepted, non-zero is E2BIG", async () => {
  const { p, fd } = await setup();
  const tail = (v: number) => Uint8Array.of(v, 0, 0, 0, 0, 0, 0, 0);
  const d = (size: number, t: Uint8Array) =>
    p.cmd(fd, I.IOMMU_DESTROY, I.iommu_destroy, { size, id: 0 }, { tail: t }).ret;
  assert.equal(d(16, tail(0)), err("ENOENT"));
  assert.equal(d(16, tail(1)), err("E2BIG"));
  assert.equal(d(8, tail(1)), err("ENOENT"));
  assert.equal(d(7, tail(0)), err("EINVAL"));
});

test("IFD-C-004 global_options: RLIMIT_MODE get/set, its rules, HUGE_PAGES needs an IOAS", async () => {
  const { k, p, fd } = await setup();
  const RL = I.IOMMU_OPTION_RLIMIT_MODE;
  const { IOMMU_OPTION_OP_GET: GET, IOMMU_OPTION_OP_SET: SET } = I;
  assert.deepEqual([p.option(fd, RL, GET, 0).ret, p.option(fd, RL, GET, 0).out.val64], [0, 0n]);
  assert.equal(p.option(fd, RL, SET, 0, 1n).ret, 0);
  assert.equal(p.option(fd, RL, SET, 0, 2n).ret, err("EINVAL"));
  assert.equal(p.option(fd, RL, GET, 0).out.val64, 1n);
  assert.equal(p.option(fd, RL, SET, 0, 0n).ret, 0);
  assert.equal(p.option(fd, I.IOMMU_OPTION_HUGE_PAGES, GET, 0).ret, err("ENOENT"));
  assert.equal(p.option(fd, I.IOMMU_OPTION_HUGE_PAGES, SET, 0).ret, err("ENOENT"));
  assert.equal(p.option(fd, RL, GET, 1).ret, err("EOPNOTSUPP"), "object id");
  assert.equal(p.option(fd, RL, 7, 0).ret, err("EOPNOTSUPP"), "op");
  assert.equal(p.option(fd, 9, GET, 0).ret, err("EOPNOTSUPP"), "option id");
  assert.equal(
    p.cmd(fd, I.IOMMU_OPTION, I.iommu_option, { option_id: RL, op: GET, __reserved: 1 }).ret,
    err("EOPNOTSUPP"),
  );
  p.ioasAlloc(fd);
  assert.equal(p.option(fd, RL, SET, 0, 1n).ret, err("EBUSY"), "objects exist");
  const user = Proc.spawn(k, { uid: 1000, caps: [] });
  const ufd = user.open("/dev/iommu");
  assert.equal(user.option(ufd, RL, SET, 0, 1n).ret, err("EPERM"), "no CAP_SYS_RESOURCE");
  assert.equal(user.option(ufd, RL, GET, 0).ret, 0);
  // /dev/vfio/vfio opens charge the mm, VFIO's way.
  const cfd = p.open("/dev/vfio/vfio");
  assert.equal(p.option(cfd, RL, GET, 0).out.val64, 1n);
});

test("IFD-C-005 ioas alloc/destroy; closing the fd destroys what is left", async () => {
  const { k, p, fd } = await setup();
  assert.equal(
    p.cmd(fd, I.IOMMU_IOAS_ALLOC, I.iommu_ioas_alloc, { flags: 1 }).ret,
    err("EOPNOTSUPP"),
  );
  const before = holdings(k);
  const id = p.ioasAlloc(fd);
  assert.ok(id > 0);
  assert.equal(p.destroy(fd, id), 0);
  assert.equal(p.destroy(fd, id), err("ENOENT"));
  // ids are reused lowest first
  assert.equal(p.ioasAlloc(fd), id);
  assert.equal(p.ioasAlloc(fd), id + 1);
  assert.equal(p.sys.close(fd), 0);
  assert.deepEqual(holdings(k), { ...before, contexts: 0, objects: 0 });
});

test("IFD-C-006 areas never block IOAS destruction; a fixed mapping at IOVA 0 is legal", async () => {
  const { p, fd } = await setup();
  const buf = p.mmap(64 * 1024);
  const ioas = p.ioasAlloc(fd);
  assert.equal(p.map(fd, ioas, buf, P, 0n).ret, 0);
  assert.equal(p.destroy(fd, ioas), 0);
  const ioas2 = p.ioasAlloc(fd);
  for (let i = 0n; i < 10n; i++) assert.equal(p.map(fd, ioas2, buf, P, i * P).ret, 0);
  assert.equal(p.sys.close(fd), 0);
});

test("IFD-C-007…011 area: nothing to unmap, page by page, no splitting, overlaps, unmap-all", async () => {
  const { p, fd } = await setup();
  const buf = p.mmap(64 * 1024);
  const ioas = p.ioasAlloc(fd);
  for (let i = 0n; i < 10n; i++) assert.equal(p.unmap(fd, ioas, i * P, P).ret, err("ENOENT"));
  for (let i = 0n; i < 10n; i++) assert.equal(p.map(fd, ioas, buf, P, i * P).ret, 0);
  for (let i = 0n; i < 10n; i++) {
    const r = p.unmap(fd, ioas, i * P, P);
    assert.deepEqual([r.ret, r.out.length], [0, P]);
  }
  assert.equal(p.map(fd, ioas, buf, 2n * P, 16n * P).ret, 0);
  assert.equal(p.unmap(fd, ioas, 16n * P, P).ret, err("ENOENT"));
  assert.equal(p.unmap(fd, ioas, 17n * P, P).ret, err("ENOENT"));
  for (const [len, at] of [
    [2n, 16n],
    [1n, 16n],
    [1n, 17n],
    [2n, 15n],
    [3n, 15n],
  ] as const)
    assert.equal(p.map(fd, ioas, buf, len * P, at * P).ret, err("EEXIST"));
  const all = p.unmap(fd, ioas, 0n, ULONG_MAX);
  assert.deepEqual([all.ret, all.out.length], [0, 2n * P]);
  const again = p.unmap(fd, ioas, 0n, ULONG_MAX);
  assert.deepEqual([again.ret, again.out.length], [0, 0n]);
});

test("IFD-C-012 an unmap may cover whole areas and holes, never part of one", async () => {
  const { p, fd } = await setup();
  const buf = p.mmap(64 * 1024);
  const ioas = p.ioasAlloc(fd);
  const B = 4n * P;
  for (const at of [0n, 16n, 32n, 48n])
    assert.equal(p.map(fd, ioas, buf, 8n * P, B + at * P).ret, 0);
  assert.equal(p.unmap(fd, ioas, B - 4n * P, 8n * P).ret, err("ENOENT"));
  assert.equal(p.unmap(fd, ioas, B + 52n * P, 8n * P).ret, err("ENOENT"));
  const r = p.unmap(fd, ioas, B - 4n * P, 60n * P);
  assert.deepEqual([r.ret, r.out.length], [0, 32n * P]);
  // The kernel removes areas in address order and stops at the first partial one: those
  // before it are gone although the call failed.
  for (const at of [0n, 16n]) assert.equal(p.map(fd, ioas, buf, 8n * P, B + at * P).ret, 0);
  assert.equal(p.unmap(fd, ioas, B, 20n * P).ret, err("ENOENT"));
  assert.equal(p.map(fd, ioas, buf, 8n * P, B).ret, 0, "the first area went");
  assert.equal(p.map(fd, ioas, buf, 8n * P, B + 16n * P).ret, err("EEXIST"), "the second stayed");
});

test("IFD-C-013 copy_area: within and across IOASes, and R/W required (REG-019)", async () => {
  const { p, fd } = await setup();
  const buf = p.mmap(64 * 1024);
  const ioas = p.ioasAlloc(fd);
  assert.equal(p.map(fd, ioas, buf, P, 0x100000n).ret, 0);
  const copy = (flags: number, dst: number, dstIova: bigint) =>
    p.cmd(fd, I.IOMMU_IOAS_COPY, I.iommu_ioas_copy, {
      flags,
      dst_ioas_id: dst,
      src_ioas_id: ioas,
      length: P,
      dst_iova: dstIova,
      src_iova: 0x100000n,
    }).ret;
  assert.equal(copy(7, ioas, 0x101000n), 0);
  const ioas2 = p.ioasAlloc(fd);
  assert.equal(copy(7, ioas2, 0n), 0);
  assert.equal(copy(I.IOMMU_IOAS_MAP_FIXED_IOVA, ioas2, 0x2000n), err("EINVAL"));
  // the copy is independent of its source
  assert.equal(p.unmap(fd, ioas, 0x100000n, P).ret, 0);
  assert.equal(p.unmap(fd, ioas2, 0n, P).out.length, P);
});

test("IFD-C-014 iova_ranges: [0, SIZE_MAX], alignment 1, EMSGSIZE with the count", async () => {
  const { p, fd } = await setup();
  const ioas = p.ioasAlloc(fd);
  const r = p.iovaRanges(fd, ioas, 8);
  assert.deepEqual(
    [r.ret, r.out.num_iovas, r.ranges, r.out.out_iova_alignment],
    [0, 1, [[0n, ULONG_MAX]], 1n],
  );
  const z = p.iovaRanges(fd, ioas, 0);
  assert.deepEqual([z.ret, z.out.num_iovas], [err("EMSGSIZE"), 1]);
  assert.equal(
    p.cmd(fd, I.IOMMU_IOAS_IOVA_RANGES, I.iommu_ioas_iova_ranges, { ioas_id: ioas, __reserved: 1 })
      .ret,
    err("EOPNOTSUPP"),
  );
});

test("IFD-C-015 ioas_option_huge_pages", async () => {
  const { p, fd } = await setup();
  const ioas = p.ioasAlloc(fd);
  const HP = I.IOMMU_OPTION_HUGE_PAGES;
  const get = () => p.option(fd, HP, I.IOMMU_OPTION_OP_GET, ioas).out.val64;
  const set = (v: bigint) => p.option(fd, HP, I.IOMMU_OPTION_OP_SET, ioas, v).ret;
  assert.equal(get(), 1n);
  assert.equal(set(0n), 0);
  assert.equal(get(), 0n);
  assert.equal(set(2n), err("EINVAL"));
  assert.equal(set(1n), 0);
  assert.equal(get(), 1n);
});

test("IFD-C-016 byte-granular automatic mappings without a domain", async () => {
  const { p, fd } = await setup();
  const buf = p.mmap(64 * 1024);
  const ioas = p.ioasAlloc(fd);
  for (let len = 1n; len < 2n * P; len += 511n) {
    const m = p.map(fd, ioas, buf, len, null);
    assert.equal(m.ret, 0, `length ${len}`);
    assert.equal(p.unmap(fd, ioas, m.out.iova, len).ret, 0);
  }
});

test("IFD-C-017 ioas_align_change: HUGE_PAGES off raises the alignment, refused over a misaligned area", async () => {
  const { p, fd } = await setup();
  const buf = p.mmap(64 * 1024);
  const MS = MOCK_APERTURE_START;
  const MP = P / 2n;
  const ioas = p.ioasAlloc(fd);
  const set = (v: bigint) =>
    p.option(fd, I.IOMMU_OPTION_HUGE_PAGES, I.IOMMU_OPTION_OP_SET, ioas, v).ret;
  assert.equal(p.map(fd, ioas, buf, P, MS).ret, 0);
  assert.equal(set(0n), 0);
  assert.equal(p.map(fd, ioas, buf + MP, P, MS + P).ret, err("EINVAL"));
  assert.equal(set(0n), 0);
  assert.equal(set(1n), 0);
  assert.equal(p.map(fd, ioas, buf + MP, P, MS + P).ret, 0);
  assert.equal(set(0n), err("EADDRINUSE"));
  assert.equal(p.unmap(fd, ioas, MS, P).ret, 0);
  assert.equal(p.unmap(fd, ioas, MS + P, P).ret, 0);
});

test("IFD-C-018 copy_sweep: the source must lie in contiguous areas", async () => {
  const { p, fd } = await setup();
  const buf = p.mmap(64 * 1024);
  const MS = MOCK_APERTURE_START;
  const MP = P / 2n;
  const src = p.ioasAlloc(fd);
  const dst = p.ioasAlloc(fd);
  const last = MS + 16n * P - 2n;
  assert.equal(p.map(fd, src, buf, 16n * P - 1n, MS).ret, 0);
  for (let at = MS - P; at <= last; at += 511n) {
    const r = p.cmd(fd, I.IOMMU_IOAS_COPY, I.iommu_ioas_copy, {
      flags: 7,
      dst_ioas_id: dst,
      src_ioas_id: src,
      length: MP,
      dst_iova: MS,
      src_iova: at,
    }).ret;
    if (at < MS || at + MP - 1n > last) assert.equal(r, err("ENOENT"), `src ${at}`);
    else {
      assert.equal(r, 0, `src ${at}`);
      assert.equal(p.unmap(fd, dst, MS, MP).ret, 0);
    }
  }
});

test("IFD-C-019/020 hw_info and hwpt_alloc without a device: ENOENT", async () => {
  const { p, fd } = await setup();
  const ioas = p.ioasAlloc(fd);
  assert.equal(p.cmd(fd, I.IOMMU_GET_HW_INFO, I.iommu_hw_info, { dev_id: 0 }).ret, err("ENOENT"));
  assert.equal(
    p.cmd(fd, I.IOMMU_GET_HW_INFO, I.iommu_hw_info, { dev_id: ioas }).ret,
    err("ENOENT"),
  );
  assert.equal(p.hwptAlloc(fd, 0, ioas).ret, err("ENOENT"));
  assert.equal(p.hwptAlloc(fd, ioas, ioas).ret, err("ENOENT"));
});

test("IFD-C-021 IOAS_MAP: the first failing check decides", async () => {
  const { p, fd } = await setup();
  const buf = p.mmap(64 * 1024);
  const ioas = p.ioasAlloc(fd);
  const m = (v: Partial<ReturnType<typeof I.iommu_ioas_map.decode>>) =>
    p.cmd(fd, I.IOMMU_IOAS_MAP, I.iommu_ioas_map, {
      flags: 7,
      ioas_id: ioas,
      user_va: buf,
      length: P,
      iova: 0x100000n,
      ...v,
    }).ret;
  assert.equal(m({ flags: 0x100 | 1, iova: ULONG_MAX }), err("EOPNOTSUPP"));
  assert.equal(m({ __reserved: 1 }), err("EOPNOTSUPP"));
  assert.equal(m({ iova: ULONG_MAX, flags: 1 }), err("EOVERFLOW"));
  assert.equal(m({ length: ULONG_MAX }), err("EOVERFLOW"));
  assert.equal(m({ flags: 1, ioas_id: 999 }), err("EINVAL"));
  assert.equal(m({ ioas_id: 999 }), err("ENOENT"));
  assert.equal(m({ length: 0n }), err("EINVAL"));
  assert.equal(m({ user_va: ULONG_MAX - P + 1n, length: 2n * P }), err("EOVERFLOW"));
  assert.equal(m({ iova: ULONG_MAX - P + 1n, length: 2n * P }), err("EOVERFLOW"));
  assert.equal(m({}), 0);
  assert.equal(m({}), err("EEXIST"));
  // automatic: the allocator refuses lengths of half the space or more
  assert.equal(m({ flags: 6, length: 1n << 63n }), err("EOVERFLOW"));
});

test("IFD-C-022 IOAS_UNMAP argument rules", async () => {
  const { p, fd } = await setup();
  const ioas = p.ioasAlloc(fd);
  assert.equal(p.unmap(fd, ioas, 0n, ULONG_MAX).ret, 0);
  assert.equal(p.unmap(fd, ioas, P, 0n).ret, err("EINVAL"));
  assert.equal(p.unmap(fd, ioas, ULONG_MAX, P).ret, err("EOVERFLOW"));
  assert.equal(p.unmap(fd, ioas, P, ULONG_MAX).ret, err("EOVERFLOW"));
  assert.equal(p.unmap(fd, ioas, ULONG_MAX - P, 2n * P).ret, err("EOVERFLOW"));
  assert.equal(p.unmap(fd, ioas, P, P).ret, err("ENOENT"));
  assert.equal(p.unmap(fd, 999, P, P).ret, err("ENOENT"));
});

test("IFD-C-023 ALLOW_IOVAS: bad ranges are refused and the old set stays", async () => {
  const { p, fd, ctx } = await setup();
  const ioas = p.ioasAlloc(fd);
  const arr = p.buf + 0x20000n;
  const allow = (
    ranges: [bigint, bigint][],
    v: Partial<ReturnType<typeof I.iommu_ioas_allow_iovas.decode>> = {},
  ) => {
    ranges.forEach(([s, l], i) =>
      p.sys.poke(arr + BigInt(16 * i), I.iommu_iova_range.encode({ start: s, last: l })),
    );
    return p.cmd(fd, I.IOMMU_IOAS_ALLOW_IOVAS, I.iommu_ioas_allow_iovas, {
      ioas_id: ioas,
      num_iovas: ranges.length,
      allowed_iovas: arr,
      ...v,
    }).ret;
  };
  assert.equal(allow([[0x1000n, 0x1fffn]]), 0);
  assert.equal(allow([[0x2000n, 0x2000n]]), err("EINVAL"), "start == last");
  assert.equal(allow([[0x2000n, 0x1000n]]), err("EINVAL"));
  assert.equal(
    allow([
      [0x1000n, 0x2fffn],
      [0x2000n, 0x4fffn],
    ]),
    err("EINVAL"),
    "overlap",
  );
  assert.equal(allow([[0x1000n, 0x1fffn]], { __reserved: 1 }), err("EOPNOTSUPP"));
  const iopt = (ctx.objects.get(ioas) as unknown as { iopt: IoPagetable }).iopt;
  assert.deepEqual(iopt.allowed, [{ start: 0x1000n, last: 0x1fffn }]);
  assert.equal(allow([]), 0, "an empty list allows everything again");
  assert.deepEqual(iopt.allowed, []);
});

test("IFD-C-024 automatic IOVA: never 0, inside the allowed ranges, around reserved ones", async () => {
  const { p, fd, ctx } = await setup();
  const buf = p.mmap(64 * 1024);
  const ioas = p.ioasAlloc(fd);
  const iovas = new Set<bigint>();
  for (let i = 0; i < 10; i++) {
    const m = p.map(fd, ioas, buf, P, null);
    assert.equal(m.ret, 0);
    assert.notEqual(m.out.iova, 0n);
    iovas.add(m.out.iova);
  }
  assert.equal(iovas.size, 10);
  for (const iova of iovas) assert.equal(p.unmap(fd, ioas, iova, P).ret, 0);
  // The oracle's iommufd kernel has no THP: alignment stops at PAGE_SIZE.
  for (let i = 1n; i <= 10n; i++) {
    const m = p.map(fd, ioas, 1n << 31n, i * P, null);
    assert.equal(m.ret, 0);
    assert.equal(m.out.iova % P, 0n);
  }
  assert.equal(p.unmap(fd, ioas, 0n, ULONG_MAX).ret, 0);
  // With [200P, 600P) allowed, everything lands inside.
  const arr = p.buf + 0x20000n;
  p.sys.poke(arr, I.iommu_iova_range.encode({ start: 200n * P, last: 600n * P - 1n }));
  assert.equal(
    p.cmd(fd, I.IOMMU_IOAS_ALLOW_IOVAS, I.iommu_ioas_allow_iovas, {
      ioas_id: ioas,
      num_iovas: 1,
      allowed_iovas: arr,
    }).ret,
    0,
  );
  for (let i = 1n; i <= 10n; i++) {
    const m = p.map(fd, ioas, buf, i * P, null);
    assert.equal(m.ret, 0);
    assert.ok(m.out.iova >= 200n * P && m.out.iova + i * P <= 600n * P);
  }
  // A reserved range inside the allowed set cannot be added (EADDRINUSE) and vice versa.
  assert.equal(addReserved(ctx, ioas, 300n * P, P), err("EADDRINUSE"));
});

test("IFD-C-024 with THP the IOVA keeps the user VA's alignment up to HPAGE_SIZE", () => {
  const thp = new IoPagetable(1n << 21n);
  const nothp = new IoPagetable(P);
  const pick = (t: IoPagetable, uva: bigint, len: bigint) =>
    (t as unknown as { allocIova(u: bigint, l: bigint): bigint | number }).allocIova(uva, len);
  // user VA 2 MiB aligned, 2 MiB long: a 2 MiB aligned IOVA with THP only
  assert.equal(pick(thp, 1n << 31n, 1n << 21n), 1n << 21n);
  assert.equal(pick(nothp, 1n << 31n, 1n << 21n), P);
  // the sub-page offset of the user VA is kept
  assert.equal(pick(nothp, (1n << 31n) + 0x800n, 0x100n), P + 0x800n);
  // for each length, a multiple of its lowest set bit (the selftest's rule) with THP
  for (let i = 1n; i <= 10n; i++) {
    const len = i * P;
    const iova = pick(thp, 1n << 31n, len) as bigint;
    const low = len & -len;
    assert.equal(iova % low, 0n, `length ${len}`);
  }
});

test("IFD-C-025 vfio_ioas: GET/SET/CLEAR and destroy clearing the selection", async () => {
  const { p, fd } = await setup();
  const op = (o: number, id = 0, reserved = 0) =>
    p.cmd(fd, I.IOMMU_VFIO_IOAS, I.iommu_vfio_ioas, { op: o, ioas_id: id, __reserved: reserved });
  assert.equal(op(I.IOMMU_VFIO_IOAS_GET).ret, err("ENODEV"));
  assert.equal(op(I.IOMMU_VFIO_IOAS_SET, 0).ret, err("ENOENT"));
  const ioas = p.ioasAlloc(fd);
  assert.equal(op(I.IOMMU_VFIO_IOAS_SET, ioas).ret, 0);
  assert.deepEqual(
    [op(I.IOMMU_VFIO_IOAS_GET).ret, op(I.IOMMU_VFIO_IOAS_GET).out.ioas_id],
    [0, ioas],
  );
  assert.equal(op(I.IOMMU_VFIO_IOAS_CLEAR).ret, 0);
  assert.equal(op(I.IOMMU_VFIO_IOAS_GET).ret, err("ENODEV"));
  assert.equal(op(I.IOMMU_VFIO_IOAS_GET, 0, 1).ret, err("EOPNOTSUPP"));
  assert.equal(op(9).ret, err("EOPNOTSUPP"));
  assert.equal(op(I.IOMMU_VFIO_IOAS_SET, ioas).ret, 0);
  assert.equal(p.destroy(fd, ioas), 0);
  assert.equal(op(I.IOMMU_VFIO_IOAS_GET).ret, err("ENODEV"));
});

test("IFD-C-028 reserved_overflow: the hole above a huge reserved range, without overflow", async () => {
  // The catalog expects ENOSPC. On the oracle's iommufd kernel (4 KiB pages, no THP, so the
  // automatic alignment stops at PAGE_SIZE) 6.12's allocator finds the 0x6000 bytes left
  // between the reserved range and ULONG_MAX - PAGE_SIZE.
  const { p, fd, ctx } = await setup();
  const ioas = p.ioasAlloc(fd);
  assert.equal(addReserved(ctx, ioas, 6n, 0xffff_ffff_ffff_8001n), 0);
  const m = p.map(fd, ioas, p.buf, 0x5000n, null);
  assert.deepEqual([m.ret, m.out.iova], [0, 0xffff_ffff_ffff_9000n]);
  assert.equal(p.map(fd, ioas, p.buf, 0x5000n, null).ret, err("ENOSPC"), "nothing left");
});

test("IFD-C-029 area_allowed: reserved and allowed never intersect, whichever comes second fails", async () => {
  const { p, fd, ctx } = await setup();
  const ioas = p.ioasAlloc(fd);
  const B = MOCK_APERTURE_START;
  const arr = p.buf + 0x20000n;
  const allow = (n: number) => {
    p.sys.poke(arr, I.iommu_iova_range.encode({ start: B, last: B + 600n * P }));
    return p.cmd(fd, I.IOMMU_IOAS_ALLOW_IOVAS, I.iommu_ioas_allow_iovas, {
      ioas_id: ioas,
      num_iovas: n,
      allowed_iovas: arr,
    }).ret;
  };
  assert.equal(allow(1), 0);
  assert.equal(addReserved(ctx, ioas, B + P, P), err("EADDRINUSE"));
  assert.equal(allow(0), 0);
  assert.equal(addReserved(ctx, ioas, B + P, P), 0);
  assert.equal(allow(1), err("EADDRINUSE"));
});

test("IFD-C-030 iova_ranges with a reserved hole; EMSGSIZE writes what fits", async () => {
  const { p, fd, ctx } = await setup();
  const ioas = p.ioasAlloc(fd);
  assert.equal(addReserved(ctx, ioas, P, P), 0);
  const r = p.iovaRanges(fd, ioas, 8);
  assert.deepEqual(
    [r.ret, r.ranges],
    [
      0,
      [
        [0n, P - 1n],
        [2n * P, ULONG_MAX],
      ],
    ],
  );
  const one = p.iovaRanges(fd, ioas, 1);
  assert.deepEqual([one.ret, one.out.num_iovas, one.ranges], [err("EMSGSIZE"), 2, [[0n, P - 1n]]]);
});

test("IFD-C-031 lazy pinning: mapping memory the process never mapped succeeds without a domain", async () => {
  const { k, p, fd } = await setup();
  const ioas = p.ioasAlloc(fd);
  const frames = k.pages.inUse;
  for (let i = 1n; i <= 10n; i++) {
    const m = p.map(fd, ioas, 1n << 31n, i * P, null);
    assert.equal(m.ret, 0);
    assert.equal(p.unmap(fd, ioas, m.out.iova, i * P).ret, 0);
  }
  assert.equal(k.pages.inUse, frames, "nothing was faulted in or pinned");
});

test("IFD-C-032 IOAS_MAP_FILE does not exist in 6.12: ENOTTY", async () => {
  const { p, fd } = await setup();
  assert.equal(p.sys.ioctl(fd, I.IOMMU_FAULT_QUEUE_ALLOC + 1, p.buf), err("ENOTTY"));
  // the VFIO compat layer answers numbers outside the table
  assert.equal(p.sys.ioctl(fd, V.VFIO_GET_API_VERSION, 0n), 0);
});
