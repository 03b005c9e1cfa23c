// Pull mode and remote plans (issue 17), real CLI + real throwaway PostgreSQL: `agentvm agent` applies its host and
// publishes its facts; a pull-request plan of the next commit made with NO access to the host (an empty root on
// another "machine") matches the plan made on the host for the same commit — same changes, drift, lock, live
// fingerprint, even the same content id — says how old its facts are, and is refused by apply. A secret the host
// holds appears nowhere in PostgreSQL (facts, audit, lockfile); `fleet plan` sums the commit up across hosts.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { agentvm, assertBuilt, hasStackTrace } from './support/cli.js';
import { fleetCopy, type FleetCopy } from './support/fleet.js';
import { sql, STATE_BACKENDS, type Store } from './support/state-backends.js';
import Ajv2020 from 'ajv/dist/2020.js';
import { ROOT } from './support/cli.js';

/** Checks a --json document against its published schema (an independent validator, like json-contracts.test.ts). */
function expectSchema(schema: string, doc: unknown): void {
  const ajv = new Ajv2020.default({ allErrors: true, strict: false });
  ajv.addFormat('date-time', /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/);
  const ok = ajv.validate(JSON.parse(readFileSync(path.join(ROOT, 'schemas', schema), 'utf8')), doc);
  expect(ok, `${schema}: ${JSON.stringify(ajv.errors)}`).toBe(true);
}

const kind = STATE_BACKENDS.find((k) => k.name === 'postgres')!;

interface PlanJson {
  id: string;
  host: string;
  lock: unknown;
  liveFingerprint: string;
  changes: unknown[];
  drift: unknown[];
  diagnostics: unknown[];
  summary: { update: number; create: number };
  remote?: { publishedAt: string; ageSeconds: number; appliedCommit: string | null };
}

