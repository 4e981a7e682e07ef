/**
 * The explorer's browser-safe code, run under Node: the tar reader against the snapshot
 * reader the CLI uses, byte input giving the same groups as `loadHost`, the topology (ACS
 * marks, groups as regions that hold their members, no overlapping devices), the
 * explanation data equal to `groups --explain --json`, the kernel's read-only
 * introspection while a scenario runs, and `passthru graph --svg`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { loadHost } from "../../src/host/load.js";
import { readSnapshot } from "../../src/host/snapshot.js";
import { analyzeGroups } from "../../src/userspace/analyze/groups.js";
import { toTarGz } from "../../src/userspace/snapshot/capture.js";
import { collectAssets } from "../../src/cli/webbuild.js";
import { loadBytes } from "../../src/web/input.js";
import { layoutTopology } from "../../src/web/layout.js";
import { runScenarioText } from "../../src/web/scenario.js";
import { analyzeForView, deviceDetails } from "../../src/web/session.js";
import { renderSvg } from "../../src/web/svg.js";
import { readTar } from "../../src/web/tar.js";
import { CLI, ROOT, lspciFixtures, oracleCases } from "../support/paths.js";

const CEZANNE = join(ROOT, "test", "fixtures", "lspci", "amd-cezanne-rog-flow-x13.txt");

function partition(groups: { devices: { bdf: string }[] }[]): string[] {
  return groups.map((g) => g.devices.map((d) => d.bdf).join(",")).sort();
}

test("the tar reader gives the snapshot reader's files (GNU tar and tar-stream's pax)", async () => {
  const cases = [...oracleCases().values()].slice(0, 6);
  assert.ok(cases.length > 0);
  for (const dir of cases) {
    const file = join(dir, "snapshot.tar.gz");
    const want = await readSnapshot(file);
    const got = readTar(gunzipSync(readFileSync(file)));
    assert.deepEqual([...got.keys()].sort(), [...want.entries.keys()].sort(), file);
    for (const [k, e] of want.entries) {
      const g = got.get(k);
      if (e.kind === "file")
        assert.deepEqual(Buffer.from((g as { data: Uint8Array }).data), e.data);
      else assert.deepEqual(g, e);
    }
    // Repacked by tar-stream (pax headers for the long sysfs paths): the same again.
    const entries = new Map(
      [...want.entries].map(([k, e]) => [k, e.kind === "file" ? { ...e, mode: 0o644 } : e]),
    );
    const repacked = readTar(gunzipSync(await toTarGz(entries)));
    assert.deepEqual([...repacked.keys()].sort(), [...want.entries.keys()].sort());
  }
});

test("bytes give the groups loadHost gives: lspci text, a gzip'd snapshot, host YAML", async () => {
  const snap = join(oracleCases().get("group-acs") as string, "snapshot.tar.gz");
  const inputs: [string, Uint8Array][] = [
    [CEZANNE, readFileSync(CEZANNE)],
    [snap, readFileSync(snap)],
    [join(ROOT, "hosts", "server.yaml"), readFileSync(join(ROOT, "hosts", "server.yaml"))],
  ];
  for (const [path, bytes] of inputs) {
    const { host, snapshot } = await loadBytes(path, bytes);
    const want = analyzeGroups(await loadHost(path)).report;
    const got = analyzeGroups(host).report;
    assert.deepEqual(partition(got.groups), partition(want.groups), path);
    assert.equal(!!snapshot, path.endsWith(".tar.gz"));
  }
  await assert.rejects(loadBytes("x.gz", gzipSync("plain text, no tar")), /holds no tar archive/);
  await assert.rejects(loadBytes("empty.txt", new Uint8Array()), /empty input/);
});

test("the topology marks the bridge that breaks isolation with the missing ACS bits", async () => {
  const { host } = await loadBytes(CEZANNE, readFileSync(CEZANNE));
  const v = await analyzeForView(host);
  const byBdf = new Map(v.topology.devices.map((d) => [d.bdf, d]));
  const gpp = byBdf.get("0000:00:08.1");
  assert.equal(gpp?.kind, "bridge");
  assert.equal(gpp?.acs?.breaks, true);
  assert.equal(gpp?.acs?.summary, "no cap: SV RR CR UF missing");
  assert.deepEqual(gpp?.acs?.missing, ["SrcValid", "ReqRedir", "CmpltRedir", "UpstreamFwd"]);
  assert.equal(byBdf.get("0000:00:02.2")?.acs?.isolates, true);
  assert.equal(byBdf.get("0000:08:00.0")?.driver, "amdgpu");
  assert.deepEqual(byBdf.get("0000:07:00.0")?.reset, ["flr", "bus"]);
  // A lone function that lacks ACS but joined no one is not marked.
  assert.equal(byBdf.get("0000:00:01.0")?.acs, undefined);
});

test("layout: every function drawn once, inside its group's region, none overlapping", async () => {
  for (const [name, file] of [...lspciFixtures()].slice(0, 13)) {
    const { host } = await loadBytes(file, readFileSync(file));
    const v = await analyzeForView(host);
    const devices = v.laid.nodes.filter((n) => n.kind === "device");
    assert.equal(devices.length, v.topology.devices.length, name);
    for (const g of v.laid.groups) {
      const members = v.topology.groups.find((x) => x.id === g.id)?.members ?? [];
      for (const m of members) {
        const n = devices.find((d) => d.id === m);
        assert.ok(n, `${name}: ${m} drawn`);
        assert.ok(
          n.x >= g.x &&
            n.y >= g.y &&
            n.x + n.width <= g.x + g.width &&
            n.y + n.height <= g.y + g.height,
          `${name}: ${m} inside group ${g.id}`,
        );
      }
    }
    for (let i = 0; i < devices.length; i++)
      for (let j = i + 1; j < devices.length; j++) {
        const a = devices[i] as (typeof devices)[number];
        const b = devices[j] as (typeof devices)[number];
        const apart =
          a.x + a.width <= b.x ||
          b.x + b.width <= a.x ||
          a.y + a.height <= b.y ||
          b.y + b.height <= a.y;
        assert.ok(apart, `${name}: ${a.id} and ${b.id} overlap`);
      }
    assert.ok(
      v.laid.edges.every((e) => e.points.length >= 2),
      `${name}: every edge routed`,
    );
  }
});

test("a device's explanation is the data of groups --explain --json; its plan is plan's", async () => {
  const { host } = await loadBytes(CEZANNE, readFileSync(CEZANNE));
  const v = await analyzeForView(host);
  const d = deviceDetails(v.analysis, "0000:08:00.0");
  const r = spawnSync(
    process.execPath,
    [CLI, "groups", CEZANNE, "--explain", "08:00.0", "--json"],
    {
      encoding: "utf8",
    },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(JSON.stringify(d?.explanation)), JSON.parse(r.stdout));
  assert.equal(d?.explanation?.chain.at(-1)?.founded, true);
  assert.ok(d?.plan?.pass.includes("0000:08:00.1"), "the audio function goes along");
  assert.ok(d?.plan?.qemu.some((q) => q.includes("host=0000:08:00.0")));
});

test("scenario states: the kernel's open files, VFIO objects and their links after each step", () => {
  const assets = collectAssets(ROOT);
  const file = "examples/scenarios/vfio-rst-example.yaml";
  const run = runScenarioText(assets.files[file] as string, file, assets);
  assert.equal(run.report.failed, 0);
  assert.deepEqual(run.initial.processes[0]?.fds, []);
  const after = (op: string, arg?: string) => {
    const i = run.scenario.steps.findIndex(
      (s) => s.op === op && (arg === undefined || (s as Record<string, unknown>).req === arg),
    );
    return run.states[i];
  };
  const container = after("open")?.processes[0]?.fds.find((f) => f.file === "/dev/vfio/vfio");
  assert.match(container?.object ?? "", /^VFIO container #\d+ \(no IOMMU backend set\)$/);
  const set = after("ioctl", "VFIO_SET_IOMMU");
  assert.equal(set?.vfio.containers[0]?.iommu, "vfio-iommu-type1");
  assert.deepEqual(set?.vfio.containers[0]?.groups, [9]);
  assert.equal(set?.vfio.groups[0]?.container, set?.vfio.containers[0]?.id);
  const last = run.states.at(-1);
  assert.ok(last?.processes[0]?.fds.some((f) => f.object === "VFIO device 0000:02:00.0"));
  // Every shipped scenario runs in the explorer as on the command line.
  for (const f of assets.scenarios) {
    const r = runScenarioText(assets.files[f] as string, f, assets);
    assert.equal(r.states.length, r.scenario.steps.length, f);
  }
});

test("passthru graph --svg writes the topology picture, the same every time", async () => {
  const dir = mkdtempSync(join(tmpdir(), "passthru-graph-"));
  const out = join(dir, "cezanne.svg");
  const r = spawnSync(process.execPath, [CLI, "graph", CEZANNE, "--svg", out], {
    encoding: "utf8",
  });
  assert.equal(r.status, 0, r.stderr);
  const svg = readFileSync(out, "utf8");
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.match(svg, /<\/svg>\n$/);
  // Well formed: every element closed, in order.
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    if (m[3]) continue;
    if (m[1]) assert.equal(stack.pop(), m[2]);
    else stack.push(m[2] as string);
  }
  assert.deepEqual(stack, []);
  assert.equal(
    svg.match(/<g class="pt-node pt-(?:bridge|host-bridge|endpoint)[^"]*" /g)?.length,
    29,
  );
  assert.equal(svg.match(/class="pt-group"/g)?.length, 10);
  assert.match(svg, /class="pt-node pt-bridge pt-breaks"[^>]*data-bdf="0000:00:08\.1"/);
  assert.match(svg, /ACS ✗ no cap: SV RR CR UF missing/);
  assert.match(svg, /amdgpu · reset: bus/);
  assert.ok(!svg.includes('tabindex="'), "the export is not interactive");
  // Standard output by default, and the same bytes as the library gives.
  const again = spawnSync(process.execPath, [CLI, "graph", CEZANNE], { encoding: "utf8" });
  assert.equal(again.stdout, svg);
  const { host } = await loadBytes(CEZANNE, readFileSync(CEZANNE));
  const v = await analyzeForView(host);
  assert.equal(renderSvg(await layoutTopology(v.topology)), svg);
  const bad = spawnSync(process.execPath, [CLI, "graph", "/nonexistent.txt"], { encoding: "utf8" });
  assert.equal(bad.status, 2);
});
