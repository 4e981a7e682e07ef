/**
 * Host snapshots per oracle/SCRIPT.md: a gzip'd tar or a directory holding copies of
 * /sys and /proc files under their absolute paths, symbolic links kept as links.
 *
 * What is read (drivers/pci/pci-sysfs.c, drivers/iommu/iommu-sysfs.c and iommu.c, Linux 6.12):
 * sys/bus/pci/devices/* → the device directory under sys/devices/pciDDDD:BB/… whose path
 * gives the bridge chain (and VMD domains, nested below their endpoint); each function's
 * `config` (4096/256 bytes as root, 64 unprivileged), `resource` (BAR and ROM sizes and
 * kinds, as pci-sysfs.c resource_show prints struct resource), `driver`, `iommu_group`, `iommu`,
 * `physfn`/`virtfn*` links; sys/class/iommu/* units with intel-iommu/{cap,ecap};
 * proc/cmdline and proc/sys/kernel/osrelease. Missing files are tolerated.
 */
import { readdirSync, readFileSync, readlinkSync, lstatSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import tar from "tar-stream";
import { Readable } from "node:stream";
import { InputError } from "./errors.js";
import type { FunctionSpec, HostSpec, IommuSpec } from "./spec.js";
import { BDF_RE } from "./spec.js";
import { walkExtCaps } from "../machine/pci/builder.js";
import { rawConfigSpace } from "../machine/pci/builder.js";
import * as R from "../uapi/pci_regs.js";

type Entry = { kind: "file"; data: Buffer } | { kind: "link"; target: string } | { kind: "dir" };

/** A read-only view of the snapshot's files, keyed by path without a leading '/'. */
export class SnapshotFs {
  constructor(readonly entries: Map<string, Entry>) {}

  file(path: string): Buffer | undefined {
    const e = this.entries.get(this.resolve(path));
    return e?.kind === "file" ? e.data : undefined;
  }
  text(path: string): string | undefined {
    return this.file(path)?.toString("utf8").replace(/\n$/, "");
  }
  link(path: string): string | undefined {
    const e = this.entries.get(path);
    return e?.kind === "link" ? e.target : undefined;
  }
  /** Names directly below a directory. */
  list(dir: string): string[] {
    const pre = dir.replace(/\/$/, "") + "/";
    const out = new Set<string>();
    for (const k of this.entries.keys()) {
      if (k.startsWith(pre)) out.add(k.slice(pre.length).split("/")[0] as string);
    }
    return [...out].sort();
  }
  /** Resolve symbolic links in the directory part of a path. */
  resolve(path: string): string {
    const parts = path.split("/");
    let cur: string[] = [];
    for (let i = 0; i < parts.length; i++) {
      cur.push(parts[i] as string);
      const p = cur.join("/");
      const e = this.entries.get(p);
      if (e?.kind === "link" && i < parts.length - 1) cur = joinLink(cur.slice(0, -1), e.target);
    }
    return cur.join("/");
  }
}

function joinLink(dir: string[], target: string): string[] {
  const out = target.startsWith("/") ? [] : [...dir];
  for (const p of target.split("/")) {
    if (p === "" || p === ".") continue;
    if (p === "..") out.pop();
    else out.push(p);
  }
  return out;
}

export async function readSnapshot(path: string): Promise<SnapshotFs> {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    throw new InputError(path, "no such file or directory");
  }
  if (st.isDirectory()) return readDir(path);
  const raw = readFileSync(path);
  let tarBytes: Buffer;
  try {
    tarBytes = raw[0] === 0x1f && raw[1] === 0x8b ? gunzipSync(raw) : raw;
  } catch (e) {
    throw new InputError(path, `not a readable gzip stream (${(e as Error).message})`);
  }
  return readTar(tarBytes, path);
}

function readDir(root: string): SnapshotFs {
  const entries = new Map<string, Entry>();
  const walk = (rel: string) => {
    const abs = join(root, rel);
    const st = lstatSync(abs);
    if (st.isSymbolicLink()) entries.set(rel, { kind: "link", target: readlinkSync(abs) });
    else if (st.isDirectory()) {
      if (rel) entries.set(rel, { kind: "dir" });
      for (const n of readdirSync(abs)) walk(rel ? `${rel}/${n}` : n);
    } else entries.set(rel, { kind: "file", data: readFileSync(abs) });
  };
  walk("");
  return new SnapshotFs(entries);
}

async function readTar(bytes: Buffer, file: string): Promise<SnapshotFs> {
  const entries = new Map<string, Entry>();
  const ex = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    ex.on("entry", (h, stream, next) => {
      const name = h.name.replace(/^\.?\//, "").replace(/\/$/, "");
      const chunks: Buffer[] = [];
      stream.on("data", (c: unknown) => chunks.push(c as Buffer));
      stream.on("end", () => {
        if (h.type === "symlink") entries.set(name, { kind: "link", target: h.linkname ?? "" });
        else if (h.type === "directory") entries.set(name, { kind: "dir" });
        else if (h.type === "file")
          entries.set(name, { kind: "file", data: Buffer.concat(chunks) });
        next();
      });
      stream.resume();
    });
    ex.on("finish", resolve);
    ex.on("error", (e: Error) =>
      reject(new InputError(file, `not a readable tar archive (${e.message})`)),
    );
  });
  Readable.from([bytes]).pipe(ex);
  await done;
  if (entries.size === 0) throw new InputError(file, "the archive holds no files");
  return new SnapshotFs(entries);
}

