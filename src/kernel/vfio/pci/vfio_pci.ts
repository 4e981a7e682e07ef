/**
 * The vfio-pci driver, drivers/vfio/pci/vfio_pci.c and the registration half of
 * vfio_pci_core.c (Linux 6.12): an empty static id table except the override-only "match
 * all" entry (so it binds only through driver_override or new_id), DMA ownership managed
 * by VFIO itself, probe refusing bridges (only header type 0) and PFs with VFs enabled,
 * then vfio_register_group_dev(). Device operations live in vfio_pci_core.ts.
 */
import { err } from "../../../uapi/errno.js";
import * as R from "../../../uapi/pci_regs.js";
import { anyId, type PciDriver } from "../../pci/driver.js";
import type { PciDev } from "../../pci/pci.js";
import type { RegisteredDevice, Vfio } from "../vfio_main.js";
import { vfioPciCoreOps, vfioPciCoreInit } from "./vfio_pci_core.js";

export function vfioPciDriver(vfio: Vfio, numVfs: (pdev: PciDev) => number): PciDriver {
  const devices = new Map<PciDev, RegisteredDevice>();
  return {
    name: "vfio-pci",
    ids: [{ ...anyId(), overrideOnly: true }],
    driverManagedDma: true,
    probe(pdev) {
      if ((pdev.hdrType & R.PCI_HEADER_TYPE_MASK) !== R.PCI_HEADER_TYPE_NORMAL)
        return err("EINVAL");
      if (numVfs(pdev)) return err("EBUSY"); // "Cannot bind to PF with SR-IOV enabled"
      const r = vfio.registerGroupDev(pdev, vfioPciCoreOps, vfioPciCoreInit(pdev));
      if (typeof r === "number") return r;
      devices.set(pdev, r);
      return 0;
    },
    remove(pdev) {
      const vdev = devices.get(pdev);
      if (!vdev) return;
      vfio.unregisterGroupDev(vdev);
      devices.delete(pdev);
    },
  };
}
