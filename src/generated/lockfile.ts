// GENERATED from schemas/lockfile.schema.json by scripts/gen-types.js. Do not edit: edit the schema and run `npm run gen`.

/**
 * A DNS label: lowercase letters, digits and dashes, starting with a letter, at most 63 characters.
 */
export type Name = string;
/**
 * A full git object id (SHA-1, or SHA-256 for repositories that use it).
 */
export type Commit = string;
export type Timestamp = string;
/**
 * Directory name of a release under the workload's release directory: a 40-hex commit, <package>@<version> (a scope's / as +), or captured-<digest>.
 */
export type ReleaseId = string;

/**
 * What agentvm last applied to one host (<state dir>/<host>.lock.json): the commit and digest of every resource, the release and rollback target of every workload, and the head of the audit log. Written atomically; never holds a secret value.
 */
export interface Lockfile {
  /**
   * Version of this file format. A newer agentvm refuses to guess at an older or newer one.
   */
  formatVersion: 1;
  /**
   * UUID v4 fixed when the lockfile is created. A saved plan made against another lineage is refused.
   */
  lineage: string;
  /**
   * Incremented by one on every persisted write. A saved plan made against an older serial is stale.
   */
  serial: number;
  host: Name;
  /**
   * Desired-state commit of the last completed apply; null before the first one completes.
   */
  commit: Commit | null;
  updatedAt: Timestamp;
  /**
   * What was applied, by resource address.
   */
  resources: {
    [k: string]: LockedResource | undefined;
  };
  /**
   * Per-workload release facts, by workload name.
   */
  workloads: {
    [k: string]: WorkloadState | undefined;
  };
  auditHead?: AuditHead;
}
/**
 * One resource as agentvm last applied it.
 */
export interface LockedResource {
  address: string;
  provider: string;
  workload: Name | '(host)';
  /**
   * What "same" means for this resource (e.g. a commit, a version with integrity).
   */
  identity: string;
  /**
   * Digest of the content that was applied.
   */
  digest: string;
  /**
   * Desired-state commit the resource was applied from.
   */
  commit: Commit | null;
  appliedAt: Timestamp;
  /**
   * Provider-specific facts (JSON data, never a secret value).
   */
  attributes?: {
    [k: string]: unknown | undefined;
  };
}
export interface WorkloadState {
  release?: ReleaseRef;
  rollback?: RollbackTarget;
  /**
   * Most recent first; agentvm keeps the last 20.
   */
  rehearsals?: RollbackRehearsal[];
}
/**
 * The release agentvm installed and made live.
 */
export interface ReleaseRef {
  identity: string;
  digest: string;
  releaseId: ReleaseId;
}
/**
 * The release that was live before the current one (captured before anything changed): what a rollback restores.
 */
export interface RollbackTarget {
  identity: string;
  digest: string;
  releaseId: ReleaseId;
  /**
   * True when agentvm did not install it (it was found installed by hand).
   */
  foreign: boolean;
  capturedAt: Timestamp;
}
/**
 * One rehearsal of a rollback (a tested rollback for high and critical tiers).
 */
export interface RollbackRehearsal {
  rehearsedAt: Timestamp;
  /**
   * The release rolled back from.
   */
  fromIdentity: string;
  /**
   * The rollback target restored.
   */
  toIdentity: string;
  result: 'passed' | 'failed';
  applyId?: string;
  detail?: string;
}
/**
 * The last audit record written with this lockfile: an audit log that ends before it was truncated.
 */
export interface AuditHead {
  seq: number;
  hash: string;
}
