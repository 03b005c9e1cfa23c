// Use case: plan. Reads the desired state at one commit, the lockfile, and the live host through the providers,
// then calls the pure planner. Also owns saved plan files (written atomically, validated on read).

import { statSync } from 'node:fs';
import { BoundedReadError, readRegularFileSync } from '../contracts/bounded-read.js';
import { resolve } from 'node:path';
import type { z } from 'zod';
import type { DesiredState } from '../contracts/desired-state.js';
import { loadSchema, validatorFromJsonSchema, type JsonSchemaInput } from '../contracts/schemas.js';
import { AgentvmError, compareDiagnostics, userError, type Diagnostic } from '../diagnostics/index.js';
import { expandHost } from '../engine/expand.js';
import { promotionRules } from '../governance/index.js';
import { redactValue } from '../secrets/redaction.js';
import { computePlan, type Plan, type PlanMode } from '../engine/plan.js';
import type { Address, DesiredResource, LiveResource, LockedResource } from '../model/resources.js';
import type { HostContext } from '../providers/provider.js';
import type { ProviderRegistry } from '../providers/registry.js';
import { gatewayOnline } from '../providers/systemd/index.js';
import { hostPaths } from '../model/index.js';
import { writeFileAtomic, type Lockfile, type StateBackend } from '../state/index.js';
import { openStateBackend } from './state-backend.js';
import { loadDesiredState, selectHost } from './desired.js';
import { registryFor } from './registry.js';
import { prepareVerification, verifierFor } from './signatures.js';
import { VerdictCache } from './verdict-cache.js';
import { mapBounded } from '../support/concurrency.js';

export interface PlanOptions {
  repo: string;
  ref: string;
  host?: string;
  /** Host root (`--root`). */
  root: string;
  mode?: PlanMode;
  /** Overrides of desired resources (rollback): address → resource. */
  override?: (desired: DesiredResource[], lock: Lockfile | null) => DesiredResource[];
  now?: Date;
  /**
   * Where the live host comes from. Default: the providers read this machine. A remote plan (ADR 0017) passes the
   * reads the host published instead, so a machine without access to the host plans exactly what the host would.
   */
  liveSource?: (
    context: HostContext,
    desired: readonly DesiredResource[],
    locked: Readonly<Record<Address, LockedResource>>,
  ) => Promise<LiveReads>;
}

export interface LiveReads {
  live: Map<Address, LiveResource>;
  owned: Map<Address, string>;
  diagnostics: Diagnostic[];
}

export interface PlanSession {
  plan: Plan;
  state: DesiredState;
  lock: Lockfile | null;
  context: HostContext;
  backend: StateBackend;
  registry: ProviderRegistry;
  /** The live reads the plan was made from (what `agentvm agent` publishes for remote plans). */
  reads: LiveReads;
}

/** Bounded concurrency for provider reads: live reads hash release trees, which is I/O and CPU. */
const READ_CONCURRENCY = 8;

export function hostContext(root: string, host: string, repo: string): HostContext {
  return { host, root: resolve(root), paths: hostPaths(resolve(root)), repo };
}

/** The state backend of `root` under the selection in force (local files by default; ./state-backend.ts). */
export function stateBackend(root: string): StateBackend {
  checkRoot(root);
  return openStateBackend(root);
}

/** `--root` must be a directory (or not exist yet: agentvm creates what it needs under it). */
export function checkRoot(root: string): void {
  const abs = resolve(root);
  // Pseudo file systems accept neither state nor releases (and Node's recursive mkdir spins on procfs).
  if (/^\/(proc|sys|dev)(\/|$)/.test(abs))
    throw userError(
      'root.pseudo-filesystem',
      `The host root ${abs} is on a pseudo file system.`,
      'Pass --root a directory on a normal, writable file system (default `/`).',
    );
  let st;
  try {
    st = statSync(root);
  } catch {
    return;
  }
  if (!st.isDirectory())
    throw userError(
      'root.not-a-directory',
      `The host root ${root} is not a directory.`,
      'Pass --root a directory (default `/`); state, releases, audit log and units live under it.',
    );
}

