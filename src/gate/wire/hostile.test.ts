// Hostile clients against the data path's state machine, on real loopback sockets with a minimal policy: each case is
// one explicit transition (ADR 0025). The full gate (grants, revocation, browsers) is tested in test/gate*.test.ts.
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createWireServer, type WireRequest, type WireResponder, type WireServerOptions } from '../wire.js';
import { ClientConnection } from './client.js';
import type { Exchange } from './exchange.js';
import { WireStateError } from './states.js';
import { UpstreamPool } from './upstream.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Long clocks: nothing in these tests may end by a timeout, only by the transition under test. */
function options(
  onRequest: WireServerOptions['onRequest'],
): WireServerOptions & { internal: unknown[]; parse: string[] } {
  const internal: unknown[] = [];
  const parse: string[] = [];
  return {
    internal,
    parse,
    maxHeaderSize: 16 * 1024,
    headersTimeout: 120_000,
    requestTimeout: 120_000,
    keepAliveTimeout: 120_000,
    checkInterval: 1_000,
    maxConnections: 100,
    maxConnectionsPerSource: 50,
    onRequest,
    onParseError: ({ code }) => parse.push(code),
    onInternalError: (error) => internal.push(error),
  };
}

async function startWire(opts: WireServerOptions): Promise<{ port: number; connections(): Promise<number> }> {
  const wire = createWireServer(opts);
  await new Promise<void>((r) => wire.server.listen(0, '127.0.0.1', r));
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        wire.server.close(() => r());
        wire.closeAll();
      }),
  );
  return {
    port: (wire.server.address() as AddressInfo).port,
    connections: () => new Promise((r, j) => wire.server.getConnections((e, n) => (e ? j(e) : r(n)))),
  };
}

/** A raw client that never closes its side on its own; `text()` is everything it has read so far. */
async function rawClient(port: number): Promise<{ socket: net.Socket; text(): string; ended: Promise<void> }> {
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  socket.on('error', () => {});
  let read = '';
  socket.on('data', (d: Buffer) => (read += d.toString('latin1')));
  const ended = new Promise<void>((r) => socket.once('end', () => r()));
  await new Promise<void>((r) => socket.once('connect', () => r()));
  cleanups.push(() => void socket.destroy());
  return { socket, text: () => read, ended };
}

async function until(what: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await what())) await new Promise((r) => setTimeout(r, 20));
}

