// Use case: roll a workload's release back to the rollback target recorded in the lockfile (the release that was
// live before the last change, captured before anything changed). Same dry-run rules as apply: without approval
// it only shows what it would do. The switch is verified byte for byte against the recorded digest; the release
// it replaces becomes the new rollback target, so a rollback can itself be undone.

import { randomUUID } from 'node:crypto';
import { AgentvmError, userError, type Diagnostic } from '../diagnostics/index.js';
import { releaseAddress } from '../providers/release/index.js';
import type { DesiredResource, LockedResource, PlannedChange } from '../model/resources.js';
import { GitReleaseProvider, PackageReleaseProvider, type RollbackResponse } from '../providers/release/index.js';
import {
  rollbackOp,
  type AppendMarks,
  type ApplyLogHandle,
  type AuditEntry,
  type HeldLease,
  type Lockfile,
  type LockfileOp,
  type ReleaseRef,
  type RollbackTarget,
  type StateBackend,
} from '../state/index.js';
import { hostContext, stateBackend } from './plan.js';
import { builtInRegistry } from './registry.js';
import type { RollbackResultDocument } from '../generated/rollback-result.js';
import { faultPoint } from '../support/fault-point.js';

/** The --json result; its type is generated from the schema (schemas/ are the source of truth). */
export type RollbackResult = RollbackResultDocument;

export interface RollbackOptions {
  host: string;
  workload: string;
  root: string;
  approve: boolean;
  progress?: (message: string) => void;
}

export async function runRollback(opts: RollbackOptions): Promise<RollbackResult> {
  const backend = stateBackend(opts.root);
  const address = releaseAddress(opts.workload);
  const describe = (lock: Lockfile | null) => {
    if (!lock)
      throw userError(
        'rollback.no-state',
        `Nothing was ever applied to host \`${opts.host}\` under ${opts.root}.`,
        'Check --host and --root; `agentvm state list` shows the hosts with state.',
      );
    const wl = lock.workloads[opts.workload];
    const target = wl?.rollback;
    if (!target) {
      const known = Object.keys(lock.workloads).sort();
      throw userError(
        'rollback.no-target',
        `Workload \`${opts.workload}\` on host \`${opts.host}\` has no recorded rollback target.`,
        known.includes(opts.workload)
          ? 'A rollback target is recorded when a release replaces another; this workload has had only one release so far.'
          : `Workloads with state on this host: ${known.join(', ') || 'none'}.`,
      );
    }
    const locked = lock.resources[address] as LockedResource | undefined;
    return { target, locked, current: wl?.release };
  };

  // An interrupted rollback of this workload is resumed to its own target (see rollBackUnderLease): show that one.
  const journal = await backend.readJournal(opts.host);
  const pending = journal ? targetOfDigest(journal.planDigest, opts.workload) : undefined;
  const described = describe(await backend.readLockfile(opts.host));
  const preview = pending ? { ...described, target: pending } : described;
  const result = (applied: boolean, diagnostics: Diagnostic[], d = preview): RollbackResult => ({
    formatVersion: 1,
    host: opts.host,
    workload: opts.workload,
    address,
    applied,
    from: d.current
      ? { identity: d.current.identity, releaseId: d.current.releaseId, digest: d.current.digest }
      : d.locked
        ? { identity: d.locked.identity, digest: d.locked.digest }
        : null,
    to: {
      identity: d.target.identity,
      releaseId: d.target.releaseId,
      digest: d.target.digest,
      foreign: d.target.foreign,
    },
    diagnostics,
  });
  if (!opts.approve) return result(false, []);

  const lease = await backend.acquireLease(opts.host, 'rollback');
  try {
    return await rollBackUnderLease(opts, backend, lease, address, describe, result);
  } finally {
    await lease.release();
  }
}

type Described = { target: RollbackTarget; locked: LockedResource | undefined; current: ReleaseRef | undefined };

/** The journal (WAL plan digest) of a rollback: names the workload and the exact target, so a retry resumes THIS one. */
function rollbackDigest(workload: string, target: RollbackTarget): string {
  return `rollback:${workload}:${Buffer.from(JSON.stringify(target)).toString('base64url')}`;
}

