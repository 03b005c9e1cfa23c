// Rollout waves (ADR 0017): agentvm.yaml may declare `spec.rollout.waves`, each a list of host selectors with an
// optional pause, so a new commit reaches the canary wave first and every later wave only after each host of the
// waves before it applied that commit cleanly and reports healthy (and the wave's pause has passed). Hosts matching
// no wave form a last, implicit wave. `exclude` hosts are left out entirely; a host not seen for
// `deferUnseenAfterSeconds` is deferred (does not hold the rollout back) and catches up when it returns.
// The gate is evaluated by each host's agent from the facts every host published: there is no coordinator to fail.

import type { FleetRow } from '../state/postgres/backend.js';

export interface RolloutWave {
  name: string;
  hosts: string[];
  pauseSeconds?: number;
}

export interface RolloutConfig {
  waves?: RolloutWave[];
  exclude?: string[];
  deferUnseenAfterSeconds?: number;
}

export const DEFAULT_DEFER_UNSEEN_SECONDS = 3600;

export type Gate =
  | { allowed: true; wave: string }
  | { allowed: false; wave: string; state: 'waiting' | 'stopped' | 'excluded'; reason: string };

/** `*` matches any run of characters; everything else literally. */
export function selectorMatches(selector: string, host: string): boolean {
  const re = new RegExp(
    `^${selector
      .split('*')
      .map((p) => p.replace(/[.+?^${}()|[\]\\-]/g, '\\$&'))
      .join('.*')}$`,
  );
  return re.test(host);
}

export function waveOf(config: RolloutConfig, host: string): { index: number; name: string } {
  const waves = config.waves ?? [];
  const i = waves.findIndex((w) => w.hosts.some((s) => selectorMatches(s, host)));
  return i === -1 ? { index: waves.length, name: 'rest' } : { index: i, name: waves[i]!.name };
}

/** What a host's published facts say about commit `commit`: done (applied, healthy), failed (why), or not yet. */
export function hostProgress(
  row: FleetRow,
  commit: string,
): { state: 'done' | 'failed' | 'pending'; reason?: string; at?: string } {
  const s = row.summary as {
    commit?: string | null;
    target?: string;
    status?: string;
    reason?: string;
    health?: { ok?: boolean; reason?: string };
  } | null;
  if (!s) return { state: 'pending' };
  if (s.target === commit && (s.status === 'failed' || s.status === 'blocked' || s.health?.ok === false)) {
    return {
      state: 'failed',
      reason:
        s.health?.ok === false
          ? `unhealthy: ${s.health.reason ?? 'health check failed'}`
          : `${s.status}: ${s.reason ?? ''}`.trim(),
    };
  }
  if (s.commit === commit && s.health?.ok !== false && (s.status === 'applied' || s.status === 'no-changes'))
    return { state: 'done', ...(row.publishedAt ? { at: row.publishedAt } : {}) };
  return { state: 'pending' };
}

/** Whether `host` may apply `commit` now, given every host's published facts. */
export function rolloutGate(
  config: RolloutConfig,
  host: string,
  commit: string,
  rows: readonly FleetRow[],
  now: Date = new Date(),
): Gate {
  const mine = waveOf(config, host);
  if ((config.exclude ?? []).some((s) => selectorMatches(s, host)))
    return {
      allowed: false,
      wave: mine.name,
      state: 'excluded',
      reason: `${host} is excluded from rollouts (spec.rollout.exclude)`,
    };
  const waves = config.waves ?? [];
  const defer = config.deferUnseenAfterSeconds ?? DEFAULT_DEFER_UNSEEN_SECONDS;
  for (let v = 0; v < mine.index; v++) {
    const wave = waves[v]!;
    const members = rows.filter(
      (r) =>
        r.host !== host &&
        waveOf(config, r.host).index === v &&
        !(config.exclude ?? []).some((s) => selectorMatches(s, r.host)),
    );
    let last = 0;
    for (const r of members) {
      const p = hostProgress(r, commit);
      if (p.state === 'failed')
        return {
          allowed: false,
          wave: mine.name,
          state: 'stopped',
          reason: `rollout of ${commit.slice(0, 12)} stopped at wave ${wave.name}: host ${r.host} ${p.reason}`,
        };
      if (p.state === 'pending') {
        if (r.ageSeconds === null || r.ageSeconds > defer) continue; // deferred: unreachable, catches up later
        return {
          allowed: false,
          wave: mine.name,
          state: 'waiting',
          reason: `waiting for wave ${wave.name}: host ${r.host} has not applied ${commit.slice(0, 12)} healthily yet`,
        };
      }
      last = Math.max(last, Date.parse(p.at ?? '') || 0);
    }
    const until = last + (wave.pauseSeconds ?? 0) * 1000;
    if (members.length > 0 && until > now.getTime())
      return {
        allowed: false,
        wave: mine.name,
        state: 'waiting',
        reason: `wave ${wave.name} is in its pause until ${new Date(until).toISOString()}`,
      };
  }
  return { allowed: true, wave: mine.name };
}
