/**
 * What the guest runs: busybox, the agent (native/agent/agent.c, compiled here with the
 * machine's gcc, static) with the rules of the files a snapshot is made of (snapshot.ts),
 * Debian's modules for the "debian" kernel, and an init that ties them together.
 * Everything the guest says goes to its second serial port, framed by "@@PASSTHRU" lines:
 *
 *   @@PASSTHRU snapshot BYTES      the agent's copy of the snapshot's files, gzip'd, base64
 *   @@PASSTHRU snapshot-end
 *   @@PASSTHRU results N           the agent's raw answers (program.ts)
 *   @@PASSTHRU end N
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { OracleError, cacheDir, hash16, run, withLock, type Log } from "./cache.js";
import { cpioGz, type CpioEntry } from "./cpio.js";
import type { KernelImage } from "./kernels.js";
import { dumpRules } from "./snapshot.js";

export const AGENT_DIR = fileURLToPath(new URL("../../../native/agent/", import.meta.url));

/** Modules of Debian's kernel the initramfs loads, in this order, after their dependencies. */
export const DEBIAN_MODULES = [
  "virtio_iommu",
  "vfio",
  "vfio_iommu_type1",
  "vfio_pci",
  "kvm_amd",
  "pci_stub",
  "e1000",
  "e1000e",
  "nvme",
  "8139cp",
];

/** The fixed part of every guest's kernel command line; a case's `append` follows. */
export const BASE_APPEND = "console=ttyS0 loglevel=4 panic=-1 intel_iommu=on iommu=nopt";

const INIT = `#!/bin/busybox sh
# passthru oracle guest: mount, load the modules (module.param=value words of the command
# line become insmod arguments, as modprobe would pass them), copy the files the snapshot
# is made of, run the agent, power off (QEMU runs with -no-reboot). A guest given an /exec
# (exec.ts) runs that instead of the agent.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
for ko in $(cat /modules.order); do
	m=$(echo "\${ko%.ko}" | tr - _)
	args=
	for w in $(cat /proc/cmdline); do
		case $(echo "\${w%%=*}" | tr - _) in "$m".*) args="$args \${w#*.}" ;; esac
	done
	insmod "/lib/modules/$ko" $args || echo "passthru-init: insmod $ko failed"
done
echo "passthru-init: modules loaded at $(cut -d' ' -f1 /proc/uptime)s"
stty -F /dev/ttyS1 raw -echo 2>/dev/null
if [ -x /exec ]; then
	/exec > /dev/ttyS1
	echo "passthru-init: exec rc=$? at $(cut -d' ' -f1 /proc/uptime)s"
	sync
	reboot -f
fi
/agent --dump /rules /tmp/dump && gzip -1 /tmp/dump
{
	echo "@@PASSTHRU snapshot $(wc -c < /tmp/dump.gz)"
	base64 /tmp/dump.gz
	echo "@@PASSTHRU snapshot-end"
} > /dev/ttyS1
echo "passthru-init: snapshot taken at $(cut -d' ' -f1 /proc/uptime)s"
/agent /program /dev/ttyS1
echo "passthru-init: agent rc=$? at $(cut -d' ' -f1 /proc/uptime)s"
sync
reboot -f
`;

/** The agent built for this machine: static, cached by its source and the compiler. */
export async function buildAgent(log: Log): Promise<string> {
  const sources = readdirSync(AGENT_DIR)
    .filter((n) => n.endsWith(".c") || n.endsWith(".h"))
    .sort();
  if (!sources.some((n) => n.endsWith(".c")))
    throw new OracleError(`no agent sources in ${AGENT_DIR}`);
  const gcc = run("gcc", ["--version"], { what: "gcc" }).split("\n")[0] ?? "";
  const h = hash16(gcc, ...sources.flatMap((n) => [n, readFileSync(join(AGENT_DIR, n))]));
  const out = join(cacheDir("agent"), `agent-${h}`);
  if (existsSync(out)) return out;
  return withLock("agent-build", log, () => {
    if (existsSync(out)) return out;
    log("building the agent");
    const c = sources.filter((n) => n.endsWith(".c")).map((n) => join(AGENT_DIR, n));
    run("gcc", ["-O2", "-Wall", "-Wextra", "-static", "-o", `${out}.tmp`, ...c], {
      what: "gcc (agent)",
    });
    renameSync(`${out}.tmp`, out);
    return out;
  });
}

