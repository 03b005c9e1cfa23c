// Markdown view of a plan, for pull-request comments a reviewer reads in ten seconds: a marker a bot finds its one
// comment by, the summary table first, policy findings next (errors before warnings), drift, then one collapsible
// block per workload with its changes and a unified diff per changed resource.
// Invariants:
//   - The result never exceeds the limit (GitHub's 65,536 characters by default). Whole workload blocks are cut,
//     never text in the middle of a code fence or a `<details>` block; a block that does not fit with its diffs is
//     shown without them: as many workloads as fit are shown in compact form first,
//     then the room left goes to diffs. The comment then says what was cut and how to see everything.
//   - Every `<details>` opened is closed, and every code fence is closed with a fence longer than any run of
//     backticks inside it.
//   - No secret value is printed: configs carry secrets by reference only (governance refuses values), and keys that
//     look like secrets are still masked unless their value is a reference.
//   - A diff compares flattened configurations, one setting per line: the `-` side is the config the lockfile
//     recorded at the last apply (`change.recorded`: units and job definitions), else the recorded identity and
//     digest (releases: their content is a commit or a package, named by identity); the `+` side is the desired one.

import { FILE_HEADERS_ONLY, formatPatch, structuredPatch } from 'diff';
import type { Plan } from '../engine/plan.js';
import { ACTION_SEVERITY, worstAction, worstEffect, type PlannedChange } from '../model/resources.js';
import type { Diagnostic } from '../diagnostics/index.js';
import { ACTION_SYMBOL, groupByWorkload, short, summaryLine } from './plan-text.js';
import { toolCapabilityLines } from './capabilities-tools.js';
import { renderCapabilitiesMarkdown } from './plan-capabilities.js';

export const MARKDOWN_LIMIT = 65_536;

export interface MarkdownOptions {
  /** Maximum length of the whole comment, in characters (JS string length). Default MARKDOWN_LIMIT. */
  limit?: number;
  /** Diff lines shown per resource before the rest is summarised. Default 60. */
  diffLines?: number;
}

/** The hidden line a bot finds its one comment per host by (host names are DNS labels: no `-->` possible). */
export function planCommentMarker(host: string): string {
  return `<!-- agentvm-plan:${host} -->`;
}

const esc = (s: string): string => s.replace(/[|<>`\\*_[\]]/g, (c) => `\\${c}`).replace(/\r?\n/g, ' ');

/** Names the reviewer reads. Workload names are DNS labels; escaped anyway, as data from the repo. */
const code = (s: string): string =>
  `<code>${s.replace(/[&<>]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : '&gt;'))}</code>`;

const SECRET_KEY = /(password|passwd|secret|token|api[-_]?key|private[-_]?key)s?$/i;
const REFERENCE = /^(file|systemd-creds|credstore|env-file|vault|env):/;

function diagnosticLine(d: Diagnostic): string {
  const where = d.location ? `\`${d.location.file}:${d.location.line}\`` : d.address ? `\`${d.address}\`` : '';
  const icon = d.severity === 'error' ? '⛔' : d.severity === 'warning' ? '⚠️' : 'ℹ️';
  return `- ${icon} **${d.severity}** \`${d.code}\` ${where} — ${esc(d.summary)}${d.detail ? `<br>_Fix:_ ${esc(d.detail)}` : ''}`;
}

/** One `path = json` line per scalar (or array of scalars): line diffs then name the setting that changed. */
export function flattenConfig(value: unknown, prefix = ''): string[] {
  if (
    value === null ||
    typeof value !== 'object' ||
    (Array.isArray(value) && value.every((v) => v === null || typeof v !== 'object'))
  ) {
    const key = prefix.slice(prefix.lastIndexOf('.') + 1);
    const masked =
      typeof value === 'string' && SECRET_KEY.test(key) && !REFERENCE.test(value)
        ? '"<masked>"'
        : JSON.stringify(value);
    return [`${prefix || '(value)'} = ${masked}`];
  }
  if (Array.isArray(value))
    return value.length ? value.flatMap((v, i) => flattenConfig(v, `${prefix}[${i}]`)) : [`${prefix} = []`];
  const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return entries.length
    ? entries.flatMap(([k, v]) => flattenConfig(v, prefix ? `${prefix}.${k}` : k))
    : [`${prefix || '(value)'} = {}`];
}

