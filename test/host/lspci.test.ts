import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import fc from "fast-check";
import { InputError } from "../../src/host/errors.js";
import { parseLspci } from "../../src/host/lspci.js";
import { hostSpecSchema, type FunctionSpec, type HostSpec } from "../../src/host/spec.js";

/** test/fixtures/lspci, found from the compiled test file upward, else from the cwd. */
function fixtureDir(): string {
  for (let d = dirname(fileURLToPath(import.meta.url)); ; d = dirname(d)) {
    const dir = join(d, "test", "fixtures", "lspci");
    if (existsSync(join(dir, "SOURCES.md"))) return dir;
    if (dirname(d) === d) return join(process.cwd(), "test", "fixtures", "lspci");
  }
}
const DIR = fixtureDir();
const FILES = readdirSync(DIR).filter((f) => f.endsWith(".txt"));
const load = (f: string): string => readFileSync(join(DIR, f), "utf8");
const parse = (f: string): HostSpec => parseLspci(load(f), join(DIR, f));

/**
 * SOURCES.md's size list for c6320 says "2x13", but its own count is 31 multi groups and the
 * file has 12 two-function groups (4+2+2+4+6+1+12 = 31): one listed 2 too many.
 */
const ERRATA: Record<string, { remove: number }> = {
  "intel-broadwell-ep-c610-poweredge-c6320.txt": { remove: 2 },
};

/** "functions / groups / multi groups (sizes)" from SOURCES.md's table; "5x4" = four 5s. */
function sourcesTable(): Map<string, { functions: number; groups: number; multi: number[] }> {
  const out = new Map<string, { functions: number; groups: number; multi: number[] }>();
  for (const row of readFileSync(join(DIR, "SOURCES.md"), "utf8").split("\n")) {
    const cells = row.split("|").map((c) => c.trim());
    const m = /^(\d+) \/ (\d+) \/ (\d+)(?: \(([\dx, ]+)\))?$/.exec(cells[7] ?? "");
    if (!cells[1]?.endsWith(".txt") || !m) continue;
    const multi = (m[4] ?? "").split(",").flatMap((s) => {
      const [size, times] = s.trim().split("x").map(Number);
      return s.trim() ? Array<number>(times ?? 1).fill(size!) : [];
    });
    const fix = ERRATA[cells[1]];
    if (fix) multi.splice(multi.indexOf(fix.remove), 1);
    assert.equal(multi.length, Number(m[3]), `${cells[1]}: multi-group sizes`);
    out.set(cells[1], { functions: Number(m[1]), groups: Number(m[2]), multi });
  }
  return out;
}

/** HostSpec is zod's output type; turn the id pairs back into the input form to re-validate. */
function validate(h: HostSpec): void {
  const pair = (p?: { vendor: number; device: number }) =>
    p && `${p.vendor.toString(16).padStart(4, "0")}:${p.device.toString(16).padStart(4, "0")}`;
  const functions = h.functions.map((f) => ({
    ...f,
    id: pair(f.id),
    subsystem: pair(f.subsystem),
  }));
  hostSpecSchema.parse({ ...h, functions });
}

function fn(h: HostSpec, addr: string): FunctionSpec {
  const full = addr.split(":").length === 2 ? `0000:${addr}` : addr;
  const f = h.functions.find((x) => x.addr === full);
  assert.ok(f, `${full} present`);
  return f;
}

function throwsAt(text: string, line: number, field?: string, detail?: RegExp): void {
  assert.throws(
    () => parseLspci(text, "x.txt"),
    (e: unknown) => {
      assert.ok(e instanceof InputError, `InputError, got ${String(e)}`);
      assert.equal(e.file, "x.txt");
      assert.equal(e.line, line, e.message);
      if (field !== undefined) assert.equal(e.field, field, e.message);
      if (detail) assert.match(e.detail, detail);
      return true;
    },
  );
}

const TITLE_RE = /^(?:[0-9a-f]{4,5}:)?[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7] /gm;

