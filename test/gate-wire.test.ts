// The gate's HTTP/1.1 data path (src/gate/wire.ts) against the real `agentvm gate serve` process: message framing in
// both directions (chunked, close-delimited, HEAD, 204, Expect: 100-continue, HTTP/1.0), pipelining order, a hostile
// upstream that tries to answer the client's next request, an upstream that dies mid-response, a stale pooled upstream
// connection, large bodies, and bodies of refused requests. The client side is raw bytes on one socket, read by a
// small independent parser (not llhttp), so the test sees exactly what a browser would.
// WebSocket tunnels: per-chunk grant checks, revocation cuts, refusals before any upstream.
// Runs on host routing (the default): requests are written as `/p/web/<preview>/…` and hostRouted() sends them to the
// preview's own host. Needs `npm run build` first.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gatePaths } from '../src/gate/paths.js';
import { agentvm, assertBuilt } from './support/cli.js';
import { hostNames } from '../src/gate/host-names.js';
import { applyRoute, exchange, grant, startGate, tempRoot, type GateProcess } from './support/gate.js';
import { startWsUpstream, wsFrame, wsRead, type WsUpstream } from './support/websocket.js';

interface Parsed {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** One client connection to the gate, read response by response (Content-Length, chunked, or until close). */
/** Host routing (the default): each preview's own host, `<preview>--web--<tag>.localhost:<gate port>`, by preview name. */
const HOSTS = new Map<string, string>();
function learnHosts(root: string, port: number, previews: string[]): void {
  const names = hostNames(gatePaths(root).dir, 'localhost');
  for (const p of previews) HOSTS.set(p, `${names.label('web', p)!}.localhost:${port}`);
}
/** The suites write requests as `GET /p/web/<preview>/<rest> HTTP/1.1\r\nHost: x`; under host routing that request is
 *  `GET /<rest>` with the preview's own Host. Every request line of `text` is rewritten so. */
function hostRouted(text: string): string {
  return text.replace(
    /([A-Z]+ )\/p\/web\/([a-z]+)(\S*)( HTTP\/1\.[01]\r\nHost: )x/g,
    (_m, method: string, name: string, rest: string, mid: string) =>
      `${method}${rest || '/'}${mid}${HOSTS.get(name) ?? `unknown-${name}`}`,
  );
}

class Conn {
  private buf = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  closed = false;
  readonly socket: net.Socket;

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    this.socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    this.socket.on('error', () => {});
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    w.forEach((f) => f());
  }

