// A confined gateway unit runs the egress shim in front of the program (decisions/0016). Stopping it must hand the
// program exactly what stopping an unconfined unit would: one SIGTERM. With systemd's default KillMode=control-group
// the program got systemd's SIGTERM and the shim's forwarded copy; the reference orchestrator (Python, whose signal
// handler sets a threading.Event) deadlocked on the second one and every restart waited out the 90 s stop timeout.
// The probe (fixtures/signal-probe/probe.py) takes signals with sigwaitinfo and reports who sent each (si_pid): the
// shim, its parent, must be the only sender. It exits only when asked, so the test reads the record while the unit is
// stopping, by events, not by a delay.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt } from './support/cli.js';
import { freePort, gatewayRepo, getJson, type GatewayRepo } from './support/gateway-repo.js';
import { gitdir, type GitDir } from './support/gitdir.js';
import { startUserManager, userManagerSupport, type UserManager } from './support/systemd-user.js';

const support = userManagerSupport();
const inCi = process.env.CI === 'true';
if (!support.ok && !inCi) console.warn(`unit-stop: skipping: ${support.reason}. ${support.howTo}`);

const PROBE = readFileSync(path.join(__dirname, 'fixtures/signal-probe/probe.py'), 'utf8');
const UNIT = 'agent-gateway@sig.service';

interface Received {
  signal: number;
  pid: number;
  fromParent: boolean;
}

describe.skipIf(!support.ok && !inCi)('stopping a confined unit', () => {
  let m: UserManager;
  let g: GatewayRepo;
  let release: GitDir;
  let port = 0;

  beforeAll(async () => {
    assertBuilt();
    m = await startUserManager();
    port = await freePort();
    release = await gitdir({ 'probe.py': PROBE });
    g = await gatewayRepo('unit-stop', m, () => ({
      'hosts/gw.yaml':
        'apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: gw\nspec:\n  workloads:\n    - sig\n  systemd:\n    scope: user\n',
      'workloads/sig/contract.yaml':
        'apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadContract\nmetadata:\n  name: sig\nspec:\n  owner: sec@example.com\n  riskTier: low\n  substrate: service\n',
      'workloads/sig/manifest.yaml': `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadManifest\nmetadata:\n  name: sig\nspec:\n  archetype: git-release\n  source:\n    git:\n      repo: ${release.dir}\n      commit: ${release.commit}\n  profiles:\n    - name: sig\n      entrypoint: [python3, probe.py]\n      listen:\n        port: ${port}\n      health:\n        path: /healthz\n        timeoutSeconds: 30\n`,
    }));
    const r = await g.cli(['apply', '--auto-approve']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
  }, 180_000);

  /** Until the (re)started program answers: Type=simple units are active before their listener is. */
  const serving = async (): Promise<void> => {
    for (let i = 0; i < 600; i++) {
      if (
        await getJson(port, '/healthz').then(
          (r) => r.status === 200,
          () => false,
        )
      )
        return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('the probe never answered');
  };

  afterAll(async () => {
    await m?.stop();
    await g?.cleanup();
    await release?.cleanup();
  });

  it('WHEN the unit is stopped THEN its program is sent one SIGTERM, by the shim, and none by the manager', async () => {
    expect((await getJson(port, '/signals')).body).toEqual({ received: [] });
    expect(readFileSync(path.join(m.unitDir, `${UNIT}.d/50-agentvm.conf`), 'utf8')).toContain('KillMode=mixed');
    const stop = await m.systemctl(['stop', '--no-block', UNIT]);
    expect(stop.code, stop.stderr).toBe(0);
    // The stop is under way once the program has recorded a signal; the shim is still serving the inbound bridge.
    let received: Received[] = [];
    for (let i = 0; i < 600 && received.length === 0; i++) {
      received = (await getJson(port, '/signals')).body.received as Received[];
      if (received.length === 0) await new Promise((r) => setTimeout(r, 50));
    }
    expect((await m.show(UNIT, ['ActiveState'])).ActiveState).toBe('deactivating');
    expect(received).toEqual([{ signal: 15, pid: expect.any(Number), fromParent: true }]);
    expect(received[0]!.pid).not.toBe(m.managerPid);

    await getJson(port, '/exit');
    // Once the program exits, the shim exits as it did and the manager finishes the stop job.
    const done = await m.systemctl(['stop', UNIT]);
    expect(done.code, done.stderr).toBe(0);
    expect((await m.show(UNIT, ['ActiveState', 'Result'])).ActiveState).toBe('inactive');
  }, 120_000);

  it("WHEN the program ignores SIGTERM THEN the manager kills it at the unit's stop timeout and the restart completes", async () => {
    const start = await m.systemctl(['start', UNIT]);
    expect(start.code, start.stderr).toBe(0);
    await serving();
    expect((await getJson(port, '/signals')).body).toEqual({ received: [] });
    const before = await m.mainPid(UNIT);
    // The probe records SIGTERM and keeps running: only the stop timeout's SIGKILL ends it.
    expect((await m.show(UNIT, ['TimeoutStopUSec'])).TimeoutStopUSec).toBe('20s');
    const restart = await m.run(['systemctl', '--user', 'restart', UNIT], { timeoutMs: 180_000 });
    expect(restart.code, restart.stderr).toBe(0);
    expect(await m.mainPid(UNIT)).not.toBe(before);
    await serving();
    expect((await getJson(port, '/signals')).body).toEqual({ received: [] });
  }, 240_000);
});
