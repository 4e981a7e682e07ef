/**
 * The CPUs and their caches: each core has one private write-back cache of 64-byte lines
 * (clean or dirty; LRU eviction at the cost table's capacity; a dirty victim is written
 * back). The shared LLC and the MESI states beyond clean/dirty are not modelled; what is
 * modelled is what software can observe about coherency:
 *
 * - CPU loads and stores go through the core's cache. A miss fills the line from memory,
 *   after any other core holding it dirty has written it back (x86 caches are coherent
 *   with each other); a store takes the line exclusively (other cores' copies go, a dirty
 *   one handing its data over) and leaves it dirty.
 * - Snooping DMA (dma.ts calls `snoop` before touching RAM) sees and updates cached lines:
 *   a dirty line is written back first, and a DMA write invalidates the lines it covers,
 *   so the device reads the newest data and the CPUs read what it wrote.
 * - Non-snooping DMA (`bypass`) reaches RAM directly: it reads stale data where a dirty
 *   line is cached, and its writes leave stale (clean or dirty) lines in the caches, which
 *   CPU loads keep returning until they are flushed. A dirty stale line written back later
 *   overwrites what the device wrote.
 * - WBINVD writes back and invalidates the executing core's cache (Intel SDM vol. 2B; the
 *   model's one level is that core's); CLFLUSH writes back and invalidates one line in
 *   every cache of the coherence domain (SDM vol. 2A CLFLUSH).
 *
 * Everything else the machine does with RAM on the CPUs' behalf — the kernel's and
 * processes' own loads and stores — goes through `coherentView()`: accesses that behave
 * like snooping ones and allocate nothing (the host's own cache footprint is not modelled).
 *
 * Guest execution: `enterGuest` runs a guest program (hw.ts GuestInsn) on a core as VMX
 * non-root / SVM guest mode does, until an instruction exits to the hypervisor.
 *
 * Time: every core has a clock (simulated ns) advanced with the cost table (costs.ts) by
 * what it executes; `stats` counts the events.
 *
 * Features: the flags and bugs /proc/cpuinfo lists. When the host input gives none, the
 * CPUs are assumed to have those every x86-64 CPU since 2013 has of what the kernel model
 * consults (XSAVE, AVX, AVX2, MONITOR/MWAIT, the always-running APIC timer) and no bugs,
 * and a server's 46 physical address bits.
 */
import type { CostTable } from "./costs.js";
import type { CoherencyPort } from "./dma.js";
import { PAGE_SHIFT, type CpuHw, type GuestContext, type MemoryAccess, type VmExit } from "./hw.js";
import type { PhysicalMemory } from "./memory.js";

export const LINE = 64;
const LINE_SHIFT = 6;

interface Line {
  data: Uint8Array;
  dirty: boolean;
}

export interface CpuStats {
  hits: number;
  misses: number;
  /** Dirty lines written back: evictions, WBINVD, CLFLUSH, snoops, other cores' misses. */
  writebacks: number;
  /** Lines a non-snooping DMA went past while they were cached (stale data hazards). */
  bypassedLines: number;
  wbinvds: number;
  clflushes: number;
  vmExits: number;
  ipis: number;
}

/** One core: its cache (Map order is LRU order, oldest first) and its clock. */
class Core {
  readonly lines = new Map<number, Line>();
  clock = 0;
  constructor(readonly id: number) {}
}

/** What /proc/cpuinfo says about the CPUs' features. */
export interface CpuFeatures {
  flags: readonly string[];
  bugs: readonly string[];
  /** "address sizes": N bits physical */
  physBits?: number;
}

/** A server CPU's MAXPHYADDR, when the host input does not say. */
const DEFAULT_PHYS_BITS = 46;

export const DEFAULT_FEATURES: CpuFeatures = {
  flags: ["xsave", "avx", "avx2", "monitor", "arat"],
  bugs: [],
};

