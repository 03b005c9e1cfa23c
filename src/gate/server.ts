// The gate server: a reverse proxy in front of previews that listen only on loopback ports or unix sockets. This file
// is the policy; the HTTP/1.1 mechanics (llhttp framing, pipelining, timeouts, the upstream pool) are wire.ts. One route
// per applied preview (routes.ts), each on its own origin `<preview>--<workload>[--<tag>].<domain>` (host-names.ts,
// ADR 0014; `/p/<workload>/<preview>/` on one shared origin only under the path-routing opt-in), reached by people
// holding a live grant (grants.ts); every grant exchange, allowed and denied request goes to the audit log (audit.ts).
// Invariants:
// - A request reaches an upstream only after: its route exists in the table as read for THIS request (named by the Host
//   header under host routing, by the path under path routing), its target passed the request-target checks, and its
//   session cookie maps to a grant for THIS preview that is neither expired nor revoked (a stat of the revocation
//   marker per request) and whose identity is still a grantee. Every denial is answered by the gate itself
//   (400/401/403/404/405) and never opens a connection upstream. Under host routing every unknown, malformed or missing
//   Host gets one identical 404 (a DNS-rebinding page cannot tell real names from invented ones).
// - The upstream address comes from the route table only: 127.0.0.1:<port> or a socket file in the workload's socket
//   directory, opened without following links (wire.ts). The Host header names a route, never an address.
// - A grant link never spends itself on GET or HEAD (link scanners): it opens a page whose button POSTs it back, and
//   only a POST whose Origin is the route's own origin exchanges it.
// - Every forwarded exchange is held to its grant while it lasts: the response head, every response body chunk, and a
//   sweep every second (long polls, SSE, downloads) re-run the checks; a WebSocket tunnel likewise, before every chunk
//   either way. A refusal answers 403 or cuts the connection. Other upgrades are refused (501).
// - llhttp in strict mode enforces HTTP framing (conflicting Content-Length/Transfer-Encoding, oversized headers, invalid
//   characters) in both directions, and wire.ts re-frames every body (see its invariants).
// - The gate's own cookies never reach an upstream, and an upstream cannot set, overwrite or clear them; it cannot set a
//   cookie with a Domain (or, under path routing, outside its path), widen a service worker's scope or send HSTS.
// - Upstreams see the gate's X-Forwarded-* and a signed identity (identity.ts); a client's look-alikes (`_` names,
//   X-Agentvm-*, "real IP" headers) are dropped.
// - Nothing a client or an upstream sends ends the process: a response head with a malformed status line, header name
//   or value is a 502, an unexpected exception in a request is an audited 500.

import { randomBytes } from 'node:crypto';
import type { AddressInfo, Server } from 'node:net';
import { mkdirSync, statSync } from 'node:fs';
import type { GateAccess } from '../state/audit-log.js';
import { auditGateEvent, GATE_OPERATION, gateEntry, RequestAuditLog } from './audit.js';
import { parseDuration } from './duration.js';
import { GrantStore, SECRET_PATTERN, sha256Hex, type GrantRecord } from './grants.js';
import { baseUrl, writeListenerRecord } from './listener.js';
import { gatePaths, type GatePaths } from './paths.js';
import { IDENTITY_HEADER, loadIdentitySigner } from './identity.js';
import { RefusalCounter } from './limits.js';
import { hostNames, isLocalhostDomain, labelIndex, routeByHost } from './host-names.js';
import { auditPath, parseHostTarget, parseRequestTarget } from './request-target.js';
import { readRouteTable, routeKey, type GateRoute, type RouteTable } from './routes.js';
import {
  createWireServer,
  rawHeader,
  reasonPhrase,
  type ResponseDecision,
  type UpstreamAddress,
  type WireRequest,
  type WireResponder,
} from './wire.js';

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
  /** How a request names its preview: `host` (the default, one origin per preview: `<preview>--<workload>.<domain>`)
   *  or `path` (the opt-in: `/p/<workload>/<preview>/`, every preview on one origin; ADR 0014). */
  routing?: 'host' | 'path';
  /** The gate domain under host routing. Default: publicUrl's host name, else `localhost`. */
  domain?: string;
  /** Connections one client address may hold at once. Default 64. */
  maxConnectionsPerSource?: number;
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

/** Headers of the gate's link page: never cached, never framed, nothing loaded. Referrer policy same-origin: the URL
 *  holds the token, so no Referer leaves the origin, but the button's POST must carry a real Origin (no-referrer makes
 *  Chromium send `Origin: null`); the 303 that answers it says no-referrer, which the redirected GET then follows. */
