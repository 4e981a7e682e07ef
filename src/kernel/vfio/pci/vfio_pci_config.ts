/**
 * vfio-pci config space virtualisation, drivers/vfio/pci/vfio_pci_config.c (Linux 6.12).
 *
 * Every byte of config space belongs to the standard header, to one capability (by the
 * map built when the device is opened: pci_config_map), to a hidden capability, or to
 * nothing. Each capability kind has permission bits: per bit, whether reads and writes
 * are virtualised (served from and stored into vconfig, the per-open copy of config space)
 * and whether the user may write it; bits neither virtual nor writable read through to
 * the device and drop writes. Accesses are cut into naturally aligned pieces that never
 * cross a capability. Special cases follow the kernel: BAR sizing is emulated on the
 * virtual BARs, Command's memory/IO enables are remembered so a back-door reset is caught
 * and the BARs restored, DisINTx is emulated through INTx masking, a PM state write
 * becomes a real power transition, the PCIe and AF FLR bits trigger a function reset,
 * MRRS writes reach the device with MPS as floor, MSI's enable and queue size are owned
 * by the SET_IRQS ioctl, capabilities of length 0 are unlinked from the chain.
 */
import { err } from "../../../uapi/errno.js";
import * as R from "../../../uapi/pci_regs.js";
import { pcieCapabilityClearAndSet16 } from "../../pci/access.js";
import { PCI_D0, PCI_D1, PCI_D2, PCI_D3hot, pciCurrentState } from "../../pci/enable.js";
import type { PciDev } from "../../pci/pci.js";
import { pciTryResetFunction } from "../../pci/reset.js";
import {
  IORESOURCE_IO,
  IORESOURCE_MEM_64,
  IORESOURCE_PREFETCH,
  IORESOURCE_ROM_SHADOW,
  PCI_ROM_RESOURCE,
  pciResourceFlags,
  pciResourceLen,
  pciResourceStart,
} from "../../pci/resource.js";
import type { VfioPciCoreDevice } from "./vfio_pci_core.js";
import { vfioPciSetPowerState } from "./vfio_pci_core.js";
import { VFIO_PCI_MSI_IRQ_INDEX } from "../../../uapi/vfio.js";
import { vfioPciIntxMask, vfioPciIntxUnmask } from "./vfio_pci_intrs.js";

/** The standard header's fake capability ID. */
const PCI_CAP_ID_BASIC = 0;
/** pci_config_map values: raw access, and virtualised access (vfio_pci_priv.h). */
const PCI_CAP_ID_INVALID = 0xff;
const PCI_CAP_ID_INVALID_VIRT = 0xfe;

const NO_VIRT = 0;
const ALL_VIRT = 0xffffffff;
const NO_WRITE = 0;
const ALL_WRITE = 0xffffffff;

/** A read's value, little-endian in the low `count` bytes. */
interface Val {
  v: number;
}

type ReadFn = (
  vdev: VfioPciCoreDevice,
  pos: number,
  count: number,
  perm: PermBits,
  offset: number,
  val: Val,
) => number;
type WriteFn = (
  vdev: VfioPciCoreDevice,
  pos: number,
  count: number,
  perm: PermBits,
  offset: number,
  val: number,
) => number;

/** struct perm_bits: one bit of each per bit of the capability (zero: readable only). */
interface PermBits {
  virt: Uint8Array;
  write: Uint8Array;
  readfn?: ReadFn;
  writefn?: WriteFn;
}

/** Per-open config state of a device (the vconfig side of struct vfio_pci_core_device). */
export interface VfioPciConfig {
  map: Uint8Array;
  vconfig: Uint8Array;
  msiPerm: PermBits | null;
  /** BAR and ROM BAR values at open, for restoring after a back-door reset. */
  rbar: number[];
  bardirty: boolean;
  extendedCaps: boolean;
}

/* Capability lengths: 0 hides the capability, 0xff means ask vfio_cap_len / vfio_ext_cap_len. */
const PCI_CAP_LENGTH: Record<number, number> = {
  [PCI_CAP_ID_BASIC]: R.PCI_STD_HEADER_SIZEOF,
  [R.PCI_CAP_ID_PM]: R.PCI_PM_SIZEOF,
  [R.PCI_CAP_ID_AGP]: R.PCI_AGP_SIZEOF,
  [R.PCI_CAP_ID_VPD]: R.PCI_CAP_VPD_SIZEOF,
  [R.PCI_CAP_ID_SLOTID]: 0,
  [R.PCI_CAP_ID_MSI]: 0xff,
  [R.PCI_CAP_ID_CHSWP]: 0,
  [R.PCI_CAP_ID_PCIX]: 0xff,
  [R.PCI_CAP_ID_HT]: 0xff,
  [R.PCI_CAP_ID_VNDR]: 0xff,
  [R.PCI_CAP_ID_DBG]: 0,
  [R.PCI_CAP_ID_CCRC]: 0,
  [R.PCI_CAP_ID_SHPC]: 0,
  [R.PCI_CAP_ID_SSVID]: 0,
  [R.PCI_CAP_ID_AGP3]: 0,
  [R.PCI_CAP_ID_SECDEV]: 0,
  [R.PCI_CAP_ID_EXP]: 0xff,
  [R.PCI_CAP_ID_MSIX]: R.PCI_CAP_MSIX_SIZEOF,
  [R.PCI_CAP_ID_SATA]: 0xff,
  [R.PCI_CAP_ID_AF]: R.PCI_CAP_AF_SIZEOF,
};

const PCI_EXT_CAP_LENGTH: Record<number, number> = {
  [R.PCI_EXT_CAP_ID_ERR]: R.PCI_ERR_ROOT_COMMAND,
  [R.PCI_EXT_CAP_ID_VC]: 0xff,
  [R.PCI_EXT_CAP_ID_DSN]: R.PCI_EXT_CAP_DSN_SIZEOF,
  [R.PCI_EXT_CAP_ID_PWR]: R.PCI_EXT_CAP_PWR_SIZEOF,
  [R.PCI_EXT_CAP_ID_RCLD]: 0,
  [R.PCI_EXT_CAP_ID_RCILC]: 0,
  [R.PCI_EXT_CAP_ID_RCEC]: 0,
  [R.PCI_EXT_CAP_ID_MFVC]: 0xff,
  [R.PCI_EXT_CAP_ID_VC9]: 0xff,
  [R.PCI_EXT_CAP_ID_RCRB]: 0,
  [R.PCI_EXT_CAP_ID_VNDR]: 0xff,
  [R.PCI_EXT_CAP_ID_CAC]: 0,
  [R.PCI_EXT_CAP_ID_ACS]: 0xff,
  [R.PCI_EXT_CAP_ID_ARI]: R.PCI_EXT_CAP_ARI_SIZEOF,
  [R.PCI_EXT_CAP_ID_ATS]: R.PCI_EXT_CAP_ATS_SIZEOF,
  [R.PCI_EXT_CAP_ID_SRIOV]: R.PCI_EXT_CAP_SRIOV_SIZEOF,
  [R.PCI_EXT_CAP_ID_MRIOV]: 0,
  [R.PCI_EXT_CAP_ID_MCAST]: R.PCI_EXT_CAP_MCAST_ENDPOINT_SIZEOF,
  [R.PCI_EXT_CAP_ID_PRI]: R.PCI_EXT_CAP_PRI_SIZEOF,
  [R.PCI_EXT_CAP_ID_AMD_XXX]: 0,
  [R.PCI_EXT_CAP_ID_REBAR]: 0xff,
  [R.PCI_EXT_CAP_ID_DPA]: 0xff,
  [R.PCI_EXT_CAP_ID_TPH]: 0xff,
  [R.PCI_EXT_CAP_ID_LTR]: R.PCI_EXT_CAP_LTR_SIZEOF,
  [R.PCI_EXT_CAP_ID_SECPCI]: 0,
  [R.PCI_EXT_CAP_ID_PMUX]: 0,
  [R.PCI_EXT_CAP_ID_PASID]: 0,
  [R.PCI_EXT_CAP_ID_DVSEC]: 0xff,
};

