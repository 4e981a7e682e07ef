/**
 * The platform's IOMMU units as hardware: per requester ID, the translation the kernel
 * programmed (context entry / device table entry), and per unit the table walker, IOTLB
 * and fault log of its kind (vtd.ts, amdvi.ts).
 *
 * A unit starts with translation off (GSTS.TES / IommuEn clear after reset) and DMA it
 * covers passes untranslated; the first `setTranslation` on it stands for the kernel
 * turning it on, after which a requester it never programmed is blocked.
 */
import type { IommuFault, IommuHw, IommuUnitDesc, MemoryAccess } from "../hw.js";
import { DEFAULT_COSTS } from "../costs.js";
import { AmdViUnit } from "./amdvi.js";
import { Iotlb } from "./iotlb.js";
import { VtdUnit } from "./vtd.js";

export type Translation = { root: number; levels: number; domainId: number } | "passthrough" | null;

/**
 * One request's translation. `snoop`: the translation itself forces the access to snoop
 * (VT-d SNP with Snoop Control, AMD-Vi FC) whatever the request's No Snoop attribute.
 * `iotlb`: "hit"/"miss" when tables were consulted, "none" for pass-through or a unit not
 * translating. `walkReads`: paging-structure entries read from RAM.
 */
export type TranslateResult =
  | { ok: true; pa: number; snoop: boolean; iotlb: "hit" | "miss" | "none"; walkReads: number }
  | { ok: false; fault: IommuFault; walkReads: number };

/** What a unit kind implements. */
export interface UnitHw {
  readonly desc: IommuUnitDesc;
  readonly iotlb: Iotlb;
  /** `busHasContext`: some requester on the same bus was programmed (VT-d root entry present). */
  translate(
    t: Translation | undefined,
    busHasContext: boolean,
    rid: number,
    iova: bigint,
    write: boolean,
  ): TranslateResult;
  readFaults(): IommuFault[];
}

/** virtio-iommu keeps its mappings in the device, not in tables in RAM: not modelled yet. */
class VirtioUnit implements UnitHw {
  readonly iotlb = new Iotlb(0);
  private readonly pending: IommuFault[] = [];
  constructor(readonly desc: IommuUnitDesc) {}
  translate(
    t: Translation | undefined,
    _b: boolean,
    rid: number,
    iova: bigint,
    write: boolean,
  ): TranslateResult {
    if (t === "passthrough")
      return { ok: true, pa: Number(iova), snoop: false, iotlb: "none", walkReads: 0 };
    const fault: IommuFault = { rid, addr: iova, write, reason: "blocked" };
    this.pending.push(fault);
    return { ok: false, fault, walkReads: 0 };
  }
  readFaults(): IommuFault[] {
    return this.pending.splice(0);
  }
}

export class IommuUnits implements IommuHw {
  /** unit → "segment:rid" → translation. */
  readonly contexts = new Map<string, Map<string, Translation>>();
  private readonly hw = new Map<string, UnitHw>();
  /** IOTLB size for units created from now on. */
  iotlbEntries = DEFAULT_COSTS.iotlbEntries;

  constructor(
    private readonly memory: MemoryAccess,
    /** The firmware's unit list (read when a unit is first used, so it may grow). */
    private readonly descs: readonly IommuUnitDesc[],
  ) {}

  /** The hardware of one unit; throws for a name no firmware table gives. */
  unit(name: string): UnitHw {
    let u = this.hw.get(name);
    if (u) return u;
    const desc = this.descs.find((d) => d.name === name);
    if (!desc) throw new Error(`no IOMMU unit named ${name}`);
    u =
      desc.kind === "intel-vtd"
        ? new VtdUnit(desc, this.memory, this.iotlbEntries)
        : desc.kind === "amd-vi"
          ? new AmdViUnit(desc, this.memory, this.iotlbEntries)
          : new VirtioUnit(desc);
    this.hw.set(name, u);
    return u;
  }

  setTranslation(unit: string, segment: number, rid: number, t: Translation): void {
    this.unit(unit);
    if (!this.contexts.has(unit)) this.contexts.set(unit, new Map());
    (this.contexts.get(unit) as Map<string, Translation>).set(`${segment}:${rid}`, t);
  }

  translation(unit: string, segment: number, rid: number): Translation {
    return this.contexts.get(unit)?.get(`${segment}:${rid}`) ?? null;
  }

  /** Whether the kernel has turned the unit on (programmed any requester on it). */
  enabled(unit: string): boolean {
    return (this.contexts.get(unit)?.size ?? 0) > 0;
  }

  flushIotlb(unit: string, domainId: number): void {
    this.unit(unit).iotlb.flushDomain(domainId);
  }

  readFaults(unit: string): IommuFault[] {
    return this.unit(unit).readFaults();
  }

  iotlb(unit: string): Iotlb {
    return this.unit(unit).iotlb;
  }

  /**
   * The unit translating one request from (segment, rid) to `iova`: the IOTLB or a table
   * walk, faults recorded in the unit's log. A unit not yet turned on passes the address
   * through.
   */
  translate(
    unit: string,
    segment: number,
    rid: number,
    iova: bigint,
    write: boolean,
  ): TranslateResult {
    const u = this.unit(unit);
    const ctx = this.contexts.get(unit);
    if (!ctx || ctx.size === 0) {
      return { ok: true, pa: Number(iova), snoop: false, iotlb: "none", walkReads: 0 };
    }
    const t = ctx.get(`${segment}:${rid}`);
    let busHasContext = t !== undefined;
    if (!busHasContext) {
      for (const k of ctx.keys()) {
        const [s, r] = k.split(":").map(Number) as [number, number];
        if (s === segment && r >> 8 === rid >> 8) busHasContext = true;
      }
    }
    return u.translate(t, busHasContext, rid, iova, write);
  }
}
