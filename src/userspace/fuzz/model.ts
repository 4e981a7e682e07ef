/**
 * The fuzzer's executor: abstract commands (a kind, a process, a vector of small
 * selectors) become syscall-script operations (SCRIPT.md), run by each process's own
 * replay Runner on one booted kernel, with every invariant checked after every operation.
 * What a command means is decided when it runs, from what the processes hold then (their
 * bound fd and buffer names, the DMA mappings they made): so a command stays meaningful
 * when the shrinker removes the ones before it, and a selector of 0 is always the most
 * ordinary choice, so shrinking also makes arguments plain.
 *
 * Every operation run is recorded in SCRIPT.md form, its process in `note` ("p0", "p1",
 * "p2"); `replayMulti` runs such a recording again (multi.ts). A model exception or an
 * invariant violation stops the run with a FuzzFailure naming the operation.
 *
 * Processes: p0 is root with every capability (RLIMIT_MEMLOCK 8 MiB); p1 is root without
 * CAP_IPC_LOCK and 64 KiB of RLIMIT_MEMLOCK; p2 is uid 1000 with no capability and 1 MiB.
 * Processes cannot pass fds to each other (no fork or SCM_RIGHTS in the model): they share
 * the kernel's objects through device nodes and sysfs.
 */
import type { Host } from "../../host/build.js";
import type { Kernel, TaskOptions } from "../../kernel/kernel.js";
import * as K from "../../uapi/kvm.js";
import { REQUESTS } from "../../uapi/requests.js";
import * as U from "../../uapi/vfio.js";
import { InvariantChecker, type Violation } from "../check/invariants.js";
import { Runner } from "../replay/runner.js";
import type { Json, Op } from "../replay/script.js";
import { bootFuzz, FUZZ_DEVICES, FUZZ_DRIVERS, FUZZ_FUNCTIONS, type FuzzConfig } from "./host.js";

export const CMD_KINDS = [
  "step",
  "ioctl",
  "dma",
  "sysfs_write",
  "open",
  "close",
  "dup",
  "mmap",
  "munmap",
  "fill",
  "eventfd",
  "pread",
  "pwrite",
  "sysfs_read",
  "readlink",
  "exit",
] as const;
export type CmdKind = (typeof CMD_KINDS)[number];

/** One abstract command: what, by which process, and selectors read by position. */
export interface FuzzCmd {
  k: CmdKind;
  p: number;
  a: number[];
}

export const PROCESSES: TaskOptions[] = [
  {},
  { uid: 0, caps: ["CAP_SYS_ADMIN", "CAP_SYS_RAWIO", "CAP_NET_ADMIN"], memlock: 64n << 10n },
  { uid: 1000, caps: [], memlock: 1n << 20n },
];

export class FuzzFailure extends Error {
  /** Which command of the sequence failed (-1: the teardown after the last). */
  cmdIndex = -1;
  /** Operations run up to and including the failing one. */
  calls = 0;
  constructor(
    readonly kind: "exception" | "violation",
    message: string,
    /** The operations run up to and including the failing one. */
    readonly ops: Op[],
    readonly violations: Violation[] = [],
    readonly error: unknown = null,
  ) {
    super(message);
    this.name = "FuzzFailure";
  }
}

type FdKind =
  | "container"
  | "group"
  | "device"
  | "kvm"
  | "vm"
  | "vcpu"
  | "kvmdev"
  | "eventfd"
  | "iommufd"
  | "file";

interface FdName {
  name: string;
  kind: FdKind;
  /** The call that bound it succeeded, and no close of this name was seen since. */
  open: boolean;
  /** device: its BDF; group: its IOMMU group id. */
  dev?: string;
  group?: number;
  /** device: the container its group was in when it was opened. */
  container?: string;
}

interface BufName {
  name: string;
  size: number;
  mapped: boolean;
}

interface DmaMap {
  container: string;
  iova: bigint;
  size: bigint;
}

interface Proc {
  index: number;
  pid: number;
  runner: Runner;
  fds: FdName[];
  bufs: BufName[];
  maps: DmaMap[];
  /** group fd name → container fd name it was added to. */
  groupIn: Map<string, string>;
  /** container fd names with an IOMMU backend set. */
  iommuSet: Set<string>;
  /** device fd names whose Command register got memory + bus master. */
  busMaster: Set<string>;
  /** kvm-vfio device fd names and what was added to each. */
  kvmAdded: Map<string, Set<string>>;
  /** Flow stages tried already (step), by the names they involved. */
  tried: Set<string>;
}

const U64 = (1n << 64n) - 1n;
const hx = (v: bigint | number) => `0x${BigInt.asUintN(64, BigInt(v)).toString(16)}`;
const pick = <T>(sel: number, xs: readonly T[]): T => xs[sel % xs.length] as T;

/** The requests the fuzzer sends, by name, with the fd kinds that take them. */
const REQ_NAMES = [...REQUESTS.keys()];
const BY_KIND: Record<FdKind, string[]> = {
  container: [
    "VFIO_IOMMU_MAP_DMA",
    "VFIO_IOMMU_UNMAP_DMA",
    "VFIO_SET_IOMMU",
    "VFIO_CHECK_EXTENSION",
    "VFIO_IOMMU_GET_INFO",
    "VFIO_IOMMU_DIRTY_PAGES",
    "VFIO_GET_API_VERSION",
    "VFIO_IOMMU_ENABLE",
    "VFIO_IOMMU_DISABLE",
    "VFIO_IOMMU_SPAPR_TCE_GET_INFO",
    "VFIO_IOMMU_SPAPR_REGISTER_MEMORY",
    "VFIO_EEH_PE_OP",
  ],
  group: [
    "VFIO_GROUP_SET_CONTAINER",
    "VFIO_GROUP_GET_DEVICE_FD",
    "VFIO_GROUP_GET_STATUS",
    "VFIO_GROUP_UNSET_CONTAINER",
  ],
  device: [
    "VFIO_DEVICE_GET_REGION_INFO",
    "VFIO_DEVICE_SET_IRQS",
    "VFIO_DEVICE_GET_INFO",
    "VFIO_DEVICE_GET_IRQ_INFO",
    "VFIO_DEVICE_RESET",
    "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO",
    "VFIO_DEVICE_PCI_HOT_RESET",
    "VFIO_DEVICE_IOEVENTFD",
    "VFIO_DEVICE_FEATURE",
    "VFIO_DEVICE_BIND_IOMMUFD",
    "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
    "VFIO_DEVICE_DETACH_IOMMUFD_PT",
    "VFIO_DEVICE_QUERY_GFX_PLANE",
    "VFIO_MIG_GET_PRECOPY_INFO",
  ],
  kvm: ["KVM_CREATE_VM", "KVM_CHECK_EXTENSION", "KVM_GET_API_VERSION", "KVM_GET_VCPU_MMAP_SIZE"],
  vm: [
    "KVM_CREATE_DEVICE",
    "KVM_CREATE_VCPU",
    "KVM_CHECK_EXTENSION",
    "KVM_SET_USER_MEMORY_REGION",
    "KVM_IRQFD",
    "KVM_CREATE_IRQCHIP",
    "KVM_ENABLE_CAP",
  ],
  vcpu: ["KVM_RUN", "KVM_CHECK_EXTENSION"],
  kvmdev: ["KVM_SET_DEVICE_ATTR", "KVM_HAS_DEVICE_ATTR", "KVM_GET_DEVICE_ATTR"],
  eventfd: ["KVM_IRQFD", "VFIO_GET_API_VERSION"],
  /** iommufd's own requests (arguments are generic here: a buffer or a plain value). */
  iommufd: REQ_NAMES.filter((n) => n.startsWith("IOMMU_")),
  file: [],
};

