// The state tables of the gate's data path on their own: every impossible pair throws, 'closed' absorbs everything,
// nothing leaves 'closed', and no state after the last answer ('ending') or a tunnel leads back to serving requests.
import { describe, expect, it } from 'vitest';
import {
  CLIENT_TRANSITIONS,
  TUNNEL_TRANSITIONS,
  UPSTREAM_TRANSITIONS,
  WireStateError,
  nextClientState,
  nextTunnelState,
  nextUpstreamState,
  type ClientEvent,
  type ClientState,
  type UpstreamEvent,
} from './states.js';

const CLIENT_EVENTS: ClientEvent[] = [
  'request-bytes',
  'request-started',
  'request-started-with-body',
  'body-complete',
  'queue-empty',
  'queue-empty-body-pending',
  'tunnel-opened',
  'end',
  'destroy',
];
const UPSTREAM_EVENTS: UpstreamEvent[] = [
  'attach',
  'response-complete',
  'unasked-bytes',
  'release',
  'switch',
  'hand-over',
  'destroy',
];

/** Every state reachable from `from` in `table`. */
function reachable(
  table: Readonly<Record<string, Readonly<Record<string, string | undefined>>>>,
  from: string,
): Set<string> {
  const seen = new Set([from]);
  const todo = [from];
  while (todo.length > 0) {
    for (const to of Object.values(table[todo.pop()!]!)) {
      if (to !== undefined && !seen.has(to)) {
        seen.add(to);
        todo.push(to);
      }
    }
  }
  return seen;
}

describe('client connection states', () => {
  it('an impossible transition throws a WireStateError naming the state and the event', () => {
    const impossible: Array<[ClientState, ClientEvent]> = [
      ['idle', 'tunnel-opened'], // only a request in flight can switch protocols
      ['head', 'body-complete'], // no request has started
      ['busy', 'request-bytes'], // a next request's bytes while one is in flight do not restart the header clock
      ['tunnel', 'request-started'], // a tunnel never serves another request
      ['tunnel', 'end'],
      ['ending', 'request-started'], // nothing after the gate's last answer is served
      ['ending', 'request-bytes'],
      ['ending', 'queue-empty'],
    ];
    for (const [state, event] of impossible) {
      let thrown: unknown;
      try {
        nextClientState(state, event);
      } catch (error) {
        thrown = error;
      }
      expect(thrown, `${event} in ${state}`).toBeInstanceOf(WireStateError);
      expect((thrown as WireStateError).message).toContain(`'${event}' in state '${state}'`);
    }
  });

  it('the path of a keep-alive connection: head → busy → idle → head → body → busy → ending → closed', () => {
    const events: ClientEvent[] = [
      'request-started',
      'queue-empty',
      'request-bytes',
      'request-started-with-body',
      'body-complete',
      'end',
      'destroy',
    ];
    const seen: ClientState[] = ['head'];
    for (const e of events) seen.push(nextClientState(seen.at(-1)!, e));
    expect(seen).toEqual(['head', 'busy', 'idle', 'head', 'body', 'busy', 'ending', 'closed']);
  });

  it("'closed' absorbs every event, and no event leaves it", () => {
    for (const e of CLIENT_EVENTS) expect(nextClientState('closed', e)).toBe('closed');
    expect(reachable(CLIENT_TRANSITIONS, 'closed')).toEqual(new Set(['closed']));
  });

  it("after the last answer ('ending') or a tunnel, no request is ever served again", () => {
    expect(reachable(CLIENT_TRANSITIONS, 'ending')).toEqual(new Set(['ending', 'closed']));
    expect(reachable(CLIENT_TRANSITIONS, 'tunnel')).toEqual(new Set(['tunnel', 'closed']));
  });

  it('every state is reachable from a new connection, and every live state can be destroyed', () => {
    expect(reachable(CLIENT_TRANSITIONS, 'head')).toEqual(new Set(Object.keys(CLIENT_TRANSITIONS)));
    for (const s of Object.keys(CLIENT_TRANSITIONS) as ClientState[])
      expect(nextClientState(s, 'destroy')).toBe('closed');
  });
});

describe('upstream connection states', () => {
  it('a connection serving an exchange cannot be taken by another, nor pooled twice, nor switched from the pool', () => {
    expect(() => nextUpstreamState('exchange', 'attach')).toThrow(WireStateError);
    expect(() => nextUpstreamState('pooled', 'release')).toThrow(WireStateError);
    expect(() => nextUpstreamState('pooled', 'switch')).toThrow(WireStateError);
    expect(() => nextUpstreamState('pooled', 'response-complete')).toThrow(WireStateError);
  });

  it('a connection with bytes nobody asked for, or handed to a tunnel, never returns to the pool', () => {
    expect(reachable(UPSTREAM_TRANSITIONS, 'dirty')).toEqual(new Set(['dirty', 'closed']));
    expect(reachable(UPSTREAM_TRANSITIONS, 'switched')).toEqual(new Set(['switched', 'tunnel', 'closed']));
    expect(() => nextUpstreamState('dirty', 'release')).toThrow(WireStateError);
    expect(() => nextUpstreamState('tunnel', 'attach')).toThrow(WireStateError);
  });

  it('the path of a pooled connection: new → exchange → completing → pooled → exchange', () => {
    let s = nextUpstreamState('new', 'attach');
    s = nextUpstreamState(s, 'response-complete');
    s = nextUpstreamState(s, 'release');
    expect(s).toBe('pooled');
    expect(nextUpstreamState(s, 'attach')).toBe('exchange');
  });

  it("'closed' absorbs every event; every state is reachable from a new connection", () => {
    for (const e of UPSTREAM_EVENTS) expect(nextUpstreamState('closed', e)).toBe('closed');
    expect(reachable(UPSTREAM_TRANSITIONS, 'new')).toEqual(new Set(Object.keys(UPSTREAM_TRANSITIONS)));
  });
});

describe('tunnel states', () => {
  it('a second FIN from the client is impossible; close is final', () => {
    expect(nextTunnelState('open', 'client-end')).toBe('client-ended');
    expect(() => nextTunnelState('client-ended', 'client-end')).toThrow(WireStateError);
    expect(nextTunnelState('closed', 'client-end')).toBe('closed');
    expect(reachable(TUNNEL_TRANSITIONS, 'open')).toEqual(new Set(['open', 'client-ended', 'closed']));
  });
});
