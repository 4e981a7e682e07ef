/**
 * vfio-pci interrupts, drivers/vfio/pci/vfio_pci_intrs.c (Linux 6.12), with the eventfd
 * plumbing of drivers/vfio/virqfd.c.
 *
 * One interrupt mode at a time (irq_type: INTx, MSI, MSI-X, or none = VFIO_PCI_NUM_IRQS);
 * a per-vector context holds the trigger eventfd. VFIO_DEVICE_SET_IRQS actions: TRIGGER
 * with eventfds enables the mode (or rewires vectors of the active one), TRIGGER with
 * DATA_NONE/DATA_BOOL signals the eventfds from software (loopback), TRIGGER with count 0
 * and DATA_NONE disables; INTx also has MASK and UNMASK (the latter also by eventfd); ERR
 * and REQ are single eventfds. Masking INTx uses DisINTx on PCI 2.3 devices.
 *
 * The model's eventfds have no wait queue, so a virqfd (UNMASK by eventfd, ioeventfds) acts
 * on a count already pending when it is set up, not on later writes.
 */
import { err } from "../../../uapi/errno.js";
import {
  VFIO_IRQ_SET_ACTION_MASK,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_ACTION_TYPE_MASK,
  VFIO_IRQ_SET_ACTION_UNMASK,
  VFIO_IRQ_SET_DATA_BOOL,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
  VFIO_PCI_ERR_IRQ_INDEX,
  VFIO_PCI_INTX_IRQ_INDEX,
  VFIO_PCI_MSIX_IRQ_INDEX,
  VFIO_PCI_MSI_IRQ_INDEX,
  VFIO_PCI_NUM_IRQS,
  VFIO_PCI_REQ_IRQ_INDEX,
} from "../../../uapi/vfio.js";
import { eventfdSignal, isEventFd, type EventFd } from "../../core/eventfd.js";
import type { File } from "../../core/file.js";
import type { Task } from "../../core/task.js";
import { pciCheckAndSetIntxMask, pciIntx, pciIrq } from "../../pci/enable.js";
import {
  PCI_IRQ_MSI,
  PCI_IRQ_MSIX,
  pciAllocIrqVectors,
  pciFreeIrqVectors,
  pciIrqVector,
  pciMsiIrqActive,
  pciMsixAllocIrqAt,
} from "../../pci/msi.js";
import type { VfioPciCoreDevice } from "./vfio_pci_core.js";
import { vfioPciMemoryLockAndEnable, vfioPciMemoryUnlockAndRestore } from "./vfio_pci_core.js";

/** struct virqfd: an eventfd whose signal runs a handler (and, if it says so, a thread). */
export interface Virqfd {
  eventfd: File<EventFd>;
}

/** struct vfio_pci_irq_ctx */
export interface VfioPciIrqCtx {
  trigger: File<EventFd> | null;
  masked: boolean;
  unmask: Virqfd | null;
  mask: Virqfd | null;
  /** The Linux IRQ a handler is registered on (MSI/MSI-X). */
  irq: number;
}

/** eventfd_ctx_fdget(): EBADF for no file, EINVAL for a file that is not an eventfd. */
export function eventfdCtxFdget(task: Task, fd: number): File<EventFd> | number {
  const f = fd < 0 ? undefined : task.files.get(fd);
  if (!f) return err("EBADF");
  if (!isEventFd(f)) return err("EINVAL");
  return f.get();
}

/**
 * vfio_virqfd_enable(): EBUSY when one is already set; an event already pending runs the
 * handler now, and the thread when the handler asks for it (or there is no handler).
 */
export function virqfdEnable(
  task: Task,
  fd: number,
  slot: { get(): Virqfd | null; set(v: Virqfd): void },
  handler: (() => boolean) | null,
  thread: (() => void) | null,
): number {
  const ctx = eventfdCtxFdget(task, fd);
  if (typeof ctx === "number") return ctx;
  if (slot.get()) {
    ctx.put();
    return err("EBUSY");
  }
  slot.set({ eventfd: ctx });
  if (ctx.priv.count > 0n && (!handler || handler()) && thread) thread();
  return 0;
}

/** vfio_virqfd_disable() */
export function virqfdDisable(v: Virqfd | null): void {
  v?.eventfd.put();
}