const U32S = [0, 1, 2, 3, 4, 7, 8, 0xf, 0x10, 0x18, 0x20, 0xff, 0x7fffffff, 0x80000000, 0xffffffff];
const U64S = [0n, 1n, 0x1000n, 0xfffn, 0x80000000n, 0xffffffffn, 1n << 32n, 1n << 63n, U64];
/** IOVAs: edu's DMA mask is 28 bits, so the ordinary ones are low. */
const IOVAS = [
  0x100000n,
  0x200000n,
  0x101000n,
  0x0n,
  0x1000n,
  0x400000n,
  0xfee00000n,
  0xfedff000n,
  0x123n,
  (1n << 39n) - 0x1000n,
  1n << 39n,
  (1n << 48n) - 0x1000n,
  1n << 57n,
  U64 - 0xfffn,
];
const SIZES = [
  0x2000n,
  0x1000n,
  0x10000n,
  0x200000n,
  0n,
  1n,
  0xfffn,
  0x3000n,
  1n << 63n,
  U64 - 0xfffn,
  0x100000000n,
];
const BUF_SIZES = [8192, 4096, 0x10000, 0x200000, 0x1001, 0x40000, 0, 0x1000000];
const EXTENSIONS = [3, 1, 4, 9, 10, 6, 2, 7, 8, 5, 0, 11, -1, 0x100000003];
const KVM_CAPS = [K.KVM_CAP_DEVICE_CTRL, K.KVM_CAP_NR_MEMSLOTS, 0, 1, 18, 105, 238, 239, 1000, -1];
const CONFIG_OFFS = [4, 0, 0x10, 0x3c, 0x34, 0x40, 0x44, 0x50, 0x70, 0xff, 0x100, 0xffc, 0x1000];
const BAR_OFFS = [0x80, 0x88, 0x90, 0x98, 0, 4, 8, 0x20, 0x24, 0x60, 0x64, 0x40000, 0xffffc];

/** A file path below a function's sysfs directory. */
const FN_FILES = [
  "driver_override",
  "config",
  "enable",
  "reset_method",
  "vendor",
  "device",
  "class",
  "driver/unbind",
  "iommu_group",
  "driver",
  "iommu",
  "iommu_group/devices",
  "iommu_group/type",
  "nonexistent",
];

const TEXT = new TextEncoder();
const bytesHex = (s: string) => Buffer.from(TEXT.encode(s)).toString("hex");

export interface RunOptions {
  /** Keep every operation run (needed to write a failing script). */
  record?: boolean;
  /** Check invariants after every operation (default true). */
  check?: boolean;
  /** Count results by "op request errno" (what the fuzzer reaches). */
  stats?: Map<string, number>;
}

export class FuzzRun {
  readonly kernel: Kernel;
  readonly host: Host;
  readonly checker: InvariantChecker;
  readonly procs: Proc[];
  /** Operations run. */
  calls = 0;
  readonly ops: Op[] = [];
  private names = 0;
  private readonly record: boolean;
  private readonly checking: boolean;
  private readonly stats: Map<string, number> | null;

  constructor(
    readonly cfg: FuzzConfig,
    opts: RunOptions = {},
  ) {
    const { host, kernel } = bootFuzz(cfg);
    this.host = host;
    this.kernel = kernel;
    this.record = opts.record ?? false;
    this.checking = opts.check ?? true;
    this.stats = opts.stats ?? null;
    this.procs = PROCESSES.map((o, index) => {
      const sys = kernel.spawn(o);
      return {
        index,
        pid: sys.task.pid,
        runner: new Runner(sys),
        fds: [],
        bufs: [],
        maps: [],
        groupIn: new Map(),
        iommuSet: new Set(),
        busMaster: new Set(),
        kvmAdded: new Map(),
        tried: new Set(),
      };
    });
    this.checker = new InvariantChecker(kernel, host.machine);
  }

  /** Run one operation for process p; checks invariants; FuzzFailure on a problem. */
  op(p: Proc, op: Op): Record<string, Json> {
    op.note = `p${p.index}`;
    if (this.record) this.ops.push(op);
    this.calls++;
    let res: Record<string, Json>;
    try {
      res = p.runner.step(op, this.calls);
    } catch (e) {
      const ops = this.record ? [...this.ops] : [op];
      throw new FuzzFailure(
        "exception",
        `exception in ${describe(op)}: ${e instanceof Error ? e.message : String(e)}`,
        ops,
        [],
        e,
      );
    }
    if (this.stats) {
      const k = `${op.op}${op.req ? ` ${String(op.req)}` : ""} ${String(res.errno ?? "ok")}`;
      this.stats.set(k, (this.stats.get(k) ?? 0) + 1);
    }
    if (this.checking) {
      const v = this.checker.check();
      if (v.length)
        throw new FuzzFailure(
          "violation",
          `after ${describe(op)}: ${v.map((x) => `${x.invariant}: ${x.detail}`).join("; ")}`,
          this.record ? [...this.ops] : [op],
          v,
        );
    }
    return res;
  }

  /** Every process exits; nothing may be left locked or alive. */
  teardown(): void {
    for (const p of this.procs) this.kernel.exit(p.pid);
    this.checker.detach();
    const v = this.checker.checkQuiescent();
    if (v.length)
      throw new FuzzFailure(
        "violation",
        `after every process exited: ${v.map((x) => `${x.invariant}: ${x.detail}`).join("; ")}`,
        [...this.ops],
        v,
      );
  }

  private fresh(prefix: string): string {
    return `${prefix}${++this.names}`;
  }

