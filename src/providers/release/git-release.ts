// GitReleaseProvider (`release.git`, archetype A, `promote-agent`): installs the tree of an exact commit (optionally a
// subdirectory of it) as an immutable, read-only release named by the commit.
// Invariants:
//   - Only an exact 40-hex commit id is accepted, and it must name a commit object: a branch, a tag or a tree id
//     is refused, so the same desired state always means the same bytes.
//   - The release is exactly the committed tree: the cache repository's `info/attributes` switches off every
//     attribute that would make `git archive` rewrite content (export-subst, export-ignore, eol conversion,
//     ident, filters, working-tree-encoding).
//   - Fetched commits live in a bare cache repository per source URL, pinned by a ref so gc never drops them; a
//     commit already in the cache is not fetched again (re-applies work offline).
//   - Only the file, git, http(s) and ssh transports are allowed (GIT_ALLOW_PROTOCOL): a repo URL can never run a
//     command through `ext::`. Credentials in a URL are redacted from every message.

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { PassThrough } from 'node:stream';
import path from 'node:path';
import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import type {
  ApplyRequest,
  ApplyResponse,
  HostContext,
  ListRequest,
  ListResponse,
  PlanRequest,
  PlanResponse,
  Provider,
  ReadRequest,
  ReadResponse,
  ValidateRequest,
  ValidateResponse,
} from '../provider.js';
import {
  atAddress,
  checkWorkload,
  installRelease,
  listReleases,
  readRelease,
  RELEASE_ADDRESS_PREFIX,
  releaseAddress,
  ReleaseCode,
  removeReleases,
  rollbackRelease,
  type RollbackOptions,
  type RollbackResponse,
} from './release-lifecycle.js';
import { planRelease } from './release-plan.js';
import { isCapturedReleaseId, isGitReleaseId, pathExists, ReleaseStore } from './release-store.js';
import { extractTar, TarCode } from './tar-reader.js';

export const GitReleaseCode = {
  commitNotExact: 'release.commit-not-exact',
  notACommit: 'release.not-a-commit',
  fetchFailed: 'release.fetch-failed',
  subdirMissing: 'release.subdir-missing',
  archiveFailed: 'release.archive-failed',
} as const;

/** Desired configuration of a `release.git` resource (the manifest's `source.git`). */
export interface GitReleaseConfig {
  /** Git URL or absolute path of the source repository. */
  repo: string;
  /** Exact 40-hex commit. */
  commit: string;
  /** Relative directory inside the commit to release; the whole tree when absent. */
  subdir?: string;
}

/** The identity of a git release: its commit (which is also its release id). */
export function gitReleaseIdentity(config: GitReleaseConfig): string {
  return config.commit;
}

const SCP_LIKE = /^(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9.-]+:(?!\/\/)[^:]/;
const URL_LIKE = /^(?:https?|ssh|git|file):\/\//;

