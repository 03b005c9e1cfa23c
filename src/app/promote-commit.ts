// Crash-safe promote commits (issue 21, ADR 0015). A promote changes three things of the desired-state checkout — the
// branch ref, the index and the working-tree files — and git has no transaction over them. A promote killed between
// `git add` and `git commit` left the pin change staged (the retry refused it as `promote.dirty`), and a git killed
// while holding `.git/index.lock` left that lock behind for good.
//
// Invariants:
// - Nothing the user sees changes before the commit exists: the new blobs, tree and commit are written as unreferenced
//   objects (a temporary index of ours, never `.git/index`), and the branch moves by one compare-and-swap
//   `git update-ref <ref> <new> <base>`. Killed before it, the checkout is exactly as it was.
// - A journal (`<git dir>/agentvm-promote.json`, written whole) names the base, the new commit and every file's
//   before/after content before the ref moves; the next promote reads it and finishes the change (ref moved) or drops
//   it (ref not moved). A journal whose writer is not provably dead is a running promote: refused, never taken over.
// - agentvm's git never holds `.git/index.lock`: the new index is built in a file of ours and installed under git's
//   lock protocol by link(2) (the lock appears whole, with content whose sha256 the journal recorded first) and
//   rename(2). A leftover lock is removed only when it is provably ours (that sha256, or the commit id in a ref lock —
//   a commit nobody else knows yet) or provably orphaned (empty and held open by no process: git writes a lock's
//   content before it ever closes it).

import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import {
  existsSync,
  linkSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  statSync,
  unlinkSync,
} from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { gitEnv } from '../contracts/git-batch.js';
import { AgentvmError, userError } from '../diagnostics/index.js';
import {
  fsyncDirectory,
  identityFields,
  provablyDead,
  readJsonFile,
  removeDeadTemps,
  selfIdentity,
  writeFileAtomic,
  type ProcessIdentity,
} from '../state/index.js';

/** One file of a pin change, by its path relative to the top of the checkout. */
export interface PinFile {
  rel: string;
  after: Buffer;
}

interface JournalFile {
  rel: string;
  mode: string;
  blob: string;
  /** sha256 of the content before the promote, or null when the file did not exist. */
  before: string | null;
  after: string;
}

interface Journal {
  formatVersion: 1;
  holder: ProcessIdentity;
  ref: string;
  base: string;
  commit: string;
  files: JournalFile[];
  /** sha256 of the index this promote installs, recorded before `.git/index.lock` is created. */
  indexSha256?: string;
}

interface Checkout {
  top: string;
  gitDir: string;
  commonDir: string;
}

const JOURNAL = 'agentvm-promote.json';

/** Commits `files` on top of HEAD, then brings index and working tree to it. Returns the new commit. */
export async function commitPinChange(top: string, files: PinFile[], message: string): Promise<string> {
  const co = await checkout(top);
  const base = (await git(top, ['rev-parse', '--verify', 'HEAD'])).trim();
  const ref = (await git(top, ['symbolic-ref', '-q', 'HEAD']).catch(() => 'HEAD')).trim() || 'HEAD';
  const entries: JournalFile[] = [];
  for (const f of files) {
    const blob = (await git(top, ['hash-object', '-w', '--stdin'], f.after)).trim();
    const mode = (await git(top, ['ls-tree', base, '--', f.rel])).split(' ')[0] || '100644';
    const abs = join(top, f.rel);
    entries.push({
      rel: f.rel,
      mode,
      blob,
      before: existsSync(abs) ? sha256(readFileSync(abs)) : null,
      after: sha256(f.after),
    });
  }
  const commit = await commitObject(co, base, entries, message);
  const journal: Journal = { formatVersion: 1, holder: selfIdentity(), ref, base, commit, files: entries };
  writeJournal(co, journal);
  faultPoint();
  await git(top, ['update-ref', '-m', `promote: ${message.split('\n')[0]}`, ref, commit, base]).catch(
    async (error: unknown) => {
      // A git killed after it moved the ref fails too: then the commit is published, and the checkout follows.
      if ((await git(top, ['rev-parse', '--verify', '-q', ref]).catch(() => '')).trim() === commit) return;
      throw new AgentvmError(
        'promote.ref-moved',
        `${ref} moved while promote was committing (it is no longer ${base.slice(0, 12)}), or its lock is held by another git command.`,
        {
          detail: 'Nothing was committed. Run promote again.',
          cause: error,
        },
      );
    },
  );
  faultPoint();
  await finishCheckout(co, journal, files);
  return commit;
}

