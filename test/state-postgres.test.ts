// The PostgreSQL state backend when PostgreSQL goes away (issue 17), against a real throwaway cluster:
// - killed (pg_ctl stop -m immediate) in the middle of an apply, driven by the count of recorded steps: the apply stops
//   with a clear error, nothing is recorded twice or lost, and the next apply after PostgreSQL returns converges;
// - a lease whose holder lost its connection is taken over after it expires, and the old holder's late writes are
//   refused by its fencing token.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { agentvm, BIN, hasStackTrace, ROOT, type CliResult } from './support/cli.js';
import { type FleetCopy } from './support/fleet.js';
import { fleetWithStore, sql, STATE_BACKENDS, type Store } from './support/state-backends.js';
import { AgentvmError } from '../src/diagnostics/index.js';
import { emptyLockfile, type AuditEvent, type HeldLease } from '../src/state/index.js';
import { PostgresStateBackend } from '../src/state/postgres/backend.js';
import { rejection } from './support/rejection.js';

const kind = STATE_BACKENDS.find((k) => k.name === 'postgres')!;

/** Starts the CLI and resolves when it exits; `whenSteps` runs once the host's audit chain has `n` records. */
function applyUntil(
  store: Store,
  args: string[],
  n: number,
  whenSteps: () => void,
): Promise<CliResult & { triggered: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      env: { ...process.env, NO_COLOR: '1', CI: 'true', ...store.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let triggered = false;
    let done = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const poll = async (): Promise<void> => {
      while (!done && !triggered) {
        const r = await sql(
          store.env.AGENTVM_PG_URL!,
          "SELECT count(*)::int AS n FROM agentvm_audit WHERE host = 'edge-1'",
        ).catch(() => undefined);
        if (((r?.rows[0] as { n: number } | undefined)?.n ?? 0) >= n) {
          triggered = true;
          whenSteps();
          return;
        }
        await new Promise((r2) => setTimeout(r2, 10));
      }
    };
    void poll();
    child.on('error', reject);
    child.on('close', (code, signal) => {
      done = true;
      resolve({ code, signal, stdout, stderr, triggered });
    });
  });
}

describe.skipIf(kind.skip)('PostgreSQL killed mid-apply', () => {
  let fleet: FleetCopy;
  let store: Store;
  fleetWithStore(kind, (f, s) => {
    fleet = f;
    store = s;
  });

  it('stops with a clear error; after PostgreSQL returns the next apply converges with every action recorded exactly once', async () => {
    const args = ['--repo', fleet.repo, '--host', 'edge-1', '--root', fleet.root];
    const cluster = kind.cluster()!;
    let first: Awaited<ReturnType<typeof applyUntil>> | undefined;
    // Driven by counts: PostgreSQL is killed once the apply has recorded 3 audit records (start + a few steps). In the
    // unlikely case the apply finished before the kill landed, start over from nothing.
    for (let attempt = 0; attempt < 3; attempt++) {
      rmSync(fleet.root, { recursive: true, force: true });
      await store.reset();
      first = await applyUntil(store, ['apply', ...args, '--auto-approve', '--concurrency', '1'], 3, () =>
        cluster.stopImmediate(),
      );
      if (first.code !== 0) break;
      if (!cluster.running()) cluster.start();
    }
    expect(first!.triggered).toBe(true);
    // The host had changed before the database went away (a release was installed): a partial apply, exit 3 (ADR 0004).
    expect(first!.code, first!.stdout + first!.stderr).toBe(3);
    expect(first!.stderr).toMatch(/state\.backend-unavailable/);
    expect(first!.stderr).toMatch(/stopped answering/);
    expect(hasStackTrace(first!.stdout + first!.stderr)).toBe(false);
    expect(first!.stderr).not.toMatch(/password/i);

    cluster.start();
    const resume = await agentvm(['apply', ...args, '--auto-approve', '--json'], { env: store.env });
    expect(resume.code, resume.stdout + resume.stderr).toBe(0);
    const plan = await agentvm(['plan', ...args, '--detailed-exitcode'], { env: store.env });
    expect(plan.code, plan.stdout + plan.stderr).toBe(0);
    const verify = await agentvm(['audit', 'verify', '--root', fleet.root, '--json'], { env: store.env });
    expect(verify.code, verify.stdout).toBe(0);

    // Nothing recorded twice, nothing lost: every changed address has exactly one successful resource.apply record,
    // and the lockfile holds every resource the plan has.
    const lines = (
      await sql(store.env.AGENTVM_PG_URL!, "SELECT line FROM agentvm_audit WHERE host = 'edge-1' ORDER BY seq")
    ).rows.map((r) => JSON.parse((r as { line: string }).line) as AuditEvent);
    const applied = lines.filter((e) => e.event === 'resource.apply' && e.result === 'ok').map((e) => e.address!);
    expect(applied.length).toBeGreaterThan(3);
    expect(new Set(applied).size, applied.join('\n')).toBe(applied.length);
    const show = await agentvm(['state', 'show', 'edge-1', '--root', fleet.root, '--json'], { env: store.env });
    const resources = Object.keys((JSON.parse(show.stdout) as { resources: object }).resources).sort();
    const creates = lines
      .filter((e) => e.event === 'resource.apply' && e.result === 'ok' && e.action !== 'delete')
      .map((e) => e.address!)
      .sort();
    expect(resources).toEqual(creates);
  }, 600_000);
});

