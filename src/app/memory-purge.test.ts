import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { hostPaths } from '../model/index.js';
import { LocalStateBackend } from '../state/backend.js';
import { emptyLockfile, withResource } from '../state/lockfile.js';
import { purgeMemory } from './memory-purge.js';

let root: string;
const saved = process.env.AGENTVM_SYSTEMD_USER;
beforeEach(() => {
  root = mkdtempSync(path.join(os.tmpdir(), 'agentvm-memory-purge-'));
  // No user-scope account: only the system-scope layout under the root is looked at (never the invoking user's home).
  process.env.AGENTVM_SYSTEMD_USER = 'agentvm-test-no-such-account';
});
afterEach(() => {
  rmSync(root, { recursive: true, force: true });
  if (saved === undefined) delete process.env.AGENTVM_SYSTEMD_USER;
  else process.env.AGENTVM_SYSTEMD_USER = saved;
});

function memory(workload: string): string {
  const dir = path.join(root, 'var/lib/private/agentvm-memory', workload, 'analyst');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'memory.txt'), 'remembered');
  return dir;
}

async function lockfileWith(addresses: string[]): Promise<void> {
  const backend = new LocalStateBackend(hostPaths(root));
  const lease = await backend.acquireLease('edge-1', 'apply', { renew: false });
  let lock = emptyLockfile('edge-1');
  for (const address of addresses)
    lock = withResource(lock, {
      address,
      provider: 'systemd',
      workload: address.split('.')[1]!,
      identity: 'x',
      digest: 'sha256:d',
      commit: null,
      appliedAt: '2026-01-01T00:00:00.000Z',
    });
  const before = await backend.readLockfile('edge-1');
  await backend.writeLockfile(
    'edge-1',
    before ? { ...lock, lineage: before.lineage, serial: before.serial } : lock,
    lease,
  );
  lease.release();
}

describe('agentvm memory purge', () => {
  it('refuses while the workload is on the host and deletes nothing; afterwards deletes only that workload, audited', async () => {
    const research = memory('research');
    const other = memory('other');
    await lockfileWith(['unit.research.analyst', 'unit.other.analyst']);
    await expect(purgeMemory({ root, host: 'edge-1', workload: 'research' })).rejects.toMatchObject({
      code: 'memory.workload-present',
    });
    expect(existsSync(research)).toBe(true);

    await lockfileWith(['unit.other.analyst']);
    const result = await purgeMemory({ root, host: 'edge-1', workload: 'research' });
    expect(result.removed).toEqual([path.join(root, 'var/lib/private/agentvm-memory/research')]);
    expect(existsSync(research)).toBe(false);
    expect(existsSync(other)).toBe(true);
    const audit = await new LocalStateBackend(hostPaths(root)).tailAudit(1);
    expect(audit[0]).toMatchObject({ operation: 'memory purge', event: 'memory.purge', host: 'edge-1' });
  });

  it('refuses a name that is not a workload (no path tricks)', async () => {
    await expect(purgeMemory({ root, host: 'edge-1', workload: '../state' })).rejects.toMatchObject({
      code: 'memory.invalid-workload',
    });
  });
});
