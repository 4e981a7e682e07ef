/**
 * sPAPR TCE throughput: guest TCE entries processed per second through
 * H_PUT_TCE_INDIRECT (512 entries a call, then H_STUFF_TCE clearing them) in each handling
 * mode — by the VMM after an exit (userspace), by KVM's virtual-mode handlers (6.12), by
 * the real-mode handlers (5.18). Two figures per mode: how fast the model runs it (wall
 * clock, tinybench) and the simulated rate the cost table gives (machine/costs.ts,
 * DEFAULT_HCALL_COSTS; "assumed" numbers, so orders of magnitude).
 */
import { join } from "node:path";
import { Bench } from "tinybench";
import { loadHost } from "../src/host/load.js";
import type { Kernel } from "../src/kernel/kernel.js";
import { toPowerpc } from "../src/uapi/ioctl.js";
import * as K from "../src/uapi/kvm.js";
import { H_PUT_TCE_INDIRECT, H_STUFF_TCE } from "../src/uapi/papr.js";
import type { StructCodec, FieldType, Decoded } from "../src/uapi/struct.js";
import {
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  O_CLOEXEC,
  O_RDWR,
  O_WRONLY,
  PROT_READ,
  PROT_WRITE,
} from "../src/uapi/syscalls.js";
import * as U from "../src/uapi/vfio.js";
import { bootHost } from "../src/userspace/boot.js";
import { SpaprVmm } from "../src/userspace/vmm/spapr.js";

export interface SpaprFigure {
  name: string;
  value: number;
  unit: string;
  target?: string;
  ok?: boolean;
}

const NIC = "0000:01:00.0";
const LIOBN = 0x80000000n;
const RAM = 64 << 20;
const N = 512;

type Sys = ReturnType<Kernel["spawn"]>;
type Mode = "userspace" | "virtual" | "real";

