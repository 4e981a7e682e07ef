/**
 * AMD-Vi v1 page tables as the IOMMU walks them, observed through DMA: paging modes,
 * level skipping, NextLevel 7 page sizes, IR/IW, Force Coherent, IO_PAGE_FAULT events
 * (code, domain, flags, full address) and the event log's capacity.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { EVENT_LOG_ENTRIES } from "../../src/machine/iommu/amdvi.js";
import {
  AMD_FC,
  AMD_IR,
  AMD_IW,
  amdMap,
  bytes,
  rig,
  setNoSnoopEnable,
  Tables,
} from "./dma-support.js";

const IOVA = 0xabc_d000n;
const PA = 0x40_0000;

function amdRig() {
  const r = rig({ kind: "amd-vi" });
  const t = new Tables(r.m.memory);
  return { ...r, t, root: t.alloc() };
}

test("a 3-level table maps DMA; Force Coherent makes a No Snoop request snoop", () => {
  const { m, dev, rid, t, root } = amdRig();
  setNoSnoopEnable(dev);
  amdMap(t, root, 3, IOVA, PA, AMD_IR | AMD_IW | AMD_FC);
  amdMap(t, root, 3, IOVA + 0x1000n, PA + 0x1000, AMD_IR | AMD_IW);
  m.iommu.setTranslation("ivhd0", 0, rid, { root, levels: 3, domainId: 5 });
  const fc = m.dma.write(dev, IOVA + 8n, bytes(0xfc), { noSnoop: true });
  assert.equal(fc.ok, true);
  assert.equal(fc.snoop, true);
  assert.deepEqual([...m.memory.read(PA + 8, 1)], [0xfc]);
  const ns = m.dma.write(dev, IOVA + 0x1008n, bytes(0x05), { noSnoop: true });
  assert.equal(ns.snoop, false);
  assert.deepEqual([...m.memory.read(PA + 0x1008, 1)], [0x05]);
});

test("permission faults are IO_PAGE_FAULT events with domain, full address and PR|RW|PE", () => {
  const { m, dev, rid, t, root } = amdRig();
  amdMap(t, root, 3, IOVA, PA, AMD_IR);
  m.iommu.setTranslation("ivhd0", 0, rid, { root, levels: 3, domainId: 5 });
  assert.equal(m.dma.write(dev, IOVA + 0x44n, bytes(1)).ok, false);
  assert.deepEqual(m.memory.read(PA + 0x44, 1)[0], 0);
  assert.deepEqual(m.iommu.readFaults("ivhd0"), [
    {
      rid,
      addr: IOVA + 0x44n,
      write: true,
      reason: "write-denied",
      code: 2,
      domainId: 5,
      flags: 0x10 | 0x20 | 0x40,
    },
  ]);
  assert.equal(m.dma.read(dev, IOVA + 0x1000n, 4).ok, false);
  assert.deepEqual(m.iommu.readFaults("ivhd0")[0]?.reason, "not-present");
});

test("addresses beyond the paging mode fault; mode 4 reaches them", () => {
  const far = 1n << 40n;
  const { m, dev, rid, t, root } = amdRig();
  m.iommu.setTranslation("ivhd0", 0, rid, { root, levels: 3, domainId: 1 });
  assert.equal(m.dma.read(dev, far, 4).ok, false);
  assert.equal(m.iommu.readFaults("ivhd0")[0]?.code, 2);
  const root4 = t.alloc();
  amdMap(t, root4, 4, far, PA, AMD_IR | AMD_IW);
  m.iommu.setTranslation("ivhd0", 0, rid, { root: root4, levels: 4, domainId: 2 });
  assert.equal(m.dma.write(dev, far, bytes(4)).ok, true);
  assert.deepEqual([...m.memory.read(PA, 1)], [4]);
});

test("level skipping: a level-3 PDE naming a level-1 table, whose skipped bits must be zero", () => {
  const { m, dev, rid, t, root } = amdRig();
  const l1 = t.alloc();
  t.set(root, BigInt(l1) | (1n << 9n) | 1n | AMD_IR | AMD_IW); // index 0 at level 3 → level 1
  t.set(l1 + 5 * 8, BigInt(PA) | 1n | AMD_IR | AMD_IW);
  m.iommu.setTranslation("ivhd0", 0, rid, { root, levels: 3, domainId: 1 });
  assert.equal(m.dma.write(dev, 0x5010n, bytes(0x11)).ok, true);
  assert.deepEqual([...m.memory.read(PA + 0x10, 1)], [0x11]);
  // Same level-3 and level-1 indexes, non-zero level-2 bits: no translation.
  assert.equal(m.dma.write(dev, 0x5010n | (1n << 21n), bytes(0x22)).ok, false);
  assert.equal(m.iommu.readFaults("ivhd0").length, 1);
});

test("NextLevel 7: replicated PTEs encode a 16 KiB page in their address bits", () => {
  const { m, dev, rid, t, root } = amdRig();
  const iova = 0x10_0000n;
  const pa = 0x60_0000; // 16 KiB aligned
  const l1 = Number(amdMap(t, root, 3, iova, pa, AMD_IR | AMD_IW)) & ~0xfff;
  // PAGE_SIZE_PTE(pa, 16K): bit 12 set, bit 13 clear → 1 << (1 + 13).
  const pte = BigInt(pa) | 0x1000n | (7n << 9n) | 1n | AMD_IR | AMD_IW;
  for (let i = 0; i < 4; i++) t.set(l1 + (0x100 + i) * 8, pte);
  assert.equal(
    m.iommu.setTranslation("ivhd0", 0, rid, { root, levels: 3, domainId: 1 }),
    undefined,
  );
  assert.equal(m.dma.write(dev, iova + 0x3ffcn, bytes(1, 2, 3, 4)).ok, true);
  assert.deepEqual([...m.memory.read(pa + 0x3ffc, 4)], [1, 2, 3, 4]);
  const tr = m.iommu.translate("ivhd0", 0, rid, iova + 0x2000n, false);
  assert.equal(tr.ok && tr.iotlb, "hit"); // one 16 KiB IOTLB entry covers the page
});

test("the IOTLB serves a stale translation until INVALIDATE_IOMMU_PAGES for the domain", () => {
  const { m, dev, rid, t, root } = amdRig();
  const leaf = amdMap(t, root, 3, IOVA, PA, AMD_IR | AMD_IW);
  m.iommu.setTranslation("ivhd0", 0, rid, { root, levels: 3, domainId: 9 });
  m.dma.write(dev, IOVA, bytes(1));
  t.set(leaf, 0n);
  assert.equal(m.dma.write(dev, IOVA, bytes(2)).ok, true);
  assert.deepEqual([...m.memory.read(PA, 1)], [2]);
  m.iommu.flushIotlb("ivhd0", 9);
  assert.equal(m.dma.write(dev, IOVA, bytes(3)).ok, false);
  assert.deepEqual([...m.memory.read(PA, 1)], [2]);
});

test("pass-through, blocked requesters, an invalid paging mode, and the event log's 512 entries", () => {
  const { m, dev, rid } = amdRig();
  m.iommu.setTranslation("ivhd0", 0, rid, "passthrough");
  assert.equal(m.dma.write(dev, 0x3000, bytes(3)).ok, true);
  assert.deepEqual([...m.memory.read(0x3000, 1)], [3]);
  m.iommu.setTranslation("ivhd0", 0, rid, null);
  assert.equal(m.dma.write(dev, 0x3000, bytes(4)).ok, false);
  assert.deepEqual([...m.memory.read(0x3000, 1)], [3]);
  assert.deepEqual(m.iommu.readFaults("ivhd0")[0]?.reason, "blocked");
  m.iommu.setTranslation("ivhd0", 0, rid, { root: 0x100000, levels: 7, domainId: 1 });
  m.dma.read(dev, 0, 4);
  assert.equal(m.iommu.readFaults("ivhd0")[0]?.code, 1); // ILLEGAL_DEV_TABLE_ENTRY
  m.iommu.setTranslation("ivhd0", 0, rid, null);
  for (let i = 0; i < EVENT_LOG_ENTRIES + 3; i++) m.dma.read(dev, i * 0x1000, 4);
  assert.equal(m.iommu.readFaults("ivhd0").length, 512);
  m.dma.read(dev, 0, 4);
  assert.equal(m.iommu.readFaults("ivhd0").length, 1);
});
