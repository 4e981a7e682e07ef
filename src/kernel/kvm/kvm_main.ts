/**
 * KVM's generic core, virt/kvm/kvm_main.c (Linux 6.12): the /dev/kvm character device
 * (API version, capabilities, KVM_CREATE_VM), VM files, vCPU files and the device control
 * API (KVM_CREATE_DEVICE, then SET/GET/HAS_DEVICE_ATTR on the device file).
 *
 * Lifetime: a VM is reference counted (kvm->users_count). Its file holds one reference
 * and so does every vCPU and device file, so the VM outlives its own fd while any of them
 * is open. Device types come from a table indexed by type (kvm_device_ops_table, filled
 * by kvm_register_device_ops; kvm-vfio is registered at init). A device whose type has
 * ->release is unlinked and released on the last close of its fd; one without it stays on
 * the VM's list until the VM is destroyed, which calls ->destroy.
 *
 * Every VM, vCPU and device request first checks that the caller is the process that
 * created the VM (kvm->mm == current->mm), else EIO. The model never marks a VM dead
 * (vm_dead is set by KVM_BUG_ON and SEV teardown, neither of which it has).
 *
 * Guest memory: KVM_SET_USER_MEMORY_REGION creates, moves, re-flags and deletes memory
 * slots with __kvm_set_memory_region()'s checks and errno (user addresses below
 * TASK_SIZE_MAX, guest frames below the host's MAXPHYADDR); vCPUs run with KVM_RUN
 * (vcpu.ts, which says how a guest program is loaded in the model).
 *
 * Not modelled (no interrupt controller, no register state yet): the x86 system requests
 * on /dev/kvm (MSR and CPUID lists, system attributes) answer EINVAL, the VM requests other
 * than CREATE_VCPU, SET_USER_MEMORY_REGION, CREATE_DEVICE and CHECK_EXTENSION answer ENOTTY,
 * and vCPU requests other than KVM_RUN answer EINVAL — what Linux answers for requests it
 * does not know.
 */
import { PAGE_SHIFT, PAGE_SIZE, type CpuHw } from "../../machine/hw.js";
import { _IOC_TYPE } from "../../uapi/ioctl.js";
import { err } from "../../uapi/errno.js";
import * as K from "../../uapi/kvm.js";
import type { Decoded } from "../../uapi/struct.js";
import { O_CLOEXEC, O_RDWR } from "../../uapi/syscalls.js";
import { File, type FileOperations } from "../core/file.js";
import type { Mm } from "../core/mm.js";
import type { Task } from "../core/task.js";
import type { CharDev } from "../core/vfs.js";
import type { KvmProfile } from "./profile.js";
import { KvmVcpu, type VcpuStats } from "./vcpu.js";
import type { Book3sHv } from "./book3s_hv.js";
import type { IncoherentDma } from "./incoherent_dma.js";
import { kvmVfioOps, type VfioSymbols } from "./vfio.js";
import {
  KVM_MAX_VCPU_IDS,
  KVM_MAX_VCPUS,
  kvmArchInitVm,
  kvmArchVcpuPrecreate,
  kvmVmIoctlCheckExtension,
  kvmX86DevGetAttr,
  memoryType,
  needEmulateWbinvd,
  type KvmArch,
  type MemoryTypeVerdict,
} from "./x86.js";

export type KvmDeviceAttr = Decoded<typeof K.kvm_device_attr.fields>;

/** struct kvm_device_ops: every call returning a number returns 0/positive or -errno. */
export interface KvmDeviceOps {
  readonly name: string;
  /** Under kvm->lock, before the device is listed; -errno refuses the creation. */
  create(dev: KvmDevice, type: number): number;
  /** The last close of the device fd, after the device left the VM's list; frees it. */
  release?(dev: KvmDevice): void;
  /** VM destruction, for devices still on the VM's list; frees it. */
  destroy?(dev: KvmDevice): void;
  setAttr?(dev: KvmDevice, task: Task, attr: KvmDeviceAttr): number;
  getAttr?(dev: KvmDevice, task: Task, attr: KvmDeviceAttr): number;
  hasAttr?(dev: KvmDevice, task: Task, attr: KvmDeviceAttr): number;
}

