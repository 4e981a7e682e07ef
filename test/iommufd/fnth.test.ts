/**
 * Fault-injection sweeps over the iommufd flows (conformance catalog §6, FNTH), as
 * iommufd_fail_nth.c runs them: for n = 1, 2, ... the n-th fallible allocation of a flow
 * fails (fail-nth: slab objects, page allocations, fd installs) until a run completes
 * without reaching it. Every run must stop at the step that met the fault with a clean
 * errno, and once the process exits the kernel must hold exactly what it held before: no
 * object, context, pin, page-table page, locked memory or DMA ownership left behind.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ERRNO, errnoName } from "../../src/uapi/errno.js";
import * as I from "../../src/uapi/iommufd.js";
import * as V from "../../src/uapi/vfio.js";
import type { Kernel } from "../../src/kernel/kernel.js";
import type { IommufdCtx } from "../../src/kernel/iommufd/main.js";
import {
  mockDomain,
  mockDomainReplace,
  MockIommu,
  MOCK_APERTURE_START,
} from "../../src/kernel/iommufd/selftest.js";
import { MAP_ANONYMOUS, MAP_SHARED } from "../../src/uapi/syscalls.js";
import type { TaskSyscalls } from "../../src/kernel/core/syscalls.js";
import { bootIommufd, E1000E, holdings, PAGE, Proc } from "./support.js";

const V_MAP_SHARED_ANON = MAP_SHARED | MAP_ANONYMOUS;

type Step = [name: string, run: () => number];

/** Everything a leaked object would show up in. */
function state(k: Kernel) {
  const vdevs = [...k.iommu.groups.values()].flatMap((g) => k.vfio.groupOf(g)?.devices ?? []);
  return {
    ...holdings(k),
    openDevices: vdevs.reduce((n, d) => n + d.openCount, 0),
    cdevBlocks: [...k.iommu.groups.values()].reduce(
      (n, g) => n + (k.vfio.groupOf(g)?.cdevDeviceOpenCnt ?? 0),
      0,
    ),
    userLockedVm: k.iommufd?.userLockedVm.get(1000) ?? 0,
  };
}

const ERRNOS = new Set<number>(Object.values(ERRNO));

/**
 * Run `flow` (a fresh process each time) with the n-th fallible allocation failing, for
 * every n until one run does not reach it; `checkAfter` runs after each complete run.
 */
function sweep(k: Kernel, flow: (p: Proc) => Step[], opts: { uid?: number } = {}): number {
  const faults = k.pages.faults;
  let n = 1;
  for (; n < 2000; n++) {
    const base = state(k);
    const p = Proc.spawn(k, opts.uid ? { uid: opts.uid, caps: [] } : {});
    const steps = flow(p);
    faults.failNth(n);
    let failed: { step: string; ret: number } | null = null;
    for (const [name, run] of steps) {
      const before = faults.injected;
      const ret = run();
      if (!before && faults.injected) {
        assert.ok(
          ret < 0,
          `n=${n}: ${name} met the fault (${faults.injected.what}) but returned ${ret}`,
        );
        assert.ok(ERRNOS.has(-ret), `n=${n}: ${name} returned ${ret}, not an errno`);
        failed = { step: name, ret };
        break;
      }
      assert.ok(ret >= 0, `n=${n} without a fault: ${name} failed with ${errnoName(-ret)}`);
    }
    const reached = faults.injected !== null;
    faults.disarm();
    p.exit();
    assert.deepEqual(
      state(k),
      base,
      `n=${n}: ${failed?.step} → ${failed && errnoName(-failed.ret)} leaked`,
    );
    if (!reached) break;
  }
  return n;
}

const ULONG_MAX = (1n << 64n) - 1n;
const MB2 = 1n << 21n;