test("every fixture: function, group and multi-group counts match SOURCES.md", () => {
  const table = sourcesTable();
  assert.equal(FILES.length, 13);
  assert.deepEqual([...table.keys()].sort(), [...FILES].sort());
  for (const f of FILES) {
    const text = load(f);
    const h = parse(f);
    validate(h);
    const want = table.get(f)!;
    assert.equal(h.functions.length, text.match(TITLE_RE)!.length, f);
    assert.equal(h.functions.length, want.functions, f);
    const groups = new Map<number, number>();
    for (const x of h.functions)
      if (x.group !== undefined) groups.set(x.group, (groups.get(x.group) ?? 0) + 1);
    assert.equal(groups.size, want.groups, f);
    const multi = [...groups.values()].filter((n) => n > 1).sort((a, b) => b - a);
    assert.deepEqual(multi, want.multi, f);

    assert.equal(h.name, f.replace(/\.txt$/, ""));
    assert.equal(h.unprivileged, false, f);
    assert.deepEqual(h.kernel, { cmdline: "" });
    for (const x of h.functions) {
      assert.match(x.addr, /^[0-9a-f]{4,5}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]$/);
      assert.equal(x.children, undefined);
      assert.equal(x.noIommu, x.group === undefined ? true : undefined, `${f} ${x.addr}`);
    }
    // One decoded field per capability printed in the file.
    const count = (re: RegExp) => (text.match(re) ?? []).length;
    assert.equal(
      h.functions.filter((x) => x.acs).length,
      count(/\] Access Control Services$/gm),
      f,
    );
    assert.equal(h.functions.filter((x) => x.pcie).length, count(/\] Express \(v\d\) /gm), f);
    assert.equal(h.functions.filter((x) => x.ari).length, count(/ARICap:/g), f);
    assert.equal(h.functions.filter((x) => x.sriov).length, count(/Total VFs: [1-9]/g), f);
    assert.equal(h.functions.filter((x) => x.header === "bridge").length, count(/\tBus: /g), f);
    assert.equal(h.functions.filter((x) => x.driver).length, count(/Kernel driver in use:/g), f);
  }
});

test("AMD hosts: only the root complex and IOMMU functions have no group", () => {
  for (const f of FILES.filter((x) => x.startsWith("amd-"))) {
    const h = parse(f);
    const none = h.functions.filter((x) => x.noIommu).map((x) => x.addr.slice(-4));
    assert.ok(none.length > 0, f);
    assert.ok(
      none.every((a) => a === "00.0" || a === "00.2"),
      `${f}: ${none.join()}`,
    );
    assert.deepEqual(h.iommu, [{ kind: "amd-vi", name: "ivhd0", segment: 0 }], f);
  }
  assert.equal(
    parse("amd-epyc-milan-poweredge-c6525.txt").functions.filter((x) => x.noIommu).length,
    8,
  );
});

