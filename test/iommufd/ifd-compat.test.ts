/**
 * The VFIO type1 emulation on an iommufd (conformance catalog §5, IFD-X): the container
 * ioctls without a compat IOAS, with a mock domain behind VFIO_IOAS SET, and with a real
 * VFIO group set on the iommufd (the compat IOAS it creates, the device attached at its
 * first open).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { err } from "../../src/uapi/errno.js";
import * as I from "../../src/uapi/iommufd.js";
import * as V from "../../src/uapi/vfio.js";
import type { IommufdCtx } from "../../src/kernel/iommufd/main.js";
import {
  MOCK_APERTURE_LAST,
  MOCK_APERTURE_START,
  mockDomain,
  MockIommu,
} from "../../src/kernel/iommufd/selftest.js";
import { bootIommufd, E1000E, PAGE, Proc } from "./support.js";

const P = PAGE;
const MS = MOCK_APERTURE_START;

async function nodev() {
  const k = await bootIommufd();
  const p = Proc.spawn(k);
  return { k, p, fd: p.open("/dev/iommu") };
}

/** vfio_compat_mock_domain: an IOAS with a mock device, set as compat IOAS, SET_IOMMU(type). */
async function withMock(type: number) {
  const { k, p, fd } = await nodev();
  const ctx = p.sys.task.files.get(fd)?.priv as IommufdCtx;
  const ioas = p.ioasAlloc(fd);
  assert.ok(typeof mockDomain(new MockIommu(), ctx, p.sys.task, ioas) !== "number");
  assert.equal(
    p.cmd(fd, I.IOMMU_VFIO_IOAS, I.iommu_vfio_ioas, { op: I.IOMMU_VFIO_IOAS_SET, ioas_id: ioas })
      .ret,
    0,
  );
  assert.equal(p.sys.ioctl(fd, V.VFIO_SET_IOMMU, BigInt(type)), 0);
  const buf = p.mmap(64 * 4096);
  p.touch(buf, 64 * 4096);
  return { k, p, fd, ioas, buf };
}

const mapDma = (p: Proc, fd: number, vaddr: bigint, iova: bigint, size: bigint, flags = 3) =>
  p.cmd(fd, V.VFIO_IOMMU_MAP_DMA, V.vfio_iommu_type1_dma_map, { flags, vaddr, iova, size }).ret;
const unmapDma = (p: Proc, fd: number, iova: bigint, size: bigint, flags = 0) =>
  p.cmd(fd, V.VFIO_IOMMU_UNMAP_DMA, V.vfio_iommu_type1_dma_unmap, { flags, iova, size });

test("IFD-X-001 simple_ioctls on /dev/iommu", async () => {
  const { p, fd } = await nodev();
  assert.equal(p.sys.ioctl(fd, V.VFIO_GET_API_VERSION, 0n), V.VFIO_API_VERSION);
  assert.equal(p.sys.ioctl(fd, V.VFIO_CHECK_EXTENSION, BigInt(V.VFIO_TYPE1v2_IOMMU)), 1);
});

