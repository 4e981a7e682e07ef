/**
 * The KVM-VFIO pseudo device, virt/kvm/vfio.c: Linux 6.12, or an older era under the "3.13"
 * and "3.15" profiles (profile.ts says what differs; the entry kinds, coherency verdicts
 * and lifetimes below are the whole difference).
 *
 * One per VM (a second KVM_CREATE_DEVICE is EBUSY while the first is on the VM's list).
 * The only attribute group is KVM_DEV_VFIO_FILE (alias GROUP) with FILE_ADD and FILE_DEL,
 * whose payload is an s32 fd at `addr`; GROUP_SET_SPAPR_TCE exists only on POWER, so on
 * x86 it is ENXIO like any unknown attribute, and there is no get_attr (the framework
 * answers EPERM). The device keeps a list of what was added and one boolean: whether any
 * of it may do non-coherent DMA. Each change of that boolean, and only a change,
 * registers or unregisters noncoherent DMA with KVM, so one device adds at most 1 to the
 * VM's count; it is recomputed on ADD, DEL (found or not) and teardown only.
 *
 * kvm-vfio reaches VFIO through a few exported functions (symbol_get in the kernel):
 * VfioSymbols below, implemented by kernel/vfio/vfio_main.ts.
 */
import { err } from "../../uapi/errno.js";
import * as K from "../../uapi/kvm.js";
import { VFIO_DMA_CC_IOMMU } from "../../uapi/vfio.js";
import type { File } from "../core/file.js";
import type { Task } from "../core/task.js";
import type { IommuGroup } from "../iommu/iommu.js";
import type { Kvm, KvmDevice, KvmDeviceOps } from "./kvm_main.js";
import type { KvmProfile, KvmVfioCoherency, KvmVfioEntries } from "./profile.js";
import {
  kvmArchEndAssignment,
  kvmArchRegisterNoncoherentDma,
  kvmArchStartAssignment,
  kvmArchUnregisterNoncoherentDma,
} from "./x86.js";

/** The VFIO functions kvm-vfio calls; a group handle is opaque to KVM. */
export interface VfioSymbols {
  /** vfio_file_is_valid(): a VFIO group file or device file. */
  fileIsValid(f: File): boolean;
  /** vfio_file_enforced_coherent() */
  fileEnforcedCoherent(f: File): boolean;
  /** vfio_file_set_kvm(): devices opened later take the VM. */
  fileSetKvm(f: File, kvm: unknown): void;
  /** vfio_file_iommu_group(): a group file's IOMMU group; null for anything else. */
  fileIommuGroup?(f: File): IommuGroup | null;
  /** vfio_group_get_external_user() (Linux 3.11–5.18): the group, or -errno. */
  groupGetExternalUser(f: File): object | number;
  /** vfio_group_put_external_user() */
  groupPutExternalUser(group: object): void;
  /** vfio_external_check_extension() (3.15–5.18): VFIO_CHECK_EXTENSION on the group's container. */
  externalCheckExtension(group: object, task: Task, ext: number): number;
}

/** kvm_arch_start/end_assignment() are x86's (__KVM_HAVE_ARCH_ASSIGNED_DEVICE). */
const powerKvms = new WeakSet<object>();
const isPower = (dev: KvmDevice): boolean => powerKvms.has(dev.kvm);

/** What one list entry is; `object` so that a -errno number is never mistaken for one. */
type Handle = object;

/** How an era's entries are taken, looked up and dropped. */
interface EntryKind {
  /** FILE_ADD: the entry the file would make, or -errno. */
  validate(f: File): Handle | number;
  /** FILE_DEL: what to search the list for, or -errno. */
  lookup(f: File): Handle | number;
  /** Undo a validate/lookup whose result did not enter the list. */
  discard(h: Handle): void;
  /** The entry joined the list of kvm-vfio device `dev`. */
  hold(h: Handle, dev: KvmDevice): void;
  /** The entry left the list. */
  unhold(h: Handle, dev: KvmDevice): void;
}