/** struct kvm_device */
export interface KvmDevice {
  readonly ops: KvmDeviceOps;
  readonly kvm: Kvm;
  /** dev->private */
  priv: unknown;
}

export { KvmVcpu } from "./vcpu.js";

/** struct kvm_memory_slot (the fields the model keeps). */
export interface Memslot {
  asId: number;
  id: number;
  baseGfn: number;
  npages: number;
  userspaceAddr: bigint;
  flags: number;
}

/** KVM_MEM_SLOTS_NUM (SHRT_MAX) less x86's KVM_INTERNAL_MEM_SLOTS (3). */
const KVM_USER_MEM_SLOTS = 32767 - 3;
/** KVM_MEM_MAX_NR_PAGES */
const KVM_MEM_MAX_NR_PAGES = 2 ** 31 - 1;
/**
 * x86-64 TASK_SIZE_MAX, access_ok()'s limit (USER_PTR_MAX, arch/x86/kernel/cpu/common.c):
 * 2^56 less a page with 5-level paging (page_64.h task_size_max(); the kernel clears the
 * la57 flag when it does not use them), 2^47 less a page otherwise.
 */
const taskSizeMax = (cpu: CpuHw) => (1n << (cpu.flags.has("la57") ? 56n : 47n)) - BigInt(PAGE_SIZE);
/** struct kvm */
export class Kvm {
  /** kvm->users_count */
  users = 1;
  /** kvm->devices, newest first (list_add). */
  readonly devices: KvmDevice[] = [];
  /** vCPUs by id (kvm->vcpu_array). */
  readonly vcpus = new Map<number, KvmVcpu>();
  /** kvm->created_vcpus */
  createdVcpus = 0;
  /** The VM's debugfs directory name, "<pid>-<fd>" (kvm_create_vm_debugfs). */
  name = "";
  /** Memory slots by (as_id << 16 | id). */
  readonly memslots = new Map<number, Memslot>();
  /** kvm->nr_memslot_pages */
  nrMemslotPages = 0;
  /** The second-level mappings made so far: gfn → host frame (held while mapped). */
  readonly sptes = new Map<number, number>();

  constructor(
    /** The creator's address space: only it may issue requests. */
    readonly mm: Mm,
    readonly arch: KvmArch,
    private readonly destroyVm: (kvm: Kvm) => void,
  ) {}

  /** kvm_get_kvm() */
  get(): void {
    this.users++;
  }

  /** kvm_put_kvm(): the last reference destroys the VM. */
  put(): void {
    if (--this.users === 0) this.destroyVm(this);
  }

  /** The address space 0 slot holding `gfn` (the model's vCPUs never run in SMM). */
  memslotOf(gfn: number): Memslot | undefined {
    for (const s of this.memslots.values())
      if (s.asId === 0 && gfn >= s.baseGfn && gfn < s.baseGfn + s.npages) return s;
    return undefined;
  }

  /** kvm_zap_gfn_range() over everything (or one slot's range): mappings are rebuilt on demand. */
  zap(slot?: Memslot): void {
    for (const [gfn, pfn] of [...this.sptes]) {
      if (slot && (gfn < slot.baseGfn || gfn >= slot.baseGfn + slot.npages)) continue;
      this.sptes.delete(gfn);
      this.mm.unpin([pfn]);
    }
  }
}

type MemoryRegion = Decoded<typeof K.kvm_userspace_memory_region.fields>;

