/**
 * A group of more than one device: two e1000 functions (01:00.0, 01:00.1) behind a root
 * port without ACS share group 1 with the port. The group is viable only when every
 * endpoint in it is bound to vfio-pci (or to no driver; the port stays with pcieport):
 * walks over the order of binding each function, opening the group and attaching it,
 * device fds for each function, and a function leaving for its driver while the group is
 * in use (never one with an open device fd: its unbind would wait for the fd).
 */
import * as V from "../../uapi/vfio.js";
import {
  SHARED,
  attachGroup,
  bindVfio,
  getDevice,
  groupStatus,
  permutations,
  setContainer,
} from "./common.js";
import { Script, st, type GeneratedCase } from "./dsl.js";

const F0 = "0000:01:00.0";
const F1 = "0000:01:00.1";
const GROUP = 1;

/** Both functions on vfio-pci, the group attached to container c with type1v2 set. */
function ready(name: string, note: string): Script {
  const s = new Script(name, note);
  bindVfio(s, F0);
  bindVfio(s, F1);
  attachGroup(s, GROUP);
  return s.ioctl("$c", "VFIO_SET_IOMMU", V.VFIO_TYPE1v2_IOMMU);
}

export function generate(): GeneratedCase[] {
  const out: GeneratedCase[] = [];
  const mk = (s: Script) =>
    out.push({ name: s.name, family: "vfio-shared", spec: SHARED, script: s });

  type A = "bind0" | "bind1" | "open" | "set";
  const SHORT: Record<A, string> = { bind0: "b0", bind1: "b1", open: "O", set: "S" };
  for (const p of permutations<A>(["bind0", "bind1", "open", "set"])) {
    if (p.indexOf("open") > p.indexOf("set")) continue;
    const s = new Script(
      `viable-${p.map((a) => SHORT[a]).join("-")}`,
      `a two-function group: ${p.join(", ")}`,
    );
    s.open("/dev/vfio/vfio", "c");
    let opened = false;
    for (const a of p) {
      if (a === "bind0") bindVfio(s, F0);
      else if (a === "bind1") bindVfio(s, F1);
      else if (a === "open") {
        s.open(`/dev/vfio/${GROUP}`, "g", ["O_RDWR", "O_CLOEXEC"], "open the group");
        opened = true;
      } else setContainer(s, "g", "c", "attach");
      if (opened) groupStatus(s, "g");
    }
    s.ioctl("$c", "VFIO_SET_IOMMU", V.VFIO_TYPE1v2_IOMMU);
    getDevice(s, "g", F0, "d0");
    getDevice(s, "g", F1, "d1");
    getDevice(s, "g", "0000:00:02.0", "dport", "the root port in the same group");
    s.readlink(`/sys/bus/pci/devices/${F0}/iommu_group`);
    mk(s);
  }
  {
    const s = ready(
      "sibling-leaves",
      "the second function goes back to e1000 while the group is attached",
    );
    getDevice(s, "g", F0, "d0", "a device fd for the first function only");
    s.sysfsWrite(`/sys/bus/pci/devices/${F1}/driver_override`, "e1000");
    s.sysfsWrite(`/sys/bus/pci/devices/${F1}/driver/unbind`, F1, "the second leaves vfio-pci");
    s.readlink(`/sys/bus/pci/devices/${F1}/driver`);
    s.sysfsWrite("/sys/bus/pci/drivers_probe", F1, "and is probed (driver_override says e1000)");
    s.readlink(`/sys/bus/pci/devices/${F1}/driver`);
    groupStatus(s, "g");
    getDevice(s, "g", F0, "d0b", "another fd for the first");
    s.ioctl("$d0", "VFIO_DEVICE_RESET", 0);
    s.open(`/dev/vfio/${GROUP}`, "g2", ["O_RDWR"], "the group node again");
    mk(s);
  }
  {
    const s = ready(
      "both-devices",
      "device fds for both functions, closed and reopened; hot reset info",
    );
    getDevice(s, "g", F0, "d0");
    getDevice(s, "g", F1, "d1");
    for (const d of ["d0", "d1"]) {
      s.ioctl(
        `$${d}`,
        "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO",
        st(V.vfio_pci_hot_reset_info, { argsz: 64 }, { tail: { name: "devices", size: 52 } }),
      );
      s.ioctl(`$${d}`, "VFIO_DEVICE_RESET", 0);
    }
    s.close("$d0");
    s.ioctl("$g", "VFIO_GROUP_UNSET_CONTAINER", 0, { note: "one device fd still open" });
    s.close("$d1");
    s.ioctl("$g", "VFIO_GROUP_UNSET_CONTAINER", 0, { note: "none open" });
    groupStatus(s, "g");
    mk(s);
  }
  {
    const s = ready("hot-reset", "PCI_HOT_RESET_INFO room for 0, 1, 2 devices; PCI_HOT_RESET fds");
    getDevice(s, "g", F0, "d0");
    getDevice(s, "g", F1, "d1");
    for (const argsz of [12, 16, 19, 20, 27, 28, 36])
      s.ioctl(
        "$d0",
        "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO",
        st(V.vfio_pci_hot_reset_info, { argsz }, { tail: { name: "devices", size: 24 } }),
        { note: `argsz ${argsz}` },
      );
    s.open("/dev/vfio/vfio", "c2");
    const reset = (
      fds: (string | number)[],
      note: string,
      o: { argsz?: number; flags?: number } = {},
    ) =>
      s.ioctl(
        "$d1",
        "VFIO_DEVICE_PCI_HOT_RESET",
        {
          struct: [
            ...st(V.vfio_pci_hot_reset, {
              argsz: o.argsz ?? 12 + 4 * fds.length,
              flags: o.flags ?? 0,
              count: fds.length,
            }).struct,
            ...fds.map((fd, i): [string, string, string | number] => ["s32", `fd${i}`, fd]),
          ],
        },
        { note },
      );
    reset(["$g"], "the group");
    reset(["$g", "$g"], "the group twice");
    reset(["$g", "$g", "$g"], "three fds, two devices on the bus");
    reset(["$c"], "a container fd");
    reset(["$c2"], "an unattached container");
    reset(["$d0"], "a device fd");
    reset([-1], "fd -1");
    reset(["$g"], "flags 1", { flags: 1 });
    reset(["$g"], "argsz 11", { argsz: 11 });
    reset([], "count 0");
    s.close("$d0");
    reset(["$g"], "the group, one device fd closed");
    s.ioctl("$d1", "VFIO_DEVICE_RESET", 0, { note: "function reset" });
    mk(s);
  }
  return out;
}
