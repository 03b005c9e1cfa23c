// Use case behind `agentvm fleet status` (ADR 0017): every host as its agent last published it, in ONE query (no
// per-host round trips: a thousand hosts answer in milliseconds). Imports nothing of the planner or the providers, so
// the command starts as fast as the CLI can.

import { AgentvmError } from '../diagnostics/index.js';
import type { FleetStatusDocument } from '../generated/fleet-status-result.js';
import { PostgresStateBackend } from '../state/postgres/backend.js';
import type { AgentReport } from './agent.js';
import { openStateBackend } from './state-backend.js';

/** The --json result of `fleet status`: the type generated from schemas/fleet-status-result.schema.json. */
export type FleetStatusResult = FleetStatusDocument;
export type FleetHostStatus = FleetStatusDocument['hosts'][number];

export async function fleetStatus(root: string): Promise<FleetStatusResult> {
  const backend = openStateBackend(root);
  if (!(backend instanceof PostgresStateBackend)) {
    throw new AgentvmError(
      'fleet.needs-postgres',
      `\`agentvm fleet status\` needs the PostgreSQL state backend; this command uses the local files under ${root}.`,
      {
        detail: 'Pass `--state-backend postgres` (URL in $AGENTVM_PG_URL), or declare `spec.state` in agentvm.yaml.',
      },
    );
  }
  const rows = await backend.fleetRows();
  return {
    formatVersion: 1,
    backend: backend.location,
    hosts: rows.map((r) => {
      const s = r.summary as Partial<AgentReport> | null;
      return {
        host: r.host,
        commit: s?.commit ?? r.lockCommit ?? null,
        target: s?.target ?? null,
        status: r.status,
        reason: s?.reason ?? s?.health?.reason ?? null,
        healthy: s?.health ? s.health.ok : null,
        failingUnits: s?.health?.failing ?? [],
        drift: s?.drift?.length ?? 0,
        lastSeen: r.publishedAt,
        ageSeconds: r.ageSeconds,
        lease: r.lease
          ? {
              who: r.lease.who,
              operation: r.lease.operation,
              pid: r.lease.pid,
              hostname: r.lease.hostname,
              expires: r.lease.expires,
              expired: r.leaseExpired === true,
            }
          : null,
      };
    }),
  };
}
