// The skeleton both release providers share (release.git and release.package): the same address, the same read,
// plan, removal, content-store garbage collection, listing and rollback (release-lifecycle.ts), and one apply walk —
// check the workload, remove on delete, refuse a change without desired configuration, parse it, and only then hand
// the parsed configuration to the subclass's `install`, which fetches and verifies its bytes and calls installRelease.
// A subclass says only what differs: how its configuration parses, how its identity is written, which release ids
// it owns, which workloads it lists, and how its bytes are fetched, verified and materialised.

import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import type {
  ApplyRequest,
  ApplyResponse,
  ArtifactRequest,
  ArtifactResponse,
  ExpandRequest,
  ExpandResponse,
  FinishApplyRequest,
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
import {
  checkWorkload,
  collectStoreGarbage,
  listReleases,
  readRelease,
  RELEASE_ADDRESS_PREFIX,
  releaseAddress,
  ReleaseCode,
  removeReleases,
  rollbackRelease,
  type RollbackOptions,
  type RollbackResponse,
} from './release-lifecycle.js';
import { planRelease } from './release-plan.js';
import { ReleaseStore } from './release-store.js';

export interface ParsedReleaseConfig<C> {
  config?: C;
  diagnostics: Diagnostic[];
}

/** What install() gets: the request, its parsed configuration, the store and the progress sink. */
export interface InstallContext<C> {
  req: ApplyRequest;
  config: C;
  store: ReleaseStore;
  progress: (message: string) => void;
}

export abstract class ReleaseProvider<C> implements Provider {
  abstract readonly type: string;
  readonly addressPrefix = RELEASE_ADDRESS_PREFIX;

  abstract expand(req: ExpandRequest): ExpandResponse;
  abstract artifact(req: ArtifactRequest): Promise<ArtifactResponse>;
  protected abstract parseConfig(config: Record<string, unknown>, address: string): ParsedReleaseConfig<C>;
  protected abstract identityOf(config: C): string;
  /** Why `identity` is not the configuration's (the validate message's tail and its detail). */
  protected abstract identityMismatch(config: C): { summary: string; detail: string };
  /** True for the release ids this provider installed (what a delete may remove). */
  protected abstract owns(releaseId: string): boolean;
  /** Which workloads list() reports, by their live release id and every installed one (release-lifecycle.ts). */
  protected abstract listsWorkload(releaseId: string | undefined, releases: readonly string[]): boolean;
  /** Fetch, verify and install the release (installRelease); diagnostics already at the change's address. */
  protected abstract install(ctx: InstallContext<C>): Promise<ApplyResponse>;

  validate(req: ValidateRequest): ValidateResponse {
    const { resource } = req;
    const diagnostics = [...checkWorkload(resource.workload, resource.address)];
    const parsed = this.parseConfig(resource.config, resource.address);
    diagnostics.push(...parsed.diagnostics);
    if (parsed.config && resource.identity !== this.identityOf(parsed.config)) {
      const why = this.identityMismatch(parsed.config);
      diagnostics.push(
        errorDiag(ReleaseCode.invalidConfig, `Resource identity ${JSON.stringify(resource.identity)} ${why.summary}`, {
          address: resource.address,
          detail: why.detail,
        }),
      );
    }
    return { diagnostics };
  }

  read(req: ReadRequest): Promise<ReadResponse> {
    return readRelease(new ReleaseStore(req.host.paths.releases), req, this.type);
  }

  plan(req: PlanRequest): PlanResponse {
    return planRelease(req);
  }

  async apply(req: ApplyRequest): Promise<ApplyResponse> {
    const { change, host } = req;
    const store = new ReleaseStore(host.paths.releases);
    const progress = req.progress ?? (() => {});
    const invalid = checkWorkload(change.workload, change.address);
    if (invalid.length > 0) return { diagnostics: invalid };

    if (change.action === 'delete') {
      return removeReleases({
        store,
        address: change.address,
        workload: change.workload,
        owns: (id) => this.owns(id),
        progress,
        ...(req.beforeMutation ? { beforeMutation: req.beforeMutation } : {}),
      });
    }
    if (!change.desired) {
      return {
        diagnostics: [
          errorDiag(
            ReleaseCode.invalidConfig,
            `Change ${change.action} of ${change.address} carries no desired configuration.`,
            { address: change.address },
          ),
        ],
      };
    }
    const parsed = this.parseConfig(change.desired.config, change.address);
    if (!parsed.config) return { diagnostics: parsed.diagnostics };
    return this.install({ req, config: parsed.config, store, progress });
  }

  /** Garbage collection of the content store shared by both release providers (ADR 0020). */
  async finishApply(req: FinishApplyRequest): Promise<{ diagnostics: Diagnostic[] }> {
    return {
      diagnostics: await collectStoreGarbage(
        new ReleaseStore(req.host.paths.releases),
        req.host.paths.cache,
        req.progress,
      ),
    };
  }

  list(req: ListRequest): Promise<ListResponse> {
    return listReleases(
      new ReleaseStore(req.host.paths.releases),
      (releaseId, releases) => this.listsWorkload(releaseId, releases),
      req.snapshot,
    );
  }

  /**
   * Points `current` back at an installed release after verifying it is byte for byte `expectedDigest`; refused with
   * a diagnostic otherwise. The source is not needed. `options.identity` (a captured identity) is recorded in the
   * returned lockfile entry.
   */
  rollbackTo(
    host: HostContext,
    workload: string,
    releaseId: string,
    expectedDigest: string,
    options: RollbackOptions = {},
  ): Promise<RollbackResponse> {
    const target = { address: releaseAddress(workload), provider: this.type, workload, releaseId, expectedDigest };
    return rollbackRelease(new ReleaseStore(host.paths.releases), target, options);
  }
}
