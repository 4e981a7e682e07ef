/**
 * The iommufd selftest's mock platform driven through IOMMU_TEST_CMD (conformance catalog
 * §4, IFD-M-011 and IFD-M-013…018): in-kernel accesses that pin and copy, the unmap
 * callback, changing an access's IOAS, pinning from the mm that mapped (fork), read-only
 * pins of private pages. The kernel is the iommufd build with CONFIG_IOMMUFD_TEST; without
 * it the request is ENOTTY, as on the oracle's kernels.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { err } from "../../src/uapi/errno.js";
import * as I from "../../src/uapi/iommufd.js";
import {
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  O_RDWR,
  PROT_READ,
  PROT_WRITE,
} from "../../src/uapi/syscalls.js";
import { File } from "../../src/kernel/core/file.js";
import type { TaskSyscalls } from "../../src/kernel/core/syscalls.js";
import type { Kernel } from "../../src/kernel/kernel.js";
import {
  iommufdAccessAttach,
  iommufdAccessCreate,
  iommufdAccessPinPages,
  type IommufdAccess,
} from "../../src/kernel/iommufd/access.js";
import type { IommufdCtx } from "../../src/kernel/iommufd/main.js";
import {
  MOCK_APERTURE_START as MS,
  MOCK_IO_PAGE_SIZE as MP,
} from "../../src/kernel/iommufd/selftest.js";
import { bootIommufd, holdings, PAGE as P, Proc } from "./support.js";

const BUF = 16n * P;
const HP = 2n << 20n;
const PIN = I.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES;

/** A little deterministic noise (the selftest uses rand()). */
function noise(seed: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** The selftest process: /dev/iommu, an IOAS, a 16-page MAP_SHARED buffer, test commands. */
class Selftest {
  readonly fd: number;
  readonly ioas: number;
  readonly buffer: bigint;
  constructor(
    readonly k: Kernel,
    readonly p: Proc,
  ) {
    this.fd = p.open("/dev/iommu");
    this.ioas = p.ioasAlloc(this.fd);
    this.buffer = p.sys.mmap(
      0n,
      Number(BUF),
      PROT_READ | PROT_WRITE,
      MAP_SHARED | MAP_ANONYMOUS,
      -1,
    );
    assert.ok(this.buffer > 0n);
  }

  static async boot(): Promise<Selftest> {
    const k = await bootIommufd("cdev-bind", { iommufdTest: true });
    return new Selftest(k, Proc.spawn(k));
  }

  mockDomain(ioas = this.ioas) {
    return this.p.test(this.fd, I.IOMMU_TEST_OP_MOCK_DOMAIN, ioas, I.test_mock_domain, {});
  }
  createAccess(ioas: number, flags: number): number {
    const r = this.p.test(this.fd, I.IOMMU_TEST_OP_CREATE_ACCESS, ioas, I.test_create_access, {
      flags,
    });
    assert.equal(r.ret, 0, `CREATE_ACCESS: ${r.ret}`);
    return r.out.out_access_fd;
  }
  accessPages(acc: number, iova: bigint, length: bigint, uptr: bigint, flags = 0) {
    const r = this.p.test(this.fd, I.IOMMU_TEST_OP_ACCESS_PAGES, acc, I.test_access_pages, {
      iova,
      length,
      uptr,
      flags,
    });
    return { ret: r.ret, id: r.out.out_access_pages_id };
  }
  destroyAccessPages(acc: number, id: number): number {
    return this.p.test(
      this.fd,
      I.IOMMU_TEST_OP_DESTROY_ACCESS_PAGES,
      acc,
      I.test_destroy_access_pages,
      { access_pages_id: id },
    ).ret;
  }
  accessRw(acc: number, iova: bigint, length: bigint, uptr: bigint, flags: number): number {
    return this.p.test(this.fd, I.IOMMU_TEST_OP_ACCESS_RW, acc, I.test_access_rw, {
      iova,
      length,
      uptr,
      flags,
    }).ret;
  }
  checkMap(hwpt: number, iova: bigint, length: bigint, uptr: bigint): number {
    return this.p.test(this.fd, I.IOMMU_TEST_OP_MD_CHECK_MAP, hwpt, I.test_check_map, {
      iova,
      length,
      uptr,
    }).ret;
  }
  checkRefs(uptr: bigint, length: bigint, refs: number): number {
    return this.p.test(this.fd, I.IOMMU_TEST_OP_MD_CHECK_REFS, 0, I.test_check_refs, {
      uptr,
      length,
      refs,
    }).ret;
  }
  mapFixed(buf: bigint, length: bigint, iova: bigint, ioas = this.ioas, sys?: Proc): void {
    const r = (sys ?? this.p).map(this.fd, ioas, buf, length, iova);
    assert.equal(r.ret, 0, `IOAS_MAP: ${r.ret}`);
  }

  /**
   * check_access_rw(): bytes read through the access at sub-page offsets around a page
   * boundary equal the buffer, bytes written land in it; then one read of the whole buffer.
   */
  checkAccessRw(acc: number, iova: bigint, flags: number): void {
    const p = this.p;
    p.sys.poke(this.buffer, noise(7, Number(BUF)));
    const tmp = p.buf + 0x40000n;
    let seed = 1;
    for (let at = iova + P - 50n; at < iova + P + 50n; at++)
      for (let len = 1n; len < 64n; len++) {
        p.sys.poke(tmp, new Uint8Array(64));
        assert.equal(this.accessRw(acc, at, len, tmp, flags), 0, `read ${at - iova}+${len}`);
        const want = p.sys.peek(this.buffer + (at - iova), Number(len));
        assert.deepEqual(p.sys.peek(tmp, Number(len)), want);
        p.sys.poke(tmp, noise(seed++, 64));
        assert.equal(this.accessRw(acc, at, len, tmp, flags | I.MOCK_ACCESS_RW_WRITE), 0);
        assert.deepEqual(
          p.sys.peek(this.buffer + (at - iova), Number(len)),
          p.sys.peek(tmp, Number(len)),
          `write ${at - iova}+${len}`,
        );
      }
    const big = p.buf + 0x50000n;
    assert.equal(this.accessRw(acc, iova, BUF, big, flags), 0);
    assert.deepEqual(p.sys.peek(big, Number(BUF)), p.sys.peek(this.buffer, Number(BUF)));
  }
}

test("IOMMU_TEST_CMD exists only with CONFIG_IOMMUFD_TEST; its table's empty slots are ENOTTY", async () => {
  const plain = await bootIommufd();
  const q = Proc.spawn(plain);
  const qfd = q.open("/dev/iommu");
  const ioas = q.ioasAlloc(qfd);
  assert.equal(
    q.test(qfd, I.IOMMU_TEST_OP_MOCK_DOMAIN, ioas, I.test_mock_domain, {}).ret,
    err("ENOTTY"),
  );
  const t = await Selftest.boot();
  const p = t.p;
  assert.equal(p.test(t.fd, 99, 0, I.test_memory_limit, {}).ret, err("EOPNOTSUPP"));
  assert.equal(
    p.test(t.fd, I.IOMMU_TEST_OP_SET_TEMP_MEMORY_LIMIT, 0, I.test_memory_limit, { limit: 11 }).ret,
    err("EINVAL"),
  );
  p.poke(0, Uint8Array.of(60, 0, 0, 0)); // size below offsetofend(last)
  assert.equal(p.sys.ioctl(t.fd, I.IOMMU_TEST_CMD, p.buf), err("EINVAL"));
  assert.equal(p.sys.ioctl(t.fd, (I.IOMMU_TEST_CMD & ~0xff) | 0x90, p.buf), err("ENOTTY"));
  const md = t.mockDomain();
  assert.equal(md.ret, 0);
  assert.ok(md.out.out_stdev_id && md.out.out_hwpt_id && md.out.out_idev_id);
  const hwpt = md.out.out_hwpt_id;
  const rep = p.test(
    t.fd,
    I.IOMMU_TEST_OP_MOCK_DOMAIN_REPLACE,
    md.out.out_stdev_id,
    I.test_mock_domain_replace,
    {
      pt_id: t.ioas,
    },
  );
  assert.deepEqual([rep.ret, rep.out.pt_id], [0, hwpt], "the IOAS's automatic HWPT");
  const resv = p.test(t.fd, I.IOMMU_TEST_OP_ADD_RESERVED, t.ioas, I.test_add_reserved, {
    start: MS,
    length: P,
  });
  assert.equal(resv.ret, 0);
  assert.deepEqual(p.iovaRanges(t.fd, t.ioas).ranges[0], [MS + P, (1n << 31n) - 1n]);
  const dirty = (length: bigint) =>
    p.test(t.fd, I.IOMMU_TEST_OP_DIRTY, hwpt, I.test_dirty, {
      iova: MS,
      length,
      page_size: MP,
      uptr: p.buf + 0x30000n,
    }).ret;
  assert.equal(dirty(0n), err("EINVAL"));
  assert.equal(dirty(MP), err("EINVAL"), "tracking is off");
  const iotlb = p.test(t.fd, I.IOMMU_TEST_OP_MD_CHECK_IOTLB, hwpt, I.test_check_iotlb, {});
  assert.equal(iotlb.ret, err("ENOENT"), "not a nested HWPT");
  assert.equal(p.destroy(t.fd, md.out.out_stdev_id), 0);
});

test("IFD-M-011 ro_unshare: a read-only pin of a private file page breaks COW first", async () => {
  const t = await Selftest.boot();
  const { k, p } = t;
  const md = t.mockDomain();
  // A file with one page of page cache, which the cache itself keeps a reference on.
  const cache = k.pages.alloc() as number;
  k.pages.ram.write(cache * 4096, noise(3, 4096));
  const file = new File(
    {
      name: "/usr/bin/iommufd",
      mmap: () => ({
        fault: (pgoff) => {
          if (pgoff) return null;
          k.pages.get(cache);
          return cache;
        },
      }),
    },
    null,
    O_RDWR,
  );
  const ffd = p.sys.task.files.install(file);
  const buf = p.sys.mmap(0n, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, ffd);
  assert.ok(buf > 0n);
  p.sys.close(ffd);
  const m = p.map(t.fd, t.ioas, buf, P, null, I.IOMMU_IOAS_MAP_READABLE);
  assert.equal(m.ret, 0);
  assert.equal(t.checkMap(md.out.out_hwpt_id, m.out.iova, P, buf), 0);
  assert.equal(p.sys.task.mm.getUserPage(buf) === cache, false, "the pin unshared the page");
  assert.deepEqual(p.sys.peek(buf, 4096), noise(3, 4096), "with the file's bytes");
  p.sys.poke(buf, new Uint8Array(4096).fill(1));
  assert.equal(t.checkMap(md.out.out_hwpt_id, m.out.iova, P, buf), 0, "the write kept the PFN");
  assert.deepEqual(k.pages.ram.read(cache * 4096, 4096), noise(3, 4096), "the file is untouched");
  assert.equal(p.sys.munmap(buf, 4096), 0);
});

test("IFD-M-013 user_copy: COPY out of an IOAS pinned by an access, then the access replaced", async () => {
  const t = await Selftest.boot();
  const { p, fd } = t;
  const md = t.mockDomain();
  const ioasA = p.ioasAlloc(fd);
  const a = p.map(fd, ioasA, t.buffer, BUF, null);
  assert.equal(a.ret, 0);
  const acc = t.createAccess(ioasA, PIN);
  const copy = (src: number, srcIova: bigint) =>
    p.cmd(fd, I.IOMMU_IOAS_COPY, I.iommu_ioas_copy, {
      flags: I.IOMMU_IOAS_MAP_FIXED_IOVA | I.IOMMU_IOAS_MAP_WRITEABLE,
      dst_ioas_id: t.ioas,
      dst_iova: MS,
      src_ioas_id: src,
      src_iova: srcIova,
      length: BUF,
    }).ret;
  const pin1 = t.accessPages(acc, a.out.iova, BUF, t.buffer);
  assert.equal(pin1.ret, 0);
  assert.equal(t.checkRefs(t.buffer, BUF, 1), 0, "pinned once, by the access");
  assert.equal(copy(ioasA, a.out.iova), 0);
  assert.equal(t.checkMap(md.out.out_hwpt_id, MS, BUF, t.buffer), 0);
  assert.equal(t.checkRefs(t.buffer, BUF, 1), 0, "the domain shares the access's pins");
  assert.equal(p.destroy(fd, ioasA), err("EBUSY"), "the access holds its IOAS");
  const ioasB = p.ioasAlloc(fd);
  const b = p.map(fd, ioasB, t.buffer, BUF, null);
  assert.equal(b.ret, 0);
  const rep = (id: number) =>
    p.test(fd, I.IOMMU_TEST_OP_ACCESS_REPLACE_IOAS, acc, I.test_access_replace_ioas, {
      ioas_id: id,
    }).ret;
  assert.equal(rep(9999), err("ENOENT"));
  assert.equal(rep(ioasB), 0);
  assert.equal(t.destroyAccessPages(acc, pin1.id), err("ENOENT"), "the replace unpinned it");
  assert.equal(p.unmap(fd, t.ioas, MS, BUF).ret, 0);
  assert.equal(t.checkRefs(t.buffer, BUF, 0), 0);
  assert.equal(p.destroy(fd, ioasA), 0);
  const pin2 = t.accessPages(acc, b.out.iova, BUF, t.buffer);
  assert.equal(pin2.ret, 0);
  assert.equal(copy(ioasB, b.out.iova), 0);
  assert.equal(t.checkMap(md.out.out_hwpt_id, MS, BUF, t.buffer), 0);
  assert.equal(t.destroyAccessPages(acc, pin2.id), 0);
  assert.equal(p.destroy(fd, ioasB), err("EBUSY"));
  assert.equal(p.sys.close(acc), 0);
  assert.equal(p.destroy(fd, ioasB), 0);
});

test("IFD-M-014 access_pin: single, double and with a domain added, for 1…15 pages", async () => {
  const t = await Selftest.boot();
  const { p, fd } = t;
  const acc = t.createAccess(t.ioas, PIN);
  const alignment = p.iovaRanges(fd, t.ioas).out.out_iova_alignment;
  assert.equal(alignment, P, "a pinning access raises the IOAS alignment to PAGE_SIZE");
  for (let n = 1n; n < 16n; n++) {
    const len = n * P;
    t.mapFixed(t.buffer, BUF, MS);
    const one = t.accessPages(acc, MS, len, t.buffer);
    assert.equal(one.ret, 0);
    assert.equal(t.checkRefs(t.buffer, len, 1), 0);
    assert.equal(t.destroyAccessPages(acc, one.id), 0);
    assert.equal(t.checkRefs(t.buffer, BUF, 0), 0);
    const x = t.accessPages(acc, MS, len, t.buffer);
    const y = t.accessPages(acc, MS, len, t.buffer);
    assert.deepEqual([x.ret, y.ret], [0, 0]);
    assert.equal(t.checkRefs(t.buffer, len, 1), 0, "two users, one pin");
    assert.equal(t.destroyAccessPages(acc, y.id), 0);
    assert.equal(t.checkRefs(t.buffer, len, 1), 0);
    assert.equal(t.destroyAccessPages(acc, x.id), 0);
    const z = t.accessPages(acc, MS, len, t.buffer);
    assert.equal(z.ret, 0);
    const md = t.mockDomain();
    assert.equal(md.ret, 0, "a domain fills while an access holds pins");
    assert.equal(t.checkMap(md.out.out_hwpt_id, MS, BUF, t.buffer), 0);
    assert.equal(t.checkRefs(t.buffer, BUF, 1), 0);
    assert.equal(p.destroy(fd, md.out.out_stdev_id), 0);
    assert.equal(t.checkRefs(t.buffer, len, 1), 0, "the access's pins outlive the domain");
    if (len < BUF) assert.equal(t.checkRefs(t.buffer + len, BUF - len, 0), 0);
    assert.equal(t.destroyAccessPages(acc, z.id), 0);
    assert.equal(p.unmap(fd, t.ioas, MS, BUF).ret, 0);
  }
  // Pins must be page aligned, inside areas, allowed by the area's protection.
  t.mapFixed(t.buffer, BUF, MS);
  assert.equal(t.accessPages(acc, MS + 1n, P, 0n).ret, err("EINVAL"));
  assert.equal(t.accessPages(acc, MS + BUF, P, 0n).ret, err("ENOENT"));
  assert.equal(t.accessPages(acc, MS + BUF - P, 2n * P, 0n).ret, err("ENOENT"));
  assert.equal(t.accessPages(acc, MS, P, t.buffer + P).ret, err("EBADE"), "the wrong uptr");
  assert.equal(t.checkRefs(t.buffer, BUF, 0), 0, "failed pins leave nothing");
  assert.equal(t.accessPages(acc, MS, 0n, 0n).ret, err("EINVAL"));
  assert.equal(t.accessPages(acc, MS, P, 0n, 1 << 3).ret, err("EOPNOTSUPP"));
  assert.equal(t.accessPages(999, MS, P, 0n).ret, err("EBADFD"));
  const plain = t.createAccess(t.ioas, 0);
  assert.equal(t.accessPages(plain, MS, P, 0n).ret, err("EOPNOTSUPP"), "no pin ops");
  assert.equal(p.destroy(fd, t.ioas), err("EBUSY"));
  assert.equal(p.sys.close(acc), 0);
  assert.equal(p.sys.close(plain), 0);
  assert.equal(p.unmap(fd, t.ioas, MS, BUF).ret, 0);
  assert.equal(p.destroy(fd, t.ioas), 0);
});

test("IFD-M-015 access_pin_unmap: the unmap callback unpins, then the unmap completes", async () => {
  const t = await Selftest.boot();
  const { k, p, fd } = t;
  const acc = t.createAccess(t.ioas, PIN);
  t.mapFixed(t.buffer, BUF, MS);
  const pin = t.accessPages(acc, MS, BUF, t.buffer);
  assert.equal(pin.ret, 0);
  const u = p.unmap(fd, t.ioas, MS, BUF);
  assert.deepEqual([u.ret, u.out.length], [0, BUF]);
  assert.equal(t.destroyAccessPages(acc, pin.id), err("ENOENT"), "the kernel removed the item");
  assert.equal(t.checkRefs(t.buffer, BUF, 0), 0);
  // An access that never lets go: the unmap gives up with EDEADLK and nothing new pins.
  const ctx = p.sys.task.files.get(fd)?.priv as IommufdCtx;
  let calls = 0;
  const stubborn = iommufdAccessCreate(ctx, p.sys.task, {
    needsPinPages: true,
    unmap: () => calls++,
  }) as IommufdAccess;
  assert.equal(iommufdAccessAttach(p.sys.task, stubborn, t.ioas), 0);
  t.mapFixed(t.buffer, BUF, MS);
  assert.ok(Array.isArray(iommufdAccessPinPages(p.sys.task, stubborn, MS, P, 0)));
  assert.equal(p.unmap(fd, t.ioas, MS, BUF).ret, err("EDEADLK"));
  assert.equal(calls, 101, "asked once per try");
  assert.equal(iommufdAccessPinPages(p.sys.task, stubborn, MS, P, 0), err("EINVAL"));
  assert.equal(t.accessPages(acc, MS, P, 0n).ret, err("EINVAL"), "prevent_access");
  assert.ok(k.iommufd?.contexts.size);
});

test("IFD-M-016 access_rw and access_rw_unaligned: exact bytes across pages, both paths", async () => {
  const t = await Selftest.boot();
  const { p, fd } = t;
  const acc = t.createAccess(t.ioas, 0);
  const m = p.map(fd, t.ioas, t.buffer, BUF, null);
  assert.equal(m.ret, 0);
  t.checkAccessRw(acc, m.out.iova, 0);
  t.checkAccessRw(acc, m.out.iova, I.MOCK_ACCESS_RW_SLOW_PATH);
  const tmp = p.buf + 0x40000n;
  assert.equal(t.accessRw(acc, m.out.iova + BUF, 1n, tmp, 0), err("ENOENT"), "unmapped IOVA");
  assert.equal(t.accessRw(acc, m.out.iova, 0n, tmp, 0), err("EINVAL"));
  assert.equal(t.accessRw(acc, m.out.iova, 1n, tmp, 1 << 1), err("EOPNOTSUPP"));
  assert.equal(t.accessRw(acc, m.out.iova, (16n << 20n) + 1n, tmp, 0), err("ENOMEM"));
  assert.equal(p.unmap(fd, t.ioas, m.out.iova, BUF).ret, 0);
  // Read-only area: writes through the access are EPERM.
  const ro = p.map(fd, t.ioas, t.buffer, BUF, null, I.IOMMU_IOAS_MAP_READABLE);
  assert.equal(t.accessRw(acc, ro.out.iova, 8n, tmp, I.MOCK_ACCESS_RW_WRITE), err("EPERM"));
  assert.equal(p.unmap(fd, t.ioas, ro.out.iova, BUF).ret, 0);
  // Unaligned: the area starts one IO page into the domain's first page.
  t.mockDomain();
  const iova = MS + MP;
  t.mapFixed(t.buffer, BUF, iova);
  t.checkAccessRw(acc, iova, 0);
  assert.equal(p.unmap(fd, t.ioas, iova, BUF).ret, 0);
  assert.equal(p.sys.close(acc), 0);
});

test("IFD-M-017 access_domain_destroy: removing the domain around an access's pin in a huge page", async () => {
  const t = await Selftest.boot();
  const { k, p, fd } = t;
  const md = t.mockDomain();
  const size = 2n * HP;
  const buf = p.sys.mmap(0n, Number(size), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1);
  p.sys.poke(buf, noise(5, Number(size)));
  const frames = k.pages.inUse;
  t.mapFixed(buf, size, MS);
  assert.equal(t.checkMap(md.out.out_hwpt_id, MS, size, buf), 0);
  assert.equal(t.checkRefs(buf, size, 1), 0);
  const acc = t.createAccess(t.ioas, PIN);
  const pin = t.accessPages(acc, MS + P, P, buf + P);
  assert.equal(pin.ret, 0);
  assert.equal(p.destroy(fd, md.out.out_stdev_id), 0);
  assert.equal(t.checkRefs(buf, P, 0), 0);
  assert.equal(t.checkRefs(buf + P, P, 1), 0, "only the access's page stays pinned");
  assert.equal(t.checkRefs(buf + 2n * P, size - 2n * P, 0), 0);
  const tmp = p.buf + 0x40000n;
  assert.equal(t.accessRw(acc, MS + P + 100n, 64n, tmp, I.MOCK_ACCESS_RW_SLOW_PATH), 0);
  assert.deepEqual(p.sys.peek(tmp, 64), p.sys.peek(buf + P + 100n, 64));
  assert.equal(t.destroyAccessPages(acc, pin.id), 0);
  assert.equal(p.sys.close(acc), 0);
  assert.equal(t.checkRefs(buf, size, 0), 0, "no pin leaked");
  assert.equal(p.unmap(fd, t.ioas, MS, size).ret, 0);
  assert.equal(p.sys.munmap(buf, Number(size)), 0);
  assert.equal(k.pages.inUse, frames - Number(size / P), "every frame went back");
});

/** fork(); the child maps the parent's shared buffer into the IOAS at MS through the inherited fd. */
function childMaps(t: Selftest): TaskSyscalls {
  const child = t.k.fork(t.p.sys);
  assert.ok(typeof child !== "number");
  const r = new Proc(t.k, child).map(t.fd, t.ioas, t.buffer, BUF, MS);
  assert.equal(r.ret, 0);
  return child;
}

test("IFD-M-018 fork_gone: areas pin from the mm that mapped them, which may be gone", async () => {
  for (const withDomain of [false, true]) {
    const t = await Selftest.boot();
    const acc = t.createAccess(t.ioas, 0);
    if (withDomain) t.mockDomain();
    const child = childMaps(t);
    assert.ok(t.k.exit(child.task.pid));
    if (withDomain) {
      const md = t.mockDomain();
      assert.equal(md.ret, 0, "the pages were pinned in the child: copied domain to domain");
      t.checkAccessRw(acc, MS, 0);
    } else {
      assert.equal(t.mockDomain().ret, err("EFAULT"), "nothing left to pin from");
    }
    assert.equal(t.p.sys.close(acc), 0);
  }
});

test("IFD-M-018 fork_present: a domain added later pins from the child's mm", async () => {
  const t = await Selftest.boot();
  const acc = t.createAccess(t.ioas, 0);
  const child = childMaps(t);
  const md = t.mockDomain();
  assert.equal(md.ret, 0);
  assert.equal(t.checkMap(md.out.out_hwpt_id, MS, BUF, t.buffer), 0, "the shared pages");
  t.checkAccessRw(acc, MS, 0);
  assert.ok(t.k.exit(child.task.pid));
  t.checkAccessRw(acc, MS, 0);
  assert.equal(t.p.sys.close(acc), 0);
});

test("IFD-M-018 fork: a pinned private page is copied for the child, others are shared copy-on-write", async () => {
  const t = await Selftest.boot();
  const { p, fd } = t;
  const md = t.mockDomain();
  const priv = p.sys.mmap(0n, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
  p.sys.poke(priv, noise(9, 8192));
  t.mapFixed(priv, P, MS);
  const child = t.k.fork(p.sys) as TaskSyscalls;
  assert.deepEqual(child.peek(priv, 8192), noise(9, 8192), "the child sees the same bytes");
  assert.notEqual(child.task.mm.getUserPage(priv), p.sys.task.mm.getUserPage(priv), "copied");
  const shared = child.task.mm.getUserPage(priv + P);
  assert.equal(shared, p.sys.task.mm.getUserPage(priv + P), "not pinned: shared");
  assert.ok(child.poke(priv, new Uint8Array(8192).fill(2)));
  assert.notEqual(child.task.mm.getUserPage(priv + P), shared, "the child's write copied it");
  assert.deepEqual(p.sys.peek(priv, 8192), noise(9, 8192), "the parent's pages are untouched");
  p.sys.poke(priv, new Uint8Array(16).fill(3));
  assert.equal(
    t.checkMap(md.out.out_hwpt_id, MS, P, priv),
    0,
    "the device still sees the parent's page",
  );
  assert.ok(t.k.exit(child.task.pid));
  assert.equal(p.unmap(fd, t.ioas, MS, P).ret, 0);
});

test("closing the access fd and the iommufd gives every pin, object and context back", async () => {
  const t = await Selftest.boot();
  const { k, p } = t;
  p.sys.poke(t.buffer, new Uint8Array(Number(BUF)));
  const before = holdings(k);
  const q = new Selftest(k, p);
  const acc = q.createAccess(q.ioas, PIN);
  q.mockDomain();
  q.mapFixed(t.buffer, BUF, MS);
  assert.equal(q.accessPages(acc, MS, 4n * P, t.buffer).ret, 0);
  assert.equal(p.sys.close(q.fd), 0);
  assert.equal(k.iommufd?.contexts.size, before.contexts + 1, "the access holds the context");
  assert.equal(t.checkRefs(t.buffer, 4n * P, 1), 0);
  assert.equal(p.sys.close(acc), 0);
  assert.deepEqual(holdings(k), before);
  assert.equal(t.checkRefs(t.buffer, BUF, 0), 0);
});