/* ---------------------------------------------------------------------------------------- */
/* Little-endian byte helpers                                                               */
/* ---------------------------------------------------------------------------------------- */

function getLe(buf: Uint8Array, off: number, count: number): number {
  let v = 0;
  for (let i = count - 1; i >= 0; i--) v = v * 256 + (buf[off + i] ?? 0);
  return v;
}

function setLe(buf: Uint8Array, off: number, count: number, v: number): void {
  for (let i = 0; i < count; i++) buf[off + i] = Math.floor(v / 2 ** (8 * i)) & 0xff;
}

const ones = (count: number) => 2 ** (8 * count) - 1;

/** Keep the low `count` bytes of `v` as an unsigned number. */
const trunc = (v: number, count: number) => (count === 4 ? v >>> 0 : v & ones(count));

function userRead(pdev: PciDev, pos: number, count: number): number {
  return count === 1 ? pdev.read8(pos) : count === 2 ? pdev.read16(pos) : pdev.read32(pos);
}

function userWrite(pdev: PciDev, pos: number, count: number, v: number): void {
  if (count === 1) pdev.write8(pos, v);
  else if (count === 2) pdev.write16(pos, v);
  else pdev.write32(pos, v);
}

const cfg = (vdev: VfioPciCoreDevice) => vdev.config as VfioPciConfig;

/* ---------------------------------------------------------------------------------------- */
/* Generic accessors                                                                        */
/* ---------------------------------------------------------------------------------------- */

/** vfio_default_config_read(): virtual bits from vconfig, the rest from the device. */
const defaultRead: ReadFn = (vdev, pos, count, perm, offset, val) => {
  val.v = getLe(cfg(vdev).vconfig, pos, count);
  const virt = getLe(perm.virt, offset, count);
  if (virt !== ones(count)) {
    const phys = userRead(vdev.pdev, pos, count);
    val.v = trunc((phys & ~virt) | (val.v & virt), count);
  }
  return count;
};

/** vfio_default_config_write(): writable virtual bits to vconfig, writable real bits to the device. */
const defaultWrite: WriteFn = (vdev, pos, count, perm, offset, val) => {
  const write = getLe(perm.write, offset, count);
  if (!write) return count;
  const virt = getLe(perm.virt, offset, count);
  const vconfig = cfg(vdev).vconfig;
  if (write & virt) {
    let v = getLe(vconfig, pos, count);
    v = (v & ~(write & virt)) | (val & (write & virt));
    setLe(vconfig, pos, count, trunc(v, count));
  }
  if (write & ~virt) {
    let phys = userRead(vdev.pdev, pos, count);
    phys = (phys & ~(write & ~virt)) | (val & (write & ~virt));
    userWrite(vdev.pdev, pos, count, trunc(phys, count));
  }
  return count;
};

/** vfio_direct_config_read(): the device, except the capability ID and next pointer. */
const directRead: ReadFn = (vdev, pos, count, _perm, offset, val) => {
  val.v = userRead(vdev.pdev, pos, count);
  const vconfig = cfg(vdev).vconfig;
  if (pos >= R.PCI_CFG_SPACE_SIZE) {
    if (offset < 4) val.v = getLe(vconfig, pos, count);
  } else if (pos >= R.PCI_STD_HEADER_SIZEOF) {
    if (offset === R.PCI_CAP_LIST_ID && count > 1) {
      const n = Math.min(R.PCI_CAP_FLAGS, count);
      val.v = trunc(val.v - (val.v % 2 ** (8 * n)) + getLe(vconfig, pos, n), count);
    } else if (offset === R.PCI_CAP_LIST_NEXT) {
      val.v = val.v - (val.v & 0xff) + (vconfig[pos] as number);
    }
  }
  return count;
};

const rawWrite: WriteFn = (vdev, pos, count, _perm, _offset, val) => {
  userWrite(vdev.pdev, pos, count, val);
  return count;
};

const rawRead: ReadFn = (vdev, pos, count, _perm, _offset, val) => {
  val.v = userRead(vdev.pdev, pos, count);
  return count;
};

const virtWrite: WriteFn = (vdev, pos, count, _perm, _offset, val) => {
  setLe(cfg(vdev).vconfig, pos, count, val);
  return count;
};

const virtRead: ReadFn = (vdev, pos, count, _perm, _offset, val) => {
  val.v = getLe(cfg(vdev).vconfig, pos, count);
  return count;
};

const EMPTY = new Uint8Array(0);
const directRoPerms: PermBits = { virt: EMPTY, write: EMPTY, readfn: directRead };
/* Gaps between capabilities: some devices hide registers there (be2net). */
const unassignedPerms: PermBits = { virt: EMPTY, write: EMPTY, readfn: rawRead, writefn: rawWrite };
const virtPerms: PermBits = { virt: EMPTY, write: EMPTY, readfn: virtRead, writefn: virtWrite };

/** alloc_perm_bits(): rounded up to a dword; all readable, nothing writable or virtual. */
function allocPermBits(size: number): PermBits {
  const n = Math.ceil(size / 4) * 4;
  return {
    virt: new Uint8Array(n),
    write: new Uint8Array(n),
    readfn: defaultRead,
    writefn: defaultWrite,
  };
}

function pSet(p: PermBits, off: number, width: 1 | 2 | 4, virt: number, write: number): void {
  setLe(p.virt, off, width, trunc(virt, width));
  setLe(p.write, off, width, trunc(write, width));
}

/* ---------------------------------------------------------------------------------------- */
/* Standard header                                                                          */
/* ---------------------------------------------------------------------------------------- */

const isBar = (offset: number) =>
  (offset >= R.PCI_BASE_ADDRESS_0 && offset < R.PCI_BASE_ADDRESS_5 + 4) ||
  (offset >= R.PCI_ROM_ADDRESS && offset < R.PCI_ROM_ADDRESS + 4);

