// MicrovmProvider (`microvm`, addresses `job.`): Tier-2 jobs as provider state. It owns two kinds of resource:
//   job.<workload>.<job>           a job definition: installed by apply as <root>/var/lib/agentvm/jobs/<workload>/
//                                  <job>.json — refused while an image is present but not the pinned one; installed
//                                  with a warning while an image is not delivered yet (runs verify pins anyway);
//                                  signed images (a `bundle` per image) are handed to the signature check first,
//                                  at plan (`artifact`) and right before the definition is installed (`apply`)
//   job.<workload>.<job>.<runId>   a live run whose owner is gone or that is past its deadline: an orphan, which
//                                  `plan` shows as drift and `apply` reaps (teardown.ts), writing a receipt
// Runs that are alive and owned are none of plan's business: `list` does not report them.
//
// Invariants: `plan` is pure; `apply` is idempotent (reaping a run that is already gone succeeds; installing an
// installed definition rewrites the same bytes); `list` reports only definitions this provider installed and runs
// in its registry under the host root.

import { errorDiag, warningDiag, type Diagnostic } from '../../diagnostics/index.js';
import { jobGuestProblems } from './job-guest.js';
import type { Reason } from '../../model/resources.js';
import { LocalStateBackend, type AuditEntry } from '../../state/index.js';
import type {
  ApplyRequest,
  ApplyResponse,
  ArtifactRequest,
  ArtifactResponse,
  ExpandRequest,
  ExpandResponse,
  HostContext,
  ListRequest,
  ListResponse,
  PlanRequest,
  PlanResponse,
  Provider,
  ReadRequest,
  ReadResponse,
  ValidateRequest,
  ValidateResponse,
} from '../provider.js';
import { expandJobs } from './expand.js';
import {
  jobDefinitionDigest,
  jobIdentity,
  type JobImageName,
  listInstalledDefinitions,
  parseJobConfig,
  pinnedImageBytes,
  readInstalledDefinition,
  removeInstalledDefinition,
  signaturesCoverPins,
  signsImages,
  verifyImages,
  writeInstalledDefinition,
} from './job-definition.js';
import {
  listRunRecords,
  ownerAlive,
  readRunRecord,
  runAddress,
  runIdOfAddress,
  runState,
  type JobRunRecord,
  type RunState,
} from './job-registry.js';
import { receiptDetail, teardownRun, type TeardownReceipt } from './teardown.js';

export const MICROVM_PROVIDER = 'microvm';

/** Where teardown receipts go; the default appends to the host root's audit log. */
export type ReceiptSink = (host: HostContext, entry: AuditEntry) => Promise<void>;

const defaultSink: ReceiptSink = async (host, entry) => {
  await new LocalStateBackend(host.paths).appendAudit(entry);
};

export interface MicrovmProviderOptions {
  receipts?: ReceiptSink;
  /** The clock for deadlines (tests). */
  now?: () => Date;
}

export class MicrovmProvider implements Provider {
  readonly type = MICROVM_PROVIDER;
  readonly addressPrefix = 'job.';

  expand(req: ExpandRequest): ExpandResponse {
    return expandJobs(req);
  }
  private readonly receipts: ReceiptSink;
  private readonly now: () => Date;

  constructor(options: MicrovmProviderOptions = {}) {
    this.receipts = options.receipts ?? defaultSink;
    this.now = options.now ?? (() => new Date());
  }

  validate(req: ValidateRequest): ValidateResponse {
    return { diagnostics: parseJobConfig(req.resource.config, req.resource.address).diagnostics };
  }

  async list(req: ListRequest): Promise<ListResponse> {
    const owned: ListResponse['owned'] = (await listInstalledDefinitions(req.host)).map((address) => ({ address }));
    const { records, diagnostics } = await listRunRecords(req.host.paths);
    for (const record of records) {
      if (orphanState(record, this.now()) !== 'running')
        owned.push({ address: runAddress(record), identity: record.id });
    }
    return { owned, diagnostics };
  }

  async read(req: ReadRequest): Promise<ReadResponse> {
    const runId = runIdOfAddress(req.address);
    if (runId !== undefined) return { live: await this.readRun(req.host, req.address, runId), diagnostics: [] };
    const [, workload = '', job = ''] = req.address.split('.');
    // The desired job's data grants and declared programs, checked on the host (a run refuses what fails here).
    const desired = req.desired === undefined ? undefined : parseJobConfig(req.desired.config).config;
    const guest = desired === undefined ? [] : await jobGuestProblems(req.host.root, desired, req.address);
    const installed = await readInstalledDefinition(req.host, workload, job);
    if (installed === undefined)
      return { live: { address: req.address, provider: this.type, exists: false }, diagnostics: guest };
    const parsed = parseJobConfig(installed.config);
    const images =
      parsed.config === undefined
        ? { status: 'missing' as const, diagnostics: [] }
        : await verifyImages(req.host, parsed.config);
    // The digest of what is installed, recomputed: a definition edited by hand is drift even if its digest field was
    // left alone.
    const signatures =
      installed.signaturesVerified === undefined && !signsImages(installed.config)
        ? 'not-required'
        : parsed.config !== undefined && signaturesCoverPins(installed, parsed.config)
          ? 'verified'
          : 'unverified';
    return {
      live: {
        address: req.address,
        provider: this.type,
        exists: true,
        identity: installed.identity,
        digest: jobDefinitionDigest(installed.config),
        attributes: { images: images.status, signatures },
      },
      // Shown in the plan as warnings: the change that fixes them is planned (update), apply reports errors.
      diagnostics: [...images.diagnostics.map((d) => ({ ...d, severity: 'warning' as const })), ...guest],
    };
  }

