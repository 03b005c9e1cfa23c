// The preview gate against the real `agentvm gate serve` process (built CLI) and real loopback upstreams: grants,
// refusals that never reach an upstream, revocation on the next request (latency printed), request smuggling,
// oversized headers, path and Host tricks, route changes without restart, TLS, audit, and the --json contracts.
// The main and review suites run on host routing (the default; viaHost() sends `/p/<w>/<p>/…` to the preview's own
// host); the TLS and public-URL suites run on the path-routing opt-in (host routing under TLS: gate-origin.test.ts).
// Needs `npm run build` first.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import Ajv2020 from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatePaths } from '../src/gate/paths.js';
import { verifyAuditLog, type AuditEvent } from '../src/state/audit-log.js';
import { agentvm, assertBuilt, hasStackTrace, ROOT } from './support/cli.js';
import { hostNames } from '../src/gate/host-names.js';
import {
  applyRoute,
  exchange,
  grant,
  rawRequest as sendRaw,
  request as send,
  startGate,
  startUpstream,
  tempRoot,
  type GateProcess,
  type Upstream,
} from './support/gate.js';
import { startWsUpstream, wsFrame, wsRead } from './support/websocket.js';

const ajv = new Ajv2020.default({ allErrors: true, strict: false });
ajv.addFormat('date-time', /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/);
for (const f of readdirSync(path.join(ROOT, 'schemas')).filter((f) => f.endsWith('.schema.json')))
  ajv.addSchema(JSON.parse(readFileSync(path.join(ROOT, 'schemas', f), 'utf8')), f);
function conforms(schema: string, doc: unknown): void {
  expect(ajv.validate(schema, doc), JSON.stringify(ajv.errors)).toBe(true);
}

function auditRecords(root: string): AuditEvent[] {
  try {
    return readFileSync(gatePaths(root).audit, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as AuditEvent);
  } catch {
    return [];
  }
}
/**
 * Host routing (the default) for the suites that name previews as paths: `http://127.0.0.1:<port>/p/<w>/<p>/rest` goes to
 * `http://<p>--<w>--<tag>.localhost:<port>/rest`, and a raw `GET /p/<w>/<p>/rest HTTP/1.1\r\nHost: x` to `GET /rest` with
 * that Host. Suites on the path-routing opt-in (TLS, public URL below) set `hostRouting` to undefined.
 */
