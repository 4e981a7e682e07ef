/**
 * include/uapi/linux/iommufd.h (Linux 6.12.117): request numbers, flags, enums and struct
 * layouts of /dev/iommu. Every request is _IO(';', 0x80 + n) and every argument struct
 * starts with a u32 `size` (the extensible-struct rule of drivers/iommu/iommufd/main.c:
 * shorter than the last mandatory field is EINVAL, longer is accepted when the tail is
 * zero and E2BIG when it is not).
 */
import { _IO } from "./ioctl.js";
import { struct } from "./struct.js";

const IOMMUFD_TYPE = ";";
export const IOMMUFD_CMD_BASE = 0x80;
const I = (n: number) => _IO(IOMMUFD_TYPE, n);

export const IOMMUFD_CMD_DESTROY = IOMMUFD_CMD_BASE;
export const IOMMUFD_CMD_IOAS_ALLOC = 0x81;
export const IOMMUFD_CMD_IOAS_ALLOW_IOVAS = 0x82;
export const IOMMUFD_CMD_IOAS_COPY = 0x83;
export const IOMMUFD_CMD_IOAS_IOVA_RANGES = 0x84;
export const IOMMUFD_CMD_IOAS_MAP = 0x85;
export const IOMMUFD_CMD_IOAS_UNMAP = 0x86;
export const IOMMUFD_CMD_OPTION = 0x87;
export const IOMMUFD_CMD_VFIO_IOAS = 0x88;
export const IOMMUFD_CMD_HWPT_ALLOC = 0x89;
export const IOMMUFD_CMD_GET_HW_INFO = 0x8a;
export const IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING = 0x8b;
export const IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP = 0x8c;
export const IOMMUFD_CMD_HWPT_INVALIDATE = 0x8d;
export const IOMMUFD_CMD_FAULT_QUEUE_ALLOC = 0x8e;

export const IOMMU_DESTROY = I(IOMMUFD_CMD_DESTROY);
export const IOMMU_IOAS_ALLOC = I(IOMMUFD_CMD_IOAS_ALLOC);
export const IOMMU_IOAS_ALLOW_IOVAS = I(IOMMUFD_CMD_IOAS_ALLOW_IOVAS);
export const IOMMU_IOAS_COPY = I(IOMMUFD_CMD_IOAS_COPY);
export const IOMMU_IOAS_IOVA_RANGES = I(IOMMUFD_CMD_IOAS_IOVA_RANGES);
export const IOMMU_IOAS_MAP = I(IOMMUFD_CMD_IOAS_MAP);
export const IOMMU_IOAS_UNMAP = I(IOMMUFD_CMD_IOAS_UNMAP);
export const IOMMU_OPTION = I(IOMMUFD_CMD_OPTION);
export const IOMMU_VFIO_IOAS = I(IOMMUFD_CMD_VFIO_IOAS);
export const IOMMU_HWPT_ALLOC = I(IOMMUFD_CMD_HWPT_ALLOC);
export const IOMMU_GET_HW_INFO = I(IOMMUFD_CMD_GET_HW_INFO);
export const IOMMU_HWPT_SET_DIRTY_TRACKING = I(IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING);
export const IOMMU_HWPT_GET_DIRTY_BITMAP = I(IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP);
export const IOMMU_HWPT_INVALIDATE = I(IOMMUFD_CMD_HWPT_INVALIDATE);
export const IOMMU_FAULT_QUEUE_ALLOC = I(IOMMUFD_CMD_FAULT_QUEUE_ALLOC);

/* enum iommufd_ioas_map_flags */
export const IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0;
export const IOMMU_IOAS_MAP_WRITEABLE = 1 << 1;
export const IOMMU_IOAS_MAP_READABLE = 1 << 2;

/* enum iommufd_option, enum iommufd_option_ops */
export const IOMMU_OPTION_RLIMIT_MODE = 0;
export const IOMMU_OPTION_HUGE_PAGES = 1;
export const IOMMU_OPTION_OP_SET = 0;
export const IOMMU_OPTION_OP_GET = 1;

