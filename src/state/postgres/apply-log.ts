// PgApplyLog: a running apply's write-ahead log in PostgreSQL (ADR 0005's guarantees, ADR 0017's transactions).
// Each durable step is ONE transaction that: locks the host's lease row (fencing token), locks the host row and checks
// lineage and logical serial against what this log wrote last, inserts the audit record and moves the audit head (when
// the step is audited), inserts the batch row and bumps the serial. So the state write, its audit record and the new
// head exist together or not at all — unlike files, there is no "audit first, batch second" window.
// Invariants:
// - The in-memory draft is the replay of what was committed: the ops applied are the ones parsed back from the JSON.
// - The steps of resources that finished together (group commit, ADR 0026) share one transaction, in order: each is
//   still its own audit record and batch row, so readers and replay see exactly what one step at a time writes.
// - Transactions of one log never interleave (one connection cannot run two): steps queue in call order.
// - Any failed step leaves the log broken: a COMMIT whose answer was lost may or may not have happened, so only a new
//   apply (which reads the state back) may continue; it resumes by the recorded done addresses.
// - Checkpoints (every max(256, 2 × resources) batches, and at finish) rewrite the lockfile row and delete the batch
//   rows in the same transaction, so a reader never sees a batch twice.

import type pg from 'pg';
import { AgentvmError } from '../../diagnostics/index.js';
import type { Address, LockedResource } from '../../model/resources.js';
import type { AppendBatch, AppendMarks, AppendResult, ApplyLogWrites } from '../apply-log.js';
import { ApplyProgress, assertValidOps } from '../apply-progress.js';
import {
  auditRecordProblem,
  buildRecord,
  serializeAuditRecord,
  auditHash,
  type AuditEntry,
  type AuditEvent,
} from '../audit-log.js';
import type { ApplyLogHandle, AuditedStep } from '../backend-types.js';
import { canonicalOp, type Lockfile, type LockfileOp } from '../lockfile.js';
import type { JournalRecord, WalBatch, WalHeader } from '../wal.js';
import { backendError, connect } from './errors.js';
import { fence, type PgLease } from './lease.js';

export interface PgApplyLogInit {
  pool: pg.Pool;
  location: string;
  lease: PgLease;
  header: WalHeader;
  draft: Lockfile;
  interrupted: JournalRecord | null;
}

