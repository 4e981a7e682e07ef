/**
 * Importer for `lspci -vvnn` text (also `-vvvnn`, `-vnn`, `-nn`, `-n`, with `-D` and `-k`):
 * one FunctionSpec per function, at top level, with its full address `dddd:bb:dd.f`.
 *
 * Follows the output code of pciutils (github.com/pciutils/pciutils): lspci.c `show_terse`
 * (title line), `show_verbose`, `show_bases` (Region lines), `show_htype1`/`show_htype2`
 * (Bus line); ls-caps.c `show_caps`, `cap_express`, `cap_express_dev`, `cap_pm`, `cap_af`;
 * ls-ecaps.c `cap_acs`, `cap_ari`, `cap_sriov`; ls-kernel.c `show_kernel`; lib/names.c
 * `format_name`/`format_name_pair` (the `[cccc]` and `[vvvv:dddd]` of `-nn`).
 *
 * Layout: a title line at column 0, then indented lines. The least-indented lines of a block
 * are lspci's top-level lines (`Region 0:`, `Bus:`, `Capabilities:`, ...); deeper lines belong
 * to the capability above them, and inside a capability, deeper lines continue a field
 * (`DevCap:` + `ExtTag- RBE+ FLReset+`). Indentation is compared, not counted, so text whose
 * tabs became spaces still parses. Unknown lines and capabilities are ignored.
 *
 * The helpers exported at the end (line splitting, addresses, the host-level pass) are shared
 * with the hex-dump importer (`hexdump.ts`).
 */
import { basename, extname } from "node:path";
import { InputError } from "./errors.js";
import type { AcsBit, BarSpec, FunctionSpec, HostSpec, IommuSpec, PcieType } from "./spec.js";

/* ------------------------------------------------------------------ tables */

/** cap_express(): the Device/Port Type words, as printed after "Express (vN) ". */
const PCIE_TYPE_NAMES: [string, PcieType][] = [
  ["Endpoint", "endpoint"],
  ["Legacy Endpoint", "legacy-endpoint"],
  ["Root Port", "root-port"],
  ["Upstream Port", "upstream"],
  ["Downstream Port", "downstream"],
  ["PCI-Express to PCI/PCI-X Bridge", "pcie-to-pci"],
  ["PCI/PCI-X to PCI-Express Bridge", "pci-to-pcie"],
  ["Root Complex Integrated Endpoint", "rciep"],
  ["Root Complex Event Collector", "rcec"],
];

/** cap_acs(): ACSCap/ACSCtl flag names in register bit order. */
const ACS_NAMES: [string, AcsBit][] = [
  ["SrcValid", "sv"],
  ["TransBlk", "tb"],
  ["ReqRedir", "rr"],
  ["CmpltRedir", "cr"],
  ["UpstreamFwd", "uf"],
  ["EgressCtrl", "ec"],
  ["DirectTrans", "dt"],
];

/** drivers/pci/controller/vmd.c `vmd_ids` (Linux 6.12+), all vendor 8086. */
const VMD_DEVICE_IDS = new Set([
  0x201d, 0x28c0, 0x467f, 0x4c3d, 0xa77f, 0x7d0b, 0xad0b, 0x9a0b, 0xb60b, 0xb06f, 0xb07f,
]);

/** Host-bridge vendor -> IOMMU kind and sysfs name prefix (Hygon 1d94 uses AMD-Vi). */
const IOMMU_BY_VENDOR = new Map<number, [IommuSpec["kind"], string]>([
  [0x8086, ["intel-vtd", "dmar"]],
  [0x1022, ["amd-vi", "ivhd"]],
  [0x1d94, ["amd-vi", "ivhd"]],
]);

/** PCI domains created by the kernel for Intel VMD start here (vmd_find_free_domain). */
const VMD_DOMAIN_BASE = 0x10000;
const CLASS_CARDBUS_BRIDGE = 0x0607;

/* ------------------------------------------------------------------ shared helpers */

/** One input line: 1-based number, indentation width (tabs stop every 8), text without it. */
export interface Line {
  no: number;
  indent: number;
  text: string;
}

/** stderr of pciutils (`pcilib: ...`, `lspci: ...`) captured with `2>&1`, anywhere in a line. */
const NOISE_RE = /(?:pcilib|lspci): /;

/**
 * Splits text into lines. stderr is unbuffered and stdout is not, so a pciutils warning can
 * land inside a line of output ("LnkCap2: Suppopcilib: Error reading ...\nrted Link Speeds");
 * the message is cut out and the line rejoined with its continuation on the next line.
 */
