/**
 * The generated corpus: families of cases written from the model's uAPI knowledge
 * (dsl.ts), each a short script (one boot) that asks one question of the kernel. The
 * families are independent: each owns its cases' names (`FAMILY.NAME`), so one can grow
 * or be added (iommufd, when its uAPI is in src/uapi) without touching the others.
 *
 * `generateCorpus(out)` writes case.json and script.jsonl per case; a case whose script
 * changed loses its recording (snapshot.tar.gz, expected.jsonl) so `oracle record-all
 * --missing` records exactly what is new, and cases of a written family that the generator
 * no longer produces are removed.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { GeneratedCase } from "./dsl.js";
import * as config from "./config.js";
import * as containerTopology from "./container-topology.js";
import * as device from "./device.js";
import * as endpoint from "./endpoint.js";
import * as group from "./group.js";
import * as iommufd from "./iommufd.js";
import * as iommufdTopology from "./iommufd-topology.js";
import * as kvm from "./kvm.js";
import * as kvmcdev from "./kvmcdev.js";
import * as kvmvfio from "./kvmvfio.js";
import * as kvmvm from "./kvmvm.js";
import * as region from "./region.js";
import * as shared from "./shared.js";
import * as topology from "./topology.js";
import * as type1 from "./type1.js";
import * as walks from "./walks.js";

export interface Family {
  name: string;
  what: string;
  generate: () => GeneratedCase[];
}

export const FAMILIES: Family[] = [
  {
    name: "vfio-walk",
    what: "container/group/device state-machine walks",
    generate: walks.generate,
  },
  { name: "vfio-group", what: "container and group ioctl sweeps", generate: group.generate },
  {
    name: "vfio-shared",
    what: "a two-function group: viability, binding orders",
    generate: shared.generate,
  },
  {
    name: "vfio-device",
    what: "vfio-pci device ioctl and config space sweeps",
    generate: device.generate,
  },
  {
    name: "vfio-config",
    what: "vfio-pci config space virtualisation: every register, capability and effect",
    generate: config.generate,
  },
  {
    name: "vfio-region",
    what: "vfio-pci BAR, ROM and absent regions; IOEVENTFD",
    generate: region.generate,
  },
  {
    name: "vfio-endpoint",
    what: "edu, e1000, rtl8139 and a multifunction pair: root ports, bridges, integrated",
    generate: endpoint.generate,
  },
  {
    name: "vfio-type1",
    what: "type1 MAP/UNMAP/GET_INFO/DIRTY_PAGES sweeps",
    generate: type1.generate,
  },
  {
    name: "vfio-container-topology",
    what: "several groups in one type1 container; VT-d variants, iommu=pt (Debian's kernel)",
    generate: containerTopology.generate,
  },
  { name: "kvm-device", what: "KVM device framework and capabilities", generate: kvm.generate },
  {
    name: "kvm-vfio",
    what: "kvm-vfio FILE_ADD/DEL with every fd kind, walks",
    generate: kvmvfio.generate,
  },
  {
    name: "kvm-vfio-cdev",
    what: "kvm-vfio with the VFIO device cdev and the iommufd kernel's other files",
    generate: kvmcdev.generate,
  },
  {
    name: "kvm-vm",
    what: "vCPU ids, memory slots, requests on the wrong fd",
    generate: kvmvm.generate,
  },
  {
    name: "vfio-topology",
    what: "groups on ACS, bridge and legacy PCI topologies: sysfs, driver moves, viability",
    generate: topology.generate,
  },
  {
    name: "iommufd",
    what: "IOAS, cdev, HWPT and compat-container sweeps (iommufd kernel)",
    generate: iommufd.generate,
  },
  {
    name: "iommufd-topology",
    what: "cdev groups of two, VT-d variants (iommufd kernel)",
    generate: iommufdTopology.generate,
  },
];

export interface Written {
  name: string;
  family: string;
  ops: number;
  status: "new" | "changed" | "same";
}

export function caseDirName(c: GeneratedCase): string {
  return `${c.family}.${c.name}`;
}

export function generateAll(families?: string[]): GeneratedCase[] {
  const unknown = (families ?? []).filter((f) => !FAMILIES.some((x) => x.name === f));
  if (unknown.length) throw new Error(`unknown families: ${unknown.join(", ")}`);
  const cases = FAMILIES.filter((f) => !families || families.includes(f.name)).flatMap((f) =>
    f.generate().map((c) => ({ ...c, family: f.name })),
  );
  const seen = new Set<string>();
  for (const c of cases) {
    const n = caseDirName(c);
    if (seen.has(n)) throw new Error(`two generated cases are named ${n}`);
    seen.add(n);
  }
  return cases;
}

export function generateCorpus(out: string, o: { families?: string[]; write: boolean }): Written[] {
  const cases = generateAll(o.families);
  const res: Written[] = [];
  if (o.write) mkdirSync(out, { recursive: true });
  for (const c of cases) {
    const dir = join(out, caseDirName(c));
    const script = c.script.text();
    const spec = JSON.stringify(c.spec, null, 1) + "\n";
    let status: Written["status"] = "new";
    if (existsSync(join(dir, "script.jsonl"))) {
      const same =
        readFileSync(join(dir, "script.jsonl"), "utf8") === script &&
        existsSync(join(dir, "case.json")) &&
        readFileSync(join(dir, "case.json"), "utf8") === spec;
      status = same ? "same" : "changed";
    }
    if (o.write && status !== "same") {
      mkdirSync(dir, { recursive: true });
      for (const f of ["snapshot.tar.gz", "expected.jsonl"]) rmSync(join(dir, f), { force: true });
      writeFileSync(join(dir, "case.json"), spec);
      writeFileSync(join(dir, "script.jsonl"), script);
    }
    res.push({ name: caseDirName(c), family: c.family, ops: c.script.length, status });
  }
  // drop cases of the written families that are no longer generated
  if (o.write && existsSync(out)) {
    const keep = new Set(res.map((r) => r.name));
    const fams = new Set(cases.map((c) => c.family));
    for (const n of readdirSync(out))
      if (!keep.has(n) && fams.has(n.split(".")[0] as string))
        rmSync(join(out, n), { recursive: true, force: true });
  }
  return res;
}
