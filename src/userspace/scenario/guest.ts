/**
 * Scenario ops for running a guest, as a VMM does it:
 *
 * - `guest`: run a guest program on a vCPU (`vcpu`, an fd name from KVM_CREATE_VCPU) until
 *   it halts. The program is handed to the vCPU through the model's loader (kernel.guest:
 *   the model has no x86 decoder); then the VMM loop issues KVM_RUN and serves each
 *   KVM_EXIT_MMIO from its `mmio` windows — a guest-physical range forwarded to an fd at an
 *   offset (a VFIO device region, as QEMU does for a BAR it traps) with pwrite / pread; an
 *   access outside every window reads all ones and writes nothing. Every syscall is a
 *   result line; the last line is the run's summary, its `out` holding what the guest read
 *   (`reads`, hex per load), the exits and WBINVD counts, the simulated ns, and the memory
 *   type verdict. `cpu` pins the vCPU thread to a host CPU.
 * - `vm_info`: KVM's state for a VM (`vm`, an fd name): the noncoherent DMA count, whether a
 *   guest WBINVD is executed or skipped, the EPT memory-type verdict (debugfs-like).
 *
 * Program items (addresses guest-physical, YAML numbers or hex):
 *   wbinvd | mfence | pause | hlt
 *   { store: A, hex: "..." } | { store: A, u32: V } | { store: A, u64: V } | { store: A, byte: B, len: N }
 *   { load: A, len: N }
 *   { clflush: A } | { clflush: A, len: N }    (every line of the range)
 *   { preempt: CPU }                           (the host migrates the vCPU thread here)
 */
import type { GuestInsn, Kernel } from "../../kernel/kernel.js";
import { KVM_EXIT_HLT, KVM_EXIT_MMIO, KVM_RUN } from "../../uapi/kvm.js";
import type { Syscalls } from "../../uapi/syscalls.js";
import type { Runner } from "../replay/runner.js";
import type { Json } from "../replay/script.js";
import type { Value } from "./schema.js";

export class GuestOpError extends Error {}

/**
 * A process's syscalls, remembering the fd each `as` name was given (the VMM knows the
 * numbers its calls returned; the kernel's guest loader is addressed by fd).
 */
export class NamedFds {
  readonly fds = new Map<string, number>();
  private last = -1;
  readonly syscalls: Syscalls;

  constructor(readonly sys: Syscalls) {
    this.syscalls = new Proxy(sys, {
      get: (target, key) => {
        const v = Reflect.get(target, key) as unknown;
        if (typeof v !== "function") return v;
        return (...args: unknown[]) => {
          const r = (v as (...a: unknown[]) => unknown).apply(target, args);
          if (["open", "dup", "eventfd", "ioctl"].includes(String(key))) this.last = r as number;
          return r;
        };
      },
    });
  }

  /** After a step: bind `as` to the fd its last fd-making call returned. */
  note(as: unknown): void {
    if (typeof as === "string" && this.last >= 0) this.fds.set(as, this.last);
  }

  fd(name: Value | undefined): number {
    const n = typeof name === "string" ? name.replace(/^\$/, "") : "";
    const fd = this.fds.get(n);
    if (fd === undefined) throw new GuestOpError(`"${String(name)}" names no open fd`);
    return fd;
  }
}

const num = (v: Value | undefined, what: string): number => {
  if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) return v;
  if (typeof v === "string" && /^(0x[0-9a-f]+|\d+)$/i.test(v)) return Number(v);
  throw new GuestOpError(`${what}: expected a non-negative integer, got ${JSON.stringify(v)}`);
};

const le = (v: number | bigint, bytes: number): Uint8Array => {
  const out = new Uint8Array(bytes);
  let x = BigInt(v);
  for (let i = 0; i < bytes; i++, x >>= 8n) out[i] = Number(x & 0xffn);
  return out;
};