export class CpuComplex implements CpuHw, CoherencyPort {
  readonly cores: Core[];
  readonly flags: ReadonlySet<string>;
  readonly bugs: ReadonlySet<string>;
  readonly physBits: number;
  readonly stats: CpuStats = {
    hits: 0,
    misses: 0,
    writebacks: 0,
    bypassedLines: 0,
    wbinvds: 0,
    clflushes: 0,
    vmExits: 0,
    ipis: 0,
  };
  readonly hasWbinvdExit = true;
  /** Cached lines per 4 KiB frame over all cores: lets accesses to uncached pages skip the caches. */
  private readonly perPage = new Map<number, number>();

  constructor(
    private readonly ram: PhysicalMemory,
    private readonly costs: () => Readonly<CostTable>,
    readonly count = 4,
    private readonly vendorOf: () => "intel" | "amd" = () => "intel",
    features: CpuFeatures = DEFAULT_FEATURES,
  ) {
    this.flags = new Set(features.flags);
    this.bugs = new Set(features.bugs);
    this.physBits = features.physBits ?? DEFAULT_PHYS_BITS;
    this.cores = Array.from({ length: count }, (_, i) => new Core(i));
  }

  get vendor(): "intel" | "amd" {
    return this.vendorOf();
  }

  clock(cpu: number): number {
    return this.core(cpu).clock;
  }

  private core(cpu: number): Core {
    const c = this.cores[cpu];
    if (!c) throw new Error(`no CPU ${cpu}`);
    return c;
  }

  private charge(cpu: number, ns: number): void {
    this.core(cpu).clock += ns;
  }

  private capacity(): number {
    return Math.max(1, Math.floor(this.costs().cacheBytesPerCore / LINE));
  }

  // ---- line bookkeeping --------------------------------------------------------------

  private insert(core: Core, idx: number, line: Line): void {
    core.lines.set(idx, line);
    const pfn = idx >> (PAGE_SHIFT - LINE_SHIFT);
    this.perPage.set(pfn, (this.perPage.get(pfn) ?? 0) + 1);
    if (core.lines.size > this.capacity()) {
      const [victim, v] = core.lines.entries().next().value as [number, Line];
      this.drop(core, victim, v, true, core.id);
    }
  }

  /** Remove a line from a core, writing it back first if dirty and `writeback`. */
  private drop(core: Core, idx: number, line: Line, writeback: boolean, charged?: number): void {
    if (writeback && line.dirty) this.writeBack(idx, line, charged);
    core.lines.delete(idx);
    const pfn = idx >> (PAGE_SHIFT - LINE_SHIFT);
    const n = (this.perPage.get(pfn) ?? 1) - 1;
    if (n > 0) this.perPage.set(pfn, n);
    else this.perPage.delete(pfn);
  }

  private writeBack(idx: number, line: Line, charged?: number): void {
    this.ram.write(idx << LINE_SHIFT, line.data);
    line.dirty = false;
    this.stats.writebacks++;
    if (charged !== undefined) this.charge(charged, this.costs().cacheLineWriteback);
  }

  private anyCached(pa: number, len: number): boolean {
    if (this.perPage.size === 0 || len <= 0) return false;
    for (let p = pa >> PAGE_SHIFT; p <= (pa + len - 1) >> PAGE_SHIFT; p++)
      if (this.perPage.has(p)) return true;
    return false;
  }

  private *lineIndexes(pa: number, len: number): Generator<number> {
    for (let i = pa >> LINE_SHIFT; i <= (pa + len - 1) >> LINE_SHIFT; i++) yield i;
  }

