/**
 * The iommufd selftest's mock platform, drivers/iommu/iommufd/selftest.c (Linux 6.12): a
 * mock IOMMU driver whose devices sit alone in their groups and whose paging domains have
 * the aperture [MOCK_APERTURE_START, MOCK_APERTURE_LAST] = [16 MiB, 2 GiB - 1], an IO page
 * of MOCK_IO_PAGE_SIZE = PAGE_SIZE / 2 (plus MOCK_HUGE_PAGE_SIZE with the HUGE_IOVA device
 * flag), no reserved regions, dirty tracking unless the NO_DIRTY device flag, and nested
 * domains (IOMMU_HWPT_DATA_SELFTEST) with a four-entry mock IOTLB; and the mock access, an
 * in-kernel access (access.ts) owned by an anonymous file, whose pins are items the unmap
 * callback drops.
 *
 * The kernel reaches it through IOMMU_TEST_CMD (iommufdTest below), which only
 * CONFIG_IOMMUFD_TEST kernels have (the oracle's kernels do not: there the request is
 * ENOTTY). Every op of iommufd_test.h is here but TRIGGER_IOPF (the model delivers no I/O
 * page faults): EOPNOTSUPP, as an unknown op. SET_TEMP_MEMORY_LIMIT only checks its
 * argument: the limit sizes the kernel's PFN batches, which the model does not have. The
 * operations are also plain functions on a context (mockDomain, mdCheckMap, ...).
 */
import type { IommuUnitDesc } from "../../machine/hw.js";
import type { FieldType, StructCodec } from "../../uapi/struct.js";
import { err } from "../../uapi/errno.js";
import * as U from "../../uapi/iommufd.js";
import type { Task } from "../core/task.js";
import {
  IOMMU_DOMAIN_BLOCKED,
  IOMMU_DOMAIN_UNMANAGED,
  type IommuDirtyOps,
  type IommuDomain,
  type IommuDomainOps,
  type IommuOps,
  type IommuUserData,
} from "../iommu/domain.js";
import { IommuGroup } from "../iommu/iommu.js";
import type { PciDev } from "../pci/pci.js";
import {
  iommufdDeviceAttach,
  iommufdDeviceBind,
  iommufdDeviceDetach,
  iommufdDeviceReplace,
  iommufdDeviceUnbind,
  type IommufdDev,
  type IommufdDevice,
} from "./device.js";
import { iommufdGetIoas } from "./ioas.js";
import type { IommufdCtx, IommufdObject, Ucmd } from "./main.js";
import { PAGE, ULONG_MAX } from "./pages.js";
import {
  IommufdAccess,
  iommufdAccessAttach,
  iommufdAccessCreate,
  iommufdAccessDestroy,
  iommufdAccessPinPages,
  iommufdAccessReplace,
  iommufdAccessRw,
  iommufdAccessUnpinPages,
} from "./access.js";
import { File, type FileOperations } from "../core/file.js";
import { O_RDWR } from "../../uapi/syscalls.js";

export const MOCK_APERTURE_START = 1n << 24n;
export const MOCK_APERTURE_LAST = (1n << 31n) - 1n;
export const MOCK_IO_PAGE_SIZE = PAGE / 2n;
export const MOCK_HUGE_PAGE_SIZE = 512n * MOCK_IO_PAGE_SIZE;
/** enum { MOCK_FLAGS_DEVICE_NO_DIRTY = 1 << 0, MOCK_FLAGS_DEVICE_HUGE_IOVA = 1 << 1 } */
export const MOCK_FLAGS_DEVICE_NO_DIRTY = 1 << 0;
export const MOCK_FLAGS_DEVICE_HUGE_IOVA = 1 << 1;
export const IOMMU_HW_INFO_TYPE_SELFTEST = 0xfeedbeef;
export const IOMMU_HW_INFO_SELFTEST_REGVAL = 0xdeadbeef;
export const IOMMU_HWPT_DATA_SELFTEST = 0xdead;
export const IOMMU_TEST_IOTLB_DEFAULT = 0xbadbeef;
export const IOMMU_HWPT_INVALIDATE_DATA_SELFTEST = 0xdeadbeef;
export const IOMMU_TEST_INVALIDATE_FLAG_ALL = 1 << 0;
const MOCK_NESTED_DOMAIN_IOTLB_NUM = 4;
/** IOMMU_DOMAIN_NESTED = __IOMMU_DOMAIN_NESTED (include/linux/iommu.h) */
const IOMMU_DOMAIN_NESTED = 1 << 6;

