// The desired-state source: which files of the desired-state repository agentvm reads, at an exact commit
// (or, with --ref WORKTREE, from the working tree, marked uncommitted), and which it refuses.
// Invariants: a commit read never looks at the working tree or the index (no checkout), so a later commit or a
// dirty checkout cannot change what commit C reads; a blob's mode and size are known from the tree listing
// before any blob is read, so an oversized file is never loaded; symlinks and submodules are refused, never
// followed; every blob goes through one GitBatchReader; `files` is sorted by path so output is stable.

import { spawn } from 'node:child_process';
import { closeSync, constants as fsConstants, fstatSync, lstatSync, openSync, readlinkSync, readSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import {
  AgentvmError,
  compareDiagnostics,
  errorDiag,
  userError,
  warningDiag,
  type Diagnostic,
} from '../diagnostics/index.js';
import { GitBatchReader, gitEnv } from './git-batch.js';

/** The `--ref` value that reads the working tree (committed, modified and untracked-but-not-ignored files). */
export const WORKTREE = 'WORKTREE';

/** Largest desired-state file agentvm reads; documents are small YAML files. */
export const DEFAULT_MAX_FILE_BYTES = 1024 * 1024;

export interface RepoFile {
  /** Relative to the repository root (or to the directory given as repo), '/' separators. */
  path: string;
  /** UTF-8 content, a leading BOM removed. */
  text: string;
}

export interface DesiredStateSource {
  /** Absolute path of the repository (or of the directory inside it that holds the desired state). */
  repo: string;
  /** The ref as the user gave it. */
  ref: string;
  /** 40-hex commit the files were read from; null when reading the working tree. */
  commit: string | null;
  /** True for --ref WORKTREE: the files are not a commit, and every view must say so. */
  uncommitted: boolean;
  /** Accepted files, sorted by path. Refused files are absent and have an error in `diagnostics`. */
  files: RepoFile[];
  /** Sorted with compareDiagnostics. */
  diagnostics: Diagnostic[];
}

/** Resolves `ref` (branch, tag, `HEAD~1`, commit id …) to the 40-hex commit it names in `repo`. */
export async function resolveCommit(repo: string, ref: string): Promise<string> {
  const root = await existingDirectory(repo);
  checkRef(ref, root);
  const located = await locate(root, ref);
  return located.commit as string;
}

/**
 * Reads the desired-state files of `repo` at `ref` (or the working tree for WORKTREE). Throws AgentvmError only
 * when there is nothing to read (repo.not-found, repo.not-a-repository, repo.bad-ref, repo.ref-not-found,
 * repo.no-worktree, repo.directory-not-in-commit); a refused file is an error diagnostic and the rest is read.
 */
export async function readDesiredState(opts: {
  repo: string;
  ref: string;
  maxFileBytes?: number;
}): Promise<DesiredStateSource> {
  const root = await existingDirectory(opts.repo);
  const limit = opts.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
  if (opts.ref === WORKTREE) {
    const located = await locate(root, null);
    if (located.bare) {
      throw userError(
        'repo.no-worktree',
        `${root} is a bare repository; it has no working tree to read with --ref ${WORKTREE}.`,
        'Pass a branch, tag or commit with --ref.',
      );
    }
    const { files, diagnostics } = await readWorktree(root, limit);
    return finish(root, opts.ref, null, files, diagnostics);
  }
  checkRef(opts.ref, root);
  const located = await locate(root, opts.ref);
  const commit = located.commit as string;
  const { files, diagnostics } = await readCommit(root, commit, located.prefix, limit);
  return finish(root, opts.ref, commit, files, diagnostics);
}

function finish(
  repo: string,
  ref: string,
  commit: string | null,
  files: RepoFile[],
  diagnostics: Diagnostic[],
): DesiredStateSource {
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  diagnostics.sort(compareDiagnostics);
  return { repo, ref, commit, uncommitted: commit === null, files, diagnostics };
}

// ---------------------------------------------------------------------------------------------------------
// Which paths are desired state

type Placement = 'accepted' | 'ignored-document' | 'ignored';

/**
 * `agentvm.yaml` and everything under `hosts/`, `workloads/` and `trust/` (custom Sigstore trusted roots named
 * by agentvm.yaml) is desired state. `hosts` and `workloads`
 * themselves are accepted too, so that a symlink or submodule standing in for the directory is refused
 * instead of silently hiding every document. YAML elsewhere gets a warning (it is probably misplaced),
 * except under dot-directories and in dot-files (`.github/workflows/ci.yml`, `.pre-commit-config.yaml`),
 * which belong to other tools.
 */
function placement(file: string): Placement {
  if (file === 'agentvm.yaml' || file === 'hosts' || file === 'workloads' || file === 'trust') return 'accepted';
  if (file.startsWith('hosts/') || file.startsWith('workloads/') || file.startsWith('trust/')) return 'accepted';
  if (!/\.ya?ml$/i.test(file)) return 'ignored';
  if (file.split('/').some((segment) => segment.startsWith('.'))) return 'ignored';
  return 'ignored-document';
}

function pathProblem(file: string): string | null {
  if (hasControlCharacter(file)) return 'contains a control character';
  if (file.includes('\\')) return 'contains a backslash';
  if (file.includes('\ufffd')) return 'is not valid UTF-8';
  if (file.split('/').some((segment) => segment.startsWith('-'))) return 'has a name starting with "-"';
  return null;
}

/** C0 and C1 control characters and DEL: printed raw, they could drive the user's terminal. */
function isControl(code: number): boolean {
  return code < 0x20 || (code >= 0x7f && code <= 0x9f);
}

function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (isControl(text.charCodeAt(i))) return true;
  return false;
}

