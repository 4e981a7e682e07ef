/**
 * PCI configuration-space register layout, from include/uapi/linux/pci_regs.h (Linux 6.12).
 * Shared by the machine (which lays config space out) and the kernel (which reads it).
 * Numbers only: no behaviour lives here.
 */

export const PCI_CFG_SPACE_SIZE = 256;
export const PCI_CFG_SPACE_EXP_SIZE = 4096;
/** Bytes of config space an unprivileged reader of sysfs `config` gets (pci-sysfs.c). */
export const PCI_CFG_UNPRIVILEGED_SIZE = 64;

export const PCI_VENDOR_ID = 0x00;
export const PCI_DEVICE_ID = 0x02;
export const PCI_COMMAND = 0x04;
export const PCI_STATUS = 0x06;
export const PCI_STATUS_CAP_LIST = 0x10;
export const PCI_CLASS_REVISION = 0x08;
export const PCI_REVISION_ID = 0x08;
export const PCI_CLASS_PROG = 0x09;
export const PCI_CLASS_DEVICE = 0x0a;
export const PCI_HEADER_TYPE = 0x0e;
export const PCI_HEADER_TYPE_MASK = 0x7f;
export const PCI_HEADER_TYPE_NORMAL = 0;
export const PCI_HEADER_TYPE_BRIDGE = 1;
export const PCI_HEADER_TYPE_CARDBUS = 2;
export const PCI_HEADER_TYPE_MFD = 0x80;
export const PCI_BASE_ADDRESS_0 = 0x10;
export const PCI_BASE_ADDRESS_SPACE_IO = 0x01;
export const PCI_BASE_ADDRESS_MEM_TYPE_64 = 0x04;
export const PCI_BASE_ADDRESS_MEM_PREFETCH = 0x08;
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
export const PCI_SUBSYSTEM_ID = 0x2e;
export const PCI_ROM_ADDRESS = 0x30;
export const PCI_CAPABILITY_LIST = 0x34;
export const PCI_CB_CAPABILITY_LIST = 0x14;
export const PCI_INTERRUPT_PIN = 0x3d;

/* Type 1 (bridge) header */
export const PCI_PRIMARY_BUS = 0x18;
export const PCI_SECONDARY_BUS = 0x19;
export const PCI_SUBORDINATE_BUS = 0x1a;
export const PCI_BRIDGE_CONTROL = 0x3e;
export const PCI_BRIDGE_CTL_BUS_RESET = 0x40;

/* Capability list */
export const PCI_CAP_LIST_ID = 0;
export const PCI_CAP_LIST_NEXT = 1;
export const PCI_CAP_ID_PM = 0x01;
export const PCI_CAP_ID_MSI = 0x05;
export const PCI_CAP_ID_SSVID = 0x0d;
/** The bridge subsystem vendor/device capability (PCI_CAP_ID_SSVID) */
export const PCI_SSVID_VENDOR_ID = 4;
export const PCI_SSVID_DEVICE_ID = 6;
/** A CardBus bridge header's subsystem IDs */
export const PCI_CB_SUBSYSTEM_VENDOR_ID = 0x40;
export const PCI_CB_SUBSYSTEM_ID = 0x42;
export const PCI_CAP_ID_EXP = 0x10;
export const PCI_CAP_ID_MSIX = 0x11;
export const PCI_CAP_ID_AF = 0x13;
/** pci_find_capability gives up after this many hops (PCI_FIND_CAP_TTL). */
export const PCI_FIND_CAP_TTL = 48;

/* Power management */
export const PCI_PM_CTRL = 4;
export const PCI_PM_CTRL_NO_SOFT_RESET = 0x0008;

