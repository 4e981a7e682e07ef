/**
 * One type1 container, several groups and VT-d variants (Debian's kernel):
 *
 * - the small machine's two groups (nvme 4, e1000e 5) in one container under VT-d without
 *   snoop control, with a 39-bit address width, caching mode, scalable mode, and with
 *   iommu=pt / iommu=nopt on the command line: the groups' default domain type,
 *   CHECK_EXTENSION(DMA_CC_IOMMU) before and after SET_IOMMU and per group, GET_INFO's IOVA
 *   ranges, MAP_DMA at the aperture's end and beyond, the unit's domains_used.
 * - the group-nonviable machine: three groups in one container (e1000e 7, nvme 8 and the
 *   root port's e1000 pair 4) attached before and after SET_IOMMU, the bridge group (9) while
 *   not viable, UNSET_CONTAINER in each order with mappings kept for the groups left, the
 *   last group taking the mappings with it; closing the container fd while groups hold it;
 *   GET_DEVICE_FD of a bridge, of a sibling on pci-stub and on its own driver.
 * - the group-legacy-bridge machine: the five-function group (4) and the nvme (5) in one
 *   container, device fds of its bridges and of a sibling on its own driver.
 * - dirty tracking across a second group's attach and detach; type1 v1 and v2 unmap rules
 *   with two groups in the container.
 * QEMU's VT-d is one unit, so every group of a machine shares its snoop control: a container
 * with one coherent and one non-coherent domain cannot be built on these machines.
 */
import * as V from "../../uapi/vfio.js";
import type { CaseSpec } from "../case.js";
import {
  LEGACY,
  NIC,
  NIC_GROUP,
  NONVIABLE,
  NVME,
  NVME_GROUP,
  SMALL,
  bindVfio,
  dirtyBitmap,
  dirtyPages,
  getDevice,
  groupStatus,
  iommuInfo,
  mapDma,
  setContainer,
  smallVtd,
  unmapDma,
} from "./common.js";
import { Script, raw, st, v64, type GeneratedCase } from "./dsl.js";

const FAMILY = "vfio-container-topology";
const K = 1024;
const M = K * K;
const UNIT = "/sys/class/iommu/dmar0/intel-iommu";
const dev = (bdf: string) => `/sys/bus/pci/devices/${bdf}`;
const groupType = (s: Script, g: number, note?: string) =>
  s.sysfsRead(`/sys/kernel/iommu_groups/${g}/type`, note);
const dmaCc = (s: Script, note: string) =>
  s.ioctl("$c", "VFIO_CHECK_EXTENSION", V.VFIO_DMA_CC_IOMMU, { note: `DMA_CC: ${note}` });
const unset = (s: Script, g: string, note?: string) =>
  s.ioctl(`$${g}`, "VFIO_GROUP_UNSET_CONTAINER", 0, { note });
const setIommu = (s: Script, type = V.VFIO_TYPE1v2_IOMMU, note?: string) =>
  s.ioctl("$c", "VFIO_SET_IOMMU", type, { note });

/** The small machine's variants: tag, and the spec. */
const VTD: [string, CaseSpec][] = [
  ["nosnoop", smallVtd("snoop-control=off")],
  ["aw39", smallVtd("aw-bits=39")],
  ["caching", smallVtd("caching-mode=on")],
  ["scalable", smallVtd("x-scalable-mode=on")],
  ["scalable-caching", smallVtd("x-scalable-mode=on,caching-mode=on")],
  ["pt", { ...SMALL, append: "iommu=pt" }],
  ["pt-scalable", { ...smallVtd("x-scalable-mode=on"), append: "iommu=pt" }],
  ["nopt", { ...SMALL, append: "iommu=nopt" }],
];

