// PostgresStateBackend: the StateBackend for fleets (ADR 0017). Lockfiles, leases, the apply log and the audit chains
// live in one PostgreSQL database (schema: ./schema.ts), with the local backend's guarantees (ADR 0005):
// - every write is one transaction, conditional on the writer's lease token (fencing), lineage and logical serial;
// - an apply's resource write, its audit record and the new audit head commit together (PgApplyLog);
// - readers see every acknowledged write (the checkpointed lockfile with the batch rows replayed);
// - leases are rows with an expiry (database clock) and a fencing token, never session advisory locks.
// Each host has its own audit chain (seq 1, 2, … per host): hosts never contend on one head, and a host's chain moves
// between backends verbatim (`agentvm state push|pull`).

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import type pg from 'pg';
import { AgentvmError } from '../../diagnostics/index.js';
import type { ApplyStart } from '../apply-log.js';
import {
  verifyAuditLog,
  type AuditEntry,
  type AuditEvent,
  type AuditVerification,
  type ExpectedAuditHead,
} from '../audit-log.js';
import type { StateBackend } from '../backend.js';
import { guardLease, type ApplyLogHandle, type HeldLease } from '../backend-types.js';
import { assertHostName } from '../host-paths.js';
import {
  DEFAULT_LEASE_MS,
  LeaseHeldError,
  describeHolder,
  leaseStaleness,
  type LeaseOptions,
  type LeaseRecord,
} from '../lease-lock.js';
import {
  applyOpsToDraft,
  emptyLockfile,
  lockfileDraft,
  lockfileWriteProblem,
  LOCKFILE_FORMAT_VERSION,
  parseLockfile,
  type Lockfile,
  type LockfileSource,
} from '../lockfile.js';
import { journalOf, WAL_FORMAT_VERSION, type JournalRecord, type WalBatch, type WalHeader } from '../wal.js';
import { prefixEnd, refuseBackwards } from '../transfer.js';
import { insertAudit, PgApplyLog, sealedRecord } from './apply-log.js';
import { backendError, connect, redactUrl } from './errors.js';
import { fence, PgLease } from './lease.js';
import { LATEST_SCHEMA_VERSION, migrate, schemaVersion, type MigrationResult } from './schema.js';
import { currentActor } from '../../support/actor.js';
import { selfIdentity } from '../process-identity.js';

export interface PostgresBackendOptions {
  /** Max connections of this process (default 4). */
  poolSize?: number;
  /** Bound on every statement (default 60 s): a stuck database gives an error, not a hang. */
  queryTimeoutMs?: number;
}

export interface FleetRow {
  host: string;
  publishedAt: string | null;
  ageSeconds: number | null;
  commit: string | null;
  status: string | null;
  /** The published facts without the provider reads. */
  summary: Record<string, unknown> | null;
  lockCommit: string | null;
  serial: number;
  lease: LeaseRecord | null;
  leaseExpired: boolean | null;
}

interface HostRow {
  lineage: string | null;
  serial: string;
  lockfile: Lockfile | null;
  wal_header: WalHeader | null;
}

/** What one host's state is, read in one snapshot. */
interface HostState {
  row: HostRow | undefined;
  batches: WalBatch[];
  /** The checkpointed lockfile with the batches replayed; null when nothing was ever written. */
  logical: Lockfile | null;
}

export class PostgresStateBackend implements StateBackend {
  readonly location: string;
  readonly pool: pg.Pool;
  #ready: Promise<void> | undefined;

  constructor(url: string, options: PostgresBackendOptions = {}) {
    this.location = redactUrl(url);
    // pg is loaded on the first PostgreSQL backend, not on import: local-backend commands never pay its start-up.
    const { Pool } = createRequire(import.meta.url)('pg') as typeof pg;
    this.pool = new Pool({
      connectionString: url,
      max: options.poolSize ?? 4,
      connectionTimeoutMillis: 10_000,
      query_timeout: options.queryTimeoutMs ?? 60_000,
      application_name: 'agentvm',
      allowExitOnIdle: true,
    });
    // An idle connection dropped by the server must not crash the process: the next query reports it.
    this.pool.on('error', () => undefined);
  }

