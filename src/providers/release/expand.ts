// What the release providers plan from a workload's manifest: `release.<workload>`, one per workload —
// `release.git` for archetype git-release (an exact commit), `release.package` for package-install (an exact version
// and integrity). Pure: no I/O.

import { posix } from 'node:path';
import type { DesiredResource } from '../../model/index.js';
import type { ExpandRequest, ExpandResponse, ExpandWorkload } from '../provider.js';
import { packageIdentity, packageReleaseId } from './package-release.js';
import { releaseAddress } from './release-lifecycle.js';

/**
 * Source locations may be relative to the desired-state repository (`./…`, `../…`); they are resolved against
 * `repoDir` here so providers only ever see absolute paths or URLs.
 */
export function resolveSourceLocation(location: string, repoDir: string): string {
  return location.startsWith('./') || location.startsWith('../')
    ? posix.normalize(`${repoDir.replace(/\/$/, '')}/${location}`)
    : location;
}

/** The directory name under `<releases>/<workload>/` the workload's units run from; null without a release. */
export function releaseIdOf(workload: ExpandWorkload): string | null {
  const { archetype, source } = workload.manifest.spec;
  if (archetype === 'git-release' && source.git) return source.git.commit;
  if (archetype === 'package-install' && source.package)
    return packageReleaseId(source.package.name, source.package.version);
  return null;
}

export function expandGitReleases(req: ExpandRequest): ExpandResponse {
  const resources: DesiredResource[] = [];
  for (const w of req.workloads) {
    const { archetype, source } = w.manifest.spec;
    if (archetype !== 'git-release' || !source.git) continue;
    const git = source.git;
    resources.push({
      address: releaseAddress(w.name),
      provider: 'release.git',
      workload: w.name,
      identity: git.commit,
      config: {
        repo: resolveSourceLocation(git.repo, req.repo),
        commit: git.commit,
        ...(git.subdir ? { subdir: git.subdir } : {}),
        ...signatureConfig(w),
      },
      dependsOn: [],
    });
  }
  return { resources, diagnostics: [] };
}

export function expandPackageReleases(req: ExpandRequest): ExpandResponse {
  const resources: DesiredResource[] = [];
  for (const w of req.workloads) {
    const { archetype, source } = w.manifest.spec;
    if (archetype !== 'package-install' || !source.package) continue;
    const p = source.package;
    resources.push({
      address: releaseAddress(w.name),
      provider: 'release.package',
      workload: w.name,
      identity: packageIdentity(p),
      config: {
        name: p.name,
        version: p.version,
        integrity: p.integrity,
        tarball: resolveSourceLocation(p.tarball, req.repo),
        ...signatureConfig(w),
      },
      dependsOn: [],
    });
  }
  return { resources, diagnostics: [] };
}

function signatureConfig(w: ExpandWorkload): Record<string, unknown> {
  const sig = w.manifest.spec.signature;
  if (!sig) return {};
  return {
    signature: {
      bundle: `${w.dir}/${sig.bundle}`,
      identity: sig.identity ?? null,
      issuer: sig.issuer ?? null,
      key: sig.key ? `${w.dir}/${sig.key}` : null,
    },
  };
}
