/**
 * Boot: the order Linux 6.12 brings things up on x86. The IOMMU drivers' early detection
 * (DMAR/IVRS parsing) calls pci_request_acs() before PCI enumeration; PCI then enumerates
 * every host bridge (pci_subsys_init), iommu_device_register() → bus_iommu_probe() groups
 * every device in bus order and the VT-d / AMD-Vi driver attaches each group to its
 * default domain, and drivers bind (device_initcall). VMD domains and SR-IOV VFs appear
 * later and are probed as they are added. VFIO's type1 backend is registered with the
 * module parameters the command line gives it.
 *
 * The kernel is also where processes live: `spawn` gives a task and its syscall surface.
 * `debug` is the model's debugfs: read-only introspection (groups and the reasons that
 * formed them) for tools that explain what the kernel did.
 */
import type { Hardware } from "../machine/hw.js";
import { parseCmdline, type BootParams } from "./cmdline.js";
import { PageAllocator } from "./core/page_alloc.js";
import { TaskSyscalls } from "./core/syscalls.js";
import { Task, type TaskOptions } from "./core/task.js";
import { Vfs } from "./core/vfs.js";
import { AmdIommuDriver } from "./iommu/amd.js";
import { IOMMU_DOMAIN_DMA, IOMMU_DOMAIN_DMA_FQ, IOMMU_DOMAIN_IDENTITY } from "./iommu/domain.js";
import { IntelIommuDriver } from "./iommu/intel.js";
import { IommuSubsystem, type DeviceTrace, type GroupEdge } from "./iommu/iommu.js";
import { IommuSysfs } from "./iommu/sysfs.js";
import { KvmSubsystem, type KvmVmInfo } from "./kvm/kvm_main.js";
import { DEFAULT_PROFILE, PROFILES, type ProfileName } from "./kvm/profile.js";
import { PciDriverCore } from "./pci/driver.js";
import { deviceDriver, pcieport, pciStub } from "./pci/drivers.js";
import { sriovEnable } from "./pci/iov.js";
import type { PciDev } from "./pci/pci.js";
import { PciSubsystem } from "./pci/probe.js";
import { PciSysfs } from "./pci/sysfs.js";
import { vfioPciDriver } from "./vfio/pci/vfio_pci.js";
import { vfioIommuType1 } from "./vfio/vfio_iommu_type1.js";
import { Vfio } from "./vfio/vfio_main.js";

export type { DeviceTrace, GroupEdge, ReasonCode } from "./iommu/iommu.js";
export type { AcsVerdict } from "./pci/acs.js";
export type { KvmVmInfo } from "./kvm/kvm_main.js";
export type { ProfileName } from "./kvm/profile.js";
export type { TaskOptions } from "./core/task.js";

export interface GroupInfo {
  id: number;
  unit: string;
  devices: string[];
  edges: GroupEdge[];
}

export interface BootOptions {
  cmdline?: string;
  /** Drivers of this kernel build, by name (those the model knows nothing more about bind by id). */
  drivers?: string[];
  /** Which driver each device was bound to (a snapshot's `driver` links). */
  bindings?: Map<string, string>;
  /** VFs a driver enabled after boot (sriov_numvfs), by PF. */
  sriov?: Map<string, number>;
  /** The kernel era whose behaviour changed-over-time objects follow (kvm/profile.ts). */
  profile?: ProfileName;
}

/** Drivers whose behaviour the model carries; any other name is an ordinary device driver. */
const MODELLED = new Set(["pcieport", "pci-stub", "vfio-pci"]);

export class Kernel {
  readonly params: BootParams;
  readonly pci: PciSubsystem;
  readonly iommu: IommuSubsystem;
  readonly pages: PageAllocator;
  readonly vfs = new Vfs();
  readonly drivers: PciDriverCore;
  readonly vfio: Vfio;
  readonly kvm: KvmSubsystem;
  private readonly pciSysfs: PciSysfs;
  private readonly iommuSysfs: IommuSysfs;
  private nextPid = 1;

