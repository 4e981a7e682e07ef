/**
 * Groups of several functions on three topologies: root ports with and without ACS,
 * multifunction and integrated endpoints (ACS); a PCIe-to-PCI bridge with two endpoints
 * and a multifunction pair without ACS (NONVIABLE); conventional PCI behind a PCIe-to-PCI
 * bridge and a nested PCI-PCI bridge (LEGACY). What sysfs shows of every group and
 * function, then walks that move each member of a multi-device group between vfio-pci,
 * pci-stub, its own driver and no driver (driver_override, unbind, drivers_probe, bind,
 * new_id/remove_id), with the group's viability (GET_STATUS) after every step, device fds
 * for members on vfio-pci and a sibling's rebind while the group is in use.
 */
import type { CaseSpec } from "../case.js";
import * as V from "../../uapi/vfio.js";
import {
  ACS,
  LEGACY,
  NIC,
  NIC_GROUP,
  NONVIABLE,
  NVME,
  NVME_GROUP,
  SMALL,
  attachGroup,
  getDevice,
  groupStatus,
  setContainer,
  type1Ready,
} from "./common.js";
import { Script, type GeneratedCase } from "./dsl.js";

const CHIPSET = ["00:00.0", "00:1f.0", "00:1f.2", "00:1f.3"];

interface Topo {
  tag: string;
  spec: CaseSpec;
  /** every function (bus:dev.fn in domain 0) */
  fns: string[];
  groups: number;
}

const TOPOS: Topo[] = [
  {
    tag: "acs",
    spec: ACS,
    fns: [
      ...CHIPSET,
      "00:02.0",
      "00:03.0",
      "00:05.0",
      "00:05.1",
      "00:06.0",
      "00:06.1",
      "00:07.0",
      "01:00.0",
      "01:00.1",
      "02:00.0",
      "03:00.0",
      "04:00.0",
    ],
    groups: 9,
  },
  {
    tag: "nonviable",
    spec: NONVIABLE,
    fns: [
      ...CHIPSET,
      "00:02.0",
      "00:02.1",
      "00:02.2",
      "00:03.0",
      "00:04.0",
      "00:04.1",
      "01:00.0",
      "02:00.0",
      "03:00.0",
      "04:01.0",
      "04:02.0",
      "05:00.0",
      "05:00.1",
    ],
    groups: 11,
  },
  {
    tag: "legacy",
    spec: LEGACY,
    fns: [
      ...CHIPSET,
      "00:02.0",
      "00:03.0",
      "01:00.0",
      "02:01.0",
      "02:02.0",
      "02:03.0",
      "02:04.0",
      "03:01.0",
      "04:00.0",
    ],
    groups: 7,
  },
];

const bdf = (f: string) => `0000:${f}`;
const sys = (f: string, a: string) => `/sys/bus/pci/devices/${bdf(f)}/${a}`;

/** A member's move: to vfio-pci, pci-stub or its own driver (override cleared), or unbound. */
type Move = "vfio" | "stub" | "native" | "none";

function move(s: Script, f: string, m: Move): void {
  if (m === "none") {
    s.sysfsWrite(sys(f, "driver/unbind"), bdf(f), `unbind ${f}`);
  } else {
    const override = m === "vfio" ? "vfio-pci" : m === "stub" ? "pci-stub" : "\n";
    s.sysfsWrite(sys(f, "driver_override"), override, `${f} to ${m}`);
    s.sysfsWrite(sys(f, "driver/unbind"), bdf(f));
    s.sysfsWrite("/sys/bus/pci/drivers_probe", bdf(f));
  }
  s.readlink(sys(f, "driver"));
}

/** A group of several endpoints and the moves to walk through. */
interface Walk {
  topo: Topo;
  group: number;
  members: string[];
  /** the members' own drivers, for bind through /sys/bus/pci/drivers/NAME/bind */
  native: Record<string, string>;
  steps: [string, Move][][];
}

