/**
 * The PCI quirks that change IOMMU grouping and reset probing, as Linux 6.12
 * drivers/pci/quirks.c has them: pci_dev_acs_enabled[] (pci_dev_specific_acs_enabled),
 * pci_dev_acs_ops[] (pci_dev_specific_enable_acs / _disable_acs_redir), pci_dev_reset_methods[]
 * (pci_dev_specific_reset), every pci_add_dma_alias() user and the fixups that set the
 * PCIE_BRIDGE_ALIAS, BRIDGE_XLATE_ROOT, NO_FLR_RESET, NO_PM_RESET and NO_BUS_RESET dev_flags.
 * pci_add_dma_alias() and pcie_reset_flr()'s probe follow drivers/pci/pci.c (6.12). Tables keep
 * the kernel's order, which decides the answer when several entries match.
 *
 * The tables are those of Linux 6.12.117, the kernel the oracle runs. Entries marked "6.12.y"
 * are stable backports absent from v6.12.0 (present by 6.12.16); "6.12.117" marks those
 * that arrived after 6.12.19.
 * The out-of-tree `pcie_acs_override=` option follows archlinux/aur add-acs-overrides.patch.
 */
import {
  PCI_ACS_CAP,
  PCI_ACS_CR,
  PCI_ACS_DT,
  PCI_ACS_EC,
  PCI_ACS_RR,
  PCI_ACS_SV,
  PCI_ACS_TB,
  PCI_ACS_UF,
  PCI_BASE_ADDRESS_0,
  PCI_BASE_ADDRESS_IO_MASK,
  PCI_BASE_ADDRESS_MEM_MASK,
  PCI_BASE_ADDRESS_MEM_TYPE_64,
  PCI_BASE_ADDRESS_MEM_TYPE_MASK,
  PCI_BASE_ADDRESS_SPACE_IO,
  PCI_CLASS_BRIDGE_OTHER,
  PCI_CLASS_DISPLAY_VGA,
  PCI_CLASS_STORAGE_EXPRESS,
  PCI_DEVFN,
  PCI_EXP_DEVCAP,
  PCI_EXP_DEVCAP_FLR,
  PCI_EXP_TYPE_DOWNSTREAM,
  PCI_EXP_TYPE_ENDPOINT,
  PCI_EXP_TYPE_LEG_END,
  PCI_EXP_TYPE_PCI_BRIDGE,
  PCI_EXP_TYPE_RC_END,
  PCI_EXP_TYPE_ROOT_PORT,
  PCI_EXP_TYPE_UPSTREAM,
  PCI_FUNC,
  PCI_HEADER_TYPE_BRIDGE,
  PCI_HEADER_TYPE_MASK,
  PCI_SLOT,
} from "../../uapi/pci_regs.js";
import type { PciDev } from "./pci.js";

/* include/linux/pci_ids.h; the ones quirks.c writes as literals are named here. */
export const PCI_ANY_ID = 0xffff;
export const PCI_VENDOR_ID_LOONGSON = 0x0014;
export const PCI_VENDOR_ID_SOLIDIGM = 0x025e;
export const PCI_VENDOR_ID_ATI = 0x1002;
export const PCI_VENDOR_ID_AMD = 0x1022;
export const PCI_VENDOR_ID_TI = 0x104c;
export const PCI_VENDOR_ID_EFAR = 0x1055;
export const PCI_VENDOR_ID_PLX = 0x10b5;
export const PCI_VENDOR_ID_NVIDIA = 0x10de;
export const PCI_VENDOR_ID_EMULEX = 0x10df;
export const PCI_VENDOR_ID_TUNDRA = 0x10e3;
export const PCI_VENDOR_ID_AMCC = 0x10e8;
export const PCI_VENDOR_ID_TTI = 0x1103;
export const PCI_VENDOR_ID_RICOH = 0x1180;
export const PCI_VENDOR_ID_MICROSEMI = 0x11f8;
export const PCI_VENDOR_ID_ITE = 0x1283;
export const PCI_VENDOR_ID_CHELSIO = 0x1425;
export const PCI_VENDOR_ID_SAMSUNG = 0x144d;
export const PCI_VENDOR_ID_MEDIATEK = 0x14c3;
export const PCI_VENDOR_ID_BROADCOM = 0x14e4;
export const PCI_VENDOR_ID_MELLANOX = 0x15b3;
export const PCI_VENDOR_ID_ATHEROS = 0x168c;
export const PCI_VENDOR_ID_CAVIUM = 0x177d;
export const PCI_VENDOR_ID_QCOM = 0x17cb;
export const PCI_VENDOR_ID_SOLARFLARE = 0x1924;
export const PCI_VENDOR_ID_NXP = 0x1957;
export const PCI_VENDOR_ID_JMICRON = 0x197b;
export const PCI_VENDOR_ID_SERVERENGINES = 0x19a2;
export const PCI_VENDOR_ID_HUAWEI = 0x19e5;
export const PCI_VENDOR_ID_ASMEDIA = 0x1b21;
export const PCI_VENDOR_ID_MARVELL_EXT = 0x1b4b;
export const PCI_VENDOR_ID_LITEON = 0x1c28;
export const PCI_VENDOR_ID_AMAZON_ANNAPURNA_LABS = 0x1c36;
export const PCI_VENDOR_ID_ZHAOXIN = 0x1d17;
export const PCI_VENDOR_ID_HXT = 0x1dbf;
export const PCI_VENDOR_ID_AMPERE = 0x1def;
export const PCI_VENDOR_ID_GLENFLY = 0x6766;
export const PCI_VENDOR_ID_INTEL = 0x8086;
export const PCI_VENDOR_ID_WANGXUN = 0x8088;
export const PCI_VENDOR_ID_ADAPTEC2 = 0x9005;
export const PCI_VENDOR_ID_SOLIDRUN = 0xd063;

/* ---------------------------------------------------------------------------------------- */
/* Boot-time context                                                                        */
/* ---------------------------------------------------------------------------------------- */

/** What the quirks need to know about the running system beyond config space. */
export interface QuirkContext {
  /** ACPI has an IVRS table (an AMD IOMMU is described): pci_quirk_amd_sb_acs answers. */
  hasIvrs: boolean;
  /** `pcie_acs_override=` on a kernel carrying add-acs-overrides.patch; null otherwise. */
  acsOverride: AcsOverride | null;
}

/** The parsed `pcie_acs_override=` option (acs_on_downstream, acs_on_multifunction, acs_on_ids). */
export interface AcsOverride {
  downstream: boolean;
  multifunction: boolean;
  ids: { vendor: number; device: number }[];
}

/** NUM_ACS_IDS: 16 slots, of which the patch's bounds check lets 15 be filled. */
const NUM_ACS_IDS = 16;

/**
 * pcie_acs_override_setup(): comma-separated tokens, each tested by prefix, so
 * "downstreamX" counts as "downstream". Malformed `id:` tokens are dropped (the kernel warns).
 */
