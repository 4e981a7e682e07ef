/**
 * Fault injection, after the kernel's fault-injection framework (lib/fault-inject.c,
 * Documentation/fault-injection/fault-injection.rst) as iommufd's selftest drives it
 * (tools/testing/selftests/iommu/iommufd_fail_nth.c writes /proc/self/fail-nth): arm
 * `failNth(n)` and the n-th fallible allocation from then on fails, once; a sweep runs a
 * flow for n = 1, 2, ... until a run finishes without reaching the n-th allocation
 * (`injected` stays null). Every run must end in a clean errno, and closing everything
 * must give every object back.
 *
 * A fallible allocation site asks `should(site, what)` and, when it answers true, fails
 * the way the kernel fails there. The sites:
 *
 * | site         | Linux                               | in the model                           |
 * |--------------|-------------------------------------|----------------------------------------|
 * | "page_alloc" | fail_page_alloc (alloc_pages)       | PageAllocator.alloc: user pages faulted |
 * |              |                                     | in or pinned, IOMMU page-table pages    |
 * | "slab"       | failslab (kmalloc/kzalloc)          | a kernel object; `what` names it        |
 * |              |                                     | ("vfio_container", "vfio_dma", "kvm"…) |
 * | "fd"         | get_unused_fd_flags / alloc_file    | FdTable.install: the new file is put   |
 *
 * A new subsystem (iommufd, sPAPR) adds its allocations by calling `should` where the
 * kernel allocates, with the caller's `task.faults` (or the kernel's `faultInject`): there
 * is nothing to register, and a site costs one counter decrement while nothing is armed.
 */
export type FaultSite = "page_alloc" | "slab" | "fd";

export interface InjectedFault {
  site: FaultSite;
  /** What was being allocated (the slab cache / object, or the page's user). */
  what: string;
  /** Which fallible call it was since failNth (always the n armed). */
  nth: number;
}

export class FaultInject {
  /** Fallible calls left before the one that fails; 0 when disarmed. */
  private countdown = 0;
  private armedAt = 0;
  /** Sites taking part (all when empty). */
  private sites: ReadonlySet<FaultSite> = new Set();
  /** Fallible calls counted since the last failNth, up to the injected one. */
  calls = 0;
  /** The fault injected since the last failNth, if it was reached. */
  injected: InjectedFault | null = null;

  /**
   * Make the n-th fallible call from now fail (n ≥ 1), once; n = 0 disarms. `sites`
   * restricts counting to those sites (fail_page_alloc / failslab chosen alone).
   */
  failNth(n: number, sites: Iterable<FaultSite> = []): void {
    this.countdown = Math.max(0, Math.floor(n));
    this.armedAt = this.countdown;
    this.sites = new Set(sites);
    this.calls = 0;
    this.injected = null;
  }

  disarm(): void {
    this.countdown = 0;
  }

  get armed(): boolean {
    return this.countdown > 0;
  }

  /** should_fail(): true when this allocation is the one to fail. */
  should(site: FaultSite, what: string): boolean {
    if (this.countdown === 0) return false;
    if (this.sites.size && !this.sites.has(site)) return false;
    this.calls++;
    if (--this.countdown > 0) return false;
    this.injected = { site, what, nth: this.armedAt };
    return true;
  }
}
