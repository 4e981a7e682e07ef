/**
 * The kernel command-line options that shape IOMMU groups, as
 * Documentation/admin-guide/kernel-parameters.txt (Linux 6.12) defines them:
 * intel_iommu= (drivers/iommu/intel/iommu.c), amd_iommu= (drivers/iommu/amd/init.c),
 * iommu=off (arch/x86/kernel/pci-dma.c), pci=disable_acs_redir= / pci=config_acs=
 * (drivers/pci/pci.c), and the out-of-tree pcie_acs_override= patch.
 *
 * Intel units are taken as enabled unless intel_iommu=off: distributions build with
 * CONFIG_INTEL_IOMMU_DEFAULT_ON=y, and every input that shows groups proves it was on.
 */
import type { AcsCmdline } from "./pci/acs.js";
import { parseAcsOverride, type AcsOverride } from "./pci/quirks.js";

export interface BootParams {
  raw: string;
  intelIommu: boolean;
  amdIommu: boolean;
  iommuOff: boolean;
  acs: AcsCmdline;
  acsOverride: AcsOverride | null;
}

export function parseCmdline(raw: string): BootParams {
  const p: BootParams = {
    raw,
    intelIommu: true,
    amdIommu: true,
    iommuOff: false,
    acs: { disableAcsRedir: [], configAcs: [] },
    acsOverride: null,
  };
  for (const word of raw.trim().split(/\s+/).filter(Boolean)) {
    const eq = word.indexOf("=");
    const key = eq < 0 ? word : word.slice(0, eq);
    const val = eq < 0 ? "" : word.slice(eq + 1);
    switch (key) {
      case "intel_iommu":
        for (const o of val.split(",")) {
          if (o === "off") p.intelIommu = false;
          if (o === "on") p.intelIommu = true;
        }
        break;
      case "amd_iommu":
        for (const o of val.split(",")) if (o === "off") p.amdIommu = false;
        break;
      case "iommu":
        for (const o of val.split(",")) if (o === "off") p.iommuOff = true;
        break;
      case "pcie_acs_override":
        p.acsOverride = parseAcsOverride(val);
        break;
      case "pci":
        parsePciOption(val, p.acs);
        break;
    }
  }
  return p;
}

/**
 * pci= takes comma-separated options (pci_setup()); device lists inside them use ';'. A
 * later disable_acs_redir= or config_acs= replaces an earlier one: the kernel keeps one
 * pointer per parameter.
 */
function parsePciOption(val: string, acs: AcsCmdline): void {
  for (const opt of val.split(",")) {
    if (opt.startsWith("disable_acs_redir=")) {
      acs.disableAcsRedir = opt.slice("disable_acs_redir=".length).split(";").filter(Boolean);
    } else if (opt.startsWith("config_acs=")) {
      acs.configAcs = parseConfigAcs(opt.slice("config_acs=".length));
    }
  }
}

/**
 * __pci_config_acs() as 6.12.117 has it (upstream's "PCI/ACS: Fix 'pci=config_acs='
 * parameter"): every entry is `flags@device` with flags of its own, read right to left
 * ('0', '1' or 'x', bit 0 = SV) into a u16 mask and flags. An entry without '@' ("ACS
 * Flags missing"), with another character ("Invalid ACS flags... Ignoring") or with a bit
 * above DT ("Invalid ACS flags specified") ends the list there.
 */
function parseConfigAcs(val: string): AcsCmdline["configAcs"] {
  const rules: AcsCmdline["configAcs"] = [];
  const entries = val.split(";");
  if (entries.at(-1) === "") entries.pop(); // a trailing ';' ends the string
  for (const entry of entries) {
    const at = entry.indexOf("@");
    if (at < 0) break;
    let mask = 0;
    let flags = 0;
    const bits = [...entry.slice(0, at)].reverse();
    for (let shift = 0; shift < bits.length; shift++) {
      const c = bits[shift] as string;
      if (c === "0" || c === "1") mask |= 1 << shift;
      if (c === "1") flags |= 1 << shift;
      if (!"01xX".includes(c)) return rules;
    }
    mask &= 0xffff;
    flags &= 0xffff;
    if (mask & ~0x7f) break;
    rules.push({ mask, flags, device: entry.slice(at + 1) });
  }
  return rules;
}

/**
 * param_set_bool() of a module parameter (kernel/params.c) on the command line: absent is
 * false, a bare "module.param" is true, else kstrtobool(), and a value it refuses leaves
 * the default (false).
 */
export function kstrtobool(v: string | undefined): boolean {
  if (v === undefined) return false;
  return parseBool(v === "" ? "1" : v) ?? false;
}

/**
 * kstrtobool() (lib/kstrtox.c): y/Y/t/T/1 or "on" is true, n/N/f/F/0 or "off" false, by
 * the first one or two characters; anything else null (-EINVAL).
 */
export function parseBool(v: string): boolean | null {
  const c = v[0];
  if (c !== undefined && "yYtT1".includes(c)) return true;
  if (c !== undefined && "nNfF0".includes(c)) return false;
  if (c === "o" || c === "O") {
    const d = v[1];
    if (d === "n" || d === "N") return true;
    if (d === "f" || d === "F") return false;
  }
  return null;
}
