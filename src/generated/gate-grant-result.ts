// GENERATED from schemas/gate-grant-result.schema.json by scripts/gen-types.js. Do not edit: edit the schema and run `npm run gen`.

/**
 * Output of `agentvm gate grant --json`. `link` carries the one-time token: this output is the only place it ever appears.
 */
export interface GateGrantResult {
  grant: GrantSummary;
  /**
   * The one-time link: the preview's own origin under host routing (https://<preview>--<workload>.<domain>/?grant=…, on localhost with a --<tag>), or <gate>/p/<workload>/<preview>/?grant=… under path routing.
   */
  link: string;
  listener: {
    /**
     * The public origin the link uses (spec.gate.publicUrl or gate serve --public-url), when the gate has one.
     */
    publicUrl?: string;
    address: string;
    port: number;
    tls: boolean;
    /**
     * False when no running gate recorded its address: the link uses the defaults.
     */
    recorded: boolean;
  };
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
