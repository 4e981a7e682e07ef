/**
 * The x86 half of KVM, arch/x86/kvm/x86.c (Linux 6.12) with kvm_amd, built as Debian's
 * 6.12 amd64 kernel is (CONFIG_KVM_HYPERV, KVM_XEN, KVM_SMM, X86_SGX_KVM, KVM_AMD_SEV on;
 * KVM_SW_PROTECTED_VM off; KVM_MAX_NR_VCPUS 4096) and loaded as the oracle guest loads it
 * (npt=1, sev=0): the VM types KVM_CREATE_VM accepts (kvm_arch_init_vm), the x86 answers
 * to KVM_CHECK_EXTENSION (kvm_vm_ioctl_check_extension), the vCPU id limit
 * (kvm_arch_vcpu_precreate), the assigned-device count (kvm_arch_start/end_assignment)
 * and the noncoherent DMA registration that decides whether a guest WBINVD must really be
 * executed (kvm_arch_register/unregister/has_noncoherent_dma, need_emulate_wbinvd), and
 * what follows from it when a guest runs: WBINVD emulation (kvm_emulate_wbinvd), the
 * per-vCPU set of host CPUs that may hold the guest's dirty lines (wbinvd_dirty_mask,
 * grown by kvm_arch_vcpu_load), and the EPT memory type (vmx/vmx.c vmx_get_mt_mask).
 *
 * The vendor module follows the host CPU: kvm_intel (VMX, EPT) on Intel, kvm_amd (SVM,
 * NPT) on AMD. Both intercept WBINVD (VMX's WBINVD-exiting control, which KVM sets when
 * the CPU has it; SVM's intercept, always: svm_has_wbinvd_exit() is true); only EPT lets
 * KVM override the guest's memory type, so only on Intel does registration change it.
 *
 * Capabilities whose answer is a fact about the host CPU follow the machine's CPUs (hw.ts
 * CpuHw: their count, and /proc/cpuinfo's flags where x86.c asks boot_cpu_has): NR_VCPUS
 * (num_online_cpus()), XCRS (XSAVE), X86_DISABLE_EXITS (kvm_can_mwait_in_guest(); the kvm
 * module's mitigate_smt_rsb at its default, off), XSAVE2 (the non-compacted XSAVE size of
 * the guest-permitted XCR0, at least struct kvm_xsave) and /dev/kvm's GET/HAS_DEVICE_ATTR
 * (KVM_X86_XCOMP_GUEST_SUPP: kvm_caps.supported_xcr0). TSC_CONTROL and PMU_CAPABILITY
 * (TSC scaling, enable_pmu) answer 0. The rest of the table is kvm_amd's whatever the
 * machine's CPU, as the oracle records it (its QEMU guest has an AMD CPU beside an
 * emulated VT-d unit): NESTED_STATE is svm_get_nested_state()'s size, and the SEV group
 * of the device attributes answers as with sev=0. Guest execution — WBINVD, the memory
 * type — follows the machine's CPU vendor (hw.cpu.vendor).
 *
 * KVM_X86_VALID_QUIRKS is the one of the Debian 6.12 build the oracle runs (6.12.y with
 * the STUFF_FEATURE_MSRS, IGNORE_GUEST_PAT and VMCS12_ALLOW_FREEZE_IN_SMM quirks
 * backported), which kvm_amd does not narrow.
 *
 * On registration's first 0→1 and last 1→0 transition Linux zaps the VM's SPTEs only when
 * kvm_mmu_may_ignore_guest_pat() (EPT with a memtype mask, i.e. Intel); with kvm_amd (NPT)
 * nothing else happens: the count alone decides WBINVD emulation.
 */
import type { CpuHw } from "../../machine/hw.js";
import { err } from "../../uapi/errno.js";
import * as K from "../../uapi/kvm.js";

