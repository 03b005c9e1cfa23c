// Rendering gateway units from desired config: one runtime source, secrets by reference, hardening per tier —
// and every rendered unit checked by the real `systemd-analyze verify`, with `systemd-analyze security` exposure
// measured per tier and scope (recorded in decisions/notes-systemd-provider.md).
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { securityExposure, verifyUnits, type UnitScope } from './analyze.js';
import { SystemdCode } from './codes.js';
import {
  GATEWAY_PATH,
  gatewayDiagnostics,
  gatewayDigest,
  parseGatewayConfig,
  renderGateway,
  RUNTIME_DIGEST_ENV,
  runtimeDigestOf,
  type GatewayConfig,
  type RenderContext,
  type RiskTier,
} from './gateway-unit.js';
import { normalizeUnit, parseUnitFile, splitWords, valuesOf } from './unit-file.js';

const hasAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;
const inCi = process.env.CI === 'true';
if (!hasAnalyze && !inCi)
  console.warn('gateway-unit.test: skipping systemd-analyze checks: not installed (apt-get install systemd)');

const ADDRESS = 'unit.orchestrator.core';
const RELEASE = 'fe0645c4528837f2588a33651153f918d89da72d';
const TIERS: RiskTier[] = ['low', 'moderate', 'high', 'critical'];

function config(over: Partial<GatewayConfig> = {}): GatewayConfig {
  return {
    workload: 'orchestrator',
    profile: 'core',
    entrypoint: ['python3', '-m', 'orchestrator'],
    env: { AGENT_LISTEN_PORT: '8101', PYTHONDONTWRITEBYTECODE: '1', AGENT_REQUIRED_CREDENTIALS: 'llm-api-key' },
    listen: { port: 8101 },
    health: { path: '/healthz', timeoutSeconds: 30 },
    reload: false,
    riskTier: 'high',
    egress: [],
    secrets: [{ name: 'llm-api-key', ref: 'file:/etc/agentvm/secrets/orchestrator-llm-api-key' }],
    releaseId: RELEASE,
    scope: 'system',
    ...over,
  };
}

const ctx = (scope: UnitScope): RenderContext => ({
  scope,
  releasesDir: '/var/lib/agentvm/releases',
  runtimeDir: scope === 'system' ? '/run' : '/run/user/1000',
});

function render(over: Partial<GatewayConfig> = {}) {
  const c = config(over);
  return renderGateway(c, ctx(c.scope), ADDRESS);
}

