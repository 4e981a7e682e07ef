/**
 * The Debian packages a run needs, installed through apt-get on first use (as root), like
 * any other tool's dependencies: QEMU, Debian's 6.12 kernel image and busybox for the
 * guest, a C compiler and static libc for the agent; the kernel source and its build
 * tools only when the iommufd kernel is built.
 */
import { spawnSync } from "node:child_process";
import { OracleError, cacheDir, type Log } from "./cache.js";
import { appendFileSync } from "node:fs";
import { join } from "node:path";

export const RUN_PACKAGES = [
  "qemu-system-x86",
  "linux-image-6.12-amd64",
  "busybox-static",
  "gcc",
  "libc6-dev",
  "kmod",
  "xz-utils",
];
export const BUILD_PACKAGES = [
  "linux-source-6.12",
  "make",
  "bc",
  "bison",
  "flex",
  "libelf-dev",
  "libssl-dev",
  "xz-utils",
];

export function installed(pkg: string): boolean {
  const r = spawnSync("dpkg-query", ["-W", "-f=${Status}", pkg], { encoding: "utf8" });
  return r.status === 0 && r.stdout.includes("install ok installed");
}

export function ensurePackages(pkgs: string[], log: Log): void {
  const missing = pkgs.filter((p) => !installed(p));
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0)
    throw new OracleError(
      `missing Debian packages (${missing.join(" ")}); run as root to install them`,
    );
  log(`apt-get install ${missing.join(" ")}`);
  const logFile = join(cacheDir(), "apt.log");
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const apt = (args: string[]) => {
    const r = spawnSync("apt-get", args, { encoding: "utf8", env });
    appendFileSync(logFile, `$ apt-get ${args.join(" ")}\n${r.stdout ?? ""}${r.stderr ?? ""}`);
    return r.status === 0;
  };
  const args = ["install", "-y", "--no-install-recommends", ...missing];
  if (!apt(args) && !(apt(["update"]) && apt(args)))
    throw new OracleError(`apt-get install failed, see ${logFile}`);
}
