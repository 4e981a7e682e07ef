/**
 * HV KVM on a POWER host, the parts of arch/powerpc/kvm/book3s_hv.c and powerpc.c the TCE
 * path needs (Linux 6.12, and 5.18 where the era says so):
 *
 * - VM requests: KVM_CREATE_SPAPR_TCE_64 (book3s_64_vio.ts), KVM_ENABLE_CAP of
 *   KVM_CAP_PPC_ENABLE_HCALL (args[0] an hcall number, a multiple of 4 no larger than
 *   MAX_HCALL_OPCODE, args[1] 0 or 1, flags 0, else EINVAL). The default enabled set
 *   (default_hcall_list) has H_GET_TCE and H_PUT_TCE but not H_PUT_TCE_INDIRECT or
 *   H_STUFF_TCE: userspace turns those on (QEMU does, for its multi-TCE support).
 * - KVM_CHECK_EXTENSION for the TCE capabilities: SPAPR_TCE, SPAPR_TCE_64,
 *   SPAPR_TCE_VFIO, SPAPR_MULTITCE, PPC_ENABLE_HCALL → 1.
 * - The hypercall path of a vCPU (kvmppc_pseries_do_hcall): an hcall not enabled for the
 *   VM goes to userspace; an enabled TCE hcall is handled in the kernel unless its handler
 *   says H_TOO_HARD, in which case the vCPU exits to userspace with KVM_EXIT_PAPR_HCALL
 *   (kvm_run.papr_hcall {nr, ret, args[9]}); userspace puts the result in `ret` and the
 *   next KVM_RUN hands it to the guest in r3. Under the "5.18" era the real-mode handler
 *   (book3s_64_vio_hv.ts) runs first, its H_TOO_HARD falling to virtual mode.
 *
 * Model-specific (documented, not Linux): there is no POWER CPU, so a guest "runs" the
 * hypercalls it was given (`queueHcall`, from the kernel facade); KVM_RUN processes them in
 * order and returns -EINTR with KVM_EXIT_INTR when the guest has nothing left to do (as
 * if the VMM thread had been signalled), or 0 with KVM_EXIT_PAPR_HCALL on an exit. `run`
 * stands for the mmapped struct kvm_run.
 */
import { err } from "../../uapi/errno.js";
import * as K from "../../uapi/kvm.js";
import {
  H_GET_TCE,
  H_PUT_TCE,
  H_PUT_TCE_INDIRECT,
  H_STUFF_TCE,
  H_TOO_HARD,
  MAX_HCALL_OPCODE,
} from "../../uapi/papr.js";
import type { HcallCostTable } from "../../machine/hw.js";
import type { PageAllocator } from "../core/page_alloc.js";
import type { Task } from "../core/task.js";
import type { IommuGroup } from "../iommu/iommu.js";
import { Book3sVio } from "./book3s_64_vio.js";
import { Book3sVioRm } from "./book3s_64_vio_hv.js";
import type { Kvm } from "./kvm_main.js";

/** Which kernel's TCE path: 6.12 (virtual mode, then userspace) or 5.18 (real mode first). */
export type PpcTceEra = "6.12" | "5.18";

/** Where one hypercall was finished. */
export type HcallMode = "real" | "virtual" | "user";

export interface PpcHcallRecord {
  nr: number;
  args: bigint[];
  /** Where it was finished, and its return code as the guest saw it. */
  mode: HcallMode;
  ret: number;
  /** Guest TCEs it covered (npages for the multi-TCE calls, else 1). */
  tces: number;
  /** Modes that answered H_TOO_HARD before. */
  punted: HcallMode[];
  /** Simulated ns (the machine's hcall cost table; 0 without one). */
  ns: number;
}

/** struct kvm_run, the parts a POWER exit fills. */
export interface PpcKvmRun {
  exit_reason: number;
  papr_hcall: { nr: bigint; ret: bigint; args: bigint[] };
}

/** A POWER vCPU's state (struct kvm_vcpu_arch, reduced). */
export interface PpcVcpu {
  readonly kvm: Kvm;
  run: PpcKvmRun;
  /** Hypercalls the guest will make, in order (the model's guest program). */
  readonly pending: { nr: number; args: bigint[] }[];
  /** vcpu->arch.hcall_needed: an hcall is out with userspace. */
  hcallNeeded: { nr: number; args: bigint[]; punted: HcallMode[] } | null;
  readonly done: PpcHcallRecord[];
  /** r4 of the last H_GET_TCE. */
  gpr4: bigint;
}

