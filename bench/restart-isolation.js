#!/usr/bin/env node
// bench/restart-isolation.js — issue 4: restart isolation under a REAL systemd user manager. One workload with N
// profiles (default 50: archetype A, the orchestrator at examples/artifacts/orchestrator.bundle v1, one
// `agent-gateway@<profile>` unit each, health-checked over HTTP) is brought up with `agentvm apply`; then a commit
// changes ONE profile's env, and the apply of that commit is timed while every unit's MainPID is compared before and
// after. Prints the apply's wall-clock time (CLI start-up included) and its own in-process duration, and the count
// of restarted units, which must be 1 (exit code 1 otherwise).
//
//   npm run build && sudo node bench/restart-isolation.js [--profiles 50] [--json]
//
// Needs what the system tests need (root, systemd installed, cgroups): it starts a user manager for the account
// `agentvm-test-bench` with the tests' harness (test/support/systemd-user.ts, transpiled on the fly with the
// project's TypeScript) and drives the built CLI (`bin/run.js`) as root on behalf of that account
// (AGENTVM_SYSTEMD_USER). The rendered units are checked with `systemd-analyze verify` (dist/). Everything is
// created under $TMPDIR/agentvm-bench-restart-<pid> and removed at the end (also on Ctrl-C).

import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { performance } from 'node:perf_hooks';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import ts from 'typescript';
import { BIN, ROOT, git } from './lib.js';

const opts = parseArgs(process.argv.slice(2));
const V1 = 'fe0645c4528837f2588a33651153f918d89da72d';
const USER = 'agentvm-test-bench';
const work = join(tmpdir(), `agentvm-bench-restart-${process.pid}`);
const log = (message) => process.stderr.write(`[restart-isolation] ${message}\n`);

let manager;
const cleanup = async () => {
  const m = manager;
  manager = undefined;
  if (m) await m.stop().catch((err) => log(`stopping the user manager: ${err.message}`));
  rmSync(work, { recursive: true, force: true });
};
for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
]) {
  process.on(signal, () => {
    cleanup().finally(() => process.exit(code));
  });
}

