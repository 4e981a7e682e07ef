/**
 * PCI Access Control Services, drivers/pci/pci.c (Linux 6.12.117):
 * pci_acs_enabled / pci_acs_flags_enabled / pci_acs_path_enabled decide isolation, and
 * pci_enable_acs (from pci_acs_init) programs the control register at enumeration:
 * device-specific enable quirks first, else pci_std_enable_acs (SV, RR, CR, UF; TB only
 * for external-facing/untrusted ports or with ATS disabled), then the
 * pci=disable_acs_redir= and pci=config_acs= command-line overrides. Since 6.12.117 an
 * override sets the whole control register: bits outside its mask go back to the firmware
 * value (the kernel's own enabling is dropped), bits inside it take the given flags.
 *
 * Each decision is returned as an AcsVerdict so explanations carry the exact reason.
 */
import * as R from "../../uapi/pci_regs.js";
import type { PciDev } from "./pci.js";
import { pcieTypeName } from "./pci.js";
import {
  pciDevSpecificAcsEnabled,
  pciDevSpecificDisableAcsRedir,
  pciDevSpecificEnableAcs,
  type QuirkContext,
} from "./quirks.js";

/** REQ_ACS_FLAGS in drivers/iommu/iommu.c */
export const REQ_ACS_FLAGS = R.PCI_ACS_SV | R.PCI_ACS_RR | R.PCI_ACS_CR | R.PCI_ACS_UF;

const FLAG_NAMES: [number, string][] = [
  [R.PCI_ACS_SV, "SrcValid"],
  [R.PCI_ACS_TB, "TransBlk"],
  [R.PCI_ACS_RR, "ReqRedir"],
  [R.PCI_ACS_CR, "CmpltRedir"],
  [R.PCI_ACS_UF, "UpstreamFwd"],
  [R.PCI_ACS_EC, "EgressCtrl"],
  [R.PCI_ACS_DT, "DirectTrans"],
];

export function acsFlagNames(flags: number): string[] {
  return FLAG_NAMES.filter(([b]) => flags & b).map(([, n]) => n);
}

export type AcsBasis =
  "quirk" | "not-pcie" | "acs-not-applicable" | "capability" | "no-capability" | "single-function";

export interface AcsVerdict {
  dev: string;
  enabled: boolean;
  basis: AcsBasis;
  /** C function of the quirk that decided. */
  quirk?: string;
  /** Required flags the control register leaves off (basis "capability"). */
  missing?: string[];
  /** The answer depends on config bytes the capture did not hold. */
  unknown?: boolean;
  text: string;
}

/** pci_acs_enabled() */
export function pciAcsEnabled(dev: PciDev, flags: number, ctx: QuirkContext): AcsVerdict {
  const v = (
    enabled: boolean,
    basis: AcsBasis,
    text: string,
    extra: Partial<AcsVerdict> = {},
  ): AcsVerdict => ({
    dev: dev.name,
    enabled,
    basis,
    text,
    ...(dev.capsUnknown ? { unknown: true } : {}),
    ...extra,
  });
  const q = pciDevSpecificAcsEnabled(dev, flags, ctx);
  if (q) {
    return v(
      q.ret > 0,
      "quirk",
      `kernel quirk ${q.quirk} says ACS is ${q.ret > 0 ? "" : "not "}enforced`,
      {
        quirk: q.quirk,
      },
    );
  }
  if (!dev.isPcie())
    return v(false, "not-pcie", "conventional PCI: devices on a shared bus can reach each other");
  const type = dev.pcieType();
  switch (type) {
    case R.PCI_EXP_TYPE_PCIE_BRIDGE:
    case R.PCI_EXP_TYPE_PCI_BRIDGE:
    case R.PCI_EXP_TYPE_RC_EC:
      return v(
        false,
        "acs-not-applicable",
        `${pcieTypeName(type)}: ACS never applies (PCIe 3.0 §6.12.1)`,
      );
    case R.PCI_EXP_TYPE_DOWNSTREAM:
    case R.PCI_EXP_TYPE_ROOT_PORT:
      return flagsEnabled(dev, flags, v);
    case R.PCI_EXP_TYPE_ENDPOINT:
    case R.PCI_EXP_TYPE_UPSTREAM:
    case R.PCI_EXP_TYPE_LEG_END:
    case R.PCI_EXP_TYPE_RC_END:
      if (dev.multifunction) return flagsEnabled(dev, flags, v);
  }
  return v(
    true,
    "single-function",
    `single-function ${pcieTypeName(type)}: no peer-to-peer inside it`,
  );
}

