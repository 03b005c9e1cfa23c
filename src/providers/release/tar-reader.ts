// The tar reader: a small ustar / pax / GNU-longname parser (no dependency) that turns an archive into regular
// files and directories, and the extractor that writes them into a fresh directory.
// Invariants:
//   - Only regular files and directories come out. Symlinks, hardlinks, devices, FIFOs, sparse files and unknown
//     entry types are refused, never skipped: a release is exactly its archive, or nothing.
//   - A path is refused when it is absolute, has a `..` segment or a NUL byte; after normalisation every path is
//     relative and stays inside the target (checked again against the resolved target before each write).
//   - Refusals and corruption (bad checksum, truncated input, malformed pax record) are diagnostics, not throws.
//     `extractTar` creates its target itself and removes it on any refusal, so a refused archive leaves nothing.
//     `readTarEntries` (for in-memory archives) refuses before anything is written at all.
//   - Entry modes are not trusted: files are written 0644 (0755 when any execute bit is set), directories 0755;
//     sealing the release read-only is the release store's job.
//   - An archive must end with an end-of-archive block: a stream cut short (a killed `git archive`) is refused.

import { mkdir, open, rm } from 'node:fs/promises';
import path from 'node:path';
import { constants as fsConstants } from 'node:fs';
import { createGunzip, gunzipSync } from 'node:zlib';
import { Readable } from 'node:stream';
import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';

export const TarCode = {
  corrupt: 'release.archive-corrupt',
  unsafePath: 'release.archive-unsafe-path',
  link: 'release.archive-link',
  specialFile: 'release.archive-special-file',
  duplicate: 'release.archive-duplicate-entry',
  write: 'release.archive-write-failed',
} as const;

/** One regular file or directory of an archive, path already normalised (and stripped). */
export interface TarEntry {
  /** Relative POSIX path, no `.`/`..`/empty segments, no trailing slash. */
  path: string;
  type: 'file' | 'directory';
  /** True when any execute bit was set in the entry's mode (files only). */
  executable: boolean;
  /** File content; empty for directories. */
  content: Buffer;
}

export interface TarReadOptions {
  /** Leading path segments to drop (npm-pack tarballs: 1, for `package/`). Entries left with no path are skipped. */
  stripComponents?: number;
  /** Gunzip first. `'auto'` (default) looks at the gzip magic bytes. */
  gzip?: boolean | 'auto';
}

export interface TarReadResult {
  entries: TarEntry[];
  /** The pax global header's `comment` (git archive writes the commit id there), if any. */
  comment?: string;
  diagnostics: Diagnostic[];
}

export interface TarExtractResult {
  files: number;
  directories: number;
  bytes: number;
  comment?: string;
  diagnostics: Diagnostic[];
}

/** An expected refusal inside the parser; converted to a diagnostic at the API boundary. */
class TarRefusal extends Error {
  constructor(readonly diagnostic: Diagnostic) {
    super(diagnostic.summary);
  }
}

const refuse = (code: string, summary: string, detail?: string): TarRefusal =>
  new TarRefusal(errorDiag(code, summary, detail === undefined ? {} : { detail }));

const BLOCK = 512;

/** Pulls exact byte counts out of a chunk stream without copying more than needed. */
class ByteSource {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private done = false;
  private readonly iterator: AsyncIterator<Uint8Array>;

  constructor(input: AsyncIterable<Uint8Array>) {
    this.iterator = input[Symbol.asyncIterator]();
  }

  /** Exactly `n` bytes, or fewer only at end of input. */
  async read(n: number): Promise<Buffer> {
    while (this.buffered < n && !this.done) {
      const next = await this.iterator.next();
      if (next.done) {
        this.done = true;
        break;
      }
      const chunk = Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength);
      if (chunk.length === 0) continue;
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const take = Math.min(n, this.buffered);
    const first = this.chunks[0];
    let out: Buffer;
    if (first !== undefined && first.length >= take) {
      out = first.subarray(0, take);
      if (first.length === take) this.chunks.shift();
      else this.chunks[0] = first.subarray(take);
    } else {
      const all = Buffer.concat(this.chunks);
      out = all.subarray(0, take);
      this.chunks = take < all.length ? [all.subarray(take)] : [];
    }
    this.buffered -= take;
    return out;
  }

