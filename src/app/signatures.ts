// Signature checks of release artifacts (issue 6), wired into plan and apply. The policy comes from the manifest's
// `signature` (exact keyless identity + issuer, or a public key committed next to the manifest), the bundle is read
// from the same commit as the manifest, and the trusted root is the shipped public-good root unless agentvm.yaml
// pins a custom one. Plan verifies the artifact the provider would install; apply verifies the exact bytes it installs.

import { createHash } from 'node:crypto';
import type { DesiredState } from '../contracts/desired-state.js';
import { errorDiag, type Diagnostic } from '../diagnostics/index.js';
import type { DesiredResource } from '../engine/types.js';
import { verifyArtifact, type SignaturePolicy, type VerifyThresholds } from '../providers/image/index.js';

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

export type ArtifactVerifier = (bytes: Uint8Array) => Promise<SignatureOutcome>;

/** A key-signed bundle has no certificate, log entry or timestamp by design: the committed key is the trust. */
const KEY_THRESHOLDS: VerifyThresholds = { ctlog: 0, tlog: 0, tsa: 0 };

export function signatureConfigOf(resource: DesiredResource): SignatureConfig | undefined {
  const sig = resource.config.signature as SignatureConfig | undefined;
  return sig && typeof sig.bundle === 'string' ? sig : undefined;
}

function repoFile(state: DesiredState, path: string): string | undefined {
  const m = /^workloads\/([^/]+)\/(.+)$/.exec(path);
  if (m) return state.workloads.get(m[1]!)?.files.get(m[2]!);
  return state.files.get(path);
}

/** The verifier for a resource, or undefined when it carries no signature requirement. */
export function verifierFor(state: DesiredState, resource: DesiredResource): ArtifactVerifier | undefined {
  const sig = signatureConfigOf(resource);
  if (!sig) return undefined;
  const address = resource.address;
  const refuse = (digest: string, code: string, summary: string, detail: string): SignatureOutcome => ({ ok: false, digest, diagnostics: [errorDiag(code, summary, { detail, address })] });
  return async (bytes) => {
    const digest = createHash('sha256').update(bytes).digest('hex');
    const bundle = repoFile(state, sig.bundle);
    if (bundle === undefined) return refuse(digest, 'signature.bundle-missing', `The signature bundle ${sig.bundle} is not in the repository at this commit.`, 'Commit the Sigstore bundle of this release next to the manifest.');
    let policy: SignaturePolicy;
    if (sig.key) {
      const pem = repoFile(state, sig.key);
      if (pem === undefined) return refuse(digest, 'signature.key-missing', `The signing key ${sig.key} is not in the repository at this commit.`, 'Commit the PEM public key next to the manifest.');
      policy = { kind: 'key', publicKeyPem: pem };
    } else if (sig.identity && sig.issuer) {
      policy = { kind: 'keyless', identity: sig.identity, issuer: sig.issuer };
    } else {
      return refuse(digest, 'signature.no-policy', 'The manifest names a signature bundle but not who must have signed it.', 'Set signature.identity and signature.issuer (keyless) or signature.key.');
    }
    const custom = state.config?.value.spec?.trustedRoot;
    const rootText = custom ? state.files.get(custom.file) : undefined;
    const res = await verifyArtifact({
      bundle,
      artifactSha256: digest,
      artifact: bytes,
      policy,
      ...(custom && rootText !== undefined ? { trustedRoot: { json: rootText, expectedSha256: custom.sha256 } } : {}),
      ...(policy.kind === 'key' ? { thresholds: KEY_THRESHOLDS } : {}),
    });
    return {
      ok: res.ok,
      digest: `sha256:${digest}`,
      ...(res.signer ? { signer: res.signer } : {}),
      diagnostics: res.diagnostics.map((d) => ({ ...d, address, summary: `${address}: ${d.summary}` })),
    };
  };
}
