// What a job's overlay carries for its guest (job-guest.ts), against a real temporary host tree: only declared grants,
// links copied as links and never followed, grants through a symlink refused, read-write grants read-only with a
// warning, the data bounded by the guest's memory, and programs only at their pinned bytes.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CpioEntry } from './cpio.js';
import { jobGuestFiles, jobGuestProblems, type GuestConfig } from './job-guest.js';

const ADDRESS = 'job.w.j';
let root = '';
const data = (): string => join(root, 'srv/agentvm/data');

function config(over: Partial<GuestConfig> = {}): GuestConfig {
  return { command: ['/app/run', 'x'], data: [], dataRoot: '/srv/agentvm/data', programs: [], memoryMiB: 256, ...over };
}
const paths = (entries: CpioEntry[]): string[] => entries.map((e) => e.path).sort();
const codes = (d: Array<{ code: string; severity: string }>): string[] =>
  d.map((x) => `${x.severity}:${x.code}`).sort();

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'agentvm-job-guest-'));
  mkdirSync(join(data(), 'p/shared/sub'), { recursive: true });
  mkdirSync(join(data(), 'p/sibling'), { recursive: true });
  writeFileSync(join(data(), 'p/shared/a.txt'), 'a');
  writeFileSync(join(data(), 'p/shared/sub/b.txt'), 'bb');
  writeFileSync(join(data(), 'p/sibling/secret'), 'secret');
  symlinkSync('../sibling/secret', join(data(), 'p/shared/to-sibling'));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe('jobGuestFiles', () => {
  it('GIVEN a read-only grant THEN only it is copied, read-only, links as links, with the entrypoint marker', async () => {
    const guest = await jobGuestFiles(root, config({ data: [{ path: 'p/shared', access: 'read-only' }] }), ADDRESS);

    expect(guest.diagnostics).toEqual([]);
    expect(paths(guest.entries)).toEqual([
      'job/entry',
      'srv/agentvm/data/p/shared',
      'srv/agentvm/data/p/shared/a.txt',
      'srv/agentvm/data/p/shared/sub',
      'srv/agentvm/data/p/shared/sub/b.txt',
      'srv/agentvm/data/p/shared/to-sibling',
    ]);
    const byPath = new Map(guest.entries.map((e) => [e.path, e]));
    expect(byPath.get('job/entry')?.data?.toString()).toBe('/app/run');
    expect(byPath.get('srv/agentvm/data/p/shared/a.txt')).toMatchObject({ mode: 0o444 });
    expect(byPath.get('srv/agentvm/data/p/shared/to-sibling')).toEqual({
      path: 'srv/agentvm/data/p/shared/to-sibling',
      symlink: '../sibling/secret',
    });
    expect(guest.dataBytes).toBe(3);
  });

  it('GIVEN a read-write, a missing and a nested grant THEN warnings say so and nothing is copied twice', async () => {
    const guest = await jobGuestFiles(
      root,
      config({
        data: [
          { path: 'p/shared', access: 'read-write' },
          { path: 'p/shared/sub', access: 'read-only' },
          { path: 'p/absent', access: 'read-only' },
        ],
      }),
      ADDRESS,
    );

    expect(codes(guest.diagnostics)).toEqual(['warning:microvm.data-missing', 'warning:microvm.data-read-write']);
    expect(paths(guest.entries).filter((p) => p.endsWith('b.txt'))).toEqual(['srv/agentvm/data/p/shared/sub/b.txt']);
  });

  it('GIVEN a grant that is a symlink on the host THEN it is an error and nothing of it is copied', async () => {
    symlinkSync('sibling', join(data(), 'p/linked'));

    const guest = await jobGuestFiles(root, config({ data: [{ path: 'p/linked', access: 'read-only' }] }), ADDRESS);

    expect(codes(guest.diagnostics)).toEqual(['error:microvm.data-symlink']);
    expect(paths(guest.entries)).toEqual(['job/entry']);
    expect(
      (await jobGuestProblems(root, config({ data: [{ path: 'p/linked', access: 'read-only' }] }), ADDRESS)).map(
        (d) => d.code,
      ),
    ).toEqual(['microvm.data-symlink']);
  });

  it('GIVEN data larger than a quarter of the guest memory THEN it is refused', async () => {
    writeFileSync(join(data(), 'p/shared/big'), Buffer.alloc(17 * 1024 * 1024));

    const guest = await jobGuestFiles(
      root,
      config({ memoryMiB: 64, data: [{ path: 'p/shared', access: 'read-only' }] }),
      ADDRESS,
    );

    expect(codes(guest.diagnostics)).toEqual(['error:microvm.data-too-large']);
  });

  it('GIVEN declared programs THEN the pinned bytes go to job/tools; a changed, missing or relative one does not', async () => {
    mkdirSync(join(root, 'opt'), { recursive: true });
    writeFileSync(join(root, 'opt/tool'), 'tool bytes');
    const pin = createHash('sha256').update('tool bytes').digest('hex');
    const ok = await jobGuestFiles(
      root,
      config({ programs: [{ name: 'tool', path: '/opt/tool', sha256: pin }] }),
      ADDRESS,
    );
    expect(ok.diagnostics).toEqual([]);
    expect(ok.entries.find((e) => e.path === 'job/tools/tool')).toMatchObject({ mode: 0o555 });
    expect(ok.entries.find((e) => e.path === 'job/tools/tool')?.data?.toString()).toBe('tool bytes');

    writeFileSync(join(root, 'opt/tool'), 'changed bytes');
    symlinkSync('/bin/sh', join(root, 'opt/link'));
    const refused = await jobGuestFiles(
      root,
      config({
        programs: [
          { name: 'tool', path: '/opt/tool', sha256: pin },
          { name: 'gone', path: '/opt/gone', sha256: pin },
          { name: 'link', path: '/opt/link', sha256: pin },
          { name: 'rel', path: 'bin/tool', sha256: pin },
        ],
      }),
      ADDRESS,
    );
    expect(codes(refused.diagnostics)).toEqual([
      'error:microvm.tool-digest',
      'error:microvm.tool-digest',
      'error:microvm.tool-digest',
      'warning:microvm.tool-release-relative',
    ]);
    expect(refused.diagnostics[0]?.summary).toContain(`not its pin sha256:${pin}`);
    expect(paths(refused.entries)).toEqual(['job/entry']);
  });
});

describe('jobGuestFiles with entries the guest cannot take', () => {
  it('GIVEN a FIFO among the files THEN it is skipped with a warning (never opened), the rest copied', async () => {
    expect(spawnSync('mkfifo', [join(data(), 'p/shared/pipe')]).status).toBe(0);

    const guest = await jobGuestFiles(root, config({ data: [{ path: 'p/shared', access: 'read-only' }] }), ADDRESS);

    expect(codes(guest.diagnostics)).toEqual(['warning:microvm.data-special']);
    expect(paths(guest.entries)).toContain('srv/agentvm/data/p/shared/a.txt');
    expect(paths(guest.entries).some((p) => p.endsWith('pipe'))).toBe(false);
  });
});
