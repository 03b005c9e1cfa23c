// The markdown view over synthetic plans: order (marker, summary, errors before warnings, changes), diffs, secret
// masking, and the limit invariants (never over the limit, whole blocks only, balanced <details> and fences) over
// a range of limits.
import { describe, expect, it } from 'vitest';
import { errorDiag, warningDiag, type Diagnostic } from '../diagnostics/index.js';
import type { Plan } from '../engine/plan.js';
import type { PlannedChange } from '../model/resources.js';
import { flattenConfig, planCommentMarker, renderPlanMarkdown } from './plan-markdown.js';

function unitChange(
  workload: string,
  action: PlannedChange['action'],
  env: Record<string, string> = {},
): PlannedChange {
  const address = `unit.${workload}.core`;
  return {
    address,
    provider: 'systemd',
    workload,
    action,
    effect: action === 'delete' ? 'none' : 'restart',
    reasons: [
      { code: action === 'create' ? 'new' : 'config-changed', message: `${address}: Service.Environment (restart)` },
    ],
    ...(action === 'create' ? {} : { before: { identity: `${workload}/core`, digest: `sha256:${'ab'.repeat(32)}` } }),
    ...(action === 'delete' ? {} : { after: { identity: `${workload}/core` } }),
    ...(action === 'delete'
      ? {}
      : {
          desired: {
            address,
            provider: 'systemd',
            workload,
            identity: `${workload}/core`,
            dependsOn: [],
            config: { profile: 'core', env, secrets: [{ name: 'api-token', ref: 'file:/etc/agentvm/secrets/t' }] },
          },
        }),
    dependsOn: [],
  };
}

function planOf(changes: PlannedChange[], diagnostics: Diagnostic[] = []): Plan {
  const count = (a: string) => changes.filter((c) => c.action === a).length;
  const errors = diagnostics.filter((d) => d.severity === 'error').length;
  return {
    formatVersion: 1,
    id: `sha256:${'0'.repeat(64)}`,
    createdAt: '2025-01-01T00:00:00.000Z',
    host: 'edge-1',
    mode: 'normal',
    source: { repo: '/fleet', ref: 'HEAD', commit: 'c'.repeat(40), uncommitted: false },
    lock: { lineage: null, serial: 0 },
    liveFingerprint: `sha256:${'1'.repeat(64)}`,
    changes,
    drift: [],
    diagnostics,
    summary: {
      create: count('create'),
      update: count('update'),
      replace: count('replace'),
      delete: count('delete'),
      noop: 0,
      drift: 0,
      errors,
      warnings: diagnostics.length - errors,
      worstAction: 'delete',
      worstEffect: 'restart',
    },
    applicable: errors === 0,
  };
}

/** Structural validity: <details> balanced and never nested across blocks, every code fence closed. */
function assertWellFormed(md: string): void {
  let depth = 0;
  let fence: string | null = null;
  for (const line of md.split('\n')) {
    if (fence) {
      if (line === fence) fence = null;
      continue;
    }
    const open = /^(`{3,})\w*$/.exec(line);
    if (open) {
      fence = open[1]!;
      continue;
    }
    if (line.startsWith('<details>')) depth++;
    if (line === '</details>') depth--;
    expect(depth === 0 || depth === 1, `details depth ${depth} at: ${line}`).toBe(true);
  }
  expect(fence, 'an unclosed code fence').toBeNull();
  expect(depth).toBe(0);
}

describe('renderPlanMarkdown', () => {
  it('GIVEN errors and warnings THEN marker first, summary, errors before warnings, findings before changes', () => {
    const plan = planOf(
      [unitChange('a', 'update', { X: '1' })],
      [warningDiag('w.one', 'a warning'), errorDiag('e.one', 'an error', { address: 'unit.a.core' })],
    );
    const md = renderPlanMarkdown(plan);
    expect(md.split('\n')[0]).toBe(planCommentMarker('edge-1'));
    expect(md).toContain('❌ blocked by policy');
    const order = ['| create | update |', 'e.one', 'w.one', '#### Changes', '<details>'].map((s) => md.indexOf(s));
    expect(order.every((i) => i >= 0)).toBe(true);
    expect([...order].sort((x, y) => x - y)).toEqual(order);
    assertWellFormed(md);
  });

  it('shows a unified diff per change, with references but never a secret-looking value', () => {
    const md = renderPlanMarkdown(planOf([unitChange('a', 'create', { API_TOKEN: 's3cr3t-value', MODE: 'fast' })]));
    expect(md).toContain('--- /dev/null');
    expect(md).toContain('+config.env.MODE = "fast"');
    expect(md).toContain('+config.secrets[0].ref = "file:/etc/agentvm/secrets/t"');
    expect(md).toContain('+config.env.API_TOKEN = "<masked>"');
    expect(md).not.toContain('s3cr3t-value');
  });

  it('lists the tools a change re-pins in its reasons, flagged for review', () => {
    const c = unitChange('a', 'update');
    const pins = (sha: string) => ({
      profile: 'core',
      env: {},
      mcp: [{ server: 'search', tools: [{ name: 'find', sha256: sha }] }],
    });
    const change: PlannedChange = {
      ...c,
      desired: { ...c.desired!, config: pins('b'.repeat(64)) },
      recorded: { config: pins('a'.repeat(64)) },
    };
    const md = renderPlanMarkdown(planOf([change]));
    expect(md).toContain(
      `\`tools\` ~ mcp tool search/find re-pinned sha256:${'a'.repeat(12)} → sha256:${'b'.repeat(12)}: description changed since last review`,
    );
    assertWellFormed(md);
  });

  it('fences content holding backticks with a longer fence', () => {
    const md = renderPlanMarkdown(planOf([unitChange('a', 'create', { NOTE: 'has ```` four backticks' })]));
    expect(md).toContain('`````diff');
    assertWellFormed(md);
  });

  it('flattens configs into one sorted setting per line', () => {
    expect(flattenConfig({ b: { y: 1, x: [1, 2] }, a: [{ k: 'v' }], c: {} }, 'config')).toEqual([
      'config.a[0].k = "v"',
      'config.b.x = [1,2]',
      'config.b.y = 1',
      'config.c = {}',
    ]);
  });

  it('never exceeds the limit, cuts whole blocks, stays well-formed, and says what was cut — over a range of limits', () => {
    const env = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`SETTING_${i}`, `value-${i}`.repeat(3)]));
    const changes = Array.from({ length: 120 }, (_, i) =>
      unitChange(`w-${String(i).padStart(3, '0')}`, i % 3 === 0 ? 'delete' : 'update', env),
    );
    const warnings = Array.from({ length: 200 }, (_, i) => warningDiag(`w.${i}`, `warning number ${i} `.repeat(4)));
    const plan = planOf(changes, [...warnings, errorDiag('e.last', 'the one error')]);
    for (const limit of [4_000, 9_000, 20_000, 40_000, 65_536, 400_000]) {
      const md = renderPlanMarkdown(plan, limit);
      expect(md.length).toBeLessThanOrEqual(limit);
      assertWellFormed(md);
      expect(md).toContain('e.last'); // the error survives a cut, warnings do not crowd it out
      const blocks = (md.match(/^<details>/gm) ?? []).length;
      if (blocks < 120) expect(md).toContain(`${120 - blocks} of 120 workload block(s)`);
      if (limit < 400_000) expect(md).toContain('agentvm plan --format json');
      else expect(blocks).toBe(120);
      // Deletes are the worst action: their workloads come first.
      expect(md.indexOf('<details><summary><code>w-000</code>')).toBeGreaterThan(0);
    }
  });
});
