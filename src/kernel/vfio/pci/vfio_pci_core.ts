/**
 * vfio-pci device operations, drivers/vfio/pci/vfio_pci_core.c (Linux 6.12), with the
 * helpers of drivers/vfio/vfio_main.c they use (capability chains, SET_IRQS validation).
 *
 * open_device (vfio_pci_core_enable): bus mastering off, pci_enable_device, a function
 * reset (whose success is "reset works"), the state saved for close, INTx masking
 * support probed and DisINTx cleared, config virtualisation set up, the MSI-X table
 * located, mmap support per BAR. close_device (vfio_pci_core_disable): D0, bus mastering
 * off, interrupts off, the saved state loaded, Command = DisINTx, a reset if one works,
 * the state restored, pci_disable_device, then a bus reset of the device set if every
 * device of it is closed and one needs it.
 *
 * ioctls: GET_INFO (+ the AtomicOps capability), GET_REGION_INFO (BARs, ROM, config, VGA;
 * the MSI-X BAR's MSIX_MAPPABLE capability; argsz too small for the chain gets CAPS set
 * and the needed argsz), GET_IRQ_INFO, SET_IRQS, RESET, GET_PCI_HOT_RESET_INFO,
 * PCI_HOT_RESET (group fds; for a cdev-opened device an empty array and devids owned by
 * its iommufd), IOEVENTFD; region read/write at index << 40 | offset.
 * VFIO_DEVICE_FEATURE (vfio_pci_core_ioctl_feature): the low-power entry/exit requests
 * (pm_runtime_engaged; close exits it) and the PF's VF token.
 * ->request (vfio_pci_core_request), while an unbind waits for the device's files to
 * close: the REQ eventfd (VFIO_PCI_REQ_IRQ_INDEX) is signalled.
 *
 * GET_DEVICE_FD's name (vfio_pci_core_match): the device name, optionally followed by a
 * space and space-separated options; only one "vf_token=UUID" is known, anything else is
 * EINVAL. vfio_pci_validate_vf_token then accepts a token only where one can be used: for
 * a PF (the token is kept for its VFs) — a VF's PF is never the model's vfio-pci, which
 * does not create VFs (vfio_pci_core_sriov_configure), so a VF given a token is EINVAL.
 *
 * Not modelled: runtime PM (idle devices stay in D0), VFs created by vfio-pci, device-specific
 * regions (IGD, zPCI), the VGA arbiter, BAR mmap (the model's mm has no device mappings).
 */
import type { PciMmio } from "../../../machine/hw.js";
import { err } from "../../../uapi/errno.js";
import * as R from "../../../uapi/pci_regs.js";
import * as U from "../../../uapi/vfio.js";
import { eventfdSignal, type EventFd } from "../../core/eventfd.js";
import type { File } from "../../core/file.js";
import type { Task } from "../../core/task.js";
import { pcieCapabilityRead32 } from "../../pci/access.js";
import {
  PCI_D0,
  PCI_D3hot,
  pciClearMaster,
  pciCurrentState,
  pciDisableDevice,
  pciEnableAtomicOpsToRoot,
  pciEnableDevice,
  pciIntx,
  pciIntxMaskSupported,
  pciPmCap,
  pciSetPowerState,
} from "../../pci/enable.js";
import { pciFindExtCapability } from "../../pci/capability.js";
import { pciMsiCap, pciMsixCanAllocDyn, pciMsixCap } from "../../pci/msi.js";
import type { PciBus, PciDev } from "../../pci/pci.js";
import { PCI_VENDOR_ID_INTEL } from "../../pci/quirks.js";
import {
  type PciSavedState,
  pciLoadSavedState,
  pciProbeResetBus,
  pciResetBus,
  pciResetFunctionLocked,
  pciRestoreState,
  pciSaveState,
  pciStoreSavedState,
  pciTryResetFunction,
} from "../../pci/reset.js";
import {
  IORESOURCE_MEM,
  IORESOURCE_ROM_SHADOW,
  PCI_ROM_RESOURCE,
  pciResourceFlags,
  pciResourceLen,
  pciResourceStart,
} from "../../pci/resource.js";
import {
  fromUser,
  toUser,
  type VfioDevice,
  type VfioDeviceOps,
  VfioInfoCap,
  vfioCheckFeature,
} from "../vfio.js";
import {
  type VfioPciConfig,
  vfioConfigFree,
  vfioConfigInit,
  vfioPciConfigRw,
} from "./vfio_pci_config.js";
import {
  type VfioPciIrqCtx,
  eventfdCtxFdget,
  vfioPciIrqsOff,
  vfioPciSetIrqsIoctl,
} from "./vfio_pci_intrs.js";
import {
  pciMapRom,
  pciUnmapRom,
  type VfioPciIoeventfd,
  VFIO_PCI_OFFSET_MASK,
  vfioPciBarRw,
  vfioPciIoeventfd,
  vfioPciIoeventfdsRelease,
  vfioPciVgaRw,
} from "./vfio_pci_rdwr.js";

const PAGE_SIZE = 4096n;

