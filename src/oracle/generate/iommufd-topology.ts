/**
 * iommufd and the VFIO device cdev away from the small machine (the "iommufd" kernel):
 *
 * - groups of two endpoints, on the shared oracle's `group-nonviable` machine: a
 *   multifunction e1000 pair behind a root port without ACS (group 4, with the port), an
 *   e1000 and an rtl8139 behind a PCIe-to-PCI bridge (group 9, with the bridge), and an
 *   integrated multifunction rtl8139 pair (group 5). BIND_IOMMUFD with the sibling on its
 *   own driver, on none and on vfio-pci; both members bound to one iommufd or two,
 *   attached to the same and to different IOASes and HWPTs, detached and closed in each
 *   order; the group node (with /dev/vfio/vfio or /dev/iommu as its container) against the
 *   cdevs of its members; hot reset info and the empty-array reset with the sibling bound,
 *   unbound and released; sysfs links, `reset`, the group's `type` written as members move.
 * - the legacy-bridge group (five functions below two bridges) and the group-acs machine's
 *   edu functions through their cdevs.
 * - VT-d variants of the small machine (scalable and PASID modes, no snoop control, 39-
 *   and 48-bit address widths, caching mode, no pass-through, device IOTLB): the unit's
 *   sysfs (domains_used as domains come and go), GET_HW_INFO's data and capabilities, IOVA
 *   ranges, HWPT_ALLOC with NEST_PARENT, DIRTY_TRACKING, a nested parent and a fault queue,
 *   the compat container's ranges; an identity default domain and back.
 * Not the vfio-dev class devices' `dev` or `uevent`: their char major is allocated at boot
 * (alloc_chrdev_region) and no host snapshot records it, so a script reading it would test
 * the guest's module order, not the kernel's rules.
 */
import * as I from "../../uapi/iommufd.js";
import * as V from "../../uapi/vfio.js";
import type { CaseSpec } from "../case.js";
import {
  ACS,
  LEGACY,
  NIC,
  NIC_GROUP,
  NONVIABLE,
  NVME,
  SMALL,
  attachGroup,
  iommuInfo,
  mapDma,
  bindVfio,
  getDevice,
  groupStatus,
  setContainer,
  smallVtd,
} from "./common.js";
import { Script, st, v64, type GeneratedCase } from "./dsl.js";
import {
  attach,
  bind,
  destroy,
  detach,
  faultQueue,
  hwptAlloc,
  ioasAlloc,
  map,
  ranges,
} from "./iommufd.js";

const K = 1024;
const M = K * K;
const CONFIG = Number(BigInt(V.VFIO_PCI_CONFIG_REGION_INDEX) << 40n);

interface Pair {
  tag: string;
  group: number;
  /** the member given to vfio-pci first, and its sibling with the sibling's own driver */
  a: string;
  b: string;
  drv: string;
}

const PAIRS: Pair[] = [
  { tag: "rp-pair", group: 4, a: "0000:05:00.0", b: "0000:05:00.1", drv: "e1000" },
  { tag: "bridge", group: 9, a: "0000:04:01.0", b: "0000:04:02.0", drv: "8139cp" },
  { tag: "integrated", group: 5, a: "0000:00:04.0", b: "0000:00:04.1", drv: "8139cp" },
];

const dev = (bdf: string) => `/sys/bus/pci/devices/${bdf}`;
const UNIT = "/sys/class/iommu/dmar0/intel-iommu";

/** The small machine on the iommufd kernel with VT-d options added. */
const vtdSpec = (opts: string): CaseSpec => smallVtd(opts, "iommufd");

const info = (s: Script, d: string, note: string) =>
  s.ioctl(d, "VFIO_DEVICE_GET_INFO", st(V.vfio_device_info, { argsz: 24 }), { note });

/** Both members on vfio-pci, /dev/iommu as i with IOAS 1, cdevs vfio0 (a) and vfio1 (b). */
function bothOnVfio(p: Pair, name: string, note: string): Script {
  const s = new Script(name, note);
  s.open("/dev/iommu", "i");
  ioasAlloc(s, "ioas 1");
  bindVfio(s, p.a);
  bindVfio(s, p.b);
  s.readlink("/sys/class/vfio-dev/vfio0", "a's cdev");
  s.readlink("/sys/class/vfio-dev/vfio1", "b's cdev");
  return s;
}

