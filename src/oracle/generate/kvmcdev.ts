/**
 * kvm-vfio on the iommufd kernel, with the VFIO device cdev: walks over the order of
 * binding the cdev to iommufd, attaching it to an IOAS, FILE_ADD and FILE_DEL of it and
 * closing it; then each other kind of file this kernel has (a second open of the cdev, a
 * dup, /dev/iommu, the compat container, the group and a device fd from the group).
 */
import * as I from "../../uapi/iommufd.js";
import * as K from "../../uapi/kvm.js";
import * as V from "../../uapi/vfio.js";
import {
  NIC,
  NIC_GROUP,
  bindVfio,
  createDevice,
  deviceAttr,
  getDevice,
  permutations,
} from "./common.js";
import { Script, raw, st, type GeneratedCase } from "./dsl.js";
import { IOMMUFD_SMALL } from "./iommufd.js";

function file(s: Script, a: number, fd: string | number, note?: string): void {
  deviceAttr(s, "$kv", "KVM_SET_DEVICE_ATTR", K.KVM_DEV_VFIO_FILE, a, {
    addr: raw(["s32", "fd", fd]),
    note,
  });
}

/** /dev/iommu as i with IOAS 1, the nic's cdev open as d (not bound), a VM with kvm-vfio. */
function ready(name: string, note: string): Script {
  const s = new Script(name, note);
  s.open("/dev/iommu", "i");
  s.ioctl("$i", "IOMMU_IOAS_ALLOC", st(I.iommu_ioas_alloc, { size: 12 }), { note: "IOAS 1" });
  bindVfio(s, NIC);
  s.open("/dev/vfio/devices/vfio0", "d");
  s.open("/dev/kvm", "kvm");
  s.ioctl("$kvm", "KVM_CREATE_VM", 0, { as: "vm" });
  return createDevice(s, "$vm", K.KVM_DEV_TYPE_VFIO, 0, "kv");
}

const bind = (s: Script, note?: string) =>
  s.ioctl(
    "$d",
    "VFIO_DEVICE_BIND_IOMMUFD",
    st(V.vfio_device_bind_iommufd, { argsz: 16, iommufd: "$i" }),
    { note },
  );
const attach = (s: Script, note?: string) =>
  s.ioctl(
    "$d",
    "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
    st(V.vfio_device_attach_iommufd_pt, { argsz: 12, pt_id: 1 }),
    { note },
  );

export function generate(): GeneratedCase[] {
  const out: GeneratedCase[] = [];
  const mk = (s: Script) =>
    out.push({ name: s.name, family: "kvm-vfio-cdev", spec: IOMMUFD_SMALL, script: s });

  type A = "bind" | "attach" | "add" | "del" | "close";
  const SHORT: Record<A, string> = { bind: "B", attach: "T", add: "A", del: "D", close: "X" };
  const walk = (p: A[]) => {
    const s = ready(
      `walk-${p.map((a) => SHORT[a]).join("-")}`,
      `kvm-vfio and a cdev: ${p.join(", ")}`,
    );
    for (const a of p) {
      if (a === "bind") bind(s, "bind the cdev");
      else if (a === "attach") attach(s, "attach it to IOAS 1");
      else if (a === "add") file(s, K.KVM_DEV_VFIO_FILE_ADD, "$d", "add the cdev");
      else if (a === "del") file(s, K.KVM_DEV_VFIO_FILE_DEL, "$d", "delete the cdev");
      else s.close("$d", "close the cdev");
      deviceAttr(s, "$kv", "KVM_HAS_DEVICE_ATTR", 1, 1);
    }
    s.open(`/dev/vfio/${NIC_GROUP}`, "g", ["O_RDWR", "O_CLOEXEC"], "the group node");
    s.open("/dev/vfio/devices/vfio0", "d2", ["O_RDWR", "O_CLOEXEC"], "the cdev again");
    file(s, K.KVM_DEV_VFIO_FILE_ADD, "$d2", "add the new open");
    s.close("$kv");
    s.close("$vm");
    s.open(`/dev/vfio/${NIC_GROUP}`, "g3", ["O_RDWR", "O_CLOEXEC"], "after the VM is gone");
    mk(s);
  };
  for (const p of permutations<A>(["bind", "add", "del", "close"])) walk(p);
  for (const p of [
    ["bind", "attach", "add", "close"],
    ["add", "bind", "attach", "del"],
    ["attach", "bind", "add", "attach", "del", "close"],
  ] as A[][])
    walk(p);

  // each kind of file this kernel has, added, added again and deleted
  const kinds: [string, (s: Script) => string | number][] = [
    ["cdev-second-open", (s) => (s.open("/dev/vfio/devices/vfio0", "d2"), "$d2")],
    ["cdev-dup", (s) => (s.dup("$d", "dd"), "$dd")],
    ["cdev-rdonly", (s) => (s.open("/dev/vfio/devices/vfio0", "dr", ["O_RDONLY"]), "$dr")],
    ["iommufd", () => "$i"],
    ["compat-container", (s) => (s.open("/dev/vfio/vfio", "c"), "$c")],
    ["group", (s) => (s.close("$d"), s.open(`/dev/vfio/${NIC_GROUP}`, "g"), "$g")],
    [
      "group-device",
      (s) => {
        s.close("$d");
        s.open(`/dev/vfio/${NIC_GROUP}`, "g");
        s.open("/dev/vfio/vfio", "c");
        s.ioctl("$g", "VFIO_GROUP_SET_CONTAINER", raw(["s32", "fd", "$c"]));
        s.ioctl("$c", "VFIO_SET_IOMMU", V.VFIO_TYPE1v2_IOMMU);
        getDevice(s, "g", NIC, "gd");
        return "$gd";
      },
    ],
  ];
  for (const [kind, make] of kinds) {
    const s = ready(`file-${kind}`, `FILE_ADD/FILE_DEL given ${kind} on the iommufd kernel`);
    const fd = make(s);
    file(s, K.KVM_DEV_VFIO_FILE_ADD, fd, `add ${kind}`);
    file(s, K.KVM_DEV_VFIO_FILE_ADD, fd, "add again");
    deviceAttr(s, "$kv", "KVM_HAS_DEVICE_ATTR", 1, 1);
    file(s, K.KVM_DEV_VFIO_FILE_DEL, fd, `del ${kind}`);
    file(s, K.KVM_DEV_VFIO_FILE_DEL, fd, "del again");
    file(s, K.KVM_DEV_VFIO_FILE_ADD, fd, "add to close with the VM");
    s.close("$kv");
    s.close("$vm");
    s.open("/dev/vfio/devices/vfio0", "dlast", ["O_RDWR", "O_CLOEXEC"], "the cdev at the end");
    mk(s);
  }
  return out;
}