export function splitLines(text: string): Line[] {
  const raws = text.split(/\r\n|\r|\n/);
  const out: Line[] = [];
  for (let i = 0; i < raws.length; i++) {
    let raw = raws[i]!;
    const no = i + 1;
    const noise = NOISE_RE.exec(raw);
    if (noise) {
      if (noise.index === 0 || i + 1 === raws.length) continue;
      raw = raw.slice(0, noise.index) + raws[++i]!;
    }
    const body = raw.replace(/^[ \t]+/, "");
    let indent = 0;
    for (const c of raw.slice(0, raw.length - body.length))
      indent = c === "\t" ? indent + 8 - (indent % 8) : indent + 1;
    out.push({ no, indent, text: body.trimEnd() });
  }
  return out;
}

/** Rejects empty and binary input before any line is looked at. */
export function checkText(text: string, file: string, what: string): string {
  if (text.trim() === "") throw new InputError(file, `expected ${what}, got an empty file`, 1);
  // Control characters other than tab, line feed, vertical tab, form feed, carriage return.
  for (let i = 0, line = 1; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 10) line++;
    else if ((c < 32 && (c < 9 || c > 13)) || c === 127)
      throw new InputError(file, `expected ${what}, got binary data`, line);
  }
  return text.replace(/^\uFEFF/, "");
}

export interface Loc {
  domain: number;
  bus: number;
  slot: number;
  fn: number;
}

/** A function being imported: its spec plus what the host-level pass needs. */
export interface Parsed extends Loc {
  spec: FunctionSpec;
  /** Line of the title, for duplicate-address errors. */
  line: number;
  vendor?: number;
  device?: number;
  /** 24-bit class code. */
  classCode?: number;
}

const ADDR_RE = /^(?:([0-9a-fA-F]{4,5}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])(?=\s|$)/;
const hex = (s: string): number => parseInt(s, 16);
const hex0 = (n: number, w: number): string => n.toString(16).padStart(w, "0");

/** The address at the start of a title line (lspci.c show_slot_name), or undefined. */
export function parseAddr(line: Line, file: string): (Loc & { rest: string }) | undefined {
  const m = ADDR_RE.exec(line.text);
  if (!m) return undefined;
  const slot = hex(m[3]!);
  if (slot > 0x1f)
    throw new InputError(file, `expected a device number 00-1f, got ${m[3]}`, line.no, "address");
  const domain = m[1] ? hex(m[1]) : 0;
  return { domain, bus: hex(m[2]!), slot, fn: Number(m[4]), rest: line.text.slice(m[0].length) };
}

export const formatAddr = (l: Loc): string =>
  `${hex0(l.domain, 4)}:${hex0(l.bus, 2)}:${hex0(l.slot, 2)}.${l.fn}`;

const PROGIF_RE = /\s*\(prog-if ([0-9a-fA-F]{2})(?: \[.*\])?\)$/;
const REV_RE = /\s*\(rev ([0-9a-fA-F]{2})\)$/;
/** `-nn`: "Class name [cccc]: Vendor Device name [vvvv:dddd]" (format_name*, MIXED). */
const MIXED_RE = /^(.*?) \[([0-9a-fA-F]{4})\]: (.*) \[([0-9a-fA-F]{4}):([0-9a-fA-F]{4})\]$/;
/** `-n`: "cccc: vvvv:dddd" (NUMERIC). */
const NUMERIC_RE = /^([0-9a-fA-F]{4}): ([0-9a-fA-F]{4}):([0-9a-fA-F]{4})$/;

export interface Title {
  vendor: number;
  device: number;
  /** 24-bit class code: `[ccss]` and the prog-if (00 when lspci did not print it). */
  classCode: number;
  revision: number;
  name?: string;
}

/** The rest of a show_terse() title line after the address, or undefined. */
export function parseTitle(rest: string): Title | undefined {
  let s = rest.trim();
  let progIf = 0;
  let revision = 0;
  const p = PROGIF_RE.exec(s);
  if (p) [s, progIf] = [s.slice(0, p.index), hex(p[1]!)];
  const r = REV_RE.exec(s);
  if (r) [s, revision] = [s.slice(0, r.index), hex(r[1]!)];
  const m = MIXED_RE.exec(s);
  if (m) {
    const [cls, name, v, d] = [m[2]!, m[3]!, m[4]!, m[5]!];
    return { vendor: hex(v), device: hex(d), classCode: (hex(cls) << 8) | progIf, revision, name };
  }
  const n = NUMERIC_RE.exec(s);
  if (n) {
    const [cls, v, d] = [n[1]!, n[2]!, n[3]!];
    return { vendor: hex(v), device: hex(d), classCode: (hex(cls) << 8) | progIf, revision };
  }
  return undefined;
}