/* PCI Express capability */
export const PCI_EXP_FLAGS = 0x02;
export const PCI_EXP_FLAGS_TYPE = 0x00f0;
export const PCI_EXP_FLAGS_SLOT = 0x0100;
export const PCI_EXP_TYPE_ENDPOINT = 0x0;
export const PCI_EXP_TYPE_LEG_END = 0x1;
export const PCI_EXP_TYPE_ROOT_PORT = 0x4;
export const PCI_EXP_TYPE_UPSTREAM = 0x5;
export const PCI_EXP_TYPE_DOWNSTREAM = 0x6;
export const PCI_EXP_TYPE_PCI_BRIDGE = 0x7;
export const PCI_EXP_TYPE_PCIE_BRIDGE = 0x8;
export const PCI_EXP_TYPE_RC_END = 0x9;
export const PCI_EXP_TYPE_RC_EC = 0xa;
export const PCI_EXP_DEVCAP = 0x04;
export const PCI_EXP_DEVCAP_FLR = 0x10000000;
export const PCI_EXP_DEVCTL = 0x08;
export const PCI_EXP_DEVCTL_NOSNOOP_EN = 0x0800;
export const PCI_EXP_DEVCTL_BCR_FLR = 0x8000;
export const PCI_EXP_DEVCAP2 = 0x24;
export const PCI_EXP_DEVCAP2_ARI = 0x00000020;
export const PCI_EXP_DEVCTL2 = 0x28;
export const PCI_EXP_DEVCTL2_ARI = 0x0020;

/* Advanced Features */
export const PCI_AF_CAP = 3;
export const PCI_AF_CAP_TP = 0x01;
export const PCI_AF_CAP_FLR = 0x02;

/* Extended capabilities */
export const PCI_EXT_CAP_ID_ACS = 0x0d;
export const PCI_EXT_CAP_ID_ARI = 0x0e;
export const PCI_EXT_CAP_ID_SRIOV = 0x10;
/** pci_find_next_ext_capability's loop bound: (4096 - 256) / 8. */
export const PCI_EXT_CAP_TTL = (PCI_CFG_SPACE_EXP_SIZE - PCI_CFG_SPACE_SIZE) / 8;

/* ACS */
export const PCI_ACS_CAP = 0x04;
export const PCI_ACS_CTRL = 0x06;
export const PCI_ACS_SV = 0x0001;
export const PCI_ACS_TB = 0x0002;
export const PCI_ACS_RR = 0x0004;
export const PCI_ACS_CR = 0x0008;
export const PCI_ACS_UF = 0x0010;
export const PCI_ACS_EC = 0x0020;
export const PCI_ACS_DT = 0x0040;

/* ARI */
export const PCI_ARI_CAP = 0x04;
export const PCI_ARI_CAP_NFN = (cap: number): number => (cap >> 8) & 0xff;

/* SR-IOV */
export const PCI_SRIOV_CAP = 0x04;
export const PCI_SRIOV_CTRL = 0x08;
export const PCI_SRIOV_CTRL_VFE = 0x01;
export const PCI_SRIOV_CTRL_MSE = 0x08;
export const PCI_SRIOV_CTRL_ARI = 0x10;
export const PCI_SRIOV_INITIAL_VF = 0x0c;
export const PCI_SRIOV_TOTAL_VF = 0x0e;
export const PCI_SRIOV_NUM_VF = 0x10;
export const PCI_SRIOV_VF_OFFSET = 0x14;
export const PCI_SRIOV_VF_STRIDE = 0x16;
export const PCI_SRIOV_VF_DID = 0x1a;

export const PCI_DEVFN = (slot: number, fn: number): number => ((slot & 0x1f) << 3) | (fn & 7);
export const PCI_SLOT = (devfn: number): number => (devfn >> 3) & 0x1f;
export const PCI_FUNC = (devfn: number): number => devfn & 7;

export const PCI_CLASS_BRIDGE_PCI = 0x0604;
export const PCI_CLASS_DISPLAY_VGA = 0x0300;
export const PCI_CLASS_BRIDGE_OTHER = 0x0680;
/** Full 24-bit class (base, subclass, prog-if) of an NVM Express controller. */
export const PCI_CLASS_STORAGE_EXPRESS = 0x010802;

/* BAR decoding */
export const PCI_BASE_ADDRESS_MEM_TYPE_MASK = 0x06;
export const PCI_BASE_ADDRESS_MEM_MASK = ~0x0f;
export const PCI_BASE_ADDRESS_IO_MASK = ~0x03;

