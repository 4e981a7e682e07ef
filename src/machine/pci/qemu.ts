/**
 * Write masks of QEMU's emulated PCI devices, for hosts captured inside a QEMU guest: there
 * the configuration spaces are QEMU's, and its masks are not the specifications'.
 *
 * QEMU 7.2 (Debian 12), the version the oracle's guests ran on:
 * - hw/pci/pci.c pci_init_wmask: every byte after the 64-byte header is writable, unless a
 *   capability covers it; pci_add_capability makes a new capability read-only
 *   (memset(wmask + offset, 0, size)), its init code then opens single fields.
 * - hw/pci/pcie.c: pcie_add_capability does the same for extended capabilities;
 *   pcie_cap_init (version 2): DevCtl2 EETLPPB only, and the dword at 0x100 read-only (an
 *   empty extended list's NULL header); pcie_cap_v1_init: nothing writable;
 *   pcie_cap_deverr_init (ports): DevCtl's four error-reporting enables; pcie_cap_flr_init
 *   (with DevCap FLR): DevCtl BCR_FLR; pcie_cap_arifwd_init (with DevCap2 ARI): DevCtl2
 *   ARI; pcie_cap_slot_init (with the Slot flag): SltCtl's indicator, interrupt-enable and
 *   interlock bits, the power controller with SltCap PCP; pcie_cap_root_init: RtCtl's
 *   system-error enables; pcie_acs_init: ACS Control's advertised bits; pcie_ats_init:
 *   ATS Control 0x800f.
 * - hw/pci/pcie_aer.c pcie_aer_init: Uncorrectable Severity and Correctable Mask (the
 *   supported bits), ECRC enables, Multiple Header Recording Enable when capable (a port's
 *   aer_log_max); the Uncorrectable Mask stays read-only (x-pcie-err-unc-mask, 8.0 on).
 *   pcie_aer_root_init: Root Error Command's enables.
 * - hw/pci/msi.c msi_init: Enable and Multiple Message Enable, address, data, one mask
 *   bit per vector; hw/pci/msix.c msix_init: Enable and Function Mask.
 * - hw/pci/pcie_sriov.c pcie_sriov_pf_init: VF Enable, VF MSE, ARI Hierarchy, NumVFs,
 *   System Page Size.
 * - Power management, per device: hw/nvme/ctrl.c nvme_add_pm_capability and
 *   hw/virtio/virtio-pci.c make PowerState writable; hw/net/e1000e.c
 *   e1000e_add_pm_capability (82574L, 8086:10d3) also PME_En and Data Select.
 * W1C bits (status registers) are not modelled: they read back as the read-only zeros they
 * hold on a freshly captured device. Capability sizes are QEMU's; one it does not emulate
 * is taken to reach the next capability, so its registers stay read-only.
 * The rule is per host: a physical device passed through into the guest (its config space
 * is then vfio-pci's in QEMU, not QEMU's emulation) would get these masks too.
 */
import * as R from "../../uapi/pci_regs.js";
import { allowHeaderWrites, walkCaps, walkExtCaps } from "./builder.js";
import { ConfigSpace } from "./config-space.js";

/**
 * Does this function say the machine is a QEMU guest? Its host bridge at 00.0 is QEMU's
 * q35 MCH (8086:29c0) or i440FX (8086:1237) with QEMU's default subsystem, 1af4:1100
 * (hw/pci/pci.c pci_default_sub_vendor_id / pci_default_sub_device_id): a chipset's real
 * host bridge carries its board vendor's subsystem, and a guest cannot have another.
 */
export function isQemuHostBridge(cs: ConfigSpace): boolean {
  const ids = cs.read(R.PCI_VENDOR_ID, 4); // device ID above vendor ID
  return (
    (ids === 0x29c08086 || ids === 0x12378086) &&
    cs.read(R.PCI_SUBSYSTEM_VENDOR_ID, 2) === 0x1af4 &&
    cs.read(R.PCI_SUBSYSTEM_ID, 2) === 0x1100
  );
}

/** Raw bytes of a function QEMU emulates, with QEMU's write masks. */
export function qemuConfigSpace(bytes: Uint8Array): ConfigSpace {
  const cs = new ConfigSpace(bytes.length > 256 ? 4096 : 256, bytes.length);
  cs.load(bytes);
  allowHeaderWrites(cs);
  cs.allow(R.PCI_INTERRUPT_LINE, 1, 0xff);
  if (bytes.length < 256) return cs; // an unprivileged capture: nothing known beyond 64 bytes
  for (let off = 0x40; off < cs.size; off++) cs.writable.set(off, 0xff);
  const caps = walkCaps(cs);
  const v2 = caps.some(
    ([id, at]) =>
      id === R.PCI_CAP_ID_EXP && (cs.read(at + R.PCI_EXP_FLAGS, 2) & R.PCI_EXP_FLAGS_VERS) >= 2,
  );
  if (v2) readOnly(cs, 0x100, 4);
  for (const [id, at] of caps) {
    readOnly(cs, at, capSize(cs, id, at, caps));
    capabilityMasks(cs, id, at);
  }
  const ext = walkExtCaps(cs);
  for (const [id, at] of ext) {
    readOnly(cs, at, extCapSize(id, at, ext));
    extCapabilityMasks(cs, id, at);
  }
  return cs;
}

