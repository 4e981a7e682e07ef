/**
 * Boot the kernel model on a host as the host was described: its command line, its
 * kernel's PCI drivers, which driver held each device, the VFs drivers had enabled, and
 * which kernel build it ran: a snapshot with /dev/iommu and no vfio_iommu_type1 module is
 * the iommufd build (iommufd serving /dev/vfio/vfio, VFIO device cdev), anything else the
 * Debian build (legacy container + type1).
 */
import type { Host } from "../host/build.js";
import { Kernel, type BuildConfig, type KernelBuild, type ProfileName } from "../kernel/kernel.js";

/** The kernel build a host ran, from what its snapshot shows. */
export function hostBuild(host: Host): KernelBuild {
  const k = host.spec.kernel;
  const iommufd = k.devnodes?.includes("/dev/iommu") ?? false;
  const type1 = k.modules?.includes("vfio_iommu_type1") ?? false;
  return iommufd && !type1 ? "iommufd" : "debian";
}

/** `profile`: the KVM era to follow (default 6.12). */
export function bootHost(
  host: Host,
  extraCmdline = "",
  profile?: ProfileName,
  /** POWER hosts: the TCE hypercall era (kernel BootOptions.ppcTceEra). */
  tceEra?: "6.12" | "5.18",
  /** Options on top of the host's build (kernel BootOptions.kconfig). */
  kconfig?: Partial<BuildConfig>,
  /** The kernel build, instead of the one the host ran. */
  build: KernelBuild = hostBuild(host),
): Kernel {
  const bindings = new Map<string, string>();
  for (const [bdf, o] of host.observed) if (o.driver) bindings.set(bdf, o.driver);
  const sriov = new Map<string, number>();
  for (const [bdf, f] of host.functions) if (f.sriov?.enabled) sriov.set(bdf, f.sriov.enabled);
  return Kernel.boot(host.machine.hardware(), {
    cmdline: [host.cmdline, extraCmdline].filter(Boolean).join(" "),
    drivers: host.spec.kernel.drivers,
    bindings: bindings.size ? bindings : undefined,
    sriov,
    build,
    ...(profile ? { profile } : {}),
    ...(tceEra ? { ppcTceEra: tceEra } : {}),
    ...(kconfig ? { kconfig } : {}),
  });
}
