/**
 * The VFIO type1 backend against drivers/vfio/vfio_iommu_type1.c of Linux 6.12: the T1
 * cases of the conformance catalog (§8) and the userspace sequences of §14 that use a
 * type1 container. Each expectation was worked out from the source (the order of checks
 * in vfio_dma_do_map / vfio_dma_do_unmap, the semantics of the v1 and v2 interfaces,
 * __account_locked_vm) and, where an oracle case covers the same ground, agrees with it.
 *
 * The machine: NVMe endpoints 01:00.0 and 02:00.0, each alone in its group behind an ACS
 * root port, behind QEMU's 39-bit VT-d unit with superpages, SC and IR unless stated.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { err } from "../../src/uapi/errno.js";
import { PROT_READ } from "../../src/uapi/syscalls.js";
import * as U from "../../src/uapi/vfio.js";
import {
  amd,
  bindVfio,
  buffer,
  CAP48_NOSP,
  dmaAvail,
  ECAP_SC_IR,
  getInfo,
  intel,
  iovaRanges,
  joinGroup,
  mapDma,
  openRw,
  groupPath,
  rig,
  s32,
  unmapDma,
  userMem,
  vfioSetup,
  walkAmd,
  walkVtd,
} from "./type1-support.js";

const P = 0x1000n;
const RW = U.VFIO_DMA_MAP_FLAG_READ | U.VFIO_DMA_MAP_FLAG_WRITE;
const EP1_RID = 0x100;

/** One group (01:00.0) in a TYPE1v2 (or `type`) container on a fresh machine. */
function one(type = U.VFIO_TYPE1v2_IOMMU, units = [intel()], cmdline = "") {
  const r = rig(units, 2, cmdline);
  const vm = vfioSetup(r, [r.eps[0] as string], type);
  assert.equal(vm.setIommu, 0);
  const buf = buffer(r.sys, 4 << 20);
  return { r, c: vm.container, g: vm.groups[0] as number, buf };
}

describe("T1-001 MAP_DMA argument checks", () => {
  test("each malformed request is EINVAL and creates nothing", () => {
    const { r, c, buf } = one();
    const cases: Parameters<typeof mapDma>[2][] = [
      { argsz: 31, vaddr: buf, iova: 0x100000n },
      { flags: RW | 0x100, vaddr: buf, iova: 0x100000n },
      { flags: 0, vaddr: buf, iova: 0x100000n },
      { flags: U.VFIO_DMA_MAP_FLAG_READ | U.VFIO_DMA_MAP_FLAG_VADDR, vaddr: buf, iova: 0x100000n },
      { vaddr: buf, iova: 0x100000n, size: 0n },
      { vaddr: buf, iova: 0x100800n },
      { vaddr: buf + 0x800n, iova: 0x100000n },
      { vaddr: buf, iova: 0x100000n, size: 0x1800n },
    ];
    for (const a of cases)
      assert.equal(
        mapDma(r.sys, c, a),
        err("EINVAL"),
        JSON.stringify(a, (_, v) => (typeof v === "bigint" ? `0x${v.toString(16)}` : v)),
      );
    assert.equal(dmaAvail(r.sys, c), 0xffff);
    assert.deepEqual(unmapDma(r.sys, c, { flags: U.VFIO_DMA_UNMAP_FLAG_ALL }), {
      ret: 0,
      size: 0n,
    });
    assert.equal(r.sys.task.mm.lockedVm, 0);
  });

  test("argsz larger than the struct is accepted", () => {
    const { r, c, buf } = one();
    assert.equal(mapDma(r.sys, c, { argsz: 64, vaddr: buf, iova: 0x100000n }), 0);
  });
});

describe("T1-002 MAP_DMA wrap", () => {
  test("an iova or vaddr range that wraps past 2^64 is EINVAL in 6.12 (EOVERFLOW only after the 2025 series)", () => {
    const { r, c, buf } = one();
    assert.equal(
      mapDma(r.sys, c, { vaddr: buf, iova: 0xfffffffffffff000n, size: 2n * P }),
      err("EINVAL"),
    );
    assert.equal(
      mapDma(r.sys, c, { vaddr: 0xfffffffffffff000n, iova: 0x100000n, size: 2n * P }),
      err("EINVAL"),
    );
  });
});

describe("T1-003 MAP_DMA overlap", () => {
  test("anything intersecting a mapping is EEXIST; adjacent mappings stay separate records", () => {
    const { r, c, buf } = one();
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0x100000n, size: 0x100000n }), 0);
    for (const [iova, size] of [
      [0x100000n, 0x100000n],
      [0x180000n, P],
      [0xff000n, 2n * P],
      [0x1ff000n, 2n * P],
      [0n, 0x400000n],
    ] as const)
      assert.equal(mapDma(r.sys, c, { vaddr: buf, iova, size }), err("EEXIST"));
    assert.equal(mapDma(r.sys, c, { vaddr: buf + 0x100000n, iova: 0x200000n, size: P }), 0);
    // Unmapping the first record exactly leaves the adjacent one mapped.
    assert.deepEqual(unmapDma(r.sys, c, { iova: 0x100000n, size: 0x100000n }), {
      ret: 0,
      size: 0x100000n,
    });
    assert.equal(walkVtd(r, "dmar0", EP1_RID, 0x100000n), null);
    assert.ok(walkVtd(r, "dmar0", EP1_RID, 0x200000n));
  });
});

