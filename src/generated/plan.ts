// GENERATED from schemas/plan.schema.json by scripts/gen-types.js. Do not edit: edit the schema and run `npm run gen`.

export type Action = 'create' | 'update' | 'replace' | 'delete' | 'noop';
export type Effect = 'none' | 'reload' | 'restart' | 'replace';

/**
 * A dry-run plan: `agentvm plan --format json` and the file written by `--out`. A pure function of (desired state at `source.commit`, live state with `liveFingerprint`, lockfile `lock`). Never contains a secret value.
 */
export interface PlanDocument {
  formatVersion: 1;
  /**
   * Fingerprint of the plan's content (everything but createdAt).
   */
  id: string;
  createdAt: string;
  host: string;
  mode: 'normal' | 'refresh-only' | 'rollback';
  source: {
    repo: string;
    ref: string;
    commit: string | null;
    uncommitted: boolean;
  };
  lock: {
    lineage: string | null;
    serial: number;
  };
  liveFingerprint: string;
  /**
   * Set on a remote plan (`agentvm plan --remote`): the live state is the host's last published facts, this old. Such a plan is never applied; the host's own agent applies.
   */
  remote?: {
    publishedAt: string;
    ageSeconds: number;
    appliedCommit: string | null;
    backend: string;
  };
  changes: Change[];
  drift: Drift[];
  /**
   * Per workload the plan touches, what it may do before and after: each egress destination marked added, removed or unchanged, with a risk flag on added ones. Absent in plans made before capabilities existed.
   */
  capabilities?: WorkloadCapabilities[];
  diagnostics: DiagnosticDocument[];
  summary: {
    create: number;
    update: number;
    replace: number;
    delete: number;
    noop: number;
    drift: number;
    errors: number;
    warnings: number;
    worstAction: Action;
    worstEffect: Effect;
  };
  /**
   * False when the plan has errors, reads uncommitted files, or is refresh-only.
   */
  applicable: boolean;
}
export interface Change {
  address: string;
  provider: string;
  workload: string;
  action: Action;
  effect: Effect;
  reasons: Reason[];
  before?: Ref;
  after?: {
    identity: string;
  };
  desired?: DesiredResource;
  /**
   * The configuration the lockfile recorded when this resource was last applied (providers that record it: systemd units, job definitions), so views can show a real before/after diff. Never a secret value: configs hold references only.
   */
  recorded?: {
    config: {};
  };
  dependsOn: string[];
}
export interface Reason {
  code:
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
  message: string;
}
export interface Ref {
  identity?: string;
  digest?: string;
}
export interface DesiredResource {
  address: string;
  provider: string;
  workload: string;
  config: {};
  dependsOn: string[];
  identity: string;
}
export interface Drift {
  address: string;
  provider: string;
  reasons: Reason[];
  locked?: {
    identity: string;
    digest: string;
  };
  live?: {
    exists: boolean;
    identity?: string;
    digest?: string;
  };
}
export interface WorkloadCapabilities {
  workload: string;
  egress: {
    change: 'added' | 'removed' | 'unchanged';
    host: string;
    port: number;
    protocol: 'tcp' | 'udp';
    /**
     * Why a reviewer should look at an added destination (e.g. new destination: possible exfiltration channel).
     */
    risk: string | null;
  }[];
  /**
   * Each secret of the workload's units, marked added, removed, unchanged or changed (injected before and not now, or the reverse), and whether the egress proxy injects it (decisions/0023). Names only, never a reference or a value. Absent when the workload has none.
   */
  credentials?: {
    change: 'added' | 'removed' | 'unchanged' | 'changed';
    name: string;
    /**
     * True: the workload holds a placeholder; the proxy adds the value for `host` only.
     */
    injected: boolean;
    /**
     * The host the value is injected for, or null.
     */
    host: string | null;
    /**
     * Why a reviewer should look (a raw credential the workload now holds), or null.
     */
    risk: string | null;
  }[];
  /**
   * Each project data grant (ADR 0024): added, removed, widened (read-only to read-write), narrowed or unchanged. Absent when the workload has no grant before or after.
   */
  data?: {
    change: 'added' | 'removed' | 'widened' | 'narrowed' | 'unchanged';
    path: string;
    /**
     * Access after the plan (before it, for a removed grant).
     */
    access: 'read-only' | 'read-write';
    /**
     * Access before the plan when it changed, else null.
     */
    was: 'read-only' | 'read-write' | null;
    /**
     * Why a reviewer should look at an added or widened grant.
     */
    risk: string | null;
  }[];
}
/**
 * A problem report: what is wrong (summary), how to fix it (detail), and where (file:line:column, JSON path, resource address). Never carries a secret value.
 */
export interface DiagnosticDocument {
  code: string;
  severity: 'error' | 'warning';
  summary: string;
  detail?: string;
  location?: {
    file: string;
    line: number;
    column: number;
  };
  path?: string;
  address?: string;
}
