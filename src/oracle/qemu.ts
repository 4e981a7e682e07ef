/**
 * One boot: qemu-system-x86_64 under TCG with the case's topology, the kernel, the cached
 * initramfs with the case's program appended, the console on the first serial port and
 * the guest's answers on the second; then the second port's output decoded.
 *
 * The machine is `-machine q35 -smp 1 -m 1G -nodefaults -accel tcg -cpu max`: TCG because
 * KVM acceleration is not what is being tested (and is not available on every host), -cpu
 * max because it gives the guest SVM and so a working /dev/kvm (VMs and devices only; no
 * vCPU ever runs). The case's `qemu` words follow: the IOMMU first, then the topology.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { OracleError, runAsync } from "./cache.js";
import { BASE_APPEND } from "./guest.js";

export const QEMU = "qemu-system-x86_64";
export const MACHINE = [
  "-machine",
  "q35",
  "-smp",
  "1",
  "-m",
  "1G",
  "-nodefaults",
  "-no-reboot",
  "-display",
  "none",
  "-monitor",
  "none",
];

/**
 * The accelerator: TCG for recordings; KVM (`-cpu host`) where a guest only has to run
 * userspace fast, as exec.ts's guests do (needs a usable /dev/kvm).
 */
export type Accel = "tcg" | "kvm";
const ACCEL: Record<Accel, string[]> = {
  tcg: ["-accel", "tcg", "-cpu", "max"],
  kvm: ["-accel", "kvm", "-cpu", "host"],
};

export interface Boot {
  accel?: Accel;
  kernel: string;
  initrd: string;
  append: string;
  qemu: string[];
  workDir: string;
  timeoutMs: number;
}

export function qemuCommand(b: Boot): string[] {
  return [
    QEMU,
    ...MACHINE,
    ...ACCEL[b.accel ?? "tcg"],
    "-kernel",
    b.kernel,
    "-initrd",
    b.initrd,
    "-append",
    [BASE_APPEND, b.append].filter(Boolean).join(" "),
    "-serial",
    `file:${join(b.workDir, "console.log")}`,
    "-serial",
    `file:${join(b.workDir, "serial.raw")}`,
    ...b.qemu,
  ];
}

const shellQuote = (s: string) =>
  /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`;

export async function boot(b: Boot): Promise<void> {
  const cmd = qemuCommand(b);
  writeFileSync(join(b.workDir, "qemu.cmd"), cmd.map(shellQuote).join(" ") + "\n");
  const r = await runAsync(cmd[0] as string, cmd.slice(1), {
    timeoutMs: b.timeoutMs,
    stdoutFile: join(b.workDir, "qemu.log"),
  });
  const console = join(b.workDir, "console.log");
  if (r.code === null)
    throw new OracleError(`QEMU did not finish within ${b.timeoutMs / 1000} s; see ${console}`);
  if (r.code !== 0)
    throw new OracleError(
      `QEMU exited with ${r.code}: ${r.output.trim().split("\n").slice(-3).join(" ")}`,
    );
}

/** The guest's serial output: the file dump (snapshot.ts) and the agent's answer text. */
export function decodeSerial(raw: string): { dump: string; answers: string } {
  const lines = raw.replace(/\r/g, "").split("\n");
  const at = lines.findIndex((l) => l.startsWith("@@PASSTHRU snapshot "));
  const end = lines.findIndex((l) => l === "@@PASSTHRU snapshot-end");
  if (at < 0 || end < at) throw new OracleError("no snapshot in the guest's output");
  const bytes = Number(lines[at]?.split(" ")[2]);
  const gz = Buffer.from(lines.slice(at + 1, end).join(""), "base64");
  if (gz.length !== bytes)
    throw new OracleError(`snapshot: ${gz.length} bytes arrived, the guest sent ${bytes}`);
  let dump: string;
  try {
    dump = gunzipSync(gz).toString("latin1");
  } catch (e) {
    throw new OracleError(`snapshot: not gzip (${(e as Error).message})`);
  }
  return { dump, answers: lines.slice(end + 1).join("\n") };
}
