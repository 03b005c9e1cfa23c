// The host's egress proxy: every profile and job run reaches the network only through it (decisions/0016).
// Each caller has its OWN unix socket (bound into its unit, or served to its job's namespace); the socket a connection
// arrived on is the caller's identity — nothing the caller sends (headers, credentials, source ports) selects rules.
// On that socket it serves HTTP forward-proxy requests:
//   CONNECT host:port          decide (rules.ts) → resolve with its own resolver → screen the answers → connect to a
//                              screened address → 200 → read the ClientHello and refuse a missing or different SNI
//                              (on TLS ports always; on other ports when the client speaks TLS) → relay bytes.
//   GET http://host:port/path  the same checks, then the request is sent in origin form with Host set to the target
//                              and `Connection: close` (one request per connection: no second host on a kept-alive
//                              connection).
// A refusal is `403` with the one-line reason (also in `X-Agentvm-Egress-Denied`) and an audit record (audit.ts); an
// SNI refusal after the tunnel opened is a TLS `access_denied` alert instead, audited the same way.
// Inbound bridges: for a profile that listens on a port, the proxy listens on the host's 127.0.0.1:<port> (where the
// gate and the health check connect) and relays to the unix socket the unit's in-namespace shim (unit-shim.ts) serves.
// Rules are data: reload() swaps callers' allowlists in place; listeners of unchanged callers and every open
// connection stay (a tunnel already open keeps going until it closes: rules are checked when it opens).
// Injected credentials (injection.ts, decisions/0023): a CONNECT on a TLS port to a host for which THIS caller has an
// injection route is not tunnelled but terminated here with the host's leaf (issued by the agentvm CA that only the
// caller's unit trusts); each HTTP request on it goes to that host over a new TLS connection whose certificate is
// verified (system store + spec.egress.upstreamTrustAnchors), with the placeholder replaced in the declared header
// only. Every other CONNECT stays an opaque tunnel, checked by SNI as above.

