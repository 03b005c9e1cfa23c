// GENERATED from schemas/rollback-result.schema.json by scripts/gen-types.js. Do not edit: edit the schema and run `npm run gen`.

/**
 * Output of `agentvm rollback --json`: the rollback shown (dry run, applied false) or carried out (--auto-approve). Exit 0 when rolled back or shown, 1 when an approved rollback failed. With no recorded target the output is an ErrorDocument instead.
 */
export interface RollbackResultDocument {
  formatVersion: 1;
  host: string;
  workload: string;
  /**
   * The workload's release resource, `release.<workload>`.
   */
  address: string;
  /**
   * True when the release was switched; false on a dry run or a failure.
   */
  applied: boolean;
  /**
   * The release live before the rollback (as the lockfile records it); null when the lockfile records none.
   */
  from: {
    identity: string;
    releaseId?: string;
    digest?: string;
  } | null;
  /**
   * The recorded rollback target the workload is switched to.
   */
  to: {
    identity: string;
    releaseId: string;
    /**
     * Digest the restored release is verified against, byte for byte.
     */
    digest: string;
    /**
     * True when agentvm did not install it (it was found installed by hand).
     */
    foreign: boolean;
  };
  diagnostics: DiagnosticDocument[];
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
