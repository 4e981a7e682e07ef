/**
 * HostSpec → Machine. Flattens nested `children` (assigning bus numbers depth-first, as
 * firmware does), lays out each function's config space, rebuilds the physical tree from
 * bridge bus numbers (a bus no bridge claims is a root bus of its host bridge), and
 * rejects what no real fabric can be: duplicate addresses, a bus claimed by two bridges,
 * bus-number cycles. Observed kernel state (drivers, groups) is kept beside the machine.
 */
import { LoopbackNic } from "../machine/devices/nic.js";
import { Machine } from "../machine/machine.js";
import { PowerNvMachine } from "../machine/powerpc/machine.js";
import { buildConfigSpace, rawConfigSpace } from "../machine/pci/builder.js";
import type { ConfigSpace } from "../machine/pci/config-space.js";
import { isQemuHostBridge, qemuConfigSpace } from "../machine/pci/qemu.js";
import { minimalRomImage, romBarOffset } from "../machine/pci/rom.js";
import type { PciFunction, PhysBus } from "../machine/pci/fabric.js";
import * as R from "../uapi/pci_regs.js";
import { InputError } from "./errors.js";
import { BDF_RE, PCIE_TYPE_CODE, SLOT_RE, type FunctionSpec, type HostSpec } from "./spec.js";

export interface Observed {
  driver?: string;
  group?: number;
}

export interface Host {
  name: string;
  description?: string;
  spec: HostSpec;
  machine: Machine;
  cmdline: string;
  unprivileged: boolean;
  /** Every function's description by "dddd:bb:dd.f" (nested children included). */
  functions: Map<string, FunctionSpec>;
  /** What the running kernel was seen doing, by "dddd:bb:dd.f". */
  observed: Map<string, Observed>;
  /** Where the host came from, for messages. */
  source: string;
  /** What the input could not say and the analysis therefore assumed. */
  assumptions: string[];
}

interface Flat {
  spec: FunctionSpec;
  domain: number;
  bus: number;
  devfn: number;
  name: string;
  /** "functions[3].children[0]" for messages. */
  path: string;
  config?: ConfigSpace;
}

export function formatBdf(domain: number, bus: number, devfn: number): string {
  return `${domain.toString(16).padStart(4, "0")}:${bus.toString(16).padStart(2, "0")}:${(
    devfn >> 3
  )
    .toString(16)
    .padStart(2, "0")}.${devfn & 7}`;
}

export function parseBdf(s: string): { domain: number; bus: number; devfn: number } | null {
  const m = BDF_RE.exec(s);
  if (!m) return null;
  return {
    domain: m[1] ? parseInt(m[1], 16) : 0,
    bus: parseInt(m[2] as string, 16),
    devfn: R.PCI_DEVFN(parseInt(m[3] as string, 16), parseInt(m[4] as string, 10)),
  };
}

