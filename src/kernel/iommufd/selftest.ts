/**
 * The iommufd selftest's mock platform, drivers/iommu/iommufd/selftest.c (Linux 6.12): a
 * mock IOMMU driver whose devices sit alone in their groups and whose paging domains have
 * the aperture [MOCK_APERTURE_START, MOCK_APERTURE_LAST] = [16 MiB, 2 GiB - 1], an IO page
 * of MOCK_IO_PAGE_SIZE = PAGE_SIZE / 2 (plus MOCK_HUGE_PAGE_SIZE with the HUGE_IOVA device
 * flag), no reserved regions, dirty tracking unless the NO_DIRTY device flag, and nested
 * domains (IOMMU_HWPT_DATA_SELFTEST) with a four-entry mock IOTLB.
 *
 * The kernel reaches it through IOMMU_TEST_CMD, which only CONFIG_IOMMUFD_TEST kernels
 * have; the oracle's kernels do not, so here the operations are plain functions on an
 * iommufd context (what the selftest's ioctls do), for the tests of the IFD-M cases:
 * MOCK_DOMAIN (a mock device bound and attached; DESTROY of its selftest object id detaches,
 * unbinds and removes it), MOCK_DOMAIN_REPLACE, ADD_RESERVED, MD_CHECK_MAP, DIRTY.
 */
import type { IommuUnitDesc } from "../../machine/hw.js";
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
import type { IommufdCtx, IommufdObject } from "./main.js";
import { PAGE } from "./pages.js";

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
  createDev(flags: number): IommufdDev | number {
    if (flags & ~(MOCK_FLAGS_DEVICE_NO_DIRTY | MOCK_FLAGS_DEVICE_HUGE_IOVA)) return err("EINVAL");
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
  constructor(
    readonly mock: MockIommu,
    readonly dev: IommufdDev,
  ) {}

  /** iommufd_selftest_destroy() */
  destroy(): void {
    if (this.idev) {
      iommufdDeviceDetach(this.idev);
      iommufdDeviceUnbind(this.idev);
    }
    this.mock.destroyDev(this.dev);
  }
}

export interface MockDomainIds {
  stdevId: number;
  hwptId: number;
  idevId: number;
}

/** IOMMU_TEST_OP_MOCK_DOMAIN(_FLAGS): bind a new mock device and attach it to `ptId`. */
export function mockDomain(
  mock: MockIommu,
  ctx: IommufdCtx,
  task: Task | null,
  ptId: number,
  devFlags = 0,
): MockDomainIds | number {
  const dev = mock.createDev(devFlags);
  if (typeof dev === "number") return dev;
  const sobj = new SelftestObj(mock, dev);
  let rc = ctx.alloc(task, sobj, "selftest_obj");
  if (rc) {
    mock.destroyDev(dev);
    return rc;
  }
  const idev = iommufdDeviceBind(ctx, task, dev);
  if (typeof idev === "number") {
    mock.destroyDev(dev);
    ctx.abort(sobj);
    return idev;
  }
  const pt = { v: ptId };
  rc = iommufdDeviceAttach(task, idev, pt);
  if (rc) {
    iommufdDeviceUnbind(idev);
    mock.destroyDev(dev);
    ctx.abort(sobj);
    return rc;
  }
  sobj.idev = idev;
  ctx.finalize(sobj);
  return { stdevId: sobj.id, hwptId: pt.v, idevId: idev.id };
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
  const obj = ctx.getObject(hwptId, "hwpt_paging");
  if (typeof obj === "number") return obj;
  const d = (obj as unknown as { domain: MockDomain }).domain;
  let rc = 0;
  for (let off = 0n; off < length && !rc; off += MOCK_IO_PAGE_SIZE) {
    const pte = d.pfns.get((iova + off) / MOCK_IO_PAGE_SIZE);
    const pfns = task.mm.pin(uptr + off - ((uptr + off) % PAGE), 1, false);
    if (!pfns) rc = err("EINVAL");
    else {
      const want = BigInt(pfns[0] as number) * PAGE + ((uptr + off) % PAGE);
      task.mm.unpin(pfns);
      if (!pte || pte.paddr !== want) rc = err("EINVAL");
    }
  }
  ctx.putObject(obj);
  return rc;
}
