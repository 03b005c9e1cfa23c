// The content-addressed release store and the stat index (ADR 0020), against real git repositories and a real file
// system under a temporary host root. The hostile party is whoever edits release files by hand: an edit through any
// link, an edit with the mtime put back, an edit in the same second the index was written — each must still be drift.

import { execFile } from 'node:child_process';
import { chmod, lstat, mkdtemp, readFile, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DesiredResource, LockedResource, PlannedChange } from '../src/model/resources.js';
import type { HostContext } from '../src/providers/provider.js';
import { GitReleaseProvider } from '../src/providers/release/git-release.js';
import { ContentStore } from '../src/providers/release/content-store.js';
import { StatIndex, statIndexFile } from '../src/providers/release/stat-index.js';
import { treeDigest } from '../src/providers/release/tree-digest.js';
import { gitdir, type GitDir } from './support/gitdir.js';

const run = promisify(execFile);
const provider = new GitReleaseProvider();
let root: string;
let host: HostContext;
const cleanups: Array<() => Promise<void>> = [];

beforeEach(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'agentvm-store-'));
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
  await run('chmod', ['-R', 'u+w', root]).catch(() => undefined);
  await rm(root, { recursive: true, force: true });
});

async function repository(files: Parameters<typeof gitdir>[0]): Promise<GitDir> {
  const repo = await gitdir(files);
  cleanups.push(() => repo.cleanup());
  return repo;
}

function desired(repo: string, commit: string, workload: string): DesiredResource {
  return {
    address: `release.${workload}`,
    provider: 'release.git',
    workload,
    config: { repo, commit },
    dependsOn: [],
    identity: commit,
  };
}

function change(d: DesiredResource | undefined, action: PlannedChange['action'], workload: string): PlannedChange {
  return {
    address: `release.${workload}`,
    provider: 'release.git',
    workload,
    action,
    effect: 'restart',
    reasons: [],
    ...(d ? { desired: d, after: { identity: d.identity } } : {}),
    dependsOn: [],
  };
}

async function install(
  d: DesiredResource,
  locked?: LockedResource,
): Promise<{ locked: LockedResource; progress: string[] }> {
  const progress: string[] = [];
  const res = await provider.apply({
    host,
    change: change(d, locked ? 'replace' : 'create', d.workload),
    ...(locked ? { locked } : {}),
    progress: (m) => progress.push(m),
  });
  expect(res.diagnostics).toEqual([]);
  return { locked: { ...res.locked!, commit: null, appliedAt: '2026-01-01T00:00:00Z' }, progress };
}

/** One plan's read of a workload (a fresh snapshot: the stat index is loaded from disk, as a new `agentvm plan` does). */
async function planOf(d: DesiredResource, locked: LockedResource, snapshot = new Map<string, unknown>()) {
  const read = await provider.read({ host, address: d.address, desired: d, locked, snapshot });
  return {
    live: read.live,
    plan: provider.plan({ address: d.address, desired: d, live: read.live, locked }),
    snapshot,
  };
}

/** Rewrites a release file in place as an attacker with root would: same size; mtime optionally put back. */
async function tamper(file: string, text: string, restoreMtime: boolean): Promise<void> {
  const before = await stat(file);
  // touch -r copies the times to the nanosecond (utimes from JavaScript rounds them to microseconds).
  const reference = `${file}.times`;
  if (restoreMtime) await run('touch', ['-r', file, reference]);
  await chmod(path.dirname(file), 0o755);
  await chmod(file, 0o644);
  await writeFile(file, text);
  await chmod(file, before.mode & 0o777);
  if (restoreMtime) {
    await run('touch', ['-r', reference, file]);
    await rm(reference);
  }
}