export function buildHost(spec: HostSpec, source: string): Host {
  const fail = (detail: string, field?: string): never => {
    throw new InputError(source, detail, undefined, field);
  };
  const flat = flatten(spec, fail);

  // Config space for every function; a slot with several functions is multifunction.
  const perSlot = new Map<string, number>();
  const slotKey = (f: Flat) => `${f.domain}:${f.bus}:${f.devfn >> 3}`;
  for (const f of flat) perSlot.set(slotKey(f), (perSlot.get(slotKey(f)) ?? 0) + 1);
  const firmware = new FirmwareAllocator();
  const masks = capturedInQemu(flat, fail) ? "qemu" : "spec";
  for (const f of flat) {
    const shared = (perSlot.get(slotKey(f)) ?? 1) > 1;
    f.config = configFor(f, shared, spec.unprivileged, masks, firmware, fail);
  }

  // Which bridge claims which bus.
  const key = (d: number, b: number) => `${d}:${b}`;
  const claim = new Map<string, Flat>();
  for (const f of flat) {
    const cs = f.config as ConfigSpace;
    if ((cs.read(R.PCI_HEADER_TYPE, 1) & R.PCI_HEADER_TYPE_MASK) !== R.PCI_HEADER_TYPE_BRIDGE)
      continue;
    const sec = cs.read(R.PCI_SECONDARY_BUS, 1);
    if (sec === 0) continue;
    // Not below the bridge's own bus: a loop (pci_scan_bridge_extend: "configuration
    // invalid"). With every secondary bus above its bridge's, no chain of bridges can cycle.
    if (sec <= f.bus)
      fail(
        `bridge ${f.name} on bus ${hex2(f.bus)} has bus ${hex2(sec)} as secondary bus: a loop in the bus topology`,
        `${f.path}.secondary`,
      );
    const other = claim.get(key(f.domain, sec));
    if (other)
      fail(
        `bus ${hex2(sec)} is the secondary bus of both ${other.name} and ${f.name}`,
        `${f.path}.secondary`,
      );
    claim.set(key(f.domain, sec), f);
  }

  const machine =
    spec.platform?.arch === "powernv" ? powernvMachine(spec) : new Machine(spec.name, spec.cpu);
  const vmdDomains = new Map<number, Flat>();
  for (const f of flat) {
    if (f.spec.vmd) vmdDomains.set(f.spec.vmd.domain, f);
  }
  // Root buses: every bus number with functions that no bridge claims.
  const buses = new Map<string, PhysBus>();
  const rootKeys = new Map<string, [number, number]>();
  for (const f of flat)
    if (!claim.has(key(f.domain, f.bus))) rootKeys.set(key(f.domain, f.bus), [f.domain, f.bus]);
  for (const [k, [d, b]] of [...rootKeys].sort((x, y) => x[1][0] - y[1][0] || x[1][1] - y[1][1])) {
    buses.set(k, machine.pci.addRoot(d, b));
    const owner = vmdDomains.get(d);
    machine.roots.push(
      owner
        ? { domain: d, bus: b, vmd: { domain: owner.domain, bus: owner.bus, devfn: owner.devfn } }
        : { domain: d, bus: b },
    );
  }
  // Attach functions parent-first: sort by depth so a bridge exists before its bus.
  const depthOf = new Map<Flat, number>();
  const depth = (f: Flat): number => {
    let d = depthOf.get(f);
    if (d === undefined) {
      const br = claim.get(key(f.domain, f.bus));
      d = br ? depth(br) + 1 : 0;
      depthOf.set(f, d);
    }
    return d;
  };
  const ordered = [...flat].sort(
    (a, b) => depth(a) - depth(b) || a.domain - b.domain || a.bus - b.bus || a.devfn - b.devfn,
  );
  const fns = new Map<Flat, PciFunction>();
  for (const f of ordered) {
    let bus = buses.get(key(f.domain, f.bus));
    if (!bus) {
      const br = claim.get(key(f.domain, f.bus)) as Flat;
      bus = machine.pci.link(fns.get(br) as PciFunction);
      buses.set(key(f.domain, f.bus), bus);
    }
    const fn = machine.pci.attach(bus, f.devfn, f.config as ConfigSpace);
    if (f.spec.rom?.image === "minimal") fn.rom = romImageOf(fn.config);
    fns.set(f, fn);
  }
  for (const f of flat) {
    const br = fns.get(f) as PciFunction;
    if (
      claim.get(key(f.domain, (f.config as ConfigSpace).read(R.PCI_SECONDARY_BUS, 1))) === f &&
      !br.secondary
    ) {
      machine.pci.link(br); // an empty bus behind a bridge
    }
  }

  const outOfScope = new Map<number, string[]>(); // segment → functions no unit translates
  for (const f of flat)
    if (f.spec.noIommu) outOfScope.set(f.domain, [...(outOfScope.get(f.domain) ?? []), f.name]);
  const assumptions: string[] = [];
  for (const u of spec.iommu) {
    if (u.kind === "none") continue;
    if (u.kind === "intel-vtd" && (u.cap === undefined || u.ecap === undefined)) {
      // lspci does not show the DMAR registers: the machine gets a current Intel client
      // unit's; the description keeps them unknown, so reports can say so.
      assumptions.push(
        `The input does not give ${u.name}'s VT-d registers; assumed those of a current Intel ` +
          `client unit (CAP ${VTD_DEFAULT.cap}, ECAP ${VTD_DEFAULT.ecap}: Snoop Control and ` +
          "interrupt remapping present). Capture a snapshot to read the real ones.",
      );
    }
    const exclude = outOfScope.get(u.segment) ?? [];
    machine.iommus.push({
      kind: u.kind,
      name: u.name,
      cap: reg(u.cap ?? (u.kind === "intel-vtd" ? VTD_DEFAULT.cap : undefined)),
      ecap: reg(u.ecap ?? (u.kind === "intel-vtd" ? VTD_DEFAULT.ecap : undefined)),
      segment: u.segment,
      scope: u.devices ? { all: false, devices: u.devices.map(normBdf) } : { all: true, exclude },
    });
  }

  machine.attachKnownModels();
  for (const [bdf, model] of Object.entries(spec.platform?.models ?? {})) {
    const p = parseBdf(bdf);
    if (!p || !machine.pci.fn(p.domain, p.bus, p.devfn))
      fail(`no function at ${bdf} for the ${model} model`, `platform.models`);
    const at = p as { domain: number; bus: number; devfn: number };
    machine.attachModel(at.domain, at.bus, at.devfn, (port) => new LoopbackNic(port));
  }
  const observed = new Map<string, Observed>();
  for (const f of flat) {
    if (f.spec.driver !== undefined || f.spec.group !== undefined) {
      observed.set(f.name, { driver: f.spec.driver, group: f.spec.group });
    }
  }
  return {
    name: spec.name,
    description: spec.description,
    spec,
    machine,
    cmdline: spec.kernel.cmdline,
    unprivileged: spec.unprivileged,
    functions: new Map(flat.map((f) => [f.name, f.spec])),
    observed,
    source,
    assumptions,
  };
}

