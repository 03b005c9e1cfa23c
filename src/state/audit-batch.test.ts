// Tests of the audit log's batch append path (the preview gate's group commit): the hand-written record check agrees
// with the schema's validator, the fast hashing and line forms equal the generic ones (canonicalJson, auditHash,
// serializeAuditRecord), and a log of thousands of gate records written in groups verifies.

import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  appendAudit,
  appendAuditBatch,
  auditHash,
  auditRecordProblem,
  serializeAuditRecord,
  verifyAuditLog,
  type AuditEntry,
  type AuditEvent,
} from './audit-log.js';
import { stateValidator } from './state-schemas.js';

let dir: string;
let file: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'agentvm-audit-batch-'));
  file = path.join(dir, 'audit.jsonl');
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function gateRequest(i: number): AuditEntry {
  const denied = i % 7 === 0;
  return {
    host: 'edge-1',
    operation: 'gate',
    event: 'gate.request',
    result: denied ? 'failed' : 'ok',
    actor: denied ? 'anonymous' : 'ana@example.com',
    time: new Date(Date.UTC(2026, 0, 1, 0, 0, 0, i)),
    gate: denied
      ? {
          preview: 'web/site',
          source: `127.0.0.1:${40000 + i}`,
          method: 'GET',
          path: `/p/web/site/${i}`,
          status: 401,
          reason: 'unknown session — “quoted”, \\ and \u2028',
        }
      : {
          preview: 'web/site',
          grantId: 'g-0123456789abcdef',
          identity: 'ana@example.com',
          source: `127.0.0.1:${40000 + i}`,
          method: 'GET',
          path: `/p/web/site/a%20b/${i}`,
          status: 200,
        },
  };
}

const everyKind: AuditEntry[] = [
  gateRequest(1),
  gateRequest(7),
  {
    host: 'edge-1',
    operation: 'gate',
    event: 'gate.grant',
    result: 'ok',
    actor: 'ops@box',
    gate: {
      preview: 'web/site',
      grantId: 'g-00000000000000ff',
      identity: 'ana@example.com',
      reason: 'review',
      expires: '2026-01-01T02:00:00.000Z',
    },
  },
  {
    host: 'web-1',
    operation: 'apply',
    event: 'resource.apply',
    result: 'ok',
    address: 'unit.research.p1',
    action: 'update',
    before: { identity: 'old', digest: 'sha256:1' },
    after: { digest: 'sha256:2' },
    detail: 'restarted — “ok” 😀',
    applyId: 'apply-1',
    actor: 'alice@box',
  },
  { host: 'web-1', operation: 'apply', event: 'apply.start', result: 'started', actor: 'alice@box' },
];

describe('appendAuditBatch', () => {
  it('GIVEN records of every shape THEN the line written is serializeAuditRecord(record) and its hash is auditHash(record)', () => {
    const records = appendAuditBatch(file, everyKind);
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(everyKind.length);
    records.forEach((r, i) => {
      expect(lines[i]).toBe(serializeAuditRecord(r));
      expect(r.hash).toBe(auditHash(r));
      expect(auditRecordProblem(r)).toBeUndefined();
    });
  });

  it('GIVEN 5,000 gate request records appended in groups of 512 between single appends THEN audit verify passes', async () => {
    let i = 0;
    while (i < 5000) {
      appendAuditBatch(
        file,
        Array.from({ length: 512 }, () => gateRequest(++i)),
      );
      appendAudit(file, everyKind[2]!); // a grant written by another process between two groups
    }
    const result = await verifyAuditLog(file);
    expect(result.diagnostics).toEqual([]);
    expect(result.records).toBe(i + Math.ceil(5000 / 512));
    expect(result.head?.seq).toBe(result.records);
  });

  it('GIVEN a torn last line THEN the next group cuts it off, records the cut first, chains on, and the log verifies', async () => {
    appendAuditBatch(file, everyKind);
    appendFileSync(file, '{"seq":6,"ti');
    const [first] = appendAuditBatch(file, [gateRequest(100), gateRequest(101)]);
    expect(first!.seq).toBe(everyKind.length + 2); // after the repair record
    const result = await verifyAuditLog(file);
    expect(result.diagnostics).toEqual([]);
    expect(result.records).toBe(everyKind.length + 3);
  });

  it('GIVEN an entry the schema refuses THEN the whole group is refused and nothing is written', () => {
    expect(() =>
      appendAuditBatch(file, [gateRequest(1), { ...gateRequest(2), gate: { preview: 'Web/Site' } }]),
    ).toThrow(/gate\.preview/);
    expect(readFileSync(file, 'utf8')).toBe('');
  });
});

