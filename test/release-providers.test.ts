// Integration tests of the release providers against real git repositories, real `npm pack` tarballs, GNU tar
// and a real file system under a temporary host root. No mocks: every release is really fetched, unpacked,
// sealed, switched, captured and rolled back.

import { execFile } from 'node:child_process';
import { chmod, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DesiredResource, LockedResource, PlannedChange } from '../src/model/resources.js';
import type { ApplyResponse, CapturedRelease, HostContext, Provider } from '../src/providers/provider.js';
import { GitReleaseProvider } from '../src/providers/release/git-release.js';
import { PackageReleaseProvider, packageIdentity, sha512Integrity } from '../src/providers/release/package-release.js';
import { treeDigest } from '../src/providers/release/tree-digest.js';
import { gitdir, type GitDir } from './support/gitdir.js';

const run = promisify(execFile);

let root: string;
let host: HostContext;
const cleanups: Array<() => Promise<void>> = [];

beforeEach(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'agentvm-release-'));
  host = {
    host: 'test',
    root,
    repo: root,
    paths: {
      state: `${root}/var/lib/agentvm/state`,
      releases: `${root}/var/lib/agentvm/releases`,
      audit: `${root}/var/log/agentvm`,
      run: `${root}/run/agentvm`,
      cache: `${root}/var/cache/agentvm`,
    },
  };
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
  await rm(root, { recursive: true, force: true });
});

async function repository(files: Parameters<typeof gitdir>[0]): Promise<GitDir> {
  const repo = await gitdir(files);
  cleanups.push(() => repo.cleanup());
  return repo;
}

function change(
  desired: DesiredResource | undefined,
  action: PlannedChange['action'],
  workload = desired?.workload ?? 'core',
): PlannedChange {
  return {
    address: `release.${workload}`,
    provider: desired?.provider ?? 'release.git',
    workload,
    action,
    effect: 'restart',
    reasons: [],
    ...(desired ? { desired, after: { identity: desired.identity } } : {}),
    dependsOn: [],
  };
}

function gitDesired(repo: string, commit: string, extra: { subdir?: string; workload?: string } = {}): DesiredResource {
  const workload = extra.workload ?? 'core';
  return {
    address: `release.${workload}`,
    provider: 'release.git',
    workload,
    config: { repo, commit, ...(extra.subdir ? { subdir: extra.subdir } : {}) },
    dependsOn: [],
    identity: commit,
  };
}

/** What an apply caller persists: the lockfile entry, plus the capture seen by beforeMutation and the link at that moment. */
interface Applied {
  response: ApplyResponse;
  locked?: LockedResource;
  captures: Array<{ captured: CapturedRelease | null; currentAtCapture: string | null }>;
  progress: string[];
}

async function currentLink(workload: string): Promise<string | null> {
  try {
    return await readlink(path.join(host.paths.releases, workload, 'current'));
  } catch {
    return null;
  }
}

async function apply(
  provider: Provider,
  desired: DesiredResource | undefined,
  action: PlannedChange['action'],
  locked?: LockedResource,
  workload?: string,
): Promise<Applied> {
  const captures: Applied['captures'] = [];
  const progress: string[] = [];
  const c = change(desired, action, workload);
  const response = await provider.apply({
    host,
    change: c,
    ...(locked ? { locked } : {}),
    progress: (m) => progress.push(m),
    beforeMutation: async (captured) => {
      captures.push({ captured, currentAtCapture: await currentLink(c.workload) });
    },
  });
  const entry = response.locked ? { ...response.locked, commit: null, appliedAt: '2025-01-01T00:00:00Z' } : undefined;
  return { response, ...(entry ? { locked: entry } : {}), captures, progress };
}

async function planFor(
  provider: Provider,
  desired: DesiredResource | undefined,
  locked: LockedResource | undefined,
  workload = 'core',
) {
  const address = `release.${workload}`;
  const read = await provider.read({ host, address, ...(desired ? { desired } : {}), ...(locked ? { locked } : {}) });
  const plan = provider.plan({
    address,
    ...(desired ? { desired } : {}),
    live: read.live,
    ...(locked ? { locked } : {}),
  });
  return { read, plan };
}

const releaseDir = (workload: string, id: string): string => path.join(host.paths.releases, workload, id);
const mode = async (file: string): Promise<number> => (await stat(file)).mode & 0o7777;

