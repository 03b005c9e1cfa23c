// The gate's HTTP/1.1 data path: plain or TLS sockets framed by llhttp — node's own HTTP parser, the one node:http uses,
// in strict mode — in both directions, without node:http's per-request objects and streams (≈ 4× the CPU; ADR 0012).
// This file owns the mechanics: parsing, framing, pipelining order, timeouts, backpressure, the upstream connection
// pool. What may be reached, by whom, and which headers cross is the policy in server.ts.
// Invariants:
// - Framing is llhttp's and never lenient: conflicting Content-Length/Transfer-Encoding, bad chunk sizes, invalid header
//   characters and heads over maxHeaderSize end the connection (400/431). A refused head is never forwarded; a body
//   refused midway, while streaming upstream, closes the upstream connection too.
// - Messages are re-framed, never passed through: a body goes on with the Content-Length llhttp checked or in the gate's
//   own chunked encoding of the decoded bytes, so neither side can make the other read a message boundary it did not
//   mean (an upstream cannot answer a later request of the client connection, a client cannot smuggle one upstream).
// - One exchange at a time per client connection: pipelined requests wait, in order, with the socket paused.
// - Reading from the client pauses while anything waits behind the exchange in flight or a request body's upstream has
//   not drained (syncReading): the gate never buffers a client's bytes beyond one read.
// - An upstream connection is reused only after a complete request and a complete response that allows keep-alive, with
//   no byte after it and not paused; a failed exchange destroys it.
// - A WebSocket tunnel (after the upstream's 101 to an upgrade the policy allowed) passes bytes unparsed, each chunk
//   only after the policy's check, and never an upgrade request's body.
// - A forwarded exchange with a policy check() is checked before every response body chunk and by the sweep every
//   second; a refusal answers 403 (nothing sent yet) or closes the client connection (mid-response).
// - A socket upstream is connected through an O_PATH descriptor of the very inode checked to be a socket (see
//   UpstreamAddress); pooled connections are keyed by that inode, per request.
// - One client address holds at most maxConnectionsPerSource connections (counted on the raw TCP connection, before any
//   TLS handshake); past half of it, its header timeout shrinks to a fifth.
// - Nothing a peer sends throws out of this file: parse errors become 400/431/502 or a closed connection.

import { STATUS_CODES } from 'node:http';
import { createRequire } from 'node:module';
import { closeSync, constants as fsConstants, fstatSync, openSync } from 'node:fs';
import net, { type Socket } from 'node:net';
import tls from 'node:tls';

interface LlhttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | (Error & { code?: string });
  finish(): undefined | (Error & { code?: string });
  close(): void;
  [key: number]: unknown;
}
interface LlhttpModule {
  HTTPParser: {
    new (): LlhttpParser;
    REQUEST: number;
    RESPONSE: number;
    kOnHeaders: number;
    kOnHeadersComplete: number;
    kOnMessageBegin: number;
    kOnBody: number;
    kOnMessageComplete: number;
    kOnExecute: number;
    kLenientNone: number;
  };
  methods: string[];
}
// `_http_common` is node's own binding of llhttp (the parser behind node:http): built in, no dependency (ADR 0012).
const { HTTPParser, methods } = createRequire(import.meta.url)('_http_common') as LlhttpModule;

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

const CRLF = '\r\n';
/** Methods sent again on a new connection when a pooled one turns out dead before any response byte. */
const RETRYABLE = new Set(['GET', 'HEAD', 'OPTIONS']);
/** A response the client has not read any of for this long is cut. */
const SEND_STALL_MS = 30_000;
/** After a tunnel's client closes its side, how long the upstream has to close its own. */
const TUNNEL_CLOSE_GRACE_MS = 5_000;
/** An upstream silent this long while an exchange waits on it is given up (nginx's proxy_read_timeout is 60 s). */
const UPSTREAM_SILENCE_MS = 300_000;
const FREE_PER_UPSTREAM = 64;
/** Shorter than node's default keepAliveTimeout (5 s), so the gate rarely reuses a connection the upstream is closing. */
const UPSTREAM_IDLE_MS = 4_000;

function statusLine(status: number, reason: string): string {
  return `HTTP/1.1 ${status} ${reason}${CRLF}`;
}

/** Header value of `name` (lowercase) in a raw header list, joined like node does, or undefined. */
export function rawHeader(raw: string[], name: string): string | undefined {
  let out: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === name.length && raw[i]!.toLowerCase() === name)
      out = out === undefined ? raw[i + 1]! : `${out}, ${raw[i + 1]!}`;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------------
// Upstream connections

class UpstreamPool {
  private readonly free = new Map<string, UpstreamConnection[]>();
  readonly all = new Set<UpstreamConnection>();

  /**
   * A connection to `address`: a pooled one to the very socket checked for THIS request (the pool is keyed by the
   * socket's device and inode as opened now, so a connection made before the path was swapped is never handed out for
   * the new one), or a new one. Throws UpstreamRefused when the socket file is not a socket.
   */
  acquire(address: UpstreamAddress): { conn: UpstreamConnection; reused: boolean } {
    const target = resolveUpstream(address);
    const list = this.free.get(target.key);
    while (list && list.length > 0) {
      const conn = list.pop()!;
      if (conn.usable()) {
        target.release();
        return { conn, reused: true };
      }
      conn.destroy();
    }
    const conn = new UpstreamConnection(this, target.key, target);
    this.all.add(conn);
    return { conn, reused: false };
  }

  /** A new connection that never returns to the pool (a tunnel's). */
  fresh(address: UpstreamAddress): UpstreamConnection {
    const conn = new UpstreamConnection(this, '', resolveUpstream(address));
    this.all.add(conn);
    return conn;
  }