interface MockDev {
  flags: number;
  name: string;
}

/** One IO page of a mock domain: where it points and whether the device dirtied it. */
interface MockPte {
  paddr: bigint;
  dirty: boolean;
}

export interface MockDomain extends IommuDomain {
  readonly pfns: Map<bigint, MockPte>;
  dirtyTracking: boolean;
}

export interface MockNestedDomain extends IommuDomain {
  readonly parent: MockDomain;
  readonly iotlb: number[];
}

/** Domains mock_ops allocated (get_md_pagetable()'s ops check). */
const mockPaging = new WeakSet<IommuDomain>();
const mockNested = new WeakSet<IommuDomain>();

let nextMockGroup = 1 << 20;
let nextMockDev = 0;

/** The mock IOMMU driver (mock_ops) and its devices (the mock bus). */
export class MockIommu {
  private readonly devs = new Map<PciDev, MockDev>();
  readonly ops: IommuOps;
  private readonly domainOps: IommuDomainOps;
  private readonly nestedOps: IommuDomainOps;
  private readonly dirtyOps: IommuDirtyOps;
  readonly blocking: IommuDomain;

  constructor() {
    const nopAttach = (d: IommuDomain, dev: PciDev) =>
      d.dirtyOps && (this.devs.get(dev)?.flags ?? 0) & MOCK_FLAGS_DEVICE_NO_DIRTY
        ? err("EINVAL")
        : 0;
    this.blocking = {
      type: IOMMU_DOMAIN_BLOCKED,
      ops: { attachDev: nopAttach },
      owner: null,
      pgsizeBitmap: 0n,
      geometry: { apertureStart: 0n, apertureEnd: 0n, forceAperture: false },
    };
    this.domainOps = {
      attachDev: nopAttach,
      mapPages: (d, iova, paddr, pgsize, pgcount, _prot, mapped) => {
        const m = d as MockDomain;
        for (let i = 0n; i < pgcount; i++)
          for (let cur = 0n; cur < pgsize; cur += MOCK_IO_PAGE_SIZE) {
            const at = iova + i * pgsize + cur;
            m.pfns.set(at / MOCK_IO_PAGE_SIZE, { paddr: paddr + i * pgsize + cur, dirty: false });
            mapped.n += MOCK_IO_PAGE_SIZE;
          }
        return 0;
      },
      unmapPages: (d, iova, pgsize, pgcount) => {
        const m = d as MockDomain;
        const size = pgsize * pgcount;
        for (let cur = 0n; cur < size; cur += MOCK_IO_PAGE_SIZE)
          m.pfns.delete((iova + cur) / MOCK_IO_PAGE_SIZE);
        return size;
      },
      iovaToPhys: (d, iova) => (d as MockDomain).pfns.get(iova / MOCK_IO_PAGE_SIZE)?.paddr ?? 0n,
      free: () => undefined,
    };
    this.nestedOps = {
      attachDev: nopAttach,
      free: () => undefined,
      cacheInvalidateUser: (d, type, entries) =>
        this.cacheInvalidate(d as MockNestedDomain, type, entries),
    };
    this.dirtyOps = {
      setDirtyTracking: (d, enable) => {
        (d as MockDomain).dirtyTracking = enable;
        return 0;
      },
      readAndClearDirty: (d, iova, size, noClear, record) => {
        const m = d as MockDomain;
        if (!m.dirtyTracking) return 0;
        for (let a = iova; a < iova + size; a += MOCK_IO_PAGE_SIZE) {
          const pte = m.pfns.get(a / MOCK_IO_PAGE_SIZE);
          if (!pte?.dirty) continue;
          record(a, MOCK_IO_PAGE_SIZE);
          if (!noClear) pte.dirty = false;
        }
        return 0;
      },
    };
    this.ops = {
      name: "iommufd-mock",
      capable: (dev, cap) =>
        cap === "cache-coherency" ||
        (cap === "dirty-tracking" &&
          !((this.devs.get(dev)?.flags ?? 0) & MOCK_FLAGS_DEVICE_NO_DIRTY)),
      domainAlloc: () => null,
      blockedDomain: this.blocking,
      identityDomain: null,
      probeDevice: () => undefined,
      defDomainType: () => 0,
      getResvRegions: () => [],
      pgsizeBitmap: MOCK_IO_PAGE_SIZE,
      isolatedMsi: () => true,
      domainAllocUser: (dev, flags, parent, data) => this.domainAllocUser(dev, flags, parent, data),
      hwInfo: () => {
        const data = new Uint8Array(8);
        new DataView(data.buffer).setUint32(4, IOMMU_HW_INFO_SELFTEST_REGVAL, true);
        return { type: IOMMU_HW_INFO_TYPE_SELFTEST, data };
      },
    };
  }