/** pdev->no_command_memory: a VF's memory decoding is the PF's SR-IOV MSE bit. */
const noCommandMemory = (pdev: PciDev) => pdev.isVirtfn;

/** __vfio_pci_memory_enabled(): BAR access needs D0-D2 and the virtual memory enable. */
export function vfioPciMemoryEnabled(vdev: VfioPciCoreDevice): boolean {
  const cmd = getLe(cfg(vdev).vconfig, R.PCI_COMMAND, 2);
  return (
    pciCurrentState(vdev.pdev) < PCI_D3hot &&
    (noCommandMemory(vdev.pdev) || (cmd & R.PCI_COMMAND_MEMORY) !== 0)
  );
}

/** vfio_bar_restore(): put the BARs back after a reset the user did behind our back. */
function barRestore(vdev: VfioPciCoreDevice): void {
  const pdev = vdev.pdev;
  if (pdev.isVirtfn) return;
  const rbar = cfg(vdev).rbar;
  for (let i = 0; i < 6; i++) pdev.write32(R.PCI_BASE_ADDRESS_0 + 4 * i, rbar[i] as number);
  pdev.write32(R.PCI_ROM_ADDRESS, rbar[6] as number);
  if (vdev.nointx)
    pdev.write16(R.PCI_COMMAND, pdev.read16(R.PCI_COMMAND) | R.PCI_COMMAND_INTX_DISABLE);
}

/** vfio_generate_bar_flags(): the flag bits a real BAR of this resource would show. */
function barFlags(pdev: PciDev, bar: number): number {
  const flags = pciResourceFlags(pdev, bar);
  if (flags & IORESOURCE_IO) return R.PCI_BASE_ADDRESS_SPACE_IO;
  let v = 0;
  if (flags & IORESOURCE_PREFETCH) v |= R.PCI_BASE_ADDRESS_MEM_PREFETCH;
  if (flags & IORESOURCE_MEM_64) v |= R.PCI_BASE_ADDRESS_MEM_TYPE_64;
  return v;
}

/** vfio_bar_fixup(): BAR sizing on the virtual BARs — mask to the size, add the flag bits. */
function barFixup(vdev: VfioPciCoreDevice): void {
  const c = cfg(vdev);
  const pdev = vdev.pdev;
  if (!c.bardirty) return;
  for (let i = 0; i < R.PCI_STD_NUM_BARS; i++) {
    const off = R.PCI_BASE_ADDRESS_0 + 4 * i;
    if (!pciResourceStart(pdev, i)) {
      setLe(c.vconfig, off, 4, 0); // unmapped by the host = unimplemented to the user
      continue;
    }
    const mask = BigInt.asUintN(64, ~(pciResourceLen(pdev, i) - 1n));
    let vbar = (getLe(c.vconfig, off, 4) & Number(mask & 0xffffffffn)) | barFlags(pdev, i);
    setLe(c.vconfig, off, 4, vbar >>> 0);
    if (vbar & R.PCI_BASE_ADDRESS_MEM_TYPE_64) {
      vbar = getLe(c.vconfig, off + 4, 4) & Number(mask >> 32n);
      setLe(c.vconfig, off + 4, 4, vbar >>> 0);
      i++;
    }
  }
  // REGION_INFO says 0 when the ROM cannot be read, but the BAR still sizes.
  const rom = R.PCI_ROM_ADDRESS;
  if (pciResourceStart(pdev, PCI_ROM_RESOURCE)) {
    const size = Number(pciResourceLen(pdev, PCI_ROM_RESOURCE));
    const mask = ((2 ** 32 - size) | R.PCI_ROM_ADDRESS_ENABLE) >>> 0;
    setLe(c.vconfig, rom, 4, (getLe(c.vconfig, rom, 4) & mask) >>> 0);
  } else if (pciResourceFlags(pdev, PCI_ROM_RESOURCE) & IORESOURCE_ROM_SHADOW) {
    const mask = ((2 ** 32 - 0x20000) | R.PCI_ROM_ADDRESS_ENABLE) >>> 0;
    setLe(c.vconfig, rom, 4, (getLe(c.vconfig, rom, 4) & mask) >>> 0);
  } else {
    setLe(c.vconfig, rom, 4, 0);
  }
  c.bardirty = false;
}

const basicRead: ReadFn = (vdev, pos, count, perm, offset, val) => {
  if (isBar(offset)) barFixup(vdev);
  const n = defaultRead(vdev, pos, count, perm, offset, val);
  // Mask in the virtual memory enable where the device has none.
  if (offset === R.PCI_COMMAND && noCommandMemory(vdev.pdev))
    val.v |= getLe(cfg(vdev).vconfig, R.PCI_COMMAND, 2) & R.PCI_COMMAND_MEMORY;
  return n;
};

/** vfio_need_bar_restore(): a BAR no longer holds what it held at open. */
function needBarRestore(vdev: VfioPciCoreDevice): boolean {
  const rbar = cfg(vdev).rbar;
  for (let i = 0; i < 6; i++) {
    const r = rbar[i] as number;
    if (r && vdev.pdev.read32(R.PCI_BASE_ADDRESS_0 + 4 * i) !== r) return true;
  }
  return false;
}

const basicWrite: WriteFn = (vdev, pos, count, perm, offset, val) => {
  const pdev = vdev.pdev;
  const vconfig = cfg(vdev).vconfig;
  const virtCmd = () => getLe(vconfig, R.PCI_COMMAND, 2);
  let newCmd = 0;
  if (offset === R.PCI_COMMAND) {
    const physCmd = pdev.read16(R.PCI_COMMAND);
    newCmd = trunc(val, 2);
    const physIo = !!(physCmd & R.PCI_COMMAND_IO);
    const virtIo = !!(virtCmd() & R.PCI_COMMAND_IO);
    const newIo = !!(newCmd & R.PCI_COMMAND_IO);
    const physMem = !!(physCmd & R.PCI_COMMAND_MEMORY);
    const virtMem = !!(virtCmd() & R.PCI_COMMAND_MEMORY);
    const newMem = !!(newCmd & R.PCI_COMMAND_MEMORY);
    // Enabling what we think is enabled but the device shows off: it was reset behind us.
    if (
      (newMem && virtMem && !physMem && !noCommandMemory(pdev)) ||
      (newIo && virtIo && !physIo) ||
      needBarRestore(vdev)
    )
      barRestore(vdev);
  }
  const n = defaultWrite(vdev, pos, count, perm, offset, val);
  if (n < 0) return n;
  if (offset === R.PCI_COMMAND) {
    // Remember the memory/IO enables for the test above.
    const mask = R.PCI_COMMAND_MEMORY | R.PCI_COMMAND_IO;
    setLe(vconfig, R.PCI_COMMAND, 2, (virtCmd() & ~mask) | (newCmd & mask));
  }
  // Emulate INTx disable
  if (offset >= R.PCI_COMMAND && offset <= R.PCI_COMMAND + 1) {
    const virtIntxDisable = !!(virtCmd() & R.PCI_COMMAND_INTX_DISABLE);
    if (virtIntxDisable && !vdev.virqDisabled) {
      vdev.virqDisabled = true;
      vfioPciIntxMask(vdev);
    } else if (!virtIntxDisable && vdev.virqDisabled) {
      vdev.virqDisabled = false;
      vfioPciIntxUnmask(vdev);
    }
  }
  if (isBar(offset)) cfg(vdev).bardirty = true;
  return n;
};

