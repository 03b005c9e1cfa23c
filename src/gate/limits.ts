// Per-source refusal accounting: a flood of refused requests (or of connections over the per-source cap) from one
// address must neither fill the audit log nor keep the gate busy. Pure bookkeeping; the server decides what to do.
// Invariants:
// - The first AUDIT_PER_SECOND refusals of a source in a second are audited one by one; the rest are counted and
//   audited as one aggregate record per source per second (nothing is dropped silently).
// - A refusal costs the gate microseconds and never an upstream; what a flood could cost is audit space (the issue
//   measured 6.4 MiB in 10 s), which this bounds to AUDIT_PER_SECOND + 1 records per source per second. Connections
//   and header time per source are limited in wire.ts.

export const AUDIT_PER_SECOND = 20;

export interface RefusalVerdict {
  /** Audit this refusal on its own record. */
  audit: boolean;
}

export class RefusalCounter {
  private window = 0;
  private counts = new Map<string, { refused: number; unaudited: number; connections: number }>();

  constructor(private readonly flush: (source: string, unaudited: number, connectionsRefused: number) => void) {}

  private entry(source: string, now: number): { refused: number; unaudited: number; connections: number } {
    const second = Math.floor(now / 1000);
    if (second !== this.window) this.roll(second);
    let e = this.counts.get(source);
    if (!e) this.counts.set(source, (e = { refused: 0, unaudited: 0, connections: 0 }));
    return e;
  }

  /** A request from `source` is being refused. */
  refusal(source: string, now = Date.now()): RefusalVerdict {
    const e = this.entry(source, now);
    e.refused++;
    const audit = e.refused <= AUDIT_PER_SECOND;
    if (!audit) e.unaudited++;
    return { audit };
  }

  /** A connection from `source` was closed at once: the source holds its cap of connections. */
  connectionRefused(source: string, now = Date.now()): void {
    this.entry(source, now).connections++;
  }

  /** Writes the aggregates of the past window (also called by a timer, so a flood that stops is still recorded). */
  roll(second = Math.floor(Date.now() / 1000)): void {
    if (second === this.window) return;
    const counts = this.counts;
    this.counts = new Map();
    this.window = second;
    for (const [source, e] of counts)
      if (e.unaudited > 0 || e.connections > 0) this.flush(source, e.unaudited, e.connections);
  }
}
