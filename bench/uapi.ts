/**
 * Speed of the model's uAPI paths, each as the ratio its target is stated in (measured in
 * one run, never asserted by tests):
 * - IOMMU translation (machine.iommu.translate) of a device's DMA address with a warm
 *   IOTLB (the same page again) and a cold one (more pages than the IOTLB holds, in turn):
 *   ns per translation on VT-d and AMD-Vi, and the cold/warm ratio.
 * - type1 MAP_DMA + UNMAP_DMA of one 4 KiB page amid 10^3 and amid 10^6 live mappings,
 *   through the syscall surface: the per-operation time ratio (target ≤ 2: the kernel's
 *   rb-tree makes it logarithmic), and the memory each live mapping costs.
 * - ioctl codec + dispatch through the syscall surface: VFIO_GET_API_VERSION (no
 *   argument) and VFIO_GROUP_GET_STATUS (a struct copied in and out), calls per second
 *   (target ≥ 10^6/s).
 */
import { Bench } from "tinybench";
import { MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE } from "../src/uapi/syscalls.js";
import * as U from "../src/uapi/vfio.js";
import { assigned, EDU, mapArg, unmapArg } from "./assigned.js";

export interface Figure {
  name: string;
  value: number;
  unit: string;
  target?: string;
  ok?: boolean;
}

/** Mean latency (ms) of each task, in the order added. */
async function run(bench: Bench): Promise<number[]> {
  await bench.run();
  return bench.tasks.map((t) => {
    const r = t.result as { latency?: { mean: number }; mean?: number } | undefined;
    return r?.latency?.mean ?? r?.mean ?? NaN;
  });
}

const BASE = 1n << 32n;
const gc = () => (globalThis as { gc?: () => void }).gc?.();

export async function iommuTranslation(): Promise<Figure[]> {
  const out: Figure[] = [];
  for (const [machine, unit] of [
    ["vtd", "dmar0"],
    ["amdvi", "ivhd0"],
  ] as const) {
    const a = assigned(machine);
    // 1 MiB of process memory at IOVA 0x100000, 4 KiB pages: 256 translations to cycle through.
    const buf = a.sys.mmap(
      0n,
      1 << 20,
      PROT_READ | PROT_WRITE,
      MAP_PRIVATE | MAP_ANONYMOUS,
      -1,
      0n,
    );
    for (let off = 0n; off < 1n << 20n; off += 4096n) a.sys.poke(buf + off, new Uint8Array([1]));
    const r = a.sys.ioctl(
      a.container,
      U.VFIO_IOMMU_MAP_DMA,
      a.put(0, mapArg(buf, 0x100000n, 1n << 20n)),
    );
    if (r) throw new Error(`bench: MAP_DMA ${r}`);
    const hw = a.host.machine.iommu;
    const rid = 0x100; // 01:00.0
    const pages = 256;
    const capacity = hw.iotlb(unit).capacity;
    if (capacity * 2 > pages) throw new Error("bench: the IOTLB holds too much for a cold run");
    const check = (iova: bigint, want: string) => {
      const t = hw.translate(unit, 0, rid, iova, true);
      if (!t.ok || t.iotlb !== want)
        throw new Error(`bench: ${unit} ${iova}: ${JSON.stringify(t)}`);
    };
    check(0x100000n, "miss");
    check(0x100000n, "hit");
    const bench = new Bench({ time: 1500, warmupTime: 200 });
    bench
      .add(`${unit} warm`, () => {
        for (let i = 0; i < pages; i++) hw.translate(unit, 0, rid, 0x100000n, true);
      })
      .add(`${unit} cold`, () => {
        for (let i = 0; i < pages; i++)
          hw.translate(unit, 0, rid, 0x100000n + BigInt(i) * 4096n, true);
      });
    const [warm, cold] = (await run(bench)).map((ms) => (ms * 1e6) / pages) as [number, number];
    check(0x100000n + 4096n * 7n, "miss");
    const kind = machine === "vtd" ? "VT-d" : "AMD-Vi";
    out.push(
      { name: `${kind} translation, warm IOTLB (${EDU})`, value: warm, unit: "ns" },
      {
        name: `${kind} translation, cold IOTLB (4-level walk)`,
        value: cold,
        unit: "ns",
      },
      { name: `${kind} translation cold/warm ratio`, value: cold / warm, unit: "×" },
    );
  }
  return out;
}

