/**
 * KVM's side of coherency with a guest running (kernel/kvm/x86.ts, vcpu.ts): a guest
 * WBINVD is a NOP unless noncoherent DMA is registered, then it flushes every host CPU in
 * the vCPU's wbinvd_dirty_mask, which grows in vcpu_load; the EPT memory type follows the
 * registration; guest memory comes from KVM_SET_USER_MEMORY_REGION. Observed as a VMM and
 * a guest would: what the guest read, what RAM holds, exit counts and simulated costs.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { BAR, BUF, FILE_ADD, FILE_DEL, MMIO, ram, vmm } from "./support.js";

const A = 0x20000;
const B = 0x30000;
const guest = (program: unknown[], extra: Record<string, unknown> = {}) => ({
  op: "guest",
  vcpu: "vcpu",
  mmio: MMIO,
  program,
  ...extra,
});

test("without registration a guest WBINVD is skipped: the guest's dirty lines stay cached", async () => {
  const program = [{ store: A, byte: 0x6b, len: 64 }, "wbinvd"];
  const off = await vmm([guest(program, { cpu: 0 })]);
  const on = await vmm([guest(program, { cpu: 0 })], { fileAdd: true });
  assert.deepEqual([off.failures, on.failures], [[], []]);
  assert.equal(ram(off, A, 2), "0000", "RAM never saw the store");
  assert.equal(ram(on, A, 2), "6b6b", "the executed WBINVD wrote it back");
  assert.deepEqual(
    [off.outs[0]?.wbinvd_exits, off.outs[0]?.host_wbinvds, on.outs[0]?.host_wbinvds],
    [1, 0, 1],
  );
  assert.ok((on.outs[0]?.ns as number) > (off.outs[0]?.ns as number) + 10000, "a flush costs");
});

test("the dirty mask grows when the vCPU migrates: WBINVD flushes every CPU it ran on", async () => {
  const migrated = await vmm(
    [
      guest(
        [
          { store: A, byte: 0xa1, len: 64 },
          { preempt: 1 },
          { store: B, byte: 0xb2, len: 64 },
          "wbinvd",
        ],
        { cpu: 0 },
      ),
    ],
    { fileAdd: true },
  );
  assert.deepEqual(migrated.failures, []);
  const out = migrated.outs[0];
  assert.equal(out?.host_wbinvds, 2, "CPUs 0 and 1");
  assert.ok((out?.other_cpus_ns as number) > 0, "CPU 0 was interrupted for it");
  assert.equal(ram(migrated, A, 1), "a1", "CPU 0's dirty line was written back");
  assert.equal(ram(migrated, B, 1), "b2");
  const info = migrated.kernel.debug.vms()[0]?.vcpuStats[0];
  assert.deepEqual([info?.cpu, info?.wbinvdDirtyMask], [1, []], "the mask empties after WBINVD");

  const stayed = await vmm([guest([{ store: A, byte: 0xa1, len: 64 }, "wbinvd"], { cpu: 0 })], {
    fileAdd: true,
  });
  assert.deepEqual([stayed.outs[0]?.host_wbinvds, stayed.outs[0]?.other_cpus_ns], [1, 0]);
});

test("a CPU the vCPU left before registration is not in the mask (vcpu_load marks only while registered)", async () => {
  const r = await vmm([
    guest([{ store: A, byte: 0xc7, len: 64 }], { cpu: 0 }),
    FILE_ADD,
    guest(["wbinvd"], { cpu: 1 }),
  ]);
  assert.deepEqual(r.failures, []);
  assert.equal(r.outs[1]?.host_wbinvds, 1, "only CPU 1 was flushed");
  assert.equal(ram(r, A, 1), "00", "CPU 0 still holds the guest's dirty line");
});

test("EPT memory type and SPTE zaps follow the first and last registration; NPT has neither", async () => {
  const info = { op: "vm_info", vm: "vm" };
  const r = await vmm([info, FILE_ADD, info, FILE_DEL, info]);
  assert.deepEqual(r.failures, []);
  assert.deepEqual(
    r.outs.map((o) => [o.noncoherent_dma_count, o.ept_mt_mask, o.guest_pat, o.spte_zaps]),
    [
      [0, "0x70", "ignored", 0],
      [1, "0x30", "honoured", 1],
      [0, "0x70", "ignored", 2],
    ],
  );
  const amd = await vmm([info, FILE_ADD, info], { host: "nsgpu-amdvi.yaml" });
  assert.deepEqual(
    amd.outs.map((o) => [o.noncoherent_dma_count, o.ept_mt_mask, o.guest_pat, o.spte_zaps]),
    [
      [0, null, "honoured", 0],
      [0, null, "honoured", 0],
    ],
    "AMD-Vi enforces coherency: nothing registered",
  );
});

test("a guest that keeps its No Snoop buffer coherent with CLFLUSH needs no WBINVD emulation", async () => {
  const program = [
    { store: BUF, byte: 0, len: 64 },
    { clflush: BUF, len: 64 },
    { load: BUF, len: 4 },
    { store: BAR + 0x08, u32: BUF },
    { store: BAR + 0x18, u32: 64 },
    { store: BAR + 0x1c, u32: 0x0badf00d },
    { store: BAR + 0x04, u32: 1 },
    { store: BAR + 0x20, u32: 1 },
    { clflush: BUF, len: 64 },
    { load: BUF, len: 8 },
  ];
  const r = await vmm([guest(program)]);
  assert.deepEqual(r.failures, []);
  assert.deepEqual(r.outs[0]?.reads, ["00000000", "0df0ad0b0df0ad0b"]);
  assert.deepEqual([r.outs[0]?.wbinvd_exits, r.outs[0]?.host_wbinvds], [0, 0]);
  // Without the second CLFLUSH the same guest reads its stale line.
  const stale = await vmm([guest(program.filter((_, i) => i !== 8))]);
  assert.deepEqual(stale.outs[0]?.reads, ["00000000", "0000000000000000"]);
});

test("an MMIO access wider than 8 bytes reaches the VMM as 8-byte fragments", async () => {
  const r = await vmm([
    guest([
      { store: BAR + 0x08, hex: "44332211887766551000000000000000" },
      { load: BAR, len: 16 },
    ]),
  ]);
  assert.deepEqual(r.failures, []);
  assert.equal(r.outs[0]?.mmio_exits, 2, "two instructions exited");
  const calls = r.steps.at(-1)?.results.map((x) => x.req ?? x.op);
  assert.deepEqual(calls, [
    ...["KVM_RUN", "pwrite", "KVM_RUN", "pwrite"],
    ...["KVM_RUN", "pread", "KVM_RUN", "pread"],
    ...["KVM_RUN", "guest"],
  ]);
  // ID 0x6e730001, CTRL 0, DST_LO, DST_HI as written.
  assert.deepEqual(r.outs[0]?.reads, ["0100736e000000004433221188776655"]);
});

test("guest memory the VMM never mapped fails KVM_RUN with EFAULT", async () => {
  const r = await vmm([
    {
      op: "ioctl",
      fd: "vm",
      req: "KVM_SET_USER_MEMORY_REGION",
      arg: {
        kvm_userspace_memory_region: {
          slot: 1,
          guest_phys_addr: 0x40000000,
          memory_size: 0x1000,
          userspace_addr: 0x10000000,
        },
      },
    },
    { ...guest([{ load: 0x40000000, len: 4 }]), expect: { errno: "EFAULT" } },
  ]);
  assert.deepEqual(r.failures, []);
  assert.equal(r.outs[0]?.exit, "error");
});

test("KVM_RUN of a vCPU given no program is an emulation failure (the model fetches no code)", async () => {
  const r = await vmm([{ op: "ioctl", fd: "vcpu", req: "KVM_RUN", arg: 0 }]);
  assert.deepEqual(r.failures, []);
  const vcpu = r.kernel.debug.vms()[0]?.vcpuStats[0];
  assert.equal(vcpu?.exitReason, 17, "KVM_EXIT_INTERNAL_ERROR");
  assert.equal(vcpu?.stats.runs, 0, "the guest never entered");
});
