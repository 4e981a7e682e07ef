/**
 * The snapshot of a guest, made by the project's own capture (userspace/snapshot/
 * capture.ts, what `passthru snapshot` runs): the agent copies the files the capture
 * reads (`agent --dump RULES`, a few directory walks with name filters — only these
 * files are read, so no register or ROM is touched), the host rebuilds them in a scratch
 * directory and captures that directory as if it were the machine.
 *
 * The file names below are the ones capture.ts takes (and SCRIPT.md lists); a name the
 * capture learns must be added here too.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import {
  SNAPSHOT_MODULES as MODULES,
  SNAPSHOT_PCI_FILES as PCI_FILES,
  captureHost,
  toTarGz,
} from "../userspace/snapshot/capture.js";
import { OracleError, cacheDir } from "./cache.js";

const BDF = "[0-9a-f]{4,5}:[0-9a-f]{2}:[0-9a-f]{2}\\.[0-7]";
const DOMAIN = "pci[0-9a-f]{4,5}:[0-9a-f]{2}";
const any = (names: string[]) => `^(${names.join("|")})$`;

const hex = (s: string) => (s === "" ? "-" : Buffer.from(s, "utf8").toString("hex"));

/** The agent's copy rules; `root` prefixes every path (a fake /sys tree in tests). */
export function dumpRules(root = ""): string {
  const walk = (path: string, depth: number, dirs: string | null, files: string | null) =>
    `walk ${hex(root + path)} ${depth} ${dirs ? hex(dirs) : "-"} ${files ? hex(files) : "-"}`;
  return (
    [
      walk("/sys/devices", 64, `^(${DOMAIN}|${BDF})$`, any(PCI_FILES)),
      walk("/sys/bus/pci/devices", 1, null, null),
      walk("/sys/bus/pci/drivers", 1, null, null),
      walk("/sys/bus/pci/slots", 2, ".", "^address$"),
      walk("/sys/kernel/iommu_groups", 3, ".", any(["type", "reserved_regions"])),
      walk("/sys/class/iommu", 1, null, null),
      `links ${hex(root + "/sys/class/iommu")} 2 ${hex("^(intel-iommu|amd-iommu)$")} ${hex(any(["cap", "ecap", "version", "address", "features"]))}`,
      ...MODULES.map((m) => walk(`/sys/module/${m}/parameters`, 1, null, ".")),
      ...[
        "/proc/cmdline",
        "/proc/sys/kernel/osrelease",
        "/proc/cpuinfo",
        "/dev/iommu",
        "/dev/kvm",
      ].map((p) => `file ${hex(root + p)}`),
      walk("/dev/vfio", 2, ".", "."),
    ].join("\n") + "\n"
  );
}

/** Rebuild the agent's dump under root (paths become root/PATH). */
export function materialize(dump: string, root: string): void {
  const unhex = (h: string) => (h === "-" ? Buffer.alloc(0) : Buffer.from(h, "hex"));
  for (const line of dump.split("\n")) {
    if (!line) continue;
    const t = line.split(" ");
    const p = join(root, unhex(t[1] as string).toString("latin1"));
    if (!p.startsWith(root + "/")) continue;
    mkdirSync(dirname(p), { recursive: true });
    try {
      if (t[0] === "D") mkdirSync(p, { recursive: true });
      else if (t[0] === "L") symlinkSync(unhex(t[2] as string).toString("latin1"), p);
      else if (t[0] === "F") {
        writeFileSync(p, unhex(t[3] as string));
        chmodSync(p, parseInt(t[2] as string, 8));
      } else if (t[0] === "N") writeFileSync(p, "");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
  }
}

/** The snapshot (gzip'd tar) of a guest from its dump. */
export async function snapshotFromDump(dump: string): Promise<Buffer> {
  const root = mkdtempSync(join(cacheDir("tmp"), "guest-"));
  try {
    materialize(dump, root);
    const cap = captureHost(root);
    if (cap.functions === 0) throw new OracleError("the guest's snapshot holds no PCI functions");
    return await toTarGz(cap.entries);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
