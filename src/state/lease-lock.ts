// LeaseLock: the exclusive, expiring lock that guards one host's state (`<state>/<host>.lease.json`). It records who
// holds it, for what operation, since when and until when, so a refusal can name the holder and a stale lease can be
// broken safely.
//
// Invariants (the reasons behind each step are in the functions):
// - At most one process holds a lease file at a time: creation is exclusive (link(2) of a fully written temp file, which
//   fails with EEXIST like open(O_EXCL), and never exposes a half-written lease to a reader).
// - A lease is taken over only when it is stale: it expired, or its holder is provably dead — it ran in this boot and
//   this pid namespace and its pid is gone (process-identity.ts; a holder in another container is never judged by a pid
//   this process cannot see). Of several racers on the same stale lease exactly one replaces it (they serialise on an
//   exclusive takeover marker named after that lease, re-check under it that the file is still that very lease — same
//   inode, same bytes — and rename their own lease over it); the others then find a live lease and are refused.
// - The takeover marker is itself a lease (holder identity, 30 s expiry), created whole by link(2): a racer killed
//   while holding it never wedges the lock — the next racer finds the marker's holder dead or its expiry past and
//   removes it (ADR 0015). Leftovers of killed writers (temp files, moved-aside files, markers) are removed by the next
//   holder (sweepLeaseLeftovers).
// - Release, renewal and forced unlock act only on the lease whose id they name.
// Known limit (inherent to leases without fencing tokens): a holder that stalls past its expiry while alive (e.g. a
// suspended machine) can be taken over; its next renewal notices the loss and `assertHeld()` throws `state.lease-lost`.

import { randomUUID } from 'node:crypto';
import {
  closeSync,
  fstatSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  renameSync,
  writeSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AgentvmError } from '../diagnostics/index.js';
import { currentActor } from '../support/actor.js';
import {
  errnoCode,
  fsyncDirectory,
  removeDeadTemps,
  storageError,
  tempPathFor,
  unlinkQuietly,
  writeFileAtomic,
} from './atomic-file.js';
import { identityFields, provablyDead, selfIdentity } from './process-identity.js';

export interface LeaseRecord {
  /** UUID v4; what `agentvm state unlock <id>` names. */
  id: string;
  /** `user@hostname` of the holder. */
  who: string;
  /** The command holding it, e.g. `apply`. */
  operation: string;
  host: string;
  pid: number;
  hostname: string;
  /** ISO 8601. */
  created: string;
  /** ISO 8601. A lease past this instant may be taken over. */
  expires: string;
  /** The holder's boot id, pid namespace inode and process start time: what proves it dead (process-identity.ts). */
  bootId?: string;
  pidNamespace?: number;
  pidStart?: number;
}

export const DEFAULT_LEASE_MS = 15 * 60 * 1000;
/** An unreadable lease file younger than this is presumed mid-write by its creator (only on filesystems without links). */
const UNREADABLE_GRACE_MS = 60 * 1000;
/** How long a racer waits for another racer's takeover of the same stale lease to finish before reporting the lock. */
const TAKEOVER_WAIT_MS = 2000;
/** Expiry of a takeover marker: a takeover is a few syscalls, so a marker this old belongs to a racer that died. */
const MARKER_MS = 30 * 1000;

export interface LeaseOptions {
  /** Lease duration (default 15 min). Renewed every third of it while held. */
  leaseMs?: number;
  /** Renew on a timer while held (default true). Short critical sections turn it off. */
  renew?: boolean;
  /** Clock, for tests. */
  now?: () => Date;
  /**
   * fsync the lease and its directory (default true). A lock held for milliseconds (the audit append lock) skips it:
   * after a crash its holder is dead anyway, so it is stale whatever the disk kept.
   */
  durable?: boolean;
}

export class LeaseHeldError extends AgentvmError {
  /** The lease that blocks, or null when its file is unreadable. */
  readonly holder: LeaseRecord | null;
  constructor(message: string, detail: string, holder: LeaseRecord | null) {
    super('state.locked', message, { detail });
    this.holder = holder;
  }
}

