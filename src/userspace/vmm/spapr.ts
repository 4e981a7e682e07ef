/**
 * The VMM's side of the sPAPR TCE hypercalls, as QEMU does it (hw/ppc/spapr_iommu.c
 * h_put_tce / h_put_tce_indirect / h_stuff_tce / h_get_tce, and the VFIO memory listener
 * hw/vfio/common.c vfio_iommu_map_notify): when KVM exits with KVM_EXIT_PAPR_HCALL, the
 * VMM checks the LIOBN and IOBA against its own window, stores the TCE in the guest table
 * (the kernel's, mmapped from the KVM_CREATE_SPAPR_TCE_64 fd, when it has one), and for a
 * window backed by a VFIO container turns each TCE into VFIO_IOMMU_MAP_DMA of the guest
 * page's host address (R/W from the TCE bits) or VFIO_IOMMU_UNMAP_DMA for a cleared TCE.
 * `runGuest` is the vCPU thread's loop: KVM_RUN until the guest has nothing left to do.
 */
import type { Kernel } from "../../kernel/kernel.js";
import { toPowerpc } from "../../uapi/ioctl.js";
import * as K from "../../uapi/kvm.js";
import {
  H_GET_TCE,
  H_PARAMETER,
  H_PUT_TCE,
  H_PUT_TCE_INDIRECT,
  H_STUFF_TCE,
  H_SUCCESS,
  TCE_PCI_READ,
  TCE_PCI_WRITE,
} from "../../uapi/papr.js";
import { MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from "../../uapi/syscalls.js";
import * as U from "../../uapi/vfio.js";

/** One guest DMA window the VMM emulates (QEMU's SpaprTceTable). */
export interface VmmWindow {
  liobn: bigint;
  /** Bus offset of the window (bytes) and its IOMMU page shift and size in pages. */
  busOffset: bigint;
  pageShift: number;
  pages: bigint;
  /** The VFIO container behind it, if the window belongs to an assigned device. */
  container?: number;
  /** Where the kernel's TCE table is mmapped (null: the VMM keeps its own array). */
  tableAddr?: bigint;
}

type TaskSyscalls = ReturnType<Kernel["spawn"]>;

export interface VmmConfig {
  /** Guest RAM: its guest-physical base and the VMM's address for it. */
  ramGpa: bigint;
  ramHva: bigint;
  ramSize: bigint;
  windows: VmmWindow[];
}

/** What the VMM did, for reports: exits handled and the syscalls they cost. */
export interface VmmStats {
  exits: number;
  tces: number;
  vfioIoctls: number;
  kvmRuns: number;
}

export class SpaprVmm {
  readonly stats: VmmStats = { exits: 0, tces: 0, vfioIoctls: 0, kvmRuns: 0 };
  private readonly own = new Map<bigint, Map<bigint, bigint>>();
  private scratch = 0n;

  constructor(
    private readonly kernel: Kernel,
    private readonly sys: TaskSyscalls,
    readonly config: VmmConfig,
  ) {}

  private hva(gpa: bigint): bigint | null {
    const c = this.config;
    if (gpa < c.ramGpa || gpa >= c.ramGpa + c.ramSize) return null;
    return c.ramHva + (gpa - c.ramGpa);
  }

  private buf(): bigint {
    if (!this.scratch) {
      this.scratch = this.sys.mmap(
        0n,
        4096,
        PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANONYMOUS,
        -1,
        0n,
      );
    }
    return this.scratch;
  }

  private ioctl(fd: number, cmd: number, arg: bigint): number {
    return this.sys.ioctl(fd, this.sys.ioctlLayout === "powerpc" ? toPowerpc(cmd) : cmd, arg);
  }

  /** spapr_tce_set_entry() + the IOMMU notifier → VFIO. */
  private putTce(w: VmmWindow, ioba: bigint, tce: bigint): number {
    const page = 1n << BigInt(w.pageShift);
    if (ioba % page) return H_PARAMETER;
    const idx = (ioba - w.busOffset) / page;
    if (ioba < w.busOffset || idx >= w.pages) return H_PARAMETER;
    if (w.tableAddr !== undefined) {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigUint64(0, tce, true);
      this.sys.poke(w.tableAddr + idx * 8n, b);
    } else {
      let t = this.own.get(w.liobn);
      if (!t) this.own.set(w.liobn, (t = new Map()));
      t.set(idx, tce);
    }
    this.stats.tces++;
    if (w.container === undefined) return H_SUCCESS;
    const perm = Number(tce & BigInt(TCE_PCI_READ | TCE_PCI_WRITE));
    const a = this.buf();
    if (perm) {
      const hva = this.hva(tce & ~(page - 1n));
      if (hva === null) return H_PARAMETER;
      const S = U.vfio_iommu_type1_dma_map;
      this.sys.poke(
        a,
        S.encode({ argsz: S.size, flags: perm, vaddr: hva, iova: ioba, size: page }),
      );
      this.stats.vfioIoctls++;
      return this.ioctl(w.container, U.VFIO_IOMMU_MAP_DMA, a) < 0 ? H_PARAMETER : H_SUCCESS;
    }
    const S = U.vfio_iommu_type1_dma_unmap;
    this.sys.poke(a, S.encode({ argsz: S.size, flags: 0, iova: ioba, size: page }));
    this.stats.vfioIoctls++;
    this.ioctl(w.container, U.VFIO_IOMMU_UNMAP_DMA, a);
    return H_SUCCESS;
  }

  private getTce(w: VmmWindow, ioba: bigint): bigint {
    const idx = (ioba - w.busOffset) >> BigInt(w.pageShift);
    if (w.tableAddr !== undefined) {
      const b = this.sys.peek(w.tableAddr + idx * 8n, 8);
      return b ? new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true) : 0n;
    }
    return this.own.get(w.liobn)?.get(idx) ?? 0n;
  }

  /** Handle one KVM_EXIT_PAPR_HCALL; the result goes to run.papr_hcall.ret. */
  handle(nr: number, args: bigint[]): number {
    const a = (i: number) => args[i] ?? 0n;
    const w = this.config.windows.find((x) => x.liobn === a(0));
    if (!w) return H_PARAMETER;
    switch (nr) {
      case H_PUT_TCE:
        return this.putTce(w, a(1), a(2));
      case H_PUT_TCE_INDIRECT: {
        if (a(3) > 512n || a(2) & 0xfffn) return H_PARAMETER;
        const hva = this.hva(a(2));
        if (hva === null) return H_PARAMETER;
        const raw = this.sys.peek(hva, Number(a(3)) * 8);
        if (!raw) return H_PARAMETER;
        const dv = new DataView(raw.buffer, raw.byteOffset, raw.length);
        let ret = H_SUCCESS;
        for (let i = 0; i < Number(a(3)) && ret === H_SUCCESS; i++)
          ret = this.putTce(
            w,
            a(1) + (BigInt(i) << BigInt(w.pageShift)),
            dv.getBigUint64(i * 8, false),
          );
        return ret;
      }
      case H_STUFF_TCE: {
        let ret = H_SUCCESS;
        for (let i = 0n; i < a(3) && ret === H_SUCCESS; i++)
          ret = this.putTce(w, a(1) + (i << BigInt(w.pageShift)), a(2));
        return ret;
      }
      case H_GET_TCE:
        this.getTce(w, a(1));
        return H_SUCCESS;
      default:
        return H_PARAMETER;
    }
  }

  /** The vCPU loop: KVM_RUN, handle PAPR hcall exits, until KVM_RUN says EINTR. */
  runGuest(vcpufd: number): number {
    for (let i = 0; i < 100000; i++) {
      const r = this.ioctl(vcpufd, K.KVM_RUN, 0n);
      this.stats.kvmRuns++;
      if (r < 0) return r === -4 ? 0 : r;
      const run = this.kernel.power.run(this.sys, vcpufd);
      if (!run || run.exit_reason !== K.KVM_EXIT_PAPR_HCALL) return -22;
      this.stats.exits++;
      const ret = this.handle(Number(run.papr_hcall.nr), run.papr_hcall.args);
      run.papr_hcall.ret = BigInt.asUintN(64, BigInt(ret));
    }
    return -11;
  }
}
