// The Lockfile: what agentvm last applied to one host (DESIGN §4). Its type is generated from
// schemas/lockfile.schema.json; this file owns the operations on it and its parsing, which refuses anything the schema
// does not describe with a `state.corrupt` error that says how to recover from the backup.
// Every change is a LockfileOp: plain JSON data, so the same change can be applied in memory and written as one line
// of the write-ahead log (wal.ts), and replaying the log gives exactly what the writer had. `applyOps` and the `with*`
// helpers are pure (they return a NEW object and never touch `serial` — the backend bumps it per persisted write);
// `applyOpsToDraft` changes a private copy in place, so an apply of N resources costs O(N), not O(N²) object copies.
// Invariants: `lineage` never changes after creation; `serial` only grows; `resources[a].address === a`;
// no secret value is ever stored (resources carry identities and digests, not configuration).

import { randomUUID } from 'node:crypto';
import { AgentvmError } from '../diagnostics/index.js';
import type { LockedResource } from '../model/resources.js';
import type {
  AuditHead,
  Lockfile,
  LockedResource as LockfileResource,
  ReleaseRef,
  RollbackRehearsal,
  RollbackTarget,
  WorkloadState,
} from '../generated/lockfile.js';
import { firstIssue, stateDefinitionValidator, stateValidator } from './state-schemas.js';
import { validatedTexts } from './validated-texts.js';

export type { AuditHead, Lockfile, ReleaseRef, RollbackRehearsal, RollbackTarget, WorkloadState };

export const LOCKFILE_FORMAT_VERSION = 1;
/** Rehearsals kept per workload (most recent first). */
export const MAX_REHEARSALS = 20;

// The engine's LockedResource and the schema's must stay the same shape: this fails to compile if they drift.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const _sameResourceShape: Same<LockedResource, LockfileResource> = true;
void _sameResourceShape;

/** A lockfile for a host nothing has been applied to yet. Serial 0: the first write makes it 1. */
export function emptyLockfile(host: string, now: Date = new Date()): Lockfile {
  return {
    formatVersion: LOCKFILE_FORMAT_VERSION,
    lineage: randomUUID(),
    serial: 0,
    host,
    commit: null,
    updatedAt: now.toISOString(),
    resources: {},
    workloads: {},
  };
}

/**
 * One change to a lockfile. Ops carry complete values (a rollback target has its `capturedAt`, a release only its
 * three fields), so applying an op is deterministic: a replay of the write-ahead log rebuilds the same lockfile.
 */
export type LockfileOp =
  | { op: 'resource.set'; entry: LockedResource }
  | { op: 'resource.delete'; address: string }
  | { op: 'release.set'; workload: string; release: ReleaseRef | null }
  | { op: 'rollback.set'; workload: string; target: RollbackTarget | null }
  | { op: 'rehearsal.add'; workload: string; rehearsal: RollbackRehearsal }
  | { op: 'workload.delete'; workload: string }
  | { op: 'commit.set'; commit: string | null }
  | { op: 'auditHead.set'; head: AuditHead };

/**
 * The op with only the fields the lockfile keeps: a caller may pass a richer object (an AuditEvent as the audit head,
 * a captured release as the release) and the WAL still records exactly what applying the op would store.
 */
export function canonicalOp(op: LockfileOp): LockfileOp {
  switch (op.op) {
    case 'release.set':
      return {
        op: op.op,
        workload: op.workload,
        release: op.release
          ? { identity: op.release.identity, digest: op.release.digest, releaseId: op.release.releaseId }
          : null,
      };
    case 'rollback.set': {
      const t = op.target;
      return {
        op: op.op,
        workload: op.workload,
        target: t
          ? {
              identity: t.identity,
              digest: t.digest,
              releaseId: t.releaseId,
              foreign: t.foreign,
              capturedAt: t.capturedAt,
            }
          : null,
      };
    }
    case 'auditHead.set':
      return { op: op.op, head: { seq: op.head.seq, hash: op.head.hash } };
    default:
      return op;
  }
}

/** A copy of `lock` that may be changed in place with applyOpsToDraft (its two maps are its own; entries are shared). */
export function lockfileDraft(lock: Lockfile): Lockfile {
  return { ...lock, resources: { ...lock.resources }, workloads: { ...lock.workloads } };
}

