// Tests of the hash-chained audit log: append, tail, and verification against every kind of tampering.

import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import {
  appendAudit,
  auditHash,
  canonicalJson,
  GENESIS_HASH,
  tailAudit,
  verifyAuditLog,
  type AuditEntry,
  type AuditEvent,
} from './audit-log.js';

let dir: string;
let file: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'agentvm-audit-'));
  file = path.join(dir, 'log', 'audit.jsonl');
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function entry(i: number): AuditEntry {
  return {
    host: 'web-1',
    operation: 'apply',
    event: 'resource.apply',
    result: 'ok',
    address: `unit.research.p${i}`,
    action: 'update',
    before: { identity: `old-${i}`, digest: `sha256:${i}` },
    after: { identity: `new-${i}` },
    detail: `restarted profile p${i} — “ok”`,
    applyId: 'apply-1',
    actor: 'alice@box',
    time: new Date(Date.UTC(2026, 0, 1, 0, 0, i)),
  };
}

function appendN(n: number): AuditEvent[] {
  const out: AuditEvent[] = [];
  for (let i = 1; i <= n; i++) out.push(appendAudit(file, entry(i)));
  return out;
}

const lines = (): string[] => readFileSync(file, 'utf8').split('\n').slice(0, -1);
const writeLines = (ls: string[]): void => writeFileSync(file, `${ls.join('\n')}\n`);
const codes = async (expected?: Parameters<typeof verifyAuditLog>[1]): Promise<string[]> =>
  (await verifyAuditLog(file, expected)).diagnostics.map((d) => `${d.code} ${d.summary}`);

describe('appendAudit', () => {
  it('GIVEN 100 appends THEN the chain starts at 64 zeros, seq runs 1..100, and verify is ok', async () => {
    const records = appendN(100);
    expect(records[0]).toMatchObject({ seq: 1, prevHash: GENESIS_HASH });
    records.forEach((r, i) => {
      expect(r.seq).toBe(i + 1);
      if (i > 0) expect(r.prevHash).toBe(records[i - 1]!.hash);
    });
    expect(lines()).toHaveLength(100);
    const result = await verifyAuditLog(file, { seq: 100, hash: records[99]!.hash });
    expect(result).toEqual({ ok: true, records: 100, head: { seq: 100, hash: records[99]!.hash }, diagnostics: [] });
    expect(readdirSync(path.dirname(file))).toEqual(['audit.jsonl']); // the append lock is gone
  });

  it('hashes sha256(prevHash + canonical JSON without hash), independently recomputable', () => {
    const [r] = appendN(1);
    const { hash, ...rest } = r!;
    const sorted = Object.fromEntries(Object.entries(rest).sort(([a], [b]) => (a < b ? -1 : 1)));
    expect(hash).toBe(
      createHash('sha256')
        .update(GENESIS_HASH + canonicalJson(sorted))
        .digest('hex'),
    );
    expect(auditHash(r!)).toBe(hash);
    expect(canonicalJson({ b: [2, { d: 1, c: undefined }], a: 'x' })).toBe('{"a":"x","b":[2,{"d":1}]}');
  });

  it('writes only the typed fields: an extra property (say, a secret) never reaches the file', () => {
    const sneaky = { ...entry(1), password: 'hunter2', before: { identity: 'i', token: 'hunter2' } } as AuditEntry;
    appendAudit(file, sneaky);
    expect(readFileSync(file, 'utf8')).not.toContain('hunter2');
  });

  it('cuts a long detail and refuses a record that would not match the schema', () => {
    const r = appendAudit(file, { ...entry(1), detail: 'x'.repeat(5000) });
    expect(r.detail).toHaveLength(2000);
    expect(() => appendAudit(file, { ...entry(2), event: 'Not An Event!' })).toThrow(/invalid audit record/);
    expect(lines()).toHaveLength(1);
  });

  it('GIVEN a torn last line (a crashed write) THEN the next append cuts it off, records the cut in the chain, and the log verifies', async () => {
    const records = appendN(3);
    const torn = '{"seq":4,"time":"2026-01-0';
    appendFileSync(file, torn);
    const next = appendAudit(file, entry(4));
    // The repair record comes first (seq 4), then the caller's record, which is the one returned.
    expect(next).toMatchObject({ seq: 5, event: 'resource.apply' });
    const all = lines().map((l) => JSON.parse(l) as AuditEvent);
    expect(all.map((r) => r.event)).toEqual([
      'resource.apply',
      'resource.apply',
      'resource.apply',
      'audit.torn-tail-removed',
      'resource.apply',
    ]);
    expect(all[3]).toMatchObject({ seq: 4, prevHash: records[2]!.hash, result: 'ok' });
    expect(all[3]!.detail).toContain(`removed ${torn.length} byte(s)`);
    expect(all[3]!.detail).toContain(createHash('sha256').update(torn).digest('hex'));
    const result = await verifyAuditLog(file);
    expect(result).toMatchObject({ ok: true, records: 5, diagnostics: [] });
  });

  it('GIVEN a torn last line that happens to be a whole record but its newline THEN it is cut too (never acknowledged) and nothing chains onto it', async () => {
    appendN(2);
    const whole = lines()[1]!;
    const ls = lines();
    writeFileSync(file, `${ls[0]}\n${whole}`); // record 2 without its newline
    const next = appendAudit(file, entry(3));
    expect(next.seq).toBe(3);
    expect((await verifyAuditLog(file)).ok).toBe(true);
  });

  it('finds the last record across 64 KiB read chunks', () => {
    const big = 'y'.repeat(1900);
    for (let i = 1; i <= 80; i++) appendAudit(file, { ...entry(i), detail: big }); // ≈ 170 KiB
    expect(appendAudit(file, entry(81)).seq).toBe(81);
  });
});

