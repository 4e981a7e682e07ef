/**
 * IOMMU groups, drivers/iommu/iommu.c (Linux 6.12): devices are probed in bus order
 * (bus_iommu_probe → bus_for_each_dev), a device outside every unit's scope gets no group,
 * and a PCI device's group comes from pci_device_group(): the DMA alias walk
 * (get_pci_alias_or_group), the climb to the topmost bridge failing REQ_ACS_FLAGS, then
 * same-bus DMA aliases (get_pci_alias_group) and non-isolated functions of the same slot
 * (get_pci_function_alias_group), else a new group. Group numbers come from an IDA: the
 * lowest free number at allocation. Groups are never merged afterwards.
 *
 * Every decision is kept as a GroupEdge, so the reason a group is what it is can be shown.
 * A group also carries its unit's driver and the domains its devices are attached to
 * (default, blocking while a user owns its DMA, or the user's); domain.ts switches them.
 * The sysfs `type` store (iommu_group_store_type) replaces the default domain of a group
 * nothing owns.
 */
import type { IommuUnitDesc } from "../../machine/hw.js";
import { err } from "../../uapi/errno.js";
import { pciAcsEnabled, pciAcsPathEnabled, REQ_ACS_FLAGS, type AcsVerdict } from "../pci/acs.js";
import { pcieTypeName, type PciDev } from "../pci/pci.js";
import type { QuirkContext } from "../pci/quirks.js";
import {
  pciDevsAreDmaAliases,
  pciForEachDmaAlias,
  pciRealDmaDev,
  type AliasStep,
} from "../pci/search.js";
import {
  groupAddDevice,
  groupSetupDefaultDomain,
  IOMMU_DOMAIN_DMA,
  IOMMU_DOMAIN_DMA_FQ,
  IOMMU_DOMAIN_IDENTITY,
  releaseDmaOwnership,
  takeDmaOwnership,
  type IommuDomain,
  type IommuOps,
} from "./domain.js";

export type ReasonCode =
  | "ISOLATED"
  | "BEHIND_PCI_BRIDGE"
  | "DMA_ALIAS"
  | "REAL_DMA_DEV"
  | "ACS_PATH"
  | "ACS_OK"
  | "MF_SIBLINGS"
  | "MF_ISOLATED"
  | "MF_ALONE"
  | "ACS_BY_QUIRK"
  | "NO_GROUP"
  | "UNKNOWN_CAPS"
  | "PARTITIONABLE_ENDPOINT"
  | "VFIO_NOIOMMU";

export interface GroupEdge {
  code: ReasonCode;
  /** The device the fact is about. */
  dev: string;
  /** The other end: bridge, alias, sibling. */
  other?: string;
  text: string;
  verdicts?: AcsVerdict[];
}

export class IommuGroup {
  readonly devices: PciDev[] = [];
  /** How each member came to be here: the founder's edge first, then each joiner's. */
  readonly edges: GroupEdge[] = [];
  /**
   * DMA ownership (iommu.c, since 5.19): kernel drivers using the default domain each count
   * once; a user owner (VFIO, iommufd) claims it whole and is recorded in `owner`.
   */
  ownerCnt = 0;
  owner: unknown = null;
  /** The domain the devices are attached to, the default one, the one user ownership uses. */
  domain: IommuDomain | null = null;
  defaultDomain: IommuDomain | null = null;
  blockingDomain: IommuDomain | null = null;
  /** iommu_group_set_name(): the sysfs `name` attribute, when a creator gives one. */
  name: string | null = null;
  constructor(
    readonly id: number,
    /** Null for a group no IOMMU stands behind (VFIO's no-IOMMU groups). */
    readonly unit: IommuUnitDesc | null,
    /** The unit's driver (dev_iommu_ops); null for a unit no modelled driver handles. */
    readonly ops: IommuOps | null,
  ) {}

  /** iommu_group_dma_owner_claimed() */
  get dmaOwnerClaimed(): boolean {
    return this.ownerCnt !== 0;
  }
}

export interface DeviceTrace {
  dev: string;
  group: number | null;
  /** Every fact examined, in the order the kernel examined it. */
  steps: GroupEdge[];
  /** The edge that decided: the one that found the group joined, or the founding one. */
  decided: GroupEdge;
  /** This device was the group's first member (iommu_group_alloc). */
  founded: boolean;
}

export class IommuSubsystem {
  readonly groups = new Map<number, IommuGroup>();
  private readonly groupOfDev = new Map<PciDev, IommuGroup>();
  readonly traces = new Map<string, DeviceTrace>();
  private nextId = 0;
  private readonly freedIds: number[] = [];

