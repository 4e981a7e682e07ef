#!/usr/bin/env node
/**
 * The passthru command line. One file per command under src/cli/, each thin over the
 * library; this file wires them with commander and owns exit codes and error reporting.
 */
import { Command, CommanderError } from "commander";
import { builtinHosts } from "../host/load.js";
import { groupsCommand } from "./groups.js";
import { replayCommand } from "./replay.js";
import { runCommand } from "./run.js";
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
  main(process.argv.slice(2)).then((c) => process.exit(c));
}
