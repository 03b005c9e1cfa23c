// The preview gate against the real `agentvm gate serve` process (built CLI) and real loopback upstreams: grants,
// refusals that never reach an upstream, revocation on the next request (latency printed), request smuggling,
// oversized headers, path and Host tricks, route changes without restart, TLS, audit, and the --json contracts.
// Needs `npm run build` first.

import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import Ajv2020 from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatePaths } from '../src/gate/paths.js';
import { verifyAuditLog, type AuditEvent } from '../src/state/audit-log.js';
import { agentvm, assertBuilt, hasStackTrace, ROOT } from './support/cli.js';
import { applyRoute, exchange, grant, rawRequest, request, startGate, startUpstream, tempRoot, type GateProcess, type Upstream } from './support/gate.js';

const ajv = new Ajv2020.default({ allErrors: true, strict: false });
ajv.addFormat('date-time', /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/);
for (const f of readdirSync(path.join(ROOT, 'schemas')).filter((f) => f.endsWith('.schema.json'))) ajv.addSchema(JSON.parse(readFileSync(path.join(ROOT, 'schemas', f), 'utf8')), f);
function conforms(schema: string, doc: unknown): void {
  expect(ajv.validate(schema, doc), JSON.stringify(ajv.errors)).toBe(true);
}

function auditRecords(root: string): AuditEvent[] {
  try {
    return readFileSync(gatePaths(root).audit, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as AuditEvent);
  } catch {
    return [];
  }
}
const settle = (ms = 250): Promise<void> => new Promise((r) => setTimeout(r, ms));
const hitsOf = (u: Upstream): number => u.hits.length;

