/**
 * The VM and its vCPUs, without devices: KVM_CREATE_VCPU over ids (0, duplicates, the last
 * of KVM_MAX_VCPU_IDS and past it); KVM_SET_USER_MEMORY_REGION's edges (create, repeat,
 * overlap, move, re-flag, delete, slot numbers and address spaces, alignment of each
 * address, flag bits, sizes past the limits); each request on the wrong kind of fd
 * (/dev/kvm, a VM, a vCPU, a kvm-vfio device, an eventfd); KVM_CHECK_EXTENSION past the
 * numbers kvm-device covers. No sysfs is written: these also run on a host's /dev/kvm.
 */
import * as K from "../../uapi/kvm.js";
import { SMALL, createDevice } from "./common.js";
import { Script, st, v64, type GeneratedCase } from "./dsl.js";

const KVM_MAX_VCPU_IDS = 4096 * 4; // arch/x86/include/asm/kvm_host.h: KVM_MAX_VCPUS * 4

function ready(name: string, note: string): Script {
  const s = new Script(name, note);
  s.open("/dev/kvm", "kvm");
  s.ioctl("$kvm", "KVM_CREATE_VM", 0, { as: "vm" });
  return s;
}

/** KVM_SET_USER_MEMORY_REGION on fd (the VM unless given). */
function region(
  s: Script,
  slot: number,
  gpa: number | bigint,
  size: number | bigint,
  o: { flags?: number; uaddr?: string | number | bigint; fd?: string; note?: string } = {},
): Script {
  const uaddr = o.uaddr ?? "$buf";
  return s.ioctl(
    o.fd ?? "$vm",
    "KVM_SET_USER_MEMORY_REGION",
    st(K.kvm_userspace_memory_region, {
      slot,
      flags: o.flags ?? 0,
      guest_phys_addr: v64(gpa),
      memory_size: v64(size),
      userspace_addr: typeof uaddr === "string" ? uaddr : v64(uaddr),
    }),
    { note: o.note },
  );
}

const K64 = 0x10000;

