// The live apply view's state and drawing, on a real plan of the example fleet: the progress fold says what waits on
// what (from the plan's graph), what is queued behind the concurrency bound, what runs and for how long; and ink
// draws it into a terminal-sized stream with the live area cut to the terminal's height.

import { Writable } from 'node:stream';
import { render } from 'ink';
import { createElement } from 'react';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makePlan } from '../src/app/plan.js';
import type { ApplyResult } from '../src/app/apply.js';
import type { Plan } from '../src/engine/plan.js';
import { isInteractive } from '../src/ui/interactive.js';
import { ApplyProgress } from '../src/ui/tty/apply-progress.js';
import { ApplyView } from '../src/ui/tty/apply-view.js';
import { fleetCopy, type FleetCopy } from './support/fleet.js';
import { stripAnsi } from './support/pty.js';

let fleet: FleetCopy;
let plan: Plan;

/** A terminal-sized sink that keeps the last frame ink wrote (debug mode writes whole frames). */
class Screen extends Writable {
  columns = 120;
  rows: number;
  frames: string[] = [];
  constructor(rows: number) {
    super();
    this.rows = rows;
  }
  override _write(chunk: Buffer, _enc: string, done: () => void): void {
    this.frames.push(stripAnsi(chunk.toString()));
    done();
  }
}

async function draw(progress: ApplyProgress, rows: number): Promise<string> {
  const screen = new Screen(rows);
  const app = render(createElement(ApplyView, { snapshot: progress.snapshot(), frame: 0, rows, closed: false }), {
    stdout: screen as unknown as NodeJS.WriteStream,
    debug: true,
    patchConsole: false,
    exitOnCtrlC: false,
  });
  app.unmount();
  await app.waitUntilExit();
  return screen.frames.join('');
}

