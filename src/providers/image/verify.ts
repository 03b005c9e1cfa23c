// verifyArtifact: offline verification of a Sigstore bundle against a PINNED sha256 and a signature policy,
// on top of @sigstore/verify 3.1.1 (the line that runs on Node 20).
// Invariants:
//   - Fails closed and never throws: every problem, including a bug or an exception inside the library, is
//     `ok: false` with exactly one error diagnostic whose code (signature-codes.ts) names the failed check.
//   - The pinned digest is the truth. Artifact bytes, when given, must hash to it; the bundle's content must be
//     bound to it (bundle.ts). A bundle that verifies for some other artifact is refused.
//   - Trust comes only from the trusted root (the shipped, hash-pinned public-good root by default) and the
//     policy; nothing in the bundle (key hints, embedded certificates) chooses what is trusted.
//   - The library's known gaps are closed here: media-type allow-list (bundle.ts), roots without
//     `validFor.start` (trusted-root.ts), unanchored SAN RegExp (policy.ts).
// Known limitation: a DSSE envelope logged to Rekor v2 as hashedrekord-over-PAE does not verify with 3.1.1
// (support arrived in 4.1.0, which needs Node >= 22); it is refused with `signature.tlog`.

import { createHash } from 'node:crypto';
import type { Diagnostic } from '../../diagnostics/index.js';
import type { SignedEntity, Signer, TrustMaterial, VerifierOptions } from '@sigstore/verify';
import { checkDigestBinding, parseBundle } from './bundle.js';
import { matchSigner, preparePolicy, type PreparedPolicy, type SignaturePolicy } from './policy.js';
import { SignatureCode, refusal } from './signature-codes.js';
import { loadSigstore, type SigstoreLib } from './sigstore-lib.js';
import { checkTrustedRoot, loadShippedTrustedRoot, type TrustedRootInput } from './trusted-root.js';

/**
 * Minimum counts of evidence, passed to the library's Verifier. Unset means the library default (1 each).
 * `tsa` is the library's `timestampThreshold`: trusted timestamps of any kind (TSA or tlog integrated time).
 * Lower them only for bundles that by design carry no such evidence (locally key-signed bundles).
 */
export interface VerifyThresholds {
  tlog?: number;
  ctlog?: number;
  tsa?: number;
}

export interface VerifyRequest {
  /** The bundle: parsed JSON, or the raw text/bytes of the bundle file (malformed JSON is a refusal). */
  bundle: unknown;
  /** The PINNED sha256 of the artifact (64 hex). Verification is always against this digest. */
  artifactSha256: string;
  /**
   * The artifact's bytes. When given, their sha256 must equal `artifactSha256` before anything else.
   * Required for message-signature bundles (the signature covers the bytes); not needed for DSSE bundles.
   */
  artifact?: Uint8Array;
  /** Who must have signed. Missing means refusal (`signature.no-policy`), never "anyone". */
  policy: SignaturePolicy | undefined;
  /** Default: the shipped public-good root, checked against its sha256 pin. */
  trustedRoot?: TrustedRootInput;
  thresholds?: VerifyThresholds;
}

