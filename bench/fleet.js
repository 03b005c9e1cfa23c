#!/usr/bin/env node
// Fleet benchmarks (issue 17) on the BUILT code (run `npm run build` first), against a throwaway PostgreSQL cluster
// (initdb + pg_ctl on a unix socket in a temp dir, removed at the end). In one run, with peers measured in the same
// run:
//   1. remote plan (`plan --remote`, from published facts) of one host of 100 workloads, against the local plan of
//      the same host (reading it);
//   2. `fleet status --json` over 1,000 simulated hosts' published records (target: under 1 s), against `node -e 0`;
//   3. lease acquire + release per second, PostgreSQL against the local backend (files).
//
//   node bench/fleet.js [--workloads 100] [--hosts 1000] [--leases 300] [--runs 5] [--json]

import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BIN, ROOT, fmt, generatedFleet, timeCommand } from './lib.js';

const PG_BIN = process.env.AGENTVM_PG_BIN ?? '/usr/lib/postgresql/15/bin';

function parseArgs(argv) {
  const o = { workloads: 100, hosts: 1000, leases: 300, runs: 5, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') o.json = true;
    else if (['--workloads', '--hosts', '--leases', '--runs'].includes(a)) o[a.slice(2)] = Number(argv[++i]);
    else throw new Error(`unknown argument ${a}`);
  }
  for (const k of ['workloads', 'hosts', 'leases', 'runs'])
    if (!Number.isSafeInteger(o[k]) || o[k] < 1) throw new Error(`--${k} must be a positive integer`);
  return o;
}