  /** mock_domain_alloc_user() */
  private domainAllocUser(
    dev: PciDev,
    flags: number,
    parent: IommuDomain | null,
    data: IommuUserData | null,
  ): IommuDomain | number {
    if (!parent) {
      const dirty = (flags & U.IOMMU_HWPT_ALLOC_DIRTY_TRACKING) !== 0;
      const mdev = this.devs.get(dev);
      const noDirty = ((mdev?.flags ?? 0) & MOCK_FLAGS_DEVICE_NO_DIRTY) !== 0;
      if (flags & ~(U.IOMMU_HWPT_ALLOC_NEST_PARENT | U.IOMMU_HWPT_ALLOC_DIRTY_TRACKING))
        return err("EOPNOTSUPP");
      if (data || (dirty && noDirty)) return err("EOPNOTSUPP");
      const d: MockDomain = {
        type: IOMMU_DOMAIN_UNMANAGED,
        ops: this.domainOps,
        owner: this.ops,
        pgsizeBitmap:
          MOCK_IO_PAGE_SIZE |
          ((mdev?.flags ?? 0) & MOCK_FLAGS_DEVICE_HUGE_IOVA ? MOCK_HUGE_PAGE_SIZE : 0n),
        geometry: {
          apertureStart: MOCK_APERTURE_START,
          apertureEnd: MOCK_APERTURE_LAST,
          forceAperture: false,
        },
        pfns: new Map(),
        dirtyTracking: false,
      };
      if (dirty) d.dirtyOps = this.dirtyOps;
      mockPaging.add(d);
      return d;
    }
    if (!data || data.type !== IOMMU_HWPT_DATA_SELFTEST || flags) return err("EOPNOTSUPP");
    if (parent.ops !== this.domainOps) return err("EINVAL");
    // iommu_copy_struct_from_user(&user_cfg, user_data, IOMMU_HWPT_DATA_SELFTEST, iotlb)
    if (data.len < 4) return err("EINVAL");
    if (!data.bytes) return err("EFAULT");
    const iotlb = new DataView(data.bytes.buffer, data.bytes.byteOffset).getUint32(0, true);
    const n: MockNestedDomain = {
      type: IOMMU_DOMAIN_NESTED,
      ops: this.nestedOps,
      owner: this.ops,
      pgsizeBitmap: 0n,
      geometry: { apertureStart: 0n, apertureEnd: 0n, forceAperture: false },
      parent: parent as MockDomain,
      iotlb: new Array<number>(MOCK_NESTED_DOMAIN_IOTLB_NUM).fill(iotlb),
    };
    mockNested.add(n);
    return n;
  }

  /** mock_domain_cache_invalidate_user(): struct iommu_hwpt_invalidate_selftest entries. */
  private cacheInvalidate(
    d: MockNestedDomain,
    type: number,
    entries: Uint8Array[],
  ): { rc: number; done: number } {
    if (type !== IOMMU_HWPT_INVALIDATE_DATA_SELFTEST) return { rc: err("EINVAL"), done: 0 };
    let done = 0;
    for (const e of entries) {
      if (e.length < 8) return { rc: err("EINVAL"), done };
      const dv = new DataView(e.buffer, e.byteOffset, e.length);
      const flags = dv.getUint32(0, true);
      const id = dv.getUint32(4, true);
      if (flags & ~IOMMU_TEST_INVALIDATE_FLAG_ALL) return { rc: err("EOPNOTSUPP"), done };
      if (id >= MOCK_NESTED_DOMAIN_IOTLB_NUM) return { rc: err("EINVAL"), done };
      if (flags & IOMMU_TEST_INVALIDATE_FLAG_ALL) d.iotlb.fill(0);
      else d.iotlb[id] = 0;
      done++;
    }
    return { rc: 0, done };
  }

