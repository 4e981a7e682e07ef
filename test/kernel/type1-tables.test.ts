/**
 * What the IOMMU hardware is left with: the kernel's domains (drivers/iommu/iommu.c), the
 * VT-d second-level tables and context entries (drivers/iommu/intel/iommu.c), the AMD-Vi
 * v1 tables and device table entries (drivers/iommu/amd/iommu.c, io_pgtable.c), and how
 * the type1 backend (drivers/vfio/vfio_iommu_type1.c) drives them: domain sharing and
 * replay, coherency enforcement, interrupt-remapping isolation, apertures and reserved
 * regions. Tables are read back from the machine's RAM by walkers written from the
 * hardware specifications (type1-support.ts), never through the kernel's own code.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { buildHost } from "../../src/host/build.js";
import { hostSpecSchema } from "../../src/host/spec.js";
import {
  IOMMU_READ,
  IOMMU_RESV_DIRECT_RELAXABLE,
  IOMMU_RESV_MSI,
  IOMMU_WRITE,
  iommuAttachGroup,
  iommuGetGroupResvRegions,
  iommuIovaToPhys,
  iommuMap,
  iommuPagingDomainAlloc,
  iommuUnmap,
  type IommuDomain,
} from "../../src/kernel/iommu/domain.js";
import type { IommuGroup } from "../../src/kernel/iommu/iommu.js";
import { Kernel } from "../../src/kernel/kernel.js";
import { err } from "../../src/uapi/errno.js";
import * as U from "../../src/uapi/vfio.js";
import {
  amd,
  bindVfio,
  buffer,
  CAP39,
  CAP48_NOSP,
  context,
  ECAP_IR,
  ECAP_SC,
  ECAP_SC_IR,
  getInfo,
  groupPath,
  intel,
  iovaRanges,
  joinGroup,
  mapDma,
  openRw,
  pattern,
  ramAt,
  rig,
  SECOND,
  unmapDma,
  vfioSetup,
  walkAmd,
  walkVtd,
  type Rig,
} from "./type1-support.js";

const P = 0x1000n;
const RID1 = 0x100;
const RID2 = 0x200;
const R = U.VFIO_DMA_MAP_FLAG_READ;
const W = U.VFIO_DMA_MAP_FLAG_WRITE;

/** Claim the group of `bdf` as a user would and attach a fresh paging domain to it. */
function ownDomain(r: Rig, bdf: string): { group: IommuGroup; domain: IommuDomain } {
  bindVfio(r, bdf);
  const dev = r.kernel.debug.device(bdf);
  assert.ok(dev);
  const group = r.kernel.iommu.groupOf(dev);
  assert.ok(group);
  assert.equal(r.kernel.iommu.claimDmaOwner(group, {}), 0);
  const domain = iommuPagingDomainAlloc(group.ops);
  assert.ok(typeof domain !== "number");
  assert.equal(iommuAttachGroup(domain, group), 0);
  return { group, domain };
}

describe("VT-d context entries through a group's life", () => {
  test("default domain at boot, blocked while owned, the VFIO domain after SET_IOMMU, default again after", () => {
    const r = rig([intel()], 2);
    const boot = context(r, "dmar0", RID1);
    assert.ok(boot && boot !== "passthrough", "DMA-FQ default domain: a table");
    assert.equal(boot.levels, 3, "SAGAW offers only 39 bits");
    assert.equal(walkVtd(r, "dmar0", RID1, 0n), null, "the kernel's DMA API maps nothing here");
    bindVfio(r, r.eps[0] as string);
    assert.deepEqual(context(r, "dmar0", RID1), boot, "binding vfio-pci changes nothing yet");
    const c = openRw(r.sys, "/dev/vfio/vfio");
    const g = joinGroup(r, c, r.eps[0] as string);
    assert.equal(context(r, "dmar0", RID1), null, "the blocking domain while VFIO owns the group");
    assert.equal(r.sys.ioctl(c, U.VFIO_SET_IOMMU, BigInt(U.VFIO_TYPE1v2_IOMMU)), 0);
    const vfio = context(r, "dmar0", RID1);
    assert.ok(vfio && vfio !== "passthrough");
    assert.notEqual(vfio.root, boot.root);
    assert.equal(r.sys.ioctl(g, U.VFIO_GROUP_UNSET_CONTAINER, 0n), 0);
    const after = context(r, "dmar0", RID1);
    assert.ok(after && after !== "passthrough");
    assert.equal(after.root, boot.root, "the default domain's table again");
  });

  test("iommu=pt: identity default domains are pass-through contexts", () => {
    const r = rig([intel()], 1, "iommu=pt");
    assert.equal(context(r, "dmar0", RID1), "passthrough");
  });

  test("unmapping invalidates the domain's IOTLB entries", () => {
    const r = rig([intel()], 1);
    const vm = vfioSetup(r);
    const t = context(r, "dmar0", RID1);
    assert.ok(t && t !== "passthrough");
    const b = buffer(r.sys, 0x10000);
    assert.equal(mapDma(r.sys, vm.container, { vaddr: b, iova: 0x100000n }), 0);
    const flushed: [string, number][] = [];
    const hw = r.host.machine.iommu;
    const orig = hw.flushIotlb.bind(hw);
    hw.flushIotlb = (unit, did) => {
      flushed.push([unit, did]);
      orig(unit, did);
    };
    assert.equal(unmapDma(r.sys, vm.container, { iova: 0x100000n, size: P }).ret, 0);
    assert.deepEqual(flushed, [["dmar0", t.domainId]]);
  });
});

