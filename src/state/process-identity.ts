// Who a process is, well enough to prove it dead: its pid alone is not (a pid is only meaningful inside one pid
// namespace of one boot — two containers sharing a state volume see different pids, and a pid is reused after its
// process exits). A record carries the holder's boot id, the inode of its pid namespace and its start time; a
// holder is *provably dead* only when all three place it in this very namespace of this very boot and the pid is
// gone (or now belongs to a process that started at another time). Everything else is "maybe alive": only the
// record's expiry may end it (ADR 0015).

import { readFileSync, readlinkSync, statSync } from 'node:fs';

export interface ProcessIdentity {
  pid: number;
  /** /proc/sys/kernel/random/boot_id of the holder's kernel; absent where /proc is not readable. */
  bootId?: string;
  /** Inode of /proc/self/ns/pid: which pid namespace `pid` is counted in. */
  pidNamespace?: number;
  /** Start time of the process in clock ticks since boot (/proc/<pid>/stat field 22), against pid reuse. */
  pidStart?: number;
}

let self: ProcessIdentity | undefined;

/** This process's identity (computed once: none of it changes while the process runs). */
export function selfIdentity(): ProcessIdentity {
  if (self && self.pid === process.pid) return self;
  const id: ProcessIdentity = { pid: process.pid };
  const bootId = readTrimmed('/proc/sys/kernel/random/boot_id');
  if (bootId) id.bootId = bootId;
  const ns = pidNamespaceInode();
  if (ns !== undefined) id.pidNamespace = ns;
  const start = procIsOurs() ? startTimeOf('self') : undefined;
  if (start !== undefined) id.pidStart = start;
  self = id;
  return id;
}

/**
 * True only when `holder` ran in this boot and this pid namespace and is gone: its pid does not exist, or the process
 * with that pid started at another time than the holder did. False whenever that cannot be proved.
 */
export function provablyDead(holder: ProcessIdentity): boolean {
  const me = selfIdentity();
  if (!holder.bootId || !me.bootId || holder.bootId !== me.bootId) return false;
  if (holder.pidNamespace === undefined || me.pidNamespace === undefined || holder.pidNamespace !== me.pidNamespace)
    return false;
  if (!pidExists(holder.pid)) return true;
  // The pid exists: the holder's own process only if it started when the holder did (a reused pid started later).
  if (holder.pidStart === undefined || !procIsOurs()) return false;
  const start = startTimeOf(String(holder.pid));
  return start !== undefined && start !== holder.pidStart;
}

/** The identity fields of a parsed record, if they are well-formed (records written before they existed have none). */
export function identityFields(r: Record<string, unknown>): Omit<ProcessIdentity, 'pid'> {
  const out: Omit<ProcessIdentity, 'pid'> = {};
  if (typeof r.bootId === 'string' && /^[0-9a-f-]{1,64}$/.test(r.bootId)) out.bootId = r.bootId;
  if (Number.isSafeInteger(r.pidNamespace) && (r.pidNamespace as number) > 0)
    out.pidNamespace = r.pidNamespace as number;
  if (Number.isSafeInteger(r.pidStart) && (r.pidStart as number) >= 0) out.pidStart = r.pidStart as number;
  return out;
}

function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/**
 * Whether /proc shows this process's own pid namespace: after `unshare --pid --fork` without a new /proc mount, /proc
 * still shows the parent namespace, where /proc/<our pid> is another process — its start time would prove nothing.
 */
function procIsOurs(): boolean {
  try {
    return readlinkSync('/proc/self') === String(process.pid);
  } catch {
    return false;
  }
}

function pidNamespaceInode(): number | undefined {
  try {
    return statSync('/proc/self/ns/pid').ino;
  } catch {
    return undefined;
  }
}

/** Field 22 of /proc/<pid>/stat (after the parenthesised command name, which may itself contain spaces). */
function startTimeOf(pid: string): number | undefined {
  const stat = readTrimmed(`/proc/${pid}/stat`);
  if (!stat) return undefined;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const value = Number(fields[19]);
  return Number.isSafeInteger(value) ? value : undefined;
}

function readTrimmed(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}
