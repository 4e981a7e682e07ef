/**
 * vfio_iommu_type1 sweeps: MAP_DMA and UNMAP_DMA with argsz below, at and above the
 * struct, every flag bit, iova/vaddr/size at every alignment that matters (bytes, 4K,
 * 2M, 1G), every way a new range can meet an existing one (Allen's interval relations),
 * sizes at the edges (0, wrap, the 39-bit aperture, the MSI window), vaddrs that are
 * unmapped, read-only or PROT_NONE; unmaps that split, straddle or miss; UNMAP_ALL and
 * VADDR; GET_INFO argsz and its capability chain; DIRTY_PAGES flags and argsz.
 */
import * as V from "../../uapi/vfio.js";
import {
  RELATIONS,
  SMALL,
  attachGroup,
  dirtyBitmap,
  dirtyPages,
  iommuInfo,
  mapDma,
  type1Ready,
  unmapDma,
} from "./common.js";
import { Script, type GeneratedCase } from "./dsl.js";

const K = 1024;
const M = K * K;
const RW = V.VFIO_DMA_MAP_FLAG_READ | V.VFIO_DMA_MAP_FLAG_WRITE;

function ready(name: string, note: string, buf = 8 * M, type = V.VFIO_TYPE1v2_IOMMU): Script {
  const s = new Script(name, note);
  type1Ready(s, undefined, undefined, type);
  s.mmap(buf, "buf");
  return s;
}

