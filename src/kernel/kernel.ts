/**
 * Boot: the order Linux 6.12 brings things up on x86. The IOMMU drivers' early detection
 * (DMAR/IVRS parsing) calls pci_request_acs() before PCI enumeration; PCI then enumerates
 * every host bridge (pci_subsys_init), iommu_device_register() → bus_iommu_probe() groups
 * every device in bus order and the VT-d / AMD-Vi driver attaches each group to its
 * default domain, and drivers bind (device_initcall). VMD domains and SR-IOV VFs appear
 * later and are probed as they are added. VFIO's type1 backend is registered with the
 * module parameters the command line gives it; with CONFIG_VFIO_NOIOMMU, VFIO reads
 * vfio.enable_unsafe_noiommu_mode and may give a device no IOMMU covers a fake group of
 * its own (vfio/vfio_main.ts), which taints the kernel (/proc/sys/kernel/tainted).
 *
 * The kernel is also where processes live: `spawn` gives a task and its syscall surface.
 * `debug` is the model's debugfs: read-only introspection (groups and the reasons that
 * formed them) for tools that explain what the kernel did, and the object counts,
 * ownership, translations and KVM registrations invariant checkers compare
 * (userspace/check/invariants.ts). `faultInject` is fail-nth (core/fault_inject.ts).
 */
import type { GuestInsn, Hardware } from "../machine/hw.js";
import { kstrtobool, parseBool, parseCmdline, type BootParams } from "./cmdline.js";
import type { FaultInject } from "./core/fault_inject.js";
import { File, FileCount } from "./core/file.js";
import { PageAllocator } from "./core/page_alloc.js";
import type { PpcHcallRecord, PpcKvmRun, PpcTceEra } from "./kvm/book3s_hv.js";
import { PowerPlatform } from "./powerpc/setup.js";
import { TaskSyscalls } from "./core/syscalls.js";
import { Task, type TaskOptions } from "./core/task.js";
import { storeText, Vfs } from "./core/vfs.js";
import { AmdIommuDriver } from "./iommu/amd.js";
import {
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_DMA,
  IOMMU_DOMAIN_DMA_FQ,
  IOMMU_DOMAIN_IDENTITY,
  iommuIovaToPhys,
  type IommuDomain,
} from "./iommu/domain.js";
import { IntelIommuDriver } from "./iommu/intel.js";
import {
  IommuSubsystem,
  type DeviceTrace,
  type GroupEdge,
  type IommuGroup,
} from "./iommu/iommu.js";
import { IommuSysfs } from "./iommu/sysfs.js";
import { KvmSubsystem, type KvmVmInfo } from "./kvm/kvm_main.js";
import { IncoherentDma, iommufdSymbols } from "./kvm/incoherent_dma.js";
import type { KvmRun } from "./kvm/vcpu.js";
import { DEFAULT_PROFILE, PROFILES, type KvmProfile, type ProfileName } from "./kvm/profile.js";
import { PciDriverCore } from "./pci/driver.js";
import { deviceDriver, pcieport, pciStub } from "./pci/drivers.js";
import { sriovEnable } from "./pci/iov.js";
import type { PciDev } from "./pci/pci.js";
import { PciSubsystem } from "./pci/probe.js";
import { PciSysfs } from "./pci/sysfs.js";
import { vfioNoiommuOps, type VfioContainer } from "./vfio/container.js";
import { vfioPciDriver } from "./vfio/pci/vfio_pci.js";
import { vfioIommuType1 } from "./vfio/vfio_iommu_type1.js";
import { Vfio } from "./vfio/vfio_main.js";
import { VfioCdev } from "./vfio/device_cdev.js";
import { IommufdSubsystem } from "./iommufd/main.js";
import { BUILDS, DEFAULT_BUILD, type BuildConfig, type KernelBuild } from "./kconfig.js";
import { VFIO_CHECK_EXTENSION, VFIO_DMA_CC_IOMMU } from "../uapi/vfio.js";
import { err } from "../uapi/errno.js";
import { processInfo, vfioInfo, type ProcessInfo, type VfioInfo } from "./introspect.js";

