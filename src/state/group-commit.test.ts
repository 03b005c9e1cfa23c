// Group commit (ADR 0026) on the local backend, with the disk syncs counted and held through the backend's injectable
// DurableSync: the steps of resources that finish together cost ONE audit fsync and ONE log fdatasync, nothing is
// acknowledged (no step's promise resolves, the in-memory lockfile does not move) before both syncs of its group
// resolved, the WAL is written only after the audit records are synced, and what was committed reads back and
// verifies exactly as steps appended one at a time.

import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hostPaths } from '../model/index.js';
import type { DurableSync } from './atomic-file.js';
import { threadPoolSync } from './atomic-file.js';
import type { AuditEntry } from './audit-log.js';
import { LocalStateBackend } from './backend.js';
import { GroupCommit, type CommittedStep } from './group-commit.js';
import type { LeaseLock } from './lease-lock.js';
import type { LockedResource } from '../model/resources.js';

const COMMIT = 'c'.repeat(40);
let root: string;
const leases: LeaseLock[] = [];

/** A DurableSync that counts its calls and, while `held`, keeps each sync pending until `release()`. */
class CountingSync implements DurableSync {
  fsyncs = 0;
  fdatasyncs = 0;
  held = false;
  #pending: Array<() => void> = [];

  fsync(fd: number): Promise<void> {
    this.fsyncs++;
    return this.#gate(() => threadPoolSync.fsync(fd));
  }

  fdatasync(fd: number): Promise<void> {
    this.fdatasyncs++;
    return this.#gate(() => threadPoolSync.fdatasync(fd));
  }

  /** Syncs waiting to be released. */
  get pending(): number {
    return this.#pending.length;
  }

  release(): void {
    for (const go of this.#pending.splice(0)) go();
  }

  #gate(sync: () => Promise<void>): Promise<void> {
    if (!this.held) return sync();
    return new Promise<void>((resolve, reject) => this.#pending.push(() => void sync().then(resolve, reject)));
  }
}

beforeEach(() => {
  root = mkdtempSync(path.join(os.tmpdir(), 'agentvm-group-commit-'));
});
afterEach(() => {
  for (const l of leases.splice(0)) l.release();
  rmSync(root, { recursive: true, force: true });
});

function resource(address: string): LockedResource {
  return {
    address,
    provider: 'systemd',
    workload: 'research',
    identity: COMMIT,
    digest: `sha256:${COMMIT}`,
    commit: COMMIT,
    appliedAt: '2026-01-01T00:00:00.000Z',
  };
}

const entry = (address: string): AuditEntry => ({
  host: 'web-1',
  operation: 'apply',
  applyId: 'a1',
  event: 'resource.apply',
  result: 'ok',
  address,
  action: 'create',
});

/** Lets every callback that is ready run (the thread pool's completions, timers, setImmediate) a few times over. */
async function settle(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setTimeout(r, 1));
}

async function started(sync: CountingSync) {
  const backend = new LocalStateBackend(hostPaths(root), { sync });
  const lease = await backend.acquireLease('web-1', 'apply', { renew: false });
  leases.push(lease);
  const log = await backend.beginApply('web-1', { applyId: 'a1', planDigest: 'p' }, lease);
  const groups: number[] = [];
  const commits = new GroupCommit(backend, log, { onGroup: (n) => groups.push(n) });
  // The first step on its own: it creates the audit log (and its directory sync), which is not what is counted.
  await commits.submit({ ...entry('x'), event: 'apply.start', address: undefined, action: undefined });
  sync.fsyncs = 0;
  sync.fdatasyncs = 0;
  groups.length = 0;
  return { backend, log, commits, groups };
}

