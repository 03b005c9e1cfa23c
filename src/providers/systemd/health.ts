// Health of a gateway after a (re)start: HTTP GET of the profile's health path on 127.0.0.1:<port> or on its unix
// socket, polled until it answers 2xx or the profile's timeout passes. A started unit is not yet a listening one
// (Type=simple returns once the process is forked), so one refused connection proves nothing; only the deadline
// does. The body is never read beyond a small cap and never reported (it may name credentials).

import { request } from 'node:http';

export type HealthTarget = { port: number; socketPath?: undefined } | { socketPath: string; port?: undefined };

export interface HealthOptions {
  /** Overall deadline. */
  timeoutMs: number;
  /** Pause between attempts. Default 100 ms. */
  intervalMs?: number;
  /** Per-request timeout. Default min(2 s, timeoutMs). */
  requestTimeoutMs?: number;
  /**
   * Asked between attempts (at most every 500 ms): `false` ends the wait early, e.g. when the unit has failed and
   * will not come back. Errors are treated as "still running".
   */
  stillRunning?: () => Promise<boolean>;
}

export interface HealthResult {
  ok: boolean;
  /** The last HTTP status seen, if any. */
  status?: number;
  /** The last connection error (e.g. ECONNREFUSED), if the last attempt got no answer. */
  error?: string;
  /** Set when stillRunning() ended the wait. */
  gaveUp?: boolean;
  attempts: number;
  elapsedMs: number;
}

/** One GET; resolves with the status or the error code. */
export function probe(
  target: HealthTarget,
  path: string,
  timeoutMs: number,
): Promise<{ status?: number; error?: string }> {
  return new Promise((resolve) => {
    const req = request(
      {
        method: 'GET',
        path,
        timeout: timeoutMs,
        headers: { 'user-agent': 'agentvm-health', connection: 'close' },
        ...(target.socketPath !== undefined
          ? { socketPath: target.socketPath }
          : { host: '127.0.0.1', port: target.port }),
      },
      (res) => {
        let read = 0;
        res.on('data', (chunk: Buffer) => {
          read += chunk.length;
          if (read > 64 * 1024) res.destroy();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0 }));
        res.on('close', () => resolve({ status: res.statusCode ?? 0 }));
        res.on('error', () => resolve({ status: res.statusCode ?? 0 }));
      },
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
    req.end();
  });
}

/** Polls until a 2xx answer or the deadline. */
export async function waitHealthy(target: HealthTarget, path: string, opts: HealthOptions): Promise<HealthResult> {
  const started = Date.now();
  const deadline = started + opts.timeoutMs;
  const interval = opts.intervalMs ?? 100;
  let attempts = 0;
  let last: { status?: number; error?: string } = {};
  let lastRunningCheck = 0;
  for (;;) {
    attempts++;
    const remaining = deadline - Date.now();
    last = await probe(target, path, Math.max(50, Math.min(opts.requestTimeoutMs ?? 2_000, remaining)));
    if (last.status !== undefined && last.status >= 200 && last.status < 300) {
      return { ok: true, status: last.status, attempts, elapsedMs: Date.now() - started };
    }
    if (Date.now() + interval >= deadline) break;
    if (opts.stillRunning && Date.now() - lastRunningCheck >= 500) {
      lastRunningCheck = Date.now();
      const running = await opts.stillRunning().catch(() => true);
      if (!running) return { ok: false, ...last, gaveUp: true, attempts, elapsedMs: Date.now() - started };
    }
    await new Promise((r) => setTimeout(r, interval));
  }
  return { ok: false, ...last, attempts, elapsedMs: Date.now() - started };
}

/** "HTTP 503", "ECONNREFUSED", …: what the last attempt got, for diagnostics. */
export function describeHealth(result: HealthResult): string {
  if (result.status !== undefined) return `HTTP ${result.status}`;
  return result.error ?? 'no answer';
}
