/**
 * Importer for `lspci -x` / `-xxx` / `-xxxx` hex dumps (optionally with `-v`, `-k`, `-nn`,
 * `-D` text mixed in): one FunctionSpec per function with its raw config space as `config`,
 * plus the bound driver and IOMMU group when the text lines show them.
 *
 * Follows pciutils: lspci.c `show_hex_dump` writes the dump ("%02x:" offset, then 16
 * " %02x" bytes a line, a blank line after each function), and lib/dump.c `dump_init` reads
 * it back for `lspci -F`: a title is "bb:dd.f " or "dddd:bb:dd.f " at column 0, a data
 * line is "OFF: xx xx ...", an empty line ends the function, other lines are skipped.
 *
 * Stricter than dump.c on purpose. dump.c accepts any offsets, fills holes with 0xff, and
 * accepts any length, but then `lspci -F` cannot read a function with fewer than 64 bytes
 * (scan_device: "no config access") and fails reads past the end. lspci itself only ever
 * writes 64 bytes (-x), 128 (-x on a CardBus bridge, whose header is 128 bytes), 256 (-xxx)
 * or 4096 (-xxxx), in sequence, 16 a line. Anything else is a damaged or hand-edited file,
 * and inventing 0xff bytes would change what the model sees, so it is an InputError.
 */
import { InputError } from "./errors.js";
import {
  checkText,
  finishHost,
  formatAddr,
  parseAddr,
  parseObserved,
  parseTitle,
  splitLines,
  type Parsed,
} from "./lspci.js";
import type { HostSpec } from "./spec.js";

const DATA_RE = /^([0-9a-fA-F]{2,8}): (.*)$/;
const BYTE_RE = /^[0-9a-fA-F]{2}$/;
const LENGTHS = [64, 256, 4096];
const CARDBUS_LENGTH = 128;
const HEADER_TYPE = 0x0e;

interface Current {
  p: Parsed;
  bytes: number[];
  lastLine: number;
}

export function parseHexdump(text: string, file: string): HostSpec {
  const what = "lspci -x/-xxx/-xxxx output";
  const parsed: Parsed[] = [];
  let cur: Current | undefined;

  const finish = (): void => {
    if (!cur) return;
    const { p, bytes, lastLine } = cur;
    cur = undefined;
    if (!bytes.length)
      throw new InputError(
        file,
        "expected hex dump lines after the title (run lspci with -x)",
        p.line,
        "config",
      );
    const cardbus = ((bytes[HEADER_TYPE] ?? 0) & 0x7f) === 2;
    if (!LENGTHS.includes(bytes.length) && !(cardbus && bytes.length === CARDBUS_LENGTH))
      throw new InputError(
        file,
        `expected 64, 256 or 4096 bytes of config space (128 for a CardBus bridge), got ${bytes.length}`,
        lastLine,
        "config",
      );
    p.spec.config = bytes.map((b) => b.toString(16).padStart(2, "0")).join("");
    p.vendor = bytes[0]! | (bytes[1]! << 8);
    p.device = bytes[2]! | (bytes[3]! << 8);
    p.classCode = bytes[9]! | (bytes[10]! << 8) | (bytes[11]! << 16);
  };

  for (const line of splitLines(checkText(text, file, what))) {
    const t = line.text;
    if (!t) {
      finish(); // dump.c: an empty line ends the function
      continue;
    }
    if (line.indent > 0) {
      if (!cur)
        throw new InputError(file, `expected ${what}: a title line first`, line.no, "title");
      parseObserved(line, cur.p.spec, file);
      continue;
    }
    const addr = parseAddr(line, file);
    if (addr) {
      finish();
      const spec: Parsed["spec"] = { addr: formatAddr(addr) };
      const title = parseTitle(addr.rest);
      const name =
        title?.name ?? addr.rest.replace(/^[^:]*:\s*/, "").replace(/\s*\((?:rev|prog-if) .*$/, "");
      if (name) spec.name = name;
      cur = { p: { ...addr, spec, line: line.no }, bytes: [], lastLine: line.no };
      parsed.push(cur.p);
      continue;
    }
    const m = DATA_RE.exec(t);
    if (!m) {
      const detail = t.startsWith("WARNING: Cannot show hex-dump")
        ? "lspci could not read this function's config space"
        : `expected ${what}: a title "bb:dd.f ..." or a hex line "OFF: xx xx ..."`;
      throw new InputError(file, detail, line.no, cur ? "config" : "title");
    }
    if (!cur)
      throw new InputError(file, "expected a title line before the hex dump", line.no, "config");
    const off = parseInt(m[1]!, 16);
    if (off !== cur.bytes.length)
      throw new InputError(
        file,
        `expected offset ${cur.bytes.length.toString(16).padStart(2, "0")}, got ${m[1]}`,
        line.no,
        "config",
      );
    const bytes = m[2]!.split(" ");
    const bad = bytes.find((b) => !BYTE_RE.test(b));
    if (bad !== undefined)
      throw new InputError(file, `expected a hex byte, got "${bad}"`, line.no, "config");
    if (bytes.length !== 16)
      throw new InputError(file, `expected 16 bytes, got ${bytes.length}`, line.no, "config");
    if (off + 16 > 4096)
      throw new InputError(file, "expected at most 4096 bytes of config space", line.no, "config");
    cur.bytes.push(...bytes.map((b) => parseInt(b, 16)));
    cur.lastLine = line.no;
  }
  finish();
  if (!parsed.length) throw new InputError(file, `expected ${what}: no PCI function found`, 1);
  return finishHost(file, parsed, { multifunction: false, unprivileged: false });
}