/** A Tiger Lake client's main DMAR unit (cap/ecap as sysfs shows them). */
const VTD_DEFAULT = { cap: "0xd2008c40660462", ecap: "0xf050da" };

function normBdf(s: string): string {
  const p = parseBdf(s) as { domain: number; bus: number; devfn: number };
  return formatBdf(p.domain, p.bus, p.devfn);
}

function reg(v: string | undefined): bigint {
  return v === undefined ? 0n : BigInt("0x" + v.replace(/^0x/i, ""));
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, "0");
}

/** Full addresses for every function; nested children get depth-first bus numbers. */
function flatten(spec: HostSpec, fail: (d: string, f?: string) => never): Flat[] {
  const out: Flat[] = [];
  const used = new Map<number, Set<number>>(); // domain → bus numbers in use
  const note = (d: number, b: number) => {
    if (!used.has(d)) used.set(d, new Set());
    (used.get(d) as Set<number>).add(b);
  };
  const nextFree = (d: number, above: number) => {
    let n = above + 1;
    while (used.get(d)?.has(n)) n++;
    return n;
  };

  const visitNumbers = (fs: FunctionSpec[], top: boolean) => {
    for (const f of fs) {
      const p = top ? parseBdf(f.addr) : null;
      if (p) note(p.domain, p.bus);
      if (f.secondary !== undefined && p) note(p.domain, f.secondary);
      if (f.subordinate !== undefined && p) note(p.domain, f.subordinate);
      if (f.children) visitNumbers(f.children, false);
    }
  };
  visitNumbers(spec.functions, true);

  const seen = new Map<string, string>();
  const add = (f: FunctionSpec, domain: number, bus: number, devfn: number, path: string) => {
    const name = formatBdf(domain, bus, devfn);
    const prev = seen.get(name);
    if (prev) fail(`${name} is described twice (also at ${prev})`, path);
    seen.set(name, path);
    out.push({ spec: f, domain, bus, devfn, name, path });
  };
  const visitChildren = (parent: FunctionSpec, domain: number, bus: number, path: string) => {
    if (!parent.children) return;
    if (parent.header && parent.header !== "bridge")
      fail("only a bridge can have children", `${path}.children`);
    const sec = parent.secondary ?? nextFree(domain, bus);
    note(domain, sec);
    parent.secondary = sec;
    parent.children.forEach((c, i) => {
      const p = `${path}.children[${i}]`;
      const m = SLOT_RE.exec(c.addr);
      if (!m) fail('expected "dd.f" (device and function below the bridge)', `${p}.addr`);
      const mm = m as RegExpExecArray;
      add(
        c,
        domain,
        sec,
        R.PCI_DEVFN(parseInt(mm[1] as string, 16), parseInt(mm[2] as string, 10)),
        p,
      );
      visitChildren(c, domain, sec, p);
    });
    parent.subordinate ??= Math.max(sec, subtreeMax(parent));
  };
  const subtreeMax = (f: FunctionSpec): number =>
    Math.max(f.secondary ?? 0, ...(f.children ?? []).map(subtreeMax));
  spec.functions.forEach((f, i) => {
    const path = `functions[${i}]`;
    const p = parseBdf(f.addr);
    if (!p) fail('expected a PCI address "dddd:bb:dd.f"', `${path}.addr`);
    const pp = p as { domain: number; bus: number; devfn: number };
    add(f, pp.domain, pp.bus, pp.devfn, path);
    visitChildren(f, pp.domain, pp.bus, path);
  });
  return out;
}