/** `https://user:token@host/…` → `https://***@host/…`: no credential reaches a diagnostic or progress message. */
export function redactUrl(text: string): string {
  return text.replace(/([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^/@\s]+@/g, '$1***@');
}

/** Parses and checks the desired config; the diagnostics say what is wrong with which field. */
export function parseGitReleaseConfig(config: Record<string, unknown>, address?: string): { config?: GitReleaseConfig; diagnostics: Diagnostic[] } {
  const at = address === undefined ? {} : { address };
  const diagnostics: Diagnostic[] = [];
  const { repo, commit, subdir } = config;
  if (typeof repo !== 'string' || repo.trim() === '') {
    diagnostics.push(errorDiag(ReleaseCode.invalidConfig, 'source.git.repo must be a git URL or an absolute path.', { ...at, path: '$.spec.source.git.repo' }));
  } else if (repo.startsWith('-') || /[\0\n\r]/.test(repo) || repo.includes('::') || !(path.isAbsolute(repo) || URL_LIKE.test(repo) || SCP_LIKE.test(repo))) {
    diagnostics.push(
      errorDiag(ReleaseCode.invalidConfig, `source.git.repo ${JSON.stringify(redactUrl(repo))} is not an absolute path or an https, ssh, git or file URL.`, {
        ...at,
        path: '$.spec.source.git.repo',
        detail: 'Relative paths and transport helpers (`ext::`, `fd::`) are refused.',
      }),
    );
  }
  if (typeof commit !== 'string' || !isGitReleaseId(commit)) {
    diagnostics.push(
      errorDiag(GitReleaseCode.commitNotExact, `source.git.commit ${JSON.stringify(commit)} is not an exact 40-hex commit id.`, {
        ...at,
        path: '$.spec.source.git.commit',
        detail: 'Branches, tags and abbreviated ids are refused: pin the full lowercase commit id (`git rev-parse <ref>`).',
      }),
    );
  }
  let normalisedSubdir: string | undefined;
  if (subdir !== undefined) {
    const segments = typeof subdir === 'string' ? subdir.split('/').filter((s) => s !== '' && s !== '.') : [];
    if (typeof subdir !== 'string' || subdir.startsWith('/') || subdir.includes('\0') || segments.includes('..')) {
      diagnostics.push(
        errorDiag(ReleaseCode.invalidConfig, `source.git.subdir ${JSON.stringify(subdir)} must be a relative path inside the repository.`, {
          ...at,
          path: '$.spec.source.git.subdir',
        }),
      );
    } else if (segments.length > 0) normalisedSubdir = segments.join('/');
  }
  if (diagnostics.length > 0) return { diagnostics };
  return { config: { repo: repo as string, commit: commit as string, ...(normalisedSubdir ? { subdir: normalisedSubdir } : {}) }, diagnostics };
}

interface GitRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** git's environment: the caller's, minus anything that points git at another repository, plus the safety pins. */
function gitEnvironment(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of ['GIT_DIR', 'GIT_WORK_TREE', 'GIT_INDEX_FILE', 'GIT_OBJECT_DIRECTORY', 'GIT_ALTERNATE_OBJECT_DIRECTORIES', 'GIT_COMMON_DIR', 'GIT_NAMESPACE', 'GIT_PREFIX']) {
    delete env[key];
  }
  return { ...env, GIT_TERMINAL_PROMPT: '0', GIT_NO_REPLACE_OBJECTS: '1', GIT_ALLOW_PROTOCOL: 'file:git:http:https:ssh' };
}