export function parseAcsOverride(value: string): AcsOverride {
  const o: AcsOverride = { downstream: false, multifunction: false, ids: [] };
  let p = 0;
  while (p < value.length) {
    if (value.startsWith("downstream", p)) o.downstream = true;
    if (value.startsWith("multifunction", p)) o.multifunction = true;
    // Out of slots: the kernel warns and skips the token.
    if (value.startsWith("id:", p) && o.ids.length < NUM_ACS_IDS - 1) {
      p = parseAcsId(value, p + 3, o);
    }
    const comma = value.indexOf(",", p);
    p = comma < 0 ? value.length : comma + 1;
  }
  return o;
}

/** One `id:vvvv:dddd`; returns where the scan for the next comma resumes, as the C pointer does. */
function parseAcsId(value: string, p: number, o: AcsOverride): number {
  // snprintf(opt, 5, "%s", p): at most four characters go to kstrtol.
  const vendor = kstrtol16(value.slice(p, p + 4));
  if (vendor === null) return p;
  // strcspn(p, ":") may run past a comma: the kernel does not stop at the token's end.
  const colon = value.indexOf(":", p);
  if (colon < 0) return value.length;
  const device = kstrtol16(value.slice(colon + 1, colon + 5));
  if (device !== null) o.ids.push({ vendor: vendor & 0xffff, device: device & 0xffff });
  return colon + 1;
}

/** kstrtol(s, 16): optional sign, optional "0x", one or more hex digits and nothing else. */
function kstrtol16(s: string): number | null {
  const m = /^(-|\+?)(?:0[xX])?([0-9a-fA-F]+)$/.exec(s);
  if (!m) return null;
  const v = parseInt(m[2] ?? "", 16);
  return m[1] === "-" ? -v : v;
}

/* ---------------------------------------------------------------------------------------- */
/* pci_dev_acs_enabled[]                                                                    */
/* ---------------------------------------------------------------------------------------- */

/** 0 or 1 as the kernel returns it; null for a negative errno (-ENOTTY, -ENODEV): no answer. */
type AcsAnswer = 0 | 1 | null;

interface AcsQuirk {
  readonly name: string;
  readonly enabled: (dev: PciDev, acsFlags: number, ctx: QuirkContext) => AcsAnswer;
}

interface AcsEntry {
  readonly vendor: number;
  readonly device: number;
  readonly quirk: AcsQuirk;
}

type IdRange = readonly [number, number];

const SV_RR_CR_UF = PCI_ACS_SV | PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF;

/** pci_acs_ctrl_enabled(): every requested control is enabled or implied. Both are u16. */
function acsCtrlEnabled(req: number, ena: number): 0 | 1 {
  const r = req & 0xffff;
  return (r & ena & 0xffff) === r ? 1 : 0;
}

function inRanges(id: number, ranges: readonly IdRange[]): boolean {
  return ranges.some(([lo, hi]) => id >= lo && id <= hi);
}

/** A config dword read; bytes the capture did not hold make the verdict unknown. */
function read32(dev: PciDev, off: number): number {
  if (!dev.known(off, 4)) dev.capsUnknown = true;
  return dev.read32(off);
}

function isRootPort(dev: PciDev): boolean {
  return dev.isPcie() && dev.pcieType() === PCI_EXP_TYPE_ROOT_PORT;
}

/** Claims SV, RR, CR and UF: the hardware blocks peer-to-peer without an ACS capability. */
function claimsSvRrCrUf(name: string): AcsQuirk {
  return { name, enabled: (_dev, acsFlags) => acsCtrlEnabled(acsFlags, SV_RR_CR_UF) };
}

/*
 * AMD southbridge functions do no peer-to-peer where an AMD IOMMU exists, so as
 * multifunction devices they implicitly redirect requests and completions (RR, CR).
 */
const amdSbAcs: AcsQuirk = {
  name: "pci_quirk_amd_sb_acs",
  enabled(dev, acsFlags, ctx) {
    // -ENODEV unless on the root bus, multifunction, and IVRS describes an AMD IOMMU
    if (!dev.multifunction || !dev.bus.isRoot || !ctx.hasIvrs) return null;
    const flags = acsFlags & (PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_EC | PCI_ACS_DT);
    return acsCtrlEnabled(flags, PCI_ACS_RR | PCI_ACS_CR);
  },
};

/* Vendor-verified: no peer-to-peer between functions; SV, TB and UF mean nothing here. */
const mfEndpointAcs: AcsQuirk = {
  name: "pci_quirk_mf_endpoint_acs",
  enabled: (_dev, acsFlags) => acsCtrlEnabled(acsFlags, SV_RR_CR_UF | PCI_ACS_TB | PCI_ACS_DT),
};

/* Intel RCiEPs may only do peer-to-peer on translated addresses (VT-d r3.1 sec 3.16). */
const rciepAcs: AcsQuirk = {
  name: "pci_quirk_rciep_acs",
  enabled: (dev, acsFlags) =>
    dev.pcieType() === PCI_EXP_TYPE_RC_END ? acsCtrlEnabled(acsFlags, SV_RR_CR_UF) : null,
};

const qcomRpAcs = claimsSvRrCrUf("pci_quirk_qcom_rp_acs");
const nxpRpAcs = claimsSvRrCrUf("pci_quirk_nxp_rp_acs");
const xgeneAcs = claimsSvRrCrUf("pci_quirk_xgene_acs");
const brcmAcs = claimsSvRrCrUf("pci_quirk_brcm_acs");
const loongsonAcs = claimsSvRrCrUf("pci_quirk_loongson_acs");

/* Root ports Intel listed (Red Hat bz 1037684) as isolating without an ACS capability. */
// prettier-ignore
const INTEL_PCH_ACS_IDS: readonly number[] = [
  /* Ibexpeak PCH */
  0x3b42, 0x3b43, 0x3b44, 0x3b45, 0x3b46, 0x3b47, 0x3b48, 0x3b49,
  0x3b4a, 0x3b4b, 0x3b4c, 0x3b4d, 0x3b4e, 0x3b4f, 0x3b50, 0x3b51,
  /* Cougarpoint PCH */
  0x1c10, 0x1c11, 0x1c12, 0x1c13, 0x1c14, 0x1c15, 0x1c16, 0x1c17,
  0x1c18, 0x1c19, 0x1c1a, 0x1c1b, 0x1c1c, 0x1c1d, 0x1c1e, 0x1c1f,
  /* Pantherpoint PCH */
  0x1e10, 0x1e11, 0x1e12, 0x1e13, 0x1e14, 0x1e15, 0x1e16, 0x1e17,
  0x1e18, 0x1e19, 0x1e1a, 0x1e1b, 0x1e1c, 0x1e1d, 0x1e1e, 0x1e1f,
  /* Lynxpoint-H PCH */
  0x8c10, 0x8c11, 0x8c12, 0x8c13, 0x8c14, 0x8c15, 0x8c16, 0x8c17,
  0x8c18, 0x8c19, 0x8c1a, 0x8c1b, 0x8c1c, 0x8c1d, 0x8c1e, 0x8c1f,
  /* Lynxpoint-LP PCH */
  0x9c10, 0x9c11, 0x9c12, 0x9c13, 0x9c14, 0x9c15, 0x9c16, 0x9c17,
  0x9c18, 0x9c19, 0x9c1a, 0x9c1b,
  /* Wildcat PCH */
  0x9c90, 0x9c91, 0x9c92, 0x9c93, 0x9c94, 0x9c95, 0x9c96, 0x9c97,
  0x9c98, 0x9c99, 0x9c9a, 0x9c9b,
  /* Patsburg (X79) PCH */
  0x1d10, 0x1d12, 0x1d14, 0x1d16, 0x1d18, 0x1d1a, 0x1d1c, 0x1d1e,
  /* Wellsburg (X99) PCH */
  0x8d10, 0x8d11, 0x8d12, 0x8d13, 0x8d14, 0x8d15, 0x8d16, 0x8d17,
  0x8d18, 0x8d19, 0x8d1a, 0x8d1b, 0x8d1c, 0x8d1d, 0x8d1e,
  /* Lynx Point (9 series) PCH */
  0x8c90, 0x8c92, 0x8c94, 0x8c96, 0x8c98, 0x8c9a, 0x8c9c, 0x8c9e,
];

