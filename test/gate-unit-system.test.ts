// Issue 7 item 1 end to end: the real `agentvm` CLI (built) against a REAL systemd user manager (test/support/
// systemd-user.ts), as root on behalf of the harness account (AGENTVM_SYSTEMD_USER), the way gateway-e2e runs.
//   apply of a fleet with two previews installs and starts agentvm-gate.service in the account's manager; a grant link
//   followed with a plain HTTP client (cookie jar by hand) reaches the preview's content, served by a loopback
//   node:http server this test runs; removing one preview (commit, apply) makes its route 404 and removes its grants
//   while the gate keeps running; removing the last one stops, disables and removes the unit.
// The workload's profile declares the preview's port as its listener (governance: a preview gates the workload's own
// listener) but runs `sleep infinity`, so the port is free for the test's upstream.
// Permissions: the CLI runs as root, the gate as the account. apply shares the gate's state directory and the audit
// directory with the account's group (setgid 2770, audit log 0660: src/providers/gate/state-access.ts).

import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyUnits } from '../src/providers/systemd/index.js';
import { assertBuilt } from './support/cli.js';
import { startUpstream, request, exchange, type Upstream } from './support/gate.js';
import { freePort, gatewayRepo, json, ARTIFACTS, V1, type GatewayRepo } from './support/gateway-repo.js';
import { startUserManager, userManagerSupport, type UserManager } from './support/systemd-user.js';

const support = userManagerSupport();
const inCi = process.env.CI === 'true';
if (!support.ok && !inCi) console.warn(`gate-unit-system: skipping: ${support.reason}. ${support.howTo}`);

describe('gate-unit-system: a user manager is available in CI', () => {
  it.runIf(inCi)('the harness can start a user manager on this machine', () => {
    expect(support, support.ok ? '' : `${support.reason}. ${support.howTo}`).toEqual({ ok: true });
  });
});

const UNIT = 'agentvm-gate.service';

function files(gatePort: number, upstreamPort: number, previews: string[]): Record<string, string> {
  const previewYaml = previews.length
    ? `  previews:\n${previews.map((p) => `    - name: ${p}\n      upstream:\n        port: ${upstreamPort}\n      maxTtl: 1h\n      grantees: [ana@example.com]\n`).join('')}`
    : '';
  return {
    'hosts/gw.yaml': `apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: gw\nspec:\n  workloads: [docs]\n  systemd:\n    scope: user\n  gate:\n    address: 127.0.0.1\n    port: ${gatePort}\n`,
    'workloads/docs/contract.yaml':
      'apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadContract\nmetadata:\n  name: docs\nspec:\n  owner: docs-team@example.com\n  riskTier: low\n  substrate: service\n',
    'workloads/docs/manifest.yaml': `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadManifest\nmetadata:\n  name: docs\nspec:\n  archetype: git-release\n  source:\n    git:\n      repo: ${ARTIFACTS}/orchestrator.bundle\n      commit: ${V1}\n  profiles:\n    - name: docs\n      entrypoint: [sleep, infinity]\n      listen:\n        port: ${upstreamPort}\n${previewYaml}`,
  };
}

