/**
 * Replay a syscall script on the kernel model booted from a host: the model side of a
 * differential case (SCRIPT.md). The script runs as root, as the oracle agent does.
 */
import { readFileSync } from "node:fs";
import type { Host } from "../../host/build.js";
import { InputError } from "../../host/errors.js";
import { bootHost } from "../boot.js";
import { Runner } from "./runner.js";
import { parseScript, type Script } from "./script.js";

export function loadScript(path: string): Script {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    throw new InputError(path, "cannot read the script");
  }
  return parseScript(text, path);
}

export function replay(host: Host, script: Script): string[] {
  const kernel = bootHost(host);
  return new Runner(kernel.spawn()).run(script);
}