  run(cmd: FuzzCmd): void {
    const p = this.procs[cmd.p % this.procs.length] as Proc;
    const a = (i: number) => cmd.a[i] ?? 0;
    switch (cmd.k) {
      case "step":
        return this.step(p, a(0), a(1), a(2));
      case "ioctl":
        return this.ioctl(p, a);
      case "dma":
        return this.dma(p, a);
      case "sysfs_write":
        return this.sysfsWrite(p, a);
      case "open":
        return this.open(p, a(0), a(1), a(2));
      case "close": {
        const f = this.fdPick(p, a(0));
        const res = this.op(p, { op: "close", line: 0, fd: f.ref });
        if (f.fd && res.errno === null) this.closed(p, f.fd);
        return;
      }
      case "dup": {
        const f = this.fdPick(p, a(0));
        const name = this.fresh("f");
        const res = this.op(p, { op: "dup", line: 0, fd: f.ref, as: name });
        if (res.errno === null && f.fd) p.fds.push({ ...f.fd, name, open: true });
        return;
      }
      case "mmap":
        return void this.mmap(p, pick(a(0), BUF_SIZES), a(1));
      case "munmap": {
        const b = this.bufPick(p, a(0));
        if (!b) return;
        const res = this.op(p, { op: "munmap", line: 0, buf: `$${b.name}` });
        if (res.errno === null) b.mapped = false;
        return;
      }
      case "fill": {
        const b = this.bufPick(p, a(0));
        if (!b) return;
        const off = pick(a(1), [0, 0x1000, 0xffc, b.size, b.size - 1, 0x7ffff]);
        const len = pick(a(2), [16, 1, 4096, 64, 0]);
        const hex = Buffer.alloc(len, a(3) & 0xff).toString("hex");
        this.op(p, {
          op: a(4) % 4 === 3 ? "check" : "fill",
          line: 0,
          buf: `$${b.name}`,
          offset: off,
          hex,
        });
        return;
      }
      case "eventfd": {
        const name = this.fresh("e");
        const res = this.op(p, { op: "eventfd", line: 0, as: name });
        if (res.errno === null) p.fds.push({ name, kind: "eventfd", open: true });
        return;
      }
      case "pread":
      case "pwrite":
        return this.rw(p, cmd.k, a);
      case "sysfs_read":
        this.op(p, { op: "sysfs_read", line: 0, path: this.sysfsPath(a(0), a(1)) });
        return;
      case "readlink":
        this.op(p, { op: "readlink", line: 0, path: this.sysfsPath(a(0), a(1)) });
        return;
      case "exit":
        return this.exitProc(p);
    }
  }

  /* ---------------------------------------------------------------------------- */
  /* Names                                                                         */
  /* ---------------------------------------------------------------------------- */

  /** An fd reference: mostly a name of this process (open ones first), else a bad number. */
  private fdPick(p: Proc, sel: number, kind?: FdKind): { ref: Json; fd?: FdName } {
    const bad = [-1, 1023, 1024, 0x7fffffff, 3];
    const want = kind ? p.fds.filter((f) => f.kind === kind && f.open) : [];
    const open = p.fds.filter((f) => f.open);
    const pool = want.length ? want : open.length ? open : p.fds;
    if (!pool.length || sel % 32 === 31) return { ref: pick(sel >> 5, bad) };
    const f = pool[(pool.length - 1 - (sel % pool.length) + pool.length) % pool.length] as FdName;
    return { ref: `$${f.name}`, fd: f };
  }

  private bufPick(p: Proc, sel: number): BufName | undefined {
    const mapped = p.bufs.filter((b) => b.mapped);
    const pool = mapped.length && sel % 8 !== 7 ? mapped : p.bufs;
    return pool.length ? pick(sel, [...pool].reverse()) : undefined;
  }

  private closed(p: Proc, f: FdName): void {
    f.open = false;
    p.groupIn.delete(f.name);
    p.iommuSet.delete(f.name);
    p.busMaster.delete(f.name);
    p.kvmAdded.delete(f.name);
    p.maps = p.maps.filter((m) => m.container !== f.name);
  }

  private bind(p: Proc, res: Record<string, Json>, f: FdName): void {
    if (res.errno === null) p.fds.push(f);
  }

  /* ---------------------------------------------------------------------------- */
  /* Plain syscalls                                                                */
  /* ---------------------------------------------------------------------------- */

  private paths(): string[] {
    const groups = this.kernel.debug.groups().map((g) => g.id);
    return [
      "/dev/vfio/vfio",
      ...groups.map((g) => `/dev/vfio/${g}`),
      // vfio-pci's fake groups in no-IOMMU mode (drivers/vfio/group.c)
      ...groups.map((g) => `/dev/vfio/noiommu-${g}`),
      "/dev/kvm",
      "/dev/vfio/99",
      "/dev/iommu",
      "/dev/vfio/devices/vfio0",
      "/dev/vfio/devices/vfio1",
      "/dev/vfio/",
      "/proc/cmdline",
      "/",
      "",
    ];
  }

  private sysfsPath(s0: number, s1: number): string {
    const fn = pick(s1, FUZZ_FUNCTIONS);
    const drv = pick(s1, FUZZ_DRIVERS);
    const g = pick(s1, this.kernel.debug.groups())?.id ?? 0;
    return pick(s0, [
      `/sys/bus/pci/devices/${fn}/${pick(s1 >> 4, FN_FILES)}`,
      `/sys/bus/pci/drivers/${drv}/${pick(s1 >> 4, ["bind", "unbind", "new_id", "remove_id", fn])}`,
      "/sys/bus/pci/drivers_probe",
      `/sys/kernel/iommu_groups/${g}/${pick(s1 >> 4, ["type", "reserved_regions", "devices", `devices/${fn}`])}`,
      "/proc/cmdline",
      `/sys/bus/pci/devices/${fn}/../${fn}/driver_override`,
      "/sys/bus/pci/devices/0000:99:00.0/config",
      "/sys/bus/pci/devices",
    ]);
  }

  private open(p: Proc, s0: number, s1: number, s2: number): void {
    const paths = this.paths();
    const path = s0 % 4 === 3 ? this.sysfsPath(s0 >> 2, s1) : pick(s0 >> 2, paths);
    const flags = pick(s2, [
      ["O_RDWR", "O_CLOEXEC"],
      ["O_RDONLY"],
      ["O_WRONLY"],
      ["O_RDWR", "O_NONBLOCK"],
      ["O_RDWR"],
    ]);
    this.openPath(p, path, flags);
  }

  private openPath(
    p: Proc,
    path: string,
    flags: string[] = ["O_RDWR", "O_CLOEXEC"],
  ): FdName | null {
    const name = this.fresh("f");
    const res = this.op(p, { op: "open", line: 0, path, flags, as: name });
    if (res.errno !== null) return null;
    const m = /^\/dev\/vfio\/(?:noiommu-)?(\d+)$/.exec(path);
    const f: FdName = {
      name,
      open: true,
      kind:
        path === "/dev/vfio/vfio"
          ? "container"
          : path.startsWith("/dev/vfio/devices/")
            ? "device"
            : m
              ? "group"
              : path === "/dev/kvm"
                ? "kvm"
                : path === "/dev/iommu"
                  ? "iommufd"
                  : "file",
      ...(m ? { group: Number(m[1]) } : {}),
    };
    p.fds.push(f);
    return f;
  }

