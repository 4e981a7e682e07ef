/**
 * QEMU's edu device (hw/misc/edu.c) through its BAR: registers as QEMU answers them, and
 * its DMA engine moving bytes between RAM and its buffer through the IOMMU.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { buildHost } from "../../src/host/build.js";
import { hostSpecSchema } from "../../src/host/spec.js";
import { EduDevice } from "../../src/machine/devices/edu.js";
import * as R from "../../src/uapi/pci_regs.js";
import { Tables, VTD_R, VTD_W, vtdMap } from "./dma-support.js";

const EDU = R.PCI_DEVFN(3, 0);

function q35() {
  const host = buildHost(
    hostSpecSchema.parse({
      name: "q35-edu",
      iommu: [{ kind: "intel-vtd", name: "dmar0", cap: "d2008c40660462", ecap: "f050da" }],
      functions: [
        { addr: "0000:00:00.0", id: "8086:29c0", class: "060000" },
        {
          addr: "0000:00:03.0",
          id: "1234:11e8",
          class: "00ff00",
          revision: 0x10,
          bars: [{ index: 0, size: 0x100000 }],
        },
      ],
    }),
    "test",
  );
  const m = host.machine;
  const rd = (off: number, w: 1 | 2 | 4 | 8 = 4) => m.pci.mmioRead(0, 0, EDU, 0, off, w);
  const wr = (off: number, v: bigint | number, w: 1 | 2 | 4 | 8 = 4) =>
    m.pci.mmioWrite(0, 0, EDU, 0, off, w, BigInt(v));
  const edu = m.pci.fn(0, 0, EDU)?.model as EduDevice;
  return { m, rd, wr, edu };
}

test("building a host attaches the edu model to 1234:11e8", () => {
  const { m, rd, edu } = q35();
  assert.ok(edu instanceof EduDevice);
  assert.equal(rd(0x00), 0x010000edn);
  assert.equal(m.pci.mmioRead(0, 0, 0, 0, 0, 4), 0xffffffffn); // the host bridge has no model
});

test("liveness, factorial (32-bit wrap), status and interrupts as edu.c", () => {
  const { rd, wr, edu } = q35();
  wr(0x04, 0x12345678);
  assert.equal(rd(0x04), 0xedcba987n);
  wr(0x08, 5);
  assert.equal(rd(0x08), 120n);
  wr(0x08, 13);
  assert.equal(rd(0x08), BigInt(6227020800 % 2 ** 32));
  assert.equal(rd(0x20), 0n);
  const lines: string[] = [];
  edu.onInterrupt = (kind, on) => lines.push(`${kind} ${on}`);
  wr(0x20, 0x80);
  wr(0x08, 3);
  assert.equal(rd(0x08), 6n);
  assert.equal(rd(0x24), 1n);
  wr(0x60, 0x10);
  assert.equal(rd(0x24), 0x11n);
  wr(0x64, 0x11);
  assert.equal(rd(0x24), 0n);
  assert.deepEqual(lines, ["intx true", "intx false"]);
});

test("Status.Interrupt follows the INTx line, whatever INTx Disable says; a reset drops it", () => {
  const { m, rd, wr, edu } = q35();
  const cs = m.pci.fn(0, 0, EDU)!.config;
  const pending = () => (cs.read(R.PCI_STATUS, 2) & R.PCI_STATUS_INTERRUPT) !== 0;
  cs.set(R.PCI_COMMAND, 2, R.PCI_COMMAND_MEMORY | R.PCI_COMMAND_INTX_DISABLE);
  wr(0x60, 0x4);
  assert.equal(pending(), true);
  wr(0x60, 0x8);
  wr(0x64, 0x4);
  assert.equal(pending(), true, "0x8 still raised");
  wr(0x64, 0x8);
  assert.equal(pending(), false);
  wr(0x60, 0x4);
  edu.functionReset();
  assert.equal(pending(), false, "a reset drops the line");
  assert.equal(rd(0x24), 4n, "and keeps the interrupt status register");
});

test("access sizes: below 0x80 only 4 bytes, DMA registers 4 or 8; invalid accesses read 0", () => {
  const { rd, wr } = q35();
  assert.equal(rd(0x00, 2), 0n);
  assert.equal(rd(0x02, 4), 0n); // misaligned
  assert.equal(rd(0x00, 8), 0xffffffffffffffffn);
  assert.equal(rd(0x0c), 0xffffffffn);
  wr(0x80, 0xdeadbeef00001000n, 8);
  assert.equal(rd(0x80, 8), 0xdeadbeef00001000n);
  assert.equal(rd(0x80, 4), 0x1000n);
  assert.equal(rd(0x84, 4), 0xffffffffn);
  wr(0x80, 0x2000, 4); // replaces the whole register
  assert.equal(rd(0x80, 8), 0x2000n);
  wr(0x04, 0xff, 2);
  assert.equal(rd(0x04), 0n);
});

test("DMA copies RAM → buffer → RAM through the IOMMU and raises 0x100", () => {
  const { m, rd, wr } = q35();
  const t = new Tables(m.memory);
  const root = t.alloc();
  vtdMap(t, root, 4, 0x10000n, 0x30_0000, VTD_R);
  vtdMap(t, root, 4, 0x20000n, 0x30_1000, VTD_R | VTD_W);
  m.iommu.setTranslation("dmar0", 0, EDU, { root, levels: 4, domainId: 1 });
  m.pci.write(0, 0, EDU, R.PCI_COMMAND, 2, R.PCI_COMMAND_MASTER | R.PCI_COMMAND_MEMORY);
  m.memory.write(0x30_0000, new TextEncoder().encode("hello, iommu!"));

  wr(0x80, 0x10000);
  wr(0x88, 0x40000);
  wr(0x90, 13);
  wr(0x98, 0x1 | 0x4); // RAM → device, interrupt
  assert.equal(rd(0x98) & 1n, 0n);
  assert.equal(rd(0x24), 0x100n);
  wr(0x64, 0x100);

  wr(0x80, 0x40000);
  wr(0x88, 0x20000);
  wr(0x90, 13);
  wr(0x98, 0x1 | 0x2); // device → RAM
  assert.equal(new TextDecoder().decode(m.memory.read(0x30_1000, 13)), "hello, iommu!");
  assert.equal(rd(0x24), 0n);
  assert.deepEqual(m.iommu.readFaults("dmar0"), []);
});

test("DMA to an unmapped IOVA faults in the IOMMU and writes nothing; the engine still finishes", () => {
  const { m, rd, wr, edu } = q35();
  const t = new Tables(m.memory);
  const root = t.alloc();
  m.iommu.setTranslation("dmar0", 0, EDU, { root, levels: 4, domainId: 1 });
  m.pci.write(0, 0, EDU, R.PCI_COMMAND, 2, R.PCI_COMMAND_MASTER);
  edu.buffer.fill(0x55);
  wr(0x80, 0x40000);
  wr(0x88, 0x30000);
  wr(0x90, 4);
  wr(0x98, 0x3);
  assert.equal(rd(0x98) & 1n, 0n);
  assert.deepEqual(m.iommu.readFaults("dmar0"), [
    { rid: EDU, addr: 0x30000n, write: true, reason: "not-present", code: 5 },
  ]);
  assert.deepEqual([...m.memory.read(0x30000, 4)], [0, 0, 0, 0]);
});

test("the 28-bit DMA mask clamps addresses; a range outside the buffer is refused", () => {
  const { m, wr, edu } = q35();
  m.pci.write(0, 0, EDU, R.PCI_COMMAND, 2, R.PCI_COMMAND_MASTER);
  edu.buffer.set([1, 2, 3, 4]);
  wr(0x80, 0x40000);
  wr(0x88, 0x1000_5000); // bit 28 is beyond the mask
  wr(0x90, 4);
  wr(0x98, 0x3);
  assert.deepEqual([...m.memory.read(0x5000, 4)], [1, 2, 3, 4]);
  assert.match(edu.guestErrors[0] ?? "", /clamping DMA 0x0000000010005000 to 0x0000000000005000/);
  wr(0x80, 0x40ffe);
  wr(0x88, 0x6000);
  wr(0x98, 0x3);
  assert.deepEqual([...m.memory.read(0x6000, 4)], [0, 0, 0, 0]);
  assert.match(edu.guestErrors[1] ?? "", /out of bounds/);
});

test("without Bus Master Enable the device's DMA never leaves it", () => {
  const { m, wr, edu } = q35();
  edu.buffer.set([9]);
  wr(0x80, 0x40000);
  wr(0x88, 0x7000);
  wr(0x90, 1);
  wr(0x98, 0x3);
  assert.equal(edu.transactions[0]?.error, "bus-master-disabled");
  assert.deepEqual([...m.memory.read(0x7000, 1)], [0]);
});
