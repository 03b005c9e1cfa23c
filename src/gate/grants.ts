// The grant store (`<gate dir>/grants/`): who may reach which preview until when. Runtime state, never in git.
// Layout, one grant = one immutable file plus write-once markers beside it:
//   <id>.json      GrantRecord, written once by `gate grant` (atomic: temp file, fsync, rename)
//   <id>.used      the one-time token was exchanged; holds the sha256 of the session id it became
//   <id>.revoked   `gate revoke` (who, when)
//   <id>.expired   the expiry was audited (claimed by whichever process saw it first), then the grant is pruned
// Invariants:
// - Nothing is ever read-modify-written, so the CLI and the server never need a shared lock: each state change is the
//   creation of one marker, made complete in a temp file and then link(2)ed into place, which fails with EEXIST if the
//   marker exists. That makes "exchange the one-time token" and "audit the expiry" happen exactly once across processes.
// - Tokens and session ids are 256-bit random values; only their sha256 is stored. They never reach a file or a log.
// - A revocation is seen on the very next request: the server stats `<id>.revoked` on every request (one syscall), it
//   does not rely on a cached listing or on directory mtimes (whose granularity can hide a change).

import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, readdirSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import { sha256Hex } from '../model/index.js';
import { errnoCode, readJsonFile, tempPathFor, unlinkQuietly, writeFileAtomic } from '../state/atomic-file.js';

export interface GrantRecord {
  version: 1;
  /** `g-` + 16 hex: printed, listed and audited; not a credential. */
  id: string;
  workload: string;
  preview: string;
  identity: string;
  reason: string;
  /** ISO times. */
  created: string;
  expires: string;
  /** Who ran `gate grant` (user@hostname). */
  grantedBy: string;
  /** sha256 (hex) of the one-time token. */
  tokenSha256: string;
}

export interface GrantState extends GrantRecord {
  used: boolean;
  /** sha256 (hex) of the session id the token was exchanged for. */
  sessionSha256?: string;
  revoked: boolean;
  revokedAt?: string;
  revokedBy?: string;
}

const GRANT_ID = /^g-[0-9a-f]{16}$/;
/** 32 random bytes, base64url: 43 characters. */
export const SECRET_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

export { sha256Hex };

export function isGrantId(id: string): boolean {
  return GRANT_ID.test(id);
}

export class GrantStore {
  /** `dir` with one trailing separator: marker paths are built by concatenation (the server builds one per request). */
  private readonly prefix: string;
  constructor(readonly dir: string) {
    this.prefix = `${path.resolve(dir)}${path.sep}`;
  }

  private file(id: string, kind: 'json' | 'used' | 'revoked' | 'expired'): string {
    return `${this.prefix}${id}.${kind}`;
  }

  /** Writes a new grant and returns it with its one-time token (the only copy of the token anywhere). */
  create(input: {
    workload: string;
    preview: string;
    identity: string;
    reason: string;
    ttlMs: number;
    grantedBy: string;
    now?: Date;
  }): { grant: GrantRecord; token: string } {
    mkdirSync(this.dir, { recursive: true, mode: 0o750 });
    const now = input.now ?? new Date();
    const token = newSecret();
    const grant: GrantRecord = {
      version: 1,
      id: `g-${randomBytes(8).toString('hex')}`,
      workload: input.workload,
      preview: input.preview,
      identity: input.identity,
      reason: input.reason,
      created: now.toISOString(),
      expires: new Date(now.getTime() + input.ttlMs).toISOString(),
      grantedBy: input.grantedBy,
      tokenSha256: sha256Hex(token),
    };
    writeFileAtomic(this.file(grant.id, 'json'), `${JSON.stringify(grant, null, 2)}\n`, { mode: 0o640 });
    return { grant, token };
  }

  /** One grant with its markers, or undefined when it does not exist (never granted, or pruned). */
  get(id: string): GrantState | undefined {
    if (!isGrantId(id)) return undefined;
    let record: unknown;
    try {
      record = readJsonFile(this.file(id, 'json'));
    } catch {
      return undefined; // a torn or foreign file grants nothing
    }
    if (!isGrantRecord(record) || record.id !== id) return undefined;
    const used = readMarker(this.file(id, 'used'));
    const revoked = readMarker(this.file(id, 'revoked'));
    return {
      ...record,
      used: used !== undefined,
      ...(typeof used?.sessionSha256 === 'string' ? { sessionSha256: used.sessionSha256 } : {}),
      revoked: revoked !== undefined,
      ...(typeof revoked?.at === 'string' ? { revokedAt: revoked.at } : {}),
      ...(typeof revoked?.by === 'string' ? { revokedBy: revoked.by } : {}),
    };
  }

