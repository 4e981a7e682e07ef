/**
 * kvm-vfio: KVM_DEV_VFIO_FILE_ADD/DEL with every kind of fd (VFIO group, dup'd group,
 * group of another device, device fd, container, the kvm-vfio device itself, a VM,
 * /dev/kvm, an eventfd, a proc file, closed and invalid numbers), walks over the order
 * of adding, deleting, attaching the group to a container and closing the group, the
 * VM and the device, and one group shared by two VMs.
 */
import * as K from "../../uapi/kvm.js";
import * as V from "../../uapi/vfio.js";
import {
  NIC,
  NIC_GROUP,
  NVME,
  NVME_GROUP,
  SMALL,
  bindVfio,
  createDevice,
  deviceAttr,
  getDevice,
  groupStatus,
  permutations,
  setContainer,
} from "./common.js";
import { Script, raw, st, type GeneratedCase } from "./dsl.js";

function file(s: Script, kv: string, a: number, fd: string | number, note?: string): void {
  deviceAttr(s, `$${kv}`, "KVM_SET_DEVICE_ATTR", K.KVM_DEV_VFIO_FILE, a, {
    addr: raw(["s32", "fd", fd]),
    note,
  });
}
const add = (s: Script, kv: string, fd: string | number, note?: string) =>
  file(s, kv, K.KVM_DEV_VFIO_FILE_ADD, fd, note);
const del = (s: Script, kv: string, fd: string | number, note?: string) =>
  file(s, kv, K.KVM_DEV_VFIO_FILE_DEL, fd, note);

function vm(s: Script, n = ""): void {
  if (!n) s.open("/dev/kvm", "kvm");
  s.ioctl("$kvm", "KVM_CREATE_VM", 0, { as: `vm${n}` });
  createDevice(s, `$vm${n}`, K.KVM_DEV_TYPE_VFIO, 0, `kv${n}`);
}

/** A container c for the open group g, type1v2 set. */
function attached(s: Script): Script {
  s.open("/dev/vfio/vfio", "c");
  setContainer(s, "g", "c");
  return s.ioctl("$c", "VFIO_SET_IOMMU", V.VFIO_TYPE1v2_IOMMU);
}

