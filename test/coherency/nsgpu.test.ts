/**
 * The nsgpu copy engine (machine/devices/nsgpu.ts): FILL and COPY through its bus-master
 * port, with and without No Snoop, against the CPU caches.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as G from "../../src/machine/devices/nsgpu.js";
import { rig, setNoSnoopEnable } from "../machine/dma-support.js";

function gpu() {
  const r = rig();
  setNoSnoopEnable(r.dev);
  const dev = r.m.attachModel(0, 1, 0, (port) => new G.NsGpu(port));
  const wr = (off: number, v: number) => dev.mmioWrite(0, off, 4, BigInt(v));
  const rd = (off: number) => Number(dev.mmioRead(0, off, 4));
  return { ...r, dev, wr, rd };
}

test("registers: ID, 32-bit registers, 8-byte accesses as low then high", () => {
  const { dev, wr, rd } = gpu();
  assert.equal(rd(G.NSGPU_ID_REG), G.NSGPU_ID);
  wr(G.NSGPU_DST_LO, 0x1000);
  dev.mmioWrite(0, G.NSGPU_SRC_LO, 8, 0x1_0000_2000n);
  assert.equal(dev.mmioRead(0, G.NSGPU_SRC_LO, 8), 0x1_0000_2000n);
  assert.equal(rd(G.NSGPU_DST_LO), 0x1000);
  assert.equal(dev.mmioRead(0, G.NSGPU_DST_LO, 2), 0xffffn, "a 2-byte access reads all ones");
  assert.equal(rd(0x100), 0xffffffff, "an unknown register");
});

test("COPY with No Snoop reads RAM past a dirty cached line; snooping, it gets the CPU's data", () => {
  const { m, wr, rd, dev } = gpu();
  m.cpu.store(0, 0x8000, Uint8Array.from([1, 2, 3, 4]));
  wr(G.NSGPU_SRC_LO, 0x8000);
  wr(G.NSGPU_DST_LO, 0x9000);
  wr(G.NSGPU_LEN, 4);
  wr(G.NSGPU_CTRL, G.CTRL_NOSNOOP);
  wr(G.NSGPU_CMD, G.CMD_COPY);
  assert.equal(rd(G.NSGPU_STATUS), G.STATUS_DONE);
  assert.deepEqual([...m.memory.read(0x9000, 4)], [0, 0, 0, 0], "stale RAM was copied");
  assert.deepEqual(
    dev.transactions.map((t) => [t.write, t.snoop]),
    [
      [false, false],
      [true, false],
    ],
  );
  wr(G.NSGPU_CTRL, 0);
  wr(G.NSGPU_CMD, G.CMD_COPY);
  assert.deepEqual([...m.memory.read(0x9000, 4)], [1, 2, 3, 4]);
  assert.equal(rd(G.NSGPU_COUNT), 2);
});

test("a DMA that does not complete sets ERR", () => {
  const { wr, rd } = gpu();
  wr(G.NSGPU_DST_LO, 0);
  wr(G.NSGPU_DST_HI, 0x1000); // far beyond RAM: Unsupported Request
  wr(G.NSGPU_LEN, 16);
  wr(G.NSGPU_CMD, G.CMD_FILL);
  assert.equal(rd(G.NSGPU_STATUS), G.STATUS_DONE | G.STATUS_ERR);
});
