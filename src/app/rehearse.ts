// Use case: rehearse a workload's rollback on its canary profile, and record the result in the lockfile (the "tested
// rollback" control: plan refuses a promotion C → N of a high/critical service without a passed rehearsal of exactly
// N → C, governance/rules/promotion.ts). Under the host's lease, with one audit record per step:
//   1. install   release N (the repository's pin at --ref), signature-verified, through the release provider; the
//                release dir N is then installed next to C (`current` moves to N until step 4)
//   2. promote   the canary unit only, to its desired configuration at --ref (release N): restart, health check and
//                the canary soak (systemd provider); a failure there is already rolled back by the provider
//   3. roll back the canary unit to its applied configuration (the lockfile entry, release C): restart + health
//   4. restore   `current` back to C, verified byte for byte against the lockfile's digest
// The rehearsal passed when 2 and 3 both ended healthy. Nothing else changes: the lockfile keeps C as the release
// and the canary's applied entry (steps 2–3 are not applies), and gains one `rehearsal.add` (fromIdentity N, the
// release rolled back from; toIdentity C, the rollback target restored).
// Refused before anything changes: no release live yet (a first install needs no rollback), the repository pins the
// live release, no canary, the canary not deployed, or error diagnostics in the desired state.

import { randomUUID } from 'node:crypto';
import { AgentvmError, hasErrors, userError, type Diagnostic } from '../diagnostics/index.js';
import { expandHost } from '../engine/expand.js';
import { releaseAddress } from '../providers/release/index.js';
import type { DesiredResource, LockedResource, PlannedChange } from '../model/resources.js';
import type { ApplyResponse, HostContext, Provider } from '../providers/provider.js';
import { GitReleaseProvider, PackageReleaseProvider } from '../providers/release/index.js';
import { withAuditHead, withRehearsal, type AuditEntry, type RollbackRehearsal } from '../state/index.js';
import { loadDesiredState, selectHost } from './desired.js';
import { hostContext, stateBackend } from './plan.js';
import { builtInRegistry, registryFor } from './registry.js';
import { verifierFor } from './signatures.js';
import type { RehearseResultDocument } from '../generated/rehearse-result.js';

export interface RehearseOptions {
  repo: string;
  ref: string;
  host?: string;
  root: string;
  workload: string;
  progress?: (message: string) => void;
}

export type RehearsalStepName = 'install' | 'promote' | 'rollback' | 'restore';

export interface RehearsalStep {
  step: RehearsalStepName;
  address: string;
  ok: boolean;
  detail: string;
}

/** The --json result; its type is generated from the schema (schemas/ are the source of truth). */
export type RehearseResult = RehearseResultDocument;

