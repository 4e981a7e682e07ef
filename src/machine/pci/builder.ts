/**
 * Lays a function's declarative description out as configuration-space bytes, the way a
 * device's hardware presents them: type 0/1 header, the capability list (PM, PCIe,
 * Advanced Features) from 0x40 and the extended list (ACS, ARI, SR-IOV) from 0x100, with
 * write masks on the registers software may change. Raw bytes (from a sysfs `config`
 * file or an `lspci -xxxx` dump) are taken as they are and get their masks by walking
 * the capabilities they contain.
 *
 * Register layout: include/uapi/linux/pci_regs.h (Linux 6.12); PCIe 6.0 §7.5 and §7.7.
 */
import * as R from "../../uapi/pci_regs.js";
import { ConfigSpace } from "./config-space.js";

export type AcsBitName = "sv" | "tb" | "rr" | "cr" | "uf" | "ec" | "dt";

export const ACS_BIT: Record<AcsBitName, number> = {
  sv: R.PCI_ACS_SV,
  tb: R.PCI_ACS_TB,
  rr: R.PCI_ACS_RR,
  cr: R.PCI_ACS_CR,
  uf: R.PCI_ACS_UF,
  ec: R.PCI_ACS_EC,
  dt: R.PCI_ACS_DT,
};

/** What hardware a function is; the host spec's FunctionSpec is assignable to it. */
export interface FunctionDesc {
  id?: { vendor: number; device: number };
  subsystem?: { vendor: number; device: number };
  class?: number;
  revision?: number;
  header?: "normal" | "bridge" | "cardbus";
  multifunction?: boolean;
  /** PCIe Device/Port Type code (PCI_EXP_TYPE_*), absent for conventional PCI. */
  pcieTypeCode?: number;
  ariForwarding?: boolean;
  ari?: { nextFunction: number };
  acs?: { cap: AcsBitName[]; ctl: AcsBitName[] };
  flr?: boolean;
  pm?: { noSoftReset: boolean };
  af?: { flr: boolean; tp: boolean };
  sriov?: {
    total: number;
    initial?: number;
    offset: number;
    stride: number;
    vfDevice?: number;
  };
  bars?: {
    index: number;
    size: number;
    kind: "mem32" | "mem64" | "io";
    prefetchable: boolean;
    /** The address firmware assigned. */
    address?: number;
  }[];
  secondary?: number;
  subordinate?: number;
  primary?: number;
}

const PM_AT = 0x40;
/** Bytes each laid-out standard capability occupies. */
const CAP_LEN: Record<number, number> = {
  [R.PCI_CAP_ID_PM]: 8,
  [R.PCI_CAP_ID_EXP]: 0x3c,
  [R.PCI_CAP_ID_AF]: 6,
};
const EXP_AT = 0x50;
const AF_AT = 0x90;

/**
 * `visible` = 64 models an unprivileged capture: only the header is known, the capability
 * list behind it was not readable and is left empty (reads give zeros, marked unknown).
 */