describe.skipIf(kind.skip)('a lease whose holder lost its connection', () => {
  let store: Store;
  beforeAll(async () => {
    kind.setup();
    store = await kind.store();
  }, 60_000);
  afterAll(async () => {
    await store?.close();
    kind.teardown();
  });

  it("is taken over once it expires, and the old holder's late writes are refused by its fencing token", async () => {
    const cluster = kind.cluster()!;
    const old = store.open() as PostgresStateBackend;
    const oldLease = await old.acquireLease('web-1', 'apply', { leaseMs: 1500, renew: false });
    const base = await old.writeLockfile('web-1', emptyLockfile('web-1'), oldLease);
    const log = await old.beginApply(
      'web-1',
      { applyId: 'a-old', planDigest: 'p', expected: { lineage: base.lineage, serial: 1 } },
      oldLease,
    );

    // The holder loses its connection: the server dies and comes back; the holder's pooled connections are dead.
    cluster.stopImmediate();
    const down = await rejection(old.readLockfile('web-1'));
    expect(down.code).toBe('state.backend-unavailable');
    cluster.start();

    // Another host keeps trying (bounded by attempts, not a clock): refused while the lease lives, taken over after.
    const other = store.open() as PostgresStateBackend;
    let taken: HeldLease | undefined;
    let refusals = 0;
    for (let i = 0; i < 500 && !taken; i++) {
      try {
        taken = await other.acquireLease('web-1', 'apply', { renew: false });
      } catch (error) {
        expect((error as AgentvmError).code).toBe('state.locked');
        refusals++;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    expect(taken, 'the expired lease was never taken over').toBeDefined();
    expect(refusals).toBeGreaterThan(0);
    expect(taken!.tookOver?.id).toBe(oldLease.id);
    expect(Number(await other.leaseToken('web-1'))).toBeGreaterThan(
      Number((oldLease as unknown as { token: string }).token),
    );
    const theirs = await other.writeLockfile('web-1', (await other.readLockfile('web-1'))!, taken!);

    // The old holder comes back and writes late: every path is refused by the fencing token, nothing is changed.
    const late = await rejection(log.append([{ op: 'commit.set', commit: 'c'.repeat(40) }]));
    expect(late.code).toBe('state.lease-lost');
    expect(late.message).toMatch(/fencing token/);
    expect((await rejection(old.writeLockfile('web-1', base, oldLease))).code).toBe('state.lease-lost');
    expect(await other.readLockfile('web-1')).toEqual(theirs);
    await taken!.release();
    await oldLease.release();
  }, 120_000);
});
