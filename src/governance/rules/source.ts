// Source pinning (every tier): a release is an exact, immutable thing. A git source is one 40-hex commit, a
// package is one exact semver version; the archetype matches the kind of source; a subdir stays inside the repo.

import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import { at, record, specOf, text, type WorkloadRule } from '../context.js';
import { findSecret } from '../../secrets/secret-detectors.js';
import { describePathProblem, quote, relativePathProblem, safeText } from '../../secrets/text-safety.js';

const COMMIT = /^[0-9a-f]{40}$/;
/** semver.org's grammar, anchored: MAJOR.MINOR.PATCH[-prerelease][+build], no leading zeros, no ranges. */
const EXACT_SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;
/** Something a user would write for a branch or tag: `main`, `v1.2.0`, `refs/heads/release`. */
const REF_NAME = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$/;

export function isExactSemver(v: string): boolean {
  return EXACT_SEMVER.test(v);
}

export const sourceRules: WorkloadRule = (ctx) => {
  const doc = ctx.manifest;
  if (!doc) return [];
  const out: Diagnostic[] = [];
  const spec = specOf(doc);
  const source = record(spec.source);
  const git = record(source?.git);
  const pkg = record(source?.package);

  const archetype = text(spec.archetype);
  const wants = archetype === 'git-release' ? 'git' : archetype === 'package-install' ? 'package' : undefined;
  if (wants && !(wants === 'git' ? git : pkg)) {
    out.push(
      errorDiag(
        'source.archetype-mismatch',
        `Archetype \`${archetype}\` needs \`source.${wants}\`, but the source is ${git ? 'a git repository' : pkg ? 'a package' : 'missing'}.`,
        {
          detail:
            wants === 'git'
              ? 'A git-release installs an exact commit: give `source.git` with `repo` and a 40-hex `commit`, or set `archetype: package-install`.'
              : 'A package-install installs an exact package version: give `source.package` with `name`, `version`, `integrity` and `tarball`, or set `archetype: git-release`.',
          ...at(doc, ['spec', 'archetype']),
          address: ctx.address,
        },
      ),
    );
  }

  const commit = text(git?.commit);
  if (git && commit !== undefined && !COMMIT.test(commit)) {
    out.push(
      errorDiag('source.commit-not-pinned', `source.git.commit ${commitProblem(commit)}`, {
        detail: commitFix(commit),
        ...at(doc, ['spec', 'source', 'git', 'commit']),
        address: ctx.address,
      }),
    );
  }
  const subdir = text(git?.subdir);
  if (subdir !== undefined && subdir !== '') {
    const problem = relativePathProblem(subdir);
    if (problem) {
      out.push(
        errorDiag(
          'name.path-traversal',
          `source.git.subdir ${describePathProblem(problem)}; it must be a directory inside the repository.`,
          {
            detail:
              'Give the directory relative to the repository root, without `..` and without a leading `/` (e.g. `subdir: services/agent`).',
            ...at(doc, ['spec', 'source', 'git', 'subdir']),
            address: ctx.address,
          },
        ),
      );
    }
  }

  const version = text(pkg?.version);
  if (pkg && version !== undefined && !isExactSemver(version)) {
    out.push(
      errorDiag(
        'source.version-not-pinned',
        `source.package.version ${quote(version, '')}${safeText(version) === undefined ? '' : ' '}is not an exact version: a package release is one exact semver version.`,
        {
          detail:
            'Write the exact version that was packed, e.g. `1.4.2` or `2.0.0-rc.1`: no ranges (`^`, `~`, `>=`, `x`, `*`), no tags (`latest`), no `v` prefix. The integrity hash pins the same tarball.',
          ...at(doc, ['spec', 'source', 'package', 'version']),
          address: ctx.address,
        },
      ),
    );
  }
  return out;
};

function commitProblem(commit: string): string {
  if (/^[0-9a-fA-F]{40}$/.test(commit)) return 'uses upper-case hex; commits are written in lower case.';
  if (/^[0-9a-f]{4,39}$/.test(commit))
    return `is an abbreviated commit (${commit.length} characters); a release is pinned by the full 40-hex commit.`;
  if (/^[0-9a-f]{64}$/.test(commit))
    return 'is 64 hex characters; agentvm pins releases by the 40-hex SHA-1 commit id.';
  if (looksLikeRef(commit))
    return `looks like a branch or tag name (${quote(commit, 'a ref')}); branches and tags move, so a release is pinned by commit.`;
  return 'is not a 40-hex commit.';
}

function commitFix(commit: string): string {
  if (/^[0-9a-fA-F]{40}$/.test(commit)) return 'Write the same commit in lower case.';
  if (/^[0-9a-f]{4,39}$/.test(commit) || looksLikeRef(commit)) {
    const ref = safeText(commit) ?? '<ref>';
    return `Resolve it to the full commit in the source repository and paste that: \`git rev-parse ${ref}^{commit}\` (or \`git ls-remote <repo> ${ref}\`).`;
  }
  return 'Set it to the exact 40-hex commit to release: `git rev-parse <branch-or-tag>^{commit}` in the source repository prints it.';
}

function looksLikeRef(v: string): boolean {
  return REF_NAME.test(v) && !v.includes('..') && findSecret(v) === undefined;
}
