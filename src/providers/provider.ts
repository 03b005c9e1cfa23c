// The provider contract (DESIGN §3): one request object in, one response with diagnostics out. The engine depends
// on this interface only, never on an implementation. Invariants every provider keeps:
// - `plan` is pure: the same request gives the same response, with no I/O.
// - `apply` is idempotent: applying an already-applied change is a no-op that returns the same state.
// - `list` returns only what the provider owns on the host (for pruning and orphan detection); nothing else is ever touched.
// - No request or response carries a secret value.

import type { Diagnostic } from '../diagnostics/index.js';
import type { Host } from '../generated/host.js';
import type { WorkloadContract } from '../generated/workload-contract.js';
import type { WorkloadManifest } from '../generated/workload-manifest.js';
import type {
  Address,
  DesiredResource,
  Effect,
  HostPaths,
  LiveResource,
  LockedResource,
  PlannedChange,
  Reason,
} from '../model/index.js';

// The vocabulary a provider speaks, re-exported so that a provider package needs one import: `agentvm/provider`.
export type { HostPaths, Address, DesiredResource, Effect, LiveResource, LockedResource, PlannedChange, Reason };
export type { Action, ReasonCode } from '../model/index.js';
export type { Diagnostic } from '../diagnostics/index.js';

/** Where a provider works: the host root and the paths under it. All host paths live under `root`. */
export interface HostContext {
  /** Host name from hosts/<name>.yaml. */
  host: string;
  /** Host root (`--root`, default `/`). */
  root: string;
  paths: HostPaths;
  /** Desired-state repository path (for files referenced relative to it, e.g. signature bundles). */
  repo: string;
}

/** One workload the host runs, as its documents say (already valid against schemas/). */
export interface ExpandWorkload {
  name: string;
  /** The workload's directory in the repository (`workloads/<name>`); files it names are relative to it. */
  dir: string;
  contract: WorkloadContract;
  manifest: WorkloadManifest;
}

/**
 * The desired state of one host, for a provider to turn into the resources it owns. Everything is read-only: a
 * provider returns new resources and never edits what it is given.
 */
export interface ExpandRequest {
  host: { name: string; spec: Host['spec'] };
  /** The desired-state repository (absolute): relative source locations resolve against it. */
  repo: string;
  /** The host's workloads whose documents loaded, in the host file's order. */
  workloads: readonly ExpandWorkload[];
  /** What the providers before this one (registry order) expanded: a resource may depend on them. */
  expanded: readonly DesiredResource[];
}
export interface ExpandResponse {
  resources: DesiredResource[];
  diagnostics: Diagnostic[];
}

export interface ValidateRequest {
  resource: DesiredResource;
}
export interface ValidateResponse {
  diagnostics: Diagnostic[];
}

export interface ReadRequest {
  host: HostContext;
  address: Address;
  desired?: DesiredResource;
  locked?: LockedResource;
  /**
   * One plan's read phase shares this map: a provider may keep host facts in it that are the same for every resource
   * it reads (a unit-path directory listing), so they are read once per plan instead of once per resource. Absent:
   * read everything afresh. Never carries state across plans.
   */
  snapshot?: Map<string, unknown>;
}
export interface ReadResponse {
  live: LiveResource;
  diagnostics: Diagnostic[];
}

export interface PlanRequest {
  address: Address;
  desired?: DesiredResource;
  live: LiveResource;
  locked?: LockedResource;
}
export interface PlanResponse {
  action: PlannedChange['action'];
  effect: Effect;
  reasons: Reason[];
  /** Drift: live differs from what was locked (changed outside agentvm). Empty when none. */
  drift: Reason[];
  diagnostics: Diagnostic[];
}