describe("T1-004 MAP_DMA outside the valid IOVA ranges", () => {
  test("the MSI window and anything past the 39-bit aperture are EINVAL", () => {
    const { r, c, buf } = one();
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0xfee00000n }), err("EINVAL"));
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0xfeeff000n }), err("EINVAL"));
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0xfedff000n, size: 2n * P }), err("EINVAL"));
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0xfef00000n }), 0);
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 1n << 39n }), err("EINVAL"));
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: (1n << 39n) - P }), 0);
  });

  test("a 48-bit unit (SAGAW 39+48, MGAW 48) reaches 2^48", () => {
    const { r, c, buf } = one(U.VFIO_TYPE1v2_IOMMU, [intel(CAP48_NOSP, ECAP_SC_IR)]);
    assert.deepEqual(iovaRanges(getInfo(r.sys, c)), [
      [0n, 0xfedfffffn],
      [0xfef00000n, (1n << 48n) - 1n],
    ]);
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 1n << 39n }), 0);
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 1n << 48n }), err("EINVAL"));
    const leaf = walkVtd(r, "dmar0", EP1_RID, 1n << 39n);
    assert.ok(leaf, "a four-level table maps 2^39");
  });
});

describe("T1-005 dma_entry_limit", () => {
  test("the module parameter bounds mappings per container; DMA_AVAIL counts down", () => {
    const { r, c, buf } = one(
      U.VFIO_TYPE1v2_IOMMU,
      [intel()],
      "vfio_iommu_type1.dma_entry_limit=3",
    );
    assert.equal(dmaAvail(r.sys, c), 3);
    for (let i = 0n; i < 3n; i++)
      assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0x100000n + i * P }), 0);
    assert.equal(dmaAvail(r.sys, c), 0);
    // EEXIST is checked before ENOSPC, ENOSPC before the IOVA ranges.
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0x100000n }), err("EEXIST"));
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0xfee00000n }), err("ENOSPC"));
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0x200000n }), err("ENOSPC"));
    assert.deepEqual(unmapDma(r.sys, c, { iova: 0x101000n, size: P }), { ret: 0, size: P });
    assert.equal(dmaAvail(r.sys, c), 1);
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0x200000n }), 0);
  });
});

describe("T1-006 MAP_DMA pinning errors", () => {
  test("vaddrs without a mapping, or a read-only one mapped writable, are EFAULT", () => {
    const { r, c } = one();
    const ro = buffer(r.sys, 0x10000, PROT_READ);
    assert.equal(mapDma(r.sys, c, { vaddr: 0x1000n, iova: 0x100000n }), err("EFAULT"));
    assert.equal(mapDma(r.sys, c, { vaddr: ro, iova: 0x100000n }), err("EFAULT"));
    assert.equal(
      mapDma(r.sys, c, { flags: U.VFIO_DMA_MAP_FLAG_READ, vaddr: ro, iova: 0x100000n }),
      0,
    );
    assert.equal(r.sys.munmap(ro, 0x10000), 0);
    assert.equal(mapDma(r.sys, c, { vaddr: ro, iova: 0x200000n }), err("EFAULT"));
  });

  test("a buffer that ends early fails whole: nothing mapped, nothing charged", () => {
    const { r, c } = one();
    const b = buffer(r.sys, 3 * 0x1000);
    assert.equal(r.sys.munmap(b + 2n * P, 0x1000), 0);
    const locked = r.sys.task.mm.lockedVm;
    assert.equal(mapDma(r.sys, c, { vaddr: b, iova: 0x100000n, size: 3n * P }), err("EFAULT"));
    assert.equal(r.sys.task.mm.lockedVm, locked);
    assert.equal(dmaAvail(r.sys, c), 0xffff);
    assert.equal(walkVtd(r, "dmar0", EP1_RID, 0x100000n), null);
  });

  test("past RLIMIT_MEMLOCK without CAP_IPC_LOCK is ENOMEM, undone whole", () => {
    const r = rig([intel()], 1);
    const user = r.kernel.spawn({ uid: 1000, caps: [], memlock: 4n * P });
    const vm = vfioSetup(r, r.eps, U.VFIO_TYPE1v2_IOMMU, user);
    assert.equal(vm.setIommu, 0);
    const b = buffer(user, 0x10000);
    assert.equal(mapDma(user, vm.container, { vaddr: b, iova: 0x100000n, size: 4n * P }), 0);
    assert.equal(user.task.mm.lockedVm, 4);
    assert.equal(mapDma(user, vm.container, { vaddr: b, iova: 0x200000n, size: P }), err("ENOMEM"));
    assert.equal(user.task.mm.lockedVm, 4);
    assert.equal(dmaAvail(user, vm.container), 0xffff - 1);
    assert.equal(walkVtd(r, "dmar0", EP1_RID, 0x200000n), null);
    assert.deepEqual(unmapDma(user, vm.container, { iova: 0x100000n, size: 4n * P }), {
      ret: 0,
      size: 4n * P,
    });
    assert.equal(user.task.mm.lockedVm, 0);
    assert.equal(
      mapDma(user, vm.container, { vaddr: b, iova: 0x100000n, size: 5n * P }),
      err("ENOMEM"),
    );
    assert.equal(user.task.mm.lockedVm, 0);
  });

  test("CAP_IPC_LOCK skips the limit but the pages are still counted", () => {
    const r = rig([intel()], 1);
    const user = r.kernel.spawn({ uid: 1000, caps: ["CAP_IPC_LOCK"], memlock: P });
    const vm = vfioSetup(r, r.eps, U.VFIO_TYPE1v2_IOMMU, user);
    const b = buffer(user, 0x10000);
    assert.equal(mapDma(user, vm.container, { vaddr: b, iova: 0x100000n, size: 8n * P }), 0);
    assert.equal(user.task.mm.lockedVm, 8);
  });
});

