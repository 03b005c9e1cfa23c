// Every command's --json output is a contract (STYLE principle 6): the real, built CLI is run on a runnable copy of
// examples/fleet, and each stdout is checked against its schema in schemas/ with an independent JSON Schema
// validator. `job run` and `rehearse` need QEMU / systemd and are run by their own suites; here a minimal
// hand-built result of each is checked against its schema so that those schemas are exercised too.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Ajv2020 from 'ajv/dist/2020.js';
import { stateBackend } from '../src/app/plan.js';
import { agentvm, assertBuilt, hasStackTrace, ROOT } from './support/cli.js';
import { fleetCopy, type FleetCopy } from './support/fleet.js';

const SCHEMAS = join(ROOT, 'schemas');

function schemaValidator() {
  const ajv = new Ajv2020.default({ allErrors: true, strict: false });
  // ajv checks no formats by itself; the one our schemas use is RFC 3339 date-time, as toISOString() writes it.
  ajv.addFormat('date-time', /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/);
  for (const f of readdirSync(SCHEMAS).filter((f) => f.endsWith('.schema.json')))
    ajv.addSchema(JSON.parse(readFileSync(join(SCHEMAS, f), 'utf8')), f);
  // `audit tail --json` prints an array of audit events.
  ajv.addSchema(
    {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'array',
      items: { $ref: 'audit-event.schema.json' },
    },
    'audit-event-list',
  );
  return ajv;
}

const ajv = schemaValidator();

/** Parses stdout as one JSON document and checks it against `schema`; returns the document. */
function expectConforms(schema: string, stdout: string, what: string): unknown {
  let doc: unknown;
  try {
    doc = JSON.parse(stdout);
  } catch {
    throw new Error(`${what}: stdout is not one JSON document:\n${stdout.slice(0, 2000)}`);
  }
  const ok = ajv.validate(schema, doc);
  expect(
    ok,
    `${what} does not match schemas/${schema}: ${JSON.stringify(ajv.errors, null, 2)}\n${stdout.slice(0, 4000)}`,
  ).toBe(true);
  return doc;
}

interface Row {
  /** What the row runs, for the test name. */
  name: string;
  args: (f: FleetCopy) => string[];
  schema: string;
  exit: number;
  /** Extra facts about the document, so a row cannot pass on a trivially valid shape. */
  check?: (doc: never, f: FleetCopy) => void;
}

const H = ['--host', 'edge-1'];
const v2 = () => fleet.releases['orchestrator-v2']!;