  /** mock_dev_create(): a device on the mock bus, alone in a new group. */
  createDev(flags: number, task: Task | null = null): IommufdDev | number {
    if (flags & ~(MOCK_FLAGS_DEVICE_NO_DIRTY | MOCK_FLAGS_DEVICE_HUGE_IOVA)) return err("EINVAL");
    if (task?.faults.should("slab", "mock_dev")) return err("ENOMEM");
    const name = `iommufd_mock${nextMockDev++}`;
    const pdev = { name } as unknown as PciDev;
    this.devs.set(pdev, { flags, name });
    const unit = { name: "iommufd-mock", kind: "mock" } as unknown as IommuUnitDesc;
    const group = new IommuGroup(nextMockGroup++, unit, this.ops);
    group.devices.push(pdev);
    group.defaultDomain = this.blocking;
    group.domain = this.blocking;
    return { name, pdev, group, mock: true };
  }

  /** mock_dev_destroy() */
  destroyDev(dev: IommufdDev): void {
    this.devs.delete(dev.pdev);
  }

  /** Mark IO pages dirty, as the device would (IOMMU_TEST_OP_DIRTY). */
  markDirty(d: IommuDomain, iova: bigint, length: bigint): number {
    const m = d as MockDomain;
    let n = 0;
    for (let a = iova; a < iova + length; a += MOCK_IO_PAGE_SIZE) {
      const pte = m.pfns.get(a / MOCK_IO_PAGE_SIZE);
      if (!pte || !m.dirtyTracking) continue;
      pte.dirty = true;
      n++;
    }
    return n;
  }
}

/** struct selftest_obj (TYPE_IDEV): a mock device bound to the context. */
export class SelftestObj implements IommufdObject {
  readonly type = "selftest";
  id = 0;
  users = 1;
  idev: IommufdDevice | null = null;
  dev: IommufdDev | null = null;
  constructor(readonly mock: MockIommu) {}

  /** iommufd_selftest_destroy() */
  destroy(): void {
    if (this.idev) {
      iommufdDeviceDetach(this.idev);
      iommufdDeviceUnbind(this.idev);
    }
    if (this.dev) this.mock.destroyDev(this.dev);
  }
}

export interface MockDomainIds {
  stdevId: number;
  hwptId: number;
  idevId: number;
}

/**
 * IOMMU_TEST_OP_MOCK_DOMAIN(_FLAGS): bind a new mock device and attach it to `ptId`;
 * `respond` answers userspace before the object is published (a failure undoes it all).
 */
export function mockDomain(
  mock: MockIommu,
  ctx: IommufdCtx,
  task: Task | null,
  ptId: number,
  devFlags = 0,
  respond: (ids: MockDomainIds) => number = () => 0,
): MockDomainIds | number {
  const sobj = new SelftestObj(mock);
  let rc = ctx.alloc(task, sobj, "selftest_obj");
  if (rc) return rc;
  const dev = mock.createDev(devFlags, task);
  if (typeof dev === "number") {
    ctx.abort(sobj);
    return dev;
  }
  sobj.dev = dev;
  const idev = iommufdDeviceBind(ctx, task, dev);
  if (typeof idev === "number") {
    mock.destroyDev(dev);
    ctx.abort(sobj);
    return idev;
  }
  const pt = { v: ptId };
  rc = iommufdDeviceAttach(task, idev, pt);
  const ids = { stdevId: sobj.id, hwptId: pt.v, idevId: idev.id };
  if (!rc) {
    rc = respond(ids);
    if (rc) iommufdDeviceDetach(idev);
  }
  if (rc) {
    iommufdDeviceUnbind(idev);
    mock.destroyDev(dev);
    ctx.abort(sobj);
    return rc;
  }
  sobj.idev = idev;
  ctx.finalize(sobj);
  return ids;
}

/** IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE: the HWPT id now used, or -errno. */
export function mockDomainReplace(
  ctx: IommufdCtx,
  task: Task | null,
  stdevId: number,
  ptId: number,
): number {
  const obj = ctx.getObject(stdevId, "selftest");
  if (typeof obj === "number") return obj;
  const sobj = obj as SelftestObj;
  const pt = { v: ptId };
  const rc = sobj.idev ? iommufdDeviceReplace(task, sobj.idev, pt) : err("EINVAL");
  ctx.putObject(sobj);
  return rc || pt.v;
}

