// The StateBackend contract, run against BOTH backends from one suite (issue 17): lockfile round trip, serial, conflicts,
// leases, apply log and audit through the one interface the rest of agentvm uses. Then what only the local backend
// has (files: backup, corruption, a file replaced behind its back) and only PostgreSQL has (fencing tokens).

import { describe, it, expect, beforeEach, afterEach, beforeAll, afterAll } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AgentvmError } from '../diagnostics/index.js';
import type { LockedResource } from '../model/resources.js';
import { LocalStateBackend } from './backend.js';
import { hostPaths } from '../model/index.js';
import { emptyLockfile, withAuditHead, withResource, withRollbackTarget, type Lockfile } from './lockfile.js';
import type { LeaseLock } from './lease-lock.js';
import type { HeldLease } from './backend-types.js';
import type { StateBackend } from './backend.js';
import { STATE_BACKENDS, type Store } from '../../test/support/state-backends.js';
import { rejection } from '../../test/support/rejection.js';

const COMMIT = 'c'.repeat(40);
let root: string;
let backend: LocalStateBackend;
const leases: LeaseLock[] = [];
beforeEach(() => {
  root = mkdtempSync(path.join(os.tmpdir(), 'agentvm-state-'));
  backend = new LocalStateBackend(hostPaths(root));
});
afterEach(() => {
  for (const l of leases.splice(0)) l.release();
  rmSync(root, { recursive: true, force: true });
});

async function lease(host = 'web-1'): Promise<LeaseLock> {
  const l = await backend.acquireLease(host, 'apply', { renew: false });
  leases.push(l);
  return l;
}

function resource(address: string): LockedResource {
  return {
    address,
    provider: 'release.git',
    workload: 'research',
    identity: COMMIT,
    digest: 'sha256:d',
    commit: COMMIT,
    appliedAt: '2026-01-01T00:00:00.000Z',
  };
}

const stateFile = (name: string): string => path.join(root, 'var/lib/agentvm/state', name);

describe('hostPaths', () => {
  it('puts every path under the root', () => {
    expect(hostPaths('/r')).toEqual({
      state: '/r/var/lib/agentvm/state',
      releases: '/r/var/lib/agentvm/releases',
      audit: '/r/var/log/agentvm',
      run: '/r/run/agentvm',
      cache: '/r/var/cache/agentvm',
    });
    expect(hostPaths('/').state).toBe('/var/lib/agentvm/state');
  });
});

