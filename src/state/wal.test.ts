// Tests of the write-ahead log format (wal.ts): parsing with a torn or invalid last line, corruption before it, the
// replay/checkpointed decision against a lockfile, and the journal an apply's WAL reports.

import { describe, it, expect } from 'vitest';
import { AgentvmError } from '../diagnostics/index.js';
import { emptyLockfile, type Lockfile } from './lockfile.js';
import { journalOf, parseWal, replayWal, serializeWalLine, walStatus, type WalBatch, type WalHeader } from './wal.js';

const FILE = '/state/web-1.wal.jsonl';
const source = { file: '/state/web-1.lock.json', backup: '/state/web-1.lock.json.backup', host: 'web-1' };
const base: Lockfile = { ...emptyLockfile('web-1'), serial: 7 };
const header: WalHeader = {
  wal: 1,
  lineage: base.lineage,
  baseSerial: 7,
  applyId: 'a1',
  planDigest: 'p',
  startedAt: '2026-01-01T00:00:00.000Z',
  pid: 1,
};
const batch = (seq: number, extra: Partial<WalBatch> = {}): WalBatch => ({
  seq,
  at: `2026-01-01T00:00:0${seq}.000Z`,
  ops: [{ op: 'auditHead.set', head: { seq, hash: String(seq).repeat(64) } }],
  ...extra,
});
const text = (...lines: Array<WalHeader | WalBatch>): string => lines.map(serializeWalLine).join('');

function corrupt(run: () => unknown): AgentvmError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(AgentvmError);
    expect((error as AgentvmError).code).toBe('state.corrupt');
    return error as AgentvmError;
  }
  throw new Error('expected state.corrupt');
}

describe('parseWal', () => {
  it('reads the header and the batches, and replays them on top of the base serial', () => {
    const wal = parseWal(text(header, batch(1), batch(2)), FILE);
    expect(wal).toMatchObject({ header, tornTail: false });
    expect(wal.batches.map((b) => b.seq)).toEqual([1, 2]);
    const lock = replayWal(base, wal, 'web-1');
    expect(lock).toMatchObject({ serial: 9, updatedAt: '2026-01-01T00:00:02.000Z', auditHead: { seq: 2 } });
    expect(base.serial).toBe(7); // the base is not changed
  });

  it.each([
    ['cut short', (t: string) => t.slice(0, -10)],
    ['cut short after its closing brace', (t: string) => t.slice(0, -1)],
    ['whole but with a wrong seq (never acknowledged)', (t: string) => t.replace('"seq":3', '"seq":5')],
    ['zero-filled by a power loss', (t: string) => t.slice(0, t.lastIndexOf('{')) + '\0'.repeat(40)],
  ])('GIVEN a last line %s THEN it is ignored', (_name, damage) => {
    const wal = parseWal(damage(text(header, batch(1), batch(2), batch(3))), FILE);
    expect(wal.tornTail).toBe(true);
    expect(wal.batches.map((b) => b.seq)).toEqual([1, 2]);
  });

  it.each([
    ['not JSON', (lines: string[]) => lines.with(2, '{"seq":2,'), /line 3 is invalid \(not a JSON object\)/],
    [
      'an unknown op',
      (lines: string[]) => lines.with(2, lines[2]!.replace('auditHead.set', 'auditHead.move')),
      /unknown op "auditHead.move"/,
    ],
    [
      'a value the lockfile schema refuses',
      (lines: string[]) => lines.with(2, lines[2]!.replace('"head":{"seq":2', '"head":{"seq":0')),
      /line 3 .*auditHead.set: `head`/,
    ],
    ['a missing batch', (lines: string[]) => lines.toSpliced(2, 1), /seq 3 where 2 was expected/],
  ])(
    'GIVEN a line with %s before the last one THEN state.corrupt names the line and the intact prefix',
    (_name, damage, problem) => {
      const lines = text(header, batch(1), batch(2), batch(3), batch(4)).split('\n');
      const error = corrupt(() => parseWal(damage(lines).join('\n'), FILE));
      expect(error.message).toContain(FILE);
      expect(error.message).toMatch(problem);
      expect(error.diagnostics[0]?.detail).toMatch(/head -n 2 /);
    },
  );

  it('GIVEN no header or a bad one THEN state.corrupt', () => {
    expect(corrupt(() => parseWal('', FILE)).message).toContain('no header');
    expect(
      corrupt(() => parseWal(serializeWalLine({ ...header, wal: 2 } as unknown as WalHeader), FILE)).message,
    ).toContain('format 2');
    expect(corrupt(() => parseWal(serializeWalLine({ ...header, baseSerial: -1 }), FILE)).message).toContain(
      'baseSerial',
    );
  });
});

describe('walStatus', () => {
  const wal = parseWal(text(header, batch(1), batch(2)), FILE);
  it('replays onto the base serial; treats a lockfile at or past the last batch as already checkpointed', () => {
    expect(walStatus(base, wal, source)).toBe('replay');
    expect(walStatus({ ...base, serial: 9 }, wal, source)).toBe('checkpointed');
    expect(walStatus({ ...base, serial: 10 }, wal, source)).toBe('checkpointed'); // a later writeLockfile on top
    expect(walStatus(null, parseWal(text({ ...header, baseSerial: 0 }, batch(1)), FILE), source)).toBe('replay');
  });

  it.each([
    ['a lockfile older than the base', { ...base, serial: 6 }, /older serial 6/],
    [
      'a lockfile between the base and the last batch',
      { ...base, serial: 8 },
      /between the WAL's base 7 and its last batch 9/,
    ],
    ['another lineage', { ...emptyLockfile('web-1'), serial: 7 }, /belongs to lineage/],
    ['no lockfile', null, /no lockfile/],
  ])('GIVEN %s THEN state.corrupt with the way out', (_name, lock, problem) => {
    const error = corrupt(() => walStatus(lock, wal, source));
    expect(error.message).toMatch(problem);
    expect(error.diagnostics[0]?.detail).toContain(`rm ${FILE}`);
  });
});

describe('journalOf', () => {
  it('lists done addresses in order (carried ones first) and failures not cleared by a later success', () => {
    const wal = parseWal(
      text(
        { ...header, resumedFrom: 'a0', done: ['x'], failed: [{ address: 'y', message: 'old' }] },
        batch(1, { failed: { address: 'z', message: 'health check failed' } }),
        batch(2, { done: 'y' }),
        batch(3, { done: 'x' }),
      ),
      FILE,
    );
    expect(journalOf(wal)).toEqual({
      applyId: 'a1',
      planDigest: 'p',
      startedAt: header.startedAt,
      pid: 1,
      completed: ['x', 'y'],
      failed: [{ address: 'z', message: 'health check failed' }],
      resumedFrom: 'a0',
    });
  });
});