export type { DeviceTrace, GroupEdge, ReasonCode } from "./iommu/iommu.js";
export type { AcsVerdict } from "./pci/acs.js";
export type { KvmVmInfo } from "./kvm/kvm_main.js";
export type { ProfileName } from "./kvm/profile.js";
export type { BuildConfig, KernelBuild } from "./kconfig.js";
export type { TaskOptions } from "./core/task.js";
export type { GuestInsn } from "../machine/hw.js";
export type { KvmRun } from "./kvm/vcpu.js";
export type { FaultInject, FaultSite, InjectedFault } from "./core/fault_inject.js";
export type { FdInfo, ProcessInfo, VfioInfo } from "./introspect.js";

export interface GroupInfo {
  id: number;
  /** The IOMMU unit; a unit-less (no-IOMMU) group's name. */
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
  /**
   * POWER only: whose TCE hypercall path KVM follows, "6.12" (virtual mode, then
   * userspace) or "5.18" (real mode first; retired in 5.19).
   */
  ppcTceEra?: PpcTceEra;
  /** The kernel build (kconfig.ts): legacy VFIO container + type1, or iommufd + cdev. */
  build?: KernelBuild;
  /** Options changed on top of the build (e.g. CONFIG_IOMMUFD_TEST for the mock platform). */
  kconfig?: Partial<BuildConfig>;
}

/** Kernel objects alive now (debug.objects): what a leak check compares with the boot baseline. */
export interface ObjectCounts {
  /** Page-allocator frames in use (user pages, IOMMU page tables). */
  frames: number;
  /** Open file descriptions (installed at least once, not yet released). */
  files: number;
  /** VFIO containers not yet freed. */
  containers: number;
  /** KVM VMs not yet destroyed. */
  vms: number;
  /** VFIO devices open (sum of open counts) and VFIO groups with an open file. */
  vfioDevicesOpen: number;
  vfioGroupsOpen: number;
}

/** One IOMMU group's DMA ownership as iommu.c and VFIO record it (debug.ownership). */
export interface GroupOwnership {
  id: number;
  /** Members with the driver bound to each, and whether that driver uses the DMA API. */
  devices: { name: string; driver: string | null; dmaApi: boolean }[];
  /** group->owner_cnt */
  ownerCnt: number;
  /** group->owner: null, the VFIO group of this IOMMU group, or something else. */
  owner: null | "vfio-group" | "other";
  /** Which of its domains the group is attached to. */
  domain: "default" | "blocking" | "user" | "none";
  /** For a "user" domain: whether the owning container's backend holds that domain. */
  domainOfOwner: boolean | null;
  /** The VFIO group's container (debug id), and every container listing the VFIO group. */
  container: number | null;
  listedBy: number[];
  /** The VFIO group's open file and its container users (0 without a VFIO group). */
  vfioGroupOpen: boolean;
  containerUsers: number;
}

/** Where a device's DMA to one IOVA may land, by the domain its group is attached to. */
export interface DmaTarget {
  group: number | null;
  domain: "identity" | "blocked" | "paging" | "none";
  /** The physical address the domain maps the IOVA to; null when nothing is mapped. */
  phys: bigint | null;
}

/** kvm-vfio's registration against what its entries say now, per VM (debug.kvmCoherency). */
export interface KvmCoherency {
  /** A debug id, unique for the kernel's life (names like "1-4" come back with fd numbers). */
  id: number;
  vm: string;
  profile: ProfileName;
  /** kvm->arch.noncoherent_dma_count */
  registered: number;
  /** __KVM_HAVE_ARCH_NONCOHERENT_DMA: x86 only; POWER's registration hooks are empty stubs. */
  archNoncoherentDma: boolean;
  /** Pairs allowed with KVM_ALLOW_INCOHERENT_DMA ("2021-proposal" profile, never merged). */
  allowed: number;
  /** Per kvm-vfio device: its flag and each entry's verdict under the profile, now. */
  devices: { noncoherent: boolean; entries: { coherent: boolean; key: number }[] }[];
}

