// ApplyLog: how an apply persists the lockfile after every resource in O(1) (ADR 0005). Each `append` writes one batch
// of LockfileOps as one line of the host's write-ahead log (wal.ts) and fdatasyncs it before returning, so a SIGKILL
// at any point loses nothing that was acknowledged; the lockfile file is rewritten only at checkpoints. `appendBatches`
// writes several batches (the steps of resources that finished together, ADR 0026) with one write and one fdatasync:
// each is still its own line, so the format and its replay are the same as for one append after another.
// Invariants:
// - Every append is one persisted write: the logical serial grows by one per batch, and readLockfile (which replays
//   the WAL) sees exactly the acknowledged batches.
// - The in-memory lockfile is the replay of what was written: the ops applied are the ones parsed back from the line.
// - A checkpoint writes the lockfile (serial = logical serial, previous file kept as backup) BEFORE it replaces or
//   deletes the WAL: a kill in between leaves a WAL whose batches are already in the lockfile, which readers detect
//   by serial (walStatus) and never apply twice.
// - Automatic checkpoints keep the total work linear: one happens after more than max(256, 2 × resources) batches,
//   so the O(resources) rewrite is paid at most once per that many O(1) appends.
// - Appends run one at a time, in call order, and their fdatasync runs on the thread pool (DurableSync): the event loop
//   is free while the disk syncs, and the in-memory lockfile moves only after the sync resolved.
// - Before each append the log checks that the WAL and the lockfile are still the versions it wrote (inode, size):
//   anything else writing them makes it stop rather than write on top of a state it did not see.