  async close(): Promise<void> {
    await this.pool.end().catch(() => undefined);
  }

  // -------------------------------------------------------------------------------------------------------------------
  // Schema

  /** Applies the missing migrations (`agentvm state migrate`). */
  async migrate(): Promise<MigrationResult> {
    return this.#withClient('migrating the schema', migrate);
  }

  async schemaVersion(): Promise<number> {
    return this.#withClient('reading the schema version', schemaVersion);
  }

  /** One pooled client for `fn`, outside a transaction and before the schema check (migrate, the version read). */
  async #withClient<T>(what: string, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return this.#run(what, async () => {
      const client = await connect(this.pool);
      try {
        return await fn(client);
      } finally {
        client.release();
      }
    });
  }

  /** Every operation but migrate: the database must be at exactly this build's schema version. */
  async ready(): Promise<void> {
    this.#ready ??= this.schemaVersion().then((v) => {
      if (v === LATEST_SCHEMA_VERSION) return;
      if (v < LATEST_SCHEMA_VERSION) {
        throw new AgentvmError(
          'state.schema-outdated',
          `The PostgreSQL state schema in ${this.location} is at version ${v}; this agentvm needs version ${LATEST_SCHEMA_VERSION}.`,
          {
            detail:
              'Run `agentvm state migrate` (with the same state backend settings) once; it applies the missing migrations in order.',
          },
        );
      }
      throw new AgentvmError(
        'state.schema-newer',
        `The PostgreSQL state schema in ${this.location} is at version ${v}, newer than this agentvm knows (${LATEST_SCHEMA_VERSION}).`,
        {
          detail: 'Another host migrated it with a newer agentvm: upgrade agentvm here. Nothing was read or written.',
        },
      );
    });
    this.#ready.catch(() => (this.#ready = undefined));
    return this.#ready;
  }

  // -------------------------------------------------------------------------------------------------------------------
  // Lockfile

  async readLockfile(host: string): Promise<Lockfile | null> {
    assertHostName(host);
    return (await this.#read(host, 'reading the lockfile')).logical;
  }

  async writeLockfile(host: string, lock: Lockfile, lease: HeldLease): Promise<Lockfile> {
    const held = this.#guard(host, lease);
    if (lock.host !== host)
      throw toolkitError(
        'state.host-mismatch',
        `A lockfile of host "${lock.host}" cannot be written as host "${host}".`,
      );
    return this.#transaction(`writing the lockfile of ${host}`, async (client) => {
      await fence(client, held);
      const state = await this.#hostState(client, host, true);
      const current = state.logical;
      if (current && current.lineage !== lock.lineage) {
        throw new AgentvmError(
          'state.lineage-mismatch',
          `The lockfile of host "${host}" in ${this.location} has lineage ${current.lineage}, not ${lock.lineage}: it was replaced since it was read.`,
          {
            detail: 'Nothing was written. Run `agentvm plan` again against the current state.',
          },
        );
      }
      const at = current?.serial ?? 0;
      if (at !== lock.serial) {
        throw new AgentvmError(
          'state.serial-conflict',
          `The lockfile of host "${host}" in ${this.location} is at serial ${current ? at : 'none'}, but this change was made from serial ${lock.serial}.`,
          {
            detail:
              'Another operation wrote the state since it was read; nothing was written. Run `agentvm plan` again.',
          },
        );
      }
      const next: Lockfile = { ...lock, serial: lock.serial + 1, updatedAt: new Date().toISOString() };
      const problem = lockfileWriteProblem(next);
      if (problem)
        throw new AgentvmError(
          'state.invalid-lockfile',
          `Refusing to write an invalid lockfile for host "${host}" (${problem}).`,
          { source: 'toolkit' },
        );
      // `lock` was derived from the logical lockfile: it holds the batches, which are dropped; an interrupted apply's
      // header stays (with its progress) as the record of that apply, exactly like the local backend's WAL.
      const header = state.row?.wal_header
        ? JSON.stringify(journalHeader(state.row.wal_header, state.batches, next.serial))
        : null;
      await client.query(
        'UPDATE agentvm_hosts SET lockfile = $2, lineage = $3, serial = $4, wal_header = $5 WHERE host = $1',
        [host, JSON.stringify(next), next.lineage, next.serial, header],
      );
      await client.query('DELETE FROM agentvm_wal WHERE host = $1', [host]);
      return next;
    });
  }

  // -------------------------------------------------------------------------------------------------------------------
  // Leases

  async acquireLease(host: string, operation: string, options: LeaseOptions = {}): Promise<PgLease> {
    assertHostName(host);
    const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    const { record, token, tookOver } = await this.#transaction(`taking the lease of ${host}`, async (client) => {
      await client.query('INSERT INTO agentvm_hosts (host) VALUES ($1) ON CONFLICT DO NOTHING', [host]);
      const now = (await client.query<{ now: Date }>('SELECT now() AS now')).rows[0]!.now;
      const seen =
        (
          await client.query<{ record: LeaseRecord }>('SELECT record FROM agentvm_leases WHERE host = $1 FOR UPDATE', [
            host,
          ])
        ).rows[0]?.record ?? null;
      if (seen && leaseStaleness(seen, now) === null) throw heldError(host, seen);
      // The holder's boot id, PID namespace and start time: a holder is judged dead on this machine only when all of
      // them place it here and its pid is gone (ADR 0015); otherwise only the database clock's expiry ends the lease.
      const { pid: _pid, ...identity } = selfIdentity();
      const rec: LeaseRecord = {
        id: randomUUID(),
        who: currentActor(),
        operation,
        host,
        pid: process.pid,
        hostname: os.hostname(),
        ...identity,
        created: now.toISOString(),
        expires: new Date(now.getTime() + leaseMs).toISOString(),
      };
      // Racers on a host without a lease row: the second INSERT waits for the first, then updates nothing (the id it
      // saw, none, is not the winner's) and returns no row.
      const r = await client.query<{ token: string }>(
        `INSERT INTO agentvm_leases (host, id, token, expires_at, record) VALUES ($1, $2, nextval('agentvm_fence'), $3, $4)
         ON CONFLICT (host) DO UPDATE SET id = EXCLUDED.id, token = EXCLUDED.token, expires_at = EXCLUDED.expires_at, record = EXCLUDED.record
         WHERE agentvm_leases.id IS NOT DISTINCT FROM $5::uuid RETURNING token`,
        [host, rec.id, rec.expires, JSON.stringify(rec), seen?.id ?? null],
      );
      if (r.rowCount === 0) {
        const winner =
          (await client.query<{ record: LeaseRecord }>('SELECT record FROM agentvm_leases WHERE host = $1', [host]))
            .rows[0]?.record ?? null;
        throw heldError(host, winner);
      }
      return { record: rec, token: r.rows[0]!.token, tookOver: seen };
    });
    return new PgLease(this.pool, record, token, tookOver, leaseMs, options.renew ?? true);
  }

  async readLease(host: string): Promise<LeaseRecord | null> {
    assertHostName(host);
    return this.#run(`reading the lease of ${host}`, async () => {
      await this.ready();
      const r = await this.pool.query<{ record: LeaseRecord }>('SELECT record FROM agentvm_leases WHERE host = $1', [
        host,
      ]);
      return r.rows[0]?.record ?? null;
    });
  }

  /** The fencing token of the current lease (for `fleet status` and tests), or null. */
  async leaseToken(host: string): Promise<string | null> {
    const r = await this.#run('reading a lease token', () =>
      this.pool.query<{ token: string }>('SELECT token FROM agentvm_leases WHERE host = $1', [host]),
    );
    return r.rows[0]?.token ?? null;
  }

  async forceUnlock(host: string, id: string): Promise<LeaseRecord> {
    assertHostName(host);
    return this.#transaction(`unlocking ${host}`, async (client) => {
      const current = (
        await client.query<{ record: LeaseRecord }>('SELECT record FROM agentvm_leases WHERE host = $1 FOR UPDATE', [
          host,
        ])
      ).rows[0]?.record;
      if (!current)
        throw new AgentvmError(
          'state.not-locked',
          `There is no lease to unlock on host "${host}" in ${this.location}.`,
        );
      if (current.id !== id) {
        throw new AgentvmError(
          'state.lock-id-mismatch',
          `Lease ${id} is not the current lock: the host is held by lease ${current.id} held by ${describeHolder(current)}.`,
          {
            detail:
              'Nothing was removed. Check `agentvm state list` and pass the id of the current lease, if you are sure its holder is gone.',
          },
        );
      }
      await client.query('DELETE FROM agentvm_leases WHERE host = $1 AND id = $2', [host, id]);
      return current;
    });
  }

  async listHosts(): Promise<string[]> {
    return this.#run('listing hosts', async () => {
      await this.ready();
      const r = await this.pool.query<{ host: string }>(
        'SELECT host FROM agentvm_hosts h WHERE lockfile IS NOT NULL OR wal_header IS NOT NULL OR EXISTS (SELECT 1 FROM agentvm_leases l WHERE l.host = h.host) ORDER BY host',
      );
      return r.rows.map((x) => x.host);
    });
  }

  // -------------------------------------------------------------------------------------------------------------------
  // Apply log

  async beginApply(host: string, start: ApplyStart, lease: HeldLease): Promise<ApplyLogHandle> {
    const held = this.#guard(host, lease);
    let mismatch: AgentvmError | undefined;
    const init = await this.#transaction(`starting an apply on ${host}`, async (client) => {
      await fence(client, held);
      const state = await this.#hostState(client, host, true);
      const interrupted = state.row?.wal_header
        ? journalOf({ file: this.location, header: state.row.wal_header, batches: state.batches, tornTail: false })
        : null;
      // An interrupted apply's batches are checkpointed into the lockfile first (in this transaction).
      if (state.batches.length > 0 && state.logical) {
        await client.query('UPDATE agentvm_hosts SET lockfile = $2, lineage = $3 WHERE host = $1', [
          host,
          JSON.stringify(state.logical),
          state.logical.lineage,
        ]);
        await client.query('DELETE FROM agentvm_wal WHERE host = $1', [host]);
      }
      const current = state.logical;
      if (start.expected) {
        if ((current?.lineage ?? null) !== start.expected.lineage) {
          mismatch = new AgentvmError(
            'state.lineage-mismatch',
            `The lockfile of host "${host}" in ${this.location} has lineage ${current?.lineage ?? 'none'}, not ${start.expected.lineage ?? 'none'}: it was replaced since it was read.`,
            {
              detail: 'Nothing was applied. Run `agentvm plan` again against the current state.',
            },
          );
        } else if ((current?.serial ?? 0) !== start.expected.serial) {
          mismatch = new AgentvmError(
            'state.serial-conflict',
            `The lockfile of host "${host}" in ${this.location} is at serial ${current?.serial ?? 0}, but this apply was planned at serial ${start.expected.serial}.`,
            {
              detail:
                'Another operation wrote the state since it was read; nothing was applied. Run `agentvm plan` again.',
            },
          );
        }
        // The checkpoint above is kept (it only folded acknowledged writes in); the header stays the interrupted one.
        if (mismatch) return null;
      }
      const draft = current
        ? lockfileDraft(current)
        : { ...emptyLockfile(host), ...(state.row?.lineage ? { lineage: state.row.lineage } : {}) };
      const resume = interrupted !== null && interrupted.planDigest === start.planDigest ? interrupted : null;
      const header: WalHeader = {
        wal: WAL_FORMAT_VERSION,
        lineage: draft.lineage,
        baseSerial: draft.serial,
        applyId: start.applyId,
        planDigest: start.planDigest,
        startedAt: new Date().toISOString(),
        pid: process.pid,
        ...(resume ? { resumedFrom: resume.applyId, done: [...resume.completed] } : {}),
      };
      await client.query('UPDATE agentvm_hosts SET wal_header = $2 WHERE host = $1', [host, JSON.stringify(header)]);
      return { header, draft, interrupted };
    });
    if (mismatch || !init) throw mismatch ?? toolkitError('state.internal', 'beginApply returned nothing');
    return new PgApplyLog({ pool: this.pool, location: this.location, lease: held, ...init });
  }

  async readJournal(host: string): Promise<JournalRecord | null> {
    assertHostName(host);
    const state = await this.#read(host, 'reading the apply log');
    if (!state.row?.wal_header) return null;
    return journalOf({ file: this.location, header: state.row.wal_header, batches: state.batches, tornTail: false });
  }

  async discardJournal(host: string, lease: HeldLease): Promise<void> {
    const held = this.#guard(host, lease);
    await this.#transaction(`discarding the apply log of ${host}`, async (client) => {
      await fence(client, held);
      const state = await this.#hostState(client, host, true);
      if (!state.row?.wal_header) return;
      if (state.batches.length > 0 && state.logical) {
        await client.query('UPDATE agentvm_hosts SET lockfile = $2, lineage = $3 WHERE host = $1', [
          host,
          JSON.stringify(state.logical),
          state.logical.lineage,
        ]);
      }
      await client.query('DELETE FROM agentvm_wal WHERE host = $1', [host]);
      await client.query('UPDATE agentvm_hosts SET wal_header = NULL WHERE host = $1', [host]);
    });
  }

  // -------------------------------------------------------------------------------------------------------------------
  // Audit

  async appendAudit(entry: AuditEntry): Promise<AuditEvent> {
    const [event] = await this.appendAuditBatch([entry]);
    return event!;
  }

  /** All records in one transaction (one round trip to durability for the group, ADR 0026), chained per host. */
  async appendAuditBatch(entries: readonly AuditEntry[]): Promise<AuditEvent[]> {
    for (const entry of entries) assertHostName(entry.host);
    if (entries.length === 0) return [];
    const hosts = [...new Set(entries.map((e) => e.host))];
    return this.#transaction(`appending to the audit chain of ${hosts.join(', ')}`, async (client) => {
      const heads = new Map<string, { seq: number; hash: string } | null>();
      // Host rows locked in name order: two batches over the same hosts never wait on each other in a cycle.
      for (const host of [...hosts].sort()) {
        await client.query('INSERT INTO agentvm_hosts (host) VALUES ($1) ON CONFLICT DO NOTHING', [host]);
        const head = (
          await client.query<{ audit_seq: string; audit_hash: string }>(
            'SELECT audit_seq, audit_hash FROM agentvm_hosts WHERE host = $1 FOR UPDATE',
            [host],
          )
        ).rows[0]!;
        const seq = Number(head.audit_seq);
        heads.set(host, seq > 0 ? { seq, hash: head.audit_hash } : null);
      }
      const events: AuditEvent[] = [];
      for (const entry of entries) {
        const event = sealedRecord(entry, heads.get(entry.host) ?? null);
        await insertAudit(client, entry.host, event);
        heads.set(entry.host, { seq: event.seq, hash: event.hash });
        events.push(event);
      }
      return events;
    });
  }

  /** Every host's chain is verified on its own; a head naming its host is checked against that host's chain. */
  async verifyAudit(
    expected?: { seq: number; hash: string } | readonly (ExpectedAuditHead & { host?: string })[],
  ): Promise<AuditVerification> {
    const heads: Array<ExpectedAuditHead & { host?: string }> =
      expected === undefined
        ? []
        : Array.isArray(expected)
          ? [...(expected as ExpectedAuditHead[])]
          : [expected as ExpectedAuditHead];
    const hosts = await this.#run('listing audit chains', async () => {
      await this.ready();
      return (
        await this.pool.query<{ host: string }>('SELECT DISTINCT host FROM agentvm_audit ORDER BY host')
      ).rows.map((r) => r.host);
    });
    for (const h of heads) if (h.host && !hosts.includes(h.host)) hosts.push(h.host);
    const out: AuditVerification = { ok: true, records: 0, head: null, diagnostics: [] };
    // The chain's exact lines go through the same verifier as the file (one code path for what "intact" means), from
    // a private temp file named after the chain so its messages say which host's chain a line belongs to.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'agentvm-audit-verify-'));
    try {
      for (const host of hosts.sort()) {
        const file = path.join(dir, `audit-${host}.jsonl`);
        writeFileSync(file, (await this.auditLines(host)).map((l) => `${l}\n`).join(''), { mode: 0o600 });
        const v = await verifyAuditLog(
          file,
          heads.filter((h) => h.host === host),
        );
        out.records += v.records;
        out.diagnostics.push(...v.diagnostics);
        out.ok &&= v.ok;
        if (v.head && (!out.head || v.head.seq > out.head.seq)) out.head = v.head;
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    return out;
  }

  /** The exact lines of a host's audit chain, in seq order. */
  async auditLines(host: string): Promise<string[]> {
    return this.#run(`reading the audit chain of ${host}`, async () => {
      const r = await this.pool.query<{ line: string }>('SELECT line FROM agentvm_audit WHERE host = $1 ORDER BY seq', [
        host,
      ]);
      return r.rows.map((x) => x.line);
    });
  }

  async tailAudit(n: number): Promise<AuditEvent[]> {
    if (n <= 0) return [];
    return this.#run('reading the audit chains', async () => {
      await this.ready();
      const r = await this.pool.query<{ line: string }>(
        'SELECT line FROM agentvm_audit ORDER BY time DESC, host DESC, seq DESC LIMIT $1',
        [n],
      );
      return r.rows.map((x) => JSON.parse(x.line) as AuditEvent).reverse();
    });
  }

  auditPath(): string {
    return `${this.location} (table agentvm_audit, one chain per host)`;
  }

  // -------------------------------------------------------------------------------------------------------------------
  // Published facts (pull mode: `agentvm agent`; remote plans; `agentvm fleet status`)

  /** Replaces the host's published facts (one row per host). `facts` must hold no secret value (the caller's duty). */
  async publishFacts(host: string, commit: string | null, status: string, facts: unknown): Promise<void> {
    assertHostName(host);
    await this.#transaction(`publishing the facts of ${host}`, async (client) => {
      await client.query('INSERT INTO agentvm_hosts (host) VALUES ($1) ON CONFLICT DO NOTHING', [host]);
      await client.query(
        `INSERT INTO agentvm_facts (host, published_at, commit, status, facts) VALUES ($1, now(), $2, $3, $4)
         ON CONFLICT (host) DO UPDATE SET published_at = EXCLUDED.published_at, commit = EXCLUDED.commit, status = EXCLUDED.status, facts = EXCLUDED.facts`,
        [host, commit, status, JSON.stringify(facts)],
      );
    });
  }

  /** The host's last published facts, with when (database clock) and how old they are; null if it never published. */
  async readFacts<T>(host: string): Promise<{ publishedAt: string; ageSeconds: number; facts: T } | null> {
    assertHostName(host);
    return this.#run(`reading the facts of ${host}`, async () => {
      await this.ready();
      const r = await this.pool.query<{ published_at: Date; age: number; facts: T }>(
        'SELECT published_at, floor(extract(epoch FROM now() - published_at))::int AS age, facts FROM agentvm_facts WHERE host = $1',
        [host],
      );
      const row = r.rows[0];
      return row
        ? { publishedAt: row.published_at.toISOString(), ageSeconds: Math.max(0, row.age), facts: row.facts }
        : null;
    });
  }

  /**
   * One row per host for the fleet view, in one statement: its published summary (not the reads), its lockfile's
   * commit and serial, and its lease holder. `fields` picks the small parts of the facts document to return.
   */
  async fleetRows(): Promise<FleetRow[]> {
    return this.#run('reading the fleet', async () => {
      await this.ready();
      const r = await this.pool.query<FleetRow>(
        `SELECT h.host, f.published_at AS "publishedAt", floor(extract(epoch FROM now() - f.published_at))::int AS "ageSeconds",
                f.commit, f.status, f.facts - 'reads' AS summary, h.lockfile->>'commit' AS "lockCommit", h.serial::int AS serial,
                l.record AS lease, (l.expires_at <= now()) AS "leaseExpired"
           FROM agentvm_hosts h LEFT JOIN agentvm_facts f ON f.host = h.host LEFT JOIN agentvm_leases l ON l.host = h.host
          WHERE f.host IS NOT NULL OR h.lockfile IS NOT NULL OR l.host IS NOT NULL
          ORDER BY h.host`,
      );
      return r.rows.map((row) => ({
        ...row,
        publishedAt: row.publishedAt ? new Date(row.publishedAt).toISOString() : null,
      }));
    });
  }

  // -------------------------------------------------------------------------------------------------------------------
  // Moving state in (`agentvm state push`, src/state/transfer.ts)

  /**
   * One transaction: appends the records of `lines` the host's chain lacks (it must be a prefix of them) and sets the
   * lockfile to `lock` as is (same lineage and serial). Returns how many records were appended.
   */
  async importHost(host: string, lock: Lockfile | null, lines: readonly string[], lease: HeldLease): Promise<number> {
    const held = this.#guard(host, lease);
    return this.#transaction(`importing the state of ${host}`, async (client) => {
      await fence(client, held);
      const state = await this.#hostState(client, host, true);
      refuseBackwards(state.logical, lock, this.location, host);
      const existing = (
        await client.query<{ line: string }>('SELECT line FROM agentvm_audit WHERE host = $1 ORDER BY seq', [host])
      ).rows.map((r) => r.line);
      const from = prefixEnd(existing, lines, `${this.location} (chain of ${host})`, 'the source');
      for (const line of lines.slice(from)) {
        const event = JSON.parse(line) as AuditEvent;
        await insertAudit(client, host, event, line);
      }
      if (lock) {
        if (lock.host !== host)
          throw toolkitError(
            'state.host-mismatch',
            `A lockfile of host "${lock.host}" cannot be imported as host "${host}".`,
          );
        await client.query(
          'UPDATE agentvm_hosts SET lockfile = $2, lineage = $3, serial = $4, wal_header = NULL WHERE host = $1',
          [host, JSON.stringify(lock), lock.lineage, lock.serial],
        );
        await client.query('DELETE FROM agentvm_wal WHERE host = $1', [host]);
      }
      return lines.length - from;
    });
  }

  // -------------------------------------------------------------------------------------------------------------------
  // Internals

  #guard(host: string, lease: HeldLease): PgLease {
    return guardLease(host, lease, (l): l is PgLease => l instanceof PgLease, 'PostgreSQL');
  }

  async #read(host: string, what: string): Promise<HostState> {
    return this.#transaction(
      `${what} of ${host}`,
      (client) => this.#hostState(client, host, false),
      'REPEATABLE READ, READ ONLY',
    );
  }

  /** The host's row, batches and logical lockfile, from one snapshot (and row-locked when `forUpdate`). */
  async #hostState(client: pg.ClientBase, host: string, forUpdate: boolean): Promise<HostState> {
    const r = await client.query<HostRow>(
      `SELECT lineage, serial, lockfile, wal_header FROM agentvm_hosts WHERE host = $1${forUpdate ? ' FOR UPDATE' : ''}`,
      [host],
    );
    const row = r.rows[0];
    if (!row) return { row, batches: [], logical: null };
    const batches = (
      await client.query<{ batch: WalBatch }>('SELECT batch FROM agentvm_wal WHERE host = $1 ORDER BY seq', [host])
    ).rows.map((b) => b.batch);
    const source: LockfileSource = {
      file: `${this.location} host ${host}`,
      backup: `${this.location} host ${host} (no backup: restore with agentvm state push)`,
      host,
    };
    const base = row.lockfile ? parseLockfile(row.lockfile, source) : null;
    if (!base && batches.length === 0) return { row, batches, logical: null };
    const draft: Lockfile = base
      ? lockfileDraft(base)
      : {
          formatVersion: LOCKFILE_FORMAT_VERSION,
          lineage: row.wal_header?.lineage ?? row.lineage ?? randomUUID(),
          serial: 0,
          host,
          commit: null,
          updatedAt: row.wal_header?.startedAt ?? new Date().toISOString(),
          resources: {},
          workloads: {},
        };
    for (const b of batches) {
      applyOpsToDraft(draft, b.ops);
      draft.updatedAt = b.at;
    }
    draft.serial = (base?.serial ?? 0) + batches.length;
    if (draft.serial !== Number(row.serial)) {
      throw new AgentvmError(
        'state.corrupt',
        `The state of host "${host}" in ${this.location} does not add up: the lockfile row and ${batches.length} apply-log batch(es) make serial ${draft.serial}, the host row says ${row.serial}.`,
        {
          detail:
            "Something other than agentvm changed the agentvm_* tables. Restore them from a backup, or push the host's state again with `agentvm state push`.",
        },
      );
    }
    return { row, batches, logical: draft };
  }

  async #transaction<T>(what: string, fn: (client: pg.PoolClient) => Promise<T>, mode = ''): Promise<T> {
    return this.#run(what, async () => {
      await this.ready();
      const client = await connect(this.pool);
      try {
        await client.query(mode ? `BEGIN ISOLATION LEVEL ${mode}` : 'BEGIN');
        const result = await fn(client);
        await client.query('COMMIT');
        client.release();
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        client.release(true);
        throw error;
      }
    });
  }

  async #run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      throw backendError(error, this.location, what);
    }
  }
}

