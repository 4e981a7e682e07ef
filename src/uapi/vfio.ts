/**
 * include/uapi/linux/vfio.h (Linux 6.12): request numbers, flags and struct layouts.
 * Every VFIO ioctl is _IO(';', 100 + n); numbers overlap between fd kinds and the fd
 * decides the meaning (vfio.h, "IOCTLs for VFIO file descriptor").
 */
import { _IO } from "./ioctl.js";
import { struct } from "./struct.js";

const VFIO_TYPE = ";";
const VFIO_BASE = 100;
const V = (n: number) => _IO(VFIO_TYPE, VFIO_BASE + n);

export const VFIO_API_VERSION = 0;

/* Extensions / IOMMU types */
export const VFIO_TYPE1_IOMMU = 1;
export const VFIO_SPAPR_TCE_IOMMU = 2;
export const VFIO_TYPE1v2_IOMMU = 3;
export const VFIO_DMA_CC_IOMMU = 4;
export const VFIO_EEH = 5;
export const VFIO_TYPE1_NESTING_IOMMU = 6;
export const VFIO_SPAPR_TCE_v2_IOMMU = 7;
export const VFIO_NOIOMMU_IOMMU = 8;
export const VFIO_UNMAP_ALL = 9;
export const VFIO_UPDATE_VADDR = 10;

/* Container */
export const VFIO_GET_API_VERSION = V(0);
export const VFIO_CHECK_EXTENSION = V(1);
export const VFIO_SET_IOMMU = V(2);
/* Group */
export const VFIO_GROUP_GET_STATUS = V(3);
export const VFIO_GROUP_SET_CONTAINER = V(4);
export const VFIO_GROUP_UNSET_CONTAINER = V(5);
export const VFIO_GROUP_GET_DEVICE_FD = V(6);
/* Device */
export const VFIO_DEVICE_GET_INFO = V(7);
export const VFIO_DEVICE_GET_REGION_INFO = V(8);
export const VFIO_DEVICE_GET_IRQ_INFO = V(9);
export const VFIO_DEVICE_SET_IRQS = V(10);
export const VFIO_DEVICE_RESET = V(11);
export const VFIO_DEVICE_GET_PCI_HOT_RESET_INFO = V(12);
export const VFIO_DEVICE_PCI_HOT_RESET = V(13);
export const VFIO_DEVICE_QUERY_GFX_PLANE = V(14);
export const VFIO_DEVICE_GET_GFX_DMABUF = V(15);
export const VFIO_DEVICE_IOEVENTFD = V(16);
export const VFIO_DEVICE_FEATURE = V(17);
export const VFIO_DEVICE_BIND_IOMMUFD = V(18);
export const VFIO_DEVICE_ATTACH_IOMMUFD_PT = V(19);
export const VFIO_DEVICE_DETACH_IOMMUFD_PT = V(20);
export const VFIO_MIG_GET_PRECOPY_INFO = V(21);
/* IOMMU backends (container fd) */
export const VFIO_IOMMU_GET_INFO = V(12);
export const VFIO_IOMMU_MAP_DMA = V(13);
export const VFIO_IOMMU_UNMAP_DMA = V(14);
export const VFIO_IOMMU_ENABLE = V(15);
export const VFIO_IOMMU_DISABLE = V(16);
export const VFIO_IOMMU_DIRTY_PAGES = V(17);
export const VFIO_IOMMU_SPAPR_TCE_GET_INFO = V(12);
export const VFIO_IOMMU_SPAPR_REGISTER_MEMORY = V(17);
export const VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY = V(18);
export const VFIO_IOMMU_SPAPR_TCE_CREATE = V(19);
export const VFIO_IOMMU_SPAPR_TCE_REMOVE = V(20);
export const VFIO_EEH_PE_OP = V(21);

export const VFIO_GROUP_FLAGS_VIABLE = 1 << 0;
export const VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1;

export const VFIO_DEVICE_FLAGS_RESET = 1 << 0;
export const VFIO_DEVICE_FLAGS_PCI = 1 << 1;
export const VFIO_DEVICE_FLAGS_CAPS = 1 << 7;

export const VFIO_REGION_INFO_FLAG_READ = 1 << 0;
export const VFIO_REGION_INFO_FLAG_WRITE = 1 << 1;
export const VFIO_REGION_INFO_FLAG_MMAP = 1 << 2;
export const VFIO_REGION_INFO_FLAG_CAPS = 1 << 3;
export const VFIO_REGION_INFO_CAP_SPARSE_MMAP = 1;
export const VFIO_REGION_INFO_CAP_TYPE = 2;
export const VFIO_REGION_INFO_CAP_MSIX_MAPPABLE = 3;

