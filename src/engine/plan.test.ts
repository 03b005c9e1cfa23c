import { describe, expect, it } from 'vitest';
import type { PlanRequest, PlanResponse } from '../providers/provider.js';
import { orderGraph } from './graph.js';
import { computePlan, hasChanges, type PlanInput } from './plan.js';
import type { DesiredResource, LiveResource, LockedResource } from '../model/resources.js';

// A planner that compares identities and digests the way release providers do; fine for testing the engine above it.
const identityPlanner = {
  plan(req: PlanRequest): PlanResponse {
    const { desired, live, locked } = req;
    const drift =
      locked && live.exists && live.digest !== locked.digest
        ? [{ code: 'live-modified' as const, message: 'changed by hand' }]
        : [];
    if (!desired)
      return {
        action: live.exists || locked ? 'delete' : 'noop',
        effect: 'none',
        reasons: [{ code: 'removed', message: 'gone' }],
        drift,
        diagnostics: [],
      };
    if (!live.exists)
      return {
        action: 'create',
        effect: 'restart',
        reasons: [{ code: 'new', message: 'new' }],
        drift,
        diagnostics: [],
      };
    if (live.identity !== desired.identity)
      return {
        action: 'update',
        effect: 'restart',
        reasons: [{ code: 'source-changed', message: 'moved' }],
        drift,
        diagnostics: [],
      };
    if (drift.length) return { action: 'replace', effect: 'restart', reasons: drift, drift, diagnostics: [] };
    return { action: 'noop', effect: 'none', reasons: [], drift, diagnostics: [] };
  },
};

const res = (address: string, identity: string, dependsOn: string[] = []): DesiredResource => ({
  address,
  provider: 'p',
  workload: address.split('.')[1]!,
  identity,
  config: {},
  dependsOn,
});
const live = (address: string, identity: string, digest: string): LiveResource => ({
  address,
  provider: 'p',
  exists: true,
  identity,
  digest,
});
const locked = (address: string, identity: string, digest: string): LockedResource => ({
  address,
  provider: 'p',
  workload: address.split('.')[1]!,
  identity,
  digest,
  commit: null,
  appliedAt: '2026-01-01T00:00:00Z',
});

function input(over: Partial<PlanInput>): PlanInput {
  return {
    host: 'h',
    mode: 'normal',
    source: { repo: '/r', ref: 'HEAD', commit: 'a'.repeat(40), uncommitted: false },
    createdAt: '2026-11-28T00:00:00Z',
    desired: [],
    live: new Map(),
    owned: new Map(),
    lock: { lineage: null, serial: 0, resources: {} },
    planners: new Map([['p', identityPlanner]]),
    diagnostics: [],
    ...over,
  };
}

describe('orderGraph', () => {
  it('orders dependencies first and reports a cycle with its path', () => {
    const ok = orderGraph([
      { address: 'unit.a.x', dependsOn: ['release.a'] },
      { address: 'release.a', dependsOn: [] },
    ]);
    expect(ok.order).toEqual(['release.a', 'unit.a.x']);
    const cyc = orderGraph([
      { address: 'a', dependsOn: ['b'] },
      { address: 'b', dependsOn: ['c'] },
      { address: 'c', dependsOn: ['a'] },
    ]);
    expect(cyc.diagnostics).toHaveLength(1);
    expect(cyc.diagnostics[0]!.summary).toContain('a -> b -> c -> a');
  });
});

