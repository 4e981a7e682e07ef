/**
 * An IOMMU's translation cache, as the VT-d spec (ch. 6, "Caching Translation Information":
 * the IOTLB) and the AMD I/O Virtualization Technology spec (the IOMMU TLB, invalidated by
 * INVALIDATE_IOMMU_PAGES) describe it: entries tagged with the domain ID the context / device table
 * entry carries, each caching one translation of the page size the tables mapped, with
 * the effective permissions of the walk. Requesters in one domain share entries.
 *
 * What it caches stays in use until software invalidates it — changing a page-table entry
 * in RAM does not reach a cached translation, so a missing invalidation is observable, as
 * on hardware. Only successful translations are cached (CAP.CM = 0 behaviour: faults are
 * never cached). A finite number of entries is kept; the least recently used is evicted.
 */

export interface IotlbEntry {
  domainId: number;
  /** IOVA of the page (aligned to `size`). */
  iova: bigint;
  size: bigint;
  /** Physical address of the page. */
  pa: number;
  read: boolean;
  write: boolean;
  /** The translation forces the request to snoop (VT-d SNP with ECAP.SC, AMD-Vi FC). */
  forceSnoop: boolean;
}

export class Iotlb {
  private readonly entries = new Map<string, IotlbEntry>();
  /** Page sizes present, so a lookup tries only those. */
  private readonly sizes = new Map<bigint, number>();
  hits = 0;
  misses = 0;

  constructor(public capacity: number) {}

  get size(): number {
    return this.entries.size;
  }

  private static key(domainId: number, size: bigint, iova: bigint): string {
    return `${domainId}:${size}:${iova / size}`;
  }

  lookup(domainId: number, iova: bigint): IotlbEntry | undefined {
    for (const size of this.sizes.keys()) {
      const k = Iotlb.key(domainId, size, iova);
      const e = this.entries.get(k);
      if (e) {
        // Most recently used moves to the back of the eviction order.
        this.entries.delete(k);
        this.entries.set(k, e);
        this.hits++;
        return e;
      }
    }
    this.misses++;
    return undefined;
  }

  insert(e: IotlbEntry): void {
    if (this.capacity <= 0) return;
    const k = Iotlb.key(e.domainId, e.size, e.iova);
    this.remove(k);
    while (this.entries.size >= this.capacity) {
      const oldest = this.entries.keys().next().value as string;
      this.remove(oldest);
    }
    this.entries.set(k, e);
    this.sizes.set(e.size, (this.sizes.get(e.size) ?? 0) + 1);
  }

  /** Drop one entry (a cached translation that did not permit an access is re-walked). */
  drop(e: IotlbEntry): void {
    this.remove(Iotlb.key(e.domainId, e.size, e.iova));
  }

  /** Domain-selective invalidation. */
  flushDomain(domainId: number): void {
    for (const [k, e] of this.entries) if (e.domainId === domainId) this.remove(k);
  }

  /** Global invalidation. */
  flushAll(): void {
    this.entries.clear();
    this.sizes.clear();
  }

  /** The cached translations, least recently used first. */
  list(): IotlbEntry[] {
    return [...this.entries.values()];
  }

  private remove(k: string): void {
    const e = this.entries.get(k);
    if (!e) return;
    this.entries.delete(k);
    const n = (this.sizes.get(e.size) ?? 1) - 1;
    if (n > 0) this.sizes.set(e.size, n);
    else this.sizes.delete(e.size);
  }
}
