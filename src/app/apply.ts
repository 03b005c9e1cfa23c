// Use case: apply a plan. Dry-run by default (a saved plan or --auto-approve is required; the command layer
// enforces it). Holds the host's lease for the whole run, refuses stale saved plans, walks the dependency graph
// (apply-walk.ts) with bounded concurrency, persists the lockfile after every resource (and the rollback target before any
// release changes — capture-first) through the host's apply log — one O(1) write-ahead-log batch per durable step,
// which also records what is done so an interrupted apply is visible and resumable (ADR 0005) — and writes one audit
// event per action, its head stored in the same batch. The core never prints: progress goes out as ApplyEvents.

import { resolveCommit } from '../contracts/git-source.js';
import { AgentvmError, ExitCode } from '../diagnostics/index.js';
import { liveFingerprint, type Plan } from '../engine/plan.js';
import type { Address, LockedResource } from '../model/resources.js';
import type { HostContext } from '../providers/provider.js';
import type { ProviderRegistry } from '../providers/registry.js';
import type { Lockfile, StateBackend } from '../state/index.js';
import { hostContext, makePlan, readLive, readPlanFile, stateBackend, type PlanOptions } from './plan.js';
import { registryFor } from './registry.js';
import { assertPlanBound } from './plan-binding.js';
import { verifyPlanSignature } from './plan-signature.js';
import { walkPlan, type ApplyEvent } from './apply-walk.js';
import type { DesiredState } from '../contracts/desired-state.js';
import { loadDesiredState, selectHost } from './desired.js';
import type { ApplyResultDocument } from '../generated/apply-result.js';

export type { ApplyEvent } from './apply-walk.js';

/** The --json result; its type is generated from the schema (schemas/ are the source of truth). */
export type ApplyResult = ApplyResultDocument;

export interface ApplyOptions {
  /** A saved plan file, or undefined to plan now (auto-approve). */
  planFile?: string;
  /**
   * Apply only a plan file signed with this public key (PEM file): `--require-signed-plan --plan-key <key.pub>`.
   * Without a plan file, or when its signature does not verify, nothing is applied.
   */
  requireSignedPlanKey?: string;
  plan?: PlanOptions;
  root: string;
  concurrency?: number;
  onEvent?: (e: ApplyEvent) => void;
  /** The operation name recorded in the lease and audit log. */
  operation?: string;
  /** A plan already made (rollback, interactive approval) to apply as is, still checked for staleness. */
  approvedPlan?: Plan;
}

export const DEFAULT_APPLY_CONCURRENCY = 4;

export function exitCodeFor(result: ApplyResult): ExitCode {
  return result.status === 'partial' ? ExitCode.PartialApply : ExitCode.Ok;
}

export async function runApply(opts: ApplyOptions): Promise<ApplyResult> {
  const started = Date.now();
  const backend = stateBackend(opts.root);
  const saved = await savedPlan(opts);
  // A saved plan names its host; an auto-approved plan is made under the lease (no race).
  const host = saved?.host ?? (await hostOf(opts.plan));
  const lease = await backend.acquireLease(host, opts.operation ?? 'apply');
  try {
    const session = await planUnderLease(saved, opts, backend);
    refuseInapplicable(session.plan);
    const walk = {
      emit: opts.onEvent ?? (() => {}),
      started,
      concurrency: opts.concurrency ?? DEFAULT_APPLY_CONCURRENCY,
      operation: opts.operation ?? 'apply',
    };
    return await walkPlan({ ...session, backend, lease, ...walk });
  } finally {
    await lease.release();
  }
}

/** The plan given to apply (approved in-process or read from a file), its signature checked when one is required. */
async function savedPlan(opts: ApplyOptions): Promise<Plan | undefined> {
  const saved = opts.approvedPlan ?? (opts.planFile ? readPlanFile(opts.planFile) : undefined);
  if (opts.requireSignedPlanKey !== undefined) {
    if (!opts.planFile || !saved || opts.approvedPlan) {
      throw new AgentvmError(
        'apply.plan-unsigned',
        'A signed plan is required (--require-signed-plan), but there is no plan file to check.',
        {
          detail:
            'Give the signed plan file: `agentvm apply <plan.json> --require-signed-plan --plan-key <key.pub>`. Nothing was applied.',
        },
      );
    }
    // Before the lease and before anything is read from the host: an unsigned plan is not even looked at further.
    await verifyPlanSignature(opts.planFile, saved, opts.requireSignedPlanKey);
  }
  return saved;
}

interface PlanSession {
  plan: Plan;
  registry: ProviderRegistry;
  context: HostContext;
  lock: Lockfile | null;
  state: DesiredState;
}

