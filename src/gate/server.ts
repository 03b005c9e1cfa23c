// The gate server: a reverse proxy in front of previews that listen only on loopback ports or unix sockets. This file
// is the policy; the HTTP/1.1 mechanics (llhttp framing, pipelining, timeouts, the upstream pool) are wire.ts. One route per applied preview (routes.ts), reached at `/p/<workload>/<preview>/` by people holding a live
// grant (grants.ts); every grant exchange, allowed and denied request goes to the audit log (audit.ts).
// Invariants:
// - A request reaches an upstream only after: its target passed parseRequestTarget, its route exists in the table as
//   read for THIS request, and its session cookie maps to a grant for THIS preview that is neither expired nor revoked
//   (a stat of the revocation marker per request) and whose identity is still a grantee. Every denial is answered by
//   the gate itself (400/401/403/404/405) and never opens a connection upstream.
// - The upstream address comes from the route table only: 127.0.0.1:<port> or a socket file in the workload's socket
//   directory. The Host header, an absolute-form target or CONNECT never select one (CONNECT is refused).
// - A WebSocket upgrade passes the same checks as a request, plus a same-origin check, and its tunnel is checked again
//   (expiry, maxTtl, revocation stat, grantee, route) before every chunk either way and every second while idle: a
//   revocation cuts it before the next message. Other upgrades are refused (501).
// - llhttp in strict mode enforces HTTP framing (conflicting Content-Length/Transfer-Encoding, oversized headers, invalid
//   characters) in both directions, and wire.ts re-frames every body (see its invariants).
// - The gate's own cookies never reach an upstream, and an upstream cannot set, overwrite or clear them.
// - Nothing a client or an upstream sends ends the process: a response head with a malformed status line, header name
//   or value is a 502, an unexpected exception in a request is an audited 500.

import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { lstatSync, mkdirSync, statSync } from 'node:fs';
import type { GateAccess } from '../state/audit-log.js';
import { auditGateEvent, GATE_OPERATION, gateEntry, RequestAuditLog } from './audit.js';
import { parseDuration } from './duration.js';
import { GrantStore, SECRET_PATTERN, sha256Hex, type GrantRecord } from './grants.js';
import { baseUrl, writeListenerRecord } from './listener.js';
import { gatePaths, type GatePaths } from './paths.js';
import { auditPath, parseRequestTarget } from './request-target.js';
import { readRouteTable, routeKey, type GateRoute, type RouteTable } from './routes.js';
import { createWireServer, rawHeader, reasonPhrase, type ResponseDecision, type UpstreamAddress, type WireRequest, type WireResponder } from './wire.js';

export interface GateServerOptions {
  root: string;
  /** Host name for audit records. */
  host: string;
  address: string;
  /** 0 picks a free port (tests). */
  port: number;
  /** PEM certificate and key; absent: plain HTTP (loopback only, checked by the caller). */
  tls?: { cert: Buffer; key: Buffer };
  /** The origin people use behind a TLS-terminating proxy (already normalised by publicOrigin). */
  publicUrl?: string;
  /** Request head cap in bytes (431 above it). Default 16 KiB. */
  maxHeaderSize?: number;
  /** How often expired grants are audited and pruned. Default 1 s. */
  sweepIntervalMs?: number;
  /** Group-commit interval of request audit records. Default 100 ms. */
  auditIntervalMs?: number;
  /** Problems the server survives (an unreadable route table, an audit write that failed). */
  onWarning?: (message: string) => void;
}

export interface GateServer {
  address: string;
  port: number;
  tls: boolean;
  url: string;
  /** Stops accepting, flushes the audit buffer, closes upstream connections. */
  close(): Promise<void>;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-authenticate']);
/** Request headers that never go upstream as sent: framing is wire.ts's, Expect is answered by the gate. */
const REQUEST_DROPPED = new Set(['host', 'cookie', 'forwarded', 'content-length', 'expect']);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** RFC 9110 field-value characters: HTAB, SP, VCHAR, obs-text (no CR, LF, NUL or other controls). */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const CRLF = '\r\n';
export const COOKIE_PREFIX = 'agentvm_gate_';
/** Client-chosen "real address" headers some applications trust: the gate's X-Forwarded-For is the only one forwarded. */
const CLIENT_ADDRESS_HEADERS = new Set(['x-real-ip', 'true-client-ip', 'x-client-ip', 'cf-connecting-ip']);

export function cookieName(workload: string, preview: string): string {
  return `${COOKIE_PREFIX}${workload}_${preview}`;
}

/** Re-reads routes.json when its (inode, mtime, size) changes: one stat per request, no restart. */
class RouteCache {
  private stamp = '';
  private table: RouteTable = { version: 1, host: null, routes: {} };
  constructor(private readonly file: string, private readonly onChange: () => void, private readonly warn: (m: string) => void) {}

