/**
 * EEH, arch/powerpc/kernel/eeh.c with the PowerNV backend eeh-powernv.c (Linux 6.12): the
 * kernel's view of a PE's error state and the operations VFIO_EEH_PE_OP maps to.
 *
 * - eeh_pe_get_state(): the PE's hardware state (opal_pci_eeh_freeze_status) as
 *   EEH_STATE_* bits, folded into NORMAL / RESET / STOPPED_IO_DMA / STOPPED_DMA / UNAVAIL;
 *   the first read that finds the PE frozen marks it ISOLATED. During a PE reset
 *   (EEH_PE_RESET set) PowerNV reports the PE as working, "to keep EEH core moving".
 * - eeh_pe_set_option(): DISABLE does nothing (0); ENABLE is eeh_pe_change_owner()
 *   (thaw if frozen); THAW_MMIO / THAW_DMA go through eeh_pci_enable(), which does
 *   nothing when already active and answers EIO when the thaw did not take.
 * - eeh_pe_reset(): HOT / FUNDAMENTAL freeze the PE first, block config space and reset
 *   the bus; DEACTIVATE ends the reset, unblocks config space, restores the devices and —
 *   passed-through PEs included — thaws the PE and clears ISOLATED.
 * - eeh_pe_configure(): nothing left to do on PowerNV (0).
 * - eeh_pe_inject_err(): func outside EEH_ERR_FUNC_MIN..MAX → EINVAL; PowerNV refuses
 *   other types with ERANGE and passes the rest to opal_pci_err_inject (EIO on failure).
 */
import type { Hardware } from "../../machine/hw.js";
import { err } from "../../uapi/errno.js";
import {
  EEH_ERR_FUNC_MAX,
  EEH_ERR_FUNC_MIN,
  EEH_PE_STATE_NORMAL,
  EEH_PE_STATE_RESET,
  EEH_PE_STATE_STOPPED_DMA,
  EEH_PE_STATE_STOPPED_IO_DMA,
  EEH_PE_STATE_UNAVAIL,
  OPAL_EEH_ACTION_CLEAR_FREEZE_DMA,
  OPAL_EEH_ACTION_CLEAR_FREEZE_MMIO,
  OPAL_EEH_ACTION_SET_FREEZE_ALL,
  OPAL_EEH_STOPPED_DMA_FREEZE,
  OPAL_EEH_STOPPED_MMIO_DMA_FREEZE,
  OPAL_EEH_STOPPED_MMIO_FREEZE,
  OPAL_EEH_STOPPED_NOT_FROZEN,
  OPAL_EEH_STOPPED_RESET,
  OPAL_EEH_STOPPED_TEMP_UNAVAIL,
  OPAL_ERR_INJECT_TYPE_IOA_BUS_ERR,
  OPAL_ERR_INJECT_TYPE_IOA_BUS_ERR64,
  OPAL_SUCCESS,
} from "../../uapi/papr.js";
import type { PnvPe } from "./pci_ioda.js";

/* EEH_OPT_* */
export const EEH_OPT_DISABLE = 0;
export const EEH_OPT_ENABLE = 1;
export const EEH_OPT_THAW_MMIO = 2;
export const EEH_OPT_THAW_DMA = 3;
export const EEH_OPT_FREEZE_PE = 4;
/* EEH_STATE_* */
const EEH_STATE_UNAVAILABLE = 1 << 0;
const EEH_STATE_NOT_SUPPORT = 1 << 1;
const EEH_STATE_RESET_ACTIVE = 1 << 2;
const EEH_STATE_MMIO_ACTIVE = 1 << 3;
const EEH_STATE_DMA_ACTIVE = 1 << 4;
const EEH_STATE_MMIO_ENABLED = 1 << 5;
const EEH_STATE_DMA_ENABLED = 1 << 6;
/* EEH_RESET_* */
export const EEH_RESET_DEACTIVATE = 0;
export const EEH_RESET_HOT = 1;
export const EEH_RESET_FUNDAMENTAL = 3;
/* struct eeh_pe state bits */
export const EEH_PE_ISOLATED = 1 << 0;
export const EEH_PE_RESET = 1 << 2;
export const EEH_PE_CFG_BLOCKED = 1 << 4;

