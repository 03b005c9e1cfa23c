// GENERATED from schemas/verify-result.schema.json by scripts/gen-types.js. Do not edit: edit the schema and run `npm run gen`.

/**
 * Output of `agentvm verify --json` (exit 0 when verified, 1 when refused).
 */
export interface VerifyResultDocument {
  formatVersion: 1;
  verified: boolean;
  artifact: string;
  digest: string;
  policy:
    | {
        kind: 'keyless';
        identity: string;
        issuer: string;
      }
    | {
        kind: 'key';
        key: string;
      };
  signer?: {
    identity?: string;
    issuer?: string;
    keyHint?: string;
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
