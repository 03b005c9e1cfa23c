// Use case: apply a plan. Dry-run by default (a saved plan or --auto-approve is required; the command layer
// enforces it). Holds the host's lease for the whole run, refuses stale saved plans, walks the dependency graph
// with bounded concurrency, persists the lockfile after every resource (and the rollback target before any
// release changes — capture-first) through the host's apply log — one O(1) write-ahead-log batch per durable step,
// which also records what is done so an interrupted apply is visible and resumable (ADR 0005) — and writes one audit
// event per action, its head stored in the same batch. The core never prints: progress goes out as ApplyEvents.

import { randomUUID } from 'node:crypto';
import { resolveCommit } from '../contracts/git-source.js';
import { AgentvmError, ExitCode, type Diagnostic } from '../diagnostics/index.js';
import { liveFingerprint, type Plan } from '../engine/plan.js';
import type { Address, LockedResource, PlannedChange } from '../model/resources.js';
import type { ApplyResponse, CapturedRelease, HostContext } from '../providers/provider.js';
import type { ProviderRegistry } from '../providers/registry.js';
import { rollbackOp, storageError, type AppendMarks, type AuditEntry, type HeldLease, type Lockfile, type LockfileOp, type StateBackend } from '../state/index.js';
import { hostContext, makePlan, readLive, readPlanFile, stateBackend, type PlanOptions } from './plan.js';
import { registryFor } from './registry.js';
import { assertPlanBound } from './plan-binding.js';
import { verifyPlanSignature } from './plan-signature.js';
import { verifierFor, type SignatureOutcome } from './signatures.js';
import type { DesiredState } from '../contracts/desired-state.js';
import { loadDesiredState, selectHost } from './desired.js';
import type { ApplyResultDocument } from '../generated/apply-result.js';

export type ApplyEvent =
  | { type: 'start'; applyId: string; plan: Plan; resumed: boolean }
  | { type: 'resource-start'; address: Address; action: PlannedChange['action'] }
  | { type: 'progress'; address: Address; message: string }
  | { type: 'resource-done'; address: Address; action: PlannedChange['action']; ok: boolean; diagnostics: Diagnostic[]; ms: number }
  | { type: 'resource-skipped'; address: Address; reason: string }
  /** Already applied by the interrupted apply this one resumes: done, without being applied again. */
  | { type: 'resource-resumed'; address: Address }
  | { type: 'finish'; result: ApplyResult };

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
  const emit = opts.onEvent ?? (() => {});
  const backend = stateBackend(opts.root);

  // 1. Which plan. A saved plan names its host; an auto-approved plan is made under the lease (no race).
  let saved: Plan | undefined = opts.approvedPlan;
  if (!saved && opts.planFile) saved = readPlanFile(opts.planFile);
  if (opts.requireSignedPlanKey !== undefined) {
    if (!opts.planFile || !saved || opts.approvedPlan) {
      throw new AgentvmError('apply.plan-unsigned', 'A signed plan is required (--require-signed-plan), but there is no plan file to check.', { detail: 'Give the signed plan file: `agentvm apply <plan.json> --require-signed-plan --plan-key <key.pub>`. Nothing was applied.' });
    }
    // Before the lease and before anything is read from the host: an unsigned plan is not even looked at further.
    await verifyPlanSignature(opts.planFile, saved, opts.requireSignedPlanKey);
  }
  const host = saved?.host ?? (await hostOf(opts.plan));
  const lease = await backend.acquireLease(host, opts.operation ?? 'apply');
  try {
    let plan: Plan;
    let registry: ProviderRegistry;
    let context: HostContext;
    let lock: Lockfile | null;
    let state: DesiredState;
    if (saved) {
      ({ registry, context, lock, state } = await checkFresh(saved, opts.root, backend));
      // A plan from a file is bound to its commit: re-derived here, under the lease, and refused if it differs.
      if (opts.planFile && !opts.approvedPlan) {
        const derived = await makePlan({ repo: saved.source.repo, ref: saved.source.commit ?? saved.source.ref, host: saved.host, root: opts.root, mode: saved.mode });
        assertPlanBound(saved, derived.plan, opts.planFile);
      }
      plan = saved;
    } else {
      const session = await makePlan({ ...opts.plan!, root: opts.root });
      ({ plan, registry, context, lock, state } = session);
    }
    refuseInapplicable(plan);
    return await walk({ plan, state, registry, context, lock, backend, lease, emit, started, concurrency: opts.concurrency ?? DEFAULT_APPLY_CONCURRENCY, operation: opts.operation ?? 'apply' });
  } finally {
    await lease.release();
  }
}

