// The pure unit decision: GIVEN what is desired, live and locked, THEN the action, effect, reasons and drift.
import { describe, expect, it } from 'vitest';
import type { LockedResource } from '../../model/resources.js';
import { assessGateway } from './gateway-plan.js';
import { renderGateway, type GatewayConfig, type RenderedGateway } from './gateway-unit.js';
import type { LiveGateway } from './live-unit.js';
import { SystemdProvider } from './provider.js';
import { normalizeUnit, parseUnitFile } from './unit-file.js';

const ADDRESS = 'unit.orchestrator.core';
const V1 = 'fe0645c4528837f2588a33651153f918d89da72d';
const V2 = '7e6cab4322ce8353d0750de9a4b10ceba66bf3ac';
const CTX = { scope: 'user' as const, releasesDir: '/srv/releases', runtimeDir: '/run/user/1000' };

function config(over: Partial<GatewayConfig> = {}): GatewayConfig {
  return {
    workload: 'orchestrator',
    profile: 'core',
    entrypoint: ['python3', '-m', 'orchestrator'],
    env: { AGENT_LISTEN_PORT: '8101' },
    listen: { port: 8101 },
    health: { path: '/healthz', timeoutSeconds: 5 },
    reload: true,
    riskTier: 'moderate',
    egress: [],
    secrets: [{ name: 'tok', ref: 'file:/etc/tok' }],
    releaseId: V1,
    scope: 'user',
    ...over,
  };
}
const render = (over: Partial<GatewayConfig> = {}): RenderedGateway =>
  renderGateway(config(over), CTX, ADDRESS).rendered!;

/** The live state of a host where `rendered` is installed and running exactly as written. */
function live(rendered: RenderedGateway, over: Partial<LiveGateway> = {}): LiveGateway {
  return {
    context: { ...CTX, mode: 'online', unitDir: '/home/u/.config/systemd/user' },
    owner: ADDRESS,
    templatePresent: true,
    templateOwned: true,
    normalized: rendered.normalized,
    releaseId: rendered.releaseDir.split('/').pop()!,
    runtimeDigest: rendered.runtimeDigest,
    foreign: [],
    manager: {
      loadState: 'loaded',
      activeState: 'active',
      subState: 'running',
      needDaemonReload: false,
      unitFileState: 'enabled',
    },
    running: { runtimeDigest: rendered.runtimeDigest, releaseCurrent: true },
    credentials: [{ name: 'tok', state: 'current' }],
    ...over,
  };
}

function locked(rendered: RenderedGateway, c: GatewayConfig = config()): LockedResource {
  return {
    address: ADDRESS,
    provider: 'systemd',
    workload: 'orchestrator',
    identity: 'orchestrator/core',
    digest: rendered.digest,
    commit: null,
    appliedAt: '2026-01-01T00:00:00Z',
    attributes: { releaseId: c.releaseId, scope: c.scope, config: c },
  };
}

const codes = (reasons: Array<{ code: string }>) => reasons.map((r) => r.code);

