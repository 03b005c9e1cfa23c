// PackageReleaseProvider (`release.package`, archetype B, `promote-pkg`): installs an exact version of an npm-pack
// tarball as an immutable, read-only release named `<name>@<version>` (scoped `@s/n` → `@s+n@<version>`).
// Invariants:
//   - The tarball's BYTES are checked against the pinned sha512 integrity before anything is parsed or written;
//     then every entry is checked (tar-reader) and package.json must name exactly the desired name and version,
//     still before anything is written.
//   - Capture-first: whatever is live for the workload — agentvm's release, a release directory installed by hand,
//     or a `current` that is a real directory (moved to `captured-<digest12>`) — is handed to `beforeMutation` as
//     the rollback target (`foreign: true` unless it is the locked release) before anything changes.
//   - Sources: an absolute path, a `file://` URL, or an `https://` URL (also after redirects); plain http is refused.
//   - Identity is `<name>@<version>#<integrity>`; the live identity is known only through the lockfile entry naming
//     the live release id (the tarball's integrity cannot be recovered from unpacked files).

import { createHash } from 'node:crypto';
import { readRegularFile } from '../../contracts/bounded-read.js';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';
import type { ApplyResponse, ArtifactRequest, ArtifactResponse, ExpandRequest, ExpandResponse } from '../provider.js';
import { expandPackageReleases } from './expand.js';
import { atAddress, installRelease, ReleaseCode } from './release-lifecycle.js';
import { ReleaseProvider, type InstallContext, type ParsedReleaseConfig } from './release-provider.js';
import { isCapturedReleaseId, isGitReleaseId, isReleaseId } from './release-store.js';
import { readTarEntries, writeTarEntries, type TarEntry } from './tar-reader.js';

export const PackageReleaseCode = {
  integrityMismatch: 'release.integrity-mismatch',
  tarballUnreadable: 'release.tarball-unreadable',
  packageJsonMissing: 'release.package-json-missing',
  packageMismatch: 'release.package-mismatch',
} as const;

/** Desired configuration of a `release.package` resource (the manifest's `source.package`). */
export interface PackageReleaseConfig {
  name: string;
  /** Exact semver version. */
  version: string;
  /** `sha512-<base64>` of the tarball bytes. */
  integrity: string;
  /** Absolute path, `file://` URL or `https://` URL of the npm-pack tarball. */
  tarball: string;
}

