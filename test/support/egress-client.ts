// Minimal HTTP-proxy clients for the egress tests (and bench/egress.js's twin): CONNECT tunnels and absolute-form
// requests over a unix socket or TCP, with TLS on top, so a test sees exactly what a workload's HTTP client would.

import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

export type ProxyAddress = { path: string } | { host: string; port: number };

function open(proxy: ProxyAddress): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = 'path' in proxy ? connect(proxy.path) : connect(proxy.port, proxy.host);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Reads until the end of an HTTP head; returns the status, the head and any bytes after it. */
function readHead(s: Socket): Promise<{ status: number; head: string; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      s.off('data', onData);
      s.off('error', reject);
      s.off('close', onClose);
      s.pause();
      const head = buf.subarray(0, end).toString('latin1');
      resolve({ status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0), head, rest: buf.subarray(end + 4) });
    };
    const onClose = (): void => reject(new Error(`connection closed before a response head (${buf.length} bytes)`));
    s.on('data', onData);
    s.once('error', reject);
    s.once('close', onClose);
  });
}

function readAll(s: Socket, first: Buffer = Buffer.alloc(0)): Promise<Buffer> {
  return new Promise((resolve) => {
    const parts = [first];
    s.on('data', (d: Buffer) => parts.push(d));
    s.once('close', () => resolve(Buffer.concat(parts)));
    s.once('error', () => resolve(Buffer.concat(parts)));
    s.resume();
  });
}

export interface ProxiedResponse {
  status: number;
  head: string;
  body: string;
}

/** `GET http://host:port/path` through the proxy. */
export async function forwardGet(
  proxy: ProxyAddress,
  url: string,
  headers: Record<string, string> = {},
): Promise<ProxiedResponse> {
  const s = await open(proxy);
  const u = new URL(url);
  s.write(
    `GET ${url} HTTP/1.1\r\nHost: ${u.host}\r\n${Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('')}\r\n`,
  );
  const h = await readHead(s);
  const body = await readAll(s, h.rest);
  return { status: h.status, head: h.head, body: body.toString() };
}

/** `CONNECT authority`; resolves with the proxy's answer and, on 200, the open socket. */
export async function connectVia(
  proxy: ProxyAddress,
  authority: string,
): Promise<{ status: number; head: string; body: string; socket?: Socket }> {
  const s = await open(proxy);
  s.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
  const h = await readHead(s);
  if (h.status === 200) return { status: 200, head: h.head, body: '', socket: s };
  const body = await readAll(s, h.rest);
  return { status: h.status, head: h.head, body: body.toString() };
}

/**
 * An HTTPS GET through a CONNECT tunnel. `servername` is the SNI the client sends (default: the CONNECT host; null:
 * none). Resolves with the proxy's refusal, the TLS error, or the upstream's response.
 */
export async function httpsVia(
  proxy: ProxyAddress,
  authority: string,
  opts: { ca: Buffer; servername?: string | null; path?: string; hostHeader?: string },
): Promise<{ status: number; body: string; tlsError?: string; head: string }> {
  const tunnel = await connectVia(proxy, authority);
  if (!tunnel.socket) return { status: tunnel.status, body: tunnel.body, head: tunnel.head };
  const host = authority.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
  const servername = opts.servername === undefined ? host : opts.servername;
  return new Promise((resolve) => {
    const t = tlsConnect({
      socket: tunnel.socket!,
      ca: opts.ca,
      ...(servername === null ? {} : { servername }),
      checkServerIdentity: () => undefined,
    });
    t.once('error', (e) => resolve({ status: 0, body: '', head: '', tlsError: e.message }));
    t.once('secureConnect', () => {
      t.write(`GET ${opts.path ?? '/'} HTTP/1.1\r\nHost: ${opts.hostHeader ?? host}\r\nConnection: close\r\n\r\n`);
      const parts: Buffer[] = [];
      t.on('data', (d: Buffer) => parts.push(d));
      t.once('end', () => {
        const text = Buffer.concat(parts).toString();
        const end = text.indexOf('\r\n\r\n');
        resolve({
          status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0),
          head: text.slice(0, end),
          body: text.slice(end + 4),
        });
      });
    });
  });
}