/** CONFIG_KVM_MAX_NR_VCPUS (Debian amd64). */
export const KVM_MAX_VCPUS = 4096;
/** KVM_MAX_VCPUS * KVM_VCPU_ID_RATIO */
export const KVM_MAX_VCPU_IDS = KVM_MAX_VCPUS * 4;

/** kvm_caps.supported_vm_types: the default VM only (no SW_PROTECTED_VM, SEV off). */
const SUPPORTED_VM_TYPES = 1 << K.KVM_X86_DEFAULT_VM;

/** struct kvm_arch (the fields the model keeps). */
export class KvmArch {
  /** kvm->arch.noncoherent_dma_count */
  noncoherentDmaCount = 0;
  /** kvm->arch.assigned_device_count */
  assignedDeviceCount = 0;
  /** kvm->arch.max_vcpu_ids (0 until the first vCPU, then KVM_MAX_VCPU_IDS) */
  maxVcpuIds = 0;
  /**
   * Two-dimensional paging: EPT (kvm_intel), whose leaf entries carry a memory type KVM
   * chooses (shadow_memtype_mask ≠ 0), or NPT (kvm_amd), where the guest's PAT always
   * combines with the host's.
   */
  tdp: "ept" | "npt" = "npt";
  /** Times every SPTE was zapped because the noncoherent state flipped (kvm_zap_gfn_range). */
  spteZaps = 0;
  /** Called on such a zap: the VM drops its second-level mappings. */
  onZap: (() => void) | null = null;

  constructor(
    /** kvm->arch.vm_type */
    readonly vmType: number,
  ) {}
}

/** struct kvm_vcpu_arch (the fields the model keeps). */
export class KvmVcpuArch {
  /** vcpu->arch.wbinvd_dirty_mask: host CPUs whose caches may hold this vCPU's dirty lines. */
  readonly wbinvdDirtyMask = new Set<number>();
}

/** sizeof(struct kvm_nested_state): flags, format, size and the 120-byte header union. */
const KVM_NESTED_STATE_SIZE = 128;

/** kvm_arch_init_vm(): the type must be one this kernel supports (kvm_is_vm_type_supported). */
export function kvmArchInitVm(type: bigint): KvmArch | number {
  if (type >= 32n || !(SUPPORTED_VM_TYPES & (1 << Number(type)))) return err("EINVAL");
  return new KvmArch(Number(type));
}

/** kvm_arch_vcpu_precreate() */
export function kvmArchVcpuPrecreate(arch: KvmArch, id: bigint): number {
  if (!arch.maxVcpuIds) arch.maxVcpuIds = KVM_MAX_VCPU_IDS;
  return id >= BigInt(arch.maxVcpuIds) ? err("EINVAL") : 0;
}

/** kvm_arch_start_assignment(): a device was given to the VM (kvm-vfio FILE_ADD). */
export function kvmArchStartAssignment(arch: KvmArch): void {
  arch.assignedDeviceCount++;
}

/** kvm_arch_end_assignment() */
export function kvmArchEndAssignment(arch: KvmArch): void {
  arch.assignedDeviceCount--;
}

/**
 * kvm_noncoherent_dma_assignment_start_or_stop(): vmx_get_mt_mask()'s answer depends on the
 * noncoherent state, so on EPT (kvm_mmu_may_ignore_guest_pat()) every SPTE is zapped and
 * rebuilt with the new memory type.
 */
function noncoherentStartOrStop(arch: KvmArch): void {
  if (arch.tdp !== "ept") return;
  arch.spteZaps++;
  arch.onZap?.();
}

/** kvm_arch_register_noncoherent_dma() */
export function kvmArchRegisterNoncoherentDma(arch: KvmArch): void {
  if (++arch.noncoherentDmaCount === 1) noncoherentStartOrStop(arch);
}

/** kvm_arch_unregister_noncoherent_dma() */
export function kvmArchUnregisterNoncoherentDma(arch: KvmArch): void {
  if (--arch.noncoherentDmaCount === 0) noncoherentStartOrStop(arch);
}

