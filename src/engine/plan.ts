// The plan: a pure function of (desired, live, lock) → Plan (STYLE principle 1). Providers contribute their own
// pure `plan` step; the engine unions addresses, orders them, collects changes, drift and diagnostics, and
// summarises. Nothing here performs I/O, and the plan never contains a secret value (desired configs hold
// references only — governance guarantees it before planning).

import { compareDiagnostics, hasErrors, warningDiag, type Diagnostic } from '../diagnostics/index.js';
import type { PlanRequest, PlanResponse } from '../providers/provider.js';
import { planCapabilities, type WorkloadCapabilities } from './capabilities.js';
import { fingerprint } from '../model/canonical-json.js';
import { orderGraph } from './graph.js';
import type { PlanDocument } from '../generated/plan.js';
import {
  worstAction,
  worstEffect,
  type Action,
  type Address,
  type DesiredResource,
  type DriftItem,
  type LiveResource,
  type LockedResource,
  type PlannedChange,
} from '../model/resources.js';

export const PLAN_FORMAT_VERSION = 1;

export type PlanMode = PlanDocument['mode'];
export type PlanSource = PlanDocument['source'];
export type PlanSummary = PlanDocument['summary'];
/** Where a remote plan's live state came from (outside the plan's content id: the same plan as the host would make). */
export type RemotePlanSource = NonNullable<PlanDocument['remote']>;

/**
 * The plan, as schemas/plan.schema.json defines it (`PlanDocument`, generated): its elements are the model's words
 * (`PlannedChange`, `DriftItem`, `Diagnostic`), which carry more than the schema says of them (typed configs). The
 * check below makes every Plan a valid PlanDocument, so a schema change the code does not follow is a compile error.
 * - `id` is the content id: fingerprint of everything but `createdAt`.
 * - `lock` is the lockfile the plan was made against and `liveFingerprint` the live state it read: apply refuses the
 *   plan if either moved on.
 * - `changes` are in apply order (dependencies first); noops are included for completeness.
 * - `applicable` is false when the plan has errors or comes from uncommitted files: such a plan is shown, never applied.
 */
export type Plan = Omit<PlanDocument, 'changes' | 'drift' | 'capabilities' | 'diagnostics'> & {
  changes: PlannedChange[];
  drift: DriftItem[];
  /** Per workload, what the plan changes in what it may do (egress destinations added/removed, with risk flags). */
  capabilities?: WorkloadCapabilities[];
  diagnostics: Diagnostic[];
};
/** Compile-time: a Plan is a PlanDocument (the schema is the source of truth, decisions/0002). */
type Assignable<T extends U, U> = T;
export type PlanIsDocument = Assignable<Plan, PlanDocument>;

export interface PlanInput {
  host: string;
  mode: PlanMode;
  source: PlanSource;
  createdAt: string;
  desired: readonly DesiredResource[];
  /** Live state per address, as providers read it (an absent entry means "not found"). */
  live: ReadonlyMap<Address, LiveResource>;
  /** Addresses providers reported as theirs on the host (`list`), for orphan detection. */
  owned: ReadonlyMap<Address, string>;
  lock: { lineage: string | null; serial: number; resources: Readonly<Record<Address, LockedResource>> };
  planners: ReadonlyMap<string, { plan(req: PlanRequest): PlanResponse }>;
  /** Diagnostics from reading, validation and policy; carried into the plan. */
  diagnostics: readonly Diagnostic[];
}

export function liveFingerprint(live: ReadonlyMap<Address, LiveResource>): string {
  return fingerprint([...live.values()].sort((a, b) => (a.address < b.address ? -1 : 1)));
}

