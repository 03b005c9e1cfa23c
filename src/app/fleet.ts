// Use case behind `agentvm fleet plan` (ADR 0017): each host's remote plan of one commit, summed up (`fleet status`
// is in fleet-status.ts, which loads none of the planner).

import { loadDesiredState } from './desired.js';
import { makeRemotePlan, sharedBackend } from './remote-plan.js';
import { worstAction, worstEffect, type Action, type Effect } from '../model/resources.js';
import { AgentvmError } from '../diagnostics/index.js';
import { rolloutGate, waveOf, type RolloutConfig } from './rollout.js';

export interface FleetPlanResult {
  formatVersion: 1;
  commit: string | null;
  hosts: Array<{
    host: string;
    wave: string;
    /** Whether the rollout would let this host apply now (from the published facts). */
    rollout: string;
    published: boolean;
    ageSeconds: number | null;
    changes: number;
    worstAction: Action;
    worstEffect: Effect;
    errors: number;
  }>;
  changing: string[];
  unpublished: string[];
  worstAction: Action;
  worstEffect: Effect;
}

export async function fleetPlan(opts: {
  repo: string;
  ref: string;
  root: string;
  exclude: string[];
}): Promise<FleetPlanResult> {
  const backend = sharedBackend(opts.root, '`agentvm fleet plan`');
  const { state } = await loadDesiredState(opts.repo, opts.ref);
  const commit = state.commit ?? null;
  const rollout = ((state.config?.value as { spec?: { rollout?: RolloutConfig } } | undefined)?.spec?.rollout ??
    {}) as RolloutConfig;
  const merged: RolloutConfig = { ...rollout, exclude: [...(rollout.exclude ?? []), ...opts.exclude] };
  const rows = await backend.fleetRows();
  const hosts: FleetPlanResult['hosts'] = [];
  const unpublished: string[] = [];
  for (const host of [...state.hosts.keys()].sort()) {
    if (opts.exclude.includes(host)) continue;
    const wave = waveOf(merged, host).name;
    const gate = commit ? rolloutGate(merged, host, commit, rows) : undefined;
    const rolloutText = !gate ? 'uncommitted' : gate.allowed ? 'may apply now' : gate.reason;
    try {
      const { plan } = await makeRemotePlan({ repo: opts.repo, ref: opts.ref, host, root: opts.root });
      const changes = plan.changes.filter((c) => c.action !== 'noop').length;
      hosts.push({
        host,
        wave,
        rollout: rolloutText,
        published: true,
        ageSeconds: plan.remote?.ageSeconds ?? null,
        changes,
        worstAction: plan.summary.worstAction,
        worstEffect: plan.summary.worstEffect,
        errors: plan.summary.errors,
      });
    } catch (error) {
      if (!(error instanceof AgentvmError) || error.code !== 'plan.no-published-facts') throw error;
      unpublished.push(host);
      hosts.push({
        host,
        wave,
        rollout: rolloutText,
        published: false,
        ageSeconds: null,
        changes: 0,
        worstAction: 'noop',
        worstEffect: 'none',
        errors: 0,
      });
    }
  }
  return {
    formatVersion: 1,
    commit,
    hosts,
    changing: hosts.filter((h) => h.changes > 0).map((h) => h.host),
    unpublished,
    worstAction: worstAction(hosts.map((h) => h.worstAction)),
    worstEffect: worstEffect(hosts.map((h) => h.worstEffect)),
  };
}