function intelPchAcsMatch(dev: PciDev): boolean {
  return isRootPort(dev) && INTEL_PCH_ACS_IDS.includes(dev.device);
}

/* Isolating only once the boot-time enable quirk has programmed the chipset. */
const intelPchAcs: AcsQuirk = {
  name: "pci_quirk_intel_pch_acs",
  enabled(dev, acsFlags) {
    if (!intelPchAcsMatch(dev)) return null;
    const ena = dev.devFlags.has("PCI_DEV_FLAGS_ACS_ENABLED_QUIRK") ? SV_RR_CR_UF : 0;
    return acsCtrlEnabled(acsFlags, ena);
  },
};

/* Sunrise Point, Union Point and 7th/8th-gen mobile root ports (PCH errata 22/23). */
// prettier-ignore
const INTEL_SPT_PCH_ACS_IDS: readonly IdRange[] = [
  [0xa110, 0xa11f], [0xa167, 0xa16a], // Sunrise Point
  [0xa290, 0xa29f], [0xa2e7, 0xa2ee], // Union Point
  [0x9d10, 0x9d1b], // 7th & 8th Gen Mobile
];

function intelSptPchAcsMatch(dev: PciDev): boolean {
  return isRootPort(dev) && inRanges(dev.device, INTEL_SPT_PCH_ACS_IDS);
}

/** INTEL_SPT_ACS_CTRL: these ports keep ACS Control in the dword at +8, not the word at +6. */
const INTEL_SPT_ACS_CTRL = PCI_ACS_CAP + 4;

/* pci_acs_flags_enabled() with the dword layout: unadvertised flags (except EC) are implied. */
const intelSptPchAcs: AcsQuirk = {
  name: "pci_quirk_intel_spt_pch_acs",
  enabled(dev, acsFlags) {
    if (!intelSptPchAcsMatch(dev) || !dev.acsCap) return null;
    const cap = read32(dev, dev.acsCap + PCI_ACS_CAP);
    const ctrl = read32(dev, dev.acsCap + INTEL_SPT_ACS_CTRL);
    return acsCtrlEnabled(acsFlags & (cap | PCI_ACS_EC), ctrl);
  },
};

/* ThunderX1/2/3 root ports implement SV/RR/CR/UF-like protection without the capability. */
const CAVIUM_ACS_IDS: readonly IdRange[] = [
  [0xa000, 0xa7ff], // ThunderX1
  [0xaf84, 0xaf84], // ThunderX2
  [0xb884, 0xb884], // ThunderX3
];

const caviumAcs: AcsQuirk = {
  name: "pci_quirk_cavium_acs",
  enabled: (dev, acsFlags) =>
    isRootPort(dev) && inRanges(dev.device, CAVIUM_ACS_IDS)
      ? acsCtrlEnabled(acsFlags, SV_RR_CR_UF)
      : null,
};

/* Annapurna Labs root ports cannot reach each other: SV/RR/CR/UF are implied, nothing else. */
const alAcs: AcsQuirk = {
  name: "pci_quirk_al_acs",
  enabled(dev, acsFlags) {
    if (dev.pcieType() !== PCI_EXP_TYPE_ROOT_PORT) return null;
    return acsFlags & ~SV_RR_CR_UF ? 0 : 1;
  },
};

const ZHAOXIN_PORT_ACS_IDS: readonly IdRange[] = [
  [0x0710, 0x071e],
  [0x0721, 0x0721],
  [0x0723, 0x0752],
];

/*
 * Listed Zhaoxin root/downstream ports block peer-to-peer; every other Zhaoxin port gets a
 * definite "no" (the kernel returns false), expecting future parts to carry real ACS.
 */
const zhaoxinPciePortsAcs: AcsQuirk = {
  name: "pci_quirk_zhaoxin_pcie_ports_acs",
  enabled(dev, acsFlags) {
    const t = dev.pcieType();
    if (!dev.isPcie() || (t !== PCI_EXP_TYPE_ROOT_PORT && t !== PCI_EXP_TYPE_DOWNSTREAM)) {
      return null;
    }
    return inRanges(dev.device, ZHAOXIN_PORT_ACS_IDS) ? acsCtrlEnabled(acsFlags, SV_RR_CR_UF) : 0;
  },
};

const WANGXUN_NIC_ACS_IDS: readonly IdRange[] = [
  [0x0100, 0x010f], // EM
  [0x1001, 0x1001], // SP
  [0x2001, 0x2001], // SP
  // AML (FF5xxx), 6.12.y
  [0x5010, 0x5010],
  [0x5025, 0x5025],
  [0x5040, 0x5040],
  [0x5110, 0x5110],
  [0x5125, 0x5125],
  [0x5140, 0x5140],
];

/* Listed Wangxun NICs route peer traffic upstream; any other Wangxun function: definite "no". */
const wangxunNicAcs: AcsQuirk = {
  name: "pci_quirk_wangxun_nic_acs",
  enabled: (dev, acsFlags) =>
    inRanges(dev.device, WANGXUN_NIC_ACS_IDS) ? acsCtrlEnabled(acsFlags, SV_RR_CR_UF) : 0,
};

function acsEntries(vendor: number, devices: readonly number[], quirk: AcsQuirk): AcsEntry[] {
  return devices.map((device) => ({ vendor, device, quirk }));
}