/* enum iommufd_vfio_ioas_op */
export const IOMMU_VFIO_IOAS_GET = 0;
export const IOMMU_VFIO_IOAS_SET = 1;
export const IOMMU_VFIO_IOAS_CLEAR = 2;

/* enum iommufd_hwpt_alloc_flags */
export const IOMMU_HWPT_ALLOC_NEST_PARENT = 1 << 0;
export const IOMMU_HWPT_ALLOC_DIRTY_TRACKING = 1 << 1;
export const IOMMU_HWPT_FAULT_ID_VALID = 1 << 2;

/* enum iommu_hwpt_vtd_s1_flags */
export const IOMMU_VTD_S1_SRE = 1 << 0;
export const IOMMU_VTD_S1_EAFE = 1 << 1;
export const IOMMU_VTD_S1_WPE = 1 << 2;

/* enum iommu_hwpt_data_type */
export const IOMMU_HWPT_DATA_NONE = 0;
export const IOMMU_HWPT_DATA_VTD_S1 = 1;

/* enum iommu_hw_info_vtd_flags, enum iommu_hw_info_type, enum iommufd_hw_capabilities */
export const IOMMU_HW_INFO_VTD_ERRATA_772415_SPR17 = 1 << 0;
export const IOMMU_HW_INFO_TYPE_NONE = 0;
export const IOMMU_HW_INFO_TYPE_INTEL_VTD = 1;
export const IOMMU_HW_CAP_DIRTY_TRACKING = 1 << 0;
export const IOMMU_HW_CAP_PCI_PASID_EXEC = 1 << 1;
export const IOMMU_HW_CAP_PCI_PASID_PRIV = 1 << 2;

/* enum iommufd_hwpt_set_dirty_tracking_flags, enum iommufd_hwpt_get_dirty_bitmap_flags */
export const IOMMU_HWPT_DIRTY_TRACKING_ENABLE = 1;
export const IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = 1;

/* enum iommu_hwpt_invalidate_data_type, enum iommu_hwpt_vtd_s1_invalidate_flags */
export const IOMMU_HWPT_INVALIDATE_DATA_VTD_S1 = 0;
export const IOMMU_VTD_INV_FLAGS_LEAF = 1 << 0;

export const iommu_destroy = struct("iommu_destroy", [
  ["size", "u32"],
  ["id", "u32"],
] as const);

export const iommu_ioas_alloc = struct("iommu_ioas_alloc", [
  ["size", "u32"],
  ["flags", "u32"],
  ["out_ioas_id", "u32"],
] as const);

export const iommu_iova_range = struct("iommu_iova_range", [
  ["start", "u64"],
  ["last", "u64"],
] as const);

export const iommu_ioas_iova_ranges = struct("iommu_ioas_iova_ranges", [
  ["size", "u32"],
  ["ioas_id", "u32"],
  ["num_iovas", "u32"],
  ["__reserved", "u32"],
  ["allowed_iovas", "u64"],
  ["out_iova_alignment", "u64"],
] as const);

export const iommu_ioas_allow_iovas = struct("iommu_ioas_allow_iovas", [
  ["size", "u32"],
  ["ioas_id", "u32"],
  ["num_iovas", "u32"],
  ["__reserved", "u32"],
  ["allowed_iovas", "u64"],
] as const);

export const iommu_ioas_map = struct("iommu_ioas_map", [
  ["size", "u32"],
  ["flags", "u32"],
  ["ioas_id", "u32"],
  ["__reserved", "u32"],
  ["user_va", "u64"],
  ["length", "u64"],
  ["iova", "u64"],
] as const);

export const iommu_ioas_copy = struct("iommu_ioas_copy", [
  ["size", "u32"],
  ["flags", "u32"],
  ["dst_ioas_id", "u32"],
  ["src_ioas_id", "u32"],
  ["length", "u64"],
  ["dst_iova", "u64"],
  ["src_iova", "u64"],
] as const);

export const iommu_ioas_unmap = struct("iommu_ioas_unmap", [
  ["size", "u32"],
  ["ioas_id", "u32"],
  ["iova", "u64"],
  ["length", "u64"],
] as const);