/** The interrupted apply's header with the progress of its batches folded in, now based on `serial`. */
function journalHeader(header: WalHeader, batches: WalBatch[], serial: number): WalHeader {
  const j = journalOf({ file: '', header, batches, tornTail: false });
  return { ...header, baseSerial: serial, done: j.completed, ...(j.failed.length ? { failed: j.failed } : {}) };
}

function heldError(host: string, holder: LeaseRecord | null): LeaseHeldError {
  if (!holder)
    return new LeaseHeldError(
      `Host "${host}" was locked by another agentvm process a moment ago.`,
      'Wait a moment and retry.',
      null,
    );
  return new LeaseHeldError(
    `Host "${host}" is locked by ${holder.who} (operation ${holder.operation}, pid ${holder.pid} on ${holder.hostname}) since ${holder.created}, ` +
      `lease ${holder.id}, expires ${holder.expires}. If you are sure it is stale, run \`agentvm state unlock ${holder.id} --host ${host}\`.`,
    'Another agentvm operation is changing this host. Wait for it to finish and retry. A lease that expired (by the database clock), or whose ' +
      `process is gone (on the same machine), is taken over automatically; break it by hand only if you are sure: \`agentvm state unlock ${holder.id} --host ${host}\`.`,
    holder,
  );
}

function toolkitError(code: string, message: string): AgentvmError {
  return new AgentvmError(code, message, { source: 'toolkit' });
}
