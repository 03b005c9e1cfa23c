// Tests of ApplyLog through LocalStateBackend on a temporary host root: replay of acknowledged batches, torn and
// corrupt lines, checkpoints (automatic, final, and a kill between the lockfile write and the WAL removal), serial
// monotonicity, conflicts with other writers, resume, and the linear cost of an apply (bytes written per append stay
// constant as the lockfile grows). Crash tests with real SIGKILLed processes are in apply-log.crash.test.ts.

import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { LockedResource } from '../model/resources.js';
import { MIN_CHECKPOINT_INTERVAL, type ApplyLog } from './apply-log.js';
import { LocalStateBackend } from './backend.js';
import { hostPaths } from '../model/index.js';
import type { LeaseLock } from './lease-lock.js';
import { applyOps, emptyLockfile, withResource, type Lockfile, type LockfileOp } from './lockfile.js';
import { rejection } from '../../test/support/rejection.js';

const COMMIT = 'c'.repeat(40);
const HASH = (n: number): string => n.toString(16).padStart(64, '0');
let root: string;
let backend: LocalStateBackend;
const leases: LeaseLock[] = [];
beforeEach(() => {
  root = mkdtempSync(path.join(os.tmpdir(), 'agentvm-wal-'));
  backend = new LocalStateBackend(hostPaths(root));
});
afterEach(() => {
  for (const l of leases.splice(0)) l.release();
  rmSync(root, { recursive: true, force: true });
});

async function lease(): Promise<LeaseLock> {
  const l = await backend.acquireLease('web-1', 'apply', { renew: false });
  leases.push(l);
  return l;
}

function resource(address: string, identity = COMMIT): LockedResource {
  return {
    address,
    provider: 'systemd',
    workload: 'research',
    identity,
    digest: `sha256:${identity}`,
    commit: COMMIT,
    appliedAt: '2026-01-01T00:00:00.000Z',
  };
}

/** What apply writes for one resource: its entry and the new audit head, marked done. */
function resourceBatch(i: number): [LockfileOp[], { done: string }] {
  const address = `unit.research.p${String(i).padStart(6, '0')}`;
  return [
    [
      { op: 'resource.set', entry: resource(address) },
      { op: 'auditHead.set', head: { seq: i + 1, hash: HASH(i + 1) } },
    ],
    { done: address },
  ];
}

const stateFile = (name: string): string => path.join(root, 'var/lib/agentvm/state', name);
const WAL = (): string => stateFile('web-1.wal.jsonl');
const LOCK = (): string => stateFile('web-1.lock.json');
const fresh = (): LocalStateBackend => new LocalStateBackend(hostPaths(root));

/** A lockfile at serial 1 with `n` resources, written the way a state command would. */
async function seed(l: LeaseLock, n = 0): Promise<Lockfile> {
  let lock = emptyLockfile('web-1');
  for (let i = 0; i < n; i++) lock = withResource(lock, resource(`release.w${i}`));
  return backend.writeLockfile('web-1', lock, l);
}