/** What vfio-pci needs from the rest of the kernel. */
export interface VfioPciServices {
  /** BAR accesses. */
  hw: PciMmio;
  /** iommu_group_id(), null for a device without a group. */
  iommuGroupId(dev: PciDev): number | null;
  /** pci_num_vf() */
  numVfs(dev: PciDev): number;
  /** vfio_pci.disable_denylist (module parameter, bool, 0444). */
  disableDenylist?: boolean;
  /** The devices a hot reset may take group files for (vfio_file_has_dev, by group file). */
  groupOfFile(task: Task, fd: number): { has(dev: PciDev): boolean } | null | undefined;
  /** vfio_iommufd_get_dev_id(dev, vfio_iommufd_device_ictx(of)) */
  iommufdDevId(dev: VfioDevice, of: VfioDevice): number;
}

/**
 * struct vfio_device_set: the devices one reset affects together — those of the bus, or
 * just the device on a root bus (no hotplug slots in the model, so never a slot).
 */
export interface VfioDeviceSet {
  devices: VfioPciCoreDevice[];
}

/** struct vfio_pci_core_device */
export interface VfioPciCoreDevice {
  pdev: PciDev;
  hw: PciMmio;
  svc: VfioPciServices;
  devSet: VfioDeviceSet;
  /** The vfio_device this is the driver data of (open counts). */
  vdev: VfioDevice | null;
  config: VfioPciConfig | null;
  irqType: number;
  ctx: Map<number, VfioPciIrqCtx>;
  msiQmax: number;
  msixBar: number;
  msixOffset: number;
  msixSize: number;
  barMmapSupported: boolean[];
  resetWorks: boolean;
  needsReset: boolean;
  nointx: boolean;
  pci23: boolean;
  virqDisabled: boolean;
  hasDynMsix: boolean;
  hasVga: boolean;
  needsPmRestore: boolean;
  pciSavedState: PciSavedState | null;
  pmSave: PciSavedState | null;
  errTrigger: File<EventFd> | null;
  reqTrigger: File<EventFd> | null;
  ioeventfds: VfioPciIoeventfd[];
  /** The user asked for low power (LOW_POWER_ENTRY*), with the wakeup eventfd if one. */
  pmRuntimeEngaged: boolean;
  pmWakeEventfd: File<EventFd> | null;
}

/** vfio_pci_core_init_dev() */
export function vfioPciCoreInit(
  pdev: PciDev,
  svc: VfioPciServices,
  devSet: VfioDeviceSet,
): VfioPciCoreDevice {
  return {
    pdev,
    hw: svc.hw,
    svc,
    devSet,
    vdev: null,
    config: null,
    irqType: U.VFIO_PCI_NUM_IRQS,
    ctx: new Map(),
    msiQmax: 0,
    msixBar: 0xff,
    msixOffset: 0,
    msixSize: 0,
    barMmapSupported: [false, false, false, false, false, false],
    resetWorks: false,
    needsReset: false,
    nointx: false,
    pci23: false,
    virqDisabled: false,
    hasDynMsix: false,
    hasVga: false,
    needsPmRestore: false,
    pciSavedState: null,
    pmSave: null,
    errTrigger: null,
    reqTrigger: null,
    ioeventfds: [],
    pmRuntimeEngaged: false,
    pmWakeEventfd: null,
  };
}

/**
 * vfio_pci_nointx(): i40e and X550 cannot detect INTx assertion; INTx is hidden (pin 0)
 * and kept disabled.
 */
function vfioPciNointx(pdev: PciDev): boolean {
  if (pdev.vendor !== PCI_VENDOR_ID_INTEL) return false;
  const d = pdev.device;
  return (
    d === 0x1572 ||
    d === 0x1574 ||
    (d >= 0x1580 && d <= 0x1581) ||
    (d >= 0x1583 && d <= 0x158b) ||
    (d >= 0x37d0 && d <= 0x37d2) ||
    d === 0x1563
  );
}

/** vfio_pci_is_vga() */
const isVga = (pdev: PciDev) => pdev.classDevice === R.PCI_CLASS_DISPLAY_VGA;

/** vfio_pci_probe_power_state(): NoSoftRst- devices lose config space in D3hot. */
export function vfioPciProbePowerState(vdev: VfioPciCoreDevice): void {
  const pm = pciPmCap(vdev.pdev);
  if (pm)
    vdev.needsPmRestore = !(vdev.pdev.read16(pm + R.PCI_PM_CTRL) & R.PCI_PM_CTRL_NO_SOFT_RESET);
}

/**
 * vfio_pci_set_power_state(): around D3hot, state is saved before and restored after for
 * functions that reset on D3hot->D0. A PF with VFs stays in D0.
 */
export function vfioPciSetPowerState(vdev: VfioPciCoreDevice, state: number): number {
  const pdev = vdev.pdev;
  if (vdev.svc.numVfs(pdev) && state > PCI_D0) return err("EBUSY");
  let needsSave = false;
  let needsRestore = false;
  const cur = pciCurrentState(pdev);
  if (vdev.needsPmRestore) {
    if (cur < PCI_D3hot && state >= PCI_D3hot) {
      pciSaveState(pdev);
      needsSave = true;
    }
    if (cur >= PCI_D3hot && state <= PCI_D0) needsRestore = true;
  }
  const ret = pciSetPowerState(pdev, state);
  if (!ret) {
    if (needsSave && pciCurrentState(pdev) >= PCI_D3hot) {
      vdev.pmSave = pciStoreSavedState(pdev);
    } else if (needsRestore) {
      pciLoadSavedState(pdev, vdev.pmSave);
      vdev.pmSave = null;
      pciRestoreState(vdev.hw, pdev);
    }
  }
  return ret;
}