/** IOMMU_TEST_OP_ADD_RESERVED: a reserved range owned by nobody. */
export function addReserved(
  ctx: IommufdCtx,
  ioasId: number,
  start: bigint,
  length: bigint,
): number {
  const ioas = iommufdGetIoas(ctx, ioasId);
  if (typeof ioas === "number") return ioas;
  const rc = ioas.iopt.reserveIova(null, start, start + length - 1n, null);
  ctx.putObject(ioas);
  return rc;
}

/** get_md_pagetable(): a paging HWPT whose domain is a mock one (EINVAL otherwise). */
function getMdPagetable(
  ctx: IommufdCtx,
  id: number,
): { obj: IommufdObject; d: MockDomain } | number {
  const obj = ctx.getObject(id, "hwpt_paging");
  if (typeof obj === "number") return obj;
  const d = (obj as unknown as { domain: IommuDomain }).domain;
  if (d.type !== IOMMU_DOMAIN_UNMANAGED || !mockPaging.has(d)) {
    ctx.putObject(obj);
    return err("EINVAL");
  }
  return { obj, d: d as MockDomain };
}

/**
 * IOMMU_TEST_OP_MD_CHECK_MAP: every IO page of [iova, iova + length) in the mock HWPT's
 * domain points at the frame behind the same offset of the user buffer; EINVAL otherwise.
 */
export function mdCheckMap(
  ctx: IommufdCtx,
  task: Task,
  hwptId: number,
  iova: bigint,
  length: bigint,
  uptr: bigint,
): number {
  if (iova % MOCK_IO_PAGE_SIZE || length % MOCK_IO_PAGE_SIZE || uptr % MOCK_IO_PAGE_SIZE)
    return err("EINVAL");
  if (uptr + length > ULONG_MAX) return err("EINVAL");
  const md = getMdPagetable(ctx, hwptId);
  if (typeof md === "number") return md;
  let rc = 0;
  for (let off = 0n; off < length && !rc; off += MOCK_IO_PAGE_SIZE) {
    const pte = md.d.pfns.get((iova + off) / MOCK_IO_PAGE_SIZE);
    const pfn = task.mm.getUserPage(uptr + off - ((uptr + off) % PAGE));
    if (pfn === null) rc = err("EFAULT");
    else if (!pte || pte.paddr !== BigInt(pfn) * PAGE + ((uptr + off) % PAGE)) rc = err("EINVAL");
  }
  ctx.putObject(md.obj);
  return rc;
}

/** IOMMU_TEST_OP_MD_CHECK_REFS: every page of the buffer has exactly `refs` pins (EIO). */
function mdCheckRefs(task: Task, uptr: bigint, length: bigint, refs: number): number {
  if (length % PAGE || uptr % PAGE || uptr + length > ULONG_MAX) return err("EINVAL");
  for (let off = 0n; off < length; off += PAGE) {
    const pfn = task.mm.getUserPage(uptr + off);
    if (pfn === null) return err("EFAULT");
    if (task.mm.pages.pinCount(pfn) !== refs) return err("EIO");
  }
  return 0;
}

/** IOMMU_TEST_OP_MD_CHECK_IOTLB */
function mdCheckIotlb(ctx: IommufdCtx, hwptId: number, iotlbId: number, iotlb: number): number {
  const obj = ctx.getObject(hwptId, "hwpt_nested");
  if (typeof obj === "number") return obj;
  const d = (obj as unknown as { domain: IommuDomain }).domain;
  let rc = 0;
  if (d.type !== IOMMU_DOMAIN_NESTED || !mockNested.has(d)) rc = err("EINVAL");
  else if (iotlbId > MOCK_NESTED_DOMAIN_IOTLB_NUM - 1) rc = err("EINVAL");
  else if ((d as MockNestedDomain).iotlb[iotlbId] !== iotlb) rc = err("EINVAL");
  ctx.putObject(obj);
  return rc;
}

/** IOMMU_TEST_OP_DIRTY: the device dirties the IO pages a user bitmap names. */
function testDirty(
  ucmd: Ucmd,
  hwptId: number,
  cmd: ReturnType<typeof U.test_dirty.decode>,
): number {
  const { iova, length, page_size: pageSize, uptr } = cmd;
  if (!pageSize || !length || iova % pageSize || length % pageSize || !uptr) return err("EINVAL");
  const md = getMdPagetable(ucmd.ctx, hwptId);
  if (typeof md === "number") return md;
  const rc = markDirtyBitmap(ucmd, md.d, cmd);
  ucmd.ctx.putObject(md.obj);
  return rc;
}