describe.skipIf(kind.skip)('agent publishes; a pull-request plan needs no access to the host', () => {
  let fleet: FleetCopy;
  let store: Store;
  let elsewhere: string;
  beforeAll(async () => {
    assertBuilt();
    kind.setup();
    fleet = fleetCopy();
    store = await kind.store(fleet.root);
    elsewhere = mkdtempSync(path.join(os.tmpdir(), 'agentvm-pr-bot-'));
  }, 60_000);
  afterAll(async () => {
    await store?.close();
    fleet?.cleanup();
    rmSync(elsewhere, { recursive: true, force: true });
    kind.teardown();
  });

  it('the remote plan of the next commit equals the on-host plan, says how old it is, and cannot be applied', async () => {
    // A secret the host holds (the reference research-orchestrator's contract names): it must never be published.
    const SECRET = 'sk-live-4f9a2c7e-never-publish-me';
    mkdirSync(path.join(fleet.root, 'etc/agentvm/secrets'), { recursive: true });
    writeFileSync(path.join(fleet.root, 'etc/agentvm/secrets/research-llm-api-key'), SECRET, { mode: 0o600 });
    const run = await agentvm(
      ['agent', '--repo', fleet.repo, '--ref', 'main', '--host', 'edge-1', '--root', fleet.root, '--json'],
      { env: store.env, timeoutMs: 300_000 },
    );
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const report = JSON.parse(run.stdout) as {
      status: string;
      commit: string;
      target: string;
      health: { ok: boolean };
    };
    expect(report.status).toBe('applied');
    expect(report.commit).toBe(report.target);
    expectSchema('agent-result.schema.json', report);
    const fleet1 = await agentvm(['fleet', 'status', '--root', elsewhere, '--json'], { env: store.env });
    expect(fleet1.code, fleet1.stderr).toBe(0);
    const view = JSON.parse(fleet1.stdout) as { hosts: Array<{ host: string; commit: string; healthy: boolean }> };
    expectSchema('fleet-status-result.schema.json', view);
    expect(view.hosts).toEqual([expect.objectContaining({ host: 'edge-1', commit: report.commit, healthy: true })]);

    // The facts hold the provider reads a remote plan needs.
    const facts = (
      await sql(store.env.AGENTVM_PG_URL!, "SELECT facts::text AS f FROM agentvm_facts WHERE host = 'edge-1'")
    ).rows[0] as { f: string };
    expect(JSON.parse(facts.f).reads.live.length).toBeGreaterThan(3);
    const published = (
      await sql(
        store.env.AGENTVM_PG_URL!,
        "SELECT (SELECT string_agg(facts::text, '') FROM agentvm_facts) || (SELECT string_agg(line, '') FROM agentvm_audit) || (SELECT string_agg(coalesce(lockfile::text, ''), '') FROM agentvm_hosts) AS t",
      )
    ).rows[0] as { t: string };
    expect(published.t.length).toBeGreaterThan(1000);
    expect(published.t).not.toContain(SECRET);

    // A pull request: the next commit changes a workload's environment.
    const manifest = path.join(fleet.repo, 'workloads/agent-pool/manifest.yaml');
    writeFileSync(manifest, readFileSync(manifest, 'utf8').replace(/(env:\n)/, '$1        PR_CHANGE: "1"\n'));
    fleet.git('commit', '-qam', 'a pull request');
    const next = fleet.git('rev-parse', 'HEAD').trim();

    const onHost = await agentvm(
      ['plan', '--repo', fleet.repo, '--ref', next, '--host', 'edge-1', '--root', fleet.root, '--format', 'json'],
      { env: store.env },
    );
    expect(onHost.code, onHost.stderr).toBe(0);
    const remote = await agentvm(
      [
        'plan',
        '--repo',
        fleet.repo,
        '--ref',
        next,
        '--host',
        'edge-1',
        '--remote',
        '--root',
        elsewhere,
        '--format',
        'json',
        '--out',
        path.join(elsewhere, 'pr.plan.json'),
      ],
      { env: store.env },
    );
    expect(remote.code, remote.stderr).toBe(0);
    const a = JSON.parse(onHost.stdout) as PlanJson;
    const b = JSON.parse(remote.stdout) as PlanJson;
    expect(a.summary.update + a.summary.create).toBeGreaterThan(0);
    for (const k of ['changes', 'drift', 'lock', 'liveFingerprint', 'diagnostics', 'summary', 'id'] as const)
      expect(b[k], k).toEqual(a[k]);
    expect(a.remote).toBeUndefined();
    expect(b.remote?.appliedCommit).toBe(report.commit);
    expect(b.remote?.ageSeconds).toBeGreaterThanOrEqual(0);

    const text = await agentvm(
      ['plan', '--repo', fleet.repo, '--ref', next, '--host', 'edge-1', '--remote', '--root', elsewhere],
      { env: store.env },
    );
    expect(text.stdout).toMatch(/Remote plan of edge-1: made from the live state it published at .* \(\d+ s ago/);
    const md = await agentvm(
      [
        'plan',
        '--repo',
        fleet.repo,
        '--ref',
        next,
        '--host',
        'edge-1',
        '--remote',
        '--root',
        elsewhere,
        '--format',
        'markdown',
      ],
      { env: store.env },
    );
    expect(md.stdout).toMatch(/^> Remote plan of edge-1/);

    // Nothing but the host applies: the remote plan file is refused, and nothing was written on this machine's root.
    const apply = await agentvm(['apply', path.join(elsewhere, 'pr.plan.json'), '--root', elsewhere, '--json'], {
      env: store.env,
    });
    expect(apply.code).toBe(1);
    expect(hasStackTrace(apply.stdout + apply.stderr)).toBe(false);
    expect(JSON.parse(apply.stdout).error.code).toBe('apply.remote-plan');

    // The fleet's view of the commit: edge-1 changes; edge-2 never published; --exclude leaves a host out.
    const fleetPlan = await agentvm(
      ['fleet', 'plan', '--repo', fleet.repo, '--ref', next, '--root', elsewhere, '--json'],
      { env: store.env },
    );
    expect(fleetPlan.code, fleetPlan.stderr).toBe(0);
    expect(JSON.parse(fleetPlan.stdout)).toMatchObject({
      commit: next,
      changing: ['edge-1'],
      unpublished: ['edge-2'],
      worstAction: b.summary.update ? 'update' : 'create',
    });
    const without = await agentvm(
      ['fleet', 'plan', '--repo', fleet.repo, '--ref', next, '--root', elsewhere, '--exclude', 'edge-1', '--json'],
      { env: store.env },
    );
    expect((JSON.parse(without.stdout) as { hosts: Array<{ host: string }> }).hosts.map((h) => h.host)).toEqual([
      'edge-2',
    ]);

    // A host that never published cannot be planned remotely; it says how to fix it.
    const unknown = await agentvm(
      ['plan', '--repo', fleet.repo, '--ref', next, '--host', 'edge-2', '--remote', '--root', elsewhere, '--json'],
      { env: store.env },
    );
    expect(unknown.code).toBe(1);
    expect(JSON.parse(unknown.stdout).error.code).toBe('plan.no-published-facts');
  }, 600_000);
});
