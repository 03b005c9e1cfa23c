// The audit log: append-only JSONL (`<audit>/audit.jsonl`), one AuditEvent per line (schemas/audit-event.schema.json),
// hash-chained so that `agentvm audit verify` detects any edit, deletion, reordering or torn line, and — given the
// head recorded in a lockfile — truncation.
// Invariants:
// - hash = sha256(prevHash + canonicalJson(record without `hash`)); the first record's prevHash is 64 zeros; seq
//   starts at 1 and grows by one.
// - A record is written with ONE write(2) on an O_APPEND descriptor, then fsynced; appends from several processes are
//   serialised by a short lease (`audit.jsonl.lock`) so that two writers never chain onto the same predecessor.
// - Nothing but the typed fields of AuditEntry reaches the file: the writer copies them one by one, so a caller cannot
//   smuggle a secret value (or anything else) in through an extra property.

import { createHash } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';
import { AgentvmError, errorDiag, type Diagnostic } from '../diagnostics/index.js';
import { canonicalJson, type Action } from '../model/index.js';
import { currentActor } from '../support/actor.js';
import type { AuditEvent, GateAccess, Version } from '../generated/audit-event.js';
import type { AuditHead } from '../generated/lockfile.js';
import { errnoCode, fsyncDirectory, storageError, threadPoolSync, type DurableSync } from './atomic-file.js';
import { acquireLeaseLock, describeHolder, LeaseHeldError, sleepSync, type LeaseLock } from './lease-lock.js';
import { firstIssue, stateValidator } from './state-schemas.js';

export type { AuditEvent, AuditHead, GateAccess };
export type AuditResult = AuditEvent['result'];

export const AUDIT_FILE_NAME = 'audit.jsonl';
export const GENESIS_HASH = '0'.repeat(64);
const DETAIL_MAX = 2000;
const APPEND_LOCK_WAIT_MS = 10_000;
const TAIL_CHUNK = 64 * 1024;
const APPEND_TAIL_CHUNK = 8 * 1024;

/** What a caller may say about an action. Typed fields only: there is no free-form bag. */
export interface AuditEntry {
  host: string;
  /** The command acting, e.g. `apply`, `state unlock`. */
  operation: string;
  /** What happened, e.g. `apply.start`, `resource.apply`, `apply.finish`, `lease.takeover`, `state.unlock`. */
  event: string;
  result: AuditResult;
  address?: string;
  action?: Action;
  before?: { identity?: string; digest?: string };
  after?: { identity?: string; digest?: string };
  /** A human sentence such as a diagnostic summary. Never a secret value. Cut at 2,000 characters. */
  detail?: string;
  applyId?: string;
  /** Preview gate facts (gate.* events). Never a token or a session id: the gate hashes both and logs neither. */
  gate?: GateAccess;
  /** Defaults to `user@hostname` of this process. */
  actor?: string;
  /** Defaults to now. */
  time?: Date;
}

/** Appends one record and returns it (its `seq` and `hash` are the new head, for the lockfile's `auditHead`). */
export function appendAudit(file: string, entry: AuditEntry): AuditEvent {
  const [record] = appendAuditBatch(file, [entry]);
  if (!record) throw new Error('appendAuditBatch returned no record for one entry');
  return record;
}

/**
 * Appends several records under one lock, with one write(2) and one fsync (group commit: the preview gate logs every
 * request, and a lock plus an fsync per request would cap it at the disk's sync rate). The records chain in order;
 * all are validated before any is written, so either all reach the file or none does. The fsync blocks the event
 * loop: for a process that has other work in flight (apply), use appendAuditBatchDurable.
 */
export function appendAuditBatch(
  file: string,
  entries: readonly AuditEntry[],
  options: { lockWaitMs?: number } = {},
): AuditEvent[] {
  const append = prepareAppend(file, entries, options.lockWaitMs ?? APPEND_LOCK_WAIT_MS);
  if (!append) return [];
  try {
    try {
      writeWhole(append);
      fsyncSync(append.fd);
    } catch (error) {
      undoAppend(append, error);
    }
    return append.records.slice(append.ownFrom);
  } finally {
    closeAppend(append);
  }
}