/** kvm_vm_ioctl_set_memory_region() → __kvm_set_memory_region() (Linux 6.12). */
function setMemoryRegion(cpu: CpuHw, kvm: Kvm, mem: MemoryRegion): number {
  if ((mem.slot & 0xffff) >= KVM_USER_MEM_SLOTS) return err("EINVAL");
  // check_memory_region_flags(): dirty logging, and read-only (x86 VMs without protected state)
  if (mem.flags & ~(K.KVM_MEM_LOG_DIRTY_PAGES | K.KVM_MEM_READONLY)) return err("EINVAL");
  const asId = mem.slot >>> 16;
  const id = mem.slot & 0xffff;
  const page = BigInt(PAGE_SIZE);
  if (mem.memory_size % page) return err("EINVAL");
  if (mem.guest_phys_addr % page) return err("EINVAL");
  const end = mem.userspace_addr + mem.memory_size;
  if (mem.userspace_addr % page || end > taskSizeMax(cpu)) return err("EINVAL");
  if (asId >= 2) return err("EINVAL"); // kvm_arch_nr_memslot_as_ids(): 2 (SMM)
  if (mem.guest_phys_addr + mem.memory_size >= 1n << 64n) return err("EINVAL");
  if (mem.memory_size >> BigInt(PAGE_SHIFT) > BigInt(KVM_MEM_MAX_NR_PAGES)) return err("EINVAL");
  const key = (asId << 16) | id;
  const old = kvm.memslots.get(key);
  if (!mem.memory_size) {
    if (!old) return err("EINVAL");
    kvm.zap(old);
    kvm.memslots.delete(key);
    kvm.nrMemslotPages -= old.npages;
    return 0;
  }
  const baseGfn = Number(mem.guest_phys_addr >> BigInt(PAGE_SHIFT));
  const npages = Number(mem.memory_size >> BigInt(PAGE_SHIFT));
  let move = !old;
  if (old) {
    if (
      mem.userspace_addr !== old.userspaceAddr ||
      npages !== old.npages ||
      (mem.flags ^ old.flags) & K.KVM_MEM_READONLY
    )
      return err("EINVAL");
    if (baseGfn !== old.baseGfn) move = true;
    else if (mem.flags === old.flags) return 0;
  }
  if (move) {
    for (const s of kvm.memslots.values()) {
      if (s.asId !== asId || s.id === id) continue;
      if (baseGfn < s.baseGfn + s.npages && s.baseGfn < baseGfn + npages) return err("EEXIST");
    }
    // kvm_arch_prepare_memory_region() (x86.c): a new or moved slot must end at or below
    // kvm_mmu_max_gfn(), the host's MAXPHYADDR with TDP
    if (baseGfn + npages - 1 > 2 ** (cpu.physBits - PAGE_SHIFT) - 1) return err("EINVAL");
  }
  if (old) {
    kvm.zap(old);
    kvm.nrMemslotPages -= old.npages;
  }
  kvm.memslots.set(key, {
    asId,
    id,
    baseGfn,
    npages,
    userspaceAddr: mem.userspace_addr,
    flags: mem.flags,
  });
  kvm.nrMemslotPages += npages;
  return 0;
}

/** What debugfs-like introspection shows of one VM. */
export interface KvmVmInfo {
  name: string;
  users: number;
  vcpus: number;
  /** kvm->devices by type name, newest first. */
  devices: string[];
  /** kvm->arch.noncoherent_dma_count */
  noncoherentDmaCount: number;
  /** kvm->arch.assigned_device_count */
  assignedDeviceCount: number;
  /** A guest WBINVD: executed on the host's CPUs ("flush") or skipped ("nop"). */
  wbinvd: "flush" | "nop";
  /** What decides a guest RAM access's memory type (vmx_get_mt_mask on EPT). */
  memtype: MemoryTypeVerdict;
  /** Times every SPTE was zapped because the noncoherent state flipped. */
  spteZaps: number;
  /** Per vCPU: its host CPU, dirty mask and run statistics. */
  vcpuStats: {
    id: number;
    cpu: number;
    wbinvdDirtyMask: number[];
    /** kvm_run->exit_reason of its last KVM_RUN. */
    exitReason: number;
    stats: VcpuStats;
  }[];
}

