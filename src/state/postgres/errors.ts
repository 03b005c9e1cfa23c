// How the PostgreSQL backend reports trouble: a URL without its password in every message, and database errors turned
// into diagnostics that say what happened to the state (nothing half-written: every write is one transaction).

import type pg from 'pg';
import { AgentvmError } from '../../diagnostics/index.js';

/** The URL for messages: user, host (or socket directory), port and database; never a password or other parameters. */
export function redactUrl(url: string): string {
  // By hand: WHATWG URL refuses `postgresql://user@/db?host=/socket/dir`, the unix-socket form.
  const m = /^(postgres(?:ql)?):\/\/(?:([^:@/]*)(?::[^@/]*)?@)?([^/?]*)(\/[^?]*)?(?:\?(.*))?$/.exec(url);
  if (!m) return 'postgresql://(unparsable URL)';
  let where = m[3] ?? '';
  if (!where) {
    const socket = new URLSearchParams(m[5] ?? '').get('host');
    where = socket ?? 'localhost';
  }
  const user = m[2] ? `${safeDecode(m[2])}@` : '';
  return `postgresql://${user}${where}${m[4] ?? ''}`;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOENT',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/** Errors that mean "the database went away or never answered", as opposed to a refused statement. */
export function isConnectionError(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown };
  const code = typeof e?.code === 'string' ? e.code : '';
  const message = typeof e?.message === 'string' ? e.message : '';
  return (
    CONNECTION_CODES.has(code) ||
    code.startsWith('08') ||
    code.startsWith('57P') ||
    /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|not queryable/i.test(
      message,
    )
  );
}

/** Maps anything a database call threw: our own errors pass through. */
export function backendError(error: unknown, location: string, what: string): AgentvmError {
  if (error instanceof AgentvmError) return error;
  const e = error as { code?: unknown; message?: unknown };
  const reason = typeof e?.message === 'string' ? e.message.split('\n')[0]!.slice(0, 300) : String(error);
  if (isConnectionError(error)) {
    return new AgentvmError(
      'state.backend-unavailable',
      `The PostgreSQL state backend ${location} stopped answering while ${what} (${reason}).`,
      {
        detail:
          'Every write is one transaction: what was acknowledged is in PostgreSQL, the rest was not recorded. When the database is ' +
          'back, run the command again (an interrupted apply resumes); check the connection with `agentvm state migrate --check`.',
        cause: error,
      },
    );
  }
  return new AgentvmError(
    'state.backend-error',
    `The PostgreSQL state backend ${location} refused a statement while ${what} (${typeof e?.code === 'string' ? `${e.code}: ` : ''}${reason}).`,
    {
      detail:
        'Nothing of this step was recorded (it was one transaction). Check the database (`agentvm state migrate --check`); if it persists, report it with this message.',
      cause: error,
    },
  );
}

const guarded = new WeakSet<pg.PoolClient>();

/**
 * A pooled connection with an error listener: the pool only listens on idle clients, and a socket error on a checked-out
 * one (the server killed mid-query) would otherwise be an unhandled 'error' event that kills the process. The failing
 * query rejects anyway, which is where it is reported.
 */
export async function connect(pool: pg.Pool): Promise<pg.PoolClient> {
  const client = await pool.connect();
  if (!guarded.has(client)) {
    client.on('error', () => undefined);
    guarded.add(client);
  }
  return client;
}
