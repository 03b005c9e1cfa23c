// gate.server offline: the real GateProvider against a temporary host root in system scope, where the systemd
// endpoint is offline (`systemctl --root=<root>`): apply writes agentvm-gate.service under the root, enables it
// (the WantedBy symlink) and writes server.json; nothing starts. The unit passes `systemd-analyze verify`; a
// repeated apply is a no-op; a port change is an update that restarts; delete disables and removes everything.
// Also the real CLI: a committed fleet with one preview plans gate.server under "Workload (host)" and applies it.

import { existsSync, lstatSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DesiredResource, LockedResource, PlannedChange } from '../src/model/resources.js';
import { gatePaths } from '../src/gate/paths.js';
import { readServerSettings, writeServerSettings } from '../src/gate/routes.js';
import { GateProvider } from '../src/providers/gate/provider.js';
import { verifyUnits } from '../src/providers/systemd/index.js';
import { hostPaths } from '../src/model/index.js';
import { agentvm, assertBuilt, ROOT } from './support/cli.js';
import { gitdir, type GitDir } from './support/gitdir.js';
import { tempRoot } from './support/gate.js';

const ADDRESS = 'gate.server';
const UNIT = 'agentvm-gate.service';

function desired(config: Record<string, unknown>): DesiredResource {
  return {
    address: ADDRESS,
    provider: 'gate',
    workload: '(host)',
    identity: UNIT,
    dependsOn: [],
    config: { address: '127.0.0.1', port: 8443, tls: null, scope: 'system', ...config },
  };
}

