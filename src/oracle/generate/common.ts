/**
 * Topologies, preludes and request writers the generated families share.
 *
 * `small` (the oracle's development topology): VT-d with interrupt remapping and snoop
 * control, two root ports with ACS: nvme 01:00.0 alone in group 4, e1000e 02:00.0 alone in
 * group 5. Debian's kernel: legacy container, vfio_iommu_type1, kvm_amd.
 */
import * as KVM from "../../uapi/kvm.js";
import * as V from "../../uapi/vfio.js";
import type { CaseSpec } from "../case.js";
import { Script, cstr, raw, st, v64, type Struct } from "./dsl.js";

const IOMMU = ["-device", "intel-iommu,intremap=on,snoop-control=on"];
const PORTS = [
  "-device",
  "pcie-root-port,id=rp1,bus=pcie.0,chassis=1,addr=0x2",
  "-device",
  "pcie-root-port,id=rp2,bus=pcie.0,chassis=2,addr=0x3",
];

export const SMALL: CaseSpec = {
  kernel: "debian",
  qemu: [...IOMMU, ...PORTS, "-device", "nvme,bus=rp1,serial=oracle0", "-device", "e1000e,bus=rp2"],
  append: "",
};

/** The same machine without VT-d snoop control (DMA_CC and the coherency it implies). */
export const SMALL_NOSNOOP: CaseSpec = {
  ...SMALL,
  qemu: SMALL.qemu.map((w) =>
    w.startsWith("intel-iommu") ? "intel-iommu,intremap=on,snoop-control=off" : w,
  ),
};

/** The small machine with VT-d options added; snoop control stays on unless they name it. */
export function smallVtd(opts: string, kernel: CaseSpec["kernel"] = SMALL.kernel): CaseSpec {
  const snoop = opts.includes("snoop") ? "" : "snoop-control=on,";
  return {
    ...SMALL,
    kernel,
    qemu: SMALL.qemu.map((w) =>
      w.startsWith("intel-iommu") ? `intel-iommu,intremap=on,${snoop}${opts}` : w,
    ),
  };
}

/** Two functions behind one root port without ACS: one group of two (0000:01:00.0/.1). */
export const SHARED: CaseSpec = {
  kernel: "debian",
  qemu: [
    ...IOMMU,
    "-device",
    "pcie-root-port,id=rp1,bus=pcie.0,chassis=1,addr=0x2,disable-acs=on",
    "-device",
    "e1000,bus=rp1,addr=0x0.0,multifunction=on",
    "-device",
    "e1000,bus=rp1,addr=0x0.1",
  ],
  append: "",
};

/**
 * The shared oracle's `group-acs` machine: root ports with and without ACS, multifunction
 * endpoints (e1000e 01:00.0 + edu 01:00.1, group 7), an edu below a port without ACS
 * (02:00.0, group 2 with the port), integrated edu functions (00:06.0/.1, group 4) and an
 * integrated rtl8139 (00:07.0, group 5).
 */
export const ACS: CaseSpec = {
  kernel: "debian",
  qemu: [
    ...IOMMU,
    ...[
      "pcie-root-port,id=rp1,bus=pcie.0,chassis=1,addr=0x2",
      "pcie-root-port,id=rp2,bus=pcie.0,chassis=2,addr=0x3,disable-acs=on",
      "pcie-root-port,id=rp3,bus=pcie.0,chassis=3,addr=0x5.0,multifunction=on,disable-acs=on",
      "pcie-root-port,id=rp4,bus=pcie.0,chassis=4,addr=0x5.1,disable-acs=on",
      "e1000e,bus=rp1,addr=0x0.0,multifunction=on",
      "edu,bus=rp1,addr=0x0.1",
      "edu,bus=rp2",
      "edu,bus=rp3",
      "e1000e,bus=rp4",
      "edu,bus=pcie.0,addr=0x6.0,multifunction=on",
      "edu,bus=pcie.0,addr=0x6.1",
      "rtl8139,bus=pcie.0,addr=0x7",
    ].flatMap((d) => ["-device", d]),
  ],
  append: "",
};