function initBasicPerm(): PermBits {
  const p = allocPermBits(R.PCI_STD_HEADER_SIZEOF);
  p.readfn = basicRead;
  p.writefn = basicWrite;
  // Virtualised for SR-IOV functions, which just have ffff.
  pSet(p, R.PCI_VENDOR_ID, 2, ALL_VIRT, NO_WRITE);
  pSet(p, R.PCI_DEVICE_ID, 2, ALL_VIRT, NO_WRITE);
  // DisINTx is used internally for interrupt control and emulated for non-2.3 devices.
  pSet(p, R.PCI_COMMAND, 2, R.PCI_COMMAND_INTX_DISABLE, ALL_WRITE);
  pSet(p, R.PCI_STATUS, 2, R.PCI_STATUS_CAP_LIST, NO_WRITE);
  pSet(p, R.PCI_CACHE_LINE_SIZE, 1, NO_VIRT, ALL_WRITE);
  pSet(p, R.PCI_LATENCY_TIMER, 1, NO_VIRT, ALL_WRITE);
  pSet(p, R.PCI_BIST, 1, NO_VIRT, ALL_WRITE);
  for (let i = 0; i < 6; i++) pSet(p, R.PCI_BASE_ADDRESS_0 + 4 * i, 4, ALL_VIRT, ALL_WRITE);
  pSet(p, R.PCI_ROM_ADDRESS, 4, ALL_VIRT, ALL_WRITE);
  pSet(p, R.PCI_CAPABILITY_LIST, 1, ALL_VIRT, NO_WRITE);
  pSet(p, R.PCI_INTERRUPT_LINE, 1, ALL_VIRT, ALL_WRITE);
  // The pin is virtualised so INTx can be hidden.
  pSet(p, R.PCI_INTERRUPT_PIN, 1, ALL_VIRT, NO_WRITE);
  return p;
}

/* ---------------------------------------------------------------------------------------- */
/* Capabilities                                                                             */
/* ---------------------------------------------------------------------------------------- */

const D_STATES = [PCI_D0, PCI_D1, PCI_D2, PCI_D3hot];

/** vfio_pm_config_write(): the state bits are read-only; a state write is a real transition. */
const pmWrite: WriteFn = (vdev, pos, count, perm, offset, val) => {
  const n = defaultWrite(vdev, pos, count, perm, offset, val);
  if (n < 0) return n;
  if (offset === R.PCI_PM_CTRL)
    vfioPciSetPowerState(vdev, D_STATES[val & R.PCI_PM_CTRL_STATE_MASK] as number);
  return n;
};

function initPmPerm(): PermBits {
  const p = allocPermBits(PCI_CAP_LENGTH[R.PCI_CAP_ID_PM] as number);
  p.writefn = pmWrite;
  // Next is always virtual, so capabilities can be unlinked.
  pSet(p, R.PCI_CAP_LIST_NEXT, 1, ALL_VIRT, NO_WRITE);
  // The user cannot service PME: PME_Support, PME_En and PME_Status are virtual (cleared).
  pSet(p, R.PCI_PM_PMC, 2, R.PCI_PM_CAP_PME_MASK, NO_WRITE);
  pSet(
    p,
    R.PCI_PM_CTRL,
    4,
    R.PCI_PM_CTRL_PME_ENABLE | R.PCI_PM_CTRL_PME_STATUS,
    ~(R.PCI_PM_CTRL_PME_ENABLE | R.PCI_PM_CTRL_PME_STATUS | R.PCI_PM_CTRL_STATE_MASK),
  );
  return p;
}

/**
 * vfio_vpd_config_write(): address and data are virtual and a write of the address's top
 * byte starts a VPD access. The machine implements no VPD engine, so pci_read_vpd /
 * pci_write_vpd fail and the F bit never toggles.
 */
const vpdWrite: WriteFn = (vdev, pos, count, perm, offset, val) =>
  defaultWrite(vdev, pos, count, perm, offset, val);

function initVpdPerm(): PermBits {
  const p = allocPermBits(PCI_CAP_LENGTH[R.PCI_CAP_ID_VPD] as number);
  p.writefn = vpdWrite;
  pSet(p, R.PCI_CAP_LIST_NEXT, 1, ALL_VIRT, NO_WRITE);
  pSet(p, R.PCI_VPD_ADDR, 2, ALL_VIRT, ALL_WRITE);
  pSet(p, R.PCI_VPD_DATA, 4, ALL_VIRT, ALL_WRITE);
  return p;
}

function initPcixPerm(): PermBits {
  const p = allocPermBits(R.PCI_CAP_PCIX_SIZEOF_V2);
  pSet(p, R.PCI_CAP_LIST_NEXT, 1, ALL_VIRT, NO_WRITE);
  pSet(p, R.PCI_X_CMD, 2, NO_VIRT, ALL_WRITE);
  pSet(p, R.PCI_X_ECC_CSR, 4, NO_VIRT, ALL_WRITE);
  return p;
}

/** vfio_exp_config_write(): FLR is virtual and resets; MRRS reaches the device, MPS as floor. */
const expWrite: WriteFn = (vdev, pos, count, perm, offset, val) => {
  const vconfig = cfg(vdev).vconfig;
  const ctrlAt = pos - offset + R.PCI_EXP_DEVCTL;
  const readrq = getLe(vconfig, ctrlAt, 2) & R.PCI_EXP_DEVCTL_READRQ;
  const n = defaultWrite(vdev, pos, count, perm, offset, val);
  if (n < 0) return n;
  let ctrl = getLe(vconfig, ctrlAt, 2);
  if (ctrl & R.PCI_EXP_DEVCTL_BCR_FLR) {
    ctrl &= ~R.PCI_EXP_DEVCTL_BCR_FLR;
    setLe(vconfig, ctrlAt, 2, ctrl);
    const cap = vdev.pdev.read32(pos - offset + R.PCI_EXP_DEVCAP);
    if (cap & R.PCI_EXP_DEVCAP_FLR) pciTryResetFunction(vdev.hw, vdev.pdev);
  }
  if (readrq !== (ctrl & R.PCI_EXP_DEVCTL_READRQ)) {
    const rq = 128 << ((ctrl & R.PCI_EXP_DEVCTL_READRQ) >> 12);
    const mps =
      128 <<
      ((vdev.pdev.read16(vdev.pdev.pcieCap + R.PCI_EXP_DEVCTL) & R.PCI_EXP_DEVCTL_PAYLOAD) >> 5);
    const want = Math.max(rq, mps);
    // pcie_set_readrq(): 128..4096, a power of two.
    if (want <= 4096)
      pcieCapabilityClearAndSet16(
        vdev.pdev,
        R.PCI_EXP_DEVCTL,
        R.PCI_EXP_DEVCTL_READRQ,
        (Math.log2(want) - 7) << 12,
      );
  }
  return n;
};