const PCI_DEV_ACS_ENABLED: readonly AcsEntry[] = [
  ...acsEntries(PCI_VENDOR_ID_ATI, [0x4385, 0x439c, 0x4383, 0x439d, 0x4384, 0x4399], amdSbAcs),
  ...acsEntries(PCI_VENDOR_ID_AMD, [0x780f, 0x7809], amdSbAcs),
  ...acsEntries(PCI_VENDOR_ID_SOLARFLARE, [0x0903, 0x0923, 0x0a03], mfEndpointAcs),
  ...acsEntries(
    PCI_VENDOR_ID_INTEL,
    [
      0x10c6, 0x10db, 0x10dd, 0x10e1, 0x10f1, 0x10f7, 0x10f8, 0x10f9, 0x10fa, 0x10fb, 0x10fc,
      0x1507, 0x1514, 0x151c, 0x1529, 0x152a, 0x154d, 0x154f, 0x1551, 0x1558,
    ],
    mfEndpointAcs,
  ),
  /* 82580 */
  ...acsEntries(
    PCI_VENDOR_ID_INTEL,
    [0x1509, 0x150e, 0x150f, 0x1510, 0x1511, 0x1516, 0x1527],
    mfEndpointAcs,
  ),
  /* 82576 */
  ...acsEntries(
    PCI_VENDOR_ID_INTEL,
    [0x10c9, 0x10e6, 0x10e7, 0x10e8, 0x150a, 0x150d, 0x1518, 0x1526],
    mfEndpointAcs,
  ),
  /* 82575 */
  ...acsEntries(PCI_VENDOR_ID_INTEL, [0x10a7, 0x10a9, 0x10d6], mfEndpointAcs),
  /* I350 */
  ...acsEntries(PCI_VENDOR_ID_INTEL, [0x1521, 0x1522, 0x1523, 0x1524], mfEndpointAcs),
  /* 82571 (Quads omitted due to non-ACS switch) */
  ...acsEntries(PCI_VENDOR_ID_INTEL, [0x105e, 0x105f, 0x1060, 0x10d9], mfEndpointAcs),
  /* I219 */
  ...acsEntries(PCI_VENDOR_ID_INTEL, [0x15b7, 0x15b8], mfEndpointAcs),
  { vendor: PCI_VENDOR_ID_INTEL, device: PCI_ANY_ID, quirk: rciepAcs },
  /* QCOM QDF2xxx root ports, the SA8775P root port, then Hamoa and Glymur (6.12.117) */
  ...acsEntries(PCI_VENDOR_ID_QCOM, [0x0400, 0x0401, 0x0115, 0x0111, 0x0120], qcomRpAcs),
  /* HXT SD4800 root ports: same ACS design as QCOM QDF2xxx */
  { vendor: PCI_VENDOR_ID_HXT, device: 0x0401, quirk: qcomRpAcs },
  /* Intel PCH root ports */
  { vendor: PCI_VENDOR_ID_INTEL, device: PCI_ANY_ID, quirk: intelPchAcs },
  { vendor: PCI_VENDOR_ID_INTEL, device: PCI_ANY_ID, quirk: intelSptPchAcs },
  { vendor: PCI_VENDOR_ID_SERVERENGINES, device: 0x0710, quirk: mfEndpointAcs }, // Emulex BE3-R
  { vendor: PCI_VENDOR_ID_EMULEX, device: 0x0720, quirk: mfEndpointAcs }, // Emulex Skyhawk-R
  /* Cavium ThunderX, then Cavium multi-function devices */
  { vendor: PCI_VENDOR_ID_CAVIUM, device: PCI_ANY_ID, quirk: caviumAcs },
  ...acsEntries(PCI_VENDOR_ID_CAVIUM, [0xa026, 0xa059, 0xa060], mfEndpointAcs),
  /* APM X-Gene, then Ampere Computing */
  { vendor: PCI_VENDOR_ID_AMCC, device: 0xe004, quirk: xgeneAcs },
  ...acsEntries(
    PCI_VENDOR_ID_AMPERE,
    [0xe005, 0xe006, 0xe007, 0xe008, 0xe009, 0xe00a, 0xe00b, 0xe00c],
    xgeneAcs,
  ),
  /* Broadcom multi-function devices */
  ...acsEntries(
    PCI_VENDOR_ID_BROADCOM,
    [0x16d7, 0x1750, 0x1751, 0x1752, 0x1760, 0x1761, 0x1762, 0x1763],
    mfEndpointAcs,
  ),
  { vendor: PCI_VENDOR_ID_BROADCOM, device: 0xd714, quirk: brcmAcs },
  /* Loongson PCIe root ports, 6.12.117 */
  ...acsEntries(
    PCI_VENDOR_ID_LOONGSON,
    [0x3c09, 0x3c19, 0x3c29, 0x7a09, 0x7a19, 0x7a29, 0x7a39, 0x7a49, 0x7a59, 0x7a69],
    loongsonAcs,
  ),
  /* Amazon Annapurna Labs */
  { vendor: PCI_VENDOR_ID_AMAZON_ANNAPURNA_LABS, device: 0x0031, quirk: alAcs },
  /* Zhaoxin multi-function devices */
  ...acsEntries(PCI_VENDOR_ID_ZHAOXIN, [0x3038, 0x3104, 0x9083], mfEndpointAcs),
  /* NXP LX2xx0/LX2xx2 root ports (A, C, E, N variants; 16, 12 or 8 cores) */
  ...acsEntries(
    PCI_VENDOR_ID_NXP,
    [
      0x8d81, 0x8da1, 0x8d83, 0x8d80, 0x8da0, 0x8d82, 0x8d90, 0x8db0, 0x8d92, 0x8d91, 0x8db1,
      0x8d93, 0x8d89, 0x8da9, 0x8d8b, 0x8d88, 0x8da8, 0x8d8a, 0x8d98, 0x8db8, 0x8d9a, 0x8d99,
      0x8db9, 0x8d9b,
    ],
    nxpRpAcs,
  ),
  /* Zhaoxin Root/Downstream Ports */
  { vendor: PCI_VENDOR_ID_ZHAOXIN, device: PCI_ANY_ID, quirk: zhaoxinPciePortsAcs },
  /* Wangxun NICs */
  { vendor: PCI_VENDOR_ID_WANGXUN, device: PCI_ANY_ID, quirk: wangxunNicAcs },
];

/*
 * pcie_acs_overrides(): belief, not isolation. Only PCIe functions without an ACS capability;
 * listed IDs always, ports with `downstream`, multifunction functions with `multifunction`.
 */
const pcieAcsOverrides: AcsQuirk = {
  name: "pcie_acs_overrides",
  enabled(dev, _acsFlags, ctx) {
    const o = ctx.acsOverride;
    if (!o || !dev.isPcie() || dev.acsCap) return null;
    if (o.ids.some((id) => id.vendor === dev.vendor && id.device === dev.device)) return 1;
    switch (dev.pcieType()) {
      case PCI_EXP_TYPE_DOWNSTREAM:
      case PCI_EXP_TYPE_ROOT_PORT:
        return o.downstream ? 1 : null;
      case PCI_EXP_TYPE_ENDPOINT:
      case PCI_EXP_TYPE_UPSTREAM:
      case PCI_EXP_TYPE_LEG_END:
      case PCI_EXP_TYPE_RC_END:
        return o.multifunction && dev.multifunction ? 1 : null;
      default:
        return null;
    }
  },
};

/* The patch adds its catch-all entry last, so every real quirk answers first. */
const PCI_DEV_ACS_ENABLED_OVERRIDDEN: readonly AcsEntry[] = [
  ...PCI_DEV_ACS_ENABLED,
  { vendor: PCI_ANY_ID, device: PCI_ANY_ID, quirk: pcieAcsOverrides },
];