/** vfio_pci_memory_lock_and_enable(): memory decoding on for a kernel access; the old Command. */
export function vfioPciMemoryLockAndEnable(vdev: VfioPciCoreDevice): number {
  const cmd = vdev.pdev.read16(R.PCI_COMMAND);
  if (!(cmd & R.PCI_COMMAND_MEMORY)) vdev.pdev.write16(R.PCI_COMMAND, cmd | R.PCI_COMMAND_MEMORY);
  return cmd;
}

export function vfioPciMemoryUnlockAndRestore(vdev: VfioPciCoreDevice, cmd: number): void {
  vdev.pdev.write16(R.PCI_COMMAND, cmd);
}

/** vfio_pci_probe_mmaps(): memory BARs of a page or more, or page-aligned (the rest reserved). */
function probeMmaps(vdev: VfioPciCoreDevice): void {
  for (let i = 0; i < R.PCI_STD_NUM_BARS; i++) {
    const pdev = vdev.pdev;
    const len = pciResourceLen(pdev, i);
    vdev.barMmapSupported[i] =
      (pciResourceFlags(pdev, i) & IORESOURCE_MEM) !== 0 &&
      len !== 0n &&
      (len >= PAGE_SIZE || pciResourceStart(pdev, i) % PAGE_SIZE === 0n);
  }
}

/** vfio_pci_core_enable() */
function coreEnable(vdev: VfioPciCoreDevice): number {
  const pdev = vdev.pdev;
  // Don't let the initial saved state include bus mastering.
  pciClearMaster(pdev);
  const ret = pciEnableDevice(pdev);
  if (ret) return ret;
  vdev.resetWorks = pciTryResetFunction(vdev.hw, pdev) === 0;
  pciSaveState(pdev);
  vdev.pciSavedState = pciStoreSavedState(pdev);
  if (vfioPciNointx(pdev)) {
    vdev.nointx = true;
    pciIntx(pdev, false);
  } else {
    vdev.pci23 = pciIntxMaskSupported(pdev);
  }
  const cmd = pdev.read16(R.PCI_COMMAND);
  if (vdev.pci23 && cmd & R.PCI_COMMAND_INTX_DISABLE)
    pdev.write16(R.PCI_COMMAND, cmd & ~R.PCI_COMMAND_INTX_DISABLE);
  vfioConfigInit(vdev);
  const msix = pciMsixCap(pdev);
  if (msix) {
    const flags = pdev.read16(msix + R.PCI_MSIX_FLAGS);
    const table = pdev.read32(msix + R.PCI_MSIX_TABLE);
    vdev.msixBar = table & R.PCI_MSIX_TABLE_BIR;
    vdev.msixOffset = (table & R.PCI_MSIX_TABLE_OFFSET) >>> 0;
    vdev.msixSize = ((flags & R.PCI_MSIX_FLAGS_QSIZE) + 1) * 16;
    vdev.hasDynMsix = pciMsixCanAllocDyn(pdev);
  } else {
    vdev.msixBar = 0xff;
    vdev.hasDynMsix = false;
  }
  // CONFIG_VFIO_PCI_VGA (Debian), vfio_pci.disable_vga=0
  vdev.hasVga = isVga(pdev);
  return 0;
}

/** vfio_pci_dev_set_needs_reset(): nothing else of the set open, and someone dirty. */
function devSetNeedsReset(set: VfioDeviceSet): boolean {
  const open = set.devices.reduce((n, d) => n + (d.vdev?.openCount ?? 0), 0);
  if (open > 1) return false;
  return set.devices.some((d) => d.needsReset);
}

/**
 * vfio_pci_dev_set_resettable(): the device to pass to pci_reset_bus() when a bus reset
 * works and every function it touches is in the set; null otherwise.
 */
function devSetResettable(set: VfioDeviceSet): PciDev | null {
  const pdev = (set.devices[0] as VfioPciCoreDevice).pdev;
  if (pciProbeResetBus(pdev.bus)) return null;
  const inSet = new Set(set.devices.map((d) => d.pdev));
  return walkBus(pdev.bus).every((d) => inSet.has(d)) ? pdev : null;
}

/** pci_walk_bus(): the bus's functions and everything below them, depth first. */
function walkBus(bus: PciBus): PciDev[] {
  return bus.devices.flatMap((d) => [d, ...(d.subordinate ? walkBus(d.subordinate) : [])]);
}

/** vfio_pci_dev_set_try_reset(): a bus reset for a set left dirty (no FLR) and unused. */
function devSetTryReset(vdev: VfioPciCoreDevice): void {
  const set = vdev.devSet;
  if (!devSetNeedsReset(set)) return;
  const pdev = devSetResettable(set);
  if (!pdev) return;
  const done = pciResetBus(vdev.hw, pdev) === 0;
  if (done) for (const d of set.devices) d.needsReset = false;
}

