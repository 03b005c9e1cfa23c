// Tests of the pure lockfile operations and of parsing (validation against schemas/lockfile.schema.json).

import { describe, it, expect } from 'vitest';
import { AgentvmError } from '../diagnostics/index.js';
import type { LockedResource } from '../model/resources.js';
import {
  applyOps,
  emptyLockfile,
  lockedResource,
  lockfileOpProblem,
  MAX_REHEARSALS,
  parseLockfile,
  serializeLockfile,
  withAuditHead,
  withCommit,
  withoutResource,
  withoutWorkload,
  withRehearsal,
  withRelease,
  withResource,
  withRollbackTarget,
  type Lockfile,
  type LockfileOp,
} from './lockfile.js';

const COMMIT = 'a'.repeat(40);
const source = { file: '/state/web-1.lock.json', backup: '/state/web-1.lock.json.backup', host: 'web-1' };

function resource(address: string, extra: Partial<LockedResource> = {}): LockedResource {
  return {
    address,
    provider: 'release.git',
    workload: 'research',
    identity: COMMIT,
    digest: `sha256:${'b'.repeat(64)}`,
    commit: COMMIT,
    appliedAt: '2026-01-02T03:04:05.000Z',
    ...extra,
  };
}

function parseError(value: unknown): AgentvmError {
  try {
    parseLockfile(value, source);
  } catch (error) {
    expect(error).toBeInstanceOf(AgentvmError);
    return error as AgentvmError;
  }
  throw new Error('expected parseLockfile to throw');
}

describe('emptyLockfile', () => {
  it('has format 1, serial 0, a fresh uuid v4 lineage, and parses', () => {
    const a = emptyLockfile('web-1');
    const b = emptyLockfile('web-1');
    expect(a).toMatchObject({ formatVersion: 1, serial: 0, host: 'web-1', commit: null, resources: {}, workloads: {} });
    expect(a.lineage).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(a.lineage).not.toBe(b.lineage);
    expect(parseLockfile(JSON.parse(serializeLockfile(a)), source)).toEqual(a);
  });
});

describe('pure helpers', () => {
  it('GIVEN a lockfile WHEN changed THEN each helper returns a new object, leaves the input and the serial untouched', () => {
    const base = emptyLockfile('web-1');
    const frozen = structuredClone(base);
    const withA = withResource(base, resource('release.research', { attributes: { nested: { x: 1 } } }));
    const withB = withResource(withA, resource('unit.research.web', { provider: 'systemd' }));
    const without = withoutResource(withB, 'release.research');
    const rolled = withRollbackTarget(
      without,
      'research',
      { identity: COMMIT, digest: 'sha256:1', releaseId: 'r-1', foreign: true },
      new Date('2026-02-03T00:00:00Z'),
    );
    const released = withRelease(rolled, 'research', { identity: COMMIT, digest: 'sha256:2', releaseId: 'r-2' });
    const headed = withAuditHead(withCommit(released, COMMIT), { seq: 7, hash: 'c'.repeat(64) });

    expect(base).toEqual(frozen);
    expect(Object.keys(withA.resources)).toEqual(['release.research']);
    expect(Object.keys(withB.resources).sort()).toEqual(['release.research', 'unit.research.web']);
    expect(Object.keys(without.resources)).toEqual(['unit.research.web']);
    expect(Object.keys(withB.resources).sort()).toEqual(['release.research', 'unit.research.web']);
    expect(headed.workloads.research).toEqual({
      rollback: {
        identity: COMMIT,
        digest: 'sha256:1',
        releaseId: 'r-1',
        foreign: true,
        capturedAt: '2026-02-03T00:00:00.000Z',
      },
      release: { identity: COMMIT, digest: 'sha256:2', releaseId: 'r-2' },
    });
    expect(headed.commit).toBe(COMMIT);
    expect(headed.auditHead).toEqual({ seq: 7, hash: 'c'.repeat(64) });
    for (const l of [withA, withB, without, rolled, released, headed]) expect(l.serial).toBe(0);
    expect(parseLockfile(JSON.parse(serializeLockfile(headed)), source)).toEqual(headed);
  });

  it('copies attributes deeply, so later mutation of the input cannot change the lockfile', () => {
    const attrs = { nested: { x: 1 } };
    const lock = withResource(emptyLockfile('web-1'), resource('release.research', { attributes: attrs }));
    attrs.nested.x = 2;
    expect(lockedResource(lock, 'release.research')?.attributes).toEqual({ nested: { x: 1 } });
    expect(lockedResource(lock, 'release.other')).toBeUndefined();
  });

  it('clears a rollback target with null, keeps the last rehearsals, drops a workload', () => {
    let lock = withRollbackTarget(emptyLockfile('web-1'), 'research', {
      identity: 'x',
      digest: 'd',
      releaseId: 'r',
      foreign: false,
    });
    lock = withRollbackTarget(lock, 'research', null);
    expect(lock.workloads.research).toEqual({});
    for (let i = 0; i < MAX_REHEARSALS + 5; i++) {
      lock = withRehearsal(lock, 'research', {
        rehearsedAt: new Date(Date.UTC(2026, 0, 1, 0, i)).toISOString(),
        fromIdentity: `f${i}`,
        toIdentity: 't',
        result: 'passed',
      });
    }
    expect(lock.workloads.research?.rehearsals).toHaveLength(MAX_REHEARSALS);
    expect(lock.workloads.research?.rehearsals?.[0]?.fromIdentity).toBe(`f${MAX_REHEARSALS + 4}`);
    expect(withoutWorkload(lock, 'research').workloads).toEqual({});
  });

  it('serializes deterministically with sorted resources', () => {
    const a = withResource(withResource(emptyLockfile('web-1'), resource('unit.b.x')), resource('release.a'));
    const b = withResource(withResource({ ...a, resources: {} }, resource('release.a')), resource('unit.b.x'));
    expect(serializeLockfile(a)).toBe(serializeLockfile(b));
    expect(serializeLockfile(a).indexOf('release.a')).toBeLessThan(serializeLockfile(a).indexOf('unit.b.x'));
    expect(serializeLockfile(a).endsWith('}\n')).toBe(true);
  });
});

