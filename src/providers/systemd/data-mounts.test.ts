import { describe, expect, it } from 'vitest';
import {
  dataDirectives,
  dataProblems,
  memoryHostDirs,
  overlapWarnings,
  parseDataGrants,
  parseDataRoot,
  unmounted,
} from './data-mounts.js';
import { unitPath } from './unit-file.js';

describe('data mounts (ADR 0024)', () => {
  it('binds each grant under /srv/agentvm/data with its access, hides /srv and the data root, and makes every writable mount noexec', () => {
    const d = dataDirectives({
      workload: 'w',
      profile: 'p',
      dataDir: '/tmp/root/srv/agentvm/data',
      quote: unitPath,
      grants: [
        { path: 'projects/research', access: 'read-write' },
        { path: 'projects/shared', access: 'read-only' },
        { path: 'projects/research', access: 'read-only' },
      ],
    });
    expect(d.directives).toEqual([
      ['TemporaryFileSystem', '/srv:ro'],
      ['TemporaryFileSystem', '/tmp/root/srv/agentvm/data:ro'],
      ['BindPaths', '/tmp/root/srv/agentvm/data/projects/research:/srv/agentvm/data/projects/research'],
      ['BindReadOnlyPaths', '/tmp/root/srv/agentvm/data/projects/shared:/srv/agentvm/data/projects/shared'],
      ['StateDirectory', 'agentvm-memory/w/p'],
    ]);
    expect(d.noexec).toEqual([
      '-%S/agentvm-memory/w/p',
      '/srv/agentvm/data/projects/research',
      '/srv/agentvm/data/projects/shared',
    ]);
  });

  it('a profile without grants sees no data root at all; a root under /srv needs no second tmpfs', () => {
    expect(
      dataDirectives({ workload: 'w', profile: 'p', dataDir: '/srv/agentvm/data', quote: unitPath, grants: [] })
        .directives,
    ).toEqual([
      ['InaccessiblePaths', '-/srv/agentvm/data'],
      ['StateDirectory', 'agentvm-memory/w/p'],
    ]);
    expect(
      dataDirectives({
        workload: 'w',
        profile: 'p',
        dataDir: '/srv/agentvm/data',
        quote: unitPath,
        grants: [{ path: 'a', access: 'read-only' }],
      }).directives.filter(([k]) => k === 'TemporaryFileSystem'),
    ).toEqual([['TemporaryFileSystem', '/srv:ro']]);
  });

  it('refuses paths that climb or are absolute, and data roots that are / or climb; unsafe characters throw from quote', () => {
    expect(parseDataGrants([{ path: '../x', access: 'read-only' }])).toBeUndefined();
    expect(parseDataGrants([{ path: '/etc', access: 'read-only' }])).toBeUndefined();
    expect(parseDataGrants([{ path: 'a', access: 'write' }])).toBeUndefined();
    expect(parseDataRoot('/')).toBeUndefined();
    expect(parseDataRoot('/srv/../etc')).toBeUndefined();
    expect(parseDataRoot(undefined)).toBe('/srv/agentvm/data');
    expect(() =>
      dataDirectives({
        workload: 'w',
        profile: 'p',
        dataDir: '/d',
        quote: unitPath,
        grants: [{ path: 'a b', access: 'read-only' }],
      }),
    ).toThrow();
  });

  it('a missing grant is not mounted, and a warning names the address, the path and the fix', () => {
    const facts = {
      root: '/r/srv/agentvm/data',
      rootMissing: false,
      parentMissing: false,
      missing: [{ path: 'projects/x', access: 'read-write' as const }],
    };
    const [d] = dataProblems(facts, 'unit.w.p');
    expect(d).toMatchObject({ code: 'systemd.data-missing', severity: 'warning', address: 'unit.w.p' });
    const grants = [
      { path: 'projects/x', access: 'read-write' as const },
      { path: 'projects/y', access: 'read-only' as const },
    ];
    expect(
      dataDirectives({
        workload: 'w',
        profile: 'p',
        dataDir: '/srv/agentvm/data',
        quote: unitPath,
        grants,
        missing: unmounted(facts),
      }).directives.filter(([k]) => k.startsWith('Bind')),
    ).toEqual([['BindReadOnlyPaths', '/srv/agentvm/data/projects/y:/srv/agentvm/data/projects/y']]);
    // Without /srv nothing is mounted: the profile sees no data rather than failing to start.
    expect(
      dataDirectives({
        workload: 'w',
        profile: 'p',
        dataDir: '/srv/agentvm/data',
        quote: unitPath,
        grants,
        missing: unmounted({ ...facts, parentMissing: true }),
      }).directives[0],
    ).toEqual(['InaccessiblePaths', '-/srv/agentvm/data']);
    expect(d!.summary).toContain('projects/x');
    expect(d!.detail).toContain('/r/srv/agentvm/data/projects/x');
  });

  it('memory lives under /var/lib/private (system) or the account config home (user)', () => {
    expect(
      memoryHostDirs(
        { scope: 'system', mode: 'offline', unitDir: '/r/etc/systemd/system', managerRoot: '/r' },
        'w',
        'p',
      ),
    ).toEqual(['/r/var/lib/private/agentvm-memory/w/p', '/r/var/lib/agentvm-memory/w/p']);
    expect(
      memoryHostDirs({ scope: 'user', mode: 'online', unitDir: '/home/a/.config/systemd/user', managerRoot: '/' }, 'w'),
    ).toEqual(['/home/a/.config/agentvm-memory/w', '/home/a/.local/state/agentvm-memory/w']);
  });

  it("warns on a grant under another workload's read-write grant, not on siblings, read-only parents or its own", () => {
    const w = overlapWarnings([
      {
        name: 'writer',
        units: ['unit.writer.a'],
        grants: [
          { path: 'projects', access: 'read-write' },
          { path: 'projects/own', access: 'read-only' },
        ],
      },
      {
        name: 'reader',
        units: ['unit.reader.a', 'unit.reader.b'],
        grants: [
          { path: 'projects/shared', access: 'read-only' },
          { path: 'projectsx', access: 'read-only' },
        ],
      },
      {
        name: 'other',
        units: ['unit.other.a'],
        grants: [
          { path: 'handbook', access: 'read-write' },
          { path: 'projects', access: 'read-only' },
        ],
      },
    ]);
    expect(w.map((d) => [d.code, d.severity, d.address])).toEqual([
      ['systemd.data-overlap', 'warning', 'unit.reader.a'],
      ['systemd.data-overlap', 'warning', 'unit.reader.b'],
    ]);
    expect(w[0]!.summary).toContain('`writer` may write `projects`');
  });
});
