/**
 * What each operation of a script is about, for summaries: the request family of an
 * ioctl (VFIO container, group, device, type1, iommufd, KVM system/VM/device, kvm-vfio),
 * and for other operations the family of the file they touch — followed through the
 * script: an fd opened from /dev/vfio/N is a group, the fd VFIO_GROUP_GET_DEVICE_FD gives
 * is a device, the device KVM_CREATE_DEVICE makes with type 4 is kvm-vfio, and so on.
 *
 * Some topics are outside what the model implements yet; `gap` says why, so a difference
 * there is reported as a known gap rather than hidden: the iommufd uAPI (until the model's
 * uAPI tables name its requests) and register contents of devices the machine has no
 * model of (QEMU's e1000e registers behind a BAR, an option ROM without contents).
 */
import { parseBdf, type Host } from "../host/build.js";
import { REQUESTS } from "../uapi/requests.js";
import { KVM_DEV_TYPE_VFIO } from "../uapi/kvm.js";
import {
  VFIO_PCI_CONFIG_REGION_INDEX,
  VFIO_PCI_ROM_REGION_INDEX,
  VFIO_PCI_VGA_REGION_INDEX,
} from "../uapi/vfio.js";
import type { Json, Op, Script } from "../userspace/replay/script.js";
import { literal } from "./program.js";

export interface Topic {
  topic: string;
  /** Why the model does not cover this yet; null when it should. */
  gap: string | null;
}

const FAMILIES: [RegExp, string][] = [
  [/^VFIO_(GET_API_VERSION|CHECK_EXTENSION|SET_IOMMU)$/, "VFIO container"],
  [/^VFIO_GROUP_/, "VFIO group"],
  [/^VFIO_DEVICE_(BIND_IOMMUFD|ATTACH_IOMMUFD_PT|DETACH_IOMMUFD_PT)$/, "VFIO cdev"],
  [/^VFIO_DEVICE_|^VFIO_MIG_/, "VFIO device"],
  [/^VFIO_IOMMU_SPAPR_|^VFIO_EEH_/, "VFIO sPAPR TCE"],
  [/^VFIO_IOMMU_/, "VFIO type1"],
  [/^IOMMU_/, "iommufd"],
  [/^KVM_(GET_API_VERSION|CREATE_VM|GET_VCPU_MMAP_SIZE)$/, "KVM system"],
  [/^KVM_CREATE_DEVICE$|^KVM_(SET|GET|HAS)_DEVICE_ATTR$/, "KVM device"],
  [/^KVM_/, "KVM VM"],
];

export function requestFamily(req: string): string {
  return FAMILIES.find(([re]) => re.test(req))?.[1] ?? "other ioctl";
}