/** `Kernel driver in use:`, `IOMMU group:` (-vv) and `Flags: ..., IOMMU group N` (-v). */
export function parseObserved(line: Line, spec: FunctionSpec, file: string): boolean {
  const t = line.text;
  let m = /^Kernel driver in use:\s*(.*)$/.exec(t);
  if (m) {
    if (!m[1])
      throw new InputError(file, "expected a driver name", line.no, "Kernel driver in use");
    spec.driver = m[1];
    return true;
  }
  m = /^IOMMU group:\s*(.*)$/.exec(t) ?? /^Flags: .*IOMMU group ([^,]*)/.exec(t);
  if (m) {
    if (!/^\d+$/.test(m[1]!))
      throw new InputError(file, `expected a group number, got "${m[1]}"`, line.no, "IOMMU group");
    spec.group = Number(m[1]);
    return true;
  }
  return false;
}

export function hostName(file: string): string {
  return basename(file, extname(file)) || "host";
}

const byLoc = (a: Loc, b: Loc): number =>
  a.domain - b.domain || a.bus - b.bus || a.slot - b.slot || a.fn - b.fn;

/**
 * The host-level pass shared by the importers: duplicate addresses, multi-function slots,
 * functions outside the IOMMU's scope, VMD ownership and the IOMMU units.
 */
export function finishHost(
  file: string,
  parsed: Parsed[],
  opts: { multifunction: boolean; unprivileged: boolean },
): HostSpec {
  const seen = new Map<string, Parsed>();
  const slots = new Map<string, Parsed[]>();
  for (const p of parsed) {
    const first = seen.get(p.spec.addr);
    if (first)
      throw new InputError(
        file,
        `duplicate address ${p.spec.addr} (first at line ${first.line})`,
        p.line,
        "address",
      );
    seen.set(p.spec.addr, p);
    const key = `${p.domain}:${p.bus}:${p.slot}`;
    slots.set(key, [...(slots.get(key) ?? []), p]);
  }

  // lspci does not print the header-type bit; the kernel only scans fn>0 when fn0 has it.
  if (opts.multifunction)
    for (const fns of slots.values())
      if (fns.length > 1) for (const p of fns) p.spec.multifunction = true;

  // Functions the kernel gave no group: outside every IOMMU's scope.
  const grouped = parsed.some((p) => p.spec.group !== undefined);
  if (grouped) for (const p of parsed) if (p.spec.group === undefined) p.spec.noIommu = true;

  // Intel VMD: domains >= 0x10000 belong to VMD endpoints, paired in ascending order.
  const vmdDomains = new Map<number, number>();
  for (const p of parsed)
    if (p.domain >= VMD_DOMAIN_BASE)
      vmdDomains.set(p.domain, Math.min(p.bus, vmdDomains.get(p.domain) ?? 0xff));
  if (vmdDomains.size) {
    const host = parsed.filter((p) => p.domain < VMD_DOMAIN_BASE);
    const bound = host.filter((p) => p.spec.driver === "vmd");
    const byId = host.filter(
      (p) =>
        p.vendor === 0x8086 && VMD_DEVICE_IDS.has(p.device ?? -1) && p.spec.driver === undefined,
    );
    const ctrls = (bound.length >= vmdDomains.size ? bound : [...bound, ...byId]).sort(byLoc);
    [...vmdDomains]
      .sort((a, b) => a[0] - b[0])
      .forEach(([domain, bus], i) => {
        const c = ctrls[i];
        if (c) c.spec.vmd = { domain, bus };
      });
  }

  // One IOMMU unit per (non-VMD) PCI domain, of the kind the host bridge's vendor implies.
  // Without group lines the text does not say whether one was on: the units are still
  // described, so that groups can be derived as if it were (the loader says so).
  const iommu: IommuSpec[] = [];
  {
    const domains = [...new Set(parsed.map((p) => p.domain))]
      .filter((d) => d < VMD_DOMAIN_BASE)
      .sort((a, b) => a - b);
    const kinds = domains.map((d) => {
      const dom = parsed.filter((p) => p.domain === d);
      const hb =
        dom.find((p) => p.bus === 0 && p.slot === 0 && p.fn === 0) ??
        dom.find((p) => p.classCode !== undefined && p.classCode >> 8 === 0x0600);
      return IOMMU_BY_VENDOR.get(hb?.vendor ?? -1);
    });
    const fallback = kinds.find((k) => k !== undefined);
    const count = new Map<string, number>();
    domains.forEach((segment, i) => {
      const k = kinds[i] ?? fallback;
      if (!k) return;
      const n = count.get(k[1]) ?? 0;
      count.set(k[1], n + 1);
      iommu.push({ kind: k[0], name: `${k[1]}${n}`, segment });
    });
  }

  return {
    name: hostName(file),
    kernel: { cmdline: "" },
    iommu,
    unprivileged: opts.unprivileged,
    functions: parsed.map((p) => p.spec),
  };
}