describe("T1-008 UNMAP_DMA argument checks", () => {
  test("each malformed request is EINVAL and leaves the struct's size alone", () => {
    const { r, c, buf } = one();
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0x100000n }), 0);
    const D = U.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP;
    const cases: Parameters<typeof unmapDma>[2][] = [
      { argsz: 23, iova: 0x100000n, size: P },
      { flags: 0x100, iova: 0x100000n, size: P },
      { flags: D | U.VFIO_DMA_UNMAP_FLAG_ALL, size: 0n },
      { flags: D | U.VFIO_DMA_UNMAP_FLAG_VADDR, iova: 0x100000n, size: P },
      { flags: U.VFIO_DMA_UNMAP_FLAG_ALL, iova: 0x100000n, size: 0n },
      { flags: U.VFIO_DMA_UNMAP_FLAG_ALL, iova: 0n, size: P },
      { iova: 0x100000n, size: 0n },
      { iova: 0x100800n, size: P },
      { iova: 0x100000n, size: 0x800n },
      { iova: 0xfffffffffffff000n, size: 2n * P },
    ];
    for (const a of cases)
      assert.deepEqual(unmapDma(r.sys, c, a), { ret: err("EINVAL"), size: a.size ?? 0n });
    assert.ok(walkVtd(r, "dmar0", EP1_RID, 0x100000n), "still mapped");
  });
});

describe("T1-009 v2 unmap must not bisect", () => {
  test("a range cutting a mapping at either end is EINVAL; covering it with holes is fine", () => {
    const { r, c, buf } = one();
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0x100000n, size: 0x200000n }), 0);
    assert.deepEqual(unmapDma(r.sys, c, { iova: 0x100000n, size: 0x100000n }), {
      ret: err("EINVAL"),
      size: 0x100000n,
    });
    assert.deepEqual(unmapDma(r.sys, c, { iova: 0x200000n, size: 0x100000n }), {
      ret: err("EINVAL"),
      size: 0x100000n,
    });
    assert.deepEqual(unmapDma(r.sys, c, { iova: 0n, size: 0x300000n }), {
      ret: 0,
      size: 0x200000n,
    });
  });
});

describe("T1-010 v1 unmap semantics", () => {
  test("a range starting inside removes nothing; one covering the first iova removes all", () => {
    const { r, c, buf } = one(U.VFIO_TYPE1_IOMMU);
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0x100000n, size: 0x200000n }), 0);
    assert.deepEqual(unmapDma(r.sys, c, { iova: 0x200000n, size: 0x100000n }), {
      ret: 0,
      size: 0n,
    });
    assert.ok(walkVtd(r, "dmar0", EP1_RID, 0x200000n));
    assert.deepEqual(unmapDma(r.sys, c, { iova: 0x100000n, size: P }), { ret: 0, size: 0x200000n });
    assert.equal(walkVtd(r, "dmar0", EP1_RID, 0x200000n), null);
  });
});

describe("T1-011 unmap of an empty range", () => {
  for (const type of [U.VFIO_TYPE1_IOMMU, U.VFIO_TYPE1v2_IOMMU])
    test(`type ${type}: success with size 0`, () => {
      const { r, c } = one(type);
      assert.deepEqual(unmapDma(r.sys, c, { iova: 0x700000n, size: P }), { ret: 0, size: 0n });
    });
});