function service(over: Partial<GatewayConfig> = {}) {
  const r = render(over);
  expect(r.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
  return normalizeUnit(r.rendered!.template.parsed, r.rendered!.dropIn.parsed).Service!;
}

describe('parseGatewayConfig', () => {
  it('accepts what expand.ts produces and names the bad fields otherwise', () => {
    const ok = parseGatewayConfig({ ...config(), canary: null }, ADDRESS);
    expect(ok.diagnostics).toEqual([]);
    expect(ok.config?.workload).toBe('orchestrator');
    const bad = parseGatewayConfig(
      { ...config(), releaseId: null, listen: { port: 1, socket: 'x' }, riskTier: 'extreme' },
      ADDRESS,
    );
    expect(bad.config).toBeUndefined();
    expect(bad.diagnostics.map((d) => d.summary).join('\n')).toMatch(/listen[\s\S]*riskTier[\s\S]*releaseId/);
    expect(parseGatewayConfig({ ...config() }, 'unit.orchestrator').diagnostics[0]?.code).toBe(
      SystemdCode.invalidConfig,
    );
  });
});

describe('renderGateway: one runtime source', () => {
  it('runs from exactly one release directory', () => {
    const s = service();
    const dir = `/var/lib/agentvm/releases/orchestrator/${RELEASE}`;
    expect(s.WorkingDirectory).toEqual([dir]);
    expect(s.BindReadOnlyPaths).toEqual([dir]);
    // The template's fail-closed ExecStart=/bin/false is reset, then replaced by the profile's argv.
    expect(s.ExecStart).toEqual(['', JSON.stringify(['python3', '-m', 'orchestrator'])]);
    expect(s.Environment).toContain(`PATH=${GATEWAY_PATH}`);
  });

  it('resolves a path entrypoint inside the release and refuses anything outside it', () => {
    expect(service({ entrypoint: ['bin/server', '--flag'] }).ExecStart).toEqual([
      '',
      JSON.stringify([`/var/lib/agentvm/releases/orchestrator/${RELEASE}/bin/server`, '--flag']),
    ]);
    expect(render({ entrypoint: ['/usr/bin/python3', 'x'] }).diagnostics.map((d) => d.code)).toEqual([
      SystemdCode.runtimeSource,
    ]);
    expect(render({ entrypoint: ['../other/bin'] }).diagnostics.map((d) => d.code)).toEqual([
      SystemdCode.runtimeSource,
    ]);
    expect(render({ env: { PATH: '/opt/bin' } }).diagnostics.map((d) => d.code)).toEqual([SystemdCode.envConflict]);
    expect(render({ env: { AGENT_LISTEN_PORT: '9999' } }).diagnostics.map((d) => d.code)).toEqual([
      SystemdCode.envConflict,
    ]);
  });

  it('escapes values and refuses what cannot be escaped', () => {
    const s = service({
      env: { AGENT_LISTEN_PORT: '8101', NOTE: 'costs 100% of "$HOME"' },
      entrypoint: ['python3', '-c', 'print("a b")'],
    });
    expect(s.Environment).toContain('NOTE=costs 100%% of "$HOME"');
    expect(JSON.parse(s.ExecStart![1]!)).toEqual(['python3', '-c', 'print("a b")']);
    const bad = render({ env: { AGENT_LISTEN_PORT: '8101', NOTE: 'two\nlines' } });
    expect(bad.rendered).toBeUndefined();
    expect(bad.diagnostics.map((d) => d.code)).toEqual([SystemdCode.unsafeValue]);
  });

  it('is deterministic and marks the drop-in with its owner address', () => {
    const a = render().rendered!;
    const b = render().rendered!;
    expect(a.dropIn.text).toBe(b.dropIn.text);
    expect(a.digest).toBe(b.digest);
    expect(valuesOf(a.dropIn.parsed, 'Unit', 'X-AgentvmOwner')).toEqual([ADDRESS]);
    expect(a.dropIn.name).toBe('agent-gateway@core.service.d/50-agentvm.conf');
    expect(valuesOf(a.dropIn.parsed, 'Service', 'Environment')).toContain(`"${RUNTIME_DIGEST_ENV}=${a.runtimeDigest}"`);
  });

  it('changes the runtime digest only for settings that need a restart', () => {
    const base = render().rendered!;
    expect(render({ env: { ...config().env, EXTRA: '1' } }).rendered!.runtimeDigest).not.toBe(base.runtimeDigest);
    expect(render({ releaseId: '7e6cab4322ce8353d0750de9a4b10ceba66bf3ac' }).rendered!.runtimeDigest).not.toBe(
      base.runtimeDigest,
    );
    // ExecReload= is reload-class: the running process does not change.
    expect(render({ reload: true }).rendered!.runtimeDigest).toBe(base.runtimeDigest);
  });

  it('sets the listener defaults the gateways read, and a runtime dir for a unix socket', () => {
    const s = service({
      env: {},
      listen: { socket: 'core.sock' },
      health: { path: '/healthz', timeoutSeconds: 5 },
      scope: 'user',
    });
    expect(s.Environment).toEqual(
      expect.arrayContaining(['AGENT_PROFILE=core', 'AGENT_LISTEN_SOCKET=/run/user/1000/agent-gateway/core/core.sock']),
    );
    expect(s.RuntimeDirectory).toEqual(['agent-gateway/core']);
    expect(render({ env: {}, listen: { socket: 'core.sock' }, scope: 'user' }).rendered!.health?.socketPath).toBe(
      '/run/user/1000/agent-gateway/core/core.sock',
    );
  });
});

describe('renderGateway: secrets by reference', () => {
  it('maps file:, systemd-creds: and credstore: to credentials and never holds a value', () => {
    const s = service({
      secrets: [
        { name: 'llm-api-key', ref: 'file:/etc/agentvm/secrets/llm' },
        { name: 'chat-token', ref: 'systemd-creds:/etc/agentvm/credstore/chat.cred' },
        { name: 'db', ref: 'credstore:db' },
        { name: 'other', ref: 'credstore:shared-token' },
      ],
    });
    expect(s.LoadCredential).toEqual(['llm-api-key:/etc/agentvm/secrets/llm', 'db', 'other:shared-token']);
    expect(s.LoadCredentialEncrypted).toEqual(['chat-token:/etc/agentvm/credstore/chat.cred']);
  });

  it('explains what it cannot deliver', () => {
    const r = render({
      secrets: [
        { name: 'a', ref: 'env-file:/etc/x.env#TOKEN' },
        { name: 'b', ref: 'vault:kv/app#token' },
      ],
    });
    expect(r.rendered).toBeUndefined();
    expect(r.diagnostics.map((d) => [d.code, d.severity])).toEqual([
      [SystemdCode.secretUnsupported, 'error'],
      [SystemdCode.secretUnsupported, 'error'],
    ]);
    expect(r.diagnostics[0]!.summary).toMatch(/credential store/); // env-file: needs a confined unit (below)
    const user = render({ scope: 'user', secrets: [{ name: 'c', ref: 'systemd-creds:/x.cred' }] });
    expect(user.diagnostics.map((d) => d.code)).toEqual([SystemdCode.secretUnsupported]);
    expect(render({ secrets: [{ name: 'd', ref: 'file:/etc/secret dir/x' }] }).diagnostics.map((d) => d.code)).toEqual([
      SystemdCode.unsafeValue,
    ]);
  });
});

describe('renderGateway: hardening and egress', () => {
  it('denies IP traffic except loopback and the listed addresses; host names are reported, not allowed', () => {
    const r = render({
      egress: [
        { host: '10.0.0.5', port: 443 },
        { host: '2001:db8::1', port: 443 },
        { host: '192.0.2.0/24', port: 53 },
        { host: 'chat.example.com', port: 443 },
      ],
    });
    const s = normalizeUnit(r.rendered!.dropIn.parsed).Service!;
    expect(s.IPAddressDeny).toEqual(['any']);
    expect(splitWords(s.IPAddressAllow![0]!)).toEqual(['localhost', '10.0.0.5', '2001:db8::1', '192.0.2.0/24']);
    expect(r.diagnostics.map((d) => [d.code, d.severity])).toEqual([[SystemdCode.egressHostname, 'warning']]);
    expect(r.diagnostics[0]!.summary).toContain('chat.example.com:443');
  });

  it('only adds protection with each tier, and limits memory and tasks tighter', () => {
    let previous: Set<string> | undefined;
    let previousMemory = Infinity;
    for (const tier of TIERS) {
      const s = service({ riskTier: tier });
      const keys = new Set(Object.keys(s));
      if (previous) for (const k of previous) expect(keys.has(k), `${tier} keeps ${k}`).toBe(true);
      previous = keys;
      const memory = Number(s.MemoryMax![0]!.replace(/G$/, '000').replace(/M$/, ''));
      expect(memory).toBeLessThan(previousMemory);
      previousMemory = memory;
    }
  });

  it('user scope always adds PrivateUsers=yes and keeps /run/user reachable; system scope runs as a dynamic user', () => {
    for (const tier of TIERS) {
      expect(service({ riskTier: tier, scope: 'user' }).PrivateUsers).toEqual(['yes']);
      expect(service({ riskTier: tier, scope: 'user' }).ProtectHome).toEqual(['tmpfs']);
      expect(service({ riskTier: tier, scope: 'system' }).DynamicUser).toEqual(['yes']);
    }
  });

  it('takes the network away at critical when nothing needs it', () => {
    const s = service({ riskTier: 'critical', listen: { socket: 'c.sock' }, env: {}, egress: [] });
    expect(s.PrivateNetwork).toEqual(['yes']);
    expect(s.RestrictAddressFamilies).toEqual(['', 'AF_UNIX']);
    expect(service({ riskTier: 'critical' }).PrivateNetwork).toBeUndefined();
  });
});

describe.skipIf(!hasAnalyze && !inCi)('rendered units under systemd-analyze (real)', () => {
  const scores: string[] = [];
  afterAll(() => {
    if (scores.length)
      console.info(`systemd-analyze security exposure (0 = locked down … 10 = unprotected):\n${scores.join('\n')}`);
  });

  const variants: Array<[string, Partial<GatewayConfig>]> = [
    ['port', {}],
    ['socket, no egress', { listen: { socket: 'core.sock' }, env: {}, egress: [] }],
  ];
  for (const scope of ['system', 'user'] as const) {
    for (const [variant, over] of variants) {
      it(`every tier verifies clean in ${scope} scope (${variant}) and is less exposed than the tier below`, async () => {
        let previous = 10;
        const row: string[] = [];
        for (const tier of TIERS) {
          const r = render({
            ...over,
            riskTier: tier,
            scope,
            reload: true,
            egress: over.egress ?? [{ host: '10.0.0.5', port: 443 }],
          });
          expect(r.diagnostics.filter((d) => d.severity === 'error')).toEqual([]);
          const files = [r.rendered!.template, r.rendered!.dropIn].map((f) => ({ name: f.name, text: f.text }));
          expect(await verifyUnits(files, { scope }), `${scope}/${tier}`).toEqual([]);
          const dir = mkdtempSync(path.join(os.tmpdir(), 'agentvm-exposure-'));
          try {
            for (const f of files) {
              mkdirSync(path.dirname(path.join(dir, f.name)), { recursive: true });
              writeFileSync(path.join(dir, f.name), f.text);
            }
            const score = await securityExposure(path.join(dir, 'agent-gateway@core.service'), { scope });
            expect(score).not.toBeNull();
            expect(score!, `${scope}/${tier}`).toBeLessThanOrEqual(previous);
            previous = score!;
            row.push(`${tier} ${score}`);
          } finally {
            rmSync(dir, { recursive: true, force: true });
          }
        }
        // The measured table (systemd 252): the baseline is already well below a bare unit's 9.6.
        expect(Number(row[0]!.split(' ')[1])).toBeLessThan(4);
        expect(previous).toBeLessThan(1.6);
        scores.push(`${scope} (${variant}): ${row.join(', ')}`);
      });
    }
  }

  it('a unit systemd would refuse is caught by verify (the check can fail)', async () => {
    const r = render().rendered!;
    const broken = r.dropIn.text.replace('ProtectSystem=strict', 'ProtectSystem=very');
    const ds = await verifyUnits([
      { name: r.template.name, text: r.template.text },
      { name: r.dropIn.name, text: broken },
    ]);
    expect(ds.map((d) => d.code)).toContain('systemd.invalid-value');
  });
});

describe('the rendered drop-in parses back to what was rendered', () => {
  it('round-trips', () => {
    const r = render({ env: { AGENT_LISTEN_PORT: '8101', Q: 'a "quoted" \\ value' } }).rendered!;
    expect(normalizeUnit(parseUnitFile(r.dropIn.text))).toEqual(normalizeUnit(r.dropIn.parsed));
    expect(normalizeUnit(r.dropIn.parsed).Service!.Environment).toContain('Q=a "quoted" \\ value');
  });
});

/** The argv of the drop-in's (last, non-empty) ExecStart= line. */
function execArgv(dropIn: string): string[] {
  const line = dropIn
    .split('\n')
    .filter((l) => l.startsWith('ExecStart=') && l !== 'ExecStart=')
    .at(-1)!;
  return splitWords(line.slice('ExecStart='.length));
}

describe('confined gateway units (decisions/0016)', () => {
  const confined = (scope: UnitScope): RenderContext => ({
    ...ctx(scope),
    egress: {
      node: process.execPath,
      shim: '/usr/lib/agentvm/dist/egress/unit-shim.js',
      socketsDir: '/run/agentvm/egress',
    },
  });
  for (const scope of ['system', 'user'] as const) {
    it(`every tier in ${scope} scope gets its own network namespace, only its own proxy socket, the shim and the proxy variables, and verifies clean`, async () => {
      for (const tier of TIERS) {
        const r = renderGateway(
          config({ riskTier: tier, scope, egress: [{ host: 'api.example.com', port: 443 }] }),
          confined(scope),
          ADDRESS,
        );
        expect(r.diagnostics, `${scope}/${tier}`).toEqual([]);
        const svc = normalizeUnit(r.rendered!.template.parsed, r.rendered!.dropIn.parsed).Service!;
        expect(svc.PrivateNetwork, tier).toEqual(['yes']);
        expect(svc.TemporaryFileSystem).toEqual(['/run/agentvm/egress:ro']);
        expect(svc.BindReadOnlyPaths).toContain(`/run/agentvm/egress/${ADDRESS}`);
        expect(svc.IPAddressAllow).toEqual(['localhost']);
        expect(svc.KillMode, 'the stop signal goes to the shim alone, which forwards one').toEqual(['mixed']);
        const argv = execArgv(r.rendered!.dropIn.text);
        expect(argv.slice(0, 2)).toEqual([process.execPath, '/usr/lib/agentvm/dist/egress/unit-shim.js']);
        expect(argv.slice(argv.indexOf('--') + 1)).toEqual(['python3', '-m', 'orchestrator']);
        expect(argv).toContain(`/run/agentvm/egress/${ADDRESS}/proxy.sock`);
        expect(svc.Environment).toContain('HTTPS_PROXY=http://127.0.0.1:3128');
        expect(svc.Environment).toContain('NO_PROXY=localhost,127.0.0.1,::1');
        expect(r.rendered!.dropIn.text).not.toContain('api.example.com');
        const files = [r.rendered!.template, r.rendered!.dropIn].map((f) => ({ name: f.name, text: f.text }));
        expect(await verifyUnits(files, { scope }), `${scope}/${tier}`).toEqual([]);
      }
    });
  }

  it("an allowlist change does not change the unit (it lives in the proxy's rules), and a profile cannot set the proxy variables", () => {
    const a = renderGateway(config({ egress: [] }), confined('user'), ADDRESS).rendered!;
    const b = renderGateway(
      config({ egress: [{ host: 'api.example.com', port: 443 }] }),
      confined('user'),
      ADDRESS,
    ).rendered!;
    expect(b.digest).toBe(a.digest);
    const r = renderGateway(
      config({ env: { AGENT_LISTEN_PORT: '8101', HTTPS_PROXY: 'http://evil.example:1' } }),
      confined('user'),
      ADDRESS,
    );
    expect(r.diagnostics.map((d) => d.code)).toContain(SystemdCode.envConflict);
    expect(
      execArgv(
        renderGateway(config({ listen: { port: 3128 }, env: { AGENT_LISTEN_PORT: '3128' } }), confined('user'), ADDRESS)
          .rendered!.dropIn.text,
      ),
    ).toContain('3129');
  });
});

describe('injected and stored credentials (decisions/0023)', () => {
  const store = (scope: UnitScope): RenderContext => ({
    ...ctx(scope),
    egress: {
      node: process.execPath,
      shim: '/usr/lib/agentvm/dist/egress/unit-shim.js',
      socketsDir: '/run/agentvm/egress',
      credstoreDir: '/var/lib/agentvm/credstore',
      caDir: '/var/lib/agentvm/egress-ca',
    },
  });
  for (const scope of ['system', 'user'] as const) {
    it(`GIVEN an injected and an env-file: secret in ${scope} scope THEN the unit loads a placeholder and the stored value, trusts the agentvm CA, cannot see the store or the CA key, and verifies clean`, async () => {
      const r = renderGateway(
        config({
          scope,
          riskTier: 'critical',
          egress: [{ host: 'api.example.com', port: 443 }],
          secrets: [
            { name: 'llm', ref: 'file:/etc/agentvm/llm', inject: { host: 'api.example.com', header: 'x-api-key' } },
            { name: 'db', ref: 'env-file:/etc/agentvm/db.env#DB_PASSWORD' },
          ],
        }),
        store(scope),
        ADDRESS,
      );
      expect(r.diagnostics).toEqual([]);
      const svc = normalizeUnit(r.rendered!.template.parsed, r.rendered!.dropIn.parsed).Service!;
      expect(svc.LoadCredential).toEqual([
        `llm:/var/lib/agentvm/credstore/${ADDRESS}/llm.placeholder`,
        `db:/var/lib/agentvm/credstore/${ADDRESS}/db.value`,
      ]);
      expect(svc.InaccessiblePaths).toEqual(
        expect.arrayContaining(['-/var/lib/agentvm/credstore', '-/var/lib/agentvm/egress-ca/ca.key']),
      );
      expect(svc.BindReadOnlyPaths).toContain(
        '/var/lib/agentvm/egress-ca/ca.pem /var/lib/agentvm/egress-ca/bundle.pem',
      );
      for (const v of ['SSL_CERT_FILE', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE'])
        expect(svc.Environment).toContain(`${v}=/var/lib/agentvm/egress-ca/bundle.pem`);
      expect(svc.Environment).toContain('NODE_EXTRA_CA_CERTS=/var/lib/agentvm/egress-ca/ca.pem');
      expect(r.rendered!.credentials.map((c) => [c.name, c.injected ?? false])).toEqual([
        ['llm', true],
        ['db', false],
      ]);
      const files = [r.rendered!.template, r.rendered!.dropIn].map((f) => ({ name: f.name, text: f.text }));
      expect(await verifyUnits(files, { scope })).toEqual([]);
    });
  }

  it('GIVEN no injected secret THEN the unit gets no CA variables, and a profile cannot set them', () => {
    const svc = normalizeUnit(renderGateway(config({}), store('user'), ADDRESS).rendered!.dropIn.parsed).Service!;
    expect(svc.Environment!.some((e) => e.startsWith('SSL_CERT_FILE='))).toBe(false);
    const r = renderGateway(
      config({ env: { AGENT_LISTEN_PORT: '8101', SSL_CERT_FILE: '/tmp/evil.pem' } }),
      store('user'),
      ADDRESS,
    );
    expect(r.diagnostics.map((d) => d.code)).toContain(SystemdCode.envConflict);
  });

  it('GIVEN an injected secret whose value apply cannot read (credstore:) THEN a diagnostic says how to give it', () => {
    const r = renderGateway(
      config({ secrets: [{ name: 'k', ref: 'credstore:k', inject: { host: 'a.example', header: 'x-k' } }] }),
      store('user'),
      ADDRESS,
    );
    expect(r.diagnostics.map((d) => d.code)).toEqual([SystemdCode.secretUnsupported]);
    expect(r.diagnostics[0]!.detail).toContain('file:/abs/path or env-file:');
  });
});

describe('what a render computes equals what reading its files back computes (ADR 0027)', () => {
  const variants: Array<[string, Partial<GatewayConfig>, RenderContext]> = [
    ['plain', {}, ctx('system')],
    ['user scope, socket', { scope: 'user', listen: { socket: 'g.sock' }, env: {} }, ctx('user')],
    [
      'confined, injected',
      {
        secrets: [{ name: 'k', ref: 'file:/etc/k', inject: { host: 'a.example', header: 'x' } }],
        egress: [{ host: 'a.example', port: 443 }],
      },
      {
        ...ctx('system'),
        egress: {
          node: '/usr/bin/node',
          shim: '/opt/agentvm/shim.js',
          socketsDir: '/run/agentvm/egress',
          credstoreDir: '/var/lib/agentvm/credstore',
          caDir: '/var/lib/agentvm/egress-ca',
        },
      },
    ],
    ['escaped env', { env: { Q: 'a "quoted" \\ value %h $HOME' }, reload: true }, ctx('system')],
  ];
  for (const [name, over, context] of variants)
    it(`${name}: the parsed files, the normalised unit, its digest and its runtime digest`, () => {
      const r = renderGateway(config(over), context, ADDRESS).rendered!;
      expect(r).toBeDefined();
      const template = parseUnitFile(r.template.text);
      const dropIn = parseUnitFile(r.dropIn.text);
      expect(r.template.parsed).toEqual(template);
      expect(r.dropIn.parsed).toEqual(dropIn);
      const normalized = normalizeUnit(template, dropIn);
      expect(JSON.stringify(r.normalized)).toBe(JSON.stringify(normalized));
      expect(r.digest).toBe(gatewayDigest(normalized));
      expect(r.runtimeDigest).toBe(runtimeDigestOf(template, dropIn));
    });

  it('validation sees exactly the diagnostics of a full render, errors and warnings alike', () => {
    const configs: Array<Partial<GatewayConfig>> = [
      {},
      { entrypoint: ['/usr/bin/python3'] },
      { entrypoint: ['../escape'] },
      { env: { PATH: '/tmp', BAD: 'a\nb' } },
      { env: { AGENT_LISTEN_PORT: '1' } },
      { secrets: [{ name: 'v', ref: 'vault:kv/x' }] },
      { egress: [{ host: 'api.example.com', port: 443 }] },
      { releaseId: 'has space' },
      { workload: 'a%b' },
      { scope: 'user', listen: { socket: 's.sock' } },
    ];
    for (const over of configs) {
      const c = config(over);
      for (const context of [ctx(c.scope), { ...ctx(c.scope), runtimeDir: null }])
        expect(gatewayDiagnostics(c, context, ADDRESS)).toEqual(renderGateway(c, context, ADDRESS).diagnostics);
    }
  });
});
