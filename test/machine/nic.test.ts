/**
 * The loopback NIC's rings in guest memory: transmit descriptors and buffers read by DMA,
 * frames looped into receive buffers, descriptor status written back; No Snoop on frame
 * data; a DMA fault stopping the rings.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as N from "../../src/machine/devices/nic.js";
import { LoopbackNic } from "../../src/machine/devices/nic.js";
import {
  rig,
  setNoSnoopEnable,
  Tables,
  VTD_R,
  VTD_W,
  vtdCap,
  vtdEcap,
  vtdMap,
} from "./dma-support.js";

const TX = 0x10_0000;
const RX = 0x10_1000;
const BUF = 0x20_0000;

function nicRig() {
  const r = rig();
  const nic = r.m.attachModel(0, 1, 0, (port) => new LoopbackNic(port));
  const wr = (off: number, v: number) => r.m.pci.mmioWrite(0, 1, 0, 0, off, 4, BigInt(v));
  const rd = (off: number) => Number(r.m.pci.mmioRead(0, 1, 0, 0, off, 4));
  const mem = r.m.memory;
  const desc = (at: number, addr: number, len: number, cmdOrStatus: number) => {
    const b = new Uint8Array(16);
    const v = new DataView(b.buffer);
    v.setBigUint64(0, BigInt(addr), true);
    v.setUint16(8, len, true);
    v.setUint8(11, cmdOrStatus);
    mem.write(at, b);
  };
  const setup = (txCount: number, rxCount: number, rxBufs: number) => {
    wr(N.NIC_TDBAL, TX);
    wr(N.NIC_TDLEN, txCount * 16);
    wr(N.NIC_RDBAL, RX);
    wr(N.NIC_RDLEN, rxCount * 16);
    for (let i = 0; i < rxCount; i++) desc(RX + i * 16, BUF + 0x8000 + i * 0x800, 0, 0);
    wr(N.NIC_RDT, rxBufs);
    wr(N.NIC_RBSZ, 0x800);
    wr(N.NIC_CTRL, N.CTRL_TXEN | N.CTRL_RXEN);
  };
  return { ...r, nic, wr, rd, mem, desc, setup };
}

test("transmitted frames arrive in the receive ring, with DD written back on both sides", () => {
  const { mem, desc, setup, wr, rd } = nicRig();
  setup(8, 8, 7);
  mem.write(BUF, new TextEncoder().encode("ping"));
  mem.write(BUF + 0x100, new TextEncoder().encode("pa"));
  mem.write(BUF + 0x200, new TextEncoder().encode("rt two"));
  desc(TX, BUF, 4, N.TXD_CMD_EOP | N.TXD_CMD_RS);
  desc(TX + 16, BUF + 0x100, 2, 0); // first half of frame 2, no status report
  desc(TX + 32, BUF + 0x200, 6, N.TXD_CMD_EOP | N.TXD_CMD_RS);
  wr(N.NIC_TDT, 3);
  assert.equal(rd(N.NIC_TDH), 3);
  assert.deepEqual(
    [0, 1, 2].map((i) => mem.read(TX + i * 16 + 12, 1)[0]),
    [N.TXD_STA_DD, 0, N.TXD_STA_DD],
  );
  const rx = (i: number) => {
    const d = new DataView(mem.read(RX + i * 16, 16).buffer);
    const len = d.getUint16(8, true);
    const text = new TextDecoder().decode(mem.read(Number(d.getBigUint64(0, true)), len));
    return [text, d.getUint8(12)];
  };
  assert.deepEqual(rx(0), ["ping", N.RXD_STA_DD | N.RXD_STA_EOP]);
  assert.deepEqual(rx(1), ["part two", N.RXD_STA_DD | N.RXD_STA_EOP]);
  assert.equal(rd(N.NIC_RDH), 2);
  assert.deepEqual([rd(N.NIC_TPT), rd(N.NIC_TPR), rd(N.NIC_MPC)], [2, 2, 0]);
  assert.equal(rd(N.NIC_ICR), N.ICR_TXDW | N.ICR_RXT0);
  assert.equal(rd(N.NIC_ICR), 0);
});

test("a frame larger than the receive buffer spans descriptors; with none free it is missed", () => {
  const { mem, desc, setup, wr, rd } = nicRig();
  setup(4, 4, 2); // two receive descriptors available
  mem.write(BUF, new Uint8Array(0xa00).fill(0x61));
  desc(TX, BUF, 0xa00, N.TXD_CMD_EOP);
  wr(N.NIC_TDT, 1);
  const lens = [0, 1].map((i) => new DataView(mem.read(RX + i * 16 + 8, 8).buffer));
  assert.deepEqual(
    lens.map((d) => [d.getUint16(0, true), d.getUint8(4)]),
    [
      [0x800, N.RXD_STA_DD],
      [0x200, N.RXD_STA_DD | N.RXD_STA_EOP],
    ],
  );
  desc(TX + 16, BUF, 4, N.TXD_CMD_EOP);
  wr(N.NIC_TDT, 2);
  assert.deepEqual([rd(N.NIC_TPT), rd(N.NIC_TPR), rd(N.NIC_MPC)], [2, 1, 1]);
  assert.equal(rd(N.NIC_ICR) & N.ICR_RXO, N.ICR_RXO);
});

test("NSDATA: frame data moves with No Snoop, descriptors snoop", () => {
  const { m, dev, nic, mem, desc, setup, wr } = nicRig();
  setNoSnoopEnable(dev);
  setup(4, 4, 3);
  wr(N.NIC_CTRL, N.CTRL_TXEN | N.CTRL_RXEN | N.CTRL_NSDATA);
  mem.write(BUF, Uint8Array.from([1, 2, 3]));
  desc(TX, BUF, 3, N.TXD_CMD_EOP);
  wr(N.NIC_TDT, 1);
  assert.deepEqual(
    nic.transactions.map((t) => [t.write ? "w" : "r", t.len, t.snoop]),
    [
      ["r", 16, true], // TX descriptor
      ["r", 3, false], // frame data
      ["r", 16, true], // RX descriptor
      ["w", 3, false], // frame data
      ["w", 8, true], // RX status
    ],
  );
  assert.equal(m.dma.totals.transactions, 5);
});

test("a descriptor ring the IOMMU does not map stops the NIC with a DMA error until reset", () => {
  const r = rig({
    kind: "intel-vtd",
    cap: vtdCap({ sagaw: 0b0100, mgaw: 48 }),
    ecap: vtdEcap({ pt: true }),
  });
  const nic = r.m.attachModel(0, 1, 0, (port) => new LoopbackNic(port));
  const wr = (off: number, v: number) => r.m.pci.mmioWrite(0, 1, 0, 0, off, 4, BigInt(v));
  const rd = (off: number) => Number(r.m.pci.mmioRead(0, 1, 0, 0, off, 4));
  const t = new Tables(r.m.memory, 0x40_0000);
  const root = t.alloc();
  vtdMap(t, root, 4, 0x1000n, TX, VTD_R | VTD_W); // the TX ring only; its buffer is unmapped
  r.m.iommu.setTranslation("dmar0", 0, r.rid, { root, levels: 4, domainId: 2 });
  const b = new Uint8Array(16);
  new DataView(b.buffer).setBigUint64(0, 0x9000n, true);
  b[8] = 4;
  b[11] = N.TXD_CMD_EOP | N.TXD_CMD_RS;
  r.m.memory.write(TX, b);
  wr(N.NIC_TDBAL, 0x1000);
  wr(N.NIC_TDLEN, 64);
  wr(N.NIC_CTRL, N.CTRL_TXEN);
  wr(N.NIC_TDT, 1);
  assert.equal(rd(N.NIC_STATUS) & N.STATUS_DMAERR, N.STATUS_DMAERR);
  assert.equal(rd(N.NIC_TDH), 0);
  assert.equal(r.m.memory.read(TX + 12, 1)[0], 0);
  assert.deepEqual(r.m.iommu.readFaults("dmar0"), [
    { rid: r.rid, addr: 0x9000n, write: false, reason: "not-present", code: 6 },
  ]);
  assert.equal(nic.transactions.at(-1)?.error, "fault");
  wr(N.NIC_CTRL, N.CTRL_RST);
  assert.deepEqual([rd(N.NIC_STATUS), rd(N.NIC_TDLEN)], [N.STATUS_LU, 0]);
});
