// A throwaway PostgreSQL cluster for tests (DESIGN §6): `initdb` + `pg_ctl` as an unprivileged user, listening only on
// a unix socket in a temp dir (no TCP port, no system service), removed again by stop().
// Invariants:
// - Nothing outside its temp dir is touched; stop() removes the dir even when the server is already gone.
// - When we are root, the server runs as the `postgres` system account (initdb refuses root); otherwise as ourselves.
// - Each test gets its own database (`database()`), so tests of one file share the ~2 s start-up but never state.
// - fsync=off: the tests kill the *server* (pg_ctl stop -m immediate), never the machine, so committed data is in the
//   OS page cache either way; it saves seconds of fsync on a shared 2-core machine and proves nothing less.

import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const PG_BIN = process.env.AGENTVM_PG_BIN ?? '/usr/lib/postgresql/15/bin';
const inCi = process.env.CI === 'true';

export interface PostgresSupport {
  ok: boolean;
  reason?: string;
  howTo?: string;
}

export function postgresSupport(): PostgresSupport {
  for (const tool of ['initdb', 'pg_ctl', 'postgres']) {
    if (!existsSync(path.join(PG_BIN, tool))) {
      return {
        ok: false,
        reason: `${path.join(PG_BIN, tool)} is missing`,
        howTo: 'Install PostgreSQL: apt-get install postgresql (or set AGENTVM_PG_BIN to its bin directory)',
      };
    }
  }
  return { ok: true };
}

/**
 * For a suite: `describe.skipIf(skipPostgres('suite name'))`. Under CI=true a missing PostgreSQL is a failure (the
 * returned flag is false and the suite's first start() throws); elsewhere the suite skips with the install hint.
 */
export function skipPostgres(suite: string): boolean {
  const s = postgresSupport();
  if (s.ok) return false;
  if (inCi) return false;
  console.warn(`${suite}: skipping the PostgreSQL runs: ${s.reason}. ${s.howTo}`);
  return true;
}

export interface PostgresCluster {
  dir: string;
  /** The unix socket directory. */
  socketDir: string;
  /** A connection URL to `db` over the unix socket (no password: trust auth inside the temp dir). */
  url(db?: string): string;
  /** Creates a fresh database and returns its URL. */
  database(name?: string): string;
  /** Kills the server the way a crash would (`pg_ctl stop -m immediate`): no shutdown checkpoint, clients cut off. */
  stopImmediate(): void;
  start(): void;
  stop(): void;
  running(): boolean;
}

interface RunAs {
  uid?: number;
  gid?: number;
}

function runAs(): RunAs {
  if (process.getuid?.() !== 0) return {};
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  return { uid, gid };
}

let counter = 0;

export function startPostgres(): PostgresCluster {
  const s = postgresSupport();
  if (!s.ok) throw new Error(`PostgreSQL is required (CI=true): ${s.reason}. ${s.howTo}`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'agentvm-pg-'));
  chmodSync(dir, 0o700);
  const as = runAs();
  if (as.uid !== undefined) chownSync(dir, as.uid, as.gid!);
  const data = path.join(dir, 'data');
  const log = path.join(dir, 'server.log');
  const run = (tool: string, args: string[]): void => {
    const r = spawnSync(path.join(PG_BIN, tool), args, {
      ...as,
      cwd: dir,
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, LC_ALL: 'C.UTF-8', LANG: 'C.UTF-8' },
    });
    if (r.status !== 0)
      throw new Error(`${tool} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stdout}${r.stderr}`);
  };
  run('initdb', ['-D', data, '-A', 'trust', '-U', 'agentvm', '-E', 'UTF8', '--no-sync']);
  const options = `-k ${dir} -c listen_addresses='' -c fsync=off -c full_page_writes=off -c max_connections=300 -c shared_buffers=32MB`;
  const cluster: PostgresCluster = {
    dir,
    socketDir: dir,
    url: (db = 'postgres') => `postgresql://agentvm@/${db}?host=${encodeURIComponent(dir)}`,
    database(name) {
      const db = name ?? `t${process.pid}_${++counter}`;
      const r = spawnSync(process.execPath, ['-e', CREATE_DB, cluster.url('postgres'), db], {
        encoding: 'utf8',
        timeout: 30_000,
        cwd: path.join(import.meta.dirname, '..', '..'),
      });
      if (r.status !== 0) throw new Error(`CREATE DATABASE ${db} failed: ${r.stderr}`);
      return cluster.url(db);
    },
    start: () => run('pg_ctl', ['-D', data, '-l', log, '-o', options, '-w', '-t', '60', 'start']),
    stop: () => run('pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '60', 'stop']),
    stopImmediate: () => run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', '-t', '60', 'stop']),
    running: () => spawnSync(path.join(PG_BIN, 'pg_ctl'), ['-D', data, 'status'], { ...as }).status === 0,
  };
  try {
    cluster.start();
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const stop = cluster.stop;
  cluster.stop = () => {
    try {
      if (cluster.running()) stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  return cluster;
}

// Run in a child so database() stays synchronous for callers (beforeEach without awaits in test tables).
const CREATE_DB = `
const { Client } = require('pg');
const c = new Client({ connectionString: process.argv[1] });
c.connect().then(() => c.query('CREATE DATABASE "' + process.argv[2] + '"')).then(() => c.end(), (e) => { console.error(e.message); process.exit(1); });
`;
