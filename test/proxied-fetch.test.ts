// proxiedFetch (the MCP gateway's and `tools pin`'s only way to an HTTP server) against the real egress proxy and a
// real loopback HTTP server: requests go through the proxy's CONNECT tunnel, a destination outside the caller's
// allowlist is an EgressRefusedError with the proxy's reason, and the SDK's one long-lived abort signal does not
// collect a listener per request (a gateway makes two requests per tool call, for as long as it runs).

import { getEventListeners } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EgressProxy } from '../src/egress/proxy.js';
import { EgressRefusedError, proxiedFetch } from '../src/mcp/proxied-fetch.js';

describe('proxiedFetch through the egress proxy', () => {
  let dir: string;
  let server: Server;
  let port = 0;
  let proxy: EgressProxy;
  let socket: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'proxied-fetch-'));
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => res.end(`echo:${body}`));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
    socket = path.join(dir, 'caller', 'proxy.sock');
    proxy = new EgressProxy({ host: 'test', auditFile: path.join(dir, 'audit.jsonl'), ownAddresses: [] });
    await proxy.reload({
      resolvers: [],
      callers: [{ id: 'mcp.t.p', workload: 't', entries: [{ host: '127.0.0.1', port }], socket }],
    });
  });

  afterAll(async () => {
    await proxy?.close();
    server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('GIVEN one signal shared by many requests THEN each answer arrives through the proxy and no abort listener is left behind', async () => {
    const fetch = proxiedFetch(socket);
    const signal = new AbortController().signal;
    for (let i = 0; i < 25; i++) {
      const res = await fetch(`http://127.0.0.1:${port}/mcp`, { method: 'POST', body: `n${i}`, signal });
      expect(await res.text()).toBe(`echo:n${i}`);
    }
    // Every answer came through the proxy, over kept-alive tunnels: far fewer tunnels than requests.
    expect(proxy.counters.allowed).toBeGreaterThanOrEqual(1);
    expect(proxy.counters.allowed).toBeLessThan(25);
    // The last request's socket closes after its body is read: give its 'close' a turn of the event loop.
    for (let i = 0; i < 100 && getEventListeners(signal, 'abort').length > 0; i++)
      await new Promise((r) => setImmediate(r));
    expect(getEventListeners(signal, 'abort')).toHaveLength(0);
  });

  it('GIVEN a destination outside the allowlist THEN the refusal is an EgressRefusedError with the reason', async () => {
    const err = await proxiedFetch(socket)(`http://127.0.0.1:${port + 1}/mcp`, { method: 'POST', body: 'x' }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(EgressRefusedError);
    expect((err as EgressRefusedError).reason).toContain(`127.0.0.1:${port + 1} refused for mcp.t.p`);
  });
});
