#!/usr/bin/env node
// The quick-start demo: runs the main job on the bundled example with the real CLI, against a temporary host root
// (nothing outside a temp dir is touched). validate → plan → apply → plan (no changes) → drift → state → a preview
// grant → audit.
// Usage: npm run demo [-- --keep]   (--keep leaves the temp dir for you to explore)
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'bin', 'run.js');
const keep = process.argv.includes('--keep');

const base = mkdtempSync(join(tmpdir(), 'agentvm-demo-'));
const repo = join(base, 'fleet');
const hostRoot = join(base, 'host-root');
cpSync(join(root, 'examples', 'fleet'), repo, { recursive: true });
cpSync(join(root, 'examples', 'artifacts'), join(base, 'artifacts'), { recursive: true });
const env = {
  ...process.env,
  GIT_AUTHOR_NAME: 'demo',
  GIT_AUTHOR_EMAIL: 'demo@agentvm.invalid',
  GIT_COMMITTER_NAME: 'demo',
  GIT_COMMITTER_EMAIL: 'demo@agentvm.invalid',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
};
execFileSync('git', ['init', '-q', '-b', 'main'], { cwd: repo, env });
execFileSync('git', ['add', '-A'], { cwd: repo, env });
execFileSync('git', ['commit', '-q', '-m', 'example fleet'], { cwd: repo, env });

let failed = false;
function step(title, args, okCodes = [0]) {
  process.stdout.write(`\n\u001b[1m$ agentvm ${args.join(' ')}\u001b[0m   # ${title}\n`);
  const r = spawnSync(process.execPath, [bin, ...args], { stdio: 'inherit', env: process.env });
  if (!okCodes.includes(r.status ?? -1)) {
    failed = true;
    process.stdout.write(`\n(demo step failed with exit code ${r.status})\n`);
  }
  return r.status;
}

console.log(`agentvm demo: desired state in ${repo}\n              host root     ${hostRoot}`);
const at = ['--repo', repo];
const host = ['--host', 'edge-1', '--root', hostRoot];
if (step('schemas + governance policy, at the exact commit', ['validate', ...at]) === 0) {
  step(
    'dry run: what would change (exit 2 = changes)',
    ['plan', ...at, ...host, '--out', join(base, 'edge-1.plan.json'), '--detailed-exitcode'],
    [2],
  );
  step('apply exactly the reviewed plan', ['apply', join(base, 'edge-1.plan.json'), '--root', hostRoot]);
  step('converged: no changes (exit 0)', ['plan', ...at, ...host, '--detailed-exitcode']);
  step('drift check, as a timer would run it', ['drift', ...at, ...host]);
  step('what was applied, and each rollback target', ['state', 'show', 'edge-1', '--root', hostRoot]);
  step('a preview for a named person, for 30 minutes: a one-time link', [
    'gate',
    'grant',
    'agent-pool/dashboard',
    '--to',
    'alice@example.com',
    '--ttl',
    '30m',
    '--reason',
    'demo: review the dashboard',
    '--root',
    hostRoot,
  ]);
  step('live grants (never their tokens)', ['gate', 'list', '--root', hostRoot]);
  step('the audit hash chain', ['audit', 'verify', '--root', hostRoot]);
}
if (keep)
  console.log(`\nKept ${base}. Try: node ${bin} rollback research-orchestrator --host edge-1 --root ${hostRoot}`);
else rmSync(base, { recursive: true, force: true });
process.exit(failed ? 1 : 0);
