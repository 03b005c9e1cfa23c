// The write-ahead log of an apply (`<state>/<host>.wal.jsonl`, ADR 0005): its file format, its reading and its replay
// onto the lockfile. The writer is ApplyLog (apply-log.ts); nothing else writes this file.
// Format: JSON Lines. Line 1 is the WalHeader (written atomically with the file); every further line is one WalBatch,
// appended with ONE write(2) on an O_APPEND descriptor and fdatasynced before the append is acknowledged.
// Invariants:
// - The batches apply on top of the lockfile of `lineage` at serial `baseSerial`; batch k (1-based `seq`) makes the
//   logical serial baseSerial + k. The lockfile itself is only rewritten at a checkpoint, which writes serial
//   baseSerial + (batches) and then replaces or deletes the WAL. So a lockfile at serial >= baseSerial + batches (and
//   > baseSerial) already holds every batch: the WAL was checkpointed and is only kept as the record of its apply.
// - Only the last line can be cut short (a kill or power loss during an append): it was never acknowledged and is
//   ignored. Anything wrong before the last line is corruption (`state.corrupt`), never silently skipped.
// - Replaying a WAL gives exactly the lockfile its writer had in memory: the writer applies the very ops it parsed
//   back from the line it wrote (apply-log.ts).

import { AgentvmError } from '../diagnostics/index.js';
import type { Address } from '../model/resources.js';
import {
  applyOpsToDraft,
  lockfileDraft,
  lockfileOpProblem,
  LOCKFILE_FORMAT_VERSION,
  type Lockfile,
  type LockfileOp,
  type LockfileSource,
} from './lockfile.js';

export const WAL_FORMAT_VERSION = 1;

export interface JournalFailure {
  address: Address;
  /** A diagnostic summary (never a secret value). */
  message: string;
}

/** What an apply did, as its WAL records it: how `agentvm` reports (and resumes) an interrupted apply. */
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

export interface WalHeader {
  wal: typeof WAL_FORMAT_VERSION;
  lineage: string;
  /** Serial of the lockfile the batches apply on top of (0: no lockfile file yet). */
  baseSerial: number;
  applyId: string;
  planDigest: string;
  startedAt: string;
  pid: number;
  resumedFrom?: string;
  /** Addresses this apply (or the one it resumed) completed before the last checkpoint. */
  done?: Address[];
  /** Failures recorded before the last checkpoint. */
  failed?: JournalFailure[];
}

export interface WalBatch {
  /** 1-based position in this WAL file. */
  seq: number;
  /** When it was written; becomes the lockfile's `updatedAt`. */
  at: string;
  ops: LockfileOp[];
  /** The resource this batch completed. */
  done?: Address;
  /** The resource this batch records as failed. */
  failed?: JournalFailure;
}

export interface WalContents {
  file: string;
  header: WalHeader;
  /** The acknowledged batches, in order. */
  batches: WalBatch[];
  /** True when a last line cut short by a crash was ignored. */
  tornTail: boolean;
}

export function serializeWalLine(value: WalHeader | WalBatch): string {
  return `${JSON.stringify(value)}\n`;
}

/** Parses a WAL file's text. Throws `state.corrupt` for anything but a torn last line. */
export function parseWal(text: string, file: string): WalContents {
  const lines = text.split('\n');
  // After the last '\n' comes either nothing or a line cut short.
  const tail = lines.pop() ?? '';
  let tornTail = tail.length > 0;
  const headerLine = lines[0];
  if (headerLine === undefined) throw corruptWal(file, 'it has no header line', 0);
  const header = parseHeader(headerLine);
  if (typeof header === 'string') throw corruptWal(file, `line 1 (the header) is invalid: ${header}`, 0);
  const batches: WalBatch[] = [];
  for (let i = 1; i < lines.length; i++) {
    const batch = parseBatch(lines[i] ?? '', batches.length + 1);
    if (typeof batch === 'string') {
      if (i === lines.length - 1 && !tornTail) {
        // The last line: written whole or not at all as far as the writer knows, never acknowledged if invalid.
        tornTail = true;
        break;
      }
      throw corruptWal(file, `line ${i + 1} is invalid (${batch}), and lines follow it`, i, header);
    }
    batches.push(batch);
  }
  return { file, header, batches, tornTail };
}