describe('computePlan', () => {
  it('GIVEN nothing live WHEN planned THEN creates in dependency order', () => {
    const plan = computePlan(input({ desired: [res('unit.a.core', 'u', ['release.a']), res('release.a', 'c1')] }));
    expect(plan.changes.map((c) => [c.address, c.action])).toEqual([
      ['release.a', 'create'],
      ['unit.a.core', 'create'],
    ]);
    expect(plan.summary).toMatchObject({ create: 2, worstAction: 'create', worstEffect: 'restart' });
    expect(plan.applicable).toBe(true);
  });

  it('GIVEN live equals lock equals desired THEN no changes and the same id for the same inputs', () => {
    const i = input({
      desired: [res('release.a', 'c1')],
      live: new Map([['release.a', live('release.a', 'c1', 'd1')]]),
      lock: { lineage: 'L', serial: 3, resources: { 'release.a': locked('release.a', 'c1', 'd1') } },
    });
    const plan = computePlan(i);
    expect(hasChanges(plan)).toBe(false);
    expect(computePlan({ ...i, createdAt: 'later' }).id).toBe(plan.id);
  });

  it('GIVEN a hand edit THEN drift is reported and the resource is replaced; refresh-only reports drift only', () => {
    const i = input({
      desired: [res('release.a', 'c1')],
      live: new Map([['release.a', live('release.a', 'c1', 'EDITED')]]),
      lock: { lineage: 'L', serial: 3, resources: { 'release.a': locked('release.a', 'c1', 'd1') } },
    });
    const plan = computePlan(i);
    expect(plan.drift.map((d) => d.address)).toEqual(['release.a']);
    expect(plan.changes[0]!.action).toBe('replace');
    const refresh = computePlan({ ...i, mode: 'refresh-only' });
    expect(refresh.changes).toEqual([]);
    expect(refresh.drift).toHaveLength(1);
    expect(refresh.applicable).toBe(false);
  });

  it('GIVEN an owned resource unknown to desired and lock THEN it is an orphan to delete', () => {
    const plan = computePlan(
      input({
        owned: new Map([['release.ghost', 'p']]),
        live: new Map([['release.ghost', live('release.ghost', 'x', 'y')]]),
      }),
    );
    expect(plan.drift[0]).toMatchObject({ address: 'release.ghost', reasons: [{ code: 'orphan' }] });
    expect(plan.changes[0]).toMatchObject({ address: 'release.ghost', action: 'delete' });
  });

  it('GIVEN a resource of an unavailable provider THEN a warning, not a crash, and the rest is planned', () => {
    const plan = computePlan(
      input({ desired: [res('release.a', 'c1'), { ...res('unit.a.core', 'u'), provider: 'systemd' }] }),
    );
    expect(plan.changes.map((c) => c.address)).toEqual(['release.a']);
    expect(plan.diagnostics.map((d) => d.code)).toEqual(['provider.unavailable']);
  });

  it('GIVEN error diagnostics or uncommitted source THEN the plan is shown but not applicable', () => {
    expect(
      computePlan(input({ diagnostics: [{ code: 'policy.x', severity: 'error', summary: 's' }] })).applicable,
    ).toBe(false);
    expect(
      computePlan(input({ source: { repo: '/r', ref: 'WORKTREE', commit: null, uncommitted: true } })).applicable,
    ).toBe(false);
  });

  it('never throws on arbitrary mixes of desired, live and locked (seeded)', () => {
    let seed = 42;
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    for (let i = 0; i < 300; i++) {
      const names = ['release.a', 'release.b', 'unit.a.x', 'unit.b.y'];
      const desired = names.filter(() => rnd(2)).map((a) => res(a, `c${rnd(3)}`, rnd(2) ? ['release.a'] : []));
      const liveMap = new Map(names.filter(() => rnd(2)).map((a) => [a, live(a, `c${rnd(3)}`, `d${rnd(2)}`)] as const));
      const lockRes = Object.fromEntries(
        names.filter(() => rnd(2)).map((a) => [a, locked(a, `c${rnd(3)}`, `d${rnd(2)}`)]),
      );
      const plan = computePlan(
        input({
          desired,
          live: liveMap,
          lock: { lineage: 'L', serial: 1, resources: lockRes },
          owned: new Map(rnd(2) ? [['release.z', 'p']] : []),
        }),
      );
      expect(
        plan.summary.create + plan.summary.update + plan.summary.replace + plan.summary.delete + plan.summary.noop,
      ).toBe(plan.changes.length);
    }
  });
});

describe('a release repaired in place restarts its units in the same apply (issue 18)', () => {
  const typed = (r: DesiredResource, provider: string): DesiredResource => ({ ...r, provider });
  const planners = new Map([
    ['release.git', identityPlanner],
    ['systemd', identityPlanner],
  ]);
  const lockOf = (address: string, provider: string, identity: string, digest: string): LockedResource => ({
    ...locked(address, identity, digest),
    provider,
  });
  const liveOf = (address: string, provider: string, identity: string, digest: string): LiveResource => ({
    ...live(address, identity, digest),
    provider,
  });

  it('GIVEN the live release tampered and its unit unchanged THEN the unit is updated with a restart, naming the release', () => {
    const plan = computePlan(
      input({
        planners,
        desired: [
          typed(res('release.a', 'c1'), 'release.git'),
          typed(res('unit.a.core', 'u1', ['release.a']), 'systemd'),
        ],
        live: new Map([
          ['release.a', liveOf('release.a', 'release.git', 'c1', 'TAMPERED')],
          ['unit.a.core', liveOf('unit.a.core', 'systemd', 'u1', 'ud')],
        ]),
        lock: {
          lineage: 'L',
          serial: 3,
          resources: {
            'release.a': lockOf('release.a', 'release.git', 'c1', 'd1'),
            'unit.a.core': lockOf('unit.a.core', 'systemd', 'u1', 'ud'),
          },
        },
      }),
    );
    expect(plan.changes.map((c) => [c.address, c.action, c.effect])).toEqual([
      ['release.a', 'replace', 'restart'],
      ['unit.a.core', 'update', 'restart'],
    ]);
    expect(plan.changes[1]!.reasons.map((r) => r.code)).toEqual(['dependency-changed']);
    expect(plan.changes[1]!.reasons[0]!.message).toContain('release.a');
  });

  it('GIVEN a release moving to another commit, or nothing tampered THEN units are left to their own planners', () => {
    const base = {
      planners,
      lock: {
        lineage: 'L',
        serial: 3,
        resources: {
          'release.a': lockOf('release.a', 'release.git', 'c1', 'd1'),
          'unit.a.core': lockOf('unit.a.core', 'systemd', 'u1', 'ud'),
        },
      },
    };
    // The same host with the release's desired commit at `commit`: the unit depends on it, but names no commit itself.
    const planWithRelease = (commit: string) =>
      computePlan(
        input({
          ...base,
          desired: [
            typed(res('release.a', commit), 'release.git'),
            typed(res('unit.a.core', 'u1', ['release.a']), 'systemd'),
          ],
          live: new Map([
            ['release.a', liveOf('release.a', 'release.git', 'c1', 'd1')],
            ['unit.a.core', liveOf('unit.a.core', 'systemd', 'u1', 'ud')],
          ]),
        }),
      );
    const moving = planWithRelease('c2');
    expect(moving.changes.find((c) => c.address === 'unit.a.core')!.action).toBe('noop');
    const intact = planWithRelease('c1');
    expect(hasChanges(intact)).toBe(false);
  });
});
