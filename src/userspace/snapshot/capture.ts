/**
 * `passthru snapshot`: capture this host into a snapshot (oracle/SCRIPT.md), the same
 * files the oracle agent takes (oracle/agent/snapshot.c): per PCI function below every
 * /sys/devices/pci* root its identity files, `config` (as the reader gets it: 4096 or 256
 * bytes with CAP_SYS_ADMIN, 64 without — pci-sysfs.c pci_read_config), reset_method,
 * driver_override and the driver/iommu_group/iommu/physfn/virtfn links; the
 * /sys/bus/pci/devices links and driver names; each IOMMU group's type, reserved_regions
 * and member links; each IOMMU unit's registers; module parameters of the VFIO/KVM
 * modules; /proc/cmdline, osrelease, the first cpuinfo block; /dev/vfio, /dev/iommu and
 * /dev/kvm markers. Also taken (readers tolerate extra files): VMD domains nested below
 * their endpoint (sys/devices/pci*\/**, which snapshot.c's walk skips) and
 * /sys/bus/pci/slots/*\/address (physical slot → device, research §3.1).
 *
 * Files are read to their end with read(2) — sysfs sizes are not lengths — and kept byte
 * for byte; links keep their target text. The root is configurable so a fake /sys tree in
 * a temporary directory can stand in for the machine.
 */
