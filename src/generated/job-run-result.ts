// GENERATED from schemas/job-run-result.schema.json by scripts/gen-types.js. Do not edit: edit the schema and run `npm run gen`.

/**
 * Id of one job run: 12 hex digits.
 */
export type RunId = string;

/**
 * Output of `agentvm job run --json`: one run of a job in a throwaway microVM, what it produced and the receipt of its teardown. On a failure before the VM starts (unknown job, capacity, missing image) the output is an ErrorDocument instead.
 */
export interface JobRunResultDocument {
  formatVersion: 1;
  runId: RunId;
  /**
   * The job definition, `job.<workload>.<job>`.
   */
  address: string;
  host: string;
  /**
   * Desired-state commit the job was read from; null for uncommitted edits (--ref WORKTREE).
   */
  commit: string | null;
  /**
   * succeeded: the job reported exit status 0; failed: another status or none; timed-out / interrupted: its owner stopped it.
   */
  status: 'succeeded' | 'failed' | 'timed-out' | 'interrupted';
  /**
   * The job's exit status as the guest reported it; null when none arrived (timeout, crash, interrupted).
   */
  exitCode: number | null;
  /**
   * The accelerator the VM ran with and why.
   */
  accel: {
    accel: 'kvm' | 'tcg';
    reason: string;
  };
  /**
   * The job's network; null when it had no network device at all.
   */
  network: {
    /**
     * The run's network namespace on the host.
     */
    netns: string;
    guestAddress: string;
    gateway: string;
    /**
     * What the guest may connect to, and where each goes on the host side.
     */
    allowed: {
      protocol: 'tcp' | 'udp';
      /**
       * address:port the guest connects to.
       */
      guest: string;
      /**
       * address:port it reaches on the host side.
       */
      upstream: string;
    }[];
  } | null;
  /**
   * Files the job returned, sorted by name.
   */
  resultFiles: {
    /**
     * Safe relative path.
     */
    name: string;
    size: number;
    sha256: string;
  }[];
  /**
   * Where the result files were written; null when not written (no --out).
   */
  outDir: string | null;
  /**
   * Console text without protocol records, at most 1 MiB.
   */
  console: string;
  /**
   * Time until the guest was up; null when it never came up.
   */
  bootMs: number | null;
  durationMs: number;
  teardown: TeardownReceipt;
  diagnostics: DiagnosticDocument[];
}
/**
 * What tearing the run down did; also written to the audit log.
 */
export interface TeardownReceipt {
  runId: RunId;
  /**
   * The run's address in plans, `job.<workload>.<job>.<runId>`.
   */
  address: string;
  /**
   * Why the run was torn down. finished: the job reported an exit status; failed: it could not run or stopped without one; timed-out, interrupted: its owner killed it; owner-gone, past-deadline: reaped as an orphan.
   */
  reason: 'finished' | 'failed' | 'timed-out' | 'interrupted' | 'owner-gone' | 'past-deadline';
  /**
   * Pids still running that were killed; empty when all had exited.
   */
  killed: number[];
  netns: string | null;
  netnsDeleted: boolean;
  tapDeleted: boolean;
  scratchRemoved: boolean;
  /**
   * Everything of the run is gone, including its record.
   */
  ok: boolean;
  problems: string[];
  durationMs: number;
}
/**
 * A problem report: what is wrong (summary), how to fix it (detail), and where (file:line:column, JSON path, resource address). Never carries a secret value.
 */
export interface DiagnosticDocument {
  code: string;
  severity: 'error' | 'warning';
  summary: string;
  detail?: string;
  location?: {
    file: string;
    line: number;
    column: number;
  };
  path?: string;
  address?: string;
}
