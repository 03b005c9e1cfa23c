// Ten applies of the same saved plan started at once against one host (issue 3): exactly one proceeds; the others
// fail fast — naming the lock holder, or (if they got the lock after the winner finished) refusing the plan as
// stale — and the state is intact. Run against both state backends (issue 17).

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { agentvm as run, hasStackTrace } from './support/cli.js';
import { type FleetCopy } from './support/fleet.js';
import { fleetWithStore, STATE_BACKENDS, type Store } from './support/state-backends.js';

describe.each(STATE_BACKENDS.filter((k) => !k.skip))(
  'one host, ten concurrent applies ($name state backend)',
  (kind) => {
    let fleet: FleetCopy;
    let store: Store;
    const agentvm = (args: string[]) => run(args, { env: store.env });
    fleetWithStore(kind, (f, s) => {
      fleet = f;
      store = s;
    });

    it('exactly one applies; the rest fail fast naming the holder; state stays intact', async () => {
      const planFile = join(fleet.base, 'plan.json');
      const plan = await agentvm([
        'plan',
        '--repo',
        fleet.repo,
        '--host',
        'edge-1',
        '--root',
        fleet.root,
        '--out',
        planFile,
      ]);
      expect(plan.code, plan.stderr).toBe(0);
      const runs = await Promise.all(
        Array.from({ length: 10 }, () => agentvm(['apply', planFile, '--root', fleet.root, '--json'])),
      );
      const winners = runs.filter((r) => r.code === 0);
      const losers = runs.filter((r) => r.code !== 0);
      expect(winners, runs.map((r) => r.stdout + r.stderr).join('\n---\n')).toHaveLength(1);
      let namedHolder = 0;
      for (const r of losers) {
        expect(r.code).toBe(1);
        expect(hasStackTrace(r.stdout + r.stderr)).toBe(false);
        const err = JSON.parse(r.stdout) as { error: { code: string; message: string } };
        expect(['state.locked', 'apply.stale-plan']).toContain(err.error.code);
        if (err.error.code === 'state.locked') {
          namedHolder++;
          expect(err.error.message).toMatch(/pid \d+/);
        }
      }
      expect(namedHolder).toBeGreaterThanOrEqual(1);
      const state = await agentvm(['state', 'show', 'edge-1', '--root', fleet.root, '--json']);
      expect(state.code).toBe(0);
      const resources = Object.keys((JSON.parse(state.stdout) as { resources: object }).resources);
      expect(resources.filter((a) => a.startsWith('release.')).sort()).toEqual([
        'release.agent-pool',
        'release.research-orchestrator',
        'release.transcript-summarizer',
      ]);
      // The state really is where the backend under test keeps it (PostgreSQL: no state file under the root).
      expect(existsSync(join(fleet.root, 'var/lib/agentvm/state', 'edge-1.lock.json'))).toBe(kind.name === 'local');
      const audit = await agentvm(['audit', 'verify', '--root', fleet.root]);
      expect(audit.code, audit.stdout + audit.stderr).toBe(0);
      const again = await agentvm([
        'plan',
        '--repo',
        fleet.repo,
        '--host',
        'edge-1',
        '--root',
        fleet.root,
        '--detailed-exitcode',
      ]);
      expect(again.code, again.stdout).toBe(0);
    }, 180_000);
  },
);
