// The states of the gate's connections and the only transitions between them (ADR 0025). Pure: no sockets, no clocks,
// so the tables are tested on their own (states.test.ts) and every connection class changes state only through them.
// Invariants:
// - Each machine has one table: a (state, event) pair that is not in it is impossible and throws WireStateError. The
//   connection that asked closes (ClientConnection.transition, UpstreamConnection.transition): a state the code did
//   not foresee is never carried on in.
// - 'closed' absorbs every event: sockets report late ('close' after 'error', a parser callback after a destroy), and a
//   late event on a closed connection changes nothing.
// - No transition leaves 'closed', and none returns to a state that serves requests after 'ending' or 'tunnel'.

/**
 * A client connection. The time a state was entered drives the sweep's timeouts, so each state names the clock that
 * runs in it.
 */
export type ClientState =
  /** Reading a request head, from the connection's start or a next request's first byte (headersTimeout). */
  | 'head'
  /** A request body is still to come: the request in flight's, or one answered before its body ended (requestTimeout). */
  | 'body'
  /** The request in flight is read; the gate waits on or streams its response (the upstream silence limit). */
  | 'busy'
  /** Nothing in flight and nothing being parsed (keepAliveTimeout). */
  | 'idle'
  /** A WebSocket tunnel: bytes pass unparsed, each chunk after the policy's check. Only a destroy leaves it. */
  | 'tunnel'
  /** The gate's last answer is written and its FIN sent: flushing, then closed (nothing more is read or served). */
  | 'ending'
  /** Destroyed: both parser and socket are gone; every event is ignored. */
  | 'closed';

export type ClientEvent =
  /** The first byte of a next request arrived while idle. */
  | 'request-bytes'
  /** The exchange at the head of the queue went to the policy, its request fully read. */
  | 'request-started'
  /** … with part of its body still to come. */
  | 'request-started-with-body'
  /** The body of the request in flight is complete. */
  | 'body-complete'
  /** Every queued exchange is answered and no request is being parsed. */
  | 'queue-empty'
  /** Every queued exchange is answered, but the body of a request answered early is still arriving. */
  | 'queue-empty-body-pending'
  /** The upstream switched protocols for the upgrade in flight. */
  | 'tunnel-opened'
  /** The gate ends the connection after its last answer (Connection: close, a refusal, a client that half-closed). */
  | 'end'
  /** The connection is torn down at once (an error, a cut, the client gone, a timeout). */
  | 'destroy';

const SERVING = {
  'request-started': 'busy',
  'request-started-with-body': 'body',
  end: 'ending',
  destroy: 'closed',
} as const satisfies Partial<Record<ClientEvent, ClientState>>;

// Why each source state is allowed: 'idle' and 'head' start the request whose head just completed (several pipelined
// requests can be answered inside one read, so the next one can start from 'idle'); 'busy' and 'body' start the next
// queued request when the one in flight is answered.
const CLIENT: Readonly<Record<ClientState, Readonly<Partial<Record<ClientEvent, ClientState>>>>> = {
  idle: { ...SERVING, 'request-bytes': 'head' },
  head: SERVING,
  body: { ...SERVING, 'body-complete': 'busy', 'queue-empty': 'idle', 'queue-empty-body-pending': 'body' },
  busy: { ...SERVING, 'queue-empty': 'idle', 'queue-empty-body-pending': 'body', 'tunnel-opened': 'tunnel' },
  tunnel: { destroy: 'closed' },
  ending: { end: 'ending', destroy: 'closed' },
  closed: {},
};

/**
 * The upstream side: one connection from the gate to a preview's server. It serves one exchange at a time and goes back
 * to the pool only between complete messages.
 */
