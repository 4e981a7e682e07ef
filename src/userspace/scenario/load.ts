/**
 * Loading a scenario file and its host (a built-in name, or a host file relative to the
 * scenario), with located errors.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { InputError } from "../../host/errors.js";
import { loadHost } from "../../host/load.js";
import type { Host } from "../../host/build.js";
import { parseYaml } from "../../host/yaml.js";
import { scenarioSchema, type Scenario } from "./schema.js";

export async function loadScenario(file: string): Promise<{ scenario: Scenario; host: Host }> {
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
    return { scenario: spec, host };
  } catch (e) {
    if (e instanceof InputError && e.file === spec.host)
      throw new InputError(file, e.detail, locate("host"), "host");
    throw e;
  }
}
