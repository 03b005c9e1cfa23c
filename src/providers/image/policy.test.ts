// Signature policy: validation, and the exact identity match that @sigstore/verify alone does not give
// (it reads subjectAlternativeName as an unanchored RegExp).

import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { exactSanPattern, matchSigner, preparePolicy, publicKeyHint } from './policy.js';

const WORKFLOW = 'https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main';
const ISSUER = 'https://token.actions.githubusercontent.com';

describe('exactSanPattern', () => {
  it('matches the identity itself and nothing longer, shorter or "similar"', () => {
    const re = new RegExp(exactSanPattern(WORKFLOW));
    expect(re.test(WORKFLOW)).toBe(true);
    expect(re.test(`${WORKFLOW}x`)).toBe(false);
    expect(re.test(`x${WORKFLOW}`)).toBe(false);
    expect(re.test(WORKFLOW.replace('release.yml', 'releaseXyml'))).toBe(false); // '.' is not a wildcard
    expect(new RegExp(exactSanPattern('https://github.com/org/')).test(WORKFLOW)).toBe(false); // no prefix match
  });

  it('escapes every RegExp metacharacter', () => {
    const odd = 'a.b*c+d?e^f$g{h}i(j)k|l[m]n\\o/p-q';
    const re = new RegExp(exactSanPattern(odd));
    expect(re.test(odd)).toBe(true);
    expect(re.test('aXb*c+d?e^f$g{h}i(j)k|l[m]n\\o/p-q')).toBe(false);
  });
});

describe('matchSigner', () => {
  const prepared = preparePolicy({ kind: 'keyless', identity: WORKFLOW, issuer: ISSUER });
  if (!prepared.ok || prepared.policy.kind !== 'keyless') throw new Error('policy fixture must be valid');
  const policy = prepared.policy;

  it('accepts exactly the policy identity and issuer', () => {
    expect(matchSigner(policy, { subjectAlternativeName: WORKFLOW, issuer: ISSUER })).toBeUndefined();
  });

  it('names the identity when the SAN differs, even by a prefix or by case', () => {
    expect(matchSigner(policy, { subjectAlternativeName: `${WORKFLOW}/extra`, issuer: ISSUER })?.code).toBe(
      'signature.identity',
    );
    expect(matchSigner(policy, { subjectAlternativeName: WORKFLOW.toUpperCase(), issuer: ISSUER })?.code).toBe(
      'signature.identity',
    );
    expect(matchSigner(policy, { issuer: ISSUER })?.code).toBe('signature.identity');
  });

  it('names the issuer when only the issuer differs', () => {
    expect(matchSigner(policy, { subjectAlternativeName: WORKFLOW, issuer: 'https://accounts.google.com' })?.code).toBe(
      'signature.issuer',
    );
    expect(matchSigner(policy, { subjectAlternativeName: WORKFLOW })?.code).toBe('signature.issuer');
  });
});

describe('preparePolicy', () => {
  it('computes the key hint of a key policy as base64(sha256(DER SPKI))', () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const prepared = preparePolicy({
      kind: 'key',
      publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    });
    expect(prepared.ok && prepared.policy.kind === 'key' && prepared.policy.keyHint).toBe(publicKeyHint(publicKey));
  });

  it('refuses a missing, unknown or empty policy with a code that says which', () => {
    const code = (p: unknown) => {
      const r = preparePolicy(p as Parameters<typeof preparePolicy>[0]);
      return r.ok ? 'ok' : r.diagnostic.code;
    };
    expect(code(undefined)).toBe('signature.no-policy');
    expect(code(null)).toBe('signature.no-policy');
    expect(code({ kind: 'any' })).toBe('signature.policy-invalid');
    expect(code({ kind: 'keyless', identity: WORKFLOW, issuer: ' ' })).toBe('signature.policy-invalid');
    expect(code({ kind: 'key', publicKeyPem: '' })).toBe('signature.key-invalid');
  });
});
