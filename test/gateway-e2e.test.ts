// Issue 4 end to end: the real `agentvm` CLI (bin/run.js over dist/) against a REAL systemd user manager started by
// the harness (test/support/systemd-user.ts). The CLI runs as root on behalf of the harness account
// (AGENTVM_SYSTEMD_USER), with a scratch host root whose paths are real: releases are installed there, the units
// run from them in the account's manager and answer HTTP on loopback ports.
//   apply brings up archetype A's agent-gateway@core and archetype B's profiles; their health endpoints answer;
//   a commit changing one profile's env restarts only that unit (the others keep their MainPID); a hand edit of a
//   unit is drift (exit 2, naming the address) and apply repairs it; a commit whose health check fails is rolled
//   back automatically, apply exits 3, and `agentvm audit tail --json` shows the rollback. Every unit file left in
//   the unit dir passes `systemd-analyze verify`.

import { appendFileSync, chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
  poolFiles,
  V1,
  verifyUnitDir,
  type GatewayRepo,
  type ProfileSpec,
} from './support/gateway-repo.js';
import { startUserManager, userManagerSupport, type UserManager } from './support/systemd-user.js';

const support = userManagerSupport();
const inCi = process.env.CI === 'true';
if (!support.ok && !inCi) console.warn(`gateway-e2e: skipping: ${support.reason}. ${support.howTo}`);

describe('gateway-e2e: a user manager is available in CI', () => {
  it.runIf(inCi)('the harness can start a user manager on this machine', () => {
    expect(support, support.ok ? '' : `${support.reason}. ${support.howTo}`).toEqual({ ok: true });
  });
});

interface PlanJson {
  applicable: boolean;
  changes: Array<{ address: string; action: string; effect: string; reasons: Array<{ code: string }> }>;
  drift: Array<{ address: string; reasons: Array<{ code: string; message: string }> }>;
  diagnostics: Array<{ code: string; severity: string; address?: string }>;
}
interface AuditJson {
  event: string;
  address?: string;
  result: string;
  detail?: string;
}

const UNITS = {
  core: 'agent-gateway@core.service',
  a: 'agent-gateway@pool-a.service',
  b: 'agent-gateway@pool-b.service',
};