const ALL_ACTIVE =
  EEH_STATE_MMIO_ACTIVE | EEH_STATE_DMA_ACTIVE | EEH_STATE_MMIO_ENABLED | EEH_STATE_DMA_ENABLED;

export class Eeh {
  /** eeh_enabled(): PowerNV with OPAL's EEH support. */
  readonly enabled: boolean;

  constructor(private readonly hw: Hardware) {
    this.enabled = !!hw.opal;
  }

  private phbId(pe: PnvPe): number {
    return pe.phb.desc.index;
  }

  /** pnv_eeh_get_pe_state() */
  private opsGetState(pe: PnvPe): number {
    if (pe.eehState & EEH_PE_RESET) return ALL_ACTIVE;
    const r = this.hw.opal?.eehFreezeStatus(this.phbId(pe), pe.number);
    if (!r || r.rc !== OPAL_SUCCESS) return EEH_STATE_NOT_SUPPORT;
    let result: number;
    switch (r.state) {
      case OPAL_EEH_STOPPED_NOT_FROZEN:
        result = ALL_ACTIVE;
        break;
      case OPAL_EEH_STOPPED_MMIO_FREEZE:
        result = EEH_STATE_DMA_ACTIVE | EEH_STATE_DMA_ENABLED;
        break;
      case OPAL_EEH_STOPPED_DMA_FREEZE:
        result = EEH_STATE_MMIO_ACTIVE | EEH_STATE_MMIO_ENABLED;
        break;
      case OPAL_EEH_STOPPED_MMIO_DMA_FREEZE:
        result = 0;
        break;
      case OPAL_EEH_STOPPED_RESET:
        result = EEH_STATE_RESET_ACTIVE;
        break;
      case OPAL_EEH_STOPPED_TEMP_UNAVAIL:
        result = EEH_STATE_UNAVAILABLE;
        break;
      default:
        result = EEH_STATE_NOT_SUPPORT;
    }
    if (
      !(result & (EEH_STATE_NOT_SUPPORT | EEH_STATE_UNAVAILABLE)) &&
      !(result & EEH_STATE_MMIO_ACTIVE) &&
      !(result & EEH_STATE_DMA_ACTIVE) &&
      !(pe.eehState & EEH_PE_ISOLATED)
    ) {
      pe.eehState |= EEH_PE_ISOLATED; // eeh_pe_mark_isolated(); diag data not modelled
    }
    return result;
  }

  /** pnv_eeh_set_option() */
  private opsSetOption(pe: PnvPe, option: number): number {
    const opal = this.hw.opal;
    if (!opal) return err("EIO");
    switch (option) {
      case EEH_OPT_DISABLE:
        return err("EPERM");
      case EEH_OPT_ENABLE:
        return 0;
      case EEH_OPT_THAW_MMIO:
        return opal.eehFreezeClear(this.phbId(pe), pe.number, OPAL_EEH_ACTION_CLEAR_FREEZE_MMIO)
          ? err("EIO")
          : 0;
      case EEH_OPT_THAW_DMA:
        return opal.eehFreezeClear(this.phbId(pe), pe.number, OPAL_EEH_ACTION_CLEAR_FREEZE_DMA)
          ? err("EIO")
          : 0;
      case EEH_OPT_FREEZE_PE:
        return opal.eehFreezeSet(this.phbId(pe), pe.number, OPAL_EEH_ACTION_SET_FREEZE_ALL)
          ? err("EIO")
          : 0;
      default:
        return err("EINVAL");
    }
  }

  /** eeh_pci_enable() (eeh_wait_state() is immediate: the model's firmware never lags). */
  private pciEnable(pe: PnvPe, fn: number): number {
    const flag =
      fn === EEH_OPT_THAW_MMIO
        ? EEH_STATE_MMIO_ACTIVE | EEH_STATE_MMIO_ENABLED
        : fn === EEH_OPT_THAW_DMA
          ? EEH_STATE_DMA_ACTIVE
          : 0;
    if (flag) {
      const rc = this.opsGetState(pe);
      if (rc === EEH_STATE_NOT_SUPPORT) return 0;
      if (rc & flag) return 0;
    }
    const rc = this.opsSetOption(pe, fn);
    if (flag) return this.opsGetState(pe) & flag ? 0 : err("EIO");
    return rc;
  }

