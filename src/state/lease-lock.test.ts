// Tests of the lease lock within one process, on a real filesystem and with real (dead and live) processes.
// Races between processes are in test/state-concurrency.test.ts.

import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { AgentvmError } from '../diagnostics/index.js';
import { selfIdentity } from './process-identity.js';
import {
  acquireLeaseLock,
  forceUnlockLease,
  LeaseHeldError,
  leaseStaleness,
  readLeaseRecord,
  type LeaseLock,
  type LeaseRecord,
} from './lease-lock.js';

let dir: string;
let file: string;
const held: LeaseLock[] = [];
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'agentvm-lease-'));
  file = path.join(dir, 'web-1.lease.json');
});
afterEach(() => {
  for (const l of held.splice(0)) l.release();
  rmSync(dir, { recursive: true, force: true });
});

function acquire(operation = 'apply', options = {}): LeaseLock {
  const lease = acquireLeaseLock(file, 'web-1', operation, { renew: false, ...options });
  held.push(lease);
  return lease;
}

function rejection(fn: () => unknown): AgentvmError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(AgentvmError);
    return error as AgentvmError;
  }
  throw new Error('expected an error');
}

/** The pid of a process that has exited (and been reaped). */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(child.stdout);
}

function foreignLease(extra: Partial<LeaseRecord>): LeaseRecord {
  const now = Date.now();
  return {
    id: randomUUID(),
    who: 'bob@elsewhere',
    operation: 'apply',
    host: 'web-1',
    pid: process.pid,
    hostname: os.hostname(),
    created: new Date(now - 60_000).toISOString(),
    expires: new Date(now + 600_000).toISOString(),
    // Same boot and pid namespace as this process: a dead pid here is provably dead.
    ...(me.bootId ? { bootId: me.bootId } : {}),
    ...(me.pidNamespace ? { pidNamespace: me.pidNamespace } : {}),
    ...extra,
  };
}
const me = selfIdentity();

