// The stat index over agentvm's gateway drop-ins (ADR 0027), offline into a temporary host root with the real
// `systemctl --root`: a no-op plan stats a drop-in instead of reading it when the index holds that stat with the hash
// of exactly the unit plan renders. The hostile party edits unit files by hand: an edit with the size and mtime put
// back, an edit in the same second the index was written — each must still be drift. And the index is a cache: without
// it, with it deleted or corrupt, the plan is the same; a hand edit (which may hold a value) is never recorded in it.

import { execFile, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DesiredResource, LockedResource } from '../src/model/resources.js';
import { hostPaths } from '../src/model/index.js';
import type { HostContext } from '../src/providers/provider.js';
import { StatIndex, statIndexFile } from '../src/providers/release/stat-index.js';
import { SystemdProvider } from '../src/providers/systemd/index.js';

const run = promisify(execFile);
const hasSystemctl = spawnSync('systemctl', ['--version']).status === 0;
const inCi = process.env.CI === 'true';
if (!hasSystemctl && !inCi)
  console.warn('unit-stat-index: skipping: systemctl is not installed (apt-get install systemd)');

const RELEASE = 'fe0645c4528837f2588a33651153f918d89da72d';
const ADDRESS = 'unit.orchestrator.core';
let root: string;
let host: HostContext;

beforeEach(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'agentvm-unit-index-'));
  host = { host: 'test', root, paths: hostPaths(root), repo: root };
  await mkdir(path.join(host.paths.releases, 'orchestrator', RELEASE), { recursive: true });
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

function desired(env: Record<string, string> = {}): DesiredResource {
  return {
    address: ADDRESS,
    provider: 'systemd',
    workload: 'orchestrator',
    identity: 'orchestrator/core',
    dependsOn: ['release.orchestrator'],
    config: {
      profile: 'core',
      entrypoint: ['python3', '-m', 'orchestrator'],
      env,
      listen: { port: 8101 },
      health: { path: '/healthz', timeoutSeconds: 20 },
      reload: false,
      riskTier: 'high',
      egress: [],
      secrets: [{ name: 'k', ref: 'file:/etc/agentvm/secrets/k' }],
      canary: null,
      releaseId: RELEASE,
      scope: 'system',
    },
  };
}

const dropInFile = (): string => path.join(root, 'etc/systemd/system/agent-gateway@core.service.d/50-agentvm.conf');

/** Applies the unit offline (rendered into the root, enabled with `systemctl --root`); returns its lockfile entry. */
async function applyUnit(d: DesiredResource): Promise<LockedResource> {
  const res = await new SystemdProvider().apply({
    host,
    change: {
      address: ADDRESS,
      provider: 'systemd',
      workload: 'orchestrator',
      action: 'create',
      effect: 'restart',
      reasons: [],
      desired: d,
      dependsOn: [],
    },
  });
  expect(res.diagnostics).toEqual([]);
  return { ...res.locked!, commit: null, appliedAt: '2026-01-01T00:00:00Z' };
}

/** One plan of the unit as `agentvm plan` makes it: a fresh provider and snapshot, list, read, plan. */
async function planOf(d: DesiredResource, locked: LockedResource) {
  const provider = new SystemdProvider();
  const snapshot = new Map<string, unknown>();
  const listed = await provider.list({ host, snapshot });
  const read = await provider.read({ host, address: ADDRESS, desired: d, locked, snapshot });
  const plan = provider.plan({ address: ADDRESS, desired: d, live: read.live, locked });
  // AGENTVM_NO_STAT_INDEX=1: no index in the snapshot (an empty one that trusts nothing).
  const index = ((await snapshot.get(`release.stat-index:${host.paths.cache}`)) as StatIndex | undefined) ?? {
    hits: 0,
    misses: 0,
  };
  return { owned: listed.owned, live: read.live, plan, index };
}

/** Sets the index file's mtime to a second after every file it describes changed (what a later write does). */
async function ageIndex(): Promise<void> {
  const later = Date.now() / 1000 + 2;
  await utimes(statIndexFile(host.paths.cache), later, later);
}

/** Rewrites the drop-in in place as someone with root would: the same size; the mtime optionally put back. */
async function tamper(edit: (text: string) => string, restoreMtime: boolean): Promise<void> {
  const file = dropInFile();
  const text = await readFile(file, 'utf8');
  const edited = edit(text);
  expect(Buffer.byteLength(edited)).toBe(Buffer.byteLength(text));
  // touch -r copies the times to the nanosecond (utimes from JavaScript rounds them to microseconds).
  const reference = `${file}.times`;
  if (restoreMtime) await run('touch', ['-r', file, reference]);
  await writeFile(file, edited);
  if (restoreMtime) {
    await run('touch', ['-r', reference, file]);
    await rm(reference);
  }
}

const sameSizeEdit = (text: string): string =>
  text.replace('Description=agentvm gateway', 'Description=agentvm gatewaX');