/* ------------------------------------------------------------------ lspci -vv */

interface Block {
  title: Line;
  addr: Loc & { rest: string };
  body: Line[];
}

/** A field inside a capability: `Key:` line plus its deeper continuation lines. */
interface Field {
  key: string;
  text: string;
  line: number;
}

interface Cap {
  name: string;
  lines: Line[];
}

type Fail = (detail: string, line: number, field: string) => never;

const minIndent = (lines: Line[]): number =>
  lines.reduce((m, l) => Math.min(m, l.indent), Infinity);

/** Every `Name+`/`Name-` flag in a field's text. */
function flags(text: string): Map<string, boolean> {
  const out = new Map<string, boolean>();
  for (const m of text.matchAll(/(?<![\w.])([A-Za-z][\w.]*)([+-])(?=[\s,)]|$)/g))
    out.set(m[1]!, m[2] === "+");
  return out;
}

function capFields(cap: Cap): Map<string, Field> {
  const out = new Map<string, Field>();
  const base = minIndent(cap.lines);
  let cur: Field | undefined;
  for (const l of cap.lines) {
    const m = /^([^:]+):\s*(.*)$/.exec(l.text);
    if (l.indent > base || !m) {
      if (cur) cur.text += ` ${l.text}`;
      continue;
    }
    cur = { key: m[1]!, text: m[2]!, line: l.no };
    if (!out.has(cur.key)) out.set(cur.key, cur);
  }
  return out;
}

/** A `+`/`-` flag that lspci always prints in this field. */
function needFlag(f: Field, name: string, fail: Fail): boolean {
  const v = flags(f.text).get(name);
  if (v === undefined) fail(`expected ${name}+ or ${name}-`, f.line, f.key);
  return v;
}

function needMatch(re: RegExp, f: Field, what: string, fail: Fail): RegExpExecArray {
  const m = re.exec(f.text);
  if (!m) fail(`expected ${what}`, f.line, f.key);
  return m;
}

type CapHandler = (cap: Cap, f: Map<string, Field>, spec: FunctionSpec, fail: Fail) => void;