/** A held lease. Obtain it with `acquireLeaseLock`; give it back with `release()`. */
export class LeaseLock {
  readonly file: string;
  /** The stale lease this one replaced (for the audit log), or null. */
  readonly tookOver: LeaseRecord | null;
  #record: LeaseRecord;
  #lost: string | null = null;
  #released = false;
  #timer: NodeJS.Timeout | undefined;
  readonly #leaseMs: number;
  readonly #now: () => Date;
  readonly #durable: boolean;

  /** @internal use acquireLeaseLock */
  constructor(
    file: string,
    record: LeaseRecord,
    tookOver: LeaseRecord | null,
    options: Required<Pick<LeaseOptions, 'leaseMs' | 'now' | 'renew' | 'durable'>>,
  ) {
    this.file = file;
    this.#record = record;
    this.tookOver = tookOver;
    this.#leaseMs = options.leaseMs;
    this.#now = options.now;
    this.#durable = options.durable;
    if (options.renew) {
      this.#timer = setInterval(() => this.#renewQuietly(), Math.max(1000, Math.floor(options.leaseMs / 3)));
      this.#timer.unref();
    }
  }

  get record(): LeaseRecord {
    return { ...this.#record };
  }
  get id(): string {
    return this.#record.id;
  }
  get host(): string {
    return this.#record.host;
  }
  /** False once released, or once a renewal found the lease taken over. */
  get held(): boolean {
    return !this.#released && this.#lost === null;
  }

  /** Extends the lease by its duration from now (atomic rewrite). Throws `state.lease-lost` if it is no longer ours. */
  renew(): void {
    this.assertHeld();
    const current = inspectLease(this.file);
    if (current.kind !== 'lease' || current.record.id !== this.#record.id) {
      this.#markLost(current);
      this.assertHeld();
    }
    const next: LeaseRecord = {
      ...this.#record,
      expires: new Date(this.#now().getTime() + this.#leaseMs).toISOString(),
    };
    writeFileAtomic(this.file, serializeLease(next));
    this.#record = next;
  }

  /**
   * Throws `state.lease-lost` unless the lease file on disk is still this lease. Call it before a write that must
   * happen under the lock (the lockfile backend does).
   */
  assertHeld(): void {
    if (this.#released)
      throw new AgentvmError(
        'state.lease-lost',
        `The lease ${this.#record.id} on host "${this.#record.host}" was already released.`,
        { source: 'toolkit' },
      );
    if (this.#lost === null) {
      const current = inspectLease(this.file);
      if (current.kind !== 'lease' || current.record.id !== this.#record.id) this.#markLost(current);
    }
    if (this.#lost !== null) {
      throw new AgentvmError(
        'state.lease-lost',
        `This operation no longer holds the state lock of host "${this.#record.host}": ${this.#lost}.`,
        {
          detail:
            'Nothing more was written. Another operation may be changing the host now; run `agentvm plan` when it has finished.',
        },
      );
    }
  }

  /** Removes the lease file if it is still this lease. Idempotent. */
  release(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#released) return;
    this.#released = true;
    if (this.#lost === null) removeLeaseIfId(this.file, this.#record.id, this.#durable);
  }

  #markLost(current: InspectedLease): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#lost =
      current.kind === 'lease'
        ? `it was taken over by ${describeHolder(current.record)}`
        : 'its lease file was removed';
  }

  /** Timer renewals must never throw into the event loop: a failure shows up at the next assertHeld(). */
  #renewQuietly(): void {
    try {
      this.renew();
    } catch {
      // Either #lost is set (assertHeld reports it) or the write failed and the next renewal retries.
    }
  }
}

/** Path-independent parts of a new lease. */
function newRecord(host: string, operation: string, leaseMs: number, now: Date): LeaseRecord {
  return {
    id: randomUUID(),
    who: currentActor(),
    operation,
    host,
    pid: process.pid,
    hostname: os.hostname(),
    created: now.toISOString(),
    expires: new Date(now.getTime() + leaseMs).toISOString(),
    ...identityOf(),
  };
}

function identityOf(): Pick<LeaseRecord, 'bootId' | 'pidNamespace' | 'pidStart'> {
  const { pid: _pid, ...rest } = selfIdentity();
  return rest;
}

/**
 * Takes the lease in `file` for `operation` on `host`, or throws `state.locked` (a LeaseHeldError) naming the holder.
 * A stale lease (expired, or held by a dead process of this machine) is taken over; `tookOver` says which.
 */
export function acquireLeaseLock(file: string, host: string, operation: string, options: LeaseOptions = {}): LeaseLock {
  const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
  const now = options.now ?? (() => new Date());
  const durable = options.durable ?? true;
  mkdirSync(path.dirname(file), { recursive: true });
  const deadline = Date.now() + TAKEOVER_WAIT_MS;
  for (let attempt = 0; ; attempt++) {
    const record = newRecord(host, operation, leaseMs, now());
    if (createExclusive(file, serializeLease(record), durable)) {
      if (durable) sweepLeaseLeftovers(file, now());
      return new LeaseLock(file, record, null, { leaseMs, now, renew: options.renew ?? true, durable });
    }
    const seen = inspectLease(file);
    if (seen.kind === 'missing') {
      // Released between our create and our read: try again — but a file system where a lease can neither be
      // created nor seen (e.g. a pseudo file system as --root) must not spin forever.
      if (attempt < 100) continue;
      throw new AgentvmError(
        'state.lease-unavailable',
        `Cannot take the lease ${file}: it can neither be created nor read.`,
        {
          detail: 'The state directory must be on a normal, writable file system; check --root.',
        },
      );
    }
    const stale = staleness(seen, now());
    if (stale === null) throw heldError(host, seen, null);
    const outcome = takeOverStale(file, seen, serializeLease(record), durable, now());
    if (outcome === 'acquired') {
      sweepLeaseLeftovers(file, now());
      return new LeaseLock(file, record, seen.kind === 'lease' ? seen.record : null, {
        leaseMs,
        now,
        renew: options.renew ?? true,
        durable,
      });
    }
    if (outcome === 'changed' && attempt < 100) continue;
    // 'busy': another racer is taking this stale lease over; wait for it to finish, then re-read who holds it.
    if (Date.now() > deadline) throw heldError(host, seen, 'another agentvm process is taking over this stale lease');
    sleepSync(10);
  }
}

/** The lease in `file`, or undefined when there is none. An unreadable file is reported as `state.lease-corrupt`. */
export function readLeaseRecord(file: string): LeaseRecord | undefined {
  const seen = inspectLease(file);
  if (seen.kind === 'missing') return undefined;
  if (seen.kind === 'lease') return seen.record;
  throw new AgentvmError('state.lease-corrupt', `The lease file ${file} is unreadable.`, {
    detail: `If no agentvm operation is running on this host, remove it (\`rm ${file}\`); agentvm also takes it over by itself once it is a minute old.`,
  });
}

/**
 * Breaks the lease in `file` if its id is `id` (the operator is sure its holder is gone). Returns the removed lease.
 * Throws `state.not-locked` when there is no lease and `state.lock-id-mismatch` when another lease holds it.
 */
export function forceUnlockLease(file: string, id: string): LeaseRecord {
  const seen = inspectLease(file);
  if (seen.kind === 'missing')
    throw new AgentvmError('state.not-locked', `There is no lease to unlock (${file} does not exist).`);
  if (seen.kind !== 'lease' || seen.record.id !== id) {
    const actual =
      seen.kind === 'lease'
        ? `lease ${seen.record.id} held by ${describeHolder(seen.record)}`
        : 'an unreadable lease file';
    throw new AgentvmError(
      'state.lock-id-mismatch',
      `Lease ${id} is not the current lock: the host is held by ${actual}.`,
      {
        detail:
          'Nothing was removed. Check `agentvm state show` and pass the id of the current lease, if you are sure its holder is gone.',
      },
    );
  }
  if (!removeLeaseIfId(file, id, true)) {
    throw new AgentvmError(
      'state.lock-id-mismatch',
      `Lease ${id} changed while it was being unlocked; nothing was removed.`,
      {
        detail: 'Run `agentvm state show` to see the current holder.',
      },
    );
  }
  // A takeover marker left by a crashed racer would block takeovers of this lease id: clear it with the lease.
  unlinkQuietly(takeoverMarker(file, seen));
  return seen.record;
}

/** Whether a lease is stale now, and why; null while its holder may still be working. */
export function leaseStaleness(record: LeaseRecord, now: Date = new Date()): 'expired' | 'holder-gone' | null {
  if (Date.parse(record.expires) <= now.getTime()) return 'expired';
  if (provablyDead(record)) return 'holder-gone';
  return null;
}

export function describeHolder(record: LeaseRecord): string {
  return `${record.who} (${record.operation}, pid ${record.pid} on ${record.hostname}) since ${record.created}`;
}

// ---------------------------------------------------------------------------------------------------------------------

type InspectedLease =
  | { kind: 'missing' }
  | { kind: 'lease'; record: LeaseRecord; ino: number; raw: string }
  | { kind: 'unreadable'; ino: number; raw: string; mtimeMs: number };

/** One consistent look at the lease file: content and inode come from the same open file. */
function inspectLease(file: string): InspectedLease {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return { kind: 'missing' };
    throw error;
  }
  try {
    const st = fstatSync(fd);
    const buf = Buffer.alloc(Math.min(st.size, 64 * 1024));
    let read = 0;
    while (read < buf.length) {
      const n = readSync(fd, buf, read, buf.length - read, read);
      if (n === 0) break;
      read += n;
    }
    const raw = buf.subarray(0, read).toString('utf8');
    const record = parseLease(raw);
    return record
      ? { kind: 'lease', record, ino: st.ino, raw }
      : { kind: 'unreadable', ino: st.ino, raw, mtimeMs: st.mtimeMs };
  } finally {
    closeSync(fd);
  }
}

function parseLease(raw: string): LeaseRecord | undefined {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const r = v as Record<string, unknown>;
  const strings = ['id', 'who', 'operation', 'host', 'hostname', 'created', 'expires'] as const;
  if (!strings.every((k) => typeof r[k] === 'string')) return undefined;
  if (typeof r.pid !== 'number' || !Number.isInteger(r.pid) || r.pid <= 0) return undefined;
  if (Number.isNaN(Date.parse(r.expires as string))) return undefined;
  return {
    id: r.id as string,
    who: r.who as string,
    operation: r.operation as string,
    host: r.host as string,
    pid: r.pid,
    hostname: r.hostname as string,
    created: r.created as string,
    expires: r.expires as string,
    ...identityFields(r),
  };
}

function serializeLease(record: LeaseRecord): string {
  return `${JSON.stringify(record, null, 2)}\n`;
}

function staleness(seen: Exclude<InspectedLease, { kind: 'missing' }>, now: Date): string | null {
  if (seen.kind === 'lease') return leaseStaleness(seen.record, now);
  return now.getTime() - seen.mtimeMs > UNREADABLE_GRACE_MS ? 'unreadable' : null;
}

/**
 * Creates `file` with `content` only if it does not exist. Returns false when it exists. The content is written to a
 * temp file first and hard-linked into place, so the lease never exists half-written; where hard links are not
 * supported it falls back to open(O_EXCL) + write (readers then give an unreadable lease a grace period).
 */
function createExclusive(file: string, content: string, durable: boolean): boolean {
  const temp = tempPathFor(file);
  writeExclusive(temp, content, durable);
  try {
    linkSync(temp, file);
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'EEXIST') return false;
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP') {
      try {
        writeExclusive(file, content, durable);
      } catch (fallbackError) {
        if (errnoCode(fallbackError) === 'EEXIST') return false;
        throw fallbackError;
      }
    } else {
      throw storageError(error, file, 'The lock was not taken; nothing was changed.');
    }
  } finally {
    unlinkQuietly(temp);
  }
  if (durable) {
    try {
      fsyncDirectory(path.dirname(file));
    } catch (error) {
      unlinkQuietly(file); // ours (the link succeeded), and not durably there: give it back rather than half-hold it
      throw storageError(error, file, 'The lock was not taken; nothing was changed.');
    }
  }
  return true;
}

