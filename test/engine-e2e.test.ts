// End to end on a temporary host root, through the real CLI, real git and the real release providers (issue 3):
// plan → apply → no changes → a hand edit is drift → apply repairs → a promotion commit → rollback restores the
// previous release byte for byte → the audit chain verifies. Run against both state backends (issue 17).

import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { appendFileSync, chmodSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { treeDigest } from '../src/providers/release/index.js';
import { agentvm as run, hasStackTrace } from './support/cli.js';
import { type FleetCopy } from './support/fleet.js';
import { fleetWithStore, sql, STATE_BACKENDS, type Store } from './support/state-backends.js';

let fleet: FleetCopy;
const H = ['--host', 'edge-1'];

function releaseDir(workload: string): string {
  const dir = join(fleet.root, 'var/lib/agentvm/releases', workload);
  return join(dir, readlinkSync(join(dir, 'current')));
}

function json<T>(text: string): T {
  return JSON.parse(text) as T;
}

describe.each(STATE_BACKENDS.filter((k) => !k.skip))(
  'plan/apply/drift/promote/rollback on a temporary host root ($name state backend)',
  (kind) => {
    let store: Store;
    const agentvm = (args: string[]) => run(args, { env: store.env });
    fleetWithStore(kind, (f, s) => {
      fleet = f;
      store = s;
    });

    let firstDigest = '';

    it('GIVEN a fresh root WHEN plan --out THEN every release is a create, and nothing on the host changed', async () => {
      const r = await agentvm([
        'plan',
        '--repo',
        fleet.repo,
        ...H,
        '--root',
        fleet.root,
        '--out',
        join(fleet.base, 'p1.json'),
        '--detailed-exitcode',
      ]);
      expect(r.code, r.stdout + r.stderr).toBe(2);
      expect(r.stdout).toContain('+ release.research-orchestrator');
      expect(r.stdout).toContain('+ release.agent-pool');
      const plan = json<{ changes: Array<{ address: string; action: string }>; applicable: boolean }>(
        readFileSync(join(fleet.base, 'p1.json'), 'utf8'),
      );
      expect(
        plan.changes
          .filter((c) => c.address.startsWith('release.') && c.action === 'create')
          .map((c) => c.address)
          .sort(),
      ).toEqual(['release.agent-pool', 'release.research-orchestrator', 'release.transcript-summarizer']);
      expect(plan.applicable).toBe(true);
      const state = await agentvm(['state', 'list', '--root', fleet.root, '--json']);
      expect(json<{ hosts: unknown[] }>(state.stdout).hosts).toEqual([]);
    });

    it('WHEN the saved plan is applied THEN releases are installed read-only and a re-plan shows no changes', async () => {
      const r = await agentvm(['apply', join(fleet.base, 'p1.json'), '--root', fleet.root]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toContain('Apply complete');
      const dir = releaseDir('research-orchestrator');
      expect(dir.endsWith(fleet.releases['orchestrator-v1']!.commit!)).toBe(true);
      expect(readFileSync(join(dir, 'orchestrator', '__main__.py'), 'utf8')).toContain('healthz');
      firstDigest = (await treeDigest(dir)).digest;
      const again = await agentvm(['plan', '--repo', fleet.repo, ...H, '--root', fleet.root, '--detailed-exitcode']);
      expect(again.code, again.stdout + again.stderr).toBe(0);
      expect(again.stdout).toContain('No changes');
    });

    it('a saved plan is refused once it is stale', async () => {
      const r = await agentvm(['apply', join(fleet.base, 'p1.json'), '--root', fleet.root]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('apply.stale-plan');
      expect(hasStackTrace(r.stderr)).toBe(false);
    });

    it('WHEN a release file is edited by hand THEN drift exits 2 naming the address, and apply repairs it', async () => {
      const file = join(releaseDir('research-orchestrator'), 'orchestrator', '__main__.py');
      chmodSync(file, 0o644);
      appendFileSync(file, '\n# hot fix made by hand\n');
      const drift = await agentvm(['drift', '--repo', fleet.repo, ...H, '--root', fleet.root, '--json']);
      expect(drift.code, drift.stderr).toBe(2);
      const plan = json<{ drift: Array<{ address: string; reasons: Array<{ code: string }> }> }>(drift.stdout);
      expect(plan.drift.map((d) => d.address)).toEqual(['release.research-orchestrator']);
      expect(plan.drift[0]!.reasons.map((x) => x.code)).toContain('live-modified');

      const fix = await agentvm(['apply', '--repo', fleet.repo, ...H, '--root', fleet.root, '--auto-approve']);
      expect(fix.code, fix.stdout + fix.stderr).toBe(0);
      expect(
        readFileSync(join(releaseDir('research-orchestrator'), 'orchestrator', '__main__.py'), 'utf8'),
      ).not.toContain('hot fix');
      expect((await treeDigest(releaseDir('research-orchestrator'))).digest).toBe(firstDigest);
      const after = await agentvm(['drift', '--repo', fleet.repo, ...H, '--root', fleet.root]);
      expect(after.code, after.stdout).toBe(0);
    });

    it('WHEN a promotion is committed THEN plan shows an update and apply moves to the new commit', async () => {
      const v2 = fleet.releases['orchestrator-v2']!;
      const dry = await agentvm([
        'promote',
        'research-orchestrator',
        '--repo',
        fleet.repo,
        '--to',
        'main',
        '--bundle',
        join(fleet.artifacts, v2.bundle),
      ]);
      expect(dry.code, dry.stderr).toBe(0);
      expect(dry.stdout).toContain(`+      commit: ${v2.commit}`);
      expect(fleet.git('status', '--porcelain')).toBe('');
      const yes = await agentvm([
        'promote',
        'research-orchestrator',
        '--repo',
        fleet.repo,
        '--to',
        'main',
        '--bundle',
        join(fleet.artifacts, v2.bundle),
        '--yes',
      ]);
      expect(yes.code, yes.stderr).toBe(0);
      expect(fleet.git('log', '-1', '--format=%s')).toContain(`promote research-orchestrator to ${v2.commit}`);

      const plan = await agentvm(['plan', '--repo', fleet.repo, ...H, '--root', fleet.root, '--json']);
      const p = json<{ changes: Array<{ address: string; action: string; reasons: Array<{ code: string }> }> }>(
        plan.stdout,
      );
      const change = p.changes.find((c) => c.address === 'release.research-orchestrator')!;
      expect(change.action).toBe('update');
      expect(change.reasons.map((r) => r.code)).toContain('source-changed');
      const apply = await agentvm(['apply', '--repo', fleet.repo, ...H, '--root', fleet.root, '--auto-approve']);
      expect(apply.code, apply.stdout + apply.stderr).toBe(0);
      expect(releaseDir('research-orchestrator').endsWith(v2.commit!)).toBe(true);
      expect(readFileSync(join(releaseDir('research-orchestrator'), 'RELEASE'), 'utf8').trim()).toBe('v2');
    });

    it('WHEN rolled back THEN the previous release is restored byte for byte', async () => {
      const dry = await agentvm(['rollback', 'research-orchestrator', ...H, '--root', fleet.root]);
      expect(dry.code).toBe(0);
      expect(dry.stdout).toContain('Dry run');
      expect(releaseDir('research-orchestrator').endsWith(fleet.releases['orchestrator-v2']!.commit!)).toBe(true);

      const r = await agentvm(['rollback', 'research-orchestrator', ...H, '--root', fleet.root, '--auto-approve']);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      const dir = releaseDir('research-orchestrator');
      expect(dir.endsWith(fleet.releases['orchestrator-v1']!.commit!)).toBe(true);
      expect((await treeDigest(dir)).digest).toBe(firstDigest);
      // Byte for byte against the source: every file of the v1 commit, hashed from git itself.
      const bundleRepo = join(fleet.base, 'v1-check');
      execFileSync('git', ['clone', '-q', '--branch', 'v1', join(fleet.artifacts, 'orchestrator.bundle'), bundleRepo]);
      const files = execFileSync('git', ['ls-files'], { cwd: bundleRepo, encoding: 'utf8' }).trim().split('\n');
      for (const f of files) {
        const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
        expect(sha(join(dir, f)), f).toBe(sha(join(bundleRepo, f)));
      }
      const show = await agentvm(['state', 'show', 'edge-1', '--root', fleet.root, '--json']);
      const lock = json<{
        workloads: Record<string, { release: { identity: string }; rollback: { identity: string } }>;
      }>(show.stdout);
      expect(lock.workloads['research-orchestrator']!.release.identity).toBe(fleet.releases['orchestrator-v1']!.commit);
      expect(lock.workloads['research-orchestrator']!.rollback.identity).toBe(
        fleet.releases['orchestrator-v2']!.commit,
      );
    });

    it('the audit log records every action and its hash chain verifies; an edit is detected', async () => {
      const v = await agentvm(['audit', 'verify', '--root', fleet.root, '--json']);
      expect(v.code, v.stdout).toBe(0);
      expect(json<{ ok: boolean; records: number }>(v.stdout).records).toBeGreaterThan(8);
      const tail = await agentvm(['audit', 'tail', '-n', '100', '--root', fleet.root, '--json']);
      const events = json<Array<{ event: string }>>(tail.stdout).map((e) => e.event);
      expect(events).toEqual(
        expect.arrayContaining([
          'apply.start',
          'resource.apply',
          'release.capture',
          'release.rollback',
          'apply.finish',
        ]),
      );
      // An edit of a stored record is detected, wherever the chain is kept.
      const edit = async (from: string, to: string): Promise<void> => {
        if (kind.name === 'postgres') {
          const r = await sql(
            store.env.AGENTVM_PG_URL!,
            `UPDATE agentvm_audit SET line = replace(line, $1, $2) WHERE host = 'edge-1' AND seq = 2 AND line LIKE '%' || $1 || '%'`,
            [from, to],
          );
          expect(r.rowCount).toBe(1);
        } else {
          execFileSync('sh', [
            '-c',
            `sed -i 's/${from}/${to}/' ${JSON.stringify(join(fleet.root, 'var/log/agentvm/audit.jsonl'))}`,
          ]);
        }
      };
      const log = join(fleet.root, 'var/log/agentvm/audit.jsonl');
      const text = kind.name === 'local' ? readFileSync(log, 'utf8') : '';
      await edit('"result":"ok"', '"result":"failed"');
      const bad = await agentvm(['audit', 'verify', '--root', fleet.root]);
      expect(bad.code).toBe(1);
      expect(bad.stderr + bad.stdout).toMatch(/audit\./);
      if (kind.name === 'local') execFileSync('sh', ['-c', `cat > ${JSON.stringify(log)}`], { input: text });
      else await edit('"result":"failed"', '"result":"ok"');
      expect((await agentvm(['audit', 'verify', '--root', fleet.root])).code).toBe(0);
    });
  },
);
