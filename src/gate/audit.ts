// How gate events reach the audit log. Grants, revocations and expiries are rare and written at once (appendAudit:
// lock + fsync per record). Requests are many: the server's RequestAuditLog buffers them and writes them in groups
// (group commit: one lock, one write, one fsync per group), flushed every `intervalMs` or every `maxRecords`,
// and on shutdown. A crash can lose at most one interval of request records — never a grant, revoke or expiry.
// Invariant: no record carries a one-time token or a session id (callers pass only GateAccess fields, which have no
// slot for either; paths are logged without their query).

import type { AuditResult, GateAccess } from '../state/audit-log.js';
import { appendAudit, appendAuditBatch, type AuditEntry } from '../state/audit-log.js';
import { LeaseHeldError } from '../state/lease-lock.js';

export const GATE_OPERATION = 'gate';

/** Events the gate writes. */
export type GateEvent =
  | 'gate.grant'
  | 'gate.revoke'
  | 'gate.expire'
  | 'gate.exchange'
  | 'gate.request'
  | 'gate.route-delete'
  | 'gate.start'
  | 'gate.stop';

export function gateEntry(
  host: string,
  event: GateEvent,
  result: AuditResult,
  gate: GateAccess,
  extra: { actor?: string; detail?: string; address?: string } = {},
): AuditEntry {
  return { host, operation: GATE_OPERATION, event, result, gate, ...extra };
}

/** Writes one gate event now (lock + fsync): for grants, revocations, expiries, route deletions. */
export function auditGateEvent(file: string, entry: AuditEntry): void {
  appendAudit(file, entry);
}

export interface RequestAuditLogOptions {
  file: string;
  intervalMs?: number;
  maxRecords?: number;
  /** Called when a group cannot be written (disk full; the log locked by another writer for over 10 s); the server
   *  reports it and goes on. */
  onError?: (error: unknown) => void;
}

/** Group commit of per-request records (see the file comment). */
export class RequestAuditLog {
  private buffer: AuditEntry[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly intervalMs: number;
  private readonly maxRecords: number;
  /** Records written so far (for the server's shutdown summary and tests). */
  written = 0;
  /** Records given up because the log stayed unwritable past MAX_PENDING held records. */
  dropped = 0;
  /** Since when another writer has held the log's lock at every attempt (0: not contended). */
  private lockedSince = 0;

  constructor(private readonly options: RequestAuditLogOptions) {
    this.intervalMs = options.intervalMs ?? 100;
    this.maxRecords = options.maxRecords ?? 512;
  }

  add(entry: AuditEntry): void {
    this.buffer.push(entry);
    if (this.buffer.length >= this.maxRecords) this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), this.intervalMs);
      this.timer.unref();
    }
  }

  /**
   * Writes the buffered records as one group. Never waits for another writer's lock (an apply appending, `gate grant`):
   * the gate's event loop serves every request, so a held lock keeps the group for a retry in 10 ms instead. On
   * shutdown (`waitForLock`) it waits up to 10 s like any other writer, so the last group is not left behind.
   */
  flush(waitForLock = false): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.buffer.length === 0) return;
    const group = this.buffer;
    this.buffer = [];
    try {
      this.written += appendAuditBatch(this.options.file, group, waitForLock ? {} : { lockWaitMs: 0 }).length;
      this.lockedSince = 0;
    } catch (error) {
      // Not dropped: the group goes back in front of what arrived since, and a later attempt writes it. Only past
      // MAX_PENDING records (a log that stays unwritable) are the oldest given up, and counted.
      this.buffer = [...group, ...this.buffer];
      const excess = this.buffer.length - MAX_PENDING;
      if (excess > 0) {
        this.buffer.splice(0, excess);
        this.dropped += excess;
      }
      const held = error instanceof LeaseHeldError;
      if (held) {
        const now = Date.now();
        if (this.lockedSince === 0) this.lockedSince = now;
        else if (now - this.lockedSince > LOCK_REPORT_MS) {
          this.options.onError?.(error);
          this.lockedSince = now;
        }
      } else {
        this.options.onError?.(error);
      }
      if (!this.timer) {
        this.timer = setTimeout(() => this.flush(), held ? Math.min(this.intervalMs, 10) : this.intervalMs);
        this.timer.unref();
      }
    }
  }
}

/** How long another writer may hold the audit lock before the gate reports it (and every such interval after). */
const LOCK_REPORT_MS = 10_000;

/** Request records held while the audit log cannot be written (≈5 MiB at most). */
const MAX_PENDING = 10_000;
