/**
 * VT-d second-level translation as the hardware does it, observed through DMA: the bytes
 * that land in RAM, the faults the unit records (reason codes of dmar.c), the IOTLB
 * keeping a translation until the domain is invalidated, Snoop Control.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeVtdRegs } from "../../src/machine/iommu/vtd.js";
import {
  bytes,
  rig,
  setNoSnoopEnable,
  Tables,
  VTD_R,
  VTD_SNP,
  VTD_W,
  vtdCap,
  vtdEcap,
  vtdMap,
} from "./dma-support.js";

const CAP48 = vtdCap({ sagaw: 0b0100, mgaw: 48, sllps: 0b01 });
const IOVA = 0x1234_5000n;
const PA = 0x80_0000;

function vtdRig(cap = CAP48, ecap = vtdEcap({ pt: true, sc: true })) {
  const r = rig({ kind: "intel-vtd", cap, ecap });
  const t = new Tables(r.m.memory);
  const root = t.alloc();
  return { ...r, t, root };
}

test("a 4-level table maps a device's writes and reads to the page the leaf names", () => {
  const { m, dev, rid, t, root } = vtdRig();
  vtdMap(t, root, 4, IOVA, PA, VTD_R | VTD_W);
  m.iommu.setTranslation("dmar0", 0, rid, { root, levels: 4, domainId: 1 });
  const w = m.dma.write(dev, IOVA + 0x10n, bytes(1, 2, 3, 4));
  assert.equal(w.ok, true);
  assert.deepEqual([...m.memory.read(PA + 0x10, 4)], [1, 2, 3, 4]);
  assert.deepEqual([...m.memory.read(Number(IOVA) + 0x10, 4)], [0, 0, 0, 0]);
  const r = m.dma.read(dev, IOVA + 0x10n, 4);
  assert.deepEqual([...r.data], [1, 2, 3, 4]);
  assert.deepEqual(m.iommu.readFaults("dmar0"), []);
});

test("a write through a read-only leaf faults with reason 5 and leaves memory alone", () => {
  const { m, dev, rid, t, root } = vtdRig();
  vtdMap(t, root, 4, IOVA, PA, VTD_R);
  m.iommu.setTranslation("dmar0", 0, rid, { root, levels: 4, domainId: 1 });
  const w = m.dma.write(dev, IOVA + 0x123n, bytes(9));
  assert.equal(w.ok, false);
  assert.equal(w.error, "fault");
  assert.deepEqual([...m.memory.read(PA + 0x123, 1)], [0]);
  assert.deepEqual(m.iommu.readFaults("dmar0"), [
    { rid, addr: IOVA, write: true, reason: "write-denied", code: 5 },
  ]);
  assert.equal(m.dma.read(dev, IOVA, 1).ok, true);
  assert.deepEqual(m.iommu.readFaults("dmar0"), []);
});

test("an unmapped IOVA faults as not present with reason 6 for a read; R/W on a directory gate the region", () => {
  const { m, dev, rid, t, root } = vtdRig();
  m.iommu.setTranslation("dmar0", 0, rid, { root, levels: 4, domainId: 1 });
  assert.equal(m.dma.read(dev, 0x9999_0000n, 8).ok, false);
  assert.deepEqual(m.iommu.readFaults("dmar0"), [
    { rid, addr: 0x9999_0000n, write: false, reason: "not-present", code: 6 },
  ]);
  vtdMap(t, root, 4, IOVA, PA, VTD_R | VTD_W, 1, VTD_W); // directories write-only
  // The leaf allows reads, but the directories above it do not.
  assert.equal(m.dma.read(dev, IOVA, 8).ok, false);
  assert.equal(m.iommu.readFaults("dmar0")[0]?.reason, "read-denied");
  assert.equal(m.dma.write(dev, IOVA, bytes(7)).ok, true);
});

test("the IOTLB keeps a translation after the table changes, until the domain is flushed", () => {
  const { m, dev, rid, t, root } = vtdRig();
  const leaf = vtdMap(t, root, 4, IOVA, PA, VTD_R | VTD_W);
  m.iommu.setTranslation("dmar0", 0, rid, { root, levels: 4, domainId: 7 });
  assert.equal(m.dma.write(dev, IOVA, bytes(1)).pages[0]?.iotlb, "miss");
  // Remap to another page without invalidating: the device still reaches the old one.
  t.set(leaf, BigInt(PA + 0x1000) | VTD_R | VTD_W);
  const stale = m.dma.write(dev, IOVA, bytes(2));
  assert.equal(stale.pages[0]?.iotlb, "hit");
  assert.deepEqual([...m.memory.read(PA, 1)], [2]);
  assert.deepEqual([...m.memory.read(PA + 0x1000, 1)], [0]);
  m.iommu.flushIotlb("dmar0", 8); // another domain: no effect
  m.dma.write(dev, IOVA, bytes(3));
  assert.deepEqual([...m.memory.read(PA, 1)], [3]);
  m.iommu.flushIotlb("dmar0", 7);
  m.dma.write(dev, IOVA, bytes(4));
  assert.deepEqual([...m.memory.read(PA + 0x1000, 1)], [4]);
  // Unmap without invalidating: still reachable; after the flush, a fault.
  t.set(leaf, 0n);
  assert.equal(m.dma.write(dev, IOVA, bytes(5)).ok, true);
  m.iommu.flushIotlb("dmar0", 7);
  assert.equal(m.dma.write(dev, IOVA, bytes(6)).ok, false);
  assert.deepEqual([...m.memory.read(PA + 0x1000, 1)], [5]);
});

test("IOTLB entries are tagged by domain: requesters of one domain share them", () => {
  const { m, dev, rid, t, root } = vtdRig();
  vtdMap(t, root, 4, IOVA, PA, VTD_R | VTD_W);
  m.iommu.setTranslation("dmar0", 0, rid, { root, levels: 4, domainId: 3 });
  m.iommu.setTranslation("dmar0", 0, 0x0008, { root, levels: 4, domainId: 3 });
  assert.equal(m.dma.write(dev, IOVA, bytes(1)).pages[0]?.iotlb, "miss");
  // 00:01.0 was never the requester that filled the entry, yet it hits.
  const t2 = m.iommu.translate("dmar0", 0, 0x0008, IOVA + 4n, false);
  assert.equal(t2.ok && t2.iotlb, "hit");
  assert.equal(t2.ok && t2.pa, PA + 4);
  assert.equal(m.iommu.iotlb("dmar0").size, 1);
});

test("2 MiB pages map with PS when CAP.SLLPS offers them, and fault as reserved (0xc) when not", () => {
  const big = vtdRig();
  vtdMap(big.t, big.root, 4, 0x4000_0000n, 0x2000_0000, VTD_R | VTD_W, 2);
  big.m.iommu.setTranslation("dmar0", 0, big.rid, { root: big.root, levels: 4, domainId: 1 });
  assert.equal(big.m.dma.write(big.dev, 0x4012_3456n, bytes(0xaa)).ok, true);
  assert.deepEqual([...big.m.memory.read(0x2012_3456, 1)], [0xaa]);
  const small = vtdRig(vtdCap({ sagaw: 0b0100, mgaw: 48, sllps: 0 }));
  vtdMap(small.t, small.root, 4, 0x4000_0000n, 0x2000_0000, VTD_R | VTD_W, 2);
  small.m.iommu.setTranslation("dmar0", 0, small.rid, {
    root: small.root,
    levels: 4,
    domainId: 1,
  });
  assert.equal(small.m.dma.write(small.dev, 0x4012_3456n, bytes(0xaa)).ok, false);
  assert.equal(small.m.iommu.readFaults("dmar0")[0]?.code, 0xc);
  assert.deepEqual([...small.m.memory.read(0x2012_3456, 1)], [0]);
});

test("Snoop Control: SNP forces a No Snoop request to snoop; without ECAP.SC the bit is reserved", () => {
  const sc = vtdRig();
  setNoSnoopEnable(sc.dev);
  vtdMap(sc.t, sc.root, 4, IOVA, PA, VTD_R | VTD_W | VTD_SNP);
  vtdMap(sc.t, sc.root, 4, IOVA + 0x1000n, PA + 0x1000, VTD_R | VTD_W);
  sc.m.iommu.setTranslation("dmar0", 0, sc.rid, { root: sc.root, levels: 4, domainId: 1 });
  const forced = sc.m.dma.write(sc.dev, IOVA, bytes(1), { noSnoop: true });
  assert.equal(forced.noSnoop, true);
  assert.equal(forced.snoop, true);
  assert.equal(forced.pages[0]?.forcedSnoop, true);
  const bypass = sc.m.dma.write(sc.dev, IOVA + 0x1000n, bytes(1), { noSnoop: true });
  assert.equal(bypass.snoop, false);
  assert.equal(sc.m.dma.write(sc.dev, IOVA + 0x1000n, bytes(1)).snoop, true);

  const nosc = vtdRig(CAP48, vtdEcap({ pt: true, sc: false }));
  vtdMap(nosc.t, nosc.root, 4, IOVA, PA, VTD_R | VTD_W | VTD_SNP);
  nosc.m.iommu.setTranslation("dmar0", 0, nosc.rid, { root: nosc.root, levels: 4, domainId: 1 });
  assert.equal(nosc.m.dma.write(nosc.dev, IOVA, bytes(1)).ok, false);
  assert.equal(nosc.m.iommu.readFaults("dmar0")[0]?.code, 0xc);
});

test("context entries: pass-through needs ECAP.PT, levels must be in SAGAW, unprogrammed requesters are blocked", () => {
  const pt = vtdRig();
  pt.m.iommu.setTranslation("dmar0", 0, pt.rid, "passthrough");
  assert.equal(pt.m.dma.write(pt.dev, 0x5000, bytes(0x5a)).ok, true);
  assert.deepEqual([...pt.m.memory.read(0x5000, 1)], [0x5a]);

  const nopt = vtdRig(CAP48, vtdEcap({ pt: false }));
  nopt.m.iommu.setTranslation("dmar0", 0, nopt.rid, "passthrough");
  assert.equal(nopt.m.dma.write(nopt.dev, 0x5000, bytes(1)).ok, false);
  assert.deepEqual(nopt.m.iommu.readFaults("dmar0"), [
    { rid: nopt.rid, addr: 0x5000n, write: true, reason: "blocked", code: 3 },
  ]);

  const l3 = vtdRig(); // SAGAW offers 4 levels only
  l3.m.iommu.setTranslation("dmar0", 0, l3.rid, { root: l3.root, levels: 3, domainId: 1 });
  l3.m.dma.read(l3.dev, 0, 4);
  assert.equal(l3.m.iommu.readFaults("dmar0")[0]?.code, 3);

  const blk = vtdRig();
  blk.m.iommu.setTranslation("dmar0", 0, 0x0108, "passthrough"); // another device on bus 1
  assert.equal(blk.m.dma.read(blk.dev, 0x1000, 4).ok, false);
  assert.equal(blk.m.iommu.readFaults("dmar0")[0]?.code, 2); // context entry not present
  blk.m.iommu.setTranslation("dmar0", 0, 0x0108, null);
  blk.m.iommu.setTranslation("dmar0", 0, 0x0208, "passthrough");
  blk.m.dma.read(blk.dev, 0x1000, 4);
  assert.deepEqual(blk.m.iommu.readFaults("dmar0"), [
    { rid: blk.rid, addr: 0x1000n, write: false, reason: "blocked", code: 2 },
  ]);
});

test("a unit the kernel never programmed does not translate; one it did blocks unknown buses (reason 1)", () => {
  const off = vtdRig();
  assert.equal(off.m.dma.write(off.dev, 0x7000, bytes(7)).ok, true);
  assert.deepEqual([...off.m.memory.read(0x7000, 1)], [7]);
  off.m.iommu.setTranslation("dmar0", 0, 0x0300, "passthrough");
  assert.equal(off.m.dma.write(off.dev, 0x7000, bytes(8)).ok, false);
  assert.equal(off.m.iommu.readFaults("dmar0")[0]?.code, 1);
  assert.deepEqual([...off.m.memory.read(0x7000, 1)], [7]);
});

test("input addresses at or above 2^min(MGAW, AGAW) fault with reason 4", () => {
  const { m, dev, rid, t, root } = vtdRig(vtdCap({ sagaw: 0b0100, mgaw: 39 }));
  m.iommu.setTranslation("dmar0", 0, rid, { root, levels: 4, domainId: 1 });
  vtdMap(t, root, 4, 1n << 40n, PA, VTD_R | VTD_W);
  assert.equal(m.dma.read(dev, 1n << 40n, 4).ok, false);
  assert.deepEqual(m.iommu.readFaults("dmar0"), [
    { rid, addr: 1n << 40n, write: false, reason: "not-present", code: 4 },
  ]);
});

test("fault recording: one record per pending source, overflow with NFR registers full", () => {
  const one = vtdRig(); // NFR = 1
  one.m.iommu.setTranslation("dmar0", 0, 0x0008, null);
  one.m.iommu.setTranslation("dmar0", 0, one.rid, null);
  one.m.dma.read(one.dev, 0x1000, 4);
  one.m.dma.read(one.dev, 0x2000, 4); // same source: collapsed
  one.m.iommu.translate("dmar0", 0, 0x0008, 0x3000n, false); // register full: lost
  assert.deepEqual(
    one.m.iommu.readFaults("dmar0").map((f) => [f.rid, f.addr]),
    [[one.rid, 0x1000n]],
  );
  one.m.iommu.translate("dmar0", 0, 0x0008, 0x3000n, false);
  assert.deepEqual(
    one.m.iommu.readFaults("dmar0").map((f) => [f.rid, f.addr]),
    [[0x0008, 0x3000n]],
  );

  const eight = vtdRig(vtdCap({ sagaw: 0b0100, mgaw: 48, nfr: 8 }));
  for (let rid = 0; rid < 10; rid++) eight.m.iommu.setTranslation("dmar0", 0, rid, null);
  for (let rid = 0; rid < 10; rid++) eight.m.iommu.translate("dmar0", 0, rid, 0n, true);
  assert.equal(eight.m.iommu.readFaults("dmar0").length, 8);
});

test("CAP/ECAP decode of a real desktop's units (Coffee Lake dmar0/dmar1)", () => {
  const gfx = decodeVtdRegs(0x1c0000c40660462n, 0x19e2ff0505en);
  const main = decodeVtdRegs(0xd2008c40660462n, 0xf050dan);
  assert.deepEqual(
    [main.sagaw, main.mgaw, main.sllps, main.faultRegs, main.sc, main.pt],
    [0b0100, 39, 0b11, 1, true, true],
  );
  assert.equal(gfx.sc, false);
  assert.equal(gfx.pt, true);
});
