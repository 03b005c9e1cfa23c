// The apply journal (`<state>/<host>.journal.json`): which resources of the running apply are done or failed,
// rewritten atomically after every resource. It exists only while an apply runs: `finish()` deletes it, so a journal
// found at the start of the next apply means that apply was interrupted, and its `completed` list says what need not
// be redone when the same plan is applied again (NixOS switch-to-configuration's recorded list).

import { unlinkSync } from 'node:fs';
import path from 'node:path';
import { AgentvmError } from '../diagnostics/index.js';
import type { Address } from '../engine/types.js';
import { errnoCode, fsyncDirectory, readJsonFile, writeFileAtomic } from './atomic-file.js';

export interface JournalFailure {
  address: Address;
  /** A diagnostic summary (never a secret value). */
  message: string;
}

export interface JournalRecord {
  applyId: string;
  /** Digest of the plan being applied: a resume is only valid for the same plan. */
  planDigest: string;
  startedAt: string;
  pid: number;
  /** Addresses applied successfully, in completion order. */
  completed: Address[];
  failed: JournalFailure[];
  /** applyId of the interrupted apply this one resumed, if any. */
  resumedFrom?: string;
}

export interface JournalStart {
  applyId: string;
  planDigest: string;
  /** Resume an interrupted apply of the same plan: its completed addresses carry over. */
  resume?: JournalRecord;
}

/** A running apply's journal. Every mark is durable before it returns. */
export class ApplyJournal {
  readonly file: string;
  #record: JournalRecord;
  readonly #done: Set<Address>;
  #finished = false;

  /** @internal use beginJournal */
  constructor(file: string, record: JournalRecord) {
    this.file = file;
    this.#record = record;
    this.#done = new Set(record.completed);
  }

  get record(): JournalRecord {
    return structuredClone(this.#record);
  }

  isDone(address: Address): boolean {
    return this.#done.has(address);
  }

  markDone(address: Address): void {
    const already = this.#done.has(address);
    this.#update((r) => ({
      ...r,
      completed: already ? r.completed : [...r.completed, address],
      failed: r.failed.filter((f) => f.address !== address),
    }));
    this.#done.add(address);
  }

  markFailed(address: Address, message: string): void {
    this.#update((r) => ({ ...r, failed: [...r.failed.filter((f) => f.address !== address), { address, message }] }));
  }

  /** The apply ended (with or without failures, which the lockfile and audit log record): the journal goes away. */
  finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    removeJournal(this.file);
  }

  #update(change: (r: JournalRecord) => JournalRecord): void {
    if (this.#finished) throw new AgentvmError('state.journal-finished', `The journal of apply ${this.#record.applyId} was already finished.`, { source: 'toolkit' });
    const next = change(this.#record);
    writeFileAtomic(this.file, serializeJournal(next));
    this.#record = next;
  }
}

/** Starts (or resumes) the journal of an apply, replacing any previous journal: the caller has read it first. */
export function beginJournal(file: string, start: JournalStart, now: Date = new Date()): ApplyJournal {
  if (start.resume && start.resume.planDigest !== start.planDigest) {
    throw new AgentvmError('state.journal-plan-mismatch', `Apply ${start.resume.applyId} was interrupted while applying another plan; it cannot be resumed with this one.`, {
      detail: 'Start a fresh apply without resuming: `agentvm plan` shows what the interrupted apply left to do.',
      source: 'toolkit',
    });
  }
  const record: JournalRecord = {
    applyId: start.applyId,
    planDigest: start.planDigest,
    startedAt: now.toISOString(),
    pid: process.pid,
    completed: start.resume ? [...start.resume.completed] : [],
    failed: [],
    ...(start.resume ? { resumedFrom: start.resume.applyId } : {}),
  };
  writeFileAtomic(file, serializeJournal(record));
  return new ApplyJournal(file, record);
}

/** The journal left by an interrupted apply, or null when the last apply finished. */
export function readJournal(file: string): JournalRecord | null {
  let value: unknown;
  try {
    value = readJsonFile(file);
  } catch (error) {
    throw corruptJournal(file, 'it is not valid JSON', error);
  }
  if (value === undefined) return null;
  const problem = journalProblem(value);
  if (problem) throw corruptJournal(file, problem);
  return value as JournalRecord;
}

export function removeJournal(file: string): void {
  try {
    unlinkSync(file);
  } catch (error) {
    if (errnoCode(error) !== 'ENOENT') throw error;
    return;
  }
  fsyncDirectory(path.dirname(file));
}

function serializeJournal(record: JournalRecord): string {
  return `${JSON.stringify(record, null, 2)}\n`;
}

function journalProblem(value: unknown): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'it is not an object';
  const r = value as Record<string, unknown>;
  for (const k of ['applyId', 'planDigest', 'startedAt'] as const) if (typeof r[k] !== 'string') return `\`${k}\` is not a string`;
  if (typeof r.pid !== 'number') return '`pid` is not a number';
  if (!Array.isArray(r.completed) || !r.completed.every((a) => typeof a === 'string')) return '`completed` is not a list of addresses';
  if (!Array.isArray(r.failed) || !r.failed.every((f) => typeof f === 'object' && f !== null && typeof (f as JournalFailure).address === 'string' && typeof (f as JournalFailure).message === 'string')) {
    return '`failed` is not a list of {address, message}';
  }
  if (r.resumedFrom !== undefined && typeof r.resumedFrom !== 'string') return '`resumedFrom` is not a string';
  return null;
}

function corruptJournal(file: string, reason: string, cause?: unknown): AgentvmError {
  return new AgentvmError('state.journal-corrupt', `The apply journal ${file} is corrupt: ${reason}.`, {
    detail: 'An apply was interrupted and its progress record is unreadable. Remove the file and run `agentvm plan`: it shows what is left to do from the lockfile and the host.',
    cause,
  });
}
