/**
 * Request names → ioctl numbers, as the oracle agent's tables.c builds them from the uAPI
 * headers. Scripts name a request and give its number; the two must agree.
 */
import * as I from "./iommufd.js";
import * as K from "./kvm.js";
import * as V from "./vfio.js";

const VFIO_REQUESTS = [
  "VFIO_GET_API_VERSION",
  "VFIO_CHECK_EXTENSION",
  "VFIO_SET_IOMMU",
  "VFIO_GROUP_GET_STATUS",
  "VFIO_GROUP_SET_CONTAINER",
  "VFIO_GROUP_UNSET_CONTAINER",
  "VFIO_GROUP_GET_DEVICE_FD",
  "VFIO_DEVICE_GET_INFO",
  "VFIO_DEVICE_GET_REGION_INFO",
  "VFIO_DEVICE_GET_IRQ_INFO",
  "VFIO_DEVICE_SET_IRQS",
  "VFIO_DEVICE_RESET",
  "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO",
  "VFIO_DEVICE_PCI_HOT_RESET",
  "VFIO_DEVICE_QUERY_GFX_PLANE",
  "VFIO_DEVICE_GET_GFX_DMABUF",
  "VFIO_DEVICE_IOEVENTFD",
  "VFIO_DEVICE_FEATURE",
  "VFIO_DEVICE_BIND_IOMMUFD",
  "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
  "VFIO_DEVICE_DETACH_IOMMUFD_PT",
  "VFIO_MIG_GET_PRECOPY_INFO",
  "VFIO_IOMMU_GET_INFO",
  "VFIO_IOMMU_MAP_DMA",
  "VFIO_IOMMU_UNMAP_DMA",
  "VFIO_IOMMU_ENABLE",
  "VFIO_IOMMU_DISABLE",
  "VFIO_IOMMU_DIRTY_PAGES",
  "VFIO_IOMMU_SPAPR_TCE_GET_INFO",
  "VFIO_EEH_PE_OP",
  "VFIO_IOMMU_SPAPR_REGISTER_MEMORY",
  "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY",
  "VFIO_IOMMU_SPAPR_TCE_CREATE",
  "VFIO_IOMMU_SPAPR_TCE_REMOVE",
] as const;

/** linux/kvm.h: system, VM and device requests (the agent lists no vCPU state requests). */
const KVM_REQUESTS = [
  "KVM_GET_API_VERSION",
  "KVM_CREATE_VM",
  "KVM_CHECK_EXTENSION",
  "KVM_GET_VCPU_MMAP_SIZE",
  "KVM_CREATE_VCPU",
  "KVM_GET_DIRTY_LOG",
  "KVM_SET_USER_MEMORY_REGION",
  "KVM_SET_USER_MEMORY_REGION2",
  "KVM_SET_TSS_ADDR",
  "KVM_SET_IDENTITY_MAP_ADDR",
  "KVM_CREATE_IRQCHIP",
  "KVM_IRQ_LINE",
  "KVM_SET_GSI_ROUTING",
  "KVM_IRQFD",
  "KVM_IOEVENTFD",
  "KVM_SIGNAL_MSI",
  "KVM_ENABLE_CAP",
  "KVM_CREATE_PIT2",
  "KVM_GET_CLOCK",
  "KVM_SET_CLOCK",
  "KVM_CREATE_DEVICE",
  "KVM_SET_DEVICE_ATTR",
  "KVM_GET_DEVICE_ATTR",
  "KVM_HAS_DEVICE_ATTR",
  "KVM_RUN",
  "KVM_CLEAR_DIRTY_LOG",
  "KVM_GET_STATS_FD",
] as const;

/** linux/iommufd.h (6.12: no IOAS_MAP_FILE, vIOMMU or CHANGE_PROCESS yet). */
const IOMMUFD_REQUESTS = [
  "IOMMU_DESTROY",
  "IOMMU_IOAS_ALLOC",
  "IOMMU_IOAS_IOVA_RANGES",
  "IOMMU_IOAS_ALLOW_IOVAS",
  "IOMMU_IOAS_MAP",
  "IOMMU_IOAS_COPY",
  "IOMMU_IOAS_UNMAP",
  "IOMMU_OPTION",
  "IOMMU_VFIO_IOAS",
  "IOMMU_HWPT_ALLOC",
  "IOMMU_GET_HW_INFO",
  "IOMMU_HWPT_SET_DIRTY_TRACKING",
  "IOMMU_HWPT_GET_DIRTY_BITMAP",
  "IOMMU_HWPT_INVALIDATE",
  "IOMMU_FAULT_QUEUE_ALLOC",
] as const;

export const REQUESTS = new Map<string, number>([
  ...VFIO_REQUESTS.map((n): [string, number] => [
    n,
    (V as unknown as Record<string, number>)[n] as number,
  ]),
  ...KVM_REQUESTS.map((n): [string, number] => [
    n,
    (K as unknown as Record<string, number>)[n] as number,
  ]),
  ...IOMMUFD_REQUESTS.map((n): [string, number] => [
    n,
    (I as unknown as Record<string, number>)[n] as number,
  ]),
]);

/**
 * Requests only a POWER kernel has (asm/kvm.h of powerpc), in the generic layout like
 * the rest; the oracle agent is x86, so they are kept out of REQUESTS.
 */
export const POWERPC_REQUESTS = new Map<string, number>([
  ["KVM_CREATE_SPAPR_TCE_64", K.KVM_CREATE_SPAPR_TCE_64],
]);

/**
 * Requests that were proposed and never merged (the "2021-proposal" KVM profile): no real
 * kernel and no oracle agent knows them, so they are kept out of REQUESTS.
 */
export const PROPOSED_REQUESTS = new Map<string, number>([
  ["KVM_ALLOW_INCOHERENT_DMA", K.KVM_ALLOW_INCOHERENT_DMA],
  ["KVM_DISALLOW_INCOHERENT_DMA", K.KVM_DISALLOW_INCOHERENT_DMA],
]);