test("nuc11: iGPU SR-IOV, Thunderbolt root ports, ACS and AF", () => {
  const h = parse("intel-tigerlake-nuc11.txt");
  assert.deepEqual(h.iommu, [{ kind: "intel-vtd", name: "dmar0", segment: 0 }]);
  const igpu = fn(h, "00:02.0");
  assert.deepEqual(igpu.id, { vendor: 0x8086, device: 0x9a49 });
  assert.equal(igpu.class, 0x030000);
  assert.equal(igpu.revision, 1);
  assert.equal(igpu.name, "Intel Corporation TigerLake-LP GT2 [Iris Xe Graphics]");
  assert.deepEqual(igpu.subsystem, { vendor: 0x8086, device: 0x3003 });
  assert.equal(igpu.pcie, "rciep");
  assert.equal(igpu.flr, true);
  assert.equal(igpu.driver, "i915");
  assert.equal(igpu.group, 2);
  assert.deepEqual(igpu.pm, { noSoftReset: false });
  assert.deepEqual(igpu.sriov, {
    total: 7,
    initial: 7,
    enabled: 0,
    offset: 1,
    stride: 1,
    vfDevice: 0x9a49,
  });
  assert.deepEqual(igpu.bars, [
    { index: 0, size: 16 << 20, kind: "mem64", prefetchable: false, address: 0x603c000000 },
    { index: 2, size: 256 << 20, kind: "mem64", prefetchable: true, address: 0x4000000000 },
    { index: 4, size: 64, kind: "io", prefetchable: false, address: 0x3000 },
  ]);
  assert.equal(igpu.multifunction, undefined);

  const rp = fn(h, "00:06.0");
  assert.equal(rp.header, "bridge");
  assert.equal(rp.pcie, "root-port");
  assert.equal(rp.ariForwarding, true);
  assert.equal(rp.flr, undefined); // lspci prints FLReset only for endpoints
  assert.equal([rp.secondary, rp.subordinate].join(), "1,1");
  assert.deepEqual(rp.acs, { cap: ["sv", "tb", "rr", "cr", "uf"], ctl: ["sv", "rr", "cr", "uf"] });

  for (const a of ["00:07.0", "00:07.2"]) {
    assert.equal(fn(h, a).multifunction, true);
    assert.equal(fn(h, a).pcie, "root-port");
  }
  assert.notEqual(fn(h, "00:07.0").group, fn(h, "00:07.2").group);
  assert.equal([fn(h, "00:07.2").secondary, fn(h, "00:07.2").subordinate].join(), "45,87");
  assert.deepEqual(fn(h, "00:08.0").af, { tp: true, flr: true });
  assert.equal(fn(h, "00:0d.0").pm?.noSoftReset, true);
  assert.equal(fn(h, "00:1f.3").class, 0x040300);
  assert.equal(fn(h, "01:00.0").pcie, "endpoint");
  assert.equal(fn(h, "00:00.0").header, "normal");
});

test("c6525: PCIe-to-PCI bridge, ARI, Broadcom multi-function without ACS", () => {
  const h = parse("amd-epyc-milan-poweredge-c6525.txt");
  const br = fn(h, "c1:00.0");
  assert.equal(br.pcie, "pcie-to-pci");
  assert.equal(br.header, "bridge");
  assert.equal(fn(h, "c0:05.2").acs, undefined);
  assert.equal(fn(h, "c2:00.0").group, br.group);
  for (const a of ["01:00.0", "01:00.1"]) {
    assert.deepEqual(fn(h, a).id, { vendor: 0x14e4, device: 0x16d7 });
    assert.equal(fn(h, a).multifunction, true);
    assert.equal(fn(h, a).acs, undefined);
  }
  assert.deepEqual(fn(h, "01:00.0").ari, { nextFunction: 1 });
  // AMD internal GPP bridge: only SrcValid and TransBlk implemented.
  assert.deepEqual(fn(h, "00:07.1").acs, { cap: ["sv", "tb"], ctl: ["sv"] });
  assert.deepEqual(fn(h, "00:01.1").acs?.cap, ["sv", "tb", "rr", "cr", "uf", "dt"]);
});

test("b450: the chipset's functions are multi-function, the RX 580 shares a group", () => {
  const h = parse("amd-matisse-b450-aorus-elite.txt");
  for (const a of ["01:00.0", "01:00.1", "01:00.2"]) assert.equal(fn(h, a).multifunction, true);
  assert.equal(fn(h, "01:00.2").header, "bridge");
  assert.equal(fn(h, "01:00.0").header, "normal");
  assert.equal(fn(h, "06:00.0").group, fn(h, "06:00.1").group);
  assert.equal(fn(h, "06:00.0").multifunction, true);
});

