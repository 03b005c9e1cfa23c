// Sigstore bundles as agentvm accepts them: parsing (text, bytes or parsed JSON), the media-type allow-list,
// and the binding of the bundle's content to the PINNED digest. The library checks that the signature covers
// the content; only these checks make sure the content is the artifact the manifest pins:
//   - message signature: `messageDigest` must be SHA2_256 and equal to the pinned digest;
//   - DSSE: the payload must be an in-toto statement with a subject whose sha256 is the pinned digest.

import type { Bundle } from '@sigstore/bundle';
import type { Diagnostic } from '../../diagnostics/index.js';
import { SignatureCode, refusal } from './signature-codes.js';
import type { SigstoreLib } from './sigstore-lib.js';

/** Bundle versions this verifier understands (v0.1, v0.2, v0.3 in both spellings). Anything else is refused. */
export const BUNDLE_MEDIA_TYPES: readonly string[] = [
  'application/vnd.dev.sigstore.bundle+json;version=0.1',
  'application/vnd.dev.sigstore.bundle+json;version=0.2',
  'application/vnd.dev.sigstore.bundle+json;version=0.3',
  'application/vnd.dev.sigstore.bundle.v0.3+json',
];

export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const IN_TOTO_STATEMENT_TYPES: readonly string[] = [
  'https://in-toto.io/Statement/v1',
  'https://in-toto.io/Statement/v0.1',
];

export type ParsedBundleResult = { ok: true; bundle: Bundle } | { ok: false; diagnostic: Diagnostic };

const RESIGN =
  'Re-download the bundle, or re-create it (`cosign sign-blob --bundle …`, or `node scripts/sign-local.js sign` for a local key).';

/** JSON text, UTF-8 bytes or an already parsed object → a schema-checked bundle of an allowed media type. */
export function parseBundle(input: unknown, lib: SigstoreLib): ParsedBundleResult {
  let json = input;
  if (typeof json === 'string' || json instanceof Uint8Array) {
    const text = typeof json === 'string' ? json : Buffer.from(json).toString('utf8');
    try {
      json = JSON.parse(text) as unknown;
    } catch (err) {
      return malformed(`The signature bundle is not valid JSON (${(err as Error).message}).`);
    }
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    return malformed('The signature bundle is not a JSON object.');
  const mediaType = (json as { mediaType?: unknown }).mediaType;
  if (typeof mediaType !== 'string' || !BUNDLE_MEDIA_TYPES.includes(mediaType)) {
    return {
      ok: false,
      diagnostic: {
        ...refusal(
          SignatureCode.MediaType,
          `The signature bundle has an unsupported media type ${JSON.stringify(mediaType)}.`,
          `Supported: ${BUNDLE_MEDIA_TYPES.join(', ')}. Re-create the bundle with a Sigstore client that writes one of these.`,
        ),
        path: '$.mediaType',
      },
    };
  }
  try {
    return { ok: true, bundle: lib.bundle.bundleFromJSON(json) };
  } catch (err) {
    return malformed(`The signature bundle is not a well-formed Sigstore bundle (${(err as Error).message}).`);
  }
}

/** Undefined when the bundle's content is bound to `pinnedSha256` (lowercase hex); a refusal otherwise. */
export function checkDigestBinding(bundle: Bundle, pinnedSha256: string, lib: SigstoreLib): Diagnostic | undefined {
  const content = bundle.content;
  if (content.$case === 'messageSignature') {
    const { algorithm, digest } = content.messageSignature.messageDigest;
    if (algorithm !== lib.specs.HashAlgorithm.SHA2_256) {
      return refusal(
        SignatureCode.DigestMismatch,
        `The bundle signs a ${lib.specs.hashAlgorithmToJSON(algorithm)} digest, but the artifact is pinned by sha256.`,
        'Re-sign the artifact with a SHA-256 message digest.',
      );
    }
    const signed = Buffer.from(digest).toString('hex');
    if (signed !== pinnedSha256)
      return mismatch(`The bundle signs sha256:${signed}, but the artifact is pinned to sha256:${pinnedSha256}.`);
    return undefined;
  }

  const envelope = content.dsseEnvelope;
  if (envelope.payloadType !== IN_TOTO_PAYLOAD_TYPE) {
    return refusal(
      SignatureCode.PayloadType,
      `The bundle's DSSE envelope carries ${JSON.stringify(envelope.payloadType)}, not an in-toto statement.`,
      `Only DSSE envelopes of type ${IN_TOTO_PAYLOAD_TYPE} name the artifact they are about. Sign the artifact itself, or an in-toto attestation whose subject is the artifact.`,
    );
  }
  let statement: unknown;
  try {
    statement = JSON.parse(Buffer.from(envelope.payload).toString('utf8'));
  } catch {
    return malformed("The bundle's in-toto statement is not valid JSON.").diagnostic;
  }
  const { _type: type, subject } = (typeof statement === 'object' && statement !== null ? statement : {}) as {
    _type?: unknown;
    subject?: unknown;
  };
  if (typeof type !== 'string' || !IN_TOTO_STATEMENT_TYPES.includes(type) || !Array.isArray(subject)) {
    return malformed(`The bundle's DSSE payload is not an in-toto statement (_type ${JSON.stringify(type)}).`)
      .diagnostic;
  }
  const digests = subject.map((s: unknown) => {
    const d = (s as { digest?: { sha256?: unknown } } | null)?.digest?.sha256;
    return typeof d === 'string' ? d.toLowerCase() : undefined;
  });
  if (digests.includes(pinnedSha256)) return undefined;
  const named = digests.filter((d): d is string => d !== undefined);
  const shown =
    named.length === 0
      ? 'no sha256 subject'
      : named
          .slice(0, 3)
          .map((d) => `sha256:${d}`)
          .join(', ') + (named.length > 3 ? ', …' : '');
  return mismatch(`The bundle's in-toto statement is about ${shown}, not the pinned sha256:${pinnedSha256}.`);
}

function malformed(summary: string): { ok: false; diagnostic: Diagnostic } {
  return { ok: false, diagnostic: refusal(SignatureCode.BundleMalformed, summary, RESIGN) };
}

function mismatch(summary: string): Diagnostic {
  return refusal(
    SignatureCode.DigestMismatch,
    summary,
    'Either the artifact changed after it was signed or the pinned digest is wrong. Check the digest pinned in the workload manifest against the artifact you mean to deploy, and re-sign if the artifact is new.',
  );
}
