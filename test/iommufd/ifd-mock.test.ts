/**
 * iommufd with the selftest's mock domain (conformance catalog §4, IFD-M): domains attached
 * to an IOAS (aperture, IO page size, alignment), busy objects, HWPT allocation, attach and
 * replace, automatic HWPTs and their lifetime, pinning at map time with a domain, dirty
 * tracking, nested HWPTs and cache invalidation. The mock platform is selftest.ts.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { err } from "../../src/uapi/errno.js";
import * as I from "../../src/uapi/iommufd.js";
import { iommufdDeviceAttach, type IommufdDevice } from "../../src/kernel/iommufd/device.js";
import type { HwptPaging } from "../../src/kernel/iommufd/hw_pagetable.js";
import type { IommufdCtx } from "../../src/kernel/iommufd/main.js";
import {
  addReserved,
  IOMMU_HW_INFO_SELFTEST_REGVAL,
  IOMMU_HW_INFO_TYPE_SELFTEST,
  IOMMU_HWPT_DATA_SELFTEST,
  IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
  IOMMU_TEST_INVALIDATE_FLAG_ALL,
  mdCheckMap,
  MOCK_APERTURE_LAST,
  MOCK_APERTURE_START,
  MOCK_FLAGS_DEVICE_NO_DIRTY,
  MOCK_IO_PAGE_SIZE,
  mockDomain,
  mockDomainReplace,
  MockIommu,
  type MockNestedDomain,
} from "../../src/kernel/iommufd/selftest.js";
import { bootIommufd, holdings, PAGE, Proc } from "./support.js";

const P = PAGE;
const MS = MOCK_APERTURE_START;
const ML = MOCK_APERTURE_LAST;
const MP = MOCK_IO_PAGE_SIZE;
const ULONG_MAX = (1n << 64n) - 1n;

async function setup() {
  const k = await bootIommufd();
  const p = Proc.spawn(k);
  const fd = p.open("/dev/iommu");
  const ctx = p.sys.task.files.get(fd)?.priv as IommufdCtx;
  const mock = new MockIommu();
  const buf = p.mmap(16 * 4096);
  p.touch(buf, 16 * 4096);
  const ioas = p.ioasAlloc(fd);
  const md = (pt: number, flags = 0) => {
    const r = mockDomain(mock, ctx, p.sys.task, pt, flags);
    assert.ok(typeof r !== "number", `MOCK_DOMAIN: ${String(r)}`);
    return r;
  };
  return { k, p, fd, ctx, mock, buf, ioas, md };
}

test("IFD-M-001 an IOAS with a domain is busy; areas alone never are", async () => {
  const { p, fd, buf, ioas, md } = await setup();
  const d = md(ioas);
  assert.equal(p.destroy(fd, ioas), err("EBUSY"));
  assert.equal(p.map(fd, ioas, buf, P, MS).ret, 0);
  assert.equal(p.destroy(fd, ioas), err("EBUSY"));
  assert.equal(p.destroy(fd, d.stdevId), 0, "the mock device goes, with its automatic HWPT");
  assert.equal(p.destroy(fd, d.hwptId), err("ENOENT"));
  assert.equal(p.destroy(fd, ioas), 0);
});

test("IFD-M-002 a second mock device attached by HWPT id joins it", async () => {
  const { p, fd, ioas, md } = await setup();
  const d = md(ioas);
  const d2 = md(d.hwptId);
  assert.equal(d2.hwptId, d.hwptId);
  assert.equal(p.destroy(fd, d.hwptId), err("EBUSY"));
  assert.equal(
    mockDomain(new MockIommu(), p.sys.task.files.get(fd)?.priv as IommufdCtx, null, 0),
    err("ENOENT"),
  );
});

test("IFD-M-003 GET_HW_INFO: lengths, zero fill, the data type, the dirty capability", async () => {
  const { p, fd, ioas, md } = await setup();
  const d = md(ioas);
  const data = p.buf + 0x10000n;
  const info = (len: number, uptr = data) => {
    p.sys.poke(data, new Uint8Array(32).fill(0xaa));
    const r = p.cmd(fd, I.IOMMU_GET_HW_INFO, I.iommu_hw_info, {
      dev_id: d.idevId,
      data_len: len,
      data_uptr: uptr,
    });
    return { ...r, bytes: p.sys.peek(data, 16) as Uint8Array };
  };
  const none = info(0, 0n);
  assert.deepEqual(
    [none.ret, none.out.data_len, none.out.out_data_type],
    [0, 8, IOMMU_HW_INFO_TYPE_SELFTEST],
  );
  assert.equal(none.out.out_capabilities, BigInt(I.IOMMU_HW_CAP_DIRTY_TRACKING));
  const exact = info(8);
  assert.equal(Buffer.from(exact.bytes).readUInt32LE(4), IOMMU_HW_INFO_SELFTEST_REGVAL);
  const big = info(16);
  assert.deepEqual([...big.bytes.subarray(8, 16)], new Array(8).fill(0), "zero-filled tail");
  const small = info(4);
  assert.deepEqual([...small.bytes.subarray(4, 8)], [0xaa, 0xaa, 0xaa, 0xaa], "only 4 bytes");
  assert.equal(small.out.data_len, 8);
  const r = (v: Partial<ReturnType<typeof I.iommu_hw_info.decode>>) =>
    p.cmd(fd, I.IOMMU_GET_HW_INFO, I.iommu_hw_info, { dev_id: d.idevId, ...v }).ret;
  // 6.12.117: bytes 21-23 are __reserved[3]; byte 20 is out_max_pasid_log2, an output
  assert.equal(r({ __reserved0: 1 }), err("EOPNOTSUPP"));
  assert.equal(r({ __reserved2: 0x80 }), err("EOPNOTSUPP"));
  const pasid = p.cmd(fd, I.IOMMU_GET_HW_INFO, I.iommu_hw_info, {
    dev_id: d.idevId,
    out_max_pasid_log2: 0xff,
  });
  assert.deepEqual([pasid.ret, pasid.out.out_max_pasid_log2], [0, 0], "no PASID support");
  assert.equal(r({ flags: 1 }), err("EOPNOTSUPP"));
  assert.equal(r({ dev_id: d.hwptId }), err("ENOENT"));
  assert.equal(
    r({ dev_id: md(ioas, MOCK_FLAGS_DEVICE_NO_DIRTY).idevId }),
    0,
    "a device without dirty tracking",
  );
  const nd = p.cmd(fd, I.IOMMU_GET_HW_INFO, I.iommu_hw_info, { dev_id: d.idevId + 3 });
  assert.equal(nd.out.out_capabilities, 0n);
});

test("IFD-M-004 a domain turns what is outside its aperture reserved and sets the alignment", async () => {
  const { p, fd, ctx, ioas, md } = await setup();
  md(ioas);
  const r = p.iovaRanges(fd, ioas);
  assert.deepEqual([r.ret, r.ranges, r.out.out_iova_alignment], [0, [[MS, ML]], MP]);
  assert.equal(addReserved(ctx, ioas, P, P), 0);
  assert.deepEqual(p.iovaRanges(fd, ioas, 1).ranges, [[MS, ML]]);
  assert.equal(p.iovaRanges(fd, ioas, 1).ret, 0);
});

test("IFD-M-005 automatic IOVA lengths must be IO-page multiples with a domain", async () => {
  const { p, fd, buf, ioas, md } = await setup();
  md(ioas);
  for (let len = 1n; len < 2n * P; len += 255n) {
    const m = p.map(fd, ioas, buf, len, null);
    if (len % MP) assert.equal(m.ret, err("EINVAL"), `length ${len}`);
    else {
      assert.equal(m.ret, 0);
      assert.equal(p.unmap(fd, ioas, m.out.iova, len).ret, 0);
    }
  }
});

test("IFD-M-006 attaching refuses areas outside the aperture and leaves nothing behind", async () => {
  const { k, p, fd, ctx, mock, buf, ioas, md } = await setup();
  assert.equal(p.map(fd, ioas, buf, P, 0n).ret, 0);
  const before = holdings(k);
  assert.equal(mockDomain(mock, ctx, p.sys.task, ioas), err("EADDRINUSE"));
  assert.deepEqual(holdings(k), before);
  assert.equal(p.unmap(fd, ioas, 0n, P).ret, 0);
  md(ioas);
  // An area whose iova and uva are not IO-page aligned blocks the alignment upgrade.
  const ioas2 = p.ioasAlloc(fd);
  assert.equal(p.map(fd, ioas2, buf + 1n, P, MS + 1n).ret, 0);
  assert.equal(mockDomain(mock, ctx, p.sys.task, ioas2), err("EADDRINUSE"));
});

test("IFD-M-007 alloc_hwpt rotation: user HWPTs outlive detach and are busy while used", async () => {
  const { p, fd, ctx, ioas, md } = await setup();
  const d = md(ioas);
  assert.equal(
    p.hwptAlloc(fd, d.idevId, ioas, ~I.IOMMU_HWPT_ALLOC_NEST_PARENT).ret,
    err("EOPNOTSUPP"),
  );
  const h0 = p.hwptAlloc(fd, d.idevId, ioas).out.out_hwpt_id;
  const h1r = p.hwptAlloc(fd, d.idevId, ioas, I.IOMMU_HWPT_ALLOC_NEST_PARENT);
  assert.equal(h1r.ret, 0);
  const h1 = h1r.out.out_hwpt_id;
  assert.equal(mockDomainReplace(ctx, null, d.stdevId, h0), h0);
  assert.equal(p.destroy(fd, h0), err("EBUSY"));
  assert.equal(mockDomainReplace(ctx, null, d.stdevId, h1), h1);
  assert.equal(p.destroy(fd, h1), err("EBUSY"));
  assert.ok(mockDomainReplace(ctx, null, d.stdevId, ioas) > 0);
  assert.equal(p.destroy(fd, h1), 0);
  const d2 = md(h0);
  assert.equal(d2.hwptId, h0);
  assert.equal(p.destroy(fd, d2.stdevId), 0);
  assert.equal(p.destroy(fd, h0), 0);
});

test("IFD-M-008 replace: automatic HWPTs die with their last device; replacing to the same is a no-op", async () => {
  const { p, fd, ctx, ioas, md } = await setup();
  const d0 = md(ioas);
  const ioas2 = p.ioasAlloc(fd);
  const h2 = mockDomainReplace(ctx, null, d0.stdevId, ioas2);
  assert.ok(h2 > 0 && h2 !== d0.hwptId);
  assert.equal(mockDomainReplace(ctx, null, d0.stdevId, d0.hwptId), err("ENOENT"));
  assert.equal(mockDomainReplace(ctx, null, d0.stdevId, ioas2), h2);
  // two devices: the first automatic HWPT is shared and survives either leaving
  const d1 = md(ioas);
  const d2 = md(ioas);
  assert.equal(d1.hwptId, d2.hwptId);
  assert.equal(mockDomainReplace(ctx, null, d1.stdevId, ioas2), h2, "joins ioas2's automatic HWPT");
  assert.equal(mockDomainReplace(ctx, null, d1.stdevId, d2.hwptId), d2.hwptId);
  assert.equal(mockDomainReplace(ctx, null, d0.stdevId, ioas), d2.hwptId);
  assert.equal(p.destroy(fd, ioas2), 0, "ioas2's HWPT went with its last device");
});

test("IFD-M-009 attach/replace state machine", async () => {
  const { p, fd, ctx, ioas, md } = await setup();
  const d = md(ioas);
  const idev = ctx.objects.get(d.idevId) as IommufdDevice;
  const h = p.hwptAlloc(fd, d.idevId, ioas).out.out_hwpt_id;
  assert.equal(iommufdDeviceAttach(null, idev, { v: h }), err("EINVAL"), "attached: replace it");
  assert.equal(mockDomainReplace(ctx, null, d.stdevId, d.hwptId), d.hwptId, "same: nothing");
  assert.equal(mockDomainReplace(ctx, null, d.stdevId, d.idevId), err("EINVAL"), "a device id");
  assert.equal(mockDomainReplace(ctx, null, d.stdevId, 999), err("ENOENT"));
});

test("IFD-M-010 with a domain, mapping pins at once: a bad VA fails and leaves nothing", async () => {
  const { k, p, fd, ctx, ioas, md } = await setup();
  md(ioas);
  const big = p.mmap(8 * 4096);
  p.touch(big, 8 * 4096);
  const one = p.map(fd, ioas, big, P, null);
  assert.equal(one.ret, 0);
  const hwpt = [...ctx.objects.values()].find((o) => o?.type === "hwpt_paging") as HwptPaging;
  assert.equal(mdCheckMap(ctx, p.sys.task, hwpt.id, one.out.iova, P, big), 0);
  assert.equal(p.unmap(fd, ioas, one.out.iova, P).ret, 0);
  assert.equal(p.sys.munmap(big + 4n * P, 4 * 4096), 0);
  const before = holdings(k);
  assert.equal(p.map(fd, ioas, big, 8n * P, null).ret, err("EFAULT"));
  assert.equal(p.sys.munmap(big, 4 * 4096), 0);
  assert.equal(p.map(fd, ioas, big, 8n * P, null).ret, err("EFAULT"));
  assert.equal(holdings(k).objects, before.objects);
  assert.equal(p.iovaRanges(fd, ioas).ret, 0);
  assert.equal(p.unmap(fd, ioas, 0n, ULONG_MAX).out.length, 0n, "no area left behind");
});

test("IFD-M-012 all_aligns: IO-page granular areas map exactly and unpin completely", async () => {
  const { k, p, fd, ctx, ioas, md } = await setup();
  const d = md(ioas);
  const big = p.mmap(8 * 4096);
  p.touch(big, 8 * 4096);
  const frames = k.pages.inUse;
  const end = 8n * P;
  for (let s = 0n; s < end; s += 3n * MP)
    for (let e = s + MP; e <= end; e += 5n * MP) {
      const m = p.map(fd, ioas, big + s, e - s, null);
      assert.equal(m.ret, 0, `[${s}, ${e})`);
      assert.equal(mdCheckMap(ctx, p.sys.task, d.hwptId, m.out.iova, e - s, big + s), 0);
      assert.equal(p.unmap(fd, ioas, m.out.iova, e - s).ret, 0);
    }
  assert.equal(k.pages.inUse, frames);
  // all pins gone: unmapping the memory frees every frame
  assert.equal(p.sys.munmap(big, 8 * 4096), 0);
  assert.equal(k.pages.inUse, frames - 8);
});

test("IFD-M-019…022 dirty tracking on a mock HWPT: enforcement, enable, bitmap, NO_CLEAR", async () => {
  const { p, fd, ctx, mock, buf, ioas, md } = await setup();
  const d = md(ioas);
  const h = p.hwptAlloc(fd, d.idevId, ioas, I.IOMMU_HWPT_ALLOC_DIRTY_TRACKING);
  assert.equal(h.ret, 0);
  const hwpt = h.out.out_hwpt_id;
  assert.equal(mockDomain(mock, ctx, null, hwpt, MOCK_FLAGS_DEVICE_NO_DIRTY), err("EINVAL"));
  const nd = md(ioas, MOCK_FLAGS_DEVICE_NO_DIRTY);
  assert.equal(
    p.hwptAlloc(fd, nd.idevId, ioas, I.IOMMU_HWPT_ALLOC_DIRTY_TRACKING).ret,
    err("EOPNOTSUPP"),
  );
  const set = (flags: number, id = hwpt) =>
    p.cmd(fd, I.IOMMU_HWPT_SET_DIRTY_TRACKING, I.iommu_hwpt_set_dirty_tracking, {
      flags,
      hwpt_id: id,
    }).ret;
  assert.equal(set(2), err("EOPNOTSUPP"));
  assert.equal(set(1, d.hwptId), err("EOPNOTSUPP"), "a HWPT without dirty tracking");
  assert.equal(set(1), 0);
  assert.equal(p.map(fd, ioas, buf, 16n * P, MS).ret, 0);
  const dom = (ctx.objects.get(hwpt) as HwptPaging).domain;
  assert.equal(mock.markDirty(dom, MS, MP), 1);
  assert.equal(mock.markDirty(dom, MS + 4n * MP, 2n * MP), 2);
  const bitmap = p.buf + 0x20000n;
  const get = (flags: number, length = 16n * P, page = MP) => {
    p.sys.poke(bitmap, new Uint8Array(8));
    const r = p.cmd(fd, I.IOMMU_HWPT_GET_DIRTY_BITMAP, I.iommu_hwpt_get_dirty_bitmap, {
      hwpt_id: hwpt,
      flags,
      iova: MS,
      length,
      page_size: page,
      data: bitmap,
    });
    return { ret: r.ret, bits: Buffer.from(p.sys.peek(bitmap, 8) as Uint8Array).readBigUInt64LE() };
  };
  assert.deepEqual(get(I.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR), { ret: 0, bits: 0b110001n });
  assert.deepEqual(get(0), { ret: 0, bits: 0b110001n });
  assert.deepEqual(get(0), { ret: 0, bits: 0n }, "the read cleared them");
  assert.equal(get(0, 16n * P, 0n).ret, err("EINVAL"));
  assert.equal(get(0, 1n).ret, err("EINVAL"));
  assert.equal(get(2).ret, err("EOPNOTSUPP"));
  assert.equal(set(0), 0);
});

test("IFD-M-023/024 nested HWPTs over a nest parent, and their cache invalidation", async () => {
  const { p, fd, ctx, ioas, md } = await setup();
  const d = md(ioas);
  const data = p.buf + 0x20000n;
  p.sys.poke(data, Uint8Array.of(0xef, 0xbe, 0xad, 0x0b)); // iotlb = IOMMU_TEST_IOTLB_DEFAULT
  const nested = (parent: number, v: Partial<ReturnType<typeof I.iommu_hwpt_alloc.decode>> = {}) =>
    p.cmd(fd, I.IOMMU_HWPT_ALLOC, I.iommu_hwpt_alloc, {
      dev_id: d.idevId,
      pt_id: parent,
      data_type: IOMMU_HWPT_DATA_SELFTEST,
      data_len: 4,
      data_uptr: data,
      ...v,
    });
  const plain = p.hwptAlloc(fd, d.idevId, ioas).out.out_hwpt_id;
  const parent = p.hwptAlloc(fd, d.idevId, ioas, I.IOMMU_HWPT_ALLOC_NEST_PARENT).out.out_hwpt_id;
  assert.equal(nested(parent, { dev_id: ioas }).ret, err("ENOENT"));
  assert.equal(nested(d.idevId).ret, err("EINVAL"), "pt is a device");
  assert.equal(nested(plain).ret, err("EINVAL"), "parent without NEST_PARENT");
  assert.equal(nested(parent, { data_type: I.IOMMU_HWPT_DATA_NONE }).ret, err("EINVAL"));
  assert.equal(nested(parent, { data_type: 0xbeef }).ret, err("EOPNOTSUPP"));
  assert.equal(nested(parent, { data_len: 2 }).ret, err("EINVAL"));
  assert.equal(nested(parent, { data_uptr: 0n }).ret, err("EFAULT"), "a NULL data pointer");
  assert.equal(nested(parent, { flags: I.IOMMU_HWPT_ALLOC_NEST_PARENT }).ret, err("EOPNOTSUPP"));
  const n1 = nested(parent);
  assert.equal(n1.ret, 0);
  const nid = n1.out.out_hwpt_id;
  assert.equal(nested(nid).ret, err("EINVAL"), "nested on nested");
  assert.equal(p.destroy(fd, parent), err("EBUSY"));
  const dom = (ctx.objects.get(nid) as unknown as { domain: MockNestedDomain }).domain;
  assert.deepEqual(dom.iotlb, [0xbadbeef, 0xbadbeef, 0xbadbeef, 0xbadbeef]);
  // invalidation
  const entries = p.buf + 0x30000n;
  const inv = (
    hwpt: number,
    n: number,
    v: Partial<ReturnType<typeof I.iommu_hwpt_invalidate.decode>> = {},
  ) =>
    p.cmd(fd, I.IOMMU_HWPT_INVALIDATE, I.iommu_hwpt_invalidate, {
      hwpt_id: hwpt,
      data_uptr: entries,
      data_type: IOMMU_HWPT_INVALIDATE_DATA_SELFTEST,
      entry_len: 8,
      entry_num: n,
      ...v,
    });
  const entry = (flags: number, id: number) => {
    const b = new Uint8Array(8);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, flags, true);
    dv.setUint32(4, id, true);
    return b;
  };
  p.sys.poke(entries, entry(0, 1));
  p.sys.poke(entries + 8n, entry(0, 9));
  const onPaging = inv(parent, 1);
  assert.deepEqual([onPaging.ret, onPaging.out.entry_num], [err("ENOENT"), 0]);
  assert.equal(inv(nid, 0).ret, 0);
  assert.equal(inv(nid, 1, { data_type: 0 }).ret, err("EINVAL"));
  assert.equal(inv(nid, 1, { data_uptr: 0n }).ret, err("EINVAL"));
  assert.equal(inv(nid, 1, { entry_len: 0 }).ret, err("EINVAL"));
  // 6.12.117 bounds: entry_len up to PAGE_SIZE, entry_num up to 2^19
  for (const big of [inv(nid, 1, { entry_len: 4097 }), inv(nid, (1 << 19) + 1)])
    assert.deepEqual([big.ret, big.out.entry_num], [err("EINVAL"), 0], "refused before any entry");
  const two = inv(nid, 2);
  assert.deepEqual([two.ret, two.out.entry_num], [err("EINVAL"), 1], "the second entry is bad");
  assert.deepEqual(dom.iotlb, [0xbadbeef, 0, 0xbadbeef, 0xbadbeef]);
  p.sys.poke(entries, entry(2, 0));
  assert.equal(inv(nid, 1).ret, err("EOPNOTSUPP"));
  p.sys.poke(entries, entry(IOMMU_TEST_INVALIDATE_FLAG_ALL, 0));
  assert.equal(inv(nid, 1).ret, 0);
  assert.deepEqual(dom.iotlb, [0, 0, 0, 0]);
  // attach the nested HWPT, then tear the chain down in reverse
  assert.equal(mockDomainReplace(ctx, null, d.stdevId, nid), nid);
  assert.equal(p.destroy(fd, nid), err("EBUSY"));
  assert.ok(mockDomainReplace(ctx, null, d.stdevId, ioas) > 0);
  assert.equal(p.destroy(fd, nid), 0);
  assert.equal(p.destroy(fd, parent), 0);
});

test("IFD-M-025 the area rules hold unchanged under a domain", async () => {
  const { p, fd, buf, ioas, md } = await setup();
  md(ioas);
  for (let i = 0n; i < 10n; i++) assert.equal(p.unmap(fd, ioas, MS + i * P, P).ret, err("ENOENT"));
  assert.equal(p.map(fd, ioas, buf, 2n * P, MS + 16n * P).ret, 0);
  assert.equal(p.unmap(fd, ioas, MS + 16n * P, P).ret, err("ENOENT"), "no splitting");
  assert.equal(p.map(fd, ioas, buf, P, MS + 17n * P).ret, err("EEXIST"));
  assert.equal(p.map(fd, ioas, buf, P, 0n).ret, err("EINVAL"), "outside the aperture");
  assert.equal(p.unmap(fd, ioas, 0n, ULONG_MAX).out.length, 2n * P);
});

test("IFD-M-026 a second device reuses the IOAS's automatic HWPT, which a new domain fills", async () => {
  const { p, fd, ctx, buf, ioas, md } = await setup();
  assert.equal(p.map(fd, ioas, buf, 4n * P, MS).ret, 0);
  const d1 = md(ioas);
  const d2 = md(ioas);
  assert.equal(d1.hwptId, d2.hwptId);
  assert.equal(mdCheckMap(ctx, p.sys.task, d1.hwptId, MS, 4n * P, buf), 0, "filled at attach");
  // A user HWPT added later is filled with the existing areas as well.
  const h = p.hwptAlloc(fd, d1.idevId, ioas).out.out_hwpt_id;
  assert.equal(mdCheckMap(ctx, p.sys.task, h, MS, 4n * P, buf), 0);
  assert.equal(p.destroy(fd, d1.stdevId), 0);
  assert.equal(p.destroy(fd, d1.hwptId), err("EBUSY"), "device 2 keeps it");
});

test("closing the iommufd with mock devices attached gives everything back", async () => {
  const { k, p, fd, buf, ioas, md } = await setup();
  const before = holdings(k);
  md(ioas);
  md(ioas);
  assert.equal(p.map(fd, ioas, buf, 8n * P, MS).ret, 0);
  assert.equal(p.sys.close(fd), 0);
  const after = holdings(k);
  assert.deepEqual({ ...after, contexts: 1 }, { ...before, objects: 0 });
});
