/**
 * iommufd (the "iommufd" kernel: iommufd built in, the VFIO device cdev, /dev/vfio/vfio
 * provided by iommufd): IOAS_ALLOC/MAP/UNMAP/COPY/IOVA_RANGES/ALLOW_IOVAS/OPTION/DESTROY
 * sweeps over sizes, flags, alignments and every way a range meets an existing one;
 * the cdev's BIND/ATTACH/DETACH with each kind of fd and id; HWPT_ALLOC and GET_HW_INFO
 * flags and lengths; the compat container on iommufd. Object ids are the kernel's
 * (1, 2, ... in allocation order): every allocation here succeeds, so the ids written
 * in later operations are known.
 */
import * as I from "../../uapi/iommufd.js";
import * as V from "../../uapi/vfio.js";
import type { CaseSpec } from "../case.js";
import {
  NIC,
  NIC_GROUP,
  RELATIONS,
  SMALL,
  bindVfio,
  dirtyPages,
  iommuInfo,
  mapDma,
  permutations,
  type1Ready,
  unmapDma,
} from "./common.js";
import { Script, st, v64, type GeneratedCase } from "./dsl.js";

export const IOMMUFD_SMALL: CaseSpec = { ...SMALL, kernel: "iommufd" };

const K = 1024;
const M = K * K;
const RW = I.IOMMU_IOAS_MAP_READABLE | I.IOMMU_IOAS_MAP_WRITEABLE;
const FIXED = I.IOMMU_IOAS_MAP_FIXED_IOVA | RW;

export const ioasAlloc = (s: Script, note: string) =>
  s.ioctl("$i", "IOMMU_IOAS_ALLOC", st(I.iommu_ioas_alloc, { size: 12 }), { note });

export const destroy = (s: Script, id: number, note: string, size = 8) =>
  s.ioctl("$i", "IOMMU_DESTROY", st(I.iommu_destroy, { size, id }), { note });

/**
 * HWPT_ALLOC of a paging hwpt for device 2 on IOAS 1; with `fault`, one whose faults go to
 * that fault queue (FAULT_ID_VALID and the longer struct).
 */
export function hwptAlloc(s: Script, note: string, o: { flags?: number; fault?: number } = {}) {
  const fault = o.fault !== undefined;
  s.ioctl(
    "$i",
    "IOMMU_HWPT_ALLOC",
    st(I.iommu_hwpt_alloc, {
      size: fault ? 56 : 48,
      flags: (o.flags ?? 0) | (fault ? I.IOMMU_HWPT_FAULT_ID_VALID : 0),
      dev_id: 2,
      pt_id: 1,
      fault_id: o.fault ?? 0,
    }),
    { note },
  );
}

/** FAULT_QUEUE_ALLOC; `fd` names the queue's fd. */
export const faultQueue = (
  s: Script,
  note: string,
  o: { flags?: number; size?: number; fd?: string } = {},
) =>
  s.ioctl(
    "$i",
    "IOMMU_FAULT_QUEUE_ALLOC",
    st(I.iommu_fault_alloc, { size: o.size ?? 16, flags: o.flags ?? 0 }),
    { ...(o.fd ? { bind: { out_fault_fd: o.fd } } : {}), note },
  );

/** /dev/iommu as i, a buffer (8M named buf unless said otherwise), an IOAS with id 1. */
function ready(name: string, note: string, buf: [number, string] | null = [8 * M, "buf"]): Script {
  const s = new Script(name, note);
  s.open("/dev/iommu", "i");
  if (buf) s.mmap(...buf);
  ioasAlloc(s, "ioas 1");
  return s;
}

export function map(
  s: Script,
  iova: number | bigint,
  length: number | bigint,
  o: { ioas?: number; flags?: number; va?: string; size?: number; note?: string } = {},
): void {
  s.ioctl(
    "$i",
    "IOMMU_IOAS_MAP",
    st(I.iommu_ioas_map, {
      size: o.size ?? 40,
      flags: o.flags ?? FIXED,
      ioas_id: o.ioas ?? 1,
      user_va: o.va ?? "$buf",
      length: v64(length),
      iova: v64(iova),
    }),
    { note: o.note },
  );
}

function unmap(
  s: Script,
  iova: number | bigint,
  length: number | bigint,
  o: { ioas?: number; size?: number; note?: string } = {},
): void {
  s.ioctl(
    "$i",
    "IOMMU_IOAS_UNMAP",
    st(I.iommu_ioas_unmap, {
      size: o.size ?? 24,
      ioas_id: o.ioas ?? 1,
      iova: v64(iova),
      length: v64(length),
    }),
    { note: o.note },
  );
}