export function buildConfigSpace(d: FunctionDesc, visible?: 64): ConfigSpace {
  const pcie = d.pcieTypeCode !== undefined;
  const cs = new ConfigSpace(pcie ? 4096 : 256);
  cs.defined = [[0, 0x40]];
  const header = d.header ?? (d.secondary !== undefined ? "bridge" : "normal");
  const hdrType =
    (header === "bridge"
      ? R.PCI_HEADER_TYPE_BRIDGE
      : header === "cardbus"
        ? R.PCI_HEADER_TYPE_CARDBUS
        : R.PCI_HEADER_TYPE_NORMAL) | (d.multifunction ? R.PCI_HEADER_TYPE_MFD : 0);
  cs.set(R.PCI_VENDOR_ID, 2, d.id?.vendor ?? 0x1b36);
  cs.set(R.PCI_DEVICE_ID, 2, d.id?.device ?? 0x0001);
  cs.set(R.PCI_REVISION_ID, 1, d.revision ?? 0);
  cs.set(R.PCI_CLASS_PROG, 1, (d.class ?? 0) & 0xff);
  cs.set(R.PCI_CLASS_DEVICE, 2, (d.class ?? 0) >> 8);
  cs.set(R.PCI_HEADER_TYPE, 1, hdrType);
  if (header === "bridge") {
    cs.set(R.PCI_PRIMARY_BUS, 1, d.primary ?? 0);
    cs.set(R.PCI_SECONDARY_BUS, 1, d.secondary ?? 0);
    cs.set(R.PCI_SUBORDINATE_BUS, 1, d.subordinate ?? d.secondary ?? 0);
  } else if (header === "normal" && d.subsystem) {
    cs.set(R.PCI_SUBSYSTEM_VENDOR_ID, 2, d.subsystem.vendor);
    cs.set(R.PCI_SUBSYSTEM_ID, 2, d.subsystem.device);
  }
  for (const bar of header === "normal" ? (d.bars ?? []) : []) {
    const off = R.PCI_BASE_ADDRESS_0 + 4 * bar.index;
    const flags =
      bar.kind === "io"
        ? R.PCI_BASE_ADDRESS_SPACE_IO
        : (bar.kind === "mem64" ? R.PCI_BASE_ADDRESS_MEM_TYPE_64 : 0) |
          (bar.prefetchable ? R.PCI_BASE_ADDRESS_MEM_PREFETCH : 0);
    const addr = bar.address ?? 0;
    cs.set(off, 4, (addr % 2 ** 32) | flags);
    if (bar.kind === "mem64") cs.set(off + 4, 4, Math.floor(addr / 2 ** 32));
    // Sizing (PCI 3.0 §6.2.5.1): the address bits below the size are hard-wired to zero,
    // so software writing all ones reads back ~(size - 1) plus the flag bits.
    const low = bar.size >= 2 ** 32 ? 0 : 2 ** 32 - bar.size;
    cs.allow(off, 4, low & (bar.kind === "io" ? 0xfffffffc : 0xfffffff0));
    if (bar.kind === "mem64") {
      cs.allow(off + 4, 4, bar.size >= 2 ** 32 ? 2 ** 32 - bar.size / 2 ** 32 : 0xffffffff);
    }
  }

  // Standard capabilities, chained from 0x40.
  const caps: { at: number; id: number; fill: () => void }[] = [];
  caps.push({
    at: PM_AT,
    id: R.PCI_CAP_ID_PM,
    fill: () => {
      cs.set(PM_AT + 2, 2, 0x0003); // PMC: version 3
      cs.set(PM_AT + R.PCI_PM_CTRL, 2, d.pm?.noSoftReset ? R.PCI_PM_CTRL_NO_SOFT_RESET : 0);
    },
  });
  if (pcie) {
    caps.push({
      at: EXP_AT,
      id: R.PCI_CAP_ID_EXP,
      fill: () => {
        cs.set(EXP_AT + R.PCI_EXP_FLAGS, 2, 0x0002 | ((d.pcieTypeCode ?? 0) << 4));
        cs.set(EXP_AT + R.PCI_EXP_DEVCAP, 4, d.flr ? R.PCI_EXP_DEVCAP_FLR : 0);
        cs.set(EXP_AT + R.PCI_EXP_DEVCAP2, 4, d.ariForwarding ? R.PCI_EXP_DEVCAP2_ARI : 0);
      },
    });
  }
  if (d.af) {
    const af = d.af;
    caps.push({
      at: AF_AT,
      id: R.PCI_CAP_ID_AF,
      fill: () => {
        cs.set(AF_AT + 2, 1, 6);
        cs.set(
          AF_AT + R.PCI_AF_CAP,
          1,
          (af.tp ? R.PCI_AF_CAP_TP : 0) | (af.flr ? R.PCI_AF_CAP_FLR : 0),
        );
      },
    });
  }
  if (visible) {
    cs.set(R.PCI_STATUS, 2, R.PCI_STATUS_CAP_LIST);
    cs.set(R.PCI_CAPABILITY_LIST, 1, 0x40);
    cs.known = visible;
    cs.defined = null;
    allowSoftwareWrites(cs);
    return cs;
  }
  if (header !== "cardbus") {
    cs.set(R.PCI_STATUS, 2, R.PCI_STATUS_CAP_LIST);
    cs.set(R.PCI_CAPABILITY_LIST, 1, caps[0]?.at ?? 0);
    caps.forEach((c, i) => {
      cs.set(c.at, 1, c.id);
      cs.set(c.at + 1, 1, caps[i + 1]?.at ?? 0);
      c.fill();
      cs.defined?.push([c.at, c.at + (CAP_LEN[c.id] ?? 8)]);
    });
  }

  // Extended capabilities, chained from 0x100.
  if (pcie) {
    const ext: { id: number; len: number; fill: (at: number) => void }[] = [];
    if (d.acs) {
      const acs = d.acs;
      ext.push({
        id: R.PCI_EXT_CAP_ID_ACS,
        len: 8,
        fill: (at) => {
          cs.set(at + R.PCI_ACS_CAP, 2, acsMask(acs.cap));
          cs.set(at + R.PCI_ACS_CTRL, 2, acsMask(acs.ctl));
        },
      });
    }
    if (d.ari) {
      const ari = d.ari;
      ext.push({
        id: R.PCI_EXT_CAP_ID_ARI,
        len: 8,
        fill: (at) => cs.set(at + R.PCI_ARI_CAP, 2, (ari.nextFunction & 0xff) << 8),
      });
    }
    if (d.sriov) {
      const s = d.sriov;
      ext.push({
        id: R.PCI_EXT_CAP_ID_SRIOV,
        len: 0x40,
        fill: (at) => {
          cs.set(at + R.PCI_SRIOV_INITIAL_VF, 2, s.initial ?? s.total);
          cs.set(at + R.PCI_SRIOV_TOTAL_VF, 2, s.total);
          cs.set(at + R.PCI_SRIOV_VF_OFFSET, 2, s.offset);
          cs.set(at + R.PCI_SRIOV_VF_STRIDE, 2, s.stride);
          cs.set(at + R.PCI_SRIOV_VF_DID, 2, s.vfDevice ?? d.id?.device ?? 0);
        },
      });
    }
    let at = 0x100;
    ext.forEach((c, i) => {
      const next = i + 1 < ext.length ? at + c.len : 0;
      cs.set(at, 4, c.id | (1 << 16) | (next << 20));
      c.fill(at);
      at += c.len;
    });
  }
  allowSoftwareWrites(cs);
  return cs;
}