async function hostOf(plan: PlanOptions | undefined): Promise<string> {
  if (!plan) throw new AgentvmError('apply.no-plan', 'Nothing to apply: no plan file and no auto-approve.', { source: 'toolkit' });
  if (plan.host) return plan.host;
  const { state } = await loadDesiredState(plan.repo, plan.ref);
  return selectHost(state, undefined);
}

/** Refuses plans that must never be applied (refresh-only, uncommitted, policy errors); callers may check before asking. */
export function refuseInapplicable(plan: Plan): void {
  if (plan.mode === 'refresh-only') throw new AgentvmError('apply.refresh-only', 'A refresh-only plan reports drift; it has nothing to apply.', { detail: 'Run `agentvm plan --out <file>` (without --refresh-only) and apply that.' });
  if (plan.source.uncommitted) throw new AgentvmError('apply.uncommitted', 'This plan reads uncommitted files (WORKTREE) and cannot be applied.', { detail: 'Commit the desired state, then plan and apply the commit.' });
  const errors = plan.diagnostics.filter((d) => d.severity === 'error');
  if (errors.length) {
    throw new AgentvmError('apply.plan-has-errors', `The plan has ${errors.length} error(s); nothing was applied.`, { diagnostics: errors, detail: 'Fix the errors in the desired state, then plan again.' });
  }
}

/** A saved plan is stale when its commit, the lockfile (lineage, serial) or the live host changed since planning. */
async function checkFresh(plan: Plan, root: string, backend: StateBackend): Promise<{ registry: ProviderRegistry; context: HostContext; lock: Lockfile | null; state: DesiredState }> {
  const stale = (what: string, detail: string) =>
    new AgentvmError('apply.stale-plan', `Saved plan is stale: ${what}.`, { detail: `${detail} Make a new plan with \`agentvm plan --out <file>\` and review it.` });
  if (plan.source.commit && plan.source.ref !== plan.source.commit) {
    let now: string | undefined;
    try {
      now = await resolveCommit(plan.source.repo, plan.source.ref);
    } catch {
      now = undefined;
    }
    if (now !== plan.source.commit) throw stale(`${plan.source.ref} now points at ${now ?? 'nothing'}, the plan was made from ${plan.source.commit}`, 'The desired state moved on after the plan was made.');
  }
  const lock = await backend.readLockfile(plan.host);
  if ((lock?.lineage ?? null) !== plan.lock.lineage) throw stale(`the lockfile lineage is ${lock?.lineage ?? 'none'}, the plan was made against ${plan.lock.lineage ?? 'none'}`, 'The state was replaced after the plan was made.');
  if ((lock?.serial ?? 0) !== plan.lock.serial) throw stale(`the lockfile is at serial ${lock?.serial ?? 0}, the plan was made at serial ${plan.lock.serial}`, 'The state was changed by another operation after the plan was made.');
  const { state } = await loadDesiredState(plan.source.repo, plan.source.commit ?? plan.source.ref);
  const { registry } = await registryFor(state);
  const context = hostContext(root, plan.host, plan.source.repo);
  const desired = plan.changes.flatMap((c) => (c.desired ? [c.desired] : []));
  const { live } = await readLive(registry, context, desired, (lock?.resources ?? {}) as Record<Address, LockedResource>);
  if (liveFingerprint(live) !== plan.liveFingerprint) throw stale('the live host changed since the plan was made', 'Something changed releases or units on the host after planning.');
  return { registry, context, lock, state };
}

interface WalkInput {
  plan: Plan;
  /** The desired state at the plan's commit: signature bundles and keys are read from it. */
  state: DesiredState;
  registry: ProviderRegistry;
  context: HostContext;
  lock: Lockfile | null;
  backend: StateBackend;
  lease: HeldLease;
  emit: (e: ApplyEvent) => void;
  started: number;
  concurrency: number;
  operation: string;
}