async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const entry of await readdir(path.join(dir, rel), { withFileTypes: true })) {
      const child = rel ? `${rel}/${entry.name}` : entry.name;
      out.push(entry.isDirectory() ? `${child}/` : child);
      if (entry.isDirectory()) await walk(child);
    }
  };
  await walk('');
  return out.sort();
}

async function writeInto(file: string, content: string): Promise<void> {
  await chmod(path.dirname(file), 0o755);
  await chmod(file, 0o644);
  await writeFile(file, content);
}

describe('release.git', () => {
  const provider = new GitReleaseProvider();

  it('installs a commit read-only, switches with capture-first, detects a hand edit, repairs it and rolls back byte for byte', async () => {
    const repo = await repository({
      'app/main.py': 'print("A")\n',
      'app/run.sh': '#!/bin/sh\nexec python3 main.py\n',
      'README.md': 'A\n',
    });
    await chmod(path.join(repo.dir, 'app/run.sh'), 0o755);
    const commitA = await repo.commitFiles({}, 'exec bit');
    expect(await repo.git('ls-tree', commitA, 'app/run.sh')).toMatch(/^100755 /);
    const commitB = await repo.commitFiles({ 'app/main.py': 'print("B")\n', 'app/new.py': 'NEW = 1\n' }, 'B');

    // GIVEN nothing installed WHEN commit A is applied THEN its files are a read-only release and current points at it.
    const first = await apply(provider, gitDesired(repo.dir, commitA), 'create');
    expect(first.response.diagnostics).toEqual([]);
    expect(first.captures).toEqual([{ captured: null, currentAtCapture: null }]);
    expect(first.progress.some((m) => m.includes(`fetching ${commitA}`))).toBe(true);
    const dirA = releaseDir('core', commitA);
    expect(await listTree(dirA)).toEqual(['README.md', 'app/', 'app/main.py', 'app/run.sh']);
    expect(await readFile(path.join(dirA, 'app/main.py'), 'utf8')).toBe('print("A")\n');
    expect(await mode(dirA)).toBe(0o555);
    expect(await mode(path.join(dirA, 'app'))).toBe(0o555);
    expect(await mode(path.join(dirA, 'app/main.py'))).toBe(0o444);
    expect(await mode(path.join(dirA, 'app/run.sh'))).toBe(0o555);
    expect(await currentLink('core')).toBe(commitA);
    const lockedA = first.locked as LockedResource;
    expect(lockedA).toMatchObject({ identity: commitA, attributes: { releaseId: commitA, path: dirA } });
    expect(lockedA.digest).toBe((await treeDigest(dirA)).digest);
    expect((await readdir(path.join(host.paths.releases, 'core'))).sort()).toEqual([commitA, 'current'].sort());

    // THEN the digest is stable: reading again plans nothing, and re-applying changes nothing and captures nothing.
    const steady = await planFor(provider, gitDesired(repo.dir, commitA), lockedA);
    expect(steady.read.live).toMatchObject({ exists: true, identity: commitA, digest: lockedA.digest });
    expect(steady.plan.action).toBe('noop');
    const again = await apply(provider, gitDesired(repo.dir, commitA), 'noop', lockedA);
    expect(again.response.diagnostics).toEqual([]);
    expect(again.captures).toEqual([]);
    expect(again.response.captured).toBeUndefined();
    expect(again.locked?.digest).toBe(lockedA.digest);

    // WHEN commit B is applied THEN A is captured (while current still points at A) and current switches to B.
    const toB = await planFor(provider, gitDesired(repo.dir, commitB), lockedA);
    expect([toB.plan.action, toB.plan.effect, toB.plan.reasons.map((r) => r.code)]).toEqual([
      'update',
      'restart',
      ['source-changed'],
    ]);
    const second = await apply(provider, gitDesired(repo.dir, commitB), 'update', lockedA);
    expect(second.response.diagnostics).toEqual([]);
    const capturedA = { identity: commitA, digest: lockedA.digest, releaseId: commitA, foreign: false };
    expect(second.captures).toEqual([{ captured: capturedA, currentAtCapture: commitA }]);
    expect(second.response.captured).toEqual(capturedA);
    expect(await currentLink('core')).toBe(commitB);
    const lockedB = second.locked as LockedResource;
    const dirB = releaseDir('core', commitB);
    expect(await readFile(path.join(dirB, 'app/main.py'), 'utf8')).toBe('print("B")\n');

    // WHEN a file of the live release is edited by hand THEN read sees another digest and plan says replace + drift.
    await writeInto(path.join(dirB, 'app/main.py'), 'print("hacked")\n');
    const drifted = await planFor(provider, gitDesired(repo.dir, commitB), lockedB);
    expect(drifted.read.live.identity).toBe(commitB);
    expect(drifted.read.live.digest).not.toBe(lockedB.digest);
    expect(drifted.plan.action).toBe('replace');
    expect(drifted.plan.reasons.map((r) => r.code)).toEqual(['live-modified']);
    expect(drifted.plan.drift.map((r) => r.code)).toEqual(['live-modified']);

    // WHEN applied THEN B is reinstalled fresh; the edited copy is kept aside for inspection under captured-*, but it
    // is NOT offered as the rollback target (issue 18: rolling back to it would reinstate the tampering).
    const repaired = await apply(provider, gitDesired(repo.dir, commitB), 'replace', lockedB);
    expect(repaired.response.diagnostics).toEqual([]);
    expect(repaired.locked?.digest).toBe(lockedB.digest);
    expect(await readFile(path.join(dirB, 'app/main.py'), 'utf8')).toBe('print("B")\n');
    expect(await mode(path.join(dirB, 'app/main.py'))).toBe(0o444);
    expect(repaired.response.captured ?? null).toBeNull();
    const kept = (await readdir(releaseDir('core', '.'))).filter((n) => /^captured-[0-9a-f]{12}$/.test(n));
    expect(kept).toHaveLength(1);
    expect(await readFile(path.join(releaseDir('core', kept[0]!), 'app/main.py'), 'utf8')).toBe('print("hacked")\n');
    expect((await planFor(provider, gitDesired(repo.dir, commitB), repaired.locked)).plan.action).toBe('noop');

    // WHEN rolled back to the recorded target A THEN current points at A, byte for byte what was recorded.
    const rollback = await provider.rollbackTo(host, 'core', commitA, lockedA.digest, {
      locked: repaired.locked as LockedResource,
    });
    expect(rollback.diagnostics).toEqual([]);
    expect(rollback.locked).toMatchObject({ identity: commitA, digest: lockedA.digest });
    expect(rollback.captured).toEqual({
      identity: commitB,
      digest: lockedB.digest,
      releaseId: commitB,
      foreign: false,
    });
    expect(await currentLink('core')).toBe(commitA);
    expect((await treeDigest(path.join(host.paths.releases, 'core', commitA))).digest).toBe(lockedA.digest);
    for (const file of ['app/main.py', 'app/run.sh', 'README.md']) {
      expect(await readFile(path.join(host.paths.releases, 'core', 'current', file))).toEqual(
        Buffer.from(await repo.git('show', `${commitA}:${file}`)),
      );
    }

    // A rollback target whose files no longer match the recorded digest is refused and nothing switches.
    await writeInto(path.join(dirB, 'README.md'), 'tampered\n');
    const refused = await provider.rollbackTo(host, 'core', commitB, lockedB.digest);
    expect(refused.diagnostics.map((d) => d.code)).toEqual(['release.rollback-digest-mismatch']);
    expect(refused.locked).toBeUndefined();
    expect(await currentLink('core')).toBe(commitA);
  });

  it('changes nothing visible when the capture cannot be recorded (beforeMutation throws)', async () => {
    const repo = await repository({ 'a.txt': 'A\n' });
    const commitB = await repo.commitFiles({ 'a.txt': 'B\n' });
    const first = await apply(provider, gitDesired(repo.dir, repo.commit), 'create');
    const failing = provider.apply({
      host,
      change: change(gitDesired(repo.dir, commitB), 'update'),
      ...(first.locked ? { locked: first.locked } : {}),
      beforeMutation: async () => {
        throw new Error('lockfile is not writable');
      },
    });
    await expect(failing).rejects.toThrow('lockfile is not writable');
    expect(await currentLink('core')).toBe(repo.commit);
    expect((await readdir(path.join(host.paths.releases, 'core'))).sort()).toEqual([repo.commit, 'current'].sort());
  });

  it('refuses a branch, a short id and a tree id where a commit is required, writing nothing', async () => {
    const repo = await repository({ 'a.txt': 'a\n' });
    const tree = (await repo.git('rev-parse', `${repo.commit}^{tree}`)).trim();
    for (const [commit, code] of [
      ['main', 'release.commit-not-exact'],
      [repo.commit.slice(0, 12), 'release.commit-not-exact'],
      [repo.commit.toUpperCase(), 'release.commit-not-exact'],
      [tree, 'release.not-a-commit'],
    ] as const) {
      const desired = gitDesired(repo.dir, commit);
      expect(provider.validate({ resource: desired }).diagnostics.map((d) => d.code)).toEqual(
        code === 'release.not-a-commit' ? [] : [code],
      );
      const result = await apply(provider, desired, 'create');
      expect(result.response.diagnostics.map((d) => d.code)).toEqual([code]);
      expect(result.captures).toEqual([]);
    }
    expect(await readdir(host.paths.releases).catch(() => [])).toEqual([]);
  });

  it('releases exactly the committed bytes of a subdir: no export-subst, no export-ignore', async () => {
    const repo = await repository({
      '.gitattributes': 'svc/version.txt export-subst\nsvc/ignored.txt export-ignore\n',
      'svc/version.txt': 'commit $Format:%H$\n',
      'svc/ignored.txt': 'still here\n',
      'other/x.txt': 'not released\n',
    });
    const result = await apply(provider, gitDesired(`file://${repo.dir}`, repo.commit, { subdir: 'svc/' }), 'create');
    expect(result.response.diagnostics).toEqual([]);
    const dir = releaseDir('core', repo.commit);
    expect(await listTree(dir)).toEqual(['ignored.txt', 'version.txt']);
    expect(await readFile(path.join(dir, 'version.txt'), 'utf8')).toBe('commit $Format:%H$\n');

    const missing = await apply(
      provider,
      gitDesired(repo.dir, repo.commit, { subdir: 'nope', workload: 'other' }),
      'create',
    );
    expect(missing.response.diagnostics.map((d) => d.code)).toEqual(['release.subdir-missing']);
  });

  it('refuses a commit that contains a symlink, leaving no release and no temp directory behind', async () => {
    const repo = await repository({ 'ok.txt': 'ok\n', link: { symlink: '/etc/passwd' } });
    const result = await apply(provider, gitDesired(repo.dir, repo.commit), 'create');
    expect(result.response.diagnostics.map((d) => [d.code, d.address])).toEqual([
      ['release.archive-link', 'release.core'],
    ]);
    expect(result.captures).toEqual([]);
    expect(await readdir(path.join(host.paths.releases, 'core'))).toEqual([]);
  });

  it('reports a missing commit as a fetch failure', async () => {
    const repo = await repository({ 'a.txt': 'a\n' });
    const result = await apply(provider, gitDesired(repo.dir, 'f'.repeat(40)), 'create');
    expect(result.response.diagnostics.map((d) => d.code)).toEqual(['release.fetch-failed']);
  });

  it('deletes the current link and its commits, keeps captured releases, and lists only git workloads', async () => {
    const repo = await repository({ 'a.txt': 'a\n' });
    const first = await apply(provider, gitDesired(repo.dir, repo.commit), 'create');
    await writeInto(path.join(releaseDir('core', repo.commit), 'a.txt'), 'edited\n');
    await apply(provider, gitDesired(repo.dir, repo.commit), 'replace', first.locked);

    expect((await provider.list({ host })).owned).toEqual([{ address: 'release.core', identity: repo.commit }]);
    expect((await new PackageReleaseProvider().list({ host })).owned).toEqual([]);

    const deleted = await apply(provider, undefined, 'delete', first.locked, 'core');
    expect(deleted.response.locked).toBeUndefined();
    expect(deleted.response.diagnostics.map((d) => d.code)).toEqual(['release.foreign-left']);
    expect(deleted.captures).toEqual([{ captured: null, currentAtCapture: repo.commit }]);
    const left = await readdir(path.join(host.paths.releases, 'core'));
    expect(left).toHaveLength(1);
    expect(left[0]).toMatch(/^captured-/);
    expect((await provider.list({ host })).owned).toEqual([]);
    expect((await planFor(provider, undefined, undefined)).plan.action).toBe('noop');
  });
});

