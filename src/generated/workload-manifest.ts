// GENERATED from schemas/workload-manifest.schema.json by scripts/gen-types.js. Do not edit: edit the schema and run `npm run gen`.

/**
 * A DNS label: lowercase letters, digits and dashes, starting with a letter, at most 63 characters.
 */
export type Name = string;
/**
 * A plain file name (no directories).
 */
export type FileName = string;
export type Sha256 = string;

/**
 * How a workload is deployed: archetype, pinned source, signature, gateway profiles, Tier-2 jobs, previews and canary.
 */
export interface WorkloadManifest {
  apiVersion: 'agentvm.dev/v1alpha1';
  kind: 'WorkloadManifest';
  metadata: Metadata;
  spec: {
    /**
     * git-release (archetype A): an exact commit installed as a read-only release. package-install (archetype B): an exact package version, integrity-checked, captured-first.
     */
    archetype: 'git-release' | 'package-install';
    source: Source;
    signature?: Signature;
    profiles?: Profile[];
    jobs?: Job[];
    previews?: Preview[];
    canary?: Canary;
    /**
     * Settings for third-party providers (agentvm.yaml spec.providers), one block per provider type. agentvm passes them to the provider's expand() unread; the provider validates its own block. Secrets by reference only, like everywhere else.
     */
    extensions?: {
      [k: string]: {} | undefined;
    };
  };
}
export interface Metadata {
  name: Name;
  description?: string;
  labels?: {
    [k: string]: string | undefined;
  };
}
/**
 * Exactly one of git (archetype A) or package (archetype B).
 */
export interface Source {
  git?: {
    /**
     * Git URL, absolute path, git bundle file, or a path relative to the desired-state repository root (starting with ./ or ../).
     */
    repo: string;
    /**
     * The exact 40-hex commit to release. Branches and tags are refused.
     */
    commit: string;
    /**
     * Optional directory inside the repository to release.
     */
    subdir?: string;
  };
  package?: {
    name: string;
    /**
     * An exact version (semver, no ranges).
     */
    version: string;
    /**
     * Subresource integrity of the tarball: sha512-<base64>.
     */
    integrity: string;
    /**
     * Absolute path, https URL, or a path relative to the desired-state repository root (starting with ./ or ../) of the npm-pack tarball.
     */
    tarball: string;
  };
}
/**
 * A Sigstore bundle over the release artifact and who must have signed it: identity + issuer (keyless) or key.
 */
export interface Signature {
  /**
   * Path of the bundle file, relative to the workload directory.
   */
  bundle: string;
  /**
   * Exact certificate identity (SAN).
   */
  identity?: string;
  /**
   * Exact OIDC issuer URL.
   */
  issuer?: string;
  /**
   * Path of a PEM public key, relative to the workload directory.
   */
  key?: string;
}
export interface Profile {
  name: Name;
  /**
   * argv. The first element without a `/` (python3, node) is a program on the unit's fixed PATH; with a `/` (./agent.pl, bin/server) it is a file relative to the release directory. A bare script name such as agent.pl is refused.
   *
   * @minItems 1
   */
  entrypoint: [string, ...string[]];
  env?: {
    [k: string]: string | undefined;
  };
  listen?: Listen;
  health?: HealthCheck;
  /**
   * The workload reloads its configuration on SIGHUP (ExecReload).
   */
  reload?: boolean;
}
/**
 * Exactly one of a loopback TCP port or a unix socket name.
 */
export interface Listen {
  port?: number;
  socket?: FileName;
}
export interface HealthCheck {
  path: string;
  timeoutSeconds?: number;
}
export interface Job {
  name: Name;
  kernel: Image;
  rootfs: Image1;
  initramfs?: Image2;
  /**
   * @minItems 1
   */
  command: [string, ...string[]];
  vcpus?: number;
  memoryMiB?: number;
  timeoutSeconds?: number;
}
/**
 * Kernel image (bzImage/vmlinuz).
 */
export interface Image {
  /**
   * A plain file name (no directories).
   */
  file: string;
  sha256: Sha256;
  format?: 'initramfs' | 'disk';
  /**
   * Path of a Sigstore bundle over this image file, relative to the workload directory. Signed by the manifest's `signature` signer (identity + issuer, or key); required at tiers with signed releases (moderate and up).
   */
  bundle?: string;
}
/**
 * Root image: an initramfs (newc cpio, optionally gzip-compressed; format `initramfs`, the default) or a raw disk image holding an ext4 filesystem (format `disk`), attached read-only as the job's root.
 */
export interface Image1 {
  /**
   * A plain file name (no directories).
   */
  file: string;
  sha256: Sha256;
  format?: 'initramfs' | 'disk';
  /**
   * Path of a Sigstore bundle over this image file, relative to the workload directory. Signed by the manifest's `signature` signer (identity + issuer, or key); required at tiers with signed releases (moderate and up).
   */
  bundle?: string;
}
/**
 * Boot initramfs of a `rootfs.format: disk` job (required there, refused otherwise): carries agentvm's guest init and the virtio modules that mount the disk (what scripts/build-test-image.sh builds). Its `format` is not used.
 */
export interface Image2 {
  /**
   * A plain file name (no directories).
   */
  file: string;
  sha256: Sha256;
  format?: 'initramfs' | 'disk';
  /**
   * Path of a Sigstore bundle over this image file, relative to the workload directory. Signed by the manifest's `signature` signer (identity + issuer, or key); required at tiers with signed releases (moderate and up).
   */
  bundle?: string;
}
export interface Preview {
  name: Name;
  upstream: Listen;
  /**
   * Longest grant allowed, e.g. 30m, 8h.
   */
  maxTtl: string;
  /**
   * Identities (emails) that may be granted access. Absent: nobody.
   */
  grantees?: string[];
}
export interface Canary {
  profile: Name;
  soakSeconds?: number;
}
