// `agentvm state push|pull`: moving one host's state between the local files and PostgreSQL without losing the audit
// chain (ADR 0017). What moves: the logical lockfile (same lineage, same serial: saved plans and the recorded audit
// head stay valid) and the audit chain, verbatim (same lines, same hashes: `audit verify` on the target checks the
// very records written on the source).
// Invariants:
// - Both sides' leases are held for the whole move; an interrupted apply must be finished or discarded first.
// - The source chain must verify, and the target's chain must be a prefix of it (empty, or an earlier push/pull of
//   the same history): only the missing records are appended, never a record rewritten. Anything else is refused.
// - The target's lockfile, if any, must be an older version of the same lineage: a move never goes backwards.
// - On PostgreSQL the import is one transaction; on files the audit records are appended (under the audit append
//   lock) before the lockfile is written, so a kill in between leaves a longer chain, never an unaudited state.

import {
  closeSync,
  fsyncSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AgentvmError } from '../diagnostics/index.js';
import { errnoCode } from './atomic-file.js';
import { verifyAuditLog } from './audit-log.js';
import type { LocalStateBackend } from './backend.js';
import { acquireLeaseLock } from './lease-lock.js';
import type { Lockfile } from './lockfile.js';
import { writeLockfileFile } from './lockfile-store.js';
import type { PostgresStateBackend } from './postgres/backend.js';

export interface TransferResult {
  formatVersion: 1;
  direction: 'push' | 'pull';
  host: string;
  from: string;
  to: string;
  lineage: string | null;
  serial: number;
  /** Audit records appended to the target (the rest were there already). */
  auditRecordsCopied: number;
  auditRecordsTotal: number;
}

/** Local root → PostgreSQL. */
export async function pushState(
  local: LocalStateBackend,
  remote: PostgresStateBackend,
  host: string,
): Promise<TransferResult> {
  const localLease = await local.acquireLease(host, 'state push', { renew: false });
  try {
    const remoteLease = await remote.acquireLease(host, 'state push');
    try {
      await refuseInterrupted(local, host, local.location);
      await refuseInterrupted(remote, host, remote.location);
      const lock = await local.readLockfile(host);
      const lines = await localChain(local);
      const copied = await remote.importHost(host, lock, lines, remoteLease);
      return result('push', host, local.location, remote.location, lock, copied, lines.length);
    } finally {
      await remoteLease.release();
    }
  } finally {
    localLease.release();
  }
}

/** PostgreSQL → local root. */
export async function pullState(
  remote: PostgresStateBackend,
  local: LocalStateBackend,
  host: string,
): Promise<TransferResult> {
  const remoteLease = await remote.acquireLease(host, 'state pull');
  try {
    const localLease = await local.acquireLease(host, 'state pull', { renew: false });
    try {
      await refuseInterrupted(remote, host, remote.location);
      await refuseInterrupted(local, host, local.location);
      const lock = await remote.readLockfile(host);
      const lines = await remote.auditLines(host);
      const verified = await verifyLines(lines, `audit-${host}.jsonl`);
      if (!verified) throw brokenChain(`the audit chain of ${host} in ${remote.location}`);
      const file = local.auditPath();
      const existing = readLines(file);
      const from = prefixEnd(existing, lines, file, remote.location);
      const target = await local.readLockfile(host);
      refuseBackwards(target, lock, local.location, host);
      appendLines(file, lines.slice(from), host);
      if (lock) {
        mkdirSync(local.paths.state, { recursive: true, mode: 0o750 });
        const f = path.join(local.paths.state, `${host}.lock.json`);
        writeLockfileFile({ file: f, backup: `${f}.backup`, host }, lock);
      }
      return result('pull', host, remote.location, local.location, lock, lines.length - from, lines.length);
    } finally {
      localLease.release();
    }
  } finally {
    await remoteLease.release();
  }
}

async function localChain(local: LocalStateBackend): Promise<string[]> {
  const v = await local.verifyAudit();
  if (!v.ok) throw brokenChain(local.auditPath(), v.diagnostics[0]?.summary);
  return readLines(local.auditPath());
}

/** The target's lines must be the first lines of the source's; returns how many are there already. */
export function prefixEnd(
  target: readonly string[],
  source: readonly string[],
  targetName: string,
  sourceName: string,
): number {
  if (target.length > source.length || target.some((l, i) => l !== source[i])) {
    throw new AgentvmError(
      'state.audit-diverged',
      `The audit chain in ${targetName} is not a prefix of the one in ${sourceName}: they hold different histories.`,
      {
        detail:
          'Nothing was moved. A chain is only ever extended, never merged: keep both as evidence, and move the state into an empty target (a new database or root).',
      },
    );
  }
  return target.length;
}

export function refuseBackwards(target: Lockfile | null, lock: Lockfile | null, where: string, host: string): void {
  if (!target) return;
  if (!lock || target.lineage !== lock.lineage || target.serial > lock.serial) {
    throw new AgentvmError(
      'state.transfer-conflict',
      `Host "${host}" already has state in ${where} (lineage ${target.lineage}, serial ${target.serial}) that the moved state (${lock ? `lineage ${lock.lineage}, serial ${lock.serial}` : 'none'}) does not continue.`,
      {
        detail:
          'Nothing was moved. A move never replaces another history or goes back to an older serial; inspect both with `agentvm state show`.',
      },
    );
  }
}

async function refuseInterrupted(
  backend: LocalStateBackend | PostgresStateBackend,
  host: string,
  where: string,
): Promise<void> {
  const j = await backend.readJournal(host);
  if (j) {
    throw new AgentvmError(
      'state.transfer-interrupted-apply',
      `Host "${host}" has an interrupted apply (${j.applyId}) in ${where}.`,
      {
        detail: 'Finish it first (`agentvm apply` resumes it) so the state to move is complete; nothing was moved.',
      },
    );
  }
}

function brokenChain(where: string, why?: string): AgentvmError {
  return new AgentvmError(
    'state.audit-unverified',
    `The audit chain ${where} does not verify${why ? `: ${why}` : ''}.`,
    {
      detail:
        'Nothing was moved: a chain that does not verify cannot be carried over as evidence. Run `agentvm audit verify` and restore it first.',
    },
  );
}

function readLines(file: string): string[] {
  try {
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l.length > 0);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return [];
    throw error;
  }
}

async function verifyLines(lines: readonly string[], name: string): Promise<boolean> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'agentvm-pull-'));
  try {
    const file = path.join(dir, name);
    writeFileSync(file, lines.map((l) => `${l}\n`).join(''), { mode: 0o600 });
    return (await verifyAuditLog(file)).ok;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Appends exact lines under the audit append lock, with one write and one fsync. */
function appendLines(file: string, lines: readonly string[], host: string): void {
  if (lines.length === 0) return;
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o750 });
  const lock = acquireLeaseLock(`${file}.lock`, host, 'audit-append', {
    leaseMs: 30_000,
    renew: false,
    durable: false,
  });
  try {
    const fd = openSync(file, 'a', 0o640);
    try {
      const bytes = Buffer.from(lines.map((l) => `${l}\n`).join(''), 'utf8');
      let written = 0;
      while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } finally {
    lock.release();
  }
}

function result(
  direction: 'push' | 'pull',
  host: string,
  from: string,
  to: string,
  lock: Lockfile | null,
  copied: number,
  total: number,
): TransferResult {
  return {
    formatVersion: 1,
    direction,
    host,
    from,
    to,
    lineage: lock?.lineage ?? null,
    serial: lock?.serial ?? 0,
    auditRecordsCopied: copied,
    auditRecordsTotal: total,
  };
}