/** vfio_pci_core_disable() */
function coreDisable(vdev: VfioPciCoreDevice): void {
  const pdev = vdev.pdev;
  runtimePmExit(vdev);
  vfioPciSetPowerState(vdev, PCI_D0);
  // Stop the device from further DMA.
  pciClearMaster(pdev);
  vfioPciIrqsOff(vdev);
  vfioPciIoeventfdsRelease(vdev);
  vdev.virqDisabled = false;
  vfioConfigFree(vdev);
  vdev.needsReset = true;
  // Restore the state saved at open; reset with it if we can.
  pciLoadSavedState(pdev, vdev.pciSavedState);
  vdev.pciSavedState = null;
  // INTx and MSI off during the reset, as pci_reset_function() does.
  pdev.write16(R.PCI_COMMAND, R.PCI_COMMAND_INTX_DISABLE);
  if (vdev.resetWorks && !pciResetFunctionLocked(vdev.hw, pdev)) vdev.needsReset = false;
  pciRestoreState(vdev.hw, pdev);
  pciDisableDevice(pdev);
  devSetTryReset(vdev);
}

/** Copy a capability chain after the info struct, or say how big argsz must be. */
function placeCaps(
  task: Task,
  arg: bigint,
  argsz: number,
  infoSize: number,
  caps: VfioInfoCap,
): { argsz: number; capOffset: number } | null {
  if (argsz < infoSize + caps.size) return { argsz: infoSize + caps.size, capOffset: 0 };
  caps.shift(infoSize);
  if (!toUser(task, arg + BigInt(infoSize), caps.buf)) return null;
  return { argsz, capOffset: infoSize };
}

/** vfio_pci_info_atomic_cap(): the AtomicOp completer sizes the root port routes for us. */
function atomicCap(vdev: VfioPciCoreDevice): Uint8Array | null {
  const pdev = vdev.pdev.isVirtfn && vdev.pdev.physfn ? vdev.pdev.physfn : vdev.pdev;
  const devcap2 = pcieCapabilityRead32(pdev, R.PCI_EXP_DEVCAP2);
  let flags = 0;
  const sizes: [number, number][] = [
    [R.PCI_EXP_DEVCAP2_ATOMIC_COMP32, U.VFIO_PCI_ATOMIC_COMP32],
    [R.PCI_EXP_DEVCAP2_ATOMIC_COMP64, U.VFIO_PCI_ATOMIC_COMP64],
    [R.PCI_EXP_DEVCAP2_ATOMIC_COMP128, U.VFIO_PCI_ATOMIC_COMP128],
  ];
  for (const [cap, flag] of sizes)
    if (devcap2 & cap && !pciEnableAtomicOpsToRoot(pdev, cap)) flags |= flag;
  if (!flags) return null;
  return U.vfio_device_info_cap_pci_atomic_comp.encode({
    id: U.VFIO_DEVICE_INFO_CAP_PCI_ATOMIC_COMP,
    version: 1,
    next: 0,
    flags,
    reserved: 0,
  });
}

/** vfio_pci_ioctl_get_info() */
function getInfo(vdev: VfioPciCoreDevice, task: Task, arg: bigint): number {
  const S = U.vfio_device_info;
  let minsz = S.end("num_irqs");
  const raw = fromUser(task, arg, minsz);
  if (!raw) return err("EFAULT");
  const info = S.decode(raw);
  if (info.argsz < minsz) return err("EINVAL");
  minsz = Math.min(info.argsz, S.size);
  const out = { ...info, cap_offset: 0, pad: 0 };
  out.flags = U.VFIO_DEVICE_FLAGS_PCI | (vdev.resetWorks ? U.VFIO_DEVICE_FLAGS_RESET : 0);
  out.num_regions = U.VFIO_PCI_NUM_REGIONS;
  out.num_irqs = U.VFIO_PCI_NUM_IRQS;
  const caps = new VfioInfoCap();
  const atomic = atomicCap(vdev);
  if (atomic) caps.add(atomic);
  if (caps.size) {
    out.flags |= U.VFIO_DEVICE_FLAGS_CAPS;
    const placed = placeCaps(task, arg, info.argsz, S.size, caps);
    if (!placed) return err("EFAULT");
    out.argsz = placed.argsz;
    out.cap_offset = placed.capOffset;
  }
  return toUser(task, arg, S.encode(out).subarray(0, minsz)) ? 0 : err("EFAULT");
}

