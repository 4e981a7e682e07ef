/**
 * Located input errors. Every importer reports bad input as an InputError naming the
 * file, the line (1-based) when there is one, the field, and what was expected; the CLI
 * prints it as `file:line: field: message` and exits 2, never with a stack trace.
 */
export class InputError extends Error {
  constructor(
    readonly file: string,
    readonly detail: string,
    readonly line?: number,
    readonly field?: string,
  ) {
    super(InputError.format(file, detail, line, field));
    this.name = "InputError";
  }

  static format(file: string, detail: string, line?: number, field?: string): string {
    const where = line !== undefined ? `${file}:${line}` : file;
    return field ? `${where}: ${field}: ${detail}` : `${where}: ${detail}`;
  }
}
