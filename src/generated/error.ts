// GENERATED from schemas/error.schema.json by scripts/gen-types.js. Do not edit: edit the schema and run `npm run gen`.

/**
 * What any command prints under --json when it fails before producing its result (exit code 1).
 */
export interface ErrorDocument {
  error: {
    code: string;
    message: string;
    source: 'user' | 'toolkit';
    diagnostics: DiagnosticDocument[];
  };
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