import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import {
  createServer as createHttpServer,
  request as httpRequest,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { connect, createServer, isIP, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createSecureContext, rootCertificates, TLSSocket, type SecureContext } from 'node:tls';
import path from 'node:path';
import { Duplex } from 'node:stream';
import { DenialAudit } from './audit.js';
import { SYSTEM_BUNDLE } from './ca.js';
import { rewriteHeaders, routesFor, type CredentialReader, type InjectionRoute } from './injection.js';
import { NameResolver } from './resolver.js';
import {
  decideDestination,
  deny,
  normaliseHost,
  screenAnswers,
  type Denial,
  type EgressCaller,
  type EgressEntry,
} from './rules.js';
import { parseClientHello } from './sni.js';

/** One caller of the proxy, as apply writes it into the rules file. */
export interface CallerSettings {
  id: string;
  workload: string;
  entries: EgressEntry[];
  /** Absolute path of the caller's unix socket (the proxy listens on it). */
  socket: string;
  /** The profile's listener, bridged from the host's 127.0.0.1:<port> to the unit's shim at `target`. */
  inbound?: { port: number; target: string } | null;
  /** Secrets the proxy injects for this caller (injection.ts); absent or empty: none. */
  inject?: InjectionRoute[];
}

export interface ProxySettings {
  /** `ip` / `ip:port` of the resolvers the proxy asks; empty: the host's /etc/resolv.conf. */
  resolvers: string[];
  callers: CallerSettings[];
  /** Extra PEM files trusted, besides the system store, for upstreams of injected hosts (host spec.egress). */
  upstreamTrustAnchors?: string[];
}

export interface EgressProxyOptions {
  host: string;
  auditFile: string;
  /** The host's own addresses (refused as answers unless listed). */
  ownAddresses: readonly string[];
  auditWindowMs?: number;
  connectTimeoutMs?: number;
  onWarning?: (message: string) => void;
  /** Injected credentials: the store reader and where each injected host's leaf lives. Absent: nothing is injected. */
  injection?: { credentials: CredentialReader; leaf(host: string): { cert: string; key: string } };
}

/** Ports on which a CONNECT must carry a TLS ClientHello whose SNI equals the CONNECT host. */
export const TLS_PORTS: ReadonlySet<number> = new Set([443, 465, 636, 853, 993, 995, 5986, 6443, 8443, 9443]);
const MAX_HEAD = 16 * 1024;
const HEAD_TIMEOUT_MS = 10_000;
const HELLO_TIMEOUT_MS = 10_000;
const HOP_HEADERS = new Set([
  'proxy-connection',
  'proxy-authorization',
  'connection',
  'keep-alive',
  'host',
  'te',
  'upgrade',
]);
const TLS_ACCESS_DENIED = Buffer.from([0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x31]);

interface Listener {
  server: Server;
  caller: EgressCaller;
}

export class EgressProxy {
  private readonly listeners = new Map<string, Listener>();
  private readonly inbound = new Map<number, { server: Server; target: { path: string } }>();
  private readonly sockets = new Set<Socket>();
  private resolver: NameResolver;
  private resolverKey = '';
  private readonly own: Set<string>;
  readonly audit: DenialAudit;
  /** Requests allowed and refused (status, tests); `injected`: requests whose declared header got a real value. */
  readonly counters = { allowed: 0, refused: 0, injected: 0 };
  private readonly injections = new Map<string, InjectionRoute[]>();
  private readonly leaves = new Map<string, SecureContext>();
  private trust: string[] = defaultTrust();
  private readonly intercepted = new WeakMap<object, { caller: EgressCaller; host: string; port: number }>();
  private readonly injectServer = createHttpServer(
    { requireHostHeader: false },
    (req, res) =>
      void this.forwardInjected(req, res).catch((error: unknown) => {
        this.options.onWarning?.(`injected request: ${(error as Error).message}`);
        res.destroy();
      }),
  );

  constructor(private readonly options: EgressProxyOptions) {
    this.own = new Set(options.ownAddresses);
    this.resolver = new NameResolver();
    this.audit = new DenialAudit({
      file: options.auditFile,
      host: options.host,
      ...(options.auditWindowMs ? { windowMs: options.auditWindowMs } : {}),
      ...(options.onWarning ? { onError: (e) => options.onWarning!(`audit: ${(e as Error).message}`) } : {}),
    });
  }

  /** Applies settings: new callers listen, removed ones stop listening, changed allowlists apply to new requests. */
  async reload(settings: ProxySettings): Promise<void> {
    const key = settings.resolvers.join(',');
    if (key !== this.resolverKey || !this.resolver) {
      this.resolver = new NameResolver(settings.resolvers);
      this.resolverKey = key;
    }
    this.injections.clear();
    for (const c of settings.callers)
      if (c.inject?.length)
        this.injections.set(
          c.id,
          c.inject.map((r) => ({ ...r })),
        );
    this.leaves.clear();
    this.trust = defaultTrust();
    for (const file of settings.upstreamTrustAnchors ?? []) {
      try {
        this.trust.push(readFileSync(file, 'utf8'));
      } catch (error) {
        this.options.onWarning?.(
          `upstream trust anchor ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
        );
      }
    }
    const wanted = new Map(settings.callers.map((c) => [c.socket, c]));
    for (const [socket, l] of this.listeners) {
      if (!wanted.has(socket)) {
        this.listeners.delete(socket);
        l.server.close();
        rmSync(socket, { force: true });
      }
    }
    for (const c of settings.callers) {
      const caller: EgressCaller = { id: c.id, workload: c.workload, entries: c.entries.map((e) => ({ ...e })) };
      const current = this.listeners.get(c.socket);
      if (current) {
        // In place: open connections keep their caller object, new requests read the new entries.
        Object.assign(current.caller, caller);
        continue;
      }
      await this.listenCaller(c.socket, caller);
    }
    const ports = new Map(settings.callers.filter((c) => c.inbound).map((c) => [c.inbound!.port, c.inbound!.target]));
    for (const [port, b] of this.inbound) {
      if (!ports.has(port)) {
        this.inbound.delete(port);
        b.server.close();
      }
    }
    // A port another process holds stays unbridged (reported, retried on the next reload): one taken port must not
    // keep every other caller's new rules from loading.
    this.inboundFailures = [];
    for (const [port, target] of ports) {
      const current = this.inbound.get(port);
      if (current) current.target.path = target;
      else {
        try {
          await this.listenInbound(port, target);
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
          this.inboundFailures.push({ port, error: code });
          this.options.onWarning?.(`cannot bridge 127.0.0.1:${port} into the unit (${code})`);
        }
      }
    }
  }

  /** Ports of the last reload that could not be bridged, and why (status.json carries them to apply). */
  inboundFailures: Array<{ port: number; error: string }> = [];

  private async listenCaller(socket: string, caller: EgressCaller): Promise<void> {
    mkdirSync(path.dirname(socket), { recursive: true, mode: 0o755 });
    rmSync(socket, { force: true });
    // Half-open: a client that shuts its write side after the request (`printf … | nc`) still gets the answer.
    const server = createServer(
      { allowHalfOpen: true },
      (client) => this.track(client) && this.serve(client, this.listeners.get(socket)?.caller ?? caller),
    );
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socket, () => resolve());
    });
    // The directory, not the socket mode, keeps other callers out (each unit sees only its own directory); the
    // socket is connectable by whichever account the unit runs as (a DynamicUser= in system scope).
    chmodSync(socket, 0o666);
    this.listeners.set(socket, { server, caller });
  }

  private async listenInbound(port: number, targetPath: string): Promise<void> {
    const target = { path: targetPath };
    const server = createServer({ allowHalfOpen: true }, (client) => {
      if (!this.track(client)) return;
      client.setNoDelay(true);
      const upstream = connect({ path: target.path, allowHalfOpen: true });
      this.track(upstream);
      relay(client, upstream);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port }, () => resolve());
    });
    this.inbound.set(port, { server, target });
  }

  /**
   * Serves one connection accepted elsewhere for `caller` — a job run's listener in its namespace (job-network.ts): the
   * listener it was accepted on is the caller's identity, as a unit's socket is.
   */
  accept(client: Socket, caller: EgressCaller): void {
    // Sockets handed over from another server (a job's listener came over IPC) carry that server's defaults.
    client.allowHalfOpen = true;
    this.track(client);
    this.serve(client, caller);
  }

  private track(s: Socket): true {
    this.sockets.add(s);
    s.once('close', () => this.sockets.delete(s));
    s.on('error', () => s.destroy());
    return true;
  }

  /** Open client and upstream connections (tests: a reload must not drop them). */
  get openConnections(): number {
    return this.sockets.size;
  }

  private serve(client: Socket, caller: EgressCaller): void {
    let head = Buffer.alloc(0);
    client.setTimeout(HEAD_TIMEOUT_MS, () => client.destroy());
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > MAX_HEAD) answer(client, 431, 'agentvm egress: request head too large.');
        return;
      }
      client.off('data', onData);
      client.pause();
      client.setTimeout(0);
      const rest = head.subarray(end + 4);
      void this.request(client, caller, head.subarray(0, end).toString('latin1'), rest).catch((error: unknown) => {
        this.options.onWarning?.(`${caller.id}: ${(error as Error).message}`);
        answer(client, 500, 'agentvm egress: internal error.');
      });
    };
    client.on('data', onData);
  }

  private async request(client: Socket, caller: EgressCaller, head: string, rest: Buffer): Promise<void> {
    const [requestLine = '', ...headerLines] = head.split('\r\n');
    const m = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/.exec(requestLine);
    if (!m) return answer(client, 400, 'agentvm egress: not an HTTP proxy request.');
    const [, method, target] = m as unknown as [string, string, string];
    if (method === 'CONNECT') {
      const authority = parseAuthority(target);
      if (!authority)
        return this.refuse(
          client,
          caller,
          deny(caller, 'bad-destination', target.slice(0, 200), 0, 'CONNECT needs host:port'),
        );
      return this.connectTunnel(client, caller, authority.host, authority.port, rest);
    }
    let url: URL;
    try {
      url = new URL(target);
    } catch {
      return answer(
        client,
        400,
        'agentvm egress: send requests in absolute form (http://host/path) through the proxy; HTTPS goes through CONNECT.',
      );
    }
    if (url.protocol !== 'http:')
      return answer(client, 400, `agentvm egress: ${url.protocol} is proxied with CONNECT, not as a forward request.`);
    const port = url.port ? Number(url.port) : 80;
    const host = normaliseHost(url.hostname);
    const upstream = await this.open(client, caller, host, port);
    if (!upstream) return;
    const headers = headerLines.filter((l) => !HOP_HEADERS.has(l.slice(0, l.indexOf(':')).trim().toLowerCase()));
    const hostHeader = url.port ? `${url.hostname}:${url.port}` : url.hostname;
    upstream.write(
      `${method} ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${hostHeader}\r\n${headers.map((h) => `${h}\r\n`).join('')}Connection: close\r\n\r\n`,
    );
    if (rest.length) upstream.write(rest);
    this.counters.allowed++;
    relay(client, upstream);
    client.resume();
  }

  /** Decide, resolve and screen: the addresses the caller may reach for host:port, or the denial. */
  private async screened(caller: EgressCaller, host: string, port: number): Promise<{ addresses: string[] } | Denial> {
    const decision = decideDestination(caller, host, port);
    if (!decision.ok) return decision;
    let addresses = [decision.host];
    if (isIP(decision.host) === 0) {
      const resolved = await this.resolver.resolve(decision.host);
      if (resolved.addresses.length === 0)
        return deny(
          caller,
          'resolve-failed',
          decision.host,
          port,
          `the name does not resolve (${resolved.error ?? 'no address'})`,
        );
      const screened = screenAnswers(caller, decision.host, port, resolved.addresses, this.own);
      if (!screened.ok) return screened;
      addresses = screened.addresses;
    } else if (!decision.literal) {
      const screened = screenAnswers(caller, decision.host, port, addresses, this.own);
      if (!screened.ok) return screened;
    }
    return { addresses };
  }

  /** Decide, resolve, screen and connect; on refusal answers 403 (or 502) and returns undefined. */
  private async open(client: Socket, caller: EgressCaller, host: string, port: number): Promise<Socket | undefined> {
    const screened = await this.screened(caller, host, port);
    if (!('addresses' in screened)) return void this.refuse(client, caller, screened);
    const { addresses } = screened;
    const upstream = await this.connectFirst(addresses, port);
    if (!upstream) {
      answer(
        client,
        502,
        `agentvm egress: ${host}:${port} is allowed but did not accept a connection (${addresses.join(', ')}).`,
      );
      return undefined;
    }
    this.track(upstream);
    return upstream;
  }

  /** Connects to the screened addresses in order; the first that accepts wins. Never resolves again. */
  private async connectFirst(addresses: readonly string[], port: number): Promise<Socket | undefined> {
    for (const address of addresses) {
      const s = await new Promise<Socket | undefined>((resolve) => {
        const sock = connect({ host: address, port, allowHalfOpen: true });
        const fail = (): void => {
          sock.destroy();
          resolve(undefined);
        };
        sock.setTimeout(this.options.connectTimeoutMs ?? 10_000, fail);
        sock.once('error', fail);
        sock.once('connect', () => {
          // A relay must not add Nagle's wait to small writes (a TLS Finished then the request): latency, not bytes.
          sock.setNoDelay(true);
          sock.setTimeout(0);
          sock.off('error', fail);
          resolve(sock);
        });
      });
      if (s) return s;
    }
    return undefined;
  }

  private async connectTunnel(
    client: Socket,
    caller: EgressCaller,
    host: string,
    port: number,
    rest: Buffer,
  ): Promise<void> {
    if (
      this.options.injection &&
      TLS_PORTS.has(port) &&
      isIP(host) === 0 &&
      routesFor(this.injections.get(caller.id), host).length > 0
    ) {
      return this.intercept(client, caller, host, port, rest);
    }
    const upstream = await this.open(client, caller, host, port);
    if (!upstream) return;
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    upstream.pipe(client);
    const named = isIP(normaliseHost(host)) === 0;
    let first = rest;
    const decideFirst = (): boolean => {
      const hello = parseClientHello(first);
      if (hello.kind === 'more') return false;
      let refusal: Denial | undefined;
      if (hello.kind === 'not-tls') {
        if (TLS_PORTS.has(port))
          refusal = deny(
            caller,
            'not-tls',
            host,
            port,
            'the tunnel to a TLS port does not start with a TLS ClientHello',
          );
      } else if (hello.kind === 'invalid') {
        refusal = deny(caller, 'sni-missing', host, port, `the TLS ClientHello is not acceptable (${hello.why})`);
      } else if (hello.sni === null) {
        if (named)
          refusal = deny(
            caller,
            'sni-missing',
            host,
            port,
            'the TLS ClientHello names no server (SNI), so the destination cannot be checked',
          );
      } else if (normaliseHost(hello.sni) !== normaliseHost(host) && named) {
        refusal = deny(
          caller,
          'sni-mismatch',
          host,
          port,
          `the TLS server name ${JSON.stringify(hello.sni.slice(0, 253))} differs from the CONNECT host (domain fronting)`,
        );
      }
      client.off('data', onData);
      clearTimeout(timer);
      if (refusal) {
        this.counters.refused++;
        this.audit.record(caller, refusal);
        upstream.destroy();
        if (hello.kind === 'not-tls') client.end();
        else client.end(TLS_ACCESS_DENIED);
        return true;
      }
      this.counters.allowed++;
      upstream.write(first);
      client.pipe(upstream);
      upstream.on('close', () => client.destroy());
      client.on('close', () => upstream.destroy());
      return true;
    };
    const onData = (chunk: Buffer): void => {
      first = Buffer.concat([first, chunk]);
      decideFirst();
    };
    const timer = setTimeout(() => {
      client.destroy();
      upstream.destroy();
    }, HELLO_TIMEOUT_MS);
    if (first.length > 0 && decideFirst()) return;
    client.on('data', onData);
    client.resume();
  }

  /** The leaf context for an injected host, loaded once per reload; undefined when apply has not issued it. */
  private leafContext(host: string): SecureContext | undefined {
    const h = normaliseHost(host);
    let ctx = this.leaves.get(h);
    if (!ctx && this.options.injection) {
      const files = this.options.injection.leaf(h);
      if (!existsSync(files.cert) || !existsSync(files.key)) return undefined;
      ctx = createSecureContext({ cert: readFileSync(files.cert), key: readFileSync(files.key) });
      this.leaves.set(h, ctx);
    }
    return ctx;
  }

  /** Terminates the caller's TLS for an injected host; requests go on through forwardInjected. */
  private intercept(client: Socket, caller: EgressCaller, host: string, port: number, rest: Buffer): void {
    const decision = decideDestination(caller, host, port);
    if (!decision.ok) return this.refuse(client, caller, decision);
    const leaf = this.leafContext(host);
    if (!leaf)
      return answer(
        client,
        502,
        `agentvm egress: ${host} has injected credentials but its certificate was not issued; run agentvm apply.`,
      );
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    const secure = new TLSSocket(streamOf(client, rest), {
      isServer: true,
      secureContext: leaf,
      ALPNProtocols: ['http/1.1'],
    });
    secure.on('error', () => secure.destroy());
    const timer = setTimeout(() => secure.destroy(), HELLO_TIMEOUT_MS);
    secure.once('close', () => {
      clearTimeout(timer);
      client.destroy();
    });
    secure.once('secure', () => {
      clearTimeout(timer);
      const sni = (secure as TLSSocket & { servername?: string | false }).servername;
      // The same rule as an opaque tunnel: the name the client verifies must be the CONNECT host.
      if (!sni || normaliseHost(sni) !== normaliseHost(host)) {
        this.counters.refused++;
        this.audit.record(
          caller,
          deny(
            caller,
            sni ? 'sni-mismatch' : 'sni-missing',
            host,
            port,
            sni
              ? `the TLS server name ${JSON.stringify(sni.slice(0, 253))} differs from the CONNECT host (domain fronting)`
              : 'the TLS ClientHello names no server (SNI), so the destination cannot be checked',
          ),
        );
        secure.destroy();
        return;
      }
      this.intercepted.set(secure, { caller, host: normaliseHost(host), port });
      this.injectServer.emit('connection', secure);
    });
  }

  /** One request on a terminated connection: to the same host, verified, with the declared header injected. */
  private async forwardInjected(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const ctx = this.intercepted.get(req.socket);
    if (!ctx || !this.options.injection) return void res.destroy();
    const { caller, host, port } = ctx;
    const reader = this.options.injection.credentials;
    const routes = routesFor(this.injections.get(caller.id), host);
    let injected = false;
    const headers = rewriteHeaders(req.rawHeaders, routes, (name) => {
      const c = reader.read(caller.id, name);
      if (c) injected = true;
      return c;
    });
    // Host is the CONNECT host whatever the request says: a credential never rides to another tenant of the same edge.
    headers.push('Host', port === 443 ? host : `${host}:${port}`);
    const fail = (status: number, reason: string): void => {
      if (res.headersSent) return void res.destroy();
      res.writeHead(status, {
        'content-type': 'text/plain; charset=utf-8',
        'x-agentvm-egress-denied': reason.replace(/[^\x20-\x7e]/g, '?'),
        connection: 'close',
      });
      res.end(`${reason}\n`);
    };
    const screened = await this.screened(caller, host, port);
    if (!('addresses' in screened)) {
      this.counters.refused++;
      this.audit.record(caller, screened);
      return fail(403, screened.reason);
    }
    const tcp = await this.connectFirst(screened.addresses, port);
    if (!tcp) return fail(502, `agentvm egress: ${host}:${port} is allowed but did not accept a connection.`);
    this.track(tcp);
    const upstream = await new Promise<TLSSocket | string>((resolve) => {
      const t = tlsConnect({ socket: tcp, servername: host, ca: this.trust, ALPNProtocols: ['http/1.1'] });
      t.once('secureConnect', () => resolve(t));
      t.once('error', (e) => {
        t.destroy();
        resolve((e as NodeJS.ErrnoException).code ?? e.message);
      });
    });
    if (typeof upstream === 'string')
      return fail(
        502,
        `agentvm egress: the server of ${host}:${port} did not present a certificate the host trusts for that name (${upstream.slice(0, 200)}); nothing was sent.`,
      );
    upstream.on('error', () => upstream.destroy());
    if (injected) this.counters.injected++;
    this.counters.allowed++;
    const out = httpRequest(
      { createConnection: () => upstream, method: req.method, path: req.url, headers, setHost: false },
      (answerRes) => {
        const back: string[] = [];
        for (let i = 0; i + 1 < answerRes.rawHeaders.length; i += 2) {
          if (!RESPONSE_HOP.has(answerRes.rawHeaders[i]!.toLowerCase()))
            back.push(answerRes.rawHeaders[i]!, answerRes.rawHeaders[i + 1]!);
        }
        res.writeHead(answerRes.statusCode ?? 502, answerRes.statusMessage ?? '', back);
        answerRes.pipe(res);
      },
    );
    out.on('error', (e) =>
      fail(
        502,
        `agentvm egress: ${host}:${port} failed during the request (${(e as NodeJS.ErrnoException).code ?? 'error'}).`,
      ),
    );
    req.pipe(out);
  }

  private refuse(client: Socket, caller: EgressCaller, denial: Denial): void {
    this.counters.refused++;
    this.audit.record(caller, denial);
    answer(client, 403, denial.reason);
  }

  /** Stops listening, closes every connection, flushes the audit log. */
  async close(): Promise<void> {
    const servers = [
      ...[...this.listeners.values()].map((l) => l.server),
      ...[...this.inbound.values()].map((b) => b.server),
    ];
    for (const s of this.sockets) s.destroy();
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    for (const socket of this.listeners.keys()) rmSync(socket, { force: true });
    this.listeners.clear();
    this.inbound.clear();
    this.audit.close();
  }
}

/** `host:port` of a CONNECT target (IPv6 in brackets). */
export function parseAuthority(target: string): { host: string; port: number } | undefined {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+):(\d{1,5})$/.exec(target);
  if (!m) return undefined;
  const port = Number(m[2]);
  return port >= 1 && port <= 65535 ? { host: normaliseHost(m[1]!), port } : undefined;
}

function answer(client: Socket, status: number, reason: string): void {
  const text = `${reason}\n`;
  const phrase =
    status === 403
      ? 'Forbidden'
      : status === 502
        ? 'Bad Gateway'
        : status === 400
          ? 'Bad Request'
          : status === 431
            ? 'Request Header Fields Too Large'
            : 'Internal Server Error';
  // The reason is ours (never caller bytes beyond a host name already validated), one line, safe as a header value.
  const header = reason.replace(/[^\x20-\x7e]/g, '?');
  client.end(
    `HTTP/1.1 ${status} ${phrase}\r\nContent-Type: text/plain; charset=utf-8\r\nX-Agentvm-Egress-Denied: ${header}\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
  );
}

const RESPONSE_HOP = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'proxy-connection',
  'trailer',
  'upgrade',
]);

/** The system trust store as one PEM (Node 20 has no API for it), else Node's bundled roots. */
function defaultTrust(): string[] {
  try {
    return [readFileSync(SYSTEM_BUNDLE, 'utf8')];
  } catch {
    return [...rootCertificates];
  }
}

/**
 * The client connection as a plain stream, starting with bytes already read: a TLSSocket over a net.Socket would read
 * its handle directly and lose them (a ClientHello sent with the CONNECT).
 */
function streamOf(client: Socket, first: Buffer): Duplex {
  const d = new Duplex({
    read: () => void client.resume(),
    write: (chunk: Buffer, _enc, cb) => void client.write(chunk, cb),
    final: (cb) => {
      client.end();
      cb();
    },
    destroy: (err, cb) => {
      client.destroy();
      cb(err);
    },
  });
  if (first.length) d.push(first);
  client.on('data', (chunk: Buffer) => {
    if (!d.push(chunk)) client.pause();
  });
  client.once('end', () => d.push(null));
  client.once('close', () => d.destroy());
  client.resume();
  return d;
}

function relay(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  a.on('close', () => b.destroy());
  b.on('close', () => a.destroy());
}
