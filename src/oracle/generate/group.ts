/**
 * Argument sweeps over the container and group ioctls: GET_API_VERSION and
 * CHECK_EXTENSION in every container state, SET_IOMMU with every IOMMU type (one case
 * each: a success changes the state), GET_STATUS argsz, SET_CONTAINER with every kind of
 * fd, GET_DEVICE_FD with names that are right, wrong, unterminated or of another group,
 * and ioctls sent to the wrong kind of VFIO file.
 */
import * as V from "../../uapi/vfio.js";
import {
  NIC,
  NIC_GROUP,
  NVME,
  NVME_GROUP,
  SMALL,
  SMALL_NOSNOOP,
  attachGroup,
  bindVfio,
  getDevice,
  groupStatus,
  setContainer,
  type1Ready,
} from "./common.js";
import { Script, cstr, raw, st, type GeneratedCase } from "./dsl.js";

const EXTENSIONS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x7fffffff, -1];

/** GET_INFO's struct as the type1 uAPI first had it (no cap_offset): 16 bytes. */
const INFO16 = raw(["u32", "argsz", 16], ["u32", "flags", 0], ["u64", "iova_pgsizes", 0]);

function extensions(s: Script, fd: string, note: string): void {
  for (const e of EXTENSIONS)
    s.ioctl(`$${fd}`, "VFIO_CHECK_EXTENSION", e, { note: `${note}: extension ${e}` });
}

function mk(name: string, note: string, build: (s: Script) => void, spec = SMALL): GeneratedCase {
  const s = new Script(name, note);
  build(s);
  return { name, family: "vfio-group", spec, script: s };
}

