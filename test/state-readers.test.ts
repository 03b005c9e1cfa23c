// Issue 21, item 2: readers (plan, drift, state show — all through StateBackend.readLockfile) never observe an
// intermediate state. Two reader processes read the host's state in a tight loop while 50 applies in a row each
// resume the interrupted one before it (beginApply checkpoints its write-ahead log: lockfile rewritten, then the WAL
// replaced — the window in which a reader used to pair an old lockfile with a new WAL) and cross automatic
// checkpoints, each killed after a count of acknowledged batches. Every read must succeed, and the serial a reader
// sees never goes backwards.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { assertBuilt, ROOT } from './support/cli.js';

const RESUMES = 50;
let base: string;

const STATE = JSON.stringify(path.join(ROOT, 'dist', 'state', 'index.js'));
const MODEL = JSON.stringify(path.join(ROOT, 'dist', 'model', 'index.js'));

// Appends batches until killed, printing each acknowledged serial. A few resource slots, so that the WAL is
// checkpointed every 257 batches.
const WRITER = `
import * as state from ${STATE};
import { hostPaths } from ${MODEL};
const [root, applyId] = process.argv.slice(2);
const backend = new state.LocalStateBackend(hostPaths(root));
const lease = await backend.acquireLease('web-1', 'apply', { renew: false });
const log = await backend.beginApply('web-1', { applyId, planDigest: 'same-plan' }, lease);
process.stdout.write(JSON.stringify({ begun: log.serial }) + '\\n');
for (;;) {
  const s = log.serial + 1;
  await log.append([{ op: 'resource.set', entry: { address: 'unit.w.p' + (s % 20), provider: 'systemd', workload: 'w', identity: 'v' + s, digest: 'sha256:' + s, commit: null, appliedAt: new Date().toISOString() } }], { done: 'd' + s });
  process.stdout.write(JSON.stringify({ acked: log.serial }) + '\\n');
}
`;

// Reads until stdin closes, then reports how many reads succeeded and every error (code and message).
const READER = `
import * as state from ${STATE};
import { hostPaths } from ${MODEL};
const [root] = process.argv.slice(2);
let stop = false;
process.stdin.on('data', () => {}).on('end', () => { stop = true; });
const errors = [];
let reads = 0, last = 0, backwards = 0;
while (!stop) {
  for (let i = 0; i < 50; i++) {
    try {
      const lock = await new state.LocalStateBackend(hostPaths(root)).readLockfile('web-1');
      const serial = lock?.serial ?? 0;
      if (serial < last) backwards++;
      last = serial;
      reads++;
    } catch (e) {
      if (errors.length < 20) errors.push((e.code ?? 'error') + ': ' + e.message);
      else errors.push('…');
    }
  }
  await new Promise((r) => setImmediate(r));
}
process.stdout.write(JSON.stringify({ reads, errors, backwards, last }));
`;

function writerRun(root: string, applyId: string, killAfterAcks: number): Promise<{ begun: number; acked: number }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [path.join(base, 'writer.mjs'), root, applyId], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let begun = -1;
    let acked = -1;
    let buffer = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => {
      buffer += d;
      for (let nl = buffer.indexOf('\n'); nl !== -1; nl = buffer.indexOf('\n')) {
        const v = JSON.parse(buffer.slice(0, nl)) as { begun?: number; acked?: number };
        buffer = buffer.slice(nl + 1);
        if (v.begun !== undefined) begun = acked = v.begun;
        if (v.acked !== undefined) acked = v.acked;
        if (begun >= 0 && acked - begun >= killAfterAcks) proc.kill('SIGKILL');
      }
    });
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    proc.on('error', reject);
    proc.on('exit', (_code, signal) =>
      signal === 'SIGKILL'
        ? resolve({ begun, acked })
        : reject(new Error(`writer ended without being killed: ${stderr}`)),
    );
  });
}

function startReader(root: string): {
  proc: ChildProcessWithoutNullStreams;
  done: Promise<{ reads: number; errors: string[]; backwards: number }>;
} {
  const proc = spawn(process.execPath, [path.join(base, 'reader.mjs'), root], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const done = new Promise<{ reads: number; errors: string[]; backwards: number }>((resolve, reject) => {
    proc.on('exit', (code) =>
      code === 0
        ? resolve(JSON.parse(out) as { reads: number; errors: string[]; backwards: number })
        : reject(new Error(`reader exited ${code}: ${err}`)),
    );
  });
  return { proc, done };
}

describe('readers racing resumed applies', () => {
  beforeAll(() => {
    assertBuilt();
    base = mkdtempSync(path.join(os.tmpdir(), 'agentvm-readers-'));
    writeFileSync(path.join(base, 'writer.mjs'), WRITER);
    writeFileSync(path.join(base, 'reader.mjs'), READER);
  });
  afterAll(() => rmSync(base, { recursive: true, force: true }));

  it(`GIVEN two reader loops WHEN ${RESUMES} applies in a row resume the interrupted one THEN every read succeeds and no serial goes backwards`, async () => {
    const root = path.join(base, 'root');
    const readers = [startReader(root), startReader(root)];
    let previous = -1;
    for (let i = 0; i < RESUMES; i++) {
      // Alternate short and long runs: the short ones spend most of their time resuming (checkpoint + new WAL), the
      // long ones cross an automatic checkpoint (257 batches).
      const run = await writerRun(root, `a${i}`, i % 2 === 0 ? 5 : 270);
      expect(run.begun).toBeGreaterThanOrEqual(previous);
      previous = run.acked;
    }
    for (const r of readers) r.proc.stdin.end();
    const results = await Promise.all(readers.map((r) => r.done));
    for (const r of results) {
      expect(r.errors).toEqual([]);
      expect(r.backwards).toBe(0);
      expect(r.reads).toBeGreaterThan(RESUMES);
    }
    console.log(
      `readers: ${results.map((r) => r.reads).join(' + ')} reads, 0 errors, across ${RESUMES} resumed applies (final serial ≥ ${previous})`,
    );
  }, 600_000);
});