/** Appends of this process through appendAuditBatchDurable, per file: each waits for the one before it. */
const durableAppends = new Map<string, Promise<unknown>>();

/**
 * appendAuditBatch with the fsync on the thread pool (`sync`), so the event loop runs on while the disk syncs; the
 * records are returned only once that sync resolved. Appends of one process to one file queue here (in call order)
 * rather than on the cross-process lock: the lock is held across the sync, and a second appender of the same
 * process spinning on it would block the event loop that has to see the sync finish.
 */
export function appendAuditBatchDurable(
  file: string,
  entries: readonly AuditEntry[],
  options: { lockWaitMs?: number; sync?: DurableSync } = {},
): Promise<AuditEvent[]> {
  const key = path.resolve(file);
  const run = async (): Promise<AuditEvent[]> => {
    const append = prepareAppend(file, entries, options.lockWaitMs ?? APPEND_LOCK_WAIT_MS);
    if (!append) return [];
    try {
      try {
        writeWhole(append);
        await (options.sync ?? threadPoolSync).fsync(append.fd);
      } catch (error) {
        undoAppend(append, error);
      }
      return append.records.slice(append.ownFrom);
    } finally {
      closeAppend(append);
    }
  };
  const next = (durableAppends.get(key) ?? Promise.resolve()).then(run, run);
  const settled = next.catch(() => undefined);
  durableAppends.set(key, settled);
  void settled.then(() => {
    if (durableAppends.get(key) === settled) durableAppends.delete(key);
  });
  return next;
}

/** An append under way: the lock held, the file open at `size`, the records sealed and their bytes. */
interface PreparedAppend {
  file: string;
  lock: LeaseLock;
  fd: number;
  /** The file's size before this append's bytes: a failed write is cut back to it. */
  size: number;
  created: boolean;
  records: AuditEvent[];
  /** Where the caller's records start in `records` (a repair and a takeover record may come first). */
  ownFrom: number;
  bytes: Buffer;
}

/**
 * Takes the append lock, opens the file, repairs a torn tail and seals the records onto the chain's head: everything
 * of an append but its write and sync. Null when there is nothing to append. On a throw, nothing is held.
 */
function prepareAppend(file: string, entries: readonly AuditEntry[], lockWaitMs: number): PreparedAppend | null {
  const first = entries[0];
  if (!first) return null;
  try {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o750 });
  } catch (error) {
    throw storageError(error, file, 'No audit record was written, and nothing was changed.');
  }
  const lock = acquireAppendLock(file, first.host, lockWaitMs);
  let fd: number | undefined;
  let created = false;
  try {
    try {
      fd = openSync(file, 'a+', 0o640);
    } catch (error) {
      throw storageError(error, file, 'No audit record was written, and nothing was changed.');
    }
    let size = fstatSync(fd).size;
    created = size === 0;
    let tail = lastRecord(fd, size);
    // A torn last line (a write cut short by a crash or a full disk: agentvm writes whole lines only) is cut back to
    // the last complete record, and the cut is itself recorded in the chain — with the removed bytes' length and
    // hash — so the log verifies again and the evidence stays.
    const repair: AuditEntry[] = [];
    if (!tail.endsWithNewline) {
      const torn = tornTail(fd, size);
      ftruncateSync(fd, torn.offset);
      fsyncSync(fd);
      size = torn.offset;
      tail = lastRecord(fd, size);
      repair.push({
        host: first.host,
        operation: 'audit-append',
        event: 'audit.torn-tail-removed',
        result: 'ok',
        detail: `removed ${torn.length} byte(s) of a record cut short at byte ${torn.offset} (sha256 ${torn.sha256}); it was never acknowledged`,
      });
    }
    // A takeover of the append lock (its holder died mid-append) is an action of its own: recorded in the same write.
    const takeover: AuditEntry[] = lock.tookOver
      ? [
          {
            host: first.host,
            operation: 'audit-append',
            event: 'lease.takeover',
            result: 'ok',
            detail: `took over the audit append lock ${lock.tookOver.id} of ${describeHolder(lock.tookOver)}, whose holder is gone`,
          },
        ]
      : [];
    const records = sealRecords([...repair, ...takeover, ...entries], tail.head);
    const bytes = Buffer.from(records.map((r) => `${JSON.stringify(r)}\n`).join(''), 'utf8');
    return { file, lock, fd, size, created, records, ownFrom: repair.length + takeover.length, bytes };
  } catch (error) {
    if (fd !== undefined) closeAppend({ file, lock, fd, created } as PreparedAppend);
    else lock.release();
    throw error;
  }
}