test("VMD: the controller owns domain 10000, whose functions keep their 5-digit domain", () => {
  const h = parse("intel-tigerlake-h-xps15-9510-vmd-domain.txt");
  const vmd = fn(h, "0000:00:0e.0");
  assert.deepEqual(vmd.id, { vendor: 0x8086, device: 0x9a0b });
  assert.equal(vmd.driver, "vmd");
  assert.deepEqual(vmd.vmd, { domain: 0x10000, bus: 0xe0 });
  assert.equal(h.functions.filter((x) => x.vmd).length, 1);
  assert.equal(fn(h, "0000:00:06.0").vmd, undefined); // 09ab placeholder, not a VMD endpoint
  for (const a of ["10000:e0:01.0", "10000:e0:01.2", "10000:e0:06.0", "10000:e1:00.0"])
    assert.equal(fn(h, a).group, vmd.group);
  assert.equal(fn(h, "10000:e0:06.0").pcie, "root-port");
  assert.ok(fn(h, "10000:e0:06.0").acs);
  assert.equal(fn(h, "10000:e0:01.0").multifunction, true);
  assert.equal(fn(h, "0000:00:1f.3").class, 0x040380); // "(prog-if 80)" without a name
  assert.deepEqual(h.iommu, [{ kind: "intel-vtd", name: "dmar0", segment: 0 }]);
  assert.ok(!parse("intel-tigerlake-h-xps15-9510.txt").functions.some((x) => x.vmd));
});

test("c6320, ec266d4, x399: SR-IOV NICs, PCIe-to-PCI bridges, no ACS anywhere", () => {
  const c6320 = parse("intel-broadwell-ep-c610-poweredge-c6320.txt");
  assert.deepEqual(fn(c6320, "81:00.0").sriov, {
    total: 64,
    initial: 64,
    enabled: 0,
    offset: 128,
    stride: 2,
    vfDevice: 0x10ed,
  });
  assert.equal(fn(c6320, "00:1c.0").acs, undefined);
  assert.equal(fn(c6320, "0c:00.0").pcie, "pcie-to-pci");
  assert.equal(fn(c6320, "00:00.0").group !== undefined, true);
  const ec = parse("intel-raptorlake-c266-ec266d4.txt");
  assert.equal(fn(ec, "01:00.0").sriov?.total, 8);
  assert.equal(fn(ec, "08:00.0").pcie, "pcie-to-pci");
  const x399 = parse("amd-zen1-threadripper-x399-aorus-pro.txt");
  assert.ok(!x399.functions.some((x) => x.acs));
  assert.ok(x399.functions.some((x) => x.pcie === "upstream"));
  assert.ok(x399.functions.some((x) => x.pcie === "downstream"));
});

test("pciutils warnings spliced into a line by 2>&1 are cut out", () => {
  // "LnkCap2: Suppopcilib: Error reading .../label: Operation not permitted\nrted Link Speeds"
  const h = parse("amd-mendocino-asus-aio-m3702.txt");
  assert.equal(h.functions.length, 30);
  assert.equal(fn(h, "00:08.3").pcie, "root-port");
});

test("tabs turned into spaces and CRLF line ends parse the same", () => {
  const text = load("intel-tigerlake-nuc11.txt");
  const want = parseLspci(text, "a.txt");
  assert.deepEqual(parseLspci(text.replace(/\t/g, "        "), "a.txt"), want);
  assert.deepEqual(parseLspci(text.replace(/\t/g, "  "), "a.txt"), want);
  assert.deepEqual(parseLspci(text.replace(/\n/g, "\r\n"), "a.txt"), want);
});