describe('ApplyLog: every acknowledged batch is durable and replayed', () => {
  it('GIVEN appends WHEN another backend reads THEN it sees every batch (serial = base + batches) while the lockfile file is untouched until finish', async () => {
    const l = await lease();
    const base = await seed(l);
    const fileBefore = readFileSync(LOCK(), 'utf8');
    const log = await backend.beginApply(
      'web-1',
      { applyId: 'a1', planDigest: 'p', expected: { lineage: base.lineage, serial: 1 } },
      l,
    );
    expect(log.interrupted).toBeNull();
    for (let i = 0; i < 5; i++) {
      const [ops, marks] = resourceBatch(i);
      expect(await log.append(ops, marks)).toEqual({ seq: i + 1, serial: 2 + i });
      const read = await fresh().readLockfile('web-1');
      expect(read?.serial).toBe(2 + i);
      expect(Object.keys(read!.resources)).toHaveLength(i + 1);
      expect(read?.auditHead).toEqual({ seq: i + 1, hash: HASH(i + 1) });
      expect(read).toEqual(log.lock);
    }
    expect(readFileSync(LOCK(), 'utf8')).toBe(fileBefore);
    expect(log.record.completed).toHaveLength(5);
    expect((await fresh().readJournal('web-1'))?.completed).toEqual(log.record.completed);

    const final = await log.finish();
    expect(final.serial).toBe(6);
    expect(existsSync(WAL())).toBe(false);
    expect(JSON.parse(readFileSync(LOCK(), 'utf8'))).toEqual(final);
    expect(JSON.parse(readFileSync(`${LOCK()}.backup`, 'utf8')).serial).toBe(1);
    expect(await fresh().readLockfile('web-1')).toEqual(final);
    expect(await fresh().readJournal('web-1')).toBeNull();
    expect((await rejection(log.append([]))).code).toBe('state.apply-log-closed');
  });

  it('GIVEN no lockfile yet THEN the log starts a lineage at serial 0 and the first checkpoint creates the file', async () => {
    const l = await lease();
    const log = await backend.beginApply(
      'web-1',
      { applyId: 'a1', planDigest: 'p', expected: { lineage: null, serial: 0 } },
      l,
    );
    expect(await fresh().readLockfile('web-1')).toBeNull(); // a header alone records nothing
    await log.append(...resourceBatch(0));
    const read = await fresh().readLockfile('web-1');
    expect(read).toMatchObject({ serial: 1, lineage: log.lock.lineage, commit: null });
    expect(existsSync(LOCK())).toBe(false);
    await log.append([{ op: 'commit.set', commit: COMMIT }]);
    const final = await log.finish();
    expect(final).toMatchObject({ serial: 2, commit: COMMIT });
    expect(await fresh().readLockfile('web-1')).toEqual(final);
  });

  it('GIVEN a torn last line (a kill mid-append) THEN it is ignored, and the next apply checkpoints only the acknowledged batches', async () => {
    const l = await lease();
    await seed(l);
    const log = await backend.beginApply('web-1', { applyId: 'a1', planDigest: 'p' }, l);
    for (let i = 0; i < 3; i++) await log.append(...resourceBatch(i));
    const line = readFileSync(WAL(), 'utf8').trim().split('\n').at(-1)!.replace('"seq":3', '"seq":4');
    for (const torn of [line.slice(0, line.length - 7), `${line.slice(0, -1)}\n`, '\0\0\0\0']) {
      const intact = readFileSync(WAL());
      appendFileSync(WAL(), torn);
      const read = await fresh().readLockfile('web-1');
      expect(read?.serial).toBe(4);
      expect(Object.keys(read!.resources)).toHaveLength(3);
      writeFileSync(WAL(), intact);
    }
    appendFileSync(WAL(), line.slice(0, 20));
    const next = await fresh().beginApply('web-1', { applyId: 'a2', planDigest: 'p' }, l);
    expect(next.interrupted?.completed).toHaveLength(3);
    expect(next.serial).toBe(4);
    expect(JSON.parse(readFileSync(LOCK(), 'utf8')).serial).toBe(4);
    expect(readFileSync(WAL(), 'utf8').split('\n')).toHaveLength(2); // the new header alone: the torn line is gone
    expect((await next.finish()).serial).toBe(4);
  });

  it('GIVEN an invalid line in the middle THEN readLockfile and beginApply throw state.corrupt naming the line and the way out', async () => {
    const l = await lease();
    await seed(l);
    const log = await backend.beginApply('web-1', { applyId: 'a1', planDigest: 'p' }, l);
    for (let i = 0; i < 3; i++) await log.append(...resourceBatch(i));
    const lines = readFileSync(WAL(), 'utf8').split('\n');
    lines[2] = lines[2]!.replace('"op":"resource.set"', '"op":"resource.sett"');
    writeFileSync(WAL(), lines.join('\n'));
    for (const attempt of [
      fresh().readLockfile('web-1'),
      fresh().beginApply('web-1', { applyId: 'a2', planDigest: 'p' }, l),
      fresh().readJournal('web-1'),
    ]) {
      const error = await rejection(attempt);
      expect(error.code).toBe('state.corrupt');
      expect(error.message).toContain(WAL());
      expect(error.message).toContain('line 3');
      expect(error.diagnostics[0]?.detail).toContain(`head -n 2 ${WAL()}`);
      expect(error.diagnostics[0]?.detail).toContain(`rm ${WAL()}`);
    }
    // The advice works: keeping the intact lines keeps the first batch.
    writeFileSync(WAL(), lines.slice(0, 2).join('\n') + '\n');
    expect((await fresh().readLockfile('web-1'))?.serial).toBe(2);
  });

  it('GIVEN a WAL of another lineage, or on top of a serial the lockfile is not at THEN state.corrupt says to remove the log or restore the lockfile', async () => {
    const l = await lease();
    const base = await seed(l);
    const log = await backend.beginApply('web-1', { applyId: 'a1', planDigest: 'p' }, l);
    await log.append(...resourceBatch(0));
    await log.append(...resourceBatch(1));
    const wal = readFileSync(WAL(), 'utf8');
    const cases: Array<[string, string, RegExp]> = [
      ['another lineage', wal.replace(base.lineage, emptyLockfile('web-1').lineage), /belongs to lineage/],
      ['a newer base', wal.replace('"baseSerial":1', '"baseSerial":2'), /older serial 1/],
    ];
    for (const [_name, text, problem] of cases) {
      writeFileSync(WAL(), text);
      const error = await rejection(fresh().readLockfile('web-1'));
      expect(error.code).toBe('state.corrupt');
      expect(error.message).toMatch(problem);
      expect(error.diagnostics[0]?.detail).toContain(`rm ${WAL()}`);
    }
    writeFileSync(WAL(), wal);
    const lock = JSON.parse(readFileSync(LOCK(), 'utf8')) as Lockfile;
    writeFileSync(LOCK(), JSON.stringify({ ...lock, serial: 2 })); // between base 1 and its last batch (3)
    expect((await rejection(fresh().readLockfile('web-1'))).message).toMatch(
      /between the WAL's base 1 and its last batch 3/,
    );
  });
});

