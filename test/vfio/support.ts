/**
 * Shared setup for the vfio-pci tests: a kernel booted from a recorded oracle snapshot,
 * with a test-only IOMMU backend (VFIO_TYPE1v2_IOMMU accepted, every group attached, no
 * mapping ioctls) so device files open without depending on the real type1 backend; and
 * small wrappers around the device-file ioctls and region accesses.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { buildHost, type Host } from "../../src/host/build.js";
import { loadHost } from "../../src/host/load.js";
import { hostSpecSchema } from "../../src/host/spec.js";
import type { Kernel } from "../../src/kernel/kernel.js";
import type { TaskSyscalls } from "../../src/kernel/core/syscalls.js";
import type { VfioIommuDriverOps } from "../../src/kernel/vfio/vfio.js";
import { err } from "../../src/uapi/errno.js";
import {
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  O_RDWR,
  O_WRONLY,
  PROT_READ,
  PROT_WRITE,
} from "../../src/uapi/syscalls.js";
import * as U from "../../src/uapi/vfio.js";
import { bootHost } from "../../src/userspace/boot.js";
import { ROOT } from "../support/paths.js";

export const CASES = join(ROOT, "test", "oracle", "cases");

/** The test backend: accepts TYPE1v2, attaches anything, answers nothing else. */
export const testBackend: VfioIommuDriverOps<object> = {
  name: "vfio-test-iommu",
  open: (arg) => (arg === U.VFIO_TYPE1v2_IOMMU ? {} : err("EINVAL")),
  release: () => undefined,
  ioctl: (_d, _t, cmd, arg) =>
    cmd === U.VFIO_CHECK_EXTENSION ? Number(arg === BigInt(U.VFIO_TYPE1v2_IOMMU)) : err("ENOTTY"),
  attachGroup: () => 0,
  detachGroup: () => undefined,
};

/** Boot the kernel model on a recorded case's snapshot, with the test backend registered. */
export async function bootCase(name: string): Promise<{ k: Kernel; host: Host }> {
  const host = await loadHost(join(CASES, name, "snapshot.tar.gz"));
  const k = bootHost(host);
  assert.equal(k.vfio.iommuDrivers.register(testBackend), 0);
  return { k, host };
}

/** The NVMe endpoint of bootRealHardware's host, and its PCIe capability's offset. */
export const REAL_NVME = "0000:01:00.0";
export const REAL_NVME_EXP = 0x50;

/**
 * A real-hardware host booted like bootCase: a Samsung NVMe below an Intel root port,
 * described rather than captured, so its registers have the PCIe specification's write
 * masks (a QEMU guest's, as in the recorded snapshots, has QEMU's: Device Control there
 * is read-only).
 */
export function bootRealHardware(): Kernel {
  const spec = hostSpecSchema.parse({
    name: "real-hardware",
    iommu: [{ kind: "intel-vtd", name: "dmar0", cap: "0xd2008c40660462", ecap: "0xf050da" }],
    functions: [
      {
        addr: "0000:00:1c.0",
        id: "8086:a338",
        class: "060400",
        pcie: "root-port",
        driver: "pcieport",
        children: [
          {
            addr: "00.0",
            id: "144d:a808",
            class: "010802",
            pcie: "endpoint",
            driver: "nvme",
            bars: [{ index: 0, size: 0x4000, kind: "mem64", prefetchable: false }],
          },
        ],
      },
    ],
  });
  const k = bootHost(buildHost(spec, "real-hardware"));
  assert.equal(k.vfio.iommuDrivers.register(testBackend), 0);
  return k;
}

export interface Access {
  bar: number;
  off: number;
  width: number;
  write?: bigint;
}

/**
 * A device model for one function that logs every BAR access and answers reads with the
 * given function of (bar, offset, width), so tests see exactly what reached the device.
 */
