/**
 * The `vmm` scenario op: give devices to a VM the way a VMM does on the kernel it runs on,
 * so that one scenario (what to assign, what the guest does) runs under every design of
 * the VFIO–KVM interface. The kernel's profile and build pick the design:
 *
 * | design     | kernel                       | the VMM's calls                                        |
 * |------------|------------------------------|--------------------------------------------------------|
 * | "group"    | no VFIO device cdev          | container + VFIO group fds, type1 DMA map, kvm-vfio    |
 * |            | (the 2013 design; 3.13 on)   | KVM_DEV_VFIO_GROUP_ADD of each group fd (QEMU's flow)  |
 * | "cdev"     | iommufd build, profile 6.12  | /dev/iommu, device cdevs added to kvm-vfio (FILE_ADD,  |
 * |            |                              | before binding), BIND_IOMMUFD, an IOAS, attach, map    |
 * | "proposal" | iommufd build, profile       | the same without kvm-vfio, then KVM_ALLOW_INCOHERENT_  |
 * |            | "2021-proposal" (NEVER       | DMA(iommufd, device ID) per device; a refusal (EPERM:  |
 * |            | MERGED)                      | the device cannot do no-snoop) is an answer, not a bug |
 *
 * Step fields: `assign: [{ device: BDF, as: NAME }]` (each device's fd gets NAME), `ram:
 * { size, as }` (anonymous memory mapped at guest-physical 0 and IOVA 0), `vm` and `vcpu`
 * (names for the VM and its one vCPU fd; default "vm" and "vcpu").
 */
import { z } from "zod";
import type { Kernel } from "../../kernel/kernel.js";
import * as I from "../../uapi/iommufd.js";
import type { Step, Value } from "./schema.js";

export type DesignName = "group" | "cdev" | "proposal";

export class VmmOpError extends Error {}

/** One call of the VMM: a scenario step, a short name for it, whether failing is an answer. */
export interface VmmCall {
  step: Step;
  call: string;
  mayFail?: boolean;
}

const int = z.union([
  z.number().int().min(0),
  z.string().regex(/^(0x[0-9a-f]+|\d+)$/i, "expected an integer"),
]);
const name = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "expected an fd name");

const vmmSchema = z.strictObject({
  assign: z
    .array(
      z.strictObject({
        device: z.string().regex(/^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/i, "expected a BDF"),
        as: name,
      }),
    )
    .min(1),
  ram: z.strictObject({ size: int, as: name }),
  vm: name.default("vm"),
  vcpu: name.default("vcpu"),
});
export type VmmSpec = z.infer<typeof vmmSchema>;

/** Fields every step has; the rest of a `vmm` step is the schema's. */
const STEP_FIELDS = new Set(["op", "note", "process", "expect"]);

/** A `vmm` step's own fields, validated. */
export function parseVmm(s: Record<string, unknown>) {
  return vmmSchema.safeParse(
    Object.fromEntries(Object.entries(s).filter(([k]) => !STEP_FIELDS.has(k))),
  );
}

/** The design a kernel's VMM uses (the table above). */
export function designOf(kernel: Kernel): DesignName {
  if (!kernel.build.vfioDeviceCdev) return "group";
  return kernel.profile.incoherentDmaIoctls ? "proposal" : "cdev";
}

const ioctl = (fd: string, req: string, arg: Value, extra: Record<string, Value> = {}): Step => ({
  op: "ioctl",
  fd,
  req,
  arg,
  ...extra,
});

