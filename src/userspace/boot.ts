/**
 * Boot the kernel model on a host as the host was described: its command line, its
 * kernel's PCI drivers, which driver held each device, and the VFs drivers had enabled.
 */
import type { Host } from "../host/build.js";
import { Kernel } from "../kernel/kernel.js";

export function bootHost(host: Host, extraCmdline = ""): Kernel {
  const bindings = new Map<string, string>();
  for (const [bdf, o] of host.observed) if (o.driver) bindings.set(bdf, o.driver);
  const sriov = new Map<string, number>();
  for (const [bdf, f] of host.functions) if (f.sriov?.enabled) sriov.set(bdf, f.sriov.enabled);
  return Kernel.boot(host.machine.hardware(), {
    cmdline: [host.cmdline, extraCmdline].filter(Boolean).join(" "),
    drivers: host.spec.kernel.drivers,
    bindings: bindings.size ? bindings : undefined,
    sriov,
  });
}
