// Plain-text view of a plan (pipes, CI, NO_COLOR): drift first, then changes grouped per workload with action
// symbols and effects, then policy findings, then the one-line summary. The ink view renders the same model.

import type { Plan } from '../engine/plan.js';
import type { Action, PlannedChange } from '../model/resources.js';
import { toolCapabilityLines } from './capabilities-tools.js';
import { renderDiagnostics } from './diagnostics-text.js';
import { renderCapabilitiesText } from './plan-capabilities.js';
import { plainStyle, type Style } from './style.js';
import { describeSource } from './validate-text.js';

export const ACTION_SYMBOL: Record<Action, string> = {
  create: '+',
  update: '~',
  replace: '-/+',
  delete: '-',
  noop: ' ',
};

export function short(id: string | undefined): string {
  if (!id) return '∅';
  const m = /^(sha256:)?([0-9a-f]{40,64})$/.exec(id);
  return m ? `${m[1] ?? ''}${m[2]!.slice(0, 12)}` : id;
}

export function actionColour(action: Action, style: Style): (s: string) => string {
  return action === 'create'
    ? style.green
    : action === 'delete'
      ? style.red
      : action === 'noop'
        ? style.dim
        : style.yellow;
}

export function groupByWorkload(changes: readonly PlannedChange[]): Map<string, PlannedChange[]> {
  const groups = new Map<string, PlannedChange[]>();
  for (const c of changes) {
    const list = groups.get(c.workload) ?? [];
    list.push(c);
    groups.set(c.workload, list);
  }
  return new Map([...groups.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

export function summaryLine(plan: Plan): string {
  const s = plan.summary;
  if (plan.mode === 'refresh-only')
    return s.drift
      ? `Drift: ${s.drift} resource(s) differ from the lockfile.`
      : 'No drift: live state matches the lockfile.';
  const parts = [`${s.create} to create`, `${s.update} to update`, `${s.replace} to replace`, `${s.delete} to delete`];
  const changes = s.create + s.update + s.replace + s.delete;
  const head = changes ? `Plan: ${parts.join(', ')}` : 'No changes: the host matches the desired state';
  return `${head}${s.drift ? `; ${s.drift} drifted` : ''}.${changes ? ` Worst effect on running workloads: ${s.worstEffect}.` : ''}`;
}

export function renderPlanText(plan: Plan, style: Style = plainStyle, opts: { showNoop?: boolean } = {}): string {
  const out: string[] = [];
  const title = plan.mode === 'refresh-only' ? 'Drift check' : plan.mode === 'rollback' ? 'Rollback plan' : 'Plan';
  out.push(
    style.bold(`${title} for host ${plan.host}`) + ` — ${plan.source.repo} at ${describeSource(plan.source, style)}`,
  );
  out.push(
    style.dim(
      `Lockfile: ${plan.lock.lineage ? `lineage ${plan.lock.lineage}, serial ${plan.lock.serial}` : 'none yet (first apply)'}; live state ${short(plan.liveFingerprint)}`,
    ),
  );

  if (plan.drift.length) {
    out.push('', style.bold(style.yellow('Drift — changed outside agentvm:')));
    for (const d of plan.drift) {
      out.push(`  ${style.yellow('!')} ${d.address}`);
      for (const r of d.reasons) out.push(`      ${style.dim(r.code)}: ${r.message}`);
      if (d.locked || d.live)
        out.push(
          style.dim(
            `      locked ${short(d.locked?.digest)} → live ${d.live?.exists ? short(d.live.digest) : 'missing'}`,
          ),
        );
    }
  }

  out.push(...renderCapabilitiesText(plan, style));

  const visible = plan.changes.filter((c) => opts.showNoop || c.action !== 'noop');
  if (visible.length) {
    for (const [workload, changes] of groupByWorkload(visible)) {
      out.push('', style.bold(`Workload ${workload}`));
      for (const c of changes) {
        const colour = actionColour(c.action, style);
        const effect = c.action === 'noop' || c.effect === 'none' ? '' : style.dim(`  effect: ${c.effect}`);
        out.push(`  ${colour(ACTION_SYMBOL[c.action].padStart(3))} ${c.address}  ${colour(c.action)}${effect}`);
        if (
          c.action !== 'noop' &&
          (c.before?.identity || c.after?.identity) &&
          c.before?.identity !== c.after?.identity
        ) {
          out.push(style.dim(`        ${short(c.before?.identity)} → ${short(c.after?.identity)}`));
        }
        for (const r of c.reasons) out.push(`        ${style.dim(r.code)}: ${r.message}`);
        for (const line of toolCapabilityLines(c)) out.push(`        ${style.dim('tools')}: ${line}`);
      }
    }
  }

  if (plan.diagnostics.length)
    out.push('', style.bold('Policy and validation:'), renderDiagnostics(plan.diagnostics, style));

  out.push('', style.bold(summaryLine(plan)));
  if (plan.source.uncommitted)
    out.push(
      style.yellow(
        'This plan reads uncommitted files (WORKTREE): it is for review only and cannot be applied. Commit, then plan again.',
      ),
    );
  else if (!plan.applicable && plan.mode !== 'refresh-only')
    out.push(style.red('This plan has errors and cannot be applied. Fix them and plan again.'));
  return out.join('\n');
}
