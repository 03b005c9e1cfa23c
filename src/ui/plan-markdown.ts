// Markdown view of a plan, for pull-request comments: summary first, policy findings next, then one collapsible
// block per workload. Always fits GitHub's 65,536-character comment limit: blocks that do not fit are cut, and
// the comment says how many and how to see everything.

import type { Plan } from '../engine/plan.js';
import type { Diagnostic } from '../diagnostics/index.js';
import { ACTION_SYMBOL, groupByWorkload, short, summaryLine } from './plan-text.js';

export const MARKDOWN_LIMIT = 65_536;

const esc = (s: string): string => s.replace(/[|<>`\\*_[\]]/g, (c) => `\\${c}`).replace(/\r?\n/g, ' ');

function diagnosticLine(d: Diagnostic): string {
  const where = d.location ? `\`${d.location.file}:${d.location.line}\`` : d.address ? `\`${d.address}\`` : '';
  return `- **${d.severity}** \`${d.code}\` ${where} — ${esc(d.summary)}${d.detail ? `<br>_Fix:_ ${esc(d.detail)}` : ''}`;
}

export function renderPlanMarkdown(plan: Plan, limit = MARKDOWN_LIMIT): string {
  const s = plan.summary;
  const status = plan.summary.errors ? '❌ blocked by policy' : plan.source.uncommitted ? '⚠️ uncommitted' : s.create + s.update + s.replace + s.delete ? '🟡 changes' : '✅ no changes';
  const head: string[] = [];
  head.push(`### agentvm plan — \`${esc(plan.host)}\` — ${status}`);
  head.push('');
  head.push(`**${esc(summaryLine(plan))}**`);
  head.push('');
  head.push(`| create | update | replace | delete | drift | errors | warnings |`);
  head.push(`|---:|---:|---:|---:|---:|---:|---:|`);
  head.push(`| ${s.create} | ${s.update} | ${s.replace} | ${s.delete} | ${s.drift} | ${s.errors} | ${s.warnings} |`);
  head.push('');
  head.push(`<sub>commit \`${plan.source.commit ?? 'WORKTREE (uncommitted)'}\` · lockfile ${plan.lock.lineage ? `\`${plan.lock.lineage.slice(0, 8)}\` serial ${plan.lock.serial}` : 'none'} · plan \`${short(plan.id)}\`</sub>`);

  const sections: string[] = [];
  const errors = plan.diagnostics.filter((d) => d.severity === 'error');
  const warnings = plan.diagnostics.filter((d) => d.severity === 'warning');
  // Findings and drift are cut line by line (each line is a part), so one long list cannot crowd out the rest.
  if (errors.length || warnings.length) {
    const lines = [...errors, ...warnings].map(diagnosticLine);
    sections.push(`\n#### Policy findings (${errors.length} error(s), ${warnings.length} warning(s))\n${lines[0]}`, ...lines.slice(1));
  }
  if (plan.drift.length) {
    const lines = plan.drift.map((d) => `- \`${d.address}\`: ${d.reasons.map((r) => `${r.code} — ${esc(r.message)}`).join('; ')}`);
    sections.push(`\n#### Drift (changed outside agentvm)\n${lines[0]}`, ...lines.slice(1));
  }
  const blocks: string[] = [];
  for (const [workload, changes] of groupByWorkload(plan.changes.filter((c) => c.action !== 'noop'))) {
    const rows = changes.map((c) => `| \`${ACTION_SYMBOL[c.action].trim() || '·'}\` | \`${c.address}\` | ${c.action} | ${c.effect} | ${esc(short(c.before?.identity))} → ${esc(short(c.after?.identity))} | ${c.reasons.map((r) => esc(r.code)).join(', ')} |`);
    blocks.push(['', `<details><summary><code>${esc(workload)}</code> — ${changes.length} change(s)</summary>`, '', '| | address | action | effect | from → to | reasons |', '|---|---|---|---|---|---|', ...rows, '', '</details>'].join('\n'));
  }

  let text = head.join('\n');
  const parts = [...sections, ...blocks];
  const footerFor = (cut: number) => `\n\n> ✂️ ${cut} item(s) not shown to fit the ${limit.toLocaleString('en-US')}-character comment limit. Run \`agentvm plan --format json\` for the whole plan.`;
  let shown = 0;
  for (const part of parts) {
    const remaining = parts.length - shown - 1;
    const reserve = remaining > 0 ? footerFor(remaining).length : 0;
    if (text.length + part.length + reserve > limit - footerFor(parts.length).length) break;
    text += `\n${part}`;
    shown++;
  }
  if (shown < parts.length) text += footerFor(parts.length - shown);
  return `${text}\n`;
}