const isIntx = (vdev: VfioPciCoreDevice) => vdev.irqType === VFIO_PCI_INTX_IRQ_INDEX;
const isIrqNone = (vdev: VfioPciCoreDevice) =>
  vdev.irqType !== VFIO_PCI_INTX_IRQ_INDEX &&
  vdev.irqType !== VFIO_PCI_MSI_IRQ_INDEX &&
  vdev.irqType !== VFIO_PCI_MSIX_IRQ_INDEX;

/* ---------------------------------------------------------------------------------------- */
/* INTx                                                                                     */
/* ---------------------------------------------------------------------------------------- */

function sendIntxEventfd(vdev: VfioPciCoreDevice, ctx: VfioPciIrqCtx | undefined): void {
  if (isIntx(vdev) && !vdev.virqDisabled && ctx?.trigger) eventfdSignal(ctx.trigger);
}

/**
 * __vfio_pci_intx_mask(): true if the mask changed. Outside INTx mode (a DisINTx write
 * through config space) the physical bit just follows the virtual one.
 */
export function vfioPciIntxMask(vdev: VfioPciCoreDevice): boolean {
  if (!isIntx(vdev)) {
    if (vdev.pci23) pciIntx(vdev.pdev, false);
    return false;
  }
  const ctx = vdev.ctx.get(0);
  if (!ctx || ctx.masked) return false;
  // Always mask, not only when something is pending (so not check_and_mask).
  if (vdev.pci23) pciIntx(vdev.pdev, false);
  ctx.masked = true;
  return true;
}

/** vfio_pci_intx_unmask_handler(): >0 when an interrupt is still pending (resend it). */
function intxUnmaskHandler(vdev: VfioPciCoreDevice, ctx: VfioPciIrqCtx | undefined): number {
  if (!isIntx(vdev)) {
    if (vdev.pci23) pciIntx(vdev.pdev, true);
    return 0;
  }
  let ret = 0;
  if (ctx?.masked && !vdev.virqDisabled) {
    if (vdev.pci23 && !pciCheckAndSetIntxMask(vdev.pdev, false)) ret = 1;
    ctx.masked = ret > 0;
  }
  return ret;
}

/** __vfio_pci_intx_unmask() */
export function vfioPciIntxUnmask(vdev: VfioPciCoreDevice): void {
  const ctx = vdev.ctx.get(0);
  if (intxUnmaskHandler(vdev, ctx) > 0) sendIntxEventfd(vdev, ctx);
}

/** vfio_intx_enable(): masked from the start when the user set DisINTx. */
function intxEnable(vdev: VfioPciCoreDevice, trigger: File<EventFd> | null): number {
  if (!isIrqNone(vdev)) return err("EINVAL");
  if (!pciIrq(vdev.pdev)) return err("ENODEV");
  const ctx: VfioPciIrqCtx = {
    trigger,
    masked: vdev.virqDisabled,
    unmask: null,
    mask: null,
    irq: pciIrq(vdev.pdev),
  };
  vdev.ctx.set(0, ctx);
  if (vdev.pci23) pciIntx(vdev.pdev, !ctx.masked);
  vdev.irqType = VFIO_PCI_INTX_IRQ_INDEX;
  return 0;
}

/** vfio_intx_set_signal(): swap the trigger. */
function intxSetSignal(vdev: VfioPciCoreDevice, trigger: File<EventFd> | null): number {
  const ctx = vdev.ctx.get(0);
  if (!ctx) return err("EINVAL");
  const old = ctx.trigger;
  ctx.trigger = trigger;
  old?.put();
  return 0;
}

/** vfio_intx_disable() */
function intxDisable(vdev: VfioPciCoreDevice): void {
  const ctx = vdev.ctx.get(0);
  if (ctx) {
    virqfdDisable(ctx.unmask);
    virqfdDisable(ctx.mask);
    ctx.trigger?.put();
    vdev.ctx.delete(0);
  }
  vdev.irqType = VFIO_PCI_NUM_IRQS;
}

/* ---------------------------------------------------------------------------------------- */
/* MSI / MSI-X                                                                              */
/* ---------------------------------------------------------------------------------------- */