function idMatches(e: { vendor: number; device: number }, dev: PciDev): boolean {
  return (
    (e.vendor === dev.vendor || e.vendor === PCI_ANY_ID) &&
    (e.device === dev.device || e.device === PCI_ANY_ID)
  );
}

/**
 * pci_dev_specific_acs_enabled(): the first matching entry that answers decides. Null is the
 * kernel's -ENOTTY (no entry answered); otherwise `ret` is 0 or 1 and `quirk` the answering
 * function.
 */
export function pciDevSpecificAcsEnabled(
  dev: PciDev,
  acsFlags: number,
  ctx: QuirkContext,
): { ret: number; quirk: string } | null {
  const table = ctx.acsOverride ? PCI_DEV_ACS_ENABLED_OVERRIDDEN : PCI_DEV_ACS_ENABLED;
  for (const e of table) {
    if (!idMatches(e, dev)) continue;
    const ret = e.quirk.enabled(dev, acsFlags, ctx);
    if (ret !== null) return { ret, quirk: e.quirk.name };
  }
  return null;
}

/* ---------------------------------------------------------------------------------------- */
/* pci_dev_acs_ops[]: boot-time enabling                                                    */
/* ---------------------------------------------------------------------------------------- */

/** Miscellaneous Port Configuration register; IRBNCE is the root port's SV equivalent. */
const INTEL_MPC_REG = 0xd8;
const INTEL_MPC_REG_IRBNCE = 1 << 26;

/** LPC (D31:F0) Root Complex Base Address register and its enable bit. */
const INTEL_LPC_RCBA_REG = 0xf0;
const INTEL_LPC_RCBA_ENABLE = 1;

/**
 * pci_quirk_enable_intel_pch_acs(). Its first half (pci_quirk_enable_intel_lpc_acs) reads the
 * LPC's RCBA by config cycle — a disabled RCBA fails the quirk, which still counts as handled —
 * then clears the UPDCR peer-decode bits in chipset MMIO, which the model cannot see (assumed
 * to succeed). An RCBA that was not captured (lspci text) is assumed enabled, as firmware does.
 */
function enableIntelPchAcs(dev: PciDev): boolean {
  if (!intelPchAcsMatch(dev)) return false;
  const rcba = dev.busRead32(PCI_DEVFN(31, 0), INTEL_LPC_RCBA_REG);
  if (rcba.known && !(rcba.value & INTEL_LPC_RCBA_ENABLE)) {
    dev.notes.push(
      "pci_quirk_enable_intel_pch_acs: LPC RCBA disabled: Failed to enable Intel PCH ACS quirk",
    );
    return true;
  }
  dev.notes.push(
    rcba.known
      ? "pci_quirk_enable_intel_lpc_acs: UPDCR peer-decode disable is chipset MMIO the model " +
          "cannot see; assumed to succeed"
      : "pci_quirk_enable_intel_lpc_acs: LPC RCBA not captured; assumed enabled by firmware, " +
          "and the UPDCR peer-decode disable assumed to succeed",
  );
  // MPC is device-specific; its value never changes a verdict (see below), so read it plainly.
  const mpc = dev.read32(INTEL_MPC_REG);
  if (!(mpc & INTEL_MPC_REG_IRBNCE)) {
    // The kernel writes the dword back with pci_write_config_word(): bit 26 never lands.
    dev.write16(INTEL_MPC_REG, mpc & 0xffff);
    dev.notes.push(
      "pci_quirk_enable_intel_rp_mpc_acs: MPC.IRBNCE was clear; the kernel's 16-bit write " +
        "leaves it clear",
    );
  }
  dev.devFlags.add("PCI_DEV_FLAGS_ACS_ENABLED_QUIRK");
  dev.notes.push("pci_quirk_enable_intel_pch_acs: Intel PCH root port ACS workaround enabled");
  return true;
}

/** pci_quirk_enable_intel_spt_pch_acs(): pci_std_enable_acs() on the dword control register. */
function enableIntelSptPchAcs(dev: PciDev, enableTb: boolean): boolean {
  if (!intelSptPchAcsMatch(dev) || !dev.acsCap) return false;
  const cap = read32(dev, dev.acsCap + PCI_ACS_CAP);
  let ctrl = read32(dev, dev.acsCap + INTEL_SPT_ACS_CTRL);
  ctrl |= cap & SV_RR_CR_UF;
  if (enableTb) ctrl |= cap & PCI_ACS_TB;
  dev.write32(dev.acsCap + INTEL_SPT_ACS_CTRL, ctrl >>> 0);
  dev.notes.push(
    "pci_quirk_enable_intel_spt_pch_acs: Intel SPT PCH root port ACS workaround enabled",
  );
  return true;
}

/** pci_quirk_disable_intel_spt_pch_acs_redir(): clears RR, CR and EC in the dword control. */
function disableIntelSptPchAcsRedir(dev: PciDev): boolean {
  if (!intelSptPchAcsMatch(dev) || !dev.acsCap) return false;
  const ctrl = read32(dev, dev.acsCap + INTEL_SPT_ACS_CTRL);
  dev.write32(
    dev.acsCap + INTEL_SPT_ACS_CTRL,
    (ctrl & ~(PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_EC)) >>> 0,
  );
  dev.notes.push(
    "pci_quirk_disable_intel_spt_pch_acs_redir: Intel SPT PCH root port workaround: " +
      "disabled ACS redirect",
  );
  return true;
}

interface AcsOps {
  readonly vendor: number;
  readonly device: number;
  /** true where the kernel returns 0 (handled), false for -ENOTTY. */
  readonly enableAcs: (dev: PciDev, enableTb: boolean) => boolean;
  readonly disableAcsRedir?: (dev: PciDev) => boolean;
}

const PCI_DEV_ACS_OPS: readonly AcsOps[] = [
  { vendor: PCI_VENDOR_ID_INTEL, device: PCI_ANY_ID, enableAcs: enableIntelPchAcs },
  {
    vendor: PCI_VENDOR_ID_INTEL,
    device: PCI_ANY_ID,
    enableAcs: enableIntelSptPchAcs,
    disableAcsRedir: disableIntelSptPchAcsRedir,
  },
];

/**
 * pci_dev_specific_enable_acs(), run by pci_enable_acs() when an IOMMU driver requested ACS.
 * True when a quirk handled the device, so pci_std_enable_acs() is skipped. `enableTb` is
 * pci_ats_disabled() || dev->external_facing || dev->untrusted, facts the caller holds.
 */
export function pciDevSpecificEnableAcs(dev: PciDev, enableTb = false): boolean {
  return PCI_DEV_ACS_OPS.some((op) => idMatches(op, dev) && op.enableAcs(dev, enableTb));
}

/**
 * pci_dev_specific_disable_acs_redir(), called by __pci_config_acs() for a device named in
 * `pci=disable_acs_redir=` or `pci=config_acs=`: true when a quirk handled it, and the
 * command-line mask is then not applied to the standard ACS Control word.
 */
export function pciDevSpecificDisableAcsRedir(dev: PciDev): boolean {
  return PCI_DEV_ACS_OPS.some(
    (op) => idMatches(op, dev) && op.disableAcsRedir !== undefined && op.disableAcsRedir(dev),
  );
}