describe('ApplyLog: checkpoints', () => {
  it('GIVEN a kill after the final checkpoint wrote the lockfile but before the WAL was deleted THEN nothing is applied twice', async () => {
    const l = await lease();
    await seed(l);
    const log = await backend.beginApply('web-1', { applyId: 'a1', planDigest: 'p' }, l);
    for (let i = 0; i < 3; i++) {
      // rehearsal.add is not idempotent: a second replay would list each rehearsal twice.
      await log.append(
        [
          {
            op: 'rehearsal.add',
            workload: 'research',
            rehearsal: {
              rehearsedAt: '2026-01-01T00:00:00.000Z',
              fromIdentity: `f${i}`,
              toIdentity: 't',
              result: 'passed',
            },
          },
        ],
        { done: `r${i}` },
      );
    }
    const walBytes = readFileSync(WAL());
    const final = await log.finish();
    writeFileSync(WAL(), walBytes); // the on-disk state of a kill between the two steps of the checkpoint
    const read = await fresh().readLockfile('web-1');
    expect(read).toEqual(final);
    expect(read?.workloads.research?.rehearsals?.map((r) => r.fromIdentity)).toEqual(['f2', 'f1', 'f0']);
    expect(read?.serial).toBe(4);
    // The WAL is the record of an apply that did not get to clean up: reported, then replaced without replay.
    expect((await fresh().readJournal('web-1'))?.completed).toEqual(['r0', 'r1', 'r2']);
    const next = await fresh().beginApply(
      'web-1',
      { applyId: 'a2', planDigest: 'other', expected: { lineage: final.lineage, serial: 4 } },
      l,
    );
    expect(next.interrupted?.applyId).toBe('a1');
    expect(next.isDone('r0')).toBe(false); // another plan: reported, not resumed
    expect(next.lock).toEqual(final);
    expect((await next.finish()).serial).toBe(4);
    expect(await fresh().readLockfile('web-1')).toEqual(final);
  });

  it('checkpoints automatically past max(256, 2 × resources) batches, and the serial grows by one per batch across checkpoints', async () => {
    const l = await lease();
    await seed(l, 10);
    const log = await backend.beginApply('web-1', { applyId: 'a1', planDigest: 'p' }, l);
    let serial = log.serial;
    const fileSerials: number[] = [];
    for (let i = 0; i < 3 * MIN_CHECKPOINT_INTERVAL + 50; i++) {
      // Overwrites: the lockfile stays at 15 resources, so the WAL alone would grow without bound.
      const result = await log.append([{ op: 'resource.set', entry: resource(`unit.research.p${i % 5}`, `v${i}`) }]);
      expect(result.serial).toBe(++serial);
      const onDisk = (JSON.parse(readFileSync(LOCK(), 'utf8')) as Lockfile).serial;
      if (onDisk !== fileSerials.at(-1)) fileSerials.push(onDisk);
      if (i % 97 === 0) expect((await fresh().readLockfile('web-1'))?.serial).toBe(serial);
    }
    const interval = MIN_CHECKPOINT_INTERVAL + 1;
    expect(fileSerials).toEqual([1, 1 + interval, 1 + 2 * interval, 1 + 3 * interval]);
    expect(log.writes.checkpoints).toBe(3);
    expect(readFileSync(WAL(), 'utf8').trim().split('\n').length - 1).toBe(
      3 * MIN_CHECKPOINT_INTERVAL + 50 - 3 * interval,
    );
    const read = await fresh().readLockfile('web-1');
    expect(read).toEqual(log.lock);
    const last = 3 * MIN_CHECKPOINT_INTERVAL + 49;
    expect(read?.resources['unit.research.p4']?.identity).toBe(`v${last - ((last - 4) % 5)}`);
    // The continued WAL still carries the apply's identity and progress.
    expect((await fresh().readJournal('web-1'))?.applyId).toBe('a1');
    expect((await log.finish()).serial).toBe(serial);
  });

  it('GIVEN an interrupted apply of the same plan THEN the next one checkpoints it and resumes its done addresses, also across its checkpoints', async () => {
    const l = await lease();
    await seed(l);
    const first = await backend.beginApply('web-1', { applyId: 'a1', planDigest: 'p' }, l);
    for (let i = 0; i < MIN_CHECKPOINT_INTERVAL + 5; i++) await first.append([], i < 3 ? { done: `r${i}` } : {});
    await first.append([], { failed: { address: 'r9', message: 'health check failed' } });
    expect(first.writes.checkpoints).toBe(1);
    const interrupted = await fresh().readJournal('web-1');
    expect(interrupted).toMatchObject({
      applyId: 'a1',
      completed: ['r0', 'r1', 'r2'],
      failed: [{ address: 'r9', message: 'health check failed' }],
    });
    const second = await fresh().beginApply(
      'web-1',
      { applyId: 'a2', planDigest: 'p', expected: { lineage: first.lock.lineage, serial: first.serial } },
      l,
    );
    expect(second.interrupted).toEqual(interrupted);
    expect(['r0', 'r1', 'r2', 'r9'].map((a) => second.isDone(a))).toEqual([true, true, true, false]);
    expect(second.record).toMatchObject({ resumedFrom: 'a1', completed: ['r0', 'r1', 'r2'], failed: [] });
    expect(JSON.parse(readFileSync(LOCK(), 'utf8')).serial).toBe(first.serial);
    await second.finish();
  });
});

