// GENERATED from schemas/rehearse-result.schema.json by scripts/gen-types.js. Do not edit: edit the schema and run `npm run gen`.

/**
 * Output of `agentvm rehearse --json`: a rollback rehearsed on a workload's canary unit (promote the pinned release there, roll back, restore the live one) and what the lockfile recorded. On a failure before the rehearsal starts (no canary, nothing live, same release) the output is an ErrorDocument instead.
 */
export interface RehearseResultDocument {
  formatVersion: 1;
  host: string;
  workload: string;
  /**
   * The canary unit rehearsed on, `unit.<workload>.<profile>`.
   */
  canary: string;
  /**
   * The release promoted to the canary and rolled back from (the repository's pin).
   */
  from: {
    identity: string;
    releaseId: string;
  };
  /**
   * The live release restored (the lockfile's).
   */
  to: {
    identity: string;
    releaseId: string;
  };
  result: 'passed' | 'failed';
  /**
   * The rehearsal's steps in the order they ran.
   */
  steps: {
    step: 'install' | 'promote' | 'rollback' | 'restore';
    address: string;
    ok: boolean;
    detail: string;
  }[];
  rehearsal: RollbackRehearsal;
  diagnostics: DiagnosticDocument[];
}
/**
 * What the lockfile recorded.
 */
export interface RollbackRehearsal {
  rehearsedAt: string;
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
