// The state backend: the only way the rest of agentvm reads or writes state (lockfile, lease, apply log, audit log).
// Nothing above src/state knows where state files live or how they are named; a future remote backend implements the
// same interface. LocalStateBackend keeps everything under the host paths of one root:
//   <state>/<host>.lock.json         the lockfile          <state>/<host>.lock.json.backup   the previous version
//   <state>/<host>.lease.json        the lease lock        <state>/<host>.wal.jsonl          the running apply's log
//   <audit>/audit.jsonl              the audit log (all hosts of the root)
// The lockfile a reader sees is the file with the write-ahead log replayed (ADR 0005): every write an apply
// acknowledged, whether or not it was checkpointed into the file yet.
// Invariants of every write: only under the caller's held lease; only on top of the lineage and (logical) serial the
// caller read (optimistic check, so a write can never silently undo another); serial + 1 per persisted write.

import { linkSync, mkdirSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { AgentvmError } from '../diagnostics/index.js';
import { isHostName, type HostPaths } from '../model/index.js';
import {
  errnoCode,
  fsyncDirectory,
  readTextIfExists,
  removeDeadTemps,
  storageError,
  tempPathFor,
  threadPoolSync,
  unlinkQuietly,
  type DurableSync,
} from './atomic-file.js';
import { beginApplyLog, type ApplyStart } from './apply-log.js';
import {
  appendAuditBatchDurable,
  AUDIT_FILE_NAME,
  tailAudit,
  verifyAuditLog,
  type AuditEntry,
  type AuditEvent,
  type AuditVerification,
  type ExpectedAuditHead,
} from './audit-log.js';
import { assertHostName } from './host-paths.js';
import { guardLease, type ApplyLogHandle, type HeldLease } from './backend-types.js';
import {
  acquireLeaseLock,
  describeHolder,
  forceUnlockLease,
  LeaseLock,
  leaseStaleness,
  readLeaseRecord,
  sweepLeaseLeftovers,
  type LeaseOptions,
  type LeaseRecord,
} from './lease-lock.js';
import type { Lockfile, LockfileSource } from './lockfile.js';
import {
  fingerprintOf,
  readStoredState,
  sameFingerprint,
  writeLockfileFile,
  type FileFingerprint,
} from './lockfile-store.js';
import { journalOf, parseWal, type JournalRecord } from './wal.js';

export interface StateBackend {
  /** Where state lives, for messages (e.g. `/var/lib/agentvm/state`). */
  readonly location: string;

  /**
   * The host's lockfile with every acknowledged write (the apply log replayed), or null when nothing was ever
   * applied. Throws `state.corrupt` / `state.missing` / `state.unsupported-format`.
   */
  readLockfile(host: string): Promise<Lockfile | null>;
  /**
   * Persists `lock` (read earlier, then changed with the pure helpers) as the next serial and returns what was written.
   * For writes outside an apply (rollback rehearsals, state commands): costs O(lockfile). Requires `lease` to be this
   * host's held lease. Throws `state.serial-conflict` / `state.lineage-mismatch` when the state is not the version
   * `lock` was derived from.
   */
  writeLockfile(host: string, lock: Lockfile, lease: HeldLease): Promise<Lockfile>;

  /** Takes the host's lease lock, or throws `state.locked` (LeaseHeldError) naming the holder. */
  acquireLease(host: string, operation: string, options?: LeaseOptions): Promise<HeldLease>;
  /** The current lease, or null. */
  readLease(host: string): Promise<LeaseRecord | null>;
  /** Breaks the lease with this id (`agentvm state unlock <id>`); returns it. `state.lock-id-mismatch` otherwise. */
  forceUnlock(host: string, id: string): Promise<LeaseRecord>;
  /** The audit log's append lock, for backends that have one (its id is what a `state.locked` from an append names). */
  readAuditLock?(): Promise<LeaseRecord | null>;
  /** Breaks the audit log's append lock with this id. */
  forceUnlockAuditLock?(id: string): Promise<LeaseRecord>;
  /** Hosts that have a lockfile, a lease or an apply log, sorted. */
  listHosts(): Promise<string[]>;

  /**
   * Starts an apply's durable log under `lease`: an interrupted apply's log is first checkpointed into the lockfile and
   * reported as `log.interrupted` (resumed when its plan digest is the same). Each `log.append` is one O(1) persisted
   * write; `log.finish()` checkpoints the lockfile and removes the log.
   */
  beginApply(host: string, start: ApplyStart, lease: HeldLease): Promise<ApplyLogHandle>;
  /** What the last apply recorded if it did not finish (its log is still there), or null. */
  readJournal(host: string): Promise<JournalRecord | null>;
  /** Drops an interrupted apply's log without resuming it; its acknowledged writes are checkpointed first. */
  discardJournal(host: string, lease: HeldLease): Promise<void>;

  /**
   * Every audit head the host's state recorded, from each place that still holds one: the lockfile, its backup and the
   * write-ahead log's batches — so that a log cut short is caught even when the lockfile itself is damaged. Optional:
   * backends without such copies leave it out (verify then uses the lockfile's head).
   */
  recordedAuditHeads?(host: string): Promise<ExpectedAuditHead[]>;
  /** Appends an audit record; its seq and hash are the new head (store it with an `auditHead.set` op or `withAuditHead`). */
  appendAudit(entry: AuditEntry): Promise<AuditEvent>;
  /**
   * Appends several records in order, with one durable write for all (group commit, ADR 0026): all or none; resolves
   * with them (the caller's records, in order) once they are durable. The local backend syncs off the event loop.
   */
  appendAuditBatch(entries: readonly AuditEntry[]): Promise<AuditEvent[]>;
  /** Heads may name their host: a backend with one chain per host checks each against its own chain. */
  verifyAudit(
    expected?: AuditHeadLike | readonly (ExpectedAuditHead & { host?: string })[],
  ): Promise<AuditVerification>;
  /** The last n records, oldest first. */
  tailAudit(n: number): Promise<AuditEvent[]>;
  /** The audit log's location, for messages only: all access goes through the methods above. */
  auditPath(): string;
  /** Releases connections (a remote backend); the local backend has nothing to close. */
  close?(): Promise<void>;
}

type AuditHeadLike = { seq: number; hash: string };

export class LocalStateBackend implements StateBackend {
  readonly paths: HostPaths;
  /** Per host: the logical version this backend last read or wrote, and the lockfile and WAL versions it came from. */
  readonly #known = new Map<
    string,
    { lock: FileFingerprint | null; wal: FileFingerprint | null; lineage: string; serial: number }
  >();

  /** How appends wait for the disk (the thread pool; tests count and hold the syncs through it). */
  readonly #sync: DurableSync;

  constructor(paths: HostPaths, options: { sync?: DurableSync } = {}) {
    this.paths = paths;
    this.#sync = options.sync ?? threadPoolSync;
  }

  get location(): string {
    return this.paths.state;
  }

  async readLockfile(host: string): Promise<Lockfile | null> {
    const source = this.#source(host);
    this.#known.delete(host);
    const state = readStoredState(source, this.#walFile(host));
    if (state.logical) {
      this.#known.set(host, {
        lock: state.lockFingerprint,
        wal: state.walFingerprint,
        lineage: state.logical.lineage,
        serial: state.logical.serial,
      });
    }
    return state.logical;
  }

  /**
   * Lineage and logical serial of the host's state without reading it, when the lockfile and the WAL on disk are still
   * the very versions this backend last read or wrote (atomic writes give every version a new inode, appends a new size).
   */
  #knownVersion(host: string): { lineage: string; serial: number } | undefined {
    const known = this.#known.get(host);
    if (!known) return undefined;
    const same =
      sameFingerprint(fingerprintOf(this.#source(host).file), known.lock) &&
      sameFingerprint(fingerprintOf(this.#walFile(host)), known.wal);
    return same ? known : undefined;
  }

  async writeLockfile(host: string, lock: Lockfile, lease: HeldLease): Promise<Lockfile> {
    const source = this.#source(host);
    this.#guard(host, lease);
    if (lock.host !== host)
      throw toolkitError(
        'state.host-mismatch',
        `A lockfile of host "${lock.host}" cannot be written as host "${host}".`,
      );
    const current = this.#knownVersion(host) ?? (await this.readLockfile(host));
    if (current && current.lineage !== lock.lineage) {
      throw new AgentvmError(
        'state.lineage-mismatch',
        `The lockfile ${source.file} has lineage ${current.lineage}, not ${lock.lineage}: it was replaced since it was read.`,
        {
          detail: 'Nothing was written. Run `agentvm plan` again against the current state.',
        },
      );
    }
    const onDisk = current?.serial ?? 0;
    if (onDisk !== lock.serial) {
      throw new AgentvmError(
        'state.serial-conflict',
        `The lockfile ${source.file} is at serial ${current ? onDisk : 'none'}, but this change was made from serial ${lock.serial}.`,
        {
          detail: 'Another operation wrote the state since it was read; nothing was written. Run `agentvm plan` again.',
        },
      );
    }
    const next: Lockfile = { ...lock, serial: lock.serial + 1, updatedAt: new Date().toISOString() };
    // `lock` was derived from the logical lockfile, so it holds any WAL batches: writing serial + 1 leaves such a WAL
    // checkpointed (walStatus), kept only as the record of its interrupted apply.
    const written = writeLockfileFile(source, next);
    this.#known.set(host, {
      lock: written,
      wal: fingerprintOf(this.#walFile(host)),
      lineage: next.lineage,
      serial: next.serial,
    });
    return next;
  }

  async acquireLease(host: string, operation: string, options?: LeaseOptions): Promise<LeaseLock> {
    assertHostName(host);
    this.#claimRoot(host);
    const lease = acquireLeaseLock(this.#file(host, 'lease'), host, operation, { ...leaseDefaults(), ...options });
    try {
      // Every takeover is an action in the audit log, written before the new holder changes anything.
      if (lease.tookOver) {
        await this.appendAudit({
          host,
          operation,
          event: 'lease.takeover',
          result: 'ok',
          detail: `took over lease ${lease.tookOver.id} of ${describeHolder(lease.tookOver)}: ${leaseStaleness(lease.tookOver) ?? 'stale'}`,
        });
      }
      // Under the lease, nobody else writes this host's lockfile or WAL: any temp file of theirs is a killed writer's.
      const prefixes = [`${host}.lock.json`, `${host}.wal.jsonl`];
      removeDeadTemps(
        this.paths.state,
        (target) => prefixes.some((p) => target === p || target === `${p}.backup`),
        true,
      );
      sweepLeaseLeftovers(`${this.auditPath()}.lock`);
      removeDeadTemps(this.paths.state, (target) => target === ROOT_CLAIM_FILE);
    } catch (error) {
      lease.release();
      throw error;
    }
    return lease;
  }

  async readLease(host: string): Promise<LeaseRecord | null> {
    return readLeaseRecord(this.#file(host, 'lease')) ?? null;
  }

  async forceUnlock(host: string, id: string): Promise<LeaseRecord> {
    return forceUnlockLease(this.#file(host, 'lease'), id);
  }

  /**
   * One root, one host (ADR 0015): the first host to write under a root claims it (`<state>/root-host.json`, created
   * exclusively, so of two hosts racing exactly one wins); any other host is refused before it takes a lease. Two hosts
   * in one root would each see the other's releases, units and the gate's shared files as orphans and delete them.
   */
  #claimRoot(host: string): void {
    const file = path.join(this.paths.state, ROOT_CLAIM_FILE);
    for (let attempt = 0; attempt < 3; attempt++) {
      const claimed = readRootClaim(file);
      if (claimed !== undefined) {
        if (claimed === host) return;
        throw rootHostMismatch(this.paths.state, file, claimed, host);
      }
      // A root used before claims existed: the host with state there owns it.
      const others = existingLockfileHosts(this.paths.state).filter((h) => h !== host);
      if (others.length > 0) throw rootHostMismatch(this.paths.state, file, others.join(', '), host);
      try {
        mkdirSync(this.paths.state, { recursive: true, mode: 0o750 });
      } catch (error) {
        throw storageError(error, file, 'Nothing was changed.');
      }
      const temp = tempPathFor(file);
      try {
        writeFileSync(temp, `${JSON.stringify({ host, claimedAt: new Date().toISOString() })}\n`, {
          flag: 'wx',
          mode: 0o644,
        });
      } catch (error) {
        unlinkQuietly(temp);
        throw storageError(error, file, 'Nothing was changed.');
      }
      try {
        linkSync(temp, file);
        fsyncDirectory(this.paths.state);
        return;
      } catch (error) {
        if (errnoCode(error) !== 'EEXIST') throw storageError(error, file, 'Nothing was changed.');
        // Another host (or this one) claimed it first: read who.
      } finally {
        unlinkQuietly(temp);
      }
    }
    throw new AgentvmError('state.root-claim-unreadable', `The root claim ${file} cannot be read.`, {
      detail: `Remove it (\`rm ${file}\`) if it is damaged; the next apply claims the root again.`,
    });
  }

  async readAuditLock(): Promise<LeaseRecord | null> {
    try {
      return readLeaseRecord(`${this.auditPath()}.lock`) ?? null;
    } catch {
      return null;
    }
  }

  async forceUnlockAuditLock(id: string): Promise<LeaseRecord> {
    return forceUnlockLease(`${this.auditPath()}.lock`, id);
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
      const m = /^(.+)\.(lock\.json|lease\.json|wal\.jsonl)$/.exec(name);
      if (m?.[1] && isHostName(m[1])) hosts.add(m[1]);
    }
    return [...hosts].sort();
  }

  async beginApply(host: string, start: ApplyStart, lease: HeldLease): Promise<ApplyLogHandle> {
    const held = this.#guard(host, lease);
    this.#known.delete(host);
    mkdirSync(this.paths.state, { recursive: true, mode: 0o750 });
    const source = this.#source(host);
    const walFile = this.#walFile(host);
    return beginApplyLog({ walFile, source }, start, readStoredState(source, walFile), held, new Date(), this.#sync);
  }

  async readJournal(host: string): Promise<JournalRecord | null> {
    const file = this.#walFile(host);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return null;
      throw error;
    }
    return journalOf(parseWal(text, file));
  }

  async discardJournal(host: string, lease: HeldLease): Promise<void> {
    this.#guard(host, lease);
    const source = this.#source(host);
    const walFile = this.#walFile(host);
    const state = readStoredState(source, walFile);
    if (!state.wal) return;
    if (state.walStatus === 'replay' && state.logical && state.wal.batches.length > 0)
      writeLockfileFile(source, state.logical);
    try {
      unlinkSync(walFile);
    } catch (error) {
      if (errnoCode(error) !== 'ENOENT') throw error;
    }
    fsyncDirectory(this.paths.state);
    this.#known.delete(host);
  }

  async recordedAuditHeads(host: string): Promise<ExpectedAuditHead[]> {
    const source = this.#source(host);
    const heads: ExpectedAuditHead[] = [];
    for (const [file, label] of [
      [source.file, `lockfile of ${host}`],
      [source.backup, `lockfile backup of ${host}`],
    ] as const) {
      const head = auditHeadIn(file);
      if (head) heads.push({ ...head, label });
    }
    // The WAL: each batch line that parses on its own (a damaged line does not hide the others).
    let wal = '';
    try {
      wal = readFileSync(this.#walFile(host), 'utf8');
    } catch {
      // no log
    }
    let last: AuditHeadLike | undefined;
    for (const line of wal.split('\n')) {
      try {
        const batch = JSON.parse(line) as { ops?: Array<{ op?: string; head?: AuditHeadLike }> };
        for (const op of batch.ops ?? [])
          if (op.op === 'auditHead.set' && op.head && Number.isInteger(op.head.seq) && typeof op.head.hash === 'string')
            last = op.head;
      } catch {
        // a torn or damaged line
      }
    }
    if (last) heads.push({ seq: last.seq, hash: last.hash, label: `write-ahead log of ${host}` });
    return heads;
  }

  async appendAudit(entry: AuditEntry): Promise<AuditEvent> {
    const [event] = await this.appendAuditBatch([entry]);
    return event!;
  }

  async appendAuditBatch(entries: readonly AuditEntry[]): Promise<AuditEvent[]> {
    for (const entry of entries) assertHostName(entry.host);
    return appendAuditBatchDurable(this.auditPath(), entries, { sync: this.#sync });
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

  #file(host: string, kind: 'lock' | 'lease'): string {
    assertHostName(host);
    return path.join(this.paths.state, `${host}.${kind}.json`);
  }

  #walFile(host: string): string {
    assertHostName(host);
    return path.join(this.paths.state, `${host}.wal.jsonl`);
  }

  /** Every write: the lease must be this host's, this backend's kind (a lease file), and still held. */
  #guard(host: string, lease: HeldLease): LeaseLock {
    return guardLease(host, lease, (l): l is LeaseLock => l instanceof LeaseLock, 'local');
  }

  #source(host: string): LockfileSource {
    const file = this.#file(host, 'lock');
    return { file, backup: `${file}.backup`, host };
  }
}

const ROOT_CLAIM_FILE = 'root-host.json';

/** The `auditHead` of a lockfile file, read leniently (the file may be damaged elsewhere), or undefined. */
function auditHeadIn(file: string): AuditHeadLike | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  try {
    const head = (JSON.parse(text) as { auditHead?: AuditHeadLike }).auditHead;
    if (head && Number.isInteger(head.seq) && typeof head.hash === 'string' && /^[0-9a-f]{64}$/.test(head.hash))
      return { seq: head.seq, hash: head.hash };
  } catch {
    // Not JSON any more: find the head by its shape in what is left.
    const m = /"auditHead"\s*:\s*\{\s*"seq"\s*:\s*(\d+)\s*,\s*"hash"\s*:\s*"([0-9a-f]{64})"/.exec(text);
    if (m) return { seq: Number(m[1]), hash: m[2]! };
  }
  return undefined;
}

/** The host that claimed the root, or undefined when there is no (readable) claim yet. */
function readRootClaim(file: string): string | undefined {
  const text = readTextIfExists(file);
  if (text === undefined) return undefined;
  try {
    const v = JSON.parse(text) as { host?: unknown };
    if (typeof v.host === 'string' && isHostName(v.host)) return v.host;
  } catch {
    // fall through
  }
  throw new AgentvmError('state.root-claim-unreadable', `The root claim ${file} is not a valid claim.`, {
    detail: `Remove it (\`rm ${file}\`) if it is damaged; the next apply claims the root again.`,
  });
}

function existingLockfileHosts(stateDir: string): string[] {
  try {
    return readdirSync(stateDir).flatMap((n) => {
      const m = /^(.+)\.lock\.json$/.exec(n);
      return m?.[1] && isHostName(m[1]) ? [m[1]] : [];
    });
  } catch {
    return [];
  }
}

function rootHostMismatch(stateDir: string, file: string, owner: string, host: string): AgentvmError {
  return new AgentvmError(
    'state.root-host-mismatch',
    `The root of ${stateDir} belongs to host ${owner}; refusing to change host "${host}" in it.`,
    {
      detail:
        `One root is one machine (ADR 0015): two hosts in one root would delete each other's workloads as orphans. Give host "${host}" its own --root. ` +
        `If this root really is to become host "${host}", remove the old host's state first (its lockfile, and ${file}).`,
    },
  );
}

/**
 * AGENTVM_LEASE_SECONDS shortens (or lengthens) the host lease: the time after which a holder that is not provably
 * dead from here (another machine, another container's pid namespace) is taken over. It is renewed every third of it.
 */
function leaseDefaults(): LeaseOptions {
  const raw = process.env.AGENTVM_LEASE_SECONDS;
  if (raw === undefined || raw === '') return {};
  const seconds = Number(raw);
  if (!Number.isInteger(seconds) || seconds < 3 || seconds > 86_400) {
    throw new AgentvmError(
      'state.invalid-lease-seconds',
      `AGENTVM_LEASE_SECONDS=${raw} is not a whole number of seconds from 3 to 86400.`,
      { detail: 'Unset it (15 minutes) or give e.g. 60.' },
    );
  }
  return { leaseMs: seconds * 1000 };
}

function toolkitError(code: string, message: string): AgentvmError {
  return new AgentvmError(code, message, { source: 'toolkit' });
}
