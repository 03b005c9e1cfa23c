// The verified image store: a private directory of image bytes that already hashed to their pins, so a job run does
// not read, hash and copy a 14 MiB kernel every time (under load that was ≈100 ms of every run; ADR 0028).
//
// Layout: `<dir>/<sha256>` holds the bytes (mode 0400), `<dir>/<sha256>.id` the file's stat identity (device, inode,
// size, mtime and ctime in nanoseconds) taken AFTER its bytes were hashed and found equal to the name. The directory
// is created 0700 by this process, like a run directory.
//
// Invariants:
// - An entry is trusted only while its stat identity is exactly the recorded one. Any write to the file changes its
//   ctime, which no system call lets a process set back (utimes restores mtime only): a changed entry is re-made
//   from the pinned source and re-hashed, never booted. This is git's index rule (ADR 0020) applied to images.
// - An entry is made from a private copy: copy (reflink where the filesystem has them), hash the copy, and only a
//   copy whose bytes match the pin is renamed into place. The source file is never trusted by path or by stat.
// - Concurrent runs race only to the same content: temporary names are unique, renames are atomic, and an identity
//   that does not describe the file that won the rename merely costs the next run a re-hash.
// - Bounded: at most MAX_ENTRIES digests are kept; inserting one removes the least recently used beyond that.
// - Nothing may link, chmod or write an entry after its identity is recorded (each changes its ctime): the VMM is
//   given the entry's own path, which it only reads.

import { randomBytes, createHash } from 'node:crypto';
import { constants as fsConstants, createReadStream, type BigIntStats } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, readdir, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const MAX_ENTRIES = 8;

/** What a lookup did: `hit` trusted the stored bytes by their identity; `stored` (re)made the entry from the source. */
export type StoreOutcome = 'hit' | 'stored';

export type StoreResult =
  | { ok: true; path: string; outcome: StoreOutcome }
  | { ok: false; reason: 'unreadable'; code: string }
  | { ok: false; reason: 'mismatch'; actual: string };

const DIGEST = /^[0-9a-f]{64}$/;

/**
 * The stored path of the bytes pinned by `sha256`, making the entry from `source` when it is absent or its identity
 * changed. `source` is hashed only then; a source that does not hash to the pin is reported and nothing is stored.
 */
export async function storedImage(dir: string, source: string, sha256: string): Promise<StoreResult> {
  if (!DIGEST.test(sha256)) throw new Error(`image pin ${JSON.stringify(sha256)} is not a lowercase hex sha256`);
  const path = join(dir, sha256);
  if (await identityHolds(path)) {
    // Recency for the bound: the identity file's mtime says when an entry was last used.
    const now = new Date();
    await utimes(`${path}.id`, now, now).catch(() => undefined);
    return { ok: true, path, outcome: 'hit' };
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const temporary = join(dir, `.tmp-${randomBytes(6).toString('hex')}`);
  try {
    try {
      await copyFile(source, temporary, fsConstants.COPYFILE_EXCL | fsConstants.COPYFILE_FICLONE);
    } catch (error) {
      return { ok: false, reason: 'unreadable', code: (error as NodeJS.ErrnoException).code ?? 'error' };
    }
    await chmod(temporary, 0o400);
    // Hashed under its private name: only bytes equal to the pin are ever renamed into place, so whatever inode
    // another run finds at `path` holds the pinned bytes, whoever put it there.
    const actual = await sha256Of(temporary);
    if (actual !== sha256) return { ok: false, reason: 'mismatch', actual };
    // Replaces an entry whose identity no longer holds, atomically (never deleted first: a concurrent run may be
    // handing that path to its VMM).
    await rename(temporary, path);
    // The rename changed its ctime: the identity is taken now. Should a concurrent run's rename have replaced it
    // meanwhile, this describes that one's (equally verified) file.
    await writeIdentity(path, identity(await stat(path, { bigint: true })));
    await prune(dir, sha256);
    return { ok: true, path, outcome: 'stored' };
  } finally {
    await rm(temporary, { force: true });
  }
}

async function identityHolds(path: string): Promise<boolean> {
  let recorded: string;
  let current: BigIntStats;
  try {
    [recorded, current] = await Promise.all([readFile(`${path}.id`, 'utf8'), stat(path, { bigint: true })]);
  } catch {
    return false;
  }
  return current.isFile() && recorded.trim() === identity(current);
}

function identity(s: BigIntStats): string {
  return `dev=${s.dev} ino=${s.ino} size=${s.size} mtime=${s.mtimeNs} ctime=${s.ctimeNs} mode=${s.mode}`;
}

async function writeIdentity(path: string, text: string): Promise<void> {
  const temporary = `${path}.id.${randomBytes(6).toString('hex')}`;
  await writeFile(temporary, `${text}\n`, { mode: 0o600, flag: 'wx' });
  await rename(temporary, `${path}.id`);
}

async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Removes the least recently used entries beyond MAX_ENTRIES (never `keep`, the one just stored). */
async function prune(dir: string, keep: string): Promise<void> {
  const names = (await readdir(dir)).filter((n) => DIGEST.test(n) && n !== keep);
  if (names.length < MAX_ENTRIES) return;
  const used = await Promise.all(
    names.map(async (name) => ({
      name,
      at: await stat(join(dir, `${name}.id`)).then(
        (s) => s.mtimeMs,
        () => 0,
      ),
    })),
  );
  used.sort((a, b) => a.at - b.at);
  for (const { name } of used.slice(0, names.length - (MAX_ENTRIES - 1))) {
    await rm(join(dir, `${name}.id`), { force: true });
    await rm(join(dir, name), { force: true });
  }
}