  current(): RouteTable {
    const st = statSync(this.file, { throwIfNoEntry: false });
    const stamp = st ? `${st.ino}:${st.mtimeMs}:${st.size}` : 'absent';
    if (stamp !== this.stamp) {
      try {
        this.table = readRouteTable(this.file);
      } catch (error) {
        // Fail closed: an unreadable table routes nothing.
        this.table = { version: 1, host: null, routes: {} };
        this.warn(`route table unreadable, serving no routes: ${(error as Error).message}`);
      }
      this.stamp = stamp;
      this.onChange();
    }
    return this.table;
  }
}

/**
 * Token and session hashes → grants, rebuilt from the store when a lookup misses and the grants directory changed.
 * A directory mtime close to the last scan is not trusted (timestamps are coarse): a miss then rescans as well.
 */
class GrantIndex {
  private byToken = new Map<string, GrantRecord>();
  private bySession = new Map<string, GrantRecord>();
  /** Session id → grant, for sessions seen since the last rebuild: saves a sha256 per request. Held in memory only. */
  private sessions = new Map<string, GrantRecord>();
  private stamp = '';
  private scannedAt = 0;
  constructor(private readonly store: GrantStore) {}

  invalidate(): void {
    this.stamp = '';
  }

  private refreshIfChanged(): void {
    const st = statSync(this.store.dir, { throwIfNoEntry: false });
    const stamp = st ? `${st.ino}:${st.mtimeMs}` : 'absent';
    const ambiguous = st !== undefined && this.scannedAt - st.mtimeMs < 50;
    if (stamp === this.stamp && !ambiguous) return;
    const byToken = new Map<string, GrantRecord>();
    const bySession = new Map<string, GrantRecord>();
    for (const g of this.store.all()) {
      byToken.set(g.tokenSha256, g);
      if (g.sessionSha256) bySession.set(g.sessionSha256, g);
    }
    this.byToken = byToken;
    this.bySession = bySession;
    this.sessions = new Map();
    this.stamp = stamp;
    this.scannedAt = Date.now();
  }

  byTokenHash(hash: string): GrantRecord | undefined {
    if (this.stamp === '') this.refreshIfChanged();
    return this.byToken.get(hash) ?? (this.refreshIfChanged(), this.byToken.get(hash));
  }

  bySessionHash(hash: string): GrantRecord | undefined {
    if (this.stamp === '') this.refreshIfChanged();
    return this.bySession.get(hash) ?? (this.refreshIfChanged(), this.bySession.get(hash));
  }

  /** The grant of a session id (a well-formed secret), through the cache; a rebuild of the index empties the cache. */
  bySessionId(session: string): GrantRecord | undefined {
    if (this.stamp === '') this.refreshIfChanged();
    const cached = this.sessions.get(session);
    if (cached) return cached;
    const found = this.bySessionHash(sha256Hex(session));
    if (found) {
      if (this.sessions.size >= MAX_CACHED_SESSIONS) this.sessions.clear();
      this.sessions.set(session, found);
    }
    return found;
  }