function initExpPerm(): PermBits {
  const p = allocPermBits(R.PCI_CAP_EXP_ENDPOINT_SIZEOF_V2);
  p.writefn = expWrite;
  pSet(p, R.PCI_CAP_LIST_NEXT, 1, ALL_VIRT, NO_WRITE);
  // Device control, except phantom functions (IOMMU), MPS (system-wide) and ARI (set at probe).
  pSet(
    p,
    R.PCI_EXP_DEVCTL,
    2,
    R.PCI_EXP_DEVCTL_BCR_FLR | R.PCI_EXP_DEVCTL_PAYLOAD | R.PCI_EXP_DEVCTL_READRQ,
    ~R.PCI_EXP_DEVCTL_PHANTOM,
  );
  pSet(p, R.PCI_EXP_DEVCTL2, 2, NO_VIRT, ~R.PCI_EXP_DEVCTL2_ARI);
  return p;
}

/** vfio_af_config_write(): the AF FLR bit is virtual and resets when AF FLR is supported. */
const afWrite: WriteFn = (vdev, pos, count, perm, offset, val) => {
  const n = defaultWrite(vdev, pos, count, perm, offset, val);
  if (n < 0) return n;
  const vconfig = cfg(vdev).vconfig;
  const ctrlAt = pos - offset + R.PCI_AF_CTRL;
  if ((vconfig[ctrlAt] as number) & R.PCI_AF_CTRL_FLR) {
    vconfig[ctrlAt] = (vconfig[ctrlAt] as number) & ~R.PCI_AF_CTRL_FLR;
    const cap = vdev.pdev.read8(pos - offset + R.PCI_AF_CAP);
    if (cap & R.PCI_AF_CAP_FLR && cap & R.PCI_AF_CAP_TP) pciTryResetFunction(vdev.hw, vdev.pdev);
  }
  return n;
};

function initAfPerm(): PermBits {
  const p = allocPermBits(PCI_CAP_LENGTH[R.PCI_CAP_ID_AF] as number);
  p.writefn = afWrite;
  pSet(p, R.PCI_CAP_LIST_NEXT, 1, ALL_VIRT, NO_WRITE);
  pSet(p, R.PCI_AF_CTRL, 1, R.PCI_AF_CTRL_FLR, R.PCI_AF_CTRL_FLR);
  return p;
}

function initErrPerm(): PermBits {
  const p = allocPermBits(PCI_EXT_CAP_LENGTH[R.PCI_EXT_CAP_ID_ERR] as number);
  // The first dword of every extended capability holds the next pointer.
  pSet(p, 0, 4, ALL_VIRT, NO_WRITE);
  const unc =
    R.PCI_ERR_UNC_UND |
    R.PCI_ERR_UNC_DLP |
    R.PCI_ERR_UNC_SURPDN |
    R.PCI_ERR_UNC_POISON_TLP |
    R.PCI_ERR_UNC_FCP |
    R.PCI_ERR_UNC_COMP_TIME |
    R.PCI_ERR_UNC_COMP_ABORT |
    R.PCI_ERR_UNC_UNX_COMP |
    R.PCI_ERR_UNC_RX_OVER |
    R.PCI_ERR_UNC_MALF_TLP |
    R.PCI_ERR_UNC_ECRC |
    R.PCI_ERR_UNC_UNSUP |
    R.PCI_ERR_UNC_ACSV |
    R.PCI_ERR_UNC_INTN |
    R.PCI_ERR_UNC_MCBTLP |
    R.PCI_ERR_UNC_ATOMEG |
    R.PCI_ERR_UNC_TLPPRE;
  pSet(p, R.PCI_ERR_UNCOR_STATUS, 4, NO_VIRT, unc);
  pSet(p, R.PCI_ERR_UNCOR_MASK, 4, NO_VIRT, unc);
  pSet(p, R.PCI_ERR_UNCOR_SEVER, 4, NO_VIRT, unc);
  const cor =
    R.PCI_ERR_COR_RCVR |
    R.PCI_ERR_COR_BAD_TLP |
    R.PCI_ERR_COR_BAD_DLLP |
    R.PCI_ERR_COR_REP_ROLL |
    R.PCI_ERR_COR_REP_TIMER |
    R.PCI_ERR_COR_ADV_NFAT |
    R.PCI_ERR_COR_INTERNAL |
    R.PCI_ERR_COR_LOG_OVER;
  pSet(p, R.PCI_ERR_COR_STATUS, 4, NO_VIRT, cor);
  pSet(p, R.PCI_ERR_COR_MASK, 4, NO_VIRT, cor);
  pSet(p, R.PCI_ERR_CAP, 4, NO_VIRT, R.PCI_ERR_CAP_ECRC_GENE | R.PCI_ERR_CAP_ECRC_CHKE);
  return p;
}

function initPwrPerm(): PermBits {
  const p = allocPermBits(PCI_EXT_CAP_LENGTH[R.PCI_EXT_CAP_ID_PWR] as number);
  pSet(p, 0, 4, ALL_VIRT, NO_WRITE);
  // Selecting a data register is harmless; the data stays read-only.
  pSet(p, R.PCI_PWR_DATA, 1, NO_VIRT, ALL_WRITE);
  return p;
}

/** vfio_pci_init_perm_bits(): the shared tables; capabilities default to direct read-only. */
const CAP_PERMS: PermBits[] = Array.from({ length: R.PCI_CAP_ID_MAX + 1 }, () => ({
  ...directRoPerms,
}));
const ECAP_PERMS: PermBits[] = Array.from({ length: R.PCI_EXT_CAP_ID_MAX + 1 }, () => ({
  ...directRoPerms,
}));
CAP_PERMS[PCI_CAP_ID_BASIC] = initBasicPerm();
CAP_PERMS[R.PCI_CAP_ID_PM] = initPmPerm();
CAP_PERMS[R.PCI_CAP_ID_VPD] = initVpdPerm();
CAP_PERMS[R.PCI_CAP_ID_PCIX] = initPcixPerm();
(CAP_PERMS[R.PCI_CAP_ID_VNDR] as PermBits).writefn = rawWrite;
CAP_PERMS[R.PCI_CAP_ID_EXP] = initExpPerm();
CAP_PERMS[R.PCI_CAP_ID_AF] = initAfPerm();
ECAP_PERMS[R.PCI_EXT_CAP_ID_ERR] = initErrPerm();
ECAP_PERMS[R.PCI_EXT_CAP_ID_PWR] = initPwrPerm();
(ECAP_PERMS[R.PCI_EXT_CAP_ID_VNDR] as PermBits).writefn = rawWrite;
(ECAP_PERMS[R.PCI_EXT_CAP_ID_DVSEC] as PermBits).writefn = rawWrite;