  release(conn: UpstreamConnection): void {
    let list = this.free.get(conn.key);
    if (!list) this.free.set(conn.key, (list = []));
    if (list.length >= FREE_PER_UPSTREAM) return conn.destroy();
    conn.idleSince = Date.now();
    list.push(conn);
  }

  forget(conn: UpstreamConnection): void {
    this.all.delete(conn);
    const list = this.free.get(conn.key);
    const i = list ? list.indexOf(conn) : -1;
    if (i !== -1) list!.splice(i, 1);
  }

  sweep(now: number): void {
    for (const list of this.free.values()) {
      while (list.length > 0 && now - list[0]!.idleSince > UPSTREAM_IDLE_MS) list.shift()!.destroy();
    }
  }

  destroyAll(): void {
    for (const c of [...this.all]) c.destroy();
  }
}

/** A socket upstream that failed its check (not a real directory holding a real socket). */
export class UpstreamRefused extends Error {}

/** Linux O_PATH: a descriptor naming a file without opening it for I/O (not in fs.constants). */
const O_PATH = 0o10000000;

interface ResolvedUpstream {
  key: string;
  /** What net.connect gets. */
  connect: net.NetConnectOpts;
  /** Closes the descriptors held for the connect (idempotent). */
  release(): void;
}

/**
 * Opens a socket upstream without following links (see UpstreamAddress) and returns where to connect: the descriptor's
 * /proc path, valid until release(). The pool key names the inode, so identity, not path, decides pooling.
 */