  async skip(n: number): Promise<boolean> {
    let left = n;
    while (left > 0) {
      const got = await this.read(Math.min(left, 1 << 20));
      if (got.length === 0) return false;
      left -= got.length;
    }
    return true;
  }

  async close(): Promise<void> {
    await this.iterator.return?.();
  }
}

function cString(block: Buffer, start: number, length: number): string {
  const field = block.subarray(start, start + length);
  const nul = field.indexOf(0);
  return field.subarray(0, nul === -1 ? field.length : nul).toString('utf8');
}

/** Octal (space/NUL padded) or GNU base-256 (high bit set) numeric field. */
function numeric(block: Buffer, start: number, length: number, what: string): number {
  const field = block.subarray(start, start + length);
  const first = field[0] ?? 0;
  if (first & 0x80) {
    if (first === 0xff) throw refuse(TarCode.corrupt, `Archive header has a negative ${what}.`);
    let value = first & 0x7f;
    for (let i = 1; i < field.length; i++) {
      value = value * 256 + (field[i] ?? 0);
      if (!Number.isSafeInteger(value)) throw refuse(TarCode.corrupt, `Archive header ${what} is too large.`);
    }
    return value;
  }
  const text = field
    .toString('latin1')
    .replace(/[\0 ]+$/, '')
    .replace(/^[ ]+/, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw refuse(TarCode.corrupt, `Archive header has a malformed ${what} field.`);
  return parseInt(text, 8);
}

function checksumOk(block: Buffer): boolean {
  const stored = numeric(block, 148, 8, 'checksum');
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : (block[i] ?? 0);
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  return stored === unsigned || stored === signed;
}

/** pax extended header records: `<len> <key>=<value>\n`, length counting the whole record, in bytes. */
function parsePax(data: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let at = 0;
  while (at < data.length) {
    if (data[at] === 0) break; // some writers pad with NULs
    const space = data.indexOf(0x20, at);
    if (space === -1) throw refuse(TarCode.corrupt, 'Archive has a malformed pax record (no length).');
    const lengthText = data.subarray(at, space).toString('latin1');
    if (!/^[0-9]+$/.test(lengthText)) throw refuse(TarCode.corrupt, 'Archive has a malformed pax record length.');
    const length = parseInt(lengthText, 10);
    const end = at + length;
    if (length <= space - at + 1 || end > data.length || data[end - 1] !== 0x0a) {
      throw refuse(TarCode.corrupt, 'Archive has a pax record whose length does not match its content.');
    }
    const record = data.subarray(space + 1, end - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq <= 0) throw refuse(TarCode.corrupt, 'Archive has a pax record without a key.');
    records.set(record.slice(0, eq), record.slice(eq + 1));
    at = end;
  }
  return records;
}

/**
 * Normalises an archive path; refuses absolute paths, `..` and NUL. Returns null when nothing is left after
 * stripping (the archive's top directory itself).
 */
export function normaliseEntryPath(raw: string, stripComponents = 0): string | null {
  if (raw.includes('\0')) throw refuse(TarCode.unsafePath, 'Archive entry path contains a NUL byte.');
  if (raw.startsWith('/')) {
    throw refuse(
      TarCode.unsafePath,
      `Archive entry has an absolute path: ${JSON.stringify(raw)}.`,
      'Release archives must contain relative paths only.',
    );
  }
  const segments = raw.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.includes('..')) {
    throw refuse(
      TarCode.unsafePath,
      `Archive entry path has a '..' segment: ${JSON.stringify(raw)}.`,
      'An entry may not point outside the release directory.',
    );
  }
  const kept = segments.slice(stripComponents);
  return kept.length === 0 ? null : kept.join('/');
}

