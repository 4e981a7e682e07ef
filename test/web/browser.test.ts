/**
 * The web explorer in a real Chromium (Debian's, driven by playwright-core): the static
 * build analyses a dropped lspci fixture from file:// with no server and contacts nothing;
 * a device's explanation chain and plan; `passthru serve SNAPSHOT` opening a snapshot on
 * 127.0.0.1; stepping and playing a scenario; keyboard-only use; legibility at 1280×800 and
 * at phone width (390×844). Screenshots go to test-artifacts/web/ (git-ignored).
 *
 * Needs /usr/bin/chromium (or PASSTHRU_CHROMIUM): .ci/run installs Debian's chromium. Without
 * it every test here is skipped, saying so.
 */
import { after, before, test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { pathToFileURL } from "node:url";
import type { Server } from "node:http";
import { chromium, type Browser, type Page } from "playwright-core";
import { buildWeb } from "../../src/cli/webbuild.js";
import { startServer } from "../../src/cli/serve.js";
import { loadHost } from "../../src/host/load.js";
import { analyzeGroups } from "../../src/userspace/analyze/groups.js";
import { explainDevice } from "../../src/userspace/analyze/explain.js";
import { ROOT, oracleCases } from "../support/paths.js";

const CHROMIUM = process.env.PASSTHRU_CHROMIUM ?? "/usr/bin/chromium";
const SKIP = existsSync(CHROMIUM)
  ? false
  : `no Chromium at ${CHROMIUM}: browser tests skipped (install Debian's chromium: apt-get install chromium)`;
if (SKIP) process.stdout.write(`# ${SKIP}\n`);

const ART = join(ROOT, "test-artifacts", "web");
const CEZANNE = join(ROOT, "test", "fixtures", "lspci", "amd-cezanne-rog-flow-x13.txt");
const SNAPSHOT = join(oracleCases().get("group-acs") ?? "", "snapshot.tar.gz");
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let browser: Browser;
let staticUrl: string;
let server: Server;
let serverUrl: string;

before(async () => {
  if (SKIP) return;
  mkdirSync(ART, { recursive: true });
  const dir = await buildWeb(mkdtempSync(join(tmpdir(), "passthru-web-")));
  staticUrl = pathToFileURL(join(dir, "index.html")).href;
  ({ server, url: serverUrl } = await startServer(SNAPSHOT, { port: "0", dir }));
  try {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  } catch (e) {
    unusable = `Chromium at ${CHROMIUM} did not start (${(e as Error).message.split("\n")[0]}): browser tests skipped`;
    process.stdout.write(`# ${unusable}\n`);
  }
});

let unusable: string | null = null;

/** False (the test skipped, saying why) when Chromium is installed but will not start. */
function ready(t: TestContext): boolean {
  if (unusable) t.skip(unusable);
  return !unusable;
}

after(async () => {
  await browser?.close();
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
});

interface Opened {
  page: Page;
  /** Every URL the page requested. */
  requests: string[];
  errors: string[];
}

async function open(url: string, width = 1280, height = 800): Promise<Opened> {
  const context = await browser.newContext({ viewport: { width, height } });
  const page = await context.newPage();
  const requests: string[] = [];
  const errors: string[] = [];
  page.on("request", (r) => requests.push(r.url()));
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  await page.goto(url);
  await loaded(page, 1);
  return { page, requests, errors };
}

/** Wait until the page has finished `n` loads; return its state. */
async function loaded(
  page: Page,
  n: number,
): Promise<{ host: string | null; error: string | null }> {
  await page.waitForFunction((k) => (window.passthruState?.loads ?? 0) >= k, n, {
    timeout: 60_000,
  });
  return page.evaluate(() => ({
    host: window.passthruState?.host ?? null,
    error: window.passthruState?.error ?? null,
  }));
}

/** Drop a file on the page the way a desktop drag does (a DataTransfer holding a File). */
async function drop(page: Page, file: string): Promise<void> {
  const b64 = readFileSync(file).toString("base64");
  await page.evaluate(
    ({ name, b64 }) => {
      const bin = atob(b64);
      const dt = new DataTransfer();
      dt.items.add(new File([Uint8Array.from(bin, (c) => c.charCodeAt(0))], name));
      for (const type of ["dragenter", "dragover", "drop"])
        document.body.dispatchEvent(
          new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }),
        );
    },
    { name: basename(file), b64 },
  );
}

