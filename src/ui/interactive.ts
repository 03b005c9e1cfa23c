// The single decision "is this an interactive terminal": only then does agentvm load ink and react (≈0.45 s,
// DESIGN §6), draw live views and ever ask a question. Pipes, CI, NO_COLOR, TERM=dumb and --json get plain text or
// JSON and never a prompt, so a script can never hang waiting for an answer nobody will type.

export interface TerminalFacts {
  /** --json was asked for: machines read the output. */
  json: boolean;
  stdin?: { isTTY?: boolean };
  stdout?: { isTTY?: boolean };
  env?: NodeJS.ProcessEnv;
}

export function isInteractive(facts: TerminalFacts): boolean {
  const env = facts.env ?? process.env;
  const stdin = facts.stdin ?? process.stdin;
  const stdout = facts.stdout ?? process.stdout;
  if (facts.json) return false;
  // Both ends: a prompt needs someone to type (stdin) and a live view needs a screen to redraw (stdout).
  if (!stdin.isTTY || !stdout.isTTY) return false;
  // CI=true, 1, yes, … (any value but empty, false or 0): a build, not a person.
  if (env.CI !== undefined && !/^(|false|0)$/i.test(env.CI)) return false;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.TERM === 'dumb') return false;
  return true;
}
