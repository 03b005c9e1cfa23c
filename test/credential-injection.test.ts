// Issue 14 (part A) end to end: credentials never enter the agent. The real `agentvm` CLI applies a workload whose
// contract injects secrets onto a REAL systemd user manager; the "internet" is a network namespace this test creates
// (support/egress-net.ts: DNS, HTTP and HTTPS servers that echo what they receive). The hostile workload
// (fixtures/credential-probe/probe.mjs) runs inside its unit and shows, from there:
//   its credentials directory holds placeholders only (and the env-file: value it is meant to hold);
//   the placeholder sent in the declared header over HTTPS to the declared host arrives as the real value;
//   the same placeholder to a second allowed host, in another header, in the body, in the URL, or over plain HTTP to
//   the injected host arrives unchanged (worthless);
//   it cannot read the agentvm CA key or the credential store; an upstream whose certificate does not cover the name
//   gets nothing; a fronted SNI on the injected host is cut.
// Finally every file agentvm wrote (host root, unit directory), every CLI output and the proxy's own output are searched
// for the real values: they are only in the root-only credential store.

import { createHash, randomBytes } from 'node:crypto';
import { chownSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt } from './support/cli.js';
import { egressNetSupport, startEgressNet, type EgressNet } from './support/egress-net.js';
import { freePort, gatewayRepo, getJson, verifyUnitDir, type GatewayRepo } from './support/gateway-repo.js';
import { gitdir, type GitDir } from './support/gitdir.js';
import { startUserManager, userManagerSupport, type UserManager } from './support/systemd-user.js';

const support = userManagerSupport();
const net = egressNetSupport();
const inCi = process.env.CI === 'true';
const ready = support.ok && net.ok;
if (!ready && !inCi)
  console.warn(`credential-injection: skipping: ${support.ok ? '' : support.reason}${net.ok ? '' : ` ${net.reason}`}`);

describe('credential-injection: a user manager and namespaces are available in CI', () => {
  it.runIf(inCi)('the machine can run this suite', () =>
    expect({ support, net }).toEqual({ support: { ok: true }, net: { ok: true } }),
  );
});

const PROBE = readFileSync(path.join(__dirname, '../fixtures/credential-probe/probe.mjs'), 'utf8');
const UNIT = 'agent-gateway@probe.service';
const ADDRESS = 'unit.prober.probe';
const canary = (what: string): string => `canary-${what}-${randomBytes(12).toString('hex')}`;
const VALUES = { llm: canary('llm'), search: canary('search'), mirror: canary('mirror'), db: canary('db') };

interface Echo {
  server: string;
  host: string;
  path: string;
  headers: Record<string, string>;
  body: string;
}
interface Sent {
  status?: number;
  echo?: Echo | null;
  reason?: string;
  denied?: string | null;
  tlsError?: string;
  error?: string;
}

