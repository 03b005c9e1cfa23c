// Group commit under SIGKILL (ADR 0026): an apply of 14 workloads (28 resources and the host's egress) at
// --concurrency 8, so that resources finish together and share durable writes, is killed at its n-th durable point
// (AGENTVM_FAULT_KILL_AFTER counts each group's audit write, each group's log write and each provider step) for a
// spread of n. After every kill: every resource the apply reported done before it died (its "created" line on stdout,
// printed only once its group was on disk) is in the recovered lockfile, the audit chain verifies, and the next apply
// converges (a plan after it shows no changes). Run against both state backends.

import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { agentvm as run, hasStackTrace } from './support/cli.js';
import { gitdir, type FileMap } from './support/gitdir.js';
import { fleetWithStore, STATE_BACKENDS, type Store } from './support/state-backends.js';

const WORKLOADS = 14;
/** Durable points to kill at: early (the first groups), the middle, and late (around the last groups). */
const KILL_POINTS = [1, 2, 3, 5, 8, 12, 17, 23, 30, 38, 47, 57, 68, 80];

/** A tiny release source and a desired-state repository of `n` git-release workloads on host `batch` (committed). */
async function releaseFleet(base: string, n: number): Promise<string> {
  // The source's path is in every manifest: a plain name, not a mkdtemp one (see gitdir's `at`).
  const source = await gitdir({ 'main.py': 'print("hello")\n' }, join(base, 'source'));
  const names = Array.from({ length: n }, (_, i) => `w-${String(i).padStart(3, '0')}`);
  const files: FileMap = {
    'hosts/batch.yaml': `apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: batch\nspec:\n  workloads:\n${names.map((w) => `    - ${w}`).join('\n')}\n`,
  };
  for (const name of names) {
    files[`workloads/${name}/contract.yaml`] =
      `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadContract\nmetadata:\n  name: ${name}\nspec:\n  owner: test@example.com\n  riskTier: low\n  substrate: service\n`;
    files[`workloads/${name}/manifest.yaml`] =
      `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadManifest\nmetadata:\n  name: ${name}\nspec:\n  archetype: git-release\n  source:\n    git:\n      repo: ${source.dir}\n      commit: ${source.commit}\n  profiles:\n    - name: p-${name}\n      entrypoint: [python3, main.py]\n`;
  }
  return (await gitdir(files, join(base, 'desired'))).dir;
}

/** Addresses the apply reported done (a "created" line: printed only after the resource's group was on disk). */
function acknowledged(stdout: string): string[] {
  return [...stdout.matchAll(/^(\S+): created\b/gm)].map((m) => m[1]!);
}

describe.each(STATE_BACKENDS.filter((k) => !k.skip))(
  'group commit: an apply at --concurrency 8 killed at its n-th durable point ($name state backend)',
  (kind) => {
    let store: Store;
    // Not mkdtemp: its mixed-case suffix lands in the manifests (the release source's path) and looks like a secret.
    const base = join(tmpdir(), `agentvm-group-crash-${process.pid}-${kind.name}`);
    let repo: string;
    let root: string;
    const agentvm = (args: string[], opts: { env?: NodeJS.ProcessEnv } = {}) =>
      run(args, { ...opts, env: { ...store.env, ...opts.env }, timeoutMs: 300_000 });
    fleetWithStore(kind, (_f, s) => {
      store = s;
    });
    beforeAll(async () => {
      mkdirSync(base);
      repo = await releaseFleet(base, WORKLOADS);
      root = join(base, 'root');
    });
    afterAll(() => rmSync(base, { recursive: true, force: true }));

    it('no acknowledged resource is lost, the audit chain verifies, and the next apply converges', async () => {
      const args = ['--repo', repo, '--host', 'batch', '--root', root];
      const kills: number[] = [];
      let acknowledgedBeforeKill = 0;
      for (const n of KILL_POINTS) {
        rmSync(root, { recursive: true, force: true });
        await store.reset();
        const crashed = await agentvm(['apply', ...args, '--auto-approve', '--concurrency', '8'], {
          env: { AGENTVM_FAULT_KILL_AFTER: String(n) },
        });
        if (crashed.signal !== 'SIGKILL') {
          // Fewer durable points than n: the apply completed, and the earlier kill points covered it.
          expect(crashed.code, crashed.stdout + crashed.stderr).toBe(0);
          break;
        }
        kills.push(n);
        const done = acknowledged(crashed.stdout);
        acknowledgedBeforeKill += done.length;
        const shown = await agentvm(['state', 'show', 'batch', '--root', root, '--json']);
        if (done.length > 0) {
          expect(shown.code, `after kill at ${n}: ${shown.stdout}${shown.stderr}`).toBe(0);
          const resources = Object.keys((JSON.parse(shown.stdout) as { resources: object }).resources);
          const lost = done.filter((a) => !resources.includes(a));
          expect(lost, `acknowledged before the kill at ${n} but not recovered`).toEqual([]);
        }
        const audit = await agentvm(['audit', 'verify', '--root', root, '--json']);
        expect(audit.code, `audit after kill at ${n}: ${audit.stdout}`).toBe(0);
        const resume = await agentvm(['apply', ...args, '--auto-approve', '--concurrency', '8']);
        expect(hasStackTrace(resume.stdout + resume.stderr)).toBe(false);
        expect(resume.code, `resume after kill at ${n}: ${resume.stdout}${resume.stderr}`).toBe(0);
        const plan = await agentvm(['plan', ...args, '--detailed-exitcode']);
        expect(plan.code, `plan after resume (kill at ${n}): ${plan.stdout}`).toBe(0);
        const verify = await agentvm(['audit', 'verify', '--root', root]);
        expect(verify.code, verify.stdout + verify.stderr).toBe(0);
      }
      // The loop killed the apply at many points, and some of them after resources were already reported done.
      expect(kills.length).toBeGreaterThanOrEqual(8);
      expect(acknowledgedBeforeKill).toBeGreaterThan(0);
    }, 1_800_000);
  },
);
