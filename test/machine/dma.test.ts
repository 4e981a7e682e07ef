/**
 * The DMA path from a function to RAM: Bus Master Enable on the way up, the requester ID
 * the IOMMU sees (PCIe-to-PCI bridges, bridges hiding their PCIe capability, VFs, VMD),
 * which unit's scope applies, No Snoop, page-by-page completion, Unsupported Requests,
 * the coherency hook and the simulated cost.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_COSTS } from "../../src/machine/costs.js";
import { Machine } from "../../src/machine/machine.js";
import { buildConfigSpace } from "../../src/machine/pci/builder.js";
import * as R from "../../src/uapi/pci_regs.js";
import {
  bytes,
  rig,
  setMaster,
  setNoSnoopEnable,
  Tables,
  VTD_R,
  VTD_W,
  vtdMap,
} from "./dma-support.js";

test("without an IOMMU the bus address is the physical address", () => {
  const { m, dev } = rig();
  const t = m.dma.write(dev, 0x2345, bytes(1, 2, 3));
  assert.equal(t.ok, true);
  assert.equal(t.unit, null);
  assert.deepEqual([...m.memory.read(0x2345, 3)], [1, 2, 3]);
  assert.deepEqual([...m.dma.read(dev, 0x2346, 2).data], [2, 3]);
});

test("Bus Master Enable: a function without it issues nothing; a port without it forwards nothing", () => {
  const { m, dev, port } = rig({ kind: "intel-vtd" });
  m.iommu.setTranslation("dmar0", 0, 0x0100, "passthrough");
  setMaster(dev, false);
  const a = m.dma.write(dev, 0x1000, bytes(1));
  assert.equal(a.error, "bus-master-disabled");
  setMaster(dev);
  setMaster(port, false);
  const b = m.dma.write(dev, 0x1000, bytes(1));
  assert.equal(b.error, "unsupported-request");
  assert.deepEqual([...m.memory.read(0x1000, 1)], [0]);
  assert.deepEqual(m.iommu.readFaults("dmar0"), []);
  setMaster(port);
  assert.equal(m.dma.write(dev, 0x1000, bytes(1)).ok, true);
});

/**
 * 00:1c.0 root port → 02:00.0 `bridge` (secondary 3) → 03:01.0 conventional PCI device;
 * 00:1e.0 conventional bridge on the root bus (secondary 4) → 04:02.0.
 */
function legacy(bridge: "pcie-to-pci" | "hidden" | "pcie-to-pci-with-pci-bridge") {
  const m = new Machine("legacy");
  const root = m.pci.addRoot(0, 0);
  m.roots.push({ domain: 0, bus: 0 });
  m.iommus.push({
    kind: "intel-vtd",
    name: "dmar0",
    cap: 0n,
    ecap: 0n,
    segment: 0,
    scope: { all: true, exclude: [] },
  });
  const rp = m.pci.attach(
    root,
    R.PCI_DEVFN(0x1c, 0),
    buildConfigSpace({
      header: "bridge",
      pcieTypeCode: 4,
      primary: 0,
      secondary: 2,
      subordinate: 5,
    }),
  );
  const br = m.pci.attach(
    m.pci.link(rp),
    0,
    buildConfigSpace({
      header: "bridge",
      id: { vendor: 0x1b21, device: 0x1080 },
      pcieTypeCode: bridge === "hidden" ? undefined : R.PCI_EXP_TYPE_PCI_BRIDGE,
      primary: 2,
      secondary: 3,
      subordinate: 5,
    }),
  );
  const fns = [rp, br];
  let below = m.pci.link(br);
  if (bridge === "pcie-to-pci-with-pci-bridge") {
    const pci = m.pci.attach(
      below,
      R.PCI_DEVFN(4, 0),
      buildConfigSpace({ header: "bridge", primary: 3, secondary: 5, subordinate: 5 }),
    );
    fns.push(pci);
    below = m.pci.link(pci);
  }
  const dev = m.pci.attach(below, R.PCI_DEVFN(1, 0), buildConfigSpace({ class: 0x040100 }));
  const hub = m.pci.attach(
    root,
    R.PCI_DEVFN(0x1e, 0),
    buildConfigSpace({ header: "bridge", primary: 0, secondary: 6, subordinate: 6 }),
  );
  const old = m.pci.attach(
    m.pci.link(hub),
    R.PCI_DEVFN(2, 0),
    buildConfigSpace({ class: 0x020000 }),
  );
  for (const f of [...fns, dev, hub, old]) setMaster(f);
  return { m, dev, old };
}

test("a PCIe-to-PCI bridge issues its conventional devices' DMA as (secondary bus, 00.0)", () => {
  for (const kind of ["pcie-to-pci", "hidden", "pcie-to-pci-with-pci-bridge"] as const) {
    const { m, dev } = legacy(kind);
    assert.equal(m.dma.route(dev).rid, 0x0300, kind);
    // Programming the device's own ID does not make its DMA translate…
    const own = kind === "pcie-to-pci-with-pci-bridge" ? 0x0508 : 0x0308;
    m.iommu.setTranslation("dmar0", 0, own, "passthrough");
    assert.equal(m.dma.write(dev, 0x1000, bytes(1)).ok, false, kind);
    assert.equal(m.iommu.readFaults("dmar0")[0]?.rid, 0x0300, kind);
    // …the bridge's alias does.
    m.iommu.setTranslation("dmar0", 0, 0x0300, "passthrough");
    assert.equal(m.dma.write(dev, 0x1000, bytes(1)).ok, true, kind);
  }
});