/** vfio_pci_ioctl_get_region_info() */
function getRegionInfo(vdev: VfioPciCoreDevice, task: Task, arg: bigint): number {
  const S = U.vfio_region_info;
  const minsz = S.end("offset");
  const raw = fromUser(task, arg, minsz);
  if (!raw) return err("EFAULT");
  const info = S.decode(raw);
  if (info.argsz < minsz) return err("EINVAL");
  const pdev = vdev.pdev;
  const caps = new VfioInfoCap();
  const offsetOf = (i: number) => BigInt(i) << U.VFIO_PCI_OFFSET_SHIFT;
  const RW = U.VFIO_REGION_INFO_FLAG_READ | U.VFIO_REGION_INFO_FLAG_WRITE;
  const i = info.index;
  if (i === U.VFIO_PCI_CONFIG_REGION_INDEX) {
    info.offset = offsetOf(i);
    info.size = BigInt(pdev.cfgSize);
    info.flags = RW;
  } else if (i <= U.VFIO_PCI_BAR5_REGION_INDEX) {
    info.offset = offsetOf(i);
    info.size = pciResourceLen(pdev, i);
    info.flags = 0;
    if (info.size) {
      info.flags = RW;
      if (vdev.barMmapSupported[i]) {
        info.flags |= U.VFIO_REGION_INFO_FLAG_MMAP;
        if (i === vdev.msixBar)
          caps.add(
            U.vfio_info_cap_header.encode({
              id: U.VFIO_REGION_INFO_CAP_MSIX_MAPPABLE,
              version: 1,
              next: 0,
            }),
          );
      }
    }
  } else if (i === U.VFIO_PCI_ROM_REGION_INDEX) {
    info.offset = offsetOf(i);
    info.flags = 0;
    // The BAR size, not the ROM's; a shadow ROM shows as a 128K option ROM.
    info.size = pciResourceLen(pdev, PCI_ROM_RESOURCE);
    if (!info.size && pciResourceFlags(pdev, PCI_ROM_RESOURCE) & IORESOURCE_ROM_SHADOW)
      info.size = 0x20000n;
    if (info.size) {
      // Is it really there? Memory decoding on for the look.
      const cmd = vfioPciMemoryLockAndEnable(vdev);
      if (pciMapRom(vdev) !== null) {
        info.flags = U.VFIO_REGION_INFO_FLAG_READ;
        pciUnmapRom(pdev);
      } else {
        info.size = 0n;
      }
      vfioPciMemoryUnlockAndRestore(vdev, cmd);
    }
  } else if (i === U.VFIO_PCI_VGA_REGION_INDEX) {
    if (!vdev.hasVga) return err("EINVAL");
    info.offset = offsetOf(i);
    info.size = 0xc0000n;
    info.flags = RW;
  } else {
    // No device-specific regions.
    return err("EINVAL");
  }
  if (caps.size) {
    info.flags |= U.VFIO_REGION_INFO_FLAG_CAPS;
    const placed = placeCaps(task, arg, info.argsz, S.size, caps);
    if (!placed) return err("EFAULT");
    info.argsz = placed.argsz;
    info.cap_offset = placed.capOffset;
  }
  return toUser(task, arg, S.encode(info).subarray(0, minsz)) ? 0 : err("EFAULT");
}

/** vfio_pci_get_irq_count() */
function irqCount(vdev: VfioPciCoreDevice, index: number): number {
  const pdev = vdev.pdev;
  switch (index) {
    case U.VFIO_PCI_INTX_IRQ_INDEX:
      if (vdev.nointx || pdev.isVirtfn) return 0;
      return pdev.read8(R.PCI_INTERRUPT_PIN) ? 1 : 0;
    case U.VFIO_PCI_MSI_IRQ_INDEX: {
      const pos = pciMsiCap(pdev);
      return pos ? 1 << ((pdev.read16(pos + R.PCI_MSI_FLAGS) & R.PCI_MSI_FLAGS_QMASK) >> 1) : 0;
    }
    case U.VFIO_PCI_MSIX_IRQ_INDEX: {
      const pos = pciMsixCap(pdev);
      return pos ? (pdev.read16(pos + R.PCI_MSIX_FLAGS) & R.PCI_MSIX_FLAGS_QSIZE) + 1 : 0;
    }
    case U.VFIO_PCI_ERR_IRQ_INDEX:
      return pdev.isPcie() ? 1 : 0;
    case U.VFIO_PCI_REQ_IRQ_INDEX:
      return 1;
    default:
      return 0;
  }
}

/** vfio_pci_ioctl_get_irq_info() */
function getIrqInfo(vdev: VfioPciCoreDevice, task: Task, arg: bigint): number {
  const S = U.vfio_irq_info;
  const minsz = S.end("count");
  const raw = fromUser(task, arg, minsz);
  if (!raw) return err("EFAULT");
  const info = S.decode(raw);
  if (info.argsz < minsz || info.index >= U.VFIO_PCI_NUM_IRQS) return err("EINVAL");
  if (info.index === U.VFIO_PCI_ERR_IRQ_INDEX && !vdev.pdev.isPcie()) return err("EINVAL");
  info.flags = U.VFIO_IRQ_INFO_EVENTFD;
  info.count = irqCount(vdev, info.index);
  if (info.index === U.VFIO_PCI_INTX_IRQ_INDEX)
    info.flags |= U.VFIO_IRQ_INFO_MASKABLE | U.VFIO_IRQ_INFO_AUTOMASKED;
  else if (info.index !== U.VFIO_PCI_MSIX_IRQ_INDEX || !vdev.hasDynMsix)
    info.flags |= U.VFIO_IRQ_INFO_NORESIZE;
  return toUser(task, arg, S.encode(info).subarray(0, minsz)) ? 0 : err("EFAULT");
}

/** vfio_set_irqs_validate_and_prepare() (vfio_main.c): the payload size, or -EINVAL. */
function setIrqsValidate(
  hdr: { argsz: number; flags: number; index: number; start: number; count: number },
  numIrqs: number,
): number {
  const minsz = U.vfio_irq_set.end("count");
  if (
    hdr.argsz < minsz ||
    hdr.index >= U.VFIO_PCI_NUM_IRQS ||
    hdr.count >= 0xffffffff - hdr.start ||
    hdr.flags & ~(U.VFIO_IRQ_SET_DATA_TYPE_MASK | U.VFIO_IRQ_SET_ACTION_TYPE_MASK)
  )
    return err("EINVAL");
  if (hdr.start >= numIrqs || hdr.start + hdr.count > numIrqs) return err("EINVAL");
  const size = {
    [U.VFIO_IRQ_SET_DATA_NONE]: 0,
    [U.VFIO_IRQ_SET_DATA_BOOL]: 1,
    [U.VFIO_IRQ_SET_DATA_EVENTFD]: 4,
  }[hdr.flags & U.VFIO_IRQ_SET_DATA_TYPE_MASK];
  if (size === undefined) return err("EINVAL");
  if (size && hdr.argsz - minsz < hdr.count * size) return err("EINVAL");
  return hdr.count * size;
}