function parseJson(line: string): unknown {
  try {
    return JSON.parse(line) as unknown;
  } catch {
    return undefined;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const HEADER_KEYS = new Set([
  'wal',
  'lineage',
  'baseSerial',
  'applyId',
  'planDigest',
  'startedAt',
  'pid',
  'resumedFrom',
  'done',
  'failed',
]);
const BATCH_KEYS = new Set(['seq', 'at', 'ops', 'done', 'failed']);

function failureProblem(v: unknown): string | null {
  return isObject(v) && typeof v.address === 'string' && typeof v.message === 'string' && Object.keys(v).length === 2
    ? null
    : 'is not {address, message}';
}

function parseHeader(line: string): WalHeader | string {
  const h = parseJson(line);
  if (!isObject(h)) return 'not a JSON object';
  if (h.wal !== WAL_FORMAT_VERSION) return `format ${JSON.stringify(h.wal)} is not ${WAL_FORMAT_VERSION}`;
  for (const key of Object.keys(h)) if (!HEADER_KEYS.has(key)) return `unexpected field \`${key}\``;
  for (const k of ['lineage', 'applyId', 'planDigest', 'startedAt'] as const)
    if (typeof h[k] !== 'string') return `\`${k}\` is not a string`;
  if (!Number.isSafeInteger(h.baseSerial) || (h.baseSerial as number) < 0) return '`baseSerial` is not a serial';
  if (!Number.isSafeInteger(h.pid)) return '`pid` is not a number';
  if (h.resumedFrom !== undefined && typeof h.resumedFrom !== 'string') return '`resumedFrom` is not a string';
  if (h.done !== undefined && !(Array.isArray(h.done) && h.done.every((a) => typeof a === 'string')))
    return '`done` is not a list of addresses';
  if (h.failed !== undefined && !(Array.isArray(h.failed) && h.failed.every((f) => failureProblem(f) === null)))
    return '`failed` is not a list of {address, message}';
  return h as unknown as WalHeader;
}

function parseBatch(line: string, seq: number): WalBatch | string {
  const b = parseJson(line);
  if (!isObject(b)) return 'not a JSON object';
  for (const key of Object.keys(b)) if (!BATCH_KEYS.has(key)) return `unexpected field \`${key}\``;
  if (b.seq !== seq) return `seq ${JSON.stringify(b.seq)} where ${seq} was expected`;
  if (typeof b.at !== 'string' || Number.isNaN(Date.parse(b.at))) return '`at` is not a time';
  if (!Array.isArray(b.ops)) return '`ops` is not a list';
  for (const op of b.ops) {
    const problem = lockfileOpProblem(op);
    if (problem) return problem;
  }
  if (b.done !== undefined && typeof b.done !== 'string') return '`done` is not an address';
  if (b.failed !== undefined && failureProblem(b.failed)) return `\`failed\` ${failureProblem(b.failed)}`;
  return b as unknown as WalBatch;
}

/** Whether the WAL's batches still have to be replayed onto `lock`, or are already in it. Throws `state.corrupt`. */
export function walStatus(lock: Lockfile | null, wal: WalContents, source: LockfileSource): 'replay' | 'checkpointed' {
  const { header, batches } = wal;
  const mismatch = (what: string) => corruptWalBase(wal, source, what);
  if (!lock) {
    if (header.baseSerial === 0) return 'replay';
    throw mismatch(`it continues serial ${header.baseSerial}, but there is no lockfile`);
  }
  if (lock.lineage !== header.lineage)
    throw mismatch(`it belongs to lineage ${header.lineage}, but the lockfile has lineage ${lock.lineage}`);
  if (lock.serial === header.baseSerial) return 'replay';
  if (lock.serial > header.baseSerial && lock.serial >= header.baseSerial + batches.length) return 'checkpointed';
  throw mismatch(
    lock.serial < header.baseSerial
      ? `it continues serial ${header.baseSerial}, but the lockfile is at the older serial ${lock.serial}`
      : `the lockfile is at serial ${lock.serial}, between the WAL's base ${header.baseSerial} and its last batch ${header.baseSerial + batches.length}`,
  );
}

/** The lockfile with the WAL's batches applied (serial = baseSerial + batches). `lock` is null when no file exists yet. */
export function replayWal(lock: Lockfile | null, wal: WalContents, host: string): Lockfile {
  const draft: Lockfile = lock
    ? lockfileDraft(lock)
    : {
        formatVersion: LOCKFILE_FORMAT_VERSION,
        lineage: wal.header.lineage,
        serial: 0,
        host,
        commit: null,
        updatedAt: wal.header.startedAt,
        resources: {},
        workloads: {},
      };
  for (const batch of wal.batches) {
    applyOpsToDraft(draft, batch.ops);
    draft.updatedAt = batch.at;
  }
  draft.serial = wal.header.baseSerial + wal.batches.length;
  return draft;
}

/** The apply a WAL records: its done and failed addresses (a later success clears a failure). */
export function journalOf(wal: WalContents): JournalRecord {
  const { header } = wal;
  const completed = new Set<Address>(header.done ?? []);
  const failed = new Map<Address, JournalFailure>((header.failed ?? []).map((f) => [f.address, f]));
  for (const batch of wal.batches) {
    if (batch.failed) failed.set(batch.failed.address, batch.failed);
    if (batch.done !== undefined) {
      failed.delete(batch.done);
      completed.add(batch.done);
    }
  }
  return {
    applyId: header.applyId,
    planDigest: header.planDigest,
    startedAt: header.startedAt,
    pid: header.pid,
    completed: [...completed],
    failed: [...failed.values()],
    ...(header.resumedFrom !== undefined ? { resumedFrom: header.resumedFrom } : {}),
  };
}

function corruptWal(file: string, reason: string, validLines: number, header?: WalHeader): AgentvmError {
  const keep =
    validLines > 0
      ? `The first ${validLines} line(s) are intact: to keep the writes they record, cut the file after them ` +
        `(\`head -n ${validLines} ${file} > ${file}.kept && mv ${file}.kept ${file}\`); or `
      : 'Either restore it from a copy, or ';
  return new AgentvmError('state.corrupt', `The write-ahead log ${file} is corrupt: ${reason}.`, {
    detail:
      `It records the lockfile writes of an interrupted apply${header ? ` (${header.applyId}, on top of serial ${header.baseSerial})` : ''}. ` +
      `${keep}remove it (\`rm ${file}\`) and run \`agentvm plan\`: resources that apply changed show up as changes or ` +
      'drift and the next apply records them again. Do not hand-edit the log.',
  });
}

function corruptWalBase(wal: WalContents, source: LockfileSource, what: string): AgentvmError {
  return new AgentvmError(
    'state.corrupt',
    `The write-ahead log ${wal.file} does not belong to the lockfile ${source.file}: ${what}.`,
    {
      detail:
        `The lockfile was replaced, restored or removed while apply ${wal.header.applyId} was interrupted. If the lockfile is the ` +
        `version to keep, remove the log (\`rm ${wal.file}\`) and run \`agentvm plan\`: what that apply changed shows up as ` +
        `changes or drift. To keep the log instead, restore the lockfile it continues (lineage ${wal.header.lineage}, serial ` +
        `${wal.header.baseSerial}; \`${source.backup}\` may hold it).`,
    },
  );
}
