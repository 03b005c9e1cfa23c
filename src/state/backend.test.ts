// Tests of LocalStateBackend on a temporary host root: lockfile round trip, serial, backup, corruption, conflicts,
// leases, apply log and audit through the one interface the rest of agentvm uses.

import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AgentvmError } from '../diagnostics/index.js';
import type { LockedResource } from '../engine/types.js';
import { LocalStateBackend } from './backend.js';
import { hostPaths } from './host-paths.js';
import { emptyLockfile, withAuditHead, withResource, withRollbackTarget, type Lockfile } from './lockfile.js';
import type { LeaseLock } from './lease-lock.js';

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
  return { address, provider: 'release.git', workload: 'research', identity: COMMIT, digest: 'sha256:d', commit: COMMIT, appliedAt: '2026-01-01T00:00:00.000Z' };
}

async function rejection(promise: Promise<unknown>): Promise<AgentvmError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(AgentvmError);
    return error as AgentvmError;
  }
  throw new Error('expected a rejection');
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

describe('lockfile through the backend', () => {
  it('GIVEN no state THEN readLockfile is null and listHosts empty', async () => {
    expect(await backend.readLockfile('web-1')).toBeNull();
    expect(await backend.listHosts()).toEqual([]);
  });

  it('GIVEN writes THEN the file round-trips, serial is bumped by one per write, and the backup holds the previous serial', async () => {
    const l = await lease();
    const start = emptyLockfile('web-1');
    const first = await backend.writeLockfile('web-1', withResource(start, resource('release.research')), l);
    expect(first.serial).toBe(1);
    expect(first.lineage).toBe(start.lineage);
    expect(await backend.readLockfile('web-1')).toEqual(first);
    expect(existsSync(stateFile('web-1.lock.json.backup'))).toBe(false);

    const second = await backend.writeLockfile('web-1', withRollbackTarget(first, 'research', { identity: 'x', digest: 'y', releaseId: 'r1', foreign: false }), l);
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
    expect(readdirSync(stateFile('')).sort()).toEqual(['root-host.json', 'web-1.lease.json', 'web-1.lock.json', 'web-1.lock.json.backup']);
  });

  it('GIVEN a write from a stale serial THEN state.serial-conflict and nothing is written', async () => {
    const l = await lease();
    const base = await backend.writeLockfile('web-1', emptyLockfile('web-1'), l);
    await backend.writeLockfile('web-1', withResource(base, resource('release.a')), l);
    const error = await rejection(backend.writeLockfile('web-1', withResource(base, resource('release.b')), l));
    expect(error.code).toBe('state.serial-conflict');
    expect(error.message).toContain('serial 2');
    expect(Object.keys((await backend.readLockfile('web-1'))!.resources)).toEqual(['release.a']);
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
    expect((await rejection(backend.writeLockfile('web-1', emptyLockfile('web-1'), other))).code).toBe('state.lease-host-mismatch');
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
  ])('GIVEN a lockfile with %s THEN state.corrupt names the file and how to restore the backup', async (_name, damage) => {
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
  });

  it('GIVEN the lockfile deleted but its backup present THEN state.missing says how to restore or start over', async () => {
    const l = await lease();
    await backend.writeLockfile('web-1', await backend.writeLockfile('web-1', emptyLockfile('web-1'), l), l);
    unlinkSync(stateFile('web-1.lock.json'));
    const error = await rejection(backend.readLockfile('web-1'));
    expect(error.code).toBe('state.missing');
    expect(error.diagnostics[0]?.detail).toContain('rm ');
  });

  it('refuses host names that are not DNS labels before touching a path', async () => {
    for (const bad of ['../etc', 'Web', 'a/b', '']) {
      expect((await rejection(backend.readLockfile(bad))).code).toBe('state.invalid-host');
    }
  });
});

