// Tested rollback (issue 4 item 6), through the real CLI against a REAL systemd user manager: a `high` service's
// promotion is refused at plan time until `agentvm rehearse` recorded a passed rehearsal of exactly that pair
// (`policy.rollback-not-rehearsed`); the rehearsal touches only the canary profile (new release, health, back to the
// live release, health), leaves no drift, and is recorded in the lockfile and the audit log; a failed rehearsal is
// recorded as failed and keeps the promotion refused.

import { readlinkSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, hasStackTrace } from './support/cli.js';
import {
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
if (!support.ok && !inCi) console.warn(`rehearse: skipping: ${support.reason}. ${support.howTo}`);

describe('rehearse: a user manager is available in CI', () => {
  it.runIf(inCi)('the harness can start a user manager on this machine', () => {
    expect(support, support.ok ? '' : `${support.reason}. ${support.howTo}`).toEqual({ ok: true });
  });
});

interface PlanJson {
  applicable: boolean;
  diagnostics: Array<{ code: string; severity: string; address?: string; summary: string }>;
}
interface RehearseJson {
  result: 'passed' | 'failed';
  canary: string;
  from: { identity: string; releaseId: string };
  to: { identity: string; releaseId: string };
  steps: Array<{ step: string; ok: boolean; detail: string }>;
}
interface LockJson {
  workloads: Record<
    string,
    {
      release: { identity: string };
      rehearsals?: Array<{ fromIdentity: string; toIdentity: string; result: string; applyId?: string }>;
    }
  >;
}

const CORE = 'agent-gateway@core.service';
const RESEARCH = 'agent-gateway@research.service';

// Each step drives real units through health checks and soaks; on a loaded machine some take over a minute.
describe.skipIf(!support.ok && !inCi)(
  'tested rollback before promotion, against a real user manager',
  { timeout: 180_000 },
  () => {
    let m: UserManager;
    let g: GatewayRepo;
    let profiles: ProfileSpec[];
    const ports: Record<string, number> = {};
    const commitOrchestrator = (commit: typeof V1 | typeof V2, research: Record<string, string> = {}) =>
      g.repo.commitFiles(
        orchestratorFiles(
          {
            tier: 'high',
            commit,
            profiles: [profiles[0]!, { ...profiles[1]!, env: research }],
            canary: { profile: 'research', soakSeconds: 1 },
          },
          g.secretsDir,
        ),
        `orchestrator at ${commit}`,
      );
    const releaseOf = async (profile: string) => (await getJson(ports[profile]!)).body.release;
    const lock = async () => json<LockJson>((await g.cli(['state', 'show', 'gw', '--json'])).stdout);
    const currentLink = () => readlinkSync(path.join(g.root, 'var/lib/agentvm/releases/orchestrator/current'));

    beforeAll(async () => {
      assertBuilt();
      m = await startUserManager();
      for (const p of ['core', 'research']) ports[p] = await freePort();
      profiles = [
        { name: 'core', port: ports.core! },
        { name: 'research', port: ports.research!, timeoutSeconds: 5 },
      ];
      g = await gatewayRepo('rehearse', m, (s) => ({
        ...hostFile(['orchestrator']),
        ...orchestratorFiles(
          { tier: 'high', commit: V1, profiles, canary: { profile: 'research', soakSeconds: 1 } },
          s,
        ),
      }));
      const r = await g.cli(['apply', '--auto-approve']);
      if (r.code !== 0) throw new Error(`first apply failed: ${r.stdout}${r.stderr}`);
    }, 120_000);

    afterAll(async () => {
      await m?.stop();
      await g?.cleanup();
    });

    it('GIVEN the live release WHEN rehearse THEN it is refused: there is nothing to promote', async () => {
      const r = await g.cli(['rehearse', 'orchestrator']);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('rehearse.same-release');
      expect(hasStackTrace(r.stderr)).toBe(false);
    });

    it('GIVEN a high service WHEN a new release is committed without a rehearsal THEN plan refuses it and apply changes nothing', async () => {
      await commitOrchestrator(V2);
      const pids = { core: await execdPid(m, CORE), research: await execdPid(m, RESEARCH) };
      const plan = await g.cli(['plan', '--json']);
      expect(plan.code).toBe(1);
      const p = json<PlanJson>(plan.stdout);
      expect(p.applicable).toBe(false);
      // (A high service that holds a raw key also gets policy.credential-not-injected, a warning: ADR 0023.)
      expect(p.diagnostics.filter((d) => d.code.startsWith('policy.') && d.severity === 'error')).toEqual([
        expect.objectContaining({
          code: 'policy.rollback-not-rehearsed',
          severity: 'error',
          address: 'release.orchestrator',
        }),
      ]);
      const apply = await g.cli(['apply', '--auto-approve']);
      expect(apply.code).toBe(1);
      expect(apply.stderr).toContain('policy.rollback-not-rehearsed');
      expect({ core: await execdPid(m, CORE), research: await execdPid(m, RESEARCH) }).toEqual(pids);
    });

    it('WHEN rehearse THEN only the canary goes to the new release and back, healthy both times; the pair is recorded and nothing drifts', async () => {
      const corePid = await execdPid(m, CORE);
      const researchPid = await execdPid(m, RESEARCH);
      const r = await g.cli(['rehearse', 'orchestrator', '--json']);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      const result = json<RehearseJson>(r.stdout);
      expect(result).toMatchObject({
        result: 'passed',
        canary: 'unit.orchestrator.research',
        from: { identity: V2, releaseId: V2 },
        to: { identity: V1, releaseId: V1 },
      });
      expect(result.steps.map((s) => [s.step, s.ok])).toEqual([
        ['install', true],
        ['promote', true],
        ['rollback', true],
        ['restore', true],
      ]);

      expect(await execdPid(m, CORE)).toBe(corePid);
      expect(await execdPid(m, RESEARCH)).not.toBe(researchPid);
      expect(await releaseOf('research')).toBe('dev');
      expect(await releaseOf('core')).toBe('dev');
      expect(currentLink()).toBe(V1);
      const l = await lock();
      expect(l.workloads.orchestrator!.release.identity).toBe(V1);
      expect(l.workloads.orchestrator!.rehearsals![0]).toMatchObject({
        fromIdentity: V2,
        toIdentity: V1,
        result: 'passed',
      });
      const drift = await g.cli(['drift']);
      expect(drift.code, drift.stdout).toBe(0);

      const audit = json<Array<{ event: string; result: string; address?: string }>>(
        (await g.cli(['audit', 'tail', '-n', '6', '--json'])).stdout,
      );
      expect(audit.map((e) => `${e.event} ${e.result}`)).toEqual([
        'rehearsal.start started',
        'rehearsal.install ok',
        'rehearsal.promote ok',
        'rehearsal.rollback ok',
        'rehearsal.restore ok',
        'rehearsal.finish ok',
      ]);
      expect((await g.cli(['audit', 'verify'])).code).toBe(0);
    });

    it('THEN the promotion plans cleanly and applies through the canary', async () => {
      const plan = json<PlanJson>((await g.cli(['plan', '--json'])).stdout);
      expect(plan.diagnostics.filter((d) => d.code.startsWith('policy.') && d.severity === 'error')).toEqual([]);
      expect(plan.applicable).toBe(true);
      const r = await g.cli(['apply', '--auto-approve']);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(await releaseOf('research')).toBe('v2');
      expect(await releaseOf('core')).toBe('v2');
      expect(await verifyUnitDir(m)).toEqual([]);
    });

    it('GIVEN a release whose canary fails health WHEN rehearse THEN the failure is recorded and the promotion stays refused', async () => {
      await commitOrchestrator(V1, { AGENT_FAIL_HEALTH: '1' });
      const corePid = await execdPid(m, CORE);
      const r = await g.cli(['rehearse', 'orchestrator', '--json']);
      expect(r.code, r.stdout + r.stderr).toBe(1);
      const result = json<RehearseJson>(r.stdout);
      expect(result.result).toBe('failed');
      expect(result.steps.find((s) => s.step === 'promote')).toMatchObject({ ok: false });
      expect(result.steps.find((s) => s.step === 'restore')).toMatchObject({ ok: true });
      expect(await execdPid(m, CORE)).toBe(corePid);
      expect(await releaseOf('research')).toBe('v2');
      expect(currentLink()).toBe(V2);
      expect((await lock()).workloads.orchestrator!.rehearsals![0]).toMatchObject({
        fromIdentity: V1,
        toIdentity: V2,
        result: 'failed',
      });

      const plan = json<PlanJson>((await g.cli(['plan', '--json'])).stdout);
      const refusal = plan.diagnostics.find((d) => d.code === 'policy.rollback-not-rehearsed');
      expect(refusal?.summary).toContain('the last rehearsal of this pair failed');
      expect((await g.cli(['drift'])).code).toBe(0);
    });
  },
);