describe("T1-012 UNMAP_ALL", () => {
  test("removes everything and reports the sum; again gives 0", () => {
    const { r, c, buf } = one();
    assert.equal(r.sys.ioctl(c, U.VFIO_CHECK_EXTENSION, BigInt(U.VFIO_UNMAP_ALL)), 1);
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0x100000n, size: 0x10000n }), 0);
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0x400000n, size: P }), 0);
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0x7ffffff000n, size: P }), 0);
    const all = { flags: U.VFIO_DMA_UNMAP_FLAG_ALL };
    assert.deepEqual(unmapDma(r.sys, c, all), { ret: 0, size: 0x12000n });
    assert.deepEqual(unmapDma(r.sys, c, all), { ret: 0, size: 0n });
    assert.equal(dmaAvail(r.sys, c), 0xffff);
    assert.equal(r.sys.task.mm.lockedVm, 0);
  });
});

describe("T1-013 end of the address space", () => {
  test("VT-d 39-bit: the last page maps and unmaps; two pages from it are outside the range", () => {
    const { r, c, buf } = one();
    const top = (1n << 39n) - P;
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: top }), 0);
    assert.deepEqual(unmapDma(r.sys, c, { iova: top, size: P }), { ret: 0, size: P });
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: top }), 0);
    assert.deepEqual(unmapDma(r.sys, c, { flags: U.VFIO_DMA_UNMAP_FLAG_ALL }), { ret: 0, size: P });
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: top, size: 2n * P }), err("EINVAL"));
  });

  // The catalog's T1-013 expects the top page to unmap (unmapped = size) and UNMAP_ALL to
  // remove everything; that is the 2025 series (REG-012), and 6.12's source says otherwise.
  // A mapping ending at 2^64 has dma->iova + dma->size = 0 as a dma_addr_t. vfio_find_dma()
  // (`start >= dma->iova + dma->size`) always passes it on the right and never finds it;
  // vfio_find_dma_first_node() (`start < dma->iova + dma->size`) never takes it either and
  // goes right of it, missing everything on its left; vfio_unmap_unpin's `while (iova <
  // end)` never runs for it. So what an unmap reaches depends on the rb-tree's shape:
  // vfio_link_dma() links the new, still zero-sized mapping left of every mapping at or
  // above its iova, and lib/rbtree.c rebalances.
  const top64 = 0xfffffffffffff000n;

  test("AMD-Vi: the top page first is the tree's root, and no unmap reaches anything", () => {
    const { r, c, buf } = one(U.VFIO_TYPE1v2_IOMMU, [amd()]);
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: top64 }), 0);
    const t = r.host.machine.iommu.translation("ivhd0", 0, EP1_RID);
    assert.ok(t && t !== "passthrough" && t.levels === 6, "the table grew to six levels");
    assert.ok(walkAmd(r, "ivhd0", EP1_RID, top64));
    assert.deepEqual(unmapDma(r.sys, c, { iova: top64, size: P }), { ret: 0, size: 0n });
    assert.ok(walkAmd(r, "ivhd0", EP1_RID, top64), "still mapped");
    // 0x100000 goes left of the root; the first-node descent from 0 goes right at the root.
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0x100000n }), 0);
    assert.equal(r.sys.task.mm.lockedVm, 2);
    assert.deepEqual(unmapDma(r.sys, c, { flags: U.VFIO_DMA_UNMAP_FLAG_ALL }), {
      ret: 0,
      size: 0n,
    });
    // The v2 bisection checks find 0x100000 (vfio_find_dma goes left at the root), but the
    // removal loop starts from vfio_find_dma_first_node, which does not.
    assert.deepEqual(unmapDma(r.sys, c, { iova: 0x100000n, size: P }), { ret: 0, size: 0n });
    assert.equal(dmaAvail(r.sys, c), 0xffff - 2);
    assert.ok(walkAmd(r, "ivhd0", EP1_RID, top64));
    assert.ok(walkAmd(r, "ivhd0", EP1_RID, 0x100000n));
    assert.equal(r.sys.task.mm.lockedVm, 2);
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: top64, size: 2n * P }), err("EINVAL"));
    assert.deepEqual(unmapDma(r.sys, c, { iova: top64, size: 2n * P }), {
      ret: err("EINVAL"),
      size: 2n * P,
    });
  });

  test("AMD-Vi: the top page right of 0x100000 goes with UNMAP_ALL, but stays mapped and pinned", () => {
    const { r, c, buf } = one(U.VFIO_TYPE1v2_IOMMU, [amd()]);
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0x100000n }), 0);
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: top64 }), 0);
    // Both descents pass right of 0x100000 and then of the top mapping.
    assert.deepEqual(unmapDma(r.sys, c, { iova: top64, size: P }), { ret: 0, size: 0n });
    // The first node from 0 is 0x100000; rb_next() then reaches the top mapping.
    assert.deepEqual(unmapDma(r.sys, c, { flags: U.VFIO_DMA_UNMAP_FLAG_ALL }), {
      ret: 0,
      size: 2n * P,
    });
    assert.equal(dmaAvail(r.sys, c), 0xffff);
    assert.ok(walkAmd(r, "ivhd0", EP1_RID, top64), "the IOMMU still translates the top page");
    assert.equal(walkAmd(r, "ivhd0", EP1_RID, 0x100000n), null);
    assert.equal(r.sys.task.mm.lockedVm, 1, "its charge is never returned");
  });

  test("AMD-Vi: a range ending at 2^64 is never EEXIST, and AMD-Vi maps over the old PTEs", () => {
    // start + size = 0 in vfio_find_dma, so the descent goes left to the end and finds
    // nothing; iommu_v1_map_pages() clears whatever PTE is there before writing its own.
    const { r, c, buf } = one(U.VFIO_TYPE1v2_IOMMU, [amd()]);
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: top64 }), 0);
    assert.equal(mapDma(r.sys, c, { vaddr: buf + P, iova: top64 }), 0);
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: top64 - P, size: 2n * P }), 0);
    assert.equal(dmaAvail(r.sys, c), 0xffff - 3);
    assert.equal(r.sys.task.mm.lockedVm, 4);
  });
});