/** vfio_msi_enable(): all `nvec` vectors or nothing (fewer available is returned as a count). */
function msiEnable(vdev: VfioPciCoreDevice, nvec: number, msix: boolean): number {
  if (!isIrqNone(vdev)) return err("EINVAL");
  const cmd = vfioPciMemoryLockAndEnable(vdev);
  const ret = pciAllocIrqVectors(vdev.hw, vdev.pdev, 1, nvec, msix ? PCI_IRQ_MSIX : PCI_IRQ_MSI);
  if (ret < nvec) {
    if (ret > 0) pciFreeIrqVectors(vdev.hw, vdev.pdev);
    vfioPciMemoryUnlockAndRestore(vdev, cmd);
    return ret;
  }
  vfioPciMemoryUnlockAndRestore(vdev, cmd);
  vdev.irqType = msix ? VFIO_PCI_MSIX_IRQ_INDEX : VFIO_PCI_MSI_IRQ_INDEX;
  // The virtual Multiple Message Capable: log2 of the vectors enabled.
  if (!msix) vdev.msiQmax = Math.floor(Math.log2(nvec * 2 - 1));
  return 0;
}

/** vfio_msi_alloc_irq(): the vector's IRQ, allocated on demand with dynamic MSI-X. */
function msiAllocIrq(vdev: VfioPciCoreDevice, vector: number, msix: boolean): number {
  const irq = pciIrqVector(vdev.pdev, vector, pciIrq(vdev.pdev));
  if (irq === 0) return err("EINVAL");
  if (irq > 0 || !msix || !vdev.hasDynMsix) return irq;
  const cmd = vfioPciMemoryLockAndEnable(vdev);
  const r = pciMsixAllocIrqAt(vdev.pdev, vector);
  vfioPciMemoryUnlockAndRestore(vdev, cmd);
  return r;
}

/** vfio_msi_set_vector_signal(): release the vector's handler, then wire `fd` if >= 0. */
function msiSetVectorSignal(
  vdev: VfioPciCoreDevice,
  task: Task | null,
  vector: number,
  fd: number,
  msix: boolean,
): number {
  let irq: number | null = null;
  const old = vdev.ctx.get(vector);
  if (old) {
    irq = old.irq;
    const cmd = vfioPciMemoryLockAndEnable(vdev);
    pciMsiIrqActive(vdev.hw, vdev.pdev, irq, false); // free_irq()
    vfioPciMemoryUnlockAndRestore(vdev, cmd);
    old.trigger?.put();
    vdev.ctx.delete(vector);
  }
  if (fd < 0 || !task) return 0;
  // The IRQ stays allocated until MSI/MSI-X is disabled.
  irq ??= msiAllocIrq(vdev, vector, msix);
  if (irq < 0) return irq;
  const trigger = eventfdCtxFdget(task, fd);
  if (typeof trigger === "number") return trigger;
  const cmd = vfioPciMemoryLockAndEnable(vdev);
  pciMsiIrqActive(vdev.hw, vdev.pdev, irq, true); // request_irq()
  vfioPciMemoryUnlockAndRestore(vdev, cmd);
  vdev.ctx.set(vector, { trigger, masked: false, unmask: null, mask: null, irq });
  return 0;
}

/** vfio_msi_set_block(): on error the vectors set so far are unwired again. */
function msiSetBlock(
  vdev: VfioPciCoreDevice,
  task: Task,
  start: number,
  count: number,
  fds: number[] | null,
  msix: boolean,
): number {
  let ret = 0;
  let j = start;
  for (let i = 0; i < count && !ret; i++, j++)
    ret = msiSetVectorSignal(vdev, task, j, fds ? (fds[i] as number) : -1, msix);
  if (ret) for (let i = start; i < j; i++) msiSetVectorSignal(vdev, null, i, -1, msix);
  return ret;
}

/** vfio_msi_disable() */
function msiDisable(vdev: VfioPciCoreDevice, msix: boolean): void {
  for (const [i, ctx] of [...vdev.ctx]) {
    virqfdDisable(ctx.unmask);
    virqfdDisable(ctx.mask);
    msiSetVectorSignal(vdev, null, i, -1, msix);
  }
  const cmd = vfioPciMemoryLockAndEnable(vdev);
  pciFreeIrqVectors(vdev.hw, vdev.pdev);
  vfioPciMemoryUnlockAndRestore(vdev, cmd);
  // The disable paths clear DisINTx; a NoINTx device keeps it set.
  if (vdev.nointx) pciIntx(vdev.pdev, false);
  vdev.irqType = VFIO_PCI_NUM_IRQS;
}

/* ---------------------------------------------------------------------------------------- */
/* VFIO_DEVICE_SET_IRQS                                                                     */
/* ---------------------------------------------------------------------------------------- */

/** The payload of one SET_IRQS call, already copied in. */
interface IrqData {
  bytes: Uint8Array;
}