/** MAP_DMA + UNMAP_DMA of one page amid `live` mappings; and bytes per live mapping. */
async function mapUnmapAmid(live: number): Promise<{ ns: number; bytesPerMapping: number }> {
  gc();
  const before = process.memoryUsage();
  const a = assigned("vtd", `vfio_iommu_type1.dma_entry_limit=${live + 16}`);
  // The same pinned page at `live` IOVAs 8 KiB apart from 4 GiB up, clear of the MSI window
  // (one page of RAM, as many mappings as asked; CAP_IPC_LOCK lifts the locked-memory limit).
  const arg = a.put(0, new Uint8Array(32));
  for (let i = 0; i < live; i++) {
    a.sys.poke(arg, mapArg(a.page, BASE + BigInt(i) * 0x2000n));
    const r = a.sys.ioctl(a.container, U.VFIO_IOMMU_MAP_DMA, arg);
    if (r) throw new Error(`bench: MAP_DMA #${i}: ${r}`);
  }
  gc();
  const after = process.memoryUsage();
  const used = (m: NodeJS.MemoryUsage) => m.heapUsed + m.external;
  const bytesPerMapping = (used(after) - used(before)) / live;
  // The page in the gap in the middle of them all.
  const mid = BASE + BigInt(live >> 1) * 0x2000n + 0x1000n;
  const m = a.put(64, mapArg(a.page, mid));
  const u = a.put(128, unmapArg(mid));
  const once = () => {
    if (a.sys.ioctl(a.container, U.VFIO_IOMMU_MAP_DMA, m)) throw new Error("bench: MAP_DMA failed");
    if (a.sys.ioctl(a.container, U.VFIO_IOMMU_UNMAP_DMA, u))
      throw new Error("bench: UNMAP_DMA failed");
  };
  once();
  const bench = new Bench({ time: 2000, warmupTime: 300 });
  bench.add(`map+unmap amid ${live}`, once);
  const [ms] = (await run(bench)) as [number];
  return { ns: ms * 1e6, bytesPerMapping };
}

export async function type1Scaling(): Promise<Figure[]> {
  const small = await mapUnmapAmid(1000);
  const large = await mapUnmapAmid(1_000_000);
  const ratio = large.ns / small.ns;
  return [
    { name: "type1 MAP_DMA+UNMAP_DMA amid 10^3 mappings", value: small.ns / 1000, unit: "µs" },
    { name: "type1 MAP_DMA+UNMAP_DMA amid 10^6 mappings", value: large.ns / 1000, unit: "µs" },
    {
      name: "type1 map+unmap 10^6/10^3 per-op time ratio",
      value: ratio,
      unit: "×",
      target: "≤ 2",
      ok: ratio <= 2,
    },
    {
      name: "memory per live type1 mapping (10^6 of them)",
      value: large.bytesPerMapping,
      unit: "bytes",
    },
  ];
}

export async function ioctlRate(): Promise<Figure[]> {
  const a = assigned();
  const st = a.put(0, U.vfio_group_status.encode({ argsz: U.vfio_group_status.size, flags: 0 }));
  if (a.sys.ioctl(a.container, U.VFIO_GET_API_VERSION, 0n) !== U.VFIO_API_VERSION)
    throw new Error("bench: GET_API_VERSION");
  if (a.sys.ioctl(a.group, U.VFIO_GROUP_GET_STATUS, st) !== 0)
    throw new Error("bench: GROUP_GET_STATUS");
  const n = 1000;
  const bench = new Bench({ time: 1500, warmupTime: 200 });
  bench
    .add("VFIO_GET_API_VERSION", () => {
      for (let i = 0; i < n; i++) a.sys.ioctl(a.container, U.VFIO_GET_API_VERSION, 0n);
    })
    .add("VFIO_GROUP_GET_STATUS", () => {
      for (let i = 0; i < n; i++) a.sys.ioctl(a.group, U.VFIO_GROUP_GET_STATUS, st);
    });
  const [cheap, struct] = (await run(bench)).map((ms) => (n * 1000) / ms) as [number, number];
  return [
    {
      name: "ioctl VFIO_GET_API_VERSION through the syscall surface",
      value: cheap,
      unit: "calls/s",
      target: "≥ 1e6",
      ok: cheap >= 1e6,
    },
    {
      name: "ioctl VFIO_GROUP_GET_STATUS (struct in and out)",
      value: struct,
      unit: "calls/s",
      target: "≥ 1e6",
      ok: struct >= 1e6,
    },
  ];
}