describe('gate.server offline (system scope under a temporary root)', () => {
  const fx = tempRoot();
  const host = { host: 'edge-1', root: fx.root, paths: hostPaths(fx.root), repo: fx.root };
  const provider = new GateProvider();
  const unitFile = path.join(fx.root, 'etc/systemd/system', UNIT);
  const wants = path.join(fx.root, 'etc/systemd/system/multi-user.target.wants', UNIT);
  let locked: LockedResource | undefined;

  afterAll(() => fx.remove());

  /** read → plan → apply, as `agentvm apply` does; returns the planned change. */
  async function reconcile(
    d: DesiredResource | undefined,
  ): Promise<Pick<PlannedChange, 'action' | 'effect' | 'reasons'>> {
    const { live, diagnostics } = await provider.read({
      host,
      address: ADDRESS,
      ...(d ? { desired: d } : {}),
      ...(locked ? { locked } : {}),
    });
    expect(diagnostics).toEqual([]);
    const planned = provider.plan({
      address: ADDRESS,
      ...(d ? { desired: d } : {}),
      live,
      ...(locked ? { locked } : {}),
    });
    expect(planned.diagnostics).toEqual([]);
    if (planned.action === 'noop') return planned;
    const change: PlannedChange = {
      address: ADDRESS,
      provider: 'gate',
      workload: '(host)',
      action: planned.action,
      effect: planned.effect,
      reasons: planned.reasons,
      dependsOn: [],
      ...(d ? { desired: d } : {}),
    };
    const res = await provider.apply({ host, change, ...(locked ? { locked } : {}) });
    expect(res.diagnostics).toEqual([]);
    locked = res.locked ? { ...res.locked, commit: null, appliedAt: new Date().toISOString() } : undefined;
    return planned;
  }

  it('GIVEN nothing installed WHEN applied THEN the unit is written under the root, enabled, verified, and server.json holds the listener', async () => {
    const d = desired({});
    expect(provider.validate({ resource: d }).diagnostics).toEqual([]);
    expect(await reconcile(d)).toMatchObject({ action: 'create', effect: 'none' });
    const text = readFileSync(unitFile, 'utf8');
    // The manager sees the root as `/`: the unit names paths as the booted host will.
    expect(text).toMatch(
      new RegExp(`^ExecStart=${process.execPath} \\S+/bin/run\\.js gate serve --root / --host edge-1$`, 'm'),
    );
    expect(text).toContain('X-AgentvmOwner=gate.server');
    expect(text).toContain('WantedBy=multi-user.target');
    expect(lstatSync(wants).isSymbolicLink()).toBe(true);
    expect(readServerSettings(gatePaths(fx.root).server)).toEqual({
      version: 1,
      host: 'edge-1',
      address: '127.0.0.1',
      port: 8443,
      tls: null,
    });
    expect(await verifyUnits([{ name: UNIT, text }], { scope: 'system' })).toEqual([]);
    expect(locked).toMatchObject({
      address: ADDRESS,
      provider: 'gate',
      workload: '(host)',
      identity: UNIT,
      attributes: { scope: 'system' },
    });
    expect((await provider.list({ host })).owned.map((o) => o.address)).toEqual([ADDRESS]);
  });

  it('WHEN planned again THEN no change; WHEN the port changes THEN update with effect restart, the unit text unchanged', async () => {
    expect(await reconcile(desired({}))).toMatchObject({ action: 'noop' });
    const before = readFileSync(unitFile, 'utf8');
    const change = await reconcile(
      desired({ port: 9443, tls: { cert: 'file:/etc/agentvm/gate.crt', key: 'file:/etc/agentvm/gate.key' } }),
    );
    expect(change).toMatchObject({ action: 'update', effect: 'restart' });
    expect(change.reasons.map((r) => r.code)).toEqual(['config-changed']);
    expect(change.reasons[0]!.message).toContain('listener settings');
    expect(readFileSync(unitFile, 'utf8')).toBe(before);
    expect(readServerSettings(gatePaths(fx.root).server)).toMatchObject({
      port: 9443,
      tls: { cert: 'file:/etc/agentvm/gate.crt', key: 'file:/etc/agentvm/gate.key' },
    });
    // A public URL (a TLS-terminating proxy in front) is a listener setting too: restart, same unit text.
    const proxied = await reconcile(
      desired({
        port: 9443,
        tls: { cert: 'file:/etc/agentvm/gate.crt', key: 'file:/etc/agentvm/gate.key' },
        publicUrl: 'https://previews.example.test',
      }),
    );
    expect(proxied).toMatchObject({ action: 'update', effect: 'restart' });
    expect(readFileSync(unitFile, 'utf8')).toBe(before);
    expect(readServerSettings(gatePaths(fx.root).server)).toMatchObject({ publicUrl: 'https://previews.example.test' });
    expect(
      await reconcile(
        desired({ port: 9443, tls: { cert: 'file:/etc/agentvm/gate.crt', key: 'file:/etc/agentvm/gate.key' } }),
      ),
    ).toMatchObject({ action: 'update', effect: 'restart' });
    expect(readServerSettings(gatePaths(fx.root).server)?.publicUrl).toBeUndefined();
    // Path routing (the opt-in) and a gate domain are listener settings too; absent, server.json does not name them.
    const routed = await reconcile(
      desired({
        port: 9443,
        tls: { cert: 'file:/etc/agentvm/gate.crt', key: 'file:/etc/agentvm/gate.key' },
        routing: 'path',
        domain: 'previews.example.test',
      }),
    );
    expect(routed).toMatchObject({ action: 'update', effect: 'restart' });
    expect(readServerSettings(gatePaths(fx.root).server)).toMatchObject({
      routing: 'path',
      domain: 'previews.example.test',
    });
    await reconcile(
      desired({ port: 9443, tls: { cert: 'file:/etc/agentvm/gate.crt', key: 'file:/etc/agentvm/gate.key' } }),
    );
    expect(Object.keys(readServerSettings(gatePaths(fx.root).server)!)).not.toContain('routing');
  });

  it('WHEN the unit is edited by hand THEN drift live-modified, and apply puts it back', async () => {
    const applied = readFileSync(unitFile, 'utf8');
    writeFileSync(unitFile, applied.replace('RestartSec=1', 'RestartSec=30'));
    const d = desired({ port: 9443, tls: { cert: 'file:/etc/agentvm/gate.crt', key: 'file:/etc/agentvm/gate.key' } });
    const { live } = await provider.read({ host, address: ADDRESS, desired: d, locked: locked! });
    const planned = provider.plan({ address: ADDRESS, desired: d, live, locked: locked! });
    expect(planned.drift.map((r) => r.code)).toEqual(['live-modified']);
    expect(planned).toMatchObject({ action: 'update', effect: 'restart', reasons: [{ code: 'live-modified' }] });
    await reconcile(d);
    expect(readFileSync(unitFile, 'utf8')).toBe(applied);
  });

  it('GIVEN a non-loopback address without TLS, or a TLS reference that is not file: THEN validate refuses it', () => {
    expect(
      provider
        .validate({ resource: desired({ tls: { cert: 'systemd-creds:x', key: 'file:/k' } }) })
        .diagnostics.map((d) => d.code),
    ).toEqual(['gate.invalid-config']);
    expect(provider.validate({ resource: desired({ port: 0 }) }).diagnostics.map((d) => d.code)).toEqual([
      'gate.invalid-config',
    ]);
  });

  it('WHEN no longer desired THEN delete: disabled, unit and server.json removed, nothing listed', async () => {
    expect(await reconcile(undefined)).toMatchObject({
      action: 'delete',
      effect: 'none',
      reasons: [{ code: 'removed' }],
    });
    expect(existsSync(unitFile)).toBe(false);
    expect(existsSync(wants)).toBe(false);
    expect(existsSync(gatePaths(fx.root).server)).toBe(false);
    expect((await provider.list({ host })).owned).toEqual([]);
    locked = undefined;
    expect(await reconcile(undefined)).toMatchObject({ action: 'noop' });
  });
});

