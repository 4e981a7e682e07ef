/**
 * Synthetic hosts of a chosen size for benchmarks: PCI segments of root ports, each with a
 * switch whose downstream ports alternate between enforcing ACS and not, each port holding
 * a 4-function endpoint without ACS. One VT-d unit per segment.
 */
import type { FunctionSpec, HostSpec } from "../src/host/spec.js";

const hex = (n: number, w: number) => n.toString(16).padStart(w, "0");

export function syntheticHost(functions: number): HostSpec {
  const perPort = 8; // downstream ports per switch
  const perTree = 2 + perPort * 5; // root port + upstream + (downstream + 4 functions) each
  const treesPerSegment = 24; // 10 buses per tree, within 256
  const trees = Math.ceil(functions / perTree);
  const out: FunctionSpec[] = [];
  const segments = Math.ceil(trees / treesPerSegment);
  for (let t = 0; t < trees; t++) {
    const seg = Math.floor(t / treesPerSegment);
    const i = t % treesPerSegment;
    const ports: FunctionSpec[] = [];
    for (let p = 0; p < perPort; p++) {
      ports.push({
        addr: `${hex(p, 2)}.0`,
        id: { vendor: 0x10b5, device: 0x8747 },
        class: 0x060400,
        pcie: "downstream",
        ...(p % 2 === 0 ? { acs: { cap: ["sv", "rr", "cr", "uf"], ctl: [] } } : {}),
        children: [0, 1, 2, 3].map((fn) => ({
          addr: `00.${fn}`,
          id: { vendor: 0x8086, device: 0x1572 },
          class: 0x020000,
          pcie: "endpoint" as const,
        })),
      });
    }
    out.push({
      addr: `${hex(seg, 4)}:00:${hex(i + 1, 2)}.0`,
      id: { vendor: 0x8086, device: 0x2030 },
      class: 0x060400,
      pcie: "root-port",
      acs: { cap: ["sv", "rr", "cr", "uf"], ctl: [] },
      children: [
        {
          addr: "00.0",
          id: { vendor: 0x10b5, device: 0x8747 },
          class: 0x060400,
          pcie: "upstream",
          children: ports,
        },
      ],
    });
  }
  return {
    name: `synthetic-${functions}`,
    kernel: { cmdline: "" },
    unprivileged: false,
    iommu: Array.from({ length: segments }, (_, s) => ({
      kind: "intel-vtd" as const,
      name: `dmar${s}`,
      segment: s,
    })),
    functions: out,
  };
}
