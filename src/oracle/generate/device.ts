/**
 * vfio-pci device fd sweeps, on the nvme (MSI-X) and the e1000e (MSI, MSI-X, INTx):
 * GET_INFO and GET_REGION_INFO / GET_IRQ_INFO with argsz below, at and above each
 * struct and every index, SET_IRQS over data types x actions x indices with counts and
 * starts at and past the limits, RESET, and config space reads at every alignment and
 * past the end (writes only to registers the virtualisation keeps: the ID and BAR
 * registers).
 */
import * as V from "../../uapi/vfio.js";
import {
  NIC,
  NIC_GROUP,
  NVME,
  NVME_GROUP,
  SMALL,
  WIDTHS,
  deviceReady,
  getDevice,
  irqSet,
  irqTrigger,
  setIrqs,
} from "./common.js";
import { raw, st, type GeneratedCase, type Script } from "./dsl.js";

const CONFIG = BigInt(V.VFIO_PCI_CONFIG_REGION_INDEX) << 40n;

const DEVICES = [
  ["nvme", NVME, NVME_GROUP],
  ["nic", NIC, NIC_GROUP],
] as const;

const ready = (name: string, note: string, dev: (typeof DEVICES)[number]) =>
  deviceReady(name, note, dev[1], dev[2]);

const ARGSZ = (min: number, size: number) => [
  ...new Set([0, min - 1, min, size - 1, size, size + 1, 256, 0x10000]),
];