/** vfio_pci_ioctl_set_irqs() */
function setIrqs(vdev: VfioPciCoreDevice, task: Task, arg: bigint): number {
  const S = U.vfio_irq_set;
  const minsz = S.end("count");
  const raw = fromUser(task, arg, minsz);
  if (!raw) return err("EFAULT");
  const hdr = S.decode(raw);
  const size = setIrqsValidate(hdr, irqCount(vdev, hdr.index));
  if (size < 0) return size;
  let data: Uint8Array = new Uint8Array(0);
  if (size) {
    const d = fromUser(task, arg + BigInt(minsz), size);
    if (!d) return err("EFAULT");
    data = d;
  }
  return vfioPciSetIrqsIoctl(vdev, task, hdr.flags, hdr.index, hdr.start, hdr.count, data);
}

/** vfio_pci_ioctl_reset() */
function reset(vdev: VfioPciCoreDevice): number {
  if (!vdev.resetWorks) return err("EINVAL");
  vfioPciSetPowerState(vdev, PCI_D0);
  return pciTryResetFunction(vdev.hw, vdev.pdev);
}

/** vfio_pci_ioctl_get_pci_hot_reset_info(): the functions a bus reset takes with it. */
function getHotResetInfo(vdev: VfioPciCoreDevice, task: Task, arg: bigint): number {
  const S = U.vfio_pci_hot_reset_info;
  const D = U.vfio_pci_dependent_device;
  const minsz = S.end("count");
  const raw = fromUser(task, arg, minsz);
  if (!raw) return err("EFAULT");
  const hdr = S.decode(raw);
  if (hdr.argsz < minsz) return err("EINVAL");
  hdr.flags = 0;
  // No slots in the model: a bus reset or nothing.
  if (pciProbeResetBus(vdev.pdev.bus)) return err("ENODEV");
  const devs = walkBus(vdev.pdev.bus);
  let ret = 0;
  if (devs.length > Math.floor((hdr.argsz - S.size) / D.size)) {
    hdr.count = devs.length;
    ret = err("ENOSPC");
  } else {
    // vfio_pci_fill_devs(): devids for a cdev-opened device, group ids otherwise
    let flags = vdev.vdev?.cdevOpened
      ? U.VFIO_PCI_HOT_RESET_FLAG_DEV_ID | U.VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED
      : 0;
    const out = new Uint8Array(devs.length * D.size);
    for (const [n, d] of devs.entries()) {
      let id: number;
      if (flags & U.VFIO_PCI_HOT_RESET_FLAG_DEV_ID) {
        id = devIdInSet(vdev, d);
        if (id === U.VFIO_PCI_DEVID_NOT_OWNED) flags &= ~U.VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED;
      } else {
        const group = vdev.svc.iommuGroupId(d);
        if (group === null) return err("EPERM"); // cannot reset non-isolated devices
        id = group;
      }
      out.set(
        D.encode({ group_id: id, segment: d.bus.domain, bus: d.bus.number, devfn: d.devfn }),
        n * D.size,
      );
    }
    if (!toUser(task, arg + BigInt(S.size), out)) return err("EFAULT");
    hdr.count = devs.length;
    hdr.flags = flags;
  }
  if (!toUser(task, arg, S.encode(hdr).subarray(0, minsz))) return err("EFAULT");
  return ret;
}

/**
 * A dependent device's devid (vfio_pci_fill_devs): its id in the iommufd this cdev-opened
 * device is bound to, OWNED when only its group is there, NOT_OWNED when it is not in the
 * device set or belongs elsewhere.
 */
function devIdInSet(vdev: VfioPciCoreDevice, pdev: PciDev): number {
  const other = vdev.devSet.devices.find((d) => d.pdev === pdev)?.vdev;
  if (!other || !vdev.vdev) return U.VFIO_PCI_DEVID_NOT_OWNED;
  const id = vdev.svc.iommufdDevId(other, vdev.vdev);
  if (id > 0) return id;
  return id === err("ENOENT") ? U.VFIO_PCI_DEVID_OWNED : U.VFIO_PCI_DEVID_NOT_OWNED;
}

/**
 * vfio_pci_ioctl_pci_hot_reset(): group fds for a group-opened device, a zero-length array
 * for a cdev-opened one (every device of the set must then be owned by its iommufd).
 */
