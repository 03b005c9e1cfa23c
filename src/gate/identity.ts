// The signed identity the gate hands an upstream with every request it forwards: a short-lived JWT (EdDSA, Ed25519) in
// `X-Agentvm-Identity`, naming who is looking (the grantee), by which grant, at which preview, until when. A preview can
// tell viewers apart and prove a request came through the gate by verifying it against the gate's public key.
// Invariants:
// - The private key never leaves `<gate dir>/identity-key.pem` (0600, created on first start) and the process; the
//   public key is `<gate dir>/identity-key.pub.pem` and `identity.jwks.json` (0644). An upstream can verify, never sign:
//   that is why the signature is asymmetric (a shared HMAC key would let any preview forge another's assertions).
// - A token names one preview (`aud`) and one grant; it lives at most IDENTITY_TTL_S and never past the grant's expiry.
// - A client never chooses it: every `X-Agentvm-*` request header is dropped before the gate adds its own.

import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../state/atomic-file.js';

export const IDENTITY_HEADER = 'x-agentvm-identity';
/** Lifetime of one assertion, seconds. A cached assertion is reissued once half of it has passed. */
export const IDENTITY_TTL_S = 60;

export interface IdentityClaims {
  iss: string;
  /** The grantee (an email). */
  sub: string;
  /** `<workload>/<preview>`. */
  aud: string;
  grant: string;
  iat: number;
  exp: number;
  jti: string;
}

export interface IdentitySigner {
  /** The header value for this grant and preview, reused while fresh. */
  assertion(grant: { id: string; identity: string; expires: string }, preview: string): string;
  publicKeyPem: string;
}

const b64 = (value: string | Buffer): string => Buffer.from(value).toString('base64url');

/** Loads the gate's signing key from `dir`, creating it (and the public key files) when absent. */
export function loadIdentitySigner(dir: string, issuer: string): IdentitySigner {
  const keyFile = path.join(dir, 'identity-key.pem');
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(readFileSync(keyFile));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    privateKey = generateKeyPairSync('ed25519').privateKey;
    writeFileAtomic(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
  }
  const publicKey = createPublicKey(privateKey);
  const publicKeyPem = publicKey.export({ type: 'spki', format: 'pem' }) as string;
  const jwk = { ...publicKey.export({ format: 'jwk' }), alg: 'EdDSA', use: 'sig', kid: 'agentvm-gate' };
  writeFileAtomic(path.join(dir, 'identity-key.pub.pem'), publicKeyPem, { mode: 0o644 });
  writeFileAtomic(path.join(dir, 'identity.jwks.json'), `${JSON.stringify({ keys: [jwk] }, null, 2)}\n`, {
    mode: 0o644,
  });
  const header = b64(JSON.stringify({ alg: 'EdDSA', typ: 'JWT', kid: 'agentvm-gate' }));
  const cache = new Map<string, { token: string; renewAt: number }>();
  return {
    publicKeyPem,
    assertion(grant, preview) {
      const now = Date.now();
      const cacheKey = `${grant.id}\n${preview}`;
      const hit = cache.get(cacheKey);
      if (hit && hit.renewAt > now) return hit.token;
      const iat = Math.floor(now / 1000);
      const exp = Math.min(iat + IDENTITY_TTL_S, Math.floor(Date.parse(grant.expires) / 1000));
      const claims: IdentityClaims = {
        iss: issuer,
        sub: grant.identity,
        aud: preview,
        grant: grant.id,
        iat,
        exp,
        jti: randomBytes(9).toString('base64url'),
      };
      const input = `${header}.${b64(JSON.stringify(claims))}`;
      const token = `${input}.${b64(sign(null, Buffer.from(input), privateKey))}`;
      if (cache.size > 10_000) cache.clear();
      cache.set(cacheKey, { token, renewAt: Math.min(now + (IDENTITY_TTL_S * 1000) / 2, exp * 1000) });
      return token;
    },
  };
}
