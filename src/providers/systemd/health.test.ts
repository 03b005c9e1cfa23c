// Health polling against real HTTP servers (TCP and unix socket): late starters, failing checks, deadlines.
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describeHealth, probe, waitHealthy } from './health.js';

const servers: Server[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function serve(handler: (path: string) => number): Server {
  const s = createServer((req, res) => {
    res.statusCode = handler(req.url ?? '');
    res.end('{}');
  });
  servers.push(s);
  return s;
}

const listenTcp = (s: Server): Promise<number> =>
  new Promise((r) => s.listen(0, '127.0.0.1', () => r((s.address() as { port: number }).port)));
const freePort = async (): Promise<number> => {
  const s = createServer();
  const port = await listenTcp(s);
  await new Promise((r) => s.close(r));
  return port;
};

describe('waitHealthy', () => {
  it('waits for a server that starts late and answers 2xx', async () => {
    const port = await freePort();
    setTimeout(() => serve((p) => (p === '/healthz' ? 200 : 404)).listen(port, '127.0.0.1'), 300);
    const r = await waitHealthy({ port }, '/healthz', { timeoutMs: 5_000, intervalMs: 50 });
    expect(r.ok).toBe(true);
    expect(r.status).toBe(200);
    expect(r.attempts).toBeGreaterThan(1);
  });

  it('fails at the deadline on a 503 and says what it got', async () => {
    const port = await listenTcp(serve(() => 503));
    const r = await waitHealthy({ port }, '/healthz', { timeoutMs: 400, intervalMs: 50 });
    expect(r.ok).toBe(false);
    expect(describeHealth(r)).toBe('HTTP 503');
    expect(r.elapsedMs).toBeGreaterThanOrEqual(300);
  });

  it('fails on a refused connection', async () => {
    const r = await waitHealthy({ port: await freePort() }, '/healthz', { timeoutMs: 300, intervalMs: 50 });
    expect([r.ok, describeHealth(r)]).toEqual([false, 'ECONNREFUSED']);
  });

  it('gives up early when the unit is gone', async () => {
    const r = await waitHealthy({ port: await freePort() }, '/healthz', {
      timeoutMs: 10_000,
      intervalMs: 50,
      stillRunning: async () => false,
    });
    expect(r.gaveUp).toBe(true);
    expect(r.elapsedMs).toBeLessThan(2_000);
  });

  it('probes a unix socket', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'agentvm-health-'));
    dirs.push(dir);
    const socketPath = path.join(dir, 'g.sock');
    const s = serve((p) => (p === '/healthz' ? 204 : 500));
    await new Promise<void>((r) => s.listen(socketPath, r));
    expect(await probe({ socketPath }, '/healthz', 1_000)).toEqual({ status: 204 });
    expect((await waitHealthy({ socketPath }, '/healthz', { timeoutMs: 1_000 })).ok).toBe(true);
  });
});
