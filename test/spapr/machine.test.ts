/**
 * The POWER machine and platform: PEs as IOMMU groups, the PHB's DMA windows and TCE
 * walk, EEH freezing (DMA and MMIO), the 64 KiB host page, powerpc's ioctl numbers.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Kernel } from "../../src/kernel/kernel.js";
import { Machine } from "../../src/machine/machine.js";
import { fromPowerpc, toPowerpc } from "../../src/uapi/ioctl.js";
import * as K from "../../src/uapi/kvm.js";
import { MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from "../../src/uapi/syscalls.js";
import * as U from "../../src/uapi/vfio.js";
import {
  NIC,
  NIC2,
  deviceFd,
  ioctl,
  mapDma,
  mem,
  openContainer,
  power9,
  PAGE64K,
} from "./support.js";

test("powerpc's _IOC layout gives other request numbers", () => {
  assert.equal(toPowerpc(U.VFIO_IOMMU_SPAPR_TCE_GET_INFO), 0x20003b70);
  assert.equal(toPowerpc(K.KVM_CREATE_SPAPR_TCE_64), 0x8020aea8);
  assert.equal(fromPowerpc(0x8020aea8), K.KVM_CREATE_SPAPR_TCE_64);
  assert.notEqual(fromPowerpc(U.VFIO_IOMMU_SPAPR_TCE_GET_INFO), U.VFIO_IOMMU_SPAPR_TCE_GET_INFO);
});

test("each NIC is alone in its PE, and the PE is the IOMMU group; root ports have none", async () => {
  const p = await power9();
  const groups = p.k.debug.groups();
  assert.deepEqual(
    groups.map((g) => g.devices),
    [[NIC], [NIC2]],
  );
  assert.deepEqual(
    groups.map((g) => g.unit),
    ["iommu-phb0000", "iommu-phb0001"],
  );
  const pe = p.k.power.pe(NIC);
  // 512 PEs, 511 reserved, 510 for the root bus: the first bus PE is 509 (0x1fd).
  assert.equal(pe?.pe, 509);
  assert.equal(pe?.groupName, "domain0-pe1fd");
  assert.equal(p.k.debug.trace(NIC)?.decided.code, "PARTITIONABLE_ENDPOINT");
  assert.equal(typeof p.sys.readlink("/sys/bus/pci/devices/0000:00:00.0/iommu_group"), "number");
});

test("a POWER kernel's pages are 64 KiB; an x86 kernel's stay 4 KiB", async () => {
  const p = await power9();
  const a = p.sys.mmap(0n, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
  const b = p.sys.mmap(0n, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
  assert.equal(p.sys.task.mm.pageSize, PAGE64K);
  assert.ok(a - b >= BigInt(PAGE64K), "each mapping takes a whole 64 KiB page");
  const x86 = Kernel.boot(new Machine("pc").hardware());
  assert.equal(x86.spawn().task.mm.pageSize, 4096);
});

test("before VFIO the kernel's own DMA uses its default window and the bypass at 1 << 59", async () => {
  const p = await power9();
  const phb = p.machine.phbs.get(0);
  const pe = p.k.power.pe(NIC)?.pe as number;
  assert.equal(phb?.tvt.get(pe << 1)?.kind, "table");
  assert.equal(phb?.tvt.get((pe << 1) | 1)?.kind, "bypass");
  assert.equal(phb?.dma(0x100, (1n << 59n) + 0x1234n, true).pa, 0x1234);
  openContainer(p, NIC, U.VFIO_SPAPR_TCE_IOMMU);
  assert.equal(phb?.tvt.size, 0, "VFIO took the PE: no window, no bypass");
  assert.equal(phb?.dma(0x100, (1n << 59n) + 0x1234n, true).frozen, true);
});

test("a bad DMA freezes the PE: DMA writes dropped, MMIO loads all ones, stores dropped", async () => {
  const p = await power9();
  const { container, group } = openContainer(p, NIC, U.VFIO_SPAPR_TCE_IOMMU);
  assert.equal(ioctl(p.sys, container, U.VFIO_IOMMU_ENABLE), 0);
  const buf = mem(p.sys, PAGE64K);
  assert.equal(mapDma(p, container, buf, 0n, 4096n), 0);
  const nic = deviceFd(p, group);
  const fn = p.machine.pci.fn(0, 1, 0);
  const dma = p.machine.dma;
  assert.ok(fn);
  const on = mem(p.sys, 4096);
  p.sys.poke(on, new Uint8Array([6, 0]));
  assert.equal(p.sys.pwrite(nic, on, 2, 0x70000000004n), 2);
  const ok = dma.write(fn, 0x10n, new Uint8Array([1, 2, 3]));
  assert.equal(ok.ok, true);
  assert.deepEqual([...(p.sys.peek(buf + 0x10n, 3) as Uint8Array)], [1, 2, 3]);
  const bad = dma.write(fn, 0x5000n, new Uint8Array([9]));
  assert.equal(bad.error, "frozen");
  assert.match(bad.frozenCause ?? "", /TCE/);
  const after = dma.write(fn, 0x10n, new Uint8Array([7, 7, 7]));
  assert.equal(after.ok, false, "the mapped page too: the whole PE is stopped");
  assert.deepEqual([...(p.sys.peek(buf + 0x10n, 3) as Uint8Array)], [1, 2, 3]);
  const rd = dma.read(fn, 0x10n, 4);
  assert.deepEqual([...rd.data], [0xff, 0xff, 0xff, 0xff]);
  const out = mem(p.sys, 4096);
  assert.equal(p.sys.pread(nic, out, 4, 0x04n), 4);
  assert.deepEqual([...(p.sys.peek(out, 4) as Uint8Array)], [0xff, 0xff, 0xff, 0xff]);
  // The other PHB's NIC is untouched.
  const fn2 = p.machine.pci.fn(1, 1, 0);
  assert.ok(fn2);
  assert.equal(p.machine.phbs.get(1)?.pe(509).dmaFrozen, false);
});

test("a frozen PE's MSIs are dropped", async () => {
  const p = await power9();
  const nicModel = p.machine.pci.fn(0, 1, 0)?.model as unknown as {
    onInterrupt: ((c: number) => void) | null;
  };
  const got: number[] = [];
  nicModel.onInterrupt = (c) => got.push(c);
  const fn = p.machine.pci.fn(0, 1, 0);
  assert.ok(fn);
  nicModel.onInterrupt?.(1);
  assert.deepEqual(got, [1]);
  p.machine.dma.read(fn, 0x7000_0000n, 4); // no VFIO window mapped: freezes the PE
  nicModel.onInterrupt?.(2);
  assert.deepEqual(got, [1], "dropped");
  assert.equal(p.machine.blockedMsi, 1);
});