/** IOVA_RANGES into $rg. */
export function ranges(
  s: Script,
  o: { ioas?: number; num?: number; size?: number; note?: string } = {},
) {
  s.ioctl(
    "$i",
    "IOMMU_IOAS_IOVA_RANGES",
    st(I.iommu_ioas_iova_ranges, {
      size: o.size ?? 32,
      ioas_id: o.ioas ?? 1,
      num_iovas: o.num ?? 8,
      allowed_iovas: "$rg",
    }),
    { note: o.note },
  );
}

/** The nic on vfio-pci and its cdev open as d (not bound). */
function cdev(s: Script): void {
  bindVfio(s, NIC);
  s.readlink("/sys/class/vfio-dev/vfio0", "the device's cdev");
  s.open("/dev/vfio/devices/vfio0", "d");
}

/** The cdev requests, on $d unless `dev` names another device fd. */
export const bind = (
  s: Script,
  fd: string | number,
  o: { argsz?: number; flags?: number; note?: string; dev?: string } = {},
) =>
  s.ioctl(
    o.dev ?? "$d",
    "VFIO_DEVICE_BIND_IOMMUFD",
    st(V.vfio_device_bind_iommufd, { argsz: o.argsz ?? 16, flags: o.flags ?? 0, iommufd: fd }),
    { note: o.note },
  );
export const attach = (
  s: Script,
  pt: number,
  o: { argsz?: number; flags?: number; note?: string; dev?: string } = {},
) =>
  s.ioctl(
    o.dev ?? "$d",
    "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
    st(V.vfio_device_attach_iommufd_pt, { argsz: o.argsz ?? 12, flags: o.flags ?? 0, pt_id: pt }),
    { note: o.note },
  );
export const detach = (s: Script, note: string, argsz = 8, dev = "$d") =>
  s.ioctl(dev, "VFIO_DEVICE_DETACH_IOMMUFD_PT", st(V.vfio_device_detach_iommufd_pt, { argsz }), {
    note,
  });

