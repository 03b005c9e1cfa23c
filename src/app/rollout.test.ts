// Unit tests of the rollout gate (a pure function of the waves and every host's published facts): order of waves,
// a failed or unhealthy host stopping the rollout with its reason, pauses, exclusion, deferral of unseen hosts.
// test/fleet-rollout.test.ts runs the same gate through 50 real agent processes.

import { describe, expect, it } from 'vitest';
import type { FleetRow } from '../state/postgres/backend.js';
import { rolloutGate, selectorMatches, waveOf, type RolloutConfig } from './rollout.js';

const C = 'c'.repeat(40);
const OLD = 'b'.repeat(40);
const NOW = new Date('2026-12-07T12:00:00Z');
const config: RolloutConfig = {
  waves: [
    { name: 'canary', hosts: ['edge-1'] },
    { name: 'early', hosts: ['edge-2', 'edge-3'], pauseSeconds: 600 },
  ],
};

function row(host: string, summary: Record<string, unknown> | null, ageSeconds = 10): FleetRow {
  return {
    host,
    publishedAt: new Date(NOW.getTime() - ageSeconds * 1000).toISOString(),
    ageSeconds,
    commit: (summary?.commit as string | undefined) ?? null,
    status: (summary?.status as string | undefined) ?? null,
    summary,
    lockCommit: null,
    serial: 1,
    lease: null,
    leaseExpired: null,
  };
}
const done = (host: string, ageSeconds = 10) =>
  row(host, { commit: C, target: C, status: 'applied', health: { ok: true } }, ageSeconds);
const pending = (host: string, ageSeconds = 10) =>
  row(host, { commit: OLD, target: OLD, status: 'applied', health: { ok: true } }, ageSeconds);

describe('rollout waves', () => {
  it('selectors: exact names and * globs; hosts in no wave go last', () => {
    expect(selectorMatches('edge-*', 'edge-12')).toBe(true);
    expect(selectorMatches('edge-*', 'core-1')).toBe(false);
    expect(selectorMatches('edge-1', 'edge-12')).toBe(false);
    expect(waveOf(config, 'edge-3')).toEqual({ index: 1, name: 'early' });
    expect(waveOf(config, 'db-1')).toEqual({ index: 2, name: 'rest' });
  });

  it('the canary goes first; later waves wait for every host of the waves before them', () => {
    expect(rolloutGate(config, 'edge-1', C, [pending('edge-1')], NOW)).toEqual({ allowed: true, wave: 'canary' });
    const waiting = rolloutGate(config, 'edge-2', C, [pending('edge-1'), pending('edge-2')], NOW);
    expect(waiting).toMatchObject({
      allowed: false,
      state: 'waiting',
      reason: expect.stringContaining('waiting for wave canary: host edge-1'),
    });
    expect(rolloutGate(config, 'edge-2', C, [done('edge-1'), pending('edge-2')], NOW).allowed).toBe(true);
  });

  it('a failed or unhealthy host of an earlier wave stops the rollout and says where and why', () => {
    const unhealthy = row('edge-1', {
      commit: C,
      target: C,
      status: 'applied',
      health: { ok: false, reason: 'health check exited 1: 503' },
    });
    expect(rolloutGate(config, 'edge-9', C, [unhealthy], NOW)).toMatchObject({
      allowed: false,
      state: 'stopped',
      reason: expect.stringMatching(/stopped at wave canary: host edge-1 unhealthy: health check exited 1: 503/),
    });
    const failed = row('edge-1', {
      commit: OLD,
      target: C,
      status: 'failed',
      reason: 'release.research: fetch failed',
      health: { ok: true },
    });
    expect(rolloutGate(config, 'edge-2', C, [failed], NOW)).toMatchObject({
      state: 'stopped',
      reason: expect.stringContaining('host edge-1 failed: release.research: fetch failed'),
    });
    // A failure at ANOTHER commit does not stop this one.
    const oldFailure = row('edge-1', { commit: OLD, target: OLD, status: 'failed', health: { ok: true } });
    expect(rolloutGate(config, 'edge-2', C, [oldFailure], NOW).allowed).toBe(false);
    expect(rolloutGate(config, 'edge-2', C, [oldFailure], NOW)).toMatchObject({ state: 'waiting' });
  });

  it('a wave pause holds the next wave after the last host of it applied', () => {
    const rows = [done('edge-1'), done('edge-2', 60), done('edge-3', 120)];
    expect(rolloutGate(config, 'db-1', C, rows, NOW)).toMatchObject({
      state: 'waiting',
      reason: expect.stringContaining('wave early is in its pause until'),
    });
    const later = [done('edge-1'), done('edge-2', 700), done('edge-3', 900)];
    expect(rolloutGate(config, 'db-1', C, later, NOW).allowed).toBe(true);
  });

  it('excluded hosts never apply and never hold others; unseen hosts are deferred, not waited for', () => {
    const excluding: RolloutConfig = { ...config, exclude: ['edge-1'] };
    expect(rolloutGate(excluding, 'edge-1', C, [], NOW)).toMatchObject({ allowed: false, state: 'excluded' });
    expect(rolloutGate(excluding, 'edge-2', C, [pending('edge-1')], NOW).allowed).toBe(true);
    const silent = pending('edge-1', 7200);
    expect(rolloutGate(config, 'edge-2', C, [silent], NOW).allowed).toBe(true);
    expect(rolloutGate({ ...config, deferUnseenAfterSeconds: 86400 }, 'edge-2', C, [silent], NOW).allowed).toBe(false);
  });
});