import { closeSync, fdatasyncSync, fstatSync, ftruncateSync, openSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { AgentvmError } from '../diagnostics/index.js';
import type { Address, LockedResource } from '../model/resources.js';
import {
  errnoCode,
  fsyncDirectory,
  storageError,
  threadPoolSync,
  writeFileAtomic,
  type DurableSync,
} from './atomic-file.js';
import type { LeaseLock } from './lease-lock.js';
import { ApplyProgress, assertValidOps } from './apply-progress.js';
import {
  canonicalOp,
  emptyLockfile,
  lockfileDraft,
  type Lockfile,
  type LockfileOp,
  type LockfileSource,
} from './lockfile.js';
import {
  fingerprintOf,
  sameFingerprint,
  writeLockfileFile,
  type FileFingerprint,
  type StoredState,
} from './lockfile-store.js';
import {
  journalOf,
  serializeWalLine,
  WAL_FORMAT_VERSION,
  type JournalFailure,
  type JournalRecord,
  type WalBatch,
  type WalHeader,
} from './wal.js';

/** Batches between automatic checkpoints, at least (see the file comment). */
export { MIN_CHECKPOINT_INTERVAL } from './apply-progress.js';

export interface ApplyStart {
  applyId: string;
  /** Digest of the plan being applied: an interrupted apply of the same plan is resumed (its done addresses skip). */
  planDigest: string;
  /**
   * The lockfile version the plan was made against (lineage null: no lockfile). When given, beginApply throws
   * `state.lineage-mismatch` / `state.serial-conflict` if the state is another version.
   */
  expected?: { lineage: string | null; serial: number };
}

/** What one batch records about the apply's progress besides the ops. */
export interface AppendMarks {
  done?: Address;
  failed?: JournalFailure;
}

/** One batch of `appendBatches`: the ops and what they completed or failed. */
export interface AppendBatch {
  ops: readonly LockfileOp[];
  marks?: AppendMarks;
}

export interface AppendResult {
  /** Position of the batch in the current WAL file (1-based; restarts after a checkpoint). */
  seq: number;
  /** The logical serial of the lockfile after this batch. */
  serial: number;
}

/** Bytes written, for the linear-cost tests and for measurements. */
export interface ApplyLogWrites {
  appends: number;
  appendedBytes: number;
  lastAppendBytes: number;
  checkpoints: number;
  checkpointedBytes: number;
}

/** Where an ApplyLog writes: the backend resolves these paths. */
export interface ApplyLogFiles {
  walFile: string;
  source: LockfileSource;
}

/**
 * Starts the apply's log: checkpoints an interrupted apply's WAL into the lockfile (reported as `interrupted`), checks
 * the expected version, then replaces the WAL with a fresh one. `state` was read under `lease`, just now.
 */
export function beginApplyLog(
  files: ApplyLogFiles,
  start: ApplyStart,
  state: StoredState,
  lease: LeaseLock,
  now: Date = new Date(),
  sync: DurableSync = threadPoolSync,
): ApplyLog {
  const interrupted = state.wal ? journalOf(state.wal) : null;
  let lockFingerprint = state.lockFingerprint;
  if (state.walStatus === 'replay' && state.logical && state.wal && state.wal.batches.length > 0) {
    lockFingerprint = writeLockfileFile(files.source, state.logical);
  }
  const current = state.logical;
  if (start.expected) {
    if ((current?.lineage ?? null) !== start.expected.lineage) {
      throw new AgentvmError(
        'state.lineage-mismatch',
        `The lockfile ${files.source.file} has lineage ${current?.lineage ?? 'none'}, not ${start.expected.lineage ?? 'none'}: it was replaced since it was read.`,
        {
          detail: 'Nothing was applied. Run `agentvm plan` again against the current state.',
        },
      );
    }
    if ((current?.serial ?? 0) !== start.expected.serial) {
      throw new AgentvmError(
        'state.serial-conflict',
        `The lockfile ${files.source.file} is at serial ${current?.serial ?? 0}, but this apply was planned at serial ${start.expected.serial}.`,
        {
          detail: 'Another operation wrote the state since it was read; nothing was applied. Run `agentvm plan` again.',
        },
      );
    }
  }
  const draft = current ? lockfileDraft(current) : emptyLockfile(files.source.host, now);
  const resume = interrupted !== null && interrupted.planDigest === start.planDigest ? interrupted : null;
  const header: WalHeader = {
    wal: WAL_FORMAT_VERSION,
    lineage: draft.lineage,
    baseSerial: draft.serial,
    applyId: start.applyId,
    planDigest: start.planDigest,
    startedAt: now.toISOString(),
    pid: process.pid,
    ...(resume ? { resumedFrom: resume.applyId, done: [...resume.completed] } : {}),
  };
  const text = serializeWalLine(header);
  writeFileAtomic(files.walFile, text);
  return new ApplyLog(files, lease, {
    header,
    draft,
    interrupted,
    lockFingerprint,
    walFingerprint: fingerprintOf(files.walFile),
    headerBytes: Buffer.byteLength(text),
    sync,
  });
}

interface ApplyLogInit {
  header: WalHeader;
  draft: Lockfile;
  interrupted: JournalRecord | null;
  lockFingerprint: FileFingerprint | null;
  walFingerprint: FileFingerprint | null;
  headerBytes: number;
  sync: DurableSync;
}

/** The WAL line (with its newline) of batch `seq`. */
function walLine(seq: number, batch: AppendBatch): string {
  const marks = batch.marks ?? {};
  return serializeWalLine({
    seq,
    at: new Date().toISOString(),
    ops: batch.ops.map(canonicalOp),
    ...(marks.done !== undefined ? { done: marks.done } : {}),
    ...(marks.failed ? { failed: { address: marks.failed.address, message: marks.failed.message } } : {}),
  });
}

/** A running apply's durable state. Use one at a time per host (the lease guarantees it across processes). */
export class ApplyLog {
  readonly applyId: string;
  readonly planDigest: string;
  /** The apply that was interrupted before this one began (its WAL was checkpointed), or null. */
  readonly interrupted: JournalRecord | null;
  readonly #files: ApplyLogFiles;
  readonly #lease: LeaseLock;
  /** The logical lockfile and the progress; `batches` counts those in the current WAL file. */
  readonly #progress: ApplyProgress;
  #walIno: number;
  #walSize: number;
  #lockFingerprint: FileFingerprint | null;
  #state: 'open' | 'finished' | 'broken' = 'open';
  readonly #sync: DurableSync;
  /** The append or finish under way: the next one starts when it has settled. */
  #queue: Promise<unknown> = Promise.resolve();
  readonly #writes: ApplyLogWrites = {
    appends: 0,
    appendedBytes: 0,
    lastAppendBytes: 0,
    checkpoints: 0,
    checkpointedBytes: 0,
  };

  /** @internal use StateBackend.beginApply */
  constructor(files: ApplyLogFiles, lease: LeaseLock, init: ApplyLogInit) {
    this.#files = files;
    this.#lease = lease;
    this.#progress = new ApplyProgress(init.header, init.draft);
    this.applyId = init.header.applyId;
    this.planDigest = init.header.planDigest;
    this.interrupted = init.interrupted;
    this.#walIno = init.walFingerprint?.ino ?? -1;
    this.#walSize = init.headerBytes;
    this.#lockFingerprint = init.lockFingerprint;
    this.#sync = init.sync;
  }

  /** The logical lockfile now (a snapshot: O(resources) to build, cached until the next append). */
  get lock(): Lockfile {
    return this.#progress.lock;
  }

  /** The logical serial: the lockfile's at the last checkpoint plus the batches since. */
  get serial(): number {
    return this.#progress.draft.serial;
  }

  /** A resource as recorded now, in O(1). */
  resource(address: Address): LockedResource | undefined {
    return this.#progress.resource(address);
  }

  /** Whether this apply, or the interrupted apply of the same plan it resumed, completed `address`. */
  isDone(address: Address): boolean {
    return this.#progress.done.has(address);
  }

  get writes(): ApplyLogWrites {
    return { ...this.#writes };
  }

  /** The apply as recorded so far (what readJournal would report if it stopped now). */
  get record(): JournalRecord {
    return this.#progress.record;
  }

  /**
   * Durably records one batch: `ops` and what it completed or failed. O(size of the batch); returns once the line is
   * on disk. Throws `state.lease-lost`, `state.wal-conflict` (another writer touched the state), `state.invalid-lockfile`
   * (a bug guard: an op the schema refuses; nothing is written) or the I/O error.
   */
  async append(ops: readonly LockfileOp[], marks: AppendMarks = {}): Promise<AppendResult> {
    const [result] = await this.appendBatches([{ ops, marks }]);
    return result!;
  }

  /**
   * Durably records several batches, in order, with one write and one fdatasync (group commit): each is one line of
   * the WAL and one logical serial, exactly as if appended one by one. Returns once all are on disk; all are checked
   * before any is written. Throws as `append` does.
   */
  appendBatches(batches: readonly AppendBatch[]): Promise<AppendResult[]> {
    return this.#serial(() => this.#appendBatches(batches));
  }

  async #appendBatches(batches: readonly AppendBatch[]): Promise<AppendResult[]> {
    this.#assertOpen();
    this.#lease.assertHeld();
    if (batches.length === 0) return [];
    const first = this.#progress.batches + 1;
    const lines = batches.map((b, i) => walLine(first + i, b));
    // Apply exactly what a replay will read: the line parsed back (this also drops undefined fields and copies the ops).
    const parsed = lines.map((line) => JSON.parse(line) as WalBatch);
    for (const batch of parsed) assertValidOps(batch.ops, this.#files.source.host);
    if (!sameFingerprint(fingerprintOf(this.#files.source.file), this.#lockFingerprint)) {
      throw this.#conflict(`the lockfile ${this.#files.source.file} was written by something else`);
    }
    const bytes = Buffer.from(lines.join(''), 'utf8');
    await this.#appendLines(bytes);
    const results: AppendResult[] = [];
    for (const [i, batch] of parsed.entries()) {
      this.#progress.apply(batch);
      const lineBytes = Buffer.byteLength(lines[i]!);
      this.#writes.appends++;
      this.#writes.appendedBytes += lineBytes;
      this.#writes.lastAppendBytes = lineBytes;
      results.push({ seq: batch.seq, serial: this.#progress.draft.serial });
    }
    // After the whole group: its batches are one write, and a checkpoint restarts the WAL's seq numbering.
    if (this.#progress.checkpointDue) this.#checkpoint('continue');
    return results;
  }

  /**
   * Ends the apply: checkpoints the lockfile (serial = logical serial, previous file kept as backup), then deletes the
   * WAL. Returns the final lockfile. The log cannot be used afterwards.
   */
  finish(): Promise<Lockfile> {
    return this.#serial(async () => {
      this.#assertOpen();
      this.#lease.assertHeld();
      this.#checkpoint('finish');
      this.#state = 'finished';
      return this.#progress.draft;
    });
  }

  /** Runs `fn` after every append or finish called before it has settled (the WAL has one writer at a time). */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(fn, fn);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  /**
   * One write on an O_APPEND descriptor, then fdatasync on the thread pool. On failure the file is cut back to its last
   * good size.
   */
  async #appendLines(bytes: Buffer): Promise<void> {
    const fd = openSync(this.#files.walFile, 'a');
    try {
      const st = fstatSync(fd);
      if (st.ino !== this.#walIno || st.size !== this.#walSize) {
        throw this.#conflict(`the write-ahead log ${this.#files.walFile} was written by something else`);
      }
      try {
        const written = writeSync(fd, bytes);
        if (written !== bytes.length)
          throw Object.assign(new Error(`short write to ${this.#files.walFile}: ${written} of ${bytes.length} bytes`), {
            code: 'ENOSPC',
          });
        await this.#sync.fdatasync(fd);
      } catch (error) {
        // A partial line must not stay in front of the next append (it would become corruption in the middle).
        try {
          ftruncateSync(fd, this.#walSize);
          fdatasyncSync(fd);
        } catch {
          this.#state = 'broken';
        }
        throw storageError(
          error,
          this.#files.walFile,
          'This step was not recorded (every earlier step is, in the write-ahead log).',
        );
      }
      this.#walSize += bytes.length;
    } finally {
      closeSync(fd);
    }
  }

  #checkpoint(then: 'continue' | 'finish'): void {
    if (this.#progress.batches > 0) {
      // Checks as append does: a checkpoint must not overwrite a lockfile written by someone else.
      if (!sameFingerprint(fingerprintOf(this.#files.source.file), this.#lockFingerprint)) {
        throw this.#conflict(`the lockfile ${this.#files.source.file} was written by something else`);
      }
      this.#lockFingerprint = writeLockfileFile(this.#files.source, this.#progress.draft);
      this.#writes.checkpoints++;
      this.#writes.checkpointedBytes += this.#lockFingerprint.size;
    }
    if (then === 'finish') {
      try {
        unlinkSync(this.#files.walFile);
      } catch (error) {
        if (errnoCode(error) !== 'ENOENT') throw error;
      }
      fsyncDirectory(path.dirname(this.#files.walFile));
      return;
    }
    // The next WAL continues this apply: same id, the progress so far carried in its header.
    const text = serializeWalLine(this.#progress.carriedHeader());
    writeFileAtomic(this.#files.walFile, text);
    const fp = fingerprintOf(this.#files.walFile);
    this.#walIno = fp?.ino ?? -1;
    this.#walSize = Buffer.byteLength(text);
    this.#progress.batches = 0;
    this.#writes.checkpointedBytes += this.#walSize;
  }

  #assertOpen(): void {
    if (this.#state === 'open') return;
    throw new AgentvmError(
      'state.apply-log-closed',
      `The write-ahead log of apply ${this.applyId} is ${this.#state === 'finished' ? 'already finished' : 'unusable after a failed write'}.`,
      { source: 'toolkit' },
    );
  }

  #conflict(what: string): AgentvmError {
    this.#state = 'broken';
    return new AgentvmError(
      'state.wal-conflict',
      `Apply ${this.applyId} stopped: ${what} while the apply held the lease.`,
      {
        detail:
          'Every write this apply acknowledged is in the write-ahead log or the lockfile. Run `agentvm plan` to see the state, then apply again.',
      },
    );
  }
}
