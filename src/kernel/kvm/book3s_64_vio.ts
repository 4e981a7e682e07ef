/**
 * Guest TCE tables and the virtual-mode TCE hypercalls, arch/powerpc/kvm/book3s_64_vio.c
 * (Linux 6.12).
 *
 * KVM_CREATE_SPAPR_TCE_64 makes a guest-visible TCE table for a LIOBN (the guest's name
 * for one DMA window: bus offset and size in IOMMU pages of `page_shift`): size 0, a page
 * shift outside 12..34 or an offset+size that overflows → EINVAL; its pages plus the
 * descriptor are charged to locked_vm (ENOMEM); a LIOBN already used in the VM → EBUSY.
 * The fd ("kvm-spapr-tce") can be mmapped: userspace reads (and QEMU, handling TCE
 * hypercalls itself, writes) the table there; its pages appear on first touch. The fd
 * holds a VM reference; closing it unlinks every hardware table and undoes the charge.
 *
 * kvm_spapr_tce_attach_iommu_group() (KVM_DEV_VFIO_GROUP_SET_SPAPR_TCE) links a guest
 * table to the hardware table of a VFIO group's PE whose window matches (hardware page
 * shift ≤ guest page shift, same bus offset, hardware window at least as large), so the
 * hypercalls can program the PHB directly: EBADF, EINVAL for a table fd of another VM or
 * no compatible window (the VFIO window must exist first), EFAULT for a group without a
 * table group; linking again only takes a reference.
 *
 * The hypercalls (kvmppc_h_put_tce, _put_tce_indirect, _stuff_tce, _get_tce): an unknown
 * LIOBN is H_TOO_HARD (userspace owns it, e.g. an emulated device or a v1 container); the
 * IOBA must be page aligned and inside the window (H_PARAMETER); each TCE is validated
 * first — a mapping TCE whose page is misaligned, outside guest RAM or, for a linked
 * hardware table, not in preregistered memory is H_TOO_HARD (v1 containers register no
 * memory, so their hypercalls always go to userspace); then one guest TCE becomes
 * 2^(guest shift − hardware shift) hardware TCEs in every linked table, and the guest
 * table is updated (pages allocated on first non-zero store). H_PUT_TCE_INDIRECT reads up
 * to 512 big-endian TCEs from a 4 KiB-aligned list in guest memory (H_PARAMETER beyond
 * that, H_TOO_HARD if the list cannot be read); H_STUFF_TCE may only clear (R or W set →
 * H_PARAMETER).
 */
import { err } from "../../uapi/errno.js";
import {
  H_PARAMETER,
  H_SUCCESS,
  H_TOO_HARD,
  TCE_PCI_READ,
  TCE_PCI_WRITE,
} from "../../uapi/papr.js";
import { O_CLOEXEC, O_RDWR } from "../../uapi/syscalls.js";
import { File, type FileOperations } from "../core/file.js";
import type { Mm } from "../core/mm.js";
import type { PageAllocator } from "../core/page_alloc.js";
import type { Task } from "../core/task.js";
import type { IommuGroup } from "../iommu/iommu.js";
import {
  DMA_NONE,
  IOMMU_TABLE_GROUP_MAX_TABLES,
  accountLockedVm,
  iommuGroupGetIommudata,
  iommuTceCheckGpa,
  iommuTceCheckIoba,
  iommuTceDirection,
  iommuTceKill,
  iommuTceTableGet,
  iommuTceTablePut,
  iommuTceXchgNoKill,
  unaccountLockedVm,
  userspaceEntry,
  type IommuTable,
} from "../powerpc/iommu.js";
import {
  mmIommuLookup,
  mmIommuMappedDec,
  mmIommuMappedInc,
  mmIommuUaToHpa,
} from "../powerpc/iommu_api.js";
import type { Kvm } from "./kvm_main.js";

/** struct kvmppc_spapr_tce_iommu_table */
export interface StIt {
  tbl: IommuTable;
  refs: number;
}

/** struct kvmppc_spapr_tce_table */
export class SpaprTceTable {
  /** Page frames of the guest-visible table, null until first needed. */
  readonly pages: (number | null)[];
  readonly iommuTables: StIt[] = [];
  constructor(
    readonly kvm: Kvm,
    readonly liobn: bigint,
    readonly pageShift: number,
    readonly offset: bigint,
    readonly size: bigint,
    npages: number,
  ) {
    this.pages = new Array<number | null>(npages).fill(null);
  }
}

