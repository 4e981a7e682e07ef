/**
 * A whole machine: its PCI fabric and what its firmware describes (host bridges, VMD
 * domains, IOMMU units and their scopes). `hardware()` is the only view the kernel gets.
 */
import type { Firmware, Hardware, IommuUnitDesc, RootBusDesc } from "./hw.js";
import { IommuUnits } from "./iommu/units.js";
import { PhysicalMemory } from "./memory.js";
import { PciFabric } from "./pci/fabric.js";

export class Machine implements Firmware {
  readonly pci = new PciFabric();
  readonly roots: RootBusDesc[] = [];
  readonly iommus: IommuUnitDesc[] = [];
  /** 1 GiB of RAM, as the oracle's QEMU guests have. */
  readonly memory = new PhysicalMemory(1 << 30);
  readonly iommu = new IommuUnits();

  constructor(readonly name: string) {}

  rootBuses(): RootBusDesc[] {
    return this.roots;
  }

  iommuUnits(): IommuUnitDesc[] {
    return this.iommus;
  }

  hardware(): Hardware {
    return { pci: this.pci, firmware: this, memory: this.memory, iommu: this.iommu };
  }
}