  constructor(
    private readonly units: IommuUnitDesc[],
    private readonly quirks: QuirkContext,
    /** Each unit's driver, and the default domain type from the command line. */
    private readonly drivers: {
      ops(unit: IommuUnitDesc): IommuOps | null;
      defaultType: number;
      /**
       * A driver with its own device_group (POWER's spapr_tce_iommu_ops: the device's PE);
       * undefined: the PCI rules below. `alloc` is iommu_group_alloc().
       */
      deviceGroup?(
        unit: IommuUnitDesc,
        dev: PciDev,
        alloc: (unit: IommuUnitDesc) => IommuGroup,
      ): IommuGroup | null | undefined;
    },
  ) {}

  groupOf(dev: PciDev): IommuGroup | undefined {
    return this.groupOfDev.get(dev);
  }

  /** The unit whose DMAR/IVRS scope covers dev (VFs by their PF, VMD children by the VMD). */
  unitFor(dev: PciDev): IommuUnitDesc | undefined {
    const real = pciRealDmaDev(dev.isVirtfn && dev.physfn ? dev.physfn : dev);
    const d = real.isVirtfn && real.physfn ? real.physfn : real;
    return this.units.find(
      (u) =>
        u.segment === d.bus.domain &&
        (u.scope.all ? !u.scope.exclude.includes(d.name) : u.scope.devices.includes(d.name)),
    );
  }

  /** __iommu_probe_device() for one PCI device. */
  probeDevice(dev: PciDev): void {
    if (this.groupOfDev.has(dev)) return;
    const unit = this.unitFor(dev);
    if (!unit) {
      const edge: GroupEdge = {
        code: "NO_GROUP",
        dev: dev.name,
        text: "not translated by any IOMMU unit (outside its DMAR/IVRS scope): no group",
      };
      this.traces.set(dev.name, {
        dev: dev.name,
        group: null,
        steps: [edge],
        decided: edge,
        founded: false,
      });
      return;
    }
    const own = this.drivers.deviceGroup?.(unit, dev, (u) => this.allocGroup(u));
    if (own !== undefined) {
      const edge: GroupEdge = own
        ? {
            code: "PARTITIONABLE_ENDPOINT",
            dev: dev.name,
            text: "its group is its partitionable endpoint's (the PHB routes its requester ID to that PE)",
          }
        : { code: "NO_GROUP", dev: dev.name, text: "no partitionable endpoint: no group" };
      this.traces.set(dev.name, {
        dev: dev.name,
        group: own?.id ?? null,
        steps: [edge],
        decided: edge,
        founded: !!own && own.devices.length === 0,
      });
      if (!own) return;
      own.devices.push(dev);
      own.edges.push(edge);
      this.groupOfDev.set(dev, own);
      groupAddDevice(own, dev, this.drivers.defaultType);
      return;
    }
    const steps: GroupEdge[] = [];
    const found = this.pciDeviceGroup(dev, steps);
    let group = found?.group;
    let decided: GroupEdge;
    if (group && found) {
      decided = found.edge;
    } else {
      group = new IommuGroup(this.allocId(), unit, this.drivers.ops(unit));
      this.groups.set(group.id, group);
      decided = founding(dev, steps);
    }
    group.devices.push(dev);
    group.edges.push(decided);
    this.groupOfDev.set(dev, group);
    groupAddDevice(group, dev, this.drivers.defaultType);
    this.traces.set(dev.name, { dev: dev.name, group: group.id, steps, decided, founded: !found });
  }

  /** iommu_group_alloc(): a new, empty group with the lowest free number. */
  allocGroup(unit: IommuUnitDesc): IommuGroup {
    const g = new IommuGroup(this.allocId(), unit, this.drivers.ops(unit));
    this.groups.set(g.id, g);
    return g;
  }

  /**
   * iommu_group_alloc() + iommu_group_set_name() + iommu_group_add_device() for a device
   * no IOMMU covers (VFIO's no-IOMMU mode): a group from the same IDA, with no unit, no
   * driver and no domain.
   */
  addDeviceToNewGroup(dev: PciDev, name: string): IommuGroup {
    const g = new IommuGroup(this.allocId(), null, null);
    g.name = name;
    g.devices.push(dev);
    g.edges.push({
      code: "VFIO_NOIOMMU",
      dev: dev.name,
      text: `${name}: no IOMMU, a group of its own`,
    });
    this.groups.set(g.id, g);
    this.groupOfDev.set(dev, g);
    return g;
  }