const HOST_YAML =
  'apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: edge-1\nspec:\n  workloads: [docs]\n  gate:\n    port: 9555\n';
const CONTRACT =
  'apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadContract\nmetadata:\n  name: docs\nspec:\n  owner: docs@example.com\n  riskTier: low\n  substrate: service\n';
// Archetype A from the bundled artifacts (low tier: no signature required), one profile the preview gates.
const MANIFEST = (previews: string) =>
  `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadManifest\nmetadata:\n  name: docs\nspec:\n  archetype: git-release\n  source:\n    git:\n      repo: ${path.join(ROOT, 'examples/artifacts/orchestrator.bundle')}\n      commit: fe0645c4528837f2588a33651153f918d89da72d\n  profiles:\n    - name: docs\n      entrypoint: [python3, -m, orchestrator]\n      listen:\n        port: 8301\n${previews}`;
const PREVIEW =
  '  previews:\n    - name: site\n      upstream:\n        port: 8301\n      maxTtl: 1h\n      grantees: [ana@example.com]\n';

describe('agentvm plan/apply with a preview (offline, system scope under a temporary root)', () => {
  let repo: GitDir;
  const fx = tempRoot();
  const run = (args: string[]) => agentvm([...args, '--repo', repo.dir, '--host', 'edge-1', '--root', fx.root]);

  beforeAll(async () => {
    assertBuilt();
    repo = await gitdir({
      'hosts/edge-1.yaml': HOST_YAML,
      'workloads/docs/contract.yaml': CONTRACT,
      'workloads/docs/manifest.yaml': MANIFEST(PREVIEW),
    });
  });
  afterAll(async () => {
    fx.remove();
    await repo?.cleanup();
  });

  it('plans gate.server under "Workload (host)" and the route after it; apply writes both', async () => {
    const plan = await run(['plan', '--json']);
    expect(plan.code, plan.stderr).toBe(0);
    const doc = JSON.parse(plan.stdout) as {
      changes: Array<{ address: string; workload: string; action: string; dependsOn: string[] }>;
    };
    const gates = doc.changes.filter((c) => c.address.startsWith('gate.'));
    expect(gates.map((c) => [c.address, c.workload, c.action])).toEqual([
      ['gate.server', '(host)', 'create'],
      ['gate.docs.site', 'docs', 'create'],
    ]);
    expect(gates[1]!.dependsOn).toEqual(['gate.server', 'unit.docs.docs']);
    const text = await run(['plan']);
    // (host) groups the host-level resources: the egress proxy every unit depends on, then the gate.
    expect(text.stdout).toMatch(/Workload \(host\)\n\s+\+ egress\.server[^\n]*\n(?:\s{6,}[^\n]*\n)*\s+\+ gate\.server/);
    const apply = await run(['apply', '--auto-approve']);
    expect(apply.code, apply.stdout + apply.stderr).toBe(0);
    expect(readFileSync(path.join(fx.root, 'etc/systemd/system', UNIT), 'utf8')).toContain(
      'gate serve --root / --host edge-1',
    );
    expect(readServerSettings(gatePaths(fx.root).server)).toMatchObject({ port: 9555 });
    const again = await run(['plan', '--detailed-exitcode']);
    expect(again.code, again.stdout + again.stderr).toBe(0);
  });

  it('WHEN the last preview is removed THEN the plan deletes gate.server (grouped as (host)) and apply removes the unit', async () => {
    await repo.commitFiles({ 'workloads/docs/manifest.yaml': MANIFEST('') }, 'no previews');
    const plan = JSON.parse((await run(['plan', '--json'])).stdout) as {
      changes: Array<{ address: string; action: string; workload: string }>;
    };
    expect(
      plan.changes
        .filter((c) => c.action !== 'noop')
        .map((c) => [c.address, c.workload, c.action])
        .sort(),
    ).toEqual([
      ['gate.docs.site', 'docs', 'delete'],
      ['gate.server', '(host)', 'delete'],
    ]);
    const apply = await run(['apply', '--auto-approve']);
    expect(apply.code, apply.stdout + apply.stderr).toBe(0);
    expect(existsSync(path.join(fx.root, 'etc/systemd/system', UNIT))).toBe(false);
  });
});

