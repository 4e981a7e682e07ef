/**
 * `passthru plan <BDF|vendor:device>... [--input INPUT | --live]`: what to pass through,
 * how to bind it (driver_override per function), the kernel command line, QEMU arguments
 * and libvirt XML. `--apply` performs the binding on this host (root only; shows the writes
 * and asks unless --yes), `--undo` restores the default drivers. Without --apply/--undo
 * nothing is written anywhere.
 */
import { createInterface } from "node:readline";
import { analyzeHost } from "../userspace/analyze/analyze.js";
import {
  applyWrites,
  planPassthrough,
  type Plan,
  type SysfsWrite,
} from "../userspace/analyze/plan.js";
import { resolveSelector, SelectorError } from "../userspace/analyze/questions.js";
import { short } from "../userspace/analyze/reset.js";
import { liveSysfs } from "../userspace/analyze/sysfs.js";
import { loadInput, progress, writeOut } from "./analyze.js";
import {
  bold,
  cyan,
  dim,
  EXIT_FINDINGS,
  EXIT_OK,
  green,
  red,
  UsageError,
  yellow,
} from "./output.js";

export interface PlanOptions {
  input?: string;
  live?: boolean;
  root?: string;
  json?: boolean;
  apply?: boolean;
  undo?: boolean;
  yes?: boolean;
}

export async function planCommand(selectors: string[], opts: PlanOptions): Promise<number> {
  const changes = opts.apply || opts.undo;
  if (opts.apply && opts.undo) throw new UsageError("--apply and --undo exclude each other");
  if (changes && opts.input)
    throw new UsageError(
      `--${opts.apply ? "apply" : "undo"} changes this host: it takes no --input`,
    );
  if (opts.yes && !changes) throw new UsageError("--yes only goes with --apply or --undo");
  const root = opts.root ?? "/";
  if (changes && root === "/" && process.getuid?.() !== 0)
    throw new UsageError(
      `--${opts.apply ? "apply" : "undo"} writes to /sys: run as root (nothing was written)`,
    );
  const step = progress("plan");
  const { host, fs } = await loadInput(changes ? undefined : opts.input, {
    live: changes || opts.live,
    root,
  });
  step("booting the kernel model");
  const a = await analyzeHost(host, fs);
  try {
    for (const s of selectors) {
      const found = resolveSelector(a, s);
      if (found.length > 1)
        throw new UsageError(
          `${s} matches ${found.length} devices (${found.map((d) => d.bdf).join(", ")}): name the one you mean by its address`,
        );
    }
  } catch (e) {
    if (e instanceof SelectorError) throw new UsageError(e.message);
    throw e;
  }
  const plan = planPassthrough(a, selectors);
  if (!changes) {
    await writeOut(opts.json ? JSON.stringify(plan, null, 2) + "\n" : planText(plan));
    return plan.problems.length ? EXIT_FINDINGS : EXIT_OK;
  }
  return perform(plan, opts, root);
}

