/**
 * HV KVM's TCE path on POWER: KVM_CREATE_SPAPR_TCE_64 (SP-010), kvm-vfio's
 * GROUP_SET_SPAPR_TCE (KV-018, KV-019), the TCE hypercalls' rules and where each is
 * handled (real mode in 5.18, virtual mode, or an exit to the VMM).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { errnoName } from "../../src/uapi/errno.js";
import * as K from "../../src/uapi/kvm.js";
import {
  H_GET_TCE,
  H_PARAMETER,
  H_PUT_TCE,
  H_PUT_TCE_INDIRECT,
  H_STUFF_TCE,
  H_SUCCESS,
} from "../../src/uapi/papr.js";
import * as U from "../../src/uapi/vfio.js";
import { MAP_SHARED, O_CLOEXEC, O_RDWR, PROT_READ, PROT_WRITE } from "../../src/uapi/syscalls.js";
import {
  NIC,
  PAGE64K,
  get,
  ioctl,
  mem,
  openContainer,
  power9,
  put,
  register,
  type Power,
} from "./support.js";

const e = (r: number) => (r < 0 ? errnoName(r) : r);
const LIOBN = 0x80000000n;
const RAM = 0x400000;

interface Vm {
  vm: number;
  vcpu: number;
  ram: bigint;
}

function vm(p: Power): Vm {
  const kvm = p.sys.open("/dev/kvm", O_RDWR | O_CLOEXEC);
  const vmfd = ioctl(p.sys, kvm, K.KVM_CREATE_VM, 0);
  assert.ok(vmfd >= 0);
  const ram = mem(p.sys, RAM);
  const mr = put(p.sys, K.kvm_userspace_memory_region, {
    slot: 0,
    guest_phys_addr: 0n,
    memory_size: BigInt(RAM),
    userspace_addr: ram,
  });
  assert.equal(ioctl(p.sys, vmfd, K.KVM_SET_USER_MEMORY_REGION, mr), 0);
  const vcpu = ioctl(p.sys, vmfd, K.KVM_CREATE_VCPU, 0);
  assert.ok(vcpu >= 0);
  return { vm: vmfd, vcpu, ram };
}

function enableHcall(p: Power, vmfd: number, hcall: number, on = 1n): number {
  return ioctl(
    p.sys,
    vmfd,
    K.KVM_ENABLE_CAP,
    put(p.sys, K.kvm_enable_cap, {
      cap: K.KVM_CAP_PPC_ENABLE_HCALL,
      arg0: BigInt(hcall),
      arg1: on,
    }),
  );
}

function table(
  p: Power,
  vmfd: number,
  a: { liobn?: bigint; page_shift?: number; offset?: bigint; size?: bigint; flags?: number } = {},
): number {
  return ioctl(
    p.sys,
    vmfd,
    K.KVM_CREATE_SPAPR_TCE_64,
    put(p.sys, K.kvm_create_spapr_tce_64, {
      liobn: LIOBN,
      page_shift: 16,
      offset: 0n,
      size: 0x4000n,
      ...a,
    }),
  );
}

function kvmVfio(p: Power, vmfd: number): number {
  const cd = put(p.sys, K.kvm_create_device, { type: K.KVM_DEV_TYPE_VFIO });
  assert.equal(ioctl(p.sys, vmfd, K.KVM_CREATE_DEVICE, cd), 0);
  return get(p.sys, K.kvm_create_device, cd).fd;
}

function fileAdd(p: Power, kv: number, fd: number): number {
  const a = mem(p.sys, 4096);
  p.sys.poke(a, new Uint8Array(new Int32Array([fd]).buffer));
  return ioctl(
    p.sys,
    kv,
    K.KVM_SET_DEVICE_ATTR,
    put(p.sys, K.kvm_device_attr, {
      group: K.KVM_DEV_VFIO_FILE,
      attr: BigInt(K.KVM_DEV_VFIO_FILE_ADD),
      addr: a,
    }),
  );
}

function setSpaprTce(
  p: Power,
  kv: number,
  groupfd: number,
  tablefd: number,
  addr?: bigint,
): number {
  const a = addr ?? put(p.sys, K.kvm_vfio_spapr_tce, { groupfd, tablefd });
  return ioctl(
    p.sys,
    kv,
    K.KVM_SET_DEVICE_ATTR,
    put(p.sys, K.kvm_device_attr, {
      group: K.KVM_DEV_VFIO_FILE,
      attr: BigInt(K.KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE),
      addr: a,
    }),
  );
}

/** The guest makes one hypercall; the VMM answers any exit with `user` (default H_SUCCESS). */
function hcall(p: Power, v: Vm, nr: number, args: bigint[], user = H_SUCCESS) {
  assert.equal(p.k.power.hcall(p.sys, v.vcpu, nr, args), 0);
  let exits = 0;
  for (;;) {
    const r = ioctl(p.sys, v.vcpu, K.KVM_RUN, 0);
    const run = p.k.power.run(p.sys, v.vcpu);
    if (r === -4) {
      assert.equal(run?.exit_reason, K.KVM_EXIT_INTR);
      break;
    }
    assert.equal(r, 0);
    assert.equal(run?.exit_reason, K.KVM_EXIT_PAPR_HCALL);
    assert.equal(run?.papr_hcall.nr, BigInt(nr));
    exits++;
    (run as NonNullable<typeof run>).papr_hcall.ret = BigInt.asUintN(64, BigInt(user));
  }
  const rec = p.k.power.hcalls(p.sys, v.vcpu)?.at(-1);
  assert.ok(rec);
  return { ...rec, exits };
}

