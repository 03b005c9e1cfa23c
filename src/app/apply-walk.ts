// The apply walk: the changes of one checked plan, applied in dependency order with bounded concurrency, each
// durable step recorded through the host's apply log (ADR 0005) with its audit record. apply.ts decides WHICH plan
// and holds the lease; this file owns HOW a plan is walked. Invariants:
// - A change starts only when every dependency it has in this plan has finished; one whose dependency failed or was
//   skipped is skipped, and nothing is asked of its provider.
// - Each durable step is one audit record, then one log batch holding the step's lockfile ops and the new audit head:
//   audit first, so a kill in between over-reports (the next apply redoes the step) and never leaves an action
//   unaudited. The head only moves forward, whatever order concurrent steps reach the log in.
// - Steps of resources that finish together share one audit write and one log write (group commit, ADR 0026: one
//   sync each per group); a step returns — and its resource is reported done — only once its group is on disk.
// - A resource is never recorded as done without its lockfile entry, nor the reverse (one batch).
// - The rollback target of a release is durable before its provider changes anything (capture-first).
// - Once a provider was asked to change the host, a failure is a partial apply (exit 3), never "nothing changed".
// The fault points (AGENTVM_FAULT_KILL_AFTER) count durable writes in this exact order (with --concurrency 1 a group is
// one step): the crash tests depend on it.

import { randomUUID } from 'node:crypto';
import { AgentvmError, ExitCode, type Diagnostic } from '../diagnostics/index.js';
import type { Plan } from '../engine/plan.js';
import type { Address, LockedResource, PlannedChange } from '../model/resources.js';
import type { ApplyResponse, CapturedRelease, HostContext } from '../providers/provider.js';
import type { ProviderRegistry } from '../providers/registry.js';
import {
  GroupCommit,
  rollbackOp,
  storageError,
  type ApplyLogHandle,
  type AppendMarks,
  type AuditEntry,
  type HeldLease,
  type Lockfile,
  type LockfileOp,
  type StateBackend,
} from '../state/index.js';
import type { DesiredState } from '../contracts/desired-state.js';
import type { ApplyResultDocument } from '../generated/apply-result.js';
import { verifierFor, type SignatureOutcome } from './signatures.js';
import { faultPoint } from '../support/fault-point.js';

export type ApplyEvent =
  | { type: 'start'; applyId: string; plan: Plan; resumed: boolean }
  | { type: 'resource-start'; address: Address; action: PlannedChange['action'] }
  | { type: 'progress'; address: Address; message: string }
  | {
      type: 'resource-done';
      address: Address;
      action: PlannedChange['action'];
      ok: boolean;
      diagnostics: Diagnostic[];
      ms: number;
    }
  | { type: 'resource-skipped'; address: Address; reason: string }
  /** Already applied by the interrupted apply this one resumes: done, without being applied again. */
  | { type: 'resource-resumed'; address: Address }
  | { type: 'finish'; result: ApplyResultDocument };

export interface WalkInput {
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

type AuditStep = Omit<AuditEntry, 'host' | 'operation' | 'applyId'>;
type Outcome = 'ok' | 'failed' | 'skipped';
type ImageSignatures = Record<string, { digest: string; signer: NonNullable<SignatureOutcome['signer']> }>;

/** What one provider call came back with, and what the signature check saw of the bytes it installed. */
interface ProviderResult {
  diagnostics: Diagnostic[];
  entry?: Omit<LockedResource, 'commit' | 'appliedAt'>;
  rolledBack?: ApplyResponse['rolledBack'];
  release?: ApplyResponse['release'];
}

/** The signature check handed to a provider for one change, and what it saw (fail closed: see verifierFor). */
interface ArtifactCheck {
  verifyArtifact?: (bytes: Uint8Array, artifact?: string) => Promise<Diagnostic[]>;
  /** The release artifact's outcome (an artifact without a name). */
  verified(): SignatureOutcome | undefined;
  /** A job's images that verified, by name (`kernel`, `rootfs`). */
  images: ImageSignatures;
}

/** Walks one checked plan under a held lease; returns the --json result. */
export async function walkPlan(w: WalkInput): Promise<ApplyResultDocument> {
  const applyId = randomUUID();
  // Checkpoints an interrupted apply's log first (reported below), and resumes it when the plan is the same one.
  const log = await w.backend.beginApply(
    w.plan.host,
    { applyId, planDigest: w.plan.id, expected: { lineage: w.lock?.lineage ?? null, serial: w.lock?.serial ?? 0 } },
    w.lease,
  );
  w.emit({ type: 'start', applyId, plan: w.plan, resumed: log.interrupted !== null });
  return new ApplyWalk(w, log, applyId).run();
}

class ApplyWalk {
  private readonly commits: GroupCommit;
  /** Whether a provider was asked to change the host: from then on a failure is a partial apply (exit 3). */
  private touched = false;
  private readonly status = new Map<Address, Outcome>();
  private readonly applied: Address[] = [];
  private readonly failed: ApplyResultDocument['failed'] = [];
  private readonly skipped: ApplyResultDocument['skipped'] = [];
  private readonly changes: Map<Address, PlannedChange>;
  private readonly running = new Map<Address, Promise<void>>();

