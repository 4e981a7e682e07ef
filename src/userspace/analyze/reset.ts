/**
 * Which reset methods Linux 6.12 finds for a function, derived from configuration-space
 * facts when the kernel's own answer (sysfs `reset_method`) is not available: the probe
 * order and conditions of drivers/pci/pci.c pci_init_reset_methods() over
 * pci_reset_fn_methods[] — device_specific (quirks.c pci_dev_reset_methods[]), acpi (_RST,
 * invisible offline), flr (DevCap FLR, no PCI_DEV_FLAGS_NO_FLR_RESET), af_flr (AF TP and
 * FLR), pm (PM capability, No_Soft_Reset clear, no PCI_DEV_FLAGS_NO_PM_RESET), bus
 * (pci_parent_bus_reset: not on a root bus, a bridge above, and no other device on the bus
 * *yet* — the methods are probed from pci_device_add() before the function joins the bus
 * list and before a bridge gets its subordinate bus, so the first function of a
 * multifunction device, and a bridge, may list "bus"), cxl_bus (CXL port DVSEC above).
 * The reset quirk tables are quirks.c's, entry for entry.
 */
import type { ConfigFacts } from "./config.js";

export const RESET_METHOD_ORDER = [
  "device_specific",
  "acpi",
  "flr",
  "af_flr",
  "pm",
  "bus",
  "cxl_bus",
] as const;

export interface ResetContext {
  bdf: string;
  facts: ConfigFacts;
  /** The bridge leading to the function's bus; null on a root bus (or an SR-IOV virtual bus). */
  parentBridge: string | null;
  /** Functions added to the same bus before this one (lower devfn). */
  earlierOnBus: string[];
  /** Whether the parent bridge carries a CXL port DVSEC. */
  parentCxl?: boolean;
}

export interface DerivedReset {
  methods: string[];
  /** One line per method examined: why it is or is not available. */
  why: string[];
  /** Facts a real kernel could use but an offline derivation cannot see. */
  unknowable: string[];
}

const INTEL = 0x8086;
const PCI_CLASS_STORAGE_EXPRESS = 0x010802;

/** quirks.c pci_dev_reset_methods[]: which entries' probes succeed without touching MMIO. */
function deviceSpecific(f: ConfigFacts, flr: boolean): string | null {
  const v = f.vendor;
  const d = f.device;
  if (v === INTEL && d === 0x10ed) return "Intel 82599 SFP VF: reset_intel_82599_sfp_virtfn";
  if (v === INTEL && (d === 0x0156 || d === 0x0166)) return "Ivy Bridge mobile IGD: reset_ivb_igd";
  if (v === 0x144d && d === 0xa804)
    return f.class === PCI_CLASS_STORAGE_EXPRESS && flr
      ? "Samsung NVMe: nvme_disable_and_flr"
      : null;
  if ((v === INTEL && (d === 0x0953 || d === 0x0a54)) || (v === 0x025e && d === 0xf1ac))
    return flr ? "delay_250ms_after_flr" : null;
  if (v === 0x1425) return (d & 0xf000) === 0x4000 ? "Chelsio T4: reset_chelsio_generic_dev" : null;
  if (v === 0x19e5 && d === 0x375e) return "Huawei HiNIC VF: reset_hinic_vf_dev";
  return null;
}

/** quirk_no_flr (DECLARE_PCI_FIXUP_EARLY entries). */
function noFlr(f: ConfigFacts): boolean {
  const id = (f.vendor << 16) | f.device;
  const ids = [0x10221487, 0x1022148c, 0x1022149c, 0x10227901, 0x80861502, 0x80861503, 0x14c30616];
  if (ids.includes(id >>> 0)) return true;
  return f.vendor === 0xd063 && f.device === 0x1000 && f.revision === 0x1;
}

/** quirk_no_pm_reset: ATI VGA not on a root bus; Mellanox Spectrum switches. */
function noPm(f: ConfigFacts, rootBus: boolean): boolean {
  if (rootBus) return false;
  if (f.vendor === 0x1002 && f.class >> 8 === 0x0300) return true;
  return f.vendor === 0x15b3 && [0xcb84, 0xcf6c, 0xcf70, 0xcf80].includes(f.device);
}

/** quirk_no_bus_reset and quirk_nvidia_no_bus_reset. */
function noBus(f: ConfigFacts): boolean {
  if (f.vendor === 0x10de) return (f.device & 0xffc0) === 0x2340;
  if (f.vendor === 0x168c)
    return [0x0030, 0x0032, 0x003c, 0x0033, 0x0034, 0x003e].includes(f.device);
  if (f.vendor === 0x177d) return f.device === 0xa100;
  if (f.vendor === 0x104c) return f.device === 0xb005;
  return false;
}

export function deriveResetMethods(c: ResetContext): DerivedReset {
  const f = c.facts;
  const methods: string[] = [];
  const why: string[] = [];
  const rootBus = c.parentBridge === null;
  const flr = !!f.flrCapable && !noFlr(f);
  const ds = deviceSpecific(f, flr);
  if (ds) {
    methods.push("device_specific");
    why.push(`device_specific: ${ds} (quirks.c)`);
  }
  // acpi: an ACPI _RST method — firmware, not config space.
  if (f.flrCapable) {
    if (noFlr(f)) why.push("flr: the device advertises FLR but a kernel quirk forbids it (hangs)");
    else {
      methods.push("flr");
      why.push("flr: Function Level Reset advertised in Device Capabilities");
    }
  } else why.push("flr: no FLR in Device Capabilities");
  if (f.afCap !== undefined) {
    if (f.afTp && f.afFlr && !noFlr(f)) {
      methods.push("af_flr");
      why.push("af_flr: Advanced Features capability with Transactions Pending and FLR");
    } else why.push("af_flr: Advanced Features capability without both TP and FLR");
  }
  if (f.pmCap === undefined) why.push("pm: no Power Management capability");
  else if (f.noSoftReset) why.push("pm: No_Soft_Reset is set (D3hot→D0 does not reset)");
  else if (noPm(f, rootBus))
    why.push("pm: a kernel quirk says D3hot→D0 does not really reset this device");
  else {
    methods.push("pm");
    why.push("pm: D3hot→D0 transition resets the function (No_Soft_Reset clear)");
  }
  if (rootBus) why.push("bus: on a root bus (no bridge above to reset)");
  else if (noBus(f)) why.push("bus: a kernel quirk forbids secondary bus reset for this device");
  else if (c.parentCxl) {
    methods.push("bus");
    why.push("bus: below a CXL port (listed; fails if the port masks SBR)");
  } else if (c.earlierOnBus.length > 0)
    why.push(
      `bus: ${c.earlierOnBus.map(short).join(", ")} already on the bus when the kernel probed it`,
    );
  else {
    methods.push("bus");
    why.push(`bus: secondary bus reset of ${short(c.parentBridge as string)}`);
  }
  if (c.parentCxl) {
    methods.push("cxl_bus");
    why.push("cxl_bus: the bridge above has a CXL port DVSEC");
  }
  return {
    methods,
    why,
    unknowable: ["acpi (a firmware _RST method) cannot be seen in config space"],
  };
}

export function short(bdf: string): string {
  return bdf.startsWith("0000:") ? bdf.slice(5) : bdf;
}
