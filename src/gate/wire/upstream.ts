// The upstream side of the gate's data path: connections to preview servers (a loopback port or a socket file), their
// pool, and the parsing of their responses. Its states and transitions are in states.ts (UpstreamState).
// Invariants:
// - A connection is reused only after a complete request and a complete response that allows keep-alive, with no byte
//   after it and not paused ('completing' → 'pooled' once parser.execute() returns); a failed exchange destroys it.
// - Any byte that belongs to no exchange ('pooled', or after the response in 'completing') means the connection is
//   never handed out again: an upstream that answers twice cannot answer a later exchange.
// - A socket upstream is connected through an O_PATH descriptor of the very inode checked to be a socket (see
//   UpstreamAddress); pooled connections are keyed by that inode, per request.
// - Nothing an upstream sends throws out of this file: malformed HTTP fails the exchange (502 or a closed client).

import { closeSync, constants as fsConstants, fstatSync, openSync } from 'node:fs';
import net, { type Socket } from 'node:net';
import type { UpstreamAddress } from './contract.js';
import type { Exchange } from './exchange.js';
import { GuardedParser, HTTPParser, joinHeaders, type ParseError } from './llhttp.js';
import { nextUpstreamState, type UpstreamEvent, type UpstreamState } from './states.js';

/** Idle connections kept per upstream (LIFO). */
const FREE_PER_UPSTREAM = 64;
/** Shorter than node's default keepAliveTimeout (5 s), so the gate rarely reuses a connection the upstream is closing. */
const UPSTREAM_IDLE_MS = 4_000;
/** Largest response head an upstream may send. */
const UPSTREAM_MAX_HEADER_SIZE = 64 * 1024;

export class UpstreamPool {
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

export class UpstreamConnection {
  readonly socket: Socket;
  private readonly parser: GuardedParser;
  /** The exchange served: set only in the states 'exchange' and 'switched'. */
  exchange: Exchange | undefined;
  state: UpstreamState = 'new';
  idleSince = 0;
  /** The response being parsed is an interim one (1xx, dropped). */
  private interim = false;
  /** The final response allows keep-alive. */
  private keepAlive = false;

  constructor(
    private readonly pool: UpstreamPool,
    readonly key: string,
    target: ResolvedUpstream,
  ) {
    this.socket = net.connect(target.connect);
    // The descriptor is needed until connect(2) has resolved it, never after.
    this.socket.once('connect', target.release).once('close', target.release);
    this.parser = new GuardedParser('response', UPSTREAM_MAX_HEADER_SIZE);
    this.listenToParser();
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('end', () => this.onEnd());
    this.socket.on('error', (error: NodeJS.ErrnoException) =>
      this.fail(`upstream unreachable (${error.code ?? error.message})`),
    );
    this.socket.on('close', () => {
      this.fail('upstream closed the connection');
      this.destroy();
    });
  }

  /**
   * Takes the state machine through `event`. An impossible transition is a bug or an upstream that drove the code
   * somewhere nobody foresaw: the exchange fails (502, or its client connection closes) and this connection closes.
   */
  private transition(event: UpstreamEvent): boolean {
    try {
      this.state = nextUpstreamState(this.state, event);
      return true;
    } catch (error) {
      const ex = this.exchange;
      this.exchange = undefined;
      this.destroy();
      if (ex) ex.conn.internalError(error);
      return false;
    }
  }

  /** `ex` takes this connection (new, or from the pool) and writes its request on it. */
  attach(ex: Exchange): void {
    if (this.transition('attach')) this.exchange = ex;
  }

  private listenToParser(): void {
    const p = this.parser.native;
    p[HTTPParser.kOnHeaders] = (headers: string[]) => this.exchange?.upstreamHeaders.push(...headers);
    // Any byte after a complete response (in the same chunk, or later) begins a message nobody asked for: an upstream
    // that answers twice could otherwise leave a half-parsed response on a pooled connection for the next exchange.
    p[HTTPParser.kOnMessageBegin] = () => {
      if (!this.exchange) this.unasked();
      else this.exchange.upstreamHeaders = []; // trailers of an interim or earlier message are never a head's
    };
    p[HTTPParser.kOnHeadersComplete] = (
      _maj: number,
      _min: number,
      headers: string[] | undefined,
      _m: unknown,
      _u: unknown,
      status: number,
      statusMessage: string,
      upgrade: boolean,
      keepAlive: boolean,
    ): number => this.onHead(headers, status, statusMessage, upgrade, keepAlive);
    p[HTTPParser.kOnBody] = (chunk: Buffer) => (this.exchange ? this.exchange.upstreamBody(chunk) : this.unasked());
    p[HTTPParser.kOnMessageComplete] = () => this.onMessageComplete();
  }

