// The newc writer, checked against a real cpio implementation (busybox, which the guest image uses too).

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cpioPathProblem, writeCpio } from './cpio.js';

const busybox = spawnSync('busybox', ['cpio', '--help']).error === undefined;
const inCi = process.env.CI === 'true';
if (!busybox && !inCi)
  console.warn(
    'cpio.test: skipping the extraction test: busybox is missing. Install with: apt-get install busybox-static',
  );

describe('writeCpio', () => {
  it('GIVEN files in nested directories THEN parents come first, lengths are 4-aligned, the trailer is last', () => {
    const archive = writeCpio([
      { path: 'job/in/a/b.txt', data: Buffer.from('abc') },
      { path: 'job/run', data: Buffer.from('x'), mode: 0o755 },
    ]);

    expect(archive.length % 4).toBe(0);
    const text = archive.toString('latin1');
    const names = [...text.matchAll(/070701[0-9a-f]{104}([^\0]+)\0/g)].map((m) => m[1]);
    expect(names).toEqual(['job', 'job/in', 'job/in/a', 'job/in/a/b.txt', 'job/run', 'TRAILER!!!']);
  });

  it('GIVEN the same entries in another order THEN the bytes are identical', () => {
    const a = writeCpio([
      { path: 'x/1', data: Buffer.from('1') },
      { path: 'y', data: Buffer.from('2') },
    ]);
    const b = writeCpio([
      { path: 'y', data: Buffer.from('2') },
      { path: 'x/1', data: Buffer.from('1') },
    ]);
    expect(a.equals(b)).toBe(true);
  });

  it.each([
    ['', 'is empty'],
    ['/etc/passwd', 'is absolute'],
    ['a/../b', 'has an empty, "." or ".." segment'],
    ['a//b', 'has an empty, "." or ".." segment'],
    ['a\0b', 'contains a NUL byte'],
  ])('rejects the path %j', (path, problem) => {
    expect(cpioPathProblem(path)).toBe(problem);
    expect(() => writeCpio([{ path, data: Buffer.alloc(0) }])).toThrow(problem);
  });

  it('rejects a link with an empty target or one that also has data', () => {
    expect(() => writeCpio([{ path: 'l', symlink: '' }])).toThrow('empty target');
    expect(() => writeCpio([{ path: 'l', symlink: 'x', data: Buffer.from('1') }])).toThrow('both a file and a link');
  });

  it('rejects a path given twice and a file used as a directory', () => {
    expect(() =>
      writeCpio([
        { path: 'a', data: Buffer.from('1') },
        { path: 'a', data: Buffer.from('2') },
      ]),
    ).toThrow('given twice');
    expect(() =>
      writeCpio([
        { path: 'a', data: Buffer.from('1') },
        { path: 'a/b', data: Buffer.from('2') },
      ]),
    ).toThrow('both a file and a directory');
  });

  it.runIf(busybox || inCi)('GIVEN an archive THEN busybox cpio extracts the same files, modes and bytes', () => {
    const dir = mkdtempSync(join(tmpdir(), 'agentvm-cpio-'));
    try {
      const binary = Buffer.from(Array.from({ length: 1021 }, (_, i) => i % 256));
      const archive = writeCpio([
        { path: 'job/run', data: Buffer.from('echo hi\n'), mode: 0o755 },
        { path: 'job/in/deep/er/bin.dat', data: binary },
        { path: 'job/in/empty', data: Buffer.alloc(0) },
        { path: 'job/out' },
        { path: 'job/in/link', symlink: '../../etc/passwd' },
      ]);

      const extracted = spawnSync('busybox', ['cpio', '-i', '-d'], { cwd: dir, input: archive });

      expect(extracted.status, extracted.stderr.toString()).toBe(0);
      expect(readFileSync(join(dir, 'job/run'), 'utf8')).toBe('echo hi\n');
      expect(statSync(join(dir, 'job/run')).mode & 0o777).toBe(0o755);
      expect(readFileSync(join(dir, 'job/in/deep/er/bin.dat')).equals(binary)).toBe(true);
      expect(readFileSync(join(dir, 'job/in/empty')).length).toBe(0);
      expect(statSync(join(dir, 'job/out')).isDirectory()).toBe(true);
      // A link is stored as a link, its target verbatim: it is never followed while the archive is written or read.
      expect(readlinkSync(join(dir, 'job/in/link'))).toBe('../../etc/passwd');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
