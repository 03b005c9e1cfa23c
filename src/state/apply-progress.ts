// The logical lockfile of a running apply and its progress — done and failed addresses, batches since the last
// checkpoint — shared by the file log (apply-log.ts) and the PostgreSQL log (postgres/apply-log.ts).
// Invariants:
// - The draft is the replay of what the log wrote: callers apply the batch as parsed back from what they stored.
// - The draft is never handed out while the log is open; `lock` is a snapshot, rebuilt after each batch.
// - A checkpoint is due after max(MIN_CHECKPOINT_INTERVAL, 2 × resources) batches: O(1) per batch on average.

import { AgentvmError } from '../diagnostics/index.js';
import type { Address, LockedResource } from '../model/resources.js';
import { applyOpsToDraft, lockfileDraft, lockfileOpProblem, type Lockfile, type LockfileOp } from './lockfile.js';
import type { JournalFailure, JournalRecord, WalBatch, WalHeader } from './wal.js';

/** Batches between checkpoints at the least (more with many resources: the lockfile rewrite is O(resources)). */
export const MIN_CHECKPOINT_INTERVAL = 256;

export class ApplyProgress {
  /** The header of the log as last written: it carries the progress across a checkpoint. */
  header: WalHeader;
  /** The logical lockfile, changed in place. */
  readonly draft: Lockfile;
  /** Batches since the last checkpoint. */
  batches = 0;
  readonly done: Set<Address>;
  readonly failed = new Map<Address, JournalFailure>();
  #snapshot: Lockfile | undefined;
  #resourceCount: number;

  constructor(header: WalHeader, draft: Lockfile, failed: readonly JournalFailure[] = []) {
    this.header = header;
    this.draft = draft;
    this.done = new Set(header.done ?? []);
    for (const f of failed) this.failed.set(f.address, f);
    this.#resourceCount = Object.keys(draft.resources).length;
  }

  /** The logical lockfile now (a snapshot: O(resources) to build, cached until the next batch). */
  get lock(): Lockfile {
    this.#snapshot ??= lockfileDraft(this.draft);
    return this.#snapshot;
  }

  /** A resource as recorded now, in O(1). */
  resource(address: Address): LockedResource | undefined {
    const r = this.draft.resources[address];
    return r ? { ...r } : undefined;
  }

  /** The apply as recorded so far (what readJournal would report if it stopped now). */
  get record(): JournalRecord {
    return {
      applyId: this.header.applyId,
      planDigest: this.header.planDigest,
      startedAt: this.header.startedAt,
      pid: this.header.pid,
      completed: [...this.done],
      failed: [...this.failed.values()],
      ...(this.header.resumedFrom !== undefined ? { resumedFrom: this.header.resumedFrom } : {}),
    };
  }

  /** Replays one batch that was written. */
  apply(batch: WalBatch): void {
    for (const op of batch.ops) {
      if (op.op === 'resource.set' && !(op.entry.address in this.draft.resources)) this.#resourceCount++;
      if (op.op === 'resource.delete' && op.address in this.draft.resources) this.#resourceCount--;
    }
    applyOpsToDraft(this.draft, batch.ops);
    this.draft.updatedAt = batch.at;
    this.draft.serial++;
    this.#snapshot = undefined;
    this.batches = batch.seq;
    if (batch.failed) this.failed.set(batch.failed.address, batch.failed);
    if (batch.done !== undefined) {
      this.failed.delete(batch.done);
      this.done.add(batch.done);
    }
  }

  get checkpointDue(): boolean {
    return this.batches > Math.max(MIN_CHECKPOINT_INTERVAL, 2 * this.#resourceCount);
  }

  /** The header of the log that continues this apply after a checkpoint: same id, the progress so far. */
  carriedHeader(): WalHeader {
    this.header = {
      ...this.header,
      baseSerial: this.draft.serial,
      done: [...this.done],
      ...(this.failed.size ? { failed: [...this.failed.values()] } : {}),
    };
    return this.header;
  }
}

/** A bug guard before anything is written: an op the lockfile schema refuses is `state.invalid-lockfile`. */
export function assertValidOps(ops: readonly LockfileOp[], host: string): void {
  for (const op of ops) {
    const problem = lockfileOpProblem(op);
    if (problem)
      throw new AgentvmError(
        'state.invalid-lockfile',
        `Refusing to write an invalid lockfile change for host "${host}" (${problem}).`,
        { source: 'toolkit' },
      );
  }
}
