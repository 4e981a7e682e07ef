/**
 * The real-mode TCE hypercall handlers, arch/powerpc/kvm/book3s_64_vio_hv.c as of Linux
 * 5.18 — the last version: commit cad32d9d42e8 "KVM: PPC: Book3s: Retire H_PUT_TCE/etc
 * real mode handlers" removed the file in 5.19, so Linux 6.12 has no real mode and this
 * module runs only under the "5.18" era (book3s_hv.ts).
 *
 * Real mode is the guest-exit path with the MMU off: it cannot sleep, allocate, or touch
 * vmalloc'ed or unpinned memory, so each handler does what it can and answers H_TOO_HARD
 * for the rest, which sends the hypercall on to virtual mode (book3s_64_vio.ts):
 * - the guest table's pages must already exist for the entries written
 *   (kvmppc_rm_ioba_validate; clearing is allowed without them);
 * - a misaligned mapping TCE is H_PARAMETER here (virtual mode says H_TOO_HARD);
 * - the TCE list of H_PUT_TCE_INDIRECT must be in preregistered memory, or be a present
 *   host page (the Linux page-table walk under the MMU lock, kvmppc_rm_ua_to_hpa);
 * - hardware tables are updated only through preregistered memory (mm_iommu_lookup_rm).
 */
import {
  H_PARAMETER,
  H_SUCCESS,
  H_TOO_HARD,
  TCE_PCI_READ,
  TCE_PCI_WRITE,
} from "../../uapi/papr.js";
import { DMA_NONE, iommuTceCheckGpa, iommuTceDirection } from "../powerpc/iommu.js";
import { mmIommuLookup, mmIommuPreregistered, mmIommuUaToHpa } from "../powerpc/iommu_api.js";
import type { Book3sVio, SpaprTceTable } from "./book3s_64_vio.js";
import type { Kvm } from "./kvm_main.js";

export class Book3sVioRm {
  constructor(private readonly v: Book3sVio) {}

  /** kvmppc_rm_ioba_validate() */
  private iobaValidate(
    stt: SpaprTceTable,
    ioba: bigint,
    npages: number,
    clearing: boolean,
  ): number {
    const ret = this.v.iobaValidate(stt, ioba, npages);
    if (ret) return ret;
    if (clearing) return H_SUCCESS;
    const per = this.v.tcesPerPage;
    const idx = Number((ioba >> BigInt(stt.pageShift)) - stt.offset);
    const first = Math.floor(idx / per);
    const count = Math.ceil(((idx % per) + npages) / per);
    for (let i = first; i < first + count; i++)
      if ((stt.pages[i] ?? null) === null) return H_TOO_HARD;
    return H_SUCCESS;
  }

  /** kvmppc_rm_tce_validate() */
  private tceValidate(stt: SpaprTceTable, tce: bigint): number {
    const gpa = tce & ~BigInt(TCE_PCI_READ | TCE_PCI_WRITE);
    if (iommuTceDirection(tce) === DMA_NONE) return H_SUCCESS;
    if (iommuTceCheckGpa(stt.pageShift, gpa)) return H_PARAMETER;
    const ua = this.v.tceToUa(stt.kvm, tce);
    if (ua === null) return H_TOO_HARD;
    for (const stit of stt.iommuTables) {
      const shift = stit.tbl.pageShift;
      const mem = mmIommuLookup(stt.kvm.mm, ua, 1n << BigInt(shift));
      if (!mem || typeof mmIommuUaToHpa(stt.kvm.mm, mem, ua, shift) === "number") return H_TOO_HARD;
    }
    return H_SUCCESS;
  }

