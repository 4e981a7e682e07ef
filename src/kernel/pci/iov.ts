/**
 * SR-IOV virtual functions, drivers/pci/iov.c (Linux 6.12): sriov_enable() writes NumVFs
 * and sets VF Enable + VF MSE, then pci_iov_add_virtfn() adds each VF at
 * pci_iov_virtfn_bus()/devfn() — on a bus with no bridge (virtfn_add_bus) when the Routing
 * ID carries past the PF's bus. VFs take the PF's vendor and the SR-IOV VF Device ID, and
 * are never multifunction.
 */
import * as R from "../../uapi/pci_regs.js";
import { pciFindExtCapability } from "./capability.js";
import type { PciDev } from "./pci.js";
import { PciDev as PciDevClass } from "./pci.js";
import type { PciSubsystem } from "./probe.js";

export type Errno = "EINVAL" | "ENODEV" | "EBUSY" | "ENOMEM";

export function sriovEnable(pci: PciSubsystem, pf: PciDev, num: number): PciDev[] | Errno {
  const pos = pciFindExtCapability(pf, R.PCI_EXT_CAP_ID_SRIOV);
  if (!pos) return "ENODEV";
  const total = pf.read16(pos + R.PCI_SRIOV_TOTAL_VF);
  if (num > total) return "EINVAL";
  if (pci.devices.some((d) => d.physfn === pf)) return "EBUSY";
  const ctrl = pf.read16(pos + R.PCI_SRIOV_CTRL);
  pf.write16(pos + R.PCI_SRIOV_NUM_VF, num);
  const offset = pf.read16(pos + R.PCI_SRIOV_VF_OFFSET);
  const stride = pf.read16(pos + R.PCI_SRIOV_VF_STRIDE);
  const vfDevice = pf.read16(pos + R.PCI_SRIOV_VF_DID);
  if (num === 0) return [];
  // The last VF's bus must lie within the bus range forwarded to the PF's bus.
  const lastBus = ((pf.bus.number << 8) + pf.devfn + offset + stride * (num - 1)) >> 8;
  if (lastBus > pf.bus.busnEnd) return "ENOMEM";
  pf.write16(pos + R.PCI_SRIOV_CTRL, ctrl | R.PCI_SRIOV_CTRL_VFE | R.PCI_SRIOV_CTRL_MSE);
  const vfs: PciDev[] = [];
  for (let i = 0; i < num; i++) {
    const rid = (pf.bus.number << 8) + pf.devfn + offset + stride * i;
    const busnr = (rid >> 8) & 0xff;
    const bus = busnr === pf.bus.number ? pf.bus : pci.virtualBus(pf.bus, busnr);
    const vf = new PciDevClass(bus, rid & 0xff, pci.hw.pci);
    vf.isVirtfn = true;
    vf.physfn = pf;
    pci.setupDevice(vf, { vendor: pf.vendor, device: vfDevice });
    pci.deviceAdd(vf);
    vfs.push(vf);
  }
  return vfs;
}