/* ---------------------------------------------------------------------------------------- */
/* pci_dev_reset_methods[]                                                                  */
/* ---------------------------------------------------------------------------------------- */

/** pcie_reset_flr(dev, PCI_RESET_PROBE) == 0: DevCap FLR and no NO_FLR_RESET quirk. */
function pcieFlrProbe(dev: PciDev): boolean {
  if (dev.devFlags.has("PCI_DEV_FLAGS_NO_FLR_RESET") || !dev.isPcie()) return false;
  return (read32(dev, dev.pcieCap + PCI_EXP_DEVCAP) & PCI_EXP_DEVCAP_FLR) !== 0;
}

/** pci_resource_start(dev, 0) != 0, read from the BAR as firmware or the kernel programmed it. */
function bar0Assigned(dev: PciDev): boolean {
  const bar = read32(dev, PCI_BASE_ADDRESS_0);
  if (bar & PCI_BASE_ADDRESS_SPACE_IO) return (bar & PCI_BASE_ADDRESS_IO_MASK) !== 0;
  const is64 = (bar & PCI_BASE_ADDRESS_MEM_TYPE_MASK) === PCI_BASE_ADDRESS_MEM_TYPE_64;
  return (
    (bar & PCI_BASE_ADDRESS_MEM_MASK) !== 0 || (is64 && read32(dev, PCI_BASE_ADDRESS_0 + 4) !== 0)
  );
}

interface ResetMethod {
  readonly vendor: number;
  readonly device: number;
  readonly name: string;
  /** The method's probe returns 0 (it can reset this device). */
  readonly probe: (dev: PciDev) => boolean;
}

const always = (): boolean => true;

const PCI_DEV_RESET_METHODS: readonly ResetMethod[] = [
  // 82599 SFP VF: FLR works although only the PF's DevCap says so
  {
    vendor: PCI_VENDOR_ID_INTEL,
    device: 0x10ed,
    name: "reset_intel_82599_sfp_virtfn",
    probe: always,
  },
  { vendor: PCI_VENDOR_ID_INTEL, device: 0x0156, name: "reset_ivb_igd", probe: always },
  { vendor: PCI_VENDOR_ID_INTEL, device: 0x0166, name: "reset_ivb_igd", probe: always },
  // SM961/PM961: disable the NVMe controller before FLR
  {
    vendor: PCI_VENDOR_ID_SAMSUNG,
    device: 0xa804,
    name: "nvme_disable_and_flr",
    probe: (dev) =>
      dev.class === PCI_CLASS_STORAGE_EXPRESS && pcieFlrProbe(dev) && bar0Assigned(dev),
  },
  // NVMe controllers that need 250 ms after FLR before they are touched
  {
    vendor: PCI_VENDOR_ID_INTEL,
    device: 0x0953,
    name: "delay_250ms_after_flr",
    probe: pcieFlrProbe,
  },
  {
    vendor: PCI_VENDOR_ID_INTEL,
    device: 0x0a54,
    name: "delay_250ms_after_flr",
    probe: pcieFlrProbe,
  },
  {
    vendor: PCI_VENDOR_ID_SOLIDIGM,
    device: 0xf1ac,
    name: "delay_250ms_after_flr",
    probe: pcieFlrProbe,
  },
  // Every Chelsio device matches, but only T4-based ones (0x4xxx) have the method
  {
    vendor: PCI_VENDOR_ID_CHELSIO,
    device: PCI_ANY_ID,
    name: "reset_chelsio_generic_dev",
    probe: (dev) => (dev.device & 0xf000) === 0x4000,
  },
  { vendor: PCI_VENDOR_ID_HUAWEI, device: 0x375e, name: "reset_hinic_vf_dev", probe: always },
];

/**
 * pci_dev_specific_reset(dev, PCI_RESET_PROBE): the first vendor/device match decides alone.
 * Returns that method's name when its probe succeeds (`device_specific` is then available).
 */
export function pciDevSpecificResetMethod(dev: PciDev): string | null {
  const m = PCI_DEV_RESET_METHODS.find((r) => idMatches(r, dev));
  return m && m.probe(dev) ? m.name : null;
}

/* ---------------------------------------------------------------------------------------- */
/* Fixups: DMA aliases and dev_flags                                                        */
/* ---------------------------------------------------------------------------------------- */

const MAX_NR_DEVFNS = 256;

function slotFn(devfn: number): string {
  return `${PCI_SLOT(devfn).toString(16).padStart(2, "0")}.${PCI_FUNC(devfn)}`;
}

/** pci_add_dma_alias(): marks devfns [from, from+nr) of the same bus; returns what it logged. */
function pciAddDmaAlias(dev: PciDev, devfnFrom: number, nrDevfns: number): string {
  const nr = Math.min(nrDevfns, MAX_NR_DEVFNS - devfnFrom);
  const mask = (dev.dmaAliasMask ??= new Set<number>());
  for (let d = devfnFrom; d < devfnFrom + nr; d++) mask.add(d);
  return nr === 1
    ? `fixed DMA alias to ${slotFn(devfnFrom)}`
    : `fixed DMA alias for devfn range from ${slotFn(devfnFrom)} to ${slotFn(devfnFrom + nr - 1)}`;
}

type FixupPass = "early" | "header" | "final";

interface FixupHook {
  readonly name: string;
  /** Applies the fixup; returns a note when it changed something, null when it did nothing. */
  readonly run: (dev: PciDev) => string | null;
}

interface Fixup {
  readonly pass: FixupPass;
  readonly vendor: number;
  readonly device: number;
  /** DECLARE_PCI_FIXUP_CLASS_*(..., class, 8, ...): `dev->class >> 8` must equal this. */
  readonly classDevice?: number;
  readonly hook: FixupHook;
}

const quirkNoBusReset: FixupHook = {
  name: "quirk_no_bus_reset",
  run(dev) {
    dev.devFlags.add("PCI_DEV_FLAGS_NO_BUS_RESET");
    return "secondary bus reset leaves the device unusable; bus reset disabled";
  },
};

const quirkNvidiaNoBusReset: FixupHook = {
  name: "quirk_nvidia_no_bus_reset",
  run: (dev) => ((dev.device & 0xffc0) === 0x2340 ? quirkNoBusReset.run(dev) : null),
};

/* A root-bus device cannot get a bus reset, so an ineffective PM reset beats none. */
const quirkNoPmReset: FixupHook = {
  name: "quirk_no_pm_reset",
  run(dev) {
    if (dev.bus.isRoot) return null;
    dev.devFlags.add("PCI_DEV_FLAGS_NO_PM_RESET");
    return "D3hot->D0 does not actually reset the device; PM reset disabled";
  },
};

const quirkDmaFunc0Alias: FixupHook = {
  name: "quirk_dma_func0_alias",
  run: (dev) =>
    dev.fn !== 0
      ? `DMA uses function 0's requester ID; ${pciAddDmaAlias(dev, PCI_DEVFN(dev.slot, 0), 1)}`
      : null,
};