// Order matters: the rows walk one fleet through apply → promote → apply so that a rollback target exists.
const ROWS: Row[] = [
  {
    name: 'validate',
    args: (f) => ['validate', '--repo', f.repo, '--json'],
    schema: 'validate-result.schema.json',
    exit: 0,
    check: (d: { valid: boolean }) => expect(d.valid).toBe(true),
  },
  {
    name: 'plan --json',
    args: (f) => ['plan', '--repo', f.repo, ...H, '--root', f.root, '--json'],
    schema: 'plan.schema.json',
    exit: 0,
    check: (d: { changes: unknown[] }) => expect(d.changes.length).toBeGreaterThan(0),
  },
  {
    name: 'apply --auto-approve --json',
    args: (f) => ['apply', '--repo', f.repo, ...H, '--root', f.root, '--auto-approve', '--json'],
    schema: 'apply-result.schema.json',
    exit: 0,
    check: (d: { status: string; applied: string[] }) => {
      expect(d.status).toBe('applied');
      expect(d.applied).toContain('release.research-orchestrator');
    },
  },
  {
    name: 'apply --auto-approve --json (nothing to do)',
    args: (f) => ['apply', '--repo', f.repo, ...H, '--root', f.root, '--auto-approve', '--json'],
    schema: 'apply-result.schema.json',
    exit: 0,
    check: (d: { status: string }) => expect(d.status).toBe('no-changes'),
  },
  {
    name: 'gate grant --json',
    args: (f) => [
      'gate',
      'grant',
      'agent-pool/dashboard',
      '--to',
      'alice@example.com',
      '--ttl',
      '30m',
      '--reason',
      'review the dashboard',
      '--root',
      f.root,
      '--json',
    ],
    schema: 'gate-grant-result.schema.json',
    exit: 0,
    check: (d: { grant: { preview: string } }) => expect(JSON.stringify(d)).toContain('agent-pool'),
  },
  {
    name: 'gate list --json',
    args: (f) => ['gate', 'list', '--root', f.root, '--json'],
    schema: 'gate-list-result.schema.json',
    exit: 0,
    check: (d: unknown) => expect(JSON.stringify(d)).toContain('alice@example.com'),
  },
  {
    name: 'gate revoke --all --json',
    args: (f) => ['gate', 'revoke', '--all', '--root', f.root, '--json'],
    schema: 'gate-revoke-result.schema.json',
    exit: 0,
  },
  {
    name: 'drift --json',
    args: (f) => ['drift', '--repo', f.repo, ...H, '--root', f.root, '--json'],
    schema: 'plan.schema.json',
    exit: 0,
  },
  {
    name: 'state show --json',
    args: (f) => ['state', 'show', 'edge-1', '--root', f.root, '--json'],
    schema: 'lockfile.schema.json',
    exit: 0,
    check: (d: { host: string }) => expect(d.host).toBe('edge-1'),
  },
  {
    name: 'promote --json (dry run)',
    args: (f) => [
      'promote',
      'research-orchestrator',
      '--repo',
      f.repo,
      '--to',
      'main',
      '--bundle',
      join(f.artifacts, v2().bundle),
      '--json',
    ],
    schema: 'promote-result.schema.json',
    exit: 0,
    check: (d: { committed: boolean; commit: unknown; to: string }) => {
      expect(d.committed).toBe(false);
      expect(d.commit).toBeNull();
      expect(d.to).toBe(v2().commit);
    },
  },
  {
    name: 'promote --yes --json',
    args: (f) => [
      'promote',
      'research-orchestrator',
      '--repo',
      f.repo,
      '--to',
      'main',
      '--bundle',
      join(f.artifacts, v2().bundle),
      '--yes',
      '--json',
    ],
    schema: 'promote-result.schema.json',
    exit: 0,
    check: (d: { committed: boolean; commit: string }, f) => {
      expect(d.committed).toBe(true);
      expect(d.commit).toBe(f.git('rev-parse', 'HEAD').trim());
    },
  },
  {
    name: 'apply --auto-approve --json (the promotion)',
    args: (f) => ['apply', '--repo', f.repo, ...H, '--root', f.root, '--auto-approve', '--json'],
    schema: 'apply-result.schema.json',
    exit: 0,
    check: (d: { applied: string[] }) => expect(d.applied).toContain('release.research-orchestrator'),
  },
  {
    name: 'rollback --json (dry run)',
    args: (f) => ['rollback', 'research-orchestrator', ...H, '--root', f.root, '--json'],
    schema: 'rollback-result.schema.json',
    exit: 0,
    check: (d: { applied: boolean; from: { identity: string }; to: { identity: string } }, f) => {
      expect(d.applied).toBe(false);
      expect(d.from.identity).toBe(v2().commit);
      expect(d.to.identity).toBe(f.releases['orchestrator-v1']!.commit);
    },
  },
  {
    name: 'state list --json',
    args: (f) => ['state', 'list', '--root', f.root, '--json'],
    schema: 'state-list-result.schema.json',
    exit: 0,
    check: (d: { hosts: Array<{ host: string; lease: unknown }> }) =>
      expect(d.hosts.map((h) => [h.host, h.lease])).toEqual([['edge-1', null]]),
  },
  {
    name: 'audit verify --json',
    args: (f) => ['audit', 'verify', '--root', f.root, '--json'],
    schema: 'audit-verify-result.schema.json',
    exit: 0,
    check: (d: { ok: boolean; records: number }) => {
      expect(d.ok).toBe(true);
      expect(d.records).toBeGreaterThan(0);
    },
  },
  {
    name: 'audit tail --json',
    args: (f) => ['audit', 'tail', '-n', '100', '--root', f.root, '--json'],
    schema: 'audit-event-list',
    exit: 0,
    check: (d: unknown[]) => expect(d.length).toBeGreaterThan(5),
  },
  {
    name: 'verify --json',
    args: () => [
      'verify',
      join(ROOT, 'examples/artifacts/agent-pool-1.0.0.tgz'),
      '--bundle',
      join(ROOT, 'examples/fleet/workloads/agent-pool/release.sigstore.json'),
      '--key',
      join(ROOT, 'examples/keys/example-signing.pub.pem'),
      '--json',
    ],
    schema: 'verify-result.schema.json',
    exit: 0,
    check: (d: { verified: boolean }) => expect(d.verified).toBe(true),
  },
  {
    name: 'plan --host nope --json (an error)',
    args: (f) => ['plan', '--repo', f.repo, '--host', 'nope', '--root', f.root, '--json'],
    schema: 'error.schema.json',
    exit: 1,
    check: (d: { error: { source: string } }) => expect(d.error.source).toBe('user'),
  },
];

