/**
 * Kernel builds: the configuration choices that change what a 6.12 kernel offers userspace
 * for pass-through, as data. A boot picks one (BootOptions.build); code asks the build, not
 * the kernel's name. The two the oracle records (shared/oracle/README.md):
 *
 * - "debian": Debian's 6.12 (6.12.117+deb12): the legacy VFIO container
 *   (CONFIG_VFIO_CONTAINER) with vfio_iommu_type1, no iommufd, no VFIO device cdev, no
 *   VFIO no-IOMMU mode, transparent huge pages.
 * - "iommufd": the oracle's iommufd kernel (tinyconfig + shared/oracle/kernel/iommufd.config):
 *   CONFIG_IOMMUFD with /dev/iommu, CONFIG_IOMMUFD_VFIO_CONTAINER (iommufd serves
 *   /dev/vfio/vfio; no legacy container, no type1), CONFIG_VFIO_DEVICE_CDEV
 *   (/dev/vfio/devices/vfioN), CONFIG_VFIO_NOIOMMU, and no CONFIG_TRANSPARENT_HUGEPAGE.
 *
 * Neither has CONFIG_IOMMUFD_TEST (iommufd's selftest mock platform and IOMMU_TEST_CMD);
 * a boot turns it on with BootOptions.kconfig.
 */
export type KernelBuild = "debian" | "iommufd";

export interface BuildConfig {
  /** CONFIG_IOMMUFD: /dev/iommu. */
  iommufd: boolean;
  /**
   * Who serves /dev/vfio/vfio: the legacy container with the type1 backend
   * (CONFIG_VFIO_CONTAINER + VFIO_IOMMU_TYPE1), or iommufd (CONFIG_IOMMUFD_VFIO_CONTAINER).
   */
  vfioContainer: "legacy" | "iommufd";
  /** CONFIG_VFIO_DEVICE_CDEV */
  vfioDeviceCdev: boolean;
  /**
   * CONFIG_VFIO_NOIOMMU: vfio.enable_unsafe_noiommu_mode, no-IOMMU groups for devices no
   * IOMMU covers, the legacy container's vfio-noiommu backend, iommufd's no-IOMMU compat.
   */
  vfioNoiommu: boolean;
  /** CONFIG_TRANSPARENT_HUGEPAGE */
  thp: boolean;
  /** CONFIG_IOMMUFD_TEST: the mock IOMMU platform and IOMMU_TEST_CMD on /dev/iommu. */
  iommufdTest: boolean;
}

export const BUILDS: Record<KernelBuild, BuildConfig> = {
  debian: {
    iommufd: false,
    vfioContainer: "legacy",
    vfioDeviceCdev: false,
    vfioNoiommu: false,
    thp: true,
    iommufdTest: false,
  },
  iommufd: {
    iommufd: true,
    vfioContainer: "iommufd",
    vfioDeviceCdev: true,
    vfioNoiommu: true,
    thp: false,
    iommufdTest: false,
  },
};

export const DEFAULT_BUILD: KernelBuild = "debian";