export class PgApplyLog implements ApplyLogHandle {
  readonly applyId: string;
  readonly planDigest: string;
  readonly interrupted: JournalRecord | null;
  readonly #pool: pg.Pool;
  readonly #location: string;
  readonly #lease: PgLease;
  /** The logical lockfile and the progress; `batches` counts the batch rows since the last checkpoint. */
  readonly #progress: ApplyProgress;
  #state: 'open' | 'finished' | 'broken' = 'open';
  #queue: Promise<unknown> = Promise.resolve();
  readonly #writes: ApplyLogWrites = {
    appends: 0,
    appendedBytes: 0,
    lastAppendBytes: 0,
    checkpoints: 0,
    checkpointedBytes: 0,
  };

  constructor(init: PgApplyLogInit) {
    this.#pool = init.pool;
    this.#location = init.location;
    this.#lease = init.lease;
    this.#progress = new ApplyProgress(init.header, init.draft, init.header.failed ?? []);
    this.applyId = init.header.applyId;
    this.planDigest = init.header.planDigest;
    this.interrupted = init.interrupted;
  }

  get lock(): Lockfile {
    return this.#progress.lock;
  }
  get serial(): number {
    return this.#progress.draft.serial;
  }
  get writes(): ApplyLogWrites {
    return { ...this.#writes };
  }
  get record(): JournalRecord {
    return this.#progress.record;
  }
  resource(address: Address): LockedResource | undefined {
    return this.#progress.resource(address);
  }
  isDone(address: Address): boolean {
    return this.#progress.done.has(address);
  }

  append(ops: readonly LockfileOp[], marks: AppendMarks = {}): Promise<AppendResult> {
    return this.#enqueue(async () => (await this.#steps([{ entry: null, ops, marks }]))[0]!.result);
  }

  /** Several batches in ONE transaction (group commit, ADR 0026): all are committed or none. */
  appendBatches(batches: readonly AppendBatch[]): Promise<AppendResult[]> {
    return this.#enqueue(async () =>
      (await this.#steps(batches.map((b) => ({ entry: null, ops: b.ops, marks: b.marks ?? {} })))).map((r) => r.result),
    );
  }

  appendWithAudit(
    entry: AuditEntry,
    ops: readonly LockfileOp[],
    marks: AppendMarks = {},
  ): Promise<{ event: AuditEvent; result: AppendResult }> {
    return this.appendStepsWithAudit([{ entry, ops, marks }]).then((r) => r[0]!);
  }

  /**
   * The durable steps of resources that finished together, each with its audit record, in ONE transaction: one round
   * trip to durability for the group instead of one per resource, and still all-or-nothing per step (here: per group).
   */
  appendStepsWithAudit(steps: readonly AuditedStep[]): Promise<Array<{ event: AuditEvent; result: AppendResult }>> {
    return this.#enqueue(async () =>
      (await this.#steps(steps.map((s) => ({ entry: s.entry, ops: s.ops, marks: s.marks ?? {} })))).map((r) => ({
        event: r.event!,
        result: r.result,
      })),
    );
  }

  finish(): Promise<Lockfile> {
    return this.#enqueue(async () => {
      await this.#transaction('finishing the apply', async (client) => {
        await this.#lockHost(client);
        await this.#checkpoint(client, 'finish');
      });
      this.#state = 'finished';
      return this.#progress.draft;
    });
  }

  #enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(() => {
      this.#assertOpen();
      return fn();
    });
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #steps(
    steps: ReadonlyArray<{ entry: AuditEntry | null; ops: readonly LockfileOp[]; marks: AppendMarks }>,
  ): Promise<Array<{ event: AuditEvent | null; result: AppendResult }>> {
    this.#lease.assertHeld();
    const host = this.#progress.draft.host;
    // Exactly what a replay will read (drops undefined fields, copies the ops); all checked before anything is written.
    const parsed = steps.map((s) => JSON.parse(JSON.stringify(s.ops.map(canonicalOp))) as LockfileOp[]);
    for (const ops of parsed) assertValidOps(ops, host);
    const out: Array<{ event: AuditEvent | null; result: AppendResult; bytes: number }> = [];
    const first = steps[0]?.entry;
    const what =
      steps.length > 1
        ? `recording ${steps.length} steps`
        : first
          ? `recording ${first.event}${first.address ? ` of ${first.address}` : ''}`
          : 'recording a batch';
    await this.#transaction(what, async (client) => {
      let head: { seq: number; hash: string } | null = null;
      const row = await this.#lockHost(client);
      if (row.auditSeq > 0) head = { seq: row.auditSeq, hash: row.auditHash };
      for (const [i, step] of steps.entries()) {
        const draft = this.#progress.draft;
        const seq = this.#progress.batches + 1;
        const batch: WalBatch = {
          seq,
          at: new Date().toISOString(),
          ops: parsed[i]!,
          ...(step.marks.done !== undefined ? { done: step.marks.done } : {}),
          ...(step.marks.failed
            ? { failed: { address: step.marks.failed.address, message: step.marks.failed.message } }
            : {}),
        };
        let event: AuditEvent | null = null;
        if (step.entry) {
          event = sealedRecord(step.entry, head);
          await insertAudit(client, step.entry.host, event);
          head = { seq: event.seq, hash: event.hash };
          batch.ops.push({ op: 'auditHead.set', head: { seq: event.seq, hash: event.hash } });
        }
        const json = JSON.stringify(batch);
        await client.query('INSERT INTO agentvm_wal (host, seq, serial, batch) VALUES ($1, $2, $3, $4)', [
          draft.host,
          seq,
          draft.serial + 1,
          json,
        ]);
        await client.query('UPDATE agentvm_hosts SET serial = $2, lineage = $3 WHERE host = $1', [
          draft.host,
          draft.serial + 1,
          draft.lineage,
        ]);
        this.#progress.apply(batch);
        if (this.#progress.checkpointDue) await this.#checkpoint(client, 'continue');
        out.push({ event, result: { seq, serial: this.#progress.draft.serial }, bytes: Buffer.byteLength(json) });
      }
    });
    for (const r of out) {
      this.#writes.appends++;
      this.#writes.appendedBytes += r.bytes;
      this.#writes.lastAppendBytes = r.bytes;
    }
    return out;
  }

  /** Fencing token first, then the host row; refuses a state this log did not write last. Returns the audit head. */
  async #lockHost(client: pg.PoolClient): Promise<{ auditSeq: number; auditHash: string }> {
    const draft = this.#progress.draft;
    await fence(client, this.#lease);
    const r = await client.query<{ lineage: string | null; serial: string; audit_seq: string; audit_hash: string }>(
      'SELECT lineage, serial, audit_seq, audit_hash FROM agentvm_hosts WHERE host = $1 FOR UPDATE',
      [draft.host],
    );
    const row = r.rows[0];
    if (!row || (row.lineage !== null && row.lineage !== draft.lineage) || Number(row.serial) !== draft.serial) {
      throw new AgentvmError(
        'state.wal-conflict',
        `Apply ${this.applyId} stopped: the state of host "${draft.host}" in ${this.#location} was written by something else (serial ${row?.serial ?? 'none'}, expected ${draft.serial}) while the apply held the lease.`,
        {
          detail:
            'Every write this apply acknowledged is recorded. Run `agentvm plan` to see the state, then apply again.',
        },
      );
    }
    return { auditSeq: Number(row.audit_seq), auditHash: row.audit_hash };
  }

  async #checkpoint(client: pg.PoolClient, then: 'continue' | 'finish'): Promise<void> {
    const draft = this.#progress.draft;
    const host = draft.host;
    const doc = JSON.stringify(draft);
    if (then === 'finish') {
      await client.query(
        'UPDATE agentvm_hosts SET lockfile = $2, wal_header = NULL, lineage = $3, serial = $4 WHERE host = $1',
        [host, doc, draft.lineage, draft.serial],
      );
    } else {
      await client.query('UPDATE agentvm_hosts SET lockfile = $2, wal_header = $3 WHERE host = $1', [
        host,
        doc,
        JSON.stringify(this.#progress.carriedHeader()),
      ]);
      this.#progress.batches = 0;
    }
    await client.query('DELETE FROM agentvm_wal WHERE host = $1', [host]);
    this.#writes.checkpoints++;
    this.#writes.checkpointedBytes += Buffer.byteLength(doc);
  }

  /** One transaction on its own connection; any failure breaks the log (see the file comment). */
  async #transaction(what: string, fn: (client: pg.PoolClient) => Promise<void>): Promise<void> {
    let client: pg.PoolClient | undefined;
    try {
      client = await connect(this.#pool);
      await client.query('BEGIN');
      await fn(client);
      await client.query('COMMIT');
      client.release();
    } catch (error) {
      this.#state = 'broken';
      if (client) {
        await client.query('ROLLBACK').catch(() => undefined);
        client.release(true);
      }
      throw backendError(error, this.#location, `apply ${this.applyId} was ${what}`);
    }
  }

  #assertOpen(): void {
    if (this.#state === 'open') return;
    throw new AgentvmError(
      'state.apply-log-closed',
      `The apply log of apply ${this.applyId} is ${this.#state === 'finished' ? 'already finished' : 'unusable after a failed write'}.`,
      { source: 'toolkit' },
    );
  }
}

/** The record `entry` makes after `prev`, hashed and checked like the file writer does (audit-log.ts). */
export function sealedRecord(entry: AuditEntry, prev: { seq: number; hash: string } | null): AuditEvent {
  const unsigned = buildRecord(entry, prev);
  const record = { ...unsigned, hash: auditHash(unsigned) } as AuditEvent;
  const problem = auditRecordProblem(record);
  if (problem)
    throw new AgentvmError('audit.invalid-entry', `Refusing to write an invalid audit record (${problem}).`, {
      source: 'toolkit',
    });
  return record;
}

/** Inserts a sealed record as the new head of its host's chain (the caller holds the host row lock). */
export async function insertAudit(
  client: pg.ClientBase,
  host: string,
  event: AuditEvent,
  line: string = serializeAuditRecord(event),
): Promise<void> {
  await client.query('INSERT INTO agentvm_audit (host, seq, hash, time, line) VALUES ($1, $2, $3, $4, $5)', [
    host,
    event.seq,
    event.hash,
    event.time,
    line,
  ]);
  await client.query('UPDATE agentvm_hosts SET audit_seq = $2, audit_hash = $3 WHERE host = $1', [
    host,
    event.seq,
    event.hash,
  ]);
}
