// A simulated fleet (issue 17): 50 hosts, each its own root and its own `agentvm agent` processes, one throwaway
// PostgreSQL. The repository declares two waves (canary: sim-01, sim-02; rest: sim-*). Everything is driven by events
// and counts, never by time:
// - a new commit reaches the rest only after both canaries applied it healthily; a canary killed mid-apply (SIGKILL at
//   its 2nd durable step) holds the rest back until its next run resumes the apply; then all 50 converge;
// - a commit whose canary fails its health check stops the rollout: the rest wait, and `fleet status` names the
//   host and the reason.
// Affordable on 2 cores: one small workload per host, at most 4 agents at once.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { agentvm, assertBuilt, type CliResult } from './support/cli.js';
import { fleetCopy, type FleetCopy } from './support/fleet.js';
import { sql, STATE_BACKENDS, type Store } from './support/state-backends.js';

const kind = STATE_BACKENDS.find((k) => k.name === 'postgres')!;
const HOSTS = Array.from({ length: 50 }, (_, i) => `sim-${String(i + 1).padStart(2, '0')}`);
const CANARIES = ['sim-01', 'sim-02'];
const REST = HOSTS.filter((h) => !CANARIES.includes(h));
const HEALTH = 'test ! -e "$AGENTVM_ROOT/unhealthy" || { echo "canary probe failed: HTTP 503"; exit 1; }';

interface Report {
  host: string;
  status: string;
  commit: string | null;
  target: string | null;
  reason?: string;
  health: { ok: boolean; reason?: string };
}