  private mmap(p: Proc, size: number, sel: number): BufName | null {
    const name = this.fresh("b");
    const prot = pick(sel, [undefined, undefined, undefined, "r", "none"]);
    const op: Op = { op: "mmap", line: 0, size, as: name };
    if (prot) op.prot = prot;
    const res = this.op(p, op);
    const b: BufName = { name, size, mapped: res.errno === null };
    p.bufs.push(b);
    return b.mapped ? b : null;
  }

  private rw(p: Proc, kind: "pread" | "pwrite", a: (i: number) => number): void {
    const f = this.fdPick(p, a(0));
    let offset: bigint;
    if (f.fd?.kind === "device" || a(1) % 8 === 7) {
      const region = BigInt(pick(a(1) >> 3, [0, 7, 0, 7, 6, 8, 1, 5, 9, 0xfffff]));
      const off = BigInt(region === 7n ? pick(a(2), CONFIG_OFFS) : pick(a(2), BAR_OFFS));
      offset = (region << 40n) | off;
    } else {
      offset = BigInt(pick(a(2), CONFIG_OFFS));
    }
    const size = pick(a(3), [4, 2, 1, 8, 3, 16, 256, 4096, 0, 0x10000]);
    if (kind === "pread") {
      this.op(p, { op: "pread", line: 0, fd: f.ref, offset: hx(offset), size });
      return;
    }
    const data = Buffer.alloc(Math.min(size, 4096));
    for (let i = 0; i < data.length; i++) data[i] = (a(4) >> ((i % 4) * 8)) & 0xff;
    this.op(p, { op: "pwrite", line: 0, fd: f.ref, offset: hx(offset), hex: data.toString("hex") });
  }

  private sysfsWrite(p: Proc, a: (i: number) => number): void {
    const fn = pick(a(1), FUZZ_FUNCTIONS);
    const drv = pick(a(1) >> 4, FUZZ_DRIVERS);
    const base = `/sys/bus/pci/devices/${fn}`;
    const [path, values] = pick(a(0), [
      [
        `${base}/driver_override`,
        [
          "vfio-pci",
          "",
          "pci-stub",
          "edu",
          "vfio-pci\n",
          "\n",
          "pcieport",
          "x".repeat(4095),
          "\0vfio-pci",
        ],
      ],
      [`/sys/bus/pci/drivers/${drv}/bind`, [fn, `${fn}\n`, "", "0000:99:00.0", fn.slice(5)]],
      [`${base}/driver/unbind`, [fn, `${fn}\n`, "", "garbage"]],
      ["/sys/bus/pci/drivers_probe", [fn, `${fn}\n`, "", "0000:99:00.0"]],
      [`/sys/bus/pci/drivers/${drv}/unbind`, [fn, ""]],
      [
        `/sys/bus/pci/drivers/${drv}/${a(2) % 2 ? "remove_id" : "new_id"}`,
        ["1234 11e8", "1234 11e8 ffffffff ffffffff 0 0 0", "zz", "1234", "8086 1234 0 0 0 0 1", ""],
      ],
      [`${base}/enable`, ["1", "0", "2", ""]],
      [`${base}/reset_method`, ["flr", "bus", "default", "", "pm", "garbage", "flr bus"]],
      [`${base}/config`, ["\u0006\u0000", "ab"]],
      ["/proc/cmdline", ["x"]],
    ] as [string, string[]][]);
    this.op(p, { op: "sysfs_write", line: 0, path, value: pick(a(2) >> 1, values) });
  }

  /** Close every fd the process holds and unmap its buffers (what exit would do). */
  private exitProc(p: Proc): void {
    for (const f of p.fds.filter((x) => x.open)) {
      this.op(p, { op: "close", line: 0, fd: `$${f.name}` });
      this.closed(p, f);
    }
    for (const b of p.bufs.filter((x) => x.mapped)) {
      this.op(p, { op: "munmap", line: 0, buf: `$${b.name}` });
      b.mapped = false;
    }
    p.maps = [];
  }

  /* ---------------------------------------------------------------------------- */
  /* ioctl arguments                                                               */
  /* ---------------------------------------------------------------------------- */

  private ioctl(p: Proc, a: (i: number) => number): void {
    const f = this.fdPick(p, a(0));
    const kindReqs = f.fd ? BY_KIND[f.fd.kind] : [];
    let req: string;
    let nr: number;
    if (a(1) % 16 === 15) {
      // A request number nobody defined: a VFIO or KVM type byte, or anything.
      req = "UNKNOWN";
      nr = pick(a(2), [0x3b00 + (a(3) & 0xff), 0xae00 + (a(3) & 0xff), (a(3) * 2654435761) >>> 0]);
      if (REQUESTS.has(req)) req = "UNKNOWN2";
    } else {
      req =
        kindReqs.length && a(1) % 4 !== 3 ? pick(a(1) >> 2, kindReqs) : pick(a(1) >> 2, REQ_NAMES);
      nr = REQUESTS.get(req) as number;
    }
    const built = this.arg(p, req, a);
    const op: Op = {
      op: "ioctl",
      line: 0,
      fd: f.ref,
      req,
      nr: `0x${nr.toString(16)}`,
      arg: built.arg,
    };
    if (built.as) op.as = built.as.name;
    if (built.bind) op.bind = { fd: built.bind.name };
    const res = this.op(p, op);
    this.after(p, req, f.fd, op, res, built);
  }

  /** What the process now holds after a successful ioctl. */
  private after(
    p: Proc,
    req: string,
    fd: FdName | undefined,
    op: Op,
    res: Record<string, Json>,
    built: Built,
  ): void {
    if (built.as) this.bind(p, res, built.as);
    if (built.bind) this.bind(p, res, built.bind);
    if (res.errno !== null || !fd) return;
    switch (req) {
      case "VFIO_GROUP_SET_CONTAINER":
        if (built.peer) p.groupIn.set(fd.name, built.peer);
        break;
      case "VFIO_GROUP_UNSET_CONTAINER":
        p.groupIn.delete(fd.name);
        break;
      case "VFIO_SET_IOMMU":
        p.iommuSet.add(fd.name);
        break;
      case "VFIO_IOMMU_MAP_DMA":
        if (built.map) p.maps.push({ container: fd.name, ...built.map });
        break;
      case "VFIO_IOMMU_UNMAP_DMA":
        if (built.map) {
          const { iova, size } = built.map;
          p.maps = p.maps.filter(
            (m) => m.container !== fd.name || m.iova + m.size <= iova || m.iova >= iova + size,
          );
        }
        break;
      case "KVM_SET_DEVICE_ATTR":
        if (built.peer) {
          const s = p.kvmAdded.get(fd.name) ?? new Set<string>();
          if (built.attr === K.KVM_DEV_VFIO_FILE_ADD) s.add(built.peer);
          else s.delete(built.peer);
          p.kvmAdded.set(fd.name, s);
        }
        break;
    }
    void op;
  }