export function generate(): GeneratedCase[] {
  const out: GeneratedCase[] = [];
  const mk = (s: Script) =>
    out.push({ name: s.name, family: "vfio-type1", spec: SMALL, script: s });
  const A = 16 * M;
  const B = A + 64 * K;

  // map over an existing mapping, every relation; then an unmap of the same range
  for (const [rel, f] of RELATIONS) {
    const [c, d] = f(A, B);
    const s = ready(`map-${rel}`, `MAP_DMA of a range that ${rel} an existing 64K mapping`);
    mapDma(s, A, B - A, { note: "existing [16M, 16M+64K)" });
    mapDma(s, c, d - c, { vaddr: "$buf+0x100000", note: `candidate ${rel}` });
    unmapDma(s, c, d - c, { note: `unmap the candidate's range` });
    unmapDma(s, A, B - A, { note: "unmap the original" });
    mapDma(s, c, d - c, { vaddr: "$buf+0x100000", note: "candidate alone" });
    unmapDma(s, 0, 0, { flags: V.VFIO_DMA_UNMAP_FLAG_ALL, note: "all" });
    iommuInfo(s, 16, "afterwards");
    mk(s);
  }
  // unmap relations: an unmap range against adjacent mappings, under type1v2 and type1
  for (const [rel, f] of [
    ...RELATIONS,
    ...RELATIONS.map(([r, g]): (typeof RELATIONS)[number] => [`${r}-v1`, g]),
  ]) {
    const [c, d] = f(A, B);
    const v1 = rel.endsWith("-v1");
    const s = v1
      ? ready(
          `unmap-${rel}`,
          `UNMAP_DMA (type1, not v2) of a range that ${rel.slice(0, -3)} a 64K mapping`,
          8 * M,
          V.VFIO_TYPE1_IOMMU,
        )
      : ready(`unmap-${rel}`, `UNMAP_DMA of a range that ${rel} a 64K mapping (next to another)`);
    mapDma(s, A, B - A, { note: "[16M, 16M+64K)" });
    mapDma(s, B, 64 * K, { vaddr: "$buf+0x10000", note: "adjacent [16M+64K, 16M+128K)" });
    mapDma(s, A - 64 * K, 64 * K, { vaddr: "$buf+0x20000", note: "adjacent before" });
    unmapDma(s, c, d - c, { note: rel });
    unmapDma(s, A - 64 * K, 3 * 64 * K, { note: "everything left" });
    unmapDma(s, A - 64 * K, 3 * 64 * K, { note: "again: nothing" });
    mk(s);
  }

  // argsz sweeps
  {
    const s = ready("map-argsz", "MAP_DMA argsz from 0 to above the struct");
    [0, 4, 8, 15, 16, 23, 24, 31, 32, 33, 64, 4096, 0xffffffff].forEach((a, i) =>
      mapDma(s, 32 * M + i * M, 64 * K, { argsz: a, note: `argsz ${a}` }),
    );
    mk(s);
  }
  {
    const s = ready("unmap-argsz", "UNMAP_DMA argsz from 0 to above the struct");
    [0, 4, 8, 15, 16, 23, 24, 25, 32, 48, 4096, 0xffffffff].forEach((a, i) => {
      mapDma(s, 32 * M + i * M, 64 * K);
      unmapDma(s, 32 * M + i * M, 64 * K, { argsz: a, note: `argsz ${a}` });
    });
    mk(s);
  }
  {
    const s = ready("info-argsz", "GET_INFO argsz around the struct and the capability chain");
    for (const a of [0, 4, 7, 8, 12, 15, 16, 17, 20, 23, 24, 32, 40, 48, 64, 96, 128, 256])
      iommuInfo(s, a, `argsz ${a}`);
    mk(s);
  }
  {
    const s = new Script(
      "info-states",
      "GET_INFO in each container state and while mappings come and go",
    );
    s.mmap(2 * M, "buf");
    s.open("/dev/vfio/vfio", "c");
    iommuInfo(s, 16, "no group");
    type1Ready(s);
    iommuInfo(s, 128, "caps, no mappings");
    for (let i = 0; i < 4; i++) {
      mapDma(s, 64 * M + i * M, 4 * K, { note: `mapping ${i + 1}` });
      iommuInfo(s, 128);
    }
    unmapDma(s, 0, 0, { flags: V.VFIO_DMA_UNMAP_FLAG_ALL });
    iommuInfo(s, 128, "after UNMAP_ALL");
    mk(s);
  }

  // every flag bit of MAP and UNMAP (one bit at a time, each on a fresh iova)
  for (const [lo, hi] of [
    [0, 8],
    [8, 32],
  ] as const) {
    const s = ready(
      `map-flags-${lo}-${hi - 1}`,
      `MAP_DMA with flag bit ${lo}..${hi - 1} alone and with READ|WRITE`,
    );
    for (let b = lo; b < hi; b++) {
      mapDma(s, 64 * M + b * 2 * M, 64 * K, { flags: (1 << b) >>> 0, note: `flag bit ${b}` });
      mapDma(s, 64 * M + b * 2 * M + M, 64 * K, {
        flags: (RW | (1 << b)) >>> 0,
        note: `READ|WRITE|bit ${b}`,
      });
    }
    mk(s);
  }
  {
    const s = ready("unmap-flags", "UNMAP_DMA with each flag bit over a mapping");
    for (let b = 0; b < 32; b++) {
      if (b % 2 === 0) mapDma(s, 64 * M + b * M, 64 * K);
      unmapDma(s, 64 * M + (b - (b % 2)) * M, 64 * K, {
        flags: (1 << b) >>> 0,
        note: `flag bit ${b}`,
      });
    }
    mk(s);
  }
  {
    const s = ready("unmap-all", "UNMAP_ALL with and without iova/size, with other flags");
    mapDma(s, 16 * M, 64 * K);
    mapDma(s, 32 * M, 2 * M, { vaddr: "$buf+0x200000" });
    unmapDma(s, 16 * M, 64 * K, { flags: V.VFIO_DMA_UNMAP_FLAG_ALL, note: "ALL with an iova" });
    unmapDma(s, 0, 64 * K, { flags: V.VFIO_DMA_UNMAP_FLAG_ALL, note: "ALL with a size" });
    unmapDma(s, 0, 0, {
      flags: V.VFIO_DMA_UNMAP_FLAG_ALL | V.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
      note: "ALL + dirty bitmap",
    });
    unmapDma(s, 0, 0, {
      flags: V.VFIO_DMA_UNMAP_FLAG_ALL | V.VFIO_DMA_UNMAP_FLAG_VADDR,
      note: "ALL + VADDR",
    });
    unmapDma(s, 0, 0, { flags: V.VFIO_DMA_UNMAP_FLAG_ALL, note: "ALL" });
    unmapDma(s, 0, 0, { flags: V.VFIO_DMA_UNMAP_FLAG_ALL, note: "ALL again" });
    unmapDma(s, 0, 0, { note: "no flags, size 0" });
    iommuInfo(s, 128);
    mk(s);
  }

  // alignments: iova, vaddr and size offsets from a page boundary
  for (const [what, offs] of [
    ["iova", [1, 0x800, 0xfff, 0x1000, 0x2000, 0x10000, 0x100000, 0x1fffff]],
    ["vaddr", [1, 0x800, 0xfff, 0x1000, 0x3000, 0x10000, 0x100000, 0x1ff000]],
    ["size", [1, 0x800, 0xfff, 0x1000, 0x1001, 0x2000, 0x10000, 0x1fffff]],
  ] as const) {
    const s = ready(`map-align-${what}`, `MAP_DMA with the ${what} off alignment`);
    offs.forEach((o, i) => {
      const base = 64 * M + i * 4 * M;
      const iova = what === "iova" ? base + o : base;
      const vaddr = what === "vaddr" ? `$buf+0x${o.toString(16)}` : "$buf";
      const size = what === "size" ? o : 64 * K;
      mapDma(s, iova, size, { vaddr, note: `${what} +0x${o.toString(16)}` });
    });
    unmapDma(s, 64 * M + 1, 4 * K, { note: "unaligned unmap iova" });
    unmapDma(s, 64 * M, 4 * K + 1, { note: "unaligned unmap size" });
    mk(s);
  }

  // sizes and positions at the edges of the address space
  {
    const s = ready(
      "map-edges",
      "MAP_DMA at the edges: size 0, wrap, the 39-bit aperture, the MSI window",
    );
    const cases: [bigint, bigint, string][] = [
      [16n * BigInt(M), 0n, "size 0"],
      [0n, 4096n, "iova 0"],
      [(1n << 39n) - 4096n, 4096n, "last page of the 39-bit aperture"],
      [(1n << 39n) - 4096n, 8192n, "straddles the aperture's end"],
      [1n << 39n, 4096n, "just past the aperture"],
      [1n << 48n, 4096n, "2^48"],
      [0xfffffffffffff000n, 4096n, "the last page of 2^64"],
      [0xfffffffffffff000n, 8192n, "wraps past 2^64"],
      [0xfee00000n, 4096n, "the MSI window"],
      [0xfed00000n, 4096n, "just below the MSI window"],
      [0xfef00000n, 4096n, "just above the MSI window"],
      [0xfec00000n, 0x400000n, "across the MSI window"],
      [16n * BigInt(M), 1n << 63n, "a huge size"],
    ];
    for (const [iova, size, note] of cases) mapDma(s, iova, size, { note });
    iommuInfo(s, 128);
    mk(s);
  }

  // vaddrs the process cannot give: unmapped, read-only, PROT_NONE, a hole after munmap
  {
    const s = ready("map-vaddr-kinds", "MAP_DMA from memory of each kind");
    s.mmap(64 * K, "ro", "r");
    s.mmap(64 * K, "none", "none");
    s.mmap(64 * K, "gone");
    s.munmap("gone");
    const kinds: [number, string | number, number, string][] = [
      [64 * K, "$ro", RW, "read-only memory, READ|WRITE"],
      [64 * K, "$ro", V.VFIO_DMA_MAP_FLAG_READ, "read-only memory, READ"],
      [64 * K, "$ro", V.VFIO_DMA_MAP_FLAG_WRITE, "read-only memory, WRITE"],
      [64 * K, "$none", RW, "PROT_NONE"],
      [64 * K, "$gone", RW, "unmapped"],
      [128 * K, "$ro", V.VFIO_DMA_MAP_FLAG_READ, "read-only and past its end"],
      [64 * K, "$buf+0x7f0000", RW, "the end of buf"],
      [128 * K, "$buf+0x7f0000", RW, "past the end of buf"],
      [64 * K, 0, RW, "vaddr 0"],
    ];
    kinds.forEach(([size, vaddr, flags, note], i) =>
      mapDma(s, (16 + i) * M, size, { vaddr, flags, note }),
    );
    iommuInfo(s, 128);
    mk(s);
  }

  // the same memory mapped many times, many small mappings, then DMA_AVAIL
  {
    const s = ready("map-many", "many mappings of the same memory; DMA_AVAIL counts them");
    for (let i = 0; i < 24; i++) mapDma(s, 128 * M + i * 64 * K, 4 * K, { note: `#${i + 1}` });
    iommuInfo(s, 128);
    unmapDma(s, 128 * M, 24 * 64 * K, { note: "all of them at once" });
    iommuInfo(s, 128);
    mk(s);
  }

  // VADDR: invalidate and re-supply
  {
    const s = ready(
      "vaddr-update",
      "UNMAP with VADDR then MAP with VADDR, in order and out of order",
    );
    s.mmap(M, "buf2");
    mapDma(s, 16 * M, 64 * K);
    mapDma(s, 17 * M, 64 * K, { vaddr: "$buf+0x10000" });
    const VADDR = V.VFIO_DMA_MAP_FLAG_VADDR;
    const supply = (iova: number, size: number, vaddr: string, note: string, flags = VADDR) =>
      mapDma(s, iova, size, { vaddr, flags, note });
    supply(16 * M, 64 * K, "$buf2", "VADDR before invalidating");
    unmapDma(s, 16 * M, 64 * K, { flags: V.VFIO_DMA_UNMAP_FLAG_VADDR, note: "invalidate" });
    unmapDma(s, 16 * M, 64 * K, { flags: V.VFIO_DMA_UNMAP_FLAG_VADDR, note: "invalidate again" });
    supply(16 * M, 32 * K, "$buf2", "re-supply a part");
    supply(16 * M, 64 * K, "$buf2", "VADDR with READ|WRITE", VADDR | RW);
    supply(16 * M, 64 * K, "$buf2", "re-supply");
    unmapDma(s, 0, 0, {
      flags: V.VFIO_DMA_UNMAP_FLAG_ALL | V.VFIO_DMA_UNMAP_FLAG_VADDR,
      note: "invalidate all",
    });
    supply(17 * M, 64 * K, "$buf2", "re-supply the second");
    supply(16 * M, 64 * K, "$buf2+0x10000", "and the first");
    unmapDma(s, 16 * M, 2 * M, { note: "unmap both" });
    mk(s);
  }

  // DIRTY_PAGES
  {
    const s = ready("dirty-flags", "DIRTY_PAGES with each flag and argsz");
    mapDma(s, 16 * M, 64 * K);
    for (const [flags, note] of [
      [0, "no flag"],
      [V.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP, "STOP before START"],
      [V.VFIO_IOMMU_DIRTY_PAGES_FLAG_START, "START"],
      [V.VFIO_IOMMU_DIRTY_PAGES_FLAG_START, "START again"],
      [V.VFIO_IOMMU_DIRTY_PAGES_FLAG_START | V.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP, "START|STOP"],
      [1 << 3, "bit 3"],
      [V.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP, "STOP"],
      [V.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP, "STOP again"],
    ] as const)
      dirtyPages(s, flags, 8, note);
    for (const a of [0, 7, 9, 48])
      dirtyPages(s, V.VFIO_IOMMU_DIRTY_PAGES_FLAG_START, a, `START, argsz ${a}`);
    mk(s);
  }
  {
    const s = ready("dirty-bitmap", "GET_BITMAP over ranges and page sizes while tracking");
    s.mmap(4096, "bm");
    mapDma(s, 16 * M, 64 * K);
    mapDma(s, 32 * M, 64 * K, { vaddr: "$buf+0x10000" });
    dirtyPages(s, V.VFIO_IOMMU_DIRTY_PAGES_FLAG_START);
    const get = (iova: number, size: number, pgsize: number, bsize: number, note: string) =>
      dirtyBitmap(s, iova, size, pgsize, bsize, note);
    get(16 * M, 64 * K, 4096, 8, "exactly the first mapping");
    s.check("bm", 0, "ffff000000000000");
    get(16 * M, 64 * K, 8192, 8, "page size 8K");
    get(16 * M, 64 * K, 4096, 1, "bitmap too small");
    get(16 * M, 32 * K, 4096, 8, "half of a mapping");
    get(16 * M, 16 * M + 64 * K, 4096, 1024, "two mappings and the gap");
    get(16 * M + 4096, 64 * K, 4096, 8, "unaligned to the mapping");
    get(48 * M, 64 * K, 4096, 8, "nothing mapped there");
    dirtyPages(s, V.VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP);
    get(16 * M, 64 * K, 4096, 8, "after STOP");
    mk(s);
  }

  // type1 (v1) versus v2: the same sequence on each
  for (const t of [V.VFIO_TYPE1_IOMMU, V.VFIO_TYPE1v2_IOMMU]) {
    const s = new Script(
      `split-type${t === V.VFIO_TYPE1_IOMMU ? "1" : "1v2"}`,
      "partial unmaps (splitting a mapping) under type1 and type1v2",
    );
    s.sysfsWrite("/sys/bus/pci/devices/0000:01:00.0/driver_override", "vfio-pci");
    s.sysfsWrite("/sys/bus/pci/devices/0000:01:00.0/driver/unbind", "0000:01:00.0");
    s.sysfsWrite("/sys/bus/pci/drivers_probe", "0000:01:00.0");
    attachGroup(s);
    s.ioctl("$c", "VFIO_SET_IOMMU", t);
    s.mmap(4 * M, "buf");
    mapDma(s, 16 * M, 2 * M);
    unmapDma(s, 16 * M + 64 * K, 64 * K, { note: "a hole in the middle" });
    unmapDma(s, 16 * M, 4 * K, { note: "the first page" });
    unmapDma(s, 17 * M, M, { note: "the second half" });
    unmapDma(s, 15 * M, 2 * M, { note: "over the start" });
    unmapDma(s, 16 * M, 2 * M, { note: "the whole original" });
    mapDma(s, 16 * M, 2 * M);
    unmapDma(s, 16 * M, 2 * M, { note: "whole" });
    iommuInfo(s, 128);
    mk(s);
  }
  return out;
}