/** `lock` with `ops` applied in order. Pure: costs one copy of the lockfile's two maps, plus the ops. */
export function applyOps(lock: Lockfile, ops: readonly LockfileOp[]): Lockfile {
  const draft = lockfileDraft(lock);
  applyOpsToDraft(draft, structuredClone(ops) as LockfileOp[]);
  return draft;
}

/**
 * Applies `ops` to `draft` IN PLACE, in O(ops): only for a draft its caller owns (lockfileDraft, or a freshly parsed
 * lockfile). Entries are replaced, never mutated, so a shallow copy of the maps taken earlier stays a valid snapshot.
 * The ops' objects become part of the draft: pass objects nobody else holds (e.g. parsed from a WAL line).
 */
export function applyOpsToDraft(draft: Lockfile, ops: readonly LockfileOp[]): void {
  for (const op of ops) {
    switch (op.op) {
      case 'resource.set':
        draft.resources[op.entry.address] = op.entry;
        break;
      case 'resource.delete':
        delete draft.resources[op.address];
        break;
      case 'release.set':
        changeWorkload(draft, op.workload, (w) => {
          const { release: _old, ...rest } = w;
          return op.release
            ? {
                ...rest,
                release: { identity: op.release.identity, digest: op.release.digest, releaseId: op.release.releaseId },
              }
            : rest;
        });
        break;
      case 'rollback.set':
        changeWorkload(draft, op.workload, (w) => {
          const { rollback: _old, ...rest } = w;
          if (!op.target) return rest;
          const t = op.target;
          return {
            ...rest,
            rollback: {
              identity: t.identity,
              digest: t.digest,
              releaseId: t.releaseId,
              foreign: t.foreign,
              capturedAt: t.capturedAt,
            },
          };
        });
        break;
      case 'rehearsal.add':
        changeWorkload(draft, op.workload, (w) => ({
          ...w,
          rehearsals: [{ ...op.rehearsal }, ...(w.rehearsals ?? [])].slice(0, MAX_REHEARSALS),
        }));
        break;
      case 'workload.delete':
        delete draft.workloads[op.workload];
        break;
      case 'commit.set':
        draft.commit = op.commit;
        break;
      case 'auditHead.set':
        draft.auditHead = { seq: op.head.seq, hash: op.head.hash };
        break;
      default:
        throw new AgentvmError(
          'state.unknown-op',
          `Unknown lockfile operation ${JSON.stringify((op as { op: unknown }).op)}.`,
          { source: 'toolkit' },
        );
    }
  }
}

function changeWorkload(draft: Lockfile, workload: string, change: (w: WorkloadState) => WorkloadState): void {
  draft.workloads[workload] = change(draft.workloads[workload] ?? {});
}

export function withResource(lock: Lockfile, entry: LockedResource): Lockfile {
  return applyOps(lock, [{ op: 'resource.set', entry }]);
}

export function withoutResource(lock: Lockfile, address: string): Lockfile {
  if (!(address in lock.resources)) return lock;
  return applyOps(lock, [{ op: 'resource.delete', address }]);
}

/** The resource as the engine sees it (LockedResource of src/engine/types.ts), if recorded. */
export function lockedResource(lock: Lockfile, address: string): LockedResource | undefined {
  const r = lock.resources[address];
  return r ? { ...r } : undefined;
}

/** Records the live release of `workload` after agentvm made it live. */
export function withRelease(lock: Lockfile, workload: string, release: ReleaseRef | null): Lockfile {
  return applyOps(lock, [{ op: 'release.set', workload, release }]);
}

/** The rollback target of `workload` as an op; `capturedAt` defaults to now. */
export function rollbackOp(
  workload: string,
  target: (Omit<RollbackTarget, 'capturedAt'> & { capturedAt?: string }) | null,
  now: Date = new Date(),
): LockfileOp {
  return {
    op: 'rollback.set',
    workload,
    target: target ? { ...target, capturedAt: target.capturedAt ?? now.toISOString() } : null,
  };
}

/**
 * Records the rollback target of `workload` (capture-first: the release that was live before a change), or clears it
 * with null. `capturedAt` defaults to now.
 */
export function withRollbackTarget(
  lock: Lockfile,
  workload: string,
  target: (Omit<RollbackTarget, 'capturedAt'> & { capturedAt?: string }) | null,
  now: Date = new Date(),
): Lockfile {
  return applyOps(lock, [rollbackOp(workload, target, now)]);
}