  /** Every grant on file, in creation order. */
  all(): GrantState[] {
    const out: GrantState[] = [];
    for (const id of this.ids()) {
      const g = this.get(id);
      if (g) out.push(g);
    }
    return out.sort((a, b) => (a.created < b.created ? -1 : a.created > b.created ? 1 : a.id < b.id ? -1 : 1));
  }

  /** Ids that have a grant file (markers of a pruned grant are not a grant). */
  ids(): string[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return [];
      throw error;
    }
    return names.filter((n) => n.endsWith('.json') && isGrantId(n.slice(0, -5))).map((n) => n.slice(0, -5));
  }

  /** Exchanges the one-time token: true for exactly one caller across all processes, false when already used. */
  markUsed(id: string, sessionSha256: string, at = new Date()): boolean {
    return this.createMarker(id, 'used', { at: at.toISOString(), sessionSha256 });
  }

  /** Revokes: true when this call revoked it, false when it was already revoked. */
  revoke(id: string, by: string, at = new Date()): boolean {
    return this.createMarker(id, 'revoked', { at: at.toISOString(), by });
  }

  /** One stat: the per-request revocation check. */
  isRevoked(id: string): boolean {
    return statSync(this.file(id, 'revoked'), { throwIfNoEntry: false }) !== undefined;
  }

  /** Claims the right to audit this grant's expiry: true for exactly one caller. */
  claimExpiry(id: string, at = new Date()): boolean {
    return this.createMarker(id, 'expired', { at: at.toISOString() });
  }

  /** Removes a grant: its record first (so a crash leaves only markers, which grant nothing), then its markers. */
  remove(id: string): void {
    if (!isGrantId(id)) return;
    unlinkQuietly(this.file(id, 'json'));
    for (const kind of ['used', 'revoked', 'expired'] as const) unlinkQuietly(this.file(id, kind));
  }

  /** Markers whose grant file is gone (a prune cut short): removed. */
  removeStrayMarkers(): void {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return;
    }
    const live = new Set(names.filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -5)));
    for (const n of names) {
      const m = /^(g-[0-9a-f]{16})\.(used|revoked|expired)$/.exec(n);
      if (m && !live.has(m[1]!)) unlinkQuietly(path.join(this.dir, n));
    }
  }

  /**
   * The expiry sweep: for each grant past its expiry, the first process to claim it calls `onExpire` (which audits
   * it) and prunes it. Returns the grants this call expired.
   */
  sweepExpired(onExpire: (grant: GrantState) => void, now = new Date()): GrantState[] {
    const expired: GrantState[] = [];
    for (const id of this.ids()) {
      const g = this.get(id);
      if (!g || Date.parse(g.expires) > now.getTime()) continue;
      if (this.claimExpiry(id, now)) {
        onExpire(g);
        expired.push(g);
      }
      this.remove(id);
    }
    this.removeStrayMarkers();
    return expired;
  }

  /** Writes `<id>.<kind>` with complete content, or returns false if it exists (link(2) is the atomic test-and-set). */
  private createMarker(id: string, kind: 'used' | 'revoked' | 'expired', content: Record<string, string>): boolean {
    if (!isGrantId(id)) return false;
    const target = this.file(id, kind);
    const temp = tempPathFor(target);
    const fd = openSync(temp, 'wx', 0o640);
    try {
      const bytes = Buffer.from(`${JSON.stringify(content)}\n`, 'utf8');
      let written = 0;
      while (written < bytes.length) written += writeSync(fd, bytes, written, bytes.length - written);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(temp, target);
      return true;
    } catch (error) {
      if (errnoCode(error) === 'EEXIST') return false;
      throw error;
    } finally {
      unlinkQuietly(temp);
    }
  }
}

function readMarker(file: string): Record<string, unknown> | undefined {
  try {
    const v = readJsonFile(file);
    if (v === undefined) return undefined;
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {};
  } catch {
    return {}; // present but unreadable: the marker still counts (fail closed: used / revoked)
  }
}

function isGrantRecord(v: unknown): v is GrantRecord {
  if (typeof v !== 'object' || v === null) return false;
  const g = v as Record<string, unknown>;
  return (
    g.version === 1 &&
    typeof g.id === 'string' &&
    isGrantId(g.id) &&
    typeof g.workload === 'string' &&
    typeof g.preview === 'string' &&
    typeof g.identity === 'string' &&
    typeof g.reason === 'string' &&
    typeof g.created === 'string' &&
    typeof g.expires === 'string' &&
    !Number.isNaN(Date.parse(g.expires)) &&
    typeof g.grantedBy === 'string' &&
    typeof g.tokenSha256 === 'string' &&
    /^[0-9a-f]{64}$/.test(g.tokenSha256)
  );
}
