// Use case: verify one artifact (file or pinned digest) against a Sigstore bundle and a signer policy — the same
// check plan and apply run on releases and images, exposed for people and scripts.

import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { userError } from '../diagnostics/index.js';
import { verifyArtifact, type SignaturePolicy, type VerifyThresholds } from '../providers/image/index.js';
import type { VerifyResultDocument } from '../generated/verify-result.js';

/** The --json result; its type is generated from the schema (schemas/ are the source of truth). */
export type VerifyResult = VerifyResultDocument;

export interface VerifyOptions {
  artifact: string;
  bundle: string;
  identity?: string;
  issuer?: string;
  key?: string;
  trustedRoot?: string;
  trustedRootSha256?: string;
}

const DIGEST = /^(?:sha256:)?([0-9a-fA-F]{64})$/;

/** A key-signed bundle carries no certificate, transparency-log entry or timestamp by design: the key is the trust. */
const KEY_THRESHOLDS: VerifyThresholds = { ctlog: 0, tlog: 0, tsa: 0 };

export async function runVerify(opts: VerifyOptions): Promise<VerifyResult> {
  const keyless = opts.identity !== undefined || opts.issuer !== undefined;
  if (keyless && opts.key)
    throw userError('verify.policy', 'Give either --identity with --issuer (keyless) or --key, not both.');
  if (keyless && !(opts.identity && opts.issuer))
    throw userError(
      'verify.policy',
      'Keyless verification needs both --identity and --issuer.',
      'Both are compared exactly: the certificate identity (SAN) and the OIDC issuer URL.',
    );
  if (!keyless && !opts.key)
    throw userError(
      'verify.policy',
      'No signer policy: pass --identity and --issuer, or --key.',
      'agentvm never accepts "any signer"; say who must have signed.',
    );

  let bytes: Uint8Array | undefined;
  let digest: string;
  const asDigest = DIGEST.exec(opts.artifact);
  if (existsSync(opts.artifact) && statSync(opts.artifact).isFile()) {
    bytes = readFileSync(opts.artifact);
    digest = createHash('sha256').update(bytes).digest('hex');
  } else if (asDigest) {
    digest = asDigest[1]!.toLowerCase();
  } else {
    throw userError(
      'verify.artifact-not-found',
      `No file ${opts.artifact}, and it is not a sha256 digest either.`,
      'Pass the artifact file, or its pinned digest as 64 hex characters (sha256:… accepted).',
    );
  }

  const bundleText = readInput(opts.bundle, '--bundle', 'the Sigstore bundle (JSON)');
  let policy: SignaturePolicy;
  let shownPolicy: VerifyResult['policy'];
  if (opts.key) {
    const pem = readInput(opts.key, '--key', 'a PEM public key');
    policy = { kind: 'key', publicKeyPem: pem };
    shownPolicy = { kind: 'key', key: opts.key };
  } else {
    policy = { kind: 'keyless', identity: opts.identity!, issuer: opts.issuer! };
    shownPolicy = { kind: 'keyless', identity: opts.identity!, issuer: opts.issuer! };
  }
  const trustedRoot = opts.trustedRoot
    ? {
        json: readInput(opts.trustedRoot, '--trusted-root', 'a Sigstore trusted root (JSON)'),
        ...(opts.trustedRootSha256 ? { expectedSha256: opts.trustedRootSha256 } : {}),
      }
    : undefined;
  const res = await verifyArtifact({
    bundle: bundleText,
    artifactSha256: digest,
    ...(bytes ? { artifact: bytes } : {}),
    policy,
    ...(trustedRoot ? { trustedRoot } : {}),
    ...(policy.kind === 'key' ? { thresholds: KEY_THRESHOLDS } : {}),
  });
  return {
    formatVersion: 1,
    verified: res.ok,
    artifact: opts.artifact,
    digest: `sha256:${digest}`,
    policy: shownPolicy,
    ...(res.signer ? { signer: res.signer } : {}),
    diagnostics: res.diagnostics,
  };
}

function readInput(path: string, flag: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw userError(
      'verify.file-unreadable',
      `Cannot read ${flag} ${path} (${code ?? 'error'}).`,
      `${flag} takes ${what}.`,
    );
  }
}
