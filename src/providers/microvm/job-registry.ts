// The host's registry of job runs: one directory per run, `<root>/run/agentvm/jobs/<runId>/`, holding the run's
// owner record (`owner.json`) and its VM scratch directory (`vm/`). It is how a run that lost its owner (agentvm
// SIGKILLed) is found and reaped later, and how the network slot of a run is claimed.
//
// Invariants:
// - The record is written before anything of the run exists (directory renamed into place whole, so it is never
//   half-written) and removed after everything else of the run is gone: whatever a crash leaves behind, the record
//   that names it is still there.
// - The owner is identified by pid AND the process's start time (/proc/<pid>/stat field 22), so a recycled pid
//   never makes a dead owner look alive.
// - Run ids are 12 lowercase hex digits; nothing read from a directory name is used before it matches that.

import { randomBytes, randomInt } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { warningDiag, type Diagnostic } from '../../diagnostics/index.js';
import type { HostPaths } from '../provider.js';
import { SLOT_COUNT } from './egress.js';

export const RUN_RECORD_FORMAT = 1;
const RUN_ID = /^[0-9a-f]{12}$/;
const OWNER_FILE = 'owner.json';

/** The owner record of one job run. */
export interface JobRunRecord {
  formatVersion: typeof RUN_RECORD_FORMAT;
  id: string;
  /** The job definition's address, `job.<workload>.<job>`. */
  address: string;
  host: string;
  workload: string;
  job: string;
  /** The agentvm process running the job; `startTicks` guards against pid reuse (null: /proc unreadable). */
  owner: { pid: number; startTicks: number | null };
  startedAt: string;
  /** After this instant the run is over whatever its owner says: boot limit + job timeout + grace. */
  deadline: string;
  /** The run's network namespace, or null for a job without egress (no network at all). */
  netns: string | null;
  /** The run's claimed network slot (egress.guestAddressing), or null. */
  slot: number | null;
  /** The VMM's pid (= its process group), once it runs. */
  vmmPid: number | null;
}

/** A run the owner no longer looks after: `owner-gone` (process dead) or `past-deadline` (ran too long). */
export type RunState = 'running' | 'owner-gone' | 'past-deadline';

export function newRunId(): string {
  return randomBytes(6).toString('hex');
}

export function isRunId(id: string): boolean {
  return RUN_ID.test(id);
}

export function jobsDir(paths: HostPaths): string {
  return join(paths.run, 'jobs');
}

export function runDirOf(paths: HostPaths, id: string): string {
  if (!isRunId(id)) throw new Error(`invalid run id ${JSON.stringify(id)}`);
  return join(jobsDir(paths), id);
}

/** The VM's scratch directory (kernel and initramfs copies, sockets); created and removed by runEphemeralVm. */
export function vmDirOf(paths: HostPaths, id: string): string {
  return join(runDirOf(paths, id), 'vm');
}

/** The address a run has in plans: `job.<workload>.<job>.<runId>`. */
export function runAddress(record: Pick<JobRunRecord, 'address' | 'id'>): string {
  return `${record.address}.${record.id}`;
}

/** `job.<w>.<j>.<runId>` → the run id; undefined for a job definition address (`job.<w>.<j>`). */
export function runIdOfAddress(address: string): string | undefined {
  const parts = address.split('.');
  const id = parts[3];
  return parts.length === 4 && parts[0] === 'job' && id !== undefined && isRunId(id) ? id : undefined;
}

