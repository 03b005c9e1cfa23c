// gitdir(): a real git repository in a fresh temp directory, built from an inline file map (after changesets'
// test helper). Commits are deterministic: fixed author, committer and dates, and no global or system git
// config is read, so the same file maps give the same commit ids on every machine.
//
//   const repo = await gitdir({ 'agentvm.yaml': 'apiVersion: agentvm.dev/v1alpha1\n', 'hosts/a.yaml': '…' });
//   const second = await repo.commitFiles({ 'hosts/a.yaml': null, 'workloads/x/link': { symlink: '../../etc/passwd' } });
//   await repo.cleanup();

import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A file's content; `{ symlink }` makes a symbolic link to that target; null (in commitFiles/writeFiles) deletes. */
export type FileContent = string | Buffer | { symlink: string } | null;
export type FileMap = Record<string, FileContent>;

export interface GitDir {
  /** Absolute path of the repository (its work tree). */
  dir: string;
  /** 40-hex id of the first commit (on branch `main`). */
  commit: string;
  /** Writes the files into the work tree, stages everything and commits; returns the new commit id. */
  commitFiles(files: FileMap, message?: string): Promise<string>;
  /** Writes the files into the work tree without staging or committing (a dirty checkout). */
  writeFiles(files: FileMap): Promise<void>;
  /** Runs git in the repository with the deterministic environment; returns stdout. */
  git(...args: string[]): Promise<string>;
  cleanup(): Promise<void>;
}

const IDENTITY = {
  GIT_AUTHOR_NAME: 'agentvm test',
  GIT_AUTHOR_EMAIL: 'test@agentvm.invalid',
  GIT_AUTHOR_DATE: '2025-01-01T00:00:00Z',
  GIT_COMMITTER_NAME: 'agentvm test',
  GIT_COMMITTER_EMAIL: 'test@agentvm.invalid',
  GIT_COMMITTER_DATE: '2025-01-01T00:00:00Z',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_CONFIG_GLOBAL: '/dev/null',
};

function gitEnvironment(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  // A test started from a git hook inherits these; they would redirect git to the outer repository.
  for (const key of [
    'GIT_DIR',
    'GIT_WORK_TREE',
    'GIT_INDEX_FILE',
    'GIT_OBJECT_DIRECTORY',
    'GIT_COMMON_DIR',
    'GIT_PREFIX',
  ])
    delete env[key];
  return { ...env, ...IDENTITY };
}

/**
 * `at`: the repository's directory (created; it must not exist) instead of a fresh temp name — for a repository whose
 * path ends up in manifests, where mkdtemp's mixed-case suffix reads as a high-entropy secret to policy.secret-literal.
 */
export async function gitdir(files: FileMap = {}, at?: string): Promise<GitDir> {
  const dir = at ?? (await mkdtemp(path.join(os.tmpdir(), 'agentvm-gitdir-')));
  if (at) await mkdir(at, { recursive: false });
  const env = gitEnvironment();
  const git = async (...args: string[]): Promise<string> => {
    const { stdout } = await run('git', args, { cwd: dir, env, maxBuffer: 256 * 1024 * 1024 });
    return stdout;
  };
  const writeFiles = async (map: FileMap): Promise<void> => {
    for (const [name, content] of Object.entries(map)) {
      const file = path.join(dir, name);
      await rm(file, { recursive: true, force: true });
      if (content === null) continue;
      await mkdir(path.dirname(file), { recursive: true });
      if (typeof content === 'object' && !Buffer.isBuffer(content)) await symlink(content.symlink, file);
      else await writeFile(file, content);
    }
  };
  const commitFiles = async (map: FileMap, message = 'update'): Promise<string> => {
    await writeFiles(map);
    await git('add', '--all');
    await git('commit', '--quiet', '--allow-empty', '--no-verify', '-m', message);
    return (await git('rev-parse', 'HEAD')).trim();
  };
  try {
    await git('init', '--quiet', '--initial-branch=main');
    const commit = await commitFiles(files, 'initial');
    return { dir, commit, commitFiles, writeFiles, git, cleanup: () => rm(dir, { recursive: true, force: true }) };
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}
