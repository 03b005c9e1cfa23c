// verifyArtifact refusals, each for the check that failed, on bundles signed here with fresh P-256 keys
// (node:crypto + @sigstore/bundle, as scripts/sign-local.js does) and on the shipped trusted root.
// Self-contained: the conformance data set has its own suite (test/sigstore-conformance.test.ts).

import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleToJSON, toDSSEBundle, toMessageSignatureBundle } from '@sigstore/bundle';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publicKeyHint } from './policy.js';
import {
  PUBLIC_GOOD_TRUSTED_ROOT_SHA256,
  SHIPPED_TRUSTED_ROOT_PATH,
  checkTrustedRoot,
  emptyTrustedRoot,
  loadShippedTrustedRoot,
} from './trusted-root.js';
import { verifyArtifact, type VerifyRequest } from './verify.js';

const ZERO = { tlog: 0, ctlog: 0, tsa: 0 };

function keyPair(): { privateKey: KeyObject; publicKey: KeyObject; pem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return { privateKey, publicKey, pem: publicKey.export({ type: 'spki', format: 'pem' }).toString() };
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function messageBundle(artifact: Buffer, key: ReturnType<typeof keyPair>): unknown {
  return bundleToJSON(
    toMessageSignatureBundle({
      digest: createHash('sha256').update(artifact).digest(),
      signature: sign('sha256', artifact, key.privateKey),
      keyHint: publicKeyHint(key.publicKey),
    }),
  );
}

function dsseBundle(
  subjectSha256: string,
  key: ReturnType<typeof keyPair>,
  payloadType = 'application/vnd.in-toto+json',
): unknown {
  const statement = Buffer.from(
    JSON.stringify({
      _type: 'https://in-toto.io/Statement/v1',
      subject: [{ name: 'rootfs.img', digest: { sha256: subjectSha256 } }],
      predicateType: 'https://agentvm.invalid/test/v1',
      predicate: {},
    }),
  );
  const pae = Buffer.concat([
    Buffer.from(`DSSEv1 ${payloadType.length} ${payloadType} ${statement.length} `),
    statement,
  ]);
  return bundleToJSON(
    toDSSEBundle({
      artifact: statement,
      artifactType: payloadType,
      signature: sign('sha256', pae, key.privateKey),
      keyHint: publicKeyHint(key.publicKey),
    }),
  );
}

const key = keyPair();
const artifact = Buffer.from('agentvm release artifact\n'.repeat(100));
const pinned = sha256(artifact);
const bundle = messageBundle(artifact, key);

function request(overrides: Partial<VerifyRequest> = {}): VerifyRequest {
  return {
    bundle,
    artifactSha256: pinned,
    artifact,
    policy: { kind: 'key', publicKeyPem: key.pem },
    thresholds: ZERO,
    ...overrides,
  };
}

async function refusalCodes(req: VerifyRequest): Promise<string[]> {
  const res = await verifyArtifact(req);
  expect(res.ok).toBe(false);
  expect(res.signer).toBeUndefined();
  for (const d of res.diagnostics) {
    expect(d.severity).toBe('error');
    expect(d.detail).toBeTruthy();
  }
  return res.diagnostics.map((d) => d.code);
}

describe('verifyArtifact with a key policy', () => {
  it('GIVEN a locally key-signed bundle and its artifact WHEN verified with zero thresholds THEN it passes and names the key', async () => {
    const res = await verifyArtifact(request());
    expect(res).toEqual({
      ok: true,
      signer: { keyHint: publicKeyHint(key.publicKey) },
      digest: pinned,
      diagnostics: [],
    });
  });

  it('accepts the bundle as JSON text and as bytes, and an upper-case pin', async () => {
    const text = JSON.stringify(bundle);
    expect((await verifyArtifact(request({ bundle: text }))).ok).toBe(true);
    expect((await verifyArtifact(request({ bundle: Buffer.from(text) }))).ok).toBe(true);
    const res = await verifyArtifact(request({ artifactSha256: pinned.toUpperCase() }));
    expect(res.ok).toBe(true);
    expect(res.digest).toBe(pinned);
  });

  it('refuses artifact bytes with one byte changed: signature.digest-mismatch', async () => {
    const tampered = Buffer.from(artifact);
    tampered[17] = (tampered[17] ?? 0) ^ 0x01;
    expect(await refusalCodes(request({ artifact: tampered }))).toEqual(['signature.digest-mismatch']);
  });

  it('refuses a wrong pinned digest, with or without the artifact bytes: signature.digest-mismatch', async () => {
    const other = sha256(Buffer.from('another artifact'));
    expect(await refusalCodes(request({ artifactSha256: other }))).toEqual(['signature.digest-mismatch']);
    expect(await refusalCodes(request({ artifactSha256: other, artifact: undefined }))).toEqual([
      'signature.digest-mismatch',
    ]);
  });

  it('refuses a forged messageDigest (points at the pinned artifact, signature over other bytes): signature.invalid', async () => {
    const forged = structuredClone(messageBundle(Buffer.from('evil'), key)) as {
      messageSignature: { messageDigest: { digest: string } };
    };
    forged.messageSignature.messageDigest.digest = Buffer.from(pinned, 'hex').toString('base64');
    expect(await refusalCodes(request({ bundle: forged }))).toEqual(['signature.invalid']);
  });

  it('refuses a signature by another key: signature.invalid', async () => {
    expect(await refusalCodes(request({ policy: { kind: 'key', publicKeyPem: keyPair().pem } }))).toEqual([
      'signature.invalid',
    ]);
  });

  it('refuses a message signature without the artifact bytes: signature.artifact-required', async () => {
    expect(await refusalCodes(request({ artifact: undefined }))).toEqual(['signature.artifact-required']);
  });

  it('keeps the library thresholds unless told otherwise: a bundle without timestamps is refused by default', async () => {
    expect(await refusalCodes(request({ thresholds: undefined }))).toEqual(['signature.timestamp']);
    expect(await refusalCodes(request({ thresholds: { tlog: -1 } }))).toEqual(['signature.policy-invalid']);
  });

  it('refuses a private key in the policy, and a PEM that is not a key: signature.key-invalid', async () => {
    const privatePem = key.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    expect(await refusalCodes(request({ policy: { kind: 'key', publicKeyPem: privatePem } }))).toEqual([
      'signature.key-invalid',
    ]);
    expect(
      await refusalCodes(
        request({
          policy: { kind: 'key', publicKeyPem: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n' },
        }),
      ),
    ).toEqual(['signature.key-invalid']);
  });
});

describe('verifyArtifact policy', () => {
  it('refuses without a policy: signature.no-policy', async () => {
    expect(await refusalCodes(request({ policy: undefined }))).toEqual(['signature.no-policy']);
  });

  it('refuses a key-signed bundle under a keyless policy: signature.signer-kind', async () => {
    const policy = {
      kind: 'keyless' as const,
      identity: 'https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main',
      issuer: 'https://token.actions.githubusercontent.com',
    };
    expect(await refusalCodes(request({ policy }))).toEqual(['signature.signer-kind']);
  });

  it('refuses a keyless policy with an empty identity: signature.policy-invalid', async () => {
    expect(
      await refusalCodes(request({ policy: { kind: 'keyless', identity: '', issuer: 'https://accounts.google.com' } })),
    ).toEqual(['signature.policy-invalid']);
  });
});

describe('verifyArtifact bundle checks', () => {
  it('refuses malformed JSON and non-objects: signature.bundle-malformed', async () => {
    expect(await refusalCodes(request({ bundle: JSON.stringify(bundle).slice(0, 80) }))).toEqual([
      'signature.bundle-malformed',
    ]);
    expect(await refusalCodes(request({ bundle: 42 }))).toEqual(['signature.bundle-malformed']);
    expect(
      await refusalCodes(request({ bundle: { mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json' } })),
    ).toEqual(['signature.bundle-malformed']);
  });

  it('refuses a media type outside the allow-list: signature.media-type', async () => {
    const future = { ...(bundle as object), mediaType: 'application/vnd.dev.sigstore.bundle.v0.4+json' };
    expect(await refusalCodes(request({ bundle: future }))).toEqual(['signature.media-type']);
  });

  it('refuses a pin that is not a sha256: signature.pinned-digest-invalid', async () => {
    expect(await refusalCodes(request({ artifactSha256: 'sha256:' + pinned }))).toEqual([
      'signature.pinned-digest-invalid',
    ]);
  });

  it('never throws, whatever it is given', async () => {
    for (const garbage of [
      null,
      undefined,
      {},
      { bundle, artifactSha256: 7 },
      { bundle, artifactSha256: pinned, policy: { kind: 'other' } },
    ]) {
      const res = await verifyArtifact(garbage as unknown as VerifyRequest);
      expect(res.ok).toBe(false);
      expect(res.diagnostics).toHaveLength(1);
    }
  });
});

describe('verifyArtifact on mutated bundles (property)', () => {
  it('never throws and gives exactly one refusal, or a pass that still names the right digest and key', async () => {
    const text = JSON.stringify(bundle, null, 2);
    let seed = 0x2545f491; // fixed seed: a failure is reproducible
    const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
    const alphabet = 'AZaz09+/="{}[],:. \\x';
    let refused = 0;
    for (let i = 0; i < 300; i++) {
      const at = Math.floor(next() * text.length);
      const ch = alphabet[Math.floor(next() * alphabet.length)] ?? 'A';
      const mutated = text.slice(0, at) + ch + text.slice(at + 1);
      const res = await verifyArtifact(request({ bundle: mutated }));
      if (res.ok) {
        // only bytes the verifier does not trust may change a passing bundle (e.g. the unauthenticated key hint)
        expect(res.diagnostics).toEqual([]);
        expect(res.digest).toBe(pinned);
      } else {
        refused++;
        expect(res.diagnostics).toHaveLength(1);
        expect(res.diagnostics[0]?.code).toMatch(/^signature\./);
      }
    }
    expect(refused).toBeGreaterThan(150);
  });
});

describe('verifyArtifact with DSSE (in-toto) bundles', () => {
  it('verifies against the pinned digest without the artifact bytes', async () => {
    const res = await verifyArtifact(request({ bundle: dsseBundle(pinned, key), artifact: undefined }));
    expect(res.ok).toBe(true);
  });

  it('refuses a statement about another artifact: signature.digest-mismatch', async () => {
    const other = sha256(Buffer.from('other'));
    expect(await refusalCodes(request({ bundle: dsseBundle(other, key), artifact: undefined }))).toEqual([
      'signature.digest-mismatch',
    ]);
    // the bytes hash to the pin, but the statement is not about them
    expect(await refusalCodes(request({ bundle: dsseBundle(other, key) }))).toEqual(['signature.digest-mismatch']);
  });

  it('refuses a DSSE payload that is not in-toto: signature.payload-type', async () => {
    expect(
      await refusalCodes(request({ bundle: dsseBundle(pinned, key, 'application/json'), artifact: undefined })),
    ).toEqual(['signature.payload-type']);
  });
});

describe('trusted roots', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'agentvm-root-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('the shipped public-good root matches its pin and passes the checks', async () => {
    expect(sha256(await readFile(SHIPPED_TRUSTED_ROOT_PATH))).toBe(PUBLIC_GOOD_TRUSTED_ROOT_SHA256);
    const root = await loadShippedTrustedRoot();
    expect(root.ok && root.sha256).toBe(PUBLIC_GOOD_TRUSTED_ROOT_SHA256);
    // the default root (no trustedRoot in the request) is used and the local bundle still verifies
    expect((await verifyArtifact(request())).ok).toBe(true);
  });

  it('refuses a root whose bytes do not match the pin: signature.trusted-root', async () => {
    const bytes = await readFile(SHIPPED_TRUSTED_ROOT_PATH);
    const wrongPin = sha256(Buffer.from('not the root'));
    expect(await refusalCodes(request({ trustedRoot: { json: bytes, expectedSha256: wrongPin } }))).toEqual([
      'signature.trusted-root',
    ]);
    // a pin cannot be checked on parsed JSON, so that is refused too rather than trusted unchecked
    expect(
      await refusalCodes(
        request({
          trustedRoot: { json: JSON.parse(bytes.toString()), expectedSha256: PUBLIC_GOOD_TRUSTED_ROOT_SHA256 },
        }),
      ),
    ).toEqual(['signature.trusted-root']);
    // and the right pin on the same bytes is accepted
    expect(
      (await verifyArtifact(request({ trustedRoot: { json: bytes, expectedSha256: PUBLIC_GOOD_TRUSTED_ROOT_SHA256 } })))
        .ok,
    ).toBe(true);
  });

  it('refuses a shipped root file changed by one byte', async () => {
    const bytes = Buffer.from(await readFile(SHIPPED_TRUSTED_ROOT_PATH));
    bytes[bytes.indexOf('rekor.sigstore.dev')] = 'R'.charCodeAt(0);
    const path = join(dir, 'trusted_root.json');
    await writeFile(path, bytes);
    const root = await loadShippedTrustedRoot(path);
    expect(root.ok).toBe(false);
    expect(!root.ok && root.diagnostic.code).toBe('signature.trusted-root');
  });

  it('refuses an authority without validFor.start, naming it', async () => {
    const root = JSON.parse((await readFile(SHIPPED_TRUSTED_ROOT_PATH)).toString()) as {
      ctlogs: Array<{ publicKey: { validFor: { start?: string } } }>;
    };
    delete root.ctlogs[1]?.publicKey.validFor.start;
    const checked = checkTrustedRoot({ json: JSON.stringify(root) });
    expect(!checked.ok && checked.diagnostic.path).toBe('$.ctlogs[1].publicKey.validFor.start');
    expect(await refusalCodes(request({ trustedRoot: { json: root } }))).toEqual(['signature.trusted-root']);
  });

  it('refuses an unknown trusted-root media type; accepts the empty root for key-signed bundles', async () => {
    expect(
      await refusalCodes(request({ trustedRoot: { json: { ...emptyTrustedRoot(), mediaType: 'application/json' } } })),
    ).toEqual(['signature.trusted-root']);
    expect((await verifyArtifact(request({ trustedRoot: { json: emptyTrustedRoot() } }))).ok).toBe(true);
  });
});
