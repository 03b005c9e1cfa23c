// Issue 21, item 6: rollback is as crash-safe as apply. A host runs orchestrator v2 with v1 as its rollback target;
// `rollback` is SIGKILLed at its 1st, 2nd, 3rd, … durable step (AGENTVM_FAULT_KILL_AFTER, counted, never timed) until
// it completes. After every kill the audit chain verifies, and the next `rollback` converges: v1 is live, the lockfile
// records v1 as the release and v2 — the release it replaced — as the rollback target (never the rollback undone, never
// the target lost), and the audit log has the rollback's ok record. Then a rollback back to v2 restores the start.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { agentvm, assertBuilt, hasStackTrace } from './support/cli.js';
import { fleetCopy, type FleetCopy } from './support/fleet.js';

let fleet: FleetCopy;
const H = ['--host', 'edge-1'];
const W = 'research-orchestrator';

function liveRelease(): string {
  return readlinkSync(join(fleet.root, 'var/lib/agentvm/releases', W, 'current'));
}

async function lockState(): Promise<{ release: string; rollback: string | undefined }> {
  const show = await agentvm(['state', 'show', 'edge-1', '--root', fleet.root, '--json']);
  expect(show.code, show.stderr).toBe(0);
  const lock = JSON.parse(show.stdout) as {
    workloads: Record<string, { release: { identity: string }; rollback?: { identity: string } }>;
  };
  return { release: lock.workloads[W]!.release.identity, rollback: lock.workloads[W]!.rollback?.identity };
}

describe('rollback survives SIGKILL at every step', () => {
  beforeAll(async () => {
    assertBuilt();
    fleet = fleetCopy();
    const first = await agentvm(['apply', '--repo', fleet.repo, ...H, '--root', fleet.root, '--auto-approve']);
    expect(first.code, first.stderr).toBe(0);
    const v2 = fleet.releases['orchestrator-v2']!;
    const promote = await agentvm([
      'promote',
      W,
      '--repo',
      fleet.repo,
      '--to',
      'main',
      '--bundle',
      join(fleet.artifacts, v2.bundle),
      '--yes',
    ]);
    expect(promote.code, promote.stderr).toBe(0);
    const second = await agentvm(['apply', '--repo', fleet.repo, ...H, '--root', fleet.root, '--auto-approve']);
    expect(second.code, second.stdout + second.stderr).toBe(0);
  }, 300_000);
  afterAll(() => fleet?.cleanup());

  it('kills at step 1, 2, 3, … until a rollback completes; every time the next rollback converges with audit and rollback target intact', async () => {
    const v1 = fleet.releases['orchestrator-v1']!.commit!;
    const v2 = fleet.releases['orchestrator-v2']!.commit!;
    const rollback = (env: NodeJS.ProcessEnv = {}) =>
      agentvm(['rollback', W, ...H, '--root', fleet.root, '--auto-approve'], { env });
    let killedAt = 0;
    for (let step = 1; step <= 60; step++) {
      expect(liveRelease().endsWith(v2)).toBe(true);
      expect(await lockState()).toEqual({ release: v2, rollback: v1 });
      const crashed = await rollback({ AGENTVM_FAULT_KILL_AFTER: String(step) });
      if (crashed.signal !== 'SIGKILL') {
        expect(crashed.code, crashed.stdout + crashed.stderr).toBe(0);
        break;
      }
      killedAt = step;
      const where = `after a kill at step ${step}`;
      const audit = await agentvm(['audit', 'verify', '--root', fleet.root]);
      expect(audit.code, `${where}: ${audit.stdout}${audit.stderr}`).toBe(0);
      const retry = await rollback();
      expect(hasStackTrace(retry.stdout + retry.stderr)).toBe(false);
      expect(retry.code, `${where}: ${retry.stdout}${retry.stderr}`).toBe(0);
      expect(liveRelease().endsWith(v1), where).toBe(true);
      expect(await lockState(), where).toEqual({ release: v1, rollback: v2 });
      const verify = await agentvm(['audit', 'verify', '--root', fleet.root, '--json']);
      expect(verify.code, `${where}: ${verify.stdout}`).toBe(0);
      const tail = await agentvm(['audit', 'tail', '--root', fleet.root, '-n', '3', '--json']);
      expect(tail.stdout, where).toContain('"release.rollback"');
      // Back to the start (v2 live, v1 the target) for the next kill point.
      const back = await rollback();
      expect(back.code, `${where}, rolling forward again: ${back.stdout}${back.stderr}`).toBe(0);
    }
    expect(killedAt).toBeGreaterThanOrEqual(5);
  }, 1_200_000);
});