export const iommu_option = struct("iommu_option", [
  ["size", "u32"],
  ["option_id", "u32"],
  ["op", "u16"],
  ["__reserved", "u16"],
  ["object_id", "u32"],
  ["val64", "u64"],
] as const);

export const iommu_vfio_ioas = struct("iommu_vfio_ioas", [
  ["size", "u32"],
  ["ioas_id", "u32"],
  ["op", "u16"],
  ["__reserved", "u16"],
] as const);

export const iommu_hwpt_vtd_s1 = struct("iommu_hwpt_vtd_s1", [
  ["flags", "u64"],
  ["pgtbl_addr", "u64"],
  ["addr_width", "u32"],
  ["__reserved", "u32"],
] as const);

export const iommu_hwpt_alloc = struct("iommu_hwpt_alloc", [
  ["size", "u32"],
  ["flags", "u32"],
  ["dev_id", "u32"],
  ["pt_id", "u32"],
  ["out_hwpt_id", "u32"],
  ["__reserved", "u32"],
  ["data_type", "u32"],
  ["data_len", "u32"],
  ["data_uptr", "u64"],
  ["fault_id", "u32"],
  ["__reserved2", "u32"],
] as const);

export const iommu_hw_info_vtd = struct("iommu_hw_info_vtd", [
  ["flags", "u32"],
  ["__reserved", "u32"],
  ["cap_reg", "u64"],
  ["ecap_reg", "u64"],
] as const);

export const iommu_hw_info = struct("iommu_hw_info", [
  ["size", "u32"],
  ["flags", "u32"],
  ["dev_id", "u32"],
  ["data_len", "u32"],
  ["data_uptr", "u64"],
  ["out_data_type", "u32"],
  /* 6.12.117: the u32 __reserved became out_max_pasid_log2 and __u8 __reserved[3] */
  ["out_max_pasid_log2", "u8"],
  ["__reserved0", "u8"],
  ["__reserved1", "u8"],
  ["__reserved2", "u8"],
  ["out_capabilities", "u64"],
] as const);

export const iommu_hwpt_set_dirty_tracking = struct("iommu_hwpt_set_dirty_tracking", [
  ["size", "u32"],
  ["flags", "u32"],
  ["hwpt_id", "u32"],
  ["__reserved", "u32"],
] as const);

export const iommu_hwpt_get_dirty_bitmap = struct("iommu_hwpt_get_dirty_bitmap", [
  ["size", "u32"],
  ["hwpt_id", "u32"],
  ["flags", "u32"],
  ["__reserved", "u32"],
  ["iova", "u64"],
  ["length", "u64"],
  ["page_size", "u64"],
  ["data", "u64"],
] as const);

export const iommu_hwpt_vtd_s1_invalidate = struct("iommu_hwpt_vtd_s1_invalidate", [
  ["addr", "u64"],
  ["npages", "u64"],
  ["flags", "u32"],
  ["__reserved", "u32"],
] as const);

export const iommu_hwpt_invalidate = struct("iommu_hwpt_invalidate", [
  ["size", "u32"],
  ["hwpt_id", "u32"],
  ["data_uptr", "u64"],
  ["data_type", "u32"],
  ["entry_len", "u32"],
  ["entry_num", "u32"],
  ["__reserved", "u32"],
] as const);

export const iommu_fault_alloc = struct("iommu_fault_alloc", [
  ["size", "u32"],
  ["flags", "u32"],
  ["out_fault_id", "u32"],
  ["out_fault_fd", "u32"],
] as const);

/*
 * drivers/iommu/iommufd/iommufd_test.h: IOMMU_TEST_CMD, which only CONFIG_IOMMUFD_TEST
 * kernels have. struct iommu_test_cmd is a header, a 48-byte union at offset 16 (one
 * codec per member below, laid at that offset) and `last`: 72 bytes.
 */
export const IOMMU_TEST_CMD = I(IOMMUFD_CMD_BASE + 32);