describe('assessGateway', () => {
  it('creates a unit that is not there', () => {
    const a = assessGateway({ address: ADDRESS, rendered: render(), exists: false });
    expect([a.action, a.effect, codes(a.reasons), a.drift]).toEqual(['create', 'restart', ['new'], []]);
  });

  it('does nothing when the unit runs exactly as desired', () => {
    const r = render();
    const a = assessGateway({
      address: ADDRESS,
      rendered: r,
      live: live(r),
      exists: true,
      liveDigest: r.digest,
      locked: locked(r),
    });
    expect([a.action, a.effect, a.reasons, a.drift]).toEqual(['noop', 'none', [], []]);
  });

  it('restarts for an env change and names the setting, not its value', () => {
    const before = render();
    const after = render({ env: { AGENT_LISTEN_PORT: '8101', MODE: 'secret-looking-value' } });
    const a = assessGateway({
      address: ADDRESS,
      rendered: after,
      live: live(before),
      exists: true,
      liveDigest: before.digest,
      locked: locked(before),
    });
    expect([a.action, a.effect, codes(a.reasons), a.restart]).toEqual(['update', 'restart', ['config-changed'], true]);
    expect(a.reasons[0]!.message).toContain('Service.Environment (restart)');
    expect(JSON.stringify(a)).not.toContain('secret-looking-value');
  });

  it('reloads for a change the manager applies in place', () => {
    const before = render();
    const after = render({ riskTier: 'moderate' });
    const changed: RenderedGateway = {
      ...after,
      normalized: { ...after.normalized, Service: { ...after.normalized.Service!, MemoryMax: ['700M'] } },
    };
    const a = assessGateway({
      address: ADDRESS,
      rendered: changed,
      live: live(before),
      exists: true,
      liveDigest: before.digest,
      locked: locked(before),
    });
    expect([a.action, a.effect, a.reload, a.restart]).toEqual(['update', 'reload', true, false]);
  });

  it('says which release changes', () => {
    const before = render();
    const a = assessGateway({
      address: ADDRESS,
      rendered: render({ releaseId: V2 }),
      live: live(before),
      exists: true,
      liveDigest: before.digest,
      locked: locked(before),
    });
    expect([a.action, a.effect, codes(a.reasons)]).toEqual(['update', 'restart', ['source-changed']]);
    expect(a.reasons[0]!.message).toBe(`${ADDRESS}: release ${V1} → ${V2}`);
  });

  it('reports a hand edit as drift and plans to undo it with the effect the edit needs', () => {
    const r = render();
    const edited = normalizeUnit(
      parseUnitFile(r.template.text),
      parseUnitFile(r.dropIn.text.replace(/^Description=.*$/m, 'Description=hand edited')),
    );
    const a = assessGateway({
      address: ADDRESS,
      rendered: r,
      live: live(r, { normalized: edited }),
      exists: true,
      liveDigest: 'sha256:other',
      locked: locked(r),
      lockedRendered: r,
    });
    expect([a.action, a.effect, codes(a.drift)]).toEqual(['replace', 'none', ['live-modified']]);
    expect(a.drift[0]!.message).toContain('(Unit.Description)');
  });

  it('does not restart a process known to run the desired configuration when only the files differ', () => {
    const r = render();
    const editedText = r.dropIn.text.replace('"AGENT_LISTEN_PORT=8101"', '"AGENT_LISTEN_PORT=8101" "EXTRA=1"');
    const edited = normalizeUnit(r.template.parsed, parseUnitFile(editedText));
    const a = assessGateway({
      address: ADDRESS,
      rendered: r,
      live: live(r, { normalized: edited, runtimeDigest: 'of-the-edited-files' }),
      exists: true,
      liveDigest: 'sha256:edited',
      locked: locked(r),
      lockedRendered: r,
    });
    expect([a.action, a.effect, a.restart]).toEqual(['replace', 'none', false]);
    expect(a.drift.map((d) => d.message).join('\n')).toMatch(/Service.Environment[\s\S]*another configuration/);
  });

  it('treats a second runtime source as drift that needs a restart', () => {
    const r = render();
    const foreign = [
      {
        path: '/home/u/.config/systemd/user/agent-gateway@core.service.d/90-override.conf',
        kind: 'drop-in' as const,
        reach: 'instance' as const,
        keys: ['Service.ExecStart'],
        removable: true,
      },
    ];
    const a = assessGateway({
      address: ADDRESS,
      rendered: r,
      live: live(r, { foreign }),
      exists: true,
      liveDigest: r.digest,
      locked: locked(r),
    });
    expect([a.action, a.effect, codes(a.drift)]).toEqual(['replace', 'restart', ['live-modified']]);
    expect(a.drift[0]!.message).toContain('90-override.conf sets Service.ExecStart');
  });

  it('restarts a unit that is not running, or runs another configuration than its files', () => {
    const r = render();
    const stopped = assessGateway({
      address: ADDRESS,
      rendered: r,
      live: live(r, {
        manager: {
          loadState: 'loaded',
          activeState: 'failed',
          subState: 'failed',
          needDaemonReload: false,
          unitFileState: 'enabled',
        },
        running: null,
      }),
      exists: true,
      liveDigest: r.digest,
      locked: locked(r),
    });
    expect([stopped.action, stopped.effect]).toEqual(['replace', 'restart']);
    expect(stopped.drift[0]!.message).toContain('failed');
    const stale = assessGateway({
      address: ADDRESS,
      rendered: r,
      live: live(r, { running: { runtimeDigest: 'older', releaseCurrent: true } }),
      exists: true,
      liveDigest: r.digest,
      locked: locked(r),
    });
    expect([stale.action, stale.effect]).toEqual(['replace', 'restart']);
  });

  it('restarts when a credential changed since the start, without calling it drift', () => {
    const r = render();
    const a = assessGateway({
      address: ADDRESS,
      rendered: r,
      live: live(r, { credentials: [{ name: 'tok', state: 'changed' }] }),
      exists: true,
      liveDigest: r.digest,
      locked: locked(r),
    });
    expect([a.action, a.effect, codes(a.reasons), a.drift]).toEqual(['update', 'restart', ['dependency-changed'], []]);
  });

  it('refuses a unit name that belongs to another address', () => {
    const r = render();
    const a = assessGateway({
      address: ADDRESS,
      rendered: r,
      live: live(r, { owner: 'unit.other.core' }),
      exists: false,
    });
    expect(a.action).toBe('noop');
    expect(a.diagnostics.map((d) => d.code)).toEqual(['systemd.unit-name-taken']);
  });

  it('deletes what is no longer desired, and reports a missing drop-in as drift', () => {
    const r = render();
    expect(assessGateway({ address: ADDRESS, live: live(r), exists: true, locked: locked(r) }).action).toBe('delete');
    expect(assessGateway({ address: ADDRESS, exists: false }).action).toBe('noop');
    const gone = assessGateway({ address: ADDRESS, rendered: r, exists: false, locked: locked(r) });
    expect([gone.action, codes(gone.drift)]).toEqual(['replace', ['live-missing']]);
  });
});

