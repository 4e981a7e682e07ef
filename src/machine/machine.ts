/**
 * A whole machine: its PCI fabric and what its firmware describes (host bridges, VMD
 * domains, IOMMU units and their scopes), RAM, the IOMMU hardware, the DMA path, and the
 * device models decoding functions' BARs. `hardware()` is the only view the kernel gets.
 */
import { CpuComplex, type CpuFeatures } from "./cpu.js";
import { EDU_DEVICE, EDU_VENDOR, EduDevice } from "./devices/edu.js";
import { NSGPU_DEVICE, NSGPU_VENDOR, NsGpu } from "./devices/nsgpu.js";
import { NVME_DEVICE, NVME_VENDOR, NvmeController } from "./devices/nvme.js";
import { DmaEngine, type BusMaster } from "./dma.js";
import type { Firmware, Hardware, IommuUnitDesc, RootBusDesc } from "./hw.js";
import { IommuUnits } from "./iommu/units.js";
import { PhysicalMemory } from "./memory.js";
import { PciFabric, type DeviceModel, type PciFunction, type PhysBus } from "./pci/fabric.js";
import * as R from "../uapi/pci_regs.js";

export class Machine implements Firmware {
  readonly pci = new PciFabric();
  readonly roots: RootBusDesc[] = [];
  readonly iommus: IommuUnitDesc[] = [];
  /** 1 GiB of RAM, as the oracle's QEMU guests have. */
  readonly memory = new PhysicalMemory(1 << 30);
  readonly iommu = new IommuUnits(this.memory, this.iommus);
  readonly dma = new DmaEngine(this);
  /**
   * Cores with private write-back caches, coherent with snooping DMA (cpu.ts): as many as
   * the host has, four when the input does not say. The vendor follows the platform's
   * IOMMU: AMD-Vi sits in AMD platforms (SVM), VT-d in Intel ones (VMX).
   */
  readonly cpu: CpuComplex;

  constructor(
    readonly name: string,
    cpus?: CpuFeatures & { count: number },
  ) {
    this.cpu = new CpuComplex(
      this.memory,
      () => this.dma.costs,
      cpus?.count ?? 4,
      () => (this.iommus.some((u) => u.kind === "amd-vi") ? "amd" : "intel"),
      cpus,
    );
    this.dma.coherency = this.cpu;
  }

  rootBuses(): RootBusDesc[] {
    return this.roots;
  }

  iommuUnits(): IommuUnitDesc[] {
    return this.iommus;
  }

  hardware(): Hardware {
    return {
      pci: this.pci,
      firmware: this,
      memory: this.cpu.coherentView(),
      iommu: this.iommu,
      cpu: this.cpu,
    };
  }

  /**
   * Give the function at (domain, bus, devfn) a device model; `make` receives the
   * function's bus-master port for its DMA. Replaces any model it had.
   */
  attachModel<M extends DeviceModel>(
    domain: number,
    bus: number,
    devfn: number,
    make: (port: BusMaster) => M,
  ): M {
    const fn = this.pci.fn(domain, bus, devfn);
    if (!fn) throw new Error(`no function at ${domain}:${bus}:${devfn}`);
    const model = make(this.dma.port(fn));
    fn.model = model;
    return model;
  }

  /**
   * Attach the models of known devices by vendor:device: QEMU's edu (1234:11e8) and NVMe
   * controller (1b36:0010), nsgpu.
   */
  attachKnownModels(): void {
    for (const fn of this.functions()) {
      if (fn.model) continue;
      const vendor = fn.config.read(R.PCI_VENDOR_ID, 2);
      const device = fn.config.read(R.PCI_DEVICE_ID, 2);
      if (vendor === EDU_VENDOR && device === EDU_DEVICE) {
        fn.model = new EduDevice(this.dma.port(fn));
      } else if (vendor === NSGPU_VENDOR && device === NSGPU_DEVICE) {
        fn.model = new NsGpu(this.dma.port(fn));
      } else if (vendor === NVME_VENDOR && device === NVME_DEVICE) {
        fn.model = new NvmeController();
      }
    }
  }

  /** Every function on the fabric, root buses first, then below each bridge. */
  functions(): PciFunction[] {
    const out: PciFunction[] = [];
    const visit = (bus: PhysBus, depth: number) => {
      if (depth > 256) return;
      for (const f of bus.slots.values()) {
        out.push(f);
        if (f.secondary) visit(f.secondary, depth + 1);
      }
    };
    for (const root of this.pci.roots) visit(root, 0);
    return out;
  }
}