  private vaddr(p: Proc, sel: number): { v: Json; buf?: BufName } {
    const b = this.bufPick(p, sel >> 3);
    const k = sel % 8;
    if (b && k < 4) return { v: `$${b.name}${pick(k, ["", "", "+0x1000", "+0x1"])}`, buf: b };
    return {
      v: hx(
        pick(sel >> 3, [0x1000n, 0n, 0x7fff00000000n, 0xffff888000000000n, (1n << 47n) - 0x1000n]),
      ),
    };
  }

  private iova(p: Proc, sel: number): bigint {
    const k = sel % 4;
    if (p.maps.length && k === 3) {
      const m = pick(sel >> 2, p.maps);
      return (
        pick(sel >> 4, [
          m.iova,
          m.iova + m.size,
          m.iova + 0x1000n,
          m.iova - 0x1000n,
          m.iova + m.size - 0x1000n,
        ]) & U64
      );
    }
    return pick(sel >> 2, IOVAS);
  }

  private arg(p: Proc, req: string, a: (i: number) => number): Built {
    const s = (i: number) => a(i);
    // One time in eight: an argument of the wrong shape altogether.
    if (s(2) % 8 === 7) {
      const b = this.bufPick(p, s(3));
      return {
        arg: pick(s(3) >> 1, [
          "NULL",
          0,
          1,
          -1,
          "0xffff888000000000",
          "0x1000",
          b ? `$${b.name}` : 0,
          b ? `$${b.name}+0xffc` : 0,
        ]),
      };
    }
    const argsz = (min: number, full: number) =>
      pick(s(3), [full, full, min, min - 1, 0, full + 8, 0x1000, 0xffffffff]);
    const st = (fields: [string, string, Json][]) => ({ struct: fields }) as Json;
    switch (req) {
      case "VFIO_GET_API_VERSION":
      case "VFIO_GROUP_UNSET_CONTAINER":
      case "VFIO_DEVICE_RESET":
      case "KVM_GET_API_VERSION":
      case "KVM_GET_VCPU_MMAP_SIZE":
      case "VFIO_IOMMU_ENABLE":
      case "VFIO_IOMMU_DISABLE":
      case "KVM_CREATE_IRQCHIP":
      case "KVM_RUN":
        return { arg: pick(s(4), [0, 1, -1]) };
      case "VFIO_CHECK_EXTENSION":
        return { arg: pick(s(4), EXTENSIONS) };
      case "VFIO_SET_IOMMU":
        return {
          arg: pick(s(4), [U.VFIO_TYPE1v2_IOMMU, U.VFIO_TYPE1_IOMMU, 6, 2, 7, 8, 0, 99, -1]),
        };
      case "KVM_CHECK_EXTENSION":
        return { arg: pick(s(4), KVM_CAPS) };
      case "KVM_CREATE_VM": {
        const as: FdName = { name: this.fresh("vm"), kind: "vm", open: true };
        return { arg: pick(s(4), [0, 1, 2, 31, 32, -1]), as };
      }
      case "KVM_CREATE_VCPU": {
        const as: FdName = { name: this.fresh("cpu"), kind: "vcpu", open: true };
        return { arg: pick(s(4), [0, 1, 4095, 16383, 16384, -1]), as };
      }
      case "VFIO_GROUP_GET_STATUS":
        return {
          arg: st([
            ["u32", "argsz", argsz(8, 8)],
            ["u32", "flags", pick(s(4), U32S)],
          ]),
        };
      case "VFIO_GROUP_SET_CONTAINER": {
        const c = this.fdPick(p, s(4), "container");
        return { arg: st([["s32", "fd", c.ref]]), ...(c.fd ? { peer: c.fd.name } : {}) };
      }
      case "VFIO_GROUP_GET_DEVICE_FD": {
        const dev = pick(s(4), [...FUZZ_DEVICES, ...FUZZ_FUNCTIONS]);
        const name = pick(s(5), [
          dev,
          dev.slice(5),
          `${dev} `,
          "",
          dev.toUpperCase(),
          "x".repeat(300),
        ]);
        const bytes = bytesHex(`${name}\0`);
        const as: FdName = { name: this.fresh("d"), kind: "device", open: true, dev };
        return { arg: st([[`bytes:${bytes.length / 2}`, "name", bytes]]), as };
      }
      case "VFIO_DEVICE_GET_INFO":
        return {
          arg: st([
            ["u32", "argsz", argsz(16, 24)],
            ["u32", "flags", 0],
            ["u32", "num_regions", 0],
            ["u32", "num_irqs", 0],
            ["u32", "cap_offset", 0],
            ["u32", "pad", 0],
            ["bytes:64", "caps", null],
          ]),
        };
      case "VFIO_DEVICE_GET_REGION_INFO":
        return {
          arg: st([
            ["u32", "argsz", argsz(16, 32)],
            ["u32", "flags", 0],
            ["u32", "index", pick(s(4), [0, 7, 1, 6, 8, 9, 5, 0xffffffff, 0x80000000])],
            ["u32", "cap_offset", 0],
            ["u64", "size", 0],
            ["u64", "offset", 0],
            ["bytes:64", "caps", null],
          ]),
        };
      case "VFIO_DEVICE_GET_IRQ_INFO":
        return {
          arg: st([
            ["u32", "argsz", argsz(16, 16)],
            ["u32", "flags", 0],
            ["u32", "index", pick(s(4), [0, 1, 2, 3, 4, 5, 0xffffffff])],
            ["u32", "count", 0],
          ]),
        };
      case "VFIO_DEVICE_SET_IRQS": {
        const flags =
          pick(s(4), [
            U.VFIO_IRQ_SET_DATA_EVENTFD | U.VFIO_IRQ_SET_ACTION_TRIGGER,
            U.VFIO_IRQ_SET_DATA_NONE | U.VFIO_IRQ_SET_ACTION_TRIGGER,
            U.VFIO_IRQ_SET_DATA_BOOL | U.VFIO_IRQ_SET_ACTION_TRIGGER,
            U.VFIO_IRQ_SET_DATA_NONE | U.VFIO_IRQ_SET_ACTION_MASK,
            U.VFIO_IRQ_SET_DATA_NONE | U.VFIO_IRQ_SET_ACTION_UNMASK,
            U.VFIO_IRQ_SET_DATA_EVENTFD | U.VFIO_IRQ_SET_ACTION_UNMASK,
            0,
            0xffffffff,
            U.VFIO_IRQ_SET_DATA_BOOL | U.VFIO_IRQ_SET_DATA_NONE | U.VFIO_IRQ_SET_ACTION_TRIGGER,
          ]) >>> 0;
        const count = pick(s(5), [1, 0, 2, 3, 0xffffffff, 0x80000000]);
        const ev = this.fdPick(p, s(6), "eventfd");
        const fields: [string, string, Json][] = [
          ["u32", "argsz", pick(s(3), [20 + 4 * Math.min(count, 3), 20, 19, 0, 0xffffffff])],
          ["u32", "flags", flags],
          ["u32", "index", pick(s(7), [0, 1, 2, 3, 4, 5])],
          ["u32", "start", pick(s(7) >> 3, [0, 1, 0xffffffff])],
          ["u32", "count", count],
          ["s32", "fd0", pick(s(6) >> 5, [ev.ref, -1, ev.ref, 1000])],
          ["s32", "fd1", -1],
          ["s32", "fd2", ev.ref],
        ];
        return { arg: st(fields) };
      }
      case "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO":
        return {
          arg: st([
            ["u32", "argsz", argsz(12, 12 + 8 * 4)],
            ["u32", "flags", 0],
            ["u32", "count", 0],
            ["bytes:32", "devices", null],
          ]),
        };
      case "VFIO_DEVICE_PCI_HOT_RESET": {
        const g = this.fdPick(p, s(4), "group");
        return {
          arg: st([
            ["u32", "argsz", pick(s(3), [16, 20, 12, 0, 0xffffffff])],
            ["u32", "flags", pick(s(5), [0, 1, 2])],
            ["u32", "count", pick(s(6), [1, 2, 0, 0xffffffff])],
            ["s32", "fd0", g.ref],
            ["s32", "fd1", -1],
          ]),
        };
      }
      case "VFIO_DEVICE_IOEVENTFD": {
        const ev = this.fdPick(p, s(6), "eventfd");
        return {
          arg: st([
            ["u32", "argsz", argsz(32, 32)],
            ["u32", "flags", pick(s(4), [4, 1, 2, 8, 0, 3, 0xf, 0x10])],
            ["u64", "offset", hx(pick(s(5), [0x98n, 0x80n, 7n << 40n, 0n, 0x100000n, 6n << 40n]))],
            ["u64", "data", hx(pick(s(7), [1n, 0n, U64]))],
            ["s32", "fd", pick(s(6) >> 5, [ev.ref, -1])],
            ["u32", "reserved", 0],
          ]),
        };
      }
      case "VFIO_DEVICE_FEATURE":
        return {
          arg: st([
            ["u32", "argsz", argsz(8, 16)],
            ["u32", "flags", pick(s(4), [0x10000, 0x20000, 0x40000, 0x10001, 0, 0xffffffff])],
            ["bytes:8", "data", null],
          ]),
        };
      case "VFIO_DEVICE_BIND_IOMMUFD": {
        const fd = this.fdPick(p, s(4), "iommufd");
        return {
          arg: st([
            ["u32", "argsz", argsz(16, 16)],
            ["u32", "flags", 0],
            ["s32", "iommufd", fd.ref],
            ["u32", "out_devid", 0],
          ]),
        };
      }
      case "VFIO_IOMMU_GET_INFO":
        return {
          arg: st([
            ["u32", "argsz", pick(s(3), [256, 24, 16, 15, 0, 40, 0x1000, 0xffffffff])],
            ["u32", "flags", 0],
            ["u64", "iova_pgsizes", 0],
            ["u32", "cap_offset", 0],
            ["u32", "pad", 0],
            ["bytes:232", "caps", null],
          ]),
        };
      case "VFIO_IOMMU_MAP_DMA": {
        const va = this.vaddr(p, s(5));
        let iova = this.iova(p, s(6));
        const size =
          va.buf && s(7) % 4 !== 3 ? BigInt(Math.max(va.buf.size, 0)) : pick(s(7) >> 2, SIZES);
        // A mapping that ends at 2^64 is never unpinned by Linux 6.12 (vfio_unmap_unpin's
        // end = iova + size wraps to 0): the leak is the kernel's own, reproduced by the
        // model and asserted in test/kernel/type1.test.ts (T1-013); the invariants would
        // report it after every such sequence, so the fuzzer maps one page lower.
        if (iova + size === 1n << 64n) iova -= 0x1000n;
        const flags = pick(s(4), [3, 3, 1, 2, 0, 4, 7, 8, 0xffffffff]);
        return {
          arg: st([
            ["u32", "argsz", argsz(32, 32)],
            ["u32", "flags", flags],
            ["u64", "vaddr", va.v],
            ["u64", "iova", hx(iova)],
            ["u64", "size", hx(size)],
          ]),
          map: { iova, size },
        };
      }
      case "VFIO_IOMMU_UNMAP_DMA": {
        const flags = pick(s(4), [0, 0, U.VFIO_DMA_UNMAP_FLAG_ALL, 1, 4, 3, 0xff, 6]);
        const m = p.maps.length ? pick(s(5), p.maps) : null;
        let iova = m && s(6) % 4 !== 3 ? m.iova : this.iova(p, s(6));
        let size = m && s(7) % 4 !== 3 ? m.size : pick(s(7) >> 2, SIZES);
        if (flags === U.VFIO_DMA_UNMAP_FLAG_ALL && s(6) % 2 === 0) {
          iova = 0n;
          size = 0n;
        }
        const b = this.bufPick(p, s(3));
        const fields: [string, string, Json][] = [
          ["u32", "argsz", pick(s(3), [24, 24, 48, 23, 0, 0xffffffff])],
          ["u32", "flags", flags],
          ["u64", "iova", hx(iova)],
          ["u64", "size", hx(size)],
        ];
        if (flags & U.VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP)
          fields.push(
            ["u64", "pgsize", hx(pick(s(3) >> 3, [0x1000n, 0n, 0x200000n]))],
            ["u64", "bitmap_size", hx(pick(s(3) >> 5, [8n, 0n, 1n << 40n]))],
            ["u64", "data", b ? `$${b.name}` : "0x0"],
          );
        return { arg: st(fields), map: { iova, size: flags & 2 ? U64 : size } };
      }
      case "VFIO_IOMMU_DIRTY_PAGES": {
        const flags = pick(s(4), [1, 4, 2, 0, 3, 7, 8]);
        const m = p.maps.length ? pick(s(5), p.maps) : null;
        const b = this.bufPick(p, s(6));
        const fields: [string, string, Json][] = [
          ["u32", "argsz", pick(s(3), [48, 8, 7, 47, 0, 0xffffffff])],
          ["u32", "flags", flags],
        ];
        if (flags & 4)
          fields.push(
            ["u64", "iova", hx(m ? m.iova : pick(s(5), IOVAS))],
            ["u64", "size", hx(m ? m.size : pick(s(5), SIZES))],
            ["u64", "bitmap_pgsize", hx(pick(s(7), [0x1000n, 0n, 0x200000n]))],
            ["u64", "bitmap_size", hx(pick(s(7) >> 2, [64n, 8n, 0n, 1n << 40n]))],
            ["u64", "bitmap_data", b ? `$${b.name}` : hx(pick(s(7), U64S))],
          );
        return { arg: st(fields) };
      }
      case "KVM_CREATE_DEVICE": {
        const as: FdName = { name: this.fresh("kd"), kind: "kvmdev", open: true };
        return {
          arg: st([
            [
              "u32",
              "type",
              pick(s(4), [K.KVM_DEV_TYPE_VFIO, K.KVM_DEV_TYPE_VFIO, 0, 1, 12, 0xffffffff]),
            ],
            ["u32", "fd", 0],
            ["u32", "flags", pick(s(5), [0, 0, K.KVM_CREATE_DEVICE_TEST, 2])],
          ]),
          bind: as,
        };
      }
      case "KVM_SET_DEVICE_ATTR":
      case "KVM_GET_DEVICE_ATTR":
      case "KVM_HAS_DEVICE_ATTR": {
        const target = this.fdPick(
          p,
          s(6),
          pick(s(6) >> 5, ["group", "device", "group", "container"] as FdKind[]),
        );
        const attr = pick(s(5), [K.KVM_DEV_VFIO_FILE_ADD, K.KVM_DEV_VFIO_FILE_DEL, 3, 0, 99]);
        const addr: Json =
          s(7) % 4 === 3
            ? pick(s(7) >> 2, ["0x0", "0x1000", "0xffff888000000000"])
            : st([["s32", "fd", target.ref]]);
        return {
          arg: st([
            ["u32", "flags", pick(s(3), [0, 0, 1])],
            ["u32", "group", pick(s(4), [K.KVM_DEV_VFIO_FILE, K.KVM_DEV_VFIO_FILE, 0, 2, 99])],
            ["u64", "attr", attr],
            ["u64", "addr", addr],
          ]),
          ...(target.fd ? { peer: target.fd.name } : {}),
          attr,
        };
      }
      default: {
        // Requests the model answers without reading much: a buffer or a plain value.
        const b = this.bufPick(p, s(4));
        return { arg: b && s(4) % 2 ? `$${b.name}` : pick(s(4), [0, 1, "NULL"]) };
      }
    }
  }

