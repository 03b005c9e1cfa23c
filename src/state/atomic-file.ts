// Atomic file replacement and JSON reading for every state file (lockfile, lease, journal).
// Invariant: a reader (or a reboot) sees either the whole old content or the whole new content of the target, never a
// mix or a truncated file: the data goes to a temp file in the same directory (same filesystem, so rename is atomic),
// is fsynced, renamed over the target, and the directory is fsynced so the rename itself survives a crash.

import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { AgentvmError } from '../diagnostics/index.js';

export interface AtomicWriteOptions {
  /** File mode of a newly created target (default 0o644; state holds no secrets but is not meant to be edited). */
  mode?: number;
  /**
   * Keep the target's current content at this path (same directory). The backup is a hard link to the old inode,
   * made before the rename: no copy, and the old content is never absent from both paths at once.
   */
  backup?: string;
}

/** Replaces `target` with `data` atomically (see the file comment). Removes its temp file when anything fails. */
export function writeFileAtomic(target: string, data: string | Uint8Array, options: AtomicWriteOptions = {}): void {
  const dir = path.dirname(target);
  const temp = tempPathFor(target);
  let fd: number | undefined;
  try {
    fd = openSync(temp, 'wx', options.mode ?? 0o644);
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let written = 0;
    while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    if (options.backup) linkBackup(target, options.backup);
    renameSync(temp, target);
  } catch (error) {
    if (fd !== undefined) closeQuietly(fd);
    unlinkQuietly(temp);
    throw error;
  }
  fsyncDirectory(dir);
}

/** Points `backup` at the current inode of `target` (if any), atomically replacing an older backup. */
function linkBackup(target: string, backup: string): void {
  const temp = tempPathFor(backup);
  try {
    linkSync(target, temp);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return; // first write: nothing to back up
    throw error;
  }
  try {
    renameSync(temp, backup);
  } catch (error) {
    unlinkQuietly(temp);
    throw error;
  }
}

/** fsync a directory so that a rename or unlink in it is durable. */
export function fsyncDirectory(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Temp names start with a dot and end in `.tmp` so that listings of state files can skip them. */
export function tempPathFor(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

/**
 * Reads and parses a JSON file. Returns undefined when the file does not exist; throws `file.invalid-json` (with the
 * parse error as cause) when it is not JSON, so callers can say how to recover for their kind of file.
 */
export function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw error;
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new AgentvmError('file.invalid-json', `${file} is not valid JSON (${(error as Error).message}).`, { cause: error });
  }
}

export function errnoCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string' ? error.code : undefined;
}

export function unlinkQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // Already gone, or the directory vanished: either way nothing is left to clean up.
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // The original error is the one worth reporting.
  }
}