/** The records of `entries` chained onto `head`, each hashed and checked against the schema before any is written. */
function sealRecords(entries: readonly AuditEntry[], head: AuditHead | null): AuditEvent[] {
  const records: AuditEvent[] = [];
  for (const entry of entries) {
    const unsigned = buildRecord(entry, head);
    const hash = createHash('sha256').update(unsigned.prevHash).update(canonicalRecordJson(unsigned)).digest('hex');
    const record = unsigned as AuditEvent;
    record.hash = hash;
    const problem = auditRecordProblem(record);
    if (problem) {
      throw new AgentvmError('audit.invalid-entry', `Refusing to write an invalid audit record (${problem}).`, {
        source: 'toolkit',
      });
    }
    records.push(record);
    head = { seq: record.seq, hash: record.hash };
  }
  return records;
}

/** One write(2) of the whole batch (looping only on a short write). */
function writeWhole(append: PreparedAppend): void {
  let written = 0;
  while (written < append.bytes.length)
    written += writeSync(append.fd, append.bytes, written, append.bytes.length - written);
}

/** Whole or not at all: a write or sync that failed is cut back off now (if even that fails, the next append does it). */
function undoAppend(append: PreparedAppend, error: unknown): never {
  try {
    ftruncateSync(append.fd, append.size);
    fsyncSync(append.fd);
  } catch {
    // the torn tail stays until the next append repairs it
  }
  throw storageError(error, append.file, 'No audit record was written, and nothing was changed by this step.');
}

function closeAppend(append: PreparedAppend): void {
  try {
    closeSync(append.fd);
    if (append.created) fsyncDirectory(path.dirname(append.file));
  } finally {
    append.lock.release();
  }
}

// The write-side check of a record against schemas/audit-event.schema.json, by hand: the generic validator (zod, built
// from the schema) costs ≈10 µs a record and ≈100 ms to load, and the preview gate writes a record per request. It
// may be stricter than the schema, never looser: `audit verify` reads every record back with the schema's validator,
// and src/state/audit-batch.test.ts checks that both agree on valid records and on each kind of invalid one.
const HOST_NAME = /^[a-z][a-z0-9-]{0,62}$/;
const EVENT_NAME = /^[a-z][a-z0-9-]*(\.[a-z0-9-]+)*$/;
const HEX_HASH = /^[0-9a-f]{64}$/;
const PREVIEW_KEY = /^[a-z][a-z0-9-]{0,62}\/[a-z][a-z0-9-]{0,62}$/;
const GRANT_ID = /^g-[0-9a-f]{16}$/;
const DATE_TIME =
  /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$/;
const ACTIONS: ReadonlySet<unknown> = new Set(['create', 'update', 'replace', 'delete', 'noop']);
const RESULTS: ReadonlySet<unknown> = new Set(['ok', 'failed', 'skipped', 'started']);
/** A record's fields in the order agentvm writes them (serializeAuditRecord): also the only fields it may have. */
const FIELD_ORDER: ReadonlyArray<keyof AuditEvent> = [
  'seq',
  'time',
  'actor',
  'host',
  'operation',
  'event',
  'address',
  'action',
  'result',
  'before',
  'after',
  'detail',
  'applyId',
  'gate',
  'prevHash',
  'hash',
];
/** The gate fields, in the order they are written. */
const GATE_FIELD_ORDER: ReadonlyArray<keyof GateAccess> = [
  'preview',
  'grantId',
  'identity',
  'source',
  'method',
  'path',
  'status',
  'reason',
  'expires',
];
const RECORD_KEYS: ReadonlySet<string> = new Set(FIELD_ORDER);
const GATE_KEYS: ReadonlySet<string> = new Set(GATE_FIELD_ORDER);