export function generate(): GeneratedCase[] {
  const out: GeneratedCase[] = [];
  const mk = (s: Script) =>
    out.push({ name: s.name, family: "vfio-device", spec: SMALL, script: s });

  for (const dev of DEVICES) {
    const [tag] = dev;
    // GET_INFO argsz
    {
      const s = ready(
        `${tag}-info-argsz`,
        "DEVICE_GET_INFO with argsz around the struct and its caps",
        dev,
      );
      for (const a of ARGSZ(16, V.vfio_device_info.size))
        s.ioctl("$d", "VFIO_DEVICE_GET_INFO", st(V.vfio_device_info, { argsz: a }), {
          note: `argsz ${a}`,
        });
      s.ioctl(
        "$d",
        "VFIO_DEVICE_GET_INFO",
        st(V.vfio_device_info, { argsz: 64 }, { tail: { name: "caps", size: 40 } }),
        { note: "room for caps" },
      );
      s.ioctl("$d", "VFIO_DEVICE_GET_INFO", "NULL");
      mk(s);
    }
    // REGION_INFO: every index with the plain size, then argsz sweeps of config and BAR0
    {
      const s = ready(`${tag}-region-index`, "GET_REGION_INFO for indices 0..12 and beyond", dev);
      for (const i of [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 0x7fffffff, 0xffffffff])
        s.ioctl(
          "$d",
          "VFIO_DEVICE_GET_REGION_INFO",
          st(V.vfio_region_info, { argsz: 32, index: i }),
          { note: `index ${i}` },
        );
      mk(s);
    }
    for (const index of [0, 3, 7]) {
      const s = ready(
        `${tag}-region-argsz-${index}`,
        `GET_REGION_INFO(${index}) with argsz around the struct`,
        dev,
      );
      for (const a of ARGSZ(16, V.vfio_region_info.size))
        s.ioctl("$d", "VFIO_DEVICE_GET_REGION_INFO", st(V.vfio_region_info, { argsz: a, index }), {
          note: `argsz ${a}`,
        });
      s.ioctl(
        "$d",
        "VFIO_DEVICE_GET_REGION_INFO",
        st(V.vfio_region_info, { argsz: 96, index }, { tail: { name: "caps", size: 64 } }),
        { note: "room for caps" },
      );
      mk(s);
    }
    // IRQ_INFO
    {
      const s = ready(`${tag}-irq-info`, "GET_IRQ_INFO for each index and argsz", dev);
      for (const i of [0, 1, 2, 3, 4, 5, 6, 0xffffffff])
        s.ioctl("$d", "VFIO_DEVICE_GET_IRQ_INFO", st(V.vfio_irq_info, { argsz: 16, index: i }), {
          note: `index ${i}`,
        });
      for (const a of ARGSZ(12, V.vfio_irq_info.size))
        s.ioctl("$d", "VFIO_DEVICE_GET_IRQ_INFO", st(V.vfio_irq_info, { argsz: a, index: 2 }), {
          note: `argsz ${a}`,
        });
      mk(s);
    }
    // SET_IRQS: each IRQ index, data type x action with count 0 and 1
    for (const [iname, index] of [
      ["intx", V.VFIO_PCI_INTX_IRQ_INDEX],
      ["msi", V.VFIO_PCI_MSI_IRQ_INDEX],
      ["msix", V.VFIO_PCI_MSIX_IRQ_INDEX],
      ["err", V.VFIO_PCI_ERR_IRQ_INDEX],
      ["req", V.VFIO_PCI_REQ_IRQ_INDEX],
    ] as const) {
      const s = ready(
        `${tag}-set-irqs-${iname}`,
        `SET_IRQS on ${iname}: data type x action, count 0 and 1`,
        dev,
      );
      s.eventfd("ev");
      for (const [dname, data] of [
        ["none", V.VFIO_IRQ_SET_DATA_NONE],
        ["bool", V.VFIO_IRQ_SET_DATA_BOOL],
        ["eventfd", V.VFIO_IRQ_SET_DATA_EVENTFD],
      ] as const)
        for (const [aname, action] of [
          ["mask", V.VFIO_IRQ_SET_ACTION_MASK],
          ["unmask", V.VFIO_IRQ_SET_ACTION_UNMASK],
          ["trigger", V.VFIO_IRQ_SET_ACTION_TRIGGER],
        ] as const) {
          const payload: [string, string, string | number][] | undefined =
            data === V.VFIO_IRQ_SET_DATA_BOOL
              ? [["u8", "b0", 1]]
              : data === V.VFIO_IRQ_SET_DATA_EVENTFD
                ? [["s32", "fd0", "$ev"]]
                : undefined;
          s.ioctl("$d", "VFIO_DEVICE_SET_IRQS", irqSet(data | action, index, 0, 1, payload), {
            note: `${dname} ${aname} count 1`,
          });
          s.ioctl("$d", "VFIO_DEVICE_SET_IRQS", irqSet(data | action, index, 0, 0), {
            note: `${dname} ${aname} count 0`,
          });
        }
      s.ioctl(
        "$d",
        "VFIO_DEVICE_SET_IRQS",
        irqSet(V.VFIO_IRQ_SET_DATA_EVENTFD | V.VFIO_IRQ_SET_ACTION_TRIGGER, index, 0, 1, [
          ["s32", "fd0", -1],
        ]),
        { note: "eventfd -1: disable" },
      );
      mk(s);
    }
    // SET_IRQS limits on MSI-X: start/count past the vectors, bad flags, argsz too small
    {
      const s = ready(
        `${tag}-set-irqs-limits`,
        "SET_IRQS counts, starts, flag combinations and argsz at the limits",
        dev,
      );
      s.eventfd("ev");
      const trig = V.VFIO_IRQ_SET_DATA_EVENTFD | V.VFIO_IRQ_SET_ACTION_TRIGGER;
      s.ioctl("$d", "VFIO_DEVICE_GET_IRQ_INFO", st(V.vfio_irq_info, { argsz: 16, index: 2 }));
      for (const [start, count] of [
        [0, 2],
        [1, 1],
        [63, 1],
        [64, 1],
        [0, 65],
        [2047, 1],
        [2048, 1],
        [0xffffffff, 1],
      ] as const)
        s.ioctl(
          "$d",
          "VFIO_DEVICE_SET_IRQS",
          irqSet(V.VFIO_IRQ_SET_DATA_NONE | V.VFIO_IRQ_SET_ACTION_TRIGGER, 2, start, count),
          { note: `none trigger start ${start} count ${count}` },
        );
      for (const flags of [
        0,
        V.VFIO_IRQ_SET_DATA_NONE,
        V.VFIO_IRQ_SET_ACTION_TRIGGER,
        trig | V.VFIO_IRQ_SET_DATA_BOOL,
        trig | V.VFIO_IRQ_SET_ACTION_MASK,
        1 << 6,
        1 << 31,
      ])
        s.ioctl("$d", "VFIO_DEVICE_SET_IRQS", irqSet(flags, 2, 0, 1, [["s32", "fd0", "$ev"]]), {
          note: `flags 0x${flags.toString(16)}`,
        });
      for (const argsz of [0, 19, 20, 23])
        s.ioctl(
          "$d",
          "VFIO_DEVICE_SET_IRQS",
          raw(
            ["u32", "argsz", argsz],
            ["u32", "flags", trig],
            ["u32", "index", 2],
            ["u32", "start", 0],
            ["u32", "count", 1],
            ["s32", "fd0", "$ev"],
          ),
          { note: `argsz ${argsz}` },
        );
      irqTrigger(s, 2, "enable vector 0");
      irqTrigger(s, 1, "MSI while MSI-X is on");
      s.ioctl(
        "$d",
        "VFIO_DEVICE_SET_IRQS",
        irqSet(V.VFIO_IRQ_SET_DATA_NONE | V.VFIO_IRQ_SET_ACTION_TRIGGER, 2, 0, 0),
        { note: "disable" },
      );
      mk(s);
    }
    // config space reads at each width and alignment, and past the end
    {
      const s = ready(`${tag}-config-read`, "config space reads: widths, alignments, the end", dev);
      for (const [off, size] of [
        ...WIDTHS,
        [2, 4],
        [3, 2],
        [0x10, 24],
        [0x30, 4],
        [0x34, 1],
        [0x3c, 4],
        [0xfc, 8],
        [0x100, 4],
        [0xffc, 4],
        [0xffe, 4],
        [0x1000, 4],
        [0, 0],
      ] as const)
        s.pread("$d", Number(CONFIG) + off, size, `config +0x${off.toString(16)} x${size}`);
      s.pread("$d", Number(BigInt(9) << 40n), 4, "region 9");
      mk(s);
    }
    // config space writes to what the virtualisation keeps, then read back
    {
      const s = ready(
        `${tag}-config-write`,
        "config writes to ID, BAR and ROM registers, read back",
        dev,
      );
      for (const [off, hex] of [
        [0, "ffff"],
        [0x10, "ffffffff"],
        [0x14, "ffffffff"],
        [0x30, "ffffffff"],
        [0x3c, "0b"],
        [0x3d, "04"],
        [0x2c, "ffffffff"],
      ] as const) {
        s.pwrite("$d", Number(CONFIG) + off, hex, `write 0x${off.toString(16)}`);
        s.pread("$d", Number(CONFIG) + off, hex.length / 2, "read back");
      }
      s.ioctl("$d", "VFIO_DEVICE_RESET", 0);
      s.pread("$d", Number(CONFIG) + 0x10, 8, "BARs after reset");
      mk(s);
    }
  }
  // RESET and hot reset info on both, reset while another fd is open
  {
    const s = ready(
      "reset",
      "DEVICE_RESET, PCI_HOT_RESET_INFO argsz, a second device fd",
      DEVICES[0],
    );
    s.ioctl("$d", "VFIO_DEVICE_RESET", 0);
    s.ioctl("$d", "VFIO_DEVICE_RESET", 1, { note: "an argument is ignored" });
    for (const a of [0, 11, 12, 16, 20])
      s.ioctl(
        "$d",
        "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO",
        st(V.vfio_pci_hot_reset_info, { argsz: a }, { tail: { name: "devices", size: 16 } }),
        { note: `argsz ${a}` },
      );
    getDevice(s, "g", NVME, "d2");
    s.ioctl("$d2", "VFIO_DEVICE_RESET", 0, { note: "the second fd" });
    s.close("$d");
    s.ioctl("$d2", "VFIO_DEVICE_RESET", 0, { note: "after the first closed" });
    s.ioctl("$d2", "VFIO_DEVICE_PCI_HOT_RESET", st(V.vfio_pci_hot_reset, { argsz: 12 }), {
      note: "no group fds",
    });
    s.ioctl(
      "$d2",
      "VFIO_DEVICE_PCI_HOT_RESET",
      st(
        V.vfio_pci_hot_reset,
        { argsz: 16, count: 1 },
        { tail: { name: "fds", size: 4, hex: "ffffffff" } },
      ),
      { note: "fd -1" },
    );
    mk(s);
  }
  // SET_IRQS on the e1000e (INTx, 1 MSI vector, 5 MSI-X vectors): ranges inside and across
  // the vectors, growing and shrinking MSI-X, INTx masking by ioctl and by eventfd
  {
    const s = ready("nic-irq-edges", "SET_IRQS ranges, MSI-X growth, INTx mask/unmask", DEVICES[1]);
    s.eventfd("e0");
    s.eventfd("e1");
    const EV = V.VFIO_IRQ_SET_DATA_EVENTFD;
    const TRIG = V.VFIO_IRQ_SET_ACTION_TRIGGER;
    const set = (
      flags: number,
      index: number,
      start: number,
      count: number,
      note: string,
      data: [string, string, string | number][] = [],
    ) => setIrqs(s, flags, index, start, count, note, data);
    const fds = (...f: (string | number)[]): [string, string, string | number][] =>
      f.map((x, i) => ["s32", `fd${i}`, x]);
    set(EV | TRIG, 2, 4, 1, "MSI-X vector 4 alone", fds("$e0"));
    set(EV | TRIG, 2, 3, 2, "vectors 3-4", fds("$e0", "$e1"));
    set(EV | TRIG, 2, 4, 2, "vectors 4-5: past the 5", fds("$e0", "$e1"));
    set(EV | TRIG, 2, 0, 1, "vector 0 while 3-4 are on", fds("$e1"));
    set(EV | TRIG, 2, 3, 1, "vector 3 off", fds(-1));
    set(V.VFIO_IRQ_SET_DATA_NONE | TRIG, 2, 0, 5, "fire all 5");
    set(V.VFIO_IRQ_SET_DATA_BOOL | TRIG, 2, 0, 2, "fire by bool", [
      ["u8", "b0", 1],
      ["u8", "b1", 0],
    ]);
    set(V.VFIO_IRQ_SET_DATA_NONE | V.VFIO_IRQ_SET_ACTION_MASK, 2, 0, 1, "mask an MSI-X vector");
    s.pread("$d", Number(CONFIG) + 0xa2, 2, "MSI-X flags");
    set(V.VFIO_IRQ_SET_DATA_NONE | TRIG, 2, 0, 0, "MSI-X off");
    set(EV | TRIG, 1, 0, 2, "MSI: 2 vectors of 1", fds("$e0", "$e1"));
    set(EV | TRIG, 1, 0, 1, "MSI: 1", fds("$e0"));
    s.pread("$d", Number(CONFIG) + 0xd2, 2, "MSI flags");
    set(V.VFIO_IRQ_SET_DATA_NONE | TRIG, 1, 0, 0, "MSI off");
    set(EV | TRIG, 0, 0, 1, "INTx on", fds("$e0"));
    set(EV | TRIG, 0, 1, 1, "INTx start 1", fds("$e0"));
    set(V.VFIO_IRQ_SET_DATA_NONE | V.VFIO_IRQ_SET_ACTION_MASK, 0, 0, 1, "INTx mask");
    s.pread("$d", Number(CONFIG) + 4, 4, "command/status while masked");
    set(V.VFIO_IRQ_SET_DATA_NONE | V.VFIO_IRQ_SET_ACTION_UNMASK, 0, 0, 1, "INTx unmask");
    set(V.VFIO_IRQ_SET_DATA_BOOL | V.VFIO_IRQ_SET_ACTION_MASK, 0, 0, 1, "mask by bool 0", [
      ["u8", "b0", 0],
    ]);
    set(EV | V.VFIO_IRQ_SET_ACTION_UNMASK, 0, 0, 1, "unmask eventfd", fds("$e1"));
    set(EV | V.VFIO_IRQ_SET_ACTION_UNMASK, 0, 0, 1, "unmask eventfd again", fds("$e1"));
    set(EV | V.VFIO_IRQ_SET_ACTION_UNMASK, 0, 0, 1, "unmask eventfd off", fds(-1));
    set(EV | V.VFIO_IRQ_SET_ACTION_MASK, 0, 0, 1, "mask eventfd", fds("$e1"));
    set(V.VFIO_IRQ_SET_DATA_NONE | TRIG, 0, 0, 1, "fire INTx");
    set(V.VFIO_IRQ_SET_DATA_NONE | TRIG, 0, 0, 0, "INTx off");
    set(V.VFIO_IRQ_SET_DATA_NONE | V.VFIO_IRQ_SET_ACTION_UNMASK, 0, 0, 1, "unmask with INTx off");
    s.pread("$d", Number(CONFIG) + 4, 4, "command/status after");
    mk(s);
  }
  // a bus reset of the e1000e, alone below its root port, through its group
  {
    const s = ready(
      "nic-hot-reset",
      "PCI_HOT_RESET of the e1000e's bus with its group fd",
      DEVICES[1],
    );
    s.ioctl(
      "$d",
      "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO",
      st(V.vfio_pci_hot_reset_info, { argsz: 20 }, { tail: { name: "devices", size: 8 } }),
    );
    s.ioctl(
      "$d",
      "VFIO_DEVICE_PCI_HOT_RESET",
      st(V.vfio_pci_hot_reset, { argsz: 16, count: 1 }, { tail: { name: "fds", size: 4 } }),
      { note: "fd 0: not a group" },
    );
    s.ioctl(
      "$d",
      "VFIO_DEVICE_PCI_HOT_RESET",
      {
        struct: [...st(V.vfio_pci_hot_reset, { argsz: 16, count: 1 }).struct, ["s32", "fd0", "$g"]],
      },
      { note: "the group" },
    );
    s.pread("$d", Number(CONFIG) + 4, 2, "command after the bus reset");
    mk(s);
  }
  // VFIO_DEVICE_FEATURE: every feature id with each GET/SET/PROBE combination
  for (const [part, ids] of [
    ["0-5", [0, 1, 2, 3, 4, 5]],
    ["6-ffff", [6, 7, 8, 9, 10, 11, 0xffff]],
  ] as const) {
    const s = ready(
      `feature-ids-${part}`,
      "DEVICE_FEATURE: feature ids x GET/SET/PROBE",
      DEVICES[0],
    );
    for (const id of ids)
      for (const [what, flags] of [
        ["probe", V.VFIO_DEVICE_FEATURE_PROBE],
        ["probe get", V.VFIO_DEVICE_FEATURE_PROBE | V.VFIO_DEVICE_FEATURE_GET],
        ["probe set", V.VFIO_DEVICE_FEATURE_PROBE | V.VFIO_DEVICE_FEATURE_SET],
        ["get", V.VFIO_DEVICE_FEATURE_GET],
      ] as const)
        s.ioctl(
          "$d",
          "VFIO_DEVICE_FEATURE",
          st(V.vfio_device_feature, { argsz: 8, flags: flags | id }),
          { note: `feature ${id}: ${what}` },
        );
    mk(s);
  }
  // DEVICE_FEATURE flags and argsz, then the low-power features' state machine
  {
    const s = ready(
      "feature-low-power",
      "DEVICE_FEATURE flags, argsz, LOW_POWER entry/exit",
      DEVICES[0],
    );
    s.eventfd("ev");
    const F = V.VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY;
    const feature = (argsz: number, flags: number, note: string, fd?: string | number) =>
      s.ioctl(
        "$d",
        "VFIO_DEVICE_FEATURE",
        fd === undefined
          ? st(V.vfio_device_feature, { argsz, flags })
          : { struct: [...st(V.vfio_device_feature, { argsz, flags }).struct, ["s32", "fd", fd]] },
        { note },
      );
    const SET = V.VFIO_DEVICE_FEATURE_SET;
    const GET = V.VFIO_DEVICE_FEATURE_GET;
    const PROBE = V.VFIO_DEVICE_FEATURE_PROBE;
    for (const argsz of [0, 7, 8, 9]) feature(argsz, PROBE | SET | F, `argsz ${argsz}`);
    for (const [flags, note] of [
      [SET | GET | F, "GET and SET"],
      [PROBE | SET | GET | F, "GET and SET with PROBE"],
      [F, "neither GET nor SET"],
      [SET | F | (1 << 19), "flag bit 19"],
      [SET | F | (1 << 31), "flag bit 31"],
    ] as const)
      feature(8, flags, note);
    s.ioctl("$d", "VFIO_DEVICE_FEATURE", "NULL", { note: "NULL" });
    feature(8, SET | F, "enter low power");
    feature(8, SET | F, "enter again");
    s.pread("$d", Number(CONFIG) + 4, 2, "command while low power");
    s.ioctl("$d", "VFIO_DEVICE_GET_INFO", st(V.vfio_device_info, { argsz: 24 }), {
      note: "another ioctl while low power",
    });
    feature(8, SET | F, "enter after an ioctl");
    feature(8, SET | V.VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, "exit");
    feature(8, SET | V.VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, "exit again");
    const W = V.VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP;
    feature(8, SET | W, "with wakeup: argsz 8");
    feature(12, SET | W, "with wakeup: fd -1", -1);
    feature(12, SET | W, "with wakeup: fd 1000", 1000);
    feature(12, SET | W, "with wakeup: not an eventfd", "$d");
    feature(12, SET | W, "with wakeup: an eventfd", "$ev");
    feature(12, SET | W, "with wakeup again", "$ev");
    feature(8, SET | F, "plain entry while engaged");
    feature(8, SET | V.VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, "exit");
    feature(8, GET | V.VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, "GET of exit");
    feature(24, SET | V.VFIO_DEVICE_FEATURE_PCI_VF_TOKEN, "VF token on a non-SR-IOV device");
    s.ioctl("$d", "VFIO_DEVICE_RESET", 0, { note: "reset" });
    mk(s);
  }
  // other device requests vfio-pci does not implement, and the container's on a device
  {
    const s = ready(
      "other-requests",
      "GFX, migration and IOMMU requests on a device fd",
      DEVICES[1],
    );
    for (const req of [
      "VFIO_DEVICE_QUERY_GFX_PLANE",
      "VFIO_DEVICE_GET_GFX_DMABUF",
      "VFIO_MIG_GET_PRECOPY_INFO",
      "VFIO_IOMMU_GET_INFO",
      "VFIO_IOMMU_ENABLE",
      "VFIO_IOMMU_DISABLE",
      "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
      "VFIO_DEVICE_DETACH_IOMMUFD_PT",
      "VFIO_DEVICE_BIND_IOMMUFD",
    ])
      s.ioctl("$d", req, st(V.vfio_device_feature, { argsz: 8 }), { note: req });
    s.ioctl("$c", "VFIO_IOMMU_ENABLE", 0, { note: "ENABLE on a type1 container" });
    s.ioctl("$c", "VFIO_IOMMU_DISABLE", 0, { note: "DISABLE on a type1 container" });
    mk(s);
  }
  return out;
}
