/**
 * Function and bus reset, drivers/pci/pci.c (Linux 6.12), with the device-specific methods
 * of quirks.c pci_dev_reset_methods[]:
 *
 * - pci_init_reset_methods(): each method of pci_reset_fn_methods[] in order
 *   (device_specific, acpi, flr, af_flr, pm, bus, cxl_bus) is probed; those answering 0
 *   are kept, -ENOTTY skips one, any other error stops the list. Linux probes from
 *   pci_device_add(); the model probes on the first question, seeing the bus as it was
 *   when the device was added. sysfs `reset_method` shows and reorders them.
 * - __pci_reset_function_locked(): the first method that does not answer -ENOTTY decides.
 * - pci_try_reset_function(): save the state (pci_save_state: the 16 header dwords, the
 *   PCIe capability's control registers, PCI-X command), disable the function (Command =
 *   DisINTx only), reset, restore (header dwords written back only where they differ, BARs
 *   before Command; the PCIe registers; MSI/MSI-X as the kernel had them).
 * - Bus reset: Secondary Bus Reset on the parent bridge when the device is alone on its
 *   bus (pci_parent_bus_reset), or for every function below a bridge (pci_reset_bus, saving
 *   and restoring each).
 *
 * The model has no ACPI _RST methods, no hotplug slots (so no slot resets), and no clock:
 * a readiness poll that fails on its first read has timed out. AER, DPC, LTR, PTM, VC,
 * ATS/PRI/PASID, Resizable BAR and SR-IOV state is not saved: the machine's reset does not
 * clear it.
 */
import type { PciMmio } from "../../machine/hw.js";
import { err } from "../../uapi/errno.js";
import * as R from "../../uapi/pci_regs.js";
import {
  pcieCapabilityClearAndSet16,
  pcieCapabilityRead16,
  pcieCapabilityRead32,
  pcieCapabilityWrite16,
} from "./access.js";
import { pciFindCapability, pciFindExtCapability } from "./capability.js";
import { PCI_D0, PCI_D3hot, pciCurrentState, pciPmCap, pciSetPowerState } from "./enable.js";
import { pciRestoreMsiState } from "./msi.js";
import type { PciBus, PciDev } from "./pci.js";
import { pciDevSpecificResetMethod } from "./quirks.js";
import { pciResourceLen } from "./resource.js";

const ENOTTY = err("ENOTTY");
const PCI_VENDOR_ID_CXL = 0x1e98;

/** pci_save_state()'s copy of the registers it restores. */
export interface PciSavedState {
  config: number[];
  /** DEVCTL LNKCTL SLTCTL RTCTL DEVCTL2 LNKCTL2 SLTCTL2 */
  pcie: number[];
  pcix: number | null;
}

interface ResetDev {
  /** dev->reset_methods[]: indices into METHODS, in the order they are tried. */
  methods: number[];
  /** dev->saved_config_space and friends; null unless state_saved. */
  saved: PciSavedState | null;
}

const PCIE_SAVE_REGS = [
  R.PCI_EXP_DEVCTL,
  R.PCI_EXP_LNKCTL,
  R.PCI_EXP_SLTCTL,
  R.PCI_EXP_RTCTL,
  R.PCI_EXP_DEVCTL2,
  R.PCI_EXP_LNKCTL2,
  R.PCI_EXP_SLTCTL2,
];

const state = new WeakMap<PciDev, ResetDev>();

function st(dev: PciDev): ResetDev {
  let s = state.get(dev);
  if (!s) {
    s = { methods: [], saved: null };
    state.set(dev, s);
    s.methods = initResetMethods(dev, true);
  }
  return s;
}

/* ---------------------------------------------------------------------------------------- */
/* Saved state                                                                              */
/* ---------------------------------------------------------------------------------------- */

/** pci_save_state() */
export function pciSaveState(dev: PciDev): void {
  const config = Array.from({ length: 16 }, (_, i) => dev.read32(i * 4));
  const pcie = dev.isPcie() ? PCIE_SAVE_REGS.map((r) => pcieCapabilityRead16(dev, r)) : [];
  const pcix = pciFindCapability(dev, R.PCI_CAP_ID_PCIX);
  st(dev).saved = { config, pcie, pcix: pcix ? dev.read16(pcix + R.PCI_X_CMD) : null };
}

