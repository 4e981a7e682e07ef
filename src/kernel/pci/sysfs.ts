/**
 * PCI in sysfs, drivers/pci/pci-sysfs.c and drivers/pci/pci-driver.c (Linux 6.12): a
 * directory per function under /sys/devices/pciDDDD:BB/… following the bridge chain,
 * /sys/bus/pci/devices links, identity attributes ("0x%04x"), `config` (the whole space
 * for CAP_SYS_ADMIN, 64 bytes otherwise), `enable` (enable_store: pci_enable_device or
 * pci_disable_device of a function no driver has), `driver_override` (driver_set_override:
 * a newline ends the name, an empty one clears it; shown as "(null)" when unset),
 * `reset_method` (pci.c reset_method_show/store, present when a reset method exists), `reset`
 * (reset_store: pci_reset_function, present likewise), and the `driver`, `subsystem`,
 * `iommu_group` and `iommu` links (with the unit's `devices/<name>`: iommu_device_link), an
 * SR-IOV PF's `virtfnN` and a VF's `physfn` (drivers/pci/iov.c pci_iov_sysfs_link); per driver bind/unbind/new_id/remove_id and
 * links to its devices (drivers/base/bus.c); /sys/bus/pci/drivers_probe.
 */
import type { PciMmio } from "../../machine/hw.js";
import { err } from "../../uapi/errno.js";
import * as R from "../../uapi/pci_regs.js";
import { kstrtoul, storeText, type KAttr, type KLink, type Vfs } from "../core/vfs.js";
import type { PciDriver, PciDriverCore } from "./driver.js";
import type { PciBus, PciDev } from "./pci.js";
import { pciDisableDevice, pciEnableDevice } from "./enable.js";
import {
  pciResetMethodShow,
  pciResetMethodStore,
  pciResetSupported,
  pciTryResetFunction,
} from "./reset.js";

const PAGE_SIZE = 4096;

/** What the IOMMU layer tells sysfs about a device. */
export interface IommuSysfsInfo {
  groupPath(dev: PciDev): string | null;
  unitPath(dev: PciDev): string | null;
}

const hex = (n: number, w: number) => `0x${n.toString(16).padStart(w, "0")}\n`;

export class PciSysfs {
  private readonly dirs = new Map<PciDev, string>();
  /** VFs linked so far per PF (virtfnN). */
  private readonly virtfns = new Map<PciDev, number>();

  constructor(
    private readonly vfs: Vfs,
    private readonly drivers: PciDriverCore,
    private readonly iommu: IommuSysfsInfo,
    /** config space for `reset` */
    private readonly mmio: PciMmio,
  ) {
    drivers.onChange = (dev) => this.driverChanged(dev);
  }

  /** The device's directory: /sys/devices/pci0000:00/0000:00:1c.0/0000:01:00.0 */
  devicePath(dev: PciDev): string {
    let known = this.dirs.get(dev);
    if (!known) {
      known = `${this.busPath(dev.bus)}/${dev.name}`;
      this.dirs.set(dev, known);
    }
    return known;
  }

  /** Where a bus's devices live: below its bridge, its VMD endpoint, or its host bridge. */
  private busPath(bus: PciBus): string {
    if (bus.self) return this.devicePath(bus.self);
    if (bus.parent) return this.busPath(bus.parent); // SR-IOV virtual bus
    const base = bus.vmdOwner ? this.devicePath(bus.vmdOwner) : "/sys/devices";
    return `${base}/pci${bus.domain.toString(16).padStart(4, "0")}:${bus.number.toString(16).padStart(2, "0")}`;
  }

