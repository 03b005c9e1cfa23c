// ContentStore: release trees kept once per content digest (ADR 0020).
//   <store>/<hex>/             a sealed release tree whose treeDigest is `sha256:<hex>` (files 0444/0555, dirs 0555)
//   <store>/sources/<sha256>   the digest a source (a git commit and subdir, a package integrity) materialised to
//   <store>/.tmp-*             work in progress; removed by garbage collection
// `<store>` is `store/` beside the host's releases directory (var/lib/agentvm/store).
// A workload's release directory (release-store.ts) is a tree of hard links to one entry: a thousand workloads on
// one commit extract it once, each install is a mkdir and a link(2) per file, and the unit sandbox binds a real
// directory (BindReadOnlyPaths= does not have to follow a symlink out of the releases directory).
// Invariants:
//   - An entry is used only after it is proven to be its digest: hashed (treeDigest) once, then, within this
//     process, by every file's stat being the one observed after the last link from it (an edit changes ctime).
//     A hand edit through any link changes the shared inode, is caught the same way, and the edited entry is
//     moved out of the store and rebuilt from its source; the edited copy stays where the workload has it.
//   - Garbage is an entry none of whose files has another link: no release directory refers to it, so no lockfile
//     entry or rollback target can (both name release directories). Removing it never changes a release.
//   - The source map is a hint: a missing or wrong one only costs a materialisation.