export interface ApplyRequest {
  host: HostContext;
  change: PlannedChange;
  /** The desired-state commit being applied (null: an uncommitted worktree); absent when the caller has none. */
  commit?: string | null;
  locked?: LockedResource;
  /** Emits progress for views; never required for correctness. */
  progress?: (message: string) => void;
  /** Called right before the first mutation of the host, so callers can persist capture-first facts. */
  beforeMutation?: (captured: CapturedRelease | null) => Promise<void>;
  /**
   * Signature check of the exact artifact bytes about to be installed (the same bytes `artifact` returns). Errors
   * refuse the install before anything is written. Absent when the resource carries no signature requirement.
   * `artifact` names which one when a resource installs several (a job's `kernel` and `rootfs`, as in
   * `ArtifactResponse.artifacts`); omitted for the resource's single artifact (`bytes`).
   */
  verifyArtifact?: (bytes: Uint8Array, artifact?: string) => Promise<Diagnostic[]>;
}

export interface ArtifactRequest {
  host: HostContext;
  desired: DesiredResource;
}
export interface ArtifactResponse {
  /** The signed artifact: for git releases `git archive --format=tar <commit> [-- <subdir>]`, for packages the tarball. */
  bytes?: Uint8Array;
  /**
   * Several signed artifacts, each by name (a job's `kernel` and `rootfs` images): those present on the host now.
   * One that is not there yet is left out (the provider's `read` reports it); it is verified when it is installed or used.
   */
  artifacts?: Array<{ name: string; bytes: Uint8Array }>;
  diagnostics: Diagnostic[];
}
export interface ApplyResponse {
  /** New lockfile entry; undefined after a delete. */
  locked?: Omit<LockedResource, 'commit' | 'appliedAt'>;
  /** The release that was live before this apply (capture-first), recorded as rollback target. */
  captured?: CapturedRelease | null;
  /**
   * The provider undid a failed change on its own (a unit whose new release failed its health check went back to the
   * one before): `ok` when what runs now is healthy again, `failed` when the undo failed too. Absent: nothing undone.
   */
  rolledBack?: { result: 'ok' | 'failed'; detail: string };
  /**
   * Release providers: the workload's live release after this apply — what its `current` now names — which the
   * lockfile records as the workload's release (null after a delete). Absent for every other kind of resource.
   */
  release?: { identity: string; digest: string; releaseId: string } | null;
  diagnostics: Diagnostic[];
}

/** A release that was live on the host before a change: the rollback target. */
export interface CapturedRelease {
  identity: string;
  digest: string;
  /** Directory name under the workload's release dir. */
  releaseId: string;
  /** True when agentvm did not install it (found by hand-install). */
  foreign: boolean;
}

export interface ListRequest {
  host: HostContext;
  /** The same per-plan map as ReadRequest.snapshot: facts several providers list alike (the release store) are read once. */
  snapshot?: Map<string, unknown>;
}
export interface ListResponse {
  owned: Array<{ address: Address; identity?: string; digest?: string }>;
  diagnostics: Diagnostic[];
}

export interface Provider {
  /** Provider type, e.g. `release.git`. Resource addresses it owns start with `addressPrefix`. */
  readonly type: string;
  readonly addressPrefix: string;
  /**
   * The resources of this type the host's desired state calls for. A provider owns its expansion: the engine asks
   * every provider in registry order and knows no resource kind by name, so a third-party package adds a kind by
   * implementing this (reading, say, `spec.extensions.<its type>` of a manifest or host). Pure: no I/O. Every
   * resource returned must have this provider's type and an address under `addressPrefix`. Absent: the provider
   * plans no resources of its own (it may still be asked about resources a lockfile names).
   */
  expand?(req: ExpandRequest): ExpandResponse;
  validate(req: ValidateRequest): ValidateResponse;
  read(req: ReadRequest): Promise<ReadResponse>;
  plan(req: PlanRequest): PlanResponse;
  apply(req: ApplyRequest): Promise<ApplyResponse>;
  list(req: ListRequest): Promise<ListResponse>;
  /** Providers of signed artifacts: the bytes a signature covers, so plan can verify before anything is applied. */
  artifact?(req: ArtifactRequest): Promise<ArtifactResponse>;
  /**
   * Once at the end of every apply, after the last resource: housekeeping of host files no lockfile entry names
   * (the release content store's garbage). Must never change what a resource's read returns.
   */
  finishApply?(req: FinishApplyRequest): Promise<{ diagnostics: Diagnostic[] }>;
}

export interface FinishApplyRequest {
  host: HostContext;
  progress?: (message: string) => void;
}