describe.skipIf(!support.ok && !inCi)('agentvm CLI against a real systemd user manager', () => {
  let m: UserManager;
  let g: GatewayRepo;
  const ports: Record<string, number> = {};
  let profiles: { core: ProfileSpec[]; pool: ProfileSpec[] };
  const files = (secretsDir: string, pool = profiles.pool) => ({
    ...hostFile(['orchestrator', 'agent-pool']),
    ...orchestratorFiles({ tier: 'moderate', commit: V1, profiles: profiles.core }, secretsDir),
    ...poolFiles({ tier: 'moderate', profiles: pool }, secretsDir),
  });
  const pids = async () => ({
    core: await execdPid(m, UNITS.core),
    a: await execdPid(m, UNITS.a),
    b: await execdPid(m, UNITS.b),
  });

  beforeAll(async () => {
    assertBuilt();
    m = await startUserManager();
    for (const p of ['core', 'pool-a', 'pool-b']) ports[p] = await freePort();
    profiles = {
      core: [{ name: 'core', port: ports.core! }],
      pool: [
        { name: 'pool-a', port: ports['pool-a']! },
        { name: 'pool-b', port: ports['pool-b']!, timeoutSeconds: 4 },
      ],
    };
    g = await gatewayRepo('gateway-e2e', m, (s) => files(s));
  }, 120_000);

  afterAll(async () => {
    await m?.stop();
    await g?.cleanup();
  });

  it('GIVEN a user-scope host WHEN apply THEN agent-gateway@core (archetype A) and the pool profiles (archetype B) run and answer health', async () => {
    const r = await g.cli(['apply', '--auto-approve']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    for (const unit of Object.values(UNITS)) {
      expect(await m.show(unit, ['ActiveState', 'UnitFileState']), unit).toEqual({
        ActiveState: 'active',
        UnitFileState: 'enabled',
      });
    }
    const core = await getJson(ports.core!);
    expect(core.status).toBe(200);
    expect(core.body).toMatchObject({
      status: 'ok',
      profile: 'core',
      credentials: { present: ['llm-api-key'], missing: [] },
    });
    for (const p of ['pool-a', 'pool-b']) {
      const h = await getJson(ports[p]!);
      expect(h.status, p).toBe(200);
      expect(h.body, p).toMatchObject({ status: 'ok', profile: p, version: '1.0.0', workers: 1 });
    }
    // Nothing of the secrets' values in a unit file, the lockfile or the audit log.
    const state = await g.cli(['state', 'show', 'gw', '--json']);
    expect(state.stdout).not.toContain('secret-1');
    expect(readFileSync(path.join(m.unitDir, `${UNITS.core}.d/50-agentvm.conf`), 'utf8')).not.toContain('secret-1');
    expect(await verifyUnitDir(m)).toEqual([]);

    const again = await g.cli(['plan', '--detailed-exitcode']);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(again.stdout).toContain('No changes');
  });

  it("WHEN a commit changes one profile's env THEN plan shows a restart of that unit only, and apply restarts only it", async () => {
    const before = await pids();
    await g.repo.commitFiles(
      poolFiles(
        { tier: 'moderate', profiles: [profiles.pool[0]!, { ...profiles.pool[1]!, env: { AGENT_POOL_SIZE: '2' } }] },
        g.secretsDir,
      ),
      'pool-b: two workers',
    );
    const plan = json<PlanJson>((await g.cli(['plan', '--json'])).stdout);
    expect(plan.changes.filter((c) => c.action !== 'noop').map((c) => [c.address, c.action, c.effect])).toEqual([
      ['unit.agent-pool.pool-b', 'update', 'restart'],
    ]);

    const r = await g.cli(['apply', '--auto-approve']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const after = await pids();
    expect(after.core).toBe(before.core);
    expect(after.a).toBe(before.a);
    expect(after.b).not.toBe(before.b);
    expect((await getJson(ports['pool-b']!)).body).toMatchObject({ status: 'ok', workers: 2 });
    expect(await verifyUnitDir(m)).toEqual([]);
  });

  it('WHEN the unit file is edited by hand THEN drift exits 2 naming the address, and apply puts the applied unit back', async () => {
    const dropIn = path.join(m.unitDir, `${UNITS.core}.d/50-agentvm.conf`);
    const applied = readFileSync(dropIn, 'utf8');
    writeFileSync(dropIn, applied.replace('[Service]\n', '[Service]\nEnvironment=AGENT_DEBUG=1\n'));
    const drift = await g.cli(['drift', '--json']);
    expect(drift.code, drift.stderr).toBe(2);
    const report = json<PlanJson>(drift.stdout);
    expect(report.drift.map((d) => d.address)).toEqual(['unit.orchestrator.core']);
    expect(report.drift[0]!.reasons.map((x) => x.code)).toContain('live-modified');
    expect(report.drift[0]!.reasons.map((x) => x.message).join('\n')).toContain('Service.Environment');
    const text = await g.cli(['drift']);
    expect(text.code).toBe(2);
    expect(text.stdout).toContain('unit.orchestrator.core');

    const fix = await g.cli(['apply', '--auto-approve']);
    expect(fix.code, fix.stdout + fix.stderr).toBe(0);
    expect(readFileSync(dropIn, 'utf8')).toBe(applied);
    expect(await m.show(UNITS.core, ['NeedDaemonReload', 'ActiveState'])).toEqual({
      NeedDaemonReload: 'no',
      ActiveState: 'active',
    });
    expect((await g.cli(['drift'])).code).toBe(0);
  });

  it('WHEN a file of the live release is tampered THEN one apply reinstalls it AND restarts the unit running from it; the tampered copy is not the rollback target', async () => {
    const before = await pids();
    const stateBefore = json<{ workloads?: Record<string, { rollback?: { releaseId?: string } | null }> }>(
      (await g.cli(['state', 'show', 'gw', '--json'])).stdout,
    );
    const file = path.join(
      g.root,
      'var',
      'lib',
      'agentvm',
      'releases',
      'orchestrator',
      V1,
      'orchestrator',
      '__main__.py',
    );
    chmodSync(file, 0o644);
    appendFileSync(file, '\n# tampered on the host\n');
    const plan = json<PlanJson>((await g.cli(['plan', '--json'])).stdout);
    expect(plan.changes.filter((c) => c.action !== 'noop').map((c) => [c.address, c.action])).toEqual([
      ['release.orchestrator', 'replace'],
      ['unit.orchestrator.core', 'update'],
    ]);
    expect(plan.changes.find((c) => c.address === 'unit.orchestrator.core')!.reasons.map((r) => r.code)).toEqual([
      'dependency-changed',
    ]);

    const fix = await g.cli(['apply', '--auto-approve']);
    expect(fix.code, fix.stdout + fix.stderr).toBe(0);
    expect(readFileSync(file, 'utf8')).not.toContain('tampered');
    const after = await pids();
    expect(after.core, 'the unit running the repaired release restarted in the same apply').not.toBe(before.core);
    expect(after.a).toBe(before.a);
    expect(after.b).toBe(before.b);
    // One apply converges: the next plan has nothing to do.
    const again = await g.cli(['plan', '--detailed-exitcode']);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    const stateAfter = json<{ workloads?: Record<string, { rollback?: { releaseId?: string } | null }> }>(
      (await g.cli(['state', 'show', 'gw', '--json'])).stdout,
    );
    expect(stateAfter.workloads?.orchestrator?.rollback ?? null).toEqual(
      stateBefore.workloads?.orchestrator?.rollback ?? null,
    );
    expect(JSON.stringify(stateAfter.workloads?.orchestrator ?? {})).not.toContain('captured-');
  });

  it('WHEN a second runtime source is added by hand (an override drop-in) THEN drift names it and apply removes it', async () => {
    const before = await pids();
    const override = path.join(m.unitDir, `${UNITS.a}.d/override.conf`);
    await m.writeUnit(`${UNITS.a}.d/override.conf`, '[Service]\nExecStart=\nExecStart=/bin/sleep infinity\n');
    const drift = await g.cli(['drift', '--json']);
    expect(drift.code, drift.stderr).toBe(2);
    const report = json<PlanJson>(drift.stdout);
    expect(report.drift.map((d) => d.address)).toEqual(['unit.agent-pool.pool-a']);
    expect(report.drift[0]!.reasons.map((x) => x.message).join('\n')).toContain('override.conf');

    const fix = await g.cli(['apply', '--auto-approve']);
    expect(fix.code, fix.stdout + fix.stderr).toBe(0);
    expect(() => readFileSync(override)).toThrow();
    const after = await pids();
    expect(after.core).toBe(before.core);
    expect(after.b).toBe(before.b);
    expect((await getJson(ports['pool-a']!)).body).toMatchObject({ status: 'ok', profile: 'pool-a' });
    expect((await g.cli(['drift'])).code).toBe(0);
    rmSync(override, { force: true });
  });

  it('WHEN a commit makes a profile fail its health check THEN apply rolls that unit back, exits 3, and the audit log shows the rollback', async () => {
    const before = await pids();
    const good = poolFiles(
      { tier: 'moderate', profiles: [profiles.pool[0]!, { ...profiles.pool[1]!, env: { AGENT_POOL_SIZE: '2' } }] },
      g.secretsDir,
    );
    await g.repo.commitFiles(
      poolFiles(
        {
          tier: 'moderate',
          profiles: [
            profiles.pool[0]!,
            { ...profiles.pool[1]!, env: { AGENT_POOL_SIZE: '2', AGENT_FAIL_HEALTH: '1' } },
          ],
        },
        g.secretsDir,
      ),
      'pool-b: failing health',
    );

    const r = await g.cli(['apply', '--auto-approve', '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(3);
    expect(hasStackTrace(r.stderr)).toBe(false);
    const result = json<{
      status: string;
      failed: Array<{ address: string; diagnostics: Array<{ code: string; severity: string }> }>;
    }>(r.stdout);
    expect(result.status).toBe('partial');
    expect(result.failed.map((f) => f.address)).toEqual(['unit.agent-pool.pool-b']);
    expect(result.failed[0]!.diagnostics.map((d) => `${d.severity} ${d.code}`)).toEqual(
      expect.arrayContaining(['error systemd.health-failed', 'warning systemd.rolled-back']),
    );

    // The previously applied configuration runs again and answers; nothing else was restarted.
    const health = await getJson(ports['pool-b']!);
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({ status: 'ok', workers: 2 });
    const after = await pids();
    expect(after.core).toBe(before.core);
    expect(after.a).toBe(before.a);
    expect(readFileSync(path.join(m.unitDir, `${UNITS.b}.d/50-agentvm.conf`), 'utf8')).not.toContain(
      'AGENT_FAIL_HEALTH',
    );

    const audit = json<AuditJson[]>((await g.cli(['audit', 'tail', '-n', '10', '--json'])).stdout);
    const rollback = audit.find((e) => e.event === 'resource.rollback');
    expect(rollback, JSON.stringify(audit, null, 1)).toMatchObject({ address: 'unit.agent-pool.pool-b', result: 'ok' });
    expect(rollback!.detail).toContain('rolled back');
    expect(audit.find((e) => e.event === 'resource.apply' && e.address === 'unit.agent-pool.pool-b')).toMatchObject({
      result: 'failed',
    });
    expect((await g.cli(['audit', 'verify'])).code).toBe(0);

    // Reverting the commit converges without touching anything: the rolled-back unit is what it asks for.
    await g.repo.commitFiles(good, 'revert: pool-b healthy again');
    const plan = await g.cli(['plan', '--detailed-exitcode']);
    expect(plan.code, plan.stdout + plan.stderr).toBe(0);
    expect(await verifyUnitDir(m)).toEqual([]);
  });
});