describe('acquireLeaseLock', () => {
  it('GIVEN no lease WHEN acquired THEN the file records who, what, where and until when', () => {
    const lease = acquire('apply', { leaseMs: 60_000 });
    const record = readLeaseRecord(file);
    expect(record).toEqual(lease.record);
    expect(record).toMatchObject({ operation: 'apply', host: 'web-1', pid: process.pid, hostname: os.hostname() });
    expect(record?.who).toMatch(/^.+@.+$/);
    expect(Date.parse(record!.expires) - Date.parse(record!.created)).toBe(60_000);
    expect(lease.tookOver).toBeNull();
    expect(lease.held).toBe(true);
    expect(readdirSync(dir)).toEqual(['web-1.lease.json']); // no temp file left
  });

  it('GIVEN a live lease WHEN another acquire THEN state.locked names holder, operation, pid, since, id and the unlock command', () => {
    const first = acquire('apply');
    const error = rejection(() => acquire('drift'));
    expect(error).toBeInstanceOf(LeaseHeldError);
    expect(error.code).toBe('state.locked');
    const r = first.record;
    for (const part of [r.who, 'operation apply', `pid ${r.pid}`, r.created, r.id, `agentvm state unlock ${r.id}`])
      expect(error.message).toContain(part);
    expect((error as LeaseHeldError).holder).toEqual(r);
  });

  it('GIVEN a released lease WHEN acquired again THEN it succeeds with a new id', () => {
    const first = acquire();
    first.release();
    expect(existsSync(file)).toBe(false);
    const second = acquire();
    expect(second.id).not.toBe(first.id);
  });

  it('GIVEN a lease whose holder pid is gone on this machine THEN it is taken over and reported', () => {
    const stale = foreignLease({ pid: deadPid() });
    writeFileSync(file, JSON.stringify(stale));
    expect(leaseStaleness(stale)).toBe('holder-gone');
    const lease = acquire();
    expect(lease.tookOver).toEqual(stale);
    expect(readLeaseRecord(file)?.id).toBe(lease.id);
    expect(readdirSync(dir)).toEqual(['web-1.lease.json']); // moved-aside file and takeover marker are gone
  });

  it('GIVEN an expired lease of a live process THEN it is taken over', () => {
    const stale = foreignLease({ expires: new Date(Date.now() - 1000).toISOString() });
    writeFileSync(file, JSON.stringify(stale));
    expect(leaseStaleness(stale)).toBe('expired');
    expect(acquire().tookOver?.id).toBe(stale.id);
  });

  it('GIVEN an unexpired lease of a dead pid in ANOTHER pid namespace (a container) THEN it is held: its pid proves nothing here', () => {
    writeFileSync(file, JSON.stringify(foreignLease({ pid: deadPid(), pidNamespace: (me.pidNamespace ?? 1) + 1 })));
    expect(rejection(() => acquire()).code).toBe('state.locked');
  });

  it('GIVEN an unexpired lease of a dead pid of another boot, or one recorded without boot id and namespace THEN it is held', () => {
    writeFileSync(
      file,
      JSON.stringify(foreignLease({ pid: deadPid(), bootId: '00000000-0000-4000-8000-000000000000' })),
    );
    expect(rejection(() => acquire()).code).toBe('state.locked');
    const { bootId: _b, pidNamespace: _n, ...legacy } = foreignLease({ pid: deadPid() });
    writeFileSync(file, JSON.stringify(legacy));
    expect(rejection(() => acquire()).code).toBe('state.locked');
  });

  it('GIVEN a live pid that started at another time than the holder (a reused pid) THEN the holder is gone', () => {
    const stale = foreignLease({ pid: process.pid, pidStart: (me.pidStart ?? 0) + 1 });
    expect(leaseStaleness(stale)).toBe(me.pidStart === undefined ? null : 'holder-gone');
    expect(
      leaseStaleness(
        foreignLease({ pid: process.pid, ...(me.pidStart !== undefined ? { pidStart: me.pidStart } : {}) }),
      ),
    ).toBeNull();
  });

  it('GIVEN an unexpired lease of a dead pid on ANOTHER machine THEN it is held (the pid cannot be checked from here)', () => {
    writeFileSync(
      file,
      JSON.stringify(
        foreignLease({
          pid: deadPid(),
          hostname: 'some-other-machine',
          bootId: 'ffffffff-0000-4000-8000-000000000000',
        }),
      ),
    );
    expect(rejection(() => acquire()).code).toBe('state.locked');
  });

  it('GIVEN an unreadable lease file THEN it is held while young and taken over once a minute old', () => {
    writeFileSync(file, '{"id": "half-writ');
    const error = rejection(() => acquire());
    expect(error.code).toBe('state.locked');
    expect(error.message).toContain('unreadable');
    expect(() => readLeaseRecord(file)).toThrow(/unreadable/);
    const old = new Date(Date.now() - 120_000);
    utimesSync(file, old, old);
    const lease = acquire();
    expect(lease.tookOver).toBeNull();
    expect(readLeaseRecord(file)?.id).toBe(lease.id);
  });
});

describe('a held lease', () => {
  it('renews: expires moves forward, the id stays', async () => {
    const lease = acquire('apply', { leaseMs: 60_000 });
    const before = lease.record.expires;
    await new Promise((r) => setTimeout(r, 20));
    lease.renew();
    expect(Date.parse(lease.record.expires)).toBeGreaterThan(Date.parse(before));
    expect(readLeaseRecord(file)).toEqual(lease.record);
  });

  it('renews by itself on a timer while held', async () => {
    const lease = acquireLeaseLock(file, 'web-1', 'apply', { leaseMs: 3000 }); // renews every second
    held.push(lease);
    const first = readLeaseRecord(file)!.expires;
    await new Promise((r) => setTimeout(r, 1300));
    expect(Date.parse(readLeaseRecord(file)!.expires)).toBeGreaterThan(Date.parse(first));
    expect(readLeaseRecord(file)!.id).toBe(lease.id);
  });

  it('GIVEN it was taken over THEN assertHeld and renew throw state.lease-lost, and release leaves the new lease alone', () => {
    const lease = acquire('apply', { leaseMs: 60_000 });
    const usurper = foreignLease({});
    writeFileSync(file, JSON.stringify(usurper));
    expect(rejection(() => lease.assertHeld()).code).toBe('state.lease-lost');
    expect(rejection(() => lease.renew()).message).toContain(usurper.who);
    expect(lease.held).toBe(false);
    lease.release();
    expect(readLeaseRecord(file)?.id).toBe(usurper.id);
  });

  it('GIVEN the file now holds another lease THEN release does not remove it', () => {
    const lease = acquire();
    const other = foreignLease({});
    writeFileSync(file, JSON.stringify(other));
    lease.release();
    expect(readLeaseRecord(file)?.id).toBe(other.id);
  });
});