function runGit(args: string[]): Promise<GitRun> {
  return new Promise((resolve) => {
    const child = spawn('git', args, { env: gitEnvironment(), stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', (error) => resolve({ code: -1, stdout: '', stderr: error.message }));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }));
  });
}

/** Attributes that would make `git archive` output differ from the committed blobs, all switched off. */
const NEUTRAL_ATTRIBUTES = '* -text -eol -ident -filter -export-subst -export-ignore -working-tree-encoding\n';

/** The bare cache repository for a source URL: `<cache>/git/<sha256(repo)>.git`, created on first use. */
export async function gitCacheRepository(host: HostContext, repo: string): Promise<string> {
  const dir = path.join(host.paths.cache, 'git', `${createHash('sha256').update(repo).digest('hex')}.git`);
  if (!(await pathExists(path.join(dir, 'HEAD')))) {
    await mkdir(path.dirname(dir), { recursive: true });
    const init = await runGit(['init', '--bare', '--quiet', dir]);
    if (init.code !== 0) throw new Error(`git init --bare ${dir} failed: ${init.stderr.trim()}`);
  }
  await mkdir(path.join(dir, 'info'), { recursive: true });
  await writeFile(path.join(dir, 'info', 'attributes'), NEUTRAL_ATTRIBUTES);
  return dir;
}

async function objectType(gitDir: string, spec: string): Promise<string | undefined> {
  const run = await runGit(['--git-dir', gitDir, 'cat-file', '-t', spec]);
  return run.code === 0 ? run.stdout.trim() : undefined;
}

/** Gets `commit` into the cache (fetching only when missing) and proves it is a commit object. */
async function ensureCommit(host: HostContext, config: GitReleaseConfig, address: string, progress: (m: string) => void): Promise<{ gitDir?: string; diagnostics: Diagnostic[] }> {
  const gitDir = await gitCacheRepository(host, config.repo);
  const repoName = redactUrl(config.repo);
  let type = await objectType(gitDir, config.commit);
  if (type === undefined) {
    progress(`${address}: fetching ${config.commit} from ${repoName}`);
    let fetch = await runGit(['--git-dir', gitDir, 'fetch', '--no-tags', '--quiet', config.repo, config.commit]);
    if (fetch.code !== 0) {
      // Servers that refuse unadvertised object ids: fetch the branches and look for the commit among them.
      const byBranches = await runGit(['--git-dir', gitDir, 'fetch', '--no-tags', '--quiet', config.repo, '+refs/heads/*:refs/agentvm/heads/*']);
      if (byBranches.code === 0) fetch = byBranches;
    }
    type = await objectType(gitDir, config.commit);
    if (type === undefined) {
      return {
        diagnostics: [
          errorDiag(GitReleaseCode.fetchFailed, `Could not fetch commit ${config.commit} from ${repoName}.`, {
            address,
            detail: `${redactUrl(fetch.stderr.trim()) || 'The repository does not have that commit.'} Check that the commit is pushed and that the repository is reachable.`,
          }),
        ],
      };
    }
  }
  if (type !== 'commit') {
    return {
      diagnostics: [
        errorDiag(GitReleaseCode.notACommit, `${config.commit} in ${repoName} is a ${type} object, not a commit.`, {
          address,
          detail: 'source.git.commit must name a commit; tags and trees are refused.',
        }),
      ],
    };
  }
  // Pinned so that gc in the cache never prunes a release's commit.
  await runGit(['--git-dir', gitDir, 'update-ref', `refs/agentvm/releases/${config.commit}`, config.commit]);
  if (config.subdir !== undefined) {
    const subType = await objectType(gitDir, `${config.commit}:${config.subdir}`);
    if (subType !== 'tree') {
      return {
        diagnostics: [
          errorDiag(GitReleaseCode.subdirMissing, `Commit ${config.commit} has no directory ${JSON.stringify(config.subdir)}.`, {
            address,
            path: '$.spec.source.git.subdir',
            detail: subType === undefined ? 'Check source.git.subdir against the repository at that commit.' : `It is a ${subType}, not a directory.`,
          }),
        ],
      };
    }
  }
  return { gitDir, diagnostics: [] };
}

/** Streams `git archive` of the commit (or its subdir) into `dir`. */
async function archiveInto(gitDir: string, config: GitReleaseConfig, dir: string): Promise<Diagnostic[]> {
  const treeish = config.subdir === undefined ? config.commit : `${config.commit}:${config.subdir}`;
  const child = spawn('git', ['--git-dir', gitDir, 'archive', '--format=tar', treeish], { env: gitEnvironment(), stdio: ['ignore', 'pipe', 'pipe'] });
  const err: Buffer[] = [];
  child.stderr.on('data', (c: Buffer) => err.push(c));
  const exited = new Promise<number>((resolve) => {
    child.on('error', () => resolve(-1));
    child.on('close', (code) => resolve(code ?? -1));
  });
  // Piped at once: Node drains (and discards) a child's stdout that nobody reads by the time the child exits,
  // and an async iterator only starts reading at its first `next()`, after the extractor's first await.
  const output = child.stdout.pipe(new PassThrough({ highWaterMark: 1 << 20 }));
  const result = await extractTar(output, dir, { gzip: false });
  if (result.diagnostics.length > 0 && child.exitCode === null) {
    child.stdout.unpipe(output);
    child.kill();
  }
  const code = await exited;
  const refusal = result.diagnostics.filter((d) => d.code !== TarCode.corrupt);
  if (refusal.length > 0) {
    return refusal.map((d) =>
      d.code === TarCode.link ? { ...d, detail: `${d.detail ?? ''} Symbolic links are not allowed in a release commit (or subdir).`.trim() } : d,
    );
  }
  if (code !== 0) {
    return [errorDiag(GitReleaseCode.archiveFailed, `git archive ${treeish} failed.`, { detail: Buffer.concat(err).toString('utf8').trim() || `exit code ${code}` })];
  }
  return result.diagnostics;
}

export class GitReleaseProvider implements Provider {
  readonly type = 'release.git';
  readonly addressPrefix = RELEASE_ADDRESS_PREFIX;

  validate(req: ValidateRequest): ValidateResponse {
    const { resource } = req;
    const diagnostics = [...checkWorkload(resource.workload, resource.address)];
    const parsed = parseGitReleaseConfig(resource.config, resource.address);
    diagnostics.push(...parsed.diagnostics);
    if (parsed.config && resource.identity !== gitReleaseIdentity(parsed.config)) {
      diagnostics.push(
        errorDiag(ReleaseCode.invalidConfig, `Resource identity ${JSON.stringify(resource.identity)} is not its commit ${parsed.config.commit}.`, {
          address: resource.address,
          detail: 'A release.git resource is identified by its commit (gitReleaseIdentity).',
        }),
      );
    }
    return { diagnostics };
  }

  read(req: ReadRequest): Promise<ReadResponse> {
    return readRelease(new ReleaseStore(req.host.paths.releases), req, this.type);
  }

  plan(req: PlanRequest): PlanResponse {
    return planRelease(req);
  }

  async apply(req: ApplyRequest): Promise<ApplyResponse> {
    const { change, host } = req;
    const store = new ReleaseStore(host.paths.releases);
    const progress = req.progress ?? (() => {});
    const invalid = checkWorkload(change.workload, change.address);
    if (invalid.length > 0) return { diagnostics: invalid };

    if (change.action === 'delete') {
      return removeReleases({ store, address: change.address, workload: change.workload, owns: isGitReleaseId, progress, ...(req.beforeMutation ? { beforeMutation: req.beforeMutation } : {}) });
    }
    if (!change.desired) {
      return { diagnostics: [errorDiag(ReleaseCode.invalidConfig, `Change ${change.action} of ${change.address} carries no desired configuration.`, { address: change.address })] };
    }
    const parsed = parseGitReleaseConfig(change.desired.config, change.address);
    if (!parsed.config) return { diagnostics: parsed.diagnostics };
    const config = parsed.config;

    const release = await ensureCommit(host, config, change.address, progress);
    if (!release.gitDir) return { diagnostics: release.diagnostics };
    const gitDir = release.gitDir;
    const response = await installRelease({
      store,
      address: change.address,
      provider: this.type,
      workload: change.workload,
      releaseId: config.commit,
      identity: gitReleaseIdentity(config),
      ...(req.locked ? { locked: req.locked } : {}),
      materialise: (dir) => archiveInto(gitDir, config, dir),
      progress,
      ...(req.beforeMutation ? { beforeMutation: req.beforeMutation } : {}),
    });
    return { ...response, diagnostics: atAddress(change.address, response.diagnostics) };
  }

  /** Workloads whose live release is a commit (or a capture in a workload holding commits). */
  list(req: ListRequest): Promise<ListResponse> {
    return listReleases(new ReleaseStore(req.host.paths.releases), (releaseId, releases) => {
      if (releaseId === undefined) return false;
      if (isGitReleaseId(releaseId)) return true;
      return isCapturedReleaseId(releaseId) && releases.some(isGitReleaseId);
    });
  }

  /**
   * Points `current` back at an installed release (a commit, or a `captured-*` release) after verifying it is
   * byte for byte `expectedDigest`; refused with a diagnostic otherwise. The git source is not needed.
   */
  rollbackTo(host: HostContext, workload: string, releaseId: string, expectedDigest: string, options: RollbackOptions = {}): Promise<RollbackResponse> {
    const target = { address: releaseAddress(workload), provider: this.type, workload, releaseId, expectedDigest };
    return rollbackRelease(new ReleaseStore(host.paths.releases), target, options);
  }
}