function readOnly(cs: ConfigSpace, at: number, len: number): void {
  for (let off = at; off < Math.min(at + len, cs.size); off++) cs.writable.delete(off);
}

/** The span pci_add_capability was given (msi_cap_sizeof, PCI_*_SIZEOF, a vendor cap's length). */
function capSize(cs: ConfigSpace, id: number, at: number, caps: [number, number][]): number {
  switch (id) {
    case R.PCI_CAP_ID_PM:
    case R.PCI_CAP_ID_SSVID:
    case R.PCI_CAP_ID_SATA:
      return 8;
    case R.PCI_CAP_ID_MSIX:
      return 12;
    case R.PCI_CAP_ID_MSI: {
      const flags = cs.read(at + R.PCI_MSI_FLAGS, 2);
      const is64 = (flags & R.PCI_MSI_FLAGS_64BIT) !== 0;
      if (flags & R.PCI_MSI_FLAGS_MASKBIT) return is64 ? 0x18 : 0x14;
      return is64 ? 0x0e : 0x0a;
    }
    case R.PCI_CAP_ID_EXP:
      return (cs.read(at + R.PCI_EXP_FLAGS, 2) & R.PCI_EXP_FLAGS_VERS) >= 2 ? 0x3c : 0x14;
    case R.PCI_CAP_ID_VNDR:
      return cs.read(at + R.PCI_CAP_FLAGS, 1);
    default:
      return nextAbove(at, caps, 0x100);
  }
}

function extCapSize(id: number, at: number, ext: [number, number][]): number {
  switch (id) {
    case R.PCI_EXT_CAP_ID_ERR:
      return 0x48;
    case R.PCI_EXT_CAP_ID_DSN:
      return 0x0c;
    case R.PCI_EXT_CAP_ID_ACS:
    case R.PCI_EXT_CAP_ID_ARI:
    case R.PCI_EXT_CAP_ID_ATS:
      return 8;
    case R.PCI_EXT_CAP_ID_SRIOV:
      return 0x40;
    default:
      return nextAbove(at, ext, 0x1000);
  }
}

/** Bytes from `at` to the next capability placed above it (or to `end`). */
function nextAbove(at: number, caps: [number, number][], end: number): number {
  return Math.min(end, ...caps.map(([, o]) => o).filter((o) => o > at)) - at;
}

/** e1000e_add_pm_capability: PowerState, PME_En and Data Select. */
const E1000E_PMCSR_WMASK = R.PCI_PM_CTRL_STATE_MASK | R.PCI_PM_CTRL_PME_ENABLE | 0x1e00;

function capabilityMasks(cs: ConfigSpace, id: number, at: number): void {
  if (id === R.PCI_CAP_ID_PM) {
    const e1000e = cs.read(R.PCI_VENDOR_ID, 2) === 0x8086 && cs.read(R.PCI_DEVICE_ID, 2) === 0x10d3;
    cs.allow(at + R.PCI_PM_CTRL, 2, e1000e ? E1000E_PMCSR_WMASK : R.PCI_PM_CTRL_STATE_MASK);
  }
  if (id === R.PCI_CAP_ID_MSI) {
    const flags = cs.read(at + R.PCI_MSI_FLAGS, 2);
    const is64 = (flags & R.PCI_MSI_FLAGS_64BIT) !== 0;
    cs.allow(at + R.PCI_MSI_FLAGS, 2, R.PCI_MSI_FLAGS_QSIZE | R.PCI_MSI_FLAGS_ENABLE);
    cs.allow(at + R.PCI_MSI_ADDRESS_LO, 4, 0xfffffffc);
    if (is64) cs.allow(at + R.PCI_MSI_ADDRESS_HI, 4, 0xffffffff);
    cs.allow(at + (is64 ? R.PCI_MSI_DATA_64 : R.PCI_MSI_DATA_32), 2, 0xffff);
    if (flags & R.PCI_MSI_FLAGS_MASKBIT) {
      const vectors = 1 << ((flags & R.PCI_MSI_FLAGS_QMASK) >> 1);
      const mask = vectors >= 32 ? 0xffffffff : 2 ** vectors - 1;
      cs.allow(at + (is64 ? R.PCI_MSI_MASK_64 : R.PCI_MSI_MASK_32), 4, mask);
    }
  }
  if (id === R.PCI_CAP_ID_MSIX) cs.allow(at + 2, 2, 0xc000); // MSIX_ENABLE_MASK, MSIX_MASKALL_MASK
  if (id === R.PCI_CAP_ID_EXP) expressMasks(cs, at);
}

