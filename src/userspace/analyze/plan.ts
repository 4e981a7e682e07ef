/**
 * `passthru plan`: from the devices a user names, what to pass through (each one's whole
 * IOMMU group minus the bridges, which stay on the host), the binding steps (driver_override
 * per function — drivers/pci/pci-driver.c pci_match_device matches it before any id table,
 * so one of two identical devices can be taken alone), the kernel command line, QEMU's
 * `-device vfio-pci,host=` arguments and libvirt's `<hostdev>` fragments — and, on the live
 * host, the binding itself as a list of sysfs writes that can be shown, performed and undone.
 */
import type { Analysis, DeviceInfo, GroupAnalysis } from "./analyze.js";
import { DMA_MANAGED_DRIVERS } from "./analyze.js";
import { resolveSelector } from "./questions.js";
import { short } from "./reset.js";
import { modelSysfs, type SysfsAccess } from "./sysfs.js";

export interface SysfsWrite {
  path: string;
  value: string;
  why: string;
  /** A failure of this write is expected in some states (unbinding a device with no driver). */
  optional?: boolean;
}

export interface Plan {
  host: string;
  requested: string[];
  groups: number[];
  /** Functions the guest gets, in address order. */
  pass: string[];
  /** Group members that stay on the host (bridges), with what must happen to them. */
  stay: { bdf: string; driver: string | null; action: string }[];
  problems: string[];
  notes: string[];
  binding: { bdf: string; steps: string[] }[];
  writes: SysfsWrite[];
  undo: SysfsWrite[];
  cmdline: { add: string[]; keep: string[]; avoid: string[]; text: string[] };
  modules: string[];
  qemu: string[];
  libvirt: string;
}

const ID_COLLISION_NOTE =
  "vfio-pci.ids= binds by vendor:device at boot and would take every function with that id";