/** vfio_find_cap_start(): the first byte of the capability holding `pos`. */
function findCapStart(vdev: VfioPciCoreDevice, pos: number): number {
  const map = cfg(vdev).map;
  const base = pos >= R.PCI_CFG_SPACE_SIZE ? R.PCI_CFG_SPACE_SIZE : R.PCI_STD_HEADER_SIZEOF;
  const cap = map[pos];
  if (cap === PCI_CAP_ID_BASIC) return 0;
  while (pos - 1 >= base && map[pos - 1] === cap) pos--;
  return pos;
}

/* MSI: the queue size offered is what SET_IRQS last enabled; enable belongs to the ioctl. */

const msiRead: ReadFn = (vdev, pos, count, perm, offset, val) => {
  if (offset <= R.PCI_MSI_FLAGS && offset + count >= R.PCI_MSI_FLAGS) {
    // The kernel addresses the capability start here, not start + PCI_MSI_FLAGS.
    const start = findCapStart(vdev, pos);
    const vconfig = cfg(vdev).vconfig;
    const flags = getLe(vconfig, start, 2);
    setLe(vconfig, start, 2, (flags & ~R.PCI_MSI_FLAGS_QMASK) | (vdev.msiQmax << 1));
  }
  return defaultRead(vdev, pos, count, perm, offset, val);
};

const msiWrite: WriteFn = (vdev, pos, count, perm, offset, val) => {
  const n = defaultWrite(vdev, pos, count, perm, offset, val);
  if (n < 0) return n;
  if (offset <= R.PCI_MSI_FLAGS && offset + count >= R.PCI_MSI_FLAGS) {
    const start = findCapStart(vdev, pos);
    const vconfig = cfg(vdev).vconfig;
    let flags = getLe(vconfig, start + R.PCI_MSI_FLAGS, 2);
    if (vdev.irqType !== VFIO_PCI_MSI_IRQ_INDEX) flags &= ~R.PCI_MSI_FLAGS_ENABLE;
    if ((flags & R.PCI_MSI_FLAGS_QSIZE) >> 4 > vdev.msiQmax) {
      flags &= ~R.PCI_MSI_FLAGS_QSIZE;
      flags |= vdev.msiQmax << 4;
    }
    setLe(vconfig, start + R.PCI_MSI_FLAGS, 2, flags);
    vdev.pdev.write16(start + R.PCI_MSI_FLAGS, flags);
  }
  return n;
};

/** init_pci_cap_msi_perm(): laid out by the capability's own flags (64-bit, per-vector mask). */
function initMsiPerm(len: number, flags: number): PermBits {
  const p = allocPermBits(len);
  p.readfn = msiRead;
  p.writefn = msiWrite;
  pSet(p, R.PCI_CAP_LIST_NEXT, 1, ALL_VIRT, NO_WRITE);
  // The upper byte of Message Control is reserved.
  pSet(p, R.PCI_MSI_FLAGS, 1, ALL_VIRT, ALL_WRITE);
  pSet(p, R.PCI_MSI_ADDRESS_LO, 4, ALL_VIRT, ALL_WRITE);
  if (flags & R.PCI_MSI_FLAGS_64BIT) {
    pSet(p, R.PCI_MSI_ADDRESS_HI, 4, ALL_VIRT, ALL_WRITE);
    pSet(p, R.PCI_MSI_DATA_64, 2, ALL_VIRT, ALL_WRITE);
    if (flags & R.PCI_MSI_FLAGS_MASKBIT) {
      pSet(p, R.PCI_MSI_MASK_64, 4, NO_VIRT, ALL_WRITE);
      pSet(p, R.PCI_MSI_PENDING_64, 4, NO_VIRT, ALL_WRITE);
    }
  } else {
    pSet(p, R.PCI_MSI_DATA_32, 2, ALL_VIRT, ALL_WRITE);
    if (flags & R.PCI_MSI_FLAGS_MASKBIT) {
      pSet(p, R.PCI_MSI_MASK_32, 4, NO_VIRT, ALL_WRITE);
      pSet(p, R.PCI_MSI_PENDING_32, 4, NO_VIRT, ALL_WRITE);
    }
  }
  return p;
}

/** vfio_msi_cap_len(): 10, +4 for 64-bit, +10 for masking; the device's MSI perms on first use. */
function msiCapLen(vdev: VfioPciCoreDevice, pos: number): number {
  const flags = vdev.pdev.read16(pos + R.PCI_MSI_FLAGS);
  let len = 10;
  if (flags & R.PCI_MSI_FLAGS_64BIT) len += 4;
  if (flags & R.PCI_MSI_FLAGS_MASKBIT) len += 10;
  const c = cfg(vdev);
  c.msiPerm ??= initMsiPerm(len, flags);
  return len;
}

/** vfio_vc_cap_len(): VC and MFVC, with their arbitration tables. */
function vcCapLen(pdev: PciDev, pos: number): number {
  let len = R.PCI_CAP_VC_BASE_SIZEOF;
  const evcc = pdev.read32(pos + R.PCI_VC_PORT_CAP1) & R.PCI_VC_CAP1_EVCC;
  const cap2 = pdev.read32(pos + R.PCI_VC_PORT_CAP2);
  const phases =
    cap2 & R.PCI_VC_CAP2_128_PHASE
      ? 128
      : cap2 & R.PCI_VC_CAP2_64_PHASE
        ? 64
        : cap2 & R.PCI_VC_CAP2_32_PHASE
          ? 32
          : 0;
  const vcArb = phases * 4;
  len += (1 + evcc) * R.PCI_CAP_VC_PER_VC_SIZEOF;
  if (vcArb) len = Math.ceil(len / 16) * 16 + vcArb / 8;
  return len;
}

/** The Extended Capabilities at 0x100 are there (the header is non-zero). */
function probeExtendedCaps(vdev: VfioPciCoreDevice): void {
  if (vdev.pdev.cfgSize > R.PCI_CFG_SPACE_SIZE)
    cfg(vdev).extendedCaps = vdev.pdev.read32(R.PCI_CFG_SPACE_SIZE) !== 0;
}

