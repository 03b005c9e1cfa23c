// Use case: promote a workload — rewrite the pin in its manifest (git commit, or package version + integrity +
// tarball) and commit that change to the desired-state repository. Promotion is a commit, never a live mutation:
// plan/apply carry it out. Dry-run by default: it shows the diff and changes nothing without approval.

import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { createTwoFilesPatch } from 'diff';
import { parseDocument } from 'yaml';
import { gitEnv } from '../contracts/git-batch.js';
import { userError } from '../diagnostics/index.js';
import { resolveSourceLocation } from '../providers/release/expand.js';
import { commitPinChange, recoverInterruptedPromote } from './promote-commit.js';
import type { PromoteResultDocument } from '../generated/promote-result.js';

const run = promisify(execFile);

/** The --json result; its type is generated from the schema (schemas/ are the source of truth). */
export type PromoteResult = PromoteResultDocument;

export interface PromoteOptions {
  repo: string;
  workload: string;
  to: string;
  integrity?: string;
  tarball?: string;
  bundle?: string;
  approve: boolean;
  message?: string;
}

const COMMIT = /^[0-9a-f]{40}$/;
const SEMVER = /^(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;

async function git(dir: string, ...args: string[]): Promise<string> {
  const { stdout } = await run('git', args, { cwd: dir, env: gitEnv(), maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

export async function runPromote(opts: PromoteOptions): Promise<PromoteResult> {
  if (!/^[a-z][a-z0-9-]{0,62}$/.test(opts.workload))
    throw userError('promote.bad-workload', `${JSON.stringify(opts.workload)} is not a workload name.`);
  let top: string;
  try {
    top = (await git(resolve(opts.repo), 'rev-parse', '--show-toplevel')).trim();
  } catch {
    throw userError(
      'repo.not-a-repository',
      `${opts.repo} is not inside a git repository.`,
      'promote edits and commits the desired-state repository: point --repo at it.',
    );
  }
  const repoDir = resolve(opts.repo);
  const manifestPath = join(repoDir, 'workloads', opts.workload, 'manifest.yaml');
  const manifestRel = relative(top, manifestPath);
  if (!existsSync(manifestPath))
    throw userError(
      'promote.unknown-workload',
      `No workloads/${opts.workload}/manifest.yaml in ${repoDir}.`,
      'Check the workload name and --repo.',
    );
  const recovered = await recoverInterruptedPromote(top);
  const dirty = (await git(top, 'status', '--porcelain', '--', manifestRel)).trim();
  if (dirty)
    throw userError(
      'promote.dirty',
      `${manifestRel} has uncommitted changes.`,
      'Commit or discard them first: promote commits exactly the pin change.',
    );

  const before = readFileSync(manifestPath, 'utf8');
  const doc = parseDocument(before);
  const archetype = doc.getIn(['spec', 'archetype']);
  const notes: string[] = [...recovered];
  let from: string;
  let to: string;
  if (archetype === 'git-release') {
    from = String(doc.getIn(['spec', 'source', 'git', 'commit']));
    const sourceRepo = resolveSourceLocation(String(doc.getIn(['spec', 'source', 'git', 'repo'])), repoDir);
    to = await resolveSourceCommit(sourceRepo, opts.to, notes);
    doc.setIn(['spec', 'source', 'git', 'commit'], to);
  } else if (archetype === 'package-install') {
    from = String(doc.getIn(['spec', 'source', 'package', 'version']));
    if (!SEMVER.test(opts.to))
      throw userError(
        'promote.version-not-exact',
        `${JSON.stringify(opts.to)} is not an exact version.`,
        'Give the exact version that was packed, e.g. 1.4.2 — no ranges or tags.',
      );
    to = opts.to;
    let integrity = opts.integrity;
    if (opts.tarball) {
      const location = resolveSourceLocation(opts.tarball, repoDir);
      if (!existsSync(location)) throw userError('promote.tarball-missing', `No tarball at ${location}.`);
      const computed = `sha512-${createHash('sha512').update(readFileSync(location)).digest('base64')}`;
      if (integrity && integrity !== computed)
        throw userError(
          'promote.integrity-mismatch',
          `--integrity does not match ${opts.tarball} (computed ${computed}).`,
        );
      integrity = computed;
      doc.setIn(['spec', 'source', 'package', 'tarball'], opts.tarball);
    }
    if (!integrity)
      throw userError(
        'promote.integrity-required',
        'A package promotion needs the new tarball or its integrity.',
        'Pass --tarball FILE (its sha512 is computed) or --integrity sha512-….',
      );
    doc.setIn(['spec', 'source', 'package', 'version'], to);
    doc.setIn(['spec', 'source', 'package', 'integrity'], integrity);
  } else {
    throw userError(
      'promote.unknown-archetype',
      `workloads/${opts.workload}/manifest.yaml has no known archetype.`,
      'Run `agentvm validate` first.',
    );
  }
  const after = doc.toString();
  let bundleTarget: string | undefined;
  let bundleText: string | undefined;
  if (opts.bundle) {
    const bundleName = doc.getIn(['spec', 'signature', 'bundle']);
    if (typeof bundleName !== 'string')
      throw userError(
        'promote.no-signature',
        'The manifest has no signature.bundle to replace.',
        'Add a signature section first, or drop --bundle.',
      );
    bundleTarget = join(repoDir, 'workloads', opts.workload, bundleName);
    bundleText = readFileSync(opts.bundle, 'utf8');
  } else if (doc.getIn(['spec', 'signature', 'bundle'])) {
    notes.push(
      "The manifest references a signature bundle: pass --bundle with the new release's bundle, or plan will refuse the unsigned release.",
    );
  }
  const diff = createTwoFilesPatch(`a/${manifestRel}`, `b/${manifestRel}`, before, after, undefined, undefined, {
    context: 3,
  });
  if (from === to) notes.push(`${opts.workload} already pins ${to}; nothing to promote.`);
  const result = (commit: string | null) =>
    ({
      formatVersion: 1,
      workload: opts.workload,
      manifest: manifestRel,
      from,
      to,
      diff,
      committed: commit !== null,
      commit,
      notes,
    }) as const;
  if (!opts.approve || from === to) return result(null);

  const message = opts.message ?? `promote ${opts.workload} to ${to}\n\nfrom ${from}`;
  const change = [{ rel: manifestRel, after: Buffer.from(after) }];
  if (bundleTarget && bundleText !== undefined)
    change.push({ rel: relative(top, bundleTarget), after: Buffer.from(bundleText) });
  return result(await commitPinChange(top, change, message));
}

/** An exact commit as given, or a ref resolved in the (reachable) source repository — never a ref written into the manifest. */
async function resolveSourceCommit(sourceRepo: string, to: string, notes: string[]): Promise<string> {
  if (COMMIT.test(to)) return to;
  if (to.startsWith('-') || /\s/.test(to))
    throw userError('promote.bad-ref', `${JSON.stringify(to)} is not a commit or ref.`);
  let out = '';
  try {
    out = (await run('git', ['ls-remote', '--end-of-options', sourceRepo, to], { env: gitEnv(), timeout: 30_000 }))
      .stdout;
  } catch {
    out = '';
  }
  const lines = out.trim().split('\n').filter(Boolean);
  const exact = lines.filter(
    (l) =>
      l.endsWith(`\trefs/heads/${to}`) ||
      l.endsWith(`\trefs/tags/${to}^{}`) ||
      l.endsWith(`\trefs/tags/${to}`) ||
      l.endsWith(`\t${to}`),
  );
  const pick = exact.find((l) => l.endsWith('^{}')) ?? exact[0] ?? (lines.length === 1 ? lines[0] : undefined);
  const sha = pick?.split('\t')[0];
  if (!sha || !COMMIT.test(sha)) {
    throw userError(
      'promote.commit-required',
      `${JSON.stringify(to)} is not an exact commit, and it could not be resolved in ${sourceRepo}.`,
      'Pass the 40-hex commit to release (git rev-parse <ref> in the source repository).',
    );
  }
  notes.push(`Resolved ${to} to ${sha} in ${sourceRepo}; the manifest pins the commit, not the ref.`);
  return sha;
}
