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
 *
 * "2021-proposal" is NOT a kernel era: it is a design that was proposed and never merged
 * (the "/dev/ioasid uAPI proposal" RFC thread, June 2021), kept as an experimental
 * profile to compare with the merged ones. On a 6.12 kernel, KVM gets two VM requests,
 * KVM_ALLOW_INCOHERENT_DMA / KVM_DISALLOW_INCOHERENT_DMA (kvm/incoherent_dma.ts), and
 * kvm-vfio keeps its 6.12 entries and lifetime but no longer decides coherency
 * (coherency "vmm": "No kernel call backs, no kernel auto-sync" — the VMM asks).
 */
export type ProfileName = "6.12" | "3.15" | "3.13" | "2021-proposal";
export type KvmVfioEntries = "group" | "file";
export type KvmVfioCoherency = "assume-noncoherent" | "container" | "file" | "vmm";
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
  /** The VM requests KVM_ALLOW/DISALLOW_INCOHERENT_DMA exist (never merged). */
  readonly incoherentDmaIoctls: boolean;
  /** False for a design that never reached a kernel release. */
  readonly merged: boolean;
}

export const PROFILES: Readonly<Record<ProfileName, KvmProfile>> = {
  "6.12": {
    name: "6.12",
    source: "virt/kvm/vfio.c, Linux 6.12",
    kvmVfio: { entries: "file", coherency: "file", lifetime: "release" },
    incoherentDmaIoctls: false,
    merged: true,
  },
  "3.15": {
    name: "3.15",
    source: "virt/kvm/vfio.c with 'kvm/vfio: Support for DMA coherent IOMMUs', Linux 3.15",
    kvmVfio: { entries: "group", coherency: "container", lifetime: "destroy" },
    incoherentDmaIoctls: false,
    merged: true,
  },
  "3.13": {
    name: "3.13",
    source:
      "virt/kvm/vfio.c of 'kvm: Add VFIO device' and 'kvm: Create non-coherent DMA registeration', Linux 3.13",
    kvmVfio: { entries: "group", coherency: "assume-noncoherent", lifetime: "destroy" },
    incoherentDmaIoctls: false,
    merged: true,
  },
  "2021-proposal": {
    name: "2021-proposal",
    source:
      "NEVER MERGED: KVM_ALLOW_INCOHERENT_DMA(iommufd, device label) of the '/dev/ioasid uAPI proposal' RFC thread (June 2021), on Linux 6.12",
    kvmVfio: { entries: "file", coherency: "vmm", lifetime: "release" },
    incoherentDmaIoctls: true,
    merged: false,
  },
};

export const DEFAULT_PROFILE: ProfileName = "6.12";