describe.skipIf(!ready && !inCi)('injected credentials from inside a real gateway unit', () => {
  let m: UserManager;
  let g: GatewayRepo;
  let upstream: EgressNet;
  let release: GitDir;
  let port = 0;
  let gatePort = 0;
  let proxyLog = '';
  const outputs: string[] = [];
  const cli = async (args: string[]) => {
    const r = await g.cli(args);
    outputs.push(r.stdout, r.stderr);
    return r;
  };
  const probe = async <T>(p: string): Promise<T> => (await getJson(port, p)).body as T;

  const files = (sources: string, anchor: string) => ({
    'hosts/gw.yaml': `apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: gw\nspec:\n  workloads:\n    - prober\n  systemd:\n    scope: user\n  egress:\n    resolvers: ["${upstream.v4}"]\n    upstreamTrustAnchors: ["${anchor}"]\n  gate:\n    port: ${gatePort}\n`,
    'workloads/prober/contract.yaml': `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadContract\nmetadata:\n  name: prober\nspec:\n  owner: sec@example.com\n  riskTier: low\n  substrate: service\n  egress:\n${[
      ['api.test', 443],
      ['api.test', 80],
      ['other.test', 443],
      ['nosan.test', 443],
    ]
      .map(([h, p]) => `    - host: ${h}\n      port: ${p}\n`)
      .join(
        '',
      )}  secrets:\n    - name: llm-api-key\n      ref: file:${sources}/llm\n      inject:\n        host: api.test\n        header: x-api-key\n    - name: search-token\n      ref: env-file:${sources}/agent.env#SEARCH_TOKEN\n      inject:\n        host: other.test\n        header: Authorization\n        format: "Bearer {}"\n    - name: mirror-key\n      ref: file:${sources}/mirror\n      inject:\n        host: nosan.test\n        header: x-api-key\n    - name: db-password\n      ref: env-file:${sources}/agent.env#DB_PASSWORD\n`,
    'workloads/prober/manifest.yaml': `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadManifest\nmetadata:\n  name: prober\nspec:\n  archetype: git-release\n  source:\n    git:\n      repo: ${release.dir}\n      commit: ${release.commit}\n  profiles:\n    - name: probe\n      entrypoint: [node, probe.mjs]\n      listen:\n        port: ${port}\n      health:\n        path: /healthz\n        timeoutSeconds: 20\n`,
  });

  beforeAll(async () => {
    assertBuilt();
    upstream = await startEgressNet(['api.test', 'other.test'], { 'nosan.test': { A: ['self'] } });
    m = await startUserManager();
    port = await freePort();
    gatePort = await freePort();
    release = await gitdir({ 'probe.mjs': PROBE });
    // The secrets' sources live outside the host root: the operator's files, not agentvm's.
    let sources = '';
    let anchor = '';
    g = await gatewayRepo('cred-inject', m, (secretsDir) => {
      const base = path.dirname(path.dirname(path.dirname(path.dirname(secretsDir))));
      sources = path.join(base, 'sources');
      anchor = path.join(base, 'upstream-ca.pem');
      return files(sources, anchor);
    });
    mkdirSync(sources, { recursive: true, mode: 0o700 });
    writeFileSync(path.join(sources, 'llm'), `${VALUES.llm}\n`, { mode: 0o600 });
    writeFileSync(path.join(sources, 'mirror'), VALUES.mirror, { mode: 0o600 });
    writeFileSync(
      path.join(sources, 'agent.env'),
      `# the agent's env file\nexport SEARCH_TOKEN="${VALUES.search}"\nDB_PASSWORD=${VALUES.db}\n`,
      { mode: 0o600 },
    );
    writeFileSync(anchor, upstream.ca, { mode: 0o644 });
    // No journal under the harness manager: the proxy's own output goes to a file this test reads (a drop-in of ours).
    const log = path.join(g.base, 'egress.log');
    writeFileSync(log, '', { mode: 0o600 });
    chownSync(log, m.uid, m.gid);
    mkdirSync(path.join(m.unitDir, 'agentvm-egress.service.d'), { recursive: true });
    writeFileSync(
      path.join(m.unitDir, 'agentvm-egress.service.d/90-test-log.conf'),
      `[Service]\nStandardOutput=append:${log}\nStandardError=append:${log}\n`,
    );
    proxyLog = log;
  }, 180_000);

  afterAll(async () => {
    await m?.stop();
    await g?.cleanup();
    await release?.cleanup();
    await upstream?.cleanup();
  });

  it('GIVEN injected secrets WHEN apply THEN the unit runs, trusts the agentvm CA, and its credentials directory holds placeholders only', async () => {
    // The reviewer sees which credentials the workload gets and that it holds only placeholders of the injected ones.
    const plan = await cli(['plan']);
    expect(plan.stdout).toContain('credential +llm-api-key (injected for api.test: the workload holds a placeholder)');
    expect(plan.stdout).toContain(
      'credential +db-password (held by the workload: it can send the value anywhere it reaches)',
    );
    const r = await cli(['apply', '--auto-approve']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect((await m.show(UNIT, ['ActiveState'])).ActiveState).toBe('active');
    expect(await verifyUnitDir(m)).toEqual([]);
    const creds = await probe<{ files: Record<string, string>; env: Record<string, string> }>('/creds');
    expect(Object.keys(creds.files).sort()).toEqual(['db-password', 'llm-api-key', 'mirror-key', 'search-token']);
    const store = path.join(g.root, 'var/lib/agentvm/credstore', ADDRESS);
    const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
    for (const name of ['llm-api-key', 'search-token', 'mirror-key']) {
      const placeholder = readFileSync(path.join(store, `${name}.placeholder`), 'utf8');
      expect(placeholder).toMatch(/^agentvm-placeholder-[0-9a-f]{64}$/);
      expect(creds.files[name], name).toBe(sha(placeholder));
    }
    // env-file: not injected — delivered as its value, the way file: is.
    expect(creds.files['db-password']).toBe(sha(VALUES.db));
    expect(creds.env.NODE_EXTRA_CA_CERTS).toBe(path.join(g.root, 'var/lib/agentvm/egress-ca/ca.pem'));
    expect(creds.env.SSL_CERT_FILE).toBe(path.join(g.root, 'var/lib/agentvm/egress-ca/bundle.pem'));
    // The store: 0700 directory, 0600 files; the CA key root's alone.
    expect(statSync(store).mode & 0o777).toBe(0o700);
    expect(statSync(path.join(store, 'llm-api-key.value')).mode & 0o777).toBe(0o600);
    const key = statSync(path.join(g.root, 'var/lib/agentvm/egress-ca/ca.key'));
    expect([key.uid, key.mode & 0o777]).toEqual([0, 0o600]);
  }, 180_000);

  it('FROM INSIDE the unit: the placeholder in the declared header to the declared host arrives as the real value (over TLS the proxy verified)', async () => {
    const r = await probe<Sent>('/send?target=api.test:443&cred=llm-api-key&where=header');
    expect(r.status, JSON.stringify(r)).toBe(200);
    expect(r.echo!.server).toBe('https');
    expect(r.echo!.headers['x-api-key']).toBe(VALUES.llm);
    expect(r.echo!.host).toBe('api.test');
    // With a format: `Authorization: Bearer <placeholder>` becomes `Bearer <value>` (env-file: source).
    // A Host header naming another tenant does not move the credential: the request goes to the CONNECT host, as it.
    const h = await probe<Sent>('/send?target=api.test:443&cred=llm-api-key&where=host-header');
    expect([h.echo!.host, h.echo!.headers['x-api-key']], JSON.stringify(h)).toEqual(['api.test', VALUES.llm]);
    const f = await probe<Sent>('/send?target=other.test:443&cred=search-token&where=formatted');
    expect(f.echo!.headers.authorization, JSON.stringify(f)).toBe(`Bearer ${VALUES.search}`);
  });

  it('FROM INSIDE the unit: the same placeholder to a second allowed host, in another header, in the body, in the URL, or over plain HTTP arrives unreplaced', async () => {
    const placeholder = readFileSync(
      path.join(g.root, 'var/lib/agentvm/credstore', ADDRESS, 'llm-api-key.placeholder'),
      'utf8',
    );
    const second = await probe<Sent>('/send?target=other.test:443&cred=llm-api-key&where=header');
    expect(second.status, JSON.stringify(second)).toBe(200);
    expect(second.echo!.headers['x-api-key']).toBe(placeholder);
    const other = await probe<Sent>('/send?target=api.test:443&cred=llm-api-key&where=other-header');
    expect(other.echo!.headers['x-other']).toBe(placeholder);
    expect(other.echo!.headers['x-api-key']).toBeUndefined();
    const body = await probe<Sent>('/send?target=api.test:443&cred=llm-api-key&where=body');
    expect(body.echo!.body).toBe(JSON.stringify({ key: placeholder }));
    const url = await probe<Sent>('/send?target=api.test:443&cred=llm-api-key&where=url');
    expect(url.echo!.path).toBe(`/echo?key=${placeholder}`);
    const plain = await probe<Sent>(`/plain?url=${encodeURIComponent('http://api.test/echo')}&cred=llm-api-key`);
    expect(plain.status, JSON.stringify(plain)).toBe(200);
    expect(plain.echo!.server).toBe('http');
    expect(plain.echo!.headers['x-api-key']).toBe(placeholder);
    for (const r of [second, other, body, url, plain]) expect(JSON.stringify(r)).not.toContain(VALUES.llm);
  });

  it('FROM INSIDE the unit: an upstream whose certificate does not cover the injected name gets nothing; a fronted SNI is cut; the CA key and the store cannot be read', async () => {
    const nosan = await probe<Sent>('/send?target=nosan.test:443&cred=mirror-key&where=header');
    expect(nosan.status, JSON.stringify(nosan)).toBe(502);
    expect(nosan.denied).toContain('did not present a certificate the host trusts');
    const fronted = await probe<Sent>('/send?target=api.test:443&cred=llm-api-key&where=header&sni=other.test');
    expect(fronted.echo ?? null, JSON.stringify(fronted)).toBeNull();
    expect(fronted.tlsError ?? fronted.error, JSON.stringify(fronted)).toBeTruthy();
    for (const p of [
      path.join(g.root, 'var/lib/agentvm/egress-ca/ca.key'),
      path.join(g.root, 'var/lib/agentvm/credstore', ADDRESS, 'llm-api-key.value'),
      path.join(g.root, 'var/lib/agentvm/credstore/.tls/api.test.key'),
    ]) {
      const r = await probe<{ readable?: boolean; error?: string }>(`/read?path=${encodeURIComponent(p)}`);
      expect(r.readable, p).toBeUndefined();
      expect(r.error, p).toBeTruthy();
    }
    // Through the proxy's own view of the filesystem (/proc/<pid>/root: same account in user scope).
    const proxyPid = await m.mainPid('agentvm-egress.service');
    expect(proxyPid).toBeGreaterThan(0);
    const viaProc = await probe<{ readable?: boolean; error?: string }>(
      `/read?path=${encodeURIComponent(`/proc/${proxyPid}/root${path.join(g.root, 'var/lib/agentvm/credstore', ADDRESS, 'llm-api-key.value')}`)}`,
    );
    expect(viaProc.readable, JSON.stringify(viaProc)).toBeUndefined();
    // The public half is readable: the unit must trust it.
    expect(
      await probe<{ readable?: boolean }>(
        `/read?path=${encodeURIComponent(path.join(g.root, 'var/lib/agentvm/egress-ca/ca.pem'))}`,
      ),
    ).toEqual({ readable: true });
  });

  it("GIVEN everything above WHEN every file agentvm wrote, its output and the proxy's output are searched THEN the real values are only in the root-only store", async () => {
    for (const args of [
      ['plan', '--json'],
      ['plan', '--format', 'markdown'],
      ['plan'],
      ['audit', 'tail', '--json', '-n', '500'],
      ['drift'],
    ])
      await cli(args);
    const found = new Map<string, string[]>();
    const scan = (dir: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) scan(p);
        else if (e.isFile()) {
          const text = readFileSync(p, 'latin1');
          for (const [k, v] of Object.entries(VALUES)) if (text.includes(v)) found.set(k, [...(found.get(k) ?? []), p]);
        }
      }
    };
    scan(g.root);
    scan(m.unitDir);
    const store = path.join(g.root, 'var/lib/agentvm/credstore', ADDRESS);
    expect(Object.fromEntries(found)).toEqual({
      llm: [path.join(store, 'llm-api-key.value')],
      search: [path.join(store, 'search-token.value')],
      mirror: [path.join(store, 'mirror-key.value')],
      db: [path.join(store, 'db-password.value')],
    });
    const proxyOut = readFileSync(proxyLog, 'utf8');
    for (const v of Object.values(VALUES)) {
      expect(outputs.join('\n')).not.toContain(v);
      expect(proxyOut).not.toContain(v);
    }
  }, 180_000);

  it('GIVEN an env-file: value rotated at its source WHEN plan and apply THEN the unit is re-applied and the proxy injects the new value', async () => {
    const rotated = canary('rotated');
    const sources = path.join(g.base, 'sources');
    writeFileSync(path.join(sources, 'agent.env'), `export SEARCH_TOKEN="${rotated}"\nDB_PASSWORD=${VALUES.db}\n`, {
      mode: 0o600,
    });
    const plan = await cli(['plan']);
    expect(plan.stdout).toContain('credential `search-token` changed since the unit started');
    expect(plan.stdout).not.toContain(rotated);
    const r = await cli(['apply', '--auto-approve']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const f = await probe<Sent>('/send?target=other.test:443&cred=search-token&where=formatted');
    expect(f.echo!.headers.authorization, JSON.stringify(f)).toBe(`Bearer ${rotated}`);
    expect(outputs.join('\n')).not.toContain(rotated);
  }, 180_000);
});