test("IFD-X-002…005 without a compat IOAS: argument errors first, then ENODEV", async () => {
  const { p, fd } = await nodev();
  assert.equal(unmapDma(p, fd, MS, P).ret, err("ENODEV"));
  const U = V.vfio_iommu_type1_dma_unmap;
  assert.equal(p.cmd(fd, V.VFIO_IOMMU_UNMAP_DMA, U, { argsz: 1 }).ret, err("EINVAL"));
  assert.equal(unmapDma(p, fd, MS, P, 1 << 31).ret, err("EINVAL"));
  const M = V.vfio_iommu_type1_dma_map;
  assert.equal(p.cmd(fd, V.VFIO_IOMMU_MAP_DMA, M, { argsz: 1 }).ret, err("EINVAL"));
  assert.equal(mapDma(p, fd, p.buf, MS, P, 1 << 31), err("EINVAL"));
  assert.equal(mapDma(p, fd, p.buf, MS, P), err("ENODEV"));
  const G = V.vfio_iommu_type1_info;
  assert.equal(p.cmd(fd, V.VFIO_IOMMU_GET_INFO, G, { argsz: 1 }).ret, err("EINVAL"));
  assert.equal(p.cmd(fd, V.VFIO_IOMMU_GET_INFO, G, {}).ret, err("ENODEV"));
  assert.equal(p.sys.ioctl(fd, V.VFIO_SET_IOMMU, BigInt(V.VFIO_TYPE1v2_IOMMU)), err("ENODEV"));
  assert.equal(p.sys.ioctl(fd, V.VFIO_SET_IOMMU, BigInt(V.VFIO_TYPE1_IOMMU)), err("ENODEV"));
  for (const t of [V.VFIO_SPAPR_TCE_IOMMU, V.VFIO_SPAPR_TCE_v2_IOMMU, V.VFIO_NOIOMMU_IOMMU, 4])
    assert.equal(p.sys.ioctl(fd, V.VFIO_SET_IOMMU, BigInt(t)), err("EINVAL"), `type ${t}`);
  assert.equal(p.sys.ioctl(fd, V.VFIO_CHECK_EXTENSION, BigInt(V.VFIO_DMA_CC_IOMMU)), err("ENODEV"));
});

test("IFD-X-006 compat map/unmap: exact, ALL, page by page in any order, empty ranges", async () => {
  const { p, fd, buf } = await withMock(V.VFIO_TYPE1v2_IOMMU);
  const BUF = 16n * P;
  assert.equal(mapDma(p, fd, buf, MS, BUF), 0);
  assert.deepEqual([unmapDma(p, fd, MS, BUF).ret, unmapDma(p, fd, MS, BUF).out.size], [0, 0n]);
  assert.equal(mapDma(p, fd, buf, MS, BUF), 0);
  assert.equal(unmapDma(p, fd, MS, BUF, V.VFIO_DMA_UNMAP_FLAG_ALL).ret, err("EINVAL"));
  const all = unmapDma(p, fd, 0n, 0n, V.VFIO_DMA_UNMAP_FLAG_ALL);
  assert.deepEqual([all.ret, all.out.size], [0, BUF]);
  for (let i = 0n; i < 16n; i++) assert.equal(mapDma(p, fd, buf + i * P, MS + i * P, P), 0);
  for (const i of [5n, 0n, 15n, 7n, 3n, 9n, 1n, 14n, 2n, 8n, 13n, 4n, 12n, 6n, 11n, 10n]) {
    const r = unmapDma(p, fd, MS + i * P, P);
    assert.deepEqual([r.ret, r.out.size], [0, P]);
  }
  const none = unmapDma(p, fd, MS, P);
  assert.deepEqual([none.ret, none.out.size], [0, 0n], "6.12.117: empty is success");
});

test("IFD-X-007 huge_map: TYPE1 (v1) cuts a mapping, TYPE1v2 refuses with ENOENT", async () => {
  for (const [type, want] of [
    [V.VFIO_TYPE1_IOMMU, 0],
    [V.VFIO_TYPE1v2_IOMMU, err("ENOENT")],
  ] as const) {
    const { p, fd, buf } = await withMock(type);
    const size = 32n * P;
    assert.equal(mapDma(p, fd, buf, MS, size), 0);
    for (const i of [3n, 0n, 12n, 7n, 15n, 1n]) {
      const r = unmapDma(p, fd, MS + i * (size / 16n), size / 16n);
      assert.equal(r.ret, want, `type ${type} piece ${i}`);
    }
  }
});

