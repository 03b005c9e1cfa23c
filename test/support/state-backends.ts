// The state backends the engine's state tests run against, from ONE suite (issue 17): `describe.each(STATE_BACKENDS)`.
// `local` is the files under a temp root; `postgres` a fresh database (migrated) in a throwaway cluster started once
// per test file (./postgres.ts). A store gives the suite what differs: a backend handle ("a new process"), the env
// that makes the CLI use the same store, a way to tamper with the audit chain (truncation), and a reset.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { hostPaths } from '../../src/model/index.js';
import { LocalStateBackend, type StateBackend } from '../../src/state/index.js';
import { PostgresStateBackend } from '../../src/state/postgres/backend.js';
import { afterAll, beforeAll } from 'vitest';
import { assertBuilt } from './cli.js';
import { fleetCopy, type FleetCopy } from './fleet.js';
import { skipPostgres, startPostgres, type PostgresCluster } from './postgres.js';

export type BackendName = 'local' | 'postgres';

export interface Store {
  name: BackendName;
  /** A host root for releases, units and (local backend) state. */
  root: string;
  /** A new handle on the same state, as another process would open it. */
  open(): StateBackend;
  /** What makes the CLI use this store (merge into the child's env). */
  env: Record<string, string>;
  /** Cuts the audit chain of `host` (local: the root's one log) after its first `keep` records. */
  truncateAudit(host: string, keep: number): Promise<void>;
  /** Forgets all state (between runs of a loop). */
  reset(): Promise<void>;
  close(): Promise<void>;
}

export interface BackendKind {
  name: BackendName;
  /** True when this kind cannot run here (PostgreSQL missing outside CI: the suite skips with the install hint). */
  skip: boolean;
  setup(): void;
  teardown(): void;
  store(root?: string): Promise<Store>;
  cluster(): PostgresCluster | undefined;
}

const local: BackendKind = {
  name: 'local',
  skip: false,
  setup() {},
  teardown() {},
  cluster: () => undefined,
  async store(given) {
    const root = given ?? mkdtempSync(path.join(os.tmpdir(), 'agentvm-state-'));
    return {
      name: 'local',
      root,
      env: {},
      open: () => new LocalStateBackend(hostPaths(root)),
      async truncateAudit(_host, keep) {
        const file = path.join(hostPaths(root).audit, 'audit.jsonl');
        writeFileSync(file, readFileSync(file, 'utf8').split('\n').slice(0, keep).join('\n') + '\n');
      },
      async reset() {
        rmSync(path.join(root, 'var'), { recursive: true, force: true });
      },
      async close() {
        if (!given) rmSync(root, { recursive: true, force: true });
      },
    };
  },
};

let cluster: PostgresCluster | undefined;

const postgres: BackendKind = {
  name: 'postgres',
  skip: skipPostgres('state backends'),
  setup() {
    cluster ??= startPostgres();
  },
  teardown() {
    cluster?.stop();
    cluster = undefined;
  },
  cluster: () => cluster,
  async store(given) {
    if (!cluster) throw new Error('postgres.setup() was not called');
    const url = cluster.database();
    const admin = new PostgresStateBackend(url);
    await admin.migrate();
    await admin.close();
    const root = given ?? mkdtempSync(path.join(os.tmpdir(), 'agentvm-state-'));
    const handles: PostgresStateBackend[] = [];
    return {
      name: 'postgres',
      root,
      env: { AGENTVM_STATE_BACKEND: 'postgres', AGENTVM_PG_URL: url },
      open() {
        const b = new PostgresStateBackend(url);
        handles.push(b);
        return b;
      },
      async truncateAudit(host, keep) {
        await sql(url, 'DELETE FROM agentvm_audit WHERE host = $1 AND seq > $2', [host, keep]);
      },
      async reset() {
        await sql(url, 'TRUNCATE agentvm_facts, agentvm_audit, agentvm_leases, agentvm_wal, agentvm_hosts');
        rmSync(path.join(root, 'var'), { recursive: true, force: true });
      },
      async close() {
        await Promise.all(handles.map((h) => h.close()));
        if (!given) rmSync(root, { recursive: true, force: true });
      },
    };
  },
};

export const STATE_BACKENDS: BackendKind[] = [local, postgres];

/** One statement on its own connection (tampering, resets). */
export async function sql(url: string, text: string, values: unknown[] = []): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await c.query(text, values);
  } finally {
    await c.end();
  }
}

/**
 * The suite setup the CLI state tests share: before its tests, a built CLI, the backend started, a fleet copy and a
 * store of `kind` on the fleet's root (handed to `ready`, which may prepare more); after them, all of it removed.
 */
export function fleetWithStore(kind: BackendKind, ready: (fleet: FleetCopy, store: Store) => void): void {
  let fleet: FleetCopy | undefined;
  let store: Store | undefined;
  beforeAll(async () => {
    assertBuilt();
    kind.setup();
    fleet = fleetCopy();
    store = await kind.store(fleet.root);
    ready(fleet, store);
  }, 60_000);
  afterAll(async () => {
    await store?.close();
    fleet?.cleanup();
    kind.teardown();
  });
}