let hostRouting: { root: string } | undefined;
function hostOf(root: string, workload: string, preview: string, port: number | string): string {
  return `${hostNames(gatePaths(root).dir, 'localhost').label(workload, preview)!}.localhost:${port}`;
}
function viaHost(url: string): string {
  const m = /^http:\/\/127\.0\.0\.1:(\d+)\/p\/([a-z][a-z0-9-]*)\/([a-z][a-z0-9-]*)(\/.*)?$/.exec(url);
  return hostRouting && m ? `http://${hostOf(hostRouting.root, m[2]!, m[3]!, m[1]!)}${m[4] ?? '/'}` : url;
}
function request(url: string, opts: Parameters<typeof send>[1] = {}): ReturnType<typeof send> {
  return send(viaHost(url), opts);
}
function rawRequest(port: number, bytes: string): Promise<string> {
  const routed = hostRouting
    ? bytes.replace(
        /([A-Z]+ )\/p\/([a-z][a-z0-9-]*)\/([a-z][a-z0-9-]*)(\S*)( HTTP\/1\.[01]\r\nHost: )x/g,
        (_m, method: string, w: string, p: string, rest: string, mid: string) =>
          `${method}${rest || '/'}${mid}${hostOf(hostRouting!.root, w, p, port)}`,
      )
    : bytes;
  return sendRaw(port, routed);
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
    await applyRoute(fx.root, {
      workload: 'web',
      preview: 'site',
      port: a.port,
      maxTtl: '2h',
      grantees: ['ana@example.com', 'bo@example.com'],
    });
    await applyRoute(fx.root, { workload: 'api', preview: 'docs', port: b.port, maxTtl: '1h' });
    gate = await startGate(fx.root);
    hostRouting = { root: fx.root };
  }, 30_000);

  afterAll(async () => {
    hostRouting = undefined;
    await gate?.stop();
    await a?.close();
    await b?.close();
    fx?.remove();
  });

  it('a granted session reaches its preview; the link works once; the upstream never sees gate cookies', async () => {
    const { result } = await grant(fx.root, 'web/site', { ttl: '30m', reason: 'review of the page' });
    const token = new URL(result.link).searchParams.get('grant')!;
    secrets.push(token);
    expect(result.link).toBe(`${viaHost(`${gate.url}/p/web/site/`)}?grant=${token}`);
    const before = hitsOf(a);
    const ex = await exchange(result.link);
    // The link opens a page whose button POSTs the link back (ADR 0014); the POST answers 303 to the preview.
    expect(ex.page.status).toBe(200);
    expect(ex.page.body).toContain(`<form method="post" action="/?grant=${token}">`);
    expect(ex.page.headers['content-security-policy']).toMatch(/^default-src 'none'/);
    // No Referer leaves the origin (the URL holds the token), but the button's POST carries a real Origin; the 303 says
    // no-referrer, so the redirected GET to the preview carries none.
    expect(ex.page.headers['referrer-policy']).toBe('same-origin');
    expect(ex.reply.headers['referrer-policy']).toBe('no-referrer');
    expect(ex.page.headers['cache-control']).toBe('no-store');
    expect(ex.reply.status).toBe(303);
    expect(ex.reply.headers.location).toBe('/');
    expect(ex.setCookie).toMatch(
      /^agentvm_gate_session=[A-Za-z0-9_-]{43}; Path=\/; Max-Age=\d+; HttpOnly; SameSite=Strict$/,
    );
    secrets.push(ex.cookie!.split('=')[1]!);
    expect(hitsOf(a)).toBe(before); // the exchange itself is answered by the gate

    const page = await request(`${gate.url}/p/web/site/index.html?x=1`, {
      headers: { cookie: `${ex.cookie}; theme=dark` },
    });
    expect(page.status).toBe(200);
    expect(page.body).toContain('preview a');
    const hit = a.hits.at(-1)!;
    expect(hit.url).toBe('/index.html?x=1');
    expect(hit.headers.cookie).toBe('theme=dark');
    expect(hit.headers.host).toBe(`127.0.0.1:${a.port}`);
    expect(hit.headers['x-forwarded-prefix']).toBeUndefined(); // host routing: the path is the preview's own
    // The upstream may set its own cookies for its own host, never the gate's.
    expect(page.headers['set-cookie']).toEqual(['app=a; Path=/']);

    const replay = await exchange(result.link);
    expect(replay.reply.status).toBe(403);
    expect(replay.reply.body).toMatch(/already used/);
  });

  it('forged, malformed and missing credentials are refused with 401 and never reach the upstream', async () => {
    const before = hitsOf(a) + hitsOf(b);
    const forged = 'A'.repeat(43);
    const post = { method: 'POST', headers: { origin: new URL(viaHost(`${gate.url}/p/web/site/`)).origin }, body: '' };
    expect((await request(`${gate.url}/p/web/site/?grant=${forged}`, post)).status).toBe(401);
    expect((await request(`${gate.url}/p/web/site/?grant=short`, post)).status).toBe(401);
    expect((await request(`${gate.url}/p/web/site/`)).status).toBe(401);
    expect(
      (await request(`${gate.url}/p/web/site/`, { headers: { cookie: `agentvm_gate_session=${forged}` } })).status,
    ).toBe(401);
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
    // A web/site session presented on api/docs' host.
    expect(
      (await request(`${gate.url}/p/api/docs/`, { headers: { cookie: `agentvm_gate_session=${session}` } })).status,
    ).toBe(403);
    // A web/site one-time token used on api/docs (and it stays unused: it still works where it belongs).
    expect(
      (
        await request(`${gate.url}/p/api/docs/?grant=${otherToken}`, {
          method: 'POST',
          headers: { origin: new URL(viaHost(`${gate.url}/p/api/docs/`)).origin },
          body: '',
        })
      ).status,
    ).toBe(403);
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
    expect((JSON.parse(list.stdout) as { grants: Array<{ id: string }> }).grants.map((g) => g.id)).not.toContain(
      result.grant.id,
    );
    const expiries = auditRecords(fx.root).filter(
      (r) => r.event === 'gate.expire' && r.gate?.grantId === result.grant.id,
    );
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
      while (!stop)
        statuses.push({
          status: (await request(`${gate.url}/p/web/site/`, { headers })).status,
          at: performance.now(),
        });
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
    console.log(
      `[gate] revoke: CLI ${(revokedAt - t0).toFixed(0)} ms; next request after it refused in ${nextMs.toFixed(1)} ms; during the run ${statuses.length} requests, last 200 at +${lastAllowed ? (lastAllowed.at - t0).toFixed(0) : '–'} ms, first 403 at +${firstRefusal ? (firstRefusal.at - t0).toFixed(0) : '–'} ms (CLI returned at +${(revokedAt - t0).toFixed(0)} ms)`,
    );
    if (lastAllowed) expect(lastAllowed.at).toBeLessThanOrEqual(revokedAt + 1); // nothing allowed after the command returned… plus the request in flight
    // Revoking again changes nothing.
    const again = JSON.parse(
      (await agentvm(['gate', 'revoke', result.grant.id, '--root', fx.root, '--json'])).stdout,
    ) as { alreadyRevoked: string[] };
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
      const raw = await rawRequest(
        gate.port,
        `GET ${t} HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\nConnection: close\r\n\r\n`,
      );
      expect(raw, t).toMatch(/^HTTP\/1\.1 400 /);
    }
    const backslash = await rawRequest(
      gate.port,
      `GET /p/web/site/..\\..\\api\\docs\\ HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\nConnection: close\r\n\r\n`,
    );
    expect(backslash).toMatch(/^HTTP\/1\.1 400 /);
    const absolute = await rawRequest(
      gate.port,
      `GET http://127.0.0.1:${b.port}/ HTTP/1.1\r\nHost: 127.0.0.1:${b.port}\r\nCookie: ${cookie}\r\nConnection: close\r\n\r\n`,
    );
    expect(absolute).toMatch(/^HTTP\/1\.1 404 /); // that Host names no preview: the uniform refusal
    const absoluteOnSite = await rawRequest(
      gate.port,
      `GET http://127.0.0.1:${b.port}/ HTTP/1.1\r\nHost: ${new URL(viaHost(`${gate.url}/p/web/site/`)).host}\r\nCookie: ${cookie}\r\nConnection: close\r\n\r\n`,
    );
    expect(absoluteOnSite).toMatch(/^HTTP\/1\.1 400 /);
    const connect = await rawRequest(
      gate.port,
      `CONNECT 127.0.0.1:${b.port} HTTP/1.1\r\nHost: 127.0.0.1:${b.port}\r\n\r\n`,
    );
    expect(connect).toMatch(/^HTTP\/1\.1 (400|405) /);
    // Only WebSocket upgrades are tunnelled (test/gate-wire.test.ts); any other protocol is refused before any upstream.
    const upgrade = await rawRequest(
      gate.port,
      `GET /p/web/site/ HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n`,
    );
    expect(upgrade).toMatch(/^HTTP\/1\.1 501 /);
    const wsWithoutSession = await rawRequest(
      gate.port,
      `GET /p/web/site/ HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
    expect(wsWithoutSession).toMatch(/^HTTP\/1\.1 401 /);
    expect(hitsOf(a)).toBe(aBefore);
    // A Host header naming an upstream address (or anything but a preview's name) reaches nothing: the uniform 404.
    const spoofed = await request(`http://127.0.0.1:${gate.port}/`, {
      headers: { cookie, host: `127.0.0.1:${b.port}` },
    });
    expect(spoofed.status).toBe(404);
    const site = await request(`${gate.url}/p/web/site/`, { headers: { cookie } });
    expect(site.body).toContain('preview a');
    expect(a.hits.at(-1)!.headers.host).toBe(`127.0.0.1:${a.port}`); // the upstream's own address, never the client's
    const spoofedNoSession = await request(`http://127.0.0.1:${gate.port}/`, {
      headers: { host: `127.0.0.1:${b.port}` },
    });
    expect(spoofedNoSession.status).toBe(404);
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
      expect((await request(`${gate.url}/p/new/one/`, { headers: { cookie: ex.cookie! } })).body).toContain(
        'preview c',
      );
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
    const over = await agentvm([
      'gate',
      'grant',
      'api/docs',
      '--root',
      fx.root,
      '--to',
      'ana@example.com',
      '--ttl',
      '2h',
      '--reason',
      'x',
    ]);
    expect(over.code).toBe(1);
    expect(over.stderr).toContain('gate.ttl-invalid');
    expect(over.stderr).toContain('maximum of 1h');
    const stranger = await agentvm([
      'gate',
      'grant',
      'web/site',
      '--root',
      fx.root,
      '--to',
      'eve@example.com',
      '--ttl',
      '5m',
      '--reason',
      'x',
    ]);
    expect(stranger.code).toBe(1);
    expect(stranger.stderr).toContain('gate.not-grantee');
    const unknown = await agentvm([
      'gate',
      'grant',
      'web/nope',
      '--root',
      fx.root,
      '--to',
      'ana@example.com',
      '--ttl',
      '5m',
      '--reason',
      'x',
      '--json',
    ]);
    expect(unknown.code).toBe(1);
    conforms('error.schema.json', JSON.parse(unknown.stdout));
    // An identity with a line break is quoted in the message, never printed raw.
    const forged = await agentvm([
      'gate',
      'grant',
      'web/site',
      '--root',
      fx.root,
      '--to',
      'ana@example.com\nX',
      '--ttl',
      '5m',
      '--reason',
      'x',
    ]);
    expect(forged.code).toBe(1);
    expect(forged.stderr).toContain('"ana@example.com\\nX" is not a grantee');
    // Revoking by a preview that does not exist is an error, not "nothing to revoke".
    const typo = await agentvm(['gate', 'revoke', '--preview', 'web/sight', '--root', fx.root]);
    expect(typo.code).toBe(1);
    expect(typo.stderr).toContain('gate.route-unknown');
    for (const r of [over, stranger, unknown, forged, typo]) expect(hasStackTrace(r.stdout + r.stderr)).toBe(false);
  });

  it('list shows live grants with expiry and no token; --json outputs match their schemas', async () => {
    const { result, cli } = await grant(fx.root, 'web/site', {
      to: 'bo@example.com',
      ttl: '10m',
      reason: 'list check',
    });
    secrets.push(new URL(result.link).searchParams.get('grant')!);
    conforms('gate-grant-result.schema.json', JSON.parse(cli.stdout));
    const list = await agentvm(['gate', 'list', '--root', fx.root, '--json']);
    expect(list.code).toBe(0);
    const doc = JSON.parse(list.stdout) as { grants: Array<{ id: string; expires: string; identity: string }> };
    conforms('gate-list-result.schema.json', doc);
    expect(doc.grants.find((g) => g.id === result.grant.id)).toMatchObject({
      identity: 'bo@example.com',
      expires: result.grant.expires,
    });
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
    for (const e of ['gate.grant', 'gate.revoke', 'gate.expire', 'gate.request', 'gate.route-delete'])
      expect(events, e).toContain(e);
    const allowed = records.find(
      (r) => r.event === 'gate.request' && r.result === 'ok' && r.gate?.status === 200 && r.gate.grantId !== undefined,
    );
    expect(allowed?.gate).toMatchObject({
      preview: 'web/site',
      identity: expect.any(String),
      grantId: expect.stringMatching(/^g-/),
      source: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
      path: expect.stringMatching(/^\//),
    });
    const denied = records.find(
      (r) =>
        r.event === 'gate.request' &&
        r.result === 'failed' &&
        r.gate?.status === 403 &&
        /revoked/.test(r.gate.reason ?? ''),
    );
    expect(denied?.gate?.grantId).toMatch(/^g-/);
    expect(records.find((r) => r.event === 'gate.grant')?.gate?.reason).toBe('review of the page');
    expect((await verifyAuditLog(gatePaths(fx.root).audit)).ok).toBe(true);
    // No secret anywhere on disk under the root.
    const everything = execFileSync('sh', ['-c', `find ${fx.root} -type f -exec cat {} +`], {
      encoding: 'utf8',
      maxBuffer: 1 << 26,
    });
    expect(secrets.length).toBeGreaterThan(8);
    for (const s of secrets) expect(everything).not.toContain(s);
  });

  it('renders agentvm-gate.service that systemd-analyze verify accepts', async () => {
    const r = await agentvm(['gate', 'serve', '--root', fx.root, '--host', 'edge-1', '--print-unit']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      new RegExp(
        `^ExecStart=${process.execPath} \\S+/bin/run\\.js gate serve --root ${fx.root} --host edge-1 --address 127\\.0\\.0\\.1 --port 8443$`,
        'm',
      ),
    );
    const unit = path.join(fx.root, 'agentvm-gate.service');
    writeFileSync(unit, r.stdout);
    execFileSync('systemd-analyze', ['verify', unit], { stdio: 'pipe' }); // throws on a unit systemd would reject
    const unsafe = await agentvm(['gate', 'serve', '--root', `${fx.root}/%h`, '--host', 'edge-1', '--print-unit']);
    expect(unsafe.code).toBe(1);
    expect(unsafe.stderr).toContain('gate.unsafe-unit-value');
  });

  it('refuses to listen on a non-loopback address without TLS, with a clear error', async () => {
    const r = await agentvm([
      'gate',
      'serve',
      '--root',
      fx.root,
      '--host',
      'edge-1',
      '--address',
      '0.0.0.0',
      '--port',
      '0',
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('gate.exposed');
    expect(r.stderr).toContain('loopback only');
  });
});

describe('agentvm gate over TLS', () => {
  it('serves HTTPS with a certificate by reference, sets a Secure session cookie, and tunnels a WebSocket over TLS', async () => {
    assertBuilt();
    const fx = tempRoot();
    const up = await startUpstream('tls');
    let gate: GateProcess | undefined;
    try {
      const cert = path.join(fx.root, 'gate.crt');
      const key = path.join(fx.root, 'gate.key');
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'rsa:2048',
          '-nodes',
          '-keyout',
          key,
          '-out',
          cert,
          '-days',
          '1',
          '-subj',
          '/CN=127.0.0.1',
          '-addext',
          'subjectAltName=IP:127.0.0.1',
        ],
        { stdio: 'ignore' },
      );
      await applyRoute(fx.root, { workload: 'web', preview: 'site', port: up.port });
      gate = await startGate(fx.root, [
        '--routing',
        'path',
        '--address',
        '127.0.0.1',
        '--tls-cert',
        `file:${cert}`,
        '--tls-key',
        `file:${key}`,
      ]);
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
      // A WebSocket over the gate's TLS listener: handshake from the gate's own https origin, one frame each way.
      const live = await startWsUpstream();
      try {
        await applyRoute(fx.root, { workload: 'web', preview: 'live', port: live.port });
        const liveCookie = (await exchange((await grant(fx.root, 'web/live')).result.link, ca)).cookie!;
        const echoed = await new Promise<string>((resolve, reject) => {
          const socket = tls.connect({ host: '127.0.0.1', port: gate!.port, ca }, () => {
            socket.write(
              `GET /p/web/live/socket HTTP/1.1\r\nHost: 127.0.0.1:${gate!.port}\r\nOrigin: ${gate!.url}\r\nCookie: ${liveCookie}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
            );
          });
          let buf = Buffer.alloc(0);
          let switched = false;
          socket.on('data', (d: Buffer) => {
            buf = Buffer.concat([buf, d]);
            if (!switched) {
              const end = buf.indexOf('\r\n\r\n');
              if (end === -1) return;
              if (!buf.subarray(0, end).toString('latin1').startsWith('HTTP/1.1 101 '))
                return reject(new Error(buf.toString('latin1')));
              switched = true;
              buf = buf.subarray(end + 4);
              socket.write(wsFrame('over tls', true));
            }
            const { texts } = wsRead(buf);
            if (texts.length) {
              socket.destroy();
              resolve(texts[0]!);
            }
          });
          socket.on('error', reject);
        });
        expect(echoed).toBe('echo:over tls');
      } finally {
        await live.close();
      }
      writeFileSync(path.join(fx.root, 'unused'), ''); // keep the root non-empty for remove()
    } finally {
      await gate?.stop();
      await up.close();
      fx.remove();
    }
  }, 30_000);
});

describe('agentvm gate behind a TLS-terminating proxy (--public-url)', () => {
  it('links point at the public origin; cookies are Secure; upstreams see https; WebSockets from that origin pass', async () => {
    assertBuilt();
    const fx = tempRoot();
    const up = await startUpstream('proxied');
    const live = await startWsUpstream();
    let gate: GateProcess | undefined;
    try {
      await applyRoute(fx.root, { workload: 'web', preview: 'site', port: up.port });
      await applyRoute(fx.root, { workload: 'web', preview: 'live', port: live.port });
      const bad = await agentvm([
        'gate',
        'serve',
        '--root',
        fx.root,
        '--host',
        'edge-1',
        '--port',
        '0',
        '--public-url',
        'https://previews.example.test/p/',
      ]);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain('--public-url "https://previews.example.test/p/" is not an http(s) origin');
      expect(hasStackTrace(bad.stderr)).toBe(false);
      const credentials = await agentvm([
        'gate',
        'serve',
        '--root',
        fx.root,
        '--host',
        'edge-1',
        '--port',
        '0',
        '--public-url',
        'https://ops:hunter2@previews.example.test',
      ]);
      expect(credentials.code).toBe(1);
      expect(credentials.stderr).not.toContain('hunter2');
      gate = await startGate(fx.root, ['--routing', 'path', '--public-url', 'https://Previews.Example.test']);
      const { result } = await grant(fx.root, 'web/site');
      expect(result.link.startsWith('https://previews.example.test/p/web/site/?grant=')).toBe(true);
      expect((result as unknown as { listener: { publicUrl: string } }).listener.publicUrl).toBe(
        'https://previews.example.test',
      );
      // The proxy forwards to the loopback listener: the test plays the proxy.
      const ex = await exchange(result.link.replace('https://previews.example.test', gate.url));
      expect(ex.setCookie).toMatch(/; HttpOnly; SameSite=Strict; Secure$/);
      const page = await request(`${gate.url}/p/web/site/`, {
        headers: { cookie: ex.cookie!, host: 'previews.example.test' },
      });
      expect(page.status).toBe(200);
      expect(up.hits.at(-1)!.headers['x-forwarded-proto']).toBe('https');
      const liveGrant = (await grant(fx.root, 'web/live')).result;
      const liveCookie = (await exchange(liveGrant.link.replace('https://previews.example.test', gate.url))).cookie!;
      const handshake = (origin: string): Promise<string> =>
        rawRequest(
          gate!.port,
          `GET /p/web/live/socket HTTP/1.1\r\nHost: previews.example.test\r\nCookie: ${liveCookie}\r\nOrigin: ${origin}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
        );
      expect(await handshake('https://previews.example.test')).toMatch(/^HTTP\/1\.1 101 /);
      expect(await handshake('https://evil.example')).toMatch(/^HTTP\/1\.1 403 /);
      const unit = await agentvm([
        'gate',
        'serve',
        '--root',
        fx.root,
        '--host',
        'edge-1',
        '--public-url',
        'https://previews.example.test',
        '--print-unit',
      ]);
      expect(unit.stdout).toMatch(/ --public-url https:\/\/previews\.example\.test$/m);
    } finally {
      await gate?.stop();
      await up.close();
      await live.close();
      fx.remove();
    }
  }, 30_000);
});

// Findings of the gate's security review (decisions/0008, "Review fixes"): each case failed before its fix.
describe('agentvm gate review fixes', () => {
  let fx: ReturnType<typeof tempRoot>;
  let gate: GateProcess;
  let echo: http.Server;
  let echoPort: number;
  let hostile: net.Server;
  let hostilePort: number;
  const upstreams: Upstream[] = [];

  const sessionFor = async (target: string, ttl = '30m'): Promise<string> => {
    const { result } = await grant(fx.root, target, { ttl });
    const ex = await exchange(result.link);
    expect(ex.cookie).toBeDefined();
    return ex.cookie!;
  };

  beforeAll(async () => {
    assertBuilt();
    fx = tempRoot();
    // Echoes the request headers it received, and tries to plant and clear gate cookies.
    echo = http.createServer((req, res) => {
      req.resume();
      res.writeHead(200, {
        'content-type': 'application/json',
        'set-cookie': [
          '=agentvm_gate_web_site=planted; Path=/p/web/site/',
          '= AGENTVM_GATE_web_site=planted2; Path=/p/web/site/',
          'app=1; Path=/',
        ],
        'clear-site-data': '"cookies"',
      });
      res.end(JSON.stringify(req.headers));
    });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    echoPort = (echo.address() as AddressInfo).port;
    // Answers with a status line node's response writer would throw on.
    hostile = net.createServer((socket) => {
      let head = '';
      socket.setEncoding('latin1').on('data', (d: string) => {
        head += d;
        if (!head.includes('\r\n\r\n')) return;
        const line = head.startsWith('GET /status000') ? 'HTTP/1.1 000 Zero' : 'HTTP/1.1 200 O\x01K';
        socket.end(`${line}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok`, 'latin1');
      });
      socket.on('error', () => {});
    });
    await new Promise<void>((r) => hostile.listen(0, '127.0.0.1', r));
    hostilePort = (hostile.address() as AddressInfo).port;
    await applyRoute(fx.root, { workload: 'web', preview: 'site', port: echoPort });
    await applyRoute(fx.root, { workload: 'other', preview: 'site', port: echoPort });
    await applyRoute(fx.root, { workload: 'ttl', preview: 'site', port: echoPort, maxTtl: '2h' });
    await applyRoute(fx.root, { workload: 'hostile', preview: 'up', port: hostilePort });
    gate = await startGate(fx.root);
    hostRouting = { root: fx.root };
  }, 30_000);

  afterAll(async () => {
    hostRouting = undefined;
    await gate?.stop();
    for (const u of upstreams) await u.close();
    await new Promise<void>((r) => (echo ? echo.close(() => r()) : r()));
    echo?.closeAllConnections();
    await new Promise<void>((r) => (hostile ? hostile.close(() => r()) : r()));
    fx?.remove();
  });

  it('a socket upstream redirected by a symlink (socket or workload directory) is refused with 502', async () => {
    const dirOf = (w: string): string => gatePaths(fx.root).socketDir(w);
    mkdirSync(dirOf('sa'), { recursive: true });
    mkdirSync(dirOf('sb'), { recursive: true });
    const sa = await startUpstream('sa', path.join(dirOf('sa'), 'a.sock'));
    const sb = await startUpstream('sb', path.join(dirOf('sb'), 'b.sock'));
    upstreams.push(sa, sb);
    await applyRoute(fx.root, { workload: 'sa', preview: 'site', port: 0, socket: 'a.sock' });
    await applyRoute(fx.root, { workload: 'sb', preview: 'site', port: 0, socket: 'b.sock' });
    await applyRoute(fx.root, { workload: 'sc', preview: 'site', port: 0, socket: 'b.sock' });
    const cookie = await sessionFor('sa/site');
    const direct = await request(`${gate.url}/p/sa/site/`, { headers: { cookie } });
    expect(direct.body).toContain('preview sa');

    const bHits = sb.hits.length;
    rmSync(path.join(dirOf('sa'), 'a.sock'));
    symlinkSync('../sb/b.sock', path.join(dirOf('sa'), 'a.sock'));
    const viaLink = await request(`${gate.url}/p/sa/site/`, { headers: { cookie } });
    expect(viaLink.status).toBe(502);
    expect(viaLink.body).toContain('upstream socket is not a socket file');
    // The workload directory itself a symlink to another workload's.
    symlinkSync('sb', dirOf('sc'));
    const scCookie = await sessionFor('sc/site');
    const viaDir = await request(`${gate.url}/p/sc/site/`, { headers: { cookie: scCookie } });
    expect(viaDir.status).toBe(502);
    expect(viaDir.body).not.toContain('preview sb');
    expect(sb.hits.length).toBe(bHits);
  });

  it('a hostile upstream status line (bad reason phrase, status 000) gives 502 and the gate keeps serving', async () => {
    const cookie = await sessionFor('hostile/up');
    const badReason = await request(`${gate.url}/p/hostile/up/reason`, { headers: { cookie } });
    expect(badReason.status).toBe(502);
    const badStatus = await request(`${gate.url}/p/hostile/up/status000`, { headers: { cookie } });
    expect(badStatus.status).toBe(502);
    expect(gate.child.exitCode).toBeNull();
    expect((await request(`${gate.url}/p/web/site/`)).status).toBe(401);
  });

  it('a later apply that lowers maxTtl cuts existing grants (403)', async () => {
    const cookie = await sessionFor('ttl/site', '2h');
    expect((await request(`${gate.url}/p/ttl/site/`, { headers: { cookie } })).status).toBe(200);
    await applyRoute(fx.root, { workload: 'ttl', preview: 'site', port: echoPort, maxTtl: '1s' });
    await settle(1_100);
    const refused = await request(`${gate.url}/p/ttl/site/`, { headers: { cookie } });
    expect(refused.status).toBe(403);
    expect(refused.body).toContain("grant outlives the preview's maxTtl");
  });

  it('an upstream cannot plant a gate cookie (nameless Set-Cookie) nor send Clear-Site-Data', async () => {
    const cookie = await sessionFor('web/site');
    const page = await request(`${gate.url}/p/web/site/`, { headers: { cookie } });
    expect(page.status).toBe(200);
    // The preview's own cookie for its own host passes (path routing drops it: there `/` covers every preview).
    expect(page.headers['set-cookie']).toEqual(['app=1; Path=/']);
    expect(page.headers['clear-site-data']).toBeUndefined();
  });

  it("a planted cookie under this route's name does not lock the user out: the session for THIS route wins", async () => {
    const mine = (await sessionFor('web/site')).split('=')[1]!;
    const others = (await sessionFor('other/site')).split('=')[1]!;
    const page = await request(`${gate.url}/p/web/site/`, {
      headers: { cookie: `agentvm_gate_session=${others}; agentvm_gate_session=${mine}` },
    });
    expect(page.status).toBe(200);
  });

  it("client-chosen address headers never reach the upstream; X-Forwarded-Host is the preview's own host", async () => {
    const cookie = await sessionFor('web/site');
    const page = await request(`${gate.url}/p/web/site/`, {
      headers: {
        cookie,
        'x-forwarded-host': 'evil.example:1',
        'x-real-ip': '6.6.6.6',
        'true-client-ip': '6.6.6.6',
        'x-client-ip': '6.6.6.6',
        'cf-connecting-ip': '6.6.6.6',
      },
    });
    expect(page.status).toBe(200);
    const seen = JSON.parse(page.body) as Record<string, string>;
    for (const h of ['x-real-ip', 'true-client-ip', 'x-client-ip', 'cf-connecting-ip'])
      expect(seen[h], h).toBeUndefined();
    expect(seen['x-forwarded-host']).toBe(new URL(viaHost(`${gate.url}/p/web/site/`)).host);
  });

  it('the exchange is audited at once as gate.exchange (grant id, identity, source; no token)', async () => {
    const { result } = await grant(fx.root, 'web/site');
    const token = new URL(result.link).searchParams.get('grant')!;
    expect((await exchange(result.link)).reply.status).toBe(303);
    const records = auditRecords(fx.root); // no wait for the request log's group commit
    const rec = records.find((r) => r.event === 'gate.exchange' && r.gate?.grantId === result.grant.id);
    expect(rec?.gate).toMatchObject({
      preview: 'web/site',
      identity: 'ana@example.com',
      source: expect.stringMatching(/^127\.0\.0\.1:\d+$/),
    });
    expect(JSON.stringify(records)).not.toContain(token);
  });

  it('a client trickling headers is cut within headersTimeout (10 s) + 2 s', async () => {
    const t0 = performance.now();
    const closedAfter = await new Promise<number>((resolve) => {
      const socket = net.connect(gate.port, '127.0.0.1');
      socket.on('error', () => {});
      socket.resume(); // read the 408, so the server's end arrives and the socket closes
      socket.write('GET /p/web/site/ HTTP/1.1\r\nHost: x\r\n');
      const drip = setInterval(() => socket.write('X-Slow: 1\r\n'), 500);
      const give = setTimeout(() => {
        clearInterval(drip);
        socket.destroy();
        resolve(Infinity);
      }, 14_000);
      socket.on('close', () => {
        clearInterval(drip);
        clearTimeout(give);
        resolve(performance.now() - t0);
      });
    });
    console.log(`[gate] slowloris connection closed after ${closedAfter.toFixed(0)} ms`);
    expect(closedAfter).toBeLessThan(12_000);
  }, 20_000);

  it('starts on a root without a gate directory (creates it)', async () => {
    const empty = tempRoot();
    try {
      const g = await startGate(empty.root);
      expect(existsSync(gatePaths(empty.root).listener)).toBe(true);
      expect(await g.stop()).toBe(0);
    } finally {
      empty.remove();
    }
  });
});