/**
 * The shared oracle's `group-nonviable` machine: an e1000e (01:00.0) and an nvme (02:00.0)
 * below root ports with ACS, an e1000 04:01.0 and an rtl8139 04:02.0 behind a PCIe-to-PCI
 * bridge (03:00.0), a multifunction e1000 pair (05:00.0/.1) below a root port without ACS
 * and an integrated multifunction rtl8139 pair (00:04.0/.1).
 */
export const NONVIABLE: CaseSpec = {
  kernel: "debian",
  qemu: [
    ...IOMMU,
    ...[
      "pcie-root-port,id=rp1,bus=pcie.0,chassis=1,addr=0x2.0,multifunction=on",
      "pcie-root-port,id=rp2,bus=pcie.0,chassis=2,addr=0x2.1",
      "pcie-root-port,id=rp3,bus=pcie.0,chassis=3,addr=0x2.2",
      "pcie-root-port,id=rp4,bus=pcie.0,chassis=4,addr=0x3.0,disable-acs=on",
      "e1000e,bus=rp1",
      "nvme,bus=rp2,serial=oracle0",
      "pcie-pci-bridge,id=br1,bus=rp3",
      "e1000,bus=br1,addr=0x1",
      "rtl8139,bus=br1,addr=0x2",
      "e1000,bus=rp4,addr=0x0.0,multifunction=on",
      "e1000,bus=rp4,addr=0x0.1",
      "rtl8139,bus=pcie.0,addr=0x4.0,multifunction=on",
      "rtl8139,bus=pcie.0,addr=0x4.1",
    ].flatMap((d) => ["-device", d]),
  ],
  append: "",
};

/**
 * The shared oracle's `group-legacy-bridge` machine: conventional PCI behind a PCIe-to-PCI
 * bridge (01:00.0) on a root port: e1000 02:01.0, rtl8139 02:02.0, edu 02:03.0 and a
 * nested PCI-PCI bridge 02:04.0 with an e1000 at 03:01.0, all of them group 4.
 */
export const LEGACY: CaseSpec = {
  kernel: "debian",
  qemu: [
    ...IOMMU,
    ...[
      "pcie-root-port,id=rp1,bus=pcie.0,chassis=1,addr=0x2",
      "pcie-pci-bridge,id=pb1,bus=rp1",
      "e1000,bus=pb1,addr=0x1",
      "rtl8139,bus=pb1,addr=0x2",
      "edu,bus=pb1,addr=0x3",
      "pci-bridge,id=pb2,bus=pb1,addr=0x4,chassis_nr=5",
      "e1000,bus=pb2,addr=0x1",
      "pcie-root-port,id=rp2,bus=pcie.0,chassis=2,addr=0x3",
      "nvme,bus=rp2,serial=oracle0",
    ].flatMap((d) => ["-device", d]),
  ],
  append: "",
};

export const NVME = "0000:01:00.0";
export const NIC = "0000:02:00.0";
export const NVME_GROUP = 4;
export const NIC_GROUP = 5;

/** Give a function to vfio-pci: driver_override, unbind from its driver, probe. */
export function bindVfio(s: Script, bdf: string, unbind = true): Script {
  s.sysfsWrite(
    `/sys/bus/pci/devices/${bdf}/driver_override`,
    "vfio-pci",
    `bind ${bdf} to vfio-pci`,
  );
  if (unbind) s.sysfsWrite(`/sys/bus/pci/devices/${bdf}/driver/unbind`, bdf);
  s.sysfsWrite("/sys/bus/pci/drivers_probe", bdf);
  return s.readlink(`/sys/bus/pci/devices/${bdf}/driver`);
}

export function groupStatus(s: Script, g: string, argsz = 8, note?: string): Script {
  return s.ioctl(`$${g}`, "VFIO_GROUP_GET_STATUS", st(V.vfio_group_status, { argsz }), { note });
}

export function setContainer(s: Script, g: string, c: string | number, note?: string): Script {
  const fd = typeof c === "number" ? c : `$${c}`;
  return s.ioctl(`$${g}`, "VFIO_GROUP_SET_CONTAINER", raw(["s32", "fd", fd]), { note });
}

export function getDevice(s: Script, g: string, bdf: string, as: string, note?: string): Script {
  return s.ioctl(`$${g}`, "VFIO_GROUP_GET_DEVICE_FD", { struct: [cstr(bdf)] }, { as, note });
}