function recordedBefore(c: PlannedChange): string {
  if (c.action === 'create') return '';
  const lines: string[] = [];
  if (c.before?.identity !== undefined) lines.push(`identity = ${JSON.stringify(c.before.identity)}`);
  // The config the lockfile recorded at the last apply (units, job definitions): a real before/after diff.
  // Top-level keys the provider adds when it records (e.g. the unit's `workload`) are not settings: compare the keys
  // the desired config has (nested settings, such as one env variable removed, still show).
  if (c.recorded)
    lines.push(
      ...flattenConfig(
        c.desired ? pick(c.recorded.config, Object.keys(c.desired.config)) : c.recorded.config,
        'config',
      ),
    );
  else if (c.before?.digest !== undefined) lines.push(`digest = ${JSON.stringify(c.before.digest)}`);
  return lines.length ? `${lines.join('\n')}\n` : '';
}

function pick(config: Record<string, unknown>, keys: readonly string[]): Record<string, unknown> {
  return Object.fromEntries(Object.entries(config).filter(([k]) => keys.includes(k)));
}

function desiredAfter(c: PlannedChange): string {
  if (c.action === 'delete') return '';
  const lines: string[] = [];
  if (c.after?.identity !== undefined) lines.push(`identity = ${JSON.stringify(c.after.identity)}`);
  if (c.desired) lines.push(...flattenConfig(c.desired.config, 'config'));
  return lines.length ? `${lines.join('\n')}\n` : '';
}

