import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { PciConfigAccess } from "../../src/machine/hw.js";
import { PciBus, PciDev } from "../../src/kernel/pci/pci.js";
import {
  applyPciFixups,
  parseAcsOverride,
  pciDevSpecificAcsEnabled,
  pciDevSpecificDisableAcsRedir,
  pciDevSpecificEnableAcs,
  pciDevSpecificResetMethod,
  type AcsOverride,
  type QuirkContext,
} from "../../src/kernel/pci/quirks.js";
import * as R from "../../src/uapi/pci_regs.js";

/** Config space per (bus, devfn) as little-endian bytes; absent functions read all ones. */
class FakeConfig implements PciConfigAccess {
  private readonly spaces = new Map<string, Uint8Array>();
  known = R.PCI_CFG_SPACE_EXP_SIZE;

  space(bus: number, devfn: number): Uint8Array {
    const key = `${bus}:${devfn}`;
    let s = this.spaces.get(key);
    if (!s) {
      s = new Uint8Array(R.PCI_CFG_SPACE_EXP_SIZE);
      this.spaces.set(key, s);
    }
    return s;
  }
  read(_domain: number, bus: number, devfn: number, off: number, width: 1 | 2 | 4): number {
    const s = this.spaces.get(`${bus}:${devfn}`);
    if (!s) return 2 ** (8 * width) - 1;
    let v = 0;
    for (let i = width - 1; i >= 0; i--) v = v * 256 + (s[off + i] ?? 0);
    return v;
  }
  write(_d: number, bus: number, devfn: number, off: number, width: 1 | 2 | 4, value: number) {
    const s = this.space(bus, devfn);
    for (let i = 0; i < width; i++) s[off + i] = Math.floor(value / 2 ** (8 * i)) & 0xff;
  }
  configKnown(_d: number, _b: number, _devfn: number, off: number, len: number): boolean {
    return off + len <= this.known;
  }
}

interface Spec {
  vendor: number;
  device: number;
  bus?: PciBus;
  devfn?: number;
  /** PCIe port type; omitted for conventional PCI. */
  type?: number;
  multifunction?: boolean;
  acsCap?: number;
  class?: number;
  revision?: number;
  hdrType?: number;
  subsystem?: [number, number];
}

const PCIE_CAP = 0x40;

function mkDev(cfg: FakeConfig, root: PciBus, s: Spec): PciDev {
  const bus = s.bus ?? root;
  const devfn = s.devfn ?? 0;
  cfg.space(bus.number, devfn);
  const dev = new PciDev(bus, devfn, cfg);
  dev.vendor = s.vendor;
  dev.device = s.device;
  dev.multifunction = s.multifunction ?? false;
  dev.class = s.class ?? 0x020000;
  dev.revision = s.revision ?? 0;
  dev.hdrType = s.hdrType ?? R.PCI_HEADER_TYPE_NORMAL;
  if (s.subsystem) [dev.subsystemVendor, dev.subsystemDevice] = s.subsystem;
  if (s.type !== undefined) {
    dev.pcieCap = PCIE_CAP;
    dev.pcieFlagsReg = (s.type << 4) | 2;
  }
  dev.acsCap = s.acsCap ?? 0;
  return dev;
}

function world() {
  const cfg = new FakeConfig();
  const root = new PciBus(0, 0, null, null);
  const dev = (s: Spec) => mkDev(cfg, root, s);
  /** A bus below a bridge of the given PCIe type (undefined: a conventional bridge). */
  const busBelow = (number: number, bridgeType?: number, vendor = 0x1234) => {
    const bridge = dev({ vendor, device: 0x0001, type: bridgeType, devfn: R.PCI_DEVFN(1, 0) });
    return new PciBus(0, number, bridge, root);
  };
  return { cfg, root, dev, busBelow };
}

const REQ = R.PCI_ACS_SV | R.PCI_ACS_RR | R.PCI_ACS_CR | R.PCI_ACS_UF;
const NO_CTX: QuirkContext = { hasIvrs: false, acsOverride: null };
const IVRS: QuirkContext = { hasIvrs: true, acsOverride: null };
const { PCI_EXP_TYPE_ROOT_PORT: RP, PCI_EXP_TYPE_DOWNSTREAM: DSP, PCI_EXP_TYPE_ENDPOINT: EP } = R;
const { PCI_EXP_TYPE_RC_END: RCIEP, PCI_EXP_TYPE_UPSTREAM: USP } = R;

function acs(d: PciDev, flags = REQ, ctx = NO_CTX) {
  return pciDevSpecificAcsEnabled(d, flags, ctx);
}