  /** A byte that belongs to no exchange: after a complete response, it marks the connection never to be pooled. */
  private unasked(): void {
    if (this.state === 'completing' || this.state === 'dirty') this.transition('unasked-bytes');
  }

  private onHead(
    headers: string[] | undefined,
    status: number,
    statusMessage: string,
    upgrade: boolean,
    keepAlive: boolean,
  ): number {
    const ex = this.exchange;
    if (!ex) {
      this.unasked();
      return 0;
    }
    const raw = joinHeaders(ex.upstreamHeaders, headers);
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
      // llhttp stops here; the rest of the chunk is the tunnel's (see onData)
      if (!this.transition('switch')) return 0;
    }
    ex.upstreamHead(status, statusMessage ?? '', raw);
    // A HEAD response has no body whatever its Content-Length says: llhttp must not wait for one.
    return ex.req.method === 'HEAD' ? 1 : 0;
  }

  private onMessageComplete(): void {
    if (this.interim) {
      this.interim = false;
      return;
    }
    if (this.state === 'switched') return; // a 101 "completes" at once; the tunnel takes over in onData
    const ex = this.exchange;
    if (!ex) return;
    this.exchange = undefined;
    ex.upstreamComplete(this, this.keepAlive);
  }

  private onData(chunk: Buffer): void {
    const ex = this.exchange;
    if (!ex) return this.destroy(); // bytes nobody asked for: never hand this connection out again
    ex.upstreamActivity = Date.now(); // any byte, a head or a 1xx heartbeat too, is a sign of life
    const client = ex.conn.socket;
    client.cork();
    let ret: number | ParseError = 0;
    try {
      ret = this.parser.execute(chunk);
    } catch (error) {
      this.exchange?.conn.internalError(error);
    } finally {
      client.uncork();
    }
    this.afterParse(chunk, ret);
  }

  /** What a parsed chunk left this connection as: pooled, failed, handed to a tunnel, or still serving. */
  private afterParse(chunk: Buffer, ret: number | ParseError): void {
    switch (this.state) {
      case 'completing':
        // Pooled only now that execute() has returned, and only if nothing followed the response.
        if (typeof ret !== 'number' || !this.usable()) this.destroy();
        else this.release();
        return;
      case 'dirty':
        return this.destroy();
      case 'exchange':
        if (typeof ret !== 'number') this.fail(`upstream answered malformed HTTP (${ret.code ?? ret.message})`);
        break;
      case 'switched':
        if (typeof ret !== 'number') this.fail(`upstream answered malformed HTTP (${ret.code ?? ret.message})`);
        else if (this.exchange) this.handOver(chunk.subarray(ret));
        break;
      default:
        break;
    }
    if (this.state === 'closed') this.parser.free();
  }

  /** After a 101: the socket stops being parsed and passes to the exchange's tunnel with the bytes after the head. */
  private handOver(leftover: Buffer): void {
    const ex = this.exchange!;
    if (!this.transition('hand-over')) return;
    this.exchange = undefined;
    this.socket.removeAllListeners('data');
    this.socket.removeAllListeners('end');
    this.parser.free();
    ex.openTunnel(this, leftover);
  }

  private onEnd(): void {
    // A response without framing ends when the upstream closes; anything else cut short is a failure.
    if (this.exchange && this.state !== 'closed') {
      const ret = this.parser.finish();
      if (ret !== undefined && this.exchange) this.fail(`upstream closed mid-response (${ret.code ?? ret.message})`);
    }
    this.destroy();
    this.parser.free();
  }

  usable(): boolean {
    return (
      (this.state === 'pooled' || this.state === 'completing') &&
      !this.socket.destroyed &&
      this.socket.readyState === 'open'
    );
  }

  /** The exchange's response is complete: pool this connection once the current execute() returns, or close it. */
  completed(reuse: boolean): void {
    // A socket paused for a slow client must flow again before anyone else gets it.
    this.socket.resume();
    if (!reuse) return this.destroy();
    if (!this.transition('response-complete')) return;
    if (!this.parser.executing) this.afterParse(Buffer.alloc(0), 0);
  }

  private release(): void {
    if (this.transition('release')) this.pool.release(this);
  }

  private fail(reason: string): void {
    const ex = this.exchange;
    this.exchange = undefined;
    this.destroy();
    ex?.upstreamFailed(reason);
  }

  destroy(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.exchange = undefined;
    this.pool.forget(this);
    this.socket.destroy();
    this.parser.free();
  }
}