/** Records a rollback rehearsal, most recent first, keeping the last MAX_REHEARSALS. */
export function withRehearsal(lock: Lockfile, workload: string, rehearsal: RollbackRehearsal): Lockfile {
  return applyOps(lock, [{ op: 'rehearsal.add', workload, rehearsal }]);
}

/** Drops everything recorded for a workload that left the host (its resources are removed one by one). */
export function withoutWorkload(lock: Lockfile, workload: string): Lockfile {
  if (!(workload in lock.workloads)) return lock;
  return applyOps(lock, [{ op: 'workload.delete', workload }]);
}

/** The desired-state commit of the last COMPLETED apply (set once, at the end of an apply that fully succeeded). */
export function withCommit(lock: Lockfile, commit: string | null): Lockfile {
  return applyOps(lock, [{ op: 'commit.set', commit }]);
}

/** The last audit record written for this host's operations: lets `audit verify` detect a truncated log. */
export function withAuditHead(lock: Lockfile, head: AuditHead): Lockfile {
  return applyOps(lock, [{ op: 'auditHead.set', head }]);
}

/**
 * Stable text of a lockfile: fixed top-level order, resources and workloads sorted by key, two-space indent, final
 * newline — so two writes of the same state are byte-identical and diffs of the file are readable.
 */
export function serializeLockfile(lock: Lockfile): string {
  const ordered: Lockfile = {
    formatVersion: lock.formatVersion,
    lineage: lock.lineage,
    serial: lock.serial,
    host: lock.host,
    commit: lock.commit,
    updatedAt: lock.updatedAt,
    ...(lock.auditHead ? { auditHead: lock.auditHead } : {}),
    resources: sortedRecord(lock.resources),
    workloads: sortedRecord(lock.workloads),
  };
  return `${JSON.stringify(ordered, null, 2)}\n`;
}

function sortedRecord<T>(record: Record<string, T>): Record<string, T> {
  const out: Record<string, T> = {};
  for (const key of Object.keys(record).sort()) out[key] = record[key] as T;
  return out;
}

/** Where a lockfile came from, for error messages and the host check. */
export interface LockfileSource {
  file: string;
  /** Path of the backup of the previous serial (named in the recovery advice). */
  backup: string;
  /** The host this file belongs to; a lockfile of another host is refused. */
  host: string;
}

/**
 * Validates parsed JSON as a lockfile of `source.host` (with `text`, the schema check is memoised: validated-texts.ts). Throws `state.unsupported-format` for another format version
 * and `state.corrupt` for anything else that is wrong, naming the file and the recovery.
 */
export function parseLockfile(value: unknown, source: LockfileSource, text?: string): Lockfile {
  if (
    typeof value === 'object' &&
    value !== null &&
    'formatVersion' in value &&
    value.formatVersion !== LOCKFILE_FORMAT_VERSION
  ) {
    throw new AgentvmError(
      'state.unsupported-format',
      `${source.file} has format version ${JSON.stringify(value.formatVersion)}; this agentvm reads version ${LOCKFILE_FORMAT_VERSION}.`,
      {
        detail:
          'It was written by another version of agentvm. Use that version, or upgrade agentvm; do not edit the file by hand.',
      },
    );
  }
  // `text` (the file's bytes `value` was parsed from): a text that passed this schema before passes again, unchecked.
  const memo = text === undefined ? undefined : validatedTexts('lockfile.schema.json', LOCKFILE_FORMAT_VERSION);
  if (!memo?.has(text!)) {
    const result = stateValidator('lockfile.schema.json').safeParse(value);
    if (!result.success)
      throw corruptLockfile(source, `it does not match the lockfile schema (${firstIssue(result.error)})`);
    memo?.add(text!);
  }
  const lock = value as Lockfile;
  if (lock.host !== source.host)
    throw corruptLockfile(source, `it belongs to host "${lock.host}", not "${source.host}"`);
  for (const [address, resource] of Object.entries(lock.resources)) {
    if (resource && resource.address !== address) {
      throw corruptLockfile(source, `resource key "${address}" holds an entry for "${resource.address}"`);
    }
    if (resource) validatedResources.add(resource);
  }
  return lock;
}