function pathFamily(path: string): string {
  if (path === "/dev/vfio/vfio") return "VFIO container";
  if (/^\/dev\/vfio\/devices\//.test(path)) return "VFIO cdev";
  if (/^\/dev\/vfio\//.test(path)) return "VFIO group";
  if (path === "/dev/iommu") return "iommufd";
  if (path === "/dev/kvm") return "KVM system";
  if (path.startsWith("/sys/")) return "sysfs";
  return "files";
}

/** Is the iommufd uAPI in the model's request table yet? */
const iommufdModelled = () => REQUESTS.has("IOMMU_IOAS_ALLOC");

function familyGap(family: string): string | null {
  if ((family === "iommufd" || family === "VFIO cdev") && !iommufdModelled())
    return "iommufd and the VFIO device cdev are not in the model yet (no src/uapi iommufd requests)";
  if (family === "VFIO sPAPR TCE") return "sPAPR TCE exists only on powerpc hosts";
  return null;
}

function structField(arg: Json, name: string): Json | undefined {
  if (!arg || typeof arg !== "object" || Array.isArray(arg)) return undefined;
  const fields = (arg as { struct?: Json[] }).struct;
  const f = fields?.find((x) => Array.isArray(x) && x[1] === name) as Json[] | undefined;
  return f?.[2];
}

/** The topic of every operation, in order. */
export function topics(script: Script, host?: Host): Topic[] {
  /** fd name → family, and for devices the function's address */
  const fds = new Map<string, { family: string; bdf?: string }>();
  const ref = (v: Json) =>
    typeof v === "string" && v.startsWith("$") ? v.slice(1).split("+")[0] : undefined;
  const of = (v: Json) => fds.get(ref(v) ?? "") ?? { family: "files" };
  /** Something answers the region: a device model, or for the ROM its contents. */
  const hasModel = (bdf: string | undefined, rom: boolean): boolean => {
    const a = bdf ? parseBdf(bdf) : null;
    const fn = a ? host?.machine.pci.fn(a.domain, a.bus, a.devfn) : undefined;
    return !!fn && (!!fn.model || (rom && !!fn.rom));
  };
  const t = (family: string, gap = familyGap(family)): Topic => ({ topic: family, gap });

  return script.ops.map((op: Op): Topic => {
    switch (op.op) {
      case "open": {
        const f = pathFamily(op.path as string);
        fds.set(op.as as string, { family: f === "VFIO cdev" ? "VFIO cdev device" : f });
        return t(f);
      }
      case "dup": {
        const src = of(op.fd as Json);
        fds.set(op.as as string, src);
        return t(src.family === "VFIO cdev device" ? "VFIO cdev" : src.family);
      }
      case "close": {
        const f = of(op.fd as Json).family;
        return t(f === "VFIO cdev device" ? "VFIO cdev" : f);
      }
      case "eventfd":
        fds.set(op.as as string, { family: "files" });
        return t("files");
      case "mmap":
      case "munmap":
      case "fill":
      case "check":
        return t("memory");
      case "sysfs_read":
      case "sysfs_write":
      case "readlink":
        return t("sysfs");
      case "pread":
      case "pwrite": {
        const d = of(op.fd as Json);
        if (d.family !== "VFIO device" && d.family !== "VFIO cdev device") return t("files");
        const index = Number(literal(op.offset as Json) >> 40n);
        if (index === VFIO_PCI_CONFIG_REGION_INDEX) return t("VFIO device: config space");
        if (index === VFIO_PCI_VGA_REGION_INDEX) return t("VFIO device: VGA");
        const what = index === VFIO_PCI_ROM_REGION_INDEX ? "option ROM" : `BAR${index}`;
        const topic = `VFIO device: ${what} contents`;
        if (!hasModel(d.bdf, index === VFIO_PCI_ROM_REGION_INDEX))
          return t(
            topic,
            `no model of the registers of ${d.bdf ?? "this device"} (QEMU device model)`,
          );
        return t(topic);
      }
      case "ioctl": {
        const req = op.req as string;
        let family = requestFamily(req);
        if (req === "VFIO_GROUP_GET_DEVICE_FD" && op.as) {
          const name = structField(op.arg as Json, "name");
          const bdf =
            typeof name === "string"
              ? Buffer.from(name, "hex").toString("latin1").replace(/\0.*$/s, "")
              : undefined;
          fds.set(op.as as string, { family: "VFIO device", ...(bdf ? { bdf } : {}) });
        } else if (req === "KVM_CREATE_VM" && op.as) {
          fds.set(op.as as string, { family: "KVM VM" });
        } else if (req === "KVM_CREATE_DEVICE") {
          const type = structField(op.arg as Json, "type");
          const vfio =
            type !== undefined &&
            typeof type !== "object" &&
            literal(type) === BigInt(KVM_DEV_TYPE_VFIO);
          if (vfio) family = "kvm-vfio";
          const bind = op.bind as Record<string, Json> | undefined;
          for (const n of Object.values(bind ?? {}))
            fds.set(String(n), { family: vfio ? "kvm-vfio" : "KVM device" });
        } else if (
          /^KVM_(SET|GET|HAS)_DEVICE_ATTR$/.test(req) &&
          of(op.fd as Json).family === "kvm-vfio"
        ) {
          family = "kvm-vfio";
        } else if (op.as) {
          fds.set(op.as as string, { family });
        }
        // KVM_CHECK_EXTENSION and friends: system or VM by the fd they go to
        if (family === "KVM VM" && of(op.fd as Json).family === "KVM system") family = "KVM system";
        return t(family);
      }
      default:
        return t("other");
    }
  });
}
