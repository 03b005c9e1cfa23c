// What the gate provider plans: `gate.<workload>.<preview>`, a route per preview, after the workload's units and the
// gate server; and `gate.server`, the host's `agentvm-gate.service`, only where there is something to gate — a host
// without previews has no gate server, and a plan deletes the one it had. The server is a host-level resource:
// its workload is HOST_WORKLOAD. Pure: no I/O.

import { HOST_WORKLOAD, type DesiredResource } from '../../model/index.js';
import type { ExpandRequest, ExpandResponse } from '../provider.js';
import { GATE_SERVER_ADDRESS } from './server-unit.js';

export function expandGate(req: ExpandRequest): ExpandResponse {
  const resources: DesiredResource[] = [];
  for (const w of req.workloads) {
    const units = req.expanded
      .filter((r) => r.workload === w.name && r.address.startsWith(`unit.${w.name}.`))
      .map((r) => r.address);
    for (const preview of w.manifest.spec.previews ?? []) {
      resources.push({
        address: `gate.${w.name}.${preview.name}`,
        provider: 'gate',
        workload: w.name,
        identity: `${w.name}/${preview.name}`,
        config: {
          preview: preview.name,
          upstream: preview.upstream,
          maxTtl: preview.maxTtl,
          grantees: preview.grantees ?? [],
        },
        dependsOn: [...units, GATE_SERVER_ADDRESS],
      });
    }
  }
  if (resources.length > 0) {
    const gate = req.host.spec.gate ?? {};
    resources.push({
      address: GATE_SERVER_ADDRESS,
      provider: 'gate',
      workload: HOST_WORKLOAD,
      identity: 'agentvm-gate.service',
      config: {
        address: gate.address ?? '127.0.0.1',
        port: gate.port ?? 8443,
        tls: gate.tls ? { cert: gate.tls.cert, key: gate.tls.key } : null,
        ...(gate.publicUrl ? { publicUrl: gate.publicUrl } : {}),
        ...(gate.routing === 'path' ? { routing: 'path' } : {}),
        ...(gate.domain ? { domain: gate.domain } : {}),
        scope: req.host.spec.systemd?.scope ?? 'system',
      },
      dependsOn: [],
    });
  }
  return { resources, diagnostics: [] };
}
