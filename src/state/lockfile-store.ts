// A host's lockfile on disk, together with the write-ahead log of its apply: reading both into the logical lockfile
// (every acknowledged write), and writing one version of the lockfile file (validated, atomic, previous version kept
// as the backup). Used by the backend and by ApplyLog's checkpoints; nothing else touches these files.

import {
  closeSync,
  existsSync,
  fstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  statSync,
  type BigIntStats,
} from 'node:fs';
import path from 'node:path';
import { AgentvmError } from '../diagnostics/index.js';
import { errnoCode, writeFileAtomic } from './atomic-file.js';
import {
  corruptLockfile,
  lockfileWriteProblem,
  parseLockfile,
  serializeLockfile,
  type Lockfile,
  type LockfileSource,
} from './lockfile.js';
import { parseWal, replayWal, walStatus, type WalContents } from './wal.js';

/** Identifies one version of a file: every atomic write makes a new inode, every append a new size. */
export interface FileFingerprint {
  ino: number;
  size: number;
  mtimeNs: bigint;
}

function fingerprint(st: BigIntStats): FileFingerprint {
  return { ino: Number(st.ino), size: Number(st.size), mtimeNs: st.mtimeNs };
}

/** The file's fingerprint now, or null when it does not exist. */
export function fingerprintOf(file: string): FileFingerprint | null {
  try {
    return fingerprint(statSync(file, { bigint: true }));
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return null;
    throw error;
  }
}

export function sameFingerprint(a: FileFingerprint | null, b: FileFingerprint | null): boolean {
  if (a === null || b === null) return a === b;
  return a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs;
}

/** The file's text and the fingerprint of that same open file, or undefined when it does not exist. */
function readWithFingerprint(file: string): { text: string; fingerprint: FileFingerprint } | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw error;
  }
  try {
    return { fingerprint: fingerprint(fstatSync(fd, { bigint: true })), text: readFileSync(fd, 'utf8') };
  } finally {
    closeSync(fd);
  }
}

export interface StoredState {
  /** The lockfile file as written at its last write or checkpoint; null when there is none. */
  file: Lockfile | null;
  lockFingerprint: FileFingerprint | null;
  wal: WalContents | undefined;
  walFingerprint: FileFingerprint | null;
  /** `replay`: the WAL's batches are not in the file yet; `checkpointed`: they are (the WAL is only a record). */
  walStatus: 'none' | 'replay' | 'checkpointed';
  /** The file with the WAL replayed: every acknowledged write. Null when nothing was ever written. */
  logical: Lockfile | null;
}

/** How often a reader re-reads when a checkpoint replaced the files under it (each retry means a writer progressed). */
const CONSISTENT_READ_ATTEMPTS = 100;

/**
 * Reads the host's lockfile and WAL as ONE consistent version. Throws `state.corrupt` / `state.missing` /
 * `state.unsupported-format`.
 * The two files are read one after the other, and a writer's checkpoint replaces both in between (lockfile first, then
 * the WAL): a reader could pair the old lockfile with the new WAL and report a corruption that is not there. So after
 * reading the WAL it checks that the lockfile is still the version it read; if not, a checkpoint ran and it reads
 * again. A reader therefore sees the state before a checkpoint or after it, never a mix (no lease needed: readers
 * never block an apply).
 */
export function readStoredState(source: LockfileSource, walFile: string): StoredState {
  for (let attempt = 1; ; attempt++) {
    let state: StoredState | undefined;
    let failure: unknown;
    try {
      state = readStoredStateOnce(source, walFile);
    } catch (error) {
      failure = error;
    }
    const lockNow = fingerprintOf(source.file);
    const stable = state
      ? sameFingerprint(lockNow, state.lockFingerprint)
      : sameFingerprint(lockNow, lastLockFingerprint);
    if (stable || attempt >= CONSISTENT_READ_ATTEMPTS) {
      if (state) return state;
      throw failure;
    }
  }
}

/** The lockfile fingerprint the last single read saw (also when it failed): what `stable` compares a failure to. */
let lastLockFingerprint: FileFingerprint | null = null;

function readStoredStateOnce(source: LockfileSource, walFile: string): StoredState {
  const read = readWithFingerprint(source.file);
  lastLockFingerprint = read?.fingerprint ?? null;
  let value: unknown;
  try {
    value = read === undefined ? undefined : (JSON.parse(read.text) as unknown);
  } catch (error) {
    throw corruptLockfile(source, 'it is not valid JSON (a damaged disk or a hand edit)', error);
  }
  if (read === undefined && existsSync(source.backup)) {
    throw new AgentvmError(
      'state.missing',
      `The lockfile ${source.file} is missing, but its backup ${source.backup} exists.`,
      {
        detail:
          'agentvm never deletes a lockfile, so it was removed by hand or by another tool. Restore the previous version with ' +
          `\`cp ${source.backup} ${source.file}\`, or, to start the host's state from scratch (a new lineage: every resource is ` +
          `re-captured from the host), remove the backup${existsSync(walFile) ? ' and the write-ahead log' : ''} too: ` +
          `\`rm ${source.backup}${existsSync(walFile) ? ` ${walFile}` : ''}\`.`,
      },
    );
  }
  const file = read === undefined ? null : parseLockfile(value, source, read.text);
  const walRead = readWithFingerprint(walFile);
  const wal = walRead === undefined ? undefined : parseWal(walRead.text, walFile);
  const status = wal ? walStatus(file, wal, source) : 'none';
  const logical = wal && status === 'replay' && wal.batches.length > 0 ? replayWal(file, wal, source.host) : file;
  return {
    file,
    lockFingerprint: read?.fingerprint ?? null,
    wal,
    walFingerprint: walRead?.fingerprint ?? null,
    walStatus: status,
    logical,
  };
}

/**
 * Writes `lock` as the lockfile file, exactly as given (serial and updatedAt included), keeping the previous file as
 * the backup; returns the new file's fingerprint. Throws `state.invalid-lockfile` (a bug guard) for a lockfile the
 * schema refuses, and then writes nothing.
 */
export function writeLockfileFile(source: LockfileSource, lock: Lockfile): FileFingerprint {
  const problem = lockfileWriteProblem(lock);
  if (problem)
    throw new AgentvmError(
      'state.invalid-lockfile',
      `Refusing to write an invalid lockfile for host "${source.host}" (${problem}).`,
      { source: 'toolkit' },
    );
  mkdirSync(path.dirname(source.file), { recursive: true, mode: 0o750 });
  writeFileAtomic(source.file, serializeLockfile(lock), { backup: source.backup });
  return fingerprint(statSync(source.file, { bigint: true }));
}
