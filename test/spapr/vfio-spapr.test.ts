/**
 * The sPAPR TCE VFIO backend (drivers/vfio/vfio_iommu_spapr_tce.c, Linux 6.12) on the
 * POWER9 PowerNV host: conformance cases SP-001 … SP-009.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { errnoName } from "../../src/uapi/errno.js";
import * as U from "../../src/uapi/vfio.js";
import {
  NIC,
  NIC2,
  PAGE64K,
  deviceFd,
  eehOp,
  get,
  ioctl,
  mapDma,
  mem,
  openContainer,
  power8,
  power9,
  put,
  register,
  unmapDma,
  type Power,
} from "./support.js";

const e = (r: number) => (r < 0 ? errnoName(r) : r);

function info(p: Power, c: number, argsz?: number) {
  const a = put(p.sys, U.vfio_iommu_spapr_tce_info, argsz === undefined ? {} : { argsz });
  return {
    r: ioctl(p.sys, c, U.VFIO_IOMMU_SPAPR_TCE_GET_INFO, a),
    out: get(p.sys, U.vfio_iommu_spapr_tce_info, a),
  };
}

function create(
  p: Power,
  c: number,
  page_shift: number,
  window_size: bigint,
  levels = 1,
  extra = {},
) {
  const a = put(p.sys, U.vfio_iommu_spapr_tce_create, {
    page_shift,
    window_size,
    levels,
    ...extra,
  });
  return {
    r: ioctl(p.sys, c, U.VFIO_IOMMU_SPAPR_TCE_CREATE, a),
    out: get(p.sys, U.vfio_iommu_spapr_tce_create, a),
  };
}

function remove(p: Power, c: number, start_addr: bigint, extra = {}) {
  return ioctl(
    p.sys,
    c,
    U.VFIO_IOMMU_SPAPR_TCE_REMOVE,
    put(p.sys, U.vfio_iommu_spapr_tce_remove, { start_addr, ...extra }),
  );
}

test("SP-001: a POWER kernel offers the sPAPR backends and EEH, not type1", async () => {
  const p = await power9();
  const c = p.sys.open("/dev/vfio/vfio", 2);
  assert.equal(ioctl(p.sys, c, U.VFIO_CHECK_EXTENSION, U.VFIO_SPAPR_TCE_IOMMU), 1);
  assert.equal(ioctl(p.sys, c, U.VFIO_CHECK_EXTENSION, U.VFIO_SPAPR_TCE_v2_IOMMU), 1);
  assert.equal(ioctl(p.sys, c, U.VFIO_CHECK_EXTENSION, U.VFIO_EEH), 1);
  assert.equal(ioctl(p.sys, c, U.VFIO_CHECK_EXTENSION, U.VFIO_TYPE1v2_IOMMU), 0);
  // powerpc numbers: the generic encoding of the same request is not a request there.
  assert.equal(e(p.sys.ioctl(c, U.VFIO_CHECK_EXTENSION, BigInt(U.VFIO_SPAPR_TCE_IOMMU))), "EINVAL");
  const { container } = openContainer(p, NIC);
  assert.equal(e(ioctl(p.sys, container, U.VFIO_SET_IOMMU, U.VFIO_TYPE1v2_IOMMU)), "ENODEV");
  assert.equal(ioctl(p.sys, container, U.VFIO_SET_IOMMU, U.VFIO_SPAPR_TCE_v2_IOMMU), 0);
  assert.equal(ioctl(p.sys, container, U.VFIO_CHECK_EXTENSION, U.VFIO_DMA_CC_IOMMU), 0);
});

test("SP-002: v1 needs ENABLE, which charges the whole 32-bit window, once, from one mm", async () => {
  const p = await power9();
  const { container } = openContainer(p, NIC, U.VFIO_SPAPR_TCE_IOMMU);
  const buf = mem(p.sys, 2 * PAGE64K);
  assert.equal(e(mapDma(p, container, buf, 0n, 0x10000n)), "EPERM");
  assert.equal(e(unmapDma(p, container, 0n, 0x10000n)), "EPERM");
  const before = p.sys.task.mm.lockedVm;
  assert.equal(ioctl(p.sys, container, U.VFIO_IOMMU_ENABLE), 0);
  // 2 GiB window / 64 KiB pages, whatever is mapped.
  assert.equal(p.sys.task.mm.lockedVm - before, 0x80000000 / PAGE64K);
  assert.equal(e(ioctl(p.sys, container, U.VFIO_IOMMU_ENABLE)), "EBUSY");
  const other = p.k.spawn();
  assert.equal(e(other.ioctl(container, 0, 0n)), "EBADF"); // not its fd table
  assert.equal(ioctl(p.sys, container, U.VFIO_IOMMU_DISABLE), 0);
  assert.equal(p.sys.task.mm.lockedVm, before);
  assert.equal(ioctl(p.sys, container, U.VFIO_IOMMU_DISABLE), 0);
  assert.equal(e(mapDma(p, container, buf, 0n, 0x10000n)), "EPERM");
});

test("SP-002: ENABLE over RLIMIT_MEMLOCK without CAP_IPC_LOCK is ENOMEM", async () => {
  const p = await power9();
  const { container } = openContainer(p, NIC, U.VFIO_SPAPR_TCE_IOMMU);
  // The caller loses CAP_IPC_LOCK and gets a 64 MiB limit: 2 GiB of window does not fit.
  p.sys.task.caps.delete("CAP_IPC_LOCK");
  p.sys.task.rlimitMemlock = 64n << 20n;
  assert.equal(e(ioctl(p.sys, container, U.VFIO_IOMMU_ENABLE)), "ENOMEM");
  p.sys.task.rlimitMemlock = 4n << 30n;
  assert.equal(ioctl(p.sys, container, U.VFIO_IOMMU_ENABLE), 0);
});

test("SP-003: v1 takes one group; v2 several but each once", async () => {
  const p = await power9();
  const a = openContainer(p, NIC, U.VFIO_SPAPR_TCE_IOMMU);
  assert.equal(e(openContainer(p, NIC2, undefined, a.container).container), "EBUSY");
  const q = await power9();
  const c = openContainer(q, NIC, U.VFIO_SPAPR_TCE_v2_IOMMU);
  assert.equal(openContainer(q, NIC2, undefined, c.container).container, 0);
  // Both PEs now follow the container's windows: a window created once lands in both.
  assert.equal(register(q, c.container, mem(q.sys, PAGE64K), BigInt(PAGE64K)), 0);
  assert.equal(create(q, c.container, 16, 1n << 30n).r, 0);
  const phb0 = q.machine.phbs.get(0);
  const phb1 = q.machine.phbs.get(1);
  assert.equal(phb0?.tvt.size, 2); // the default window and the new one
  assert.equal(phb1?.tvt.size, 2);
});

test("SP-004: GET_INFO: ENXIO without a group, argsz rules, DDW only for v2", async () => {
  const p = await power9();
  const { container } = openContainer(p, NIC, U.VFIO_SPAPR_TCE_IOMMU);
  assert.equal(e(info(p, container, 15).r), "EINVAL");
  const small = info(p, container, 16);
  assert.equal(small.r, 0);
  assert.equal(small.out.dma32_window_start, 0);
  assert.equal(small.out.dma32_window_size, 0x80000000);
  const v1 = info(p, container);
  assert.equal(v1.out.flags, 0);
  assert.equal(v1.out.pgsizes, 0n);
  const q = await power9();
  const v2c = openContainer(q, NIC, U.VFIO_SPAPR_TCE_v2_IOMMU);
  const v2 = info(q, v2c.container);
  assert.equal(v2.out.flags, U.VFIO_IOMMU_SPAPR_INFO_DDW);
  // PHB4 as skiboot advertises it: 4K, 64K, 2M, 1G.
  assert.equal(v2.out.pgsizes, (1n << 12n) | (1n << 16n) | (1n << 21n) | (1n << 30n));
  assert.equal(v2.out.max_dynamic_windows_supported, 2);
  assert.equal(v2.out.levels, 5);
  // argsz 16: the ddw block is not copied out.
  const a = put(q.sys, U.vfio_iommu_spapr_tce_info, { argsz: 16, pgsizes: 7n });
  assert.equal(ioctl(q.sys, v2c.container, U.VFIO_IOMMU_SPAPR_TCE_GET_INFO, a), 0);
  assert.equal(get(q.sys, U.vfio_iommu_spapr_tce_info, a).pgsizes, 7n);
  // POWER8 without the DT property: the kernel's default adds 16M and 256M.
  const p8 = power8();
  const c8 = openContainer(p8, NIC, U.VFIO_SPAPR_TCE_v2_IOMMU);
  assert.equal(
    info(p8, c8.container).out.pgsizes,
    (1n << 12n) | (1n << 16n) | (1n << 24n) | (1n << 28n),
  );
  const none = p8.sys.open("/dev/vfio/vfio", 2);
  assert.equal(
    e(
      ioctl(
        p8.sys,
        none,
        U.VFIO_IOMMU_SPAPR_TCE_GET_INFO,
        put(p8.sys, U.vfio_iommu_spapr_tce_info, {}),
      ),
    ),
    "EINVAL",
  );
});

test("SP-005: MAP/UNMAP validation; a misaligned IOVA answers 1, a C truth value", async () => {
  const p = await power9();
  const { container } = openContainer(p, NIC, U.VFIO_SPAPR_TCE_IOMMU);
  assert.equal(ioctl(p.sys, container, U.VFIO_IOMMU_ENABLE), 0);
  const buf = mem(p.sys, 4 * PAGE64K);
  const S = U.vfio_iommu_type1_dma_map;
  assert.equal(
    e(
      ioctl(
        p.sys,
        container,
        U.VFIO_IOMMU_MAP_DMA,
        put(p.sys, S, { argsz: 31, flags: 3, vaddr: buf, iova: 0n, size: 4096n }),
      ),
    ),
    "EINVAL",
  );
  assert.equal(e(mapDma(p, container, buf, 0n, 4096n, 4)), "EINVAL");
  assert.equal(e(mapDma(p, container, buf, 0n, 4096n, 0)), "EINVAL");
  assert.equal(e(mapDma(p, container, buf, 0x80000000n, 4096n)), "ENXIO");
  assert.equal(e(mapDma(p, container, buf, 0n, 100n)), "EINVAL");
  assert.equal(e(mapDma(p, container, buf + 8n, 0n, 4096n)), "EINVAL");
  assert.equal(mapDma(p, container, buf, 0x10n, 4096n), 1, "iommu_tce_put_param_check() yields 1");
  assert.equal(mapDma(p, container, buf, 0x1000n, 0x2000n, 1), 0);
  assert.equal(
    mapDma(p, container, buf, 0x1000n, 0x1000n, 3),
    0,
    "an existing TCE is replaced, no EBUSY",
  );
  assert.equal(e(unmapDma(p, container, 0n, 4096n, 1)), "EINVAL");
  assert.equal(e(unmapDma(p, container, 0x80000000n, 4096n)), "ENXIO");
  assert.equal(e(unmapDma(p, container, 0n, 100n)), "EINVAL");
  assert.equal(unmapDma(p, container, 0x1000n, 0x2000n), 0);
});

test("SP-005: the TCE direction follows the flags: the device may read, write or both", async () => {
  const p = await power9();
  const { container, group } = openContainer(p, NIC, U.VFIO_SPAPR_TCE_IOMMU);
  assert.equal(ioctl(p.sys, container, U.VFIO_IOMMU_ENABLE), 0);
  const buf = mem(p.sys, PAGE64K);
  assert.equal(mapDma(p, container, buf, 0n, 4096n, 1), 0); // READ: to the device
  assert.ok(deviceFd(p, group) >= 0);
  const phb = p.machine.phbs.get(0);
  const pe = p.k.power.pe(NIC)?.pe as number;
  const rid = 0x100;
  assert.equal(phb?.dma(rid, 0x10n, false).frozen, false);
  assert.equal(
    phb?.dma(rid, 0x10n, true).frozen,
    true,
    "a write against a read-only TCE freezes the PE",
  );
  assert.ok(phb?.log.some((l) => l.startsWith(`PE#${pe} frozen`)));
});

test("SP-006: v2 preregistration", async () => {
  const p = await power9();
  const { container } = openContainer(p, NIC, U.VFIO_SPAPR_TCE_v2_IOMMU);
  const buf = mem(p.sys, 4 * PAGE64K);
  assert.equal(
    e(register(p, container, buf, BigInt(PAGE64K), U.VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY)),
    "EPERM",
    "no mm bound yet",
  );
  assert.equal(e(register(p, container, buf + 4096n, BigInt(PAGE64K))), "EINVAL");
  assert.equal(e(register(p, container, buf, 4096n)), "EINVAL", "sizes in 64 KiB host pages");
  const S = U.vfio_iommu_spapr_register_memory;
  assert.equal(
    e(
      ioctl(
        p.sys,
        container,
        U.VFIO_IOMMU_SPAPR_REGISTER_MEMORY,
        put(p.sys, S, { flags: 1, vaddr: buf, size: BigInt(PAGE64K) }),
      ),
    ),
    "EINVAL",
  );
  const before = p.sys.task.mm.lockedVm;
  assert.equal(register(p, container, buf, 2n * BigInt(PAGE64K)), 0);
  assert.equal(p.sys.task.mm.lockedVm - before, 2);
  assert.equal(e(register(p, container, buf, 2n * BigInt(PAGE64K))), "EBUSY");
  assert.equal(
    e(register(p, container, buf + BigInt(PAGE64K), 2n * BigInt(PAGE64K))),
    "EINVAL",
    "overlap",
  );
  assert.equal(
    e(
      register(
        p,
        container,
        buf + 3n * BigInt(PAGE64K),
        BigInt(PAGE64K),
        U.VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY,
      ),
    ),
    "ENOENT",
  );
  // MAP outside preregistered memory is EINVAL; inside works.
  assert.equal(e(mapDma(p, container, buf + 3n * BigInt(PAGE64K), 0n, 4096n)), "EINVAL");
  assert.equal(mapDma(p, container, buf, 0n, 4096n), 0);
  const mapped = p.sys.task.mm.lockedVm; // + the default window's table, made by the MAP
  // UNREGISTER while mapped: 0 (mm_iommu_put's EBUSY is dropped), the region stays pinned.
  assert.equal(
    register(p, container, buf, 2n * BigInt(PAGE64K), U.VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY),
    0,
  );
  assert.equal(p.sys.task.mm.lockedVm, mapped, "still charged: the region was not released");
  assert.equal(register(p, container, buf, 2n * BigInt(PAGE64K)), 0, "re-adopted, not re-pinned");
  assert.equal(p.sys.task.mm.lockedVm, mapped);
  assert.equal(unmapDma(p, container, 0n, 4096n), 0);
});

test("SP-007: dynamic DMA windows", async () => {
  const p = await power9();
  const { container } = openContainer(p, NIC, U.VFIO_SPAPR_TCE_v2_IOMMU);
  assert.equal(e(create(p, container, 16, 1n << 30n, 1, { argsz: 39 }).r), "EINVAL");
  assert.equal(e(create(p, container, 16, 1n << 30n, 1, { flags: 1 }).r), "EINVAL");
  assert.equal(e(create(p, container, 24, 1n << 30n).r), "EINVAL", "16M is not a PHB4 size");
  // The first CREATE materialises the pending default window in slot 0 …
  const w = create(p, container, 16, 1n << 32n);
  assert.equal(w.r, 0);
  assert.equal(w.out.start_addr, 1n << 59n, "PowerNV's second window: bus address 1 << 59");
  assert.equal(e(create(p, container, 16, 1n << 30n).r), "ENOSPC");
  assert.equal(e(remove(p, container, 0x100000000n)), "EINVAL", "between the windows");
  assert.equal(remove(p, container, 1n << 59n), 0);
  assert.equal(remove(p, container, 0n), 0);
  const again = create(p, container, 21, 1n << 30n);
  assert.equal(again.r, 0);
  assert.equal(again.out.start_addr, 0n);
  // REMOVE(0) while the default window is pending cancels it: nothing is created.
  const q = await power9();
  const c = openContainer(q, NIC, U.VFIO_SPAPR_TCE_v2_IOMMU);
  assert.equal(remove(q, c.container, 0n), 0);
  assert.equal(q.machine.phbs.get(0)?.tvt.size, 0, "ownership taken, no window yet");
  const solo = create(q, c.container, 16, 1n << 30n);
  assert.equal(solo.out.start_addr, 0n, "slot 0 is free: the new window goes at bus address 0");
  const none = q.sys.open("/dev/vfio/vfio", 2);
  assert.equal(e(create(q, none, 16, 1n << 30n).r), "EINVAL", "no backend set");
});

test("SP-008: wrong-version ioctls are ENOTTY", async () => {
  const p = await power9();
  const v1 = openContainer(p, NIC, U.VFIO_SPAPR_TCE_IOMMU).container;
  const buf = mem(p.sys, PAGE64K);
  assert.equal(e(register(p, v1, buf, BigInt(PAGE64K))), "ENOTTY");
  assert.equal(
    e(register(p, v1, buf, BigInt(PAGE64K), U.VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY)),
    "ENOTTY",
  );
  assert.equal(e(create(p, v1, 16, 1n << 30n).r), "ENOTTY");
  assert.equal(e(remove(p, v1, 0n)), "ENOTTY");
  const q = await power9();
  const v2 = openContainer(q, NIC, U.VFIO_SPAPR_TCE_v2_IOMMU).container;
  assert.equal(e(ioctl(q.sys, v2, U.VFIO_IOMMU_ENABLE)), "ENOTTY");
  assert.equal(e(ioctl(q.sys, v2, U.VFIO_IOMMU_DISABLE)), "ENOTTY");
});

test("SP-009: EEH PE operations and their argument checks", async () => {
  const p = await power9();
  const { container } = openContainer(p, NIC, U.VFIO_SPAPR_TCE_v2_IOMMU);
  assert.equal(eehOp(p, container, U.VFIO_EEH_PE_ENABLE), 0);
  assert.equal(eehOp(p, container, U.VFIO_EEH_PE_DISABLE), 0, "a no-op in eeh_pe_set_option()");
  assert.equal(eehOp(p, container, U.VFIO_EEH_PE_GET_STATE), U.VFIO_EEH_PE_STATE_NORMAL);
  assert.equal(e(eehOp(p, container, U.VFIO_EEH_PE_GET_STATE, { argsz: 11 })), "EINVAL");
  assert.equal(e(eehOp(p, container, U.VFIO_EEH_PE_GET_STATE, { flags: 1 })), "EINVAL");
  assert.equal(e(eehOp(p, container, 10)), "EINVAL");
  assert.equal(e(eehOp(p, container, U.VFIO_EEH_PE_INJECT_ERR, { argsz: 39 })), "EINVAL");
  assert.equal(e(eehOp(p, container, U.VFIO_EEH_PE_INJECT_ERR, { func: 20 })), "EINVAL");
  assert.equal(e(eehOp(p, container, U.VFIO_EEH_PE_INJECT_ERR, { type: 2 })), "ERANGE");
  // An injected DMA-write error trips on the device's next DMA write.
  assert.equal(eehOp(p, container, U.VFIO_EEH_PE_INJECT_ERR, { type: 0, func: 16 }), 0);
  const phb = p.machine.phbs.get(0);
  assert.equal(
    phb?.dma(0x100, 0x0n, false).frozen,
    true,
    "no window is mapped: the read freezes anyway",
  );
  assert.equal(eehOp(p, container, U.VFIO_EEH_PE_GET_STATE), U.VFIO_EEH_PE_STATE_STOPPED);
  assert.equal(eehOp(p, container, U.VFIO_EEH_PE_UNFREEZE_IO), 0);
  assert.equal(eehOp(p, container, U.VFIO_EEH_PE_GET_STATE), U.VFIO_EEH_PE_STATE_STOPPED_DMA);
  assert.equal(eehOp(p, container, U.VFIO_EEH_PE_UNFREEZE_DMA), 0);
  assert.equal(eehOp(p, container, U.VFIO_EEH_PE_RESET_HOT), 0);
  assert.equal(
    eehOp(p, container, U.VFIO_EEH_PE_GET_STATE),
    U.VFIO_EEH_PE_STATE_STOPPED,
    "reset freezes first",
  );
  assert.equal(eehOp(p, container, U.VFIO_EEH_PE_RESET_DEACTIVATE), 0);
  assert.equal(eehOp(p, container, U.VFIO_EEH_PE_CONFIGURE), 0);
  assert.equal(eehOp(p, container, U.VFIO_EEH_PE_GET_STATE), U.VFIO_EEH_PE_STATE_NORMAL);
});

test("SP-009: the op runs for every group: GET_STATE reports the first group that is not NORMAL", async () => {
  const p = await power9();
  const a = openContainer(p, NIC, U.VFIO_SPAPR_TCE_v2_IOMMU);
  assert.equal(openContainer(p, NIC2, undefined, a.container).container, 0);
  // Freeze only the first PHB's PE (the NIC on PHB 0).
  p.machine.phbs.get(0)?.dma(0x100, 0x7000_0000n, false);
  assert.equal(eehOp(p, a.container, U.VFIO_EEH_PE_GET_STATE), U.VFIO_EEH_PE_STATE_STOPPED);
  assert.equal(eehOp(p, a.container, U.VFIO_EEH_PE_ENABLE), 0, "ENABLE thaws a frozen PE");
  assert.equal(eehOp(p, a.container, U.VFIO_EEH_PE_GET_STATE), U.VFIO_EEH_PE_STATE_NORMAL);
});

test("taking and releasing the PE leaks no TCE table frames", async () => {
  // pnv_ioda2_take_ownership(): unset_window drops the group's reference and
  // iommu_tce_table_put() the creator's, so the default table's frames go back;
  // release_ownership (pnv_pci_ioda2_setup_default_config) allocates a new one.
  const p = await power9();
  const frames = () => p.k.debug.objects().frames;
  /** A process takes the PE through a v2 container, then exits: frames while it owned it. */
  const cycle = () => {
    const sys = p.k.spawn();
    openContainer({ ...p, sys }, NIC, U.VFIO_SPAPR_TCE_v2_IOMMU);
    const owned = frames();
    assert.ok(p.k.exit(sys.task.pid));
    return owned;
  };
  const owned = cycle();
  const released = frames();
  for (let i = 0; i < 4; i++) {
    assert.equal(cycle(), owned, `cycle ${i + 2}: frames while owned`);
    assert.equal(frames(), released, `cycle ${i + 2}: frames after release`);
  }
});
