// GENERATED from schemas/agent-result.schema.json by scripts/gen-types.js. Do not edit: edit the schema and run `npm run gen`.

/**
 * Output of `agentvm agent --json`, and what it publishes to the state backend besides the provider reads (ADR 0017). Never contains a secret value.
 */
export interface AgentReportDocument {
  formatVersion: 1;
  host: string;
  /**
   * The commit the host has applied after this run.
   */
  commit: string | null;
  /**
   * The commit --ref resolved to.
   */
  target: string | null;
  status: 'applied' | 'no-changes' | 'blocked' | 'waiting' | 'excluded' | 'failed';
  reason?: string;
  wave?: string;
  plan?: {
    id: string;
    summary: {};
  };
  apply?: {
    status: 'applied' | 'no-changes' | 'partial';
    applied: number;
    failed: number;
  };
  drift: string[];
  health: {
    ok: boolean;
    failing: string[];
    reason?: string;
  };
  liveFingerprint: string | null;
  error?: {
    code: string;
    message: string;
  };
}