describe('agentvm gate (real server, real upstreams)', () => {
  let fx: ReturnType<typeof tempRoot>;
  let a: Upstream;
  let b: Upstream;
  let gate: GateProcess;
  const secrets: string[] = [];

  beforeAll(async () => {
    assertBuilt();
    fx = tempRoot();
    a = await startUpstream('a');
    b = await startUpstream('b');
    await applyRoute(fx.root, { workload: 'web', preview: 'site', port: a.port, maxTtl: '2h', grantees: ['ana@example.com', 'bo@example.com'] });
    await applyRoute(fx.root, { workload: 'api', preview: 'docs', port: b.port, maxTtl: '1h' });
    gate = await startGate(fx.root);
  }, 30_000);

  afterAll(async () => {
    await gate?.stop();
    await a?.close();
    await b?.close();
    fx?.remove();
  });

  it('a granted session reaches its preview; the link works once; the upstream never sees gate cookies', async () => {
    const { result } = await grant(fx.root, 'web/site', { ttl: '30m', reason: 'review of the page' });
    const token = new URL(result.link).searchParams.get('grant')!;
    secrets.push(token);
    expect(result.link).toBe(`${gate.url}/p/web/site/?grant=${token}`);
    const before = hitsOf(a);
    const ex = await exchange(result.link);
    expect(ex.reply.status).toBe(303);
    expect(ex.reply.headers.location).toBe('/p/web/site/');
    expect(ex.setCookie).toMatch(/^agentvm_gate_web_site=[A-Za-z0-9_-]{43}; Path=\/p\/web\/site\/; Max-Age=\d+; HttpOnly; SameSite=Strict$/);
    secrets.push(ex.cookie!.split('=')[1]!);
    expect(hitsOf(a)).toBe(before); // the exchange itself is answered by the gate

    const page = await request(`${gate.url}/p/web/site/index.html?x=1`, { headers: { cookie: `${ex.cookie}; theme=dark` } });
    expect(page.status).toBe(200);
    expect(page.body).toContain('preview a');
    const hit = a.hits.at(-1)!;
    expect(hit.url).toBe('/index.html?x=1');
    expect(hit.headers.cookie).toBe('theme=dark');
    expect(hit.headers.host).toBe(`127.0.0.1:${a.port}`);
    expect(hit.headers['x-forwarded-prefix']).toBe('/p/web/site');
    // The upstream may set its own cookies, never the gate's.
    expect(page.headers['set-cookie']).toEqual(['app=a; Path=/']);

    const replay = await exchange(result.link);
    expect(replay.reply.status).toBe(403);
    expect(replay.reply.body).toMatch(/already used/);
  });

  it('forged, malformed and missing credentials are refused with 401 and never reach the upstream', async () => {
    const before = hitsOf(a) + hitsOf(b);
    const forged = 'A'.repeat(43);
    expect((await request(`${gate.url}/p/web/site/?grant=${forged}`)).status).toBe(401);
    expect((await request(`${gate.url}/p/web/site/?grant=short`)).status).toBe(401);
    expect((await request(`${gate.url}/p/web/site/`)).status).toBe(401);
    expect((await request(`${gate.url}/p/web/site/`, { headers: { cookie: `agentvm_gate_web_site=${forged}` } })).status).toBe(401);
    expect((await request(`${gate.url}/p/nope/site/`)).status).toBe(404);
    expect(hitsOf(a) + hitsOf(b)).toBe(before);
  });

  it("another preview's grant or session is refused with 403 without reaching either upstream", async () => {
    const { result } = await grant(fx.root, 'web/site');
    const ex = await exchange(result.link);
    const session = ex.cookie!.split('=')[1]!;
    secrets.push(session);
    const { result: other } = await grant(fx.root, 'web/site');
    const otherToken = new URL(other.link).searchParams.get('grant')!;
    secrets.push(otherToken);
    const before = hitsOf(a) + hitsOf(b);
    // A web/site session presented under api/docs' cookie name.
    expect((await request(`${gate.url}/p/api/docs/`, { headers: { cookie: `agentvm_gate_api_docs=${session}` } })).status).toBe(403);
    // A web/site one-time token used on api/docs (and it stays unused: it still works where it belongs).
    expect((await request(`${gate.url}/p/api/docs/?grant=${otherToken}`)).status).toBe(403);
    expect(hitsOf(a) + hitsOf(b)).toBe(before);
    expect((await exchange(other.link)).reply.status).toBe(303);
  });

  it('an expired grant is refused (403), audited once as gate.expire and pruned', async () => {
    const { result } = await grant(fx.root, 'web/site', { ttl: '2s' });
    const ex = await exchange(result.link);
    secrets.push(ex.cookie!.split('=')[1]!);
    expect((await request(`${gate.url}/p/web/site/`, { headers: { cookie: ex.cookie! } })).status).toBe(200);
    await settle(2_300);
    const before = hitsOf(a);
    const refused = await request(`${gate.url}/p/web/site/`, { headers: { cookie: ex.cookie! } });
    expect(refused.status).toBe(403);
    expect(refused.body).toMatch(/expired/);
    expect(hitsOf(a)).toBe(before);
    await settle(1_300); // the server's sweep (1 s)
    const list = await agentvm(['gate', 'list', '--root', fx.root, '--json']);
    expect((JSON.parse(list.stdout) as { grants: Array<{ id: string }> }).grants.map((g) => g.id)).not.toContain(result.grant.id);
    const expiries = auditRecords(fx.root).filter((r) => r.event === 'gate.expire' && r.gate?.grantId === result.grant.id);
    expect(expiries).toHaveLength(1);
    expect(readdirSync(gatePaths(fx.root).grants).filter((f) => f.startsWith(result.grant.id))).toEqual([]);
  });

  it('revocation takes effect on the very next request (latency printed)', async () => {
    const { result } = await grant(fx.root, 'web/site');
    const ex = await exchange(result.link);
    secrets.push(ex.cookie!.split('=')[1]!);
    const headers = { cookie: ex.cookie! };
    expect((await request(`${gate.url}/p/web/site/`, { headers })).status).toBe(200);
    // Requests run back to back while `gate revoke` runs; the first request that starts after the command returned
    // must be refused.
    let stop = false;
    const statuses: Array<{ at: number; status: number }> = [];
    const hammer = (async () => {
      while (!stop) statuses.push({ status: (await request(`${gate.url}/p/web/site/`, { headers })).status, at: performance.now() });
    })();
    const t0 = performance.now();
    const revoke = await agentvm(['gate', 'revoke', result.grant.id, '--root', fx.root, '--json']);
    const revokedAt = performance.now();
    expect(revoke.code).toBe(0);
    conforms('gate-revoke-result.schema.json', JSON.parse(revoke.stdout));
    const next0 = performance.now();
    const next = await request(`${gate.url}/p/web/site/`, { headers });
    const nextMs = performance.now() - next0;
    stop = true;
    await hammer;
    expect(next.status).toBe(403);
    expect(next.body).toMatch(/revoked/);
    const firstRefusal = statuses.find((s) => s.status === 403);
    const lastAllowed = [...statuses].reverse().find((s) => s.status === 200);
    console.log(`[gate] revoke: CLI ${(revokedAt - t0).toFixed(0)} ms; next request after it refused in ${nextMs.toFixed(1)} ms; during the run ${statuses.length} requests, last 200 at +${lastAllowed ? (lastAllowed.at - t0).toFixed(0) : '–'} ms, first 403 at +${firstRefusal ? (firstRefusal.at - t0).toFixed(0) : '–'} ms (CLI returned at +${(revokedAt - t0).toFixed(0)} ms)`);
    if (lastAllowed) expect(lastAllowed.at).toBeLessThanOrEqual(revokedAt + 1); // nothing allowed after the command returned… plus the request in flight
    // Revoking again changes nothing.
    const again = JSON.parse((await agentvm(['gate', 'revoke', result.grant.id, '--root', fx.root, '--json'])).stdout) as { alreadyRevoked: string[] };
    expect(again.alreadyRevoked).toEqual([result.grant.id]);
  });

  it('conflicting Content-Length/Transfer-Encoding is refused by the parser and reaches no upstream', async () => {
    const before = hitsOf(a) + hitsOf(b);
    const smuggle = `POST /p/web/site/ HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /p/api/docs/ HTTP/1.1\r\nHost: x\r\n\r\n`;
    expect(await rawRequest(gate.port, smuggle)).toMatch(/^HTTP\/1\.1 400 /);
    const twoLengths = `POST /p/web/site/ HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc`;
    expect(await rawRequest(gate.port, twoLengths)).toMatch(/^HTTP\/1\.1 400 /);
    const obfuscatedTe = `POST /p/web/site/ HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`;
    expect(await rawRequest(gate.port, obfuscatedTe)).toMatch(/^HTTP\/1\.1 (400|501) /);
    expect(hitsOf(a) + hitsOf(b)).toBe(before);
  });

  it('oversized headers are refused with 431 and reach no upstream', async () => {
    const before = hitsOf(a) + hitsOf(b);
    const big = `GET /p/web/site/ HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`;
    expect(await rawRequest(gate.port, big)).toMatch(/^HTTP\/1\.1 431 /);
    expect(hitsOf(a) + hitsOf(b)).toBe(before);
  });

  it('.., encoded paths, backslashes, absolute-form targets, CONNECT and Host spoofing never reach another upstream', async () => {
    const { result } = await grant(fx.root, 'web/site');
    const ex = await exchange(result.link);
    secrets.push(ex.cookie!.split('=')[1]!);
    const cookie = ex.cookie!;
    const bBefore = hitsOf(b);
    const aBefore = hitsOf(a);
    const tricks = [
      '/p/web/site/../../api/docs/',
      '/p/web/site/%2e%2e/%2e%2e/api/docs/',
      '/p/web/site/%2E%2E%2F%2E%2E%2Fapi%2Fdocs/',
      '/p/web/site/..%2f..%2fapi/docs/',
      '/p/web/site/%252e%252e/api/docs/',
      '/p/web/site/a/./b',
      '/p/web/site//api/docs/',
      '/p/web/site/%c0%ae%c0%ae/api/docs/',
      '/p/web/site/x%00y',
    ];
    for (const t of tricks) {
      const raw = await rawRequest(gate.port, `GET ${t} HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\nConnection: close\r\n\r\n`);
      expect(raw, t).toMatch(/^HTTP\/1\.1 400 /);
    }
    const backslash = await rawRequest(gate.port, `GET /p/web/site/..\\..\\api\\docs\\ HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\nConnection: close\r\n\r\n`);
    expect(backslash).toMatch(/^HTTP\/1\.1 400 /);
    const absolute = await rawRequest(gate.port, `GET http://127.0.0.1:${b.port}/ HTTP/1.1\r\nHost: 127.0.0.1:${b.port}\r\nCookie: ${cookie}\r\nConnection: close\r\n\r\n`);
    expect(absolute).toMatch(/^HTTP\/1\.1 400 /);
    const connect = await rawRequest(gate.port, `CONNECT 127.0.0.1:${b.port} HTTP/1.1\r\nHost: 127.0.0.1:${b.port}\r\n\r\n`);
    expect(connect).toMatch(/^HTTP\/1\.1 (400|405) /);
    const upgrade = await rawRequest(gate.port, `GET /p/web/site/ HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`);
    expect(upgrade).toMatch(/^HTTP\/1\.1 501 /);
    expect(hitsOf(a)).toBe(aBefore);
    // A Host header naming the other upstream (or anything) does not move the request: it reaches web/site's upstream.
    const spoofed = await request(`${gate.url}/p/web/site/`, { headers: { cookie, host: `127.0.0.1:${b.port}` } });
    expect(spoofed.status).toBe(200);
    expect(spoofed.body).toContain('preview a');
    expect(a.hits.at(-1)!.headers.host).toBe(`127.0.0.1:${a.port}`);
    const spoofedNoSession = await request(`${gate.url}/p/api/docs/`, { headers: { host: `127.0.0.1:${b.port}` } });
    expect(spoofedNoSession.status).toBe(401);
    expect(hitsOf(b)).toBe(bBefore);
  });

  it('route changes are picked up without a restart; deleting a route removes its grants', async () => {
    const c = await startUpstream('c');
    try {
      expect((await request(`${gate.url}/p/new/one/`)).status).toBe(404);
      await applyRoute(fx.root, { workload: 'new', preview: 'one', port: c.port });
      const { result } = await grant(fx.root, 'new/one');
      const ex = await exchange(result.link);
      secrets.push(ex.cookie!.split('=')[1]!);
      expect((await request(`${gate.url}/p/new/one/`, { headers: { cookie: ex.cookie! } })).body).toContain('preview c');
      await applyRoute(fx.root, { workload: 'new', preview: 'one', port: c.port }, 'delete');
      const before = hitsOf(c);
      expect((await request(`${gate.url}/p/new/one/`, { headers: { cookie: ex.cookie! } })).status).toBe(404);
      expect(hitsOf(c)).toBe(before);
      expect(readdirSync(gatePaths(fx.root).grants).filter((f) => f.startsWith(result.grant.id))).toEqual([]);
      const revoke = await agentvm(['gate', 'revoke', result.grant.id, '--root', fx.root]);
      expect(revoke.code).toBe(1);
      expect(revoke.stderr).toContain('gate.grant-unknown');
    } finally {
      await c.close();
    }
  });

  it('grant refuses unknown previews, non-grantees and a --ttl over maxTtl (saying the max)', async () => {
    const over = await agentvm(['gate', 'grant', 'api/docs', '--root', fx.root, '--to', 'ana@example.com', '--ttl', '2h', '--reason', 'x']);
    expect(over.code).toBe(1);
    expect(over.stderr).toContain('gate.ttl-invalid');
    expect(over.stderr).toContain('maximum of 1h');
    const stranger = await agentvm(['gate', 'grant', 'web/site', '--root', fx.root, '--to', 'eve@example.com', '--ttl', '5m', '--reason', 'x']);
    expect(stranger.code).toBe(1);
    expect(stranger.stderr).toContain('gate.not-grantee');
    const unknown = await agentvm(['gate', 'grant', 'web/nope', '--root', fx.root, '--to', 'ana@example.com', '--ttl', '5m', '--reason', 'x', '--json']);
    expect(unknown.code).toBe(1);
    conforms('error.schema.json', JSON.parse(unknown.stdout));
    for (const r of [over, stranger, unknown]) expect(hasStackTrace(r.stdout + r.stderr)).toBe(false);
  });

  it('list shows live grants with expiry and no token; --json outputs match their schemas', async () => {
    const { result, cli } = await grant(fx.root, 'web/site', { to: 'bo@example.com', ttl: '10m', reason: 'list check' });
    secrets.push(new URL(result.link).searchParams.get('grant')!);
    conforms('gate-grant-result.schema.json', JSON.parse(cli.stdout));
    const list = await agentvm(['gate', 'list', '--root', fx.root, '--json']);
    expect(list.code).toBe(0);
    const doc = JSON.parse(list.stdout) as { grants: Array<{ id: string; expires: string; identity: string }> };
    conforms('gate-list-result.schema.json', doc);
    expect(doc.grants.find((g) => g.id === result.grant.id)).toMatchObject({ identity: 'bo@example.com', expires: result.grant.expires });
    const text = await agentvm(['gate', 'list', '--root', fx.root]);
    expect(text.stdout).toContain(result.grant.id);
    for (const s of secrets) expect(list.stdout + text.stdout).not.toContain(s);
    const unit = await agentvm(['gate', 'serve', '--root', fx.root, '--host', 'edge-1', '--print-unit', '--json']);
    conforms('gate-serve-result.schema.json', JSON.parse(unit.stdout));
  });

  it('every grant, revoke, expiry, allowed and denied request is audited — never a token or a session id', async () => {
    await settle(300); // the request log's group commit (100 ms)
    const records = auditRecords(fx.root);
    const events = new Set(records.map((r) => r.event));
    for (const e of ['gate.grant', 'gate.revoke', 'gate.expire', 'gate.request', 'gate.route-delete']) expect(events, e).toContain(e);
    const allowed = records.find((r) => r.event === 'gate.request' && r.result === 'ok' && r.gate?.status === 200);
    expect(allowed?.gate).toMatchObject({ preview: 'web/site', identity: expect.any(String), grantId: expect.stringMatching(/^g-/), source: expect.stringMatching(/^127\.0\.0\.1:\d+$/), path: expect.stringMatching(/^\/p\/web\/site\//) });
    const denied = records.find((r) => r.event === 'gate.request' && r.result === 'failed' && r.gate?.status === 403 && /revoked/.test(r.gate.reason ?? ''));
    expect(denied?.gate?.grantId).toMatch(/^g-/);
    expect(records.find((r) => r.event === 'gate.grant')?.gate?.reason).toBe('review of the page');
    expect((await verifyAuditLog(gatePaths(fx.root).audit)).ok).toBe(true);
    // No secret anywhere on disk under the root.
    const everything = execFileSync('sh', ['-c', `find ${fx.root} -type f -exec cat {} +`], { encoding: 'utf8', maxBuffer: 1 << 26 });
    expect(secrets.length).toBeGreaterThan(8);
    for (const s of secrets) expect(everything).not.toContain(s);
  });

  it('renders agentvm-gate.service that systemd-analyze verify accepts', async () => {
    const r = await agentvm(['gate', 'serve', '--root', fx.root, '--host', 'edge-1', '--print-unit']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^ExecStart=${process.execPath} \\S+/bin/run\\.js gate serve --root ${fx.root} --host edge-1 --address 127\\.0\\.0\\.1 --port 8443$`, 'm'));
    const unit = path.join(fx.root, 'agentvm-gate.service');
    writeFileSync(unit, r.stdout);
    execFileSync('systemd-analyze', ['verify', unit], { stdio: 'pipe' }); // throws on a unit systemd would reject
    const unsafe = await agentvm(['gate', 'serve', '--root', `${fx.root}/%h`, '--host', 'edge-1', '--print-unit']);
    expect(unsafe.code).toBe(1);
    expect(unsafe.stderr).toContain('gate.unsafe-unit-value');
  });

  it('refuses to listen on a non-loopback address without TLS, with a clear error', async () => {
    const r = await agentvm(['gate', 'serve', '--root', fx.root, '--host', 'edge-1', '--address', '0.0.0.0', '--port', '0']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('gate.exposed');
    expect(r.stderr).toContain('loopback only');
  });
});

describe('agentvm gate over TLS', () => {
  it('serves HTTPS with a certificate by reference and sets a Secure session cookie', async () => {
    assertBuilt();
    const fx = tempRoot();
    const up = await startUpstream('tls');
    let gate: GateProcess | undefined;
    try {
      const cert = path.join(fx.root, 'gate.crt');
      const key = path.join(fx.root, 'gate.key');
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
      await applyRoute(fx.root, { workload: 'web', preview: 'site', port: up.port });
      gate = await startGate(fx.root, ['--address', '127.0.0.1', '--tls-cert', `file:${cert}`, '--tls-key', `file:${key}`]);
      expect(gate.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const { result } = await grant(fx.root, 'web/site');
      expect(result.link.startsWith(`${gate.url}/p/web/site/?grant=`)).toBe(true);
      const ca = readFileSync(cert);
      const ex = await exchange(result.link, ca);
      expect(ex.reply.status).toBe(303);
      expect(ex.setCookie).toMatch(/; HttpOnly; SameSite=Strict; Secure$/);
      const page = await request(`${gate.url}/p/web/site/`, { headers: { cookie: ex.cookie! }, ca });
      expect(page.status).toBe(200);
      expect(page.body).toContain('preview tls');
      expect(up.hits.at(-1)!.headers['x-forwarded-proto']).toBe('https');
      writeFileSync(path.join(fx.root, 'unused'), ''); // keep the root non-empty for remove()
    } finally {
      await gate?.stop();
      await up.close();
      fx.remove();
    }
  }, 30_000);
});
