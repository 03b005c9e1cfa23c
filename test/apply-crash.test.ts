// Crash consistency (issue 3): the apply process is SIGKILLed at every durable step of a multi-resource apply in
// turn. After each kill the lockfile parses, the audit chain verifies, and the next apply converges to the plan
// with nothing lost (a following plan shows no changes and no drift). Run against both state backends (issue 17).

import { describe, expect, it } from 'vitest';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { agentvm as run, hasStackTrace } from './support/cli.js';
import { type FleetCopy } from './support/fleet.js';
import { fleetWithStore, STATE_BACKENDS, type Store } from './support/state-backends.js';

describe.each(STATE_BACKENDS.filter((k) => !k.skip))(
  'apply survives SIGKILL at every step ($name state backend)',
  (kind) => {
    let fleet: FleetCopy;
    let store: Store;
    const agentvm = (args: string[], opts: { env?: NodeJS.ProcessEnv } = {}) =>
      run(args, { ...opts, env: { ...store.env, ...opts.env } });
    fleetWithStore(kind, (f, s) => {
      fleet = f;
      store = s;
    });

    it('kills at step 1, 2, 3, … until an apply completes; every time the next apply converges', async () => {
      const args = ['--repo', fleet.repo, '--host', 'edge-1', '--root', fleet.root];
      let killedAt = 0;
      for (let step = 1; step <= 200; step++) {
        rmSync(fleet.root, { recursive: true, force: true });
        await store.reset();
        const crashed = await agentvm(['apply', ...args, '--auto-approve', '--concurrency', '1'], {
          env: { AGENTVM_FAULT_KILL_AFTER: String(step) },
        });
        if (crashed.signal !== 'SIGKILL') {
          // The apply has fewer durable steps than this: it completed normally, and the loop has covered them all.
          expect(crashed.code, crashed.stdout + crashed.stderr).toBe(0);
          break;
        }
        killedAt = step;
        const state = await agentvm(['state', 'list', '--root', fleet.root, '--json']);
        expect(state.code, `after kill at step ${step}: ${state.stdout}${state.stderr}`).toBe(0);
        const audit = await agentvm(['audit', 'verify', '--root', fleet.root, '--json']);
        expect(audit.code, `after kill at step ${step}: ${audit.stdout}`).toBe(0);
        const resume = await agentvm(['apply', ...args, '--auto-approve']);
        expect(hasStackTrace(resume.stdout + resume.stderr)).toBe(false);
        expect(resume.code, `resume after kill at step ${step}: ${resume.stdout}${resume.stderr}`).toBe(0);
        const plan = await agentvm(['plan', ...args, '--detailed-exitcode']);
        expect(plan.code, `plan after resume (kill at step ${step}): ${plan.stdout}`).toBe(0);
        const verify = await agentvm(['audit', 'verify', '--root', fleet.root]);
        expect(verify.code, verify.stdout + verify.stderr).toBe(0);
      }
      // The state really is where the backend under test keeps it (PostgreSQL: no state file under the root).
      expect(existsSync(join(fleet.root, 'var/lib/agentvm/state', 'edge-1.lock.json'))).toBe(kind.name === 'local');
      // A multi-resource apply has many durable steps; the loop must have killed it at each of them.
      expect(killedAt).toBeGreaterThanOrEqual(6);
    }, 900_000);
  },
);
