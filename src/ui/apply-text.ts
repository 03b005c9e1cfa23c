// Plain-text progress and summary of an apply, one line per event (pipes and CI; the ink view is for TTYs).

import type { ApplyEvent, ApplyResult } from '../app/apply.js';
import { renderDiagnostics } from './diagnostics-text.js';
import { plainStyle, type Style } from './style.js';

const VERB: Record<string, [string, string]> = {
  create: ['Creating', 'created'],
  update: ['Updating', 'updated'],
  replace: ['Replacing', 'replaced'],
  delete: ['Deleting', 'deleted'],
  noop: ['Checking', 'unchanged'],
};

export function renderApplyEvent(e: ApplyEvent, style: Style = plainStyle): string | undefined {
  switch (e.type) {
    case 'start':
      return `${style.bold(`Applying plan ${e.plan.id.slice(7, 19)} to host ${e.plan.host}`)} (apply ${e.applyId})${e.resumed ? style.yellow(' — resuming an interrupted apply') : ''}`;
    case 'resource-start':
      return `${e.address}: ${VERB[e.action]![0]}…`;
    case 'progress':
      return style.dim(`${e.address}: ${e.message}`);
    case 'resource-done':
      return e.ok
        ? `${e.address}: ${style.green(VERB[e.action]![1])} ${style.dim(`(${(e.ms / 1000).toFixed(1)}s)`)}`
        : `${e.address}: ${style.red('FAILED')}\n${renderDiagnostics(e.diagnostics, style).replace(/^/gm, '  ')}`;
    case 'resource-skipped':
      return `${e.address}: ${style.yellow('skipped')} — ${e.reason}`;
    case 'resource-resumed':
      return `${e.address}: ${style.dim('already applied by the interrupted apply')}`;
    case 'finish':
      return undefined;
  }
}

export function renderApplySummary(r: ApplyResult, style: Style = plainStyle): string {
  const s = `${r.applied.length} applied, ${r.failed.length} failed, ${r.skipped.length} skipped in ${(r.durationMs / 1000).toFixed(1)}s; lockfile serial ${r.lock.serial}.`;
  if (r.status === 'partial')
    return (
      style.red(style.bold(`Apply partly failed: ${s}`)) +
      '\nThe lockfile records what succeeded. Fix the cause and run apply again to converge (exit code 3).'
    );
  if (r.status === 'no-changes') return style.green('Apply complete: nothing to change.');
  return style.green(style.bold(`Apply complete: ${s}`));
}
