// Remote plans (ADR 0017): `agentvm plan --remote --host H` plans H from what H's agent last published — its provider
// reads (the live state), with the lockfile from the shared backend — so a machine with no access to H (a pull-request
// bot) makes the plan H itself would make for the same commit. The plan says how old the facts are, and is never
// applied: only H applies, by reading itself.
// Invariants:
// - Published reads are the providers' LiveResource values, which plans already carry and which never hold a secret
//   value (providers report identities and digests); the agent publishes nothing else of the host's configuration.
// - The remote plan's content (and so its id) is computed exactly as on the host; `remote` sits outside the content id.

import { AgentvmError, type Diagnostic } from '../diagnostics/index.js';
import type { Plan } from '../engine/plan.js';
import type { Address, LiveResource } from '../model/resources.js';
import { PostgresStateBackend } from '../state/postgres/backend.js';
import { makePlan, stateBackend, type LiveReads, type PlanOptions, type PlanSession } from './plan.js';

/** What a host publishes of its provider reads. */
export interface PublishedReads {
  live: LiveResource[];
  owned: Array<[Address, string]>;
  diagnostics: Diagnostic[];
}

export function publishableReads(reads: LiveReads): PublishedReads {
  return {
    live: [...reads.live.values()].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0)),
    owned: [...reads.owned.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)),
    diagnostics: reads.diagnostics,
  };
}

export function readsFrom(published: PublishedReads): LiveReads {
  return {
    live: new Map(published.live.map((r) => [r.address, r])),
    owned: new Map(published.owned),
    diagnostics: published.diagnostics.map((d) => ({ ...d })),
  };
}

/** The PostgreSQL backend, or a clear error: remote plans and fleets need the shared state. */
export function sharedBackend(root: string, what: string): PostgresStateBackend {
  const backend = stateBackend(root);
  if (!(backend instanceof PostgresStateBackend)) {
    throw new AgentvmError(
      'fleet.needs-postgres',
      `${what} needs the PostgreSQL state backend; this command uses the local files under ${root}.`,
      {
        detail: 'Pass `--state-backend postgres` (URL in $AGENTVM_PG_URL), or declare `spec.state` in agentvm.yaml.',
      },
    );
  }
  return backend;
}

export async function makeRemotePlan(opts: PlanOptions & { host: string }): Promise<PlanSession> {
  const backend = sharedBackend(opts.root, '`agentvm plan --remote`');
  const facts = await backend.readFacts<{ reads?: PublishedReads; commit?: string | null }>(opts.host);
  if (!facts?.facts.reads) {
    throw new AgentvmError(
      'plan.no-published-facts',
      `Host "${opts.host}" has not published its live state to ${backend.location}.`,
      {
        detail: `Its agent publishes after each run: start it on the host (\`agentvm agent --host ${opts.host}\`, or the shipped agentvm-agent.timer), or plan on the host itself.`,
      },
    );
  }
  const reads = facts.facts.reads;
  const session = await makePlan({ ...opts, liveSource: async () => readsFrom(reads) });
  const plan: Plan = {
    ...session.plan,
    remote: {
      publishedAt: facts.publishedAt,
      ageSeconds: facts.ageSeconds,
      appliedCommit: facts.facts.commit ?? null,
      backend: backend.location,
    },
  };
  return { ...session, plan };
}

/** A remote plan is for review only: the host applies by reading itself. */
export function refuseRemotePlan(plan: Plan): void {
  if (!plan.remote) return;
  throw new AgentvmError(
    'apply.remote-plan',
    `This plan of host "${plan.host}" was made from its published facts (${plan.remote.ageSeconds} s old), not by reading the host; it cannot be applied.`,
    {
      detail: `Only ${plan.host} applies its own state: its agent does so on its next run, or run \`agentvm plan --out <file>\` and \`agentvm apply <file>\` on ${plan.host} itself.`,
    },
  );
}
