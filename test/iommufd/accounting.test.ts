/**
 * Locked-memory accounting of iommufd's pinned pages (pages.c do_update_pinned): charged
 * only when something pins (a domain), once per page however many areas and domains use
 * it, to the user's locked_vm against RLIMIT_MEMLOCK by default, to the mm's locked_vm in
 * RLIMIT_MODE 1 (and on /dev/vfio/vfio), not at all with CAP_IPC_LOCK.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { err } from "../../src/uapi/errno.js";
import * as I from "../../src/uapi/iommufd.js";
import type { Kernel } from "../../src/kernel/kernel.js";
import type { Capability } from "../../src/kernel/core/task.js";
import type { IommufdCtx } from "../../src/kernel/iommufd/main.js";
import { MOCK_APERTURE_START, mockDomain, MockIommu } from "../../src/kernel/iommufd/selftest.js";
import { bootIommufd, PAGE, Proc } from "./support.js";

const MS = MOCK_APERTURE_START;
const UID = 1000;
const mock = new MockIommu();

function user(k: Kernel, caps: Capability[] = [], memlock = 16n * PAGE) {
  const p = Proc.spawn(k, { uid: UID, caps, memlock });
  const fd = p.open("/dev/iommu");
  const ctx = p.sys.task.files.get(fd)?.priv as IommufdCtx;
  const ioas = p.ioasAlloc(fd);
  const buf = p.mmap(64 * 4096);
  p.touch(buf, 64 * 4096);
  return { p, fd, ctx, ioas, buf };
}

const withDomain = (u: ReturnType<typeof user>) =>
  assert.ok(typeof mockDomain(mock, u.ctx, u.p.sys.task, u.ioas) !== "number");

test("nothing is charged without a domain; the attach charges what it pins", async () => {
  const k = await bootIommufd();
  const u = user(k);
  assert.equal(u.p.map(u.fd, u.ioas, u.buf, 8n * PAGE, MS).ret, 0);
  assert.equal(k.iommufd?.userLockedVm.get(UID), 0);
  withDomain(u);
  assert.equal(k.iommufd?.userLockedVm.get(UID), 8);
  assert.equal(u.p.unmap(u.fd, u.ioas, MS, 8n * PAGE).ret, 0);
  assert.equal(k.iommufd?.userLockedVm.get(UID), 0);
});

test("USER mode: RLIMIT_MEMLOCK of the mapping task, shared by every process of the user", async () => {
  const k = await bootIommufd();
  const a = user(k);
  withDomain(a);
  assert.equal(a.p.map(a.fd, a.ioas, a.buf, 12n * PAGE, MS).ret, 0);
  const b = user(k);
  withDomain(b);
  assert.equal(b.p.map(b.fd, b.ioas, b.buf, 8n * PAGE, MS).ret, err("ENOMEM"), "12 + 8 > 16");
  assert.equal(b.p.map(b.fd, b.ioas, b.buf, 4n * PAGE, MS).ret, 0, "12 + 4 = 16");
  assert.equal(k.iommufd?.userLockedVm.get(UID), 16);
  assert.equal(a.p.sys.task.mm.lockedVm, 0, "the mm is not charged in this mode");
  a.p.sys.task.exit();
  assert.equal(k.iommufd?.userLockedVm.get(UID), 4);
});

test("a page is charged once: a second domain and a COPY pin nothing more", async () => {
  const k = await bootIommufd();
  const u = user(k);
  withDomain(u);
  withDomain(u);
  assert.equal(u.p.map(u.fd, u.ioas, u.buf, 8n * PAGE, MS).ret, 0);
  assert.equal(k.iommufd?.userLockedVm.get(UID), 8);
  const ioas2 = u.p.ioasAlloc(u.fd);
  assert.ok(typeof mockDomain(mock, u.ctx, u.p.sys.task, ioas2) !== "number");
  const copy = u.p.cmd(u.fd, I.IOMMU_IOAS_COPY, I.iommu_ioas_copy, {
    flags: 7,
    dst_ioas_id: ioas2,
    src_ioas_id: u.ioas,
    length: 8n * PAGE,
    dst_iova: MS,
    src_iova: MS,
  });
  assert.equal(copy.ret, 0);
  assert.equal(k.iommufd?.userLockedVm.get(UID), 8, "the copy shares the pinned pages");
  assert.equal(u.p.unmap(u.fd, u.ioas, MS, 8n * PAGE).ret, 0);
  assert.equal(k.iommufd?.userLockedVm.get(UID), 8, "still pinned for the copy");
  assert.equal(u.p.unmap(u.fd, ioas2, MS, 8n * PAGE).ret, 0);
  assert.equal(k.iommufd?.userLockedVm.get(UID), 0);
});

test("MM mode (RLIMIT_MODE 1, or /dev/vfio/vfio): the mm's locked_vm; CAP_IPC_LOCK: nothing", async () => {
  const k = await bootIommufd();
  const p = Proc.spawn(k, { uid: UID, caps: ["CAP_SYS_RESOURCE"], memlock: 16n * PAGE });
  const fd = p.open("/dev/iommu");
  assert.equal(p.option(fd, I.IOMMU_OPTION_RLIMIT_MODE, I.IOMMU_OPTION_OP_SET, 0, 1n).ret, 0);
  const ctx = p.sys.task.files.get(fd)?.priv as IommufdCtx;
  const ioas = p.ioasAlloc(fd);
  assert.ok(typeof mockDomain(mock, ctx, p.sys.task, ioas) !== "number");
  const buf = p.mmap(64 * 4096);
  p.touch(buf, 64 * 4096);
  assert.equal(p.map(fd, ioas, buf, 16n * PAGE, MS).ret, 0);
  assert.equal(p.sys.task.mm.lockedVm, 16);
  assert.equal(k.iommufd?.userLockedVm.get(UID), 0);
  assert.equal(p.map(fd, ioas, buf, PAGE, MS + 16n * PAGE).ret, err("ENOMEM"));
  // The compat node opens in MM mode.
  const c = p.open("/dev/vfio/vfio");
  assert.equal(p.option(c, I.IOMMU_OPTION_RLIMIT_MODE, I.IOMMU_OPTION_OP_GET, 0).out.val64, 1n);
  // With CAP_IPC_LOCK nothing is charged, whatever the limit.
  const q = user(k, ["CAP_IPC_LOCK"], 0n);
  withDomain(q);
  assert.equal(q.p.map(q.fd, q.ioas, q.buf, 32n * PAGE, MS).ret, 0);
  assert.equal(k.iommufd?.userLockedVm.get(UID), 0);
  assert.equal(q.p.sys.task.mm.lockedVm, 0);
});