/** nvme's group as g, then the e1000e's as g2 after SET_IOMMU, in container c. */
function vtdCase(tag: string, spec: CaseSpec): GeneratedCase {
  const s = new Script(
    `vtd-${tag}`,
    `two groups in one type1 container under ${tag}: DMA_CC, IOVA ranges, the aperture`,
  );
  for (const g of [NVME_GROUP, NIC_GROUP]) groupType(s, g, "the default domain type");
  s.sysfsRead(`${UNIT}/domains_used`, "at boot");
  bindVfio(s, NVME);
  bindVfio(s, NIC);
  s.open("/dev/vfio/vfio", "c");
  dmaCc(s, "no group");
  s.open(`/dev/vfio/${NVME_GROUP}`, "g");
  setContainer(s, "g", "c");
  dmaCc(s, "one group, no IOMMU");
  setIommu(s);
  dmaCc(s, "one group");
  s.sysfsRead(`${UNIT}/domains_used`, "the container's domain");
  s.open(`/dev/vfio/${NIC_GROUP}`, "g2");
  setContainer(s, "g2", "c", "the second group after SET_IOMMU");
  dmaCc(s, "two groups");
  s.sysfsRead(`${UNIT}/domains_used`, "one domain or two");
  groupType(s, NVME_GROUP, "owned by the container");
  iommuInfo(s, 128, "IOVA ranges, migration, DMA avail");
  s.mmap(64 * K, "buf");
  mapDma(s, 16 * M, 64 * K);
  const top = (bits: number) => (1n << BigInt(bits)) - BigInt(64 * K);
  mapDma(s, top(39), 64 * K, { note: "the top 64K of 39 bits" });
  mapDma(s, top(39) + 32n * BigInt(K), 64 * K, { note: "across 2^39" });
  mapDma(s, 1n << 39n, 64 * K, { note: "at 2^39" });
  mapDma(s, top(48), 64 * K, { note: "the top 64K of 48 bits" });
  mapDma(s, 1n << 48n, 64 * K, { note: "at 2^48" });
  mapDma(s, 0xfee00000, 64 * K, { note: "the MSI window" });
  getDevice(s, "g", NVME, "d");
  getDevice(s, "g2", NIC, "d2");
  s.close("$d2");
  unset(s, "g2", "the second group leaves");
  dmaCc(s, "one group left");
  unmapDma(s, 0, 0, { flags: V.VFIO_DMA_UNMAP_FLAG_ALL, note: "everything" });
  s.close("$d");
  unset(s, "g", "the last group leaves");
  dmaCc(s, "no group again");
  s.sysfsRead(`${UNIT}/domains_used`, "after the container");
  groupType(s, NVME_GROUP, "back to its default domain");
  return { name: s.name, family: FAMILY, spec, script: s };
}

/* group-nonviable: e1000e 01:00.0 alone (7), nvme 02:00.0 alone (8), the root port
 * 00:03.0 with an e1000 pair 05:00.0/.1 (4), the bridge 03:00.0 with e1000 04:01.0 and
 * rtl8139 04:02.0 (9). */
const E1000E = "0000:01:00.0";
const NVME8 = "0000:02:00.0";
const PAIR = ["0000:05:00.0", "0000:05:00.1"] as const;
const BRIDGE = "0000:03:00.0";
const BR_E1000 = "0000:04:01.0";
const BR_RTL = "0000:04:02.0";
const G: Record<string, number> = { g7: 7, g8: 8, g4: 4, g9: 9 };

/** The three viable groups' functions on vfio-pci, container c, the group nodes open. */
function threeGroups(name: string, note: string): Script {
  const s = new Script(name, note);
  for (const b of [E1000E, NVME8, ...PAIR]) bindVfio(s, b);
  s.open("/dev/vfio/vfio", "c");
  for (const g of ["g7", "g8", "g4"]) s.open(`/dev/vfio/${G[g]}`, g);
  s.mmap(4 * M, "buf");
  return s;
}