describe('parseLockfile', () => {
  const good = (): Lockfile => withResource(emptyLockfile('web-1'), resource('release.research'));

  it.each([
    ['not an object', 'garbage', /does not match the lockfile schema/],
    [
      'a missing field',
      (() => {
        const { lineage: _l, ...rest } = good();
        return rest;
      })(),
      /lineage/,
    ],
    ['a bad lineage', { ...good(), lineage: 'not-a-uuid' }, /lineage/],
    ['a negative serial', { ...good(), serial: -1 }, /serial/],
    ['an unknown field', { ...good(), extra: true }, /does not match/],
    ['a short commit', { ...good(), commit: 'abc' }, /commit/],
    [
      'a resource without digest',
      { ...good(), resources: { 'release.research': { ...resource('release.research'), digest: undefined } } },
      /digest/,
    ],
  ])('GIVEN %s THEN state.corrupt names the file, the problem and the backup to restore', (_name, value, problem) => {
    const error = parseError(value);
    expect(error.code).toBe('state.corrupt');
    expect(error.message).toContain(source.file);
    expect(error.message).toMatch(problem);
    expect(error.diagnostics[0]?.detail).toContain(`cp ${source.backup} ${source.file}`);
  });

  it('refuses a lockfile of another host and a resource filed under the wrong address', () => {
    expect(parseError({ ...good(), host: 'web-2' }).message).toContain('belongs to host "web-2"');
    const l = good();
    const misfiled = { ...l, resources: { 'release.other': l.resources['release.research'] } };
    expect(parseError(misfiled).message).toContain('"release.other" holds an entry for "release.research"');
  });

  it('refuses another format version with state.unsupported-format', () => {
    const error = parseError({ ...good(), formatVersion: 2 });
    expect(error.code).toBe('state.unsupported-format');
    expect(error.message).toContain('format version 2');
  });
});

