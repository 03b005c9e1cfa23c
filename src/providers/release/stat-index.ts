// StatIndex: what a file's content hash was when it had a given stat — git's index, for release trees (ADR 0020) and
// gateway unit files (ADR 0027). A no-op plan stats every file of every live release and every agentvm drop-in; it
// re-reads and re-hashes only files whose stat is not in the index, and trusts the index for the rest.
//   key    `<dev>:<inode>` (hard-linked copies of one store file share one entry)
//   entry  size, mtime and ctime in nanoseconds, content sha256 (hex), and optionally a tag: what a reader needs
//          from the content without reading it (a drop-in's owner address). Tags are recorded only for content
//          agentvm rendered itself, which holds no secret value; a hash is not a value.
// Invariants:
//   - An optimisation only: a missing, unreadable, corrupt or foreign-format index is an empty one, and every answer
//     it gives is one a full re-hash would give. Deleting it changes no plan, only its speed.
//   - Racily clean (git's rule): an entry is trusted only when the file's mtime and ctime are in a second strictly
//     before the second the index file was written. A file changed in the same second as the index write may still
//     have the recorded stat on a file system with coarse timestamps, so it is re-hashed.
//   - ctime cannot be set from user space: a file rewritten with its size and mtime restored (touch -d) still has
//     another ctime, so it misses the index and is re-hashed.
//   - Written by rename(2) of a complete temp file; concurrent writers (two plans) each write a whole index: the last
//     one wins, and an entry that does not match a file's stat is simply not used.

import { mkdir, readFile, stat } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import path from 'node:path';
import { replaceFile } from '../../support/replace-file.js';

const FORMAT = 'agentvm-stat-index/1';
/** A tag is a short printable word (a resource address): nothing that could carry free text. */
const TAG = /^[A-Za-z0-9._@:-]{1,200}$/;
const NS_PER_SECOND = 1_000_000_000n;

interface Entry {
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  sha256: string;
  tag?: string;
  /** Hashed by this process after observing this stat: trusted here without the racily-clean rule. */
  fresh?: boolean;
}

/** The stat fields the index compares (node's BigIntStats has them all). */
export type IndexedStat = Pick<BigIntStats, 'dev' | 'ino' | 'size' | 'mtimeNs' | 'ctimeNs'>;

function keyOf(s: IndexedStat): string {
  return `${s.dev}:${s.ino}`;
}

export class StatIndex {
  private readonly entries = new Map<string, Entry>();
  /** Entries read from the file are trusted only for files last changed before this second (racily clean). */
  private trustedBefore = -1n;
  private dirty = false;
  private saving: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  hits = 0;
  misses = 0;

  private constructor(readonly file: string | undefined) {}

  /** An index with no file: nothing is trusted, nothing is saved (the plan without an index). */
  static empty(): StatIndex {
    return new StatIndex(undefined);
  }

  /** Loads `file`; anything unreadable is an empty index that will be rewritten. */
  static async load(file: string): Promise<StatIndex> {
    const index = new StatIndex(file);
    try {
      const [text, st] = await Promise.all([readFile(file, 'utf8'), stat(file, { bigint: true })]);
      const doc = JSON.parse(text) as { format?: unknown; entries?: unknown };
      if (doc.format !== FORMAT || typeof doc.entries !== 'object' || doc.entries === null) return index;
      for (const [key, value] of Object.entries(doc.entries as Record<string, unknown>)) {
        if (!Array.isArray(value) || (value.length !== 4 && value.length !== 5)) continue;
        const [size, mtime, ctime, sha256, tag] = value as unknown[];
        if (
          typeof size !== 'string' ||
          !/^[0-9]+$/.test(size) ||
          typeof mtime !== 'string' ||
          !/^-?[0-9]+$/.test(mtime) ||
          typeof ctime !== 'string' ||
          !/^-?[0-9]+$/.test(ctime) ||
          typeof sha256 !== 'string' ||
          !/^[0-9a-f]{64}$/.test(sha256) ||
          (tag !== undefined && (typeof tag !== 'string' || !TAG.test(tag)))
        )
          continue;
        index.entries.set(key, {
          size: BigInt(size),
          mtimeNs: BigInt(mtime),
          ctimeNs: BigInt(ctime),
          sha256,
          ...(tag !== undefined ? { tag } : {}),
        });
      }
      index.trustedBefore = st.mtimeNs / NS_PER_SECOND;
    } catch {
      index.entries.clear();
    }
    return index;
  }

