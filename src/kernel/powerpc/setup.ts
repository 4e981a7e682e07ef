/**
 * A POWER (PowerNV) kernel's platform pieces, built at boot when the machine has OPAL:
 * the PHBs as IOMMU devices ("iommu-phb%04x", spapr_tce_iommu_ops, one IOMMU group per
 * PE), EEH, the sPAPR TCE VFIO backend (registered instead of type1: a ppc64 kernel is
 * built with VFIO_IOMMU_SPAPR_TCE and without VFIO_IOMMU_TYPE1), and HV KVM's TCE path.
 * kernel.ts holds one of these and asks it at the few places the architectures differ.
 */
import type { Hardware, IommuUnitDesc } from "../../machine/hw.js";
import type { PageAllocator } from "../core/page_alloc.js";
import type { IommuOps } from "../iommu/domain.js";
import type { IommuGroup } from "../iommu/iommu.js";
import { Book3sHv, type PpcTceEra } from "../kvm/book3s_hv.js";
import type { PciDev } from "../pci/pci.js";
import { vfioIommuSpaprTce } from "../vfio/vfio_iommu_spapr_tce.js";
import type { VfioIommuDriverOps } from "../vfio/vfio.js";
import { Eeh } from "./eeh.js";
import { PowerNv } from "./pci_ioda.js";

export class PowerPlatform {
  readonly pnv: PowerNv;
  readonly eeh: Eeh;
  readonly kvm: Book3sHv;
  readonly iommuOps: IommuOps;
  readonly vfioBackend: VfioIommuDriverOps;
  /** ppc_iommu_register_device(): one IOMMU device per PHB. */
  readonly units: IommuUnitDesc[];

  constructor(hw: Hardware, pages: PageAllocator, devices: () => PciDev[], era: PpcTceEra) {
    this.pnv = new PowerNv(hw, pages, devices);
    this.eeh = new Eeh(hw);
    this.kvm = new Book3sHv(pages, era, hw.hcallCosts ?? null);
    this.iommuOps = this.pnv.iommuOps();
    this.vfioBackend = vfioIommuSpaprTce({
      eeh: this.eeh,
      peOfGroup: (g) => this.pnv.peOfIommuGroup(g),
    }) as VfioIommuDriverOps;
    this.units = [...this.pnv.phbs.values()].map((p) => ({
      kind: "spapr-tce" as const,
      name: `iommu-phb${p.desc.index.toString(16).padStart(4, "0")}`,
      cap: 0n,
      ecap: 0n,
      segment: p.desc.index,
      scope: { all: true as const, exclude: [] },
    }));
  }

  /**
   * The IOMMU core's device_group for a PHB's device (pnv_pci_device_group): the PE's
   * group, PEs being set up first (pcibios fixup runs before the IOMMU probe); null when
   * the device has no PE (no group: iommu_probe_device fails).
   */
  deviceGroup(dev: PciDev, alloc: (unit: IommuUnitDesc) => IommuGroup): IommuGroup | null {
    this.pnv.configure((phb) => alloc(this.units.find((u) => u.segment === phb) as IommuUnitDesc));
    return this.pnv.deviceGroup(dev);
  }
}