export async function runRehearse(opts: RehearseOptions): Promise<RehearseResult> {
  const progress = opts.progress ?? (() => {});
  const { state, diagnostics: stateDiags } = await loadDesiredState(opts.repo, opts.ref);
  if (hasErrors(stateDiags)) {
    throw new AgentvmError(
      'rehearse.desired-state-invalid',
      `The desired state at ${opts.ref} has ${stateDiags.filter((d) => d.severity === 'error').length} error(s); nothing was rehearsed.`,
      {
        diagnostics: stateDiags.filter((d) => d.severity === 'error'),
        detail: 'Fix the desired state (`agentvm validate`), then rehearse again.',
      },
    );
  }
  const host = selectHost(state, opts.host);
  const w = opts.workload;
  const desired = expandHost(state, host, builtInRegistry().expanders()).resources;
  const release = desired.find((r) => r.address === releaseAddress(w));
  if (!release) {
    const known = [...new Set(desired.map((r) => r.workload))].sort();
    throw userError(
      'rehearse.unknown-workload',
      `Workload \`${w}\` has no release on host \`${host}\`.`,
      `Workloads of ${host}: ${known.join(', ') || 'none'}.`,
    );
  }
  const canaryProfile = state.workloads.get(w)?.manifest?.value.spec.canary?.profile;
  const canaryDesired = canaryProfile ? desired.find((r) => r.address === `unit.${w}.${canaryProfile}`) : undefined;
  if (!canaryDesired) {
    throw userError(
      'rehearse.no-canary',
      `Workload \`${w}\` has no canary profile to rehearse on.`,
      'Add `canary: { profile: <one of its profiles>, soakSeconds: 60 }` to its manifest; a rollback is rehearsed on that profile only.',
    );
  }

  const backend = stateBackend(opts.root);
  const lease = await backend.acquireLease(host, 'rehearse');
  try {
    const lock = await backend.readLockfile(host);
    const current = lock?.workloads[w]?.release;
    if (!lock || !current) {
      throw userError(
        'rehearse.nothing-live',
        `Workload \`${w}\` has no release applied on host \`${host}\`, so there is nothing to roll back to.`,
        'A first install needs no rehearsal: apply it, then rehearse the next promotion.',
      );
    }
    if (current.identity === release.identity) {
      throw userError(
        'rehearse.same-release',
        `The repository at ${opts.ref} pins the live release of \`${w}\` (${current.releaseId}).`,
        'Commit the promotion first (`agentvm promote`), then rehearse it before applying.',
      );
    }
    const canaryLocked = lock.resources[canaryDesired.address];
    if (!canaryLocked || typeof canaryLocked.attributes?.config !== 'object') {
      throw userError(
        'rehearse.canary-not-deployed',
        `The canary ${canaryDesired.address} has not been applied on host \`${host}\`.`,
        `Apply the commit that is live now first, so the canary runs ${current.releaseId}.`,
      );
    }
    const nextReleaseId =
      typeof canaryDesired.config.releaseId === 'string' ? canaryDesired.config.releaseId : release.identity;

    const { registry } = await registryFor(state);
    const releaseProvider = registry.get(release.provider);
    const systemd = registry.get(canaryDesired.provider);
    if (!releaseProvider || !systemd)
      throw new AgentvmError(
        'rehearse.provider-missing',
        `No provider for ${!releaseProvider ? release.address : canaryDesired.address}.`,
        { source: 'toolkit' },
      );
    const context = hostContext(opts.root, host, state.repo);
    const applyId = randomUUID();
    const diagnostics: Diagnostic[] = [];
    const steps: RehearsalStep[] = [];
    let head: { seq: number; hash: string } | undefined;
    const audit = async (entry: Omit<AuditEntry, 'host' | 'operation' | 'applyId'>): Promise<void> => {
      const ev = await backend.appendAudit({ host, operation: 'rehearse', applyId, ...entry });
      head = { seq: ev.seq, hash: ev.hash };
    };
    const step = async (name: RehearsalStepName, address: string, ok: boolean, detail: string): Promise<void> => {
      steps.push({ step: name, address, ok, detail });
      progress(`${name}: ${detail}`);
      await audit({ event: `rehearsal.${name}`, result: ok ? 'ok' : 'failed', address, detail });
    };
    await audit({
      event: 'rehearsal.start',
      result: 'started',
      address: canaryDesired.address,
      detail: `rehearse ${w}: canary ${canaryProfile} ${current.releaseId} → ${nextReleaseId} → ${current.releaseId}`,
    });

    // 1. Release N next to C (verified like apply verifies it; `current` follows, units do not: they name release ids).
    const verifier = verifierFor(state, release);
    const installed = await releaseProvider.apply({
      host: context,
      change: change(release, 'update', lock.resources[release.address]),
      ...(lock.resources[release.address] ? { locked: lock.resources[release.address] as LockedResource } : {}),
      progress,
      ...(verifier ? { verifyArtifact: async (bytes: Uint8Array) => (await verifier(bytes)).diagnostics } : {}),
    });
    diagnostics.push(...installed.diagnostics);
    const installOk = installed.locked !== undefined && !hasErrors(installed.diagnostics);
    await step(
      'install',
      release.address,
      installOk,
      installOk
        ? `release ${nextReleaseId} installed`
        : `release ${nextReleaseId} could not be installed: ${firstError(installed.diagnostics)}`,
    );

    let passed = false;
    if (installOk) {
      // 2. Promote the canary: restart, health, soak. The provider rolls a failure back to the locked entry (C).
      const promoted = await converge(systemd, context, canaryDesired, canaryLocked as LockedResource, progress);
      diagnostics.push(...promoted.diagnostics);
      const promoteOk = !hasErrors(promoted.diagnostics);
      await step(
        'promote',
        canaryDesired.address,
        promoteOk,
        promoteOk
          ? `${canaryDesired.address} runs ${nextReleaseId} and is healthy`
          : `${canaryDesired.address} failed on ${nextReleaseId}: ${firstError(promoted.diagnostics)}`,
      );

      // 3. Roll the canary back to its applied configuration and check it. When step 2 already rolled back and checked
      //    it, this is a no-op whose health was proven by that rollback (rolledBack `ok` means healthy again).
      const appliedConfig: DesiredResource = {
        ...canaryDesired,
        identity: canaryLocked.identity,
        config: canaryLocked.attributes!.config as Record<string, unknown>,
      };
      const back = await converge(systemd, context, appliedConfig, canaryLocked as LockedResource, progress);
      diagnostics.push(...back.diagnostics);
      const autoRolledBack = promoted.rolledBack?.result === 'ok';
      const backOk = !hasErrors(back.diagnostics) && (back.applied || autoRolledBack);
      await step(
        'rollback',
        canaryDesired.address,
        backOk,
        backOk
          ? `${canaryDesired.address} runs ${current.releaseId} again and is healthy`
          : `${canaryDesired.address} is not healthy on ${current.releaseId}: ${firstError(back.diagnostics)}`,
      );
      passed = promoteOk && backOk;
    }

    // 4. `current` back to C (byte for byte), whatever happened above.
    const restore = await restoreCurrent(context, release.provider, w, current, installed.locked, progress);
    diagnostics.push(...restore);
    await step(
      'restore',
      release.address,
      !hasErrors(restore),
      hasErrors(restore)
        ? `could not point ${w}/current back at ${current.releaseId}: ${firstError(restore)}`
        : `${w}/current → ${current.releaseId}`,
    );

    const rehearsal: RollbackRehearsal = {
      rehearsedAt: new Date().toISOString(),
      fromIdentity: release.identity,
      toIdentity: current.identity,
      result: passed ? 'passed' : 'failed',
      applyId,
      detail: steps
        .map((s) => `${s.step} ${s.ok ? 'ok' : 'failed'}: ${s.detail}`)
        .join('; ')
        .slice(0, 2000),
    };
    await audit({
      event: 'rehearsal.finish',
      result: passed ? 'ok' : 'failed',
      address: release.address,
      before: { identity: current.identity },
      after: { identity: release.identity },
      detail: `rollback ${nextReleaseId} → ${current.releaseId} on ${canaryDesired.address}: ${rehearsal.result}`,
    });
    await backend.writeLockfile(host, withAuditHead(withRehearsal(lock, w, rehearsal), head!), lease);
    return {
      formatVersion: 1,
      host,
      workload: w,
      canary: canaryDesired.address,
      from: { identity: release.identity, releaseId: nextReleaseId },
      to: { identity: current.identity, releaseId: current.releaseId },
      result: rehearsal.result,
      steps,
      rehearsal,
      diagnostics,
    };
  } finally {
    await lease.release();
  }
}