export async function makePlan(opts: PlanOptions): Promise<PlanSession> {
  const { state, diagnostics } = await loadDesiredState(opts.repo, opts.ref);
  const host = selectHost(state, opts.host);
  const context = hostContext(opts.root, host, state.repo);
  const backend = stateBackend(opts.root);
  const lock = await backend.readLockfile(host);
  const { registry, diagnostics: providerDiags } = await registryFor(state);

  const expansion = expandHost(state, host, registry.expanders());
  let desired = expansion.resources;
  if (opts.override) desired = opts.override(desired, lock);
  const validation: Diagnostic[] = [];
  for (const r of desired) {
    const p = registry.get(r.provider);
    if (p)
      validation.push(
        ...p.validate({ resource: r }).diagnostics.map((d) => ({ ...d, address: d.address ?? r.address })),
      );
  }

  // Signed releases and job images: verify the artifacts the provider would install, now, so a bad signature shows
  // in the plan (per address, with the failed check) and the plan cannot be applied. Named artifacts (job images)
  // are only checked here; they never go into the resource's config, whose fingerprint is the job definition's digest.
  // Reading the live host runs meanwhile: verification only adds `signatureVerified` to a resource's config (a new
  // object, never a mutation), which no provider's read or list looks at, and neither phase reads what the other
  // writes (verification writes only the release provider's git cache), so the overlap cannot change the plan.
  const lockResources = (lock?.resources ?? {}) as Record<Address, LockedResource>;
  const reading = opts.liveSource
    ? opts.liveSource(context, desired, lockResources)
    : readLive(registry, context, desired, lockResources);
  // Verdicts of verifications this host's plans already made (ADR 0010; apply never uses them). With none to reuse,
  // Sigstore is certainly needed: start loading it now.
  const verdicts = new VerdictCache(context.paths.cache);
  const verifiers = new Map(desired.map((r) => [r, verifierFor(state, r, { verdicts })]));
  if ([...verifiers.values()].some((v) => v !== undefined) && verdicts.size === 0) prepareVerification();
  const verifying = Promise.all(
    desired.map(async (r) => {
      const verify = verifiers.get(r);
      const provider = registry.get(r.provider);
      if (!verify || !provider?.artifact) return;
      const artifact = await provider.artifact({ host: context, desired: r });
      validation.push(...artifact.diagnostics.map((d) => ({ ...d, address: d.address ?? r.address })));
      for (const named of artifact.artifacts ?? [])
        validation.push(...(await verify(named.bytes, named.name)).diagnostics);
      if (!artifact.bytes) return;
      const outcome = await verify(artifact.bytes);
      validation.push(...outcome.diagnostics);
      if (outcome.ok)
        r.config = {
          ...r.config,
          signatureVerified: { digest: outcome.digest, ...(outcome.signer ? { signer: outcome.signer } : {}) },
        };
    }),
  );
  const [reads] = await Promise.all([reading, verifying]);
  const { live, owned, diagnostics: readDiags } = reads;
  verdicts.save();
  // Canary and tested rollback before promotion need the lockfile and the live host (governance/rules/promotion.ts).
  const promotion =
    (opts.mode ?? 'normal') === 'normal'
      ? promotionRules({
          state,
          host,
          lock,
          desiredReleases: new Map(
            desired.filter((r) => r.address === `release.${r.workload}`).map((r) => [r.workload, r.identity]),
          ),
          unit: (address) => ({ exists: live.get(address)?.exists === true, online: gatewayOnline(live.get(address)) }),
        })
      : [];
  const plan = computePlan({
    host,
    mode: opts.mode ?? 'normal',
    source: { repo: state.repo, ref: state.ref, commit: state.commit, uncommitted: state.uncommitted },
    createdAt: (opts.now ?? new Date()).toISOString(),
    desired,
    live,
    owned,
    lock: { lineage: lock?.lineage ?? null, serial: lock?.serial ?? 0, resources: lockResources },
    planners: registry.planners(),
    diagnostics: [
      ...diagnostics,
      ...providerDiags,
      ...expansion.diagnostics,
      ...validation,
      ...readDiags,
      ...promotion,
    ].sort(compareDiagnostics),
  });
  return { plan, state, lock, context, backend, registry, reads };
}