/* Header registers and bits used by device enabling, reset and VFIO's virtualisation */
export const PCI_STD_HEADER_SIZEOF = 64;
export const PCI_STD_NUM_BARS = 6;
export const PCI_COMMAND_IO = 0x0001;
export const PCI_COMMAND_MEMORY = 0x0002;
export const PCI_COMMAND_MASTER = 0x0004;
export const PCI_COMMAND_INTX_DISABLE = 0x0400;
export const PCI_STATUS_INTERRUPT = 0x08;
export const PCI_CACHE_LINE_SIZE = 0x0c;
export const PCI_LATENCY_TIMER = 0x0d;
export const PCI_BIST = 0x0f;
export const PCI_BASE_ADDRESS_SPACE = 0x01;
export const PCI_BASE_ADDRESS_5 = 0x24;
export const PCI_ROM_ADDRESS_ENABLE = 0x01;
export const PCI_ROM_ADDRESS_MASK = ~0x7ff;
/** A bridge's expansion ROM BAR. */
export const PCI_ROM_ADDRESS1 = 0x38;
export const PCI_INTERRUPT_LINE = 0x3c;
export const PCI_CAP_FLAGS = 2;
export const PCI_CAP_SIZEOF = 4;

/* Capability IDs (the rest of the list) */
export const PCI_CAP_ID_AGP = 0x02;
export const PCI_CAP_ID_VPD = 0x03;
export const PCI_CAP_ID_SLOTID = 0x04;
export const PCI_CAP_ID_CHSWP = 0x06;
export const PCI_CAP_ID_PCIX = 0x07;
export const PCI_CAP_ID_HT = 0x08;
export const PCI_CAP_ID_VNDR = 0x09;
export const PCI_CAP_ID_DBG = 0x0a;
export const PCI_CAP_ID_CCRC = 0x0b;
export const PCI_CAP_ID_SHPC = 0x0c;
export const PCI_CAP_ID_AGP3 = 0x0e;
export const PCI_CAP_ID_SECDEV = 0x0f;
export const PCI_CAP_ID_SATA = 0x12;
export const PCI_CAP_ID_EA = 0x14;
export const PCI_CAP_ID_MAX = PCI_CAP_ID_EA;

/* Power management */
export const PCI_PM_PMC = 2;
export const PCI_PM_CAP_PME_MASK = 0xf800;
export const PCI_PM_CTRL_STATE_MASK = 0x0003;
export const PCI_PM_CTRL_PME_ENABLE = 0x0100;
export const PCI_PM_CTRL_PME_STATUS = 0x8000;
export const PCI_PM_SIZEOF = 8;
export const PCI_AGP_SIZEOF = 12;

/* Vital Product Data */
export const PCI_VPD_ADDR = 2;
export const PCI_VPD_ADDR_F = 0x8000;
export const PCI_VPD_DATA = 4;
export const PCI_CAP_VPD_SIZEOF = 8;

/* MSI */
export const PCI_MSI_FLAGS = 0x02;
export const PCI_MSI_FLAGS_ENABLE = 0x0001;
export const PCI_MSI_FLAGS_QMASK = 0x000e;
export const PCI_MSI_FLAGS_QSIZE = 0x0070;
export const PCI_MSI_FLAGS_64BIT = 0x0080;
export const PCI_MSI_FLAGS_MASKBIT = 0x0100;
export const PCI_MSI_ADDRESS_LO = 0x04;
export const PCI_MSI_ADDRESS_HI = 0x08;
export const PCI_MSI_DATA_32 = 0x08;
export const PCI_MSI_MASK_32 = 0x0c;
export const PCI_MSI_PENDING_32 = 0x10;
export const PCI_MSI_DATA_64 = 0x0c;
export const PCI_MSI_MASK_64 = 0x10;
export const PCI_MSI_PENDING_64 = 0x14;

