/**
 * PCI enumeration as drivers/pci/probe.c (Linux 6.12) performs it: each root bus is
 * scanned slot by slot (pci_scan_child_bus_extend), function 0 first and further functions
 * only when function 0 is multifunction, or along the ARI Next Function chain when the
 * bridge above has ARI forwarding enabled (next_fn, next_ari_fn); below a PCIe downstream
 * port only device 0 is scanned (only_one_child). Every function found after function 0
 * is forced multifunction (pci_scan_slot). Firmware-assigned bridge bus numbers are kept
 * when sensible (pci_scan_bridge_extend pass 0); a bus reachable twice is scanned once.
 * Devices are added in scan order — all functions of a bus, then each bridge's subtree —
 * which is the order bus_for_each_dev() later walks when the IOMMU probes them.
 *
 * Per device, pci_setup_device reads identity (subsystem IDs by header type: the normal
 * header's, a bridge's SSVID capability, a CardBus header's) and header type and corrects impossible
 * port types (set_pcie_port_type); header/final fixups (quirks.ts) then run; and
 * pci_init_capabilities finds ACS (enabling it when an IOMMU requested it, acs.ts),
 * configures ARI on the bridge above (pci_configure_ari, drivers/pci/pci.c).
 */
import type { Hardware } from "../../machine/hw.js";
import * as R from "../../uapi/pci_regs.js";
import { pciEnableAcs, type AcsCmdline } from "./acs.js";
import { pciCfgSpaceSize, pciFindCapability, pciFindExtCapability } from "./capability.js";
import { PciBus, PciDev, pciName } from "./pci.js";
import { applyPciFixups, type QuirkContext } from "./quirks.js";

export interface PciOptions {
  /** An IOMMU driver called pci_request_acs(): enable ACS at enumeration. */
  acsRequested: boolean;
  quirks: QuirkContext;
  /** pci=disable_acs_redir= and pci=config_acs= from the command line. */
  acs: AcsCmdline;
}

export class PciSubsystem {
  readonly roots: PciBus[] = [];
  /** Every pci_dev in device_add() order. */
  readonly devices: PciDev[] = [];
  private readonly byName = new Map<string, PciDev>();
  private readonly buses = new Map<string, PciBus>();

  constructor(
    readonly hw: Hardware,
    readonly opts: PciOptions,
  ) {}

  get(name: string): PciDev | undefined {
    return this.byName.get(name);
  }

  findBus(domain: number, number: number): PciBus | undefined {
    return this.buses.get(`${domain}:${number}`);
  }

  /** pci_scan_root_bus() for every host bridge and VMD domain firmware describes. */
  enumerate(): void {
    const roots = [...this.hw.firmware.rootBuses()].sort(
      (a, b) => Number(!!a.vmd) - Number(!!b.vmd) || a.domain - b.domain || a.bus - b.bus,
    );
    for (const rb of roots) {
      if (this.findBus(rb.domain, rb.bus)) continue;
      const owner = rb.vmd
        ? (this.get(pciName(rb.vmd.domain, rb.vmd.bus, rb.vmd.devfn)) ?? null)
        : null;
      if (rb.vmd && !owner) continue; // the VMD endpoint itself was not found
      const bus = this.addBus(rb.domain, rb.bus, null, null, owner);
      this.roots.push(bus);
      this.scanChildBus(bus);
    }
  }

  private addBus(
    domain: number,
    number: number,
    self: PciDev | null,
    parent: PciBus | null,
    vmd: PciDev | null = null,
  ): PciBus {
    const bus = new PciBus(domain, number, self, parent, vmd);
    parent?.children.push(bus);
    this.buses.set(`${domain}:${number}`, bus);
    return bus;
  }

  private scanChildBus(bus: PciBus): void {
    for (let devfn = 0; devfn < 256; devfn += 8) this.scanSlot(bus, devfn);
    for (const dev of [...bus.devices]) {
      const hdr = dev.hdrType & R.PCI_HEADER_TYPE_MASK;
      if (hdr === R.PCI_HEADER_TYPE_BRIDGE) this.scanBridge(bus, dev);
    }
  }