let fleet: FleetCopy;

describe('every --json output of the real CLI matches its schema', () => {
  beforeAll(() => {
    assertBuilt();
    fleet = fleetCopy();
  });
  afterAll(() => fleet?.cleanup());

  for (const row of ROWS) {
    it(`${row.name} → schemas/${row.schema}`, async () => {
      const r = await agentvm(row.args(fleet));
      expect(
        r.code,
        `exit code of ${row.name}\nstdout: ${r.stdout.slice(0, 2000)}\nstderr: ${r.stderr.slice(0, 2000)}`,
      ).toBe(row.exit);
      expect(hasStackTrace(r.stdout + r.stderr), r.stderr).toBe(false);
      const doc = expectConforms(row.schema, r.stdout, row.name);
      row.check?.(doc as never, fleet);
    });
  }

  it('state list --json with a lease held, and state unlock --json → schemas/state-unlock-result.schema.json', async () => {
    const lease = await stateBackend(fleet.root).acquireLease('edge-1', 'json-contracts test', { renew: false });
    try {
      const list = await agentvm(['state', 'list', '--root', fleet.root, '--json']);
      expect(list.code, list.stderr).toBe(0);
      const listed = expectConforms('state-list-result.schema.json', list.stdout, 'state list with a lease') as {
        hosts: Array<{ lease: { id: string } | null }>;
      };
      const id = listed.hosts[0]?.lease?.id;
      expect(id).toBeTruthy();

      const unlock = await agentvm(['state', 'unlock', id!, '--host', 'edge-1', '--root', fleet.root, '--json']);
      expect(unlock.code, unlock.stderr).toBe(0);
      const record = expectConforms('state-unlock-result.schema.json', unlock.stdout, 'state unlock') as {
        id: string;
        operation: string;
        pid: number;
      };
      expect(record).toMatchObject({ id, operation: 'json-contracts test', pid: process.pid });
    } finally {
      lease.release();
    }
  });
});