export interface VerifyResponse {
  ok: boolean;
  /**
   * Set only when ok. keyless: the certificate's SAN and OIDC issuer (equal to the policy's). key: `keyHint`,
   * base64(sha256(DER SPKI)) of the policy key that verified the signature.
   */
  signer?: { identity?: string; issuer?: string; keyHint?: string };
  /** The pinned digest, lowercase (as given when it was not a valid sha256). */
  digest: string;
  /** Empty when ok; exactly one error diagnostic otherwise. */
  diagnostics: Diagnostic[];
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

export async function verifyArtifact(request: VerifyRequest): Promise<VerifyResponse> {
  const given = (request as Partial<VerifyRequest> | undefined)?.artifactSha256;
  const digest = typeof given === 'string' ? given.trim().toLowerCase() : '';
  try {
    return await verifyPinned(request, digest);
  } catch (err) {
    return refuse(
      digest,
      refusal(
        SignatureCode.Unexpected,
        `Signature verification failed unexpectedly (${describe(err)}).`,
        'The artifact is treated as unsigned. If this persists with an intact bundle, report it as an agentvm bug with the bundle attached.',
      ),
    );
  }
}

async function verifyPinned(request: VerifyRequest, digest: string): Promise<VerifyResponse> {
  if (!SHA256_HEX.test(digest)) {
    return refuse(
      digest,
      refusal(
        SignatureCode.PinnedDigestInvalid,
        `The pinned digest ${JSON.stringify(request.artifactSha256)} is not a sha256 (64 hex characters).`,
        'Pin the artifact by its sha256, e.g. the output of `sha256sum <artifact>`.',
      ),
    );
  }

  const prepared = preparePolicy(request.policy);
  if (!prepared.ok) return refuse(digest, prepared.diagnostic);
  const policy = prepared.policy;

  const options = verifierOptions(request.thresholds);
  if (!options.ok) return refuse(digest, options.diagnostic);

  const artifact = request.artifact;
  if (artifact !== undefined) {
    if (!(artifact instanceof Uint8Array)) {
      return refuse(
        digest,
        refusal(
          SignatureCode.Unexpected,
          'The artifact was not given as bytes.',
          'This is an agentvm bug: the caller must pass the artifact as a Uint8Array.',
        ),
      );
    }
    const actual = createHash('sha256').update(artifact).digest('hex');
    if (actual !== digest) {
      return refuse(
        digest,
        refusal(
          SignatureCode.DigestMismatch,
          `The artifact's bytes hash to sha256:${actual}, but the artifact is pinned to sha256:${digest}.`,
          'The artifact on disk is not the one the manifest pins: it was modified, truncated or replaced. Fetch the pinned artifact again, or update the pin if the new artifact is intended (and re-sign it).',
        ),
      );
    }
  }

  const lib = await loadSigstore();

  const parsed = parseBundle(request.bundle, lib);
  if (!parsed.ok) return refuse(digest, parsed.diagnostic);
  const bundle = parsed.bundle;

  const root =
    request.trustedRoot === undefined ? await loadShippedTrustedRoot() : checkTrustedRoot(request.trustedRoot);
  if (!root.ok) return refuse(digest, root.diagnostic);

  const keyed = bundle.verificationMaterial.content.$case === 'publicKey';
  if (keyed !== (policy.kind === 'key')) {
    return refuse(
      digest,
      refusal(
        SignatureCode.SignerKind,
        keyed
          ? 'The bundle is signed with a public key, but the policy expects a keyless (Sigstore certificate) signature.'
          : 'The bundle is signed with a Sigstore certificate, but the policy expects a signature by a specific public key.',
        keyed
          ? "Set `signature.key` to the signer's public key instead of `signature.identity`/`signature.issuer`, or have the artifact signed keylessly."
          : 'Set `signature.identity` and `signature.issuer` instead of `signature.key`, or have the artifact signed with the key.',
      ),
    );
  }

  const binding = checkDigestBinding(bundle, digest, lib);
  if (binding) return refuse(digest, binding);

  if (bundle.content.$case === 'messageSignature' && artifact === undefined) {
    return refuse(
      digest,
      refusal(
        SignatureCode.ArtifactRequired,
        "This bundle signs the artifact's bytes (a message signature), and they were not supplied.",
        'Verify with the artifact file present; its sha256 is checked against the pin first.',
      ),
    );
  }

  let trust: TrustMaterial;
  try {
    trust = { ...authorities(root.json, request.trustedRoot === undefined, lib), publicKey: keyFinder(policy, lib) };
  } catch (err) {
    return refuse(
      digest,
      refusal(
        SignatureCode.TrustedRoot,
        `The Sigstore trusted root has an unusable entry (${describe(err)}).`,
        'Use an unmodified trusted_root.json from the Sigstore instance that signed the bundle.',
      ),
    );
  }

  let entity: SignedEntity;
  try {
    entity = lib.verify.toSignedEntity(
      bundle,
      artifact === undefined ? undefined : Buffer.from(artifact.buffer, artifact.byteOffset, artifact.byteLength),
    );
  } catch (err) {
    return refuse(
      digest,
      refusal(
        SignatureCode.BundleMalformed,
        `The signature bundle's certificate or timestamp cannot be parsed (${describe(err)}).`,
        'Re-download the bundle, or re-create it with a Sigstore client.',
      ),
    );
  }

  const verifier = new lib.verify.Verifier(trust, options.value);
  if (policy.kind === 'key') {
    try {
      verifier.verify(entity);
    } catch (err) {
      return refuse(digest, libraryRefusal(err, lib));
    }
    return { ok: true, signer: { keyHint: policy.keyHint }, digest, diagnostics: [] };
  }

  let signer: Signer;
  try {
    signer = verifier.verify(entity, {
      subjectAlternativeName: policy.sanPattern,
      extensions: { issuer: policy.issuer },
    });
  } catch (err) {
    if (!(err instanceof lib.verify.PolicyError)) return refuse(digest, libraryRefusal(err, lib));
    // Everything but the policy verified; verify again without it to say which part of the identity differs.
    const actual = verifier.verify(entity);
    const mismatch = matchSigner(policy, identityOf(actual));
    return refuse(digest, mismatch ?? libraryRefusal(err, lib));
  }
  const identity = identityOf(signer);
  const mismatch = matchSigner(policy, identity);
  if (mismatch) return refuse(digest, mismatch);
  return { ok: true, signer: { identity: policy.identity, issuer: policy.issuer }, digest, diagnostics: [] };
}

function refuse(digest: string, diagnostic: Diagnostic): VerifyResponse {
  return { ok: false, digest, diagnostics: [diagnostic] };
}

function identityOf(signer: Signer): { subjectAlternativeName?: string | undefined; issuer?: string | undefined } {
  return {
    subjectAlternativeName: signer.identity?.subjectAlternativeName,
    issuer: signer.identity?.extensions?.issuer,
  };
}

type OptionsResult = { ok: true; value: VerifierOptions } | { ok: false; diagnostic: Diagnostic };

function verifierOptions(thresholds: VerifyThresholds | undefined): OptionsResult {
  const value: VerifierOptions = {};
  if (thresholds === undefined) return { ok: true, value };
  const fields = [
    ['tlog', 'tlogThreshold'],
    ['ctlog', 'ctlogThreshold'],
    ['tsa', 'timestampThreshold'],
  ] as const;
  for (const [name, option] of fields) {
    const n = thresholds[name];
    if (n === undefined) continue;
    if (!Number.isSafeInteger(n) || n < 0) {
      return {
        ok: false,
        diagnostic: refusal(
          SignatureCode.PolicyInvalid,
          `The ${name} threshold ${JSON.stringify(n)} is not a non-negative integer.`,
          'Leave thresholds unset (the defaults require one of each) or set whole numbers.',
        ),
      };
    }
    value[option] = n;
  }
  return { ok: true, value };
}

type Authorities = Omit<TrustMaterial, 'publicKey'>;

// Building authorities parses every certificate and key of the root. The shipped root is one immutable object
// per process (read once), so its authorities are built once; a caller's root is rebuilt on every call, as the
// caller may change the object between calls.
const authorityCache = new WeakMap<object, Authorities>();

function authorities(json: Readonly<Record<string, unknown>>, shipped: boolean, lib: SigstoreLib): Authorities {
  const cached = shipped ? authorityCache.get(json) : undefined;
  if (cached) return cached;
  const { publicKey: _unused, ...built } = lib.verify.toTrustMaterial(lib.specs.TrustedRoot.fromJSON(json), () => {
    throw new Error('unreachable: replaced by the policy key finder');
  });
  if (shipped) authorityCache.set(json, built);
  return built;
}

/**
 * key policy: the policy key, whatever the bundle's hint says (the hint is unauthenticated; the signature
 * check decides). keyless: no key is trusted (a key-signed bundle was already refused as the wrong kind).
 */
function keyFinder(policy: PreparedPolicy, lib: SigstoreLib): TrustMaterial['publicKey'] {
  if (policy.kind === 'key') return () => ({ publicKey: policy.publicKey, validFor: () => true });
  return () => {
    throw new lib.verify.VerificationError({
      code: 'PUBLIC_KEY_ERROR',
      message: 'a keyless policy trusts no public key',
    });
  };
}

/** Maps the library's error codes onto ours, keeping its message (it names the failing entry). */
function libraryRefusal(err: unknown, lib: SigstoreLib): Diagnostic {
  const isLibraryError = err instanceof lib.verify.VerificationError || err instanceof lib.verify.PolicyError;
  const code = isLibraryError ? (err as { code: string }).code : '';
  const why = `${code ? `${code}: ` : ''}${describe(err)}`;
  if (code === 'CERTIFICATE_ERROR') {
    return refusal(
      SignatureCode.Certificate,
      `The signing certificate is not trusted (${why}).`,
      "It does not chain to a certificate authority of the trusted root that was valid at signing time, or lacks the required SCTs. If the bundle comes from another Sigstore instance (e.g. staging), verify it with that instance's trusted root; otherwise do not deploy this artifact.",
    );
  }
  if (code.startsWith('TLOG')) {
    return refusal(
      SignatureCode.Tlog,
      `The bundle's transparency-log evidence does not verify (${why}).`,
      "The log entry is missing, does not match this signature, or its proof does not check against the trusted root's logs. Re-download the bundle; if it comes from another Sigstore instance, use that instance's trusted root. Do not deploy until it verifies.",
    );
  }
  if (code === 'TIMESTAMP_ERROR') {
    return refusal(
      SignatureCode.Timestamp,
      `The bundle lacks a trusted timestamp (${why}).`,
      'Without a timestamp from a trusted log or timestamp authority, the certificate cannot be shown valid at signing time. Re-create the bundle with a client that records one.',
    );
  }
  if (code === 'UNTRUSTED_SIGNER_ERROR') {
    return refusal(
      SignatureCode.Identity,
      `The signer does not match the policy (${why}).`,
      'Check `signature.identity` and `signature.issuer` against who actually signed the artifact.',
    );
  }
  if (isLibraryError) {
    return refusal(
      SignatureCode.Invalid,
      `The signature does not verify (${why}).`,
      'The artifact or the bundle was altered, or the key is not the one that signed it. Do not deploy this artifact; re-sign it if you produced it.',
    );
  }
  return refusal(
    SignatureCode.Unexpected,
    `Signature verification failed unexpectedly (${why}).`,
    'The artifact is treated as unsigned. If this persists with an intact bundle, report it as an agentvm bug with the bundle attached.',
  );
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
