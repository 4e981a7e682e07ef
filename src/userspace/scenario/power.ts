/**
 * Scenario ops for a POWER guest's DMA through TCE hypercalls (model-specific; the model
 * has no POWER CPU, so the guest's `sc 1` is given to the vCPU through the kernel's
 * facade, kernel.power):
 *
 * - `spapr_vmm`: set up the VMM's sPAPR IOMMU (userspace/vmm/spapr.ts) in this process:
 *   `ram` (a buffer name: guest RAM, registered with KVM as guest-physical `gpa`, default
 *   0), `windows`: [{ liobn, offset (bus address, bytes), page_shift, pages, container
 *   (fd name: a VFIO container behind the window), table (fd name: a
 *   KVM_CREATE_SPAPR_TCE_64 table the VMM mmaps and keeps, as QEMU does) }].
 * - `hcall`: the guest on `vcpu` makes hypercall `nr` (a name like H_PUT_TCE_INDIRECT, or
 *   a number) with `args` (r4..; numbers, "0x..", "$name[+off]"); `list` first writes a TCE
 *   list into guest memory the way the guest would: { offset (in `ram`, = its gpa when
 *   ram is at gpa 0), tces: [...] } or { offset, first, step, count } (big-endian, as
 *   PAPR requires). Then the VMM's vCPU loop runs (KVM_RUN, serving KVM_EXIT_PAPR_HCALL
 *   exits) until the guest is done. The result's `ret` is the guest's r3; `out` says where
 *   the hcall was handled (`mode`: real, virtual or user; `punted`: modes that gave up
 *   first), the exits, KVM_RUN calls and VFIO ioctls it cost, and the simulated ns
 *   (priced by the kernel with the machine's hcall cost table, machine/costs.ts).
 */
import type { Kernel } from "../../kernel/kernel.js";
import { CONSTANTS } from "../../uapi/names.js";
import type { Runner } from "../replay/runner.js";
import type { Json } from "../replay/script.js";
import { SpaprVmm, type VmmWindow } from "../vmm/spapr.js";
import type { NamedFds } from "./guest.js";
import type { Value } from "./schema.js";
import { MAP_SHARED, PROT_READ, PROT_WRITE } from "../../uapi/syscalls.js";

export class PowerOpError extends Error {}

interface Env {
  kernel: Kernel;
  runner: Runner;
  names: NamedFds;
  vmms: Map<NamedFds, SpaprVmm>;
}

type Sys = ReturnType<Kernel["spawn"]>;

const big = (runner: Runner, v: Value | undefined, what: string): bigint => {
  if (v === undefined || v === null) throw new PowerOpError(`${what} is missing`);
  if (typeof v === "string" && CONSTANTS.has(v)) return BigInt(CONSTANTS.get(v) as number);
  try {
    return runner.resolve(v as Json);
  } catch (e) {
    throw new PowerOpError(`${what}: ${(e as Error).message}`);
  }
};

export function runPowerOp(op: string, s: Record<string, Value>, env: Env): Record<string, Json> {
  const sys = env.names.syscalls as unknown as Sys;
  if (op === "spapr_vmm") {
    const ram = big(env.runner, s.ram, "ram");
    const windows: VmmWindow[] = ((s.windows as Value[] | undefined) ?? []).map((w) => {
      const o = w as Record<string, Value>;
      const win: VmmWindow = {
        liobn: big(env.runner, o.liobn, "liobn"),
        busOffset: big(env.runner, o.offset ?? 0, "offset"),
        pageShift: Number(big(env.runner, o.page_shift ?? 12, "page_shift")),
        pages: big(env.runner, o.pages, "pages"),
      };
      if (o.container !== undefined) win.container = env.names.fd(o.container);
      if (o.table !== undefined) {
        const len = Number(win.pages * 8n);
        const a = sys.mmap(0n, len, PROT_READ | PROT_WRITE, MAP_SHARED, env.names.fd(o.table), 0n);
        if (a < 0n) throw new PowerOpError(`mmap of the TCE table failed (${a})`);
        win.tableAddr = a;
      }
      return win;
    });
    env.vmms.set(
      env.names,
      new SpaprVmm(env.kernel, sys, {
        ramGpa: big(env.runner, s.gpa ?? 0, "gpa"),
        ramHva: ram,
        ramSize: big(env.runner, s.size, "size"),
        windows,
      }),
    );
    return { op, ret: 0, errno: null };
  }
  // hcall
  const vmm = env.vmms.get(env.names);
  if (!vmm) throw new PowerOpError("no spapr_vmm step for this process yet");
  const vcpu = env.names.fd(s.vcpu);
  const nr = Number(big(env.runner, s.nr, "nr"));
  const args = ((s.args as Value[] | undefined) ?? []).map((a, i) =>
    big(env.runner, a, `args[${i}]`),
  );
  const list = s.list as Record<string, Value> | undefined;
  if (list) {
    const tces =
      list.tces !== undefined
        ? (list.tces as Value[]).map((t, i) => big(env.runner, t, `list.tces[${i}]`))
        : Array.from(
            { length: Number(big(env.runner, list.count, "list.count")) },
            (_, i) =>
              big(env.runner, list.first, "list.first") +
              BigInt(i) * big(env.runner, list.step ?? 0, "list.step"),
          );
    const b = new Uint8Array(tces.length * 8);
    const dv = new DataView(b.buffer);
    tces.forEach((t, i) => dv.setBigUint64(i * 8, BigInt.asUintN(64, t), false));
    const at = vmm.config.ramHva + big(env.runner, list.offset ?? 0, "list.offset");
    if (!sys.poke(at, b)) throw new PowerOpError("the TCE list does not fit in guest RAM");
  }
  const before = { ...vmm.stats };
  const q = env.kernel.power.hcall(sys as never, vcpu, nr, args);
  if (q < 0) return { op, ret: -1, errno: "EBADF" };
  const r = vmm.runGuest(vcpu);
  const done = env.kernel.power.hcalls(sys as never, vcpu) ?? [];
  const rec = done[done.length - 1];
  if (r < 0 || !rec) return { op, ret: -1, errno: `KVM_RUN ${r}` };
  return {
    op,
    ret: rec.ret,
    errno: null,
    out: {
      mode: rec.mode,
      punted: rec.punted,
      tces: rec.tces,
      exits: vmm.stats.exits - before.exits,
      kvm_runs: vmm.stats.kvmRuns - before.kvmRuns,
      vfio_ioctls: vmm.stats.vfioIoctls - before.vfioIoctls,
      ns: rec.ns,
    },
  };
}