/* MSI-X */
export const PCI_MSIX_FLAGS = 2;
export const PCI_MSIX_FLAGS_QSIZE = 0x07ff;
export const PCI_MSIX_FLAGS_MASKALL = 0x4000;
export const PCI_MSIX_FLAGS_ENABLE = 0x8000;
export const PCI_MSIX_TABLE = 4;
export const PCI_MSIX_TABLE_BIR = 0x00000007;
export const PCI_MSIX_TABLE_OFFSET = 0xfffffff8;
export const PCI_CAP_MSIX_SIZEOF = 12;
export const PCI_MSIX_ENTRY_SIZE = 16;
export const PCI_MSIX_ENTRY_VECTOR_CTRL = 0xc;
export const PCI_MSIX_ENTRY_CTRL_MASKBIT = 0x00000001;

/* Advanced Features control */
export const PCI_AF_CTRL = 4;
export const PCI_AF_CTRL_FLR = 0x01;
export const PCI_AF_STATUS_TP = 0x01;
export const PCI_CAP_AF_SIZEOF = 6;

/* PCI-X */
export const PCI_X_CMD = 2;
export const PCI_X_CMD_VERSION = (x: number): number => (x >> 12) & 3;
export const PCI_X_ECC_CSR = 8;
export const PCI_CAP_PCIX_SIZEOF_V0 = 8;
export const PCI_CAP_PCIX_SIZEOF_V2 = 24;

/* HyperTransport, SATA */
export const HT_3BIT_CAP_MASK = 0xe0;
export const HT_CAP_SIZEOF_LONG = 28;
export const HT_CAP_SIZEOF_SHORT = 24;
export const PCI_SATA_REGS = 4;
export const PCI_SATA_REGS_MASK = 0xf;
export const PCI_SATA_REGS_INLINE = 0xf;
export const PCI_SATA_SIZEOF_SHORT = 8;
export const PCI_SATA_SIZEOF_LONG = 16;

/* PCI Express capability (the rest of the registers) */
export const PCI_EXP_FLAGS_VERS = 0x000f;
export const PCI_EXP_DEVCTL_PAYLOAD = 0x00e0;
export const PCI_EXP_DEVCTL_PHANTOM = 0x0200;
export const PCI_EXP_DEVCTL_READRQ = 0x7000;
export const PCI_EXP_DEVSTA = 0x0a;
export const PCI_EXP_DEVSTA_TRPND = 0x0020;
export const PCI_EXP_LNKCAP = 0x0c;
export const PCI_EXP_LNKCAP_SLS = 0x0000000f;
export const PCI_EXP_LNKCAP_SLS_2_5GB = 0x00000001;
export const PCI_EXP_LNKCAP_SLS_5_0GB = 0x00000002;
export const PCI_EXP_LNKCAP_DLLLARC = 0x00100000;
export const PCI_EXP_LNKCTL = 0x10;
export const PCI_EXP_LNKSTA = 0x12;
export const PCI_EXP_LNKSTA_DLLLA = 0x2000;
export const PCI_EXP_SLTCAP = 0x14;
export const PCI_EXP_SLTCAP_PCP = 0x00000002; /* Power Controller Present */
export const PCI_EXP_SLTCTL = 0x18;
export const PCI_EXP_SLTSTA = 0x1a;
export const PCI_EXP_SLTSTA_PDS = 0x0040;
export const PCI_EXP_RTCTL = 0x1c;
export const PCI_EXP_RTCAP = 0x1e;
export const PCI_EXP_RTSTA = 0x20;
export const PCI_EXP_DEVCAP2_ATOMIC_ROUTE = 0x00000040;
export const PCI_EXP_DEVCAP2_ATOMIC_COMP32 = 0x00000080;
export const PCI_EXP_DEVCAP2_ATOMIC_COMP64 = 0x00000100;
export const PCI_EXP_DEVCAP2_ATOMIC_COMP128 = 0x00000200;
export const PCI_EXP_DEVCTL2_ATOMIC_REQ = 0x0040;
export const PCI_EXP_DEVCTL2_ATOMIC_EGRESS_BLOCK = 0x0080;
export const PCI_EXP_LNKCAP2 = 0x2c;
export const PCI_EXP_LNKCAP2_SLS_2_5GB = 0x00000002;
export const PCI_EXP_LNKCAP2_SLS_5_0GB = 0x00000004;
/** Supported speeds from 8 GT/s to 64 GT/s. */
export const PCI_EXP_LNKCAP2_SLS_ABOVE_5_0GB = 0x00000078;
export const PCI_EXP_LNKCTL2 = 0x30;
export const PCI_EXP_LNKSTA2 = 0x32;
export const PCI_EXP_SLTCTL2 = 0x38;
export const PCI_CAP_EXP_ENDPOINT_SIZEOF_V1 = 20;
export const PCI_CAP_EXP_ENDPOINT_SIZEOF_V2 = 0x32;

