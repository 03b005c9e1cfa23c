// What the egress provider plans: `egress.server`, the host's egress proxy (`agentvm-egress.service`), whenever the
// host runs at least one profile — every profile reaches the network only through it (decisions/0016), and it also
// carries each profile's inbound bridge. Its config is the caller list: each gateway unit the systemd provider
// expanded (earlier in registry order), with its allowlist and listener. Every unit depends on it (the systemd
// provider's expand names it), so the socket and port bridge exist before a unit starts. Pure: no I/O.

import { HOST_WORKLOAD, type DesiredResource } from '../../model/index.js';
import type { InjectionRoute } from '../../egress/injection.js';
import type { ExpandRequest, ExpandResponse } from '../provider.js';
import { EGRESS_SERVER_ADDRESS } from './unit.js';
import type { EgressEntry } from '../../egress/rules.js';
import { mcpGatewayEntries, mcpUrlDestinations, withoutMcpDestinations } from '../../egress/mcp-destinations.js';

export function expandEgress(req: ExpandRequest): ExpandResponse {
  const units = req.expanded.filter((r) => r.provider === 'systemd');
  if (units.length === 0) return { resources: [], diagnostics: [] };
  // An MCP server's URL is its gateway's destination, not the profile's (providers/mcp): the profile reaches that
  // server only through the gateway, which is a caller of its own (expanded earlier in registry order).
  const gateways = req.expanded.filter((r) => r.provider === 'mcp');
  const mcpDest = (workload: string, profile: unknown): Set<string> =>
    mcpUrlDestinations(
      gateways
        .filter((m) => m.workload === workload && m.config.profile === profile)
        .flatMap((m) => (Array.isArray(m.config.servers) ? (m.config.servers as unknown[]) : [])),
    );
  const server: DesiredResource = {
    address: EGRESS_SERVER_ADDRESS,
    provider: 'egress',
    workload: HOST_WORKLOAD,
    identity: 'agentvm-egress.service',
    config: {
      scope: req.host.spec.systemd?.scope ?? 'system',
      resolvers: req.host.spec.egress?.resolvers ?? [],
      callers: [
        ...units.map((u) => ({
          id: u.address,
          workload: u.workload,
          profile: u.config.profile,
          entries: withoutMcpDestinations(u.config.egress as EgressEntry[], mcpDest(u.workload, u.config.profile)),
          listenPort: (u.config.listen as { port?: number } | null)?.port ?? null,
          ...injectionsOf(u.config.secrets),
        })),
        ...gateways.map((m) => {
          const dest = mcpDest(m.workload, m.config.profile);
          const unit = units.find((u) => u.workload === m.workload && u.config.profile === m.config.profile);
          return {
            id: m.address,
            workload: m.workload,
            profile: m.config.profile,
            entries: mcpGatewayEntries((unit?.config.egress ?? []) as EgressEntry[], dest),
            listenPort: null,
          };
        }),
      ],
      ...(req.host.spec.egress?.upstreamTrustAnchors?.length
        ? { upstreamTrustAnchors: req.host.spec.egress.upstreamTrustAnchors }
        : {}),
    },
    dependsOn: [],
  };
  return { resources: [server], diagnostics: [] };
}

/** The caller's injected secrets as proxy routes (decisions/0023): names and where, never a value. */
function injectionsOf(secrets: unknown): { inject?: InjectionRoute[] } {
  const routes = (Array.isArray(secrets) ? secrets : [])
    .filter(
      (s): s is { name: string; inject: { host: string; header: string; format?: string } } =>
        typeof s === 'object' &&
        s !== null &&
        typeof (s as { inject?: unknown }).inject === 'object' &&
        (s as { inject?: unknown }).inject !== null,
    )
    .map((s) => ({ name: s.name, host: s.inject.host, header: s.inject.header, format: s.inject.format ?? '{}' }));
  return routes.length ? { inject: routes } : {};
}
