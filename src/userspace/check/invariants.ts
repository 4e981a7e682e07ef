/**
 * Invariants of the whole model, checked from outside it: the kernel through its debugfs
 * (`kernel.debug`), the machine only through what it reports after the fact (each DMA
 * transaction, to the DMA engine's listeners). What must hold after every syscall:
 *
 * - dma-isolation: a device's DMA reaches only memory its group's current domain maps
 *   for it (identity: any address; blocked or nothing mapped: none), at the physical
 *   address that domain gives (iommu_iova_to_phys). A stale IOTLB entry, a context entry
 *   left pointing at an old table, a mapping removed without invalidation all show here.
 * - group-ownership: an IOMMU group is owned whole by one user (a VFIO group in one
 *   container) or by nobody: with no user owner, owner_cnt counts exactly the members
 *   bound to DMA-API drivers and the group sits on its default domain; with one, no
 *   member is bound to a DMA-API driver, owner_cnt is 1, the group is in exactly the one
 *   container that lists it, and its domain is the blocking one or one of that
 *   container's backend.
 * - kvm-coherency: a VM's noncoherent DMA registration counts its kvm-vfio devices whose
 *   flag is set (plus, under the never-merged "2021-proposal" profile, the pairs it
 *   allowed with KVM_ALLOW_INCOHERENT_DMA) — none on POWER, which lacks
 *   __KVM_HAVE_ARCH_NONCOHERENT_DMA —, and each flag equals "some entry is non-coherent" under the kernel's
 *   profile as of the last FILE_ADD/DEL. kvm-vfio computes the verdict only then, and it
 *   may change afterwards without KVM being told, as in the kernel: a group file's
 *   verdict covers the devices registered in the group now (one unbound from vfio-pci
 *   no longer counts), and under the 3.15 profile the container's answer changes as
 *   groups join it. So the flag is compared whenever the entry list changed since the
 *   previous check, i.e. right after the call that made kvm-vfio recompute it.
 * - locked-memory: no task's mm->locked_vm is negative, nor above its RLIMIT_MEMLOCK
 *   unless it has CAP_IPC_LOCK (every charge is checked against the limit then).
 *
 * And once every fd is closed and every task has exited (`checkQuiescent`):
 * - locked-memory: every task's locked_vm is back to 0;
 * - object-lifetime: page frames, open files, containers, VMs, open VFIO devices and
 *   groups are back to the counts taken right after boot.
 */
import type { Host } from "../../host/build.js";
import type { Kernel, ObjectCounts } from "../../kernel/kernel.js";
import { PCI_SECONDARY_BUS } from "../../uapi/pci_regs.js";

type Machine = Host["machine"];
export type DmaTransaction = Parameters<Machine["dma"]["listeners"][number]>[0];

export type InvariantName =
  "dma-isolation" | "group-ownership" | "kvm-coherency" | "locked-memory" | "object-lifetime";

export interface Violation {
  invariant: InvariantName;
  detail: string;
}

const hex = (n: number | bigint, w = 0) => n.toString(16).padStart(w, "0");

export class InvariantChecker {
  /** What the kernel held right after boot (or when `rebase` was last called). */
  baseline: ObjectCounts;
  /** DMA transactions examined so far, and pages of them that reached memory. */
  dmaTransactions = 0;
  dmaPages = 0;
  private pending: Violation[] = [];
  private readonly listener: ((t: DmaTransaction) => void) | null = null;
  /** kvm-vfio entry keys per VM (debug id) at the previous check. */
  private readonly lastEntries = new Map<number, string>();

  /**
   * `machine`: listen to its DMA (else feed transactions to `dma`); `baseline`: the object
   * counts to come back to (default: the kernel's now).
   */
  constructor(
    private readonly kernel: Kernel,
    private readonly machine: Machine | null = null,
    baseline?: ObjectCounts,
  ) {
    this.baseline = baseline ?? kernel.debug.objects();
    if (machine) {
      const l = (t: DmaTransaction) => this.dma(t);
      this.listener = l;
      machine.dma.listeners.push(l);
    }
  }

  /** Take the current object counts as the baseline (after the harness's own setup). */
  rebase(): void {
    this.baseline = this.kernel.debug.objects();
  }

  /** Stop listening to the machine's DMA. */
  detach(): void {
    if (!this.machine || !this.listener) return;
    const ls = this.machine.dma.listeners;
    const i = ls.indexOf(this.listener);
    if (i >= 0) ls.splice(i, 1);
  }

  /** Every invariant that must hold between two syscalls, and the DMA seen since the last call. */
  check(): Violation[] {
    const out = this.pending;
    this.pending = [];
    this.ownership(out);
    this.kvmCoherency(out);
    for (const t of this.kernel.debug.tasks()) {
      if (t.lockedVm < 0)
        out.push({ invariant: "locked-memory", detail: `pid ${t.pid}: locked_vm ${t.lockedVm}` });
      else if (!t.ipcLock && t.lockedVm > t.memlockPages)
        out.push({
          invariant: "locked-memory",
          detail: `pid ${t.pid}: locked_vm ${t.lockedVm} pages, above its RLIMIT_MEMLOCK of ${t.memlockPages} without CAP_IPC_LOCK`,
        });
    }
    return out;
  }