/* Extended capabilities (the rest of the IDs and what VFIO sizes them by) */
export const PCI_EXT_CAP_ID = (header: number): number => header & 0xffff;
export const PCI_EXT_CAP_NEXT = (header: number): number => (header >>> 20) & 0xffc;
export const PCI_EXT_CAP_ID_ERR = 0x01;
export const PCI_EXT_CAP_ID_VC = 0x02;
export const PCI_EXT_CAP_ID_DSN = 0x03;
export const PCI_EXT_CAP_ID_PWR = 0x04;
export const PCI_EXT_CAP_ID_RCLD = 0x05;
export const PCI_EXT_CAP_ID_RCILC = 0x06;
export const PCI_EXT_CAP_ID_RCEC = 0x07;
export const PCI_EXT_CAP_ID_MFVC = 0x08;
export const PCI_EXT_CAP_ID_VC9 = 0x09;
export const PCI_EXT_CAP_ID_RCRB = 0x0a;
export const PCI_EXT_CAP_ID_VNDR = 0x0b;
export const PCI_EXT_CAP_ID_CAC = 0x0c;
export const PCI_EXT_CAP_ID_ATS = 0x0f;
export const PCI_EXT_CAP_ID_MRIOV = 0x11;
export const PCI_EXT_CAP_ID_MCAST = 0x12;
export const PCI_EXT_CAP_ID_PRI = 0x13;
export const PCI_EXT_CAP_ID_AMD_XXX = 0x14;
export const PCI_EXT_CAP_ID_REBAR = 0x15;
export const PCI_EXT_CAP_ID_DPA = 0x16;
export const PCI_EXT_CAP_ID_TPH = 0x17;
export const PCI_EXT_CAP_ID_LTR = 0x18;
export const PCI_EXT_CAP_ID_SECPCI = 0x19;
export const PCI_EXT_CAP_ID_PMUX = 0x1a;
export const PCI_EXT_CAP_ID_PASID = 0x1b;
export const PCI_EXT_CAP_ID_DVSEC = 0x23;
export const PCI_EXT_CAP_ID_DOE = 0x2e;
export const PCI_EXT_CAP_ID_MAX = PCI_EXT_CAP_ID_DOE;
export const PCI_EXT_CAP_DSN_SIZEOF = 12;
export const PCI_EXT_CAP_MCAST_ENDPOINT_SIZEOF = 40;
export const PCI_EXT_CAP_ARI_SIZEOF = 8;
export const PCI_EXT_CAP_ATS_SIZEOF = 8;
export const PCI_EXT_CAP_PRI_SIZEOF = 16;
export const PCI_EXT_CAP_SRIOV_SIZEOF = 0x40;
export const PCI_EXT_CAP_LTR_SIZEOF = 8;
export const PCI_EXT_CAP_PWR_SIZEOF = 0x10;
export const PCI_PWR_DATA = 0x08;
export const PCI_ACS_EGRESS_BITS = 0x05;
export const PCI_VSEC_HDR = 4;
export const PCI_VSEC_HDR_LEN_SHIFT = 20;
export const PCI_DVSEC_HEADER1 = 0x4;
export const PCI_DVSEC_HEADER1_LEN = (x: number): number => (x >>> 20) & 0xfff;
export const PCI_DVSEC_HEADER2 = 0x8;
export const PCI_DVSEC_CXL_PORT = 3;
export const PCI_DVSEC_CXL_PORT_CTL = 0x0c;
export const PCI_DVSEC_CXL_PORT_CTL_UNMASK_SBR = 0x00000001;
export const PCI_REBAR_CTRL = 8;
export const PCI_REBAR_CTRL_NBAR_MASK = 0x000000e0;
export const PCI_REBAR_CTRL_NBAR_SHIFT = 5;
export const PCI_DPA_CAP = 4;
export const PCI_DPA_CAP_SUBSTATE_MASK = 0x1f;
export const PCI_DPA_BASE_SIZEOF = 16;
export const PCI_TPH_CAP = 4;
export const PCI_TPH_CAP_LOC_MASK = 0x600;
export const PCI_TPH_LOC_CAP = 0x200;
export const PCI_TPH_CAP_ST_MASK = 0x07ff0000;
export const PCI_TPH_CAP_ST_SHIFT = 16;
export const PCI_TPH_BASE_SIZEOF = 0xc;
export const PCI_VC_PORT_CAP1 = 0x04;
export const PCI_VC_CAP1_EVCC = 0x00000007;
export const PCI_VC_PORT_CAP2 = 0x08;
export const PCI_VC_CAP2_32_PHASE = 0x00000002;
export const PCI_VC_CAP2_64_PHASE = 0x00000004;
export const PCI_VC_CAP2_128_PHASE = 0x00000008;
export const PCI_CAP_VC_BASE_SIZEOF = 0x10;
export const PCI_CAP_VC_PER_VC_SIZEOF = 0x0c;

