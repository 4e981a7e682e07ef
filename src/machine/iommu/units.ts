/**
 * The platform's IOMMU units as hardware: per requester ID, the translation the kernel
 * programmed (context entry / device table entry), and the fault log. Walking the tables
 * on a DMA and caching in the IOTLB live beside this, per unit kind.
 */
import type { IommuFault, IommuHw } from "../hw.js";

export type Translation = { root: number; levels: number; domainId: number } | "passthrough" | null;

export class IommuUnits implements IommuHw {
  /** unit → "segment:rid" → translation. */
  readonly contexts = new Map<string, Map<string, Translation>>();
  readonly faults = new Map<string, IommuFault[]>();

  setTranslation(unit: string, segment: number, rid: number, t: Translation): void {
    if (!this.contexts.has(unit)) this.contexts.set(unit, new Map());
    (this.contexts.get(unit) as Map<string, Translation>).set(`${segment}:${rid}`, t);
  }

  translation(unit: string, segment: number, rid: number): Translation {
    return this.contexts.get(unit)?.get(`${segment}:${rid}`) ?? null;
  }

  flushIotlb(_unit: string, _domainId: number): void {
    // No IOTLB is modelled yet: every DMA walks the tables.
  }

  readFaults(unit: string): IommuFault[] {
    const f = this.faults.get(unit) ?? [];
    this.faults.set(unit, []);
    return f;
  }
}
