// The release providers' public surface: `release.git` (archetype A) and `release.package` (archetype B), and the
// pieces the engine and apply may use directly (identities, digests, rollback).

export {
  GitReleaseProvider,
  GitReleaseCode,
  gitReleaseIdentity,
  parseGitReleaseConfig,
  gitCacheRepository,
  redactUrl,
  type GitReleaseConfig,
} from './git-release.js';
export {
  PackageReleaseProvider,
  PackageReleaseCode,
  packageIdentity,
  packageReleaseId,
  isPackageReleaseId,
  sha512Integrity,
  parsePackageReleaseConfig,
  type PackageReleaseConfig,
} from './package-release.js';
export {
  ReleaseCode,
  releaseAddress,
  RELEASE_ADDRESS_PREFIX,
  type RollbackOptions,
  type RollbackResponse,
} from './release-lifecycle.js';
export { planRelease } from './release-plan.js';
export { ReleaseStore, capturedReleaseId, isGitReleaseId, isReleaseId, type CurrentState } from './release-store.js';
export { treeDigest, type TreeDigest, type IrregularEntry } from './tree-digest.js';
export {
  TarCode,
  extractTar,
  readTarEntries,
  writeTarEntries,
  type TarEntry,
  type TarReadOptions,
} from './tar-reader.js';