/** A name as it may be printed: control characters as `\xNN`, backslashes doubled so the escape is unambiguous. */
function printable(text: string): string {
  let out = '';
  for (const ch of text) {
    const code = ch.charCodeAt(0);
    out += ch === '\\' ? '\\\\' : isControl(code) ? `\\x${code.toString(16).padStart(2, '0')}` : ch;
  }
  return out;
}

function at(file: string): { location: { file: string; line: number; column: number } } {
  return { location: { file: printable(file), line: 1, column: 1 } };
}

function bytes(n: number): string {
  return n >= 1024 * 1024
    ? `${n} bytes (${(n / (1024 * 1024)).toFixed(1)} MiB)`
    : n >= 1024
      ? `${n} bytes (${(n / 1024).toFixed(1)} KiB)`
      : `${n} bytes`;
}

const diagnose = {
  ignoredDocument(file: string): Diagnostic {
    const detail =
      path.posix.basename(file) === 'agentvm.yml' && !file.includes('/')
        ? 'The repository configuration must be named agentvm.yaml.'
        : 'Move it under hosts/ or workloads/ if agentvm should read it; otherwise this warning can be ignored.';
    return warningDiag(
      'repo.ignored-document',
      `${printable(file)} looks like a desired-state document but is outside hosts/ and workloads/; it is ignored.`,
      { detail, ...at(file) },
    );
  },
  badPath(file: string, problem: string): Diagnostic {
    return errorDiag(
      'repo.bad-path',
      `The file name ${JSON.stringify(printable(file))} ${problem}; agentvm refuses it.`,
      {
        detail:
          'Rename it: names of desired-state files must not contain control characters or backslashes, nor start with "-".',
        ...at(file),
      },
    );
  },
  notADirectory(file: string): Diagnostic {
    return errorDiag('repo.bad-path', `${file} is a file, but it must be a directory of desired-state documents.`, {
      detail: `Move the documents into a ${file}/ directory.`,
      ...at(file),
    });
  },
  symlink(file: string, target: string | null): Diagnostic {
    const to = target === null ? '' : ` to ${JSON.stringify(printable(target))}`;
    return errorDiag(
      'repo.symlink',
      `${printable(file)} is a symbolic link${to}; agentvm refuses symlinks in the desired-state repository.`,
      {
        detail:
          'A symlink could point outside the repository, so what it names would not be part of the commit. Replace it with the content itself.',
        ...at(file),
      },
    );
  },
  submodule(file: string): Diagnostic {
    return errorDiag(
      'repo.submodule',
      `${printable(file)} is a git submodule (or nested repository); agentvm does not read submodules.`,
      {
        detail:
          "A submodule's files are not part of this repository's commit. Copy the files into the repository instead.",
        ...at(file),
      },
    );
  },
  specialFile(file: string): Diagnostic {
    return errorDiag(
      'repo.special-file',
      `${printable(file)} is not a regular file (a FIFO, socket or device); agentvm refuses it.`,
      {
        detail: 'Remove it from the working tree.',
        ...at(file),
      },
    );
  },
  tooLarge(file: string, size: number, limit: number): Diagnostic {
    return errorDiag(
      'repo.file-too-large',
      `${printable(file)} is ${bytes(size)}, over the limit of ${bytes(limit)} for a desired-state file; it was not read.`,
      {
        detail: 'Desired-state documents are small YAML files. Keep large data out of hosts/ and workloads/.',
        ...at(file),
      },
    );
  },
  notUtf8(file: string, why: string): Diagnostic {
    return errorDiag('repo.not-utf8', `${printable(file)} is not UTF-8 text: ${why}.`, {
      detail:
        'Desired-state files must be UTF-8 text. Re-save it as UTF-8, or move binary files out of hosts/ and workloads/.',
      ...at(file),
    });
  },
};