  /** Make line `idx` present in `cpu`'s cache (a miss fills it coherently); for a store, exclusively. */
  private own(cpu: number, idx: number, write: boolean): Line {
    const core = this.core(cpu);
    const c = this.costs();
    const mine = core.lines.get(idx);
    if (mine && !write) {
      core.lines.delete(idx); // LRU: move to the newest end
      core.lines.set(idx, mine);
      this.stats.hits++;
      this.charge(cpu, c.cacheHit);
      return mine;
    }
    let handed: Uint8Array | null = null;
    for (const other of this.cores) {
      if (other === core) continue;
      const l = other.lines.get(idx);
      if (!l) continue;
      if (write) {
        // RFO: the other copy is invalidated; a dirty one hands its data over.
        if (l.dirty) handed = l.data;
        this.drop(other, idx, l, false);
      } else if (l.dirty) {
        this.writeBack(idx, l, other.id); // a read miss makes the owner write back and share
      }
    }
    if (mine) {
      if (handed) mine.data.set(handed);
      core.lines.delete(idx);
      core.lines.set(idx, mine);
      this.stats.hits++;
      this.charge(cpu, c.cacheHit);
      return mine;
    }
    const line: Line = { data: handed ?? this.ram.read(idx << LINE_SHIFT, LINE), dirty: !!handed };
    this.stats.misses++;
    this.charge(cpu, c.cacheMiss);
    this.insert(core, idx, line);
    return line;
  }

  // ---- what a core executes -----------------------------------------------------------

  /** A load by `cpu` through its cache (write-back memory). */
  load(cpu: number, pa: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    for (const idx of this.lineIndexes(pa, len)) {
      const line = this.own(cpu, idx, false);
      const base = idx << LINE_SHIFT;
      const from = Math.max(pa, base);
      const to = Math.min(pa + len, base + LINE);
      out.set(line.data.subarray(from - base, to - base), from - pa);
    }
    return out;
  }

  /** A store by `cpu` through its cache (write-allocate, write-back). */
  store(cpu: number, pa: number, data: Uint8Array): void {
    for (const idx of this.lineIndexes(pa, data.length)) {
      const line = this.own(cpu, idx, true);
      const base = idx << LINE_SHIFT;
      const from = Math.max(pa, base);
      const to = Math.min(pa + data.length, base + LINE);
      line.data.set(data.subarray(from - pa, to - pa), from - base);
      line.dirty = true;
    }
  }

  wbinvd(cpu: number): void {
    const core = this.core(cpu);
    this.stats.wbinvds++;
    this.charge(cpu, this.capacity() * this.costs().wbinvdPerLine);
    for (const [idx, line] of [...core.lines]) this.drop(core, idx, line, true, cpu);
  }

  clflush(cpu: number, pa: number): void {
    const idx = pa >> LINE_SHIFT;
    this.stats.clflushes++;
    this.charge(cpu, this.costs().clflush);
    for (const core of this.cores) {
      const l = core.lines.get(idx);
      if (l) this.drop(core, idx, l, true, cpu);
    }
  }

  onEachCpu(from: number, cpus: Iterable<number>, fn: (cpu: number) => void): void {
    const targets = [...new Set(cpus)];
    const start = this.clock(from);
    let done = start;
    for (const cpu of targets) {
      if (cpu === from) continue;
      // The target takes the IPI, runs fn, acknowledges; the sender waits for the slowest.
      this.stats.ipis++;
      const core = this.core(cpu);
      core.clock = Math.max(core.clock, start) + this.costs().ipi;
      fn(cpu);
      done = Math.max(done, core.clock);
    }
    if (targets.includes(from)) fn(from);
    const me = this.core(from);
    me.clock = Math.max(me.clock, done);
  }

  // ---- DMA's view (the coherency port) ------------------------------------------------

  snoop(pa: number, len: number, write: boolean): void {
    if (!this.anyCached(pa, len)) return;
    for (const idx of this.lineIndexes(pa, len)) {
      for (const core of this.cores) {
        const l = core.lines.get(idx);
        if (!l) continue;
        if (l.dirty) this.writeBack(idx, l);
        if (write) this.drop(core, idx, l, false);
      }
    }
  }

  bypass(pa: number, len: number): void {
    if (!this.anyCached(pa, len)) return;
    for (const idx of this.lineIndexes(pa, len))
      for (const core of this.cores) if (core.lines.has(idx)) this.stats.bypassedLines++;
  }