export function generate(): GeneratedCase[] {
  const out: GeneratedCase[] = [];
  const mk = (s: Script) => out.push({ name: s.name, family: "kvm-vfio", spec: SMALL, script: s });

  // one kind of fd per case: ADD, ADD again, DEL, DEL again, then a real group still works
  const kinds: [string, (s: Script) => string | number][] = [
    ["group", () => "$g"],
    ["group-dup", (s) => (s.dup("$g", "gd"), "$gd")],
    ["group-rdonly", (s) => (s.open(`/dev/vfio/${NVME_GROUP}`, "gr", ["O_RDONLY"]), "$gr")],
    ["group-attached", (s) => (attached(s), "$g")],
    ["device", (s) => (attached(s), getDevice(s, "g", NVME, "d"), "$d")],
    ["container", (s) => (s.open("/dev/vfio/vfio", "c"), "$c")],
    ["container-attached", (s) => (s.open("/dev/vfio/vfio", "c"), setContainer(s, "g", "c"), "$c")],
    ["kvm-vfio-itself", () => "$kv"],
    ["vm", () => "$vm"],
    ["dev-kvm", () => "$kvm"],
    ["eventfd", (s) => (s.eventfd("ev"), "$ev")],
    ["proc-file", (s) => (s.open("/proc/cmdline", "pf", ["O_RDONLY"]), "$pf")],
    ["closed", (s) => (s.eventfd("cl"), s.close("$cl"), "$cl")],
    ["minus-one", () => -1],
    ["large", () => 4096],
    ["other-vm-device", (s) => (vm(s, "2"), "$kv2")],
  ];
  for (const [kind, make] of kinds) {
    const s = new Script(`file-${kind}`, `FILE_ADD/FILE_DEL given ${kind}`);
    bindVfio(s, NVME);
    s.open(`/dev/vfio/${NVME_GROUP}`, "g");
    vm(s);
    const fd = make(s);
    add(s, "kv", fd, `add ${kind}`);
    add(s, "kv", fd, "add again");
    deviceAttr(s, "$kv", "KVM_HAS_DEVICE_ATTR", 1, 1);
    del(s, "kv", fd, `del ${kind}`);
    del(s, "kv", fd, "del again");
    add(s, "kv", "$g", "the group");
    del(s, "kv", "$g", "and away");
    if (typeof fd === "string" && fd !== "$g") del(s, "kv", fd, "del after the group left");
    groupStatus(s, "g");
    mk(s);
  }

  // walks: the order of add, del, attach, detach, closing the group and the VM
  type A = "add" | "del" | "attach" | "unset" | "closeG" | "closeVm" | "closeKv";
  const step = (s: Script, a: A) => {
    if (a === "add") add(s, "kv", "$g", "add the group");
    else if (a === "del") del(s, "kv", "$g", "delete the group");
    else if (a === "attach") {
      setContainer(s, "g", "c", "attach to the container");
      s.ioctl("$c", "VFIO_SET_IOMMU", V.VFIO_TYPE1v2_IOMMU);
    } else if (a === "unset") s.ioctl("$g", "VFIO_GROUP_UNSET_CONTAINER", 0, { note: "detach" });
    else if (a === "closeG") s.close("$g", "close the group");
    else if (a === "closeVm") s.close("$vm", "close the VM");
    else s.close("$kv", "close the kvm-vfio device");
  };
  const walk = (acts: A[], tag: string) => {
    const s = new Script(`walk-${tag}`, `kvm-vfio: ${acts.join(", ")}`);
    bindVfio(s, NVME);
    s.open("/dev/vfio/vfio", "c");
    s.open(`/dev/vfio/${NVME_GROUP}`, "g");
    vm(s);
    for (const a of acts) {
      step(s, a);
      groupStatus(s, "g");
    }
    add(s, "kv", "$g", "add at the end");
    del(s, "kv", "$g", "delete at the end");
    s.open(`/dev/vfio/${NVME_GROUP}`, "g_again", ["O_RDWR"], "open the group again");
    s.close("$g");
    s.close("$vm");
    s.close("$kv");
    s.open(`/dev/vfio/${NVME_GROUP}`, "g_last", ["O_RDWR"], "after everything is closed");
    mk(s);
  };
  const SHORT: Record<A, string> = {
    add: "A",
    del: "D",
    attach: "S",
    unset: "U",
    closeG: "xg",
    closeVm: "xvm",
    closeKv: "xkv",
  };
  permutations<A>(["add", "del", "attach", "closeG"]).forEach((p) =>
    walk(p, p.map((a) => SHORT[a]).join("-")),
  );
  permutations<A>(["add", "attach", "closeVm", "closeKv"]).forEach((p, i) => {
    if (i % 2 === 0) walk(p, p.map((a) => SHORT[a]).join("-"));
  });
  for (const p of [
    ["attach", "add", "unset", "del"],
    ["add", "attach", "unset", "closeG", "del"],
    ["add", "add", "del", "del"],
    ["attach", "add", "closeG", "closeKv", "closeVm"],
  ] as A[][])
    walk(p, p.map((a) => SHORT[a]).join("-"));

  // one group in two VMs; two groups in one VM
  {
    const s = new Script("two-vms", "the same group added to two VMs' kvm-vfio devices");
    bindVfio(s, NVME);
    s.open(`/dev/vfio/${NVME_GROUP}`, "g");
    vm(s);
    vm(s, "2");
    add(s, "kv", "$g", "VM 1");
    add(s, "kv2", "$g", "VM 2");
    s.close("$vm");
    s.close("$kv");
    del(s, "kv2", "$g", "VM 2 deletes");
    add(s, "kv2", "$g", "VM 2 adds again");
    s.close("$g");
    del(s, "kv2", "$g", "closed group fd");
    s.open(`/dev/vfio/${NVME_GROUP}`, "g2", ["O_RDWR"], "reopen while VM 2 holds it");
    s.close("$vm2");
    s.close("$kv2");
    s.open(`/dev/vfio/${NVME_GROUP}`, "g3", ["O_RDWR"], "reopen after VM 2 is gone");
    mk(s);
  }
  {
    const s = new Script("two-groups", "two groups in one VM, deleted and closed in turn");
    bindVfio(s, NVME);
    bindVfio(s, NIC);
    s.open(`/dev/vfio/${NVME_GROUP}`, "g4");
    s.open(`/dev/vfio/${NIC_GROUP}`, "g5");
    vm(s);
    add(s, "kv", "$g4");
    add(s, "kv", "$g5");
    del(s, "kv", "$g4");
    add(s, "kv", "$g4", "back");
    s.close("$g5");
    del(s, "kv", "$g5", "g5's fd is closed");
    s.open(`/dev/vfio/${NIC_GROUP}`, "g5b", ["O_RDWR"], "reopen g5 while the VM holds it");
    del(s, "kv", "$g5b", "delete through the new fd");
    s.open("/dev/vfio/vfio", "c");
    setContainer(s, "g4", "c");
    setContainer(s, "g5b", "c");
    s.ioctl("$c", "VFIO_SET_IOMMU", V.VFIO_TYPE1v2_IOMMU);
    getDevice(s, "g4", NVME, "d4");
    getDevice(s, "g5b", NIC, "d5");
    add(s, "kv", "$d5", "a device fd of the other group");
    del(s, "kv", "$g5b", "its group");
    del(s, "kv", "$d5", "the device fd");
    mk(s);
  }
  {
    const s = new Script(
      "attrs-with-files",
      "FILE group attributes other than ADD/DEL, with a real group",
    );
    bindVfio(s, NVME);
    s.open(`/dev/vfio/${NVME_GROUP}`, "g");
    vm(s);
    for (const a of [0, 3, 4, 0x100]) {
      file(s, "kv", a, "$g", `attr ${a}`);
      deviceAttr(s, "$kv", "KVM_HAS_DEVICE_ATTR", 1, a, { note: `HAS attr ${a}` });
    }
    const tce = st(K.kvm_vfio_spapr_tce, { groupfd: "$g", tablefd: -1 });
    const g = raw(["s32", "fd", "$g"]);
    const set = "KVM_SET_DEVICE_ATTR";
    deviceAttr(s, "$kv", set, K.KVM_DEV_VFIO_FILE, K.KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE, {
      addr: tce,
      note: "SET_SPAPR_TCE",
    });
    deviceAttr(s, "$kv", set, 1, 1, { flags: 1, addr: g, note: "flags 1" });
    deviceAttr(s, "$kv", set, 2, 1, { addr: g, note: "group 2" });
    add(s, "kv", "$g");
    deviceAttr(s, "$kv", "KVM_GET_DEVICE_ATTR", 1, 1, { addr: g, note: "GET" });
    del(s, "kv", "$g");
    mk(s);
  }
  return out;
}