describe("T1-014 GET_INFO and its capability chain", () => {
  test("argsz rules: < 16 EINVAL; the needed size written back when caps do not fit", () => {
    const { r, c } = one();
    assert.equal(getInfo(r.sys, c, 0, 15).ret, err("EINVAL"));
    const small = getInfo(r.sys, c, 0, 16);
    assert.deepEqual([small.ret, small.argsz, small.flags, small.capOffset], [0, 120, 3, 0]);
    const fit = getInfo(r.sys, c, 96, 120);
    assert.deepEqual([fit.ret, fit.argsz, fit.capOffset], [0, 120, 24]);
    assert.deepEqual([...fit.caps.keys()], [2, 3, 1], "MIGRATION, DMA_AVAIL, IOVA_RANGE");
  });

  test("AMD-Vi: the whole 64-bit space minus the MSI window and the HyperTransport hole", () => {
    const { r, c } = one(U.VFIO_TYPE1v2_IOMMU, [amd()]);
    const info = getInfo(r.sys, c);
    assert.equal(info.pgsizes, ((1n << 52n) - 1n) & ~0xfffn & ~(1n << 39n));
    assert.deepEqual(iovaRanges(info), [
      [0n, 0xfedfffffn],
      [0xfef00000n, 0xfcffffffffn],
      [0x10000000000n, (1n << 64n) - 1n],
    ]);
    assert.equal(getInfo(r.sys, c, 0, 16).argsz, 24 + 32 + 16 + 16 + 3 * 16);
  });
});

describe("T1-015 dirty page tracking", () => {
  test("v1 containers have none: EACCES", () => {
    const { r, c } = one(U.VFIO_TYPE1_IOMMU);
    const arg = userMem(r.sys, U.vfio_iommu_type1_dirty_bitmap.encode({ argsz: 8, flags: 1 }));
    assert.equal(r.sys.ioctl(c, U.VFIO_IOMMU_DIRTY_PAGES, arg), err("EACCES"));
  });

  test("UNMAP with GET_DIRTY_BITMAP while tracking is off is EINVAL", () => {
    const { r, c, buf } = one();
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0x100000n }), 0);
    const bm = buffer(r.sys, 0x1000);
    const res = unmapDma(
      r.sys,
      c,
      { flags: 1, iova: 0x100000n, size: P },
      { pgsize: P, size: 8n, data: bm },
    );
    assert.equal(res.ret, err("EINVAL"));
  });

  test("GET_BITMAP over two mappings merges the second into the first one's word", () => {
    const { r, c, buf } = one();
    const start = userMem(r.sys, U.vfio_iommu_type1_dirty_bitmap.encode({ argsz: 8, flags: 1 }));
    assert.equal(r.sys.ioctl(c, U.VFIO_IOMMU_DIRTY_PAGES, start), 0);
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0x100000n, size: 2n * P }), 0);
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0x105000n, size: 3n * P }), 0);
    const bm = buffer(r.sys, 0x1000);
    const head = U.vfio_iommu_type1_dirty_bitmap.encode({ argsz: 48, flags: 4 });
    const range = U.vfio_iommu_type1_dirty_bitmap_get.encode({
      iova: 0x100000n,
      size: 0x8000n,
      bitmap_pgsize: P,
      bitmap_size: 8n,
      bitmap_data: bm,
    });
    const arg = userMem(r.sys, new Uint8Array([...head, ...range]));
    assert.equal(r.sys.ioctl(c, U.VFIO_IOMMU_DIRTY_PAGES, arg), 0);
    // Pages 0-1 (first mapping) and 5-7 (second, shifted by 5 bits): every pinned page.
    assert.deepEqual([...(r.sys.peek(bm, 8) as Uint8Array)], [0xe3, 0, 0, 0, 0, 0, 0, 0]);
  });
});