/** Writes the record of a new run: its directory appears complete or not at all. */
export async function createRunRecord(paths: HostPaths, record: JobRunRecord): Promise<void> {
  const dir = jobsDir(paths);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const staging = join(dir, `.${record.id}.new`);
  await mkdir(staging, { mode: 0o700 });
  try {
    await writeFile(join(staging, OWNER_FILE), `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
    await rename(staging, runDirOf(paths, record.id));
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

/** Replaces the record of a live run (e.g. with the VMM's pid); atomic by rename. */
export async function updateRunRecord(paths: HostPaths, record: JobRunRecord): Promise<void> {
  const file = join(runDirOf(paths, record.id), OWNER_FILE);
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
  await rename(temporary, file);
}

export async function readRunRecord(paths: HostPaths, id: string): Promise<JobRunRecord | undefined> {
  try {
    return parseRecord(JSON.parse(await readFile(join(runDirOf(paths, id), OWNER_FILE), 'utf8')), id);
  } catch {
    return undefined;
  }
}

/** Every run on the host (sorted by id). A directory whose record is unreadable is reported, not guessed at. */
export async function listRunRecords(
  paths: HostPaths,
): Promise<{ records: JobRunRecord[]; diagnostics: Diagnostic[] }> {
  let names: string[];
  try {
    names = readdirSync(jobsDir(paths));
  } catch {
    return { records: [], diagnostics: [] };
  }
  const records: JobRunRecord[] = [];
  const diagnostics: Diagnostic[] = [];
  for (const name of names.filter(isRunId).sort()) {
    const record = await readRunRecord(paths, name);
    if (record !== undefined) records.push(record);
    else {
      diagnostics.push(
        warningDiag(
          'microvm.run-record-unreadable',
          `The job run directory ${runDirOf(paths, name)} has no readable owner record.`,
          {
            detail:
              'Something other than agentvm changed it. Check for a VMM process mentioning that directory, then remove the directory by hand.',
          },
        ),
      );
    }
  }
  return { records, diagnostics };
}

function parseRecord(value: unknown, id: string): JobRunRecord | undefined {
  const r = value as Partial<JobRunRecord> | null;
  if (r === null || typeof r !== 'object' || r.formatVersion !== RUN_RECORD_FORMAT || r.id !== id) return undefined;
  if (typeof r.address !== 'string' || !/^job\.[a-z][a-z0-9-]*\.[a-z][a-z0-9-]*$/.test(r.address)) return undefined;
  if (typeof r.owner?.pid !== 'number' || typeof r.deadline !== 'string' || Number.isNaN(Date.parse(r.deadline)))
    return undefined;
  if (r.netns !== null && (typeof r.netns !== 'string' || r.netns !== `agentvm-${id}`)) return undefined;
  return r as JobRunRecord;
}

/** Start time of a process in clock ticks since boot (/proc/<pid>/stat field 22), or null when it does not exist. */
export function processStartTicks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may itself contain spaces or parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') return null;
    const ticks = Number(fields[19]);
    return Number.isFinite(ticks) ? ticks : null;
  } catch {
    return null;
  }
}

export function ownerAlive(record: JobRunRecord): boolean {
  const ticks = processStartTicks(record.owner.pid);
  return ticks !== null && (record.owner.startTicks === null || ticks === record.owner.startTicks);
}

export function runState(record: JobRunRecord, now: Date, alive: boolean): RunState {
  if (!alive) return 'owner-gone';
  return now.getTime() > Date.parse(record.deadline) ? 'past-deadline' : 'running';
}

// ---------------------------------------------------------------------------------------------------------
// Network slots: a claimed slot is a directory `<jobs>/.slot-<n>` (mkdir is the atomic claim).

function slotDir(paths: HostPaths, slot: number): string {
  return join(jobsDir(paths), `.slot-${slot}`);
}

/** Claims a free network slot; throws when none could be claimed (16,384 in use, or the directory is unwritable). */
export async function claimSlot(paths: HostPaths): Promise<number> {
  await mkdir(jobsDir(paths), { recursive: true, mode: 0o700 });
  const start = randomInt(SLOT_COUNT);
  for (let i = 0; i < SLOT_COUNT; i += 1) {
    const slot = (start + i) % SLOT_COUNT;
    try {
      await mkdir(slotDir(paths, slot));
      return slot;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
  }
  throw new Error('every job network slot is in use');
}

export async function releaseSlot(paths: HostPaths, slot: number): Promise<void> {
  await rm(slotDir(paths, slot), { recursive: true, force: true });
}
