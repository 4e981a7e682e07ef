/**
 * include/uapi/linux/kvm.h and arch/x86/include/uapi/asm/kvm.h (Linux 6.12): request
 * numbers, capabilities, device types, the device-control attribute groups and the struct
 * layouts of the system (/dev/kvm), VM and device requests. KVM requests encode their
 * argument size and direction (_IO/_IOR/_IOW/_IOWR on type 0xAE), so the sizes below are
 * part of the numbers; they are sizeof() of the x86-64 structs.
 */
import { _IO, _IOR, _IOW, _IOWR } from "./ioctl.js";
import { struct } from "./struct.js";

export const KVMIO = 0xae;
export const KVM_API_VERSION = 12;

/* sizeof() of the structs the request numbers encode (x86-64). */
const SIZEOF = {
  kvm_dirty_log: 16,
  kvm_userspace_memory_region: 32,
  kvm_userspace_memory_region2: 160,
  kvm_irq_level: 8,
  kvm_irq_routing: 8,
  kvm_irqfd: 32,
  kvm_pit_config: 64,
  kvm_ioeventfd: 64,
  kvm_clock_data: 48,
  kvm_msi: 32,
  kvm_enable_cap: 104,
  kvm_clear_dirty_log: 24,
  kvm_create_device: 12,
  kvm_device_attr: 24,
  u64: 8,
} as const;

/* System requests (/dev/kvm) */
export const KVM_GET_API_VERSION = _IO(KVMIO, 0x00);
export const KVM_CREATE_VM = _IO(KVMIO, 0x01);
export const KVM_CHECK_EXTENSION = _IO(KVMIO, 0x03);
export const KVM_GET_VCPU_MMAP_SIZE = _IO(KVMIO, 0x04);
/* VM requests */
export const KVM_CREATE_VCPU = _IO(KVMIO, 0x41);
export const KVM_GET_DIRTY_LOG = _IOW(KVMIO, 0x42, SIZEOF.kvm_dirty_log);
export const KVM_SET_USER_MEMORY_REGION = _IOW(KVMIO, 0x46, SIZEOF.kvm_userspace_memory_region);
export const KVM_SET_TSS_ADDR = _IO(KVMIO, 0x47);
export const KVM_SET_IDENTITY_MAP_ADDR = _IOW(KVMIO, 0x48, SIZEOF.u64);
export const KVM_SET_USER_MEMORY_REGION2 = _IOW(KVMIO, 0x49, SIZEOF.kvm_userspace_memory_region2);
export const KVM_CREATE_IRQCHIP = _IO(KVMIO, 0x60);
export const KVM_IRQ_LINE = _IOW(KVMIO, 0x61, SIZEOF.kvm_irq_level);
export const KVM_SET_GSI_ROUTING = _IOW(KVMIO, 0x6a, SIZEOF.kvm_irq_routing);
export const KVM_IRQFD = _IOW(KVMIO, 0x76, SIZEOF.kvm_irqfd);
export const KVM_CREATE_PIT2 = _IOW(KVMIO, 0x77, SIZEOF.kvm_pit_config);
export const KVM_IOEVENTFD = _IOW(KVMIO, 0x79, SIZEOF.kvm_ioeventfd);
export const KVM_SET_CLOCK = _IOW(KVMIO, 0x7b, SIZEOF.kvm_clock_data);
export const KVM_GET_CLOCK = _IOR(KVMIO, 0x7c, SIZEOF.kvm_clock_data);
export const KVM_ENABLE_CAP = _IOW(KVMIO, 0xa3, SIZEOF.kvm_enable_cap);
export const KVM_SIGNAL_MSI = _IOW(KVMIO, 0xa5, SIZEOF.kvm_msi);
export const KVM_CLEAR_DIRTY_LOG = _IOWR(KVMIO, 0xc0, SIZEOF.kvm_clear_dirty_log);
export const KVM_GET_STATS_FD = _IO(KVMIO, 0xce);
/* Device control API (VM: create; device fd: attributes) */
export const KVM_CREATE_DEVICE = _IOWR(KVMIO, 0xe0, SIZEOF.kvm_create_device);
export const KVM_SET_DEVICE_ATTR = _IOW(KVMIO, 0xe1, SIZEOF.kvm_device_attr);
export const KVM_GET_DEVICE_ATTR = _IOW(KVMIO, 0xe2, SIZEOF.kvm_device_attr);
export const KVM_HAS_DEVICE_ATTR = _IOW(KVMIO, 0xe3, SIZEOF.kvm_device_attr);
/* vCPU requests */
export const KVM_RUN = _IO(KVMIO, 0x80);

