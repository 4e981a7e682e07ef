/**
 * What the iommufd tests share: a kernel booted from a snapshot the oracle recorded on its
 * iommufd kernel (VT-d with Snoop Control; nvme 01:00.0 in group 4, e1000e 02:00.0 in group
 * 5), a process that packs uAPI structs into its own memory and issues requests by number,
 * and a leak check that compares what the kernel holds before and after a flow.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadHost } from "../../src/host/load.js";
import type { TaskSyscalls } from "../../src/kernel/core/syscalls.js";
import type { BuildConfig, Kernel, ProfileName, TaskOptions } from "../../src/kernel/kernel.js";
import { errnoName } from "../../src/uapi/errno.js";
import * as I from "../../src/uapi/iommufd.js";
import type { FieldType, StructCodec } from "../../src/uapi/struct.js";
import {
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  O_RDWR,
  O_WRONLY,
  PROT_READ,
  PROT_WRITE,
} from "../../src/uapi/syscalls.js";
import * as V from "../../src/uapi/vfio.js";
import { bootHost } from "../../src/userspace/boot.js";
import { bootSnoopSplit, K_BDF, N1_BDF } from "../kvm/support.js";
import { ROOT } from "../support/paths.js";

export const CASES = join(ROOT, "test", "oracle", "cases");
export const NVME = "0000:01:00.0";
export const E1000E = "0000:02:00.0";
export const PAGE = 4096n;

/**
 * A kernel booted on the iommufd kernel's snapshot (the build follows the snapshot), with
 * `kconfig` on top (e.g. CONFIG_IOMMUFD_TEST).
 */
export async function bootIommufd(
  name = "cdev-bind",
  kconfig?: Partial<BuildConfig>,
): Promise<Kernel> {
  const host = await loadHost(join(CASES, name, "snapshot.tar.gz"));
  const k = bootHost(host, "", undefined, undefined, kconfig);
  assert.ok(k.iommufd, "the snapshot's kernel is the iommufd build");
  return k;
}

/**
 * The iommufd build on kvm/support.ts's host with one non-coherent function: a process with
 * both functions' cdevs bound to one iommufd, `sc` behind the VT-d unit with Snoop Control
 * and `nosc` behind the one without.
 */
export function bindSnoopPair(name: string, profile?: ProfileName) {
  const k = bootSnoopSplit(name, 1, { build: "iommufd", profile });
  const p = Proc.spawn(k);
  const fd = p.open("/dev/iommu");
  const sc = p.open(p.toVfio(K_BDF));
  const nosc = p.open(p.toVfio(N1_BDF));
  const devid = { sc: p.bind(sc, fd).out.out_devid, nosc: p.bind(nosc, fd).out.out_devid };
  assert.ok(devid.sc > 0 && devid.nosc > 0);
  return { k, p, fd, sc, nosc, devid };
}

type Fields = readonly (readonly [string, FieldType])[];
type Values<F extends Fields> = Partial<ReturnType<StructCodec<F>["decode"]>>;

/** A process of the model: structs in its memory, requests by number, results as -errno. */
export class Proc {
  /** Scratch memory for structs (first 64 KiB) and arrays (the rest). */
  readonly buf: bigint;
  /** Children forked, which exit() takes down too. */
  readonly children: TaskSyscalls[] = [];
  constructor(
    readonly k: Kernel,
    readonly sys: TaskSyscalls,
  ) {
    // Shared, so that a fork leaves it shared rather than copy-on-write.
    this.buf = sys.mmap(0n, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0n);
    // Fault the scratch buffer in now, so that a fault injected later never lands in it.
    assert.ok(this.sys.poke(this.buf, new Uint8Array(1 << 20)));
  }

  static spawn(k: Kernel, opts: TaskOptions = {}): Proc {
    return new Proc(k, k.spawn(opts));
  }

  /** fork(): the child's syscalls, or -errno. */
  fork(): TaskSyscalls | number {
    const c = this.k.fork(this.sys);
    if (typeof c !== "number") this.children.push(c);
    return c;
  }