function markDirtyBitmap(ucmd: Ucmd, d: MockDomain, cmd: ReturnType<typeof U.test_dirty.decode>) {
  if (!d.dirtyTracking) return err("EINVAL");
  const max = cmd.length / cmd.page_size;
  if (ucmd.task.faults.should("slab", "dirty_bitmap")) return err("ENOMEM");
  const bitmap = ucmd.task.mm.copyFromUser(cmd.uptr, Number((max + 7n) / 8n));
  if (!bitmap) return err("EFAULT");
  let count = 0n;
  for (let i = 0n; i < max; i++) {
    if (!((bitmap[Number(i / 8n)] as number) & (1 << Number(i % 8n)))) continue;
    // The kernel looks the entry up by cur / page_size, as written.
    const pte = d.pfns.get((cmd.iova + i * cmd.page_size) / cmd.page_size);
    if (!pte) continue;
    pte.dirty = true;
    count++;
  }
  return respondUnion(ucmd, U.test_dirty, { ...cmd, out_nr_dirty: count });
}

/** struct selftest_access_item: one ACCESS_PAGES pin. */
interface AccessItem {
  iova: bigint;
  length: bigint;
  id: number;
}

/** struct selftest_access: the access behind an "[iommufd_test_staccess]" file. */
class Staccess {
  access: IommufdAccess | null = null;
  readonly items: AccessItem[] = [];
  nextId = 0;

  /** iommufd_test_access_unmap(): drop every item meeting [iova, iova + length). */
  unmap(iova: bigint, length: bigint): void {
    const last = iova + length - 1n;
    for (const item of [...this.items]) {
      if (iova > item.iova + item.length - 1n || last < item.iova) continue;
      this.items.splice(this.items.indexOf(item), 1);
      iommufdAccessUnpinPages(this.access as IommufdAccess, item.iova, item.length);
    }
  }
}

/** iommfd_test_staccess_fops: closing the file unpins everything and destroys the access. */
const STACCESS_FOPS: FileOperations<Staccess> = {
  name: "anon_inode:[iommufd_test_staccess]",
  release(file) {
    const st = file.priv;
    if (!st.access) return;
    st.unmap(0n, ULONG_MAX);
    iommufdAccessDestroy(st.access);
  },
};

/** iommufd_access_get(): the access behind an fd (EBADFD for any other file). */
function staccessGet(task: Task, fd: number): Staccess | number {
  const f = task.files.get(fd);
  if (!f || f.ops !== STACCESS_FOPS) return err("EBADFD");
  return f.priv as Staccess;
}

/** __iommufd_test_syz_conv_iova(): {nth_area, offset} → the nth area's IOVA + offset. */
function syzConvIova(ioas: { iopt: { areas: { start: bigint }[] } } | null, raw: bigint): bigint {
  const nth = Number(raw & 0xffffffffn);
  const area = ioas?.iopt.areas[nth];
  return area ? area.start + (raw >> 32n) : 0n;
}

/** iommufd_test_create_access(): a new access file's fd, attached to `ioasId`. */
function testCreateAccess(ucmd: Ucmd, ioasId: number, flags: number): number {
  if (flags & ~U.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES) return err("EOPNOTSUPP");
  const { ctx, task } = ucmd;
  if (task.faults.should("slab", "selftest_access")) return err("ENOMEM");
  if (task.faults.should("slab", "anon_inode_file")) return err("ENOMEM");
  const st = new Staccess();
  const fd = task.files.install(new File(STACCESS_FOPS, st, O_RDWR));
  if (fd < 0) return err("ENOMEM"); // get_unused_fd_flags() failing is -ENOMEM here
  const needsPinPages = (flags & U.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES) !== 0;
  const access = iommufdAccessCreate(ctx, task, {
    needsPinPages,
    unmap: (iova, length) => st.unmap(iova, length),
  });
  if (typeof access === "number") {
    task.files.close(fd);
    return access;
  }
  let rc = iommufdAccessAttach(task, access, ioasId);
  if (!rc) rc = respondUnion(ucmd, U.test_create_access, { out_access_fd: fd, flags });
  if (rc) {
    iommufdAccessDestroy(access);
    task.files.close(fd);
    return rc;
  }
  st.access = access;
  return 0;
}