describe('schemas of commands this suite cannot run (job run, rehearse) accept a minimal real-shaped result', () => {
  const diag = {
    code: 'job.exit-nonzero',
    severity: 'error',
    summary: 'The job exited with status 3.',
    address: 'job.research-orchestrator.nightly',
  };
  const jobRun = {
    formatVersion: 1,
    runId: '0123456789ab',
    address: 'job.research-orchestrator.nightly',
    host: 'edge-1',
    commit: 'a'.repeat(40),
    status: 'failed',
    exitCode: 3,
    accel: { accel: 'tcg', reason: '/dev/kvm is not available' },
    network: {
      netns: 'agentvm-job-0123456789ab',
      guestAddress: '10.213.0.2',
      gateway: '10.213.0.1',
      allowed: [{ protocol: 'tcp', guest: '10.213.0.1:443', upstream: '93.184.216.34:443' }],
    },
    resultFiles: [{ name: 'report.md', size: 12, sha256: 'b'.repeat(64) }],
    outDir: null,
    console: 'hello\n',
    bootMs: 812,
    durationMs: 2400,
    teardown: {
      runId: '0123456789ab',
      address: 'job.research-orchestrator.nightly.0123456789ab',
      reason: 'finished',
      killed: [],
      netns: 'agentvm-job-0123456789ab',
      netnsDeleted: true,
      tapDeleted: true,
      scratchRemoved: true,
      ok: true,
      problems: [],
      durationMs: 40,
    },
    diagnostics: [diag],
  };
  const rehearse = {
    formatVersion: 1,
    host: 'edge-1',
    workload: 'research-orchestrator',
    canary: 'unit.research-orchestrator.canary',
    from: { identity: 'c'.repeat(40), releaseId: 'c'.repeat(40) },
    to: { identity: 'd'.repeat(40), releaseId: 'd'.repeat(40) },
    result: 'passed',
    steps: [
      { step: 'install', address: 'release.research-orchestrator', ok: true, detail: 'installed' },
      { step: 'promote', address: 'unit.research-orchestrator.canary', ok: true, detail: 'active' },
      { step: 'rollback', address: 'unit.research-orchestrator.canary', ok: true, detail: 'active' },
      { step: 'restore', address: 'unit.research-orchestrator.canary', ok: true, detail: 'restored' },
    ],
    rehearsal: {
      rehearsedAt: '2026-01-01T00:00:00.000Z',
      fromIdentity: 'c'.repeat(40),
      toIdentity: 'd'.repeat(40),
      result: 'passed',
      applyId: '6f1c2a9e-0000-4000-8000-000000000000',
      detail: 'install ok',
    },
    diagnostics: [],
  };
  const cases: Array<[string, string, Record<string, unknown>]> = [
    ['job run (network, failed)', 'job-run-result.schema.json', jobRun],
    [
      'job run (no network, timed out)',
      'job-run-result.schema.json',
      {
        ...jobRun,
        status: 'timed-out',
        exitCode: null,
        network: null,
        bootMs: null,
        resultFiles: [],
        teardown: { ...jobRun.teardown, reason: 'timed-out', netns: null, netnsDeleted: false, tapDeleted: false },
      },
    ],
    ['rehearse', 'rehearse-result.schema.json', rehearse],
  ];

  it.each(cases)(
    '%s is accepted, and the same document with a stray field or a wrong enum is refused',
    (_name, schema, doc) => {
      expect(ajv.validate(schema, doc), JSON.stringify(ajv.errors)).toBe(true);
      expect(ajv.validate(schema, { ...doc, secret: 'x' })).toBe(false);
      expect(ajv.validate(schema, { ...doc, formatVersion: 2 })).toBe(false);
      const { diagnostics: _omitted, ...withoutDiagnostics } = doc;
      expect(ajv.validate(schema, withoutDiagnostics)).toBe(false);
    },
  );

  it('a job run with a bad teardown reason or a rehearsal step outside the vocabulary is refused', () => {
    expect(
      ajv.validate('job-run-result.schema.json', { ...jobRun, teardown: { ...jobRun.teardown, reason: 'gone' } }),
    ).toBe(false);
    expect(
      ajv.validate('rehearse-result.schema.json', {
        ...rehearse,
        steps: [{ step: 'reboot', address: 'x', ok: true, detail: '' }],
      }),
    ).toBe(false);
    expect(
      ajv.validate('rehearse-result.schema.json', {
        ...rehearse,
        rehearsal: { ...rehearse.rehearsal, result: 'maybe' },
      }),
    ).toBe(false);
    expect(
      ajv.validate('rehearse-result.schema.json', {
        ...rehearse,
        rehearsal: { ...rehearse.rehearsal, rehearsedAt: 'yesterday' },
      }),
    ).toBe(false);
  });
});
