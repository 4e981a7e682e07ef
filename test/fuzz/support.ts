/**
 * What the fuzz, invariant and fault-injection tests share: the fuzz machine booted with
 * edu devices bound to vfio-pci, and a process whose argument memory is mapped and
 * touched up front, so that a syscall's only page allocations are the kernel's own.
 */
import assert from "node:assert/strict";
import type { Kernel, ObjectCounts } from "../../src/kernel/kernel.js";
import { err } from "../../src/uapi/errno.js";
import * as K from "../../src/uapi/kvm.js";
import { STRUCTS } from "../../src/uapi/names.js";
import {
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  O_RDWR,
  O_WRONLY,
  PROT_READ,
  PROT_WRITE,
} from "../../src/uapi/syscalls.js";
import * as U from "../../src/uapi/vfio.js";
import type { Host } from "../../src/host/build.js";
import { bootFuzz, type FuzzConfig } from "../../src/userspace/fuzz/host.js";

export type Sys = ReturnType<Kernel["spawn"]>;

/** A process with a 64 KiB argument arena and a 2 MiB DMA buffer, both touched. */
export class Proc {
  readonly arena: bigint;
  readonly buf: bigint;
  constructor(readonly sys: Sys) {
    const map = (len: number) =>
      sys.mmap(0n, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0n);
    this.arena = map(64 << 10);
    this.buf = map(2 << 20);
    assert.ok(this.arena > 0n && this.buf > 0n);
    for (let off = 0n; off < 64n << 10n; off += 4096n)
      sys.poke(this.arena + off, new Uint8Array(1));
    for (let off = 0n; off < 2n << 20n; off += 4096n) sys.poke(this.buf + off, new Uint8Array([1]));
  }

  /** Bytes at the start of the arena (zeroing what follows, up to `clear`). */
  put(bytes: Uint8Array, at = 0, clear = 256): bigint {
    const a = this.arena + BigInt(at);
    const b = new Uint8Array(Math.max(clear, bytes.length));
    b.set(bytes);
    assert.ok(this.sys.poke(a, b));
    return a;
  }

  sysfsWrite(path: string, value: string): number {
    const fd = this.sys.open(path, O_WRONLY);
    if (fd < 0) return fd;
    const a = this.put(new TextEncoder().encode(value), 4096, 0);
    const r = this.sys.write(fd, a, value.length);
    this.sys.close(fd);
    return r;
  }

  /** ioctl with a struct argument packed by the uAPI codec named `name`. */
  ioctlStruct(
    fd: number,
    req: number,
    name: string,
    fields: Record<string, number | bigint>,
  ): number {
    const codec = STRUCTS.get(name);
    assert.ok(codec, name);
    const v: Record<string, number | bigint> = { argsz: codec.size, ...fields };
    return this.sys.ioctl(fd, req, this.put(codec.encode(v as never)));
  }

  s32(v: number, at = 0): bigint {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setInt32(0, v, true);
    return this.put(b, at, 8);
  }

  open(path: string): number {
    return this.sys.open(path, O_RDWR);
  }

  /** Bind a device to vfio-pci the way a VMM's helper script does. */
  bindVfio(bdf: string): void {
    const base = `/sys/bus/pci/devices/${bdf}`;
    assert.ok(this.sysfsWrite(`${base}/driver_override`, "vfio-pci") > 0);
    this.sysfsWrite(`${base}/driver/unbind`, bdf);
    assert.ok(this.sysfsWrite("/sys/bus/pci/drivers_probe", bdf) > 0);
  }

  /** The device name as GET_DEVICE_FD reads it (a NUL-terminated string). */
  name(bdf: string): bigint {
    return this.put(new TextEncoder().encode(`${bdf}\0`), 1024, 64);
  }

  /** KVM_SET_DEVICE_ATTR FILE_ADD/FILE_DEL of fd on a kvm-vfio device. */
  kvmFile(kd: number, attr: number, fd: number): number {
    const addr = this.s32(fd, 2048);
    const a = this.put(
      K.kvm_device_attr.encode({ flags: 0, group: K.KVM_DEV_VFIO_FILE, attr: BigInt(attr), addr }),
      3072,
      32,
    );
    return this.sys.ioctl(kd, K.KVM_SET_DEVICE_ATTR, a);
  }

  createKvmVfio(vm: number): number {
    const a = this.put(K.kvm_create_device.encode({ type: K.KVM_DEV_TYPE_VFIO, fd: 0, flags: 0 }));
    const r = this.sys.ioctl(vm, K.KVM_CREATE_DEVICE, a);
    if (r < 0) return r;
    return K.kvm_create_device.decode(this.sys.peek(a, K.kvm_create_device.size) as Uint8Array).fd;
  }

  mapDma(container: number, iova: bigint, size: bigint, vaddr = this.buf): number {
    return this.ioctlStruct(container, U.VFIO_IOMMU_MAP_DMA, "vfio_iommu_type1_dma_map", {
      flags: U.VFIO_DMA_MAP_FLAG_READ | U.VFIO_DMA_MAP_FLAG_WRITE,
      vaddr,
      iova,
      size,
    });
  }

  unmapDma(container: number, iova: bigint, size: bigint): number {
    return this.ioctlStruct(container, U.VFIO_IOMMU_UNMAP_DMA, "vfio_iommu_type1_dma_unmap", {
      flags: 0,
      iova,
      size,
    });
  }

  /** Write one edu BAR0 register through the device fd (region 0). */
  edu(device: number, off: number, v: bigint): number {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, v, true);
    return this.sys.pwrite(device, this.put(b, 512, 8), 8, BigInt(off));
  }

  /** Memory space and bus mastering on, through the config region (index 7). */
  busMaster(device: number): number {
    return this.sys.pwrite(device, this.put(new Uint8Array([6, 0]), 512, 8), 2, (7n << 40n) | 4n);
  }

  /** An edu DMA of `len` bytes between its buffer and `iova`. */
  dma(device: number, iova: bigint, len: number, toRam: boolean): void {
    const dev = 0x40000n;
    assert.equal(this.edu(device, 0x80, toRam ? dev : iova), 8);
    assert.equal(this.edu(device, 0x88, toRam ? iova : dev), 8);
    assert.equal(this.edu(device, 0x90, BigInt(len)), 8);
    assert.equal(this.edu(device, 0x98, toRam ? 3n : 1n), 8);
  }
}

export interface Booted {
  kernel: Kernel;
  host: Host;
  admin: Proc;
  /** Object counts after boot and binding, before any process held memory. */
  baseline: ObjectCounts;
}

/** The fuzz machine with these edu devices bound to vfio-pci. */
export function bootBound(cfg: Partial<FuzzConfig> = {}, bind = ["0000:01:00.0"]): Booted {
  const { kernel, host } = bootFuzz({ machine: "vtd", cmdline: "", profile: "6.12", ...cfg });
  const setup = new Proc(kernel.spawn());
  for (const bdf of bind) setup.bindVfio(bdf);
  kernel.exit(setup.sys.task.pid);
  const baseline = kernel.debug.objects();
  return { kernel, host, admin: new Proc(kernel.spawn()), baseline };
}

/** /dev/vfio/N of a device's group. */
export function groupPath(kernel: Kernel, bdf: string): string {
  const g = kernel.debug.groups().find((x) => x.devices.includes(bdf));
  assert.ok(g, bdf);
  return `/dev/vfio/${g.id}`;
}

export { err };
