import { afterEach, describe, expect, it } from 'vitest';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execDirectives, programRefusal, resolveExec, sha256Of } from './exec-allowlist.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function release(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'exec-allowlist-'));
  dirs.push(d);
  mkdirSync(path.join(d, 'bin'));
  return d;
}

describe('resolveExec', () => {
  it('GIVEN a release program THEN it, the entrypoint, the loader and their libraries are listed as files, and the pin is checked', async () => {
    const dir = release();
    copyFileSync('/usr/bin/true', path.join(dir, 'bin/tool'));
    chmodSync(path.join(dir, 'bin/tool'), 0o755);
    const sha = (await sha256Of(path.join(dir, 'bin/tool')))!;
    const facts = await resolveExec({
      entrypoint: 'node',
      programs: [{ name: 'tool', path: 'bin/tool', sha256: sha }],
      releaseDir: dir,
      reload: false,
      toHost: (p) => p,
    });
    expect(facts.files).toContain(path.join(dir, 'bin/tool'));
    expect(facts.files.some((f) => /\/node$/.test(f))).toBe(true);
    expect(facts.files.some((f) => /ld-linux/.test(f))).toBe(true);
    expect(facts.files.some((f) => /libc\.so/.test(f))).toBe(true);
    expect(facts.files.some((f) => /\/(sh|dash|bash)$/.test(f))).toBe(false);
    expect(programRefusal([{ name: 'tool', path: 'bin/tool', sha256: sha }], facts, 'unit.w.p')).toEqual([]);
    const [d] = programRefusal([{ name: 'tool', path: 'bin/tool', sha256: 'f'.repeat(64) }], facts, 'unit.w.p');
    expect(d!.summary).toContain(`hashes to sha256:${sha}, not its pin sha256:${'f'.repeat(64)}`);
  });

  it('GIVEN a release program that is a symlink out of the release (to /bin/sh) THEN it grants nothing and apply refuses', async () => {
    const dir = release();
    symlinkSync('/bin/sh', path.join(dir, 'bin/tool'));
    const shSha = (await sha256Of('/bin/sh'))!;
    const facts = await resolveExec({
      entrypoint: '/usr/bin/true',
      programs: [{ name: 'tool', path: 'bin/tool', sha256: shSha }],
      releaseDir: dir,
      reload: false,
      toHost: (p) => p,
    });
    expect(facts.files.some((f) => /\/(sh|dash|bash)$/.test(f))).toBe(false);
    expect(facts.programs).toEqual([{ name: 'tool', path: 'bin/tool', seen: null }]);
    expect(
      programRefusal([{ name: 'tool', path: 'bin/tool', sha256: shSha }], facts, 'unit.w.p').map((d) => d.code),
    ).toEqual(['systemd.tool-digest']);
  });

  it('GIVEN no facts (validate) THEN the declared files are listed and every writable mount is noexec', () => {
    const out = Object.fromEntries(
      execDirectives({
        programs: [{ name: 't', path: 'bin/t', sha256: 'a'.repeat(64) }],
        releaseDir: '/r',
        entrypoint: '/r/bin/server',
        facts: null,
        runtimeDirs: ['/run/agent-gateway/p'],
      }),
    );
    expect(out.NoExecPaths).toBe(
      '/ /dev /tmp /var/tmp /run -/run/user -/home -/root -/dev/shm -/dev/mqueue /run/agent-gateway/p',
    );
    expect(out.ExecPaths).toBe('/r/bin/server /r/bin/t');
    expect(out.SystemCallFilter).toBe('~memfd_create');
  });
});