function hotReset(vdev: VfioPciCoreDevice, task: Task, arg: bigint): number {
  const S = U.vfio_pci_hot_reset;
  const minsz = S.end("count");
  const raw = fromUser(task, arg, minsz);
  if (!raw) return err("EFAULT");
  const hdr = S.decode(raw);
  if (hdr.argsz < minsz || hdr.flags) return err("EINVAL");
  const cdev = !!vdev.vdev?.cdevOpened;
  if (!!hdr.count === cdev) return err("EINVAL");
  if (pciProbeResetBus(vdev.pdev.bus)) return err("ENODEV");
  if (cdev)
    return devSetHotReset(vdev, (d) => {
      const id = d.vdev && vdev.vdev ? vdev.svc.iommufdDevId(d.vdev, vdev.vdev) : err("ENODEV");
      return id > 0 || id === err("ENOENT");
    });
  if (hdr.count > walkBus(vdev.pdev.bus).length) return err("EINVAL");
  const fdBytes = fromUser(task, arg + BigInt(S.size), hdr.count * 4);
  if (!fdBytes) return err("EFAULT");
  const dv = new DataView(fdBytes.buffer, fdBytes.byteOffset, fdBytes.length);
  const groups: { has(dev: PciDev): boolean }[] = [];
  for (let i = 0; i < hdr.count; i++) {
    const g = vdev.svc.groupOfFile(task, dv.getInt32(4 * i, true));
    if (g === undefined) return err("EBADF");
    if (g === null) return err("EINVAL");
    groups.push(g);
  }
  return devSetHotReset(vdev, (d) => groups.some((g) => g.has(d.pdev)));
}

/** vfio_pci_dev_set_hot_reset(): every device of the set owned by the caller, then reset. */
function devSetHotReset(vdev: VfioPciCoreDevice, owned: (d: VfioPciCoreDevice) => boolean): number {
  const set = vdev.devSet;
  const pdev = devSetResettable(set);
  if (!pdev) return err("EINVAL");
  if (!set.devices.every(owned)) return err("EINVAL");
  for (const d of set.devices) vfioPciSetPowerState(d, PCI_D0);
  return pciResetBus(vdev.hw, pdev);
}

/** vfio_pci_ioctl_ioeventfd() */
function ioeventfd(vdev: VfioPciCoreDevice, task: Task, arg: bigint): number {
  const S = U.vfio_device_ioeventfd;
  const minsz = S.end("fd");
  const raw = fromUser(task, arg, minsz);
  if (!raw) return err("EFAULT");
  const e = S.decode(raw);
  if (e.argsz < minsz) return err("EINVAL");
  if (e.flags & ~U.VFIO_DEVICE_IOEVENTFD_SIZE_MASK) return err("EINVAL");
  const count = e.flags & U.VFIO_DEVICE_IOEVENTFD_SIZE_MASK;
  if (![1, 2, 4, 8].includes(count) || e.fd < -1) return err("EINVAL");
  return vfioPciIoeventfd(vdev, task, e.offset, e.data, count as 1 | 2 | 4 | 8, e.fd);
}

/** vfio_pci_rw(): dispatch by region index. */
function rw(vdev: VfioPciCoreDevice, buf: Uint8Array, pos: bigint, iswrite: boolean): number {
  if (!buf.length) return 0;
  const index = Number(pos >> U.VFIO_PCI_OFFSET_SHIFT);
  if (index >= U.VFIO_PCI_NUM_REGIONS) return err("EINVAL");
  switch (index) {
    case U.VFIO_PCI_CONFIG_REGION_INDEX:
      return vfioPciConfigRw(vdev, buf, Number(pos & VFIO_PCI_OFFSET_MASK), iswrite);
    case U.VFIO_PCI_ROM_REGION_INDEX:
      return iswrite ? err("EINVAL") : vfioPciBarRw(vdev, buf, pos, false);
    case U.VFIO_PCI_VGA_REGION_INDEX:
      return vfioPciVgaRw(vdev, pos);
    default:
      return vfioPciBarRw(vdev, buf, pos, iswrite);
  }
}

const core = (v: VfioDevice) => v.priv as VfioPciCoreDevice;

/** vfio_pci_runtime_pm_entry(): EINVAL when already engaged. */
function runtimePmEntry(vdev: VfioPciCoreDevice, wake: File<EventFd> | null): number {
  if (vdev.pmRuntimeEngaged) return err("EINVAL");
  vdev.pmRuntimeEngaged = true;
  vdev.pmWakeEventfd = wake;
  return 0;
}

/** __vfio_pci_runtime_pm_exit() */
function runtimePmExit(vdev: VfioPciCoreDevice): void {
  if (!vdev.pmRuntimeEngaged) return;
  vdev.pmRuntimeEngaged = false;
  vdev.pmWakeEventfd?.put();
  vdev.pmWakeEventfd = null;
}

/**
 * vfio_pci_core_ioctl_feature(): LOW_POWER_ENTRY (SET, no data), ..._WITH_WAKEUP (SET, 8
 * bytes: an s32 eventfd, negative EINVAL, then eventfd_ctx_fdget), LOW_POWER_EXIT (SET), PCI_VF_TOKEN
 * (ENOTTY but for an SR-IOV PF: SET of a 16-byte UUID, kept for VFs the model's vfio-pci
 * never creates); anything else ENOTTY.
 */