/**
 * Finishes or drops a promote that was killed (its journal is still there). Returns notes for the result; throws
 * `promote.in-progress` when the journal's writer may still be running.
 */
export async function recoverInterruptedPromote(top: string): Promise<string[]> {
  const co = await checkout(top);
  const file = join(co.gitDir, JOURNAL);
  const journal = readJournal(file);
  removeOurTemps(co, journal?.holder);
  removeDeadTemps(co.gitDir, (name) => name === JOURNAL || name.startsWith('agentvm-promote.'));
  if (!journal) return [];
  if (journal.holder.pid !== process.pid && !provablyDead(journal.holder)) {
    throw userError(
      'promote.in-progress',
      `Another promote (pid ${journal.holder.pid}) is committing in this repository (${file}).`,
      'Wait for it to finish, then run promote again. If that process is gone and ran in another container or boot, remove the journal file named here.',
    );
  }
  const notes: string[] = [];
  if (removeStaleRefLock(co, journal))
    notes.push(`Removed a stale lock of ${journal.ref} left by an interrupted promote.`);
  const current = (await git(top, ['rev-parse', '--verify', '-q', journal.ref]).catch(() => '')).trim();
  const committed = current === journal.commit || (current !== '' && (await isAncestor(top, journal.commit, current)));
  if (committed) {
    writeJournal(co, { ...journal, holder: selfIdentity() }); // ours now: a racing promote sees a live holder
    await finishCheckout(co, journal, undefined);
    notes.push(
      `Finished a promote that was interrupted after committing ${journal.commit}: the index and working tree now match it.`,
    );
  } else {
    removeOurIndexLock(co, journal);
    unlinkQuiet(file);
    fsyncDirectory(co.gitDir);
    notes.push('An interrupted promote had not committed; nothing of it remained in the index or working tree.');
  }
  return notes;
}

/** Builds the new commit with a private index: no object of it is referenced until the ref moves. */
async function commitObject(co: Checkout, base: string, entries: JournalFile[], message: string): Promise<string> {
  const index = privatePath(co, 'index');
  try {
    const env = { GIT_INDEX_FILE: index };
    await git(co.top, ['read-tree', base], undefined, env);
    for (const e of entries)
      await git(co.top, ['update-index', '--add', '--cacheinfo', `${e.mode},${e.blob},${e.rel}`], undefined, env);
    const tree = (await git(co.top, ['write-tree'], undefined, env)).trim();
    return (await git(co.top, ['commit-tree', tree, '-p', base, '-F', '-'], Buffer.from(message))).trim();
  } finally {
    unlinkQuiet(index);
    unlinkQuiet(`${index}.lock`);
  }
}

/** Brings the index entries and working-tree files of the journal to the committed content, then drops the journal. */
async function finishCheckout(co: Checkout, journal: Journal, files: PinFile[] | undefined): Promise<void> {
  removeOurIndexLock(co, journal);
  // A killed file write leaves its temp file (named by the writer's pid and namespace) next to the target.
  for (const e of journal.files) removeDeadTemps(dirname(join(co.top, e.rel)), (name) => name === basename(e.rel));
  if (!(await indexHas(co, journal.files))) await installIndex(co, journal);
  for (const e of journal.files) {
    const abs = join(co.top, e.rel);
    const now = existsSync(abs) ? sha256(readFileSync(abs)) : null;
    if (now === e.after) continue;
    // Only our own half-done write is replaced: content that is neither before nor after is the user's edit, kept.
    if (now !== e.before) continue;
    const bytes =
      files?.find((f) => f.rel === e.rel)?.after ??
      Buffer.from(await git(co.top, ['cat-file', 'blob', e.blob], undefined, {}, 'buffer'));
    writeFileAtomic(abs, bytes, { mode: e.mode === '100755' ? 0o755 : 0o644 });
    faultPoint();
  }
  unlinkQuiet(join(co.gitDir, JOURNAL));
  fsyncDirectory(co.gitDir);
  faultPoint();
}

/** Does the real index already hold the journal's blobs? (Read without taking a lock.) */
async function indexHas(co: Checkout, entries: JournalFile[]): Promise<boolean> {
  const out = await git(co.top, ['ls-files', '-s', '--', ...entries.map((e) => e.rel)]);
  const staged = new Map(
    out
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => [l.split('\t')[1], l.split(' ')[1]] as const),
  );
  return entries.every((e) => staged.get(e.rel) === e.blob);
}