export function computePlan(input: PlanInput): Plan {
  const diagnostics: Diagnostic[] = [...input.diagnostics];
  const desiredBy = new Map(input.desired.map((d) => [d.address, d]));
  const addresses = new Set<Address>([
    ...desiredBy.keys(),
    ...Object.keys(input.lock.resources),
    ...input.owned.keys(),
  ]);

  const unavailable = new Set<string>();
  const changes: PlannedChange[] = [];
  const drift: DriftItem[] = [];
  const graph = orderGraph([...addresses].map((a) => ({ address: a, dependsOn: desiredBy.get(a)?.dependsOn ?? [] })));
  diagnostics.push(...graph.diagnostics);

  for (const address of graph.order) {
    const desired = desiredBy.get(address);
    const locked = input.lock.resources[address];
    const providerType =
      desired?.provider ?? locked?.provider ?? input.owned.get(address) ?? input.live.get(address)?.provider;
    const planner = providerType ? input.planners.get(providerType) : undefined;
    if (!providerType || !planner) {
      if (providerType && !unavailable.has(providerType)) {
        unavailable.add(providerType);
        diagnostics.push(
          warningDiag(
            'provider.unavailable',
            `No provider \`${providerType}\` is available on this build; its resources are not planned.`,
            {
              detail:
                'Install or enable the provider (agentvm.yaml spec.providers for third-party ones); until then these resources are left untouched.',
              address,
            },
          ),
        );
      }
      continue;
    }
    const live = input.live.get(address) ?? { address, provider: providerType, exists: false };
    const orphan = !desired && !locked && input.owned.has(address);
    const res = planner.plan({ address, ...(desired ? { desired } : {}), live, ...(locked ? { locked } : {}) });
    diagnostics.push(...res.diagnostics.map((d) => ({ ...d, address: d.address ?? address })));
    if (res.drift.length > 0 || orphan) {
      drift.push({
        address,
        provider: providerType,
        reasons:
          orphan && res.drift.length === 0
            ? [
                {
                  code: 'orphan',
                  message: 'Owned by agentvm on this host but in neither the desired state nor the lockfile.',
                },
              ]
            : res.drift,
        ...(locked ? { locked: { identity: locked.identity, digest: locked.digest } } : {}),
        live: {
          exists: live.exists,
          ...(live.identity !== undefined ? { identity: live.identity } : {}),
          ...(live.digest !== undefined ? { digest: live.digest } : {}),
        },
      });
    }
    if (input.mode === 'refresh-only') continue;
    const workload = desired?.workload ?? locked?.workload ?? address.split('.')[1] ?? '';
    changes.push({
      address,
      provider: providerType,
      workload,
      action: res.action,
      effect: res.effect,
      reasons: res.reasons,
      ...(locked || live.exists
        ? {
            before: {
              ...((live.identity ?? locked?.identity) ? { identity: live.identity ?? locked?.identity } : {}),
              ...((live.digest ?? locked?.digest) ? { digest: live.digest ?? locked?.digest } : {}),
            },
          }
        : {}),
      ...(desired ? { after: { identity: desired.identity }, desired } : {}),
      ...(recordedConfig(locked) ? { recorded: { config: recordedConfig(locked)! } } : {}),
      dependsOn: graph.deps.get(address) ?? [],
    });
  }

  restartOnInPlaceRepair(changes);
  diagnostics.sort(compareDiagnostics);
  const count = (a: Action) => changes.filter((c) => c.action === a).length;
  const errors = diagnostics.filter((d) => d.severity === 'error').length;
  const summary: PlanSummary = {
    create: count('create'),
    update: count('update'),
    replace: count('replace'),
    delete: count('delete'),
    noop: count('noop'),
    drift: drift.length,
    errors,
    warnings: diagnostics.length - errors,
    worstAction: worstAction(changes.map((c) => c.action)),
    worstEffect: worstEffect(changes.filter((c) => c.action !== 'noop').map((c) => c.effect)),
  };
  const body = {
    formatVersion: PLAN_FORMAT_VERSION,
    host: input.host,
    mode: input.mode,
    source: input.source,
    lock: { lineage: input.lock.lineage, serial: input.lock.serial },
    liveFingerprint: liveFingerprint(input.live),
    changes,
    drift,
    capabilities: planCapabilities(changes),
    diagnostics,
    summary,
    applicable: !hasErrors(diagnostics) && !input.source.uncommitted && input.mode !== 'refresh-only',
  } as const;
  return { ...body, id: fingerprint(body), createdAt: input.createdAt };
}

/**
 * A release replaced under the same identity (a repair: its files were changed on the host, so apply reinstalls
 * the same commit) is new bytes in the directory the profiles run from. Their unit config did not change, so their
 * planners said noop; without a restart they keep running the tampered files, and the next plan would show them
 * changed (two applies to converge — issue 18). They restart in the same apply: the systemd provider re-reads the
 * live unit at apply time, sees the release replaced after the process started, and restarts it.
 */
function restartOnInPlaceRepair(changes: PlannedChange[]): void {
  const repaired = new Set(
    changes
      .filter(
        (c) =>
          c.action === 'replace' &&
          c.provider.startsWith('release.') &&
          c.before?.identity !== undefined &&
          c.before.identity === c.after?.identity,
      )
      .map((c) => c.address),
  );
  if (repaired.size === 0) return;
  for (const c of changes) {
    if (c.action !== 'noop' || c.provider !== 'systemd') continue;
    const dep = c.dependsOn.find((d) => repaired.has(d));
    if (!dep) continue;
    c.action = 'update';
    c.effect = 'restart';
    c.reasons = [
      {
        code: 'dependency-changed',
        message: `${c.address}: ${dep} is reinstalled in place (its files were changed on the host); the unit restarts to run the repaired files`,
      },
    ];
  }
}

/** True when applying the plan would change something. */
export function hasChanges(plan: Plan): boolean {
  return plan.changes.some((c) => c.action !== 'noop');
}

/** The desired config a provider stored in the lockfile entry at apply (`attributes.config`), if it stores one. */
function recordedConfig(locked: LockedResource | undefined): Record<string, unknown> | undefined {
  const config = locked?.attributes?.config;
  return config !== null && typeof config === 'object' && !Array.isArray(config)
    ? (config as Record<string, unknown>)
    : undefined;
}