const quirkDmaFunc1Alias: FixupHook = {
  name: "quirk_dma_func1_alias",
  run: (dev) =>
    dev.fn !== 1
      ? `DMA uses function 1's requester ID; ${pciAddDmaAlias(dev, PCI_DEVFN(dev.slot, 1), 1)}`
      : null,
};

/* fixed_dma_alias_tbl[]: a hidden DMA engine behind the card's I/O processor bridge. */
const FIXED_DMA_ALIAS_TBL: readonly {
  vendor: number;
  device: number;
  subvendor: number;
  subdevice: number;
  devfn: number;
}[] = [
  // Adaptec 3405
  {
    vendor: PCI_VENDOR_ID_ADAPTEC2,
    device: 0x0285,
    subvendor: PCI_VENDOR_ID_ADAPTEC2,
    subdevice: 0x02bb,
    devfn: PCI_DEVFN(1, 0),
  },
  // Adaptec 3805
  {
    vendor: PCI_VENDOR_ID_ADAPTEC2,
    device: 0x0285,
    subvendor: PCI_VENDOR_ID_ADAPTEC2,
    subdevice: 0x02bc,
    devfn: PCI_DEVFN(1, 0),
  },
];

const quirkFixedDmaAlias: FixupHook = {
  name: "quirk_fixed_dma_alias",
  run(dev) {
    const id = FIXED_DMA_ALIAS_TBL.find(
      (t) =>
        t.vendor === dev.vendor &&
        t.device === dev.device &&
        t.subvendor === dev.subsystemVendor &&
        t.subdevice === dev.subsystemDevice,
    );
    return id ? `hidden DMA engine; ${pciAddDmaAlias(dev, id.devfn, 1)}` : null;
  },
};

/*
 * A conventional bridge directly below a PCIe function that is not itself a PCIe-to-PCI
 * bridge must really be a PCIe-to-PCI bridge that hides its PCIe capability.
 */
const quirkUsePcieBridgeDmaAlias: FixupHook = {
  name: "quirk_use_pcie_bridge_dma_alias",
  run(dev) {
    const up = dev.bus.self;
    if (
      dev.bus.isRoot ||
      (dev.hdrType & PCI_HEADER_TYPE_MASK) !== PCI_HEADER_TYPE_BRIDGE ||
      dev.isPcie() ||
      !up?.isPcie() ||
      up.pcieType() === PCI_EXP_TYPE_PCI_BRIDGE
    ) {
      return null;
    }
    dev.devFlags.add("PCI_DEV_FLAG_PCIE_BRIDGE_ALIAS");
    return "a PCIe-to-PCI bridge hiding its PCIe capability; DMA from below uses its secondary bus";
  },
};

/* MIC x200 NTB forwards with the RIT-LUT requester IDs programmed in its EEPROM. */
const quirkMicX200DmaAlias: FixupHook = {
  name: "quirk_mic_x200_dma_alias",
  run: (dev) =>
    "NTB forwards with foreign requester IDs; " +
    [PCI_DEVFN(0x10, 0), PCI_DEVFN(0x11, 0), PCI_DEVFN(0x12, 3)]
      .map((devfn) => pciAddDmaAlias(dev, devfn, 1))
      .join(", "),
};

/* VCA: the other side's slot is unknown, so functions 0-4 of every slot become aliases. */
const quirkPexVcaAlias: FixupHook = {
  name: "quirk_pex_vca_alias",
  run(dev) {
    for (let slot = 0; slot < 0x20; slot++) pciAddDmaAlias(dev, PCI_DEVFN(slot, 0), 5);
    return "NTB requester IDs of the far side; fixed DMA aliases to functions 0-4 of slots 00-1f";
  },
};

/* Vulcan/ThunderX2: the IOMMU sits at this bridge, so the alias walk must stop here. */
const quirkBridgeCavmThrx2PcieRoot: FixupHook = {
  name: "quirk_bridge_cavm_thrx2_pcie_root",
  run(dev) {
    dev.devFlags.add("PCI_DEV_FLAGS_BRIDGE_XLATE_ROOT");
    return "IOMMU translation starts at this bridge; DMA alias walk stops here";
  },
};

const quirkNoFlr: FixupHook = {
  name: "quirk_no_flr",
  run(dev) {
    dev.devFlags.add("PCI_DEV_FLAGS_NO_FLR_RESET");
    return "FLR may hang the device; FLR disabled";
  },
};

const quirkNoFlrSnet: FixupHook = {
  name: "quirk_no_flr_snet",
  run: (dev) => (dev.revision === 0x1 ? quirkNoFlr.run(dev) : null),
};

/* The Switchtec proxy IDs live in the NTB's BAR 0 requester-ID tables. */
const quirkSwitchtecNtbDmaAlias: FixupHook = {
  name: "quirk_switchtec_ntb_dma_alias",
  run: () =>
    "proxy requester IDs come from the NTB's MMIO requester-ID tables, which the model " +
    "cannot read; no DMA aliases added (Linux adds one per proxy ID)",
};

const quirkPlxNtbDmaAlias: FixupHook = {
  name: "quirk_plx_ntb_dma_alias",
  run: (dev) => `NTB proxy IDs may be any devfn; ${pciAddDmaAlias(dev, 0, MAX_NR_DEVFNS)}`,
};

function fixups(
  pass: FixupPass,
  vendor: number,
  devices: readonly number[],
  hook: FixupHook,
  classDevice?: number,
): Fixup[] {
  return devices.map((device) => ({ pass, vendor, device, hook, classDevice }));
}

/* Microsemi Switchtec PFX/PSX/PAX/PFXL/PFXI (Gen3), PFX/PSX/PAX/PFXA/PSXA/PAXA (Gen4, Gen5). */
const SWITCHTEC_IDS: readonly number[] = [
  0x8531, 0x8532, 0x8533, 0x8534, 0x8535, 0x8536, 0x8541, 0x8542, 0x8543, 0x8544, 0x8545, 0x8546,
  0x8551, 0x8552, 0x8553, 0x8554, 0x8555, 0x8556, 0x8561, 0x8562, 0x8563, 0x8564, 0x8565, 0x8566,
  0x8571, 0x8572, 0x8573, 0x8574, 0x8575, 0x8576, 0x4000, 0x4084, 0x4068, 0x4052, 0x4036, 0x4028,
  0x4100, 0x4184, 0x4168, 0x4152, 0x4136, 0x4128, 0x4200, 0x4284, 0x4268, 0x4252, 0x4236, 0x4228,
  0x4352, 0x4336, 0x4328, 0x4452, 0x4436, 0x4428, 0x4552, 0x4536, 0x4528, 0x5000, 0x5084, 0x5068,
  0x5052, 0x5036, 0x5028, 0x5100, 0x5184, 0x5168, 0x5152, 0x5136, 0x5128, 0x5200, 0x5284, 0x5268,
  0x5252, 0x5236, 0x5228, 0x5300, 0x5384, 0x5368, 0x5352, 0x5336, 0x5328, 0x5400, 0x5484, 0x5468,
  0x5452, 0x5436, 0x5428, 0x5500, 0x5584, 0x5568, 0x5552, 0x5536, 0x5528,
];