import { createHash, randomBytes } from 'node:crypto';
import { chmod, copyFile, link, lstat, mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { replaceFile } from '../../support/replace-file.js';
import { treeDigest } from './tree-digest.js';
import type { StatIndex } from './stat-index.js';

const HEX = /^[0-9a-f]{64}$/;
const DIGEST = /^sha256:([0-9a-f]{64})$/;
const TEMP_PREFIX = '.tmp-';

/** What GC would free: entries no release directory links to. */
export interface StoreGarbage {
  digests: string[];
  bytes: number;
}

/** Per entry path: the stat of every file and directory as this process last verified or linked it. */
const verifiedStats = new Map<string, Map<string, string>>();
/** One verify-and-link at a time per entry within this process (links change the stats the memo holds). */
const entryQueues = new Map<string, Promise<unknown>>();

function errnoCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

function hexOf(digest: string): string {
  const m = DIGEST.exec(digest);
  if (!m) throw new Error(`bug: ${JSON.stringify(digest)} is not a sha256: digest`);
  return m[1] as string;
}

/** rel → kind, inode, size, mtime, ctime of every entry below `dir` (directories first in walk order). */
async function statsOf(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (rel: string): Promise<void> => {
    for (const e of await readdir(path.join(dir, rel), { withFileTypes: true })) {
      const child = rel === '' ? e.name : `${rel}/${e.name}`;
      const s = await lstat(path.join(dir, child), { bigint: true });
      out.set(child, `${s.mode}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`);
      if (e.isDirectory()) await walk(child);
    }
  };
  await walk('');
  return out;
}

function sameStats(a: Map<string, string>, b: Map<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

export class ContentStore {
  /** `releasesDir` is the host's `paths.releases`; the store is its sibling `store/`. */
  constructor(releasesDir: string) {
    this.dir = path.join(path.dirname(path.resolve(releasesDir)), 'store');
  }

  readonly dir: string;

  entryPath(digest: string): string {
    return path.join(this.dir, hexOf(digest));
  }

  /** A fresh path in the store for a tree being materialised. */
  tempPath(): string {
    return path.join(this.dir, `${TEMP_PREFIX}${randomBytes(6).toString('hex')}`);
  }

  private sourceFile(sourceKey: string): string {
    return path.join(this.dir, 'sources', createHash('sha256').update(sourceKey).digest('hex'));
  }

  async prepare(): Promise<void> {
    await mkdir(path.join(this.dir, 'sources'), { recursive: true, mode: 0o755 });
  }

  /** The digest a source materialised to before, when its entry is still there and proven intact. */
  async lookupSource(sourceKey: string, index?: StatIndex): Promise<string | undefined> {
    let digest: string;
    try {
      digest = (await readFile(this.sourceFile(sourceKey), 'utf8')).trim();
    } catch {
      return undefined;
    }
    if (!DIGEST.test(digest)) return undefined;
    return (await this.verify(digest, index)) ? digest : undefined;
  }

  async recordSource(sourceKey: string, digest: string): Promise<void> {
    await replaceFile(this.sourceFile(sourceKey), `${digest}\n`);
  }

  /**
   * True when the entry exists and is byte for byte `digest`. An entry that exists but differs (edited through a
   * link) is moved out of the store, so that the next materialisation can take its place.
   */
  verify(digest: string, index?: StatIndex): Promise<boolean> {
    const entry = this.entryPath(digest);
    return this.serialised(entry, async () => {
      const memo = verifiedStats.get(entry);
      if (memo) {
        const now = await statsOf(entry).catch(() => undefined);
        if (now && sameStats(memo, now)) return true;
        verifiedStats.delete(entry);
      }
      let tree;
      try {
        tree = await treeDigest(entry, index);
      } catch (error) {
        if (errnoCode(error) === 'ENOENT') return false;
        throw error;
      }
      if (tree.digest !== digest || tree.irregular.length > 0) {
        await this.evict(entry);
        return false;
      }
      verifiedStats.set(entry, await statsOf(entry));
      return true;
    });
  }

  /**
   * Puts a sealed tree whose digest is `digest` into the store (or drops it when an intact entry is already there).
   * Returns nothing: afterwards the entry is there and verified.
   */
  async adopt(temp: string, digest: string, index?: StatIndex): Promise<void> {
    const entry = this.entryPath(digest);
    if (await this.verify(digest, index)) {
      await removeTree(temp);
      return;
    }
    try {
      await rename(temp, entry);
    } catch (error) {
      // Another process put the same digest there in the meantime.
      if ((errnoCode(error) === 'ENOTEMPTY' || errnoCode(error) === 'EEXIST') && (await this.verify(digest, index))) {
        await removeTree(temp);
        return;
      }
      throw error;
    }
    await this.serialised(entry, async () => {
      verifiedStats.set(entry, await statsOf(entry));
    });
  }

  /**
   * Creates `to` (which must not exist) as a tree of hard links to the verified entry `digest`, directories sealed
   * 0555. Falls back to copies across file systems. Returns false (nothing left at `to`) when the entry changed
   * since it was verified.
   */
  link(digest: string, to: string): Promise<boolean> {
    const entry = this.entryPath(digest);
    return this.serialised(entry, async () => {
      const memo = verifiedStats.get(entry);
      const now = await statsOf(entry).catch(() => undefined);
      if (!memo || !now || !sameStats(memo, now)) return false;
      const dirs: string[] = [];
      const walk = async (rel: string): Promise<void> => {
        const target = path.join(to, rel);
        await mkdir(target, { mode: 0o755 });
        dirs.push(target);
        for (const e of await readdir(path.join(entry, rel), { withFileTypes: true })) {
          const child = rel === '' ? e.name : `${rel}/${e.name}`;
          if (e.isDirectory()) await walk(child);
          else await linkOrCopy(path.join(entry, child), path.join(to, child));
        }
      };
      try {
        await walk('');
      } catch (error) {
        await removeTree(to);
        throw error;
      }
      for (const d of dirs.reverse()) await chmod(d, 0o555);
      // Our links changed the files' ctime: what we just observed is the state this process vouches for.
      verifiedStats.set(entry, await statsOf(entry));
      return true;
    });
  }

  /** Entries no release directory links to (every file has one link), and their bytes. */
  async garbage(): Promise<StoreGarbage> {
    const digests: string[] = [];
    let bytes = 0;
    for (const name of await this.entries()) {
      const dir = path.join(this.dir, name);
      let referenced = false;
      let size = 0;
      const walk = async (rel: string): Promise<void> => {
        for (const e of await readdir(path.join(dir, rel), { withFileTypes: true })) {
          if (referenced) return;
          const child = rel === '' ? e.name : `${rel}/${e.name}`;
          if (e.isDirectory()) await walk(child);
          else {
            const s = await lstat(path.join(dir, child));
            if (s.nlink > 1) referenced = true;
            size += s.size;
          }
        }
      };
      try {
        await walk('');
      } catch (error) {
        if (errnoCode(error) === 'ENOENT') continue;
        throw error;
      }
      if (!referenced) {
        digests.push(`sha256:${name}`);
        bytes += size;
      }
    }
    return { digests, bytes };
  }

  /** Removes unreferenced entries, leftovers of interrupted work, and source hints naming entries that are gone. */
  async collect(): Promise<StoreGarbage> {
    const garbage = await this.garbage();
    for (const digest of garbage.digests) {
      const entry = this.entryPath(digest);
      verifiedStats.delete(entry);
      await this.evict(entry);
    }
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      if (name.startsWith(TEMP_PREFIX)) await removeTree(path.join(this.dir, name));
    }
    const sources = path.join(this.dir, 'sources');
    for (const name of await readdir(sources).catch(() => [] as string[])) {
      const file = path.join(sources, name);
      const digest = (await readFile(file, 'utf8').catch(() => '')).trim();
      const m = DIGEST.exec(digest);
      if (!m || !(await exists(path.join(this.dir, m[1] as string)))) await rm(file, { force: true });
    }
    return garbage;
  }

  /** The paths of all entries (digest-named directories). */
  async entryPaths(): Promise<string[]> {
    return (await this.entries()).map((name) => path.join(this.dir, name));
  }

  private async entries(): Promise<string[]> {
    try {
      return (await readdir(this.dir, { withFileTypes: true }))
        .filter((e) => e.isDirectory() && HEX.test(e.name))
        .map((e) => e.name)
        .sort();
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return [];
      throw error;
    }
  }

  /** Moves an entry out of the store's namespace, then removes it (its files live on where other links hold them). */
  private async evict(entry: string): Promise<void> {
    const aside = this.tempPath();
    try {
      await rename(entry, aside);
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return;
      throw error;
    }
    await removeTree(aside);
  }

  private serialised<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = entryQueues.get(key) ?? Promise.resolve();
    const next = previous.then(work, work);
    entryQueues.set(
      key,
      next.catch(() => undefined),
    );
    return next;
  }
}

async function linkOrCopy(from: string, to: string): Promise<void> {
  try {
    await link(from, to);
  } catch (error) {
    if (errnoCode(error) !== 'EXDEV' && errnoCode(error) !== 'EPERM') throw error;
    // Another file system (or a kernel refusing links to files we do not own): a sealed copy of the same bytes.
    await copyFile(from, to);
    await chmod(to, (await lstat(from)).mode & 0o777);
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch {
    return false;
  }
}

/** Removes a sealed tree: directories are re-opened first (files' own modes are left alone: they are shared). */
export async function removeTree(target: string): Promise<void> {
  try {
    await rm(target, { recursive: true, force: true });
    return;
  } catch (error) {
    if (errnoCode(error) !== 'EACCES' && errnoCode(error) !== 'EPERM') throw error;
  }
  const open = async (dir: string): Promise<void> => {
    const s = await lstat(dir).catch(() => undefined);
    if (!s?.isDirectory()) return;
    await chmod(dir, 0o755);
    for (const name of await readdir(dir)) await open(path.join(dir, name));
  };
  await open(target);
  await rm(target, { recursive: true, force: true });
}