describe('group commit of an apply’s durable steps (local backend)', () => {
  it('GIVEN 12 resources finishing together THEN one audit fsync and one WAL fdatasync record them all', async () => {
    const sync = new CountingSync();
    const { backend, log, commits, groups } = await started(sync);
    const addresses = Array.from({ length: 12 }, (_, i) => `release.w${i}`);
    const committed = await Promise.all(
      addresses.map((a) => commits.submit(entry(a), [{ op: 'resource.set', entry: resource(a) }], { done: a })),
    );
    expect(groups).toEqual([12]);
    expect(sync.fsyncs).toBe(1);
    expect(sync.fdatasyncs).toBe(1);
    // Each step is still its own audit record and its own WAL batch, in submission order, each with its own head.
    expect(committed.map((c) => c.event.address)).toEqual(addresses);
    const seqs = committed.map((c) => c.event.seq);
    expect(seqs).toEqual(seqs.map((_, i) => seqs[0]! + i));
    for (const a of addresses) expect(log.isDone(a)).toBe(true);
    const wal = readFileSync(path.join(root, 'var/lib/agentvm/state/web-1.wal.jsonl'), 'utf8').trim().split('\n');
    expect(wal.slice(-12).map((l) => (JSON.parse(l) as { done?: string }).done)).toEqual(addresses);
    const done = await log.finish();
    expect(done.auditHead).toEqual({ seq: committed.at(-1)!.event.seq, hash: committed.at(-1)!.event.hash });
    expect(Object.keys(done.resources).sort()).toEqual([...addresses].sort());
    expect(await backend.readLockfile('web-1')).toEqual(done);
    expect((await backend.verifyAudit(done.auditHead!)).ok).toBe(true);
  });

  it('GIVEN the syncs are held THEN no step is acknowledged, and the WAL is not written, until its group’s syncs resolve', async () => {
    const sync = new CountingSync();
    const { log, commits, groups } = await started(sync);
    const walFile = path.join(root, 'var/lib/agentvm/state/web-1.wal.jsonl');
    const auditFile = path.join(root, 'var/log/agentvm/audit.jsonl');
    const walBefore = readFileSync(walFile, 'utf8');
    sync.held = true;
    const acknowledged: string[] = [];
    const addresses = ['release.a', 'release.b', 'release.c'];
    const steps: Array<Promise<CommittedStep>> = addresses.map((a) =>
      commits.submit(entry(a), [{ op: 'resource.set', entry: resource(a) }], { done: a }).then((c) => {
        acknowledged.push(a);
        return c;
      }),
    );

    // The audit records are written and their fsync is pending: nothing acknowledged, the WAL untouched.
    await settle();
    expect(sync.pending).toBe(1);
    expect(sync.fsyncs).toBe(1);
    expect(sync.fdatasyncs).toBe(0);
    expect(readFileSync(auditFile, 'utf8')).toContain('"address":"release.c"');
    expect(readFileSync(walFile, 'utf8')).toBe(walBefore);
    expect(acknowledged).toEqual([]);
    for (const a of addresses) expect(log.isDone(a)).toBe(false);

    // A resource finishing meanwhile waits for the next group.
    const late = commits.submit(entry('release.d'), [{ op: 'resource.set', entry: resource('release.d') }], {
      done: 'release.d',
    });

    // The audit sync resolves: the WAL batches are written, their fdatasync is pending — still nothing acknowledged.
    sync.release();
    await settle();
    expect(sync.fdatasyncs).toBe(1);
    expect(sync.pending).toBe(1);
    expect(readFileSync(walFile, 'utf8')).toContain('"done":"release.c"');
    expect(acknowledged).toEqual([]);
    for (const a of addresses) expect(log.isDone(a)).toBe(false);

    // The WAL sync resolves: the whole group is acknowledged at once, and the late step forms the second group.
    sync.release();
    await settle();
    expect(acknowledged.sort()).toEqual(addresses);
    for (const a of addresses) expect(log.isDone(a)).toBe(true);
    expect(log.isDone('release.d')).toBe(false);
    sync.held = false;
    sync.release();
    await Promise.all([...steps, late]);
    expect(groups).toEqual([3, 1]);
    expect(sync.fsyncs).toBe(2);
    expect(sync.fdatasyncs).toBe(2);
    expect(log.isDone('release.d')).toBe(true);
  });

  it('GIVEN the audit sync fails THEN every step of the group is refused, none is recorded as done, and the chain still verifies', async () => {
    const sync = new CountingSync();
    const { backend, log, commits } = await started(sync);
    sync.fsync = () => Promise.reject(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }));
    const results = await Promise.allSettled(
      ['release.a', 'release.b'].map((a) =>
        commits.submit(entry(a), [{ op: 'resource.set', entry: resource(a) }], { done: a }),
      ),
    );
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(log.isDone('release.a') || log.isDone('release.b')).toBe(false);
    const done = await log.finish();
    expect(done.resources).toEqual({});
    expect((await backend.verifyAudit()).ok).toBe(true);
  });
});
