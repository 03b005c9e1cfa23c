// The egress allowlist of an MCP gateway's HTTP servers — one rule for the gateway at run time (its own caller of the
// host's proxy, providers/egress/expand.ts) and for `agentvm tools pin` (a caller of a proxy of its own, app/tools-pin):
// exactly the entries of the workload's `spec.egress` whose `host:port` is the `host:port` of one of its MCP URLs.
// A URL whose destination the contract does not list gets no entry, so the proxy refuses it (and audits the refusal).
// The match is literal (`host:port` as written in both places), as policy.mcp-url-egress checks it at validate.

import type { EgressEntry } from './rules.js';

/** host and port of an http(s) URL (brackets stripped from an IPv6 literal, the scheme's port when none is given);
 * undefined when it does not parse (the schema reports the shape). */
export function destinationOf(url: string): { host: string; port: number } | undefined {
  try {
    const u = new URL(url);
    const port = u.port !== '' ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
    return { host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port };
  } catch {
    return undefined;
  }
}

const key = (e: { host: string; port: number }): string => `${e.host}:${e.port}`;

/** The destinations of the MCP servers that have a URL (servers as the contract or the gateway config lists them). */
export function mcpUrlDestinations(servers: unknown): Set<string> {
  if (!Array.isArray(servers)) return new Set();
  return new Set(
    servers.flatMap((s: { url?: unknown }) => {
      const d = typeof s?.url === 'string' ? destinationOf(s.url) : undefined;
      return d ? [key(d)] : [];
    }),
  );
}

/** The entries a gateway (or `tools pin`) may use: the workload's egress entries that are an MCP URL's destination. */
export function mcpGatewayEntries(egress: readonly EgressEntry[], destinations: ReadonlySet<string>): EgressEntry[] {
  return egress.filter((e) => destinations.has(key(e)));
}

/** The profile's own entries: everything else (it reaches its MCP servers only through its gateway). */
export function withoutMcpDestinations(
  egress: readonly EgressEntry[],
  destinations: ReadonlySet<string>,
): EgressEntry[] {
  return egress.filter((e) => !destinations.has(key(e)));
}