/*
 * NEVER MERGED: the VM requests proposed in the "/dev/ioasid uAPI proposal" RFC thread
 * (June 2021) to replace kvm-vfio's coherency role, for the "2021-proposal" profile:
 * ioctl(KVM_ALLOW_INCOHERENT_DMA, ioasidfd, device_label) and its DISALLOW twin. No kernel
 * has them; the thread gave them no numbers and no struct. The model's layout is an s32
 * iommufd and the u32 device ID that fd's VFIO_DEVICE_BIND_IOMMUFD returned (the label),
 * and 0xd6 / 0xd7 are the numbers after KVM_PRE_FAULT_MEMORY's 0xd5, unused in Linux
 * 6.12's kvm.h.
 */
export const kvm_incoherent_dma = struct("kvm_incoherent_dma", [
  ["iommufd", "s32"],
  ["dev_id", "u32"],
] as const);
export const KVM_ALLOW_INCOHERENT_DMA = _IOW(KVMIO, 0xd6, 8);
export const KVM_DISALLOW_INCOHERENT_DMA = _IOW(KVMIO, 0xd7, 8);

/* Capabilities (KVM_CHECK_EXTENSION argument) */
export const KVM_CAP_IRQCHIP = 0;
export const KVM_CAP_HLT = 1;
export const KVM_CAP_MMU_SHADOW_CACHE_CONTROL = 2;
export const KVM_CAP_USER_MEMORY = 3;
export const KVM_CAP_SET_TSS_ADDR = 4;
export const KVM_CAP_VAPIC = 6;
export const KVM_CAP_EXT_CPUID = 7;
export const KVM_CAP_CLOCKSOURCE = 8;
export const KVM_CAP_NR_MEMSLOTS = 10;
export const KVM_CAP_PIT = 11;
export const KVM_CAP_NOP_IO_DELAY = 12;
export const KVM_CAP_PV_MMU = 13;
export const KVM_CAP_MP_STATE = 14;
export const KVM_CAP_COALESCED_MMIO = 15;
export const KVM_CAP_SYNC_MMU = 16;
export const KVM_CAP_IOMMU = 18;
export const KVM_CAP_DESTROY_MEMORY_REGION_WORKS = 21;
export const KVM_CAP_USER_NMI = 22;
export const KVM_CAP_SET_GUEST_DEBUG = 23;
export const KVM_CAP_REINJECT_CONTROL = 24;
export const KVM_CAP_IRQ_ROUTING = 25;
export const KVM_CAP_IRQ_INJECT_STATUS = 26;
export const KVM_CAP_JOIN_MEMORY_REGIONS_WORKS = 30;
export const KVM_CAP_MCE = 31;
export const KVM_CAP_IRQFD = 32;
export const KVM_CAP_PIT2 = 33;
export const KVM_CAP_SET_BOOT_CPU_ID = 34;
export const KVM_CAP_PIT_STATE2 = 35;
export const KVM_CAP_IOEVENTFD = 36;
export const KVM_CAP_SET_IDENTITY_MAP_ADDR = 37;
export const KVM_CAP_XEN_HVM = 38;
export const KVM_CAP_ADJUST_CLOCK = 39;
export const KVM_CAP_INTERNAL_ERROR_DATA = 40;
export const KVM_CAP_VCPU_EVENTS = 41;
export const KVM_CAP_HYPERV = 44;
export const KVM_CAP_HYPERV_VAPIC = 45;
export const KVM_CAP_HYPERV_SPIN = 46;
export const KVM_CAP_PCI_SEGMENT = 47;
export const KVM_CAP_DEBUGREGS = 50;
export const KVM_CAP_X86_ROBUST_SINGLESTEP = 51;
export const KVM_CAP_ENABLE_CAP = 54;
export const KVM_CAP_XSAVE = 55;
export const KVM_CAP_XCRS = 56;
export const KVM_CAP_ASYNC_PF = 59;
export const KVM_CAP_GET_TSC_KHZ = 61;
export const KVM_CAP_SPAPR_TCE = 63;
export const KVM_CAP_MAX_VCPUS = 66;
export const KVM_CAP_TSC_DEADLINE_TIMER = 72;
export const KVM_CAP_SYNC_REGS = 74;
export const KVM_CAP_KVMCLOCK_CTRL = 76;
export const KVM_CAP_SIGNAL_MSI = 77;
export const KVM_CAP_READONLY_MEM = 81;
export const KVM_CAP_IRQFD_RESAMPLE = 82;
export const KVM_CAP_DEVICE_CTRL = 89;
export const KVM_CAP_EXT_EMUL_CPUID = 95;
export const KVM_CAP_HYPERV_TIME = 96;
export const KVM_CAP_IOAPIC_POLARITY_IGNORED = 97;
export const KVM_CAP_ENABLE_CAP_VM = 98;
export const KVM_CAP_IOEVENTFD_NO_LENGTH = 100;
export const KVM_CAP_CHECK_EXTENSION_VM = 105;
export const KVM_CAP_DISABLE_QUIRKS = 116;
export const KVM_CAP_X86_SMM = 117;
export const KVM_CAP_MULTI_ADDRESS_SPACE = 118;
export const KVM_CAP_SPLIT_IRQCHIP = 121;
export const KVM_CAP_IOEVENTFD_ANY_LENGTH = 122;
export const KVM_CAP_HYPERV_SYNIC = 123;
export const KVM_CAP_SPAPR_TCE_64 = 125;
export const KVM_CAP_VCPU_ATTRIBUTES = 127;
export const KVM_CAP_MAX_VCPU_ID = 128;
export const KVM_CAP_X2APIC_API = 129;
export const KVM_CAP_IMMEDIATE_EXIT = 136;
export const KVM_CAP_SPAPR_TCE_VFIO = 142;
export const KVM_CAP_HYPERV_SYNIC2 = 148;
export const KVM_CAP_HYPERV_VP_INDEX = 149;
export const KVM_CAP_GET_MSR_FEATURES = 153;
export const KVM_CAP_HYPERV_EVENTFD = 154;
export const KVM_CAP_HYPERV_TLBFLUSH = 155;
export const KVM_CAP_MSR_PLATFORM_INFO = 159;
export const KVM_CAP_HYPERV_SEND_IPI = 161;
export const KVM_CAP_COALESCED_PIO = 162;
export const KVM_CAP_HYPERV_ENLIGHTENED_VMCS = 163;
export const KVM_CAP_EXCEPTION_PAYLOAD = 164;
export const KVM_CAP_HYPERV_CPUID = 167;
export const KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 = 168;
export const KVM_CAP_PMU_EVENT_FILTER = 173;
export const KVM_CAP_HYPERV_DIRECT_TLBFLUSH = 175;
export const KVM_CAP_HALT_POLL = 182;
export const KVM_CAP_ASYNC_PF_INT = 183;
export const KVM_CAP_LAST_CPU = 184;
export const KVM_CAP_SMALLER_MAXPHYADDR = 185;
export const KVM_CAP_STEAL_TIME = 187;
export const KVM_CAP_X86_USER_SPACE_MSR = 188;
export const KVM_CAP_X86_MSR_FILTER = 189;
export const KVM_CAP_ENFORCE_PV_FEATURE_CPUID = 190;
export const KVM_CAP_SYS_HYPERV_CPUID = 191;
export const KVM_CAP_DIRTY_LOG_RING = 192;
export const KVM_CAP_X86_BUS_LOCK_EXIT = 193;
export const KVM_CAP_SET_GUEST_DEBUG2 = 195;
export const KVM_CAP_SGX_ATTRIBUTE = 196;
export const KVM_CAP_VM_COPY_ENC_CONTEXT_FROM = 197;
export const KVM_CAP_HYPERV_ENFORCE_CPUID = 199;
export const KVM_CAP_SREGS2 = 200;
export const KVM_CAP_EXIT_HYPERCALL = 201;
export const KVM_CAP_BINARY_STATS_FD = 203;
export const KVM_CAP_EXIT_ON_EMULATION_FAILURE = 204;
export const KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM = 206;
export const KVM_CAP_SYS_ATTRIBUTES = 209;
export const KVM_CAP_DISABLE_QUIRKS2 = 213;
export const KVM_CAP_NR_VCPUS = 9;
export const KVM_CAP_X86_DISABLE_EXITS = 143;
export const KVM_CAP_NESTED_STATE = 157;
export const KVM_CAP_XSAVE2 = 208;
export const KVM_CAP_SYSTEM_EVENT_DATA = 215;
export const KVM_CAP_X86_TRIPLE_FAULT_EVENT = 218;
export const KVM_CAP_X86_NOTIFY_VMEXIT = 219;
export const KVM_CAP_VM_DISABLE_NX_HUGE_PAGES = 220;
export const KVM_CAP_DIRTY_LOG_RING_ACQ_REL = 223;
export const KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP = 225;
export const KVM_CAP_PMU_EVENT_MASKED_EVENTS = 226;
export const KVM_CAP_USER_MEMORY2 = 231;
export const KVM_CAP_MEMORY_FAULT_INFO = 232;
export const KVM_CAP_MEMORY_ATTRIBUTES = 233;
export const KVM_CAP_GUEST_MEMFD = 234;
export const KVM_CAP_VM_TYPES = 235;
export const KVM_CAP_PRE_FAULT_MEMORY = 236;
export const KVM_CAP_X86_APIC_BUS_CYCLES_NS = 237;
export const KVM_CAP_X86_GUEST_MODE = 238;