  addDevice(dev: PciDev): void {
    const dir = this.devicePath(dev);
    this.vfs.dir(dir);
    const attr = (name: string, a: Omit<KAttr, "kind">) =>
      this.vfs.add(`${dir}/${name}`, { kind: "attr", ...a });
    attr("vendor", { show: () => hex(dev.vendor, 4) });
    attr("device", { show: () => hex(dev.device, 4) });
    attr("subsystem_vendor", { show: () => hex(dev.subsystemVendor, 4) });
    attr("subsystem_device", { show: () => hex(dev.subsystemDevice, 4) });
    attr("class", { show: () => hex(dev.class, 6) });
    attr("revision", { show: () => hex(dev.revision, 2) });
    attr("enable", {
      show: () => `${dev.enableCnt}\n`,
      // enable_store(): only a device without a driver; disabling one not enabled is EIO
      store: (v, task) => {
        if (!task.capable("CAP_SYS_ADMIN")) return err("EPERM");
        const val = kstrtoul(storeText(v));
        if (val === null) return err("EINVAL");
        if (this.drivers.driverOf(dev)) return err("EBUSY");
        if (val) {
          const r = pciEnableDevice(dev);
          if (r < 0) return r;
        } else if (dev.enableCnt > 0) pciDisableDevice(dev);
        else return err("EIO");
        return v.length;
      },
    });
    // pci_dev_reset_method_attr_is_visible(): only for a device some method can reset.
    if (pciResetSupported(dev))
      attr("reset_method", {
        show: () => pciResetMethodShow(dev),
        store: (v) => {
          const r = pciResetMethodStore(dev, storeText(v));
          return r < 0 ? r : v.length;
        },
      });
    // pci_dev_reset_attr_is_visible() likewise; reset_store(): kstrtoul, only 1, then
    // pci_reset_function() with the methods probed at add (ENOTTY when none works now).
    if (pciResetSupported(dev))
      attr("reset", {
        store: (v) => {
          if (kstrtoul(storeText(v)) !== 1n) return err("EINVAL");
          const r = pciTryResetFunction(this.mmio, dev);
          return r < 0 ? r : v.length;
        },
      });
    attr("driver_override", {
      show: () => `${this.drivers.override.get(dev) ?? "(null)"}\n`,
      store: (v) => {
        // driver_set_override(): the text up to the first NUL, then up to a newline.
        if (v.length >= PAGE_SIZE - 1) return err("EINVAL");
        let s = storeText(v);
        const nul = s.indexOf("\0");
        if (nul >= 0) s = s.slice(0, nul);
        const nl = s.indexOf("\n");
        if (nl >= 0) s = s.slice(0, nl);
        if (s) this.drivers.override.set(dev, s);
        else this.drivers.override.delete(dev);
        return v.length;
      },
    });
    attr("config", {
      readAt: (pos, count, task) => {
        const size = task.capable("CAP_SYS_ADMIN")
          ? dev.cfgSize
          : (dev.hdrType & R.PCI_HEADER_TYPE_MASK) === R.PCI_HEADER_TYPE_CARDBUS
            ? 128
            : 64;
        if (pos >= size) return new Uint8Array(0);
        const n = Math.min(count, size - pos);
        const out = new Uint8Array(n);
        for (let i = 0; i < n; i++) out[i] = dev.read8(pos + i);
        return out;
      },
      writeAt: (pos, data, task) => {
        if (!task.capable("CAP_SYS_ADMIN")) return err("EPERM");
        if (pos >= dev.cfgSize) return 0;
        const n = Math.min(data.length, dev.cfgSize - pos);
        for (let i = 0; i < n; i++) dev.write8(pos + i, data[i] as number);
        return n;
      },
    });
    const link = (name: string, target: () => string | null) => {
      const t = target();
      if (t) this.vfs.add(`${dir}/${name}`, { kind: "link", target: () => target() ?? t } as KLink);
    };
    link("iommu_group", () => this.iommu.groupPath(dev));
    link("iommu", () => this.iommu.unitPath(dev));
    // iommu_device_link(): the unit's devices/<name> names the function back.
    const unit = this.iommu.unitPath(dev);
    if (unit) this.vfs.add(`${unit}/devices/${dev.name}`, { kind: "link", target: () => dir });
    link("subsystem", () => "/sys/bus/pci");
    // pci_iov_sysfs_link(): the PF's virtfnN and the VF's physfn, in the order VFs are added.
    const pf = dev.physfn;
    if (pf) {
      const n = this.virtfns.get(pf) ?? 0;
      this.virtfns.set(pf, n + 1);
      link("physfn", () => this.devicePath(pf));
      this.vfs.add(`${this.devicePath(pf)}/virtfn${n}`, { kind: "link", target: () => dir });
    }
    this.vfs.add(`/sys/bus/pci/devices/${dev.name}`, { kind: "link", target: () => dir });
    this.driverChanged(dev);
  }

  /** The iommu_group link appears when a group is assigned (VFs, hotplug). */
  refreshIommu(dev: PciDev): void {
    const dir = this.devicePath(dev);
    const g = this.iommu.groupPath(dev);
    if (g)
      this.vfs.add(`${dir}/iommu_group`, {
        kind: "link",
        target: () => this.iommu.groupPath(dev) ?? g,
      });
    else this.vfs.remove(`${dir}/iommu_group`);
  }

  addDriver(drv: PciDriver): void {
    const dir = `/sys/bus/pci/drivers/${drv.name}`;
    this.vfs.dir(dir);
    const store = (name: string, fn: (text: string) => number) =>
      this.vfs.add(`${dir}/${name}`, {
        kind: "attr",
        store: (v) => {
          const r = fn(storeText(v));
          return r < 0 ? r : v.length;
        },
      });
    store("bind", (t) => this.drivers.bind(drv, t));
    store("unbind", (t) => this.drivers.unbind(drv, t));
    store("new_id", (t) => this.drivers.newId(drv, t));
    store("remove_id", (t) => this.drivers.removeId(drv, t));
  }

  addBusFiles(): void {
    this.vfs.add("/sys/bus/pci/drivers_probe", {
      kind: "attr",
      store: (v) => {
        const r = this.drivers.driversProbe(storeText(v));
        return r < 0 ? r : v.length;
      },
    });
    this.vfs.dir("/sys/bus/pci/drivers");
  }

  private driverChanged(dev: PciDev): void {
    const dir = this.devicePath(dev);
    if (!this.vfs.lookup(dir, true)) return; // not in sysfs yet
    // driver_sysfs_remove() runs before ->remove: a releasing device has no links.
    const drv = this.drivers.releasing.has(dev) ? undefined : this.drivers.driverOf(dev);
    for (const d of this.drivers.drivers.values())
      this.vfs.remove(`/sys/bus/pci/drivers/${d.name}/${dev.name}`);
    if (drv) {
      this.vfs.add(`${dir}/driver`, {
        kind: "link",
        target: () => `/sys/bus/pci/drivers/${drv.name}`,
      });
      this.vfs.add(`/sys/bus/pci/drivers/${drv.name}/${dev.name}`, {
        kind: "link",
        target: () => dir,
      });
    } else {
      this.vfs.remove(`${dir}/driver`);
    }
  }
}
