// GENERATED from schemas/state-list-result.schema.json by scripts/gen-types.js. Do not edit: edit the schema and run `npm run gen`.

/**
 * Output of `agentvm state list --json`: every host with state under the root, with a summary of its lockfile and its current lease.
 */
export interface StateListResultDocument {
  formatVersion: 1;
  /**
   * The host root whose state directory was read.
   */
  root: string;
  hosts: {
    host: string;
    /**
     * The lockfile's lineage; null when the host has a lease but no lockfile yet.
     */
    lineage: string | null;
    /**
     * The lockfile's serial; 0 without a lockfile.
     */
    serial: number;
    /**
     * Desired-state commit of the last completed apply; null before one completes.
     */
    commit: string | null;
    /**
     * When the lockfile was last written; null without one.
     */
    updatedAt: string | null;
    /**
     * How many resources the lockfile records.
     */
    resources: number;
    /**
     * The lease held on the host right now; null when none.
     */
    lease: LeaseRecordDocument | null;
  }[];
}
/**
 * A host's lease lock as recorded in its lease file: output of `agentvm state unlock --json` (the lease that was broken) and the lease of each host in `agentvm state list --json`.
 */
export interface LeaseRecordDocument {
  /**
   * UUID v4; what `agentvm state unlock <id>` names.
   */
  id: string;
  /**
   * `user@hostname` of the holder.
   */
  who: string;
  /**
   * The command holding it, e.g. `apply`.
   */
  operation: string;
  /**
   * The agentvm host whose state the lease guards.
   */
  host: string;
  /**
   * Process id of the holder on its machine.
   */
  pid: number;
  /**
   * Machine the holder runs on.
   */
  hostname: string;
  /**
   * ISO 8601.
   */
  created: string;
  /**
   * ISO 8601. A lease past this instant may be taken over.
   */
  expires: string;
  /**
   * Boot id of the holder's kernel (/proc/sys/kernel/random/boot_id).
   */
  bootId?: string;
  /**
   * Inode of the holder's pid namespace: `pid` is counted there. A holder is judged dead by its pid only in the same boot and namespace; elsewhere only expiry ends its lease.
   */
  pidNamespace?: number;
  /**
   * Start time of the holder process (clock ticks since boot), so that a reused pid is not taken for the holder.
   */
  pidStart?: number;
}
