import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { InputError } from "../../src/host/errors.js";
import { parseHexdump } from "../../src/host/hexdump.js";
import { hostSpecSchema } from "../../src/host/spec.js";

/**
 * `lspci -vnnk -x` of two Tiger Lake functions, trimmed to the lines this importer reads.
 * 00:00.0: 8086:9a14, command 0006, status 2090 (capability list), class 060000, header
 * type 00, subsystem 8086:3003, capability pointer e0.
 * 00:1f.3: 8086:a0c8, class 040380, header type 80 (multi-function), 64-bit BAR0 and BAR4,
 * capability pointer 50, interrupt pin A.
 */
const DUMP = `00:00.0 Host bridge [0600]: Intel Corporation 11th Gen Core Processor Host Bridge/DRAM Registers [8086:9a14] (rev 01)
	Subsystem: Intel Corporation Device [8086:3003]
	Flags: bus master, fast devsel, latency 0, IOMMU group 3
	Capabilities: [e0] Vendor Specific Information: Len=14 <?>
	Kernel modules: igen6_edac
00: 86 80 14 9a 06 00 90 20 01 00 00 06 00 00 00 00
10: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
20: 00 00 00 00 00 00 00 00 00 00 00 00 86 80 03 30
30: 00 00 00 00 e0 00 00 00 00 00 00 00 00 00 00 00

00:1f.3 Audio device [0403]: Intel Corporation Tiger Lake-LP Smart Sound Technology Audio Controller [8086:a0c8] (rev 20) (prog-if 80)
	Subsystem: Intel Corporation Device [8086:3003]
	Flags: bus master, fast devsel, latency 32, IRQ 197, IOMMU group 13
	Memory at 606aa10000 (64-bit, non-prefetchable) [size=16K]
	Memory at 606a000000 (64-bit, non-prefetchable) [size=1M]
	Capabilities: [50] Power Management version 3
	Kernel driver in use: snd_hda_intel
	Kernel modules: snd_hda_intel, snd_sof_pci_intel_tgl
00: 86 80 c8 a0 06 04 10 00 20 80 03 04 10 00 80 00
10: 04 00 a1 6a 60 00 00 00 00 00 00 00 00 00 00 00
20: 04 00 00 6a 60 00 00 00 00 00 00 00 86 80 03 30
30: 00 00 00 00 50 00 00 00 00 00 00 00 ff 01 00 00

`;

const LINES = DUMP.split("\n");
/** The config hex of DUMP's lines [from, to) (0-based), without offsets and spaces. */
const bytesOf = (from: number, to: number): string =>
  LINES.slice(from, to)
    .map((l) => l.replace(/^[0-9a-f]+: /, "").replace(/ /g, ""))
    .join("");

/** Formats bytes the way lspci.c show_hex_dump does. */
function hex(bytes: number[]): string {
  const out: string[] = [];
  for (let i = 0; i < bytes.length; i += 16)
    out.push(
      `${i.toString(16).padStart(2, "0")}: ${bytes
        .slice(i, i + 16)
        .map((b) => b.toString(16).padStart(2, "0"))
        .join(" ")}`,
    );
  return out.join("\n");
}

/** A config space of `len` bytes with the given header type, ids 8086:1533 (I210). */
function config(len: number, headerType = 0): number[] {
  const b = Array.from({ length: len }, (_, i) => (i * 7) & 0xff);
  [b[0], b[1], b[2], b[3], b[0x0e]] = [0x86, 0x80, 0x33, 0x15, headerType];
  return b;
}

function throwsAt(text: string, line: number, detail?: RegExp): void {
  assert.throws(
    () => parseHexdump(text, "d.hex"),
    (e: unknown) => {
      assert.ok(e instanceof InputError, `InputError, got ${String(e)}`);
      assert.equal(e.file, "d.hex");
      assert.equal(e.line, line, e.message);
      if (detail) assert.match(e.detail, detail);
      return true;
    },
  );
}

test("a two-function lspci -vnnk -x dump", () => {
  const h = parseHexdump(DUMP, "/tmp/nuc.hex");
  assert.deepEqual(hostSpecSchema.parse(h), h);
  assert.equal(h.name, "nuc");
  assert.equal(h.unprivileged, false);
  assert.deepEqual(h.iommu, [{ kind: "intel-vtd", name: "dmar0", segment: 0 }]);
  assert.deepEqual(h.functions, [
    {
      addr: "0000:00:00.0",
      name: "Intel Corporation 11th Gen Core Processor Host Bridge/DRAM Registers",
      group: 3,
      config: bytesOf(5, 9),
    },
    {
      addr: "0000:00:1f.3",
      name: "Intel Corporation Tiger Lake-LP Smart Sound Technology Audio Controller",
      group: 13,
      driver: "snd_hda_intel",
      config: bytesOf(18, 22),
    },
  ]);
  assert.equal(h.functions[0]!.config!.slice(0, 24), "8680149a0600902001000006");
  assert.equal(h.functions[1]!.config!.length, 128);
});