/** Capabilities answered by kvm_main.c itself (kvm_vm_ioctl_check_extension_generic). */
const GENERIC_CAPS = new Map<number, number | ((kvm: Kvm | null) => number)>([
  ...[
    K.KVM_CAP_USER_MEMORY,
    K.KVM_CAP_USER_MEMORY2,
    K.KVM_CAP_DESTROY_MEMORY_REGION_WORKS,
    K.KVM_CAP_JOIN_MEMORY_REGIONS_WORKS,
    K.KVM_CAP_INTERNAL_ERROR_DATA,
    K.KVM_CAP_SIGNAL_MSI,
    K.KVM_CAP_IRQFD,
    K.KVM_CAP_IOEVENTFD_ANY_LENGTH,
    K.KVM_CAP_CHECK_EXTENSION_VM,
    K.KVM_CAP_ENABLE_CAP_VM,
    K.KVM_CAP_HALT_POLL,
    K.KVM_CAP_COALESCED_PIO,
    K.KVM_CAP_BINARY_STATS_FD,
    K.KVM_CAP_SYSTEM_EVENT_DATA,
    K.KVM_CAP_DEVICE_CTRL,
  ].map((c): [number, number] => [c, 1]),
  [K.KVM_CAP_COALESCED_MMIO, K.KVM_COALESCED_MMIO_PAGE_OFFSET],
  /** KVM_DIRTY_LOG_MANUAL_CAPS (x86) */
  [
    K.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
    K.KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | K.KVM_DIRTY_LOG_INITIALLY_SET,
  ],
  /** KVM_MAX_IRQ_ROUTES */
  [K.KVM_CAP_IRQ_ROUTING, 4096],
  /** KVM_MAX_NR_ADDRESS_SPACES, and kvm_arch_nr_memslot_as_ids() of a VM without private memory */
  [K.KVM_CAP_MULTI_ADDRESS_SPACE, 2],
  /** KVM_USER_MEM_SLOTS: SHRT_MAX minus x86's 3 internal slots */
  [K.KVM_CAP_NR_MEMSLOTS, 32767 - 3],
  /** KVM_DIRTY_RING_MAX_ENTRIES * sizeof(struct kvm_dirty_gfn) (TSO and ACQ_REL rings) */
  [K.KVM_CAP_DIRTY_LOG_RING, 65536 * 16],
  [K.KVM_CAP_DIRTY_LOG_RING_ACQ_REL, 65536 * 16],
  /** kvm_supported_mem_attributes(): /dev/kvm lists PRIVATE; no VM type here has private memory */
  [K.KVM_CAP_MEMORY_ATTRIBUTES, (kvm) => (kvm ? 0 : K.KVM_MEMORY_ATTRIBUTE_PRIVATE)],
  [K.KVM_CAP_GUEST_MEMFD, (kvm) => (kvm ? 0 : 1)],
]);

/** kvm_vm_ioctl_check_extension_generic(): `arg` is a long. */
function checkExtension(cpu: CpuHw, kvm: Kvm | null, arg: bigint): number {
  const ext = BigInt.asIntN(64, arg);
  const v = GENERIC_CAPS.get(Number(ext));
  if (v === undefined) return kvmVmIoctlCheckExtension(cpu, ext);
  return typeof v === "number" ? v : v(kvm);
}

export class KvmSubsystem {
  /** kvm_device_ops_table */
  private readonly deviceOps: (KvmDeviceOps | undefined)[] = new Array(K.KVM_DEV_TYPE_MAX);
  /** vm_list */
  private readonly vms = new Set<Kvm>();
  readonly chardev: CharDev;
  private readonly devFops: FileOperations<null>;
  private readonly vmFops: FileOperations<Kvm>;
  private readonly vcpuFops: FileOperations<KvmVcpu>;
  /** kvm_device_fops, one per device type for the anon inode's name. */
  private readonly deviceFops = new Map<KvmDeviceOps, FileOperations<KvmDevice>>();

  constructor(
    profile: KvmProfile,
    vfio: VfioSymbols,
    private readonly cpu: CpuHw,
    /** A POWER host's HV KVM (book3s_hv.ts): its VM requests, capabilities and vCPU run. */
    private readonly ppc: Book3sHv | null = null,
    /** The never-merged KVM_ALLOW/DISALLOW_INCOHERENT_DMA ("2021-proposal" profile only). */
    private readonly incoherentDma: IncoherentDma | null = null,
  ) {
    this.devFops = this.makeDevFops();
    this.vmFops = this.makeVmFops();
    this.vcpuFops = this.makeVcpuFops();
    this.chardev = { open: (_task, flags) => new File(this.devFops, null, flags) };
    // kvm_init() → kvm_vfio_ops_init()
    this.registerDeviceOps(kvmVfioOps(profile, vfio, ppc), K.KVM_DEV_TYPE_VFIO);
  }