/** A fenced unified diff of one change, at most `maxLines` lines; undefined when there is nothing to compare. */
export function changeDiff(c: PlannedChange, maxLines: number): string | undefined {
  const before = recordedBefore(c);
  const after = desiredAfter(c);
  if (before === after) return undefined;
  const patch = structuredPatch(
    c.action === 'create' ? '/dev/null' : `${c.address} (recorded)`,
    c.action === 'delete' ? '/dev/null' : `${c.address} (desired)`,
    before,
    after,
    undefined,
    undefined,
    { context: 2 },
  );
  const lines = formatPatch(patch, FILE_HEADERS_ONLY).replace(/\n$/, '').split('\n');
  const shown = lines.slice(0, maxLines);
  const body = shown.join('\n');
  const longestTicks = Math.max(0, ...(body.match(/`+/g) ?? []).map((t) => t.length));
  const fence = '`'.repeat(Math.max(3, longestTicks + 1));
  const more = lines.length - shown.length;
  return `${fence}diff\n${body}\n${fence}${more > 0 ? `\n<sub>… ${more} more diff line(s) not shown: \`agentvm plan --format json\` has the whole configuration.</sub>` : ''}`;
}

const reasonText = (c: PlannedChange): string =>
  [
    ...c.reasons.map(
      (r) =>
        `\`${r.code}\` ${esc(r.message.startsWith(`${c.address}: `) ? r.message.slice(c.address.length + 2) : r.message)}`,
    ),
    ...toolCapabilityLines(c).map((line) => `\`tools\` ${esc(line)}`),
  ].join('<br>');

function countsOf(changes: readonly PlannedChange[]): string {
  const n = (a: PlannedChange['action'], label: string) => {
    const k = changes.filter((c) => c.action === a).length;
    return k ? `${k} to ${label}` : '';
  };
  return [n('create', 'create'), n('update', 'update'), n('replace', 'replace'), n('delete', 'delete')]
    .filter(Boolean)
    .join(', ');
}

/** A workload's block; `withDiffs` false gives the compact form used when the full one does not fit. */
function workloadBlock(
  workload: string,
  changes: readonly PlannedChange[],
  withDiffs: boolean,
  diffLines: number,
): string {
  const effect = worstEffect(changes.map((c) => c.effect));
  const out = [
    '',
    `<details><summary>${code(workload)} — ${countsOf(changes)}${effect !== 'none' ? ` · worst effect: <b>${effect}</b>` : ''}</summary>`,
    '',
    '| | address | action | effect | from → to | reasons |',
    '|---|---|---|---|---|---|',
    ...changes.map(
      (c) =>
        `| \`${ACTION_SYMBOL[c.action].trim() || '·'}\` | \`${c.address}\` | ${c.action} | ${c.effect} | ${esc(short(c.before?.identity))} → ${esc(short(c.after?.identity))} | ${reasonText(c)} |`,
    ),
  ];
  if (withDiffs) {
    for (const c of changes) {
      const diff = changeDiff(c, diffLines);
      if (diff) out.push('', `**\`${c.address}\`** (${c.action})`, '', diff);
    }
  } else {
    out.push('', '<sub>Diffs not shown to fit the comment limit.</sub>');
  }
  out.push('', '</details>');
  return out.join('\n');
}

function listNames(names: readonly string[], max = 10): string {
  const shown = names
    .slice(0, max)
    .map((n) => `\`${n}\``)
    .join(', ');
  return names.length > max ? `${shown} and ${names.length - max} more` : shown;
}

interface Cut {
  findings: number;
  drift: number;
  workloads: string[];
  compacted: number;
  totalWorkloads: number;
}

function footer(cut: Cut, limit: number): string {
  const parts: string[] = [];
  if (cut.workloads.length)
    parts.push(`${cut.workloads.length} of ${cut.totalWorkloads} workload block(s) (${listNames(cut.workloads)})`);
  if (cut.findings) parts.push(`${cut.findings} policy finding(s)`);
  if (cut.drift) parts.push(`${cut.drift} drift item(s)`);
  const lines: string[] = [];
  if (parts.length)
    lines.push(
      `> ✂️ **Cut to fit the ${limit.toLocaleString('en-US')}-character comment limit:** ${parts.join('; ')} not shown.`,
    );
  if (cut.compacted)
    lines.push(
      `${lines.length ? '>' : '> ✂️'} Diffs left out of ${cut.compacted} workload block(s) to fit the ${limit.toLocaleString('en-US')}-character comment limit.`,
    );
  if (!lines.length) return '';
  lines.push('> Run `agentvm plan --format json` (or `--format text`) for the whole plan.');
  return `\n\n${lines.join('\n')}`;
}

export function renderPlanMarkdown(plan: Plan, options: number | MarkdownOptions = {}): string {
  const opts = typeof options === 'number' ? { limit: options } : options;
  const limit = opts.limit ?? MARKDOWN_LIMIT;
  const diffLines = opts.diffLines ?? 60;
  const s = plan.summary;
  const changed = s.create + s.update + s.replace + s.delete;
  const status = s.errors
    ? '❌ blocked by policy'
    : plan.source.uncommitted
      ? '⚠️ uncommitted'
      : changed
        ? '🟡 changes'
        : s.drift
          ? '🟠 drift'
          : '✅ no changes';
  const title =
    plan.mode === 'refresh-only'
      ? 'agentvm drift check'
      : plan.mode === 'rollback'
        ? 'agentvm rollback plan'
        : 'agentvm plan';
  const head: string[] = [
    planCommentMarker(plan.host),
    `### ${title} — \`${esc(plan.host)}\` — ${status}`,
    '',
    `**${esc(summaryLine(plan))}**`,
    '',
    '| create | update | replace | delete | drift | errors | warnings |',
    '|---:|---:|---:|---:|---:|---:|---:|',
    `| ${s.create} | ${s.update} | ${s.replace} | ${s.delete} | ${s.drift} | ${s.errors} | ${s.warnings} |`,
    '',
    `<sub>commit \`${plan.source.commit ?? 'WORKTREE (uncommitted)'}\` · lockfile ${plan.lock.lineage ? `\`${plan.lock.lineage.slice(0, 8)}\` serial ${plan.lock.serial}` : 'none'} · plan \`${short(plan.id)}\`</sub>`,
  ];
  if (s.errors)
    head.push(
      '',
      `> ⛔ **${s.errors} policy error(s): this plan cannot be applied.** Fix the findings below and push again.`,
    );

  // Findings and drift are cut line by line (the heading rides with the first line), errors first, so one long
  // list of warnings cannot crowd out an error.
  const severityRank = (d: Diagnostic) => (d.severity === 'error' ? 0 : d.severity === 'warning' ? 1 : 2);
  const findings = [...plan.diagnostics].sort((a, b) => severityRank(a) - severityRank(b)).map(diagnosticLine);
  const errors = plan.diagnostics.filter((d) => d.severity === 'error').length;
  const findingParts = findings.map((line, i) =>
    i === 0 ? `\n#### Policy findings (${errors} error(s), ${findings.length - errors} other)\n${line}` : line,
  );
  const driftLines = plan.drift.map(
    (d) => `- \`${d.address}\`: ${d.reasons.map((r) => `\`${r.code}\` ${esc(r.message)}`).join('; ')}`,
  );
  const driftParts = driftLines.map((line, i) => (i === 0 ? `\n#### Drift (changed outside agentvm)\n${line}` : line));

  // Worst workloads first (deletes and replaces before creates), then by name: what a reviewer must see survives a cut.
  const groups = [...groupByWorkload(plan.changes.filter((c) => c.action !== 'noop'))].sort(
    ([a, ca], [b, cb]) =>
      ACTION_SEVERITY[worstAction(cb.map((c) => c.action))] - ACTION_SEVERITY[worstAction(ca.map((c) => c.action))] ||
      (a < b ? -1 : a > b ? 1 : 0),
  );
  const changeCount = groups.reduce((n, [, c]) => n + c.length, 0);
  const changesHead = groups.length
    ? `\n#### Changes (${changeCount} resource(s) in ${groups.length} workload(s))\n<sub>Diffs: \`-\` is what the plan records of the live object (identity, digest); \`+\` is the desired configuration, one setting per line. Secrets appear by reference only.</sub>`
    : '';

  // Reserve room for the longest footer this plan could need, so appending it never breaks the limit.
  const longestNames = groups.map(([w]) => w).sort((a, b) => b.length - a.length);
  const reserve =
    footer(
      {
        findings: findingParts.length,
        drift: driftParts.length,
        workloads: longestNames,
        compacted: groups.length,
        totalWorkloads: groups.length,
      },
      limit,
    ).length + 2;
  const budget = limit - reserve;
  let text = head.join('\n');
  if (text.length > budget) throw new Error(`renderPlanMarkdown: limit ${limit} is too small for the plan header`);
  const cut: Cut = { findings: 0, drift: 0, workloads: [], compacted: 0, totalWorkloads: groups.length };
  // Findings and drift together may fill at most 60% of the comment: the workloads a change touches stay visible.
  const listBudget = Math.floor(budget * 0.6);
  const take = (parts: string[], field: 'findings' | 'drift') => {
    for (const [i, part] of parts.entries()) {
      if (text.length + 1 + part.length > listBudget) {
        cut[field] = parts.length - i;
        return;
      }
      text += `\n${part}`;
    }
  };
  // Capabilities first: a new way out is what a reviewer must not miss (cut, if ever, like findings).
  take(renderCapabilitiesMarkdown(plan, esc), 'findings');
  take(findingParts, 'findings');
  take(driftParts, 'drift');
  if (groups.length && text.length + 1 + changesHead.length <= budget) {
    text += `\n${changesHead}`;
    // Two passes: first as many workloads as fit in compact form (a reviewer must see what is touched), then the
    // room left is spent on diffs, block by block in order.
    const compact = groups.map(([w, c]) => workloadBlock(w, c, false, diffLines));
    let room = budget - text.length;
    let shown = 0;
    while (shown < compact.length && compact[shown]!.length + 1 <= room) room -= compact[shown++]!.length + 1;
    const blocks = compact.slice(0, shown);
    for (const [i, [workload, changes]] of groups.slice(0, shown).entries()) {
      const full = workloadBlock(workload, changes, true, diffLines);
      const extra = full.length - blocks[i]!.length;
      if (extra <= room) {
        blocks[i] = full;
        room -= extra;
      } else {
        cut.compacted++;
      }
    }
    for (const b of blocks) text += `\n${b}`;
    cut.workloads = groups.slice(shown).map(([w]) => w);
  } else if (groups.length) {
    cut.workloads = groups.map(([w]) => w);
  }
  text += footer(cut, limit);
  return `${text}\n`;
}