/** vfio_cap_len(): lengths of the variable-length standard capabilities. */
function capLen(vdev: VfioPciCoreDevice, cap: number, pos: number): number {
  const pdev = vdev.pdev;
  switch (cap) {
    case R.PCI_CAP_ID_MSI:
      return msiCapLen(vdev, pos);
    case R.PCI_CAP_ID_PCIX:
      if (R.PCI_X_CMD_VERSION(pdev.read16(pos + R.PCI_X_CMD))) {
        probeExtendedCaps(vdev);
        return R.PCI_CAP_PCIX_SIZEOF_V2;
      }
      return R.PCI_CAP_PCIX_SIZEOF_V0;
    case R.PCI_CAP_ID_VNDR:
      // The length follows the next pointer.
      return pdev.read8(pos + R.PCI_CAP_FLAGS);
    case R.PCI_CAP_ID_EXP: {
      probeExtendedCaps(vdev);
      const rcEnd = pdev.pcieType() === R.PCI_EXP_TYPE_RC_END;
      if ((pdev.pcieFlagsReg & R.PCI_EXP_FLAGS_VERS) === 1)
        return rcEnd ? 0xc : R.PCI_CAP_EXP_ENDPOINT_SIZEOF_V1;
      return rcEnd ? 0x2c : R.PCI_CAP_EXP_ENDPOINT_SIZEOF_V2;
    }
    case R.PCI_CAP_ID_HT:
      return pdev.read8(pos + 3) & R.HT_3BIT_CAP_MASK
        ? R.HT_CAP_SIZEOF_SHORT
        : R.HT_CAP_SIZEOF_LONG;
    case R.PCI_CAP_ID_SATA:
      return (pdev.read8(pos + R.PCI_SATA_REGS) & R.PCI_SATA_REGS_MASK) === R.PCI_SATA_REGS_INLINE
        ? R.PCI_SATA_SIZEOF_LONG
        : R.PCI_SATA_SIZEOF_SHORT;
    default:
      return 0;
  }
}

/** vfio_ext_cap_len(): lengths of the variable-length extended capabilities. */
function extCapLen(vdev: VfioPciCoreDevice, ecap: number, epos: number): number {
  const pdev = vdev.pdev;
  switch (ecap) {
    case R.PCI_EXT_CAP_ID_VNDR:
      return pdev.read32(epos + R.PCI_VSEC_HDR) >>> R.PCI_VSEC_HDR_LEN_SHIFT;
    case R.PCI_EXT_CAP_ID_VC:
    case R.PCI_EXT_CAP_ID_VC9:
    case R.PCI_EXT_CAP_ID_MFVC:
      return vcCapLen(pdev, epos);
    case R.PCI_EXT_CAP_ID_ACS: {
      if (!(pdev.read8(epos + R.PCI_ACS_CAP) & R.PCI_ACS_EC)) return 8;
      const byte = pdev.read8(epos + R.PCI_ACS_EGRESS_BITS);
      const bits = byte ? Math.ceil(byte / 32) * 32 : 256;
      return 8 + bits / 8;
    }
    case R.PCI_EXT_CAP_ID_REBAR: {
      const byte = pdev.read8(epos + R.PCI_REBAR_CTRL) & R.PCI_REBAR_CTRL_NBAR_MASK;
      return 4 + (byte >> R.PCI_REBAR_CTRL_NBAR_SHIFT) * 8;
    }
    case R.PCI_EXT_CAP_ID_DPA:
      return (
        R.PCI_DPA_BASE_SIZEOF + (pdev.read8(epos + R.PCI_DPA_CAP) & R.PCI_DPA_CAP_SUBSTATE_MASK) + 1
      );
    case R.PCI_EXT_CAP_ID_TPH: {
      const dword = pdev.read32(epos + R.PCI_TPH_CAP);
      if ((dword & R.PCI_TPH_CAP_LOC_MASK) === R.PCI_TPH_LOC_CAP) {
        const sts = (dword & R.PCI_TPH_CAP_ST_MASK) >>> R.PCI_TPH_CAP_ST_SHIFT;
        return R.PCI_TPH_BASE_SIZEOF + sts * 2 + 2;
      }
      return R.PCI_TPH_BASE_SIZEOF;
    }
    case R.PCI_EXT_CAP_ID_DVSEC:
      return R.PCI_DVSEC_HEADER1_LEN(pdev.read32(epos + R.PCI_DVSEC_HEADER1));
    default:
      return 0;
  }
}

/** vfio_fill_vconfig_bytes(): copy from the device in the largest aligned reads. */
function fillVconfig(vdev: VfioPciCoreDevice, offset: number, size: number): void {
  const vconfig = cfg(vdev).vconfig;
  while (size) {
    const n = size >= 4 && !(offset % 4) ? 4 : size >= 2 && !(offset % 2) ? 2 : 1;
    setLe(vconfig, offset, n, userRead(vdev.pdev, offset, n));
    offset += n;
    size -= n;
  }
}

/** vfio_cap_init(): map the standard capabilities, unlinking those of length 0. */
function capInit(vdev: VfioPciCoreDevice): void {
  const pdev = vdev.pdev;
  const { map, vconfig } = cfg(vdev);
  if (!(pdev.read16(R.PCI_STATUS) & R.PCI_STATUS_CAP_LIST)) return;
  let pos = pdev.read8(R.PCI_CAPABILITY_LIST);
  // Where the pointer to the current capability lives, to skip it.
  let prev = R.PCI_CAPABILITY_LIST;
  let loops = (R.PCI_CFG_SPACE_SIZE - R.PCI_STD_HEADER_SIZEOF) / R.PCI_CAP_SIZEOF;
  let caps = 0;
  while (pos && loops--) {
    const cap = pdev.read8(pos);
    const next = pdev.read8(pos + R.PCI_CAP_LIST_NEXT);
    let len = 0;
    // ID 0 is a NULL capability, which would clash with the header's fake ID: hidden.
    if (cap && cap <= R.PCI_CAP_ID_MAX) {
      len = PCI_CAP_LENGTH[cap] ?? 0;
      if (len === 0xff) len = capLen(vdev, cap, pos);
    }
    if (!len) {
      vconfig[prev] = next;
      pos = next;
      continue;
    }
    map.fill(cap, pos, pos + len);
    fillVconfig(vdev, pos, len);
    if (cap === R.PCI_CAP_ID_PM) {
      // vfio_update_pm_vconfig_bytes(): no PME for the user.
      const pmc = getLe(vconfig, pos + R.PCI_PM_PMC, 2) & ~R.PCI_PM_CAP_PME_MASK;
      setLe(vconfig, pos + R.PCI_PM_PMC, 2, pmc);
      const ctrl = getLe(vconfig, pos + R.PCI_PM_CTRL, 2);
      setLe(
        vconfig,
        pos + R.PCI_PM_CTRL,
        2,
        ctrl & ~(R.PCI_PM_CTRL_PME_ENABLE | R.PCI_PM_CTRL_PME_STATUS),
      );
    }
    prev = pos + R.PCI_CAP_LIST_NEXT;
    pos = next;
    caps++;
  }
  if (!caps)
    setLe(vconfig, R.PCI_STATUS, 2, getLe(vconfig, R.PCI_STATUS, 2) & ~R.PCI_STATUS_CAP_LIST);
}

