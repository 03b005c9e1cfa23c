// GENERATED from schemas/gate-serve-result.schema.json by scripts/gen-types.js. Do not edit: edit the schema and run `npm run gen`.

/**
 * Output of `agentvm gate serve --json`: with --print-unit the rendered unit at once; otherwise where it listened, printed when it stops.
 */
export interface GateServeResult {
  mode: 'served' | 'unit';
  address: string;
  port: number;
  tls: boolean;
  url: string | null;
  /**
   * The public origin (behind a TLS-terminating proxy), when set.
   */
  publicUrl?: string | null;
  unit: null | {
    name: string;
    text: string;
  };
}
