/**
 * Symbolic names for scenarios: every numeric constant and struct codec the uAPI modules
 * export, so a scenario can say VFIO_TYPE1v2_IOMMU or vfio_iommu_type1_dma_map instead
 * of numbers and field lists.
 */
import { StructCodec, type FieldType } from "./struct.js";
import * as iommufd from "./iommufd.js";
import * as kvm from "./kvm.js";
import * as papr from "./papr.js";
import * as vfio from "./vfio.js";

const MODULES: Record<string, unknown>[] = [vfio, kvm, iommufd, papr];

export const CONSTANTS = new Map<string, number>();
export const STRUCTS = new Map<string, StructCodec<readonly (readonly [string, FieldType])[]>>();

for (const m of MODULES) {
  for (const [k, v] of Object.entries(m)) {
    if (typeof v === "number") CONSTANTS.set(k, v);
    else if (v instanceof StructCodec) STRUCTS.set(k, v);
  }
}