/** TAINT_USER (include/linux/panic.h): add_taint(TAINT_USER) sets bit 6. */
const TAINT_USER = 1 << 6;

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
  /** POWER (PowerNV): PHBs and PEs, EEH, the sPAPR VFIO backend, HV KVM's TCE path. */
  readonly powerpc: PowerPlatform | null;
  /** What this kernel was built with (kconfig.ts). */
  readonly build: BuildConfig;
  /** iommufd (/dev/iommu), in a build with CONFIG_IOMMUFD. */
  readonly iommufd: IommufdSubsystem | null;
  /** The KVM era profile this kernel follows. */
  readonly profile: KvmProfile;
  /** Open files of every task (files_stat). */
  private readonly fileCount = new FileCount();
  private readonly ids = new WeakMap<object, number>();
  private nextId = 1;
  private readonly pciSysfs: PciSysfs;
  private readonly iommuSysfs: IommuSysfs;
  private nextPid = 1;
  private readonly tasks: Task[] = [];
  /** tainted_mask (kernel/panic.c), as /proc/sys/kernel/tainted shows it. */
  tainted = 0;

  private constructor(
    readonly hw: Hardware,
    cmdline: string,
    profile: ProfileName,
    build: KernelBuild = DEFAULT_BUILD,
    ppcTceEra: PpcTceEra = "6.12",
    kconfig: Partial<BuildConfig> = {},
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
    if (hw.pageShift) this.pages.setPageShift(hw.pageShift);
    this.powerpc = hw.opal
      ? new PowerPlatform(hw, this.pages, () => this.pci.devices, ppcTceEra)
      : null;
    if (this.powerpc && !p.iommuOff) units.push(...this.powerpc.units);
    const unitOf = (d: PciDev) => this.iommu.unitFor(d);
    const intel = new IntelIommuDriver(
      hw,
      this.pages,
      units.filter((u) => u.kind === "intel-vtd"),
      unitOf,
      cmdline,
    );
    const amd = new AmdIommuDriver(hw, this.pages, unitOf, cmdline);
    const cmdlineType = defaultDomainType(cmdline);
    // the VT-d driver's iommu_set_dma_strict() comes after iommu_subsys_init()
    const domainType = cmdlineType === "DMA-FQ" && intel.dmaStrict ? "DMA" : cmdlineType;
    this.iommu = new IommuSubsystem(units, quirks, {
      ops: (u) =>
        u.kind === "intel-vtd"
          ? intel.handles(u)
            ? intel.ops
            : null
          : u.kind === "amd-vi"
            ? amd.ops
            : u.kind === "spapr-tce"
              ? (this.powerpc?.iommuOps ?? null)
              : null,
      deviceGroup: (u, dev, alloc) =>
        u.kind === "spapr-tce" ? (this.powerpc?.deviceGroup(dev, alloc) ?? null) : undefined,
      defaultType:
        domainType === "identity"
          ? IOMMU_DOMAIN_IDENTITY
          : domainType === "DMA"
            ? IOMMU_DOMAIN_DMA
            : IOMMU_DOMAIN_DMA_FQ,
    });
    this.drivers = new PciDriverCore(() => this.pci.devices, this.iommu);
    this.iommuSysfs = new IommuSysfs(this.vfs, domainType, (g, t) =>
      this.iommu.storeDefaultType(g, t),
    );
    this.pciSysfs = new PciSysfs(
      this.vfs,
      this.drivers,
      {
        groupPath: (d) => {
          const g = this.iommu.groupOf(d);
          return g ? IommuSysfs.groupPath(g) : null;
        },
        unitPath: (d) => {
          const u = this.iommu.groupOf(d)?.unit;
          return u ? `/sys/devices/virtual/iommu/${u.name}` : null;
        },
      },
      this.hw.pci,
    );
    this.vfio = new Vfio(this.vfs, this.iommu);
    this.build = { ...BUILDS[build], ...kconfig };
    if (this.build.vfioNoiommu) {
      this.vfio.noiommu = {
        enabled: kstrtobool(moduleParam(cmdline, "vfio.enable_unsafe_noiommu_mode")),
        groupAlloc: (d) => {
          const g = this.iommu.addDeviceToNewGroup(d, "vfio-noiommu");
          this.iommuSysfs.addGroup(g, (x) => this.pciSysfs.devicePath(x));
          this.pciSysfs.refreshIommu(d);
          this.tainted |= TAINT_USER;
          return g;
        },
        groupRemoveDevice: (d) => {
          const g = this.iommu.groupOf(d);
          this.iommu.removeDevice(d);
          if (g) this.iommuSysfs.removeGroup(g);
          this.pciSysfs.refreshIommu(d);
        },
      };
      // module_param_named(enable_unsafe_noiommu_mode, vfio_noiommu, bool, 0644)
      this.vfs.add("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode", {
        kind: "attr",
        show: () => (this.vfio.noiommu?.enabled ? "Y\n" : "N\n"),
        store: (v) => {
          const b = parseBool(storeText(v));
          if (b === null || !this.vfio.noiommu) return err("EINVAL");
          this.vfio.noiommu.enabled = b;
          return v.length;
        },
      });
      // vfio_container_init() registers vfio-noiommu before any backend module loads.
      if (this.build.vfioContainer === "legacy")
        this.vfio.iommuDrivers.register(vfioNoiommuOps(() => this.vfio.noiommu?.enabled ?? false));
    }
    // A ppc64 build has the sPAPR TCE backend and no type1 (drivers/vfio/Kconfig).
    if (this.build.vfioContainer === "legacy" && this.powerpc)
      this.vfio.iommuDrivers.register(this.powerpc.vfioBackend);
    else if (this.build.vfioContainer === "legacy")
      this.vfio.iommuDrivers.register(vfioIommuType1({ param: (n) => moduleParam(cmdline, n) }));
    this.iommufd = this.build.iommufd
      ? new IommufdSubsystem(this.iommu, {
          thp: this.build.thp,
          vfioContainer: this.build.vfioContainer === "iommufd",
          vfioNoiommu: this.build.vfioNoiommu,
          test: this.build.iommufdTest,
          allowUnsafeInterrupts: kstrtobool(
            moduleParam(cmdline, "iommufd.allow_unsafe_interrupts"),
          ),
        })
      : null;
    if (this.iommufd) {
      this.vfs.devices.set("/dev/iommu", this.iommufd.iommuMisc);
      this.vfio.iommufd = this.iommufd;
      if (this.iommufd.vfioMisc) this.vfs.devices.set("/dev/vfio/vfio", this.iommufd.vfioMisc);
      if (this.build.vfioDeviceCdev)
        this.vfio.cdev = new VfioCdev(this.vfs, this.vfio, this.iommufd, (d) =>
          this.pciSysfs.devicePath(d),
        );
    }
    this.profile = PROFILES[profile];
    this.kvm = new KvmSubsystem(
      this.profile,
      this.vfio,
      hw.cpu,
      this.powerpc?.kvm ?? null,
      this.profile.incoherentDmaIoctls ? new IncoherentDma(iommufdSymbols(this.iommufd)) : null,
    );
    this.vfs.devices.set("/dev/kvm", this.kvm.chardev);
    for (const u of units) this.iommuSysfs.addUnit(u, () => intel.domainsUsed(u));
    this.vfs.add("/proc/cmdline", { kind: "attr", show: () => `${cmdline}\n` });
    this.vfs.add("/proc/sys/kernel/tainted", { kind: "attr", show: () => `${this.tainted}\n` });
  }

  static boot(hw: Hardware, opts: BootOptions | string = {}): Kernel {
    const o: BootOptions = typeof opts === "string" ? { cmdline: opts } : opts;
    const k = new Kernel(
      hw,
      o.cmdline ?? "",
      o.profile ?? DEFAULT_PROFILE,
      o.build,
      o.ppcTceEra,
      o.kconfig,
    );
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
        disableDenylist: kstrtobool(moduleParam(o.cmdline ?? "", "vfio_pci.disable_denylist")),
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
    const task = new Task(this.nextPid++, this.pages, opts, this.fileCount);
    this.tasks.push(task);
    const sys = new TaskSyscalls(task, this.vfs);
    if (this.powerpc) sys.ioctlLayout = "powerpc";
    return sys;
  }

  /** fork(): the child's syscalls, or -ENOMEM. */
  fork(parent: TaskSyscalls): TaskSyscalls | number {
    const task = parent.task.fork(this.nextPid++);
    if (!task) return err("ENOMEM");
    this.tasks.push(task);
    const sys = new TaskSyscalls(task, this.vfs);
    sys.ioctlLayout = parent.ioctlLayout;
    return sys;
  }

  /**
   * A process exits (do_exit → exit_files, exit_mm): every fd closed in order, then its
   * address space torn down. False when no process has that pid.
   */
  exit(pid: number): boolean {
    const t = this.tasks.find((x) => x.pid === pid);
    if (!t) return false;
    t.exit();
    return true;
  }

  /** Fail-nth fault injection for every fallible allocation of this kernel (fault_inject.ts). */
  get faultInject(): FaultInject {
    return this.pages.faults;
  }

  /** A stable small number for a kernel object, for debug output. */
  private idOf(o: object): number {
    let id = this.ids.get(o);
    if (id === undefined) {
      id = this.nextId++;
      this.ids.set(o, id);
    }
    return id;
  }

  private liveContainers(): VfioContainer[] {
    for (const c of this.vfio.containers) if (!c.live) this.vfio.containers.delete(c);
    return [...this.vfio.containers];
  }

  private ownership(g: IommuGroup): GroupOwnership {
    const vg = this.vfio.groupOf(g);
    const c = vg?.container ?? null;
    const domain: GroupOwnership["domain"] =
      g.domain === null
        ? "none"
        : g.domain === g.defaultDomain
          ? "default"
          : g.domain === g.blockingDomain
            ? "blocking"
            : "user";
    let domainOfOwner: boolean | null = null;
    if (domain === "user") {
      // The type1 backend's vfio_domain list (read structurally: debugfs, not an interface).
      const doms = (c?.data as { domains?: { domain: IommuDomain }[] } | null)?.domains;
      domainOfOwner = !!doms?.some((d) => d.domain === g.domain);
    }
    return {
      id: g.id,
      devices: g.devices.map((d) => {
        const drv = this.drivers.driverOf(d);
        return { name: d.name, driver: drv?.name ?? null, dmaApi: !!drv && !drv.driverManagedDma };
      }),
      ownerCnt: g.ownerCnt,
      owner: g.owner === null ? null : vg && g.owner === vg ? "vfio-group" : "other",
      domain,
      domainOfOwner,
      container: c ? this.idOf(c) : null,
      listedBy: this.liveContainers()
        .filter((x) => !!vg && x.groups.includes(vg))
        .map((x) => this.idOf(x)),
      vfioGroupOpen: !!vg?.openedFile,
      containerUsers: vg?.containerUsers ?? 0,
    };
  }

  /** Whether a kvm-vfio entry is coherent under this kernel's profile (kvm/vfio.ts COHERENCY). */
  private entryCoherent(h: object): boolean {
    switch (this.profile.kvmVfio.coherency) {
      case "assume-noncoherent":
        return false;
      case "file":
        return h instanceof File ? this.vfio.fileEnforcedCoherent(h) : true;
      case "vmm":
        return true;
      case "container": {
        const c = (h as { container?: VfioContainer | null }).container;
        if (!c?.driver) return false;
        // vfio_external_check_extension(): type1 answers CHECK_EXTENSION without the task.
        const task = this.tasks[0] as Task;
        return c.driver.ioctl(c.data, task, VFIO_CHECK_EXTENSION, BigInt(VFIO_DMA_CC_IOMMU)) > 0;
      }
    }
  }

  /**
   * Model-specific guest loading (kvm/vcpu.ts): give the vCPU behind `vcpufd` of `sys`'s
   * process a program to run from its next KVM_RUN, on host CPU `cpu` (where the scheduler
   * runs the vCPU thread); the struct kvm_run a VMM would mmap from that fd; what the
   * guest's loads returned. -EBADF / undefined when the fd is not a vCPU.
   */
  /**
   * Model-specific POWER guest hooks (kvm/book3s_hv.ts): the guest behind `vcpufd` will
   * make hypercall `nr` with `args` (r4..) when next run; `run` is its struct kvm_run (what
   * a VMM mmaps from the vCPU fd); `hcalls` what it made so far and where each was handled.
   * -EBADF / undefined when the fd is not a vCPU of a POWER kernel.
   */
  readonly power = {
    hcall: (sys: TaskSyscalls, vcpufd: number, nr: number, args: bigint[]): number => {
      const f = sys.task.files.get(vcpufd);
      const vcpu = f && this.kvm.vcpuOf(f);
      if (!vcpu || !this.powerpc) return -9;
      this.powerpc.kvm.queueHcall(vcpu, nr, args);
      return 0;
    },
    run: (sys: TaskSyscalls, vcpufd: number): PpcKvmRun | undefined => {
      const f = sys.task.files.get(vcpufd);
      const vcpu = f && this.kvm.vcpuOf(f);
      return vcpu && this.powerpc ? this.powerpc.kvm.vcpu(vcpu).run : undefined;
    },
    hcalls: (sys: TaskSyscalls, vcpufd: number): readonly PpcHcallRecord[] | undefined => {
      const f = sys.task.files.get(vcpufd);
      const vcpu = f && this.kvm.vcpuOf(f);
      return vcpu && this.powerpc ? this.powerpc.kvm.vcpu(vcpu).done : undefined;
    },
    /** The PE of a device: number, PHB, EEH state bits, and the PHB's freeze log. */
    pe: (bdf: string) => {
      const dev = this.pci.get(bdf);
      const pe = dev && this.powerpc?.pnv.peOf(dev);
      if (!pe) return undefined;
      const g = this.iommu.groupOf(dev);
      return {
        phb: pe.phb.desc.index,
        pe: pe.number,
        group: g?.id ?? null,
        groupName: g ? (this.powerpc?.pnv.groupName(g) ?? null) : null,
        eehState: pe.eehState,
        tce32Size: pe.tableGroup.tce32Size,
        pgsizes: pe.tableGroup.pgsizes,
      };
    },
  };

  readonly guest = {
    load: (sys: TaskSyscalls, vcpufd: number, program: GuestInsn[], cpu?: number): number => {
      const f = sys.task.files.get(vcpufd);
      const vcpu = f && this.kvm.vcpuOf(f);
      if (!vcpu) return -9;
      const cpuOk = (c: number) => Number.isInteger(c) && c >= 0 && c < this.hw.cpu.count;
      if (program.some((i) => i.op === "preempt" && !cpuOk(i.cpu))) return -22;
      if (cpu !== undefined) {
        if (!cpuOk(cpu)) return -22;
        vcpu.threadCpu = cpu;
      }
      vcpu.load(program);
      return 0;
    },
    run: (sys: TaskSyscalls, vcpufd: number): KvmRun | undefined => {
      const f = sys.task.files.get(vcpufd);
      return f ? this.kvm.vcpuOf(f)?.run : undefined;
    },
    reads: (sys: TaskSyscalls, vcpufd: number): { gpa: number; data: Uint8Array }[] => {
      const f = sys.task.files.get(vcpufd);
      return (f && this.kvm.vcpuOf(f)?.ctx?.reads) ?? [];
    },
    info: (sys: TaskSyscalls, vcpufd: number) => {
      const f = sys.task.files.get(vcpufd);
      const v = f && this.kvm.vcpuOf(f);
      if (!v) return undefined;
      return {
        cpu: v.cpu,
        wbinvdDirtyMask: [...v.arch.wbinvdDirtyMask].sort((a, b) => a - b),
        stats: { ...v.stats, exits: { ...v.stats.exits } },
        memtype: v.memoryType(),
      };
    },
  };

  readonly debug = {
    groups: (): GroupInfo[] =>
      [...this.iommu.groups.values()]
        .sort((a, b) => a.id - b.id)
        .map((g) => ({
          id: g.id,
          unit: g.unit?.name ?? g.name ?? "",
          devices: g.devices.map((d) => d.name),
          edges: g.edges,
        })),
    trace: (name: string): DeviceTrace | undefined => this.iommu.traces.get(name),
    device: (name: string): PciDev | undefined => this.pci.get(name),
    vms: (): KvmVmInfo[] => this.kvm.info(),
    /** Every process spawned and its open files, with what each refers to. */
    processes: (): ProcessInfo[] => processInfo(this.tasks, this.vfio),
    /** VFIO containers and groups that open files lead to. */
    vfio: (): VfioInfo => vfioInfo(this.tasks, this.vfio),
    /** Live kernel objects, for leak checks against the count taken after boot. */
    objects: (): ObjectCounts => {
      let vfioDevicesOpen = 0;
      let vfioGroupsOpen = 0;
      for (const g of this.iommu.groups.values()) {
        const vg = this.vfio.groupOf(g);
        if (!vg) continue;
        if (vg.openedFile) vfioGroupsOpen++;
        for (const d of vg.devices) vfioDevicesOpen += d.openCount;
      }
      return {
        frames: this.pages.inUse,
        files: this.fileCount.live,
        containers: this.liveContainers().length,
        vms: this.kvm.liveVms().length,
        vfioDevicesOpen,
        vfioGroupsOpen,
      };
    },
    /** Every task spawned: its pid, locked pages (mm->locked_vm) and open fds. */
    tasks: (): {
      pid: number;
      lockedVm: number;
      /** RLIMIT_MEMLOCK in pages (what locked_vm is compared with). */
      memlockPages: number;
      fds: number;
      ipcLock: boolean;
    }[] =>
      this.tasks.map((t) => ({
        pid: t.pid,
        lockedVm: t.mm.lockedVm,
        memlockPages: Number(t.rlimitMemlock / BigInt(this.pages.pageSize)),
        fds: t.files.size,
        ipcLock: t.capable("CAP_IPC_LOCK"),
      })),
    /** DMA ownership of every IOMMU group, with VFIO's view of it. */
    ownership: (): GroupOwnership[] =>
      [...this.iommu.groups.values()].sort((a, b) => a.id - b.id).map((g) => this.ownership(g)),
    /** Live VFIO containers: debug id, the IOMMU groups in each, the backend set. */
    containers: (): { id: number; groups: number[]; backend: string | null }[] =>
      this.liveContainers().map((c) => ({
        id: this.idOf(c),
        groups: c.groups.map((g) => g.iommuGroupOrNull?.id ?? -1),
        backend: c.driver?.name ?? null,
      })),
    /**
     * Where DMA from device `bdf` to `iova` may land, by the domain its group is attached
     * to now (iommu_iova_to_phys): what the IOMMU must enforce.
     */
    dmaTarget: (bdf: string, iova: bigint): DmaTarget | null => {
      const dev = this.pci.get(bdf);
      if (!dev) return null;
      const g = this.iommu.groupOf(dev);
      // vfio's no-IOMMU group has no unit: its DMA is untranslated by design.
      if (g && !g.unit) return { group: null, domain: "none", phys: null };
      const d = g?.domain;
      if (!g || !d) return { group: g?.id ?? null, domain: "none", phys: null };
      if (d.type === IOMMU_DOMAIN_IDENTITY) return { group: g.id, domain: "identity", phys: iova };
      if (d.type === IOMMU_DOMAIN_BLOCKED) return { group: g.id, domain: "blocked", phys: null };
      const page = iova & ~0xfffn;
      const pa = iommuIovaToPhys(d, page);
      return { group: g.id, domain: "paging", phys: pa ? pa + (iova - page) : null };
    },
    /** Per VM, kvm-vfio's noncoherent registration and its entries' verdicts now. */
    kvmCoherency: (): KvmCoherency[] =>
      this.kvm.liveVms().map((kvm) => ({
        id: this.idOf(kvm),
        vm: kvm.name,
        profile: this.profile.name,
        registered: kvm.arch.noncoherentDmaCount,
        archNoncoherentDma: this.powerpc === null,
        allowed: this.kvm.incoherentDmaAllowed(kvm),
        devices: kvm.devices
          .filter((d) => d.ops.name === "kvm-vfio")
          .map((d) => {
            const kv = d.priv as { entries: object[]; noncoherent: boolean };
            return {
              noncoherent: kv.noncoherent,
              entries: kv.entries.map((h) => ({
                coherent: this.entryCoherent(h),
                key: this.idOf(h),
              })),
            };
          }),
      })),
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
