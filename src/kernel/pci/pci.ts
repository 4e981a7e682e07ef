/**
 * struct pci_dev and struct pci_bus, the fields Linux 6.12 keeps after enumeration
 * (include/linux/pci.h, drivers/pci/probe.c). Every field is filled from configuration
 * reads through `PciConfigAccess`, never from machine internals.
 */
import type { PciConfigAccess } from "../../machine/hw.js";
import {
  PCI_EXP_FLAGS_TYPE,
  PCI_EXP_TYPE_DOWNSTREAM,
  PCI_EXP_TYPE_PCIE_BRIDGE,
  PCI_EXP_TYPE_ROOT_PORT,
  PCI_FUNC,
  PCI_SLOT,
} from "../../uapi/pci_regs.js";

/** include/linux/pci.h dev_flags used by the group and reset code. */
export type PciDevFlag =
  | "PCI_DEV_FLAG_PCIE_BRIDGE_ALIAS"
  | "PCI_DEV_FLAGS_BRIDGE_XLATE_ROOT"
  | "PCI_DEV_FLAGS_ACS_ENABLED_QUIRK"
  | "PCI_DEV_FLAGS_NO_FLR_RESET"
  | "PCI_DEV_FLAGS_NO_PM_RESET"
  | "PCI_DEV_FLAGS_NO_BUS_RESET";

export class PciBus {
  readonly children: PciBus[] = [];
  readonly devices: PciDev[] = [];
  /** busn_res.end: the last bus number routed here (the bridge's subordinate, or 0xff). */
  busnEnd = 0xff;
  constructor(
    readonly domain: number,
    readonly number: number,
    /** The bridge leading to this bus; null on a root bus and on SR-IOV virtual buses. */
    readonly self: PciDev | null,
    readonly parent: PciBus | null,
    /** Intel VMD endpoint hosting this root bus (arch/x86/pci/common.c pci_real_dma_dev). */
    readonly vmdOwner: PciDev | null = null,
  ) {}

  /** pci_is_root_bus(): a bus without a parent bus. */
  get isRoot(): boolean {
    return this.parent === null;
  }
}

export class PciDev {
  vendor = 0;
  device = 0;
  subsystemVendor = 0;
  subsystemDevice = 0;
  /** 24-bit class code: base class, subclass, prog-if. */
  class = 0;
  revision = 0;
  hdrType = 0;
  multifunction = false;
  /** Offset of the PCIe capability; 0 when the function is conventional PCI. */
  pcieCap = 0;
  /** PCIe Capabilities register, with the port type possibly corrected at probe. */
  pcieFlagsReg = 0;
  acsCap = 0;
  cfgSize = 256;
  subordinate: PciBus | null = null;
  /** Devfns on the same bus this function may use as requester ID (pci_add_dma_alias). */
  dmaAliasMask: Set<number> | null = null;
  readonly devFlags = new Set<PciDevFlag>();
  /** Set on the bridge by pci_configure_ari() when ARI forwarding was enabled. */
  ariEnabled = false;
  /** A capability walk read bytes the capture did not hold (unprivileged input). */
  capsUnknown = false;
  /** pci_enable_device() count (sysfs `enable`). */
  enableCnt = 0;
  isVirtfn = false;
  physfn: PciDev | null = null;
  /** Facts the kernel logged while setting this device up (quirks, corrections). */
  readonly notes: string[] = [];

  constructor(
    readonly bus: PciBus,
    readonly devfn: number,
    private readonly cfg: PciConfigAccess,
  ) {}

  /** "dddd:bb:dd.f" as dev_name() prints it. */
  get name(): string {
    return pciName(this.bus.domain, this.bus.number, this.devfn);
  }

  read8(off: number): number {
    return this.cfg.read(this.bus.domain, this.bus.number, this.devfn, off, 1);
  }
  read16(off: number): number {
    return this.cfg.read(this.bus.domain, this.bus.number, this.devfn, off, 2);
  }
  read32(off: number): number {
    return this.cfg.read(this.bus.domain, this.bus.number, this.devfn, off, 4);
  }
  write8(off: number, v: number): void {
    this.cfg.write(this.bus.domain, this.bus.number, this.devfn, off, 1, v);
  }
  write16(off: number, v: number): void {
    this.cfg.write(this.bus.domain, this.bus.number, this.devfn, off, 2, v);
  }
  write32(off: number, v: number): void {
    this.cfg.write(this.bus.domain, this.bus.number, this.devfn, off, 4, v);
  }
  /** Whether config bytes [off, off+len) are known facts (see machine/hw.ts). */
  known(off: number, len = 1): boolean {
    return this.cfg.configKnown(this.bus.domain, this.bus.number, this.devfn, off, len);
  }
  /** pci_bus_read_config_dword() on another devfn of this bus (no pci_dev needed). */
  busRead32(devfn: number, off: number): { value: number; known: boolean } {
    const d = this.bus.domain;
    const b = this.bus.number;
    return {
      value: this.cfg.read(d, b, devfn, off, 4),
      known: this.cfg.configKnown(d, b, devfn, off, 4),
    };
  }

  isPcie(): boolean {
    return this.pcieCap !== 0;
  }
  /** pci_pcie_type() */
  pcieType(): number {
    return (this.pcieFlagsReg & PCI_EXP_FLAGS_TYPE) >> 4;
  }
  /** pcie_downstream_port(): root port, switch downstream port, PCI/PCI-X-to-PCIe bridge. */
  isDownstreamPort(): boolean {
    const t = this.pcieType();
    return (
      this.isPcie() &&
      (t === PCI_EXP_TYPE_ROOT_PORT ||
        t === PCI_EXP_TYPE_DOWNSTREAM ||
        t === PCI_EXP_TYPE_PCIE_BRIDGE)
    );
  }
  get slot(): number {
    return PCI_SLOT(this.devfn);
  }
  get fn(): number {
    return PCI_FUNC(this.devfn);
  }
  get baseClass(): number {
    return this.class >> 16;
  }
  /** class >> 8, as the kernel's `pdev->class >> 8` comparisons use. */
  get classDevice(): number {
    return this.class >> 8;
  }
  /** pci_upstream_bridge(): the bridge above, skipping nothing; null on a root bus. */
  upstreamBridge(): PciDev | null {
    const d = this.isVirtfn && this.physfn ? this.physfn : this;
    return d.bus.self;
  }
}

export function pciName(domain: number, bus: number, devfn: number): string {
  const dom = domain.toString(16).padStart(4, "0");
  const b = bus.toString(16).padStart(2, "0");
  const s = PCI_SLOT(devfn).toString(16).padStart(2, "0");
  return `${dom}:${b}:${s}.${PCI_FUNC(devfn)}`;
}

export function pcieTypeName(t: number): string {
  return (
    [
      "PCIe endpoint",
      "legacy PCIe endpoint",
      "type 2",
      "type 3",
      "root port",
      "switch upstream port",
      "switch downstream port",
      "PCIe-to-PCI/PCI-X bridge",
      "PCI/PCI-X-to-PCIe bridge",
      "root complex integrated endpoint",
      "root complex event collector",
    ][t] ?? `PCIe type ${t}`
  );
}