/** default_hcall_list (the TCE part; H_REMOVE, H_ENTER, H_CEDE and the rest are not modelled). */
const DEFAULT_HCALLS = [H_GET_TCE, H_PUT_TCE];
const IMPLEMENTED = new Set([H_GET_TCE, H_PUT_TCE, H_PUT_TCE_INDIRECT, H_STUFF_TCE]);
const CAPS = new Set([
  K.KVM_CAP_SPAPR_TCE,
  K.KVM_CAP_SPAPR_TCE_64,
  K.KVM_CAP_SPAPR_TCE_VFIO,
  K.KVM_CAP_SPAPR_MULTITCE,
  K.KVM_CAP_PPC_ENABLE_HCALL,
]);

export class Book3sHv {
  readonly vio: Book3sVio;
  readonly rm: Book3sVioRm;
  private readonly enabled = new WeakMap<Kvm, Set<number>>();
  private readonly vcpus = new WeakMap<object, PpcVcpu>();

  constructor(
    pages: PageAllocator,
    readonly era: PpcTceEra,
    private readonly costs: HcallCostTable | null = null,
  ) {
    this.vio = new Book3sVio(pages);
    this.rm = new Book3sVioRm(this.vio);
  }

  private hcalls(kvm: Kvm): Set<number> {
    let s = this.enabled.get(kvm);
    if (!s) {
      s = new Set(DEFAULT_HCALLS);
      this.enabled.set(kvm, s);
    }
    return s;
  }

  /** The POWER answers of KVM_CHECK_EXTENSION (null: not a POWER capability). */
  checkExtension(ext: bigint): number | null {
    return CAPS.has(Number(ext)) ? 1 : null;
  }

  /** kvm_arch_vm_ioctl() for POWER's requests; null when the request is not one of them. */
  vmIoctl(kvm: Kvm, task: Task, cmd: number, arg: bigint): number | null {
    switch (cmd) {
      case K.KVM_CREATE_SPAPR_TCE_64: {
        const raw = task.mm.copyFromUser(arg, K.kvm_create_spapr_tce_64.size);
        if (!raw) return err("EFAULT");
        const a = K.kvm_create_spapr_tce_64.decode(raw);
        if (a.flags) return err("EINVAL");
        return this.vio.create(kvm, task, a);
      }
      case K.KVM_ENABLE_CAP: {
        const raw = task.mm.copyFromUser(arg, K.kvm_enable_cap.size);
        if (!raw) return err("EFAULT");
        const c = K.kvm_enable_cap.decode(raw);
        if (c.flags) return err("EINVAL");
        if (c.cap !== K.KVM_CAP_PPC_ENABLE_HCALL) return err("EINVAL");
        const hcall = c.arg0;
        if (hcall > BigInt(MAX_HCALL_OPCODE) || hcall & 3n || c.arg1 > 1n) return err("EINVAL");
        if (!IMPLEMENTED.has(Number(hcall))) return err("EINVAL");
        if (c.arg1) this.hcalls(kvm).add(Number(hcall));
        else this.hcalls(kvm).delete(Number(hcall));
        return 0;
      }
      default:
        return null;
    }
  }

  /** kvm-vfio's SET_SPAPR_TCE and release hooks. */
  attachIommuGroup(kvm: Kvm, task: Task, tablefd: number, group: IommuGroup): number {
    return this.vio.attachIommuGroup(kvm, task, tablefd, group);
  }
  releaseIommuGroup(kvm: Kvm, group: IommuGroup): void {
    this.vio.releaseIommuGroup(kvm, group);
  }

  vcpu(key: { kvm: Kvm }): PpcVcpu {
    let v = this.vcpus.get(key);
    if (!v) {
      v = {
        kvm: key.kvm,
        run: { exit_reason: 0, papr_hcall: { nr: 0n, ret: 0n, args: [] } },
        pending: [],
        hcallNeeded: null,
        done: [],
        gpr4: 0n,
      };
      this.vcpus.set(key, v);
    }
    return v;
  }

