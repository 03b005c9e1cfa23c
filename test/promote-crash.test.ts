// Issue 21, item 6: promote is as crash-safe as apply and rollback. `promote` is SIGKILLed at its 1st, 2nd, 3rd, …
// durable step (AGENTVM_FAULT_KILL_AFTER, counted, never timed) until one completes; the directions alternate
// (v1 → v2, then v2 → v1) so every kill point starts from a clean, applied host. After every kill the next promote
// converges — never `promote.dirty` from its own half-done change, no `.git/index.lock` or ref lock left behind, a clean
// working tree whose manifest pins the target — and the apply that carries it out leaves the target live with the
// release it replaced as the rollback target, the audit chain verifying. A second part kills git itself (strace
// `-f` injects SIGKILL at the n-th rename/link/fsync/write of agentvm and its git children) and checks the same.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { agentvm, assertBuilt, BIN, hasStackTrace, type CliResult } from './support/cli.js';
import { fleetCopy, type FleetCopy } from './support/fleet.js';

const W = 'research-orchestrator';
const H = ['--host', 'edge-1'];
const HAS_STRACE = spawnSync('strace', ['-V']).status === 0;

let fleet: FleetCopy;

/** agentvm under strace, which SIGKILLs whichever process (agentvm or a git child) makes the n-th call of `syscall`. */
function straced(syscall: string, n: number, args: string[]): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      'strace',
      [
        '-f',
        '-qq',
        '-o',
        '/dev/null',
        '-e',
        `trace=${syscall}`,
        '-e',
        `inject=${syscall}:signal=KILL:when=${n}`,
        process.execPath,
        BIN,
        ...args,
      ],
      {
        env: { ...process.env, NO_COLOR: '1', CI: 'true' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

function git(...args: string[]): string {
  return execFileSync('git', args, { cwd: fleet.repo, encoding: 'utf8' });
}

/** The release ids in the order of this walk's directions. */
function release(version: 'v1' | 'v2'): { commit: string; bundle: string } {
  const r = fleet.releases[`orchestrator-${version}`]!;
  return { commit: r.commit!, bundle: join(fleet.artifacts, r.bundle) };
}

function promoteArgs(to: 'v1' | 'v2'): string[] {
  const r = release(to);
  return ['promote', W, '--repo', fleet.repo, '--to', r.commit, '--bundle', r.bundle, '--yes'];
}

/** Nothing of agentvm's or git's is left in .git: no index or ref lock, no journal, no private index. */
function gitLeftovers(): string[] {
  const gitDir = join(fleet.repo, '.git');
  const found = readdirSync(gitDir).filter(
    (n) => n.endsWith('.lock') || n.startsWith('agentvm-promote') || n.startsWith('.agentvm-promote'),
  );
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(dir, e.name));
      else if (e.name.endsWith('.lock')) found.push(join(dir, e.name));
    }
  };
  walk(join(gitDir, 'refs'));
  return found;
}

async function lockState(): Promise<{ release: string; rollback: string | undefined }> {
  const show = await agentvm(['state', 'show', 'edge-1', '--root', fleet.root, '--json']);
  expect(show.code, show.stderr).toBe(0);
  const lock = JSON.parse(show.stdout) as {
    workloads: Record<string, { release: { identity: string }; rollback?: { identity: string } }>;
  };
  return { release: lock.workloads[W]!.release.identity, rollback: lock.workloads[W]!.rollback?.identity };
}