  /** The process and its children exit. */
  exit(): void {
    this.sys.task.exit();
    for (const c of this.children) c.task.exit();
  }

  mmap(len: number, prot = PROT_READ | PROT_WRITE): bigint {
    const a = this.sys.mmap(0n, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
    assert.ok(a > 0n, `mmap: ${a}`);
    return a;
  }

  /** Touch every page of a buffer (so that it holds frames before a baseline is taken). */
  touch(addr: bigint, len: number): void {
    assert.ok(this.sys.poke(addr, new Uint8Array(len)));
  }

  open(path: string): number {
    return this.sys.open(path, O_RDWR);
  }

  poke(off: number, data: Uint8Array): void {
    assert.ok(this.sys.poke(this.buf + BigInt(off), data));
  }

  peek(off: number, len: number): Uint8Array {
    return this.sys.peek(this.buf + BigInt(off), len) as Uint8Array;
  }

  /**
   * An ioctl on a struct placed at the start of the scratch buffer, zeros after it;
   * `size` overrides the size/argsz field's value, `raw` the struct bytes altogether.
   */
  cmd<F extends Fields>(
    fd: number,
    req: number,
    codec: StructCodec<F>,
    values: Values<F>,
    opts: { tail?: Uint8Array } = {},
  ) {
    const first = codec.fields[0]?.[0] as string;
    const v = { [first]: codec.size, ...values } as ReturnType<StructCodec<F>["decode"]>;
    this.poke(0, new Uint8Array(65536));
    this.poke(0, codec.encode(v));
    if (opts.tail) this.poke(codec.size, opts.tail);
    const ret = this.sys.ioctl(fd, req, this.buf);
    return { ret, out: codec.decode(this.peek(0, codec.size)) };
  }

  /** IOMMU_IOAS_ALLOC: the id (asserts success). */
  ioasAlloc(fd: number): number {
    const r = this.cmd(fd, I.IOMMU_IOAS_ALLOC, I.iommu_ioas_alloc, {});
    assert.equal(r.ret, 0, `IOAS_ALLOC: ${errnoName(-r.ret)}`);
    return r.out.out_ioas_id;
  }

  map(fd: number, ioas: number, uva: bigint, length: bigint, iova: bigint | null, flags = 6) {
    const f = iova === null ? flags : flags | I.IOMMU_IOAS_MAP_FIXED_IOVA;
    return this.cmd(fd, I.IOMMU_IOAS_MAP, I.iommu_ioas_map, {
      flags: f,
      ioas_id: ioas,
      user_va: uva,
      length,
      iova: iova ?? 0n,
    });
  }

  unmap(fd: number, ioas: number, iova: bigint, length: bigint) {
    return this.cmd(fd, I.IOMMU_IOAS_UNMAP, I.iommu_ioas_unmap, { ioas_id: ioas, iova, length });
  }

  destroy(fd: number, id: number): number {
    return this.cmd(fd, I.IOMMU_DESTROY, I.iommu_destroy, { id }).ret;
  }

  /** IOMMU_IOAS_IOVA_RANGES with room for `n` ranges: the result and the ranges written. */
  iovaRanges(fd: number, ioas: number, n = 8) {
    const arr = this.buf + 0x10000n;
    this.sys.poke(arr, new Uint8Array(16 * n));
    const r = this.cmd(fd, I.IOMMU_IOAS_IOVA_RANGES, I.iommu_ioas_iova_ranges, {
      ioas_id: ioas,
      num_iovas: n,
      allowed_iovas: arr,
    });
    const ranges: [bigint, bigint][] = [];
    for (let i = 0; i < Math.min(n, r.out.num_iovas); i++) {
      const e = I.iommu_iova_range.decode(this.sys.peek(arr + BigInt(16 * i), 16) as Uint8Array);
      ranges.push([e.start, e.last]);
    }
    return { ...r, ranges };
  }

  option(fd: number, optionId: number, op: number, objectId: number, val = 0n) {
    return this.cmd(fd, I.IOMMU_OPTION, I.iommu_option, {
      option_id: optionId,
      op,
      object_id: objectId,
      val64: val,
    });
  }

  sysfsWrite(path: string, value: string): number {
    const fd = this.sys.open(path, O_WRONLY);
    if (fd < 0) return fd;
    const at = this.buf + 0x80000n;
    this.sys.poke(at, Buffer.from(value));
    const r = this.sys.write(fd, at, value.length);
    this.sys.close(fd);
    return r;
  }

  /** Hand a device to vfio-pci; the cdev path of its VFIO device. */
  toVfio(bdf: string): string {
    this.sysfsWrite(`/sys/bus/pci/devices/${bdf}/driver_override`, "vfio-pci");
    this.sysfsWrite(`/sys/bus/pci/devices/${bdf}/driver/unbind`, bdf);
    assert.ok(this.sysfsWrite("/sys/bus/pci/drivers_probe", bdf) > 0);
    const entries = this.sys.readlink(`/sys/bus/pci/devices/${bdf}/driver`);
    assert.equal(typeof entries === "string" && entries.split("/").pop(), "vfio-pci");
    for (let n = 0; n < 16; n++) {
      const l = this.sys.readlink(`/sys/class/vfio-dev/vfio${n}`);
      if (typeof l === "string" && l.includes(bdf)) return `/dev/vfio/devices/vfio${n}`;
    }
    throw new Error(`no cdev for ${bdf}`);
  }

  /** The group number of a device (its iommu_group link). */
  groupOf(bdf: string): string {
    return (this.sys.readlink(`/sys/bus/pci/devices/${bdf}/iommu_group`) as string)
      .split("/")
      .pop() as string;
  }

  bind(dev: number, iommufd: number) {
    return this.cmd(dev, V.VFIO_DEVICE_BIND_IOMMUFD, V.vfio_device_bind_iommufd, { iommufd });
  }

  attach(dev: number, ptId: number) {
    return this.cmd(dev, V.VFIO_DEVICE_ATTACH_IOMMUFD_PT, V.vfio_device_attach_iommufd_pt, {
      pt_id: ptId,
    });
  }

  detach(dev: number) {
    return this.cmd(dev, V.VFIO_DEVICE_DETACH_IOMMUFD_PT, V.vfio_device_detach_iommufd_pt, {});
  }

  /**
   * IOMMU_TEST_CMD: `op` on object `id` with the union member `codec` set to `values`;
   * the result and the member as the kernel wrote it back.
   */
  test<F extends Fields>(
    fd: number,
    op: number,
    id: number,
    codec: StructCodec<F>,
    values: Values<F>,
  ) {
    const head = I.iommu_test_cmd.encode({
      ...I.iommu_test_cmd.decode(new Uint8Array(0)),
      size: I.iommu_test_cmd.size,
      op,
      id,
    });
    head.set(
      codec.encode(values as unknown as ReturnType<StructCodec<F>["decode"]>),
      I.IOMMU_TEST_CMD_UNION,
    );
    this.poke(0, head);
    const ret = this.sys.ioctl(fd, I.IOMMU_TEST_CMD, this.buf);
    return { ret, out: codec.decode(this.peek(I.IOMMU_TEST_CMD_UNION, codec.size)) };
  }

  hwptAlloc(fd: number, devId: number, ptId: number, flags = 0) {
    return this.cmd(fd, I.IOMMU_HWPT_ALLOC, I.iommu_hwpt_alloc, {
      flags,
      dev_id: devId,
      pt_id: ptId,
    });
  }
}

/** What the kernel holds that a flow must give back. */
export function holdings(k: Kernel) {
  const ifd = k.iommufd;
  let objects = 0;
  let pinned = 0;
  for (const c of ifd?.contexts ?? []) {
    objects += c.objects.size;
  }
  for (const g of k.iommu.groups.values()) pinned += g.ownerCnt;
  return {
    frames: k.pages.inUse,
    contexts: ifd?.contexts.size ?? 0,
    objects,
    ownerCnt: pinned,
    groupsAtDefault: [...k.iommu.groups.values()].every((g) => g.domain === g.defaultDomain),
  };
}