const EXCHANGE_PAGE_HEADERS = `cache-control: no-store\r\nreferrer-policy: same-origin\r\ncontent-security-policy: default-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'\r\nx-content-type-options: nosniff\r\nx-frame-options: DENY\r\n`;
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-authorization',
  'proxy-authenticate',
]);
/** Request headers that never go upstream as sent: framing is wire.ts's, Expect is answered by the gate. */
const REQUEST_DROPPED = new Set(['host', 'cookie', 'forwarded', 'content-length', 'expect']);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** RFC 9110 field-value characters: HTAB, SP, VCHAR, obs-text (no CR, LF, NUL or other controls). */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const CRLF = '\r\n';
export const COOKIE_PREFIX = 'agentvm_gate_';
/** The session cookie under host routing: one per origin, so one name; `__Host-` (Secure, Path=/, no Domain) under TLS. */
export const HOST_SESSION_COOKIE = 'agentvm_gate_session';
/** What every unknown host, unknown preview or malformed Host header is told under host routing: one answer, so a page
 *  (DNS rebinding) cannot tell a real preview's name from an invented one. */
const NO_SUCH_PREVIEW = 'no such preview';
/** Response headers an upstream may not send: a worker scope beyond its path, the gate's own HSTS, cookie wiping. */
const RESPONSE_DROPPED = new Set(['service-worker-allowed', 'clear-site-data', 'strict-transport-security']);
const HSTS = `strict-transport-security: max-age=31536000${'\r\n'}`;
/** Client-chosen "real address" headers some applications trust: the gate's X-Forwarded-For is the only one forwarded. */
const CLIENT_ADDRESS_HEADERS = new Set(['x-real-ip', 'true-client-ip', 'x-client-ip', 'cf-connecting-ip']);

export function cookieName(workload: string, preview: string): string {
  return `${COOKIE_PREFIX}${workload}_${preview}`;
}

/** Re-reads routes.json when its (inode, mtime, size) changes: one stat per request, no restart. */
class RouteCache {
  private stamp = '';
  private table: RouteTable = { version: 1, host: null, routes: {} };
  constructor(
    private readonly file: string,
    private readonly onChange: () => void,
    private readonly warn: (m: string) => void,
  ) {}

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
  /** Audited; also the answer's text unless `answer` is given. */
  reason: string;
  /** What the client is told, when it must say less than the audit record. */
  answer?: string;
  grant?: GrantRecord;
}

/** Where a request is going once its route is known: the names, the path below the route, and the origin it came to. */
interface Routed {
  workload: string;
  preview: string;
  key: string;
  /** The path the upstream sees, from `/`. */
  rest: string;
  query: string;
  grant?: string;
  /** Host routing: the Host header that named the route (lowercase, with its port); the preview's own origin's host. */
  host?: string;
}

export async function startGateServer(options: GateServerOptions): Promise<GateServer> {
  const gate = new GatePolicy(options);
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
    maxConnectionsPerSource: options.maxConnectionsPerSource ?? 64,
    onConnectionRefused: (address) => gate.refusals.connectionRefused(address),
    onRequest: (req, res) => gate.handle(req, res),
    onParseError: (error) => gate.parseError(error),
    onInternalError: (error) => gate.warn(`connection failed: ${(error as Error).stack ?? String(error)}`),
  });
  const stop = (): Promise<void> =>
    new Promise<void>((resolve) => {
      wire.server.close(() => resolve());
      wire.closeAll();
    });
  const port = await listen(wire.server, options, gate.paths);
  gate.listening(options.address, port);
  try {
    writeListenerRecord(gate.paths.listener, {
      version: 1,
      address: options.address,
      port,
      tls: gate.tls,
      ...(gate.publicUrl ? { publicUrl: gate.publicUrl } : {}),
      routing: gate.routing,
      domain: gate.domain,
      pid: process.pid,
      started: new Date().toISOString(),
    });
  } catch (error) {
    await stop();
    throw error;
  }
  const sweeper = setInterval(() => gate.sweep(), options.sweepIntervalMs ?? 1_000);
  sweeper.unref();
  return {
    address: options.address,
    port,
    tls: gate.tls,
    url: baseUrl(options.address, port, gate.tls),
    close: async () => {
      clearInterval(sweeper);
      gate.stopRolling();
      await stop();
      gate.flush();
    },
  };
}

/** The gate directory may not exist yet (a root no apply has written routes to): created before listening; the
 *  listener is closed on any start-up error so a failed start leaves no open port behind. */