/** Capabilities the model uses, by the name lspci prints after `[offset]`. */
const CAP_HANDLERS: [string, CapHandler][] = [
  [
    "Express",
    (cap, f, spec) => {
      const type = cap.name.replace(/^Express (?:\(v\d+\) )?/, "");
      const pcie = PCIE_TYPE_NAMES.find(([n]) => type.startsWith(n));
      if (pcie) spec.pcie = pcie[1];
      const flr = f.get("DevCap") && flags(f.get("DevCap")!.text).get("FLReset");
      if (flr !== undefined) spec.flr = flr;
      const ari = f.get("DevCap2") && flags(f.get("DevCap2")!.text).get("ARIFwd");
      if (ari !== undefined) spec.ariForwarding = ari;
    },
  ],
  [
    "Power Management version",
    (_cap, f, spec, fail) => {
      const st = f.get("Status");
      if (st) spec.pm = { noSoftReset: needFlag(st, "NoSoftRst", fail) };
    },
  ],
  [
    "PCI Advanced Features",
    (_cap, f, spec, fail) => {
      const af = f.get("AFCap");
      if (af) spec.af = { tp: needFlag(af, "TP", fail), flr: needFlag(af, "FLR", fail) };
    },
  ],
  [
    "Access Control Services",
    (_cap, f, spec, fail) => {
      const [cap, ctl] = [f.get("ACSCap"), f.get("ACSCtl")];
      if (!cap || !ctl) return;
      const bits = (fl: Field) =>
        ACS_NAMES.filter(([n]) => needFlag(fl, n, fail)).map(([, b]) => b);
      spec.acs = { cap: bits(cap), ctl: bits(ctl) };
    },
  ],
  [
    "Alternative Routing-ID Interpretation",
    (_cap, f, spec, fail) => {
      const a = f.get("ARICap");
      if (a)
        spec.ari = {
          nextFunction: Number(needMatch(/Next Function: (\d+)/, a, "Next Function: N", fail)[1]),
        };
    },
  ],
  [
    "Single Root I/O Virtualization",
    (_cap, f, spec, fail) => {
      const [ctl, vfs, off] = [f.get("IOVCtl"), f.get("Initial VFs"), f.get("VF offset")];
      if (!ctl || !vfs || !off) return;
      const what = "N, Total VFs: N, Number of VFs: N";
      const [, initial, total, num] = needMatch(
        /^(\d+), Total VFs: (\d+), Number of VFs: (\d+)/,
        vfs,
        what,
        fail,
      ).map(Number);
      const o = needMatch(
        /^(\d+), stride: (\d+), Device ID: ([0-9a-fA-F]{4})\b/,
        off,
        "N, stride: N, Device ID: dddd",
        fail,
      );
      // sriov_init() ignores a capability whose TotalVFs is 0.
      if (!total) return;
      spec.sriov = {
        total,
        initial,
        enabled: needFlag(ctl, "Enable", fail) ? num! : 0,
        offset: Number(o[1]),
        stride: Number(o[2]),
        vfDevice: hex(o[3]!),
      };
    },
  ],
];

const SIZE_UNITS = ["", "K", "M", "G", "T"];

/** show_bases(): `Region N: Memory at ADDR (64-bit, prefetchable) [size=16M]` / `I/O ports at`. */
function parseRegion(index: number, text: string, fail: (d: string) => never): BarSpec | undefined {
  const mem = /^Memory at (\S+) \((32-bit|64-bit|low-1M|type 3), (non-)?prefetchable\)/.exec(text);
  const io = /^I\/O ports at (\S+)/.exec(text);
  if (!mem && !io)
    fail(
      'expected "Memory at ADDR (64-bit, prefetchable) [size=N]" or "I/O ports at ADDR [size=N]"',
    );
  const size = /\[size=(\d+)([KMGT]?)\]/.exec(text);
  // Without a size (e.g. `[virtual]`/`[disabled]` only) there is no BAR to describe.
  if (!size) return undefined;
  const bytes = Number(size[1]) * 1024 ** SIZE_UNITS.indexOf(size[2]!);
  // BarSpec needs a power of two >= 16: 4- and 8-byte I/O BARs cannot be described.
  if (bytes < 16 || !Number.isInteger(Math.log2(bytes))) return undefined;
  const at = (mem ?? io)![1]!;
  const addr = /^[0-9a-fA-F]+$/.test(at) ? BigInt(`0x${at}`) : undefined;
  const bar: BarSpec = {
    index,
    size: bytes,
    kind: io ? "io" : mem![2] === "64-bit" ? "mem64" : "mem32",
    prefetchable: !!mem && mem[3] === undefined,
  };
  if (addr !== undefined && addr <= BigInt(Number.MAX_SAFE_INTEGER)) bar.address = Number(addr);
  return bar;
}