describe.skipIf(!support.ok && !inCi)('agentvm-gate.service reconciled by apply on a real systemd user manager', () => {
  let m: UserManager;
  let g: GatewayRepo;
  let up: Upstream;
  let gatePort: number;
  let cookie: string;
  let draftCookie: string;
  /** The previews' own origins (host routing): `http://<preview>--docs--<tag>.localhost:<gate port>`. */
  let siteOrigin: string;
  let draftOrigin: string;

  beforeAll(async () => {
    assertBuilt();
    m = await startUserManager();
    up = await startUpstream('docs-upstream');
    gatePort = await freePort();
    g = await gatewayRepo('gate-unit', m, () => files(gatePort, up.port, ['site', 'draft']));
  }, 120_000);

  afterAll(async () => {
    await m?.stop();
    await up?.close();
    await g?.cleanup();
  });

  const grantLink = async (target: string): Promise<{ id: string; link: string }> => {
    const r = await g.cli([
      'gate',
      'grant',
      target,
      '--to',
      'ana@example.com',
      '--ttl',
      '30m',
      '--reason',
      'system test',
      '--json',
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const doc = json<{ grant: { id: string }; link: string }>(r.stdout);
    return { id: doc.grant.id, link: doc.link };
  };

  it('GIVEN a host with previews WHEN apply THEN agentvm-gate.service is enabled and active, and a grant link reaches the preview', async () => {
    const plan = json<{ changes: Array<{ address: string; workload: string; action: string }> }>(
      (await g.cli(['plan', '--json'])).stdout,
    );
    expect(
      plan.changes.filter((c) => c.address.startsWith('gate.')).map((c) => [c.address, c.workload, c.action]),
    ).toEqual([
      ['gate.server', '(host)', 'create'],
      ['gate.docs.draft', 'docs', 'create'],
      ['gate.docs.site', 'docs', 'create'],
    ]);
    const r = await g.cli(['apply', '--auto-approve']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(await m.show(UNIT, ['ActiveState', 'UnitFileState'])).toEqual({
      ActiveState: 'active',
      UnitFileState: 'enabled',
    });
    expect((await m.systemctl(['is-active', UNIT])).stdout.trim()).toBe('active');
    // It runs as the account, from this agentvm, with the root and host only (the listener comes from server.json).
    const pid = await m.mainPid(UNIT);
    expect(statSync(`/proc/${pid}`).uid).toBe(m.uid);
    expect((await m.show(UNIT, ['ExecStart'])).ExecStart).toContain(`gate serve --root ${g.root} --host gw`);
    expect(
      await verifyUnits([{ name: UNIT, text: readFileSync(path.join(m.unitDir, UNIT), 'utf8') }], { scope: 'user' }),
    ).toEqual([]);

    const site = await grantLink('docs/site');
    expect(site.link).toMatch(new RegExp(`^http://site--docs--[a-z2-7]{10}\\.localhost:${gatePort}/\\?grant=`));
    siteOrigin = new URL(site.link).origin;
    const ex = await exchange(site.link);
    expect(ex.reply.status, ex.reply.body).toBe(303);
    cookie = ex.cookie!;
    const page = await request(`${siteOrigin}/`, { headers: { cookie } });
    expect(page.status, page.body).toBe(200);
    expect(page.body).toContain('preview docs-upstream');
    // Without the cookie: refused by the gate, never forwarded.
    const hits = up.hits.length;
    expect((await request(`${siteOrigin}/`)).status).toBe(401);
    expect(up.hits.length).toBe(hits);
    const draftLink = (await grantLink('docs/draft')).link;
    draftOrigin = new URL(draftLink).origin;
    const draft = await exchange(draftLink);
    draftCookie = draft.cookie!;
    expect((await request(`${draftOrigin}/`, { headers: { cookie: draftCookie } })).status).toBe(200);

    const again = await g.cli(['plan', '--detailed-exitcode']);
    expect(again.code, again.stdout + again.stderr).toBe(0);
  });

  it('WHEN one preview is removed (commit, apply) THEN its route answers 404 and its grants are gone; the gate keeps running', async () => {
    const pid = await m.mainPid(UNIT);
    await g.repo.commitFiles(files(gatePort, up.port, ['draft']), 'drop the site preview');
    const plan = json<{ changes: Array<{ address: string; action: string }> }>(
      (await g.cli(['plan', '--json'])).stdout,
    );
    expect(plan.changes.filter((c) => c.action !== 'noop').map((c) => [c.address, c.action])).toEqual([
      ['gate.docs.site', 'delete'],
    ]);
    const r = await g.cli(['apply', '--auto-approve']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect((await request(`${siteOrigin}/`, { headers: { cookie } })).status).toBe(404);
    const list = json<{ grants: Array<{ workload?: string; preview: string }> }>(
      (await g.cli(['gate', 'list', '--json'])).stdout,
    );
    expect(list.grants.map((x) => x.preview).filter((p) => /site/.test(p))).toEqual([]);
    expect(list.grants.length).toBe(1);
    expect(await m.mainPid(UNIT)).toBe(pid);
    expect((await request(`${draftOrigin}/`, { headers: { cookie: draftCookie } })).status).toBe(200);
  });

  it('WHEN the last preview is removed THEN agentvm-gate.service is stopped, disabled and removed; the audit log verifies', async () => {
    await g.repo.commitFiles(files(gatePort, up.port, []), 'no previews');
    const plan = json<{ changes: Array<{ address: string; action: string }> }>(
      (await g.cli(['plan', '--json'])).stdout,
    );
    expect(
      plan.changes
        .filter((c) => c.action !== 'noop')
        .map((c) => [c.address, c.action])
        .sort(),
    ).toEqual([
      ['gate.docs.draft', 'delete'],
      ['gate.server', 'delete'],
    ]);
    const r = await g.cli(['apply', '--auto-approve']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect((await m.show(UNIT, ['ActiveState', 'LoadState'])).ActiveState).toBe('inactive');
    expect(existsSync(path.join(m.unitDir, UNIT))).toBe(false);
    expect(readdirSync(m.unitDir).filter((f) => f.includes('agentvm-gate'))).toEqual([]);
    expect(existsSync(path.join(m.unitDir, 'default.target.wants', UNIT))).toBe(false);
    await expect(request(`${draftOrigin}/`, { headers: { cookie: draftCookie } })).rejects.toThrow(/ECONNREFUSED/);
    const verify = await g.cli(['audit', 'verify', '--json']);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    const events = json<Array<{ event: string; actor: string }>>(
      (await g.cli(['audit', 'tail', '-n', '500', '--json'])).stdout,
    );
    // Request records written by the gate itself, as the account.
    expect(events.some((e) => e.event === 'gate.request' && e.actor === 'ana@example.com')).toBe(true);
  });

  it('GIVEN the gate port is taken WHEN a preview is applied THEN gate.start-failed names the unit state, and the route waits for the gate', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(gatePort, '127.0.0.1', r));
    try {
      await g.repo.commitFiles(files(gatePort, up.port, ['site']), 'a preview again');
      const r = await g.cli(['apply', '--auto-approve', '--json']);
      expect(r.code, r.stdout + r.stderr).not.toBe(0);
      expect(r.stdout + r.stderr).toContain('gate.start-failed');
      expect(r.stdout + r.stderr).toMatch(/agentvm-gate\.service did not come up listening on 127\.0\.0\.1:\d+ \(/);
      const plan = json<{ changes: Array<{ address: string; action: string }> }>(
        (await g.cli(['plan', '--json'])).stdout,
      );
      // The route was skipped (it depends on gate.server), so it is still to be created.
      expect(plan.changes.find((c) => c.address === 'gate.docs.site')?.action).toBe('create');
    } finally {
      await new Promise<void>((r) => blocker.close(() => r()));
    }
  }, 60_000);
});
