// A client connection of the gate: its request parser, the queue of its exchanges in order, what it reads and when,
// and its timeouts. Its states and the only transitions between them are in states.ts (ClientState).
// Invariants:
// - The state decides where a client's bytes go (route()): parsed ('idle', 'head', 'body', 'busy'), passed to the
//   upgrade in flight or its tunnel, dropped ('ending', 'closed', or after a final request except the body still being
//   forwarded). A byte after the gate's last answer is never parsed.
// - One exchange at a time: pipelined requests wait, in order, with the socket paused.
// - Reading pauses while anything waits behind the exchange in flight or a request body's upstream has not drained
//   (syncReading): the gate never buffers a client's bytes beyond one read.
// - `closing` is a one-way latch: once set (Connection: close, a refused message, an upgrade that did not switch), no
//   later request is served; the connection ends after the current answer.
// - The sweep (check()) applies the clock of the current state: headers, body, idle, upstream silence, send stall.
// - Nothing a peer sends throws out of this file: parse errors become 400/431 or a closed connection, and an impossible
//   transition closes the connection (onInternalError).

import type { Socket } from 'node:net';
import type { WireRequest, WireServerOptions } from './contract.js';
import { Exchange } from './exchange.js';
import { closingAnswer } from './framing.js';
import { GuardedParser, HTTPParser, joinHeaders, methods, type ParseError } from './llhttp.js';
import { nextClientState, type ClientEvent, type ClientState } from './states.js';
import type { UpstreamPool } from './upstream.js';

/** A response the client has not read any of for this long is cut. */
const SEND_STALL_MS = 30_000;
/** An upstream silent this long while an exchange waits on it is given up (nginx's proxy_read_timeout is 60 s). */
const UPSTREAM_SILENCE_MS = 300_000;
/** A client that never closes its side after the gate's last answer is flushed gets this long more. */
const LINGER_MS = 1_000;

export class ClientConnection {
  private readonly parser: GuardedParser;
  private queue: Exchange[] = [];
  /** The exchange whose request llhttp is parsing (it may be queued behind the current one). */
  private parsing: Exchange | undefined;
  private partialHeaders: string[] = [];
  private partialUrl = '';
  /** No request after the current one is served (Connection: close, a refused message, an upgrade). One way. */
  closing = false;
  /** The client half-closed: the requests it sent are answered, then the connection closes. */
  private clientEnded = false;
  state: ClientState = 'head';
  /** When the current state began: the sweep's timeouts count from it. */
  stateSince = Date.now();
  /** The sweep's view of the write buffer: its size last time, and when it last changed. */
  private lastPending = 0;
  private lastProgress = 0;
  /** 'drain' events so far, and at the last sweep: a steady slow reader drains, a stuck one does not. */
  private drains = 0;
  private lastDrains = 0;
  /** The upgrade request whose turn it is or will be: every byte after its head is the tunnel's, never parsed. */
  private upgrading: Exchange | undefined;
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
    this.parser = new GuardedParser('request', options.maxHeaderSize);
    this.listenToParser();
    socket.on('data', (chunk: Buffer) => this.route(chunk));
    socket.on('end', () => this.onClientEnd());
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

  /**
   * Takes the state machine through `event`; false when the connection is closed after it. An impossible transition is
   * a bug or a client that drove the code somewhere nobody foresaw: reported, and the connection closes.
   */
  transition(event: ClientEvent): boolean {
    let next: ClientState;
    try {
      next = nextClientState(this.state, event);
    } catch (error) {
      this.internalError(error);
      return false;
    }
    this.state = next;
    this.stateSince = Date.now();
    return next !== 'closed';
  }

  private listenToParser(): void {
    const p = this.parser.native;
    // A new message starts with no headers: trailers of the previous one (llhttp hands them to kOnHeaders after its
    // body) are dropped here, never prepended to the next request.
    p[HTTPParser.kOnMessageBegin] = () => {
      this.partialHeaders = [];
      this.partialUrl = '';
    };
    p[HTTPParser.kOnHeaders] = (headers: string[], url: string) => {
      this.partialHeaders.push(...headers);
      this.partialUrl += url;
    };
    p[HTTPParser.kOnHeadersComplete] = (
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
      // What follows a refused or final request is never served.
      if (this.state === 'closed' || this.closing) return 0;
      this.requestHead(minor, headers, method, url, upgrade, keepAlive);
      return 0;
    };
    p[HTTPParser.kOnBody] = (chunk: Buffer) => this.parsing?.body(chunk);
    p[HTTPParser.kOnMessageComplete] = () => this.requestComplete();
  }