  /** The content hash recorded for exactly this stat, unless it is racily clean; undefined means: re-hash. */
  lookup(s: IndexedStat): string | undefined {
    return this.lookupEntry(s)?.sha256;
  }

  /** lookup() with the entry's tag. */
  lookupEntry(s: IndexedStat): { sha256: string; tag?: string } | undefined {
    const e = this.entries.get(keyOf(s));
    const same = e !== undefined && e.size === s.size && e.mtimeNs === s.mtimeNs && e.ctimeNs === s.ctimeNs;
    const racy = s.mtimeNs / NS_PER_SECOND >= this.trustedBefore || s.ctimeNs / NS_PER_SECOND >= this.trustedBefore;
    if (!same || (racy && !e.fresh)) {
      // A racily clean entry is re-hashed, and the index rewritten so that a later write can make it trusted.
      if (same) this.dirty = true;
      this.misses++;
      return undefined;
    }
    this.hits++;
    return e.tag !== undefined ? { sha256: e.sha256, tag: e.tag } : { sha256: e.sha256 };
  }

  /** Records the hash read for a file that had stat `s` before it was read (and its tag: see the header). */
  record(s: IndexedStat, sha256: string, tag?: string): void {
    if (tag !== undefined && !TAG.test(tag)) throw new Error(`bug: stat index tag ${JSON.stringify(tag)}`);
    const key = keyOf(s);
    const e = this.entries.get(key);
    if (
      e &&
      e.fresh &&
      e.size === s.size &&
      e.mtimeNs === s.mtimeNs &&
      e.ctimeNs === s.ctimeNs &&
      e.sha256 === sha256 &&
      e.tag === tag
    )
      return;
    this.entries.set(key, {
      size: s.size,
      mtimeNs: s.mtimeNs,
      ctimeNs: s.ctimeNs,
      sha256,
      ...(tag !== undefined ? { tag } : {}),
      fresh: true,
    });
    this.dirty = true;
  }

  /**
   * Writes the index when it changed (temp file + rename). Calls while a write is queued share it; a call while one
   * is running queues the next. Best effort: a host root we cannot write keeps no index, and plans stay correct.
   */
  save(): Promise<void> {
    if (this.file === undefined || !this.dirty) return this.saving ?? Promise.resolve();
    if (this.queued) return this.queued;
    const previous = this.saving ?? Promise.resolve();
    const next = previous.then(() => {
      this.queued = undefined;
      return this.write(this.file as string);
    });
    this.queued = next;
    this.saving = next;
    return next;
  }

  private async write(file: string): Promise<void> {
    if (!this.dirty) return;
    this.dirty = false;
    const entries: Record<string, string[]> = {};
    for (const [key, e] of this.entries)
      entries[key] = [String(e.size), String(e.mtimeNs), String(e.ctimeNs), e.sha256, ...(e.tag ? [e.tag] : [])];
    try {
      await mkdir(path.dirname(file), { recursive: true });
      await replaceFile(file, JSON.stringify({ format: FORMAT, entries }));
    } catch {
      // A cache: a write that fails leaves the old index (or none), and the next plan hashes again.
    }
  }
}

/** Where a host keeps its stat index (release and unit files; the name predates unit files): beside the other caches. */
export function statIndexFile(cacheDir: string): string {
  return path.join(cacheDir, 'release-stat-index.json');
}

/**
 * The index of one plan (or apply), shared through the request snapshot so every read of the plan uses one copy;
 * without a snapshot, one per call. Loaded once; `AGENTVM_NO_STAT_INDEX=1` gives the plan without it (bench, tests).
 */
export function sharedStatIndex(cacheDir: string, snapshot: Map<string, unknown> | undefined): Promise<StatIndex> {
  if (process.env.AGENTVM_NO_STAT_INDEX === '1') return Promise.resolve(StatIndex.empty());
  const key = `release.stat-index:${cacheDir}`;
  let index = snapshot?.get(key) as Promise<StatIndex> | undefined;
  if (index === undefined) {
    index = StatIndex.load(statIndexFile(cacheDir));
    snapshot?.set(key, index);
  }
  return index;
}
