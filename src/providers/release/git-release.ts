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
import { createHash, randomBytes } from 'node:crypto';
import { statfsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { gitEnv } from '../../contracts/git-batch.js';
import { AgentvmError, errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import { freeSpace, storageError } from '../../state/atomic-file.js';
import type {
  ExpandRequest,
  ExpandResponse,
  ApplyResponse,
  ArtifactRequest,
  ArtifactResponse,
  HostContext,
} from '../provider.js';
import { expandGitReleases } from './expand.js';
import { atAddress, installRelease, ReleaseCode } from './release-lifecycle.js';
import { ReleaseProvider, type InstallContext, type ParsedReleaseConfig } from './release-provider.js';
import { isCapturedReleaseId, isGitReleaseId, pathExists } from './release-store.js';
import { readTarEntries, TarCode, writeTarEntries } from './tar-reader.js';

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
export function parseGitReleaseConfig(
  config: Record<string, unknown>,
  address?: string,
): { config?: GitReleaseConfig; diagnostics: Diagnostic[] } {
  const at = address === undefined ? {} : { address };
  const diagnostics: Diagnostic[] = [];
  const { repo, commit, subdir } = config;
  if (typeof repo !== 'string' || repo.trim() === '') {
    diagnostics.push(
      errorDiag(ReleaseCode.invalidConfig, 'source.git.repo must be a git URL or an absolute path.', {
        ...at,
        path: '$.spec.source.git.repo',
      }),
    );
  } else if (
    repo.startsWith('-') ||
    /[\0\n\r]/.test(repo) ||
    repo.includes('::') ||
    !(path.isAbsolute(repo) || URL_LIKE.test(repo) || SCP_LIKE.test(repo))
  ) {
    diagnostics.push(
      errorDiag(
        ReleaseCode.invalidConfig,
        `source.git.repo ${JSON.stringify(redactUrl(repo))} is not an absolute path or an https, ssh, git or file URL.`,
        {
          ...at,
          path: '$.spec.source.git.repo',
          detail: 'Relative paths and transport helpers (`ext::`, `fd::`) are refused.',
        },
      ),
    );
  }
  if (typeof commit !== 'string' || !isGitReleaseId(commit)) {
    diagnostics.push(
      errorDiag(
        GitReleaseCode.commitNotExact,
        `source.git.commit ${JSON.stringify(commit)} is not an exact 40-hex commit id.`,
        {
          ...at,
          path: '$.spec.source.git.commit',
          detail:
            'Branches, tags and abbreviated ids are refused: pin the full lowercase commit id (`git rev-parse <ref>`).',
        },
      ),
    );
  }
  let normalisedSubdir: string | undefined;
  if (subdir !== undefined) {
    const segments = typeof subdir === 'string' ? subdir.split('/').filter((s) => s !== '' && s !== '.') : [];
    if (typeof subdir !== 'string' || subdir.startsWith('/') || subdir.includes('\0') || segments.includes('..')) {
      diagnostics.push(
        errorDiag(
          ReleaseCode.invalidConfig,
          `source.git.subdir ${JSON.stringify(subdir)} must be a relative path inside the repository.`,
          {
            ...at,
            path: '$.spec.source.git.subdir',
          },
        ),
      );
    } else if (segments.length > 0) normalisedSubdir = segments.join('/');
  }
  if (diagnostics.length > 0) return { diagnostics };
  return {
    config: {
      repo: repo as string,
      commit: commit as string,
      ...(normalisedSubdir ? { subdir: normalisedSubdir } : {}),
    },
    diagnostics,
  };
}

interface GitRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** git's environment: the caller's, minus anything that points git at another repository (contracts/git-batch.ts),
 *  plus the safety pins and the transports a release source may use. */
function gitEnvironment(): NodeJS.ProcessEnv {
  return gitEnv({ GIT_ALLOW_PROTOCOL: 'file:git:http:https:ssh' });
}

function runGit(args: string[]): Promise<GitRun> {
  return new Promise((resolve) => {
    const child = spawn('git', args, { env: gitEnvironment(), stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', (error) => resolve({ code: -1, stdout: '', stderr: error.message }));
    child.on('close', (code) =>
      resolve({
        code: code ?? -1,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      }),
    );
  });
}

/** Attributes that would make `git archive` output differ from the committed blobs, all switched off. */
const NEUTRAL_ATTRIBUTES = '* -text -eol -ident -filter -export-subst -export-ignore -working-tree-encoding\n';

/** ` (N KiB free …)` when the cache's file system is nearly full (git reports a full disk only as "index-pack died"). */
function cacheSpace(dir: string): string {
  try {
    const st = statfsSync(dir);
    return st.bavail * st.bsize < 4 * 1024 * 1024 ? ` (${freeSpace(dir)})` : '';
  } catch {
    return '';
  }
}

/** The bare cache repository for a source URL: `<cache>/git/<sha256(repo)>.git`, created on first use. */
export async function gitCacheRepository(host: HostContext, repo: string): Promise<string> {
  const dir = path.join(host.paths.cache, 'git', `${createHash('sha256').update(repo).digest('hex')}.git`);
  if (!(await pathExists(path.join(dir, 'HEAD')))) {
    await mkdir(path.dirname(dir), { recursive: true });
    // Initialise beside the target and rename into place: concurrent applies may race to create the same cache.
    const temp = `${dir}.init-${process.pid}-${randomBytes(4).toString('hex')}`;
    const init = await runGit(['init', '--bare', '--quiet', temp]);
    if (init.code !== 0) {
      // The environment (a full disk, a read-only cache), not a bug: name the directory, git's reason and the free space.
      await rm(temp, { recursive: true, force: true });
      const reason = init.stderr.trim().split('\n').pop() ?? `exit ${init.code}`;
      const free = freeSpace(path.dirname(dir));
      throw new AgentvmError(
        /No space left|Disk quota/i.test(init.stderr) ? 'state.disk-full' : 'release.cache-failed',
        `Cannot create the git cache ${dir}: ${reason}${free ? ` (${free})` : ''}.`,
        {
          detail:
            'Free space on that file system (or make it writable), then run the command again; nothing was changed.',
        },
      );
    }
    try {
      await rename(temp, dir);
    } catch {
      await rm(temp, { recursive: true, force: true });
      if (!(await pathExists(path.join(dir, 'HEAD')))) throw new Error(`could not create the git cache ${dir}`);
    }
  }
  const attributes = path.join(dir, 'info', 'attributes');
  try {
    await mkdir(path.join(dir, 'info'), { recursive: true });
    await writeFile(attributes, NEUTRAL_ATTRIBUTES);
  } catch (error) {
    throw storageError(error, attributes, 'The git cache was not changed.');
  }
  return dir;
}

/** One fetch per cache repository at a time within this process (parallel resources often share a source). */
const cacheQueues = new Map<string, Promise<unknown>>();
function serialised<T>(key: string, work: () => Promise<T>): Promise<T> {
  const prev = cacheQueues.get(key) ?? Promise.resolve();
  const next = prev.then(work, work);
  cacheQueues.set(
    key,
    next.catch(() => undefined),
  );
  return next;
}

/** Whether the loose ref `refs/agentvm/releases/<commit>` names exactly that commit (packed refs: answer no). */
async function pinnedRef(gitDir: string, commit: string): Promise<boolean> {
  try {
    return (await readFile(path.join(gitDir, 'refs', 'agentvm', 'releases', commit), 'utf8')).trim() === commit;
  } catch {
    return false;
  }
}

async function objectType(gitDir: string, spec: string): Promise<string | undefined> {
  const run = await runGit(['--git-dir', gitDir, 'cat-file', '-t', spec]);
  return run.code === 0 ? run.stdout.trim() : undefined;
}

/** Gets `commit` into the cache (fetching only when missing) and proves it is a commit object. */
async function ensureCommit(
  host: HostContext,
  config: GitReleaseConfig,
  address: string,
  progress: (m: string) => void,
): Promise<{ gitDir?: string; diagnostics: Diagnostic[] }> {
  return serialised(`${host.paths.cache}\u0000${config.repo}`, () => ensureCommitNow(host, config, address, progress));
}

async function ensureCommitNow(
  host: HostContext,
  config: GitReleaseConfig,
  address: string,
  progress: (m: string) => void,
): Promise<{ gitDir?: string; diagnostics: Diagnostic[] }> {
  const gitDir = await gitCacheRepository(host, config.repo);
  const repoName = redactUrl(config.repo);
  // The pin ref below is written only after the object was proven to be a commit, and it keeps gc from pruning it:
  // when it is there, the commit is in the cache — two git processes fewer on every plan of an applied release.
  if (config.subdir === undefined && (await pinnedRef(gitDir, config.commit))) return { gitDir, diagnostics: [] };
  let type = await objectType(gitDir, config.commit);
  if (type === undefined) {
    progress(`${address}: fetching ${config.commit} from ${repoName}`);
    let fetch = await runGit(['--git-dir', gitDir, 'fetch', '--no-tags', '--quiet', config.repo, config.commit]);
    if (fetch.code !== 0) {
      // Servers that refuse unadvertised object ids: fetch the branches and look for the commit among them.
      const byBranches = await runGit([
        '--git-dir',
        gitDir,
        'fetch',
        '--no-tags',
        '--quiet',
        config.repo,
        '+refs/heads/*:refs/agentvm/heads/*',
      ]);
      if (byBranches.code === 0) fetch = byBranches;
    }
    type = await objectType(gitDir, config.commit);
    if (type === undefined) {
      return {
        diagnostics: [
          errorDiag(
            GitReleaseCode.fetchFailed,
            `Could not fetch commit ${config.commit} from ${repoName} into the cache ${gitDir}${cacheSpace(gitDir)}.`,
            {
              address,
              detail: `${redactUrl(fetch.stderr.trim()) || 'The repository does not have that commit.'} Check that the commit is pushed, that the repository is reachable, and that the cache's file system has room.`,
            },
          ),
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
          errorDiag(
            GitReleaseCode.subdirMissing,
            `Commit ${config.commit} has no directory ${JSON.stringify(config.subdir)}.`,
            {
              address,
              path: '$.spec.source.git.subdir',
              detail:
                subType === undefined
                  ? 'Check source.git.subdir against the repository at that commit.'
                  : `It is a ${subType}, not a directory.`,
            },
          ),
        ],
      };
    }
  }
  return { gitDir, diagnostics: [] };
}

/** Streams `git archive` of the commit (or its subdir) into `dir`. */
/** Largest release archive agentvm buffers (a release is code, not data). */
const MAX_ARCHIVE_BYTES = 512 * 1024 * 1024;

/**
 * The signed artifact of a git release: `git archive --format=tar <commit>` (or `… <commit> -- <subdir>`: archiving
 * the commit, not a tree, keeps the commit's timestamp and id in the archive, so the bytes are reproducible).
 */
export async function archiveBytes(
  gitDir: string,
  config: GitReleaseConfig,
): Promise<{ bytes?: Buffer; diagnostics: Diagnostic[] }> {
  const args = [
    '-c',
    'tar.umask=0002',
    '--git-dir',
    gitDir,
    'archive',
    '--format=tar',
    config.commit,
    ...(config.subdir === undefined ? [] : ['--', config.subdir]),
  ];
  const child = spawn('git', args, { env: gitEnvironment(), stdio: ['ignore', 'pipe', 'pipe'] });
  const err: Buffer[] = [];
  const out: Buffer[] = [];
  let size = 0;
  let tooBig = false;
  child.stderr.on('data', (c: Buffer) => err.push(c));
  child.stdout.on('data', (c: Buffer) => {
    size += c.length;
    if (size > MAX_ARCHIVE_BYTES) {
      tooBig = true;
      child.kill();
      return;
    }
    out.push(c);
  });
  const code = await new Promise<number>((resolve) => {
    child.on('error', () => resolve(-1));
    child.on('close', (c) => resolve(c ?? -1));
  });
  const what = `${config.commit}${config.subdir === undefined ? '' : ` -- ${config.subdir}`}`;
  if (tooBig)
    return {
      diagnostics: [
        errorDiag(GitReleaseCode.archiveFailed, `git archive ${what} is larger than ${MAX_ARCHIVE_BYTES} bytes.`, {
          detail: 'A release is code, not data: keep large files out of the released tree.',
        }),
      ],
    };
  if (code !== 0)
    return {
      diagnostics: [
        errorDiag(GitReleaseCode.archiveFailed, `git archive ${what} failed.`, {
          detail: Buffer.concat(err).toString('utf8').trim() || `exit code ${code}`,
        }),
      ],
    };
  return { bytes: Buffer.concat(out), diagnostics: [] };
}

/** The content-store source of a git release: repository, commit and subdir (archive settings are fixed above). */
function gitSourceKey(config: GitReleaseConfig): string {
  return `release.git\0${config.repo}\0${config.commit}\0${config.subdir ?? ''}`;
}

/** `git archive` of the few most recent releases, per process: a fleet on one commit archives it once per apply. */
const RECENT_ARCHIVES = 4;
const recentArchives = new Map<string, Promise<{ bytes?: Buffer; diagnostics: Diagnostic[] }>>();
function recentArchive(
  gitDir: string,
  config: GitReleaseConfig,
): Promise<{ bytes?: Buffer; diagnostics: Diagnostic[] }> {
  const key = `${gitDir}\0${gitSourceKey(config)}`;
  let made = recentArchives.get(key);
  if (made === undefined) {
    made = archiveBytes(gitDir, config);
    // A failure is not remembered: the next install tries again.
    made.then(
      (m) => (m.bytes ? undefined : recentArchives.delete(key)),
      () => recentArchives.delete(key),
    );
    recentArchives.set(key, made);
    while (recentArchives.size > RECENT_ARCHIVES) recentArchives.delete(recentArchives.keys().next().value as string);
  }
  return made;
}

async function archiveInto(bytes: Buffer, config: GitReleaseConfig, dir: string): Promise<Diagnostic[]> {
  const strip = config.subdir === undefined ? 0 : config.subdir.split('/').filter((s) => s !== '' && s !== '.').length;
  const read = await readTarEntries(bytes, { stripComponents: strip, gzip: false });
  const refusal = read.diagnostics.filter((d) => d.severity === 'error');
  if (refusal.length > 0) {
    return refusal.map((d) =>
      d.code === TarCode.link
        ? { ...d, detail: `${d.detail ?? ''} Symbolic links are not allowed in a release commit (or subdir).`.trim() }
        : d,
    );
  }
  return (await writeTarEntries(dir, read.entries)).diagnostics;
}

export class GitReleaseProvider extends ReleaseProvider<GitReleaseConfig> {
  readonly type = 'release.git';

  expand(req: ExpandRequest): ExpandResponse {
    return expandGitReleases(req);
  }

  protected parseConfig(config: Record<string, unknown>, address: string): ParsedReleaseConfig<GitReleaseConfig> {
    return parseGitReleaseConfig(config, address);
  }

  protected identityOf(config: GitReleaseConfig): string {
    return gitReleaseIdentity(config);
  }

  protected identityMismatch(config: GitReleaseConfig): { summary: string; detail: string } {
    return {
      summary: `is not its commit ${config.commit}.`,
      detail: 'A release.git resource is identified by its commit (gitReleaseIdentity).',
    };
  }

  protected owns(releaseId: string): boolean {
    return isGitReleaseId(releaseId);
  }

  /** Workloads whose live release is a commit (or a capture in a workload holding commits). */
  protected listsWorkload(releaseId: string | undefined, releases: readonly string[]): boolean {
    if (releaseId === undefined) return false;
    if (isGitReleaseId(releaseId)) return true;
    return isCapturedReleaseId(releaseId) && releases.some(isGitReleaseId);
  }

  protected async install({ req, config, store, progress }: InstallContext<GitReleaseConfig>): Promise<ApplyResponse> {
    const { change, host } = req;
    const release = await ensureCommit(host, config, change.address, progress);
    if (!release.gitDir) return { diagnostics: release.diagnostics };
    const gitDir = release.gitDir;
    // The bytes verified are the bytes installed: archive once (per commit, for this process's recent applies), check
    // the signature on every install, extract from the same buffer when the content store does not hold the tree.
    const archive = async (): Promise<{ bytes?: Buffer; diagnostics: Diagnostic[] }> => recentArchive(gitDir, config);
    const precheck = req.verifyArtifact
      ? async (): Promise<Diagnostic[]> => {
          const made = await archive();
          if (!made.bytes) return made.diagnostics;
          return (await req.verifyArtifact!(made.bytes)).filter((d) => d.severity === 'error');
        }
      : undefined;
    const materialise = async (dir: string): Promise<Diagnostic[]> => {
      const made = await archive();
      if (!made.bytes) return made.diagnostics;
      return archiveInto(made.bytes, config, dir);
    };
    const response = await installRelease({
      store,
      address: change.address,
      provider: this.type,
      workload: change.workload,
      releaseId: config.commit,
      identity: gitReleaseIdentity(config),
      ...(req.locked ? { locked: req.locked } : {}),
      materialise,
      sourceKey: gitSourceKey(config),
      ...(precheck ? { precheck } : {}),
      progress,
      ...(req.beforeMutation ? { beforeMutation: req.beforeMutation } : {}),
    });
    return { ...response, diagnostics: atAddress(change.address, response.diagnostics) };
  }

  async artifact(req: ArtifactRequest): Promise<ArtifactResponse> {
    const parsed = parseGitReleaseConfig(req.desired.config, req.desired.address);
    if (!parsed.config) return { diagnostics: parsed.diagnostics };
    const release = await ensureCommit(req.host, parsed.config, req.desired.address, () => {});
    if (!release.gitDir) return { diagnostics: release.diagnostics };
    const made = await archiveBytes(release.gitDir, parsed.config);
    return {
      ...(made.bytes ? { bytes: made.bytes } : {}),
      diagnostics: atAddress(req.desired.address, made.diagnostics),
    };
  }
}
