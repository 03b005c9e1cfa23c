// PgApplyLog: a running apply's write-ahead log in PostgreSQL (ADR 0005's guarantees, ADR 0017's transactions).
// Each durable step is ONE transaction that: locks the host's lease row (fencing token), locks the host row and checks
// lineage and logical serial against what this log wrote last, inserts the audit record and moves the audit head (when
// the step is audited), inserts the batch row and bumps the serial. So the state write, its audit record and the new
// head exist together or not at all — unlike files, there is no "audit first, batch second" window.
// Invariants:
// - The in-memory draft is the replay of what was committed: the ops applied are the ones parsed back from the JSON.
// - Transactions of one log never interleave (one connection cannot run two): steps queue in call order.
// - Any failed step leaves the log broken: a COMMIT whose answer was lost may or may not have happened, so only a new
//   apply (which reads the state back) may continue; it resumes by the recorded done addresses.
// - Checkpoints (every max(256, 2 × resources) batches, and at finish) rewrite the lockfile row and delete the batch
//   rows in the same transaction, so a reader never sees a batch twice.

import type pg from 'pg';
import { AgentvmError } from '../../diagnostics/index.js';
import type { Address, LockedResource } from '../../model/resources.js';
import type { AppendMarks, AppendResult, ApplyLogWrites } from '../apply-log.js';
import { MIN_CHECKPOINT_INTERVAL } from '../apply-log.js';
import { auditRecordProblem, buildRecord, serializeAuditRecord, auditHash, type AuditEntry, type AuditEvent } from '../audit-log.js';
import type { ApplyLogHandle } from '../backend-types.js';
import { applyOpsToDraft, canonicalOp, lockfileDraft, lockfileOpProblem, type Lockfile, type LockfileOp } from '../lockfile.js';
import type { JournalFailure, JournalRecord, WalBatch, WalHeader } from '../wal.js';
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
  #header: WalHeader;
  readonly #draft: Lockfile;
  #snapshot: Lockfile | undefined;
  #resourceCount: number;
  #batches = 0;
  readonly #done: Set<Address>;
  readonly #failed = new Map<Address, JournalFailure>();
  #state: 'open' | 'finished' | 'broken' = 'open';
  #queue: Promise<unknown> = Promise.resolve();
  readonly #writes: ApplyLogWrites = { appends: 0, appendedBytes: 0, lastAppendBytes: 0, checkpoints: 0, checkpointedBytes: 0 };

  constructor(init: PgApplyLogInit) {
    this.#pool = init.pool;
    this.#location = init.location;
    this.#lease = init.lease;
    this.#header = init.header;
    this.#draft = init.draft;
    this.applyId = init.header.applyId;
    this.planDigest = init.header.planDigest;
    this.interrupted = init.interrupted;
    this.#done = new Set(init.header.done ?? []);
    for (const f of init.header.failed ?? []) this.#failed.set(f.address, f);
    this.#resourceCount = Object.keys(init.draft.resources).length;
  }

  get lock(): Lockfile {
    this.#snapshot ??= lockfileDraft(this.#draft);
    return this.#snapshot;
  }
  get serial(): number {
    return this.#draft.serial;
  }
  get writes(): ApplyLogWrites {
    return { ...this.#writes };
  }
  get record(): JournalRecord {
    return {
      applyId: this.applyId,
      planDigest: this.planDigest,
      startedAt: this.#header.startedAt,
      pid: this.#header.pid,
      completed: [...this.#done],
      failed: [...this.#failed.values()],
      ...(this.#header.resumedFrom !== undefined ? { resumedFrom: this.#header.resumedFrom } : {}),
    };
  }
  resource(address: Address): LockedResource | undefined {
    const r = this.#draft.resources[address];
    return r ? { ...r } : undefined;
  }
  isDone(address: Address): boolean {
    return this.#done.has(address);
  }

  append(ops: readonly LockfileOp[], marks: AppendMarks = {}): Promise<AppendResult> {
    return this.#enqueue(async () => (await this.#step(null, ops, marks)).result);
  }

  appendWithAudit(entry: AuditEntry, ops: readonly LockfileOp[], marks: AppendMarks = {}): Promise<{ event: AuditEvent; result: AppendResult }> {
    return this.#enqueue(async () => {
      const { event, result } = await this.#step(entry, ops, marks);
      return { event: event!, result };
    });
  }

  finish(): Promise<Lockfile> {
    return this.#enqueue(async () => {
      await this.#transaction('finishing the apply', async (client) => {
        await this.#lockHost(client);
        await this.#checkpoint(client, 'finish');
      });
      this.#state = 'finished';
      return this.#draft;
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

  async #step(entry: AuditEntry | null, ops: readonly LockfileOp[], marks: AppendMarks): Promise<{ event: AuditEvent | null; result: AppendResult }> {
    this.#lease.assertHeld();
    const canonical = ops.map(canonicalOp);
    // Exactly what a replay will read (drops undefined fields, copies the ops); checked before anything is written.
    const parsed = JSON.parse(JSON.stringify(canonical)) as LockfileOp[];
    for (const op of parsed) {
      const problem = lockfileOpProblem(op);
      if (problem) throw new AgentvmError('state.invalid-lockfile', `Refusing to write an invalid lockfile change for host "${this.#draft.host}" (${problem}).`, { source: 'toolkit' });
    }
    let event: AuditEvent | null = null;
    const seq = this.#batches + 1;
    const batch: WalBatch = {
      seq,
      at: new Date().toISOString(),
      ops: parsed,
      ...(marks.done !== undefined ? { done: marks.done } : {}),
      ...(marks.failed ? { failed: { address: marks.failed.address, message: marks.failed.message } } : {}),
    };
    let bytes = 0;
    await this.#transaction(entry ? `recording ${entry.event}${entry.address ? ` of ${entry.address}` : ''}` : 'recording a batch', async (client) => {
      const head = await this.#lockHost(client);
      if (entry) {
        event = sealedRecord(entry, head.auditSeq > 0 ? { seq: head.auditSeq, hash: head.auditHash } : null);
        await insertAudit(client, entry.host, event);
        batch.ops.push({ op: 'auditHead.set', head: { seq: event.seq, hash: event.hash } });
      }
      const json = JSON.stringify(batch);
      bytes = Buffer.byteLength(json);
      await client.query('INSERT INTO agentvm_wal (host, seq, serial, batch) VALUES ($1, $2, $3, $4)', [this.#draft.host, seq, this.#draft.serial + 1, json]);
      await client.query('UPDATE agentvm_hosts SET serial = $2, lineage = $3 WHERE host = $1', [this.#draft.host, this.#draft.serial + 1, this.#draft.lineage]);
      this.#applyBatch(batch);
      if (this.#batches > Math.max(MIN_CHECKPOINT_INTERVAL, 2 * this.#resourceCount)) await this.#checkpoint(client, 'continue');
    });
    this.#writes.appends++;
    this.#writes.appendedBytes += bytes;
    this.#writes.lastAppendBytes = bytes;
    return { event, result: { seq, serial: this.#draft.serial } };
  }

  #applyBatch(batch: WalBatch): void {
    for (const op of batch.ops) {
      if (op.op === 'resource.set' && !(op.entry.address in this.#draft.resources)) this.#resourceCount++;
      if (op.op === 'resource.delete' && op.address in this.#draft.resources) this.#resourceCount--;
    }
    applyOpsToDraft(this.#draft, batch.ops);
    this.#draft.updatedAt = batch.at;
    this.#draft.serial++;
    this.#snapshot = undefined;
    this.#batches = batch.seq;
    if (batch.failed) this.#failed.set(batch.failed.address, batch.failed);
    if (batch.done !== undefined) {
      this.#failed.delete(batch.done);
      this.#done.add(batch.done);
    }
  }

  /** Fencing token first, then the host row; refuses a state this log did not write last. Returns the audit head. */
  async #lockHost(client: pg.PoolClient): Promise<{ auditSeq: number; auditHash: string }> {
    await fence(client, this.#lease);
    const r = await client.query<{ lineage: string | null; serial: string; audit_seq: string; audit_hash: string }>(
      'SELECT lineage, serial, audit_seq, audit_hash FROM agentvm_hosts WHERE host = $1 FOR UPDATE',
      [this.#draft.host],
    );
    const row = r.rows[0];
    if (!row || (row.lineage !== null && row.lineage !== this.#draft.lineage) || Number(row.serial) !== this.#draft.serial) {
      throw new AgentvmError('state.wal-conflict', `Apply ${this.applyId} stopped: the state of host "${this.#draft.host}" in ${this.#location} was written by something else (serial ${row?.serial ?? 'none'}, expected ${this.#draft.serial}) while the apply held the lease.`, {
        detail: 'Every write this apply acknowledged is recorded. Run `agentvm plan` to see the state, then apply again.',
      });
    }
    return { auditSeq: Number(row.audit_seq), auditHash: row.audit_hash };
  }

  async #checkpoint(client: pg.PoolClient, then: 'continue' | 'finish'): Promise<void> {
    const host = this.#draft.host;
    const doc = JSON.stringify(this.#draft);
    if (then === 'finish') {
      await client.query('UPDATE agentvm_hosts SET lockfile = $2, wal_header = NULL, lineage = $3, serial = $4 WHERE host = $1', [host, doc, this.#draft.lineage, this.#draft.serial]);
    } else {
      this.#header = { ...this.#header, baseSerial: this.#draft.serial, done: [...this.#done], ...(this.#failed.size ? { failed: [...this.#failed.values()] } : {}) };
      await client.query('UPDATE agentvm_hosts SET lockfile = $2, wal_header = $3 WHERE host = $1', [host, doc, JSON.stringify(this.#header)]);
      this.#batches = 0;
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
    throw new AgentvmError('state.apply-log-closed', `The apply log of apply ${this.applyId} is ${this.#state === 'finished' ? 'already finished' : 'unusable after a failed write'}.`, { source: 'toolkit' });
  }
}

/** The record `entry` makes after `prev`, hashed and checked like the file writer does (audit-log.ts). */
export function sealedRecord(entry: AuditEntry, prev: { seq: number; hash: string } | null): AuditEvent {
  const unsigned = buildRecord(entry, prev);
  const record = { ...unsigned, hash: auditHash(unsigned) } as AuditEvent;
  const problem = auditRecordProblem(record);
  if (problem) throw new AgentvmError('audit.invalid-entry', `Refusing to write an invalid audit record (${problem}).`, { source: 'toolkit' });
  return record;
}

/** Inserts a sealed record as the new head of its host's chain (the caller holds the host row lock). */
export async function insertAudit(client: pg.ClientBase, host: string, event: AuditEvent, line: string = serializeAuditRecord(event)): Promise<void> {
  await client.query('INSERT INTO agentvm_audit (host, seq, hash, time, line) VALUES ($1, $2, $3, $4, $5)', [host, event.seq, event.hash, event.time, line]);
  await client.query('UPDATE agentvm_hosts SET audit_seq = $2, audit_hash = $3 WHERE host = $1', [host, event.seq, event.hash]);
}
