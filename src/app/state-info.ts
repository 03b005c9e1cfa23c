// Use cases behind `agentvm state …` and `agentvm audit …`: read-only views of the lockfiles, leases and the audit
// chain, and breaking a stale lease on purpose.

import { userError } from '../diagnostics/index.js';
import type { AuditEvent, LeaseRecord, Lockfile } from '../state/index.js';
import { stateBackend } from './plan.js';
import type { StateListResultDocument } from '../generated/state-list-result.js';
import type { AuditVerifyResultDocument } from '../generated/audit-verify-result.js';

/** The --json result; its type is generated from the schema (schemas/ are the source of truth). */
export type StateListResult = StateListResultDocument;

export async function listState(root: string): Promise<StateListResult> {
  const backend = stateBackend(root);
  const hosts = [];
  for (const host of await backend.listHosts()) {
    const lock = await backend.readLockfile(host);
    hosts.push({
      host,
      lineage: lock?.lineage ?? null,
      serial: lock?.serial ?? 0,
      commit: lock?.commit ?? null,
      updatedAt: lock?.updatedAt ?? null,
      resources: lock ? Object.keys(lock.resources).length : 0,
      lease: await backend.readLease(host),
    });
  }
  return { formatVersion: 1, root, hosts };
}

export async function showState(root: string, host: string): Promise<Lockfile> {
  const lock = await stateBackend(root).readLockfile(host);
  if (!lock)
    throw userError(
      'state.not-found',
      `No lockfile for host \`${host}\` under ${root}.`,
      '`agentvm state list --root …` shows the hosts that have state.',
    );
  return lock;
}

/**
 * Breaks the lease with this id: of `host` when given, else whichever lease under the root has it — a host's, or the
 * audit log's append lock (the id a `state.locked` error prints is all the operator needs). Audited.
 */
export async function unlockState(
  root: string,
  host: string | undefined,
  id: string,
): Promise<LeaseRecord & { lock: string }> {
  const backend = stateBackend(root);
  let target: { host: string; lock: string; unlock: () => Promise<LeaseRecord> } | undefined;
  if (host) {
    target = { host, lock: `host ${host}`, unlock: () => backend.forceUnlock(host, id) };
  } else {
    for (const h of await backend.listHosts()) {
      const lease = await backend.readLease(h).catch(() => null);
      if (lease?.id === id) target = { host: h, lock: `host ${h}`, unlock: () => backend.forceUnlock(h, id) };
    }
    const audit = await backend.readAuditLock?.();
    if (!target && audit?.id === id && backend.forceUnlockAuditLock) {
      const unlockAudit = backend.forceUnlockAuditLock.bind(backend);
      target = { host: audit.host, lock: 'the audit log append lock', unlock: () => unlockAudit(id) };
    }
  }
  if (!target) {
    throw userError(
      'state.not-locked',
      `No lease under ${root} has the id ${id}: it was released or taken over meanwhile.`,
      'Run `agentvm state list` to see the current leases; nothing was removed.',
    );
  }
  const record = await target.unlock();
  await backend.appendAudit({
    host: target.host,
    operation: 'state unlock',
    event: 'state.unlock',
    result: 'ok',
    detail: `broke lease ${record.id} (${target.lock}) held by ${record.who} (${record.operation}, pid ${record.pid})`,
  });
  return { ...record, lock: target.lock };
}

/** The --json result; its type is generated from the schema (schemas/ are the source of truth). */
export type AuditVerifyResult = AuditVerifyResultDocument;

/** Verifies the chain, and against every host lockfile's recorded head, so truncation is caught too. */
export async function verifyAudit(root: string): Promise<AuditVerifyResult> {
  const backend = stateBackend(root);
  const heads = [];
  for (const host of await backend.listHosts()) {
    // Every copy of the head the state keeps (lockfile, backup, write-ahead log): a damaged lockfile must not hide a
    // log cut short.
    if (backend.recordedAuditHeads) {
      heads.push(...(await backend.recordedAuditHeads(host)));
      continue;
    }
    const lock = await backend.readLockfile(host).catch(() => null);
    if (lock?.auditHead) heads.push({ ...lock.auditHead, label: `lockfile of ${host}`, host });
  }
  const v = await backend.verifyAudit(heads);
  return { formatVersion: 1, ok: v.ok, records: v.records, file: backend.auditPath(), diagnostics: v.diagnostics };
}

export async function tailAuditLog(root: string, n: number): Promise<AuditEvent[]> {
  return stateBackend(root).tailAudit(n);
}