  /** A request head is complete: queue its exchange, and start it if nothing is in flight. */
  private requestHead(
    minor: number,
    headers: string[] | undefined,
    method: number,
    url: string | undefined,
    upgrade: boolean,
    keepAlive: boolean,
  ): void {
    const raw = joinHeaders(this.partialHeaders, headers);
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
  }

  /** The request being parsed is complete (its body too). */
  private requestComplete(): void {
    const ex = this.parsing;
    this.parsing = undefined;
    if (!ex) return;
    ex.complete();
    if (this.queue[0] === ex && this.state === 'body') this.transition('body-complete');
  }

  /** Where a chunk from the client goes, by state: the parser, the upgrade in flight or its tunnel, or nowhere. */
  private route(chunk: Buffer): void {
    switch (this.state) {
      case 'closed':
      case 'ending':
        return; // nothing after the gate's last answer is read
      default:
        // After an upgrade's head (waiting for its turn, for the 101, or in the tunnel), bytes are never parsed.
        if (this.upgrading) return this.upgrading.tunnelData(chunk);
        // Closing: no new request is read. The body of the one being forwarded still is (an upstream may answer before
        // it has read all of it, e.g. an echo piping the request into the response).
        if (this.closing && !this.parsing?.forwardingBody()) return;
        if (this.state === 'idle' && !this.transition('request-bytes')) return;
        return this.parse(chunk);
    }
  }

  private parse(chunk: Buffer): void {
    let ret: number | ParseError = 0;
    try {
      ret = this.parser.execute(chunk);
    } catch (error) {
      this.internalError(error);
    }
    if (this.state === 'closed') return this.parser.free();
    if (typeof ret === 'number') {
      // The head of an upgrade request ended inside this chunk (llhttp returns the bytes it parsed): the rest is the tunnel's.
      const upgrading = this.upgrading as Exchange | undefined;
      if (upgrading) upgrading.tunnelData(chunk.subarray(ret));
      return;
    }
    this.refused(ret);
  }

  /** A request the parser refused: nothing of it was forwarded. Answered unless a response is in progress. */
  private refused(error: ParseError): void {
    const code = error.code ?? 'HPE_UNKNOWN';
    const status = code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    this.options.onParseError({ code, status, source: this.source });
    const broken = this.parsing;
    this.parsing = undefined;
    // The refused message is the one being forwarded: part of its body is upstream already, so neither connection can
    // carry on (the upstream would wait for the rest until requestTimeout).
    if (broken !== undefined && broken === this.queue[0] && broken.started) return this.destroy();
    this.closing = true;
    if (this.queue.length > 0) {
      this.queue.splice(1).forEach((e) => e.abort());
      return;
    }
    this.end(closingAnswer(status));
  }

  /**
   * The client sent FIN (browsers never half-close an HTTP connection): what it asked and has not been answered is
   * abandoned, as node:http does, so a request waiting on a slow or hung upstream holds no sockets. A tunnel passes the
   * half-close on.
   */
  private onClientEnd(): void {
    this.clientEnded = true;
    const tunnel = this.queue[0]?.openedTunnel;
    if (tunnel) return tunnel.clientEnded();
    // Whatever is in flight, answered or not, is for nobody now: an upstream that stalls mid-response must not hold
    // this socket and its own for ever.
    if (this.queue.length > 0) return this.destroy();
    this.end();
  }

  private start(ex: Exchange): void {
    ex.started = true;
    if (!this.transition(ex.requestComplete || !ex.hasBody ? 'request-started' : 'request-started-with-body')) return;
    try {
      this.options.onRequest(ex.req, ex);
    } catch (error) {
      this.internalError(error);
    }
  }