/** vfio_ecap_init(): map the extended capabilities; a hidden first one stays as a placeholder. */
function ecapInit(vdev: VfioPciCoreDevice): void {
  const pdev = vdev.pdev;
  const c = cfg(vdev);
  const { map, vconfig } = c;
  if (!c.extendedCaps) return;
  let epos = R.PCI_CFG_SPACE_SIZE;
  let loops = (pdev.cfgSize - R.PCI_CFG_SPACE_SIZE) / R.PCI_CAP_SIZEOF;
  let prev = -1;
  let ecaps = 0;
  while (loops-- && epos >= R.PCI_CFG_SPACE_SIZE) {
    const header = pdev.read32(epos);
    const ecap = R.PCI_EXT_CAP_ID(header);
    let len = 0;
    let hidden = false;
    if (ecap <= R.PCI_EXT_CAP_ID_MAX) {
      len = PCI_EXT_CAP_LENGTH[ecap] ?? 0;
      if (len === 0xff) len = extCapLen(vdev, ecap, epos);
    }
    if (!len) {
      if (prev >= 0) {
        // Not the first: skip it in the chain.
        epos = R.PCI_EXT_CAP_NEXT(header);
        const p = getLe(vconfig, prev, 4);
        setLe(vconfig, prev, 4, ((p & ~(0xffc << 20)) | (epos << 20)) >>> 0);
        continue;
      }
      // The first anchors the list: keep a placeholder whose ID the direct read hides.
      len = R.PCI_CAP_SIZEOF;
      hidden = true;
    }
    // The map is a byte per position: IDs above 0xfd would collide with the markers.
    map.fill(ecap & 0xff, epos, epos + len);
    fillVconfig(vdev, epos, len);
    if (hidden) setLe(vconfig, epos, 4, (getLe(vconfig, epos, 4) & (0xffc << 20)) >>> 0);
    else ecaps++;
    prev = epos;
    epos = R.PCI_EXT_CAP_NEXT(header);
  }
  if (!ecaps) setLe(vconfig, R.PCI_CFG_SPACE_SIZE, 4, 0);
}

/**
 * vfio_config_init(): the map and vconfig of an opening device, vconfig filled from the
 * device (header, then each capability); the BARs remembered for reset recovery.
 */
export function vfioConfigInit(vdev: VfioPciCoreDevice): number {
  const pdev = vdev.pdev;
  const c: VfioPciConfig = {
    map: new Uint8Array(pdev.cfgSize).fill(PCI_CAP_ID_INVALID),
    vconfig: new Uint8Array(pdev.cfgSize),
    msiPerm: null,
    rbar: [],
    bardirty: true,
    extendedCaps: false,
  };
  vdev.config = c;
  c.map.fill(PCI_CAP_ID_BASIC, 0, R.PCI_STD_HEADER_SIZEOF);
  fillVconfig(vdev, 0, R.PCI_STD_HEADER_SIZEOF);
  for (let i = 0; i < 6; i++) c.rbar.push(getLe(c.vconfig, R.PCI_BASE_ADDRESS_0 + 4 * i, 4));
  c.rbar.push(getLe(c.vconfig, R.PCI_ROM_ADDRESS, 4));
  if (pdev.isVirtfn) {
    setLe(c.vconfig, R.PCI_VENDOR_ID, 2, pdev.vendor);
    setLe(c.vconfig, R.PCI_DEVICE_ID, 2, pdev.device);
    // SR-IOV 1.1 §3.4.1.18: a VF's pin is read-only zero.
    c.vconfig[R.PCI_INTERRUPT_PIN] = 0;
  }
  // Without a memory enable bit, set the virtual one as a PF's would be after enabling.
  if (noCommandMemory(pdev))
    setLe(c.vconfig, R.PCI_COMMAND, 2, getLe(c.vconfig, R.PCI_COMMAND, 2) | R.PCI_COMMAND_MEMORY);
  if (vdev.nointx) c.vconfig[R.PCI_INTERRUPT_PIN] = 0;
  capInit(vdev);
  ecapInit(vdev);
  return 0;
}

/** vfio_config_free() */
export function vfioConfigFree(vdev: VfioPciCoreDevice): void {
  vdev.config = null;
}

/** vfio_pci_cap_remaining_dword(): bytes to the end of the dword or of the capability. */
function capRemainingDword(map: Uint8Array, pos: number): number {
  const cap = map[pos];
  let i = 1;
  while ((pos + i) % 4 && map[pos + i] === cap) i++;
  return i;
}

/** vfio_config_do_rw(): one aligned piece within one capability; returns its length. */
function configDoRw(
  vdev: VfioPciCoreDevice,
  buf: Uint8Array,
  count: number,
  pos: number,
  iswrite: boolean,
): number {
  const pdev = vdev.pdev;
  const c = cfg(vdev);
  if (pos < 0 || pos >= pdev.cfgSize || pos + count > pdev.cfgSize) return err("EFAULT");
  count = Math.min(count, capRemainingDword(c.map, pos));
  count = count >= 4 && !(pos % 4) ? 4 : count >= 2 && !(pos % 2) ? 2 : 1;
  const capId = c.map[pos] as number;
  let perm: PermBits;
  let capStart = 0;
  if (capId === PCI_CAP_ID_INVALID) {
    perm = unassignedPerms;
    capStart = pos;
  } else if (capId === PCI_CAP_ID_INVALID_VIRT) {
    perm = virtPerms;
    capStart = pos;
  } else if (pos >= R.PCI_CFG_SPACE_SIZE) {
    // An unknown ID hidden at the head of the extended list: direct, ID and next virtual.
    perm = capId > R.PCI_EXT_CAP_ID_MAX ? directRoPerms : (ECAP_PERMS[capId] as PermBits);
    capStart = findCapStart(vdev, pos);
  } else {
    perm = capId === R.PCI_CAP_ID_MSI ? (c.msiPerm as PermBits) : (CAP_PERMS[capId] as PermBits);
    if (capId > PCI_CAP_ID_BASIC) capStart = findCapStart(vdev, pos);
  }
  const offset = pos - capStart;
  if (iswrite) {
    if (!perm.writefn) return count;
    return perm.writefn(vdev, pos, count, perm, offset, getLe(buf, 0, count));
  }
  const val: Val = { v: 0 };
  if (perm.readfn) {
    const r = perm.readfn(vdev, pos, count, perm, offset, val);
    if (r < 0) return r;
  }
  setLe(buf, 0, count, val.v);
  return count;
}

/** vfio_pci_config_rw(): the whole access, piece by piece; the first error wins. */
export function vfioPciConfigRw(
  vdev: VfioPciCoreDevice,
  buf: Uint8Array,
  pos: number,
  iswrite: boolean,
): number {
  let done = 0;
  while (done < buf.length) {
    const r = configDoRw(vdev, buf.subarray(done), buf.length - done, pos + done, iswrite);
    if (r < 0) return r;
    done += r;
  }
  return done;
}
