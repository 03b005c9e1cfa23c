// promotionRules: canary before promotion and tested rollback, decided from the desired state, the lockfile and what
// the host runs. GIVEN a promotion C → N of a workload WHEN its canary or rehearsal is missing THEN the codes below.

import { describe, expect, it } from 'vitest';
import type { Lockfile } from '../../state/index.js';
import { stateOf, type FileMap } from '../policy.fixture.js';
import { promotionRules, type PromotionInput } from './promotion.js';

const C = 'a'.repeat(40);
const N = 'b'.repeat(40);

function files(
  o: { tier?: string; canary?: string; soak?: number; substrate?: 'service' | 'job'; tighten?: string } = {},
): FileMap {
  const tier = o.tier ?? 'high';
  const canary = o.canary === undefined ? 'research' : o.canary;
  return {
    ...(o.tighten
      ? {
          'agentvm.yaml': `apiVersion: agentvm.dev/v1alpha1\nkind: Config\nmetadata:\n  name: t\nspec:\n  policy:\n    tiers:\n      ${o.tighten}\n`,
        }
      : {}),
    'hosts/gw.yaml':
      'apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: gw\nspec:\n  workloads: [orch]\n',
    'workloads/orch/contract.yaml': `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadContract\nmetadata:\n  name: orch\nspec:\n  owner: a@example.com\n  riskTier: ${tier}\n  substrate: ${o.substrate ?? 'service'}\n`,
    'workloads/orch/manifest.yaml': `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadManifest\nmetadata:\n  name: orch\nspec:\n  archetype: git-release\n  source:\n    git:\n      repo: https://git.example.com/orch.git\n      commit: ${N}\n  profiles:\n    - name: core\n      entrypoint: [python3, -m, orchestrator]\n    - name: research\n      entrypoint: [python3, -m, orchestrator]\n${canary ? `  canary:\n    profile: ${canary}\n    soakSeconds: ${o.soak ?? 30}\n` : ''}`,
  };
}

function lock(
  o: {
    release?: string;
    canaryRelease?: string | null;
    rehearsals?: Array<{ from: string; to: string; result: 'passed' | 'failed' }>;
  } = {},
): Lockfile {
  const canaryRelease = o.canaryRelease === undefined ? C : o.canaryRelease;
  const unit = (profile: string, releaseId: string) => ({
    address: `unit.orch.${profile}`,
    provider: 'systemd',
    workload: 'orch',
    identity: `orch/${profile}`,
    digest: 'sha256:x',
    commit: null,
    appliedAt: '2025-01-01T00:00:00.000Z',
    attributes: { releaseId },
  });
  return {
    lineage: '00000000-0000-4000-8000-000000000000',
    serial: 3,
    resources: {
      'unit.orch.core': unit('core', C),
      ...(canaryRelease ? { 'unit.orch.research': unit('research', canaryRelease) } : {}),
    },
    workloads: {
      orch: {
        release: { identity: o.release ?? C, digest: 'sha256:y', releaseId: o.release ?? C },
        rehearsals: (o.rehearsals ?? []).map((r, i) => ({
          rehearsedAt: `2025-01-0${9 - i}T00:00:00.000Z`,
          fromIdentity: r.from,
          toIdentity: r.to,
          result: r.result,
        })),
      },
    },
  } as unknown as Lockfile;
}

function run(f: FileMap, l: Lockfile | null, o: { online?: boolean; canaryLive?: boolean } = {}) {
  const input: PromotionInput = {
    state: stateOf(f),
    host: 'gw',
    desiredReleases: new Map([['orch', N]]),
    lock: l,
    unit: (address) => ({
      exists: address !== 'unit.orch.research' || o.canaryLive !== false,
      online: o.online ?? true,
    }),
  };
  return promotionRules(input).map((d) => `${d.severity} ${d.code} ${d.address}`);
}

const passed = [{ from: N, to: C, result: 'passed' as const }];