describe('forceUnlockLease', () => {
  it('removes the lease only when the id matches', () => {
    const lease = acquire();
    const wrong = rejection(() => forceUnlockLease(file, randomUUID()));
    expect(wrong.code).toBe('state.lock-id-mismatch');
    expect(wrong.message).toContain(lease.id);
    expect(readLeaseRecord(file)?.id).toBe(lease.id);
    expect(forceUnlockLease(file, lease.id)).toEqual(lease.record);
    expect(existsSync(file)).toBe(false);
    expect(rejection(() => forceUnlockLease(file, lease.id)).code).toBe('state.not-locked');
    expect(rejection(() => lease.assertHeld()).code).toBe('state.lease-lost');
  });

  it('GIVEN a takeover marker left by a racer that died THEN the next acquire removes it and takes over: nothing to delete by hand', () => {
    const stale = foreignLease({ pid: deadPid() });
    writeFileSync(file, JSON.stringify(stale));
    const marker = foreignLease({
      pid: deadPid(),
      operation: 'takeover',
      expires: new Date(Date.now() + 30_000).toISOString(),
    });
    writeFileSync(`${file}.takeover-${stale.id}`, JSON.stringify(marker));
    writeFileSync(path.join(dir, `.web-1.lease.json.${marker.pid}-${me.pidNamespace ?? 0}.0123456789ab.tmp`), 'half');
    const lease = acquire();
    expect(lease.tookOver?.id).toBe(stale.id);
    expect(readdirSync(dir)).toEqual(['web-1.lease.json']); // marker and the dead racer's temp file are gone
  });

  it('GIVEN a takeover marker of a racer in another pid namespace THEN it is waited for until its expiry, then removed', () => {
    const stale = foreignLease({ pid: deadPid() });
    writeFileSync(file, JSON.stringify(stale));
    const markerFile = `${file}.takeover-${stale.id}`;
    writeFileSync(
      markerFile,
      JSON.stringify(foreignLease({ pid: deadPid(), pidNamespace: (me.pidNamespace ?? 1) + 1, operation: 'takeover' })),
    );
    expect(rejection(() => acquire()).message).toContain('taking over');
    writeFileSync(
      markerFile,
      JSON.stringify(
        foreignLease({
          pid: deadPid(),
          pidNamespace: (me.pidNamespace ?? 1) + 1,
          operation: 'takeover',
          expires: new Date(Date.now() - 1).toISOString(),
        }),
      ),
    );
    expect(acquire().tookOver?.id).toBe(stale.id);
    expect(readdirSync(dir)).toEqual(['web-1.lease.json']);
  });

  it('clears a takeover marker abandoned by a crashed racer, which otherwise blocks the takeover', () => {
    const stale = foreignLease({ pid: deadPid() });
    writeFileSync(file, JSON.stringify(stale));
    writeFileSync(`${file}.takeover-${stale.id}`, '{}');
    const blocked = rejection(() => acquire());
    expect(blocked.code).toBe('state.locked');
    expect(blocked.message).toContain('taking over');
    forceUnlockLease(file, stale.id);
    expect(readdirSync(dir)).toEqual([]);
    expect(acquire().tookOver).toBeNull();
    expect(JSON.parse(readFileSync(file, 'utf8')).operation).toBe('apply');
  });
});