/* x86 VM types (KVM_CREATE_VM argument) */
export const KVM_X86_DEFAULT_VM = 0;
export const KVM_X86_SW_PROTECTED_VM = 1;
export const KVM_X86_SEV_VM = 2;
export const KVM_X86_SEV_ES_VM = 3;
export const KVM_X86_SNP_VM = 4;

/* Capability values that are flag sets */
export const KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE = 1 << 0;
export const KVM_DIRTY_LOG_INITIALLY_SET = 1 << 1;
export const KVM_MEMORY_ATTRIBUTE_PRIVATE = 1 << 3;
export const KVM_COALESCED_MMIO_PAGE_OFFSET = 2;
export const KVM_GUESTDBG_ENABLE = 0x00000001;
export const KVM_GUESTDBG_SINGLESTEP = 0x00000002;
export const KVM_GUESTDBG_USE_SW_BP = 0x00010000;
export const KVM_GUESTDBG_USE_HW_BP = 0x00020000;
export const KVM_GUESTDBG_INJECT_DB = 0x00040000;
export const KVM_GUESTDBG_INJECT_BP = 0x00080000;
export const KVM_GUESTDBG_BLOCKIRQ = 0x00100000;
export const KVM_SYNC_X86_REGS = 1 << 0;
export const KVM_SYNC_X86_SREGS = 1 << 1;
export const KVM_SYNC_X86_EVENTS = 1 << 2;
export const KVM_CLOCK_TSC_STABLE = 2;
export const KVM_CLOCK_REALTIME = 1 << 2;
export const KVM_CLOCK_HOST_TSC = 1 << 3;
export const KVM_X2APIC_API_USE_32BIT_IDS = 1 << 0;
export const KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK = 1 << 1;
export const KVM_X86_QUIRK_LINT0_REENABLED = 1 << 0;
export const KVM_X86_QUIRK_CD_NW_CLEARED = 1 << 1;
export const KVM_X86_QUIRK_LAPIC_MMIO_HOLE = 1 << 2;
export const KVM_X86_QUIRK_OUT_7E_INC_RIP = 1 << 3;
export const KVM_X86_QUIRK_MISC_ENABLE_NO_MWAIT = 1 << 4;
export const KVM_X86_QUIRK_FIX_HYPERCALL_INSN = 1 << 5;
export const KVM_X86_QUIRK_MWAIT_NEVER_UD_FAULTS = 1 << 6;
export const KVM_X86_QUIRK_SLOT_ZAP_ALL = 1 << 7;
/* 6.12 stable (6.12.y backports of 6.14-6.19 commits) */
export const KVM_X86_QUIRK_STUFF_FEATURE_MSRS = 1 << 8;
export const KVM_X86_QUIRK_IGNORE_GUEST_PAT = 1 << 9;
export const KVM_X86_QUIRK_VMCS12_ALLOW_FREEZE_IN_SMM = 1 << 10;
export const KVM_X86_DISABLE_EXITS_MWAIT = 1 << 0;
export const KVM_X86_DISABLE_EXITS_HLT = 1 << 1;
export const KVM_X86_DISABLE_EXITS_PAUSE = 1 << 2;
export const KVM_X86_DISABLE_EXITS_CSTATE = 1 << 3;
/* KVM_{GET,HAS}_DEVICE_ATTR on /dev/kvm (arch/x86/include/uapi/asm/kvm.h) */
export const KVM_X86_GRP_SYSTEM = 0;
export const KVM_X86_XCOMP_GUEST_SUPP = 0;
export const KVM_X86_GRP_SEV = 1;
export const KVM_X86_SEV_VMSA_FEATURES = 0;
export const KVM_STATE_NESTED_SVM_VMCB_SIZE = 0x1000;
export const KVM_XEN_HVM_CONFIG_HYPERCALL_MSR = 1 << 0;
export const KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL = 1 << 1;
export const KVM_XEN_HVM_CONFIG_SHARED_INFO = 1 << 2;
export const KVM_XEN_HVM_CONFIG_RUNSTATE = 1 << 3;
export const KVM_XEN_HVM_CONFIG_EVTCHN_2LEVEL = 1 << 4;
export const KVM_XEN_HVM_CONFIG_EVTCHN_SEND = 1 << 5;
export const KVM_XEN_HVM_CONFIG_RUNSTATE_UPDATE_FLAG = 1 << 6;
export const KVM_XEN_HVM_CONFIG_PVCLOCK_TSC_UNSTABLE = 1 << 7;
export const KVM_XEN_HVM_CONFIG_SHARED_INFO_HVA = 1 << 8;
/** include/uapi/linux/kvm_para.h */
export const KVM_HC_MAP_GPA_RANGE = 12;