async function setup(mode: Mode): Promise<{ k: Kernel; sys: Sys; vcpu: number; vmm: SpaprVmm }> {
  const host = await loadHost(
    join(import.meta.dirname, "..", "..", "examples", "hosts", "power9.yaml"),
  );
  const k = bootHost(host, "", undefined, mode === "real" ? "5.18" : "6.12");
  const sys = k.spawn();
  const io = (fd: number, cmd: number, arg: bigint | number = 0) =>
    sys.ioctl(fd, toPowerpc(cmd), BigInt(arg));
  const page = () =>
    sys.mmap(0n, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
  const put = <C extends StructCodec<readonly (readonly [string, FieldType])[]>>(
    c: C,
    f: Record<string, number | bigint>,
  ) => {
    const a = page();
    const all = Object.fromEntries(c.fields.map(([n, t]) => [n, t === "u64" ? 0n : 0]));
    sys.poke(a, c.encode({ ...all, argsz: c.size, ...f } as Decoded<C["fields"]>));
    return a;
  };
  const write = (path: string, v: string) => {
    const fd = sys.open(path, O_WRONLY | O_CLOEXEC);
    const a = page();
    sys.poke(a, new TextEncoder().encode(v));
    sys.write(fd, a, v.length);
    sys.close(fd);
  };
  write(`/sys/bus/pci/devices/${NIC}/driver_override`, "vfio-pci");
  write(`/sys/bus/pci/devices/${NIC}/driver/unbind`, NIC);
  write("/sys/bus/pci/drivers_probe", NIC);
  const container = sys.open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
  const gname = String(sys.readlink(`/sys/bus/pci/devices/${NIC}/iommu_group`))
    .split("/")
    .pop();
  const group = sys.open(`/dev/vfio/${gname}`, O_RDWR | O_CLOEXEC);
  const fdArg = page();
  sys.poke(fdArg, new Uint8Array(new Int32Array([container]).buffer));
  io(group, U.VFIO_GROUP_SET_CONTAINER, fdArg);
  io(container, U.VFIO_SET_IOMMU, U.VFIO_SPAPR_TCE_v2_IOMMU);
  const ram = sys.mmap(0n, RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
  io(
    container,
    U.VFIO_IOMMU_SPAPR_REGISTER_MEMORY,
    put(U.vfio_iommu_spapr_register_memory, { vaddr: ram, size: BigInt(RAM) }),
  );
  io(
    container,
    U.VFIO_IOMMU_SPAPR_TCE_REMOVE,
    put(U.vfio_iommu_spapr_tce_remove, { start_addr: 0n }),
  );
  io(
    container,
    U.VFIO_IOMMU_SPAPR_TCE_CREATE,
    put(U.vfio_iommu_spapr_tce_create, { page_shift: 16, window_size: 1n << 30n, levels: 1 }),
  );
  const kvm = sys.open("/dev/kvm", O_RDWR | O_CLOEXEC);
  const vm = io(kvm, K.KVM_CREATE_VM);
  io(
    vm,
    K.KVM_SET_USER_MEMORY_REGION,
    put(K.kvm_userspace_memory_region, {
      slot: 0,
      guest_phys_addr: 0n,
      memory_size: BigInt(RAM),
      userspace_addr: ram,
    }),
  );
  const vcpu = io(vm, K.KVM_CREATE_VCPU);
  for (const h of [H_PUT_TCE_INDIRECT, H_STUFF_TCE])
    io(
      vm,
      K.KVM_ENABLE_CAP,
      put(K.kvm_enable_cap, { cap: K.KVM_CAP_PPC_ENABLE_HCALL, arg0: BigInt(h), arg1: 1n }),
    );
  let tableAddr: bigint | undefined;
  if (mode !== "userspace") {
    const t = io(
      vm,
      K.KVM_CREATE_SPAPR_TCE_64,
      put(K.kvm_create_spapr_tce_64, { liobn: LIOBN, page_shift: 16, offset: 0n, size: 0x4000n }),
    );
    const cd = put(K.kvm_create_device, { type: K.KVM_DEV_TYPE_VFIO });
    io(vm, K.KVM_CREATE_DEVICE, cd);
    const kv = K.kvm_create_device.decode(sys.peek(cd, 12) as Uint8Array).fd;
    const g = page();
    sys.poke(g, new Uint8Array(new Int32Array([group]).buffer));
    io(
      kv,
      K.KVM_SET_DEVICE_ATTR,
      put(K.kvm_device_attr, {
        group: K.KVM_DEV_VFIO_FILE,
        attr: BigInt(K.KVM_DEV_VFIO_FILE_ADD),
        addr: g,
      }),
    );
    const st = put(K.kvm_vfio_spapr_tce, { groupfd: group, tablefd: t });
    io(
      kv,
      K.KVM_SET_DEVICE_ATTR,
      put(K.kvm_device_attr, {
        group: K.KVM_DEV_VFIO_FILE,
        attr: BigInt(K.KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE),
        addr: st,
      }),
    );
    tableAddr = sys.mmap(0n, 0x4000 * 8, PROT_READ | PROT_WRITE, MAP_SHARED, t, 0n);
  }
  // The guest's list: 512 read/write TCEs for guest pages 1 MiB + n * 64 KiB, at gpa 0.
  const list = new Uint8Array(N * 8);
  const dv = new DataView(list.buffer);
  for (let i = 0; i < N; i++) dv.setBigUint64(i * 8, 0x100000n + BigInt(i) * 0x10000n + 3n, false);
  sys.poke(ram, list);
  const vmm = new SpaprVmm(k, sys, {
    ramGpa: 0n,
    ramHva: ram,
    ramSize: BigInt(RAM),
    windows: [
      {
        liobn: LIOBN,
        busOffset: 0n,
        pageShift: 16,
        pages: 0x4000n,
        container,
        ...(tableAddr !== undefined ? { tableAddr } : {}),
      },
    ],
  });
  return { k, sys, vcpu, vmm };
}

function round(e: { k: Kernel; sys: Sys; vcpu: number; vmm: SpaprVmm }): void {
  e.k.power.hcall(e.sys, e.vcpu, H_PUT_TCE_INDIRECT, [LIOBN, 0n, 0n, BigInt(N)]);
  e.k.power.hcall(e.sys, e.vcpu, H_STUFF_TCE, [LIOBN, 0n, 0n, BigInt(N)]);
  if (e.vmm.runGuest(e.vcpu) < 0) throw new Error("KVM_RUN failed");
}

export async function spaprTceThroughput(): Promise<SpaprFigure[]> {
  const out: SpaprFigure[] = [];
  for (const mode of ["userspace", "virtual", "real"] as Mode[]) {
    const env = await setup(mode);
    round(env); // warm: the guest table's pages now exist (real mode needs them)
    const bench = new Bench({ time: 1000, iterations: 5, warmupIterations: 1 });
    bench.add(`H_PUT_TCE_INDIRECT ×${N}, ${mode}`, () => round(env));
    await bench.run();
    const t = bench.tasks[0]?.result as { latency?: { mean: number }; mean?: number } | undefined;
    const ms = t?.latency?.mean ?? t?.mean ?? NaN;
    const recs = env.k.power.hcalls(env.sys, env.vcpu) ?? [];
    const last = recs.filter((r) => r.nr === H_PUT_TCE_INDIRECT).at(-1);
    out.push({
      name: `sPAPR TCEs/s through H_PUT_TCE_INDIRECT, ${mode} (model)`,
      value: N / (ms / 1000),
      unit: "TCE/s",
    });
    if (last)
      out.push({
        name: `sPAPR TCEs/s through H_PUT_TCE_INDIRECT, ${mode} (simulated, ${last.mode})`,
        value: N / (last.ns / 1e9),
        unit: "TCE/s",
      });
  }
  return out;
}