test("IFD-X-008 HUGE_PAGES after SET_IOMMU: off for TYPE1, on for TYPE1v2", async () => {
  for (const [type, want] of [
    [V.VFIO_TYPE1_IOMMU, 0n],
    [V.VFIO_TYPE1v2_IOMMU, 1n],
  ] as const) {
    const { p, fd, ioas } = await withMock(type);
    const r = p.option(fd, I.IOMMU_OPTION_HUGE_PAGES, I.IOMMU_OPTION_OP_GET, ioas);
    assert.equal(r.out.val64, want);
  }
});

test("IFD-X-009 GET_INFO: pre-cap ABI, the size needed, every argsz in between", async () => {
  const { p, fd } = await withMock(V.VFIO_TYPE1v2_IOMMU);
  const C = V.vfio_iommu_type1_info;
  const ask = (argsz: number) => {
    const b = new Uint8Array(256).fill(0xaa);
    b.set(
      C.encode({ argsz, flags: 0, iova_pgsizes: 0n, cap_offset: 0, pad: 0 }).subarray(
        0,
        Math.min(argsz, C.size),
      ),
    );
    p.poke(0, b);
    const ret = p.sys.ioctl(fd, V.VFIO_IOMMU_GET_INFO, p.buf);
    const out = p.peek(0, 256);
    assert.ok(
      out.subarray(Math.max(argsz, 16)).every((x) => x === 0xaa),
      `argsz ${argsz}: nothing past it`,
    );
    return { ret, info: C.decode(out), out };
  };
  const pre = ask(C.offsets.cap_offset as number);
  assert.equal(pre.ret, 0);
  assert.equal(pre.info.flags, V.VFIO_IOMMU_INFO_PGSIZES | V.VFIO_IOMMU_INFO_CAPS);
  assert.notEqual(pre.info.iova_pgsizes, 0n);
  const sized = ask(C.size);
  assert.deepEqual([sized.info.cap_offset, sized.info.argsz > C.size], [0, true]);
  const need = sized.info.argsz;
  for (let argsz = C.size; argsz <= need; argsz++) {
    const r = ask(argsz);
    assert.equal(r.ret, 0);
    if (!r.info.cap_offset) continue;
    assert.equal(argsz, need, "the chain is only offered whole");
    const dv = new DataView(r.out.buffer, r.out.byteOffset);
    let at = r.info.cap_offset;
    const ids: number[] = [];
    for (;;) {
      ids.push(dv.getUint16(at, true));
      assert.equal(dv.getUint16(at + 2, true), 1);
      if (dv.getUint16(at, true) === V.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL)
        assert.equal(dv.getUint32(at + 8, true), 0xffffffff);
      if (dv.getUint16(at, true) === V.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
        assert.equal(dv.getUint32(at + 8, true), 1);
        assert.equal(dv.getBigUint64(at + 16, true), MS);
        assert.equal(dv.getBigUint64(at + 24, true), MOCK_APERTURE_LAST);
      }
      const next = dv.getUint32(at + 4, true);
      if (!next) break;
      assert.ok(next > at);
      at = next;
    }
    assert.deepEqual(ids, [
      V.VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL,
      V.VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE,
    ]);
  }
});

test("IFD-X-010 CHECK_EXTENSION: the compat table", async () => {
  const { p, fd } = await withMock(V.VFIO_TYPE1v2_IOMMU);
  const want: Record<number, number> = {
    0: 0,
    1: 1,
    2: 0,
    3: 1,
    4: 0,
    5: 0,
    6: 0,
    7: 0,
    8: 1,
    9: 1,
    10: 0,
    11: 0,
  };
  for (const [ext, v] of Object.entries(want))
    assert.equal(p.sys.ioctl(fd, V.VFIO_CHECK_EXTENSION, BigInt(ext)), v, `extension ${ext}`);
});