  constructor(
    private readonly w: WalkInput,
    private readonly log: ApplyLogHandle,
    private readonly applyId: string,
  ) {
    this.changes = new Map(w.plan.changes.map((c) => [c.address, c]));
    this.commits = new GroupCommit(w.backend, log, { afterWrite: faultPoint });
  }

  async run(): Promise<ApplyResultDocument> {
    await this.recordStart();
    let complete = false;
    let lock: Lockfile;
    try {
      await this.walkGraph();
      await this.finishProviders();
      complete = this.failed.length === 0 && this.skipped.length === 0;
      await this.recordFinish(complete);
      // Checkpoint: the lockfile file gets every batch (serial = logical serial), then the log goes away.
      lock = await this.log.finish();
    } catch (error) {
      // A write that failed (a full disk, a read-only state directory) stops the apply: let the steps in flight end
      // first, so none of them runs on after the lease is given back.
      await Promise.allSettled(this.running.values());
      throw this.touched ? partialFailure(error) : error;
    }
    const result = this.result(complete, lock);
    this.w.emit({ type: 'finish', result });
    return result;
  }

  /**
   * One durable step: the audit record, the step's lockfile ops and the new audit head, committed with the steps of
   * other resources that finish at the same time (GroupCommit); returns once they are on disk. A backend with
   * transactions (PostgreSQL) records the group in one (ADR 0017).
   */
  private async audit(step: AuditStep, ops: LockfileOp[] = [], marks: AppendMarks = {}): Promise<void> {
    const entry: AuditEntry = { host: this.w.plan.host, operation: this.w.operation, applyId: this.applyId, ...step };
    await this.commits.submit(entry, ops, marks);
  }

  private async recordStart(): Promise<void> {
    const { plan } = this.w;
    const interrupted = this.log.interrupted;
    if (interrupted)
      await this.audit({
        event: 'apply.resume',
        result: 'ok',
        detail: `previous apply ${interrupted.applyId} was interrupted after ${interrupted.completed.length} resource(s)`,
      });
    await this.audit({
      event: 'apply.start',
      result: 'ok',
      detail: `plan ${plan.id} from ${plan.source.commit ?? 'WORKTREE'}: ${plan.summary.create} create, ${plan.summary.update} update, ${plan.summary.replace} replace, ${plan.summary.delete} delete`,
    });
  }

  /** Bounded-concurrency walk: a change starts when every dependency it has in this plan has finished. */
  private async walkGraph(): Promise<void> {
    const pending = new Set(this.changes.keys());
    while (pending.size > 0 || this.running.size > 0) {
      this.startReady(pending);
      if (this.running.size === 0) {
        if (pending.size === 0) break;
        throw new AgentvmError(
          'apply.deadlock',
          `Apply cannot proceed: ${[...pending].join(', ')} wait on each other.`,
          { source: 'toolkit' },
        );
      }
      await Promise.race(this.running.values());
    }
  }

  private startReady(pending: Set<Address>): void {
    for (const address of [...pending]) {
      if (this.running.size >= this.w.concurrency) break;
      const c = this.changes.get(address)!;
      if (c.dependsOn.every((d) => !this.changes.has(d) || this.status.has(d))) {
        pending.delete(address);
        this.running.set(
          address,
          this.runOne(c).finally(() => this.running.delete(address)),
        );
      }
    }
  }

  private async runOne(c: PlannedChange): Promise<void> {
    if (this.settledWithoutProvider(c)) return;
    this.touched = true;
    const t0 = Date.now();
    this.w.emit({ type: 'resource-start', address: c.address, action: c.action });
    const outcome = await this.applyChange(c);
    faultPoint();
    const ok = await this.recordOutcome(c, outcome);
    this.w.emit({
      type: 'resource-done',
      address: c.address,
      action: c.action,
      ok,
      diagnostics: outcome.diagnostics,
      ms: Date.now() - t0,
    });
  }