describe("VT-d leaves written by MAP_DMA", () => {
  test("permissions follow the flags; SNP with Snoop Control; the frame holds the user's bytes", () => {
    const r = rig([intel()], 1);
    const vm = vfioSetup(r);
    const b = buffer(r.sys, 0x10000);
    const c = vm.container;
    assert.equal(mapDma(r.sys, c, { vaddr: b, iova: 0x100000n, size: 4n * P }), 0);
    assert.equal(mapDma(r.sys, c, { flags: R, vaddr: b + 4n * P, iova: 0x200000n }), 0);
    assert.equal(mapDma(r.sys, c, { flags: W, vaddr: b + 5n * P, iova: 0x300000n }), 0);
    for (let i = 0n; i < 4n; i++) {
      const leaf = walkVtd(r, "dmar0", RID1, 0x100000n + i * P + 0x10n);
      assert.ok(leaf);
      assert.deepEqual([leaf.level, leaf.read, leaf.write, leaf.coherent], [1, true, true, true]);
      const bytes = pattern(r.sys, b + i * P + 0x10n, Number(i));
      assert.deepEqual(ramAt(r, leaf.pa, bytes.length), bytes);
    }
    const ro = walkVtd(r, "dmar0", RID1, 0x200000n);
    assert.deepEqual([ro?.read, ro?.write], [true, false]);
    const wo = walkVtd(r, "dmar0", RID1, 0x300000n);
    assert.deepEqual([wo?.read, wo?.write], [false, true]);
    assert.equal(r.sys.ioctl(c, U.VFIO_CHECK_EXTENSION, BigInt(U.VFIO_DMA_CC_IOMMU)), 1);
    assert.equal(unmapDma(r.sys, c, { iova: 0x100000n, size: 4n * P }).ret, 0);
    assert.equal(walkVtd(r, "dmar0", RID1, 0x100000n), null);
  });

  test("without Snoop Control: no SNP, and the container is not DMA_CC", () => {
    const r = rig([intel(CAP39, ECAP_IR)], 1);
    const vm = vfioSetup(r);
    const b = buffer(r.sys, 0x10000);
    assert.equal(mapDma(r.sys, vm.container, { vaddr: b, iova: 0x100000n }), 0);
    assert.equal(walkVtd(r, "dmar0", RID1, 0x100000n)?.coherent, false);
    assert.equal(r.sys.ioctl(vm.container, U.VFIO_CHECK_EXTENSION, BigInt(U.VFIO_DMA_CC_IOMMU)), 0);
  });
});

