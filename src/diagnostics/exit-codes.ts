// Exit codes shared by every command (ADR 0004). Scripts and timers depend on these numbers: never renumber.

export const ExitCode = {
  /** Success; for plan/drift: no changes. */
  Ok: 0,
  /** Error: bad input, policy violation, refused operation, lock held. Nothing was changed. */
  Error: 1,
  /** Changes or drift present (`plan --detailed-exitcode`, always for `drift`). */
  Changes: 2,
  /** Apply ran and some resources failed; the lockfile records what succeeded; re-run apply to converge. */
  PartialApply: 3,
} as const;

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];
