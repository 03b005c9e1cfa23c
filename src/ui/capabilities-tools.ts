// The tool lines of a workload's capabilities in a plan (issue 15 item 5): what a change adds, removes or re-pins
// among the programs the unit may execute and the MCP tools its gateway may offer, read from the change's desired
// config against the config the lockfile recorded at the last apply (`programs`, `mcp` of a unit config).
// A re-pin is flagged: for a program its bytes, for an MCP tool its description changed since the last review.
// Pure. Integration point: plan-text.ts prints these lines under the change (issue 13's capabilities block can
// take them as they are).

import type { PlannedChange } from '../model/resources.js';

interface ProgramPin {
  name: string;
  path: string;
  sha256: string;
}
interface McpPins {
  server: string;
  tools: Array<{ name: string; sha256: string }>;
}

const short = (hex: string): string => `sha256:${hex.slice(0, 12)}`;

function programsOf(config: Record<string, unknown> | undefined): ProgramPin[] {
  return Array.isArray(config?.programs) ? (config.programs as ProgramPin[]) : [];
}

function mcpOf(config: Record<string, unknown> | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (Array.isArray(config?.mcp))
    for (const s of config.mcp as McpPins[]) for (const t of s.tools ?? []) out.set(`${s.server}/${t.name}`, t.sha256);
  return out;
}

/** `+`/`-`/`~` lines for the tools a change grants, revokes or re-pins; empty when the tools stay as they are. */
export function toolCapabilityLines(change: Pick<PlannedChange, 'action' | 'desired' | 'recorded'>): string[] {
  const after = change.action === 'delete' ? undefined : change.desired?.config;
  const before = change.recorded?.config;
  const lines: string[] = [];
  const beforePrograms = new Map(programsOf(before).map((p) => [`${p.name}\0${p.path}`, p]));
  const afterPrograms = new Map(programsOf(after).map((p) => [`${p.name}\0${p.path}`, p]));
  for (const [key, p] of afterPrograms) {
    const was = beforePrograms.get(key);
    if (!was) lines.push(`+ program ${p.name} (${p.path}) ${short(p.sha256)}`);
    else if (was.sha256 !== p.sha256)
      lines.push(
        `~ program ${p.name} (${p.path}) re-pinned ${short(was.sha256)} → ${short(p.sha256)}: its bytes changed since last review`,
      );
  }
  for (const [key, p] of beforePrograms) if (!afterPrograms.has(key)) lines.push(`- program ${p.name} (${p.path})`);
  const beforeMcp = mcpOf(before);
  const afterMcp = mcpOf(after);
  for (const [tool, sha] of afterMcp) {
    const was = beforeMcp.get(tool);
    if (was === undefined) lines.push(`+ mcp tool ${tool} ${short(sha)}`);
    else if (was !== sha)
      lines.push(`~ mcp tool ${tool} re-pinned ${short(was)} → ${short(sha)}: description changed since last review`);
  }
  for (const tool of beforeMcp.keys()) if (!afterMcp.has(tool)) lines.push(`- mcp tool ${tool}`);
  return lines;
}