describe("T1-016 VADDR update", () => {
  const V = U.VFIO_DMA_MAP_FLAG_VADDR;
  const VA = U.VFIO_DMA_UNMAP_FLAG_VADDR;

  test("invalidate, re-supply, roll back; the device keeps translating meanwhile", () => {
    const { r, c, buf } = one();
    assert.equal(r.sys.ioctl(c, U.VFIO_CHECK_EXTENSION, BigInt(U.VFIO_UPDATE_VADDR)), 1);
    assert.equal(mapDma(r.sys, c, { flags: V, vaddr: buf, iova: 0x100000n }), err("ENOENT"));
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0x100000n }), 0);
    assert.equal(mapDma(r.sys, c, { vaddr: buf + P, iova: 0x101000n }), 0);
    assert.deepEqual(unmapDma(r.sys, c, { flags: VA, iova: 0x101000n, size: P }), {
      ret: 0,
      size: P,
    });
    assert.ok(walkVtd(r, "dmar0", EP1_RID, 0x101000n), "translations stay");
    // Covering both: the second is already invalid, so the first is restored.
    assert.deepEqual(unmapDma(r.sys, c, { flags: VA, iova: 0x100000n, size: 2n * P }), {
      ret: err("EINVAL"),
      size: 2n * P,
    });
    assert.equal(mapDma(r.sys, c, { flags: V, vaddr: buf, iova: 0x100000n }), err("EINVAL"));
    // The new vaddr must name exactly the invalidated mapping.
    assert.equal(
      mapDma(r.sys, c, { flags: V, vaddr: buf, iova: 0x101000n, size: 2n * P }),
      err("EINVAL"),
    );
    assert.equal(mapDma(r.sys, c, { flags: V, vaddr: buf + 2n * P, iova: 0x101000n }), 0);
    assert.deepEqual(unmapDma(r.sys, c, { flags: VA | U.VFIO_DMA_UNMAP_FLAG_ALL }), {
      ret: 0,
      size: 2n * P,
    });
    assert.ok(walkVtd(r, "dmar0", EP1_RID, 0x100000n), "still mapped after invalidating all");
  });

  test("attaching a group while a vaddr is invalid is EBUSY", () => {
    const r = rig([intel()], 2);
    const vm = vfioSetup(r, [r.eps[0] as string]);
    const buf = buffer(r.sys, 0x10000);
    assert.equal(mapDma(r.sys, vm.container, { vaddr: buf, iova: 0x100000n }), 0);
    assert.equal(unmapDma(r.sys, vm.container, { flags: VA, iova: 0x100000n, size: P }).ret, 0);
    bindVfio(r, r.eps[1] as string);
    const g = openRw(r.sys, groupPath(r, r.eps[1] as string));
    assert.equal(
      r.sys.ioctl(g, U.VFIO_GROUP_SET_CONTAINER, s32(r.sys, vm.container)),
      err("EBUSY"),
    );
    assert.equal(mapDma(r.sys, vm.container, { flags: V, vaddr: buf, iova: 0x100000n }), 0);
    assert.equal(r.sys.ioctl(g, U.VFIO_GROUP_SET_CONTAINER, s32(r.sys, vm.container)), 0);
  });

  test("a new vaddr from another process moves the locked-memory charge there", () => {
    const { r, c, buf } = one();
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0x100000n, size: 4n * P }), 0);
    assert.equal(r.sys.task.mm.lockedVm, 4);
    assert.equal(unmapDma(r.sys, c, { flags: VA, iova: 0x100000n, size: 4n * P }).ret, 0);
    // The container fd passed to a new process (a live-update exec).
    const next = r.kernel.spawn();
    const file = r.sys.task.files.get(c);
    assert.ok(file);
    const c2 = next.task.files.install(file.get());
    const nbuf = buffer(next, 0x10000);
    assert.equal(mapDma(next, c2, { flags: V, vaddr: nbuf, iova: 0x100000n, size: 4n * P }), 0);
    assert.equal(r.sys.task.mm.lockedVm, 0);
    assert.equal(next.task.mm.lockedVm, 4);
  });
});

describe("T1-017 iova_pgsizes", () => {
  const cases: [string, Parameters<typeof one>[1], string, bigint][] = [
    ["VT-d with 2M and 1G superpages", [intel()], "", 0x40201000n],
    ["VT-d without superpages", [intel(CAP48_NOSP, ECAP_SC_IR)], "", 0x1000n],
    ["VT-d with intel_iommu=sp_off", [intel()], "intel_iommu=sp_off", 0x1000n],
    ["AMD-Vi v1", [amd()], "", 0x000fff7ffffff000n],
    ["AMD-Vi amd_iommu=nohugepages", [amd()], "amd_iommu=nohugepages", 0x1000n],
    ["AMD-Vi amd_iommu=v2_pgsizes_only", [amd()], "amd_iommu=v2_pgsizes_only", 0x40201000n],
  ];
  for (const [name, units, cmdline, want] of cases)
    test(name, () => {
      const { r, c } = one(U.VFIO_TYPE1v2_IOMMU, units, cmdline);
      assert.equal(getInfo(r.sys, c).pgsizes, want);
    });
});