/** A loopback upstream that answers every head with a 101 and records every byte that follows it. */
async function switchingUpstream(): Promise<{ port: number; after(): string }> {
  let after = '';
  const server = net.createServer((s) => {
    let head = '';
    let switched = false;
    s.on('data', (d: Buffer) => {
      if (switched) return void (after += d.toString('latin1'));
      head += d.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) return;
      switched = true;
      after += head.slice(end + 4);
      s.write('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n');
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return { port: (server.address() as AddressInfo).port, after: () => after };
}

const UPGRADE = 'GET /ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n';

describe('hostile clients against the wire state machine', () => {
  /**
   * A gate that serves every request with 200: `first` is written in one go, then (once the gate has sent its FIN) a
   * later request; the client never closes its side, so the connection is gone only if the gate ended it itself.
   */
  async function afterTheLastAnswer(
    first: string,
  ): Promise<{ text: string; seen: string[]; opts: ReturnType<typeof options> }> {
    const seen: string[] = [];
    const opts = options((req, res) => {
      seen.push(req.url);
      res.respond(200, 'OK', '', 'served');
    });
    const wire = await startWire(opts);
    const c = await rawClient(wire.port);
    c.socket.write(first);
    await c.ended;
    c.socket.write('GET /later HTTP/1.1\r\nhost: x\r\n\r\n');
    await until(async () => (await wire.connections()) === 0);
    return { text: c.text(), seen, opts };
  }

  it("bytes after a refused request are never parsed, and the gate closes the connection itself ('ending')", async () => {
    // An invalid header name (400), with a valid request behind it in the same write. Before ADR 0025 the connection
    // stayed in 'head' until the header timeout, then answered a second time (408).
    const { text, seen, opts } = await afterTheLastAnswer(
      'GET /a HTTP/1.1\r\nhost: x\r\nbad header: 1\r\n\r\nGET /behind HTTP/1.1\r\nhost: x\r\n\r\n',
    );
    expect(text).toMatch(/^HTTP\/1\.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n$/);
    expect(seen).toEqual([]);
    expect(opts.parse).toEqual(['HPE_INVALID_HEADER_TOKEN']);
    expect(opts.internal).toEqual([]);
  });

  it('bytes after a Connection: close request are never served, even pipelined in the same write', async () => {
    const { text, seen } = await afterTheLastAnswer(
      'GET /last HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\nGET /after HTTP/1.1\r\nhost: x\r\n\r\n',
    );
    expect(text.match(/HTTP\/1\.1 /g)).toHaveLength(1);
    expect(text).toContain('connection: close');
    expect(seen).toEqual(['/last']);
  });

  it('a second request pipelined behind an upgrade is never a request: it is tunnel bytes, checked like any chunk', async () => {
    const upstream = await switchingUpstream();
    const seen: string[] = [];
    let checks = 0;
    const opts = options((req: WireRequest, res: WireResponder) => {
      seen.push(req.url);
      res.tunnel({ port: upstream.port }, 'GET /ws HTTP/1.1\r\nconnection: upgrade\r\nupgrade: websocket\r\n', {
        response: () => ({ headers: '' }),
        failed: (reason) => res.respond(502, 'Bad Gateway', '', reason, { close: true }),
        check: () => {
          checks++;
          return undefined;
        },
        closed: () => {},
      });
    });
    const wire = await startWire(opts);
    const c = await rawClient(wire.port);
    c.socket.write(`${UPGRADE}GET /second HTTP/1.1\r\nhost: x\r\n\r\n`);
    await until(() => upstream.after().includes('GET /second'));
    expect(c.text()).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
    expect(c.text()).not.toContain('HTTP/1.1 200');
    expect(seen).toEqual(['/ws']);
    expect(checks).toBeGreaterThan(0);
    expect(opts.internal).toEqual([]);
  });

  it('a second request pipelined behind a refused upgrade is never served: one answer, then the gate closes', async () => {
    const seen: string[] = [];
    const opts = options((req, res) => {
      seen.push(req.url);
      res.respond(403, 'Forbidden', '', 'no', { close: true });
    });
    const wire = await startWire(opts);
    const c = await rawClient(wire.port);
    c.socket.write(`${UPGRADE}GET /second HTTP/1.1\r\nhost: x\r\n\r\n`);
    await c.ended;
    await until(async () => (await wire.connections()) === 0);
    expect(c.text().match(/HTTP\/1\.1 /g)).toHaveLength(1);
    expect(c.text()).toMatch(/^HTTP\/1\.1 403 Forbidden\r\n/);
    expect(seen).toEqual(['/ws']);
  });

  it('requests pipelined past a revoke reach the policy only after the answer before them: the revoke applies', async () => {
    const upstreamHits: string[] = [];
    const up = http.createServer((req, res) => {
      upstreamHits.push(req.url ?? '');
      res.end('a');
    });
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => (up.close(() => r()), up.closeAllConnections())));
    const upPort = (up.address() as AddressInfo).port;
    let revoked = false;
    const opts = options((req, res) => {
      if (revoked) return res.respond(403, 'Forbidden', '', 'revoked');
      res.forward({ port: upPort }, `GET ${req.url} HTTP/1.1\r\nhost: x\r\n`, {
        // The grant is revoked while the first response is on its way: what is pipelined behind it must see that.
        response: () => {
          revoked = true;
          return { headers: '' };
        },
        failed: (reason) => res.respond(502, 'Bad Gateway', '', reason),
      });
    });
    const wire = await startWire(opts);
    const c = await rawClient(wire.port);
    c.socket.write(['/1', '/2', '/3'].map((u) => `GET ${u} HTTP/1.1\r\nhost: x\r\n\r\n`).join(''));
    await until(() => (c.text().match(/HTTP\/1\.1 /g) ?? []).length === 3);
    expect(c.text().match(/HTTP\/1\.1 \d+/g)).toEqual(['HTTP/1.1 200', 'HTTP/1.1 403', 'HTTP/1.1 403']);
    expect(upstreamHits).toEqual(['/1']);
  });
});

describe('an impossible transition closes the connection it happened on', () => {
  it('client: a tunnel cannot open on a connection with no request in flight', async () => {
    const opts = options(() => {});
    let conn: ClientConnection | undefined;
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      conn = new ClientConnection(s, new UpstreamPool(), opts, new Set());
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const c = await rawClient((server.address() as AddressInfo).port);
    await until(() => conn !== undefined);
    expect(conn!.transition('tunnel-opened')).toBe(false);
    await c.ended;
    expect(conn!.state).toBe('closed');
    expect(opts.internal).toHaveLength(1);
    expect(opts.internal[0]).toBeInstanceOf(WireStateError);
    expect(String(opts.internal[0])).toContain("'tunnel-opened' in state 'head'");
  });

  it('upstream: a connection serving one exchange cannot be taken by a second; the first fails and it closes', async () => {
    const server = net.createServer((s) => s.on('error', () => {}));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const pool = new UpstreamPool();
    cleanups.push(() => pool.destroyAll());
    const errors: unknown[] = [];
    const exchange = (name: string): Exchange =>
      ({ name, conn: { internalError: (e: unknown) => errors.push([name, e]) } }) as unknown as Exchange;
    const { conn } = pool.acquire({ port: (server.address() as AddressInfo).port });
    conn.attach(exchange('first'));
    expect(conn.state).toBe('exchange');
    conn.attach(exchange('second'));
    expect(conn.state).toBe('closed');
    expect(conn.socket.destroyed).toBe(true);
    expect(errors).toHaveLength(1);
    const [name, error] = errors[0] as [string, unknown];
    expect(name).toBe('first');
    expect(error).toBeInstanceOf(WireStateError);
    expect(pool.all.size).toBe(0);
  });
});