export function generate(): GeneratedCase[] {
  const out: GeneratedCase[] = [];
  const mk = (s: Script, spec: CaseSpec) =>
    out.push({ name: s.name, family: "vfio-topology", spec, script: s });

  // what sysfs shows: the groups and their members, each function's links and attributes
  const ATTRS = [
    "vendor",
    "device",
    "class",
    "revision",
    "subsystem_vendor",
    "subsystem_device",
    "enable",
    "driver_override",
    "reset_method",
  ];
  for (const t of TOPOS) {
    const s = new Script(`${t.tag}-groups`, `${t.tag}: every group's type, regions, members`);
    for (let g = 0; g <= t.groups; g++) {
      s.sysfsRead(`/sys/kernel/iommu_groups/${g}/type`);
      s.sysfsRead(`/sys/kernel/iommu_groups/${g}/reserved_regions`);
    }
    for (const f of t.fns) s.readlink(`/sys/kernel/iommu_groups/${t.groups - 1}/devices/${bdf(f)}`);
    mk(s, t.spec);
    const l = new Script(`${t.tag}-links`, `${t.tag}: every function's group, IOMMU and driver`);
    for (const f of t.fns)
      for (const a of ["iommu_group", "iommu", "driver"]) l.readlink(sys(f, a));
    mk(l, t.spec);
    // at most 8 functions' attributes a case
    const chunks = Math.ceil(t.fns.length / 8);
    const per = Math.ceil(t.fns.length / chunks);
    for (let c = 0; c < chunks; c++) {
      const fns = t.fns.slice(c * per, (c + 1) * per);
      const a = new Script(
        `${t.tag}-attrs-${c}`,
        `${t.tag}: the sysfs attributes of ${fns[0]} .. ${fns[fns.length - 1]}`,
      );
      for (const f of fns) for (const attr of ATTRS) a.sysfsRead(sys(f, attr));
      mk(a, t.spec);
    }
  }

  const [acs, nonviable, legacy] = TOPOS as [Topo, Topo, Topo];
  const walks: Walk[] = [
    {
      topo: nonviable,
      group: 9,
      members: ["04:01.0", "04:02.0"],
      native: { "04:01.0": "e1000", "04:02.0": "8139cp" },
      steps: [],
    },
    {
      topo: nonviable,
      group: 10,
      members: ["05:00.0", "05:00.1"],
      native: { "05:00.0": "e1000", "05:00.1": "e1000" },
      steps: [],
    },
    {
      topo: acs,
      group: 7,
      members: ["01:00.0", "01:00.1"],
      native: { "01:00.0": "e1000e", "01:00.1": "" },
      steps: [],
    },
    {
      topo: legacy,
      group: 4,
      members: ["02:01.0", "02:02.0", "02:03.0", "03:01.0"],
      native: { "02:01.0": "e1000", "02:02.0": "8139cp", "02:03.0": "", "03:01.0": "e1000" },
      steps: [],
    },
  ];
  // the first member to vfio-pci, then each other member to each of stub, none, vfio;
  // then the first member away again
  for (const w of walks) {
    const [first, ...rest] = w.members as [string, ...string[]];
    for (const m of ["stub", "none", "vfio"] as Move[])
      w.steps.push([[first, "vfio"], ...rest.map((f): [string, Move] => [f, m]), [first, "stub"]]);
    w.steps.push([
      [first, "vfio"],
      ...rest.map((f, i): [string, Move] => [f, (["stub", "none", "vfio"] as Move[])[i % 3]!]),
      [first, "none"],
      [first, "native"],
    ]);
  }
  for (const w of walks) {
    w.steps.forEach((steps, n) => {
      const s = new Script(
        `${w.topo.tag}-g${w.group}-walk${n}`,
        `group ${w.group}: ${steps.map(([f, m]) => `${f} ${m}`).join(", ")}`,
      );
      s.open("/dev/vfio/vfio", "c");
      let open = false;
      for (const [f, m] of steps) {
        move(s, f, m);
        if (!open) {
          s.open(`/dev/vfio/${w.group}`, "g", ["O_RDWR", "O_CLOEXEC"], "the group node");
          open = true;
        }
        groupStatus(s, "g");
      }
      setContainer(s, "g", "c", "attach as the walk leaves it");
      s.ioctl("$c", "VFIO_SET_IOMMU", V.VFIO_TYPE1v2_IOMMU);
      for (const f of w.members) getDevice(s, "g", bdf(f), `d${f.replace(/[:.]/g, "")}`);
      s.ioctl("$g", "VFIO_GROUP_UNSET_CONTAINER", 0);
      s.close("$g");
      s.open(`/dev/vfio/${w.group}`, "g2", ["O_RDWR", "O_CLOEXEC"], "the node after close");
      mk(s, w.topo.spec);
    });
  }

  // a group in use while a sibling is bound to its driver, to pci-stub, and probed
  for (const w of walks) {
    const [first, ...rest] = w.members as [string, ...string[]];
    const s = new Script(
      `${w.topo.tag}-g${w.group}-in-use`,
      `group ${w.group} in use by ${first}'s device fd; the others bound by name`,
    );
    for (const f of w.members) move(s, f, "vfio");
    s.open(`/dev/vfio/${w.group}`, "g");
    s.open("/dev/vfio/vfio", "c");
    setContainer(s, "g", "c");
    s.ioctl("$c", "VFIO_SET_IOMMU", V.VFIO_TYPE1v2_IOMMU);
    getDevice(s, "g", bdf(first), "d");
    for (const f of rest) {
      s.sysfsWrite(sys(f, "driver_override"), "\n", `clear ${f}'s override`);
      s.sysfsWrite(sys(f, "driver/unbind"), bdf(f), `${f} leaves vfio-pci`);
      groupStatus(s, "g");
      const nat = w.native[f];
      if (nat)
        s.sysfsWrite(`/sys/bus/pci/drivers/${nat}/bind`, bdf(f), `${f} to ${nat} while in use`);
      s.sysfsWrite("/sys/bus/pci/drivers/pci-stub/bind", bdf(f), `${f} to pci-stub by bind`);
      s.readlink(sys(f, "driver"));
      groupStatus(s, "g");
      s.sysfsWrite("/sys/bus/pci/drivers_probe", bdf(f), "probe with no override");
      s.readlink(sys(f, "driver"));
      groupStatus(s, "g");
    }
    s.close("$d");
    groupStatus(s, "g", 8, "the device fd closed");
    for (const f of rest) {
      const nat = w.native[f];
      if (nat) s.sysfsWrite(`/sys/bus/pci/drivers/${nat}/bind`, bdf(f), `${f} to ${nat}`);
      s.readlink(sys(f, "driver"));
    }
    s.ioctl("$g", "VFIO_GROUP_UNSET_CONTAINER", 0);
    s.close("$g");
    for (const f of rest) {
      const nat = w.native[f];
      if (nat) s.sysfsWrite(`/sys/bus/pci/drivers/${nat}/bind`, bdf(f), `${f} to ${nat}, closed`);
      s.readlink(sys(f, "driver"));
    }
    s.open(`/dev/vfio/${w.group}`, "g2");
    groupStatus(s, "g2");
    mk(s, w.topo.spec);
  }

  // new_id/remove_id: vfio-pci and pci-stub take every unbound e1000 (8086:100e)
  {
    const s = new Script("nonviable-new-id", "new_id and remove_id on vfio-pci and pci-stub");
    for (const f of ["04:01.0", "05:00.0", "05:00.1"])
      s.sysfsWrite(sys(f, "driver/unbind"), bdf(f), `unbind ${f}`);
    s.sysfsWrite("/sys/bus/pci/drivers/pci-stub/new_id", "8086 100e", "pci-stub takes e1000s");
    for (const f of ["04:01.0", "05:00.0", "05:00.1", "02:00.0"]) s.readlink(sys(f, "driver"));
    s.sysfsWrite("/sys/bus/pci/drivers/pci-stub/new_id", "8086 100e", "the same id again");
    s.sysfsWrite("/sys/bus/pci/drivers/pci-stub/remove_id", "8086 100e");
    s.sysfsWrite("/sys/bus/pci/drivers/pci-stub/remove_id", "8086 100e", "removed already");
    for (const f of ["04:01.0", "05:00.0"]) s.readlink(sys(f, "driver"));
    s.sysfsWrite(sys("05:00.0", "driver/unbind"), bdf("05:00.0"));
    s.sysfsWrite(sys("05:00.1", "driver/unbind"), bdf("05:00.1"));
    s.sysfsWrite("/sys/bus/pci/drivers/vfio-pci/new_id", "8086 100e", "vfio-pci takes them");
    for (const f of ["04:01.0", "05:00.0", "05:00.1"]) s.readlink(sys(f, "driver"));
    s.open("/dev/vfio/10", "g10");
    groupStatus(s, "g10", 8, "both functions on vfio-pci by id");
    s.open(
      "/dev/vfio/9",
      "g9",
      ["O_RDWR", "O_CLOEXEC"],
      "the e1000 behind the bridge is on pci-stub",
    );
    s.sysfsWrite("/sys/bus/pci/drivers/vfio-pci/remove_id", "8086 100e");
    s.readlink(sys("05:00.0", "driver"), "remove_id does not unbind");
    s.sysfsWrite("/sys/bus/pci/drivers/vfio-pci/new_id", "10ec 8139 ffff ffff 0 0 1", "bad");
    s.sysfsWrite("/sys/bus/pci/drivers/vfio-pci/new_id", "zz", "not a number");
    s.sysfsWrite("/sys/bus/pci/drivers/vfio-pci/remove_id", "1234 5678", "never added");
    mk(s, NONVIABLE);
  }

  // the small machine's nvme: `enable` bound and unbound, by sysfs and by a vfio-pci open
  {
    const s = new Script("small-enable", "the enable attribute: bound, unbound, vfio-pci's open");
    const en = sys(NVME.slice(5), "enable");
    const w = (v: string, note?: string) => (s.sysfsWrite(en, v, note), s.sysfsRead(en));
    s.sysfsRead(en, "nvme has it");
    for (const v of ["1", "0", "abc"]) w(v, `write ${JSON.stringify(v)} while bound`);
    s.sysfsWrite(sys(NVME.slice(5), "driver/unbind"), NVME);
    s.sysfsRead(en, "unbound");
    for (const v of ["0", "1", "1", "0x2", "0", "0\n", "0", "0", "-1", "", " 1", "1 ", "07"])
      w(v, `write ${JSON.stringify(v)}`);
    w("0", "back to 0");
    w("0", "and again");
    w("1", "enabled before vfio-pci binds");
    s.sysfsWrite(sys(NVME.slice(5), "driver_override"), "vfio-pci");
    s.sysfsWrite("/sys/bus/pci/drivers_probe", NVME);
    s.sysfsRead(en, "vfio-pci bound");
    attachGroup(s, NVME_GROUP);
    s.ioctl("$c", "VFIO_SET_IOMMU", V.VFIO_TYPE1v2_IOMMU);
    getDevice(s, "g", NVME, "d");
    s.sysfsRead(en, "the device open");
    w("1", "write 1 with the device open");
    s.close("$d");
    s.sysfsRead(en, "the device closed");
    s.sysfsWrite(sys(NVME.slice(5), "driver/unbind"), NVME);
    s.sysfsRead(en, "unbound from vfio-pci");
    mk(s, SMALL);
  }
  // reset_method on both functions; what VFIO_DEVICE_RESET does with each choice
  {
    const s = new Script("small-reset-method", "reset_method read and written; the reset it picks");
    for (const f of [NVME, NIC]) s.sysfsRead(sys(f.slice(5), "reset_method"));
    type1Ready(s, NIC, NIC_GROUP);
    getDevice(s, "g", NIC, "d");
    const rm = sys(NIC.slice(5), "reset_method");
    for (const v of [
      "flr",
      "bus",
      "pm",
      "flr bus",
      "bus flr\n",
      "default",
      "device_specific",
      "acpi",
      "bogus",
      "flr bogus",
      "flr flr",
      "",
      "\n",
      "cxl_bus",
      "default",
    ]) {
      s.sysfsWrite(rm, v, `write ${JSON.stringify(v)}`);
      s.sysfsRead(rm);
      s.ioctl("$d", "VFIO_DEVICE_RESET", 0);
    }
    mk(s, SMALL);
  }
  // driver_override's parsing and what drivers_probe does with each value
  {
    const s = new Script("small-override", "driver_override values, then drivers_probe");
    const f = NIC.slice(5);
    s.sysfsWrite(sys(f, "driver/unbind"), NIC);
    for (const v of [
      "vfio-pci\n",
      "pci-stub",
      "e1000e",
      "no-such-driver",
      "vfio-pci\ne1000e",
      "\n",
      "",
      "x".repeat(4094),
      "x".repeat(4095),
    ]) {
      s.sysfsWrite(sys(f, "driver_override"), v, `override ${JSON.stringify(v.slice(0, 20))}`);
      s.sysfsRead(sys(f, "driver_override"));
      s.sysfsWrite("/sys/bus/pci/drivers_probe", NIC);
      s.readlink(sys(f, "driver"));
      s.sysfsWrite(sys(f, "driver/unbind"), NIC);
    }
    s.sysfsWrite(sys(f, "driver_override"), "pci-stub");
    s.sysfsWrite("/sys/bus/pci/drivers/e1000e/bind", NIC, "bind to e1000e, override pci-stub");
    s.sysfsWrite("/sys/bus/pci/drivers/pci-stub/bind", NIC, "bind to pci-stub by name");
    s.readlink(sys(f, "driver"));
    s.sysfsWrite("/sys/bus/pci/drivers/pci-stub/bind", NIC, "again");
    s.sysfsWrite("/sys/bus/pci/drivers/pci-stub/unbind", NVME, "unbind a device it lacks");
    s.sysfsWrite("/sys/bus/pci/drivers/pci-stub/bind", "0000:09:00.0", "no such device");
    s.sysfsWrite("/sys/bus/pci/drivers/pci-stub/bind", "garbage", "not a name");
    mk(s, SMALL);
  }
  return out;
}