/**
 * Installs the index with the journal's entries under git's lock protocol: the lock appears whole (link of a file
 * whose sha256 the journal recorded first), the index it replaces is re-checked under the lock, then rename.
 */
async function installIndex(co: Checkout, journal: Journal): Promise<void> {
  const indexFile = join(co.gitDir, 'index');
  const lock = `${indexFile}.lock`;
  for (let attempt = 0; attempt < 5; attempt++) {
    const snapshot = existsSync(indexFile) ? readFileSync(indexFile) : undefined;
    const next = privatePath(co, 'next-index');
    try {
      const env = { GIT_INDEX_FILE: next };
      if (snapshot) writeFileAtomic(next, snapshot);
      else await git(co.top, ['read-tree', journal.commit], undefined, env);
      for (const e of journal.files)
        await git(co.top, ['update-index', '--add', '--cacheinfo', `${e.mode},${e.blob},${e.rel}`], undefined, env);
      writeJournal(co, { ...journal, holder: selfIdentity(), indexSha256: sha256(readFileSync(next)) });
      faultPoint();
      try {
        linkSync(next, lock);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        throw new AgentvmError(
          'promote.index-locked',
          `${lock} exists: another git command is using the index of ${co.top}.`,
          {
            detail: `The promote is committed (${journal.commit}); only the index and working tree are not updated yet. When that git command has finished, run promote again: it finishes the change.`,
          },
        );
      }
      const unchanged = sameBytes(snapshot, existsSync(indexFile) ? readFileSync(indexFile) : undefined);
      if (!unchanged) {
        unlinkQuiet(lock); // ours: we just linked it; another writer replaced the index in between — start again
        continue;
      }
      renameSync(lock, indexFile);
      fsyncDirectory(co.gitDir);
      faultPoint();
      return;
    } finally {
      unlinkQuiet(next);
      unlinkQuiet(`${next}.lock`);
    }
  }
  throw new AgentvmError('promote.index-busy', `The index of ${co.top} kept changing while promote updated it.`, {
    detail: `The promote is committed (${journal.commit}). Run promote again when no other git command is running: it finishes the change.`,
  });
}

/** Removes `.git/index.lock` when it is provably this promote's (its recorded sha256) or provably orphaned. */
function removeOurIndexLock(co: Checkout, journal: Journal): void {
  const lock = join(co.gitDir, 'index.lock');
  const bytes = readIfExists(lock);
  if (bytes === undefined) return;
  if ((journal.indexSha256 !== undefined && sha256(bytes) === journal.indexSha256) || orphaned(lock, bytes))
    unlinkQuiet(lock);
}

/** Removes the ref's lock when it holds this promote's commit id (known to nobody else) or is provably orphaned. */
function removeStaleRefLock(co: Checkout, journal: Journal): boolean {
  const lock = journal.ref === 'HEAD' ? join(co.gitDir, 'HEAD.lock') : join(co.commonDir, `${journal.ref}.lock`);
  const bytes = readIfExists(lock);
  if (bytes === undefined) return false;
  const text = bytes.toString('utf8');
  if (!(`${journal.commit}\n`.startsWith(text) && text.length > 0) && !orphaned(lock, bytes)) return false;
  unlinkQuiet(lock);
  fsyncDirectory(dirname(lock));
  return true;
}

/**
 * An empty lock file that no process holds open: git writes a lock's content before it closes the file, so its
 * writer died between creating and writing it.
 */
function orphaned(lock: string, bytes: Buffer): boolean {
  return bytes.length === 0 && !heldOpen(lock);
}

function heldOpen(file: string): boolean {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return true; // cannot tell: assume it is
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === file) return true;
      } catch {
        // the fd closed meanwhile
      }
    }
  }
  return false;
}

function writeJournal(co: Checkout, journal: Journal): void {
  const { holder, ...rest } = journal;
  writeFileAtomic(join(co.gitDir, JOURNAL), `${JSON.stringify({ ...rest, holder: { ...holder } }, null, 2)}\n`);
}