/** Turn a snapshot's sysfs into a host description. */
export function snapshotToSpec(fs: SnapshotFs, file: string): HostSpec {
  const names = fs.list("sys/bus/pci/devices");
  if (names.length === 0) {
    throw new InputError(
      file,
      "no sys/bus/pci/devices entries: this is not a host snapshot (see SCRIPT.md)",
    );
  }
  const units = new Map<string, IommuSpec>();
  for (const u of fs.list("sys/class/iommu")) {
    const dir = `sys/class/iommu/${u}`;
    const cap = fs.text(`${dir}/intel-iommu/cap`);
    const ecap = fs.text(`${dir}/intel-iommu/ecap`);
    const kind =
      cap !== undefined
        ? "intel-vtd"
        : fs.text(`${dir}/amd-iommu/cap`) !== undefined
          ? "amd-vi"
          : "virtio";
    units.set(u, {
      kind,
      name: u,
      segment: 0,
      ...(cap !== undefined ? { cap: hexNum(cap, file, `${dir}/intel-iommu/cap`) } : {}),
      ...(ecap !== undefined ? { ecap: hexNum(ecap, file, `${dir}/intel-iommu/ecap`) } : {}),
    });
  }
  const functions: FunctionSpec[] = [];
  const unitDevices = new Map<string, string[]>();
  let unprivileged = false;
  let anyIommuLink = false;
  const vfCount = new Map<string, number>();
  const vmdOf = new Map<string, { domain: number; bus: number }>();
  for (const name of names) {
    if (!BDF_RE.test(name))
      throw new InputError(
        file,
        `"${name}" is not a PCI address`,
        undefined,
        "sys/bus/pci/devices",
      );
    const target = fs.link(`sys/bus/pci/devices/${name}`);
    const dir = target
      ? joinLink(["sys", "bus", "pci", "devices"], target).join("/")
      : `sys/bus/pci/devices/${name}`;
    if (fs.link(`${dir}/physfn`)) {
      const pf = basename(fs.link(`${dir}/physfn`) as string);
      vfCount.set(pf, (vfCount.get(pf) ?? 0) + 1);
      continue; // VFs are created by the kernel model when it enables SR-IOV on the PF
    }
    const config = fs.file(`${dir}/config`);
    if (!config) throw new InputError(file, "missing config file", undefined, `${dir}/config`);
    if (![64, 128, 256, 4096].includes(config.length)) {
      throw new InputError(
        file,
        `config holds ${config.length} bytes; expected 64, 128, 256 or 4096`,
        undefined,
        `${dir}/config`,
      );
    }
    if (config.length < 256) unprivileged = true;
    const f: FunctionSpec = { addr: name, config: config.toString("hex") };
    const res = fs.text(`${dir}/resource`);
    if (res !== undefined) Object.assign(f, resourcesOf(res, file, `${dir}/resource`));
    const driver = fs.link(`${dir}/driver`);
    if (driver) f.driver = basename(driver);
    const group = fs.link(`${dir}/iommu_group`);
    const unit = fs.link(`${dir}/iommu`);
    // A group with no default domain ("unknown" type: iommu.c iommu_group_show_type) and no
    // IOMMU unit is VFIO's no-IOMMU group (group.c vfio_noiommu_group_alloc), not one the
    // IOMMU core formed: the model's vfio-pci makes its own when it binds the device.
    const fake =
      !unit &&
      fs.text(`sys/kernel/iommu_groups/${basename(group ?? "")}/type`)?.trim() === "unknown";
    if (group && !fake) f.group = Number(basename(group));
    if (unit) {
      anyIommuLink = true;
      const u = basename(unit);
      unitDevices.set(u, [...(unitDevices.get(u) ?? []), name]);
    } else f.noIommu = true;
    // A VMD domain is a pciDDDD:BB directory nested below its endpoint's directory.
    const vmd =
      /\/([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])\/pci([0-9a-f]{4,5}):([0-9a-f]{2})\//.exec(
        dir,
      );
    if (vmd) {
      vmdOf.set(vmd[1] as string, {
        domain: parseInt(vmd[2] as string, 16),
        bus: parseInt(vmd[3] as string, 16),
      });
    }
    functions.push(f);
  }
  for (const f of functions) {
    const v = vmdOf.get(f.addr);
    if (v) f.vmd = v;
    const n = vfCount.get(f.addr);
    if (n) f.sriov = sriovOf(f, n);
  }
  if (!anyIommuLink) functions.forEach((f) => delete f.noIommu);
  const iommu: IommuSpec[] = [...units.values()].map((u) => ({
    ...u,
    ...(anyIommuLink ? { devices: unitDevices.get(u.name) ?? [] } : {}),
  }));
  return {
    name: file.replace(/^.*\//, "").replace(/\.(tar\.gz|tgz|tar)$/, ""),
    kernel: {
      cmdline: fs.text("proc/cmdline") ?? "",
      release: fs.text("proc/sys/kernel/osrelease"),
      drivers: fs.list("sys/bus/pci/drivers"),
      modules: fs.list("sys/module"),
      devnodes: ["dev/iommu", "dev/vfio/vfio", "dev/kvm"]
        .filter((p) => fs.entries.has(p))
        .map((p) => `/${p}`),
    },
    ...cpusOf(fs.text("proc/cpuinfo")),
    iommu,
    unprivileged,
    functions,
  };
}