export const VFIO_IRQ_INFO_EVENTFD = 1 << 0;
export const VFIO_IRQ_INFO_MASKABLE = 1 << 1;
export const VFIO_IRQ_INFO_AUTOMASKED = 1 << 2;
export const VFIO_IRQ_INFO_NORESIZE = 1 << 3;

export const VFIO_IRQ_SET_DATA_NONE = 1 << 0;
export const VFIO_IRQ_SET_DATA_BOOL = 1 << 1;
export const VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2;
export const VFIO_IRQ_SET_ACTION_MASK = 1 << 3;
export const VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4;
export const VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5;
export const VFIO_IRQ_SET_DATA_TYPE_MASK =
  VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_EVENTFD;
export const VFIO_IRQ_SET_ACTION_TYPE_MASK =
  VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_TRIGGER;

/* vfio-pci region and IRQ indices */
export const VFIO_PCI_BAR0_REGION_INDEX = 0;
export const VFIO_PCI_ROM_REGION_INDEX = 6;
export const VFIO_PCI_CONFIG_REGION_INDEX = 7;
export const VFIO_PCI_VGA_REGION_INDEX = 8;
export const VFIO_PCI_NUM_REGIONS = 9;
export const VFIO_PCI_INTX_IRQ_INDEX = 0;
export const VFIO_PCI_MSI_IRQ_INDEX = 1;
export const VFIO_PCI_MSIX_IRQ_INDEX = 2;
export const VFIO_PCI_ERR_IRQ_INDEX = 3;
export const VFIO_PCI_REQ_IRQ_INDEX = 4;
export const VFIO_PCI_NUM_IRQS = 5;
/** vfio_pci_core.h: a region's file offset is its index << 40. */
export const VFIO_PCI_OFFSET_SHIFT = 40n;

export const VFIO_IOMMU_INFO_PGSIZES = 1 << 0;
export const VFIO_IOMMU_INFO_CAPS = 1 << 1;
export const VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1;
export const VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION = 2;
export const VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3;

export const VFIO_DMA_MAP_FLAG_READ = 1 << 0;
export const VFIO_DMA_MAP_FLAG_WRITE = 1 << 1;
export const VFIO_DMA_MAP_FLAG_VADDR = 1 << 2;
export const VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1 << 0;
export const VFIO_DMA_UNMAP_FLAG_ALL = 1 << 1;
export const VFIO_DMA_UNMAP_FLAG_VADDR = 1 << 2;

export const VFIO_IOMMU_DIRTY_PAGES_FLAG_START = 1 << 0;
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP = 1 << 1;
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP = 1 << 2;

export const vfio_group_status = struct("vfio_group_status", [
  ["argsz", "u32"],
  ["flags", "u32"],
] as const);

export const vfio_device_info = struct("vfio_device_info", [
  ["argsz", "u32"],
  ["flags", "u32"],
  ["num_regions", "u32"],
  ["num_irqs", "u32"],
  ["cap_offset", "u32"],
  ["pad", "u32"],
] as const);

export const vfio_region_info = struct("vfio_region_info", [
  ["argsz", "u32"],
  ["flags", "u32"],
  ["index", "u32"],
  ["cap_offset", "u32"],
  ["size", "u64"],
  ["offset", "u64"],
] as const);

export const vfio_info_cap_header = struct("vfio_info_cap_header", [
  ["id", "u16"],
  ["version", "u16"],
  ["next", "u32"],
] as const);

export const vfio_irq_info = struct("vfio_irq_info", [
  ["argsz", "u32"],
  ["flags", "u32"],
  ["index", "u32"],
  ["count", "u32"],
] as const);

/** Followed by u8 data[]. */
export const vfio_irq_set = struct("vfio_irq_set", [
  ["argsz", "u32"],
  ["flags", "u32"],
  ["index", "u32"],
  ["start", "u32"],
  ["count", "u32"],
] as const);

export const vfio_iommu_type1_info = struct("vfio_iommu_type1_info", [
  ["argsz", "u32"],
  ["flags", "u32"],
  ["iova_pgsizes", "u64"],
  ["cap_offset", "u32"],
  ["pad", "u32"],
] as const);

/* Type1 GET_INFO capabilities: each starts with struct vfio_info_cap_header. */
export const vfio_iommu_type1_info_cap_iova_range = struct("vfio_iommu_type1_info_cap_iova_range", [
  ["id", "u16"],
  ["version", "u16"],
  ["next", "u32"],
  ["nr_iovas", "u32"],
  ["reserved", "u32"],
] as const);

/** The iova_ranges[] entries that follow vfio_iommu_type1_info_cap_iova_range. */
export const vfio_iova_range = struct("vfio_iova_range", [
  ["start", "u64"],
  ["end", "u64"],
] as const);

