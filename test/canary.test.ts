// Canary before promotion (issue 4 item 6), through the real CLI against a REAL systemd user manager: the new release
// goes to the canary profile first and must hold health for its soak time before the other profiles are touched
// (they depend on the canary's unit); a canary that fails its health check, or stops holding it during the soak, is
// rolled back and the other profiles are skipped (exit 3); and plan refuses a promotion that would skip the canary
// (`policy.canary-skipped`). `agentvm.yaml` tightens `moderate` to require a canary, so the promotions here are not
// also gated on a rehearsal (test/rehearse.test.ts covers that).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { assertBuilt } from './support/cli.js';
import {
  configFile,
  execdPid,
  freePort,
  gatewayRepo,
  getJson,
  hostFile,
  json,
  orchestratorFiles,
  V1,
  V2,
  verifyUnitDir,
  type GatewayRepo,
  type ProfileSpec,
} from './support/gateway-repo.js';
import { startUserManager, userManagerSupport, type UserManager } from './support/systemd-user.js';

const support = userManagerSupport();
const inCi = process.env.CI === 'true';
if (!support.ok && !inCi) console.warn(`canary: skipping: ${support.reason}. ${support.howTo}`);

describe('canary: a user manager is available in CI', () => {
  it.runIf(inCi)('the harness can start a user manager on this machine', () => {
    expect(support, support.ok ? '' : `${support.reason}. ${support.howTo}`).toEqual({ ok: true });
  });
});

interface ApplyJson {
  status: string;
  failed: Array<{ address: string; diagnostics: Array<{ code: string; severity: string }> }>;
  skipped: Array<{ address: string; reason: string }>;
}
interface PlanJson {
  applicable: boolean;
  changes: Array<{ address: string; action: string; dependsOn: string[] }>;
  diagnostics: Array<{ code: string; severity: string; address?: string; summary: string }>;
}

const SOAK = 2;
const CORE = 'agent-gateway@core.service';
const RESEARCH = 'agent-gateway@research.service';

