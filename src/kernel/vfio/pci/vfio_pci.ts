/**
 * The vfio-pci driver, drivers/vfio/pci/vfio_pci.c and the registration half of
 * vfio_pci_core.c (Linux 6.12): an empty static id table except the override-only "match
 * all" entry (so it binds only through driver_override or new_id), DMA ownership managed
 * by VFIO itself, probe refusing denylisted devices (QAT, DSA/IAX), anything but a normal
 * header and PFs with VFs enabled; the device joins a device set (its bus, or itself on a
 * root bus), is brought to D0, and is registered with vfio_register_group_dev().
 * Device operations live in vfio_pci_core.ts.
 */
import { err } from "../../../uapi/errno.js";
import * as R from "../../../uapi/pci_regs.js";
import { anyId, type PciDriver } from "../../pci/driver.js";
import { PCI_D0 } from "../../pci/enable.js";
import type { PciBus, PciDev } from "../../pci/pci.js";
import { PCI_VENDOR_ID_INTEL } from "../../pci/quirks.js";
import type { RegisteredDevice, Vfio } from "../vfio_main.js";
import {
  type VfioDeviceSet,
  type VfioPciServices,
  vfioPciCoreInit,
  vfioPciCoreOps,
  vfioPciProbePowerState,
  vfioPciSetPowerState,
} from "./vfio_pci_core.js";

/** vfio_pci_dev_in_denylist(): QAT C3XXX/C62X/DH895XCC (and VFs), DSA and IAX on SPR. */
const DENYLIST = [0x19e2, 0x19e3, 0x37c8, 0x37c9, 0x0435, 0x0443, 0x0b25, 0x0cfe];

export function vfioPciDriver(
  vfio: Vfio,
  svc: Omit<VfioPciServices, "groupOfFile" | "iommufdDevId">,
): PciDriver {
  const devices = new Map<PciDev, RegisteredDevice>();
  const busSets = new Map<PciBus, VfioDeviceSet>();
  const services: VfioPciServices = {
    ...svc,
    groupOfFile(task, fd) {
      const f = fd < 0 ? undefined : task.files.get(fd);
      if (!f) return undefined;
      const g = vfio.groupFromFile(f);
      // vfio_file_has_dev(): the device's group, registered or on its way out.
      return g && { has: (dev) => devices.get(dev)?.group === g };
    },
    iommufdDevId: (dev, of) => vfio.iommufdDevId(dev, of),
  };
  return {
    name: "vfio-pci",
    ids: [{ ...anyId(), overrideOnly: true }],
    driverManagedDma: true,
    probe(pdev) {
      // vfio_pci_is_denylisted(): unless vfio_pci.disable_denylist is set.
      if (
        pdev.vendor === PCI_VENDOR_ID_INTEL &&
        DENYLIST.includes(pdev.device) &&
        !svc.disableDenylist
      )
        return err("EINVAL");
      // vfio_pci_core_register_device()
      if ((pdev.hdrType & R.PCI_HEADER_TYPE_MASK) !== R.PCI_HEADER_TYPE_NORMAL)
        return err("EINVAL");
      if (svc.numVfs(pdev)) return err("EBUSY"); // "Cannot bind to PF with SR-IOV enabled"
      // vfio_assign_device_set(): a bus reset affects the whole bus; a device on a root bus
      // and (6.12.117) a VF get a set of their own. No slot reset is modelled, so never a slot.
      let set: VfioDeviceSet = { devices: [] };
      if (!pdev.bus.isRoot && !pdev.isVirtfn) {
        set = busSets.get(pdev.bus) ?? set;
        busSets.set(pdev.bus, set);
      }
      const core = vfioPciCoreInit(pdev, services, set);
      set.devices.push(core);
      vfioPciProbePowerState(core);
      vfioPciSetPowerState(core, PCI_D0);
      const r = vfio.registerGroupDev(pdev, vfioPciCoreOps, core);
      if (typeof r === "number") {
        set.devices.splice(set.devices.indexOf(core), 1);
        return r;
      }
      core.vdev = r;
      devices.set(pdev, r);
      return 0;
    },
    remove(pdev, done) {
      // vfio_pci_core_unregister_device(), then vfio_put_device() leaves the device set.
      const vdev = devices.get(pdev);
      if (!vdev) return;
      const release = () => {
        devices.delete(pdev);
        const set = busSets.get(pdev.bus);
        if (set) {
          set.devices = set.devices.filter((d) => d.pdev !== pdev);
          if (!set.devices.length) busSets.delete(pdev.bus);
        }
      };
      const r = vfio.unregisterGroupDev(vdev, () => {
        release();
        done();
      });
      if (r === "blocked") return r;
      release();
    },
  };
}
