// GENERATED from schemas/gate-revoke-result.schema.json by scripts/gen-types.js. Do not edit: edit the schema and run `npm run gen`.

/**
 * Output of `agentvm gate revoke --json`.
 */
export interface GateRevokeResult {
  revoked: GrantSummary[];
  alreadyRevoked: string[];
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
