/**
 * Binding PCI devices to drivers: drivers/pci/pci-driver.c (pci_match_device with
 * driver_override and dynamic ids, new_id/remove_id, pci_dma_configure/pci_dma_cleanup)
 * and drivers/base/{dd,bus}.c (really_probe, device_driver_attach, __device_attach_driver,
 * bind_store, unbind_store, drivers_probe_store), Linux 6.12.
 *
 * Return conventions kept from dd.c: a failing dma_configure (iommu_device_use_default_domain
 * → EBUSY while VFIO owns the group) makes really_probe return -errno; a failing ->probe
 * makes it return +errno, which bind reports as -errno and drivers_probe ignores.
 *
 * __device_release_driver() removes the sysfs links (driver_sysfs_remove) before ->remove,
 * and clears dev->driver, cleans up DMA and notifies only after ->remove returns. A ->remove
 * that waits for its users (vfio-pci: vfio_unregister_group_dev until the last device fd
 * closes) leaves the device there, "releasing": still bound, no `driver` link, its unbind
 * writer blocked. The model has one thread, so the writer's write returns what it returns
 * once unblocked (the count) and the rest of the release runs when the driver says it may.
 * Other driver-core requests for a releasing device (which would wait for the device lock)
 * see it bound: a second unbind does nothing, bind and drivers_probe find it taken.
 */
import { err } from "../../uapi/errno.js";
import type { PciDev } from "./pci.js";

export const PCI_ANY_ID = 0xffff_ffff;

export interface PciDeviceId {
  vendor: number;
  device: number;
  subvendor: number;
  subdevice: number;
  class: number;
  classMask: number;
  overrideOnly?: boolean;
}

export interface PciDriver {
  readonly name: string;
  readonly ids: PciDeviceId[];
  /** Drivers that manage DMA ownership themselves (vfio-pci, pci-stub, pcieport). */
  readonly driverManagedDma: boolean;
  probe(dev: PciDev, id: PciDeviceId): number;
  /**
   * ->remove: "blocked" when it waits for users to let go of the device; it then calls
   * `done` once it returns (and never otherwise).
   */
  remove?(dev: PciDev, done: () => void): "blocked" | void;
}

/** What pci_dma_configure needs from the IOMMU layer (iommu_device_[un]use_default_domain). */
export interface DmaOwnership {
  useDefaultDomain(dev: PciDev): number;
  unuseDefaultDomain(dev: PciDev): void;
}

/** pci_match_one_device() */
export function matchOne(id: PciDeviceId, dev: PciDev): boolean {
  return (
    (id.vendor === PCI_ANY_ID || id.vendor === dev.vendor) &&
    (id.device === PCI_ANY_ID || id.device === dev.device) &&
    (id.subvendor === PCI_ANY_ID || id.subvendor === dev.subsystemVendor) &&
    (id.subdevice === PCI_ANY_ID || id.subdevice === dev.subsystemDevice) &&
    ((id.class ^ dev.class) & id.classMask) === 0
  );
}

export function anyId(vendor = PCI_ANY_ID, device = PCI_ANY_ID): PciDeviceId {
  return { vendor, device, subvendor: PCI_ANY_ID, subdevice: PCI_ANY_ID, class: 0, classMask: 0 };
}

/** pci_device_id_any: what a driver_override match hands to probe. */
const ID_ANY = anyId();

export class PciDriverCore {
  readonly drivers = new Map<string, PciDriver>();
  private readonly dynids = new Map<string, PciDeviceId[]>();
  /** Bound driver per device, and each device's driver_override. */
  readonly bound = new Map<PciDev, PciDriver>();
  readonly override = new Map<PciDev, string>();
  /** Devices whose driver's ->remove is waiting (see the module comment). */
  readonly releasing = new Set<PciDev>();
  /** Notified after every bind and unbind (sysfs links follow it). */
  onChange: (dev: PciDev) => void = () => undefined;

  constructor(
    private readonly devices: () => PciDev[],
    private readonly dma: DmaOwnership,
  ) {}

  register(drv: PciDriver): void {
    this.drivers.set(drv.name, drv);
    this.dynids.set(drv.name, []);
  }

  driverOf(dev: PciDev): PciDriver | undefined {
    return this.bound.get(dev);
  }

  byName(name: string): PciDev | undefined {
    // bus_find_device_by_name() with sysfs_streq: one trailing newline is ignored.
    const n = name.endsWith("\n") ? name.slice(0, -1) : name;
    return this.devices().find((d) => d.name === n);
  }

  /** pci_match_device() */
  match(drv: PciDriver, dev: PciDev): PciDeviceId | null {
    const ov = this.override.get(dev);
    if (ov !== undefined && ov !== drv.name) return null;
    return this.matchIds(drv, dev, ov);
  }

  private matchIds(drv: PciDriver, dev: PciDev, ov: string | undefined): PciDeviceId | null {
    const dyn = (this.dynids.get(drv.name) ?? []).find((id) => matchOne(id, dev));
    if (dyn) return dyn;
    for (const id of drv.ids) {
      if (!matchOne(id, dev)) continue;
      if (!id.overrideOnly || ov !== undefined) return id;
    }
    return ov !== undefined ? ID_ANY : null;
  }