  private async readRun(host: HostContext, address: string, runId: string): Promise<ReadResponse['live']> {
    const record = await readRunRecord(host.paths, runId);
    if (record === undefined || runAddress(record) !== address) return { address, provider: this.type, exists: false };
    // Attributes are stable while the run stays an orphan, so a saved plan's live fingerprint still matches at apply.
    return {
      address,
      provider: this.type,
      exists: true,
      identity: record.id,
      attributes: {
        state: orphanState(record, this.now()),
        ownerPid: record.owner.pid,
        deadline: record.deadline,
        netns: record.netns,
      },
    };
  }

  /** The images a signature covers: those on the host that match their pins (the ones apply would install over). */
  async artifact(req: ArtifactRequest): Promise<ArtifactResponse> {
    if (runIdOfAddress(req.desired.address) !== undefined) return { diagnostics: [] };
    const parsed = parseJobConfig(req.desired.config);
    if (parsed.config === undefined) return { diagnostics: [] };
    return { artifacts: await pinnedImageBytes(req.host, parsed.config), diagnostics: [] };
  }

  plan(req: PlanRequest): PlanResponse {
    if (runIdOfAddress(req.address) !== undefined) return planRun(req);
    return planDefinition(req);
  }

  async apply(req: ApplyRequest): Promise<ApplyResponse> {
    const { change, host } = req;
    const runId = runIdOfAddress(change.address);
    if (runId !== undefined) {
      if (change.action !== 'delete') return { diagnostics: [] };
      return this.reap(host, change.address, runId, req.progress);
    }
    const [, workload = '', job = ''] = change.address.split('.');
    if (change.action === 'delete') {
      await removeInstalledDefinition(host, workload, job);
      return { diagnostics: [] };
    }
    const desired = change.desired;
    if (desired === undefined)
      return {
        diagnostics: [
          errorDiag('microvm.no-desired', `No desired configuration for ${change.address}.`, {
            address: change.address,
          }),
        ],
      };
    const parsed = parseJobConfig(desired.config, change.address);
    if (parsed.config === undefined) return { diagnostics: parsed.diagnostics };
    req.progress?.('verifying images');
    const images = await verifyImages(host, parsed.config, change.address);
    // An image that is there but is not the pinned one is refused (tampering or a wrong delivery). One that is not
    // there yet is delivered out of band: the definition is installed and the job cannot run until it arrives (every
    // run verifies the pins again before booting anything).
    if (images.status === 'mismatch') return { diagnostics: images.diagnostics };
    // Signed images: the bytes that hash to their pins are checked against their bundles before anything is written.
    // What was verified is recorded in the installed definition: `job run` boots only pins verified here (ADR 0009).
    let signaturesVerified: Partial<Record<JobImageName, string>> | undefined;
    if (req.verifyArtifact) {
      req.progress?.('verifying image signatures');
      signaturesVerified = {};
      const refusals: Diagnostic[] = [];
      for (const image of await pinnedImageBytes(host, parsed.config)) {
        const found = await req.verifyArtifact(image.bytes, image.name);
        refusals.push(...found);
        const pin = parsed.config[image.name];
        if (!found.some((d) => d.severity === 'error') && pin !== undefined)
          signaturesVerified[image.name] = pin.sha256;
      }
      if (refusals.some((d) => d.severity === 'error')) return { diagnostics: refusals };
    }
    const identity = jobIdentity(parsed.config);
    const digest = jobDefinitionDigest(desired.config);
    await writeInstalledDefinition(host, job, {
      formatVersion: 1,
      address: change.address,
      workload,
      identity,
      digest,
      config: desired.config,
      host: host.host,
      commit: req.commit ?? null,
      ...(signaturesVerified === undefined ? {} : { signaturesVerified }),
    });
    return {
      // The config is recorded so a later plan can show what changed (views diff it against the desired config).
      locked: {
        address: change.address,
        provider: this.type,
        workload,
        identity,
        digest,
        attributes: { config: desired.config },
      },
      diagnostics: images.diagnostics.map((d) => ({
        ...d,
        severity: 'warning' as const,
        summary: `${d.summary} The job cannot run until it is there.`,
      })),
    };
  }