/** A v2 container with guest RAM preregistered and a 64K window at bus 0, linked to a guest table. */
function linked(p: Power, v: Vm): { container: number; group: number; table: number; kv: number } {
  const { container, group } = openContainer(p, NIC, U.VFIO_SPAPR_TCE_v2_IOMMU);
  assert.equal(register(p, container, v.ram, BigInt(RAM)), 0);
  assert.equal(
    ioctl(
      p.sys,
      container,
      U.VFIO_IOMMU_SPAPR_TCE_REMOVE,
      put(p.sys, U.vfio_iommu_spapr_tce_remove, { start_addr: 0n }),
    ),
    0,
  );
  assert.equal(
    ioctl(
      p.sys,
      container,
      U.VFIO_IOMMU_SPAPR_TCE_CREATE,
      put(p.sys, U.vfio_iommu_spapr_tce_create, {
        page_shift: 16,
        window_size: 1n << 30n,
        levels: 1,
      }),
    ),
    0,
  );
  const t = table(p, v.vm);
  assert.ok(t >= 0);
  const kv = kvmVfio(p, v.vm);
  assert.equal(fileAdd(p, kv, group), 0);
  assert.equal(setSpaprTce(p, kv, group, t), 0);
  for (const h of [H_PUT_TCE_INDIRECT, H_STUFF_TCE]) assert.equal(enableHcall(p, v.vm, h), 0);
  return { container, group, table: t, kv };
}

/** The big-endian TCE list the guest writes at gpa `at`. */
function tceList(p: Power, v: Vm, at: number, tces: bigint[]): void {
  const b = new Uint8Array(tces.length * 8);
  const dv = new DataView(b.buffer);
  tces.forEach((t, i) => dv.setBigUint64(i * 8, t, false));
  assert.ok(p.sys.poke(v.ram + BigInt(at), b));
}