// decode() without { stream: true } starts afresh each call, so one decoder serves every file.
const textDecoder = new TextDecoder('utf-8', { fatal: true });
/** Lossy: a name that is not UTF-8 decodes with U+FFFD, which pathProblem() refuses. */
const pathDecoder = new TextDecoder('utf-8');

/** Decodes a desired-state file, or returns the reason it is not text. Strips a leading BOM. */
function decodeText(content: Buffer): { text: string } | { problem: string } {
  const nul = content.indexOf(0);
  if (nul >= 0) return { problem: `it contains a NUL byte at offset ${nul}` };
  try {
    return { text: textDecoder.decode(content) };
  } catch {
    return { problem: 'it contains bytes that are not valid UTF-8' };
  }
}

// ---------------------------------------------------------------------------------------------------------
// Reading a commit

interface TreeEntry {
  path: string;
  mode: string;
  oid: string;
  /** Null for submodules (git has no size for a commit it does not hold). */
  size: number | null;
}

async function readCommit(
  root: string,
  commit: string,
  prefix: string,
  limit: number,
): Promise<{ files: RepoFile[]; diagnostics: Diagnostic[] }> {
  const diagnostics: Diagnostic[] = [];
  const contents: Array<{ entry: TreeEntry; blob: Promise<Buffer | null> }> = [];
  const symlinks: Array<{ entry: TreeEntry; target: Promise<Buffer | null> }> = [];
  // Blobs are requested while ls-tree is still listing, so listing and reading overlap; the reader is started
  // by the first blob worth reading.
  let reader: GitBatchReader | null = null;
  const read = (oid: string): Promise<Buffer | null> => {
    reader ??= new GitBatchReader(root);
    const blob = reader.read(oid);
    blob.catch(() => {}); // awaited below; if listing fails first, its error is the one reported
    return blob;
  };
  const files: RepoFile[] = [];
  try {
    await listTree(root, commit, prefix, (entry) => {
      const where = placement(entry.path);
      if (where === 'ignored') return;
      if (where === 'ignored-document') {
        diagnostics.push(diagnose.ignoredDocument(entry.path));
        return;
      }
      const problem = pathProblem(entry.path);
      if (problem !== null) diagnostics.push(diagnose.badPath(entry.path, problem));
      // A symlink's blob is its target; a target longer than a path can be is not worth showing.
      else if (entry.mode === '120000')
        symlinks.push({
          entry,
          target: entry.size !== null && entry.size <= 4096 ? read(entry.oid) : Promise.resolve(null),
        });
      else if (entry.mode === '160000') diagnostics.push(diagnose.submodule(entry.path));
      else if (entry.path === 'hosts' || entry.path === 'workloads')
        diagnostics.push(diagnose.notADirectory(entry.path));
      else if (entry.size !== null && entry.size > limit)
        diagnostics.push(diagnose.tooLarge(entry.path, entry.size, limit));
      else contents.push({ entry, blob: read(entry.oid) });
    });
    for (const { entry, target } of symlinks) {
      const bytes = await target;
      diagnostics.push(diagnose.symlink(entry.path, bytes === null ? null : bytes.toString('utf8')));
    }
    for (const { entry, blob } of contents) {
      const bytes = await blob;
      if (bytes === null) {
        throw new AgentvmError(
          'repo.object-missing',
          `Commit ${commit} lists ${entry.path} as blob ${entry.oid}, but git cannot find that object.`,
          {
            detail: `The repository at ${root} is incomplete (a shallow or partial clone?). Run \`git -C ${root} fsck\`, or fetch the full history.`,
          },
        );
      }
      const decoded = decodeText(bytes);
      if ('problem' in decoded) diagnostics.push(diagnose.notUtf8(entry.path, decoded.problem));
      else files.push({ path: entry.path, text: decoded.text });
    }
  } finally {
    await (reader as GitBatchReader | null)?.close();
  }
  return { files, diagnostics };
}

