/**
 * vfio-pci device operations, drivers/vfio/pci/vfio_pci_core.c (Linux 6.12).
 */
import { err } from "../../../uapi/errno.js";
import * as U from "../../../uapi/vfio.js";
import type { PciDev } from "../../pci/pci.js";
import { fromUser, toUser, type VfioDeviceOps } from "../vfio.js";

/** struct vfio_pci_core_device (the parts modelled so far). */
export interface VfioPciCoreDevice {
  pdev: PciDev;
  /** A function reset method exists (pci_probe_reset_function() == 0). */
  resetWorks: boolean;
}

export function vfioPciCoreInit(pdev: PciDev): VfioPciCoreDevice {
  return { pdev, resetWorks: false };
}

export const vfioPciCoreOps: VfioDeviceOps = {
  name: "vfio-pci",
  ioctl(vdev, task, cmd, arg) {
    const core = vdev.priv as VfioPciCoreDevice;
    switch (cmd) {
      case U.VFIO_DEVICE_GET_INFO: {
        // vfio_pci_ioctl_get_info()
        let minsz = U.vfio_device_info.end("num_irqs");
        const raw = fromUser(task, arg, minsz);
        if (!raw) return err("EFAULT");
        const info = U.vfio_device_info.decode(raw);
        if (info.argsz < minsz) return err("EINVAL");
        minsz = Math.min(info.argsz, U.vfio_device_info.size);
        const out = U.vfio_device_info.encode({
          ...info,
          flags: U.VFIO_DEVICE_FLAGS_PCI | (core.resetWorks ? U.VFIO_DEVICE_FLAGS_RESET : 0),
          num_regions: U.VFIO_PCI_NUM_REGIONS,
          num_irqs: U.VFIO_PCI_NUM_IRQS,
        });
        return toUser(task, arg, out.subarray(0, minsz)) ? 0 : err("EFAULT");
      }
      default:
        return err("ENOTTY");
    }
  },
};