test("FNTH-001 basic: IOAS alloc, ranges, allowed, map, copy, unmap", async () => {
  const k = await bootIommufd();
  const runs = sweep(k, (p) => {
    const s = { fd: -1, ioas: 0, iova: 0n };
    const buf = p.mmap(2 << 20);
    p.touch(buf, 2 << 20);
    const arr = p.buf + 0x20000n;
    return [
      ["open", () => (s.fd = p.open("/dev/iommu"))],
      [
        "IOAS_ALLOC",
        () => {
          const r = p.cmd(s.fd, I.IOMMU_IOAS_ALLOC, I.iommu_ioas_alloc, {});
          s.ioas = r.out.out_ioas_id;
          return r.ret;
        },
      ],
      ["IOVA_RANGES", () => p.iovaRanges(s.fd, s.ioas, 10).ret],
      [
        "ALLOW_IOVAS",
        () => {
          p.sys.poke(
            arr,
            I.iommu_iova_range.encode({ start: 16384n, last: MB2 + 16384n * 600n - 1n }),
          );
          return p.cmd(s.fd, I.IOMMU_IOAS_ALLOW_IOVAS, I.iommu_ioas_allow_iovas, {
            ioas_id: s.ioas,
            num_iovas: 1,
            allowed_iovas: arr,
          }).ret;
        },
      ],
      [
        "IOAS_MAP",
        () => {
          const r = p.map(s.fd, s.ioas, buf, MB2, null);
          s.iova = r.out.iova;
          return r.ret;
        },
      ],
      [
        "IOAS_COPY",
        () =>
          p.cmd(s.fd, I.IOMMU_IOAS_COPY, I.iommu_ioas_copy, {
            flags: 6,
            dst_ioas_id: s.ioas,
            src_ioas_id: s.ioas,
            length: 160n,
            src_iova: s.iova,
          }).ret,
      ],
      ["IOAS_UNMAP", () => p.unmap(s.fd, s.ioas, s.iova, MB2).ret],
      ["IOAS_UNMAP all", () => p.unmap(s.fd, s.ioas, 0n, ULONG_MAX).ret],
    ];
  });
  assert.ok(runs > 5, `the flow met ${runs - 1} fallible allocations`);
});

test("FNTH cdev: bind, map, attach (automatic domain), hw_info, HWPT, replace, detach", async () => {
  const k = await bootIommufd();
  const setup = Proc.spawn(k);
  const cdev = setup.toVfio(E1000E);
  setup.sys.task.exit();
  const runs = sweep(k, (p) => {
    const s = { fd: -1, dev: -1, devid: 0, ioas: 0, ioas2: 0, hwpt: 0 };
    const buf = p.mmap(256 * 1024);
    p.touch(buf, 256 * 1024);
    const hw = p.buf + 0x30000n;
    return [
      ["open iommufd", () => (s.fd = p.open("/dev/iommu"))],
      ["open cdev", () => (s.dev = p.open(cdev))],
      [
        "BIND",
        () => {
          const r = p.bind(s.dev, s.fd);
          s.devid = r.out.out_devid;
          return r.ret;
        },
      ],
      [
        "IOAS_ALLOC",
        () => {
          const r = p.cmd(s.fd, I.IOMMU_IOAS_ALLOC, I.iommu_ioas_alloc, {});
          s.ioas = r.out.out_ioas_id;
          return r.ret;
        },
      ],
      ["IOAS_MAP", () => p.map(s.fd, s.ioas, buf, 256n * 1024n, 0x100000n).ret],
      ["ATTACH ioas", () => p.attach(s.dev, s.ioas).ret],
      [
        "GET_HW_INFO",
        () =>
          p.cmd(s.fd, I.IOMMU_GET_HW_INFO, I.iommu_hw_info, {
            dev_id: s.devid,
            data_len: 24,
            data_uptr: hw,
          }).ret,
      ],
      [
        "HWPT_ALLOC",
        () => {
          const r = p.hwptAlloc(s.fd, s.devid, s.ioas);
          s.hwpt = r.out.out_hwpt_id;
          return r.ret;
        },
      ],
      ["ATTACH hwpt (replace)", () => p.attach(s.dev, s.hwpt).ret],
      [
        "IOAS_ALLOC 2",
        () => {
          const r = p.cmd(s.fd, I.IOMMU_IOAS_ALLOC, I.iommu_ioas_alloc, {});
          s.ioas2 = r.out.out_ioas_id;
          return r.ret;
        },
      ],
      ["IOAS_MAP 2", () => p.map(s.fd, s.ioas2, buf, 64n * 1024n, null).ret],
      ["ATTACH ioas2 (replace)", () => p.attach(s.dev, s.ioas2).ret],
      ["DETACH", () => p.detach(s.dev).ret],
      ["IOAS_UNMAP", () => p.unmap(s.fd, s.ioas, 0x100000n, 256n * 1024n).ret],
    ];
  });
  assert.ok(runs > 10, `the flow met ${runs - 1} fallible allocations`);
});

