/**
 * Topologies and preludes the generated families share.
 *
 * `small` (the oracle's development topology): VT-d with interrupt remapping and snoop
 * control, two root ports with ACS: nvme 01:00.0 alone in group 4, e1000e 02:00.0 alone in
 * group 5. Debian's kernel: legacy container, vfio_iommu_type1, kvm_amd.
 */
import * as V from "../../uapi/vfio.js";
import type { CaseSpec } from "../case.js";
import { Script, cstr, raw, st } from "./dsl.js";

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
  return s.ioctl(
    `$${g}`,
    "VFIO_GROUP_GET_STATUS",
    st(V.vfio_group_status, { argsz }),
    note ? { note } : {},
  );
}

export function setContainer(s: Script, g: string, c: string | number, note?: string): Script {
  const fd = typeof c === "number" ? c : `$${c}`;
  return s.ioctl(`$${g}`, "VFIO_GROUP_SET_CONTAINER", raw(["s32", "fd", fd]), note ? { note } : {});
}

export function getDevice(s: Script, g: string, bdf: string, as: string, note?: string): Script {
  return s.ioctl(
    `$${g}`,
    "VFIO_GROUP_GET_DEVICE_FD",
    { struct: [cstr(bdf)] },
    { as, ...(note ? { note } : {}) },
  );
}

/** nvme on vfio-pci, container c with group g attached and type1v2 (or type) set: 8 operations. */
export function type1Ready(
  s: Script,
  bdf = NVME,
  group = NVME_GROUP,
  type = V.VFIO_TYPE1v2_IOMMU,
): Script {
  bindVfio(s, bdf);
  s.open("/dev/vfio/vfio", "c");
  s.open(`/dev/vfio/${group}`, "g");
  setContainer(s, "g", "c");
  return s.ioctl("$c", "VFIO_SET_IOMMU", type);
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