const PACKAGE_NAME = /^(?:@[a-z0-9-~][a-z0-9-._~]*\/)?[a-z0-9-~][a-z0-9-._~]*$/;
const EXACT_SEMVER = /^(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;
const SHA512_SRI = /^sha512-[A-Za-z0-9+/]{86}==$/;
/** Tarballs larger than this are refused (a release is code, not data). */
const MAX_TARBALL_BYTES = 512 * 1024 * 1024;

export function packageIdentity(config: Pick<PackageReleaseConfig, 'name' | 'version' | 'integrity'>): string {
  return `${config.name}@${config.version}#${config.integrity}`;
}

/** `<name>@<version>` as a directory name: the scope's `/` becomes `+`. */
export function packageReleaseId(name: string, version: string): string {
  return `${name.replace('/', '+')}@${version}`;
}

/** A release id this provider installs (`name@version` shaped, not a commit, not a capture). */
export function isPackageReleaseId(id: string): boolean {
  if (!isReleaseId(id) || isGitReleaseId(id) || isCapturedReleaseId(id)) return false;
  const at = id.lastIndexOf('@');
  if (at <= 0) return false;
  const name = id.slice(0, at).replace('+', '/');
  return PACKAGE_NAME.test(name) && EXACT_SEMVER.test(id.slice(at + 1));
}

/** `sha512-<base64>` of bytes. */
export function sha512Integrity(bytes: Uint8Array): string {
  return `sha512-${createHash('sha512').update(bytes).digest('base64')}`;
}

export function parsePackageReleaseConfig(
  config: Record<string, unknown>,
  address?: string,
): { config?: PackageReleaseConfig; diagnostics: Diagnostic[] } {
  const at = address === undefined ? {} : { address };
  const diagnostics: Diagnostic[] = [];
  const { name, version, integrity, tarball } = config;
  if (typeof name !== 'string' || name.length > 214 || !PACKAGE_NAME.test(name)) {
    diagnostics.push(
      errorDiag(
        ReleaseCode.invalidConfig,
        `source.package.name ${JSON.stringify(name)} is not a valid npm package name.`,
        { ...at, path: '$.spec.source.package.name' },
      ),
    );
  }
  if (typeof version !== 'string' || !EXACT_SEMVER.test(version)) {
    diagnostics.push(
      errorDiag(
        ReleaseCode.invalidConfig,
        `source.package.version ${JSON.stringify(version)} is not an exact version.`,
        {
          ...at,
          path: '$.spec.source.package.version',
          detail: 'Pin an exact semver version such as 1.4.2; ranges and tags are refused.',
        },
      ),
    );
  }
  if (typeof integrity !== 'string' || !SHA512_SRI.test(integrity)) {
    diagnostics.push(
      errorDiag(
        ReleaseCode.invalidConfig,
        'source.package.integrity must be one sha512 subresource integrity value (sha512-<base64>).',
        {
          ...at,
          path: '$.spec.source.package.integrity',
          detail: 'Take it from `npm pack --json` (`integrity`) or the registry metadata (`dist.integrity`).',
        },
      ),
    );
  }
  if (
    typeof tarball !== 'string' ||
    !(path.isAbsolute(tarball) || tarball.startsWith('file:///') || tarball.startsWith('https://'))
  ) {
    diagnostics.push(
      errorDiag(
        ReleaseCode.invalidConfig,
        `source.package.tarball ${JSON.stringify(tarball)} must be an absolute path, a file:/// URL or an https:// URL.`,
        {
          ...at,
          path: '$.spec.source.package.tarball',
        },
      ),
    );
  }
  if (diagnostics.length > 0) return { diagnostics };
  return { config: { name, version, integrity, tarball } as PackageReleaseConfig, diagnostics };
}

/** The tarball's bytes from a path, file:// URL or https:// URL. */
async function readTarball(source: string): Promise<Buffer> {
  if (source.startsWith('https://')) {
    const response = await fetch(source, { redirect: 'follow' });
    if (!response.url.startsWith('https://'))
      throw new Error(`redirected to a non-https URL (${new URL(response.url).origin})`);
    if (!response.ok) throw new Error(`HTTP ${response.status} ${response.statusText}`);
    const length = Number(response.headers.get('content-length') ?? '0');
    if (length > MAX_TARBALL_BYTES) throw new Error(`tarball is larger than ${MAX_TARBALL_BYTES} bytes`);
    const bytes = Buffer.from(await response.arrayBuffer());
    if (bytes.length > MAX_TARBALL_BYTES) throw new Error(`tarball is larger than ${MAX_TARBALL_BYTES} bytes`);
    return bytes;
  }
  const file = source.startsWith('file://') ? fileURLToPath(source) : source;
  // A regular file under the size limit, checked before any byte is read: `tarball: /dev/zero` is refused at once.
  return readRegularFile(file, MAX_TARBALL_BYTES);
}

/** Checks a package's entries: package.json at the root names exactly `name` and `version`. */
function checkPackageJson(entries: TarEntry[], config: PackageReleaseConfig, address: string): Diagnostic[] {
  const manifest = entries.find((e) => e.type === 'file' && e.path === 'package.json');
  if (!manifest) {
    return [
      errorDiag(
        PackageReleaseCode.packageJsonMissing,
        `The tarball of ${config.name}@${config.version} has no package/package.json.`,
        { address },
      ),
    ];
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(manifest.content.toString('utf8'));
  } catch (error) {
    return [
      errorDiag(PackageReleaseCode.packageJsonMissing, `package.json in the tarball is not valid JSON.`, {
        address,
        detail: (error as Error).message,
      }),
    ];
  }
  const found = parsed as { name?: unknown; version?: unknown };
  if (found.name !== config.name || found.version !== config.version) {
    return [
      errorDiag(
        PackageReleaseCode.packageMismatch,
        `The tarball holds ${String(found.name)}@${String(found.version)}, not ${config.name}@${config.version}.`,
        {
          address,
          detail:
            'source.package.tarball points at a different package or version than source.package.name/version pin.',
        },
      ),
    ];
  }
  return [];
}

export class PackageReleaseProvider extends ReleaseProvider<PackageReleaseConfig> {
  readonly type = 'release.package';

  expand(req: ExpandRequest): ExpandResponse {
    return expandPackageReleases(req);
  }

  protected parseConfig(config: Record<string, unknown>, address: string): ParsedReleaseConfig<PackageReleaseConfig> {
    return parsePackageReleaseConfig(config, address);
  }

  protected identityOf(config: PackageReleaseConfig): string {
    return packageIdentity(config);
  }

  protected identityMismatch(config: PackageReleaseConfig): { summary: string; detail: string } {
    return {
      summary: `is not ${JSON.stringify(packageIdentity(config))}.`,
      detail: 'A release.package resource is identified by name, version and integrity (packageIdentity).',
    };
  }

  protected owns(releaseId: string): boolean {
    return isPackageReleaseId(releaseId);
  }

  /** Workloads whose live release is not a commit: package releases, hand installs, captures. */
  protected listsWorkload(releaseId: string | undefined, releases: readonly string[]): boolean {
    if (releaseId === undefined) return true;
    if (isGitReleaseId(releaseId)) return false;
    return !(isCapturedReleaseId(releaseId) && releases.some(isGitReleaseId));
  }

  protected async install({
    req,
    config,
    store,
    progress,
  }: InstallContext<PackageReleaseConfig>): Promise<ApplyResponse> {
    const { change } = req;
    const releaseId = packageReleaseId(config.name, config.version);

    // Everything below up to installRelease only reads: a refusal leaves the host untouched.
    progress(`${change.address}: reading ${config.name}@${config.version}`);
    const tarball = await verifiedTarball(config, change.address, true);
    if (!tarball.bytes) return { diagnostics: tarball.diagnostics };
    const bytes = tarball.bytes;
    if (req.verifyArtifact) {
      const refused = (await req.verifyArtifact(bytes)).filter((d) => d.severity === 'error');
      if (refused.length > 0) return { diagnostics: atAddress(change.address, refused) };
    }
    const read = await readTarEntries(bytes, { stripComponents: 1, gzip: 'auto' });
    if (read.diagnostics.length > 0) return { diagnostics: atAddress(change.address, read.diagnostics) };
    const mismatch = checkPackageJson(read.entries, config, change.address);
    if (mismatch.length > 0) return { diagnostics: mismatch };

    const response = await installRelease({
      store,
      address: change.address,
      provider: this.type,
      workload: change.workload,
      releaseId,
      identity: packageIdentity(config),
      ...(req.locked ? { locked: req.locked } : {}),
      materialise: async (dir) => (await writeTarEntries(dir, read.entries)).diagnostics,
      // The tarball's bytes (checked against this integrity above) and the fixed unpack rules decide the tree.
      sourceKey: `release.package\0${config.integrity}`,
      progress,
      ...(req.beforeMutation ? { beforeMutation: req.beforeMutation } : {}),
    });
    return { ...response, diagnostics: atAddress(change.address, response.diagnostics) };
  }

  async artifact(req: ArtifactRequest): Promise<ArtifactResponse> {
    const parsed = parsePackageReleaseConfig(req.desired.config, req.desired.address);
    if (!parsed.config) return { diagnostics: parsed.diagnostics };
    return verifiedTarball(parsed.config, req.desired.address, false);
  }
}

/**
 * The tarball's bytes, read and checked against the pinned integrity before anything parses them; a diagnostic at
 * `address` when it cannot be read or does not match (`installing`: apply's wording, which says what was not done
 * and how to accept new bytes).
 */
async function verifiedTarball(
  config: PackageReleaseConfig,
  address: string,
  installing: boolean,
): Promise<{ bytes?: Buffer; diagnostics: Diagnostic[] }> {
  let bytes: Buffer;
  try {
    bytes = await readTarball(config.tarball);
  } catch (error) {
    return {
      diagnostics: [
        errorDiag(
          PackageReleaseCode.tarballUnreadable,
          `Could not read the tarball of ${config.name}@${config.version}.`,
          { address, detail: (error as Error).message },
        ),
      ],
    };
  }
  const actual = sha512Integrity(bytes);
  if (actual !== config.integrity) {
    return {
      diagnostics: [
        errorDiag(
          PackageReleaseCode.integrityMismatch,
          `The tarball of ${config.name}@${config.version} does not match its pinned integrity${installing ? '; nothing was unpacked' : ''}.`,
          {
            address,
            detail: `expected ${config.integrity}, actual ${actual}. The tarball was changed or replaced; do not install it.${installing ? ' If the new bytes are trusted, pin the new integrity in the manifest.' : ''}`,
          },
        ),
      ],
    };
  }
  return { bytes, diagnostics: [] };
}