describe('ApplyLog: refuses to write on top of what it did not see', () => {
  it('GIVEN the plan was made at another serial THEN beginApply throws state.serial-conflict and leaves the state alone', async () => {
    const l = await lease();
    const base = await seed(l);
    expect(
      (
        await rejection(
          backend.beginApply(
            'web-1',
            { applyId: 'a', planDigest: 'p', expected: { lineage: base.lineage, serial: 0 } },
            l,
          ),
        )
      ).code,
    ).toBe('state.serial-conflict');
    expect(
      (
        await rejection(
          backend.beginApply('web-1', { applyId: 'a', planDigest: 'p', expected: { lineage: null, serial: 1 } }, l),
        )
      ).code,
    ).toBe('state.lineage-mismatch');
    expect(existsSync(WAL())).toBe(false);
  });

  it('GIVEN writeLockfile while a log is open THEN the write lands on top of every acknowledged batch and the log stops (state.wal-conflict)', async () => {
    const l = await lease();
    await seed(l);
    const log = await backend.beginApply('web-1', { applyId: 'a1', planDigest: 'p' }, l);
    await log.append(...resourceBatch(0));
    const other = fresh();
    const current = (await other.readLockfile('web-1'))!;
    const written = await other.writeLockfile('web-1', withResource(current, resource('release.other')), l);
    expect(written.serial).toBe(3);
    expect((await rejection(log.append(...resourceBatch(1)))).code).toBe('state.wal-conflict');
    expect((await rejection(log.finish())).code).toBe('state.apply-log-closed');
    const read = await fresh().readLockfile('web-1');
    expect(read).toEqual(written); // the old WAL is checkpointed by that write: not replayed again
    expect(Object.keys(read!.resources).sort()).toEqual(['release.other', 'unit.research.p000000']);
  });

  it('GIVEN an op the schema refuses THEN state.invalid-lockfile and nothing is written; GIVEN a lost lease THEN state.lease-lost', async () => {
    const l = await lease();
    await seed(l);
    const log = (await backend.beginApply('web-1', { applyId: 'a1', planDigest: 'p' }, l)) as ApplyLog;
    const size = statSync(WAL()).size;
    const bad: LockfileOp[][] = [
      [{ op: 'resource.set', entry: { ...resource('release.x'), workload: 'Not_A_Name' } }],
      [{ op: 'commit.set', commit: 'abc' }],
      [{ op: 'auditHead.set', head: { seq: 0, hash: 'x' } }],
      [{ op: 'nonsense' } as unknown as LockfileOp],
    ];
    for (const ops of bad) expect((await rejection(log.append(ops))).code).toBe('state.invalid-lockfile');
    expect(statSync(WAL()).size).toBe(size);
    expect(log.serial).toBe(1);
    await log.append(...resourceBatch(0)); // still usable
    // A richer object where the lockfile keeps a few fields (an audit record as the head) is cut down, not refused.
    const record = await backend.appendAudit({
      host: 'web-1',
      operation: 'apply',
      event: 'resource.apply',
      result: 'ok',
    });
    await log.append([{ op: 'auditHead.set', head: record }]);
    expect(log.lock.auditHead).toEqual({ seq: record.seq, hash: record.hash });
    await backend.forceUnlock('web-1', l.id);
    expect((await rejection(log.append(...resourceBatch(1)))).code).toBe('state.lease-lost');
    expect((await fresh().readLockfile('web-1'))?.serial).toBe(3);
  });
});

