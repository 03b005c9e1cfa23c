// ReleaseStore: the on-host layout of immutable releases, shared by `release.git` and `release.package`.
//   <releases>/<workload>/<releaseId>/   exactly the release content; sealed read-only (files 0444, 0555 when
//                                        executable, directories 0555)
//   <releases>/<workload>/current        symlink to `<releaseId>` (a bare name, never a path)
//   <releases>/<workload>/.tmp-*         work in progress: extractions, link swaps, dirs set aside; removed by
//                                        the next apply
// Invariants:
//   - Every name this store joins into a path is checked first: workloads are DNS labels, release ids match
//     RELEASE_ID_PATTERN. Nothing user-supplied becomes a path unchecked.
//   - `current` only ever changes by rename(2) of a fresh symlink over it: readers see the old or the new release,
//     never a half state. A release directory appears by rename(2) of a finished, sealed temp directory.
//   - `current` is never followed outside the workload directory: a link whose target is not a release id is
//     reported as `invalid`, not read.

import { randomBytes } from 'node:crypto';
import { lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { chmod, lstat, mkdir, open, readdir, rename, rm, rmdir, symlink } from 'node:fs/promises';
import path from 'node:path';
import { errnoCode } from '../../state/atomic-file.js';

/** A release directory name: no slash, no leading dot (those are the store's own), not `current`. */
export const RELEASE_ID_PATTERN = /^(?!current$)[A-Za-z0-9@+_~-][A-Za-z0-9@+._~-]{0,254}$/;
export const WORKLOAD_PATTERN = /^[a-z][a-z0-9-]{0,62}$/;
const GIT_COMMIT = /^[0-9a-f]{40}$/;
const TEMP_PREFIX = '.tmp-';

export function isReleaseId(id: string): boolean {
  return RELEASE_ID_PATTERN.test(id);
}

/** A git release id is the 40-hex commit. */
export function isGitReleaseId(id: string): boolean {
  return GIT_COMMIT.test(id);
}

/** Where a live release that agentvm did not install (or that was hand-modified) is kept: `captured-<digest12>`. */
export function capturedReleaseId(digest: string, length = 12): string {
  return `captured-${digest.replace(/^sha256:/, '').slice(0, length)}`;
}

export function isCapturedReleaseId(id: string): boolean {
  return /^captured-[0-9a-f]{12,64}$/.test(id);
}

/** What `<workload>/current` is. */
export type CurrentState =
  | { kind: 'none' }
  /** A symlink to a release id; `dangling` when that directory does not exist. */
  | { kind: 'link'; releaseId: string; path: string; dangling: boolean }
  /** A real directory (a hand install): live, but not a release the store can name yet. */
  | { kind: 'directory'; path: string }
  /** A symlink (or other file) that does not name a release id in this workload directory. */
  | { kind: 'invalid'; detail: string };

export async function pathExists(file: string): Promise<boolean> {
  try {
    await lstat(file);
    return true;
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return false;
    throw error;
  }
}

export class ReleaseStore {
  /** `releasesDir` is the host's `paths.releases`. */
  constructor(readonly releasesDir: string) {}

  workloadDir(workload: string): string {
    if (!WORKLOAD_PATTERN.test(workload))
      throw new Error(`bug: workload name ${JSON.stringify(workload)} was not validated`);
    return path.join(this.releasesDir, workload);
  }

  releasePath(workload: string, releaseId: string): string {
    if (!isReleaseId(releaseId)) throw new Error(`bug: release id ${JSON.stringify(releaseId)} was not validated`);
    return path.join(this.workloadDir(workload), releaseId);
  }

  currentPath(workload: string): string {
    return path.join(this.workloadDir(workload), 'current');
  }

  // current() and releases() run once per workload in every plan: synchronous metadata calls (ADR 0027).
  async current(workload: string): Promise<CurrentState> {
    const link = this.currentPath(workload);
    let stat;
    try {
      stat = lstatSync(link);
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return { kind: 'none' };
      throw error;
    }
    if (stat.isDirectory()) return { kind: 'directory', path: link };
    if (!stat.isSymbolicLink()) return { kind: 'invalid', detail: `${link} is neither a symlink nor a directory` };
    const target = readlinkSync(link);
    if (!isReleaseId(target))
      return {
        kind: 'invalid',
        detail: `${link} points to ${JSON.stringify(target)}, which is not a release in ${this.workloadDir(workload)}`,
      };
    const releasePath = this.releasePath(workload, target);
    let dangling = true;
    try {
      dangling = !lstatSync(releasePath).isDirectory();
    } catch (error) {
      if (errnoCode(error) !== 'ENOENT') throw error;
    }
    return { kind: 'link', releaseId: target, path: releasePath, dangling };
  }

  /** Release directory names of a workload, sorted (excluding `current` and the store's own `.tmp-*`). */
  async releases(workload: string): Promise<string[]> {
    let entries;
    try {
      entries = readdirSync(this.workloadDir(workload), { withFileTypes: true });
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return [];
      throw error;
    }
    return entries
      .filter((e) => e.isDirectory() && e.name !== 'current' && isReleaseId(e.name))
      .map((e) => e.name)
      .sort();
  }

  /** Workload directories (DNS-label names) under the releases dir. */
  async workloads(): Promise<string[]> {
    let entries;
    try {
      entries = await readdir(this.releasesDir, { withFileTypes: true });
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return [];
      throw error;
    }
    return entries
      .filter((e) => e.isDirectory() && WORKLOAD_PATTERN.test(e.name))
      .map((e) => e.name)
      .sort();
  }

  /** Creates the workload directory and removes leftovers of an interrupted apply. Returns how many were removed. */
  async prepareWorkload(workload: string): Promise<number> {
    const dir = this.workloadDir(workload);
    await mkdir(dir, { recursive: true, mode: 0o755 });
    let removed = 0;
    for (const name of await readdir(dir)) {
      if (!name.startsWith(TEMP_PREFIX)) continue;
      await this.remove(path.join(dir, name));
      removed++;
    }
    return removed;
  }

  /** A fresh, not yet existing path under the workload dir for work in progress. */
  tempPath(workload: string): string {
    return path.join(this.workloadDir(workload), `${TEMP_PREFIX}${randomBytes(6).toString('hex')}`);
  }

  /**
   * Seals a tree read-only: files 0444 (0555 when any execute bit is set), directories 0555, children before their
   * parent. Symlinks are left alone (chmod would follow them). Does not change the tree's digest.
   */
  async seal(dir: string): Promise<void> {
    const stat = await lstat(dir);
    if (stat.isSymbolicLink()) return;
    if (stat.isDirectory()) {
      await chmod(dir, 0o755); // readable and enterable while we walk it
      for (const name of await readdir(dir)) await this.seal(path.join(dir, name));
      await chmod(dir, 0o555);
    } else if (stat.isFile()) {
      await chmod(dir, (stat.mode & 0o111) !== 0 ? 0o555 : 0o444);
    }
  }

  /** Removes a sealed tree (re-opening directories first, for non-root users). Missing is fine. */
  async remove(target: string): Promise<void> {
    try {
      await rm(target, { recursive: true, force: true });
      return;
    } catch (error) {
      if (errnoCode(error) !== 'EACCES' && errnoCode(error) !== 'EPERM') throw error;
    }
    await this.unseal(target);
    await rm(target, { recursive: true, force: true });
  }

  private async unseal(dir: string): Promise<void> {
    const stat = await lstat(dir);
    if (!stat.isDirectory()) return;
    await chmod(dir, 0o755);
    for (const name of await readdir(dir)) await this.unseal(path.join(dir, name));
  }

  /** Points `current` at `releaseId` atomically: a new symlink under a temp name renamed over `current`. */
  async switchCurrent(workload: string, releaseId: string): Promise<void> {
    this.releasePath(workload, releaseId); // validates the id
    const temp = this.tempPath(workload);
    await symlink(releaseId, temp);
    try {
      await rename(temp, this.currentPath(workload));
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
    await this.syncDir(this.workloadDir(workload));
  }

  /** Removes the `current` symlink (never a directory). */
  async unlinkCurrent(workload: string): Promise<void> {
    const state = await this.current(workload);
    if (state.kind === 'link' || state.kind === 'invalid') await rm(this.currentPath(workload), { force: true });
  }

  /** fsync a directory so renames in it survive a crash. */
  async syncDir(dir: string): Promise<void> {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  /** Removes the workload directory if it is empty; true when it is gone. */
  async removeWorkloadIfEmpty(workload: string): Promise<boolean> {
    try {
      await rmdir(this.workloadDir(workload));
      return true;
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return true;
      if (errnoCode(error) === 'ENOTEMPTY' || errnoCode(error) === 'EEXIST') return false;
      throw error;
    }
  }
}