/** Raw bytes as captured; `known` is how many of them are real (64 when unprivileged). */
export function rawConfigSpace(bytes: Uint8Array): ConfigSpace {
  const cs = new ConfigSpace(bytes.length > 256 ? 4096 : 256, bytes.length);
  cs.load(bytes);
  allowSoftwareWrites(cs);
  return cs;
}

function acsMask(bits: AcsBitName[]): number {
  return bits.reduce((m, b) => m | ACS_BIT[b], 0);
}

/** Write masks for the registers the kernel programs, found by walking the capabilities. */
function allowSoftwareWrites(cs: ConfigSpace): void {
  allowHeaderWrites(cs);
  allowCapabilityWrites(cs);
}

/** The header's writable registers (BARs aside: their masks follow their sizes). */
export function allowHeaderWrites(cs: ConfigSpace): void {
  // Command: I/O, memory, bus master, SERR#, INTx disable; Parity Error Response reads 0,
  // as on QEMU's devices (hw/pci/pci.c pci_init_wmask), which the recorded hosts are.
  cs.allow(R.PCI_COMMAND, 2, 0x0507);
  // Cache Line Size: read-write on every function (PCI 3.0 §6.2.4; PCIe 6.0 §7.5.1.1.7
  // keeps it RW with no effect; pci_init_wmask too).
  cs.allow(R.PCI_CACHE_LINE_SIZE, 1, 0xff);
  const hdr = cs.read(R.PCI_HEADER_TYPE, 1) & R.PCI_HEADER_TYPE_MASK;
  if (hdr === R.PCI_HEADER_TYPE_BRIDGE) {
    cs.allow(R.PCI_PRIMARY_BUS, 1, 0xff);
    cs.allow(R.PCI_SECONDARY_BUS, 1, 0xff);
    cs.allow(R.PCI_SUBORDINATE_BUS, 1, 0xff);
    cs.allow(R.PCI_BRIDGE_CONTROL, 2, 0x0fff);
  }
}

