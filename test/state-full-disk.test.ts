// Issue 21, item 1: a full disk during apply. The host root lives on a small tmpfs the test mounts; a filler file
// leaves 0, 4, 16, … KiB free, so the apply runs out of space at a different write each time (cache, release, unit,
// lockfile, write-ahead log, audit log). Every run must end cleanly — exit 1 (nothing changed) or 3 (resources
// changed), a named error that says which path and how much space is left, no stack trace, no "internal error" —
// and once the filler is removed, one apply converges, the plan is empty, and `audit verify` passes.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { agentvm, assertBuilt, hasStackTrace } from './support/cli.js';
import { fleetCopy, type FleetCopy } from './support/fleet.js';

const CAN_MOUNT = process.getuid?.() === 0 && spawnSync('mount', ['--version']).status === 0;

let fleet: FleetCopy;
let mnt: string;

function mounted(): boolean {
  try {
    execFileSync('mountpoint', ['-q', mnt]);
    return true;
  } catch {
    return false;
  }
}

/** Fills the tmpfs so that about `leaveKiB` KiB stay free. */
function fill(leaveKiB: number): void {
  const st = statfsSync(mnt);
  const free = st.bavail * st.bsize;
  writeFileSync(path.join(mnt, 'filler'), Buffer.alloc(Math.max(0, free - leaveKiB * 1024)));
}

function tempFiles(dir: string): string[] {
  try {
    return readdirSync(dir).filter((n) => n.endsWith('.tmp'));
  } catch {
    return [];
  }
}

describe.skipIf(!CAN_MOUNT && process.env.CI !== 'true')('apply on a full disk', () => {
  beforeAll(() => {
    if (!CAN_MOUNT) throw new Error('This test mounts a tmpfs: run it as root (or in a container with CAP_SYS_ADMIN).');
    assertBuilt();
    fleet = fleetCopy();
    mnt = mkdtempSync(path.join(os.tmpdir(), 'agentvm-full-disk-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', mnt]);
  });
  afterAll(() => {
    if (mnt && mounted()) execFileSync('umount', [mnt]);
    if (mnt) rmSync(mnt, { recursive: true, force: true });
    fleet?.cleanup();
  });

  it('GIVEN too little space at several points THEN each apply fails cleanly naming the path, and after space returns one apply converges and audit verify passes', async () => {
    const root = path.join(mnt, 'root');
    const args = ['--repo', fleet.repo, '--host', 'edge-1', '--root', root];
    const outcomes: string[] = [];
    let failures = 0;
    // Fresh roots (the first apply runs out at the cache, a release or a unit) and roots with state already (an
    // update runs out at a unit, the write-ahead log, the lockfile or the audit log, after resources changed).
    const points: Array<[number, 'fresh' | 'update']> = [
      ...[0, 96, 160, 176, 208, 240, 320].map((k) => [k, 'fresh'] as [number, 'fresh']),
      ...[0, 4, 8, 12, 16, 24, 48].map((k) => [k, 'update'] as [number, 'update']),
    ];
    for (const [i, [leave, kind]] of points.entries()) {
      rmSync(root, { recursive: true, force: true });
      mkdirSync(root);
      if (kind === 'update') {
        const seeded = await agentvm(['apply', ...args, '--auto-approve']);
        expect(seeded.code, seeded.stdout + seeded.stderr).toBe(0);
        // Change every agent-pool unit (its env), so the next apply updates units and writes state for each.
        const manifest = path.join(fleet.repo, 'workloads/agent-pool/manifest.yaml');
        writeFileSync(
          manifest,
          readFileSync(manifest, 'utf8').replace(/AGENT_POOL_SIZE: "\d+"/g, `AGENT_POOL_SIZE: "${10 + i}"`),
        );
        fleet.git('commit', '-q', '-am', `pool size ${10 + i}`);
      }
      fill(leave);
      const full = await agentvm(['apply', ...args, '--auto-approve', '--concurrency', '1']);
      const out = full.stdout + full.stderr;
      const where = `${kind} root with ${leave} KiB free`;
      expect(hasStackTrace(out), `${where}: ${out}`).toBe(false);
      expect(out, where).not.toMatch(/internal|This is a bug/i);
      if (full.code === 0) {
        outcomes.push(`${kind}/${leave}:ok`);
      } else {
        failures++;
        expect([1, 3], `${where}: exit ${full.code}\n${out}`).toContain(full.code);
        // A named failure: which file or path, and how much space is left (git's own messages may not say ENOSPC:
        // agentvm adds the free space of the cache's file system).
        expect(out, where).toMatch(/(state\.disk-full|fs\.enospc|No space left|KiB free)/);
        expect(out, where).toContain(mnt);
        outcomes.push(`${kind}/${leave}:exit ${full.code} ${/error\[([^\]]+)\]/.exec(out)?.[1] ?? '?'}`);
      }
      rmSync(path.join(mnt, 'filler'));
      const state = path.join(root, 'var/lib/agentvm/state');
      const audit = await agentvm(['audit', 'verify', '--root', root]);
      expect(audit.code, `${where}, before recovery: ${audit.stdout}${audit.stderr}`).toBe(0);
      const again = await agentvm(['apply', ...args, '--auto-approve']);
      expect(again.code, `${where}, recovery: ${again.stdout}${again.stderr}`).toBe(0);
      const plan = await agentvm(['plan', ...args, '--detailed-exitcode']);
      expect(plan.code, `${where}, plan after recovery: ${plan.stdout}${plan.stderr}`).toBe(0);
      const verify = await agentvm(['audit', 'verify', '--root', root]);
      expect(verify.code, `${where}, after recovery: ${verify.stdout}${verify.stderr}`).toBe(0);
      expect(tempFiles(state), where).toEqual([]);
    }
    console.log(`full-disk outcomes (KiB free:result): ${outcomes.join(' ')}`);
    // Several points really failed, some of them after resources changed (exit 3), and the sizes reach past the
    // apply's footprint, so some pass.
    expect(failures).toBeGreaterThanOrEqual(4);
    expect(
      outcomes.some((o) => o.includes('exit 3')),
      outcomes.join(' '),
    ).toBe(true);
    expect(
      outcomes.some((o) => o.endsWith(':ok')),
      outcomes.join(' '),
    ).toBe(true);
  }, 1_200_000);
});