function startCluster() {
  const dir = mkdtempSync(join(os.tmpdir(), 'agentvm-bench-pg-'));
  chmodSync(dir, 0o700);
  const as = {};
  if (process.getuid?.() === 0) {
    as.uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }));
    as.gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }));
    chownSync(dir, as.uid, as.gid);
  }
  const run = (tool, args) => {
    const r = spawnSync(join(PG_BIN, tool), args, {
      ...as,
      cwd: dir,
      encoding: 'utf8',
      env: { ...process.env, LC_ALL: 'C.UTF-8' },
    });
    if (r.status !== 0)
      throw new Error(`${tool} failed: ${r.stdout}${r.stderr}\nInstall PostgreSQL: apt-get install postgresql`);
  };
  run('initdb', ['-D', join(dir, 'data'), '-A', 'trust', '-U', 'agentvm', '-E', 'UTF8', '--no-sync']);
  run('pg_ctl', [
    '-D',
    join(dir, 'data'),
    '-l',
    join(dir, 'log'),
    '-o',
    `-k ${dir} -c listen_addresses='' -c max_connections=100`,
    '-w',
    'start',
  ]);
  return {
    url: `postgresql://agentvm@/postgres?host=${encodeURIComponent(dir)}`,
    stop() {
      try {
        run('pg_ctl', ['-D', join(dir, 'data'), '-m', 'fast', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

const dist = (p) => import(pathToFileURL(join(ROOT, 'dist', p)).href);

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const cluster = startCluster();
  const cleanup = [() => cluster.stop()];
  process.on('SIGINT', () => {
    for (const c of cleanup.reverse()) c();
    process.exit(130);
  });
  try {
    const { PostgresStateBackend } = await dist('state/postgres/backend.js');
    const { LocalStateBackend } = await dist('state/index.js');
    const { hostPaths } = await dist('model/index.js');
    const { makePlan } = await dist('app/plan.js');
    const { publishableReads } = await dist('app/remote-plan.js');
    const pg = new PostgresStateBackend(cluster.url);
    await pg.migrate();
    const env = { AGENTVM_STATE_BACKEND: 'postgres', AGENTVM_PG_URL: cluster.url };

    // 1. Remote plan vs local plan of one host of N workloads.
    const repo = generatedFleet(o.workloads);
    const root = mkdtempSync(join(os.tmpdir(), 'agentvm-bench-fleet-root-'));
    const empty = mkdtempSync(join(os.tmpdir(), 'agentvm-bench-fleet-elsewhere-'));
    cleanup.push(
      () => rmSync(repo, { recursive: true, force: true }),
      () => rmSync(root, { recursive: true, force: true }),
      () => rmSync(empty, { recursive: true, force: true }),
    );
    const session = await makePlan({ repo, ref: 'HEAD', host: 'bench', root });
    await pg.publishFacts('bench', null, 'no-changes', {
      formatVersion: 1,
      host: 'bench',
      commit: null,
      target: null,
      status: 'no-changes',
      drift: [],
      health: { ok: true, failing: [] },
      liveFingerprint: session.plan.liveFingerprint,
      reads: publishableReads(session.reads),
    });
    const planArgs = ['plan', '--repo', repo, '--host', 'bench', '--format', 'json'];
    const local = timeCommand(process.execPath, [BIN, ...planArgs, '--root', root], { runs: o.runs, env });
    const remote = timeCommand(process.execPath, [BIN, ...planArgs, '--remote', '--root', empty], {
      runs: o.runs,
      env,
    });

    // 2. fleet status over H published records (each with a summary and 10 provider reads, like a small host).
    const client = await pg.pool.connect();
    try {
      await client.query(
        `INSERT INTO agentvm_hosts (host) SELECT 'sim-' || lpad(i::text, 5, '0') FROM generate_series(1, $1) i ON CONFLICT DO NOTHING`,
        [o.hosts],
      );
      const facts = (i) => ({
        formatVersion: 1,
        host: `sim-${String(i).padStart(5, '0')}`,
        commit: 'c'.repeat(40),
        target: 'c'.repeat(40),
        status: 'applied',
        wave: 'rest',
        plan: {
          id: `sha256:${'a'.repeat(64)}`,
          summary: {
            create: 0,
            update: 0,
            replace: 0,
            delete: 0,
            noop: 10,
            drift: 0,
            errors: 0,
            warnings: 0,
            worstAction: 'noop',
            worstEffect: 'none',
          },
        },
        drift: [],
        health: { ok: true, failing: [] },
        liveFingerprint: `sha256:${'b'.repeat(64)}`,
        reads: {
          live: Array.from({ length: 10 }, (_, k) => ({
            address: `unit.w${k}.p`,
            provider: 'systemd.gateway',
            exists: true,
            identity: 'x',
            digest: `sha256:${'d'.repeat(64)}`,
          })),
          owned: [],
          diagnostics: [],
        },
      });
      for (let i = 1; i <= o.hosts; i += 200) {
        const batch = Array.from({ length: Math.min(200, o.hosts - i + 1) }, (_, k) => facts(i + k));
        await client.query(
          `INSERT INTO agentvm_facts (host, published_at, commit, status, facts) SELECT f->>'host', now(), f->>'commit', f->>'status', f FROM jsonb_array_elements($1::jsonb) f`,
          [JSON.stringify(batch)],
        );
      }
    } finally {
      client.release();
    }
    const nodeStart = timeCommand(process.execPath, ['-e', '0'], { runs: o.runs });
    const status = timeCommand(process.execPath, [BIN, 'fleet', 'status', '--json', '--root', empty], {
      runs: o.runs,
      env,
    });
    // The same in this process: the query and its shaping, without the CLI's start-up.
    const { fleetStatus } = await dist('app/fleet-status.js');
    const { selectStateBackend, closeStateBackends } = await dist('app/state-backend.js');
    process.env.AGENTVM_PG_URL = cluster.url;
    selectStateBackend({ backend: 'postgres', url: 'env:AGENTVM_PG_URL', from: 'bench' });
    const inProcess = [];
    for (let i = 0; i <= o.runs; i++) {
      const t = process.hrtime.bigint();
      const r = await fleetStatus(empty);
      if (r.hosts.length < o.hosts) throw new Error(`fleet status saw ${r.hosts.length} hosts`);
      if (i > 0) inProcess.push(Number(process.hrtime.bigint() - t) / 1e9);
    }
    inProcess.sort((a, b) => a - b);
    const statusInProcess = inProcess[Math.floor(inProcess.length / 2)];
    await closeStateBackends();

    // 3. Lease acquire + release per second.
    const leaseRate = async (backend, n) => {
      const t = process.hrtime.bigint();
      for (let i = 0; i < n; i++) {
        const l = await backend.acquireLease('lease-bench', 'bench', { renew: false });
        await l.release();
      }
      return n / (Number(process.hrtime.bigint() - t) / 1e9);
    };
    const localBackend = new LocalStateBackend(hostPaths(root));
    await leaseRate(localBackend, 10);
    await leaseRate(pg, 10);
    const localLeases = await leaseRate(localBackend, o.leases);
    const pgLeases = await leaseRate(pg, o.leases);
    await pg.close();

    const result = {
      load: os.loadavg().map((x) => Number(x.toFixed(2))),
      cores: os.cpus().length,
      remotePlan: { workloads: o.workloads, localSeconds: local, remoteSeconds: remote, ratio: remote / local },
      fleetStatus: {
        hosts: o.hosts,
        seconds: status,
        inProcessSeconds: statusInProcess,
        nodeStartSeconds: nodeStart,
        ratioToNodeStart: status / nodeStart,
        target: 1,
        pass: status < 1,
      },
      leases: { perSecondPostgres: pgLeases, perSecondLocal: localLeases, ratio: pgLeases / localLeases },
    };
    if (o.json) {
      console.log(JSON.stringify(result, null, 2));
    } else {
      console.log(`load average ${result.load.join(' ')} on ${result.cores} cores`);
      console.log(
        `remote plan, 1 host of ${o.workloads} workloads: ${fmt(remote)} vs local plan ${fmt(local)} (×${result.remotePlan.ratio.toFixed(2)})`,
      );
      console.log(
        `fleet status --json over ${o.hosts} published hosts: ${fmt(status)} (node -e 0: ${fmt(nodeStart)}, ×${result.fleetStatus.ratioToNodeStart.toFixed(1)}); in-process query ${fmt(statusInProcess)}; target < 1 s: ${result.fleetStatus.pass ? 'PASS' : 'MISS'}`,
      );
      console.log(
        `lease acquire+release: PostgreSQL ${pgLeases.toFixed(0)}/s vs local files ${localLeases.toFixed(0)}/s (×${result.leases.ratio.toFixed(2)})`,
      );
    }
  } finally {
    for (const c of cleanup.reverse()) c();
  }
}

main().catch((error) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
