// The PostgreSQL state schema and its versioned migrations (`agentvm state migrate`, ADR 0017).
// Invariants:
// - Migrations only ever get appended: version n is never edited once released; a change is migration n + 1.
// - `agentvm_schema_migrations` records every applied version; `migrate` applies the missing ones in order, each in its
//   own transaction, under an EXCLUSIVE lock on that table (two racing migrators serialise; no advisory locks).
// - Every other command checks the recorded version first and refuses a database that is older (run migrate) or
//   newer (upgrade agentvm) than this build: nothing writes through a schema it does not know.

import type pg from 'pg';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

const GENESIS = '0'.repeat(64);

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'state: hosts, apply log, leases with fencing tokens, per-host audit chains',
    sql: `
      -- One row per host. serial is the LOGICAL serial (checkpointed lockfile + agentvm_wal batches); lockfile is the
      -- checkpointed document (its own serial <= serial); wal_header the running or interrupted apply (null: none).
      -- audit_seq/audit_hash are the head of the host's audit chain.
      CREATE TABLE agentvm_hosts (
        host        text PRIMARY KEY CHECK (host ~ '^[a-z][a-z0-9-]{0,62}$'),
        lineage     text,
        serial      bigint NOT NULL DEFAULT 0 CHECK (serial >= 0),
        lockfile    jsonb,
        wal_header  jsonb,
        audit_seq   bigint NOT NULL DEFAULT 0,
        audit_hash  text NOT NULL DEFAULT '${GENESIS}'
      );
      -- One row per acknowledged batch of the running apply; serial is the logical serial after it.
      CREATE TABLE agentvm_wal (
        host   text NOT NULL REFERENCES agentvm_hosts (host),
        seq    integer NOT NULL,
        serial bigint NOT NULL,
        batch  jsonb NOT NULL,
        PRIMARY KEY (host, seq)
      );
      -- Fencing tokens only grow: a lease taken over gets a larger one, and every write is conditional on its own.
      CREATE SEQUENCE agentvm_fence;
      CREATE TABLE agentvm_leases (
        host       text PRIMARY KEY REFERENCES agentvm_hosts (host),
        id         uuid NOT NULL,
        token      bigint NOT NULL,
        expires_at timestamptz NOT NULL,
        record     jsonb NOT NULL
      );
      -- line is the exact text agentvm writes for the record (serializeAuditRecord): verify checks those bytes.
      CREATE TABLE agentvm_audit (
        host  text NOT NULL REFERENCES agentvm_hosts (host),
        seq   bigint NOT NULL,
        hash  text NOT NULL,
        time  timestamptz NOT NULL,
        line  text NOT NULL,
        PRIMARY KEY (host, seq)
      );
      CREATE INDEX agentvm_audit_time ON agentvm_audit (time, host, seq);
    `,
  },
  {
    version: 2,
    name: 'fleet: facts each host publishes (pull mode), rollout progress',
    sql: `
      -- What \`agentvm agent\` publishes after each run: applied commit, plan summary, drift, health, live fingerprint
      -- and the provider reads a remote plan needs. Never a secret value (the agent publishes reads, not config).
      CREATE TABLE agentvm_facts (
        host         text PRIMARY KEY REFERENCES agentvm_hosts (host),
        published_at timestamptz NOT NULL,
        commit       text,
        status       text NOT NULL,
        facts        jsonb NOT NULL
      );
      CREATE INDEX agentvm_facts_commit ON agentvm_facts (commit);
    `,
  },
];

export const LATEST_SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

export interface MigrationResult {
  from: number;
  to: number;
  applied: Array<{ version: number; name: string }>;
}

const LEDGER = `CREATE TABLE IF NOT EXISTS agentvm_schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`;

/** The recorded schema version, 0 for a database agentvm never migrated. */
export async function schemaVersion(client: pg.ClientBase): Promise<number> {
  const exists = await client.query<{ t: string | null }>(`SELECT to_regclass('agentvm_schema_migrations')::text AS t`);
  if (!exists.rows[0]?.t) return 0;
  const r = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM agentvm_schema_migrations');
  return r.rows[0]?.v ?? 0;
}

/** Applies every missing migration in order, each in its own transaction. */
export async function migrate(client: pg.ClientBase): Promise<MigrationResult> {
  try {
    await client.query(LEDGER);
  } catch (error) {
    // Two first-time migrators racing on CREATE TABLE IF NOT EXISTS: one gets a unique violation on the catalog.
    if ((error as { code?: string }).code !== '23505') throw error;
  }
  const from = await schemaVersion(client);
  const applied: MigrationResult['applied'] = [];
  for (const m of MIGRATIONS) {
    await client.query('BEGIN');
    try {
      await client.query('LOCK TABLE agentvm_schema_migrations IN EXCLUSIVE MODE');
      const done = await client.query('SELECT 1 FROM agentvm_schema_migrations WHERE version = $1', [m.version]);
      if (done.rowCount === 0) {
        await client.query(m.sql);
        await client.query('INSERT INTO agentvm_schema_migrations (version, name) VALUES ($1, $2)', [
          m.version,
          m.name,
        ]);
        applied.push({ version: m.version, name: m.name });
      }
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    }
  }
  return { from, to: await schemaVersion(client), applied };
}
