// Who must have signed an artifact: the signature policy, its validation, and the exact match of a verified
// signer against it. Matching is exact by design: @sigstore/verify 3.1.1 treats `subjectAlternativeName` as an
// unanchored RegExp, so a policy of `https://github.com/org/` would accept every workflow of every repo under
// it. We hand the library an escaped, anchored pattern AND compare the returned identity with `===`.

import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import type { Diagnostic } from '../../diagnostics/index.js';
import { SignatureCode, refusal } from './signature-codes.js';

/** keyless: a Fulcio certificate for exactly this SAN from exactly this OIDC issuer. key: a PEM SPKI public key. */
export type SignaturePolicy =
  { kind: 'keyless'; identity: string; issuer: string } | { kind: 'key'; publicKeyPem: string };

/** A policy that passed validation, with what verification needs precomputed. */
export type PreparedPolicy =
  | { kind: 'keyless'; identity: string; issuer: string; sanPattern: string }
  | { kind: 'key'; publicKey: KeyObject; keyHint: string };

export type PreparedPolicyResult = { ok: true; policy: PreparedPolicy } | { ok: false; diagnostic: Diagnostic };

/** `^…$` around the identity with every RegExp metacharacter escaped: the pattern matches that string only. */
export function exactSanPattern(identity: string): string {
  return `^${identity.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&')}$`;
}

/** base64(sha256(DER SPKI)): the `publicKey.hint` format of key-signed bundles (as `scripts/sign-local.js` writes). */
export function publicKeyHint(key: KeyObject): string {
  return createHash('sha256')
    .update(key.export({ type: 'spki', format: 'der' }))
    .digest('base64');
}

/** Validates a policy that may come from anywhere (it is typed, but checked as if it were not). Never throws. */
export function preparePolicy(policy: SignaturePolicy | undefined): PreparedPolicyResult {
  if (policy === undefined || policy === null) {
    return fail(
      SignatureCode.NoPolicy,
      'No signature policy: nothing says who must have signed this artifact.',
      'Set `signature.identity` and `signature.issuer` (keyless Sigstore) or `signature.key` (a PEM public key) in the workload manifest.',
    );
  }
  const p = policy as { kind?: unknown; identity?: unknown; issuer?: unknown; publicKeyPem?: unknown };
  if (p.kind === 'keyless') {
    if (
      typeof p.identity !== 'string' ||
      p.identity.trim() === '' ||
      typeof p.issuer !== 'string' ||
      p.issuer.trim() === ''
    ) {
      return fail(
        SignatureCode.PolicyInvalid,
        'The keyless signature policy needs a non-empty identity and issuer.',
        'Set `signature.identity` to the exact certificate SAN (e.g. the workflow URL with @refs/…) and `signature.issuer` to the exact OIDC issuer URL.',
      );
    }
    return {
      ok: true,
      policy: { kind: 'keyless', identity: p.identity, issuer: p.issuer, sanPattern: exactSanPattern(p.identity) },
    };
  }
  if (p.kind === 'key') {
    if (typeof p.publicKeyPem !== 'string' || p.publicKeyPem.trim() === '') {
      return fail(
        SignatureCode.KeyInvalid,
        'The key signature policy has no public key.',
        'Set `signature.key` to the path of a PEM public key (SPKI, "BEGIN PUBLIC KEY").',
      );
    }
    // createPublicKey would happily derive a public key from a private one; a private key in a policy is a
    // leaked secret, so it is refused rather than used.
    if (/PRIVATE KEY-----/.test(p.publicKeyPem)) {
      return fail(
        SignatureCode.KeyInvalid,
        'The signature policy holds a PRIVATE key.',
        'Point `signature.key` at the public key (SPKI PEM) and treat the private key as leaked: rotate it.',
      );
    }
    try {
      const publicKey = createPublicKey({ key: p.publicKeyPem, format: 'pem' });
      return { ok: true, policy: { kind: 'key', publicKey, keyHint: publicKeyHint(publicKey) } };
    } catch (err) {
      return fail(
        SignatureCode.KeyInvalid,
        `The signature policy's public key is not a usable PEM public key (${(err as Error).message}).`,
        'Set `signature.key` to an unmodified PEM public key ("-----BEGIN PUBLIC KEY-----"), e.g. the signing.pub.pem written by `node scripts/sign-local.js keygen`.',
      );
    }
  }
  return fail(
    SignatureCode.PolicyInvalid,
    `Unknown signature policy kind ${JSON.stringify(p.kind)}.`,
    'Use a keyless policy (identity + issuer) or a key policy (public key).',
  );
}

/** Exact comparison of a verified certificate identity with a keyless policy; undefined when it matches. */
export function matchSigner(
  policy: Extract<PreparedPolicy, { kind: 'keyless' }>,
  signer: { subjectAlternativeName?: string | undefined; issuer?: string | undefined },
): Diagnostic | undefined {
  if (signer.subjectAlternativeName !== policy.identity) {
    return refusal(
      SignatureCode.Identity,
      `The artifact was signed by ${JSON.stringify(signer.subjectAlternativeName ?? '(no identity)')}, not by ${JSON.stringify(policy.identity)}.`,
      'Identity matching is exact (no prefixes, no patterns). If this signer is the one you trust, set `signature.identity` to its full identity; otherwise do not deploy this artifact.',
    );
  }
  if (signer.issuer !== policy.issuer) {
    return refusal(
      SignatureCode.Issuer,
      `The signing certificate was issued for OIDC issuer ${JSON.stringify(signer.issuer ?? '(none)')}, not ${JSON.stringify(policy.issuer)}.`,
      'Issuer matching is exact. If this issuer is the one you trust, set `signature.issuer` to it; otherwise do not deploy this artifact.',
    );
  }
  return undefined;
}

function fail(code: SignatureCode, summary: string, detail: string): PreparedPolicyResult {
  return { ok: false, diagnostic: refusal(code, summary, detail) };
}