  /* ---------------------------------------------------------------------------- */
  /* The ordinary flow, one step at a time                                         */
  /* ---------------------------------------------------------------------------- */

  /**
   * The next step of the usual flow for a device: vfio-pci bound, a container, the group
   * open and in it, an IOMMU backend, the device fd, bus mastering, a DMA mapping, then
   * KVM (VM, kvm-vfio, FILE_ADD), then DMA. A stage is tried once for the names it
   * involves (a failure is an answer, not a reason to stall); `seed` sometimes skips one
   * (out of order). A device whose group another process holds is passed over for one
   * this process holds or nobody does.
   */
  private step(p: Proc, devSel: number, seed: number, seed2: number): void {
    const own = this.kernel.debug.ownership();
    const groupOf = (bdf: string) => own.find((x) => x.devices.some((d) => d.name === bdf));
    const mine = (bdf: string) => {
      const g = groupOf(bdf);
      return (
        !g?.vfioGroupOpen || p.fds.some((f) => f.kind === "group" && f.open && f.group === g.id)
      );
    };
    let bdf = pick(devSel, FUZZ_DEVICES);
    if (!mine(bdf)) bdf = FUZZ_DEVICES.find(mine) ?? bdf;
    const skip = seed % 8 === 7 ? 1 + ((seed >> 3) % 8) : 0;
    const stages = this.stages(p, bdf, groupOf(bdf), seed, seed2);
    const todo = stages.filter((st) => !st.done && !p.tried.has(st.key));
    const next = todo[Math.min(skip, todo.length - 1)];
    if (next) {
      p.tried.add(next.key);
      next.run();
    } else {
      this.dma(p, (i) => [FUZZ_DEVICES.indexOf(bdf), seed, seed2, seed >> 4, seed2 >> 4][i] ?? 0);
    }
  }