const text = (v: unknown, min: number, max: number): boolean =>
  typeof v === 'string' && v.length >= min && v.length <= max;
const optionalText = (v: unknown, max: number, pattern?: RegExp): boolean =>
  v === undefined || (typeof v === 'string' && v.length <= max && (!pattern || pattern.test(v)));

/** What is wrong with a record as schemas/audit-event.schema.json sees it (`$.field: why`), or undefined when valid. */
export function auditRecordProblem(record: AuditEvent): string | undefined {
  const r = record as unknown as Record<string, unknown>;
  for (const k of Object.keys(r)) if (!RECORD_KEYS.has(k)) return `$.${k}: unknown field`;
  if (typeof r.seq !== 'number' || !Number.isInteger(r.seq) || r.seq < 1) return '$.seq: not an integer ≥ 1';
  if (typeof r.time !== 'string' || !DATE_TIME.test(r.time)) return '$.time: not a date-time';
  if (!text(r.actor, 1, 200)) return '$.actor: not 1–200 characters';
  if (typeof r.host !== 'string' || !HOST_NAME.test(r.host)) return '$.host: not a host name';
  if (!text(r.operation, 1, 100)) return '$.operation: not 1–100 characters';
  if (typeof r.event !== 'string' || !EVENT_NAME.test(r.event)) return '$.event: not an event name';
  if (r.address !== undefined && !text(r.address, 1, 300)) return '$.address: not 1–300 characters';
  if (r.action !== undefined && !ACTIONS.has(r.action)) return '$.action: not an action';
  if (!RESULTS.has(r.result)) return '$.result: not a result';
  for (const k of ['before', 'after'] as const) {
    const v = r[k];
    if (v === undefined) continue;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return `$.${k}: not an object`;
    for (const [vk, vv] of Object.entries(v))
      if ((vk !== 'identity' && vk !== 'digest') || typeof vv !== 'string') return `$.${k}.${vk}: not allowed`;
  }
  if (!optionalText(r.detail, 2000)) return '$.detail: over 2,000 characters';
  if (r.applyId !== undefined && !text(r.applyId, 1, 100)) return '$.applyId: not 1–100 characters';
  if (r.gate !== undefined) {
    const g = r.gate as Record<string, unknown>;
    if (typeof g !== 'object' || g === null || Array.isArray(g)) return '$.gate: not an object';
    for (const k of Object.keys(g)) if (!GATE_KEYS.has(k)) return `$.gate.${k}: unknown field`;
    if (typeof g.preview !== 'string' || !PREVIEW_KEY.test(g.preview))
      return '$.gate.preview: not <workload>/<preview>';
    if (!optionalText(g.grantId, 18, GRANT_ID)) return '$.gate.grantId: not a grant id';
    if (!optionalText(g.identity, 320)) return '$.gate.identity: over 320 characters';
    if (!optionalText(g.source, 100)) return '$.gate.source: over 100 characters';
    if (!optionalText(g.method, 20)) return '$.gate.method: over 20 characters';
    if (!optionalText(g.path, 2000)) return '$.gate.path: over 2,000 characters';
    if (
      g.status !== undefined &&
      (typeof g.status !== 'number' || !Number.isInteger(g.status) || g.status < 100 || g.status > 599)
    )
      return '$.gate.status: not an HTTP status';
    if (!optionalText(g.reason, 500)) return '$.gate.reason: over 500 characters';
    if (!optionalText(g.expires, 100, DATE_TIME)) return '$.gate.expires: not a date-time';
  }
  if (typeof r.prevHash !== 'string' || !HEX_HASH.test(r.prevHash)) return '$.prevHash: not a sha256 hex';
  if (typeof r.hash !== 'string' || !HEX_HASH.test(r.hash)) return '$.hash: not a sha256 hex';
  return undefined;
}

