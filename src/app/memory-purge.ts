// `agentvm memory purge <workload>`: deletes the agent memory of a workload that is no longer on the host (ADR 0024).
// Apply never deletes memory: removing a workload keeps its StateDirectory= and the plan says where. This is the
// explicit, audited step that deletes it.
// Invariants:
//   - Refused while the host's lockfile still holds a unit or job of the workload: memory in use is never deleted.
//   - Only the workload's own directory under `agentvm-memory/` is removed, in each scope's layout that has one.

import { lstat, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { userError } from '../diagnostics/index.js';
import type { MemoryPurgeResultDocument } from '../generated/memory-purge-result.js';
import { memoryHostDirs } from '../providers/systemd/data-mounts.js';
import { accountNamed, SYSTEMD_USER_ENV } from '../providers/systemd/systemctl.js';
import { stateBackend } from './plan.js';

export type MemoryPurgeResult = MemoryPurgeResultDocument;

const NAME = /^[a-z][a-z0-9-]{0,62}$/;

export async function purgeMemory(input: { root: string; host: string; workload: string }): Promise<MemoryPurgeResult> {
  if (!NAME.test(input.workload))
    throw userError(
      'memory.invalid-workload',
      `\`${input.workload}\` is not a workload name.`,
      'A workload name is a DNS label (lowercase letters, digits, dashes).',
    );
  const lock = await stateBackend(input.root).readLockfile(input.host);
  const inUse = Object.keys(lock?.resources ?? {}).filter(
    (a) => a.startsWith(`unit.${input.workload}.`) || a.startsWith(`job.${input.workload}.`),
  );
  if (inUse.length > 0) {
    throw userError(
      'memory.workload-present',
      `Workload \`${input.workload}\` is still on host \`${input.host}\` (${inUse.join(', ')}): its memory is in use.`,
      `Remove it from the host file's spec.workloads and apply first; the plan then says where its memory is kept. Nothing was deleted.`,
    );
  }
  const removed: string[] = [];
  for (const dir of candidateDirs(input.root, input.workload)) {
    if (!(await lstat(dir).catch(() => null))) continue;
    await rm(dir, { recursive: true, force: true });
    removed.push(dir);
  }
  if (removed.length > 0) {
    await stateBackend(input.root).appendAudit({
      host: input.host,
      operation: 'memory purge',
      event: 'memory.purge',
      result: 'ok',
      detail: `deleted the memory of workload ${input.workload}: ${removed.join(', ')}`,
    });
  }
  return { formatVersion: 1, host: input.host, workload: input.workload, removed };
}

/** Where the workload's memory can be: system scope under the root, user scope under the gateways' account. */
function candidateDirs(root: string, workload: string): string[] {
  const r = path.resolve(root);
  const system = memoryHostDirs(
    { scope: 'system', mode: 'offline', unitDir: path.join(r, 'etc/systemd/system'), managerRoot: r },
    workload,
  );
  const named = process.env[SYSTEMD_USER_ENV];
  let home: string;
  try {
    home = named ? accountNamed(named).home : os.userInfo().homedir;
  } catch {
    return system;
  }
  const user = memoryHostDirs(
    { scope: 'user', mode: 'online', unitDir: path.join(home, '.config/systemd/user'), managerRoot: '/' },
    workload,
  );
  return [...system, ...user];
}