export function generate(): GeneratedCase[] {
  const out: GeneratedCase[] = [];
  const mk = (s: Script) => out.push({ name: s.name, family: "kvm-vm", spec: SMALL, script: s });

  {
    const s = ready("vcpu-ids", "KVM_CREATE_VCPU over ids: first, again, last, past the last");
    s.ioctl("$kvm", "KVM_GET_VCPU_MMAP_SIZE", 0);
    for (const c of [K.KVM_CAP_MAX_VCPUS, K.KVM_CAP_MAX_VCPU_ID, 9])
      s.ioctl("$vm", "KVM_CHECK_EXTENSION", c, { note: `cap ${c} before any vCPU` });
    const ids: [number | string, string][] = [
      [0, "id 0"],
      [0, "id 0 again"],
      [1, "id 1"],
      [4095, "id 4095"],
      [4096, "id 4096"],
      [KVM_MAX_VCPU_IDS - 1, "the last id"],
      [KVM_MAX_VCPU_IDS, "KVM_MAX_VCPU_IDS"],
      [KVM_MAX_VCPU_IDS - 1, "the last id again"],
      [0x7fffffff, "INT_MAX"],
      [0xffffffff, "u32 -1"],
      [0x100000000, "2^32 (truncates to 0 past the check)"],
    ];
    ids.forEach(([id, note], i) => s.ioctl("$vm", "KVM_CREATE_VCPU", id, { as: `cpu${i}`, note }));
    for (const c of [K.KVM_CAP_MAX_VCPUS, K.KVM_CAP_MAX_VCPU_ID, 9])
      s.ioctl("$vm", "KVM_CHECK_EXTENSION", c, { note: `cap ${c} with vCPUs` });
    s.close("$cpu0");
    s.ioctl("$vm", "KVM_CREATE_VCPU", 0, { as: "again", note: "id 0 after its fd is closed" });
    s.ioctl("$kvm", "KVM_CREATE_VM", 0, { as: "vm2" });
    s.ioctl("$vm2", "KVM_CREATE_VCPU", 0, { as: "other", note: "id 0 in another VM" });
    s.close("$vm");
    s.ioctl("$cpu2", "KVM_RUN", 1, { note: "KVM_RUN with an argument, the VM fd closed" });
    mk(s);
  }
  {
    const s = ready("wrong-fds", "system, VM, vCPU and device requests on each kind of fd");
    s.ioctl("$vm", "KVM_CREATE_VCPU", 0, { as: "cpu" });
    createDevice(s, "$vm", K.KVM_DEV_TYPE_VFIO, 0, "kv");
    s.eventfd("ev");
    s.mmap(K64, "buf");
    for (const fd of ["$kvm", "$vm", "$cpu", "$kv", "$ev"]) {
      s.ioctl(fd, "KVM_GET_API_VERSION", 0, { note: `API version on ${fd}` });
      s.ioctl(fd, "KVM_GET_VCPU_MMAP_SIZE", 0, { note: `vCPU mmap size on ${fd}` });
      s.ioctl(fd, "KVM_CHECK_EXTENSION", K.KVM_CAP_USER_MEMORY, { note: `CHECK on ${fd}` });
      s.ioctl(fd, "KVM_CREATE_VCPU", 5, { as: `cpu5${fd.slice(1)}`, note: `CREATE_VCPU on ${fd}` });
      region(s, 3, 0, K64, { fd, note: `memory region on ${fd}` });
      s.ioctl(fd, "KVM_RUN", 1, { note: `KVM_RUN(1) on ${fd}` });
      s.ioctl(fd, "VFIO_GET_API_VERSION", 0, { note: `a VFIO request on ${fd}` });
    }
    s.ioctl("$cpu", "KVM_CREATE_VM", 0, { note: "CREATE_VM on a vCPU" });
    s.ioctl("$vm", "KVM_CREATE_VM", 0, { note: "CREATE_VM on a VM" });
    mk(s);
  }
  {
    const s = ready("memory-slots", "KVM_SET_USER_MEMORY_REGION: one slot's life and its edges");
    s.mmap(4 * K64, "buf");
    region(s, 0, 0, K64, { note: "create slot 0" });
    region(s, 0, 0, K64, { note: "the same again" });
    region(s, 1, 0x8000, K64, { note: "slot 1 overlapping slot 0" });
    region(s, 1, K64, K64, { note: "slot 1 right after slot 0" });
    region(s, 2, 0, K64, { note: "slot 2 equal to slot 0" });
    region(s, 0, 4 * K64, K64, { note: "move slot 0" });
    region(s, 0, 4 * K64, 2 * K64, { note: "resize slot 0" });
    region(s, 0, 4 * K64, K64, { uaddr: 0x10000, note: "slot 0 at another address" });
    region(s, 0, 4 * K64, K64, { flags: K.KVM_MEM_LOG_DIRTY_PAGES, note: "log dirty on" });
    region(s, 0, 4 * K64, K64, { note: "log dirty off" });
    region(s, 0, 4 * K64, K64, { flags: K.KVM_MEM_READONLY, note: "read-only on a slot" });
    region(s, 0, 4 * K64, 0, { note: "delete slot 0" });
    region(s, 0, 4 * K64, 0, { note: "delete it again" });
    region(s, 5, 0, 0, { note: "delete a slot never made" });
    region(s, 0, 4 * K64, K64, { flags: K.KVM_MEM_READONLY, note: "read-only from the start" });
    region(s, 1, K64, 0, { note: "delete slot 1" });
    region(s, 1, 0x8000, K64, { note: "slot 1 where it overlapped before, now free" });
    mk(s);
  }
  {
    const s = ready("memory-edges", "KVM_SET_USER_MEMORY_REGION: flags, slots, alignment, sizes");
    s.mmap(K64, "buf");
    s.mmap(K64, "ro", "r");
    s.mmap(K64, "gone");
    s.munmap("gone");
    for (let b = 0; b < 8; b++)
      region(s, 10 + b, 0x100000 * (b + 1), K64, { flags: 1 << b, note: `flag bit ${b}` });
    region(s, 32763, 0x1000000, K64, { note: "slot 32763" });
    region(s, 32764, 0x1100000, K64, { note: "slot 32764 (KVM_USER_MEM_SLOTS)" });
    region(s, 0x7fff, 0x1200000, K64, { note: "slot 0x7fff" });
    region(s, 0x10000, 0x1300000, K64, { note: "address space 1, slot 0" });
    region(s, 0x10000 | 32763, 0x1400000, K64, { note: "address space 1, slot 32763" });
    region(s, 0x20000, 0x1500000, K64, { note: "address space 2" });
    region(s, 0xffff0000, 0x1600000, K64, { note: "address space 0xffff" });
    region(s, 20, 0x2000800, K64, { note: "guest address not page aligned" });
    region(s, 21, 0x2100000, K64 + 0x800, { note: "size not page aligned" });
    region(s, 22, 0x2200000, K64, { uaddr: 0x10800, note: "user address not page aligned" });
    region(s, 23, 0x2300000, K64, { uaddr: "$ro", note: "read-only user memory" });
    region(s, 24, 0x2400000, K64, { uaddr: "$gone", note: "unmapped user memory" });
    region(s, 25, 0x2500000, K64, { uaddr: 0, note: "user address 0" });
    region(s, 26, 0x2600000, K64, { uaddr: 0x7ffffffff000n, note: "user range past TASK_SIZE" });
    region(s, 27, 0x2700000, K64, { uaddr: 0xffff800000000000n, note: "kernel address" });
    region(s, 28, 0xffffffffffff0000n, K64, { uaddr: 0x10000, note: "guest range to 2^64" });
    region(s, 29, 0xfffffffffff00000n, K64, { uaddr: 0x10000, note: "guest range below 2^64" });
    region(s, 30, 0x100000000n, 0x8000000000n, { uaddr: 0x10000, note: "512 GiB" });
    region(s, 31, 0x10000000000n, 0x80000000000n, { uaddr: 0x10000, note: "2^31 pages" });
    region(s, 32, 0x100000000000n, 0x7ffffffff000n, {
      uaddr: 0x1000,
      note: "past KVM_MEM_MAX_NR_PAGES",
    });
    mk(s);
  }
  // capabilities past kvm-device's 0..239, and numbers far past the last one
  for (const where of ["kvm", "vm"]) {
    const s =
      where === "vm"
        ? ready(`caps-vm-240`, "KVM_CHECK_EXTENSION 240..271 and large numbers on a VM")
        : new Script(`caps-kvm-240`, "KVM_CHECK_EXTENSION 240..271 and large numbers on /dev/kvm");
    if (where === "kvm") s.open("/dev/kvm", "kvm");
    for (const c of [
      ...Array.from({ length: 32 }, (_, i) => 240 + i),
      0x100,
      0x1000,
      0x7fffffff,
      0x80000000,
      0xffffffff,
      0x100000000,
    ])
      s.ioctl(`$${where}`, "KVM_CHECK_EXTENSION", c, { note: `cap ${c}` });
    mk(s);
  }
  return out;
}
