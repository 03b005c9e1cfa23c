// The gate's group commit of request records: a group that cannot be written is kept and written later, never
// silently dropped (review finding); only past the pending cap are the oldest records given up, and counted.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { verifyAuditLog } from '../state/audit-log.js';
import { acquireLeaseLock } from '../state/lease-lock.js';
import { gateEntry, RequestAuditLog } from './audit.js';

const dir = mkdtempSync(join(tmpdir(), 'agentvm-gate-audit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('RequestAuditLog', () => {
  it('GIVEN the audit log cannot be written WHEN it flushes THEN the records are kept and written once it can be', async () => {
    // A regular file where the log's directory should be: every write fails (ENOTDIR), even for root.
    const blocker = join(dir, 'log');
    writeFileSync(blocker, 'not a directory');
    const errors: unknown[] = [];
    const log = new RequestAuditLog({
      file: join(blocker, 'audit.jsonl'),
      intervalMs: 10_000,
      onError: (e) => errors.push(e),
    });
    for (let i = 0; i < 3; i++)
      log.add(gateEntry('edge-1', 'gate.request', 'ok', { preview: 'w/p', path: `/p/w/p/${i}`, status: 200 }));
    log.flush();
    expect(errors.length).toBe(1);
    expect(log.written).toBe(0);
    expect(log.dropped).toBe(0);

    rmSync(blocker);
    log.add(gateEntry('edge-1', 'gate.request', 'ok', { preview: 'w/p', path: '/p/w/p/3', status: 200 }));
    log.flush();
    expect(log.written).toBe(4);
    const lines = readFileSync(join(blocker, 'audit.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { gate: { path: string } });
    // In the order they arrived, and the chain verifies.
    expect(lines.map((l) => l.gate.path)).toEqual(['/p/w/p/0', '/p/w/p/1', '/p/w/p/2', '/p/w/p/3']);
    expect((await verifyAuditLog(join(blocker, 'audit.jsonl'))).ok).toBe(true);
  });

  it('GIVEN another writer holds the audit lock WHEN the gate flushes THEN it does not wait (the event loop keeps serving) and writes the group once the lock is free', async () => {
    const file = join(dir, 'contended', 'audit.jsonl');
    const errors: unknown[] = [];
    const log = new RequestAuditLog({ file, intervalMs: 10_000, onError: (e) => errors.push(e) });
    log.add(gateEntry('edge-1', 'gate.request', 'ok', { preview: 'w/p', path: '/p/w/p/first', status: 200 }));
    log.flush(); // creates the log
    const lock = acquireLeaseLock(`${file}.lock`, 'edge-1', 'apply', { leaseMs: 30_000, renew: false, durable: false });
    try {
      for (let i = 0; i < 3; i++)
        log.add(gateEntry('edge-1', 'gate.request', 'ok', { preview: 'w/p', path: `/p/w/p/${i}`, status: 200 }));
      const t0 = performance.now();
      log.flush();
      const blocked = performance.now() - t0;
      expect(blocked).toBeLessThan(100); // it used to wait up to 10 s for the lock
      expect(log.written).toBe(1);
      expect(errors).toEqual([]); // a held lock is not an error until it lasts
    } finally {
      lock.release();
    }
    await new Promise((r) => setTimeout(r, 100)); // the retry (10 ms after a held lock)
    expect(log.written).toBe(4);
    expect(
      readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { gate: { path: string } }).gate.path),
    ).toEqual(['/p/w/p/first', '/p/w/p/0', '/p/w/p/1', '/p/w/p/2']);
    expect((await verifyAuditLog(file)).ok).toBe(true);
  });
});