/** Waits up to `waitMs` for another writer's lock (0: one attempt, a LeaseHeldError if it is held). */
function acquireAppendLock(file: string, host: string, waitMs: number): LeaseLock {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      return acquireLeaseLock(`${file}.lock`, host, 'audit-append', { leaseMs: 30_000, renew: false, durable: false });
    } catch (error) {
      if (!(error instanceof LeaseHeldError) || Date.now() >= deadline) throw error;
      sleepSync(1 + Math.floor(Math.random() * 4));
    }
  }
}

/**
 * The record for `entry`, without its hash. Its own keys (and those of `gate`, `before`, `after`) are inserted in the
 * order serializeAuditRecord writes them, so JSON.stringify of the record with its hash added IS the line agentvm
 * writes — the append path relies on that (no reordering copy per record); audit-batch.test.ts holds it to it.
 */
export function buildRecord(entry: AuditEntry, prev: AuditHead | null): Omit<AuditEvent, 'hash'> {
  const record: Record<string, unknown> = {
    seq: prev ? prev.seq + 1 : 1,
    time: (entry.time ?? new Date()).toISOString(),
    actor: entry.actor ?? currentActor(),
    host: entry.host,
    operation: entry.operation,
    event: entry.event,
  };
  if (entry.address !== undefined) record.address = entry.address;
  if (entry.action !== undefined) record.action = entry.action;
  record.result = entry.result;
  const before = version(entry.before);
  if (before) record.before = before;
  const after = version(entry.after);
  if (after) record.after = after;
  if (entry.detail !== undefined)
    record.detail = entry.detail.length > DETAIL_MAX ? `${entry.detail.slice(0, DETAIL_MAX - 1)}…` : entry.detail;
  if (entry.applyId !== undefined) record.applyId = entry.applyId;
  const gate = gateAccess(entry.gate);
  if (gate) record.gate = gate;
  record.prevHash = prev ? prev.hash : GENESIS_HASH;
  return record as unknown as Omit<AuditEvent, 'hash'>;
}

// The same fields sorted as canonicalJson sorts keys (the record is hashed without its `hash`).
const SORTED_RECORD_KEYS = FIELD_ORDER.filter((k) => k !== 'hash').sort();
const SORTED_GATE_KEYS = [...GATE_FIELD_ORDER].sort();

/**
 * canonicalJson of a record that buildRecord made, by one JSON.stringify of a copy whose keys are inserted sorted (the
 * generic canonicalJson sorts and recurses per key: the largest cost of a gate request's record). Equal to
 * canonicalJson(record) for every such record — strings, integers and the three nested objects, nothing else.
 */
function canonicalRecordJson(record: Omit<AuditEvent, 'hash'>): string {
  const r = record as unknown as Record<string, unknown>;
  const sorted: Record<string, unknown> = {};
  for (const k of SORTED_RECORD_KEYS) {
    const v = r[k];
    if (v === undefined) continue;
    if (k === 'gate') {
      const g = v as Record<string, unknown>;
      const sg: Record<string, unknown> = {};
      for (const gk of SORTED_GATE_KEYS) if (g[gk] !== undefined) sg[gk] = g[gk];
      sorted[k] = sg;
    } else if (k === 'before' || k === 'after') {
      const ver = v as Version;
      sorted[k] =
        ver.digest !== undefined && ver.identity !== undefined ? { digest: ver.digest, identity: ver.identity } : ver;
    } else {
      sorted[k] = v;
    }
  }
  return JSON.stringify(sorted);
}

/** Copies the typed gate fields one by one, in a fixed order (the order they are serialised in). */
function gateAccess(g: GateAccess | undefined): GateAccess | undefined {
  if (!g) return undefined;
  const out: Record<string, unknown> = {};
  for (const k of GATE_FIELD_ORDER) if (g[k] !== undefined) out[k] = g[k];
  return out as unknown as GateAccess;
}