/* enum { IOMMU_TEST_OP_ADD_RESERVED = 1, ... } */
export const IOMMU_TEST_OP_ADD_RESERVED = 1;
export const IOMMU_TEST_OP_MOCK_DOMAIN = 2;
export const IOMMU_TEST_OP_MD_CHECK_MAP = 3;
export const IOMMU_TEST_OP_MD_CHECK_REFS = 4;
export const IOMMU_TEST_OP_CREATE_ACCESS = 5;
export const IOMMU_TEST_OP_DESTROY_ACCESS_PAGES = 6;
export const IOMMU_TEST_OP_ACCESS_PAGES = 7;
export const IOMMU_TEST_OP_ACCESS_RW = 8;
export const IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT = 9;
export const IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE = 10;
export const IOMMU_TEST_OP_ACCESS_REPLACE_IOAS = 11;
export const IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS = 12;
export const IOMMU_TEST_OP_DIRTY = 13;
export const IOMMU_TEST_OP_MD_CHECK_IOTLB = 14;
export const IOMMU_TEST_OP_TRIGGER_IOPF = 15;

export const MOCK_FLAGS_ACCESS_WRITE = 1 << 0;
export const MOCK_FLAGS_ACCESS_SYZ = 1 << 16;
export const MOCK_ACCESS_RW_WRITE = 1 << 0;
export const MOCK_ACCESS_RW_SLOW_PATH = 1 << 2;
export const MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES = 1 << 0;

export const iommu_test_cmd = struct("iommu_test_cmd", [
  ["size", "u32"],
  ["op", "u32"],
  ["id", "u32"],
  ["__reserved", "u32"],
  ["union0", "u64"],
  ["union1", "u64"],
  ["union2", "u64"],
  ["union3", "u64"],
  ["union4", "u64"],
  ["union5", "u64"],
  ["last", "u32"],
] as const);
/** offsetof(struct iommu_test_cmd, <union>) */
export const IOMMU_TEST_CMD_UNION = 16;

export const test_add_reserved = struct("add_reserved", [
  ["start", "u64"],
  ["length", "u64"],
] as const);
/** mock_domain, and mock_domain_flags which adds dev_flags. */
export const test_mock_domain = struct("mock_domain_flags", [
  ["out_stdev_id", "u32"],
  ["out_hwpt_id", "u32"],
  ["out_idev_id", "u32"],
  ["dev_flags", "u32"],
] as const);
export const test_mock_domain_replace = struct("mock_domain_replace", [["pt_id", "u32"]] as const);
export const test_check_map = struct("check_map", [
  ["iova", "u64"],
  ["length", "u64"],
  ["uptr", "u64"],
] as const);
export const test_check_refs = struct("check_refs", [
  ["length", "u64"],
  ["uptr", "u64"],
  ["refs", "u32"],
] as const);
export const test_create_access = struct("create_access", [
  ["out_access_fd", "u32"],
  ["flags", "u32"],
] as const);
export const test_destroy_access_pages = struct("destroy_access_pages", [
  ["access_pages_id", "u32"],
] as const);
export const test_access_pages = struct("access_pages", [
  ["flags", "u32"],
  ["out_access_pages_id", "u32"],
  ["iova", "u64"],
  ["length", "u64"],
  ["uptr", "u64"],
] as const);
export const test_access_rw = struct("access_rw", [
  ["iova", "u64"],
  ["length", "u64"],
  ["uptr", "u64"],
  ["flags", "u32"],
] as const);
export const test_memory_limit = struct("memory_limit", [["limit", "u32"]] as const);
export const test_access_replace_ioas = struct("access_replace_ioas", [
  ["ioas_id", "u32"],
] as const);
export const test_dirty = struct("dirty", [
  ["flags", "u32"],
  ["iova", "u64"],
  ["length", "u64"],
  ["page_size", "u64"],
  ["uptr", "u64"],
  ["out_nr_dirty", "u64"],
] as const);
export const test_check_iotlb = struct("check_iotlb", [
  ["id", "u32"],
  ["iotlb", "u32"],
] as const);