describe('release.package', () => {
  const provider = new PackageReleaseProvider();
  const name = '@agentvm-test/pool';

  /** `npm pack` of a tiny package; returns the tarball path and the integrity npm reports. */
  async function pack(
    version: string,
    files: Record<string, string> = {},
  ): Promise<{ tarball: string; integrity: string }> {
    const dir = path.join(root, 'src', version);
    await mkdir(path.join(dir, 'bin'), { recursive: true });
    await writeFile(
      path.join(dir, 'package.json'),
      JSON.stringify({ name, version, files: ['index.js', 'bin', 'lib'] }),
    );
    await writeFile(path.join(dir, 'index.js'), `module.exports = '${version}';\n`);
    await writeFile(path.join(dir, 'bin', 'pool'), '#!/usr/bin/env node\nrequire("..");\n', { mode: 0o755 });
    for (const [rel, content] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
      await writeFile(path.join(dir, rel), content);
    }
    const out = path.join(root, 'tarballs');
    await mkdir(out, { recursive: true });
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', out], {
      cwd: dir,
      env: {
        ...process.env,
        npm_config_cache: path.join(root, 'npm-cache'),
        npm_config_update_notifier: 'false',
        npm_config_fund: 'false',
        npm_config_audit: 'false',
      },
    });
    const [info] = JSON.parse(stdout) as Array<{ filename: string; integrity: string }>;
    if (!info) throw new Error('npm pack printed nothing');
    return { tarball: path.join(out, info.filename), integrity: info.integrity };
  }

  function pkgDesired(version: string, tarball: string, integrity: string, workload = 'pool'): DesiredResource {
    const config = { name, version, integrity, tarball };
    return {
      address: `release.${workload}`,
      provider: 'release.package',
      workload,
      config,
      dependsOn: [],
      identity: packageIdentity(config),
    };
  }

  const releaseId = (version: string): string => `@agentvm-test+pool@${version}`;

  it('installs an npm-pack tarball after checking its integrity, stripping package/, read-only', async () => {
    const v1 = await pack('1.0.0');
    expect(sha512Integrity(await readFile(v1.tarball))).toBe(v1.integrity);
    const desired = pkgDesired('1.0.0', pathToFileURL(v1.tarball).href, v1.integrity);
    expect(provider.validate({ resource: desired }).diagnostics).toEqual([]);

    // A leftover of an interrupted apply (sealed, as a half-finished extraction would be) is cleared by the next one.
    const leftover = path.join(host.paths.releases, 'pool', '.tmp-leftover');
    await mkdir(leftover, { recursive: true });
    await writeFile(path.join(leftover, 'half.js'), 'half');
    await chmod(leftover, 0o555);

    const result = await apply(provider, desired, 'create');
    expect(result.response.diagnostics).toEqual([]);
    expect(result.progress.some((m) => m.includes('leftover'))).toBe(true);
    expect((await readdir(path.join(host.paths.releases, 'pool'))).sort()).toEqual([releaseId('1.0.0'), 'current']);
    const dir = releaseDir('pool', releaseId('1.0.0'));
    expect(await listTree(dir)).toEqual(['bin/', 'bin/pool', 'index.js', 'package.json']);
    expect(await mode(path.join(dir, 'bin/pool'))).toBe(0o555);
    expect(await mode(path.join(dir, 'index.js'))).toBe(0o444);
    expect(await currentLink('pool')).toBe(releaseId('1.0.0'));
    expect(result.locked).toMatchObject({ identity: desired.identity, attributes: { releaseId: releaseId('1.0.0') } });

    const steady = await planFor(provider, desired, result.locked, 'pool');
    expect(steady.read.live).toMatchObject({ exists: true, identity: desired.identity, digest: result.locked?.digest });
    expect(steady.plan.action).toBe('noop');

    // A new version: the old one is captured (not foreign: it is the locked release), then replaced.
    const v2 = await pack('1.1.0');
    const next = await apply(provider, pkgDesired('1.1.0', v2.tarball, v2.integrity), 'update', result.locked);
    expect(next.response.diagnostics).toEqual([]);
    expect(next.captures).toEqual([
      {
        captured: {
          identity: desired.identity,
          digest: result.locked?.digest,
          releaseId: releaseId('1.0.0'),
          foreign: false,
        },
        currentAtCapture: releaseId('1.0.0'),
      },
    ]);
    expect(await currentLink('pool')).toBe(releaseId('1.1.0'));
    expect((await provider.list({ host })).owned).toEqual([{ address: 'release.pool', identity: releaseId('1.1.0') }]);
    expect((await new GitReleaseProvider().list({ host })).owned).toEqual([]);

    const rolled = await provider.rollbackTo(host, 'pool', releaseId('1.0.0'), result.locked?.digest as string, {
      identity: desired.identity,
    });
    expect(rolled.diagnostics).toEqual([]);
    expect(rolled.locked).toMatchObject({ identity: desired.identity, digest: result.locked?.digest });
    expect(await readFile(path.join(host.paths.releases, 'pool', 'current', 'index.js'), 'utf8')).toBe(
      "module.exports = '1.0.0';\n",
    );
  });

  it('refuses a tarball with one flipped byte before unpacking anything', async () => {
    const v1 = await pack('1.0.0');
    const bytes = await readFile(v1.tarball);
    bytes[bytes.length >> 1] = (bytes[bytes.length >> 1] ?? 0) ^ 0x01;
    const tampered = path.join(root, 'tampered.tgz');
    await writeFile(tampered, bytes);
    const result = await apply(provider, pkgDesired('1.0.0', tampered, v1.integrity), 'create');
    expect(result.response.diagnostics.map((d) => d.code)).toEqual(['release.integrity-mismatch']);
    expect(result.response.diagnostics[0]?.detail).toContain(`expected ${v1.integrity}`);
    expect(result.response.diagnostics[0]?.detail).toContain(`actual ${sha512Integrity(bytes)}`);
    expect(result.captures).toEqual([]);
    expect(await readdir(host.paths.releases).catch(() => [])).toEqual([]);
  });

  it('refuses a tarball whose package.json names another version', async () => {
    const v1 = await pack('1.0.0');
    const result = await apply(provider, pkgDesired('2.0.0', v1.tarball, v1.integrity), 'create');
    expect(result.response.diagnostics.map((d) => d.code)).toEqual(['release.package-mismatch']);
    expect(await readdir(host.paths.releases).catch(() => [])).toEqual([]);
  });

  it('captures a hand-installed release as a foreign rollback target before switching, and can roll back to it', async () => {
    const hand = releaseDir('pool', 'hand-1');
    await mkdir(path.join(hand, 'lib'), { recursive: true });
    await writeFile(path.join(hand, 'lib', 'index.js'), 'hand-made\n');
    await writeFile(path.join(hand, 'package.json'), '{"name":"pool","version":"0.0.1"}');
    await import('node:fs/promises').then((fs) =>
      fs.symlink('hand-1', path.join(host.paths.releases, 'pool', 'current')),
    );
    const handDigest = (await treeDigest(hand)).digest;

    const v1 = await pack('1.0.0');
    const desired = pkgDesired('1.0.0', v1.tarball, v1.integrity);
    const planned = await planFor(provider, desired, undefined, 'pool');
    expect(planned.read.live).toMatchObject({ exists: true, identity: 'hand-1', digest: handDigest });
    expect([planned.plan.action, planned.plan.reasons.map((r) => r.code), planned.plan.drift]).toEqual([
      'update',
      ['captured', 'source-changed'],
      [],
    ]);

    const result = await apply(provider, desired, 'update');
    expect(result.response.diagnostics).toEqual([]);
    const captured = { identity: 'hand-1', digest: handDigest, releaseId: 'hand-1', foreign: true };
    expect(result.captures).toEqual([{ captured, currentAtCapture: 'hand-1' }]);
    expect(await currentLink('pool')).toBe(releaseId('1.0.0'));
    expect(await mode(path.join(hand, 'lib', 'index.js'))).toBe(0o444); // sealed: the rollback target stays as captured

    const rolled = await provider.rollbackTo(host, 'pool', 'hand-1', handDigest);
    expect(rolled.diagnostics).toEqual([]);
    expect(await currentLink('pool')).toBe('hand-1');
    expect(await readFile(path.join(host.paths.releases, 'pool', 'current', 'lib', 'index.js'), 'utf8')).toBe(
      'hand-made\n',
    );
  });

  it('moves a `current` that is a real directory to captured-<digest12> before installing', async () => {
    const current = path.join(host.paths.releases, 'pool', 'current');
    await mkdir(current, { recursive: true });
    await writeFile(path.join(current, 'server.js'), 'legacy\n');
    const digest = (await treeDigest(current)).digest;
    const capturedId = `captured-${digest.slice('sha256:'.length, 'sha256:'.length + 12)}`;

    const v1 = await pack('1.0.0');
    const result = await apply(provider, pkgDesired('1.0.0', v1.tarball, v1.integrity), 'update');
    expect(result.response.diagnostics).toEqual([]);
    expect(result.captures).toEqual([
      { captured: { identity: capturedId, digest, releaseId: capturedId, foreign: true }, currentAtCapture: null },
    ]);
    expect((await lstat(current)).isSymbolicLink()).toBe(true);
    expect(await currentLink('pool')).toBe(releaseId('1.0.0'));
    expect(await readFile(path.join(releaseDir('pool', capturedId), 'server.js'), 'utf8')).toBe('legacy\n');
    expect((await treeDigest(releaseDir('pool', capturedId))).digest).toBe(digest);
  });

  describe('malicious tarballs', () => {
    async function evil(
      name: string,
      tarArgs: string[],
      setup: (dir: string) => Promise<void>,
    ): Promise<{ tarball: string; integrity: string }> {
      const dir = path.join(root, 'evil', name);
      await mkdir(path.join(dir, 'package'), { recursive: true });
      await writeFile(
        path.join(dir, 'package', 'package.json'),
        JSON.stringify({ name: '@agentvm-test/pool', version: '1.0.0' }),
      );
      await setup(dir);
      const tarball = path.join(root, 'evil', `${name}.tgz`);
      await run('tar', ['-czf', tarball, '-C', dir, ...tarArgs]);
      return { tarball, integrity: sha512Integrity(await readFile(tarball)) };
    }

    const cases: Array<[string, string[], (dir: string) => Promise<void>, string]> = [
      [
        'a .. path',
        ['-P', '--transform', 's,^package/x$,package/../../../escaped,', 'package/package.json', 'package/x'],
        (dir) => writeFile(path.join(dir, 'package', 'x'), 'evil\n'),
        'release.archive-unsafe-path',
      ],
      [
        'an absolute path',
        ['-P', '--transform', 's,^package/x$,/tmp/agentvm-escaped-absolute,', 'package/package.json', 'package/x'],
        (dir) => writeFile(path.join(dir, 'package', 'x'), 'evil\n'),
        'release.archive-unsafe-path',
      ],
      [
        'a symlink',
        ['package'],
        (dir) =>
          import('node:fs/promises').then((fs) => fs.symlink('/etc/passwd', path.join(dir, 'package', 'passwd'))),
        'release.archive-link',
      ],
    ];

    it.each(cases)('refuses %s and writes nothing anywhere', async (label, tarArgs, setup, code) => {
      const { tarball, integrity } = await evil(label.replace(/\W+/g, '-'), tarArgs, setup);
      const listing = (await run('tar', ['-tzvPf', tarball])).stdout;
      expect(listing).toMatch(/\.\.\/\.\.\/\.\.\/escaped|\/tmp\/agentvm-escaped-absolute|passwd -> \/etc\/passwd/);

      const result = await apply(provider, pkgDesired('1.0.0', tarball, integrity), 'create');
      expect(result.response.diagnostics.map((d) => d.code)).toEqual([code]);
      expect(result.captures).toEqual([]);
      expect(await readdir(host.paths.releases).catch(() => [])).toEqual([]);
      await expect(stat('/tmp/agentvm-escaped-absolute')).rejects.toThrow();
      await expect(stat(path.join(host.paths.releases, '..', 'escaped'))).rejects.toThrow();
      await expect(stat(path.join(root, 'escaped'))).rejects.toThrow();
    });
  });

  it('refuses plain http and relative tarball locations', () => {
    const integrity = sha512Integrity(Buffer.from('x'));
    for (const tarball of ['http://example.com/pool-1.0.0.tgz', 'pool-1.0.0.tgz']) {
      expect(
        provider.validate({ resource: pkgDesired('1.0.0', tarball, integrity) }).diagnostics.map((d) => d.path),
      ).toEqual(['$.spec.source.package.tarball']);
    }
  });
});