/** Fields that describe capabilities: a function with none of them in an unprivileged
 * capture had its capability list hidden, not absent. */
const CAP_FIELDS = ["pcie", "acs", "flr", "pm", "af", "sriov", "ari", "ariForwarding"] as const;

/**
 * BAR addresses for descriptions that give none, as firmware assigns them: 32-bit memory
 * from 0xc0000000 up, 64-bit memory from 64 GiB up, I/O ports from 0x1000, each aligned
 * to its size. (Bridge windows are not programmed: nothing in the model routes by them.)
 */
class FirmwareAllocator {
  private next = { mem32: 0xc0000000, mem64: 2 ** 36, io: 0x1000 };
  assign(b: { size: number; kind: "mem32" | "mem64" | "io" }): number {
    const at = Math.ceil(this.next[b.kind] / b.size) * b.size;
    this.next[b.kind] = at + b.size;
    return at;
  }
}

/**
 * Was the input captured inside a QEMU guest? Its host bridge's raw bytes say so
 * (machine/pci/qemu.ts); the functions' raw bytes then get QEMU's write masks, not the
 * specifications'. Described functions are real hardware's by construction.
 */
function capturedInQemu(flat: Flat[], fail: (d: string, f?: string) => never): boolean {
  const hb = flat.find((f) => f.domain === 0 && f.bus === 0 && f.devfn === 0);
  return hb?.spec.config !== undefined && isQemuHostBridge(rawConfigSpace(rawBytes(hb, fail)));
}

