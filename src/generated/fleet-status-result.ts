// GENERATED from schemas/fleet-status-result.schema.json by scripts/gen-types.js. Do not edit: edit the schema and run `npm run gen`.

/**
 * Output of `agentvm fleet status --json`: every host of the PostgreSQL state backend as its agent last published it (ADR 0017).
 */
export interface FleetStatusDocument {
  formatVersion: 1;
  /**
   * The backend's URL without password.
   */
  backend: string;
  hosts: {
    host: string;
    /**
     * The commit the host applied.
     */
    commit: string | null;
    /**
     * The commit its agent converges to.
     */
    target: string | null;
    /**
     * applied, no-changes, waiting, blocked, excluded, failed; null: never published.
     */
    status: string | null;
    /**
     * Why it waits or failed (for a stopped rollout: the wave, host and reason).
     */
    reason: string | null;
    healthy: boolean | null;
    failingUnits: string[];
    drift: number;
    lastSeen: string | null;
    ageSeconds: number | null;
    lease: {
      who: string;
      operation: string;
      pid: number;
      hostname: string;
      expires: string;
      expired: boolean;
    } | null;
  }[];
}