test("FNTH cdev as an unprivileged user: pinned memory charged to the user's locked_vm", async () => {
  const k = await bootIommufd();
  const setup = Proc.spawn(k);
  const cdev = setup.toVfio(E1000E);
  setup.sys.task.exit();
  sweep(
    k,
    (p) => {
      const s = { fd: -1, dev: -1, ioas: 0 };
      const buf = p.mmap(64 * 1024);
      p.touch(buf, 64 * 1024);
      return [
        ["open iommufd", () => (s.fd = p.open("/dev/iommu"))],
        ["open cdev", () => (s.dev = p.open(cdev))],
        ["BIND", () => p.bind(s.dev, s.fd).ret],
        [
          "IOAS_ALLOC",
          () => {
            const r = p.cmd(s.fd, I.IOMMU_IOAS_ALLOC, I.iommu_ioas_alloc, {});
            s.ioas = r.out.out_ioas_id;
            return r.ret;
          },
        ],
        ["ATTACH", () => p.attach(s.dev, s.ioas).ret],
        ["IOAS_MAP", () => p.map(s.fd, s.ioas, buf, 64n * 1024n, null).ret],
      ];
    },
    { uid: 1000 },
  );
});

test("FNTH compat: /dev/vfio/vfio, SET_CONTAINER, SET_IOMMU, maps, GET_DEVICE_FD", async () => {
  const k = await bootIommufd();
  const setup = Proc.spawn(k);
  setup.toVfio(E1000E);
  const group = `/dev/vfio/${setup.groupOf(E1000E)}`;
  setup.sys.task.exit();
  sweep(k, (p) => {
    const s = { c: -1, g: -1 };
    const buf = p.mmap(64 * 1024);
    p.touch(buf, 64 * 1024);
    const mapDma = (iova: bigint) =>
      p.cmd(s.c, V.VFIO_IOMMU_MAP_DMA, V.vfio_iommu_type1_dma_map, {
        flags: 3,
        vaddr: buf,
        iova,
        size: 32n * 1024n,
      }).ret;
    return [
      ["open container", () => (s.c = p.open("/dev/vfio/vfio"))],
      ["open group", () => (s.g = p.open(group))],
      [
        "SET_CONTAINER",
        () => {
          p.poke(0, Uint8Array.of(s.c, 0, 0, 0));
          return p.sys.ioctl(s.g, V.VFIO_GROUP_SET_CONTAINER, p.buf);
        },
      ],
      ["SET_IOMMU", () => p.sys.ioctl(s.c, V.VFIO_SET_IOMMU, BigInt(V.VFIO_TYPE1_IOMMU))],
      ["MAP_DMA", () => mapDma(0x100000n)],
      [
        "GET_DEVICE_FD",
        () => {
          p.poke(0, Buffer.from(`${E1000E}\0`));
          return p.sys.ioctl(s.g, V.VFIO_GROUP_GET_DEVICE_FD, p.buf);
        },
      ],
      ["MAP_DMA 2", () => mapDma(0x200000n)],
      [
        "UNMAP_DMA middle page (v1 split)",
        () =>
          p.cmd(s.c, V.VFIO_IOMMU_UNMAP_DMA, V.vfio_iommu_type1_dma_unmap, {
            iova: 0x104000n,
            size: PAGE,
          }).ret,
      ],
    ];
  });
});