function nonviableCases(): Script[] {
  const out: Script[] = [];
  // attach before and after SET_IOMMU, a non-viable group, mappings as groups come and go
  {
    const s = threeGroups(
      "nonviable-attach",
      "three groups: two before SET_IOMMU, one after; the bridge group while not viable",
    );
    setContainer(s, "g7", "c");
    setContainer(s, "g8", "c", "a second group before SET_IOMMU");
    groupStatus(s, "g8");
    mapDma(s, 16 * M, 64 * K, { note: "no IOMMU set" });
    setIommu(s);
    setIommu(s, V.VFIO_TYPE1v2_IOMMU, "again");
    mapDma(s, 16 * M, 64 * K);
    setContainer(s, "g4", "c", "a third group after SET_IOMMU: replays the mapping");
    mapDma(s, 16 * M, 64 * K, { note: "the same range again" });
    bindVfio(s, BR_E1000);
    s.open("/dev/vfio/9", "g9");
    groupStatus(s, "g9", 8, "the rtl8139 on its driver");
    setContainer(s, "g9", "c", "a non-viable group");
    s.sysfsWrite(`${dev(BR_RTL)}/driver/unbind`, BR_RTL, "release the rtl8139");
    setContainer(s, "g9", "c", "viable now");
    iommuInfo(s, 128, "four groups");
    dmaCc(s, "four groups");
    getDevice(s, "g9", BRIDGE, "db", "the bridge: no vfio device");
    getDevice(s, "g9", BR_RTL, "dr", "the rtl8139 on no driver");
    getDevice(s, "g9", BR_E1000, "de");
    s.sysfsWrite("/sys/bus/pci/drivers/8139cp/bind", BR_RTL, "its driver while the group is used");
    s.sysfsWrite("/sys/bus/pci/drivers/pci-stub/bind", BR_RTL, "pci-stub while the group is used");
    s.readlink(`${dev(BR_RTL)}/driver`);
    groupStatus(s, "g9");
    getDevice(s, "g9", BR_RTL, "dr", "the rtl8139 on pci-stub");
    getDevice(s, "g4", PAIR[0], "dp", "the pair's first function");
    getDevice(s, "g4", "0000:00:03.0", "dport", "the root port on pcieport");
    getDevice(s, "g7", NVME8, "dx", "a function of another group");
    s.close("$de");
    unset(s, "g9");
    groupStatus(s, "g9", 8, "after unset");
    out.push(s);
  }
  // UNSET_CONTAINER in each order: what the container keeps
  for (const order of [
    ["g7", "g8", "g4"],
    ["g4", "g8", "g7"],
    ["g8", "g7", "g4"],
  ]) {
    const s = threeGroups(
      `nonviable-unset-${order.join("-")}`,
      `three groups, two mappings; UNSET_CONTAINER of ${order.join(", ")}`,
    );
    for (const g of ["g7", "g8", "g4"]) setContainer(s, g, "c");
    setIommu(s);
    mapDma(s, 16 * M, 64 * K);
    mapDma(s, 32 * M, 2 * M, { vaddr: "$buf+0x200000" });
    getDevice(s, "g8", NVME8, "d8");
    for (const [i, g] of order.entries()) {
      if (g === "g8") {
        unset(s, "g8", "its device is open");
        s.close("$d8");
      }
      unset(s, g, `${g} leaves`);
      groupStatus(s, g);
      iommuInfo(s, 16, `${2 - i} groups left`);
      mapDma(s, 16 * M, 64 * K, { note: "the first mapping still there?" });
      if (i === 0) {
        setContainer(s, g, "c", "back again");
        unmapDma(s, 16 * M, 64 * K, { note: "unmap what it was given" });
        mapDma(s, 16 * M, 64 * K);
        unset(s, g, "and away");
      }
    }
    unset(s, order[0] as string, "a group already gone");
    dmaCc(s, "every group gone");
    setContainer(s, "g7", "c", "a group into the emptied container");
    mapDma(s, 16 * M, 64 * K, { note: "no IOMMU any more" });
    setIommu(s);
    mapDma(s, 16 * M, 64 * K, { note: "the mappings went with the last group" });
    out.push(s);
  }
  // the container fd closed while groups hold it
  {
    const s = threeGroups(
      "nonviable-close-container",
      "the container fd closed while three groups hold it; device fds, unset, reopen",
    );
    for (const g of ["g7", "g8"]) setContainer(s, g, "c");
    setIommu(s);
    mapDma(s, 16 * M, 64 * K);
    getDevice(s, "g7", E1000E, "d7");
    s.dup("$c", "c2");
    s.close("$c", "close one container fd, a dup stays");
    setContainer(s, "g4", "c2", "a group to the dup");
    s.close("$c2", "the last container fd");
    groupStatus(s, "g7", 8, "the group still holds the container");
    getDevice(s, "g8", NVME8, "d8", "a device fd after the close");
    setContainer(s, "g4", "g7", "a group fd as the container");
    s.open("/dev/vfio/vfio", "c");
    setContainer(s, "g4", "c", "a group in the old container to a new one");
    s.close("$d8");
    unset(s, "g8");
    unset(s, "g4");
    groupStatus(s, "g7", 8, "the last holder, device open");
    unset(s, "g7", "its device open");
    s.close("$d7");
    unset(s, "g7", "the last holder");
    groupStatus(s, "g7");
    setContainer(s, "g7", "c", "to the new container");
    setIommu(s);
    mapDma(s, 16 * M, 64 * K, { note: "nothing left of the old one" });
    out.push(s);
  }
  return out;
}