async function listen(server: Server, options: GateServerOptions, paths: GatePaths): Promise<number> {
  mkdirSync(paths.dir, { recursive: true, mode: 0o750 });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.address, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

/** The gate's policy for one request, from its route to its upstream, and what it audits (the invariants above). */
class GatePolicy {
  readonly paths: GatePaths;
  readonly warn: (message: string) => void;
  readonly tls: boolean;
  readonly publicUrl: string | undefined;
  readonly routing: 'host' | 'path';
  readonly domain: string;
  readonly refusals: RefusalCounter;
  private readonly host: string;
  private readonly store: GrantStore;
  private readonly grants: GrantIndex;
  private readonly routes: RouteCache;
  /** What the browser sees: HTTPS when the gate serves TLS or sits behind an https proxy (Secure cookies, X-Forwarded-Proto). */
  private readonly https: boolean;
  private readonly sessionCookie: string;
  private readonly names: ReturnType<typeof hostNames>;
  /** On a localhost domain names are secret-tagged (host-names.ts): no Referer may carry one to another origin. */
  private readonly guardReferrer: boolean;
  private labels: { table: RouteTable; index: Map<string, string> } | undefined;
  private readonly signer: ReturnType<typeof loadIdentitySigner>;
  private readonly requestLog: RequestAuditLog;
  private readonly refusalRoller: NodeJS.Timeout;
  /** `address:port` the server listens on (set once listening): the X-Forwarded-Host upstreams see. */
  private listenerHost = '';

  constructor(options: GateServerOptions) {
    this.paths = gatePaths(options.root);
    this.warn = options.onWarning ?? (() => {});
    this.host = options.host;
    this.store = new GrantStore(this.paths.grants);
    const grants = new GrantIndex(this.store);
    this.grants = grants;
    this.routes = new RouteCache(this.paths.routes, () => grants.invalidate(), this.warn);
    this.tls = options.tls !== undefined;
    this.publicUrl = options.publicUrl;
    this.https = this.tls || (this.publicUrl?.startsWith('https:') ?? false);
    this.routing = options.routing ?? 'host';
    this.domain = (options.domain ?? (this.publicUrl ? new URL(this.publicUrl).hostname : 'localhost')).toLowerCase();
    this.sessionCookie = this.https ? `__Host-${HOST_SESSION_COOKIE}` : HOST_SESSION_COOKIE;
    // The gate directory may not exist yet (a root no apply has written routes to): created before the key goes in it.
    mkdirSync(this.paths.dir, { recursive: true, mode: 0o750 });
    this.names = hostNames(this.paths.dir, this.domain);
    this.guardReferrer = this.routing === 'host' && isLocalhostDomain(this.domain);
    this.signer = loadIdentitySigner(this.paths.dir, `agentvm-gate:${options.host}`);
    this.refusals = new RefusalCounter((source, unaudited, connections) =>
      this.requestLog.add(
        gateEntry(
          this.host,
          'gate.request',
          'failed',
          {
            preview: 'unknown/unknown',
            source,
            status: 429,
            reason: `flood from ${source} in one second: ${unaudited} more refusals not recorded one by one${connections ? `, ${connections} connections over the per-source limit closed` : ''}`,
          },
          { actor: 'anonymous' },
        ),
      ),
    );
    this.refusalRoller = setInterval(() => this.refusals.roll(), 1_000);
    this.refusalRoller.unref();
    this.requestLog = new RequestAuditLog({
      file: this.paths.audit,
      ...(options.auditIntervalMs ? { intervalMs: options.auditIntervalMs } : {}),
      onError: (e) => this.warn(`audit write failed: ${(e as Error).message}`),
    });
  }

  listening(address: string, port: number): void {
    this.listenerHost = address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
  }

  /** A request llhttp refused before it had a route: audited unless its source is being refused in aggregate. */
  parseError({ code, status, source }: { code: string; status: number; source: string }): void {
    if (this.refusals.refusal(source.slice(0, source.lastIndexOf(':'))).audit)
      this.requestLog.add(
        gateEntry(
          this.host,
          'gate.request',
          'failed',
          { preview: 'unknown/unknown', source, status, reason: `rejected by the HTTP parser (${code})` },
          { actor: 'anonymous' },
        ),
      );
  }

  /** Audits and prunes expired grants; a failure is a warning and the next sweep tries again. */
  sweep(): void {
    try {
      this.store.sweepExpired((g) =>
        auditGateEvent(
          this.paths.audit,
          gateEntry(
            this.host,
            'gate.expire',
            'ok',
            {
              preview: routeKey(g.workload, g.preview),
              grantId: g.id,
              identity: g.identity,
              expires: g.expires,
              reason: g.revoked ? 'expired (was revoked)' : 'expired',
            },
            { actor: 'agentvm-gate' },
          ),
        ),
      );
    } catch (error) {
      this.warn(`expiry sweep failed: ${(error as Error).message}`);
    }
  }

  stopRolling(): void {
    clearInterval(this.refusalRoller);
  }

  /** After the listener closed: the aggregate refusal records and the audit buffer are written out. */
  flush(): void {
    this.refusals.roll(Number.MAX_SAFE_INTEGER);
    this.requestLog.flush(true);
  }

  audit(
    req: WireRequest,
    key: string | undefined,
    status: number,
    grant: GrantRecord | undefined,
    reason?: string,
  ): void {
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
    this.requestLog.add({
      host: this.host,
      operation: GATE_OPERATION,
      event: 'gate.request',
      result: status < 400 ? 'ok' : 'failed',
      gate: access,
      actor: grant ? grant.identity : 'anonymous',
      time: new Date(),
    });
  }

  deny(req: WireRequest, res: WireResponder, key: string | undefined, d: Denial, extra = '', close = false): void {
    // A source refused over and over is audited in aggregate (limits.ts).
    const verdict = this.refusals.refusal(req.remoteAddress);
    if (verdict.audit) this.audit(req, key, d.status, d.grant, d.reason);
    const body = `${d.status} ${reasonPhrase(d.status)}: ${d.answer ?? d.reason}\n`;
    res.respond(
      d.status,
      reasonPhrase(d.status),
      `content-type: text/plain; charset=utf-8${CRLF}cache-control: no-store${CRLF}${this.https ? HSTS : ''}${extra}`,
      body,
      { close },
    );
  }

  /** Why this grant may not be used for `route` now, or undefined when it may. */
  refusal(grant: GrantRecord, route: GateRoute, key: string): Denial | undefined {
    if (routeKey(grant.workload, grant.preview) !== key)
      return { status: 403, reason: `grant ${grant.id} is for another preview`, grant };
    const now = Date.now();
    if (timeMs(grant.expires) <= now) return { status: 403, reason: `grant ${grant.id} expired`, grant };
    // A later apply may lower the route's maxTtl: a grant made under the old one is cut to the new one.
    const maxTtl = durationMs(route.maxTtl);
    if (maxTtl === undefined || timeMs(grant.created) + maxTtl <= now)
      return { status: 403, reason: `grant ${grant.id}: grant outlives the preview's maxTtl (${route.maxTtl})`, grant };
    if (this.store.isRevoked(grant.id)) return { status: 403, reason: `grant ${grant.id} was revoked`, grant };
    if (!route.grantees.includes(grant.identity))
      return { status: 403, reason: `${grant.identity} is no longer a grantee of ${key}`, grant };
    return undefined;
  }

  // No request may end the process: an unexpected exception (an fs error in a grant marker, a stat that failed) is a
  // 500 answered by the gate, and audited.
  handle(req: WireRequest, res: WireResponder): void {
    try {
      this.dispatch(req, res);
    } catch (error) {
      const reason = `gate error (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`;
      this.warn(`request failed: ${(error as Error).stack ?? String(error)}`);
      try {
        if (!res.responseStarted) this.deny(req, res, undefined, { status: 500, reason });
        else {
          this.audit(req, undefined, 500, undefined, reason);
          res.destroyConnection();
        }
      } catch {
        res.destroyConnection();
      }
    }
  }

  /** The route a request names, by its Host header (host routing) or its path (path routing), or the refusal. */
  routeOf(req: WireRequest): { routed: Routed; route: GateRoute } | { denial: Denial; location?: string } {
    const table = this.routes.current();
    if (this.routing === 'host') {
      if (this.labels?.table !== table) this.labels = { table, index: labelIndex(this.names, table) };
      const named = routeByHost(rawHeader(req.rawHeaders, 'host'), this.domain, this.labels.index);
      const route = named ? table.routes[named.key] : undefined;
      if (!named || !route)
        return {
          denial: {
            status: 404,
            reason: `no preview is named by Host ${JSON.stringify((rawHeader(req.rawHeaders, 'host') ?? '').slice(0, 200))}`,
            answer: NO_SUCH_PREVIEW,
          },
        };
      const target = parseHostTarget(req.url, route.workload, route.preview);
      if (!target.ok) return { denial: { status: target.status, reason: target.reason } };
      return {
        routed: {
          workload: route.workload,
          preview: route.preview,
          key: named.key,
          rest: target.rest,
          query: target.query,
          ...(target.grant !== undefined ? { grant: target.grant } : {}),
          host: named.host,
        },
        route,
      };
    }
    const target = parseRequestTarget(req.url);
    if (!target.ok)
      return {
        denial: { status: target.status, reason: target.reason },
        ...(target.location ? { location: target.location } : {}),
      };
    const key = routeKey(target.workload, target.preview);
    const route = table.routes[key];
    if (!route) return { denial: { status: 404, reason: 'no such preview route' } };
    return {
      routed: {
        workload: target.workload,
        preview: target.preview,
        key,
        rest: target.rest,
        query: target.query,
        ...(target.grant !== undefined ? { grant: target.grant } : {}),
      },
      route,
    };
  }

  /** The origins a same-origin browser request to this route carries: the preview's own under host routing; the gate's
   *  public origin or the listener's scheme plus the Host used under path routing. */
  ownOrigin(req: WireRequest, routed: Routed, origin: string): boolean {
    const scheme = this.https ? 'https' : 'http';
    if (routed.host !== undefined) return origin === `${scheme}://${routed.host}`;
    return (
      origin === this.publicUrl ||
      origin === `${this.tls ? 'https' : 'http'}://${(rawHeader(req.rawHeaders, 'host') ?? '').toLowerCase()}`
    );
  }

  /** Where a path below the route is, as the browser sees it. */
  browserPath(routed: Routed, rest: string, query: string): string {
    return `${routed.host !== undefined ? '' : `/p/${routed.workload}/${routed.preview}`}${rest}${query ? `?${query}` : ''}`;
  }

  /** A request's way through the gate: method, route, handshake, then a grant link or a session. */
  dispatch(req: WireRequest, res: WireResponder): void {
    const refused = methodRefusal(req);
    if (refused) return this.deny(req, res, undefined, refused, '', true);
    const found = this.routeOf(req);
    if ('denial' in found) return this.unrouted(req, res, found.denial, found.location);
    const { routed, route } = found;
    const handshake = req.upgrade ? this.handshakeRefusal(req, routed) : undefined;
    if (handshake) return this.deny(req, res, routed.key, handshake, '', true);
    if (routed.grant !== undefined) return this.grantLink(req, res, route, routed, routed.grant);
    this.withSession(req, res, route, routed);
  }

  /** A request that names no route: a redirect to the canonical path (path routing), or the refusal. */
  unrouted(req: WireRequest, res: WireResponder, denial: Denial, location: string | undefined): void {
    if (location) {
      this.audit(req, undefined, 308, undefined, denial.reason);
      res.respond(308, reasonPhrase(308), `location: ${location}${CRLF}cache-control: no-store${CRLF}`, '');
      return;
    }
    this.deny(req, res, undefined, denial, '', req.upgrade);
  }

  /** Why a WebSocket handshake to this route is refused before any grant is looked at, or undefined. */
  handshakeRefusal(req: WireRequest, routed: Routed): Denial | undefined {
    if (routed.grant !== undefined) return { status: 400, reason: 'a grant link cannot open a WebSocket' };
    // A body on a handshake would reach the upstream unframed, as a request of its own (smuggling): refused.
    const length = rawHeader(req.rawHeaders, 'content-length');
    if (
      rawHeader(req.rawHeaders, 'transfer-encoding') !== undefined ||
      (length !== undefined && length.trim() !== '0')
    ) {
      return { status: 400, reason: 'a WebSocket handshake cannot carry a body' };
    }
    // Cross-site WebSocket hijacking: a browser always sends Origin on a WebSocket handshake; it must be the route's own.
    const origin = rawHeader(req.rawHeaders, 'origin')?.toLowerCase();
    if (origin !== undefined && !this.ownOrigin(req, routed, origin))
      return { status: 403, reason: 'cross-origin WebSocket refused' };
    return undefined;
  }

  /** Opening a link never spends it (link scanners, unfurlers, prefetch): a page asks for a deliberate POST. */
  grantLink(req: WireRequest, res: WireResponder, route: GateRoute, routed: Routed, token: string): void {
    if (req.method === 'GET' || req.method === 'HEAD') return this.exchangePage(req, res, routed);
    if (req.method === 'POST') return this.exchange(req, res, route, routed, token);
    this.deny(
      req,
      res,
      routed.key,
      { status: 405, reason: 'a grant link is opened with GET and exchanged by the POST of its page' },
      `allow: GET, HEAD, POST${CRLF}`,
    );
  }

  /** A request holding a session: forwarded (or tunnelled) only while its grant may be used for this route. */
  withSession(req: WireRequest, res: WireResponder, route: GateRoute, routed: Routed): void {
    const key = routed.key;
    const found = this.sessionGrant(req, routed);
    if ('denial' in found) return this.deny(req, res, key, found.denial);
    const refused = this.refusal(found.grant, route, key);
    if (refused) return this.deny(req, res, key, refused, '', req.upgrade);
    if (req.upgrade) this.tunnel(req, res, route, routed, found.grant);
    else this.proxy(req, res, route, routed, found.grant);
  }

  /**
   * The grant of the request's session cookie. Several cookies can carry its name (one tossed by a sibling origin, or
   * planted by another preview of the same origin under path routing). Deterministic: the first in header order whose
   * grant is for THIS preview wins; another known session is kept only to explain the refusal.
   */
  sessionGrant(req: WireRequest, routed: Routed): { grant: GrantRecord } | { denial: Denial } {
    const name = routed.host !== undefined ? this.sessionCookie : cookieName(routed.workload, routed.preview);
    const sessions = cookieValues(req.rawHeaders, name);
    if (sessions.length === 0) return { denial: { status: 401, reason: 'no session: follow a grant link' } };
    let grant: GrantRecord | undefined;
    for (const s of sessions) {
      if (!SECRET_PATTERN.test(s)) continue;
      const known = this.grants.bySessionId(s);
      if (!known) continue;
      grant ??= known;
      if (routeKey(known.workload, known.preview) === routed.key) {
        grant = known;
        break;
      }
    }
    return grant ? { grant } : { denial: { status: 401, reason: 'unknown session' } };
  }

  /** The page a grant link opens: nothing is spent; its button POSTs the link back from the route's own origin. */
  exchangePage(req: WireRequest, res: WireResponder, routed: Routed): void {
    this.audit(req, routed.key, 200, undefined, 'grant link opened (not exchanged)');
    // `req.url` passed parseRequestTarget (RFC 3986 characters only); escaped for HTML all the same.
    const action = escapeHtml(req.url);
    const body = `<!doctype html><meta charset="utf-8"><meta name="robots" content="noindex"><title>agentvm preview</title><form method="post" action="${action}"><p>You have been given access to the preview ${escapeHtml(routed.key)}.</p><button type="submit" id="open">Open the preview</button></form>\n`;
    res.respond(
      200,
      'OK',
      `content-type: text/html; charset=utf-8${CRLF}${EXCHANGE_PAGE_HEADERS}${this.https ? HSTS : ''}`,
      body,
    );
  }

  /** A grant link spent by its page's POST: a session for the grant, its cookie, and a redirect into the preview. */
  exchange(req: WireRequest, res: WireResponder, route: GateRoute, routed: Routed, token: string): void {
    const key = routed.key;
    const spendable = this.spendableGrant(req, route, routed, token);
    if ('denial' in spendable) return this.deny(req, res, key, spendable.denial);
    const { grant } = spendable;
    const session = randomBytes(32).toString('base64url');
    const sessionHash = sha256Hex(session);
    if (!this.store.markUsed(grant.id, sessionHash)) {
      this.deny(req, res, key, {
        status: 403,
        reason: `the one-time link of grant ${grant.id} was already used`,
        grant,
      });
      return;
    }
    this.grants.addSession(sessionHash, grant);
    this.auditExchange(req, key, grant);
    // A same-origin POST redirected to the same origin: the browser sends the SameSite=Strict cookie on the GET.
    res.respond(
      303,
      reasonPhrase(303),
      `location: ${this.browserPath(routed, routed.rest, routed.query)}${CRLF}set-cookie: ${this.sessionSetCookie(route, routed, session, grant)}${CRLF}cache-control: no-store${CRLF}referrer-policy: no-referrer${CRLF}${this.https ? HSTS : ''}`,
      '',
    );
  }

  /** The grant a link's POST may spend, or why not: a cross-site POST (CSRF), a malformed or unknown token, a refusal. */
  spendableGrant(
    req: WireRequest,
    route: GateRoute,
    routed: Routed,
    token: string,
  ): { grant: GrantRecord } | { denial: Denial } {
    // CSRF: only the link's own page may spend it. A browser sends Origin with every POST; Sec-Fetch-Site when it can.
    const origin = rawHeader(req.rawHeaders, 'origin')?.toLowerCase();
    const fetchSite = rawHeader(req.rawHeaders, 'sec-fetch-site')?.toLowerCase();
    if (
      origin === undefined ||
      !this.ownOrigin(req, routed, origin) ||
      (fetchSite !== undefined && fetchSite !== 'same-origin')
    )
      return { denial: { status: 403, reason: 'a grant is exchanged only by a same-origin POST from its link page' } };
    if (!SECRET_PATTERN.test(token)) return { denial: { status: 401, reason: 'malformed grant token' } };
    const grant = this.grants.byTokenHash(sha256Hex(token));
    if (!grant) return { denial: { status: 401, reason: 'unknown grant token' } };
    const refused = this.refusal(grant, route, routed.key);
    return refused ? { denial: refused } : { grant };
  }

  /** The session cookie, for as long as the grant lasts. Host routing: host-only (no Domain) for the whole origin,
   *  `__Host-` under TLS so no sibling can shadow it; path routing: scoped to the preview's path. */
  sessionSetCookie(route: GateRoute, routed: Routed, session: string, grant: GrantRecord): string {
    const maxAge = Math.max(1, Math.floor((Date.parse(grant.expires) - Date.now()) / 1000));
    const attributes = `Max-Age=${maxAge}; HttpOnly; SameSite=Strict${this.https ? '; Secure' : ''}`;
    return routed.host !== undefined
      ? `${this.sessionCookie}=${session}; Path=/; ${attributes}`
      : `${cookieName(routed.workload, routed.preview)}=${session}; Path=/p/${route.workload}/${route.preview}/; ${attributes}`;
  }

  auditExchange(req: WireRequest, key: string, grant: GrantRecord): void {
    auditGateEvent(
      this.paths.audit,
      gateEntry(
        this.host,
        'gate.exchange',
        'ok',
        {
          preview: key,
          grantId: grant.id,
          identity: grant.identity,
          source: req.source,
          expires: grant.expires,
          reason: 'one-time link exchanged for a session',
        },
        { actor: grant.identity },
      ),
    );
    this.audit(req, key, 303, grant, 'one-time link exchanged for a session');
  }

  /** Why a tunnel or a stream may not open or go on now: a request's checks against the route table as it is now (a
   *  removed route cuts it too), or undefined. */
  tunnelRefusal(key: string, grant: GrantRecord): string | undefined {
    const current = this.routes.current().routes[key];
    if (!current) return 'the preview route was removed';
    return this.refusal(grant, current, key)?.reason;
  }

  /** The response hook shared by requests and tunnels: `switching` allows the 101 of a WebSocket handshake. */
  answer(
    req: WireRequest,
    routed: Routed,
    grant: GrantRecord,
    switching: boolean,
  ): (status: number, statusMessage: string, raw: string[]) => ResponseDecision {
    return (status, statusMessage, raw) => {
      // The upstream is not trusted to speak valid HTTP: its reason phrase is never forwarded, a status outside
      // 200–599 (101 for a tunnel) or a malformed reason phrase is a 502, and so is any malformed header name or value.
      if (!((status >= 200 && status <= 599) || (switching && status === 101)) || !FIELD_VALUE.test(statusMessage))
        return { refuse: `upstream answered an invalid status line (${status})` };
      const headers = responseHeaders(
        raw,
        routed.host === undefined ? `/p/${routed.workload}/${routed.preview}/` : undefined,
        this.guardReferrer,
      );
      if (headers === undefined) return { refuse: 'upstream response not forwardable (a malformed header)' };
      // The grant may have been revoked (or the route removed) while the upstream took its time (a long poll, a slow
      // switch): nothing of the answer goes out then.
      const refused = this.tunnelRefusal(routed.key, grant);
      if (refused) return { refuse: refused, status: 403 };
      this.audit(req, routed.key, status, grant, status === 101 ? 'websocket opened' : undefined);
      return {
        headers: `${headers}${this.https ? HSTS : ''}${this.guardReferrer ? `referrer-policy: same-origin${CRLF}` : ''}`,
      };
    };
  }

  /** The socket directory and file of a socket upstream, or the port (the wire opens sockets without following links). */
  upstreamOf(route: GateRoute): UpstreamAddress {
    return 'port' in route.upstream
      ? { port: route.upstream.port }
      : { socketDir: this.paths.socketDir(route.workload), socketName: route.upstream.socket };
  }

  forwardContext(routed: Routed, grant: GrantRecord, route: GateRoute): ForwardContext {
    return {
      route,
      https: this.https,
      forwardedHost: routed.host ?? this.listenerHost,
      prefix: routed.host === undefined ? `/p/${routed.workload}/${routed.preview}` : undefined,
      identity: this.signer.assertion(grant, routed.key),
    };
  }

  proxy(req: WireRequest, res: WireResponder, route: GateRoute, routed: Routed, grant: GrantRecord): void {
    const { rest, query, key } = routed;
    const head = `${req.method} ${query ? `${rest}?${query}` : rest} HTTP/1.1${CRLF}${forwardHeaders(req, this.forwardContext(routed, grant, route))}`;
    res.forward(this.upstreamOf(route), head, {
      response: this.answer(req, routed, grant, false),
      failed: (reason, status) => this.deny(req, res, key, { status: status ?? 502, reason, grant }),
      // Streams (SSE, long polls, downloads) are held to the grant like tunnels: revoke and expiry cut them.
      check: () => this.tunnelRefusal(key, grant),
      cut: (reason, midResponse) => {
        if (midResponse) this.audit(req, key, 403, grant, `response cut: ${reason}`);
      },
    });
  }

  tunnel(req: WireRequest, res: WireResponder, route: GateRoute, routed: Routed, grant: GrantRecord): void {
    const { rest, query, key } = routed;
    const head = `GET ${query ? `${rest}?${query}` : rest} HTTP/1.1${CRLF}${forwardHeaders(req, this.forwardContext(routed, grant, route))}connection: upgrade${CRLF}upgrade: websocket${CRLF}`;
    res.tunnel(this.upstreamOf(route), head, {
      response: this.answer(req, routed, grant, true),
      failed: (reason, status) => this.deny(req, res, key, { status: status ?? 502, reason, grant }, '', true),
      check: () => this.tunnelRefusal(key, grant),
      closed: ({ cut, bytesFromClient, bytesFromUpstream }) => {
        const traffic = `${bytesFromClient} B from the client, ${bytesFromUpstream} B from the upstream`;
        if (cut) this.audit(req, key, 403, grant, `websocket cut: ${cut} (${traffic})`);
        else this.audit(req, key, 101, grant, `websocket closed (${traffic})`);
      },
    });
  }
}

/** CONNECT tunnels anywhere. Of the upgrades, only a WebSocket GET is tunnelled (checked per chunk, see tunnel()). */
function methodRefusal(req: WireRequest): Denial | undefined {
  if (req.method === 'CONNECT') return { status: 405, reason: 'CONNECT is not allowed' };
  if (
    req.upgrade &&
    (req.method !== 'GET' || (rawHeader(req.rawHeaders, 'upgrade') ?? '').trim().toLowerCase() !== 'websocket')
  ) {
    return { status: 501, reason: 'only WebSocket upgrades are supported' };
  }
  return undefined;
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

/** What forwardHeaders adds besides the client's headers. */
interface ForwardContext {
  route: GateRoute;
  https: boolean;
  /** The preview's own host (host routing) or the listener's `address:port` (path routing): never a client's choice. */
  forwardedHost: string;
  /** Path routing: the prefix the browser sees. */
  prefix: string | undefined;
  /** The signed identity assertion (identity.ts). */
  identity: string;
}

/** A request header the upstream never sees as the client sent it. Names with `_` are dropped like nginx does by
 *  default: `X_Forwarded_For` and the like are read as `X-Forwarded-For` by CGI-style frameworks (look-alikes). */
function requestHeaderDropped(k: string, listed: Set<string> | undefined): boolean {
  return (
    HOP_BY_HOP.has(k) ||
    REQUEST_DROPPED.has(k) ||
    listed?.has(k) === true ||
    k.startsWith('x-forwarded-') ||
    k.startsWith('x-agentvm-') ||
    k.includes('_') ||
    CLIENT_ADDRESS_HEADERS.has(k)
  );
}

/** A cookie pair of the gate's own (under either routing, with or without a `__Host-`/`__Secure-` prefix). */
function isGateCookieName(name: string): boolean {
  return name
    .toLowerCase()
    .replace(/^__(host|secure)-/, '')
    .startsWith(COOKIE_PREFIX);
}

/**
 * The request header lines an upstream sees: no hop-by-hop or framing headers, no gate cookies, no client-chosen address,
 * identity or look-alike headers; Host, X-Forwarded-* and the signed identity set by the gate. Names go lowercase; a
 * malformed header is dropped.
 */
function forwardHeaders(req: WireRequest, ctx: ForwardContext): string {
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
        if (c === '' || isGateCookieName(c)) continue;
        cookies = cookies === '' ? c : `${cookies}; ${c}`;
      }
      continue;
    }
    if (requestHeaderDropped(k, listed)) continue;
    if (!TOKEN.test(k) || !FIELD_VALUE.test(v)) continue;
    out += `${k}: ${v}${CRLF}`;
  }
  if (cookies !== '' && FIELD_VALUE.test(cookies)) out += `cookie: ${cookies}${CRLF}`;
  const route = ctx.route;
  out += `host: ${'port' in route.upstream ? `127.0.0.1:${route.upstream.port}` : 'localhost'}${CRLF}`;
  out += `x-forwarded-for: ${req.remoteAddress}${CRLF}`;
  out += `x-forwarded-proto: ${ctx.https ? 'https' : 'http'}${CRLF}`;
  if (ctx.prefix !== undefined) out += `x-forwarded-prefix: ${ctx.prefix}${CRLF}`;
  out += `x-forwarded-host: ${ctx.forwardedHost}${CRLF}`;
  out += `${IDENTITY_HEADER}: ${ctx.identity}${CRLF}`;
  return out;
}