export function attachModel(
  host: Host,
  bdf: string,
  read: (bar: number, off: number, width: number) => bigint,
): Access[] {
  const [dom, bus, slot, fn] = bdf.split(/[:.]/).map((x) => parseInt(x, 16)) as [
    number,
    number,
    number,
    number,
  ];
  const f = host.machine.pci.fn(dom, bus, (slot << 3) | fn);
  assert.ok(f, bdf);
  const log: Access[] = [];
  f.model = {
    mmioRead(bar, off, width) {
      log.push({ bar, off, width });
      return read(bar, off, width);
    },
    mmioWrite(bar, off, width, value) {
      log.push({ bar, off, width, write: value });
    },
  };
  return log;
}

export class Proc {
  readonly buf: bigint;
  constructor(readonly sys: TaskSyscalls) {
    this.buf = sys.mmap(0n, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
    assert.ok(this.buf > 0n);
  }

  sysfsWrite(path: string, value: string): number {
    const fd = this.sys.open(path, O_WRONLY);
    if (fd < 0) return fd;
    this.sys.poke(this.buf, Buffer.from(value));
    const r = this.sys.write(fd, this.buf, value.length);
    this.sys.close(fd);
    return r;
  }

  sysfsRead(path: string): string | number {
    const fd = this.sys.open(path, 0);
    if (fd < 0) return fd;
    const r = this.sys.read(fd, this.buf, 65536);
    this.sys.close(fd);
    return r < 0 ? r : Buffer.from(this.sys.peek(this.buf, r) as Uint8Array).toString();
  }

  /** Hardware config bytes through sysfs (what the device holds, not what VFIO shows). */
  hwConfig(bdf: string, off: number, len: number): number {
    const fd = this.sys.open(`/sys/bus/pci/devices/${bdf}/config`, 0);
    const r = this.sys.pread(fd, this.buf, len, BigInt(off));
    this.sys.close(fd);
    assert.equal(r, len);
    return Buffer.from(this.sys.peek(this.buf, len) as Uint8Array).readUIntLE(0, len);
  }

  private readonly groups = new Map<string, { group: number; container: number }>();

  /** Hand a device to vfio-pci (driver_override, unbind, drivers_probe). */
  bind(bdf: string): void {
    this.sysfsWrite(`/sys/bus/pci/devices/${bdf}/driver_override`, "vfio-pci");
    this.sysfsWrite(`/sys/bus/pci/devices/${bdf}/driver/unbind`, bdf);
    assert.ok(this.sysfsWrite("/sys/bus/pci/drivers_probe", bdf) > 0);
    assert.equal(this.driver(bdf), "vfio-pci");
  }

  driver(bdf: string): string | undefined {
    const l = this.sys.readlink(`/sys/bus/pci/devices/${bdf}/driver`);
    return typeof l === "string" ? l.split("/").pop() : undefined;
  }

  /** Bind, join the group to a container (once per group), return the device fd. */
  openDevice(bdf: string): { dev: number; group: number; container: number } {
    if (this.driver(bdf) !== "vfio-pci") this.bind(bdf);
    const id = (this.sys.readlink(`/sys/bus/pci/devices/${bdf}/iommu_group`) as string)
      .split("/")
      .pop() as string;
    let g = this.groups.get(id);
    if (!g) {
      const container = this.sys.open("/dev/vfio/vfio", O_RDWR);
      const group = this.sys.open(`/dev/vfio/${id}`, O_RDWR);
      assert.ok(container >= 0 && group >= 0, `open group ${id}: ${group}`);
      this.poke(0, eventfds(container));
      assert.equal(this.sys.ioctl(group, U.VFIO_GROUP_SET_CONTAINER, this.buf), 0);
      assert.equal(this.sys.ioctl(container, U.VFIO_SET_IOMMU, BigInt(U.VFIO_TYPE1v2_IOMMU)), 0);
      g = { group, container };
      this.groups.set(id, g);
    }
    this.poke(0, Buffer.from(`${bdf}\0`));
    const dev = this.sys.ioctl(g.group, U.VFIO_GROUP_GET_DEVICE_FD, this.buf);
    assert.ok(dev >= 0, `GET_DEVICE_FD ${bdf}: ${dev}`);
    return { dev, ...g };
  }

  poke(off: number, data: Uint8Array): void {
    assert.ok(this.sys.poke(this.buf + BigInt(off), data));
  }

  peek(off: number, len: number): Uint8Array {
    return this.sys.peek(this.buf + BigInt(off), len) as Uint8Array;
  }

  /** pread of a region: the bytes, or -errno. */
  read(dev: number, index: number, off: number, len: number): Uint8Array | number {
    const pos = (BigInt(index) << U.VFIO_PCI_OFFSET_SHIFT) + BigInt(off);
    const r = this.sys.pread(dev, this.buf, len, pos);
    return r < 0 ? r : this.peek(0, r);
  }

  /** A little-endian value read from a region (asserts the read succeeded). */
  readLe(dev: number, index: number, off: number, len: number): number {
    const b = this.read(dev, index, off, len);
    assert.ok(b instanceof Uint8Array, `read ${index}:${off.toString(16)} gave ${String(b)}`);
    return Buffer.from(b).readUIntLE(0, len);
  }

  write(dev: number, index: number, off: number, data: Uint8Array): number {
    this.poke(0, data);
    const pos = (BigInt(index) << U.VFIO_PCI_OFFSET_SHIFT) + BigInt(off);
    return this.sys.pwrite(dev, this.buf, data.length, pos);
  }

  writeLe(dev: number, index: number, off: number, len: number, v: number): number {
    const b = Buffer.alloc(len);
    b.writeUIntLE(v, 0, len);
    return this.write(dev, index, off, b);
  }

  /** An ioctl on a struct placed at the buffer (plus a tail); the struct read back. */
  ioctl(fd: number, cmd: number, arg: Uint8Array, tail = new Uint8Array(0)): number {
    this.poke(0, arg);
    this.poke(arg.length, tail);
    return this.sys.ioctl(fd, cmd, this.buf);
  }

  regionInfo(dev: number, index: number, argsz = 32) {
    const S = U.vfio_region_info;
    const ret = this.ioctl(
      dev,
      U.VFIO_DEVICE_GET_REGION_INFO,
      S.encode({ argsz, flags: 0, index, cap_offset: 0, size: 0n, offset: 0n }),
      new Uint8Array(64),
    );
    return { ret, ...S.decode(this.peek(0, S.size)), caps: this.peek(S.size, 64) };
  }

  irqInfo(dev: number, index: number, argsz = 16) {
    const S = U.vfio_irq_info;
    const ret = this.ioctl(
      dev,
      U.VFIO_DEVICE_GET_IRQ_INFO,
      S.encode({ argsz, flags: 0, index, count: 0 }),
    );
    return { ret, ...S.decode(this.peek(0, S.size)) };
  }

  /** VFIO_DEVICE_SET_IRQS; argsz defaults to the header plus the payload. */
  setIrqs(
    dev: number,
    flags: number,
    index: number,
    start: number,
    count: number,
    data = new Uint8Array(0),
    argsz = 20 + data.length,
  ): number {
    const hdr = U.vfio_irq_set.encode({ argsz, flags, index, start, count }).subarray(0, 20);
    return this.ioctl(dev, U.VFIO_DEVICE_SET_IRQS, hdr, data);
  }

  /** An eventfd and a way to drain it (its count, or 0 when nothing was signalled). */
  eventfd(): { fd: number; drain(): bigint } {
    const fd = this.sys.eventfd(0, 0);
    assert.ok(fd >= 0);
    const at = this.buf + 0x80000n;
    return {
      fd,
      drain: () => {
        const r = this.sys.read(fd, at, 8);
        if (r === err("EAGAIN")) return 0n;
        assert.equal(r, 8);
        return Buffer.from(this.sys.peek(at, 8) as Uint8Array).readBigUInt64LE(0);
      },
    };
  }
}

export const eventfds = (...fds: number[]) => {
  const b = Buffer.alloc(4 * fds.length);
  fds.forEach((fd, i) => b.writeInt32LE(fd, 4 * i));
  return new Uint8Array(b);
};