  /** really_probe(): 0 bound; -errno from dma_configure; +errno from ->probe. */
  private reallyProbe(drv: PciDriver, dev: PciDev): number {
    if (!drv.driverManagedDma) {
      const r = this.dma.useDefaultDomain(dev);
      if (r) return r;
    }
    // pci_device_probe(): a VF autoprobes only with an override (drivers_autoprobe aside).
    const id = this.match(drv, dev);
    let r = id ? drv.probe(dev, id) : err("ENODEV");
    if (!r) {
      this.bound.set(dev, drv);
      this.onChange(dev);
      return 0;
    }
    r = -r;
    if (!drv.driverManagedDma) this.dma.unuseDefaultDomain(dev);
    return r;
  }

  /** __driver_probe_device() */
  private probeDevice(drv: PciDriver, dev: PciDev): number {
    if (this.bound.has(dev)) return err("EBUSY");
    return this.reallyProbe(drv, dev);
  }

  /** device_driver_attach(): probe errors as negative errnos. */
  attach(drv: PciDriver, dev: PciDev): number {
    const r = this.probeDevice(drv, dev);
    return r > 0 ? -r : r;
  }

  /** device_attach() via bus_for_each_drv(__device_attach_driver): 1 bound, 0 none, <0 error. */
  deviceAttach(dev: PciDev): number {
    if (this.bound.has(dev)) return 1;
    for (const drv of this.drivers.values()) {
      if (!this.match(drv, dev)) continue;
      const r = this.probeDevice(drv, dev);
      if (r < 0) return r;
      if (r === 0) return 1;
    }
    return 0;
  }

  /** device_release_driver(): the sysfs links go, ->remove, then pci_dma_cleanup. */
  detach(dev: PciDev): void {
    const drv = this.bound.get(dev);
    if (!drv || this.releasing.has(dev)) return;
    this.releasing.add(dev);
    this.onChange(dev);
    const released = () => {
      this.releasing.delete(dev);
      this.bound.delete(dev);
      if (!drv.driverManagedDma) this.dma.unuseDefaultDomain(dev);
      this.onChange(dev);
    };
    if (drv.remove?.(dev, released) !== "blocked") released();
  }

  /** bind_store */
  bind(drv: PciDriver, name: string): number {
    const dev = this.byName(name);
    if (!dev || !this.match(drv, dev)) return err("ENODEV");
    return this.attach(drv, dev);
  }

  /** unbind_store */
  unbind(drv: PciDriver, name: string): number {
    const dev = this.byName(name);
    if (!dev || this.bound.get(dev) !== drv) return err("ENODEV");
    this.detach(dev);
    return 0;
  }

  /** drivers_probe_store */
  driversProbe(name: string): number {
    const dev = this.byName(name);
    if (!dev) return err("ENODEV");
    return this.deviceAttach(dev) < 0 ? err("EINVAL") : 0;
  }

  /** new_id_store: "vendor device [subvendor subdevice [class class_mask [driver_data]]]" */
  newId(drv: PciDriver, text: string): number {
    const f = scanHex(text, 7);
    if (f.length < 2) return err("EINVAL");
    const [vendor, device, subvendor = PCI_ANY_ID, subdevice = PCI_ANY_ID, cls = 0, classMask = 0] =
      f as [number, number, ...number[]];
    const id: PciDeviceId = { vendor, device, subvendor, subdevice, class: cls, classMask };
    if (f.length !== 7) {
      // An id the driver already matches is refused.
      const fake = {
        vendor,
        device,
        subsystemVendor: subvendor,
        subsystemDevice: subdevice,
        class: cls,
      };
      if (this.matchIds(drv, fake as PciDev, undefined)) return err("EEXIST");
    }
    // Only driver_data values of an existing id_table entry (all of ours carry 0).
    if (drv.ids.length && (f[6] ?? 0) !== 0) return err("EINVAL");
    (this.dynids.get(drv.name) as PciDeviceId[]).push(id);
    // driver_attach(): try every unbound device.
    for (const dev of this.devices()) {
      if (!this.bound.has(dev) && this.match(drv, dev)) this.probeDevice(drv, dev);
    }
    return 0;
  }

  /** remove_id_store */
  removeId(drv: PciDriver, text: string): number {
    const f = scanHex(text, 6);
    if (f.length < 2) return err("EINVAL");
    const [vendor, device, subvendor = PCI_ANY_ID, subdevice = PCI_ANY_ID, cls = 0, classMask = 0] =
      f as [number, number, ...number[]];
    const list = this.dynids.get(drv.name) as PciDeviceId[];
    const i = list.findIndex(
      (id) =>
        id.vendor === vendor &&
        id.device === device &&
        (subvendor === PCI_ANY_ID || id.subvendor === subvendor) &&
        (subdevice === PCI_ANY_ID || id.subdevice === subdevice) &&
        !((id.class ^ cls) & classMask),
    );
    if (i < 0) return err("ENODEV");
    list.splice(i, 1);
    return 0;
  }
}

/** sscanf(buf, "%x %x ..."): the hex fields read before the first that does not parse. */
function scanHex(text: string, max: number): number[] {
  const out: number[] = [];
  for (const tok of text.trim().split(/\s+/)) {
    const m = /^(?:0x)?([0-9a-f]+)/i.exec(tok);
    if (!m || out.length === max) break;
    out.push(parseInt(m[1] as string, 16) >>> 0);
    if (m[0].length !== tok.length) break;
  }
  return out;
}