/** The POWER half of a VM (kvm->arch of book3s): its TCE tables, by LIOBN. */
export interface PpcVmState {
  tables: SpaprTceTable[];
}

export class Book3sVio {
  private readonly vms = new WeakMap<Kvm, PpcVmState>();
  readonly fops: FileOperations<SpaprTceTable>;

  constructor(private readonly pages: PageAllocator) {
    this.fops = this.makeFops();
  }

  vm(kvm: Kvm): PpcVmState {
    let s = this.vms.get(kvm);
    if (!s) {
      s = { tables: [] };
      this.vms.set(kvm, s);
    }
    return s;
  }

  /** TCES_PER_PAGE */
  get tcesPerPage(): number {
    return this.pages.pageSize / 8;
  }

  /** kvmppc_tce_pages() */
  tcePages(iommuPages: bigint): number {
    return Number(
      (iommuPages * 8n + BigInt(this.pages.pageSize) - 1n) / BigInt(this.pages.pageSize),
    );
  }

  /** kvmppc_stt_pages(): the table pages plus the descriptor with its page-pointer array. */
  sttPages(tcePages: number): number {
    const bytes = 96 + tcePages * 8;
    return tcePages + Math.ceil(bytes / this.pages.pageSize);
  }

  findTable(kvm: Kvm, liobn: bigint): SpaprTceTable | null {
    return this.vm(kvm).tables.find((t) => t.liobn === liobn) ?? null;
  }

  /** kvm_vm_ioctl_create_spapr_tce() */
  create(
    kvm: Kvm,
    task: Task,
    a: { liobn: bigint; page_shift: number; offset: bigint; size: bigint },
  ): number {
    if (
      !a.size ||
      a.page_shift < 12 ||
      a.page_shift > 34 ||
      a.offset + a.size > ((1n << 64n) - 1n) >> BigInt(a.page_shift)
    )
      return err("EINVAL");
    const npages = this.tcePages(a.size);
    const charge = this.sttPages(npages);
    let r = accountLockedVm(task, charge, true);
    if (r) return r;
    const stt = new SpaprTceTable(kvm, a.liobn, a.page_shift, a.offset, a.size, npages);
    const vm = this.vm(kvm);
    r = vm.tables.some((t) => t.liobn === a.liobn) ? err("EBUSY") : 0;
    kvm.get();
    if (!r) r = task.files.install(new File(this.fops, stt, O_RDWR | O_CLOEXEC));
    if (r >= 0) vm.tables.push(stt);
    else kvm.put();
    if (r < 0) unaccountLockedVm(task.mm, charge);
    return r;
  }

  /** kvm_spapr_get_tce_page() */
  private tcePage(stt: SpaprTceTable, i: number): number | null {
    let pfn = stt.pages[i] ?? null;
    if (pfn === null) {
      pfn = this.pages.alloc();
      if (pfn !== null) stt.pages[i] = pfn;
    }
    return pfn;
  }

  private makeFops(): FileOperations<SpaprTceTable> {
    return {
      name: "anon_inode:kvm-spapr-tce",
      /** kvm_spapr_tce_mmap() with kvm_spapr_tce_fault() */
      mmap: (file) => ({
        fault: (pgoff) => {
          const stt = file.priv;
          if (pgoff >= this.tcePages(stt.size)) return null; // VM_FAULT_SIGBUS
          const pfn = this.tcePage(stt, pgoff);
          if (pfn !== null) this.pages.get(pfn);
          return pfn;
        },
      }),
      /** kvm_spapr_tce_release() */
      release: (file) => {
        const stt = file.priv;
        const vm = this.vm(stt.kvm);
        vm.tables.splice(vm.tables.indexOf(stt), 1);
        for (const stit of stt.iommuTables.splice(0)) iommuTceTablePut(stit.tbl);
        unaccountLockedVm(stt.kvm.mm, this.sttPages(this.tcePages(stt.size)));
        for (const pfn of stt.pages) if (pfn !== null) this.pages.put(pfn);
        stt.kvm.put();
      },
    };
  }