const NON_ROOT = `00:00.0 Host bridge [0600]: Intel Corporation 11th Gen Core Processor Host Bridge/DRAM Registers [8086:9a14] (rev 01)
	Subsystem: Intel Corporation Device [8086:3003]
	Control: I/O- Mem+ BusMaster+ SpecCycle- MemWINV- VGASnoop- ParErr- Stepping- SERR- FastB2B- DisINTx-
	Status: Cap+ 66MHz- UDF- FastB2B+ ParErr- DEVSEL=fast >TAbort- <TAbort- <MAbort- >SERR- <PERR- INTx-
	Latency: 0
	IOMMU group: 3
	Capabilities: <access denied>
	Kernel modules: igen6_edac

00:06.0 PCI bridge [0604]: Intel Corporation 11th Gen Core Processor PCIe Controller [8086:9a09] (rev 01) (prog-if 00 [Normal decode])
	Control: I/O+ Mem+ BusMaster+ SpecCycle- MemWINV- VGASnoop- ParErr- Stepping- SERR- FastB2B- DisINTx+
	Status: Cap+ 66MHz- UDF- FastB2B- ParErr- DEVSEL=fast >TAbort- <TAbort- <MAbort- >SERR- <PERR- INTx-
	Latency: 0, Cache Line Size: 64 bytes
	Interrupt: pin D routed to IRQ 124
	IOMMU group: 4
	Bus: primary=00, secondary=01, subordinate=01, sec-latency=0
	I/O behind bridge: [disabled] [16-bit]
	Memory behind bridge: 6a400000-6a4fffff [size=1M] [32-bit]
	Prefetchable memory behind bridge: [disabled] [64-bit]
	Secondary status: 66MHz- FastB2B- ParErr- DEVSEL=fast >TAbort- <TAbort- <MAbort- <SERR- <PERR-
	BridgeCtl: Parity- SERR+ NoISA- VGA- VGA16+ MAbort- >Reset- FastB2B-
		PriDiscTmr- SecDiscTmr- DiscTmrStat- DiscTmrSERREn-
	Capabilities: <access denied>
	Kernel driver in use: pcieport

01:00.0 Non-Volatile memory controller [0108]: Sandisk Corp WD Green SN350 NVMe SSD 240GB (DRAM-less) [15b7:5019] (rev 01) (prog-if 02 [NVM Express])
	Subsystem: Sandisk Corp WD Green SN350 NVMe SSD 240GB (DRAM-less) [15b7:5019]
	Control: I/O- Mem+ BusMaster+ SpecCycle- MemWINV- VGASnoop- ParErr- Stepping- SERR- FastB2B- DisINTx+
	Status: Cap+ 66MHz- UDF- FastB2B- ParErr- DEVSEL=fast >TAbort- <TAbort- <MAbort- >SERR- <PERR- INTx-
	Latency: 0, Cache Line Size: 64 bytes
	Interrupt: pin A routed to IRQ 16
	IOMMU group: 14
	Region 0: Memory at 6a400000 (64-bit, non-prefetchable) [size=16K]
	Region 4: Memory at 6a404000 (64-bit, non-prefetchable) [size=256]
	Capabilities: <access denied>
	Kernel driver in use: nvme
	Kernel modules: nvme
`;

test("non-root output: unprivileged, and no capability fields invented", () => {
  const h = parseLspci(NON_ROOT, "/tmp/laptop.lspci");
  validate(h);
  assert.equal(h.name, "laptop");
  assert.equal(h.unprivileged, true);
  assert.equal(h.functions.length, 3);
  for (const f of h.functions)
    for (const k of ["pcie", "acs", "flr", "pm", "af", "ari", "sriov", "ariForwarding"] as const)
      assert.equal(f[k], undefined, `${f.addr} ${k}`);
  assert.deepEqual(fn(h, "00:06.0"), {
    addr: "0000:00:06.0",
    id: { vendor: 0x8086, device: 0x9a09 },
    class: 0x060400,
    revision: 1,
    name: "Intel Corporation 11th Gen Core Processor PCIe Controller",
    group: 4,
    driver: "pcieport",
    header: "bridge",
    secondary: 1,
    subordinate: 1,
  });
  assert.equal(fn(h, "01:00.0").class, 0x010802);
  assert.equal(fn(h, "01:00.0").bars?.length, 2);
  assert.deepEqual(h.iommu, [{ kind: "intel-vtd", name: "dmar0", segment: 0 }]);
});