function coreFeature(
  vdev: VfioPciCoreDevice,
  task: Task,
  flags: number,
  data: bigint,
  argsz: number,
): number {
  const SET = U.VFIO_DEVICE_FEATURE_SET;
  let r: number;
  switch (flags & U.VFIO_DEVICE_FEATURE_MASK) {
    case U.VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY:
      r = vfioCheckFeature(flags, argsz, SET, 0);
      return r !== 1 ? r : runtimePmEntry(vdev, null);
    case U.VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP: {
      // struct vfio_device_low_power_entry_with_wakeup: s32 wakeup_eventfd, u32 reserved
      r = vfioCheckFeature(flags, argsz, SET, 8);
      if (r !== 1) return r;
      const raw = fromUser(task, data, 8);
      if (!raw) return err("EFAULT");
      const fd = new DataView(raw.buffer, raw.byteOffset, 4).getInt32(0, true);
      if (fd < 0) return err("EINVAL");
      const ctx = eventfdCtxFdget(task, fd);
      if (typeof ctx === "number") return ctx;
      r = runtimePmEntry(vdev, ctx);
      if (r) ctx.put();
      return r;
    }
    case U.VFIO_DEVICE_FEATURE_LOW_POWER_EXIT:
      r = vfioCheckFeature(flags, argsz, SET, 0);
      if (r !== 1) return r;
      runtimePmExit(vdev);
      return 0;
    case U.VFIO_DEVICE_FEATURE_PCI_VF_TOKEN:
      if (vdev.pdev.isVirtfn || !pciFindExtCapability(vdev.pdev, R.PCI_EXT_CAP_ID_SRIOV))
        return err("ENOTTY");
      r = vfioCheckFeature(flags, argsz, SET, 16);
      if (r !== 1) return r;
      return fromUser(task, data, 16) ? 0 : err("EFAULT");
    default:
      return err("ENOTTY");
  }
}

const VF_TOKEN_ARG = "vf_token=";
/** include/linux/uuid.h UUID_STRING_LEN: "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx". */
const UUID_STRING_LEN = 36;
/** uuid_is_valid() (lib/uuid.c): hyphens at 8, 13, 18, 23, hex digits elsewhere. */
const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}/;

/** vfio_pci_core_match(): 1 match, 0 no match, -errno for bad options or token. */
function coreMatch(vdev: VfioPciCoreDevice, buf: string): number {
  const name = vdev.pdev.name;
  if (!buf.startsWith(name)) return 0;
  let vfToken = false;
  let rest = buf.slice(name.length);
  if (rest.length) {
    if (rest[0] !== " ") return 0; // non-whitespace after the name
    while (rest.length) {
      if (rest[0] === " ") {
        rest = rest.slice(1);
      } else if (!vfToken && rest.startsWith(VF_TOKEN_ARG)) {
        rest = rest.slice(VF_TOKEN_ARG.length);
        if (rest.length < UUID_STRING_LEN || !UUID_RE.test(rest)) return err("EINVAL");
        vfToken = true;
        rest = rest.slice(UUID_STRING_LEN);
      } else {
        return err("EINVAL"); // unknown or duplicate option
      }
    }
  }
  return vfioPciValidateVfToken(vdev, vfToken) || 1;
}

/**
 * vfio_pci_validate_vf_token(): a VF whose PF is not vfio-pci's takes no token; a PF
 * (is_physfn: it has the SR-IOV capability) keeps the one given while none of its VFs is
 * open through vfio-pci, which in the model is always; any other device takes none.
 */
function vfioPciValidateVfToken(vdev: VfioPciCoreDevice, vfToken: boolean): number {
  const pdev = vdev.pdev;
  if (!pdev.isVirtfn && pciFindExtCapability(pdev, R.PCI_EXT_CAP_ID_SRIOV)) return 0;
  return vfToken ? err("EINVAL") : 0;
}

/** vfio_pci_ops (drivers/vfio/pci/vfio_pci.c) over the core. */
export const vfioPciCoreOps: VfioDeviceOps = {
  name: "vfio-pci",
  openDevice(v) {
    // vfio_pci_open_device(): enable, then vfio_pci_core_finish_enable().
    const vdev = core(v);
    const r = coreEnable(vdev);
    if (r) return r;
    probeMmaps(vdev);
    return 0;
  },
  closeDevice(v) {
    // vfio_pci_core_close_device()
    const vdev = core(v);
    coreDisable(vdev);
    vdev.errTrigger?.put();
    vdev.errTrigger = null;
    vdev.reqTrigger?.put();
    vdev.reqTrigger = null;
  },
  ioctl(v, task, cmd, arg) {
    const vdev = core(v);
    switch (cmd) {
      case U.VFIO_DEVICE_GET_INFO:
        return getInfo(vdev, task, arg);
      case U.VFIO_DEVICE_GET_IRQ_INFO:
        return getIrqInfo(vdev, task, arg);
      case U.VFIO_DEVICE_GET_PCI_HOT_RESET_INFO:
        return getHotResetInfo(vdev, task, arg);
      case U.VFIO_DEVICE_GET_REGION_INFO:
        return getRegionInfo(vdev, task, arg);
      case U.VFIO_DEVICE_IOEVENTFD:
        return ioeventfd(vdev, task, arg);
      case U.VFIO_DEVICE_PCI_HOT_RESET:
        return hotReset(vdev, task, arg);
      case U.VFIO_DEVICE_RESET:
        return reset(vdev);
      case U.VFIO_DEVICE_SET_IRQS:
        return setIrqs(vdev, task, arg);
      default:
        return err("ENOTTY");
    }
  },
  deviceFeature: (v, task, flags, data, argsz) => coreFeature(core(v), task, flags, data, argsz),
  match: (v, buf) => coreMatch(core(v), buf),
  read: (v, _task, out, pos) => rw(core(v), out, pos, false),
  write: (v, _task, data, pos) => rw(core(v), data, pos, true),
  /** vfio_pci_core_request(): relayed to the user's REQ eventfd, if one is set. */
  request(v) {
    const trigger = core(v).reqTrigger;
    if (trigger) eventfdSignal(trigger);
  },
};
