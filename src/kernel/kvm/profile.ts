/**
 * Kernel-era profiles for KVM: what changed in the kvm-vfio pseudo device (virt/kvm/vfio.c)
 * between the original series (Linux 3.13, "KVM-VFIO pseudo device for VFIO coherency",
 * Oct 2013) and Linux 6.12. A profile is data; kvm/vfio.ts picks its behaviour from these
 * columns and never tests a version anywhere else.
 *
 * | column    | 3.13                        | 3.15                        | 6.12                        |
 * |-----------|-----------------------------|-----------------------------|-----------------------------|
 * | entries   | "group": a VFIO external-user reference (vfio_group_get_  | "file": a reference on the  |
 * |           | external_user): group fds only, attached to a container   | struct file: any group or   |
 * |           | with an IOMMU backend set, else EINVAL (on DEL too);      | device file, no container   |
 * |           | duplicates by group; no kvm pointer for VFIO, no          | needed; the kvm pointer goes|
 * |           | assigned-device count                                     | to VFIO, assignments counted|
 * | coherency | "assume-noncoherent": any   | "container": the group's    | "file": vfio_file_enforced_ |
 * |           | group is (the series' TODO, | container answers VFIO_DMA_ | coherent (every device can  |
 * |           | e0f0bbc527f6)               | CC_IOMMU (9d830d47c704)     | force snooping)             |
 * | lifetime  | "destroy": only at VM teardown (closing the device fd     | "release": on the last close|
 * |           | only drops its VM reference)                              | of the device fd (v6.2+)    |
 *
 * The KVM device framework (kvm_main.c) is the 6.12 one in every profile: only kvm-vfio's
 * own behaviour is selected here.
 */
export type ProfileName = "6.12" | "3.15" | "3.13";
export type KvmVfioEntries = "group" | "file";
export type KvmVfioCoherency = "assume-noncoherent" | "container" | "file";
export type KvmDeviceLifetime = "destroy" | "release";

export interface KvmProfile {
  readonly name: ProfileName;
  /** The kernel file and version the profile follows, for explanations. */
  readonly source: string;
  readonly kvmVfio: {
    readonly entries: KvmVfioEntries;
    readonly coherency: KvmVfioCoherency;
    readonly lifetime: KvmDeviceLifetime;
  };
}

export const PROFILES: Readonly<Record<ProfileName, KvmProfile>> = {
  "6.12": {
    name: "6.12",
    source: "virt/kvm/vfio.c, Linux 6.12",
    kvmVfio: { entries: "file", coherency: "file", lifetime: "release" },
  },
  "3.15": {
    name: "3.15",
    source: "virt/kvm/vfio.c with 'kvm/vfio: Support for DMA coherent IOMMUs', Linux 3.15",
    kvmVfio: { entries: "group", coherency: "container", lifetime: "destroy" },
  },
  "3.13": {
    name: "3.13",
    source:
      "virt/kvm/vfio.c of 'kvm: Add VFIO device' and 'kvm: Create non-coherent DMA registeration', Linux 3.13",
    kvmVfio: { entries: "group", coherency: "assume-noncoherent", lifetime: "destroy" },
  },
};

export const DEFAULT_PROFILE: ProfileName = "6.12";