describe('verifyAuditLog detects tampering', () => {
  it('GIVEN one byte of a record edited THEN hash mismatch names that line and seq, and nothing else', async () => {
    appendN(100);
    const ls = lines();
    ls[41] = ls[41]!.replace('new-42', 'new-43');
    writeLines(ls);
    expect(await codes()).toEqual([
      'audit.hash-mismatch audit.jsonl line 42 (seq 42) was edited: its hash does not match its content.',
    ]);
  });

  it('GIVEN an edited record with its hash recomputed THEN the next record no longer chains onto it', async () => {
    appendN(10);
    const ls = lines();
    const forged = JSON.parse(ls[4]!) as AuditEvent;
    forged.result = 'failed';
    forged.hash = auditHash(forged);
    ls[4] = JSON.stringify(forged);
    writeLines(ls);
    expect(await codes()).toEqual([
      'audit.chain-broken audit.jsonl line 6 (seq 6) does not chain onto the record before it (prevHash mismatch).',
    ]);
  });

  it('GIVEN a line deleted THEN the gap is reported at the line after it', async () => {
    appendN(100);
    const ls = lines();
    ls.splice(49, 1);
    writeLines(ls);
    expect(await codes()).toEqual([
      'audit.records-missing audit.jsonl line 50 (seq 51): record seq 50 is missing before it (deleted or moved).',
    ]);
  });

  it('GIVEN two lines swapped THEN the reordering is reported', async () => {
    appendN(100);
    const ls = lines();
    [ls[9], ls[10]] = [ls[10]!, ls[9]!];
    writeLines(ls);
    const found = await codes();
    expect(found).toEqual([
      'audit.records-missing audit.jsonl line 10 (seq 11): record seq 10 is missing before it (deleted or moved).',
      'audit.out-of-order audit.jsonl line 11 (seq 10) comes after seq 11: records were reordered or duplicated.',
    ]);
  });

  it('GIVEN the tail truncated WHEN verified with the head from the lockfile THEN truncation is reported', async () => {
    const records = appendN(100);
    const head = { seq: 100, hash: records[99]!.hash, label: 'lockfile of host web-1' };
    writeLines(lines().slice(0, 90));
    const result = await verifyAuditLog(file, [head]);
    expect(result.ok).toBe(false);
    expect(result.diagnostics.map((d) => `${d.code} ${d.summary}`)).toEqual([
      'audit.truncated audit.jsonl ends at seq 90, but lockfile of host web-1 recorded seq 100: records were cut from the end of the log.',
    ]);
    // Without the head, a clean cut at a line boundary is indistinguishable from a shorter log: that is why the
    // lockfile records it.
    expect((await verifyAuditLog(file)).ok).toBe(true);
    // Truncated to nothing at all:
    truncateSync(file, 0);
    expect(await codes(head)).toEqual([
      'audit.truncated audit.jsonl ends at seq 0, but lockfile of host web-1 recorded seq 100: records were cut from the end of the log.',
    ]);
  });

  it('GIVEN the log rewritten from the head on THEN the head mismatch is reported', async () => {
    const records = appendN(5);
    writeLines(lines().slice(0, 3));
    appendAudit(file, { ...entry(9), detail: 'a different history' });
    appendAudit(file, entry(10));
    // The rewritten log chains correctly on its own: only the head recorded in a lockfile exposes it.
    expect(await codes()).toEqual([]);
    expect(await codes({ seq: 3, hash: records[2]!.hash })).toEqual([]);
    expect(await codes({ seq: 5, hash: records[4]!.hash })).toEqual([
      'audit.head-mismatch Record seq 5 in audit.jsonl is not the one the lockfile recorded: the log was rewritten.',
    ]);
  });

  it('GIVEN a line reformatted without changing its content THEN it is reported as rewritten', async () => {
    appendN(3);
    const ls = lines();
    ls[1] = JSON.stringify(JSON.parse(ls[1]!), null, 1).replace(/\n/g, '');
    writeLines(ls);
    expect(await codes()).toEqual([
      'audit.non-canonical audit.jsonl line 2 (seq 2) is not written the way agentvm writes it (the line was rewritten).',
    ]);
  });

  it('GIVEN a record that breaks the schema or a blank line THEN invalid-line names them', async () => {
    appendN(3);
    const ls = lines();
    const bad = JSON.parse(ls[2]!) as Record<string, unknown>;
    bad.secretValue = 'x';
    ls[2] = JSON.stringify(bad);
    ls.splice(1, 0, '');
    writeLines(ls);
    const found = await codes();
    expect(found).toHaveLength(2);
    expect(found[0]).toMatch(/^audit\.invalid-line audit\.jsonl line 2 is not a JSON record/);
    expect(found[1]).toMatch(/^audit\.invalid-line audit\.jsonl line 4 \(seq 3\) is not a valid audit record/);
  });

  it('GIVEN no log THEN verify is ok with zero records', async () => {
    expect(await verifyAuditLog(file)).toEqual({ ok: true, records: 0, head: null, diagnostics: [] });
  });
});

describe('tailAudit', () => {
  it('returns the last n records oldest first, skipping malformed lines', () => {
    expect(tailAudit(file, 5)).toEqual([]);
    const records = appendN(20);
    appendFileSync(file, 'garbage\n');
    expect(tailAudit(file, 3)).toEqual(records.slice(17));
    expect(tailAudit(file, 100)).toEqual(records);
    expect(tailAudit(file, 0)).toEqual([]);
  });
});