  /** kvmppc_rm_h_put_tce() */
  hPutTce(kvm: Kvm, liobn: bigint, ioba: bigint, tce: bigint): number {
    const stt = this.v.findTable(kvm, liobn);
    if (!stt) return H_TOO_HARD;
    let ret = this.iobaValidate(stt, ioba, 1, tce === 0n);
    if (ret !== H_SUCCESS) return ret;
    ret = this.tceValidate(stt, tce);
    if (ret !== H_SUCCESS) return ret;
    const dir = iommuTceDirection(tce);
    let ua = 0n;
    if (dir !== DMA_NONE) {
      const u = this.v.tceToUa(kvm, tce);
      if (u === null) return H_PARAMETER;
      ua = u;
    }
    const entry = ioba >> BigInt(stt.pageShift);
    for (const stit of stt.iommuTables) {
      ret =
        dir === DMA_NONE
          ? this.v.iommuUnmap(kvm, stt, stit.tbl, entry)
          : this.v.iommuMap(kvm, stt, stit.tbl, entry, ua, dir);
      if (ret !== H_SUCCESS) {
        this.v.clearTce(stt, stit.tbl, entry);
        return ret;
      }
    }
    this.v.tcePut(stt, entry, tce, false);
    return H_SUCCESS;
  }

  /** kvmppc_rm_h_put_tce_indirect() */
  hPutTceIndirect(kvm: Kvm, liobn: bigint, ioba: bigint, tceList: bigint, npages: bigint): number {
    const stt = this.v.findTable(kvm, liobn);
    if (!stt) return H_TOO_HARD;
    const entry = ioba >> BigInt(stt.pageShift);
    if (npages > 512n) return H_PARAMETER;
    if (tceList & 0xfffn) return H_PARAMETER;
    const n = Number(npages);
    let ret = this.iobaValidate(stt, ioba, n, false);
    if (ret !== H_SUCCESS) return ret;
    const listUa = this.v.tceToUa(kvm, tceList);
    if (listUa === null) return H_TOO_HARD;
    let prereg = false;
    if (mmIommuPreregistered(kvm.mm)) {
      const mem = mmIommuLookup(kvm.mm, listUa, 4096n);
      prereg = !!mem && typeof mmIommuUaToHpa(kvm.mm, mem, listUa, 12) !== "number";
    }
    // Not preregistered: the list's host page must be present (no faulting in real mode).
    if (!prereg && kvm.mm.present(listUa) === null) return H_TOO_HARD;
    const tces = this.v.readList(kvm.mm, listUa, n);
    if (!tces) return H_TOO_HARD;
    for (const tce of tces) {
      ret = this.tceValidate(stt, tce);
      if (ret !== H_SUCCESS) return ret;
    }
    for (let i = 0; i < n; i++) {
      const tce = tces[i] as bigint;
      const ua = this.v.tceToUa(kvm, tce);
      if (ua === null) return H_PARAMETER;
      for (const stit of stt.iommuTables) {
        ret = this.v.iommuMap(kvm, stt, stit.tbl, entry + BigInt(i), ua, iommuTceDirection(tce));
        if (ret !== H_SUCCESS) {
          this.v.clearTce(stt, stit.tbl, entry + BigInt(i));
          return ret;
        }
      }
      this.v.tcePut(stt, entry + BigInt(i), tce, false);
    }
    return ret;
  }

  /** kvmppc_rm_h_stuff_tce() */
  hStuffTce(kvm: Kvm, liobn: bigint, ioba: bigint, tceValue: bigint, npages: bigint): number {
    const stt = this.v.findTable(kvm, liobn);
    if (!stt) return H_TOO_HARD;
    let ret = this.iobaValidate(stt, ioba, Number(npages), tceValue === 0n);
    if (ret !== H_SUCCESS) return ret;
    if (tceValue & BigInt(TCE_PCI_WRITE | TCE_PCI_READ)) return H_PARAMETER;
    for (const stit of stt.iommuTables) {
      const entry = ioba >> BigInt(stt.pageShift);
      for (let i = 0n; i < npages; i++) {
        ret = this.v.iommuUnmap(kvm, stt, stit.tbl, entry + i);
        if (ret === H_SUCCESS) continue;
        if (ret === H_TOO_HARD) return ret;
        this.v.clearTce(stt, stit.tbl, entry + i);
      }
    }
    for (let i = 0n; i < npages; i++, ioba += 1n << BigInt(stt.pageShift))
      this.v.tcePut(stt, ioba >> BigInt(stt.pageShift), tceValue, false);
    return ret;
  }
}
