/**
 * The PCI drivers the model carries besides vfio-pci: pcieport (drivers/pci/pcie/portdrv.c:
 * class 0x0604xx, probes only PCIe root, upstream and downstream ports and event collectors,
 * manages DMA itself), pci-stub (drivers/pci/pci-stub.c: no ids unless given, binds
 * whatever it is handed, manages DMA itself), and ordinary device drivers known by name
 * and id table — their probe enables the device and succeeds, which is all the pass-through
 * story needs of them (a DMA-API user of the device's IOMMU group).
 */
import type { PciMmio } from "../../machine/hw.js";
import { err } from "../../uapi/errno.js";
import * as R from "../../uapi/pci_regs.js";
import { anyId, type PciDeviceId, type PciDriver } from "./driver.js";
import { pciDisableDevice, pciEnableDevice, pciSetMaster } from "./enable.js";
import { PCI_IRQ_MSI, PCI_IRQ_MSIX, pciAllocIrqVectors, pciFreeIrqVectors } from "./msi.js";
import type { PciDev } from "./pci.js";

export const pcieport: PciDriver = {
  name: "pcieport",
  ids: [
    { ...anyId(), class: (R.PCI_CLASS_BRIDGE_PCI << 8) | 0x00, classMask: 0xffffff },
    { ...anyId(), class: (R.PCI_CLASS_BRIDGE_PCI << 8) | 0x01, classMask: 0xffffff },
    { ...anyId(), class: 0x080700, classMask: 0xffffff }, // root complex event collector
  ],
  driverManagedDma: true,
  probe(dev) {
    const t = dev.pcieType();
    if (
      !dev.isPcie() ||
      (t !== R.PCI_EXP_TYPE_ROOT_PORT &&
        t !== R.PCI_EXP_TYPE_UPSTREAM &&
        t !== R.PCI_EXP_TYPE_DOWNSTREAM &&
        t !== R.PCI_EXP_TYPE_RC_EC)
    ) {
      return err("ENODEV");
    }
    return pciEnableDevice(dev);
  },
  remove(dev) {
    pciDisableDevice(dev);
  },
};

export const pciStub: PciDriver = {
  name: "pci-stub",
  ids: [],
  driverManagedDma: true,
  probe: () => 0,
};

/** An ordinary device driver: its id table, and the PCI services it uses around its hardware. */
export function deviceDriver(
  name: string,
  ids: { vendor: number; device: number }[],
  mmio: PciMmio,
): PciDriver & { ids: PciDeviceId[] } {
  return {
    name,
    ids: ids.map((i) => ({ ...anyId(i.vendor, i.device) })),
    driverManagedDma: false,
    probe(dev: PciDev) {
      const r = pciEnableDevice(dev);
      if (r) return r;
      pciSetMaster(dev);
      if (pciAllocIrqVectors(mmio, dev, 1, 32, PCI_IRQ_MSIX) < 0) {
        pciAllocIrqVectors(mmio, dev, 1, 1, PCI_IRQ_MSI);
      }
      return 0;
    },
    remove(dev: PciDev) {
      pciFreeIrqVectors(mmio, dev);
      pciDisableDevice(dev);
    },
  };
}