  /** Removal (hot-unplug, VF disable): the group dies with its last device, freeing its id. */
  removeDevice(dev: PciDev): void {
    const g = this.groupOfDev.get(dev);
    if (!g) return;
    const i = g.devices.indexOf(dev);
    g.devices.splice(i, 1);
    g.edges.splice(i, 1);
    this.groupOfDev.delete(dev);
    this.traces.delete(dev.name);
    if (g.devices.length === 0) {
      this.groups.delete(g.id);
      this.freedIds.push(g.id);
    }
  }

  /**
   * device_iommu_capable(dev, IOMMU_CAP_ENFORCE_CACHE_COHERENCY), asked of the unit's driver:
   * VT-d's ECAP.SC (intel_iommu_capable), always on AMD-Vi (amd_iommu_capable); never
   * without a modelled driver (virtio-iommu).
   */
  enforceCacheCoherencyCapable(dev: PciDev): boolean {
    return this.groupOf(dev)?.ops?.capable(dev, "enforce-cache-coherency") ?? false;
  }

  /**
   * iommu_group_store_type(): "identity", "DMA", "DMA-FQ" or "auto" (sysfs_streq). DMA to
   * DMA-FQ keeps the domain; any other change needs a group no driver or user owns (EPERM).
   */
  storeDefaultType(g: IommuGroup, text: string): number {
    if (!g.defaultDomain) return err("EINVAL");
    const t = text.endsWith("\n") ? text.slice(0, -1) : text;
    const types: Record<string, number> = {
      identity: IOMMU_DOMAIN_IDENTITY,
      DMA: IOMMU_DOMAIN_DMA,
      "DMA-FQ": IOMMU_DOMAIN_DMA_FQ,
      auto: 0,
    };
    const req = Object.hasOwn(types, t) ? types[t] : undefined;
    if (req === undefined) return err("EINVAL");
    if (req === IOMMU_DOMAIN_DMA_FQ && g.defaultDomain.type === IOMMU_DOMAIN_DMA) {
      g.defaultDomain.type = IOMMU_DOMAIN_DMA_FQ;
      return 0;
    }
    if (!g.devices.length || g.ownerCnt) return err("EPERM");
    return groupSetupDefaultDomain(g, req, this.drivers.defaultType);
  }

  /** iommu_device_use_default_domain(): a DMA-API driver is about to probe dev. */
  useDefaultDomain(dev: PciDev): number {
    const g = this.groupOfDev.get(dev);
    if (!g) return 0;
    if (g.ownerCnt && (g.domain !== g.defaultDomain || g.owner !== null)) return err("EBUSY");
    g.ownerCnt++;
    return 0;
  }

  /** iommu_device_unuse_default_domain() */
  unuseDefaultDomain(dev: PciDev): void {
    const g = this.groupOfDev.get(dev);
    if (g && g.ownerCnt && g.owner === null) g.ownerCnt--;
  }

  /**
   * iommu_group_claim_dma_owner(): EPERM while any kernel driver uses the group; the group
   * moves to its blocking domain.
   */
  claimDmaOwner(g: IommuGroup, owner: unknown): number {
    if (g.ownerCnt) return err("EPERM");
    const r = takeDmaOwnership(g);
    if (r) return r;
    g.owner = owner;
    g.ownerCnt++;
    return 0;
  }

  /** iommu_group_release_dma_owner(): back to the default domain. */
  releaseDmaOwner(g: IommuGroup): void {
    if (g.owner === null) return;
    g.owner = null;
    g.ownerCnt = 0;
    releaseDmaOwnership(g);
  }

  /**
   * iommu_device_claim_dma_owner(): like the group claim, but devices of one group may
   * share the ownership when they present the same owner (iommufd binds device by device).
   */
  static deviceClaimDmaOwner(g: IommuGroup, owner: unknown): number {
    if (g.ownerCnt) {
      if (g.owner !== owner) return err("EPERM");
      g.ownerCnt++;
      return 0;
    }
    const r = takeDmaOwnership(g);
    if (r) return r;
    g.owner = owner;
    g.ownerCnt++;
    return 0;
  }

  /** iommu_device_release_dma_owner(): the last device out gives the group back. */
  static deviceReleaseDmaOwner(g: IommuGroup): void {
    if (g.ownerCnt > 1) {
      g.ownerCnt--;
      return;
    }
    if (!g.ownerCnt || g.owner === null) return;
    g.owner = null;
    g.ownerCnt = 0;
    releaseDmaOwnership(g);
  }

  /** ida_alloc(): the lowest free id — a freed one if any, else the next never used. */
  private allocId(): number {
    if (this.freedIds.length) {
      const min = Math.min(...this.freedIds);
      this.freedIds.splice(this.freedIds.indexOf(min), 1);
      return min;
    }
    return this.nextId++;
  }