describe('ApplyLog: the cost of an apply is linear', () => {
  it('GIVEN a lockfile of 100, 1,000 or 4,000 resources THEN each resource append writes the same number of bytes, and checkpoints stay proportional to the appends', async () => {
    const l = await lease();
    const perAppend: string[] = [];
    let lockfileBytes = 0;
    for (const size of [100, 1000, 4000]) {
      rmSync(stateFile(''), { recursive: true, force: true });
      const fresh = new LocalStateBackend(hostPaths(root));
      const held = await fresh.acquireLease('web-1', 'apply', { renew: false });
      leases.push(held);
      const entries = Array.from({ length: size }, (_, i): LockfileOp => ({
        op: 'resource.set',
        entry: resource(`release.w${String(i).padStart(6, '0')}`),
      }));
      await fresh.writeLockfile('web-1', applyOps(emptyLockfile('web-1'), entries), held);
      lockfileBytes = statSync(LOCK()).size;
      const log = await fresh.beginApply('web-1', { applyId: 'a1', planDigest: 'p' }, held);
      const bytes: number[] = [];
      for (let i = 0; i < 300; i++) {
        await log.append(...resourceBatch(i));
        bytes.push(log.writes.lastAppendBytes);
      }
      perAppend.push(bytes.join(','));
      expect(Math.max(...bytes)).toBeLessThan(600);
      expect(log.writes.appendedBytes).toBe(bytes.reduce((a, b) => a + b));
      // Checkpoints only when the WAL outgrows the lockfile: at most one per 256 appends, O(lockfile) each.
      expect(log.writes.checkpoints).toBeLessThanOrEqual(Math.floor(300 / Math.max(MIN_CHECKPOINT_INTERVAL, 2 * size)));
      await log.finish();
      held.release();
    }
    // Append by append, the same bytes whatever the size of the lockfile (only the digits of seq numbers vary).
    expect(new Set(perAppend).size).toBe(1);
    expect(lockfileBytes).toBeGreaterThan(4000 * 250); // the 4,000-resource lockfile is ~1 MB; an append is ~400 bytes
    void l;
  });

  it('GIVEN an apply that only overwrites THEN total bytes written are at most a constant per append (amortised checkpoints)', async () => {
    const l = await lease();
    await seed(l, 200);
    const log = await backend.beginApply('web-1', { applyId: 'a1', planDigest: 'p' }, l);
    for (let i = 0; i < 2000; i++)
      await log.append([{ op: 'resource.set', entry: resource(`release.w${i % 200}`, `v${i}`) }]);
    const w = log.writes;
    expect(w.checkpoints).toBe(Math.floor(2000 / (2 * 200 + 1)));
    // Each checkpoint (~one lockfile, ~250 bytes per resource) is paid for by 2 × resources appends.
    expect(w.checkpointedBytes / w.appends).toBeLessThan(250);
    await log.finish();
  });

  it('measures: N resource appends (one batch each: entry + audit head + done) and finish, without and with the audit append apply makes per resource', async () => {
    for (const withAudit of [false, true]) {
      for (const n of [1000, 4000]) {
        rmSync(root, { recursive: true, force: true });
        const b = new LocalStateBackend(hostPaths(root));
        const held = await b.acquireLease('web-1', 'apply', { renew: false });
        leases.push(held);
        const t0 = performance.now();
        const log = await b.beginApply('web-1', { applyId: 'a1', planDigest: 'p' }, held);
        for (let i = 0; i < n; i++) {
          const [ops, marks] = resourceBatch(i);
          if (withAudit) {
            const ev = await b.appendAudit({
              host: 'web-1',
              operation: 'apply',
              event: 'resource.apply',
              result: 'ok',
              address: marks.done,
            });
            ops[1] = { op: 'auditHead.set', head: { seq: ev.seq, hash: ev.hash } };
          }
          await log.append(ops, marks);
        }
        const t1 = performance.now();
        const final = await log.finish();
        const t2 = performance.now();
        expect(Object.keys(final.resources)).toHaveLength(n);
        console.log(
          `[apply-log] ${n} resource appends${withAudit ? ' + audit appends' : ''}: ${((t1 - t0) / 1000).toFixed(2)} s ` +
            `(${((t1 - t0) / n).toFixed(3)} ms each), finish: ${(t2 - t1).toFixed(0)} ms, WAL bytes/append ${Math.round(log.writes.appendedBytes / n)}`,
        );
        held.release();
      }
    }
  }, 300_000);
});