describe("T1-018 locked memory across map and unmap", () => {
  test("each mapping charges its pages, the same pages twice when mapped twice; unmap and release return them", () => {
    const r = rig([intel()], 1);
    const user = r.kernel.spawn({ uid: 1000, caps: [], memlock: 1n << 20n });
    const vm = vfioSetup(r, r.eps, U.VFIO_TYPE1v2_IOMMU, user);
    const b = buffer(user, 0x10000);
    assert.equal(mapDma(user, vm.container, { vaddr: b, iova: 0x100000n, size: 16n * P }), 0);
    assert.equal(mapDma(user, vm.container, { vaddr: b, iova: 0x200000n, size: 16n * P }), 0);
    assert.equal(user.task.mm.lockedVm, 32);
    assert.equal(unmapDma(user, vm.container, { iova: 0x100000n, size: 16n * P }).ret, 0);
    assert.equal(user.task.mm.lockedVm, 16);
    // The last group leaving the container releases the backend and every mapping.
    assert.equal(user.ioctl(vm.groups[0] as number, U.VFIO_GROUP_UNSET_CONTAINER, 0n), 0);
    assert.equal(user.task.mm.lockedVm, 0);
  });
});

/* ---------------------------------------------------------------------------------- */
/* Canonical sequences                                                                 */
/* ---------------------------------------------------------------------------------- */

describe("SEQ-001 the documentation's type1 example", () => {
  test("container, group, TYPE1, GET_INFO, 1 MiB at IOVA 0, device fd", () => {
    const r = rig([intel()], 1);
    bindVfio(r, r.eps[0] as string);
    const c = openRw(r.sys, "/dev/vfio/vfio");
    assert.equal(r.sys.ioctl(c, U.VFIO_GET_API_VERSION, 0n), U.VFIO_API_VERSION);
    assert.ok(r.sys.ioctl(c, U.VFIO_CHECK_EXTENSION, BigInt(U.VFIO_TYPE1_IOMMU)) > 0);
    const g = openRw(r.sys, groupPath(r, r.eps[0] as string));
    const st = userMem(r.sys, U.vfio_group_status.encode({ argsz: 8, flags: 0 }));
    assert.equal(r.sys.ioctl(g, U.VFIO_GROUP_GET_STATUS, st), 0);
    assert.equal(
      U.vfio_group_status.decode(r.sys.peek(st, 8) as Uint8Array).flags,
      U.VFIO_GROUP_FLAGS_VIABLE,
    );
    assert.equal(r.sys.ioctl(g, U.VFIO_GROUP_SET_CONTAINER, s32(r.sys, c)), 0);
    assert.equal(r.sys.ioctl(c, U.VFIO_SET_IOMMU, BigInt(U.VFIO_TYPE1_IOMMU)), 0);
    assert.equal(getInfo(r.sys, c).ret, 0);
    assert.equal(dmaAvail(r.sys, c), 0xffff);
    const b = buffer(r.sys, 1 << 20);
    assert.equal(mapDma(r.sys, c, { vaddr: b, iova: 0n, size: 1n << 20n }), 0);
    assert.ok(walkVtd(r, "dmar0", EP1_RID, 0n));
    const name = userMem(r.sys, new TextEncoder().encode(`${r.eps[0]}\0`));
    assert.ok(r.sys.ioctl(g, U.VFIO_GROUP_GET_DEVICE_FD, name) >= 0);
  });
});

describe("SEQ-004 QEMU's legacy container bring-up", () => {
  test("the first type CHECK_EXTENSION accepts; a second group reuses the container; GET_INFO grows its buffer", () => {
    const r = rig([intel()], 2);
    for (const b of r.eps) bindVfio(r, b);
    const c = openRw(r.sys, "/dev/vfio/vfio");
    const g1 = joinGroup(r, c, r.eps[0] as string);
    const order = [
      U.VFIO_TYPE1v2_IOMMU,
      U.VFIO_TYPE1_IOMMU,
      U.VFIO_SPAPR_TCE_v2_IOMMU,
      U.VFIO_SPAPR_TCE_IOMMU,
    ];
    const type = order.find((t) => r.sys.ioctl(c, U.VFIO_CHECK_EXTENSION, BigInt(t)) > 0);
    assert.equal(type, U.VFIO_TYPE1v2_IOMMU);
    assert.equal(r.sys.ioctl(c, U.VFIO_SET_IOMMU, BigInt(type)), 0);
    const first = getInfo(r.sys, c, 0, 24);
    assert.equal(first.capOffset, 0);
    const full = getInfo(r.sys, c, first.argsz - 24, first.argsz);
    assert.equal(full.capOffset, 24);
    assert.equal(iovaRanges(full).length, 2);
    const b = buffer(r.sys, 0x100000);
    assert.equal(mapDma(r.sys, c, { vaddr: b, iova: 0x100000n, size: 0x100000n }), 0);
    // The second group joins the running container, in the same domain.
    const g2 = joinGroup(r, c, r.eps[1] as string);
    assert.ok(g1 >= 0 && g2 >= 0);
    const t1 = r.host.machine.iommu.translation("dmar0", 0, 0x100);
    const t2 = r.host.machine.iommu.translation("dmar0", 0, 0x200);
    assert.deepEqual(t1, t2);
    assert.ok(walkVtd(r, "dmar0", 0x200, 0x100000n));
  });
});

