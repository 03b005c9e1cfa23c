// The README's quick start: `npm run demo` runs the main job on the bundled example against a temporary host root
// and must succeed on a fresh checkout (after `npm ci`, which builds). It must also leave nothing behind.

import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { assertBuilt, ROOT } from './support/cli.js';

describe('npm run demo', () => {
  it('runs validate → plan → apply → re-plan → drift → state → gate grant → audit, exit 0, and cleans up', () => {
    assertBuilt();
    const before = new Set(readdirSync(tmpdir()).filter((n) => n.startsWith('agentvm-demo-')));
    const run = spawnSync(process.execPath, [join(ROOT, 'scripts/demo.js')], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, NO_COLOR: '1' },
      timeout: 120_000,
    });
    expect(run.status, run.stdout + run.stderr).toBe(0);
    for (const text of ['✓ Valid', 'Apply complete', 'No changes', 'No drift', 'One-time link', 'Audit log intact'])
      expect(run.stdout, text).toContain(text);
    expect(run.stdout).not.toContain('demo step failed');
    const after = readdirSync(tmpdir()).filter((n) => n.startsWith('agentvm-demo-') && !before.has(n));
    expect(after).toEqual([]);
  }, 150_000);
});