describe('content-addressed release store', () => {
  it('extracts a commit once for many workloads, links every workload to the one tree, and catches an edit through any link', async () => {
    const repo = await repository({ 'main.py': 'print("A")\n', 'lib/util.py': 'X = 1\n' });
    const names = ['w-a', 'w-b', 'w-c'];
    const applied: Record<string, { locked: LockedResource; progress: string[] }> = {};
    for (const w of names) applied[w] = await install(desired(repo.dir, repo.commit, w));

    // One materialisation; the others came from the store.
    const materialised = names.filter((w) =>
      applied[w]!.progress.some((m) => m.includes(`materialising ${repo.commit}`)),
    );
    expect(materialised).toEqual(['w-a']);
    expect(applied['w-b']!.progress.some((m) => m.includes('is in the content store'))).toBe(true);

    const store = new ContentStore(host.paths.releases);
    const digest = applied['w-a']!.locked.digest!;
    expect(await readdir(store.dir)).toEqual(expect.arrayContaining([digest.slice('sha256:'.length), 'sources']));
    const inodes = await Promise.all(
      names.map(async (w) => (await stat(path.join(host.paths.releases, w, repo.commit, 'main.py'))).ino),
    );
    expect(new Set(inodes).size).toBe(1);
    expect((await stat(path.join(store.entryPath(digest), 'main.py'))).ino).toBe(inodes[0]);
    for (const w of names) expect(applied[w]!.locked.digest).toBe(digest);
    expect((await treeDigest(store.entryPath(digest))).digest).toBe(digest);

    // An edit through one workload's link is an edit of the shared inode: every workload that shares it drifts.
    await tamper(path.join(host.paths.releases, 'w-b', repo.commit, 'main.py'), 'print("H")\n', false);
    for (const w of names) {
      const { plan } = await planOf(desired(repo.dir, repo.commit, w), applied[w]!.locked);
      expect([w, plan.action, plan.drift.map((r) => r.code)]).toEqual([w, 'replace', ['live-modified']]);
    }

    // Repairing one workload rebuilds the store entry from the source (never links the edited one) and keeps the edit.
    const repaired = await install(desired(repo.dir, repo.commit, 'w-b'), applied['w-b']!.locked);
    expect(repaired.locked.digest).toBe(digest);
    expect(repaired.progress.some((m) => m.includes(`materialising ${repo.commit}`))).toBe(true);
    expect(await readFile(path.join(host.paths.releases, 'w-b', repo.commit, 'main.py'), 'utf8')).toBe('print("A")\n');
    expect((await treeDigest(store.entryPath(digest))).digest).toBe(digest);
    expect((await planOf(desired(repo.dir, repo.commit, 'w-b'), repaired.locked)).plan.action).toBe('noop');
    const captured = (await readdir(path.join(host.paths.releases, 'w-b'))).filter((n) => n.startsWith('captured-'));
    expect(captured).toHaveLength(1);
    expect(await readFile(path.join(host.paths.releases, 'w-b', captured[0]!, 'main.py'), 'utf8')).toBe('print("H")\n');
  });

  it('rolls back by switching the pointer, and garbage-collects only trees no release refers to (shown in the plan first)', async () => {
    const repo = await repository({ 'main.py': 'print("A")\n' });
    const commitB = await repo.commitFiles({ 'main.py': 'print("B")\n' });
    const a = await install(desired(repo.dir, repo.commit, 'core'));
    const b = await install(desired(repo.dir, commitB, 'core'), a.locked);
    const store = new ContentStore(host.paths.releases);
    expect((await store.garbage()).digests).toEqual([]);

    // Rollback to A: the tree is still installed, so it is a pointer switch, verified byte for byte.
    const back = await provider.rollbackTo(host, 'core', repo.commit, a.locked.digest!, { locked: b.locked });
    expect(back.diagnostics).toEqual([]);
    expect(back.locked?.digest).toBe(a.locked.digest);

    // Deleting the workload leaves both trees in the store without a release: the plan says what GC would free.
    const del = await provider.apply({
      host,
      change: change(undefined, 'delete', 'core'),
      locked: back.locked as LockedResource,
    });
    expect(del.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
    const listed = await provider.list({ host, snapshot: new Map() });
    const line = listed.diagnostics.find((d) => d.code === 'release.store-garbage');
    expect(line?.summary).toMatch(/would free 2 release trees \(\d+ bytes\)/);
    expect((await store.garbage()).digests.sort()).toEqual([a.locked.digest, b.locked.digest].sort());

    // A tree still referenced by another workload is never collected.
    const other = await install(desired(repo.dir, commitB, 'other'));
    expect((await store.garbage()).digests).toEqual([a.locked.digest]);
    await provider.finishApply({ host });
    expect(await readdir(store.dir)).toEqual(expect.not.arrayContaining([a.locked.digest!.slice(7)]));
    expect((await treeDigest(store.entryPath(commitBDigest(other.locked)))).digest).toBe(other.locked.digest);
    expect(
      (await provider.list({ host, snapshot: new Map() })).diagnostics.filter(
        (d) => d.code === 'release.store-garbage',
      ),
    ).toEqual([]);
    expect((await planOf(desired(repo.dir, commitB, 'other'), other.locked)).plan.action).toBe('noop');
  });
});

function commitBDigest(locked: LockedResource): string {
  return locked.digest!;
}

describe('stat index', () => {
  it('gives the same plans with and without the index, and reads only files whose stat changed', async () => {
    const repo = await repository({ 'main.py': 'print("A")\n', 'lib/a.py': 'A = 1\n', 'lib/b.py': 'B = 2\n' });
    const d = desired(repo.dir, repo.commit, 'core');
    const { locked } = await install(d);
    // The end of the apply records what it wrote.
    await provider.finishApply({ host });
    const file = statIndexFile(host.paths.cache);
    expect((await lstat(file)).isFile()).toBe(true);
    // Entries written in the second the files last changed are racily clean; the test moves the index a second on
    // (what a later write does) rather than waiting.
    await ageIndex(file);

    const first = await planOf(d, locked);
    expect(first.plan.action).toBe('noop');
    const warm = await planOf(d, locked);
    const index = (await warm.snapshot.get(`release.stat-index:${host.paths.cache}`)) as StatIndex;
    expect([index.hits, index.misses]).toEqual([3, 0]);
    expect(warm.live).toEqual(first.live);

    await rm(file);
    const cold = await planOf(d, locked);
    expect(cold.live).toEqual(first.live);
    expect(cold.plan).toEqual(first.plan);
    const coldIndex = (await cold.snapshot.get(`release.stat-index:${host.paths.cache}`)) as StatIndex;
    expect(coldIndex.hits).toBe(0);

    // A corrupt index is an empty one.
    await writeFile(file, '{"format":"agentvm-stat-index/1","entries":{"1:2":["x"]}} trailing');
    expect((await planOf(d, locked)).plan).toEqual(first.plan);
  });

  it('finds a file rewritten with the same size and its mtime put back (the ctime differs) as drift', async () => {
    const repo = await repository({ 'main.py': 'print("A")\n' });
    const d = desired(repo.dir, repo.commit, 'core');
    const { locked } = await install(d);
    expect((await planOf(d, locked)).plan.action).toBe('noop');
    await ageIndex(statIndexFile(host.paths.cache));

    const file = path.join(host.paths.releases, 'core', repo.commit, 'main.py');
    const before = await stat(file, { bigint: true });
    await tamper(file, 'print("H")\n', true);
    const after = await stat(file, { bigint: true });
    expect([after.size, after.mtimeNs, after.ino]).toEqual([before.size, before.mtimeNs, before.ino]);
    expect(after.ctimeNs).not.toBe(before.ctimeNs);

    const drifted = await planOf(d, locked);
    expect(drifted.plan.action).toBe('replace');
    expect(drifted.plan.drift.map((r) => r.code)).toEqual(['live-modified']);
  });

  it("does not trust an entry for a file changed in the index's own second (racily clean), and would without the rule", async () => {
    const repo = await repository({ 'main.py': 'print("A")\n' });
    const d = desired(repo.dir, repo.commit, 'core');
    const { locked } = await install(d);
    const file = path.join(host.paths.releases, 'core', repo.commit, 'main.py');

    // A coarse-timestamp file system's worst case, made deterministic: the file is edited, and the index holds the
    // edited file's exact stat with the content hash from before the edit — as when the edit lands in the same
    // timestamp tick as the read that recorded it. The index is written in the same second as the edit.
    await tamper(file, 'print("H")\n', false);
    const st = await stat(file, { bigint: true });
    const staleHash = (await run('sha256sum', [path.join(repo.dir, 'main.py')])).stdout.slice(0, 64);
    const indexFile = statIndexFile(host.paths.cache);
    const forged = {
      format: 'agentvm-stat-index/1',
      entries: { [`${st.dev}:${st.ino}`]: [String(st.size), String(st.mtimeNs), String(st.ctimeNs), staleHash] },
    };
    await writeFile(indexFile, JSON.stringify(forged));
    const second = Number(st.ctimeNs / 1_000_000_000n);
    await utimes(indexFile, second, second + 0.5);

    const drifted = await planOf(d, locked);
    expect(drifted.plan.drift.map((r) => r.code)).toEqual(['live-modified']);

    // The same forged entry, in an index written a second later, is trusted: the rule above is what caught it.
    await writeFile(indexFile, JSON.stringify(forged));
    await utimes(indexFile, second + 1, second + 1);
    expect((await planOf(d, locked)).plan.action).toBe('noop');
  });
});

/** Sets the index file's mtime to a second after every file it describes changed (what a later write does). */
async function ageIndex(file: string): Promise<void> {
  const later = Date.now() / 1000 + 2;
  await utimes(file, later, later);
}
