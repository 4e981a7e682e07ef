/**
 * Host input without a file system, for the browser (and the same code under Node in
 * tests): the bytes a user dropped, pasted or picked, recognised from their content as
 * src/host/load.ts does — a gzip'd or plain tar snapshot (read by ./tar.ts, decompressed
 * by the platform's DecompressionStream), or text: a YAML/JSON host description, `lspci
 * -vvnn` output or an `lspci -x` dump. Nothing leaves the page.
 */
import { buildHost, type Host } from "../host/build.js";
import { InputError } from "../host/errors.js";
import { hostFromText, type InputKind } from "../host/load.js";
import { SnapshotFs, snapshotToSpec } from "../host/snapshot.js";
import { gunzip, isGzip, isTar, readTar, TarError, type TarEntry } from "./tar.js";

export interface LoadedInput {
  host: Host & { kind: InputKind };
  /** The snapshot's files, when the input is one (the analyzer reads reset_method from it). */
  snapshot?: SnapshotFs;
}

type SnapshotEntries = ConstructorParameters<typeof SnapshotFs>[0];

/** A snapshot file system from tar entries (file data as Buffer, as SnapshotFs reads it). */
export function snapshotFromEntries(entries: Map<string, TarEntry>): SnapshotFs {
  const out: SnapshotEntries = new Map();
  for (const [k, e] of entries) {
    out.set(k, e.kind === "file" ? { kind: "file", data: Buffer.from(e.data) } : e);
  }
  return new SnapshotFs(out);
}

export async function loadBytes(name: string, bytes: Uint8Array): Promise<LoadedInput> {
  let data = bytes;
  if (isGzip(data)) {
    try {
      data = await gunzip(data);
    } catch (e) {
      throw new InputError(name, `not a readable gzip stream (${(e as Error).message})`);
    }
  }
  if (isTar(data)) {
    let entries: Map<string, TarEntry>;
    try {
      entries = readTar(data);
    } catch (e) {
      if (e instanceof TarError)
        throw new InputError(name, `not a readable tar archive (${e.message})`);
      throw e;
    }
    if (entries.size === 0) throw new InputError(name, "the archive holds no files");
    const snapshot = snapshotFromEntries(entries);
    const host = buildHost(snapshotToSpec(snapshot, name), name);
    return { host: { ...host, kind: "snapshot" }, snapshot };
  }
  if (data !== bytes) throw new InputError(name, "a gzip file that holds no tar archive");
  return loadText(name, new TextDecoder().decode(data));
}

export function loadText(name: string, text: string): LoadedInput {
  if (!text.trim()) throw new InputError(name, "empty input");
  return { host: hostFromText(text, name) };
}

/** A built-in host, from its YAML text. */
export function loadBuiltin(name: string, yaml: string): LoadedInput {
  const host = hostFromText(yaml, `hosts/${name}.yaml`);
  return { host: { ...host, kind: "builtin" } };
}