/** pci_store_saved_state(): a copy of the saved state, null when none was saved. */
export function pciStoreSavedState(dev: PciDev): PciSavedState | null {
  const s = st(dev).saved;
  return s ? { config: [...s.config], pcie: [...s.pcie], pcix: s.pcix } : null;
}

/** pci_load_saved_state(): a null state leaves nothing to restore. */
export function pciLoadSavedState(dev: PciDev, saved: PciSavedState | null): void {
  st(dev).saved = saved
    ? { config: [...saved.config], pcie: [...saved.pcie], pcix: saved.pcix }
    : null;
}

/** pci_restore_config_dword(): write only a differing value, re-reading up to `retry` times. */
function restoreDword(dev: PciDev, off: number, saved: number, retry: number, force: boolean) {
  if (!force && dev.read32(off) === saved) return;
  for (;;) {
    dev.write32(off, saved);
    if (retry-- <= 0 || dev.read32(off) === saved) return;
  }
}

function restoreRange(
  dev: PciDev,
  cfg: number[],
  start: number,
  end: number,
  retry: number,
  force = false,
) {
  for (let i = end; i >= start; i--) restoreDword(dev, 4 * i, cfg[i] as number, retry, force);
}

/** pci_restore_state() */
export function pciRestoreState(mmio: PciMmio, dev: PciDev): void {
  const s = st(dev);
  const saved = s.saved;
  if (!saved) return;
  PCIE_SAVE_REGS.forEach((r, i) => {
    if (i < saved.pcie.length) pcieCapabilityWrite16(dev, r, saved.pcie[i] as number);
  });
  // pci_restore_config_space()
  const hdr = dev.hdrType & R.PCI_HEADER_TYPE_MASK;
  if (hdr === R.PCI_HEADER_TYPE_NORMAL) {
    restoreRange(dev, saved.config, 10, 15, 0);
    restoreRange(dev, saved.config, 4, 9, 10); // BARs before Command
    restoreRange(dev, saved.config, 0, 3, 0);
  } else if (hdr === R.PCI_HEADER_TYPE_BRIDGE) {
    restoreRange(dev, saved.config, 12, 15, 0);
    restoreRange(dev, saved.config, 9, 11, 0, true); // prefetch window, always rewritten
    restoreRange(dev, saved.config, 0, 8, 0);
  } else {
    restoreRange(dev, saved.config, 0, 15, 0);
  }
  const pcix = pciFindCapability(dev, R.PCI_CAP_ID_PCIX);
  if (pcix && saved.pcix !== null) dev.write16(pcix + R.PCI_X_CMD, saved.pcix);
  pciRestoreMsiState(mmio, dev);
  s.saved = null;
}

/** pci_dev_save_and_disable(): D0, save, then Command = DisINTx only. */
function saveAndDisable(dev: PciDev): void {
  pciSetPowerState(dev, PCI_D0);
  pciSaveState(dev);
  dev.write16(R.PCI_COMMAND, R.PCI_COMMAND_INTX_DISABLE);
}

/* ---------------------------------------------------------------------------------------- */
/* Reset methods                                                                            */
/* ---------------------------------------------------------------------------------------- */

/**
 * A method probes (PCI_RESET_PROBE) without hardware beyond config space: mmio is null.
 * `adding`: the probe runs from pci_device_add(), before the device joins its bus's list
 * and before a bridge's subordinate bus is scanned.
 */
type ResetFn = (dev: PciDev, mmio: PciMmio | null, adding?: boolean) => number;

/** pci_dev_wait(): the function answers config reads again (no clock: one try). */
function devWait(dev: PciDev): number {
  return dev.read32(R.PCI_COMMAND) === 0xffffffff ? ENOTTY : 0;
}

/** pcie_flr(): Initiate FLR, then wait for the function to come back. */
function pcieFlr(dev: PciDev): number {
  pcieCapabilityClearAndSet16(dev, R.PCI_EXP_DEVCTL, 0, R.PCI_EXP_DEVCTL_BCR_FLR);
  return devWait(dev);
}

/** pcie_reset_flr() */
function pcieResetFlr(dev: PciDev, mmio: PciMmio | null): number {
  if (dev.devFlags.has("PCI_DEV_FLAGS_NO_FLR_RESET")) return ENOTTY;
  if (!(pcieCapabilityRead32(dev, R.PCI_EXP_DEVCAP) & R.PCI_EXP_DEVCAP_FLR)) return ENOTTY;
  return mmio ? pcieFlr(dev) : 0;
}