export function generate(): GeneratedCase[] {
  const out: GeneratedCase[] = [];
  const mk = (s: Script) =>
    out.push({ name: s.name, family: "iommufd", spec: IOMMUFD_SMALL, script: s });
  const A = 16 * M;
  const B = A + 64 * K;

  // IOAS_ALLOC size and flags; DESTROY of each kind of id
  {
    const s = new Script(
      "ioas-alloc",
      "IOAS_ALLOC with each struct size and flag bit; DESTROY of each id",
    );
    s.open("/dev/iommu", "i");
    for (const size of [0, 4, 8, 11, 12, 13, 16, 64, 4096])
      s.ioctl("$i", "IOMMU_IOAS_ALLOC", st(I.iommu_ioas_alloc, { size }), { note: `size ${size}` });
    for (const b of [0, 1, 2, 7, 31])
      s.ioctl(
        "$i",
        "IOMMU_IOAS_ALLOC",
        st(I.iommu_ioas_alloc, { size: 12, flags: (1 << b) >>> 0 }),
        { note: `flag bit ${b}` },
      );
    s.ioctl("$i", "IOMMU_IOAS_ALLOC", "NULL", { note: "NULL" });
    for (const id of [0, 1, 1, 2, 99, 0xffffffff]) destroy(s, id, `destroy ${id}`);
    for (const size of [0, 4, 7, 16]) destroy(s, 3, `destroy size ${size}`, size);
    mk(s);
  }
  // MAP: struct size, flags, alignment
  {
    const s = ready("map-size", "IOAS_MAP with each struct size");
    [0, 8, 32, 39, 40, 41, 48, 64, 4096].forEach((size, i) =>
      map(s, 32 * M + i * M, 64 * K, { size, note: `size ${size}` }),
    );
    mk(s);
  }
  for (const [lo, hi] of [
    [0, 8],
    [8, 32],
  ] as const) {
    const s = ready(
      `map-flags-${lo}-${hi - 1}`,
      `IOAS_MAP with flag bit ${lo}..${hi - 1}, alone and with FIXED|READ|WRITE`,
    );
    for (let b = lo; b < hi; b++) {
      map(s, 32 * M + b * 2 * M, 64 * K, { flags: (1 << b) >>> 0, note: `bit ${b}` });
      map(s, 32 * M + b * 2 * M + M, 64 * K, {
        flags: (FIXED | (1 << b)) >>> 0,
        note: `FIXED|RW|bit ${b}`,
      });
    }
    mk(s);
  }
  for (const [what, offs] of [
    ["iova", [1, 0x800, 0xfff, 0x1000, 0x10000, 0x1fffff]],
    ["va", [1, 0x800, 0xfff, 0x1000, 0x3000, 0x100000]],
    ["length", [0, 1, 0x800, 0xfff, 0x1000, 0x1001, 0x10000]],
  ] as const) {
    const s = ready(`map-align-${what}`, `IOAS_MAP with the ${what} off alignment`);
    offs.forEach((o, i) => {
      const base = 64 * M + i * 4 * M;
      map(s, what === "iova" ? base + o : base, what === "length" ? o : 64 * K, {
        va: what === "va" ? `$buf+0x${o.toString(16)}` : "$buf",
        note: `${what} +0x${o.toString(16)}`,
      });
    });
    unmap(s, 64 * M + 1, 4 * K, { note: "unaligned unmap" });
    mk(s);
  }
  {
    const s = ready("map-allocated-iova", "IOAS_MAP without FIXED_IOVA: the kernel picks iovas");
    for (const len of [4 * K, 64 * K, 2 * M, 4 * K, 3 * 4 * K])
      map(s, 0, len, { flags: RW, note: `length ${len}` });
    map(s, 0, 64 * K, { flags: RW, va: "$buf+0x1000", note: "va offset 4K" });
    map(s, 0, 64 * K, { flags: RW, va: "$buf+0x800", note: "va not page aligned" });
    s.mmap(4096, "rg");
    ranges(s);
    unmap(s, 0, 0n - 1n, { note: "everything" });
    mk(s);
  }
  // MAP and UNMAP against an existing range, every relation
  for (const [rel, f] of RELATIONS) {
    const [c, d] = f(A, B);
    const s = ready(`map-${rel}`, `IOAS_MAP(FIXED) of a range that ${rel} an existing 64K mapping`);
    map(s, A, B - A, { note: "existing" });
    map(s, c, d - c, { va: "$buf+0x100000", note: rel });
    unmap(s, c, d - c, { note: "unmap the candidate's range" });
    unmap(s, A, B - A, { note: "unmap the original" });
    map(s, c, d - c, { va: "$buf+0x100000", note: "alone" });
    unmap(s, 0, 0n - 1n, { note: "all" });
    mk(s);
  }
  for (const [rel, f] of RELATIONS) {
    const [c, d] = f(A, B);
    const s = ready(
      `unmap-${rel}`,
      `IOAS_UNMAP of a range that ${rel} a 64K mapping between two others`,
    );
    map(s, A - 64 * K, 64 * K, { va: "$buf+0x20000" });
    map(s, A, B - A);
    map(s, B, 64 * K, { va: "$buf+0x10000" });
    unmap(s, c, d - c, { note: rel });
    unmap(s, A - 64 * K, 3 * 64 * K, { note: "the rest" });
    mk(s);
  }
  // UNMAP sizes, COPY
  {
    const s = ready("unmap-size", "IOAS_UNMAP with each struct size; unmap everything");
    [0, 8, 16, 23, 24, 25, 32, 4096].forEach((size, i) => {
      map(s, 32 * M + i * M, 64 * K);
      unmap(s, 32 * M + i * M, 64 * K, { size, note: `size ${size}` });
    });
    unmap(s, 0, 0n - 1n, { note: "all: iova 0, length ~0" });
    unmap(s, 0, 0n - 1n, { note: "again" });
    unmap(s, 0, 0, { note: "length 0" });
    mk(s);
  }
  {
    const s = ready("copy", "IOAS_COPY between IOASes: flags, sizes, ranges, missing ids");
    ioasAlloc(s, "ioas 2");
    map(s, A, 128 * K);
    const copy = (
      dst: number,
      src: number,
      len: number,
      dIova: number,
      sIova: number,
      o: { flags?: number; size?: number; note?: string } = {},
    ) =>
      s.ioctl(
        "$i",
        "IOMMU_IOAS_COPY",
        st(I.iommu_ioas_copy, {
          size: o.size ?? 40,
          flags: o.flags ?? FIXED,
          dst_ioas_id: dst,
          src_ioas_id: src,
          length: len,
          dst_iova: dIova,
          src_iova: sIova,
        }),
        { note: o.note },
      );
    copy(2, 1, 128 * K, A, A, { note: "all of it" });
    copy(2, 1, 64 * K, A, A, { note: "over an existing copy" });
    copy(2, 1, 64 * K, 32 * M, A + 32 * K, { note: "from the middle" });
    copy(2, 1, 256 * K, 48 * M, A, { note: "longer than the source" });
    copy(2, 1, 64 * K, 64 * M, 48 * M, { note: "nothing mapped at the source" });
    copy(1, 1, 64 * K, 80 * M, A, { note: "within one IOAS" });
    copy(2, 9, 64 * K, 96 * M, A, { note: "no such source" });
    copy(9, 1, 64 * K, 96 * M, A, { note: "no such destination" });
    copy(2, 1, 64 * K, 0, A, { flags: RW, note: "destination iova allocated" });
    copy(2, 1, 64 * K, 112 * M, A, { flags: FIXED | 8, note: "an unknown flag" });
    for (const size of [0, 32, 39, 48])
      copy(2, 1, 64 * K, 128 * M, A, { size, note: `size ${size}` });
    mk(s);
  }
  // IOAS_MAP from each kind of user memory, with no domain (nothing pinned) and with one
  for (const attached of [false, true]) {
    const s = ready(
      `map-va-kinds${attached ? "-attached" : ""}`,
      `IOAS_MAP of read-only, PROT_NONE, unmapped and short user memory${attached ? ", a device attached" : ""}`,
    );
    s.mmap(64 * K, "ro", "r");
    s.mmap(64 * K, "none", "none");
    s.mmap(64 * K, "gone");
    s.munmap("gone");
    if (attached) {
      cdev(s);
      bind(s, "$i", { note: "devid 2" });
      attach(s, 1, { note: "attach ioas 1" });
    }
    const R = I.IOMMU_IOAS_MAP_FIXED_IOVA | I.IOMMU_IOAS_MAP_READABLE;
    let at = A;
    const m = (va: string | number, length: number, flags: number, note: string) => {
      map(s, at, length, { va: va as string, flags, note });
      at += 1 * M;
    };
    m("$ro", 64 * K, FIXED, "read-only memory, writeable");
    m("$ro", 64 * K, R, "read-only memory, read only");
    m("$none", 64 * K, R, "PROT_NONE");
    m("$gone", 64 * K, R, "unmapped");
    m(0, 64 * K, R, "NULL");
    m("$buf+0x100", 64 * K, FIXED, "unaligned va");
    m("$buf+0x7f0000", 128 * K, FIXED, "past the end of the buffer");
    m("$buf", 64 * K, I.IOMMU_IOAS_MAP_FIXED_IOVA, "neither READABLE nor WRITEABLE");
    unmap(s, 0, (1n << 64n) - 1n, { note: "everything" });
    mk(s);
  }
  // IOVA_RANGES and ALLOW_IOVAS
  {
    const s = ready("iova-ranges", "IOVA_RANGES with each num_iovas and size; ALLOW_IOVAS");
    s.mmap(4096, "rg");
    for (const num of [0, 1, 2, 8]) ranges(s, { num, note: `num_iovas ${num}` });
    for (const size of [0, 16, 24, 31, 40]) ranges(s, { size, note: `size ${size}` });
    ranges(s, { ioas: 7, note: "no such IOAS" });
    const allow = (ranges: [number, number][], note: string) => {
      s.fill(
        "rg",
        0,
        ranges
          .map(([a, b]) =>
            Buffer.from(new BigUint64Array([BigInt(a), BigInt(b)]).buffer).toString("hex"),
          )
          .join("") || "00",
      );
      s.ioctl(
        "$i",
        "IOMMU_IOAS_ALLOW_IOVAS",
        st(I.iommu_ioas_allow_iovas, {
          size: 24,
          ioas_id: 1,
          num_iovas: ranges.length,
          allowed_iovas: "$rg",
        }),
        { note },
      );
    };
    allow([[16 * M, 32 * M - 1]], "allow [16M, 32M)");
    map(s, 8 * M, 64 * K, { note: "outside the allowed range" });
    map(s, 16 * M, 64 * K, { note: "inside" });
    map(s, 0, 64 * K, { flags: RW, note: "allocated iova: inside" });
    allow([[64 * M, 128 * M - 1]], "allow only [64M, 128M) while a mapping is outside");
    allow(
      [
        [16 * M, 32 * M - 1],
        [24 * M, 40 * M - 1],
      ],
      "overlapping ranges",
    );
    allow([[32 * M, 16 * M]], "start after last");
    allow([[16 * M + 1, 32 * M - 1]], "unaligned start");
    allow([], "none: everything allowed again");
    ranges(s, { note: "after" });
    mk(s);
  }
  // OPTION
  {
    const s = ready("option", "IOMMU_OPTION: each option x op x object");
    const option = (id: number, op: number, obj: number, val64: number, note: string, size = 24) =>
      s.ioctl(
        "$i",
        "IOMMU_OPTION",
        st(I.iommu_option, { size, option_id: id, op, object_id: obj, val64 }),
        { note },
      );
    for (const id of [0, 1, 2])
      for (const op of [I.IOMMU_OPTION_OP_GET, I.IOMMU_OPTION_OP_SET, 2])
        for (const obj of [0, 1]) option(id, op, obj, 1, `option ${id} op ${op} object ${obj}`);
    for (const v of [0, 2]) option(1, 0, 1, v, `HUGE_PAGES := ${v}`);
    map(s, A, 64 * K, { note: "a mapping" });
    option(1, 0, 1, 1, "HUGE_PAGES while mapped");
    option(1, 1, 1, 0, "size 16", 16);
    mk(s);
  }
  // the cdev: BIND with each argsz, flags and fd kind; ATTACH each kind of id
  {
    const s = new Script("cdev-bind-args", "BIND_IOMMUFD argsz, flags and each kind of fd");
    s.open("/dev/iommu", "i");
    cdev(s);
    s.eventfd("ev");
    s.open("/dev/iommu", "i2");
    s.close("$i2");
    for (const a of [0, 8, 11, 12, 15, 17, 32]) bind(s, "$i", { argsz: a, note: `argsz ${a}` });
    for (const b of [0, 1, 31]) bind(s, "$i", { flags: (1 << b) >>> 0, note: `flag bit ${b}` });
    for (const [fd, what] of [
      [-1, "-1"],
      ["$ev", "an eventfd"],
      ["$d", "the device itself"],
      ["$i2", "a closed iommufd"],
      [1000, "1000"],
    ] as const)
      bind(s, fd, { note: what });
    bind(s, "$i", { note: "the iommufd: devid 1" });
    bind(s, "$i", { note: "again" });
    s.open("/dev/vfio/devices/vfio0", "d2", ["O_RDWR"], "a second open of the cdev");
    mk(s);
  }
  {
    const s = ready(
      "cdev-attach-ids",
      "ATTACH_IOMMUFD_PT with each kind of id; DETACH; DESTROY while attached",
      null,
    );
    cdev(s);
    attach(s, 1, { note: "before bind" });
    bind(s, "$i", { note: "devid 2" });
    for (const [pt, what] of [
      [0, "0"],
      [2, "the device's own id"],
      [99, "no such object"],
    ] as const)
      attach(s, pt, { note: what });
    for (const a of [0, 8, 11, 16]) attach(s, 1, { argsz: a, note: `argsz ${a}` });
    attach(s, 1, { flags: 1, note: "flags 1" });
    attach(s, 1, { note: "ioas 1" });
    ioasAlloc(s, "ioas 3");
    attach(s, 3, { note: "replace with ioas 3" });
    destroy(s, 3, "destroy the attached IOAS");
    destroy(s, 1, "destroy the other");
    detach(s, "detach");
    detach(s, "detach again");
    detach(s, "argsz 4", 4);
    destroy(s, 3, "destroy after detach");
    destroy(s, 2, "destroy the device's id");
    mk(s);
  }
  // cdev walks: open, bind, attach, map, close in each order (the iommufd and the cdev)
  type A = "bind" | "attach" | "map" | "closeI";
  for (const p of permutations<A>(["bind", "attach", "map", "closeI"])) {
    const s = ready(`cdev-walk-${p.join("-")}`, `cdev and iommufd: ${p.join(", ")}`, [M, "buf"]);
    cdev(s);
    for (const a of p) {
      if (a === "bind") bind(s, "$i", { note: "bind: devid 2" });
      else if (a === "attach") attach(s, 1, { note: "attach ioas 1" });
      else if (a === "map") map(s, A, 64 * K, { note: "map" });
      else if (a === "closeI") s.close("$i", "close the iommufd");
      s.ioctl("$d", "VFIO_DEVICE_GET_INFO", st(V.vfio_device_info, { argsz: 24 }), {
        note: "is the device usable?",
      });
    }
    s.close("$d");
    s.open("/dev/vfio/devices/vfio0", "d2", ["O_RDWR"], "the cdev again");
    s.open("/dev/vfio/5", "g", ["O_RDWR"], "or the group");
    mk(s);
  }
  // HWPT_ALLOC flags and data types; GET_HW_INFO lengths
  {
    const s = ready(
      "hwpt-alloc-args",
      "HWPT_ALLOC with each flag, data type and size; GET_HW_INFO lengths",
      [4096, "hw"],
    );
    cdev(s);
    bind(s, "$i", { note: "devid 2" });
    const hwpt = (o: {
      flags?: number;
      dev?: number;
      pt?: number;
      type?: number;
      len?: number;
      size?: number;
      note: string;
    }) =>
      s.ioctl(
        "$i",
        "IOMMU_HWPT_ALLOC",
        st(I.iommu_hwpt_alloc, {
          size: o.size ?? 48,
          flags: o.flags ?? 0,
          dev_id: o.dev ?? 2,
          pt_id: o.pt ?? 1,
          data_type: o.type ?? 0,
          data_len: o.len ?? 0,
          data_uptr: o.len ? "$hw" : 0,
        }),
        { note: o.note },
      );
    for (const b of [0, 1, 2, 3, 31]) hwpt({ flags: (1 << b) >>> 0, note: `flag bit ${b}` });
    for (const t of [1, 2, 99]) hwpt({ type: t, len: 24, note: `data type ${t}` });
    hwpt({ type: 0, len: 24, note: "type NONE with data" });
    for (const size of [0, 24, 40, 44, 56]) hwpt({ size, note: `size ${size}` });
    hwpt({ dev: 1, note: "dev_id is the IOAS" });
    hwpt({ pt: 2, note: "pt_id is the device" });
    hwpt({ note: "a paging hwpt" });
    const info = (len: number, size = 32, note = `data_len ${len}`) =>
      s.ioctl(
        "$i",
        "IOMMU_GET_HW_INFO",
        st(I.iommu_hw_info, { size, dev_id: 2, data_len: len, data_uptr: "$hw" }),
        { note },
      );
    for (const len of [0, 4, 8, 23, 24, 32]) info(len);
    for (const size of [0, 24, 31, 40]) info(24, size, `size ${size}`);
    mk(s);
  }
  // IOMMU_VFIO_IOAS: the compat IOAS, got, set to each kind of id, cleared
  {
    const s = ready("vfio-ioas", "IOMMU_VFIO_IOAS: GET/SET/CLEAR, sizes, ids, ops", null);
    const vioas = (op: number, id: number, note: string, size = 12, reserved = 0) =>
      s.ioctl(
        "$i",
        "IOMMU_VFIO_IOAS",
        st(I.iommu_vfio_ioas, { size, ioas_id: id, op, __reserved: reserved }),
        { note },
      );
    vioas(I.IOMMU_VFIO_IOAS_GET, 0, "GET with none");
    vioas(I.IOMMU_VFIO_IOAS_CLEAR, 0, "CLEAR with none");
    vioas(I.IOMMU_VFIO_IOAS_SET, 1, "SET ioas 1");
    vioas(I.IOMMU_VFIO_IOAS_GET, 0, "GET");
    vioas(I.IOMMU_VFIO_IOAS_SET, 99, "SET no such id");
    vioas(I.IOMMU_VFIO_IOAS_SET, 0, "SET id 0");
    for (const size of [0, 8, 11, 16]) vioas(I.IOMMU_VFIO_IOAS_GET, 0, `size ${size}`, size);
    vioas(I.IOMMU_VFIO_IOAS_GET, 0, "reserved set", 12, 1);
    vioas(3, 0, "op 3");
    vioas(0xffff, 0, "op 0xffff");
    ioasAlloc(s, "ioas 2");
    vioas(I.IOMMU_VFIO_IOAS_SET, 2, "SET ioas 2");
    vioas(I.IOMMU_VFIO_IOAS_GET, 0, "GET: 2");
    destroy(s, 2, "destroy the compat IOAS");
    vioas(I.IOMMU_VFIO_IOAS_GET, 0, "GET after destroy");
    vioas(I.IOMMU_VFIO_IOAS_CLEAR, 0, "CLEAR");
    vioas(I.IOMMU_VFIO_IOAS_GET, 0, "GET after CLEAR");
    destroy(s, 2, "destroy after CLEAR");
    s.open("/dev/vfio/vfio", "c", ["O_RDWR"], "the compat container node");
    s.ioctl("$c", "VFIO_CHECK_EXTENSION", V.VFIO_TYPE1v2_IOMMU);
    mk(s);
  }
  // hot reset of a cdev-opened device: devids in the info, an empty fd array to reset
  {
    const s = ready(
      "cdev-hot-reset",
      "PCI_HOT_RESET_INFO devids and PCI_HOT_RESET by iommufd",
      null,
    );
    cdev(s);
    const info = (argsz: number, note: string) =>
      s.ioctl(
        "$d",
        "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO",
        st(V.vfio_pci_hot_reset_info, { argsz }, { tail: { name: "devices", size: 16 } }),
        { note },
      );
    const reset = (
      o: { argsz?: number; flags?: number; fds?: (string | number)[] },
      note: string,
    ) =>
      s.ioctl(
        "$d",
        "VFIO_DEVICE_PCI_HOT_RESET",
        {
          struct: [
            ...st(V.vfio_pci_hot_reset, {
              argsz: o.argsz ?? 12 + 4 * (o.fds?.length ?? 0),
              flags: o.flags ?? 0,
              count: o.fds?.length ?? 0,
            }).struct,
            ...(o.fds ?? []).map((fd, i): [string, string, string | number] => [
              "s32",
              `fd${i}`,
              fd,
            ]),
          ],
        },
        { note },
      );
    info(20, "before bind");
    reset({}, "reset before bind");
    bind(s, "$i", { note: "devid 2" });
    for (const a of [12, 16, 19, 20, 28]) info(a, `argsz ${a}`);
    reset({}, "empty array: reset");
    reset({ fds: ["$i"] }, "an fd array on a cdev device");
    reset({ flags: 1 }, "flags 1");
    reset({ argsz: 11 }, "argsz 11");
    attach(s, 1, { note: "attach ioas 1" });
    reset({}, "attached: reset");
    info(20, "attached");
    s.ioctl("$d", "VFIO_DEVICE_RESET", 0, { note: "function reset" });
    mk(s);
  }
  // the HWPT an IOAS attach creates: its id in use, replaced, gone with its last device
  {
    const s = ready("auto-hwpt", "the automatic HWPT of an IOAS attach: id 3, replace, gone", null);
    cdev(s);
    bind(s, "$i", { note: "devid 2" });
    attach(s, 1, { note: "attach ioas 1: auto hwpt 3" });
    const track = (id: number, note: string) =>
      s.ioctl(
        "$i",
        "IOMMU_HWPT_SET_DIRTY_TRACKING",
        st(I.iommu_hwpt_set_dirty_tracking, { size: 16, hwpt_id: id }),
        { note },
      );
    track(3, "the auto hwpt is a paging hwpt");
    destroy(s, 3, "destroy the auto hwpt");
    attach(s, 1, { note: "attach the same IOAS again" });
    hwptAlloc(s, "a user hwpt: 4");
    attach(s, 4, { note: "replace with hwpt 4" });
    track(3, "the auto hwpt after the replace");
    destroy(s, 3, "destroy it");
    attach(s, 1, { note: "back to the IOAS: a new auto hwpt" });
    destroy(s, 4, "the user hwpt, now unused");
    track(5, "the new auto hwpt");
    s.close("$d", "close the device: its auto hwpt goes");
    track(5, "after close");
    destroy(s, 1, "the IOAS, now unused");
    mk(s);
  }
  // DESTROY of each kind of object; objects in use
  {
    const s = ready("destroy-kinds", "DESTROY of IOAS, HWPT, device ids; in use; twice", null);
    cdev(s);
    bind(s, "$i", { note: "devid 2" });
    hwptAlloc(s, "hwpt 3 on ioas 1");
    destroy(s, 1, "the IOAS under a hwpt");
    destroy(s, 2, "the device");
    attach(s, 3, { note: "attach hwpt 3" });
    destroy(s, 3, "the attached hwpt");
    detach(s, "detach");
    destroy(s, 3, "the hwpt after detach");
    destroy(s, 3, "again");
    destroy(s, 1, "the IOAS");
    for (const [size, id, what] of [
      [0, 1, "size 0"],
      [4, 1, "size 4"],
      [7, 1, "size 7"],
      [12, 0, "size 12, id 0"],
      [8, 0, "id 0"],
      [8, 0xffffffff, "id 0xffffffff"],
    ] as const)
      destroy(s, id, what, size);
    s.ioctl("$d", "VFIO_DEVICE_GET_INFO", st(V.vfio_device_info, { argsz: 24 }), {
      note: "the device still works",
    });
    mk(s);
  }
  // dirty tracking on a hwpt without it; FAULT_QUEUE_ALLOC
  {
    const s = ready("hwpt-dirty-fault", "SET_DIRTY_TRACKING, GET_DIRTY_BITMAP, FAULT_QUEUE_ALLOC", [
      4096,
      "bm",
    ]);
    cdev(s);
    bind(s, "$i", { note: "devid 2" });
    hwptAlloc(s, "hwpt 3");
    const track = (id: number, flags: number, note: string, size = 16) =>
      s.ioctl(
        "$i",
        "IOMMU_HWPT_SET_DIRTY_TRACKING",
        st(I.iommu_hwpt_set_dirty_tracking, { size, flags, hwpt_id: id }),
        { note },
      );
    track(3, I.IOMMU_HWPT_DIRTY_TRACKING_ENABLE, "enable on hwpt 3");
    track(3, 0, "disable");
    track(3, 2, "flag bit 1");
    track(1, 1, "on the IOAS");
    track(2, 1, "on the device");
    track(99, 1, "no such id");
    track(3, 1, "size 12", 12);
    const bitmap = (
      o: { id?: number; flags?: number; iova?: number; length?: number; page?: number },
      note: string,
    ) =>
      s.ioctl(
        "$i",
        "IOMMU_HWPT_GET_DIRTY_BITMAP",
        st(I.iommu_hwpt_get_dirty_bitmap, {
          size: 48,
          hwpt_id: o.id ?? 3,
          flags: o.flags ?? 0,
          iova: o.iova ?? 0,
          length: o.length ?? 64 * K,
          page_size: o.page ?? 4096,
          data: "$bm",
        }),
        { note },
      );
    bitmap({}, "hwpt 3 without tracking");
    bitmap({ flags: I.IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR }, "NO_CLEAR");
    bitmap({ flags: 2 }, "flag bit 1");
    bitmap({ page: 0 }, "page size 0");
    bitmap({ page: 3000 }, "page size 3000");
    bitmap({ iova: 1 }, "unaligned iova");
    bitmap({ length: 0 }, "length 0");
    bitmap({ id: 1 }, "the IOAS");
    bitmap({ id: 99 }, "no such id");
    faultQueue(s, "flags 1", { flags: 1 });
    faultQueue(s, "size 8", { size: 8 });
    faultQueue(s, "a fault queue: id 4", { fd: "fq" });
    hwptAlloc(s, "a paging hwpt with the fault queue", { fault: 4 });
    hwptAlloc(s, "fault_id is the IOAS", { fault: 1 });
    destroy(s, 4, "destroy the fault queue");
    mk(s);
  }
  // the compat container: extensions, SET_IOMMU types, MAP/UNMAP relations
  {
    const s = new Script(
      "compat-extensions",
      "/dev/vfio/vfio from iommufd: extensions and SET_IOMMU types",
    );
    s.open("/dev/vfio/vfio", "c");
    s.ioctl("$c", "VFIO_GET_API_VERSION", 0);
    for (let e = 0; e <= 12; e++)
      s.ioctl("$c", "VFIO_CHECK_EXTENSION", e, { note: `extension ${e}` });
    for (const t of [0, 1, 2, 7, 8, 3])
      s.ioctl("$c", "VFIO_SET_IOMMU", t, { note: `type ${t}, no group` });
    mk(s);
  }
  for (const t of [V.VFIO_TYPE1_IOMMU, V.VFIO_TYPE1v2_IOMMU]) {
    const tag = t === V.VFIO_TYPE1_IOMMU ? "type1" : "type1v2";
    const s = new Script(
      `compat-${tag}`,
      `the compat container with ${tag}: maps, partial unmaps, GET_INFO`,
    );
    type1Ready(s, NIC, NIC_GROUP, t);
    s.mmap(4 * M, "buf");
    mapDma(s, A, 2 * M);
    unmapDma(s, A + 64 * K, 64 * K, { note: "a hole" });
    unmapDma(s, A, 4 * K, { note: "the first page" });
    unmapDma(s, A - M, 2 * M, { note: "over the start" });
    unmapDma(s, A, 2 * M, { note: "all that is left" });
    mapDma(s, A, 64 * K, { flags: V.VFIO_DMA_MAP_FLAG_READ, note: "read-only" });
    mapDma(s, A + M, 64 * K, { flags: V.VFIO_DMA_MAP_FLAG_VADDR, note: "VADDR flag" });
    unmapDma(s, 0, 0, { flags: V.VFIO_DMA_UNMAP_FLAG_ALL, note: "UNMAP_ALL" });
    unmapDma(s, 0, 0, { flags: V.VFIO_DMA_UNMAP_FLAG_VADDR, note: "VADDR" });
    iommuInfo(s, 128);
    dirtyPages(s, V.VFIO_IOMMU_DIRTY_PAGES_FLAG_START);
    mk(s);
  }
  return out;
}