test("-D addresses (4 and 5 hex digits), -vnn Flags line, -nn without -v, -n numeric", () => {
  const dv = `0000:00:00.0 Host bridge [0600]: Advanced Micro Devices, Inc. [AMD] Starship/Matisse Root Complex [1022:1480]
	Subsystem: Dell Device [1028:0900]
	Flags: fast devsel, NUMA node 0

0000:00:01.1 PCI bridge [0604]: Advanced Micro Devices, Inc. [AMD] Starship/Matisse GPP Bridge [1022:1483] (prog-if 00 [Normal decode])
	Flags: bus master, fast devsel, latency 0, IRQ 28, NUMA node 0, IOMMU group 1
	Bus: primary=00, secondary=01, subordinate=01, sec-latency=0
	Memory behind bridge: f0000000-f01fffff [size=2M] [32-bit]
	Capabilities: [50] Power Management version 3
	Capabilities: [58] Express Root Port (Slot+), MSI 00
	Capabilities: [2a0] Access Control Services
	Kernel driver in use: pcieport

0001:01:00.0 Ethernet controller [0200]: Intel Corporation I210 Gigabit Network Connection [8086:1533] (rev 03)
	Flags: bus master, fast devsel, latency 0, IRQ 44, IOMMU group 2
	Memory at f0000000 (32-bit, non-prefetchable) [size=1M]
	Capabilities: [40] Power Management version 3
	Capabilities: [a0] Express Endpoint, MSI 00
	Kernel driver in use: igb
`;
  const h = parseLspci(dv, "d.txt");
  validate(h);
  assert.deepEqual(
    h.functions.map((f) => f.addr),
    ["0000:00:00.0", "0000:00:01.1", "0001:01:00.0"],
  );
  assert.equal(fn(h, "00:01.1").group, 1);
  assert.equal(fn(h, "00:01.1").pcie, "root-port");
  assert.equal(fn(h, "00:01.1").acs, undefined); // -v prints no ACSCap line
  assert.equal(fn(h, "00:01.1").header, "bridge");
  assert.equal(fn(h, "00:00.0").header, "normal");
  assert.equal(fn(h, "00:00.0").noIommu, true);
  assert.equal(fn(h, "0001:01:00.0").pcie, "endpoint");
  assert.equal(fn(h, "0001:01:00.0").bars, undefined); // -v prints no "Region N:" index
  assert.deepEqual(h.iommu, [
    { kind: "amd-vi", name: "ivhd0", segment: 0 },
    { kind: "amd-vi", name: "ivhd1", segment: 1 },
  ]);

  // -nn alone: no blank lines, no body; header unknown, no groups. The unit the host
  // bridge's vendor implies is still described (groups are derived as if it were on).
  const nn = parseLspci(
    "00:00.0 Host bridge [0600]: Intel Corporation Device [8086:9a14] (rev 01)\n" +
      "00:1c.0 PCI bridge [0604]: Intel Corporation Device [8086:43be] (rev 11)\n" +
      "00:1c.1 PCI bridge [0604]: Intel Corporation Device [8086:43bf] (rev 11)\n" +
      "10000:e1:00.0 Non-Volatile memory controller [0108]: Micron Technology Inc 2300 NVMe SSD [Santana] [1344:5405]\n",
    "nn.txt",
  );
  validate(nn);
  assert.equal(nn.functions.length, 4);
  assert.equal(fn(nn, "00:1c.0").header, undefined);
  assert.equal(fn(nn, "00:1c.1").multifunction, true);
  assert.equal(fn(nn, "10000:e1:00.0").revision, 0);
  assert.equal(fn(nn, "10000:e1:00.0").name, "Micron Technology Inc 2300 NVMe SSD [Santana]");
  assert.deepEqual(nn.iommu, [{ kind: "intel-vtd", name: "dmar0", segment: 0 }]);
  assert.ok(!nn.functions.some((f) => f.noIommu || f.vmd)); // no driver, no VMD id

  const n = parseLspci(
    "00:02.0 0300: 8086:9a49 (rev 01) (prog-if 00 [VGA controller])\n\tSubsystem: 8086:3003\n\tKernel driver in use: i915\n",
    "n.txt",
  );
  assert.deepEqual(fn(n, "00:02.0").id, { vendor: 0x8086, device: 0x9a49 });
  assert.deepEqual(fn(n, "00:02.0").subsystem, { vendor: 0x8086, device: 0x3003 });
  assert.equal(fn(n, "00:02.0").name, undefined);
  assert.equal(fn(n, "00:02.0").driver, "i915");
});