/** iommufd_test_access_item_destroy() */
function testDestroyAccessPages(task: Task, fd: number, itemId: number): number {
  const st = staccessGet(task, fd);
  if (typeof st === "number") return st;
  const i = st.items.findIndex((x) => x.id === itemId);
  const item = st.items[i];
  if (!item) return err("ENOENT");
  st.items.splice(i, 1);
  iommufdAccessUnpinPages(st.access as IommufdAccess, item.iova, item.length);
  return 0;
}

/** 16 MiB: larger requests are refused before kvzalloc() could WARN. */
const ACCESS_MAX = 16n << 20n;

/** iommufd_test_access_pages(): pin, check against the user VA, record an item. */
function testAccessPages(
  ucmd: Ucmd,
  fd: number,
  cmd: ReturnType<typeof U.test_access_pages.decode>,
) {
  const { task } = ucmd;
  const { length, uptr, flags } = cmd;
  if (length > ACCESS_MAX) return err("ENOMEM");
  if (flags & ~(U.MOCK_FLAGS_ACCESS_WRITE | U.MOCK_FLAGS_ACCESS_SYZ)) return err("EOPNOTSUPP");
  const st = staccessGet(task, fd);
  if (typeof st === "number") return st;
  const access = st.access as IommufdAccess;
  if (!access.ops.needsPinPages) return err("EOPNOTSUPP");
  const iova = flags & U.MOCK_FLAGS_ACCESS_SYZ ? syzConvIova(access.ioas, cmd.iova) : cmd.iova;
  if (task.faults.should("slab", "access_pages_array")) return err("ENOMEM");
  const pfns = iommufdAccessPinPages(task, access, iova, length, flags & U.MOCK_FLAGS_ACCESS_WRITE);
  if (typeof pfns === "number") return pfns;
  // iommufd_test_check_pages(): the pages are those under the user's VA.
  let rc = 0;
  const base = uptr - (iova % PAGE);
  for (let i = 0; uptr && i < pfns.length && !rc; i++) {
    const pfn = task.mm.getUserPage(base + BigInt(i) * PAGE);
    if (pfn === null) rc = err("EFAULT");
    else if (pfn !== pfns[i]) rc = err("EBADE");
  }
  if (!rc && task.faults.should("slab", "selftest_access_item")) rc = err("ENOMEM");
  if (!rc) {
    const item = { iova, length, id: st.nextId++ };
    st.items.push(item);
    rc = respondUnion(ucmd, U.test_access_pages, { ...cmd, out_access_pages_id: item.id });
    if (rc) st.items.pop();
  }
  if (rc) iommufdAccessUnpinPages(access, iova, length);
  return rc;
}

/** iommufd_test_access_rw(): a user buffer to or from the IOAS through the access. */
function testAccessRw(ucmd: Ucmd, fd: number, cmd: ReturnType<typeof U.test_access_rw.decode>) {
  const { task } = ucmd;
  const { length, uptr, flags } = cmd;
  if (length > ACCESS_MAX) return err("ENOMEM");
  const known = U.MOCK_ACCESS_RW_WRITE | U.MOCK_ACCESS_RW_SLOW_PATH | U.MOCK_FLAGS_ACCESS_SYZ;
  if (flags & ~known) return err("EOPNOTSUPP");
  const st = staccessGet(task, fd);
  if (typeof st === "number") return st;
  const access = st.access as IommufdAccess;
  if (task.faults.should("slab", "access_rw_buffer")) return err("ENOMEM");
  let tmp: Uint8Array = new Uint8Array(Number(length));
  if (flags & U.MOCK_ACCESS_RW_WRITE) {
    const got = task.mm.copyFromUser(uptr, tmp.length);
    if (!got) return err("EFAULT");
    tmp = got;
  }
  const iova = flags & U.MOCK_FLAGS_ACCESS_SYZ ? syzConvIova(access.ioas, cmd.iova) : cmd.iova;
  const rc = iommufdAccessRw(task, access, iova, tmp, flags);
  if (rc) return rc;
  if (!(flags & U.MOCK_ACCESS_RW_WRITE) && !task.mm.copyToUser(uptr, tmp)) return err("EFAULT");
  return 0;
}