/**
 * Whether a Set-Cookie value could set a gate cookie: browsers read a nameless cookie (`=name=value`) as `name=value`,
 * and cookie names compare as the browser stores them, so leading `=` and whitespace go and case is ignored.
 */
function touchesGateCookie(setCookie: string): boolean {
  return isGateCookieName(setCookie.replace(/^[\s=]+/, ''));
}

/**
 * Whether a Set-Cookie reaches beyond the preview: any Domain attribute (it would cover sibling previews), and under
 * path routing a Path outside the route's prefix (`/`, another preview's path).
 */
function cookieOutsidePreview(setCookie: string, prefix: string | undefined): boolean {
  const attributes = setCookie.split(';').slice(1);
  let path: string | undefined;
  for (const a of attributes) {
    const eq = a.indexOf('=');
    const name = (eq === -1 ? a : a.slice(0, eq)).trim().toLowerCase();
    if (name === 'domain') return true;
    if (name === 'path') path = a.slice(eq + 1).trim();
  }
  // Without a Path the browser uses the request's directory, which is under the prefix the browser requested.
  return prefix !== undefined && path !== undefined && !path.startsWith(prefix);
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * The response header lines a client sees: no hop-by-hop headers, no Clear-Site-Data, Service-Worker-Allowed or
 * Strict-Transport-Security (the gate's own), no Set-Cookie that would touch a gate cookie or reach beyond the preview
 * (`prefix`: the route's path under path routing). Undefined when a name or value is malformed (the response is
 * refused, never repaired).
 */
function responseHeaders(raw: string[], prefix: string | undefined, ownReferrerPolicy: boolean): string | undefined {
  const listed = connectionTokens(raw);
  let out = '';
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    const v = raw[i + 1]!;
    if (!TOKEN.test(k) || !FIELD_VALUE.test(v)) return undefined;
    if (HOP_BY_HOP.has(k) || listed?.has(k)) continue;
    // Clear-Site-Data "cookies" would wipe the gate's session; Service-Worker-Allowed would let a worker control paths
    // beyond its script's (under path routing: other previews, the exchange page).
    if (RESPONSE_DROPPED.has(k) || (ownReferrerPolicy && k === 'referrer-policy')) continue;
    if (k === 'set-cookie' && (touchesGateCookie(v) || cookieOutsidePreview(v, prefix))) continue;
    out += `${k}: ${v}${CRLF}`;
  }
  return out;
}