describe("SEQ-005 QEMU's legacy MAP/UNMAP error handling", () => {
  test("an overlapping map is EEXIST, not EBUSY; both unmap-all forms work", () => {
    const { r, c, buf } = one();
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0x100000n }), 0);
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0x100000n }), err("EEXIST"));
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0x7ffffff000n }), 0);
    // Without UNMAP_ALL: [0, 2^63) then [2^63, 2^64); the second ends exactly at 2^64.
    assert.deepEqual(unmapDma(r.sys, c, { iova: 0n, size: 1n << 63n }), { ret: 0, size: 2n * P });
    assert.deepEqual(unmapDma(r.sys, c, { iova: 1n << 63n, size: 1n << 63n }), {
      ret: 0,
      size: 0n,
    });
  });
});

describe("SEQ-009 rust-vmm's VfioContainer", () => {
  test("GET_STATUS is exactly VIABLE before joining; an exact unmap returns the requested size", () => {
    const r = rig([intel()], 1);
    bindVfio(r, r.eps[0] as string);
    const g = openRw(r.sys, groupPath(r, r.eps[0] as string));
    const status = () => {
      const a = userMem(r.sys, U.vfio_group_status.encode({ argsz: 8, flags: 0 }));
      assert.equal(r.sys.ioctl(g, U.VFIO_GROUP_GET_STATUS, a), 0);
      return U.vfio_group_status.decode(r.sys.peek(a, 8) as Uint8Array).flags;
    };
    assert.equal(status(), U.VFIO_GROUP_FLAGS_VIABLE);
    const c = openRw(r.sys, "/dev/vfio/vfio");
    assert.equal(r.sys.ioctl(c, U.VFIO_CHECK_EXTENSION, BigInt(U.VFIO_TYPE1v2_IOMMU)), 1);
    assert.equal(r.sys.ioctl(g, U.VFIO_GROUP_SET_CONTAINER, s32(r.sys, c)), 0);
    assert.equal(status(), U.VFIO_GROUP_FLAGS_VIABLE | U.VFIO_GROUP_FLAGS_CONTAINER_SET);
    assert.equal(r.sys.ioctl(c, U.VFIO_SET_IOMMU, BigInt(U.VFIO_TYPE1v2_IOMMU)), 0);
    const b = buffer(r.sys, 0x10000);
    assert.equal(mapDma(r.sys, c, { vaddr: b, iova: 0x100000n, size: 0x10000n }), 0);
    assert.deepEqual(unmapDma(r.sys, c, { iova: 0x100000n, size: 0x10000n }), {
      ret: 0,
      size: 0x10000n,
    });
  });
});

describe("SEQ-013 hot-unplug of a group", () => {
  test("device fd closed, UNSET_CONTAINER drops every mapping, the group reopens", () => {
    const { r, c, g, buf } = one();
    const name = userMem(r.sys, new TextEncoder().encode(`${r.eps[0]}\0`));
    const dev = r.sys.ioctl(g, U.VFIO_GROUP_GET_DEVICE_FD, name);
    assert.ok(dev >= 0);
    assert.equal(mapDma(r.sys, c, { vaddr: buf, iova: 0x100000n, size: 0x10000n }), 0);
    assert.equal(r.sys.ioctl(g, U.VFIO_GROUP_UNSET_CONTAINER, 0n), err("EBUSY"));
    assert.equal(r.sys.close(dev), 0);
    assert.equal(r.sys.ioctl(g, U.VFIO_GROUP_UNSET_CONTAINER, 0n), 0);
    assert.equal(r.sys.task.mm.lockedVm, 0);
    // Back on its default domain, which maps nothing at that IOVA.
    assert.equal(walkVtd(r, "dmar0", EP1_RID, 0x100000n), null);
    assert.equal(r.sys.close(g), 0);
    const again = openRw(r.sys, groupPath(r, r.eps[0] as string));
    assert.ok(again >= 0);
    assert.equal(r.sys.ioctl(c, U.VFIO_IOMMU_GET_INFO, 0n), err("EINVAL"), "no backend any more");
  });
});