/**
 * `git ls-tree -r -l`: every blob, symlink and submodule of the commit, with mode and size, no content.
 * Entries are handed to onEntry as git prints them.
 */
async function listTree(
  root: string,
  commit: string,
  prefix: string,
  onEntry: (entry: TreeEntry) => void,
): Promise<void> {
  const treeish = prefix === '' ? commit : `${commit}:${prefix.replace(/\/$/, '')}`;
  let tail: Buffer = Buffer.alloc(0);
  let unparsable: Buffer | null = null;
  const onRecord = (record: Buffer): void => {
    const tab = record.indexOf(0x09);
    const [mode, , oid, size] = record.toString('latin1', 0, Math.max(tab, 0)).split(/ +/);
    if (tab < 0 || mode === undefined || oid === undefined || size === undefined) {
      unparsable ??= record;
      return;
    }
    onEntry({
      path: pathDecoder.decode(record.subarray(tab + 1)),
      mode,
      oid,
      size: size === '-' ? null : Number(size),
    });
  };
  const result = await runGit(
    root,
    ['ls-tree', '-r', '-z', '--full-tree', '-l', '--end-of-options', treeish],
    (chunk) => {
      const data = tail.length > 0 ? Buffer.concat([tail, chunk]) : chunk;
      let start = 0;
      for (let end = data.indexOf(0, start); end >= 0; end = data.indexOf(0, start)) {
        onRecord(data.subarray(start, end));
        start = end + 1;
      }
      tail = Buffer.from(data.subarray(start));
    },
  );
  if (result.code !== 0) {
    if (prefix !== '') {
      throw userError(
        'repo.directory-not-in-commit',
        `The directory ${prefix} (the --repo path, inside the git repository) does not exist at commit ${commit}.`,
        'Pass a ref whose commit contains that directory, or use --ref WORKTREE for uncommitted files.',
      );
    }
    throw gitFailed(root, 'ls-tree', result.stderr);
  }
  if (tail.length > 0) onRecord(tail);
  if (unparsable !== null) {
    throw new AgentvmError(
      'git.unexpected-output',
      `git ls-tree printed a record agentvm cannot parse: ${JSON.stringify((unparsable as Buffer).toString('latin1'))}.`,
      {
        source: 'toolkit',
      },
    );
  }
}

// ---------------------------------------------------------------------------------------------------------
// Reading the working tree

type WorktreeRead =
  | { kind: 'file'; text: string }
  | { kind: 'diagnostic'; diagnostic: Diagnostic }
  /** Listed by git but deleted from the working tree: it is not part of the working tree's desired state. */
  | { kind: 'gone' };

async function readWorktree(root: string, limit: number): Promise<{ files: RepoFile[]; diagnostics: Diagnostic[] }> {
  // Tracked and untracked-but-not-ignored files, relative to root (git limits the listing to root when root is a
  // subdirectory of the work tree). A nested repository or submodule is listed as one entry (untracked: with '/').
  // git lists no FIFOs, sockets or devices.
  const result = await runGit(root, ['ls-files', '-z', '-c', '-o', '--exclude-standard']);
  if (result.code !== 0) throw gitFailed(root, 'ls-files', result.stderr);
  const listed = new Set<string>();
  for (const record of splitNul(result.stdout)) listed.add(pathDecoder.decode(record).replace(/\/$/, ''));

  const diagnostics: Diagnostic[] = [];
  const files: RepoFile[] = [];
  const directories = new DirectoryCheck(root);
  // Synchronous reads on purpose: for thousands of small files they are several times faster than fs.promises
  // (no thread-pool round trip per call), and a CLI has nothing else to do meanwhile.
  for (const file of [...listed].sort()) {
    const where = placement(file);
    if (where === 'ignored') continue;
    if (where === 'ignored-document') {
      diagnostics.push(diagnose.ignoredDocument(file));
      continue;
    }
    const problem = pathProblem(file);
    if (problem !== null) {
      diagnostics.push(diagnose.badPath(file, problem));
      continue;
    }
    if (directories.symlinkedAncestor(file) !== null) continue; // reported once, for the directory, below
    const read = readWorktreeFile(root, file, limit);
    if (read.kind === 'diagnostic') diagnostics.push(read.diagnostic);
    else if (read.kind === 'file') files.push({ path: file, text: read.text });
  }
  // A symlinked directory git lists itself (untracked `hosts` → /elsewhere) was reported already.
  const reported = new Set(diagnostics.map((d) => `${d.code} ${d.location?.file}`));
  for (const diagnostic of directories.diagnostics()) {
    if (!reported.has(`${diagnostic.code} ${diagnostic.location?.file}`)) diagnostics.push(diagnostic);
  }
  return { files, diagnostics };
}

