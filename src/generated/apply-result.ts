// GENERATED from schemas/apply-result.schema.json by scripts/gen-types.js. Do not edit: edit the schema and run `npm run gen`.

/**
 * Output of `agentvm apply --json` (exit 0 when every change was applied or there was nothing to do, 3 when the apply is partial: some changes failed or were skipped and the lockfile records what was done; re-run apply to converge). On a failure before the apply starts (stale plan, lease held, invalid desired state) the output is an ErrorDocument instead.
 */
export interface ApplyResultDocument {
  formatVersion: 1;
  /**
   * UUID of this apply run; the applyId of its audit records.
   */
  applyId: string;
  /**
   * The host the plan was applied to.
   */
  host: string;
  /**
   * The id of the plan that was applied (see plan.schema.json).
   */
  planId: string;
  /**
   * Desired-state commit the plan was made from; null when it was made from uncommitted edits (--ref WORKTREE).
   */
  commit: string | null;
  /**
   * applied: every change succeeded; no-changes: the plan had none; partial: some failed or were skipped (the lockfile records what was done).
   */
  status: 'applied' | 'no-changes' | 'partial';
  /**
   * Addresses of the resources changed, in completion order.
   */
  applied: string[];
  /**
   * Resources whose change failed, with why.
   */
  failed: {
    address: string;
    diagnostics: DiagnosticDocument[];
  }[];
  /**
   * Resources not attempted because something they depend on failed.
   */
  skipped: {
    address: string;
    reason: string;
  }[];
  /**
   * The host lockfile after the apply: a saved plan made against an older lineage or serial is stale.
   */
  lock: {
    lineage: string;
    serial: number;
  };
  /**
   * Wall time of the apply in milliseconds.
   */
  durationMs: number;
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