describe('apply progress on a real plan', () => {
  beforeAll(async () => {
    fleet = fleetCopy();
    ({ plan } = await makePlan({ repo: fleet.repo, ref: 'HEAD', host: 'edge-1', root: fleet.root }));
  });
  afterAll(() => fleet?.cleanup());

  it('GIVEN the start event THEN every resource waits on its unfinished dependencies, or is queued when it has none', () => {
    let t = 1_000;
    const progress = new ApplyProgress(() => t);
    progress.update({ type: 'start', applyId: 'a1', plan, resumed: false });
    const s = progress.snapshot();
    const byAddress = new Map(s.active.map((r) => [r.address, r]));
    expect(byAddress.size).toBe(plan.changes.filter((c) => c.action !== 'noop').length);
    expect(byAddress.get('release.agent-pool')?.state).toBe('queued');
    expect(byAddress.get('unit.agent-pool.pool-canary')).toMatchObject({
      state: 'waiting',
      waitingOn: ['egress.server', 'release.agent-pool'],
    });
    expect(s.finished).toEqual([]);

    // The release runs (spinner row with elapsed time and its latest message), then finishes: its dependents move on.
    progress.update({ type: 'resource-start', address: 'release.agent-pool', action: 'create' });
    t += 1_500;
    progress.update({
      type: 'progress',
      address: 'release.agent-pool',
      message: 'release.agent-pool: materialising agent-pool@1.0.0',
    });
    const running = progress.snapshot().active[0]!;
    expect(running).toMatchObject({
      address: 'release.agent-pool',
      state: 'running',
      elapsedMs: 1_500,
      message: 'materialising agent-pool@1.0.0',
    });
    progress.update({
      type: 'resource-done',
      address: 'release.agent-pool',
      action: 'create',
      ok: true,
      diagnostics: [],
      ms: 1_600,
    });
    const after = progress.snapshot();
    expect(after.finished.map((r) => [r.address, r.state, r.elapsedMs])).toEqual([
      ['release.agent-pool', 'applied', 1_600],
    ]);
    // Its release is done; what it still waits on is the host's egress proxy (every unit's way out, ADR 0016).
    expect(after.active.find((r) => r.address === 'unit.agent-pool.pool-canary')).toMatchObject({
      state: 'waiting',
      waitingOn: ['egress.server'],
    });

    // A failure skips its dependents; a resumed resource counts as finished without running.
    progress.update({ type: 'resource-resumed', address: 'release.research-orchestrator' });
    progress.update({
      type: 'resource-done',
      address: 'unit.agent-pool.pool-canary',
      action: 'create',
      ok: false,
      diagnostics: [{ code: 'systemd.failed', severity: 'error', summary: 'unit failed' }],
      ms: 10,
    });
    progress.update({
      type: 'resource-skipped',
      address: 'unit.agent-pool.pool',
      reason: 'depends on unit.agent-pool.pool-canary',
    });
    const end = progress.snapshot();
    expect(end.finished.map((r) => `${r.address}:${r.state}`)).toEqual([
      'release.agent-pool:applied',
      'release.research-orchestrator:resumed',
      'unit.agent-pool.pool-canary:failed',
      'unit.agent-pool.pool:skipped',
    ]);
    expect(end.active.find((r) => r.address === 'unit.research-orchestrator.research')).toMatchObject({
      state: 'waiting',
      waitingOn: ['egress.server'],
    });
  });

  it('GIVEN a snapshot WHEN ink draws it THEN finished rows, the spinner row and waiting rows show; the live area fits the terminal', async () => {
    const progress = new ApplyProgress(() => 0);
    progress.update({ type: 'start', applyId: 'a1', plan, resumed: false });
    progress.update({ type: 'resource-start', address: 'release.agent-pool', action: 'create' });
    const tall = await draw(progress, 40);
    expect(tall).toMatch(/Applying plan [0-9a-f]{12} to host edge-1 \(apply a1\)/);
    expect(tall).toMatch(/⠋ release\.agent-pool {2}creating {2}0\.0s/);
    expect(tall).toContain('… unit.agent-pool.pool-canary  waiting on egress.server, release.agent-pool');
    expect(tall).toContain('· release.research-orchestrator  queued');

    const active = progress.snapshot().active.length;
    const short = await draw(progress, 6);
    expect(short).toContain(`… and ${active - 2} more`);

    const result: ApplyResult = {
      formatVersion: 1,
      applyId: 'a1',
      host: 'edge-1',
      planId: plan.id,
      commit: null,
      status: 'applied',
      applied: ['release.agent-pool'],
      failed: [],
      skipped: [],
      lock: { lineage: 'l', serial: 3 },
      durationMs: 1_234,
    };
    progress.update({
      type: 'resource-done',
      address: 'release.agent-pool',
      action: 'create',
      ok: true,
      diagnostics: [],
      ms: 1_234,
    });
    progress.update({ type: 'finish', result });
    const done = await draw(progress, 40);
    expect(done).toContain('✓ release.agent-pool  created  1.2s');
    expect(done).toContain('Apply complete: 1 applied, 0 failed, 0 skipped in 1.2s; lockfile serial 3.');
  });
});

describe('isInteractive', () => {
  const tty = { isTTY: true };
  const env = { TERM: 'xterm-256color' };
  it('is true only with both ends on a terminal, no CI, no NO_COLOR, a capable TERM and no --json', () => {
    expect(isInteractive({ json: false, stdin: tty, stdout: tty, env })).toBe(true);
    expect(isInteractive({ json: true, stdin: tty, stdout: tty, env })).toBe(false);
    expect(isInteractive({ json: false, stdin: {}, stdout: tty, env })).toBe(false);
    expect(isInteractive({ json: false, stdin: tty, stdout: { isTTY: false }, env })).toBe(false);
    expect(isInteractive({ json: false, stdin: tty, stdout: tty, env: { ...env, CI: 'true' } })).toBe(false);
    expect(isInteractive({ json: false, stdin: tty, stdout: tty, env: { ...env, CI: '1' } })).toBe(false);
    expect(isInteractive({ json: false, stdin: tty, stdout: tty, env: { ...env, CI: 'false' } })).toBe(true);
    expect(isInteractive({ json: false, stdin: tty, stdout: tty, env: { ...env, NO_COLOR: '1' } })).toBe(false);
    expect(isInteractive({ json: false, stdin: tty, stdout: tty, env: { ...env, NO_COLOR: '' } })).toBe(true);
    expect(isInteractive({ json: false, stdin: tty, stdout: tty, env: { TERM: 'dumb' } })).toBe(false);
  });
});