/* Advanced Error Reporting */
export const PCI_ERR_UNCOR_STATUS = 0x04;
export const PCI_ERR_UNC_UND = 0x00000001;
export const PCI_ERR_UNC_DLP = 0x00000010;
export const PCI_ERR_UNC_SURPDN = 0x00000020;
export const PCI_ERR_UNC_POISON_TLP = 0x00001000;
export const PCI_ERR_UNC_FCP = 0x00002000;
export const PCI_ERR_UNC_COMP_TIME = 0x00004000;
export const PCI_ERR_UNC_COMP_ABORT = 0x00008000;
export const PCI_ERR_UNC_UNX_COMP = 0x00010000;
export const PCI_ERR_UNC_RX_OVER = 0x00020000;
export const PCI_ERR_UNC_MALF_TLP = 0x00040000;
export const PCI_ERR_UNC_ECRC = 0x00080000;
export const PCI_ERR_UNC_UNSUP = 0x00100000;
export const PCI_ERR_UNC_ACSV = 0x00200000;
export const PCI_ERR_UNC_INTN = 0x00400000;
export const PCI_ERR_UNC_MCBTLP = 0x00800000;
export const PCI_ERR_UNC_ATOMEG = 0x01000000;
export const PCI_ERR_UNC_TLPPRE = 0x02000000;
export const PCI_ERR_UNCOR_MASK = 0x08;
export const PCI_ERR_UNCOR_SEVER = 0x0c;
export const PCI_ERR_COR_STATUS = 0x10;
export const PCI_ERR_COR_RCVR = 0x00000001;
export const PCI_ERR_COR_BAD_TLP = 0x00000040;
export const PCI_ERR_COR_BAD_DLLP = 0x00000080;
export const PCI_ERR_COR_REP_ROLL = 0x00000100;
export const PCI_ERR_COR_REP_TIMER = 0x00001000;
export const PCI_ERR_COR_ADV_NFAT = 0x00002000;
export const PCI_ERR_COR_INTERNAL = 0x00004000;
export const PCI_ERR_COR_LOG_OVER = 0x00008000;
export const PCI_ERR_COR_MASK = 0x14;
export const PCI_ERR_CAP = 0x18;
export const PCI_ERR_CAP_ECRC_GENE = 0x00000040;
export const PCI_ERR_CAP_ECRC_CHKE = 0x00000100;
export const PCI_ERR_CAP_MHRC = 0x00000200; /* Multiple Header Recording Capable */
export const PCI_ERR_CAP_MHRE = 0x00000400; /* Multiple Header Recording Enable */
export const PCI_ERR_ROOT_COMMAND = 0x2c;