  write(data: string | Buffer, encoding?: BufferEncoding): void {
    if (this.state === 'closed') return;
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
        if (this.state === 'closed') return;
        if (this.closing) {
          this.queue.forEach((e) => e.abort());
          this.queue = [];
          this.end();
          return;
        }
        const next = this.queue[0];
        if (!next) return this.queueEmpty();
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

  /** Every exchange is answered: close if the client has left, else wait for the next request (or the rest of a body). */
  private queueEmpty(): void {
    if (this.clientEnded) return this.end();
    if (this.transition(this.parsing ? 'queue-empty-body-pending' : 'queue-empty')) this.syncReading();
  }

  /**
   * Reading from the client is paused while a pipelined request waits behind the one in flight, or while the upstream
   * a request body goes to has not drained; it resumes only when neither holds. One place decides, so one reason to
   * resume can never undo another reason to pause (a queued request's body would then pile up without limit).
   */
  syncReading(): void {
    if (this.state === 'closed' || this.state === 'tunnel') return;
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

  /** Called by the sweep: re-check what is in flight, then apply the clock of the current state. */
  check(now: number): void {
    this.recheckInFlight();
    if (this.state === 'closed') return;
    if (this.sendStalled(now)) return;
    switch (this.state) {
      case 'tunnel':
      case 'ending':
        return;
      case 'busy':
        return this.checkUpstreamSilence(now);
      case 'head':
        return this.checkHeadersTimeout(now);
      case 'body':
        if (now - this.stateSince > this.options.requestTimeout) this.destroy();
        return;
      case 'idle':
        if (now - this.stateSince > this.options.keepAliveTimeout) this.destroy();
        return;
    }
  }

  /** An open tunnel, or a forwarded exchange waiting on its upstream (a long poll) or streaming (SSE, a download). */
  private recheckInFlight(): void {
    const tunnel = this.state === 'tunnel' ? this.queue[0]?.openedTunnel : undefined;
    if (tunnel) tunnel.check();
    else if (this.queue[0]?.started) this.queue[0].recheck();
  }

  /**
   * Bytes still waiting to reach the client: a slow reader is not idle, and no other clock runs. It is cut only when
   * nothing moves for SEND_STALL_MS (a client that stopped reading holds no connection for ever). Moving: the queue
   * changed size, or it drained since the last sweep (a steady reader can show the same size at every sweep).
   */
  private sendStalled(now: number): boolean {
    const pending = this.socket.writableLength;
    if (pending > 0) {
      if (pending !== this.lastPending || this.drains !== this.lastDrains) {
        this.lastPending = pending;
        this.lastDrains = this.drains;
        this.lastProgress = now;
      } else if (now - this.lastProgress > SEND_STALL_MS) this.destroy();
      return true;
    }
    this.lastPending = 0;
    this.lastProgress = now;
    return false;
  }

  /**
   * An upstream that has sent nothing for UPSTREAM_SILENCE_MS (hung, or a long poll past any proxy's patience): 502, or
   * the connection closes if part of the response is out.
   */
  private checkUpstreamSilence(now: number): void {
    const current = this.queue[0];
    if (current && now - current.upstreamActivity > UPSTREAM_SILENCE_MS)
      current.giveUp(`the upstream sent nothing for ${UPSTREAM_SILENCE_MS / 1000} s`);
  }

  /** A request head not complete in time: 408 when nothing is in flight, else the connection closes. */
  private checkHeadersTimeout(now: number): void {
    // A source holding over half its connection quota gets a fifth of the header time (slow-header floods).
    const headersTimeout =
      (this.options.sourceLoad?.(this.remoteAddress) ?? 0) > this.options.maxConnectionsPerSource / 2
        ? this.options.headersTimeout / 5
        : this.options.headersTimeout;
    if (now - this.stateSince <= headersTimeout) return;
    if (this.queue.length > 0) return this.destroy();
    this.options.onParseError({ code: 'ERR_HTTP_REQUEST_TIMEOUT', status: 408, source: this.source });
    this.closing = true;
    this.end(closingAnswer(408));
  }

  internalError(error: unknown): void {
    this.options.onInternalError(error);
    this.destroy();
  }

  /**
   * Ends the connection after everything written (and `last`, the gate's own final answer): once flushed ('finish'), a
   * client that never closes its side gets LINGER_MS more; a response the client stops reading is cut by the sweep's
   * stall check, not by a timer that ignores progress.
   */
  private end(last?: string): void {
    if (this.state === 'closed' || this.state === 'ending') return;
    this.closing = true;
    if (!this.transition('end')) return;
    this.socket.once('finish', () => setTimeout(() => this.destroy(), LINGER_MS).unref());
    if (last === undefined) this.socket.end();
    else this.socket.end(last, 'latin1');
  }

  destroy(): void {
    if (this.state === 'closed') return;
    this.transition('destroy');
    this.connections.delete(this);
    for (const ex of this.queue) ex.abort();
    this.queue = [];
    this.parsing = undefined;
    this.socket.destroy();
    this.parser.free();
  }
}