  private stages(
    p: Proc,
    bdf: string,
    g: { id: number; devices: { name: string; driver: string | null }[] } | undefined,
    seed: number,
    seed2: number,
  ): { key: string; done: boolean; run: () => void }[] {
    const dev = g?.devices.find((d) => d.name === bdf);
    const container = p.fds.find((f) => f.kind === "container" && f.open);
    const group = p.fds.find((f) => f.kind === "group" && f.open && f.group === g?.id);
    const inContainer = group ? p.groupIn.get(group.name) : undefined;
    const device = p.fds.find((f) => f.kind === "device" && f.open && f.dev === bdf);
    const map = p.maps.find((m) => m.container === inContainer);
    const kvm = p.fds.find((f) => f.kind === "kvm" && f.open);
    const vm = p.fds.find((f) => f.kind === "vm" && f.open);
    const kd = p.fds.find((f) => f.kind === "kvmdev" && f.open);
    const added = kd ? p.kvmAdded.get(kd.name) : undefined;
    const addWhat = seed % 2 && device ? device : group;
    const base = `/sys/bus/pci/devices/${bdf}`;
    const ioctl = (
      fd: FdName | string | undefined,
      req: string,
      arg: Json,
      extra: Partial<Op> = {},
    ) =>
      this.op(p, {
        op: "ioctl",
        line: 0,
        fd: fd === undefined ? -1 : `$${typeof fd === "string" ? fd : fd.name}`,
        req,
        nr: hx(REQUESTS.get(req) as number),
        arg,
        ...extra,
      } as Op);
    return [
      {
        key: `bind ${bdf} ${String(dev?.driver)}`,
        done: dev?.driver === "vfio-pci",
        run: () => {
          this.op(p, {
            op: "sysfs_write",
            line: 0,
            path: `${base}/driver_override`,
            value: "vfio-pci",
          });
          if (dev?.driver)
            this.op(p, { op: "sysfs_write", line: 0, path: `${base}/driver/unbind`, value: bdf });
          this.op(p, {
            op: "sysfs_write",
            line: 0,
            path: "/sys/bus/pci/drivers_probe",
            value: bdf,
          });
        },
      },
      {
        key: `container ${p.fds.length}`,
        done: !!container,
        run: () => void this.openPath(p, "/dev/vfio/vfio"),
      },
      {
        key: `group ${g?.id} ${p.fds.length}`,
        done: !!group,
        run: () => void this.openPath(p, `/dev/vfio/${g?.id ?? 99}`),
      },
      {
        key: `set-container ${group?.name} ${container?.name}`,
        done: !!inContainer,
        run: () => {
          const res = ioctl(group, "VFIO_GROUP_SET_CONTAINER", {
            struct: [["s32", "fd", container ? `$${container.name}` : -1]],
          });
          if (res.errno === null && group && container) p.groupIn.set(group.name, container.name);
        },
      },
      {
        key: `set-iommu ${inContainer}`,
        done: !!inContainer && p.iommuSet.has(inContainer),
        run: () => {
          const type = seed % 4 === 1 ? U.VFIO_TYPE1_IOMMU : U.VFIO_TYPE1v2_IOMMU;
          const res = ioctl(inContainer, "VFIO_SET_IOMMU", type);
          if (res.errno === null && inContainer) p.iommuSet.add(inContainer);
        },
      },
      {
        key: `device ${group?.name} ${bdf}`,
        done: !!device,
        run: () => {
          const name = this.fresh("d");
          const bytes = bytesHex(`${bdf}\0`);
          const res = ioctl(
            group,
            "VFIO_GROUP_GET_DEVICE_FD",
            { struct: [[`bytes:${bytes.length / 2}`, "name", bytes]] },
            { as: name },
          );
          this.bind(p, res, {
            name,
            kind: "device",
            open: true,
            dev: bdf,
            ...(inContainer ? { container: inContainer } : {}),
          });
        },
      },
      {
        key: `bus-master ${device?.name}`,
        done: !device || p.busMaster.has(device.name),
        run: () => this.busMaster(p, device as FdName),
      },
      {
        key: `map ${inContainer} ${p.maps.length}`,
        done: !!map || !inContainer,
        run: () => {
          const size = pick(seed2, [8192, 4096, 0x200000, 0x10000]);
          const b = this.mmap(p, size, 0);
          if (!b) return;
          this.op(p, { op: "fill", line: 0, buf: `$${b.name}`, offset: 0, hex: "68656c6c6f" });
          const iova = pick(seed2 >> 2, [0x100000n, 0x200000n, 0x800000n, 0x0n]);
          const res = ioctl(inContainer, "VFIO_IOMMU_MAP_DMA", {
            struct: [
              ["u32", "argsz", 32],
              ["u32", "flags", 3],
              ["u64", "vaddr", `$${b.name}`],
              ["u64", "iova", hx(iova)],
              ["u64", "size", hx(size)],
            ],
          });
          if (res.errno === null && inContainer)
            p.maps.push({ container: inContainer, iova, size: BigInt(size) });
        },
      },
      {
        key: `kvm ${p.fds.length}`,
        done: !!kvm || seed2 % 4 === 3,
        run: () => void this.openPath(p, "/dev/kvm"),
      },
      {
        key: `vm ${kvm?.name}`,
        done: !!vm || !kvm,
        run: () => {
          const name = this.fresh("vm");
          const res = ioctl(kvm, "KVM_CREATE_VM", 0, { as: name });
          this.bind(p, res, { name, kind: "vm", open: true });
        },
      },
      {
        key: `kvm-vfio ${vm?.name}`,
        done: !!kd || !vm,
        run: () => {
          const name = this.fresh("kd");
          const res = ioctl(
            vm,
            "KVM_CREATE_DEVICE",
            {
              struct: [
                ["u32", "type", K.KVM_DEV_TYPE_VFIO],
                ["u32", "fd", 0],
                ["u32", "flags", 0],
              ],
            },
            { bind: { fd: name } },
          );
          this.bind(p, res, { name, kind: "kvmdev", open: true });
        },
      },
      {
        key: `file-add ${kd?.name} ${addWhat?.name}`,
        done: !kd || !addWhat || !!added?.has(addWhat.name),
        run: () => {
          const what = addWhat as FdName;
          const res = ioctl(kd, "KVM_SET_DEVICE_ATTR", {
            struct: [
              ["u32", "flags", 0],
              ["u32", "group", K.KVM_DEV_VFIO_FILE],
              ["u64", "attr", K.KVM_DEV_VFIO_FILE_ADD],
              ["u64", "addr", { struct: [["s32", "fd", `$${what.name}`]] }],
            ],
          });
          if (res.errno === null && kd) {
            const set = p.kvmAdded.get(kd.name) ?? new Set<string>();
            set.add(what.name);
            p.kvmAdded.set(kd.name, set);
          }
        },
      },
    ];
  }

