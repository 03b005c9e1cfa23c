import { describe, expect, it } from 'vitest';
import type { PlannedChange } from '../model/resources.js';
import { toolCapabilityLines } from './capabilities-tools.js';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);

function change(
  before: Record<string, unknown> | undefined,
  after: Record<string, unknown> | undefined,
  action: PlannedChange['action'] = 'update',
): Pick<PlannedChange, 'action' | 'desired' | 'recorded'> {
  return {
    action,
    ...(after
      ? {
          desired: {
            address: 'unit.w.p',
            provider: 'systemd',
            workload: 'w',
            identity: 'w/p',
            dependsOn: [],
            config: after,
          },
        }
      : {}),
    ...(before ? { recorded: { config: before } } : {}),
  };
}

describe('tool lines of a plan change', () => {
  it('GIVEN programs and MCP tools added, removed and re-pinned THEN one line each, re-pins flagged for review', () => {
    const before = {
      programs: [
        { name: 'rg', path: '/usr/bin/rg', sha256: A },
        { name: 'jq', path: 'bin/jq', sha256: A },
      ],
      mcp: [
        {
          server: 's',
          tools: [
            { name: 'echo', sha256: A },
            { name: 'old', sha256: A },
          ],
        },
      ],
    };
    const after = {
      programs: [
        { name: 'rg', path: '/usr/bin/rg', sha256: B },
        { name: 'fd', path: 'bin/fd', sha256: A },
      ],
      mcp: [
        {
          server: 's',
          tools: [
            { name: 'echo', sha256: B },
            { name: 'add', sha256: A },
          ],
        },
      ],
    };
    expect(toolCapabilityLines(change(before, after))).toEqual([
      `~ program rg (/usr/bin/rg) re-pinned sha256:${A.slice(0, 12)} → sha256:${B.slice(0, 12)}: its bytes changed since last review`,
      `+ program fd (bin/fd) sha256:${A.slice(0, 12)}`,
      '- program jq (bin/jq)',
      `~ mcp tool s/echo re-pinned sha256:${A.slice(0, 12)} → sha256:${B.slice(0, 12)}: description changed since last review`,
      `+ mcp tool s/add sha256:${A.slice(0, 12)}`,
      '- mcp tool s/old',
    ]);
  });

  it('GIVEN the same tools, or a config without any THEN no lines', () => {
    const same = { programs: [{ name: 'rg', path: '/usr/bin/rg', sha256: A }] };
    expect(toolCapabilityLines(change(same, same))).toEqual([]);
    expect(toolCapabilityLines(change({ env: {} }, { env: { X: '1' } }))).toEqual([]);
  });

  it('GIVEN a first apply or a delete THEN everything is added or removed', () => {
    const tools = { programs: [{ name: 'rg', path: '/usr/bin/rg', sha256: A }] };
    expect(toolCapabilityLines(change(undefined, tools, 'create'))).toEqual([
      `+ program rg (/usr/bin/rg) sha256:${A.slice(0, 12)}`,
    ]);
    expect(toolCapabilityLines(change(tools, tools, 'delete'))).toEqual(['- program rg (/usr/bin/rg)']);
  });
});
