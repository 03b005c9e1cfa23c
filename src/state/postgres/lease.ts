// A lease on one host's state held in PostgreSQL (ADR 0017): a row of agentvm_leases with an expiry and a fencing
// token. No session advisory locks: they break behind PgBouncer in transaction mode and collide across projects.
// Invariants:
// - Taking a lease, renewing it and every state write lock the host's lease row first (SELECT … FOR UPDATE), in that
//   order, so a takeover and a write of the old holder serialise: the write then finds another token and is refused.
// - A takeover only replaces a stale lease (expired by the DATABASE clock — hosts' clocks may disagree — or held by a
//   dead process of this machine) and always issues a larger token (a sequence).
// - Losing the connection loses nothing but time: the row stays until it expires, then another holder takes over and
//   this holder's late writes are refused by their token.

import type pg from 'pg';
import { AgentvmError } from '../../diagnostics/index.js';
import type { HeldLease } from '../backend-types.js';
import { describeHolder, type LeaseRecord } from '../lease-lock.js';

export class PgLease implements HeldLease {
  readonly tookOver: LeaseRecord | null;
  readonly token: string;
  #record: LeaseRecord;
  #lost: string | null = null;
  #released = false;
  #timer: NodeJS.Timeout | undefined;
  readonly #pool: pg.Pool;
  readonly #leaseMs: number;

  /** @internal use PostgresStateBackend.acquireLease */
  constructor(
    pool: pg.Pool,
    record: LeaseRecord,
    token: string,
    tookOver: LeaseRecord | null,
    leaseMs: number,
    renew: boolean,
  ) {
    this.#pool = pool;
    this.#record = record;
    this.token = token;
    this.tookOver = tookOver;
    this.#leaseMs = leaseMs;
    if (renew) {
      this.#timer = setInterval(
        () => void this.renew().catch(() => undefined),
        Math.max(1000, Math.floor(leaseMs / 3)),
      );
      this.#timer.unref();
    }
  }

  get id(): string {
    return this.#record.id;
  }
  get host(): string {
    return this.#record.host;
  }
  get record(): LeaseRecord {
    return { ...this.#record };
  }
  get held(): boolean {
    return !this.#released && this.#lost === null;
  }

  /** Extends the lease from the database's now. A renewal that finds another token marks the lease lost. */
  async renew(): Promise<void> {
    this.assertHeld();
    const r = await this.#pool.query<{ expires: Date }>(
      `UPDATE agentvm_leases SET expires_at = now() + $4 * interval '1 millisecond',
         record = jsonb_set(record, '{expires}', to_jsonb(to_char((now() + $4 * interval '1 millisecond') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')))
       WHERE host = $1 AND id = $2 AND token = $3 RETURNING expires_at AS expires`,
      [this.host, this.id, this.token, this.#leaseMs],
    );
    if (r.rowCount === 0) this.markLost('it was taken over or broken (its fencing token is no longer current)');
    else this.#record = { ...this.#record, expires: r.rows[0]!.expires.toISOString() };
    this.assertHeld();
  }

  assertHeld(): void {
    if (this.#released)
      throw new AgentvmError('state.lease-lost', `The lease ${this.id} on host "${this.host}" was already released.`, {
        source: 'toolkit',
      });
    if (this.#lost !== null) {
      throw new AgentvmError(
        'state.lease-lost',
        `This operation no longer holds the state lock of host "${this.host}": ${this.#lost}.`,
        {
          detail:
            'Nothing more was written. Another operation may be changing the host now; run `agentvm plan` when it has finished.',
        },
      );
    }
  }

  /** @internal the backend found another token on the row. */
  markLost(why: string): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#lost ??= why;
  }

  /**
   * Deletes the row if it is still this lease. Never throws: it runs in `finally` blocks, where an error would hide
   * the one that matters; a lease that could not be deleted (database unreachable) simply expires.
   */
  async release(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#released) return;
    this.#released = true;
    if (this.#lost !== null) return;
    await this.#pool
      .query('DELETE FROM agentvm_leases WHERE host = $1 AND id = $2 AND token = $3', [this.host, this.id, this.token])
      .catch(() => undefined);
  }
}

/** Locks the lease row of `lease` for the rest of the transaction, or throws `state.lease-lost` (fencing). */
export async function fence(client: pg.ClientBase, lease: PgLease): Promise<void> {
  lease.assertHeld();
  const r = await client.query('SELECT 1 FROM agentvm_leases WHERE host = $1 AND id = $2 AND token = $3 FOR UPDATE', [
    lease.host,
    lease.id,
    lease.token,
  ]);
  if (r.rowCount === 0) {
    const now = await client.query<{ record: LeaseRecord; token: string }>(
      'SELECT record, token FROM agentvm_leases WHERE host = $1',
      [lease.host],
    );
    const current = now.rows[0];
    lease.markLost(
      current
        ? `its fencing token ${lease.token} was superseded by token ${current.token}, held by ${describeHolder(current.record)}`
        : `its lease row was removed (fencing token ${lease.token} is no longer current)`,
    );
    lease.assertHeld();
  }
}