export function planPassthrough(a: Analysis, selectors: string[]): Plan {
  const picked: DeviceInfo[] = [];
  for (const s of selectors)
    for (const d of resolveSelector(a, s)) if (!picked.includes(d)) picked.push(d);
  const problems: string[] = [];
  const notes: string[] = [];
  const groups: GroupAnalysis[] = [];
  for (const d of picked) {
    const g = a.group(d.group);
    if (!g) {
      problems.push(
        `${short(d.bdf)} has no IOMMU group (${a.report.groups.length ? "outside every IOMMU unit's scope" : "the IOMMU is off"}): VFIO cannot take it`,
      );
      continue;
    }
    if (!groups.includes(g)) groups.push(g);
    if (d.bridge) problems.push(`${short(d.bdf)} is a bridge: vfio-pci only binds endpoints`);
  }
  const members = groups.flatMap((g) => g.devices).map((b) => a.device(b) as DeviceInfo);
  const pass = members.filter((d) => !d.bridge && !d.hostBridge).map((d) => d.bdf);
  const stay = members
    .filter((d) => d.bridge || d.hostBridge)
    .map((d) => ({
      bdf: d.bdf,
      driver: d.driver,
      action:
        d.driver === null || DMA_MANAGED_DRIVERS.has(d.driver)
          ? `stays on the host${d.driver ? ` with ${d.driver}` : ""}`
          : `unbind ${d.driver} (a DMA-API driver blocks the group); it stays on the host`,
    }));
  for (const g of groups) {
    const extra = g.devices.filter((b) => pass.includes(b) && !picked.some((p) => p.bdf === b));
    if (extra.length)
      notes.push(
        `group ${g.id} also holds ${extra.map(short).join(", ")}: ${extra.length === 1 ? "it goes" : "they go"} to the guest too (${g.reason.replace(/0000:/g, "")})`,
      );
    if (!g.claimable)
      problems.push(
        `group ${g.id} has a direct-mapped reserved region (firmware identity map): VFIO cannot claim it`,
      );
    if (g.matchesKernel === false)
      notes.push(
        `group ${g.id} as derived differs from the kernel's {${(g.kernel ?? []).map(short).join(", ")}}: the plan follows the derived group; check on the live host`,
      );
  }

  // Binding: per function, driver_override then unbind then drivers_probe.
  const writes: SysfsWrite[] = [];
  const undo: SysfsWrite[] = [];
  const binding: Plan["binding"] = [];
  for (const bdf of pass) {
    const d = a.device(bdf) as DeviceInfo;
    const dev = `/sys/bus/pci/devices/${bdf}`;
    undo.push(
      { path: `${dev}/driver_override`, value: "\n", why: "clear the override" },
      {
        path: `${dev}/driver/unbind`,
        value: bdf,
        why: "release it from vfio-pci",
        optional: true,
      },
      {
        path: "/sys/bus/pci/drivers_probe",
        value: bdf,
        why: "let the kernel bind its default driver again",
      },
    );
    if (d.driver === "vfio-pci") {
      binding.push({ bdf, steps: ["already bound to vfio-pci"] });
      continue;
    }
    const w: SysfsWrite[] = [
      { path: `${dev}/driver_override`, value: "vfio-pci", why: "only vfio-pci may bind it" },
    ];
    if (d.driver)
      w.push({
        path: `${dev}/driver/unbind`,
        value: bdf,
        why: `release it from ${d.driver}`,
        optional: true,
      });
    w.push({
      path: "/sys/bus/pci/drivers_probe",
      value: bdf,
      why: "let the kernel bind it again: driver_override picks vfio-pci",
    });
    binding.push({ bdf, steps: w.map((x) => `echo ${x.value} > ${x.path}`) });
    writes.push(...w);
  }
  for (const s of stay) {
    if (s.driver === null || DMA_MANAGED_DRIVERS.has(s.driver)) continue;
    const dev = `/sys/bus/pci/devices/${s.bdf}`;
    writes.push({ path: `${dev}/driver/unbind`, value: s.bdf, why: `release it from ${s.driver}` });
    binding.push({ bdf: s.bdf, steps: [`echo ${s.bdf} > ${dev}/driver/unbind`] });
    notes.push(
      `--undo does not rebind ${short(s.bdf)}: echo ${s.bdf} > /sys/bus/pci/drivers_probe brings ${s.driver} back`,
    );
  }

  // Kernel command line.
  const cmd = a.report.cmdline.split(/\s+/).filter(Boolean);
  const has = (re: RegExp) => cmd.some((w) => re.test(w));
  const add: string[] = [];
  const keep: string[] = [];
  const avoid: string[] = [];
  const text: string[] = [];
  if (a.report.iommuVendor === "intel" || a.report.iommuVendor === "none") {
    if (has(/^intel_iommu=(.*,)?on(,|$)/)) keep.push("intel_iommu=on");
    else if (a.report.iommuVendor === "intel" || !has(/^amd_iommu=/)) add.push("intel_iommu=on");
    text.push(
      "intel_iommu=on: VT-d translation on (needed unless the kernel was built with CONFIG_INTEL_IOMMU_DEFAULT_ON)",
    );
  }
  if (a.report.iommuVendor === "amd")
    text.push(
      "AMD-Vi is on by default when firmware enables the IOMMU; amd_iommu=on is not an option of Linux 6.12 (it logs \"Unknown option - 'on'\"), so nothing is needed — just do not pass amd_iommu=off",
    );
  if (has(/^(intel_iommu|amd_iommu)=(.*,)?off(,|$)/) || has(/^iommu=(.*,)?off(,|$)/))
    problems.push(
      "the command line turns the IOMMU off: remove intel_iommu=off / amd_iommu=off / iommu=off",
    );
  text.push(
    "iommu=pt (optional): host devices use identity mappings for speed; assigned devices are translated either way",
  );
  if (has(/^iommu=(.*,)?pt(,|$)/)) keep.push("iommu=pt");
  const ids = [...new Set(pass.map((b) => (a.device(b) as DeviceInfo).id))];
  const collide = ids.filter((id) =>
    a.report.devices.some((d) => d.id === id && !pass.includes(d.bdf)),
  );
  if (collide.length) {
    avoid.push(`vfio-pci.ids=${ids.join(",")}`);
    text.push(
      `do not use vfio-pci.ids: ${ID_COLLISION_NOTE} — ${collide
        .map(
          (id) =>
            `${id} is also ${a.report.devices
              .filter((d) => d.id === id && !pass.includes(d.bdf))
              .map((d) => short(d.bdf))
              .join(", ")}`,
        )
        .join(
          "; ",
        )}; bind per address with driver_override (driverctl set-override makes it persistent)`,
    );
  } else if (ids.length) {
    text.push(
      `vfio-pci.ids=${ids.join(",")} (optional) would claim these at boot before their drivers do; every id is unique on this host, so it takes nothing else`,
    );
  }
  if (has(/^(vfio-pci|vfio_pci)\.ids=/)) {
    const cur = cmd.find((w) => /^(vfio-pci|vfio_pci)\.ids=/.test(w)) as string;
    const curIds = cur.slice(cur.indexOf("=") + 1).split(",");
    const grabbed = a.report.devices.filter((d) => curIds.includes(d.id) && !pass.includes(d.bdf));
    if (grabbed.length)
      notes.push(
        `the current ${cur} also claims ${grabbed.map((d) => short(d.bdf)).join(", ")} at boot`,
      );
  }
  if (has(/^pcie_acs_override=/))
    notes.push(
      "pcie_acs_override is on the command line: the groups it splits are not isolated by the hardware",
    );

  const modules = ["vfio-pci"];
  if (a.report.interruptRemapping.enabled === false)
    problems.push(`interrupt remapping is off: ${a.report.interruptRemapping.text}`);

  problems.push(...rehearse(a, writes, undo, pass));

  const qemu = pass.flatMap((bdf, i) => ["-device", `vfio-pci,host=${bdf},id=hostdev${i}`]);
  const libvirt = pass.map(hostdevXml).join("\n");
  return {
    host: a.report.host,
    requested: picked.map((d) => d.bdf),
    groups: groups.map((g) => g.id),
    pass,
    stay,
    problems,
    notes,
    binding,
    writes,
    undo,
    cmdline: { add, keep, avoid, text },
    modules,
    qemu,
    libvirt,
  };
}

