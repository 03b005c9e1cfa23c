// A fetch for the SDK's streamable-HTTP client that reaches the server only through the host's egress proxy: every
// connection is a CONNECT tunnel on the gateway's own caller socket of the proxy (<run>/egress/mcp.<w>.<p>/proxy.sock),
// so the proxy's rules apply (the server's host:port must be on the gateway's allowlist, which is the contract's
// MCP URLs) and every refusal is the proxy's audit record. TLS (https:) runs inside the tunnel, verified as usual.
// Tunnels are kept alive and reused (an http.Agent whose connections are tunnels): MCP over streamable HTTP is a POST
// per message, and the gateway makes two per tool call (the pin re-check and the call), so a tunnel and a TLS
// handshake per request would cost more than the call. An idle tunnel is closed after IDLE_TUNNEL_MS; a tunnel is
// screened by the proxy when it is opened, like any caller's connection (a reload keeps open connections).
import {
  Agent,
  request as httpRequest,
  type AgentOptions,
  type ClientRequestArgs,
  type IncomingMessage,
} from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { Readable, type Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';

/** The proxy answered the CONNECT with a refusal: `reason` is its one line (what was refused, what to change). */
export class EgressRefusedError extends Error {
  constructor(
    readonly destination: string,
    readonly status: string,
    readonly reason: string,
  ) {
    super(`the egress proxy refused ${destination}: ${reason}`);
    this.name = 'EgressRefusedError';
  }
}

function tunnel(proxySocket: string, host: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect(proxySocket);
    let head = '';
    const onData = (d: Buffer): void => {
      head += d.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > 16_384) s.destroy(new Error('the egress proxy sent no reply head'));
        return;
      }
      s.off('data', onData);
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1];
      if (status !== '200') {
        s.destroy();
        reject(
          new EgressRefusedError(
            `${host}:${port}`,
            status ?? 'none',
            head
              .slice(end + 4)
              .trim()
              .slice(0, 500) ||
              (head.split('\r\n')[0] ?? ''),
          ),
        );
        return;
      }
      if (end + 4 < head.length) s.unshift(Buffer.from(head.slice(end + 4), 'latin1'));
      resolve(s);
    };
    s.once('error', reject);
    s.on('data', onData);
    s.once('connect', () => s.write(`CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`));
  });
}

/** How long an idle tunnel stays open for the next request. */
const IDLE_TUNNEL_MS = 5_000;

/** An http.Agent whose connections are tunnels through the proxy (TLS inside them for https:). */
class TunnelAgent extends Agent {
  constructor(
    private readonly proxySocket: string,
    private readonly tls: boolean,
    options: AgentOptions,
  ) {
    super(options);
  }

  override createConnection(
    options: ClientRequestArgs,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    // Node's Agent accepts a connection handed to the callback later (its createSocket passes one): the tunnel is
    // asynchronous. A refusal reaches the request as its 'error' (an EgressRefusedError).
    const host = String(options.hostname ?? options.host ?? '').replace(/^\[|\]$/g, '');
    const port = Number(options.port);
    tunnel(this.proxySocket, host, port).then(
      (raw) => callback?.(null, this.tls ? tlsConnect({ socket: raw, servername: host }) : raw),
      (err: Error) => callback?.(err, undefined as unknown as Duplex),
    );
    return undefined;
  }
}

function headersOf(init: RequestInit | undefined): Record<string, string> {
  return Object.fromEntries(new Headers(init?.headers).entries());
}

function toResponse(res: IncomingMessage): Response {
  const headers = new Headers();
  for (const [k, v] of Object.entries(res.headers))
    if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(', ') : v);
  const status = res.statusCode ?? 502;
  const empty = status === 204 || status === 304 || status < 200;
  if (empty) res.resume();
  return new Response(empty ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), {
    status,
    statusText: res.statusMessage ?? '',
    headers,
  });
}

/** A FetchLike (SDK) whose requests leave through the egress proxy's unix socket `proxySocket`. */
export function proxiedFetch(proxySocket: string): (url: string | URL, init?: RequestInit) => Promise<Response> {
  const agentOptions: AgentOptions = { keepAlive: true, maxSockets: 16, maxFreeSockets: 4, timeout: IDLE_TUNNEL_MS };
  const agents = {
    http: new TunnelAgent(proxySocket, false, agentOptions),
    https: new TunnelAgent(proxySocket, true, agentOptions),
  };
  return async (input, init) => {
    const url = new URL(String(input));
    const tls = url.protocol === 'https:';
    if (!tls && url.protocol !== 'http:') throw new Error(`MCP over ${url.protocol} is not supported`);
    const port = url.port ? Number(url.port) : tls ? 443 : 80;
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const body =
      init?.body === undefined || init.body === null
        ? undefined
        : typeof init.body === 'string'
          ? init.body
          : Buffer.from(await new Response(init.body).arrayBuffer());
    return new Promise<Response>((resolve, reject) => {
      const req = httpRequest(
        {
          agent: tls ? agents.https : agents.http,
          host,
          port,
          method: init?.method ?? 'GET',
          path: `${url.pathname}${url.search}`,
          headers: { ...headersOf(init), host: url.host },
        },
        (res) => resolve(toResponse(res)),
      );
      req.on('error', reject);
      // The SDK passes one long-lived signal to every request of a transport: the listener goes with its request, or
      // a gateway's signal would collect one per call (and keep each request alive).
      const signal = init?.signal;
      const onAbort = (): void => void req.destroy(new Error('aborted'));
      signal?.addEventListener('abort', onAbort, { once: true });
      req.once('close', () => signal?.removeEventListener('abort', onAbort));
      req.end(body);
    });
  };
}