  private constructor(
    readonly hw: Hardware,
    cmdline: string,
    profile: ProfileName,
  ) {
    this.params = parseCmdline(cmdline);
    const p = this.params;
    const units = p.iommuOff
      ? []
      : hw.firmware
          .iommuUnits()
          .filter((u) =>
            u.kind === "intel-vtd" ? p.intelIommu : u.kind === "amd-vi" ? p.amdIommu : true,
          );
    const quirks = {
      hasIvrs: hw.firmware.iommuUnits().some((u) => u.kind === "amd-vi"),
      acsOverride: p.acsOverride,
    };
    this.pci = new PciSubsystem(hw, { acsRequested: units.length > 0, quirks, acs: p.acs });
    this.pages = new PageAllocator(hw.memory);
    const unitOf = (d: PciDev) => this.iommu.unitFor(d);
    const intel = new IntelIommuDriver(
      hw,
      this.pages,
      units.filter((u) => u.kind === "intel-vtd"),
      unitOf,
      cmdline,
    );
    const amd = new AmdIommuDriver(hw, this.pages, unitOf, cmdline);
    const domainType = defaultDomainType(cmdline);
    this.iommu = new IommuSubsystem(units, quirks, {
      ops: (u) =>
        u.kind === "intel-vtd"
          ? intel.handles(u)
            ? intel.ops
            : null
          : u.kind === "amd-vi"
            ? amd.ops
            : null,
      defaultType:
        domainType === "identity"
          ? IOMMU_DOMAIN_IDENTITY
          : domainType === "DMA"
            ? IOMMU_DOMAIN_DMA
            : IOMMU_DOMAIN_DMA_FQ,
    });
    this.drivers = new PciDriverCore(() => this.pci.devices, this.iommu);
    this.iommuSysfs = new IommuSysfs(this.vfs, domainType);
    this.pciSysfs = new PciSysfs(this.vfs, this.drivers, {
      groupPath: (d) => {
        const g = this.iommu.groupOf(d);
        return g ? IommuSysfs.groupPath(g) : null;
      },
      unitPath: (d) => {
        const u = this.iommu.groupOf(d)?.unit;
        return u ? `/sys/devices/virtual/iommu/${u.name}` : null;
      },
    });
    this.vfio = new Vfio(this.vfs, this.iommu);
    this.vfio.iommuDrivers.register(vfioIommuType1({ param: (n) => moduleParam(cmdline, n) }));
    this.kvm = new KvmSubsystem(PROFILES[profile], this.vfio);
    this.vfs.devices.set("/dev/kvm", this.kvm.chardev);
    for (const u of units) this.iommuSysfs.addUnit(u);
    this.vfs.add("/proc/cmdline", { kind: "attr", show: () => `${cmdline}\n` });
  }

  static boot(hw: Hardware, opts: BootOptions | string = {}): Kernel {
    const o: BootOptions = typeof opts === "string" ? { cmdline: opts } : opts;
    const k = new Kernel(hw, o.cmdline ?? "", o.profile ?? DEFAULT_PROFILE);
    k.pci.enumerate();
    for (const dev of k.pci.devices) k.iommu.probeDevice(dev);
    for (const g of k.iommu.groups.values())
      k.iommuSysfs.addGroup(g, (d) => k.pciSysfs.devicePath(d));
    k.registerDrivers(o);
    for (const dev of k.pci.devices) k.pciSysfs.addDevice(dev);
    for (const dev of k.pci.devices) {
      const want = o.bindings?.get(dev.name);
      const drv = want ? k.drivers.drivers.get(want) : undefined;
      if (drv) k.drivers.attach(drv, dev);
      else if (!o.bindings) k.drivers.deviceAttach(dev);
    }
    for (const [pf, n] of o.sriov ?? []) {
      const dev = k.pci.get(pf);
      if (dev) k.sriovNumvfs(dev, n);
    }
    return k;
  }