  addSession(hash: string, grant: GrantRecord): void {
    this.bySession.set(hash, grant);
  }
}

const MAX_CACHED_SESSIONS = 10_000;

/** Parsed times and durations of grants and routes, which a request checks every time (a handful of distinct strings). */
const parsedTimes = new Map<string, number>();
function timeMs(iso: string): number {
  let ms = parsedTimes.get(iso);
  if (ms === undefined) {
    if (parsedTimes.size >= MAX_CACHED_SESSIONS) parsedTimes.clear();
    parsedTimes.set(iso, (ms = Date.parse(iso)));
  }
  return ms;
}
const parsedDurations = new Map<string, number | undefined>();
function durationMs(text: string): number | undefined {
  if (!parsedDurations.has(text)) parsedDurations.set(text, parseDuration(text));
  return parsedDurations.get(text);
}

interface Denial {
  status: number;
  reason: string;
  grant?: GrantRecord;
}

export async function startGateServer(options: GateServerOptions): Promise<GateServer> {
  const paths: GatePaths = gatePaths(options.root);
  const warn = options.onWarning ?? (() => {});
  const store = new GrantStore(paths.grants);
  const grants = new GrantIndex(store);
  const routes = new RouteCache(paths.routes, () => grants.invalidate(), warn);
  const tls = options.tls !== undefined;
  const publicUrl = options.publicUrl;
  /** What the browser sees: HTTPS when the gate serves TLS or sits behind an https proxy (Secure cookies, X-Forwarded-Proto). */
  const https = tls || (publicUrl?.startsWith('https:') ?? false);
  const requestLog = new RequestAuditLog({ file: paths.audit, ...(options.auditIntervalMs ? { intervalMs: options.auditIntervalMs } : {}), onError: (e) => warn(`audit write failed: ${(e as Error).message}`) });
  const host = options.host;
  /** `address:port` the server listens on (set once listening): the X-Forwarded-Host upstreams see. */
  let listenerHost = '';

  const audit = (req: WireRequest, key: string | undefined, status: number, grant: GrantRecord | undefined, reason?: string): void => {
    // Field order and optional fields as buildRecord copies them; built once per request, no spreads.
    const access: GateAccess = { preview: key ?? 'unknown/unknown' };
    if (grant) {
      access.grantId = grant.id;
      access.identity = grant.identity;
    }
    access.source = req.source;
    access.method = req.method.length > 20 ? req.method.slice(0, 20) : req.method;
    access.path = auditPath(req.url);
    access.status = status;
    if (reason) access.reason = reason.length > 500 ? reason.slice(0, 500) : reason;
    requestLog.add({ host, operation: GATE_OPERATION, event: 'gate.request', result: status < 400 ? 'ok' : 'failed', gate: access, actor: grant ? grant.identity : 'anonymous', time: new Date() });
  };

  const deny = (req: WireRequest, res: WireResponder, key: string | undefined, d: Denial, extra = '', close = false): void => {
    audit(req, key, d.status, d.grant, d.reason);
    const body = `${d.status} ${reasonPhrase(d.status)}: ${d.reason}\n`;
    res.respond(d.status, reasonPhrase(d.status), `content-type: text/plain; charset=utf-8${CRLF}cache-control: no-store${CRLF}${extra}`, body, { close });
  };

  /** Why this grant may not be used for `route` now, or undefined when it may. */
  const refusal = (grant: GrantRecord, route: GateRoute, key: string): Denial | undefined => {
    if (routeKey(grant.workload, grant.preview) !== key) return { status: 403, reason: `grant ${grant.id} is for another preview`, grant };
    const now = Date.now();
    if (timeMs(grant.expires) <= now) return { status: 403, reason: `grant ${grant.id} expired`, grant };
    // A later apply may lower the route's maxTtl: a grant made under the old one is cut to the new one.
    const maxTtl = durationMs(route.maxTtl);
    if (maxTtl === undefined || timeMs(grant.created) + maxTtl <= now) return { status: 403, reason: `grant ${grant.id}: grant outlives the preview's maxTtl (${route.maxTtl})`, grant };
    if (store.isRevoked(grant.id)) return { status: 403, reason: `grant ${grant.id} was revoked`, grant };
    if (!route.grantees.includes(grant.identity)) return { status: 403, reason: `${grant.identity} is no longer a grantee of ${key}`, grant };
    return undefined;
  };

  // No request may end the process: an unexpected exception (an fs error in a grant marker, a stat that failed) is a
  // 500 answered by the gate, and audited.
  const handle = (req: WireRequest, res: WireResponder): void => {
    try {
      dispatch(req, res);
    } catch (error) {
      const reason = `gate error (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`;
      warn(`request failed: ${(error as Error).stack ?? String(error)}`);
      try {
        if (!res.responseStarted) deny(req, res, undefined, { status: 500, reason });
        else {
          audit(req, undefined, 500, undefined, reason);
          res.destroyConnection();
        }
      } catch {
        res.destroyConnection();
      }
    }
  };

  const dispatch = (req: WireRequest, res: WireResponder): void => {
    // CONNECT tunnels anywhere. Of the upgrades, only a WebSocket GET is tunnelled (checked per chunk, see tunnel()).
    if (req.method === 'CONNECT') return deny(req, res, undefined, { status: 405, reason: 'CONNECT is not allowed' }, '', true);
    if (req.upgrade && (req.method !== 'GET' || (rawHeader(req.rawHeaders, 'upgrade') ?? '').trim().toLowerCase() !== 'websocket')) {
      return deny(req, res, undefined, { status: 501, reason: 'only WebSocket upgrades are supported' }, '', true);
    }
    const target = parseRequestTarget(req.url);
    if (!target.ok) {
      if (target.status === 308 && target.location) {
        audit(req, undefined, 308, undefined, target.reason);
        res.respond(308, reasonPhrase(308), `location: ${target.location}${CRLF}cache-control: no-store${CRLF}`, '');
        return;
      }
      deny(req, res, undefined, { status: target.status, reason: target.reason });
      return;
    }
    const key = routeKey(target.workload, target.preview);
    const route = routes.current().routes[key];
    if (!route) {
      deny(req, res, key, { status: 404, reason: 'no such preview route' });
      return;
    }
    const name = cookieName(target.workload, target.preview);
    if (req.upgrade) {
      if (target.grant !== undefined) return deny(req, res, key, { status: 400, reason: 'a grant link cannot open a WebSocket' }, '', true);
      // A body on a handshake would reach the upstream unframed, as a request of its own (smuggling): refused.
      const length = rawHeader(req.rawHeaders, 'content-length');
      if (rawHeader(req.rawHeaders, 'transfer-encoding') !== undefined || (length !== undefined && length.trim() !== '0')) {
        return deny(req, res, key, { status: 400, reason: 'a WebSocket handshake cannot carry a body' }, '', true);
      }
      // Cross-site WebSocket hijacking: a browser always sends Origin on a WebSocket handshake; it must be the gate's own.
      // Through a proxy that is the public origin; directly, this listener's scheme and the Host the browser used.
      const origin = rawHeader(req.rawHeaders, 'origin')?.toLowerCase();
      if (origin !== undefined && origin !== publicUrl && origin !== `${tls ? 'https' : 'http'}://${(rawHeader(req.rawHeaders, 'host') ?? '').toLowerCase()}`) {
        return deny(req, res, key, { status: 403, reason: 'cross-origin WebSocket refused' }, '', true);
      }
    }
    if (target.grant !== undefined) {
      exchange(req, res, route, key, name, target.grant, target.rest, target.query);
      return;
    }
    const sessions = cookieValues(req.rawHeaders, name);
    if (sessions.length === 0) {
      deny(req, res, key, { status: 401, reason: 'no session: follow a grant link' });
      return;
    }
    // Several cookies can carry this route's name (one planted by another preview of the same origin): the one whose
    // grant is for THIS preview wins; another known session is kept only to explain the refusal.
    let grant: GrantRecord | undefined;
    for (const s of sessions) {
      if (!SECRET_PATTERN.test(s)) continue;
      const found = grants.bySessionId(s);
      if (!found) continue;
      grant ??= found;
      if (routeKey(found.workload, found.preview) === key) {
        grant = found;
        break;
      }
    }
    if (!grant) {
      deny(req, res, key, { status: 401, reason: 'unknown session' });
      return;
    }
    const refused = refusal(grant, route, key);
    if (refused) {
      deny(req, res, key, refused, '', req.upgrade);
      return;
    }
    if (req.upgrade) tunnel(req, res, route, key, grant, target.rest, target.query);
    else proxy(req, res, route, key, grant, target.rest, target.query);
  };

  const exchange = (req: WireRequest, res: WireResponder, route: GateRoute, key: string, name: string, token: string, rest: string, query: string): void => {
    if (!SECRET_PATTERN.test(token)) {
      deny(req, res, key, { status: 401, reason: 'malformed grant token' });
      return;
    }
    const grant = grants.byTokenHash(sha256Hex(token));
    if (!grant) {
      deny(req, res, key, { status: 401, reason: 'unknown grant token' });
      return;
    }
    const refused = refusal(grant, route, key);
    if (refused) {
      deny(req, res, key, refused);
      return;
    }
    const session = randomBytes(32).toString('base64url');
    const sessionHash = sha256Hex(session);
    if (!store.markUsed(grant.id, sessionHash)) {
      deny(req, res, key, { status: 403, reason: `the one-time link of grant ${grant.id} was already used`, grant });
      return;
    }
    grants.addSession(sessionHash, grant);
    const maxAge = Math.max(1, Math.floor((Date.parse(grant.expires) - Date.now()) / 1000));
    const cookie = `${name}=${session}; Path=/p/${route.workload}/${route.preview}/; Max-Age=${maxAge}; HttpOnly; SameSite=Strict${https ? '; Secure' : ''}`;
    const location = `/p/${route.workload}/${route.preview}${rest}${query ? `?${query}` : ''}`;
    auditGateEvent(paths.audit, gateEntry(host, 'gate.exchange', 'ok', { preview: key, grantId: grant.id, identity: grant.identity, source: req.source, expires: grant.expires, reason: 'one-time link exchanged for a session' }, { actor: grant.identity }));
    audit(req, key, 200, grant, 'one-time link exchanged for a session');
    // Not a redirect: a link clicked on another site starts a cross-site navigation, and a browser sends no
    // SameSite=Strict cookie on the redirected request of that chain (401, and the one-time link is spent). This page
    // navigates from the gate's own origin, a same-site navigation that carries the cookie. `location` holds only
    // route names and RFC 3986 characters checked by parseRequestTarget; it is escaped for HTML all the same.
    const href = escapeHtml(location);
    const body = `<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=${href}"><title>agentvm preview</title><p><a href="${href}">Open the preview</a></p>\n`;
    const headers = `content-type: text/html; charset=utf-8${CRLF}set-cookie: ${cookie}${CRLF}cache-control: no-store${CRLF}referrer-policy: no-referrer${CRLF}content-security-policy: default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'${CRLF}x-content-type-options: nosniff${CRLF}`;
    res.respond(200, 'OK', headers, body);
  };

  /** Where the route's upstream is, or undefined when its socket file is not a real socket (answered 502). */
  const upstreamOf = (req: WireRequest, res: WireResponder, route: GateRoute, key: string, grant: GrantRecord): UpstreamAddress | undefined => {
    if ('port' in route.upstream) return { port: route.upstream.port };
    // connect() follows symlinks: a link in the socket directory (or the directory itself a link) would reach another
    // workload's upstream, or any socket the gate's user can open. Only a real directory holding a real socket goes.
    const dir = paths.socketDir(route.workload);
    const socketPath = path.join(dir, route.upstream.socket);
    const dirStat = lstatSync(dir, { throwIfNoEntry: false });
    const socketStat = dirStat?.isDirectory() ? lstatSync(socketPath, { throwIfNoEntry: false }) : undefined;
    if (!socketStat?.isSocket()) {
      deny(req, res, key, { status: 502, reason: 'upstream socket is not a socket file', grant }, '', req.upgrade);
      return undefined;
    }
    return { socketPath };
  };

  /** Why a tunnel may not open or go on now: a request's checks against the route table as it is now (a removed route
   *  cuts it too), or undefined. */
  const tunnelRefusal = (key: string, grant: GrantRecord): string | undefined => {
    const current = routes.current().routes[key];
    if (!current) return 'the preview route was removed';
    return refusal(grant, current, key)?.reason;
  };

  /** The response hook shared by requests and tunnels: `switching` allows the 101 of a WebSocket handshake. */
  const answer = (req: WireRequest, key: string, grant: GrantRecord, switching: boolean) => (status: number, statusMessage: string, raw: string[]): ResponseDecision => {
    // The upstream is not trusted to speak valid HTTP: its reason phrase is never forwarded, a status outside
    // 200–599 (101 for a tunnel) or a malformed reason phrase is a 502, and so is any malformed header name or value.
    if (!((status >= 200 && status <= 599) || (switching && status === 101)) || !FIELD_VALUE.test(statusMessage)) return { refuse: `upstream answered an invalid status line (${status})` };
    const headers = responseHeaders(raw);
    if (headers === undefined) return { refuse: 'upstream response not forwardable (a malformed header)' };
    if (status === 101) {
      // The grant may have been revoked (or the route removed) while the upstream took its time: no tunnel opens then.
      const refused = tunnelRefusal(key, grant);
      if (refused) return { refuse: refused, status: 403 };
    }
    audit(req, key, status, grant, status === 101 ? 'websocket opened' : undefined);
    return { headers };
  };

  const proxy = (req: WireRequest, res: WireResponder, route: GateRoute, key: string, grant: GrantRecord, rest: string, query: string): void => {
    const upstream = upstreamOf(req, res, route, key, grant);
    if (!upstream) return;
    const head = `${req.method} ${query ? `${rest}?${query}` : rest} HTTP/1.1${CRLF}${forwardHeaders(req, route, https, listenerHost)}`;
    res.forward(upstream, head, { response: answer(req, key, grant, false), failed: (reason, status) => deny(req, res, key, { status: status ?? 502, reason, grant }) });
  };

  const tunnel = (req: WireRequest, res: WireResponder, route: GateRoute, key: string, grant: GrantRecord, rest: string, query: string): void => {
    const upstream = upstreamOf(req, res, route, key, grant);
    if (!upstream) return;
    const head = `GET ${query ? `${rest}?${query}` : rest} HTTP/1.1${CRLF}${forwardHeaders(req, route, https, listenerHost)}connection: upgrade${CRLF}upgrade: websocket${CRLF}`;
    res.tunnel(upstream, head, {
      response: answer(req, key, grant, true),
      failed: (reason, status) => deny(req, res, key, { status: status ?? 502, reason, grant }, '', true),
      check: () => tunnelRefusal(key, grant),
      closed: ({ cut, bytesFromClient, bytesFromUpstream }) => {
        const traffic = `${bytesFromClient} B from the client, ${bytesFromUpstream} B from the upstream`;
        if (cut) audit(req, key, 403, grant, `websocket cut: ${cut} (${traffic})`);
        else audit(req, key, 101, grant, `websocket closed (${traffic})`);
      },
    });
  };

  // headersTimeout/requestTimeout/keepAliveTimeout are enforced by a sweep every second; maxConnections caps what slow
  // clients can hold at once.
  const wire = createWireServer({
    ...(options.tls ? { tls: options.tls } : {}),
    maxHeaderSize: options.maxHeaderSize ?? 16 * 1024,
    headersTimeout: 10_000,
    requestTimeout: 300_000,
    keepAliveTimeout: 5_000,
    checkInterval: 1_000,
    maxConnections: 1024,
    onRequest: handle,
    onParseError: ({ code, status, source }) => requestLog.add(gateEntry(host, 'gate.request', 'failed', { preview: 'unknown/unknown', source, status, reason: `rejected by the HTTP parser (${code})` }, { actor: 'anonymous' })),
    onInternalError: (error) => warn(`connection failed: ${(error as Error).stack ?? String(error)}`),
  });
  const server = wire.server;

  // The gate directory may not exist yet (a root no apply has written routes to): create it before listening, and
  // close the listener on any start-up error so a failed start leaves no open port behind.
  mkdirSync(paths.dir, { recursive: true, mode: 0o750 });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.address, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  listenerHost = options.address.includes(':') ? `[${options.address}]:${port}` : `${options.address}:${port}`;
  const stop = (): Promise<void> =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      wire.closeAll();
    });
  try {
    writeListenerRecord(paths.listener, { version: 1, address: options.address, port, tls, ...(publicUrl ? { publicUrl } : {}), pid: process.pid, started: new Date().toISOString() });
  } catch (error) {
    await stop();
    throw error;
  }

  const sweep = (): void => {
    try {
      store.sweepExpired((g) => auditGateEvent(paths.audit, gateEntry(host, 'gate.expire', 'ok', { preview: routeKey(g.workload, g.preview), grantId: g.id, identity: g.identity, expires: g.expires, reason: g.revoked ? 'expired (was revoked)' : 'expired' }, { actor: 'agentvm-gate' })));
    } catch (error) {
      warn(`expiry sweep failed: ${(error as Error).message}`);
    }
  };
  const sweeper = setInterval(sweep, options.sweepIntervalMs ?? 1_000);
  sweeper.unref();

  return {
    address: options.address,
    port,
    tls,
    url: baseUrl(options.address, port, tls),
    close: async () => {
      clearInterval(sweeper);
      await stop();
      requestLog.flush(true);
    },
  };
}

