/**
 * vfio-pci device fd sweeps, on the nvme (MSI-X) and the e1000e (MSI, MSI-X, INTx):
 * GET_INFO and GET_REGION_INFO / GET_IRQ_INFO with argsz below, at and above each
 * struct and every index, SET_IRQS over data types x actions x indices with counts and
 * starts at and past the limits, RESET, and config space reads at every alignment and
 * past the end (writes only to registers the virtualisation keeps: the ID and BAR
 * registers).
 */
import * as V from "../../uapi/vfio.js";
import { NIC, NIC_GROUP, NVME, NVME_GROUP, SMALL, getDevice, type1Ready } from "./common.js";
import { Script, raw, st, type GeneratedCase, type Struct } from "./dsl.js";

const CONFIG = BigInt(V.VFIO_PCI_CONFIG_REGION_INDEX) << 40n;

const DEVICES = [
  ["nvme", NVME, NVME_GROUP],
  ["nic", NIC, NIC_GROUP],
] as const;

function ready(name: string, note: string, dev: (typeof DEVICES)[number]): Script {
  const s = new Script(name, note);
  type1Ready(s, dev[1], dev[2]);
  return getDevice(s, "g", dev[1], "d");
}

const ARGSZ = (min: number, size: number) => [
  ...new Set([0, min - 1, min, size - 1, size, size + 1, 256, 0x10000]),
];

function irqSet(
  flags: number,
  index: number,
  start: number,
  count: number,
  data?: [string, string, string | number][],
): Struct {
  const s = st(V.vfio_irq_set, {
    argsz: 20 + (data?.length ?? 0) * (data?.[0]?.[0] === "u8" ? 1 : 4),
    flags,
    index,
    start,
    count,
  });
  for (const d of data ?? []) s.struct.push(d);
  return s;
}

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
      s.ioctl("$d", "VFIO_DEVICE_SET_IRQS", irqSet(trig, 2, 0, 1, [["s32", "fd0", "$ev"]]), {
        note: "enable vector 0",
      });
      s.ioctl("$d", "VFIO_DEVICE_SET_IRQS", irqSet(trig, 1, 0, 1, [["s32", "fd0", "$ev"]]), {
        note: "MSI while MSI-X is on",
      });
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
        [0, 1],
        [0, 2],
        [0, 4],
        [0, 8],
        [1, 1],
        [1, 2],
        [1, 4],
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
  return out;
}
