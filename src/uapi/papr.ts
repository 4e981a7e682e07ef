/**
 * POWER platform numbers shared by the guest, the kernel and the machine:
 * PAPR hypercalls and their return codes (arch/powerpc/include/asm/hvcall.h), the TCE
 * format (asm/tce.h), the EEH uAPI (arch/powerpc/include/uapi/asm/eeh.h) and the OPAL PCI
 * error-handling constants PowerNV firmware uses (asm/opal-api.h), Linux 6.12.
 */

/* Hypercalls (PAPR; the TCE ones since PAPR 2.x, H_PUT_TCE_INDIRECT / H_STUFF_TCE "multi-TCE"). */
export const H_GET_TCE = 0x1c;
export const H_PUT_TCE = 0x20;
export const H_STUFF_TCE = 0x138;
export const H_PUT_TCE_INDIRECT = 0x13c;

/* Hypercall return codes. H_TOO_HARD is KVM-internal: never returned to a guest. */
export const H_SUCCESS = 0;
export const H_CLOSED = 2;
export const H_HARDWARE = -1;
export const H_FUNCTION = -2;
export const H_PARAMETER = -4;
export const H_TOO_HARD = 9999;

/** The largest hypercall number (H_GUEST_DELETE, 6.12's MAX_HCALL_OPCODE). */
export const MAX_HCALL_OPCODE = 0x488;

/* TCE: bits 1:0 the device's permissions, the rest the page address. */
export const TCE_PCI_READ = 0x1;
export const TCE_PCI_WRITE = 0x2;
export const TCE_ENTRY_SIZE = 8;

/* asm/eeh.h (uAPI): VFIO_EEH_PE_GET_STATE answers and INJECT_ERR arguments. */
export const EEH_PE_STATE_NORMAL = 0;
export const EEH_PE_STATE_RESET = 1;
export const EEH_PE_STATE_STOPPED_IO_DMA = 2;
export const EEH_PE_STATE_STOPPED_DMA = 4;
export const EEH_PE_STATE_UNAVAIL = 5;
export const EEH_ERR_TYPE_32 = 0;
export const EEH_ERR_TYPE_64 = 1;
export const EEH_ERR_FUNC_MIN = 0;
export const EEH_ERR_FUNC_LD_MEM_ADDR = 0;
export const EEH_ERR_FUNC_ST_MEM_ADDR = 6;
export const EEH_ERR_FUNC_DMA_RD_ADDR = 12;
export const EEH_ERR_FUNC_DMA_WR_ADDR = 16;
export const EEH_ERR_FUNC_MAX = 19;

/* OPAL (PowerNV firmware) PCI EEH calls. */
export const OPAL_SUCCESS = 0;
export const OPAL_PARAMETER = -1;
export const OPAL_HARDWARE = -6;
export const OPAL_EEH_STOPPED_NOT_FROZEN = 0;
export const OPAL_EEH_STOPPED_MMIO_FREEZE = 1;
export const OPAL_EEH_STOPPED_DMA_FREEZE = 2;
export const OPAL_EEH_STOPPED_MMIO_DMA_FREEZE = 3;
export const OPAL_EEH_STOPPED_RESET = 4;
export const OPAL_EEH_STOPPED_TEMP_UNAVAIL = 5;
export const OPAL_EEH_STOPPED_PERM_UNAVAIL = 6;
export const OPAL_EEH_ACTION_CLEAR_FREEZE_MMIO = 1;
export const OPAL_EEH_ACTION_CLEAR_FREEZE_DMA = 2;
export const OPAL_EEH_ACTION_CLEAR_FREEZE_ALL = 3;
export const OPAL_EEH_ACTION_SET_FREEZE_MMIO = 1;
export const OPAL_EEH_ACTION_SET_FREEZE_DMA = 2;
export const OPAL_EEH_ACTION_SET_FREEZE_ALL = 3;
export const OPAL_ERR_INJECT_TYPE_IOA_BUS_ERR = 0;
export const OPAL_ERR_INJECT_TYPE_IOA_BUS_ERR64 = 1;