  private async reap(
    host: HostContext,
    address: string,
    runId: string,
    progress?: (m: string) => void,
  ): Promise<ApplyResponse> {
    const record = await readRunRecord(host.paths, runId);
    if (record === undefined) return { diagnostics: [] };
    const state = orphanState(record, this.now());
    if (state === 'running') {
      return {
        diagnostics: [
          warningDiag(
            'microvm.run-adopted',
            `Run ${runId} has a live owner again and is within its deadline; it was left alone.`,
            { address },
          ),
        ],
      };
    }
    progress?.(`reaping (${state})`);
    const receipt = await teardownRun(host.paths, record, state);
    await this.receipts(host, receiptEntry(host.host, 'apply', receipt));
    if (receipt.ok) return { diagnostics: [] };
    return {
      diagnostics: [
        errorDiag(
          'microvm.reap-incomplete',
          `Run ${runId} could not be torn down completely: ${receipt.problems.join('; ')}.`,
          {
            address,
            detail: 'Its record is kept, so the next plan lists it again and apply retries.',
          },
        ),
      ],
    };
  }
}

/** The audit record of a teardown. */
export function receiptEntry(host: string, operation: string, receipt: TeardownReceipt): AuditEntry {
  return {
    host,
    operation,
    event: 'job.teardown',
    result: receipt.ok ? 'ok' : 'failed',
    address: receipt.address,
    detail: receiptDetail(receipt),
  };
}

function orphanState(record: JobRunRecord, now: Date): RunState {
  return runState(record, now, ownerAlive(record));
}

function planRun(req: PlanRequest): PlanResponse {
  const none: PlanResponse = { action: 'noop', effect: 'none', reasons: [], drift: [], diagnostics: [] };
  if (!req.live.exists) return none;
  const state = req.live.attributes?.state;
  if (state !== 'owner-gone' && state !== 'past-deadline') return none;
  const why =
    state === 'owner-gone'
      ? `its owner (agentvm pid ${String(req.live.attributes?.ownerPid)}) is gone`
      : `it is past its deadline ${String(req.live.attributes?.deadline)}`;
  const reason: Reason = {
    code: 'orphan',
    message: `Job run ${req.live.identity ?? ''} is an orphan: ${why}. Apply kills its VM and removes its namespace and scratch files.`,
  };
  return { action: 'delete', effect: 'none', reasons: [reason], drift: [reason], diagnostics: [] };
}

function planDefinition(req: PlanRequest): PlanResponse {
  const { desired, live, locked } = req;
  const drift: Reason[] = [];
  const diagnostics: Diagnostic[] = [];
  if (locked && !live.exists)
    drift.push({ code: 'live-missing', message: 'The installed job definition is missing from the host.' });
  if (locked && live.exists && live.digest !== locked.digest)
    drift.push({ code: 'live-modified', message: 'The installed job definition differs from what was applied.' });
  // A missing image is a warning (read), not drift: images are delivered out of band. A present image that does not
  // match its pin is drift, and the update that follows refuses it.
  const images = live.attributes?.images;
  if (live.exists && images === 'mismatch')
    drift.push({ code: 'live-modified', message: 'An image of the job no longer matches its pinned sha256.' });
  if (!desired) {
    if (!live.exists && !locked) return { action: 'noop', effect: 'none', reasons: [], drift, diagnostics };
    return {
      action: 'delete',
      effect: 'none',
      reasons: [
        {
          code: 'removed',
          message:
            'The job is no longer in the desired state; its definition is removed (running jobs are not affected).',
        },
      ],
      drift,
      diagnostics,
    };
  }
  if (!live.exists) {
    return {
      action: 'create',
      effect: 'none',
      reasons: [
        locked
          ? { code: 'live-missing', message: 'The job definition was applied but is missing on the host.' }
          : {
              code: 'new',
              message:
                'A new job definition: its images are verified against their pins and the definition is installed.',
            },
      ],
      drift,
      diagnostics,
    };
  }
  const digest = jobDefinitionDigest(desired.config);
  if (live.digest !== digest) {
    const code = live.identity !== desired.identity ? 'source-changed' : 'config-changed';
    return {
      action: 'update',
      effect: 'none',
      reasons: [
        {
          code,
          message:
            code === 'source-changed'
              ? 'The job boots other images (kernel, rootfs or initramfs digest changed).'
              : 'The job definition changed (command, resources, timeout or egress); the next run uses it.',
        },
      ],
      drift,
      diagnostics,
    };
  }
  if (images === 'mismatch') {
    return {
      action: 'update',
      effect: 'none',
      reasons: [
        {
          code: 'live-modified',
          message: 'An image of the job does not match its pin; apply refuses it until the pinned image is in place.',
        },
      ],
      drift,
      diagnostics,
    };
  }
  if (images === 'verified' && live.attributes?.signatures === 'unverified') {
    return {
      action: 'update',
      effect: 'none',
      reasons: [
        {
          code: 'live-modified',
          message:
            "The job's images arrived after its definition was installed; apply verifies their signatures, and only then can the job run.",
        },
      ],
      drift,
      diagnostics,
    };
  }
  return { action: 'noop', effect: 'none', reasons: [], drift, diagnostics };
}
