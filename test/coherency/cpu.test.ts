/**
 * The CPU cache model (machine/cpu.ts) as software and devices observe it: cores coherent
 * with each other, snooping DMA coherent with the caches, No Snoop DMA not, and WBINVD /
 * CLFLUSH the ways back to coherency, with their costs.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_COSTS } from "../../src/machine/costs.js";
import { rig, setNoSnoopEnable } from "../machine/dma-support.js";

const A = 0x40000;
const bytes = (n: number, v: number) => new Uint8Array(n).fill(v);
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function machine() {
  const r = rig();
  setNoSnoopEnable(r.dev);
  return { ...r, cpu: r.m.cpu, ram: r.m.memory };
}

test("cores see each other's stores; RAM only gets them on writeback", () => {
  const { cpu, ram } = machine();
  cpu.store(0, A, bytes(8, 0x11));
  assert.equal(cpu.cached(0, A)?.dirty, true);
  assert.equal(hex(ram.read(A, 8)), "0000000000000000", "still only in CPU 0's cache");
  assert.equal(hex(cpu.load(1, A, 8)), "1111111111111111", "a miss on CPU 1 gets CPU 0's data");
  assert.equal(hex(ram.read(A, 8)), "1111111111111111", "which CPU 0 wrote back to share it");
  cpu.store(1, A, bytes(4, 0x22));
  assert.equal(cpu.cached(0, A), undefined, "the store took the line from CPU 0");
  assert.equal(hex(cpu.load(0, A, 8)), "2222222211111111");
});

test("a snooping DMA read gets dirty cached data; a No Snoop read gets stale RAM", () => {
  const { m, dev, cpu } = machine();
  cpu.store(2, A, bytes(16, 0xab));
  assert.equal(hex(m.dma.read(dev, A, 4, { noSnoop: true }).data), "00000000", "stale RAM");
  assert.equal(cpu.stats.bypassedLines, 1);
  const t = m.dma.read(dev, A, 4);
  assert.equal(t.snoop, true);
  assert.equal(hex(t.data), "abababab", "the snoop made CPU 2 write the line back");
  assert.equal(cpu.cached(2, A)?.dirty, false, "and keep it clean");
});

test("a snooping DMA write invalidates cached lines; a No Snoop write leaves them stale", () => {
  const { m, dev, cpu } = machine();
  assert.equal(hex(cpu.load(0, A, 4)), "00000000");
  m.dma.write(dev, A, bytes(4, 0x5a));
  assert.equal(cpu.cached(0, A), undefined);
  assert.equal(hex(cpu.load(0, A, 4)), "5a5a5a5a");
  m.dma.write(dev, A, bytes(4, 0x77), { noSnoop: true });
  assert.equal(hex(cpu.load(0, A, 4)), "5a5a5a5a", "the cached line is stale");
  cpu.clflush(3, A);
  assert.equal(hex(cpu.load(0, A, 4)), "77777777", "CLFLUSH on any CPU drops it everywhere");
});

test("a dirty stale line written back later overwrites what a No Snoop DMA wrote", () => {
  const { m, dev, cpu, ram } = machine();
  cpu.store(1, A, bytes(64, 0));
  m.dma.write(dev, A, bytes(64, 0xc3), { noSnoop: true });
  assert.equal(hex(ram.read(A, 2)), "c3c3");
  cpu.wbinvd(1);
  assert.equal(
    hex(ram.read(A, 2)),
    "0000",
    "WBINVD wrote the guest's zeros over the device's data",
  );
  // Flushing before the device writes is what keeps the data.
  cpu.store(1, A, bytes(64, 0));
  cpu.wbinvd(1);
  m.dma.write(dev, A, bytes(64, 0xc3), { noSnoop: true });
  assert.equal(hex(cpu.load(1, A, 2)), "c3c3");
});

test("WBINVD's cost scales with the cache size; each dirty line adds a writeback", () => {
  const cost = (cacheBytesPerCore: number, dirty: number) => {
    const { m, cpu } = machine();
    m.dma.costs = { ...DEFAULT_COSTS, cacheBytesPerCore };
    for (let i = 0; i < dirty; i++) cpu.store(0, A + 64 * i, bytes(1, 1));
    const t0 = cpu.clock(0);
    cpu.wbinvd(0);
    return cpu.clock(0) - t0;
  };
  const c = DEFAULT_COSTS;
  assert.equal(cost(1 << 20, 0), ((1 << 20) / 64) * c.wbinvdPerLine);
  assert.equal(cost(4 << 20, 0), 4 * cost(1 << 20, 0));
  assert.equal(cost(1 << 20, 10) - cost(1 << 20, 0), 10 * c.cacheLineWriteback);
});

test("a full cache evicts its least recently used line, writing it back if dirty", () => {
  const { m, cpu, ram } = machine();
  m.dma.costs = { ...DEFAULT_COSTS, cacheBytesPerCore: 128 };
  cpu.store(0, A, bytes(1, 0x01));
  cpu.store(0, A + 64, bytes(1, 0x02));
  cpu.load(0, A, 1); // A becomes the most recent
  cpu.store(0, A + 128, bytes(1, 0x03));
  assert.equal(cpu.cached(0, A + 64), undefined, "A+64 was the LRU line");
  assert.equal(ram.read(A + 64, 1)[0], 0x02, "written back on eviction");
  assert.equal(ram.read(A, 1)[0], 0x00, "A is still only cached");
});

test("the kernel's view of RAM is coherent and allocates no lines", () => {
  const { m, cpu } = machine();
  const view = m.hardware().memory;
  cpu.store(0, A, bytes(4, 0x9e));
  assert.equal(hex(view.read(A, 4)), "9e9e9e9e");
  view.write(A, bytes(4, 0x10));
  assert.equal(cpu.cached(0, A), undefined, "a write by another agent invalidates the line");
  assert.equal(hex(cpu.load(0, A, 4)), "10101010");
  assert.equal(cpu.cached(1, A), undefined, "the view itself cached nothing");
});

test("WBINVD on other CPUs runs by IPI: their clocks advance and the sender waits", () => {
  const { cpu } = machine();
  const before = [0, 1, 2, 3].map((c) => cpu.clock(c));
  cpu.onEachCpu(0, [0, 2], (c) => cpu.wbinvd(c));
  const flush = ((2 << 20) / 64) * DEFAULT_COSTS.wbinvdPerLine;
  assert.equal(cpu.clock(2) - (before[2] as number), DEFAULT_COSTS.ipi + flush);
  assert.equal(cpu.clock(1), before[1], "CPU 1 was not asked");
  assert.ok(cpu.clock(0) - (before[0] as number) >= DEFAULT_COSTS.ipi + flush);
  assert.equal(cpu.stats.ipis, 1);
});
