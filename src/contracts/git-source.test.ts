// Tests of the desired-state source and the git batch reader, against real git repositories made with gitdir().

import { describe, it, expect, afterEach } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { gitdir, type FileMap, type GitDir } from '../../test/support/gitdir.js';
import { GitBatchReader } from './git-batch.js';
import { readDesiredState, resolveCommit, WORKTREE, type DesiredStateSource } from './git-source.js';
import { rejection } from '../../test/support/rejection.js';

const V1 = 'apiVersion: agentvm.dev/v1alpha1\n';
const run = promisify(execFile);

const repos: GitDir[] = [];
async function repo(files: FileMap): Promise<GitDir> {
  const made = await gitdir(files);
  repos.push(made);
  return made;
}
afterEach(async () => {
  await Promise.all(repos.splice(0).map((r) => r.cleanup()));
});

function codes(source: DesiredStateSource): string[] {
  return source.diagnostics.map((d) => `${d.severity} ${d.code} ${d.location?.file}`);
}

describe('readDesiredState at a commit', () => {
  it('GIVEN a repo with config, hosts, workloads and other files WHEN read at HEAD THEN only desired-state files come back, sorted', async () => {
    const r = await repo({
      'agentvm.yaml': V1,
      'workloads/web/manifest.yaml': 'kind: WorkloadManifest\n',
      'workloads/web/contract.yaml': 'kind: WorkloadContract\n',
      'hosts/a.yaml': 'kind: Host\n',
      'README.md': '# readme\n',
      'src/tool.ts': 'export {};\n',
      '.github/workflows/ci.yml': 'on: push\n',
    });
    const source = await readDesiredState({ repo: r.dir, ref: 'HEAD' });
    expect(source).toMatchObject({ repo: r.dir, ref: 'HEAD', commit: r.commit, uncommitted: false, diagnostics: [] });
    expect(source.files).toEqual([
      { path: 'agentvm.yaml', text: V1 },
      { path: 'hosts/a.yaml', text: 'kind: Host\n' },
      { path: 'workloads/web/contract.yaml', text: 'kind: WorkloadContract\n' },
      { path: 'workloads/web/manifest.yaml', text: 'kind: WorkloadManifest\n' },
    ]);
  });

  it('GIVEN commit C and a later commit WHEN C is read THEN it reads what C held, not the later content', async () => {
    const r = await repo({ 'hosts/a.yaml': 'v: 1\n', 'hosts/gone.yaml': 'v: 1\n' });
    const later = await r.commitFiles({
      'hosts/a.yaml': 'v: 2\n',
      'hosts/gone.yaml': null,
      'hosts/new.yaml': 'v: 2\n',
    });
    const early = await readDesiredState({ repo: r.dir, ref: r.commit });
    expect(early.commit).toBe(r.commit);
    expect(early.files).toEqual([
      { path: 'hosts/a.yaml', text: 'v: 1\n' },
      { path: 'hosts/gone.yaml', text: 'v: 1\n' },
    ]);
    const late = await readDesiredState({ repo: r.dir, ref: 'HEAD' });
    expect(late.commit).toBe(later);
    expect(late.files.map((f) => [f.path, f.text])).toEqual([
      ['hosts/a.yaml', 'v: 2\n'],
      ['hosts/new.yaml', 'v: 2\n'],
    ]);
  });

  it('GIVEN a dirty working tree and staged changes WHEN HEAD is read THEN the commit content comes back', async () => {
    const r = await repo({ 'hosts/a.yaml': 'committed: true\n' });
    await r.writeFiles({
      'hosts/a.yaml': 'edited: true\n',
      'hosts/untracked.yaml': 'new: true\n',
      'workloads/x/contract.yaml': 'staged: true\n',
    });
    await r.git('add', 'workloads/x/contract.yaml');
    const source = await readDesiredState({ repo: r.dir, ref: 'HEAD' });
    expect(source.files).toEqual([{ path: 'hosts/a.yaml', text: 'committed: true\n' }]);
  });

  it('GIVEN a branch, a tag, an annotated tag and HEAD~1 WHEN resolved THEN each names its commit', async () => {
    const r = await repo({ 'hosts/a.yaml': 'v: 1\n' });
    await r.git('tag', 'v1');
    await r.git('tag', '-a', 'v1-annotated', '-m', 'release 1');
    await r.git('branch', 'release');
    const second = await r.commitFiles({ 'hosts/a.yaml': 'v: 2\n' });
    expect(await resolveCommit(r.dir, 'main')).toBe(second);
    expect(await resolveCommit(r.dir, 'release')).toBe(r.commit);
    expect(await resolveCommit(r.dir, 'v1')).toBe(r.commit);
    expect(await resolveCommit(r.dir, 'v1-annotated')).toBe(r.commit);
    expect(await resolveCommit(r.dir, 'HEAD~1')).toBe(r.commit);
    expect(await resolveCommit(r.dir, r.commit.slice(0, 10))).toBe(r.commit);
    const viaTag = await readDesiredState({ repo: r.dir, ref: 'v1-annotated' });
    expect(viaTag).toMatchObject({
      ref: 'v1-annotated',
      commit: r.commit,
      files: [{ path: 'hosts/a.yaml', text: 'v: 1\n' }],
    });
  });

  it('GIVEN an unknown ref, a tree and a ref starting with "-" WHEN resolved THEN each is refused with a code and how to list refs', async () => {
    const r = await repo({ 'hosts/a.yaml': 'v: 1\n' });
    const unknown = await rejection(readDesiredState({ repo: r.dir, ref: 'no-such-branch' }));
    expect(unknown.code).toBe('repo.ref-not-found');
    expect(unknown.message).toContain('"no-such-branch"');
    expect(unknown.diagnostics[0]?.detail).toContain('show-ref');
    expect((await rejection(resolveCommit(r.dir, 'HEAD^{tree}'))).code).toBe('repo.ref-not-found');
    expect((await rejection(resolveCommit(r.dir, '0'.repeat(40)))).code).toBe('repo.ref-not-found');
    expect((await rejection(resolveCommit(r.dir, 'HEAD~5'))).code).toBe('repo.ref-not-found');
    expect((await rejection(resolveCommit(r.dir, '--output=/tmp/x'))).code).toBe('repo.bad-ref');
    expect((await rejection(resolveCommit(r.dir, ''))).code).toBe('repo.bad-ref');
  });

  it('GIVEN a missing path and a plain directory WHEN read THEN repo.not-found and repo.not-a-repository', async () => {
    const missing = path.join(os.tmpdir(), `agentvm-no-such-repo-${process.pid}`);
    const notFound = await rejection(readDesiredState({ repo: missing, ref: 'HEAD' }));
    expect(notFound.code).toBe('repo.not-found');
    expect(notFound.message).toContain(missing);
    // A fresh directory under the temp dir, which is in no git repository.
    const plain = await mkdtemp(path.join(os.tmpdir(), 'agentvm-plain-'));
    try {
      const notRepo = await rejection(readDesiredState({ repo: plain, ref: 'HEAD' }));
      expect(notRepo.code).toBe('repo.not-a-repository');
      expect(notRepo.message).toContain(plain);
      expect((await rejection(resolveCommit(plain, 'HEAD'))).code).toBe('repo.not-a-repository');
      await writeFile(path.join(plain, 'file'), 'x');
      expect((await rejection(resolveCommit(path.join(plain, 'file'), 'HEAD'))).code).toBe('repo.not-a-repository');
    } finally {
      await rm(plain, { recursive: true, force: true });
    }
  });

  it('GIVEN a symlink to ../../etc/passwd under workloads/ WHEN read THEN repo.symlink names the target and nothing is followed', async () => {
    const r = await repo({
      'workloads/x/contract.yaml': { symlink: '../../etc/passwd' },
      'workloads/x/manifest.yaml': 'kind: WorkloadManifest\n',
    });
    const source = await readDesiredState({ repo: r.dir, ref: 'HEAD' });
    expect(source.files.map((f) => f.path)).toEqual(['workloads/x/manifest.yaml']);
    expect(source.diagnostics).toHaveLength(1);
    const [diag] = source.diagnostics;
    expect(diag).toMatchObject({
      code: 'repo.symlink',
      severity: 'error',
      location: { file: 'workloads/x/contract.yaml', line: 1, column: 1 },
    });
    expect(diag?.summary).toContain('"../../etc/passwd"');
    expect(diag?.detail).toContain('outside the repository');
  });

  it('GIVEN the workloads directory itself is a symlink WHEN read THEN it is refused, not silently empty', async () => {
    const r = await repo({ workloads: { symlink: '/etc' }, 'agentvm.yaml': V1 });
    const source = await readDesiredState({ repo: r.dir, ref: 'HEAD' });
    expect(codes(source)).toEqual(['error repo.symlink workloads']);
  });

  it('GIVEN a gitlink under workloads/ WHEN read THEN repo.submodule', async () => {
    const r = await repo({ 'hosts/a.yaml': 'v: 1\n' });
    await r.git('update-index', '--add', '--cacheinfo', `160000,${r.commit},workloads/x`);
    await r.git('commit', '--quiet', '-m', 'add gitlink');
    const source = await readDesiredState({ repo: r.dir, ref: 'HEAD' });
    expect(codes(source)).toEqual(['error repo.submodule workloads/x']);
    expect(source.files.map((f) => f.path)).toEqual(['hosts/a.yaml']);
  });

  it('GIVEN a real submodule added with git submodule add WHEN read at HEAD and in the worktree THEN repo.submodule', async () => {
    const inner = await repo({ 'contract.yaml': 'kind: WorkloadContract\n' });
    const r = await repo({ 'hosts/a.yaml': 'v: 1\n' });
    await r.git('-c', 'protocol.file.allow=always', 'submodule', '--quiet', 'add', inner.dir, 'workloads/sub');
    await r.git('commit', '--quiet', '-m', 'add submodule');
    const atCommit = await readDesiredState({ repo: r.dir, ref: 'HEAD' });
    expect(codes(atCommit)).toEqual(['error repo.submodule workloads/sub']);
    const worktree = await readDesiredState({ repo: r.dir, ref: WORKTREE });
    expect(codes(worktree)).toEqual(['error repo.submodule workloads/sub']);
    expect(worktree.files.map((f) => f.path)).toEqual(['hosts/a.yaml']);
  });

  it('GIVEN a 20 MB file under workloads/ WHEN read THEN repo.file-too-large with size and limit, and the blob is never read', async () => {
    const r = await repo({
      'workloads/x/contract.yaml': Buffer.alloc(20 * 1024 * 1024, 0x61),
      'hosts/a.yaml': 'v: 1\n',
    });
    const before = GitBatchReader.counters.bytesRead;
    const source = await readDesiredState({ repo: r.dir, ref: 'HEAD' });
    expect(GitBatchReader.counters.bytesRead - before).toBe('v: 1\n'.length);
    expect(codes(source)).toEqual(['error repo.file-too-large workloads/x/contract.yaml']);
    expect(source.diagnostics[0]?.summary).toContain('20971520 bytes');
    expect(source.diagnostics[0]?.summary).toContain('1048576 bytes');
    const small = await readDesiredState({ repo: r.dir, ref: 'HEAD', maxFileBytes: 4 });
    expect(codes(small)).toEqual([
      'error repo.file-too-large hosts/a.yaml',
      'error repo.file-too-large workloads/x/contract.yaml',
    ]);
  });

  it('GIVEN invalid UTF-8, a NUL byte and a BOM WHEN read THEN the first two are repo.not-utf8 and the BOM is stripped', async () => {
    const r = await repo({
      'workloads/x/contract.yaml': Buffer.from([0x6b, 0x3a, 0x20, 0xc3, 0x28, 0x0a]),
      'workloads/x/manifest.yaml': Buffer.from('kind: x\n\0\n'),
      'hosts/a.yaml': Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('name: café\n')]),
    });
    const source = await readDesiredState({ repo: r.dir, ref: 'HEAD' });
    expect(codes(source)).toEqual([
      'error repo.not-utf8 workloads/x/contract.yaml',
      'error repo.not-utf8 workloads/x/manifest.yaml',
    ]);
    expect(source.files).toEqual([{ path: 'hosts/a.yaml', text: 'name: café\n' }]);
  });

  it('GIVEN file names with a control character, a backslash and a leading dash WHEN read THEN repo.bad-path, escaped', async () => {
    const r = await repo({
      'workloads/a\tb.yaml': 'v: 1\n',
      'workloads/a\\b.yaml': 'v: 1\n',
      'workloads/-rf/contract.yaml': 'v: 1\n',
      'workloads/ok/contract.yaml': 'v: 1\n',
      'docs/-notes.yaml': 'ignored: true\n',
    });
    const source = await readDesiredState({ repo: r.dir, ref: 'HEAD' });
    expect(codes(source)).toEqual([
      'warning repo.ignored-document docs/-notes.yaml',
      'error repo.bad-path workloads/-rf/contract.yaml',
      'error repo.bad-path workloads/a\\\\b.yaml',
      'error repo.bad-path workloads/a\\x09b.yaml',
    ]);
    expect(source.files.map((f) => f.path)).toEqual(['workloads/ok/contract.yaml']);
  });

  it('GIVEN YAML outside hosts/ and workloads/ WHEN read THEN a repo.ignored-document warning, but not for dot-directories', async () => {
    const r = await repo({
      'agentvm.yml': V1,
      'workload/web/contract.yaml': 'kind: WorkloadContract\n',
      '.github/workflows/ci.yml': 'on: push\n',
      '.pre-commit-config.yaml': 'repos: []\n',
      'notes.txt': 'not yaml\n',
    });
    const source = await readDesiredState({ repo: r.dir, ref: 'HEAD' });
    expect(source.files).toEqual([]);
    expect(codes(source)).toEqual([
      'warning repo.ignored-document agentvm.yml',
      'warning repo.ignored-document workload/web/contract.yaml',
    ]);
    expect(source.diagnostics[0]?.summary).toBe(
      'agentvm.yml looks like a desired-state document but is outside hosts/ and workloads/; it is ignored.',
    );
    expect(source.diagnostics[0]?.detail).toContain('agentvm.yaml');
  });

  it('GIVEN --repo is a directory inside a git repository WHEN read THEN paths are relative to that directory', async () => {
    const r = await repo({ 'examples/basic/hosts/a.yaml': 'v: 1\n', 'hosts/outer.yaml': 'v: 0\n' });
    const dir = path.join(r.dir, 'examples/basic');
    const source = await readDesiredState({ repo: dir, ref: 'HEAD' });
    expect(source).toMatchObject({ repo: dir, commit: r.commit, files: [{ path: 'hosts/a.yaml', text: 'v: 1\n' }] });
    await r.writeFiles({ 'examples/new/hosts/b.yaml': 'v: 1\n' });
    const absent = await rejection(readDesiredState({ repo: path.join(r.dir, 'examples/new'), ref: 'HEAD' }));
    expect(absent.code).toBe('repo.directory-not-in-commit');
    const worktree = await readDesiredState({ repo: path.join(r.dir, 'examples/new'), ref: WORKTREE });
    expect(worktree.files).toEqual([{ path: 'hosts/b.yaml', text: 'v: 1\n' }]);
  });

  it('GIVEN a bare clone WHEN read at a branch THEN it reads the commit; WORKTREE is refused', async () => {
    const r = await repo({ 'hosts/a.yaml': 'v: 1\n' });
    const bare = `${r.dir}.git`;
    await r.git('clone', '--quiet', '--bare', r.dir, bare);
    try {
      const source = await readDesiredState({ repo: bare, ref: 'main' });
      expect(source).toMatchObject({ commit: r.commit, files: [{ path: 'hosts/a.yaml', text: 'v: 1\n' }] });
      expect((await rejection(readDesiredState({ repo: bare, ref: WORKTREE }))).code).toBe('repo.no-worktree');
    } finally {
      await rm(bare, { recursive: true, force: true });
    }
  });

  it('GIVEN a read WHEN it completes THEN exactly one git cat-file process was spawned and it has exited', async () => {
    const files: FileMap = { 'agentvm.yaml': V1, 'workloads/w0/link.yaml': { symlink: 'contract.yaml' } };
    for (let i = 0; i < 50; i++) files[`workloads/w${i}/contract.yaml`] = `n: ${i}\n`;
    const r = await repo(files);
    const before = { ...GitBatchReader.counters };
    const source = await readDesiredState({ repo: r.dir, ref: 'HEAD' });
    expect(source.files).toHaveLength(51);
    expect(GitBatchReader.counters.processesSpawned - before.processesSpawned).toBe(1);
    // 51 files and the one symlink's target.
    expect(GitBatchReader.counters.objectsRead - before.objectsRead).toBe(52);
  });
});