function readWorktreeFile(root: string, file: string, limit: number): WorktreeRead {
  const absolute = path.join(root, file);
  let fd: number;
  try {
    // O_NOFOLLOW: a symlink is refused, not followed, even if it replaced the file after git listed it.
    // O_NONBLOCK: opening a FIFO that appeared after git listed the path must not hang the plan.
    fd = openSync(absolute, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return { kind: 'gone' };
    if (code === 'ELOOP') return { kind: 'diagnostic', diagnostic: diagnose.symlink(file, linkTarget(absolute)) };
    throw error;
  }
  try {
    const info = fstatSync(fd);
    // git lists a directory only when it is a gitlink or holds its own repository.
    if (info.isDirectory()) return { kind: 'diagnostic', diagnostic: diagnose.submodule(file) };
    if (!info.isFile()) return { kind: 'diagnostic', diagnostic: diagnose.specialFile(file) };
    if (file === 'hosts' || file === 'workloads')
      return { kind: 'diagnostic', diagnostic: diagnose.notADirectory(file) };
    if (info.size > limit) return { kind: 'diagnostic', diagnostic: diagnose.tooLarge(file, info.size, limit) };
    // One byte more than fstat promised tells a file that grew since; the limit holds for what is read.
    const buffer = Buffer.allocUnsafe(Math.min(info.size, limit) + 1);
    let length = 0;
    for (let n = -1; n !== 0 && length < buffer.length; length += n)
      n = readSync(fd, buffer, length, buffer.length - length, null);
    if (length > limit) return { kind: 'diagnostic', diagnostic: diagnose.tooLarge(file, length, limit) };
    const decoded = decodeText(buffer.subarray(0, length));
    if ('problem' in decoded) return { kind: 'diagnostic', diagnostic: diagnose.notUtf8(file, decoded.problem) };
    return { kind: 'file', text: decoded.text };
  } finally {
    closeSync(fd);
  }
}

function linkTarget(absolute: string): string | null {
  try {
    return readlinkSync(absolute);
  } catch {
    return null;
  }
}

/**
 * O_NOFOLLOW guards only a path's last component. A tracked `workloads/a/contract.yaml` whose `workloads` was
 * replaced by a symlink in the working tree would still be reachable through it, so every directory on the
 * way is checked (once) to be a real directory.
 */
class DirectoryCheck {
  private readonly symlinked = new Map<string, boolean>();

  constructor(private readonly root: string) {}

  symlinkedAncestor(file: string): string | null {
    const segments = file.split('/');
    for (let i = 1; i < segments.length; i++) {
      const directory = segments.slice(0, i).join('/');
      if (this.isSymlink(directory)) return directory;
    }
    return null;
  }

  diagnostics(): Diagnostic[] {
    return [...this.symlinked]
      .filter(([, symlink]) => symlink)
      .map(([directory]) => diagnose.symlink(directory, linkTarget(path.join(this.root, directory))));
  }

  private isSymlink(directory: string): boolean {
    let known = this.symlinked.get(directory);
    if (known === undefined) {
      try {
        known = lstatSync(path.join(this.root, directory)).isSymbolicLink();
      } catch {
        known = false; // gone: the files under it are gone too, and say so themselves
      }
      this.symlinked.set(directory, known);
    }
    return known;
  }
}

// ---------------------------------------------------------------------------------------------------------
// The repository and the ref

async function existingDirectory(repo: string): Promise<string> {
  const absolute = path.resolve(repo);
  let info;
  try {
    info = await stat(absolute);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw userError(
        'repo.not-found',
        `The desired-state repository ${absolute} does not exist.`,
        'Pass --repo with the path of a git checkout of your desired-state repository.',
      );
    }
    throw error;
  }
  if (!info.isDirectory()) {
    throw userError(
      'repo.not-a-repository',
      `${absolute} is a file, not a git repository.`,
      'Pass --repo with the path of a git checkout of your desired-state repository.',
    );
  }
  return absolute;
}