function parseBlock(b: Block, file: string): Parsed & { denied: boolean } {
  const title = parseTitle(b.addr.rest);
  if (!title)
    throw new InputError(
      file,
      'expected "bb:dd.f class [cccc]: name [vvvv:dddd] (rev rr)" (run lspci with -nn)',
      b.title.no,
      "title",
    );
  const spec: FunctionSpec = {
    addr: formatAddr(b.addr),
    id: { vendor: title.vendor, device: title.device },
    class: title.classCode,
    revision: title.revision,
  };
  if (title.name !== undefined) spec.name = title.name;

  let denied = false;
  let verbose = false;
  let bus: number[] | undefined;
  const caps: Cap[] = [];
  const bars: BarSpec[] = [];
  const l1 = minIndent(b.body);
  let cap: Cap | undefined;

  for (const line of b.body) {
    if (line.indent > l1) {
      cap?.lines.push(line);
      continue;
    }
    cap = undefined;
    const t = line.text;
    const fail: (detail: string, field: string) => never = (detail, field) => {
      throw new InputError(file, detail, line.no, field);
    };
    let m: RegExpExecArray | null;
    if (parseObserved(line, spec, file)) {
      if (t.startsWith("Flags:")) verbose = true;
    } else if ((m = /^Capabilities: (.*)$/.exec(t))) {
      if (m[1]!.startsWith("<access denied>")) denied = true;
      const h = /^\[[0-9a-fA-F]+(?: v\d+)?\] (.*)$/.exec(m[1]!);
      if (h) caps.push((cap = { name: h[1]!, lines: [] }));
    } else if (t.startsWith("<access denied")) {
      denied = true;
    } else if (/^(?:Control|Flags):/.test(t)) {
      verbose = true;
    } else if ((m = /^Subsystem:\s*(.*)$/.exec(t))) {
      const s =
        /\[([0-9a-fA-F]{4}):([0-9a-fA-F]{4})\]$/.exec(m[1]!) ??
        /^([0-9a-fA-F]{4}):([0-9a-fA-F]{4})$/.exec(m[1]!);
      if (!s) fail('expected "name [vvvv:dddd]" (run lspci with -nn)', "Subsystem");
      spec.subsystem = { vendor: hex(s[1]!), device: hex(s[2]!) };
    } else if (t.startsWith("Bus:")) {
      const r =
        /^Bus: primary=([0-9a-fA-F]{2}), secondary=([0-9a-fA-F]{2}), subordinate=([0-9a-fA-F]{2})(?:,|$)/.exec(
          t,
        );
      if (!r) fail('expected "primary=bb, secondary=bb, subordinate=bb" in hex', "Bus");
      bus = [hex(r[2]!), hex(r[3]!)];
    } else if ((m = /^Region (\d+): (.*)$/.exec(t))) {
      const index = Number(m[1]);
      const field = `Region ${m[1]}`;
      if (index > 5) fail("expected a BAR number 0-5", field);
      const bar = parseRegion(index, m[2]!, (d) => fail(d, field));
      if (bar) bars.push(bar);
    }
  }

  const fail: Fail = (detail, line, field) => {
    throw new InputError(file, detail, line, field);
  };
  // Non-root: lspci stops at "<access denied>"; nothing is decoded for this function.
  if (!denied)
    for (const c of caps) {
      const h = CAP_HANDLERS.find(([prefix]) => c.name.startsWith(prefix));
      if (h) h[1](c, c.lines.length ? capFields(c) : new Map(), spec, fail);
    }

  if (bus) {
    spec.header = title.classCode >> 8 === CLASS_CARDBUS_BRIDGE ? "cardbus" : "bridge";
    [spec.secondary, spec.subordinate] = bus;
  } else if (verbose) spec.header = "normal";
  if (bars.length) spec.bars = bars;

  return {
    ...b.addr,
    spec,
    line: b.title.no,
    vendor: title.vendor,
    device: title.device,
    classCode: title.classCode,
    denied,
  };
}

export function parseLspci(text: string, file: string): HostSpec {
  const what = "lspci -vvnn output";
  const blocks: Block[] = [];
  for (const line of splitLines(checkText(text, file, what))) {
    if (!line.text) continue;
    if (line.indent === 0) {
      const addr = parseAddr(line, file);
      if (!addr)
        throw new InputError(
          file,
          `expected ${what}: a title line "bb:dd.f class [cccc]: name [vvvv:dddd]"`,
          line.no,
          "title",
        );
      blocks.push({ title: line, addr, body: [] });
    } else {
      const cur = blocks.at(-1);
      if (!cur)
        throw new InputError(file, `expected ${what}: a title line first`, line.no, "title");
      cur.body.push(line);
    }
  }
  if (!blocks.length) throw new InputError(file, `expected ${what}: no PCI function found`, 1);
  const parsed = blocks.map((b) => parseBlock(b, file));
  // A bridge's secondary bus lies below its own: pci_scan_bridge_extend() calls anything
  // else "bridge configuration invalid" and renumbers it, so no running kernel shows it.
  for (const p of parsed) {
    const sec = p.spec.secondary;
    if (sec === undefined || (sec === 0 && !p.spec.subordinate) || sec > p.bus) continue;
    throw new InputError(
      file,
      `secondary bus ${hex0(sec, 2)} is not below the bridge's own bus ${hex0(p.bus, 2)}: a loop in the bus topology`,
      p.line,
      "Bus",
    );
  }
  return finishHost(file, parsed, {
    multifunction: true,
    unprivileged: parsed.some((p) => p.denied),
  });
}