interface ReadState {
  comment?: string;
}

/** Yields the archive's files and directories in order; throws TarRefusal on anything refused. */
async function* parseTar(source: ByteSource, options: TarReadOptions, state: ReadState): AsyncGenerator<TarEntry> {
  const strip = options.stripComponents ?? 0;
  let paxNext: Map<string, string> | undefined;
  let longName: string | undefined;
  for (;;) {
    const header = await source.read(BLOCK);
    if (header.length === 0)
      throw refuse(TarCode.corrupt, 'Archive is truncated: it ends without an end-of-archive block.');
    if (header.length < BLOCK) throw refuse(TarCode.corrupt, 'Archive is truncated in the middle of a header.');
    if (header.every((b) => b === 0)) {
      if (paxNext || longName !== undefined)
        throw refuse(TarCode.corrupt, 'Archive ends right after an extended header.');
      return; // end of archive (a second zero block, if any, is not needed)
    }
    if (!checksumOk(header))
      throw refuse(TarCode.corrupt, 'Archive header checksum does not match: the archive is corrupt.');

    const typeflag = String.fromCharCode(header[156] ?? 0);
    const magic = header.subarray(257, 263).toString('latin1');
    let size = numeric(header, 124, 12, 'size');
    const paxSize = paxNext?.get('size');
    if (paxSize !== undefined) {
      if (!/^[0-9]+$/.test(paxSize)) throw refuse(TarCode.corrupt, 'Archive has a malformed pax size.');
      size = Number(paxSize);
    }
    const padded = Math.ceil(size / BLOCK) * BLOCK;

    // Meta entries: their content describes the next entry (or all following ones, for 'g').
    if (typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K') {
      if (size > 16 * 1024 * 1024) throw refuse(TarCode.corrupt, 'Archive has an implausibly large extended header.');
      const data = await source.read(padded);
      if (data.length < padded) throw refuse(TarCode.corrupt, 'Archive is truncated inside an extended header.');
      const body = data.subarray(0, size);
      if (typeflag === 'x') paxNext = parsePax(body);
      else if (typeflag === 'g') {
        const global = parsePax(body);
        // A global path/size would apply to every later entry: meaningless for a release, so refused.
        for (const key of ['path', 'linkpath', 'size']) {
          if (global.has(key)) throw refuse(TarCode.corrupt, `Archive has a pax global header that sets '${key}'.`);
        }
        const comment = global.get('comment');
        if (comment !== undefined) state.comment = comment;
      } else if (typeflag === 'L') {
        const nul = body.indexOf(0);
        longName = body.subarray(0, nul === -1 ? body.length : nul).toString('utf8');
      }
      // 'K' (GNU long link name) names a link target; the link entry that follows is refused anyway.
      continue;
    }

    let rawPath: string;
    const paxPath = paxNext?.get('path');
    if (paxPath !== undefined) rawPath = paxPath;
    else if (longName !== undefined) rawPath = longName;
    else {
      const name = cString(header, 0, 100);
      const prefix = magic === 'ustar\0' ? cString(header, 345, 155) : '';
      rawPath = prefix === '' ? name : `${prefix}/${name}`;
    }
    for (const key of paxNext?.keys() ?? []) {
      if (key.startsWith('GNU.sparse.'))
        throw refuse(TarCode.specialFile, `Archive entry ${JSON.stringify(rawPath)} is a sparse file.`);
    }
    paxNext = undefined;
    longName = undefined;

    if (typeflag === '1' || typeflag === '2') {
      throw refuse(
        TarCode.link,
        `Archive entry ${JSON.stringify(rawPath)} is a ${typeflag === '1' ? 'hard link' : 'symbolic link'}.`,
        'Releases hold regular files and directories only; replace the link with the file it points to.',
      );
    }
    const isDirectory =
      typeflag === '5' || ((typeflag === '0' || typeflag === '\0') && rawPath.endsWith('/') && size === 0);
    const isFile = !isDirectory && (typeflag === '0' || typeflag === '\0' || typeflag === '7');
    if (!isDirectory && !isFile) {
      throw refuse(
        TarCode.specialFile,
        `Archive entry ${JSON.stringify(rawPath)} has type '${typeflag}', which is not a regular file or directory.`,
      );
    }
    const entryPath = normaliseEntryPath(rawPath, strip);
    const mode = numeric(header, 100, 8, 'mode');

    if (isDirectory) {
      if (!(await source.skip(padded))) throw refuse(TarCode.corrupt, 'Archive is truncated.');
      if (entryPath !== null) yield { path: entryPath, type: 'directory', executable: false, content: Buffer.alloc(0) };
      continue;
    }
    const data = await source.read(padded);
    if (data.length < padded) throw refuse(TarCode.corrupt, `Archive is truncated inside ${JSON.stringify(rawPath)}.`);
    if (entryPath !== null)
      yield { path: entryPath, type: 'file', executable: (mode & 0o111) !== 0, content: data.subarray(0, size) };
  }
}