test("-xxx, -xxxx, -D with a 5-digit domain, plain titles without -nn", () => {
  const text = [
    "0000:02:00.0 Ethernet controller: Intel Corporation I210 Gigabit Network Connection (rev 03)",
    hex(config(256)),
    "",
    "10000:e1:00.0 Non-Volatile memory controller: Micron Technology Inc 2300 NVMe SSD [Santana] (prog-if 02 [NVM Express])",
    hex(config(4096)),
    "",
  ].join("\n");
  const h = parseHexdump(text, "big.txt");
  assert.deepEqual(hostSpecSchema.parse(h), h);
  assert.deepEqual(
    h.functions.map((f) => [f.addr, f.config?.length, f.name]),
    [
      ["0000:02:00.0", 512, "Intel Corporation I210 Gigabit Network Connection"],
      ["10000:e1:00.0", 8192, "Micron Technology Inc 2300 NVMe SSD [Santana]"],
    ],
  );
  assert.equal(h.functions[1]!.config!.slice(0, 8), "86803315");
  assert.deepEqual(h.iommu, []); // no group lines
});

test("lengths: 64/256/4096, and 128 only for a CardBus bridge", () => {
  const one = (bytes: number[]) =>
    `02:00.0 CardBus bridge: Ricoh Co Ltd RL5c476 II\n${hex(bytes)}\n`;
  assert.equal(parseHexdump(one(config(128, 0x02)), "c").functions[0]!.config!.length, 256);
  assert.equal(parseHexdump(one(config(128, 0x82)), "c").functions[0]!.config!.length, 256);
  throwsAt(one(config(128, 0x00)), 9, /got 128/);
  throwsAt(one(config(80)), 6, /64, 256 or 4096 bytes.*got 80/);
  throwsAt(one(config(4112)), 258, /at most 4096/);
});

test("malformed dumps: InputError at the right line", () => {
  throwsAt("", 1, /empty/);
  throwsAt("\0\x01\x02garbage", 1, /binary/);
  throwsAt("random text\n", 1, /title/);
  throwsAt("00: 86 80 14 9a\n", 1, /title line before/);
  throwsAt("\tKernel driver in use: i915\n", 1, /title line first/);
  // Bad hex byte.
  const bad = [...LINES];
  bad[7] = "20: 00 00 00 00 00 00 00 00 00 00 00 00 86 80 03 3g";
  throwsAt(bad.join("\n"), 8, /hex byte, got "3g"/);
  // Offset out of sequence (line 10: skipped), repeated, or not hex.
  const skip = [...LINES];
  skip.splice(6, 1);
  throwsAt(skip.join("\n"), 7, /expected offset 10, got 20/);
  const rep = [...LINES];
  rep[7] = rep[6]!;
  throwsAt(rep.join("\n"), 8, /expected offset 20, got 10/);
  // Short line, two spaces, a byte too many.
  const short = [...LINES];
  short[6] = "10: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00";
  throwsAt(short.join("\n"), 7, /16 bytes, got 15/);
  const sp = [...LINES];
  sp[6] = "10: 00  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00";
  throwsAt(sp.join("\n"), 7, /hex byte, got ""/);
  // The dump stops short (truncated capture): 3 lines of 16 = 48 bytes.
  throwsAt(LINES.slice(0, 8).join("\n"), 8, /got 48/);
  // A title with no dump under it, and lspci's own warning.
  throwsAt(`${LINES[0]}\n\n${LINES.slice(10).join("\n")}`, 1, /run lspci with -x/);
  throwsAt(`${LINES[0]}\nWARNING: Cannot show hex-dump of the config space\n`, 2, /could not read/);
  // Duplicate address.
  throwsAt(`${DUMP}${LINES.slice(0, 10).join("\n")}\n`, 24, /duplicate address 0000:00:00.0/);
  // A bad group number in the text lines.
  const grp = [...LINES];
  grp[2] = "\tIOMMU group: x";
  throwsAt(grp.join("\n"), 3, /group number/);
});

test("pcilib warnings captured with 2>&1 are skipped", () => {
  const text = DUMP.replace(
    "\n10: 00",
    "\npcilib: sysfs_read_vpd: read failed: No such device\n10: 00",
  );
  assert.deepEqual(parseHexdump(text, "a"), parseHexdump(DUMP, "a"));
});

test("damaged dumps never throw anything but InputError", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(
          fc.nat(LINES.length - 1),
          fc.nat(60),
          fc.constantFrom("cut", "drop", "dup", "junk"),
        ),
        { maxLength: 5 },
      ),
      (edits) => {
        const l = [...LINES];
        for (const [i, n, op] of edits) {
          const at = i % l.length;
          if (op === "cut") l[at] = l[at]!.slice(0, n);
          else if (op === "drop") l.splice(at, 1);
          else if (op === "dup") l.splice(at, 0, l[at]!);
          else l[at] = `${l[at]!.slice(0, n)}: zz 1`;
        }
        try {
          const h = parseHexdump(l.join("\n"), "f");
          hostSpecSchema.parse(h);
        } catch (e) {
          if (!(e instanceof InputError)) throw e;
        }
      },
    ),
    { numRuns: 300, seed: 7 },
  );
});
