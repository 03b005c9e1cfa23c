// The plan's capabilities block in text and markdown: per workload, what it may now do that it could not (and what it
// can no longer do), flagged by risk — `egress +api.new.example.com:443 (new destination: possible exfiltration
// channel)`. Data from engine/capabilities.ts (the JSON view carries `plan.capabilities` as is). Shown even when no
// resource of the workload restarts: an allowlist change reloads the egress proxy and touches no unit.

import { capabilityLines } from '../engine/capabilities.js';
import type { Plan } from '../engine/plan.js';
import type { Style } from './style.js';

/** Workloads whose capabilities change, with their lines. */
function changed(plan: Plan): Array<[workload: string, lines: string[]]> {
  return (plan.capabilities ?? [])
    .map((c) => [c.workload, capabilityLines(c)] as [string, string[]])
    .filter(([, lines]) => lines.length > 0);
}

export function renderCapabilitiesText(plan: Plan, style: Style): string[] {
  const rows = changed(plan);
  if (!rows.length) return [];
  const out = ['', style.bold(style.yellow('Capabilities — what workloads may do changes:'))];
  for (const [workload, lines] of rows) {
    out.push(`  ${workload}`);
    for (const l of lines) out.push(`    ${l.includes(' +') ? style.yellow('⚠') : style.dim('-')} ${l}`);
  }
  return out;
}

/** Markdown lines (each a part a caller may cut at), or none. */
export function renderCapabilitiesMarkdown(plan: Plan, escape: (s: string) => string): string[] {
  const rows = changed(plan);
  if (!rows.length) return [];
  const parts: string[] = [];
  for (const [workload, lines] of rows)
    for (const l of lines) parts.push(`- \`${workload}\`: ${l.includes(' +') ? '⚠️ ' : ''}${escape(l)}`);
  parts[0] = `\n#### Capabilities (what workloads may do)\n${parts[0]}`;
  return parts;
}
