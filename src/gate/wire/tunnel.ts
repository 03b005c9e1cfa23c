// A WebSocket tunnel: after the upstream's 101 to an upgrade the policy allowed, bytes pass unparsed both ways, each
// chunk only after the policy's check (ADR 0012). Its states are in states.ts (TunnelState).
// Invariants:
// - Before every chunk, in either direction, hooks.check() runs against the route table as it is now; a refusal (or a
//   check that throws) destroys both sockets and reports the reason as the cut.
// - Backpressure both ways: a side whose write reports a full buffer pauses the other until it drains.
// - A client FIN is passed on; an upstream that keeps its side open after it has TUNNEL_CLOSE_GRACE_MS to close.
// - The upstream's last bytes still reach a slow client before the client connection closes.

import type { Socket } from 'node:net';
import type { TunnelHooks } from './contract.js';
import { nextTunnelState, type TunnelEvent, type TunnelState } from './states.js';

/** After a tunnel's client closes its side, how long the upstream has to close its own. */
const TUNNEL_CLOSE_GRACE_MS = 5_000;

/** The two ends a tunnel joins, and what it tells when it ends. */
export interface TunnelEnds {
  client: Socket;
  upstream: Socket;
  hooks: TunnelHooks;
  /** Ends the exchange and tears down the client connection and the upstream connection (idempotent). */
  teardown(): void;
}

export class Tunnel {
  state: TunnelState = 'open';
  private bytesFromClient = 0;
  private bytesFromUpstream = 0;

  constructor(private readonly ends: TunnelEnds) {}

  /** Starts passing bytes: first the upstream's bytes after its 101 (`leftover`), then what the client sent early. */
  open(leftover: Buffer, early: Buffer[]): void {
    const { client, upstream } = this.ends;
    upstream.on('data', (chunk: Buffer) => {
      this.bytesFromUpstream += chunk.length;
      this.pass(chunk, client, upstream);
    });
    // The upstream's last bytes still reach a slow client: its end is passed on after them, and the client connection
    // closes once they are flushed (or the sweep's stall limit cuts a client that stopped reading).
    upstream.on('end', () => client.end());
    upstream.on('close', () => {
      if (client.writableLength === 0) this.close();
      else {
        client.end();
        client.once('finish', () => this.close());
      }
    });
    if (leftover.length > 0) {
      this.bytesFromUpstream += leftover.length;
      if (!this.pass(leftover, client, upstream)) return;
    }
    for (const chunk of early) {
      this.bytesFromClient += chunk.length;
      if (!this.pass(chunk, upstream, client)) return;
    }
  }

  fromClient(chunk: Buffer): void {
    this.bytesFromClient += chunk.length;
    this.pass(chunk, this.ends.upstream, this.ends.client);
  }

  /** The sweep's check while the tunnel is idle: a refusal closes it. */
  check(): void {
    const reason = this.refusal();
    if (reason) this.close(reason);
  }

  /** The client sent FIN: passed on; an upstream that keeps its side open after that does not hold both sockets. */
  clientEnded(): void {
    if (!this.transition('client-end')) return;
    this.ends.upstream.end();
    setTimeout(() => this.close(), TUNNEL_CLOSE_GRACE_MS).unref();
  }

  /** Ends the tunnel (once): both sockets are destroyed, and `cut` is the check's reason when the gate closed it. */
  close(cut?: string): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.ends.teardown();
    this.ends.hooks.closed({
      ...(cut ? { cut } : {}),
      bytesFromClient: this.bytesFromClient,
      bytesFromUpstream: this.bytesFromUpstream,
    });
  }

  private transition(event: TunnelEvent): boolean {
    try {
      this.state = nextTunnelState(this.state, event);
      return this.state !== 'closed';
    } catch (error) {
      this.close(`impossible tunnel state (${(error as Error).message})`);
      return false;
    }
  }

  /** Why the tunnel must close now (the policy's check), or undefined. */
  private refusal(): string | undefined {
    try {
      return this.ends.hooks.check();
    } catch (error) {
      return `check failed (${(error as Error).message})`;
    }
  }

  /** Passes one chunk after the check; false when the check refused it (the tunnel is closed then). */
  private pass(chunk: Buffer, to: Socket, from: Socket): boolean {
    const reason = this.refusal();
    if (reason) {
      this.close(reason);
      return false;
    }
    if (!to.write(chunk)) {
      from.pause();
      to.once('drain', () => from.resume());
    }
    return true;
  }
}
