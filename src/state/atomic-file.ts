// Atomic file replacement and JSON reading for every state file (lockfile, lease, journal).
// Invariant: a reader (or a reboot) sees either the whole old content or the whole new content of the target, never a
// mix or a truncated file: the data goes to a temp file in the same directory (same filesystem, so rename is atomic),
// is fsynced, renamed over the target, and the directory is fsynced so the rename itself survives a crash.

import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fdatasync,
  fsync,
  fsyncSync,
  linkSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  statfsSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { AgentvmError } from '../diagnostics/index.js';
import { provablyDead, selfIdentity } from './process-identity.js';

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
    throw storageError(error, target, 'Nothing was changed: the file still holds its previous content.');
  }
  try {
    fsyncDirectory(dir);
  } catch (error) {
    throw storageError(error, target, 'The new content is in place but may not survive a power loss.');
  }
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

/**
 * How a durable append waits for the disk: on libuv's thread pool (fs.fsync / fs.fdatasync), so the event loop — and
 * the provider work of other resources — moves on while the disk syncs. Injectable so that tests can count the syncs
 * and hold one open to prove that nothing is acknowledged before it resolves.
 */
export interface DurableSync {
  /** fsync(2): data and metadata (the audit log, whose size the next append reads). */
  fsync(fd: number): Promise<void>;
  /** fdatasync(2): data, and the metadata needed to read it back (the write-ahead log's appended lines). */
  fdatasync(fd: number): Promise<void>;
}

export const threadPoolSync: DurableSync = {
  fsync: promisify(fsync),
  fdatasync: promisify(fdatasync),
};

/**
 * Temp names start with a dot and end in `.tmp` so that listings of state files can skip them. They carry the writer's
 * pid and pid namespace, so that the next writer can tell a killed writer's leftover (removeDeadTemps) from a live
 * writer's file.
 */
export function tempPathFor(target: string): string {
  const me = selfIdentity();
  return path.join(
    path.dirname(target),
    `.${path.basename(target)}.${process.pid}-${me.pidNamespace ?? 0}.${randomBytes(6).toString('hex')}.tmp`,
  );
}

const TEMP_NAME = /^\.(.+)\.(\d+)-(\d+)\.[0-9a-f]{12}\.tmp$/;
/** A temp file this old is a leftover whoever wrote it: no agentvm write takes that long. */
const TEMP_MAX_AGE_MS = 10 * 60 * 1000;

/**
 * Removes the temp files (of tempPathFor) in `dir` whose target's name passes `ofTarget` and whose writer is provably
 * dead (this boot, this pid namespace, pid gone) — or, with `anyWriter`, every one (the caller holds the lock under
 * which alone those files are written). Old temp files go too. Returns the names removed.
 */
export function removeDeadTemps(dir: string, ofTarget: (name: string) => boolean, anyWriter = false): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const me = selfIdentity();
  const removed: string[] = [];
  for (const name of names) {
    const m = TEMP_NAME.exec(name);
    if (!m || !ofTarget(m[1]!)) continue;
    const pid = Number(m[2]);
    const ns = Number(m[3]);
    let dead =
      anyWriter ||
      (ns !== 0 &&
        pid !== process.pid &&
        provablyDead({ pid, pidNamespace: ns, ...(me.bootId ? { bootId: me.bootId } : {}) }));
    if (!dead) {
      try {
        dead = Date.now() - statSync(path.join(dir, name)).mtimeMs > TEMP_MAX_AGE_MS;
      } catch {
        continue;
      }
    }
    if (!dead) continue;
    unlinkQuietly(path.join(dir, name));
    removed.push(name);
  }
  return removed;
}

/** The file's text, or undefined when it does not exist; any other error is thrown. */
export function readTextIfExists(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * Reads and parses a JSON file. Returns undefined when the file does not exist; throws `file.invalid-json` (with the
 * parse error as cause) when it is not JSON, so callers can say how to recover for their kind of file.
 */
export function readJsonFile(file: string): unknown {
  const text = readTextIfExists(file);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new AgentvmError('file.invalid-json', `${file} is not valid JSON (${(error as Error).message}).`, {
      cause: error,
    });
  }
}

export function errnoCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string'
    ? error.code
    : undefined;
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

/** errno codes that mean "the storage refused the write", not "agentvm has a bug". */
const STORAGE_ERRNOS: Readonly<Record<string, { code: string; what: string; fix: string }>> = {
  ENOSPC: {
    code: 'state.disk-full',
    what: 'no space left on the device',
    fix: 'Free space on that file system (or grow it)',
  },
  EDQUOT: {
    code: 'state.disk-full',
    what: 'the disk quota is exhausted',
    fix: "Raise the quota or free space in the owner's files",
  },
  EROFS: {
    code: 'state.read-only',
    what: 'the file system is read-only',
    fix: 'Remount it read-write (check `dmesg`: a file system remounted read-only after errors needs fsck first)',
  },
  EIO: {
    code: 'state.io-error',
    what: 'the device reported an I/O error',
    fix: 'Check the device (`dmesg`, SMART) and the file system',
  },
  EACCES: {
    code: 'state.not-writable',
    what: 'permission denied',
    fix: 'Run agentvm as the user that owns the state directory, or fix its permissions',
  },
  EPERM: {
    code: 'state.not-writable',
    what: 'the operation is not permitted',
    fix: 'Run agentvm as the user that owns the state directory, or fix its permissions (`lsattr`: an immutable file refuses writes)',
  },
};

/**
 * A storage failure (ENOSPC, EDQUOT, EROFS, EIO, EACCES, EPERM) while writing `file`, as a named error: what failed,
 * which file, the free space of its file system, and what to do. `after` says what the caller guarantees about the
 * state (e.g. "nothing was written"). Any other error is returned unchanged.
 */
export function storageError(error: unknown, file: string, after: string): unknown {
  if (error instanceof AgentvmError) return error;
  const known = STORAGE_ERRNOS[errnoCode(error) ?? ''];
  if (!known) return error;
  const free = freeSpace(path.dirname(file));
  return new AgentvmError(known.code, `Cannot write ${file}: ${known.what}${free ? ` (${free})` : ''}.`, {
    detail: `${after} ${known.fix}, then run the command again: the next run repairs what this one left (a cut-short log record is removed and recorded) and continues.`,
    cause: error,
  });
}

/** "N KiB free of M KiB on <dir>", or undefined when statfs fails. */
export function freeSpace(dir: string): string | undefined {
  try {
    const st = statfsSync(dir);
    const kib = (blocks: number) => Math.floor((blocks * st.bsize) / 1024);
    return `${kib(st.bavail)} KiB free of ${kib(st.blocks)} KiB on the file system of ${dir}`;
  } catch {
    return undefined;
  }
}