describe('lease, apply log and audit through the backend', () => {
  it('reads, refuses and force-unlocks the lease', async () => {
    expect(await backend.readLease('web-1')).toBeNull();
    const l = await lease();
    expect(await backend.readLease('web-1')).toEqual(l.record);
    expect((await rejection(backend.acquireLease('web-1', 'drift'))).code).toBe('state.locked');
    expect((await rejection(backend.forceUnlock('web-1', 'not-the-id'))).code).toBe('state.lock-id-mismatch');
    expect(await backend.forceUnlock('web-1', l.id)).toEqual(l.record);
    expect(await backend.readLease('web-1')).toBeNull();
    expect(await backend.listHosts()).toEqual([]);
  });

  it('keeps the log of an interrupted apply until the next apply or a discard, which checkpoints its writes first', async () => {
    const l = await lease();
    const log = await backend.beginApply('web-1', { applyId: 'a1', planDigest: 'p' }, l);
    await log.append([{ op: 'resource.set', entry: resource('release.research') }], { done: 'release.research' });
    // the process dies here: no finish()
    expect(await backend.listHosts()).toEqual(['web-1']);
    expect(await backend.readJournal('web-1')).toMatchObject({ applyId: 'a1', planDigest: 'p', completed: ['release.research'], failed: [] });
    expect(Object.keys((await backend.readLockfile('web-1'))!.resources)).toEqual(['release.research']);
    expect(existsSync(stateFile('web-1.lock.json'))).toBe(false); // only in the log so far
    await backend.discardJournal('web-1', l);
    expect(await backend.readJournal('web-1')).toBeNull();
    const read = await backend.readLockfile('web-1');
    expect(read?.serial).toBe(1);
    expect(Object.keys(read!.resources)).toEqual(['release.research']);
    await backend.discardJournal('web-1', l); // idempotent
    expect(readdirSync(stateFile('')).sort()).toEqual(['root-host.json', 'web-1.lease.json', 'web-1.lock.json']);
  });

  it('appends, tails and verifies the audit log, and the head stored in the lockfile detects truncation', async () => {
    const l = await lease();
    let lock = await backend.writeLockfile('web-1', emptyLockfile('web-1'), l);
    for (let i = 0; i < 3; i++) {
      const record = await backend.appendAudit({ host: 'web-1', operation: 'apply', event: 'resource.apply', result: 'ok', address: `release.w${i}` });
      lock = await backend.writeLockfile('web-1', withAuditHead(lock, record), l);
    }
    expect(backend.auditPath()).toBe(path.join(root, 'var/log/agentvm/audit.jsonl'));
    expect((await backend.tailAudit(2)).map((r) => r.seq)).toEqual([2, 3]);
    expect((await backend.verifyAudit(lock.auditHead)).ok).toBe(true);
    const text = readFileSync(backend.auditPath(), 'utf8');
    writeFileSync(backend.auditPath(), text.split('\n').slice(0, 2).join('\n') + '\n');
    const result = await backend.verifyAudit([{ ...lock.auditHead!, label: 'lockfile of host web-1' }]);
    expect(result.diagnostics.map((d) => d.code)).toEqual(['audit.truncated']);
    expect((await rejection(backend.appendAudit({ host: '../x', operation: 'apply', event: 'x', result: 'ok' }))).code).toBe('state.invalid-host');
  });

  it('GIVEN the audit log cut short AND the lockfile damaged (or emptied) THEN the heads in the backup and the write-ahead log still catch the truncation', async () => {
    const l = await lease();
    let lock = await backend.writeLockfile('web-1', emptyLockfile('web-1'), l);
    for (let i = 0; i < 3; i++) {
      const record = await backend.appendAudit({ host: 'web-1', operation: 'apply', event: 'resource.apply', result: 'ok', address: `release.w${i}` });
      lock = await backend.writeLockfile('web-1', withAuditHead(lock, record), l);
    }
    // An apply's WAL records a later head (seq 4) in a batch.
    const log = await backend.beginApply('web-1', { applyId: 'a1', planDigest: 'p' }, l);
    const fourth = await backend.appendAudit({ host: 'web-1', operation: 'apply', event: 'apply.start', result: 'ok' });
    await log.append([{ op: 'auditHead.set', head: { seq: fourth.seq, hash: fourth.hash } }]);
    const heads = await backend.recordedAuditHeads('web-1');
    expect(heads.map((h) => `${h.label}:${h.seq}`)).toEqual(['lockfile of web-1:3', 'lockfile backup of web-1:2', 'write-ahead log of web-1:4']);
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
    expect((await backend.verifyAudit(await backend.recordedAuditHeads('web-1'))).diagnostics.map((d) => d.code)).toEqual(['audit.truncated']);
  });
});