/** kvm_arch_has_noncoherent_dma() */
export function kvmArchHasNoncoherentDma(arch: KvmArch): boolean {
  return arch.noncoherentDmaCount !== 0;
}

/**
 * need_emulate_wbinvd(): whether a guest WBINVD must flush the host's caches (on every
 * CPU the vCPU dirtied) instead of being skipped as a no-op.
 */
export function needEmulateWbinvd(arch: KvmArch): boolean {
  return kvmArchHasNoncoherentDma(arch);
}

/**
 * The WBINVD part of kvm_arch_vcpu_load(): a vCPU about to run on host CPU `cpu` (after
 * `prev`, -1 the first time). When WBINVD matters, the CPU joins the dirty mask (it will
 * be flushed at the guest's next WBINVD); a CPU without WBINVD exiting instead flushes the
 * CPU the vCPU leaves, at once.
 */
export function kvmArchVcpuLoad(
  hw: CpuHw,
  arch: KvmArch,
  vcpu: KvmVcpuArch,
  prev: number,
  cpu: number,
): void {
  if (!needEmulateWbinvd(arch)) return;
  if (hw.hasWbinvdExit) vcpu.wbinvdDirtyMask.add(cpu);
  else if (prev !== -1 && prev !== cpu) hw.onEachCpu(cpu, [prev], (c) => hw.wbinvd(c));
}

/**
 * kvm_emulate_wbinvd_noskip(): the guest's WBINVD, running on host CPU `cpu`. A no-op
 * unless noncoherent DMA is registered; then every CPU in the dirty mask, this one
 * included, executes WBINVD (IPIs, waited for) and the mask empties. Returns the host
 * CPUs that executed it (none: the instruction was skipped as a NOP).
 */
export function kvmEmulateWbinvd(
  hw: CpuHw,
  arch: KvmArch,
  vcpu: KvmVcpuArch,
  cpu: number,
): number[] {
  if (!needEmulateWbinvd(arch)) return [];
  if (!hw.hasWbinvdExit) {
    hw.wbinvd(cpu);
    return [cpu];
  }
  vcpu.wbinvdDirtyMask.add(cpu);
  const cpus = [...vcpu.wbinvdDirtyMask].sort((a, b) => a - b);
  hw.onEachCpu(cpu, cpus, (c) => hw.wbinvd(c));
  vcpu.wbinvdDirtyMask.clear();
  return cpus;
}

/* arch/x86/include/asm/vmx.h, asm/mtrr.h */
export const VMX_EPT_MT_EPTE_SHIFT = 3;
export const VMX_EPT_IPAT_BIT = 1 << 6;
export const MTRR_TYPE_UNCACHABLE = 0;
export const MTRR_TYPE_WRBACK = 6;

/**
 * vmx_get_mt_mask() (6.12): the memory-type bits of an EPT leaf entry. MMIO is UC; guest
 * RAM is WB, with "ignore PAT" set (the guest's PAT has no say) unless the VM has
 * noncoherent DMA — then the guest's PAT decides, so a guest can map its DMA buffers UC
 * or WC as it would on bare metal.
 */
export function vmxGetMtMask(arch: KvmArch, isMmio: boolean): number {
  if (isMmio) return MTRR_TYPE_UNCACHABLE << VMX_EPT_MT_EPTE_SHIFT;
  if (!kvmArchHasNoncoherentDma(arch))
    return (MTRR_TYPE_WRBACK << VMX_EPT_MT_EPTE_SHIFT) | VMX_EPT_IPAT_BIT;
  return MTRR_TYPE_WRBACK << VMX_EPT_MT_EPTE_SHIFT;
}

