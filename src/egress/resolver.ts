// The egress proxy's own name resolution: a node:dns Resolver pointed at the configured servers (host spec
// `spec.egress.resolvers`, else the host's /etc/resolv.conf). Workloads get no DNS at all; the proxy resolves the
// name it was asked for, screens every answer (rules.ts screenAnswers) and connects to an address it screened —
// never resolving a second time between check and connect.
// Answers are cached for their TTL (the smallest of the records', at most MAX_TTL_SECONDS; a TTL of 0 is not cached),
// and concurrent lookups of one name share one query. The cache changes no decision: every use of a cached answer is
// screened again, and a name that now resolves elsewhere is seen when its TTL ends, as with any resolver. Failures
// are not cached.

import { promises as dns } from 'node:dns';

export interface ResolveResult {
  addresses: string[];
  /** Why nothing came back, when nothing did (NXDOMAIN, timeout, …). */
  error?: string;
}

/** Longest an answer is kept, whatever its TTL says. */
const MAX_TTL_SECONDS = 300;
/** Names kept at most; the oldest entry goes first. */
const MAX_ENTRIES = 4096;

interface CacheEntry {
  addresses: string[];
  expires: number;
}

export class NameResolver {
  private readonly resolver: dns.Resolver;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inflight = new Map<string, Promise<ResolveResult>>();
  private readonly now: () => number;

  /** `servers`: `ip` or `ip:port` / `[ipv6]:port`; empty: the host's configured resolvers. */
  constructor(
    servers: readonly string[] = [],
    options: { timeoutMs?: number; tries?: number; now?: () => number } = {},
  ) {
    this.resolver = new dns.Resolver({ timeout: options.timeoutMs ?? 2000, tries: options.tries ?? 2 });
    if (servers.length > 0) this.resolver.setServers([...servers]);
    this.now = options.now ?? Date.now;
  }

  /** A and AAAA records of `name`, IPv4 first. */
  resolve(name: string): Promise<ResolveResult> {
    const key = name.toLowerCase();
    const hit = this.cache.get(key);
    if (hit && hit.expires > this.now()) return Promise.resolve({ addresses: [...hit.addresses] });
    if (hit) this.cache.delete(key);
    let pending = this.inflight.get(key);
    if (!pending) {
      pending = this.query(key).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    return pending.then((r) => ({ ...r, addresses: [...r.addresses] }));
  }

  private async query(name: string): Promise<ResolveResult> {
    const [v4, v6] = await Promise.allSettled([
      this.resolver.resolve4(name, { ttl: true }),
      this.resolver.resolve6(name, { ttl: true }),
    ]);
    const records = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])];
    const addresses = records.map((r) => r.address);
    if (addresses.length > 0) {
      this.remember(name, addresses, Math.min(...records.map((r) => r.ttl)));
      return { addresses };
    }
    const why = [v4, v6].map((r) =>
      r.status === 'rejected' ? ((r.reason as NodeJS.ErrnoException).code ?? String(r.reason)) : 'no records',
    );
    return { addresses, error: why[0] === why[1] ? why[0] : why.join('/') };
  }

  private remember(name: string, addresses: string[], ttlSeconds: number): void {
    const ttl = Math.min(Math.max(0, ttlSeconds), MAX_TTL_SECONDS);
    if (ttl === 0) return;
    if (this.cache.size >= MAX_ENTRIES) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(name, { addresses, expires: this.now() + ttl * 1000 });
  }
}
