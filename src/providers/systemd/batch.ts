// Coalescing of systemctl calls that apply makes once per unit (ADR 0020): `daemon-reload` and `enable <unit>`.
// Apply runs units concurrently; each one used to spawn its own systemctl for these, which the apply profile showed
// as the largest per-resource cost after the state log's fsyncs. A call made while another of its kind is running
// waits for the next run, and that one run serves every call queued meanwhile:
//   daemon-reload      one reload for all queued callers. It starts after every one of them asked, i.e. after each
//                      wrote its files, so each caller's files are loaded when its promise resolves.
//   enable u1 u2 …     one systemctl for all queued units. When it fails, each unit is enabled on its own, so a
//                      failure is reported for the unit that caused it, with that unit's own output.

import type { CommandResult } from './systemctl.js';

interface Waiter<T> {
  item: T;
  resolve: (r: CommandResult) => void;
  reject: (e: unknown) => void;
}

export class CallBatch<T> {
  private queue: Array<Waiter<T>> = [];
  private running = false;
  /** Runs (for tests and the ADR's figures): how many commands were spawned for how many calls. */
  runs = 0;
  calls = 0;

  /**
   * `many` runs one command for the distinct items of a batch; `one` runs it for a single item (after `many` failed,
   * to attribute the failure).
   */
  constructor(
    private readonly many: (items: T[]) => Promise<CommandResult>,
    private readonly one: (item: T) => Promise<CommandResult>,
  ) {}

  submit(item: T): Promise<CommandResult> {
    this.calls++;
    return new Promise((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      void this.pump();
    });
  }

  private async pump(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0);
        const items = [...new Set(batch.map((w) => w.item))];
        try {
          this.runs++;
          const r = await this.many(items);
          if (r.code === 0 || items.length === 1) {
            for (const w of batch) w.resolve(r);
            continue;
          }
          for (const w of batch) {
            this.runs++;
            w.resolve(await this.one(w.item));
          }
        } catch (error) {
          for (const w of batch) w.reject(error);
        }
      }
    } finally {
      this.running = false;
    }
  }
}