export function generate(): GeneratedCase[] {
  const out: GeneratedCase[] = [];

  // CHECK_EXTENSION and GET_API_VERSION in each container state
  for (const [spec, tag] of [
    [SMALL, ""],
    [SMALL_NOSNOOP, "-nosnoop"],
  ] as const) {
    for (const [state, note, prelude] of [
      [
        "empty",
        "a container with no group",
        (s: Script) => {
          s.open("/dev/vfio/vfio", "c");
          s.ioctl("$c", "VFIO_GET_API_VERSION", 0);
          s.ioctl("$c", "VFIO_GET_API_VERSION", 1, { note: "an argument is ignored" });
        },
      ],
      ["attached", "a group attached, no IOMMU set", (s: Script) => attachGroup(bindVfio(s, NVME))],
      ["type1v2", "after SET_IOMMU type1v2", (s: Script) => type1Ready(s)],
    ] as const)
      out.push(
        mk(
          `extensions-${state}${tag}`,
          note,
          (s) => {
            prelude(s);
            extensions(s, "c", state);
          },
          spec,
        ),
      );
  }

  // SET_IOMMU: each type in its own case (a success changes the container)
  for (const t of [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0xffff, -1]) {
    out.push(
      mk(`set-iommu-${t < 0 ? "m1" : t}`, `SET_IOMMU ${t}, then what the container says`, (s) => {
        bindVfio(s, NVME);
        s.open("/dev/vfio/vfio", "c");
        s.ioctl("$c", "VFIO_SET_IOMMU", t, { note: "no group yet" });
        s.open(`/dev/vfio/${NVME_GROUP}`, "g");
        setContainer(s, "g", "c");
        s.ioctl("$c", "VFIO_SET_IOMMU", t, { note: `type ${t}` });
        s.ioctl("$c", "VFIO_SET_IOMMU", t, { note: "again" });
        s.ioctl("$c", "VFIO_SET_IOMMU", V.VFIO_TYPE1v2_IOMMU, { note: "then type1v2" });
        s.ioctl("$c", "VFIO_CHECK_EXTENSION", V.VFIO_TYPE1v2_IOMMU);
        s.ioctl("$c", "VFIO_CHECK_EXTENSION", V.VFIO_TYPE1_IOMMU);
        groupStatus(s, "g");
        getDevice(s, "g", NVME, "d");
        s.ioctl("$c", "VFIO_IOMMU_GET_INFO", INFO16);
      }),
    );
  }

  // GET_STATUS argsz, in three states
  out.push(
    mk("group-status-argsz", "GET_STATUS with argsz from 0 to above the struct", (s) => {
      bindVfio(s, NVME);
      s.open("/dev/vfio/vfio", "c");
      s.open(`/dev/vfio/${NVME_GROUP}`, "g");
      for (const a of [0, 1, 4, 7, 8, 9, 16, 4096, 0xffffffff])
        groupStatus(s, "g", a, `argsz ${a}`);
      setContainer(s, "g", "c");
      for (const a of [7, 8, 12]) groupStatus(s, "g", a, `attached, argsz ${a}`);
      s.ioctl("$g", "VFIO_GROUP_GET_STATUS", "NULL", { note: "NULL argument" });
      s.ioctl("$g", "VFIO_GROUP_GET_STATUS", 1, { note: "a bad pointer" });
    }),
  );

  // SET_CONTAINER with every kind of fd (failures first, the valid one last)
  const kinds: [string, (s: Script) => string | number][] = [
    ["minus1", () => -1],
    ["big", () => 1000],
    ["group-itself", () => "g"],
    ["eventfd", (s) => (s.eventfd("ev"), "ev")],
    ["kvm", (s) => (s.open("/dev/kvm", "kvm"), "kvm")],
    ["proc", (s) => (s.open("/proc/cmdline", "pf", ["O_RDONLY"]), "pf")],
    ["closed", (s) => (s.open("/dev/vfio/vfio", "cc"), s.close("$cc"), "cc")],
    ["other-group", (s) => (bindVfio(s, NIC), s.open(`/dev/vfio/${NIC_GROUP}`, "g5"), "g5")],
    ["readonly-container", (s) => (s.open("/dev/vfio/vfio", "cro", ["O_RDONLY"]), "cro")],
  ];
  for (const [kind, make] of kinds) {
    out.push(
      mk(`set-container-${kind}`, `SET_CONTAINER given ${kind}, then a real container`, (s) => {
        bindVfio(s, NVME);
        s.open(`/dev/vfio/${NVME_GROUP}`, "g");
        const fd = make(s);
        setContainer(s, "g", fd, kind);
        groupStatus(s, "g");
        s.open("/dev/vfio/vfio", "c");
        setContainer(s, "g", "c", "the real container");
        setContainer(s, "g", fd, `${kind} again, attached`);
        groupStatus(s, "g");
        s.ioctl("$c", "VFIO_SET_IOMMU", V.VFIO_TYPE1v2_IOMMU);
        getDevice(s, "g", NVME, "d");
      }),
    );
  }
  out.push(
    mk("set-container-two-groups", "two groups in one container, then in two containers", (s) => {
      bindVfio(s, NVME);
      bindVfio(s, NIC);
      s.open("/dev/vfio/vfio", "c");
      s.open("/dev/vfio/vfio", "c2");
      s.open(`/dev/vfio/${NVME_GROUP}`, "g4");
      s.open(`/dev/vfio/${NIC_GROUP}`, "g5");
      setContainer(s, "g4", "c");
      s.ioctl("$c", "VFIO_SET_IOMMU", V.VFIO_TYPE1v2_IOMMU);
      setContainer(s, "g5", "c", "second group joins a container with an IOMMU");
      groupStatus(s, "g5");
      s.ioctl("$g5", "VFIO_GROUP_UNSET_CONTAINER", 0);
      setContainer(s, "g5", "c2", "the other container");
      s.ioctl("$c2", "VFIO_SET_IOMMU", V.VFIO_TYPE1_IOMMU, { note: "type1 (v1) there" });
      s.ioctl("$g4", "VFIO_GROUP_UNSET_CONTAINER", 0);
      s.ioctl("$c", "VFIO_CHECK_EXTENSION", V.VFIO_TYPE1v2_IOMMU, {
        note: "the emptied container",
      });
      setContainer(s, "g4", "c2", "join the type1 container");
      groupStatus(s, "g4");
      getDevice(s, "g4", NVME, "d4");
      getDevice(s, "g5", NIC, "d5");
      s.ioctl("$g5", "VFIO_GROUP_UNSET_CONTAINER", 0, { note: "a device fd is open" });
    }),
  );

  // GET_DEVICE_FD names
  const names: [string, string][] = [
    ["exact", NVME],
    ["short-form", "01:00.0"],
    ["other-group", NIC],
    ["no-such", "0000:07:00.0"],
    ["uppercase", "0000:01:00.0".toUpperCase()],
    ["trailing-space", `${NVME} `],
    ["empty", ""],
    ["bridge", "0000:00:02.0"],
  ];
  out.push(
    mk("device-fd-names", "GET_DEVICE_FD with every kind of name", (s) => {
      bindVfio(s, NVME);
      s.open("/dev/vfio/vfio", "c");
      s.open(`/dev/vfio/${NVME_GROUP}`, "g");
      getDevice(s, "g", NVME, "d0", "before the group is in a container");
      setContainer(s, "g", "c");
      getDevice(s, "g", NVME, "d1", "before SET_IOMMU");
      s.ioctl("$c", "VFIO_SET_IOMMU", V.VFIO_TYPE1v2_IOMMU);
      for (const [what, n] of names) getDevice(s, "g", n, `d_${what.replace(/-/g, "_")}`, what);
      s.ioctl(
        "$g",
        "VFIO_GROUP_GET_DEVICE_FD",
        { struct: [cstr(NVME, NVME.length)] },
        { as: "dn", note: "unterminated" },
      );
      s.ioctl("$g", "VFIO_GROUP_GET_DEVICE_FD", "NULL", { as: "dnull", note: "NULL" });
      getDevice(s, "g", NVME, "d2", "a second fd for the same device");
      s.ioctl("$d2", "VFIO_DEVICE_RESET", 0);
      s.close("$d_exact");
      s.close("$d2");
      getDevice(s, "g", NVME, "d3", "after closing both");
    }),
  );

  // requests sent to the wrong kind of file
  out.push(
    mk("wrong-file", "each VFIO request on each kind of VFIO file", (s) => {
      type1Ready(s);
      getDevice(s, "g", NVME, "d");
      for (const fd of ["c", "g", "d"]) {
        const note = { note: fd };
        s.ioctl(`$${fd}`, "VFIO_GET_API_VERSION", 0, note);
        s.ioctl(`$${fd}`, "VFIO_GROUP_GET_STATUS", st(V.vfio_group_status, { argsz: 8 }), note);
        s.ioctl(`$${fd}`, "VFIO_GROUP_UNSET_CONTAINER", 0, note);
        s.ioctl(`$${fd}`, "VFIO_DEVICE_GET_INFO", st(V.vfio_device_info, { argsz: 24 }), note);
        s.ioctl(`$${fd}`, "VFIO_IOMMU_GET_INFO", INFO16, note);
      }
      const bindNone = st(V.vfio_device_bind_iommufd, { argsz: 16, iommufd: -1 });
      s.ioctl("$c", "VFIO_DEVICE_BIND_IOMMUFD", bindNone);
      s.ioctl("$d", "VFIO_DEVICE_BIND_IOMMUFD", bindNone, { note: "a group-opened device" });
      s.ioctl("$g", "VFIO_CHECK_EXTENSION", V.VFIO_TYPE1v2_IOMMU);
    }),
  );

  // opening the nodes every way
  out.push(
    mk("open-modes", "the container and group nodes opened with each access mode", (s) => {
      bindVfio(s, NVME);
      for (const m of ["O_RDONLY", "O_WRONLY", "O_RDWR"]) {
        const t = m.slice(2).toLowerCase();
        s.open("/dev/vfio/vfio", `c_${t}`, [m]);
        s.ioctl(`$c_${t}`, "VFIO_GET_API_VERSION", 0);
        s.open(`/dev/vfio/${NVME_GROUP}`, `g_${t}`, [m]);
        groupStatus(s, `g_${t}`);
        s.close(`$g_${t}`);
      }
      s.open(`/dev/vfio/${NVME_GROUP}`, "g", ["O_RDWR", "O_NONBLOCK"]);
      s.open(`/dev/vfio/${NVME_GROUP}`, "g_twice", ["O_RDWR"], "a second open of the group");
      s.open(`/dev/vfio/${NIC_GROUP}`, "g_nic", ["O_RDWR"], "a group whose device has its driver");
      groupStatus(s, "g_nic");
      s.open("/dev/vfio/1", "g_port", ["O_RDWR"], "the root port's group");
      s.open("/dev/vfio/99", "g_none", ["O_RDWR"], "no such group");
      setContainer(s, "g", "c_rdonly", "a container opened read-only");
      setContainer(s, "g", "c_rdwr");
      groupStatus(s, "g");
    }),
  );
  return out;
}