/** The union member of the command, then the whole command back to the user. */
function respondUnion<F extends readonly (readonly [string, FieldType])[]>(
  ucmd: Ucmd,
  codec: StructCodec<F>,
  v: ReturnType<StructCodec<F>["decode"]>,
): number {
  ucmd.cmd.set(codec.encode(v), U.IOMMU_TEST_CMD_UNION);
  return ucmd.respond(ucmd.cmd);
}

/** A union member of the command as it came in. */
function member<F extends readonly (readonly [string, FieldType])[]>(
  ucmd: Ucmd,
  codec: StructCodec<F>,
) {
  return codec.decode(ucmd.cmd.subarray(U.IOMMU_TEST_CMD_UNION));
}

/** iommufd_test(): IOMMU_TEST_CMD. */
export function iommufdTest(ucmd: Ucmd): number {
  const { ctx, task } = ucmd;
  const cmd = ucmd.decode(U.iommu_test_cmd);
  const mock = ctx.sys.selftest as MockIommu;
  switch (cmd.op) {
    case U.IOMMU_TEST_OP_ADD_RESERVED: {
      const m = member(ucmd, U.test_add_reserved);
      return addReserved(ctx, cmd.id, m.start, m.length);
    }
    case U.IOMMU_TEST_OP_MOCK_DOMAIN:
    case U.IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS: {
      const m = member(ucmd, U.test_mock_domain);
      const flags = cmd.op === U.IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS ? m.dev_flags : 0;
      const r = mockDomain(mock, ctx, task, cmd.id, flags, (ids) =>
        respondUnion(ucmd, U.test_mock_domain, {
          ...m,
          out_stdev_id: ids.stdevId,
          out_hwpt_id: ids.hwptId,
          out_idev_id: ids.idevId,
        }),
      );
      return typeof r === "number" ? r : 0;
    }
    case U.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE: {
      const m = member(ucmd, U.test_mock_domain_replace);
      const r = mockDomainReplace(ctx, task, cmd.id, m.pt_id);
      return r < 0 ? r : respondUnion(ucmd, U.test_mock_domain_replace, { pt_id: r });
    }
    case U.IOMMU_TEST_OP_MD_CHECK_MAP: {
      const m = member(ucmd, U.test_check_map);
      return mdCheckMap(ctx, task, cmd.id, m.iova, m.length, m.uptr);
    }
    case U.IOMMU_TEST_OP_MD_CHECK_REFS: {
      const m = member(ucmd, U.test_check_refs);
      return mdCheckRefs(task, m.uptr, m.length, m.refs);
    }
    case U.IOMMU_TEST_OP_MD_CHECK_IOTLB: {
      const m = member(ucmd, U.test_check_iotlb);
      return mdCheckIotlb(ctx, cmd.id, m.id, m.iotlb);
    }
    case U.IOMMU_TEST_OP_CREATE_ACCESS:
      return testCreateAccess(ucmd, cmd.id, member(ucmd, U.test_create_access).flags);
    case U.IOMMU_TEST_OP_ACCESS_REPLACE_IOAS: {
      const st = staccessGet(task, cmd.id);
      if (typeof st === "number") return st;
      const id = member(ucmd, U.test_access_replace_ioas).ioas_id;
      return iommufdAccessReplace(task, st.access as IommufdAccess, id);
    }
    case U.IOMMU_TEST_OP_ACCESS_PAGES:
      return testAccessPages(ucmd, cmd.id, member(ucmd, U.test_access_pages));
    case U.IOMMU_TEST_OP_ACCESS_RW:
      return testAccessRw(ucmd, cmd.id, member(ucmd, U.test_access_rw));
    case U.IOMMU_TEST_OP_DESTROY_ACCESS_PAGES:
      return testDestroyAccessPages(
        task,
        cmd.id,
        member(ucmd, U.test_destroy_access_pages).access_pages_id,
      );
    case U.IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT:
      // Not below _batch_init()'s element size (sizeof(unsigned long) + sizeof(u32)).
      return member(ucmd, U.test_memory_limit).limit < 12 ? err("EINVAL") : 0;
    case U.IOMMU_TEST_OP_DIRTY:
      return testDirty(ucmd, cmd.id, member(ucmd, U.test_dirty));
    default:
      return err("EOPNOTSUPP");
  }
}