const u8 = (d: IrqData, i = 0) => d.bytes[i] as number;
const s32 = (d: IrqData, i = 0) =>
  new DataView(d.bytes.buffer, d.bytes.byteOffset + 4 * i, 4).getInt32(0, true);

type SetFn = (
  vdev: VfioPciCoreDevice,
  task: Task,
  index: number,
  start: number,
  count: number,
  flags: number,
  data: IrqData,
) => number;

const setIntxUnmask: SetFn = (vdev, task, _index, start, count, flags, data) => {
  if (!isIntx(vdev) || start !== 0 || count !== 1) return err("EINVAL");
  if (flags & VFIO_IRQ_SET_DATA_NONE) vfioPciIntxUnmask(vdev);
  else if (flags & VFIO_IRQ_SET_DATA_BOOL) {
    if (u8(data)) vfioPciIntxUnmask(vdev);
  } else if (flags & VFIO_IRQ_SET_DATA_EVENTFD) {
    const ctx = vdev.ctx.get(0);
    if (!ctx) return err("EINVAL");
    const fd = s32(data);
    if (fd >= 0)
      return virqfdEnable(
        task,
        fd,
        { get: () => ctx.unmask, set: (v) => (ctx.unmask = v) },
        () => intxUnmaskHandler(vdev, ctx) > 0,
        () => sendIntxEventfd(vdev, ctx),
      );
    virqfdDisable(ctx.unmask);
    ctx.unmask = null;
  }
  return 0;
};

const setIntxMask: SetFn = (vdev, _task, _index, start, count, flags, data) => {
  if (!isIntx(vdev) || start !== 0 || count !== 1) return err("EINVAL");
  if (flags & VFIO_IRQ_SET_DATA_NONE) vfioPciIntxMask(vdev);
  else if (flags & VFIO_IRQ_SET_DATA_BOOL) {
    if (u8(data)) vfioPciIntxMask(vdev);
  } else if (flags & VFIO_IRQ_SET_DATA_EVENTFD) {
    return err("ENOTTY"); // "XXX implement me" in the kernel
  }
  return 0;
};

const setIntxTrigger: SetFn = (vdev, task, _index, start, count, flags, data) => {
  if (isIntx(vdev) && !count && flags & VFIO_IRQ_SET_DATA_NONE) {
    intxDisable(vdev);
    return 0;
  }
  if (!(isIntx(vdev) || isIrqNone(vdev)) || start !== 0 || count !== 1) return err("EINVAL");
  if (flags & VFIO_IRQ_SET_DATA_EVENTFD) {
    const fd = s32(data);
    let trigger: File<EventFd> | null = null;
    if (fd >= 0) {
      const t = eventfdCtxFdget(task, fd);
      if (typeof t === "number") return t;
      trigger = t;
    }
    const ret = isIntx(vdev) ? intxSetSignal(vdev, trigger) : intxEnable(vdev, trigger);
    if (ret) trigger?.put();
    return ret;
  }
  if (!isIntx(vdev)) return err("EINVAL");
  if (flags & VFIO_IRQ_SET_DATA_NONE) sendIntxEventfd(vdev, vdev.ctx.get(0));
  else if (flags & VFIO_IRQ_SET_DATA_BOOL && u8(data)) sendIntxEventfd(vdev, vdev.ctx.get(0));
  return 0;
};

const setMsiTrigger: SetFn = (vdev, task, index, start, count, flags, data) => {
  const msix = index === VFIO_PCI_MSIX_IRQ_INDEX;
  if (vdev.irqType === index && !count && flags & VFIO_IRQ_SET_DATA_NONE) {
    msiDisable(vdev, msix);
    return 0;
  }
  if (!(vdev.irqType === index || isIrqNone(vdev))) return err("EINVAL");
  if (flags & VFIO_IRQ_SET_DATA_EVENTFD) {
    const fds = Array.from({ length: count }, (_, i) => s32(data, i));
    if (vdev.irqType === index) return msiSetBlock(vdev, task, start, count, fds, msix);
    let ret = msiEnable(vdev, start + count, msix);
    if (ret) return ret;
    ret = msiSetBlock(vdev, task, start, count, fds, msix);
    if (ret) msiDisable(vdev, msix);
    return ret;
  }
  if (vdev.irqType !== index) return err("EINVAL");
  for (let i = start; i < start + count; i++) {
    const ctx = vdev.ctx.get(i);
    if (!ctx?.trigger) continue;
    if (flags & VFIO_IRQ_SET_DATA_NONE) eventfdSignal(ctx.trigger);
    else if (flags & VFIO_IRQ_SET_DATA_BOOL && u8(data, i - start)) eventfdSignal(ctx.trigger);
  }
  return 0;
};