/* Device control API */
export const KVM_CREATE_DEVICE_TEST = 1;

/** enum kvm_device_type */
export const KVM_DEV_TYPE_FSL_MPIC_20 = 1;
export const KVM_DEV_TYPE_FSL_MPIC_42 = 2;
export const KVM_DEV_TYPE_XICS = 3;
export const KVM_DEV_TYPE_VFIO = 4;
export const KVM_DEV_TYPE_ARM_VGIC_V2 = 5;
export const KVM_DEV_TYPE_FLIC = 6;
export const KVM_DEV_TYPE_ARM_VGIC_V3 = 7;
export const KVM_DEV_TYPE_ARM_VGIC_ITS = 8;
export const KVM_DEV_TYPE_XIVE = 9;
export const KVM_DEV_TYPE_ARM_PV_TIME = 10;
export const KVM_DEV_TYPE_RISCV_AIA = 11;
export const KVM_DEV_TYPE_MAX = 12;

/* kvm-vfio attribute groups and attributes; the GROUP names are the FILE ones (aliases). */
export const KVM_DEV_VFIO_FILE = 1;
export const KVM_DEV_VFIO_FILE_ADD = 1;
export const KVM_DEV_VFIO_FILE_DEL = 2;
export const KVM_DEV_VFIO_GROUP = KVM_DEV_VFIO_FILE;
export const KVM_DEV_VFIO_GROUP_ADD = KVM_DEV_VFIO_FILE_ADD;
export const KVM_DEV_VFIO_GROUP_DEL = KVM_DEV_VFIO_FILE_DEL;
export const KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE = 3;