describe.skipIf(!support.ok && !inCi)('canary before promotion, against a real user manager', () => {
  let m: UserManager;
  let g: GatewayRepo;
  let profiles: ProfileSpec[];
  const ports: Record<string, number> = {};
  const commitOrchestrator = (
    commit: typeof V1 | typeof V2,
    research: Record<string, string> = {},
    message = 'promote',
  ) =>
    g.repo.commitFiles(
      orchestratorFiles(
        {
          tier: 'moderate',
          commit,
          profiles: [profiles[0]!, { ...profiles[1]!, env: research }],
          canary: { profile: 'research', soakSeconds: SOAK },
        },
        g.secretsDir,
      ),
      message,
    );
  const releaseOf = async (profile: string) => (await getJson(ports[profile]!)).body.release;
  const startedAt = async (unit: string) =>
    Number((await m.show(unit, ['ExecMainStartTimestampMonotonic'])).ExecMainStartTimestampMonotonic);

  beforeAll(async () => {
    assertBuilt();
    m = await startUserManager();
    for (const p of ['core', 'research']) ports[p] = await freePort();
    profiles = [
      { name: 'core', port: ports.core! },
      { name: 'research', port: ports.research!, timeoutSeconds: 5 },
    ];
    g = await gatewayRepo('canary', m, (s) => ({
      ...configFile({ moderate: { canary: true } }),
      ...hostFile(['orchestrator']),
      ...orchestratorFiles(
        { tier: 'moderate', commit: V1, profiles, canary: { profile: 'research', soakSeconds: SOAK } },
        s,
      ),
    }));
  }, 120_000);

  afterAll(async () => {
    await m?.stop();
    await g?.cleanup();
  });

  it("GIVEN a canary WHEN planned THEN the other profiles' units depend on the canary's, and the first install applies", async () => {
    const plan = json<PlanJson>((await g.cli(['plan', '--json'])).stdout);
    // Every unit also waits for the host's egress proxy, its only way out and in (decisions/0016).
    expect(plan.changes.find((c) => c.address === 'unit.orchestrator.core')!.dependsOn).toEqual([
      'egress.server',
      'release.orchestrator',
      'unit.orchestrator.research',
    ]);
    expect(plan.changes.find((c) => c.address === 'unit.orchestrator.research')!.dependsOn).toEqual([
      'egress.server',
      'release.orchestrator',
    ]);
    const r = await g.cli(['apply', '--auto-approve']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).not.toContain('soaking'); // a first install is not a promotion
    expect(await releaseOf('core')).toBe('dev');
    expect(await releaseOf('research')).toBe('dev');
  });

  it('WHEN a new release is committed THEN the canary gets it first and soaks, and only then the other profile is restarted', async () => {
    await commitOrchestrator(V2);
    const t0 = Date.now();
    const r = await g.cli(['apply', '--auto-approve']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(SOAK * 1000);
    expect(r.stdout).toContain(`canary soaking for ${SOAK} s`);
    expect(r.stdout).toContain(`canary held health for ${SOAK} s`);
    expect(await releaseOf('research')).toBe('v2');
    expect(await releaseOf('core')).toBe('v2');
    // The other profile's process started after the canary's soak ended (monotonic µs of each exec).
    expect(await startedAt(CORE)).toBeGreaterThanOrEqual((await startedAt(RESEARCH)) + SOAK * 1_000_000);
    expect(await verifyUnitDir(m)).toEqual([]);
  });

  it('WHEN the canary fails its health check on the new release THEN it is rolled back, the other profile is skipped, apply exits 3', async () => {
    const corePid = await execdPid(m, CORE);
    await commitOrchestrator(V1, { AGENT_FAIL_HEALTH: '1' }, 'promote v1 with a canary that fails');
    const r = await g.cli(['apply', '--auto-approve', '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(3);
    const result = json<ApplyJson>(r.stdout);
    expect(result.failed.map((f) => f.address)).toEqual(['unit.orchestrator.research']);
    expect(result.failed[0]!.diagnostics.map((d) => d.code)).toEqual(
      expect.arrayContaining(['systemd.health-failed', 'systemd.rolled-back']),
    );
    expect(result.skipped).toEqual([
      { address: 'unit.orchestrator.core', reason: 'depends on unit.orchestrator.research, which did not apply' },
    ]);
    expect(await execdPid(m, CORE)).toBe(corePid);
    expect(await releaseOf('core')).toBe('v2');
    expect(await releaseOf('research')).toBe('v2'); // rolled back to what was applied
  });

  it('WHEN the canary stops holding health during its soak THEN it is rolled back (systemd.canary-failed) and the other profile is skipped', async () => {
    const corePid = await execdPid(m, CORE);
    await commitOrchestrator(V1, {}, 'promote v1 again');
    const running = g.cli(['apply', '--auto-approve', '--json']);
    // Wait for the canary to answer on the new release (its health check passed, the soak runs), then kill it.
    let killed = false;
    for (let i = 0; i < 400 && !killed; i++) {
      const release = await releaseOf('research').catch(() => undefined);
      if (release === 'dev') {
        await new Promise((res) => setTimeout(res, 400));
        process.kill(await execdPid(m, RESEARCH), 'SIGKILL');
        killed = true;
      } else {
        await new Promise((res) => setTimeout(res, 25));
      }
    }
    expect(killed).toBe(true);
    const r = await running;
    expect(r.code, r.stdout + r.stderr).toBe(3);
    const result = json<ApplyJson>(r.stdout);
    expect(result.failed.map((f) => f.address)).toEqual(['unit.orchestrator.research']);
    expect(result.failed[0]!.diagnostics.map((d) => d.code)).toEqual(
      expect.arrayContaining(['systemd.canary-failed', 'systemd.rolled-back']),
    );
    expect(result.skipped.map((s) => s.address)).toEqual(['unit.orchestrator.core']);
    expect(await execdPid(m, CORE)).toBe(corePid);
    expect(await releaseOf('research')).toBe('v2');
  });

  it('GIVEN the canary unit is gone from the host WHEN a promotion is planned THEN plan refuses it (policy.canary-skipped) and apply changes nothing', async () => {
    // Converge on v1 through the canary first (nothing fails now).
    const ok = await g.cli(['apply', '--auto-approve']);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(await releaseOf('core')).toBe('dev');
    const live = (await g.repo.git('rev-parse', 'HEAD')).trim();

    // The canary disappears from the host (stopped, its unit files deleted by hand); then v2 is committed.
    expect((await m.systemctl(['stop', RESEARCH])).code).toBe(0);
    rmSync(path.join(m.unitDir, `${RESEARCH}.d`), { recursive: true, force: true });
    expect((await m.systemctl(['daemon-reload'])).code).toBe(0);
    await commitOrchestrator(V2);
    const corePid = await execdPid(m, CORE);

    const plan = await g.cli(['plan', '--json']);
    expect(plan.code).toBe(1);
    const p = json<PlanJson>(plan.stdout);
    expect(p.applicable).toBe(false);
    const refusal = p.diagnostics.find((d) => d.code === 'policy.canary-skipped');
    expect(refusal, JSON.stringify(p.diagnostics)).toMatchObject({
      severity: 'error',
      address: 'release.orchestrator',
    });
    expect(refusal!.summary).toContain('`research` is not deployed');
    const apply = await g.cli(['apply', '--auto-approve']);
    expect(apply.code).toBe(1);
    expect(apply.stderr).toContain('policy.canary-skipped');
    expect(await execdPid(m, CORE)).toBe(corePid);

    // The fix the diagnostic names: apply the live commit (the canary comes back on v1), then promote through it.
    const back = await g.cli(['apply', '--auto-approve', '--ref', live]);
    expect(back.code, back.stdout + back.stderr).toBe(0);
    expect(await releaseOf('research')).toBe('dev');
    const promote = await g.cli(['apply', '--auto-approve']);
    expect(promote.code, promote.stdout + promote.stderr).toBe(0);
    expect(promote.stdout).toContain('canary held health');
    expect(await releaseOf('core')).toBe('v2');
    expect(await verifyUnitDir(m)).toEqual([]);
  });
});
