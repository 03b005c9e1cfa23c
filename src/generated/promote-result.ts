// GENERATED from schemas/promote-result.schema.json by scripts/gen-types.js. Do not edit: edit the schema and run `npm run gen`.

/**
 * Output of `agentvm promote --json`: the manifest change shown (dry run) or committed (--yes). Exit 0 when shown or committed; on an error (dirty manifest, unresolvable ref, version range) the output is an ErrorDocument instead.
 */
export interface PromoteResultDocument {
  formatVersion: 1;
  workload: string;
  /**
   * Path of the workload manifest that is rewritten, relative to the repository.
   */
  manifest: string;
  /**
   * The pin before: a commit (archetype A) or an exact package version (archetype B).
   */
  from: string;
  /**
   * The pin after; equal to from when there is nothing to promote.
   */
  to: string;
  /**
   * Unified diff of the manifest change.
   */
  diff: string;
  /**
   * True when the change was written and committed (--yes).
   */
  committed: boolean;
  /**
   * The promotion commit; null when nothing was committed.
   */
  commit: string | null;
  /**
   * Things the user should know (e.g. a signature bundle that was not replaced).
   */
  notes: string[];
}