/** A new container c, the group's node open as g and attached to it: 3 operations. */
export function attachGroup(s: Script, group = NVME_GROUP): Script {
  s.open("/dev/vfio/vfio", "c");
  s.open(`/dev/vfio/${group}`, "g");
  return setContainer(s, "g", "c");
}

/** nvme on vfio-pci, container c with group g attached and type1v2 (or type) set: 8 operations. */
export function type1Ready(
  s: Script,
  bdf = NVME,
  group = NVME_GROUP,
  type = V.VFIO_TYPE1v2_IOMMU,
): Script {
  bindVfio(s, bdf);
  attachGroup(s, group);
  return s.ioctl("$c", "VFIO_SET_IOMMU", type);
}

/* The type1 requests on container c (vfio_iommu_type1, or iommufd's compat container). */

const RW = V.VFIO_DMA_MAP_FLAG_READ | V.VFIO_DMA_MAP_FLAG_WRITE;

/** MAP_DMA from $buf (or vaddr), READ|WRITE unless flags say otherwise. */
export function mapDma(
  s: Script,
  iova: number | bigint,
  size: number | bigint,
  o: { vaddr?: string | number; flags?: number; argsz?: number; note?: string } = {},
): Script {
  return s.ioctl(
    "$c",
    "VFIO_IOMMU_MAP_DMA",
    st(V.vfio_iommu_type1_dma_map, {
      argsz: o.argsz ?? 32,
      flags: o.flags ?? RW,
      vaddr: o.vaddr ?? "$buf",
      iova: v64(iova),
      size: v64(size),
    }),
    { note: o.note },
  );
}

export function unmapDma(
  s: Script,
  iova: number | bigint,
  size: number | bigint,
  o: { flags?: number; argsz?: number; note?: string } = {},
): Script {
  return s.ioctl(
    "$c",
    "VFIO_IOMMU_UNMAP_DMA",
    st(V.vfio_iommu_type1_dma_unmap, {
      argsz: o.argsz ?? 24,
      flags: o.flags ?? 0,
      iova: v64(iova),
      size: v64(size),
    }),
    { note: o.note },
  );
}

/** GET_INFO; an argsz past the struct leaves room for the capability chain. */
export function iommuInfo(s: Script, argsz = 16, note?: string): Script {
  return s.ioctl(
    "$c",
    "VFIO_IOMMU_GET_INFO",
    st(
      V.vfio_iommu_type1_info,
      { argsz },
      argsz > 24 ? { tail: { name: "caps", size: argsz - 24 } } : {},
    ),
    { note },
  );
}

/** DIRTY_PAGES with the bare struct (START, STOP and bad flags). */
export function dirtyPages(s: Script, flags: number, argsz = 8, note?: string): Script {
  return s.ioctl(
    "$c",
    "VFIO_IOMMU_DIRTY_PAGES",
    st(V.vfio_iommu_type1_dirty_bitmap, { argsz, flags }),
    { note },
  );
}

/** DIRTY_PAGES GET_BITMAP of [iova, iova + size) at pgsize into $bm, bsize bytes of it. */
export function dirtyBitmap(
  s: Script,
  iova: number,
  size: number,
  pgsize: number,
  bsize: number,
  note?: string,
): Script {
  const head = st(V.vfio_iommu_type1_dirty_bitmap, {
    argsz: 48,
    flags: V.VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
  });
  const get = st(V.vfio_iommu_type1_dirty_bitmap_get, {
    iova,
    size,
    bitmap_pgsize: pgsize,
    bitmap_size: bsize,
    bitmap_data: "$bm",
  });
  return s.ioctl(
    "$c",
    "VFIO_IOMMU_DIRTY_PAGES",
    { struct: [...head.struct, ...get.struct] },
    {
      note,
    },
  );
}

/* The vfio-pci device requests. */

/** A new script: the function on vfio-pci, container c as type1Ready leaves it, device fd d. */
export function deviceReady(name: string, note: string, bdf = NVME, group = NVME_GROUP): Script {
  const s = new Script(name, note);
  type1Ready(s, bdf, group);
  return getDevice(s, "g", bdf, "d");
}