function checkRef(ref: string, root: string): void {
  if (ref === '' || ref.startsWith('-') || hasControlCharacter(ref)) {
    throw userError(
      'repo.bad-ref',
      `${JSON.stringify(printable(ref))} is not a usable ref: a ref must be non-empty, must not start with "-", and must not contain control characters.`,
      `Pass a branch, tag or commit (list them with \`git -C ${root} show-ref\`), or ${WORKTREE} for the working tree.`,
    );
  }
}

interface Located {
  bare: boolean;
  /** Where `root` sits inside the work tree, e.g. `examples/basic/`; '' at the top. */
  prefix: string;
  /** Only when a ref was resolved. */
  commit: string | null;
}

/** One `git rev-parse`: is root a repository, where inside it, and (given a ref) which commit the ref names. */
async function locate(root: string, ref: string | null): Promise<Located> {
  const args = ['rev-parse', '--is-bare-repository', '--show-prefix'];
  if (ref !== null) args.push('--verify', '--quiet', '--end-of-options', `${ref}^{commit}`);
  const result = await runGit(root, args);
  const lines = result.stdout.toString('utf8').split('\n');
  // --is-bare-repository answers first whenever git found a repository, whatever happens to the ref after it.
  if (lines[0] !== 'true' && lines[0] !== 'false') {
    throw userError(
      'repo.not-a-repository',
      `${root} is not a git repository.`,
      `${result.stderr.trim() ? `git says: ${result.stderr.trim()}\n` : ''}Pass --repo with the path of a git checkout of your desired-state repository, or run \`git init\` there.`,
    );
  }
  if (result.code !== 0 || (ref !== null && !/^[0-9a-f]{40}(?:[0-9a-f]{24})?$/.test(lines[2] ?? ''))) {
    throw userError(
      'repo.ref-not-found',
      `The ref ${JSON.stringify(ref)} does not name a commit in ${root}.`,
      `${result.stderr.trim() ? `git says: ${result.stderr.trim()}\n` : ''}List branches and tags with \`git -C ${root} show-ref\` and recent commits with \`git -C ${root} log --oneline\`; use --ref ${WORKTREE} to read uncommitted files.`,
    );
  }
  return { bare: lines[0] === 'true', prefix: lines[1] ?? '', commit: ref === null ? null : (lines[2] as string) };
}

/** Runs git to completion. With onStdout, output is handed over as it arrives instead of being collected. */
function runGit(
  cwd: string,
  args: string[],
  onStdout?: (chunk: Buffer) => void,
): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', args, { cwd, env: gitEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    const stdout: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', onStdout ?? ((chunk: Buffer) => stdout.push(chunk)));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text: string) => (stderr += text));
    child.on('error', (error: NodeJS.ErrnoException) =>
      reject(
        new AgentvmError(
          'git.unavailable',
          `Cannot run git: ${error.code === 'ENOENT' ? 'git is not installed or not on PATH' : error.message}.`,
          { cause: error },
        ),
      ),
    );
    child.on('close', (code) => resolve({ code: code ?? -1, stdout: Buffer.concat(stdout), stderr }));
  });
}

function gitFailed(root: string, command: string, stderr: string): AgentvmError {
  return new AgentvmError('git.failed', `git ${command} failed in ${root}.`, {
    source: 'toolkit',
    detail: stderr.trim() || undefined,
  });
}

function* splitNul(output: Buffer): Generator<Buffer> {
  let start = 0;
  while (start < output.length) {
    let end = output.indexOf(0, start);
    if (end < 0) end = output.length;
    if (end > start) yield output.subarray(start, end);
    start = end + 1;
  }
}
