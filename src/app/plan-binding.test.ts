// The binding of a saved plan to its commit compares every part of the plan a reviewer sees — including the
// capabilities block (egress, tools) that plans gained after the binding was written: a file that differs from the
// derivation anywhere is refused, and an identical one passes.

import { describe, expect, it } from 'vitest';
import type { Plan } from '../engine/plan.js';
import { firstPlanDifference } from './plan-binding.js';

const plan = (over: Partial<Plan> = {}): Plan =>
  ({
    formatVersion: 1,
    id: 'sha256:x',
    createdAt: '2026-12-07T00:00:00.000Z',
    host: 'edge-1',
    mode: 'normal',
    source: { repo: '/r', ref: 'HEAD', commit: 'c'.repeat(40), uncommitted: false },
    lock: { lineage: null, serial: 0 },
    liveFingerprint: 'sha256:l',
    changes: [],
    drift: [],
    capabilities: [
      {
        workload: 'web',
        lines: [{ kind: 'egress', change: 'added', what: 'api.example.com:443', risk: 'new destination' }],
      },
    ],
    diagnostics: [],
    summary: {
      create: 0,
      update: 0,
      replace: 0,
      delete: 0,
      noop: 0,
      drift: 0,
      errors: 0,
      warnings: 0,
      worstAction: 'noop',
      worstEffect: 'none',
    },
    applicable: true,
    ...over,
  }) as unknown as Plan;

describe('firstPlanDifference', () => {
  it('GIVEN the same plan made at another time THEN no difference (createdAt, id and ref may differ)', () => {
    expect(firstPlanDifference(plan(), plan({ createdAt: '2027-01-01T00:00:00.000Z', id: 'sha256:y' }))).toBeNull();
  });

  it('GIVEN a capabilities block edited in the file THEN the difference is named there', () => {
    const edited = plan({ capabilities: [] } as Partial<Plan>);
    expect(firstPlanDifference(edited, plan())?.where).toBe('.capabilities[0]');
  });

  it('GIVEN a field the derivation does not have THEN it is an edit', () => {
    expect(firstPlanDifference({ ...plan(), injected: true } as unknown as Plan, plan())?.where).toBe('.injected');
  });
});
