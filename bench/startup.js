#!/usr/bin/env node
// bench/startup.js — issue 8: start-up of the CLI next to bare Node, measured in the same run. For `node -e 0`,
// `agentvm --version`, `agentvm validate` on examples/fleet and a non-TTY `agentvm plan` of examples/fleet (host
// edge-1, a temporary host root), the median wall-clock time of R rounds (after one warm-up round), its multiple of
// `node -e 0`, and PASS/MISS against the budget stated in bench/README.md: `--version` within 3×, the plan within 5×
// (validate has no budget of its own; it is printed for reference, as is the plan with the document cache off — a
// CI runner's first run).
//
//   npm run build && node bench/startup.js [--runs 15] [--json]
//
// The example is copied like scripts/demo.js does (examples/fleet and examples/artifacts side by side, the fleet
// committed in a fresh git repository: its manifests name ../artifacts). agentvm's document cache (XDG_CACHE_HOME)
// and the host root are the run's own, both warm after the warm-up round, as on any run after the first. Exit code 1
// when a budget is missed.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, ROOT, fmt, git } from './lib.js';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const runs = arg('--runs', 15);
const json = process.argv.includes('--json');

// Not mkdtemp, as in plan-apply.js: a mixed-case random suffix in a path the plan prints can trip
// policy.secret-literal's high-entropy check. mkdirSync fails if the directory exists.
const work = join(tmpdir(), `agentvm-bench-startup-${process.pid}`);
mkdirSync(work, { mode: 0o700 });
const cleanup = () => rmSync(work, { recursive: true, force: true });
process.on('exit', cleanup);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    cleanup();
    process.exit(130);
  });
}

const repo = join(work, 'fleet');
const hostRoot = join(work, 'host-root');
const cache = join(work, 'cache');
cpSync(join(ROOT, 'examples', 'fleet'), repo, { recursive: true });
cpSync(join(ROOT, 'examples', 'artifacts'), join(work, 'artifacts'), { recursive: true });
git(repo, 'init', '-q', '-b', 'main');
git(repo, 'add', '-A');
git(repo, 'commit', '-q', '-m', 'example fleet');

/** Wall-clock seconds of one `node ...args`. Output goes to pipes: non-TTY. */
function once(args, env = {}) {
  const t = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, {
    env: { ...process.env, NO_COLOR: '1', XDG_CACHE_HOME: cache, ...env },
    encoding: 'utf8',
    maxBuffer: 1 << 26,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  if (r.status !== 0) throw new Error(`node ${args.join(' ')} exited ${r.status}:\n${r.stderr || r.stdout}`);
  return seconds;
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

const lines = [
  { name: 'node -e 0', args: ['-e', '0'] },
  { name: 'agentvm --version', args: [BIN, '--version'], budget: 3 },
  { name: 'agentvm validate (examples/fleet)', args: [BIN, 'validate', '--repo', repo] },
  {
    name: 'agentvm plan, non-TTY (edge-1, temp root)',
    args: [BIN, 'plan', '--repo', repo, '--host', 'edge-1', '--root', hostRoot],
    budget: 5,
  },
  {
    name: '  … same, document cache off',
    args: [BIN, 'plan', '--repo', repo, '--host', 'edge-1', '--root', hostRoot],
    env: { AGENTVM_NO_CACHE: '1' },
  },
];
// Round-robin, not line after line: a burst of load from other processes then slows every line of that round alike
// instead of inflating one line's median, so the ratios stay meaningful on a busy machine.
for (const line of lines) line.times = [];
for (let i = 0; i <= runs; i++) {
  for (const line of lines) {
    const seconds = once(line.args, line.env);
    if (i > 0) line.times.push(seconds);
  }
}
for (const line of lines) line.wall = median(line.times);
const node = lines[0].wall;
let missed = false;
const results = lines.map((line) => {
  const ratio = line.wall / node;
  const verdict = line.budget === undefined ? undefined : ratio <= line.budget ? 'PASS' : 'MISS';
  if (verdict === 'MISS') missed = true;
  return { name: line.name.trim(), seconds: line.wall, ratio, budget: line.budget ?? null, verdict: verdict ?? null };
});

if (json) {
  console.log(
    JSON.stringify(
      { environment: { node: process.version, platform: `${process.platform}-${process.arch}` }, runs, results },
      null,
      2,
    ),
  );
} else {
  console.log(
    `start-up, median of ${runs} rounds after one warm-up round (${process.version}, ${process.platform}-${process.arch})`,
  );
  lines.forEach((line, i) => {
    const r = results[i];
    const budget = r.budget === null ? '' : `  budget ≤ ${r.budget}×: ${r.verdict}`;
    console.log(
      `${line.name.padEnd(44)} ${fmt(r.seconds)}  ${i === 0 ? '      ' : `${r.ratio.toFixed(1).padStart(4)}× `}${budget}`,
    );
  });
}
process.exitCode = missed ? 1 : 0;