describe("VT-d paging domains", () => {
  test("the width and page sizes are the unit's once attached", () => {
    const r = rig([intel()], 1);
    bindVfio(r, r.eps[0] as string);
    const dev = r.kernel.debug.device(r.eps[0] as string);
    const group = r.kernel.iommu.groupOf(dev as NonNullable<typeof dev>) as IommuGroup;
    assert.equal(r.kernel.iommu.claimDmaOwner(group, {}), 0);
    const d = iommuPagingDomainAlloc(group.ops) as IommuDomain;
    // md_domain_init() with DEFAULT_DOMAIN_ADDRESS_WIDTH (57), ops->pgsize_bitmap (4K).
    assert.equal(d.geometry.apertureEnd, (1n << 57n) - 1n);
    assert.equal(d.pgsizeBitmap, 0x1000n);
    assert.equal(iommuAttachGroup(d, group), 0);
    assert.equal(d.geometry.apertureEnd, (1n << 39n) - 1n);
    assert.equal(d.pgsizeBitmap, 0x40201000n);
  });

  test("2 MiB and 1 GiB superpages where both addresses and the length allow", () => {
    const r = rig([intel()], 1);
    const { domain } = ownDomain(r, r.eps[0] as string);
    const RW = IOMMU_READ | IOMMU_WRITE;
    assert.equal(iommuMap(domain, 0x40000000n, 0x20000000n, 2n << 20n, RW), 0);
    const two = walkVtd(r, "dmar0", RID1, 0x40001234n);
    assert.deepEqual([two?.level, two?.pageSize, two?.pa], [2, 2n << 20n, 0x20001234]);
    assert.equal(iommuIovaToPhys(domain, 0x401ff000n), 0x201ff000n);
    assert.equal(iommuMap(domain, 0x80000000n, 0n, 1n << 30n, RW), 0);
    assert.deepEqual(walkVtd(r, "dmar0", RID1, 0x80000000n + 0x3000n)?.level, 3);
    // A misaligned physical address forces 4 KiB leaves.
    assert.equal(iommuMap(domain, 0x10000000n, 0x20001000n, 2n << 20n, RW), 0);
    assert.equal(walkVtd(r, "dmar0", RID1, 0x10000000n)?.level, 1);
    // Unmapping 4 KiB at a superpage unmaps all of it (intel_iommu_unmap).
    assert.equal(iommuUnmap(domain, 0x40000000n, P), 2n << 20n);
    assert.equal(walkVtd(r, "dmar0", RID1, 0x40000000n), null);
  });

  test("a superpage replaces the small-page table under it", () => {
    const r = rig([intel()], 1);
    const { domain } = ownDomain(r, r.eps[0] as string);
    const RW = IOMMU_READ | IOMMU_WRITE;
    assert.equal(iommuMap(domain, 0x400000n, 0x30000000n, P, RW), 0);
    assert.equal(walkVtd(r, "dmar0", RID1, 0x400000n)?.level, 1);
    assert.equal(iommuMap(domain, 0x400000n, 0x30200000n, 2n << 20n, RW), 0);
    const leaf = walkVtd(r, "dmar0", RID1, 0x400000n);
    assert.deepEqual([leaf?.level, leaf?.pa], [2, 0x30200000]);
  });

  test("coherency can be enforced only before the first mapping, and only with ECAP.SC", () => {
    const r = rig([intel(CAP39, ECAP_IR, "dmar1", SECOND), intel()], 2);
    const { group, domain: a } = ownDomain(r, r.eps[0] as string);
    assert.equal(a.ops.enforceCacheCoherency?.(a), true);
    assert.equal(iommuMap(a, 0x100000n, 0x30000000n, P, IOMMU_READ), 0);
    assert.equal(walkVtd(r, "dmar0", RID1, 0x100000n)?.coherent, true);
    const late = iommuPagingDomainAlloc(group.ops) as IommuDomain;
    assert.equal(iommuMap(late, 0x100000n, 0x30000000n, P, IOMMU_READ), 0);
    assert.equal(late.ops.enforceCacheCoherency?.(late), false, "it already has mappings");
    const b = ownDomain(r, r.eps[1] as string).domain;
    assert.equal(b.ops.enforceCacheCoherency?.(b), false, "dmar1 has no Snoop Control");
  });
});