function readJournal(file: string): Journal | undefined {
  let raw: unknown;
  try {
    raw = readJsonFile(file);
  } catch {
    throw userError(
      'promote.journal-corrupt',
      `${file} is not a promote journal (it does not parse).`,
      'agentvm writes it whole, so something else changed it: check `git status` and `git log -1`, then remove the file.',
    );
  }
  if (raw === undefined) return undefined;
  const r = raw as Record<string, unknown>;
  const holder = r.holder as Record<string, unknown> | undefined;
  const files = r.files as JournalFile[] | undefined;
  const oid = (v: unknown) => typeof v === 'string' && /^[0-9a-f]{40,64}$/.test(v);
  if (
    r.formatVersion !== 1 ||
    !holder ||
    !Number.isSafeInteger(holder.pid) ||
    !oid(r.base) ||
    !oid(r.commit) ||
    typeof r.ref !== 'string' ||
    !Array.isArray(files)
  ) {
    throw userError(
      'promote.journal-corrupt',
      `${file} is not a promote journal this agentvm understands.`,
      'Check `git status` and `git log -1`, then remove the file.',
    );
  }
  return {
    formatVersion: 1,
    holder: { pid: holder.pid as number, ...identityFields(holder) },
    ref: r.ref,
    base: r.base as string,
    commit: r.commit as string,
    files,
    ...(typeof r.indexSha256 === 'string' ? { indexSha256: r.indexSha256 } : {}),
  };
}

/** Our private index files, named by pid and pid namespace so that a killed writer's are recognisable. */
function privatePath(co: Checkout, what: string): string {
  return join(co.gitDir, `agentvm-promote.${process.pid}-${selfIdentity().pidNamespace ?? 0}.${what}`);
}

/** Removes private index files of provably dead promotes (or of `holder`, whose journal says it is gone). */
function removeOurTemps(co: Checkout, holder: ProcessIdentity | undefined): void {
  const me = selfIdentity();
  let names: string[];
  try {
    names = readdirSync(co.gitDir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^agentvm-promote\.(\d+)-(\d+)\.[a-z-]+(?:\.lock)?$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    const ns = Number(m[2]);
    if (pid === process.pid) continue;
    const dead =
      (holder?.pid === pid && provablyDead(holder)) ||
      (ns !== 0 && provablyDead({ pid, pidNamespace: ns, ...(me.bootId ? { bootId: me.bootId } : {}) }));
    if (dead) unlinkQuiet(join(co.gitDir, name));
  }
}

async function checkout(top: string): Promise<Checkout> {
  const gitDir = (await git(top, ['rev-parse', '--absolute-git-dir'])).trim();
  const common = (await git(top, ['rev-parse', '--git-common-dir'])).trim();
  return { top, gitDir, commonDir: isAbsolute(common) ? common : resolve(top, common) };
}

async function isAncestor(top: string, a: string, b: string): Promise<boolean> {
  return git(top, ['merge-base', '--is-ancestor', a, b]).then(
    () => true,
    () => false,
  );
}

function git(dir: string, args: string[], input?: Buffer, extra?: Record<string, string>): Promise<string>;
function git(
  dir: string,
  args: string[],
  input: Buffer | undefined,
  extra: Record<string, string>,
  as: 'buffer',
): Promise<Buffer>;
function git(
  dir: string,
  args: string[],
  input?: Buffer,
  extra: Record<string, string> = {},
  as: 'text' | 'buffer' = 'text',
): Promise<string | Buffer> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn('git', args, {
      cwd: dir,
      env: gitEnv(extra),
      stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolvePromise(as === 'buffer' ? Buffer.concat(out) : Buffer.concat(out).toString('utf8'));
      else {
        const why = Buffer.concat(err).toString('utf8').trim() || (signal ? `killed by ${signal}` : `exit ${code}`);
        reject(
          new AgentvmError('promote.git-failed', `git ${args[0]} failed in ${dir}: ${why}`, {
            detail: 'A promote interrupted here is finished or dropped by the next promote: run it again.',
          }),
        );
      }
    });
    if (input && child.stdin) {
      child.stdin.on('error', () => undefined); // a git that exits early fails by its exit status, reported above
      child.stdin.end(input);
    }
  });
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function sameBytes(a: Buffer | undefined, b: Buffer | undefined): boolean {
  return a === undefined ? b === undefined : b !== undefined && a.equals(b);
}

function readIfExists(file: string): Buffer | undefined {
  try {
    return statSync(file).isFile() ? readFileSync(file) : undefined;
  } catch {
    return undefined;
  }
}

function unlinkQuiet(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already gone
  }
}

/** Kill points for the crash test (AGENTVM_FAULT_KILL_AFTER=n: SIGKILL at the n-th durable step). Unset in normal use. */
let faultSteps = 0;
function faultPoint(): void {
  const at = process.env.AGENTVM_FAULT_KILL_AFTER;
  if (!at) return;
  faultSteps++;
  if (faultSteps === Number(at)) process.kill(process.pid, 'SIGKILL');
}
