// Teardown of one job run, for its owner at the end of a run and for the reaper (plan/apply) after the owner died:
// kill every process of the run, delete its network namespace (and the tap in it), remove its scratch directory,
// release its network slot, remove its record last — and describe what was done in a receipt for the audit log.
//
// Invariants:
// - Idempotent: tearing down a run that is partly or wholly gone does what is left and succeeds.
// - The processes of a run are found by what they cannot hide from the host: their command line mentions the run
//   directory (the VMM's -initrd path, the proxy helper's marker argument), or they live in the run's namespace
//   (their /proc/<pid>/ns/net is the namespace's inode, as `ip netns pids` checks). A recorded pid alone is never
//   trusted (pids are reused).
// - The record is removed only when everything else is gone; a failed teardown keeps it, so the run is still listed
//   and the next reap tries again.

import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import type { HostPaths } from '../provider.js';
import { deleteJobNetwork } from './job-network.js';
import { releaseSlot, runAddress, runDirOf, vmDirOf, type JobRunRecord } from './job-registry.js';

/**
 * Why the run is torn down. `finished`: the job reported an exit status (any); `failed`: it could not run or stopped
 * without one; `timed-out`, `interrupted`: its owner killed it. `owner-gone`, `past-deadline`: reaped as an orphan.
 */
export type TeardownReason = 'finished' | 'failed' | 'timed-out' | 'interrupted' | 'owner-gone' | 'past-deadline';

export interface TeardownReceipt {
  runId: string;
  /** The run's address in plans, `job.<workload>.<job>.<runId>`. */
  address: string;
  reason: TeardownReason;
  /** Pids that were still running and were killed (the VMM, a stranded helper); empty when all had exited. */
  killed: number[];
  netns: string | null;
  netnsDeleted: boolean;
  tapDeleted: boolean;
  scratchRemoved: boolean;
  /** Everything of the run is gone, including its record. */
  ok: boolean;
  problems: string[];
  durationMs: number;
}

const KILL_WAIT_MS = 5_000;

export async function teardownRun(
  paths: HostPaths,
  record: JobRunRecord,
  reason: TeardownReason,
): Promise<TeardownReceipt> {
  const started = performance.now();
  const problems: string[] = [];
  const runDir = runDirOf(paths, record.id);

  const killed = await killRunProcesses(runDir, record.netns);
  const survivors = await waitGone(killed, KILL_WAIT_MS);
  if (survivors.length > 0) problems.push(`process(es) ${survivors.join(', ')} did not exit after SIGKILL`);

  // The network (then its slot) and the scratch directory are independent: removed side by side (ADR 0028).
  let netnsDeleted = false;
  let tapDeleted = false;
  let scratchRemoved = false;
  const removeNetwork = async (): Promise<void> => {
    if (record.netns !== null) {
      const network = await deleteJobNetwork(record.netns);
      netnsDeleted = network.netnsDeleted;
      tapDeleted = network.tapDeleted;
      problems.push(...network.problems);
    }
    // After the namespace: a slot is handed out again only once its namespace is gone (or its deletion failed and
    // is reported; a namespace's addresses are its own, so a reused slot cannot reach it either way).
    if (record.slot !== null)
      await releaseSlot(paths, record.slot).catch((error: Error) =>
        problems.push(`releasing network slot ${record.slot}: ${error.message}`),
      );
  };
  const removeScratch = async (): Promise<void> => {
    try {
      await rm(vmDirOf(paths, record.id), { recursive: true, force: true });
      scratchRemoved = true;
    } catch (error) {
      problems.push(`removing ${vmDirOf(paths, record.id)}: ${(error as Error).message}`);
    }
  };
  await Promise.all([removeNetwork(), removeScratch()]);
  if (problems.length === 0) {
    try {
      await rm(runDir, { recursive: true, force: true });
    } catch (error) {
      problems.push(`removing ${runDir}: ${(error as Error).message}`);
    }
  }
  return {
    runId: record.id,
    address: runAddress(record),
    reason,
    killed,
    netns: record.netns,
    netnsDeleted,
    tapDeleted,
    scratchRemoved,
    ok: problems.length === 0,
    problems,
    durationMs: Math.round(performance.now() - started),
  };
}

/** One sentence for the audit log's `detail`. */
export function receiptDetail(receipt: TeardownReceipt): string {
  const parts = [
    `run ${receipt.runId} torn down (${receipt.reason})`,
    receipt.killed.length === 0 ? 'no process was left running' : `killed pid ${receipt.killed.join(', ')}`,
    receipt.netns === null
      ? 'no network'
      : `netns ${receipt.netns} ${receipt.netnsDeleted ? 'deleted' : 'already gone'}${receipt.tapDeleted ? ' with tap avm0' : ''}`,
    receipt.scratchRemoved ? 'scratch removed' : 'scratch NOT removed',
    `${receipt.durationMs} ms`,
  ];
  return `${parts.join('; ')}${receipt.problems.length === 0 ? '' : `; problems: ${receipt.problems.join('; ')}`}.`;
}

/** SIGKILLs every process of the run (as a group when it leads one) and returns their pids. */
async function killRunProcesses(runDir: string, netns: string | null): Promise<number[]> {
  const pids = new Set(processesOfRun(`${runDir}/`, netns === null ? undefined : netnsLink(netns)));
  pids.delete(process.pid);
  for (const pid of pids) {
    try {
      // The VMM leads its own process group (driver.spawnVmm): killing the group reaches anything it started.
      process.kill(processGroup(pid) === pid ? -pid : pid, 'SIGKILL');
    } catch {
      // Exited meanwhile.
    }
  }
  return [...pids].sort((a, b) => a - b);
}

/** Pids of live processes whose command line contains `needle` (zombies have none and do not count). */
export function processesMentioning(needle: string): number[] {
  return processesOfRun(needle, undefined);
}

/**
 * The namespace's identity as /proc/<pid>/ns/net shows it (`net:[<inode>]`), from its bind mount under /run/netns;
 * undefined when it does not exist. `ip netns pids` compares the same inode, without a process of its own (ADR 0028).
 */
function netnsLink(name: string): string | undefined {
  try {
    return `net:[${statSync(`/run/netns/${name}`).ino}]`;
  } catch {
    return undefined;
  }
}

/** One pass over /proc: processes that mention `needle` on their command line, or live in the namespace `netns`. */
function processesOfRun(needle: string, netns: string | undefined): number[] {
  const found: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return found;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`).includes(needle)) found.push(Number(entry));
      else if (netns !== undefined && readlinkSync(`/proc/${entry}/ns/net`) === netns) found.push(Number(entry));
    } catch {
      // Exited while we looked.
    }
  }
  return found;
}

function processGroup(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
  } catch {
    return undefined;
  }
}

function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

async function waitGone(pids: readonly number[], limitMs: number): Promise<number[]> {
  const deadline = performance.now() + limitMs;
  let left = pids.filter(running);
  while (left.length > 0 && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    left = left.filter(running);
  }
  return left;
}