  /** kvm_spapr_tce_attach_iommu_group() */
  attachIommuGroup(kvm: Kvm, task: Task, tablefd: number, group: IommuGroup): number {
    const f = task.files.get(tablefd);
    if (!f) return err("EBADF");
    const stt = this.vm(kvm).tables.find((t) => t === f.priv && f.ops === this.fops) ?? null;
    if (!stt) return err("EINVAL");
    const tg = iommuGroupGetIommudata(group);
    if (!tg) return err("EFAULT");
    let tbl: IommuTable | null = null;
    for (let i = 0; i < IOMMU_TABLE_GROUP_MAX_TABLES; i++) {
      const t = tg.tables[i];
      if (!t) continue;
      if (
        t.pageShift <= stt.pageShift &&
        BigInt(t.offset) << BigInt(t.pageShift) === stt.offset << BigInt(stt.pageShift) &&
        BigInt(t.size) << BigInt(t.pageShift) >= stt.size << BigInt(stt.pageShift)
      ) {
        tbl = iommuTceTableGet(t);
        break;
      }
    }
    if (!tbl) return err("EINVAL");
    const known = stt.iommuTables.find((s) => s.tbl === tbl);
    if (known) {
      iommuTceTablePut(tbl);
      known.refs++;
      return 0;
    }
    stt.iommuTables.unshift({ tbl, refs: 1 });
    return 0;
  }

  /** kvm_spapr_tce_release_iommu_group(): every link to the group's hardware tables goes. */
  releaseIommuGroup(kvm: Kvm, group: IommuGroup): void {
    const tg = iommuGroupGetIommudata(group);
    if (!tg) return;
    for (const stt of this.vm(kvm).tables) {
      for (const stit of [...stt.iommuTables]) {
        for (let i = 0; i < IOMMU_TABLE_GROUP_MAX_TABLES; i++) {
          if (tg.tables[i] !== stit.tbl) continue;
          if (--stit.refs === 0) {
            stt.iommuTables.splice(stt.iommuTables.indexOf(stit), 1);
            iommuTceTablePut(stit.tbl);
          }
        }
      }
    }
  }

  /** kvmppc_ioba_validate() */
  iobaValidate(stt: SpaprTceTable, ioba: bigint, npages: number): number {
    return iommuTceCheckIoba(stt.pageShift, Number(stt.offset), Number(stt.size), ioba, npages)
      ? H_PARAMETER
      : H_SUCCESS;
  }

  /** kvmppc_tce_to_ua(): the VM creator's address behind a guest physical address. */
  tceToUa(kvm: Kvm, tce: bigint): bigint | null {
    const gpa = tce & ~BigInt(TCE_PCI_READ | TCE_PCI_WRITE);
    const slot = kvm.memslotOf(Number(gpa >> 12n));
    if (!slot) return null;
    return slot.userspaceAddr + (gpa - (BigInt(slot.baseGfn) << 12n));
  }

  /** kvmppc_tce_validate() (virtual mode) */
  tceValidate(stt: SpaprTceTable, tce: bigint): number {
    const gpa = tce & ~BigInt(TCE_PCI_READ | TCE_PCI_WRITE);
    if (iommuTceDirection(tce) === DMA_NONE) return H_SUCCESS;
    if (iommuTceCheckGpa(stt.pageShift, gpa)) return H_TOO_HARD;
    const ua = this.tceToUa(stt.kvm, tce);
    if (ua === null) return H_TOO_HARD;
    for (const stit of stt.iommuTables) {
      const shift = stit.tbl.pageShift;
      const mem = mmIommuLookup(stt.kvm.mm, ua, 1n << BigInt(shift));
      if (!mem || typeof mmIommuUaToHpa(stt.kvm.mm, mem, ua, shift) === "number") return H_TOO_HARD;
    }
    return H_SUCCESS;
  }