/** Elements (outside the scrollable picture) reaching past the right edge of the viewport. */
function overflowing(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const out: string[] = [];
    for (const el of document.querySelectorAll("body *")) {
      if (el.closest("svg, .graph, pre")) continue;
      const r = el.getBoundingClientRect();
      if (r.width && r.right > window.innerWidth + 1)
        out.push(
          `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ""} ${el.textContent?.slice(0, 40)}`,
        );
    }
    return out;
  });
}

const shot = (page: Page, name: string, fullPage = false) =>
  page.screenshot({ path: join(ART, name), fullPage });

test(
  "static build from file://: a dropped lspci fixture, a device's chain and plan, no network",
  { skip: SKIP },
  async (t) => {
    if (!ready(t)) return;
    const { page, requests, errors } = await open(staticUrl);
    await drop(page, CEZANNE);
    const st = await loaded(page, 2);
    assert.deepEqual(st, { host: "amd-cezanne-rog-flow-x13", error: null });
    assert.match(
      (await page.textContent("#status")) ?? "",
      /10 IOMMU groups, 29 PCI functions \(lspci\)/,
    );
    // The bridge that breaks isolation is outlined, with the ACS bits it lacks.
    const gpp = page.locator('g[data-bdf="0000:00:08.1"]');
    assert.match((await gpp.getAttribute("class")) ?? "", /pt-breaks/);
    assert.match((await gpp.textContent()) ?? "", /ACS ✗ no cap: SV RR CR UF missing/);
    await shot(page, "topology-1280x800.png");

    await page.click('g[data-bdf="0000:08:00.0"]');
    await page.waitForSelector("#details h2:has-text('08:00.0')");
    const details = (await page.textContent("#details")) ?? "";
    const host = await loadHost(CEZANNE);
    const { kernel, report } = analyzeGroups(host);
    const want = explainDevice(kernel, report, "0000:08:00.0");
    assert.ok(want);
    assert.match(details, /How Linux decided/);
    assert.ok(details.includes(want.decided.text), "the decision, as groups --explain gives it");
    for (const link of want.chain) assert.ok(details.includes(link.decided.text), link.dev);
    assert.match(details, /founded the group/);
    assert.match(details, /Pass-through plan/);
    assert.match(details, /-device vfio-pci,host=0000:08:00\.0/);
    await shot(page, "device-1280x800.png");

    // Pasted text: a host description.
    await page.click("#paste-toggle");
    await page.fill("#paste-text", readFileSync(join(ROOT, "hosts", "server.yaml"), "utf8"));
    await page.click("#paste-go");
    assert.equal((await loaded(page, 3)).host, "server");
    // A file that is no host input: one located line, the page keeps working.
    await drop(page, join(ROOT, "package.json"));
    const bad = await loaded(page, 4);
    assert.ok(bad.error, "an error for package.json");
    assert.match(
      (await page.textContent("#error")) ?? "",
      /^Could not analyse package\.json: package\.json/,
    );

    assert.deepEqual(
      requests.filter((u) => !u.startsWith("file://")),
      [],
      "the static build loads only its own files",
    );
    assert.deepEqual(errors, []);
    await page.context().close();
  },
);