describe("AMD-Vi v1 tables", () => {
  const RW = IOMMU_READ | IOMMU_WRITE;

  test("4 KiB leaves carry FC and the permissions; the device table entry names a 3-level table", () => {
    const r = rig([amd()], 1);
    const vm = vfioSetup(r);
    const t = context(r, "ivhd0", RID1);
    assert.ok(t && t !== "passthrough");
    assert.equal(t.levels, 3);
    const b = buffer(r.sys, 0x10000);
    assert.equal(mapDma(r.sys, vm.container, { flags: R, vaddr: b, iova: 0x100000n }), 0);
    const leaf = walkAmd(r, "ivhd0", RID1, 0x100000n);
    assert.deepEqual(
      [leaf?.level, leaf?.read, leaf?.write, leaf?.coherent],
      [1, true, false, true],
    );
    const bytes = pattern(r.sys, b, 9);
    assert.deepEqual(ramAt(r, leaf?.pa as number, bytes.length), bytes);
    assert.equal(r.sys.ioctl(vm.container, U.VFIO_CHECK_EXTENSION, BigInt(U.VFIO_DMA_CC_IOMMU)), 1);
  });

  test("sizes between levels are replicated entries with next level 7", () => {
    const r = rig([amd()], 1);
    const { domain } = ownDomain(r, r.eps[0] as string);
    assert.equal(iommuMap(domain, 0x200000n, 0x30010000n, 0x10000n, RW), 0);
    for (const off of [0n, 0x3000n, 0xf000n]) {
      const leaf = walkAmd(r, "ivhd0", RID1, 0x200000n + off);
      assert.deepEqual(
        [leaf?.level, leaf?.pageSize, leaf?.pa],
        [1, 0x10000n, 0x30010000 + Number(off)],
      );
    }
    assert.equal(iommuMap(domain, 0x400000n, 0x30200000n, 2n << 20n, RW), 0);
    const two = walkAmd(r, "ivhd0", RID1, 0x4ff000n);
    assert.deepEqual([two?.level, two?.pageSize], [2, 2n << 20n]);
    // Unmapping one 4 KiB page of the 64 KiB page takes all of it.
    assert.equal(iommuUnmap(domain, 0x201000n, P), 0x10000n);
    assert.equal(walkAmd(r, "ivhd0", RID1, 0x200000n), null);
  });

  test("a higher address grows the table a level and the device table entry follows", () => {
    const r = rig([amd()], 1);
    const { domain } = ownDomain(r, r.eps[0] as string);
    assert.equal(iommuMap(domain, 0x100000n, 0x30000000n, P, RW), 0);
    assert.equal(iommuMap(domain, 1n << 40n, 0x30001000n, P, RW), 0);
    const t = context(r, "ivhd0", RID1);
    assert.ok(t && t !== "passthrough");
    assert.equal(t.levels, 4);
    assert.equal(walkAmd(r, "ivhd0", RID1, 0x100000n)?.pa, 0x30000000);
    assert.equal(walkAmd(r, "ivhd0", RID1, 1n << 40n)?.pa, 0x30001000);
  });
});

describe("type1 domains: sharing, replay, coherency", () => {
  test("groups on one unit share a domain", () => {
    const r = rig([intel()], 2);
    const vm = vfioSetup(r);
    assert.equal(vm.setIommu, 0);
    assert.deepEqual(context(r, "dmar0", RID1), context(r, "dmar0", RID2));
  });

  test("one domain spans two units with the same coherency: one table, a domain ID per unit", () => {
    const r = rig([intel(CAP39, ECAP_SC_IR, "dmar1", SECOND), intel()], 2);
    assert.equal(vfioSetup(r).setIommu, 0);
    const a = context(r, "dmar0", RID1);
    const b = context(r, "dmar1", RID2);
    assert.ok(a && b && a !== "passthrough" && b !== "passthrough");
    assert.equal(a.root, b.root);
  });

  test("a group that cannot share gets a new domain with every mapping replayed", () => {
    const r = rig([intel(CAP39, ECAP_IR, "dmar1", SECOND), intel()], 2);
    for (const e of r.eps) bindVfio(r, e);
    const c = openRw(r.sys, "/dev/vfio/vfio");
    joinGroup(r, c, r.eps[0] as string);
    assert.equal(r.sys.ioctl(c, U.VFIO_SET_IOMMU, BigInt(U.VFIO_TYPE1v2_IOMMU)), 0);
    assert.equal(r.sys.ioctl(c, U.VFIO_CHECK_EXTENSION, BigInt(U.VFIO_DMA_CC_IOMMU)), 1);
    const b = buffer(r.sys, 0x10000);
    assert.equal(mapDma(r.sys, c, { vaddr: b, iova: 0x100000n, size: 4n * P }), 0);
    joinGroup(r, c, r.eps[1] as string);
    const a = context(r, "dmar0", RID1);
    const n = context(r, "dmar1", RID2);
    assert.ok(a && n && a !== "passthrough" && n !== "passthrough");
    assert.notEqual(a.root, n.root);
    for (let i = 0n; i < 4n; i++) {
      const x = walkVtd(r, "dmar0", RID1, 0x100000n + i * P);
      const y = walkVtd(r, "dmar1", RID2, 0x100000n + i * P);
      assert.equal(y?.pa, x?.pa, "replayed to the same frames");
      assert.deepEqual([x?.coherent, y?.coherent], [true, false]);
    }
    assert.equal(r.sys.ioctl(c, U.VFIO_CHECK_EXTENSION, BigInt(U.VFIO_DMA_CC_IOMMU)), 0);
    // New mappings go to both domains, unmapping removes them from both.
    assert.equal(mapDma(r.sys, c, { vaddr: b + 4n * P, iova: 0x200000n }), 0);
    assert.ok(walkVtd(r, "dmar1", RID2, 0x200000n));
    assert.equal(unmapDma(r.sys, c, { flags: U.VFIO_DMA_UNMAP_FLAG_ALL }).size, 5n * P);
    assert.equal(walkVtd(r, "dmar0", RID1, 0x100000n), null);
    assert.equal(walkVtd(r, "dmar1", RID2, 0x100000n), null);
    assert.equal(r.sys.task.mm.lockedVm, 0);
  });
});

