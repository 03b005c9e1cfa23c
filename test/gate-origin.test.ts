// The gate's default, host routing (ADR 0014), against the real `agentvm gate serve` process and real upstreams: one
// origin per preview with secret-tagged `*.localhost` names, links that bots cannot burn, one uniform refusal for
// unknown hosts, headers an upstream or a client may not pass, the signed identity header, streams (SSE, downloads,
// long polls) cut at revoke and expiry, socket upstreams that a symlink swap cannot redirect (10,000 requests), a
// slow-connection flood from one source that leaves another source's session fully served, and audit aggregation.
// Everything is driven by counts and events. Needs `npm run build` first.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createPublicKey, verify } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatePaths } from '../src/gate/paths.js';
import type { AuditEvent } from '../src/state/audit-log.js';
import { hostPaths } from '../src/model/index.js';
import { agentvm, assertBuilt } from './support/cli.js';
import {
  applyRoute,
  connectAddress,
  exchange,
  grant,
  request,
  startGate,
  tempRoot,
  type GateProcess,
} from './support/gate.js';

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

/** Polls `what` every 50 ms until it holds (an event the test waits for), failing after `ms`. */
async function until(what: () => boolean, ms = 10_000): Promise<void> {
  for (let waited = 0; !what(); waited += 50) {
    if (waited > ms) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface Rich {
  server: http.Server;
  port: number;
  hits: Array<{ url: string; headers: http.IncomingHttpHeaders }>;
  close(): Promise<void>;
}

/** An upstream with the paths the tests need: headers echo, hostile response headers, SSE, a slow download, a long poll. */
async function startRich(name: string, socketPath?: string): Promise<Rich> {
  const hits: Rich['hits'] = [];
  const server = http.createServer((req, res) => {
    hits.push({ url: req.url ?? '', headers: req.headers });
    req.resume();
    const url = req.url ?? '/';
    if (url === '/headers') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify(req.headers));
    }
    if (url === '/hostile') {
      res.writeHead(200, {
        'content-type': 'text/plain',
        'service-worker-allowed': '/',
        'strict-transport-security': 'max-age=0',
        'referrer-policy': 'unsafe-url',
        'set-cookie': [
          'app=1; Path=/',
          'wide=1; Domain=localhost; Path=/',
          'agentvm_gate_session=planted; Path=/',
          '__Host-agentvm_gate_session=planted; Path=/; Secure',
        ],
      });
      return res.end('hostile');
    }
    if (url === '/sse' || url === '/download') {
      res.writeHead(200, { 'content-type': url === '/sse' ? 'text/event-stream' : 'application/octet-stream' });
      let n = 0;
      const timer = setInterval(
        () => res.write(url === '/sse' ? `data: ${n++}\n\n` : Buffer.alloc(16 * 1024, n++ % 256)),
        100,
      );
      res.on('close', () => clearInterval(timer));
      return;
    }
    if (url === '/poll') return; // answers never: a long poll
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`preview ${name}`);
  });
  await new Promise<void>((r) => (socketPath ? server.listen(socketPath, r) : server.listen(0, '127.0.0.1', r)));
  return {
    server,
    port: socketPath ? 0 : (server.address() as net.AddressInfo).port,
    hits,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

/** A streamed GET with a session: counts body chunks as they arrive, and records how the response ended. */
function stream(
  url: string,
  cookie: string,
): { chunks: () => number; ended: Promise<'complete' | 'cut'>; status: Promise<number> } {
  const u = new URL(url);
  let chunks = 0;
  let setStatus: (s: number) => void = () => {};
  const status = new Promise<number>((r) => (setStatus = r));
  const ended = new Promise<'complete' | 'cut'>((resolve) => {
    const req = http.get(
      {
        host: connectAddress(u.hostname),
        port: u.port,
        path: u.pathname,
        headers: { host: u.host, cookie },
        agent: false,
      },
      (res) => {
        setStatus(res.statusCode ?? 0);
        res.on('data', () => chunks++);
        res.on('end', () => resolve('complete'));
        res.on('aborted', () => resolve('cut'));
        res.on('error', () => resolve('cut'));
        res.on('close', () => resolve(res.complete ? 'complete' : 'cut'));
      },
    );
    req.on('error', () => resolve('cut'));
  });
  return { chunks: () => chunks, ended, status };
}

describe('agentvm gate with host routing (the default)', () => {
  let fx: ReturnType<typeof tempRoot>;
  let a: Rich;
  let b: Rich;
  let gate: GateProcess;
  /** The origin of a preview as the grant link names it. */
  const origins = new Map<string, string>();

  const linkFor = async (target: string, ttl = '30m'): Promise<{ link: string; id: string; expires: string }> => {
    const { result } = await grant(fx.root, target, { ttl });
    origins.set(target, new URL(result.link).origin);
    return { link: result.link, id: result.grant.id, expires: result.grant.expires };
  };
  const sessionFor = async (
    target: string,
    ttl = '30m',
  ): Promise<{ cookie: string; origin: string; id: string; expires: string }> => {
    const { link, id, expires } = await linkFor(target, ttl);
    const ex = await exchange(link);
    expect(ex.reply.status).toBe(303);
    return { cookie: ex.cookie!, origin: new URL(link).origin, id, expires };
  };

  beforeAll(async () => {
    assertBuilt();
    fx = tempRoot();
    a = await startRich('a');
    b = await startRich('b');
    await applyRoute(fx.root, { workload: 'web', preview: 'site', port: a.port });
    await applyRoute(fx.root, { workload: 'api', preview: 'docs', port: b.port });
    gate = await startGate(fx.root);
  }, 30_000);

  afterAll(async () => {
    await gate?.stop();
    await a?.close();
    await b?.close();
    fx?.remove();
  });

  it('links name the preview by a tagged *.localhost host; a bot’s HEAD and GET leave the link usable; the person’s POST exchanges it once', async () => {
    const { link } = await linkFor('web/site');
    const u = new URL(link);
    expect(u.hostname).toMatch(/^site--web--[a-z2-7]{10}\.localhost$/);
    expect(u.port).toBe(String(gate.port));
    expect(u.pathname).toBe('/');
    const before = a.hits.length;
    // A chat unfurler's HEAD, a mail scanner's GET and a browser prefetch: each sees the page, none spends the link.
    expect((await request(link, { method: 'HEAD' })).status).toBe(200);
    const scanned = await request(link);
    expect(scanned.status).toBe(200);
    expect(scanned.headers['set-cookie']).toBeUndefined();
    expect(scanned.body).toContain('<form method="post"');
    expect((await request(link, { headers: { purpose: 'prefetch', 'sec-purpose': 'prefetch' } })).status).toBe(200);
    // A POST from elsewhere (no Origin, another origin, a cross-site fetch) is refused and spends nothing.
    expect((await request(link, { method: 'POST', body: '' })).status).toBe(403);
    expect(
      (await request(link, { method: 'POST', headers: { origin: 'http://evil.localhost:1' }, body: '' })).status,
    ).toBe(403);
    expect(
      (await request(link, { method: 'POST', headers: { origin: u.origin, 'sec-fetch-site': 'cross-site' }, body: '' }))
        .status,
    ).toBe(403);
    const ex = await exchange(link);
    expect(ex.reply.status).toBe(303);
    expect(ex.reply.headers.location).toBe('/');
    expect(ex.setCookie).toMatch(
      /^agentvm_gate_session=[A-Za-z0-9_-]{43}; Path=\/; Max-Age=\d+; HttpOnly; SameSite=Strict$/,
    );
    expect(a.hits.length).toBe(before); // link pages and exchanges are the gate's own
    expect((await exchange(link)).reply.status).toBe(403); // once
    const page = await request(`${u.origin}/index.html?x=1`, { headers: { cookie: ex.cookie! } });
    expect(page.status).toBe(200);
    expect(page.body).toBe('preview a');
    expect(a.hits.at(-1)!.url).toBe('/index.html?x=1'); // the whole path is the preview's: no prefix
    expect(a.hits.at(-1)!.headers['x-forwarded-prefix']).toBeUndefined();
    expect(a.hits.at(-1)!.headers['x-forwarded-host']).toBe(u.host);
  });

  it('an unknown host, an unknown preview, an untagged name, an IP and no Host all get one identical refusal', async () => {
    const { origin } = await sessionFor('web/site');
    const port = gate.port;
    const tagged = new URL(origin).hostname;
    const hosts = [
      `nope--web.localhost:${port}`,
      `site--web.localhost:${port}`,
      `docs--api--aaaaaaaaaa.localhost:${port}`,
      `${tagged.replace('.localhost', '.example.com')}:${port}`,
      `127.0.0.1:${port}`,
      `attacker.example:${port}`,
    ];
    const answers = new Set<string>();
    for (const host of hosts) {
      const r = await request(`http://127.0.0.1:${port}/`, { headers: { host } });
      answers.add(`${r.status} ${r.body}`);
    }
    const raw = await new Promise<string>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => s.end('GET / HTTP/1.0\r\n\r\n'));
      let d = '';
      s.setEncoding('utf8')
        .on('data', (c: string) => (d += c))
        .on('close', () => resolve(d));
    });
    answers.add(`${Number(raw.slice(9, 12))} ${raw.slice(raw.indexOf('\r\n\r\n') + 4)}`);
    expect([...answers]).toEqual(['404 404 Not Found: no such preview\n']);
    // A real preview without a session: 401 — only to a client that already knows its secret name.
    expect((await request(`${origin}/`)).status).toBe(401);
  });

  it("a session of one preview is refused on another preview's host", async () => {
    const site = await sessionFor('web/site');
    await linkFor('api/docs');
    const before = b.hits.length;
    const r = await request(`${origins.get('api/docs')}/`, { headers: { cookie: site.cookie } });
    expect(r.status).toBe(403);
    expect(b.hits.length).toBe(before);
  });

  it('two session cookies for one host (one tossed by a sibling): the one for THIS preview wins, in either order', async () => {
    const site = await sessionFor('web/site');
    const docs = await sessionFor('api/docs');
    const before = a.hits.length;
    for (const cookie of [
      `${docs.cookie}; ${site.cookie}`,
      `${site.cookie}; ${docs.cookie}`,
      `agentvm_gate_session=${'A'.repeat(43)}; ${site.cookie}`,
    ]) {
      const r = await request(`${site.origin}/`, { headers: { cookie } });
      expect(r.status, cookie.replace(/=[^;]+/g, '=…')).toBe(200);
    }
    expect(a.hits.length).toBe(before + 3);
    // Only other previews' sessions: refused, naming the reason, never forwarded.
    expect((await request(`${site.origin}/`, { headers: { cookie: docs.cookie } })).status).toBe(403);
    expect(a.hits.length).toBe(before + 3);
  });

  it('path tricks and absolute-form targets under host routing reach no upstream (the Host names the route, the target is checked)', async () => {
    const s = await sessionFor('web/site');
    const bOrigin = origins.get('api/docs')!;
    const host = new URL(s.origin).host;
    const before = a.hits.length + b.hits.length;
    const raw = (target: string, h = host): Promise<string> =>
      new Promise((resolve) => {
        const sock = net.connect(gate.port, '127.0.0.1', () =>
          sock.write(`GET ${target} HTTP/1.1\r\nHost: ${h}\r\nCookie: ${s.cookie}\r\nConnection: close\r\n\r\n`),
        );
        let d = '';
        sock
          .setEncoding('utf8')
          .on('data', (c: string) => (d += c))
          .on('close', () => resolve(d.slice(0, 12)));
        sock.on('error', () => resolve(d.slice(0, 12)));
      });
    for (const target of ['/../x', '/a/%2e%2e/x', '/a%2fb', '/a\\b', '//x', `${bOrigin}/`, `http://${host}/`, '*']) {
      expect(await raw(target), target).toMatch(/^HTTP\/1\.1 (400|404)$/);
    }
    expect(a.hits.length + b.hits.length).toBe(before);
  });

  it('look-alike and identity headers from a client never reach the upstream; the gate’s signed identity does, and verifies', async () => {
    const s = await sessionFor('web/site');
    const r = await request(`${s.origin}/headers`, {
      headers: {
        cookie: s.cookie,
        x_forwarded_for: '6.6.6.6',
        x_forwarded_host: 'evil',
        'x-agentvm-identity': 'forged',
        'x-forwarded-user': 'root',
      },
    });
    expect(r.status).toBe(200);
    const seen = JSON.parse(r.body) as Record<string, string>;
    for (const h of ['x_forwarded_for', 'x_forwarded_host', 'x-forwarded-user']) expect(seen[h], h).toBeUndefined();
    expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    const jwt = seen['x-agentvm-identity']!;
    expect(jwt).not.toBe('forged');
    const [h, p, sig] = jwt.split('.');
    const key = createPublicKey(readFileSync(path.join(gatePaths(fx.root).dir, 'identity-key.pub.pem')));
    expect(verify(null, Buffer.from(`${h}.${p}`), key, Buffer.from(sig!, 'base64url'))).toBe(true);
    expect(JSON.parse(Buffer.from(h!, 'base64url').toString())).toMatchObject({ alg: 'EdDSA', typ: 'JWT' });
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>;
    expect(claims).toMatchObject({ iss: 'agentvm-gate:edge-1', sub: 'ana@example.com', aud: 'web/site', grant: s.id });
    expect(claims.exp as number).toBeGreaterThan(claims.iat as number);
    expect((claims.exp as number) - (claims.iat as number)).toBeLessThanOrEqual(60);
    // A signature over other claims does not verify (an upstream can tell a forged assertion).
    const forged = Buffer.from(JSON.stringify({ ...claims, sub: 'boss@example.com' })).toString('base64url');
    expect(verify(null, Buffer.from(`${h}.${forged}`), key, Buffer.from(sig!, 'base64url'))).toBe(false);
  });

  it('an upstream cannot widen a worker’s scope, set cookies beyond its host or the gate’s, or turn off HSTS or the referrer guard', async () => {
    const s = await sessionFor('web/site');
    const r = await request(`${s.origin}/hostile`, { headers: { cookie: s.cookie } });
    expect(r.status).toBe(200);
    expect(r.headers['service-worker-allowed']).toBeUndefined();
    expect(r.headers['strict-transport-security']).toBeUndefined(); // plain HTTP: no HSTS at all (the gate's is TLS-only)
    expect(r.headers['set-cookie']).toEqual(['app=1; Path=/']);
    expect(r.headers['referrer-policy']).toBe('same-origin'); // names are secret on localhost: no Referer leaves the origin
  });

  it('SSE and a chunked download are cut at revoke (at most the chunk in flight after it); a long poll is answered 403', async () => {
    for (const what of ['/sse', '/download']) {
      const s = await sessionFor('web/site');
      const st = stream(`${s.origin}${what}`, s.cookie);
      expect(await st.status).toBe(200);
      await until(() => st.chunks() >= 3);
      expect((await agentvm(['gate', 'revoke', s.id, '--root', fx.root])).code).toBe(0);
      const atRevoke = st.chunks();
      expect(await st.ended).toBe('cut');
      expect(st.chunks() - atRevoke, what).toBeLessThanOrEqual(1);
    }
    const s = await sessionFor('web/site');
    const poll = request(`${s.origin}/poll`, { headers: { cookie: s.cookie } });
    await until(() =>
      a.hits.some(
        (h) =>
          h.url === '/poll' &&
          h.headers['x-agentvm-identity'] !== undefined &&
          JSON.parse(Buffer.from(String(h.headers['x-agentvm-identity']).split('.')[1]!, 'base64url').toString())
            .grant === s.id,
      ),
    );
    expect((await agentvm(['gate', 'revoke', s.id, '--root', fx.root])).code).toBe(0);
    const answered = await poll;
    expect(answered.status).toBe(403);
    expect(answered.body).toMatch(/revoked/);
    await until(() =>
      auditRecords(fx.root).some(
        (r) => r.gate?.grantId !== undefined && /^response cut: grant .* was revoked/.test(r.gate?.reason ?? ''),
      ),
    );
  }, 60_000);

  it('SSE and a chunked download are cut at expiry without any revoke', async () => {
    for (const what of ['/sse', '/download']) {
      const s = await sessionFor('web/site', '3s');
      const st = stream(`${s.origin}${what}`, s.cookie);
      expect(await st.status).toBe(200);
      const ended = await st.ended;
      expect(ended, what).toBe('cut');
      // Cut by the gate at expiry, not by the upstream (which streams for ever): the audit says why.
      await until(() =>
        auditRecords(fx.root).some(
          (r) => r.gate?.grantId === s.id && /^response cut: grant .* expired/.test(r.gate?.reason ?? ''),
        ),
      );
    }
  }, 60_000);

  it('refusal floods from one source are audited in aggregate, not one record each', async () => {
    const before = auditRecords(fx.root).length;
    const n = 500;
    const origin = origins.get('web/site')!;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    const u = new URL(origin);
    await Promise.all(
      Array.from(
        { length: n },
        () =>
          new Promise<void>((resolve) => {
            http
              .get({ host: '127.0.0.1', port: u.port, path: '/', headers: { host: u.host }, agent }, (res) => {
                res.resume();
                res.on('end', resolve);
              })
              .on('error', () => resolve());
          }),
      ),
    );
    agent.destroy();
    // Each second's summary is written when that second ends: wait (by event, not by time) until the records account
    // for every refusal — nothing dropped silently — or `until` gives up and the test fails.
    const tally = () => {
      const records = auditRecords(fx.root).slice(before);
      const fresh = records.filter((r) => r.event === 'gate.request' && r.gate?.status === 401).length;
      const counted = records
        .filter((r) => /more refusals not recorded/.test(r.gate?.reason ?? ''))
        .reduce((sum, r) => sum + Number(/: (\d+) more refusals/.exec(r.gate!.reason!)![1]), 0);
      return { fresh, counted };
    };
    await until(() => {
      const t = tally();
      return t.counted > 0 && t.fresh + t.counted >= n;
    }, 30_000);
    expect(tally().fresh).toBeLessThan(n / 2);
  }, 60_000);
});

