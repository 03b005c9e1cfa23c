// What the gate's data path and its policy (server.ts) exchange: the request as parsed, the responder the policy
// answers through, the hooks it checks a forwarded response or a tunnel with, and the server's options. The mechanics
// behind these live in the other files of this folder; the policy sees only this.

import type net from 'node:net';

export interface WireRequest {
  method: string;
  /** The request target exactly as received. */
  url: string;
  /** Header names and values as received, alternating (names in their original case). */
  rawHeaders: string[];
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  versionMinor: number;
  /** CONNECT, or a request asking to switch protocols (Upgrade: only WebSocket is ever tunnelled, by the policy's choice). */
  upgrade: boolean;
  /** `address:port` of the client. */
  source: string;
  remoteAddress: string;
}

/** What the policy answers an upstream's response head with: the header block to send (CRLF-terminated lines), or a refusal. */
export type ResponseDecision = { headers: string } | { refuse: string; status?: number };

export interface ForwardHooks {
  /** Called once with the upstream's final response head (1xx interim responses are dropped). */
  response(status: number, statusMessage: string, rawHeaders: string[]): ResponseDecision;
  /** The upstream failed (unreachable, malformed or refused response) before any byte went to the client: answer it
   *  (`status`: the policy's own, when it refused the response; else a gateway error). */
  failed(reason: string, status?: number): void;
  /** Why the response must stop now (a revoked or expired grant, a removed route), or undefined. Called before every
   *  response body chunk and once a second while the exchange is in flight, like a tunnel's check. */
  check?(): string | undefined;
  /** check() refused: the gate answered `status 403` (no byte out yet) or closed the connection mid-response. */
  cut?(reason: string, midResponse: boolean): void;
}

/**
 * A loopback port, or a socket file `socketName` in the directory `socketDir`. A socket is never connected by path: the
 * directory is opened without following a link, the file is opened (O_PATH, no link followed) through that descriptor
 * and checked to be a socket, and the connection is made to the descriptor (`/proc/self/fd/N`). Swapping either for a
 * symlink between the check and the connect cannot redirect it: the inode checked is the inode connected.
 */
export type UpstreamAddress = { port: number } | { socketDir: string; socketName: string };

/** A WebSocket tunnel: after the upstream's 101, bytes pass unparsed, each chunk only after `check()` allows it. */
export interface TunnelHooks extends ForwardHooks {
  /** Why the tunnel must close now (a revoked grant, a removed route), or undefined. Called before every chunk in either
   *  direction and once a second while the tunnel is idle. */
  check(): string | undefined;
  /** The tunnel ended: `cut` holds check()'s reason when the gate closed it. */
  closed(info: { cut?: string; bytesFromClient: number; bytesFromUpstream: number }): void;
}

/** The response side of one exchange, handed to the policy. Exactly one of respond() or forward() is called. */
export interface WireResponder {
  /** Whether a response head has gone to the client. */
  readonly responseStarted: boolean;
  /** Closes the client connection at once (the only way to signal a failure once a response has started). */
  destroyConnection(): void;
  /** A response the gate writes itself. `headers`: CRLF-terminated lines, without Content-Length/Connection. */
  respond(status: number, reasonPhrase: string, headers: string, body: string, options?: { close?: boolean }): void;
  /** Sends `head` (request line and headers, CRLF-terminated lines, without framing headers) and the body upstream. */
  forward(upstream: UpstreamAddress, head: string, hooks: ForwardHooks): void;
  /** For a WebSocket upgrade request: sends `head` (with its Connection/Upgrade lines) on a new upstream connection; a
   *  101 from the upstream turns both connections into a tunnel, any other answer is forwarded and the connection closes. */
  tunnel(upstream: UpstreamAddress, head: string, hooks: TunnelHooks): void;
}

export interface WireServerOptions {
  tls?: { cert: Buffer; key: Buffer };
  maxHeaderSize: number;
  /** From a connection's first byte (or its start) to a complete request head. */
  headersTimeout: number;
  /** Until the request body is complete. */
  requestTimeout: number;
  /** Idle time between requests before the gate closes a connection. */
  keepAliveTimeout: number;
  /** Resolution of the three timeouts above. */
  checkInterval: number;
  maxConnections: number;
  /** Connections one client address may hold at once; more are closed as they arrive. */
  maxConnectionsPerSource: number;
  /** Connections `remoteAddress` holds now (set by createWireServer). */
  sourceLoad?(remoteAddress: string): number;
  /** A connection from `remoteAddress` was closed at once (over maxConnectionsPerSource). */
  onConnectionRefused?(remoteAddress: string): void;
  onRequest(req: WireRequest, res: WireResponder): void;
  /** A request the parser refused (the gate answers `status` and closes). */
  onParseError(info: { code: string; status: number; source: string }): void;
  /** An unexpected exception inside the data path (the connection is closed). */
  onInternalError(error: unknown): void;
}

export interface WireServer {
  server: net.Server;
  /** Destroys every client and upstream connection (after server.close() stops accepting). */
  closeAll(): void;
}