  private async more(): Promise<void> {
    if (this.closed) throw new Error(`connection closed; unread: ${JSON.stringify(this.buf.toString('latin1'))}`);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`no data in 5 s; unread: ${JSON.stringify(this.buf.toString('latin1'))}`)),
        5_000,
      );
      this.waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  send(text: string | Buffer): void {
    if (typeof text === 'string') text = hostRouted(text);
    this.socket.write(text);
  }

  private async line(): Promise<string> {
    for (;;) {
      const i = this.buf.indexOf('\r\n');
      if (i !== -1) {
        const l = this.buf.subarray(0, i).toString('latin1');
        this.buf = this.buf.subarray(i + 2);
        return l;
      }
      await this.more();
    }
  }

  private async take(n: number): Promise<Buffer> {
    while (this.buf.length < n) await this.more();
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Reads one response; `head`: the request was HEAD (no body whatever the headers say). */
  async response(head = false): Promise<Parsed> {
    const statusLine = await this.line();
    const status = Number(/^HTTP\/1\.[01] (\d{3}) /.exec(statusLine)?.[1] ?? NaN);
    const headers: Record<string, string> = {};
    for (let l = await this.line(); l !== ''; l = await this.line()) {
      const c = l.indexOf(':');
      const k = l.slice(0, c).toLowerCase();
      headers[k] = headers[k] !== undefined ? `${headers[k]}, ${l.slice(c + 1).trim()}` : l.slice(c + 1).trim();
    }
    if (head || status === 204 || status === 304 || (status >= 100 && status < 200))
      return { status, headers, body: Buffer.alloc(0) };
    if (headers['transfer-encoding'] === 'chunked') {
      const parts: Buffer[] = [];
      for (;;) {
        const size = parseInt(await this.line(), 16);
        if (size === 0) {
          while ((await this.line()) !== '');
          break;
        }
        parts.push(await this.take(size));
        expect(await this.line()).toBe('');
      }
      return { status, headers, body: Buffer.concat(parts) };
    }
    if (headers['content-length'] !== undefined)
      return { status, headers, body: await this.take(Number(headers['content-length'])) };
    while (!this.closed) await this.more().catch(() => {});
    const body = this.buf;
    this.buf = Buffer.alloc(0);
    return { status, headers, body };
  }

  /** Resolves when the gate has closed the connection (within 3 s), else rejects. */
  async closedByGate(): Promise<void> {
    const t0 = Date.now();
    while (!this.closed) {
      if (Date.now() - t0 > 3_000) throw new Error('the gate did not close the connection');
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

describe('gate data path (real gate process, raw client, real and hostile upstreams)', () => {
  let fx: ReturnType<typeof tempRoot>;
  let gate: GateProcess;
  let cookie = '';
  let app: http.Server;
  let raw: net.Server;
  const seen: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders; body: string }> = [];
  const big = Buffer.alloc(3 * 1024 * 1024, 'abcdefghijklmnopqrstuvwxyz');
  let rawHits = 0;
  /** Larger than loopback socket buffers can hold, so part of it waits in the gate while the client does not read. */
  const huge = Buffer.alloc(8 * 1024 * 1024, 'huge response ');
  const hanging = { open: 0, closed: 0 };

  beforeAll(async () => {
    assertBuilt();
    fx = tempRoot();
    // A well-behaved application server: echoes what it received, in several framings.
    app = http.createServer((req, res) => {
      if (req.url === '/echo-stream') {
        // Answers before the body has arrived: the response streams the request body back as it comes.
        res.writeHead(200, { 'content-type': 'text/plain' });
        req.pipe(res);
        return;
      }
      if (req.url === '/huge') {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': huge.length });
        res.end(huge);
        return;
      }
      const parts: Buffer[] = [];
      req.on('data', (d: Buffer) => parts.push(d));
      req.on('end', () => {
        const body = Buffer.concat(parts).toString('utf8');
        seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
        if (req.url === '/chunked') {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.write('hello');
          res.end(' world');
        } else if (req.url === '/empty') {
          res.writeHead(204);
          res.end();
        } else if (req.url === '/slow') {
          setTimeout(() => {
            res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 4 });
            res.end('slow');
          }, 300);
        } else if (req.url === '/big') {
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': big.length });
          res.end(big);
        } else {
          const out = JSON.stringify({
            method: req.method,
            url: req.url,
            body,
            expect: req.headers.expect ?? null,
            te: req.headers['transfer-encoding'] ?? null,
          });
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
          res.end(out);
        }
      });
    });
    app.keepAliveTimeout = 150; // closes idle connections quickly: the gate's pool must cope
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    // A hostile or broken upstream, by path.
    raw = net.createServer((socket) => {
      let head = '';
      socket.on('error', () => {});
      socket.setEncoding('latin1').on('data', (d: string) => {
        head += d;
        if (!head.includes('\r\n\r\n')) return;
        rawHits++;
        const path = head.split(' ')[1];
        head = '';
        if (path === '/split') {
          // Two responses for one request: the second must never reach the client as the answer to its next request.
          socket.write(
            'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged',
          );
        } else if (path === '/split-partial') {
          // A whole response, then the start of one nobody asked for: the connection must never be reused.
          socket.write(
            'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nforg',
          );
        } else if (path === '/hang' || path === '/stall') {
          // /hang never answers (a hung dev server, a long poll); /stall sends the head and part of the body, then
          // nothing (a stalled stream).
          hanging.open++;
          socket.on('close', () => hanging.closed++);
          socket.removeAllListeners('data'); // whatever follows (a body) is read and ignored, never parsed as a request
          socket.resume();
          if (path === '/stall') socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npart');
        } else if (path === '/plain') {
          socket.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nplain');
        } else if (path === '/close-delimited') {
          socket.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the upstream closes');
        } else if (path === '/die') {
          socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b');
          setTimeout(() => socket.destroy(), 50);
        } else if (path === '/early-hints') {
          socket.write(
            'HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal',
          );
        } else if (path === '/cl-te') {
          socket.end('HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n');
        } else if (path === '/header-injection') {
          socket.end('HTTP/1.1 200 OK\r\nx-ok: 1\r\nx-bad: a\rb\r\ncontent-length: 0\r\n\r\n');
        } else {
          socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n');
        }
      });
    });
    await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
    await applyRoute(fx.root, { workload: 'web', preview: 'app', port: (app.address() as AddressInfo).port });
    await applyRoute(fx.root, { workload: 'web', preview: 'raw', port: (raw.address() as AddressInfo).port });
    gate = await startGate(fx.root);
    learnHosts(fx.root, gate.port, ['app', 'raw']);
    const { result } = await grant(fx.root, 'web/app');
    cookie = (await exchange(result.link)).cookie!;
  }, 30_000);

  afterAll(async () => {
    await gate?.stop();
    await new Promise<void>((r) => (app ? app.close(() => r()) : r()));
    app?.closeAllConnections();
    await new Promise<void>((r) => (raw ? raw.close(() => r()) : r()));
    fx?.remove();
  });

  const rawCookie = async (): Promise<string> => {
    const { result } = await grant(fx.root, 'web/raw');
    return (await exchange(result.link)).cookie!;
  };

  it('pipelined requests are answered in order on one connection', async () => {
    const c = new Conn(gate.port);
    const req = (p: string): string => `GET /p/web/app${p} HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\n\r\n`;
    c.send(req('/one') + req('/two') + req('/three'));
    for (const p of ['/one', '/two', '/three']) {
      const r = await c.response();
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body.toString()).url).toBe(p);
    }
    c.close();
  });

  it('request bodies reach the upstream re-framed: Content-Length as checked, chunked decoded and re-chunked', async () => {
    const c = new Conn(gate.port);
    c.send(
      `POST /p/web/app/form HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello=world`,
    );
    const a = JSON.parse((await c.response()).body.toString());
    expect(a).toMatchObject({ method: 'POST', url: '/form', body: 'hello=world', te: null });
    c.send(
      `POST /p/web/app/stream HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\n\r\n`,
    );
    const b = JSON.parse((await c.response()).body.toString());
    expect(b).toMatchObject({ method: 'POST', url: '/stream', body: 'hello world', te: 'chunked' });
    c.close();
  });

  it('trailers of a chunked request are dropped, never carried into the next request on the connection', async () => {
    const c = new Conn(gate.port);
    c.send(
      `POST /p/web/app/upload HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Trailer: from-request-1\r\nCookie: app=from-trailer\r\n\r\n`,
    );
    expect(JSON.parse((await c.response()).body.toString())).toMatchObject({ url: '/upload', body: 'abc' });
    c.send(`GET /p/web/app/next HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\n\r\n`);
    expect(JSON.parse((await c.response()).body.toString()).url).toBe('/next');
    expect(seen.at(-1)!.url).toBe('/next');
    expect(seen.at(-1)!.headers['x-trailer']).toBeUndefined();
    expect(seen.at(-1)!.headers.cookie).toBeUndefined();
    c.close();
  });

  it('Expect: 100-continue is answered by the gate after the grant check; the upstream never sees Expect', async () => {
    const c = new Conn(gate.port);
    c.send(
      `PUT /p/web/app/upload HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n`,
    );
    expect((await c.response()).status).toBe(100);
    c.send('data');
    const r = JSON.parse((await c.response()).body.toString());
    expect(r).toMatchObject({ method: 'PUT', body: 'data', expect: null });
    // Without a session the answer is 401 and no 100: the body is never invited.
    const d = new Conn(gate.port);
    d.send('PUT /p/web/app/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n');
    expect((await d.response()).status).toBe(401);
    await d.closedByGate();
    c.close();
  });

  it('responses are re-framed for the client: chunked, close-delimited, HEAD and 204; the connection stays usable', async () => {
    const c = new Conn(gate.port);
    c.send(`GET /p/web/app/chunked HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\n\r\n`);
    const chunked = await c.response();
    expect(chunked.headers['transfer-encoding']).toBe('chunked');
    expect(chunked.body.toString()).toBe('hello world');
    c.send(`HEAD /p/web/app/json HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\n\r\n`);
    const head = await c.response(true);
    expect(head.status).toBe(200);
    expect(Number(head.headers['content-length'])).toBeGreaterThan(0);
    c.send(`GET /p/web/app/empty HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\n\r\n`);
    const empty = await c.response();
    expect(empty.status).toBe(204);
    expect(empty.headers['transfer-encoding']).toBeUndefined();
    c.send(`GET /p/web/app/after HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\n\r\n`);
    expect(JSON.parse((await c.response()).body.toString()).url).toBe('/after');
    const rc = await rawCookie();
    c.send(`GET /p/web/raw/close-delimited HTTP/1.1\r\nHost: x\r\nCookie: ${rc}\r\n\r\n`);
    const closeDelimited = await c.response();
    expect(closeDelimited.headers['transfer-encoding']).toBe('chunked');
    expect(closeDelimited.body.toString()).toBe('until the upstream closes');
    expect(c.closed).toBe(false);
    c.close();
  });

  it('an upstream that answers twice cannot answer the client’s next request (response splitting)', async () => {
    const rc = await rawCookie();
    const c = new Conn(gate.port);
    c.send(`GET /p/web/raw/split HTTP/1.1\r\nHost: x\r\nCookie: ${rc}\r\n\r\n`);
    const first = await c.response();
    expect(first.body.toString()).toBe('ok');
    c.send(`GET /p/web/app/next HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\n\r\n`);
    const next = await c.response();
    expect(next.body.toString()).not.toContain('forged');
    expect(JSON.parse(next.body.toString()).url).toBe('/next');
    c.close();
  });

  it('a pooled connection on which the upstream began an unrequested response is never reused', async () => {
    const rc = await rawCookie();
    const c = new Conn(gate.port);
    c.send(`GET /p/web/raw/split-partial HTTP/1.1\r\nHost: x\r\nCookie: ${rc}\r\n\r\n`);
    expect((await c.response()).body.toString()).toBe('ok');
    c.send(`GET /p/web/raw/plain HTTP/1.1\r\nHost: x\r\nCookie: ${rc}\r\n\r\n`);
    expect((await c.response()).body.toString()).toBe('plain');
    c.close();
  });

  it('thousands of refused requests pipelined behind a slow one are answered in order; the gate keeps serving', async () => {
    const n = 3_000;
    const c = new Conn(gate.port);
    // They queue behind /slow; when it completes, each is refused synchronously — in a loop, not by recursion.
    c.send(
      `GET /p/web/app/slow HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\n\r\n` +
        Array.from({ length: n }, (_, i) => `GET /p/web/app/${i} HTTP/1.1\r\nHost: x\r\n\r\n`).join(''),
    );
    expect((await c.response()).body.toString()).toBe('slow');
    for (let i = 0; i < n; i++) expect((await c.response()).status).toBe(401);
    c.send(`GET /p/web/app/last HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\n\r\n`);
    expect(JSON.parse((await c.response()).body.toString()).url).toBe('/last');
    c.close();
    expect(gate.child.exitCode).toBeNull();
  });

  it('malformed upstream framing or header bytes are a 502 (CL with TE, a bare CR); 1xx interim responses are dropped', async () => {
    const rc = await rawCookie();
    const c = new Conn(gate.port);
    c.send(`GET /p/web/raw/cl-te HTTP/1.1\r\nHost: x\r\nCookie: ${rc}\r\n\r\n`);
    expect((await c.response()).status).toBe(502);
    c.send(`GET /p/web/raw/header-injection HTTP/1.1\r\nHost: x\r\nCookie: ${rc}\r\n\r\n`);
    expect((await c.response()).status).toBe(502);
    c.send(`GET /p/web/raw/early-hints HTTP/1.1\r\nHost: x\r\nCookie: ${rc}\r\n\r\n`);
    const hinted = await c.response();
    expect(hinted.status).toBe(200);
    expect(hinted.body.toString()).toBe('final');
    c.close();
  });

  it('an upstream that dies mid-response closes the client connection (the short body is never passed off as whole)', async () => {
    const rc = await rawCookie();
    const c = new Conn(gate.port);
    c.send(`GET /p/web/raw/die HTTP/1.1\r\nHost: x\r\nCookie: ${rc}\r\n\r\n`);
    await expect(c.response()).rejects.toThrow(/closed/);
    expect(c.closed).toBe(true);
    expect(gate.child.exitCode).toBeNull();
  });

  it('a pooled upstream connection the upstream closed while idle is replaced, not a 502', async () => {
    const c = new Conn(gate.port);
    for (const p of ['/a', '/b']) {
      c.send(`GET /p/web/app${p} HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\n\r\n`);
      const r = await c.response();
      expect(r.status, p).toBe(200);
      await new Promise((r) => setTimeout(r, 400)); // past the upstream's 150 ms keep-alive timeout
    }
    c.close();
  });

  it('HTTP/1.0 clients get a close-delimited or sized response and the connection closes', async () => {
    const c = new Conn(gate.port);
    c.send(`GET /p/web/app/chunked HTTP/1.0\r\nHost: x\r\nCookie: ${cookie}\r\n\r\n`);
    const r = await c.response();
    expect(r.status).toBe(200);
    expect(r.headers['transfer-encoding']).toBeUndefined();
    expect(r.body.toString()).toBe('hello world');
    await c.closedByGate();
  });

  it('a 3 MiB response arrives intact through a slow reader (backpressure)', async () => {
    const c = new Conn(gate.port);
    c.socket.pause();
    c.send(`GET /p/web/app/big HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\n\r\n`);
    await new Promise((r) => setTimeout(r, 300));
    c.socket.resume();
    const r = await c.response();
    expect(r.body.length).toBe(big.length);
    expect(createHash('sha256').update(r.body).digest('hex')).toBe(createHash('sha256').update(big).digest('hex'));
    c.close();
  });

  it('a pipelined request waiting its turn cannot make the gate buffer its body (backpressure holds)', async () => {
    const rc = await rawCookie();
    const c = new Conn(gate.port);
    // Request 1: a chunked upload the upstream reads and never answers (a 30 000-byte chunk reports backpressure
    // upstream). Request 2, in the same write, declares 1 GiB; the client then pushes its body as fast as it can.
    c.send(
      Buffer.concat([
        Buffer.from(
          `POST /p/web/raw/hang HTTP/1.1\r\nHost: x\r\nCookie: ${rc}\r\nTransfer-Encoding: chunked\r\n\r\n${(30000).toString(16)}\r\n`,
        ),
        Buffer.alloc(30000, 'a'),
        Buffer.from(
          `\r\n0\r\n\r\nPOST /p/web/raw/two HTTP/1.1\r\nHost: x\r\nCookie: ${rc}\r\nContent-Length: ${1 << 30}\r\n\r\n`,
        ),
      ]),
    );
    const chunk = Buffer.alloc(1 << 20, 'b');
    let accepted = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < 1_500) {
      if (!c.socket.write(chunk))
        await Promise.race([
          new Promise((r) => c.socket.once('drain', r)),
          new Promise((r) => setTimeout(r, 1_500 - (performance.now() - t0))),
        ]);
      else accepted += chunk.length;
    }
    console.log(`[gate] a queued request could push ${(accepted / 2 ** 20).toFixed(0)} MiB in 1.5 s`);
    // Loopback socket buffers hold a few MiB; a gate reading on would have taken hundreds.
    expect(accepted).toBeLessThan(64 * 2 ** 20);
    c.close();
  });

  it('a client that goes away during a response its upstream has stalled releases both connections', async () => {
    const rc = await rawCookie();
    const c = new Conn(gate.port);
    const before = { ...hanging };
    c.send(`GET /p/web/raw/stall HTTP/1.1\r\nHost: x\r\nCookie: ${rc}\r\n\r\n`);
    await new Promise<void>((r) => c.socket.once('data', () => r())); // the head and part of the body arrived
    c.socket.end();
    await c.closedByGate();
    for (let i = 0; i < 100 && hanging.closed === before.closed; i++) await new Promise((r) => setTimeout(r, 20));
    expect(hanging.closed).toBe(before.closed + 1);
  });

  it('a parse error inside a body being forwarded closes the connection at once (the upstream does not wait for the rest)', async () => {
    const c = new Conn(gate.port);
    c.send(
      `POST /p/web/app/stream HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n`,
    );
    await new Promise((r) => setTimeout(r, 100));
    c.send('zz-not-a-chunk-size\r\n');
    await c.closedByGate();
  });

  it('a client that goes away while its request waits on a hung upstream releases both connections', async () => {
    const rc = await rawCookie();
    const c = new Conn(gate.port);
    const before = { ...hanging };
    c.send(`GET /p/web/raw/hang HTTP/1.1\r\nHost: x\r\nCookie: ${rc}\r\n\r\n`);
    for (let i = 0; i < 100 && hanging.open === before.open; i++) await new Promise((r) => setTimeout(r, 20));
    expect(hanging.open).toBe(before.open + 1);
    c.socket.end(); // the browser tab is closed: a FIN
    await c.closedByGate();
    for (let i = 0; i < 100 && hanging.closed === before.closed; i++) await new Promise((r) => setTimeout(r, 20));
    expect(hanging.closed).toBe(before.closed + 1);
  });

  it('Connection: close does not cut the body of the request being forwarded (an upstream streaming it back)', async () => {
    const c = new Conn(gate.port);
    c.send(
      `POST /p/web/app/echo-stream HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\nConnection: close\r\nContent-Length: 10\r\n\r\nfirst`,
    );
    await new Promise((r) => setTimeout(r, 200)); // the upstream has answered (head sent) before the rest arrives
    c.send('-last');
    const r = await c.response();
    expect(r.body.toString()).toBe('first-last');
    await c.closedByGate();
  });

  it('a response to a client that reads slowly is not cut by the close timer (Connection: close, 8 MiB)', async () => {
    const c = new Conn(gate.port);
    // A slow link: one read (≤ 64 KiB) every 20 ms. The gate has the whole response from the upstream seconds before
    // the client has read it, and its end-of-connection timer must wait for the bytes to go out.
    c.socket.pause();
    const throttle = setInterval(() => {
      c.socket.once('data', () => c.socket.pause());
      c.socket.resume();
    }, 20);
    try {
      c.send(`GET /p/web/app/huge HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\nConnection: close\r\n\r\n`);
      const r = await c.response();
      expect(r.body.length).toBe(huge.length);
    } finally {
      clearInterval(throttle);
    }
    c.socket.resume();
    await c.closedByGate();
  }, 30_000);

  it('a refused request with a body is answered without reading the body, and the connection closes', async () => {
    const before = seen.length + rawHits;
    const c = new Conn(gate.port);
    c.send(`POST /p/web/app/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n${'x'.repeat(1000)}`);
    expect((await c.response()).status).toBe(401);
    await c.closedByGate();
    expect(seen.length + rawHits).toBe(before);
  });
});