describe.skipIf(!hasSystemctl && !inCi)('stat index over gateway drop-ins', () => {
  it('gives the same plans with and without the index, and reads no drop-in whose stat it holds', async () => {
    const d = desired();
    const locked = await applyUnit(d);
    const first = await planOf(d, locked);
    expect(first.plan.action).toBe('noop');
    expect(first.owned.map((o) => o.address)).toEqual([ADDRESS]);
    await ageIndex();

    // list takes the owner from the entry, read the parsed unit from the rendering: two hits, nothing read.
    const warm = await planOf(d, locked);
    expect([warm.index.hits, warm.index.misses]).toEqual([2, 0]);
    expect(warm.live).toEqual(first.live);
    expect(warm.plan).toEqual(first.plan);
    expect(warm.owned).toEqual(first.owned);

    // Without the index, with it deleted, with it corrupt: the same plan.
    process.env.AGENTVM_NO_STAT_INDEX = '1';
    try {
      const off = await planOf(d, locked);
      expect(off.index.hits).toBe(0);
      expect(off.live).toEqual(first.live);
      expect(off.plan).toEqual(first.plan);
    } finally {
      delete process.env.AGENTVM_NO_STAT_INDEX;
    }
    await rm(statIndexFile(host.paths.cache));
    const cold = await planOf(d, locked);
    expect([cold.index.hits, cold.live, cold.plan]).toEqual([0, first.live, first.plan]);
    await writeFile(statIndexFile(host.paths.cache), '{"format":"agentvm-stat-index/1","entries":{"1:2":["x"]}} x');
    const corrupt = await planOf(d, locked);
    expect([corrupt.live, corrupt.plan, corrupt.owned]).toEqual([first.live, first.plan, first.owned]);

    // A desired change is not hidden by an entry for the applied unit: the plan compares the new rendering.
    await ageIndex();
    const changed = await planOf(desired({ MODE: 'fast' }), locked);
    expect(changed.plan.action).toBe('update');
  });

  it('finds a drop-in rewritten with the same size and its mtime put back (the ctime differs) as drift', async () => {
    const d = desired();
    const locked = await applyUnit(d);
    expect((await planOf(d, locked)).plan.action).toBe('noop');
    await ageIndex();
    expect((await planOf(d, locked)).index.hits).toBe(2);

    const before = await stat(dropInFile(), { bigint: true });
    await tamper(sameSizeEdit, true);
    const after = await stat(dropInFile(), { bigint: true });
    expect([after.size, after.mtimeNs, after.ino]).toEqual([before.size, before.mtimeNs, before.ino]);
    expect(after.ctimeNs).not.toBe(before.ctimeNs);

    const drifted = await planOf(d, locked);
    expect(drifted.index.hits).toBe(0);
    expect(drifted.plan.action).not.toBe('noop');
    expect(drifted.plan.drift.map((r) => r.code)).toContain('live-modified');
    expect(drifted.plan.drift.map((r) => r.message).join('\n')).toContain('Unit.Description');
  });

  it("does not trust an entry for a drop-in changed in the index's own second (racily clean), and would without the rule", async () => {
    const d = desired();
    const locked = await applyUnit(d);
    const rendered = await readFile(dropInFile(), 'utf8');
    const renderedHash = createHash('sha256').update(rendered).digest('hex');

    // A coarse-timestamp file system's worst case, made deterministic: the drop-in is edited, and the index holds the
    // edited file's exact stat with the hash of agentvm's rendering — as when the edit lands in the same timestamp
    // tick as the read that recorded it. The index is written in the same second as the edit.
    await tamper(sameSizeEdit, false);
    const st = await stat(dropInFile(), { bigint: true });
    const forged = JSON.stringify({
      format: 'agentvm-stat-index/1',
      entries: {
        [`${st.dev}:${st.ino}`]: [String(st.size), String(st.mtimeNs), String(st.ctimeNs), renderedHash, ADDRESS],
      },
    });
    const indexFile = statIndexFile(host.paths.cache);
    await mkdir(path.dirname(indexFile), { recursive: true });
    await writeFile(indexFile, forged);
    const second = Number(st.ctimeNs / 1_000_000_000n);
    await utimes(indexFile, second, second + 0.5);

    const drifted = await planOf(d, locked);
    expect(drifted.plan.drift.map((r) => r.code)).toContain('live-modified');

    // The same forged entry, in an index written a second later, is trusted: the rule above is what caught it.
    await writeFile(indexFile, forged);
    await utimes(indexFile, second + 1, second + 1);
    expect((await planOf(d, locked)).plan.action).toBe('noop');
  });

  it('never records a hand-edited drop-in (it may hold a value), and an edited owner mark is read, not trusted', async () => {
    const d = desired();
    const locked = await applyUnit(d);
    await planOf(d, locked);
    await ageIndex();
    const SECRET = 'hunter2-s3cr3t-value-9f8e7d';
    await writeFile(dropInFile(), `${await readFile(dropInFile(), 'utf8')}Environment="TOKEN=${SECRET}"\n`);
    const edited = await stat(dropInFile(), { bigint: true });
    const drifted = await planOf(d, locked);
    expect(drifted.plan.drift.map((r) => r.code)).toContain('live-modified');
    const index = await readFile(statIndexFile(host.paths.cache), 'utf8');
    expect(index).not.toContain(SECRET);
    expect(JSON.parse(index).entries[`${edited.dev}:${edited.ino}`]?.[1]).not.toBe(String(edited.mtimeNs));

    // The owner mark is what list() reports: an edit of it (same size, mtime put back) is read, not taken from the tag.
    await applyUnit(d);
    await planOf(d, locked);
    await ageIndex();
    await tamper(
      (t) => t.replace(`X-AgentvmOwner=${ADDRESS}`, `X-AgentvmOwner=${ADDRESS.replace('core', 'corf')}`),
      true,
    );
    const listed = await planOf(d, locked);
    expect(listed.owned.map((o) => o.address)).toEqual([]);
    // The unit name is now someone else's: plan refuses to touch it (gateway-plan.ts), from what the file says.
    expect(
      listed.plan.diagnostics
        .filter((x) => x.severity === 'error')
        .map((x) => x.summary)
        .join('\n'),
    ).toContain('unit.orchestrator.corf');
  });
});