describe.each(STATE_BACKENDS.filter((k) => !k.skip))('state backend contract: $name', (kind) => {
  let store: Store;
  let b: StateBackend;
  const held: HeldLease[] = [];
  beforeAll(() => kind.setup(), 60_000);
  afterAll(() => kind.teardown());
  beforeEach(async () => {
    store = await kind.store();
    b = store.open();
  }, 30_000);
  const afterEachClose: Store[] = [];
  afterEach(async () => {
    for (const l of held.splice(0)) await l.release();
    await store.close();
    for (const extra of afterEachClose.splice(0)) await extra.close();
  });
  const take = async (host = 'web-1'): Promise<HeldLease> => {
    const l = await b.acquireLease(host, 'apply', { renew: false });
    held.push(l);
    return l;
  };

  it('GIVEN no state THEN readLockfile is null and listHosts empty', async () => {
    expect(await b.readLockfile('web-1')).toBeNull();
    expect(await b.listHosts()).toEqual([]);
  });

  it('GIVEN writes THEN they round-trip, serial grows by one per write, and a new handle (another process) reads them', async () => {
    const l = await take();
    const start = emptyLockfile('web-1');
    const first = await b.writeLockfile('web-1', withResource(start, resource('release.research')), l);
    expect(first.serial).toBe(1);
    expect(first.lineage).toBe(start.lineage);
    expect(await b.readLockfile('web-1')).toEqual(first);
    const second = await b.writeLockfile(
      'web-1',
      withRollbackTarget(first, 'research', { identity: 'x', digest: 'y', releaseId: 'r1', foreign: false }),
      l,
    );
    expect(second.serial).toBe(2);
    const again = store.open();
    const read = await again.readLockfile('web-1');
    expect(read).toEqual(second);
    expect((await again.writeLockfile('web-1', withAuditHead(read!, { seq: 1, hash: 'f'.repeat(64) }), l)).serial).toBe(
      3,
    );
    expect(await b.listHosts()).toEqual(['web-1']);
  });

  it('GIVEN a write from a stale serial THEN state.serial-conflict and nothing is written', async () => {
    const l = await take();
    const base = await b.writeLockfile('web-1', emptyLockfile('web-1'), l);
    await b.writeLockfile('web-1', withResource(base, resource('release.a')), l);
    const error = await rejection(b.writeLockfile('web-1', withResource(base, resource('release.b')), l));
    expect(error.code).toBe('state.serial-conflict');
    expect(error.message).toContain('serial 2');
    expect(Object.keys((await b.readLockfile('web-1'))!.resources)).toEqual(['release.a']);
  });

  it('GIVEN another writer moved the state on THEN the stale version is refused (serial), and another lineage too', async () => {
    const l = await take();
    const written = await b.writeLockfile('web-1', emptyLockfile('web-1'), l);
    const other = store.open();
    expect((await other.writeLockfile('web-1', (await other.readLockfile('web-1'))!, l)).serial).toBe(2);
    expect((await rejection(b.writeLockfile('web-1', written, l))).code).toBe('state.serial-conflict');
    const replaced: Lockfile = { ...emptyLockfile('web-1'), serial: 2 };
    expect((await rejection(b.writeLockfile('web-1', replaced, l))).code).toBe('state.lineage-mismatch');
  });

  it('requires the held lease of the same host', async () => {
    const l = await take();
    // The other host's lease comes from a second store: one local root is one host (ADR 0015), while a PostgreSQL
    // database holds a fleet — either way it is a real lease of another host, and it guards nothing of web-1.
    const elsewhere = kind.name === 'local' ? await kind.store() : store;
    const other = await elsewhere.open().acquireLease('web-2', 'apply', { renew: false });
    held.push(other);
    if (elsewhere !== store) afterEachClose.push(elsewhere);
    expect((await rejection(b.writeLockfile('web-1', emptyLockfile('web-1'), other))).code).toBe(
      'state.lease-host-mismatch',
    );
    await l.release();
    expect((await rejection(b.writeLockfile('web-1', emptyLockfile('web-1'), l))).code).toBe('state.lease-lost');
    expect(await b.readLockfile('web-1')).toBeNull();
  });

  it('refuses to write an invalid lockfile (a bug guard) and keeps the state', async () => {
    const l = await take();
    const base = await b.writeLockfile('web-1', emptyLockfile('web-1'), l);
    const bad = withResource(base, { ...resource('release.x'), workload: 'Not_A_Name' });
    expect((await rejection(b.writeLockfile('web-1', bad, l))).code).toBe('state.invalid-lockfile');
    expect(await b.readLockfile('web-1')).toEqual(base);
  });

  it('refuses host names that are not DNS labels before touching anything', async () => {
    for (const bad of ['../etc', 'Web', 'a/b', '', "x'; DROP TABLE agentvm_hosts; --"]) {
      expect((await rejection(b.readLockfile(bad))).code).toBe('state.invalid-host');
    }
  });

  it('reads, refuses and force-unlocks the lease', async () => {
    expect(await b.readLease('web-1')).toBeNull();
    const l = await take();
    expect(await b.readLease('web-1')).toEqual(l.record);
    const locked = await rejection(b.acquireLease('web-1', 'drift'));
    expect(locked.code).toBe('state.locked');
    expect(locked.message).toMatch(/pid \d+/);
    expect((await rejection(b.forceUnlock('web-1', 'not-the-id'))).code).toBe('state.lock-id-mismatch');
    expect(await b.forceUnlock('web-1', l.id)).toEqual(l.record);
    expect(await b.readLease('web-1')).toBeNull();
    expect(await b.listHosts()).toEqual([]);
  });

  it('GIVEN ten handles racing for a free lease THEN exactly one wins and nine are told who holds it', async () => {
    const handles = Array.from({ length: 10 }, () => store.open());
    const results = await Promise.allSettled(handles.map((h) => h.acquireLease('web-1', 'apply', { renew: false })));
    const won = results.filter((r): r is PromiseFulfilledResult<HeldLease> => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    held.push(won[0]!.value);
    for (const r of results) if (r.status === 'rejected') expect((r.reason as AgentvmError).code).toBe('state.locked');
    expect((await b.readLease('web-1'))?.id).toBe(won[0]!.value.id);
  });

  it('keeps the log of an interrupted apply until the next apply or a discard, which checkpoints its writes first', async () => {
    const l = await take();
    const log = await b.beginApply('web-1', { applyId: 'a1', planDigest: 'p' }, l);
    await log.append([{ op: 'resource.set', entry: resource('release.research') }], { done: 'release.research' });
    // the process dies here: no finish()
    const other = store.open();
    expect(await other.listHosts()).toEqual(['web-1']);
    expect(await other.readJournal('web-1')).toMatchObject({
      applyId: 'a1',
      planDigest: 'p',
      completed: ['release.research'],
      failed: [],
    });
    expect(Object.keys((await other.readLockfile('web-1'))!.resources)).toEqual(['release.research']);
    // The next apply of the same plan resumes it; of another plan, reports it and starts afresh.
    const next = await other.beginApply(
      'web-1',
      { applyId: 'a2', planDigest: 'p', expected: { lineage: log.lock.lineage, serial: 1 } },
      l,
    );
    expect(next.interrupted?.applyId).toBe('a1');
    expect(next.isDone('release.research')).toBe(true);
    await other.discardJournal('web-1', l);
    expect(await other.readJournal('web-1')).toBeNull();
    const read = await other.readLockfile('web-1');
    expect(read?.serial).toBe(1);
    expect(Object.keys(read!.resources)).toEqual(['release.research']);
    await other.discardJournal('web-1', l); // idempotent
  });

  it('GIVEN an apply planned at another serial THEN beginApply refuses it (stale plan) and nothing is written', async () => {
    const l = await take();
    const base = await b.writeLockfile('web-1', emptyLockfile('web-1'), l);
    const stale = await rejection(
      b.beginApply('web-1', { applyId: 'a1', planDigest: 'p', expected: { lineage: base.lineage, serial: 0 } }, l),
    );
    expect(stale.code).toBe('state.serial-conflict');
    expect(
      (
        await rejection(
          b.beginApply('web-1', { applyId: 'a1', planDigest: 'p', expected: { lineage: null, serial: 0 } }, l),
        )
      ).code,
    ).toBe('state.lineage-mismatch');
    expect(await b.readLockfile('web-1')).toEqual(base);
  });

  it('appends, tails and verifies the audit chain, and the head stored in the lockfile detects truncation', async () => {
    const l = await take();
    let lock = await b.writeLockfile('web-1', emptyLockfile('web-1'), l);
    for (let i = 0; i < 3; i++) {
      const record = await b.appendAudit({
        host: 'web-1',
        operation: 'apply',
        event: 'resource.apply',
        result: 'ok',
        address: `release.w${i}`,
      });
      lock = await b.writeLockfile('web-1', withAuditHead(lock, record), l);
    }
    expect((await b.tailAudit(2)).map((r) => r.seq)).toEqual([2, 3]);
    expect((await b.verifyAudit(lock.auditHead)).ok).toBe(true);
    await store.truncateAudit('web-1', 2);
    const result = await b.verifyAudit([{ ...lock.auditHead!, label: 'lockfile of host web-1', host: 'web-1' }]);
    expect(result.diagnostics.map((d) => d.code)).toEqual(['audit.truncated']);
    expect((await rejection(b.appendAudit({ host: '../x', operation: 'apply', event: 'x', result: 'ok' }))).code).toBe(
      'state.invalid-host',
    );
  });

  it('an apply log step with its audit record: both are recorded, the head moves with the batch', async () => {
    const l = await take();
    const log = await b.beginApply('web-1', { applyId: 'a1', planDigest: 'p' }, l);
    const ev = await b.appendAudit({
      host: 'web-1',
      operation: 'apply',
      event: 'resource.apply',
      result: 'ok',
      address: 'release.research',
    });
    const step = log.appendWithAudit
      ? (
          await log.appendWithAudit(
            { host: 'web-1', operation: 'apply', event: 'resource.apply', result: 'ok', address: 'release.research' },
            [{ op: 'resource.set', entry: resource('release.research') }],
            { done: 'release.research' },
          )
        ).event
      : (await log.append(
          [
            { op: 'resource.set', entry: resource('release.research') },
            { op: 'auditHead.set', head: ev },
          ],
          { done: 'release.research' },
        ),
        ev);
    const done = await log.finish();
    expect(done.auditHead).toEqual({ seq: step.seq, hash: step.hash });
    expect(await b.readLockfile('web-1')).toEqual(done);
    expect((await b.verifyAudit([{ ...done.auditHead!, host: 'web-1' }])).ok).toBe(true);
  });
});

describe('local backend: the files', () => {
  it('GIVEN writes THEN the file round-trips, serial is bumped by one per write, and the backup holds the previous serial', async () => {
    const l = await lease();
    const start = emptyLockfile('web-1');
    const first = await backend.writeLockfile('web-1', withResource(start, resource('release.research')), l);
    expect(first.serial).toBe(1);
    expect(first.lineage).toBe(start.lineage);
    expect(await backend.readLockfile('web-1')).toEqual(first);
    expect(existsSync(stateFile('web-1.lock.json.backup'))).toBe(false);

    const second = await backend.writeLockfile(
      'web-1',
      withRollbackTarget(first, 'research', { identity: 'x', digest: 'y', releaseId: 'r1', foreign: false }),
      l,
    );
    expect(second.serial).toBe(2);
    expect(JSON.parse(readFileSync(stateFile('web-1.lock.json.backup'), 'utf8'))).toEqual(first);

    // A fresh backend (a new process) reads what was written.
    const again = new LocalStateBackend(hostPaths(root));
    const read = await again.readLockfile('web-1');
    expect(read).toEqual(second);
    const third = await again.writeLockfile('web-1', withAuditHead(read!, { seq: 1, hash: 'f'.repeat(64) }), l);
    expect(third.serial).toBe(3);
    expect(JSON.parse(readFileSync(stateFile('web-1.lock.json.backup'), 'utf8')).serial).toBe(2);
    expect(await backend.listHosts()).toEqual(['web-1']);
    expect(readdirSync(stateFile('')).sort()).toEqual([
      'root-host.json',
      'web-1.lease.json',
      'web-1.lock.json',
      'web-1.lock.json.backup',
    ]);
  });

  it('GIVEN another process replaced the file THEN the backend notices (no stale cache) and refuses', async () => {
    const l = await lease();
    const written = await backend.writeLockfile('web-1', emptyLockfile('web-1'), l);
    const other = new LocalStateBackend(hostPaths(root));
    const theirs = await other.writeLockfile('web-1', (await other.readLockfile('web-1'))!, l);
    expect(theirs.serial).toBe(2);
    expect((await rejection(backend.writeLockfile('web-1', written, l))).code).toBe('state.serial-conflict');
    const replaced: Lockfile = { ...emptyLockfile('web-1'), serial: 2 };
    expect((await rejection(backend.writeLockfile('web-1', replaced, l))).code).toBe('state.lineage-mismatch');
  });

  it('requires the held lease of the same host', async () => {
    const l = await lease();
    // A lease of another host can only come from another root (one root, one host): it still guards nothing here.
    const elsewhere = mkdtempSync(path.join(os.tmpdir(), 'agentvm-state-other-'));
    const other = await new LocalStateBackend(hostPaths(elsewhere)).acquireLease('web-2', 'apply', { renew: false });
    leases.push(other);
    expect((await rejection(backend.writeLockfile('web-1', emptyLockfile('web-1'), other))).code).toBe(
      'state.lease-host-mismatch',
    );
    other.release();
    rmSync(elsewhere, { recursive: true, force: true });
    l.release();
    expect((await rejection(backend.writeLockfile('web-1', emptyLockfile('web-1'), l))).code).toBe('state.lease-lost');
    expect(await backend.readLockfile('web-1')).toBeNull();
  });

  it('GIVEN a root claimed by one host THEN a lease for another host is refused (one root, one host), and the first host is unaffected', async () => {
    const l = await lease('web-1');
    await backend.writeLockfile('web-1', emptyLockfile('web-1'), l);
    l.release();
    const refused = await rejection(backend.acquireLease('web-2', 'apply', { renew: false }));
    expect(refused.code).toBe('state.root-host-mismatch');
    expect(refused.message).toContain('belongs to host web-1');
    expect(await backend.readLease('web-2')).toBeNull();
    expect((await lease('web-1')).host).toBe('web-1');
  });

  it('refuses to write an invalid lockfile (a bug guard) and leaves the file alone', async () => {
    const l = await lease();
    const base = await backend.writeLockfile('web-1', emptyLockfile('web-1'), l);
    const bad = withResource(base, { ...resource('release.x'), workload: 'Not_A_Name' });
    expect((await rejection(backend.writeLockfile('web-1', bad, l))).code).toBe('state.invalid-lockfile');
    expect(await backend.readLockfile('web-1')).toEqual(base);
  });

  it.each([
    ['torn JSON', (t: string) => t.slice(0, t.length / 2)],
    ['a schema violation', (t: string) => t.replace('"serial": 2', '"serial": "two"')],
    ['another host', (t: string) => t.replace('"host": "web-1"', '"host": "web-9"')],
  ])(
    'GIVEN a lockfile with %s THEN state.corrupt names the file and how to restore the backup',
    async (_name, damage) => {
      const l = await lease();
      const one = await backend.writeLockfile('web-1', emptyLockfile('web-1'), l);
      await backend.writeLockfile('web-1', one, l);
      const file = stateFile('web-1.lock.json');
      writeFileSync(file, damage(readFileSync(file, 'utf8')));
      const error = await rejection(new LocalStateBackend(hostPaths(root)).readLockfile('web-1'));
      expect(error.code).toBe('state.corrupt');
      expect(error.message).toContain(file);
      expect(error.diagnostics[0]?.detail).toContain(`cp ${file}.backup ${file}`);
      // And the advice works: the backup restores serial 1.
      writeFileSync(file, readFileSync(`${file}.backup`));
      expect((await backend.readLockfile('web-1'))?.serial).toBe(1);
    },
  );

  it('GIVEN the lockfile deleted but its backup present THEN state.missing says how to restore or start over', async () => {
    const l = await lease();
    await backend.writeLockfile('web-1', await backend.writeLockfile('web-1', emptyLockfile('web-1'), l), l);
    unlinkSync(stateFile('web-1.lock.json'));
    const error = await rejection(backend.readLockfile('web-1'));
    expect(error.code).toBe('state.missing');
    expect(error.diagnostics[0]?.detail).toContain('rm ');
  });
});

describe('local backend: apply log and audit files', () => {
  it('keeps an interrupted apply only in its WAL file until a discard checkpoints it into the lockfile file', async () => {
    const l = await lease();
    const log = await backend.beginApply('web-1', { applyId: 'a1', planDigest: 'p' }, l);
    await log.append([{ op: 'resource.set', entry: resource('release.research') }], { done: 'release.research' });
    expect(existsSync(stateFile('web-1.lock.json'))).toBe(false); // only in the log so far
    await backend.discardJournal('web-1', l);
    expect(await backend.readJournal('web-1')).toBeNull();
    const read = await backend.readLockfile('web-1');
    expect(read?.serial).toBe(1);
    expect(Object.keys(read!.resources)).toEqual(['release.research']);
    await backend.discardJournal('web-1', l); // idempotent
    expect(readdirSync(stateFile('')).sort()).toEqual(['root-host.json', 'web-1.lease.json', 'web-1.lock.json']);
  });

  it('keeps the audit chain of all hosts of the root in one file', async () => {
    await backend.appendAudit({ host: 'web-1', operation: 'apply', event: 'resource.apply', result: 'ok' });
    await backend.appendAudit({ host: 'web-2', operation: 'apply', event: 'resource.apply', result: 'ok' });
    expect(backend.auditPath()).toBe(path.join(root, 'var/log/agentvm/audit.jsonl'));
    expect(readFileSync(backend.auditPath(), 'utf8').trim().split('\n')).toHaveLength(2);
  });

  it('GIVEN the audit log cut short AND the lockfile damaged (or emptied) THEN the heads in the backup and the write-ahead log still catch the truncation', async () => {
    const l = await lease();
    let lock = await backend.writeLockfile('web-1', emptyLockfile('web-1'), l);
    for (let i = 0; i < 3; i++) {
      const record = await backend.appendAudit({
        host: 'web-1',
        operation: 'apply',
        event: 'resource.apply',
        result: 'ok',
        address: `release.w${i}`,
      });
      lock = await backend.writeLockfile('web-1', withAuditHead(lock, record), l);
    }
    // An apply's WAL records a later head (seq 4) in a batch.
    const log = await backend.beginApply('web-1', { applyId: 'a1', planDigest: 'p' }, l);
    const fourth = await backend.appendAudit({ host: 'web-1', operation: 'apply', event: 'apply.start', result: 'ok' });
    await log.append([{ op: 'auditHead.set', head: { seq: fourth.seq, hash: fourth.hash } }]);
    const heads = await backend.recordedAuditHeads('web-1');
    expect(heads.map((h) => `${h.label}:${h.seq}`)).toEqual([
      'lockfile of web-1:3',
      'lockfile backup of web-1:2',
      'write-ahead log of web-1:4',
    ]);
    // Cut the log back to 1 record and damage the lockfile: it no longer parses, and a plain read cannot give its head.
    const text = readFileSync(backend.auditPath(), 'utf8');
    writeFileSync(backend.auditPath(), `${text.split('\n')[0]}\n`);
    writeFileSync(stateFile('web-1.lock.json'), '{"damaged": ');
    const damaged = await backend.recordedAuditHeads('web-1');
    expect(damaged.map((h) => h.label)).toEqual(['lockfile backup of web-1', 'write-ahead log of web-1']);
    const result = await backend.verifyAudit(damaged);
    expect(result.ok).toBe(false);
    expect(result.diagnostics.map((d) => d.code)).toEqual(['audit.truncated', 'audit.truncated']);
    // Even with the WAL gone too, the backup alone still tells.
    unlinkSync(stateFile('web-1.wal.jsonl'));
    expect(
      (await backend.verifyAudit(await backend.recordedAuditHeads('web-1'))).diagnostics.map((d) => d.code),
    ).toEqual(['audit.truncated']);
  });
});