describe('readDesiredState of the working tree', () => {
  it('GIVEN uncommitted edits, untracked and ignored files WHEN read with WORKTREE THEN edits and untracked files are seen, ignored ones are not, and it is marked uncommitted', async () => {
    const r = await repo({
      'hosts/a.yaml': 'committed: true\n',
      'hosts/deleted.yaml': 'v: 1\n',
      '.gitignore': 'workloads/secret/\n',
    });
    await r.writeFiles({
      'hosts/a.yaml': 'edited: true\n',
      'hosts/deleted.yaml': null,
      'workloads/new/contract.yaml': 'new: true\n',
      'workloads/secret/contract.yaml': 'ignored: true\n',
      'stray.yaml': 'x: 1\n',
    });
    const before = GitBatchReader.counters.processesSpawned;
    const source = await readDesiredState({ repo: r.dir, ref: WORKTREE });
    expect(GitBatchReader.counters.processesSpawned).toBe(before);
    expect(source).toMatchObject({ ref: WORKTREE, commit: null, uncommitted: true });
    expect(source.files).toEqual([
      { path: 'hosts/a.yaml', text: 'edited: true\n' },
      { path: 'workloads/new/contract.yaml', text: 'new: true\n' },
    ]);
    expect(codes(source)).toEqual(['warning repo.ignored-document stray.yaml']);
  });

  it('GIVEN symlinks, a symlinked directory, a nested repository, a FIFO, a large file and bad bytes in the worktree WHEN read THEN each is refused like at a commit, the FIFO is skipped', async () => {
    const r = await repo({ 'workloads/real/contract.yaml': 'v: 1\n', 'hosts/a.yaml': 'v: 1\n' });
    await r.writeFiles({
      'workloads/x/contract.yaml': { symlink: '../../etc/passwd' },
      'workloads/big/contract.yaml': Buffer.alloc(2 * 1024 * 1024, 0x61),
      'workloads/bin/contract.yaml': Buffer.from([0xff, 0xfe, 0x00]),
      'workloads/bom/contract.yaml': Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('v: 1\n')]),
    });
    await mkdir(path.join(r.dir, 'workloads/nested'), { recursive: true });
    await r.git('init', '--quiet', path.join(r.dir, 'workloads/nested'));
    await writeFile(path.join(r.dir, 'workloads/nested/contract.yaml'), 'v: 1\n');
    // git lists no FIFO (it cannot be committed), so the read neither reports nor opens it (opening would block).
    await run('mkfifo', [path.join(r.dir, 'workloads/fifo.yaml')]);
    // The committed hosts/ directory replaced by a symlink to a directory outside the repository.
    const outside = await repo({ 'a.yaml': 'outside: true\n' });
    await r.writeFiles({ hosts: null });
    await symlink(outside.dir, path.join(r.dir, 'hosts'));

    const source = await readDesiredState({ repo: r.dir, ref: WORKTREE });
    expect(codes(source)).toEqual([
      'error repo.symlink hosts',
      'error repo.file-too-large workloads/big/contract.yaml',
      'error repo.not-utf8 workloads/bin/contract.yaml',
      'error repo.submodule workloads/nested',
      'error repo.symlink workloads/x/contract.yaml',
    ]);
    expect(source.diagnostics.find((d) => d.location?.file === 'workloads/x/contract.yaml')?.summary).toContain(
      '../../etc/passwd',
    );
    expect(source.files).toEqual([
      { path: 'workloads/bom/contract.yaml', text: 'v: 1\n' },
      { path: 'workloads/real/contract.yaml', text: 'v: 1\n' },
    ]);
  });
});