describe("pci_dev_acs_enabled[]", () => {
  test("amd_sb_acs answers only for multifunction root-bus functions with IVRS", () => {
    const { dev, busBelow } = world();
    const sb = dev({ vendor: 0x1002, device: 0x4385, multifunction: true, type: EP });
    // SV and UF are dropped as meaningless for a multifunction device; RR+CR are implied.
    assert.deepEqual(acs(sb, REQ, IVRS), { ret: 1, quirk: "pci_quirk_amd_sb_acs" });
    assert.deepEqual(acs(sb, R.PCI_ACS_DT, IVRS), { ret: 0, quirk: "pci_quirk_amd_sb_acs" });
    assert.equal(acs(sb, REQ, NO_CTX), null);
    const fch = dev({ vendor: 0x1022, device: 0x780f, multifunction: true });
    assert.deepEqual(acs(fch, REQ, IVRS), { ret: 1, quirk: "pci_quirk_amd_sb_acs" });
    const single = dev({ vendor: 0x1002, device: 0x4385, multifunction: false });
    assert.equal(acs(single, REQ, IVRS), null);
    const below = dev({
      vendor: 0x1002,
      device: 0x4385,
      multifunction: true,
      bus: busBelow(1, RP),
    });
    assert.equal(acs(below, REQ, IVRS), null);
    assert.equal(
      acs(dev({ vendor: 0x1002, device: 0x4386, multifunction: true }), REQ, IVRS),
      null,
    );
  });

  test("mf_endpoint_acs claims everything but EC, for listed IDs only", () => {
    const { dev } = world();
    for (const [vendor, device] of [
      [0x8086, 0x10fb],
      [0x1924, 0x0a03],
      [0x19a2, 0x0710],
      [0x10df, 0x0720],
      [0x14e4, 0x16d7],
      [0x1d17, 0x3038],
      [0x177d, 0xa059],
    ] as const) {
      const d = dev({ vendor, device, type: EP, multifunction: true });
      assert.deepEqual(acs(d, REQ | R.PCI_ACS_TB | R.PCI_ACS_DT), {
        ret: 1,
        quirk: "pci_quirk_mf_endpoint_acs",
      });
      assert.deepEqual(acs(d, R.PCI_ACS_EC), { ret: 0, quirk: "pci_quirk_mf_endpoint_acs" });
    }
    assert.equal(acs(dev({ vendor: 0x1924, device: 0x0a04, type: EP })), null);
    assert.equal(acs(dev({ vendor: 0x10df, device: 0x0710, type: EP })), null);
  });

  test("rciep_acs: Intel RCiEPs only", () => {
    const { dev } = world();
    assert.deepEqual(acs(dev({ vendor: 0x8086, device: 0x1234, type: RCIEP })), {
      ret: 1,
      quirk: "pci_quirk_rciep_acs",
    });
    assert.equal(acs(dev({ vendor: 0x8086, device: 0x1234, type: EP })), null);
    assert.equal(acs(dev({ vendor: 0x8087, device: 0x1234, type: RCIEP })), null);
  });

  test("the first answering entry wins, later matches are not consulted", () => {
    const { dev } = world();
    // 8086:10fb as an RCiEP: mf_endpoint (earlier) allows DT, rciep_acs (later) would not.
    const nic = dev({ vendor: 0x8086, device: 0x10fb, type: RCIEP });
    assert.deepEqual(acs(nic, R.PCI_ACS_DT), { ret: 1, quirk: "pci_quirk_mf_endpoint_acs" });
    // 177d:a026 as a root port: cavium_acs (earlier) refuses DT; as an endpoint it has no
    // answer and mf_endpoint_acs (later) allows it.
    const rp = dev({ vendor: 0x177d, device: 0xa026, type: RP });
    assert.deepEqual(acs(rp, R.PCI_ACS_DT), { ret: 0, quirk: "pci_quirk_cavium_acs" });
    const ep = dev({ vendor: 0x177d, device: 0xa026, type: EP });
    assert.deepEqual(acs(ep, R.PCI_ACS_DT), { ret: 1, quirk: "pci_quirk_mf_endpoint_acs" });
  });

  test("qcom_rp_acs, nxp_rp_acs, xgene_acs and brcm_acs claim SV/RR/CR/UF", () => {
    const { dev } = world();
    const cases = [
      [0x17cb, 0x0400, "pci_quirk_qcom_rp_acs"],
      [0x17cb, 0x0115, "pci_quirk_qcom_rp_acs"],
      [0x1dbf, 0x0401, "pci_quirk_qcom_rp_acs"],
      [0x1957, 0x8d81, "pci_quirk_nxp_rp_acs"],
      [0x1957, 0x8db9, "pci_quirk_nxp_rp_acs"],
      [0x10e8, 0xe004, "pci_quirk_xgene_acs"],
      [0x1def, 0xe00c, "pci_quirk_xgene_acs"],
      [0x14e4, 0xd714, "pci_quirk_brcm_acs"],
      // 6.12.117 additions: QCOM Hamoa and Glymur, Loongson root ports
      [0x17cb, 0x0111, "pci_quirk_qcom_rp_acs"],
      [0x17cb, 0x0120, "pci_quirk_qcom_rp_acs"],
      [0x0014, 0x3c09, "pci_quirk_loongson_acs"],
      [0x0014, 0x7a69, "pci_quirk_loongson_acs"],
    ] as const;
    for (const [vendor, device, quirk] of cases) {
      const d = dev({ vendor, device, type: RP });
      assert.deepEqual(acs(d), { ret: 1, quirk });
      assert.deepEqual(acs(d, R.PCI_ACS_EC), { ret: 0, quirk });
    }
    assert.equal(acs(dev({ vendor: 0x1957, device: 0x8d84, type: RP })), null);
    assert.equal(acs(dev({ vendor: 0x1dbf, device: 0x0400, type: RP })), null);
    assert.equal(acs(dev({ vendor: 0x1def, device: 0xe004, type: RP })), null);
    assert.equal(acs(dev({ vendor: 0x0014, device: 0x7a79, type: RP })), null);
  });

  test("intel_pch_acs claims isolation only after the enable quirk ran", () => {
    const { dev } = world();
    const rp = dev({ vendor: 0x8086, device: 0x1c10, type: RP });
    assert.deepEqual(acs(rp), { ret: 0, quirk: "pci_quirk_intel_pch_acs" });
    assert.deepEqual(acs(rp, 0), { ret: 1, quirk: "pci_quirk_intel_pch_acs" });
    rp.devFlags.add("PCI_DEV_FLAGS_ACS_ENABLED_QUIRK");
    assert.deepEqual(acs(rp), { ret: 1, quirk: "pci_quirk_intel_pch_acs" });
    assert.deepEqual(acs(rp, R.PCI_ACS_EC), { ret: 0, quirk: "pci_quirk_intel_pch_acs" });
    // Patsburg lists even IDs only; endpoints never match.
    assert.equal(acs(dev({ vendor: 0x8086, device: 0x1d11, type: RP })), null);
    assert.equal(acs(dev({ vendor: 0x8086, device: 0x1d10, type: RP }))?.ret, 0);
    assert.equal(acs(dev({ vendor: 0x8086, device: 0x1c10, type: EP })), null);
  });

  test("intel_spt_pch_acs reads the control dword at cap+8", () => {
    const { cfg, dev } = world();
    const rp = dev({ vendor: 0x8086, device: 0xa110, type: RP, acsCap: 0x100 });
    const s = cfg.space(0, 0);
    const setDword = (off: number, v: number) => cfg.write(0, 0, 0, off, 4, v);
    setDword(0x104, 0x001d); // capability: SV RR CR UF
    setDword(0x108, 0x001d);
    s[0x106] = 0; // the spec's control word would say "nothing enabled"
    assert.deepEqual(acs(rp), { ret: 1, quirk: "pci_quirk_intel_spt_pch_acs" });
    setDword(0x108, 0x000d); // UF advertised but off
    assert.deepEqual(acs(rp), { ret: 0, quirk: "pci_quirk_intel_spt_pch_acs" });
    setDword(0x104, 0x000d); // UF not advertised: implied
    assert.deepEqual(acs(rp), { ret: 1, quirk: "pci_quirk_intel_spt_pch_acs" });
    assert.deepEqual(acs(rp, R.PCI_ACS_EC), { ret: 0, quirk: "pci_quirk_intel_spt_pch_acs" });
    assert.equal(acs(dev({ vendor: 0x8086, device: 0xa110, type: RP })), null);
    assert.equal(acs(dev({ vendor: 0x8086, device: 0xa16b, type: RP, acsCap: 0x100 })), null);
    assert.equal(acs(dev({ vendor: 0x8086, device: 0x9d1b, type: RP, acsCap: 0x100 }))?.ret, 1);
  });

  test("intel_spt_pch_acs marks the device when the dword was not captured", () => {
    const { cfg, dev } = world();
    const rp = dev({ vendor: 0x8086, device: 0xa290, type: RP, acsCap: 0x100 });
    cfg.known = 0x100;
    acs(rp);
    assert.equal(rp.capsUnknown, true);
  });

  test("cavium_acs: ThunderX root ports", () => {
    const { dev } = world();
    for (const device of [0xa000, 0xa7ff, 0xaf84, 0xb884]) {
      assert.deepEqual(acs(dev({ vendor: 0x177d, device, type: RP })), {
        ret: 1,
        quirk: "pci_quirk_cavium_acs",
      });
    }
    assert.equal(acs(dev({ vendor: 0x177d, device: 0xa800, type: RP })), null);
    assert.equal(acs(dev({ vendor: 0x177d, device: 0xa000, type: EP })), null);
  });

  test("al_acs: root ports, SV/RR/CR/UF only", () => {
    const { dev } = world();
    const rp = dev({ vendor: 0x1c36, device: 0x0031, type: RP });
    assert.deepEqual(acs(rp), { ret: 1, quirk: "pci_quirk_al_acs" });
    assert.deepEqual(acs(rp, REQ | R.PCI_ACS_TB), { ret: 0, quirk: "pci_quirk_al_acs" });
    assert.equal(acs(dev({ vendor: 0x1c36, device: 0x0031, type: EP })), null);
  });

  test("zhaoxin_pcie_ports_acs: listed ports yes, every other Zhaoxin port a definite no", () => {
    const { dev } = world();
    const ok = { ret: 1, quirk: "pci_quirk_zhaoxin_pcie_ports_acs" };
    const no = { ret: 0, quirk: "pci_quirk_zhaoxin_pcie_ports_acs" };
    assert.deepEqual(acs(dev({ vendor: 0x1d17, device: 0x0710, type: RP })), ok);
    assert.deepEqual(acs(dev({ vendor: 0x1d17, device: 0x0752, type: DSP })), ok);
    assert.deepEqual(acs(dev({ vendor: 0x1d17, device: 0x0722, type: RP })), no);
    // Even a port with a real ACS capability gets the "no".
    assert.deepEqual(acs(dev({ vendor: 0x1d17, device: 0x0800, type: DSP, acsCap: 0x100 })), no);
    assert.equal(acs(dev({ vendor: 0x1d17, device: 0x0800, type: EP })), null);
    assert.equal(acs(dev({ vendor: 0x1d17, device: 0x0710 })), null);
  });

  test("wangxun_nic_acs: listed NICs yes, any other Wangxun function a definite no", () => {
    const { dev } = world();
    for (const device of [0x0100, 0x010f, 0x1001, 0x2001, 0x5025, 0x5140]) {
      assert.deepEqual(acs(dev({ vendor: 0x8088, device, type: EP, multifunction: true })), {
        ret: 1,
        quirk: "pci_quirk_wangxun_nic_acs",
      });
    }
    const no = { ret: 0, quirk: "pci_quirk_wangxun_nic_acs" };
    assert.deepEqual(acs(dev({ vendor: 0x8088, device: 0x1001, type: EP }), R.PCI_ACS_EC), no);
    assert.deepEqual(acs(dev({ vendor: 0x8088, device: 0x0110, type: EP })), no);
    assert.deepEqual(acs(dev({ vendor: 0x8088, device: 0x5011, type: RP })), no);
  });

  test("no entry: null", () => {
    const { dev } = world();
    assert.equal(acs(dev({ vendor: 0x10de, device: 0x1b80, type: EP })), null);
  });
});

