// The closed vocabulary of planning: resources, addresses, actions, effects, reasons, changes and drift.
// Plain data only; no I/O. Every provider speaks this vocabulary, every view renders it.

export type Action = 'create' | 'update' | 'replace' | 'delete' | 'noop';
export type Effect = 'none' | 'reload' | 'restart' | 'replace';

/** Worst first: the order in which an operator cares. */
export const ACTION_SEVERITY: Record<Action, number> = { noop: 0, create: 1, update: 2, replace: 3, delete: 4 };
export const EFFECT_SEVERITY: Record<Effect, number> = { none: 0, reload: 1, restart: 2, replace: 3 };

/**
 * Reason codes say WHY a change is planned. Closed set: views and bots match on them.
 * - `new`: not applied before; `removed`: no longer in the desired state
 * - `source-changed`: the pinned commit/version changed; `config-changed`: desired attributes changed
 * - `live-missing`: the lockfile says it exists, the host does not have it
 * - `live-modified`: the host's copy differs from what was applied (drift)
 * - `dependency-changed`: something it depends on changes (e.g. its release)
 * - `rollback`: restoring the recorded rollback target
 * - `orphan`: owned by agentvm on the host, known to neither the desired state nor the lockfile
 * - `captured`: found live but never applied by agentvm; captured as the rollback target before changing
 */
export type ReasonCode =
  | 'new'
  | 'removed'
  | 'source-changed'
  | 'config-changed'
  | 'live-missing'
  | 'live-modified'
  | 'dependency-changed'
  | 'rollback'
  | 'orphan'
  | 'captured';

export interface Reason {
  code: ReasonCode;
  message: string;
}

/**
 * The `workload` of host-level resources (gate.server). Not a DNS label, so no workload can be named like it; views
 * group by it like a workload name and sort it first (`(` precedes every letter).
 */
export const HOST_WORKLOAD = '(host)';

/** `release.<workload>`, `unit.<workload>.<profile>`, `job.<workload>.<job>`, `gate.<workload>.<preview>`. */
export type Address = string;

/** One resource as the desired state says it should be. `config` is JSON data, never a secret value. */
export interface DesiredResource {
  address: Address;
  /** Provider type that owns it, e.g. `release.git`. */
  provider: string;
  workload: string;
  /** Provider-specific desired configuration (JSON-serialisable). */
  config: Record<string, unknown>;
  /** Addresses this resource must wait for. */
  dependsOn: Address[];
  /** Desired identity of the applied object (e.g. commit, version+integrity): what "same" means. */
  identity: string;
}

/** What a provider read from the host for one resource. `digest` identifies the live content. */
export interface LiveResource {
  address: Address;
  provider: string;
  exists: boolean;
  /** Identity of what is live (e.g. the commit of the current release), if known. */
  identity?: string;
  digest?: string;
  attributes?: Record<string, unknown>;
}

/** What the lockfile recorded when agentvm last applied the resource. */
export interface LockedResource {
  address: Address;
  provider: string;
  workload: string;
  identity: string;
  digest: string;
  /** Commit of the desired-state repository the resource was applied from. */
  commit: string | null;
  appliedAt: string;
  attributes?: Record<string, unknown>;
}

export interface PlannedChange {
  address: Address;
  provider: string;
  workload: string;
  action: Action;
  effect: Effect;
  reasons: Reason[];
  before?: { identity?: string; digest?: string };
  after?: { identity: string };
  /** Desired config carried into apply (saved plans are applied without re-reading the repo). */
  desired?: DesiredResource;
  /** The config the lockfile recorded at the last apply (when the provider records one): the "before" of a diff. */
  recorded?: { config: Record<string, unknown> };
  dependsOn: Address[];
}

export interface DriftItem {
  address: Address;
  provider: string;
  reasons: Reason[];
  locked?: { identity: string; digest: string };
  live?: { identity?: string; digest?: string; exists: boolean };
}

export function worstAction(actions: Iterable<Action>): Action {
  let worst: Action = 'noop';
  for (const a of actions) if (ACTION_SEVERITY[a] > ACTION_SEVERITY[worst]) worst = a;
  return worst;
}

export function worstEffect(effects: Iterable<Effect>): Effect {
  let worst: Effect = 'none';
  for (const e of effects) if (EFFECT_SEVERITY[e] > EFFECT_SEVERITY[worst]) worst = e;
  return worst;
}