test("two VMD controllers pair with their domains in ascending order", () => {
  const text = [
    "0000:00:0e.0 RAID bus controller [0104]: Intel Corporation Volume Management Device NVMe RAID Controller [8086:9a0b]",
    "\tKernel driver in use: vmd",
    "0000:80:05.5 RAID bus controller [0104]: Intel Corporation Volume Management Device NVMe RAID Controller [8086:28c0] (rev 04)",
    "\tKernel driver in use: vmd",
    "10001:03:00.0 Non-Volatile memory controller [0108]: Samsung Electronics Co Ltd NVMe SSD Controller PM9A1/PM9A3/980PRO [144d:a80a] (prog-if 02 [NVM Express])",
    "10000:e1:00.0 Non-Volatile memory controller [0108]: Micron Technology Inc 2300 NVMe SSD [Santana] [1344:5405] (prog-if 02 [NVM Express])",
    "10001:02:00.0 PCI bridge [0604]: Intel Corporation Device [8086:347a] (rev 04) (prog-if 00 [Normal decode])",
    "10000:e0:06.0 PCI bridge [0604]: Intel Corporation 11th Gen Core Processor PCIe Controller #0 [8086:9a0f] (rev 05) (prog-if 00 [Normal decode])",
    "",
  ].join("\n");
  const h = parseLspci(text, "v.txt");
  assert.deepEqual(fn(h, "0000:00:0e.0").vmd, { domain: 0x10000, bus: 0xe0 });
  assert.deepEqual(fn(h, "0000:80:05.5").vmd, { domain: 0x10001, bus: 0x02 });
  // Without driver lines, the vmd.c ID table picks the controller.
  const noDriver = parseLspci(text.replace(/\tKernel driver in use: vmd\n/g, ""), "v.txt");
  assert.deepEqual(fn(noDriver, "0000:80:05.5").vmd, { domain: 0x10001, bus: 0x02 });
});

test("unknown capabilities and lines are ignored", () => {
  const text = `00:1f.0 ISA bridge [0601]: Intel Corporation Device [8086:4389] (rev 11)
	Some future line: with+ flags-
	Capabilities: [e0] Frobnicator v9 <?>
		FrobCap: Wibble+ Wobble-
	Capabilities: [100 v1] Extended Capability ID 0x2a
	!!! Unknown header type 7f
	Kernel driver in use: lpc_ich
`;
  const h = parseLspci(text, "u.txt");
  assert.deepEqual(fn(h, "00:1f.0"), {
    addr: "0000:00:1f.0",
    id: { vendor: 0x8086, device: 0x4389 },
    class: 0x060100,
    revision: 0x11,
    name: "Intel Corporation Device",
    driver: "lpc_ich",
  });
});