/** vfio_pci_set_ctx_trigger_single(): ERR and REQ, one eventfd each. */
function setCtxTriggerSingle(
  task: Task,
  slot: { get(): File<EventFd> | null; set(v: File<EventFd> | null): void },
  count: number,
  flags: number,
  data: IrqData,
): number {
  const cur = slot.get();
  if (flags & VFIO_IRQ_SET_DATA_NONE) {
    // DATA_NONE/DATA_BOOL allow loopback testing.
    if (cur) {
      if (count) eventfdSignal(cur);
      else {
        cur.put();
        slot.set(null);
      }
      return 0;
    }
  } else if (flags & VFIO_IRQ_SET_DATA_BOOL) {
    if (!count) return err("EINVAL");
    if (u8(data) && cur) eventfdSignal(cur);
    return 0;
  } else if (flags & VFIO_IRQ_SET_DATA_EVENTFD) {
    if (!count) return err("EINVAL");
    const fd = s32(data);
    if (fd === -1) {
      cur?.put();
      slot.set(null);
    } else if (fd >= 0) {
      const ctx = eventfdCtxFdget(task, fd);
      if (typeof ctx === "number") return ctx;
      cur?.put();
      slot.set(ctx);
    }
    return 0;
  }
  return err("EINVAL");
}

const setErrTrigger: SetFn = (vdev, task, index, start, count, flags, data) => {
  if (index !== VFIO_PCI_ERR_IRQ_INDEX || start !== 0 || count > 1) return err("EINVAL");
  const slot = {
    get: () => vdev.errTrigger,
    set: (v: File<EventFd> | null) => (vdev.errTrigger = v),
  };
  return setCtxTriggerSingle(task, slot, count, flags, data);
};

const setReqTrigger: SetFn = (vdev, task, index, start, count, flags, data) => {
  if (index !== VFIO_PCI_REQ_IRQ_INDEX || start !== 0 || count > 1) return err("EINVAL");
  const slot = {
    get: () => vdev.reqTrigger,
    set: (v: File<EventFd> | null) => (vdev.reqTrigger = v),
  };
  return setCtxTriggerSingle(task, slot, count, flags, data);
};

/** vfio_pci_set_irqs_ioctl(): which handler an (index, action) pair gets; ENOTTY for none. */
export function vfioPciSetIrqsIoctl(
  vdev: VfioPciCoreDevice,
  task: Task,
  flags: number,
  index: number,
  start: number,
  count: number,
  data: Uint8Array,
): number {
  const action = flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
  let fn: SetFn | null = null;
  switch (index) {
    case VFIO_PCI_INTX_IRQ_INDEX:
      fn =
        action === VFIO_IRQ_SET_ACTION_MASK
          ? setIntxMask
          : action === VFIO_IRQ_SET_ACTION_UNMASK
            ? setIntxUnmask
            : action === VFIO_IRQ_SET_ACTION_TRIGGER
              ? setIntxTrigger
              : null;
      break;
    case VFIO_PCI_MSI_IRQ_INDEX:
    case VFIO_PCI_MSIX_IRQ_INDEX:
      // MASK and UNMASK: "XXX Need masking support exported"
      if (action === VFIO_IRQ_SET_ACTION_TRIGGER) fn = setMsiTrigger;
      break;
    case VFIO_PCI_ERR_IRQ_INDEX:
      if (action === VFIO_IRQ_SET_ACTION_TRIGGER && vdev.pdev.isPcie()) fn = setErrTrigger;
      break;
    case VFIO_PCI_REQ_IRQ_INDEX:
      if (action === VFIO_IRQ_SET_ACTION_TRIGGER) fn = setReqTrigger;
      break;
  }
  if (!fn) return err("ENOTTY");
  return fn(vdev, task, index, start, count, flags, { bytes: data });
}

/** The disable of vfio_pci_core_disable(): whatever mode is on goes off. */
export function vfioPciIrqsOff(vdev: VfioPciCoreDevice): void {
  if (isIntx(vdev)) intxDisable(vdev);
  else if (vdev.irqType === VFIO_PCI_MSI_IRQ_INDEX || vdev.irqType === VFIO_PCI_MSIX_IRQ_INDEX)
    msiDisable(vdev, vdev.irqType === VFIO_PCI_MSIX_IRQ_INDEX);
}