test("FNTH-002/004/008 with mock devices: two domains, fill on attach, replace, hw_info", async () => {
  const k = await bootIommufd();
  const mock = new MockIommu();
  sweep(k, (p) => {
    const s = { fd: -1, ctx: null as IommufdCtx | null, ioas: 0, ioas2: 0, d1: 0, d2: 0, idev: 0 };
    const buf = p.mmap(256 * 1024);
    p.touch(buf, 256 * 1024);
    const task = p.sys.task;
    const md = (pt: number, key: "d1" | "d2") => {
      const r = mockDomain(mock, s.ctx as IommufdCtx, task, pt);
      if (typeof r === "number") return r;
      s[key] = r.stdevId;
      if (key === "d1") s.idev = r.idevId;
      return 0;
    };
    return [
      [
        "open",
        () => {
          s.fd = p.open("/dev/iommu");
          if (s.fd >= 0) s.ctx = task.files.get(s.fd)?.priv as IommufdCtx;
          return s.fd;
        },
      ],
      [
        "IOAS_ALLOC",
        () => {
          const r = p.cmd(s.fd, I.IOMMU_IOAS_ALLOC, I.iommu_ioas_alloc, {});
          s.ioas = r.out.out_ioas_id;
          return r.ret;
        },
      ],
      ["mock device 1", () => md(s.ioas, "d1")],
      ["IOAS_MAP 256K", () => p.map(s.fd, s.ioas, buf, 256n * 1024n, MOCK_APERTURE_START).ret],
      ["mock device 2", () => md(s.ioas, "d2")],
      [
        "GET_HW_INFO",
        () => p.cmd(s.fd, I.IOMMU_GET_HW_INFO, I.iommu_hw_info, { dev_id: s.idev }).ret,
      ],
      ["HWPT_ALLOC", () => p.hwptAlloc(s.fd, s.idev, s.ioas).ret],
      [
        "IOAS_ALLOC 2",
        () => {
          const r = p.cmd(s.fd, I.IOMMU_IOAS_ALLOC, I.iommu_ioas_alloc, {});
          s.ioas2 = r.out.out_ioas_id;
          return r.ret;
        },
      ],
      ["IOAS_MAP 2", () => p.map(s.fd, s.ioas2, buf, 4n * PAGE, MOCK_APERTURE_START).ret],
      [
        "replace d1 → ioas2",
        () => Math.min(0, mockDomainReplace(s.ctx as IommufdCtx, task, s.d1, s.ioas2)),
      ],
      ["DESTROY d1", () => p.destroy(s.fd, s.d1)],
      ["DESTROY d2", () => p.destroy(s.fd, s.d2)],
      ["mock device again", () => md(s.ioas, "d1")],
    ];
  });
});