// Resource entries already validated. Lockfiles are immutable values (every helper returns a new object and shares
// the entries it did not change), so an entry validated once stays valid: a write validates only what changed, which
// keeps persisting the lockfile after every resource from costing a full validation each time.
const validatedResources = new WeakSet<object>();

/**
 * Why `lock` must not be written, or null. Checks the document against the schema, but each resource entry only once
 * per object (see validatedResources). Used as a bug guard before every write.
 */
export function lockfileWriteProblem(lock: Lockfile): string | null {
  const top = stateValidator('lockfile.schema.json').safeParse({ ...lock, resources: {} });
  if (!top.success) return firstIssue(top.error);
  const entry = stateDefinitionValidator('lockfile.schema.json', 'LockedResource');
  for (const [address, resource] of Object.entries(lock.resources)) {
    if (!resource) return `$.resources.${address}: missing entry`;
    if (resource.address !== address) return `$.resources.${address}: holds an entry for "${resource.address}"`;
    if (validatedResources.has(resource)) continue;
    const result = entry.safeParse(resource);
    if (!result.success) return `$.resources.${address}${firstIssue(result.error).slice(1)}`;
    validatedResources.add(resource);
  }
  return null;
}

const OP_FIELDS: Record<LockfileOp['op'], Record<string, string | null>> = {
  // field → the lockfile.schema.json definition its value must match (null: a string checked here)
  'resource.set': { entry: 'LockedResource' },
  'resource.delete': { address: null },
  'release.set': { workload: 'Name', release: 'ReleaseRef?' },
  'rollback.set': { workload: 'Name', target: 'RollbackTarget?' },
  'rehearsal.add': { workload: 'Name', rehearsal: 'RollbackRehearsal' },
  'workload.delete': { workload: 'Name' },
  'commit.set': { commit: 'Commit?' },
  'auditHead.set': { head: 'AuditHead' },
};

/**
 * Why `value` is not a valid LockfileOp, or null. Checks each value against its definition in the lockfile schema, so
 * what an op writes is exactly what a whole-lockfile validation would accept; costs O(size of the op), never of the
 * lockfile. A valid `resource.set` entry is remembered as validated (lockfileWriteProblem skips it at checkpoint).
 */
export function lockfileOpProblem(value: unknown): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'an op is not an object';
  const op = value as Record<string, unknown>;
  const fields =
    typeof op.op === 'string' && Object.hasOwn(OP_FIELDS, op.op) ? OP_FIELDS[op.op as LockfileOp['op']] : undefined;
  if (!fields) return `unknown op ${JSON.stringify(op.op)}`;
  for (const key of Object.keys(op))
    if (key !== 'op' && !(key in fields)) return `${String(op.op)}: unexpected field \`${key}\``;
  for (const [field, definition] of Object.entries(fields)) {
    const v = op[field];
    if (definition === null) {
      if (typeof v !== 'string' || v.length === 0 || v.length > 300)
        return `${String(op.op)}: \`${field}\` is not an address`;
      continue;
    }
    const nullable = definition.endsWith('?');
    if (nullable && v === null) continue;
    const result = stateDefinitionValidator(
      'lockfile.schema.json',
      nullable ? definition.slice(0, -1) : definition,
    ).safeParse(v);
    if (!result.success) return `${String(op.op)}: \`${field}\`${firstIssue(result.error).slice(1)}`;
  }
  if (op.op === 'resource.set') validatedResources.add(op.entry as object);
  return null;
}

/** The error for a lockfile that cannot be trusted: what is wrong, and the exact steps to recover. */
export function corruptLockfile(source: LockfileSource, reason: string, cause?: unknown): AgentvmError {
  return new AgentvmError('state.corrupt', `The lockfile ${source.file} is corrupt: ${reason}.`, {
    detail:
      `agentvm keeps the version before the last write (or the last checkpoint of an apply) in ${source.backup}. Inspect both files, then restore it with ` +
      `\`cp ${source.backup} ${source.file}\` and run \`agentvm plan\`: resources applied since that serial show up as ` +
      'changes or drift and the next apply records them again. Rollback targets captured since that serial are NOT recorded again ' +
      '(the release they replaced is no longer live): `agentvm rollback` offers the target the backup holds, if any, until the next ' +
      'release change captures a new one. Do not hand-edit the lockfile.',
    cause,
  });
}