  /** eeh_unfreeze_pe() */
  private unfreezePe(pe: PnvPe): number {
    return this.pciEnable(pe, EEH_OPT_THAW_MMIO) || this.pciEnable(pe, EEH_OPT_THAW_DMA);
  }

  /** eeh_pe_change_owner() (no device of the model is on eeh_reset_ids). */
  changeOwner(pe: PnvPe): number {
    const s = this.opsGetState(pe);
    if (s < 0 || s === EEH_STATE_NOT_SUPPORT) return 0;
    const active = EEH_STATE_MMIO_ACTIVE | EEH_STATE_DMA_ACTIVE;
    if ((s & active) === active) return 0; // eeh_state_active()
    const r = this.unfreezePe(pe);
    if (!r) pe.eehState &= ~EEH_PE_ISOLATED;
    return r;
  }

  /** eeh_pe_set_option() */
  setOption(pe: PnvPe, option: number): number {
    switch (option) {
      case EEH_OPT_ENABLE:
        return this.enabled ? this.changeOwner(pe) : err("EIO");
      case EEH_OPT_DISABLE:
        return 0;
      case EEH_OPT_THAW_MMIO:
      case EEH_OPT_THAW_DMA:
      case EEH_OPT_FREEZE_PE:
        return this.pciEnable(pe, option);
      default:
        return err("EINVAL");
    }
  }

  /** eeh_pe_get_state() (a PE's parent is never under host recovery in the model). */
  getState(pe: PnvPe): number {
    const result = this.opsGetState(pe);
    const rst = (result & EEH_STATE_RESET_ACTIVE) !== 0;
    const dma = (result & EEH_STATE_DMA_ENABLED) !== 0;
    const mmio = (result & EEH_STATE_MMIO_ENABLED) !== 0;
    if (rst) return EEH_PE_STATE_RESET;
    if (dma && mmio) return EEH_PE_STATE_NORMAL;
    if (!dma && !mmio) return EEH_PE_STATE_STOPPED_IO_DMA;
    if (!dma && mmio) return EEH_PE_STATE_STOPPED_DMA;
    return EEH_PE_STATE_UNAVAIL;
  }

  /** eeh_pe_reset(pe, option, include_passed = true) */
  reset(pe: PnvPe, option: number): number {
    switch (option) {
      case EEH_RESET_DEACTIVATE: {
        // pnv_eeh_reset(): the de-assert step is a no-op for a non-root bus.
        pe.eehState &= ~EEH_PE_CFG_BLOCKED;
        // eeh_pe_reenable_devices(): BARs restored, devices re-enabled, then thaw.
        const r = this.unfreezePe(pe);
        if (!r) pe.eehState &= ~EEH_PE_ISOLATED;
        return r;
      }
      case EEH_RESET_HOT:
      case EEH_RESET_FUNDAMENTAL:
        this.opsSetOption(pe, EEH_OPT_FREEZE_PE);
        pe.eehState |= EEH_PE_CFG_BLOCKED;
        // pci_bus_error_reset() / the root port's fundamental reset.
        return this.hw.opal?.peReset(this.phbId(pe), pe.number) ? err("EIO") : 0;
      default:
        return err("EINVAL");
    }
  }

  /** eeh_pe_configure() */
  configure(_pe: PnvPe): number {
    return 0;
  }

  /** eeh_pe_inject_err() → pnv_eeh_err_inject() */
  injectErr(pe: PnvPe, type: number, func: number, addr: bigint, mask: bigint): number {
    if (func < EEH_ERR_FUNC_MIN || func > EEH_ERR_FUNC_MAX) return err("EINVAL");
    if (type !== OPAL_ERR_INJECT_TYPE_IOA_BUS_ERR && type !== OPAL_ERR_INJECT_TYPE_IOA_BUS_ERR64)
      return err("ERANGE");
    const rc = this.hw.opal?.errInject(this.phbId(pe), pe.number, type, func, addr, mask);
    return rc === OPAL_SUCCESS ? 0 : err("EIO");
  }
}