/** HOT_RESET_INFO on device fd d, room for n dependent devices. */
const resetInfo = (s: Script, d: string, note: string, n = 4) =>
  s.ioctl(
    d,
    "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO",
    st(
      V.vfio_pci_hot_reset_info,
      { argsz: 12 + 8 * n },
      { tail: { name: "devices", size: 8 * n } },
    ),
    { note },
  );

/** PCI_HOT_RESET with the group fds (none: the cdev's form). */
const reset = (s: Script, d: string, note: string, fds: string[] = []) =>
  s.ioctl(
    d,
    "VFIO_DEVICE_PCI_HOT_RESET",
    {
      struct: [
        ...st(V.vfio_pci_hot_reset, { argsz: 12 + 4 * fds.length, count: fds.length }).struct,
        ...fds.map((fd, i): [string, string, string] => ["s32", `fd${i}`, fd]),
      ],
    },
    { note },
  );

function groupCases(p: Pair): Script[] {
  const out: Script[] = [];
  // a's cdev while its sibling is on its own driver, on none, on vfio-pci
  {
    const s = new Script(
      `sibling-driver-${p.tag}`,
      `group ${p.group}: BIND_IOMMUFD of ${p.a} with ${p.b} on ${p.drv}, on no driver, on vfio-pci`,
    );
    s.open("/dev/iommu", "i");
    ioasAlloc(s, "ioas 1");
    bindVfio(s, p.a);
    s.readlink(`${dev(p.b)}/driver`, "the sibling's driver");
    s.readlink("/sys/class/vfio-dev/vfio0", "a's cdev");
    s.open("/dev/vfio/devices/vfio0", "d", undefined, "the cdev opens with the group not viable");
    bind(s, "$i", { note: "sibling on its driver" });
    info(s, "$d", "unbound cdev");
    s.sysfsWrite(`${dev(p.b)}/driver/unbind`, p.b, "release the sibling");
    bind(s, "$i", { note: "sibling on no driver: devid 2" });
    attach(s, 1, { note: "attach ioas 1" });
    s.sysfsWrite(`/sys/bus/pci/drivers/${p.drv}/bind`, p.b, "the sibling's driver while bound");
    s.readlink(`${dev(p.b)}/driver`);
    bindVfio(s, p.b, false);
    s.readlink("/sys/class/vfio-dev/vfio1", "b's cdev");
    info(s, "$d", "a still usable");
    s.close("$d", "close a: the group is released");
    s.open("/dev/vfio/devices/vfio0", "d");
    bind(s, "$i", { note: "sibling on vfio-pci, not open" });
    attach(s, 1, { note: "attach ioas 1" });
    s.sysfsWrite(`${dev(p.b)}/driver/unbind`, p.b, "unbind the sibling from vfio-pci");
    s.sysfsWrite(`${dev(p.b)}/driver_override`, p.drv, "its own driver by override");
    s.sysfsWrite("/sys/bus/pci/drivers_probe", p.b, "probe while a is bound");
    s.readlink(`${dev(p.b)}/driver`);
    s.close("$d");
    s.sysfsWrite("/sys/bus/pci/drivers_probe", p.b, "probe after a is closed");
    s.readlink(`${dev(p.b)}/driver`);
    s.open("/dev/vfio/devices/vfio0", "d2");
    bind(s, "$i", { note: "sibling back on its driver", dev: "$d2" });
    out.push(s);
  }
  // both members through their cdevs: one iommufd or two, same and different IOAS/HWPT
  for (const order of p.tag === "rp-pair" ? ["a", "b", "iommufd"] : ["a"]) {
    const s = bothOnVfio(
      p,
      `two-cdevs-${p.tag}-close-${order}`,
      `group ${p.group}: both members bound and attached; ${order} closed first`,
    );
    s.mmap(64 * K, "buf");
    s.open("/dev/iommu", "i2");
    s.open("/dev/vfio/devices/vfio0", "da");
    s.open("/dev/vfio/devices/vfio1", "db");
    bind(s, "$i", { dev: "$da", note: "a: devid 2" });
    bind(s, "$i2", { dev: "$db", note: "b to another iommufd" });
    bind(s, "$i", { dev: "$db", note: "b: devid 3" });
    ioasAlloc(s, "ioas 4");
    attach(s, 1, { dev: "$da", note: "a to ioas 1: auto hwpt 5" });
    attach(s, 4, { dev: "$db", note: "b to another IOAS" });
    attach(s, 5, { dev: "$db", note: "b to a's hwpt" });
    attach(s, 1, { dev: "$db", note: "b to ioas 1" });
    s.ioctl("$i", "IOMMU_HWPT_ALLOC", st(I.iommu_hwpt_alloc, { size: 48, dev_id: 3, pt_id: 4 }), {
      note: "a hwpt on ioas 4 for b",
    });
    attach(s, 6, { dev: "$da", note: "a to it: the group moves?" });
    attach(s, 1, { dev: "$db", note: "b back to ioas 1" });
    detach(s, "detach a", 8, "$da");
    attach(s, 4, { dev: "$db", note: "b alone to ioas 4" });
    attach(s, 1, { dev: "$da", note: "a to ioas 1 while b is on ioas 4" });
    attach(s, 4, { dev: "$da", note: "a to ioas 4" });
    destroy(s, 4, "ioas 4 in use");
    map(s, 16 * M, 64 * K, { ioas: 4, va: "$buf", note: "map into ioas 4" });
    const first = order === "a" ? "$da" : order === "b" ? "$db" : "$i";
    const other = order === "b" ? "$da" : "$db";
    s.close(first, `close ${order}`);
    info(s, other, "the other still usable");
    if (order === "iommufd") info(s, "$da", "a still usable");
    else attach(s, 1, { dev: other, note: "the other re-attached" });
    s.close(other);
    s.open(`/dev/vfio/${p.group}`, "g", undefined, "the group node");
    out.push(s);
  }
  // the group node against the members' cdevs
  {
    const s = bothOnVfio(
      p,
      `group-vs-cdev-${p.tag}`,
      `group ${p.group}: the group node and the members' cdevs exclude each other`,
    );
    s.open("/dev/vfio/devices/vfio0", "da", undefined, "a's cdev");
    s.open(`/dev/vfio/${p.group}`, "g", undefined, "the group while a's cdev is open");
    bind(s, "$i", { dev: "$da", note: "bind a while the group is open" });
    s.close("$g");
    bind(s, "$i", { dev: "$da", note: "bind a: devid 2" });
    s.open(`/dev/vfio/${p.group}`, "g", undefined, "the group while a is bound");
    s.open("/dev/vfio/devices/vfio1", "db", undefined, "b's cdev");
    bind(s, "$i", { dev: "$db", note: "bind b: devid 3" });
    s.close("$da", "close a");
    s.open(`/dev/vfio/${p.group}`, "g", undefined, "the group while only b is bound");
    s.close("$db", "close b");
    s.open(`/dev/vfio/${p.group}`, "g", undefined, "the group with no cdev bound");
    groupStatus(s, "g", 8, "viable");
    s.open("/dev/vfio/vfio", "c");
    setContainer(s, "g", "c");
    s.ioctl("$c", "VFIO_SET_IOMMU", V.VFIO_TYPE1v2_IOMMU);
    getDevice(s, "g", p.a, "ga", "a through the group");
    s.open("/dev/vfio/devices/vfio1", "db", undefined, "b's cdev");
    bind(s, "$i", { dev: "$db", note: "bind b while a is open through the group" });
    s.close("$g", "close the group; a's group device fd stays");
    bind(s, "$i", { dev: "$db", note: "bind b with the group fd closed" });
    s.open(`/dev/vfio/${p.group}`, "g2", undefined, "the group again");
    s.close("$ga");
    bind(s, "$i", { dev: "$db", note: "bind b after the last group device fd" });
    s.close("$c");
    bind(s, "$i", { dev: "$db", note: "bind b after the container is closed" });
    s.open(`/dev/vfio/${p.group}`, "g3", undefined, "the group while b is bound");
    out.push(s);
  }
  // the group path on the iommufd kernel: the compat container, or /dev/iommu itself
  for (const box of ["compat", "iommufd"]) {
    const s = new Script(
      `group-path-${box}-${p.tag}`,
      `group ${p.group} through its node with ${box === "compat" ? "/dev/vfio/vfio" : "/dev/iommu"} as the container, the sibling on ${p.drv}`,
    );
    bindVfio(s, p.a);
    s.open(`/dev/vfio/${p.group}`, "g");
    groupStatus(s, "g", 8, "not viable");
    s.open(box === "compat" ? "/dev/vfio/vfio" : "/dev/iommu", "c");
    setContainer(s, "g", "c", "a non-viable group");
    groupStatus(s, "g", 8, "container set");
    if (box === "compat") s.ioctl("$c", "VFIO_SET_IOMMU", V.VFIO_TYPE1v2_IOMMU);
    getDevice(s, "g", p.a, "ga", "the sibling on its driver");
    s.sysfsWrite(`${dev(p.b)}/driver/unbind`, p.b, "release the sibling");
    groupStatus(s, "g", 8, "viable");
    getDevice(s, "g", p.a, "ga", "a");
    getDevice(s, "g", p.a, "ga2", "a again");
    s.sysfsWrite(`/sys/bus/pci/drivers/${p.drv}/bind`, p.b, "the sibling's driver while a is open");
    resetInfo(s, "$ga", "hot reset info through the group");
    reset(s, "$ga", "reset with the group", ["$g"]);
    reset(s, "$ga", "reset with no group");
    if (box === "iommufd") {
      s.ioctl("$c", "IOMMU_VFIO_IOAS", st(I.iommu_vfio_ioas, { size: 12 }), {
        note: "the compat IOAS",
      });
      s.mmap(4096, "hw");
      s.ioctl(
        "$c",
        "IOMMU_GET_HW_INFO",
        st(I.iommu_hw_info, { size: 40, dev_id: 2, data_len: 24, data_uptr: "$hw" }),
        { note: "the group-opened device's id" },
      );
      s.ioctl("$c", "IOMMU_DESTROY", st(I.iommu_destroy, { size: 8, id: 2 }), {
        note: "destroy it",
      });
      s.ioctl("$c", "IOMMU_HWPT_ALLOC", st(I.iommu_hwpt_alloc, { size: 48, dev_id: 2, pt_id: 1 }), {
        note: "a hwpt for it",
      });
    }
    bindVfio(s, p.b, false);
    getDevice(s, "g", p.b, "gb", "the sibling on vfio-pci");
    reset(s, "$ga", "both open: reset with the group", ["$g"]);
    s.close("$ga");
    s.close("$ga2");
    s.ioctl("$g", "VFIO_GROUP_UNSET_CONTAINER", 0, { note: "b still open" });
    s.close("$gb");
    s.ioctl("$g", "VFIO_GROUP_UNSET_CONTAINER", 0);
    groupStatus(s, "g", 8, "after unset");
    out.push(s);
  }
  // what sysfs shows of the group and the cdevs as the members move
  {
    const s = new Script(
      `sysfs-${p.tag}`,
      `group ${p.group}: group and vfio-dev sysfs, GET_INFO's capabilities, cdev numbers`,
    );
    const g = `/sys/kernel/iommu_groups/${p.group}`;
    s.readlink(`${dev(p.a)}/iommu_group`);
    s.sysfsRead(`${g}/type`);
    s.sysfsRead(`${g}/reserved_regions`);
    s.sysfsRead(`${dev(p.a)}/reset_method`);
    bindVfio(s, p.a);
    bindVfio(s, p.b);
    s.readlink("/sys/class/vfio-dev/vfio0/device", "the cdev's device");
    s.open("/dev/iommu", "i");
    s.open("/dev/vfio/devices/vfio0", "da");
    bind(s, "$i", { dev: "$da", note: "devid 1" });
    s.ioctl(
      "$da",
      "VFIO_DEVICE_GET_INFO",
      st(V.vfio_device_info, { argsz: 256 }, { tail: { name: "caps", size: 232 } }),
      { note: "with room for capabilities" },
    );
    s.sysfsRead(`${g}/type`, "while bound");
    s.sysfsWrite(`${dev(p.b)}/driver/unbind`, p.b, "b off vfio-pci");
    s.readlink("/sys/class/vfio-dev/vfio1", "b's cdev is gone");
    s.sysfsWrite(`${dev(p.a)}/reset`, "1", "reset a through sysfs while bound");
    s.sysfsWrite("/sys/bus/pci/drivers_probe", p.b, "b back (override still vfio-pci)");
    s.readlink("/sys/class/vfio-dev/vfio1", "its cdev number again");
    s.sysfsWrite(`${dev(p.b)}/reset`, "1", "reset b through sysfs");
    s.close("$da");
    s.sysfsWrite(`${dev(p.a)}/driver/unbind`, p.a, "a off vfio-pci");
    s.sysfsWrite(`${dev(p.b)}/driver/unbind`, p.b, "b off vfio-pci");
    s.sysfsWrite("/sys/bus/pci/drivers_probe", p.b, "b first");
    s.readlink("/sys/class/vfio-dev/vfio0", "b takes the lowest number");
    s.readlink("/sys/class/vfio-dev/vfio0/device");
    out.push(s);
  }
  // the group's default domain type written through sysfs as the members move
  {
    const s = new Script(
      `group-type-${p.tag}`,
      `group ${p.group}: writes to the group's type with members on their drivers, vfio-pci, a bound cdev`,
    );
    const g = `/sys/kernel/iommu_groups/${p.group}`;
    const type = (v: string, note: string) => {
      s.sysfsWrite(`${g}/type`, v, note);
      s.sysfsRead(`${g}/type`);
    };
    const used = () => s.sysfsRead(`${UNIT}/domains_used`);
    used();
    type("identity", "members on their drivers");
    s.readlink(`${dev(p.a)}/driver`);
    s.sysfsWrite(`${dev(p.a)}/driver/unbind`, p.a, "a to no driver");
    s.sysfsWrite(`${dev(p.b)}/driver/unbind`, p.b, "b to no driver");
    type("identity", "no driver in the group");
    used();
    type("DMA", "back to DMA");
    type("DMA-FQ", "DMA-FQ");
    type("auto", "auto");
    type("bogus", "bogus");
    type("identity\n", "identity with a newline");
    bindVfio(s, p.a, false);
    type("DMA", "a on vfio-pci");
    s.open("/dev/iommu", "i");
    s.open("/dev/vfio/devices/vfio0", "d");
    bind(s, "$i", { note: "bind a: devid 1" });
    used();
    type("identity", "a bound through its cdev");
    s.close("$d");
    used();
    type("identity", "a's cdev closed");
    s.sysfsWrite(`/sys/bus/pci/drivers/${p.drv}/bind`, p.b, "b back to its driver");
    s.readlink(`${dev(p.b)}/driver`);
    used();
    out.push(s);
  }
  // links between the group, the unit, the drivers and the cdevs
  {
    const s = new Script(
      `sysfs-links-${p.tag}`,
      `group ${p.group}: sysfs links as the members move`,
    );
    const g = `/sys/kernel/iommu_groups/${p.group}`;
    const look = () => {
      for (const b of [p.a, p.b]) {
        s.readlink(`${g}/devices/${b}`);
        s.readlink(`${dev(b)}/iommu`);
        s.readlink(`${dev(b)}/iommu_group`);
        s.readlink(`/sys/class/iommu/dmar0/devices/${b}`);
      }
    };
    look();
    bindVfio(s, p.a);
    s.readlink(`/sys/bus/pci/drivers/vfio-pci/${p.a}`);
    s.readlink(`${dev(p.a)}/vfio-dev`, "a directory");
    s.readlink(`${dev(p.a)}/vfio-dev/vfio0`, "a directory");
    s.readlink("/sys/class/vfio-dev/vfio0/subsystem");
    s.readlink(`${dev(p.a)}/vfio-dev/vfio0/subsystem`);
    s.readlink(`${dev(p.a)}/vfio-dev/vfio0/device`);
    s.readlink(`${dev(p.a)}/driver/module`);
    s.readlink(`${dev(p.a)}/subsystem`);
    s.readlink(`/sys/bus/pci/drivers/${p.drv}/${p.b}`);
    look();
    out.push(s);
  }
  // hot reset of a member opened through its cdev
  {
    const s = bothOnVfio(
      p,
      `hot-reset-${p.tag}`,
      `group ${p.group}: HOT_RESET_INFO devids and the empty-array reset as the sibling is bound`,
    );
    s.open("/dev/vfio/devices/vfio0", "da");
    s.open("/dev/vfio/devices/vfio1", "db");
    bind(s, "$i", { dev: "$da", note: "a: devid 2" });
    resetInfo(s, "$da", "b open, not bound");
    reset(s, "$da", "b open, not bound");
    bind(s, "$i", { dev: "$db", note: "b: devid 3" });
    resetInfo(s, "$da", "both bound");
    resetInfo(s, "$db", "from b");
    reset(s, "$da", "both bound");
    attach(s, 1, { dev: "$da", note: "a attached" });
    reset(s, "$db", "a attached, from b");
    s.close("$db", "close b");
    resetInfo(s, "$da", "b closed");
    reset(s, "$da", "b closed");
    s.sysfsWrite(`${dev(p.b)}/driver/unbind`, p.b, "b off vfio-pci");
    resetInfo(s, "$da", "b on no driver");
    reset(s, "$da", "b on no driver");
    s.close("$da");
    out.push(s);
  }
  return out;
}