describe('SystemdProvider.plan (pure, over read results)', () => {
  const provider = new SystemdProvider();
  const desired = {
    address: ADDRESS,
    provider: 'systemd',
    workload: 'orchestrator',
    identity: 'orchestrator/core',
    dependsOn: ['release.orchestrator'],
    config: { ...config(), canary: null },
  };

  it('plans a create without live attributes, and is deterministic', () => {
    const res = provider.plan({
      address: ADDRESS,
      desired,
      live: { address: ADDRESS, provider: 'systemd', exists: false },
    });
    expect([res.action, res.effect]).toEqual(['create', 'restart']);
    expect(
      provider.plan({ address: ADDRESS, desired, live: { address: ADDRESS, provider: 'systemd', exists: false } }),
    ).toEqual(res);
  });

  it('plans from the live attributes read returns', () => {
    const r = render();
    const liveResource = {
      address: ADDRESS,
      provider: 'systemd',
      exists: true,
      identity: 'orchestrator/core',
      digest: r.digest,
      attributes: live(r) as unknown as Record<string, unknown>,
    };
    expect(provider.plan({ address: ADDRESS, desired, live: liveResource, locked: locked(r) }).action).toBe('noop');
    const v2 = { ...desired, config: { ...desired.config, releaseId: V2 } };
    expect(provider.plan({ address: ADDRESS, desired: v2, live: liveResource, locked: locked(r) })).toMatchObject({
      action: 'update',
      effect: 'restart',
    });
  });
});