/** What a guest RAM access's memory type is decided by, as explanations show it. */
export interface MemoryTypeVerdict {
  tdp: "ept" | "npt";
  /** EPT leaf memory-type bits for RAM (vmx_get_mt_mask), null under NPT. */
  eptMtMask: number | null;
  /** Whether the guest's PAT takes part in the effective memory type. */
  guestPat: "ignored" | "honoured";
  why: string;
}

export function memoryType(arch: KvmArch): MemoryTypeVerdict {
  if (arch.tdp === "npt")
    return {
      tdp: "npt",
      eptMtMask: null,
      guestPat: "honoured",
      why: "NPT: KVM does not override memory types; the guest's PAT always combines with the host's",
    };
  const mask = vmxGetMtMask(arch, false);
  const ipat = (mask & VMX_EPT_IPAT_BIT) !== 0;
  return {
    tdp: "ept",
    eptMtMask: mask,
    guestPat: ipat ? "ignored" : "honoured",
    why: ipat
      ? "no noncoherent DMA registered: EPT forces WB and sets IPAT (guest PAT ignored)"
      : "noncoherent DMA registered: EPT says WB without IPAT, so the guest's PAT decides",
  };
}

/** kvm_vm_ioctl_check_extension(): x86's answers; anything not listed is 0. */
const X86_CAPS = new Map<number, number>([
  ...[
    K.KVM_CAP_IRQCHIP,
    K.KVM_CAP_HLT,
    K.KVM_CAP_MMU_SHADOW_CACHE_CONTROL,
    K.KVM_CAP_SET_TSS_ADDR,
    K.KVM_CAP_EXT_CPUID,
    K.KVM_CAP_EXT_EMUL_CPUID,
    K.KVM_CAP_CLOCKSOURCE,
    K.KVM_CAP_PIT,
    K.KVM_CAP_NOP_IO_DELAY,
    K.KVM_CAP_MP_STATE,
    K.KVM_CAP_SYNC_MMU,
    K.KVM_CAP_USER_NMI,
    K.KVM_CAP_REINJECT_CONTROL,
    K.KVM_CAP_IRQ_INJECT_STATUS,
    K.KVM_CAP_IOEVENTFD,
    K.KVM_CAP_IOEVENTFD_NO_LENGTH,
    K.KVM_CAP_PIT2,
    K.KVM_CAP_PIT_STATE2,
    K.KVM_CAP_SET_IDENTITY_MAP_ADDR,
    K.KVM_CAP_VCPU_EVENTS,
    K.KVM_CAP_HYPERV,
    K.KVM_CAP_HYPERV_VAPIC,
    K.KVM_CAP_HYPERV_SPIN,
    K.KVM_CAP_HYPERV_TIME,
    K.KVM_CAP_HYPERV_SYNIC,
    K.KVM_CAP_HYPERV_SYNIC2,
    K.KVM_CAP_HYPERV_VP_INDEX,
    K.KVM_CAP_HYPERV_EVENTFD,
    K.KVM_CAP_HYPERV_TLBFLUSH,
    K.KVM_CAP_HYPERV_SEND_IPI,
    K.KVM_CAP_HYPERV_CPUID,
    K.KVM_CAP_HYPERV_ENFORCE_CPUID,
    K.KVM_CAP_SYS_HYPERV_CPUID,
    K.KVM_CAP_PCI_SEGMENT,
    K.KVM_CAP_DEBUGREGS,
    K.KVM_CAP_X86_ROBUST_SINGLESTEP,
    K.KVM_CAP_XSAVE,
    K.KVM_CAP_ASYNC_PF,
    K.KVM_CAP_ASYNC_PF_INT,
    K.KVM_CAP_GET_TSC_KHZ,
    K.KVM_CAP_KVMCLOCK_CTRL,
    K.KVM_CAP_IOAPIC_POLARITY_IGNORED,
    K.KVM_CAP_TSC_DEADLINE_TIMER,
    K.KVM_CAP_DISABLE_QUIRKS,
    K.KVM_CAP_SET_BOOT_CPU_ID,
    K.KVM_CAP_SPLIT_IRQCHIP,
    K.KVM_CAP_IMMEDIATE_EXIT,
    K.KVM_CAP_PMU_EVENT_FILTER,
    K.KVM_CAP_PMU_EVENT_MASKED_EVENTS,
    K.KVM_CAP_GET_MSR_FEATURES,
    K.KVM_CAP_MSR_PLATFORM_INFO,
    K.KVM_CAP_EXCEPTION_PAYLOAD,
    K.KVM_CAP_X86_TRIPLE_FAULT_EVENT,
    K.KVM_CAP_SET_GUEST_DEBUG,
    K.KVM_CAP_LAST_CPU,
    K.KVM_CAP_X86_USER_SPACE_MSR,
    K.KVM_CAP_X86_MSR_FILTER,
    K.KVM_CAP_ENFORCE_PV_FEATURE_CPUID,
    K.KVM_CAP_SGX_ATTRIBUTE,
    K.KVM_CAP_VM_COPY_ENC_CONTEXT_FROM,
    K.KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM,
    K.KVM_CAP_SREGS2,
    K.KVM_CAP_EXIT_ON_EMULATION_FAILURE,
    K.KVM_CAP_VCPU_ATTRIBUTES,
    K.KVM_CAP_SYS_ATTRIBUTES,
    K.KVM_CAP_VAPIC,
    K.KVM_CAP_ENABLE_CAP,
    K.KVM_CAP_VM_DISABLE_NX_HUGE_PAGES,
    K.KVM_CAP_IRQFD_RESAMPLE,
    K.KVM_CAP_MEMORY_FAULT_INFO,
    K.KVM_CAP_X86_GUEST_MODE,
  ].map((c): [number, number] => [c, 1]),
  /** tdp_enabled (NPT) */
  [K.KVM_CAP_PRE_FAULT_MEMORY, 1],
  /** APIC_BUS_CYCLE_NS_DEFAULT */
  [K.KVM_CAP_X86_APIC_BUS_CYCLES_NS, 1],
  /** KVM_EXIT_HYPERCALL_VALID_MASK */
  [K.KVM_CAP_EXIT_HYPERCALL, 1 << K.KVM_HC_MAP_GPA_RANGE],
  /** KVM_GUESTDBG_VALID_MASK */
  [
    K.KVM_CAP_SET_GUEST_DEBUG2,
    K.KVM_GUESTDBG_ENABLE |
      K.KVM_GUESTDBG_SINGLESTEP |
      K.KVM_GUESTDBG_USE_HW_BP |
      K.KVM_GUESTDBG_USE_SW_BP |
      K.KVM_GUESTDBG_INJECT_BP |
      K.KVM_GUESTDBG_INJECT_DB |
      K.KVM_GUESTDBG_BLOCKIRQ,
  ],
  /** every Xen flag: sched_info_on() (CONFIG_SCHED_INFO) adds the two runstate ones */
  [
    K.KVM_CAP_XEN_HVM,
    K.KVM_XEN_HVM_CONFIG_HYPERCALL_MSR |
      K.KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL |
      K.KVM_XEN_HVM_CONFIG_SHARED_INFO |
      K.KVM_XEN_HVM_CONFIG_EVTCHN_2LEVEL |
      K.KVM_XEN_HVM_CONFIG_EVTCHN_SEND |
      K.KVM_XEN_HVM_CONFIG_PVCLOCK_TSC_UNSTABLE |
      K.KVM_XEN_HVM_CONFIG_SHARED_INFO_HVA |
      K.KVM_XEN_HVM_CONFIG_RUNSTATE |
      K.KVM_XEN_HVM_CONFIG_RUNSTATE_UPDATE_FLAG,
  ],
  /** KVM_SYNC_X86_VALID_FIELDS */
  [K.KVM_CAP_SYNC_REGS, K.KVM_SYNC_X86_REGS | K.KVM_SYNC_X86_SREGS | K.KVM_SYNC_X86_EVENTS],
  /** KVM_CLOCK_VALID_FLAGS */
  [K.KVM_CAP_ADJUST_CLOCK, K.KVM_CLOCK_TSC_STABLE | K.KVM_CLOCK_REALTIME | K.KVM_CLOCK_HOST_TSC],
  /** svm_has_emulated_msr(MSR_IA32_SMBASE) with CONFIG_KVM_SMM, not an SEV-ES guest */
  [K.KVM_CAP_X86_SMM, 1],
  [K.KVM_CAP_MAX_VCPUS, KVM_MAX_VCPUS],
  [K.KVM_CAP_MAX_VCPU_ID, KVM_MAX_VCPU_IDS],
  /** KVM_MAX_MCE_BANKS */
  [K.KVM_CAP_MCE, 32],
  /** KVM_X2APIC_API_VALID_FLAGS */
  [K.KVM_CAP_X2APIC_API, K.KVM_X2APIC_API_USE_32BIT_IDS | K.KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK],
  /** sched_info_on() */
  [K.KVM_CAP_STEAL_TIME, 1],
  /** KVM_X86_VALID_QUIRKS */
  [
    K.KVM_CAP_DISABLE_QUIRKS2,
    K.KVM_X86_QUIRK_LINT0_REENABLED |
      K.KVM_X86_QUIRK_CD_NW_CLEARED |
      K.KVM_X86_QUIRK_LAPIC_MMIO_HOLE |
      K.KVM_X86_QUIRK_OUT_7E_INC_RIP |
      K.KVM_X86_QUIRK_MISC_ENABLE_NO_MWAIT |
      K.KVM_X86_QUIRK_FIX_HYPERCALL_INSN |
      K.KVM_X86_QUIRK_MWAIT_NEVER_UD_FAULTS |
      K.KVM_X86_QUIRK_SLOT_ZAP_ALL |
      K.KVM_X86_QUIRK_STUFF_FEATURE_MSRS |
      K.KVM_X86_QUIRK_IGNORE_GUEST_PAT |
      K.KVM_X86_QUIRK_VMCS12_ALLOW_FREEZE_IN_SMM,
  ],
  /** svm_get_nested_state(NULL): sizeof(struct kvm_nested_state) + the VMCB */
  [K.KVM_CAP_NESTED_STATE, KVM_NESTED_STATE_SIZE + K.KVM_STATE_NESTED_SVM_VMCB_SIZE],
  [K.KVM_CAP_VM_TYPES, SUPPORTED_VM_TYPES],
  /** kvm_arch_has_readonly_mem(): no VM type here has protected state */
  [K.KVM_CAP_READONLY_MEM, 1],
]);

