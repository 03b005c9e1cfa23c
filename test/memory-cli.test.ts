// Agent memory through the CLI flows (ADR 0024), against a real user manager: a file in a profile's memory
// ($STATE_DIRECTORY) is there, seen from inside the unit's own mount namespace (/proc/<pid>/root), after a restart,
// after a promotion to a new release is applied, and after `agentvm rollback`; each time a new process runs with the
// same STATE_DIRECTORY. Removing the workload from the host keeps the memory and the plan says where; `agentvm memory
// purge` deletes it. The promotion is the commit `agentvm promote --yes` makes (the manifest's commit moves to v2).
import { existsSync, readFileSync, writeFileSync, chownSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt } from './support/cli.js';
import {
  execdPid,
  freePort,
  gatewayRepo,
  getJson,
  hostFile,
  orchestratorFiles,
  V1,
  V2,
  type GatewayRepo,
  type ProfileSpec,
} from './support/gateway-repo.js';
import { startUserManager, userManagerSupport, type UserManager } from './support/systemd-user.js';

const support = userManagerSupport();
const inCi = process.env.CI === 'true';
if (!support.ok && !inCi) console.warn(`memory-cli: skipping: ${support.reason}. ${support.howTo}`);

const UNIT = 'agent-gateway@core.service';

describe.skipIf(!support.ok && !inCi)(
  'agent memory survives restart, promotion and rollback (CLI, real user manager)',
  () => {
    let m: UserManager;
    let g: GatewayRepo;
    let profiles: ProfileSpec[];
    let port = 0;
    const memoryDir = () => path.join(m.home, '.config/agentvm-memory/orchestrator/core');

    /** The memory file as the running unit sees it, and the STATE_DIRECTORY its main process got. */
    async function seenFromInside(): Promise<{ pid: number; stateDirectory: string | undefined; memory: string }> {
      const pid = await execdPid(m, UNIT);
      const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      const stateDirectory = env.find((e) => e.startsWith('STATE_DIRECTORY='))?.slice('STATE_DIRECTORY='.length);
      const memory = readFileSync(
        path.join(`/proc/${pid}/root`, stateDirectory ?? '/nonexistent', 'notes.txt'),
        'utf8',
      );
      return { pid, stateDirectory, memory };
    }

    beforeAll(async () => {
      assertBuilt();
      m = await startUserManager();
      port = await freePort();
      profiles = [{ name: 'core', port }];
      g = await gatewayRepo('memory-cli', m, (s) => ({
        ...hostFile(['orchestrator']),
        ...orchestratorFiles({ tier: 'low', commit: V1, profiles }, s),
      }));
    }, 120_000);

    afterAll(async () => {
      await m?.stop();
      await g?.cleanup();
    });

    it('GIVEN an applied profile with a note in its memory WHEN restarted, promoted and rolled back THEN each new process sees the note', async () => {
      const first = await g.cli(['apply', '--auto-approve']);
      expect(first.code, first.stdout + first.stderr).toBe(0);
      expect(existsSync(memoryDir())).toBe(true);
      const note = path.join(memoryDir(), 'notes.txt');
      writeFileSync(note, 'what the agent learned in v1\n');
      chownSync(note, m.uid, m.gid);
      const before = await seenFromInside();
      expect(before.stateDirectory).toBe(memoryDir());
      expect(before.memory).toBe('what the agent learned in v1\n');

      expect((await m.systemctl(['restart', UNIT])).code).toBe(0);
      const restarted = await seenFromInside();
      expect(restarted.pid).not.toBe(before.pid);
      expect(restarted.memory).toBe('what the agent learned in v1\n');

      await g.repo.commitFiles(
        orchestratorFiles({ tier: 'low', commit: V2, profiles }, g.secretsDir),
        'promote orchestrator to v2',
      );
      const promoted = await g.cli(['apply', '--auto-approve']);
      expect(promoted.code, promoted.stdout + promoted.stderr).toBe(0);
      expect((await getJson(port)).body.release).toBe('v2');
      const onV2 = await seenFromInside();
      expect(onV2.pid).not.toBe(restarted.pid);
      expect(onV2.stateDirectory).toBe(memoryDir());
      expect(onV2.memory).toBe('what the agent learned in v1\n');

      const rolledBack = await g.cli(['rollback', 'orchestrator', '--host', 'gw', '--auto-approve']);
      expect(rolledBack.code, rolledBack.stdout + rolledBack.stderr).toBe(0);
      expect((await getJson(port)).body.release).toBe('dev');
      const onV1 = await seenFromInside();
      expect(onV1.pid).not.toBe(onV2.pid);
      expect(onV1.memory).toBe('what the agent learned in v1\n');
    }, 300_000);

    it('WHEN the workload is removed from the host THEN the plan says its memory is kept and where, and apply keeps it', async () => {
      await g.repo.commitFiles(
        { 'hosts/gw.yaml': (hostFile([])['hosts/gw.yaml'] as string).replace('  workloads:\n', '  workloads: []\n') },
        'remove orchestrator from gw',
      );
      const plan = await g.cli(['plan']);
      expect(plan.stdout).toContain(`its memory is kept at ${memoryDir()}`);
      expect(plan.stdout).toContain('agentvm memory purge orchestrator');
      const removed = await g.cli(['apply', '--auto-approve']);
      expect(removed.code, removed.stdout + removed.stderr).toBe(0);
      expect(readFileSync(path.join(memoryDir(), 'notes.txt'), 'utf8')).toBe('what the agent learned in v1\n');
      // Only the explicit command deletes it.
      const purged = await g.cli(['memory', 'purge', 'orchestrator', '--host', 'gw']);
      expect(purged.code, purged.stdout + purged.stderr).toBe(0);
      expect(purged.stdout).toContain(path.join(m.home, '.config/agentvm-memory/orchestrator'));
      expect(existsSync(memoryDir())).toBe(false);
    }, 180_000);
  },
);