function version(v: { identity?: string; digest?: string } | undefined): Version | undefined {
  if (!v) return undefined;
  const out: Version = {};
  if (v.identity !== undefined) out.identity = v.identity;
  if (v.digest !== undefined) out.digest = v.digest;
  return Object.keys(out).length ? out : undefined;
}

/** The bytes that are hashed: JSON with object keys sorted at every level and no whitespace. */
export { canonicalJson };

/** sha256(prevHash + canonical JSON of the record without `hash`), lowercase hex. */
export function auditHash(record: Omit<AuditEvent, 'hash'> | AuditEvent): string {
  const { hash: _ignored, ...rest } = record as AuditEvent;
  return createHash('sha256').update(rest.prevHash).update(canonicalJson(rest)).digest('hex');
}

/** The exact line agentvm writes for a record (no newline): fields in a fixed, readable order. */
export function serializeAuditRecord(record: AuditEvent): string {
  const ordered: Record<string, unknown> = {};
  for (const k of FIELD_ORDER) {
    const v = record[k];
    if (v === undefined) continue;
    ordered[k] =
      k === 'before' || k === 'after' ? version(v as Version) : k === 'gate' ? gateAccess(v as GateAccess) : v;
  }
  return JSON.stringify(ordered);
}

// ---------------------------------------------------------------------------------------------------------------------
// Reading from the end

/**
 * Complete lines of the file from the last to the first, read backwards in 64 KiB chunks: finding the last record
 * costs one read however long the log is. Lines are split on the newline byte, so a chunk boundary inside a multibyte
 * character does no harm.
 */
function* linesFromEnd(fd: number, size: number, chunkSize = TAIL_CHUNK): Generator<Buffer> {
  let pos = size;
  let carry: Buffer = Buffer.alloc(0);
  while (pos > 0) {
    const start = Math.max(0, pos - chunkSize);
    const chunk = Buffer.alloc(pos - start);
    let got = 0;
    while (got < chunk.length) {
      const n = readSync(fd, chunk, got, chunk.length - got, start + got);
      if (n === 0) break;
      got += n;
    }
    pos = start;
    let buf = Buffer.concat([chunk.subarray(0, got), carry]);
    let nl = buf.lastIndexOf(0x0a);
    while (nl !== -1) {
      const line = buf.subarray(nl + 1);
      if (line.length) yield line;
      buf = buf.subarray(0, nl);
      nl = buf.lastIndexOf(0x0a);
    }
    carry = Buffer.from(buf);
  }
  if (carry.length) yield carry;
}

interface Tail {
  /** The last record that parses (seq and hash only are trusted here; verify checks the rest). */
  head: AuditHead | null;
  endsWithNewline: boolean;
}

function lastRecord(fd: number, size: number): Tail {
  let endsWithNewline = true;
  if (size > 0) {
    const last = Buffer.alloc(1);
    readSync(fd, last, 0, 1, size - 1);
    endsWithNewline = last[0] === 0x0a;
  }
  // A record is ≈0.4–5 KB: 8 KiB usually holds the last one, so each append (a group of gate requests) reads one small
  // chunk, not 64 KiB.
  for (const line of linesFromEnd(fd, size, APPEND_TAIL_CHUNK)) {
    const head = headOf(line.toString('utf8'));
    if (head) return { head, endsWithNewline };
  }
  return { head: null, endsWithNewline };
}

/** Where the torn last line (bytes after the last newline) starts, how long it is and its sha256. */
function tornTail(fd: number, size: number): { offset: number; length: number; sha256: string } {
  const hash = createHash('sha256');
  let pos = size;
  const chunk = Buffer.alloc(APPEND_TAIL_CHUNK);
  const parts: Buffer[] = [];
  while (pos > 0) {
    const start = Math.max(0, pos - chunk.length);
    const n = readSync(fd, chunk, 0, pos - start, start);
    const piece = chunk.subarray(0, n);
    const nl = piece.lastIndexOf(0x0a);
    if (nl !== -1) {
      parts.unshift(Buffer.from(piece.subarray(nl + 1)));
      pos = start + nl + 1;
      break;
    }
    parts.unshift(Buffer.from(piece));
    pos = start;
  }
  for (const p of parts) hash.update(p);
  return { offset: pos, length: size - pos, sha256: hash.digest('hex') };
}