describe("pcie_acs_override", () => {
  const over = (o: Partial<AcsOverride>): QuirkContext => ({
    hasIvrs: false,
    acsOverride: { downstream: false, multifunction: false, ids: [], ...o },
  });
  const OVR = { ret: 1, quirk: "pcie_acs_overrides" };

  test("parses the tokens the way pcie_acs_override_setup does", () => {
    assert.deepEqual(parseAcsOverride("downstream,multifunction"), {
      downstream: true,
      multifunction: true,
      ids: [],
    });
    assert.deepEqual(parseAcsOverride("id:10de:1b80,id:8086:A110,downstreamish").ids, [
      { vendor: 0x10de, device: 0x1b80 },
      { vendor: 0x8086, device: 0xa110 },
    ]);
    assert.equal(parseAcsOverride("id:10de:1b80,downstreamish").downstream, true);
    assert.deepEqual(parseAcsOverride("id:xyz:1234,id:10de,multi").ids, []);
    // The vendor window is four characters: "0x10" parses as 0x10.
    assert.deepEqual(parseAcsOverride("id:0x10de:1b80").ids, [{ vendor: 0x10, device: 0x1b80 }]);
    // strcspn(":") crosses the comma: the device comes from after "downstream", which is lost.
    assert.deepEqual(parseAcsOverride("id:10de,downstream:1234"), {
      downstream: false,
      multifunction: false,
      ids: [{ vendor: 0x10de, device: 0x1234 }],
    });
    // Each window is four characters, so a three-digit ID followed by a comma fails to parse.
    assert.deepEqual(parseAcsOverride("id:10de:1b8,id:8086:1234").ids, [
      { vendor: 0x8086, device: 0x1234 },
    ]);
    const many = Array.from({ length: 16 }, (_, i) => `id:1000:${(0x2000 + i).toString(16)}`);
    const ids = parseAcsOverride(many.join(",")).ids;
    assert.equal(ids.length, 15);
    assert.deepEqual(ids.at(-1), { vendor: 0x1000, device: 0x200e });
  });

  test("downstream covers root and downstream ports without an ACS capability", () => {
    const { dev } = world();
    const ctx = over({ downstream: true });
    assert.deepEqual(acs(dev({ vendor: 0x1022, device: 0x1483, type: RP }), REQ, ctx), OVR);
    assert.deepEqual(acs(dev({ vendor: 0x1000, device: 0xc010, type: DSP }), REQ, ctx), OVR);
    assert.equal(
      acs(dev({ vendor: 0x1022, device: 0x1483, type: RP, acsCap: 0x100 }), REQ, ctx),
      null,
    );
    assert.equal(
      acs(dev({ vendor: 0x1022, device: 0x1483, type: EP, multifunction: true }), REQ, ctx),
      null,
    );
    assert.equal(acs(dev({ vendor: 0x1022, device: 0x1483, type: RP }), REQ, NO_CTX), null);
  });

  test("multifunction covers multifunction endpoints, upstream ports and RCiEPs", () => {
    const { dev } = world();
    const ctx = over({ multifunction: true });
    for (const type of [EP, R.PCI_EXP_TYPE_LEG_END, USP, RCIEP]) {
      assert.deepEqual(
        acs(dev({ vendor: 0x10de, device: 0x10f0, type, multifunction: true }), REQ, ctx),
        OVR,
      );
    }
    assert.equal(acs(dev({ vendor: 0x10de, device: 0x10f0, type: EP }), REQ, ctx), null);
    assert.equal(
      acs(dev({ vendor: 0x10de, device: 0x10f0, type: RP, multifunction: true }), REQ, ctx),
      null,
    );
    // Conventional PCI is never overridden.
    assert.equal(acs(dev({ vendor: 0x10de, device: 0x10f0, multifunction: true }), REQ, ctx), null);
  });

  test("listed IDs are overridden whatever the port type, but not with an ACS capability", () => {
    const { dev } = world();
    const ctx = over({ ids: [{ vendor: 0x10de, device: 0x1b80 }] });
    assert.deepEqual(acs(dev({ vendor: 0x10de, device: 0x1b80, type: EP }), REQ, ctx), OVR);
    assert.deepEqual(
      acs(dev({ vendor: 0x10de, device: 0x1b80, type: R.PCI_EXP_TYPE_PCI_BRIDGE }), REQ, ctx),
      OVR,
    );
    assert.equal(
      acs(dev({ vendor: 0x10de, device: 0x1b80, type: EP, acsCap: 0x140 }), REQ, ctx),
      null,
    );
    assert.equal(acs(dev({ vendor: 0x10de, device: 0x1b81, type: EP }), REQ, ctx), null);
  });

  test("the override entry is last: real quirks answer first", () => {
    const { dev } = world();
    const ctx = over({ downstream: true, ids: [{ vendor: 0x8086, device: 0x1c10 }] });
    assert.deepEqual(acs(dev({ vendor: 0x8086, device: 0x1c10, type: RP }), REQ, ctx), {
      ret: 0,
      quirk: "pci_quirk_intel_pch_acs",
    });
    assert.deepEqual(acs(dev({ vendor: 0x1d17, device: 0x0722, type: RP }), REQ, ctx), {
      ret: 0,
      quirk: "pci_quirk_zhaoxin_pcie_ports_acs",
    });
    // A quirk with no answer (Intel non-PCH root port) lets the override decide.
    assert.deepEqual(acs(dev({ vendor: 0x8086, device: 0x1234, type: RP }), REQ, ctx), OVR);
  });
});