test("SP-010: KVM_CREATE_SPAPR_TCE_64 argument rules, duplicate LIOBN, accounting", async () => {
  const p = await power9();
  const v = vm(p);
  assert.equal(ioctl(p.sys, v.vm, K.KVM_CHECK_EXTENSION, K.KVM_CAP_SPAPR_TCE_64), 1);
  assert.equal(ioctl(p.sys, v.vm, K.KVM_CHECK_EXTENSION, K.KVM_CAP_SPAPR_TCE_VFIO), 1);
  assert.equal(e(table(p, v.vm, { size: 0n })), "EINVAL");
  assert.equal(e(table(p, v.vm, { page_shift: 11 })), "EINVAL");
  assert.equal(e(table(p, v.vm, { page_shift: 35 })), "EINVAL");
  assert.equal(e(table(p, v.vm, { flags: 1 })), "EINVAL");
  assert.equal(
    e(table(p, v.vm, { page_shift: 34, offset: 1n << 29n, size: 1n << 29n })),
    "EINVAL",
    "offset+size past ULLONG_MAX >> shift",
  );
  const before = p.sys.task.mm.lockedVm;
  const t = table(p, v.vm);
  assert.ok(t >= 0);
  // 0x4000 TCEs × 8 bytes = two 64 KiB pages, plus one for the descriptor.
  assert.equal(p.sys.task.mm.lockedVm - before, 3);
  assert.equal(e(table(p, v.vm)), "EBUSY");
  assert.ok(table(p, v.vm, { liobn: LIOBN + 1n }) >= 0);
  // The table can be mmapped; it reads zeros until a TCE is stored, and page 2 is beyond it.
  const map = p.sys.mmap(0n, 2 * PAGE64K, PROT_READ | PROT_WRITE, MAP_SHARED, t, 0n);
  assert.ok(map > 0n);
  assert.deepEqual([...(p.sys.peek(map, 8) as Uint8Array)], [0, 0, 0, 0, 0, 0, 0, 0]);
  assert.equal(p.sys.close(t), 0);
  assert.equal(p.sys.task.mm.lockedVm - before, 3, "the other table's charge only");
});

test("KV-018: GROUP_SET_SPAPR_TCE errno matrix", async () => {
  const p = await power9();
  const v = vm(p);
  const { container, group } = openContainer(p, NIC, U.VFIO_SPAPR_TCE_v2_IOMMU);
  const t = table(p, v.vm);
  const kv = kvmVfio(p, v.vm);
  assert.equal(
    ioctl(
      p.sys,
      kv,
      K.KVM_HAS_DEVICE_ATTR,
      put(p.sys, K.kvm_device_attr, {
        group: K.KVM_DEV_VFIO_FILE,
        attr: BigInt(K.KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE),
      }),
    ),
    0,
  );
  assert.equal(e(setSpaprTce(p, kv, group, t, 0x10n)), "EFAULT");
  assert.equal(e(setSpaprTce(p, kv, 999, t)), "EBADF");
  assert.equal(e(setSpaprTce(p, kv, group, t)), "ENOENT", "not FILE_ADDed");
  assert.equal(fileAdd(p, kv, group), 0);
  assert.equal(e(setSpaprTce(p, kv, group, 999)), "EBADF");
  assert.equal(e(setSpaprTce(p, kv, group, container)), "EINVAL", "not a TCE table");
  const other = vm(p);
  const foreign = table(p, other.vm);
  assert.equal(e(setSpaprTce(p, kv, group, foreign)), "EINVAL", "another VM's table");
  // No hardware window yet (the default one is still pending): nothing compatible.
  assert.equal(e(setSpaprTce(p, kv, group, t)), "EINVAL");
  assert.equal(register(p, container, v.ram, BigInt(RAM)), 0);
  assert.equal(
    ioctl(
      p.sys,
      container,
      U.VFIO_IOMMU_SPAPR_TCE_CREATE,
      put(p.sys, U.vfio_iommu_spapr_tce_create, {
        page_shift: 16,
        window_size: 1n << 30n,
        levels: 1,
      }),
    ),
    0,
  );
  // Now the default (4K, 2 GiB at 0) and a 64K window at 1 << 59 exist.
  const big = table(p, v.vm, { liobn: 2n, page_shift: 12, size: (1n << 32n) >> 12n });
  assert.equal(e(setSpaprTce(p, kv, group, big)), "EINVAL", "larger than the hardware window");
  const shifted = table(p, v.vm, { liobn: 3n, page_shift: 16, offset: 1n, size: 16n });
  assert.equal(e(setSpaprTce(p, kv, group, shifted)), "EINVAL", "different bus offset");
  const small = table(p, v.vm, { liobn: 4n, page_shift: 12, offset: 0n, size: 16n });
  assert.equal(setSpaprTce(p, kv, group, small), 0, "4K guest pages on the 4K default window");
  const ddw = table(p, v.vm, {
    liobn: 5n,
    page_shift: 16,
    offset: (1n << 59n) >> 16n,
    size: 0x4000n,
  });
  assert.equal(setSpaprTce(p, kv, group, ddw), 0, "64K guest pages on the DDW");
  // KV-019: again is 0 (one more reference, no second link).
  assert.equal(setSpaprTce(p, kv, group, ddw), 0);
});

