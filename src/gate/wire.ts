// The gate's HTTP/1.1 data path: plain or TLS sockets framed by llhttp — node's own HTTP parser, the one node:http uses,
// in strict mode — in both directions, without node:http's per-request objects and streams (≈ 4× the CPU; ADR 0012).
// The mechanics live in wire/: what is decided here is only the server — accepting connections, the per-source quota
// and the sweep. What may be reached, by whom, and which headers cross is the policy in server.ts.
//
// wire/contract.ts   what the policy sees: WireRequest, WireResponder, the forward and tunnel hooks, the options
// wire/states.ts     the states of a client connection, an upstream connection and a tunnel, and their transitions
// wire/client.ts     a client connection: parsing, the queue of exchanges, reading and pausing, timeouts (the sweep)
// wire/exchange.ts   one request and its response: re-framing both ways, forwarding, retry, the per-chunk check
// wire/upstream.ts   upstream connections, their pool, and the parsing of responses
// wire/tunnel.ts     a WebSocket tunnel after the upstream's 101
// wire/llhttp.ts     the llhttp binding and the guard that never frees a parser inside its own callbacks
// wire/framing.ts    the few bytes of framing the gate writes itself
//
// Invariants (the files above hold the rest, each at its top):
// - Nothing a peer sends throws out of the data path: parse errors become 400/431/502 or a closed connection, and a
//   transition no state table allows closes the connection it happened on (ADR 0025).
// - One client address holds at most maxConnectionsPerSource connections (counted on the raw TCP connection, before any
//   TLS handshake); past half of it, its header timeout shrinks to a fifth.

import net, { type Socket } from 'node:net';
import tls from 'node:tls';
import { ClientConnection } from './wire/client.js';
import type { WireServer, WireServerOptions } from './wire/contract.js';
import { UpstreamPool } from './wire/upstream.js';

export type {
  ForwardHooks,
  ResponseDecision,
  TunnelHooks,
  UpstreamAddress,
  WireRequest,
  WireResponder,
  WireServer,
  WireServerOptions,
} from './wire/contract.js';
export { rawHeader, reasonPhrase } from './wire/framing.js';
export { UpstreamRefused } from './wire/upstream.js';

export function createWireServer(given: WireServerOptions): WireServer {
  const perSource = new Map<string, number>();
  const options: WireServerOptions = { ...given, sourceLoad: (address) => perSource.get(address) ?? 0 };
  const pool = new UpstreamPool();
  const connections = new Set<ClientConnection>();
  const onConnection = (socket: Socket): void => {
    connections.add(new ClientConnection(socket, pool, options, connections));
  };
  const server = options.tls
    ? tls.createServer(
        { cert: options.tls.cert, key: options.tls.key, allowHalfOpen: true, handshakeTimeout: options.headersTimeout },
        onConnection,
      )
    : net.createServer({ allowHalfOpen: true, noDelay: true }, onConnection);
  server.maxConnections = options.maxConnections;
  limitPerSource(server, perSource, options);
  if (options.tls) server.on('tlsClientError', () => {});
  const sweeper = setInterval(() => sweep(connections, pool), options.checkInterval);
  sweeper.unref();
  server.on('close', () => clearInterval(sweeper));
  return {
    server,
    closeAll: () => {
      clearInterval(sweeper);
      for (const c of [...connections]) c.destroy();
      pool.destroyAll();
    },
  };
}

/**
 * Per source address, counted on the raw TCP connection (before any TLS handshake): one address cannot take every slot
 * of the gate with slow connections (slowloris); a connection over its quota is closed as it arrives.
 */
function limitPerSource(server: net.Server, perSource: Map<string, number>, options: WireServerOptions): void {
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? '?';
    const held = perSource.get(address) ?? 0;
    if (held >= options.maxConnectionsPerSource) {
      socket.destroy();
      options.onConnectionRefused?.(address);
      return;
    }
    perSource.set(address, held + 1);
    socket.once('close', () => {
      const n = (perSource.get(address) ?? 1) - 1;
      if (n <= 0) perSource.delete(address);
      else perSource.set(address, n);
    });
  });
}

/** Every second: each client connection applies its state's clock (and re-checks what is in flight); idle pooled
 *  upstream connections past their time close. */
function sweep(connections: Set<ClientConnection>, pool: UpstreamPool): void {
  const now = Date.now();
  for (const c of connections) c.check(now);
  pool.sweep(now);
}