/** kvm_vm_ioctl_check_extension(): `ext` is the request's argument as a signed long. */
export function kvmVmIoctlCheckExtension(cpu: CpuHw, ext: bigint): number {
  switch (Number(ext)) {
    case K.KVM_CAP_NR_VCPUS:
      return Math.min(cpu.count, KVM_MAX_VCPUS);
    case K.KVM_CAP_XCRS:
      return Number(cpu.flags.has("xsave"));
    case K.KVM_CAP_X86_DISABLE_EXITS:
      // !mitigate_smt_rsb
      return (
        K.KVM_X86_DISABLE_EXITS_PAUSE |
        K.KVM_X86_DISABLE_EXITS_HLT |
        K.KVM_X86_DISABLE_EXITS_CSTATE |
        (kvmCanMwaitInGuest(cpu) ? K.KVM_X86_DISABLE_EXITS_MWAIT : 0)
      );
    case K.KVM_CAP_XSAVE2:
      return Math.max(xstateRequiredSize(kvmGetFilteredXcr0(cpu)), KVM_XSAVE_SIZE);
  }
  return X86_CAPS.get(Number(ext)) ?? 0;
}

/** sizeof(struct kvm_xsave): u32 region[1024]. */
const KVM_XSAVE_SIZE = 4096;