test("a conventional bridge on the root bus issues DMA from below with its own requester ID", () => {
  const { m, old } = legacy("pcie-to-pci");
  const r = m.dma.route(old);
  assert.equal(r.rid, R.PCI_DEVFN(0x1e, 0));
  assert.equal(r.noSnoopAllowed, false);
});

test("No Snoop needs Enable No Snoop; conventional PCI never carries it", () => {
  const { m, dev } = rig();
  assert.equal(m.dma.write(dev, 0x1000, bytes(1), { noSnoop: true }).noSnoop, false);
  setNoSnoopEnable(dev);
  const t = m.dma.write(dev, 0x1000, bytes(1), { noSnoop: true });
  assert.equal(t.noSnoop, true);
  assert.equal(t.snoop, false);
  const l = legacy("pcie-to-pci");
  assert.equal(l.m.dma.write(l.dev, 0x1000, bytes(1), { noSnoop: true }).snoop, true);
});

test("a VF issues DMA with its own requester ID, in its PF's unit scope, once its BME is set", () => {
  const m = new Machine("sriov");
  const root = m.pci.addRoot(0, 0);
  m.roots.push({ domain: 0, bus: 0 });
  const rp = m.pci.attach(
    root,
    R.PCI_DEVFN(2, 0),
    buildConfigSpace({
      header: "bridge",
      pcieTypeCode: 4,
      primary: 0,
      secondary: 1,
      subordinate: 1,
    }),
  );
  const pf = m.pci.attach(
    m.pci.link(rp),
    0,
    buildConfigSpace({
      id: { vendor: 0x8086, device: 0x1572 },
      pcieTypeCode: 0,
      sriov: { total: 4, offset: 0x10, stride: 1 },
    }),
  );
  setMaster(rp);
  m.iommus.push({
    kind: "intel-vtd",
    name: "dmar1",
    cap: 0n,
    ecap: 0n,
    segment: 0,
    scope: { all: false, devices: ["0000:01:00.0"] },
  });
  m.pci.write(0, 1, 0, 0x100 + R.PCI_SRIOV_NUM_VF, 2, 2);
  m.pci.write(0, 1, 0, 0x100 + R.PCI_SRIOV_CTRL, 2, R.PCI_SRIOV_CTRL_VFE);
  const vf = m.pci.fn(0, 1, 0x11);
  assert.ok(vf && vf.physfn === pf);
  m.iommu.setTranslation("dmar1", 0, 0x0111, "passthrough");
  assert.equal(m.dma.write(vf, 0x4000, bytes(1)).error, "bus-master-disabled");
  m.pci.write(0, 1, 0x11, R.PCI_COMMAND, 2, R.PCI_COMMAND_MASTER);
  const t = m.dma.write(vf, 0x4000, bytes(0x7f));
  assert.equal(t.unit, "dmar1");
  assert.equal(t.rid, 0x0111);
  assert.equal(t.ok, true);
  assert.deepEqual([...m.memory.read(0x4000, 1)], [0x7f]);
});

test("devices below Intel VMD reach the IOMMU as the VMD endpoint", () => {
  const m = new Machine("vmd");
  const root0 = m.pci.addRoot(0, 0);
  const vmdDom = m.pci.addRoot(0x10000, 0xe0);
  m.roots.push({ domain: 0, bus: 0 });
  m.roots.push({
    domain: 0x10000,
    bus: 0xe0,
    vmd: { domain: 0, bus: 0, devfn: R.PCI_DEVFN(0xe, 0) },
  });
  const vmd = m.pci.attach(
    root0,
    R.PCI_DEVFN(0xe, 0),
    buildConfigSpace({ id: { vendor: 0x8086, device: 0x9a0b } }),
  );
  const rp = m.pci.attach(
    vmdDom,
    0,
    buildConfigSpace({
      header: "bridge",
      pcieTypeCode: 4,
      primary: 0xe0,
      secondary: 0xe1,
      subordinate: 0xe1,
    }),
  );
  const nvme = m.pci.attach(
    m.pci.link(rp),
    0,
    buildConfigSpace({ pcieTypeCode: 0, class: 0x010802 }),
  );
  for (const f of [vmd, rp, nvme]) setMaster(f);
  m.iommus.push({
    kind: "intel-vtd",
    name: "dmar0",
    cap: 0n,
    ecap: 0n,
    segment: 0,
    scope: { all: true, exclude: [] },
  });
  const r = m.dma.route(nvme);
  assert.deepEqual([r.segment, r.rid, r.unit?.name], [0, R.PCI_DEVFN(0xe, 0), "dmar0"]);
  assert.equal(r.requester, vmd);
});

