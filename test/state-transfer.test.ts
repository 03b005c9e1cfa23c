// `agentvm state migrate|push|pull` through the real CLI and a real throwaway PostgreSQL (issue 17): a host applied
// with local files moves into PostgreSQL with the same lineage, serial and audit chain (verbatim: the same hashes),
// plans against it with no changes, and comes back out into an empty root the same; a chain that diverged is refused
// and nothing is moved; a literal URL never shows in output.

import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { agentvm, hasStackTrace } from './support/cli.js';
import { fleetCopy, type FleetCopy } from './support/fleet.js';
import { fleetWithStore, sql, STATE_BACKENDS, type Store } from './support/state-backends.js';

const kind = STATE_BACKENDS.find((k) => k.name === 'postgres')!;

describe.skipIf(kind.skip)('state push and pull between the local files and PostgreSQL', () => {
  let fleet: FleetCopy;
  let store: Store;
  let url: string;
  fleetWithStore(kind, (f, s) => {
    fleet = f;
    store = s;
    url = kind.cluster()!.database();
  });

  it('migrate creates the schema once, --check reports it, and other commands refuse an unmigrated database', async () => {
    const env = { AGENTVM_PG_URL: url };
    const before = await agentvm(['state', 'list', '--root', fleet.root, '--json'], {
      env: { ...env, AGENTVM_STATE_BACKEND: 'postgres' },
    });
    expect(before.code).toBe(1);
    expect(JSON.parse(before.stdout).error.code).toBe('state.schema-outdated');
    expect((await agentvm(['state', 'migrate', '--check'], { env })).code).toBe(1);
    const first = await agentvm(['state', 'migrate', '--json'], { env });
    expect(first.code, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ from: 0, to: 2, applied: [{ version: 1 }, { version: 2 }] });
    expect(first.stdout).not.toContain(url);
    const again = await agentvm(['state', 'migrate', '--json'], { env });
    expect(JSON.parse(again.stdout)).toMatchObject({ from: 2, to: 2, applied: [] });
    expect((await agentvm(['state', 'migrate', '--check'], { env })).code).toBe(0);
  }, 120_000);

  it('push keeps lineage, serial and the audit chain verbatim; pull brings the same back into an empty root', async () => {
    const args = ['--repo', fleet.repo, '--host', 'edge-1', '--root', fleet.root];
    const applied = await agentvm(['apply', ...args, '--auto-approve']);
    expect(applied.code, applied.stderr).toBe(0);
    const localLock = JSON.parse(
      (await agentvm(['state', 'show', 'edge-1', '--root', fleet.root, '--json'])).stdout,
    ) as { lineage: string; serial: number };
    const localAudit = readFileSync(path.join(fleet.root, 'var/log/agentvm/audit.jsonl'), 'utf8').trim().split('\n');

    const push = await agentvm(['state', 'push', '--host', 'edge-1', '--root', fleet.root, '--json'], {
      env: store.env,
    });
    expect(push.code, push.stdout + push.stderr).toBe(0);
    expect(JSON.parse(push.stdout)).toMatchObject({
      direction: 'push',
      lineage: localLock.lineage,
      serial: localLock.serial,
      auditRecordsCopied: localAudit.length,
    });
    const remoteLines = (
      await sql(store.env.AGENTVM_PG_URL!, "SELECT line FROM agentvm_audit WHERE host = 'edge-1' ORDER BY seq")
    ).rows.map((r) => (r as { line: string }).line);
    expect(remoteLines).toEqual(localAudit);

    const pg = store.env;
    const shown = JSON.parse(
      (await agentvm(['state', 'show', 'edge-1', '--root', fleet.root, '--json'], { env: pg })).stdout,
    ) as { lineage: string; serial: number };
    expect(shown).toEqual(localLock);
    expect((await agentvm(['audit', 'verify', '--root', fleet.root], { env: pg })).code).toBe(0);
    const plan = await agentvm(['plan', ...args, '--detailed-exitcode'], { env: pg });
    expect(plan.code, plan.stdout + plan.stderr).toBe(0);
    // Pushing again moves nothing new.
    const twice = await agentvm(['state', 'push', '--host', 'edge-1', '--root', fleet.root, '--json'], { env: pg });
    expect(JSON.parse(twice.stdout)).toMatchObject({ auditRecordsCopied: 0 });

    // An apply through PostgreSQL extends the chain there; pull brings the whole history into an empty root.
    const more = await agentvm(
      ['state', 'unlock', '00000000-0000-4000-8000-000000000000', '--host', 'edge-1', '--root', fleet.root],
      { env: pg },
    );
    expect(more.code).toBe(1); // no lease to break: refused, and nothing audited for it
    const empty = mkdtempSync(path.join(os.tmpdir(), 'agentvm-pull-'));
    try {
      const pull = await agentvm(['state', 'pull', '--host', 'edge-1', '--root', empty, '--json'], { env: pg });
      expect(pull.code, pull.stdout + pull.stderr).toBe(0);
      expect(readFileSync(path.join(empty, 'var/log/agentvm/audit.jsonl'), 'utf8').trim().split('\n')).toEqual(
        remoteLines,
      );
      const pulled = JSON.parse((await agentvm(['state', 'show', 'edge-1', '--root', empty, '--json'])).stdout) as {
        lineage: string;
        serial: number;
      };
      expect(pulled).toEqual(localLock);
      expect((await agentvm(['audit', 'verify', '--root', empty])).code).toBe(0);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  }, 300_000);

  it('refuses to push a chain that diverged from the one in PostgreSQL, and moves nothing', async () => {
    const other = fleetCopy();
    try {
      const applied = await agentvm([
        'apply',
        '--repo',
        other.repo,
        '--host',
        'edge-1',
        '--root',
        other.root,
        '--auto-approve',
      ]);
      expect(applied.code, applied.stderr).toBe(0);
      const before = await sql(
        store.env.AGENTVM_PG_URL!,
        "SELECT count(*)::int AS n, max(hash) AS h FROM agentvm_audit WHERE host = 'edge-1'",
      );
      const push = await agentvm(['state', 'push', '--host', 'edge-1', '--root', other.root, '--json'], {
        env: store.env,
      });
      expect(push.code).toBe(1);
      expect(hasStackTrace(push.stdout + push.stderr)).toBe(false);
      expect(['state.audit-diverged', 'state.transfer-conflict']).toContain(JSON.parse(push.stdout).error.code);
      const after = await sql(
        store.env.AGENTVM_PG_URL!,
        "SELECT count(*)::int AS n, max(hash) AS h FROM agentvm_audit WHERE host = 'edge-1'",
      );
      expect(after.rows).toEqual(before.rows);
    } finally {
      other.cleanup();
    }
  }, 300_000);

  it('refuses a literal URL in agentvm.yaml, and never prints the URL', async () => {
    fleet.git('checkout', '-q', '-b', 'literal-url');
    const config = path.join(fleet.repo, 'agentvm.yaml');
    const text = readFileSync(config, 'utf8');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(
      config,
      text.replace(
        /^spec:\n/m,
        'spec:\n  state:\n    backend: postgres\n    url: postgresql://agentvm:hunter2@db.invalid/agentvm\n',
      ),
    );
    fleet.git('commit', '-qam', 'literal state url');
    const plan = await agentvm(['plan', '--repo', fleet.repo, '--host', 'edge-1', '--root', fleet.root, '--json']);
    expect(plan.code).toBe(1);
    expect(plan.stdout + plan.stderr).not.toContain('hunter2');
    expect(plan.stdout).toContain('config.state-url-literal');
    fleet.git('checkout', '-q', '-');
  }, 120_000);
});