describe("pci_dev_acs_ops[]", () => {
  test("Intel PCH: marks ACS_ENABLED_QUIRK; MPC is written back as a word", () => {
    const { cfg, dev } = world();
    const rp = dev({ vendor: 0x8086, device: 0x8c10, type: RP });
    cfg.write(0, 0, 0, 0xd8, 4, 0x0000_1234);
    assert.equal(pciDevSpecificEnableAcs(rp), true);
    assert.equal(rp.devFlags.has("PCI_DEV_FLAGS_ACS_ENABLED_QUIRK"), true);
    assert.equal(rp.read32(0xd8), 0x0000_1234, "IRBNCE (bit 26) does not land");
    assert.ok(
      rp.notes.some((n) => n.startsWith("pci_quirk_enable_intel_lpc_acs") && /assumed/.test(n)),
    );
    assert.deepEqual(acs(rp), { ret: 1, quirk: "pci_quirk_intel_pch_acs" });
    assert.equal(pciDevSpecificDisableAcsRedir(rp), false);
  });

  test("Intel SPT: sets SV/RR/CR/UF (TB on request) in the dword at cap+8", () => {
    const { cfg, dev } = world();
    const rp = dev({ vendor: 0x8086, device: 0xa2e7, type: RP, acsCap: 0x100 });
    cfg.write(0, 0, 0, 0x104, 4, 0x005f); // SV TB RR CR UF DT
    cfg.write(0, 0, 0, 0x108, 4, 0x0040); // DT on
    assert.equal(pciDevSpecificEnableAcs(rp), true);
    assert.equal(rp.read32(0x108), 0x005d);
    assert.equal(pciDevSpecificEnableAcs(rp, true), true);
    assert.equal(rp.read32(0x108), 0x005f);
    assert.equal(rp.devFlags.has("PCI_DEV_FLAGS_ACS_ENABLED_QUIRK"), false);
    assert.equal(pciDevSpecificDisableAcsRedir(rp), true);
    assert.equal(rp.read32(0x108), 0x0053, "RR and CR cleared");
  });

  test("no quirk: the generic enable runs", () => {
    const { dev } = world();
    const spt = dev({ vendor: 0x8086, device: 0xa110, type: RP });
    assert.equal(pciDevSpecificEnableAcs(spt), false, "SPT without an ACS capability");
    assert.equal(pciDevSpecificEnableAcs(dev({ vendor: 0x8086, device: 0x1234, type: RP })), false);
    const other = dev({ vendor: 0x1022, device: 0x1c10, type: RP });
    assert.equal(pciDevSpecificEnableAcs(other), false);
    assert.equal(other.devFlags.size, 0);
  });
});

