import { describe, expect, it } from 'vitest';
import { capabilityLines, planCapabilities } from './capabilities.js';
import type { PlannedChange } from '../model/resources.js';
import { capabilityChange } from './capability-change.fixture.js';

const change = (
  workload: string,
  action: PlannedChange['action'],
  before: unknown[] | undefined,
  after: unknown[] | undefined,
  kind: 'unit' | 'job' = 'unit',
): PlannedChange => capabilityChange({ workload, action, field: 'data', before, after, base: { egress: [] }, kind });

describe('data capabilities', () => {
  it('GIVEN a grant widened from read-only to read-write and a new path WHEN planned THEN both are flagged, the unchanged one is silent', () => {
    const caps = planCapabilities([
      change(
        'w',
        'update',
        [
          { path: 'projects/shared', access: 'read-only' },
          { path: 'projects/keep', access: 'read-only' },
        ],
        [
          { path: 'projects/shared', access: 'read-write' },
          { path: 'projects/keep', access: 'read-only' },
          { path: 'projects/new', access: 'read-only' },
        ],
      ),
    ]);
    expect(caps[0]!.data!.map((d) => [d.change, d.path])).toEqual([
      ['unchanged', 'projects/keep'],
      ['added', 'projects/new'],
      ['widened', 'projects/shared'],
    ]);
    expect(capabilityLines(caps[0])).toEqual([
      'data +projects/new read-only (new path: the agent may read these files)',
      'data +projects/shared read-only → read-write (widened: the agent may now change and delete these files)',
    ]);
  });

  it('GIVEN a narrowed and a removed grant WHEN planned THEN they are listed with -', () => {
    const caps = planCapabilities([
      change(
        'w',
        'update',
        [
          { path: 'a', access: 'read-write' },
          { path: 'b', access: 'read-only' },
        ],
        [{ path: 'a', access: 'read-only' }],
      ),
    ]);
    expect(capabilityLines(caps[0])).toEqual(['data -a read-write → read-only', 'data -b read-only']);
  });

  it('GIVEN a workload removed from the host WHEN planned THEN every grant is removed; grants of two profiles merge, read-write winning', () => {
    expect(
      capabilityLines(
        planCapabilities([change('gone', 'delete', [{ path: 'x', access: 'read-write' }], undefined)])[0],
      ),
    ).toEqual(['data -x read-write']);
    const two = planCapabilities([
      change('w', 'create', undefined, [{ path: 'x', access: 'read-only' }]),
      { ...change('w', 'create', undefined, [{ path: 'x', access: 'read-write' }]), address: 'unit.w.q' },
    ]);
    expect(two[0]!.data).toEqual([
      {
        change: 'added',
        path: 'x',
        access: 'read-write',
        was: null,
        risk: 'new path: the agent may read, change and delete these files',
      },
    ]);
  });

  it('GIVEN a job with grants WHEN planned THEN they count too; no grants before or after leaves data out', () => {
    expect(
      planCapabilities([change('j', 'create', undefined, [{ path: 'in', access: 'read-only' }], 'job')])[0]!.data![0]!
        .change,
    ).toBe('added');
    expect(planCapabilities([change('n', 'create', undefined, [])])).toEqual([]);
  });
});