export const vfio_iommu_type1_info_cap_migration = struct("vfio_iommu_type1_info_cap_migration", [
  ["id", "u16"],
  ["version", "u16"],
  ["next", "u32"],
  ["flags", "u32"],
  ["pgsize_bitmap", "u64"],
  ["max_dirty_bitmap_size", "u64"],
] as const);

export const vfio_iommu_type1_info_dma_avail = struct("vfio_iommu_type1_info_dma_avail", [
  ["id", "u16"],
  ["version", "u16"],
  ["next", "u32"],
  ["avail", "u32"],
] as const);

export const vfio_iommu_type1_dma_map = struct("vfio_iommu_type1_dma_map", [
  ["argsz", "u32"],
  ["flags", "u32"],
  ["vaddr", "u64"],
  ["iova", "u64"],
  ["size", "u64"],
] as const);

/** Followed by u8 data[] (a struct vfio_bitmap with GET_DIRTY_BITMAP). */
export const vfio_iommu_type1_dma_unmap = struct("vfio_iommu_type1_dma_unmap", [
  ["argsz", "u32"],
  ["flags", "u32"],
  ["iova", "u64"],
  ["size", "u64"],
] as const);

export const vfio_bitmap = struct("vfio_bitmap", [
  ["pgsize", "u64"],
  ["size", "u64"],
  ["data", "u64"],
] as const);

/** Followed by u8 data[] (struct vfio_iommu_type1_dirty_bitmap_get). */
export const vfio_iommu_type1_dirty_bitmap = struct("vfio_iommu_type1_dirty_bitmap", [
  ["argsz", "u32"],
  ["flags", "u32"],
] as const);

export const vfio_iommu_type1_dirty_bitmap_get = struct("vfio_iommu_type1_dirty_bitmap_get", [
  ["iova", "u64"],
  ["size", "u64"],
  ["bitmap_pgsize", "u64"],
  ["bitmap_size", "u64"],
  ["bitmap_data", "u64"],
] as const);

export const vfio_device_bind_iommufd = struct("vfio_device_bind_iommufd", [
  ["argsz", "u32"],
  ["flags", "u32"],
  ["iommufd", "s32"],
  ["out_devid", "u32"],
] as const);

export const vfio_device_attach_iommufd_pt = struct("vfio_device_attach_iommufd_pt", [
  ["argsz", "u32"],
  ["flags", "u32"],
  ["pt_id", "u32"],
] as const);

export const vfio_device_detach_iommufd_pt = struct("vfio_device_detach_iommufd_pt", [
  ["argsz", "u32"],
  ["flags", "u32"],
] as const);

/** VFIO_DEVICE_FEATURE: followed by the feature's data[]. */
export const vfio_device_feature = struct("vfio_device_feature", [
  ["argsz", "u32"],
  ["flags", "u32"],
] as const);
export const VFIO_DEVICE_FEATURE_MASK = 0xffff;
export const VFIO_DEVICE_FEATURE_GET = 1 << 16;
export const VFIO_DEVICE_FEATURE_SET = 1 << 17;
export const VFIO_DEVICE_FEATURE_PROBE = 1 << 18;
export const VFIO_DEVICE_FEATURE_PCI_VF_TOKEN = 0;
export const VFIO_DEVICE_FEATURE_MIGRATION = 1;
export const VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE = 2;
export const VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY = 3;
export const VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP = 4;
export const VFIO_DEVICE_FEATURE_LOW_POWER_EXIT = 5;
export const VFIO_DEVICE_FEATURE_DMA_LOGGING_START = 6;
export const VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP = 7;
export const VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT = 8;
export const VFIO_DEVICE_FEATURE_MIG_DATA_SIZE = 9;
export const VFIO_DEVICE_FEATURE_BUS_MASTER = 10;

/* vfio-pci device ioctls */
export const VFIO_PCI_BAR5_REGION_INDEX = 5;

export const VFIO_DEVICE_INFO_CAP_PCI_ATOMIC_COMP = 5;
export const VFIO_PCI_ATOMIC_COMP32 = 1 << 0;
export const VFIO_PCI_ATOMIC_COMP64 = 1 << 1;
export const VFIO_PCI_ATOMIC_COMP128 = 1 << 2;

export const vfio_device_info_cap_pci_atomic_comp = struct("vfio_device_info_cap_pci_atomic_comp", [
  ["id", "u16"],
  ["version", "u16"],
  ["next", "u32"],
  ["flags", "u32"],
  ["reserved", "u32"],
] as const);