test("a listed bridge's scope covers the devices below it; functions outside every scope are untranslated", () => {
  const inScope = rig({ kind: "intel-vtd", scope: { all: false, devices: ["0000:00:01.0"] } });
  assert.equal(inScope.m.dma.route(inScope.dev).unit?.name, "dmar0");
  const outside = rig({ kind: "intel-vtd", scope: { all: false, devices: ["0000:00:02.0"] } });
  outside.m.iommu.setTranslation("dmar0", 0, 0x0010, "passthrough");
  const t = outside.m.dma.write(outside.dev, 0x3000, bytes(3));
  assert.equal(t.unit, null);
  assert.deepEqual([...outside.m.memory.read(0x3000, 1)], [3]);
});

test("each page stands alone: a fault in the middle page drops only that page", () => {
  const { m, dev, rid } = rig({ kind: "intel-vtd" });
  const t = new Tables(m.memory);
  const root = t.alloc();
  vtdMap(t, root, 4, 0x10000n, 0x50_0000, VTD_R | VTD_W);
  vtdMap(t, root, 4, 0x12000n, 0x50_2000, VTD_R | VTD_W);
  m.iommu.setTranslation("dmar0", 0, rid, { root, levels: 4, domainId: 1 });
  const data = new Uint8Array(0x1010).fill(0xee);
  const w = m.dma.write(dev, 0x10ff8n, data);
  assert.equal(w.ok, false);
  assert.deepEqual(
    w.pages.map((p) => [p.iova, p.len, p.pa]),
    [
      [0x10ff8n, 8, 0x50_0ff8],
      [0x11000n, 0x1000, null],
      [0x12000n, 8, 0x50_2000],
    ],
  );
  assert.deepEqual([...m.memory.read(0x50_0ff8, 8)], new Array(8).fill(0xee));
  assert.deepEqual([...m.memory.read(0x50_2000, 9)], [...new Array(8).fill(0xee), 0]);
  assert.equal(m.iommu.readFaults("dmar0").length, 1);
  const r = m.dma.read(dev, 0x10ffcn, 8);
  assert.deepEqual([...r.data], [0xee, 0xee, 0xee, 0xee, 0, 0, 0, 0]);
});

test("DMA to an address with no RAM behind it is an Unsupported Request", () => {
  const { m, dev } = rig();
  const t = m.dma.write(dev, m.memory.size - 2, bytes(1, 2, 3, 4));
  assert.equal(t.error, "unsupported-request");
  assert.deepEqual(
    t.pages.map((p) => [p.len, p.unsupported ?? false]),
    [
      [2, false],
      [2, true],
    ],
  );
  assert.deepEqual([...m.memory.read(m.memory.size - 2, 2)], [1, 2]);
});

test("the coherency hook sees snooped and bypassing accesses before RAM does", () => {
  const { m, dev } = rig();
  setNoSnoopEnable(dev);
  const seen: string[] = [];
  m.dma.coherency = {
    snoop: (pa, len, write) => {
      seen.push(`snoop ${pa.toString(16)} ${len} ${write} ${m.memory.read(pa, 1)[0]}`);
    },
    bypass: (pa, len, write) => {
      seen.push(`bypass ${pa.toString(16)} ${len} ${write} ${m.memory.read(pa, 1)[0]}`);
    },
  };
  m.dma.write(dev, 0x8000, bytes(5, 5));
  m.dma.write(dev, 0x9000, bytes(6), { noSnoop: true });
  m.dma.read(dev, 0x8000, 1, { noSnoop: true });
  assert.deepEqual(seen, ["snoop 8000 2 true 0", "bypass 9000 1 true 0", "bypass 8000 1 false 5"]);
});

test("simulated cost: a miss pays a walk per level, a hit does not", () => {
  const { m, dev, rid } = rig({ kind: "intel-vtd" });
  const t = new Tables(m.memory);
  const root = t.alloc();
  vtdMap(t, root, 4, 0x10000n, 0x50_0000, VTD_R | VTD_W);
  m.iommu.setTranslation("dmar0", 0, rid, { root, levels: 4, domainId: 1 });
  const miss = m.dma.write(dev, 0x10000n, new Uint8Array(64));
  const hit = m.dma.write(dev, 0x10040n, new Uint8Array(64));
  assert.deepEqual(
    [miss.cost.walkReads, miss.cost.iotlbMisses, hit.cost.walkReads, hit.cost.iotlbHits],
    [4, 1, 0, 1],
  );
  const link = (64 + DEFAULT_COSTS.tlpOverheadBytes) * DEFAULT_COSTS.dmaPerByte;
  assert.ok(
    Math.abs(hit.cost.ns - (DEFAULT_COSTS.iotlbHit + link + DEFAULT_COSTS.dmaWriteLatency)) < 1e-9,
  );
  assert.ok(
    Math.abs(
      miss.cost.ns - (4 * DEFAULT_COSTS.pageWalkPerLevel + link + DEFAULT_COSTS.dmaWriteLatency),
    ) < 1e-9,
  );
  assert.equal(m.dma.totals.transactions, 2);
  assert.equal(m.dma.totals.bytes, 128);
});