describe("DMA alias fixups", () => {
  const aliases = (d: PciDev) => [...(d.dmaAliasMask ?? [])].sort((a, b) => a - b);

  test("function 0 aliases: Ricoh, Glenfly", () => {
    const { dev } = world();
    for (const [vendor, device] of [
      [0x1180, 0xe832],
      [0x1180, 0xe476],
      [0x6766, 0x3d40],
      [0x6766, 0x3d41],
    ] as const) {
      const d = dev({ vendor, device, devfn: R.PCI_DEVFN(3, 2) });
      applyPciFixups(d);
      assert.deepEqual(aliases(d), [R.PCI_DEVFN(3, 0)]);
      assert.ok(d.notes.some((n) => n.startsWith("quirk_dma_func0_alias: ")));
    }
    const f0 = dev({ vendor: 0x1180, device: 0xe832, devfn: R.PCI_DEVFN(3, 0) });
    applyPciFixups(f0);
    assert.equal(f0.dmaAliasMask, null);
    assert.deepEqual(f0.notes, []);
  });

  test("function 1 aliases: Marvell, TTI, JMicron JMB388 ESD, Lite-On Plextor M6E", () => {
    const { dev } = world();
    const marvell = [0x9120, 0x9123, 0x9125, 0x9128, 0x9130, 0x9170, 0x9172, 0x917a, 0x9182];
    const ids = [
      ...[...marvell, 0x9183, 0x91a0, 0x9215, 0x9220, 0x9230, 0x9235].map((d) => [0x1b4b, d]),
      [0x1103, 0x0642],
      [0x1103, 0x0645],
      [0x197b, 0x2392],
      [0x1c28, 0x0122],
    ] as [number, number][];
    for (const [vendor, device] of ids) {
      const d = dev({ vendor, device, devfn: R.PCI_DEVFN(0x1f, 0) });
      applyPciFixups(d);
      assert.deepEqual(
        aliases(d),
        [R.PCI_DEVFN(0x1f, 1)],
        `${vendor.toString(16)}:${device.toString(16)}`,
      );
    }
    const f1 = dev({ vendor: 0x1b4b, device: 0x9123, devfn: R.PCI_DEVFN(0, 1) });
    applyPciFixups(f1);
    assert.equal(f1.dmaAliasMask, null);
    const other = dev({ vendor: 0x1b4b, device: 0x9121 });
    applyPciFixups(other);
    assert.equal(other.dmaAliasMask, null);
  });

  test("Adaptec 3405/3805: fixed alias 01.0 selected by subsystem ID", () => {
    const { dev } = world();
    for (const sub of [0x02bb, 0x02bc]) {
      const d = dev({
        vendor: 0x9005,
        device: 0x0285,
        devfn: R.PCI_DEVFN(0xe, 0),
        subsystem: [0x9005, sub],
      });
      applyPciFixups(d);
      assert.deepEqual(aliases(d), [R.PCI_DEVFN(1, 0)]);
    }
    const d = dev({ vendor: 0x9005, device: 0x0285, subsystem: [0x9005, 0x02bd] });
    applyPciFixups(d);
    assert.equal(d.dmaAliasMask, null);
  });

  test("Intel MIC x200 NTB: 10.0, 11.0, 12.3", () => {
    const { dev } = world();
    for (const device of [0x2260, 0x2264]) {
      const d = dev({ vendor: 0x8086, device });
      applyPciFixups(d);
      assert.deepEqual(aliases(d), [
        R.PCI_DEVFN(0x10, 0),
        R.PCI_DEVFN(0x11, 0),
        R.PCI_DEVFN(0x12, 3),
      ]);
    }
  });

  test("Intel VCA: functions 0-4 of every slot", () => {
    const { dev } = world();
    const expected = Array.from({ length: 32 }, (_, s) =>
      [0, 1, 2, 3, 4].map((f) => R.PCI_DEVFN(s, f)),
    ).flat();
    for (const device of [0x2954, 0x2955, 0x2956, 0x2958, 0x2959, 0x295a]) {
      const d = dev({ vendor: 0x8086, device });
      applyPciFixups(d);
      assert.deepEqual(aliases(d), expected);
    }
    const gap = dev({ vendor: 0x8086, device: 0x2957 });
    applyPciFixups(gap);
    assert.equal(gap.dmaAliasMask, null);
  });

  test("PLX NTB: all 256 devfns", () => {
    const { dev } = world();
    for (const device of [0x87b0, 0x87b1]) {
      const d = dev({ vendor: 0x10b5, device, devfn: R.PCI_DEVFN(2, 0) });
      applyPciFixups(d);
      assert.deepEqual(
        aliases(d),
        Array.from({ length: 256 }, (_, i) => i),
      );
    }
  });

  test("Switchtec NTB: no alias, a note that the proxy IDs are unreadable", () => {
    const { dev } = world();
    const ntb = dev({ vendor: 0x11f8, device: 0x8531, class: 0x068000 });
    applyPciFixups(ntb);
    assert.equal(ntb.dmaAliasMask, null);
    assert.ok(
      ntb.notes.some(
        (n) => n.startsWith("quirk_switchtec_ntb_dma_alias: ") && /cannot read/.test(n),
      ),
    );
    for (const device of [0x1003, 0x1008]) {
      const pci100x = dev({ vendor: 0x1055, device, class: 0x068000 });
      applyPciFixups(pci100x);
      assert.equal(pci100x.notes.length, 1);
    }
    const mgmt = dev({ vendor: 0x11f8, device: 0x8531, class: 0x058000 });
    applyPciFixups(mgmt);
    assert.deepEqual(mgmt.notes, [], "class must be 'other bridge'");
  });
});