/* group-legacy-bridge: the PCIe-to-PCI bridge 01:00.0 with e1000 02:01.0, rtl8139 02:02.0,
 * edu 02:03.0, the PCI bridge 02:04.0 and e1000 03:01.0 (4); the nvme 04:00.0 (5). */
function legacyCase(): Script {
  const [e1, rtl, edu, br, e2] = ["02:01.0", "02:02.0", "02:03.0", "02:04.0", "03:01.0"].map(
    (b) => `0000:${b}`,
  ) as [string, string, string, string, string];
  const s = new Script(
    "legacy-two-groups",
    "the legacy-bridge group and the nvme in one container; device fds of bridges and siblings",
  );
  bindVfio(s, "0000:04:00.0");
  bindVfio(s, e1);
  s.open("/dev/vfio/vfio", "c");
  s.open("/dev/vfio/5", "g5");
  s.open("/dev/vfio/4", "g4");
  setContainer(s, "g5", "c");
  setIommu(s);
  s.mmap(64 * K, "buf");
  mapDma(s, 16 * M, 64 * K);
  setContainer(s, "g4", "c", "the rtl8139 and the nested e1000 on their drivers");
  for (const b of [rtl, e2]) s.sysfsWrite(`${dev(b)}/driver/unbind`, b, `release ${b}`);
  groupStatus(s, "g4");
  setContainer(s, "g4", "c", "viable");
  mapDma(s, 16 * M, 64 * K, { note: "replayed: already mapped" });
  iommuInfo(s, 128);
  for (const [b, note] of [
    ["0000:01:00.0", "the PCIe-to-PCI bridge"],
    [br, "the nested PCI bridge"],
    [edu, "the edu on no driver"],
    [rtl, "the rtl8139 on no driver"],
  ] as const)
    getDevice(s, "g4", b, "dx", note);
  getDevice(s, "g4", e1, "d1");
  s.sysfsWrite("/sys/bus/pci/drivers/8139cp/bind", rtl, "its driver while the group is used");
  s.sysfsWrite("/sys/bus/pci/drivers/pci-stub/bind", rtl, "pci-stub while the group is used");
  s.readlink(`${dev(rtl)}/driver`);
  getDevice(s, "g4", rtl, "dx", "the rtl8139 on pci-stub");
  bindVfio(s, e2, false);
  getDevice(s, "g4", e2, "d2", "the nested e1000 on vfio-pci");
  unset(s, "g4", "devices open");
  s.close("$d1");
  s.close("$d2");
  unset(s, "g4");
  unmapDma(s, 16 * M, 64 * K, { note: "the nvme's domain keeps it" });
  unset(s, "g5");
  return s;
}

/** UNMAP_DMA with GET_DIRTY_BITMAP: the bitmap (struct vfio_bitmap) into $bm. */
function unmapDirty(s: Script, iova: number, size: number, bsize: number, note: string): Script {
  return s.ioctl(
    "$c",
    "VFIO_IOMMU_UNMAP_DMA",
    {
      struct: [
        ...st(V.vfio_iommu_type1_dma_unmap, {
          argsz: 48,
          flags: V.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
          iova: v64(iova),
          size: v64(size),
        }).struct,
        // struct vfio_bitmap, its size renamed apart from the unmap's
        ...raw(["u64", "pgsize", 4096], ["u64", "bitmap_size", bsize], ["u64", "data", "$bm"])
          .struct,
      ],
    },
    { note },
  );
}

/** The small machine's two groups: g (nvme) set with SET_IOMMU `type`, g2 (e1000e) open. */
function smallTwo(name: string, note: string, type = V.VFIO_TYPE1v2_IOMMU): Script {
  const s = new Script(name, note);
  bindVfio(s, NVME);
  bindVfio(s, NIC);
  s.open("/dev/vfio/vfio", "c");
  s.open(`/dev/vfio/${NVME_GROUP}`, "g");
  s.open(`/dev/vfio/${NIC_GROUP}`, "g2");
  setContainer(s, "g", "c");
  setIommu(s, type);
  s.mmap(4 * M, "buf");
  s.mmap(4096, "bm");
  return s;
}

