// What the systemd provider plans from a service workload: `unit.<workload>.<profile>`, one gateway unit per
// profile, after the workload's release. With a canary, every other profile's unit waits for the canary's (which
// soaks after a promotion), so a canary that fails leaves them untouched: apply skips the dependents of a failed
// resource. Pure: no I/O.

import type { DesiredResource } from '../../model/index.js';
import type { ExpandRequest, ExpandResponse } from '../provider.js';
import { releaseIdOf } from '../release/expand.js';
import { releaseAddress } from '../release/release-lifecycle.js';
import { programsOf } from './exec-allowlist.js';
import { mcpPinsOf } from './mcp-pins.js';
import { DEFAULT_DATA_ROOT, overlapWarnings } from './data-mounts.js';
import { EGRESS_SERVER_ADDRESS } from '../egress/unit.js';
import { mcpAddress } from '../../mcp/paths.js';

export const unitAddress = (workload: string, profile: string): string => `unit.${workload}.${profile}`;

export function expandGatewayUnits(req: ExpandRequest): ExpandResponse {
  const scope = req.host.spec.systemd?.scope ?? 'system';
  const released = new Set(req.expanded.map((r) => r.address));
  const resources: DesiredResource[] = [];
  for (const w of req.workloads) {
    const { contract, manifest } = w;
    if (contract.spec.substrate !== 'service') continue;
    const release = releaseAddress(w.name);
    const hasRelease = released.has(release);
    const profiles = manifest.spec.profiles ?? [];
    const canaryProfile = manifest.spec.canary?.profile;
    const canaryUnit = profiles.some((p) => p.name === canaryProfile) ? unitAddress(w.name, canaryProfile!) : undefined;
    // A profile with MCP servers reaches them only through its gateway (providers/mcp/expand.ts): it starts first.
    const hasMcp = mcpPinsOf(contract.spec.tools).length > 0 && releaseIdOf(w) !== null;
    for (const profile of profiles) {
      const address = unitAddress(w.name, profile.name);
      resources.push({
        address,
        provider: 'systemd',
        workload: w.name,
        identity: `${w.name}/${profile.name}`,
        config: {
          profile: profile.name,
          entrypoint: profile.entrypoint,
          env: profile.env ?? {},
          listen: profile.listen ?? null,
          health: profile.health ?? null,
          reload: profile.reload ?? false,
          riskTier: contract.spec.riskTier,
          egress: contract.spec.egress ?? [],
          secrets: (contract.spec.secrets ?? []).map((s) => ({
            name: s.name,
            ref: s.ref,
            ...(s.inject
              ? {
                  inject: {
                    host: s.inject.host.toLowerCase(),
                    header: s.inject.header.toLowerCase(),
                    ...(s.inject.format ? { format: s.inject.format } : {}),
                  },
                }
              : {}),
          })),
          canary: manifest.spec.canary ?? null,
          releaseId: releaseIdOf(w),
          scope,
          programs: programsOf(contract.spec.tools),
          mcp: mcpPinsOf(contract.spec.tools),
          // Project data (ADR 0024): the grants as declared, and where the host keeps them.
          data: (contract.spec.data ?? []).map((d) => ({ path: d.path, access: d.access })),
          dataRoot: req.host.spec.data?.root ?? DEFAULT_DATA_ROOT,
        },
        // The host's egress proxy is every unit's only way out (and in): it starts first (providers/egress/expand.ts).
        dependsOn: [
          ...(hasRelease ? [release] : []),
          ...(canaryUnit && canaryUnit !== address ? [canaryUnit] : []),
          EGRESS_SERVER_ADDRESS,
          ...(hasMcp ? [mcpAddress(w.name, profile.name)] : []),
        ],
      });
    }
  }
  // Grants another workload of the host could replace (data-mounts.ts): warned on the unit that would bind them.
  const grants = req.workloads
    .filter((w) => w.contract.spec.substrate === 'service')
    .map((w) => ({
      name: w.name,
      units: (w.manifest.spec.profiles ?? []).map((p) => unitAddress(w.name, p.name)),
      grants: w.contract.spec.data ?? [],
    }));
  return { resources, diagnostics: overlapWarnings(grants) };
}