test("FNTH access: IOMMU_TEST_CMD accesses pin, copy, replace, unmap with a callback, fork", async () => {
  const k = await bootIommufd("cdev-bind", { iommufdTest: true });
  const runs = sweep(k, (p) => {
    const s = { fd: -1, ioas: 0, ioas2: 0, acc: -1, child: null as TaskSyscalls | null };
    const buf = p.sys.mmap(0n, 64 * 1024, 3, V_MAP_SHARED_ANON, -1);
    p.touch(buf, 64 * 1024);
    // The child's IOAS_MAP argument, in memory it shares with the parent (no fault to take).
    const arg = p.sys.mmap(0n, 4096, 3, V_MAP_SHARED_ANON, -1);
    p.touch(arg, 4096);
    const tmp = p.buf + 0x40000n;
    const ioasAlloc = (key: "ioas" | "ioas2") => () => {
      const r = p.cmd(s.fd, I.IOMMU_IOAS_ALLOC, I.iommu_ioas_alloc, {});
      s[key] = r.out.out_ioas_id;
      return r.ret;
    };
    return [
      ["open", () => (s.fd = p.open("/dev/iommu"))],
      ["IOAS_ALLOC", ioasAlloc("ioas")],
      ["IOAS_MAP", () => p.map(s.fd, s.ioas, buf, 64n * 1024n, MOCK_APERTURE_START).ret],
      [
        "CREATE_ACCESS",
        () => {
          const r = p.test(s.fd, I.IOMMU_TEST_OP_CREATE_ACCESS, s.ioas, I.test_create_access, {
            flags: I.MOCK_FLAGS_ACCESS_CREATE_NEEDS_PIN_PAGES,
          });
          s.acc = r.out.out_access_fd;
          return r.ret;
        },
      ],
      [
        "ACCESS_PAGES",
        () =>
          p.test(s.fd, I.IOMMU_TEST_OP_ACCESS_PAGES, s.acc, I.test_access_pages, {
            iova: MOCK_APERTURE_START + PAGE,
            length: 4n * PAGE,
            uptr: buf + PAGE,
          }).ret,
      ],
      [
        "MOCK_DOMAIN",
        () => p.test(s.fd, I.IOMMU_TEST_OP_MOCK_DOMAIN, s.ioas, I.test_mock_domain, {}).ret,
      ],
      [
        "ACCESS_RW slow",
        () =>
          p.test(s.fd, I.IOMMU_TEST_OP_ACCESS_RW, s.acc, I.test_access_rw, {
            iova: MOCK_APERTURE_START + 100n,
            length: 3n * PAGE,
            uptr: tmp,
            flags: I.MOCK_ACCESS_RW_SLOW_PATH,
          }).ret,
      ],
      ["IOAS_ALLOC 2", ioasAlloc("ioas2")],
      ["IOAS_MAP 2", () => p.map(s.fd, s.ioas2, buf, 16n * PAGE, MOCK_APERTURE_START).ret],
      [
        "ACCESS_REPLACE_IOAS",
        () =>
          p.test(s.fd, I.IOMMU_TEST_OP_ACCESS_REPLACE_IOAS, s.acc, I.test_access_replace_ioas, {
            ioas_id: s.ioas2,
          }).ret,
      ],
      [
        "ACCESS_PAGES 2",
        () =>
          p.test(s.fd, I.IOMMU_TEST_OP_ACCESS_PAGES, s.acc, I.test_access_pages, {
            iova: MOCK_APERTURE_START,
            length: 8n * PAGE,
            uptr: buf,
          }).ret,
      ],
      ["IOAS_UNMAP 2 (unmap callback)", () => p.unmap(s.fd, s.ioas2, 0n, ULONG_MAX).ret],
      [
        "fork",
        () => {
          const c = p.fork();
          if (typeof c === "number") return c;
          s.child = c;
          return 0;
        },
      ],
      [
        "child IOAS_MAP 2",
        () => {
          const m = I.iommu_ioas_map;
          const v = { ...m.decode(new Uint8Array(0)), size: m.size, flags: 7, ioas_id: s.ioas2 };
          p.sys.poke(
            arg,
            m.encode({ ...v, user_va: buf, length: 16n * PAGE, iova: MOCK_APERTURE_START }),
          );
          return (s.child as TaskSyscalls).ioctl(s.fd, I.IOMMU_IOAS_MAP, arg);
        },
      ],
      [
        "MOCK_DOMAIN 2 (pins from the child)",
        () => p.test(s.fd, I.IOMMU_TEST_OP_MOCK_DOMAIN, s.ioas2, I.test_mock_domain, {}).ret,
      ],
      [
        "child exits",
        () => {
          (s.child as TaskSyscalls).task.exit();
          return 0;
        },
      ],
      ["close access", () => p.sys.close(s.acc)],
    ];
  });
  assert.ok(runs > 15, `the flow met ${runs - 1} fallible allocations`);
});