  /** kvm_register_device_ops() of a type's table slot (the model has one, kvm-vfio's). */
  private registerDeviceOps(ops: KvmDeviceOps, type: number): void {
    this.deviceOps[type] = ops;
    this.deviceFops.set(ops, this.makeDeviceFops(ops.name));
  }

  /** The (iommufd, device label) pairs a VM allowed ("2021-proposal" profile; else 0). */
  incoherentDmaAllowed(kvm: Kvm): number {
    return this.incoherentDma?.count(kvm) ?? 0;
  }

  /** Every live VM (vm_list), for the kernel's debugfs. */
  liveVms(): readonly Kvm[] {
    return [...this.vms];
  }

  /** Every live VM (vm_list), as debugfs would show it. */
  info(): KvmVmInfo[] {
    return [...this.vms].map((kvm) => ({
      name: kvm.name,
      users: kvm.users,
      vcpus: kvm.vcpus.size,
      devices: kvm.devices.map((d) => d.ops.name),
      noncoherentDmaCount: kvm.arch.noncoherentDmaCount,
      assignedDeviceCount: kvm.arch.assignedDeviceCount,
      wbinvd: needEmulateWbinvd(kvm.arch) ? "flush" : "nop",
      memtype: memoryType(kvm.arch),
      spteZaps: kvm.arch.spteZaps,
      vcpuStats: [...kvm.vcpus.values()].map((v) => ({
        id: v.id,
        cpu: v.cpu,
        wbinvdDirtyMask: [...v.arch.wbinvdDirtyMask].sort((a, b) => a - b),
        exitReason: v.run.exit_reason,
        stats: { ...v.stats, exits: { ...v.stats.exits } },
      })),
    }));
  }

  /** The vCPU behind an open file, if it is a vCPU file. */
  vcpuOf(file: { ops: unknown; priv: unknown }): KvmVcpu | undefined {
    return file.ops === this.vcpuFops ? (file.priv as KvmVcpu) : undefined;
  }

  /** kvm_dev_ioctl_create_vm() */
  private createVm(task: Task, type: bigint): number {
    // kvm_create_vm(): kvm_arch_alloc_vm() comes before the type is looked at.
    if (task.faults.should("slab", "kvm")) return err("ENOMEM");
    const arch = kvmArchInitVm(type);
    if (typeof arch === "number") return arch;
    const kvm = new Kvm(task.mm, arch, (k) => this.destroyVm(k));
    arch.tdp = this.cpu.vendor === "intel" ? "ept" : "npt";
    arch.onZap = () => kvm.zap();
    this.vms.add(kvm);
    // An fd table without room drops the new file, which puts the VM (EMFILE). Linux
    // reserves the fd first, so a full table answers EMFILE even for a bad type.
    const fd = task.files.install(new File(this.vmFops, kvm, O_RDWR | O_CLOEXEC));
    if (fd >= 0) kvm.name = `${task.pid}-${fd}`;
    return fd;
  }

  /** kvm_destroy_vm(): the devices still listed are destroyed (kvm_destroy_devices). */
  private destroyVm(kvm: Kvm): void {
    this.vms.delete(kvm);
    this.incoherentDma?.release(kvm);
    for (const dev of kvm.devices.splice(0)) dev.ops.destroy?.(dev);
    kvm.zap();
  }

