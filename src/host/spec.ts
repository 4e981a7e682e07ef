/**
 * The host description every input format is turned into: a PCI fabric (functions with
 * their config-space facts, or their raw config bytes), the platform's IOMMU units, the
 * kernel command line, and what the running kernel was seen doing (bound drivers, groups).
 *
 * Validated with zod. The YAML/JSON loader (`yaml.ts`) maps zod's issue paths back to
 * file lines; the lspci, hex-dump and snapshot importers produce the same shape, so one
 * builder (`machine/pci/builder.ts` via `host/build.ts`) makes every machine.
 *
 * Field meanings follow include/uapi/linux/pci_regs.h (Linux 6.12): `pcie` is the
 * PCIe Capabilities "Device/Port Type" (bits 7:4), `acs` the ACS Capability and Control
 * bits (SV TB RR CR UF EC DT), `flr` DevCap bit 28, `noSoftReset` PMCSR bit 3,
 * `af` the Advanced Features capability, `sriov` the SR-IOV extended capability.
 */
import { z } from "zod";

export const ACS_BITS = ["sv", "tb", "rr", "cr", "uf", "ec", "dt"] as const;
export type AcsBit = (typeof ACS_BITS)[number];

export const PCIE_TYPES = [
  "endpoint",
  "legacy-endpoint",
  "root-port",
  "upstream",
  "downstream",
  "pcie-to-pci",
  "pci-to-pcie",
  "rciep",
  "rcec",
] as const;
export type PcieType = (typeof PCIE_TYPES)[number];

/** PCIe Capabilities register Device/Port Type values (PCI_EXP_TYPE_*). */
export const PCIE_TYPE_CODE: Record<PcieType, number> = {
  endpoint: 0x0,
  "legacy-endpoint": 0x1,
  "root-port": 0x4,
  upstream: 0x5,
  downstream: 0x6,
  "pcie-to-pci": 0x7,
  "pci-to-pcie": 0x8,
  rciep: 0x9,
  rcec: 0xa,
};

const hexOrInt = (what: string, max: number) =>
  z
    .union([z.number().int(), z.string().regex(/^(0x)?[0-9a-fA-F]+$/, `expected ${what} in hex`)])
    .transform((v) => (typeof v === "number" ? v : parseInt(v.replace(/^0x/i, ""), 16)))
    .refine((v) => v >= 0 && v <= max, `expected ${what} between 0 and 0x${max.toString(16)}`);

/** "vvvv:dddd" */
const idPair = z
  .string()
  .regex(/^[0-9a-fA-F]{4}:[0-9a-fA-F]{4}$/, 'expected "vendor:device" as two 4-digit hex numbers')
  .transform((s) => {
    const [v, d] = s.split(":") as [string, string];
    return { vendor: parseInt(v, 16), device: parseInt(d, 16) };
  });

/** Full address "dddd:bb:dd.f" (domain may have 4 or 5 hex digits), or "bb:dd.f" in domain 0. */
export const BDF_RE = /^(?:([0-9a-fA-F]{4,5}):)?([0-9a-fA-F]{2}):([0-1][0-9a-fA-F])\.([0-7])$/;
/** Address below a bridge: "dd.f" (the bus is the bridge's secondary bus). */
export const SLOT_RE = /^([0-1][0-9a-fA-F])\.([0-7])$/;

const acsSpec = z.strictObject({
  cap: z.array(z.enum(ACS_BITS)).default([]),
  ctl: z.array(z.enum(ACS_BITS)).default([]),
});

const barSpec = z.strictObject({
  index: z.number().int().min(0).max(5),
  // Memory BARs are at least 16 bytes, I/O BARs at least 4 (PCI 3.0 §6.2.5.1).
  size: hexOrInt("a BAR size", Number.MAX_SAFE_INTEGER).refine(
    (n) => n >= 4 && Number.isInteger(Math.log2(n)),
    "expected a power of two",
  ),
  kind: z.enum(["mem32", "mem64", "io"]).default("mem32"),
  prefetchable: z.boolean().default(false),
  address: hexOrInt("an address", Number.MAX_SAFE_INTEGER).optional(),
});

const sriovSpec = z.strictObject({
  total: z.number().int().min(1).max(0xffff),
  initial: z.number().int().min(0).max(0xffff).optional(),
  /** VFs enabled by the time the host was observed (a driver wrote sriov_numvfs). */
  enabled: z.number().int().min(0).max(0xffff).default(0),
  offset: z.number().int().min(0).max(0xffff).default(1),
  stride: z.number().int().min(0).max(0xffff).default(1),
  vfDevice: hexOrInt("a device id", 0xffff).optional(),
});