describe("type1 attach: interrupt isolation, nesting, apertures, reserved regions", () => {
  test("without interrupt remapping SET_IOMMU is EPERM unless allow_unsafe_interrupts", () => {
    const cases: [string, Parameters<typeof rig>[0], string, number][] = [
      ["ECAP.IR clear", [intel(CAP39, ECAP_SC)], "", err("EPERM")],
      [
        "ECAP.IR clear, allowed",
        [intel(CAP39, ECAP_SC)],
        "vfio_iommu_type1.allow_unsafe_interrupts=1",
        0,
      ],
      [
        "ECAP.IR clear, bare bool",
        [intel(CAP39, ECAP_SC)],
        "vfio_iommu_type1.allow-unsafe-interrupts",
        0,
      ],
      [
        "ECAP.IR clear, =N",
        [intel(CAP39, ECAP_SC)],
        "vfio_iommu_type1.allow_unsafe_interrupts=N",
        err("EPERM"),
      ],
      ["intremap=off", [intel()], "intremap=off", err("EPERM")],
      ["AMD-Vi", [amd()], "", 0],
      ["AMD-Vi, nointremap", [amd()], "nointremap", err("EPERM")],
    ];
    for (const [name, units, cmdline, want] of cases) {
      const r = rig(units, 1, cmdline);
      const vm = vfioSetup(r);
      assert.equal(vm.setIommu, want, name);
      if (want) {
        const unit = units[0]?.name as string;
        assert.equal(context(r, unit, RID1), null, `${name}: back on the blocking domain`);
      }
    }
  });

  test("TYPE1_NESTING is reported but no 6.12 x86 driver can nest: EINVAL", () => {
    const r = rig([intel()], 1);
    const vm = vfioSetup(r, r.eps, U.VFIO_TYPE1_NESTING_IOMMU);
    assert.equal(
      r.sys.ioctl(vm.container, U.VFIO_CHECK_EXTENSION, BigInt(U.VFIO_TYPE1_NESTING_IOMMU)),
      1,
    );
    assert.equal(vm.setIommu, err("EINVAL"));
  });

  test("a narrower aperture conflicting with a mapping is EINVAL; the range widens again on detach", () => {
    const r = rig([intel(CAP39, ECAP_IR, "dmar1", SECOND), intel(CAP48_NOSP, ECAP_SC_IR)], 2);
    for (const e of r.eps) bindVfio(r, e);
    const c = openRw(r.sys, "/dev/vfio/vfio");
    joinGroup(r, c, r.eps[0] as string);
    assert.equal(r.sys.ioctl(c, U.VFIO_SET_IOMMU, BigInt(U.VFIO_TYPE1v2_IOMMU)), 0);
    const b = buffer(r.sys, 0x10000);
    assert.equal(mapDma(r.sys, c, { vaddr: b, iova: 1n << 40n }), 0);
    const g2 = openRw(r.sys, groupPath(r, r.eps[1] as string));
    const s32 = (v: number) => {
      const a = buffer(r.sys, 0x1000);
      r.sys.poke(a, new Uint8Array(new Int32Array([v]).buffer));
      return a;
    };
    const before = context(r, "dmar1", RID2);
    assert.equal(r.sys.ioctl(g2, U.VFIO_GROUP_SET_CONTAINER, s32(c)), err("EINVAL"));
    // The failed attach gave DMA ownership back: the default domain again.
    assert.deepEqual(context(r, "dmar1", RID2), before);
    assert.equal(unmapDma(r.sys, c, { iova: 1n << 40n, size: P }).ret, 0);
    assert.equal(r.sys.ioctl(g2, U.VFIO_GROUP_SET_CONTAINER, s32(c)), 0);
    assert.deepEqual(iovaRanges(getInfo(r.sys, c)), [
      [0n, 0xfedfffffn],
      [0xfef00000n, (1n << 39n) - 1n],
    ]);
    assert.equal(r.sys.ioctl(g2, U.VFIO_GROUP_UNSET_CONTAINER, 0n), 0);
    assert.deepEqual(iovaRanges(getInfo(r.sys, c)), [
      [0n, 0xfedfffffn],
      [0xfef00000n, (1n << 48n) - 1n],
    ]);
  });

  test("a group whose reserved regions cover a mapping cannot attach", () => {
    // A 48-bit VT-d group maps in what AMD-Vi reserves for HyperTransport.
    const r = rig(
      [{ kind: "amd-vi", name: "ivhd0", devices: SECOND }, intel(CAP48_NOSP, ECAP_SC_IR)],
      2,
    );
    for (const e of r.eps) bindVfio(r, e);
    const c = openRw(r.sys, "/dev/vfio/vfio");
    joinGroup(r, c, r.eps[0] as string);
    assert.equal(r.sys.ioctl(c, U.VFIO_SET_IOMMU, BigInt(U.VFIO_TYPE1v2_IOMMU)), 0);
    const b = buffer(r.sys, 0x10000);
    assert.equal(mapDma(r.sys, c, { vaddr: b, iova: 0xfd00000000n }), 0);
    const g2 = openRw(r.sys, groupPath(r, r.eps[1] as string));
    const fd = buffer(r.sys, 0x1000);
    r.sys.poke(fd, new Uint8Array(new Int32Array([c]).buffer));
    assert.equal(r.sys.ioctl(g2, U.VFIO_GROUP_SET_CONTAINER, fd), err("EINVAL"));
    assert.equal(unmapDma(r.sys, c, { flags: U.VFIO_DMA_UNMAP_FLAG_ALL }).ret, 0);
    assert.equal(r.sys.ioctl(g2, U.VFIO_GROUP_SET_CONTAINER, fd), 0);
    // The narrowest aperture (48 bits) minus the MSI window and the HyperTransport hole.
    assert.deepEqual(iovaRanges(getInfo(r.sys, c)), [
      [0n, 0xfedfffffn],
      [0xfef00000n, 0xfcffffffffn],
      [0x10000000000n, (1n << 48n) - 1n],
    ]);
  });
});