/** The capabilities' control registers, as the PCI and PCIe specifications make them. */
function allowCapabilityWrites(cs: ConfigSpace): void {
  for (const [id, at] of walkCaps(cs)) {
    if (id === R.PCI_CAP_ID_PM) cs.allow(at + R.PCI_PM_CTRL, 2, 0x8103);
    if (id === R.PCI_CAP_ID_MSI) {
      // Flags: enable and multiple-message enable; then address (64-bit when bit 7), data, mask.
      const flags = cs.read(at + 2, 2);
      cs.allow(at + 2, 2, 0x0071);
      const is64 = (flags & 0x80) !== 0;
      cs.allow(at + 4, 4, 0xfffffffc);
      if (is64) cs.allow(at + 8, 4, 0xffffffff);
      cs.allow(at + (is64 ? 12 : 8), 2, 0xffff);
      if (flags & 0x100) cs.allow(at + (is64 ? 16 : 12), 4, 0xffffffff);
    }
    if (id === R.PCI_CAP_ID_MSIX) cs.allow(at + 2, 2, 0xc000); // enable, function mask
    if (id === R.PCI_CAP_ID_EXP) {
      cs.allow(at + R.PCI_EXP_DEVCTL, 2, 0xffff);
      cs.allow(at + R.PCI_EXP_DEVCTL2, 2, 0xffff);
    }
  }
  for (const [id, at] of walkExtCaps(cs)) {
    if (id === R.PCI_EXT_CAP_ID_ACS) {
      // Only advertised features have a working enable bit (PCIe 6.0 §7.7.8.3).
      cs.allow(at + R.PCI_ACS_CTRL, 2, cs.read(at + R.PCI_ACS_CAP, 2) & 0x7f);
      // +8: the Egress Control Vector (RW); Intel SPT/UPT root ports keep their real ACS
      // control dword there (quirks.c pci_quirk_enable_intel_spt_pch_acs writes it).
      cs.allow(at + 8, 4, 0xffffffff);
    }
    if (id === R.PCI_EXT_CAP_ID_SRIOV) {
      cs.allow(at + R.PCI_SRIOV_CTRL, 2, 0x001f);
      cs.allow(at + R.PCI_SRIOV_NUM_VF, 2, 0xffff);
    }
  }
}

/** [id, offset] of each standard capability (hardware view, no TTL subtleties needed). */
export function walkCaps(cs: ConfigSpace): [number, number][] {
  const out: [number, number][] = [];
  if (!(cs.read(R.PCI_STATUS, 2) & R.PCI_STATUS_CAP_LIST)) return out;
  let pos = cs.read(R.PCI_CAPABILITY_LIST, 1) & ~3;
  for (let ttl = R.PCI_FIND_CAP_TTL; pos >= 0x40 && ttl > 0; ttl--) {
    const id = cs.read(pos, 1);
    if (id === 0xff) break;
    out.push([id, pos]);
    pos = cs.read(pos + 1, 1) & ~3;
  }
  return out;
}

export function walkExtCaps(cs: ConfigSpace): [number, number][] {
  const out: [number, number][] = [];
  if (cs.size <= 256) return out;
  let pos = 0x100;
  for (let ttl = R.PCI_EXT_CAP_TTL; ttl > 0; ttl--) {
    const h = cs.read(pos, 4);
    if (h === 0 || h === 0xffffffff) break;
    out.push([h & 0xffff, pos]);
    pos = (h >>> 20) & 0xffc;
    if (pos < 0x100) break;
  }
  return out;
}