  private registerDrivers(o: BootOptions): void {
    this.drivers.register(pcieport);
    this.drivers.register(pciStub);
    this.drivers.register(
      vfioPciDriver(this.vfio, {
        hw: this.hw.pci,
        numVfs: (d) => this.pci.devices.filter((v) => v.physfn === d).length,
        iommuGroupId: (d) => this.iommu.groupOf(d)?.id ?? null,
      }),
    );
    const names = new Set([...(o.drivers ?? []), ...(o.bindings?.values() ?? [])]);
    for (const name of [...names].sort()) {
      if (MODELLED.has(name)) continue;
      const ids = [...(o.bindings ?? [])]
        .filter(([, d]) => d === name)
        .map(([bdf]) => this.pci.get(bdf))
        .filter((d): d is PciDev => !!d)
        .map((d) => ({ vendor: d.vendor, device: d.device }));
      this.drivers.register(deviceDriver(name, ids, this.hw.pci));
    }
    this.pciSysfs.addBusFiles();
    for (const drv of this.drivers.drivers.values()) this.pciSysfs.addDriver(drv);
  }

  /** Write `n` to a PF's sriov_numvfs: VFs appear, the IOMMU probes them, sysfs shows them. */
  sriovNumvfs(pf: PciDev, n: number): string | null {
    const r = sriovEnable(this.pci, pf, n);
    if (typeof r === "string") return r;
    for (const vf of r) {
      this.iommu.probeDevice(vf);
      const g = this.iommu.groupOf(vf);
      if (g && g.devices.length === 1)
        this.iommuSysfs.addGroup(g, (d) => this.pciSysfs.devicePath(d));
      else if (g) this.iommuSysfs.addMember(g, vf, (d) => this.pciSysfs.devicePath(d));
      this.pciSysfs.addDevice(vf);
    }
    return null;
  }

  /** A new process (root with every capability unless told otherwise) and its syscalls. */
  spawn(opts: TaskOptions = {}): TaskSyscalls {
    return new TaskSyscalls(new Task(this.nextPid++, this.pages, opts), this.vfs);
  }

  readonly debug = {
    groups: (): GroupInfo[] =>
      [...this.iommu.groups.values()]
        .sort((a, b) => a.id - b.id)
        .map((g) => ({
          id: g.id,
          unit: g.unit.name,
          devices: g.devices.map((d) => d.name),
          edges: g.edges,
        })),
    trace: (name: string): DeviceTrace | undefined => this.iommu.traces.get(name),
    device: (name: string): PciDev | undefined => this.pci.get(name),
    vms: (): KvmVmInfo[] => this.kvm.info(),
  };
}

/**
 * A module parameter from the command line ("module.param=value"; "-" and "_" are the same
 * in a name, the last word wins, a bare "module.param" gives ""), as the module loader
 * passes them to a module (kernel/params.c parameq).
 */
function moduleParam(cmdline: string, name: string): string | undefined {
  const norm = (s: string) => s.replace(/-/g, "_");
  let v: string | undefined;
  for (const w of cmdline.split(/\s+/)) {
    const eq = w.indexOf("=");
    if (norm(eq < 0 ? w : w.slice(0, eq)) === norm(name)) v = eq < 0 ? "" : w.slice(eq + 1);
  }
  return v;
}

/**
 * The default domain type groups show: identity with iommu=pt / iommu.passthrough=1,
 * DMA with iommu.strict=1, else DMA-FQ (distributions build with
 * CONFIG_IOMMU_DEFAULT_DMA_LAZY; drivers/iommu/iommu.c iommu_subsys_init).
 */
function defaultDomainType(cmdline: string): string {
  let type = "DMA-FQ";
  for (const w of cmdline.split(/\s+/)) {
    if (/^iommu=(.*,)?pt(,|$)/.test(w) || w === "iommu.passthrough=1") type = "identity";
    if (/^iommu=(.*,)?nopt(,|$)/.test(w) || w === "iommu.passthrough=0")
      type = type === "identity" ? "DMA-FQ" : type;
    if (w === "iommu.strict=1" && type !== "identity") type = "DMA";
  }
  return type;
}