  private acs(dev: PciDev): AcsVerdict {
    return pciAcsEnabled(dev, REQ_ACS_FLAGS, this.quirks);
  }

  /** pci_device_group(); null means "allocate a new group". */
  private pciDeviceGroup(
    dev: PciDev,
    steps: GroupEdge[],
  ): { group: IommuGroup; edge: GroupEdge } | null {
    // 1. The DMA alias walk: stop at the first reported device that already has a group.
    let pdev = dev;
    let hit: { group: IommuGroup; edge: GroupEdge } | null = null;
    pciForEachDmaAlias(dev, (s) => {
      pdev = s.dev;
      const edge = aliasEdge(dev, s);
      if (edge) steps.push(edge);
      const g = this.groupOfDev.get(s.dev);
      if (g)
        hit = {
          group: g,
          edge: edge ?? joinEdge(dev, s.dev, "ISOLATED", "alias root already grouped"),
        };
      return !!g;
    });
    if (hit) return hit;

    // 2. Climb while the path above is not ACS-isolated.
    for (let bus = pdev.bus; !bus.isRoot; bus = bus.parent as typeof bus) {
      const self = bus.self;
      if (!self) continue;
      const path = pciAcsPathEnabled(self, REQ_ACS_FLAGS, this.quirks);
      if (path.enabled) {
        steps.push({
          code: "ACS_OK",
          dev: dev.name,
          other: self.name,
          text: `every bridge from ${short(self)} up to the root bus enforces ACS isolation`,
          verdicts: path.checked,
        });
        break;
      }
      const failing = path.checked[path.checked.length - 1] as AcsVerdict;
      pdev = self;
      const edge: GroupEdge = {
        code: "ACS_PATH",
        dev: dev.name,
        other: self.name,
        text:
          failing.dev === self.name
            ? `${describe(self)} does not isolate what is below it: ${failing.text}`
            : `${describe(self)} sits below ${short(failing.dev)}, which does not isolate: ${failing.text}`,
        verdicts: path.checked,
      };
      steps.push(edge);
      const g = this.groupOfDev.get(self);
      if (g) return { group: g, edge };
    }

    // 3-4. Same-bus aliases and non-isolated sibling functions of the anchor.
    const devfns = new Set<number>();
    return (
      this.aliasGroup(dev, pdev, devfns, steps) ?? this.functionAliasGroup(dev, pdev, devfns, steps)
    );
  }

  /** get_pci_alias_group() */
  private aliasGroup(
    dev: PciDev,
    pdev: PciDev,
    devfns: Set<number>,
    steps: GroupEdge[],
  ): { group: IommuGroup; edge: GroupEdge } | null {
    if (devfns.has(pdev.devfn)) return null;
    devfns.add(pdev.devfn);
    const g = this.groupOfDev.get(pdev);
    if (g)
      return {
        group: g,
        edge: steps[steps.length - 1] ?? joinEdge(dev, pdev, "ISOLATED", "already grouped"),
      };
    // for_each_pci_dev() filtered to pdev's bus: the bus's own list, in the same order.
    for (const tmp of pdev.bus.devices) {
      if (tmp === pdev) continue;
      if (!pciDevsAreDmaAliases(pdev, tmp)) continue;
      steps.push({
        code: "DMA_ALIAS",
        dev: dev.name,
        other: tmp.name,
        text: `${short(pdev)} and ${short(tmp)} are DMA aliases of each other (one uses the other's requester ID)`,
      });
      const r =
        this.aliasGroup(dev, tmp, devfns, steps) ??
        this.functionAliasGroup(dev, tmp, devfns, steps);
      if (r) return r;
    }
    return null;
  }