/**
 * Creates `file` (O_EXCL) with `content`; fsyncs it when durable. A failed write (a full disk) removes the file it
 * created: nothing half-written is left behind. Storage failures become named errors (storageError).
 */
function writeExclusive(file: string, content: string, durable: boolean): void {
  let fd: number;
  try {
    fd = openSync(file, 'wx', 0o644);
  } catch (error) {
    throw errnoCode(error) === 'EEXIST'
      ? error
      : storageError(error, file, 'The lock was not taken; nothing was changed.');
  }
  try {
    const bytes = Buffer.from(content, 'utf8');
    let written = 0;
    while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written);
    if (durable) fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    unlinkQuietly(file);
    throw storageError(error, file, 'The lock was not taken; nothing was changed.');
  }
  closeSync(fd);
}

/** The O_EXCL marker that serialises racers taking over the same stale lease (named by its id, or its inode). */
function takeoverMarker(file: string, seen: Exclude<InspectedLease, { kind: 'missing' }>): string {
  const key = seen.kind === 'lease' && /^[0-9a-f-]{36}$/.test(seen.record.id) ? seen.record.id : `ino-${seen.ino}`;
  return `${file}.takeover-${key}`;
}

/**
 * Replaces the stale lease `seen` in `file` with `content` (our new lease), if it is still there. 'acquired': ours is in
 * place; 'changed': the file is no longer that lease, or a dead racer's marker was cleared (re-evaluate); 'busy':
 * another live racer holds the takeover marker.
 * The replacement is one rename(2) over the stale file: the lease file never disappears during a takeover, so no racer
 * can slip in with an exclusive create, and the process that replaced the stale lease is the one that holds the new one
 * (it alone reports `tookOver`, for the audit log).
 */