export const VFIO_PCI_HOT_RESET_FLAG_DEV_ID = 1 << 0;
export const VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED = 1 << 1;
/** A dependent device's devid: owned through a device of its group / not owned (-1). */
export const VFIO_PCI_DEVID_OWNED = 0;
export const VFIO_PCI_DEVID_NOT_OWNED = 0xffffffff;

/** Followed by struct vfio_pci_dependent_device devices[]. */
export const vfio_pci_hot_reset_info = struct("vfio_pci_hot_reset_info", [
  ["argsz", "u32"],
  ["flags", "u32"],
  ["count", "u32"],
] as const);

/** group_id (or devid, for cdev-opened devices) */
export const vfio_pci_dependent_device = struct("vfio_pci_dependent_device", [
  ["group_id", "u32"],
  ["segment", "u16"],
  ["bus", "u8"],
  ["devfn", "u8"],
] as const);

/** Followed by s32 group_fds[]. */
export const vfio_pci_hot_reset = struct("vfio_pci_hot_reset", [
  ["argsz", "u32"],
  ["flags", "u32"],
  ["count", "u32"],
] as const);

export const VFIO_DEVICE_IOEVENTFD_SIZE_MASK = 0xf;

export const vfio_device_ioeventfd = struct("vfio_device_ioeventfd", [
  ["argsz", "u32"],
  ["flags", "u32"],
  ["offset", "u64"],
  ["data", "u64"],
  ["fd", "s32"],
  ["reserved", "u32"],
] as const);

/* sPAPR TCE IOMMU (VFIO_SPAPR_TCE_IOMMU / VFIO_SPAPR_TCE_v2_IOMMU containers). */
export const VFIO_IOMMU_SPAPR_INFO_DDW = 1 << 0;
/** struct vfio_iommu_spapr_tce_info with its struct vfio_iommu_spapr_tce_ddw_info inlined. */
export const vfio_iommu_spapr_tce_info = struct("vfio_iommu_spapr_tce_info", [
  ["argsz", "u32"],
  ["flags", "u32"],
  ["dma32_window_start", "u32"],
  ["dma32_window_size", "u32"],
  ["pgsizes", "u64"],
  ["max_dynamic_windows_supported", "u32"],
  ["levels", "u32"],
] as const);
export const vfio_iommu_spapr_register_memory = struct("vfio_iommu_spapr_register_memory", [
  ["argsz", "u32"],
  ["flags", "u32"],
  ["vaddr", "u64"],
  ["size", "u64"],
] as const);
export const vfio_iommu_spapr_tce_create = struct("vfio_iommu_spapr_tce_create", [
  ["argsz", "u32"],
  ["flags", "u32"],
  ["page_shift", "u32"],
  ["__resv1", "u32"],
  ["window_size", "u64"],
  ["levels", "u32"],
  ["__resv2", "u32"],
  ["start_addr", "u64"],
] as const);
export const vfio_iommu_spapr_tce_remove = struct("vfio_iommu_spapr_tce_remove", [
  ["argsz", "u32"],
  ["flags", "u32"],
  ["start_addr", "u64"],
] as const);

/* EEH on sPAPR containers (VFIO_EEH_PE_OP). */
export const VFIO_EEH_PE_DISABLE = 0;
export const VFIO_EEH_PE_ENABLE = 1;
export const VFIO_EEH_PE_UNFREEZE_IO = 2;
export const VFIO_EEH_PE_UNFREEZE_DMA = 3;
export const VFIO_EEH_PE_GET_STATE = 4;
export const VFIO_EEH_PE_STATE_NORMAL = 0;
export const VFIO_EEH_PE_STATE_RESET = 1;
export const VFIO_EEH_PE_STATE_STOPPED = 2;
export const VFIO_EEH_PE_STATE_STOPPED_DMA = 4;
export const VFIO_EEH_PE_STATE_UNAVAIL = 5;
export const VFIO_EEH_PE_RESET_DEACTIVATE = 5;
export const VFIO_EEH_PE_RESET_HOT = 6;
export const VFIO_EEH_PE_RESET_FUNDAMENTAL = 7;
export const VFIO_EEH_PE_CONFIGURE = 8;
export const VFIO_EEH_PE_INJECT_ERR = 9;
/**
 * struct vfio_eeh_pe_op: the union (struct vfio_eeh_pe_err) is 8-byte aligned, so it
 * starts at 16 behind 4 bytes of padding (`__pad`, not a uAPI name).
 */
export const vfio_eeh_pe_op = struct("vfio_eeh_pe_op", [
  ["argsz", "u32"],
  ["flags", "u32"],
  ["op", "u32"],
  ["__pad", "u32"],
  ["type", "u32"],
  ["func", "u32"],
  ["addr", "u64"],
  ["mask", "u64"],
] as const);