/** A program as the scenario writes it → the CPU model's instructions. */
export function parseProgram(items: Value | undefined): GuestInsn[] {
  if (!Array.isArray(items) || items.length === 0)
    throw new GuestOpError("program: expected a list of instructions");
  const out: GuestInsn[] = [];
  items.forEach((it, k) => {
    const at = `program[${k}]`;
    if (it === "wbinvd" || it === "mfence" || it === "pause" || it === "hlt") {
      out.push({ op: it });
      return;
    }
    if (!it || typeof it !== "object" || Array.isArray(it))
      throw new GuestOpError(`${at}: expected wbinvd, mfence, pause, hlt or an object`);
    const o = it as Record<string, Value>;
    if ("store" in o) {
      const gpa = num(o.store, `${at}.store`);
      let data: Uint8Array;
      if (typeof o.hex === "string" && /^([0-9a-f]{2})+$/i.test(o.hex))
        data = Uint8Array.from(Buffer.from(o.hex, "hex"));
      else if (o.u32 !== undefined) data = le(num(o.u32, `${at}.u32`), 4);
      else if (o.u64 !== undefined) data = le(BigInt(num(o.u64, `${at}.u64`)), 8);
      else if (o.byte !== undefined)
        data = new Uint8Array(num(o.len, `${at}.len`)).fill(num(o.byte, `${at}.byte`) & 0xff);
      else throw new GuestOpError(`${at}: a store needs hex, u32, u64 or byte + len`);
      out.push({ op: "store", gpa, data });
    } else if ("load" in o) {
      out.push({ op: "load", gpa: num(o.load, `${at}.load`), len: num(o.len, `${at}.len`) });
    } else if ("clflush" in o) {
      const gpa = num(o.clflush, `${at}.clflush`);
      const len = o.len === undefined ? 1 : num(o.len, `${at}.len`);
      for (let a = gpa - (gpa % 64); a < gpa + len; a += 64) out.push({ op: "clflush", gpa: a });
    } else if ("preempt" in o) {
      out.push({ op: "preempt", cpu: num(o.preempt, `${at}.preempt`) });
    } else {
      throw new GuestOpError(`${at}: unknown instruction ${JSON.stringify(Object.keys(o))}`);
    }
  });
  return out;
}

interface MmioWindow {
  gpa: number;
  size: number;
  fd: string;
  offset: number;
}