/** A VM with guest RAM at guest-physical 0 and one vCPU; the VMM has mapped the RAM already. */
function kvmSteps(spec: VmmSpec): VmmCall[] {
  return [
    { step: { op: "open", path: "/dev/kvm", as: "kvm" }, call: "open /dev/kvm" },
    { step: ioctl("kvm", "KVM_CREATE_VM", 0, { as: spec.vm }), call: "KVM_CREATE_VM" },
    {
      step: ioctl(spec.vm, "KVM_SET_USER_MEMORY_REGION", {
        kvm_userspace_memory_region: {
          slot: 0,
          guest_phys_addr: 0,
          memory_size: spec.ram.size,
          userspace_addr: `$${spec.ram.as}`,
        },
      }),
      call: "KVM_SET_USER_MEMORY_REGION",
    },
    { step: ioctl(spec.vm, "KVM_CREATE_VCPU", 0, { as: spec.vcpu }), call: "KVM_CREATE_VCPU" },
  ];
}

const createKvmVfio = (spec: VmmSpec): VmmCall => ({
  step: ioctl(
    spec.vm,
    "KVM_CREATE_DEVICE",
    { kvm_create_device: { type: "KVM_DEV_TYPE_VFIO" } },
    { bind: { fd: "kvfio" } },
  ),
  call: "KVM_CREATE_DEVICE(KVM_DEV_TYPE_VFIO)",
});

/** KVM_SET_DEVICE_ATTR on kvm-vfio with an fd payload (GROUP_ADD and FILE_ADD are one attr). */
const kvmVfioAdd = (fd: string, call: string): VmmCall => ({
  step: ioctl("kvfio", "KVM_SET_DEVICE_ATTR", {
    kvm_device_attr: {
      group: "KVM_DEV_VFIO_FILE",
      attr: "KVM_DEV_VFIO_FILE_ADD",
      addr: { struct: [["s32", "fd", `$${fd}`]] },
    },
  }),
  call,
});

const mmapRam = (spec: VmmSpec): VmmCall => ({
  step: { op: "mmap", size: spec.ram.size, as: spec.ram.as },
  call: "mmap guest RAM",
});

/** The 2013 design: VFIO groups in a type1 container, their fds given to kvm-vfio. */
function groupCalls(spec: VmmSpec, groupOf: (bdf: string) => string): VmmCall[] {
  const groups = [...new Set(spec.assign.map((a) => groupOf(a.device)))];
  const gname = (g: string) => `group${g}`;
  return [
    { step: { op: "open", path: "/dev/vfio/vfio", as: "container" }, call: "open /dev/vfio/vfio" },
    ...groups.flatMap((g): VmmCall[] => [
      { step: { op: "open", path: `/dev/vfio/${g}`, as: gname(g) }, call: `open /dev/vfio/${g}` },
      {
        step: ioctl(gname(g), "VFIO_GROUP_SET_CONTAINER", {
          struct: [["s32", "fd", "$container"]],
        }),
        call: "VFIO_GROUP_SET_CONTAINER",
      },
    ]),
    {
      step: ioctl("container", "VFIO_SET_IOMMU", "VFIO_TYPE1_IOMMU"),
      call: "VFIO_SET_IOMMU(VFIO_TYPE1_IOMMU)",
    },
    ...spec.assign.map((a): VmmCall => ({
      step: { op: "device_fd", group: gname(groupOf(a.device)), device: a.device, as: a.as },
      call: "VFIO_GROUP_GET_DEVICE_FD",
    })),
    mmapRam(spec),
    {
      step: {
        op: "map_dma",
        container: "container",
        buf: spec.ram.as,
        iova: 0,
        size: spec.ram.size,
      },
      call: "VFIO_IOMMU_MAP_DMA",
    },
    ...kvmSteps(spec),
    createKvmVfio(spec),
    ...groups.map((g) => kvmVfioAdd(gname(g), "KVM_DEV_VFIO_GROUP_ADD(group fd)")),
  ];
}

