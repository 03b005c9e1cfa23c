// Issue 21, item 0: a process killed while taking over a stale lease must never wedge the host. A writer takes over a
// stale host lease and a stale audit append lock (both left by dead processes), audits, and releases; strace SIGKILLs
// it at the n-th call of each syscall on that path (`-e inject=<syscall>:signal=KILL:when=n`), for n = 1, 2, … until
// the writer completes. After every kill the next writer must succeed on its own — no file to delete by hand — leave
// no temp file, marker or moved-aside copy behind, audit its takeover, and the audit log must verify.
// Kills are driven by syscall counts, never by timing.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { assertBuilt, ROOT } from './support/cli.js';
import { hostPaths } from '../src/model/index.js';
import { verifyAuditLog, type AuditEvent } from '../src/state/audit-log.js';

const HAS_STRACE = spawnSync('strace', ['-V']).status === 0;
const SYSCALLS = [
  'link',
  'rename',
  'unlink',
  'fsync',
  'fdatasync',
  'ftruncate',
  'write',
  'mkdir',
  'getdents64',
  'openat',
];

let base: string;
let child: string;

const WRITER = (dist: string) => `
import { LocalStateBackend } from ${JSON.stringify(path.join(dist, 'state', 'index.js'))};
import { hostPaths } from ${JSON.stringify(path.join(dist, 'model', 'index.js'))};
const [root, host] = process.argv.slice(2);
const backend = new LocalStateBackend(hostPaths(root));
const lease = await backend.acquireLease(host, 'apply', { renew: false });
await backend.appendAudit({ host, operation: 'apply', event: 'resource.apply', result: 'ok', detail: 'written under the lease' });
lease.release();
process.stdout.write(JSON.stringify({ ok: true, tookOver: lease.tookOver?.id ?? null }));
`;

function run(
  cmd: string,
  args: string[],
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

function deadPid(): number {
  return Number(
    spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout,
  );
}

/** A lease of a process of this boot and pid namespace that has exited: provably dead, so stale at once. */
function deadLease(host: string, operation: string): Record<string, unknown> {
  const now = Date.now();
  return {
    id: randomUUID(),
    who: 'gone@here',
    operation,
    host,
    pid: deadPid(),
    hostname: os.hostname(),
    created: new Date(now - 1000).toISOString(),
    expires: new Date(now + 600_000).toISOString(),
    bootId: readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(),
    pidNamespace: statSync('/proc/self/ns/pid').ino,
  };
}

/** A root whose host lease and audit append lock are held by dead processes (what a killed apply leaves). */
function staleRoot(): { root: string; leaseId: string } {
  const root = mkdtempSync(path.join(base, 'root-'));
  const paths = hostPaths(root);
  mkdirSync(paths.state, { recursive: true });
  mkdirSync(paths.audit, { recursive: true });
  const lease = deadLease('edge-1', 'apply');
  const auditLock = deadLease('edge-1', 'audit-append');
  writeFileSync(path.join(paths.state, 'edge-1.lease.json'), JSON.stringify(lease));
  writeFileSync(path.join(paths.audit, 'audit.jsonl.lock'), JSON.stringify(auditLock));
  return { root, leaseId: lease.id as string };
}

/** Files under the state and audit directories that are neither state nor log: what a killed writer may leave. */
function leftovers(root: string): string[] {
  const paths = hostPaths(root);
  const names = [
    ...readdirSync(paths.state).map((n) => `state/${n}`),
    ...readdirSync(paths.audit).map((n) => `audit/${n}`),
  ];
  // The audit log and the root's host claim (ADR 0015) are state; anything else is a leftover.
  return names.filter((n) => !['audit/audit.jsonl', 'state/root-host.json'].includes(n));
}

describe.skipIf(!HAS_STRACE && process.env.CI !== 'true')(
  'lease and audit-lock takeover killed at every syscall (strace fault injection)',
  () => {
    beforeAll(() => {
      if (!HAS_STRACE) throw new Error('strace is required for this test (apt-get install strace).');
      assertBuilt();
      base = mkdtempSync(path.join(os.tmpdir(), 'agentvm-takeover-kill-'));
      child = path.join(base, 'writer.mjs');
      writeFileSync(child, WRITER(path.join(ROOT, 'dist')));
    });
    afterAll(() => rmSync(base, { recursive: true, force: true }));

    it('GIVEN a killed writer at the n-th call of each syscall THEN the next writer takes over by itself, audits it, and leaves nothing behind', async () => {
      const kills: Record<string, number> = {};
      for (const syscall of SYSCALLS) {
        kills[syscall] = 0;
        for (let n = 1; n <= 400; n++) {
          const { root, leaseId } = staleRoot();
          const killed = await run('strace', [
            '-f',
            '-qq',
            '-o',
            '/dev/null',
            '-e',
            `trace=${syscall}`,
            '-e',
            `inject=${syscall}:signal=KILL:when=${n}`,
            process.execPath,
            child,
            root,
            'edge-1',
          ]);
          const wasKilled = killed.signal === 'SIGKILL' || killed.code === 137;
          const where = `${syscall} #${n}`;
          if (!wasKilled) {
            // Fewer calls of this syscall than n: the writer ran to the end, and every earlier call was a kill point.
            expect(killed.code, `${where}: ${killed.stdout}${killed.stderr}`).toBe(0);
            expect(JSON.parse(killed.stdout)).toEqual({ ok: true, tookOver: leaseId });
            rmSync(root, { recursive: true, force: true });
            break;
          }
          kills[syscall]++;
          const next = await run(process.execPath, [child, root, 'edge-1']);
          expect(next.code, `after a kill at ${where}: ${next.stdout}${next.stderr}`).toBe(0);
          const result = JSON.parse(next.stdout) as { ok: boolean; tookOver: string | null };
          expect(leftovers(root), `after a kill at ${where}`).toEqual([]);
          const log = path.join(hostPaths(root).audit, 'audit.jsonl');
          const verified = await verifyAuditLog(log);
          expect(verified.diagnostics, `after a kill at ${where}`).toEqual([]);
          const records = readFileSync(log, 'utf8')
            .trim()
            .split('\n')
            .map((l) => JSON.parse(l) as AuditEvent);
          const takeovers = records.filter((r) => r.event === 'lease.takeover').map((r) => r.detail ?? '');
          // The next writer took over whatever lease it found (the dead one, or the killed writer's own): audited.
          if (result.tookOver)
            expect(
              takeovers.some((d) => d.includes(result.tookOver!)),
              `after a kill at ${where}: ${takeovers.join(' | ')}`,
            ).toBe(true);
          // The dead holder's audit append lock was taken over by the killed writer or by the next one: recorded either way.
          expect(
            takeovers.some((d) => d.includes('audit append lock')),
            `after a kill at ${where}: ${takeovers.join(' | ')}`,
          ).toBe(true);
          rmSync(root, { recursive: true, force: true });
        }
      }
      // Each syscall on the path was hit at least once (the writer links, renames, unlinks, fsyncs and writes).
      for (const s of ['link', 'rename', 'unlink', 'fsync', 'write', 'openat'])
        expect(kills[s], `${s}: ${JSON.stringify(kills)}`).toBeGreaterThan(0);
      console.log(`kill points per syscall: ${JSON.stringify(kills)}`);
    }, 1_800_000);
  },
);
