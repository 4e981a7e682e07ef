/**
 * Terminal conventions shared by every command: exit codes (0 ok, 1 findings or a failed
 * check, 2 usage or input error), colour only on a TTY and never under NO_COLOR or
 * --no-color, and errors as one located line on stderr, never a stack trace.
 */
import { InputError } from "../host/errors.js";

export const EXIT_OK = 0;
export const EXIT_FINDINGS = 1;
export const EXIT_USAGE = 2;

export class UsageError extends Error {}

let colour = !!process.stdout.isTTY && process.env.NO_COLOR === undefined;

export function setColour(on: boolean): void {
  colour = on && !!process.stdout.isTTY && process.env.NO_COLOR === undefined;
}

const sgr = (code: string) => (s: string) => (colour ? `\x1b[${code}m${s}\x1b[0m` : s);
export const bold = sgr("1");
export const dim = sgr("2");
export const red = sgr("31");
export const green = sgr("32");
export const yellow = sgr("33");
export const cyan = sgr("36");

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + "\n");
}

/** Map an error to its message and exit code. */
export function reportError(e: unknown): number {
  if (e instanceof InputError) {
    process.stderr.write(`passthru: ${e.message}\n`);
    return EXIT_USAGE;
  }
  if (e instanceof UsageError) {
    process.stderr.write(`passthru: ${e.message}\n`);
    return EXIT_USAGE;
  }
  const msg = e instanceof Error ? e.message : String(e);
  process.stderr.write(`passthru: internal error: ${msg}\n`);
  if (process.env.PASSTHRU_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
  return EXIT_FINDINGS;
}
