// GENERATED from schemas/gate-list-result.schema.json by scripts/gen-types.js. Do not edit: edit the schema and run `npm run gen`.

/**
 * Output of `agentvm gate list --json`: live grants (neither expired nor revoked). Never a token or a session id.
 */
export interface GateListResult {
  now: string;
  grants: GrantSummary[];
}
export interface GrantSummary {
  id: string;
  preview: string;
  identity: string;
  reason: string;
  created: string;
  expires: string;
  /**
   * The one-time link was exchanged for a session.
   */
  used: boolean;
  revoked: boolean;
}