  /** Model-specific: the guest will execute `sc 1` with r3 = nr, r4.. = args. */
  queueHcall(key: { kvm: Kvm }, nr: number, args: bigint[]): void {
    this.vcpu(key).pending.push({ nr, args });
  }

  /**
   * The simulated time of one hypercall: its round trip where it finished, each guest TCE
   * (a hardware update in the kernel; one VFIO map/unmap ioctl from the VMM), and the
   * real-mode attempt of a punted one.
   */
  private price(mode: HcallMode, tces: number, punted: HcallMode[]): number {
    const c = this.costs;
    if (!c) return 0;
    const trip =
      mode === "real"
        ? c.hcallRealMode
        : mode === "virtual"
          ? c.hcallVirtualMode
          : c.hcallUserspace;
    const per = mode === "user" ? c.tceInUserspace : c.tceInKernel;
    return trip + tces * per + (punted.includes("real") ? c.realModePunt : 0);
  }

  /** One TCE hypercall in one mode; H_TOO_HARD punts. */
  private handle(v: PpcVcpu, mode: "real" | "virtual", nr: number, a: bigint[]): number {
    const kvm = v.kvm;
    const x = (i: number) => a[i] ?? 0n;
    const h = mode === "real" ? this.rm : this.vio;
    switch (nr) {
      case H_PUT_TCE:
        return h.hPutTce(kvm, x(0), x(1), x(2));
      case H_PUT_TCE_INDIRECT:
        return h.hPutTceIndirect(kvm, x(0), x(1), x(2), x(3));
      case H_STUFF_TCE:
        return h.hStuffTce(kvm, x(0), x(1), x(2), x(3));
      case H_GET_TCE: {
        const [ret, r4] = this.vio.hGetTce(kvm, x(0), x(1));
        if (ret !== H_TOO_HARD) v.gpr4 = r4;
        return ret;
      }
      default:
        return H_TOO_HARD;
    }
  }

  /** kvmppc_vcpu_run_hv() for the model's guest: returns 0 (exit to userspace) or -EINTR. */
  run(key: { kvm: Kvm }): number {
    const v = this.vcpu(key);
    const tcesOf = (nr: number, a: bigint[]) =>
      nr === H_PUT_TCE_INDIRECT || nr === H_STUFF_TCE ? Number(a[3] ?? 0n) : 1;
    if (v.hcallNeeded) {
      // kvmppc_vcpu_run_hv(): userspace's answer goes to the guest's r3.
      const h = v.hcallNeeded;
      v.done.push({
        nr: h.nr,
        args: h.args,
        mode: "user",
        ret: Number(BigInt.asIntN(64, v.run.papr_hcall.ret)),
        tces: tcesOf(h.nr, h.args),
        punted: h.punted,
        ns: this.price("user", tcesOf(h.nr, h.args), h.punted),
      });
      v.hcallNeeded = null;
    }
    for (;;) {
      const next = v.pending.shift();
      if (!next) {
        v.run.exit_reason = K.KVM_EXIT_INTR;
        return err("EINTR");
      }
      const punted: HcallMode[] = [];
      let ret = H_TOO_HARD;
      let mode: HcallMode = "user";
      if (this.hcalls(v.kvm).has(next.nr)) {
        if (this.era === "5.18") {
          ret = this.handle(v, "real", next.nr, next.args);
          mode = "real";
          if (ret === H_TOO_HARD) punted.push("real");
        }
        if (ret === H_TOO_HARD) {
          ret = this.handle(v, "virtual", next.nr, next.args);
          mode = "virtual";
          if (ret === H_TOO_HARD) punted.push("virtual");
        }
      }
      if (ret !== H_TOO_HARD) {
        v.done.push({
          nr: next.nr,
          args: next.args,
          mode,
          ret,
          tces: tcesOf(next.nr, next.args),
          punted,
          ns: this.price(mode, tcesOf(next.nr, next.args), punted),
        });
        continue;
      }
      // RESUME_HOST: KVM_EXIT_PAPR_HCALL
      v.hcallNeeded = { nr: next.nr, args: next.args, punted };
      v.run.exit_reason = K.KVM_EXIT_PAPR_HCALL;
      const args = [...next.args];
      while (args.length < 9) args.push(0n);
      v.run.papr_hcall = { nr: BigInt(next.nr), ret: 0n, args };
      return 0;
    }
  }
}
