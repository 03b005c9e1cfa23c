// GENERATED from schemas/memory-purge-result.schema.json by scripts/gen-types.js. Do not edit: edit the schema and run `npm run gen`.

/**
 * Output of `agentvm memory purge --json`: the memory directories of a workload that is no longer on the host, and which of them were deleted (ADR 0024).
 */
export interface MemoryPurgeResultDocument {
  formatVersion: 1;
  host: string;
  workload: string;
  /**
   * Host paths deleted (one per scope and layout that held the workload's memory); empty when there was none.
   */
  removed: string[];
}