async function walk(w: WalkInput): Promise<ApplyResult> {
  const { plan, registry, context, backend, lease, emit } = w;
  const applyId = randomUUID();
  // Checkpoints an interrupted apply's log first (reported below), and resumes it when the plan is the same one.
  const log = await backend.beginApply(plan.host, { applyId, planDigest: plan.id, expected: { lineage: w.lock?.lineage ?? null, serial: w.lock?.serial ?? 0 } }, lease);
  const interrupted = log.interrupted;
  emit({ type: 'start', applyId, plan, resumed: interrupted !== null });

  // Each durable step is one audit record, then one log batch holding the step's lockfile ops and the new audit head:
  // audit first, so a kill in between over-reports (the next apply redoes the step) and never leaves an action
  // unaudited. The head only moves forward, whatever order concurrent steps reach the log in.
  // Group-commit hook (ADR 0020): these two synchronous syncs per resource are apply's floor; steps of resources that
  // finish together can share one appendAuditBatch and one log batch here, acknowledged only after that sync.
  let auditSeq = 0;
  const audit = async (entry: Omit<AuditEntry, 'host' | 'operation' | 'applyId'>, ops: LockfileOp[] = [], marks: AppendMarks = {}): Promise<void> => {
    // A backend with transactions (PostgreSQL) records the audit record, the ops and the new head in one (ADR 0017).
    if (log.appendWithAudit) {
      await log.appendWithAudit({ host: plan.host, operation: w.operation, applyId, ...entry }, ops, marks);
      faultPoint();
      return;
    }
    const ev = await backend.appendAudit({ host: plan.host, operation: w.operation, applyId, ...entry });
    faultPoint();
    const head: LockfileOp[] = ev.seq > auditSeq ? [{ op: 'auditHead.set', head: { seq: ev.seq, hash: ev.hash } }] : [];
    auditSeq = Math.max(auditSeq, ev.seq);
    await log.append([...ops, ...head], marks);
    faultPoint();
  };

  if (interrupted) await audit({ event: 'apply.resume', result: 'ok', detail: `previous apply ${interrupted.applyId} was interrupted after ${interrupted.completed.length} resource(s)` });
  await audit({ event: 'apply.start', result: 'ok', detail: `plan ${plan.id} from ${plan.source.commit ?? 'WORKTREE'}: ${plan.summary.create} create, ${plan.summary.update} update, ${plan.summary.replace} replace, ${plan.summary.delete} delete` });

  const changes = new Map(plan.changes.map((c) => [c.address, c]));
  /** Whether a provider was asked to change the host: from then on a failure is a partial apply (exit 3), not "nothing changed". */
  let touched = false;
  const status = new Map<Address, 'ok' | 'failed' | 'skipped'>();
  const applied: Address[] = [];
  const failed: ApplyResult['failed'] = [];
  const skipped: ApplyResult['skipped'] = [];

  const runOne = async (c: PlannedChange): Promise<void> => {
    const blocked = c.dependsOn.find((d) => status.get(d) === 'failed' || status.get(d) === 'skipped');
    if (blocked) {
      status.set(c.address, 'skipped');
      skipped.push({ address: c.address, reason: `depends on ${blocked}, which did not apply` });
      emit({ type: 'resource-skipped', address: c.address, reason: `depends on ${blocked}` });
      return;
    }
    if (c.action === 'noop') {
      status.set(c.address, 'ok');
      return;
    }
    if (log.isDone(c.address)) {
      status.set(c.address, 'ok');
      emit({ type: 'resource-resumed', address: c.address });
      return;
    }
    const provider = registry.get(c.provider);
    touched = true;
    const t0 = Date.now();
    emit({ type: 'resource-start', address: c.address, action: c.action });
    const locked = log.resource(c.address);
    const beforeMutation = async (captured: CapturedRelease | null): Promise<void> => {
      if (!captured || captured.identity === c.after?.identity) return;
      // Durable before the provider changes anything (capture-first): the rollback target and its audit record.
      await audit(
        { event: 'release.capture', result: 'ok', address: c.address, before: { identity: captured.identity, digest: captured.digest }, detail: `captured ${captured.releaseId}${captured.foreign ? ' (installed outside agentvm)' : ''} as the rollback target` },
        [rollbackOp(c.workload, { identity: captured.identity, digest: captured.digest, releaseId: captured.releaseId, foreign: captured.foreign })],
      );
    };
    // Signed releases and job images: the provider hands the exact bytes it is about to install to this check (fail
    // closed); a job's images come by name (`kernel`, `rootfs`).
    const verifier = c.desired && c.action !== 'delete' ? verifierFor(w.state, c.desired) : undefined;
    let verified: SignatureOutcome | undefined;
    const verifiedImages: Record<string, { digest: string; signer: NonNullable<SignatureOutcome['signer']> }> = {};
    const verifyArtifact = verifier
      ? async (bytes: Uint8Array, artifact?: string): Promise<Diagnostic[]> => {
          const outcome = await verifier(bytes, artifact);
          if (artifact === undefined) verified = outcome;
          else if (outcome.ok && outcome.signer) verifiedImages[artifact] = { digest: outcome.digest, signer: outcome.signer };
          return outcome.diagnostics;
        }
      : undefined;
    let diagnostics: Diagnostic[];
    let entry: Omit<LockedResource, 'commit' | 'appliedAt'> | undefined;
    let rolledBack: ApplyResponse['rolledBack'];
    let release: ApplyResponse['release'];
    if (!provider) {
      diagnostics = [{ code: 'provider.unavailable', severity: 'error', summary: `No provider \`${c.provider}\` to apply ${c.address}.`, address: c.address }];
    } else {
      try {
        const res = await provider.apply({ host: context, change: c, commit: plan.source.commit, ...(locked ? { locked } : {}), progress: (message) => emit({ type: 'progress', address: c.address, message }), beforeMutation, ...(verifyArtifact ? { verifyArtifact } : {}) });
        diagnostics = res.diagnostics;
        entry = res.locked;
        rolledBack = res.rolledBack;
        release = res.release;
        // The lockfile records what was verified: the artifact digest and who signed it.
        const v = verified as SignatureOutcome | undefined;
        const known = c.desired?.config.signatureVerified as { digest: string; signer?: unknown } | undefined;
        const signature = v?.ok ? { digest: v.digest, ...(v.signer ? { signer: v.signer } : {}) } : known;
        if (entry && signature) entry = { ...entry, attributes: { ...entry.attributes, signature } };
        if (entry && Object.keys(verifiedImages).length > 0) entry = { ...entry, attributes: { ...entry.attributes, imageSignatures: verifiedImages } };
      } catch (err) {
        if (err instanceof AgentvmError) diagnostics = [...err.diagnostics];
        else if (storageFailure(err)) diagnostics = [storageDiagnostic(err, c.address, context.root)];
        else throw err;
      }
    }
    faultPoint();
    const ok = !diagnostics.some((d) => d.severity === 'error') && (c.action === 'delete' || entry !== undefined);
    const ops: LockfileOp[] = [];
    if (ok) {
      const appliedAt = new Date().toISOString();
      ops.push(c.action === 'delete' ? { op: 'resource.delete', address: c.address } : { op: 'resource.set', entry: { ...entry!, commit: plan.source.commit, appliedAt } });
      // The provider says which release is live now (ApplyResponse.release); apply records it, never infers it.
      if (release !== undefined) ops.push({ op: 'release.set', workload: c.workload, release });
    }
    const failure = diagnostics.find((d) => d.severity === 'error')?.summary ?? 'failed';
    // A provider that undid a failed change on its own (ApplyResponse.rolledBack) changed the host again: that is an
    // action of its own in the audit log.
    if (rolledBack) {
      await audit({ event: 'resource.rollback', result: rolledBack.result, address: c.address, ...(c.before ? { after: c.before } : {}), detail: rolledBack.detail.slice(0, 2000) });
    }
    // One batch: the resource's lockfile entry, the audit head, and done/failed — so a resource is never recorded as
    // done without its entry, nor the reverse.
    await audit(
      {
        event: 'resource.apply',
        result: ok ? 'ok' : 'failed',
        address: c.address,
        action: c.action,
        ...(c.before ? { before: c.before } : {}),
        ...(entry ? { after: { identity: entry.identity, digest: entry.digest } } : {}),
        ...(ok ? {} : { detail: failure }),
      },
      ops,
      ok ? { done: c.address } : { failed: { address: c.address, message: failure } },
    );
    if (ok) {
      status.set(c.address, 'ok');
      applied.push(c.address);
    } else {
      status.set(c.address, 'failed');
      failed.push({ address: c.address, diagnostics });
    }
    emit({ type: 'resource-done', address: c.address, action: c.action, ok, diagnostics, ms: Date.now() - t0 });
  };

  // Bounded-concurrency walk: a change starts when every dependency it has in this plan has finished.
  const pending = new Set(plan.changes.map((c) => c.address));
  const running = new Map<Address, Promise<void>>();
  const walkGraph = async (): Promise<void> => {
    while (pending.size > 0 || running.size > 0) {
      for (const address of [...pending]) {
        if (running.size >= w.concurrency) break;
        const c = changes.get(address)!;
        if (c.dependsOn.every((d) => !changes.has(d) || status.has(d))) {
          pending.delete(address);
          running.set(address, runOne(c).finally(() => running.delete(address)));
        }
      }
      if (running.size === 0) {
        if (pending.size === 0) break;
        throw new AgentvmError('apply.deadlock', `Apply cannot proceed: ${[...pending].join(', ')} wait on each other.`, { source: 'toolkit' });
      }
      await Promise.race(running.values());
    }
  };
  let complete = false;
  let lock: Lockfile;
  try {
    await walkGraph();
    // Providers' end-of-apply housekeeping (the release content store's garbage, ADR 0020): files no lockfile entry names.
    for (const p of registry.all()) await p.finishApply?.({ host: context, progress: (message) => emit({ type: 'progress', address: p.type, message }) });
    complete = failed.length === 0 && skipped.length === 0;
    await audit({ event: 'apply.finish', result: complete ? 'ok' : 'failed', detail: `${applied.length} applied, ${failed.length} failed, ${skipped.length} skipped` }, complete ? [{ op: 'commit.set', commit: plan.source.commit }] : []);
    // Checkpoint: the lockfile file gets every batch (serial = logical serial), then the log goes away.
    lock = await log.finish();
  } catch (error) {
    // A write that failed (a full disk, a read-only state directory) stops the apply: let the steps in flight end
    // first, so none of them runs on after the lease is given back.
    await Promise.allSettled(running.values());
    throw touched ? partialFailure(error) : error;
  }
  const result: ApplyResult = {
    formatVersion: 1,
    applyId,
    host: plan.host,
    planId: plan.id,
    commit: plan.source.commit,
    status: !complete ? 'partial' : applied.length ? 'applied' : 'no-changes',
    applied,
    failed,
    skipped,
    lock: { lineage: lock.lineage, serial: lock.serial },
    durationMs: Date.now() - w.started,
  };
  emit({ type: 'finish', result });
  return result;
}

