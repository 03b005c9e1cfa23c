// The Lockfile: what agentvm last applied to one host (DESIGN §4). Its type is generated from
// schemas/lockfile.schema.json; this file owns the pure operations on it (every helper returns a NEW object and never
// touches `serial` — the backend bumps it on each persisted write) and its parsing, which refuses anything the schema
// does not describe with a `state.corrupt` error that says how to recover from the backup.
// Invariants: `lineage` never changes after creation; `serial` only grows; `resources[a].address === a`;
// no secret value is ever stored (resources carry identities and digests, not configuration).

import { randomUUID } from 'node:crypto';
import { AgentvmError } from '../diagnostics/index.js';
import type { LockedResource } from '../engine/types.js';
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

export function withResource(lock: Lockfile, entry: LockedResource): Lockfile {
  const resource: LockfileResource = { ...entry };
  if (entry.attributes !== undefined) resource.attributes = structuredClone(entry.attributes);
  return { ...lock, resources: { ...lock.resources, [entry.address]: resource } };
}

export function withoutResource(lock: Lockfile, address: string): Lockfile {
  if (!(address in lock.resources)) return lock;
  const { [address]: _removed, ...rest } = lock.resources;
  return { ...lock, resources: rest };
}

/** The resource as the engine sees it (LockedResource of src/engine/types.ts), if recorded. */
export function lockedResource(lock: Lockfile, address: string): LockedResource | undefined {
  const r = lock.resources[address];
  return r ? { ...r } : undefined;
}

/** Records the live release of `workload` after agentvm made it live. */
export function withRelease(lock: Lockfile, workload: string, release: ReleaseRef | null): Lockfile {
  return withWorkload(lock, workload, (w) => {
    const { release: _old, ...rest } = w;
    return release ? { ...rest, release: { identity: release.identity, digest: release.digest, releaseId: release.releaseId } } : rest;
  });
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
  return withWorkload(lock, workload, (w) => {
    const { rollback: _old, ...rest } = w;
    if (!target) return rest;
    const rollback: RollbackTarget = {
      identity: target.identity,
      digest: target.digest,
      releaseId: target.releaseId,
      foreign: target.foreign,
      capturedAt: target.capturedAt ?? now.toISOString(),
    };
    return { ...rest, rollback };
  });
}

/** Records a rollback rehearsal, most recent first, keeping the last MAX_REHEARSALS. */
export function withRehearsal(lock: Lockfile, workload: string, rehearsal: RollbackRehearsal): Lockfile {
  return withWorkload(lock, workload, (w) => ({ ...w, rehearsals: [{ ...rehearsal }, ...(w.rehearsals ?? [])].slice(0, MAX_REHEARSALS) }));
}

/** Drops everything recorded for a workload that left the host (its resources are removed one by one). */
export function withoutWorkload(lock: Lockfile, workload: string): Lockfile {
  if (!(workload in lock.workloads)) return lock;
  const { [workload]: _removed, ...rest } = lock.workloads;
  return { ...lock, workloads: rest };
}

/** The desired-state commit of the last COMPLETED apply (set once, at the end of an apply that fully succeeded). */
export function withCommit(lock: Lockfile, commit: string | null): Lockfile {
  return { ...lock, commit };
}

/** The last audit record written for this host's operations: lets `audit verify` detect a truncated log. */
export function withAuditHead(lock: Lockfile, head: AuditHead): Lockfile {
  return { ...lock, auditHead: { seq: head.seq, hash: head.hash } };
}

function withWorkload(lock: Lockfile, workload: string, change: (w: WorkloadState) => WorkloadState): Lockfile {
  return { ...lock, workloads: { ...lock.workloads, [workload]: change(lock.workloads[workload] ?? {}) } };
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
 * Validates parsed JSON as a lockfile of `source.host`. Throws `state.unsupported-format` for another format version
 * and `state.corrupt` for anything else that is wrong, naming the file and the recovery.
 */
export function parseLockfile(value: unknown, source: LockfileSource): Lockfile {
  if (typeof value === 'object' && value !== null && 'formatVersion' in value && value.formatVersion !== LOCKFILE_FORMAT_VERSION) {
    throw new AgentvmError('state.unsupported-format', `${source.file} has format version ${JSON.stringify(value.formatVersion)}; this agentvm reads version ${LOCKFILE_FORMAT_VERSION}.`, {
      detail: 'It was written by another version of agentvm. Use that version, or upgrade agentvm; do not edit the file by hand.',
    });
  }
  const result = stateValidator('lockfile.schema.json').safeParse(value);
  if (!result.success) throw corruptLockfile(source, `it does not match the lockfile schema (${firstIssue(result.error)})`);
  const lock = value as Lockfile;
  if (lock.host !== source.host) throw corruptLockfile(source, `it belongs to host "${lock.host}", not "${source.host}"`);
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

/** The error for a lockfile that cannot be trusted: what is wrong, and the exact steps to recover. */
export function corruptLockfile(source: LockfileSource, reason: string, cause?: unknown): AgentvmError {
  return new AgentvmError('state.corrupt', `The lockfile ${source.file} is corrupt: ${reason}.`, {
    detail:
      `agentvm keeps the previous version (one serial back) in ${source.backup}. Inspect both files, then restore it with ` +
      `\`cp ${source.backup} ${source.file}\` and run \`agentvm plan\`: resources applied since that serial show up as ` +
      'changes or drift and the next apply records them again. Do not hand-edit the lockfile.',
    cause,
  });
}
