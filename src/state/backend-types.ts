// The shapes a StateBackend hands out, as interfaces: a held lease and a running apply's log. The local backend's
// LeaseLock and ApplyLog classes satisfy them; the PostgreSQL backend (src/state/postgres/) has its own. Code above
// src/state only ever sees these interfaces, so it cannot tell (nor depend on) which backend it runs on.
// guardLease is the one check every backend makes of a lease before a write.

import { AgentvmError } from '../diagnostics/index.js';
import type { Address, LockedResource } from '../model/resources.js';
import { assertHostName } from './host-paths.js';
import type { AppendBatch, AppendMarks, AppendResult, ApplyLogWrites } from './apply-log.js';
import type { AuditEntry, AuditEvent } from './audit-log.js';
import type { LeaseRecord } from './lease-lock.js';
import type { Lockfile, LockfileOp } from './lockfile.js';
import type { JournalRecord } from './wal.js';

/** A lease this process holds on one host's state. */
export interface HeldLease {
  readonly id: string;
  readonly host: string;
  readonly record: LeaseRecord;
  /** The stale lease this one replaced (for the audit log), or null. */
  readonly tookOver: LeaseRecord | null;
  /** False once released, or once the backend found it taken over. */
  readonly held: boolean;
  /** Throws `state.lease-lost` when this process knows the lease is no longer its own. */
  assertHeld(): void;
  /** Gives the lease back if it is still this one. Idempotent. Await it: a remote backend deletes a row. */
  release(): void | Promise<void>;
}

/** A durable step of an apply: its audit record, and the batch (ops, done or failed mark) it audits. */
export interface AuditedStep {
  entry: AuditEntry;
  ops: readonly LockfileOp[];
  marks?: AppendMarks;
}

/** A running apply's durable log (ADR 0005): what apply.ts uses of it. */
export interface ApplyLogHandle {
  readonly applyId: string;
  readonly planDigest: string;
  readonly interrupted: JournalRecord | null;
  readonly lock: Lockfile;
  readonly serial: number;
  readonly record: JournalRecord;
  readonly writes: ApplyLogWrites;
  resource(address: Address): LockedResource | undefined;
  isDone(address: Address): boolean;
  append(ops: readonly LockfileOp[], marks?: AppendMarks): Promise<AppendResult>;
  /** Several batches, in order, made durable together (one sync or one transaction: group commit, ADR 0026). */
  appendBatches(batches: readonly AppendBatch[]): Promise<AppendResult[]>;
  /**
   * Backends that can do it atomically: appends `entry` to the audit chain AND records the batch (`ops` plus the new
   * audit head) in ONE transaction, so the record and the change it audits exist together or not at all. Absent on
   * the local backend, where the record is appended first and the batch second (ADR 0005: a kill in between
   * over-reports, never under-reports).
   */
  appendWithAudit?(
    entry: AuditEntry,
    ops: readonly LockfileOp[],
    marks?: AppendMarks,
  ): Promise<{ event: AuditEvent; result: AppendResult }>;
  /** appendWithAudit for several steps in ONE transaction (group commit, ADR 0026); same backends. */
  appendStepsWithAudit?(steps: readonly AuditedStep[]): Promise<Array<{ event: AuditEvent; result: AppendResult }>>;
  finish(): Promise<Lockfile>;
}

/**
 * Every write of a backend: the lease must guard `host`, have been taken from this backend (`ownLease` narrows it to
 * the backend's own class; `backendName` says which in the error), and still be held (else `state.lease-lost`).
 */
export function guardLease<L extends HeldLease>(
  host: string,
  lease: HeldLease,
  ownLease: (lease: HeldLease) => lease is L,
  backendName: string,
): L {
  assertHostName(host);
  if (lease.host !== host)
    throw new AgentvmError(
      'state.lease-host-mismatch',
      `The lease of host "${lease.host}" does not guard host "${host}".`,
      {
        source: 'toolkit',
      },
    );
  if (!ownLease(lease))
    throw new AgentvmError(
      'state.lease-backend-mismatch',
      `The lease ${lease.id} was not taken from the ${backendName} state backend.`,
      { source: 'toolkit' },
    );
  lease.assertHeld();
  return lease;
}
