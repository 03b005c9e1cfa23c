#!/usr/bin/env node
// agentvm-drift.mjs <host>: the program agentvm-drift@<host>.service runs. It runs `agentvm drift --json` for one host,
// keeps the plan document as <state dir>/<host>.json (written atomically, so a reader never sees half a report),
// prints ONE summary line to stdout (the journal, with a syslog priority prefix: info, warning on drift, error on
// failure), and exits with agentvm's exit code: 0 no drift, 2 drift, 1 error (anything else is passed through).
// Configuration (environment, usually from the unit's EnvironmentFile):
//   AGENTVM_REPO  desired-state repository (required)      AGENTVM_ROOT  host root (default /)
//   AGENTVM_REF   ref to compare against (default HEAD)    AGENTVM_BIN   agentvm executable (default: agentvm on PATH)
//   STATE_DIRECTORY  where reports go (systemd sets it from StateDirectory=; default /var/lib/agentvm-drift)
// No dependencies but Node itself: it must run even when agentvm cannot.
import { spawnSync } from 'node:child_process';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const host = process.argv[2] ?? '';
const say = (priority, text) => process.stdout.write(`<${priority}>agentvm-drift ${host || '?'}: ${text}\n`);
const ERR = 3;
const WARNING = 4;
const INFO = 6;

if (!/^[a-z][a-z0-9-]{0,62}$/.test(host)) {
  say(ERR, `error: "${host}" is not a host name (usage: agentvm-drift <host>, the instance of agentvm-drift@<host>.service)`);
  process.exit(1);
}
const repo = process.env.AGENTVM_REPO;
if (!repo) {
  say(ERR, 'error: AGENTVM_REPO is not set: put AGENTVM_REPO=/path/to/desired-state-repo in the EnvironmentFile of the unit');
  process.exit(1);
}
const root = process.env.AGENTVM_ROOT || '/';
const ref = process.env.AGENTVM_REF || 'HEAD';
const bin = process.env.AGENTVM_BIN || 'agentvm';
const stateDir = (process.env.STATE_DIRECTORY || '/var/lib/agentvm-drift').split(':')[0];
const report = join(stateDir, `${host}.json`);

const started = Date.now();
const run = spawnSync(bin, ['drift', '--repo', repo, '--ref', ref, '--host', host, '--root', root, '--json'], {
  encoding: 'utf8',
  maxBuffer: 1 << 28,
  stdio: ['ignore', 'pipe', 'inherit'], // agentvm's own stderr goes to the journal as it is
  env: { ...process.env, NO_COLOR: '1' },
});
const seconds = ((Date.now() - started) / 1000).toFixed(1);
if (run.error) {
  say(ERR, `error: cannot run ${bin}: ${run.error.message} (set AGENTVM_BIN in the EnvironmentFile)`);
  process.exit(1);
}
const code = run.status ?? 1; // killed by a signal: an error

let doc;
try {
  doc = JSON.parse(run.stdout);
} catch {
  doc = undefined;
}
try {
  mkdirSync(stateDir, { recursive: true });
  writeFileSync(`${report}.tmp`, run.stdout);
  renameSync(`${report}.tmp`, report);
} catch (err) {
  say(ERR, `error: cannot write the report ${report}: ${err.message}`);
}

const listed = (items, max = 5) => (items.length <= max ? items.join(', ') : `${items.slice(0, max).join(', ')} and ${items.length - max} more`);
if (doc && Array.isArray(doc.drift)) {
  const where = `commit ${String(doc.source?.commit ?? 'unknown').slice(0, 12)}, lockfile serial ${doc.lock?.serial ?? 0}`;
  if (doc.drift.length > 0) {
    const items = doc.drift.map((d) => `${d.address} (${[...new Set((d.reasons ?? []).map((r) => r.code))].join(', ')})`);
    say(WARNING, `DRIFT in ${doc.drift.length} resource(s): ${listed(items)}; ${where}; exit ${code}; report ${report}; repair with agentvm apply`);
  } else if (code === 0) {
    say(INFO, `no drift; ${where}; ${seconds} s; report ${report}`);
  } else {
    say(ERR, `error: agentvm drift exited ${code} with ${doc.summary?.errors ?? '?'} error(s); report ${report}`);
  }
} else {
  const e = doc?.error;
  say(ERR, `error: agentvm drift exited ${code}${e ? `: ${e.code}: ${String(e.message).replace(/\s+/g, ' ')}` : ' without a report'}; see ${report}`);
}
process.exit(code);