function takeOverStale(
  file: string,
  seen: Exclude<InspectedLease, { kind: 'missing' }>,
  content: string,
  durable: boolean,
  now: Date,
): 'acquired' | 'changed' | 'busy' {
  const marker = takeoverMarker(file, seen);
  const mine = newRecord(seen.kind === 'lease' ? seen.record.host : 'unknown', 'takeover', MARKER_MS, now);
  if (!createExclusive(marker, serializeLease(mine), false)) {
    // Another racer's marker: wait for it while it may be alive, remove it once its holder is dead or it expired.
    const other = inspectLease(marker);
    if (other.kind === 'missing') return 'changed';
    if (staleness(other, now) === null) return 'busy';
    moveAsideIf(marker, (moved) => moved.raw === other.raw, false);
    return 'changed';
  }
  try {
    // Re-check under the marker: a racer that removed this lease before we took the marker has left another (or none).
    const again = inspectLease(file);
    if (again.kind === 'missing' || again.ino !== seen.ino || again.raw !== seen.raw) return 'changed';
    const temp = tempPathFor(file);
    writeExclusive(temp, content, durable);
    try {
      renameSync(temp, file);
    } catch (error) {
      unlinkQuietly(temp);
      throw storageError(error, file, 'The stale lock was not taken over; nothing was changed.');
    }
    if (durable) fsyncDirectory(path.dirname(file));
    return 'acquired';
  } finally {
    removeLeaseIfId(marker, mine.id, false);
  }
}

