// Denials on the record, without letting a looping agent flood the log: per caller, destination and reason, the
// first denial of a window (default one minute) is written at once, and the rest of that window become ONE record
// with their count when the window closes (or on shutdown). So the log grows by at most two records per destination
// per caller per minute, whatever the request rate. Records go through the gate's group-commit writer
// (RequestAuditLog): the proxy never waits for another writer's lock on its event loop.
// Record shape: event `egress.deny`, address = the caller (`unit.<workload>.<profile>` / `job.<workload>.<job>.<run>`),
// detail = the one-line reason the caller got (destination, why, which contract to change) and the count.

import { RequestAuditLog } from '../gate/audit.js';
import type { AuditEntry } from '../state/audit-log.js';
import type { Denial, EgressCaller } from './rules.js';

export const EGRESS_OPERATION = 'egress';
export const EGRESS_DENY_EVENT = 'egress.deny';

interface WindowCount {
  caller: string;
  denial: Denial;
  /** Denials after the first in this window (not yet written). */
  more: number;
  since: Date;
}

export interface DenialAuditOptions {
  file: string;
  host: string;
  /** Aggregation window. Default 60 s. */
  windowMs?: number;
  onError?: (error: unknown) => void;
}

export class DenialAudit {
  private readonly log: RequestAuditLog;
  private readonly windowMs: number;
  private counts = new Map<string, WindowCount>();
  private timer: NodeJS.Timeout | undefined;
  /** Denials seen (for the server's status and tests). */
  denials = 0;
  /** Records handed to the log (at most two per caller, destination and reason per window). */
  records = 0;

  constructor(private readonly options: DenialAuditOptions) {
    this.windowMs = options.windowMs ?? 60_000;
    this.log = new RequestAuditLog({
      file: options.file,
      intervalMs: 50,
      ...(options.onError ? { onError: options.onError } : {}),
    });
  }

  record(caller: EgressCaller, denial: Denial): void {
    this.denials++;
    const key = `${caller.id}\0${denial.destination}\0${denial.code}`;
    const seen = this.counts.get(key);
    if (seen) {
      seen.more++;
      return;
    }
    const now = new Date();
    this.counts.set(key, { caller: caller.id, denial, more: 0, since: now });
    this.records++;
    this.log.add(this.entry(caller.id, denial, 1, now, now));
    if (!this.timer) {
      this.timer = setTimeout(() => this.closeWindow(), this.windowMs);
      this.timer.unref();
    }
  }

  private entry(caller: string, denial: Denial, count: number, since: Date, now: Date): AuditEntry {
    const tally = count === 1 && since === now ? '' : ` (${count} more time(s) since ${since.toISOString()})`;
    return {
      host: this.options.host,
      operation: EGRESS_OPERATION,
      event: EGRESS_DENY_EVENT,
      result: 'failed',
      address: caller,
      detail: `${denial.reason}${tally}`,
      time: now,
    };
  }

  /** Writes the counts of the window that ends now and starts a new one. */
  private closeWindow(): void {
    this.timer = undefined;
    const now = new Date();
    for (const c of this.counts.values()) {
      if (c.more === 0) continue;
      this.records++;
      this.log.add(this.entry(c.caller, c.denial, c.more, c.since, now));
    }
    this.counts = new Map();
  }

  /** Shutdown: the open window's counts, then every buffered record, waiting for the log's lock. */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.closeWindow();
    this.log.flush(true);
  }

  get written(): number {
    return this.log.written;
  }
}