describe('agentvm gate socket upstreams under a symlink-swapping agent', () => {
  let fx: ReturnType<typeof tempRoot>;
  let real: Rich;
  let victim: Rich;
  let gate: GateProcess;
  let swapper: ChildProcess | undefined;

  beforeAll(async () => {
    assertBuilt();
    fx = tempRoot();
    const dir = path.join(hostPaths(fx.root).run, 'previews', 'sock');
    mkdirSync(dir, { recursive: true });
    real = await startRich('real', path.join(dir, 'real.sock'));
    // Another socket on the machine the agent would like to reach (a root-only daemon, another workload's upstream).
    victim = await startRich('victim', path.join(fx.root, 'victim.sock'));
    linkSync(path.join(dir, 'real.sock'), path.join(dir, 'app.sock'));
    await applyRoute(fx.root, { workload: 'sock', preview: 'app', port: 0, socket: 'app.sock' });
    gate = await startGate(fx.root);
  }, 30_000);

  afterAll(async () => {
    swapper?.kill('SIGKILL');
    await gate?.stop();
    await real?.close();
    await victim?.close();
    fx?.remove();
  });

  it('10,000 requests while the agent swaps its socket for a symlink in a loop: not one reaches the other socket', async () => {
    const { result } = await grant(fx.root, 'sock/app');
    const ex = await exchange(result.link);
    expect(ex.reply.status).toBe(303);
    const origin = new URL(result.link);
    const dir = path.join(hostPaths(fx.root).run, 'previews', 'sock');
    // The agent: app.sock becomes a symlink to the victim, then the real socket again (a hard link), for ever. It counts
    // its swaps in a file replaced atomically, so a read never sees it half-written.
    const script = `const fs=require('fs'),p=require('path');const d=${JSON.stringify(dir)};let n=0;for(;;){try{fs.symlinkSync(${JSON.stringify(path.join(fx.root, 'victim.sock'))},p.join(d,'l'));fs.renameSync(p.join(d,'l'),p.join(d,'app.sock'));fs.linkSync(p.join(d,'real.sock'),p.join(d,'h'));fs.renameSync(p.join(d,'h'),p.join(d,'app.sock'));if(++n%500===0){fs.writeFileSync(p.join(d,'count.tmp'),String(n));fs.renameSync(p.join(d,'count.tmp'),p.join(d,'count'));}}catch(e){}}`;
    swapper = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
    const swaps = (): number => {
      try {
        return Number(readFileSync(path.join(dir, 'count'), 'utf8'));
      } catch {
        return 0;
      }
    };
    await until(() => swaps() > 0);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    const statuses = new Map<number, number>();
    const total = 10_000;
    let sent = 0;
    const worker = async (): Promise<void> => {
      while (sent < total) {
        sent++;
        const status = await new Promise<number>((resolve) => {
          http
            .get(
              {
                host: '127.0.0.1',
                port: origin.port,
                path: '/',
                headers: { host: origin.host, cookie: ex.cookie! },
                agent,
              },
              (res) => {
                res.resume();
                res.on('end', () => resolve(res.statusCode ?? 0));
              },
            )
            .on('error', () => resolve(0));
        });
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    };
    const swapsBefore = swaps();
    await Promise.all(Array.from({ length: 8 }, worker));
    agent.destroy();
    const swapsDuring = swaps() - swapsBefore;
    swapper.kill('SIGKILL');
    console.log(
      `[gate] socket swap: ${JSON.stringify(Object.fromEntries(statuses))} over ${total} requests, ≥${swapsDuring} swaps meanwhile`,
    );
    expect(victim.hits.length).toBe(0);
    expect(swapsDuring).toBeGreaterThan(0);
    expect((statuses.get(200) ?? 0) + (statuses.get(502) ?? 0)).toBe(total);
    expect(real.hits.length).toBe(statuses.get(200));
    expect(statuses.get(200)).toBeGreaterThan(0);
  }, 300_000);
});

describe('agentvm gate per-source limits', () => {
  let fx: ReturnType<typeof tempRoot>;
  let up: Rich;
  let gate: GateProcess;
  const slow: net.Socket[] = [];

  beforeAll(async () => {
    assertBuilt();
    fx = tempRoot();
    up = await startRich('served');
    await applyRoute(fx.root, { workload: 'web', preview: 'site', port: up.port });
    gate = await startGate(fx.root);
  }, 30_000);

  afterAll(async () => {
    for (const s of slow) s.destroy();
    await gate?.stop();
    await up?.close();
    fx?.remove();
  });

  it('1,100 slow connections from one source leave a session from another source fully served', async () => {
    const { result } = await grant(fx.root, 'web/site');
    const u = new URL(result.link);
    // The person's browser, from its own address (127.0.0.2), exchanges the link before the flood starts.
    const page = await request(result.link, { localAddress: '127.0.0.2' });
    expect(page.status).toBe(200);
    const posted = await request(result.link, {
      method: 'POST',
      headers: { origin: u.origin },
      body: '',
      localAddress: '127.0.0.2',
    });
    expect(posted.status).toBe(303);
    const cookie = String(posted.headers['set-cookie']![0]).split(';')[0]!;
    // The flood: 1,100 connections from 127.0.0.1, each sending part of a request head and then nothing.
    let settled = 0;
    for (let i = 0; i < 1_100; i++) {
      const s = net.connect({ port: gate.port, host: '127.0.0.1' });
      slow.push(s);
      let counted = false;
      const settle = (): void => {
        if (!counted) settled++;
        counted = true;
      };
      s.on('connect', () => {
        s.write(`GET / HTTP/1.1\r\nHost: ${u.host}\r\nX-Slow: `);
        settle();
      });
      s.on('error', () => {});
      s.on('close', settle);
    }
    await until(() => settled >= 1_100, 60_000);
    const open = slow.filter((s) => !s.destroyed && s.readyState === 'open').length;
    // The victim: 49 requests, each on a new connection, from 127.0.0.2 while the flood holds its connections.
    let served = 0;
    for (let i = 0; i < 49; i++) {
      const r = await request(`${u.origin}/`, { headers: { cookie }, localAddress: '127.0.0.2' });
      if (r.status === 200 && r.body === 'preview served') served++;
    }
    console.log(
      `[gate] slowloris: ${open} of 1100 flood connections still open when the victim ran; victim served ${served}/49`,
    );
    expect(served).toBe(49);
    await until(() =>
      auditRecords(fx.root).some(
        (r) =>
          /connections over the per-source limit closed/.test(r.gate?.reason ?? '') && r.gate?.source === '127.0.0.1',
      ),
    );
  }, 120_000);
});

describe('agentvm gate host routing under TLS and behind an https proxy', () => {
  let fx: ReturnType<typeof tempRoot>;
  let up: Rich;
  let gate: GateProcess | undefined;

  beforeAll(async () => {
    assertBuilt();
    fx = tempRoot();
    up = await startRich('tls');
    await applyRoute(fx.root, { workload: 'web', preview: 'site', port: up.port });
  }, 30_000);

  afterAll(async () => {
    await gate?.stop();
    await up?.close();
    fx?.remove();
  });

  it('on its own TLS listener and domain: a __Host- session cookie, HSTS on every answer, untagged names', async () => {
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
        '/CN=previews.test',
        '-addext',
        'subjectAltName=DNS:*.previews.test',
      ],
      { stdio: 'ignore' },
    );
    const ca = readFileSync(cert);
    gate = await startGate(fx.root, [
      '--domain',
      'previews.test',
      '--tls-cert',
      `file:${cert}`,
      '--tls-key',
      `file:${key}`,
    ]);
    const { result } = await grant(fx.root, 'web/site');
    const link = new URL(result.link);
    expect(`${link.protocol}//${link.host}${link.pathname}`).toBe(`https://site--web.previews.test:${gate.port}/`);
    const opts = { ca };
    // previews.test has no DNS: request() connects to the listener and names the host (SNI and Host) itself.
    const viaGate = (url: string, o: Parameters<typeof request>[1] = {}): ReturnType<typeof request> =>
      request(url, { ...opts, ...o });
    const page = await viaGate(result.link);
    expect(page.headers['strict-transport-security']).toBe('max-age=31536000');
    const ex = await request(result.link, { ...opts, method: 'POST', headers: { origin: link.origin }, body: '' });
    expect(ex.status).toBe(303);
    const setCookie = String(ex.headers['set-cookie']![0]);
    expect(setCookie).toMatch(
      /^__Host-agentvm_gate_session=[A-Za-z0-9_-]{43}; Path=\/; Max-Age=\d+; HttpOnly; SameSite=Strict; Secure$/,
    );
    const served = await viaGate(`${link.origin}/`, { headers: { cookie: setCookie.split(';')[0]! } });
    expect(served.status).toBe(200);
    expect(served.headers['strict-transport-security']).toBe('max-age=31536000');
    expect(up.hits.at(-1)!.headers['x-forwarded-proto']).toBe('https');
    expect((await viaGate(`${link.origin}/`)).headers['strict-transport-security']).toBe('max-age=31536000'); // refusals too
    // The non-prefixed name is not the session under TLS (a sibling could set it without Secure).
    expect(
      (
        await viaGate(`${link.origin}/`, {
          headers: { cookie: `agentvm_gate_session=${setCookie.split(';')[0]!.split('=')[1]}` },
        })
      ).status,
    ).toBe(401);
    await gate.stop();
    gate = undefined;
  }, 60_000);

  it('behind an https proxy (publicUrl): the domain is the public host, links have no port, cookies are __Host-', async () => {
    gate = await startGate(fx.root, ['--public-url', 'https://previews.example.test']);
    const { result } = await grant(fx.root, 'web/site');
    expect(result.link).toMatch(/^https:\/\/site--web\.previews\.example\.test\/\?grant=[A-Za-z0-9_-]{43}$/);
    const token = new URL(result.link).searchParams.get('grant')!;
    // The proxy forwards the public Host; the browser's Origin is the public https origin.
    const host = 'site--web.previews.example.test';
    const ex = await request(`http://127.0.0.1:${gate.port}/?grant=${token}`, {
      method: 'POST',
      headers: { host, origin: `https://${host}` },
      body: '',
    });
    expect(ex.status).toBe(303);
    expect(String(ex.headers['set-cookie']![0])).toMatch(/^__Host-agentvm_gate_session=.*; Secure$/);
    expect(ex.headers['strict-transport-security']).toBe('max-age=31536000');
    const page = await request(`http://127.0.0.1:${gate.port}/`, {
      headers: { host, cookie: String(ex.headers['set-cookie']![0]).split(';')[0]! },
    });
    expect(page.status).toBe(200);
    await gate.stop();
    gate = undefined;
  }, 60_000);
});