/**
 * The legacy-bridge group (4): e1000 02:01.0, rtl8139 02:02.0, edu 02:03.0 (no driver)
 * and, behind the nested PCI bridge 02:04.0, e1000 03:01.0; bound one by one while the
 * first is bound to an iommufd, hot reset info and reset of the whole bus at each step.
 */
function legacyCase(): GeneratedCase {
  const [e1, rtl, edu, br, e2] = ["02:01.0", "02:02.0", "02:03.0", "02:04.0", "03:01.0"].map(
    (b) => `0000:${b}`,
  ) as [string, string, string, string, string];
  const s = new Script(
    "legacy-bridge",
    "group 4 behind a PCIe-to-PCI bridge: BIND_IOMMUFD as members leave their drivers; bus reset",
  );
  s.open("/dev/iommu", "i");
  ioasAlloc(s, "ioas 1");
  bindVfio(s, e1);
  s.open("/dev/vfio/devices/vfio0", "d");
  bind(s, "$i", { note: "rtl8139 and the nested e1000 on their drivers" });
  s.sysfsWrite(`${dev(rtl)}/driver/unbind`, rtl, "release the rtl8139");
  bind(s, "$i", { note: "the nested e1000 still on its driver" });
  s.sysfsWrite(`${dev(e2)}/driver/unbind`, e2, "release the nested e1000");
  bind(s, "$i", { note: "devid 2" });
  resetInfo(s, "$d", "others on no driver", 6);
  reset(s, "$d", "others on no driver");
  for (const b of [rtl, edu, e2]) bindVfio(s, b, false);
  resetInfo(s, "$d", "all on vfio-pci, not open", 6);
  reset(s, "$d", "all on vfio-pci, not open");
  s.readlink("/sys/class/vfio-dev/vfio1", "the rtl8139's cdev");
  s.open("/dev/vfio/devices/vfio1", "d1");
  bind(s, "$i", { dev: "$d1", note: "the rtl8139: devid 3" });
  resetInfo(s, "$d", "two bound", 6);
  resetInfo(s, "$d", "room for 2", 2);
  reset(s, "$d1", "two bound, from the rtl8139");
  bindVfio(s, br, false);
  bindVfio(s, "0000:01:00.0", false);
  attach(s, 1, { note: "attach ioas 1" });
  attach(s, 1, { dev: "$d1", note: "the rtl8139 too" });
  s.close("$d");
  reset(s, "$d1", "the first closed");
  s.close("$d1");
  return {
    name: s.name,
    family: "iommufd-topology",
    spec: { ...LEGACY, kernel: "iommufd" },
    script: s,
  };
}

