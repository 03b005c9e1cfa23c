// Shared helpers for bench/ scripts: timing child processes (median of N runs), making generated fleets as
// real git repositories, and printing figures with their ratios to a peer measured in the same run.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const BIN = join(ROOT, 'bin', 'run.js');

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'bench', GIT_AUTHOR_EMAIL: 'bench@agentvm.invalid', GIT_AUTHOR_DATE: '2025-01-01T00:00:00Z',
  GIT_COMMITTER_NAME: 'bench', GIT_COMMITTER_EMAIL: 'bench@agentvm.invalid', GIT_COMMITTER_DATE: '2025-01-01T00:00:00Z',
  GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null',
};

export function git(dir, ...args) {
  return execFileSync('git', args, { cwd: dir, env: GIT_ENV, encoding: 'utf8', maxBuffer: 1 << 28 });
}

/** Times `cmd args` `runs` times (after one warm-up) and returns the median in seconds. */
export function timeCommand(cmd, args, { runs = 5, env = {}, okCodes = [0] } = {}) {
  const times = [];
  for (let i = 0; i <= runs; i++) {
    const t = process.hrtime.bigint();
    const r = spawnSync(cmd, args, { env: { ...process.env, NO_COLOR: '1', ...env }, encoding: 'utf8', maxBuffer: 1 << 28 });
    const dt = Number(process.hrtime.bigint() - t) / 1e9;
    if (!okCodes.includes(r.status)) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr || r.stdout}`);
    if (i > 0) times.push(dt);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

export function workloadFiles(name, { port }) {
  return {
    [`workloads/${name}/contract.yaml`]: `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadContract\nmetadata:\n  name: ${name}\nspec:\n  owner: bench@example.com\n  riskTier: low\n  substrate: service\n  tools:\n    - name: wordcount\n      version: 1.0.0\n  secrets:\n    - name: token\n      ref: file:/etc/agentvm/secrets/${name}\n`,
    [`workloads/${name}/manifest.yaml`]: `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadManifest\nmetadata:\n  name: ${name}\nspec:\n  archetype: git-release\n  source:\n    git:\n      repo: https://git.example.com/agents/${name}.git\n      commit: ${'0123456789abcdef'.repeat(3).slice(0, 40)}\n  profiles:\n    - name: p-${name}\n      entrypoint: [python3, -m, orchestrator]\n      listen:\n        port: ${port}\n      health:\n        path: /healthz\n`,
  };
}

/** examples/fleet plus `n` generated low-tier workloads on a third host, committed in a fresh repo. */
export function generatedFleet(n) {
  const dir = mkdtempSync(join(tmpdir(), `agentvm-bench-${n}-`));
  cpSync(join(ROOT, 'examples', 'fleet'), dir, { recursive: true });
  const names = [];
  for (let i = 0; i < n; i++) {
    const name = `gen-${String(i).padStart(5, '0')}`;
    names.push(name);
    for (const [p, text] of Object.entries(workloadFiles(name, { port: 20000 + i }))) {
      mkdirSync(join(dir, dirname(p)), { recursive: true });
      writeFileSync(join(dir, p), text);
    }
  }
  writeFileSync(join(dir, 'hosts', 'bench.yaml'), `apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: bench\nspec:\n  workloads:\n${names.map((w) => `    - ${w}`).join('\n')}\n`);
  git(dir, 'init', '-q', '-b', 'main');
  git(dir, 'add', '-A');
  git(dir, 'commit', '-q', '-m', `fleet with ${n} generated workloads`);
  git(dir, 'gc', '-q');
  return dir;
}

export function fmt(seconds) {
  return `${seconds.toFixed(3)} s`;
}