test("malformed input: InputError at the right line", () => {
  const good = NON_ROOT.split("\n");
  throwsAt("", 1, undefined, /empty/);
  throwsAt("  \n\n\t\n", 1, undefined, /empty/);
  throwsAt("\x7fELF\x02\x01\x01\0\0\0", 1, undefined, /binary/);
  throwsAt(
    "00:00.0 Host bridge [0600]: ok [8086:9a14]\n\tLatency: 0\n\x01\x02\x03",
    3,
    undefined,
    /binary/,
  );
  throwsAt("hello world\n", 1, "title");
  throwsAt("\tControl: I/O- Mem+\n", 1, "title");
  // A title cut short (as when a capture is truncated mid-line).
  const cut = [...good];
  cut[9] = "00:06.0 PCI bridge [0604]: Intel Corporation 11th Gen Co";
  throwsAt(cut.join("\n"), 10, "title", /-nn/);
  throwsAt("00:06.0\n", 1, "title");
  throwsAt("00:20.0 Host bridge [0600]: Intel [8086:9a14]\n", 1, "address", /00-1f/);
  // Duplicated address (also across the -D and plain forms).
  throwsAt(
    [...good, good[0], "\tIOMMU group: 3"].join("\n"),
    good.length + 1,
    "address",
    /line 1\)/,
  );
  throwsAt(`${good[0]}\n0000:${good[0]}\n`, 2, "address", /duplicate/);
  // Bad numbers.
  const bus = [...good];
  bus[15] = "\tBus: primary=00, secondary=0x1, subordinate=01, sec-latency=0";
  throwsAt(bus.join("\n"), 16, "Bus");
  const grp = [...good];
  grp[5] = "\tIOMMU group: three";
  throwsAt(grp.join("\n"), 6, "IOMMU group");
  const reg = [...good];
  reg[31] = "\tRegion 0: Mystery at 6a400000 [size=16K]";
  throwsAt(reg.join("\n"), 32, "Region 0");
  reg[31] = "\tRegion 7: Memory at 6a400000 (64-bit, non-prefetchable) [size=16K]";
  throwsAt(reg.join("\n"), 32, "Region 7");
  const sub = [...good];
  sub[1] = "\tSubsystem: Intel Corporation Device 3003";
  throwsAt(sub.join("\n"), 2, "Subsystem");
  // A decoded capability field that does not parse.
  const cap = [
    "00:02.0 VGA compatible controller [0300]: Intel Corporation Device [8086:9a49] (rev 01)",
    "\tCapabilities: [320 v1] Single Root I/O Virtualization (SR-IOV)",
    "\t\tIOVCtl:\tEnable- Migration- Interrupt- MSE- ARIHierarchy- 10BitTagReq-",
    "\t\tInitial VFs: 7, Total VFs: seven, Number of VFs: 0, Function Dependency Link: 00",
    "\t\tVF offset: 1, stride: 1, Device ID: 9a49",
    "\tCapabilities: [220 v1] Access Control Services",
    "\t\tACSCap:\tSrcValid+ TransBlk+",
    "\t\tACSCtl:\tSrcValid+ TransBlk+",
  ];
  throwsAt(cap.join("\n"), 4, "Initial VFs");
  cap[3] = "\t\tInitial VFs: 7, Total VFs: 7, Number of VFs: 0, Function Dependency Link: 00";
  throwsAt(cap.join("\n"), 7, "ACSCap", /ReqRedir/);
});

test("SR-IOV: enabled VFs count only with IOVCtl Enable+; TotalVFs 0 is no SR-IOV", () => {
  const sriov = (ctl: string, total: number) =>
    parseLspci(
      [
        "81:00.0 Ethernet controller [0200]: Intel Corporation 82599ES [8086:10fb] (rev 01)",
        "\tCapabilities: [160 v1] Single Root I/O Virtualization (SR-IOV)",
        "\t\tIOVCap:\tMigration- 10BitTagReq- Interrupt Message Number: 000",
        `\t\tIOVCtl:\tEnable${ctl} Migration- Interrupt- MSE+ ARIHierarchy+ 10BitTagReq-`,
        "\t\tIOVSta:\tMigration-",
        `\t\tInitial VFs: 64, Total VFs: ${total}, Number of VFs: 4, Function Dependency Link: 00`,
        "\t\tVF offset: 128, stride: 2, Device ID: 10ed",
      ].join("\n"),
      "s.txt",
    ).functions[0]!.sriov;
  assert.equal(sriov("+", 64)?.enabled, 4);
  assert.equal(sriov("-", 64)?.enabled, 0);
  assert.equal(sriov("+", 0), undefined);
});

test("damaged fixtures never throw anything but InputError", () => {
  const lines = load("intel-tigerlake-nuc11.txt").split("\n").slice(0, 200);
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(
          fc.nat(lines.length - 1),
          fc.nat(120),
          fc.constantFrom("cut", "drop", "dup", "junk"),
        ),
        { maxLength: 6 },
      ),
      (edits) => {
        const l = [...lines];
        for (const [i, n, op] of edits) {
          const at = i % l.length;
          if (op === "cut") l[at] = l[at]!.slice(0, n);
          else if (op === "drop") l.splice(at, 1);
          else if (op === "dup") l.splice(at, 0, l[at]!);
          else l[at] = `${l[at]!.slice(0, n)}\u00e9]:[+-(zz`;
        }
        try {
          validate(parseLspci(l.join("\n"), "f.txt"));
        } catch (e) {
          if (!(e instanceof InputError)) throw e;
        }
      },
    ),
    { numRuns: 300, seed: 42 },
  );
});
