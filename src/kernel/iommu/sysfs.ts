/**
 * IOMMU objects in sysfs (drivers/iommu/iommu.c group attributes, iommu-sysfs.c class
 * devices, intel/iommu.c and amd/init.c unit attributes; Linux 6.12):
 * /sys/kernel/iommu_groups/N/{type,reserved_regions,devices/*} (`type` shows the default
 * domain's type and takes a new one; and `name` for a named group:
 * VFIO's no-IOMMU groups, whose type is "unknown" for want of a default domain) and
 * /sys/class/iommu/<unit> → /sys/devices/virtual/iommu/<unit> with the VT-d registers,
 * domains_supported (cap_ndoms) and domains_used (the domain-ID bitmap's weight).
 */
import type { IommuUnitDesc } from "../../machine/hw.js";
import { storeText, type Vfs } from "../core/vfs.js";
import type { PciDev } from "../pci/pci.js";
import { err } from "../../uapi/errno.js";
import {
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_DMA,
  IOMMU_DOMAIN_DMA_FQ,
  IOMMU_DOMAIN_IDENTITY,
  IOMMU_DOMAIN_UNMANAGED,
  iommuGetGroupResvRegions,
} from "./domain.js";
import { capNdoms } from "./intel.js";
import type { IommuGroup } from "./iommu.js";

/** The names iommu.c prints for enum iommu_resv_type (iommu_resv_type_names). */
const RESV_TYPE_NAMES = ["direct", "direct-relaxable", "reserved", "msi", "msi"];

/** The names iommu_group_show_type() prints. */
function domainTypeName(type: number): string {
  const names: Record<number, string> = {
    [IOMMU_DOMAIN_BLOCKED]: "blocked",
    [IOMMU_DOMAIN_IDENTITY]: "identity",
    [IOMMU_DOMAIN_UNMANAGED]: "unmanaged",
    [IOMMU_DOMAIN_DMA]: "DMA",
    [IOMMU_DOMAIN_DMA_FQ]: "DMA-FQ",
  };
  return names[type] ?? "unknown";
}

const h16 = (n: bigint) => `0x${n.toString(16).padStart(16, "0")}`;

export class IommuSysfs {
  constructor(
    private readonly vfs: Vfs,
    /** The default domain type a group without a modelled driver shows (from the command line). */
    private readonly defaultType: string,
    /** A write to a group's `type` (IommuSubsystem.storeDefaultType). */
    private readonly storeType: (g: IommuGroup, text: string) => number,
  ) {}

  static groupPath(g: IommuGroup): string {
    return `/sys/kernel/iommu_groups/${g.id}`;
  }

  /** `domainsUsed`: the unit's allocated domain IDs (VT-d's domains_used). */
  addUnit(u: IommuUnitDesc, domainsUsed: () => number): void {
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
      this.vfs.add(`${dir}/intel-iommu/domains_supported`, {
        kind: "attr",
        show: () => `${capNdoms(u.cap)}\n`,
      });
      this.vfs.add(`${dir}/intel-iommu/domains_used`, {
        kind: "attr",
        show: () => `${domainsUsed()}\n`,
      });
    }
  }

  addGroup(g: IommuGroup, devicePath: (d: PciDev) => string): void {
    const dir = IommuSysfs.groupPath(g);
    this.vfs.dir(`${dir}/devices`);
    // iommu_group_show_type() / iommu_group_store_type()
    const shown = g.unit ? this.defaultType : "unknown";
    this.vfs.add(`${dir}/type`, {
      kind: "attr",
      show: () => `${g.defaultDomain ? domainTypeName(g.defaultDomain.type) : shown}\n`,
      store: (v, task) => {
        if (!task.capable("CAP_SYS_ADMIN") || !task.capable("CAP_SYS_RAWIO")) return err("EACCES");
        const r = this.storeType(g, storeText(v));
        return r < 0 ? r : v.length;
      },
    });
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