  /** After every fd is closed and every task exited: nothing locked, nothing left over. */
  checkQuiescent(): Violation[] {
    const out = this.check();
    for (const t of this.kernel.debug.tasks()) {
      if (t.lockedVm !== 0)
        out.push({
          invariant: "locked-memory",
          detail: `pid ${t.pid}: locked_vm ${t.lockedVm} pages after everything was closed`,
        });
    }
    const now = this.kernel.debug.objects();
    for (const k of Object.keys(now) as (keyof ObjectCounts)[]) {
      if (now[k] !== this.baseline[k])
        out.push({
          invariant: "object-lifetime",
          detail: `${k}: ${now[k]} after everything was closed, ${this.baseline[k]} after boot`,
        });
    }
    return out;
  }

  /** A DMA transaction completed: every page that reached memory must be mapped for it. */
  dma(t: DmaTransaction): void {
    this.dmaTransactions++;
    if (t.unit === null) return; // untranslated: no IOMMU unit covers the requester
    const bus = t.fn.bus;
    // The bus number as config cycles route it: the bridge's secondary bus register.
    const number = bus.upstream ? bus.upstream.config.read(PCI_SECONDARY_BUS, 1) : bus.rootNumber;
    const bdf = `${hex(bus.domain, 4)}:${hex(number, 2)}:${hex(t.fn.devfn >> 3, 2)}.${t.fn.devfn & 7}`;
    for (const p of t.pages) {
      if (p.pa === null) continue;
      this.dmaPages++;
      const target = this.kernel.debug.dmaTarget(bdf, p.iova);
      if (!target || target.group === null) continue; // not a device the kernel groups
      const dir = t.write ? "write" : "read";
      if (target.phys === null) {
        this.pending.push({
          invariant: "dma-isolation",
          detail: `${bdf} DMA ${dir} of IOVA 0x${hex(p.iova)} reached PA 0x${hex(p.pa)}, but group ${target.group}'s ${target.domain} domain maps nothing there`,
        });
      } else if (target.phys !== BigInt(p.pa)) {
        this.pending.push({
          invariant: "dma-isolation",
          detail: `${bdf} DMA ${dir} of IOVA 0x${hex(p.iova)} reached PA 0x${hex(p.pa)}, but group ${target.group}'s ${target.domain} domain maps it to 0x${hex(target.phys)}`,
        });
      }
    }
  }

  private ownership(out: Violation[]): void {
    const bad = (id: number, what: string) =>
      out.push({ invariant: "group-ownership", detail: `group ${id}: ${what}` });
    for (const g of this.kernel.debug.ownership()) {
      const api = g.devices.filter((d) => d.dmaApi);
      if (g.listedBy.length > 1) bad(g.id, `listed by containers ${g.listedBy.join(", ")}`);
      if (g.container !== null && !g.listedBy.includes(g.container))
        bad(g.id, `in container ${g.container}, which does not list it`);
      if (g.container === null && g.listedBy.length)
        bad(g.id, `in no container, but listed by ${g.listedBy.join(", ")}`);
      if (g.container === null && g.containerUsers !== 0)
        bad(g.id, `${g.containerUsers} container users without a container`);
      if (g.owner === null) {
        if (g.ownerCnt !== api.length)
          bad(
            g.id,
            `owner_cnt ${g.ownerCnt} without a user owner, but ${api.length} member(s) bound to DMA-API drivers`,
          );
        if (g.domain !== "default" && g.domain !== "none")
          bad(g.id, `on its ${g.domain} domain with no owner`);
        if (g.container !== null) bad(g.id, `in container ${g.container} without owning its DMA`);
        continue;
      }
      if (api.length)
        bad(
          g.id,
          `user-owned while ${api.map((d) => `${d.name} (${d.driver})`).join(", ")} use the DMA API`,
        );
      if (g.owner === "other") continue; // another user (iommufd): its own checks
      if (g.ownerCnt !== 1) bad(g.id, `owned by its VFIO group with owner_cnt ${g.ownerCnt}`);
      if (g.container === null) bad(g.id, "owned by its VFIO group, which is in no container");
      if (g.domain === "default") bad(g.id, "user-owned but still on its default domain");
      if (g.domain === "user" && g.domainOfOwner === false)
        bad(g.id, "attached to a domain its owner's container does not hold");
    }
  }

  private kvmCoherency(out: Violation[]): void {
    const seen = new Set<number>();
    for (const vm of this.kernel.debug.kvmCoherency()) {
      seen.add(vm.id);
      const flagged = vm.devices.filter((d) => d.noncoherent).length;
      const expected = vm.archNoncoherentDma ? flagged + vm.allowed : 0;
      if (vm.registered !== expected)
        out.push({
          invariant: "kvm-coherency",
          detail: `VM ${vm.vm}: noncoherent DMA registered ${vm.registered} time(s), but ${flagged} kvm-vfio device(s) are non-coherent and ${vm.allowed} pair(s) allowed`,
        });
      const keys = JSON.stringify(vm.devices.map((d) => d.entries.map((e) => e.key)));
      const changed = this.lastEntries.get(vm.id) !== keys;
      this.lastEntries.set(vm.id, keys);
      if (!changed) continue;
      for (const d of vm.devices) {
        const want = d.entries.some((e) => !e.coherent);
        if (d.noncoherent !== want)
          out.push({
            invariant: "kvm-coherency",
            detail: `VM ${vm.vm}: kvm-vfio says ${d.noncoherent ? "non-coherent" : "coherent"}, but under profile ${vm.profile} its ${d.entries.length} entr${d.entries.length === 1 ? "y is" : "ies are"} ${want ? "not all coherent" : "all coherent"}`,
          });
      }
    }
    for (const k of this.lastEntries.keys()) if (!seen.has(k)) this.lastEntries.delete(k);
  }
}