describe('auditRecordProblem (the write-side check) agrees with the schema validator', () => {
  const validator = stateValidator('audit-event.schema.json');
  const valid: AuditEvent = appendAuditBatchInMemory();

  function appendAuditBatchInMemory(): AuditEvent {
    const d = mkdtempSync(path.join(os.tmpdir(), 'agentvm-audit-batch-'));
    try {
      return appendAuditBatch(path.join(d, 'a.jsonl'), [everyKind[3]!])[0]!;
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  }
  const gate = {
    preview: 'web/site',
    grantId: 'g-0123456789abcdef',
    identity: 'ana@example.com',
    source: '127.0.0.1:1',
    method: 'GET',
    path: '/p/web/site/',
    status: 200,
    reason: 'r',
    expires: '2026-01-01T00:00:00Z',
  };
  const mutations: Array<[string, Record<string, unknown>]> = [
    ['unknown field', { extra: 1 }],
    ['seq 0', { seq: 0 }],
    ['seq 1.5', { seq: 1.5 }],
    ['seq as text', { seq: '1' }],
    ['time without zone', { time: '2026-01-01T00:00:00' }],
    ['time as a date', { time: '2026-01-01' }],
    ['time month 13', { time: '2026-13-01T00:00:00Z' }],
    ['empty actor', { actor: '' }],
    ['actor 201 characters', { actor: 'a'.repeat(201) }],
    ['host with capitals', { host: 'Web-1' }],
    ['operation 101 characters', { operation: 'o'.repeat(101) }],
    ['event with a space', { event: 'apply start' }],
    ['empty address', { address: '' }],
    ['unknown action', { action: 'upgrade' }],
    ['unknown result', { result: 'maybe' }],
    ['before with an extra field', { before: { identity: 'x', secret: 'y' } }],
    ['after not an object', { after: 'x' }],
    ['detail 2001 characters', { detail: 'd'.repeat(2001) }],
    ['empty applyId', { applyId: '' }],
    ['prevHash in capitals', { prevHash: 'A'.repeat(64) }],
    ['short hash', { hash: 'a'.repeat(63) }],
    ['gate without preview', { gate: { status: 200 } }],
    ['gate with an unknown field', { gate: { ...gate, token: 'x' } }],
    ['gate preview not w/p', { gate: { ...gate, preview: 'web' } }],
    ['gate grantId malformed', { gate: { ...gate, grantId: 'g-123' } }],
    ['gate identity 321 characters', { gate: { ...gate, identity: 'i'.repeat(321) } }],
    ['gate source 101 characters', { gate: { ...gate, source: 's'.repeat(101) } }],
    ['gate method 21 characters', { gate: { ...gate, method: 'M'.repeat(21) } }],
    ['gate path 2001 characters', { gate: { ...gate, path: '/'.repeat(2001) } }],
    ['gate status 99', { gate: { ...gate, status: 99 } }],
    ['gate status 600', { gate: { ...gate, status: 600 } }],
    ['gate status 200.5', { gate: { ...gate, status: 200.5 } }],
    ['gate reason 501 characters', { gate: { ...gate, reason: 'r'.repeat(501) } }],
    ['gate expires not a date-time', { gate: { ...gate, expires: 'tomorrow' } }],
  ];
  const accepted: Array<[string, Record<string, unknown>]> = [
    ['as written', {}],
    ['time with an offset', { time: '2026-01-01T00:00:00+02:00' }],
    ['time with microseconds', { time: '2026-01-01T00:00:00.123456Z' }],
    ['every gate field', { gate }],
    ['gate with the preview only', { gate: { preview: 'web/site' } }],
    ['actor of 200 characters', { actor: 'a'.repeat(200) }],
  ];

  it.each(mutations)('refuses a record with %s, as the schema does', (_name, change) => {
    const record = { ...valid, ...change } as AuditEvent;
    expect(validator.safeParse(record).success).toBe(false);
    expect(auditRecordProblem(record)).toBeDefined();
  });

  it.each(accepted)('accepts a record %s, as the schema does', (_name, change) => {
    const record = { ...valid, ...change } as AuditEvent;
    expect(validator.safeParse(record).success).toBe(true);
    expect(auditRecordProblem(record)).toBeUndefined();
  });
});