describe('promotionRules', () => {
  it('GIVEN a high service promoted C → N with its canary on C and a passed rehearsal of N → C THEN nothing is reported', () => {
    expect(run(files(), lock({ rehearsals: passed }))).toEqual([]);
  });

  it('GIVEN no lockfile, or the same release THEN it is not a promotion', () => {
    expect(run(files(), null)).toEqual([]);
    expect(run(files(), lock({ release: N }))).toEqual([]);
  });

  it('GIVEN the canary unit is not on the host, has no lockfile entry, or runs another release THEN policy.canary-skipped at release.orch', () => {
    expect(run(files(), lock({ rehearsals: passed }), { canaryLive: false })).toEqual([
      'error policy.canary-skipped release.orch',
    ]);
    expect(run(files(), lock({ rehearsals: passed, canaryRelease: null }))).toEqual([
      'error policy.canary-skipped release.orch',
    ]);
    expect(run(files(), lock({ rehearsals: passed, canaryRelease: 'c'.repeat(40) }))).toEqual([
      'error policy.canary-skipped release.orch',
    ]);
  });

  it('GIVEN soakSeconds: 0 THEN policy.canary-skipped', () => {
    const d = promotionRules({
      state: stateOf(files({ soak: 0 })),
      host: 'gw',
      desiredReleases: new Map([['orch', N]]),
      lock: lock({ rehearsals: passed }),
      unit: () => ({ exists: true, online: true }),
    });
    expect(d.map((x) => x.code)).toEqual(['policy.canary-skipped']);
    expect(d[0]!.summary).toContain('soakSeconds: 0');
    expect(d[0]!.location?.file).toBe('workloads/orch/manifest.yaml');
  });

  it('GIVEN no rehearsal, one of another pair, or a last rehearsal that failed THEN policy.rollback-not-rehearsed', () => {
    expect(run(files(), lock())).toEqual(['error policy.rollback-not-rehearsed release.orch']);
    expect(run(files(), lock({ rehearsals: [{ from: C, to: N, result: 'passed' }] }))).toEqual([
      'error policy.rollback-not-rehearsed release.orch',
    ]);
    expect(
      run(
        files(),
        lock({
          rehearsals: [
            { from: N, to: C, result: 'failed' },
            { from: N, to: C, result: 'passed' },
          ],
        }),
      ),
    ).toEqual(['error policy.rollback-not-rehearsed release.orch']);
    expect(
      run(
        files(),
        lock({
          rehearsals: [
            { from: N, to: C, result: 'passed' },
            { from: N, to: C, result: 'failed' },
          ],
        }),
      ),
    ).toEqual([]);
  });

  it('GIVEN a moderate workload THEN neither control applies, unless agentvm.yaml tightens the tier', () => {
    expect(run(files({ tier: 'moderate' }), lock({ canaryRelease: null }))).toEqual([]);
    expect(
      run(files({ tier: 'moderate', tighten: 'moderate:\n        canary: true' }), lock({ canaryRelease: null })),
    ).toEqual(['error policy.canary-skipped release.orch']);
    expect(run(files({ tier: 'moderate', tighten: 'moderate:\n        testedRollback: true' }), lock())).toEqual([
      'error policy.rollback-not-rehearsed release.orch',
    ]);
  });

  it('GIVEN units rendered offline (no running manager) THEN the same codes are warnings', () => {
    expect(run(files(), lock({ canaryRelease: null }), { online: false })).toEqual([
      'warning policy.canary-skipped release.orch',
      'warning policy.rollback-not-rehearsed release.orch',
    ]);
  });

  it('GIVEN a Tier-2 job workload, or a workload without a canary THEN only the rehearsal rule speaks (policy.canary-missing covers the rest)', () => {
    expect(run(files({ substrate: 'job' }), lock())).toEqual([]);
    expect(run(files({ canary: '' }), lock({ rehearsals: passed }))).toEqual([]);
    expect(run(files({ canary: '' }), lock())).toEqual(['error policy.rollback-not-rehearsed release.orch']);
  });
});
