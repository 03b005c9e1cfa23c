// The MCP tool pins of a profile, carried in its unit config so the lockfile records what was last reviewed and
// plan can show a re-pin (src/ui/capabilities-tools.ts). Not rendered into the unit: the MCP gateway enforces
// them (src/mcp, decisions/0022). A change of pins alone is an `update` with effect `none`: nothing restarts, and
// apply records the new pins.

import type { Reason } from '../../model/index.js';

export interface McpPinSet {
  server: string;
  tools: Array<{ name: string; sha256: string }>;
}

/** `kind: mcp` entries of a contract's tools, as pins per server. */
export function mcpPinsOf(
  tools: ReadonlyArray<{ kind?: string; name: string; tools?: Array<{ name: string; sha256: string }> }> | undefined,
): McpPinSet[] {
  return (tools ?? [])
    .filter((t) => t.kind === 'mcp')
    .map((t) => ({ server: t.name, tools: (t.tools ?? []).map((p) => ({ name: p.name, sha256: p.sha256 })) }));
}

/** Checks the config's `mcp` (absent: none). Undefined when malformed. */
export function parseMcpPins(value: unknown): McpPinSet[] | undefined {
  if (value === undefined) return [];
  if (!Array.isArray(value)) return undefined;
  const ok = value.every(
    (s) =>
      typeof s === 'object' &&
      s !== null &&
      typeof s.server === 'string' &&
      Array.isArray(s.tools) &&
      s.tools.every(
        (t: unknown) =>
          typeof t === 'object' &&
          t !== null &&
          typeof (t as { name?: unknown }).name === 'string' &&
          /^[0-9a-f]{64}$/.test(String((t as { sha256?: unknown }).sha256)),
      ),
  );
  return ok ? (value as McpPinSet[]) : undefined;
}

/** A reason when the desired pins differ from the ones recorded at the last apply. */
export function mcpPinChange(desired: readonly McpPinSet[], recorded: unknown, address: string): Reason | undefined {
  const before = parseMcpPins(recorded) ?? [];
  const key = (sets: readonly McpPinSet[]): string =>
    JSON.stringify(sets.map((s) => [s.server, s.tools.map((t) => [t.name, t.sha256]).sort()]).sort());
  if (key(desired) === key(before)) return undefined;
  return {
    code: 'config-changed',
    message: `${address}: MCP tool pins changed (no restart; the gateway enforces them)`,
  };
}