/**
 * The `reset` attribute of the small machine's functions: each value, each driver, with the
 * device bound through its cdev, after reset_method changes; config space after a reset.
 */
function resetCase(): GeneratedCase {
  const s = new Script("sysfs-reset", "writes to reset: values, drivers, a bound cdev, methods");
  const r = (bdf: string, v: string, note?: string) => s.sysfsWrite(`${dev(bdf)}/reset`, v, note);
  for (const bdf of [NVME, NIC]) s.sysfsRead(`${dev(bdf)}/reset_method`);
  for (const v of ["1", "0", "2", "0x1", "1\n", "01", "one", " 1"]) r(NIC, v, `"${v}" on e1000e`);
  r(NVME, "1", "nvme on its driver");
  bindVfio(s, NIC);
  r(NIC, "1", "on vfio-pci");
  s.open("/dev/iommu", "i");
  s.open("/dev/vfio/devices/vfio0", "d");
  bind(s, "$i", { note: "devid 1" });
  s.pwrite("$d", CONFIG + 4, "0700", "command: IO|MEM|MASTER");
  r(NIC, "1", "bound through the cdev");
  s.pread("$d", CONFIG + 4, 2, "command after the reset");
  s.ioctl("$d", "VFIO_DEVICE_GET_INFO", st(V.vfio_device_info, { argsz: 24 }), {
    note: "the device still answers",
  });
  s.sysfsWrite(`${dev(NIC)}/reset_method`, "bus", "bus only");
  r(NIC, "1", "bus reset");
  s.sysfsWrite(`${dev(NIC)}/reset_method`, "", "none");
  s.sysfsRead(`${dev(NIC)}/reset_method`);
  r(NIC, "1", "no method left");
  s.sysfsWrite(`${dev(NIC)}/reset_method`, "default", "back to the defaults");
  r(NIC, "1", "defaults");
  s.close("$d");
  return {
    name: s.name,
    family: "iommufd-topology",
    spec: { ...SMALL, kernel: "iommufd" },
    script: s,
  };
}