function expressMasks(cs: ConfigSpace, at: number): void {
  const flags = cs.read(at + R.PCI_EXP_FLAGS, 2);
  if ((flags & R.PCI_EXP_FLAGS_VERS) < 2) return; // pcie_cap_v1_init: all read-only
  const type = (flags & R.PCI_EXP_FLAGS_TYPE) >> 4;
  const port = [R.PCI_EXP_TYPE_ROOT_PORT, R.PCI_EXP_TYPE_UPSTREAM, R.PCI_EXP_TYPE_DOWNSTREAM];
  let devctl = port.includes(type) ? 0x000f : 0; // CERE | NFERE | FERE | URRE
  if (cs.read(at + R.PCI_EXP_DEVCAP, 4) & R.PCI_EXP_DEVCAP_FLR) devctl |= R.PCI_EXP_DEVCTL_BCR_FLR;
  cs.allow(at + R.PCI_EXP_DEVCTL, 2, devctl);
  const ari = cs.read(at + R.PCI_EXP_DEVCAP2, 4) & R.PCI_EXP_DEVCAP2_ARI;
  cs.allow(at + R.PCI_EXP_DEVCTL2, 2, 0x8000 | (ari ? R.PCI_EXP_DEVCTL2_ARI : 0)); // EETLPPB
  if (flags & R.PCI_EXP_FLAGS_SLOT) {
    // PIC | AIC | HPIE | CCIE | PDCE | ABPE | EIC, and PCC when a power controller exists.
    const pcc = cs.read(at + R.PCI_EXP_SLTCAP, 4) & R.PCI_EXP_SLTCAP_PCP ? 0x0400 : 0;
    cs.allow(at + R.PCI_EXP_SLTCTL, 2, 0x0bf9 | pcc);
  }
  if (type === R.PCI_EXP_TYPE_ROOT_PORT) cs.allow(at + R.PCI_EXP_RTCTL, 2, 0x0007);
}

/** PCI_ERR_UNC_SUPPORTED and PCI_ERR_COR_SUPPORTED (include/hw/pci/pcie_regs.h). */
const AER_UNC_SUPPORTED = 0x03fff030;
const AER_COR_SUPPORTED = 0x0000f1c1;

function extCapabilityMasks(cs: ConfigSpace, id: number, at: number): void {
  if (id === R.PCI_EXT_CAP_ID_ERR) {
    cs.allow(at + R.PCI_ERR_UNCOR_SEVER, 4, AER_UNC_SUPPORTED);
    cs.allow(at + R.PCI_ERR_COR_MASK, 4, AER_COR_SUPPORTED);
    const mhrc = cs.read(at + R.PCI_ERR_CAP, 4) & R.PCI_ERR_CAP_MHRC;
    cs.allow(
      at + R.PCI_ERR_CAP,
      4,
      R.PCI_ERR_CAP_ECRC_GENE | R.PCI_ERR_CAP_ECRC_CHKE | (mhrc ? R.PCI_ERR_CAP_MHRE : 0),
    );
    if (isRootPort(cs)) cs.allow(at + R.PCI_ERR_ROOT_COMMAND, 4, 0x7); // PCI_ERR_ROOT_CMD_EN_MASK
  }
  if (id === R.PCI_EXT_CAP_ID_ACS) cs.allow(at + R.PCI_ACS_CTRL, 2, cs.read(at + R.PCI_ACS_CAP, 2));
  if (id === R.PCI_EXT_CAP_ID_ATS) cs.allow(at + 6, 2, 0x800f); // PCI_ATS_CTRL
  if (id === R.PCI_EXT_CAP_ID_SRIOV) {
    cs.allow(
      at + R.PCI_SRIOV_CTRL,
      2,
      R.PCI_SRIOV_CTRL_VFE | R.PCI_SRIOV_CTRL_MSE | R.PCI_SRIOV_CTRL_ARI,
    );
    cs.allow(at + R.PCI_SRIOV_NUM_VF, 2, 0xffff);
    cs.allow(at + 0x20, 4, 0x553); // PCI_SRIOV_SYS_PGSIZE: the sizes QEMU supports
  }
}

function isRootPort(cs: ConfigSpace): boolean {
  const at = walkCaps(cs).find(([id]) => id === R.PCI_CAP_ID_EXP)?.[1];
  return (
    at !== undefined &&
    (cs.read(at + R.PCI_EXP_FLAGS, 2) & R.PCI_EXP_FLAGS_TYPE) >> 4 === R.PCI_EXP_TYPE_ROOT_PORT
  );
}
