/**
 * The KVM device framework without VFIO files: KVM_CREATE_DEVICE over every device type,
 * TEST and each flag bit, on the right and the wrong kinds of fd; the kvm-vfio device's
 * HAS/GET/SET_DEVICE_ATTR over groups x attributes x flags and argument pointers; the
 * lifetimes of /dev/kvm, VM and device fds closed in every order; KVM_CHECK_EXTENSION over
 * the capability numbers on /dev/kvm and on a VM; KVM_CREATE_VM's machine types. No sysfs
 * is written and no VFIO node opened: these scripts also run on a host's own /dev/kvm
 * (`passthru oracle diff --backend host`).
 */
import * as K from "../../uapi/kvm.js";
import { SMALL, createDevice, deviceAttr, permutations } from "./common.js";
import { Script, raw, type GeneratedCase } from "./dsl.js";

function ready(name: string, note: string): Script {
  const s = new Script(name, note);
  s.open("/dev/kvm", "kvm");
  s.ioctl("$kvm", "KVM_CREATE_VM", 0, { as: "vm" });
  return s;
}

export function generate(): GeneratedCase[] {
  const out: GeneratedCase[] = [];
  const mk = (s: Script) =>
    out.push({ name: s.name, family: "kvm-device", spec: SMALL, script: s });

  // device types, TEST then create, in chunks
  const TYPES = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 0x7fffffff, 0xffffffff];
  for (let c = 0; c < TYPES.length; c += 4) {
    const types = TYPES.slice(c, c + 4);
    const s = ready(
      `create-types-${types[0]}`,
      `KVM_CREATE_DEVICE types ${types.join(", ")}: TEST, create, again`,
    );
    for (const t of types) {
      createDevice(s, "$vm", t, K.KVM_CREATE_DEVICE_TEST, undefined, `TEST type ${t}`);
      createDevice(s, "$vm", t, 0, `dev${t}`, `create type ${t}`);
      createDevice(s, "$vm", t, 0, `dev${t}b`, `create type ${t} again`);
      createDevice(s, "$vm", t, K.KVM_CREATE_DEVICE_TEST, undefined, `TEST type ${t} again`);
    }
    mk(s);
  }
  // each flag bit, each on a fresh VM
  for (const [lo, hi] of [
    [0, 16],
    [16, 32],
  ] as const) {
    const s = new Script(
      `create-flags-${lo}-${hi - 1}`,
      `KVM_CREATE_DEVICE(kvm-vfio) with flag bit ${lo}..${hi - 1}, a fresh VM each`,
    );
    s.open("/dev/kvm", "kvm");
    for (let b = lo; b < hi; b++) {
      s.ioctl("$kvm", "KVM_CREATE_VM", 0, { as: `vm${b}` });
      createDevice(s, `$vm${b}`, K.KVM_DEV_TYPE_VFIO, (1 << b) >>> 0, `kv${b}`, `flag bit ${b}`);
    }
    mk(s);
  }
  // the wrong fds for CREATE_DEVICE, a NULL or bad argument
  {
    const s = ready("create-wrong-fds", "KVM_CREATE_DEVICE on each kind of fd");
    s.eventfd("ev");
    s.ioctl("$kvm", "KVM_CREATE_VM", 0, { as: "vm2" });
    s.close("$vm2");
    for (const fd of ["$kvm", "$ev", "$vm2", -1, 1000])
      createDevice(s, fd, K.KVM_DEV_TYPE_VFIO, 0, undefined, `fd ${fd}`);
    createDevice(s, "$vm", K.KVM_DEV_TYPE_VFIO, 0, "kv");
    createDevice(s, "$kv", K.KVM_DEV_TYPE_VFIO, 0, undefined, "on the device fd");
    s.ioctl("$vm", "KVM_CREATE_DEVICE", "NULL", { note: "NULL" });
    s.ioctl("$vm", "KVM_CREATE_DEVICE", 1, { note: "a bad pointer" });
    s.mmap(4096, "ro", "r");
    s.ioctl("$vm", "KVM_CREATE_DEVICE", "$ro", { note: "read-only memory (type 0)" });
    mk(s);
  }
  // attribute sweeps on a kvm-vfio device: request x flags
  for (const req of ["KVM_HAS_DEVICE_ATTR", "KVM_GET_DEVICE_ATTR", "KVM_SET_DEVICE_ATTR"]) {
    for (const flags of [0, 1]) {
      const short = req.split("_")[1]?.toLowerCase() as string;
      const s = ready(
        `attr-${short}-flags${flags}`,
        `${req} with flags ${flags} over groups x attributes (no file)`,
      );
      createDevice(s, "$vm", K.KVM_DEV_TYPE_VFIO, 0, "kv");
      for (const g of [0, 1, 2, 3, 0xffffffff])
        for (const a of [0n, 1n, 2n, 3n, 4n, 1n << 32n])
          deviceAttr(s, "$kv", req, g, a, { flags, addr: 0, note: `group ${g} attr ${a}` });
      mk(s);
    }
  }
  // the addr pointer of FILE_ADD/DEL: NULL, bad, unmapped, read-only, and the fds in it
  {
    const s = ready("attr-addr-kinds", "SET_DEVICE_ATTR(FILE_ADD/DEL) with each kind of addr");
    createDevice(s, "$vm", K.KVM_DEV_TYPE_VFIO, 0, "kv");
    s.mmap(4096, "ro", "r");
    s.mmap(4096, "gone");
    s.munmap("gone");
    for (const a of [K.KVM_DEV_VFIO_FILE_ADD, K.KVM_DEV_VFIO_FILE_DEL]) {
      deviceAttr(s, "$kv", "KVM_SET_DEVICE_ATTR", 1, a, { addr: 0, note: "addr NULL" });
      deviceAttr(s, "$kv", "KVM_SET_DEVICE_ATTR", 1, a, { addr: 1, note: "addr 1" });
      deviceAttr(s, "$kv", "KVM_SET_DEVICE_ATTR", 1, a, {
        addr: "$ro",
        note: "read-only page of zeros (fd 0)",
      });
      deviceAttr(s, "$kv", "KVM_SET_DEVICE_ATTR", 1, a, { addr: "$gone", note: "unmapped" });
      for (const fd of [-1, 0, 1, 2, 1000, 0x7fffffff])
        deviceAttr(s, "$kv", "KVM_SET_DEVICE_ATTR", 1, a, {
          addr: raw(["s32", "fd", fd]),
          note: `fd ${fd}`,
        });
    }
    mk(s);
  }
  // requests that are not the device's on the device fd, and device requests elsewhere
  {
    const s = ready(
      "device-fd-requests",
      "other requests on the kvm-vfio fd; attribute requests on other fds",
    );
    createDevice(s, "$vm", K.KVM_DEV_TYPE_VFIO, 0, "kv");
    s.ioctl("$kv", "KVM_CHECK_EXTENSION", K.KVM_CAP_DEVICE_CTRL);
    s.ioctl("$kv", "KVM_GET_API_VERSION", 0);
    s.ioctl("$kv", "KVM_CREATE_VM", 0, { as: "vmx" });
    s.ioctl("$kv", "VFIO_GET_API_VERSION", 0);
    s.ioctl("$kv", "KVM_RUN", 0);
    for (const fd of ["$vm", "$kvm"]) {
      deviceAttr(s, fd, "KVM_HAS_DEVICE_ATTR", 1, 1, { note: `HAS on ${fd}` });
      deviceAttr(s, fd, "KVM_GET_DEVICE_ATTR", 1, 1, { note: `GET on ${fd}` });
      deviceAttr(s, fd, "KVM_SET_DEVICE_ATTR", 1, 1, { note: `SET on ${fd}` });
    }
    s.ioctl("$kvm", "KVM_CHECK_EXTENSION", K.KVM_CAP_DEVICE_CTRL);
    s.ioctl("$vm", "KVM_CHECK_EXTENSION", K.KVM_CAP_DEVICE_CTRL);
    s.dup("$kv", "kvd");
    deviceAttr(s, "$kvd", "KVM_HAS_DEVICE_ATTR", 1, 1, { note: "through a dup" });
    s.close("$kv");
    deviceAttr(s, "$kvd", "KVM_HAS_DEVICE_ATTR", 1, 1, { note: "the original closed" });
    createDevice(s, "$vm", K.KVM_DEV_TYPE_VFIO, 0, "kv2", "another, while the dup holds the first");
    mk(s);
  }
  // lifetimes: close /dev/kvm, the VM and the device in every order, using what is left
  for (const p of permutations(["kvm", "vm", "kv"])) {
    const s = ready(`close-${p.join("-")}`, `create a kvm-vfio device, then close ${p.join(", ")}`);
    createDevice(s, "$vm", K.KVM_DEV_TYPE_VFIO, 0, "kv");
    for (const f of p) {
      s.close(`$${f}`, `close ${f}`);
      deviceAttr(s, "$kv", "KVM_HAS_DEVICE_ATTR", 1, 1, { note: "the device" });
      createDevice(s, "$vm", K.KVM_DEV_TYPE_VFIO, K.KVM_CREATE_DEVICE_TEST, undefined, "the VM");
      s.ioctl("$kvm", "KVM_GET_API_VERSION", 0, { note: "/dev/kvm" });
    }
    s.open("/dev/kvm", "kvm2");
    s.ioctl("$kvm2", "KVM_CREATE_VM", 0, { as: "vm2" });
    createDevice(s, "$vm2", K.KVM_DEV_TYPE_VFIO, 0, "kv2", "a new VM and device");
    mk(s);
  }
  // many VMs, each with its device
  {
    const s = new Script("many-vms", "eight VMs, a kvm-vfio device in each, closed out of order");
    s.open("/dev/kvm", "kvm");
    for (let i = 0; i < 8; i++) {
      s.ioctl("$kvm", "KVM_CREATE_VM", 0, { as: `vm${i}` });
      createDevice(s, `$vm${i}`, K.KVM_DEV_TYPE_VFIO, 0, `kv${i}`);
    }
    for (const i of [3, 0, 7, 5]) {
      s.close(`$vm${i}`);
      deviceAttr(s, `$kv${i}`, "KVM_HAS_DEVICE_ATTR", 1, 2);
    }
    for (const i of [1, 2, 4, 6]) createDevice(s, `$vm${i}`, K.KVM_DEV_TYPE_VFIO, 0, `again${i}`);
    mk(s);
  }
  // VM types and /dev/kvm requests with odd arguments
  {
    const s = new Script(
      "create-vm-types",
      "KVM_CREATE_VM machine types; system requests with arguments",
    );
    s.open("/dev/kvm", "kvm");
    for (const t of [0, 1, 2, 3, 4, 5, 8, 0x80000000, 0xffffffff])
      s.ioctl("$kvm", "KVM_CREATE_VM", t, { as: `vm_${t}`, note: `type ${t}` });
    s.ioctl("$kvm", "KVM_GET_API_VERSION", 1, { note: "an argument" });
    s.ioctl("$kvm", "KVM_GET_VCPU_MMAP_SIZE", 0);
    s.ioctl("$kvm", "KVM_GET_VCPU_MMAP_SIZE", 1);
    s.ioctl("$kvm", "KVM_CHECK_EXTENSION", K.KVM_CAP_VM_TYPES);
    s.ioctl("$vm_0", "KVM_CHECK_EXTENSION", K.KVM_CAP_VM_TYPES);
    s.open("/dev/kvm", "kvm_ro", ["O_RDONLY"]);
    s.ioctl("$kvm_ro", "KVM_CREATE_VM", 0, { as: "vm_ro", note: "from a read-only /dev/kvm" });
    s.ioctl("$kvm_ro", "KVM_GET_API_VERSION", 0);
    mk(s);
  }
  // capabilities
  for (let lo = 0; lo < 240; lo += 48) {
    for (const where of ["kvm", "vm"]) {
      const s =
        where === "vm"
          ? ready(`caps-vm-${lo}`, `KVM_CHECK_EXTENSION ${lo}..${lo + 47} on a VM`)
          : new Script(`caps-kvm-${lo}`, `KVM_CHECK_EXTENSION ${lo}..${lo + 47} on /dev/kvm`);
      if (where === "kvm") s.open("/dev/kvm", "kvm");
      for (let c = lo; c < lo + 48; c++)
        s.ioctl(`$${where}`, "KVM_CHECK_EXTENSION", c, { note: `cap ${c}` });
      mk(s);
    }
  }
  return out;
}
