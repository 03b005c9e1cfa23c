// The state behind the live apply view: a pure fold of the ApplyEvent stream over the plan's dependency graph.
// It knows, per resource, whether it is waiting (and on which addresses), queued behind the concurrency bound,
// running, or finished — without ink, so it is tested on its own and the view only draws a snapshot of it.

import type { ApplyEvent, ApplyResult } from '../../app/apply.js';
import type { Plan } from '../../engine/plan.js';
import type { Action, Address } from '../../model/resources.js';
import type { Diagnostic } from '../../diagnostics/index.js';

export type RowState = 'waiting' | 'queued' | 'running' | 'applied' | 'failed' | 'skipped' | 'resumed';

export interface ProgressRow {
  address: Address;
  action: Action;
  state: RowState;
  /** Dependencies in this apply that have not finished yet; empty unless `state` is `waiting`. */
  waitingOn: Address[];
  /** Milliseconds since the resource started (running) or how long it took (finished). */
  elapsedMs?: number;
  /** The provider's latest progress message while running; the skip reason when skipped. */
  message?: string;
  diagnostics: Diagnostic[];
}

export interface ProgressSnapshot {
  host: string;
  planId: string;
  applyId: string;
  resumed: boolean;
  /** Finished rows in the order they finished (the view prints each once, above the live area). */
  finished: ProgressRow[];
  /** Rows still to do: running first, then queued, then waiting, each in plan order. */
  active: ProgressRow[];
  result?: ApplyResult;
}

interface Tracked {
  address: Address;
  action: Action;
  dependsOn: Address[];
  state: RowState;
  startedAt?: number;
  ms?: number;
  message?: string;
  diagnostics: Diagnostic[];
}

const FINISHED: ReadonlySet<RowState> = new Set(['applied', 'failed', 'skipped', 'resumed']);
const ACTIVE_ORDER: Record<RowState, number> = {
  running: 0,
  queued: 1,
  waiting: 2,
  applied: 3,
  failed: 3,
  skipped: 3,
  resumed: 3,
};

export class ApplyProgress {
  private readonly rows = new Map<Address, Tracked>();
  private readonly finishedOrder: Address[] = [];
  private host = '';
  private planId = '';
  private applyId = '';
  private resumed = false;
  private result: ApplyResult | undefined;

  constructor(private readonly now: () => number = Date.now) {}

  /** Folds one event in. Cheap: the view redraws on its own clock, not per event. */
  update(e: ApplyEvent): void {
    switch (e.type) {
      case 'start':
        this.reset(e.plan);
        this.applyId = e.applyId;
        this.resumed = e.resumed;
        return;
      case 'resource-start': {
        const row = this.row(e.address, e.action);
        row.state = 'running';
        row.startedAt = this.now();
        return;
      }
      case 'progress': {
        const row = this.rows.get(e.address);
        // Providers often prefix their own address; the row already shows it.
        if (row)
          row.message = e.message.startsWith(`${e.address}: `) ? e.message.slice(e.address.length + 2) : e.message;
        return;
      }
      case 'resource-done': {
        const row = this.row(e.address, e.action);
        this.finish(row, e.ok ? 'applied' : 'failed');
        row.ms = e.ms;
        row.diagnostics = e.diagnostics;
        return;
      }
      case 'resource-skipped': {
        const row = this.row(e.address, 'noop');
        this.finish(row, 'skipped');
        row.message = e.reason;
        return;
      }
      case 'resource-resumed':
        this.finish(this.row(e.address, 'noop'), 'resumed');
        return;
      case 'finish':
        this.result = e.result;
        return;
    }
  }

  snapshot(): ProgressSnapshot {
    const now = this.now();
    const view = (t: Tracked): ProgressRow => {
      let state = t.state;
      let waitingOn: Address[] = [];
      if (state === 'waiting') {
        waitingOn = t.dependsOn.filter((d) => {
          const dep = this.rows.get(d);
          return dep !== undefined && !FINISHED.has(dep.state);
        });
        // Every dependency is done but it has not started: it waits for a free slot (the concurrency bound).
        if (waitingOn.length === 0) state = 'queued';
      }
      const elapsedMs = t.ms ?? (t.startedAt !== undefined ? now - t.startedAt : undefined);
      return {
        address: t.address,
        action: t.action,
        state,
        waitingOn,
        ...(elapsedMs !== undefined ? { elapsedMs } : {}),
        ...(t.message !== undefined ? { message: t.message } : {}),
        diagnostics: t.diagnostics,
      };
    };
    const active = [...this.rows.values()].filter((t) => !FINISHED.has(t.state)).map(view);
    active.sort((a, b) => ACTIVE_ORDER[a.state] - ACTIVE_ORDER[b.state]);
    return {
      host: this.host,
      planId: this.planId,
      applyId: this.applyId,
      resumed: this.resumed,
      finished: this.finishedOrder.map((a) => view(this.rows.get(a)!)),
      active,
      ...(this.result ? { result: this.result } : {}),
    };
  }

  private reset(plan: Plan): void {
    this.rows.clear();
    this.finishedOrder.length = 0;
    this.host = plan.host;
    this.planId = plan.id;
    // noop changes are walked silently (they are already converged), so they are neither shown nor waited on.
    const changes = plan.changes.filter((c) => c.action !== 'noop');
    const inApply = new Set(changes.map((c) => c.address));
    for (const c of changes) {
      this.rows.set(c.address, {
        address: c.address,
        action: c.action,
        dependsOn: c.dependsOn.filter((d) => inApply.has(d)),
        state: 'waiting',
        diagnostics: [],
      });
    }
  }

  private row(address: Address, action: Action): Tracked {
    let row = this.rows.get(address);
    if (!row) {
      row = { address, action, dependsOn: [], state: 'waiting', diagnostics: [] };
      this.rows.set(address, row);
    }
    return row;
  }

  private finish(row: Tracked, state: RowState): void {
    if (!FINISHED.has(row.state)) this.finishedOrder.push(row.address);
    row.state = state;
  }
}