  /** kvm_vm_ioctl_create_vcpu() */
  private createVcpu(kvm: Kvm, task: Task, id: bigint): number {
    if (id >= BigInt(KVM_MAX_VCPU_IDS)) return err("EINVAL");
    if (kvm.createdVcpus >= KVM_MAX_VCPUS) return err("EINVAL");
    const r = kvmArchVcpuPrecreate(kvm.arch, id);
    if (r) return r;
    if (kvm.vcpus.has(Number(id))) return err("EEXIST");
    const vcpu = new KvmVcpu(kvm, Number(id));
    kvm.createdVcpus++;
    kvm.get();
    // create_vcpu_fd(); a failed install drops the file, whose release puts the VM.
    const fd = task.files.install(new File(this.vcpuFops, vcpu, O_RDWR | O_CLOEXEC));
    if (fd < 0) {
      kvm.createdVcpus--;
      return fd;
    }
    kvm.vcpus.set(vcpu.id, vcpu);
    return fd;
  }

  /** kvm_ioctl_create_device() */
  private createDevice(
    kvm: Kvm,
    task: Task,
    cd: Decoded<typeof K.kvm_create_device.fields>,
  ): number {
    if (cd.type >= this.deviceOps.length) return err("ENODEV");
    const ops = this.deviceOps[cd.type];
    if (!ops) return err("ENODEV");
    if (cd.flags & K.KVM_CREATE_DEVICE_TEST) return 0;
    if (task.faults.should("slab", "kvm_device")) return err("ENOMEM");
    const dev: KvmDevice = { ops, kvm, priv: null };
    const r = ops.create(dev, cd.type);
    if (r < 0) return r;
    kvm.devices.unshift(dev);
    // The VM reference is taken before the fd exists (the CVE-2019-6974 ordering).
    kvm.get();
    const fops = this.deviceFops.get(ops) as FileOperations<KvmDevice>;
    const fd = task.files.install(new File(fops, dev, O_RDWR | O_CLOEXEC));
    if (fd < 0) {
      // The dropped file ran kvm_device_release() (unlink and ->release for types that
      // have it, and the VM reference); the error path also unlinks and ->destroys.
      unlink(dev);
      ops.destroy?.(dev);
      return fd;
    }
    cd.fd = fd;
    return 0;
  }

  /** kvm_dev_ioctl(): requests on /dev/kvm itself. */
  private makeDevFops(): FileOperations<null> {
    return {
      name: "/dev/kvm",
      ioctl: (_file, task, cmd, arg) => {
        switch (cmd) {
          case K.KVM_GET_API_VERSION:
            return arg ? err("EINVAL") : K.KVM_API_VERSION;
          case K.KVM_CREATE_VM:
            return this.createVm(task, arg);
          case K.KVM_CHECK_EXTENSION:
            return this.ppc?.checkExtension(arg) ?? checkExtension(this.cpu, null, arg);
          case K.KVM_GET_VCPU_MMAP_SIZE:
            // struct kvm_run, the x86 PIO data page and the coalesced MMIO ring
            return arg ? err("EINVAL") : 3 * PAGE_SIZE;
          case K.KVM_GET_DEVICE_ATTR:
          case K.KVM_HAS_DEVICE_ATTR:
            if (!this.ppc) return this.x86DevAttr(task, cmd, arg);
            return err("EINVAL");
          default:
            return err("EINVAL"); // kvm_arch_dev_ioctl()
        }
      },
    };
  }

  /** kvm_arch_dev_ioctl()'s KVM_GET_DEVICE_ATTR / KVM_HAS_DEVICE_ATTR (x86). */
  private x86DevAttr(task: Task, cmd: number, arg: bigint): number {
    const raw = task.mm.copyFromUser(arg, K.kvm_device_attr.size);
    if (!raw) return err("EFAULT");
    const attr = K.kvm_device_attr.decode(raw);
    const val = kvmX86DevGetAttr(this.cpu, attr.group, attr.attr);
    if (typeof val === "number") return val;
    if (cmd === K.KVM_HAS_DEVICE_ATTR) return 0;
    const out = new Uint8Array(8);
    new DataView(out.buffer).setBigUint64(0, val, true);
    return task.mm.copyToUser(attr.addr, out) ? 0 : err("EFAULT");
  }