async function perform(plan: Plan, opts: PlanOptions, root: string): Promise<number> {
  const writes = opts.apply ? plan.writes : plan.undo;
  const what = opts.apply ? "bind to vfio-pci" : "restore the default drivers of";
  if (opts.apply && plan.problems.length) {
    process.stderr.write(
      red(`passthru: not applying: ${plan.problems.join("; ")}`) +
        "\n" +
        dim("nothing was written\n"),
    );
    return EXIT_FINDINGS;
  }
  if (writes.length === 0) {
    process.stdout.write(
      `Nothing to do: ${plan.pass.map(short).join(", ")} already bound as planned.\n`,
    );
    return EXIT_OK;
  }
  const out = [
    `${bold(`This will ${what}`)} ${plan.pass.map(short).join(", ")} with ${writes.length} sysfs writes:`,
  ];
  for (const w of writes)
    // as a shell line that writes the same: echo adds the newline sysfs strips (a bare
    // newline, `echo >`, clears driver_override: drivers/base/driver.c driver_set_override)
    out.push(
      `  ${["echo", w.value.trim(), ">", w.path].filter(Boolean).join(" ")}  ${dim(`# ${w.why}`)}`,
    );
  process.stdout.write(out.join("\n") + "\n");
  if (!opts.yes && !(await confirm("Proceed? [y/N] "))) {
    process.stdout.write("Nothing was written.\n");
    return EXIT_FINDINGS;
  }
  const sys = liveSysfs(root);
  const done = applyWrites(sys, writes);
  let failed: { write: SysfsWrite; error: string | null } | undefined;
  for (const s of done) {
    if (s.error && !s.write.optional) failed = s;
    const mark = s.error
      ? s.write.optional
        ? yellow(`skipped (${s.error})`)
        : red(s.error)
      : green("ok");
    process.stdout.write(`  ${mark}  ${s.write.path}\n`);
  }
  if (failed) {
    process.stderr.write(
      `passthru: ${failed.write.path}: ${failed.error}; stopped there${opts.apply ? " (passthru plan --undo restores)" : ""}\n`,
    );
    return EXIT_FINDINGS;
  }
  for (const b of plan.pass) {
    const drv = sys.link(`/sys/bus/pci/devices/${b}/driver`);
    process.stdout.write(`  ${cyan(b)}: ${drv ?? "no driver"}\n`);
  }
  return EXIT_OK;
}

function confirm(prompt: string): Promise<boolean> {
  return new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: false });
    let answered = false;
    process.stdout.write(prompt);
    rl.once("line", (l) => {
      answered = true;
      rl.close();
      resolve(/^y(es)?$/i.test(l.trim()));
    });
    rl.once("close", () => {
      if (!answered) resolve(false);
    });
  });
}

export function planText(p: Plan): string {
  const out: string[] = [];
  out.push(bold(`Plan for ${p.requested.map(short).join(", ")} on ${p.host}`), "");
  if (p.pass.length)
    out.push(
      `${bold("Pass through")} (group${p.groups.length > 1 ? "s" : ""} ${p.groups.join(", ")}): ${p.pass.join(", ")}`,
    );
  for (const s of p.stay) out.push(`${bold("Stays on the host")}: ${s.bdf} — ${s.action}`);
  for (const x of p.problems) out.push(red(`problem: ${x}`));
  for (const n of p.notes) out.push(yellow(`note: ${n}`));
  out.push("");
  out.push(bold("1. Kernel command line"));
  if (p.cmdline.add.length) out.push(`   add: ${p.cmdline.add.join(" ")}`);
  if (p.cmdline.keep.length) out.push(`   already there: ${p.cmdline.keep.join(" ")}`);
  if (p.cmdline.avoid.length) out.push(red(`   do not add: ${p.cmdline.avoid.join(" ")}`));
  for (const t of p.cmdline.text) out.push(dim(`   ${t}`));
  out.push("", bold("2. Load the driver"), `   modprobe ${p.modules.join(" ")}`);
  out.push("", bold("3. Bind (as root), one function at a time by address"));
  for (const b of p.binding) {
    out.push(`   # ${b.bdf}`);
    for (const s of b.steps) out.push(`   ${s}`);
  }
  if (p.pass.length)
    out.push(
      dim("   persistent across boots: ") +
        p.pass.map((b) => `driverctl set-override ${b} vfio-pci`).join("; "),
      dim(
        `   or now, on this machine: passthru plan ${p.requested.map(short).join(" ")} --apply (root; --undo restores)`,
      ),
    );
  out.push("", bold("4. QEMU"));
  const q = ["qemu-system-x86_64 -machine q35,accel=kvm -m 8G \\"];
  for (let i = 0; i < p.qemu.length; i += 2) q.push(`  ${p.qemu[i]} ${p.qemu[i + 1]} \\`);
  q.push("  ...");
  out.push(...q.map((l) => `   ${l}`));
  out.push(
    "",
    bold("5. libvirt") +
      dim(" (virsh edit DOMAIN, inside <devices>; managed='yes' detaches and reattaches for you)"),
  );
  out.push(...p.libvirt.split("\n").map((l) => `   ${l}`));
  return out.join("\n") + "\n";
}