test("the default enabled hcalls are H_GET_TCE and H_PUT_TCE; ENABLE_CAP rules", async () => {
  const p = await power9();
  const v = vm(p);
  linked(p, v);
  assert.equal(e(enableHcall(p, v.vm, H_PUT_TCE + 1)), "EINVAL");
  assert.equal(e(enableHcall(p, v.vm, H_PUT_TCE, 2n)), "EINVAL");
  assert.equal(e(enableHcall(p, v.vm, 0x1000)), "EINVAL");
  assert.equal(enableHcall(p, v.vm, H_PUT_TCE_INDIRECT, 0n), 0);
  tceList(p, v, 0x3f0000, [0x100003n]);
  const r = hcall(p, v, H_PUT_TCE_INDIRECT, [LIOBN, 0n, 0x3f0000n, 1n]);
  assert.equal(r.mode, "user", "not enabled for the VM: straight to the VMM");
  assert.deepEqual(r.punted, []);
  const g = hcall(p, v, H_PUT_TCE, [LIOBN, 0n, 0x100003n]);
  assert.equal(g.mode, "virtual");
  assert.equal(g.ret, H_SUCCESS);
});

test("H_PUT_TCE: parameters, permissions, and the mapping reaching the PHB", async () => {
  const p = await power9();
  const v = vm(p);
  linked(p, v);
  assert.equal(
    hcall(p, v, H_PUT_TCE, [LIOBN, 0x8000n, 0x100003n]).ret,
    H_PARAMETER,
    "IOBA not page aligned",
  );
  assert.equal(
    hcall(p, v, H_PUT_TCE, [LIOBN, 1n << 30n, 0x100003n]).ret,
    H_PARAMETER,
    "outside the window",
  );
  const mis = hcall(p, v, H_PUT_TCE, [LIOBN, 0n, 0x101003n]);
  assert.equal(mis.mode, "user", "a misaligned GPA is H_TOO_HARD in virtual mode: the VMM decides");
  const outside = hcall(p, v, H_PUT_TCE, [LIOBN, 0n, 0x4000003n]);
  assert.equal(outside.mode, "user", "a GPA outside guest RAM: H_TOO_HARD");
  assert.equal(hcall(p, v, H_PUT_TCE, [LIOBN, 0x10000n, 0x100001n]).ret, H_SUCCESS, "read-only");
  const phb = p.machine.phbs.get(0);
  assert.equal(phb?.dma(0x100, 0x10004n, false).pa !== null, true, "the device may read");
  assert.equal(phb?.dma(0x100, 0x10004n, true).frozen, true, "but not write: the PE freezes");
  const got = hcall(p, v, H_GET_TCE, [LIOBN, 0x10000n]);
  assert.equal(got.ret, H_SUCCESS);
});

test("H_PUT_TCE_INDIRECT: 512 entries at most, a 4 KiB-aligned list, all validated first", async () => {
  const p = await power9();
  const v = vm(p);
  linked(p, v);
  tceList(p, v, 0x3f0000, [0x100003n, 0x110003n]);
  assert.equal(hcall(p, v, H_PUT_TCE_INDIRECT, [LIOBN, 0n, 0x3f0000n, 513n]).ret, H_PARAMETER);
  assert.equal(hcall(p, v, H_PUT_TCE_INDIRECT, [LIOBN, 0n, 0x3f0008n, 2n]).ret, H_PARAMETER);
  assert.equal(
    hcall(p, v, H_PUT_TCE_INDIRECT, [LIOBN, 0n, 0x8000000n, 2n]).mode,
    "user",
    "list outside RAM: H_TOO_HARD",
  );
  tceList(p, v, 0x3f0000, [0x100003n, 0x4000003n]);
  const bad = hcall(p, v, H_PUT_TCE_INDIRECT, [LIOBN, 0n, 0x3f0000n, 2n]);
  assert.equal(bad.mode, "user");
  assert.equal(
    p.machine.phbs.get(0)?.dma(0x100, 0n, false).frozen,
    true,
    "nothing was applied before the bad entry",
  );
});

