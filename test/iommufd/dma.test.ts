/**
 * Device DMA through iommufd: QEMU's edu device (examples/hosts/qemu-edu.yaml) used through
 * its VFIO cdev, bound to an iommufd and attached to an IOAS. What the device reads and
 * writes is what the IOAS maps, through the VT-d tables iommufd fills: memory mapped before
 * the attach is pinned at the attach, an unmap takes the translation away (the DMA faults),
 * and a replace moves the device to another IOAS's mappings.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadHost } from "../../src/host/load.js";
import { Kernel } from "../../src/kernel/kernel.js";
import * as I from "../../src/uapi/iommufd.js";
import { ROOT } from "../support/paths.js";
import { PAGE, Proc } from "./support.js";

const EDU = "0000:01:00.0";
const HELLO = Buffer.from("hello, dma!");

async function setup() {
  const host = await loadHost(join(ROOT, "examples", "hosts", "qemu-edu.yaml"));
  const bindings = new Map<string, string>();
  for (const [bdf, o] of host.observed) if (o.driver) bindings.set(bdf, o.driver);
  const k = Kernel.boot(host.machine.hardware(), {
    cmdline: host.cmdline,
    bindings,
    build: "iommufd",
  });
  const p = Proc.spawn(k);
  const fd = p.open("/dev/iommu");
  const dev = p.open(p.toVfio(EDU));
  assert.equal(p.bind(dev, fd).ret, 0);
  const reg = (off: number, v: bigint) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(v);
    p.poke(0x50000, b);
    assert.equal(p.sys.pwrite(dev, p.buf + 0x50000n, 8, BigInt(off)), 8);
  };
  // config space: memory space and bus master on
  p.poke(0x50000, Uint8Array.of(6, 0));
  assert.equal(p.sys.pwrite(dev, p.buf + 0x50000n, 2, (7n << 40n) + 4n), 2);
  /** edu DMA: memory at `iova` → device buffer, then device buffer → memory at `to`. */
  const dma = (from: bigint, to: bigint, n: number) => {
    reg(0x80, from);
    reg(0x88, 0x40000n);
    reg(0x90, BigInt(n));
    reg(0x98, 1n);
    reg(0x80, 0x40000n);
    reg(0x88, to);
    reg(0x98, 3n);
  };
  const ram = p.mmap(4 * 4096);
  /** What the IOMMU does with the device's access to `iova` (requester 01:00.0). */
  const translate = (iova: bigint, write: boolean) =>
    host.machine.iommu.translate("dmar0", 0, 0x0100, iova, write);
  return { k, p, fd, dev, dma, ram, translate };
}

test("the device's DMA lands where the IOAS maps, pinned at attach", async () => {
  const { p, fd, dev, dma, ram } = await setup();
  p.sys.poke(ram, HELLO);
  const ioas = p.ioasAlloc(fd);
  // mapped before any domain: nothing pinned yet, the attach pins and fills
  assert.equal(p.map(fd, ioas, ram, 4n * PAGE, 0x100000n).ret, 0);
  assert.equal(p.attach(dev, ioas).ret, 0);
  dma(0x100000n, 0x101000n, HELLO.length);
  assert.deepEqual(Buffer.from(p.sys.peek(ram + PAGE, HELLO.length) as Uint8Array), HELLO);
  // unmapped: the device's write faults and memory stays as it was
  assert.equal(p.unmap(fd, ioas, 0x100000n, 4n * PAGE).ret, 0);
  p.sys.poke(ram + 2n * PAGE, new Uint8Array(16));
  dma(0x100000n, 0x102000n, HELLO.length);
  assert.deepEqual([...(p.sys.peek(ram + 2n * PAGE, 16) as Uint8Array)], new Array(16).fill(0));
});

test("a replace moves the device to another IOAS's mappings; COPY shares the pages", async () => {
  const { p, fd, dev, dma, ram } = await setup();
  p.sys.poke(ram, HELLO);
  const a = p.ioasAlloc(fd);
  const b = p.ioasAlloc(fd);
  assert.equal(p.map(fd, a, ram, 4n * PAGE, 0x100000n).ret, 0);
  // B sees the same pages at another IOVA
  const copy = p.cmd(fd, I.IOMMU_IOAS_COPY, I.iommu_ioas_copy, {
    flags: 7,
    dst_ioas_id: b,
    src_ioas_id: a,
    length: 4n * PAGE,
    dst_iova: 0x800000n,
    src_iova: 0x100000n,
  });
  assert.equal(copy.ret, 0);
  assert.equal(p.attach(dev, a).ret, 0);
  assert.equal(p.attach(dev, b).ret, 0, "replace");
  dma(0x800000n, 0x803000n, HELLO.length);
  assert.deepEqual(Buffer.from(p.sys.peek(ram + 3n * PAGE, HELLO.length) as Uint8Array), HELLO);
  // A's IOVA means nothing to the device now
  p.sys.poke(ram + 2n * PAGE, new Uint8Array(16));
  dma(0x100000n, 0x102000n, HELLO.length);
  assert.deepEqual([...(p.sys.peek(ram + 2n * PAGE, 16) as Uint8Array)], new Array(16).fill(0));
});

test("the VT-d leaf entries of a HWPT made for an SC-capable device carry SNP", async () => {
  const { p, fd, dev, ram, translate } = await setup();
  p.sys.poke(ram, HELLO);
  const ioas = p.ioasAlloc(fd);
  const att = p.attach(dev, ioas);
  assert.equal(att.ret, 0);
  assert.equal(p.map(fd, ioas, ram, PAGE, 0x100000n).ret, 0);
  const t = translate(0x100000n, true);
  assert.ok(t.ok, "mapped");
  assert.equal(t.ok && t.snoop, true, "ECAP.SC and the HWPT forces snooping: SNP in the leaf");
  assert.equal(translate(0x200000n, false).ok, false, "not mapped: a fault");
});