const ENTRY_KINDS: Record<KvmVfioEntries, (vfio: VfioSymbols) => EntryKind> = {
  /**
   * 6.12: a reference on the open file itself (dup()s are the same file); any VFIO group
   * or device file, attached or not. DEL has no type check: a non-VFIO file is just not
   * found. The kvm pointer goes to VFIO and the VM counts an assigned device.
   */
  file: (vfio) => ({
    validate: (f) => (vfio.fileIsValid(f) ? f : err("EINVAL")),
    lookup: (f) => f,
    discard: () => undefined,
    hold: (h, dev) => {
      (h as File).get();
      if (!isPower(dev)) kvmArchStartAssignment(dev.kvm.arch);
      vfio.fileSetKvm(h as File, dev.kvm);
    },
    unhold: (h, dev) => {
      if (!isPower(dev)) kvmArchEndAssignment(dev.kvm.arch);
      vfio.fileSetKvm(h as File, null);
      (h as File).put();
    },
  }),
  /**
   * 3.13 and 3.15: a VFIO external-user reference on the group, for ADD and for DEL alike
   * (EINVAL for anything but a group attached to a container with an IOMMU backend);
   * entries are groups. Nothing else is told: the kvm pointer for VFIO and the
   * assigned-device count came later (v4.x).
   */
  group: (vfio) => ({
    validate: (f) => vfio.groupGetExternalUser(f),
    lookup: (f) => vfio.groupGetExternalUser(f),
    discard: (h) => vfio.groupPutExternalUser(h),
    hold: () => undefined,
    unhold: (h) => vfio.groupPutExternalUser(h),
  }),
};

/** Whether an entry's DMA is coherent (the IOMMU enforces snooping), per era. */
const COHERENCY: Record<
  KvmVfioCoherency,
  (vfio: VfioSymbols) => (h: Handle, task: Task) => boolean
> = {
  /** 3.13: "TODO: We need an interface to check the coherency" — every group is not. */
  "assume-noncoherent": () => () => false,
  /** 3.15–5.18: vfio_external_check_extension(group, VFIO_DMA_CC_IOMMU) > 0 */
  container: (vfio) => (h, task) => vfio.externalCheckExtension(h, task, VFIO_DMA_CC_IOMMU) > 0,
  /** 5.19+: vfio_file_enforced_coherent() */
  file: (vfio) => (h) => vfio.fileEnforcedCoherent(h as File),
  /** "2021-proposal" (never merged): the VMM decides, through KVM_ALLOW_INCOHERENT_DMA. */
  vmm: () => () => true,
};

/** struct kvm_vfio */
interface KvmVfio {
  entries: Handle[];
  noncoherent: boolean;
}

/**
 * POWER (CONFIG_SPAPR_TCE_IOMMU): kvm_spapr_tce_attach/release_iommu_group of
 * book3s_64_vio.ts. With it, KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE exists, and the x86 hooks
 * are the empty stubs POWER has: kvm_arch_register_noncoherent_dma() and
 * kvm_arch_start_assignment() do nothing (POWER devices are still judged non-coherent).
 */
export interface SpaprTceKvm {
  attachIommuGroup(kvm: Kvm, task: Task, tablefd: number, group: IommuGroup): number;
  releaseIommuGroup(kvm: Kvm, group: IommuGroup): void;
}

