// Crash tests of ApplyLog with real processes: a child appends batches (through automatic checkpoints) and prints
// each acknowledged serial; the parent SIGKILLs it at a random moment and checks that readLockfile sees exactly a
// prefix of the batches that contains every acknowledged one — nothing lost, nothing applied twice — and that the
// next apply takes over from there. Children cannot import TypeScript, so beforeAll compiles src/state (and what it
// imports) with tsc into a temp directory, next to symlinks to schemas/ and node_modules/, as dist/ would resolve.

import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { LocalStateBackend } from './backend.js';
import { hostPaths } from '../model/index.js';
import { MAX_REHEARSALS, type Lockfile } from './lockfile.js';

const run = promisify(execFile);
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const COMMIT = 'c'.repeat(40);
/** Resources the batches overwrite in turn: few, so that the WAL is checkpointed every 257 batches. */
const SLOTS = 40;
let work: string;

// Batch for logical serial s: resource slot s % SLOTS gets identity s, a rehearsal s is added (not idempotent: a
// batch replayed twice would list it twice), the audit head becomes s, and s is marked done.
const CHILD = String.raw`
import * as state from './out/state/index.js';
import { hostPaths } from './out/model/index.js';
const { root, applyId, count } = JSON.parse(process.argv[2]);
const say = (v) => process.stdout.write(JSON.stringify(v) + '\n');
const backend = new state.LocalStateBackend(hostPaths(root));
const lease = await backend.acquireLease('web-1', 'apply', { renew: false });
const log = await backend.beginApply('web-1', { applyId, planDigest: 'p' }, lease);
say({ begun: log.serial, interrupted: log.interrupted?.applyId ?? null });
for (let i = 0; i < count; i++) {
  const s = log.serial + 1;
  const ops = [
    { op: 'resource.set', entry: { address: 'unit.w.p' + (s % ${SLOTS}), provider: 'systemd', workload: 'w', identity: 'v' + s, digest: 'sha256:' + s, commit: '${COMMIT}', appliedAt: new Date().toISOString() } },
    { op: 'rehearsal.add', workload: 'w', rehearsal: { rehearsedAt: new Date().toISOString(), fromIdentity: 'v' + s, toIdentity: 't', result: 'passed' } },
    { op: 'auditHead.set', head: { seq: s, hash: s.toString(16).padStart(64, '0') } },
  ];
  const r = await log.append(ops, { done: 'd' + s });
  say({ acked: r.serial });
}
await log.finish();
say({ finished: log.serial });
`;

beforeAll(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'agentvm-wal-crash-'));
  writeFileSync(
    path.join(work, 'tsconfig.json'),
    JSON.stringify({
      extends: path.join(repo, 'tsconfig.build.json'),
      compilerOptions: {
        rootDir: path.join(repo, 'src'),
        outDir: path.join(work, 'out'),
        typeRoots: [path.join(repo, 'node_modules/@types')],
        incremental: false,
      },
      include: [],
      files: [path.join(repo, 'src/state/index.ts'), path.join(repo, 'src/model/index.ts')],
    }),
  );
  await run(
    process.execPath,
    [path.join(repo, 'node_modules/typescript/bin/tsc'), '-p', path.join(work, 'tsconfig.json')],
    { cwd: repo },
  );
  symlinkSync(path.join(repo, 'schemas'), path.join(work, 'schemas'));
  symlinkSync(path.join(repo, 'node_modules'), path.join(work, 'node_modules'));
  writeFileSync(path.join(work, 'child.mjs'), CHILD);
}, 120_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

interface Run {
  begun: number;
  interrupted: string | null;
  /** The last serial the child printed as acknowledged (its `begun` serial if none). */
  acked: number;
  finished: number | null;
  killed: boolean;
}

/**
 * Runs one apply child. With `killAfterAcks`, SIGKILLs it as soon as it has acknowledged that many batches: driven by
 * the child's own progress (a count), never by a timer, so a loaded machine changes nothing but the duration. Where
 * exactly the kill lands — inside the next append, a checkpoint, between a write and its acknowledgement — varies.
 */
