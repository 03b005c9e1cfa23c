// GENERATED from schemas/validate-result.schema.json by scripts/gen-types.js. Do not edit: edit the schema and run `npm run gen`.

/**
 * Output of `agentvm validate --json` (exit 0 when valid, 1 when not). On a failure before validation (unreadable repository, bad flags) the output is an ErrorDocument instead: {"error": {code, message, source, diagnostics}}.
 */
export interface ValidateResultDocument {
  formatVersion: 1;
  valid: boolean;
  repo: string;
  ref: string;
  /**
   * null when --ref WORKTREE (uncommitted).
   */
  commit: string | null;
  uncommitted: boolean;
  summary: {
    errors: number;
    warnings: number;
    hosts: number;
    workloads: number;
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
