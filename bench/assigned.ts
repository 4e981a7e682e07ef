/**
 * What the uAPI benchmarks start from: the fuzz machine (src/userspace/fuzz/host.ts) with
 * QEMU's edu at 0000:01:00.0 bound to vfio-pci, its group in a type1v2 container, and a
 * process whose argument memory is mapped and touched, so that the timed calls allocate
 * nothing for userspace.
 */
import type { Host } from "../src/host/build.js";
import type { Kernel } from "../src/kernel/kernel.js";
import {
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  O_CLOEXEC,
  O_RDWR,
  O_WRONLY,
  PROT_READ,
  PROT_WRITE,
} from "../src/uapi/syscalls.js";
import * as U from "../src/uapi/vfio.js";
import { bootFuzz, type FuzzMachine } from "../src/userspace/fuzz/host.js";

export const EDU = "0000:01:00.0";

export interface Assigned {
  kernel: Kernel;
  host: Host;
  sys: ReturnType<Kernel["spawn"]>;
  container: number;
  group: number;
  /** Argument memory: 64 KiB, touched. */
  arena: bigint;
  /** One touched page to map for DMA. */
  page: bigint;
  /** Write bytes into the arena at `off`, returning their address. */
  put(off: number, bytes: Uint8Array): bigint;
}

export function assigned(machine: FuzzMachine = "vtd", cmdline = ""): Assigned {
  const { kernel, host } = bootFuzz({ machine, cmdline, profile: "6.12" });
  const sys = kernel.spawn();
  const map = (len: number) =>
    sys.mmap(0n, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
  const arena = map(64 << 10);
  for (let off = 0n; off < 64n << 10n; off += 4096n) sys.poke(arena + off, new Uint8Array(1));
  const page = map(4096);
  sys.poke(page, new Uint8Array([1]));
  const put = (off: number, bytes: Uint8Array) => {
    const a = arena + BigInt(off);
    if (!sys.poke(a, bytes)) throw new Error("bench: arena write failed");
    return a;
  };
  const sysfs = (path: string, value: string) => {
    const fd = sys.open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return;
    sys.write(fd, put(60 << 10, new TextEncoder().encode(value)), value.length);
    sys.close(fd);
  };
  const base = `/sys/bus/pci/devices/${EDU}`;
  sysfs(`${base}/driver_override`, "vfio-pci");
  sysfs("/sys/bus/pci/drivers_probe", EDU);
  const id = kernel.debug.groups().find((g) => g.devices.includes(EDU))?.id;
  const container = sys.open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
  const group = sys.open(`/dev/vfio/${id}`, O_RDWR | O_CLOEXEC);
  const fd = new Uint8Array(4);
  new DataView(fd.buffer).setInt32(0, container, true);
  const ok =
    container >= 0 &&
    group >= 0 &&
    sys.ioctl(group, U.VFIO_GROUP_SET_CONTAINER, put(0, fd)) === 0 &&
    sys.ioctl(container, U.VFIO_SET_IOMMU, BigInt(U.VFIO_TYPE1v2_IOMMU)) === 0;
  if (!ok) throw new Error("bench: could not assign the edu device");
  return { kernel, host, sys, container, group, arena, page, put };
}

/** vfio_iommu_type1_dma_map / _unmap for a 4 KiB page, as bytes. */
export function mapArg(vaddr: bigint, iova: bigint, size = 0x1000n): Uint8Array {
  return U.vfio_iommu_type1_dma_map.encode({
    argsz: U.vfio_iommu_type1_dma_map.size,
    flags: U.VFIO_DMA_MAP_FLAG_READ | U.VFIO_DMA_MAP_FLAG_WRITE,
    vaddr,
    iova,
    size,
  });
}
export function unmapArg(iova: bigint, size = 0x1000n): Uint8Array {
  return U.vfio_iommu_type1_dma_unmap.encode({
    argsz: U.vfio_iommu_type1_dma_unmap.size,
    flags: 0,
    iova,
    size,
  });
}