/** The values of every cookie called `name`, from all Cookie headers. */
function cookieValues(raw: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length !== 6 || raw[i]!.toLowerCase() !== 'cookie') continue;
    for (const part of raw[i + 1]!.split(';')) {
      const eq = part.indexOf('=');
      if (eq === -1) continue;
      if (part.slice(0, eq).trim() === name) out.push(part.slice(eq + 1).trim());
    }
  }
  return out;
}

/** Header names the Connection headers list (they are hop-by-hop too), or undefined when they list none but close/keep-alive. */
function connectionTokens(raw: string[]): Set<string> | undefined {
  let out: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length !== 10 || raw[i]!.toLowerCase() !== 'connection') continue;
    for (const part of raw[i + 1]!.split(',')) {
      const token = part.trim().toLowerCase();
      if (token === '' || token === 'close' || token === 'keep-alive') continue;
      (out ??= new Set()).add(token);
    }
  }
  return out;
}

/**
 * The request header lines an upstream sees: no hop-by-hop or framing headers, no gate cookies, no client-chosen address
 * headers; Host and X-Forwarded-* set by the gate. Names go lowercase; a malformed header is dropped.
 */
function forwardHeaders(req: WireRequest, route: GateRoute, https: boolean, listenerHost: string): string {
  const raw = req.rawHeaders;
  const listed = connectionTokens(raw);
  let out = '';
  let cookies = '';
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    const v = raw[i + 1]!;
    if (k === 'cookie') {
      for (const part of v.split(';')) {
        const c = part.trim();
        if (c === '' || c.startsWith(COOKIE_PREFIX)) continue;
        cookies = cookies === '' ? c : `${cookies}; ${c}`;
      }
      continue;
    }
    if (HOP_BY_HOP.has(k) || REQUEST_DROPPED.has(k) || listed?.has(k) || k.startsWith('x-forwarded-') || CLIENT_ADDRESS_HEADERS.has(k)) continue;
    if (!TOKEN.test(k) || !FIELD_VALUE.test(v)) continue;
    out += `${k}: ${v}${CRLF}`;
  }
  if (cookies !== '' && FIELD_VALUE.test(cookies)) out += `cookie: ${cookies}${CRLF}`;
  out += `host: ${'port' in route.upstream ? `127.0.0.1:${route.upstream.port}` : 'localhost'}${CRLF}`;
  out += `x-forwarded-for: ${req.remoteAddress}${CRLF}`;
  out += `x-forwarded-proto: ${https ? 'https' : 'http'}${CRLF}`;
  out += `x-forwarded-prefix: /p/${route.workload}/${route.preview}${CRLF}`;
  // The client's Host header is attacker-chosen: the upstream learns the listener's own address instead.
  out += `x-forwarded-host: ${listenerHost}${CRLF}`;
  return out;
}

/**
 * Whether a Set-Cookie value could set a gate cookie: browsers read a nameless cookie (`=name=value`) as `name=value`,
 * and cookie names compare as the browser stores them, so leading `=` and whitespace go and case is ignored.
 */
function touchesGateCookie(setCookie: string): boolean {
  return setCookie.replace(/^[\s=]+/, '').toLowerCase().startsWith(COOKIE_PREFIX);
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * The response header lines a client sees: no hop-by-hop headers, no Clear-Site-Data, no Set-Cookie that would touch a
 * gate cookie. Undefined when a name or value is malformed (the response is refused, never repaired).
 */
function responseHeaders(raw: string[]): string | undefined {
  const listed = connectionTokens(raw);
  let out = '';
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    const v = raw[i + 1]!;
    if (!TOKEN.test(k) || !FIELD_VALUE.test(v)) return undefined;
    if (HOP_BY_HOP.has(k) || listed?.has(k)) continue;
    // Clear-Site-Data "cookies" would wipe every gate session of the (shared) origin.
    if (k === 'clear-site-data') continue;
    if (k === 'set-cookie' && touchesGateCookie(v)) continue;
    out += `${k}: ${v}${CRLF}`;
  }
  return out;
}