/** The iommufd designs: device cdevs bound to /dev/iommu, one IOAS for guest RAM. */
function cdevCalls(spec: VmmSpec, proposal: boolean): VmmCall[] {
  const devid = (as: string) => `${as}_devid`;
  const opens = spec.assign.map((a): VmmCall => ({
    step: { op: "open", path: `/dev/vfio/devices/{cdev:${a.device}}`, as: a.as },
    call: "open /dev/vfio/devices/vfioN",
  }));
  const kvm = kvmSteps(spec);
  // 6.12: kvm-vfio hears of each cdev before it is bound (the device takes the VM at bind).
  const kvmVfio = proposal
    ? []
    : [
        createKvmVfio(spec),
        ...spec.assign.map((a) => kvmVfioAdd(a.as, "KVM_DEV_VFIO_FILE_ADD(cdev fd)")),
      ];
  return [
    { step: { op: "open", path: "/dev/iommu", as: "iommufd" }, call: "open /dev/iommu" },
    ...opens,
    ...kvm.slice(0, 2),
    ...kvmVfio,
    ...spec.assign.map((a): VmmCall => ({
      step: ioctl(
        a.as,
        "VFIO_DEVICE_BIND_IOMMUFD",
        { vfio_device_bind_iommufd: { iommufd: "$iommufd" } },
        { bind: { out_devid: devid(a.as) } },
      ),
      call: "VFIO_DEVICE_BIND_IOMMUFD",
    })),
    {
      step: ioctl(
        "iommufd",
        "IOMMU_IOAS_ALLOC",
        { iommu_ioas_alloc: { size: I.iommu_ioas_alloc.size } },
        { bind: { out_ioas_id: "ioas" } },
      ),
      call: "IOMMU_IOAS_ALLOC",
    },
    ...spec.assign.map((a): VmmCall => ({
      step: ioctl(a.as, "VFIO_DEVICE_ATTACH_IOMMUFD_PT", {
        vfio_device_attach_iommufd_pt: { pt_id: "$ioas" },
      }),
      call: "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
    })),
    mmapRam(spec),
    {
      step: ioctl("iommufd", "IOMMU_IOAS_MAP", {
        iommu_ioas_map: {
          size: I.iommu_ioas_map.size,
          flags:
            I.IOMMU_IOAS_MAP_FIXED_IOVA | I.IOMMU_IOAS_MAP_READABLE | I.IOMMU_IOAS_MAP_WRITEABLE,
          ioas_id: "$ioas",
          user_va: `$${spec.ram.as}`,
          length: spec.ram.size,
          iova: 0,
        },
      }),
      call: "IOMMU_IOAS_MAP",
    },
    ...kvm.slice(2),
    ...(proposal
      ? spec.assign.map((a): VmmCall => ({
          step: ioctl(spec.vm, "KVM_ALLOW_INCOHERENT_DMA", {
            kvm_incoherent_dma: { iommufd: "$iommufd", dev_id: `$${devid(a.as)}` },
          }),
          call: "KVM_ALLOW_INCOHERENT_DMA(iommufd, dev_id)",
          mayFail: true,
        }))
      : []),
  ];
}

/**
 * The `vmm` step's calls on `kernel`, each to be run in order. `readlink` is the VMM's
 * readlink (null on failure), for the IOMMU group of a device.
 */
export function vmmCalls(
  s: Record<string, Value>,
  kernel: Kernel,
  readlink: (path: string) => string | null,
): VmmCall[] {
  const parsed = parseVmm(s);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    throw new VmmOpError(`vmm: ${i?.path.join(".") || "step"}: ${i?.message ?? "invalid"}`);
  }
  const spec = parsed.data;
  const bind = spec.assign.map((a): VmmCall => ({
    step: { op: "bind_vfio", device: a.device },
    call: "bind vfio-pci",
  }));
  const design = designOf(kernel);
  if (design !== "group") return [...bind, ...cdevCalls(spec, design === "proposal")];
  const groupOf = (bdf: string): string => {
    const g = readlink(`/sys/bus/pci/devices/${bdf}/iommu_group`);
    if (g === null) throw new VmmOpError(`vmm: ${bdf} has no IOMMU group`);
    return g;
  };
  return [...bind, ...groupCalls(spec, groupOf)];
}