  /** pci_scan_slot() */
  private scanSlot(bus: PciBus, devfn: number): void {
    if (this.onlyOneChild(bus) && devfn > 0) return;
    let fn = 0;
    do {
      const dev = this.scanSingleDevice(bus, devfn + fn);
      if (dev && fn > 0) dev.multifunction = true;
      if (!dev && fn === 0) break; // function 0 is required (no Jailhouse here)
      fn = this.nextFn(bus, dev, fn);
    } while (fn >= 0);
  }

  private onlyOneChild(bus: PciBus): boolean {
    const br = bus.self;
    return !!br && br.isPcie() && br.isDownstreamPort();
  }

  private nextFn(bus: PciBus, dev: PciDev | null, fn: number): number {
    if (bus.self?.ariEnabled) {
      if (!dev) return -1;
      const pos = pciFindExtCapability(dev, R.PCI_EXT_CAP_ID_ARI);
      if (!pos) return -1;
      const next = R.PCI_ARI_CAP_NFN(dev.read16(pos + R.PCI_ARI_CAP));
      return next <= fn ? -1 : next;
    }
    if (fn >= 7) return -1;
    if (dev && !dev.multifunction) return -1;
    return fn + 1;
  }

  /** pci_scan_single_device() → pci_scan_device() → pci_setup_device() + pci_device_add(). */
  private scanSingleDevice(bus: PciBus, devfn: number): PciDev | null {
    const id = this.hw.pci.read(bus.domain, bus.number, devfn, R.PCI_VENDOR_ID, 4);
    if (id === 0xffffffff || id === 0 || id === 0x0000ffff || id === 0xffff0000) return null;
    const dev = new PciDev(bus, devfn, this.hw.pci);
    this.setupDevice(dev);
    this.deviceAdd(dev);
    return dev;
  }

  /** pci_setup_device() and the parts of pci_device_add() the model needs. */
  setupDevice(dev: PciDev, vendorDevice?: { vendor: number; device: number }): void {
    const id = dev.read32(R.PCI_VENDOR_ID);
    dev.vendor = vendorDevice?.vendor ?? id & 0xffff;
    dev.device = vendorDevice?.device ?? id >>> 16;
    dev.hdrType = dev.read8(R.PCI_HEADER_TYPE);
    dev.multifunction = !!(dev.hdrType & R.PCI_HEADER_TYPE_MFD) && !dev.isVirtfn;
    const cr = dev.read32(R.PCI_CLASS_REVISION);
    dev.revision = cr & 0xff;
    dev.class = cr >>> 8;
    this.setPciePortType(dev);
    dev.cfgSize = pciCfgSpaceSize(dev);
    // subsystem IDs: in a normal header, in a bridge's SSVID capability, in a CardBus header
    const hdr = dev.hdrType & R.PCI_HEADER_TYPE_MASK;
    if (hdr === R.PCI_HEADER_TYPE_NORMAL) {
      dev.subsystemVendor = dev.read16(R.PCI_SUBSYSTEM_VENDOR_ID);
      dev.subsystemDevice = dev.read16(R.PCI_SUBSYSTEM_ID);
    } else if (hdr === R.PCI_HEADER_TYPE_BRIDGE) {
      const pos = pciFindCapability(dev, R.PCI_CAP_ID_SSVID);
      if (pos) {
        dev.subsystemVendor = dev.read16(pos + R.PCI_SSVID_VENDOR_ID);
        dev.subsystemDevice = dev.read16(pos + R.PCI_SSVID_DEVICE_ID);
      }
    } else if (hdr === R.PCI_HEADER_TYPE_CARDBUS) {
      dev.subsystemVendor = dev.read16(R.PCI_CB_SUBSYSTEM_VENDOR_ID);
      dev.subsystemDevice = dev.read16(R.PCI_CB_SUBSYSTEM_ID);
    }
    applyPciFixups(dev);
    // pci_init_capabilities()
    dev.acsCap = pciFindExtCapability(dev, R.PCI_EXT_CAP_ID_ACS);
    if (this.opts.acsRequested) pciEnableAcs(dev, this.opts.acs);
    this.configureAri(dev);
  }

