// Every command that reads or writes a host's state follows the repository's choice of backend (ADR 0017), not only
// plan and apply: with `spec.state: {backend: postgres}` in agentvm.yaml and nothing but the URL's variable in the
// environment, `drift` reads the lockfile apply wrote to PostgreSQL (a hand edit under the root is drift, exit 2), and
// `rollback`, `rehearse` and `job run` take the same flags. Without this, drift read the empty local files and said
// "no drift" about a host whose unit had been edited. Real PostgreSQL (a throwaway cluster), the bundled example.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { agentvm, assertBuilt } from './support/cli.js';
import { fleetCopy, type FleetCopy } from './support/fleet.js';
import { sql, STATE_BACKENDS, type Store } from './support/state-backends.js';

const kind = STATE_BACKENDS.find((k) => k.name === 'postgres')!;

describe.skipIf(kind.skip)("commands follow the repository's state backend", () => {
  let fleet: FleetCopy;
  let store: Store;
  let env: Record<string, string>;
  const withRepo = (args: string[]) => [...args, '--repo', fleet.repo, '--host', 'edge-1', '--root', fleet.root];

  beforeAll(async () => {
    assertBuilt();
    kind.setup();
    fleet = fleetCopy();
    store = await kind.store(fleet.root);
    // Only the URL's variable: the backend comes from the repository.
    env = { AGENTVM_PG_URL: store.env.AGENTVM_PG_URL! };
    const config = path.join(fleet.repo, 'agentvm.yaml');
    writeFileSync(
      config,
      `${readFileSync(config, 'utf8')}  state:\n    backend: postgres\n    url: env:AGENTVM_PG_URL\n`,
    );
    fleet.git('commit', '-qam', 'state in PostgreSQL');
  }, 60_000);
  afterAll(async () => {
    await store?.close();
    fleet?.cleanup();
    kind.teardown();
  });

  it('apply records in PostgreSQL; drift reads it there and names a hand-edited unit', async () => {
    const applied = await agentvm(withRepo(['apply', '--auto-approve']), { env, timeoutMs: 120_000 });
    expect(applied.code, applied.stdout + applied.stderr).toBe(0);
    const rows = await sql(env.AGENTVM_PG_URL!, "SELECT count(*)::int AS n FROM agentvm_audit WHERE host = 'edge-1'");
    expect((rows.rows[0] as { n: number }).n).toBeGreaterThan(0);
    expect(existsSync(path.join(fleet.root, 'var/lib/agentvm/state/edge-1.lock.json'))).toBe(false);

    const clean = await agentvm(withRepo(['drift', '--json']), { env });
    expect(clean.code, clean.stdout + clean.stderr).toBe(0);

    const unitDir = path.join(fleet.root, 'etc/systemd/system');
    const dropIn = readdirSync(unitDir, { recursive: true, encoding: 'utf8' }).find((f) =>
      f.endsWith('50-agentvm.conf'),
    )!;
    const file = path.join(unitDir, dropIn);
    writeFileSync(file, readFileSync(file, 'utf8').replace('[Service]\n', '[Service]\nEnvironment=AGENT_DEBUG=1\n'));
    const drift = await agentvm(withRepo(['drift', '--json']), { env });
    expect(drift.code, drift.stdout + drift.stderr).toBe(2);
    const report = JSON.parse(drift.stdout) as { drift: Array<{ address: string }> };
    expect(report.drift.map((d) => d.address)).toHaveLength(1);
    expect(report.drift[0]!.address).toMatch(/^unit\./);
  }, 180_000);

  it('rollback, rehearse and job run take the state flags (help shows them)', async () => {
    for (const command of [['rollback'], ['rehearse'], ['job', 'run']]) {
      const help = await agentvm([...command, '--help']);
      expect(help.stdout, command.join(' ')).toContain('--state-backend');
    }
    // rollback with the flag reads PostgreSQL: the host's state is there, the workload has no rollback target yet.
    const rollback = await agentvm(
      ['rollback', 'research-orchestrator', '--host', 'edge-1', '--root', fleet.root, '--state-backend', 'postgres'],
      { env },
    );
    expect(rollback.code).toBe(1);
    expect(rollback.stdout + rollback.stderr).toContain('rollback.no-target');
    // The same command on the local files finds nothing applied at all.
    const local = await agentvm(
      ['rollback', 'research-orchestrator', '--host', 'edge-1', '--root', fleet.root, '--state-backend', 'local'],
      { env },
    );
    expect(local.stdout + local.stderr).toContain('rollback.no-state');
  });
});
