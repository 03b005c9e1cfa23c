// One exchange: a request of a client connection and its response, forwarded to an upstream, tunnelled, or answered
// by the gate itself. It is the WireResponder the policy answers through.
// Invariants:
// - Messages are re-framed, never passed through: a request body goes upstream with the Content-Length llhttp checked
//   or in the gate's own chunked encoding of the decoded bytes; a response reaches the client with its Content-Length,
//   the gate's chunked encoding, or close-delimited (HTTP/1.0). No byte of framing crosses from one side to the other.
// - An upgrade request's body is never forwarded: the tunnel's upstream would read it as a request of its own.
// - `100 Continue` goes out only when the policy forwards the request (after its checks).
// - A forwarded exchange with a policy check() is checked before every response body chunk and by the sweep every
//   second; a refusal answers 403 (nothing sent yet) or closes the client connection (mid-response).
// - Only a bodiless GET, HEAD or OPTIONS whose pooled connection died before any response byte is sent again, once.

import type { ClientConnection } from './client.js';
import type {
  ForwardHooks,
  ResponseDecision,
  TunnelHooks,
  UpstreamAddress,
  WireRequest,
  WireResponder,
} from './contract.js';
import { CRLF, LAST_CHUNK, rawHeader, reasonPhrase, statusLine } from './framing.js';
import { Tunnel } from './tunnel.js';
import { UpstreamRefused, type UpstreamConnection } from './upstream.js';

/** Methods sent again on a new connection when a pooled one turns out dead before any response byte. */
const RETRYABLE = new Set(['GET', 'HEAD', 'OPTIONS']);

export class Exchange implements WireResponder {
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
  openedTunnel: Tunnel | undefined;

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
    if (this.upstream && this.chunkedUp) this.upstream.socket.write(LAST_CHUNK);
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
    conn.attach(this);
    conn.socket.write(this.outHead, 'latin1');
  }

  /** Bytes the client sent after its upgrade request, before the tunnel opened (sent on once it does). */
  tunnelData(chunk: Buffer): void {
    if (this.openedTunnel) this.openedTunnel.fromClient(chunk);
    else if (!this.done && chunk.length > 0) {
      this.pendingTunnelBytes += chunk.length;
      // A client may not send frames before the 101; a little is kept, a flood closes the connection.
      if (this.pendingTunnelBytes > 64 * 1024) return this.conn.destroy();
      this.pending.push(chunk);
    }
  }

  /** The upstream answered 101 (already written to the client): pass bytes both ways, each chunk after a check. */
  openTunnel(up: UpstreamConnection, leftover: Buffer): void {
    this.upstream = undefined;
    const tunnel = new Tunnel({
      client: this.conn.socket,
      upstream: up.socket,
      hooks: this.tunnelHooks!,
      teardown: () => {
        this.done = true;
        this.openedTunnel = undefined;
        up.destroy();
        this.conn.destroy();
      },
    });
    this.openedTunnel = tunnel;
    if (!this.conn.transition('tunnel-opened')) return;
    const early = this.pending;
    this.pending = [];
    tunnel.open(leftover, early);
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
    conn.attach(this);
    const s = conn.socket;
    s.cork();
    s.write(this.outHead, 'latin1');
    const pending = this.pending;
    this.pending = [];
    for (const chunk of pending) this.sendBody(chunk);
    if (this.requestComplete && this.chunkedUp) s.write(LAST_CHUNK);
    s.uncork();
  }

  // -- response from the upstream --
  upstreamHead(status: number, statusMessage: string, raw: string[]): void {
    const decision = this.responseDecision(status, statusMessage, raw);
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
    this.writeResponseHead(status, decision.headers, raw);
  }

  /** The policy's answer to the upstream's head; a hook that throws refuses the response. */
  private responseDecision(status: number, statusMessage: string, raw: string[]): ResponseDecision {
    try {
      return this.hooks!.response(status, statusMessage, raw);
    } catch (error) {
      return { refuse: `upstream response not forwardable (${(error as Error).message})` };
    }
  }

  /** Writes the response head with the gate's own framing (see the invariants) and status line. */
  private writeResponseHead(status: number, headers: string, raw: string[]): void {
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
    this.conn.write(`${statusLine(status, reasonPhrase(status))}${headers}${framing}${connection}${CRLF}`, 'latin1');
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
    if (this.framing === 'chunked') this.conn.write(LAST_CHUNK, 'latin1');
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

  /** The upstream stayed silent past the limit: given up, never sent again (a 502, or the connection closes). */
  giveUp(reason: string): void {
    this.retried = true;
    this.upstreamFailed(reason);
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
    this.openedTunnel?.close();
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
