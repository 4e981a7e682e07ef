/**
 * `passthru replay --snapshot S --script X`: run a syscall script on the model booted from
 * a host and print one result line per operation (SCRIPT.md). Exit 0 when the script ran,
 * whatever its results; 2 when the host or the script is unusable.
 */
import { loadHost } from "../host/load.js";
import { loadScript, replay } from "../userspace/replay/replay.js";
import { EXIT_OK } from "./output.js";

export async function replayCommand(opts: { snapshot: string; script: string }): Promise<number> {
  const script = loadScript(opts.script);
  const host = await loadHost(opts.snapshot);
  for (const line of replay(host, script)) process.stdout.write(line + "\n");
  return EXIT_OK;
}