describe.skipIf(kind.skip)('50 simulated hosts converge through rollout waves', () => {
  let fleet: FleetCopy;
  let store: Store;
  const root = (h: string) => path.join(fleet.base, 'roots', h);
  const agent = (host: string, env: NodeJS.ProcessEnv = {}): Promise<CliResult> =>
    agentvm(
      [
        'agent',
        '--repo',
        fleet.repo,
        '--ref',
        'main',
        '--host',
        host,
        '--root',
        root(host),
        '--health-check',
        HEALTH,
        '--concurrency',
        '1',
        '--json',
      ],
      { env: { ...store.env, ...env }, timeoutMs: 300_000 },
    );
  const report = (r: CliResult): Report => {
    try {
      return JSON.parse(r.stdout) as Report;
    } catch {
      throw new Error(`not a report (exit ${r.code}, ${r.signal}): ${r.stdout}${r.stderr}`);
    }
  };
  /** Runs the agents of `hosts`, at most 4 at once; returns their reports by host. */
  const agents = async (hosts: string[]): Promise<Map<string, Report>> => {
    const out = new Map<string, Report>();
    const queue = [...hosts];
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (let h = queue.shift(); h; h = queue.shift()) out.set(h, report(await agent(h)));
      }),
    );
    return out;
  };
  const commitEnv = (value: string): string => {
    const manifest = path.join(fleet.repo, 'workloads/docs-helper/manifest.yaml');
    const text = readFileSync(manifest, 'utf8');
    writeFileSync(
      manifest,
      /ROLLOUT: /.test(text)
        ? text.replace(/ROLLOUT: "[^"]*"/, `ROLLOUT: "${value}"`)
        : text.replace(/env:\n/, `env:\n        ROLLOUT: "${value}"\n`),
    );
    fleet.git('commit', '-qam', `rollout ${value}`);
    return fleet.git('rev-parse', 'HEAD').trim();
  };
  const status = async () => {
    const r = await agentvm(['fleet', 'status', '--root', fleet.root, '--json'], { env: store.env });
    expect(r.code, r.stderr).toBe(0);
    return new Map(
      (
        JSON.parse(r.stdout) as {
          hosts: Array<{
            host: string;
            commit: string | null;
            healthy: boolean | null;
            status: string;
            reason: string | null;
          }>;
        }
      ).hosts.map((h) => [h.host, h]),
    );
  };

  beforeAll(async () => {
    assertBuilt();
    kind.setup();
    fleet = fleetCopy();
    store = await kind.store(fleet.root);
    // The fleet: 50 hosts running one small workload, and two waves.
    rmSync(path.join(fleet.repo, 'hosts'), { recursive: true, force: true });
    mkdirSync(path.join(fleet.repo, 'hosts'));
    for (const h of HOSTS) {
      writeFileSync(
        path.join(fleet.repo, 'hosts', `${h}.yaml`),
        `apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: ${h}\nspec:\n  workloads:\n    - docs-helper\n  systemd:\n    scope: system\n`,
      );
    }
    const config = path.join(fleet.repo, 'agentvm.yaml');
    writeFileSync(
      config,
      readFileSync(config, 'utf8').replace(
        /^spec:\n/m,
        `spec:\n  rollout:\n    waves:\n      - name: canary\n        hosts: [${CANARIES.join(', ')}]\n      - name: rest\n        hosts: ["sim-*"]\n`,
      ),
    );
    fleet.git('add', '-A');
    fleet.git('commit', '-qm', 'a fleet of 50 with two waves');
  }, 60_000);
  afterAll(async () => {
    await store?.close();
    fleet?.cleanup();
    kind.teardown();
  });

  it('rolls a commit out canaries first; a canary killed mid-apply holds the rest until it resumes; all 50 converge', async () => {
    // The first commit: canaries, then everyone.
    const first = fleet.git('rev-parse', 'HEAD').trim();
    for (const [h, r] of await agents(CANARIES)) expect(r.status, `${h}: ${r.reason}`).toBe('applied');
    for (const [h, r] of await agents(REST)) expect(r.status, `${h}: ${r.reason}`).toBe('applied');
    expect([...(await status()).values()].filter((h) => h.commit === first)).toHaveLength(50);

    // A new commit: the rest wait for the canaries.
    const second = commitEnv('2');
    for (const [h, r] of await agents(['sim-03', 'sim-30'])) {
      expect(r.status, h).toBe('waiting');
      expect(r.reason).toMatch(/waiting for wave canary: host sim-0[12] has not applied/);
      expect(r.commit).toBe(first);
    }
    expect((await agents(['sim-01'])).get('sim-01')!.status).toBe('applied');
    // sim-02 is killed at its 2nd durable step (its unit changed, not yet recorded): no report, the rollout waits for it.
    const killed = await agent('sim-02', { AGENTVM_FAULT_KILL_AFTER: '2' });
    expect(killed.signal).toBe('SIGKILL');
    const held = (await agents(['sim-04'])).get('sim-04')!;
    expect(held.status).toBe('waiting');
    expect(held.reason).toMatch(/host sim-02 has not applied/);
    // Its next run resumes the interrupted apply, and the rest follow.
    const again = (await agents(['sim-02'])).get('sim-02')!;
    expect(['applied', 'no-changes'], again.reason).toContain(again.status);
    expect(again.commit).toBe(second);
    const resumed = await sql(
      store.env.AGENTVM_PG_URL!,
      'SELECT count(*)::int AS n FROM agentvm_audit WHERE host = \'sim-02\' AND line LIKE \'%"event":"apply.resume"%\'',
    );
    expect((resumed.rows[0] as { n: number }).n).toBe(1);
    for (const [h, r] of await agents(REST)) expect(r.status, `${h}: ${r.reason}`).toBe('applied');
    const converged = await status();
    expect(
      [...converged.values()]
        .filter((h) => h.commit === second && h.healthy === true)
        .map((h) => h.host)
        .sort(),
    ).toEqual(HOSTS);
    const verify = await agentvm(['audit', 'verify', '--root', fleet.root], { env: store.env });
    expect(verify.code, verify.stdout).toBe(0);
  }, 1_800_000);

  it('a canary that fails its health check stops the rollout; fleet status names the host and the reason', async () => {
    const third = commitEnv('3');
    writeFileSync(path.join(root('sim-01'), 'unhealthy'), '');
    const canary = await agent('sim-01');
    expect(canary.code).toBe(3);
    const c = report(canary);
    expect(c.commit).toBe(third);
    expect(c.health).toMatchObject({ ok: false, reason: expect.stringContaining('canary probe failed: HTTP 503') });
    for (const [h, r] of await agents(['sim-10', 'sim-20'])) {
      expect(r.status, h).toBe('waiting');
      expect(r.reason).toMatch(/stopped at wave canary: host sim-01 unhealthy: .*canary probe failed: HTTP 503/);
    }
    const view = await status();
    expect(view.get('sim-01')).toMatchObject({
      healthy: false,
      reason: expect.stringContaining('canary probe failed'),
    });
    expect(view.get('sim-10')).toMatchObject({
      status: 'waiting',
      reason: expect.stringContaining('host sim-01 unhealthy'),
    });
    const text = await agentvm(['fleet', 'status', '--root', fleet.root], { env: store.env });
    expect(text.stdout).toMatch(/sim-01\t.*UNHEALTHY/);
    expect(text.stdout).toMatch(/sim-10\t.*stopped at wave canary: host sim-01/);
  }, 600_000);
});
