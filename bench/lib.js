// Shared helpers for bench/ scripts: timing child processes (median of N runs, or one streamed run), making
// generated fleets as real git repositories, and printing figures with their ratios to a peer measured in the
// same run.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const BIN = join(ROOT, 'bin', 'run.js');

const GIT_ENV = {
  ...process.env,
  GIT_AUTHOR_NAME: 'bench',
  GIT_AUTHOR_EMAIL: 'bench@agentvm.invalid',
  GIT_AUTHOR_DATE: '2025-01-01T00:00:00Z',
  GIT_COMMITTER_NAME: 'bench',
  GIT_COMMITTER_EMAIL: 'bench@agentvm.invalid',
  GIT_COMMITTER_DATE: '2025-01-01T00:00:00Z',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
  // No automatic gc in the background after a big commit: it makes the explicit `git gc` fail ("already running").
  GIT_CONFIG_COUNT: '2',
  GIT_CONFIG_KEY_0: 'gc.auto',
  GIT_CONFIG_VALUE_0: '0',
  GIT_CONFIG_KEY_1: 'maintenance.auto',
  GIT_CONFIG_VALUE_1: 'false',
};

export function git(dir, ...args) {
  return execFileSync('git', args, { cwd: dir, env: GIT_ENV, encoding: 'utf8', maxBuffer: 1 << 28 });
}

/** Times `cmd args` `runs` times (after one warm-up) and returns the median in seconds. */
export function timeCommand(cmd, args, { runs = 5, env = {}, okCodes = [0] } = {}) {
  const times = [];
  for (let i = 0; i <= runs; i++) {
    const t = process.hrtime.bigint();
    const r = spawnSync(cmd, args, {
      env: { ...process.env, NO_COLOR: '1', ...env },
      encoding: 'utf8',
      maxBuffer: 1 << 28,
    });
    const dt = Number(process.hrtime.bigint() - t) / 1e9;
    if (!okCodes.includes(r.status))
      throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr || r.stdout}`);
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
  writeFileSync(
    join(dir, 'hosts', 'bench.yaml'),
    `apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: bench\nspec:\n  workloads:${names.length ? `\n${names.map((w) => `    - ${w}`).join('\n')}` : ' []'}\n`,
  );
  git(dir, 'init', '-q', '-b', 'main');
  git(dir, 'add', '-A');
  git(dir, 'commit', '-q', '-m', `fleet with ${n} generated workloads`);
  git(dir, 'gc', '-q');
  return dir;
}

export function fmt(seconds) {
  return `${seconds.toFixed(3)} s`;
}

/**
 * Runs `cmd args` once, streaming its stdout and stderr line by line to `onLine(line, stream)`, and resolves to
 * `{ seconds, status, stdout, stderr }`. Rejects when the exit code is not in `okCodes` (the message carries the
 * last 4 KB of output). For long runs whose progress must be visible (apply).
 */
export function runStreaming(cmd, args, { env = {}, cwd, okCodes = [0], onLine = () => {} } = {}) {
  return new Promise((resolve, reject) => {
    const t = process.hrtime.bigint();
    const child = spawn(cmd, args, {
      cwd,
      env: { ...process.env, NO_COLOR: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const kept = { stdout: '', stderr: '' };
    for (const stream of ['stdout', 'stderr']) {
      let partial = '';
      child[stream].setEncoding('utf8');
      child[stream].on('data', (chunk) => {
        // Only the tail is kept: a 5,000-resource apply prints megabytes.
        kept[stream] = (kept[stream] + chunk).slice(-4096);
        const lines = (partial + chunk).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) onLine(line, stream);
      });
      child[stream].on('end', () => {
        if (partial) onLine(partial, stream);
      });
    }
    child.on('error', reject);
    child.on('close', (status) => {
      const seconds = Number(process.hrtime.bigint() - t) / 1e9;
      if (!okCodes.includes(status))
        reject(
          new Error(
            `${cmd} ${args.join(' ')} exited ${status} after ${seconds.toFixed(1)} s:\n${kept.stderr || kept.stdout}`,
          ),
        );
      else resolve({ seconds, status, ...kept });
    });
  });
}

/**
 * The bench's work directory `$TMPDIR/<name>-<pid>` (created, 0700), and its clean-up: `cleanups` run (each once) on
 * `cleanup()`, on SIGINT and on SIGTERM; the directory's own removal is the first entry. Not mkdtemp: its mixed-case
 * random suffix in a source repository's path (which manifests carry) trips policy.secret-literal's high-entropy
 * check; a pid is a word to that check, and mkdirSync fails if the directory exists.
 */
export function benchWorkDirectory(name) {
  const work = join(tmpdir(), `${name}-${process.pid}`);
  mkdirSync(work, { mode: 0o700 });
  const cleanups = [() => rmSync(work, { recursive: true, force: true })];
  const cleanup = () => {
    for (const c of cleanups.splice(0)) c();
  };
  process.on('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  process.on('SIGTERM', () => {
    cleanup();
    process.exit(143);
  });
  return { work, cleanups, cleanup };
}

/** A tiny git repository (2 files, 1 commit) in `dir`, to be a release source; returns its commit id. */
export function tinySourceRepository(dir) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'README.md'), '# bench release source\n');
  writeFileSync(join(dir, 'main.py'), 'print("hello from a bench release")\n');
  git(dir, 'init', '-q', '-b', 'main');
  git(dir, 'add', '-A');
  git(dir, 'commit', '-q', '-m', 'bench release source');
  return git(dir, 'rev-parse', 'HEAD').trim();
}

/**
 * A committed desired-state repository with `n` low-tier git-release workloads `w-00000…` on one host `bench`,
 * all released from the same `source` ({ repo: absolute path, commit }). Each has one profile `p-<name>`
 * because `workload.substrate-mismatch` refuses a service without profiles (and a job without jobs); the
 * profile's `unit.<name>.p-<name>` resource is only planned when a systemd provider is built in.
 */
export function releaseFleet(n, source) {
  const dir = mkdtempSync(join(tmpdir(), `agentvm-bench-release-${n}-`));
  const names = [];
  for (let i = 0; i < n; i++) {
    const name = `w-${String(i).padStart(5, '0')}`;
    names.push(name);
    mkdirSync(join(dir, 'workloads', name), { recursive: true });
    writeFileSync(
      join(dir, 'workloads', name, 'contract.yaml'),
      `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadContract\nmetadata:\n  name: ${name}\nspec:\n  owner: bench@example.com\n  riskTier: low\n  substrate: service\n`,
    );
    writeFileSync(
      join(dir, 'workloads', name, 'manifest.yaml'),
      `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadManifest\nmetadata:\n  name: ${name}\nspec:\n  archetype: git-release\n  source:\n    git:\n      repo: ${source.repo}\n      commit: ${source.commit}\n  profiles:\n    - name: p-${name}\n      entrypoint: [python3, main.py]\n`,
    );
  }
  mkdirSync(join(dir, 'hosts'));
  writeFileSync(
    join(dir, 'hosts', 'bench.yaml'),
    `apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: bench\nspec:\n  workloads:${names.length ? `\n${names.map((w) => `    - ${w}`).join('\n')}` : ' []'}\n`,
  );
  try {
    git(dir, 'init', '-q', '-b', 'main');
    git(dir, 'add', '-A');
    git(dir, 'commit', '-q', '-m', `${n} release workloads`);
    git(dir, 'gc', '-q');
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return dir;
}
