// Issue 13 end to end: the real `agentvm` CLI applies two workloads onto a REAL systemd user manager; each profile runs
// in its own network namespace and reaches the world only through agentvm-egress.service. The "internet" (upstreams
// and the resolver the proxy asks) is a network namespace this test creates (support/egress-net.ts). The hostile
// workload (fixtures/egress-probe/probe.mjs) tries, from INSIDE its unit:
//   through the proxy: its allowlisted name (reached), another name, an unlisted IP literal, names resolving to
//   127.0.0.1 / 10.0.0.1 / 169.254.169.254, a TLS server name that differs from the CONNECT host (all refused with a
//   reason, all audited);
//   around the proxy: the other workload's port, the preview gate, a loopback service this test starts, the upstream's
//   address, DNS (all fail).
// The gate and the health checks still reach both profiles (through the host-side bridge), and an allowlist change
// re-applies by reloading the proxy: no unit restarts and the other profile's open connection survives.

import { readFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt } from './support/cli.js';
import { egressNetSupport, startEgressNet, type EgressNet } from './support/egress-net.js';
import { exchange, request as gateRequest } from './support/gate.js';
import {
  execdPid,
  freePort,
  gatewayRepo,
  getJson,
  json,
  verifyUnitDir,
  type GatewayRepo,
} from './support/gateway-repo.js';
import { gitdir, type GitDir } from './support/gitdir.js';
import { startUserManager, userManagerSupport, type UserManager } from './support/systemd-user.js';

const support = userManagerSupport();
const net = egressNetSupport();
const inCi = process.env.CI === 'true';
const ready = support.ok && net.ok;
if (!ready && !inCi)
  console.warn(`egress-e2e: skipping: ${support.ok ? '' : support.reason}${net.ok ? '' : ` ${net.reason}`}`);

describe('egress-e2e: a user manager and namespaces are available in CI', () => {
  it.runIf(inCi)('the machine can run this suite', () =>
    expect({ support, net }).toEqual({ support: { ok: true }, net: { ok: true } }),
  );
});

const PROBE = readFileSync(path.join(__dirname, '../fixtures/egress-probe/probe.mjs'), 'utf8');
const UNITS = { probe: 'agent-gateway@probe.service', neighbour: 'agent-gateway@neighbour.service' };
const EGRESS_UNIT = 'agentvm-egress.service';

interface Probe {
  status?: number;
  reason?: string;
  body?: string;
  error?: string;
  tlsError?: string;
  connected?: boolean;
  addresses?: unknown[];
}