  /** kvmppc_tce_put(): the guest-visible entry (pages allocated only for non-zero TCEs). */
  tcePut(stt: SpaprTceTable, entry: bigint, tce: bigint, mayAlloc = true): void {
    const idx = Number(entry - stt.offset);
    const i = Math.floor(idx / this.tcesPerPage);
    let pfn = stt.pages[i] ?? null;
    if (pfn === null) {
      if (!tce || !mayAlloc) return;
      pfn = this.tcePage(stt, i);
      if (pfn === null) return;
    }
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, tce, true);
    this.pages.ram.write(pfn * this.pages.pageSize + (idx % this.tcesPerPage) * 8, b);
  }

  /** The guest-visible entry (H_GET_TCE's r4; 0 on a never-allocated page). */
  tceGet(stt: SpaprTceTable, entry: bigint): bigint {
    const idx = Number(entry - stt.offset);
    const pfn = stt.pages[Math.floor(idx / this.tcesPerPage)] ?? null;
    if (pfn === null) return 0n;
    const b = this.pages.ram.read(pfn * this.pages.pageSize + (idx % this.tcesPerPage) * 8, 8);
    return new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
  }

  /** kvmppc_clear_tce() */
  clearTce(stt: SpaprTceTable, tbl: IommuTable, entry: bigint): void {
    const sub = 1 << (stt.pageShift - tbl.pageShift);
    const io0 = Number(entry) * sub;
    for (let i = 0; i < sub; i++) iommuTceXchgNoKill(tbl, io0 + i, { hpa: 0n, dir: DMA_NONE });
  }

  /** kvmppc_tce_iommu_mapped_dec() */
  private mappedDec(mm: Mm, tbl: IommuTable, entry: number): number {
    const pua = userspaceEntry(tbl, entry, false);
    if (!pua) return H_SUCCESS;
    const mem = mmIommuLookup(mm, pua.get(), 1n << BigInt(tbl.pageShift));
    if (!mem) return H_TOO_HARD;
    mmIommuMappedDec(mem);
    pua.set(0n);
    return H_SUCCESS;
  }

  /** kvmppc_tce_iommu_unmap() (with _do_unmap per IOMMU page) */
  iommuUnmap(kvm: Kvm, stt: SpaprTceTable, tbl: IommuTable, entry: bigint): number {
    const sub = 1 << (stt.pageShift - tbl.pageShift);
    const io0 = Number(entry) * sub;
    let ret = H_SUCCESS;
    for (let i = 0; i < sub; i++) {
      const io = { hpa: 0n, dir: DMA_NONE };
      if (iommuTceXchgNoKill(tbl, io0 + i, io)) {
        ret = H_TOO_HARD;
        break;
      }
      if (io.dir === DMA_NONE) continue;
      ret = this.mappedDec(kvm.mm, tbl, io0 + i);
      if (ret !== H_SUCCESS) {
        iommuTceXchgNoKill(tbl, io0 + i, io);
        break;
      }
    }
    iommuTceKill(tbl, io0, sub);
    return ret;
  }

  /** kvmppc_tce_iommu_map() (with _do_map per IOMMU page) */
  iommuMap(
    kvm: Kvm,
    stt: SpaprTceTable,
    tbl: IommuTable,
    entry: bigint,
    ua: bigint,
    dir: number,
  ): number {
    const sub = 1 << (stt.pageShift - tbl.pageShift);
    const io0 = Number(entry) * sub;
    const psz = 1n << BigInt(tbl.pageShift);
    let ret = H_SUCCESS;
    for (let i = 0; i < sub; i++) {
      const e = io0 + i;
      const u = ua + BigInt(i) * psz;
      const pua = userspaceEntry(tbl, e, true);
      if (!pua) {
        ret = H_TOO_HARD;
        break;
      }
      const mem = mmIommuLookup(kvm.mm, u, psz);
      if (!mem) {
        ret = H_TOO_HARD;
        break;
      }
      const hpa = mmIommuUaToHpa(kvm.mm, mem, u, tbl.pageShift);
      if (typeof hpa === "number" || mmIommuMappedInc(mem)) {
        ret = H_TOO_HARD;
        break;
      }
      const io = { hpa: hpa & ~(psz - 1n), dir };
      if (iommuTceXchgNoKill(tbl, e, io)) {
        mmIommuMappedDec(mem);
        ret = H_TOO_HARD;
        break;
      }
      if (io.dir !== DMA_NONE) this.mappedDec(kvm.mm, tbl, e);
      pua.set(u);
    }
    iommuTceKill(tbl, io0, sub);
    return ret;
  }

  /** kvmppc_h_put_tce() */
  hPutTce(kvm: Kvm, liobn: bigint, ioba: bigint, tce: bigint): number {
    const stt = this.findTable(kvm, liobn);
    if (!stt) return H_TOO_HARD;
    let ret = this.iobaValidate(stt, ioba, 1);
    if (ret !== H_SUCCESS) return ret;
    ret = this.tceValidate(stt, tce);
    if (ret !== H_SUCCESS) return ret;
    const dir = iommuTceDirection(tce);
    let ua = 0n;
    if (dir !== DMA_NONE) {
      const u = this.tceToUa(kvm, tce);
      if (u === null) return H_PARAMETER;
      ua = u;
    }
    const entry = ioba >> BigInt(stt.pageShift);
    for (const stit of stt.iommuTables) {
      ret =
        dir === DMA_NONE
          ? this.iommuUnmap(kvm, stt, stit.tbl, entry)
          : this.iommuMap(kvm, stt, stit.tbl, entry, ua, dir);
      if (ret !== H_SUCCESS) {
        this.clearTce(stt, stit.tbl, entry);
        return ret;
      }
    }
    this.tcePut(stt, entry, tce);
    return ret;
  }

  /** Read a big-endian TCE list of `n` entries from guest memory at `ua` (get_user). */
  readList(mm: Mm, ua: bigint, n: number): bigint[] | null {
    const raw = mm.copyFromUser(ua, n * 8);
    if (!raw) return null;
    const dv = new DataView(raw.buffer, raw.byteOffset, raw.length);
    return Array.from({ length: n }, (_, i) => dv.getBigUint64(i * 8, false));
  }

  /** kvmppc_h_put_tce_indirect() */
  hPutTceIndirect(kvm: Kvm, liobn: bigint, ioba: bigint, tceList: bigint, npages: bigint): number {
    const stt = this.findTable(kvm, liobn);
    if (!stt) return H_TOO_HARD;
    const entry = ioba >> BigInt(stt.pageShift);
    if (npages > 512n) return H_PARAMETER;
    if (tceList & 0xfffn) return H_PARAMETER;
    let ret = this.iobaValidate(stt, ioba, Number(npages));
    if (ret !== H_SUCCESS) return ret;
    const listUa = this.tceToUa(kvm, tceList);
    if (listUa === null) return H_TOO_HARD;
    const n = Number(npages);
    const tces = this.readList(kvm.mm, listUa, n);
    if (!tces) return H_TOO_HARD;
    for (const tce of tces) {
      ret = this.tceValidate(stt, tce);
      if (ret !== H_SUCCESS) return ret;
    }
    for (let i = 0; i < n; i++) {
      const tce = tces[i] as bigint;
      const ua = this.tceToUa(kvm, tce);
      if (ua === null) return H_PARAMETER;
      for (const stit of stt.iommuTables) {
        ret = this.iommuMap(kvm, stt, stit.tbl, entry + BigInt(i), ua, iommuTceDirection(tce));
        if (ret !== H_SUCCESS) {
          this.clearTce(stt, stit.tbl, entry + BigInt(i));
          return ret;
        }
      }
      this.tcePut(stt, entry + BigInt(i), tce);
    }
    return ret;
  }

  /** kvmppc_h_stuff_tce() */
  hStuffTce(kvm: Kvm, liobn: bigint, ioba: bigint, tceValue: bigint, npages: bigint): number {
    const stt = this.findTable(kvm, liobn);
    if (!stt) return H_TOO_HARD;
    let ret = this.iobaValidate(stt, ioba, Number(npages));
    if (ret !== H_SUCCESS) return ret;
    if (tceValue & BigInt(TCE_PCI_WRITE | TCE_PCI_READ)) return H_PARAMETER;
    for (const stit of stt.iommuTables) {
      const entry = ioba >> BigInt(stt.pageShift);
      for (let i = 0n; i < npages; i++) {
        ret = this.iommuUnmap(kvm, stt, stit.tbl, entry + i);
        if (ret === H_SUCCESS) continue;
        if (ret === H_TOO_HARD) return ret;
        this.clearTce(stt, stit.tbl, entry + i);
      }
    }
    for (let i = 0n; i < npages; i++, ioba += 1n << BigInt(stt.pageShift))
      this.tcePut(stt, ioba >> BigInt(stt.pageShift), tceValue);
    return ret;
  }

  /** kvmppc_h_get_tce(): [ret, r4] */
  hGetTce(kvm: Kvm, liobn: bigint, ioba: bigint): [number, bigint] {
    const stt = this.findTable(kvm, liobn);
    if (!stt) return [H_TOO_HARD, 0n];
    const ret = this.iobaValidate(stt, ioba, 1);
    if (ret !== H_SUCCESS) return [ret, 0n];
    return [H_SUCCESS, this.tceGet(stt, ioba >> BigInt(stt.pageShift))];
  }
}