function change(
  desired: DesiredResource,
  action: PlannedChange['action'],
  locked: LockedResource | undefined,
  effect: PlannedChange['effect'] = 'none',
): PlannedChange {
  return {
    address: desired.address,
    provider: desired.provider,
    workload: desired.workload,
    action,
    effect,
    reasons: [{ code: 'source-changed', message: `rehearsal: ${desired.identity}` }],
    ...(locked ? { before: { identity: locked.identity, digest: locked.digest } } : {}),
    after: { identity: desired.identity },
    desired,
    dependsOn: [],
  };
}

/** read → plan → apply of one unit against its applied lockfile entry; `applied` is false when it was already so. */
async function converge(
  provider: Provider,
  host: HostContext,
  desired: DesiredResource,
  locked: LockedResource,
  progress: (m: string) => void,
): Promise<{ applied: boolean; diagnostics: Diagnostic[]; rolledBack?: ApplyResponse['rolledBack'] }> {
  const read = await provider.read({ host, address: desired.address, desired, locked });
  const planned = provider.plan({ address: desired.address, desired, live: read.live, locked });
  if (planned.action === 'noop')
    return { applied: false, diagnostics: planned.diagnostics.filter((d) => d.severity === 'error') };
  const res = await provider.apply({
    host,
    change: { ...change(desired, planned.action, locked, planned.effect), reasons: planned.reasons },
    locked,
    progress: (m) => progress(m),
  });
  return { applied: true, diagnostics: res.diagnostics, ...(res.rolledBack ? { rolledBack: res.rolledBack } : {}) };
}

async function restoreCurrent(
  host: HostContext,
  providerType: string,
  workload: string,
  current: { identity: string; digest: string; releaseId: string },
  installed: Omit<LockedResource, 'commit' | 'appliedAt'> | undefined,
  progress: (m: string) => void,
): Promise<Diagnostic[]> {
  const provider = [new GitReleaseProvider(), new PackageReleaseProvider()].find((p) => p.type === providerType);
  if (!provider)
    return [
      {
        code: 'rehearse.unsupported',
        severity: 'error',
        summary: `Provider \`${providerType}\` cannot switch ${workload} back to ${current.releaseId}.`,
        address: releaseAddress(workload),
      },
    ];
  const res = await provider.rollbackTo(host, workload, current.releaseId, current.digest, {
    identity: current.identity,
    ...(installed ? { locked: { ...installed, commit: null, appliedAt: new Date().toISOString() } } : {}),
    progress,
  });
  return res.diagnostics;
}

function firstError(diagnostics: readonly Diagnostic[]): string {
  return diagnostics.find((d) => d.severity === 'error')?.summary ?? 'no detail';
}