function runChild(root: string, applyId: string, count: number, killAfterAcks: number | null): Promise<Run> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [path.join(work, 'child.mjs'), JSON.stringify({ root, applyId, count })], {
      cwd: work,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const result: Run = { begun: -1, interrupted: null, acked: -1, finished: null, killed: false };
    let buffer = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (d: string) => {
      buffer += d;
      for (let nl = buffer.indexOf('\n'); nl !== -1; nl = buffer.indexOf('\n')) {
        const v = JSON.parse(buffer.slice(0, nl)) as Record<string, unknown>;
        buffer = buffer.slice(nl + 1);
        if ('begun' in v) {
          result.begun = v.begun as number;
          result.acked = result.begun;
          result.interrupted = v.interrupted as string | null;
        }
        if ('acked' in v) result.acked = v.acked as number;
        if ('finished' in v) result.finished = v.finished as number;
        if (
          killAfterAcks !== null &&
          !result.killed &&
          result.begun >= 0 &&
          result.acked - result.begun >= killAfterAcks
        )
          result.killed = proc.kill('SIGKILL');
      }
    });
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    proc.on('error', reject);
    proc.on('exit', (code, signal) => {
      if (signal === 'SIGKILL' || code === 0) resolve(result);
      else reject(new Error(`child exited with ${code}: ${stderr}`));
    });
  });
}

/** The lockfile the first `serial` batches make (serial 0: none), built independently of the code under test. */
function expectBatches(lock: Lockfile | null, serial: number): void {
  if (serial === 0) {
    expect(lock).toBeNull();
    return;
  }
  expect(lock?.serial).toBe(serial);
  expect(lock?.auditHead?.seq).toBe(serial);
  const identities = Object.fromEntries(Object.entries(lock!.resources).map(([a, r]) => [a, r?.identity]));
  const expected: Record<string, string> = {};
  for (let s = 1; s <= serial; s++) expected[`unit.w.p${s % SLOTS}`] = `v${s}`;
  expect(identities).toEqual(expected);
  const rehearsals = Array.from({ length: Math.min(serial, MAX_REHEARSALS) }, (_, k) => `v${serial - k}`);
  expect(lock?.workloads.w?.rehearsals?.map((r) => r.fromIdentity)).toEqual(rehearsals);
}

describe('ApplyLog under SIGKILL', () => {
  it('GIVEN applies killed at random points (through automatic checkpoints) THEN each next read holds every acknowledged batch and no batch twice, and the next apply continues', async () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'agentvm-wal-crash-root-'));
    try {
      let previous: Run | null = null;
      let killedMidway = 0;
      for (let round = 0; round < 12; round++) {
        const r = await runChild(root, `a${round}`, 100_000, 60 + Math.floor(Math.random() * 90));
        expect(r.killed).toBe(true);
        // The next apply found this one's predecessor interrupted, and started from exactly its state.
        if (previous) {
          expect(r.interrupted).toBe(`a${round - 1}`);
          expect(r.begun).toBeGreaterThanOrEqual(previous.acked);
          expect(r.begun).toBeLessThanOrEqual(previous.acked + 1);
        }
        const lock = await new LocalStateBackend(hostPaths(root)).readLockfile('web-1');
        const serial = lock?.serial ?? 0;
        // Every acknowledged batch is there; at most the one being written when the kill came is there too.
        expect(serial).toBeGreaterThanOrEqual(r.acked);
        expect(serial).toBeLessThanOrEqual(r.acked + 1);
        if (serial === r.acked + 1) killedMidway++;
        expectBatches(lock, serial);
        const journal = await new LocalStateBackend(hostPaths(root)).readJournal('web-1');
        expect(journal?.applyId).toBe(`a${round}`);
        previous = r;
      }
      // Enough batches went through to cross automatic checkpoints (every 257 batches here): 12 kills after ≥ 60
      // acknowledged batches each.
      expect(previous!.acked).toBeGreaterThanOrEqual(12 * 60);
      const last = await runChild(root, 'final', 10, null);
      expect(last.interrupted).toBe('a11');
      expect(last.finished).toBe(last.begun + 10);
      const backend = new LocalStateBackend(hostPaths(root));
      expectBatches(await backend.readLockfile('web-1'), last.finished!);
      expect(await backend.readJournal('web-1')).toBeNull();
      console.log(
        `[apply-log crash] 12 kills, final serial ${last.finished}, ${killedMidway} kill(s) landed between a write and its acknowledgement`,
      );
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }, 120_000);
});
