/**
 * A vCPU and KVM_RUN: virt/kvm/kvm_main.c (kvm_vcpu_ioctl), arch/x86/kvm/x86.c
 * (kvm_arch_vcpu_ioctl_run, vcpu_enter_guest, complete_emulated_mmio, kvm_emulate_halt),
 * vmx/vmx.c and svm/svm.c exit handlers, mmu/ (the two-dimensional page fault), Linux 6.12.
 *
 * KVM_RUN (argument 0, else EINVAL) loads the vCPU on the host CPU its thread runs on
 * (kvm_arch_vcpu_load: with noncoherent DMA registered that CPU joins wbinvd_dirty_mask)
 * and enters the guest until an exit KVM cannot finish in the kernel:
 *
 * | exit (VMX / SVM)                    | KVM                                          | to userspace   |
 * |-------------------------------------|----------------------------------------------|----------------|
 * | WBINVD (54 / 0x89)                  | kvm_emulate_wbinvd: NOP, or flush the mask   | no             |
 * | EPT violation / NPF without memory  | emulate the access as MMIO, 8 bytes at a time| KVM_EXIT_MMIO  |
 * | HLT (12 / 0x78), no in-kernel LAPIC | kvm_emulate_halt                             | KVM_EXIT_HLT   |
 * | external interrupt (1 / 0x60)       | the host runs; its scheduler may migrate the | no             |
 * |                                     | thread (vcpu_put, then vcpu_load elsewhere)  |                |
 *
 * An MMIO read completes on the next KVM_RUN with the data userspace put in kvm_run.
 * Guest RAM is what KVM_SET_USER_MEMORY_REGION gave: a guest-physical page is backed by
 * the page at the slot's userspace address in the VM creator's memory, faulted in on
 * first touch (the TDP MMU's page fault, reduced: no EPT tables are built; a lookup
 * stands for them, dropped whenever KVM zaps its SPTEs). A write to a read-only slot is
 * MMIO; a slot whose host page cannot be faulted in fails KVM_RUN with EFAULT.
 *
 * Model-specific (documented, not Linux): there is no x86 decoder, so the guest does not
 * fetch code from its memory. `load()` hands the vCPU a program of hw.ts GuestInsn, run by
 * the CPU model from its first instruction at the next KVM_RUN; a vCPU without one exits
 * with KVM_EXIT_INTERNAL_ERROR (emulation failure). Userspace sees `struct kvm_run` through
 * `run` (the model cannot mmap the vCPU fd), and `threadCpu` is where the scheduler runs
 * the vCPU thread (what sched_setaffinity would decide).
 */
import {
  PAGE_SHIFT,
  PAGE_SIZE,
  type CpuHw,
  type GuestContext,
  type GuestInsn,
} from "../../machine/hw.js";
import { err } from "../../uapi/errno.js";
import * as K from "../../uapi/kvm.js";
import type { Kvm } from "./kvm_main.js";
import {
  kvmArchVcpuLoad,
  kvmEmulateWbinvd,
  KvmVcpuArch,
  memoryType,
  type MemoryTypeVerdict,
} from "./x86.js";

/** KVM_INTERNAL_ERROR_EMULATION */
export const KVM_INTERNAL_ERROR_EMULATION = 1;

/** The parts of struct kvm_run the model fills. */
export interface KvmRun {
  exit_reason: number;
  mmio: { phys_addr: bigint; data: Uint8Array; len: number; is_write: number };
  internal: { suberror: number };
}

export interface VcpuStats {
  /** KVM_RUN calls that entered the guest. */
  runs: number;
  /** VM exits by reason: wbinvd, mmio, hlt, external-interrupt. */
  exits: Record<string, number>;
  /** Guest WBINVDs KVM executed on host CPUs, and those it skipped as a NOP. */
  wbinvdExecuted: number;
  wbinvdSkipped: number;
  /** Host CPUs WBINVD ran on for the guest (one per CPU per executed WBINVD). */
  hostWbinvds: number;
  /** Simulated ns on the CPU(s) the vCPU ran on, and on the other CPUs it disturbed. */
  ns: number;
  otherCpusNs: number;
}

interface PendingMmio {
  write: boolean;
  gpa: number;
  len: number;
  data: Uint8Array;
  /** The 8-byte fragment userspace is handling. */
  frag: number;
}

/** struct kvm_vcpu */
export class KvmVcpu {
  readonly arch = new KvmVcpuArch();
  /** vcpu->cpu: the host CPU it last ran on, -1 before its first run. */
  cpu = -1;
  /** Model: the host CPU the vCPU thread runs on at its next KVM_RUN. */
  threadCpu = 0;
  /** Model: the guest program and its architectural state. */
  ctx: GuestContext | null = null;
  readonly run: KvmRun = {
    exit_reason: K.KVM_EXIT_UNKNOWN,
    mmio: { phys_addr: 0n, data: new Uint8Array(8), len: 0, is_write: 0 },
    internal: { suberror: 0 },
  };
  readonly stats: VcpuStats = {
    runs: 0,
    exits: {},
    wbinvdExecuted: 0,
    wbinvdSkipped: 0,
    hostWbinvds: 0,
    ns: 0,
    otherCpusNs: 0,
  };
  private pending: PendingMmio | null = null;