export const kvm_create_device = struct("kvm_create_device", [
  ["type", "u32"],
  ["fd", "u32"],
  ["flags", "u32"],
] as const);

export const kvm_device_attr = struct("kvm_device_attr", [
  ["flags", "u32"],
  ["group", "u32"],
  ["attr", "u64"],
  ["addr", "u64"],
] as const);

export const kvm_vfio_spapr_tce = struct("kvm_vfio_spapr_tce", [
  ["groupfd", "s32"],
  ["tablefd", "s32"],
] as const);

/* Memory slots (KVM_SET_USER_MEMORY_REGION) */
export const KVM_MEM_LOG_DIRTY_PAGES = 1 << 0;
export const KVM_MEM_READONLY = 1 << 1;
export const KVM_MEM_GUEST_MEMFD = 1 << 2;

export const kvm_userspace_memory_region = struct("kvm_userspace_memory_region", [
  ["slot", "u32"],
  ["flags", "u32"],
  ["guest_phys_addr", "u64"],
  ["memory_size", "u64"],
  ["userspace_addr", "u64"],
] as const);

/* struct kvm_run exit_reason values (the ones the model produces) */
export const KVM_EXIT_UNKNOWN = 0;
export const KVM_EXIT_IO = 2;
export const KVM_EXIT_HLT = 5;
export const KVM_EXIT_MMIO = 6;
export const KVM_EXIT_SHUTDOWN = 8;
export const KVM_EXIT_FAIL_ENTRY = 9;
export const KVM_EXIT_INTERNAL_ERROR = 17;

/* POWER (book3s) */
export const KVM_CAP_SPAPR_MULTITCE = 94;
export const KVM_CAP_PPC_ENABLE_HCALL = 104;
export const KVM_EXIT_INTR = 10;
export const KVM_EXIT_PAPR_HCALL = 19;
/** arch/powerpc/include/uapi/asm/kvm.h; the request number encodes its 32 bytes. */
export const kvm_create_spapr_tce_64 = struct("kvm_create_spapr_tce_64", [
  ["liobn", "u64"],
  ["page_shift", "u32"],
  ["flags", "u32"],
  ["offset", "u64"],
  ["size", "u64"],
] as const);
export const KVM_CREATE_SPAPR_TCE_64 = _IOW(KVMIO, 0xa8, 32);
/** struct kvm_enable_cap: cap, flags, args[4], 64 bytes of padding (104 bytes). */
export const kvm_enable_cap = struct("kvm_enable_cap", [
  ["cap", "u32"],
  ["flags", "u32"],
  ["arg0", "u64"],
  ["arg1", "u64"],
  ["arg2", "u64"],
  ["arg3", "u64"],
] as const);
