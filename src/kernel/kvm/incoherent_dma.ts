/**
 * NEVER MERGED — KVM_ALLOW_INCOHERENT_DMA / KVM_DISALLOW_INCOHERENT_DMA, the KVM interface
 * proposed in the "/dev/ioasid uAPI proposal" RFC thread (June 2021) to replace kvm-vfio's
 * coherency role, modelled on Linux 6.12 for the experimental "2021-proposal" profile
 * (profile.ts). No kernel has these requests; under every other profile they are unknown
 * VM requests (ENOTTY). What the thread fixed, and what the model had to choose:
 *
 * - Shape (thread): `ioctl(KVM_ALLOW_INCOHERENT_DMA, ioasidfd, device_label)` and the
 *   DISALLOW twin, on the VM fd. "/dev/ioasid" became iommufd, and a device's label in it
 *   is the device ID VFIO_DEVICE_BIND_IOMMUFD returns, so the argument is struct
 *   kvm_incoherent_dma { s32 iommufd; u32 dev_id; } (uapi/kvm.ts; numbers are ours).
 * - Rule (thread): "'ioasidfd, device_label' is the security proof": "some device in the
 *   ioasidfd that declares it is capable of no-snoop". The thread has vfio_pci declare
 *   that for every device; the model takes the stricter reading the security argument
 *   needs (else any device would do, as under 3.13): the device's DMA can really bypass
 *   the caches — the HWPT it is attached to does not enforce coherency, or, while it is
 *   attached to none, its IOMMU cannot enforce it (IOMMU_CAP_ENFORCE_CACHE_COHERENCY), so
 *   no HWPT iommufd makes for it will.
 * - Errno: the fd is resolved as iommufd resolves fds it is handed
 *   (iommufd_ctx_from_fd(): EBADF for no open file, EBADFD for a file that is not an
 *   iommufd) and the label as iommufd_get_device() does (ENOENT: no device with that ID
 *   in that iommufd, including one bound to another iommufd). Our choices, the proposal
 *   being silent: EPERM for a device that cannot do no-snoop (the proof fails), EEXIST for
 *   a pair already allowed and ENOENT for DISALLOW of a pair that is not (kvm-vfio's
 *   FILE_ADD / FILE_DEL answers), EFAULT for an unreadable argument.
 * - Effect: each allowed pair registers noncoherent DMA with KVM
 *   (kvm_arch_register_noncoherent_dma(), as kvm-vfio does) and DISALLOW unregisters it,
 *   so a guest WBINVD is executed while any pair is allowed.
 * - Lifetime (our reading of "No kernel call backs, no kernel auto-sync"): the check is
 *   made at ALLOW only. KVM keeps a reference on the iommufd (iommufd_ctx_get, as kvm-vfio
 *   keeps one on a VFIO file), so closing the VMM's iommufd fd does not end the allowance,
 *   and neither does unbinding the device or attaching it elsewhere: a later mismatch is
 *   "a kernel-harmless userspace bug". DISALLOW or the VM's destruction drops the pair,
 *   its registration and its reference.
 */
import { err } from "../../uapi/errno.js";
import * as K from "../../uapi/kvm.js";
import type { File } from "../core/file.js";
import type { Task } from "../core/task.js";
import { iommufdGetDevice } from "../iommufd/device.js";
import { findHwptPaging } from "../iommufd/hw_pagetable.js";
import type { IommufdCtx, IommufdSubsystem } from "../iommufd/main.js";
import type { Kvm } from "./kvm_main.js";
import { kvmArchRegisterNoncoherentDma, kvmArchUnregisterNoncoherentDma } from "./x86.js";

/** What KVM would call in iommufd; a context is opaque to KVM. */
export interface IommufdSymbols {
  /** iommufd_ctx_from_file(): a reference on the context, or -EBADFD. */
  ctxFromFile(f: File): object | number;
  /** iommufd_ctx_put() */
  ctxPut(ctx: object): void;
  /** Whether device `id` of the context can do non-coherent DMA; -ENOENT for no such device. */
  deviceNoSnoop(ctx: object, id: number): boolean | number;
}

/** The proposal's iommufd side, over the 6.12 iommufd model (null: a build without it). */
export function iommufdSymbols(sys: IommufdSubsystem | null): IommufdSymbols {
  return {
    ctxFromFile: (f) => (sys ? sys.ctxFromFile(f) : err("EBADFD")),
    ctxPut: (ctx) => (ctx as IommufdCtx).put(),
    deviceNoSnoop: (c, id) => {
      const ctx = c as IommufdCtx;
      const idev = iommufdGetDevice(ctx, id);
      if (typeof idev === "number") return idev;
      const hwpt = idev.igroup.hwpt;
      const hp = hwpt && findHwptPaging(hwpt);
      ctx.putObject(idev);
      return hp ? !hp.enforceCacheCoherency : !idev.enforceCacheCoherency;
    },
  };
}

/** One allowed (iommufd, device label) pair. */
interface Allowed {
  ctx: object;
  devId: number;
}

/** The two VM requests and the per-VM list of allowed pairs. */
export class IncoherentDma {
  private readonly allowed = new WeakMap<Kvm, Allowed[]>();

  constructor(private readonly iommufd: IommufdSymbols) {}

  /** The VM request `cmd`, or undefined when it is not one of the two. */
  ioctl(kvm: Kvm, task: Task, cmd: number, arg: bigint): number | undefined {
    if (cmd !== K.KVM_ALLOW_INCOHERENT_DMA && cmd !== K.KVM_DISALLOW_INCOHERENT_DMA)
      return undefined;
    const raw = task.mm.copyFromUser(arg, K.kvm_incoherent_dma.size);
    if (!raw) return err("EFAULT");
    const a = K.kvm_incoherent_dma.decode(raw);
    const f = a.iommufd < 0 ? undefined : task.files.get(a.iommufd);
    if (!f) return err("EBADF");
    const ctx = this.iommufd.ctxFromFile(f);
    if (typeof ctx === "number") return ctx;
    const list = this.allowed.get(kvm) ?? [];
    this.allowed.set(kvm, list);
    const i = list.findIndex((e) => e.ctx === ctx && e.devId === a.dev_id);
    if (cmd === K.KVM_DISALLOW_INCOHERENT_DMA) {
      this.iommufd.ctxPut(ctx);
      if (i < 0) return err("ENOENT");
      this.drop(kvm, list.splice(i, 1)[0] as Allowed);
      return 0;
    }
    const noSnoop = this.iommufd.deviceNoSnoop(ctx, a.dev_id);
    const rc =
      typeof noSnoop === "number" ? noSnoop : !noSnoop ? err("EPERM") : i >= 0 ? err("EEXIST") : 0;
    if (rc) {
      this.iommufd.ctxPut(ctx);
      return rc;
    }
    list.push({ ctx, devId: a.dev_id }); // the context reference stays with the pair
    kvmArchRegisterNoncoherentDma(kvm.arch);
    return 0;
  }

  /** VM destruction: every pair is dropped. */
  release(kvm: Kvm): void {
    for (const e of this.allowed.get(kvm)?.splice(0) ?? []) this.drop(kvm, e);
  }

  /** How many pairs a VM has allowed (each is one noncoherent DMA registration). */
  count(kvm: Kvm): number {
    return this.allowed.get(kvm)?.length ?? 0;
  }

  private drop(kvm: Kvm, e: Allowed): void {
    kvmArchUnregisterNoncoherentDma(kvm.arch);
    this.iommufd.ctxPut(e.ctx);
  }
}