  /** get_pci_function_alias_group() */
  private functionAliasGroup(
    dev: PciDev,
    pdev: PciDev,
    devfns: Set<number>,
    steps: GroupEdge[],
  ): { group: IommuGroup; edge: GroupEdge } | null {
    if (!pdev.multifunction) return null;
    const own = this.acs(pdev);
    if (own.enabled) {
      steps.push({
        code: own.basis === "quirk" ? "ACS_BY_QUIRK" : "MF_ISOLATED",
        dev: dev.name,
        other: pdev.name,
        text: `multifunction ${short(pdev)} is isolated from its sibling functions: ${own.text}`,
        verdicts: [own],
      });
      return null;
    }
    const isolating: AcsVerdict[] = [];
    for (const tmp of pdev.bus.devices) {
      if (tmp === pdev || tmp.slot !== pdev.slot) continue;
      const other = this.acs(tmp);
      if (other.enabled) {
        isolating.push(other);
        continue;
      }
      const edge: GroupEdge = {
        code: "MF_SIBLINGS",
        dev: dev.name,
        other: tmp.name,
        text: `${short(pdev)} and ${short(tmp)} are functions of one multifunction device without ACS between them (${short(pdev)}: ${own.text}; ${short(tmp)}: ${other.text})`,
        verdicts: [own, other],
      };
      steps.push(edge);
      const r = this.aliasGroup(dev, tmp, devfns, steps);
      if (r) return { group: r.group, edge };
    }
    if (isolating.length && !steps.some((s) => s.code === "MF_SIBLINGS")) {
      // Only pairs that both fail ACS are grouped: a non-isolated function whose siblings
      // all isolate themselves stays alone (one of the defects the 2025 rework targets).
      steps.push({
        code: "MF_ALONE",
        dev: dev.name,
        other: pdev.name,
        text: `multifunction ${short(pdev)} lacks ACS isolation (${own.text}), but its sibling functions enforce it, and the kernel groups only functions that both lack it`,
        verdicts: [own, ...isolating],
      });
    }
    return null;
  }
}

function short(d: PciDev | string): string {
  const n = typeof d === "string" ? d : d.name;
  return n.startsWith("0000:") ? n.slice(5) : n;
}

function describe(d: PciDev): string {
  return `${short(d)} (${d.isPcie() ? pcieTypeName(d.pcieType()) : "PCI bridge"})`;
}

function joinEdge(dev: PciDev, other: PciDev, code: ReasonCode, text: string): GroupEdge {
  return { code, dev: dev.name, other: other.name, text };
}

function aliasEdge(dev: PciDev, s: AliasStep): GroupEdge | null {
  switch (s.kind) {
    case "self":
      return null;
    case "vmd":
      return {
        code: "REAL_DMA_DEV",
        dev: dev.name,
        other: s.dev.name,
        text: `below Intel VMD ${short(s.dev)}: its DMA carries the VMD endpoint's requester ID`,
      };
    case "dma-alias":
      return {
        code: "DMA_ALIAS",
        dev: dev.name,
        other: s.dev.name,
        text: `${short(s.dev)} also issues DMA as devfn ${hexDevfn(s.rid & 0xff)} (kernel DMA-alias quirk)`,
      };
    case "pcie-to-pci-bridge":
    case "pcie-bridge-alias":
      return {
        code: "BEHIND_PCI_BRIDGE",
        dev: dev.name,
        other: s.dev.name,
        text: `behind PCIe-to-PCI bridge ${short(s.dev)}: DMA from its conventional side carries the bridge's requester ID (${hexRid(s.rid)})`,
      };
    case "pci-to-pcie-bridge":
    case "pci-bridge":
      return {
        code: "BEHIND_PCI_BRIDGE",
        dev: dev.name,
        other: s.dev.name,
        text: `behind ${s.kind === "pci-bridge" ? "conventional PCI bridge" : "PCI/PCI-X-to-PCIe bridge"} ${short(s.dev)}, which takes ownership of its DMA (${hexRid(s.rid)})`,
      };
  }
}

function founding(dev: PciDev, steps: GroupEdge[]): GroupEdge {
  const last = [...steps]
    .reverse()
    .find((s) => s.code !== "ACS_OK" && s.code !== "MF_ISOLATED" && s.code !== "ACS_BY_QUIRK");
  if (last) return last;
  const unknown = steps.some((s) => s.verdicts?.some((v) => v.unknown));
  const viaQuirk = steps.find(
    (s) => s.code === "ACS_BY_QUIRK" || s.verdicts?.some((v) => v.basis === "quirk" && v.enabled),
  );
  return {
    code: unknown ? "UNKNOWN_CAPS" : viaQuirk ? "ACS_BY_QUIRK" : "ISOLATED",
    dev: dev.name,
    text: unknown
      ? "isolated as far as the captured config space shows (capabilities were not readable)"
      : viaQuirk
        ? `isolated thanks to a kernel ACS quirk: ${viaQuirk.verdicts?.find((v) => v.basis === "quirk")?.text ?? viaQuirk.text}`
        : "isolated: ACS enforced on every bridge up to the root bus, no alias or sibling shares its DMA",
  };
}

function hexDevfn(devfn: number): string {
  return `${(devfn >> 3).toString(16).padStart(2, "0")}.${devfn & 7}`;
}

function hexRid(rid: number): string {
  return `requester ID ${(rid >> 8).toString(16).padStart(2, "0")}:${hexDevfn(rid & 0xff)}`;
}