  constructor(
    readonly kvm: Kvm,
    readonly id: number,
  ) {}

  /** Model-specific loader: the program the guest runs from its first instruction. */
  load(program: GuestInsn[]): void {
    this.pending = null;
    this.ctx = {
      program,
      rip: 0,
      reads: [],
      wbinvdExiting: true,
      translate: (gpa, write) => kvmTranslate(this.kvm, gpa, write),
    };
  }

  memoryType(): MemoryTypeVerdict {
    return memoryType(this.kvm.arch);
  }

  private exit(reason: string): void {
    this.stats.exits[reason] = (this.stats.exits[reason] ?? 0) + 1;
  }

  /** Present the current 8-byte fragment of a pending MMIO access in kvm_run. */
  private mmioExit(p: PendingMmio): number {
    const off = p.frag * 8;
    const len = Math.min(8, p.len - off);
    const m = this.run.mmio;
    this.run.exit_reason = K.KVM_EXIT_MMIO;
    m.phys_addr = BigInt(p.gpa + off);
    m.len = len;
    m.is_write = p.write ? 1 : 0;
    m.data = new Uint8Array(8);
    if (p.write) m.data.set(p.data.subarray(off, off + len));
    return 0;
  }

  /** kvm_arch_vcpu_ioctl_run() */
  ioctlRun(hw: CpuHw, arg: bigint): number {
    if (arg) return err("EINVAL");
    const ctx = this.ctx;
    if (!ctx) {
      this.run.exit_reason = K.KVM_EXIT_INTERNAL_ERROR;
      this.run.internal.suberror = KVM_INTERNAL_ERROR_EMULATION;
      return 0;
    }
    const before = totalClock(hw);
    let cpu = this.threadCpu;
    let mark = hw.clock(cpu);
    let mine = 0;
    const load = (c: number) => {
      kvmArchVcpuLoad(hw, this.kvm.arch, this.arch, this.cpu, c);
      this.cpu = c;
    };
    load(cpu); // vcpu_load()
    try {
      // complete_emulated_mmio(): the fragment userspace handled; more, or finish the insn.
      const p = this.pending;
      if (p) {
        const off = p.frag * 8;
        if (!p.write) p.data.set(this.run.mmio.data.subarray(0, Math.min(8, p.len - off)), off);
        p.frag++;
        if (p.frag * 8 < p.len) return this.mmioExit(p);
        this.pending = null;
        if (!p.write) ctx.reads.push({ gpa: p.gpa, data: p.data });
        ctx.rip++;
      }
      this.stats.runs++;
      for (;;) {
        const e = hw.enterGuest(cpu, ctx);
        this.exit(e.reason);
        switch (e.reason) {
          case "wbinvd": {
            const flushed = kvmEmulateWbinvd(hw, this.kvm.arch, this.arch, cpu);
            if (flushed.length) this.stats.wbinvdExecuted++;
            else this.stats.wbinvdSkipped++;
            this.stats.hostWbinvds += flushed.length;
            ctx.rip++; // kvm_skip_emulated_instruction()
            break;
          }
          case "external-interrupt":
            // The host handles its interrupt; the scheduler moves the thread (vcpu_put/load).
            mine += hw.clock(cpu) - mark;
            cpu = e.moveTo;
            this.threadCpu = cpu;
            mark = hw.clock(cpu);
            load(cpu);
            break;
          case "hlt":
            ctx.rip++;
            this.run.exit_reason = K.KVM_EXIT_HLT;
            return 0;
          case "mmio": {
            this.pending = {
              write: e.write,
              gpa: e.gpa,
              len: e.len,
              data: e.data ? e.data.slice() : new Uint8Array(e.len),
              frag: 0,
            };
            return this.mmioExit(this.pending);
          }
          case "fault":
            return err("EFAULT");
        }
      }
    } finally {
      mine += hw.clock(cpu) - mark;
      this.stats.ns += mine;
      this.stats.otherCpusNs += totalClock(hw) - before - mine;
    }
  }
}

function totalClock(hw: CpuHw): number {
  let t = 0;
  for (let c = 0; c < hw.count; c++) t += hw.clock(c);
  return t;
}

/**
 * The two-dimensional page fault, reduced: the host physical address behind a guest-
 * physical one. null: no memslot (or a write to a read-only one) — MMIO; "fault": the
 * slot's host page cannot be faulted in.
 */
export function kvmTranslate(kvm: Kvm, gpa: number, write: boolean): number | null | "fault" {
  const gfn = Math.floor(gpa / PAGE_SIZE);
  const off = gpa % PAGE_SIZE;
  const slot = kvm.memslotOf(gfn);
  if (!slot) return null;
  if (write && slot.flags & K.KVM_MEM_READONLY) return null;
  let pfn = kvm.sptes.get(gfn);
  if (pfn === undefined) {
    const hva = slot.userspaceAddr + (BigInt(gfn - slot.baseGfn) << BigInt(PAGE_SHIFT));
    const pinned = kvm.mm.pin(hva, 1, true);
    if (!pinned) return "fault";
    pfn = pinned[0] as number;
    kvm.sptes.set(gfn, pfn);
  }
  return pfn * PAGE_SIZE + off;
}
