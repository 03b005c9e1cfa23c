// The egress proxy's own name resolution: a node:dns Resolver pointed at the configured servers (host spec
// `spec.egress.resolvers`, else the host's /etc/resolv.conf). Workloads get no DNS at all; the proxy resolves the
// name it was asked for, screens every answer (rules.ts screenAnswers) and connects to an address it screened —
// never resolving a second time between check and connect.

import { promises as dns } from 'node:dns';

export interface ResolveResult {
  addresses: string[];
  /** Why nothing came back, when nothing did (NXDOMAIN, timeout, …). */
  error?: string;
}

export class NameResolver {
  private readonly resolver: dns.Resolver;

  /** `servers`: `ip` or `ip:port` / `[ipv6]:port`; empty: the host's configured resolvers. */
  constructor(servers: readonly string[] = [], options: { timeoutMs?: number; tries?: number } = {}) {
    this.resolver = new dns.Resolver({ timeout: options.timeoutMs ?? 2000, tries: options.tries ?? 2 });
    if (servers.length > 0) this.resolver.setServers([...servers]);
  }

  /** A and AAAA records of `name`, IPv4 first. */
  async resolve(name: string): Promise<ResolveResult> {
    const [v4, v6] = await Promise.allSettled([this.resolver.resolve4(name), this.resolver.resolve6(name)]);
    const addresses = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])];
    if (addresses.length > 0) return { addresses };
    const why = [v4, v6].map((r) => (r.status === 'rejected' ? ((r.reason as NodeJS.ErrnoException).code ?? String(r.reason)) : 'no records'));
    return { addresses, error: why[0] === why[1] ? why[0] : why.join('/') };
  }
}