test(
  "passthru serve SNAPSHOT: 127.0.0.1, the page analyses the snapshot itself",
  { skip: SKIP },
  async (t) => {
    if (!ready(t)) return;
    assert.match(serverUrl, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const { page, requests, errors } = await open(serverUrl);
    const st = await loaded(page, 1);
    assert.equal(st.error, null);
    const groups = analyzeGroups(await loadHost(SNAPSHOT)).report.groups.length;
    assert.match(
      (await page.textContent("#status")) ?? "",
      new RegExp(`${groups} IOMMU groups, \\d+ PCI functions \\(snapshot\\)`),
    );
    assert.deepEqual(
      requests.filter((u) => !u.startsWith(serverUrl)),
      [],
      "only the server's own origin",
    );
    assert.deepEqual(errors, []);
    const res = await fetch(serverUrl);
    assert.match(res.headers.get("content-security-policy") ?? "", /connect-src 'self'/);
    assert.equal((await fetch(`${serverUrl}api/input`, { method: "POST" })).status, 405);
    assert.equal((await fetch(`${serverUrl}..%2f..%2fpackage.json`)).status, 404);
    await page.context().close();
  },
);

test(
  "scenario view: step, play and pause; fds, VFIO objects, what a read returned",
  { skip: SKIP },
  async (t) => {
    if (!ready(t)) return;
    const { page, errors } = await open(staticUrl);
    await page.click("#tab-scenario");
    await page.waitForSelector("#scn-steps button");
    assert.match((await page.textContent("#scn-title")) ?? "", /vfio-rst-example on desktop/);
    assert.match((await page.textContent("#scn-pos")) ?? "", /before step 1 of \d+/);
    // Step to the container open (step 3 of vfio.rst's example).
    for (let i = 0; i < 3; i++) await page.click("#scn-next");
    assert.match((await page.textContent("#scn-pos")) ?? "", /^step 3 of/);
    let state = (await page.textContent("#scn-state")) ?? "";
    assert.match(state, /\/dev\/vfio\/vfio/);
    assert.match(state, /VFIO container #\d+ \(no IOMMU backend set\)/);
    // Jump to the last step from the list: the device fd, the group in the container.
    await page.click("#scn-steps li:last-child button");
    state = (await page.textContent("#scn-state")) ?? "";
    assert.match(state, /VFIO device 0000:02:00\.0/);
    assert.match(state, /IOMMU backend vfio-iommu-type1; groups 9/);
    await shot(page, "scenario-1280x800.png");
    // Play from the start, then pause.
    await page.click("#scn-reset");
    await page.click("#scn-play");
    assert.equal(await page.getAttribute("#scn-play", "aria-pressed"), "true");
    await page.waitForFunction(() =>
      /^step [2-9]/.test(document.querySelector("#scn-pos")?.textContent ?? ""),
    );
    await page.click("#scn-play");
    assert.equal(await page.getAttribute("#scn-play", "aria-pressed"), "false");
    // The DMA scenario: what the device's register read returned.
    await page.selectOption("#scn-select", "examples/scenarios/edu-dma.yaml");
    await page.waitForSelector("#scn-title:has-text('edu-dma')");
    const idx = await page.$$eval("#scn-steps .op", (ops) =>
      ops.findIndex((o) => o.textContent === "pread"),
    );
    await page.click(`#scn-steps li:nth-child(${idx + 1}) button`);
    assert.match((await page.textContent("#scn-state .read")) ?? "", /read: ed000001/);
    // A coherency scenario, when shipped: the guest's WBINVD exits and the VM's verdict.
    const coherency = "examples/scenarios/coherency-nosnoop-kvm-vfio.yaml";
    if (existsSync(join(ROOT, coherency))) {
      await page.selectOption("#scn-select", coherency);
      await page.waitForSelector("#scn-title:has-text('coherency-nosnoop-kvm-vfio')");
      const guest = await page.$$eval("#scn-steps .op", (ops) =>
        ops.findIndex((o) => o.textContent === "guest"),
      );
      await page.click(`#scn-steps li:nth-child(${guest + 1}) button`);
      const st = (await page.textContent("#scn-state")) ?? "";
      assert.match(st, /wbinvd exits\s*2/);
      assert.match(st, /Non-coherent DMA registered/);
      await shot(page, "scenario-coherency-1280x800.png");
    }
    assert.deepEqual(errors, []);
    await page.context().close();
  },
);

test(
  "keyboard only: tabs, devices by arrow keys, details, scenario steps",
  { skip: SKIP },
  async (t) => {
    if (!ready(t)) return;
    const { page } = await open(staticUrl);
    const active = () =>
      page.evaluate(() => {
        const a = document.activeElement;
        return a?.getAttribute("data-bdf") || a?.id || a?.tagName || "";
      });
    const tabTo = async (want: (a: string) => boolean, max = 30) => {
      for (let i = 0; i < max; i++) {
        await page.keyboard.press("Tab");
        if (want(await active())) return;
      }
      assert.fail(`Tab never reached the element (at ${await active()})`);
    };
    // Into the picture: one tab stop, arrows move through the devices.
    await tabTo((a) => a.startsWith("0000:"));
    const first = await active();
    assert.equal(first, "0000:00:00.0");
    await page.keyboard.press("ArrowDown");
    assert.equal(await active(), "0000:00:01.0");
    await page.keyboard.press("ArrowRight"); // the first function below the bridge
    assert.equal(await active(), "0000:01:00.0");
    await page.keyboard.press("ArrowLeft");
    assert.equal(await active(), "0000:00:01.0");
    await page.keyboard.press("Enter");
    await page.waitForSelector("#details h2:has-text('00:01.0')");
    assert.match((await page.textContent("#details")) ?? "", /does not isolate/);
    await shot(page, "keyboard-device-1280x800.png");
    await page.keyboard.press("Escape");
    await page.waitForSelector("#details h3:has-text('Groups')");
    // The tab list: Shift+Tab back to it, arrow to Scenario.
    await page.keyboard.press("Shift+Tab");
    for (let i = 0; i < 30 && (await active()) !== "tab-topology"; i++)
      await page.keyboard.press("Shift+Tab");
    assert.equal(await active(), "tab-topology");
    await page.keyboard.press("ArrowRight");
    assert.equal(await active(), "tab-scenario");
    await page.waitForSelector("#scn-steps button");
    await tabTo((a) => a === "scn-next");
    await page.keyboard.press("Enter");
    await page.keyboard.press("Enter");
    assert.match((await page.textContent("#scn-pos")) ?? "", /^step 2 of/);
    // In the step list, arrow keys step.
    await tabTo((a) => a === "BUTTON" || a === "scn-steps", 10);
    await page.keyboard.press("ArrowDown");
    assert.match((await page.textContent("#scn-pos")) ?? "", /^step 3 of/);
    await shot(page, "keyboard-scenario-1280x800.png");
    await page.context().close();
  },
);

test(
  "phone width 390×844: no sideways page scroll, readable text, details below the picture",
  { skip: SKIP },
  async (t) => {
    if (!ready(t)) return;
    const { page, errors } = await open(staticUrl, 390, 844);
    await drop(page, CEZANNE);
    assert.equal((await loaded(page, 2)).host, "amd-cezanne-rog-flow-x13");
    const layout = await page.evaluate(() => ({
      scroll: document.documentElement.scrollWidth,
      body: parseFloat(getComputedStyle(document.body).fontSize),
      details: parseFloat(getComputedStyle(document.querySelector("#details") as Element).fontSize),
    }));
    assert.ok(layout.scroll <= 390, `page is ${layout.scroll}px wide`);
    assert.deepEqual(await overflowing(page), [], "nothing wider than the phone");
    assert.ok(layout.body >= 14 && layout.details >= 14, JSON.stringify(layout));
    await shot(page, "topology-390x844.png");
    await page.click('g[data-bdf="0000:00:08.1"]');
    await page.waitForSelector("#details h2:has-text('00:08.1')");
    await page.locator("#details h3").first().scrollIntoViewIfNeeded();
    await shot(page, "device-390x844.png");
    assert.deepEqual(await overflowing(page), [], "nothing wider than the phone");
    await page.click("#tab-scenario");
    await page.waitForSelector("#scn-steps button");
    for (let i = 0; i < 4; i++) await page.click("#scn-next");
    assert.deepEqual(await overflowing(page), [], "nothing wider than the phone");
    await shot(page, "scenario-390x844.png");
    assert.deepEqual(errors, []);
    await page.context().close();
  },
);