/** Under the lease: a saved plan checked fresh (and bound to its commit when it came from a file), or a new plan. */
async function planUnderLease(
  saved: Plan | undefined,
  opts: ApplyOptions,
  backend: StateBackend,
): Promise<PlanSession> {
  if (!saved) {
    const { plan, registry, context, lock, state } = await makePlan({ ...opts.plan!, root: opts.root });
    return { plan, registry, context, lock, state };
  }
  const fresh = await checkFresh(saved, opts.root, backend);
  // A plan from a file is bound to its commit: re-derived here, under the lease, and refused if it differs.
  if (opts.planFile && !opts.approvedPlan) {
    const derived = await makePlan({
      repo: saved.source.repo,
      ref: saved.source.commit ?? saved.source.ref,
      host: saved.host,
      root: opts.root,
      mode: saved.mode,
    });
    assertPlanBound(saved, derived.plan, opts.planFile);
  }
  return { plan: saved, ...fresh };
}

async function hostOf(plan: PlanOptions | undefined): Promise<string> {
  if (!plan)
    throw new AgentvmError('apply.no-plan', 'Nothing to apply: no plan file and no auto-approve.', {
      source: 'toolkit',
    });
  if (plan.host) return plan.host;
  const { state } = await loadDesiredState(plan.repo, plan.ref);
  return selectHost(state, undefined);
}

/** Refuses plans that must never be applied (refresh-only, uncommitted, policy errors); callers may check before asking. */
export function refuseInapplicable(plan: Plan): void {
  if (plan.mode === 'refresh-only')
    throw new AgentvmError('apply.refresh-only', 'A refresh-only plan reports drift; it has nothing to apply.', {
      detail: 'Run `agentvm plan --out <file>` (without --refresh-only) and apply that.',
    });
  if (plan.source.uncommitted)
    throw new AgentvmError('apply.uncommitted', 'This plan reads uncommitted files (WORKTREE) and cannot be applied.', {
      detail: 'Commit the desired state, then plan and apply the commit.',
    });
  const errors = plan.diagnostics.filter((d) => d.severity === 'error');
  if (errors.length) {
    throw new AgentvmError('apply.plan-has-errors', `The plan has ${errors.length} error(s); nothing was applied.`, {
      diagnostics: errors,
      detail: 'Fix the errors in the desired state, then plan again.',
    });
  }
}

/** A saved plan is stale when its commit, the lockfile (lineage, serial) or the live host changed since planning. */
async function checkFresh(
  plan: Plan,
  root: string,
  backend: StateBackend,
): Promise<{ registry: ProviderRegistry; context: HostContext; lock: Lockfile | null; state: DesiredState }> {
  const stale = (what: string, detail: string) =>
    new AgentvmError('apply.stale-plan', `Saved plan is stale: ${what}.`, {
      detail: `${detail} Make a new plan with \`agentvm plan --out <file>\` and review it.`,
    });
  if (plan.source.commit && plan.source.ref !== plan.source.commit) {
    let now: string | undefined;
    try {
      now = await resolveCommit(plan.source.repo, plan.source.ref);
    } catch {
      now = undefined;
    }
    if (now !== plan.source.commit)
      throw stale(
        `${plan.source.ref} now points at ${now ?? 'nothing'}, the plan was made from ${plan.source.commit}`,
        'The desired state moved on after the plan was made.',
      );
  }
  const lock = await backend.readLockfile(plan.host);
  if ((lock?.lineage ?? null) !== plan.lock.lineage)
    throw stale(
      `the lockfile lineage is ${lock?.lineage ?? 'none'}, the plan was made against ${plan.lock.lineage ?? 'none'}`,
      'The state was replaced after the plan was made.',
    );
  if ((lock?.serial ?? 0) !== plan.lock.serial)
    throw stale(
      `the lockfile is at serial ${lock?.serial ?? 0}, the plan was made at serial ${plan.lock.serial}`,
      'The state was changed by another operation after the plan was made.',
    );
  const { state } = await loadDesiredState(plan.source.repo, plan.source.commit ?? plan.source.ref);
  const { registry } = await registryFor(state);
  const context = hostContext(root, plan.host, plan.source.repo);
  const desired = plan.changes.flatMap((c) => (c.desired ? [c.desired] : []));
  const { live } = await readLive(
    registry,
    context,
    desired,
    (lock?.resources ?? {}) as Record<Address, LockedResource>,
  );
  if (liveFingerprint(live) !== plan.liveFingerprint)
    throw stale(
      'the live host changed since the plan was made',
      'Something changed releases or units on the host after planning.',
    );
  return { registry, context, lock, state };
}