// ---------------------------------------------------------------------------------------------------------------------
// WebSockets: RFC 6455 frames written and read by hand (short text frames only), on both sides.

/** A client WebSocket over a raw socket: handshake, send, and wait for messages or for the connection to close. */
class WsClient {
  private buf: Buffer = Buffer.alloc(0);
  readonly messages: string[] = [];
  closed = false;
  readonly socket: net.Socket;
  handshake: Promise<string>;

  constructor(port: number, path: string, headers: string) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('error', () => {});
    let head: string | undefined;
    this.handshake = new Promise((resolve) => {
      this.socket.on('data', (d: Buffer) => {
        this.buf = Buffer.concat([this.buf, d]);
        if (head === undefined) {
          const end = this.buf.indexOf('\r\n\r\n');
          if (end === -1) return;
          head = this.buf.subarray(0, end).toString('latin1');
          this.buf = this.buf.subarray(end + 4);
          resolve(head);
        }
        const { texts, rest } = wsRead(this.buf);
        this.messages.push(...texts);
        this.buf = rest;
      });
      this.socket.on('close', () => {
        this.closed = true;
        resolve(head ?? '');
      });
    });
    const m = /^\/p\/web\/([a-z]+)(.*)$/.exec(path);
    const host = m ? HOSTS.get(m[1]!)! : `127.0.0.1:${port}`;
    this.socket.write(
      `GET ${m ? m[2] || '/' : path} HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomKey()}\r\n${headers}\r\n`,
    );
  }

  send(text: string): void {
    this.socket.write(wsFrame(text, true));
  }

  async until(what: () => boolean, ms = 3_000): Promise<number> {
    const t0 = performance.now();
    while (!what()) {
      if (performance.now() - t0 > ms)
        throw new Error(`timed out; messages ${JSON.stringify(this.messages)}, closed ${this.closed}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return performance.now() - t0;
  }
}
const randomKey = (): string => createHash('md5').update(String(Math.random())).digest('base64');

describe('gate WebSocket tunnels (real gate process, a hand-written RFC 6455 upstream)', () => {
  let fx: ReturnType<typeof tempRoot>;
  let gate: GateProcess;
  let upstream: WsUpstream;
  let received: string[];
  let handshakes: http.IncomingHttpHeaders[];

  beforeAll(async () => {
    assertBuilt();
    fx = tempRoot();
    upstream = await startWsUpstream();
    ({ received, handshakes } = upstream);
    await applyRoute(fx.root, { workload: 'web', preview: 'live', port: upstream.port });
    gate = await startGate(fx.root);
    learnHosts(fx.root, gate.port, ['live']);
  }, 30_000);

  afterAll(async () => {
    await gate?.stop();
    await upstream?.close();
    fx?.remove();
  });

  const session = async (): Promise<{ cookie: string; id: string }> => {
    const { result } = await grant(fx.root, 'web/live');
    return { cookie: (await exchange(result.link)).cookie!, id: result.grant.id };
  };

  it('a granted session opens a WebSocket; frames pass both ways; the upstream sees no gate cookie; open and close are audited', async () => {
    const { cookie, id } = await session();
    const ws = new WsClient(
      gate.port,
      '/p/web/live/socket',
      `Cookie: ${cookie}; theme=dark\r\nOrigin: http://${HOSTS.get('live')!}\r\n`,
    );
    const head = await ws.handshake;
    expect(head).toMatch(/^HTTP\/1\.1 101 /);
    expect(head.toLowerCase()).toContain('upgrade: websocket');
    ws.send('hello');
    await ws.until(() => ws.messages.includes('echo:hello'));
    expect(handshakes.at(-1)!.cookie).toBe('theme=dark');
    expect(handshakes.at(-1)!['x-forwarded-prefix']).toBeUndefined(); // host routing: no prefix
    expect(handshakes.at(-1)!['x-forwarded-host']).toBe(HOSTS.get('live'));
    ws.socket.end();
    await ws.until(() => ws.closed);
    await new Promise((r) => setTimeout(r, 400)); // the request log's group commit (100 ms)
    const audit = readFileSync(gatePaths(fx.root).audit, 'utf8');
    expect(audit).toContain(`"grantId":"${id}"`);
    expect(audit).toMatch(/"status":101,"reason":"websocket opened"/);
    expect(audit).toMatch(/websocket closed \(\d+ B from the client, \d+ B from the upstream\)/);
  });

  it('after `gate revoke`, the next message is not delivered: the tunnel is cut (latency printed) and audited', async () => {
    const { cookie, id } = await session();
    const ws = new WsClient(gate.port, '/p/web/live/socket', `Cookie: ${cookie}\r\n`);
    expect(await ws.handshake).toMatch(/^HTTP\/1\.1 101 /);
    ws.send('before');
    await ws.until(() => ws.messages.includes('echo:before'));
    const revoked = await agentvm(['gate', 'revoke', id, '--root', fx.root]);
    expect(revoked.code).toBe(0);
    const t0 = performance.now();
    ws.send('after');
    await ws.until(() => ws.closed);
    console.log(
      `[gate] WebSocket cut ${(performance.now() - t0).toFixed(1)} ms after the first message past revocation`,
    );
    expect(received).not.toContain('after');
    expect(ws.messages).not.toContain('echo:after');
    await new Promise((r) => setTimeout(r, 400));
    expect(readFileSync(gatePaths(fx.root).audit, 'utf8')).toContain(`websocket cut: grant ${id} was revoked`);
  });

  it('a tunnel with no traffic from the client is cut within 2 s of revocation', async () => {
    const { cookie, id } = await session();
    const ws = new WsClient(gate.port, '/p/web/live/quiet', `Cookie: ${cookie}\r\n`);
    expect(await ws.handshake).toMatch(/^HTTP\/1\.1 101 /);
    expect((await agentvm(['gate', 'revoke', id, '--root', fx.root])).code).toBe(0);
    const waited = await ws.until(() => ws.closed, 3_000);
    console.log(`[gate] idle WebSocket cut ${waited.toFixed(0)} ms after revoke returned`);
    expect(waited).toBeLessThan(2_000);
  });

  it('upstream pushes stop at revocation: no message after the cut', async () => {
    const { cookie, id } = await session();
    const ws = new WsClient(gate.port, '/p/web/live/push', `Cookie: ${cookie}\r\n`);
    expect(await ws.handshake).toMatch(/^HTTP\/1\.1 101 /);
    await ws.until(() => ws.messages.filter((m) => m === 'tick').length >= 2);
    expect((await agentvm(['gate', 'revoke', id, '--root', fx.root])).code).toBe(0);
    const atRevoke = ws.messages.length;
    await ws.until(() => ws.closed, 2_000);
    // At most a frame already in flight when revoke returned (it was written before the marker existed).
    expect(ws.messages.length - atRevoke).toBeLessThanOrEqual(1);
  });

  it('refused before any upstream: no session (401), a cross-origin page (403), a grant link (400), another protocol (501)', async () => {
    const before = handshakes.length;
    const { cookie } = await session();
    const cases: Array<[string, string, RegExp]> = [
      ['/p/web/live/socket', '', /^HTTP\/1\.1 401 /],
      ['/p/web/live/socket', `Cookie: ${cookie}\r\nOrigin: https://evil.example\r\n`, /^HTTP\/1\.1 403 /],
      [`/p/web/live/socket?grant=${'a'.repeat(43)}`, '', /^HTTP\/1\.1 400 /],
    ];
    for (const [path, headers, expected] of cases) {
      const ws = new WsClient(gate.port, path, headers);
      expect(await ws.handshake, path + headers).toMatch(expected);
      await ws.until(() => ws.closed);
    }
    const h2c = new Conn(gate.port);
    h2c.send(
      `GET /p/web/live/ HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n`,
    );
    expect((await h2c.response()).status).toBe(501);
    expect(handshakes.length).toBe(before);
  });

  it('a handshake with a body is refused: the body would reach the upstream as an unchecked request', async () => {
    const { cookie } = await session();
    const before = handshakes.length;
    const smuggled = 'GET /admin HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Real-IP: 127.0.0.1\r\n\r\n';
    for (const framing of [`Content-Length: ${smuggled.length}\r\n`, 'Transfer-Encoding: chunked\r\n']) {
      const body = framing.startsWith('Content')
        ? smuggled
        : `${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`;
      const c = new Conn(gate.port);
      c.send(
        `GET /p/web/live/socket HTTP/1.1\r\nHost: x\r\nCookie: ${cookie}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${framing}\r\n${body}`,
      );
      expect((await c.response()).status, framing).toBe(400);
      await c.closedByGate();
    }
    expect(handshakes.length).toBe(before);
    expect(received.join()).not.toContain('admin');
  });

  it('a grant revoked while the upstream is slow to switch: no 101 reaches the client (403), nothing reaches the upstream', async () => {
    const { cookie, id } = await session();
    const seen = upstream.handshakesSeen();
    const ws = new WsClient(gate.port, '/p/web/live/slow-101', `Cookie: ${cookie}\r\n`);
    ws.send('early'); // before the 101: held by the gate, and dropped with the tunnel
    await ws.until(() => upstream.handshakesSeen() > seen);
    expect((await agentvm(['gate', 'revoke', id, '--root', fx.root])).code).toBe(0);
    upstream.switchSlow(); // the upstream switches only now, after the revoke
    expect(await ws.handshake).toMatch(/^HTTP\/1\.1 403 /);
    await ws.until(() => ws.closed);
    expect(received).not.toContain('early');
  });

  it('a tunnel whose client leaves is closed within 5 s even if the upstream ignores the FIN', async () => {
    const { cookie } = await session();
    const openBefore = upstream.open();
    const ws = new WsClient(gate.port, '/p/web/live/ignore-fin', `Cookie: ${cookie}\r\n`);
    expect(await ws.handshake).toMatch(/^HTTP\/1\.1 101 /);
    expect(upstream.open()).toBe(openBefore + 1);
    ws.socket.end();
    const waited = await ws.until(() => ws.closed, 7_000);
    console.log(`[gate] tunnel closed ${waited.toFixed(0)} ms after its client's FIN (the upstream ignored it)`);
    // The gate's side of the upstream connection is gone too: the upstream's next write fails and its socket closes.
    for (let i = 0; i < 20 && upstream.open() > openBefore; i++) {
      upstream.poke();
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(upstream.open()).toBe(openBefore);
  }, 10_000);

  it('an upstream that refuses the upgrade is forwarded as it answered, and the connection closes', async () => {
    const { cookie } = await session();
    const ws = new WsClient(gate.port, '/p/web/live/refuse', `Cookie: ${cookie}\r\n`);
    expect(await ws.handshake).toMatch(/^HTTP\/1\.1 403 /);
    await ws.until(() => ws.closed);
  });
});
