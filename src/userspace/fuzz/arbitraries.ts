/**
 * fast-check generators for the fuzzer: a configuration (machine, command line, KVM
 * profile) and a sequence of abstract commands (model.ts). Kinds are weighted toward the
 * flow that reaches deep states (`step`) and toward ioctls; processes toward p0; selectors
 * are small naturals, biased toward small values, and shrink toward 0, the plainest choice.
 */
import fc from "fast-check";
import { CMDLINES, PROFILES, type FuzzConfig } from "./host.js";
import type { CmdKind, FuzzCmd } from "./model.js";

const WEIGHTS: [CmdKind, number][] = [
  ["step", 30],
  ["ioctl", 26],
  ["dma", 8],
  ["sysfs_write", 6],
  ["open", 5],
  ["close", 5],
  ["pread", 3],
  ["pwrite", 3],
  ["mmap", 3],
  ["dup", 2],
  ["munmap", 2],
  ["fill", 2],
  ["eventfd", 2],
  ["sysfs_read", 2],
  ["readlink", 1],
  ["exit", 1],
];

export const SELECTORS = 8;

const kindArb: fc.Arbitrary<CmdKind> = fc.oneof(
  ...WEIGHTS.map(([k, weight]) => ({ arbitrary: fc.constant(k), weight })),
);

/**
 * p0 most of the time; shrinks toward p0. (Every arbitrary here can shrink a value it
 * did not generate, so a failing sequence cut short can be given back to be shrunk.)
 */
const procArb = fc.oneof(
  { arbitrary: fc.constant(0), weight: 6 },
  { arbitrary: fc.constant(1), weight: 2 },
  { arbitrary: fc.constant(2), weight: 1 },
);

export const cmdArb: fc.Arbitrary<FuzzCmd> = fc.record({
  k: kindArb,
  p: procArb,
  a: fc.array(fc.nat({ max: 0xffff }), { minLength: SELECTORS, maxLength: SELECTORS }),
});

export function cmdsArb(maxLength: number): fc.Arbitrary<FuzzCmd[]> {
  return fc.array(cmdArb, { minLength: 1, maxLength, size: "max" });
}

/** Configurations on Debian's build, or also on the iommufd build (`npm run fuzz -- --iommufd`). */
export function configArb(iommufd = false): fc.Arbitrary<FuzzConfig> {
  const base = {
    machine: fc.constantFrom("vtd" as const, "amdvi" as const),
    cmdline: fc.constantFrom(...CMDLINES),
    profile: fc.constantFrom(...PROFILES),
  };
  if (!iommufd) return fc.record(base);
  return fc.record({ ...base, build: fc.constantFrom("debian" as const, "iommufd" as const) });
}