/**
 * Removes what killed writers of `file` left next to it: temp files of dead writers, moved-aside copies (their mover
 * died between rename and unlink) and takeover markers that are stale. Called by a new holder: none of these can
 * belong to a live operation on this lease once it is held (a live racer's temp file is spared: its writer is alive).
 */
export function sweepLeaseLeftovers(file: string, now: Date = new Date()): void {
  const dir = path.dirname(file);
  const base = path.basename(file);
  removeDeadTemps(dir, (target) => target === base || target.startsWith(`${base}.takeover-`));
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (name.startsWith(`${base}.removed-`)) {
      const m = /^removed-(\d+)-(\d+)-/.exec(name.slice(base.length + 1));
      const me = selfIdentity();
      if (
        m &&
        Number(m[1]) !== process.pid &&
        provablyDead({ pid: Number(m[1]), pidNamespace: Number(m[2]), ...(me.bootId ? { bootId: me.bootId } : {}) })
      )
        unlinkQuietly(path.join(dir, name));
      continue;
    }
    if (!name.startsWith(`${base}.takeover-`)) continue;
    const marker = path.join(dir, name);
    const seen = inspectLease(marker);
    if (seen.kind !== 'missing' && staleness(seen, now) !== null)
      moveAsideIf(marker, (moved) => moved.raw === seen.raw, false);
  }
}