/** pci_af_flr() */
function pciAfFlr(dev: PciDev, mmio: PciMmio | null): number {
  const pos = pciFindCapability(dev, R.PCI_CAP_ID_AF);
  if (!pos || dev.devFlags.has("PCI_DEV_FLAGS_NO_FLR_RESET")) return ENOTTY;
  const cap = dev.read8(pos + R.PCI_AF_CAP);
  if (!(cap & R.PCI_AF_CAP_TP) || !(cap & R.PCI_AF_CAP_FLR)) return ENOTTY;
  if (!mmio) return 0;
  dev.write8(pos + R.PCI_AF_CTRL, R.PCI_AF_CTRL_FLR);
  return devWait(dev);
}

/** pci_pm_reset(): D3hot and back, for functions that reset on that transition. */
function pciPmReset(dev: PciDev, mmio: PciMmio | null): number {
  const pm = pciPmCap(dev);
  if (!pm || dev.devFlags.has("PCI_DEV_FLAGS_NO_PM_RESET")) return ENOTTY;
  let csr = dev.read16(pm + R.PCI_PM_CTRL);
  if (csr & R.PCI_PM_CTRL_NO_SOFT_RESET) return ENOTTY;
  if (!mmio) return 0;
  if (pciCurrentState(dev) !== PCI_D0) return err("EINVAL");
  csr &= ~R.PCI_PM_CTRL_STATE_MASK;
  dev.write16(pm + R.PCI_PM_CTRL, csr | PCI_D3hot);
  dev.write16(pm + R.PCI_PM_CTRL, csr | PCI_D0);
  return devWait(dev);
}

/** pci_find_dvsec_capability() */
function findDvsec(dev: PciDev, vendor: number, id: number): number {
  let pos = pciFindExtCapability(dev, R.PCI_EXT_CAP_ID_DVSEC);
  for (let ttl = R.PCI_EXT_CAP_TTL; pos && ttl > 0; ttl--) {
    const h = dev.read32(pos);
    if (
      R.PCI_EXT_CAP_ID(h) === R.PCI_EXT_CAP_ID_DVSEC &&
      dev.read16(pos + R.PCI_DVSEC_HEADER1) === vendor &&
      dev.read16(pos + R.PCI_DVSEC_HEADER2) === id
    )
      return pos;
    pos = R.PCI_EXT_CAP_NEXT(h);
    if (pos < R.PCI_CFG_SPACE_SIZE) break;
  }
  return 0;
}

/** cxl_sbr_masked(): a CXL port whose Bus Reset is masked ignores SBR. */
function cxlSbrMasked(bridge: PciDev): boolean {
  const dvsec = findDvsec(bridge, PCI_VENDOR_ID_CXL, R.PCI_DVSEC_CXL_PORT);
  if (!dvsec) return false;
  const reg = bridge.read16(dvsec + R.PCI_DVSEC_CXL_PORT_CTL);
  return reg !== 0xffff && !(reg & R.PCI_DVSEC_CXL_PORT_CTL_UNMASK_SBR);
}

/** pci_reset_secondary_bus(): assert then deassert Secondary Bus Reset. */
function secondaryBusReset(bridge: PciDev): number {
  const ctrl = bridge.read16(R.PCI_BRIDGE_CONTROL);
  bridge.write16(R.PCI_BRIDGE_CONTROL, ctrl | R.PCI_BRIDGE_CTL_BUS_RESET);
  bridge.write16(R.PCI_BRIDGE_CONTROL, ctrl & ~R.PCI_BRIDGE_CTL_BUS_RESET);
  return waitForSecondaryBus(bridge);
}

/**
 * pci_bridge_wait_for_secondary_bus(): nothing to wait for below a bus whose functions have
 * no PM capability (pci_bus_max_d3cold_delay: d3cold_delay is set by pci_pm_init only);
 * a downstream port that reports Data Link Layer Link Active (LNKCAP DLLLARC) must show
 * the link up (LNKSTA DLLLA) — before the functions' poll when it runs above 5 GT/s
 * (pcie_wait_for_link_delay, pcie_failed_link_retrain cannot bring it up without DLLLA),
 * after it otherwise — or the reset is ENOTTY; then every function below answers again.
 */