// A ROM BAR decodes at least 2 KiB (PCI 3.0 §6.2.5.2).
const romSize = hexOrInt("a ROM size", 0x80000000).refine(
  (n) => n >= 0x800 && Number.isInteger(Math.log2(n)),
  "expected a power of two",
);

/** What an expansion ROM holds: the smallest valid image (machine/pci/rom.ts), or nothing. */
export const ROM_IMAGES = ["minimal", "blank"] as const;

/** `rom: SIZE` is shorthand for `rom: { size: SIZE, image: minimal }`. */
export interface RomSpec {
  size: number;
  image: (typeof ROM_IMAGES)[number];
}

export interface FunctionSpec {
  /** Full "dddd:bb:dd.f" at top level, "dd.f" inside a bridge's `children`. */
  addr: string;
  id?: { vendor: number; device: number };
  subsystem?: { vendor: number; device: number };
  class?: number;
  revision?: number;
  name?: string;
  header?: "normal" | "bridge" | "cardbus";
  multifunction?: boolean;
  pcie?: PcieType;
  /** A PCIe downstream port whose DevCap2 advertises ARI forwarding. */
  ariForwarding?: boolean;
  /** ARI extended capability with this Next Function Number. */
  ari?: { nextFunction: number };
  acs?: { cap: AcsBit[]; ctl: AcsBit[] };
  flr?: boolean;
  pm?: { noSoftReset: boolean };
  af?: { flr: boolean; tp: boolean };
  sriov?: z.infer<typeof sriovSpec>;
  bars?: z.infer<typeof barSpec>[];
  /**
   * Expansion ROM BAR size in bytes (sysfs `resource` line 7) and what the ROM holds: the
   * smallest valid image (assumed when the input does not say), or nothing ("blank").
   */
  rom?: RomSpec;
  secondary?: number;
  subordinate?: number;
  /** Intel VMD: this endpoint owns the PCI domain given, whose root bus is `vmd.bus`. */
  vmd?: { domain: number; bus: number };
  /** Raw config space (hex, 64/128/256/4096 bytes); wins over every declarative field. */
  config?: string;
  /** Observed on the running kernel: bound driver and IOMMU group number. */
  driver?: string;
  group?: number;
  /** Not translated by any IOMMU unit (outside the DMAR/IVRS scope). */
  noIommu?: boolean;
  children?: FunctionSpec[];
}

const functionSpec: z.ZodType<FunctionSpec, unknown> = z.lazy(() =>
  z.strictObject({
    addr: z.string(),
    id: idPair.optional(),
    subsystem: idPair.optional(),
    class: hexOrInt("a 24-bit class code", 0xffffff).optional(),
    revision: hexOrInt("a revision", 0xff).optional(),
    name: z.string().optional(),
    header: z.enum(["normal", "bridge", "cardbus"]).optional(),
    multifunction: z.boolean().optional(),
    pcie: z.enum(PCIE_TYPES).optional(),
    ariForwarding: z.boolean().optional(),
    ari: z.strictObject({ nextFunction: z.number().int().min(0).max(255) }).optional(),
    acs: acsSpec.optional(),
    flr: z.boolean().optional(),
    pm: z.strictObject({ noSoftReset: z.boolean().default(false) }).optional(),
    af: z.strictObject({ flr: z.boolean(), tp: z.boolean() }).optional(),
    sriov: sriovSpec.optional(),
    bars: z.array(barSpec).optional(),
    rom: z
      .union([
        romSize,
        z.strictObject({ size: romSize, image: z.enum(ROM_IMAGES).default("minimal") }),
      ])
      .transform((r): RomSpec => (typeof r === "number" ? { size: r, image: "minimal" } : r))
      .optional(),
    secondary: z.number().int().min(0).max(255).optional(),
    subordinate: z.number().int().min(0).max(255).optional(),
    vmd: z
      .strictObject({
        domain: hexOrInt("a PCI domain", 0xfffff),
        bus: z.number().int().min(0).max(255).default(0),
      })
      .optional(),
    config: z
      .string()
      .regex(/^[0-9a-fA-F\s]*$/, "expected hex bytes")
      .optional(),
    driver: z.string().optional(),
    group: z.number().int().min(0).optional(),
    noIommu: z.boolean().optional(),
    children: z.array(functionSpec).optional(),
  }),
) as z.ZodType<FunctionSpec, unknown>;