function toChunks(input: Buffer | AsyncIterable<Uint8Array>, gzip: boolean | 'auto'): AsyncIterable<Uint8Array> {
  if (Buffer.isBuffer(input)) {
    const isGzip = gzip === true || (gzip === 'auto' && input[0] === 0x1f && input[1] === 0x8b);
    let bytes: Buffer;
    if (isGzip) {
      try {
        bytes = gunzipSync(input);
      } catch (error) {
        throw refuse(TarCode.corrupt, 'Archive is not valid gzip data.', (error as Error).message);
      }
    } else bytes = input;
    return (async function* () {
      yield bytes;
    })();
  }
  if (gzip === false) return input;
  if (gzip === true) return Readable.from(input).pipe(createGunzip());
  // 'auto' on a stream: peek at the first bytes.
  return (async function* () {
    const iterator = input[Symbol.asyncIterator]();
    let first = await iterator.next();
    while (!first.done && first.value.byteLength === 0) first = await iterator.next();
    if (first.done) return;
    const head = first.value;
    const rest = (async function* () {
      yield head;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        yield next.value;
      }
    })();
    if (head[0] === 0x1f && head[1] === 0x8b) {
      const gunzip = Readable.from(rest).pipe(createGunzip());
      for await (const chunk of gunzip) yield chunk as Buffer;
    } else yield* rest;
  })();
}

/** The diagnostic for an expected failure (a refusal, bad gzip data); undefined for anything else (a bug). */
function refusalOf(error: unknown): Diagnostic | undefined {
  if (error instanceof TarRefusal) return error.diagnostic;
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'Z_DATA_ERROR' || code === 'Z_BUF_ERROR' || code === 'ERR_GZIP') {
    return errorDiag(TarCode.corrupt, 'Archive is not valid gzip data.', { detail: (error as Error).message });
  }
  if (code === 'EEXIST' || code === 'ENOTDIR' || code === 'EISDIR') {
    return errorDiag(TarCode.duplicate, 'Archive has entries that clash (a file and a directory at one path).', {
      detail: (error as Error).message,
    });
  }
  return undefined;
}

const refused = (diagnostic: Diagnostic): TarExtractResult => ({
  files: 0,
  directories: 0,
  bytes: 0,
  diagnostics: [diagnostic],
});

/**
 * Reads a whole archive into memory, refusing before anything is written. For archives that are checked as a
 * whole first (npm tarballs: integrity, then package.json, then unpack).
 */
