#!/usr/bin/env node
// bench/profile-apply.js — where `agentvm apply` spends its time (issue 20 item 3, ADR 0026): sets up the fixture of
// bench/plan-apply.js (N git-release workloads on one host, one offline root), runs one `agentvm apply --auto-approve`
// under `node --cpu-prof`, and prints the profile's top functions by self time (with their share of the profile and of
// the wall clock), the wall clock, and the load average at the start and end. Shares, not seconds, are what to compare
// between runs on a shared machine.
//
//   npm run build && node bench/profile-apply.js [--workloads 1000] [--concurrency C] [--top 20] [--keep DIR]
//
// --concurrency C: passed to `agentvm apply --concurrency` (default: agentvm's own default).
// --keep DIR: write the .cpuprofile there (open it in Chrome DevTools) instead of deleting it.
// Progress goes to stderr; the table to stdout.

import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, relative } from 'node:path';
import { BIN, ROOT, benchWorkDirectory, releaseFleet, runStreaming, tinySourceRepository } from './lib.js';

const opts = parseArgs(process.argv.slice(2));
// The work directory and, added below, the generated repository (releaseFleet makes it outside the work directory).
const { work, cleanups, cleanup } = benchWorkDirectory('agentvm-bench-profile-apply');
const log = (message) => process.stderr.write(`[profile-apply] ${message}\n`);

try {
  const sourceDir = join(work, 'release-source');
  const source = { repo: sourceDir, commit: tinySourceRepository(sourceDir) };
  log(`generating ${opts.workloads} git-release workloads`);
  const repo = releaseFleet(opts.workloads, source);
  cleanups.push(() => rmSync(repo, { recursive: true, force: true }));
  const root = join(work, 'root');
  mkdirSync(root);
  const profiles = join(work, 'profiles');
  const env = { XDG_CACHE_HOME: join(work, 'xdg-cache') };
  const target = ['--repo', repo, '--host', 'bench', '--root', root];
  // A plan first, so the document cache is warm as in the bench's apply figure.
  await runStreaming(process.execPath, [BIN, 'plan', ...target], { env, okCodes: [0, 2] });
  const concurrency = opts.concurrency ? ['--concurrency', String(opts.concurrency)] : [];
  const loadStart = loadavg()[0];
  log(`agentvm apply under --cpu-prof (load ${loadStart.toFixed(2)})`);
  const applied = await runStreaming(
    process.execPath,
    ['--cpu-prof', '--cpu-prof-dir', profiles, BIN, 'apply', ...target, '--auto-approve', ...concurrency],
    { env },
  );
  const loadEnd = loadavg()[0];
  const file = readdirSync(profiles).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no .cpuprofile in ${profiles}`);
  if (opts.keep) {
    mkdirSync(opts.keep, { recursive: true });
    cpSync(join(profiles, file), join(opts.keep, file));
    log(`profile kept as ${join(opts.keep, file)}`);
  }
  const top = summarize(JSON.parse(readFileSync(join(profiles, file), 'utf8')), opts.top);
  const lines = [
    `agentvm apply, ${opts.workloads} workloads, concurrency ${opts.concurrency ?? 'default'}: wall ${applied.seconds.toFixed(2)} s, profile ${top.totalMs.toFixed(0)} ms (of which ${top.idleMs.toFixed(0)} ms idle), load ${loadStart.toFixed(2)}→${loadEnd.toFixed(2)}`,
    '',
    '| self ms | share | function (file:line) |',
    '|---:|---:|---|',
    ...top.rows.map((r) => `| ${r.ms.toFixed(0)} | ${((100 * r.ms) / top.totalMs).toFixed(1)}% | ${r.name} |`),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  cleanup();
}

/** Self time per function (name + file:line), from the profile's samples and their time deltas. */
function summarize(profile, n) {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map();
  let totalMs = 0;
  profile.samples.forEach((id, i) => {
    const ms = (profile.timeDeltas[i] ?? 0) / 1000;
    totalMs += ms;
    const frame = byId.get(id)?.callFrame;
    const key = frame ? describe(frame) : '(unknown)';
    self.set(key, (self.get(key) ?? 0) + ms);
  });
  const rows = [...self.entries()].map(([name, ms]) => ({ name, ms })).sort((a, b) => b.ms - a.ms);
  return { totalMs, idleMs: self.get('(idle)') ?? 0, rows: rows.slice(0, n) };
}

function describe(frame) {
  const name = frame.functionName || '(anonymous)';
  if (!frame.url) return name;
  const url = frame.url.startsWith('file://') ? relative(ROOT, frame.url.slice('file://'.length)) : frame.url;
  return `${name} (${url}:${frame.lineNumber + 1})`;
}

function parseArgs(argv) {
  const o = { workloads: 1000, concurrency: undefined, top: 20, keep: undefined };
  const int = (name, v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${name} wants a whole number ≥ 1, not ${v}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--workloads') o.workloads = int(a, argv[++i]);
    else if (a === '--concurrency') o.concurrency = int(a, argv[++i]);
    else if (a === '--top') o.top = int(a, argv[++i]);
    else if (a === '--keep') o.keep = argv[++i];
    else
      throw new Error(
        `unknown argument ${a}; usage: node bench/profile-apply.js [--workloads 1000] [--concurrency C] [--top 20] [--keep DIR]`,
      );
  }
  return o;
}
