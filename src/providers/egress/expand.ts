// What the egress provider plans: `egress.server`, the host's egress proxy (`agentvm-egress.service`), whenever the
// host runs at least one profile — every profile reaches the network only through it (decisions/0016), and it also
// carries each profile's inbound bridge. Its config is the caller list: each gateway unit the systemd provider
// expanded (earlier in registry order), with its allowlist and listener. Every unit depends on it (the systemd
// provider's expand names it), so the socket and port bridge exist before a unit starts. Pure: no I/O.

import { HOST_WORKLOAD, type DesiredResource } from '../../model/index.js';
import type { InjectionRoute } from '../../egress/injection.js';
import type { ExpandRequest, ExpandResponse } from '../provider.js';
import { EGRESS_SERVER_ADDRESS } from './unit.js';

export function expandEgress(req: ExpandRequest): ExpandResponse {
  const units = req.expanded.filter((r) => r.provider === 'systemd');
  if (units.length === 0) return { resources: [], diagnostics: [] };
  const server: DesiredResource = {
    address: EGRESS_SERVER_ADDRESS,
    provider: 'egress',
    workload: HOST_WORKLOAD,
    identity: 'agentvm-egress.service',
    config: {
      scope: req.host.spec.systemd?.scope ?? 'system',
      resolvers: req.host.spec.egress?.resolvers ?? [],
      callers: units.map((u) => ({
        id: u.address,
        workload: u.workload,
        profile: u.config.profile,
        entries: u.config.egress,
        listenPort: (u.config.listen as { port?: number } | null)?.port ?? null,
        ...injectionsOf(u.config.secrets),
      })),
      ...(req.host.spec.egress?.upstreamTrustAnchors?.length ? { upstreamTrustAnchors: req.host.spec.egress.upstreamTrustAnchors } : {}),
    },
    dependsOn: [],
  };
  return { resources: [server], diagnostics: [] };
}

/** The caller's injected secrets as proxy routes (decisions/0023): names and where, never a value. */
function injectionsOf(secrets: unknown): { inject?: InjectionRoute[] } {
  const routes = (Array.isArray(secrets) ? secrets : [])
    .filter((s): s is { name: string; inject: { host: string; header: string; format?: string } } => typeof s === 'object' && s !== null && typeof (s as { inject?: unknown }).inject === 'object' && (s as { inject?: unknown }).inject !== null)
    .map((s) => ({ name: s.name, host: s.inject.host, header: s.inject.header, format: s.inject.format ?? '{}' }));
  return routes.length ? { inject: routes } : {};
}