/** After a kill: the next promote converges, and the apply carrying it out keeps audit and rollback target intact. */
async function convergeAndApply(to: 'v1' | 'v2', from: 'v1' | 'v2', where: string): Promise<void> {
  const retry = await agentvm(promoteArgs(to));
  expect(hasStackTrace(retry.stdout + retry.stderr), where).toBe(false);
  expect(retry.code, `${where}: ${retry.stdout}${retry.stderr}`).toBe(0);
  expect(gitLeftovers(), where).toEqual([]);
  expect(git('status', '--porcelain'), where).toBe('');
  expect(git('show', `HEAD:workloads/${W}/manifest.yaml`), where).toContain(release(to).commit);
  expect(readFileSync(join(fleet.repo, 'workloads', W, 'manifest.yaml'), 'utf8'), where).toContain(release(to).commit);
  const again = await agentvm([...promoteArgs(to), '--json']);
  expect(again.code, `${where}: ${again.stderr}`).toBe(0);
  expect(
    (JSON.parse(again.stdout) as { committed: boolean }).committed,
    `${where}: a second promote has nothing left to do`,
  ).toBe(false);
  const apply = await agentvm(['apply', '--repo', fleet.repo, ...H, '--root', fleet.root, '--auto-approve']);
  expect(apply.code, `${where}: ${apply.stdout}${apply.stderr}`).toBe(0);
  expect(await lockState(), where).toEqual({ release: release(to).commit, rollback: release(from).commit });
  const verify = await agentvm(['audit', 'verify', '--root', fleet.root]);
  expect(verify.code, `${where}: ${verify.stdout}${verify.stderr}`).toBe(0);
}

