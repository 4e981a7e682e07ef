/**
 * Loading a scenario file and its host (a built-in name, or a host file relative to the
 * scenario), with located errors; `steps` gives the input error for a scenario with steps
 * that cannot run at all (what `run` and `check` refuse, exit 2).
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { InputError } from "../../host/errors.js";
import { loadHost } from "../../host/load.js";
import type { Host } from "../../host/build.js";
import { parseYaml } from "../../host/yaml.js";
import { scenarioSchema, type Scenario } from "./schema.js";

export interface LoadedScenario {
  scenario: Scenario;
  host: Host;
  /** The input error for the first of a run's steps that could not run at all, if any. */
  unrunnable(steps: { index: number; message: string }[]): InputError | null;
}

export async function loadScenario(file: string): Promise<LoadedScenario> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    throw new InputError(file, "cannot read the scenario");
  }
  const { spec, locate } = parseYaml(
    scenarioSchema,
    text,
    file,
    "expected a scenario: name, host and steps",
  );
  const rel = resolve(dirname(file), spec.host);
  try {
    const host = await loadHost(existsSync(rel) ? rel : spec.host);
    const unrunnable = (steps: { index: number; message: string }[]) => {
      const bad = steps[0];
      if (!bad) return null;
      const field = `steps[${bad.index - 1}]`;
      return new InputError(file, bad.message, locate(field), field);
    };
    return { scenario: spec, host, unrunnable };
  } catch (e) {
    if (e instanceof InputError && e.file === spec.host)
      throw new InputError(file, e.detail, locate("host"), "host");
    throw e;
  }
}