  /** A change that needs no provider call: blocked by a dependency, a noop, or done by the apply this one resumes. */
  private settledWithoutProvider(c: PlannedChange): boolean {
    const blocked = c.dependsOn.find((d) => this.status.get(d) === 'failed' || this.status.get(d) === 'skipped');
    if (blocked) {
      this.status.set(c.address, 'skipped');
      this.skipped.push({ address: c.address, reason: `depends on ${blocked}, which did not apply` });
      this.w.emit({ type: 'resource-skipped', address: c.address, reason: `depends on ${blocked}` });
      return true;
    }
    if (c.action === 'noop') {
      this.status.set(c.address, 'ok');
      return true;
    }
    if (this.log.isDone(c.address)) {
      this.status.set(c.address, 'ok');
      this.w.emit({ type: 'resource-resumed', address: c.address });
      return true;
    }
    return false;
  }

  /** Asks the change's provider; expected failures (its diagnostics, a storage errno) come back as diagnostics. */
  private async applyChange(c: PlannedChange): Promise<ProviderResult> {
    const { context, plan, emit } = this.w;
    const provider = this.w.registry.get(c.provider);
    const locked = this.log.resource(c.address);
    const check = this.artifactCheck(c);
    if (!provider)
      return {
        diagnostics: [
          {
            code: 'provider.unavailable',
            severity: 'error',
            summary: `No provider \`${c.provider}\` to apply ${c.address}.`,
            address: c.address,
          },
        ],
      };
    try {
      const res = await provider.apply({
        host: context,
        change: c,
        commit: plan.source.commit,
        ...(locked ? { locked } : {}),
        progress: (message) => emit({ type: 'progress', address: c.address, message }),
        beforeMutation: (captured) => this.captureRollbackTarget(c, captured),
        ...(check.verifyArtifact ? { verifyArtifact: check.verifyArtifact } : {}),
      });
      return {
        diagnostics: res.diagnostics,
        entry: withSignatures(c, res.locked, check),
        rolledBack: res.rolledBack,
        release: res.release,
      };
    } catch (err) {
      if (err instanceof AgentvmError) return { diagnostics: [...err.diagnostics] };
      if (storageFailure(err)) return { diagnostics: [storageDiagnostic(err, c.address, context.root)] };
      throw err;
    }
  }

  /** Durable before the provider changes anything (capture-first): the rollback target and its audit record. */
  private async captureRollbackTarget(c: PlannedChange, captured: CapturedRelease | null): Promise<void> {
    if (!captured || captured.identity === c.after?.identity) return;
    await this.audit(
      {
        event: 'release.capture',
        result: 'ok',
        address: c.address,
        before: { identity: captured.identity, digest: captured.digest },
        detail: `captured ${captured.releaseId}${captured.foreign ? ' (installed outside agentvm)' : ''} as the rollback target`,
      },
      [
        rollbackOp(c.workload, {
          identity: captured.identity,
          digest: captured.digest,
          releaseId: captured.releaseId,
          foreign: captured.foreign,
        }),
      ],
    );
  }

  /**
   * Signed releases and job images: the provider hands the exact bytes it is about to install to this check (fail
   * closed); a job's images come by name (`kernel`, `rootfs`).
   */
  private artifactCheck(c: PlannedChange): ArtifactCheck {
    const verifier = c.desired && c.action !== 'delete' ? verifierFor(this.w.state, c.desired) : undefined;
    let verified: SignatureOutcome | undefined;
    const images: ImageSignatures = {};
    const verifyArtifact = verifier
      ? async (bytes: Uint8Array, artifact?: string): Promise<Diagnostic[]> => {
          const outcome = await verifier(bytes, artifact);
          if (artifact === undefined) verified = outcome;
          else if (outcome.ok && outcome.signer) images[artifact] = { digest: outcome.digest, signer: outcome.signer };
          return outcome.diagnostics;
        }
      : undefined;
    return { ...(verifyArtifact ? { verifyArtifact } : {}), verified: () => verified, images };
  }