function headOf(line: string): AuditHead | null {
  try {
    const v = JSON.parse(line) as { seq?: unknown; hash?: unknown };
    if (
      typeof v.seq === 'number' &&
      Number.isInteger(v.seq) &&
      v.seq >= 1 &&
      typeof v.hash === 'string' &&
      /^[0-9a-f]{64}$/.test(v.hash)
    ) {
      return { seq: v.seq, hash: v.hash };
    }
  } catch {
    // not a record: keep looking further back
  }
  return null;
}

/** The last `n` well-formed records, oldest first. Malformed lines are skipped here; `verifyAuditLog` reports them. */
export function tailAudit(file: string, n: number): AuditEvent[] {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return [];
    throw error;
  }
  try {
    const out: AuditEvent[] = [];
    if (n <= 0) return out;
    const validator = stateValidator('audit-event.schema.json');
    for (const line of linesFromEnd(fd, fstatSync(fd).size)) {
      let value: unknown;
      try {
        value = JSON.parse(line.toString('utf8'));
      } catch {
        continue;
      }
      if (!validator.safeParse(value).success) continue;
      out.push(value as AuditEvent);
      if (out.length >= n) break;
    }
    return out.reverse();
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Verification

/** A head recorded elsewhere (a lockfile's `auditHead`), with a label for messages, e.g. `lockfile of host web-1`. */
export interface ExpectedAuditHead extends AuditHead {
  label?: string;
}

export interface AuditVerification {
  /** No error diagnostics. */
  ok: boolean;
  /** Number of well-formed records read. */
  records: number;
  /** The last well-formed record's seq and hash, or null for an empty or missing log. */
  head: AuditHead | null;
  diagnostics: Diagnostic[];
}

/**
 * Reads the whole log (streaming) and checks every line: well-formed, hash matches content, seq follows, prevHash
 * chains, written exactly as agentvm writes it. With `expected` heads (from lockfiles), also detects a log that was
 * truncated before them or rewritten at them. One diagnostic per bad line, naming the line and the seq.
 */
export async function verifyAuditLog(
  file: string,
  expected?: AuditHead | readonly ExpectedAuditHead[],
): Promise<AuditVerification> {
  const heads: ExpectedAuditHead[] =
    expected === undefined ? [] : Array.isArray(expected) ? [...expected] : [expected as AuditHead];
  const name = path.basename(file);
  const validator = stateValidator('audit-event.schema.json');
  const diagnostics: Diagnostic[] = [];
  const seen = new Map<number, string>(heads.map((h) => [h.seq, '']));
  let prev: AuditHead | null = null;
  let records = 0;
  let lineNo = 0;

  const check = (raw: string): void => {
    lineNo++;
    const at = `${name} line ${lineNo}`;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      diagnostics.push(
        errorDiag('audit.invalid-line', `${at} is not a JSON record (a torn write or an edit).`, {
          detail:
            'A line that does not parse cannot be trusted; agentvm never writes one except when a write is cut short by a crash. Keep the file as evidence and compare it with your backups.',
        }),
      );
      return;
    }
    const parsed = validator.safeParse(value);
    if (!parsed.success) {
      const seq =
        typeof (value as { seq?: unknown })?.seq === 'number' ? ` (seq ${(value as { seq: number }).seq})` : '';
      diagnostics.push(
        errorDiag('audit.invalid-line', `${at}${seq} is not a valid audit record: ${firstIssue(parsed.error)}.`, {
          detail:
            'agentvm only writes records that match schemas/audit-event.schema.json: the line was edited or damaged.',
        }),
      );
      return;
    }
    const record = value as AuditEvent;
    records++;
    if (seen.has(record.seq)) seen.set(record.seq, record.hash);
    const expectedSeq = prev ? prev.seq + 1 : 1;
    const where = `${at} (seq ${record.seq})`;
    if (auditHash(record) !== record.hash) {
      diagnostics.push(
        errorDiag('audit.hash-mismatch', `${where} was edited: its hash does not match its content.`, {
          detail:
            'The record was changed after it was written. Compare it with a backup of the audit log to see what changed.',
        }),
      );
    } else if (record.seq > expectedSeq) {
      const missing =
        record.seq - 1 === expectedSeq ? `seq ${expectedSeq} is` : `seq ${expectedSeq}–${record.seq - 1} are`;
      diagnostics.push(
        errorDiag('audit.records-missing', `${where}: record ${missing} missing before it (deleted or moved).`, {
          detail:
            'Records were removed from the log or reordered. Restore the log from a backup to see what was removed.',
        }),
      );
    } else if (record.seq < expectedSeq) {
      diagnostics.push(
        errorDiag(
          'audit.out-of-order',
          `${where} comes after seq ${prev?.seq ?? 0}: records were reordered or duplicated.`,
          {
            detail:
              'agentvm writes records in seq order only. Restore the log from a backup to see the original order.',
          },
        ),
      );
      return; // keep chaining from the record before it, so one moved line gives one or two diagnostics, not a cascade
    } else if (record.prevHash !== (prev ? prev.hash : GENESIS_HASH)) {
      diagnostics.push(
        errorDiag('audit.chain-broken', `${where} does not chain onto the record before it (prevHash mismatch).`, {
          detail:
            'A record before it was replaced (with a recomputed hash), removed or reordered. Restore the log from a backup to compare.',
        }),
      );
    } else if (serializeAuditRecord(record) !== raw) {
      diagnostics.push(
        errorDiag(
          'audit.non-canonical',
          `${where} is not written the way agentvm writes it (the line was rewritten).`,
          {
            detail: 'Its content still matches its hash, but the bytes of the line were changed (e.g. reformatted).',
          },
        ),
      );
    }
    prev = { seq: record.seq, hash: record.hash };
  };

  await forEachLine(file, check);

  for (const h of heads) {
    const label = h.label ?? 'the lockfile';
    const found = seen.get(h.seq);
    const last = prev as AuditHead | null;
    if (!last || last.seq < h.seq) {
      diagnostics.push(
        errorDiag(
          'audit.truncated',
          `${name} ends at seq ${last?.seq ?? 0}, but ${label} recorded seq ${h.seq}: records were cut from the end of the log.`,
          {
            detail:
              'The audit log was truncated (or replaced by an older copy) after agentvm wrote that record. Restore it from a backup.',
          },
        ),
      );
    } else if (found !== undefined && found !== '' && found !== h.hash) {
      diagnostics.push(
        errorDiag(
          'audit.head-mismatch',
          `Record seq ${h.seq} in ${name} is not the one ${label} recorded: the log was rewritten.`,
          {
            detail:
              'The record at that position has another hash than when it was written. Restore the log from a backup.',
          },
        ),
      );
    } else if (found === '') {
      diagnostics.push(
        errorDiag('audit.truncated', `${name} has no valid record seq ${h.seq}, which ${label} recorded.`, {
          detail: 'That record was removed or damaged. Restore the log from a backup.',
        }),
      );
    }
  }

  return { ok: !diagnostics.some((d) => d.severity === 'error'), records, head: prev, diagnostics };
}

/** Calls `fn` with each line (without its newline) in order, streaming; a missing file has no lines. */
async function forEachLine(file: string, fn: (line: string) => void): Promise<void> {
  let carry: Buffer = Buffer.alloc(0);
  try {
    for await (const chunk of createReadStream(file, { highWaterMark: 256 * 1024 })) {
      let buf = carry.length ? Buffer.concat([carry, chunk as Buffer]) : (chunk as Buffer);
      let nl = buf.indexOf(0x0a);
      while (nl !== -1) {
        fn(buf.subarray(0, nl).toString('utf8'));
        buf = buf.subarray(nl + 1);
        nl = buf.indexOf(0x0a);
      }
      carry = Buffer.from(buf);
    }
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return;
    throw error;
  }
  if (carry.length) fn(carry.toString('utf8'));
}