  /** kvm_vm_fops */
  private makeVmFops(): FileOperations<Kvm> {
    return {
      name: "anon_inode:kvm-vm",
      positional: false,
      ioctl: (file, task, cmd, arg) => {
        const kvm = file.priv;
        if (kvm.mm !== task.mm) return err("EIO");
        switch (cmd) {
          case K.KVM_CREATE_VCPU:
            return this.createVcpu(kvm, task, arg);
          case K.KVM_SET_USER_MEMORY_REGION: {
            const raw = task.mm.copyFromUser(arg, K.kvm_userspace_memory_region.size);
            if (!raw) return err("EFAULT");
            return setMemoryRegion(this.cpu, kvm, K.kvm_userspace_memory_region.decode(raw));
          }
          case K.KVM_CREATE_DEVICE: {
            const raw = task.mm.copyFromUser(arg, K.kvm_create_device.size);
            if (!raw) return err("EFAULT");
            const cd = K.kvm_create_device.decode(raw);
            const r = this.createDevice(kvm, task, cd);
            if (r) return r;
            return task.mm.copyToUser(arg, K.kvm_create_device.encode(cd)) ? 0 : err("EFAULT");
          }
          case K.KVM_CHECK_EXTENSION:
            return this.ppc?.checkExtension(arg) ?? checkExtension(this.cpu, kvm, arg);
          default:
            return (
              this.incoherentDma?.ioctl(kvm, task, cmd, arg) ??
              this.ppc?.vmIoctl(kvm, task, cmd, arg) ??
              err("ENOTTY") // kvm_arch_vm_ioctl()
            );
        }
      },
      release: (file) => file.priv.put(), // kvm_vm_release()
    };
  }

  /** kvm_vcpu_fops */
  private makeVcpuFops(): FileOperations<KvmVcpu> {
    return {
      name: "anon_inode:kvm-vcpu",
      positional: false,
      ioctl: (file, task, cmd, arg) => {
        const vcpu = file.priv;
        if (vcpu.kvm.mm !== task.mm) return err("EIO");
        if (_IOC_TYPE(cmd) !== K.KVMIO) return err("EINVAL");
        if (cmd === K.KVM_RUN && this.ppc) return arg ? err("EINVAL") : this.ppc.run(vcpu);
        if (cmd === K.KVM_RUN) return vcpu.ioctlRun(this.cpu, arg);
        return err("EINVAL"); // kvm_arch_vcpu_ioctl(): requests the model does not know
      },
      release: (file) => file.priv.kvm.put(), // kvm_vcpu_release()
    };
  }

  /** kvm_device_fops */
  private makeDeviceFops(name: string): FileOperations<KvmDevice> {
    /** kvm_device_ioctl_attr(): a missing accessor is EPERM before the struct is read. */
    const attr = (
      dev: KvmDevice,
      task: Task,
      accessor: KvmDeviceOps["setAttr"],
      arg: bigint,
    ): number => {
      if (!accessor) return err("EPERM");
      const raw = task.mm.copyFromUser(arg, K.kvm_device_attr.size);
      if (!raw) return err("EFAULT");
      return accessor.call(dev.ops, dev, task, K.kvm_device_attr.decode(raw));
    };
    return {
      name: `anon_inode:${name}`,
      positional: false,
      ioctl: (file, task, cmd, arg) => {
        const dev = file.priv;
        if (dev.kvm.mm !== task.mm) return err("EIO");
        switch (cmd) {
          case K.KVM_SET_DEVICE_ATTR:
            return attr(dev, task, dev.ops.setAttr, arg);
          case K.KVM_GET_DEVICE_ATTR:
            return attr(dev, task, dev.ops.getAttr, arg);
          case K.KVM_HAS_DEVICE_ATTR:
            return attr(dev, task, dev.ops.hasAttr, arg);
          default:
            return err("ENOTTY"); // no device type of the model has its own ioctl
        }
      },
      release: (file) => {
        // kvm_device_release()
        const dev = file.priv;
        if (dev.ops.release) {
          unlink(dev);
          dev.ops.release(dev);
        }
        dev.kvm.put();
      },
    };
  }
}

function unlink(dev: KvmDevice): void {
  const i = dev.kvm.devices.indexOf(dev);
  if (i >= 0) dev.kvm.devices.splice(i, 1);
}