export type UpstreamState =
  /** Connecting, not yet given an exchange. */
  | 'new'
  /** Serving one exchange: its request goes up, its response is parsed. */
  | 'exchange'
  /** The response completed inside parser.execute(): pooled when execute() returns, unless more bytes followed. */
  | 'completing'
  /** A byte after the complete response started a message nobody asked for: never pooled, closed after execute(). */
  | 'dirty'
  /** Idle in the pool, no exchange: any byte from the upstream now closes it. */
  | 'pooled'
  /** The upstream answered 101 to a tunnel's request: what follows is not HTTP. */
  | 'switched'
  /** Handed to a tunnel (bytes pass unparsed); the tunnel closes it. */
  | 'tunnel'
  | 'closed';

export type UpstreamEvent =
  /** An exchange takes the connection (a new one, or one from the pool). */
  | 'attach'
  /** The exchange's response is complete and reusable, inside parser.execute(). */
  | 'response-complete'
  /** Bytes arrived that belong to no exchange. */
  | 'unasked-bytes'
  /** Back to the pool. */
  | 'release'
  /** A 101 to a tunnel's upgrade. */
  | 'switch'
  /** The 101's chunk is parsed: the socket goes to the tunnel. */
  | 'hand-over'
  | 'destroy';

const UPSTREAM: Readonly<Record<UpstreamState, Readonly<Partial<Record<UpstreamEvent, UpstreamState>>>>> = {
  new: { attach: 'exchange', destroy: 'closed' },
  exchange: { 'response-complete': 'completing', release: 'pooled', switch: 'switched', destroy: 'closed' },
  completing: { 'unasked-bytes': 'dirty', release: 'pooled', destroy: 'closed' },
  dirty: { 'unasked-bytes': 'dirty', destroy: 'closed' },
  pooled: { attach: 'exchange', destroy: 'closed' },
  switched: { 'hand-over': 'tunnel', destroy: 'closed' },
  tunnel: { destroy: 'closed' },
  closed: {},
};

/** A WebSocket tunnel, once the upstream's 101 has gone to the client. */
export type TunnelState =
  /** Bytes pass both ways, each chunk after the policy's check. */
  | 'open'
  /** The client sent FIN, passed on upstream: the upstream has a grace period to close its side. */
  | 'client-ended'
  | 'closed';

export type TunnelEvent = 'client-end' | 'close';

const TUNNEL: Readonly<Record<TunnelState, Readonly<Partial<Record<TunnelEvent, TunnelState>>>>> = {
  open: { 'client-end': 'client-ended', close: 'closed' },
  'client-ended': { close: 'closed' },
  closed: {},
};

/** A (state, event) pair no table allows: a bug, or a peer that drove the code somewhere nobody foresaw. */
export class WireStateError extends Error {
  constructor(
    readonly machine: 'client' | 'upstream' | 'tunnel',
    readonly state: string,
    readonly event: string,
  ) {
    super(`impossible ${machine} connection transition: '${event}' in state '${state}'`);
    this.name = 'WireStateError';
  }
}

function next<S extends string, E extends string>(
  machine: WireStateError['machine'],
  table: Readonly<Record<S, Readonly<Partial<Record<E, S>>>>>,
  closed: S,
  state: S,
  event: E,
): S {
  if (state === closed) return closed;
  const to = table[state][event];
  if (to === undefined) throw new WireStateError(machine, state, event);
  return to;
}

/** The client connection's state after `event` in `state`; throws WireStateError when the pair is impossible. */
export function nextClientState(state: ClientState, event: ClientEvent): ClientState {
  return next('client', CLIENT, 'closed', state, event);
}

/** The upstream connection's state after `event` in `state`; throws WireStateError when the pair is impossible. */
export function nextUpstreamState(state: UpstreamState, event: UpstreamEvent): UpstreamState {
  return next('upstream', UPSTREAM, 'closed', state, event);
}

/** The tunnel's state after `event` in `state`; throws WireStateError when the pair is impossible. */
export function nextTunnelState(state: TunnelState, event: TunnelEvent): TunnelState {
  return next('tunnel', TUNNEL, 'closed', state, event);
}

/** Every state of each machine, for tests and the ADR's tables. */
export const CLIENT_TRANSITIONS = CLIENT;
export const UPSTREAM_TRANSITIONS = UPSTREAM;
export const TUNNEL_TRANSITIONS = TUNNEL;