  /** RAM as the kernel and processes reach it: coherent with the caches, allocating nothing. */
  coherentView(): MemoryAccess {
    return {
      size: this.ram.size,
      read: (pa, len) => {
        this.snoop(pa, len, false);
        return this.ram.read(pa, len);
      },
      write: (pa, data) => {
        this.snoop(pa, data.length, true);
        this.ram.write(pa, data);
      },
      clear: (pfn) => {
        // A freed page's lines are dropped unwritten: the page is zeroed anyway.
        const first = pfn << (PAGE_SHIFT - LINE_SHIFT);
        if (this.perPage.has(pfn))
          for (const core of this.cores)
            for (let i = 0; i < 1 << (PAGE_SHIFT - LINE_SHIFT); i++) {
              const l = core.lines.get(first + i);
              if (l) this.drop(core, first + i, l, false);
            }
        this.ram.clear(pfn);
      },
    };
  }

  /** What `cpu` has cached of [pa, pa+len): for tests and explanations. */
  cached(cpu: number, pa: number): { dirty: boolean; data: Uint8Array } | undefined {
    const l = this.core(cpu).lines.get(pa >> LINE_SHIFT);
    return l ? { dirty: l.dirty, data: l.data.slice() } : undefined;
  }

  // ---- guest mode ---------------------------------------------------------------------

  enterGuest(cpu: number, ctx: GuestContext): VmExit {
    const exit = (e: VmExit): VmExit => {
      this.stats.vmExits++;
      this.charge(cpu, this.costs().vmExit);
      return e;
    };
    for (;;) {
      const insn = ctx.program[ctx.rip];
      if (!insn) return exit({ reason: "hlt" });
      switch (insn.op) {
        case "store": {
          const ok = this.guestAccess(ctx, insn.gpa, insn.data.length, true);
          if (typeof ok === "number") return exit({ reason: "fault", gpa: ok });
          if (ok === null)
            return exit({
              reason: "mmio",
              gpa: insn.gpa,
              len: insn.data.length,
              write: true,
              data: insn.data,
            });
          for (const [pa, off, n] of ok) this.store(cpu, pa, insn.data.subarray(off, off + n));
          break;
        }
        case "load": {
          const ok = this.guestAccess(ctx, insn.gpa, insn.len, false);
          if (typeof ok === "number") return exit({ reason: "fault", gpa: ok });
          if (ok === null)
            return exit({ reason: "mmio", gpa: insn.gpa, len: insn.len, write: false });
          const data = new Uint8Array(insn.len);
          for (const [pa, off, n] of ok) data.set(this.load(cpu, pa, n), off);
          ctx.reads.push({ gpa: insn.gpa, data });
          break;
        }
        case "wbinvd":
          if (ctx.wbinvdExiting) return exit({ reason: "wbinvd" });
          this.wbinvd(cpu);
          break;
        case "clflush": {
          const pa = ctx.translate(insn.gpa, false);
          if (typeof pa === "number") this.clflush(cpu, pa);
          else this.charge(cpu, this.costs().clflush);
          break;
        }
        case "mfence":
        case "pause":
          this.charge(cpu, this.costs().cacheHit);
          break;
        case "hlt":
          return exit({ reason: "hlt" });
        case "preempt":
          ctx.rip++;
          return exit({ reason: "external-interrupt", moveTo: insn.cpu });
      }
      ctx.rip++;
    }
  }

  /**
   * Page pieces [pa, offset in the access, length] of a guest access; null if any is MMIO;
   * the guest-physical address that faulted, as a number.
   */
  private guestAccess(
    ctx: GuestContext,
    gpa: number,
    len: number,
    write: boolean,
  ): [number, number, number][] | null | number {
    const out: [number, number, number][] = [];
    const page = 1 << PAGE_SHIFT;
    for (let done = 0; done < len;) {
      const at = gpa + done;
      const n = Math.min(len - done, page - (at % page));
      const pa = ctx.translate(at, write);
      if (pa === "fault") return at;
      if (pa === null) return null;
      out.push([pa, done, n]);
      done += n;
    }
    return out;
  }
}