/** Debian's module files for DEBIAN_MODULES, dependencies first, decompressed. */
function debianModules(kver: string): { name: string; data: Buffer }[] {
  const files: string[] = [];
  for (const m of DEBIAN_MODULES) {
    const dep = run("modprobe", ["-S", kver, "--show-depends", m], { what: `modprobe ${m}` });
    for (const l of dep.split("\n")) {
      const w = l.trim().split(/\s+/);
      if (w[0] === "insmod" && w[1] && !files.includes(w[1])) files.push(w[1]);
    }
  }
  return files.map((f) => {
    const base = f.split("/").pop() as string;
    let data: Buffer;
    if (f.endsWith(".xz") || f.endsWith(".zst")) {
      const r = spawnSync(f.endsWith(".xz") ? "xz" : "zstd", ["-dc", f], { maxBuffer: 1 << 28 });
      if (r.status !== 0) throw new OracleError(`cannot decompress ${f}`);
      data = r.stdout;
    } else data = readFileSync(f);
    return { name: base.replace(/\.(xz|zst)$/, ""), data };
  });
}

/** The cached initramfs of a kernel: everything but the case's program. */
export async function baseInitramfs(kernel: KernelImage, agent: string, log: Log): Promise<string> {
  const busybox = "/bin/busybox";
  if (!existsSync(busybox))
    throw new OracleError("no /bin/busybox (Debian package busybox-static)");
  const rules = dumpRules();
  const key = hash16(
    INIT,
    rules,
    readFileSync(busybox),
    agent,
    kernel.modulesVersion ?? "none",
    DEBIAN_MODULES.join(" "),
  );
  const kind = kernel.modulesVersion ? "modules" : "builtin";
  const out = join(cacheDir("initramfs"), `${kind}-${key}.cpio.gz`);
  if (existsSync(out)) return out;
  return withLock(`initramfs-${key}`, log, () => {
    if (existsSync(out)) return out;
    log(
      `building the initramfs (${kernel.modulesVersion ? `modules of ${kernel.modulesVersion}` : "no modules"})`,
    );
    if (spawnSync("ldd", [busybox], { encoding: "utf8" }).status === 0)
      throw new OracleError(`${busybox} is not static (Debian package busybox-static)`);
    const mods = kernel.modulesVersion ? debianModules(kernel.modulesVersion) : [];
    const entries: CpioEntry[] = [
      ...["bin", "dev", "proc", "sys", "tmp", "lib", "lib/modules"].map((name): CpioEntry => ({
        name,
        kind: "dir",
      })),
      { name: "bin/busybox", kind: "file", data: readFileSync(busybox), mode: 0o755 },
      { name: "bin/sh", kind: "link", target: "busybox" },
      { name: "agent", kind: "file", data: readFileSync(agent), mode: 0o755 },
      { name: "init", kind: "file", data: Buffer.from(INIT), mode: 0o755 },
      { name: "rules", kind: "file", data: Buffer.from(rules) },
      {
        name: "modules.order",
        kind: "file",
        data: Buffer.from(mods.map((m) => m.name + "\n").join("")),
      },
      ...mods.map((m): CpioEntry => ({
        name: `lib/modules/${m.name}`,
        kind: "file",
        data: m.data,
      })),
    ];
    const tmp = `${out}.tmp`;
    writeFileSync(tmp, cpioGz(entries, 1));
    renameSync(tmp, out);
    return out;
  });
}

/** The small archive that follows the base image: the case's program. */
export function programCpio(program: string): Buffer {
  return cpioGz([{ name: "program", kind: "file", data: Buffer.from(program) }], 1);
}