describe("reserved regions", () => {
  test("an ISA bridge's group: the floppy window (relaxable, ignored by type1) and one merged MSI window", () => {
    // intel_iommu_get_resv_regions() per device, merged by iommu_insert_resv_region().
    const spec = hostSpecSchema.parse({
      name: "lpc",
      iommu: [intel()],
      functions: [
        { addr: "0000:00:1f.0", id: "8086:a308", class: "060100" },
        { addr: "0000:00:1f.3", id: "8086:a348", class: "040300" },
      ],
    });
    const host = buildHost(spec, "lpc");
    const kernel = Kernel.boot(host.machine.hardware(), "");
    const dev = kernel.debug.device("0000:00:1f.0");
    assert.ok(dev);
    const group = kernel.iommu.groupOf(dev);
    assert.ok(group);
    assert.equal(group.devices.length, 2);
    assert.deepEqual(iommuGetGroupResvRegions(group), [
      { start: 0n, length: 1n << 24n, prot: 3, type: IOMMU_RESV_DIRECT_RELAXABLE },
      { start: 0xfee00000n, length: 0x100000n, prot: 0, type: IOMMU_RESV_MSI },
    ]);
    const r: Rig = { host, kernel, sys: kernel.spawn(), eps: ["0000:00:1f.0", "0000:00:1f.3"] };
    for (const e of r.eps) bindVfio(r, e);
    const c = openRw(r.sys, "/dev/vfio/vfio");
    joinGroup(r, c, r.eps[0] as string);
    assert.equal(r.sys.ioctl(c, U.VFIO_SET_IOMMU, BigInt(U.VFIO_TYPE1v2_IOMMU)), 0);
    assert.deepEqual(iovaRanges(getInfo(r.sys, c)), [
      [0n, 0xfedfffffn],
      [0xfef00000n, (1n << 39n) - 1n],
    ]);
  });
});