/** Reads every address of interest (desired ∪ locked ∪ owned) through its provider. */
export async function readLive(
  registry: ProviderRegistry,
  context: HostContext,
  desired: readonly DesiredResource[],
  locked: Readonly<Record<Address, LockedResource>>,
): Promise<{ live: Map<Address, LiveResource>; owned: Map<Address, string>; diagnostics: Diagnostic[] }> {
  const diagnostics: Diagnostic[] = [];
  const owned = new Map<Address, string>();
  // Host facts shared by every list and read of this plan (ListRequest/ReadRequest.snapshot): one snapshot of the host.
  const snapshot = new Map<string, unknown>();
  // Providers list concurrently; their answers are merged in registry order, so the result does not depend on timing.
  const providers = registry.all();
  const lists = await Promise.all(providers.map((p) => p.list({ host: context, snapshot })));
  lists.forEach((res, i) => {
    diagnostics.push(...res.diagnostics);
    for (const o of res.owned) owned.set(o.address, providers[i]!.type);
  });
  const desiredBy = new Map(desired.map((d) => [d.address, d]));
  const addresses = [...new Set([...desiredBy.keys(), ...Object.keys(locked), ...owned.keys()])].sort();
  const live = new Map<Address, LiveResource>();
  // Read concurrently, merged in address order: the plan and its diagnostics do not depend on which read ends first.
  const reads = await mapBounded(addresses, READ_CONCURRENCY, async (address) => {
    const d = desiredBy.get(address);
    const l = locked[address];
    const type = d?.provider ?? l?.provider ?? owned.get(address);
    const provider = type ? registry.get(type) : undefined;
    if (!provider) return undefined;
    return provider.read({
      host: context,
      address,
      snapshot,
      ...(d ? { desired: d } : {}),
      ...(l ? { locked: l } : {}),
    });
  });
  reads.forEach((res, i) => {
    if (res === undefined) return;
    const address = addresses[i]!;
    diagnostics.push(...res.diagnostics.map((x) => ({ ...x, address: x.address ?? address })));
    live.set(address, res.live);
  });
  return { live, owned, diagnostics };
}

// ---------------------------------------------------------------------------------------------------------
// Saved plan files

/**
 * Why `plan` must not be saved, or undefined. A plan that found a committed secret is never written to disk: the
 * file would be one more copy of the secret (and an artifact CI uploads), and apply would refuse it anyway.
 */
export function planSaveRefusal(plan: Plan): string | undefined {
  const secrets = plan.diagnostics.filter(
    (d) => d.code === 'policy.secret-literal' || d.code === 'policy.secret-file',
  ).length;
  if (secrets === 0) return undefined;
  return `The plan was not saved: it found ${secrets === 1 ? 'a secret' : `${secrets} secrets`} committed to the repository (policy.secret-literal). Remove ${secrets === 1 ? 'it' : 'them'}, rotate ${secrets === 1 ? 'it' : 'them'}, and plan again.`;
}

/** Saves a plan for apply, through the redaction boundary. Refuses a plan `planSaveRefusal` refuses. */
export function writePlanFile(file: string, plan: Plan): void {
  const refusal = planSaveRefusal(plan);
  if (refusal)
    throw userError(
      'plan.not-saved',
      refusal,
      'Fix the secret findings listed with the plan, then run `agentvm plan --out` again.',
    );
  writeFileAtomic(file, `${JSON.stringify(redactValue(plan), null, 2)}\n`);
}

let planValidator: z.ZodType | undefined;

/** Plans are JSON of a few hundred kilobytes at most; 64 MiB is far beyond any real one. */
const MAX_PLAN_FILE_BYTES = 64 * 1024 * 1024;

export function readPlanFile(file: string): Plan {
  let text: string;
  try {
    // A regular file under the limit, checked before reading: `agentvm apply /dev/zero` is refused at once.
    text = readRegularFileSync(file, MAX_PLAN_FILE_BYTES).toString('utf8');
  } catch (err) {
    const why =
      err instanceof BoundedReadError
        ? err.reason === 'too-large'
          ? `larger than ${MAX_PLAN_FILE_BYTES} bytes`
          : 'not a regular file'
        : ((err as NodeJS.ErrnoException).code ?? 'error');
    throw userError(
      'plan.file-unreadable',
      `Cannot read the plan file ${file} (${why}).`,
      'Create one with `agentvm plan --out <file>`.',
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw userError(
      'plan.file-invalid',
      `${file} is not a plan: it is not valid JSON.`,
      'Create a plan with `agentvm plan --out <file>`; do not edit plan files by hand.',
    );
  }
  if (!planValidator) {
    const diag = loadSchema('diagnostic.schema.json');
    const planSchema = structuredClone(loadSchema('plan.schema.json')) as Record<string, unknown>;
    // Inline the one cross-file reference so zod can build the validator from the published schema.
    ((planSchema.properties as Record<string, Record<string, unknown>>).diagnostics!.items as Record<string, unknown>) =
      { ...diag, $schema: undefined, $id: undefined };
    planValidator = validatorFromJsonSchema(JSON.parse(JSON.stringify(planSchema)) as JsonSchemaInput);
  }
  const res = planValidator.safeParse(value);
  if (!res.success) {
    const issue = res.error.issues[0];
    throw new AgentvmError(
      'plan.file-invalid',
      `${file} is not a valid agentvm plan (${issue ? `${issue.path.join('.') || '$'}: ${issue.message}` : 'schema mismatch'}).`,
      {
        detail: 'Plan files are written by `agentvm plan --out` and must not be edited; make a new one.',
      },
    );
  }
  return value as Plan;
}
