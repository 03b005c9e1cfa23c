// Signature checks of release artifacts (issue 6), wired into plan and apply. The policy comes from the manifest's
// `signature` (exact keyless identity + issuer, or a public key committed next to the manifest), the bundle is read
// from the same commit as the manifest, and the trusted root is the shipped public-good root unless agentvm.yaml
// pins a custom one. Plan verifies the artifact the provider would install; apply verifies the exact bytes it installs.
// Job images (issue 6) are artifacts of their own: each `kernel`/`rootfs`/`initramfs` names its bundle, signed by the workload
// manifest's signer; plan verifies the images present on the host, apply the bytes it is about to pin, and
// `job run` the bytes before it boots them.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { DesiredState } from '../contracts/desired-state.js';
import { errorDiag, type Diagnostic } from '../diagnostics/index.js';
import type { DesiredResource } from '../model/resources.js';
import {
  SHIPPED_TRUSTED_ROOT_PATH,
  verifyArtifact,
  type SignaturePolicy,
  type VerifyThresholds,
} from '../providers/image/index.js';
import { loadSigstore } from '../providers/image/sigstore-lib.js';
import { verdictKey, type VerdictCache } from './verdict-cache.js';

export interface SignatureConfig {
  bundle: string;
  identity: string | null;
  issuer: string | null;
  key: string | null;
}

export interface SignatureOutcome {
  ok: boolean;
  digest: string;
  signer?: { identity?: string; issuer?: string; keyHint?: string };
  diagnostics: Diagnostic[];
}

/**
 * Verifies one artifact of a resource. `artifact` names it when the resource has several (a job's `kernel`, `rootfs`),
 * and picks that image's bundle; omitted, it is the resource's release artifact (`signature.bundle`). A named image
 * without a bundle carries no requirement (governance demands one where the tier does): `ok`, with no signer.
 */
export type ArtifactVerifier = (bytes: Uint8Array, artifact?: string) => Promise<SignatureOutcome>;

/** The named artifacts a resource may sign separately: a Tier-2 job's images. */
export const IMAGE_ARTIFACTS = ['kernel', 'rootfs', 'initramfs'] as const;

/** A key-signed bundle has no certificate, log entry or timestamp by design: the committed key is the trust. */
const KEY_THRESHOLDS: VerifyThresholds = { ctlog: 0, tlog: 0, tsa: 0 };

export function signatureConfigOf(resource: DesiredResource): SignatureConfig | undefined {
  const sig = resource.config.signature as SignatureConfig | undefined;
  return sig && typeof sig.bundle === 'string' ? sig : undefined;
}

function repoFile(state: DesiredState, path: string): string | undefined {
  const m = /^workloads\/([^/]+)\/(.+)$/.exec(path);
  if (m) return state.workloads.get(m[1]!)?.files.get(m[2]!.replace(/^(?:\.\/)+/, ''));
  return state.files.get(path);
}

/** The bundle (repo path) a job image names, or undefined when the resource has no such image or it is unsigned. */
function imageBundleOf(state: DesiredState, resource: DesiredResource, artifact: string): string | undefined {
  const image = resource.config[artifact];
  const bundle = image !== null && typeof image === 'object' ? (image as { bundle?: unknown }).bundle : undefined;
  const dir = state.workloads.get(resource.workload)?.dir;
  return typeof bundle === 'string' && dir !== undefined ? `${dir}/${bundle}` : undefined;
}

/** Who must have signed: the resource's own `signature` (a release), else its workload manifest's (job images). */
function signerOf(state: DesiredState, resource: DesiredResource): SignatureConfig | undefined {
  const own = signatureConfigOf(resource);
  if (own) return own;
  const def = state.workloads.get(resource.workload);
  const sig = def?.manifest?.value.spec.signature;
  if (!def || !sig) return undefined;
  return {
    bundle: `${def.dir}/${sig.bundle}`,
    identity: sig.identity ?? null,
    issuer: sig.issuer ?? null,
    key: sig.key ? `${def.dir}/${sig.key}` : null,
  };
}

/**
 * Starts loading the Sigstore libraries (≈45 ms of imports, lazy so that runs without signatures never pay them)
 * without waiting: called once a run knows it will verify, so the imports overlap the git work that fetches the
 * artifacts instead of following it. A failure here is not reported: the verification's own load reports it.
 */
export function prepareVerification(): void {
  loadSigstore().catch(() => {});
}

let shippedRoot: string | undefined;
function shippedRootText(): string {
  shippedRoot ??= readFileSync(SHIPPED_TRUSTED_ROOT_PATH, 'utf8');
  return shippedRoot;
}

