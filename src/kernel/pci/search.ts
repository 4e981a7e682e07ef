/**
 * DMA requester-ID aliasing, drivers/pci/search.c pci_for_each_dma_alias() (Linux 6.12),
 * pci_real_dma_dev() (arch/x86/pci/common.c: devices below Intel VMD issue DMA as the VMD
 * endpoint) and pci_devs_are_dma_aliases() (drivers/pci/pci.c).
 */
import * as R from "../../uapi/pci_regs.js";
import type { PciDev } from "./pci.js";

/** Why a device was reported by the alias walk. */
export type AliasKind =
  | "self"
  | "vmd" // the real DMA device of a device below VMD
  | "dma-alias" // a devfn in dma_alias_mask
  | "pcie-to-pci-bridge" // the bridge owns transactions from its conventional side
  | "pci-to-pcie-bridge"
  | "pci-bridge" // a bridge without a PCIe capability
  | "pcie-bridge-alias"; // such a bridge with the PCIE_BRIDGE_ALIAS quirk flag

export interface AliasStep {
  dev: PciDev;
  /** Requester ID as (bus << 8) | devfn. */
  rid: number;
  kind: AliasKind;
}

/** pci_real_dma_dev() */
export function pciRealDmaDev(dev: PciDev): PciDev {
  let bus = dev.bus;
  while (bus.parent) bus = bus.parent;
  return bus.vmdOwner ?? dev;
}

/**
 * pci_for_each_dma_alias(): calls fn for each (device, requester ID) under which dev's DMA
 * can reach the IOMMU, bottom-up; stops when fn returns true.
 */
export function pciForEachDmaAlias(start: PciDev, fn: (s: AliasStep) => boolean): boolean {
  const pdev = pciRealDmaDev(start);
  if (
    fn({
      dev: pdev,
      rid: (pdev.bus.number << 8) | pdev.devfn,
      kind: pdev === start ? "self" : "vmd",
    })
  ) {
    return true;
  }
  for (const devfn of [...(pdev.dmaAliasMask ?? [])].sort((a, b) => a - b)) {
    if (fn({ dev: pdev, rid: (pdev.bus.number << 8) | devfn, kind: "dma-alias" })) return true;
  }
  for (let bus = pdev.bus; !bus.isRoot; bus = bus.parent as typeof bus) {
    const tmp = bus.self;
    if (!tmp) continue; // SR-IOV virtual bus
    if (tmp.devFlags.has("PCI_DEV_FLAGS_BRIDGE_XLATE_ROOT")) return false;
    const secRid = ((tmp.subordinate?.number ?? 0) << 8) | 0;
    const ownRid = (tmp.bus.number << 8) | tmp.devfn;
    if (tmp.isPcie()) {
      switch (tmp.pcieType()) {
        case R.PCI_EXP_TYPE_ROOT_PORT:
        case R.PCI_EXP_TYPE_UPSTREAM:
        case R.PCI_EXP_TYPE_DOWNSTREAM:
          continue;
        case R.PCI_EXP_TYPE_PCI_BRIDGE:
          if (fn({ dev: tmp, rid: secRid, kind: "pcie-to-pci-bridge" })) return true;
          continue;
        case R.PCI_EXP_TYPE_PCIE_BRIDGE:
          if (fn({ dev: tmp, rid: ownRid, kind: "pci-to-pcie-bridge" })) return true;
          continue;
      }
    } else {
      const alias = tmp.devFlags.has("PCI_DEV_FLAG_PCIE_BRIDGE_ALIAS");
      if (
        fn({
          dev: tmp,
          rid: alias ? secRid : ownRid,
          kind: alias ? "pcie-bridge-alias" : "pci-bridge",
        })
      ) {
        return true;
      }
    }
  }
  return false;
}

/** pci_devs_are_dma_aliases() */
export function pciDevsAreDmaAliases(a: PciDev, b: PciDev): boolean {
  return (
    !!a.dmaAliasMask?.has(b.devfn) ||
    !!b.dmaAliasMask?.has(a.devfn) ||
    pciRealDmaDev(a) === b ||
    pciRealDmaDev(b) === a
  );
}