/** kvm_can_mwait_in_guest() */
function kvmCanMwaitInGuest(cpu: CpuHw): boolean {
  return cpu.flags.has("monitor") && !cpu.bugs.has("monitor") && cpu.flags.has("arat");
}

/**
 * XSAVE state components (XFEATURE_*) KVM supports (KVM_SUPPORTED_XCR0), the cpuinfo flag
 * that makes the host kernel enable each in XCR0, and their standard (non-compacted)
 * offset and size, CPUID.(EAX=0DH,ECX=i) EBX and EAX. x87 and SSE (bits 0, 1: every
 * x86-64 CPU) live in the legacy area.
 */
const XFEATURE_MASK_FPSSE = 0b11;
const XFEATURES: readonly { bit: number; flag: string; offset: number; size: number }[] = [
  { bit: 2, flag: "avx", offset: 576, size: 256 },
  { bit: 3, flag: "mpx", offset: 960, size: 64 },
  { bit: 4, flag: "mpx", offset: 1024, size: 64 },
  { bit: 5, flag: "avx512f", offset: 1088, size: 64 },
  { bit: 6, flag: "avx512f", offset: 1152, size: 512 },
  { bit: 7, flag: "avx512f", offset: 1664, size: 1024 },
  { bit: 9, flag: "pku", offset: 2688, size: 8 },
  { bit: 17, flag: "amx_tile", offset: 2752, size: 64 },
  { bit: 18, flag: "amx_tile", offset: 2816, size: 8192 },
];
/** XFEATURE_MASK_XTILE: permitted to a process only through arch_prctl, never in the model. */
const XFEATURE_MASK_XTILE = (1 << 17) | (1 << 18);
/** XSAVE_HDR_OFFSET + XSAVE_HDR_SIZE: the legacy area and the XSAVE header. */
const XSAVE_LEGACY_AND_HEADER = 512 + 64;