export const IOMMU_KINDS = ["intel-vtd", "amd-vi", "virtio", "none"] as const;

/** A 64-bit register as hex text ("0x..." or bare digits): JSON numbers cannot hold it. */
const reg64 = z.string().regex(/^(0x)?[0-9a-fA-F]{1,16}$/, "expected a 64-bit register in hex");

const iommuSpec = z.strictObject({
  kind: z.enum(IOMMU_KINDS),
  /** sysfs class name: dmar0, ivhd0, ... */
  name: z.string(),
  /** VT-d capability / extended capability registers (sysfs intel-iommu/{cap,ecap}). */
  cap: reg64.optional(),
  ecap: reg64.optional(),
  /** PCI domain (segment) this unit serves; every function of it unless listed in `exclude`. */
  segment: hexOrInt("a PCI domain", 0xfffff).default(0),
  /** Restrict the unit to these functions (DMAR device scope); default: INCLUDE_PCI_ALL. */
  devices: z.array(z.string().regex(BDF_RE, "expected a PCI address dddd:bb:dd.f")).optional(),
});

/**
 * The platform when it is not an x86 PC: `arch: powernv` is a bare-metal IBM POWER machine
 * under OPAL firmware, whose PCI domains are PHBs (machine/powerpc/phb.ts). A PHB's fields
 * are what its device-tree node says: ibm,opal-num-pes, ibm,opal-reserved-pe, the M32
 * window (its PCI address is where the 32-bit DMA window ends), ibm,supported-tce-sizes
 * (omitted: the node has no such property). `models` attaches model-only devices by address.
 */
const platformSpec = z.strictObject({
  arch: z.enum(["x86", "powernv"]).default("x86"),
  cpu: z.enum(["power8", "power9"]).default("power9"),
  phbs: z
    .array(
      z.strictObject({
        index: z.number().int().min(0).max(0xffff),
        model: z.enum(["phb3", "phb4"]).default("phb4"),
        numPes: z.number().int().min(2).max(4096).default(512),
        reservedPe: z.number().int().min(0).max(4095).optional(),
        m32PciBase: hexOrInt("an M32 PCI address", 0xffffffff).default(0x80000000),
        m32Size: hexOrInt("an M32 size", 0xffffffff).default(0x80000000),
        tceSizes: z.array(z.number().int().min(12).max(40)).optional(),
      }),
    )
    .default([]),
  models: z.record(z.string(), z.enum(["loopback-nic"])).default({}),
});

/**
 * The CPUs as /proc/cpuinfo shows them: how many are online and the `flags` and `bugs`
 * lines (the kernel's X86_FEATURE_* / X86_BUG_* names), and the physical address bits.
 */
const cpuSpec = z.strictObject({
  count: z.number().int().min(1).max(8192),
  flags: z.array(z.string()).default([]),
  bugs: z.array(z.string()).default([]),
  /** "address sizes: N bits physical" */
  physBits: z.number().int().min(32).max(52).optional(),
});

export const hostSpecSchema = z.strictObject({
  platform: platformSpec.optional(),
  cpu: cpuSpec.optional(),
  name: z.string().default("host"),
  description: z.string().optional(),
  kernel: z
    .strictObject({
      cmdline: z.string().default(""),
      release: z.string().optional(),
      /** PCI drivers of the kernel build (sys/bus/pci/drivers). */
      drivers: z.array(z.string()).optional(),
      /** Modules with parameters (sys/module), built in or loaded: vfio_iommu_type1, iommufd... */
      modules: z.array(z.string()).optional(),
      /** Device nodes present ("/dev/iommu", "/dev/vfio/vfio", "/dev/kvm"). */
      devnodes: z.array(z.string()).optional(),
    })
    .default({ cmdline: "" }),
  iommu: z.array(iommuSpec).default([]),
  /** True when the functions' capabilities could not be read (lspci/sysfs as non-root). */
  unprivileged: z.boolean().default(false),
  functions: z.array(functionSpec),
});

export type HostSpec = z.infer<typeof hostSpecSchema>;
export type IommuSpec = z.infer<typeof iommuSpec>;
export type BarSpec = z.infer<typeof barSpec>;
export type PlatformSpec = z.infer<typeof platformSpec>;