function resolveUpstream(address: UpstreamAddress): ResolvedUpstream {
  if ('port' in address)
    return {
      key: `p${address.port}`,
      connect: { host: '127.0.0.1', port: address.port, noDelay: true },
      release: () => {},
    };
  let dir: number | undefined;
  let file: number | undefined;
  try {
    dir = openSync(address.socketDir, O_PATH | fsConstants.O_DIRECTORY | fsConstants.O_NOFOLLOW);
    file = openSync(`/proc/self/fd/${dir}/${address.socketName}`, O_PATH | fsConstants.O_NOFOLLOW);
    const st = fstatSync(file);
    if (!st.isSocket()) throw new UpstreamRefused('upstream socket is not a socket file');
  } catch (error) {
    if (file !== undefined) closeSync(file);
    if (dir !== undefined) closeSync(dir);
    if (error instanceof UpstreamRefused) throw error;
    throw new UpstreamRefused(
      `upstream socket is not a socket file (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
    );
  }
  closeSync(dir);
  const st = fstatSync(file);
  let held: number | undefined = file;
  return {
    key: `s${st.dev}:${st.ino}`,
    connect: { path: `/proc/self/fd/${file}` },
    release: () => {
      if (held === undefined) return;
      closeSync(held);
      held = undefined;
    },
  };
}

class UpstreamConnection {
  readonly socket: Socket;
  private readonly parser: LlhttpParser;
  exchange: Exchange | undefined;
  idleSince = 0;
  private closed = false;
  /** Inside parser.execute/finish: the native parser must not be freed until it returns (use after free). */
  private executing = false;
  /** The current response: interim (1xx, dropped), its head seen, and whether it allows keep-alive. */
  private interim = false;
  private keepAlive = false;
  /** The upstream answered 101 to a tunnel's request: what follows on this socket is not HTTP. */
  private switched = false;
  /** The exchange's response is complete and the connection may be pooled once parse() returns. */
  private reusable = false;
  /** A byte arrived that starts a message nobody asked for: this connection is never pooled. */
  private dirty = false;

  constructor(
    private readonly pool: UpstreamPool,
    readonly key: string,
    target: ResolvedUpstream,
  ) {
    this.socket = net.connect(target.connect);
    // The descriptor is needed until connect(2) has resolved it, never after.
    this.socket.once('connect', target.release).once('close', target.release);
    this.parser = new HTTPParser();
    this.parser.initialize(HTTPParser.RESPONSE, {}, 64 * 1024, HTTPParser.kLenientNone);
    this.parser[HTTPParser.kOnHeaders] = (headers: string[]) => this.exchange?.upstreamHeaders.push(...headers);
    // Any byte after a complete response (in the same chunk, or later) begins a message nobody asked for: an upstream
    // that answers twice could otherwise leave a half-parsed response on a pooled connection for the next exchange.
    this.parser[HTTPParser.kOnMessageBegin] = () => {
      if (!this.exchange) this.dirty = true;
      else this.exchange.upstreamHeaders = []; // trailers of an interim or earlier message are never a head's
    };
    this.parser[HTTPParser.kOnHeadersComplete] = (
      _maj: number,
      _min: number,
      headers: string[] | undefined,
      _m: unknown,
      _u: unknown,
      status: number,
      statusMessage: string,
      upgrade: boolean,
      keepAlive: boolean,
    ): number => {
      const ex = this.exchange;
      if (!ex) {
        this.dirty = true;
        return 0;
      }
      const raw =
        headers && headers.length
          ? ex.upstreamHeaders.length
            ? ex.upstreamHeaders.concat(headers)
            : headers
          : ex.upstreamHeaders;
      ex.upstreamHeaders = [];
      ex.upstreamBytes = true;
      if (status >= 100 && status < 200 && status !== 101 && !upgrade) {
        this.interim = true;
        return 0;
      }
      this.interim = false;
      this.keepAlive = keepAlive;
      if (upgrade || status === 101) {
        if (!(ex.isTunnel && status === 101 && upgrade)) {
          ex.upstreamFailed('upstream switched protocols');
          return 0;
        }
        this.switched = true; // llhttp stops here; the rest of the chunk is the tunnel's (see the data handler)
      }
      ex.upstreamHead(status, statusMessage ?? '', raw);
      // A HEAD response has no body whatever its Content-Length says: llhttp must not wait for one.
      return ex.req.method === 'HEAD' ? 1 : 0;
    };
    this.parser[HTTPParser.kOnBody] = (chunk: Buffer) =>
      this.exchange ? this.exchange.upstreamBody(chunk) : (this.dirty = true);
    this.parser[HTTPParser.kOnMessageComplete] = () => {
      if (this.interim) {
        this.interim = false;
        return;
      }
      if (this.switched) return; // a 101 "completes" at once; the tunnel takes over in the data handler
      const ex = this.exchange;
      if (!ex) return;
      this.exchange = undefined;
      ex.upstreamComplete(this, this.keepAlive);
    };
    this.socket.on('data', (chunk: Buffer) => {
      if (!this.exchange) return this.destroy(); // bytes nobody asked for: never hand this connection out again
      this.exchange.upstreamActivity = Date.now(); // any byte, a head or a 1xx heartbeat too, is a sign of life
      const client = this.exchange.conn.socket;
      client.cork();
      this.executing = true;
      let ret: number | (Error & { code?: string }) = 0;
      try {
        ret = this.parser.execute(chunk);
      } catch (error) {
        this.exchange?.conn.internalError(error);
      } finally {
        this.executing = false;
        client.uncork();
      }
      if (this.reusable) {
        // Pooled only now that parse() has returned: a chunk holding more than the response made this connection dirty.
        this.reusable = false;
        if (this.dirty || typeof ret !== 'number' || !this.usable()) this.destroy();
        else this.pool.release(this);
        return;
      }
      if (typeof ret !== 'number') this.fail(`upstream answered malformed HTTP (${ret.code ?? ret.message})`);
      else if (this.switched && this.exchange && !this.closed) {
        const ex = this.exchange;
        this.exchange = undefined;
        this.socket.removeAllListeners('data');
        this.socket.removeAllListeners('end');
        this.freeParser();
        ex.openTunnel(this, chunk.subarray(ret));
      }
      if (this.closed) this.freeParser();
    });
    this.socket.on('end', () => {
      // A response without framing ends when the upstream closes; anything else cut short is a failure.
      if (this.exchange && !this.closed) {
        this.executing = true;
        let ret: ReturnType<LlhttpParser['finish']>;
        try {
          ret = this.parser.finish();
        } finally {
          this.executing = false;
        }
        if (ret !== undefined && this.exchange) this.fail(`upstream closed mid-response (${ret.code ?? ret.message})`);
      }
      this.destroy();
      this.freeParser();
    });
    this.socket.on('error', (error: NodeJS.ErrnoException) =>
      this.fail(`upstream unreachable (${error.code ?? error.message})`),
    );
    this.socket.on('close', () => {
      this.fail('upstream closed the connection');
      this.destroy();
    });
  }

  usable(): boolean {
    return !this.closed && !this.dirty && !this.socket.destroyed && this.socket.readyState === 'open';
  }

  /** The exchange's response is complete: pool this connection once the current parse() returns, or close it. */
  completed(reuse: boolean): void {
    // A socket paused for a slow client must flow again before anyone else gets it.
    this.socket.resume();
    if (reuse && this.executing) this.reusable = true;
    else if (reuse && this.usable()) this.pool.release(this);
    else this.destroy();
  }

  private fail(reason: string): void {
    const ex = this.exchange;
    this.exchange = undefined;
    this.destroy();
    ex?.upstreamFailed(reason);
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.pool.forget(this);
    this.socket.destroy();
    if (!this.executing) this.freeParser();
  }

  private parserFreed = false;
  /** Frees the native parser once, never from inside its own callbacks (llhttp would run on freed memory). */
  private freeParser(): void {
    if (this.parserFreed || this.executing) return;
    this.parserFreed = true;
    this.parser.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Exchanges: one request and its response on a client connection

class Exchange implements WireResponder {
  /** Body chunks that arrived before the request was forwarded (or while it waited its turn). */
  private pending: Buffer[] = [];
  requestComplete = false;
  private chunkedUp = false;
  private upstream: UpstreamConnection | undefined;
  private upstreamAddress: UpstreamAddress | undefined;
  private outHead = '';
  private hooks: ForwardHooks | undefined;
  private reused = false;
  private retried = false;
  upstreamHeaders: string[] = [];
  upstreamBytes = false;
  /** Response framing towards the client: 'length' (upstream's Content-Length), 'chunked' (ours), 'close', 'none'. */
  private framing: 'length' | 'chunked' | 'close' | 'none' = 'none';
  responseStarted = false;
  done = false;
  /** Denied while the client may still send body bytes: the connection closes after the answer. */
  private discardBody = false;
  readonly hasBody: boolean;
  readonly expectContinue: boolean;
  private readonly contentLength: string | undefined;
  /** The policy has been given this exchange. */
  started = false;
  /** When the upstream last sent a byte of this exchange's response (or when the request went to it). */
  upstreamActivity = Date.now();
  /** When the policy last checked this exchange (ms): body chunks in the same millisecond skip the check. */
  private checkedAt = 0;
  /** A WebSocket upgrade the policy let through (tunnel()). */
  isTunnel = false;
  private tunnelHooks: TunnelHooks | undefined;
  private pendingTunnelBytes = 0;
  /** Set while the tunnel is open. */
  tunnelState: { fromClient(chunk: Buffer): void; check(): void; close(): void; clientEnded(): void } | undefined;

  constructor(
    readonly conn: ClientConnection,
    readonly req: WireRequest,
    readonly keepAlive: boolean,
  ) {
    // llhttp has checked the framing headers: at most one Content-Length, never with Transfer-Encoding.
    let length: string | undefined;
    let expect = false;
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      if (name.length === 14 && name.toLowerCase() === 'content-length') length = raw[i + 1]!;
      else if (name.length === 17 && name.toLowerCase() === 'transfer-encoding') this.chunkedUp = true;
      else if (name.length === 6 && name.toLowerCase() === 'expect') expect = /^\s*100-continue\s*$/i.test(raw[i + 1]!);
    }
    this.contentLength = length;
    this.hasBody = this.chunkedUp || (length !== undefined && Number(length) > 0);
    this.requestComplete = !this.hasBody;
    this.expectContinue = expect;
  }

  /** This exchange's request body is still wanted: it is being sent upstream. */
  forwardingBody(): boolean {
    return !this.requestComplete && !this.discardBody && !this.done && this.upstream !== undefined;
  }

  // -- request body from the client --
  body(chunk: Buffer): void {
    // An upgrade request's body is never forwarded: the tunnel's upstream would read it as a request of its own.
    if (this.discardBody || this.done || this.req.upgrade) return;
    if (this.upstream) this.sendBody(chunk);
    else this.pending.push(chunk);
  }

  complete(): void {
    this.requestComplete = true;
    if (this.upstream && this.chunkedUp) this.upstream.socket.write(`0${CRLF}${CRLF}`);
  }

  private sendBody(chunk: Buffer): void {
    // The silence limit counts from the last byte either way: a long upload is progress, not silence.
    this.upstreamActivity = Date.now();
    const s = this.upstream!.socket;
    let ok: boolean;
    if (this.chunkedUp) {
      s.cork();
      s.write(`${chunk.length.toString(16)}${CRLF}`);
      s.write(chunk);
      ok = s.write(CRLF);
      s.uncork();
    } else {
      ok = s.write(chunk);
    }
    if (!ok) this.conn.pauseFor(s);
  }

  // -- WireResponder --
  respond(
    status: number,
    reasonPhrase: string,
    headers: string,
    body: string,
    options: { close?: boolean } = {},
  ): void {
    if (this.responseStarted) return;
    this.responseStarted = true;
    // A body still arriving is not read: the connection closes after the answer.
    const close = options.close === true || !this.keepAlive || !this.requestComplete || this.conn.closing;
    if (!this.requestComplete) this.discardBody = true;
    this.pending = [];
    const bodyBytes = Buffer.byteLength(body);
    const head = `${statusLine(status, reasonPhrase)}${headers}content-length: ${bodyBytes}${CRLF}${close ? `connection: close${CRLF}` : this.req.versionMinor === 0 ? `connection: keep-alive${CRLF}` : ''}${CRLF}`;
    this.conn.write(this.req.method === 'HEAD' ? head : head + body, 'utf8');
    this.finish(close);
  }

  tunnel(upstream: UpstreamAddress, head: string, hooks: TunnelHooks): void {
    this.upstreamActivity = Date.now();
    this.isTunnel = true;
    this.tunnelHooks = hooks;
    this.hooks = hooks;
    this.upstreamAddress = upstream;
    this.outHead = `${head}${CRLF}`;
    let conn: UpstreamConnection;
    try {
      conn = this.conn.pool.fresh(upstream);
    } catch (error) {
      return this.upstreamFailed(
        error instanceof UpstreamRefused ? error.message : `upstream unreachable (${(error as Error).message})`,
      );
    }
    this.upstream = conn;
    conn.exchange = this;
    conn.socket.write(this.outHead, 'latin1');
  }

  /** Bytes the client sent after its upgrade request, before the tunnel opened (sent on once it does). */
  tunnelData(chunk: Buffer): void {
    if (this.tunnelState) this.tunnelState.fromClient(chunk);
    else if (!this.done && chunk.length > 0) {
      this.pendingTunnelBytes += chunk.length;
      // A client may not send frames before the 101; a little is kept, a flood closes the connection.
      if (this.pendingTunnelBytes > 64 * 1024) return this.conn.destroy();
      this.pending.push(chunk);
    }
  }

  /** The upstream answered 101: write it to the client, then pass bytes both ways, each chunk after a check. */
  openTunnel(up: UpstreamConnection, leftover: Buffer): void {
    this.upstream = undefined;
    const hooks = this.tunnelHooks!;
    const client = this.conn.socket;
    const upstream = up.socket;
    let closed = false;
    let fromClient = 0;
    let fromUpstream = 0;
    const finish = (cut?: string): void => {
      if (closed) return;
      closed = true;
      this.done = true;
      this.tunnelState = undefined;
      up.destroy();
      this.conn.destroy();
      hooks.closed({ ...(cut ? { cut } : {}), bytesFromClient: fromClient, bytesFromUpstream: fromUpstream });
    };
    const pass = (chunk: Buffer, to: Socket, from: Socket): boolean => {
      let reason: string | undefined;
      try {
        reason = hooks.check();
      } catch (error) {
        reason = `check failed (${(error as Error).message})`;
      }
      if (reason) {
        finish(reason);
        return false;
      }
      if (!to.write(chunk)) {
        from.pause();
        to.once('drain', () => from.resume());
      }
      return true;
    };
    this.tunnelState = {
      fromClient: (chunk) => {
        fromClient += chunk.length;
        pass(chunk, upstream, client);
      },
      check: () => {
        let reason: string | undefined;
        try {
          reason = hooks.check();
        } catch (error) {
          reason = `check failed (${(error as Error).message})`;
        }
        if (reason) finish(reason);
      },
      close: () => finish(),
      clientEnded: () => {
        // Passed on; an upstream that keeps its side open after that does not hold both sockets.
        upstream.end();
        setTimeout(() => finish(), TUNNEL_CLOSE_GRACE_MS).unref();
      },
    };
    this.conn.setPhase('tunnel');
    upstream.on('data', (chunk: Buffer) => {
      fromUpstream += chunk.length;
      pass(chunk, client, upstream);
    });
    // The upstream's last bytes still reach a slow client: its end is passed on after them, and the client connection
    // closes once they are flushed (or the sweep's stall limit cuts a client that stopped reading).
    upstream.on('end', () => client.end());
    upstream.on('close', () => {
      if (client.writableLength === 0) finish();
      else {
        client.end();
        client.once('finish', () => finish());
      }
    });
    const pending = this.pending;
    this.pending = [];
    if (leftover.length > 0) {
      fromUpstream += leftover.length;
      if (!pass(leftover, client, upstream)) return;
    }
    for (const chunk of pending) {
      fromClient += chunk.length;
      if (!pass(chunk, upstream, client)) return;
    }
  }

  forward(upstream: UpstreamAddress, head: string, hooks: ForwardHooks): void {
    this.hooks = hooks;
    this.upstreamAddress = upstream;
    this.outHead = this.hasBody
      ? `${head}${this.chunkedUp ? 'transfer-encoding: chunked' : `content-length: ${this.contentLength}`}${CRLF}${CRLF}`
      : `${head}${CRLF}`;
    if (this.expectContinue && !this.requestComplete) this.conn.write(`HTTP/1.1 100 Continue${CRLF}${CRLF}`, 'latin1');
    this.connectUpstream();
  }

  private connectUpstream(): void {
    this.upstreamActivity = Date.now();
    let acquired: { conn: UpstreamConnection; reused: boolean };
    try {
      acquired = this.conn.pool.acquire(this.upstreamAddress!);
    } catch (error) {
      this.reused = false;
      return this.upstreamFailed(
        error instanceof UpstreamRefused ? error.message : `upstream unreachable (${(error as Error).message})`,
      );
    }
    const { conn, reused } = acquired;
    this.upstream = conn;
    this.reused = reused;
    conn.exchange = this;
    const s = conn.socket;
    s.cork();
    s.write(this.outHead, 'latin1');
    const pending = this.pending;
    this.pending = [];
    for (const chunk of pending) this.sendBody(chunk);
    if (this.requestComplete && this.chunkedUp) s.write(`0${CRLF}${CRLF}`);
    s.uncork();
  }

  // -- response from the upstream --
  upstreamHead(status: number, statusMessage: string, raw: string[]): void {
    let decision: ResponseDecision;
    try {
      decision = this.hooks!.response(status, statusMessage, raw);
    } catch (error) {
      decision = { refuse: `upstream response not forwardable (${(error as Error).message})` };
    }
    if ('refuse' in decision) return this.upstreamFailed(decision.refuse, decision.status);
    this.checkedAt = Date.now(); // the policy's response hook has just run its checks
    if (this.isTunnel) {
      this.responseStarted = true;
      if (status === 101) {
        this.conn.write(
          `HTTP/1.1 101 Switching Protocols${CRLF}${decision.headers}connection: upgrade${CRLF}upgrade: websocket${CRLF}${CRLF}`,
          'latin1',
        );
        return;
      }
      // Not switched: the answer goes to the client as it is, and the connection closes (the client's parser state is
      // an upgrade's, and llhttp has stopped reading it).
      this.conn.closing = true;
    }
    const head = this.req.method === 'HEAD' || status === 204 || status === 304;
    const hasLength = rawHeader(raw, 'content-length') !== undefined;
    this.framing = head ? 'none' : hasLength ? 'length' : this.req.versionMinor >= 1 ? 'chunked' : 'close';
    const close = !this.keepAlive || this.framing === 'close' || this.conn.closing;
    this.responseStarted = true;
    const framing = this.framing === 'chunked' ? `transfer-encoding: chunked${CRLF}` : '';
    const connection = close
      ? `connection: close${CRLF}`
      : this.req.versionMinor === 0
        ? `connection: keep-alive${CRLF}`
        : '';
    if (close) this.conn.closing = true;
    // The reason phrase is the gate's own (the upstream's is never forwarded).
    this.conn.write(
      `${statusLine(status, reasonPhrase(status))}${decision.headers}${framing}${connection}${CRLF}`,
      'latin1',
    );
  }

  upstreamBody(chunk: Buffer): void {
    if (!this.responseStarted || this.done) return;
    // A stream (server-sent events, a long download) is held to its grant like a tunnel: checked before every chunk,
    // except within the millisecond of the previous check (the head's, or the chunk before): a body that arrives in
    // one burst costs one check, and a revocation still cuts the first chunk that comes a millisecond after it.
    if (this.hooks?.check && Date.now() !== this.checkedAt && this.recheck()) return;
    const c = this.conn;
    if (this.framing === 'chunked') {
      c.write(`${chunk.length.toString(16)}${CRLF}`, 'latin1');
      c.write(chunk);
      c.write(CRLF, 'latin1');
    } else if (this.framing !== 'none') {
      c.write(chunk);
    }
    if (c.socket.writableNeedDrain && this.upstream) c.pauseUpstream(this.upstream.socket);
  }

  upstreamComplete(up: UpstreamConnection, keepAlive: boolean): void {
    this.upstream = undefined;
    this.conn.releaseBackpressure(up.socket);
    if (!this.responseStarted) return; // refused in upstreamHead
    if (this.framing === 'chunked') this.conn.write(`0${CRLF}${CRLF}`, 'latin1');
    // Reuse needs both messages complete: a request body still arriving belongs to this connection's framing.
    this.conn.forgetPausedUpstream(up.socket);
    up.completed(keepAlive && this.requestComplete);
    this.finish(this.framing === 'close' || this.conn.closing);
  }

  /**
   * Runs the policy's check for a forwarded exchange (per chunk, and from the sweep while it waits or streams). A refusal
   * ends it: 403 when nothing went to the client yet, else the connection closes. Returns whether it was cut.
   */
  recheck(): boolean {
    if (this.done || this.isTunnel || !this.hooks?.check) return false;
    this.checkedAt = Date.now();
    let reason: string | undefined;
    try {
      reason = this.hooks.check();
    } catch (error) {
      reason = `check failed (${(error as Error).message})`;
    }
    if (!reason) return false;
    const midResponse = this.responseStarted;
    this.retried = true; // never sent again: the grant no longer allows it
    this.hooks.cut?.(reason, midResponse);
    if (midResponse) {
      const up = this.upstream;
      this.upstream = undefined;
      if (up) this.conn.releaseBackpressure(up.socket);
      up?.destroy();
      this.done = true;
      this.conn.destroy();
    } else {
      this.upstreamFailed(reason, 403);
    }
    return true;
  }

  upstreamFailed(reason: string, status?: number): void {
    const up = this.upstream;
    this.upstream = undefined;
    if (up) this.conn.releaseBackpressure(up.socket);
    up?.destroy();
    if (this.done) return;
    // A pooled connection the upstream closed while idle fails before any response byte: send a bodiless GET, HEAD or
    // OPTIONS again once, on a new connection. Never another method: the upstream may have acted on it before closing.
    if (
      this.reused &&
      !this.retried &&
      !this.upstreamBytes &&
      !this.hasBody &&
      !this.responseStarted &&
      RETRYABLE.has(this.req.method)
    ) {
      this.retried = true;
      this.connectUpstream();
      return;
    }
    if (!this.responseStarted) {
      this.hooks!.failed(reason, status);
      return;
    }
    // Part of the response is out: the client can only learn of the failure by the connection closing.
    this.done = true;
    this.conn.destroy();
  }

  private finish(close: boolean): void {
    this.done = true;
    if (close) this.conn.closing = true;
    this.conn.finishExchange(this);
  }

  destroyConnection(): void {
    this.done = true;
    this.conn.destroy();
  }

  /** The client went away: drop the upstream connection (its response is unwanted). */
  abort(): void {
    this.tunnelState?.close();
    this.done = true;
    const up = this.upstream;
    this.upstream = undefined;
    if (up) {
      this.conn.releaseBackpressure(up.socket);
      up.exchange = undefined;
      up.destroy();
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Client connections

class ClientConnection {
  private readonly parser: LlhttpParser;
  private queue: Exchange[] = [];
  /** The exchange whose request llhttp is parsing (it may be queued behind the current one). */
  private parsing: Exchange | undefined;
  private partialHeaders: string[] = [];
  private partialUrl = '';
  /** No request after the current one is served (Connection: close, a refused message, an upgrade). */
  closing = false;
  /** The client half-closed: the requests it sent are answered, then the connection closes. */
  private clientEnded = false;
  private destroyed = false;
  /** Inside parser.execute: the native parser must not be freed until it returns (use after free). */
  private executing = false;
  /** When the current phase began: a request head being read, a body being read, or idle between requests. */
  phase: 'head' | 'body' | 'busy' | 'idle' | 'tunnel' | 'closing' = 'head';
  private ending = false;
  /** The sweep's view of the write buffer: its size last time, and when it last changed. */
  private lastPending = 0;
  private lastProgress = 0;
  /** 'drain' events so far, and at the last sweep: a steady slow reader drains, a stuck one does not. */
  private drains = 0;
  private lastDrains = 0;
  /** The upgrade request whose turn it is or will be: every byte after its head is the tunnel's, never parsed. */
  private upgrading: Exchange | undefined;
  phaseSince = Date.now();
  readonly source: string;
  readonly remoteAddress: string;
  private pausedUpstream: Socket | undefined;
  /** The upstream a request body is waiting to drain into (pauseFor), with its listener. */
  private bodyBackpressure: { upstream: Socket; drained: () => void } | undefined;
  /** Inside advance(): an exchange finishing synchronously lets the loop start the next one. */
  private advancing = false;

  constructor(
    readonly socket: Socket,
    readonly pool: UpstreamPool,
    private readonly options: WireServerOptions,
    private readonly connections: Set<ClientConnection>,
  ) {
    this.remoteAddress = socket.remoteAddress ?? '?';
    this.source = `${this.remoteAddress}:${socket.remotePort ?? '?'}`;
    socket.setNoDelay(true);
    this.parser = new HTTPParser();
    this.parser.initialize(HTTPParser.REQUEST, {}, options.maxHeaderSize, HTTPParser.kLenientNone);
    // A new message starts with no headers: trailers of the previous one (llhttp hands them to kOnHeaders after its
    // body) are dropped here, never prepended to the next request.
    this.parser[HTTPParser.kOnMessageBegin] = () => {
      this.partialHeaders = [];
      this.partialUrl = '';
    };
    this.parser[HTTPParser.kOnHeaders] = (headers: string[], url: string) => {
      this.partialHeaders.push(...headers);
      this.partialUrl += url;
    };
    this.parser[HTTPParser.kOnHeadersComplete] = (
      _maj: number,
      minor: number,
      headers: string[] | undefined,
      method: number,
      url: string | undefined,
      _s: unknown,
      _m: unknown,
      upgrade: boolean,
      keepAlive: boolean,
    ): number => {
      if (this.destroyed || this.closing) return 0; // what follows a refused or final request is never served
      const raw =
        headers && headers.length
          ? this.partialHeaders.length
            ? this.partialHeaders.concat(headers)
            : headers
          : this.partialHeaders;
      const fullUrl = this.partialUrl + (url ?? '');
      this.partialHeaders = [];
      this.partialUrl = '';
      const req: WireRequest = {
        method: methods[method] ?? 'UNKNOWN',
        url: fullUrl,
        rawHeaders: raw,
        versionMinor: minor,
        upgrade,
        source: this.source,
        remoteAddress: this.remoteAddress,
      };
      const ex = new Exchange(this, req, keepAlive && !upgrade);
      this.parsing = ex;
      this.queue.push(ex);
      if (upgrade) {
        // llhttp stops parsing this connection: what follows is the tunnel's if the policy opens one (CONNECT and other
        // protocols are refused, and the connection closes after the answer).
        ex.requestComplete = true;
        this.upgrading = ex;
      }
      if (this.queue.length === 1) this.advance();
      else this.syncReading(); // pipelined: read no more until this one's turn
      return 0;
    };
    this.parser[HTTPParser.kOnBody] = (chunk: Buffer) => this.parsing?.body(chunk);
    this.parser[HTTPParser.kOnMessageComplete] = () => {
      const ex = this.parsing;
      this.parsing = undefined;
      if (!ex) return;
      ex.complete();
      if (this.queue[0] === ex && this.phase === 'body') this.setPhase('busy');
    };
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => {
      // The client is gone (browsers never half-close an HTTP connection): what it asked and has not been answered is
      // abandoned, as node:http does, so a request waiting on a slow or hung upstream holds no sockets. A tunnel
      // passes the half-close on.
      this.clientEnded = true;
      const tunnel = this.queue[0]?.tunnelState;
      if (tunnel) return tunnel.clientEnded();
      // Whatever is in flight, answered or not, is for nobody now: an upstream that stalls mid-response must not hold
      // this socket and its own for ever.
      if (this.queue.length > 0) return this.destroy();
      this.end();
    });
    socket.on('error', () => this.destroy());
    socket.on('close', () => this.destroy());
    socket.on('drain', () => {
      this.drains++;
      if (this.pausedUpstream) {
        this.pausedUpstream.resume();
        this.pausedUpstream = undefined;
      }
    });
  }

  private onData(chunk: Buffer): void {
    if (this.destroyed) return;
    if (this.upgrading) return this.upgrading.tunnelData(chunk);
    // Closing: no new request is read. The body of the one being forwarded still is (an upstream may answer before it
    // has read all of it, e.g. an echo piping the request into the response).
    if (this.closing && !this.parsing?.forwardingBody()) return;
    if (this.phase === 'idle') this.setPhase('head');
    let ret: number | (Error & { code?: string }) = 0;
    this.executing = true;
    try {
      ret = this.parser.execute(chunk);
    } catch (error) {
      this.internalError(error);
    } finally {
      this.executing = false;
    }
    if (this.destroyed) return this.freeParser();
    if (typeof ret === 'number') {
      // The head of an upgrade request ended inside this chunk (llhttp returns the bytes it parsed): the rest is the tunnel's.
      const upgrading = this.upgrading as Exchange | undefined;
      if (upgrading) upgrading.tunnelData(chunk.subarray(ret));
      return;
    }
    // A request the parser refused: nothing of it was forwarded. Answer it unless a response is in progress.
    const code = ret.code ?? 'HPE_UNKNOWN';
    const status = code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    this.options.onParseError({ code, status, source: this.source });
    const broken = this.parsing;
    this.parsing = undefined;
    // The refused message is the one being forwarded: part of its body is upstream already, so neither connection can
    // carry on (the upstream would wait for the rest until requestTimeout).
    if (broken !== undefined && broken === this.queue[0] && broken.started) return this.destroy();
    if (this.queue.length > 0) {
      this.queue.splice(1).forEach((e) => e.abort());
      this.closing = true;
      return;
    }
    this.closing = true;
    this.socket.end(
      `${statusLine(status, reasonPhrase(status))}connection: close${CRLF}content-length: 0${CRLF}${CRLF}`,
      'latin1',
    );
  }

  private start(ex: Exchange): void {
    ex.started = true;
    this.setPhase(ex.requestComplete || !ex.hasBody ? 'busy' : 'body');
    try {
      this.options.onRequest(ex.req, ex);
    } catch (error) {
      this.internalError(error);
    }
  }

  setPhase(phase: ClientConnection['phase']): void {
    this.phase = phase;
    this.phaseSince = Date.now();
  }

  write(data: string | Buffer, encoding?: BufferEncoding): void {
    if (this.destroyed) return;
    if (typeof data === 'string') this.socket.write(data, encoding ?? 'latin1');
    else this.socket.write(data);
  }

  /** The exchange at the head of the queue has answered: start the next, or close, or wait idle. */
  finishExchange(ex: Exchange): void {
    if (this.queue[0] !== ex) return;
    this.queue.shift();
    if (!this.advancing) this.advance();
  }

  /**
   * Starts queued exchanges in order until one is in flight. A loop, not recursion: a policy answers a refused request
   * synchronously, and thousands of pipelined refusals in one read must not grow the stack.
   */
  private advance(): void {
    this.advancing = true;
    try {
      for (;;) {
        if (this.destroyed) return;
        if (this.closing) {
          this.queue.forEach((e) => e.abort());
          this.queue = [];
          this.end();
          return;
        }
        const next = this.queue[0];
        if (!next) {
          if (this.clientEnded) this.end();
          else {
            this.setPhase(this.parsing ? 'body' : 'idle');
            this.syncReading();
          }
          return;
        }
        if (!next.started) this.start(next);
        if (this.queue[0] === next) {
          // In flight. Reading goes on only while nothing waits behind it (pipelined requests pause the socket).
          this.syncReading();
          return;
        }
      }
    } finally {
      this.advancing = false;
    }
  }

  /**
   * Reading from the client is paused while a pipelined request waits behind the one in flight, or while the upstream
   * a request body goes to has not drained; it resumes only when neither holds. One place decides, so one reason to
   * resume can never undo another reason to pause (a queued request's body would then pile up without limit).
   */
  syncReading(): void {
    if (this.destroyed || this.phase === 'tunnel') return;
    if (this.queue.length > 1 || this.bodyBackpressure !== undefined) this.socket.pause();
    else this.socket.resume();
  }

  /** A request body write to `upstream` reported backpressure: read no more from the client until it drains. */
  pauseFor(upstream: Socket): void {
    if (this.bodyBackpressure) return;
    const drained = (): void => this.releaseBackpressure(upstream);
    this.bodyBackpressure = { upstream, drained };
    upstream.once('drain', drained);
    this.syncReading();
  }

  /** `upstream` drained, or its exchange ended: its backpressure no longer holds the client socket. */
  releaseBackpressure(upstream: Socket): void {
    const held = this.bodyBackpressure;
    if (!held || held.upstream !== upstream) return;
    upstream.off('drain', held.drained);
    this.bodyBackpressure = undefined;
    this.syncReading();
  }

  pauseUpstream(upstream: Socket): void {
    this.pausedUpstream = upstream;
    upstream.pause();
  }

  /** `upstream` goes back to the pool: this connection's drain must not resume it for someone else. */
  forgetPausedUpstream(upstream: Socket): void {
    if (this.pausedUpstream === upstream) this.pausedUpstream = undefined;
  }

  /** Called by the sweep: close connections past their phase's timeout; re-check open tunnels. */
  check(now: number): void {
    const tunnel = this.phase === 'tunnel' ? this.queue[0]?.tunnelState : undefined;
    tunnel?.check();
    // A forwarded exchange waiting on its upstream (a long poll) or streaming (SSE, a download) is checked too.
    if (!tunnel && this.queue[0]?.started) this.queue[0].recheck();
    if (this.destroyed) return;
    // Bytes still waiting to reach the client: a slow reader is not idle. It is cut only when nothing moves for
    // SEND_STALL_MS (a client that stopped reading holds no connection for ever). Moving: the queue changed size, or
    // it drained since the last sweep (a steady reader can show the same size at every sweep).
    const pending = this.socket.writableLength;
    if (pending > 0) {
      if (pending !== this.lastPending || this.drains !== this.lastDrains) {
        this.lastPending = pending;
        this.lastDrains = this.drains;
        this.lastProgress = now;
      } else if (now - this.lastProgress > SEND_STALL_MS) this.destroy();
      return;
    }
    this.lastPending = 0;
    this.lastProgress = now;
    if (tunnel || this.phase === 'closing') return;
    // An upstream that has sent nothing for UPSTREAM_SILENCE_MS (hung, or a long poll past any proxy's patience): 502,
    // or the connection closes if part of the response is out.
    const current = this.queue[0];
    if (this.phase === 'busy' && current && now - current.upstreamActivity > UPSTREAM_SILENCE_MS) {
      current.upstreamFailed(`the upstream sent nothing for ${UPSTREAM_SILENCE_MS / 1000} s`);
      return;
    }
    const age = now - this.phaseSince;
    // A source holding over half its connection quota gets a fifth of the header time (slow-header floods).
    const headersTimeout =
      (this.options.sourceLoad?.(this.remoteAddress) ?? 0) > this.options.maxConnectionsPerSource / 2
        ? this.options.headersTimeout / 5
        : this.options.headersTimeout;
    if (this.phase === 'head' && age > headersTimeout) {
      if (this.queue.length === 0) {
        this.options.onParseError({ code: 'ERR_HTTP_REQUEST_TIMEOUT', status: 408, source: this.source });
        this.closing = true;
        this.socket.end(
          `${statusLine(408, reasonPhrase(408))}connection: close${CRLF}content-length: 0${CRLF}${CRLF}`,
          'latin1',
        );
        setTimeout(() => this.destroy(), 1_000).unref();
      } else this.destroy();
    } else if (this.phase === 'body' && age > this.options.requestTimeout) this.destroy();
    else if (this.phase === 'idle' && age > this.options.keepAliveTimeout) this.destroy();
  }

  internalError(error: unknown): void {
    this.options.onInternalError(error);
    this.destroy();
  }

  private end(): void {
    if (this.destroyed || this.ending) return;
    this.ending = true;
    this.closing = true;
    this.setPhase('closing');
    // Once everything written has been flushed ('finish'), a client that never closes its side gets 1 s more; a
    // response the client stops reading is cut by the sweep's stall check, not by a timer that ignores progress.
    this.socket.once('finish', () => setTimeout(() => this.destroy(), 1_000).unref());
    this.socket.end();
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.connections.delete(this);
    for (const ex of this.queue) ex.abort();
    this.queue = [];
    this.parsing = undefined;
    this.socket.destroy();
    this.freeParser();
  }

  private parserFreed = false;
  /** Frees the native parser once, never from inside its own callbacks (llhttp would run on freed memory). */
  private freeParser(): void {
    if (this.parserFreed || this.executing) return;
    this.parserFreed = true;
    this.parser.close();
  }
}

/** Reason phrase the gate writes for `status`. */
export function reasonPhrase(status: number): string {
  return STATUS_CODES[status] ?? 'Status';
}

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
  // Per source address, counted on the raw TCP connection (before any TLS handshake): one address cannot take every
  // slot of the gate with slow connections (slowloris); a connection over its quota is closed as it arrives.
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
  if (options.tls) server.on('tlsClientError', () => {});
  const sweeper = setInterval(() => {
    const now = Date.now();
    for (const c of connections) c.check(now);
    pool.sweep(now);
  }, options.checkInterval);
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