describe('reading 1,000 workloads', () => {
  it('GIVEN 1,000 workloads (2,000 files) committed WHEN read at HEAD and from the worktree THEN every file comes back intact', async () => {
    const files: Record<string, string> = { 'agentvm.yaml': V1, 'hosts/h.yaml': 'kind: Host\n' };
    for (let i = 0; i < 1000; i++) {
      const name = `w${String(i).padStart(4, '0')}`;
      files[`workloads/${name}/contract.yaml`] =
        `${V1}kind: WorkloadContract\nmetadata:\n  name: ${name}\nspec:\n  riskTier: low\n`;
      files[`workloads/${name}/manifest.yaml`] = `${V1}kind: WorkloadManifest\nmetadata:\n  name: ${name}\n`;
    }
    const r = await repo(files);
    const expected = Object.entries(files)
      .map(([p, text]) => ({ path: p, text }))
      .sort((a, b) => (a.path < b.path ? -1 : 1));

    let started = performance.now();
    const atCommit = await readDesiredState({ repo: r.dir, ref: 'HEAD' });
    const commitMs = performance.now() - started;
    started = performance.now();
    const worktree = await readDesiredState({ repo: r.dir, ref: WORKTREE });
    const worktreeMs = performance.now() - started;
    console.log(
      `readDesiredState of 1,000 workloads (2,002 files): commit ${commitMs.toFixed(0)} ms, worktree ${worktreeMs.toFixed(0)} ms`,
    );

    expect(atCommit.diagnostics).toEqual([]);
    expect(atCommit.files).toEqual(expected);
    expect(worktree.diagnostics).toEqual([]);
    expect(worktree.files).toEqual(expected);
  });
});