export async function readTarEntries(input: Buffer, options: TarReadOptions = {}): Promise<TarReadResult> {
  const state: ReadState = {};
  const entries: TarEntry[] = [];
  const seen = new Map<string, TarEntry['type']>();
  try {
    const source = new ByteSource(toChunks(input, options.gzip ?? 'auto'));
    for await (const entry of parseTar(source, options, state)) {
      checkDuplicate(seen, entry);
      entries.push(entry);
    }
  } catch (error) {
    const diagnostic = refusalOf(error);
    if (!diagnostic) throw error;
    return { entries: [], diagnostics: [diagnostic] };
  }
  return { entries, ...(state.comment === undefined ? {} : { comment: state.comment }), diagnostics: [] };
}

/** Directories may repeat (a later entry re-declares one); a file may appear once and never clash with a directory. */
function checkDuplicate(seen: Map<string, TarEntry['type']>, entry: TarEntry): void {
  const before = seen.get(entry.path);
  if (before !== undefined && (before === 'file' || entry.type === 'file')) {
    throw refuse(TarCode.duplicate, `Archive has more than one entry for ${JSON.stringify(entry.path)}.`);
  }
  seen.set(entry.path, entry.type);
}

/** Writes already-checked entries into `targetDir` (created here, must not exist); removes it on failure. */
export async function writeTarEntries(
  targetDir: string,
  entries: Iterable<TarEntry> | AsyncIterable<TarEntry>,
): Promise<TarExtractResult> {
  const result: TarExtractResult = { files: 0, directories: 0, bytes: 0, diagnostics: [] };
  const root = path.resolve(targetDir);
  await mkdir(root, { mode: 0o755 });
  const made = new Set<string>([root]);
  const ensureDir = async (dir: string): Promise<void> => {
    if (made.has(dir)) return;
    await mkdir(dir, { recursive: true, mode: 0o755 });
    made.add(dir);
  };
  const seen = new Map<string, TarEntry['type']>();
  try {
    for await (const entry of entries) {
      checkDuplicate(seen, entry);
      const target = path.resolve(root, entry.path);
      // Normalisation already forbids escapes; this is the belt to that brace.
      if (!target.startsWith(root + path.sep))
        throw refuse(TarCode.unsafePath, `Archive entry ${JSON.stringify(entry.path)} escapes the target directory.`);
      if (entry.type === 'directory') {
        await ensureDir(target);
        result.directories++;
        continue;
      }
      await ensureDir(path.dirname(target));
      // O_EXCL + O_NOFOLLOW: never write through anything that already exists at that path.
      const handle = await open(
        target,
        fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW,
        entry.executable ? 0o755 : 0o644,
      );
      try {
        await handle.writeFile(entry.content);
        await handle.chmod(entry.executable ? 0o755 : 0o644); // not subject to umask
      } finally {
        await handle.close();
      }
      result.files++;
      result.bytes += entry.content.length;
    }
  } catch (error) {
    await rm(root, { recursive: true, force: true });
    const diagnostic = refusalOf(error);
    if (!diagnostic) throw error;
    return refused(diagnostic);
  }
  return result;
}

/**
 * Streams an archive (a Buffer, or e.g. `git archive`'s stdout) into `targetDir`, which must not exist. On any
 * refusal the target is removed and the diagnostics say why; the source is consumed or closed either way.
 */
export async function extractTar(
  input: Buffer | AsyncIterable<Uint8Array>,
  targetDir: string,
  options: TarReadOptions = {},
): Promise<TarExtractResult> {
  const state: ReadState = {};
  let source: ByteSource;
  try {
    source = new ByteSource(toChunks(input, options.gzip ?? 'auto'));
  } catch (error) {
    const diagnostic = refusalOf(error);
    if (!diagnostic) throw error;
    return refused(diagnostic);
  }
  try {
    const result = await writeTarEntries(targetDir, parseTar(source, options, state));
    if (state.comment !== undefined && result.diagnostics.length === 0) result.comment = state.comment;
    return result;
  } finally {
    await source.close();
  }
}