describe('promote survives SIGKILL at every step', () => {
  beforeAll(async () => {
    assertBuilt();
    fleet = fleetCopy();
    const first = await agentvm(['apply', '--repo', fleet.repo, ...H, '--root', fleet.root, '--auto-approve']);
    expect(first.code, first.stderr).toBe(0);
  }, 300_000);
  afterAll(() => fleet?.cleanup());

  it('kills at step 1, 2, 3, … until a promote completes; every time the next promote and apply converge', async () => {
    let killedAt = 0;
    let current: 'v1' | 'v2' = 'v1';
    for (let step = 1; step <= 30; step++) {
      const to: 'v1' | 'v2' = current === 'v1' ? 'v2' : 'v1';
      const head = git('rev-parse', 'HEAD').trim();
      const crashed = await agentvm(promoteArgs(to), { env: { AGENTVM_FAULT_KILL_AFTER: String(step) } });
      if (crashed.signal !== 'SIGKILL') {
        expect(crashed.code, crashed.stdout + crashed.stderr).toBe(0);
        await convergeAndApply(to, current, `after the promote that completed (step ${step})`);
        break;
      }
      killedAt = step;
      const where = `after a kill at step ${step} (${current} → ${to})`;
      const moved = git('rev-parse', 'HEAD').trim() !== head;
      // Before the ref moves nothing the user sees has changed; after it, the journal finishes the change.
      if (!moved) expect(git('status', '--porcelain'), where).toBe('');
      // An apply run before any promote converges to the commit the branch names (plan/apply read commits, never
      // the half-written working tree), with the audit chain intact.
      const early = await agentvm(['apply', '--repo', fleet.repo, ...H, '--root', fleet.root, '--auto-approve']);
      expect(early.code, `${where}, apply: ${early.stdout}${early.stderr}`).toBe(0);
      expect((await lockState()).release, where).toBe(release(moved ? to : current).commit);
      expect((await agentvm(['audit', 'verify', '--root', fleet.root])).code, where).toBe(0);
      await convergeAndApply(to, current, where);
      current = to;
    }
    expect(killedAt).toBeGreaterThanOrEqual(5);
  }, 1_200_000);

  it.skipIf(!HAS_STRACE && process.env.CI !== 'true')(
    'kills agentvm or its git at the n-th rename, link, fsync or write; the next promote converges without a hand-deleted file',
    async () => {
      if (!HAS_STRACE) throw new Error('strace is required for this test (apt-get install strace).');
      let current: 'v1' | 'v2' = (await lockState()).release === release('v1').commit ? 'v1' : 'v2';
      const head = git('show', `HEAD:workloads/${W}/manifest.yaml`);
      if (!head.includes(release(current).commit))
        throw new Error('the repository and the host disagree before the strace walk');
      const kills: Record<string, number> = {};
      /** Kills after which a lock, journal or temp file was left for the next promote to clean up. */
      let leftBehind = 0;
      for (const syscall of ['rename', 'link', 'fsync', 'write']) {
        kills[syscall] = 0;
        for (let n = 1; n <= 60; n++) {
          const to: 'v1' | 'v2' = current === 'v1' ? 'v2' : 'v1';
          const killed = await straced(syscall, n, promoteArgs(to));
          const where = `after a kill at ${syscall} #${n} (${current} → ${to})`;
          // Killed agentvm: SIGKILL; killed git child: agentvm reports the failed git command (exit 1), no stack trace.
          const done = killed.code === 0;
          if (!done) kills[syscall]++;
          if (!done && (gitLeftovers().length > 0 || git('status', '--porcelain') !== '')) leftBehind++;
          expect(hasStackTrace(killed.stdout + killed.stderr), where).toBe(false);
          await convergeAndApply(to, current, where);
          current = to;
          if (done) break;
        }
      }
      // Every syscall was a kill point at least once, and some kills left work behind that the next promote had to finish.
      expect(
        Object.values(kills).every((n) => n >= 1),
        JSON.stringify(kills),
      ).toBe(true);
      expect(leftBehind).toBeGreaterThanOrEqual(1);
    },
    3_600_000,
  );
  it("GIVEN a promote killed after its commit and the manifest then edited by hand THEN the next promote finishes the index but keeps the user's edit (promote.dirty); GIVEN a live writer's journal THEN promote refuses it", async () => {
    const pinned = git('show', `HEAD:workloads/${W}/manifest.yaml`);
    const to: 'v1' | 'v2' = pinned.includes(release('v1').commit) ? 'v2' : 'v1';
    // Kill point 2 is just after the ref moved (1: journal written, 2: branch updated).
    const crashed = await agentvm(promoteArgs(to), { env: { AGENTVM_FAULT_KILL_AFTER: '2' } });
    expect(crashed.signal).toBe('SIGKILL');
    expect(git('show', `HEAD:workloads/${W}/manifest.yaml`)).toContain(release(to).commit);
    const manifest = join(fleet.repo, 'workloads', W, 'manifest.yaml');
    const edited = `${readFileSync(manifest, 'utf8')}# an operator's edit after the crash\n`;
    writeFileSync(manifest, edited);
    const retry = await agentvm(promoteArgs(to));
    expect(retry.code, retry.stdout + retry.stderr).toBe(1);
    expect(retry.stderr).toContain('promote.dirty');
    expect(hasStackTrace(retry.stderr)).toBe(false);
    expect(readFileSync(manifest, 'utf8')).toBe(edited);
    expect(gitLeftovers()).toEqual([]);
    git('checkout', '--', `workloads/${W}/manifest.yaml`);
    expect(git('status', '--porcelain')).toBe('');

    // A journal whose writer is alive (this test process) is a running promote: refused, nothing touched.
    const head = git('rev-parse', 'HEAD').trim();
    const me = {
      pid: process.pid,
      bootId: readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(),
      pidNamespace: statSync('/proc/self/ns/pid').ino,
    };
    const journal = join(fleet.repo, '.git', 'agentvm-promote.json');
    writeFileSync(
      journal,
      JSON.stringify({ formatVersion: 1, holder: me, ref: 'refs/heads/main', base: head, commit: head, files: [] }),
    );
    const refused = await agentvm(promoteArgs(to === 'v1' ? 'v2' : 'v1'));
    expect(refused.code, refused.stdout + refused.stderr).toBe(1);
    expect(refused.stderr).toContain('promote.in-progress');
    expect(git('rev-parse', 'HEAD').trim()).toBe(head);
    expect(existsSync(journal)).toBe(true);
    rmSync(journal);
  }, 300_000);
});