  deviceAdd(dev: PciDev): void {
    dev.bus.devices.push(dev);
    this.devices.push(dev);
    this.byName.set(dev.name, dev);
  }

  /** set_pcie_port_type() */
  private setPciePortType(dev: PciDev): void {
    const pos = pciFindCapability(dev, R.PCI_CAP_ID_EXP);
    if (!pos) return;
    dev.pcieCap = pos;
    dev.pcieFlagsReg = dev.read16(pos + R.PCI_EXP_FLAGS);
    const parent = dev.upstreamBridge();
    if (!parent) return;
    const type = dev.pcieType();
    // 6.12 ORs the new type in unshifted: it lands in the version bits (3:0) and the type
    // field reads 0, so the port is then treated as an endpoint. Kept as Linux does it.
    const retype = (t: number, what: string) => {
      dev.pcieFlagsReg = (dev.pcieFlagsReg & ~R.PCI_EXP_FLAGS_TYPE) | t;
      dev.notes.push(
        `${what} (the type is written into the version bits: now type ${dev.pcieType()}, an endpoint)`,
      );
    };
    if (type === R.PCI_EXP_TYPE_DOWNSTREAM && parent.isDownstreamPort()) {
      retype(
        R.PCI_EXP_TYPE_UPSTREAM,
        "claims to be downstream port but is acting as upstream port, correcting type",
      );
    } else if (type === R.PCI_EXP_TYPE_UPSTREAM && parent.pcieType() === R.PCI_EXP_TYPE_UPSTREAM) {
      retype(
        R.PCI_EXP_TYPE_DOWNSTREAM,
        "claims to be upstream port but is acting as downstream port, correcting type",
      );
    }
  }

  /** pci_configure_ari() */
  private configureAri(dev: PciDev): void {
    if (!dev.isPcie() || dev.devfn !== 0) return;
    const bridge = dev.bus.self;
    if (!bridge || !bridge.isPcie()) return;
    const cap = bridge.read32(bridge.pcieCap + R.PCI_EXP_DEVCAP2);
    if (!(cap & R.PCI_EXP_DEVCAP2_ARI)) return;
    const ctl = bridge.read16(bridge.pcieCap + R.PCI_EXP_DEVCTL2);
    if (pciFindExtCapability(dev, R.PCI_EXT_CAP_ID_ARI)) {
      bridge.write16(bridge.pcieCap + R.PCI_EXP_DEVCTL2, ctl | R.PCI_EXP_DEVCTL2_ARI);
      bridge.ariEnabled = true;
    } else {
      bridge.write16(bridge.pcieCap + R.PCI_EXP_DEVCTL2, ctl & ~R.PCI_EXP_DEVCTL2_ARI);
      bridge.ariEnabled = false;
    }
  }

  /** pci_scan_bridge_extend(), pass 0: firmware-configured bus numbers. */
  private scanBridge(bus: PciBus, dev: PciDev): void {
    const primary = dev.read8(R.PCI_PRIMARY_BUS);
    const secondary = dev.read8(R.PCI_SECONDARY_BUS);
    const subordinate = dev.read8(R.PCI_SUBORDINATE_BUS);
    if (!secondary && !subordinate) {
      dev.notes.push("bridge has no bus numbers assigned; its secondary side is not scanned");
      return;
    }
    if (primary !== bus.number || secondary <= bus.number || secondary > subordinate) {
      dev.notes.push(
        `bridge configuration invalid ([bus ${hex2(secondary)}-${hex2(subordinate)}]); ` +
          "the model does not reassign bus numbers, its secondary side is not scanned",
      );
      return;
    }
    if (this.findBus(bus.domain, secondary)) {
      dev.notes.push(`bus ${hex2(secondary)} already exists; not scanned twice`);
      return;
    }
    const child = this.addBus(bus.domain, secondary, dev, bus);
    child.busnEnd = subordinate;
    dev.subordinate = child;
    this.scanChildBus(child);
  }

  /** A bus with no bridge above it, for VFs whose Routing ID lands past the PF's bus. */
  virtualBus(parent: PciBus, number: number): PciBus {
    return this.findBus(parent.domain, number) ?? this.addBus(parent.domain, number, null, parent);
  }
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, "0");
}