/** A storage errno (full disk, read-only, I/O error) from a provider's own file writes. */
function storageFailure(err: unknown): err is NodeJS.ErrnoException {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'EROFS' || code === 'EIO';
}

function storageDiagnostic(err: NodeJS.ErrnoException, address: Address, root: string): Diagnostic {
  const named = storageError(err, typeof err.path === 'string' ? err.path : `${root}/`, 'This resource was not applied (it is recorded as failed).') as AgentvmError;
  const summary = named instanceof AgentvmError ? named.message : `${err.code}: ${err.message}`;
  return { code: named instanceof AgentvmError ? named.code : 'state.io-error', severity: 'error', summary: `${address}: ${summary}`, address, ...(named instanceof AgentvmError && named.detail ? { detail: named.detail } : {}) };
}

/**
 * The error that stopped an apply after it changed the host: exit 3 (ADR 0004), not 1 — resources changed, the
 * lockfile and the audit log record each step that completed, and the next apply converges.
 */
function partialFailure(error: unknown): unknown {
  if (!(error instanceof AgentvmError) || error.exitCode !== ExitCode.Error) return error;
  return new AgentvmError(error.code, error.message, {
    detail: `${error.detail ? `${error.detail} ` : ''}This apply had already changed the host: the lockfile and the audit log record every step that completed. Fix the cause and run apply again to converge.`,
    exitCode: ExitCode.PartialApply,
    cause: error,
  });
}

/**
 * Fault injection for the crash-consistency tests: with AGENTVM_FAULT_KILL_AFTER=n the process SIGKILLs itself
 * at the n-th durable step of an apply (audit append, apply-log batch, resource applied). Unset in normal use.
 */
let faultSteps = 0;
function faultPoint(): void {
  const at = process.env.AGENTVM_FAULT_KILL_AFTER;
  if (!at) return;
  faultSteps++;
  if (faultSteps === Number(at)) process.kill(process.pid, 'SIGKILL');
}

