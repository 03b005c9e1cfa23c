// GENERATED from schemas/audit-verify-result.schema.json by scripts/gen-types.js. Do not edit: edit the schema and run `npm run gen`.

/**
 * Output of `agentvm audit verify --json`: whether the hash chain of the audit log is intact and ends at or after the head every host lockfile recorded (so truncation is caught). Exit 0 when ok, 1 when not.
 */
export interface AuditVerifyResultDocument {
  formatVersion: 1;
  ok: boolean;
  /**
   * How many records were read.
   */
  records: number;
  /**
   * Path of the audit log that was verified.
   */
  file: string;
  /**
   * Where the chain breaks, if it does.
   */
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
