// The preview gate in a real browser: headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core)
// follows a grant link, sees the preview page, and after `agentvm gate revoke` the next load is refused; a preview's
// WebSocket works through the gate and is cut at revocation; another site cannot open one with the user's session.
// Missing Chromium: skipped with an install hint, except under CI=true where it fails. Needs `npm run build`.

import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentvm, assertBuilt } from './support/cli.js';
import { applyRoute, grant, startGate, startUpstream, tempRoot, type GateProcess, type Upstream } from './support/gate.js';
import { startWsUpstream, type WsUpstream } from './support/websocket.js';

const CHROMIUM = '/usr/bin/chromium';
const available = existsSync(CHROMIUM);
if (!available && process.env.CI === 'true') throw new Error(`${CHROMIUM} is missing: install it with \`apt-get install chromium\` (CI=true requires the browser test).`);
if (!available) console.warn(`[gate-browser] skipped: ${CHROMIUM} is missing. Install it with \`apt-get install chromium\`.`);

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
      await page.goto(result.link);
      await page.waitForURL(`${gate.url}/p/web/live/`);
      await page.waitForFunction("document.getElementById('log').textContent.includes('echo:hi')", undefined, { timeout: 5_000 });
      expect(live.handshakes.at(-1)?.cookie).toBeUndefined(); // the gate's session cookie stays with the gate
      expect((await agentvm(['gate', 'revoke', result.grant.id, '--root', fx.root])).code).toBe(0);
      await page.evaluate("window.ws.send('after revoke')");
      await page.waitForFunction("document.getElementById('state').textContent === 'closed'", undefined, { timeout: 3_000 });
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
        const ws = new WebSocket('${gate.url.replace(/^http/, 'ws')}/p/web/live/socket');
        ws.onopen = () => { document.getElementById('state').textContent = 'open'; };
        ws.onerror = ws.onclose = () => { if (document.getElementById('state').textContent !== 'open') document.getElementById('state').textContent = 'refused'; };
      </script>`);
    });
    await new Promise<void>((r) => site.listen(0, '127.0.0.1', r));
    try {
      await withBrowser(async (browser) => {
        const page = await browser.newPage();
        await page.goto(result.link); // the user holds a live session for web/live in this browser
        await page.waitForURL(`${gate.url}/p/web/live/`);
        await page.waitForFunction("document.getElementById('state').textContent === 'open'", undefined, { timeout: 5_000 });
        const handshakesWithSession = live.handshakes.length;
        await page.goto(`http://localhost:${(site.address() as AddressInfo).port}/`);
        await page.waitForFunction("document.getElementById('state').textContent !== 'connecting'", undefined, { timeout: 5_000 });
        expect(await page.textContent('#state')).toBe('refused');
        expect(live.handshakes.length).toBe(handshakesWithSession); // the other site's handshake never reached the preview
        expect(handshakesWithSession).toBe(before + 1);
      });
    } finally {
      await new Promise<void>((r) => { site.close(() => r()); site.closeAllConnections(); });
    }
  }, 60_000);

  it('follows a grant link, sees the preview, and is refused on the next load after revoke', async () => {
    await withBrowser(async (browser) => {
      const page = await browser.newPage();
      const { result } = await grant(fx.root, 'web/site', { reason: 'browser review' });
      const first = await page.goto(result.link);
      expect(first?.status()).toBe(200); // the exchange page, which navigates on to the preview
      await page.waitForURL(`${gate.url}/p/web/site/`); // the token is gone from the address bar
      expect(await page.textContent('#who')).toBe('preview browser');
      const cookies = await page.context().cookies();
      expect(cookies.find((c) => c.name === 'agentvm_gate_web_site')).toMatchObject({ path: '/p/web/site/', httpOnly: true, sameSite: 'Strict' });
      expect(await page.evaluate<string>('document.cookie')).not.toContain('agentvm_gate'); // HttpOnly: scripts cannot read it

      expect((await page.reload())?.status()).toBe(200);
      const hitsBefore = up.hits.length;
      const revoke = await agentvm(['gate', 'revoke', result.grant.id, '--root', fx.root]);
      expect(revoke.code).toBe(0);
      const after = await page.reload();
      expect(after?.status()).toBe(403);
      expect(await page.textContent('body')).toMatch(/revoked/);
      expect(up.hits.length).toBe(hitsBefore);
      // The one-time link does not work a second time either.
      expect((await page.goto(result.link))?.status()).toBe(403);
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
        await page.waitForURL(`${gate.url}/p/web/site/`);
        expect(await page.textContent('#who', { timeout: 5_000 })).toBe('preview browser');
      });
    } finally {
      await new Promise<void>((r) => { site.close(() => r()); site.closeAllConnections(); });
    }
  }, 60_000);
});