/** VT-d variants of the small machine. */
const VTD: [string, string][] = [
  ["scalable", "x-scalable-mode=on"],
  ["nosnoop", "snoop-control=off"],
  ["aw39", "aw-bits=39"],
  ["aw48", "aw-bits=48"],
  ["scalable-aw48", "x-scalable-mode=on,aw-bits=48"],
  ["caching", "caching-mode=on"],
  ["pasid", "x-scalable-mode=on,x-pasid-mode=on"],
  ["nopt", "pt=off"],
  ["device-iotlb", "device-iotlb=on"],
  ["aw48-caching-nosnoop", "snoop-control=off,aw-bits=48,caching-mode=on"],
];

function vtdCase(tag: string, opts: string): GeneratedCase {
  const spec = vtdSpec(opts);
  const s = new Script(
    `vtd-${tag}`,
    `VT-d with ${opts}: GET_HW_INFO, IOVA ranges, HWPT_ALLOC flags, dirty tracking`,
  );
  const used = (note: string) => s.sysfsRead(`${UNIT}/domains_used`, note);
  for (const a of ["version", "cap", "ecap", "domains_supported"]) s.sysfsRead(`${UNIT}/${a}`);
  used("at boot");
  s.open("/dev/iommu", "i");
  s.mmap(64 * K, "buf");
  s.mmap(4096, "hw");
  s.mmap(4096, "rg");
  ioasAlloc(s, "ioas 1");
  bindVfio(s, NIC);
  s.open("/dev/vfio/devices/vfio0", "d");
  bind(s, "$i", { note: "devid 2" });
  s.ioctl(
    "$i",
    "IOMMU_GET_HW_INFO",
    st(I.iommu_hw_info, { size: 40, dev_id: 2, data_len: 64, data_uptr: "$hw" }),
    { note: "vtd data and capabilities" },
  );
  s.check("hw", 0, "00".repeat(32));
  ranges(s, { note: "before attach" });
  hwptAlloc(s, "hwpt 3");
  used("bound, hwpt 3 allocated");
  attach(s, 3, { note: "attach hwpt 3" });
  used("attached");
  ranges(s, { note: "attached" });
  s.check("rg", 0, "00".repeat(32));
  s.ioctl(
    "$i",
    "IOMMU_HWPT_ALLOC",
    st(I.iommu_hwpt_alloc, {
      size: 48,
      dev_id: 2,
      pt_id: 3,
      data_type: I.IOMMU_HWPT_DATA_VTD_S1,
      data_len: 24,
      data_uptr: "$hw",
    }),
    { note: "a nested VTD_S1 hwpt on hwpt 3" },
  );
  const top = (bits: number) => (1n << BigInt(bits)) - BigInt(64 * K);
  for (const bits of [39, 48, 57])
    map(s, top(bits), 64 * K, { note: `the top 64K of ${bits} bits` });
  map(s, 1n << 39n, 64 * K, { note: "at 2^39" });
  map(s, 1n << 48n, 64 * K, { note: "at 2^48" });
  const flags: [number, string][] = [
    [I.IOMMU_HWPT_ALLOC_NEST_PARENT, "NEST_PARENT"],
    [I.IOMMU_HWPT_ALLOC_DIRTY_TRACKING, "DIRTY_TRACKING"],
    [I.IOMMU_HWPT_ALLOC_NEST_PARENT | I.IOMMU_HWPT_ALLOC_DIRTY_TRACKING, "both"],
  ];
  for (const [f, what] of flags) {
    hwptAlloc(s, `${what}: hwpt 4`, { flags: f });
    attach(s, 4, { note: `attach the ${what} hwpt` });
    s.ioctl(
      "$i",
      "IOMMU_HWPT_SET_DIRTY_TRACKING",
      st(I.iommu_hwpt_set_dirty_tracking, {
        size: 16,
        flags: I.IOMMU_HWPT_DIRTY_TRACKING_ENABLE,
        hwpt_id: 4,
      }),
      { note: "enable dirty tracking" },
    );
    s.ioctl(
      "$i",
      "IOMMU_HWPT_GET_DIRTY_BITMAP",
      st(I.iommu_hwpt_get_dirty_bitmap, {
        size: 48,
        hwpt_id: 4,
        iova: v64(0),
        length: v64(64 * K),
        page_size: 4096,
        data: "$hw",
      }),
      { note: "read the bitmap" },
    );
    attach(s, 3, { note: "back to hwpt 3" });
    destroy(s, 4, `destroy the ${what} hwpt`);
  }
  faultQueue(s, "a fault queue: id 4", { fd: "fq" });
  hwptAlloc(s, "an iopf-capable hwpt: 5", { fault: 4 });
  attach(s, 5, { note: "attach it (no PRI)" });
  s.close("$d", "the device to the group path: the compat container");
  used("closed");
  attachGroup(s, NIC_GROUP);
  s.ioctl("$c", "VFIO_SET_IOMMU", V.VFIO_TYPE1v2_IOMMU);
  iommuInfo(s, 128, "iova ranges of the compat container");
  used("compat container");
  mapDma(s, top(48), 64 * K, { note: "the top 64K of 48 bits" });
  return { name: s.name, family: "iommufd-topology", spec, script: s };
}