function windows(v: Value | undefined): MmioWindow[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new GuestOpError("mmio: expected a list of windows");
  return v.map((w, k) => {
    const o = (w ?? {}) as Record<string, Value>;
    if (typeof o.fd !== "string") throw new GuestOpError(`mmio[${k}].fd: expected an fd name`);
    return {
      gpa: num(o.gpa, `mmio[${k}].gpa`),
      size: num(o.size, `mmio[${k}].size`),
      fd: o.fd.startsWith("$") ? o.fd : `$${o.fd}`,
      offset: o.offset === undefined ? 0 : num(o.offset, `mmio[${k}].offset`),
    };
  });
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const MAX_RUNS = 10000;

export interface GuestEnv {
  kernel: Kernel;
  runner: Runner;
  names: NamedFds;
  /** The next result index. */
  seq: () => number;
}

type Sys = Parameters<Kernel["guest"]["load"]>[0];

/** The `guest` op: load, then KVM_RUN until HLT, serving MMIO exits. */
export function runGuest(s: Record<string, Value>, env: GuestEnv): Record<string, Json>[] {
  const { kernel, runner, names } = env;
  const sys = names.sys as Sys;
  const vcpufd = names.fd(s.vcpu);
  const program = parseProgram(s.program);
  const mmio = windows(s.mmio);
  const cpu = s.cpu === undefined ? undefined : num(s.cpu, "cpu");
  const loaded = kernel.guest.load(sys, vcpufd, program, cpu);
  if (loaded === -9) throw new GuestOpError(`"${String(s.vcpu)}" is not a vCPU fd`);
  if (loaded < 0) throw new GuestOpError("cpu / preempt: no such host CPU");
  const statsOf = () => {
    const v = kernel.guest.info(sys, vcpufd);
    if (!v) throw new GuestOpError("the vCPU went away");
    return v.stats;
  };
  const before = statsOf();
  const results: Record<string, Json>[] = [];
  const vcpuRef = `$${String(s.vcpu).replace(/^\$/, "")}`;
  let exit = "none";
  let errno: Json = null;
  for (let n = 0; n < MAX_RUNS; n++) {
    const r = runner.step(
      {
        op: "ioctl",
        line: 0,
        fd: vcpuRef,
        req: "KVM_RUN",
        nr: `0x${KVM_RUN.toString(16)}`,
        arg: 0,
      },
      env.seq(),
    );
    results.push(r);
    if (r.errno !== null) {
      errno = r.errno as Json;
      exit = "error";
      break;
    }
    const run = kernel.guest.run(sys, vcpufd);
    if (!run) throw new GuestOpError("the vCPU went away");
    if (run.exit_reason === KVM_EXIT_HLT) {
      exit = "hlt";
      break;
    }
    if (run.exit_reason !== KVM_EXIT_MMIO) {
      exit = `exit_reason ${run.exit_reason}`;
      break;
    }
    const addr = Number(run.mmio.phys_addr);
    const w = mmio.find((x) => addr >= x.gpa && addr + run.mmio.len <= x.gpa + x.size);
    if (!w) {
      if (!run.mmio.is_write) run.mmio.data.fill(0xff);
      continue;
    }
    const offset = `0x${(w.offset + addr - w.gpa).toString(16)}`;
    if (run.mmio.is_write) {
      const data = hex(run.mmio.data.subarray(0, run.mmio.len));
      results.push(runner.step({ op: "pwrite", line: 0, fd: w.fd, offset, hex: data }, env.seq()));
    } else {
      const r2 = runner.step(
        { op: "pread", line: 0, fd: w.fd, offset, size: run.mmio.len },
        env.seq(),
      );
      results.push(r2);
      run.mmio.data.fill(0xff);
      if (typeof r2.data === "string") run.mmio.data.set(Buffer.from(r2.data, "hex"));
    }
  }
  const after = statsOf();
  const d = (k: keyof typeof after) => (after[k] as number) - (before[k] as number);
  const ex = (k: string) => (after.exits[k] ?? 0) - (before.exits[k] ?? 0);
  const info = kernel.guest.info(sys, vcpufd);
  results.push({
    i: env.seq(),
    op: "guest",
    ret: errno === null ? 0 : -1,
    errno,
    out: {
      exit,
      reads: kernel.guest.reads(sys, vcpufd).map((r) => hex(r.data)),
      wbinvd_exits: ex("wbinvd"),
      wbinvd_executed: d("wbinvdExecuted"),
      wbinvd_skipped: d("wbinvdSkipped"),
      host_wbinvds: d("hostWbinvds"),
      mmio_exits: ex("mmio"),
      ns: Math.round(d("ns")),
      other_cpus_ns: Math.round(d("otherCpusNs")),
      guest_pat: info?.memtype.guestPat ?? null,
    },
  });
  return results;
}

/** The `vm_info` op. */
export function vmInfo(s: Record<string, Value>, env: GuestEnv): Record<string, Json> {
  const sys = env.names.sys as Sys;
  const fd = env.names.fd(s.vm);
  const name = `${sys.task.pid}-${fd}`;
  const v = env.kernel.debug.vms().find((x) => x.name === name);
  if (!v) throw new GuestOpError(`"${String(s.vm)}" is not a VM of this process`);
  return {
    i: env.seq(),
    op: "vm_info",
    ret: 0,
    errno: null,
    out: {
      noncoherent_dma_count: v.noncoherentDmaCount,
      assigned_device_count: v.assignedDeviceCount,
      wbinvd: v.wbinvd,
      guest_pat: v.memtype.guestPat,
      ept_mt_mask: v.memtype.eptMtMask === null ? null : `0x${v.memtype.eptMtMask.toString(16)}`,
      spte_zaps: v.spteZaps,
    },
  };
}
