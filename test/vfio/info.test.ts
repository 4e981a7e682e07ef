/**
 * VFIO_DEVICE_GET_INFO's capability chain (vfio_pci_ioctl_get_info, Linux 6.12): the
 * AtomicOps completer capability appears when the device completes AtomicOps and the
 * root port routes the same sizes; pci_enable_atomic_ops_to_root() then enables AtomicOp
 * requests on the device. argsz too small for the chain gets CAPS and the size needed.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { buildHost } from "../../src/host/build.js";
import type { HostSpec } from "../../src/host/spec.js";
import * as R from "../../src/uapi/pci_regs.js";
import * as U from "../../src/uapi/vfio.js";
import { bootHost } from "../../src/userspace/boot.js";
import { Proc, testBackend } from "./support.js";

const EP = "0000:01:00.0";
const COMP = {
  32: R.PCI_EXP_DEVCAP2_ATOMIC_COMP32,
  64: R.PCI_EXP_DEVCAP2_ATOMIC_COMP64,
  128: R.PCI_EXP_DEVCAP2_ATOMIC_COMP128,
};

/** A root port completing 32/64-bit AtomicOps, an endpoint able to complete all sizes. */
function host(): ReturnType<typeof buildHost> {
  const fn = (hdr: Record<number, [number, number]>) => {
    const b = Buffer.alloc(4096);
    for (const [off, [len, v]] of Object.entries(hdr)) b.writeUIntLE(v, Number(off), len);
    return b.toString("hex");
  };
  const pcie = (type: number, devcap2: number): Record<number, [number, number]> => ({
    [R.PCI_STATUS]: [2, R.PCI_STATUS_CAP_LIST],
    [R.PCI_CAPABILITY_LIST]: [1, 0x40],
    0x40: [4, ((0x0002 | (type << 4)) << 16) | R.PCI_CAP_ID_EXP],
    [0x40 + R.PCI_EXP_DEVCAP2]: [4, devcap2],
  });
  const spec: HostSpec = {
    name: "atomics",
    kernel: { cmdline: "" },
    iommu: [
      { kind: "intel-vtd", name: "dmar0", cap: "0xd2008c22260206", ecap: "0xf00fca", segment: 0 },
    ],
    unprivileged: false,
    functions: [
      {
        addr: "0000:00:02.0",
        config: fn({
          0: [4, 0x000c1b36],
          [R.PCI_COMMAND]: [2, 0x0007],
          [R.PCI_CLASS_REVISION]: [4, 0x06040000],
          [R.PCI_HEADER_TYPE]: [1, R.PCI_HEADER_TYPE_BRIDGE],
          [R.PCI_SECONDARY_BUS]: [1, 1],
          [R.PCI_SUBORDINATE_BUS]: [1, 1],
          ...pcie(R.PCI_EXP_TYPE_ROOT_PORT, COMP[32] | COMP[64]),
        }),
      },
      {
        addr: EP,
        config: fn({
          0: [4, 0x00011234],
          [R.PCI_CLASS_REVISION]: [4, 0xff000000],
          ...pcie(R.PCI_EXP_TYPE_ENDPOINT, COMP[32] | COMP[64] | COMP[128]),
        }),
      },
    ],
  };
  return buildHost(spec, "atomics");
}

test("the AtomicOps capability: sizes the root port completes, argsz rules, requests enabled", () => {
  const k = bootHost(host());
  assert.equal(k.vfio.iommuDrivers.register(testBackend), 0);
  const p = new Proc(k.spawn());
  const { dev } = p.openDevice(EP);
  const S = U.vfio_device_info;
  const info = (argsz: number) => {
    const ret = p.ioctl(
      dev,
      U.VFIO_DEVICE_GET_INFO,
      S.encode({ argsz, flags: 0, num_regions: 0, num_irqs: 0, cap_offset: 0, pad: 0 }),
      new Uint8Array(16),
    );
    return { ret, ...S.decode(p.peek(0, S.size)), cap: p.peek(S.size, 16) };
  };
  const small = info(24);
  assert.equal(small.ret, 0);
  assert.equal(small.flags & U.VFIO_DEVICE_FLAGS_CAPS, U.VFIO_DEVICE_FLAGS_CAPS);
  assert.deepEqual([small.argsz, small.cap_offset], [40, 0]);
  // With argsz up to num_irqs only, the needed size still comes back in argsz.
  const minimal = info(16);
  assert.deepEqual([minimal.argsz, minimal.cap_offset], [40, 0]);
  const full = info(40);
  assert.deepEqual([full.argsz, full.cap_offset], [40, 24]);
  const cap = U.vfio_device_info_cap_pci_atomic_comp.decode(full.cap);
  assert.deepEqual(
    [cap.id, cap.version, cap.next, cap.flags],
    [
      U.VFIO_DEVICE_INFO_CAP_PCI_ATOMIC_COMP,
      1,
      0,
      U.VFIO_PCI_ATOMIC_COMP32 | U.VFIO_PCI_ATOMIC_COMP64,
    ],
  );
  const devctl2 = p.hwConfig(EP, 0x40 + R.PCI_EXP_DEVCTL2, 2);
  assert.equal(devctl2 & R.PCI_EXP_DEVCTL2_ATOMIC_REQ, R.PCI_EXP_DEVCTL2_ATOMIC_REQ);
});
