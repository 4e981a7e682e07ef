/**
 * IOMMU objects in sysfs (drivers/iommu/iommu.c group attributes, iommu-sysfs.c class
 * devices, intel/iommu.c and amd/init.c unit attributes; Linux 6.12):
 * /sys/kernel/iommu_groups/N/{type,reserved_regions,devices/*} (and `name` for a named group:
 * VFIO's no-IOMMU groups, whose type is "unknown" for want of a default domain) and
 * /sys/class/iommu/<unit> → /sys/devices/virtual/iommu/<unit> with the VT-d registers.
 */
import type { IommuUnitDesc } from "../../machine/hw.js";
import type { Vfs } from "../core/vfs.js";
import type { PciDev } from "../pci/pci.js";
import { iommuGetGroupResvRegions } from "./domain.js";
import type { IommuGroup } from "./iommu.js";

/** The names iommu.c prints for enum iommu_resv_type (iommu_resv_type_names). */
const RESV_TYPE_NAMES = ["direct", "direct-relaxable", "reserved", "msi", "msi"];

const h16 = (n: bigint) => `0x${n.toString(16).padStart(16, "0")}`;

export class IommuSysfs {
  constructor(
    private readonly vfs: Vfs,
    /** The default domain type every group shows (from iommu.passthrough/strict). */
    private readonly defaultType: string,
  ) {}

  static groupPath(g: IommuGroup): string {
    return `/sys/kernel/iommu_groups/${g.id}`;
  }

  addUnit(u: IommuUnitDesc): void {
    const dir = `/sys/devices/virtual/iommu/${u.name}`;
    this.vfs.dir(dir);
    this.vfs.add(`/sys/class/iommu/${u.name}`, { kind: "link", target: () => dir });
    if (u.kind === "intel-vtd") {
      this.vfs.add(`${dir}/intel-iommu/cap`, {
        kind: "attr",
        show: () => `${u.cap.toString(16)}\n`,
      });
      this.vfs.add(`${dir}/intel-iommu/ecap`, {
        kind: "attr",
        show: () => `${u.ecap.toString(16)}\n`,
      });
      this.vfs.add(`${dir}/intel-iommu/version`, { kind: "attr", show: () => "1:0\n" });
    }
  }

  addGroup(g: IommuGroup, devicePath: (d: PciDev) => string): void {
    const dir = IommuSysfs.groupPath(g);
    this.vfs.dir(`${dir}/devices`);
    const type = g.unit ? this.defaultType : "unknown";
    this.vfs.add(`${dir}/type`, { kind: "attr", show: () => `${type}\n` });
    if (g.name) this.vfs.add(`${dir}/name`, { kind: "attr", show: () => `${g.name}\n` });
    this.vfs.add(`${dir}/reserved_regions`, {
      kind: "attr",
      show: () =>
        iommuGetGroupResvRegions(g)
          .map(
            (r) => `${h16(r.start)} ${h16(r.start + r.length - 1n)} ${RESV_TYPE_NAMES[r.type]}\n`,
          )
          .join(""),
    });
    for (const d of g.devices) this.addMember(g, d, devicePath);
  }

  /** The group's kobject goes with its last device. */
  removeGroup(g: IommuGroup): void {
    this.vfs.remove(IommuSysfs.groupPath(g));
  }

  addMember(g: IommuGroup, d: PciDev, devicePath: (d: PciDev) => string): void {
    this.vfs.add(`${IommuSysfs.groupPath(g)}/devices/${d.name}`, {
      kind: "link",
      target: () => devicePath(d),
    });
  }
}