/**
 * The CPUs from /proc/cpuinfo. A capture keeps only the first processor's block: its
 * `siblings` (the logical CPUs of its package) counts them then, on a one-socket host.
 */
function cpusOf(text: string | undefined): Pick<HostSpec, "cpu"> {
  if (text === undefined) return {};
  const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(.*)$`, "m").exec(text)?.[1]?.trim();
  const processors = text.match(/^processor\s*:/gm)?.length ?? 0;
  const count = Math.max(processors, parseInt(field("siblings") ?? "0", 10) || 0, 1);
  const words = (s: string | undefined) => (s ? s.split(/\s+/) : []);
  const physBits = /^(\d+) bits physical/.exec(field("address sizes") ?? "")?.[1];
  return {
    cpu: {
      count,
      flags: words(field("flags")),
      bugs: words(field("bugs")),
      ...(physBits ? { physBits: parseInt(physBits, 10) } : {}),
    },
  };
}

/* include/linux/ioport.h resource flags */
const IORESOURCE_IO = 0x100;
const IORESOURCE_MEM = 0x200;
const IORESOURCE_PREFETCH = 0x2000;
const IORESOURCE_MEM_64 = 0x100000;
const PCI_ROM_RESOURCE = 6;

/**
 * BARs (lines 0-5) and the expansion ROM (line 6) of a `resource` file: "start end flags"
 * in hex, a line of zeros for what is not implemented. Sizes are end - start + 1.
 */
function resourcesOf(
  text: string,
  file: string,
  field: string,
): Pick<FunctionSpec, "bars" | "rom"> {
  const bars: NonNullable<FunctionSpec["bars"]> = [];
  let rom: FunctionSpec["rom"];
  text.split("\n").forEach((line, index) => {
    if (index > PCI_ROM_RESOURCE || !line.trim()) return;
    const m = /^0x([0-9a-f]+) 0x([0-9a-f]+) 0x([0-9a-f]+)$/i.exec(line.trim());
    if (!m)
      throw new InputError(file, `line ${index + 1} is not "start end flags"`, undefined, field);
    const [start, end, flags] = [m[1], m[2], m[3]].map((h) => Number(BigInt(`0x${h}`))) as [
      number,
      number,
      number,
    ];
    const size = end - start + 1;
    if (!(flags & (IORESOURCE_IO | IORESOURCE_MEM)) || !(start || end)) return;
    // The snapshot does not carry the ROM's contents: assume a valid image (machine/pci/rom.ts).
    if (index === PCI_ROM_RESOURCE) rom = { size, image: "minimal" };
    else
      bars.push({
        index,
        size,
        kind: flags & IORESOURCE_IO ? "io" : flags & IORESOURCE_MEM_64 ? "mem64" : "mem32",
        prefetchable: (flags & IORESOURCE_PREFETCH) !== 0,
      });
  });
  return { ...(bars.length ? { bars } : {}), ...(rom !== undefined ? { rom } : {}) };
}

/** The PF's SR-IOV geometry, read from its own config bytes. */
function sriovOf(f: FunctionSpec, enabled: number): FunctionSpec["sriov"] {
  const bytes = Buffer.from(f.config as string, "hex");
  const cs = rawConfigSpace(new Uint8Array(bytes));
  const at = walkExtCaps(cs).find(([id]) => id === R.PCI_EXT_CAP_ID_SRIOV)?.[1];
  if (at === undefined) return undefined;
  return {
    total: cs.read(at + R.PCI_SRIOV_TOTAL_VF, 2),
    enabled,
    offset: cs.read(at + R.PCI_SRIOV_VF_OFFSET, 2),
    stride: cs.read(at + R.PCI_SRIOV_VF_STRIDE, 2),
  };
}

function basename(p: string): string {
  return p.replace(/\/$/, "").split("/").pop() as string;
}

function hexNum(s: string, file: string, field: string): string {
  if (!/^(0x)?[0-9a-f]{1,16}$/i.test(s.trim())) {
    throw new InputError(
      file,
      `expected a 64-bit hex register value, got "${s}"`,
      undefined,
      field,
    );
  }
  return "0x" + s.trim().replace(/^0x/i, "");
}