describe("bridge flags", () => {
  const BRIDGE = R.PCI_HEADER_TYPE_BRIDGE;

  test("PCIE_BRIDGE_ALIAS: conventional bridge right below a PCIe function that is not a PCIe-to-PCI bridge", () => {
    const { dev, busBelow } = world();
    const flagged = (s: Spec) => {
      const d = dev(s);
      applyPciFixups(d);
      return d.devFlags.has("PCI_DEV_FLAG_PCIE_BRIDGE_ALIAS");
    };
    for (const [vendor, device] of [
      [0x1b21, 0x1080],
      [0x10e3, 0x8113],
      [0x1283, 0x8892],
      [0x1283, 0x8893],
      [0x8086, 0x244e],
    ] as const) {
      assert.equal(flagged({ vendor, device, hdrType: BRIDGE, bus: busBelow(1, RP) }), true);
    }
    const asm = { vendor: 0x1b21, device: 0x1080 };
    assert.equal(flagged({ ...asm, hdrType: BRIDGE | 0x80, bus: busBelow(2, DSP) }), true);
    assert.equal(
      flagged({ ...asm, hdrType: BRIDGE, bus: busBelow(3, R.PCI_EXP_TYPE_PCI_BRIDGE) }),
      false,
    );
    assert.equal(flagged({ ...asm, hdrType: BRIDGE, bus: busBelow(4) }), false, "parent not PCIe");
    assert.equal(flagged({ ...asm, hdrType: BRIDGE }), false, "root bus");
    assert.equal(
      flagged({ ...asm, hdrType: BRIDGE, type: R.PCI_EXP_TYPE_PCI_BRIDGE, bus: busBelow(5, RP) }),
      false,
    );
    assert.equal(
      flagged({ ...asm, hdrType: R.PCI_HEADER_TYPE_NORMAL, bus: busBelow(6, RP) }),
      false,
    );
    assert.equal(
      flagged({ vendor: 0x1b21, device: 0x1184, hdrType: BRIDGE, bus: busBelow(7, RP) }),
      false,
    );
  });

  test("BRIDGE_XLATE_ROOT: Broadcom Vulcan / ThunderX2 bridges", () => {
    const { dev } = world();
    for (const [device, want] of [
      [0x9000, true],
      [0x9084, true],
      [0x9001, false],
    ] as const) {
      const d = dev({ vendor: 0x14e4, device, type: RP });
      applyPciFixups(d);
      assert.equal(d.devFlags.has("PCI_DEV_FLAGS_BRIDGE_XLATE_ROOT"), want);
    }
  });
});

