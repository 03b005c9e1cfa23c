// The closed vocabulary of signature-verification refusals. Every refusal of verifyArtifact carries exactly
// one of these codes; tests, bots and the image provider match on them, so a code is never renamed.

import { errorDiag, type Diagnostic } from '../../diagnostics/index.js';

export const SignatureCode = {
  /** The bundle is not JSON, not an object, or not a well-formed Sigstore bundle. */
  BundleMalformed: 'signature.bundle-malformed',
  /** The bundle's mediaType is not on the allow-list of versions this verifier understands. */
  MediaType: 'signature.media-type',
  /** The trusted root is unreadable, does not match its pin, or has an entry without `validFor.start`. */
  TrustedRoot: 'signature.trusted-root',
  /** The pinned sha256 is not 64 hex characters. */
  PinnedDigestInvalid: 'signature.pinned-digest-invalid',
  /** The artifact bytes, the bundle's message digest or the in-toto subjects do not match the pinned digest. */
  DigestMismatch: 'signature.digest-mismatch',
  /** A DSSE envelope that does not carry an in-toto statement. */
  PayloadType: 'signature.payload-type',
  /** A message-signature bundle signs the artifact bytes, and they were not supplied. */
  ArtifactRequired: 'signature.artifact-required',
  /** No policy: nobody said who must have signed, so nothing can be trusted. */
  NoPolicy: 'signature.no-policy',
  /** The policy itself is unusable (empty identity or issuer, bad thresholds). */
  PolicyInvalid: 'signature.policy-invalid',
  /** The policy's public key is not a PEM public key. */
  KeyInvalid: 'signature.key-invalid',
  /** Keyless policy with a key-signed bundle, or key policy with a certificate-signed bundle. */
  SignerKind: 'signature.signer-kind',
  /** The certificate's subject alternative name is not exactly the policy identity. */
  Identity: 'signature.identity',
  /** The certificate's OIDC issuer is not exactly the policy issuer. */
  Issuer: 'signature.issuer',
  /** The signature does not verify with the signer's key. */
  Invalid: 'signature.invalid',
  /** The signing certificate does not chain to the trusted root, was not valid then, or lacks SCTs. */
  Certificate: 'signature.certificate',
  /** A transparency-log entry is missing, does not match the bundle, or its proof does not verify. */
  Tlog: 'signature.tlog',
  /** No (or too few) trusted timestamps, or a timestamp does not verify. */
  Timestamp: 'signature.timestamp',
  /** Anything else went wrong; verification fails closed. */
  Unexpected: 'signature.unexpected-error',
} as const;

export type SignatureCode = (typeof SignatureCode)[keyof typeof SignatureCode];

/** A refusal: an error diagnostic with a code from the vocabulary above and a detail saying what to do. */
export function refusal(code: SignatureCode, summary: string, detail: string): Diagnostic {
  return errorDiag(code, summary, { detail });
}