test("IFD-X-011 compat flag restrictions", async () => {
  const { p, fd, buf } = await withMock(V.VFIO_TYPE1v2_IOMMU);
  assert.equal(mapDma(p, fd, buf, MS, P, 7), err("EINVAL"), "VADDR");
  assert.equal(mapDma(p, fd, buf, MS, P, 0), 0, "neither READ nor WRITE: an IOMMU_CACHE-only map");
  assert.equal(unmapDma(p, fd, MS, P, V.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP).ret, err("EINVAL"));
  assert.equal(unmapDma(p, fd, MS, P, V.VFIO_DMA_UNMAP_FLAG_VADDR).ret, err("EINVAL"));
  const dp = p.cmd(fd, V.VFIO_IOMMU_DIRTY_PAGES, V.vfio_iommu_type1_dirty_bitmap, { flags: 1 });
  assert.equal(dp.ret, err("ENOTTY"));
});

test("IFD-X-012 a VFIO group set on an iommufd creates the compat IOAS; the first open attaches", async () => {
  const { p, fd } = await nodev();
  p.toVfio(E1000E);
  const g = p.open(`/dev/vfio/${p.groupOf(E1000E)}`);
  assert.ok(g >= 0);
  p.poke(0, Uint8Array.of(fd, 0, 0, 0));
  assert.equal(p.sys.ioctl(g, V.VFIO_GROUP_SET_CONTAINER, p.buf), 0);
  const get = p.cmd(fd, I.IOMMU_VFIO_IOAS, I.iommu_vfio_ioas, { op: I.IOMMU_VFIO_IOAS_GET });
  assert.equal(get.ret, 0);
  const status = p.cmd(g, V.VFIO_GROUP_GET_STATUS, V.vfio_group_status, {});
  assert.equal(status.out.flags, V.VFIO_GROUP_FLAGS_VIABLE | V.VFIO_GROUP_FLAGS_CONTAINER_SET);
  assert.equal(p.sys.ioctl(fd, V.VFIO_SET_IOMMU, BigInt(V.VFIO_TYPE1v2_IOMMU)), 0);
  const ioas = get.out.ioas_id;
  assert.deepEqual(p.iovaRanges(fd, ioas).ranges, [[0n, (1n << 64n) - 1n]], "no domain yet");
  p.poke(0, Buffer.from(`${E1000E}\0`));
  const dev = p.sys.ioctl(g, V.VFIO_GROUP_GET_DEVICE_FD, p.buf);
  assert.ok(dev >= 0);
  assert.equal(
    p.iovaRanges(fd, ioas).ranges.length,
    2,
    "the device's domain: aperture and MSI window",
  );
  const buf = p.mmap(16 * 4096);
  assert.equal(mapDma(p, fd, buf, 0x100000n, 16n * P), 0);
  // a second group set on the same iommufd reuses the compat IOAS
  assert.equal(p.cmd(fd, I.IOMMU_VFIO_IOAS, I.iommu_vfio_ioas, { op: 0 }).out.ioas_id, ioas);
  // UNSET_CONTAINER with the device open: fine with iommufd; the group is no longer viable
  assert.equal(p.sys.ioctl(g, V.VFIO_GROUP_UNSET_CONTAINER, 0n), 0);
  assert.equal(p.cmd(g, V.VFIO_GROUP_GET_STATUS, V.vfio_group_status, {}).out.flags, 0);
  assert.equal(p.sys.close(dev), 0);
  assert.equal(
    p.cmd(g, V.VFIO_GROUP_GET_STATUS, V.vfio_group_status, {}).out.flags,
    V.VFIO_GROUP_FLAGS_VIABLE,
  );
});

test("SET_CONTAINER with a file that is neither a container nor an iommufd is EBADFD", async () => {
  const { p } = await nodev();
  p.toVfio(E1000E);
  const g = p.open(`/dev/vfio/${p.groupOf(E1000E)}`);
  const kvm = p.open("/dev/kvm");
  p.poke(0, Uint8Array.of(kvm, 0, 0, 0));
  assert.equal(p.sys.ioctl(g, V.VFIO_GROUP_SET_CONTAINER, p.buf), err("EBADFD"));
});