/**
 * The verifier for a resource, or undefined when it carries no signature requirement. With `verdicts` (plan only,
 * ADR 0010), a success already verified with exactly these inputs is reused without loading Sigstore, and new
 * successes are remembered.
 */
export function verifierFor(
  state: DesiredState,
  resource: DesiredResource,
  opts: { verdicts?: VerdictCache } = {},
): ArtifactVerifier | undefined {
  const signsImages = IMAGE_ARTIFACTS.some((name) => imageBundleOf(state, resource, name) !== undefined);
  if (!signatureConfigOf(resource) && !signsImages) return undefined;
  const sig = signerOf(state, resource);
  const address = resource.address;
  return async (bytes, artifact) => {
    const digest = createHash('sha256').update(bytes).digest('hex');
    const label = artifact === undefined ? address : `${address} (${artifact})`;
    const refuse = (code: string, summary: string, detail: string): SignatureOutcome => ({
      ok: false,
      digest,
      diagnostics: [errorDiag(code, `${label}: ${summary}`, { detail, address })],
    });
    const bundlePath = artifact === undefined ? sig?.bundle : imageBundleOf(state, resource, artifact);
    if (artifact !== undefined && bundlePath === undefined)
      return { ok: true, digest: `sha256:${digest}`, diagnostics: [] };
    if (!sig || bundlePath === undefined)
      return refuse(
        'signature.no-policy',
        'The image names a signature bundle but the manifest has no `signature` saying who must have signed it.',
        'Add `signature:` to the manifest with `identity:` + `issuer:` (keyless) or `key:`.',
      );
    const bundle = repoFile(state, bundlePath);
    if (bundle === undefined)
      return refuse(
        'signature.bundle-missing',
        `The signature bundle ${bundlePath} is not in the repository at this commit.`,
        `Commit the Sigstore bundle of this ${artifact === undefined ? 'release' : 'image'} next to the manifest.`,
      );
    let policy: SignaturePolicy;
    if (sig.key) {
      const pem = repoFile(state, sig.key);
      if (pem === undefined)
        return refuse(
          'signature.key-missing',
          `The signing key ${sig.key} is not in the repository at this commit.`,
          'Commit the PEM public key next to the manifest.',
        );
      policy = { kind: 'key', publicKeyPem: pem };
    } else if (sig.identity && sig.issuer) {
      policy = { kind: 'keyless', identity: sig.identity, issuer: sig.issuer };
    } else {
      return refuse(
        'signature.no-policy',
        'The manifest names a signature bundle but not who must have signed it.',
        'Set signature.identity and signature.issuer (keyless) or signature.key.',
      );
    }
    const custom = state.config?.value.spec?.trustedRoot;
    const rootText = custom ? state.files.get(custom.file) : undefined;
    const thresholds = policy.kind === 'key' ? KEY_THRESHOLDS : undefined;
    const key = opts.verdicts
      ? verdictKey({
          artifactSha256: digest,
          bundle,
          policy: JSON.stringify(policy),
          trustedRoot: custom ? `${custom.sha256}\n${rootText ?? ''}` : shippedRootText(),
          thresholds: JSON.stringify(thresholds ?? null),
        })
      : undefined;
    const known = key === undefined ? undefined : opts.verdicts?.get(key);
    if (known)
      return {
        ok: true,
        digest: known.digest,
        ...(known.signer ? { signer: known.signer } : {}),
        diagnostics: known.diagnostics as Diagnostic[],
      };
    const res = await verifyArtifact({
      bundle,
      artifactSha256: digest,
      artifact: bytes,
      policy,
      ...(custom && rootText !== undefined ? { trustedRoot: { json: rootText, expectedSha256: custom.sha256 } } : {}),
      ...(policy.kind === 'key' ? { thresholds: KEY_THRESHOLDS } : {}),
    });
    const outcome: SignatureOutcome = {
      ok: res.ok,
      digest: `sha256:${digest}`,
      ...(res.signer ? { signer: res.signer } : {}),
      diagnostics: res.diagnostics.map((d) => ({ ...d, address, summary: `${label}: ${d.summary}` })),
    };
    if (key !== undefined && outcome.ok && !outcome.diagnostics.some((d) => d.severity === 'error')) {
      opts.verdicts?.remember(key, {
        digest: outcome.digest,
        ...(outcome.signer ? { signer: outcome.signer } : {}),
        diagnostics: outcome.diagnostics,
      });
    }
    return outcome;
  };
}
