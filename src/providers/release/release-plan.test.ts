// Tests of planRelease: the decision table in release-plan.ts, case by case.

import { describe, expect, it } from 'vitest';
import type { DesiredResource, LiveResource, LockedResource } from '../../model/resources.js';
import { planRelease } from './release-plan.js';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const address = 'release.core';
const desired = (identity: string): DesiredResource => ({
  address,
  provider: 'release.git',
  workload: 'core',
  config: { repo: '/src', commit: identity },
  dependsOn: [],
  identity,
});
const locked = (identity: string, digest: string): LockedResource => ({
  address,
  provider: 'release.git',
  workload: 'core',
  identity,
  digest,
  commit: null,
  appliedAt: '2025-01-01T00:00:00Z',
  attributes: { releaseId: identity },
});
const live = (identity?: string, digest?: string): LiveResource =>
  identity === undefined && digest === undefined
    ? { address, provider: 'release.git', exists: false }
    : {
        address,
        provider: 'release.git',
        exists: true,
        ...(identity ? { identity } : {}),
        ...(digest ? { digest } : {}),
      };

const codes = (reasons: Array<{ code: string }>): string[] => reasons.map((r) => r.code);

describe('planRelease', () => {
  it('is a noop when the live release is the locked one and the desired one', () => {
    const plan = planRelease({
      address,
      desired: desired(A),
      live: live(A, 'sha256:1'),
      locked: locked(A, 'sha256:1'),
    });
    expect(plan).toEqual({ action: 'noop', effect: 'none', reasons: [], drift: [], diagnostics: [] });
  });

  it('creates when nothing is live or locked', () => {
    const plan = planRelease({ address, desired: desired(A), live: live() });
    expect([plan.action, plan.effect, codes(plan.reasons), plan.drift]).toEqual(['create', 'restart', ['new'], []]);
  });

  it('updates with a restart when the commit changes', () => {
    const plan = planRelease({
      address,
      desired: desired(B),
      live: live(A, 'sha256:1'),
      locked: locked(A, 'sha256:1'),
    });
    expect([plan.action, plan.effect, codes(plan.reasons), plan.drift]).toEqual([
      'update',
      'restart',
      ['source-changed'],
      [],
    ]);
  });

  it('replaces and reports drift when the live files were edited', () => {
    const plan = planRelease({
      address,
      desired: desired(A),
      live: live(A, 'sha256:edited'),
      locked: locked(A, 'sha256:1'),
    });
    expect([plan.action, plan.effect, codes(plan.reasons), codes(plan.drift)]).toEqual([
      'replace',
      'restart',
      ['live-modified'],
      ['live-modified'],
    ]);
  });

  it('replaces and reports drift when current was switched by hand', () => {
    const plan = planRelease({
      address,
      desired: desired(A),
      live: live(B, 'sha256:2'),
      locked: locked(A, 'sha256:1'),
    });
    expect([plan.action, codes(plan.drift)]).toEqual(['replace', ['live-modified']]);
  });

  it('replaces and reports drift when the release is gone, also naming a source change', () => {
    const plan = planRelease({ address, desired: desired(B), live: live(), locked: locked(A, 'sha256:1') });
    expect([plan.action, codes(plan.reasons), codes(plan.drift)]).toEqual([
      'replace',
      ['live-missing', 'source-changed'],
      ['live-missing'],
    ]);
  });

  it('captures a live release agentvm never applied', () => {
    const plan = planRelease({ address, desired: desired(A), live: live('hand-made', 'sha256:h') });
    expect([plan.action, codes(plan.reasons), plan.drift]).toEqual(['update', ['captured', 'source-changed'], []]);
  });

  it('deletes what is no longer desired, and does nothing when nothing is left', () => {
    expect(codes(planRelease({ address, live: live(A, 'sha256:1'), locked: locked(A, 'sha256:1') }).reasons)).toEqual([
      'removed',
    ]);
    expect(planRelease({ address, live: live(A, 'sha256:1'), locked: locked(A, 'sha256:1') }).action).toBe('delete');
    expect(planRelease({ address, live: live() }).action).toBe('noop');
  });
});
