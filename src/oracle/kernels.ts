/**
 * The kernels a case boots:
 * - "debian": Debian's own 6.12 image (/boot/vmlinuz-6.12*, the newest unless
 *   PASSTHRU_DEBIAN_KVER names one): legacy VFIO container + vfio_iommu_type1, KVM (AMD
 *   under TCG's -cpu max), no iommufd; drivers are modules the initramfs loads.
 * - "iommufd": built once from Debian's linux-source-6.12 over `tinyconfig` with the
 *   options below, everything built in: iommufd, the VFIO device cdev, /dev/vfio/vfio
 *   provided by iommufd (no legacy container), VFIO no-IOMMU, VT-d and AMD-Vi, KVM (AMD).
 *   Cached by the options and the source package's version.
 * - any bzImage the user gives (`--kernel PATH`), booted with the module-less initramfs.
 */
import {
  copyFileSync,
  existsSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { cpus } from "node:os";
import { join, resolve } from "node:path";
import { OracleError, cacheDir, hash16, run, runAsync, withLock, type Log } from "./cache.js";
import { BUILD_PACKAGES, ensurePackages } from "./packages.js";

export type KernelKind = "debian" | "iommufd";

export interface KernelImage {
  kind: KernelKind | "custom";
  path: string;
  /** Debian's module directory version; null for kernels without modules. */
  modulesVersion: string | null;
  describe: string;
}

/** Options over `make tinyconfig`; every line must survive olddefconfig. */
export const IOMMUFD_CONFIG = [
  // a bootable x86-64 guest with an initramfs, a serial console and busybox's needs
  "CONFIG_64BIT=y",
  "CONFIG_SMP=y",
  'CONFIG_LOCALVERSION="-passthru-iommufd"',
  "CONFIG_PRINTK=y",
  "CONFIG_PRINTK_TIME=y",
  "CONFIG_BUG=y",
  "CONFIG_MULTIUSER=y",
  "CONFIG_FUTEX=y",
  "CONFIG_EPOLL=y",
  "CONFIG_SIGNALFD=y",
  "CONFIG_TIMERFD=y",
  "CONFIG_EVENTFD=y",
  "CONFIG_SHMEM=y",
  "CONFIG_POSIX_TIMERS=y",
  "CONFIG_FHANDLE=y",
  "CONFIG_ADVISE_SYSCALLS=y",
  "CONFIG_MEMBARRIER=y",
  "CONFIG_FILE_LOCKING=y",
  "CONFIG_BLK_DEV_INITRD=y",
  "CONFIG_RD_GZIP=y",
  "CONFIG_BINFMT_ELF=y",
  "CONFIG_BINFMT_SCRIPT=y",
  "CONFIG_DEVTMPFS=y",
  "CONFIG_DEVTMPFS_MOUNT=y",
  "CONFIG_PROC_FS=y",
  "CONFIG_SYSFS=y",
  "CONFIG_TMPFS=y",
  "CONFIG_TTY=y",
  "CONFIG_SERIAL_8250=y",
  "CONFIG_SERIAL_8250_CONSOLE=y",
  // q35 under TCG with -cpu max
  "CONFIG_CPU_SUP_INTEL=y",
  "CONFIG_CPU_SUP_AMD=y",
  "CONFIG_X86_LOCAL_APIC=y",
  "CONFIG_X86_IO_APIC=y",
  "CONFIG_X86_X2APIC=y",
  "CONFIG_HIGH_RES_TIMERS=y",
  "CONFIG_ACPI=y",
  // PCI, PCIe ports, SR-IOV, pci-stub
  "CONFIG_PCI=y",
  "CONFIG_PCI_MMCONFIG=y",
  "CONFIG_PCI_MSI=y",
  "CONFIG_PCI_IOV=y",
  "CONFIG_PCIEPORTBUS=y",
  "CONFIG_HOTPLUG_PCI=y",
  "CONFIG_HOTPLUG_PCI_PCIE=y",
  "CONFIG_PCI_STUB=y",
  // IOMMUs, iommufd and VFIO with the device cdev and the iommufd-provided container
  "CONFIG_IOMMU_SUPPORT=y",
  "CONFIG_INTEL_IOMMU=y",
  "CONFIG_AMD_IOMMU=y",
  "CONFIG_IRQ_REMAP=y",
  "CONFIG_IOMMUFD=y",
  "CONFIG_VFIO=y",
  "CONFIG_VFIO_GROUP=y",
  "# CONFIG_VFIO_CONTAINER is not set",
  "CONFIG_IOMMUFD_VFIO_CONTAINER=y",
  "CONFIG_VFIO_DEVICE_CDEV=y",
  "CONFIG_VFIO_NOIOMMU=y",
  "CONFIG_VFIO_PCI=y",
  // KVM (the AMD flavour: TCG's -cpu max has SVM)
  "CONFIG_VIRTUALIZATION=y",
  "CONFIG_KVM=y",
  "CONFIG_KVM_AMD=y",
  // the device drivers of the topologies
  "CONFIG_NET=y",
  "CONFIG_NETDEVICES=y",
  "CONFIG_ETHERNET=y",
  "CONFIG_NET_VENDOR_INTEL=y",
  "CONFIG_E1000=y",
  "CONFIG_E1000E=y",
  "CONFIG_NET_VENDOR_REALTEK=y",
  "CONFIG_8139CP=y",
  "CONFIG_BLOCK=y",
  "CONFIG_BLK_DEV_NVME=y",
];

const SRC_PKG = "linux-source-6.12";

function pkgVersion(pkg: string): string {
  return run("dpkg-query", ["-W", "-f=${Version}", pkg]).trim();
}

export function debianKernel(): KernelImage {
  let kver = process.env.PASSTHRU_DEBIAN_KVER;
  if (!kver) {
    const all = existsSync("/boot")
      ? readdirSync("/boot")
          .filter((n) => n.startsWith("vmlinuz-6.12"))
          .map((n) => n.slice("vmlinuz-".length))
      : [];
    all.sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
    kver = all[all.length - 1];
  }
  if (!kver)
    throw new OracleError("no /boot/vmlinuz-6.12* (Debian package linux-image-6.12-amd64)");
  const path = `/boot/vmlinuz-${kver}`;
  if (!existsSync(path)) throw new OracleError(`${path}: no such kernel image`);
  return { kind: "debian", path, modulesVersion: kver, describe: `Debian ${kver}` };
}

export function customKernel(path: string): KernelImage {
  if (!existsSync(path)) throw new OracleError(`${path}: no such kernel image`, 2);
  return { kind: "custom", path, modulesVersion: null, describe: path };
}

/** "debian", "iommufd" or the path of a bzImage. */
export async function kernelImage(kind: string, log: Log): Promise<KernelImage> {
  if (kind === "debian") return debianKernel();
  if (kind === "iommufd") return iommufdKernel(log);
  return customKernel(resolve(kind));
}

/** The iommufd kernel, built the first time (minutes) and cached. */
export async function iommufdKernel(log: Log): Promise<KernelImage> {
  ensurePackages(BUILD_PACKAGES, log);
  const ver = pkgVersion(SRC_PKG);
  const frag = IOMMUFD_CONFIG.join("\n") + "\n";
  const image = join(cacheDir("kernel"), `iommufd-${hash16(frag, ver)}.bzImage`);
  const done: KernelImage = {
    kind: "iommufd",
    path: image,
    modulesVersion: null,
    describe: `iommufd (${SRC_PKG} ${ver})`,
  };
  if (existsSync(image)) return done;
  return withLock("kernel-build", log, async () => {
    if (existsSync(image)) return done;
    const src = join(cacheDir("src"), SRC_PKG);
    const stamp = join(src, ".passthru-version");
    if (!existsSync(stamp) || readFileSync(stamp, "utf8") !== ver) {
      log(`extracting /usr/src/${SRC_PKG}.tar.xz`);
      rmSync(src, { recursive: true, force: true });
      run("tar", ["-xJf", `/usr/src/${SRC_PKG}.tar.xz`, "-C", cacheDir("src")], { what: "tar" });
      writeFileSync(stamp, ver);
    }
    const jobs = String(Number(process.env.PASSTHRU_ORACLE_BUILD_JOBS) || cpus().length);
    log(
      `building the iommufd kernel (tinyconfig + ${IOMMUFD_CONFIG.length} options, -j${jobs}); the first build takes minutes`,
    );
    const t0 = Date.now();
    run("make", ["-s", "-C", src, "ARCH=x86_64", "tinyconfig"], { what: "make tinyconfig" });
    writeFileSync(join(src, ".config"), readFileSync(join(src, ".config"), "utf8") + frag);
    run("make", ["-s", "-C", src, "ARCH=x86_64", "olddefconfig"], { what: "make olddefconfig" });
    const config = new Set(readFileSync(join(src, ".config"), "utf8").split("\n"));
    const lost = IOMMUFD_CONFIG.filter((l) => !config.has(l));
    if (lost.length)
      throw new OracleError(`kernel options lost by olddefconfig: ${lost.join(", ")}`);
    const logFile = join(cacheDir(), "kbuild.log");
    const r = await runAsync(
      "nice",
      ["make", "-s", "-C", src, "ARCH=x86_64", `-j${jobs}`, "bzImage"],
      {
        stdoutFile: logFile,
      },
    );
    if (r.code !== 0) throw new OracleError(`the kernel build failed, see ${logFile}`);
    copyFileSync(join(src, "arch/x86/boot/bzImage"), `${image}.tmp`);
    renameSync(`${image}.tmp`, image);
    log(`iommufd kernel built in ${Math.round((Date.now() - t0) / 1000)} s`);
    return done;
  });
}