function waitForSecondaryBus(bridge: PciDev): number {
  const bus = bridge.subordinate;
  if (!bus || !bus.devices.some((d) => pciPmCap(d))) return 0;
  const answers = () => (bus.devices.some((d) => devWait(d)) ? ENOTTY : 0);
  if (!bridge.isPcie()) return 0;
  if (!bridge.isDownstreamPort()) return 0;
  const reporting = !!(pcieCapabilityRead32(bridge, R.PCI_EXP_LNKCAP) & R.PCI_EXP_LNKCAP_DLLLARC);
  const linkUp = !!(pcieCapabilityRead16(bridge, R.PCI_EXP_LNKSTA) & R.PCI_EXP_LNKSTA_DLLLA);
  if (pcieSpeedCapAtMost5GT(bridge)) {
    if (!answers()) return 0;
    return reporting && linkUp ? answers() : ENOTTY;
  }
  if (reporting && !linkUp) return ENOTTY;
  return answers();
}

/** pcie_get_speed_cap(dev) <= PCIE_SPEED_5_0GT (an unknown speed counts as faster). */
function pcieSpeedCapAtMost5GT(dev: PciDev): boolean {
  const cap2 = pcieCapabilityRead32(dev, R.PCI_EXP_LNKCAP2);
  if (cap2)
    return (
      !(cap2 & R.PCI_EXP_LNKCAP2_SLS_ABOVE_5_0GB) &&
      !!(cap2 & (R.PCI_EXP_LNKCAP2_SLS_2_5GB | R.PCI_EXP_LNKCAP2_SLS_5_0GB))
    );
  const sls = pcieCapabilityRead32(dev, R.PCI_EXP_LNKCAP) & R.PCI_EXP_LNKCAP_SLS;
  return sls === R.PCI_EXP_LNKCAP_SLS_2_5GB || sls === R.PCI_EXP_LNKCAP_SLS_5_0GB;
}

/**
 * pci_reset_bus_function(): no slots, so pci_parent_bus_reset(): the device must be alone
 * on its bus. Probed while the device is added, only functions scanned before it count, so
 * the first function of a bus with several passes (and its reset then fails at use).
 */
function pciResetBusFunction(dev: PciDev, mmio: PciMmio | null, adding = false): number {
  const bridge = dev.upstreamBridge();
  if (bridge && cxlSbrMasked(bridge)) return mmio ? ENOTTY : 0;
  const parent = dev.bus.self;
  const devs = dev.bus.devices;
  const present = adding && devs.includes(dev) ? devs.slice(0, devs.indexOf(dev)) : devs;
  if (
    dev.bus.isRoot ||
    (!adding && dev.subordinate) ||
    !parent ||
    dev.devFlags.has("PCI_DEV_FLAGS_NO_BUS_RESET") ||
    present.some((d) => d !== dev)
  )
    return ENOTTY;
  return mmio ? secondaryBusReset(parent) : 0;
}

/** cxl_reset_bus_function(): unmask SBR on the CXL port for the duration of a bus reset. */
function cxlResetBusFunction(dev: PciDev, mmio: PciMmio | null, adding = false): number {
  const bridge = dev.upstreamBridge();
  const dvsec = bridge ? findDvsec(bridge, PCI_VENDOR_ID_CXL, R.PCI_DVSEC_CXL_PORT) : 0;
  if (!bridge || !dvsec) return ENOTTY;
  if (!mmio) return 0;
  const reg = bridge.read16(dvsec + R.PCI_DVSEC_CXL_PORT_CTL);
  const val = reg | R.PCI_DVSEC_CXL_PORT_CTL_UNMASK_SBR;
  if (val !== reg) bridge.write16(dvsec + R.PCI_DVSEC_CXL_PORT_CTL, val);
  const rc = pciResetBusFunction(dev, mmio, adding);
  if (val !== reg) bridge.write16(dvsec + R.PCI_DVSEC_CXL_PORT_CTL, reg);
  return rc;
}

/** pci_dev_acpi_reset(): the model's firmware has no _RST methods. */
function pciDevAcpiReset(): number {
  return ENOTTY;
}

/* Device-specific resets (quirks.c); the probes are pciDevSpecificResetMethod's. */

function mmioOf(mmio: PciMmio, dev: PciDev) {
  const b = dev.bus;
  return {
    r32: (off: number) => Number(mmio.mmioRead(b.domain, b.number, dev.devfn, 0, off, 4)),
    w32: (off: number, v: number) =>
      mmio.mmioWrite(b.domain, b.number, dev.devfn, 0, off, 4, BigInt(v >>> 0)),
  };
}