/**
 * The group-acs machine's edu functions through their cdevs: one sharing its group with the
 * root port above it, one with an e1000e function of the same device, one integrated.
 */
function acsCase(): GeneratedCase {
  const s = new Script(
    "acs-edu",
    "edu functions with a root port, an e1000e sibling, an integrated sibling: bind, hot reset",
  );
  s.open("/dev/iommu", "i");
  ioasAlloc(s, "ioas 1");
  const cdev = (bdf: string, n: number, note: string) => {
    bindVfio(s, bdf, false);
    s.readlink(`/sys/class/vfio-dev/vfio${n}`);
    s.open(`/dev/vfio/devices/vfio${n}`, `d${n}`);
    bind(s, "$i", { dev: `$d${n}`, note });
    resetInfo(s, `$d${n}`, `${note}: hot reset info`);
    reset(s, `$d${n}`, `${note}: reset`);
    attach(s, 1, { dev: `$d${n}`, note: `${note}: attach` });
  };
  cdev("0000:02:00.0", 0, "edu below a port without ACS");
  cdev("0000:01:00.1", 1, "edu beside an e1000e on its driver");
  s.sysfsWrite(`${dev("0000:01:00.0")}/driver/unbind`, "0000:01:00.0", "release the e1000e");
  bind(s, "$i", { dev: "$d1", note: "the e1000e on no driver" });
  resetInfo(s, "$d1", "hot reset info");
  reset(s, "$d1", "reset");
  attach(s, 1, { dev: "$d1", note: "attach" });
  cdev("0000:00:06.0", 2, "integrated edu");
  for (const n of [0, 1, 2]) s.close(`$d${n}`);
  return {
    name: s.name,
    family: "iommufd-topology",
    spec: { ...ACS, kernel: "iommufd" },
    script: s,
  };
}