/** kvm_caps.supported_xcr0: the host's XCR0 (from its CPU's features) & KVM_SUPPORTED_XCR0. */
function kvmSupportedXcr0(cpu: CpuHw): number {
  let xcr0 = XFEATURE_MASK_FPSSE;
  for (const f of XFEATURES) if (cpu.flags.has(f.flag)) xcr0 |= 1 << f.bit;
  return xcr0;
}

/** kvm_get_filtered_xcr0(): dynamic (AMX tile data) features only when the process may use them. */
function kvmGetFilteredXcr0(cpu: CpuHw): number {
  return kvmSupportedXcr0(cpu) & ~XFEATURE_MASK_XTILE;
}

/** xstate_required_size(xcr0, false) (cpuid.c): where the last enabled component ends. */
function xstateRequiredSize(xcr0: number): number {
  let size = XSAVE_LEGACY_AND_HEADER;
  for (const f of XFEATURES) if (xcr0 & (1 << f.bit)) size = Math.max(size, f.offset + f.size);
  return size;
}

/**
 * __kvm_x86_dev_get_attr(): group 0 has KVM_X86_XCOMP_GUEST_SUPP; other groups go to
 * kvm_amd's sev_dev_get_attr, whose one attribute (the SEV-ES VMSA features) is 0 with
 * SEV off. The value, or -ENXIO.
 */
export function kvmX86DevGetAttr(cpu: CpuHw, group: number, attr: bigint): bigint | number {
  if (group) {
    if (group !== K.KVM_X86_GRP_SEV) return err("ENXIO");
    return attr === BigInt(K.KVM_X86_SEV_VMSA_FEATURES) ? 0n : err("ENXIO");
  }
  return attr === BigInt(K.KVM_X86_XCOMP_GUEST_SUPP) ? BigInt(kvmSupportedXcr0(cpu)) : err("ENXIO");
}