function smallCases(): Script[] {
  const out: Script[] = [];
  {
    const s = smallTwo("dirty-two-groups", "dirty tracking across a second group's attach, detach");
    mapDma(s, 16 * M, 64 * K);
    dirtyPages(s, V.VFIO_IOMMU_DIRTY_PAGES_FLAG_START);
    setContainer(s, "g2", "c", "the second group while tracking");
    dirtyBitmap(s, 16 * M, 64 * K, 4096, 8, "after the attach");
    s.check("bm", 0, "0000000000000000");
    mapDma(s, 32 * M, 64 * K, { vaddr: "$buf+0x10000", note: "map while tracking" });
    dirtyBitmap(s, 32 * M, 64 * K, 4096, 8, "the new mapping");
    s.check("bm", 0, "0000000000000000");
    getDevice(s, "g2", NIC, "d2");
    s.close("$d2");
    unset(s, "g2", "the second group while tracking");
    dirtyBitmap(s, 16 * M, 64 * K, 4096, 8, "after the detach");
    unmapDirty(s, 32 * M, 64 * K, 8, "unmap with the bitmap");
    dirtyPages(s, V.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP);
    setContainer(s, "g2", "c", "back while not tracking");
    dirtyPages(s, V.VFIO_IOMMU_DIRTY_PAGES_FLAG_START, 8, "START with two groups");
    unmapDirty(s, 16 * M, 64 * K, 8, "unmap with the bitmap, two groups");
    unmapDirty(s, 16 * M, 64 * K, 8, "nothing left there");
    unset(s, "g2");
    unset(s, "g", "the last group while tracking");
    setContainer(s, "g", "c");
    setIommu(s);
    dirtyPages(s, V.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP, 8, "tracking went with the container");
    dirtyBitmap(s, 16 * M, 64 * K, 4096, 8, "not tracking");
    out.push(s);
  }
  // v1 versus v2 unmap rules with a second group in the container
  for (const [type, tag] of [
    [V.VFIO_TYPE1_IOMMU, "v1"],
    [V.VFIO_TYPE1v2_IOMMU, "v2"],
  ] as const) {
    const s = smallTwo(`unmap-two-groups-${tag}`, `type1 ${tag} unmap rules with two groups`, type);
    mapDma(s, 16 * M, 64 * K);
    setContainer(s, "g2", "c", "the second group: the mapping replayed");
    mapDma(s, 16 * M + 64 * K, 64 * K, { vaddr: "$buf+0x10000" });
    mapDma(s, 32 * M, 2 * M, { vaddr: "$buf+0x200000" });
    unmapDma(s, 16 * M + 4 * K, 4 * K, { note: "inside a mapping" });
    unmapDma(s, 16 * M, 4 * K, { note: "the first page of a mapping" });
    unmapDma(s, 16 * M + 32 * K, 64 * K, { note: "across two mappings" });
    unmapDma(s, 33 * M, M, { note: "the 2M mapping's second half" });
    unmapDma(s, 32 * M, M, { note: "its first half" });
    unset(s, "g2", "the second group leaves");
    unmapDma(s, 16 * M, 128 * K, { note: "both 64K mappings" });
    unmapDma(s, 32 * M, 2 * M, { note: "the 2M mapping" });
    unmapDma(s, 15 * M, 20 * M, { note: "around everything" });
    s.ioctl("$c", "VFIO_CHECK_EXTENSION", V.VFIO_UNMAP_ALL);
    unmapDma(s, 0, 0, { flags: V.VFIO_DMA_UNMAP_FLAG_ALL, note: "ALL" });
    iommuInfo(s, 128);
    out.push(s);
  }
  return out;
}

export function generate(): GeneratedCase[] {
  const mk =
    (spec: CaseSpec) =>
    (s: Script): GeneratedCase => ({ name: s.name, family: FAMILY, spec, script: s });
  return [
    ...VTD.map(([tag, spec]) => vtdCase(tag, spec)),
    ...nonviableCases().map(mk(NONVIABLE)),
    mk(LEGACY)(legacyCase()),
    ...smallCases().map(mk(SMALL)),
  ];
}