/** The e1000e's group switched to an identity default domain on a VT-d variant. */
function identityCase(tag: string, opts: string): GeneratedCase {
  const s = new Script(
    `vtd-identity-${tag}`,
    `VT-d with ${opts}: group ${NIC_GROUP}'s default domain to identity and back, a cdev user between`,
  );
  const g = `/sys/kernel/iommu_groups/${NIC_GROUP}`;
  const type = (v: string, note: string) => {
    s.sysfsWrite(`${g}/type`, v, note);
    s.sysfsRead(`${g}/type`);
    s.sysfsRead(`${UNIT}/domains_used`);
  };
  s.sysfsRead(`${UNIT}/domains_used`);
  s.sysfsWrite(`${dev(NIC)}/driver/unbind`, NIC, "e1000e to no driver");
  type("identity", "identity");
  type("DMA", "DMA");
  type("identity", "identity again");
  bindVfio(s, NIC, false);
  s.open("/dev/iommu", "i");
  ioasAlloc(s, "ioas 1");
  s.open("/dev/vfio/devices/vfio0", "d");
  bind(s, "$i", { note: "devid 2" });
  attach(s, 1, { note: "attach ioas 1" });
  s.sysfsRead(`${UNIT}/domains_used`);
  s.close("$d");
  s.sysfsRead(`${g}/type`, "after the cdev user");
  type("auto", "auto");
  return { name: s.name, family: "iommufd-topology", spec: vtdSpec(opts), script: s };
}

export function generate(): GeneratedCase[] {
  return [
    ...PAIRS.flatMap(groupCases).map((s): GeneratedCase => ({
      name: s.name,
      family: "iommufd-topology",
      spec: { ...NONVIABLE, kernel: "iommufd" },
      script: s,
    })),
    legacyCase(),
    acsCase(),
    resetCase(),
    ...VTD.map(([tag, opts]) => vtdCase(tag, opts)),
    ...VTD.filter(([t]) => ["scalable", "nopt", "aw48"].includes(t)).map(([tag, opts]) =>
      identityCase(tag, opts),
    ),
    identityCase("scalable-nopt", "x-scalable-mode=on,pt=off"),
  ];
}
