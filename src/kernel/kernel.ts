/**
 * Boot: the order Linux 6.12 brings up PCI and the IOMMU on x86. The IOMMU drivers'
 * early detection (DMAR/IVRS parsing, detect_intel_iommu / amd_iommu_detect) calls
 * pci_request_acs() before PCI enumeration; PCI then enumerates every host bridge
 * (pci_subsys_init), and iommu_device_register() → bus_iommu_probe() groups every device
 * in bus order. VMD domains are enumerated when the vmd driver binds, after that, and
 * SR-IOV VFs when a driver writes sriov_numvfs; both are probed as they are added.
 *
 * `debug` is the model's debugfs: read-only introspection of kernel objects (groups with
 * the reasons that formed them), for the tools that explain what the kernel did.
 */
import type { Hardware } from "../machine/hw.js";
import { parseCmdline, type BootParams } from "./cmdline.js";
import { IommuSubsystem, type DeviceTrace, type GroupEdge } from "./iommu/iommu.js";
export type { DeviceTrace, GroupEdge, ReasonCode } from "./iommu/iommu.js";
export type { AcsVerdict } from "./pci/acs.js";
import { sriovEnable } from "./pci/iov.js";
import type { PciDev } from "./pci/pci.js";
import { PciSubsystem } from "./pci/probe.js";

export interface GroupInfo {
  id: number;
  unit: string;
  devices: string[];
  edges: GroupEdge[];
}

export class Kernel {
  readonly params: BootParams;
  readonly pci: PciSubsystem;
  readonly iommu: IommuSubsystem;

  private constructor(hw: Hardware, cmdline: string) {
    this.params = parseCmdline(cmdline);
    const p = this.params;
    const units = p.iommuOff
      ? []
      : hw.firmware
          .iommuUnits()
          .filter((u) =>
            u.kind === "intel-vtd" ? p.intelIommu : u.kind === "amd-vi" ? p.amdIommu : true,
          );
    const quirks = {
      hasIvrs: hw.firmware.iommuUnits().some((u) => u.kind === "amd-vi"),
      acsOverride: p.acsOverride,
    };
    this.pci = new PciSubsystem(hw, { acsRequested: units.length > 0, quirks, acs: p.acs });
    this.iommu = new IommuSubsystem(units, quirks);
  }

  static boot(hw: Hardware, cmdline = ""): Kernel {
    const k = new Kernel(hw, cmdline);
    k.pci.enumerate();
    for (const dev of k.pci.devices) k.iommu.probeDevice(dev);
    return k;
  }

  /** Write `n` to a PF's sriov_numvfs: VFs appear and are probed by the IOMMU. */
  sriovNumvfs(pf: PciDev, n: number): string | null {
    const r = sriovEnable(this.pci, pf, n);
    if (typeof r === "string") return r;
    for (const vf of r) this.iommu.probeDevice(vf);
    return null;
  }

  readonly debug = {
    groups: (): GroupInfo[] =>
      [...this.iommu.groups.values()]
        .sort((a, b) => a.id - b.id)
        .map((g) => ({
          id: g.id,
          unit: g.unit.name,
          devices: g.devices.map((d) => d.name),
          edges: g.edges,
        })),
    trace: (name: string): DeviceTrace | undefined => this.iommu.traces.get(name),
    device: (name: string): PciDev | undefined => this.pci.get(name),
  };
}
