// The state backend: the only way the rest of agentvm reads or writes state (lockfile, lease, journal, audit log).
// Nothing above src/state knows where state files live or how they are named; a future remote backend implements the
// same interface. LocalStateBackend keeps everything under the host paths of one root:
//   <state>/<host>.lock.json         the lockfile          <state>/<host>.lock.json.backup   the previous serial
//   <state>/<host>.lease.json        the lease lock        <state>/<host>.journal.json       the running apply
//   <audit>/audit.jsonl              the audit log (all hosts of the root)
// Invariants of writeLockfile: only under the caller's held lease; only on top of the serial and lineage the caller
// read (optimistic check, so a write can never silently undo another); serial + 1; the previous file kept as backup.

import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, type BigIntStats } from 'node:fs';
import path from 'node:path';
import { AgentvmError } from '../diagnostics/index.js';
import type { HostPaths } from '../providers/provider.js';
import { errnoCode, writeFileAtomic } from './atomic-file.js';
import { appendAudit, AUDIT_FILE_NAME, tailAudit, verifyAuditLog, type AuditEntry, type AuditEvent, type AuditVerification, type ExpectedAuditHead } from './audit-log.js';
import { assertHostName, isHostName } from './host-paths.js';
import { beginJournal, readJournal, removeJournal, type ApplyJournal, type JournalRecord, type JournalStart } from './journal.js';
import { acquireLeaseLock, forceUnlockLease, readLeaseRecord, type LeaseLock, type LeaseOptions, type LeaseRecord } from './lease-lock.js';
import { corruptLockfile, lockfileWriteProblem, parseLockfile, serializeLockfile, type Lockfile, type LockfileSource } from './lockfile.js';

export interface StateBackend {
  /** Where state lives, for messages (e.g. `/var/lib/agentvm/state`). */
  readonly location: string;

  /** The host's lockfile, or null when nothing was ever applied. Throws `state.corrupt` / `state.missing`. */
  readLockfile(host: string): Promise<Lockfile | null>;
  /**
   * Persists `lock` (read earlier, then changed with the pure helpers) as the next serial and returns what was written.
   * Requires `lease` to be this host's held lease. Throws `state.serial-conflict` / `state.lineage-mismatch` when the
   * file on disk is not the one `lock` was derived from.
   */
  writeLockfile(host: string, lock: Lockfile, lease: LeaseLock): Promise<Lockfile>;

  /** Takes the host's lease lock, or throws `state.locked` (LeaseHeldError) naming the holder. */
  acquireLease(host: string, operation: string, options?: LeaseOptions): Promise<LeaseLock>;
  /** The current lease, or null. */
  readLease(host: string): Promise<LeaseRecord | null>;
  /** Breaks the lease with this id (`agentvm state unlock <id>`); returns it. `state.lock-id-mismatch` otherwise. */
  forceUnlock(host: string, id: string): Promise<LeaseRecord>;
  /** Hosts that have a lockfile, a lease or a journal, sorted. */
  listHosts(): Promise<string[]>;

  /** Starts (or, with `start.resume`, resumes) the apply journal. */
  beginJournal(host: string, start: JournalStart): Promise<ApplyJournal>;
  /** The journal of an interrupted apply, or null. */
  readJournal(host: string): Promise<JournalRecord | null>;
  /** Drops an interrupted apply's journal without resuming it. */
  discardJournal(host: string): Promise<void>;

  /** Appends an audit record; its seq and hash are the new head (store it with `withAuditHead`). */
  appendAudit(entry: AuditEntry): Promise<AuditEvent>;
  verifyAudit(expected?: AuditHeadLike | readonly ExpectedAuditHead[]): Promise<AuditVerification>;
  /** The last n records, oldest first. */
  tailAudit(n: number): Promise<AuditEvent[]>;
  /** The audit log's location, for messages only: all access goes through the methods above. */
  auditPath(): string;
}

type AuditHeadLike = { seq: number; hash: string };

interface FileFingerprint {
  ino: number;
  size: number;
  mtimeNs: bigint;
}

function fingerprint(st: BigIntStats): FileFingerprint {
  return { ino: Number(st.ino), size: Number(st.size), mtimeNs: st.mtimeNs };
}

/** The file's text and the fingerprint of that same open file, or undefined when it does not exist. */
function readWithFingerprint(file: string): { text: string; fingerprint: FileFingerprint } | undefined {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw error;
  }
  try {
    return { fingerprint: fingerprint(fstatSync(fd, { bigint: true })), text: readFileSync(fd, 'utf8') };
  } finally {
    closeSync(fd);
  }
}

export class LocalStateBackend implements StateBackend {
  readonly paths: HostPaths;
  /** Per host: the lockfile version this backend last read or wrote, and the file it was in. */
  readonly #known = new Map<string, FileFingerprint & { lineage: string; serial: number }>();

  constructor(paths: HostPaths) {
    this.paths = paths;
  }

  get location(): string {
    return this.paths.state;
  }

  async readLockfile(host: string): Promise<Lockfile | null> {
    const source = this.#source(host);
    this.#known.delete(host);
    const read = readWithFingerprint(source.file);
    let value: unknown;
    try {
      value = read === undefined ? undefined : (JSON.parse(read.text) as unknown);
    } catch (error) {
      throw corruptLockfile(source, 'it is not valid JSON (a damaged disk or a hand edit)', error);
    }
    if (value === undefined || read === undefined) {
      if (existsSync(source.backup)) {
        throw new AgentvmError('state.missing', `The lockfile ${source.file} is missing, but its backup ${source.backup} exists.`, {
          detail:
            'agentvm never deletes a lockfile, so it was removed by hand or by another tool. Restore the previous serial with ' +
            `\`cp ${source.backup} ${source.file}\`, or, to start the host's state from scratch (a new lineage: every resource is ` +
            `re-captured from the host), remove the backup too: \`rm ${source.backup}\`.`,
        });
      }
      return null;
    }
    const lock = parseLockfile(value, source);
    this.#known.set(host, { ...read.fingerprint, lineage: lock.lineage, serial: lock.serial });
    return lock;
  }

