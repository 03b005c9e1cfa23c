// Use cases behind `agentvm fleet status|plan` (ADR 0017): the fleet as the hosts' agents published it to the shared
// backend. `status` is one query (no per-host round trips: a thousand hosts answer in well under a second);
// `plan` makes each host's remote plan of one commit and sums them up.

import { loadDesiredState } from './desired.js';
import { makeRemotePlan, sharedBackend } from './remote-plan.js';
import { worstAction, worstEffect, type Action, type Effect } from '../engine/types.js';
import { AgentvmError } from '../diagnostics/index.js';
import type { FleetStatusDocument } from '../generated/fleet-status-result.js';
import { rolloutGate, waveOf, type RolloutConfig } from './rollout.js';
import type { AgentReport } from './agent.js';

export interface FleetHostStatus {
  host: string;
  /** The commit the host applied (its lockfile's). */
  commit: string | null;
  /** The commit its agent is converging to. */
  target: string | null;
  status: string | null;
  reason: string | null;
  healthy: boolean | null;
  failingUnits: string[];
  drift: number;
  lastSeen: string | null;
  ageSeconds: number | null;
  /** Who holds the host's lease now, if anyone (`expired`: it may be taken over). */
  lease: { who: string; operation: string; pid: number; hostname: string; expires: string; expired: boolean } | null;
}

export interface FleetStatusResult {
  formatVersion: 1;
  backend: string;
  hosts: FleetHostStatus[];
}

// `fleet status --json` must stay what schemas/fleet-status-result.schema.json says (this fails to compile otherwise).
const _matchesSchema = (r: FleetStatusResult): FleetStatusDocument => r;
void _matchesSchema;

export async function fleetStatus(root: string): Promise<FleetStatusResult> {
  const backend = sharedBackend(root, '`agentvm fleet status`');
  const rows = await backend.fleetRows();
  return {
    formatVersion: 1,
    backend: backend.location,
    hosts: rows.map((r) => {
      const s = r.summary as Partial<AgentReport> | null;
      return {
        host: r.host,
        commit: s?.commit ?? r.lockCommit ?? null,
        target: s?.target ?? null,
        status: r.status,
        reason: s?.reason ?? s?.health?.reason ?? null,
        healthy: s?.health ? s.health.ok : null,
        failingUnits: s?.health?.failing ?? [],
        drift: s?.drift?.length ?? 0,
        lastSeen: r.publishedAt,
        ageSeconds: r.ageSeconds,
        lease: r.lease ? { who: r.lease.who, operation: r.lease.operation, pid: r.lease.pid, hostname: r.lease.hostname, expires: r.lease.expires, expired: r.leaseExpired === true } : null,
      };
    }),
  };
}

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

export async function fleetPlan(opts: { repo: string; ref: string; root: string; exclude: string[] }): Promise<FleetPlanResult> {
  const backend = sharedBackend(opts.root, '`agentvm fleet plan`');
  const { state } = await loadDesiredState(opts.repo, opts.ref);
  const commit = state.commit ?? null;
  const rollout = ((state.config?.value as { spec?: { rollout?: RolloutConfig } } | undefined)?.spec?.rollout ?? {}) as RolloutConfig;
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
      hosts.push({ host, wave, rollout: rolloutText, published: true, ageSeconds: plan.remote?.ageSeconds ?? null, changes, worstAction: plan.summary.worstAction, worstEffect: plan.summary.worstEffect, errors: plan.summary.errors });
    } catch (error) {
      if (!(error instanceof AgentvmError) || error.code !== 'plan.no-published-facts') throw error;
      unpublished.push(host);
      hosts.push({ host, wave, rollout: rolloutText, published: false, ageSeconds: null, changes: 0, worstAction: 'noop', worstEffect: 'none', errors: 0 });
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