  /** Records the change's outcome: the rollback its provider did on its own, then one batch (entry, head, done/failed). */
  private async recordOutcome(c: PlannedChange, r: ProviderResult): Promise<boolean> {
    const ok = !r.diagnostics.some((d) => d.severity === 'error') && (c.action === 'delete' || r.entry !== undefined);
    const failure = r.diagnostics.find((d) => d.severity === 'error')?.summary ?? 'failed';
    // A provider that undid a failed change on its own (ApplyResponse.rolledBack) changed the host again: that is an
    // action of its own in the audit log.
    if (r.rolledBack) {
      await this.audit({
        event: 'resource.rollback',
        result: r.rolledBack.result,
        address: c.address,
        ...(c.before ? { after: c.before } : {}),
        detail: r.rolledBack.detail.slice(0, 2000),
      });
    }
    await this.audit(
      {
        event: 'resource.apply',
        result: ok ? 'ok' : 'failed',
        address: c.address,
        action: c.action,
        ...(c.before ? { before: c.before } : {}),
        ...(r.entry ? { after: { identity: r.entry.identity, digest: r.entry.digest } } : {}),
        ...(ok ? {} : { detail: failure }),
      },
      ok ? this.lockfileOps(c, r) : [],
      ok ? { done: c.address } : { failed: { address: c.address, message: failure } },
    );
    this.status.set(c.address, ok ? 'ok' : 'failed');
    if (ok) this.applied.push(c.address);
    else this.failed.push({ address: c.address, diagnostics: r.diagnostics });
    return ok;
  }

  /** The lockfile ops of a change that applied. The provider says which release is live now; apply never infers it. */
  private lockfileOps(c: PlannedChange, r: ProviderResult): LockfileOp[] {
    const commit = this.w.plan.source.commit;
    const ops: LockfileOp[] = [
      c.action === 'delete'
        ? { op: 'resource.delete', address: c.address }
        : { op: 'resource.set', entry: { ...r.entry!, commit, appliedAt: new Date().toISOString() } },
    ];
    if (r.release !== undefined) ops.push({ op: 'release.set', workload: c.workload, release: r.release });
    return ops;
  }

  /** Providers' end-of-apply housekeeping (the release content store's garbage, ADR 0020): files no lockfile entry names. */
  private async finishProviders(): Promise<void> {
    const { registry, context, emit } = this.w;
    for (const p of registry.all())
      await p.finishApply?.({
        host: context,
        progress: (message) => emit({ type: 'progress', address: p.type, message }),
      });
  }

  private async recordFinish(complete: boolean): Promise<void> {
    const detail = `${this.applied.length} applied, ${this.failed.length} failed, ${this.skipped.length} skipped`;
    await this.audit(
      { event: 'apply.finish', result: complete ? 'ok' : 'failed', detail },
      complete ? [{ op: 'commit.set', commit: this.w.plan.source.commit }] : [],
    );
  }

  private result(complete: boolean, lock: Lockfile): ApplyResultDocument {
    const { plan } = this.w;
    return {
      formatVersion: 1,
      applyId: this.applyId,
      host: plan.host,
      planId: plan.id,
      commit: plan.source.commit,
      status: !complete ? 'partial' : this.applied.length ? 'applied' : 'no-changes',
      applied: this.applied,
      failed: this.failed,
      skipped: this.skipped,
      lock: { lineage: lock.lineage, serial: lock.serial },
      durationMs: Date.now() - this.w.started,
    };
  }
}

/** The lockfile records what was verified: the artifact digest and who signed it, and a job's verified images. */
function withSignatures(
  c: PlannedChange,
  locked: ProviderResult['entry'],
  check: ArtifactCheck,
): ProviderResult['entry'] {
  if (!locked) return locked;
  const v = check.verified();
  const known = c.desired?.config.signatureVerified as { digest: string; signer?: unknown } | undefined;
  const signature = v?.ok ? { digest: v.digest, ...(v.signer ? { signer: v.signer } : {}) } : known;
  let entry = locked;
  if (signature) entry = { ...entry, attributes: { ...entry.attributes, signature } };
  if (Object.keys(check.images).length > 0)
    entry = { ...entry, attributes: { ...entry.attributes, imageSignatures: check.images } };
  return entry;
}

/** A storage errno (full disk, read-only, I/O error) from a provider's own file writes. */
function storageFailure(err: unknown): err is NodeJS.ErrnoException {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'EROFS' || code === 'EIO';
}

function storageDiagnostic(err: NodeJS.ErrnoException, address: Address, root: string): Diagnostic {
  const named = storageError(
    err,
    typeof err.path === 'string' ? err.path : `${root}/`,
    'This resource was not applied (it is recorded as failed).',
  ) as AgentvmError;
  const summary = named instanceof AgentvmError ? named.message : `${err.code}: ${err.message}`;
  return {
    code: named instanceof AgentvmError ? named.code : 'state.io-error',
    severity: 'error',
    summary: `${address}: ${summary}`,
    address,
    ...(named instanceof AgentvmError && named.detail ? { detail: named.detail } : {}),
  };
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