let exitCode = 0;
try {
  mkdirSync(work, { mode: 0o755 });
  chmodSync(work, 0o755); // the units run as the bench account and read their releases under this root
  const { startUserManager, userManagerSupport } = await loadHarness();
  const support = userManagerSupport();
  if (!support.ok) throw new Error(`cannot start a systemd user manager: ${support.reason}. ${support.howTo}`);
  const { verifyUnits } = await import(pathToFileURL(join(ROOT, 'dist/providers/systemd/index.js')).href);

  const t0 = performance.now();
  manager = await startUserManager({ user: USER });
  log(`user manager for ${USER} up in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
  const m = manager;

  const profiles = [];
  for (let i = 0; i < opts.profiles; i++)
    profiles.push({ name: `p-${String(i).padStart(3, '0')}`, port: await freePort() });
  const repo = join(work, 'repo');
  const root = join(work, 'root');
  mkdirSync(repo);
  mkdirSync(root, { mode: 0o755 });
  writeRepo(repo, profiles, null);
  git(repo, 'init', '-q', '-b', 'main');
  git(repo, 'add', '-A');
  git(repo, 'commit', '-q', '-m', `${opts.profiles} profiles`);
  const env = { AGENTVM_SYSTEMD_USER: USER };
  const cli = (args) => {
    const t = performance.now();
    const r = spawnSync(process.execPath, [BIN, ...args, '--repo', repo, '--host', 'bench', '--root', root], {
      env: { ...process.env, NO_COLOR: '1', ...env },
      encoding: 'utf8',
      maxBuffer: 1 << 28,
    });
    return { ...r, seconds: (performance.now() - t) / 1000 };
  };

  log(`apply: bringing up ${opts.profiles} units`);
  const first = cli(['apply', '--auto-approve', '--json']);
  if (first.status !== 0) throw new Error(`the first apply exited ${first.status}: ${first.stderr || first.stdout}`);
  const bringUp = JSON.parse(first.stdout);
  log(`first apply: ${bringUp.applied.length} resources in ${first.seconds.toFixed(2)} s`);

  const units = profiles.map((p) => `agent-gateway@${p.name}.service`);
  const before = await mainPids(m, units);
  const dead = units.filter((u) => !(before.get(u) > 0));
  if (dead.length) throw new Error(`units without a main process after the first apply: ${dead.join(', ')}`);

  const changed = profiles[Math.floor(opts.profiles / 3)];
  writeRepo(repo, profiles, changed.name);
  git(repo, 'commit', '-q', '-am', `${changed.name}: new env`);
  const plan = cli(['plan', '--json']);
  const planned = JSON.parse(plan.stdout)
    .changes.filter((c) => c.action !== 'noop')
    .map((c) => `${c.address} ${c.action}/${c.effect}`);
  log(`plan after the commit: ${planned.join(', ') || 'no changes'}`);

  const second = cli(['apply', '--auto-approve', '--json']);
  if (second.status !== 0)
    throw new Error(`the apply of the change exited ${second.status}: ${second.stderr || second.stdout}`);
  const applied = JSON.parse(second.stdout);
  const after = await mainPids(m, units);
  const restarted = units.filter((u) => after.get(u) !== before.get(u));

  const files = [
    { name: 'agent-gateway@.service', text: readFileSync(join(m.unitDir, 'agent-gateway@.service'), 'utf8') },
  ];
  for (const d of readdirSync(m.unitDir).filter((e) => e.endsWith('.service.d'))) {
    for (const f of readdirSync(join(m.unitDir, d)))
      files.push({ name: `${d}/${f}`, text: readFileSync(join(m.unitDir, d, f), 'utf8') });
  }
  const verify = await verifyUnits(files, { scope: 'user' });

  const result = {
    profiles: opts.profiles,
    changed: `agent-gateway@${changed.name}.service`,
    bringUpSeconds: round(first.seconds),
    applyOneChangeSeconds: round(second.seconds),
    applyOneChangeInProcessSeconds: round(applied.durationMs / 1000),
    plannedChanges: planned,
    restartedUnits: restarted,
    restartedCount: restarted.length,
    unitFilesVerified: files.length,
    verifyFindings: verify.length,
  };
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } else {
    const row = (label, value) => `  ${label.padEnd(48)} ${value}`;
    process.stdout.write(
      [
        `restart isolation: ${opts.profiles} profiles under a real systemd user manager, 1 profile changed (${result.changed})`,
        row(`bring-up apply (${opts.profiles} units, health-checked)`, fmt(result.bringUpSeconds)),
        row(
          'apply of the 1-profile change, wall clock',
          `${fmt(result.applyOneChangeSeconds)}  (in-process ${fmt(result.applyOneChangeInProcessSeconds)})`,
        ),
        row(
          'restarted units (MainPID changed), must be 1',
          `${result.restartedCount}${restarted.length ? ` (${restarted.join(', ')})` : ''}`,
        ),
        row(
          `systemd-analyze verify of the ${files.length} unit files`,
          verify.length === 0 ? 'all pass' : `${verify.length} finding(s)`,
        ),
        '',
      ].join('\n'),
    );
  }
  if (restarted.length !== 1 || restarted[0] !== result.changed) {
    log(`FAIL: expected exactly ${result.changed} to restart, got ${restarted.length}`);
    exitCode = 1;
  }
  if (verify.length > 0) {
    log(`FAIL: systemd-analyze verify: ${JSON.stringify(verify)}`);
    exitCode = 1;
  }
} catch (err) {
  log(`error: ${err instanceof Error ? err.message : String(err)}`);
  exitCode = 1;
} finally {
  await cleanup();
}
process.exit(exitCode);

/** The tests' harness (TypeScript), transpiled into the work dir and imported: one implementation of the recipe. */
async function loadHarness() {
  const source = readFileSync(join(ROOT, 'test/support/systemd-user.ts'), 'utf8');
  const out = ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    fileName: 'systemd-user.ts',
  });
  const file = join(work, 'systemd-user.mjs');
  writeFileSync(file, out.outputText);
  return import(pathToFileURL(file).href);
}

/** MainPID of each unit, from one `systemctl --user show` call. */
async function mainPids(m, units) {
  const r = await m.systemctl(['show', ...units, '--property=Id,MainPID']);
  if (r.code !== 0) throw new Error(`systemctl --user show failed (${r.code}): ${r.stderr}`);
  const pids = new Map();
  for (const block of r.stdout.trim().split(/\n\n+/)) {
    const props = Object.fromEntries(
      block.split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    pids.set(props.Id, Number(props.MainPID));
  }
  return pids;
}

/** The desired-state repository: host `bench` (user scope), workload `fleet` with the profiles; `changed` gets a new env. */
function writeRepo(dir, profiles, changed) {
  const files = {
    'hosts/bench.yaml':
      'apiVersion: agentvm.dev/v1alpha1\nkind: Host\nmetadata:\n  name: bench\nspec:\n  workloads:\n    - fleet\n  systemd:\n    scope: user\n',
    'workloads/fleet/contract.yaml':
      'apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadContract\nmetadata:\n  name: fleet\nspec:\n  owner: bench@example.com\n  riskTier: low\n  substrate: service\n',
    'workloads/fleet/manifest.yaml':
      `apiVersion: agentvm.dev/v1alpha1\nkind: WorkloadManifest\nmetadata:\n  name: fleet\nspec:\n  archetype: git-release\n  source:\n    git:\n      repo: ${join(ROOT, 'examples/artifacts/orchestrator.bundle')}\n      commit: ${V1}\n  profiles:\n` +
      profiles
        .map(
          (p) =>
            `    - name: ${p.name}\n      entrypoint: [python3, -m, orchestrator]\n      env:\n        AGENT_PROFILE: ${p.name}\n        AGENT_LISTEN_PORT: "${p.port}"\n        PYTHONDONTWRITEBYTECODE: "1"\n${p.name === changed ? '        AGENT_GENERATION: "2"\n' : ''}      listen:\n        port: ${p.port}\n      health:\n        path: /healthz\n        timeoutSeconds: 30\n`,
        )
        .join(''),
  };
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function round(s) {
  return Math.round(s * 1000) / 1000;
}

function fmt(s) {
  return `${s.toFixed(3)} s`;
}

function parseArgs(argv) {
  const o = { profiles: 50, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--profiles') o.profiles = Number(argv[++i]);
    else if (a === '--json') o.json = true;
    else {
      process.stderr.write(`usage: node bench/restart-isolation.js [--profiles 50] [--json]\n`);
      process.exit(2);
    }
  }
  if (!Number.isInteger(o.profiles) || o.profiles < 2 || o.profiles > 500) {
    process.stderr.write('--profiles must be a whole number from 2 to 500\n');
    process.exit(2);
  }
  return o;
}