  /**
   * Lineage and serial of the host's lockfile without reading it, when the file on disk is still the very one this
   * backend last read or wrote (atomic writes give every version a new inode). Saves a full parse and validation per
   * write while an apply persists the lockfile after every resource.
   */
  #knownVersion(host: string, file: string): { lineage: string; serial: number } | undefined {
    const known = this.#known.get(host);
    if (!known) return undefined;
    let st: BigIntStats;
    try {
      st = statSync(file, { bigint: true });
    } catch {
      return undefined;
    }
    const now = fingerprint(st);
    return now.ino === known.ino && now.size === known.size && now.mtimeNs === known.mtimeNs ? known : undefined;
  }

  async writeLockfile(host: string, lock: Lockfile, lease: LeaseLock): Promise<Lockfile> {
    const source = this.#source(host);
    if (lock.host !== host) throw toolkitError('state.host-mismatch', `A lockfile of host "${lock.host}" cannot be written as host "${host}".`);
    if (lease.host !== host) throw toolkitError('state.lease-host-mismatch', `The lease of host "${lease.host}" does not guard host "${host}".`);
    lease.assertHeld();
    const current = this.#knownVersion(host, source.file) ?? (await this.readLockfile(host));
    if (current && current.lineage !== lock.lineage) {
      throw new AgentvmError('state.lineage-mismatch', `The lockfile ${source.file} has lineage ${current.lineage}, not ${lock.lineage}: it was replaced since it was read.`, {
        detail: 'Nothing was written. Run `agentvm plan` again against the current state.',
      });
    }
    const onDisk = current?.serial ?? 0;
    if (onDisk !== lock.serial) {
      throw new AgentvmError('state.serial-conflict', `The lockfile ${source.file} is at serial ${current ? onDisk : 'none'}, but this change was made from serial ${lock.serial}.`, {
        detail: 'Another operation wrote the state since it was read; nothing was written. Run `agentvm plan` again.',
      });
    }
    const next: Lockfile = { ...lock, serial: lock.serial + 1, updatedAt: new Date().toISOString() };
    const problem = lockfileWriteProblem(next);
    if (problem) throw toolkitError('state.invalid-lockfile', `Refusing to write an invalid lockfile for host "${host}" (${problem}).`);
    mkdirSync(this.paths.state, { recursive: true, mode: 0o750 });
    writeFileAtomic(source.file, serializeLockfile(next), { backup: source.backup });
    this.#known.set(host, { ...fingerprint(statSync(source.file, { bigint: true })), lineage: next.lineage, serial: next.serial });
    return next;
  }

  async acquireLease(host: string, operation: string, options?: LeaseOptions): Promise<LeaseLock> {
    return acquireLeaseLock(this.#file(host, 'lease'), host, operation, options);
  }

  async readLease(host: string): Promise<LeaseRecord | null> {
    return readLeaseRecord(this.#file(host, 'lease')) ?? null;
  }

  async forceUnlock(host: string, id: string): Promise<LeaseRecord> {
    return forceUnlockLease(this.#file(host, 'lease'), id);
  }

  async listHosts(): Promise<string[]> {
    let names: string[];
    try {
      names = readdirSync(this.paths.state);
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return [];
      throw error;
    }
    const hosts = new Set<string>();
    for (const name of names) {
      const m = /^(.+)\.(lock|lease|journal)\.json$/.exec(name);
      if (m?.[1] && isHostName(m[1])) hosts.add(m[1]);
    }
    return [...hosts].sort();
  }

  async beginJournal(host: string, start: JournalStart): Promise<ApplyJournal> {
    const file = this.#file(host, 'journal');
    mkdirSync(this.paths.state, { recursive: true, mode: 0o750 });
    return beginJournal(file, start);
  }

  async readJournal(host: string): Promise<JournalRecord | null> {
    return readJournal(this.#file(host, 'journal'));
  }

  async discardJournal(host: string): Promise<void> {
    removeJournal(this.#file(host, 'journal'));
  }

  async appendAudit(entry: AuditEntry): Promise<AuditEvent> {
    assertHostName(entry.host);
    return appendAudit(this.auditPath(), entry);
  }

  async verifyAudit(expected?: AuditHeadLike | readonly ExpectedAuditHead[]): Promise<AuditVerification> {
    return verifyAuditLog(this.auditPath(), expected);
  }

  async tailAudit(n: number): Promise<AuditEvent[]> {
    return tailAudit(this.auditPath(), n);
  }

  auditPath(): string {
    return path.join(this.paths.audit, AUDIT_FILE_NAME);
  }

  #file(host: string, kind: 'lock' | 'lease' | 'journal'): string {
    assertHostName(host);
    return path.join(this.paths.state, `${host}.${kind}.json`);
  }

  #source(host: string): LockfileSource {
    const file = this.#file(host, 'lock');
    return { file, backup: `${file}.backup`, host };
  }
}

function toolkitError(code: string, message: string): AgentvmError {
  return new AgentvmError(code, message, { source: 'toolkit' });
}