/**
 * The binding performed on the kernel model first (its sysfs, as root): a device vfio-pci's
 * probe refuses stays unbound there as it would here, since drivers_probe ignores probe
 * errors (drivers/base/bus.c). An explicit bind then gives the errno, explained from what
 * vfio_pci_probe / vfio_pci_core_register_device refuse (drivers/vfio/pci/vfio_pci.c,
 * vfio_pci_core.c): EINVAL for a device on vfio-pci's denylist, EBUSY for a PF with VFs.
 * The undo writes then leave the model as the analysis found it.
 */
function rehearse(a: Analysis, writes: SysfsWrite[], undo: SysfsWrite[], pass: string[]): string[] {
  const sys = modelSysfs(a.kernel.spawn());
  const out: string[] = [];
  const failed = applyWrites(sys, writes).find((s) => s.error && !s.write.optional);
  if (failed) out.push(`${failed.write.path}: the write fails with ${failed.error} on the model`);
  for (const bdf of pass) {
    const dev = `/sys/bus/pci/devices/${bdf}`;
    if (sys.link(`${dev}/driver`) === "vfio-pci") continue;
    const e = sys.write("/sys/bus/pci/drivers/vfio-pci/bind", bdf);
    let vfs = 0;
    while (sys.link(`${dev}/virtfn${vfs}`) !== null) vfs++;
    out.push(
      `${short(bdf)}: vfio-pci refuses it (its probe fails with ${e ?? "an error"}): ` +
        (e === "EBUSY" && vfs > 0
          ? `a PF with SR-IOV enabled (${vfs} VFs): disable them first (echo 0 > ${dev}/sriov_numvfs while its driver is bound)`
          : e === "EINVAL"
            ? "it is on vfio-pci's denylist (vfio_pci_dev_in_denylist); booting with vfio_pci.disable_denylist=1 lifts it"
            : "see the kernel log when binding it"),
    );
  }
  applyWrites(sys, undo);
  return out;
}

/** libvirt domain XML (formatdomain: Host device assignment, PCI). */
export function hostdevXml(bdf: string): string {
  const m = /^([0-9a-f]{4,5}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/.exec(bdf) as RegExpExecArray;
  return [
    `<hostdev mode='subsystem' type='pci' managed='yes'>`,
    `  <source>`,
    `    <address domain='0x${m[1]}' bus='0x${m[2]}' slot='0x${m[3]}' function='0x${m[4]}'/>`,
    `  </source>`,
    `</hostdev>`,
  ].join("\n");
}

export interface ApplyStep {
  write: SysfsWrite;
  error: string | null;
}

/** Perform writes in order; an optional write may fail (nothing to unbind). Stops at a hard failure. */
export function applyWrites(sys: SysfsAccess, writes: SysfsWrite[]): ApplyStep[] {
  const out: ApplyStep[] = [];
  for (const w of writes) {
    if (
      w.optional &&
      w.path.endsWith("/driver/unbind") &&
      sys.link(w.path.replace(/\/unbind$/, "")) === null
    ) {
      out.push({ write: w, error: null });
      continue;
    }
    const error = sys.write(w.path, w.value);
    out.push({ write: w, error });
    if (error && !w.optional) break;
  }
  return out;
}