/** [offset, size] of region reads: each width at offset 0, then each below 8 at offset 1. */
export const WIDTHS: [number, number][] = [
  [0, 1],
  [0, 2],
  [0, 4],
  [0, 8],
  [1, 1],
  [1, 2],
  [1, 4],
];

/** A struct vfio_irq_set for SET_IRQS, its data (eventfds or bools) after it; argsz fits. */
export function irqSet(
  flags: number,
  index: number,
  start: number,
  count: number,
  data?: [string, string, string | number][],
): Struct {
  const s = st(V.vfio_irq_set, {
    argsz: 20 + (data?.length ?? 0) * (data?.[0]?.[0] === "u8" ? 1 : 4),
    flags,
    index,
    start,
    count,
  });
  for (const d of data ?? []) s.struct.push(d);
  return s;
}

/** SET_IRQS on device d: `count` vectors of `index` from `start`, their data after. */
export function setIrqs(
  s: Script,
  flags: number,
  index: number,
  start: number,
  count: number,
  note: string,
  data?: [string, string, string | number][],
): Script {
  return s.ioctl("$d", "VFIO_DEVICE_SET_IRQS", irqSet(flags, index, start, count, data), { note });
}

/** SET_IRQS on device d: vector 0 of `index` triggers eventfd $ev. */
export function irqTrigger(s: Script, index: number, note: string): Script {
  const flags = V.VFIO_IRQ_SET_DATA_EVENTFD | V.VFIO_IRQ_SET_ACTION_TRIGGER;
  return setIrqs(s, flags, index, 0, 1, note, [["s32", "fd0", "$ev"]]);
}

const K = 1024;

/**
 * Allen's thirteen relations of a candidate range [c, d) to an existing 64K one [a, b):
 * every way a new mapping, or an unmap, can meet what is mapped.
 */
export const RELATIONS: [string, (a: number, b: number) => [number, number]][] = [
  ["before", (a) => [a - 3 * 64 * K, a - 2 * 64 * K]],
  ["meets", (a) => [a - 64 * K, a]],
  ["overlaps", (a) => [a - 32 * K, a + 32 * K]],
  ["starts", (a) => [a, a + 32 * K]],
  ["during", (a) => [a + 16 * K, a + 48 * K]],
  ["finishes", (a, b) => [a + 32 * K, b]],
  ["equals", (a, b) => [a, b]],
  ["finished-by", (a, b) => [a - 32 * K, b]],
  ["contains", (a, b) => [a - 32 * K, b + 32 * K]],
  ["started-by", (a, b) => [a, b + 32 * K]],
  ["overlapped-by", (_a, b) => [b - 32 * K, b + 32 * K]],
  ["met-by", (_a, b) => [b, b + 64 * K]],
  ["after", (_a, b) => [b + 64 * K, b + 128 * K]],
];

/* The KVM device requests. */

/** KVM_CREATE_DEVICE on fd; bind names the new device's fd. */
export function createDevice(
  s: Script,
  fd: string | number,
  type: number,
  flags: number,
  bind?: string,
  note?: string,
): Script {
  return s.ioctl(fd, "KVM_CREATE_DEVICE", st(KVM.kvm_create_device, { type, flags }), {
    ...(bind ? { bind: { fd: bind } } : {}),
    note,
  });
}

/** A KVM_{HAS,GET,SET}_DEVICE_ATTR request (addr 0 unless given). */
export function deviceAttr(
  s: Script,
  fd: string,
  req: string,
  group: number | bigint,
  attr: number | bigint,
  o: { flags?: number; addr?: string | number | Struct; note?: string } = {},
): Script {
  return s.ioctl(
    fd,
    req,
    st(KVM.kvm_device_attr, {
      flags: o.flags ?? 0,
      group: v64(group),
      attr: v64(attr),
      addr: o.addr ?? 0,
    }),
    { note: o.note },
  );
}

/** A deterministic pseudo-random sequence (xorshift32), for sampling large spaces. */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/** Every ordering of items (n! of them). */
export function permutations<T>(items: T[]): T[][] {
  if (items.length <= 1) return [items];
  return items.flatMap((x, i) =>
    permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((p) => [x, ...p]),
  );
}