import { lstatSync, readdirSync, readlinkSync, realpathSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { gzipSync } from "node:zlib";
import tar from "tar-stream";
import { readAll } from "../analyze/sysfs.js";

export type Entry =
  { kind: "file"; data: Buffer; mode: number } | { kind: "link"; target: string } | { kind: "dir" };

export interface Capture {
  /** Archive paths (no leading '/') in the order they were taken, parents first. */
  entries: Map<string, Entry>;
  functions: number;
  /** config files shorter than 256 bytes: read without CAP_SYS_ADMIN. */
  truncatedConfigs: number;
  /** What the snapshot lacks and why, for the user. */
  notes: string[];
}

/** Per-function sysfs files a snapshot holds (SCRIPT.md); the oracle's guest agent copies the same. */
export const SNAPSHOT_PCI_FILES = [
  "config",
  "vendor",
  "device",
  "subsystem_vendor",
  "subsystem_device",
  "class",
  "revision",
  "resource",
  "irq",
  "numa_node",
  "reset_method",
  "driver_override",
  "enable",
  "msi_bus",
  "sriov_totalvfs",
  "sriov_numvfs",
];
/** Per-function links a snapshot keeps as links. */
const PCI_LINKS = ["driver", "iommu_group", "iommu", "physfn"];
const PCI_FILES = [...SNAPSHOT_PCI_FILES, ...PCI_LINKS];
/** Modules whose parameters a snapshot records. */
export const SNAPSHOT_MODULES = [
  "vfio",
  "vfio_pci",
  "vfio_pci_core",
  "vfio_iommu_type1",
  "kvm",
  "kvm_intel",
  "kvm_amd",
  "iommufd",
];
const UNIT_FILES = [
  "intel-iommu/cap",
  "intel-iommu/ecap",
  "intel-iommu/version",
  "intel-iommu/address",
  "amd-iommu/cap",
  "amd-iommu/features",
];
const BDF = /^[0-9a-f]{4,5}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;
const DOMAIN_DIR = /^pci[0-9a-f]{4,5}:[0-9a-f]{2}$/;

export function captureHost(root = "/"): Capture {
  const entries = new Map<string, Entry>();
  const abs = (rel: string) => join(root, rel);
  const ensureDir = (rel: string) => {
    if (!rel || entries.has(rel)) return;
    const slash = rel.lastIndexOf("/");
    if (slash > 0) ensureDir(rel.slice(0, slash));
    entries.set(rel, { kind: "dir" });
  };
  const ensureParent = (rel: string) => {
    const slash = rel.lastIndexOf("/");
    if (slash > 0) ensureDir(rel.slice(0, slash));
  };
  const lst = (rel: string) => {
    try {
      return lstatSync(abs(rel));
    } catch {
      return null;
    }
  };
  const addFile = (rel: string, data?: Buffer) => {
    const st = lst(rel);
    if (!st?.isFile()) return;
    const bytes = data ?? readAll(abs(rel));
    if (!bytes) return;
    ensureParent(rel);
    entries.set(rel, { kind: "file", data: Buffer.from(bytes), mode: st.mode & 0o7777 });
  };
  const addLink = (rel: string) => {
    let target: string;
    try {
      target = readlinkSync(abs(rel));
    } catch {
      return;
    }
    ensureParent(rel);
    entries.set(rel, { kind: "link", target });
  };
  const addPath = (rel: string) => {
    const st = lst(rel);
    if (st?.isSymbolicLink()) addLink(rel);
    else if (st?.isFile()) addFile(rel);
  };
  const list = (rel: string): string[] => {
    try {
      return readdirSync(abs(rel)).sort(byteOrder);
    } catch {
      return [];
    }
  };
  const isDir = (rel: string) => {
    try {
      return statSync(abs(rel)).isDirectory();
    } catch {
      return false;
    }
  };

  let functions = 0;
  let truncated = 0;
  const walkPci = (dir: string, isFunction: boolean) => {
    ensureDir(dir);
    if (isFunction) {
      functions++;
      for (const f of PCI_FILES) addPath(`${dir}/${f}`);
      const cfg = entries.get(`${dir}/config`);
      if (cfg?.kind === "file" && cfg.data.length < 256) truncated++;
    }
    for (const n of list(dir)) {
      const p = `${dir}/${n}`;
      if (n.startsWith("virtfn")) addPath(p);
      else if (BDF.test(n) && lst(p)?.isDirectory()) walkPci(p, true);
      else if (DOMAIN_DIR.test(n) && lst(p)?.isDirectory()) walkPci(p, false);
    }
  };
  for (const n of list("sys/devices")) if (n.startsWith("pci")) walkPci(`sys/devices/${n}`, false);
  ensureDir("sys/bus/pci/devices");
  for (const n of list("sys/bus/pci/devices")) addLink(`sys/bus/pci/devices/${n}`);
  ensureDir("sys/bus/pci/drivers");
  for (const n of list("sys/bus/pci/drivers")) ensureDir(`sys/bus/pci/drivers/${n}`);
  for (const n of list("sys/bus/pci/slots")) addPath(`sys/bus/pci/slots/${n}/address`);

  ensureDir("sys/kernel/iommu_groups");
  for (const g of list("sys/kernel/iommu_groups")) {
    const dir = `sys/kernel/iommu_groups/${g}`;
    addPath(`${dir}/type`);
    addPath(`${dir}/reserved_regions`);
    ensureDir(`${dir}/devices`);
    for (const d of list(`${dir}/devices`)) addLink(`${dir}/devices/${d}`);
  }

  ensureDir("sys/class/iommu");
  for (const u of list("sys/class/iommu")) {
    const p = `sys/class/iommu/${u}`;
    addLink(p);
    let real: string;
    try {
      real = relative(realpathSync(root), realpathSync(abs(p)));
    } catch {
      continue;
    }
    if (real.startsWith("..")) continue;
    ensureDir(real);
    for (const f of UNIT_FILES) addPath(`${real}/${f}`);
  }

  for (const m of SNAPSHOT_MODULES)
    for (const p of list(`sys/module/${m}/parameters`)) addFile(`sys/module/${m}/parameters/${p}`);

  addFile("proc/cmdline");
  addFile("proc/sys/kernel/osrelease");
  const cpu = readAll(abs("proc/cpuinfo"));
  if (cpu && lst("proc/cpuinfo")?.isFile()) {
    const s = Buffer.from(cpu);
    const end = s.indexOf("\n\n");
    addFile("proc/cpuinfo", end >= 0 ? s.subarray(0, end + 1) : s);
  }

  if (isDir("dev/vfio")) {
    ensureDir("dev/vfio");
    for (const n of list("dev/vfio")) {
      const p = `dev/vfio/${n}`;
      if (isDir(p)) {
        ensureDir(p);
        for (const d of list(p)) marker(entries, `${p}/${d}`);
      } else marker(entries, p);
    }
  }
  for (const p of ["dev/iommu", "dev/kvm"]) if (lst(p)) marker(entries, p);

  const notes: string[] = [];
  if (functions === 0)
    notes.push(`no PCI functions below ${join(root, "sys/devices")}: is /sys mounted?`);
  if (truncated > 0)
    notes.push(
      `Not captured as root: ${truncated} of ${functions} config files hold only the first 64 bytes ` +
        "(the kernel gives the rest only to CAP_SYS_ADMIN). Missing: capabilities — PCIe port types, " +
        "ACS, FLR and PM reset bits, SR-IOV. Groups, drivers, reset_method and IOMMU registers are " +
        "complete. Run as root for a snapshot the analyzer can derive groups from.",
    );
  if (list("sys/kernel/iommu_groups").length === 0 && functions > 0)
    notes.push("No IOMMU groups: the IOMMU is off (or not supported) on this host.");
  return { entries, functions, truncatedConfigs: truncated, notes };
}

function marker(entries: Map<string, Entry>, rel: string): void {
  const parts = rel.split("/");
  for (let i = 1; i < parts.length; i++) {
    const d = parts.slice(0, i).join("/");
    if (!entries.has(d)) entries.set(d, { kind: "dir" });
  }
  entries.set(rel, { kind: "file", data: Buffer.alloc(0), mode: 0o644 });
}

/** strcmp order, as snapshot.c sorts directory entries. */
function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** The capture as a gzip'd tar: mtime 0, uid/gid 0, so one machine state gives one archive. */
export async function toTarGz(entries: Map<string, Entry>): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on("data", (c: unknown) => chunks.push(c as Buffer));
    pack.on("end", resolve);
    pack.on("error", reject);
  });
  const common = { mtime: new Date(0), uid: 0, gid: 0, uname: "root", gname: "root" };
  for (const [name, e] of entries) {
    if (e.kind === "dir")
      pack.entry({ ...common, name: `${name}/`, type: "directory", mode: 0o755 });
    else if (e.kind === "link")
      pack.entry({ ...common, name, type: "symlink", linkname: e.target, mode: 0o777 });
    else pack.entry({ ...common, name, type: "file", mode: e.mode }, e.data);
  }
  pack.finalize();
  await done;
  return gzipSync(Buffer.concat(chunks), { level: 9 });
}

/** The capture as the entries a snapshot reader takes (host/snapshot.ts SnapshotFs). */
export function asSnapshotEntries(
  entries: Map<string, Entry>,
): Map<
  string,
  { kind: "file"; data: Buffer } | { kind: "link"; target: string } | { kind: "dir" }
> {
  return new Map(
    [...entries].map(([k, e]) => [k, e.kind === "file" ? { kind: "file", data: e.data } : e]),
  );
}