describe('LockfileOp', () => {
  const ops: LockfileOp[] = [
    { op: 'resource.set', entry: resource('release.research', { attributes: { nested: { x: 1 } } }) },
    { op: 'resource.set', entry: resource('unit.research.web', { provider: 'systemd' }) },
    { op: 'resource.delete', address: 'release.research' },
    {
      op: 'rollback.set',
      workload: 'research',
      target: {
        identity: COMMIT,
        digest: 'sha256:1',
        releaseId: 'r-1',
        foreign: true,
        capturedAt: '2026-02-03T00:00:00.000Z',
      },
    },
    { op: 'release.set', workload: 'research', release: { identity: COMMIT, digest: 'sha256:2', releaseId: 'r-2' } },
    {
      op: 'rehearsal.add',
      workload: 'research',
      rehearsal: { rehearsedAt: '2026-02-03T00:00:00.000Z', fromIdentity: 'a', toIdentity: 'b', result: 'passed' },
    },
    { op: 'commit.set', commit: COMMIT },
    { op: 'auditHead.set', head: { seq: 7, hash: 'c'.repeat(64) } },
  ];

  it('GIVEN ops THEN applyOps gives what the helpers give, leaves its input alone, and never touches the serial', () => {
    const base = emptyLockfile('web-1');
    const frozen = structuredClone(base);
    const viaOps = applyOps(base, ops);
    let viaHelpers = withResource(base, resource('release.research', { attributes: { nested: { x: 1 } } }));
    viaHelpers = withResource(viaHelpers, resource('unit.research.web', { provider: 'systemd' }));
    viaHelpers = withoutResource(viaHelpers, 'release.research');
    viaHelpers = withRollbackTarget(
      viaHelpers,
      'research',
      { identity: COMMIT, digest: 'sha256:1', releaseId: 'r-1', foreign: true },
      new Date('2026-02-03T00:00:00Z'),
    );
    viaHelpers = withRelease(viaHelpers, 'research', { identity: COMMIT, digest: 'sha256:2', releaseId: 'r-2' });
    viaHelpers = withRehearsal(viaHelpers, 'research', {
      rehearsedAt: '2026-02-03T00:00:00.000Z',
      fromIdentity: 'a',
      toIdentity: 'b',
      result: 'passed',
    });
    viaHelpers = withAuditHead(withCommit(viaHelpers, COMMIT), { seq: 7, hash: 'c'.repeat(64) });
    expect(viaOps).toEqual(viaHelpers);
    expect(base).toEqual(frozen);
    expect(viaOps.serial).toBe(0);
    // The result owns its values: changing an op afterwards changes nothing.
    (ops[1] as { entry: LockedResource }).entry.identity = 'changed';
    expect(viaOps.resources['unit.research.web']?.identity).toBe(COMMIT);
    (ops[1] as { entry: LockedResource }).entry.identity = COMMIT;
    // And the result is a valid lockfile.
    expect(parseLockfile(JSON.parse(serializeLockfile(viaOps)), source)).toEqual(viaOps);
  });

  it('accepts every valid op and refuses what the lockfile schema would refuse, naming the field', () => {
    for (const op of ops) expect(lockfileOpProblem(op)).toBeNull();
    expect(lockfileOpProblem({ op: 'release.set', workload: 'research', release: null })).toBeNull();
    expect(lockfileOpProblem({ op: 'commit.set', commit: null })).toBeNull();
    expect(lockfileOpProblem({ op: 'resource.set', entry: { ...resource('release.x'), digest: 1 } })).toMatch(
      /resource.set: `entry`\.digest/,
    );
    expect(
      lockfileOpProblem({
        op: 'rollback.set',
        workload: 'research',
        target: { identity: 'x', digest: 'y', releaseId: 'r', foreign: false },
      }),
    ).toMatch(/capturedAt/);
    expect(lockfileOpProblem({ op: 'release.set', workload: 'Bad_Name', release: null })).toMatch(/`workload`/);
    expect(lockfileOpProblem({ op: 'resource.delete', address: '' })).toMatch(/not an address/);
    expect(lockfileOpProblem({ op: 'commit.set', commit: COMMIT, extra: 1 })).toMatch(/unexpected field `extra`/);
    expect(lockfileOpProblem({ op: 'serial.set', serial: 9 })).toMatch(/unknown op "serial.set"/);
    expect(lockfileOpProblem(null)).toMatch(/not an object/);
  });
});