/** Removes the lease in `file` if its id is `id`. True when that lease was removed. */
function removeLeaseIfId(file: string, id: string, durable: boolean): boolean {
  return moveAsideIf(file, (moved) => moved.kind === 'lease' && moved.record.id === id, durable);
}

/**
 * Atomically moves the lease file aside (rename is atomic: of two movers, one gets ENOENT), then checks that what it
 * moved is the expected lease. If not (the file changed in between), puts it back with link(2), which cannot clobber a
 * lease created meanwhile. True when the expected lease was removed.
 */
function moveAsideIf(
  file: string,
  expected: (moved: Exclude<InspectedLease, { kind: 'missing' }>) => boolean,
  durable: boolean,
): boolean {
  const aside = `${file}.removed-${process.pid}-${selfIdentity().pidNamespace ?? 0}-${randomUUID()}`;
  try {
    renameSync(file, aside);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return false;
    throw error;
  }
  try {
    const moved = inspectLease(aside);
    if (moved.kind !== 'missing' && expected(moved)) return true;
    try {
      linkSync(aside, file);
    } catch {
      // A new lease was created in the gap; the one we moved lost its file. Its holder finds out at assertHeld().
    }
    return false;
  } finally {
    unlinkQuietly(aside);
    if (durable) fsyncDirectory(path.dirname(file));
  }
}

function heldError(
  host: string,
  seen: Exclude<InspectedLease, { kind: 'missing' }>,
  note: string | null,
): LeaseHeldError {
  if (seen.kind === 'unreadable') {
    return new LeaseHeldError(
      `Host "${host}" is locked by a lease whose file is unreadable (being written, or damaged).`,
      'Wait a moment and retry. agentvm takes an unreadable lease over by itself once it is a minute old.',
      null,
    );
  }
  const r = seen.record;
  const message =
    `Host "${host}" is locked by ${r.who} (operation ${r.operation}, pid ${r.pid} on ${r.hostname}) since ${r.created}, ` +
    `lease ${r.id}, expires ${r.expires}${note ? `; ${note}` : ''}. ` +
    `If you are sure it is stale, run \`agentvm state unlock ${r.id}\`.`;
  const detail =
    'Another agentvm operation is changing this host. Wait for it to finish and retry. A lease whose process is gone ' +
    `(on this machine) or that has expired is taken over automatically; break it by hand only if you are sure: \`agentvm state unlock ${r.id}\`.`;
  return new LeaseHeldError(message, detail, r);
}

/** Blocks the thread; only for the few milliseconds a racer waits for another's takeover. */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
