// What the MCP provider plans: `mcp.<workload>.<profile>`, one MCP gateway per profile of a service workload whose
// contract declares `kind: mcp` tools (decisions/0022). Its config is the servers with their pins, the tier (the
// stdio servers' sandbox) and the release (where stdio servers start). It waits for the release (the servers' code)
// and the egress proxy (which prepares the shared audit log); the profile's unit waits for it (systemd's expand
// names it), so the socket exists before the profile starts. Pure: no I/O.

import type { DesiredResource } from '../../model/index.js';
import { mcpAddress, mcpUnitName } from '../../mcp/paths.js';
import type { ExpandRequest, ExpandResponse, ExpandWorkload } from '../provider.js';
import { releaseIdOf } from '../release/expand.js';
import { releaseAddress } from '../release/release-lifecycle.js';
import { EGRESS_SERVER_ADDRESS } from '../egress/unit.js';

export interface McpServerConfig {
  name: string;
  command?: string[];
  url?: string;
  tools: Array<{ name: string; sha256: string }>;
}

/** The `kind: mcp` servers of a workload's contract (empty: the workload has no MCP gateway). */
export function mcpServersOf(w: Pick<ExpandWorkload, 'contract'>): McpServerConfig[] {
  return (w.contract.spec.tools ?? [])
    .filter((t) => t.kind === 'mcp')
    .map((t) => ({
      name: t.name,
      ...(t.command ? { command: [...t.command] } : {}),
      ...(t.url ? { url: t.url } : {}),
      tools: (t.tools ?? []).map((p) => ({ name: p.name, sha256: p.sha256 })),
    }));
}

export function expandMcpGateways(req: ExpandRequest): ExpandResponse {
  const scope = req.host.spec.systemd?.scope ?? 'system';
  const expanded = new Set(req.expanded.map((r) => r.address));
  const resources: DesiredResource[] = [];
  for (const w of req.workloads) {
    if (w.contract.spec.substrate !== 'service') continue;
    const servers = mcpServersOf(w);
    const releaseId = releaseIdOf(w);
    if (servers.length === 0 || releaseId === null) continue;
    const release = releaseAddress(w.name);
    for (const profile of w.manifest.spec.profiles ?? []) {
      resources.push({
        address: mcpAddress(w.name, profile.name),
        provider: 'mcp',
        workload: w.name,
        identity: mcpUnitName(w.name, profile.name),
        config: {
          workload: w.name,
          profile: profile.name,
          scope,
          riskTier: w.contract.spec.riskTier,
          releaseId,
          servers,
        },
        dependsOn: [...(expanded.has(release) ? [release] : []), EGRESS_SERVER_ADDRESS],
      });
    }
  }
  return { resources, diagnostics: [] };
}