describe('agentvm gate serve reads the settings apply wrote (server.json)', () => {
  const fx = tempRoot();
  afterAll(() => fx.remove());

  it('uses server.json for address and port, flags override it, and a non-loopback address without TLS is refused', async () => {
    assertBuilt();
    writeServerSettings(gatePaths(fx.root).server, {
      version: 1,
      host: 'edge-1',
      address: '127.0.0.1',
      port: 9777,
      tls: null,
    });
    const unit = await agentvm(['gate', 'serve', '--root', fx.root, '--host', 'edge-1', '--print-unit']);
    expect(unit.code, unit.stderr).toBe(0);
    expect(unit.stdout).toMatch(/^ExecStart=.* --address 127\.0\.0\.1 --port 9777$/m);
    const override = await agentvm([
      'gate',
      'serve',
      '--root',
      fx.root,
      '--host',
      'edge-1',
      '--port',
      '9778',
      '--print-unit',
    ]);
    expect(override.stdout).toMatch(/ --port 9778$/m);

    writeServerSettings(gatePaths(fx.root).server, {
      version: 1,
      host: 'edge-1',
      address: '0.0.0.0',
      port: 9777,
      tls: null,
    });
    const exposed = await agentvm(['gate', 'serve', '--root', fx.root, '--host', 'edge-1']);
    expect(exposed.code).toBe(1);
    expect(exposed.stderr).toContain('gate.exposed');
    expect(exposed.stderr).toContain('loopback only');

    // The state under a root belongs to the host it was applied for: serving it as another host is refused.
    writeServerSettings(gatePaths(fx.root).server, {
      version: 1,
      host: 'edge-1',
      address: '127.0.0.1',
      port: 9777,
      tls: null,
    });
    const other = await agentvm(['gate', 'serve', '--root', fx.root, '--host', 'edge-2']);
    expect(other.code).toBe(1);
    expect(other.stderr).toContain('gate.host-mismatch');
    expect(other.stderr).toContain('--host edge-1');

    // A public URL in server.json (host spec spec.gate.publicUrl) reaches the server; a malformed one is refused as state.
    writeServerSettings(gatePaths(fx.root).server, {
      version: 1,
      host: 'edge-1',
      address: '127.0.0.1',
      port: 9777,
      tls: null,
      publicUrl: 'https://previews.example.test',
    });
    const proxied = await agentvm(['gate', 'serve', '--root', fx.root, '--host', 'edge-1', '--print-unit']);
    expect(proxied.stdout).toMatch(/ --public-url https:\/\/previews\.example\.test$/m);
    writeServerSettings(gatePaths(fx.root).server, {
      version: 1,
      host: 'edge-1',
      address: '127.0.0.1',
      port: 9777,
      tls: null,
      routing: 'path',
      domain: 'previews.example.test',
    });
    const pathRouted = await agentvm(['gate', 'serve', '--root', fx.root, '--host', 'edge-1', '--print-unit']);
    expect(pathRouted.stdout).toMatch(/ --routing path --domain previews\.example\.test$/m);
    const badDomain = await agentvm([
      'gate',
      'serve',
      '--root',
      fx.root,
      '--host',
      'edge-1',
      '--domain',
      'Evil..example',
    ]);
    expect(badDomain.code).toBe(1);
    expect(badDomain.stderr).toContain('is not a lowercase DNS name');
    writeFileSync(
      gatePaths(fx.root).server,
      '{"version":1,"host":"edge-1","address":"127.0.0.1","port":9777,"tls":null,"publicUrl":"ftp://x/"}',
    );
    const badUrl = await agentvm(['gate', 'serve', '--root', fx.root, '--host', 'edge-1']);
    expect(badUrl.code).toBe(1);
    expect(badUrl.stderr).toContain('publicUrl must be an http(s) origin');

    writeFileSync(gatePaths(fx.root).server, '{"version":1,"address":"127.0.0.1"}');
    const bad = await agentvm(['gate', 'serve', '--root', fx.root, '--host', 'edge-1']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('gate.invalid-state');
  });
});