function targetOfDigest(digest: string, workload: string): RollbackTarget | undefined {
  const prefix = `rollback:${workload}:`;
  if (!digest.startsWith(prefix)) return undefined;
  try {
    const t = JSON.parse(Buffer.from(digest.slice(prefix.length), 'base64url').toString('utf8')) as RollbackTarget;
    return typeof t.releaseId === 'string' && typeof t.digest === 'string' && typeof t.identity === 'string'
      ? t
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The rollback itself, as crash-safe as apply (ADR 0015): it runs through the host's write-ahead log like an apply.
 * Its intent (workload and exact target) is the log's plan digest and an audit record, durable BEFORE `current`
 * switches; each step is audited and then recorded in one log batch with the new audit head. A rollback killed at any
 * point is resumed by the next `rollback` of that workload — to the same target, never "back" to the release it
 * replaced — and the release it replaced stays the rollback target, even when the switch itself already happened.
 */
async function rollBackUnderLease(
  opts: RollbackOptions,
  backend: StateBackend,
  lease: HeldLease,
  address: string,
  describe: (lock: Lockfile | null) => Described,
  result: (applied: boolean, diagnostics: Diagnostic[], d?: Described) => RollbackResult,
): Promise<RollbackResult> {
  const interrupted = await backend.readJournal(opts.host);
  const resumedTarget = interrupted ? targetOfDigest(interrupted.planDigest, opts.workload) : undefined;
  const lock0 = (await backend.readLockfile(opts.host))!;
  const d0 = describe(lock0);
  const d: Described = resumedTarget ? { ...d0, target: resumedTarget } : d0;
  const applyId = randomUUID();
  const log = await backend.beginApply(
    opts.host,
    { applyId, planDigest: rollbackDigest(opts.workload, d.target) },
    lease,
  );
  let auditSeq = 0;
  const step = async (
    entry: Omit<AuditEntry, 'host' | 'operation' | 'applyId'>,
    ops: LockfileOp[] = [],
    marks: AppendMarks = {},
  ): Promise<void> => {
    const ev = await backend.appendAudit({ host: opts.host, operation: 'rollback', applyId, ...entry });
    faultPoint();
    const head: LockfileOp[] = ev.seq > auditSeq ? [{ op: 'auditHead.set', head: { seq: ev.seq, hash: ev.hash } }] : [];
    auditSeq = Math.max(auditSeq, ev.seq);
    await log.append([...ops, ...head], marks);
    faultPoint();
  };
  const from = d.current ? { before: { identity: d.current.identity, digest: d.current.digest } } : {};
  await step({
    event: 'release.rollback',
    result: 'started',
    address,
    ...from,
    after: { identity: d.target.identity, digest: d.target.digest },
    detail: `${log.interrupted && resumedTarget ? 'resuming the interrupted rollback' : 'rolling back'} to ${d.target.releaseId}`,
  });

  const diagnostics: Diagnostic[] = [];
  if (!log.isDone(address)) {
    const providerType =
      d.locked?.provider ?? (/^[0-9a-f]{40}$/.test(d.target.releaseId) ? 'release.git' : 'release.package');
    const provider =
      providerType === 'release.git'
        ? new GitReleaseProvider()
        : providerType === 'release.package'
          ? new PackageReleaseProvider()
          : undefined;
    if (!provider)
      throw new AgentvmError('rollback.unsupported', `Provider \`${providerType}\` of ${address} cannot roll back.`);
    const context = hostContext(opts.root, opts.host, '');
    const res: RollbackResponse = await provider.rollbackTo(
      context,
      opts.workload,
      d.target.releaseId,
      d.target.digest,
      {
        identity: d.target.identity,
        ...(d.locked ? { locked: d.locked } : {}),
        ...(opts.progress ? { progress: opts.progress } : {}),
        // Capture-first, as apply: the release about to be replaced is audited before anything switches.
        beforeMutation: async (c) => {
          if (c)
            await step({
              event: 'release.capture',
              result: 'ok',
              address,
              before: { identity: c.identity, digest: c.digest },
              detail: `captured ${c.releaseId}${c.foreign ? ' (installed outside agentvm)' : ''} as the next rollback target`,
            });
        },
      },
    );
    faultPoint();
    diagnostics.push(...res.diagnostics);
    const ok = res.locked !== undefined && !res.diagnostics.some((x) => x.severity === 'error');
    if (!ok) {
      const failure = res.diagnostics.find((x) => x.severity === 'error')?.summary ?? 'failed';
      await step({ event: 'release.rollback', result: 'failed', address, ...from, detail: failure }, [], {
        failed: { address, message: failure },
      });
      await log.finish();
      return result(false, diagnostics, d);
    }
    // The release it replaced becomes the rollback target: the one captured now, or — when the switch had already
    // happened before a kill (nothing to capture) — the release the lockfile still records as current.
    const captured = res.captured && res.captured.identity !== d.target.identity ? res.captured : undefined;
    const replaced = captured
      ? {
          identity: captured.identity,
          digest: captured.digest,
          releaseId: captured.releaseId,
          foreign: captured.foreign,
        }
      : d.current && d.current.identity !== d.target.identity
        ? { identity: d.current.identity, digest: d.current.digest, releaseId: d.current.releaseId, foreign: false }
        : null;
    const entry = res.locked!;
    await step(
      {
        event: 'resource.apply',
        result: 'ok',
        address,
        action: 'update',
        ...from,
        after: { identity: entry.identity, digest: entry.digest },
        detail: `rollback: current → ${d.target.releaseId}`,
      },
      [
        { op: 'resource.set', entry: { ...entry, commit: lock0.commit, appliedAt: new Date().toISOString() } },
        {
          op: 'release.set',
          workload: opts.workload,
          release: { identity: entry.identity, digest: entry.digest, releaseId: d.target.releaseId },
        },
        ...(replaced ? [rollbackOp(opts.workload, replaced)] : []),
      ],
      { done: address },
    );
  }

  // Units name their release directory: point this workload's units at the restored release too, with the
  // configuration they were last applied with, and restart only those whose unit changed.
  const unitDiags = await rollUnits(opts, log, d.target.releaseId, step);
  diagnostics.push(...unitDiags);
  const ok = !unitDiags.some((x) => x.severity === 'error');
  await step({
    event: 'release.rollback',
    result: ok ? 'ok' : 'failed',
    address,
    ...from,
    after: { identity: d.target.identity, digest: d.target.digest },
    detail: `rolled back to ${d.target.releaseId}`,
  });
  await log.finish();
  return result(ok, diagnostics, d);
}

async function rollUnits(
  o: RollbackOptions,
  log: ApplyLogHandle,
  releaseId: string,
  step: (
    entry: Omit<AuditEntry, 'host' | 'operation' | 'applyId'>,
    ops?: LockfileOp[],
    marks?: AppendMarks,
  ) => Promise<void>,
): Promise<Diagnostic[]> {
  const diagnostics: Diagnostic[] = [];
  const registry = builtInRegistry();
  const ctx = hostContext(o.root, o.host, '');
  const current = log.lock;
  for (const [address, entry] of Object.entries(current.resources).sort()) {
    if (!entry || entry.workload !== o.workload || !address.startsWith('unit.') || log.isDone(address)) continue;
    const provider = registry.get(entry.provider);
    const config = entry.attributes?.config as Record<string, unknown> | undefined;
    if (!provider || !config) continue;
    const desired: DesiredResource = {
      address,
      provider: entry.provider,
      workload: entry.workload,
      identity: entry.identity,
      config: { ...config, releaseId },
      dependsOn: [],
    };
    const live = (await provider.read({ host: ctx, address, desired, locked: entry })).live;
    const planned = provider.plan({ address, desired, live, locked: entry });
    if (planned.action === 'noop') continue;
    const change: PlannedChange = {
      address,
      provider: entry.provider,
      workload: entry.workload,
      action: planned.action,
      effect: planned.effect,
      reasons: [{ code: 'rollback', message: `run the restored release ${releaseId}` }],
      before: { identity: entry.identity, digest: entry.digest },
      after: { identity: desired.identity },
      desired,
      dependsOn: [],
    };
    o.progress?.(`${address}: ${planned.action} (${planned.effect}) to run ${releaseId}`);
    const applied = await provider.apply({ host: ctx, change, locked: entry });
    faultPoint();
    diagnostics.push(...applied.diagnostics);
    const good = applied.locked !== undefined && !applied.diagnostics.some((x) => x.severity === 'error');
    await step(
      {
        event: 'resource.apply',
        result: good ? 'ok' : 'failed',
        address,
        action: planned.action,
        before: { identity: entry.identity, digest: entry.digest },
        ...(applied.locked ? { after: { identity: applied.locked.identity, digest: applied.locked.digest } } : {}),
        detail: `rollback: run ${releaseId}`,
      },
      good
        ? [
            {
              op: 'resource.set',
              entry: { ...applied.locked!, commit: current.commit, appliedAt: new Date().toISOString() },
            },
          ]
        : [],
      good
        ? { done: address }
        : {
            failed: { address, message: applied.diagnostics.find((x) => x.severity === 'error')?.summary ?? 'failed' },
          },
    );
  }
  return diagnostics;
}