describe('GitBatchReader', () => {
  it('GIVEN many pipelined reads mixing present, missing and binary objects WHEN awaited together THEN each gets its own answer in order', async () => {
    const binary = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7) % 256)); // spans several pipe chunks, holds LF and NUL
    const r = await repo({ 'a.txt': 'alpha\n', 'bin.dat': binary, empty: '' });
    const reader = new GitBatchReader(r.dir);
    try {
      const specs = ['HEAD:a.txt', 'HEAD:nope', 'HEAD:bin.dat', 'HEAD:empty', 'no-such-ref:a.txt', 'HEAD:a.txt'];
      const many = Array.from({ length: 300 }, (_, i) => specs[i % specs.length] as string);
      const answers = await Promise.all(many.map((spec) => reader.read(spec)));
      answers.forEach((answer, i) => {
        const spec = many[i];
        if (spec === 'HEAD:a.txt') expect(answer?.toString()).toBe('alpha\n');
        else if (spec === 'HEAD:bin.dat') expect(answer?.equals(binary)).toBe(true);
        else if (spec === 'HEAD:empty') expect(answer?.length).toBe(0);
        else expect(answer).toBeNull();
      });
      const object = await reader.readObject('HEAD');
      expect(object).toMatchObject({ type: 'commit', oid: r.commit });
    } finally {
      await reader.close();
    }
  });

  it('GIVEN a closed reader WHEN read THEN it rejects; close is idempotent; a name with a newline is refused', async () => {
    const r = await repo({ 'a.txt': 'alpha\n' });
    const reader = new GitBatchReader(r.dir);
    await expect(reader.read('HEAD:a.txt\nHEAD:a.txt')).rejects.toMatchObject({ code: 'git.bad-object-name' });
    const last = reader.read('HEAD:a.txt');
    await reader.close();
    expect((await last)?.toString()).toBe('alpha\n');
    await reader.close();
    await expect(reader.read('HEAD:a.txt')).rejects.toMatchObject({ code: 'git.batch-closed' });
  });

  it('GIVEN a directory that is no repository WHEN read THEN the read rejects with what git said, and later reads too', async () => {
    const plain = await mkdtemp(path.join(os.tmpdir(), 'agentvm-plain-'));
    const reader = new GitBatchReader(plain);
    try {
      const failed = await rejection(reader.read('HEAD:a.txt'));
      expect(failed.code).toBe('git.batch-exited');
      expect(failed.diagnostics[0]?.detail).toContain('not a git repository');
      expect((await rejection(reader.read('HEAD:a.txt'))).code).toBe('git.batch-exited');
    } finally {
      await reader.close();
      await rm(plain, { recursive: true, force: true });
    }
  });
});