function rawBytes(f: Flat, fail: (d: string, f?: string) => never): Uint8Array {
  const hex = (f.spec.config as string).replace(/\s+/g, "");
  const n = hex.length / 2;
  if (hex.length % 2 !== 0 || ![64, 128, 256, 4096].includes(n)) {
    fail(`expected 64, 128, 256 or 4096 bytes of hex, got ${hex.length / 2}`, `${f.path}.config`);
  }
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i++) bytes[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

function configFor(
  f: Flat,
  sharedSlot: boolean,
  unprivileged: boolean,
  masks: "spec" | "qemu",
  firmware: FirmwareAllocator,
  fail: (d: string, f?: string) => never,
): ConfigSpace {
  const s = f.spec;
  if (s.config !== undefined) {
    const bytes = rawBytes(f, fail);
    const cs = masks === "qemu" ? qemuConfigSpace(bytes) : rawConfigSpace(bytes);
    return allowBarSizing(cs, s.bars ?? [], s.rom?.size);
  }
  const cs = buildConfigSpace(
    {
      ...s,
      header: s.header ?? (s.children || s.secondary !== undefined ? "bridge" : "normal"),
      multifunction: s.multifunction ?? sharedSlot,
      pcieTypeCode: s.pcie ? PCIE_TYPE_CODE[s.pcie] : undefined,
      primary: f.bus,
      bars: s.bars?.map((b) => ({ ...b, address: b.address ?? firmware.assign(b) })),
    },
    unprivileged && !CAP_FIELDS.some((k) => s[k] !== undefined) ? 64 : undefined,
  );
  // Firmware places the ROM BAR too, decoding disabled until software enables it.
  if (s.rom) cs.set(romBarOffset(cs), 4, firmware.assign({ size: s.rom.size, kind: "mem32" }));
  return allowBarSizing(cs, [], s.rom?.size);
}

/** The ROM image a function is assumed to carry: the smallest valid one, with its IDs. */
function romImageOf(cs: ConfigSpace): Uint8Array {
  return minimalRomImage(
    cs.read(R.PCI_VENDOR_ID, 2),
    cs.read(R.PCI_DEVICE_ID, 2),
    cs.read(R.PCI_CLASS_REVISION, 4) >>> 8,
  );
}

/**
 * BAR sizing (PCI 3.0 §6.2.5): the address bits below a BAR's size are hard-wired to zero,
 * so writing all ones reads back the size mask. Raw bytes carry addresses but no masks; the
 * sizes come from the input (a snapshot's `resource` file), as buildConfigSpace does for
 * described BARs. The ROM BAR also has its enable bit.
 */
function allowBarSizing(
  cs: ConfigSpace,
  bars: NonNullable<FunctionSpec["bars"]>,
  rom: number | undefined,
): ConfigSpace {
  for (const b of bars) {
    const off = R.PCI_BASE_ADDRESS_0 + 4 * b.index;
    const low = b.size >= 2 ** 32 ? 0 : 2 ** 32 - b.size;
    cs.allow(off, 4, (low & (b.kind === "io" ? 0xfffffffc : 0xfffffff0)) >>> 0);
    if (b.kind === "mem64")
      cs.allow(off + 4, 4, b.size > 2 ** 32 ? 2 ** 32 - b.size / 2 ** 32 : 0xffffffff);
  }
  if (rom !== undefined) {
    const mask = ((2 ** 32 - rom) & R.PCI_ROM_ADDRESS_MASK) | R.PCI_ROM_ADDRESS_ENABLE;
    cs.allow(romBarOffset(cs), 4, mask >>> 0);
  }
  return cs;
}

/**
 * A PowerNV machine from the platform section: one PHB per described domain. A PHB's
 * reserved PE defaults to the last (skiboot's PHB3/PHB4), its TCE sizes to the hardware's
 * (PHB3: 4K, 64K, 16M, 256M; PHB4: 4K, 64K, 2M, 1G, skiboot's "default P9 PHB4 page sizes").
 */
function powernvMachine(spec: HostSpec): PowerNvMachine {
  const pf = spec.platform as NonNullable<HostSpec["platform"]>;
  return new PowerNvMachine(
    spec.name,
    pf.phbs.map((p) => ({
      index: p.index,
      model: p.model,
      numPes: p.numPes,
      reservedPe: p.reservedPe ?? p.numPes - 1,
      m32PciBase: p.m32PciBase,
      m32Size: p.m32Size,
      tceSizes: p.tceSizes ?? (p.model === "phb3" ? [12, 16, 24, 28] : [12, 16, 21, 30]),
      tceSizesFromDt: p.tceSizes !== undefined,
      cpu: pf.cpu,
    })),
  );
}
