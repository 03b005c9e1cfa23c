// Use case: roll a workload's release back to the rollback target recorded in the lockfile (the release that was
// live before the last change, captured before anything changed). Same dry-run rules as apply: without approval
// it only shows what it would do. The switch is verified byte for byte against the recorded digest; the release
// it replaces becomes the new rollback target, so a rollback can itself be undone.

import { randomUUID } from 'node:crypto';
import { AgentvmError, userError, type Diagnostic } from '../diagnostics/index.js';
import { releaseAddress } from '../providers/release/index.js';
import type { DesiredResource, LockedResource, PlannedChange } from '../model/resources.js';
import type { CapturedRelease, HostContext } from '../providers/provider.js';
import { GitReleaseProvider, PackageReleaseProvider, type RollbackResponse } from '../providers/release/index.js';
import { withAuditHead, withRelease, withResource, withRollbackTarget, type Lockfile } from '../state/index.js';
import { hostContext, stateBackend } from './plan.js';
import { builtInRegistry } from './registry.js';
import type { RollbackResultDocument } from '../generated/rollback-result.js';

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
    if (!lock) throw userError('rollback.no-state', `Nothing was ever applied to host \`${opts.host}\` under ${opts.root}.`, 'Check --host and --root; `agentvm state list` shows the hosts with state.');
    const wl = lock.workloads[opts.workload];
    const target = wl?.rollback;
    if (!target) {
      const known = Object.keys(lock.workloads).sort();
      throw userError('rollback.no-target', `Workload \`${opts.workload}\` on host \`${opts.host}\` has no recorded rollback target.`, known.includes(opts.workload) ? 'A rollback target is recorded when a release replaces another; this workload has had only one release so far.' : `Workloads with state on this host: ${known.join(', ') || 'none'}.`);
    }
    const locked = lock.resources[address] as LockedResource | undefined;
    return { target, locked, current: wl?.release };
  };

  const preview = describe(await backend.readLockfile(opts.host));
  const result = (applied: boolean, diagnostics: Diagnostic[], d = preview): RollbackResult => ({
    formatVersion: 1,
    host: opts.host,
    workload: opts.workload,
    address,
    applied,
    from: d.current ? { identity: d.current.identity, releaseId: d.current.releaseId, digest: d.current.digest } : d.locked ? { identity: d.locked.identity, digest: d.locked.digest } : null,
    to: { identity: d.target.identity, releaseId: d.target.releaseId, digest: d.target.digest, foreign: d.target.foreign },
    diagnostics,
  });
  if (!opts.approve) return result(false, []);

  const lease = await backend.acquireLease(opts.host, 'rollback');
  try {
    let lock = (await backend.readLockfile(opts.host))!;
    const rollUnits = async (current: Lockfile, o: RollbackOptions, ctx: HostContext, releaseId: string, applyId: string): Promise<{ lock: Lockfile; diagnostics: Diagnostic[] }> => {
      const diagnostics: Diagnostic[] = [];
      const registry = builtInRegistry();
      let next = current;
      for (const [address, entry] of Object.entries(current.resources).sort()) {
        if (!entry || entry.workload !== o.workload || !address.startsWith('unit.')) continue;
        const provider = registry.get(entry.provider);
        const config = entry.attributes?.config as Record<string, unknown> | undefined;
        if (!provider || !config) continue;
        const desired: DesiredResource = { address, provider: entry.provider, workload: entry.workload, identity: entry.identity, config: { ...config, releaseId }, dependsOn: [] };
        const live = (await provider.read({ host: ctx, address, desired, locked: entry })).live;
        const planned = provider.plan({ address, desired, live, locked: entry });
        if (planned.action === 'noop') continue;
        const change: PlannedChange = { address, provider: entry.provider, workload: entry.workload, action: planned.action, effect: planned.effect, reasons: [{ code: 'rollback', message: `run the restored release ${releaseId}` }], before: { identity: entry.identity, digest: entry.digest }, after: { identity: desired.identity }, desired, dependsOn: [] };
        o.progress?.(`${address}: ${planned.action} (${planned.effect}) to run ${releaseId}`);
        const applied = await provider.apply({ host: ctx, change, locked: entry });
        diagnostics.push(...applied.diagnostics);
        const good = applied.locked !== undefined && !applied.diagnostics.some((x) => x.severity === 'error');
        if (good) next = withResource(next, { ...applied.locked!, commit: next.commit, appliedAt: new Date().toISOString() });
        await backend.appendAudit({ host: o.host, operation: 'rollback', event: 'resource.apply', result: good ? 'ok' : 'failed', address, action: planned.action, applyId, before: { identity: entry.identity, digest: entry.digest }, ...(applied.locked ? { after: { identity: applied.locked.identity, digest: applied.locked.digest } } : {}), detail: `rollback: run ${releaseId}` });
      }
      return { lock: next, diagnostics };
    };
    const d = describe(lock);
    const providerType = d.locked?.provider ?? (/^[0-9a-f]{40}$/.test(d.target.releaseId) ? 'release.git' : 'release.package');
    const provider = providerType === 'release.git' ? new GitReleaseProvider() : providerType === 'release.package' ? new PackageReleaseProvider() : undefined;
    if (!provider) throw new AgentvmError('rollback.unsupported', `Provider \`${providerType}\` of ${address} cannot roll back.`);
    const context = hostContext(opts.root, opts.host, '');
    const applyId = randomUUID();
    let captured: CapturedRelease | null = null;
    const res: RollbackResponse = await provider.rollbackTo(context, opts.workload, d.target.releaseId, d.target.digest, {
      identity: d.target.identity,
      ...(d.locked ? { locked: d.locked } : {}),
      ...(opts.progress ? { progress: opts.progress } : {}),
      beforeMutation: async (c) => {
        captured = c;
      },
    });
    const ok = res.locked !== undefined && !res.diagnostics.some((x) => x.severity === 'error');
    if (ok) {
      const entry = res.locked!;
      let next = withResource(lock, { ...entry, commit: lock.commit, appliedAt: new Date().toISOString() });
      next = withRelease(next, opts.workload, { identity: entry.identity, digest: entry.digest, releaseId: d.target.releaseId });
      const was = captured as CapturedRelease | null;
      next = withRollbackTarget(next, opts.workload, was ? { identity: was.identity, digest: was.digest, releaseId: was.releaseId, foreign: was.foreign, capturedAt: new Date().toISOString() } : null);
      lock = await backend.writeLockfile(opts.host, next, lease);
    }
    // Units name their release directory: point this workload's units at the restored release too, with the
    // configuration they were last applied with, and restart only those whose unit changed.
    const unitDiags: Diagnostic[] = [];
    if (ok) {
      const units = await rollUnits(lock, opts, context, d.target.releaseId, applyId);
      lock = units.lock;
      unitDiags.push(...units.diagnostics);
    }
    const ev = await backend.appendAudit({
      host: opts.host,
      operation: 'rollback',
      event: 'release.rollback',
      result: ok ? 'ok' : 'failed',
      address,
      applyId,
      ...(d.current ? { before: { identity: d.current.identity, digest: d.current.digest } } : {}),
      after: { identity: d.target.identity, digest: d.target.digest },
      detail: ok ? `rolled back to ${d.target.releaseId}` : (res.diagnostics.find((x) => x.severity === 'error')?.summary ?? 'failed'),
    });
    await backend.writeLockfile(opts.host, withAuditHead(lock, { seq: ev.seq, hash: ev.hash }), lease);
    return result(ok && !unitDiags.some((x) => x.severity === 'error'), [...res.diagnostics, ...unitDiags], d);
  } finally {
    await lease.release();
  }
}