test("H_STUFF_TCE may only clear", async () => {
  const p = await power9();
  const v = vm(p);
  linked(p, v);
  assert.equal(hcall(p, v, H_STUFF_TCE, [LIOBN, 0n, 1n, 4n]).ret, H_PARAMETER);
  assert.equal(hcall(p, v, H_STUFF_TCE, [LIOBN, 0n, 2n, 4n]).ret, H_PARAMETER);
  tceList(p, v, 0x3f0000, [0x100003n, 0x110003n]);
  assert.equal(hcall(p, v, H_PUT_TCE_INDIRECT, [LIOBN, 0n, 0x3f0000n, 2n]).ret, H_SUCCESS);
  assert.notEqual(p.machine.phbs.get(0)?.dma(0x100, 0x10000n, true).pa, null);
  assert.equal(hcall(p, v, H_STUFF_TCE, [LIOBN, 0n, 0n, 2n]).ret, H_SUCCESS);
  assert.equal(p.machine.phbs.get(0)?.dma(0x100, 0x10000n, true).frozen, true, "unmapped");
});

test("unknown LIOBNs and v1 containers always go to the VMM", async () => {
  const p = await power9();
  const v = vm(p);
  const r = hcall(p, v, H_PUT_TCE, [0x1234n, 0n, 0x100003n], H_PARAMETER);
  assert.equal(r.mode, "user");
  assert.equal(r.ret, H_PARAMETER, "the VMM's answer is what the guest sees");
  // A v1 container: its window exists once enabled and mapped, the table links, but no
  // memory is preregistered, so every mapping TCE is H_TOO_HARD.
  const q = await power9();
  const w = vm(q);
  const { container, group } = openContainer(q, NIC, U.VFIO_SPAPR_TCE_IOMMU);
  assert.equal(ioctl(q.sys, container, U.VFIO_IOMMU_ENABLE), 0);
  const b = mem(q.sys, PAGE64K);
  assert.equal(
    ioctl(
      q.sys,
      container,
      U.VFIO_IOMMU_MAP_DMA,
      put(q.sys, U.vfio_iommu_type1_dma_map, { flags: 3, vaddr: b, iova: 0n, size: 4096n }),
    ),
    0,
  );
  const t = table(q, w.vm, { page_shift: 12, size: 0x80000n });
  const kv = kvmVfio(q, w.vm);
  assert.equal(fileAdd(q, kv, group), 0);
  assert.equal(setSpaprTce(q, kv, group, t), 0);
  assert.equal(hcall(q, w, H_PUT_TCE, [LIOBN, 0x1000n, 0x100003n]).mode, "user");
  assert.equal(
    hcall(q, w, H_PUT_TCE, [LIOBN, 0x1000n, 0n]).mode,
    "virtual",
    "clearing needs no memory",
  );
});

test("real mode (5.18): handled there when it can, punted to virtual mode when it cannot", async () => {
  const p = await power9({ era: "5.18" });
  const v = vm(p);
  linked(p, v);
  tceList(p, v, 0x3f0000, [0x100003n, 0x110003n]);
  const first = hcall(p, v, H_PUT_TCE_INDIRECT, [LIOBN, 0n, 0x3f0000n, 2n]);
  assert.equal(first.mode, "virtual");
  assert.deepEqual(first.punted, ["real"], "the guest table's page did not exist yet");
  const second = hcall(p, v, H_PUT_TCE_INDIRECT, [LIOBN, 0n, 0x3f0000n, 2n]);
  assert.equal(second.mode, "real");
  assert.ok(second.ns < first.ns);
  assert.equal(
    hcall(p, v, H_PUT_TCE, [LIOBN, 0n, 0x101003n]).ret,
    H_PARAMETER,
    "misaligned GPA: H_PARAMETER in real mode",
  );
  const q = await power9();
  const w = vm(q);
  linked(q, w);
  assert.equal(
    hcall(q, w, H_PUT_TCE, [LIOBN, 0n, 0x101003n]).mode,
    "user",
    "6.12 has no real mode",
  );
});

test("kvm-vfio on POWER: devices are judged non-coherent, registration is a no-op", async () => {
  const p = await power9();
  const v = vm(p);
  const { kv } = linked(p, v);
  assert.ok(kv >= 0);
  const info = p.k.debug.vms()[0];
  assert.equal(info?.noncoherentDmaCount, 0);
  assert.equal(info?.assignedDeviceCount, 0);
});