/** struct kvm_vfio_ops for a profile. */
export function kvmVfioOps(
  profile: KvmProfile,
  vfio: VfioSymbols,
  spapr: SpaprTceKvm | null = null,
): KvmDeviceOps {
  const kind = ENTRY_KINDS[profile.kvmVfio.entries](vfio);
  const coherent = COHERENCY[profile.kvmVfio.coherency](vfio);
  const state = (dev: KvmDevice) => dev.priv as KvmVfio;

  /** The register/unregister half of kvm_vfio_update_coherency(). */
  const setNoncoherent = (dev: KvmDevice, noncoherent: boolean): void => {
    const kv = state(dev);
    if (noncoherent === kv.noncoherent) return;
    kv.noncoherent = noncoherent;
    if (spapr) return; // no __KVM_HAVE_ARCH_NONCOHERENT_DMA on POWER
    if (noncoherent) kvmArchRegisterNoncoherentDma(dev.kvm.arch);
    else kvmArchUnregisterNoncoherentDma(dev.kvm.arch);
  };

  /** kvm_vfio_update_coherency(): noncoherent as soon as one entry is. */
  const updateCoherency = (dev: KvmDevice, task: Task): void =>
    setNoncoherent(
      dev,
      state(dev).entries.some((h) => !coherent(h, task)),
    );

  const fileAdd = (dev: KvmDevice, task: Task, fd: number): number => {
    const f = task.files.get(fd);
    if (!f) return err("EBADF");
    const h = kind.validate(f);
    if (typeof h === "number") return h;
    const kv = state(dev);
    if (kv.entries.includes(h)) {
      kind.discard(h);
      return err("EEXIST");
    }
    if (task.faults.should("slab", "kvm_vfio_file")) {
      kind.discard(h);
      return err("ENOMEM");
    }
    kv.entries.push(h);
    kind.hold(h, dev);
    updateCoherency(dev, task);
    return 0;
  };

  const fileDel = (dev: KvmDevice, task: Task, fd: number): number => {
    const f = task.files.get(fd);
    if (!f) return err("EBADF");
    const h = kind.lookup(f);
    if (typeof h === "number") return h;
    const kv = state(dev);
    const i = kv.entries.indexOf(h);
    let ret = err("ENOENT");
    if (i >= 0) {
      kv.entries.splice(i, 1);
      spaprRelease(dev, h);
      kind.unhold(h, dev);
      ret = 0;
    }
    kind.discard(h);
    updateCoherency(dev, task);
    return ret;
  };

  /** kvf->iommu_group, cached at the first SET_SPAPR_TCE of an entry. */
  const spaprGroups = new WeakMap<Handle, IommuGroup>();

  /** kvm_spapr_tce_release_vfio_group() */
  const spaprRelease = (dev: KvmDevice, h: Handle): void => {
    const g = spaprGroups.get(h);
    if (!spapr || !g) return;
    spapr.releaseIommuGroup(dev.kvm, g);
    spaprGroups.delete(h);
  };

  /** kvm_vfio_file_set_spapr_tce(): the payload is struct kvm_vfio_spapr_tce. */
  const setSpaprTce = (dev: KvmDevice, task: Task, addr: bigint): number => {
    const s = spapr as SpaprTceKvm;
    const raw = task.mm.copyFromUser(addr, K.kvm_vfio_spapr_tce.size);
    if (!raw) return err("EFAULT");
    const p = K.kvm_vfio_spapr_tce.decode(raw);
    const f = task.files.get(p.groupfd);
    if (!f) return err("EBADF");
    const h = kind.lookup(f);
    if (typeof h === "number") return err("ENOENT");
    kind.discard(h);
    const entry = state(dev).entries.find((e) => e === h);
    if (!entry) return err("ENOENT");
    let g = spaprGroups.get(entry);
    if (!g) {
      g = vfio.fileIommuGroup?.(f) ?? undefined;
      if (!g) return err("EIO"); // WARN_ON_ONCE: e.g. a device cdev fd
      spaprGroups.set(entry, g);
    }
    return s.attachIommuGroup(dev.kvm, task, p.tablefd, g);
  };

  const fileOps = new Map([
    [BigInt(K.KVM_DEV_VFIO_FILE_ADD), fileAdd],
    [BigInt(K.KVM_DEV_VFIO_FILE_DEL), fileDel],
  ]);

  /** kvm_vfio_set_file(): the payload is an s32 fd (get_user). */
  const setFile = (dev: KvmDevice, task: Task, attr: bigint, addr: bigint): number => {
    const op = fileOps.get(attr);
    if (!op) return err("ENXIO");
    const raw = task.mm.copyFromUser(addr, 4);
    if (!raw) return err("EFAULT");
    return op(dev, task, new DataView(raw.buffer).getInt32(0, true));
  };

  /** kvm_vfio_release() (6.12) / kvm_vfio_destroy() (3.13): drop everything, then recompute. */
  const teardown = (dev: KvmDevice): void => {
    const kv = state(dev);
    for (const h of kv.entries.splice(0)) {
      spaprRelease(dev, h);
      kind.unhold(h, dev);
    }
    setNoncoherent(dev, false); // kvm_vfio_update_coherency() of the empty list
  };

  const ops: KvmDeviceOps = {
    name: "kvm-vfio",
    create(dev) {
      if (dev.kvm.devices.some((d) => d.ops === ops)) return err("EBUSY");
      if (spapr) powerKvms.add(dev.kvm);
      const kv: KvmVfio = { entries: [], noncoherent: false };
      dev.priv = kv;
      return 0;
    },
    setAttr(dev, task, attr) {
      if (attr.group !== K.KVM_DEV_VFIO_FILE) return err("ENXIO");
      if (spapr && attr.attr === BigInt(K.KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE))
        return setSpaprTce(dev, task, attr.addr);
      return setFile(dev, task, attr.attr, attr.addr);
    },
    /** FILE_ADD and FILE_DEL (SET_SPAPR_TCE too with CONFIG_SPAPR_TCE_IOMMU, POWER only). */
    hasAttr(_dev, _task, attr) {
      if (attr.group !== K.KVM_DEV_VFIO_FILE) return err("ENXIO");
      if (spapr && attr.attr === BigInt(K.KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE)) return 0;
      return fileOps.has(attr.attr) ? 0 : err("ENXIO");
    },
    [profile.kvmVfio.lifetime]: teardown,
  };
  return ops;
}
