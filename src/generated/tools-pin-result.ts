// GENERATED from schemas/tools-pin-result.schema.json by scripts/gen-types.js. Do not edit: edit the schema and run `npm run gen`.

/**
 * Output of `agentvm tools pin <workload> --json`: the description digests the workload's MCP servers offer now, against the contract's pins, and the contract diff that would accept them. Exit 0 when every pin matches, 2 when the diff is not empty or a tool is offered but not allowlisted, 1 on error. Nothing is written.
 */
export interface ToolsPinResult {
  workload: string;
  /**
   * The contract file, relative to the repository.
   */
  contract: string;
  tools: {
    /**
     * The contract's name of the MCP server.
     */
    server: string;
    tool: string;
    /**
     * unchanged: the pin matches; changed: the description changed since it was pinned (the diff re-pins it); missing: pinned but no longer offered; unlisted: offered but not allowlisted (never added by the diff: admitting a tool is a decision).
     */
    status: 'unchanged' | 'changed' | 'missing' | 'unlisted';
    pinned: string | null;
    seen: string | null;
  }[];
  /**
   * A unified diff of the contract file that sets each changed pin to the digest seen; empty when nothing changed.
   */
  diff: string;
}
