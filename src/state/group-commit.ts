// Group commit of an apply's durable steps (ADR 0026). Every durable step of an apply is an audit record plus one
// apply-log batch (its lockfile ops, its done or failed mark, the new audit head). Steps submitted while a group is
// being made durable wait and form the next group; a group costs one audit append (one write, one fsync) and one log
// append (one write, one fdatasync) — or one transaction on a backend that has them — however many steps it holds.
// Invariants:
// - A step's promise resolves only after BOTH syncs of its group resolved: nothing is reported done, and no dependent
//   step starts, before its record and its batch are on disk.
// - Audit first, then the log, for the whole group: a kill in between leaves records whose batches are missing
//   (over-reporting: the next apply redoes those steps), never a batch whose record is missing.
// - Groups commit one at a time, in submission order; within a group, records and batches keep that order, and each
//   batch carries its own record's head, so the recorded head only moves forward.
// - A group that fails rejects every step in it; the next group is tried on its own (each step's outcome is what it
//   would have been alone: the log refuses writes once it is broken).

import type { AppendMarks, AppendResult } from './apply-log.js';
import type { AuditEntry, AuditEvent } from './audit-log.js';
import type { ApplyLogHandle, AuditedStep } from './backend-types.js';
import type { StateBackend } from './backend.js';
import type { LockfileOp } from './lockfile.js';

export interface CommittedStep {
  event: AuditEvent;
  result: AppendResult;
}

interface Waiting {
  step: AuditedStep;
  resolve: (r: CommittedStep) => void;
  reject: (error: unknown) => void;
}

export interface GroupCommitOptions {
  /** Called after each durable write of a group (the audit records, then the log batch): the crash tests' fault points. */
  afterWrite?: () => void;
  /** Called with each group's size before it is written (measurements, tests). */
  onGroup?: (size: number) => void;
}

export class GroupCommit {
  readonly #backend: StateBackend;
  readonly #log: ApplyLogHandle;
  readonly #options: GroupCommitOptions;
  #waiting: Waiting[] = [];
  #running = false;
  /** The highest audit seq any batch recorded as the head. */
  #auditSeq = 0;

  constructor(backend: StateBackend, log: ApplyLogHandle, options: GroupCommitOptions = {}) {
    this.#backend = backend;
    this.#log = log;
    this.#options = options;
  }

  /** Queues one durable step; resolves once the group holding it is on disk (see the file comment). */
  submit(entry: AuditEntry, ops: readonly LockfileOp[] = [], marks: AppendMarks = {}): Promise<CommittedStep> {
    return new Promise<CommittedStep>((resolve, reject) => {
      this.#waiting.push({ step: { entry, ops, marks }, resolve, reject });
      if (!this.#running) {
        this.#running = true;
        // Not at once: the steps of every resource that finished in this turn of the event loop join the first group.
        setImmediate(() => void this.#drain());
      }
    });
  }

  async #drain(): Promise<void> {
    while (this.#waiting.length > 0) {
      const group = this.#waiting.splice(0);
      try {
        const committed = await this.#commit(group.map((w) => w.step));
        group.forEach((w, i) => w.resolve(committed[i]!));
      } catch (error) {
        for (const w of group) w.reject(error);
      }
    }
    this.#running = false;
  }

  async #commit(steps: AuditedStep[]): Promise<CommittedStep[]> {
    this.#options.onGroup?.(steps.length);
    if (this.#log.appendStepsWithAudit) {
      const committed = await this.#log.appendStepsWithAudit(steps);
      this.#options.afterWrite?.();
      return committed;
    }
    const events = await this.#backend.appendAuditBatch(steps.map((s) => s.entry));
    this.#options.afterWrite?.();
    const batches = steps.map((s, i) => {
      const ev = events[i]!;
      const head: LockfileOp[] =
        ev.seq > this.#auditSeq ? [{ op: 'auditHead.set', head: { seq: ev.seq, hash: ev.hash } }] : [];
      this.#auditSeq = Math.max(this.#auditSeq, ev.seq);
      return { ops: [...s.ops, ...head], ...(s.marks ? { marks: s.marks } : {}) };
    });
    const results = await this.#log.appendBatches(batches);
    this.#options.afterWrite?.();
    return results.map((result, i) => ({ event: events[i]!, result }));
  }
}
