#!/usr/bin/env node
/**
 * The passthru command line. One file per command under src/cli/, each thin over the
 * library; this file wires them with commander and owns exit codes and error reporting.
 */
import { Command, CommanderError, Option } from "commander";
import { builtinHosts } from "../host/load.js";
import { analyzeCommand } from "./analyze.js";
import { checkCommand } from "./check.js";
import { compareDesignsCommand } from "./compare-designs.js";
import { graphCommand } from "./graph.js";
import { groupsCommand } from "./groups.js";
import { planCommand } from "./plan.js";
import { snapshotCommand } from "./snapshot.js";
import { replayCommand } from "./replay.js";
import { runCommand } from "./run.js";
import { serveCommand } from "./serve.js";
import { registerOracle } from "./oracle.js";
import { EXIT_OK, EXIT_USAGE, reportError, setColour } from "./output.js";

export async function main(argv: string[]): Promise<number> {
  const program = new Command();
  let code = EXIT_OK;
  program
    .name("passthru")
    .description(
      "An executable model of Linux device pass-through: IOMMU groups, VFIO, iommufd and KVM-VFIO.\n" +
        "INPUT is a built-in host (" +
        builtinHosts().join(", ") +
        "), a host snapshot (.tar.gz or directory),\n" +
        "a YAML/JSON host description, `lspci -vvnn` output or an `lspci -xxxx` dump.",
    )
    .option("--no-color", "never colour the output")
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .hook("preAction", (cmd) => setColour(cmd.opts().color !== false));

  program
    .command("groups")
    .description("derive the IOMMU groups the kernel forms, and why")
    .argument("[input]", "host to analyse", "desktop")
    .option("--json", "machine-readable output")
    .option("--explain <bdf>", "the full chain of facts behind one device's group")
    .option(
      "--acs-override [spec]",
      "what-if: groups under pcie_acs_override=SPEC (default downstream,multifunction)",
    )
    .action(async (input: string, opts) => {
      code = await groupsCommand(input, opts);
    });

  program
    .command("analyze")
    .description(
      "what passing devices through takes on a host: groups, viability, resets, coherency, and the usual questions",
    )
    .argument("[input]", "host to analyse (default: the built-in desktop)")
    .option("--live", "analyse this machine (reads /sys and /proc; complete only as root)")
    .option(
      "--device <dev...>",
      "ask the questions about these devices (BDF or vendor:device; default: every GPU)",
    )
    .option("--json", "machine-readable output")
    .option("--markdown", "Markdown, for pasting into a forum thread")
    .addOption(new Option("--root <dir>", "read DIR/sys and DIR/proc with --live").hideHelp())
    .action(async (input: string | undefined, opts) => {
      code = await analyzeCommand(input, opts);
    });

  program
    .command("plan")
    .description(
      "pass-through plan for devices: what goes with them, binding steps, kernel command line, QEMU and libvirt",
    )
    .argument("<device...>", "PCI address (0000:01:00.0 or 01:00.0) or vendor:device")
    .option("--input <input>", "host to plan on (default: the built-in desktop)")
    .option("--live", "plan on this machine")
    .option("--json", "machine-readable output")
    .option("--apply", "bind the devices to vfio-pci on this machine now (root; asks first)")
    .option("--undo", "give the devices back to their default drivers (root; asks first)")
    .option("--yes", "do not ask before --apply/--undo")
    .addOption(new Option("--root <dir>", "use DIR/sys instead of /sys").hideHelp())
    .action(async (devices: string[], opts) => {
      code = await planCommand(devices, opts);
    });

  program
    .command("snapshot")
    .description("capture this machine's PCI/IOMMU state into a snapshot any passthru can read")
    .option("-o, --output <file>", "where to write it ('-' for standard output)", undefined)
    .option("--script", "print the equivalent POSIX sh script instead (for hosts without Node)")
    .addOption(new Option("--root <dir>", "capture DIR/sys, DIR/proc, DIR/dev").hideHelp())
    .action(async (opts) => {
      code = await snapshotCommand(opts);
    });

  program
    .command("replay")
    .description(
      "run a syscall script (SCRIPT.md) on the model booted from a host; one result line per operation",
    )
    .requiredOption("--snapshot <host>", "host snapshot (or any host input)")
    .requiredOption("--script <file>", "syscall script, JSON Lines")
    .action(async (opts: { snapshot: string; script: string }) => {
      code = await replayCommand(opts);
    });

  program
    .command("run")
    .description("run a scenario (YAML: host, processes, steps, expectations) and print its trace")
    .argument("<scenario>", "scenario file")
    .option("--json", "machine-readable output")
    .action(async (file: string, opts: { json?: boolean }) => {
      code = await runCommand(file, opts);
    });

  program
    .command("compare-designs")
    .description(
      "run a scenario under the 2013 kvm-vfio group design, the current cdev + iommufd design and " +
        "the 2021 KVM_ALLOW_INCOHERENT_DMA proposal (never merged, experimental), side by side",
    )
    .argument("<scenario>", "scenario file with a `vmm` step (e.g. coherency-compare-designs.yaml)")
    .option("--json", "machine-readable output")
    .action(async (file: string, opts: { json?: boolean }) => {
      code = await compareDesignsCommand(file, opts);
    });

  registerOracle(program, (c) => {
    code = c;
  });

  program
    .command("check")
    .description(
      "run a scenario with the model's invariants checked after every step (exit 1 on a violation)",
    )
    .argument("<scenario>", "scenario file")
    .option("--json", "machine-readable output")
    .action(async (file: string, opts: { json?: boolean }) => {
      code = await checkCommand(file, opts);
    });

  program
    .command("graph")
    .description("the PCI topology and IOMMU groups of a host as an SVG picture")
    .argument("<input>", "host to draw")
    .option("--svg <file>", "write the SVG here ('-' for standard output, the default)")
    .action(async (input: string, opts: { svg?: string }) => {
      code = await graphCommand(input, opts);
    });

  program
    .command("serve")
    .description(
      "the visual explorer in your browser: topology, explanations, plans, scenarios (local only)",
    )
    .argument("[input]", "host to open first (it is analysed in the browser)")
    .option("--port <n>", "port to listen on (0: any free port)", "8737")
    .option("--host <addr>", "address to bind", "127.0.0.1")
    .action(async (input: string | undefined, opts: { port: string; host: string }) => {
      code = await serveCommand(input, opts);
    });

  program
    .command("hosts")
    .description("list the built-in example hosts")
    .option("--json", "machine-readable output")
    .action((opts: { json?: boolean }) => {
      const names = builtinHosts();
      process.stdout.write(
        opts.json ? JSON.stringify({ hosts: names }) + "\n" : names.join("\n") + "\n",
      );
    });

  try {
    await program.parseAsync(argv, { from: "user" });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    return reportError(e);
  }
}

const invoked = process.argv[1] ?? "";
if (invoked.endsWith("main.js") || invoked.endsWith("passthru")) {
  // Exit once stdout has drained: process.exit() would cut a large report short on a pipe.
  main(process.argv.slice(2)).then((c) => process.stdout.write("", () => process.exit(c)));
}