describe("reset quirks", () => {
  function flagsOf(s: Spec, bus?: (w: ReturnType<typeof world>) => PciBus) {
    const w = world();
    const d = w.dev({ ...s, bus: bus?.(w) });
    applyPciFixups(d);
    return { flags: [...d.devFlags], notes: d.notes };
  }
  const below = (w: ReturnType<typeof world>) => w.busBelow(1, RP);

  test("NO_FLR_RESET", () => {
    for (const [vendor, device] of [
      [0x1022, 0x1487],
      [0x1022, 0x148c],
      [0x1022, 0x149c],
      [0x1022, 0x7901],
      [0x8086, 0x1502],
      [0x8086, 0x1503],
      [0x14c3, 0x0616],
      [0x14c3, 0x7925],
    ] as const) {
      assert.deepEqual(flagsOf({ vendor, device }).flags, ["PCI_DEV_FLAGS_NO_FLR_RESET"]);
    }
    assert.deepEqual(flagsOf({ vendor: 0xd063, device: 0x1000, revision: 1 }).flags, [
      "PCI_DEV_FLAGS_NO_FLR_RESET",
    ]);
    assert.deepEqual(flagsOf({ vendor: 0xd063, device: 0x1000, revision: 2 }).flags, []);
    assert.deepEqual(flagsOf({ vendor: 0x1022, device: 0x1488 }).flags, []);
    assert.match(
      flagsOf({ vendor: 0xd063, device: 0x1000, revision: 1 }).notes[0] ?? "",
      /^quirk_no_flr_snet: /,
    );
  });

  test("NO_PM_RESET: ATI VGA and Mellanox Spectrum, never on the root bus", () => {
    const vga = { vendor: 0x1002, device: 0x6611, class: 0x030000 };
    assert.deepEqual(flagsOf(vga, below).flags, ["PCI_DEV_FLAGS_NO_PM_RESET"]);
    assert.deepEqual(flagsOf(vga).flags, [], "root bus: an ineffective PM reset beats none");
    assert.deepEqual(
      flagsOf({ ...vga, class: 0x040300 }, below).flags,
      [],
      "HDMI audio is not VGA",
    );
    assert.deepEqual(
      flagsOf({ ...vga, class: 0x038000 }, below).flags,
      [],
      "display 'other' is not VGA",
    );
    assert.deepEqual(flagsOf({ ...vga, vendor: 0x1022 }, below).flags, [], "0x1022 is not ATI");
    for (const device of [0xcb84, 0xcf6c, 0xcf70, 0xcf80]) {
      assert.deepEqual(flagsOf({ vendor: 0x15b3, device }, below).flags, [
        "PCI_DEV_FLAGS_NO_PM_RESET",
      ]);
    }
    assert.deepEqual(flagsOf({ vendor: 0x15b3, device: 0xcb85 }, below).flags, []);
  });

  test("NO_BUS_RESET: NVIDIA 0x2340 mask and GB10, Atheros, QCOM, Cavium, TI, ASMedia", () => {
    const NO_BUS = ["PCI_DEV_FLAGS_NO_BUS_RESET"];
    for (const device of [0x2340, 0x2341, 0x237f]) {
      assert.deepEqual(flagsOf({ vendor: 0x10de, device }).flags, NO_BUS);
    }
    for (const device of [0x233f, 0x2380, 0x1b80]) {
      assert.deepEqual(flagsOf({ vendor: 0x10de, device }).flags, []);
    }
    for (const device of [0x0030, 0x0032, 0x003c, 0x0033, 0x0034, 0x003e]) {
      assert.deepEqual(flagsOf({ vendor: 0x168c, device }).flags, NO_BUS);
    }
    assert.deepEqual(flagsOf({ vendor: 0x168c, device: 0x0031 }).flags, []);
    assert.deepEqual(flagsOf({ vendor: 0x177d, device: 0xa100 }).flags, NO_BUS);
    assert.deepEqual(flagsOf({ vendor: 0x104c, device: 0xb005 }).flags, NO_BUS);
    // 6.12.117: NVIDIA GB10 root ports, QCOM WCN6855/WCN7850/SDX62, ASMedia ASM1164
    for (const [vendor, device] of [
      [0x10de, 0x22ce],
      [0x10de, 0x22d0],
      [0x17cb, 0x1103],
      [0x17cb, 0x1107],
      [0x17cb, 0x0308],
      [0x1b21, 0x1164],
    ] as const) {
      assert.deepEqual(flagsOf({ vendor, device }).flags, NO_BUS);
    }
    assert.deepEqual(flagsOf({ vendor: 0x17cb, device: 0x1104 }).flags, []);
    assert.match(
      flagsOf({ vendor: 0x10de, device: 0x2342 }).notes[0] ?? "",
      /^quirk_nvidia_no_bus_reset: /,
    );
  });

  test("device_specific reset: the first match decides, its probe must succeed", () => {
    const { cfg, dev } = world();
    const withFlr = (d: PciDev) => {
      cfg.write(0, d.bus.number, d.devfn, PCIE_CAP + R.PCI_EXP_DEVCAP, 4, R.PCI_EXP_DEVCAP_FLR);
      return d;
    };
    let fn = 0;
    const at = (s: Spec) => dev({ ...s, devfn: fn++ });
    assert.equal(
      pciDevSpecificResetMethod(at({ vendor: 0x8086, device: 0x10ed, type: EP })),
      "reset_intel_82599_sfp_virtfn",
    );
    assert.equal(
      pciDevSpecificResetMethod(at({ vendor: 0x8086, device: 0x0156 })),
      "reset_ivb_igd",
    );
    assert.equal(
      pciDevSpecificResetMethod(at({ vendor: 0x8086, device: 0x0166 })),
      "reset_ivb_igd",
    );
    assert.equal(
      pciDevSpecificResetMethod(at({ vendor: 0x19e5, device: 0x375e, type: EP })),
      "reset_hinic_vf_dev",
    );
    assert.equal(
      pciDevSpecificResetMethod(at({ vendor: 0x1425, device: 0x4401, type: EP })),
      "reset_chelsio_generic_dev",
    );
    assert.equal(
      pciDevSpecificResetMethod(at({ vendor: 0x1425, device: 0x5401, type: EP })),
      null,
      "T5 is not T4",
    );

    for (const [vendor, device] of [
      [0x8086, 0x0953],
      [0x8086, 0x0a54],
      [0x025e, 0xf1ac],
    ] as const) {
      assert.equal(
        pciDevSpecificResetMethod(at({ vendor, device, type: EP })),
        null,
        "no FLR capability",
      );
      assert.equal(
        pciDevSpecificResetMethod(withFlr(at({ vendor, device, type: EP }))),
        "delay_250ms_after_flr",
      );
    }

    const nvme = { vendor: 0x144d, device: 0xa804, type: EP, class: R.PCI_CLASS_STORAGE_EXPRESS };
    const sm961 = withFlr(at(nvme));
    cfg.write(0, 0, sm961.devfn, R.PCI_BASE_ADDRESS_0, 4, 0xfe000004);
    assert.equal(pciDevSpecificResetMethod(sm961), "nvme_disable_and_flr");
    sm961.devFlags.add("PCI_DEV_FLAGS_NO_FLR_RESET");
    assert.equal(pciDevSpecificResetMethod(sm961), null);

    const high = withFlr(at(nvme));
    cfg.write(0, 0, high.devfn, R.PCI_BASE_ADDRESS_0, 4, 0x00000004);
    cfg.write(0, 0, high.devfn, R.PCI_BASE_ADDRESS_0 + 4, 4, 0x00000040);
    assert.equal(pciDevSpecificResetMethod(high), "nvme_disable_and_flr", "64-bit BAR above 4 GiB");
    assert.equal(pciDevSpecificResetMethod(withFlr(at(nvme))), null, "BAR 0 unassigned");
    const notNvme = withFlr(at({ ...nvme, class: 0x010601 }));
    cfg.write(0, 0, notNvme.devfn, R.PCI_BASE_ADDRESS_0, 4, 0xfe000000);
    assert.equal(pciDevSpecificResetMethod(notNvme), null);

    assert.equal(pciDevSpecificResetMethod(at({ vendor: 0x10de, device: 0x1b80, type: EP })), null);
  });
});