describe.skipIf(!ready && !inCi)('egress confinement of real gateway units', () => {
  let m: UserManager;
  let g: GatewayRepo;
  let upstream: EgressNet;
  let release: GitDir;
  let loopback: Server;
  let loopbackHits = 0;
  const ports = { probe: 0, neighbour: 0, gate: 0, loopback: 0 };

  const contract = (name: string, egress: Array<[string, number]>) =>
    `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadContract\nmetadata:\n  name: ${name}\nspec:\n  owner: sec@example.com\n  riskTier: low\n  substrate: service\n${egress.length ? `  egress:\n${egress.map(([h, p]) => `    - host: "${h}"\n      port: ${p}\n`).join('')}` : ''}`;
  const manifest = (name: string, profile: string, port: number, preview = '') =>
    `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadManifest\nmetadata:\n  name: ${name}\nspec:\n  archetype: git-release\n  source:\n    git:\n      repo: ${release.dir}\n      commit: ${release.commit}\n  profiles:\n    - name: ${profile}\n      entrypoint: [node, probe.mjs]\n      listen:\n        port: ${port}\n      health:\n        path: /healthz\n        timeoutSeconds: 20\n${preview}`;
  const probeEgress: Array<[string, number]> = [
    ['allowed.test', 443],
    ['allowed.test', 80],
    ['loop.test', 80],
    ['private.test', 80],
    ['meta.test', 80],
  ];
  const files = (egress = probeEgress) => ({
    'hosts/gw.yaml': `apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: gw\nspec:\n  workloads:\n    - prober\n    - neighbour\n  systemd:\n    scope: user\n  egress:\n    resolvers: ["${upstream.v4}"]\n  gate:\n    port: ${ports.gate}\n`,
    'workloads/prober/contract.yaml': contract('prober', egress),
    'workloads/prober/manifest.yaml': manifest('prober', 'probe', ports.probe),
    'workloads/neighbour/contract.yaml': contract('neighbour', []),
    'workloads/neighbour/manifest.yaml': manifest(
      'neighbour',
      'neighbour',
      ports.neighbour,
      `  previews:\n    - name: web\n      upstream:\n        port: ${ports.neighbour}\n      maxTtl: 1h\n      grantees: [ana@example.com]\n`,
    ),
  });
  const probe = async (p: string): Promise<Probe> => (await getJson(ports.probe, p)).body as Probe;

  beforeAll(async () => {
    assertBuilt();
    upstream = await startEgressNet(['allowed.test', 'other.test'], {
      'loop.test': { A: ['127.0.0.1'] },
      'private.test': { A: ['10.0.0.1'] },
      'meta.test': { A: ['169.254.169.254'] },
    });
    m = await startUserManager();
    for (const k of Object.keys(ports) as Array<keyof typeof ports>) ports[k] = await freePort();
    loopback = createServer((s) => {
      loopbackHits++;
      s.on('error', () => {});
      s.end('loopback service\n');
    });
    await new Promise<void>((r) => loopback.listen(ports.loopback, '127.0.0.1', () => r()));
    release = await gitdir({ 'probe.mjs': PROBE });
    g = await gatewayRepo('egress-e2e', m, () => files());
  }, 180_000);

  afterAll(async () => {
    await m?.stop();
    await g?.cleanup();
    await release?.cleanup();
    loopback?.close();
    await upstream?.cleanup();
  });

  it('GIVEN two workloads WHEN apply THEN the egress proxy, the gate and both units run, and health checks pass through the bridge', async () => {
    const r = await g.cli(['apply', '--auto-approve']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    for (const unit of [...Object.values(UNITS), EGRESS_UNIT, 'agentvm-gate.service'])
      expect((await m.show(unit, ['ActiveState'])).ActiveState, unit).toBe('active');
    expect((await getJson(ports.probe)).body).toMatchObject({ status: 'ok', profile: 'probe' });
    expect((await getJson(ports.neighbour)).body).toMatchObject({ status: 'ok', profile: 'neighbour' });
    const drop = readFileSync(path.join(m.unitDir, `${UNITS.probe}.d/50-agentvm.conf`), 'utf8');
    expect(drop).toContain('PrivateNetwork=yes');
    expect(drop).toContain('HTTPS_PROXY=http://127.0.0.1:3128');
    expect(drop).not.toContain('allowed.test');
    expect(await verifyUnitDir(m)).toEqual([]);
  }, 180_000);

  it('GIVEN the neighbour confined to its namespace WHEN a grantee opens its preview THEN the gate reaches it through the bridge', async () => {
    const r = await g.cli([
      'gate',
      'grant',
      'neighbour/web',
      '--to',
      'ana@example.com',
      '--ttl',
      '30m',
      '--reason',
      'egress test',
      '--json',
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const link = json<{ link: string }>(r.stdout).link;
    // The link page's POST spends the link (303 to the preview's own origin, ADR 0014); the preview is that origin.
    const ex = await exchange(link);
    expect(ex.reply.status, ex.reply.body).toBe(303);
    const page = await gateRequest(`${new URL(link).origin}/healthz`, { headers: { cookie: ex.cookie! } });
    expect(page.status, page.body).toBe(200);
    expect(JSON.parse(page.body)).toMatchObject({ status: 'ok', profile: 'neighbour' });
  });

  it('FROM INSIDE the unit: the allowlisted name is reached through the proxy (HTTPS over CONNECT, and plain HTTP)', async () => {
    const https = await probe('/https?target=allowed.test:443');
    expect(https.status, JSON.stringify(https)).toBe(200);
    expect(JSON.parse(https.body!)).toMatchObject({ server: 'https', sni: 'allowed.test' });
    const http = await probe(`/http?url=${encodeURIComponent('http://allowed.test/x')}`);
    expect(http.status, JSON.stringify(http)).toBe(200);
  });

  it('FROM INSIDE the unit: another name, an unlisted IP literal, rebinding names and a fronted SNI are each refused with a reason, and audited', async () => {
    const other = await probe('/https?target=other.test:443');
    expect(other.status).toBe(403);
    expect(other.reason).toContain(
      'other.test:443 refused for unit.prober.probe: this name is not in the egress allowlist; add {host: other.test, port: 443} to spec.egress in workloads/prober/contract.yaml',
    );
    const literal = await probe(`/https?target=${upstream.v4}:443`);
    expect(literal.status).toBe(403);
    expect(literal.reason).toContain('this address is not in the egress allowlist');
    for (const [name, ip] of [
      ['loop.test', '127.0.0.1'],
      ['private.test', '10.0.0.1'],
      ['meta.test', '169.254.169.254'],
    ]) {
      const r = await probe(`/http?url=${encodeURIComponent(`http://${name}/`)}`);
      expect(r.status, name).toBe(403);
      expect(r.reason, name).toContain(`the name resolves to ${ip}`);
    }
    const fronted = await probe('/https?target=allowed.test:443&sni=other.test');
    expect(fronted.status).toBe(200); // the tunnel opened …
    expect(fronted.tlsError, JSON.stringify(fronted)).toBeTruthy(); // … and was cut at the ClientHello
    const audit = await g.cli(['audit', 'tail', '--json', '-n', '200']);
    expect(audit.code, audit.stderr).toBe(0);
    const denials = json<Array<{ event: string; address?: string; detail?: string }>>(audit.stdout).filter(
      (e) => e.event === 'egress.deny' && e.address === 'unit.prober.probe',
    );
    for (const needle of [
      'other.test:443 refused',
      `${upstream.v4}:443 refused`,
      'loop.test:80 refused',
      'private.test:80 refused',
      'meta.test:80 refused',
      'domain fronting',
    ]) {
      expect(
        denials.some((d) => d.detail?.includes(needle)),
        needle,
      ).toBe(true);
    }
  });

  it("FROM INSIDE the unit: direct connections around the proxy fail — the neighbour's port, the gate, a loopback service, the upstream itself — and there is no DNS", async () => {
    // The host side can reach all of these: the failures below are the unit's confinement, not absent services.
    for (const p of [ports.neighbour, ports.gate, ports.loopback])
      expect(await canConnect('127.0.0.1', p), `host → ${p}`).toBe(true);
    const hits = loopbackHits;
    for (const [host, p] of [
      ['127.0.0.1', ports.neighbour],
      ['127.0.0.1', ports.gate],
      ['127.0.0.1', ports.loopback],
      [upstream.v4, 443],
      [upstream.hostV4, ports.loopback],
      ['::1', ports.loopback],
      [upstream.v6, 443],
    ] as const) {
      const r = await probe(`/direct?host=${encodeURIComponent(host)}&port=${p}`);
      expect(r.connected, `${host}:${p} ${JSON.stringify(r)}`).toBeUndefined();
      expect(r.error, `${host}:${p}`).toBeTruthy();
    }
    expect(loopbackHits).toBe(hits);
    const dns = await probe('/dns?name=allowed.test');
    expect(dns.addresses).toBeUndefined();
    // Another profile's proxy socket is not even visible inside this unit.
    const drop = readFileSync(path.join(m.unitDir, `${UNITS.probe}.d/50-agentvm.conf`), 'utf8');
    expect(drop).toMatch(/TemporaryFileSystem=.*\/run\/agentvm\/egress:ro/);
  });

  it("GIVEN an open connection to the neighbour WHEN the prober's allowlist widens THEN the plan says reload, apply restarts no unit, the connection survives and the new name is reached", async () => {
    const pids = {
      probe: await execdPid(m, UNITS.probe),
      neighbour: await execdPid(m, UNITS.neighbour),
      egress: await m.mainPid(EGRESS_UNIT),
    };
    await g.repo.commitFiles(files([...probeEgress, ['other.test', 443]]), 'prober may call other.test');
    const plan = await g.cli(['plan', '--json']);
    const changes = json<{ changes: Array<{ address: string; action: string; effect: string }> }>(
      plan.stdout,
    ).changes.filter((c) => c.action !== 'noop');
    expect(
      changes.map((c) => [c.address, c.effect]),
      plan.stdout,
    ).toEqual([['egress.server', 'reload']]);
    // The reviewer sees the new way out as such, in every format.
    const line = 'egress +other.test:443 (new destination: possible exfiltration channel)';
    expect(
      json<{
        capabilities: Array<{ workload: string; egress: Array<{ change: string; host: string; risk: string | null }> }>;
      }>(plan.stdout)
        .capabilities.find((c) => c.workload === 'prober')
        ?.egress.filter((e) => e.change === 'added'),
    ).toEqual([
      {
        change: 'added',
        host: 'other.test',
        port: 443,
        protocol: 'tcp',
        risk: 'new destination: possible exfiltration channel',
      },
    ]);
    expect((await g.cli(['plan'])).stdout).toContain(line);
    expect((await g.cli(['plan', '--format', 'markdown'])).stdout).toContain(line);
    // One connection to the neighbour through the bridge, used every 200 ms across the apply (never idle): every
    // request on it must be answered, and it must never close.
    const kept = await keepAlive(ports.neighbour);
    let answered = 0;
    let stop = false;
    const ticker = (async () => {
      while (!stop) {
        expect(await kept.get('/healthz')).toContain('"profile":"neighbour"');
        answered++;
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    const r = await g.cli(['apply', '--auto-approve']);
    stop = true;
    await ticker;
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('reloading the egress rules');
    expect(answered).toBeGreaterThan(1);
    expect(kept.closed()).toBe(false);
    expect({
      probe: await execdPid(m, UNITS.probe),
      neighbour: await execdPid(m, UNITS.neighbour),
      egress: await m.mainPid(EGRESS_UNIT),
    }).toEqual(pids);
    kept.close();
    const now = await probe('/https?target=other.test:443');
    expect(now.status, JSON.stringify(now)).toBe(200);
  }, 180_000);
});

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** One TCP connection with HTTP keep-alive, for proving a connection survives an apply. */
async function keepAlive(port: number): Promise<{ get(p: string): Promise<string>; closed(): boolean; close(): void }> {
  const socket: Socket = await new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
  let closed = false;
  socket.once('close', () => (closed = true));
  socket.on('error', () => {});
  return {
    get: (p) =>
      new Promise((resolve, reject) => {
        let text = '';
        const onClose = (): void => reject(new Error('the kept connection closed'));
        const onData = (d: Buffer): void => {
          text += d.toString();
          const end = text.indexOf('\r\n\r\n');
          const len = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? -1);
          if (end >= 0 && len >= 0 && text.length >= end + 4 + len) {
            socket.off('data', onData);
            socket.off('close', onClose);
            resolve(text.slice(end + 4));
          }
        };
        socket.on('data', onData);
        socket.once('close', onClose);
        socket.write(`GET ${p} HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n`);
      }),
    closed: () => closed,
    close: () => socket.destroy(),
  };
}