/* In quirks.c order within each pass; pci_fixup_device() runs early, then header, then final. */
const PCI_FIXUPS: readonly Fixup[] = [
  // NVIDIA GB10 root ports: the link may not retrain after a bus reset, 6.12.117
  ...fixups("header", PCI_VENDOR_ID_NVIDIA, [0x22ce, 0x22d0], quirkNoBusReset),
  ...fixups("header", PCI_VENDOR_ID_NVIDIA, [PCI_ANY_ID], quirkNvidiaNoBusReset),
  // Atheros AR9xxx and QCA988x vanish after a bus reset
  ...fixups(
    "header",
    PCI_VENDOR_ID_ATHEROS,
    [0x0030, 0x0032, 0x003c, 0x0033, 0x0034, 0x003e],
    quirkNoBusReset,
  ),
  // QCOM WCN6855, WCN7850, SDX62/SDX65 likewise, 6.12.117
  ...fixups("header", PCI_VENDOR_ID_QCOM, [0x1103, 0x1107, 0x0308], quirkNoBusReset),
  // Cavium CN8xxx root port: config accesses to the child may fail after a bus reset
  ...fixups("header", PCI_VENDOR_ID_CAVIUM, [0xa100], quirkNoBusReset),
  // TI KeyStone C667X disables its LTSSM on Secondary Bus Reset
  ...fixups("header", PCI_VENDOR_ID_TI, [0xb005], quirkNoBusReset),
  // ASMedia ASM1164 fails to retrain after a bus reset, 6.12.117
  ...fixups("header", PCI_VENDOR_ID_ASMEDIA, [0x1164], quirkNoBusReset),
  // AMD/ATI GPUs advertise NoSoftRst- yet D3hot->D0 leaves them untouched
  ...fixups("header", PCI_VENDOR_ID_ATI, [PCI_ANY_ID], quirkNoPmReset, PCI_CLASS_DISPLAY_VGA),
  // Mellanox Spectrum-1..4: same NoSoftRst- claim
  ...fixups("header", PCI_VENDOR_ID_MELLANOX, [0xcb84, 0xcf6c, 0xcf70, 0xcf80], quirkNoPmReset),
  ...fixups("header", PCI_VENDOR_ID_RICOH, [0xe832, 0xe476], quirkDmaFunc0Alias),
  ...fixups("header", PCI_VENDOR_ID_GLENFLY, [0x3d40, 0x3d41], quirkDmaFunc0Alias),
  // Marvell SATA/IDE controllers whose function 1 is a (possibly absent) DMA requester
  ...fixups(
    "header",
    PCI_VENDOR_ID_MARVELL_EXT,
    [
      0x9120, 0x9123, 0x9125, 0x9128, 0x9130, 0x9170, 0x9172, 0x917a, 0x9182, 0x9183, 0x91a0,
      0x9215, 0x9220, 0x9230, 0x9235,
    ],
    quirkDmaFunc1Alias,
  ),
  ...fixups("header", PCI_VENDOR_ID_TTI, [0x0642, 0x0645], quirkDmaFunc1Alias),
  ...fixups("header", PCI_VENDOR_ID_JMICRON, [0x2392], quirkDmaFunc1Alias), // JMB388_ESD
  ...fixups("header", PCI_VENDOR_ID_LITEON, [0x0122], quirkDmaFunc1Alias), // Plextor M6E
  ...fixups("header", PCI_VENDOR_ID_ADAPTEC2, [0x0285], quirkFixedDmaAlias),
  ...fixups("header", PCI_VENDOR_ID_ASMEDIA, [0x1080], quirkUsePcieBridgeDmaAlias), // ASM1083/1085
  ...fixups("header", PCI_VENDOR_ID_TUNDRA, [0x8113], quirkUsePcieBridgeDmaAlias),
  ...fixups("header", PCI_VENDOR_ID_ITE, [0x8892, 0x8893], quirkUsePcieBridgeDmaAlias),
  ...fixups("header", PCI_VENDOR_ID_INTEL, [0x244e], quirkUsePcieBridgeDmaAlias), // 82801
  ...fixups("header", PCI_VENDOR_ID_INTEL, [0x2260, 0x2264], quirkMicX200DmaAlias),
  ...fixups(
    "header",
    PCI_VENDOR_ID_INTEL,
    [0x2954, 0x2955, 0x2956, 0x2958, 0x2959, 0x295a],
    quirkPexVcaAlias,
  ),
  ...fixups("header", PCI_VENDOR_ID_BROADCOM, [0x9000, 0x9084], quirkBridgeCavmThrx2PcieRoot),
  // AMD Starship/Matisse audio and USB, AMD 0x7901, Intel 82579LM/V hang on FLR
  ...fixups("early", PCI_VENDOR_ID_AMD, [0x1487, 0x148c, 0x149c, 0x7901], quirkNoFlr),
  ...fixups("early", PCI_VENDOR_ID_INTEL, [0x1502, 0x1503], quirkNoFlr),
  ...fixups("early", PCI_VENDOR_ID_MEDIATEK, [0x0616], quirkNoFlr), // MT7922, 6.12.y
  ...fixups("early", PCI_VENDOR_ID_MEDIATEK, [0x7925], quirkNoFlr), // MT7925, 6.12.117
  ...fixups("early", PCI_VENDOR_ID_SOLIDRUN, [0x1000], quirkNoFlrSnet),
  ...fixups(
    "final",
    PCI_VENDOR_ID_MICROSEMI,
    SWITCHTEC_IDS,
    quirkSwitchtecNtbDmaAlias,
    PCI_CLASS_BRIDGE_OTHER,
  ),
  // Microchip PCI100x, 6.12.y (PCI1008XG4: 6.12.117)
  ...fixups(
    "final",
    PCI_VENDOR_ID_EFAR,
    [0x1001, 0x1002, 0x1003, 0x1004, 0x1005, 0x1006, 0x1008],
    quirkSwitchtecNtbDmaAlias,
    PCI_CLASS_BRIDGE_OTHER,
  ),
  ...fixups("header", PCI_VENDOR_ID_PLX, [0x87b0, 0x87b1], quirkPlxNtbDmaAlias),
];

const FIXUP_PASSES: readonly FixupPass[] = ["early", "header", "final"];

/**
 * pci_fixup_device() for the early, header and final passes, restricted to the fixups that
 * change DMA aliases or reset/alias dev_flags. Call once the header is parsed (class, revision,
 * header type, subsystem IDs, PCIe capability) and the parent bridge exists. Each fixup that
 * acts leaves a note naming its kernel function. No fixup of this set looks at other devices
 * or at boot context, so the last two parameters are accepted and ignored.
 */
export function applyPciFixups(dev: PciDev): void {
  for (const pass of FIXUP_PASSES) {
    for (const f of PCI_FIXUPS) {
      if (f.pass !== pass || !idMatches(f, dev)) continue;
      if (f.classDevice !== undefined && f.classDevice !== dev.classDevice) continue;
      const what = f.hook.run(dev);
      if (what !== null) dev.notes.push(`${f.hook.name}: ${what}`);
    }
  }
}
