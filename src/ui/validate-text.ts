// Plain-text view of a validate result.

import type { ValidateResult } from '../app/validate.js';
import { renderDiagnostics } from './diagnostics-text.js';
import { plainStyle, type Style } from './style.js';

export function describeSource(
  r: { ref: string; commit: string | null; uncommitted: boolean },
  style: Style = plainStyle,
): string {
  if (r.uncommitted) return style.yellow('WORKTREE (uncommitted files — not a commit)');
  return r.ref === r.commit ? `${r.commit}` : `${r.commit} (${r.ref})`;
}

export function renderValidate(r: ValidateResult, style: Style = plainStyle): string {
  const out: string[] = [];
  out.push(
    `Validated ${r.repo} at ${describeSource(r, style)}: ${r.summary.hosts} host(s), ${r.summary.workloads} workload(s).`,
  );
  if (r.diagnostics.length) out.push('', renderDiagnostics(r.diagnostics, style));
  out.push('');
  const counts = `${r.summary.errors} error(s), ${r.summary.warnings} warning(s)`;
  out.push(
    r.valid
      ? style.green(`✓ Valid (${counts}).`)
      : style.red(`✗ Invalid: ${counts}. Nothing is deployable until the errors are fixed.`),
  );
  if (r.uncommitted)
    out.push(style.yellow('Note: WORKTREE results describe uncommitted files; commit them before plan/apply.'));
  return out.join('\n');
}
