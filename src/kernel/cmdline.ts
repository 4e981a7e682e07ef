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

/** pci= takes comma-separated options; device lists inside them use ';'. */
function parsePciOption(val: string, acs: AcsCmdline): void {
  for (const opt of val.split(",")) {
    if (opt.startsWith("disable_acs_redir=")) {
      acs.disableAcsRedir.push(
        ...opt.slice("disable_acs_redir=".length).split(";").filter(Boolean),
      );
    } else if (opt.startsWith("config_acs=")) {
      const c = parseConfigAcs(opt.slice("config_acs=".length));
      if (c) acs.configAcs.push(c);
    }
  }
}

/**
 * __pci_config_acs() reads flags only while its mask is still zero — once, from the first
 * entry — and matches every later entry as a bare device with those same flags; an entry
 * that is not a device ("1100@…" again) cannot be parsed and ends the list there.
 */
function parseConfigAcs(val: string): { mask: number; flags: number; devices: string[] } | null {
  const entries = val.split(";").filter(Boolean);
  const first = entries.shift();
  if (!first) return null;
  const at = first.indexOf("@");
  if (at < 0) return null; // "ACS Flags missing"
  let mask = 0;
  let flags = 0;
  const bits = [...first.slice(0, at)].reverse();
  for (let shift = 0; shift < bits.length; shift++) {
    const c = bits[shift];
    if (c === "0") mask |= 1 << shift;
    else if (c === "1") {
      mask |= 1 << shift;
      flags |= 1 << shift;
    } else if (c !== "x" && c !== "X") return null; // "Invalid ACS flags... Ignoring"
  }
  if (mask & ~0x7f) return null; // "Invalid ACS flags specified"
  const devices = [first.slice(at + 1)];
  for (const e of entries) {
    if (e.includes("@")) break; // "Can't parse ACS command line parameter"
    devices.push(e);
  }
  return { mask, flags, devices };
}

/**
 * param_set_bool() of a module parameter (kernel/params.c): absent is false, a bare
 * "module.param" is true, else kstrtobool() (lib/kstrtox.c): y/Y/t/T/1 or "on".
 */
export function kstrtobool(v: string | undefined): boolean {
  if (v === undefined) return false;
  if (v === "") return true;
  const c = v[0];
  if (c === "y" || c === "Y" || c === "1" || c === "t" || c === "T") return true;
  return v.toLowerCase().startsWith("on");
}