/** pci_acs_flags_enabled(): unadvertised features count as hard-wired on, except EC. */
function flagsEnabled(
  dev: PciDev,
  flags: number,
  v: (e: boolean, b: AcsBasis, t: string, x?: Partial<AcsVerdict>) => AcsVerdict,
): AcsVerdict {
  const pos = dev.acsCap;
  if (!pos) return v(false, "no-capability", "no ACS capability");
  const cap = dev.read16(pos + R.PCI_ACS_CAP);
  const need = flags & (cap | R.PCI_ACS_EC);
  const ctrl = dev.read16(pos + R.PCI_ACS_CTRL);
  const missing = acsFlagNames(need & ~ctrl);
  if (missing.length === 0) {
    const hard = acsFlagNames(flags & ~(cap | R.PCI_ACS_EC));
    return v(
      true,
      "capability",
      hard.length
        ? `ACS enabled (${acsFlagNames(need).join(" ") || "nothing controllable"}; ${hard.join(" ")} not implemented, so treated as hard-wired)`
        : `ACS enabled (${acsFlagNames(need).join(" ")})`,
    );
  }
  return v(false, "capability", `ACS ${missing.join(" ")} off in ACSCtl`, { missing });
}

export interface AcsPathResult {
  enabled: boolean;
  /** Every function tested, bottom-up; the last one decided when the path fails. */
  checked: AcsVerdict[];
}

/** pci_acs_path_enabled(start, NULL, flags): every function up to the root bus must pass. */
export function pciAcsPathEnabled(start: PciDev, flags: number, ctx: QuirkContext): AcsPathResult {
  const checked: AcsVerdict[] = [];
  let pdev: PciDev | null = start;
  while (pdev) {
    const verdict = pciAcsEnabled(pdev, flags, ctx);
    checked.push(verdict);
    if (!verdict.enabled) return { enabled: false, checked };
    if (pdev.bus.isRoot) return { enabled: true, checked };
    pdev = pdev.bus.self;
  }
  return { enabled: true, checked };
}

/** pci_enable_acs(): enumeration-time programming of the ACS control register. */
export function pciEnableAcs(dev: PciDev, cmdline: AcsCmdline): void {
  const enable = !pciDevSpecificEnableAcs(dev);
  const pos = dev.acsCap;
  if (!pos) return;
  const cap = dev.read16(pos + R.PCI_ACS_CAP);
  const fw = dev.read16(pos + R.PCI_ACS_CTRL);
  let ctrl = fw;
  if (enable) ctrl |= cap & (R.PCI_ACS_SV | R.PCI_ACS_RR | R.PCI_ACS_CR | R.PCI_ACS_UF);
  // __pci_config_acs(): a device quirk may handle the request itself (Intel SPT keeps its
  // control in a dword); otherwise ctrl = (fw_ctrl & ~mask) | (flags & mask).
  const apply = (mask: number, flags: number) => {
    if (pciDevSpecificDisableAcsRedir(dev)) return;
    ctrl = ((fw & ~mask) | (flags & mask)) & 0xffff;
  };
  const redir = R.PCI_ACS_RR | R.PCI_ACS_CR | R.PCI_ACS_EC;
  if (matchesAny(dev, cmdline.disableAcsRedir)) {
    apply(redir, ~redir & 0xffff);
    dev.notes.push("pci=disable_acs_redir matched: ACS control reprogrammed");
  }
  // The first entry naming the device decides.
  const rule = cmdline.configAcs.find((r) => matchesAny(dev, [r.device]));
  if (rule) {
    apply(rule.mask, rule.flags);
    dev.notes.push(
      `pci=config_acs matched: ACS control set to 0x${ctrl.toString(16).padStart(4, "0")}`,
    );
  }
  dev.write16(pos + R.PCI_ACS_CTRL, ctrl);
}

export interface AcsCmdline {
  disableAcsRedir: string[];
  /** pci=config_acs= entries in order: `flags@device`, mask and flags bit 0 = SV. */
  configAcs: { mask: number; flags: number; device: string }[];
}

/** pci_dev_str_match() for the two forms people use: [dddd:]bb:dd.f and pci:vvvv:dddd. */
function matchesAny(dev: PciDev, specs: string[]): boolean {
  return specs.some((s) => {
    const id = /^pci:([0-9a-f]{4}):([0-9a-f]{4})$/i.exec(s);
    if (id)
      return (
        parseInt(id[1] as string, 16) === dev.vendor && parseInt(id[2] as string, 16) === dev.device
      );
    const full = s.includes(":") && s.split(":").length === 2 ? `0000:${s}` : s;
    return full.toLowerCase() === dev.name;
  });
}