const bswap32 = (v: number) =>
  (((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24)) >>> 0;

const NVME_REG_CC = 0x14;
const NVME_REG_CSTS = 0x1c;
const NVME_CC_ENABLE = 0x1;
const NVME_CC_SHN_MASK = 3 << 14;

const DEVICE_SPECIFIC_RESET: Record<string, (mmio: PciMmio, dev: PciDev) => number> = {
  reset_intel_82599_sfp_virtfn: (_m, dev) => (pcieFlr(dev), 0),
  delay_250ms_after_flr: (mmio, dev) => (pcieResetFlr(dev, mmio), 0),
  reset_chelsio_generic_dev(mmio, dev) {
    // T4 wedges without Bus Master or with MSI-X off during FLR.
    const old = dev.read16(R.PCI_COMMAND);
    dev.write16(R.PCI_COMMAND, old | R.PCI_COMMAND_MASTER);
    pciSaveState(dev);
    const msix = pciFindCapability(dev, R.PCI_CAP_ID_MSIX);
    const flags = dev.read16(msix + R.PCI_MSIX_FLAGS);
    if (!(flags & R.PCI_MSIX_FLAGS_ENABLE))
      dev.write16(
        msix + R.PCI_MSIX_FLAGS,
        flags | R.PCI_MSIX_FLAGS_ENABLE | R.PCI_MSIX_FLAGS_MASKALL,
      );
    pcieFlr(dev);
    pciRestoreState(mmio, dev);
    dev.write16(R.PCI_COMMAND, old);
    return 0;
  },
  nvme_disable_and_flr(mmio, dev) {
    if (!pciResourceLen(dev, 0)) return ENOTTY;
    const bar = mmioOf(mmio, dev);
    dev.write16(R.PCI_COMMAND, dev.read16(R.PCI_COMMAND) | R.PCI_COMMAND_MEMORY);
    const cfg = bar.r32(NVME_REG_CC);
    // Disable the controller (no shutdown notification); CSTS.RDY clears when it is done.
    if (cfg & NVME_CC_ENABLE) {
      bar.w32(NVME_REG_CC, cfg & ~(NVME_CC_SHN_MASK | NVME_CC_ENABLE));
      bar.r32(NVME_REG_CSTS);
    }
    pcieFlr(dev);
    return 0;
  },
  reset_ivb_igd(mmio, dev) {
    if (!pciResourceLen(dev, 0)) return err("ENOMEM");
    const bar = mmioOf(mmio, dev);
    bar.w32(0x45010, 0x00000002); // MSG_CTL
    bar.w32(0xc2004, 0x00000005); // SOUTH_CHICKEN2
    bar.w32(0xc7204, bar.r32(0xc7204) & 0xfffffffe); // PCH_PP_CONTROL: panel power off
    bar.r32(0xc7200); // PCH_PP_STATUS
    bar.w32(0xd0100, 0x00000002); // NSDE_PWR_STATE
    return 0;
  },
  reset_hinic_vf_dev(mmio, dev) {
    if (!pciResourceLen(dev, 0)) return ENOTTY;
    const bar = mmioOf(mmio, dev);
    if (!(bswap32(bar.r32(0x1000)) & (1 << 30))) return ENOTTY; // HINIC_VF_FLR_TYPE: FLR capable
    bar.w32(0xe80, bswap32((bswap32(bar.r32(0xe80)) | (1 << 18)) >>> 0)); // HINIC_VF_OP: FLR in progress
    pcieFlr(dev);
    // The function recaptures its bus and device numbers from a config write.
    dev.write16(R.PCI_VENDOR_ID, 0);
    bar.r32(0xe80);
    return 0;
  },
};

/** pci_dev_specific_reset() */
function pciDevSpecificReset(dev: PciDev, mmio: PciMmio | null): number {
  const name = pciDevSpecificResetMethod(dev);
  if (!name) return ENOTTY;
  if (!mmio) return 0;
  return (DEVICE_SPECIFIC_RESET[name] as (m: PciMmio, d: PciDev) => number)(mmio, dev);
}

/** pci_reset_fn_methods[]; index 0 ends a list. */
const METHODS: readonly { name: string; fn: ResetFn }[] = [
  { name: "", fn: () => ENOTTY },
  { name: "device_specific", fn: pciDevSpecificReset },
  { name: "acpi", fn: pciDevAcpiReset },
  { name: "flr", fn: pcieResetFlr },
  { name: "af_flr", fn: pciAfFlr },
  { name: "pm", fn: pciPmReset },
  { name: "bus", fn: pciResetBusFunction },
  { name: "cxl_bus", fn: cxlResetBusFunction },
];

/** pci_init_reset_methods(): at device add, or again for "default". */
function initResetMethods(dev: PciDev, adding: boolean): number[] {
  const out: number[] = [];
  for (let m = 1; m < METHODS.length; m++) {
    const rc = (METHODS[m] as { fn: ResetFn }).fn(dev, null, adding);
    if (!rc) out.push(m);
    else if (rc !== ENOTTY) break;
  }
  return out;
}

/** pci_reset_supported() */
export function pciResetSupported(dev: PciDev): boolean {
  return st(dev).methods.length > 0;
}

/** reset_method_show(): "" when none (the attribute is then hidden). */
export function pciResetMethodShow(dev: PciDev): string {
  const names = st(dev).methods.map((m) => (METHODS[m] as { name: string }).name);
  return names.length ? `${names.join(" ")}\n` : "";
}

/** reset_method_store(): "" disables all, "default" re-probes, else a list of names. */
export function pciResetMethodStore(dev: PciDev, text: string): number {
  const s = st(dev);
  const t = text.endsWith("\n") ? text.slice(0, -1) : text;
  if (t === "") {
    s.methods = [];
    return 0;
  }
  if (t === "default") {
    s.methods = initResetMethods(dev, false);
    return 0;
  }
  const out: number[] = [];
  for (const raw of text.split(" ")) {
    const name = raw.trim();
    if (!name) continue;
    const m = METHODS.findIndex((x, i) => i > 0 && x.name === name);
    if (m < 0) return err("EINVAL");
    if ((METHODS[m] as { fn: ResetFn }).fn(dev, null)) return err("EINVAL");
    if (out.length === METHODS.length - 1) return err("EINVAL");
    out.push(m);
  }
  s.methods = out;
  return 0;
}

/** __pci_reset_function_locked(): the first method that does not say -ENOTTY decides. */
export function pciResetFunctionLocked(mmio: PciMmio, dev: PciDev): number {
  for (const m of st(dev).methods) {
    const rc = (METHODS[m] as { fn: ResetFn }).fn(dev, mmio);
    if (rc !== ENOTTY) return rc;
  }
  return ENOTTY;
}

/** pci_try_reset_function(): save, disable, reset, restore. */
export function pciTryResetFunction(mmio: PciMmio, dev: PciDev): number {
  if (!st(dev).methods.length) return ENOTTY;
  saveAndDisable(dev);
  const rc = pciResetFunctionLocked(mmio, dev);
  pciRestoreState(mmio, dev);
  return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Bus reset                                                                                */
/* ---------------------------------------------------------------------------------------- */

/** pci_bus_resettable(): no function on or below the bus forbids a bus reset. */
function busResettable(bus: PciBus): boolean {
  if (bus.self?.devFlags.has("PCI_DEV_FLAGS_NO_BUS_RESET")) return false;
  return bus.devices.every(
    (d) =>
      !d.devFlags.has("PCI_DEV_FLAGS_NO_BUS_RESET") &&
      (!d.subordinate || busResettable(d.subordinate)),
  );
}

/** pci_probe_reset_bus(): 0 when a Secondary Bus Reset can reset this bus. */
export function pciProbeResetBus(bus: PciBus): number {
  return bus.self && busResettable(bus) ? 0 : ENOTTY;
}

function busSaveAndDisable(bus: PciBus): void {
  for (const d of bus.devices) {
    saveAndDisable(d);
    if (d.subordinate) busSaveAndDisable(d.subordinate);
  }
}

function busRestore(mmio: PciMmio, bus: PciBus): void {
  for (const d of bus.devices) {
    pciRestoreState(mmio, d);
    if (d.subordinate) busRestore(mmio, d.subordinate);
  }
}

/** pci_reset_bus() → __pci_reset_bus(): every function below the bridge, saved and restored. */
export function pciResetBus(mmio: PciMmio, dev: PciDev): number {
  const bus = dev.bus;
  const rc = pciProbeResetBus(bus);
  if (rc) return rc;
  busSaveAndDisable(bus);
  const r = secondaryBusReset(bus.self as PciDev);
  busRestore(mmio, bus);
  return r;
}