  /** Memory space and bus mastering on in the device's Command register (config region). */
  private busMaster(p: Proc, device: FdName): void {
    const res = this.op(p, {
      op: "pwrite",
      line: 0,
      fd: `$${device.name}`,
      offset: hx((7n << 40n) | 4n),
      hex: "0600",
    });
    if (res.errno === null) p.busMaster.add(device.name);
  }

  /**
   * edu DMA: program source, destination, count and command through BAR0 of an open
   * device fd. The RAM side is an IOVA the process mapped (usually) or any other.
   */
  private dma(p: Proc, a: (i: number) => number): void {
    const bdf = pick(a(0), FUZZ_DEVICES);
    const devs = p.fds.filter((f) => f.kind === "device" && f.open);
    const d = devs.find((f) => f.dev === bdf) ?? devs[a(0) % Math.max(devs.length, 1)];
    if (!d) return;
    if (!p.busMaster.has(d.name) && a(4) % 8 !== 7) this.busMaster(p, d);
    const own = p.maps.filter((x) => x.container === d.container);
    const maps = own.length && a(1) % 4 !== 3 ? own : p.maps;
    const m = maps.length ? pick(a(1) >> 2, maps) : null;
    const ram =
      m && a(2) % 4 !== 3
        ? m.iova + BigInt(pick(a(2) >> 2, [0, 0x1000, 0xff0, 0x800, Number(m.size) - 16]))
        : pick(a(2) >> 2, [0x900000n, 0x0n, 0x1000n, 0xfffff00n, 0xfee00000n]);
    const toRam = a(3) % 2 === 1;
    const len = pick(a(3) >> 1, [16, 11, 4096, 0x20, 1, 0x1001, 0]);
    const devAddr = 0x40000n + BigInt(pick(a(4), [0, 0x800, 0xff0, 0x1000]));
    const le = (v: bigint) => {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(BigInt.asUintN(64, v));
      return b.toString("hex");
    };
    const w = (off: number, v: bigint) =>
      this.op(p, { op: "pwrite", line: 0, fd: `$${d.name}`, offset: hx(off), hex: le(v) });
    w(0x80, toRam ? devAddr : ram);
    w(0x88, toRam ? ram : devAddr);
    w(0x90, BigInt(len));
    w(0x98, toRam ? 3n : 1n);
  }
}

interface Built {
  arg: Json;
  as?: FdName;
  bind?: FdName;
  /** The name of another fd the call refers to (a container, a group added to KVM). */
  peer?: string;
  map?: { iova: bigint; size: bigint };
  attr?: number;
}

function describe(op: Op): string {
  const what = op.op === "ioctl" ? `ioctl ${String(op.req)}` : op.op;
  return `${what} (${String(op.note)})`;
}

/** Run commands on a fresh kernel; FuzzFailure on the first exception or violation. */
export function runCommands(
  cfg: FuzzConfig,
  cmds: readonly FuzzCmd[],
  opts: RunOptions = {},
): FuzzRun {
  const run = new FuzzRun(cfg, opts);
  let i = 0;
  try {
    for (; i < cmds.length; i++) run.run(cmds[i] as FuzzCmd);
    run.teardown();
  } catch (e) {
    if (e instanceof FuzzFailure) {
      e.cmdIndex = i < cmds.length ? i : -1;
      e.calls = run.calls;
    }
    throw e;
  } finally {
    run.checker.detach();
  }
  return run;
}
